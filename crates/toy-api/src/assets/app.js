// The toy node's web wallet and explorer. Plain JavaScript, no libraries:
// everything comes from the node's own JSON API.
"use strict";

const $ = (id) => document.getElementById(id);
const short = (h) => (h ? h.slice(0, 10) + "…" : "");
const el = (tag, attrs = {}, text = "") => {
  const e = document.createElementNS(tag === "svg" || ["circle", "line", "polyline", "rect", "text", "g", "title"].includes(tag) ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text) e.textContent = text;
  return e;
};

async function api(path, body) {
  const opts = body === undefined ? {} : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
  const res = await fetch(path, opts);
  let data = null;
  try { data = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) {
    const err = new Error((data && data.error) || res.statusText);
    err.status = res.status;
    throw err;
  }
  return data;
}

const PAGE = 12;     // block cards per page
let wallet = null;   // { address, balance, nonce }
let blocksFrom = null;  // height of the newest card shown; null follows the tip
let tipHeight = 0;
let shownTop = 0;       // height of the newest card on the page
let blocksSeq = 0;      // only the latest blocks request may draw
const RATE_SAMPLES = 60; // hash-rate samples kept for the chart (3 min at one per 3 s)
const rates = [];
let tracked = null;  // id of the last sent transaction
// What the chain's records hold (from /api/status): the page leaves out
// what a chain has no field for (the workshop chain: times and fees).
let profile = { name: "toy", address_digits: 66, fees: true, timestamps: true, resolve: true };

function applyProfile(p) {
  if (!p || JSON.stringify(p) === JSON.stringify(profile)) return;
  profile = p;
  document.body.dataset.chain = p.name;
  $("fee-label").hidden = !p.fees;
  $("intervals-box").hidden = !p.timestamps;
  $("to").placeholder = `${p.address_digits} hex digits`;
  $("fee-head").hidden = !p.fees;
}

async function refreshStatus() {
  try {
    const s = await api("/api/status");
    $("offline").hidden = true;
    document.body.classList.remove("stale");
    tipHeight = s.height;
    applyProfile(s.chain);
    const chainName = profile.name === "toy" ? "" : `${profile.name} chain · `;
    $("status").textContent = `${chainName}height ${s.height} · tip ${short(s.tip)} · ${s.peers} peers · mempool ${s.mempool} · ${(s.hash_rate / 1e6).toFixed(2)} MH/s`;
    $("mine").hidden = !s.can_mine;
    const sy = s.sync;
    $("sync").hidden = !(sy && sy.active);
    if (sy && sy.active) {
      $("sync-bar").max = Math.max(sy.total, 1);
      $("sync-bar").value = sy.done;
      $("sync-text").textContent = `syncing ${sy.done}/${sy.total} blocks, ${sy.blocks_per_s.toFixed(0)} blocks/s, ~${sy.eta_s.toFixed(0)} s left`;
    }
    $("rate").textContent = s.hash_rate > 0 ? `· ${(s.hash_rate / 1e6).toFixed(2)} MH/s now` : "· not mining";
    rates.push(s.hash_rate);
    if (rates.length > RATE_SAMPLES) rates.shift();
    drawRates();
  } catch (e) {
    $("status").textContent = "node unreachable: " + e.message;
    $("offline").hidden = false;
    document.body.classList.add("stale");
  }
}

async function refreshWallet() {
  try {
    wallet = await api("/api/wallet");
    $("address").textContent = wallet.address;
    $("balance").textContent = wallet.balance.toLocaleString("en");
    $("nonce").textContent = wallet.nonce;
  } catch (e) { /* shown by the status line */ }
}

async function refreshBlocks() {
  try {
    const from = blocksFrom === null ? "" : `&from=${blocksFrom}`;
    const seq = ++blocksSeq;
    const blocks = await api(`/api/blocks?limit=${PAGE}${from}`);
    if (seq !== blocksSeq) return;
    const box = $("blocks");
    const top = blocks.length ? blocks[0].height : 0, bottom = blocks.length ? blocks[blocks.length - 1].height : 0;
    $("page-info").textContent = blocks.length ? `#${top} – #${bottom}${blocksFrom === null ? " · following the tip" : ""}` : "";
    shownTop = top;
    $("newer").disabled = blocksFrom === null;
    $("older").disabled = bottom === 0;
    box.replaceChildren(...blocks.map((b) => {
      const card = el("div", { class: "block-card", "data-height": b.height, "data-hash": b.hash, tabindex: "0" });
      card.append(el("div", { class: "h" }, `#${b.height}`), el("code", {}, short(b.hash)));
      if (b.time_ms !== undefined) card.append(el("div", { class: "muted" }, new Date(b.time_ms).toLocaleTimeString()));
      card.append(el("div", { class: "muted" }, `miner ${short(b.miner)}`),
        el("div", { class: "muted txs" }, `${b.tx_count} transaction${b.tx_count === 1 ? "" : "s"}`));
      card.addEventListener("click", () => openBlock(b.hash));
      card.addEventListener("keydown", (e) => { if (e.key === "Enter") openBlock(b.hash); });
      return card;
    }));
    if (blocksFrom === null && profile.timestamps) drawIntervals(blocks);
  } catch (e) { /* shown by the status line */ }
}

