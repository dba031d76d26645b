// The overview: sources with their state and event rate, open alerts, recent insights,
// late events per aggregate and recent events. Rates are computed here from the growth of each source's
// `events_emitted` between polls, since the API reports counters, not rates.

import { api } from './api.js';
import { h, replace, section, table, badge, subjectLink, timeEl, fmtAgo, fmtNum, groupCell, errorBox } from './dom.js';
import { sparkline } from './chart.js';
import { loadStorage, drawStorage, drawNoStorage } from './storage.js';

// Per source: recent (ms, events_emitted) samples. Kept across visits to other views so
// a rate is shown at once when coming back.
const samples = new Map();
const totalRates = [];
const RATE_WINDOW_MS = 10_000; // rate over up to the last ten seconds of samples
const HISTORY = 60;

function recordSample(name, emitted, now) {
  let list = samples.get(name);
  if (!list) samples.set(name, (list = []));
  const last = list[list.length - 1];
  if (last && emitted < last.n) list.length = 0; // counter reset: the source restarted
  list.push({ t: now, n: emitted });
  while (list.length > 2 && now - list[1].t > RATE_WINDOW_MS) list.shift();
}

function rateOf(name) {
  const list = samples.get(name);
  if (!list || list.length < 2) return null;
  const a = list[0];
  const b = list[list.length - 1];
  const secs = (b.t - a.t) / 1000;
  return secs > 0 ? (b.n - a.n) / secs : null;
}

