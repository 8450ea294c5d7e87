// Per-phase times, for functions that report phases (TeraSort, PageRank): how
// long each phase took for the median worker and for the slowest one. A phase
// lasts from its `at` to the next phase's, or to the worker's end.

import { tooltipLines, OKABE_ITO } from './charts.js';
import { fmtDuration, table } from './dom.js';

/** [{name, median, max, workers}] in µs, phases in the order they first appear; [] when none. */
export function phaseTimes(burst) {
  const byName = new Map();
  for (const w of burst.workers ?? []) {
    const phases = w.phases ?? [];
    phases.forEach((p, i) => {
      const end = i + 1 < phases.length ? phases[i + 1].at : w.finished_at;
      if (end === undefined || end === null) return;
      if (!byName.has(p.name)) byName.set(p.name, []);
      byName.get(p.name).push(end - p.at);
    });
  }
  return [...byName].map(([name, times]) => {
    times.sort((a, b) => a - b);
    return { name, median: times[Math.floor((times.length - 1) / 2)], max: times[times.length - 1], workers: times.length };
  });
}

export function phasesOption(phases) {
  return {
    aria: { enabled: true, decal: { show: true }, label: { description: 'Time of each phase for the median and the slowest worker.' } },
    legend: { top: 0 },
    grid: { left: 110, right: 24, top: 36, bottom: 40 },
    tooltip: {
      trigger: 'axis',
      axisPointer: { type: 'shadow' },
      formatter: (items) => tooltipLines([items[0]?.name, ...items.map((i) => `${i.seriesName}: ${fmtDuration(i.value * 1000)}`)]),
    },
    xAxis: { type: 'value', name: 'ms', nameLocation: 'middle', nameGap: 26 },
    yAxis: { type: 'category', inverse: true, data: phases.map((p) => p.name) },
    series: [
      { id: 'median', name: 'median worker', type: 'bar', itemStyle: { color: OKABE_ITO.blue }, data: phases.map((p) => p.median / 1000) },
      { id: 'max', name: 'slowest worker', type: 'bar', itemStyle: { color: OKABE_ITO.orange }, data: phases.map((p) => p.max / 1000) },
    ],
  };
}

/** The same figures as text: the chart's reading for a screen reader, and exact numbers. */
export function phasesTableOf(phases) {
  return table([
    { title: 'Phase', cell: (p) => p.name },
    { title: 'Median worker', cell: (p) => fmtDuration(p.median), class: 'num' },
    { title: 'Slowest worker', cell: (p) => fmtDuration(p.max), class: 'num' },
    { title: 'Workers', cell: (p) => String(p.workers), class: 'num' },
  ], phases, { caption: 'Time of each phase' });
}
