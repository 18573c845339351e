// The VPL editor: a plain <textarea> (so typing, selection, undo and the clipboard are the
// browser's own) laid over a highlighted copy of its text. As the operator types, the program
// is checked by the coordinator (`POST /api/v1/cluster/validate`, the same check a deploy
// runs); every diagnostic is shown in place: the line number turns red, the code at its
// column is underlined, the message follows the end of its line, and a list below gives
// `line:column` entries that move the caret there.

import { h, replace } from "./dom.js";
import { TOKEN_CLASS, tokenize } from "./vpl.js";

/** Pause after the last keystroke before checking. */
const CHECK_DELAY_MS = 250;
/** Line height of the editor (console.css) and the bounds of its height. */
const LINE_PX = 20;
const MIN_HEIGHT_PX = 180;
const MAX_HEIGHT_PX = 460;

/** Tokens of `text` grouped by line (a token spanning lines is split). */
function tokenLines(text) {
  const lines = [[]];
  for (const t of tokenize(text)) {
    if (t.kind === "nl") {
      lines.push([]);
      continue;
    }
    t.text.split("\n").forEach((part, k) => {
      if (k > 0) lines.push([]);
      if (part) lines[lines.length - 1].push({ kind: t.kind, chars: Array.from(part) });
    });
  }
  return lines;
}

/** [start, end) character ranges to underline on one line, one per diagnostic. */
function marks(tokens, diags) {
  const out = [];
  for (const d of diags) {
    const start = Math.max((d.column || 1) - 1, 0);
    let offset = 0;
    let end = start + 1;
    for (const t of tokens) {
      const next = offset + t.chars.length;
      if (start >= offset && start < next) {
        end = t.kind === "ws" ? start + 1 : next;
        break;
      }
      offset = next;
    }
    out.push({ start, end, severity: d.severity });
  }
  return out;
}

export class VplEditor {
  /**
   * `opts`: {name, value, check: async (source) => {valid, diagnostics}, onChange(value)}.
   * `el` is the element to insert.
   */
  constructor(opts) {
    this.opts = opts;
    this.diagnostics = [];
    this.valid = null;
    this.seq = 0;
    this.gutter = h("div", { class: "gutter", "aria-hidden": "true" });
    this.pre = h("pre", { class: "hl", "aria-hidden": "true" });
    this.input = h("textarea", {
      class: "input",
      spellcheck: "false",
      autocomplete: "off",
      autocapitalize: "off",
      wrap: "off",
      "aria-label": `VPL source of ${opts.name}`,
      "data-pipeline": opts.name,
    });
    this.input.value = opts.value || "";
    this.status = h("div", { class: "editor-status", "aria-live": "polite" });
    this.list = h("ul", { class: "diag-list" });
    this.box = h("div", { class: "editor" }, this.gutter, h("div", { class: "code" }, this.pre, this.input));
    this.el = h("div", { class: "editor-wrap", "data-pipeline": opts.name }, this.box, this.status, this.list);
    this.input.addEventListener("input", () => this.changed());
    this.input.addEventListener("scroll", () => this.sync());
    this.input.addEventListener("keydown", (e) => this.onKey(e));
    this.render();
    this.schedule(0);
  }

  get value() {
    return this.input.value;
  }

  /** Replaces the text (e.g. a newer version arrived) and checks it. */
  set value(v) {
    this.input.value = v;
    this.changed();
  }

  /** Whether the last check found errors. */
  hasErrors() {
    return this.valid === false;
  }

  changed() {
    this.render();
    this.schedule(CHECK_DELAY_MS);
    if (this.opts.onChange) this.opts.onChange(this.value);
  }

  onKey(e) {
    if (e.key === "Tab" && !e.shiftKey && !e.ctrlKey && !e.altKey && !e.metaKey) {
      e.preventDefault();
      this.input.setRangeText("    ", this.input.selectionStart, this.input.selectionEnd, "end");
      this.changed();
    }
  }

  sync() {
    this.pre.scrollTop = this.input.scrollTop;
    this.pre.scrollLeft = this.input.scrollLeft;
    this.gutter.scrollTop = this.input.scrollTop;
  }

