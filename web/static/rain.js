// The rain page: sessions with a countdown on the server's clock, packets to tap while a
// session is live, and the wins as they land. It talks only to the _by_token endpoints;
// the token lives in this module's memory and nowhere else.

const text = {
  zh: {
    title: "红包雨", signInAs: "登录用户", signIn: "登录", sessions: "场次", wins: "我的中奖",
    signedInAs: (u) => `已登录：${u}`, noSessions: "暂无场次", startsIn: (s) => `${s} 后开始`,
    liveFor: (s) => `进行中，剩余 ${s}`, tapHint: "点击红包！", miss: "没抢到，再试试",
    cash: (a) => `现金 ¥${a}`, sku: (s) => `抽奖次数（SKU ${s}）`, award: (a) => `奖品 #${a}`, noWins: "还没有中奖",
    signInFirst: "请先登录", lang: "EN",
    codes: {
      "0001": "系统开小差了，请稍后再试", "0002": "请求有误，请刷新页面", "0003": "登录已失效，请重新登录",
      "0004": "活动太火爆，请稍后再试", "0005": "操作太快了，请稍后再试", "0006": "系统繁忙，请稍后再试",
      "0009": "结果确认中，请稍后再试", "ERR_RAIN_001": "红包雨还没开始", "ERR_RAIN_002": "本场红包雨已结束或已抢完",
      "ERR_RAIN_003": "本场中奖次数已达上限", network: "网络异常，请检查网络", other: "出了点问题，请稍后再试",
      demoOff: "当前环境不支持演示登录", done: "已经处理过了",
    },
  },
  en: {
    title: "Red packet rain", signInAs: "Sign in as", signIn: "Sign in", sessions: "Sessions", wins: "My wins",
    signedInAs: (u) => `Signed in as ${u}`, noSessions: "No sessions right now", startsIn: (s) => `starts in ${s}`,
    liveFor: (s) => `live, ${s} left`, tapHint: "Tap the packets!", miss: "Missed, try again",
    cash: (a) => `cash ¥${a}`, sku: (s) => `draws (SKU ${s})`, award: (a) => `award #${a}`, noWins: "No wins yet",
    signInFirst: "Please sign in first", lang: "中文",
    codes: {
      "0001": "Something went wrong on our side; try again later", "0002": "The request was not understood; reload the page",
      "0003": "Your sign-in has expired; please sign in again", "0004": "Too busy right now; try again later",
      "0005": "Slow down a little and try again", "0006": "The system is busy; try again later",
      "0009": "Still confirming your result; try again in a moment", "ERR_RAIN_001": "The rain has not started yet",
      "ERR_RAIN_002": "This rain is over or has no packets left", "ERR_RAIN_003": "You have reached this session's win limit",
      network: "Network problem; check your connection", other: "Something went wrong; try again later",
      demoOff: "Demo sign-in is not available here", done: "That was already done",
    },
  },
};

let lang = (navigator.language || "zh").toLowerCase().startsWith("zh") ? "zh" : "en";
let token = "";
let user = "";
let offset = 0; // server clock minus device clock, in ms
let sessions = [];
let live = null; // the live session being played
let spawner = 0;
const wins = new Map(); // "session:n" → win, so that a win answered twice counts once

const $ = (id) => document.getElementById(id);
const t = () => text[lang];
const serverNow = () => Date.now() + offset;

// sentence turns an API answer into words; 0003 depends on the HTTP status (401: the token).
function sentence(res) {
  const c = t().codes;
  if (res.network) return c.network;
  if (res.code === "0003" && res.status !== 401) return c.done; // 200: a repeat of a done request
  return c[res.code] || c.other;
}

function say(msg) { $("message").textContent = msg || ""; }

// api calls an endpoint and always resolves to {status, code, info, data}: a network
// error, a non-JSON body or data: null never throws.
async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = "Bearer " + token;
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    return { network: true, status: 0, code: "", data: null };
  }
  let env = null;
  try { env = await resp.json(); } catch { env = null; }
  if (!env || typeof env !== "object") env = {};
  return { status: resp.status, code: env.code || "", info: env.info || "", data: env.data ?? null };
}

async function signIn(userId) {
  const res = await api("POST", "/api/v1/demo/token", { userId });
  if (res.status === 404) { say(t().codes.demoOff); return; }
  if (res.code !== "0000" || !res.data || !res.data.token) { say(sentence(res)); return; }
  token = res.data.token;
  user = userId;
  say("");
  render();
  await loadWins();
}

function signOut() {
  token = "";
  user = "";
  stopRain();
  render();
}

async function loadSessions() {
  const sent = Date.now();
  const res = await api("GET", "/api/v1/rain/sessions");
  if (res.code !== "0000" || !res.data) { if (res.code || res.network) say(sentence(res)); return; }
  if (typeof res.data.serverTime === "number") {
    // The answer was made about half way through the round trip.
    offset = res.data.serverTime - (sent + Date.now()) / 2;
  }
  sessions = Array.isArray(res.data.sessions) ? res.data.sessions : [];
  render();
}

