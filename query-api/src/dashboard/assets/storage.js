// The data dir's disk, from GET /v1/storage: the free space against the reserve below
// which ingest refuses new events (507), and every topic of the embedded log and table of
// the embedded store with its size on disk and its limits. A process without a data dir
// (`helios serve api`) has no such route: the section then says so.

import { api } from './api.js';
import { h, table } from './dom.js';

export function fmtBytes(b) {
  if (b === null || b === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = b;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return u === 0 ? `${b} B` : `${v.toFixed(1)} ${units[u]}`;
}

function fmtAge(secs) {
  if (secs === null || secs === undefined) return 'forever';
  if (secs % 86400 === 0) return `${secs / 86400} d`;
  if (secs % 3600 === 0) return `${secs / 3600} h`;
  return `${secs} s`;
}

// {status, value | reason}, like Promise.allSettled, so a missing route is not an error.
export function loadStorage() {
  return api('/v1/storage').then(
    (value) => ({ status: 'fulfilled', value }),
    (reason) => ({ status: 'rejected', reason }),
  );
}

export function drawStorage(u) {
  const free = u.free_bytes === null || u.free_bytes === undefined
    ? 'free space unknown'
    : `${fmtBytes(u.free_bytes)} free of ${fmtBytes(u.total_bytes)}`;
  const reserve = u.min_free_bytes === null || u.min_free_bytes === undefined
    ? 'ingest does not check it'
    : `ingest refuses new events below ${fmtBytes(u.min_free_bytes)}`;
  const line = h('p', { id: 'disk-free', class: u.ingest_refused ? 'error-text' : null, dataset: { refused: String(Boolean(u.ingest_refused)) } },
    u.ingest_refused
      ? `The disk of ${u.data_dir} is nearly full (${free}): ingest refuses new events (507) until space is freed. `
      : `${u.data_dir}: ${free}; ${reserve}.`,
    u.ingest_refused ? h('span', {}, 'See docs/runbooks/disk-full-embedded-log.md.') : null);
  const rows = [
    ...u.topics.map((t) => ({ kind: 'Topic', name: t.name, bytes: t.bytes, cap: t.retention_bytes, age: t.retention_seconds })),
    ...u.tables.map((t) => ({ kind: 'Table', name: t.name, bytes: t.bytes, cap: null, age: t.retention_seconds })),
  ];
  const storeCap = u.store_max_bytes === null || u.store_max_bytes === undefined
    ? ''
    : `; the store's tables together at most ${fmtBytes(u.store_max_bytes)}`;
  return h('div', {}, line, table({
    caption: `Size on disk of each topic of the log and table of the store, with its limits${storeCap}`,
    id: 'storage-table',
    empty: 'Nothing stored yet.',
    columns: [
      { label: 'Kind', cell: (r) => r.kind },
      { label: 'Name', cell: (r) => h('span', { class: 'storage-name' }, r.name) },
      { label: 'Size', class: 'num', cell: (r) => h('span', { class: 'storage-bytes', dataset: { name: r.name } }, fmtBytes(r.bytes)) },
      { label: 'Size cap', class: 'num', cell: (r) => (r.cap === null || r.cap === undefined ? h('span', { class: 'muted' }, '—') : fmtBytes(r.cap)) },
      { label: 'Kept for', cell: (r) => fmtAge(r.age) },
    ],
    rows,
  }));
}

export function drawNoStorage(err) {
  if (err && err.status === 404) {
    return h('p', { class: 'muted' }, 'This process keeps no data dir (the store is elsewhere): nothing to show.');
  }
  return null;
}
