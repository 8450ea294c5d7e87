// A burst's logs: one rank's lines (what it wrote, and its panic) or every
// pack's whole output. A worker's returned error is not in its log, so the
// rank's error is shown above its lines. Tenants' text: shown as text, never
// as markup.

import { api, query } from './api.js';
import { h, errorBox } from './dom.js';

/** logsPanel(host, burstId, errorOf(rank) → string|null, signal) → {show(rank|null)}. */
export function logsPanel(host, burstId, errorOf, signal) {
  const rank = h('input', { id: 'log-rank', type: 'number', min: 0, step: 1, inputmode: 'numeric', style: 'width: 7rem' });
  const out = h('div', { id: 'log-output', 'aria-live': 'polite' });
  const form = h('form', { class: 'actions' },
    h('label', { for: 'log-rank' }, 'Rank'), rank,
    h('button', { type: 'submit' }, 'Show this rank\'s log'),
    h('button', { type: 'button', id: 'log-all' }, 'Every pack\'s output'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    show(rank.value === '' ? null : Number(rank.value));
  });
  form.querySelector('#log-all').addEventListener('click', () => show(null));
  host.append(form, out);

  let asked = 0;
  async function show(r) {
    const mine = ++asked;
    if (r !== null) rank.value = String(r);
    out.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    try {
      const logs = await api(`/v1/bursts/${encodeURIComponent(burstId)}/logs${query({ rank: r ?? '' })}`, { signal });
      if (mine !== asked) return;
      out.dataset.rank = r === null ? 'all' : String(r);
      const error = r === null ? null : errorOf(r);
      out.replaceChildren(...[
        h('h3', {}, r === null ? 'Every pack\'s output' : `Log of rank ${r}`),
        error ? h('p', {}, h('strong', {}, `Rank ${r}'s error: `), h('span', { class: 'error' }, error)) : null,
        ...render(logs),
      ].filter(Boolean));
    } catch (err) {
      if (!signal.aborted && mine === asked) out.replaceChildren(errorBox(err));
    }
  }
  return { show };
}

function render(logs) {
  const packs = (logs?.packs ?? []).filter((p) => p.stdout || p.stderr);
  if (!packs.length) return [h('p', { class: 'muted' }, 'Nothing was printed.')];
  return packs.flatMap((p) => [
    h('h4', {}, `pack ${p.pack}${p.truncated ? ' (truncated: the oldest bytes were dropped)' : ''}`),
    p.stdout ? h('pre', { class: 'log stdout', 'aria-label': `pack ${p.pack} standard output` }, p.stdout) : null,
    p.stderr ? h('pre', { class: 'log stderr', 'aria-label': `pack ${p.pack} standard error` }, p.stderr) : null,
  ]);
}
