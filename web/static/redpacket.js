// The red packet page: send a packet from the signed-in user's credit and share its link;
// the grab page (/redpacket?packet=<id>) with the packet's detail, its grabs and the
// luckiest one; and the wallet. It talks only to the _by_token endpoints (and the public
// detail); the token lives in common.js's memory and nowhere else, and the share link
// names no user.

import {
  state, api, sentence, applyText, setLang, onLang, onUser, identify, demoSignIn, signOut,
  serverNow, pageLink, money,
} from "/static/common.js";

const text = {
  zh: {
    title: "红包", signInAs: "登录用户", signIn: "登录", navGrid: "抽奖", navRain: "红包雨", lang: "EN",
    signedInAs: (u) => `已登录：${u}`, signInFirst: "请先登录", signInToSend: "登录后即可发红包",
    wallet: "我的钱包", balance: (a, t) => `可用 ¥${a}（累计 ¥${t}）`, earnHint: "积分不够？去抽奖页每日签到领积分",
    send: "发红包", mode: "类型", modeRandom: "拼手气红包", modeFixed: "普通红包",
    totalAmount: "总金额（元）", eachAmount: "单个金额（元）", count: "红包个数", greeting: "祝福语",
    greetingDefault: "恭喜发财，大吉大利", expiry: "有效期", hour1: "1 小时", day1: "24 小时", day7: "7 天",
    sendButton: "塞钱进红包", sendTotal: (a) => `合计 ¥${a}，从可用余额扣除`,
    shareHint: "红包已发出，把链接发给朋友：", copy: "复制", copied: "链接已复制", copyManual: "请长按链接手动复制", view: "查看红包",
    badAmount: "请输入金额，最多两位小数", badCount: (max) => `红包个数为 1 到 ${max} 个`,
    tooSmall: "每个红包至少 ¥0.01", tooLarge: (a) => `单次最多发 ¥${a}`, badGreeting: "祝福语最多 64 个字",
    sendRefused: "金额、个数或祝福语不符合要求，请修改后重试",
    from: (u) => (u ? `${u} 的红包` : "官方红包"), grab: "開", won: (a) => `抢到 ¥${a}`, mine: (a) => `你已领取 ¥${a}`,
    alreadyGrabbed: (a) => `你已经领过这个红包了，领到 ¥${a}`, amountCount: "金额 / 个数", grabbed: "已领取", left: "剩余",
    status: "状态", expires: "过期时间", grabList: "领取记录", refresh: "刷新", noGrabs: "还没有人领取",
    total: (a, n) => `¥${a} · ${n} 个`, grabbedOf: (n, c, a) => `${n}/${c} 个，¥${a}`, leftOf: (n, a) => `${n} 个，¥${a}`,
    states: { open: "可领取", empty: "已抢完", expired: "已过期", closed: "已结束", refunded: "已过期，余额已退回" },
    modes: { random: "拼手气", fixed: "普通" }, luckiest: "手气最佳", you: "（我）", refunded: (a) => `已退回 ¥${a}`,
    noPacket: "红包不存在，请检查链接", expiresIn: (d) => `（剩余 ${d}）`,
  },
  en: {
    title: "Red packets", signInAs: "Sign in as", signIn: "Sign in", navGrid: "Lucky draw", navRain: "Red packet rain", lang: "中文",
    signedInAs: (u) => `Signed in as ${u}`, signInFirst: "Please sign in first", signInToSend: "Sign in to send a red packet",
    wallet: "My wallet", balance: (a, t) => `¥${a} available (¥${t} received in all)`, earnHint: "Need credit? Sign in daily on the lucky draw page",
    send: "Send a red packet", mode: "Kind", modeRandom: "Lucky (random amounts)", modeFixed: "Equal amounts",
    totalAmount: "Total amount (¥)", eachAmount: "Amount each (¥)", count: "Number of packets", greeting: "Greeting",
    greetingDefault: "Best wishes and good luck", expiry: "Valid for", hour1: "1 hour", day1: "24 hours", day7: "7 days",
    sendButton: "Send", sendTotal: (a) => `¥${a} in total, paid from your available balance`,
    shareHint: "Sent! Share this link:", copy: "Copy", copied: "Link copied", copyManual: "Press and hold the link to copy it", view: "Open the packet",
    badAmount: "Enter an amount with at most two decimals", badCount: (max) => `From 1 to ${max} packets`,
    tooSmall: "Each packet needs at least ¥0.01", tooLarge: (a) => `At most ¥${a} per packet`, badGreeting: "The greeting can have at most 64 characters",
    sendRefused: "The amount, number or greeting is not allowed; change it and try again",
    from: (u) => (u ? `A red packet from ${u}` : "A red packet from us"), grab: "Open", won: (a) => `You got ¥${a}`, mine: (a) => `You got ¥${a}`,
    alreadyGrabbed: (a) => `You already opened this packet and got ¥${a}`, amountCount: "Amount / packets", grabbed: "Opened", left: "Left",
    status: "Status", expires: "Expires", grabList: "Who got what", refresh: "Refresh", noGrabs: "Nobody has opened it yet",
    total: (a, n) => `¥${a} · ${n}`, grabbedOf: (n, c, a) => `${n} of ${c}, ¥${a}`, leftOf: (n, a) => `${n}, ¥${a}`,
    states: { open: "open", empty: "all opened", expired: "expired", closed: "over", refunded: "expired, the rest went back to the sender" },
    modes: { random: "lucky", fixed: "equal" }, luckiest: "luckiest", you: " (me)", refunded: (a) => `¥${a} refunded`,
    noPacket: "There is no such red packet; check the link", expiresIn: (d) => ` (${d} left)`,
  },
};

