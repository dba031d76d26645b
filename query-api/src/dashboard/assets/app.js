// The dashboard's entry: hash routing between the views, polling the current view every
// two seconds while the tab is visible, the "last updated" indicator and error banner,
// and the API key form.

import { authEvents, getKey, setKey, takeKeyFromFragment } from './api.js';
import { h, replace } from './dom.js';
import * as overview from './overview.js';
import * as subject from './subject.js';
import * as sql from './sql.js';

const POLL_MS = 2000;

const main = document.getElementById('main');
const statusEl = document.getElementById('status');
const errorEl = document.getElementById('error');
const keyPanel = document.getElementById('key-panel');
const keyToggle = document.getElementById('key-toggle');
const keyForm = document.getElementById('key-form');
const keyInput = document.getElementById('key-input');
const keyMessage = document.getElementById('key-message');
const keyForget = document.getElementById('key-forget');
const keyIntro = keyMessage.textContent;

function route() {
  const path = location.hash.replace(/^#/, '') || '/';
  const m = path.match(/^\/subjects\/(.+)$/);
  if (m) {
    let name;
    try {
      name = decodeURIComponent(m[1]);
    } catch {
      name = m[1];
    }
    return { name: 'subject', view: subject, params: { subject: name }, title: `${name} · Helios` };
  }
  if (path === '/sql') return { name: 'sql', view: sql, params: {}, title: 'SQL console · Helios' };
  if (path === '/') return { name: 'overview', view: overview, params: {}, title: 'Helios' };
  return { name: 'missing', view: null, params: { path }, title: 'Not found · Helios' };
}

let current = null; // {name, refresh}
let generation = 0;
let timer = null;
let lastOk = null;

function setStatus(state, text) {
  statusEl.dataset.state = state;
  statusEl.textContent = text;
}

function showError(err) {
  if (!err) {
    errorEl.hidden = true;
    errorEl.replaceChildren();
    return;
  }
  const hint = err.hint ? ` ${err.hint}` : '';
  replace(errorEl, h('strong', {}, err.message ?? String(err)), hint);
  errorEl.hidden = false;
}

function clock(d) {
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}

async function poll() {
  clearTimeout(timer);
  timer = null;
  const gen = generation;
  const view = current;
  if (!view || !view.refresh) {
    setStatus('idle', 'No live data on this page');
    showError(null);
    return;
  }
  if (document.hidden) {
    setStatus('paused', 'Paused while the tab is hidden');
    return;
  }
  try {
    await view.refresh();
    if (gen !== generation) return;
    lastOk = new Date();
    setStatus('live', `Live · updated ${clock(lastOk)}`);
    showError(null);
  } catch (e) {
    if (gen !== generation) return;
    console.warn('Helios dashboard: refresh failed', e);
    setStatus('error', lastOk ? `Error · last update ${clock(lastOk)}` : 'Error');
    showError(e);
  }
  if (gen !== generation) return;
  if (document.hidden) setStatus('paused', 'Paused while the tab is hidden');
  else timer = setTimeout(poll, POLL_MS);
}

function show() {
  generation += 1;
  clearTimeout(timer);
  const r = route();
  document.title = r.title;
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === r.name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (r.view) {
    const { refresh } = r.view.mount(main, r.params);
    current = { name: r.name, refresh };
  } else {
    replace(main, h('h1', { class: 'page-title' }, 'Not found'),
      h('p', {}, `The dashboard has no page “${r.params.path}”. `, h('a', { href: '#/' }, 'Back to the overview'), '.'));
    current = { name: 'missing', refresh: null };
  }
  // Move focus to the new page so keyboard and screen-reader users land on it.
  const heading = main.querySelector('h1');
  if (heading) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
  window.scrollTo(0, 0);
  poll();
}

function openKeyPanel(message) {
  keyPanel.hidden = false;
  keyToggle.setAttribute('aria-expanded', 'true');
  keyMessage.textContent = message ?? keyIntro;
  keyForget.hidden = !getKey();
}

function closeKeyPanel() {
  keyPanel.hidden = true;
  keyToggle.setAttribute('aria-expanded', 'false');
}

keyToggle.addEventListener('click', () => {
  if (keyPanel.hidden) {
    openKeyPanel();
    keyInput.focus();
  } else closeKeyPanel();
});

keyForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const key = keyInput.value.trim();
  if (!key) return;
  setKey(key);
  keyInput.value = '';
  closeKeyPanel();
  show();
});

keyForget.addEventListener('click', () => {
  setKey(null);
  keyInput.value = '';
  openKeyPanel('Key forgotten. Paste another to keep using the dashboard.');
});

authEvents.addEventListener('rejected', (e) => {
  const err = e.detail;
  const why = err.status === 403
    ? `The API key may not do this (403: ${err.message}). Paste a key with a wider scope.`
    : getKey()
      ? `Helios rejected the API key (401: ${err.message}). Paste a valid key.`
      : `Helios needs an API key (401: ${err.message}). Paste one below.`;
  // Update the text only: re-rendering would wipe a key being typed.
  if (keyPanel.hidden || keyMessage.textContent !== why) openKeyPanel(why);
});

document.addEventListener('visibilitychange', () => {
  if (document.hidden) {
    clearTimeout(timer);
    timer = null;
    if (current?.refresh) setStatus('paused', 'Paused while the tab is hidden');
  } else {
    poll();
  }
});

window.addEventListener('hashchange', () => {
  // A pasted link with #key=… also works after the page has loaded.
  if (takeKeyFromFragment()) {
    closeKeyPanel();
  }
  show();
});

takeKeyFromFragment();
if (!getKey()) openKeyPanel('No API key is set. If this Helios requires one, paste it here; or open the dashboard with #key=<key> in the address.');
show();
