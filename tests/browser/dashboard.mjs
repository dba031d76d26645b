#!/usr/bin/env node
// The dashboard in a real browser (issue 6, done-when 5): start `helios up` with a
// small spec and an admin key, open the dashboard in Debian's chromium (headless,
// driven by playwright-core), post events and watch them arrive without a reload, open
// a subject page and see its numbers and charts, run SQL in the console, see events
// that came too late for their window counted per aggregate, and save screenshots. Exits non-zero with a message on the first failed check, and always
// stops the helios process it started.
//
// Environment:
//   HELIOS_BIN             the helios binary (default: <target dir>/debug/helios)
//   HELIOS_TEST_ARTIFACTS  where screenshots and, on failure, helios.log go
//                          (default: <target dir>/browser)
//   CARGO_TARGET_DIR       the target dir (default: target/ in the repository)
//   CHROMIUM               the browser (default: /usr/bin/chromium)

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const targetDir = path.resolve(repo, process.env.CARGO_TARGET_DIR || 'target');
const bin = path.resolve(process.env.HELIOS_BIN || path.join(targetDir, 'debug', 'helios'));
const artifacts = path.resolve(process.env.HELIOS_TEST_ARTIFACTS || path.join(targetDir, 'browser'));
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT_MS = 60_000;

const SPEC = `# Written by tests/browser/dashboard.mjs
[[source]]
name = "ingest"
type = "http"

[watermark]
max_out_of_orderness = "1s"
idle_timeout = "10s"

[[aggregate]]
name = "ci_runs"
where = "kind = 'ci.run'"
window = { type = "tumbling", size = "1m" }
group_by = ["subject"]
measures = { runs = "count(*)", avg_secs = "avg(value)" }

[[rule]]
name = "ci_failing"
type = "threshold"
where = "kind = 'ci.run' AND attrs['conclusion'] = 'failure'"
per = ["subject"]
count = 3
within = "1h"
severity = "critical"
`;

// A subject with a slash: its page address must encode it.
const SHOP = 'team/web-shop';
const BILLING = 'billing-api';

// axe-core, the accessibility rules engine, run inside the page on each view.
const axeSource = fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

let passed = 0;
let helios = null;
let context = null;
let tmp = null;
let failed = false;
const consoleLines = []; // the browser's last errors and warnings, shown on failure

function log(msg) {
  process.stdout.write(`${msg}\n`);
}

class Failure extends Error {}

async function check(name, fn) {
  try {
    const r = await fn();
    passed += 1;
    log(`ok ${passed} - ${name}`);
    return r;
  } catch (e) {
    throw new Failure(`${name}: ${e.message}`, { cause: e });
  }
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function stopHelios() {
  if (!helios || helios.exitCode !== null || helios.signalCode !== null) return Promise.resolve();
  const child = helios;
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

// Last resort if node itself is interrupted or exits early: never leave helios behind.
process.on('exit', () => {
  if (helios && helios.exitCode === null && helios.signalCode === null) helios.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    log(`not ok - interrupted by ${sig}`);
    if (helios) helios.kill('SIGKILL');
    process.exit(130);
  });
}

function tail(file, lines = 40) {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function waitFor(what, fn, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms / 1000}s waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    }
    await sleep(250);
  }
}

// WCAG 2.1 A and AA rules on what the page shows now; serious and critical violations
// fail, lesser ones are listed.
async function accessible(page) {
  // Evaluated through the devtools protocol, so the page's CSP does not block it.
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
    resultTypes: ['violations'],
  }));
  const describe = (v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`;
  for (const v of result.violations.filter((x) => !['serious', 'critical'].includes(x.impact))) log(`# accessibility note: ${describe(v)}`);
  const bad = result.violations.filter((x) => ['serious', 'critical'].includes(x.impact));
  if (bad.length) throw new Error(bad.map(describe).join('; '));
}

