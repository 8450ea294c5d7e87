// Small helpers every view uses: building elements and formatting the API's
// numbers. API data only ever reaches the page as text (textContent): logs,
// errors and parameters are tenants' text, never markup.

/** h('a', {href, class: 'x', onclick}, 'text', child, [more]) → an element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      el.className = value;
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, '');
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** The states after which a burst changes no more. */
export const FINAL = new Set(['succeeded', 'failed', 'cancelled']);

/** A state as a badge: the word is always shown, colour only helps. */
export function stateBadge(state) {
  return h('span', { class: `badge state-${state ?? 'unknown'}` }, state ?? 'unknown');
}

/** Microseconds since the epoch → local date and time (to the millisecond). */
export function fmtTime(us) {
  if (us === undefined || us === null) return '—';
  const d = new Date(us / 1000);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** Microseconds since the epoch → "12 s ago" (relative to `nowUs`, or now). */
export function fmtAgo(us, nowUs = Date.now() * 1000) {
  if (us === undefined || us === null) return '—';
  const secs = Math.max(0, (nowUs - us) / 1e6);
  if (secs < 60) return `${secs.toFixed(secs < 10 ? 1 : 0)} s ago`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min ago`;
  if (secs < 86400) return `${Math.floor(secs / 3600)} h ago`;
  return `${Math.floor(secs / 86400)} d ago`;
}

/** A duration in microseconds → "850 µs", "12.3 ms", "4.20 s", "3 min 5 s". */
export function fmtDuration(us) {
  if (us === undefined || us === null || Number.isNaN(us)) return '—';
  if (us < 1000) return `${Math.round(us)} µs`;
  if (us < 1e6) return `${(us / 1000).toFixed(us < 1e4 ? 2 : 1)} ms`;
  if (us < 60e6) return `${(us / 1e6).toFixed(2)} s`;
  const s = Math.round(us / 1e6);
  return `${Math.floor(s / 60)} min ${s % 60} s`;
}

/** The time between two optional timestamps, or null. */
export function span(from, to) {
  return from !== undefined && from !== null && to !== undefined && to !== null ? to - from : null;
}

/** Bytes → "512 B", "1.5 KiB", "3.2 MiB", "1.1 GiB". */
export function fmtBytes(n) {
  if (n === undefined || n === null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

export function fmtCount(n) {
  return n === undefined || n === null ? '—' : Number(n).toLocaleString('en');
}

/** A panel with a heading: the page's sections all look alike. */
export function section(title, ...children) {
  const id = `h-${title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
  return h('section', { class: 'panel', 'aria-labelledby': id }, h('h2', { id }, title), ...children);
}

/** An error from the API or the network, said in the page. */
export function errorBox(err) {
  return h('p', { class: 'error', role: 'alert' }, err?.message ?? String(err));
}

/** A definition list from [term, value] pairs (values may be elements). */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(Boolean).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));
}

/** A plain table: columns [{title, cell(row) → text|Node, class?}], rows. */
export function table(columns, rows, { caption, rowClass } = {}) {
  return h('table', { class: 'grid' },
    caption ? h('caption', {}, caption) : null,
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.class }, c.title)))),
    h('tbody', {}, rows.map((r) => h('tr', { class: rowClass?.(r) }, columns.map((c) => h('td', { class: c.class }, c.cell(r)))))));
}

/** The first 12 characters of a digest (the full one in the tooltip). */
export function shortHash(digest) {
  if (!digest) return '—';
  return h('code', { title: digest }, digest.length > 19 ? `${digest.slice(0, 19)}…` : digest);
}
