// Workflows and their runs, newest first (refreshed every 5 s).

import { api, query } from './api.js';
import { h, section, errorBox, table, stateBadge, fmtTime, fmtDuration, span } from './dom.js';

const REFRESH_MS = 5000;

export function render(root, { query: q }, signal) {
  const workflow = q.get('workflow') ?? '';
  const flowsBox = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const runsBox = h('div');
  root.append(h('h1', {}, 'Workflow runs'),
    section(workflow ? `Runs of ${workflow}` : 'Runs', workflow ? h('p', {}, h('a', { href: '#/runs' }, 'All runs')) : null, runsBox),
    section('Workflows', flowsBox));

  api('/v1/workflows', { signal }).then((flows) => {
    flowsBox.replaceChildren(flows.length ? table([
      { title: 'Name', cell: (f) => h('a', { href: `#/runs?workflow=${encodeURIComponent(f.name)}`, 'aria-label': `runs of ${f.name}` }, f.name) },
      { title: 'Kind', cell: (f) => f.kind },
      { title: 'Steps', cell: (f) => (f.steps ?? []).join(', ') },
      { title: 'Description', cell: (f) => f.description ?? '' },
      { title: 'Deployed', cell: (f) => fmtTime(f.deployed_at) },
    ], flows) : h('p', { class: 'muted' }, 'No workflow is deployed in this namespace.'));
  }).catch((err) => { if (!signal.aborted) flowsBox.replaceChildren(errorBox(err)); });

  const refresh = () => api(`/v1/runs${query({ workflow, limit: 200 })}`, { signal }).then((runs) => {
    runsBox.replaceChildren(runs.length ? table([
      { title: 'Run', cell: (r) => h('a', { href: `#/runs/${encodeURIComponent(r.id)}` }, r.id) },
      { title: 'Workflow', cell: (r) => r.workflow },
      { title: 'State', cell: (r) => stateBadge(r.state) },
      { title: 'Started', cell: (r) => fmtTime(r.created_at) },
      { title: 'Took', cell: (r) => fmtDuration(span(r.created_at, r.finished_at)) },
      { title: 'Error', cell: (r) => h('span', { class: 'error' }, r.error ?? '') },
    ], runs) : h('p', { class: 'muted' }, 'No run yet.'));
  }).catch((err) => { if (!signal.aborted) runsBox.replaceChildren(errorBox(err)); });
  refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  signal.addEventListener('abort', () => clearInterval(timer));
}
