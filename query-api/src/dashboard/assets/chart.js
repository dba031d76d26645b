// Line charts as inline SVG, drawn from timeseries points. No library: axes with "nice"
// ticks, one path per series (broken where a value is null), a dot per point with its
// value as a tooltip, and a text summary for screen readers.

import { h, s, fmtNum } from './dom.js';

const W = 480;
const H = 200;
const M = { top: 12, right: 14, bottom: 26, left: 52 };

function niceStep(range, ticks) {
  const raw = range / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const nice = norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10;
  return nice * mag;
}

function yTicks(min, max) {
  if (min === max) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.5;
    min = Math.min(0, min - pad);
    max = max + pad;
  }
  const step = niceStep(max - min, 4);
  const lo = Math.floor(min / step) * step;
  const hi = Math.ceil(max / step) * step;
  const ticks = [];
  for (let v = lo; v <= hi + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return { lo, hi, ticks };
}

const pad2 = (n) => String(n).padStart(2, '0');

function timeLabel(ms, spanMs) {
  const d = new Date(ms);
  const hm = `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
  if (spanMs <= 2 * 86400_000) return hm;
  return `${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${hm}`;
}

// series: [{key, points: [{time, value}]}]; from/to (Date or string) fix the x range.
export function lineChart({ title, series, from, to, label }) {
  const parsed = series.map((sr, i) => ({
    key: sr.key,
    index: i,
    points: (sr.points ?? [])
      .map((p) => ({ t: new Date(p.time).getTime(), v: p.value }))
      .filter((p) => !Number.isNaN(p.t))
      .sort((a, b) => a.t - b.t),
  }));
  const values = parsed.flatMap((sr) => sr.points.filter((p) => typeof p.v === 'number').map((p) => p.v));
  const times = parsed.flatMap((sr) => sr.points.map((p) => p.t));
  let x0 = from ? new Date(from).getTime() : Math.min(...times);
  let x1 = to ? new Date(to).getTime() : Math.max(...times);
  if (!Number.isFinite(x0) || !Number.isFinite(x1) || x1 <= x0) {
    x0 = Date.now() - 3600_000;
    x1 = Date.now();
  }
  const iw = W - M.left - M.right;
  const ih = H - M.top - M.bottom;
  const x = (t) => M.left + ((t - x0) / (x1 - x0)) * iw;

  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`,
    class: 'chart',
    role: 'img',
    preserveAspectRatio: 'xMidYMid meet',
  });
  const summary = [];

  if (values.length === 0) {
    svg.append(
      s('rect', { x: M.left, y: M.top, width: iw, height: ih, class: 'plot-bg' }),
      s('text', { x: M.left + iw / 2, y: M.top + ih / 2, 'text-anchor': 'middle', class: 'chart-empty' },
        'No values in this range yet'),
    );
    summary.push('no values in this range yet');
  } else {
    const { lo, hi, ticks } = yTicks(Math.min(0, ...values), Math.max(...values));
    const y = (v) => M.top + ih - ((v - lo) / (hi - lo || 1)) * ih;
    svg.append(s('rect', { x: M.left, y: M.top, width: iw, height: ih, class: 'plot-bg' }));
    for (const t of ticks) {
      svg.append(
        s('line', { x1: M.left, x2: M.left + iw, y1: y(t), y2: y(t), class: 'grid' }),
        s('text', { x: M.left - 6, y: y(t) + 4, 'text-anchor': 'end', class: 'tick' }, fmtNum(t)),
      );
    }
    const xt = 4;
    for (let i = 0; i <= xt; i++) {
      const t = x0 + ((x1 - x0) * i) / xt;
      const anchor = i === 0 ? 'start' : i === xt ? 'end' : 'middle';
      svg.append(s('text', { x: x(t), y: H - 8, 'text-anchor': anchor, class: 'tick' }, timeLabel(t, x1 - x0)));
    }
    for (const sr of parsed) {
      let d = '';
      let pen = false;
      const dots = s('g', { class: `dots series-${sr.index % 6}` });
      for (const p of sr.points) {
        if (typeof p.v !== 'number' || p.t < x0 || p.t > x1) {
          pen = false;
          continue;
        }
        d += `${pen ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`;
        pen = true;
        dots.append(s('circle', { cx: x(p.t).toFixed(1), cy: y(p.v).toFixed(1), r: 2.6 },
          s('title', {}, `${sr.key ?? title}: ${fmtNum(p.v)} at ${new Date(p.t).toLocaleString()}`)));
      }
      svg.append(s('path', { d, class: `line series-${sr.index % 6}`, 'data-series': sr.key ?? '' }), dots);
      const vals = sr.points.filter((p) => typeof p.v === 'number');
      if (vals.length) {
        const last = vals[vals.length - 1].v;
        const max = Math.max(...vals.map((p) => p.v));
        summary.push(`${sr.key ?? 'all'}: ${vals.length} points, latest ${fmtNum(last)}, max ${fmtNum(max)}`);
      }
    }
  }
  svg.setAttribute('aria-label', `${label ?? title}: ${summary.join('; ')}`);
  const legend = parsed.length > 1 || (parsed[0] && parsed[0].key !== null && parsed[0].key !== undefined)
    ? h('ul', { class: 'legend' }, parsed.map((sr) =>
      h('li', {}, h('span', { class: `swatch series-${sr.index % 6}`, 'aria-hidden': 'true' }), sr.key ?? 'all')))
    : null;
  return h('figure', { class: 'chart-figure', dataset: { points: String(values.length) } },
    h('figcaption', {}, title), svg, legend);
}

// A small line of recent values (the overview's total event rate), no axes: a baseline
// at zero and the values as a filled line, newest on the right.
export function sparkline(values, { label, width = 220, height = 40 } = {}) {
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, class: 'sparkline', role: 'img' });
  svg.append(s('line', { x1: 0, x2: width, y1: height - 1, y2: height - 1, class: 'baseline' }));
  const points = values.map((v, i) => ({ v, i })).filter((p) => typeof p.v === 'number');
  if (points.length < 2) {
    svg.setAttribute('aria-label', `${label}: collecting`);
    return svg;
  }
  const max = Math.max(...points.map((p) => p.v)) || 1;
  const step = width / Math.max(1, values.length - 1);
  const xy = points.map((p) => [(p.i * step).toFixed(1), (height - 1 - (p.v / max) * (height - 4)).toFixed(1)]);
  const line = xy.map(([x, y], k) => `${k ? 'L' : 'M'}${x},${y}`).join('');
  const area = `${line}L${xy[xy.length - 1][0]},${height - 1}L${xy[0][0]},${height - 1}Z`;
  svg.append(s('path', { d: area, class: 'area series-0' }), s('path', { d: line, class: 'line series-0' }));
  const last = points[points.length - 1].v;
  svg.setAttribute('aria-label', `${label}: latest ${fmtNum(last)}, max ${fmtNum(max)}`);
  return svg;
}
