// coursetrail console: DOM helper h(), formatting, small shared widgets, the error banner and
// the status line, and hash navigation (parseHash / navigate).

import { ApiError, normaliseError } from './api.js';

export const UUID_PATTERN = '\\s*[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\\s*';
export const TZ = Intl.DateTimeFormat().resolvedOptions().timeZone || 'local time';

// ---------------------------------------------------------------------------------------------
// DOM helpers

const PROPS = new Set(['value', 'checked', 'indeterminate']);

/** h('button', {class: 'btn', onclick: fn, 'data-testid': 'x'}, 'text', child, [more]) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  const props = [];
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value == null || value === false) continue;
      if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
      else if (key === 'class') el.className = value;
      else if (PROPS.has(key)) props.push([key, value]);
      else el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  for (const [key, value] of props) el[key] = value;
  return el;
}

let idSeq = 0;
export const uid = (prefix) => `${prefix}-${(idSeq += 1)}`;

/** A labelled form field: <div class="field"><label>…</label>control<p class="hint"></p></div> */
export function field(label, control, hint, cls = '') {
  if (!control.id) control.id = uid('f');
  let hintEl = null;
  if (hint) {
    hintEl = h('p', { class: 'hint', id: `${control.id}-hint` }, hint);
    control.setAttribute('aria-describedby', hintEl.id);
  }
  return h('div', { class: `field ${cls}` }, h('label', { for: control.id }, label), control, hintEl);
}

export function select(options, attrs = {}) {
  return h('select', attrs, options.map(([value, text]) => h('option', { value }, text)));
}

const pad = (n) => String(n).padStart(2, '0');

/** Local "YYYY-MM-DD HH:MM:SS" for an RFC 3339 time. */
export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function timeEl(iso, short = false) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const text = fmtTime(iso);
  return h('time', { datetime: iso, title: `${text} (${TZ}) · ${iso}` }, short ? text.slice(0, 16) : text);
}