async function main() {
  await check('the helios binary and chromium exist', () => {
    if (!fs.existsSync(bin)) {
      throw new Error(`no helios binary at ${bin}: build it (cargo build --bin helios) or set HELIOS_BIN`);
    }
    if (!fs.existsSync(chromiumPath)) {
      throw new Error(`no browser at ${chromiumPath}: apt-get install chromium, or set CHROMIUM`);
    }
  });
  fs.mkdirSync(artifacts, { recursive: true });
  // What an earlier failed run left must not be mistaken for this run's.
  for (const stale of ['failure.png', 'helios.log']) fs.rmSync(path.join(artifacts, stale), { force: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'helios-browser-'));
  const data = path.join(tmp, 'data');
  const specFile = path.join(tmp, 'helios.toml');
  const heliosLog = path.join(tmp, 'helios.log');
  fs.writeFileSync(specFile, SPEC);

  await check('helios validate accepts the spec', () => {
    const out = execFileSync(bin, ['validate', specFile], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    if (!out.includes('valid')) throw new Error(`unexpected output: ${out}`);
  });

  const key = await check('helios keys create prints an admin key', () => {
    let out;
    try {
      out = execFileSync(bin, ['keys', 'create', '--data-dir', data, '--scope', 'admin'],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      throw new Error(`\`helios keys create --data-dir … --scope admin\` failed (exit ${e.status}): ${e.stderr || e.message}`);
    }
    const k = out.replace(/\n$/, '');
    if (!k || /\s/.test(k) || out !== `${k}\n`) {
      throw new Error(`stdout must be exactly the key and a newline, got ${JSON.stringify(out)}`);
    }
    return k;
  });
  const auth = { authorization: `Bearer ${key}` };

  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  await check(`helios up listens on ${base}`, async () => {
    const logFd = fs.openSync(heliosLog, 'a');
    helios = spawn(bin, ['up', '--listen', `127.0.0.1:${port}`, '--data-dir', data, '--spec', specFile, '--partitions', '1'],
      { stdio: ['ignore', logFd, logFd] });
    fs.closeSync(logFd);
    await waitFor('GET /healthz', async () => {
      if (helios.exitCode !== null) throw new Error(`helios up exited with ${helios.exitCode}:\n${tail(heliosLog)}`);
      const r = await fetch(`${base}/healthz`);
      return r.ok;
    });
  });

  await check('the dashboard page and its assets load without a key', async () => {
    const r = await fetch(`${base}/`);
    if (r.status !== 200 || !(r.headers.get('content-type') ?? '').startsWith('text/html')) {
      throw new Error(`GET / answered ${r.status} ${r.headers.get('content-type')}: the page must not need a key (a browser cannot send one when it opens it)`);
    }
    const js = await fetch(`${base}/assets/app.js`);
    if (js.status !== 200) throw new Error(`GET /assets/app.js answered ${js.status}`);
    const api = await fetch(`${base}/v1/sources`);
    if (api.status !== 401) throw new Error(`GET /v1/sources without a key answered ${api.status}, expected 401`);
  });

  const profile = path.join(tmp, 'chromium-profile');
  context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
    acceptDownloads: true,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const foreign = [];
  const wrongAuth = [];
  const BAD_KEY = 'not-a-valid-key'; // sent on purpose by the rejected-key check
  const pageErrors = [];
  let apiCalls = 0;
  page.on('request', (req) => {
    const url = new URL(req.url());
    if (url.pathname.startsWith('/v1/')) apiCalls += 1;
    if (!['data:', 'blob:'].includes(url.protocol) && url.origin !== base) foreign.push(req.url());
    const sent = req.headers().authorization;
    if (url.origin === base && url.pathname.startsWith('/v1/') && sent !== `Bearer ${key}` && sent !== `Bearer ${BAD_KEY}`) {
      wrongAuth.push(`${req.method()} ${url.pathname} (authorization: ${sent ?? 'none'})`);
    }
  });
  page.on('pageerror', (e) => pageErrors.push(e.message));
  const refused = []; // CSP violations: the page tried to load or run something not its own
  page.on('console', (m) => {
    if (m.text().includes('Content Security Policy')) refused.push(m.text());
    if (m.type() === 'error' || m.type() === 'warning') {
      consoleLines.push(`${m.type()}: ${m.text().split('\n')[0]}`);
      if (consoleLines.length > 20) consoleLines.shift();
    }
  });

  await check('the dashboard opens with #key=…, keeps the key and drops it from the address', async () => {
    await page.goto(`${base}/#key=${encodeURIComponent(key)}`);
    await page.waitForSelector('#status[data-state="live"]', { timeout: WAIT_MS });
    if (page.url().includes('key=')) throw new Error(`the key is still in the address: ${page.url()}`);
    const stored = await page.evaluate(() => localStorage.getItem('helios.apiKey'));
    if (stored !== key) throw new Error('the key is not in localStorage');
    if (await page.isVisible('#key-panel')) throw new Error('the key form shows although a valid key was given');
  });

  await check('the overview lists every aggregate with no late events yet', async () => {
    await waitFor('the ci_runs row of the late events table', async () =>
      (await page.locator('.late-count[data-aggregate="ci_runs"]').innerText()) === '0');
  });

  await check('the overview lists the http source as running', async () => {
    const row = page.locator('#sources-table tbody tr', { hasText: 'ingest' });
    await row.waitFor({ timeout: WAIT_MS });
    const text = await row.innerText();
    if (!/\bhttp\b/.test(text) || !/\brunning\b/.test(text)) throw new Error(`the row reads: ${text}`);
    const empty = await page.locator('#events-table tr.empty').count();
    if (empty !== 1) throw new Error('the events table should be empty before anything is posted');
  });

  // Events over the last few minutes, so one-minute windows close and charts get points.
  const now = Date.now();
  const events = [];
  for (let i = 0; i < 30; i++) {
    const subject = i % 3 === 2 ? BILLING : SHOP;
    events.push({
      specversion: '1.0', id: `browser-${i}`, source: 'ci', type: 'ci.run', subject,
      time: new Date(now - (30 - i) * 12_000).toISOString(), value: 10 + i,
      conclusion: subject === SHOP && i >= 24 ? 'failure' : 'success',
    });
  }
  const shopCount = events.filter((e) => e.subject === SHOP).length;
  await page.evaluate(() => { window.__sameDocument = true; });

  await check(`POST /v1/events accepts ${events.length} events`, async () => {
    const r = await fetch(`${base}/v1/events`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/cloudevents-batch+json' },
      body: JSON.stringify(events),
    });
    const body = await r.text();
    if (r.status !== 202) throw new Error(`answered ${r.status}: ${body}`);
  });

  await check('the overview shows the events arriving, without a reload', async () => {
    await waitFor('the source\'s event count', async () =>
      (await page.locator('.emitted[data-source="ingest"]').innerText()) === String(events.length));
    await waitFor('a non-zero event rate', async () =>
      Number((await page.locator('.rate[data-source="ingest"]').innerText()).replace(/,/g, '')) > 0, 15_000);
    await waitFor('the posted events in the recent events table', async () =>
      (await page.locator('#events-table a.subject-link', { hasText: SHOP }).count()) > 0
      && (await page.locator('#events-table a.subject-link', { hasText: BILLING }).count()) > 0);
    await waitFor('the firing ci_failing alert', async () =>
      (await page.locator('#alerts-table tbody tr', { hasText: 'ci_failing' }).count()) > 0);
    if (!(await page.evaluate(() => window.__sameDocument === true))) throw new Error('the page was reloaded');
  });
  await check('the overview shows the data dir\'s disk: free space, the events topic and table with their sizes and limits', async () => {
    await waitFor('the free space line', async () =>
      (await page.locator('#disk-free').innerText()).includes('free of'));
    if ((await page.locator('#disk-free').getAttribute('data-refused')) !== 'false') throw new Error('ingest shown as refused');
    const row = (name) => page.locator('#storage-table tbody tr')
      .filter({ has: page.locator('.storage-name', { hasText: new RegExp(`^${name.replace('.', '\\.')}$`) }) });
    await waitFor('the events topic with a size', async () =>
      (await row('helios.events').count()) >= 1
      && (await page.locator('.storage-bytes[data-name="helios.events"]').innerText()) !== '0 B');
    const text = await row('helios.events').innerText();
    if (!text.includes('1.0 GiB') || !text.includes('7 d')) throw new Error(`events topic row without its default limits: ${text}`);
    await waitFor('the events table of the store, kept 30 days', async () =>
      (await row('events').innerText()).includes('30 d'));
  });
  await page.screenshot({ path: path.join(artifacts, 'dashboard.png'), fullPage: true });
  await check('the overview passes the WCAG 2.1 AA accessibility rules', () => accessible(page));

  await check('polling pauses while the tab is hidden and resumes when it is shown', async () => {
    // Headless chromium never hides a tab, so the page is told it is hidden the way a
    // browser tells it: document.hidden and a visibilitychange event.
    await page.evaluate(() => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    await page.waitForSelector('#status[data-state="paused"]', { timeout: 10_000 });
    await sleep(1_000); // a poll already under way may still finish its calls
    await page.waitForSelector('#status[data-state="paused"]', { timeout: 10_000 });
    const before = apiCalls;
    await sleep(5_000); // two and a half polling intervals
    if (apiCalls !== before) throw new Error(`${apiCalls - before} API calls while hidden`);
    await page.evaluate(() => {
      delete document.hidden;
      document.dispatchEvent(new Event('visibilitychange'));
    });
    await page.waitForSelector('#status[data-state="live"]', { timeout: 10_000 });
    if (apiCalls === before) throw new Error('no API call after the tab was shown again');
  });
  log(`# screenshot: ${path.join(artifacts, 'dashboard.png')}`);

  await check(`a subject link opens the page of ${SHOP} with its data`, async () => {
    await page.locator('#events-table a.subject-link', { hasText: SHOP }).first().click();
    await waitFor('the subject address', async () => page.url().endsWith(`#/subjects/${encodeURIComponent(SHOP)}`), 5_000);
    await waitFor('the subject name', async () => (await page.locator('#subject-name').innerText()) === SHOP, 10_000);
    await waitFor(`an event count of ${shopCount}`, async () =>
      (await page.locator('#subject-count .stat-value').innerText()) === String(shopCount));
    const kinds = await page.locator('#subject-kinds').innerText();
    if (!kinds.includes('ci.run')) throw new Error(`by kind reads: ${kinds}`);
    const rows = await page.locator('#events-table tbody tr:not(.empty)').count();
    if (rows === 0) throw new Error('no recent events on the subject page');
    if (await page.locator('#events-table a.subject-link', { hasText: BILLING }).count()) {
      throw new Error(`events of ${BILLING} on the page of ${SHOP}`);
    }
    await waitFor('the alert on the subject page', async () =>
      (await page.locator('#alerts-table tbody tr', { hasText: 'ci_failing' }).count()) > 0);
  });

  await check('the subject page charts each measure of the aggregate, with points', async () => {
    const figures = page.locator('#charts figure.chart-figure');
    await waitFor('two charts (runs, avg_secs)', async () => (await figures.count()) === 2, 15_000);
    const captions = (await page.locator('#charts figcaption').allInnerTexts()).join(' | ');
    if (!captions.includes('runs') || !captions.includes('avg_secs')) throw new Error(`captions: ${captions}`);
    await waitFor('closed windows on the charts', async () => {
      const counts = await figures.evaluateAll((fs) => fs.map((f) => Number(f.dataset.points)));
      return counts.length === 2 && counts.every((n) => n > 0);
    });
    const svg = await page.locator('#charts svg.chart').first().getAttribute('aria-label');
    if (!/points/.test(svg ?? '')) throw new Error(`chart summary: ${svg}`);
  });
  await page.screenshot({ path: path.join(artifacts, 'subject.png'), fullPage: true });
  await check('the subject page passes the WCAG 2.1 AA accessibility rules', () => accessible(page));

  await check('the SQL console runs SELECT count(*) AS n FROM events', async () => {
    await page.click('nav a[data-nav="sql"]');
    await page.waitForSelector('#sql-input', { timeout: 10_000 });
    await page.fill('#sql-input', 'SELECT count(*) AS n FROM events');
    await page.press('#sql-input', 'Control+Enter');
    await page.waitForSelector('#sql-table', { timeout: WAIT_MS });
    const header = await page.locator('#sql-table thead th').allInnerTexts();
    const cells = await page.locator('#sql-table tbody td').allInnerTexts();
    if (header.join() !== 'n' || cells.join() !== String(events.length)) {
      throw new Error(`expected n = ${events.length}, got columns ${JSON.stringify(header)} and cells ${JSON.stringify(cells)}`);
    }
    const meta = await page.locator('#sql-meta').innerText();
    if (!meta.startsWith('1 row')) throw new Error(`result line reads: ${meta}`);
  });
  await page.screenshot({ path: path.join(artifacts, 'sql.png'), fullPage: true });
  await check('the SQL console passes the WCAG 2.1 AA accessibility rules', () => accessible(page));

  await check('the SQL console downloads the result as CSV', async () => {
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: WAIT_MS }), page.click('#sql-csv')]);
    const file = path.join(tmp, 'result.csv');
    await download.saveAs(file);
    const lines = fs.readFileSync(file, 'utf8').trim().split(/\r?\n/);
    if (lines.at(-1).replace(/"/g, '') !== String(events.length)) throw new Error(`the CSV reads: ${lines.join(' / ')}`);
  });

  await check('the SQL console shows the error of a bad query', async () => {
    await page.fill('#sql-input', 'SELECT nope FROM no_such_table');
    await page.click('#sql-run');
    const box = page.locator('#sql-error .inline-error');
    await box.waitFor({ timeout: WAIT_MS });
    const text = await box.innerText();
    if (!text.trim()) throw new Error('the error box is empty');
    if (await page.locator('#sql-table').count()) throw new Error('the old result still shows');
  });

  // Two events ten minutes old, after the stream has moved the watermark to a few seconds
  // ago: their one-minute window has closed, so they are late for `ci_runs` (they are
  // successes, so the rule does not match them).
  const late = [0, 1].map((i) => ({
    specversion: '1.0', id: `browser-late-${i}`, source: 'ci', type: 'ci.run', subject: BILLING,
    time: new Date(now - 600_000 - i * 1_000).toISOString(), value: 1, conclusion: 'success',
  }));
  await check('events late for their window are counted per aggregate on the overview', async () => {
    const r = await fetch(`${base}/v1/events`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/cloudevents-batch+json' },
      body: JSON.stringify(late),
    });
    if (r.status !== 202) throw new Error(`POST /v1/events answered ${r.status}: ${await r.text()}`);
    await page.click('nav a[data-nav="overview"]');
    await waitFor('GET /v1/late to count the late events of ci_runs', async () => {
      const answer = await (await fetch(`${base}/v1/late`, { headers: auth })).json();
      const row = answer.aggregates.find((a) => a.aggregate === 'ci_runs');
      return row && row.late_events === late.length && row.max_late_by_seconds >= 580;
    });
    await waitFor(`a late count of ${late.length} for ci_runs in the late events table`, async () =>
      (await page.locator('.late-count[data-aggregate="ci_runs"]').innerText()) === String(late.length));
    const row = await page.locator('#late-table tbody tr', { hasText: 'ci_runs' }).innerText();
    if (!/\bmin\b/.test(row)) throw new Error(`the row reads ${JSON.stringify(row)}: the lateness (about ten minutes) is missing`);
    if (await page.locator('#late-table tbody tr', { hasText: 'ci_failing' }).count()) {
      throw new Error('successes were counted late for the ci_failing rule, which they do not match');
    }
  });
  await page.screenshot({ path: path.join(artifacts, 'late.png'), fullPage: true });

  await check('a rejected key brings up the key form, and a pasted key works', async () => {
    await page.evaluate((k) => localStorage.setItem('helios.apiKey', k), BAD_KEY);
    await page.goto(`${base}/#/`);
    await page.reload();
    await page.waitForSelector('#key-panel:not([hidden])', { timeout: WAIT_MS });
    await waitFor('the 401 message', async () => (await page.locator('#key-message').innerText()).includes('401'), 10_000);
    if ((await page.getAttribute('#status', 'data-state')) !== 'error') throw new Error('the status does not show the error');
    await accessible(page);
    await page.fill('#key-input', key);
    await page.click('#key-form button[type="submit"]');
    await page.waitForSelector('#status[data-state="live"]', { timeout: WAIT_MS });
    if (await page.isVisible('#key-panel')) throw new Error('the key form is still open');
  });

  await check('everything came from Helios itself, and every API call carried the key', async () => {
    if (foreign.length) throw new Error(`requests to other origins: ${foreign.join(', ')}`);
    if (wrongAuth.length) throw new Error(`API calls without the key: ${wrongAuth.join(', ')}`);
    if (pageErrors.length) throw new Error(`uncaught errors in the page: ${pageErrors.join(' | ')}`);
    if (refused.length) throw new Error(`the content security policy refused: ${refused.join(' | ')}`);
  });
}

