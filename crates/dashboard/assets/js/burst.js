// One burst: what was asked, where it is, its per-worker timeline (live from
// the event stream while it runs), the traffic between its packs, the times
// of its phases, its errors with the failing rank, each rank's log, and
// cancel / retry.

import { api, ApiError, followBurst } from './api.js';
import { h, section, errorBox, facts, stateBadge, fmtTime, fmtDuration, fmtBytes, fmtCount, span, FINAL } from './dom.js';
import { chart } from './charts.js';
import { invokerNames } from './invokers.js';
import { timelineOption, rowsOf } from './timeline.js';
import { matrixOf, matrixOption, totalsOf, totalsText } from './traffic.js';
import { phaseTimes, phasesOption, phasesTableOf } from './phases.js';
import { workerTable } from './workers.js';
import { logsPanel } from './logs.js';
import { failingRank } from './failure.js';

const has = (v) => v !== undefined && v !== null;

/** "64 of 64 workers started · 60 finished · start spread 3.2 ms". */
export function progressText(b) {
  const workers = b.workers ?? [];
  const n = workers.length || b.request?.workers || 0;
  const started = workers.filter((w) => has(w.started_at)).length;
  const finished = workers.filter((w) => has(w.finished_at)).length;
  return `${started} of ${n} workers started · ${finished} finished · start spread ${fmtDuration(startSpread(b))}`;
}

/** The burst's start spread, or the spread of the starts so far. */
export function startSpread(b) {
  if (has(b.start_spread_us)) return b.start_spread_us;
  const starts = (b.workers ?? []).map((w) => w.started_at).filter(has);
  return starts.length > 1 ? Math.max(...starts) - Math.min(...starts) : null;
}

/** The burst's times and shape, as facts. */
export function burstFacts(b) {
  const r = b.request ?? {};
  const traffic = totalsOf(b);
  return facts([
    ['Function', r.function],
    ['Workers', String(r.workers ?? (b.workers ?? []).length)],
    ['Granularity', `${r.granularity ?? '—'}${r.granularity === 1 ? ' (FaaS mode: one worker per pack)' : ''} · ${(b.packs ?? []).length} packs`],
    ['Transport', b.transport ?? r.transport ?? '—'],
    ['Namespace', b.namespace],
    ['Attempt', String(b.attempt ?? 1)],
    ['Submitted', fmtTime(b.submitted_at)],
    ['Queued for', fmtDuration(span(b.submitted_at, b.placed_at))],
    ['Placed → all started', fmtDuration(span(b.placed_at, b.running_at))],
    ['Start spread', fmtDuration(startSpread(b))],
    ['Ran for', fmtDuration(span(b.running_at, b.finished_at))],
    ['Total', fmtDuration(span(b.submitted_at, b.finished_at))],
    ['Finished', fmtTime(b.finished_at)],
    // Local vs remote: the comparison of burst and FaaS mode the paper draws.
    traffic ? ['Sent inside packs', fmtBytes(traffic.local_bytes)] : null,
    traffic ? ['Sent between packs', `${fmtBytes(traffic.remote_bytes)} in ${fmtCount(traffic.remote_transfers)} transfers`] : null,
  ]);
}

export function render(root, { params: [id] }, signal) {
  root.append(h('h1', {}, 'Burst ', h('code', {}, id)), h('p', { class: 'muted' }, 'Loading…'));
  Promise.all([api(`/v1/bursts/${encodeURIComponent(id)}`, { signal }), invokerNames(signal)])
    .then(([burst, names]) => page(root, burst, names, signal))
    .catch((err) => {
      if (signal.aborted) return;
      const missing = err instanceof ApiError && err.status === 404;
      root.replaceChildren(h('div', {},
        h('h1', {}, missing ? 'No such burst' : 'Burst ', missing ? null : h('code', {}, id)),
        errorBox(err),
        missing ? h('p', {}, `There is no burst ${id} in your namespace. `, h('a', { href: '#/bursts' }, 'See your bursts')) : null));
    });
}

