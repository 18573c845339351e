// Server-Sent Events over fetch: EventSource cannot send the `x-api-key` header, and the key
// must never go into a URL. A stream that ends or stalls is reopened (on another member when
// the one in use stopped answering); `path()` is asked again each time, so a resumable stream
// passes its last event id (`since`).

/** Parses one SSE block into {event, id, data}; null for comments and keep-alives. */
export function parseBlock(block) {
  let event = "message";
  let id = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? "" : line.slice(i + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  }
  if (data.length === 0) return null;
  return { event, id, data: data.join("\n") };
}

/** Longest silence before a stream is considered stalled (the server sends keep-alives every 15 s). */
const STALL_MS = 40000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Follows the SSE stream at `path()` on the connection's member until `stop()`.
 * Callbacks: onEvent({event, id, data}), onOpen(), onClose(), onError(message).
 */
export function follow(conn, path, { onEvent, onOpen, onClose, onError }) {
  let stopped = false;
  let ctl = null;
  (async () => {
    let delay = 300;
    while (!stopped) {
      ctl = new AbortController();
      let watchdog = null;
      const arm = () => {
        clearTimeout(watchdog);
        const mine = ctl;
        watchdog = setTimeout(() => mine.abort(), STALL_MS);
      };
      try {
        const r = await fetch(conn.base + path(), {
          headers: conn.headers({ accept: "text/event-stream" }),
          signal: ctl.signal,
          cache: "no-store",
          credentials: "omit",
        });
        if (r.status === 401) {
          conn.dispatchEvent(new Event("unauthorized"));
          return;
        }
        if (!r.ok) {
          let message = `HTTP ${r.status}`;
          try {
            const body = await r.json();
            if (body && body.error) message = body.error;
          } catch {
            // keep the status
          }
          throw new Error(message);
        }
        if (onOpen) onOpen();
        delay = 300;
        arm();
        const reader = r.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          arm();
          buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
          let i;
          while ((i = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, i);
            buffer = buffer.slice(i + 2);
            const ev = parseBlock(block);
            if (ev && !stopped) onEvent(ev);
          }
        }
      } catch (e) {
        if (!stopped && onError && e && e.name !== "AbortError" && e.name !== "TypeError") {
          onError(e.message);
        }
      } finally {
        clearTimeout(watchdog);
      }
      if (stopped) return;
      if (onClose) onClose();
      await sleep(delay);
      delay = Math.min(delay * 2, 4000);
      if (!stopped) await conn.check();
    }
  })();
  return {
    stop() {
      stopped = true;
      if (ctl) ctl.abort();
    },
  };
}
