// The 9-grid lucky draw: eight awards around a draw button, the user's draws, credit,
// daily sign-in, the credit exchange, the draw-progress rewards and the recent awards. It
// talks only to the _by_token endpoints (and the public SKU list); the token lives in
// common.js's memory and nowhere else.

import {
  state, api, sentence, applyText, setLang, onLang, onUser, identify, demoSignIn, signOut,
  pageLink, money,
} from "/static/common.js";

const text = {
  zh: {
    title: "幸运抽奖", navRedpacket: "红包", navRain: "红包雨", signInAs: "登录用户", signIn: "登录",
    dayLeft: "今日剩余", totalLeft: "总剩余", credit: "积分", signToday: "每日签到", signedToday: "今日已签到",
    refresh: "刷新", draw: "抽奖", drawing: "抽奖中…", progress: "抽奖进度", exchange: "积分兑换", records: "我的奖品",
    lang: "EN", signedInAs: (u) => `已登录：${u}`, signInFirst: "请先登录",
    locked: (n) => `再抽奖${n}次解锁`, won: (t) => `恭喜获得：${t}`,
    signDone: "签到成功，积分和抽奖次数马上到账", exchanged: "兑换成功，抽奖次数马上到账",
    noAwards: "奖品加载中", noRecords: "还没有奖品", noProgress: "本活动没有抽奖进度奖励", noSkus: "暂无可兑换的商品",
    draws: (n, d) => `${n}次抽奖` + (d && d !== n ? `（每日${d}次）` : ""), price: (a) => `${a} 积分`, buy: "兑换",
    stage: (n) => `抽满${n}次`, reached: "已达成", toGo: (n) => `还差${n}次`, used: (n) => `已抽${n}次`,
    state: { create: "发放中", completed: "已发放" }, pending: "刚刚抽中",
  },
  en: {
    title: "Lucky draw", navRedpacket: "Red packets", navRain: "Red packet rain", signInAs: "Sign in as", signIn: "Sign in",
    dayLeft: "Left today", totalLeft: "Left in total", credit: "Credit", signToday: "Daily sign-in", signedToday: "Signed in today",
    refresh: "Refresh", draw: "Draw", drawing: "Drawing…", progress: "Draw progress", exchange: "Credit exchange", records: "My awards",
    lang: "中文", signedInAs: (u) => `Signed in as ${u}`, signInFirst: "Please sign in first",
    locked: (n) => `Unlocks after ${n} more draw${n === 1 ? "" : "s"}`, won: (t) => `You won: ${t}`,
    signDone: "Signed in: your credit and draw arrive in a moment", exchanged: "Exchanged: your draws arrive in a moment",
    noAwards: "Loading the awards", noRecords: "No awards yet", noProgress: "This activity has no draw-progress rewards", noSkus: "Nothing to exchange right now",
    draws: (n, d) => `${n} draw${n === 1 ? "" : "s"}` + (d && d !== n ? ` (${d} a day)` : ""), price: (a) => `${a} credit`, buy: "Exchange",
    stage: (n) => `${n} draws`, reached: "reached", toGo: (n) => `${n} to go`, used: (n) => `${n} drawn`,
    state: { create: "on its way", completed: "delivered" }, pending: "just now",
  },
};

const R = "/api/v1/raffle/";
const DRAW_PATH_PREFIX = R + "activity/draw/";
const params = new URLSearchParams(location.search);
// The activity of ?activityId= (a safe integer, sent as a JSON number), else the demo's.
const activityId = /^[1-9][0-9]{0,14}$/.test(params.get("activityId") || "") ? params.get("activityId") : "100301";

const $ = (id) => document.getElementById(id);
const t = () => text[state.lang];
const arr = (v) => (Array.isArray(v) ? v : []);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// What the page knows; every field may stay null when an answer had no data.
const view = {
  awards: [], // the award list, by sort
  account: null, // {totalCount, totalCountSurplus, dayCount, dayCountSurplus, …}
  credit: null,
  signed: null, // signed in today
  weights: null, // rule-weight stages
  skus: null,
  records: null, // the server's award records, newest first
  recordsLoaded: false,
  recordsTried: false, // a read of the records failed: draws go on without them
};
// pending are the draws answered to this page whose award record the list did not hold
// yet when it was last read (oldest first): shown at once, dropped as their records come.
let pending = [];
let signedPaths = false; // the activity was found to draw through signed paths
let busy = false;
let seq = 0;
let loadGen = 0; // a newer load (a user switch) discards what an older one answers