// The service's default limits (redpacket.Limits): checked here so that a person learns
// what to change before sending; the server checks its own, possibly smaller, limits.
const maxCount = 1000;
const maxTotalCents = 20_000_00;
const maxGreeting = 64;

const $ = (id) => document.getElementById(id);
const t = () => text[state.lang];

const packetID = new URLSearchParams(location.search).get("packet") || "";
let detail = null; // the packet's last detail, null until read
let notFound = false;
let myGrab = null; // {amount}: the signed-in user's grab of the packet, from a grab or the detail
let grabNote = null; // {kind: "won"|"already"|"error", amount, msg, code, tries}: the last grab's answer
let wallet = null; // {totalAmount, availableAmount}
let grabbing = false;
let sending = false;
let sent = ""; // the id of the packet just sent

// say shows msg; code names the API's answer it words ("form" for the page's own check of
// the send form), kept on the element for tests.
function say(msg, code = "") {
  $("message").textContent = msg || "";
  $("message").dataset.code = msg ? code : "";
}

// cents parses an amount typed in yuan ("3", "3.5", "3.50") to integer cents; NaN when it
// is not one.
function cents(s) {
  const m = /^\s*(\d{1,9})(?:\.(\d{1,2}))?\s*$/.exec(s);
  if (!m) return NaN;
  return Number(m[1]) * 100 + Number((m[2] || "").padEnd(2, "0"));
}

const yuan = (c) => (c / 100).toFixed(2);

function duration(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return (d ? d + "d " : "") + h + ":" + two(m) + ":" + two(r);
}

onUser((u) => {
  myGrab = null;
  grabNote = null;
  wallet = null;
  if (u) { loadWallet(); if (packetID) loadDetail(); }
  render();
});

async function loadWallet() {
  if (!state.token) { wallet = null; renderWallet(); return; }
  const res = await api("GET", "/api/v1/redpacket/wallet_by_token");
  if (res.status === 401) { say(sentence(res), res.code); signOut(); return; }
  if (res.code !== "0000") { say(sentence(res), res.code); return; }
  wallet = res.data || {}; // null: shown as "—", never a crash
  renderWallet();
}

