// The API docs page (/docs): renders the node's own /openapi.json.
"use strict";
const refName = (ref) => ref.split("/").pop();
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
function line(cls, text, link) {
  const p = document.createElement("p"); p.className = cls; p.textContent = text;
  if (link) { const a = document.createElement("a"); a.href = "#schema-" + link; a.textContent = link; p.append(a); }
  return p;
}
fetch("/openapi.json").then((r) => r.json()).then((doc) => {
  document.getElementById("intro").textContent = doc.info.description;
  const eps = document.getElementById("eps");
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const d = document.createElement("div"); d.className = "ep";
      const m = document.createElement("span"); m.className = "m " + method; m.textContent = method.toUpperCase();
      const c = document.createElement("code"); c.textContent = " " + path;
      d.append(m, c, line("", op.summary));
      for (const prm of op.parameters || []) {
        d.append(line("schema", `${prm.in} ${prm.name}${prm.required ? " (required)" : ""}: ${prm.description} — ${describe(prm.schema)}`));
      }
      if (op.requestBody) {
        d.append(line("schema", "body: ", refName(op.requestBody.content["application/json"].schema.$ref)));
      }
      const ok = op.responses["200"].content["application/json"].schema;
      d.append(line("schema", "200: ", refName(ok.$ref || "")));
      d.append(line("schema", "4xx: {\"error\": \"…\"} saying what is wrong"));
      eps.append(d);
    }
  }
  const sc = document.getElementById("schemas");
  for (const [name, s] of Object.entries(doc.components.schemas)) {
    const d = document.createElement("div"); d.className = "ep"; d.id = "schema-" + name;
    const h = document.createElement("code"); h.textContent = name; d.append(h);
    const required = new Set(s.required || []);
    const props = s.properties || (s.items && s.items.properties) || {};
    if (!s.properties) d.append(line("schema", describe(s)));
    for (const [f, v] of Object.entries(props)) {
      d.append(line("schema", `${f}${required.has(f) ? " (required)" : ""}: ${describe(v)}${v.description ? " — " + v.description : ""}`));
    }
    sc.append(d);
  }
});
