// Which step of a workflow follows which: the controller says so in the
// workflow's `edges` (a DAG step after each step it needs; a state machine's
// top-level transitions). Workflows as code have none: their steps are drawn
// by the order they started.

/** [[from, to]] edges between the named steps. */
export function edgesOf(workflow) {
  return (workflow?.edges ?? []).map((e) => [e.from, e.to]);
}