async function loadDetail() {
  if (!packetID) return;
  if (!/^\d{1,30}$/.test(packetID)) { notFound = true; renderPacket(); return; }
  const res = await api("GET", "/api/v1/redpacket/detail?packetId=" + encodeURIComponent(packetID));
  if (res.code === "0002") { notFound = true; detail = null; renderPacket(); return; }
  if (res.code !== "0000") { say(sentence(res), res.code); return; }
  if (!res.data) return; // nothing to show: keep what is shown
  notFound = false;
  detail = res.data;
  const grabs = Array.isArray(detail.grabs) ? detail.grabs : [];
  const mine = state.user ? grabs.find((g) => g && g.userId === state.user) : null;
  if (mine) myGrab = { amount: mine.amount };
  renderPacket();
}

// grab opens the packet for the signed-in user. A 0009 or ERR_RP_004 (the outcome is not
// known yet) is retried once after its Retry-After; a second grab answers 0003 with the
// first one's amount.
async function grab() {
  if (!state.token) { say(t().signInFirst); return; }
  if (grabbing) return;
  grabbing = true;
  renderPacket();
  let tries = 1;
  let res = await api("POST", "/api/v1/redpacket/grab_by_token", { packetId: packetID });
  if (res.code === "0009" || res.code === "ERR_RP_004") {
    await new Promise((ok) => setTimeout(ok, Math.min(Math.max(res.retryAfter, 1), 10) * 1000));
    tries++;
    res = await api("POST", "/api/v1/redpacket/grab_by_token", { packetId: packetID });
  }
  grabbing = false;
  const amount = res.data && res.data.amount != null ? res.data.amount : null;
  if (res.code === "0000" && amount != null) {
    myGrab = { amount };
    grabNote = { kind: "won", amount, code: res.code, tries };
  } else if (res.code === "0003" && res.status === 200 && amount != null) {
    myGrab = { amount };
    grabNote = { kind: "already", amount, code: res.code, tries };
  } else {
    grabNote = { kind: "error", msg: sentence(res), code: res.code || (res.network ? "network" : ""), tries };
    if (res.status === 401) signOut();
  }
  renderPacket();
  await Promise.all([loadDetail(), loadWallet()]);
}

// sendForm reads and checks the form; it resolves to the request body, or a sentence.
function sendForm() {
  const fixed = document.querySelector('input[name="mode"]:checked').value === "fixed";
  const amount = cents($("amount").value);
  const count = Number($("count").value);
  const greeting = $("greeting").value.trim();
  if (!Number.isInteger(count) || count < 1 || count > maxCount) return t().badCount(maxCount);
  if (!Number.isFinite(amount) || amount <= 0) return t().badAmount;
  const total = fixed ? amount * count : amount;
  if (total < count) return t().tooSmall;
  if (total > maxTotalCents) return t().tooLarge(yuan(maxTotalCents));
  if ([...greeting].length > maxGreeting) return t().badGreeting;
  return {
    totalAmount: yuan(total), count, mode: fixed ? "fixed" : "random",
    greeting: greeting || t().greetingDefault, expireMinutes: Number($("expiry").value),
  };
}

async function send() {
  if (!state.token) { say(t().signInFirst); return; }
  if (sending) return;
  const body = sendForm();
  if (typeof body === "string") { say(body, "form"); return; }
  sending = true;
  renderSend();
  const res = await api("POST", "/api/v1/redpacket/send_by_token", body);
  sending = false;
  if (res.code === "0000" && res.data && res.data.packetId) {
    say("");
    sent = String(res.data.packetId);
    $("copy-result").textContent = "";
  } else if (res.code === "0002") {
    say(t().sendRefused, res.code);
  } else if (res.code === "ERR_CREDIT_001") {
    say(sentence(res) + " · " + t().earnHint, res.code);
  } else {
    say(sentence(res), res.code || (res.network ? "network" : ""));
    if (res.status === 401) signOut();
  }
  renderSend();
  loadWallet();
}

