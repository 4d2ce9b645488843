// The operator console: an admin token typed in and kept in this module's memory only
// (never a URL, a cookie or storage), a dashboard that polls GET /api/v1/admin/stats once a
// second and plots it, and views over the admin endpoints (strategy, user, dynamic
// settings, red packets, rain sessions, dead letters, reconcile). It uses common.js for the
// language, the sentences and the API call, not its user identity.

import { state, api, sentence, applyText, setLang, onLang, money } from "/static/common.js";
import { lineChart, barChart, fmt } from "/static/chart.js";

const text = {
  zh: {
    title: "运营控制台", lang: "EN", signOut: "退出", tokenLabel: "管理令牌", signIn: "登录",
    tokenHint: "令牌只保存在本页内存中，刷新或关闭页面后需重新输入。",
    badToken: "管理令牌不正确，请重新输入", signedOut: "已退出",
    vDashboard: "概览", vStrategy: "策略", vUser: "用户", vSettings: "动态配置", vRedpacket: "红包",
    vRain: "红包雨", vDLQ: "死信", vReconcile: "对账",
    breaker: "熔断器", degrade: "降级开关", deadLetters: "死信",
    drawsPerSec: "抽奖/秒", grabsPerSec: "抢红包/秒", tapsPerSec: "红包雨点击/秒", requestsPerSec: "请求/秒",
    latency: "延迟 p50 / p99 (ms)", backlogs: "积压：发件箱 / 写入队列 / 消费者", codes: "60 秒内的应答码",
    deadLettersChart: "死信数", awardStock: "奖品库存剩余", skuStock: "SKU 库存剩余",
    node: (n) => `节点 ${n}`, updated: (s) => `更新于 ${s}`, stale: (s) => `数据未更新：${s}`,
    breakerStates: { closed: "闭合（正常）", open: "断开", "half-open": "半开" },
    degradeStates: { open: "已降级", close: "正常" },
    none: "无", noCodes: "暂无请求", noStock: "暂无已装配的库存",
    strategyId: "策略 ID", show: "查看", armory: "装配（预热）", armed: "已装配", notArmed: "未装配",
    awardId: "奖品 ID", awardTitle: "奖品", awardSubtitle: "副标题", sort: "排序", rate: "概率", ruleModels: "规则",
    stockTotal: "总库存", stockSurplus: "库中剩余", stockLeft: "Redis 剩余", ruleModel: "规则", ruleValue: "规则值",
    topUp: "补充", units: "数量", rules: "策略规则", awards: "奖品",
    confirmAwardTopUp: (n, s, a) => `确认给策略 ${s} 的奖品 ${a} 补充 ${n} 个库存？`,
    confirmSkuTopUp: (n, s) => `确认给 SKU ${s} 补充 ${n} 个库存？`,
    toppedUp: (n) => `已补充，当前库存 ${n}`, armoryDone: "已装配", armoryFailed: "装配失败",
    userId: "用户 ID", credit: "可用积分", blacklisted: "黑名单", notBlacklisted: "未拉黑",
    blacklistedUntil: (s) => `拉黑至 ${s}`, lift: "解除拉黑", lifted: "已解除拉黑（所有节点）",
    confirmLift: (u) => `确认解除用户 ${u} 的拉黑？`, accounts: "活动账户", activityId: "活动 ID",
    total: "总次数", totalLeft: "总剩余", day: "日次数", dayLeft: "日剩余", month: "月次数", monthLeft: "月剩余",
    awardTime: "中奖时间", awardState: "状态", noAwards: "暂无中奖记录", noAccounts: "暂无活动账户",
    recharge: "充值 SKU", sku: "SKU", outBusinessNo: "业务单号", skuTopUp: "补充 SKU 库存",
    confirmRecharge: (u, s, b) => `确认给用户 ${u} 充值 SKU ${s}（单号 ${b}）？`, recharged: "已充值",
    userFirst: "请先输入用户 ID", badNumber: (f) => `${f} 必须是正整数`,
    settingsHint: "动态配置对所有节点生效；这里显示本节点当前生效的值。", key: "配置项", inForce: "当前值", change: "修改",
    set: "设置", reset: "恢复默认", confirmSet: (k, v) => `确认把 ${k} 设为 ${v}？`, confirmReset: (k) => `确认把 ${k} 恢复为配置文件的值？`,
    settingSaved: "已保存，各节点将很快生效", overridden: "已动态修改", defaultValue: "配置默认值", settingNames: {
      degradeSwitch: "降级开关（open 时抽奖直接降级）", rateLimiterSwitch: "限流开关", rateLimiterPermitsPerSecond: "每用户每秒请求数",
      rateLimiterBurst: "突发容量", rateLimiterBlacklistCount: "拉黑阈值（次）", rateLimiterBlacklistDuration: "拉黑时长",
      drawTimeout: "抽奖时间预算",
    },
    sendCampaign: "发运营红包", totalAmount: "总金额", count: "个数", mode: "方式", random: "拼手气", fixed: "普通",
    greeting: "祝福语", eligible: "可领用户（逗号分隔，可空）", send: "发送", refresh: "刷新",
    confirmSend: (a, n) => `确认发出总额 ¥${a}、共 ${n} 个的运营红包？`, sent: (id) => `已发出红包 ${id}`,
    packetId: "红包 ID", kind: "类型", sender: "发送者", grabbed: "已领", left: "剩余金额", status: "状态",
    created: "创建时间", expires: "过期时间", noPackets: "暂无红包", campaign: "运营", user: "用户",
    createRain: "新建场次", rainTitle: "标题", startsInSec: "几秒后开始", durationSec: "持续秒数", userCap: "每人上限",
    prizeAmount: "每个现金", prizeCount: "个数", create: "创建",
    confirmCreateRain: (n, a) => `确认创建场次：${n} 个 ¥${a} 现金红包？`, rainCreated: (id) => `已创建场次 ${id}`,
    sessionId: "场次", name: "名称", state: "状态", start: "开始", end: "结束", released: "已释放", issued: "已发出",
    seqNo: "配额 SeqNo", nodes: "各节点 SeqNo", quota: "修改配额", noSessions: "最近一天没有场次",
    details: "详情", burst: "突发", weights: "权重", budget: "预算", noBudget: "不限",
    ledgerGranted: "已发出", ledgerUnwon: "未被抢到", ledgerUnreleased: "未释放",
    confirmQuota: (id) => `确认修改场次 ${id} 的配额？`, quotaSaved: (s) => `配额已更新，SeqNo ${s}`, quotaEmpty: "请至少填写一项",
    replayAll: "全部重放", replay: "重放", seq: "序号", stream: "流", subject: "主题", msgId: "消息 ID", reasons: "原因",
    deadAt: "进入死信时间", noDeadLetters: "没有死信", confirmReplay: (s) => `确认重放死信 ${s}？`,
    confirmReplayAll: "确认重放全部死信？", replayed: (n) => `已重放 ${n} 条`,
    sinceHours: "对账最近几小时", runReconcile: "开始对账", reconcileRunning: "对账中…",
    reconcileOk: "对账通过", reconcileBad: "发现差异", reconcileBusy: "本节点正在对账，请稍后再试",
    ranMs: (ms) => `耗时 ${ms} ms`, since: (s) => `自 ${s} 起`, found: (n) => `差异 ${n} 条`, checked: "检查范围", skipped: "未检查",
    badHours: "小时数必须在 0 到 168 之间",
    confirm: "确认", cancel: "取消", yes: "是", no: "否",
  },
  en: {
    title: "Operator console", lang: "中文", signOut: "Sign out", tokenLabel: "Admin token", signIn: "Sign in",
    tokenHint: "The token is kept in this page's memory only: type it again after a reload.",
    badToken: "That admin token is not right; type it again", signedOut: "Signed out",
    vDashboard: "Dashboard", vStrategy: "Strategy", vUser: "User", vSettings: "Settings", vRedpacket: "Red packets",
    vRain: "Rain", vDLQ: "Dead letters", vReconcile: "Reconcile",
    breaker: "Breaker", degrade: "Degrade switch", deadLetters: "Dead letters",
    drawsPerSec: "Draws/s", grabsPerSec: "Grabs/s", tapsPerSec: "Rain taps/s", requestsPerSec: "Requests/s",
    latency: "Latency p50 / p99 (ms)", backlogs: "Backlogs: outbox / writer / consumers", codes: "Answers by code, last 60 s",
    deadLettersChart: "Dead letters", awardStock: "Award stock left", skuStock: "SKU stock left",
    node: (n) => `node ${n}`, updated: (s) => `updated ${s}`, stale: (s) => `not updated: ${s}`,
    breakerStates: { closed: "closed (healthy)", open: "open", "half-open": "half-open" },
    degradeStates: { open: "degraded", close: "normal" },
    none: "none", noCodes: "no requests yet", noStock: "no armed stock yet",
    strategyId: "Strategy id", show: "Show", armory: "Armory (warm up)", armed: "armed", notArmed: "not armed",
    awardId: "Award id", awardTitle: "Award", awardSubtitle: "Subtitle", sort: "Sort", rate: "Rate", ruleModels: "Rules",
    stockTotal: "Total", stockSurplus: "Left (SQL)", stockLeft: "Left (Redis)", ruleModel: "Rule", ruleValue: "Value",
    topUp: "Add", units: "Units", rules: "Strategy rules", awards: "Awards",
    confirmAwardTopUp: (n, s, a) => `Add ${n} units to award ${a} of strategy ${s}?`,
    confirmSkuTopUp: (n, s) => `Add ${n} units to SKU ${s}'s stock?`,
    toppedUp: (n) => `Added; the stock is now ${n}`, armoryDone: "Armed", armoryFailed: "The armory failed",
    userId: "User id", credit: "Credit available", blacklisted: "blacklisted", notBlacklisted: "not blacklisted",
    blacklistedUntil: (s) => `blacklisted until ${s}`, lift: "Lift blacklisting", lifted: "Blacklisting lifted (every node)",
    confirmLift: (u) => `Lift the blacklisting of ${u}?`, accounts: "Activity accounts", activityId: "Activity",
    total: "Total", totalLeft: "Total left", day: "Day", dayLeft: "Day left", month: "Month", monthLeft: "Month left",
    awardTime: "Won at", awardState: "State", noAwards: "No awards yet", noAccounts: "No activity accounts",
    recharge: "Recharge SKU", sku: "SKU", outBusinessNo: "Business no.", skuTopUp: "Top up SKU stock",
    confirmRecharge: (u, s, b) => `Recharge SKU ${s} to ${u} (business no. ${b})?`, recharged: "Recharged",
    userFirst: "Type a user id first", badNumber: (f) => `${f} must be a positive integer`,
    settingsHint: "Settings apply to every node; shown is the value in force on this node.", key: "Setting", inForce: "In force", change: "Change",
    set: "Set", reset: "Reset", confirmSet: (k, v) => `Set ${k} to ${v}?`, confirmReset: (k) => `Reset ${k} to the configured value?`,
    settingSaved: "Saved; every node applies it in a moment", overridden: "changed", defaultValue: "Configured default", settingNames: {
      degradeSwitch: "Degrade switch (open: draws degrade at once)", rateLimiterSwitch: "Rate limiter", rateLimiterPermitsPerSecond: "Requests per user per second",
      rateLimiterBurst: "Burst", rateLimiterBlacklistCount: "Blacklist after (hits)", rateLimiterBlacklistDuration: "Blacklist for",
      drawTimeout: "Draw time budget",
    },
    sendCampaign: "Send a campaign packet", totalAmount: "Total", count: "Count", mode: "Mode", random: "Random", fixed: "Fixed",
    greeting: "Greeting", eligible: "Eligible users (comma separated, optional)", send: "Send", refresh: "Refresh",
    confirmSend: (a, n) => `Send a campaign packet of ¥${a} in ${n} parts?`, sent: (id) => `Sent packet ${id}`,
    packetId: "Packet", kind: "Kind", sender: "Sender", grabbed: "Grabbed", left: "Left", status: "Status",
    created: "Created", expires: "Expires", noPackets: "No red packets", campaign: "campaign", user: "user",
    createRain: "New session", rainTitle: "Title", startsInSec: "Starts in (s)", durationSec: "Lasts (s)", userCap: "Wins per user",
    prizeAmount: "Cash each", prizeCount: "Count", create: "Create",
    confirmCreateRain: (n, a) => `Create a session of ${n} cash packets of ¥${a}?`, rainCreated: (id) => `Created session ${id}`,
    sessionId: "Session", name: "Name", state: "State", start: "Start", end: "End", released: "Released", issued: "Issued",
    seqNo: "Quota SeqNo", nodes: "SeqNo per node", quota: "Change quota", noSessions: "No sessions in the last day",
    details: "Details", burst: "Burst", weights: "Weights", budget: "Budget", noBudget: "no budget",
    ledgerGranted: "Granted", ledgerUnwon: "Unwon", ledgerUnreleased: "Unreleased",
    confirmQuota: (id) => `Change the quota of session ${id}?`, quotaSaved: (s) => `Quota updated, SeqNo ${s}`, quotaEmpty: "Fill in at least one field",
    replayAll: "Replay all", replay: "Replay", seq: "Seq", stream: "Stream", subject: "Subject", msgId: "Message id", reasons: "Reasons",
    deadAt: "Dead since", noDeadLetters: "No dead letters", confirmReplay: (s) => `Replay dead letter ${s}?`,
    confirmReplayAll: "Replay every dead letter?", replayed: (n) => `Replayed ${n}`,
    sinceHours: "Reconcile the last hours", runReconcile: "Reconcile", reconcileRunning: "Reconciling…",
    reconcileOk: "Reconciled: no discrepancies", reconcileBad: "Discrepancies found", reconcileBusy: "A reconcile is already running on this node; try again shortly",
    ranMs: (ms) => `took ${ms} ms`, since: (s) => `since ${s}`, found: (n) => `${n} discrepancies`, checked: "Checked", skipped: "Not checked",
    badHours: "Hours must be more than 0 and at most 168",
    confirm: "Confirm", cancel: "Cancel", yes: "yes", no: "no",
  },
};