function pageBlocks(older) {
  const top = blocksFrom === null ? shownTop : blocksFrom;
  const next = older ? Math.max(top - PAGE, 0) : top + PAGE;
  blocksFrom = !older && next >= tipHeight ? null : next;
  refreshBlocks();
}

async function openBlock(hash) {
  const b = await api("/api/blocks/" + hash);
  $("dialog-title").textContent = `Block #${b.height}`;
  const when = b.time_ms === undefined ? "" : ` · ${new Date(b.time_ms).toLocaleString()}`;
  $("dialog-meta").textContent = `${b.hash}${when} · ${b.confirmations} confirmations · reward ${b.reward}`;
  $("dialog-txs").replaceChildren(...(b.txs.length ? b.txs.map((t) => {
    const tr = el("tr", { class: "tx-row" });
    tr.append(el("td", {}, ""), el("td", {}, ""), el("td", {}, ""), el("td", {}, String(t.amount)));
    if (profile.fees) tr.append(el("td", {}, String(t.fee ?? 0)));
    tr.children[0].append(el("code", {}, short(t.id)));
    tr.children[1].append(el("code", {}, short(t.sender)));
    tr.children[2].append(el("code", {}, short(t.recipient)));
    return tr;
  }) : [(() => { const tr = el("tr"); tr.append(el("td", { colspan: profile.fees ? "5" : "4" }, "no transactions")); return tr; })()]));
  $("block-dialog").showModal();
}

// `state`: true (done: green), false (refused or failed: red) or
// "pending" (sent, not in a block yet: amber).
function showResult(text, state) {
  const r = $("result");
  r.textContent = text;
  r.className = "result " + (state === "pending" ? "pending" : state ? "ok" : "bad");
}

async function send(ev) {
  ev.preventDefault();
  const to = $("to").value.trim();
  const amount = Number($("amount").value);
  const fee = profile.fees ? Number($("fee").value || 0) : 0;
  const digits = profile.address_digits;
  if (!new RegExp(`^[0-9a-fA-F]{${digits}}$`).test(to)) return showResult(`The recipient must be an address of ${digits} hex digits.`, false);
  if (!Number.isInteger(amount) || amount <= 0) return showResult("The amount must be a whole number above 0.", false);
  if (!Number.isInteger(fee) || fee < 0) return showResult("The fee must be a whole number, 0 or more.", false);
  if (wallet && amount + fee > wallet.balance) return showResult(`Not enough balance: ${wallet.balance} available.`, false);
  try {
    const body = { to, amount, sign: $("sign").checked };
    if (profile.fees) body.fee = fee;
    const r = await api("/api/wallet/send", body);
    tracked = r.id;
    showResult(`Sent: ${r.id} — pending`, "pending");
    followTracked();
  } catch (e) {
    tracked = null;
    showResult("Rejected: " + e.message.replace(/^rejected: /, ""), false);
  }
}

async function followTracked() {
  if (!tracked) return;
  try {
    const t = await api("/api/txs/" + tracked);
    if (t.status === "confirmed") {
      showResult(`Confirmed: ${t.tx.id} in block #${t.block_height} (${t.confirmations} confirmation${t.confirmations === 1 ? "" : "s"})`, true);
    } else {
      showResult(`Sent: ${t.tx.id} — pending`, "pending");
    }
  } catch (e) { /* keep the last state */ }
}

let networkBusy = false;  // a crawl of the network can take seconds: one at a time

async function refreshNetwork() {
  if (networkBusy) return;
  networkBusy = true;
  try {
    const [peers, net, tree] = await Promise.all([api("/api/peers"), api("/api/network"), api("/api/tree?depth=30")]);
    $("peers").replaceChildren(...(peers.length ? peers.map((p) => el("li", {}, p)) : [el("li", {}, "no peers")]));
    drawGraph(net.nodes);
    drawTree(tree);
  } catch (e) { /* shown by the status line */ }
  networkBusy = false;
}

