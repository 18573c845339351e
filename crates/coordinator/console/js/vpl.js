// A VPL tokenizer for syntax highlighting, following the lexical rules of the language
// reference (comments `#`, `//`, `/* */`; strings with escapes; durations `5s`; timestamps
// `@2024-03-01T12:00:00Z`; keywords). It never fails: anything it does not know is one
// character of kind "op". Checking is the server's job (POST /api/v1/cluster/validate).

const RESERVED = ["and", "or", "not", "in", "is", "if", "then", "else"];
const LITERALS = ["true", "false", "null"];
const STATEMENT = ["stream", "event", "type", "connector", "context", "pattern", "fn", "let", "var", "const",
  "config", "import", "elif", "for", "while", "break", "continue", "return", "emit"];
const CONTEXTUAL = ["as", "extends", "where", "within", "all", "merge", "join", "timer", "sequence", "session",
  "sliding"];
const KEYWORDS = new Set([...RESERVED, ...STATEMENT, ...CONTEXTUAL]);
const LITERAL = new Set(LITERALS);
const OPERATORS = ["..=", "->", "=>", ":=", "==", "!=", "<=", ">=", "**", "<<", ">>", "?.", "??", ".."];
const DURATION = /^(ns|us|ms|s|m|h|d)(?![A-Za-z0-9_])/;

const isIdentStart = (c) => /[A-Za-z_]/.test(c);
const isIdent = (c) => /[A-Za-z0-9_]/.test(c);
const isDigit = (c) => c >= "0" && c <= "9";

/**
 * Splits `src` into tokens {kind, text} that together are exactly `src`. Kinds: ws, nl,
 * comment, string, number, duration, timestamp, keyword, literal, type, method, ident, op.
 */
export function tokenize(src) {
  const out = [];
  let i = 0;
  let prev = null; // last significant token
  const push = (kind, text) => {
    out.push({ kind, text });
    if (kind !== "ws" && kind !== "nl" && kind !== "comment") prev = { kind, text };
  };
  while (i < src.length) {
    const c = src[i];
    const rest = src.slice(i, i + 3);
    if (c === "\n") {
      push("nl", c);
      i++;
    } else if (c === " " || c === "\t" || c === "\r") {
      let j = i;
      while (j < src.length && (src[j] === " " || src[j] === "\t" || src[j] === "\r")) j++;
      push("ws", src.slice(i, j));
      i = j;
    } else if (c === "#" || rest.startsWith("//")) {
      let j = src.indexOf("\n", i);
      if (j < 0) j = src.length;
      push("comment", src.slice(i, j));
      i = j;
    } else if (rest.startsWith("/*")) {
      let j = src.indexOf("*/", i + 2);
      j = j < 0 ? src.length : j + 2;
      push("comment", src.slice(i, j));
      i = j;
    } else if (c === '"') {
      let j = i + 1;
      while (j < src.length && src[j] !== '"' && src[j] !== "\n") j += src[j] === "\\" ? 2 : 1;
      if (src[j] === '"') j++;
      push("string", src.slice(i, Math.min(j, src.length)));
      i = Math.min(j, src.length);
    } else if (c === "@" && isDigit(src[i + 1] || "")) {
      let j = i + 1;
      while (j < src.length && /[0-9T:\-+Z.]/.test(src[j])) j++;
      push("timestamp", src.slice(i, j));
      i = j;
    } else if (isDigit(c)) {
      let j = i;
      while (j < src.length && (isDigit(src[j]) || src[j] === "_")) j++;
      if (src[j] === "." && isDigit(src[j + 1] || "")) {
        j++;
        while (j < src.length && isDigit(src[j])) j++;
      }
      if ((src[j] === "e" || src[j] === "E") && /[0-9+-]/.test(src[j + 1] || "")) {
        let k = j + 1;
        if (src[k] === "+" || src[k] === "-") k++;
        if (isDigit(src[k] || "")) {
          j = k;
          while (j < src.length && isDigit(src[j])) j++;
        }
      }
      const unit = DURATION.exec(src.slice(j, j + 3));
      if (unit) {
        push("duration", src.slice(i, j + unit[1].length));
        i = j + unit[1].length;
      } else {
        push("number", src.slice(i, j));
        i = j;
      }
    } else if (isIdentStart(c)) {
      let j = i + 1;
      while (j < src.length && isIdent(src[j])) j++;
      const word = src.slice(i, j);
      let kind;
      if (prev && prev.text === "." || prev && prev.text === "?.") kind = "method";
      else if (LITERAL.has(word)) kind = "literal";
      else if (KEYWORDS.has(word)) kind = "keyword";
      else if (/^[A-Z]/.test(word)) kind = "type";
      else kind = "ident";
      push(kind, word);
      i = j;
    } else {
      const op = OPERATORS.find((o) => src.startsWith(o, i));
      const text = op || c;
      push("op", text);
      i += text.length;
    }
  }
  return out;
}

/** CSS class of a token kind. */
export const TOKEN_CLASS = {
  comment: "tok-com",
  string: "tok-str",
  number: "tok-num",
  duration: "tok-dur",
  timestamp: "tok-ts",
  keyword: "tok-kw",
  literal: "tok-lit",
  type: "tok-type",
  method: "tok-method",
  op: "tok-op",
};