const $ = (id) => document.getElementById(id);
const t = () => text[state.lang];
const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const show = (v) => (v === null || v === undefined || v === "" ? "—" : String(v));

// token is the admin token: this variable is the only place it is kept.
let token = "";
let view = "dashboard";
let lastStats = null;
let pollTimer = 0;
// The backlogs and dead letters are gauges: the page keeps their last 60 readings, one a
// poll, unknown (null) before the first, so that the x axis spans the same minute as the
// per-second plots.
const noReadings = () => Array(60).fill(null);
const gauges = { outbox: noReadings(), writer: noReadings(), consumer: noReadings(), dead: noReadings() };

function say(msg) { $("message").textContent = msg || ""; }

// errorText is an answer's sentence; a 0002 adds the server's words on what was wrong,
// which an operator can act on (the field and the problem).
function errorText(res) {
  const s = sentence(res);
  return res && res.code === "0002" && res.info ? `${s} (${res.info})` : s;
}

// call is api() with the admin token; a 401 signs the console out with its sentence.
async function call(method, path, body) {
  const res = await api(method, path, body, { auth: token });
  if (res.status === 401 && token) {
    signOut();
    say(sentence(res));
  }
  return res;
}

// ok reports whether res is a success, and otherwise shows its sentence.
function ok(res) {
  if (res.code === "0000") return true;
  if (res.status !== 401) say(errorText(res));
  return false;
}

