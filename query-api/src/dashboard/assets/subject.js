// One subject (a repository, a host, a service…): its event counts, a chart for every
// measure of every aggregate that groups by subject, its open alerts, insights and
// recent events.

import { api, qs } from './api.js';
import { h, replace, section, table, timeEl, fmtNum, errorBox, badge } from './dom.js';
import { lineChart } from './chart.js';
import { drawAlerts, drawInsights, drawEvents } from './overview.js';

const RANGES = [
  { label: '1 hour', from: '-1h', secs: 3600 },
  { label: '6 hours', from: '-6h', secs: 6 * 3600 },
  { label: '24 hours', from: '-24h', secs: 86400 },
  { label: '7 days', from: '-168h', secs: 7 * 86400 },
];
let rangeIndex = 0; // the last hour: a live view; remembered across subjects

const MAX_POINTS = 120;

// A duration the API reads ("1h", "15m", "30s"): the step is at least the window size
// and a multiple of it, so every point is whole windows.
function stepFor(rangeSecs, windowSecs) {
  const w = Math.max(1, windowSecs || 60);
  const secs = Math.max(w, Math.ceil(rangeSecs / MAX_POINTS / w) * w);
  if (secs % 86400 === 0) return `${secs / 86400}d`;
  if (secs % 3600 === 0) return `${secs / 3600}h`;
  if (secs % 60 === 0) return `${secs / 60}m`;
  return `${secs}s`;
}

export function mount(root, { subject }) {
  const rangeSelect = h('select', { id: 'range', onchange: () => {
    rangeIndex = rangeSelect.selectedIndex;
    ctx.rerun();
  } }, RANGES.map((r, i) => h('option', { value: r.from, selected: i === rangeIndex }, `Last ${r.label}`)));
  const summary = h('div', { class: 'stats', id: 'subject-summary' });
  const charts = h('div', { class: 'charts', id: 'charts' });
  const measures = h('div');
  const alerts = h('div');
  const insights = h('div');
  const events = h('div');
  replace(root,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/' }, 'Overview'), ' / ', 'Subject'),
    h('div', { class: 'title-row' },
      h('h1', { class: 'page-title' }, h('span', { class: 'muted' }, 'Subject '), h('span', { id: 'subject-name' }, subject)),
      h('label', { class: 'range' }, 'Range ', rangeSelect)),
    summary,
    section('Charts', 'charts-section', charts),
    h('div', { class: 'columns' },
      section('Open alerts', 'subject-alerts', alerts),
      section('Latest measures', 'subject-measures', measures)),
    section('Insights', 'subject-insights', insights),
    section('Recent events', 'subject-events', events));

  let aggregates = null; // fetched once per visit: the spec does not change while running
  const drawn = new Map();
  const draw = (el, value, fn) => {
    const sig = JSON.stringify(value);
    if (drawn.get(el) !== sig) replace(el, fn(value));
    drawn.set(el, sig);
  };
  const ctx = { rerun: () => { drawn.clear(); refresh().catch(() => {}); } };

  async function refresh() {
    const range = RANGES[rangeIndex];
    const params = { from: range.from, to: 'now' };
    const enc = encodeURIComponent(subject);
    let aggError = null;
    if (aggregates === null) {
      try {
        aggregates = (await api('/v1/aggregates')).aggregates
          .filter((a) => (a.group_by ?? []).includes('subject'));
      } catch (e) {
        aggError = e; // the rest of the page still shows; the next poll asks again
      }
    }
    const wanted = (aggregates ?? []).flatMap((a) => a.measures.map((m) => ({ a, m })));
    const [info, ...series] = await Promise.allSettled([
      api(`/v1/subjects/${enc}${qs(params)}`),
      ...wanted.map(({ a, m }) => api(`/v1/insights/timeseries${qs({
        aggregate: a.name, measure: m.name, subject, ...params,
        step: stepFor(range.secs, a.window?.size_seconds),
      })}`)),
    ]);

    if (info.status === 'fulfilled') {
      const v = info.value;
      draw(summary, [v.events, v.streak ?? null, range.label], () => [
        h('div', { class: 'stat', id: 'subject-count' },
          h('div', { class: 'stat-label' }, `Events, last ${range.label}`),
          h('div', { class: 'stat-value' }, fmtNum(v.events.count))),
        h('div', { class: 'stat' },
          h('div', { class: 'stat-label' }, 'Last event'),
          h('div', { class: 'stat-value small' }, timeEl(v.events.last_time))),
        h('div', { class: 'stat wide' },
          h('div', { class: 'stat-label' }, 'By kind'),
          v.events.by_kind.length
            ? h('ul', { class: 'kinds', id: 'subject-kinds' }, v.events.by_kind.map((k) => h('li', {}, badge(k.kind, 'kind'), ' ', fmtNum(k.count))))
            : h('div', { class: 'muted' }, 'none')),
        v.streak
          ? h('div', { class: 'stat wide', id: 'subject-streak' },
            h('div', { class: 'stat-label' }, 'Current streak'),
            h('div', {}, v.streak.summary))
          : null,
      ]);
      draw(alerts, v.open_alerts, (l) => drawAlerts(l, { showGroup: false }));
      draw(insights, v.insights, (l) => drawInsights(l, { showGroup: false }));
      draw(events, v.recent_events, (l) => drawEvents(l, { showSubject: false }));
      draw(measures, v.measures, (l) => table({
        caption: 'The newest window of each measure',
        id: 'measures-table',
        empty: 'No window has closed for this subject yet.',
        columns: [
          { label: 'Aggregate', cell: (m) => m.aggregate },
          { label: 'Measure', cell: (m) => m.measure },
          { label: 'Value', class: 'num', cell: (m) => fmtNum(m.value) },
          { label: 'Window start', cell: (m) => timeEl(m.window_start) },
        ],
        rows: l,
      }));
    } else if (!summary.firstChild || summary.querySelector('.inline-error')) {
      drawn.delete(summary);
      replace(summary, errorBox(info.reason));
    }

    if (aggError) {
      drawn.delete(charts);
      replace(charts, errorBox(aggError));
    } else if (wanted.length === 0) {
      draw(charts, 'none', () => h('p', { class: 'muted' },
        'No aggregate in the spec groups by subject, so there is nothing to chart. Add ',
        h('code', {}, 'group_by = ["subject"]'), ' to an ', h('code', {}, '[[aggregate]]'), '.'));
    } else {
      const results = wanted.map(({ a, m }, i) => ({ a, m, r: series[i] }));
      draw(charts, results.map((x) => (x.r.status === 'fulfilled' ? x.r.value : String(x.r.reason))), () =>
        results.map(({ a, m, r }) => r.status === 'fulfilled'
          ? lineChart({
            title: `${a.name} · ${m.name} (${m.function})`,
            label: `${m.name} of ${a.name} for ${subject}, last ${range.label}`,
            series: r.value.series,
            from: r.value.from,
            to: r.value.to,
          })
          : h('figure', { class: 'chart-figure' }, h('figcaption', {}, `${a.name} · ${m.name}`), errorBox(r.reason))));
    }
    if (aggError) throw aggError;
    const failed = [info, ...series].find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  return { refresh };
}
