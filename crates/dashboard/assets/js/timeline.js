// A burst's per-worker timeline as an ECharts custom series: one row per
// worker, rows grouped by invoker and pack (a shaded band per pack), and for
// each worker the segments of its life — waiting for its pack process, held
// at the gang-start barrier, running (split into the phases the function
// reports) — with the moment every pack was connected (the barrier) and the
// last start marked. Times are milliseconds since the burst was submitted.

import { OKABE_ITO, tooltipLines } from './charts.js';
import { fmtDuration } from './dom.js';
import { failingRank } from './failure.js';

// Phases take the colours the fixed segments leave; decals tell repeats apart.
const PHASE_COLOURS = [OKABE_ITO.green, OKABE_ITO.yellow, OKABE_ITO.grey, OKABE_ITO.blue, OKABE_ITO.sky, OKABE_ITO.orange];
const has = (v) => v !== undefined && v !== null;

/** Workers in display order: by invoker, then pack, then rank; unplaced last. */
export function rowsOf(burst, names) {
  const packs = new Map((burst.packs ?? []).map((p) => [p.index, p]));
  const key = (w) => {
    const p = has(w.pack) ? packs.get(w.pack) : null;
    return p ? [0, names.get(p.invoker) ?? p.invoker ?? '', p.index, w.rank] : [1, '', 0, w.rank];
  };
  return [...(burst.workers ?? [])].sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    for (let i = 0; i < x.length; i += 1) if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
  });
}

/** Each worker's segments: [{series, from, to}] in µs (an open one ends `now`). */
function segments(w, failing, now, final) {
  const out = [];
  const end = (t) => (has(t) ? t : now);
  if (has(w.placed_at)) out.push({ series: 'waiting for its pack', from: w.placed_at, to: end(w.pack_started_at ?? w.started_at) });
  if (has(w.pack_started_at)) out.push({ series: 'gang-start barrier', from: w.pack_started_at, to: end(w.started_at ?? w.finished_at) });
  if (!has(w.started_at)) return out;
  const stop = end(w.finished_at);
  // A worker of an ended burst that did not finish was stopped with it.
  if (w.error || (final && !has(w.finished_at))) {
    out.push({ series: w.error && w.rank === failing ? 'failed (the cause)' : 'stopped early', from: w.started_at, to: stop });
    return out;
  }
  const phases = w.phases ?? [];
  const firstPhase = phases.length ? phases[0].at : stop;
  if (firstPhase > w.started_at) out.push({ series: 'running', from: w.started_at, to: Math.min(firstPhase, stop) });
  phases.forEach((p, i) => {
    out.push({ series: `phase: ${p.name}`, from: p.at, to: i + 1 < phases.length ? phases[i + 1].at : stop });
  });
  return out;
}

const FIXED_SERIES = [
  ['waiting for its pack', OKABE_ITO.orange],
  ['gang-start barrier', OKABE_ITO.sky],
  ['running', OKABE_ITO.blue],
  ['failed (the cause)', OKABE_ITO.vermillion],
  ['stopped early', OKABE_ITO.purple],
];