// shareURL is the packet's link as anyone opens it: the page and the packet, no user.
const shareURL = (id) => new URL("/redpacket?packet=" + encodeURIComponent(id), location.origin).href;

async function copyLink() {
  const input = $("share-link");
  let ok = false;
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(input.value);
      ok = true;
    }
  } catch { ok = false; } // not allowed here (no focus, no permission): select it instead
  if (!ok) {
    input.focus();
    input.select();
  }
  $("copy-result").textContent = ok ? t().copied : t().copyManual;
}

function render() {
  applyText(text);
  document.title = t().title + " · bigmarket";
  $("lang").textContent = t().lang;
  $("signin-form").hidden = !!state.token || !(state.config && state.config.demo);
  $("who").hidden = !state.token;
  $("who").textContent = state.token ? t().signedInAs(state.user) : "";
  $("nav-grid").href = pageLink("/");
  $("nav-rain").href = pageLink("/rain");
  renderWallet();
  renderSend();
  renderPacket();
}

function renderWallet() {
  const el = $("wallet-balance");
  const box = $("wallet");
  box.hidden = !state.token;
  if (!wallet) {
    el.textContent = state.token ? "…" : "";
    delete box.dataset.available;
    delete box.dataset.total;
    return;
  }
  box.dataset.available = money(wallet.availableAmount);
  box.dataset.total = money(wallet.totalAmount);
  el.textContent = t().balance(money(wallet.availableAmount), money(wallet.totalAmount));
}

function renderSend() {
  const fixed = document.querySelector('input[name="mode"]:checked').value === "fixed";
  const label = $("amount-label");
  label.dataset.t = fixed ? "eachAmount" : "totalAmount";
  label.textContent = t()[label.dataset.t];
  const amount = cents($("amount").value);
  const count = Number($("count").value);
  const total = fixed ? amount * count : amount;
  $("send-total").textContent = !state.token ? t().signInToSend
    : Number.isFinite(total) && total > 0 && Number.isInteger(count) && count > 0 ? t().sendTotal(yuan(total)) : "";
  $("send-button").disabled = sending || !state.token;
  $("share").hidden = !sent;
  $("share-link").setAttribute("aria-label", t().shareHint);
  if (sent) {
    $("share-link").value = shareURL(sent);
    $("share").dataset.packetId = sent;
    $("share-open").href = pageLink("/redpacket", { packet: sent });
  }
}

