// The bursts of the namespace, newest first: filters by state, function and
// time, search by id prefix. The server pages (GET /v1/bursts/summaries,
// 100 a page) and the list draws only the rows in view, fetching their pages
// as they scroll in. The filters live in the address, so a view can be linked.

import { api, query } from './api.js';
import { h, errorBox, stateBadge, fmtTime, fmtDuration, fmtCount, span } from './dom.js';
import { virtualList } from './virtual.js';

const STATES = ['queued', 'starting', 'running', 'succeeded', 'failed', 'cancelled'];
const PAGE = 100;
const ROW_HEIGHT = 36;
const REFRESH_MS = 5000;

/** datetime-local value ↔ microseconds since the epoch. */
const toUs = (v) => (v ? new Date(v).getTime() * 1000 : '');
const fromUs = (us) => {
  if (!us) return '';
  const d = new Date(Number(us) / 1000);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
};

export function render(root, { query: q }, signal) {
  const filters = {
    state: new Set((q.get('state') ?? '').split(',').filter((s) => STATES.includes(s))),
    function: q.get('function') ?? '',
    q: q.get('q') ?? '',
    since: q.get('since') ?? '',
    until: q.get('until') ?? '',
  };
  const status = h('p', { class: 'live', id: 'bursts-status', 'aria-live': 'polite' });
  const functionSelect = h('select', { id: 'filter-function' }, h('option', { value: '' }, 'any function'));
  const search = h('input', { id: 'filter-id', type: 'search', placeholder: 'id prefix', value: filters.q, autocomplete: 'off', spellcheck: 'false' });
  const since = h('input', { id: 'filter-since', type: 'datetime-local', value: fromUs(filters.since) });
  const until = h('input', { id: 'filter-until', type: 'datetime-local', value: fromUs(filters.until) });
  const stateBoxes = h('fieldset', {}, h('legend', {}, 'State'), STATES.map((s) => h('label', {},
    h('input', { type: 'checkbox', name: 'state', value: s, checked: filters.state.has(s) }), ` ${s}`)));
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter bursts' },
    stateBoxes,
    h('div', { class: 'field' }, h('label', { for: 'filter-function' }, 'Function'), functionSelect),
    h('div', { class: 'field' }, h('label', { for: 'filter-since' }, 'Submitted after'), since),
    h('div', { class: 'field' }, h('label', { for: 'filter-until' }, 'Submitted before'), until),
    h('div', { class: 'field' }, h('label', { for: 'filter-id' }, 'Search by id'), search));
  form.addEventListener('submit', (e) => e.preventDefault());
  const head = h('div', { class: 'vhead bursts-cols', 'aria-hidden': 'true' },
    ['Id', 'Function', 'State', 'Workers', 'Packs of', 'Submitted', 'Took', 'Error'].map((t) => h('span', {}, t)));
  const listBox = h('div');
  root.append(h('h1', {}, 'Bursts'), form, status, head, listBox);

  // Fill the function filter (names seen as deployed or built in).
  api('/v1/functions', { signal }).then((fns) => {
    for (const f of fns) functionSelect.append(h('option', { value: f.name, selected: f.name === filters.function }, f.name));
    if (filters.function && !fns.some((f) => f.name === filters.function)) {
      functionSelect.append(h('option', { value: filters.function, selected: true }, filters.function));
    }
  }).catch(() => {});

  let pages = new Map(); // offset → Promise of {total, bursts}
  let generation = 0;
  let total = 0;

  const params = (offset) => query({
    offset, limit: PAGE, state: [...filters.state].join(','), function: filters.function,
    q: filters.q.trim(), since: filters.since, until: filters.until,
  });
  const fetchPage = (offset, into = pages) => {
    if (!into.has(offset)) {
      const p = api(`/v1/bursts/summaries${params(offset)}`, { signal });
      p.catch(() => into.delete(offset));
      into.set(offset, p);
    }
    return into.get(offset);
  };
  const rowAt = (i) => {
    const page = pages.get(Math.floor(i / PAGE) * PAGE);
    return page?.settled?.bursts?.[i % PAGE];
  };

  const list = virtualList(listBox, {
    rowHeight: ROW_HEIGHT,
    count: 0,
    label: 'Bursts, newest first',
    render: (i) => row(rowAt(i), i),
    onRange: (first, last) => {
      for (let o = Math.floor(first / PAGE) * PAGE; o <= last; o += PAGE) settle(o);
    },
  });

  // A page's rows appear when it arrives (a placeholder row until then).
  function settle(offset) {
    const mine = generation;
    const p = fetchPage(offset);
    if (p.settled) return;
    p.then((page) => {
      p.settled = page;
      if (mine !== generation) return;
      if (page.total !== total) { total = page.total; list.setCount(total); }
      else list.refresh();
      describe();
    }).catch((err) => { if (!signal.aborted && mine === generation) status.replaceChildren(errorBox(err)); });
  }

  function describe() {
    const any = filters.state.size || filters.function || filters.q || filters.since || filters.until;
    status.textContent = `${fmtCount(total)} burst${total === 1 ? '' : 's'}${any ? ' match the filters' : ''}.`;
  }

  // A change of filter: a fresh first page, and the address says the filters.
  function apply() {
    generation += 1;
    pages = new Map();
    total = 0;
    const address = `#/bursts${query({ state: [...filters.state].join(','), function: filters.function, q: filters.q.trim(), since: filters.since, until: filters.until })}`;
    history.replaceState(null, '', address);
    list.element.scrollTop = 0;
    list.setCount(0);
    settle(0);
  }

  let typing = null;
  form.addEventListener('input', (e) => {
    filters.state = new Set([...stateBoxes.querySelectorAll('input:checked')].map((b) => b.value));
    filters.function = functionSelect.value;
    filters.q = search.value;
    filters.since = toUs(since.value);
    filters.until = toUs(until.value);
    clearTimeout(typing);
    // Typing waits a little; checkboxes and menus apply at once.
    typing = setTimeout(apply, e.target === search ? 250 : 0);
  });

  // New bursts arrive on top: fetch the pages in view again now and then.
  const timer = setInterval(() => {
    if (document.hidden) return;
    const mine = generation;
    const offsets = [...pages.keys()];
    const fresh = new Map();
    Promise.all(offsets.map((o) => fetchPage(o, fresh).then((page) => { fresh.get(o).settled = page; })))
      .then(() => {
        if (mine !== generation) return;
        pages = fresh;
        const first = fresh.get(0)?.settled;
        if (first && first.total !== total) { total = first.total; list.setCount(total); } else list.refresh();
        describe();
      }).catch(() => {});
  }, REFRESH_MS);
  signal.addEventListener('abort', () => { clearInterval(timer); clearTimeout(typing); });

  settle(0);
}

function row(b, i) {
  if (!b) return h('span', { class: 'vrow bursts-cols loading', tabindex: '-1' }, h('span', {}, `#${i + 1} loading…`));
  return h('a', { class: 'vrow bursts-cols', href: `#/bursts/${encodeURIComponent(b.id)}`, dataset: { id: b.id, state: b.state } },
    h('span', {}, h('code', {}, b.id)),
    h('span', {}, b.function),
    h('span', {}, stateBadge(b.state)),
    h('span', {}, fmtCount(b.workers)),
    h('span', {}, String(b.granularity ?? '—')),
    h('span', {}, fmtTime(b.submitted_at)),
    h('span', {}, fmtDuration(span(b.submitted_at, b.finished_at))),
    h('span', { class: b.error ? 'error' : 'muted', title: b.error ?? '' },
      b.failed_rank !== null && b.failed_rank !== undefined ? `rank ${b.failed_rank}: ` : '', b.error ?? ''));
}