/** The chart's option for `burst` (names: invoker id → name). */
export function timelineOption(burst, names) {
  const now = Date.now() * 1000;
  const t0 = burst.submitted_at ?? 0;
  const ms = (us) => (us - t0) / 1000;
  const rows = rowsOf(burst, names);
  const failing = failingRank(burst);
  const packs = new Map((burst.packs ?? []).map((p) => [p.index, p]));

  const phaseNames = [];
  for (const w of rows) for (const p of w.phases ?? []) if (!phaseNames.includes(p.name)) phaseNames.push(p.name);
  const seriesDefs = [...FIXED_SERIES, ...phaseNames.map((n, i) => [`phase: ${n}`, PHASE_COLOURS[i % PHASE_COLOURS.length]])];
  const data = new Map(seriesDefs.map(([name]) => [name, []]));
  const final = ['succeeded', 'failed', 'cancelled'].includes(burst.state);
  const cap = final && has(burst.finished_at) ? burst.finished_at : now;
  rows.forEach((w, row) => {
    for (const s of segments(w, failing, cap, final)) {
      data.get(s.series)?.push({ value: [row, ms(s.from), ms(Math.max(s.from, s.to)), w.rank], segment: s.series });
    }
  });

  // One band per pack, in the rows' order.
  const bands = [];
  let at = 0;
  while (at < rows.length && has(rows[at].pack)) {
    const pack = rows[at].pack;
    let to = at;
    while (to + 1 < rows.length && rows[to + 1].pack === pack) to += 1;
    const p = packs.get(pack);
    bands.push([
      { yAxis: at, name: `pack ${pack} · ${names.get(p?.invoker) ?? p?.invoker ?? '?'}`, itemStyle: { color: bands.length % 2 ? 'rgba(128,128,128,0.13)' : 'rgba(128,128,128,0.04)' } },
      { yAxis: to },
    ]);
    at = to + 1;
  }
  const packStarts = (burst.packs ?? []).map((p) => p.started_at);
  const barrier = packStarts.length && packStarts.every(has) ? Math.max(...packStarts) : null;
  const marks = [];
  if (barrier) marks.push({ xAxis: ms(barrier), name: 'barrier: every pack connected', lineStyle: { color: OKABE_ITO.vermillion, type: 'dashed' }, label: { position: 'end' } });
  if (has(burst.running_at)) marks.push({ xAxis: ms(burst.running_at), name: 'last worker started', lineStyle: { color: OKABE_ITO.green, type: 'solid' }, label: { position: 'start' } });

  const many = rows.length > 64;
  const labelColour = document.documentElement.dataset.theme === 'dark' ? '#bbb' : '#444';
  const byRow = (row) => {
    const w = rows[row];
    const p = has(w?.pack) ? packs.get(w.pack) : null;
    return w ? `rank ${w.rank}${p ? ` · pack ${p.index} on ${names.get(p.invoker) ?? p.invoker}` : ' · not placed'}` : '';
  };
  return {
    aria: { enabled: true, decal: { show: true }, label: { description: `Timeline of ${rows.length} workers: when each waited for its pack, waited at the gang-start barrier, and ran.` } },
    legend: { top: 0, type: 'scroll' },
    grid: { left: 70, right: many ? 56 : 24, top: 56, bottom: 60 },
    tooltip: {
      trigger: 'item',
      formatter: (item) => {
        const [row, from, to] = item.value;
        return tooltipLines([byRow(row), item.data.segment, `${from.toFixed(1)} ms → ${to.toFixed(1)} ms (${fmtDuration((to - from) * 1000)})`]);
      },
    },
    xAxis: { type: 'value', name: 'ms since submitted', nameLocation: 'middle', nameGap: 28, min: 0 },
    yAxis: {
      type: 'category',
      inverse: true,
      data: rows.map((w) => `rank ${w.rank}`),
      axisTick: { show: false },
      axisLabel: { fontSize: 10 },
    },
    dataZoom: many ? [
      { type: 'slider', yAxisIndex: 0, right: 8, width: 18, startValue: 0, endValue: Math.min(rows.length, 128) - 1, filterMode: 'weakFilter' },
      { type: 'inside', yAxisIndex: 0, filterMode: 'weakFilter', zoomOnMouseWheel: false, moveOnMouseWheel: true },
    ] : [],
    series: seriesDefs.map(([name, colour], i) => ({
      id: name,
      name,
      type: 'custom',
      renderItem: bar,
      progressive: 0,
      encode: { x: [1, 2], y: 0 },
      itemStyle: { color: colour },
      data: data.get(name),
      markArea: i === 0 ? { silent: true, label: { show: bands.length <= 32, position: 'insideLeft', fontSize: 10, color: labelColour }, data: bands } : undefined,
      markLine: i === 0 && marks.length ? { silent: true, symbol: 'none', label: { formatter: '{b}', fontSize: 10 }, data: marks } : undefined,
    })),
  };
}

// One segment: a bar across its time span, clipped to the plot.
function bar(params, api) {
  const row = api.value(0);
  const from = api.coord([api.value(1), row]);
  const to = api.coord([api.value(2), row]);
  const height = Math.max(1, api.size([0, 1])[1] * 0.7);
  const shape = echarts.graphic.clipRectByRect(
    { x: from[0], y: from[1] - height / 2, width: Math.max(1, to[0] - from[0]), height },
    { x: params.coordSys.x, y: params.coordSys.y, width: params.coordSys.width, height: params.coordSys.height },
  );
  return shape && { type: 'rect', shape, style: api.style() };
}
