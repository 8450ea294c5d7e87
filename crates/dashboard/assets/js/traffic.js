// What a burst's packs sent each other: a pack × pack matrix of bytes (the
// diagonal is traffic that stayed inside a pack, local; the rest crossed
// between packs, remote), and the workers' counters added up.

import { h, fmtBytes, fmtCount } from './dom.js';
import { OKABE_ITO, tooltipLines } from './charts.js';

/** The matrix: bytes[from][to], the diagonal filled from the workers' local bytes when the packs did not count it. */
export function matrixOf(burst) {
  const packs = burst.packs ?? [];
  const n = packs.length;
  const bytes = packs.map((p) => Array.from({ length: n }, (_, j) => Number(p.sent_bytes?.[j] ?? 0)));
  const local = new Array(n).fill(0);
  for (const w of burst.workers ?? []) {
    if (w.traffic && w.pack !== undefined && w.pack !== null && w.pack < n) local[w.pack] += Number(w.traffic.local_bytes ?? 0);
  }
  for (let i = 0; i < n; i += 1) if (!bytes[i][i]) bytes[i][i] = local[i];
  const any = bytes.some((r) => r.some((v) => v > 0));
  return any ? bytes : null;
}

/** Totals of the workers' counters, or null when none reported any. */
export function totalsOf(burst) {
  const withTraffic = (burst.workers ?? []).filter((w) => w.traffic);
  if (!withTraffic.length) return null;
  const sum = (k) => withTraffic.reduce((s, w) => s + Number(w.traffic[k] ?? 0), 0);
  return {
    local_messages: sum('local_messages'),
    local_bytes: sum('local_bytes'),
    remote_messages: sum('remote_messages'),
    remote_bytes: sum('remote_bytes'),
    remote_transfers: sum('remote_transfers'),
  };
}

export function totalsText(t) {
  if (!t) return h('p', { class: 'muted' }, 'No worker reported traffic counters (the function sent nothing, or the controller does not record them).');
  return h('p', { id: 'traffic-totals' },
    `Local (inside a pack): ${fmtBytes(t.local_bytes)} in ${fmtCount(t.local_messages)} messages. `,
    `Remote (between packs): ${fmtBytes(t.remote_bytes)} in ${fmtCount(t.remote_messages)} messages, ${fmtCount(t.remote_transfers)} transfers.`);
}

export function matrixOption(bytes) {
  const n = bytes.length;
  const cells = [];
  let max = 1;
  for (let i = 0; i < n; i += 1) {
    for (let j = 0; j < n; j += 1) {
      cells.push([j, i, bytes[i][j]]);
      max = Math.max(max, bytes[i][j]);
    }
  }
  const labels = Array.from({ length: n }, (_, i) => `pack ${i}`);
  return {
    aria: { enabled: true, decal: { show: false }, label: { description: `Bytes sent between ${n} packs; the diagonal stayed inside a pack.` } },
    grid: { left: 70, right: 90, top: 30, bottom: 60 },
    tooltip: {
      formatter: (item) => {
        const [to, from, v] = item.value;
        return tooltipLines([from === to ? `inside pack ${from} (local)` : `pack ${from} → pack ${to} (remote)`, fmtBytes(v)]);
      },
    },
    xAxis: { type: 'category', data: labels, name: 'to', nameLocation: 'middle', nameGap: 40, splitArea: { show: true } },
    yAxis: { type: 'category', data: labels, name: 'from', inverse: true, splitArea: { show: true } },
    visualMap: {
      min: 0, max, calculable: true, orient: 'vertical', right: 8, top: 'middle',
      inRange: { color: ['#f2f2f2', OKABE_ITO.sky, OKABE_ITO.blue] },
      formatter: (v) => fmtBytes(Math.round(v)),
    },
    series: [{
      id: 'bytes', name: 'bytes sent', type: 'heatmap', data: cells, progressive: 0,
      label: { show: n <= 12, formatter: (item) => fmtBytes(item.value[2]), fontSize: 10 },
      itemStyle: { borderColor: 'rgba(128,128,128,0.4)', borderWidth: n <= 32 ? 1 : 0 },
    }],
  };
}
