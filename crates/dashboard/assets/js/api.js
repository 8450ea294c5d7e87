// The API as the dashboard uses it: JSON over fetch with the API key the user
// signed in with, and server-sent events read through fetch (EventSource cannot
// send an Authorization header).

const KEY = 'volley.apiKey';

/** The stored API key (this tab's first, then this device's), or null. */
export function apiKey() {
  return sessionStorage.getItem(KEY) ?? localStorage.getItem(KEY);
}

/** Keeps the key for this tab, or on this device when `remember`. */
export function signIn(key, remember) {
  signOut();
  (remember ? localStorage : sessionStorage).setItem(KEY, key);
}

export function signOut() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

/** An answer that is not a success: the API's code and message, and the HTTP status. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

// Every 401 tells the app to ask for a key (once per answer; the app decides).
function refused(status) {
  if (status === 401) window.dispatchEvent(new CustomEvent('volley:unauthorized'));
}

async function failure(res) {
  let code = `http_${res.status}`;
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body?.error) ({ code = code, message = message } = body.error);
  } catch {
    // Not JSON (a proxy's page, say): the status line says enough.
  }
  refused(res.status);
  return new ApiError(res.status, code, message);
}

/** GET (or `method`) a JSON answer; throws ApiError with the API's message. */
export async function api(path, { method = 'GET', body, signal } = {}) {
  const init = { method, signal, headers: headers(body === undefined ? {} : { 'Content-Type': 'application/json' }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', `the controller did not answer (${err.message}); is it running?`);
  }
  if (!res.ok) throw await failure(res);
  if (res.status === 204) return null;
  return res.json();
}

/** A query string from the entries that have a value ('' for none). */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/**
 * Reads one server-sent event stream to its end, calling onEvent(name, data)
 * for each event. Resolves when the server ends the stream; rejects if it
 * breaks (or with AbortError when `signal` aborts).
 */
export async function readEvents(path, onEvent, signal) {
  const res = await fetch(path, { signal, headers: headers({ Accept: 'text/event-stream' }) });
  if (!res.ok) throw await failure(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let name = 'message';
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop(); // the last piece may be an unfinished line
    for (const line of lines) {
      if (line === '') {
        // A blank line ends an event (comments and keep-alives carry no data).
        if (data.length) onEvent(name, data.join('\n'));
        name = 'message';
        data = [];
      } else if (line.startsWith(':')) {
        continue;
      } else {
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') name = val;
        else if (field === 'data') data.push(val);
      }
    }
  }
}

/**
 * Follows a burst's events until it is final: onBurst(burst) for each one.
 * A stream that breaks while the burst still runs is opened again, waiting
 * 0.5 s, 1 s, 2 s … up to 15 s between tries (a fresh stream starts with the
 * burst as it is, so nothing is missed). Stops when `signal` aborts.
 */
export async function followBurst(id, onBurst, signal, onTrouble = () => {}) {
  let final = false;
  let wait = 500;
  while (!final && !signal.aborted) {
    try {
      await readEvents(`/v1/bursts/${encodeURIComponent(id)}/events`, (name, data) => {
        if (name !== 'burst') return;
        const burst = JSON.parse(data);
        final = ['succeeded', 'failed', 'cancelled'].includes(burst.state);
        wait = 500;
        onTrouble(null);
        onBurst(burst);
      }, signal);
      if (final) return;
    } catch (err) {
      if (signal.aborted) return;
      // A refused or unknown burst will not come back by trying again.
      if (err instanceof ApiError && err.status >= 400 && err.status < 500) throw err;
      onTrouble(err);
    }
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, wait);
      signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
    });
    wait = Math.min(wait * 2, 15000);
  }
}
