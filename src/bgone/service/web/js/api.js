/* The API client: fetch wrapper, ApiError, the API key in localStorage and its Authorization header.
   Knows the endpoints' names, not what the playground shows; errors are explained in errors.js. */

/** The fal endpoints the playground runs, by input kind (the Image / Video switch is mode.js's). */
export const ENDPOINTS = { image: "fal-ai/birefnet/v2", video: "fal-ai/birefnet/v2/video" };
const KEY_STORAGE = "bgone.apiKey";

export class ApiError extends Error {
  constructor(status, body, url) {
    super(`HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.url = url;
  }
}

export const apiKey = () => (localStorage.getItem(KEY_STORAGE) || "").trim();
export const authHeaders = () => (apiKey() ? { Authorization: `Key ${apiKey()}` } : {});
/** Save the key (an empty value forgets it). */
export function storeApiKey(value) {
  if (value) localStorage.setItem(KEY_STORAGE, value);
  else localStorage.removeItem(KEY_STORAGE);
}

export async function api(url, { method = "GET", body, headers = {}, signal, auth = true } = {}) {
  let res;
  try {
    res = await fetch(url, { method, body, headers: { ...(auth ? authHeaders() : {}), ...headers }, signal });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, null, url);
  }
  const text = await res.text();
  let data = text;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON: keep the text */
  }
  if (!res.ok) throw new ApiError(res.status, data, url);
  return { status: res.status, data, headers: res.headers };
}