function page(root, first, names, signal) {
  let burst = first;
  let picked = null; // the rank whose log the user chose
  const stateBox = h('span', { id: 'burst-state', 'aria-live': 'polite' });
  const actions = h('div', { class: 'actions' });
  const trouble = h('p', { class: 'live', 'aria-live': 'polite' });
  const factsBox = h('div');
  const failureBox = h('div');
  const summary = h('p', { class: 'summary-line', id: 'timeline-summary', 'aria-live': 'polite' });
  const timelineBox = h('div', { class: 'chart tall', role: 'img', 'aria-label': 'Per-worker timeline' });
  const phasesTable = h('div', { id: 'phases-table' });
  const phasesPanel = section('Phases', h('div', { class: 'chart', id: 'phases-chart', role: 'img', 'aria-label': 'Time of each phase' }), phasesTable);
  const matrixBox = h('div', { class: 'chart', id: 'traffic-matrix', role: 'img', 'aria-label': 'Bytes sent between packs' });
  const totalsBox = h('div');
  const workersBox = h('div');
  const logsBox = h('div');
  const requestBox = h('pre', { id: 'burst-request' });

  root.replaceChildren(
    h('h1', {}, 'Burst ', h('code', {}, burst.id), stateBox),
    actions, trouble,
    h('div', { class: 'cols' }, section('Summary', factsBox), section('Request', requestBox)),
    failureBox,
    section('Timeline', summary, h('p', { class: 'muted' }, 'One row per worker, grouped by invoker and pack. Hover a bar for its times; the dashed line is the gang-start barrier (every pack connected).'), timelineBox),
    phasesPanel,
    section('Traffic between packs', totalsBox, matrixBox),
    section('Workers', workersBox),
    section('Logs', logsBox),
  );

  const timeline = chart(timelineBox, () => timelineOption(burst, names), signal);
  const phaseChart = chart(phasesPanel.querySelector('.chart'), () => {
    const p = phaseTimes(burst);
    return p.length ? phasesOption(p) : null;
  }, signal);
  const matrix = chart(matrixBox, () => {
    const m = matrixOf(burst);
    return m ? matrixOption(m) : null;
  }, signal);
  const workers = workerTable(workersBox, (rank) => { picked = rank; logs.show(rank); update(); });
  const logs = logsPanel(logsBox, burst.id, (rank) => (burst.workers ?? []).find((w) => w.rank === rank)?.error ?? null, signal);

  let shownFinal = null;
  function update() {
    const failing = failingRank(burst);
    const final = FINAL.has(burst.state);
    stateBox.replaceChildren(stateBadge(burst.state));
    factsBox.replaceChildren(burstFacts(burst));
    requestBox.textContent = JSON.stringify(burst.request ?? {}, null, 2);
    summary.textContent = progressText(burst);
    failureBox.replaceChildren(...failure(burst, failing, () => { picked = failing; logs.show(failing); workers.focusRank(failing); }));
    const phases = phaseTimes(burst);
    phasesPanel.hidden = phases.length === 0;
    phasesTable.replaceChildren(phasesTableOf(phases));
    const m = matrixOf(burst);
    matrixBox.hidden = !m;
    totalsBox.replaceChildren(...[totalsText(totalsOf(burst)), m ? null : h('p', { class: 'muted' }, 'No pack-to-pack byte counts were recorded.')].filter(Boolean));
    // Square-ish cells: the matrix grows with the number of packs.
    matrixBox.style.height = `${Math.min(720, Math.max(280, 110 + 14 * (burst.packs ?? []).length))}px`;
    workers.update({ burst, rows: rowsOf(burst, names), names, failing, selected: picked });
    // Drawn again only when the burst ends: typing in them must survive events.
    if (final !== shownFinal) {
      shownFinal = final;
      actions.replaceChildren(...buttons(burst, final, signal, (b) => { burst = b; update(); }));
    }
    timeline.update();
    if (!phasesPanel.hidden) phaseChart.update();
    if (m) matrix.update();
  }
  update();

  // A failed burst opens on its failing rank's log.
  let opened = false;
  const openLog = () => {
    if (opened || !FINAL.has(burst.state)) return;
    opened = true;
    const failing = failingRank(burst);
    if (burst.state === 'failed' && failing !== null && picked === null) logs.show(failing);
  };
  openLog();

  if (!FINAL.has(burst.state)) {
    // Open bars grow with the clock between events.
    const tick = setInterval(() => { if (!FINAL.has(burst.state)) timeline.update(); }, 1000);
    signal.addEventListener('abort', () => clearInterval(tick));
    followBurst(burst.id, (b) => { burst = b; update(); openLog(); }, signal,
      (err) => { trouble.textContent = err ? `The live stream broke (${err.message}); trying again…` : ''; })
      .then(() => { clearInterval(tick); trouble.textContent = ''; })
      .catch((err) => { if (!signal.aborted) trouble.replaceChildren(errorBox(err)); });
  }
}