function say(msg) { $("message").textContent = msg || ""; }

// answered handles what every signed-in call shares: a sign-in that is no longer valid.
function answered(res) {
  if (res.status === 401) { say(sentence(res)); signOut(); return false; }
  return res.code === "0000";
}

// ---- loading -----------------------------------------------------------------------

async function loadAwards() {
  const res = await api("POST", R + "strategy/query_raffle_award_list_by_token", { activityId: Number(activityId) });
  if (!answered(res)) { if (res.code && res.status !== 401) say(sentence(res)); return; }
  view.awards = arr(res.data).slice().sort((a, b) => (a.sort || 0) - (b.sort || 0));
}

async function loadCounts() {
  const [acc, credit] = await Promise.all([
    api("POST", R + "activity/query_user_activity_account_by_token", { activityId: Number(activityId) }),
    api("POST", R + "activity/query_user_credit_account_by_token"),
  ]);
  if (answered(acc)) view.account = acc.data;
  if (answered(credit)) view.credit = credit.data;
}

async function loadSigned() {
  const res = await api("POST", R + "activity/is_calendar_sign_rebate_by_token");
  if (answered(res)) view.signed = res.data === true;
}

async function loadWeights() {
  const res = await api("POST", R + "strategy/query_raffle_strategy_rule_weight_by_token", { activityId: Number(activityId) });
  if (res.code === "ERR_BIZ_001") { view.weights = []; return; }
  if (answered(res)) view.weights = arr(res.data);
}

async function loadSkus() {
  const res = await api("POST", R + "activity/query_sku_product_list_by_activity_id?activityId=" + activityId);
  if (res.code === "0000") view.skus = arr(res.data);
}

const recordKey = (r) => r.awardTime + ":" + r.awardId;

// loadRecords reads the award records and retires the pending draws whose records are
// new in it: each new record (oldest first) takes the oldest pending draw of its award.
async function loadRecords() {
  const res = await api("POST", R + "activity/query_user_award_record_by_token", { activityId: Number(activityId) });
  if (!answered(res)) { view.recordsTried = true; return; }
  const fresh = arr(res.data);
  if (!view.recordsLoaded) {
    // No list to tell new records from: the draws made before it (only when a first
    // read failed) are left to the list, so that none shows twice.
    pending = [];
  } else {
    const known = new Map();
    for (const r of arr(view.records)) known.set(recordKey(r), (known.get(recordKey(r)) || 0) + 1);
    const added = [];
    for (const r of fresh) {
      const k = recordKey(r), n = known.get(k) || 0;
      if (n > 0) known.set(k, n - 1);
      else added.push(r);
    }
    for (const r of added.reverse()) {
      const i = pending.findIndex((p) => p.awardId === r.awardId);
      if (i >= 0) pending.splice(i, 1);
    }
  }
  view.records = fresh;
  view.recordsLoaded = true;
}

// loadAll reads everything the signed-in user sees.
async function loadAll() {
  const gen = ++loadGen;
  if (!state.token) return;
  await Promise.all([loadAwards(), loadCounts(), loadSigned(), loadWeights(), loadRecords()]);
  if (gen !== loadGen) return;
  render();
}

// settle reloads the counts a few times: what a sign-in or an exchange adds arrives
// through the broker a moment after its answer.
function settle() {
  for (const ms of [800, 2000, 4500]) {
    setTimeout(async () => { if (state.token) { await loadCounts(); renderStats(); } }, ms);
  }
}

// ---- rendering ---------------------------------------------------------------------

const cells = () => [...document.querySelectorAll("#grid .cell")].sort((a, b) => a.dataset.ring - b.dataset.ring);