export function mount(root) {
  const stats = h('div', { class: 'stats', id: 'stats' });
  const sources = section('Sources', 'sources');
  const alerts = section('Open alerts', 'alerts');
  const insights = section('Recent insights', 'insights');
  const late = section('Late events', 'late');
  const events = section('Recent events', 'events');
  const storage = section('Disk', 'storage');
  replace(root,
    h('h1', { class: 'page-title' }, 'Overview'),
    stats,
    sources,
    h('div', { class: 'columns' }, alerts, insights),
    late,
    events,
    storage);
  const bodies = new Map([[sources, h('div')], [alerts, h('div')], [insights, h('div')], [late, h('div')], [events, h('div')], [storage, h('div')]]);
  for (const [sec, body] of bodies) sec.append(body);

  // Redraw a table only when its data changed, so a poll does not take away the focus
  // or a text selection in a table that shows the same thing.
  const drawn = new Map();
  function render(sec, result, draw, extra = '') {
    const body = bodies.get(sec);
    if (result.status === 'fulfilled') {
      const sig = JSON.stringify(result.value) + extra;
      if (drawn.get(sec) !== sig || !body.firstChild) replace(body, draw(result.value));
      drawn.set(sec, sig);
    } else if (!body.firstChild || body.querySelector('.inline-error')) {
      drawn.delete(sec);
      replace(body, errorBox(result.reason));
    }
    // else: keep the last good table; the status bar shows the error.
  }

  async function refresh() {
    const [src, al, ins, lt, ev] = await Promise.allSettled([
      // {"sources": [...]}; a bare array is accepted too.
      api('/v1/sources').then((v) => (Array.isArray(v) ? v : v.sources)),
      api('/v1/alerts?state=firing&limit=20'),
      api('/v1/insights?limit=10'),
      api('/v1/late'),
      api('/v1/events?limit=25'),
    ]);
    const firing = al.status === 'fulfilled' ? al.value.alerts.length : null;
    let rateTotal = null;
    if (src.status === 'fulfilled') {
      const now = performance.now();
      for (const sr of src.value) recordSample(sr.name, sr.events_emitted ?? 0, now);
      const rates = src.value.map((sr) => rateOf(sr.name)).filter((r) => r !== null);
      rateTotal = rates.length ? rates.reduce((a, b) => a + b, 0) : null;
      totalRates.push(rateTotal);
      if (totalRates.length > HISTORY) totalRates.shift();
    }
    // Rates and "last event … ago" move with the clock: redraw the sources every poll.
    render(sources, src, drawSources, String(Date.now()));
    render(alerts, al, (v) => drawAlerts(v.alerts));
    render(insights, ins, (v) => drawInsights(v.insights));
    render(late, lt, (v) => drawLate(v.aggregates));
    render(events, ev, (v) => drawEvents(v.events));
    if (src.status === 'fulfilled') {
      const running = src.value.filter((x) => x.state === 'running').length;
      replace(stats,
        stat('Events per second', rateTotal === null ? 'measuring…' : fmtNum(rateTotal, 1), sparkline(totalRates, { label: 'Total event rate, last two minutes' }), 'stat-rate'),
        stat('Sources running', `${running} of ${src.value.length}`, null, 'stat-sources'),
        stat('Open alerts', firing === null ? '—' : String(firing), null, 'stat-alerts'));
    }
    // Only a process with a data dir serves /v1/storage: a 404 is a note, not an error.
    const st = await loadStorage();
    const noStorage = st.status === 'rejected' ? drawNoStorage(st.reason) : null;
    if (noStorage) replace(bodies.get(storage), noStorage);
    else render(storage, st, drawStorage);
    const failed = [src, al, ins, lt, ev, ...(noStorage ? [] : [st])].find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  return { refresh };
}

function stat(label, value, extra, id) {
  return h('div', { class: 'stat', id },
    h('div', { class: 'stat-label' }, label),
    h('div', { class: 'stat-value' }, value),
    extra);
}

function drawSources(list) {
  return table({
    caption: 'Each source, its state and how fast it emits events',
    id: 'sources-table',
    empty: 'No sources run. Declare some in the spec ([[source]]).',
    columns: [
      { label: 'Source', cell: (r) => h('span', { class: 'source-name' }, r.name) },
      { label: 'Type', cell: (r) => r.type },
      { label: 'State', cell: (r) => badge(r.state) },
      { label: 'Events/s', class: 'num', cell: (r) => {
        const rate = rateOf(r.name);
        return h('span', { class: 'rate', dataset: { source: r.name } }, rate === null ? '…' : fmtNum(rate, 1));
      } },
      { label: 'Events', class: 'num', cell: (r) => h('span', { class: 'emitted', dataset: { source: r.name } }, fmtNum(r.events_emitted)) },
      { label: 'Dead letters', class: 'num', cell: (r) => fmtNum(r.dead_letters) },
      { label: 'Errors', class: 'num', cell: (r) => fmtNum(r.errors) },
      { label: 'Restarts', class: 'num', cell: (r) => fmtNum(r.restarts) },
      { label: 'Last event', cell: (r) => r.last_event_time === null || r.last_event_time === undefined
        ? h('span', { class: 'muted' }, 'never') : h('span', { title: timeEl(r.last_event_time).title }, fmtAgo(r.last_event_time)) },
      { label: 'Last error', class: 'wrap', cell: (r) => r.last_error ? h('span', { class: 'error-text' }, r.last_error) : h('span', { class: 'muted' }, '—') },
    ],
    rows: list,
  });
}

// Seconds as the largest whole unit that fits ("3 min", "2 h"), for lateness.
function fmtSeconds(secs) {
  if (secs === null || secs === undefined) return '—';
  if (secs < 60) return `${fmtNum(secs, 1)} s`;
  if (secs < 3600) return `${fmtNum(secs / 60, 1)} min`;
  if (secs < 86400) return `${fmtNum(secs / 3600, 1)} h`;
  return `${fmtNum(secs / 86400, 1)} d`;
}

function drawLate(list) {
  return table({
    caption: 'Events that came after their window closed (or behind a rule\'s watermark), per aggregate and rule; each is a row of late_events',
    id: 'late-table',
    empty: 'The spec has no aggregates, and no event was late for a rule.',
    columns: [
      { label: 'Aggregate or rule', cell: (l) => h('span', { class: 'late-name' }, l.aggregate) },
      { label: 'Late events', class: 'num', cell: (l) => h('span', { class: 'late-count', dataset: { aggregate: l.aggregate } }, fmtNum(l.late_events)) },
      { label: 'Most late by', class: 'num', cell: (l) => fmtSeconds(l.max_late_by_seconds) },
      { label: 'Newest event time', cell: (l) => timeEl(l.last_time) },
    ],
    rows: list,
  });
}

export function drawAlerts(list, { showGroup = true } = {}) {
  return table({
    caption: 'Alerts that are firing now',
    id: 'alerts-table',
    empty: 'No alert is firing.',
    columns: [
      { label: 'Severity', cell: (a) => badge(a.severity ?? '—', a.severity) },
      { label: 'Rule', cell: (a) => a.rule },
      ...(showGroup ? [{ label: 'Group', cell: (a) => groupCell(a.group) }] : []),
      { label: 'Summary', class: 'wrap', cell: (a) => h('span', { title: (a.evidence ?? []).join('\n') }, a.summary ?? '') },
      { label: 'Since', cell: (a) => timeEl(a.since) },
    ],
    rows: list,
  });
}

export function drawInsights(list, { showGroup = true } = {}) {
  return table({
    caption: 'Anomalies, trends and streaks found in the aggregates',
    id: 'insights-table',
    empty: 'No insights yet.',
    columns: [
      { label: 'Kind', cell: (i) => badge(i.kind) },
      { label: 'Aggregate', cell: (i) => `${i.aggregate}.${i.measure}` },
      ...(showGroup ? [{ label: 'Group', cell: (i) => groupCell(i.group) }] : []),
      { label: 'Summary', class: 'wrap', cell: (i) => i.summary },
      { label: 'At', cell: (i) => timeEl(i.at ?? i.window_end) },
    ],
    rows: list,
  });
}

export function drawEvents(list, { showSubject = true } = {}) {
  return table({
    caption: 'Newest first',
    id: 'events-table',
    empty: 'No events stored yet.',
    columns: [
      { label: 'Time', cell: (e) => timeEl(e.time) },
      { label: 'Source', cell: (e) => e.source },
      { label: 'Kind', cell: (e) => e.kind },
      ...(showSubject ? [{ label: 'Subject', cell: (e) => subjectLink(e.subject) }] : []),
      { label: 'Value', class: 'num', cell: (e) => fmtNum(e.value) },
      { label: 'Attributes', class: 'wrap attrs', cell: (e) => attrs(e.attrs) },
    ],
    rows: list,
  });
}

function attrs(a) {
  const entries = Object.entries(a ?? {});
  if (!entries.length) return h('span', { class: 'muted' }, '—');
  return entries.map(([k, v]) => h('span', { class: 'kv' }, `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`));
}