async function loadWins() {
  if (!token) return;
  const q = live ? "?sessionId=" + live.sessionId : "";
  const res = await api("GET", "/api/v1/rain/wins_by_token" + q);
  if (res.status === 401) { say(sentence(res)); signOut(); return; }
  if (res.code !== "0000") { say(sentence(res)); return; }
  for (const w of Array.isArray(res.data) ? res.data : []) wins.set(w.sessionId + ":" + w.n, w);
  renderWins();
}

function duration(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return (h ? h + ":" + two(m) : m) + ":" + two(r);
}

function prizeText(p) {
  if (p.kind === "cash") return t().cash(Number(p.amount).toFixed(2));
  if (p.kind === "sku") return t().sku(p.sku);
  if (p.kind === "award") return t().award(p.awardId);
  return "";
}

function render() {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t()[el.dataset.t];
  $("lang").textContent = t().lang;
  $("signin-form").hidden = !!token;
  $("who").hidden = !token;
  $("who").textContent = token ? t().signedInAs(user) : "";
  tick();
  renderWins();
}

// tick redraws the countdowns and starts or stops the rain as the server's clock says.
function tick() {
  const now = serverNow();
  const list = $("sessions");
  list.replaceChildren();
  let current = null;
  for (const s of sessions) {
    if (now >= s.endTime) continue;
    const li = document.createElement("li");
    const isLive = now >= s.startTime;
    li.className = isLive ? "live" : "upcoming";
    li.dataset.sessionId = s.sessionId;
    li.textContent = `${s.title || "#" + s.sessionId} · ` +
      (isLive ? t().liveFor(duration(s.endTime - now)) : t().startsIn(duration(s.startTime - now)));
    list.append(li);
    if (isLive && !current) current = s;
  }
  if (!list.children.length) {
    const li = document.createElement("li");
    li.textContent = t().noSessions;
    list.append(li);
  }
  if (current && token) startRain(current);
  else stopRain();
}

function startRain(s) {
  if (live && live.sessionId === s.sessionId) return;
  stopRain();
  live = s;
  $("field").hidden = false;
  $("field-title").textContent = t().tapHint;
  spawner = setInterval(spawn, 350);
  loadWins();
}

function stopRain() {
  if (!live) return;
  clearInterval(spawner);
  live = null;
  $("field").hidden = true;
  $("sky").replaceChildren();
}

function spawn() {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "packet d" + (1 + Math.floor(Math.random() * 3));
  b.textContent = "福";
  b.style.left = Math.floor(Math.random() * 85) + "%"; // CSSOM, which the CSP allows
  b.addEventListener("animationend", () => b.remove());
  b.addEventListener("pointerdown", () => { b.remove(); tap(); });
  $("sky").append(b);
}

async function tap(retry) {
  if (!live || !token) { say(t().signInFirst); return; }
  const sessionId = live.sessionId;
  const body = { sessionId };
  if (retry) body.retry = true;
  const res = await api("POST", "/api/v1/rain/grab_by_token", body);
  if (res.code === "0009" && !retry) return tap(true); // the held win is answered to a retry
  if (res.code === "0000") {
    if (res.data && res.data.won) land(sessionId, res.data);
    return;
  }
  say(sentence(res));
  if (res.status === 401) signOut();
  else if (res.code === "ERR_RAIN_002") loadSessions();
}

function land(sessionId, w) {
  const key = sessionId + ":" + w.n;
  const fresh = !wins.has(key);
  wins.set(key, { sessionId, ...w });
  if (fresh) {
    const pop = document.createElement("div");
    pop.className = "landed";
    pop.textContent = prizeText(w);
    pop.addEventListener("animationend", () => pop.remove());
    $("sky").append(pop);
  }
  renderWins();
  loadWins();
}

function renderWins() {
  const list = $("wins");
  list.replaceChildren();
  const all = [...wins.values()].sort((a, b) => a.sessionId - b.sessionId || a.n - b.n);
  for (const w of all) {
    const li = document.createElement("li");
    li.className = "win";
    li.dataset.sessionId = w.sessionId;
    li.dataset.n = w.n;
    li.dataset.kind = w.kind || "";
    if (w.amount != null) li.dataset.amount = Number(w.amount).toFixed(2);
    if (w.sku) li.dataset.sku = w.sku;
    if (w.awardId) li.dataset.awardId = w.awardId;
    li.textContent = `#${w.sessionId} · ${w.n} · ${prizeText(w)}`;
    list.append(li);
  }
  if (!all.length) {
    const li = document.createElement("li");
    li.textContent = t().noWins;
    list.append(li);
  }
}

$("lang").addEventListener("click", () => { lang = lang === "zh" ? "en" : "zh"; render(); });
$("signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const u = $("user").value.trim();
  if (u) signIn(u);
});

render();
const asked = new URLSearchParams(location.search).get("userId");
await loadSessions();
if (asked) await signIn(asked);
setInterval(tick, 250);
setInterval(loadSessions, 5000);
