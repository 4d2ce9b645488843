// common.js is what every user page shares: the language, every API code as a sentence,
// the API call that never throws, and identity — a demo sign-in, or in production a token
// handed over by the embedding app with postMessage. The token lives in this module's
// memory only: never in a URL, a cookie or storage.

const sentences = {
  zh: {
    "0001": "系统开小差了，请稍后再试", "0002": "请求有误，请刷新页面后重试", "0004": "活动太火爆，请稍后再试",
    "0005": "操作太快了，请稍后再试", "0006": "系统繁忙，请稍后再试", "0007": "网关异常，请稍后再试",
    "0008": "应用凭证无效", "0009": "结果确认中，请稍后再试",
    ERR_BIZ_001: "本活动没有配置抽奖进度奖励", ERR_BIZ_002: "抽奖策略尚未准备好，请稍后再试", ERR_BIZ_003: "活动未开启",
    ERR_BIZ_004: "不在活动时间内", ERR_BIZ_005: "该商品已售罄", ERR_BIZ_006: "您的抽奖次数已用完",
    ERR_BIZ_007: "您本月的抽奖次数已用完", ERR_BIZ_008: "您今天的抽奖次数已用完", ERR_BIZ_009: "该抽奖单已使用",
    ERR_BIZ_010: "奖品已全部抽完", ERR_BIZ_011: "您已经中过奖了，每人限中一次", ERR_BIZ_012: "抽奖链接已失效，请刷新页面",
    ERR_CONFIG_001: "奖品配置有误，请联系客服", ERR_CREDIT_001: "积分不足",
    ERR_RP_001: "红包已被抢完", ERR_RP_002: "红包已过期或已关闭", ERR_RP_003: "您不能领取这个红包",
    ERR_RP_004: "红包暂时不可用，请稍后再试",
    ERR_RAIN_001: "红包雨还没开始", ERR_RAIN_002: "本场红包雨已结束或已抢完", ERR_RAIN_003: "本场中奖次数已达上限",
    expired: "登录已失效，请重新登录", done: "已经处理过了", network: "网络异常，请检查网络",
    other: "出了点问题，请稍后再试", demoOff: "当前环境不支持演示登录", waiting: "等待宿主应用登录…",
  },
  en: {
    "0001": "Something went wrong on our side; try again later", "0002": "The request was not understood; reload the page and try again",
    "0004": "Too busy right now; try again later", "0005": "Slow down a little and try again",
    "0006": "The system is busy; try again later", "0007": "Gateway problem; try again later",
    "0008": "The app's credentials are not valid", "0009": "Still confirming your result; try again in a moment",
    ERR_BIZ_001: "This activity has no draw-progress rewards", ERR_BIZ_002: "The draw is not ready yet; try again later",
    ERR_BIZ_003: "The activity is not open", ERR_BIZ_004: "The activity is not running at this time",
    ERR_BIZ_005: "This item is sold out", ERR_BIZ_006: "You have no draws left", ERR_BIZ_007: "You have no draws left this month",
    ERR_BIZ_008: "You have no draws left today", ERR_BIZ_009: "This draw order was already used",
    ERR_BIZ_010: "All prizes have been won", ERR_BIZ_011: "You have already won here; one win per person",
    ERR_BIZ_012: "The draw link has expired; reload the page", ERR_CONFIG_001: "A prize is misconfigured; contact support",
    ERR_CREDIT_001: "Not enough credit",
    ERR_RP_001: "All of this red packet has been grabbed", ERR_RP_002: "This red packet has expired or was closed",
    ERR_RP_003: "You cannot grab this red packet", ERR_RP_004: "The red packet is briefly unavailable; try again",
    ERR_RAIN_001: "The rain has not started yet", ERR_RAIN_002: "This rain is over or has no packets left",
    ERR_RAIN_003: "You have reached this session's win limit",
    expired: "Your sign-in has expired; please sign in again", done: "That was already done",
    network: "Network problem; check your connection", other: "Something went wrong; try again later",
    demoOff: "Demo sign-in is not available here", waiting: "Waiting for the app to sign you in…",
  },
};

export const state = {
  lang: (navigator.language || "zh").toLowerCase().startsWith("zh") ? "zh" : "en",
  token: "",
  user: "",
  config: null, // GET /api/v1/web/config: {demo, embedOrigins, serverTime}
  offset: 0, // the server's clock minus this device's, in ms
};

const langListeners = [];

// onLang registers f to run whenever the language changes.
export function onLang(f) { langListeners.push(f); }

// setLang switches the page's language and re-renders every [data-t] element from dict.
export function setLang(lang) {
  state.lang = lang;
  document.documentElement.lang = lang;
  for (const f of langListeners) f(lang);
}

// applyText fills every [data-t] element with its entry in dict[lang]; entries that are
// functions are skipped (they need arguments).
export function applyText(dict, root = document) {
  const d = dict[state.lang];
  for (const el of root.querySelectorAll("[data-t]")) {
    const v = d[el.dataset.t];
    if (typeof v === "string") el.textContent = v;
  }
  for (const el of root.querySelectorAll("[data-t-placeholder]")) {
    const v = d[el.dataset.tPlaceholder];
    if (typeof v === "string") el.placeholder = v;
  }
}