function time(ms) {
  if (!isNum(ms) || ms <= 0) return "—";
  return new Date(ms).toLocaleString(state.lang === "zh" ? "zh-CN" : "en-GB", { hour12: false });
}

function node(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "dataset") Object.assign(e.dataset, v);
    else if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
    else if (k in e && typeof v !== "string") e[k] = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue; // a part left out
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

// table builds a table of heads and rows (arrays of text or nodes); rowAttrs(i) gives a
// row its attributes.
function table(heads, rows, rowAttrs = () => ({})) {
  return node("table", {},
    node("thead", {}, node("tr", {}, ...heads.map((h) => node("th", {}, h)))),
    node("tbody", {}, ...rows.map((r, i) => node("tr", rowAttrs(i), ...r.map((c) => node("td", {}, c instanceof Node ? c : show(c)))))));
}

function badge(label, cls, data = {}) {
  return node("span", { class: "badge " + cls, dataset: data }, label);
}

// --- confirmation: an in-page step before every action that changes something -----------

let pending = null;

function confirmThen(question, action) {
  pending = action;
  $("confirm-text").textContent = question;
  $("confirm").hidden = false;
  $("confirm-yes").focus();
}

function closeConfirm() {
  pending = null;
  $("confirm").hidden = true;
}

// --- sign-in ------------------------------------------------------------------------------

