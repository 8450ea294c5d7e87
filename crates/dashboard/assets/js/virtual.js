// A virtualised list: only the rows in view (and a few around them) are in
// the page, so a list of 1,000 bursts or 1,024 workers stays quick. Rows have
// one fixed height. Arrow keys, Page Up/Down, Home and End move the focus from
// row to row, bringing rows into the page as they are reached.

const OVERSCAN = 8;

/**
 * virtualList(host, {rowHeight, count, render(i) → Element, label, onRange(first, last)})
 * `render` builds row i (a focusable element: a link or a button); `onRange`
 * says which rows are in view (e.g. to fetch their page).
 * Returns {setCount(n), refresh(), focusRow(i)}.
 */
export function virtualList(host, { rowHeight, count, render, label, onRange = () => {} }) {
  const viewport = document.createElement('div');
  viewport.className = 'vlist';
  viewport.setAttribute('role', 'list');
  viewport.setAttribute('aria-label', label);
  const spacer = document.createElement('div');
  spacer.className = 'vlist-spacer';
  viewport.append(spacer);
  host.append(viewport);

  let total = count;
  let drawn = new Map(); // index → its list item
  let scheduled = false;

  function range() {
    const first = Math.max(0, Math.floor(viewport.scrollTop / rowHeight) - OVERSCAN);
    const visible = Math.ceil((viewport.clientHeight || 400) / rowHeight);
    const last = Math.min(total - 1, first + visible + 2 * OVERSCAN);
    return [first, last];
  }

  function draw(force = false) {
    scheduled = false;
    spacer.style.height = `${total * rowHeight}px`;
    const [first, last] = range();
    const next = new Map();
    for (let i = first; i <= last; i += 1) {
      let item = force ? null : drawn.get(i);
      if (!item) {
        item = document.createElement('div');
        item.setAttribute('role', 'listitem');
        item.className = 'vlist-item';
        item.style.top = `${i * rowHeight}px`;
        item.style.height = `${rowHeight}px`;
        item.dataset.index = String(i);
        item.append(render(i));
      }
      next.set(i, item);
    }
    const focusedIndex = document.activeElement?.closest?.('.vlist-item')?.dataset.index;
    for (const [i, item] of drawn) {
      // Keep the focused row even out of view, so the keyboard does not lose it.
      if (!next.has(i) && String(i) === focusedIndex && !force) next.set(i, item);
      else if (next.get(i) !== item) item.remove();
    }
    for (const item of next.values()) if (!item.isConnected) viewport.append(item);
    drawn = next;
    // Rows drawn anew replace the focused one: give its successor the focus.
    if (force && focusedIndex !== undefined) drawn.get(Number(focusedIndex))?.querySelector('a, button')?.focus({ preventScroll: true });
    if (total > 0) onRange(first, last);
  }

  function schedule() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => draw());
  }

  function focusRow(i) {
    const index = Math.max(0, Math.min(total - 1, i));
    const top = index * rowHeight;
    if (top < viewport.scrollTop) viewport.scrollTop = top;
    else if (top + rowHeight > viewport.scrollTop + viewport.clientHeight) viewport.scrollTop = top + rowHeight - viewport.clientHeight;
    draw();
    const item = drawn.get(index);
    const target = item?.querySelector('a, button, [tabindex]') ?? item;
    target?.focus();
  }

  viewport.addEventListener('scroll', schedule, { passive: true });
  viewport.addEventListener('keydown', (e) => {
    const at = Number(document.activeElement?.closest?.('.vlist-item')?.dataset.index);
    if (Number.isNaN(at)) return;
    const page = Math.max(1, Math.floor(viewport.clientHeight / rowHeight) - 1);
    const to = { ArrowDown: at + 1, ArrowUp: at - 1, PageDown: at + page, PageUp: at - page, Home: 0, End: total - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    focusRow(to);
  });
  new ResizeObserver(schedule).observe(viewport);
  draw();

  return {
    setCount(n) {
      total = n;
      draw(true);
    },
    refresh: () => draw(true),
    focusRow,
    element: viewport,
  };
}
