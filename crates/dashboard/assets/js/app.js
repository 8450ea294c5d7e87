// The dashboard's shell: hash routes to views, the sign-in form when the API
// asks for a key, and the light/dark theme. Each view is a module exporting
// `render(root, params, signal)`; `signal` aborts when the user leaves it, which
// stops its streams, timers and charts.

import { apiKey, signIn, signOut } from './api.js';
import { h } from './dom.js';
import { rethemeAll } from './charts.js';
import * as overview from './overview.js';
import * as bursts from './bursts.js';
import * as burst from './burst.js';
import * as compare from './compare.js';
import * as functions from './functions.js';
import * as runs from './runs.js';
import * as run from './run.js';

const ROUTES = [
  [/^\/?$/, overview, 'overview'],
  [/^\/bursts$/, bursts, 'bursts'],
  [/^\/bursts\/([^/]+)$/, burst, 'bursts'],
  [/^\/compare(?:\/([^/]*))?(?:\/([^/]*))?$/, compare, 'compare'],
  [/^\/functions$/, functions, 'functions'],
  [/^\/runs$/, runs, 'runs'],
  [/^\/runs\/([^/]+)$/, run, 'runs'],
];

const main = document.getElementById('main');
let current = null; // the AbortController of the view on screen

/** The route: '#/bursts/ID?x=1' → {path: '/bursts/ID', query: URLSearchParams}. */
function location() {
  const hash = window.location.hash.replace(/^#/, '') || '/';
  const [path, q = ''] = hash.split('?');
  return { path, query: new URLSearchParams(q) };
}

function show() {
  current?.abort();
  current = new AbortController();
  const { path, query } = location();
  const found = ROUTES.map(([re, view, nav]) => [path.match(re), view, nav]).find(([m]) => m);
  for (const a of document.querySelectorAll('nav a[data-nav]')) {
    if (found && a.dataset.nav === found[2]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.getElementById('sign-out').hidden = !apiKey();
  const root = h('div', { class: 'view' });
  main.replaceChildren(root);
  if (!found) {
    root.append(h('h1', {}, 'Not found'), h('p', {}, 'No page has this address. '), h('a', { href: '#/' }, 'Go to the overview'));
    return;
  }
  const [match, view] = found;
  const params = match.slice(1).map((p) => (p === undefined ? undefined : decodeURIComponent(p)));
  view.render(root, { params, query }, current.signal);
}

// Asked for a key (any 401): the view gives way to the sign-in form, and the
// same page comes back once the user has signed in.
function askForKey() {
  current?.abort();
  current = new AbortController();
  document.getElementById('sign-out').hidden = true;
  const stored = apiKey();
  const input = h('input', { id: 'api-key', name: 'api-key', type: 'password', autocomplete: 'current-password', required: true, spellcheck: 'false' });
  const remember = h('input', { id: 'remember', type: 'checkbox' });
  const form = h('form', { class: 'sign-in panel', 'aria-labelledby': 'sign-in-title' },
    h('h1', { id: 'sign-in-title' }, 'Sign in'),
    h('p', {}, stored ? 'The controller refused the stored API key. Enter another one.' : 'This controller asks for an API key; it decides which namespace you see.'),
    h('label', { for: 'api-key' }, 'API key'),
    input,
    h('div', { class: 'check' }, remember, h('label', { for: 'remember' }, 'Remember on this device')),
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    signIn(input.value.trim(), remember.checked);
    show();
  });
  main.replaceChildren(form);
  input.focus();
}

function setTheme(theme, remember) {
  document.documentElement.dataset.theme = theme;
  const button = document.getElementById('theme-toggle');
  button.setAttribute('aria-pressed', String(theme === 'dark'));
  if (remember) localStorage.setItem('volley.theme', theme);
  rethemeAll();
}

const prefersDark = window.matchMedia('(prefers-color-scheme: dark)');
setTheme(localStorage.getItem('volley.theme') ?? (prefersDark.matches ? 'dark' : 'light'), false);
prefersDark.addEventListener('change', (e) => {
  if (!localStorage.getItem('volley.theme')) setTheme(e.matches ? 'dark' : 'light', false);
});
document.getElementById('theme-toggle').addEventListener('click', () => {
  setTheme(document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark', true);
});
document.getElementById('sign-out').addEventListener('click', () => {
  signOut();
  show();
});
// The skip link must not become a route.
document.querySelector('.skip').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

window.addEventListener('volley:unauthorized', () => {
  // Several requests of one view may be refused: one form is enough.
  if (!main.querySelector('.sign-in')) askForKey();
});
window.addEventListener('hashchange', show);
show();
