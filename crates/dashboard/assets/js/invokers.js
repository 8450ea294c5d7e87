// How an invoker is shown (the overview's table; the burst page names a
// pack's invoker with `invokerNames`).

import { h, stateBadge, fmtAgo, fmtTime, fmtCount } from './dom.js';
import { api } from './api.js';

/** The columns of the invokers' table. */
export function invokerRows(now) {
  return [
    { title: 'Name', cell: (i) => h('span', { title: i.id }, i.registration?.name ?? i.id) },
    { title: 'Host', cell: (i) => i.registration?.host ?? '—' },
    { title: 'State', cell: (i) => stateBadge(i.status) },
    { title: 'Slots used / total', cell: (i) => usage(i.registration?.slots, i.free_slots, 'slots') },
    { title: 'Memory used / total (MiB)', cell: (i) => usage(i.registration?.memory_mb, i.free_memory_mb, 'MiB') },
    { title: 'Warm processes', class: 'num', cell: (i) => fmtCount(i.warm ?? 0) },
    { title: 'Last heartbeat', cell: (i) => h('span', { title: fmtTime(i.last_seen) }, fmtAgo(i.last_seen, now)) },
  ];
}

function usage(total, free, unit) {
  if (total === undefined || total === null) return '—';
  const used = Math.max(0, total - (free ?? 0));
  return h('span', { class: 'usage' },
    h('meter', { min: 0, max: total || 1, value: used, 'aria-label': `${used} of ${total} ${unit} in use` }),
    ` ${fmtCount(used)} / ${fmtCount(total)} (${fmtCount(free)} free)`);
}

/** Invoker id → name, for naming where packs run. */
export async function invokerNames(signal) {
  try {
    const list = await api('/v1/invokers', { signal });
    return new Map(list.map((i) => [i.id, i.registration?.name ?? i.id]));
  } catch {
    return new Map(); // the ids will do
  }
}
