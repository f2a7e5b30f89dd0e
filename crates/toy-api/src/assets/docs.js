// The API docs page (/docs): renders the node's own /openapi.json, with an
// example and a "Try it out" form for every operation (plain fetch to this
// node; nothing leaves the machine).
"use strict";
const refName = (ref) => ref.split("/").pop();
const mk = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};
let schemas = {};

// A one-line description of a schema: its type and its constraints.
function describe(s) {
  if (!s) return "";
  if (s.$ref) return refName(s.$ref);
  if (s.allOf) return s.allOf.map(describe).join(" + ");
  if (s.type === "array") return "array of " + (s.items ? describe(s.items) : "any");
  const t = Array.isArray(s.type) ? s.type.join(" or ") : (s.type || "object");
  const c = [];
  if (s.enum) c.push("one of " + s.enum.join(", "));
  if (s.pattern) c.push("pattern " + s.pattern);
  // JSON numbers above 2^53 lose precision in JavaScript: name u64's bound.
  const max = s.maximum >= 1.8e19 ? "2^64−1" : s.maximum;
  if (s.minimum !== undefined || s.maximum !== undefined) c.push(`${s.minimum ?? ""}…${max ?? ""}`);
  return t + (c.length ? ` (${c.join("; ")})` : "");
}

// The properties of a schema, following $ref, allOf and arrays.
function propsOf(s) {
  if (!s) return null;
  if (s.$ref) return propsOf(schemas[refName(s.$ref)]);
  if (s.allOf) return s.allOf.reduce((acc, part) => Object.assign(acc, propsOf(part) || {}), {});
  if (s.type === "array") return propsOf(s.items);
  return s.properties || null;
}

// A schema as a nested list: every field, and inside every field that is
// itself an object (expanded to `depth` levels).
function expand(s, depth = 3) {
  const props = propsOf(s);
  if (!props || depth === 0) return null;
  const required = new Set((s.$ref ? schemas[refName(s.$ref)] : s).required || []);
  const ul = mk("ul", "fields");
  for (const [f, v] of Object.entries(props)) {
    const li = mk("li");
    li.append(mk("code", "", f), document.createTextNode(`${required.has(f) ? " (required)" : ""}: ${describe(v)}${v.description ? " — " + v.description : ""}`));
    const inner = expand(v, depth - 1);
    if (inner) li.append(inner);
    ul.append(li);
  }
  return ul;
}

function pre(value) {
  return mk("pre", "example", JSON.stringify(value, null, 2));
}

// "Try it out": one input per parameter, the body (pre-filled with the
// example), and the answer as it came.
function tryIt(path, method, op) {
  const box = mk("details", "try");
  box.append(mk("summary", "", "Try it out"));
  const inputs = {};
  for (const prm of op.parameters || []) {
    const label = mk("label", "", `${prm.in} ${prm.name} `);
    const input = mk("input");
    input.placeholder = prm.description;
    inputs[prm.name] = [prm, input];
    label.append(input);
    box.append(label);
  }
  let body = null;
  if (op.requestBody) {
    body = mk("textarea");
    body.rows = 5;
    body.value = JSON.stringify(op.requestBody.content["application/json"].example ?? {}, null, 2);
    const label = mk("label", "", "body (JSON)");
    label.append(body);
    box.append(label);
  }
  const send = mk("button", "", "Send");
  send.type = "button";
  const out = mk("pre", "answer");
  send.addEventListener("click", async () => {
    let url = path;
    const query = new URLSearchParams();
    for (const [name, [prm, input]] of Object.entries(inputs)) {
      const v = input.value.trim();
      if (prm.in === "path") {
        // A path value stays one segment of this route: checked against
        // its pattern ("." and ".." would walk to another route).
        const pattern = prm.schema && prm.schema.pattern;
        if (!v || v === "." || v === ".." || (pattern && !new RegExp(pattern).test(v))) {
          out.textContent = `${name} must match ${pattern || "a value"}`;
          return;
        }
        url = url.replace(`{${name}}`, encodeURIComponent(v));
      } else if (v) query.set(name, v);
    }
    if ([...query].length) url += "?" + query;
    const headers = {};
    const token = document.getElementById("token").value.trim();
    if (token) headers.authorization = "Bearer " + token;
    const opts = { method: method.toUpperCase(), headers };
    if (body) { headers["content-type"] = "application/json"; opts.body = body.value; }
    out.textContent = `${opts.method} ${url} …`;
    try {
      const r = await fetch(url, opts);
      const text = await r.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON */ }
      out.textContent = `${r.status} ${r.statusText}\n${shown}`;
    } catch (e) {
      out.textContent = "no answer: " + e.message;
    }
  });
  box.append(send, out);
  return box;
}

fetch("/openapi.json").then((r) => r.json()).then((doc) => {
  schemas = doc.components.schemas;
  // Routes of the toychain table this chain does not serve are marked.
  for (const row of document.querySelectorAll("table.routes tr[data-path]")) {
    if (!doc.paths[row.dataset.path]) {
      row.classList.add("absent");
      row.lastElementChild.textContent = "not on this chain: " + row.lastElementChild.textContent;
    }
  }
  document.getElementById("intro").textContent = doc.info.description;
  const eps = document.getElementById("eps");
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const d = mk("div", "ep");
      d.id = `op-${method}-${path}`;
      const m = mk("span", "m " + method, method.toUpperCase());
      d.append(m, mk("code", "", " " + path), mk("p", "", op.summary));
      for (const prm of op.parameters || []) {
        d.append(mk("p", "schema", `${prm.in} ${prm.name}${prm.required ? " (required)" : ""}: ${prm.description} — ${describe(prm.schema)}`));
      }
      if (op.requestBody) {
        const content = op.requestBody.content["application/json"];
        d.append(mk("p", "schema", `body: ${describe(content.schema)}${op.requestBody.required ? "" : " (optional)"}`));
        const fields = expand(content.schema);
        if (fields) d.append(fields);
        if (content.example !== undefined) d.append(mk("p", "schema", "example request:"), pre(content.example));
      }
      const codes = mk("table", "codes");
      for (const [code, r] of Object.entries(op.responses)) {
        const tr = mk("tr");
        const schema = r.content && r.content["application/json"].schema;
        tr.append(mk("td", "", code), mk("td", "", r.description), mk("td", "", schema ? describe(schema) : ""));
        codes.append(tr);
      }
      d.append(mk("p", "schema", "answers:"), codes);
      const ok = op.responses["200"].content["application/json"];
      const fields = expand(ok.schema);
      if (fields) { const det = mk("details"); det.append(mk("summary", "", `200: ${describe(ok.schema)}, field by field`), fields); d.append(det); }
      if (ok.example !== undefined) d.append(mk("p", "schema", "example response:"), pre(ok.example));
      d.append(tryIt(path, method, op));
      eps.append(d);
    }
  }
  const sc = document.getElementById("schemas");
  for (const [name, s] of Object.entries(schemas)) {
    const d = mk("div", "ep");
    d.id = "schema-" + name;
    d.append(mk("code", "", name));
    const fields = expand(s);
    d.append(fields || mk("p", "schema", describe(s) || s.description || ""));
    sc.append(d);
  }
});