function renderGrid() {
  const list = cells();
  list.forEach((cell, i) => {
    const a = view.awards[i];
    cell.replaceChildren();
    delete cell.dataset.awardId;
    delete cell.dataset.locked;
    if (!a) { cell.classList.add("empty"); return; }
    cell.classList.remove("empty");
    cell.dataset.awardId = a.awardId;
    cell.dataset.sort = a.sort;
    const title = document.createElement("strong");
    title.textContent = a.awardTitle || "#" + a.awardId;
    cell.append(title);
    const wait = Number(a.waitUnLockCount) || 0;
    if (a.isAwardUnlock === false && wait > 0) {
      cell.dataset.locked = wait;
      const lock = document.createElement("small");
      lock.className = "lock";
      lock.textContent = t().locked(wait);
      cell.append(lock);
    } else if (a.awardSubtitle && !(Number(a.awardRuleLockCount) > 0)) { // not "unlocks after N" once unlocked
      const sub = document.createElement("small");
      sub.textContent = a.awardSubtitle;
      cell.append(sub);
    }
  });
  $("draw").disabled = busy || !state.token || !view.awards.length || !(view.recordsLoaded || view.recordsTried);
  $("draw").firstElementChild.textContent = busy ? t().drawing : t().draw;
}

function count(v) { return v === null || v === undefined || !Number.isFinite(Number(v)) ? "—" : String(v); }

function renderStats() {
  const acc = view.account || {};
  $("day-left").textContent = state.token ? count(acc.dayCountSurplus) : "—";
  $("total-left").textContent = state.token ? count(acc.totalCountSurplus) : "—";
  $("credit").textContent = state.token && view.credit !== null ? money(view.credit) : "—";
  const sign = $("sign");
  sign.disabled = !state.token || view.signed !== false;
  sign.textContent = view.signed ? t().signedToday : t().signToday;
  sign.dataset.signed = view.signed ? "true" : "false";
  $("refresh").disabled = !state.token;
}

function renderProgress() {
  const list = $("progress");
  list.replaceChildren();
  const stages = arr(view.weights).slice().sort((a, b) => a.ruleWeightCount - b.ruleWeightCount);
  const used = stages.length ? Number(stages[0].userActivityAccountTotalUseCount) || 0 : 0;
  list.dataset.used = used;
  for (const s of stages) {
    const need = Number(s.ruleWeightCount) || 0;
    const li = document.createElement("li");
    li.className = "stage";
    li.dataset.threshold = need;
    li.dataset.reached = used >= need ? "true" : "false";
    const head = document.createElement("div");
    head.className = "stage-head";
    const name = document.createElement("span");
    name.textContent = t().stage(need);
    const status = document.createElement("span");
    status.className = "stage-status";
    status.textContent = used >= need ? t().reached : t().used(used) + " · " + t().toGo(need - used);
    head.append(name, status);
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", String(need));
    bar.setAttribute("aria-valuenow", String(Math.min(used, need)));
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = (need > 0 ? Math.min(100, (used / need) * 100) : 100) + "%"; // CSSOM, which the CSP allows
    bar.append(fill);
    const awards = document.createElement("small");
    awards.textContent = arr(s.strategyAwards).map((a) => a.awardTitle || "#" + a.awardId).join("、");
    li.append(head, bar, awards);
    list.append(li);
  }
  if (!stages.length) {
    const li = document.createElement("li");
    li.textContent = view.weights ? t().noProgress : "—";
    list.append(li);
  }
}

function renderSkus() {
  const list = $("skus");
  list.replaceChildren();
  for (const s of arr(view.skus)) {
    const li = document.createElement("li");
    li.className = "sku";
    li.dataset.sku = s.sku;
    const c = s.activityCount || {};
    const label = document.createElement("span");
    label.textContent = t().draws(Number(c.totalCount) || 0, Number(c.dayCount) || 0) + " · " + t().price(money(s.productAmount));
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = t().buy;
    b.disabled = !state.token;
    b.addEventListener("click", () => exchange(s.sku, b));
    li.append(label, b);
    list.append(li);
  }
  if (!arr(view.skus).length) {
    const li = document.createElement("li");
    li.textContent = view.skus ? t().noSkus : "—";
    list.append(li);
  }
}

