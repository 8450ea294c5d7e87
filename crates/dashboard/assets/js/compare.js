// Two bursts side by side — say the same job in burst mode and in FaaS mode
// (granularity 1): their shapes, their timelines, and their times in one
// chart (queueing, start-up, start spread, run, and each phase's median).

import { api } from './api.js';
import { h, section, errorBox, stateBadge, fmtDuration, span } from './dom.js';
import { chart, OKABE_ITO, tooltipLines } from './charts.js';
import { invokerNames } from './invokers.js';
import { timelineOption } from './timeline.js';
import { burstFacts, progressText, startSpread } from './burst.js';
import { phaseTimes } from './phases.js';

export function render(root, { params: [a = '', b = ''] }, signal) {
  const left = h('input', { id: 'compare-a', value: a, spellcheck: 'false', autocomplete: 'off', required: true });
  const right = h('input', { id: 'compare-b', value: b, spellcheck: 'false', autocomplete: 'off', required: true });
  const form = h('form', { class: 'filters', 'aria-label': 'Bursts to compare' },
    h('div', { class: 'field' }, h('label', { for: 'compare-a' }, 'First burst id'), left),
    h('div', { class: 'field' }, h('label', { for: 'compare-b' }, 'Second burst id'), right),
    h('button', { type: 'submit', class: 'primary' }, 'Compare'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    window.location.hash = `#/compare/${encodeURIComponent(left.value.trim())}/${encodeURIComponent(right.value.trim())}`;
  });
  const body = h('div');
  root.append(h('h1', {}, 'Compare two bursts'), form, body);
  if (!a || !b) {
    body.append(h('p', { class: 'muted' }, 'Give two burst ids (from the ', h('a', { href: '#/bursts' }, 'bursts list'), '), e.g. the same job with granularity 1 (FaaS mode) and with packs.'));
    return;
  }
  const get = (id) => api(`/v1/bursts/${encodeURIComponent(id)}`, { signal }).then((x) => ({ ok: x }), (err) => ({ err }));
  Promise.all([get(a), get(b), invokerNames(signal)]).then(([x, y, names]) => {
    if (signal.aborted) return;
    const both = [x, y];
    // One time scale for both timelines, so their lengths compare at a glance.
    const longest = Math.max(...both.filter((r) => r.ok).map(({ ok }) => ((ok.finished_at ?? Date.now() * 1000) - ok.submitted_at) / 1000));
    const columns = both.map((r, i) => {
      const id = [a, b][i];
      if (r.err) return h('div', { class: 'panel' }, h('h2', {}, h('code', {}, id)), errorBox(r.err));
      const burst = r.ok;
      const box = h('div', { class: 'chart', role: 'img', 'aria-label': `Per-worker timeline of burst ${id}` });
      const col = h('section', { class: 'panel compare-side', 'aria-label': `Burst ${id}` },
        h('h2', {}, h('a', { href: `#/bursts/${encodeURIComponent(id)}` }, id), ' ', stateBadge(burst.state)),
        h('p', { class: 'summary-line' }, progressText(burst)),
        burstFacts(burst),
        h('h3', {}, 'Timeline'),
        box);
      queueMicrotask(() => chart(box, () => {
        const option = timelineOption(burst, names);
        return { ...option, legend: { show: false }, xAxis: { ...option.xAxis, max: Math.ceil(longest) } };
      }, signal));
      return col;
    });
    body.append(h('div', { class: 'compare', id: 'compare-sides' }, columns));
    if (x.ok && y.ok) {
      const box = h('div', { class: 'chart', role: 'img', 'aria-label': 'The two bursts\' times' });
      body.append(section('Times', box));
      chart(box, () => timesOption(x.ok, y.ok), signal);
    }
  });
}

function times(burst) {
  const out = [
    ['queued', span(burst.submitted_at, burst.placed_at)],
    ['placed → all started', span(burst.placed_at, burst.running_at)],
    ['start spread', startSpread(burst)],
    ['ran', span(burst.running_at, burst.finished_at)],
    ['total', span(burst.submitted_at, burst.finished_at)],
  ];
  for (const p of phaseTimes(burst)) out.push([`phase ${p.name} (median)`, p.median]);
  return new Map(out);
}

function timesOption(x, y) {
  const [tx, ty] = [times(x), times(y)];
  const names = [...new Set([...tx.keys(), ...ty.keys()])];
  const label = (b) => `${b.id} (${b.request?.function ?? '?'}, granularity ${b.request?.granularity ?? '?'})`;
  return {
    aria: { enabled: true, decal: { show: true }, label: { description: 'Times of the two bursts, side by side.' } },
    legend: { top: 0 },
    grid: { left: 150, right: 24, top: 40, bottom: 36 },
    tooltip: {
      trigger: 'axis', axisPointer: { type: 'shadow' },
      formatter: (items) => tooltipLines([items[0]?.name, ...items.map((i) => `${i.seriesName}: ${fmtDuration(i.value * 1000)}`)]),
    },
    xAxis: { type: 'value', name: 'ms', nameLocation: 'middle', nameGap: 24 },
    yAxis: { type: 'category', inverse: true, data: names },
    series: [[x, tx, OKABE_ITO.blue], [y, ty, OKABE_ITO.orange]].map(([b, t, colour], i) => ({
      id: `side-${i}`, name: label(b), type: 'bar', itemStyle: { color: colour },
      data: names.map((n) => (t.get(n) ?? 0) / 1000),
    })),
  };
}
