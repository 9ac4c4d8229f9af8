// The REST API as the console calls it: the signed-in key from sessionStorage, errors as ApiError.
// Each sign-in or sign-out starts a new session number: an answer to an earlier session is dropped.
const BASE = "/api/v1";
const KEY = "zhisuan.key";

let session = 0;

export class ApiError extends Error {
  constructor(message, status, field) { super(message); this.status = status; this.field = field; }
}

export class StaleAnswer extends Error {}

export const signedKey = () => sessionStorage.getItem(KEY);
export function remember(key) { session += 1; sessionStorage.setItem(KEY, key); }
export function forget() { session += 1; sessionStorage.removeItem(KEY); }
export const newSession = () => { session += 1; };

async function send(path, options) {
  const key = signedKey();
  const asked = session;
  const headers = {"Content-Type": "application/json", ...(key ? {"Authorization": "Bearer " + key} : {})};
  let response;
  try {
    response = await fetch(BASE + path, {headers, ...options});
  } catch (e) {
    throw new ApiError(e.message, 0, null);  // the server is unreachable
  }
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (asked !== session) throw new StaleAnswer("signed out meanwhile");
  if (!response.ok) throw new ApiError(body?.error?.message || response.statusText, response.status, body?.error?.field ?? null);
  return {body, response};
}

export async function call(path, options = {}) {
  return (await send(path, options)).body;
}

// One page of a paginated listing: its items and the cursor of the next page (null on the last).
export async function callPage(path) {
  const {body, response} = await send(path, {});
  return {items: body, next: response.headers.get("X-Next-Cursor")};
}

export const post = (path, body) => call(path, {method: "POST", body: JSON.stringify(body ?? {})});
export const patch = (path, body) => call(path, {method: "PATCH", body: JSON.stringify(body ?? {})});
export const remove = (path) => call(path, {method: "DELETE"});

// A streamed POST (server-sent events, as /v1 streams them): onData gets each "data:" payload parsed;
// a refusal before the stream starts is thrown as ApiError, like call()'s.
export async function stream(path, body, onData) {
  const key = signedKey();
  const asked = session;
  let response;
  try {
    response = await fetch(BASE + path, {method: "POST", body: JSON.stringify(body),
      headers: {"Content-Type": "application/json", ...(key ? {"Authorization": "Bearer " + key} : {})}});
  } catch (e) {
    throw new ApiError(e.message, 0, null);
  }
  if (!response.ok) {
    const refusal = await response.json().catch(() => null);
    throw new ApiError(refusal?.error?.message || response.statusText, response.status, refusal?.error?.field ?? null);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (asked !== session) { reader.cancel(); throw new StaleAnswer("signed out meanwhile"); }
    if (done) break;
    pending += value;
    const lines = pending.split("\n");
    pending = lines.pop();
    for (const line of lines) {
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data && data !== "[DONE]") onData(JSON.parse(data));
    }
  }
}
