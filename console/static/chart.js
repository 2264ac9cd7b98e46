// A live line chart in plain SVG: a window of the newest points of one or
// more series, a zero-based y axis with three grid lines, and optional
// horizontal limit lines. Written here rather than vendored: the console
// needs only this, and a library would outweigh the rest of the page.
import { s, h, replace } from './dom.js';

const H = 150, PAD_L = 52, PAD_R = 8, PAD_T = 8, PAD_B = 18;

export class LineChart {
  // series: [{label, color}]; fmt renders a y value; points: the window size.
  // minTop is the y axis's top while every value is 0.
  constructor({ id, title, series, fmt, points = 150, intervalMs = 2000, minTop = 1 }) {
    this.minTop = minTop;
    this.series = series;
    this.fmt = fmt;
    this.points = points;
    this.intervalMs = intervalMs;
    this.data = series.map(() => []);
    this.limit = null;
    this.svg = s('svg', { id, class: 'chart', role: 'img', 'aria-label': title });
    this.legend = h('div', { class: 'legend' });
    this.el = h('div', { class: 'card' }, h('h3', {}, title), this.svg, this.legend);
    this.render();
  }

  // push adds one value per series.
  push(values) {
    values.forEach((v, i) => {
      const d = this.data[i];
      d.push(v || 0);
      if (d.length > this.points) d.shift();
    });
    this.render();
  }

  // setLimit draws a dashed line at v (null: none).
  setLimit(v, label) {
    this.limit = v ? { v, label } : null;
    this.render();
  }

  render() {
    // Drawn in the element's own pixels, so that text is never stretched;
    // the next render after a resize fits the new width.
    const W = this.svg.clientWidth || 600;
    this.svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    const n = this.data[0].length;
    const max = Math.max(0, ...this.data.flat());
    // A limit far above the data would flatten it: it is drawn only when
    // the data comes within a tenth of it, and named in the legend otherwise.
    const showLimit = this.limit && max >= this.limit.v / 10;
    const top = niceCeil(Math.max(max, showLimit ? this.limit.v : 0) || this.minTop);
    const x = i => PAD_L + (W - PAD_L - PAD_R) * (this.points - n + i) / (this.points - 1);
    const y = v => PAD_T + (H - PAD_T - PAD_B) * (1 - v / top);
    const grid = [0, top / 2, top].map(v => [
      s('line', { x1: PAD_L, x2: W - PAD_R, y1: y(v), y2: y(v), stroke: '#e3e7eb', 'stroke-width': 1 }),
      s('text', { x: PAD_L - 4, y: y(v) + 4, 'text-anchor': 'end' }, this.fmt(v)),
    ]);
    const lines = this.data.map((d, si) => d.length > 1 && s('polyline', {
      fill: 'none', stroke: this.series[si].color, 'stroke-width': 1.6, 'vector-effect': 'non-scaling-stroke',
      points: d.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' '),
    }));
    const limit = showLimit && [
      s('line', { x1: PAD_L, x2: W - PAD_R, y1: y(this.limit.v), y2: y(this.limit.v), stroke: '#b42318', 'stroke-dasharray': '4 3', 'stroke-width': 1 }),
      s('text', { x: W - PAD_R - 2, y: y(this.limit.v) - 3, 'text-anchor': 'end' }, this.limit.label),
    ];
    const span = Math.round((this.points - 1) * this.intervalMs / 60000);
    const axis = [
      s('text', { x: PAD_L, y: H - 4 }, `−${span} min`),
      s('text', { x: W - PAD_R, y: H - 4, 'text-anchor': 'end' }, 'now'),
    ];
    replace(this.svg, grid, limit, lines, axis);
    // For tests and tools: how many points, and the largest and newest values.
    this.svg.dataset.samples = String(n);
    this.svg.dataset.max = String(max);
    replace(this.legend, this.series.map((se, i) => h('span', {},
      h('span', { class: 'swatch', style: null, 'data-color': se.color }), se.label + ': ',
      h('b', {}, n ? this.fmt(this.data[i][n - 1]) : '–'))),
    this.limit && h('span', { class: 'muted' }, `${this.limit.label}: ${this.fmt(this.limit.v)}`));
    for (const sw of this.legend.querySelectorAll('.swatch')) sw.style.background = sw.dataset.color;
  }
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