  schedule(ms) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.check(), ms);
  }

  async check() {
    const seq = ++this.seq;
    this.setStatus("checking…", "muted");
    let answer;
    try {
      answer = await this.opts.check(this.value);
    } catch (e) {
      if (seq === this.seq) this.setStatus(`could not check: ${e.message}`, "error");
      return;
    }
    if (seq !== this.seq) return; // a newer check is on its way
    this.show(answer.diagnostics || [], answer.valid);
  }

  /** Shows diagnostics (from a check, or from a refused deploy). */
  show(diagnostics, valid) {
    this.diagnostics = diagnostics;
    this.valid = valid;
    this.render();
    this.renderList();
    const errors = diagnostics.filter((d) => d.severity === "error").length;
    const warnings = diagnostics.length - errors;
    if (valid) {
      this.setStatus(warnings ? `✓ valid, ${warnings} warning${warnings > 1 ? "s" : ""}` : "✓ no problems", "okay");
    } else {
      this.setStatus(`✗ ${errors || diagnostics.length} error${errors === 1 ? "" : "s"}`, "error");
    }
  }

  setStatus(text, cls) {
    this.status.className = `editor-status ${cls || ""}`;
    this.status.dataset.valid = this.valid === null ? "" : String(this.valid);
    this.status.textContent = text;
  }

  render() {
    const lines = tokenLines(this.value);
    const byLine = new Map();
    for (const d of this.diagnostics) {
      // A diagnostic past the last line (end of input) is shown on the last line.
      const at = Math.min(Math.max(d.line || 1, 1), lines.length);
      if (!byLine.has(at)) byLine.set(at, []);
      byLine.get(at).push(d);
    }
    const codeLines = [];
    const gutterLines = [];
    lines.forEach((tokens, i) => {
      const n = i + 1;
      const diags = byLine.get(n) || [];
      const hasError = diags.some((d) => d.severity === "error");
      const tone = diags.length ? (hasError ? "err" : "warn") : "";
      codeLines.push(this.renderLine(n, tokens, diags, tone));
      gutterLines.push(h("div", {
        class: tone || null,
        "data-line": n,
        title: diags.map((d) => `${d.line}:${d.column} ${d.message}`).join("\n") || null,
      }, String(n)));
    });
    replace(this.pre, codeLines);
    replace(this.gutter, gutterLines);
    // Grow with the program, within bounds (then it scrolls).
    const height = Math.min(Math.max(lines.length * LINE_PX + 60, MIN_HEIGHT_PX), MAX_HEIGHT_PX);
    this.box.style.setProperty("height", `${height}px`);
    this.sync();
  }

  renderLine(n, tokens, diags, tone) {
    const ranges = marks(tokens, diags);
    const line = h("span", { class: `ln${tone ? ` line-${tone}` : ""}`, "data-line": n });
    const within = (pos) => ranges.find((r) => pos >= r.start && pos < r.end);
    let pos = 0;
    for (const t of tokens) {
      let piece = [];
      let pieceMark;
      const flush = () => {
        if (!piece.length) return;
        const text = piece.join("");
        const cls = TOKEN_CLASS[t.kind];
        let node = cls ? h("span", { class: cls }, text) : document.createTextNode(text);
        if (pieceMark) node = h("span", { class: `diag ${pieceMark.severity}`, "data-column": pieceMark.start + 1 }, node);
        line.appendChild(node);
        piece = [];
      };
      for (const ch of t.chars) {
        const m = within(pos);
        if (m !== pieceMark) {
          flush();
          pieceMark = m;
        }
        piece.push(ch);
        pos++;
      }
      flush();
    }
    for (const r of ranges) {
      if (r.start >= pos) {
        line.appendChild(h("span", { class: `diag ${r.severity}`, "data-column": r.start + 1 }, "\u00a0"));
      }
    }
    if (diags.length) {
      const first = diags[0];
      const more = diags.length > 1 ? ` (+${diags.length - 1} more)` : "";
      line.appendChild(h("span", { class: `lens ${first.severity}` }, `    ● ${first.message}${more}`));
    }
    return line;
  }

  renderList() {
    replace(this.list, this.diagnostics.map((d) => h("li", {
      class: d.severity,
      "data-line": d.line,
      "data-column": d.column,
      title: d.rendered || null,
      onclick: () => this.goTo(d.line, d.column),
    }, h("span", { class: "pos" }, `${d.line}:${d.column}`), d.message, d.hint ? ` (hint: ${d.hint})` : "")));
  }

  /** Puts the caret at line:column (1-based, characters). */
  goTo(line, column) {
    const lines = this.value.split("\n");
    let offset = 0;
    for (let i = 0; i < Math.min(line - 1, lines.length); i++) offset += lines[i].length + 1;
    const target = Array.from(lines[line - 1] || "").slice(0, Math.max(column - 1, 0)).join("");
    offset += target.length;
    this.input.focus();
    this.input.setSelectionRange(offset, offset);
  }
}