async function signIn(ev) {
  ev.preventDefault();
  const typed = $("token").value.trim();
  $("token").value = "";
  if (!typed) return;
  const res = await api("GET", "/api/v1/admin/stats", undefined, { auth: typed });
  if (res.status === 401) { say(t().badToken); return; }
  if (res.network) { say(sentence(res)); return; }
  token = typed;
  say(res.code === "0000" ? "" : errorText(res));
  render();
  if (res.code === "0000" && res.data) renderStats(res.data);
  schedulePoll();
  openView(view);
}

function signOut() {
  token = "";
  clearTimeout(pollTimer);
  pollTimer = 0;
  lastStats = null;
  for (const k of Object.keys(gauges)) gauges[k] = noReadings();
  closeConfirm();
  for (const id of ["strategy-out", "user-out", "packets-out", "rain-out", "dlq-out", "reconcile-out"]) $(id).replaceChildren();
  render();
}

// --- the dashboard --------------------------------------------------------------------------

function schedulePoll() {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(poll, 1000);
}

// poll reads the stats once a second, one request at a time: the next is asked for a
// second after the last answer.
async function poll() {
  if (!token) return;
  const res = await call("GET", "/api/v1/admin/stats");
  if (!token) return;
  if (res.code === "0000" && res.data) renderStats(res.data);
  else $("updated").textContent = t().stale(errorText(res));
  schedulePoll();
}

function pushGauge(list, v) {
  list.push(isNum(v) ? v : null);
  if (list.length > 60) list.shift();
}

function renderStats(d) {
  // The numbers are the answering node's: behind a load balancer another node may answer
  // the next poll, and its gauges are not the same series.
  if (lastStats && lastStats.node !== d.node) for (const k of Object.keys(gauges)) gauges[k] = noReadings();
  lastStats = d;
  const b = d.backlogs || {};
  pushGauge(gauges.outbox, b.outbox);
  pushGauge(gauges.writer, b.writer);
  pushGauge(gauges.consumer, b.consumer);
  pushGauge(gauges.dead, d.deadLetters);
  drawStats();
}

function drawStats() {
  const d = lastStats;
  if (!d) return;
  const secs = Array.isArray(d.seconds) ? d.seconds : [];
  const col = (k) => secs.map((s) => (s && isNum(s[k]) ? s[k] : null));
  const last = (vs) => (vs.length ? vs[vs.length - 1] : null);
  const line = (id, name, nowId) => {
    const vs = col(name);
    lineChart($(id), [{ name, values: vs, cls: "s1" }]);
    $(nowId).textContent = fmt(last(vs));
  };
  line("chart-draws", "draws", "now-draws");
  line("chart-grabs", "grabs", "now-grabs");
  line("chart-taps", "rainTaps", "now-taps");
  line("chart-requests", "requests", "now-requests");
  const p50 = col("p50Ms"), p99 = col("p99Ms");
  lineChart($("chart-latency"), [{ name: "p50", values: p50, cls: "s1" }, { name: "p99", values: p99, cls: "s2" }], { unit: "ms" });
  $("now-latency").textContent = `${fmt(last(p50))} / ${fmt(last(p99))}`;
  lineChart($("chart-backlogs"), [
    { name: "outbox", values: gauges.outbox, cls: "s1" },
    { name: "writer", values: gauges.writer, cls: "s2" },
    { name: "consumer", values: gauges.consumer, cls: "s3" },
  ]);
  $("now-backlogs").textContent = [gauges.outbox, gauges.writer, gauges.consumer].map((g) => fmt(last(g))).join(" / ");
  lineChart($("chart-dead"), [{ name: "deadLetters", values: gauges.dead, cls: "s2" }]);
  $("now-dead").textContent = fmt(last(gauges.dead));

  const codes = d.codes && typeof d.codes === "object" ? Object.entries(d.codes) : [];
  codes.sort((a, b) => a[0].localeCompare(b[0]));
  barChart($("chart-codes"), "codes", codes.map(([code, n]) => ({
    label: code, value: isNum(n) ? n : null, cls: code === "0000" ? "good" : "bad",
  })), { empty: t().noCodes });
  addTitles($("chart-codes"), (label) => (label === "0000" ? "OK" : sentence({ code: label, status: 200 })));

  const awards = Array.isArray(d.awardStock) ? d.awardStock : [];
  barChart($("chart-award-stock"), "awardStock", awards.map((a) => ({
    label: `${show(a && a.strategyId)}/${show(a && a.awardId)} ${(a && a.awardTitle) || ""}`.trim(),
    value: a && isNum(a.left) ? a.left : null, total: a && isNum(a.total) ? a.total : null,
  })), { empty: t().noStock });
  const skus = Array.isArray(d.skuStock) ? d.skuStock : [];
  barChart($("chart-sku-stock"), "skuStock", skus.map((s) => ({
    label: `SKU ${show(s && s.sku)}`, value: s && isNum(s.left) ? s.left : null, total: s && isNum(s.total) ? s.total : null,
  })), { empty: t().noStock });

  const br = typeof d.breaker === "string" ? d.breaker : null;
  const bb = $("breaker");
  bb.textContent = br ? t().breakerStates[br] || br : "—";
  bb.className = "badge " + (br === "closed" ? "good" : br === "open" ? "bad" : br ? "warn" : "");
  bb.dataset.state = br || "";
  const dg = typeof d.degrade === "string" ? d.degrade : null;
  const db = $("degrade");
  db.textContent = dg ? t().degradeStates[dg] || dg : "—";
  db.className = "badge " + (dg === "close" ? "good" : dg === "open" ? "bad" : "");
  db.dataset.state = dg || "";
  const dl = $("dead-letters");
  dl.textContent = fmt(isNum(d.deadLetters) ? d.deadLetters : null);
  dl.className = "badge " + (!isNum(d.deadLetters) ? "" : d.deadLetters > 0 ? "bad" : "good");
  $("node").textContent = d.node ? t().node(d.node) : "";
  $("updated").textContent = t().updated(time(isNum(d.serverTime) ? d.serverTime : Date.now()));
}

