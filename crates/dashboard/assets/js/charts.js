// Apache ECharts, set up once for every chart of the dashboard: the
// Okabe–Ito palette (told apart by people with colour-blindness), decal
// patterns and ARIA descriptions, and the light or dark theme of the page.
// `echarts` is the global of /ui/vendor/echarts.min.js (a classic script).

/** Okabe & Ito's eight colours, by name. */
export const OKABE_ITO = {
  orange: '#E69F00',
  sky: '#56B4E9',
  green: '#009E73',
  yellow: '#F0E442',
  blue: '#0072B2',
  vermillion: '#D55E00',
  purple: '#CC79A7',
  grey: '#999999',
};

const PALETTE = ['blue', 'orange', 'green', 'vermillion', 'sky', 'purple', 'yellow', 'grey'].map((n) => OKABE_ITO[n]);

/** The colour of each burst (or run) state, the same as the badges'. */
export const STATE_COLOURS = {
  queued: OKABE_ITO.orange,
  waiting: OKABE_ITO.orange,
  starting: OKABE_ITO.sky,
  running: OKABE_ITO.blue,
  succeeded: OKABE_ITO.green,
  failed: OKABE_ITO.vermillion,
  cancelled: OKABE_ITO.purple,
};

/** Text made safe for a tooltip (ECharts renders tooltips as HTML). */
export function escapeHtml(text) {
  return String(text ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

/** Tooltip lines, each escaped, joined as HTML lines. */
export function tooltipLines(lines) {
  return lines.filter((l) => l !== null && l !== undefined).map(escapeHtml).join('<br>');
}

function dark() {
  return document.documentElement.dataset.theme === 'dark';
}

function base() {
  // The dark theme built into ECharts colours text and axes; the page's
  // background shows through.
  return {
    color: PALETTE,
    backgroundColor: 'transparent',
    aria: { enabled: true, decal: { show: true } },
    animation: false,
  };
}

const live = new Set();

/**
 * A chart in `el` whose option is `build()`, drawn now and again with
 * `update()` (e.g. for each burst event). It follows the theme and the
 * element's size, and is disposed of when `signal` aborts.
 */
export function chart(el, build, signal) {
  let instance = null;
  const draw = (fresh) => {
    const option = build();
    if (!option) return;
    instance.setOption({ ...base(), ...option }, { notMerge: fresh, lazyUpdate: true });
  };
  const init = () => {
    instance = echarts.init(el, dark() ? 'dark' : null, { renderer: 'canvas' });
    draw(true);
  };
  init();
  const resize = new ResizeObserver(() => instance.resize());
  resize.observe(el);
  const handle = {
    update: () => draw(false),
    redraw: () => draw(true),
    retheme: () => { instance.dispose(); init(); },
    get instance() { return instance; },
  };
  live.add(handle);
  signal.addEventListener('abort', () => {
    live.delete(handle);
    resize.disconnect();
    instance.dispose();
  }, { once: true });
  return handle;
}

/** Draws every chart again in the page's (new) theme. */
export function rethemeAll() {
  for (const c of live) c.retheme();
}
