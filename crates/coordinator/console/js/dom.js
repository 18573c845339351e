// Tiny DOM builder. Text is always inserted as text nodes, never parsed as HTML, so values
// coming from the API (names, VPL, event fields) cannot inject markup or script.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") {
      el.addEventListener(k.slice(2), v);
    } else if (k === "css") {
      // CSSOM assignments are allowed by the page's CSP (style attributes are not).
      for (const [prop, value] of Object.entries(v)) el.style.setProperty(prop, value);
    } else if (k === "value" && "value" in el) {
      el.value = v;
    } else if ((k === "checked" || k === "disabled" || k === "selected") && k in el) {
      el[k] = Boolean(v);
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** An HTML element: h("td", {class: "num"}, "42"). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** Replaces every child of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A table with a header row; `rows` are <tr> elements. */
export function table(id, headers, rows, emptyText) {
  const head = h("tr", null, headers.map((x) =>
    typeof x === "string" ? h("th", null, x) : h("th", { class: x.class }, x.text)));
  const body = h("tbody", null, rows);
  const t = h("table", { id }, h("thead", null, head), body);
  if (rows.length === 0 && emptyText) {
    body.appendChild(h("tr", { class: "empty-row" },
      h("td", { colspan: headers.length, class: "empty" }, emptyText)));
  }
  return t;
}