function failure(b, failing, showLog) {
  const items = [];
  if (b.state === 'failed' || b.error || (b.attempt_errors ?? []).length || (b.notes ?? []).length) {
    const failed = (b.workers ?? []).find((w) => w.rank === failing);
    const packErrors = (b.packs ?? []).filter((p) => p.error);
    items.push(section('Errors',
      failing !== null ? h('div', { class: 'failing-rank', id: 'failing-rank', dataset: { rank: failing } },
        h('strong', {}, `Failing rank: ${failing}`),
        h('p', { class: 'error' }, failed?.error ?? b.error ?? ''),
        h('button', { type: 'button', onclick: showLog }, `Show rank ${failing}'s log`)) : null,
      b.error ? h('p', {}, h('strong', {}, 'Burst error: '), h('span', { class: 'error', id: 'burst-error' }, b.error)) : null,
      packErrors.length ? h('ul', {}, packErrors.map((p) => h('li', {}, `pack ${p.index}: `, h('span', { class: 'error' }, p.error)))) : null,
      (b.attempt_errors ?? []).length ? [h('h3', {}, 'Earlier attempts'), h('ol', {}, b.attempt_errors.map((e) => h('li', { class: 'error' }, e)))] : null,
      (b.notes ?? []).length ? [h('h3', {}, 'Notes'), h('ul', {}, b.notes.map((n) => h('li', {}, n)))] : null));
  }
  return items;
}

function buttons(b, final, signal, onBurst) {
  const out = [];
  const said = h('span', { class: 'live', 'aria-live': 'polite' });
  if (!final) {
    out.push(h('button', {
      type: 'button', class: 'danger', id: 'cancel-burst',
      onclick: async (e) => {
        e.target.disabled = true;
        try { onBurst(await api(`/v1/bursts/${encodeURIComponent(b.id)}/cancel`, { method: 'POST', signal })); } catch (err) { said.replaceChildren(errorBox(err)); e.target.disabled = false; }
      },
    }, 'Cancel'));
  } else {
    out.push(h('button', {
      type: 'button', id: 'retry-burst',
      onclick: async (e) => {
        e.target.disabled = true;
        // The same request as a new burst: without the key that would make it the same burst again.
        const { idempotency_key: _key, session: _session, ...request } = b.request ?? {};
        try {
          const next = await api('/v1/bursts', { method: 'POST', body: request, signal });
          window.location.hash = `#/bursts/${encodeURIComponent(next.id)}`;
        } catch (err) { said.replaceChildren(errorBox(err)); e.target.disabled = false; }
      },
    }, 'Retry as a new burst'));
  }
  const other = h('input', { id: 'compare-with', placeholder: 'another burst id', spellcheck: 'false', autocomplete: 'off' });
  const compare = h('form', { class: 'actions' }, h('label', { for: 'compare-with' }, 'Compare with'), other, h('button', { type: 'submit' }, 'Compare'));
  compare.addEventListener('submit', (e) => {
    e.preventDefault();
    if (other.value.trim()) window.location.hash = `#/compare/${encodeURIComponent(b.id)}/${encodeURIComponent(other.value.trim())}`;
  });
  out.push(compare, said);
  return out;
}
