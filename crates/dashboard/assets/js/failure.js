// Which worker caused a burst's failure. When one worker fails, the others
// end with errors that only echo it (`aborted: true`); the failing rank is
// the one whose error is its own.

const has = (v) => v !== undefined && v !== null;

/** The failing rank, or null (a controller without `aborted` is read from the burst's error). */
export function failingRank(burst) {
  const workers = burst.workers ?? [];
  const own = workers.filter((w) => w.error && w.aborted === false);
  if (own.length) return own.sort((a, b) => (a.finished_at ?? Infinity) - (b.finished_at ?? Infinity))[0].rank;
  if (has(burst.failed_rank)) return burst.failed_rank;
  const named = /\brank (\d+)\b/.exec(burst.error ?? '');
  if (named) return Number(named[1]);
  const erred = workers.filter((w) => w.error && w.aborted !== true);
  return erred.length === 1 ? erred[0].rank : null;
}