// addTitles gives each bar of svg a <title> (a tooltip) with title(label).
function addTitles(svg, title) {
  for (const g of svg.querySelectorAll("g.bar")) {
    const e = document.createElementNS("http://www.w3.org/2000/svg", "title");
    e.textContent = `${g.dataset.label}: ${title(g.dataset.label)}`;
    g.prepend(e);
  }
}

// --- views ----------------------------------------------------------------------------------

const loaders = {
  dashboard: () => drawStats(),
  strategy: () => loadStrategy(),
  user: () => ($("user-id").value.trim() ? loadUser() : undefined),
  settings: () => loadSettings(),
  redpacket: () => loadPackets(),
  rain: () => loadRain(),
  dlq: () => loadDLQ(),
  reconcile: () => {},
};

function openView(name) {
  view = name;
  for (const s of document.querySelectorAll("section.view")) s.hidden = s.id !== "view-" + name;
  for (const b of document.querySelectorAll("#views button")) b.classList.toggle("active", b.dataset.view === name);
  closeConfirm();
  say("");
  if (token) loaders[name]();
}

function positive(id, label) {
  const v = $(id).value.trim();
  if (!/^[1-9][0-9]{0,17}$/.test(v)) { say(t().badNumber(label)); return null; }
  return v;
}

// strategy ---------------------------------------------------------------------------------

async function loadStrategy() {
  const id = positive("strategy-id", t().strategyId);
  if (!id) return;
  const res = await call("GET", "/api/v1/admin/strategy/" + id);
  const out = $("strategy-out");
  if (!ok(res)) { out.replaceChildren(); return; }
  const d = res.data || {};
  const awards = Array.isArray(d.awards) ? d.awards : [];
  const rules = Array.isArray(d.rules) ? d.rules : [];
  const rows = awards.map((a) => {
    const units = node("input", { class: "units", inputmode: "numeric", value: "10", "aria-label": t().units });
    const add = node("button", { type: "button", on: { click: () => {
      const n = units.value.trim();
      if (!/^[1-9][0-9]{0,8}$/.test(n)) { say(t().badNumber(t().units)); return; }
      confirmThen(t().confirmAwardTopUp(n, d.strategyId, a.awardId), async () => {
        const r = await call("POST", "/api/v1/admin/stock/add", { strategyId: d.strategyId, awardId: a.awardId, units: n });
        if (ok(r)) { say(t().toppedUp(show(r.data && r.data.awardCount))); loadStrategy(); }
      });
    } } }, t().topUp);
    return [a.awardId, a.awardTitle, a.awardSubtitle, a.sort, a.rate, a.ruleModels, a.stockTotal, a.stockSurplus,
      show(a.stockLeft), node("span", { class: "inline" }, units, add)];
  });
  out.replaceChildren(
    node("h3", {}, `#${show(d.strategyId)} ${d.description || ""} `,
      d.armed ? badge(t().armed, "good", { armed: "true" }) : badge(t().notArmed, "warn", { armed: "false" })),
    node("h4", {}, t().awards),
    table([t().awardId, t().awardTitle, t().awardSubtitle, t().sort, t().rate, t().ruleModels, t().stockTotal, t().stockSurplus, t().stockLeft, t().topUp],
      rows, (i) => ({ class: "award", dataset: { awardId: show(awards[i].awardId), stockLeft: isNum(awards[i].stockLeft) ? String(awards[i].stockLeft) : "" } })),
    node("h4", {}, t().rules),
    table([t().ruleModel, t().ruleValue, t().awardId], rules.map((r) => [r.ruleModel, r.ruleValue, r.awardId || "—"])),
  );
}

async function armory() {
  const id = positive("strategy-id", t().strategyId);
  if (!id) return;
  const res = await call("GET", "/api/v1/raffle/strategy/strategy_armory?strategyId=" + id);
  if (!ok(res)) return;
  say(res.data === false ? t().armoryFailed : t().armoryDone);
  loadStrategy();
}

// user -------------------------------------------------------------------------------------

function userID() {
  const u = $("user-id").value.trim();
  if (!u) say(t().userFirst);
  return u;
}

