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
    $("rate").textContent = s.hash_rate > 0 ? `· ${rateText(s.hash_rate)} now` : "· not mining now";
  } catch (e) {
    $("status").textContent = "node unreachable: " + e.message;
    $("offline").hidden = false;
    document.body.classList.add("stale");
  }
}

async function refreshWallet() {
  try {
    wallet = await api("/api/wallet");
    // Two halves with a break between them: where the address does not fit
    // one line it breaks in the middle, never leaving a character alone.
    if ($("address").textContent !== wallet.address) {
      const half = Math.ceil(wallet.address.length / 2);
      $("address").replaceChildren(wallet.address.slice(0, half), el("wbr"), wallet.address.slice(half));
    }
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
      // Genesis is fixed by the chain's rules: nobody mined it.
      card.append(el("div", { class: "muted" }, b.height === 0 ? "genesis (no miner)" : `miner ${short(b.miner)}`),
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

let dialogSeq = 0;  // only the latest block asked for may fill the dialog

async function openBlock(hash) {
  let b;
  const asked = ++dialogSeq;
  try { b = await api("/api/blocks/" + hash); } catch (e) {
    showResult(`Block ${short(hash)} could not be opened: ${e.message}`, false);
    return;
  }
  // Only the block asked for last is shown.
  if (asked !== dialogSeq) return;
  $("dialog-title").textContent = b.height === 0 ? "Block #0 (genesis)" : `Block #${b.height}`;
  const note = $("dialog-note");
  note.hidden = b.height !== 0;
  note.textContent = b.height === 0
    ? "The genesis block is written into the chain's rules, not mined: every node starts from it, its hash is the chain id, and its miner field is left empty (all zeros)."
    : "";
  const meta = $("dialog-meta");
  const row = (name, value) => {
    const dd = el("dd");
    if (value instanceof Node) dd.append(value); else dd.textContent = value;
    meta.append(el("dt", {}, name), dd);
  };
  meta.replaceChildren();
  row("hash", el("code", {}, b.hash));
  if (b.height === 0) row("parent", "none (the first block)");
  else {
    const link = el("button", { type: "button", class: "link", title: "open the parent block" });
    link.append(el("code", {}, b.parent));
    link.addEventListener("click", () => openBlock(b.parent));
    row("parent", link);
  }
  row("miner", b.height === 0 ? "nobody (genesis)" : el("code", {}, b.miner));
  if (b.time_ms !== undefined) row("time", new Date(b.time_ms).toLocaleString());
  row("nonce", String(b.nonce));
  row("target", el("code", {}, b.target));
  row("reward", b.height === 0 ? "none" : `${b.reward.toLocaleString("en")} coins${profile.fees ? " (subsidy and fees)" : ""}`);
  row("position", b.canonical ? `on the best chain, ${b.confirmations} confirmation${b.confirmations === 1 ? "" : "s"}` : "on a side branch (not the best chain)");
  const cell = (label, child) => { const td = el("td", { "data-label": label }); td.append(child); return td; };
  $("dialog-txs").replaceChildren(...(b.txs.length ? b.txs.map((t) => {
    const tr = el("tr", { class: "tx-row" });
    tr.append(cell("id", el("code", { title: "select to copy" }, t.id)), cell("from", el("code", {}, t.sender)),
      cell("to", el("code", {}, t.recipient)), cell("amount", document.createTextNode(String(t.amount))));
    if (profile.fees) tr.append(cell("fee", document.createTextNode(String(t.fee ?? 0))));
    return tr;
  }) : [(() => { const tr = el("tr"); tr.append(el("td", { colspan: profile.fees ? "5" : "4" }, "no transactions")); return tr; })()]));
  const dialog = $("block-dialog");
  if (!dialog.open) dialog.showModal();
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
    // Each part on its own: a crawl refused (429, another tab is crawling)
    // leaves the peers and the tree to refresh.
    const [peers, net, tree] = await Promise.allSettled([api("/api/peers"), api("/api/network"), api("/api/tree?depth=30")]);
    if (peers.status === "fulfilled") {
      $("peers").replaceChildren(...(peers.value.length ? peers.value.map((p) => el("li", {}, p)) : [el("li", {}, "no peers")]));
    }
    if (net.status === "fulfilled") drawGraph(net.value.nodes);
    if (tree.status === "fulfilled") drawTree(tree.value);
  } catch (e) { /* shown by the status line */ }
  networkBusy = false;
}

function drawGraph(nodes) {
  const svg = $("graph");
  if (!nodes.length) return svg.replaceChildren();
  // This node, then its peers, then nodes further away (at most 40).
  const me = nodes[0].addr;
  const mine = new Set(nodes[0].peers);
  const answered = new Map(nodes.map((n) => [n.addr, n.reachable]));
  const names = new Set([me, ...nodes[0].peers]);
  for (const n of nodes) n.peers.forEach((p) => names.add(p));
  const list = [...names].slice(0, 40);
  const pos = new Map(list.map((a, i) => {
    if (list.length === 1) return [a, [150, 150]];
    const ang = (2 * Math.PI * i) / list.length - Math.PI / 2;
    return [a, [150 + 110 * Math.cos(ang), 150 + 110 * Math.sin(ang)]];
  }));
  const parts = [];
  for (const n of nodes) for (const p of n.peers) {
    const a = pos.get(n.addr), b = pos.get(p);
    if (a && b) parts.push(el("line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1], stroke: "#c7ccd4" }));
  }
  list.forEach((a) => {
    const [x, y] = pos.get(a);
    const role = a === me ? "#2957d9" : mine.has(a) ? "#10b981" : "#9ca3af";
    const gone = answered.get(a) === false;
    const g = el("g");
    g.append(el("circle", { cx: x, cy: y, r: 8, fill: gone ? "#fff" : role, stroke: gone ? "#c62828" : "none", "stroke-width": 2 }),
      el("title", {}, `${a}${a === me ? " (this node)" : mine.has(a) ? " (a peer)" : ""}${gone ? " — did not answer" : ""}`));
    const below = y > 150;
    g.append(el("text", { x, y: below ? y + 20 : y - 12, "font-size": 10, "text-anchor": "middle", fill: "#374151" }, ":" + a.split(":").pop()));
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
  // The best chain on lane 0; a side block continues its parent's lane if
  // it is that parent's first side child, and opens a new lane otherwise.
  const continued = new Set();
  for (const b of blocks) {
    if (b.canonical) { lanes.set(b.hash, 0); continue; }
    const parentLane = lanes.get(b.parent);
    if (parentLane > 0 && !continued.has(b.parent)) { continued.add(b.parent); lanes.set(b.hash, parentLane); }
    else lanes.set(b.hash, nextLane++);
  }
  // Boxes wide enough for the height's digits, in a readable size.
  const digits = String(blocks[blocks.length - 1].height).length;
  const w = Math.max(30, 8 * digits + 8), gap = w + 12;
  const x = (h) => 10 + w / 2 + (h - minH) * gap, y = (l) => 22 + l * 32;
  svg.setAttribute("width", x(blocks[blocks.length - 1].height) + w / 2 + 10);
  svg.setAttribute("height", y(Math.max(...lanes.values())) + 24);
  const parts = [];
  for (const b of blocks) {
    const p = byHash.get(b.parent);
    if (p) parts.push(el("line", { x1: x(p.height), y1: y(lanes.get(p.hash)), x2: x(b.height), y2: y(lanes.get(b.hash)), stroke: "#9ca3af", "stroke-width": 1.5 }));
  }
  for (const b of blocks) {
    const g = el("g");
    g.append(el("rect", { x: x(b.height) - w / 2, y: y(lanes.get(b.hash)) - 11, width: w, height: 22, rx: 4, fill: b.canonical ? "#2957d9" : "#f59e0b" }));
    g.append(el("title", {}, `#${b.height} ${b.hash}${b.canonical ? "" : " (side branch)"}`));
    g.append(el("text", { x: x(b.height), y: y(lanes.get(b.hash)) + 4, "font-size": 11, "font-weight": 600, fill: "#fff", "text-anchor": "middle" }, String(b.height)));
    g.addEventListener("click", () => openBlock(b.hash));
    parts.push(g);
  }
  svg.replaceChildren(...parts);
}

// A hash rate with its unit.
function rateText(r) {
  if (r >= 1e9) return `${(r / 1e9).toFixed(2)} GH/s`;
  if (r >= 1e6) return `${(r / 1e6).toFixed(2)} MH/s`;
  if (r >= 1e3) return `${(r / 1e3).toFixed(1)} kH/s`;
  return `${r.toFixed(0)} H/s`;
}

// A chart in a 320×140 box: the y axis (0 and the top value, in `unit`),
// the x axis with its two end labels, and the data as bars or a line.
function drawChart(svg, { values, kind, color, yLabel, xLeft, xRight, empty }) {
  const L = 46, R = 312, T = 12, B = 112;
  const parts = [
    el("line", { x1: L, y1: T, x2: L, y2: B, stroke: "#9ca3af" }),
    el("line", { x1: L, y1: B, x2: R, y2: B, stroke: "#9ca3af" }),
  ];
  if (!values.length) {
    parts.push(el("text", { x: (L + R) / 2, y: (T + B) / 2, "font-size": 11, "text-anchor": "middle", fill: "#6b7280" }, empty));
    return svg.replaceChildren(...parts);
  }
  const max = Math.max(...values.map((v) => v.y), 0) || 1;
  const sy = (v) => B - (v / max) * (B - T);
  parts.push(el("text", { x: L - 4, y: T + 4, "font-size": 10, "text-anchor": "end", fill: "#374151" }, yLabel(max)));
  parts.push(el("text", { x: L - 4, y: B + 3, "font-size": 10, "text-anchor": "end", fill: "#374151" }, "0"));
  parts.push(el("line", { x1: L, y1: T, x2: R, y2: T, stroke: "#e5e7eb", "stroke-dasharray": "3 3" }));
  parts.push(el("text", { x: L, y: B + 16, "font-size": 10, fill: "#374151" }, xLeft));
  parts.push(el("text", { x: R, y: B + 16, "font-size": 10, "text-anchor": "end", fill: "#374151" }, xRight));
  const n = values.length;
  if (kind === "bars") {
    const w = (R - L) / n;
    values.forEach((v, i) => {
      const r = el("rect", { x: L + i * w + 1, y: sy(v.y), width: Math.max(w - 2, 1), height: B - sy(v.y), fill: color });
      r.append(el("title", {}, v.title));
      parts.push(r);
    });
  } else {
    const sx = (i) => (n === 1 ? R : L + (i / (n - 1)) * (R - L));
    const line = el("polyline", { points: values.map((v, i) => `${sx(i).toFixed(1)},${sy(v.y).toFixed(1)}`).join(" "), fill: "none", stroke: color, "stroke-width": 2 });
    line.append(el("title", {}, `peak ${yLabel(max)}`));
    parts.push(line);
    if (n === 1) parts.push(el("circle", { cx: R, cy: sy(values[0].y), r: 3, fill: color }));
  }
  svg.replaceChildren(...parts);
}

async function refreshRates() {
  try {
    const samples = await api("/api/hashrate");
    const first = samples.length ? samples[0].time_ms : 0;
    const minutes = samples.length ? Math.round((Date.now() - first) / 60000) : 0;
    drawChart($("rate-chart"), {
      values: samples.map((s) => ({ y: s.hash_rate, title: `${new Date(s.time_ms).toLocaleTimeString()}: ${rateText(s.hash_rate)}` })),
      kind: "line", color: "#10b981", yLabel: rateText,
      xLeft: minutes > 0 ? `${minutes} min ago` : "", xRight: "now", empty: "no samples yet (one every 10 s)",
    });
  } catch (e) { /* shown by the status line */ }
}

function drawIntervals(blocks) {
  // Oldest first: the time from each block to the next (none on a chain
  // without timestamps, even before the first status says so).
  const ordered = [...blocks].reverse().filter((b) => b.time_ms !== undefined);
  const values = [];
  for (let i = 1; i < ordered.length; i++) {
    const secs = Math.max(0, ordered[i].time_ms - ordered[i - 1].time_ms) / 1000;
    values.push({ y: secs, title: `#${ordered[i - 1].height} → #${ordered[i].height}: ${secs.toFixed(1)} s` });
  }
  drawChart($("intervals"), {
    values, kind: "bars", color: "#6366f1", yLabel: (v) => `${v < 10 ? v.toFixed(1) : v.toFixed(0)} s`,
    xLeft: ordered.length > 1 ? `#${ordered[1].height}` : "", xRight: ordered.length ? `#${ordered[ordered.length - 1].height}` : "",
    empty: "needs two blocks",
  });
}

$("copy").addEventListener("click", async () => {
  const text = $("address").textContent;
  try { await navigator.clipboard.writeText(text); $("copy").textContent = "Copied"; }
  catch (_) {
    const r = document.createRange(); r.selectNodeContents($("address"));
    const s = getSelection(); s.removeAllRanges(); s.addRange(r); document.execCommand("copy");
    $("copy").textContent = "Copied";
  }
  setTimeout(() => { $("copy").textContent = "Copy address"; }, 1500);
});
$("send-form").addEventListener("submit", send);
$("older").addEventListener("click", () => pageBlocks(true));
$("newer").addEventListener("click", () => pageBlocks(false));
// The mine button's own result, next to it.
function showMined(text, state) {
  const r = $("mine-result");
  r.textContent = text;
  r.className = "result " + (state ? "ok" : "bad");
}

$("mine").addEventListener("click", async () => {
  // One request grinds for up to half a minute: the button says so and
  // cannot be pressed again meanwhile.
  const button = $("mine");
  button.disabled = true;
  button.textContent = "Mining…";
  showMined("", true);
  try {
    const b = await api("/api/mine", {});
    if (b.canonical) showMined(`Mined block #${b.height}`, true);
    else showMined(`Block #${b.height} was mined, but another block at that height came first: it is on a side branch, not the best chain`, false);
    refreshBlocks();
  } catch (e) {
    // 409: another block came first, so the node stopped grinding a block
    // that could only have landed on a side branch.
    if (e.status === 409) showMined("Mining stopped: " + e.message, false);
    else showMined("Mining failed: " + e.message, false);
  } finally {
    button.disabled = false;
    button.textContent = "Mine a block";
  }
});

function tick() { refreshStatus(); refreshWallet(); refreshBlocks(); followTracked(); }
tick();
refreshNetwork();
refreshRates();
setInterval(tick, 3000);
setInterval(refreshNetwork, 6000);
setInterval(refreshRates, 10000);