/** RFC 3339 → value for <input type="datetime-local" step="1">. */
export function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** <input type="datetime-local"> value (local time) → RFC 3339 (UTC), or null. */
export function fromLocalInput(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

// UUIDv7s share their time prefix: the tail tells them apart.
export const shortId = (id) => (id ? `…${String(id).slice(-8)}` : '—');
export const fmtPct = (v) => (v == null ? '—' : `${(v * 100).toFixed(1)} %`);
export const fmtNum = (v, digits = 2) => (v == null ? '—' : String(Math.round(v * 10 ** digits) / 10 ** digits));
export const titleCase = (s) => s.charAt(0) + s.slice(1).toLowerCase().replace(/_/g, ' ');
export const comparePositions = (a, b) => {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
};

/**
 * Roving tab stop for clickable table rows: one row is in the tab order (the last focused, else
 * the first visible); arrow keys move between rows. Rows are created with tabindex="-1".
 */
export function rovingRows(tbody) {
  tbody.addEventListener('focusin', (e) => {
    const tr = e.target.closest('tr[tabindex]');
    if (!tr) return;
    for (const other of tbody.querySelectorAll('tr[tabindex="0"]')) if (other !== tr) other.tabIndex = -1;
    tr.tabIndex = 0;
  });
}

export function ensureTabStop(tbody) {
  if (tbody.querySelector('tr[tabindex="0"]:not([hidden])')) return;
  const first = tbody.querySelector('tr[tabindex]:not([hidden])');
  if (first) first.tabIndex = 0;
}

export function statusBadge(status) {
  return h('span', { class: `badge status-${String(status).toLowerCase()}`, 'data-status': status }, titleCase(status));
}

export function typeCategory(type) {
  if (type.startsWith('COURSE_CREATED') || type === 'COURSE_RETIRED') return 'course';
  if (type === 'TRAINEE_REGISTERED') return 'trainee';
  if (type === 'TRAINEE_FORGOTTEN') return 'forgotten';
  if (type.startsWith('TEST_')) return 'test';
  if (type === 'COURSE_COMPLETED') return 'done';
  if (type === 'REGISTRATION_WITHDRAWN') return 'withdrawn';
  return 'enrollment';
}

/** Pretty JSON with light syntax highlighting; textContent is exactly JSON.stringify(v, null, 2). */
export function jsonView(value, testid) {
  const text = JSON.stringify(value, null, 2) ?? 'null';
  const pre = h('pre', { class: 'json', tabindex: '0', 'data-testid': testid });
  const re = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
  let last = 0;
  let m;
  while ((m = re.exec(text))) {
    pre.append(text.slice(last, m.index));
    if (m[1] && m[2]) pre.append(h('span', { class: 'j-key' }, m[1]), m[2]);
    else if (m[1]) pre.append(h('span', { class: 'j-str' }, m[1]));
    else if (m[3]) pre.append(h('span', { class: 'j-lit' }, m[3]));
    else pre.append(h('span', { class: 'j-num' }, m[4]));
    last = re.lastIndex;
  }
  pre.append(text.slice(last));
  return pre;
}

export function downloadBlob(filename, blob) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: filename, class: 'sr-only' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

export const stamp = () => new Date().toISOString().replace(/[:]/g, '').replace(/\..*/, '');

// ---------------------------------------------------------------------------------------------
// Errors and status

const errorsEl = () => document.getElementById('errors');

export function clearErrors() {
  errorsEl().replaceChildren();
}

/** Shows an error banner (message + code for each error); never throws. */
export function showError(error, context) {
  if (error && error.name === 'AbortError') return;
  const errors = error instanceof ApiError
    ? error.errors
    : Array.isArray(error)
      ? error.map((e) => (e.code ? e : normaliseError(e)))
      : [{ message: String((error && error.message) || error), code: 'CLIENT_ERROR' }];
  const codes = errors.map((e) => e.code);
  const needsSignIn = codes.includes('UNAUTHENTICATED');
  const banner = h('div', { class: 'error-banner', 'data-testid': 'error', 'data-code': codes[0] },
    h('div', { class: 'error-body' },
      h('strong', { class: 'error-title' }, context ? `${context} failed` : 'Something went wrong'),
      h('ul', { class: 'error-list' }, errors.map((e) => h('li', { 'data-code': e.code },
        h('span', { class: 'error-message' }, e.message), ' ',
        h('code', { class: 'error-code' }, e.code),
        e.path ? h('span', { class: 'muted' }, ` at ${e.path}`) : null))),
      needsSignIn && parseHash().path !== '/signin' ? h('p', {}, 'Your token was refused or has expired. ',
        h('a', { href: '#/signin' }, 'Sign in again'), '.') : null),
    h('button', {
      type: 'button', class: 'btn-icon', 'aria-label': 'Dismiss error',
      onclick: () => banner.remove(),
    }, '×'));
  const host = errorsEl();
  while (host.children.length >= 3) host.firstElementChild.remove();
  host.append(banner);
  // eslint-disable-next-line no-console
  console.warn(context || 'error', errors);
}

export function setStatus(text) {
  const el = document.getElementById('status');
  if (el) el.textContent = text;
}

export const courseLabel = (c) => (c ? `${c.code} — ${c.title}${c.retired ? ' (retired)' : ''}` : '');

/** Drops a forgotten trainee from every suggestion list on the page: its name and e-mail must
 * not stay on screen once the live feed says it was forgotten. */
export function forgetSuggestion(traineeId) {
  for (const option of document.querySelectorAll('datalist option')) {
    if (option.value === traineeId) option.remove();
  }
}

/** Fills a <datalist> with suggestions (value = id, label = name). Errors go to the banner. */
export function fillDatalist(list, loader, label, context) {
  loader()
    .then((items) => list.replaceChildren(...items.map((item) => h('option', { value: item.id }, label(item)))))
    .catch((error) => showError(error, context));
}

export function pageHeader(title, ...extra) {
  return h('div', { class: 'page-head' }, h('h1', { tabindex: '-1', class: 'page-title' }, title), ...extra);
}

export function roleNotice(text) {
  return h('p', { class: 'notice', 'data-testid': 'role-notice' }, text);
}

// ---------------------------------------------------------------------------------------------
// Hash navigation

export function parseHash() {
  const raw = location.hash.replace(/^#/, '');
  const q = raw.indexOf('?');
  const path = (q >= 0 ? raw.slice(0, q) : raw) || '/';
  const params = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : '');
  return { path: path.startsWith('/') ? path : `/${path}`, params };
}

// The router (console.js) imports the views, so the views cannot import it back: it registers
// itself here instead, for navigate() to re-run a same-address navigation.
let rerouteHook = () => {};

export function setRouter(route) {
  rerouteHook = route;
}

/** Goes to a path ("/audit?x=1"); a same-address navigation re-runs the view's update. */
export function navigate(path, rerunIfSame = false) {
  const target = `#${path}`;
  if (location.hash === target) {
    if (rerunIfSame) rerouteHook();
    return;
  }
  location.hash = target;
}