async function loadUser() {
  const u = userID();
  if (!u) return;
  const res = await call("GET", "/api/v1/admin/user/" + encodeURIComponent(u));
  const out = $("user-out");
  if (!ok(res)) { out.replaceChildren(); return; }
  const d = res.data || {};
  const accounts = Array.isArray(d.accounts) ? d.accounts : [];
  const awards = Array.isArray(d.awards) ? d.awards : [];
  const black = d.blacklisted === true;
  const lift = node("button", { type: "button", on: { click: () => confirmThen(t().confirmLift(u), async () => {
    const r = await call("POST", "/api/v1/admin/guard/unblacklist", { userId: u });
    if (ok(r)) { say(t().lifted); loadUser(); }
  }) } }, t().lift);
  out.replaceChildren(
    node("h3", { id: "user-shown", dataset: { userId: show(d.userId) } }, show(d.userId)),
    node("p", {}, `${t().credit}: `, node("b", { id: "user-credit" }, d.credit === null || d.credit === undefined ? "—" : money(d.credit))),
    node("p", {}, black
      ? badge(isNum(d.blacklistedUntil) ? t().blacklistedUntil(time(d.blacklistedUntil)) : t().blacklisted, "bad", { blacklisted: "true" })
      : badge(t().notBlacklisted, "good", { blacklisted: "false" }), " ", lift),
    node("h4", {}, t().accounts),
    accounts.length ? table([t().activityId, t().total, t().totalLeft, t().day, t().dayLeft, t().month, t().monthLeft],
      accounts.map((a) => [a.activityId, a.totalCount, a.totalCountSurplus, a.dayCount, a.dayCountSurplus, a.monthCount, a.monthCountSurplus]),
      (i) => ({ class: "account", dataset: { activityId: show(accounts[i].activityId) } }))
      : node("p", { class: "muted" }, t().noAccounts),
    node("h4", {}, t().awards),
    awards.length ? table([t().awardId, t().awardTitle, t().awardTime, t().awardState, t().activityId],
      awards.map((a) => [a.awardId, a.awardTitle, time(a.awardTime), a.state, a.activityId]),
      (i) => ({ class: "award", dataset: { awardId: show(awards[i].awardId), orderId: show(awards[i].orderId) } }))
      : node("p", { class: "muted" }, t().noAwards),
  );
}

function newBusinessNo() { $("recharge-biz").value = "console-" + Date.now().toString(36); }

function recharge(ev) {
  ev.preventDefault();
  const u = userID();
  const sku = u && positive("recharge-sku", t().sku);
  const biz = $("recharge-biz").value.trim();
  if (!u || !sku || !biz) return;
  confirmThen(t().confirmRecharge(u, sku, biz), async () => {
    const r = await call("POST", "/api/v1/admin/activity/recharge", { userId: u, sku, outBusinessNo: biz });
    if (r.code === "0000") say(t().recharged);
    else if (r.status !== 401) say(errorText(r));
    if (r.code === "0000" || r.code === "0003") { newBusinessNo(); loadUser(); }
  });
}

function skuTopUp(ev) {
  ev.preventDefault();
  const sku = positive("topup-sku", t().sku);
  const units = sku && positive("topup-sku-units", t().units);
  if (!sku || !units) return;
  confirmThen(t().confirmSkuTopUp(units, sku), async () => {
    const r = await call("POST", "/api/v1/admin/stock/add", { sku, units });
    if (ok(r)) say(t().toppedUp(show(r.data && r.data.stockCount)));
  });
}

// settings ---------------------------------------------------------------------------------

async function loadSettings() {
  const res = await call("GET", "/api/v1/admin/settings");
  const body = $("settings-table").tBodies[0];
  if (!ok(res)) { body.replaceChildren(); return; }
  const list = (Array.isArray(res.data) ? res.data : []).filter((x) => x && typeof x.key === "string");
  body.replaceChildren(...list.map(({ key: k, value, default: def, overridden }) => {
    const isSwitch = value === "open" || value === "close";
    const input = isSwitch
      ? node("select", { "aria-label": k }, node("option", { value: "open" }, "open"), node("option", { value: "close" }, "close"))
      : node("input", { value: show(value), "aria-label": k, autocomplete: "off" });
    if (isSwitch) input.value = value === "open" ? "close" : "open";
    const set = node("button", { type: "button", on: { click: () => {
      const v = input.value.trim();
      if (!v) return;
      confirmThen(t().confirmSet(k, v), async () => {
        const r = await call("GET", `/api/v1/raffle/dcc/update_config?key=${encodeURIComponent(k)}&value=${encodeURIComponent(v)}`);
        if (ok(r)) { say(t().settingSaved); reloadSettingsSoon(); }
      });
    } } }, t().set);
    const reset = node("button", { type: "button", disabled: overridden !== true, on: { click: () => confirmThen(t().confirmReset(k), async () => {
      const r = await call("POST", `/api/v1/raffle/dcc/reset_config?key=${encodeURIComponent(k)}`);
      if (ok(r)) { say(t().settingSaved); reloadSettingsSoon(); }
    }) } }, t().reset);
    const name = t().settingNames[k];
    return node("tr", { dataset: { key: k, value: show(value), overridden: String(overridden === true) } },
      node("td", {}, name ? `${name} ` : null, node("code", {}, k)),
      node("td", { class: "value" }, show(value), overridden === true ? " " : null, overridden === true ? badge(t().overridden, "warn") : null),
      node("td", {}, show(def)),
      node("td", {}, input, " ", set, " ", reset));
  }));
}

// A setting reaches every node through the shared store: read it back a moment later.
function reloadSettingsSoon() {
  setTimeout(() => { if (token && view === "settings") loadSettings(); }, 700);
}

// red packets ------------------------------------------------------------------------------