let exitCode = 0;
try {
  await main();
} catch (e) {
  failed = true;
  exitCode = 1;
  log(`not ok ${passed + 1} - ${e instanceof Failure ? e.message : e.stack}`);
  if (consoleLines.length) log(`# the browser console's last errors and warnings:\n${consoleLines.map((l) => `#   ${l}`).join('\n')}`);
  if (context) {
    try {
      fs.mkdirSync(artifacts, { recursive: true });
      await context.pages()[0]?.screenshot({ path: path.join(artifacts, 'failure.png'), fullPage: true });
      log(`# the page at the failure: ${path.join(artifacts, 'failure.png')}`);
    } catch {
      // A dead browser cannot take a screenshot; the message above says what failed.
    }
  }
} finally {
  if (context) await context.close().catch(() => {});
  await stopHelios();
  if (tmp) {
    const heliosLog = path.join(tmp, 'helios.log');
    if (failed && fs.existsSync(heliosLog)) {
      fs.copyFileSync(heliosLog, path.join(artifacts, 'helios.log'));
      log(`# helios log: ${path.join(artifacts, 'helios.log')}; its end:\n${tail(heliosLog, 20).replace(/^/gm, '#   ')}`);
    }
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
log(`dashboard: ${passed} passed, ${exitCode} failed`);
process.exit(exitCode);
