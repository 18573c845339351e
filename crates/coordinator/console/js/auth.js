// Sign-in. With an API key configured the console asks for it before it shows anything; the
// key is kept in memory and in session storage (this tab only, gone when it closes), never in
// local storage, a cookie or a URL. Without a key configured the console opens directly.

import { ApiError } from "./api.js";

const STORAGE = "varpulis.console.apiKey";

/** The key saved for this tab, if any. */
export function storedKey() {
  try {
    return sessionStorage.getItem(STORAGE);
  } catch {
    return null;
  }
}

/** Saves the key for this tab (or forgets it with null). */
export function remember(key) {
  try {
    if (key) sessionStorage.setItem(STORAGE, key);
    else sessionStorage.removeItem(STORAGE);
  } catch {
    // Storage disabled: the key stays in memory only.
  }
}

/**
 * Calls a route that needs the key: "ok" when the answer is anything but 401 (the key check
 * comes first on every route), "unauthorized" on 401. Throws when no member answers.
 */
export async function probe(conn) {
  try {
    await conn.request("GET", "/api/v1/cluster/workers?limit=1", undefined, { quiet401: true });
    return "ok";
  } catch (e) {
    if (e instanceof ApiError) return e.status === 401 ? "unauthorized" : "ok";
    throw e;
  }
}

/** Shows the sign-in form until a key is accepted (resolves then). */
export function askForKey(conn, message) {
  const section = document.getElementById("login");
  const form = document.getElementById("login-form");
  const input = document.getElementById("api-key");
  const error = document.getElementById("login-error");
  const submit = document.getElementById("login-submit");
  const say = (text) => {
    error.textContent = text || "";
    error.hidden = !text;
  };
  section.hidden = false;
  say(message);
  input.value = "";
  input.focus();
  return new Promise((resolve) => {
    const onSubmit = async (e) => {
      e.preventDefault();
      const key = input.value;
      if (!key) {
        say("Enter the cluster's API key.");
        return;
      }
      submit.disabled = true;
      conn.key = key;
      try {
        if ((await probe(conn)) === "ok") {
          remember(key);
          input.value = "";
          say(null);
          section.hidden = true;
          form.removeEventListener("submit", onSubmit);
          resolve();
          return;
        }
        conn.key = null;
        say("Wrong API key: the coordinator refused it (401 unauthorized).");
        input.select();
      } catch (err) {
        conn.key = null;
        say(`No coordinator answered: ${err.message}`);
      } finally {
        submit.disabled = false;
      }
    };
    form.addEventListener("submit", onSubmit);
  });
}