async function loadPackets() {
  const res = await call("GET", "/api/v1/admin/redpacket/packets?limit=50");
  const out = $("packets-out");
  if (!ok(res)) { out.replaceChildren(); return; }
  const list = Array.isArray(res.data) ? res.data : [];
  out.replaceChildren(list.length
    ? table([t().packetId, t().kind, t().sender, t().totalAmount, t().count, t().grabbed, t().left, t().status, t().created, t().expires],
      list.map((p) => [p.packetId, p.kind === "campaign" ? t().campaign : p.kind === "user" ? t().user : p.kind, p.sender,
        money(p.totalAmount), p.count, p.grabbed, money(p.left), p.status, time(p.createTime), time(p.expireTime)]),
      (i) => ({ class: "packet", dataset: { packetId: show(list[i].packetId) } }))
    : node("p", { class: "muted" }, t().noPackets));
}

function sendPacket(ev) {
  ev.preventDefault();
  const total = $("packet-total").value.trim();
  const count = positive("packet-count", t().count);
  if (!total || !count) return;
  const eligible = $("packet-eligible").value.split(",").map((s) => s.trim()).filter(Boolean);
  const body = { totalAmount: total, count: Number(count), mode: $("packet-mode").value, greeting: $("packet-greeting").value.trim() };
  if (eligible.length) body.eligibleUsers = eligible;
  confirmThen(t().confirmSend(total, count), async () => {
    const r = await call("POST", "/api/v1/admin/redpacket/send", body);
    if (ok(r)) { say(t().sent(show(r.data && r.data.packetId))); loadPackets(); }
  });
}

// rain -------------------------------------------------------------------------------------

async function loadRain() {
  const res = await call("GET", "/api/v1/admin/rain/sessions");
  const out = $("rain-out");
  if (!ok(res)) { out.replaceChildren(); return; }
  const list = Array.isArray(res.data) ? res.data : [];
  if (!list.length) { out.replaceChildren(node("p", { class: "muted" }, t().noSessions)); return; }
  out.replaceChildren(table(
    [t().sessionId, t().name, t().state, t().start, t().end, t().total, t().released, t().issued, t().seqNo, t().nodes, t().quota],
    list.map((s) => {
      const nodes = s.nodes && typeof s.nodes === "object" ? Object.entries(s.nodes) : [];
      const total = node("input", { class: "units", inputmode: "numeric", placeholder: t().total, "aria-label": t().total });
      const cap = node("input", { class: "units", inputmode: "numeric", placeholder: t().userCap, "aria-label": t().userCap });
      const save = node("button", { type: "button", on: { click: () => {
        const body = {};
        for (const [k, el] of [["total", total], ["userCap", cap]]) {
          const v = el.value.trim();
          if (!v) continue;
          if (!/^[0-9]{1,9}$/.test(v)) { say(t().badNumber(k === "total" ? t().total : t().userCap)); return; }
          body[k] = Number(v);
        }
        if (!Object.keys(body).length) { say(t().quotaEmpty); return; }
        confirmThen(t().confirmQuota(s.id), async () => {
          const r = await call("PUT", `/api/v1/admin/rain/sessions/${encodeURIComponent(s.id)}/quota`, body);
          if (ok(r)) { say(t().quotaSaved(show(r.data && r.data.seqNo))); loadRain(); }
        });
      } } }, t().set);
      const more = node("button", { type: "button", on: { click: () => loadRainReport(s.id) } }, t().details);
      return [s.id, s.name, s.state, time(s.start), time(s.end), s.total, s.released, s.issued, s.seqNo,
        nodes.length ? nodes.map(([n, q]) => `${n}: ${q}`).join(", ") : "—", node("span", { class: "inline" }, total, cap, save, more)];
    }),
    (i) => ({ class: "session", dataset: { sessionId: show(list[i].id), seqNo: show(list[i].seqNo) } })),
  node("div", { id: "rain-report" }));
}

// tally renders a rain ledger line: how many, the cash among them, draws per SKU, awards.
function tally(x) {
  if (!x || typeof x !== "object") return "—";
  const parts = [`${show(x.count)} · ¥${money(x.cash)}`];
  for (const [k, v] of Object.entries(x.skus || {})) parts.push(`SKU ${k} × ${v}`);
  for (const [k, v] of Object.entries(x.awards || {})) parts.push(`#${k} × ${v}`);
  return parts.join(", ");
}

// loadRainReport shows a session's operator report: the quota in force (its SeqNo and each
// node's), the budget and, once the session ended, its ledger.
async function loadRainReport(id) {
  const res = await call("GET", `/api/v1/admin/rain/sessions/${encodeURIComponent(id)}`);
  const out = $("rain-report");
  if (!out || !ok(res)) return;
  const d = res.data || {};
  const q = d.quota || {};
  const nodes = Array.isArray(d.nodes) ? d.nodes : [];
  const l = d.ledger;
  out.replaceChildren(
    node("h4", {}, `#${show(d.sessionId)} ${d.title || ""}`),
    table([t().seqNo, t().total, t().userCap, t().burst, t().weights, t().budget, t().end],
      [[q.seqNo, q.total, q.userCap, q.burst, Array.isArray(q.weights) && q.weights.length ? q.weights.join(":") : "—",
        d.budget === null || d.budget === undefined ? t().noBudget : "¥" + money(d.budget), time(q.endTime)]]),
    table([t().nodes, t().seqNo], nodes.map((n) => [n && n.nodeId, n && n.seqNo])),
    l ? table([t().ledgerGranted, t().ledgerUnwon, t().ledgerUnreleased, t().end],
      [[tally(l.granted), tally(l.unwon), tally(l.unreleased), time(Date.parse(l.endedAt))]]) : null,
  );
}

