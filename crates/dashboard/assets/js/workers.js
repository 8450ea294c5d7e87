// A burst's workers, one row each (virtualised: a burst may have 1,024):
// where it ran, how far it got, its traffic counters and its error. The
// failing rank's row stands out; choosing a row shows that rank's log.

import { h, fmtBytes, fmtCount, fmtDuration, span } from './dom.js';
import { virtualList } from './virtual.js';

const has = (v) => v !== undefined && v !== null;

/** How far a worker got, in words. */
export function workerState(w, failing, final) {
  if (w.error) return w.rank === failing ? 'failed' : w.aborted ? 'aborted' : 'failed';
  if (has(w.finished_at)) return 'finished';
  if (final) return 'stopped';
  if (has(w.started_at)) return 'running';
  if (has(w.pack_started_at)) return 'at barrier';
  if (has(w.placed_at) || has(w.pack)) return 'placed';
  return 'waiting';
}

/**
 * workerTable(host, onPick) → {update(burst, rows, names, failing, selected)}.
 * `rows` are the workers in display order.
 */
export function workerTable(host, onPick) {
  let state = { burst: null, rows: [], names: new Map(), failing: null, selected: null };
  const head = h('div', { class: 'vhead workers-cols', 'aria-hidden': 'true' },
    ['Rank', 'Pack', 'Invoker', 'State', 'Started at', 'Ran for', 'Local', 'Remote', 'Remote msgs', 'Error'].map((t) => h('span', {}, t)));
  host.append(head);
  const list = virtualList(host, {
    rowHeight: 32,
    count: 0,
    label: 'Workers; choose one to see its log',
    render: (i) => row(state, state.rows[i]),
  });
  function row({ burst, names, failing, selected }, w) {
    const t0 = burst.submitted_at ?? 0;
    const pack = (burst.packs ?? []).find((p) => p.index === w.pack);
    const t = w.traffic;
    const what = workerState(w, failing, ['succeeded', 'failed', 'cancelled'].includes(burst.state));
    const classes = ['vrow', 'workers-cols', w.rank === failing ? 'failing' : '', w.rank === selected ? 'selected' : ''].join(' ');
    const b = h('button', {
      type: 'button', class: classes, dataset: { rank: w.rank, state: what },
      'aria-label': `rank ${w.rank}, ${what}${w.rank === failing ? ', the failing rank' : ''}: show its log`,
    },
    h('span', {}, String(w.rank)),
    h('span', {}, has(w.pack) ? String(w.pack) : '—'),
    h('span', {}, pack ? names.get(pack.invoker) ?? pack.invoker : '—'),
    h('span', {}, what),
    h('span', {}, has(w.started_at) ? `${((w.started_at - t0) / 1000).toFixed(1)} ms` : '—'),
    h('span', {}, fmtDuration(span(w.started_at, w.finished_at))),
    h('span', { title: t ? `${fmtCount(t.local_messages)} messages` : '' }, t ? fmtBytes(t.local_bytes) : '—'),
    h('span', {}, t ? fmtBytes(t.remote_bytes) : '—'),
    h('span', { title: t ? `${fmtCount(t.remote_transfers)} transfers` : '' }, t ? fmtCount(t.remote_messages) : '—'),
    h('span', { class: w.error ? 'error' : '', title: w.error ?? '' }, w.error ?? ''));
    b.addEventListener('click', () => onPick(w.rank));
    return b;
  }
  return {
    update(next) {
      const grew = next.rows.length !== state.rows.length;
      state = next;
      if (grew) list.setCount(state.rows.length);
      else list.refresh();
    },
    focusRank(rank) {
      const i = state.rows.findIndex((w) => w.rank === rank);
      if (i >= 0) list.focusRow(i);
    },
  };
}