function timeText(ms) {
  const d = new Date(Number(ms));
  return Number.isFinite(d.getTime()) ? d.toLocaleString(state.lang === "zh" ? "zh-CN" : "en-GB", { hour12: false }) : "";
}

function renderRecords() {
  const list = $("records");
  list.replaceChildren();
  const mine = pending.filter((p) => p.landed).reverse().map((p) => ({ ...p, pending: true }));
  const rows = [...mine, ...arr(view.records)];
  for (const r of rows) {
    const li = document.createElement("li");
    li.className = "record" + (r.pending ? " pending" : "");
    li.dataset.awardId = r.awardId;
    const title = document.createElement("span");
    title.textContent = r.awardTitle || "#" + r.awardId;
    const when = document.createElement("small");
    when.textContent = r.pending ? t().pending : [timeText(r.awardTime), t().state[r.state] || ""].filter(Boolean).join(" · ");
    li.append(title, when);
    list.append(li);
  }
  list.dataset.count = rows.length;
  if (!rows.length) {
    const li = document.createElement("li");
    li.textContent = t().noRecords;
    list.append(li);
  }
}

function render() {
  applyText(text);
  $("lang").textContent = t().lang;
  $("signin-form").hidden = !!state.token || !(state.config && state.config.demo);
  $("who").hidden = !state.token;
  $("who").textContent = state.token ? t().signedInAs(state.user) : "";
  $("nav-redpacket").href = pageLink("/redpacket", { activityId });
  $("nav-rain").href = pageLink("/rain", { activityId });
  renderGrid();
  renderStats();
  renderProgress();
  renderSkus();
  renderRecords();
}

// ---- the draw ----------------------------------------------------------------------

// spinner runs a highlight around the ring until land(ring) brings it to rest on that
// cell after at least one more lap, slowing as it goes; stop() ends it anywhere.
function spinner() {
  const list = cells();
  let at = -1, timer = 0, stopped = false, target = -1, left = 0, total = 0, done = null;
  const show = () => list.forEach((c, i) => c.classList.toggle("hot", i === at));
  const step = () => {
    if (stopped) return;
    at = (at + 1) % list.length;
    show();
    let delay = 60;
    if (target >= 0) {
      left--;
      if (left <= 0) { done(); return; }
      const k = 1 - left / total; // 0 → 1 as it nears the award
      delay = 60 + Math.round(260 * k * k);
    }
    timer = setTimeout(step, delay);
  };
  step();
  return {
    land(ring) {
      return new Promise((resolve) => {
        target = ring;
        left = ((ring - at + list.length) % list.length) + list.length; // one more lap, then the award
        total = left;
        done = () => { stopped = true; resolve(list[at]); };
      });
    },
    stop() { stopped = true; clearTimeout(timer); at = -1; show(); },
  };
}

// drawOnce draws through the plain path, or a signed one when the activity requires it
// (found from the plain draw's ERR_BIZ_012, which spends nothing).
async function drawOnce() {
  if (!signedPaths) {
    const res = await api("POST", R + "activity/draw_by_token", { activityId: Number(activityId) });
    if (res.code !== "ERR_BIZ_012") return res;
    signedPaths = true;
  }
  const path = await api("GET", R + "activity/draw_path_by_token?activityId=" + activityId);
  if (path.code === "0002" && path.status === 200) {
    // The activity stopped using signed paths since: the plain draw again.
    signedPaths = false;
    return api("POST", R + "activity/draw_by_token", { activityId: Number(activityId) });
  }
  if (path.code !== "0000") return path;
  const p = path.data && typeof path.data.path === "string" ? path.data.path : "";
  if (!p.startsWith(DRAW_PATH_PREFIX) || p.length <= DRAW_PATH_PREFIX.length) return { code: "0001", status: 200, data: null };
  return api("POST", p, { activityId: Number(activityId) });
}

