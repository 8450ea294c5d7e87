// Which step of a workflow follows which, read from its definition as
// written: a DAG's `needs` (JSON, or the YAML forms `needs: [a, b]` and a
// `needs:` list of `- a` lines), a state machine's `Next`, `Default`,
// `Choices` and `Catch`. Anything else gives no edges: the steps are still
// drawn, by the order they started.

/** [[from, to]] edges between the named steps. */
export function edgesOf(workflow) {
  if (!workflow?.source) return [];
  let parsed = null;
  try { parsed = JSON.parse(workflow.source); } catch { /* YAML */ }
  if (workflow.kind === 'dag') return parsed ? dagEdges(parsed) : yamlNeeds(workflow.source);
  if (workflow.kind === 'state_machine' && parsed) return aslEdges(parsed);
  return [];
}

function dagEdges(dag) {
  return Object.entries(dag.steps ?? {}).flatMap(([name, step]) => (step?.needs ?? []).map((n) => [n, name]));
}

function aslEdges(machine) {
  const out = [];
  const walk = (states) => {
    for (const [name, s] of Object.entries(states ?? {})) {
      const next = [s.Next, s.Default, ...(s.Choices ?? []).map((c) => c.Next), ...(s.Catch ?? []).map((c) => c.Next)];
      for (const n of next) if (n) out.push([name, n]);
      for (const branch of s.Branches ?? []) walk(branch.States);
    }
  };
  walk(machine.States);
  return out;
}

// Enough YAML for the DAG front-end's `steps:` mapping; not a YAML parser.
function yamlNeeds(text) {
  const lines = text.split('\n').map((l) => l.replace(/\s+#.*$/, ''));
  const out = [];
  let stepsIndent = null;
  let stepIndent = null;
  let step = null;
  let listIndent = null; // inside a block `needs:` list, its indentation
  for (const line of lines) {
    if (!line.trim()) continue;
    const indent = line.length - line.trimStart().length;
    const text = line.trim();
    if (stepsIndent === null) {
      if (/^steps:\s*$/.test(text)) stepsIndent = indent;
      continue;
    }
    if (indent <= stepsIndent) break;
    if (listIndent !== null) {
      const item = /^-\s*["']?([\w-]+)["']?\s*$/.exec(text);
      if (item && indent >= listIndent) { out.push([item[1], step]); continue; }
      listIndent = null;
    }
    const key = /^["']?([\w-]+)["']?:\s*(.*)$/.exec(text);
    if (stepIndent === null || indent === stepIndent) {
      if (!key) continue;
      stepIndent = indent;
      step = key[1];
      inlineNeeds(key[2], step, out);
    } else if (key && key[1] === 'needs') {
      if (key[2] === '') listIndent = indent;
      else inlineNeeds(`{needs: ${key[2]}}`, step, out);
    }
  }
  return out;
}

function inlineNeeds(rest, step, out) {
  const m = /needs:\s*(?:\[([^\]]*)\]|["']?([\w-]+)["']?)/.exec(rest);
  if (!m) return;
  const names = m[1] !== undefined ? m[1].split(',') : [m[2]];
  for (const n of names.map((s) => s.trim().replace(/^["']|["']$/g, '')).filter(Boolean)) out.push([n, step]);
}
