// One workflow run: its steps as a graph (a node per step coloured by its
// state, an edge from each step to the steps that need it), and each step's
// attempts, bursts and errors. Refreshed every 2 s until the run ends.

import { api } from './api.js';
import { h, section, errorBox, facts, table, stateBadge, fmtTime, fmtDuration, span, FINAL } from './dom.js';
import { chart, STATE_COLOURS, OKABE_ITO, tooltipLines } from './charts.js';
import { edgesOf } from './steps.js';

const REFRESH_MS = 2000;

export function render(root, { params: [id] }, signal) {
  const stateBox = h('span', { id: 'run-state' });
  const factsBox = h('div');
  const graphBox = h('div', { class: 'chart', role: 'img', 'aria-label': 'The run\'s steps and their dependencies' });
  const stepsBox = h('div');
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  root.append(h('h1', {}, 'Run ', h('code', {}, id), stateBox), body);

  let run = null;
  let edges = [];
  let graph = null;
  let timer = null;
  const refresh = async () => {
    try {
      run = await api(`/v1/runs/${encodeURIComponent(id)}`, { signal });
      if (!graph) {
        const workflow = await api(`/v1/workflows/${encodeURIComponent(run.workflow)}`, { signal }).catch(() => null);
        edges = edgesOf(workflow);
        body.replaceChildren(section('Run', factsBox), section('Steps', graphBox, stepsBox));
        graph = chart(graphBox, () => graphOption(run, edges, workflow?.steps ?? []), signal);
        graph.instance.on('click', (e) => {
          const bursts = run.steps?.[e.data?.name]?.bursts ?? [];
          if (bursts.length) window.location.hash = `#/bursts/${encodeURIComponent(bursts[bursts.length - 1])}`;
        });
      }
      stateBox.replaceChildren(stateBadge(run.state));
      factsBox.replaceChildren(facts([
        ['Workflow', h('a', { href: `#/runs?workflow=${encodeURIComponent(run.workflow)}` }, run.workflow)],
        ['Started', fmtTime(run.created_at)],
        ['Finished', fmtTime(run.finished_at)],
        ['Took', fmtDuration(span(run.created_at, run.finished_at))],
        ['Error', run.error ? h('span', { class: 'error' }, run.error) : '—'],
        ['Input', h('pre', {}, JSON.stringify(run.input ?? null, null, 2))],
        run.output !== undefined && run.output !== null ? ['Output', h('pre', {}, JSON.stringify(run.output, null, 2))] : null,
      ]));
      stepsBox.replaceChildren(stepsTable(run, edges));
      graph.update();
      if (FINAL.has(run.state)) clearInterval(timer);
    } catch (err) {
      if (!signal.aborted) body.replaceChildren(errorBox(err));
      clearInterval(timer);
    }
  };
  refresh();
  timer = setInterval(refresh, REFRESH_MS);
  signal.addEventListener('abort', () => clearInterval(timer));
}

function stepsTable(run, edges) {
  // The graph's edges as text: what each step comes after.
  const after = (name) => edges.filter(([, to]) => to === name).map(([from]) => from).join(', ') || '—';
  const steps = Object.entries(run.steps ?? {});
  if (!steps.length) return h('p', { class: 'muted' }, 'No step has started yet.');
  return table([
    { title: 'Step', cell: ([name]) => h('code', {}, name) },
    { title: 'State', cell: ([, s]) => stateBadge(s.state) },
    { title: 'After', cell: ([name]) => after(name) },
    { title: 'Attempts', class: 'num', cell: ([, s]) => String(s.attempts ?? 0) },
    { title: 'Bursts', cell: ([, s]) => (s.bursts ?? []).flatMap((b, i) => [i ? ', ' : '', h('a', { href: `#/bursts/${encodeURIComponent(b)}` }, b)]) },
    { title: 'Took', cell: ([, s]) => fmtDuration(span(s.started_at, s.finished_at)) },
    { title: 'Errors', cell: ([, s]) => (s.errors ?? []).length ? h('ul', {}, s.errors.map((e) => h('li', { class: 'error' }, e))) : '' },
  ], steps, { caption: 'Each step (choose a burst to see it)' });
}

/** Nodes placed in columns by depth (the longest chain of steps before them). */
function graphOption(run, edges, order) {
  const names = [...new Set([...order, ...Object.keys(run.steps ?? {}), ...edges.flat()])];
  const depth = new Map(names.map((n) => [n, 0]));
  if (!edges.length) {
    // No known dependencies: one column per step, by when each started.
    const started = (n) => run.steps?.[n]?.started_at ?? Infinity;
    [...names].sort((a, b) => started(a) - started(b)).forEach((n, i) => depth.set(n, i));
  } else {
    for (let round = 0; round < names.length; round += 1) {
      for (const [from, to] of edges) depth.set(to, Math.max(depth.get(to) ?? 0, (depth.get(from) ?? 0) + 1));
    }
  }
  const rowInColumn = new Map();
  const nodes = names.map((n) => {
    const d = depth.get(n) ?? 0;
    const row = rowInColumn.get(d) ?? 0;
    rowInColumn.set(d, row + 1);
    const s = run.steps?.[n];
    const state = s?.state ?? 'not started';
    return {
      name: n, x: d * 200, y: row * 90, state,
      value: state,
      itemStyle: { color: STATE_COLOURS[state] ?? OKABE_ITO.grey },
      label: { show: true, formatter: `${n}\n${state}`, position: 'bottom', distance: 8, lineHeight: 16 },
      symbolSize: 34,
      symbol: { failed: 'diamond', succeeded: 'circle', running: 'roundRect', waiting: 'triangle', cancelled: 'rect' }[state] ?? 'emptyCircle',
    };
  });
  return {
    aria: { enabled: true, decal: { show: true }, label: { description: `Workflow run of ${names.length} steps; each node's shape and label say its state.` } },
    tooltip: {
      formatter: (item) => {
        if (item.dataType === 'edge') return tooltipLines([`${item.data.source} → ${item.data.target}`]);
        const s = run.steps?.[item.name];
        return tooltipLines([item.name, item.data.state, s ? `attempts: ${s.attempts}` : null, s?.bursts?.length ? `bursts: ${s.bursts.join(', ')}` : null, ...(s?.errors ?? [])]);
      },
    },
    series: [{
      id: 'steps', type: 'graph', layout: 'none', roam: true,
      edgeSymbol: ['none', 'arrow'], edgeSymbolSize: 9,
      lineStyle: { width: 2, opacity: 0.8, color: OKABE_ITO.grey },
      data: nodes,
      // An edge that skips a column bends, so it does not hide behind the others.
      links: edges.map(([source, target]) => ({ source, target, lineStyle: { curveness: (depth.get(target) ?? 0) - (depth.get(source) ?? 0) > 1 ? 0.3 : 0 } })),
    }],
  };
}
