// The overview: the invokers and their free capacity, how many of the
// namespace's bursts are in each state, the recent failures, and the bursts
// that ended in each of the last 60 minutes. Polled every 5 s (nothing here
// streams; the burst page does).

import { api, ApiError } from './api.js';
import { h, section, errorBox, table, stateBadge, fmtAgo, fmtTime, fmtCount } from './dom.js';
import { chart, STATE_COLOURS, tooltipLines } from './charts.js';
import { invokerRows } from './invokers.js';

const STATES = ['queued', 'starting', 'running', 'succeeded', 'failed', 'cancelled'];
const POLL_MS = 5000;

/** /v1/overview, or the invokers alone from a controller without it. */
async function load(signal) {
  try {
    return await api('/v1/overview', { signal });
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404) throw err;
    const invokers = await api('/v1/invokers', { signal });
    return { now: Date.now() * 1000, invokers, bursts: null, recent_failures: [], throughput: [] };
  }
}

export function render(root, _route, signal) {
  const status = h('p', { class: 'live', 'aria-live': 'polite' });
  const countsBox = h('div');
  const invokersBox = h('div');
  const failuresBox = h('div');
  const chartBox = h('div', { class: 'chart', role: 'img', 'aria-label': 'Bursts ended per minute, the last 60 minutes, by outcome' });
  root.append(
    h('h1', {}, 'Overview'),
    status,
    section('Bursts by state', countsBox),
    section('Invokers', invokersBox),
    section('Throughput (bursts ended per minute)', chartBox),
    section('Recent failures', failuresBox),
  );

  let data = null;
  const throughput = chart(chartBox, () => throughputOption(data?.throughput ?? []), signal);

  async function refresh() {
    try {
      data = await load(signal);
      status.textContent = `Updated ${fmtTime(data.now)}; refreshed every ${POLL_MS / 1000} s.`;
      countsBox.replaceChildren(counts(data.bursts));
      invokersBox.replaceChildren(invokers(data.invokers ?? [], data.now));
      failuresBox.replaceChildren(failures(data.recent_failures ?? [], data.now));
      throughput.update();
    } catch (err) {
      if (signal.aborted) return;
      status.replaceChildren(errorBox(err));
    }
  }
  refresh();
  const timer = setInterval(refresh, POLL_MS);
  signal.addEventListener('abort', () => clearInterval(timer));
}

function counts(bursts) {
  if (!bursts) return h('p', { class: 'muted' }, 'This controller does not report counts (no /v1/overview).');
  return h('dl', { class: 'counts', id: 'burst-counts' }, STATES.map((s) =>
    h('div', { class: `count state-${s}`, style: `border-left-color: ${STATE_COLOURS[s]}`, dataset: { state: s } },
      h('dt', {}, s),
      h('dd', {}, h('a', { href: `#/bursts?state=${s}`, 'aria-label': `${fmtCount(bursts[s] ?? 0)} ${s}: list them` }, fmtCount(bursts[s] ?? 0))))));
}

function invokers(list, now) {
  if (!list.length) return h('p', { class: 'muted' }, 'No invoker has registered: bursts wait in the queue until one does.');
  return table(invokerRows(now), list, { caption: `${list.length} invoker${list.length === 1 ? '' : 's'}` });
}

function failures(list, now) {
  if (!list.length) return h('p', { class: 'muted' }, 'No burst of this namespace has failed recently.');
  return table([
    { title: 'Burst', cell: (b) => h('a', { href: `#/bursts/${encodeURIComponent(b.id)}` }, b.id) },
    { title: 'Function', cell: (b) => b.function },
    { title: 'Workers', class: 'num', cell: (b) => fmtCount(b.workers) },
    { title: 'Failing rank', class: 'num', cell: (b) => b.failed_rank ?? '—' },
    { title: 'Error', cell: (b) => h('span', { class: 'error' }, b.error ?? '') },
    { title: 'Ended', cell: (b) => h('span', { title: fmtTime(b.finished_at) }, fmtAgo(b.finished_at, now)) },
  ], list);
}

function throughputOption(buckets) {
  const outcomes = ['succeeded', 'failed', 'cancelled'];
  const label = (us) => new Date(us / 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return {
    aria: { enabled: true, decal: { show: true }, label: { description: 'Bursts that ended in each of the last 60 minutes, stacked by outcome.' } },
    legend: { top: 0 },
    grid: { left: 40, right: 16, top: 36, bottom: 30 },
    tooltip: {
      trigger: 'axis',
      formatter: (items) => tooltipLines([items[0]?.axisValue, ...items.map((i) => `${i.seriesName}: ${i.value}`)]),
    },
    xAxis: { type: 'category', data: buckets.map((b) => label(b.start)) },
    yAxis: { type: 'value', minInterval: 1 },
    series: outcomes.map((o) => ({
      id: o,
      name: o,
      type: 'bar',
      stack: 'ended',
      itemStyle: { color: STATE_COLOURS[o] },
      data: buckets.map((b) => b[o] ?? 0),
    })),
  };
}
