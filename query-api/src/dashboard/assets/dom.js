// DOM building and formatting helpers shared by the views. Everything is built with
// createElement and textContent, never innerHTML, so event data cannot inject markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// h('a', {href: '#/', class: 'x', onclick: fn, dataset: {k: 'v'}}, 'text', child…)
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'class') el.className = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  return append(el, children);
}

export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  return append(el, children);
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function subjectHref(subject) {
  return `#/subjects/${encodeURIComponent(subject)}`;
}

export function subjectLink(subject) {
  if (subject === null || subject === undefined || subject === '') return h('span', { class: 'muted' }, '—');
  return h('a', { href: subjectHref(subject), class: 'subject-link' }, subject);
}

// Times arrive as RFC 3339 strings, or as epoch microseconds from /v1/sources.
export function toDate(t) {
  if (t === null || t === undefined || t === '') return null;
  const d = typeof t === 'number' ? new Date(t / 1000) : new Date(t);
  return Number.isNaN(d.getTime()) ? null : d;
}

const pad = (n) => String(n).padStart(2, '0');

export function fmtTime(t) {
  const d = toDate(t);
  if (!d) return '—';
  const now = new Date();
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (d.toDateString() === now.toDateString()) return hms;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms}`;
}

export function fmtAgo(t) {
  const d = toDate(t);
  if (!d) return '—';
  const secs = Math.round((Date.now() - d.getTime()) / 1000);
  if (secs < 0) return 'in the future';
  if (secs < 60) return `${secs} s ago`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min ago`;
  if (secs < 86400) return `${Math.floor(secs / 3600)} h ago`;
  return `${Math.floor(secs / 86400)} d ago`;
}

// A <time> element: local clock time shown, full timestamp on hover and for machines.
export function timeEl(t) {
  const d = toDate(t);
  if (!d) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: d.toISOString(), title: d.toISOString() }, fmtTime(d));
}

export function fmtNum(v, digits = 2) {
  if (v === null || v === undefined) return '—';
  if (typeof v !== 'number') return String(v);
  if (Number.isInteger(v)) return v.toLocaleString('en-US');
  const abs = Math.abs(v);
  if (abs !== 0 && (abs >= 1e9 || abs < 1e-3)) return v.toExponential(digits);
  return v.toLocaleString('en-US', { maximumFractionDigits: abs >= 100 ? 1 : digits });
}

// A table with a caption, header cells with scope, and a message row when empty.
export function table({ caption, columns, rows, empty = 'Nothing yet.', id }) {
  const head = h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label))));
  const body = h('tbody');
  if (rows.length === 0) {
    body.append(h('tr', { class: 'empty' }, h('td', { colspan: String(columns.length) }, empty)));
  }
  for (const row of rows) {
    body.append(h('tr', {}, columns.map((c) => h('td', { class: c.class }, c.cell(row)))));
  }
  return h('table', { id }, caption ? h('caption', {}, caption) : null, head, body);
}

export function badge(text, kind = text) {
  return h('span', { class: `badge badge-${String(kind).replace(/[^a-z0-9_-]/gi, '')}` }, text);
}

// The one-line group of an alert or insight ("subject=helios, conclusion=failure"),
// with the subject as a link.
export function groupCell(group) {
  if (!group || typeof group !== 'object') return h('span', { class: 'muted' }, '—');
  const parts = [];
  for (const [k, v] of Object.entries(group)) {
    if (parts.length) parts.push(', ');
    parts.push(k === 'subject' ? subjectLink(v) : `${k}=${v}`);
  }
  return h('span', {}, parts.length ? parts : '—');
}

export function section(title, id, ...children) {
  return h('section', { class: 'card', 'aria-labelledby': `${id}-title`, id },
    h('h2', { id: `${id}-title` }, title), ...children);
}

export function errorBox(err) {
  return h('div', { class: 'inline-error', role: 'alert' },
    h('strong', {}, err.message ?? String(err)),
    err.hint ? h('p', {}, err.hint) : null);
}