// message returns the page-independent sentence named key (expired, network, …).
export function message(key) { return sentences[state.lang][key] || sentences[state.lang].other; }

// sentence turns an API answer into words a person can act on. 0003 depends on the HTTP
// status: 401 is a sign-in that is no longer valid; 200 a repeat of something done.
export function sentence(res) {
  const s = sentences[state.lang];
  if (!res || res.network) return s.network;
  if (res.code === "0003") return res.status === 401 ? s.expired : s.done;
  return s[res.code] || s.other;
}

export const serverNow = () => Date.now() + state.offset;

// api calls an endpoint and always resolves to {status, code, info, data, retryAfter}:
// a network error, a non-JSON body or data: null never throws. The user's token goes in
// the Authorization header when there is one (opts.auth overrides it, as the console's
// admin token does).
export async function api(method, path, body, opts = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const auth = opts.auth !== undefined ? opts.auth : state.token;
  if (auth) headers.Authorization = "Bearer " + auth;
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    return { network: true, status: 0, code: "", info: "", data: null, retryAfter: 0 };
  }
  let env = null;
  try { env = await resp.json(); } catch { env = null; }
  if (!env || typeof env !== "object") env = {};
  const retryAfter = Number(resp.headers.get("Retry-After")) || 0;
  return { status: resp.status, code: env.code || "", info: env.info || "", data: env.data ?? null, retryAfter };
}

// loadConfig reads the web config once and sets the clock offset from its serverTime.
export async function loadConfig() {
  if (state.config) return state.config;
  const sent = Date.now();
  const res = await api("GET", "/api/v1/web/config");
  const cfg = res.code === "0000" && res.data ? res.data : { demo: false, embedOrigins: [] };
  if (!Array.isArray(cfg.embedOrigins)) cfg.embedOrigins = [];
  if (typeof cfg.serverTime === "number") syncClock(cfg.serverTime, sent);
  state.config = cfg;
  return cfg;
}

// syncClock sets the offset from a server time answered to a request sent at sent: the
// answer was made about half way through the round trip.
export function syncClock(serverTime, sent) {
  state.offset = serverTime - (sent + Date.now()) / 2;
}

// tokenUser reads the openId claim of a JWT (the server checks the signature; the page
// only shows the name).
export function tokenUser(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return typeof claims.openId === "string" ? claims.openId : "";
  } catch {
    return "";
  }
}

const userListeners = [];

// onUser registers f(user) to run whenever the signed-in user changes ("" when signed out).
export function onUser(f) { userListeners.push(f); }

function setToken(token, user) {
  state.token = token;
  state.user = token ? user : "";
  for (const f of userListeners) f(state.user);
}

// signOut forgets the token.
export function signOut() { setToken("", ""); }

// demoSignIn mints a demo token for userId; it resolves to "" or a sentence to show.
export async function demoSignIn(userId) {
  const res = await api("POST", "/api/v1/demo/token", { userId }, { auth: "" });
  if (res.status === 404) return message("demoOff");
  if (res.code !== "0000" || !res.data || !res.data.token) return sentence(res);
  setToken(res.data.token, userId);
  return "";
}

// listenForEmbedToken accepts {type: "bigmarket:token", token} from the embedding
// window, only from an origin in the config's embedOrigins, and tells each of those
// origins the page is ready ({type: "bigmarket:ready"}) and answers each token it takes
// with {type: "bigmarket:signedIn", user}; a later token replaces the earlier one (a
// refresh). It only listens when the page is not framed or opened by another.
function listenForEmbedToken(origins) {
  window.addEventListener("message", (ev) => {
    if (!origins.includes(ev.origin)) return;
    if (ev.source !== window.parent && ev.source !== window.opener) return;
    const d = ev.data;
    if (!d || d.type !== "bigmarket:token" || typeof d.token !== "string") return;
    setToken(d.token, tokenUser(d.token));
    // Tell the app the page took it (the app knows the user: it signed the token).
    ev.source.postMessage({ type: "bigmarket:signedIn", user: state.user }, ev.origin);
  });
  const host = window.parent !== window ? window.parent : window.opener;
  if (!host) return;
  for (const origin of origins) {
    try { host.postMessage({ type: "bigmarket:ready" }, origin); } catch { /* another origin: dropped */ }
  }
}

// identify signs the page in as the setup allows: in demo mode as the query string's
// userId (as big-market's front end reads it) at once; in any mode with a token from an
// allowed embedding origin. It resolves to a sentence to show, or "".
export async function identify() {
  const cfg = await loadConfig();
  listenForEmbedToken(cfg.embedOrigins);
  if (!cfg.demo) return state.token ? "" : message("waiting");
  const asked = new URLSearchParams(location.search).get("userId");
  return asked ? demoSignIn(asked) : "";
}

// pageLink returns href for another page with the demo user and the activity carried
// over in its query string (demo mode only: in production the query names no user).
export function pageLink(href, extra = {}) {
  const q = new URLSearchParams();
  if (state.config && state.config.demo && state.user) q.set("userId", state.user);
  for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? href + "?" + s : href;
}

// money formats a decimal amount of yuan with two places.
export function money(v) {
  const n = Number(v);
  return Number.isFinite(n) ? n.toFixed(2) : "—";
}