async function draw() {
  if (busy) return;
  if (!state.token) { say(t().signInFirst); return; }
  busy = true;
  const grid = $("grid");
  grid.dataset.state = "spinning";
  delete grid.dataset.landedAwardId;
  delete grid.dataset.drawnAwardId;
  for (const c of cells()) c.classList.remove("landed");
  $("result").textContent = "";
  say("");
  renderGrid();
  const spin = spinner();
  const who = state.user;
  let res = await drawOnce();
  if (res.code === "0009") { // outcome not known yet: ask once more when the server says
    await sleep(Math.min(10, Math.max(1, res.retryAfter || 1)) * 1000);
    res = await drawOnce();
  }
  const won = res.code === "0000" && res.data && res.data.awardId !== undefined ? res.data : null;
  if (won) {
    // Pending from the answer on, so that a record list read during the animation retires
    // it; shown once the highlight lands.
    const mine = { awardId: won.awardId, awardTitle: won.awardTitle, landed: false };
    if (state.user === who) pending.push(mine);
    grid.dataset.drawnAwardId = won.awardId;
    const list = cells();
    let ring = list.findIndex((c) => c.dataset.awardId === String(won.awardId));
    if (ring < 0) ring = list.findIndex((c) => c.dataset.sort === String(won.awardIndex));
    if (ring >= 0) {
      const cell = await spin.land(ring);
      cell.classList.add("landed");
    } else {
      spin.stop(); // an award the grid does not show: no cell to land on
    }
    grid.dataset.landedAwardId = won.awardId;
    $("result").textContent = t().won(won.awardTitle || "#" + won.awardId);
    mine.landed = true;
  } else {
    spin.stop();
    say(sentence(res));
    if (res.status === 401) signOut();
  }
  busy = false;
  grid.dataset.state = "idle";
  grid.dataset.drawSeq = String(++seq);
  render();
  if (state.token) loadAll();
}

// ---- sign-in and exchange -----------------------------------------------------------

async function signToday() {
  $("sign").disabled = true;
  const res = await api("POST", R + "activity/calendar_sign_rebate_by_token");
  if (res.code === "0000") {
    say(t().signDone);
    view.signed = true;
  } else if (res.code === "0003" && res.status === 200) {
    say(sentence(res)); // already signed in today
    view.signed = true;
  } else {
    say(sentence(res));
    if (res.status === 401) { signOut(); return; }
  }
  await loadCounts();
  renderStats();
  settle();
}

async function exchange(sku, button) {
  if (!state.token) { say(t().signInFirst); return; }
  button.disabled = true;
  const res = await api("POST", R + "activity/credit_pay_exchange_sku_by_token", { sku: Number(sku) });
  if (res.code === "0000") say(t().exchanged);
  else say(sentence(res)); // ERR_CREDIT_001: not enough credit
  if (res.status === 401) { signOut(); return; }
  button.disabled = false;
  await Promise.all([loadCounts(), loadSkus()]);
  renderStats();
  renderSkus();
  settle();
}

// ---- wiring ------------------------------------------------------------------------

onUser((u) => {
  if (u) say(""); // "waiting for the app to sign you in" is over
  pending = [];
  Object.assign(view, { awards: [], account: null, credit: null, signed: null, weights: null, records: null, recordsLoaded: false, recordsTried: false });
  signedPaths = false;
  render();
  if (u) loadAll();
});
onLang(render);
$("lang").addEventListener("click", () => setLang(state.lang === "zh" ? "en" : "zh"));
$("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const u = $("user").value.trim();
  if (u) say(await demoSignIn(u));
});
$("draw").addEventListener("click", draw);
$("sign").addEventListener("click", signToday);
$("refresh").addEventListener("click", () => { loadAll(); loadSkus().then(renderSkus); });
// The counts change behind the page (a recharge, a sign-in's draw): read them now and
// then while the page is in view.
setInterval(async () => {
  if (!state.token || document.hidden || busy) return;
  await loadCounts();
  renderStats();
}, 10000);
document.addEventListener("visibilitychange", () => { if (!document.hidden && state.token && !busy) loadAll(); });

setLang(state.lang);
loadSkus().then(renderSkus);
say(await identify());
render();
