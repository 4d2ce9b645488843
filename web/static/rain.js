// The rain page: sessions with a countdown on the server's clock, packets to tap while a
// session is live, and the wins as they land. It talks only to the _by_token endpoints;
// the token lives in common.js's memory and nowhere else.

import {
  state, api, sentence, applyText, setLang, onLang, onUser, identify, demoSignIn, signOut,
  syncClock, serverNow, pageLink,
} from "/static/common.js";

const text = {
  zh: {
    title: "红包雨", signInAs: "登录用户", signIn: "登录", sessions: "场次", wins: "我的中奖",
    signedInAs: (u) => `已登录：${u}`, noSessions: "暂无场次", startsIn: (s) => `${s} 后开始`,
    liveFor: (s) => `进行中，剩余 ${s}`, tapHint: "点击红包！", miss: "没抢到，再试试",
    cash: (a) => `现金 ¥${a}`, sku: (s) => `抽奖次数（SKU ${s}）`, award: (a) => `奖品 #${a}`, noWins: "还没有中奖",
    signInFirst: "请先登录", lang: "EN", navGrid: "抽奖", navRedpacket: "红包",
  },
  en: {
    title: "Red packet rain", signInAs: "Sign in as", signIn: "Sign in", sessions: "Sessions", wins: "My wins",
    signedInAs: (u) => `Signed in as ${u}`, noSessions: "No sessions right now", startsIn: (s) => `starts in ${s}`,
    liveFor: (s) => `live, ${s} left`, tapHint: "Tap the packets!", miss: "Missed, try again",
    cash: (a) => `cash ¥${a}`, sku: (s) => `draws (SKU ${s})`, award: (a) => `award #${a}`, noWins: "No wins yet",
    signInFirst: "Please sign in first", lang: "中文", navGrid: "Lucky draw", navRedpacket: "Red packets",
  },
};

let sessions = [];
let live = null; // the live session being played
let spawner = 0;
const wins = new Map(); // "session:n" → win, so that a win answered twice counts once

const $ = (id) => document.getElementById(id);
const t = () => text[state.lang];

function say(msg) { $("message").textContent = msg || ""; }

async function signIn(userId) {
  say(await demoSignIn(userId));
}

onUser((u) => {
  if (!u) { stopRain(); wins.clear(); } else say("");
  render();
  if (u) loadWins();
});

async function loadSessions() {
  const sent = Date.now();
  const res = await api("GET", "/api/v1/rain/sessions");
  if (res.code !== "0000" || !res.data) { if (res.code || res.network) say(sentence(res)); return; }
  if (typeof res.data.serverTime === "number") syncClock(res.data.serverTime, sent);
  sessions = Array.isArray(res.data.sessions) ? res.data.sessions : [];
  render();
}

async function loadWins() {
  if (!state.token) return;
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
  applyText(text);
  $("lang").textContent = t().lang;
  $("signin-form").hidden = !!state.token || !(state.config && state.config.demo);
  $("who").hidden = !state.token;
  $("who").textContent = state.token ? t().signedInAs(state.user) : "";
  $("nav-grid").href = pageLink("/");
  $("nav-redpacket").href = pageLink("/redpacket");
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
  if (current && state.token) startRain(current);
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
  if (!live || !state.token) { say(state.token ? "" : t().signInFirst); return; }
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

onLang(render);
$("lang").addEventListener("click", () => setLang(state.lang === "zh" ? "en" : "zh"));
$("signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const u = $("user").value.trim();
  if (u) signIn(u);
});

setLang(state.lang);
await loadSessions();
say(await identify());
render();
setInterval(tick, 250);
setInterval(loadSessions, 5000);