function renderPacket() {
  const box = $("packet");
  box.hidden = !packetID;
  if (!packetID) return;
  const result = $("grab-result");
  $("packet-body").hidden = notFound;
  if (notFound) {
    box.dataset.state = "missing";
    $("packet-from").textContent = t().noPacket;
    $("packet-greeting").textContent = "";
    $("grab").hidden = true;
    $("my-grab").hidden = true;
    $("packet-note").hidden = true;
    result.textContent = "";
    return;
  }
  const d = detail;
  const grabs = d && Array.isArray(d.grabs) ? d.grabs.filter((g) => g) : [];
  const st = d ? d.state || "open" : "";
  box.dataset.state = st;
  const empty = st === "open" && d && Number(d.remainingCount) === 0;
  $("packet-from").textContent = d ? t().from(d.senderId || "") : "…";
  $("packet-greeting").textContent = d ? d.greeting || "" : "";
  $("packet-total").textContent = d ? t().total(money(d.totalAmount), d.count ?? "—") + " · " + (t().modes[d.mode] || d.mode || "") : "";
  $("packet-grabbed").textContent = d ? t().grabbedOf(d.grabbedCount ?? grabs.length, d.count ?? "—", money(d.grabbedAmount)) : "";
  let left = d ? t().leftOf(d.remainingCount ?? "—", money(d.remainingAmount)) : "";
  if (d && Number(d.refundAmount) > 0) left += " · " + t().refunded(money(d.refundAmount));
  $("packet-left").textContent = left;
  $("packet-state").textContent = d ? t().states[empty ? "empty" : st] || st : "";
  renderExpiry();

  // Nothing left for this user to open: say why, in the API's own words.
  const note = $("packet-note");
  const why = !d || myGrab || (grabNote && grabNote.kind === "error") ? "" : empty ? "ERR_RP_001" : st !== "open" ? "ERR_RP_002" : "";
  note.hidden = !why;
  note.textContent = why ? sentence({ status: 200, code: why }) : "";
  const mine = $("my-grab");
  mine.hidden = !myGrab;
  if (myGrab) {
    mine.dataset.amount = money(myGrab.amount);
    mine.textContent = t().mine(money(myGrab.amount));
  } else {
    delete mine.dataset.amount;
  }
  // Signed out, the button still shows (a tap asks to sign in first).
  const canGrab = !!d && st === "open" && !empty && !myGrab;
  const btn = $("grab");
  btn.hidden = !canGrab && !grabbing;
  btn.disabled = grabbing;

  result.dataset.code = grabNote ? grabNote.code : "";
  result.dataset.tries = grabNote ? String(grabNote.tries) : "";
  result.className = grabNote ? grabNote.kind : "";
  if (!grabNote) result.textContent = "";
  else if (grabNote.kind === "won") result.textContent = t().won(money(grabNote.amount));
  else if (grabNote.kind === "already") result.textContent = t().alreadyGrabbed(money(grabNote.amount));
  else result.textContent = grabNote.msg;

  const list = $("grabs");
  list.replaceChildren();
  const lucky = d && d.luckiest ? d.luckiest : null;
  let luckyMarked = false;
  for (const g of grabs) {
    const li = document.createElement("li");
    li.className = "grab";
    li.dataset.userId = g.userId || "";
    li.dataset.amount = money(g.amount);
    const who = document.createElement("span");
    who.textContent = (g.userId || "—") + (state.user && g.userId === state.user ? t().you : "");
    const when = document.createElement("time");
    if (typeof g.grabTime === "number") {
      when.dateTime = new Date(g.grabTime).toISOString();
      when.textContent = new Date(g.grabTime).toLocaleTimeString(state.lang === "zh" ? "zh-CN" : "en-GB");
    }
    const amt = document.createElement("strong");
    amt.textContent = "¥" + money(g.amount);
    li.append(who, when, amt);
    if (lucky && !luckyMarked && g.userId === lucky.userId && money(g.amount) === money(lucky.amount)) {
      luckyMarked = true;
      li.dataset.luckiest = "true";
      const badge = document.createElement("em");
      badge.className = "badge";
      badge.textContent = t().luckiest;
      li.append(badge);
    }
    list.append(li);
  }
  if (d && !grabs.length) {
    const li = document.createElement("li");
    li.textContent = t().noGrabs;
    list.append(li);
  }
}

// renderExpiry shows when the packet expires and, while it is open, how long is left on
// the server's clock.
function renderExpiry() {
  const d = detail;
  const el = $("packet-expiry");
  if (!d || typeof d.expireTime !== "number") { el.textContent = ""; return; }
  const at = new Date(d.expireTime).toLocaleString(state.lang === "zh" ? "zh-CN" : "en-GB");
  const left = d.expireTime - serverNow();
  el.textContent = at + ((d.state || "open") === "open" && left > 0 ? t().expiresIn(duration(left)) : "");
}

onLang(render);
$("lang").addEventListener("click", () => setLang(state.lang === "zh" ? "en" : "zh"));
$("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const u = $("user").value.trim();
  if (u) say(await demoSignIn(u));
});
$("send-form").addEventListener("submit", (e) => { e.preventDefault(); send(); });
$("send-form").addEventListener("input", () => renderSend());
$("grab").addEventListener("click", () => grab());
$("copy").addEventListener("click", () => copyLink());
$("refresh").addEventListener("click", () => { loadDetail(); loadWallet(); });

setLang(state.lang);
const signedIn = await identify();
say(signedIn);
if (packetID && !state.token) await loadDetail(); // signed in: onUser has read it
render();
setInterval(renderExpiry, 1000);
