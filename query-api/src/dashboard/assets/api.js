// Talking to the Helios JSON API: the API key (from the URL fragment or the key form,
// kept in localStorage) goes with every call as a bearer token, and failures become
// ApiErrors carrying the server's {"error", "hint"}.

const KEY_STORAGE = 'helios.apiKey';

// Fired with {detail: ApiError} when the server rejects the key (401) or its scope (403).
export const authEvents = new EventTarget();

let memoryKey = null; // used when localStorage is unavailable (some private modes)

export function getKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) ?? memoryKey;
  } catch {
    return memoryKey;
  }
}

export function setKey(key) {
  memoryKey = key || null;
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // Storage refused: the key lives for this page only.
  }
}

// "#key=K" (or "#/sql?key=K", "#/…&key=K"): store K and drop it from the address bar
// and the history, so the key is not left in bookmarks or screenshots.
export function takeKeyFromFragment() {
  const m = location.hash.match(/(?:^#|[?&])key=([^&]*)/);
  if (!m) return false;
  let key;
  try {
    key = decodeURIComponent(m[1]);
  } catch {
    key = m[1];
  }
  if (key) setKey(key);
  let rest = location.hash.replace(/[?&]?key=[^&]*/, '').replace(/^#[?&]/, '#');
  if (rest === '#' || rest === '#/') rest = '';
  history.replaceState(null, '', location.pathname + location.search + rest);
  return true;
}

export class ApiError extends Error {
  constructor(status, message, hint, path) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.hint = hint ?? null;
    this.path = path;
  }
}

// GET (or POST with a JSON body) a path of this origin. `as: 'text'` returns the body
// as text (CSV), otherwise the parsed JSON.
export async function api(path, { method = 'GET', body, as = 'json', signal } = {}) {
  const headers = { accept: as === 'text' ? 'text/csv, application/json' : 'application/json' };
  const key = getKey();
  if (key) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, `Cannot reach Helios (${method} ${path})`, 'Is `helios up` still running? The dashboard retries by itself.', path);
  }
  if (!res.ok) {
    let message = `${res.status} ${res.statusText} from ${method} ${path.split('?')[0]}`;
    let hint = null;
    try {
      const j = await res.json();
      if (j && typeof j.error === 'string') message = j.error;
      if (j && typeof j.hint === 'string') hint = j.hint;
    } catch {
      // Not JSON: keep the status line.
    }
    const err = new ApiError(res.status, message, hint, path);
    if (res.status === 401 || res.status === 403) {
      authEvents.dispatchEvent(new CustomEvent('rejected', { detail: err }));
    }
    throw err;
  }
  return as === 'text' ? res.text() : res.json();
}

// A query string from an object, leaving out null/undefined/'' values.
export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== '') p.set(k, String(v));
  }
  const s = p.toString();
  return s ? `?${s}` : '';
}
