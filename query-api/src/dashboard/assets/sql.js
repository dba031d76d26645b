// The SQL console: a query over the store's tables (POST /v1/sql), the result as a
// table, the server's error and hint when it fails, and the same query as a CSV file.

import { api } from './api.js';
import { h, replace, errorBox, fmtNum } from './dom.js';

const SQL_STORAGE = 'helios.sql';
const DEFAULT_SQL = 'SELECT kind, count(*) AS n\nFROM events\nGROUP BY kind\nORDER BY n DESC\nLIMIT 20';
const MAX_ROWS_SHOWN = 1000;

function savedSql() {
  try {
    return localStorage.getItem(SQL_STORAGE) || DEFAULT_SQL;
  } catch {
    return DEFAULT_SQL;
  }
}

function saveSql(sql) {
  try {
    localStorage.setItem(SQL_STORAGE, sql);
  } catch {
    // Not kept: only a convenience.
  }
}

function cellText(v) {
  if (v === null || v === undefined) return h('span', { class: 'null' }, 'NULL');
  if (typeof v === 'number') return fmtNum(v, 6);
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function mount(root) {
  const editor = h('textarea', {
    id: 'sql-input', name: 'sql', rows: '8', spellcheck: 'false', autocomplete: 'off',
    'aria-describedby': 'sql-help',
  });
  editor.value = savedSql();
  const runButton = h('button', { type: 'submit', id: 'sql-run' }, 'Run');
  const csvButton = h('button', { type: 'button', id: 'sql-csv', class: 'ghost', onclick: downloadCsv }, 'Download CSV');
  const tables = h('span', { id: 'sql-tables' }, 'events, alerts, insights, dead_letters, late_events');
  const meta = h('p', { id: 'sql-meta', class: 'muted', 'aria-live': 'polite' });
  const output = h('div', { id: 'sql-result', class: 'sql-result' });
  const form = h('form', { class: 'sql-form', onsubmit: (e) => { e.preventDefault(); run(); } },
    h('label', { for: 'sql-input' }, 'Query'),
    editor,
    h('p', { id: 'sql-help', class: 'muted' }, 'Tables: ', tables, '. Ctrl+Enter runs the query.'),
    h('div', { class: 'buttons' }, runButton, csvButton));
  editor.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      run();
    }
  });
  replace(root,
    h('h1', { class: 'page-title' }, 'SQL console'),
    h('section', { class: 'card', 'aria-label': 'Query' }, form),
    h('section', { class: 'card', 'aria-label': 'Result' }, meta, output));

  api('/v1/aggregates').then((v) => {
    const names = v.aggregates.map((a) => `agg_${a.name}`);
    replace(tables, ['events', 'alerts', 'insights', 'dead_letters', 'late_events', ...names].join(', '));
  }).catch(() => { /* the fixed tables stay listed */ });

  let running = false;
  async function run() {
    if (running) return;
    const sql = editor.value.trim();
    if (!sql) {
      replace(output, errorBox({ message: 'The query is empty.', hint: 'Write a SELECT, e.g. SELECT count(*) FROM events' }));
      return;
    }
    saveSql(editor.value);
    running = true;
    runButton.disabled = true;
    replace(meta, 'Running…');
    try {
      const r = await api('/v1/sql', { method: 'POST', body: { sql, format: 'json' } });
      const shown = r.rows.slice(0, MAX_ROWS_SHOWN);
      replace(meta,
        `${fmtNum(r.row_count)} row${r.row_count === 1 ? '' : 's'} in ${fmtNum(r.elapsed_ms)} ms`,
        r.rows.length > shown.length ? ` (first ${MAX_ROWS_SHOWN} shown; the CSV has all)` : '');
      const numeric = r.columns.map((c) => /int|float|double|decimal|numeric/i.test(c.type ?? ''));
      replace(output, h('div', { class: 'table-scroll' }, h('table', { id: 'sql-table' },
        h('thead', {}, h('tr', {}, r.columns.map((c, i) => h('th', { scope: 'col', title: c.type, class: numeric[i] ? 'num' : null }, c.name)))),
        h('tbody', {}, shown.map((row) => h('tr', {}, row.map((v) => h('td', { class: typeof v === 'number' ? 'num' : null }, cellText(v)))))))));
    } catch (e) {
      replace(meta, `Failed${e.status ? ` (${e.status})` : ''}`);
      replace(output, h('div', { id: 'sql-error' }, errorBox(e)));
    } finally {
      running = false;
      runButton.disabled = false;
    }
  }

  async function downloadCsv() {
    const sql = editor.value.trim();
    if (!sql) return;
    csvButton.disabled = true;
    try {
      const text = await api('/v1/sql', { method: 'POST', body: { sql, format: 'csv' }, as: 'text' });
      const url = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
      const a = h('a', { href: url, download: 'helios-query.csv', hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (e) {
      replace(output, h('div', { id: 'sql-error' }, errorBox(e)));
    } finally {
      csvButton.disabled = false;
    }
  }

  // Nothing here changes by itself: the console has no live data to poll.
  return { refresh: null };
}