function createRain(ev) {
  ev.preventDefault();
  const inSec = $("rain-in").value.trim(), secs = positive("rain-secs", t().durationSec);
  const cap = positive("rain-cap", t().userCap), count = positive("rain-count", t().prizeCount);
  const amount = $("rain-amount").value.trim();
  if (!/^[0-9]{1,7}$/.test(inSec)) { say(t().badNumber(t().startsInSec)); return; }
  if (!secs || !cap || !count || !amount) return;
  confirmThen(t().confirmCreateRain(count, amount), async () => {
    const start = Date.now() + Number(inSec) * 1000;
    const body = { title: $("rain-title").value.trim(), startTime: start, endTime: start + Number(secs) * 1000,
      userCap: Number(cap), prizes: [{ kind: "cash", amount, count: Number(count) }] };
    const r = await call("POST", "/api/v1/admin/rain/sessions", body);
    if (ok(r)) { say(t().rainCreated(show(r.data && r.data.sessionId))); loadRain(); }
  });
}

// dead letters -----------------------------------------------------------------------------

async function loadDLQ() {
  const res = await call("GET", "/api/v1/admin/dlq");
  const out = $("dlq-out");
  if (!ok(res)) { out.replaceChildren(); return; }
  const list = Array.isArray(res.data) ? res.data : [];
  out.replaceChildren(list.length
    ? table([t().seq, t().stream, t().subject, t().msgId, t().reasons, t().deadAt, t().replay],
      list.map((dl) => [dl.seq, dl.stream, dl.subject, dl.msgId, Array.isArray(dl.reasons) ? dl.reasons.join("; ") : "—", time(dl.deadAt),
        node("button", { type: "button", on: { click: () => confirmThen(t().confirmReplay(dl.seq), () => replay({ seq: dl.seq })) } }, t().replay)]),
      (i) => ({ class: "dead-letter", dataset: { seq: show(list[i].seq) } }))
    : node("p", { class: "muted" }, t().noDeadLetters));
}

async function replay(body) {
  const r = await call("POST", "/api/v1/admin/dlq/replay", body);
  if (ok(r)) { say(t().replayed(Array.isArray(r.data) ? r.data.length : 0)); loadDLQ(); }
}

// reconcile --------------------------------------------------------------------------------

async function reconcile(ev) {
  ev.preventDefault();
  const h = Number($("reconcile-hours").value.trim());
  if (!(h > 0 && h <= 168)) { say(t().badHours); return; }
  const out = $("reconcile-out");
  out.replaceChildren(node("p", { class: "muted" }, t().reconcileRunning));
  const res = await call("POST", "/api/v1/admin/reconcile", { since: Math.round(Date.now() - h * 3600e3) });
  if (res.code === "0009") { out.replaceChildren(); say(t().reconcileBusy); return; } // one run at a time per node
  if (!ok(res)) { out.replaceChildren(); return; }
  say("");
  const d = res.data || {};
  const checks = Array.isArray(d.checks) ? d.checks : [];
  out.replaceChildren(
    node("p", {}, d.ok === true ? badge(t().reconcileOk, "good", { ok: "true" }) : badge(t().reconcileBad, "bad", { ok: "false" }),
      ` ${t().since(time(d.since))} · ${t().ranMs(show(d.ranMs))}`),
    ...checks.map((c) => {
      const disc = Array.isArray(c.discrepancies) ? c.discrepancies : [];
      const skipped = Array.isArray(c.skipped) ? c.skipped : [];
      return node("div", { class: "check", dataset: { name: show(c.name), ok: String(c.ok === true) } },
        node("h4", {}, `${show(c.name)} `, c.ok === true ? badge("OK", "good") : badge(t().found(isNum(c.found) ? c.found : disc.length), "bad")),
        c.checked ? node("p", { class: "muted" }, `${t().checked}: ${c.checked}`) : null,
        skipped.length ? node("p", { class: "muted" }, `${t().skipped}: ${skipped.join("; ")}`) : null,
        disc.length ? node("ul", { class: "discrepancies" }, ...disc.map((x) => node("li", {}, show(x)))) : null);
    }),
  );
}

// --- wiring -------------------------------------------------------------------------------

function render() {
  applyText(text);
  $("lang").textContent = t().lang;
  $("signin").hidden = !!token;
  $("console").hidden = !token;
  $("signout").hidden = !token;
  if (!token) $("node").textContent = "";
}

onLang(() => {
  render();
  if (token) loaders[view]();
});

function init() {
  $("signin-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", () => { signOut(); say(t().signedOut); });
  $("lang").addEventListener("click", () => setLang(state.lang === "zh" ? "en" : "zh"));
  for (const b of document.querySelectorAll("#views button")) b.addEventListener("click", () => openView(b.dataset.view));
  $("confirm-yes").addEventListener("click", () => { const f = pending; closeConfirm(); if (f) f(); });
  $("confirm-no").addEventListener("click", closeConfirm);
  $("strategy-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadStrategy(); });
  $("armory").addEventListener("click", armory);
  $("user-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadUser(); });
  $("recharge-form").addEventListener("submit", recharge);
  $("sku-stock-form").addEventListener("submit", skuTopUp);
  $("packet-form").addEventListener("submit", sendPacket);
  $("packets-refresh").addEventListener("click", loadPackets);
  $("rain-form").addEventListener("submit", createRain);
  $("rain-refresh").addEventListener("click", loadRain);
  $("dlq-refresh").addEventListener("click", loadDLQ);
  $("dlq-replay-all").addEventListener("click", () => confirmThen(t().confirmReplayAll, () => replay({ all: true })));
  $("reconcile-form").addEventListener("submit", reconcile);
  newBusinessNo();
  document.documentElement.lang = state.lang;
  render();
}

init();