function drawGraph(nodes) {
  const svg = $("graph");
  const names = new Set();
  for (const n of nodes) { names.add(n.addr); n.peers.forEach((p) => names.add(p)); }
  const list = [...names].slice(0, 40);
  // Every node on a circle (this one first, at the top); a lone node in the middle.
  const pos = new Map(list.map((a, i) => {
    if (list.length === 1) return [a, [150, 150]];
    const ang = (2 * Math.PI * i) / list.length - Math.PI / 2;
    return [a, [150 + 115 * Math.cos(ang), 150 + 115 * Math.sin(ang)]];
  }));
  const parts = [];
  for (const n of nodes) for (const p of n.peers) {
    const a = pos.get(n.addr), b = pos.get(p);
    if (a && b) parts.push(el("line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1], stroke: "#9ca3af" }));
  }
  list.forEach((a, i) => {
    const [x, y] = pos.get(a);
    const g = el("g");
    g.append(el("circle", { cx: x, cy: y, r: 8, fill: i === 0 ? "#2957d9" : "#10b981" }), el("title", {}, a));
    g.append(el("text", { x, y: y - 11, "font-size": 9, "text-anchor": "middle" }, a.split(":").pop()));
    parts.push(g);
  });
  svg.replaceChildren(...parts);
}

function drawTree(blocks) {
  const svg = $("tree");
  if (!blocks.length) return svg.replaceChildren();
  const minH = blocks[0].height;
  const lanes = new Map();  // hash -> lane
  let nextLane = 1;
  const byHash = new Map(blocks.map((b) => [b.hash, b]));
  for (const b of blocks) lanes.set(b.hash, b.canonical ? 0 : (lanes.get(b.parent) > 0 ? lanes.get(b.parent) : nextLane++));
  const x = (h) => 20 + (h - minH) * 34, y = (l) => 20 + l * 30;
  const width = x(blocks[blocks.length - 1].height) + 30;
  svg.setAttribute("width", width);
  svg.setAttribute("height", y(Math.max(...lanes.values())) + 30);
  const parts = [];
  for (const b of blocks) {
    const p = byHash.get(b.parent);
    if (p) parts.push(el("line", { x1: x(p.height), y1: y(lanes.get(p.hash)), x2: x(b.height), y2: y(lanes.get(b.hash)), stroke: "#9ca3af" }));
  }
  for (const b of blocks) {
    const g = el("g");
    g.append(el("rect", { x: x(b.height) - 12, y: y(lanes.get(b.hash)) - 9, width: 24, height: 18, rx: 4, fill: b.canonical ? "#2957d9" : "#f59e0b" }));
    g.append(el("title", {}, `#${b.height} ${b.hash}${b.canonical ? "" : " (side branch)"}`));
    g.append(el("text", { x: x(b.height), y: y(lanes.get(b.hash)) + 4, "font-size": 8, fill: "#fff", "text-anchor": "middle" }, String(b.height % 1000)));
    parts.push(g);
  }
  svg.replaceChildren(...parts);
}

function drawRates() {
  const svg = $("rate-chart");
  if (rates.length < 2) return svg.replaceChildren();
  const max = Math.max(1, ...rates);
  const step = 300 / (RATE_SAMPLES - 1);
  const x0 = 300 - (rates.length - 1) * step;
  const pts = rates.map((r, i) => `${(x0 + i * step).toFixed(1)},${(78 - (r / max) * 70).toFixed(1)}`).join(" ");
  const line = el("polyline", { points: pts, fill: "none", stroke: "#10b981", "stroke-width": 2 });
  line.append(el("title", {}, `peak ${(max / 1e6).toFixed(2)} MH/s over the last ${rates.length} samples`));
  svg.replaceChildren(line);
}

function drawIntervals(blocks) {
  const svg = $("intervals");
  const ints = [];
  for (let i = 0; i + 1 < blocks.length; i++) ints.push(Math.max(0, blocks[i].time_ms - blocks[i + 1].time_ms) / 1000);
  ints.reverse();
  const max = Math.max(1, ...ints);
  const w = 300 / Math.max(ints.length, 1);
  svg.replaceChildren(...ints.map((s, i) => {
    const h = (s / max) * 70;
    const r = el("rect", { x: i * w + 1, y: 78 - h, width: Math.max(w - 2, 1), height: h, fill: "#6366f1" });
    r.append(el("title", {}, `${s.toFixed(1)} s`));
    return r;
  }));
}

$("copy").addEventListener("click", async () => {
  const text = $("address").textContent;
  try { await navigator.clipboard.writeText(text); $("copy").textContent = "Copied"; }
  catch (_) {
    const r = document.createRange(); r.selectNodeContents($("address"));
    const s = getSelection(); s.removeAllRanges(); s.addRange(r); document.execCommand("copy");
    $("copy").textContent = "Copied";
  }
  setTimeout(() => { $("copy").textContent = "Copy"; }, 1500);
});
$("send-form").addEventListener("submit", send);
$("older").addEventListener("click", () => pageBlocks(true));
$("newer").addEventListener("click", () => pageBlocks(false));
$("mine").addEventListener("click", async () => {
  // One request grinds for up to half a minute: the button says so and
  // cannot be pressed again meanwhile.
  const button = $("mine");
  button.disabled = true;
  button.textContent = "Mining…";
  try {
    const b = await api("/api/mine", {});
    if (b.canonical) showResult(`Mined block #${b.height}`, true);
    else showResult(`Block #${b.height} was mined, but another block at that height came first: it is on a side branch, not the best chain`, false);
    refreshBlocks();
  } catch (e) {
    // 409: another block came first, so the node stopped grinding a block
    // that could only have landed on a side branch.
    if (e.status === 409) showResult("Another block came first while mining, so mining stopped: " + e.message, false);
    else showResult("Mining failed: " + e.message, false);
  } finally {
    button.disabled = false;
    button.textContent = "Mine a block";
  }
});

function tick() { refreshStatus(); refreshWallet(); refreshBlocks(); followTracked(); }
tick();
refreshNetwork();
setInterval(tick, 3000);
setInterval(refreshNetwork, 6000);
