// coursetrail admin console: a single-page application over the public GraphQL API.
// Plain ES module, no build step, no dependencies. See index.html for the shell.
//
// Routes (hash): #/signin · #/audit?traineeId&courseId&streamId&types&from&to&first&live ·
// #/reports/duration?from&to&groupBy&asOf&courses · #/reports/funnel?asOf&courses ·
// #/enrollments?courseId&traineeId&status&q · #/enrollment/<id>?asOf
// A fragment `#token=<jwt>[&next=/audit]` is moved into sessionStorage and stripped at once.

import {
  barChart, durationBoxPlot, durationScale, emptyPlot, fmtDuration, outcomeBar, swatch,
} from './charts.js';

const TOKEN_KEY = 'coursetrail.console.token';
const ALL_ROLES = ['ADMIN', 'INSTRUCTOR', 'TRAINEE'];
const STAFF = ['ADMIN', 'INSTRUCTOR'];
const EVENT_TYPES = [
  'COURSE_CREATED', 'COURSE_RETIRED', 'TRAINEE_REGISTERED', 'TRAINEE_FORGOTTEN', 'COURSE_REGISTERED', 'COURSE_STARTED',
  'TEST_SUBMITTED', 'TEST_GRADED', 'COURSE_COMPLETED', 'REGISTRATION_WITHDRAWN',
];
const LIFECYCLE_POINTS = [
  ['REGISTERED', 'Registered'], ['STARTED', 'Started'], ['FIRST_SUBMISSION', 'First test submitted'],
  ['PASSED', 'Passed'], ['COMPLETED', 'Completed'], ['WITHDRAWN', 'Withdrawn'],
];
const GROUPINGS = [['COURSE', 'Course'], ['COHORT_MONTH', 'Cohort month'], ['NONE', 'Everything']];
const STATUSES = ['REGISTERED', 'STARTED', 'COMPLETED', 'WITHDRAWN'];
const UUID_PATTERN = '\\s*[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\\s*';
const TZ = Intl.DateTimeFormat().resolvedOptions().timeZone || 'local time';

// ---------------------------------------------------------------------------------------------
// DOM helpers

const PROPS = new Set(['value', 'checked', 'indeterminate']);

/** h('button', {class: 'btn', onclick: fn, 'data-testid': 'x'}, 'text', child, [more]) */
function h(tag, attrs, ...children) {
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
const uid = (prefix) => `${prefix}-${(idSeq += 1)}`;

/** A labelled form field: <div class="field"><label>…</label>control<p class="hint"></p></div> */
function field(label, control, hint, cls = '') {
  if (!control.id) control.id = uid('f');
  let hintEl = null;
  if (hint) {
    hintEl = h('p', { class: 'hint', id: `${control.id}-hint` }, hint);
    control.setAttribute('aria-describedby', hintEl.id);
  }
  return h('div', { class: `field ${cls}` }, h('label', { for: control.id }, label), control, hintEl);
}

function select(options, attrs = {}) {
  return h('select', attrs, options.map(([value, text]) => h('option', { value }, text)));
}

const pad = (n) => String(n).padStart(2, '0');

/** Local "YYYY-MM-DD HH:MM:SS" for an RFC 3339 time. */
function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function timeEl(iso, short = false) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const text = fmtTime(iso);
  return h('time', { datetime: iso, title: `${text} (${TZ}) · ${iso}` }, short ? text.slice(0, 16) : text);
}

/** RFC 3339 → value for <input type="datetime-local" step="1">. */
function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** <input type="datetime-local"> value (local time) → RFC 3339 (UTC), or null. */
function fromLocalInput(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

// UUIDv7s share their time prefix: the tail tells them apart.
const shortId = (id) => (id ? `…${String(id).slice(-8)}` : '—');
const fmtPct = (v) => (v == null ? '—' : `${(v * 100).toFixed(1)} %`);
const fmtNum = (v, digits = 2) => (v == null ? '—' : String(Math.round(v * 10 ** digits) / 10 ** digits));
const titleCase = (s) => s.charAt(0) + s.slice(1).toLowerCase().replace(/_/g, ' ');
const comparePositions = (a, b) => {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
};

/**
 * Roving tab stop for clickable table rows: one row is in the tab order (the last focused, else
 * the first visible); arrow keys move between rows. Rows are created with tabindex="-1".
 */
function rovingRows(tbody) {
  tbody.addEventListener('focusin', (e) => {
    const tr = e.target.closest('tr[tabindex]');
    if (!tr) return;
    for (const other of tbody.querySelectorAll('tr[tabindex="0"]')) if (other !== tr) other.tabIndex = -1;
    tr.tabIndex = 0;
  });
}

function ensureTabStop(tbody) {
  if (tbody.querySelector('tr[tabindex="0"]:not([hidden])')) return;
  const first = tbody.querySelector('tr[tabindex]:not([hidden])');
  if (first) first.tabIndex = 0;
}

function statusBadge(status) {
  return h('span', { class: `badge status-${String(status).toLowerCase()}`, 'data-status': status }, titleCase(status));
}

function typeCategory(type) {
  if (type.startsWith('COURSE_CREATED') || type === 'COURSE_RETIRED') return 'course';
  if (type === 'TRAINEE_REGISTERED') return 'trainee';
  if (type === 'TRAINEE_FORGOTTEN') return 'forgotten';
  if (type.startsWith('TEST_')) return 'test';
  if (type === 'COURSE_COMPLETED') return 'done';
  if (type === 'REGISTRATION_WITHDRAWN') return 'withdrawn';
  return 'enrollment';
}

/** Pretty JSON with light syntax highlighting; textContent is exactly JSON.stringify(v, null, 2). */
function jsonView(value, testid) {
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

function csvCell(value) {
  if (value == null) return '';
  let text = String(value);
  // Keep spreadsheets from evaluating text cells as formulas.
  if (typeof value === 'string' && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function downloadBlob(filename, blob) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: filename, class: 'sr-only' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function downloadCsv(filename, rows) {
  const text = rows.map((row) => row.map(csvCell).join(',')).join('\r\n') + '\r\n';
  downloadBlob(filename, new Blob([text], { type: 'text/csv;charset=utf-8' }));
}

const stamp = () => new Date().toISOString().replace(/[:]/g, '').replace(/\..*/, '');

// ---------------------------------------------------------------------------------------------
// Session, API, errors, status

const session = { token: null, me: null, claims: null };
const prefs = { auditLive: false, historyLive: false };
const cache = { courses: null, trainees: null };

function getToken() {
  if (session.token == null) session.token = sessionStorage.getItem(TOKEN_KEY);
  return session.token;
}

function setToken(token) {
  session.token = token;
  session.me = null;
  session.claims = decodeClaims(token);
  cache.courses = null;
  cache.trainees = null;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** The token's claims, unverified, for display only (the server verifies). */
function decodeClaims(token) {
  try {
    const part = token.split('.')[1];
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

class ApiError extends Error {
  constructor(errors, status) {
    super(errors.map((e) => `${e.message} (${e.code})`).join('; '));
    this.name = 'ApiError';
    this.errors = errors;
    this.status = status;
  }

  get code() {
    return this.errors[0]?.code;
  }
}

function normaliseError(e) {
  const ext = (e && e.extensions) || {};
  let message = (e && e.message) || 'Unknown error';
  if (ext.retryAfterSeconds != null) message += ` (retry after ${ext.retryAfterSeconds} s)`;
  return { message, code: ext.code || 'UNKNOWN', path: Array.isArray(e?.path) ? e.path.join('.') : null };
}

/** POST /graphql; resolves to `data`, rejects with ApiError (message + code) on any failure. */
async function gql(query, variables = {}, { signal } = {}) {
  const token = getToken();
  const headers = {
    'Content-Type': 'application/json',
    Accept: 'application/graphql-response+json, application/json',
  };
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch('/graphql', {
      method: 'POST', headers, body: JSON.stringify({ query, variables }), signal, credentials: 'omit',
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError([{ message: `Could not reach the server: ${error.message}`, code: 'NETWORK_ERROR' }], 0);
  }
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  if (body && Array.isArray(body.errors) && body.errors.length) {
    throw new ApiError(body.errors.map(normaliseError), response.status);
  }
  if (!response.ok) {
    const detail = text ? `: ${text.slice(0, 300)}` : '';
    throw new ApiError([{ message: `HTTP ${response.status} ${response.statusText}${detail}`, code: `HTTP_${response.status}` }], response.status);
  }
  if (!body || typeof body !== 'object' || !('data' in body) || body.data == null) {
    throw new ApiError([{ message: 'The server sent an unexpected response', code: 'BAD_RESPONSE' }], response.status);
  }
  return body.data;
}

const errorsEl = () => document.getElementById('errors');

function clearErrors() {
  errorsEl().replaceChildren();
}

/** Shows an error banner (message + code for each error); never throws. */
function showError(error, context) {
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

function setStatus(text) {
  const el = document.getElementById('status');
  if (el) el.textContent = text;
}

/** Fetches every page of a connection (at most `pages` pages of 100). */
async function fetchAll(query, field, variables = {}, pages = 10) {
  const nodes = [];
  let after = null;
  for (let i = 0; i < pages; i += 1) {
    const data = await gql(query, { ...variables, after });
    const conn = data[field];
    nodes.push(...conn.nodes);
    if (!conn.pageInfo.hasNextPage) break;
    after = conn.pageInfo.endCursor;
  }
  return nodes;
}

const COURSES_QUERY = `query Courses($after: String) {
  courses(includeRetired: true, first: 100, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes { id code title passingScore retired }
  }
}`;
const TRAINEES_QUERY = `query Trainees($after: String) {
  trainees(first: 100, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes { id name email }
  }
}`;

function loadCourses() {
  if (!cache.courses) {
    cache.courses = fetchAll(COURSES_QUERY, 'courses').catch((error) => {
      cache.courses = null;
      throw error;
    });
  }
  return cache.courses;
}

function loadTrainees() {
  if (!STAFF.includes(session.me?.role)) return Promise.resolve([]);
  if (!cache.trainees) {
    cache.trainees = fetchAll(TRAINEES_QUERY, 'trainees').catch((error) => {
      cache.trainees = null;
      throw error;
    });
  }
  return cache.trainees;
}

const courseLabel = (c) => (c ? `${c.code} — ${c.title}${c.retired ? ' (retired)' : ''}` : '');

/** Fills a <datalist> with suggestions (value = id, label = name). Errors go to the banner. */
function fillDatalist(list, loader, label, context) {
  loader()
    .then((items) => list.replaceChildren(...items.map((item) => h('option', { value: item.id }, label(item)))))
    .catch((error) => showError(error, context));
}

// ---------------------------------------------------------------------------------------------
// Live feed: graphql-transport-ws over /graphql/ws
//
// States (exactly these words): connecting → live → (socket lost) reconnecting → live …;
// offline when switched off or after a fatal refusal. Reconnects back off 0.5 s, 1 s, 2 s … 30 s
// (±20 %), resuming after the last position shown; a ping every 20 s detects dead sockets.

const LIVE_QUERY = `subscription Live($afterPosition: Position, $filter: AuditFilter) {
  events(afterPosition: $afterPosition, filter: $filter) { ...Ev }
}`;
const FATAL_CODES = new Set([
  'UNAUTHENTICATED', 'FORBIDDEN', 'BAD_USER_INPUT', 'BAD_REQUEST', 'GRAPHQL_VALIDATION_FAILED',
  'GRAPHQL_PARSE_FAILED', 'NOT_FOUND',
]);

class LiveFeed {
  constructor({ afterPosition, filter, onEvent, onState, onError }) {
    Object.assign(this, { afterPosition, filter, onEvent, onState, onError });
    this.wanted = false;
    this.ws = null;
    this.gen = 0;
    this.attempt = 0;
    this.opSeq = 0;
    this.opId = null;
    this.timers = {};
    this.state = 'offline';
    this.onOnline = () => {
      if (this.wanted && !this.ws) {
        this.clearTimer('retry');
        this.connect();
      }
    };
  }

  setState(state, detail = '') {
    this.state = state;
    this.onState(state, detail);
  }

  clearTimer(name) {
    clearTimeout(this.timers[name]);
    clearInterval(this.timers[name]);
    delete this.timers[name];
  }

  clearTimers() {
    for (const name of Object.keys(this.timers)) this.clearTimer(name);
  }

  start() {
    if (this.wanted) return;
    this.wanted = true;
    this.attempt = 0;
    window.addEventListener('online', this.onOnline);
    this.connect();
  }

  stop(reason = '') {
    this.wanted = false;
    window.removeEventListener('online', this.onOnline);
    this.detach(true);
    this.setState('offline', reason);
  }

  /** Drops the current socket (its handlers become no-ops). */
  detach(polite) {
    this.gen += 1;
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    try {
      if (polite && this.opId && ws.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify({ id: this.opId, type: 'complete' }));
      }
      ws.close(1000, 'client done');
    } catch {
      /* already closed */
    }
    this.opId = null;
  }

  connect() {
    this.detach(false);
    if (!this.wanted) return;
    this.setState(this.attempt === 0 ? 'connecting' : 'reconnecting',
      this.attempt === 0 ? 'opening connection' : `attempt ${this.attempt + 1}`);
    const gen = this.gen;
    const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/graphql/ws`;
    let ws;
    try {
      ws = new WebSocket(url, 'graphql-transport-ws');
    } catch (error) {
      this.retry(`could not open: ${error.message}`);
      return;
    }
    this.ws = ws;
    this.timers.ack = setTimeout(() => {
      if (gen === this.gen) this.retry('no acknowledgement within 10 s');
    }, 10000);
    ws.onopen = () => {
      if (gen !== this.gen) return;
      ws.send(JSON.stringify({ type: 'connection_init', payload: { Authorization: `Bearer ${getToken()}` } }));
    };
    ws.onmessage = (message) => {
      if (gen === this.gen) this.onMessage(ws, message.data);
    };
    ws.onclose = (event) => {
      if (gen === this.gen) this.onClose(event);
    };
    ws.onerror = () => { /* a close event follows */ };
  }

  onMessage(ws, text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    switch (msg.type) {
      case 'connection_ack': {
        this.clearTimer('ack');
        this.opSeq += 1;
        this.opId = String(this.opSeq);
        const after = this.afterPosition();
        const filter = this.filter();
        ws.send(JSON.stringify({
          id: this.opId,
          type: 'subscribe',
          payload: { query: LIVE_QUERY + EVENT_FRAGMENT, variables: { afterPosition: after, filter } },
        }));
        this.setState('live', `after position ${after}`);
        this.keepalive(ws);
        break;
      }
      case 'ping':
        ws.send(JSON.stringify({ type: 'pong' }));
        break;
      case 'pong':
        this.clearTimer('pong');
        break;
      case 'next': {
        if (msg.id !== this.opId) return;
        const payload = msg.payload || {};
        const event = payload.data && payload.data.events;
        if (event) {
          this.attempt = 0;
          this.onEvent(event);
        }
        if (Array.isArray(payload.errors) && payload.errors.length) this.operationFailed(payload.errors);
        break;
      }
      case 'error':
        if (msg.id === this.opId) this.operationFailed(Array.isArray(msg.payload) ? msg.payload : [msg.payload]);
        break;
      case 'complete':
        if (msg.id === this.opId) {
          this.opId = null;
          // The server ended the feed (e.g. shutting down): resume after the last position shown.
          this.retry('the server ended the feed');
        }
        break;
      default:
        break;
    }
  }

  operationFailed(rawErrors) {
    const errors = rawErrors.map(normaliseError);
    const codes = errors.map((e) => e.code);
    if (codes.some((code) => FATAL_CODES.has(code))) {
      this.stop(`refused: ${codes.join(', ')}`);
      this.onError(new ApiError(errors, 0));
      return;
    }
    if (codes.includes('SLOW_CONSUMER')) {
      // We fell behind: resubscribe at once from the last position shown.
      this.attempt = 0;
      this.retry('fell behind; resuming', 0);
      return;
    }
    const retryAfter = rawErrors.map((e) => e?.extensions?.retryAfterSeconds).find((v) => v != null);
    this.retry(`${codes.join(', ')}`, retryAfter != null ? retryAfter * 1000 : undefined);
  }

  onClose(event) {
    this.clearTimers();
    this.ws = null;
    this.opId = null;
    if (!this.wanted) {
      this.setState('offline');
      return;
    }
    const code = event.code;
    if (code === 4403) {
      this.stop('token refused');
      this.onError(new ApiError([{ message: `The live feed refused the token: ${event.reason || 'forbidden'}`, code: 'FORBIDDEN' }], 0));
      return;
    }
    if ([4400, 4401, 4406, 4409].includes(code)) {
      this.stop(`protocol error ${code}`);
      this.onError(new ApiError([{ message: `The live feed closed: ${event.reason || 'protocol error'} (close code ${code})`, code: `WS_${code}` }], 0));
      return;
    }
    this.retry(`connection closed (${code}${event.reason ? `: ${event.reason}` : ''})`);
  }

  /** Drops the socket and tries again after the backoff delay. */
  retry(why, delayMs) {
    this.detach(false);
    if (!this.wanted) return;
    this.attempt += 1;
    const base = Math.min(30000, 500 * 2 ** (this.attempt - 1));
    const delay = delayMs ?? Math.round(base * (0.8 + Math.random() * 0.4));
    const offline = navigator.onLine === false;
    this.setState('reconnecting', offline
      ? `${why}; network offline, waiting`
      : `${why}; retry in ${(delay / 1000).toFixed(1)} s`);
    this.timers.retry = setTimeout(() => this.connect(), delay);
  }

  keepalive(ws) {
    this.clearTimer('keepalive');
    const gen = this.gen;
    this.timers.keepalive = setInterval(() => {
      if (gen !== this.gen || ws.readyState !== WebSocket.OPEN) return;
      ws.send(JSON.stringify({ type: 'ping' }));
      this.clearTimer('pong');
      this.timers.pong = setTimeout(() => {
        if (gen === this.gen) this.retry('no answer to ping');
      }, 10000);
    }, 20000);
  }
}

// ---------------------------------------------------------------------------------------------
// Audit panel: an event table with paging, details, CSV export and the live feed

const EVENT_FRAGMENT = `
fragment Ev on AuditEvent {
  eventId position cursor streamId streamType version type schemaVersion data recordedAt
  traineeId courseId
  metadata { actor { id role } commandId correlationId causationId }
}`;
const AUDIT_QUERY = `query Audit($filter: AuditFilter, $first: Int, $after: String) {
  auditTrail(filter: $filter, first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes { ...Ev }
  }
}${EVENT_FRAGMENT}`;

const MAX_ROWS = 2000;
const storedEventName = (type) => type.toLowerCase().split('_').map((w) => w[0].toUpperCase() + w.slice(1)).join('');

class AuditPanel {
  constructor({ label = 'Events', fill = false, livePref = null, markAfter = null, onAsOf = null, streamPage = false } = {}) {
    this.opts = { label, fill, livePref, onAsOf, streamPage };
    this.markAfter = markAfter;
    this.filter = null;
    this.pageSize = 50;
    this.byPosition = new Map();
    this.lastPosition = null;
    this.lastCursor = null;
    this.hasNextPage = false;
    this.loading = false;
    this.loaded = false;
    this.destroyed = false;
    this.gen = 0;
    this.selected = null;
    this.following = true;
    this.unseen = 0;
    this.liveCount = 0;
    this.scrollPending = false;
    this.liveWanted = livePref ? Boolean(prefs[livePref]) : false;
    this.feed = new LiveFeed({
      afterPosition: () => this.lastPosition ?? '0',
      filter: () => this.filter,
      onEvent: (event) => this.onLiveEvent(event),
      onState: (state, detail) => this.showLiveState(state, detail),
      onError: (error) => showError(error, 'Live feed'),
    });
    this.build();
  }

  build() {
    const { label, fill } = this.opts;
    this.countEl = h('span', { class: 'count', 'data-testid': 'audit-count' }, '');
    this.liveToggle = h('button', {
      type: 'button', class: 'btn toggle', 'aria-pressed': String(this.liveWanted), 'data-testid': 'live-toggle',
      onclick: () => this.setLive(!this.liveWanted),
    }, h('span', { class: 'toggle-track', 'aria-hidden': 'true' }, h('span', { class: 'toggle-thumb' })), 'Live');
    this.liveStateEl = h('span', { class: 'live-state', 'data-testid': 'live-state', 'data-state': 'offline' }, 'offline');
    this.liveDetailEl = h('span', { class: 'live-detail muted', 'data-testid': 'live-detail' });
    const liveRegion = h('span', { class: 'live-region', role: 'status', 'aria-live': 'polite', 'aria-atomic': 'true' },
      h('span', { class: 'sr-only' }, 'Live feed: '), this.liveStateEl);
    this.jumpBtn = h('button', { type: 'button', class: 'btn btn-small jump', hidden: true, onclick: () => this.jumpToLatest() }, '');
    this.exportBtn = h('button', {
      type: 'button', class: 'btn btn-small', 'data-testid': 'audit-export', onclick: () => this.exportCsv(),
      title: 'Download every event matching the filter (GET /audit/export)',
    }, 'Export CSV');
    const toolbar = h('div', { class: 'panel-toolbar' },
      this.countEl, h('span', { class: 'spacer' }), this.jumpBtn, this.exportBtn,
      h('span', { class: 'live-box' }, this.liveToggle, liveRegion, this.liveDetailEl));

    this.tbody = h('tbody', {
      onclick: (e) => this.onRowClick(e),
      onkeydown: (e) => this.onRowKey(e),
    });
    rovingRows(this.tbody);
    // On one stream's page its type and id are the page's subject: those columns are left out.
    this.columns = this.opts.streamPage ? ['pos', 'time', 'type', 'actor'] : ['pos', 'time', 'type', 'stream', 'id', 'actor'];
    const names = { pos: 'Position', time: 'Recorded at', type: 'Type', stream: 'Stream', id: 'Stream id', actor: 'Actor' };
    this.table = h('table', { class: 'data audit-table' },
      h('caption', { class: 'sr-only' }, `${label}. Press Enter on a row to show its data and metadata.`),
      h('colgroup', {}, this.columns.map((c) => h('col', { class: `c-${c}` }))),
      h('thead', {}, h('tr', {}, this.columns.map((c) => h('th', { scope: 'col', class: `h-${c}` }, names[c])))),
      this.tbody);
    this.scroller = h('div', { class: 'table-scroll' }, this.table);
    this.lastScrollTop = 0;
    this.scroller.addEventListener('scroll', () => {
      // Follow the newest row unless the person scrolls up; rows arriving (the content growing
      // under an unchanged scrollTop) do not stop following.
      const el = this.scroller;
      if (el.scrollHeight - el.scrollTop - el.clientHeight < 32) this.following = true;
      else if (el.scrollTop < this.lastScrollTop - 2) this.following = false;
      this.lastScrollTop = el.scrollTop;
      if (this.following && this.unseen) {
        this.unseen = 0;
        this.updateJump();
      }
    }, { passive: true });
    this.moreBtn = h('button', { type: 'button', class: 'btn', 'data-testid': 'load-more', hidden: true, onclick: () => this.loadMore() }, 'Load more');
    this.buildDetails();
    this.el = h('section', { class: `audit-panel${fill ? ' fill' : ''}${this.opts.streamPage ? ' stream-page' : ''}`, 'aria-label': label },
      toolbar,
      h('div', { class: 'audit-body' },
        h('div', { class: 'audit-main' }, this.scroller, h('div', { class: 'table-foot' }, this.moreBtn)),
        this.details));
  }

  buildDetails() {
    const titleId = uid('details-title');
    this.detailsTitle = h('h2', { id: titleId, class: 'details-title' }, 'Event');
    this.detailsBody = h('div', { class: 'details-body' });
    this.details = h('aside', { class: 'details', 'data-testid': 'event-details', 'aria-labelledby': titleId, hidden: true },
      h('div', { class: 'details-head' }, this.detailsTitle,
        h('button', {
          type: 'button', class: 'btn-icon', 'aria-label': 'Close event details', 'data-testid': 'event-details-close',
          onclick: () => this.closeDetails(true),
        }, '×')),
      this.detailsBody);
    this.details.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') this.closeDetails(true);
    });
  }

  async load(filter, pageSize) {
    this.feed.stop();
    this.filter = filter && Object.keys(filter).length ? filter : null;
    this.pageSize = pageSize || 50;
    this.reset();
    await this.fetchPage(null);
    if (!this.destroyed && this.liveWanted && !this.feed.wanted) this.startLive();
  }

  reset() {
    this.gen += 1;
    this.tbody.replaceChildren();
    this.byPosition.clear();
    this.lastPosition = null;
    this.lastCursor = null;
    this.hasNextPage = false;
    this.loaded = false;
    this.liveCount = 0;
    this.unseen = 0;
    this.emptyRow = null;
    this.tabStop = false;
    this.trimmed = false;
    this.closeDetails(false);
    this.updateJump();
  }

  message(text) {
    if (this.emptyRow) this.emptyRow.remove();
    this.emptyRow = h('tr', { class: 'empty-row' }, h('td', { colspan: String(this.columns.length) }, text));
    this.tbody.append(this.emptyRow);
  }

  async fetchPage(after) {
    const gen = (this.gen += 1);
    this.loading = true;
    this.updateControls();
    if (!after) this.message('Loading events…');
    try {
      const data = await gql(AUDIT_QUERY, { filter: this.filter, first: this.pageSize, after });
      if (gen !== this.gen || this.destroyed) return;
      const conn = data.auditTrail;
      if (!after && conn.nodes.length === 0) this.message('No events match these filters.');
      for (const event of conn.nodes) this.append(event, false);
      this.hasNextPage = conn.pageInfo.hasNextPage;
      this.loaded = true;
      setStatus(`${this.opts.label}: loaded ${conn.nodes.length} event${conn.nodes.length === 1 ? '' : 's'}${this.hasNextPage ? '; more available' : ''}.`);
      if (!after) {
        this.scroller.scrollTop = 0;
        const el = this.scroller;
        this.following = el.scrollHeight - el.clientHeight < 32;
      }
    } catch (error) {
      if (gen !== this.gen) return;
      showError(error, `Loading ${this.opts.label.toLowerCase()}`);
      if (!after) this.message('Could not load events (see the error above).');
    } finally {
      if (gen === this.gen) {
        this.loading = false;
        this.updateControls();
      }
    }
  }

  loadMore() {
    if (this.loading || !this.lastCursor) return;
    this.fetchPage(this.lastCursor);
  }

  /** Appends one event row; returns it, or null for a position already shown. */
  append(event, live) {
    if (this.lastPosition !== null && comparePositions(event.position, this.lastPosition) <= 0) return null;
    if (this.emptyRow) {
      this.emptyRow.remove();
      this.emptyRow = null;
    }
    const actor = event.metadata && event.metadata.actor;
    const later = this.markAfter && event.recordedAt > this.markAfter;
    const tr = h('tr', {
      'data-testid': 'audit-row', 'data-position': event.position, 'data-type': event.type,
      'data-stream-id': event.streamId, 'data-live': live ? 'true' : null, tabindex: this.tabStop ? '-1' : '0',
      class: `${live ? 'new' : ''}${later ? ' later' : ''}`,
      title: later ? 'Recorded after the as-of time' : null,
    },
    this.columns.map((c) => this.cell(c, event, actor)));
    this.tbody.appendChild(tr);
    tr.setAttribute('data-shown-at', String(Date.now()));
    // The frame after the next one is painted with the row in it: when a person can see it.
    requestAnimationFrame(() => requestAnimationFrame(() => {
      tr.setAttribute('data-painted-at', String(Date.now()));
    }));
    this.tabStop = true;
    this.byPosition.set(event.position, event);
    this.lastPosition = event.position;
    this.lastCursor = event.cursor;
    return tr;
  }

  cell(column, event, actor) {
    switch (column) {
      case 'pos': return h('td', { class: 'num' }, event.position);
      case 'time': return h('td', {}, timeEl(event.recordedAt));
      case 'type': return h('td', {}, h('span', { class: `badge type-${typeCategory(event.type)}` }, event.type));
      case 'stream': return h('td', {}, titleCase(event.streamType));
      case 'id': return h('td', { class: 'mono', title: event.streamId }, event.streamId);
      default: return h('td', { class: 'c-actor' }, actor
        ? [h('span', { class: 'role' }, titleCase(actor.role)), ' ', h('span', { class: 'mono muted', title: actor.id }, shortId(actor.id))]
        : '—');
    }
  }

  onLiveEvent(event) {
    const tr = this.append(event, true);
    if (!tr) return;
    // Bounded DOM: past MAX_ROWS, the oldest rows go (the export still has everything).
    while (this.byPosition.size > MAX_ROWS) {
      const first = this.tbody.firstElementChild;
      if (!first || !first.dataset.position) break;
      this.byPosition.delete(first.dataset.position);
      const wasTabStop = first.tabIndex === 0;
      first.remove();
      if (wasTabStop) ensureTabStop(this.tbody);
      this.trimmed = true;
    }
    this.liveCount += 1;
    this.liveDetailEl.textContent = `last position ${event.position}`;
    if (this.following) this.scheduleScroll();
    else {
      this.unseen += 1;
      this.updateJump();
    }
    this.updateCount();
  }

  scheduleScroll() {
    if (this.scrollPending) return;
    this.scrollPending = true;
    requestAnimationFrame(() => {
      this.scrollPending = false;
      this.scroller.scrollTop = this.scroller.scrollHeight;
    });
  }

  jumpToLatest() {
    this.following = true;
    this.unseen = 0;
    this.updateJump();
    this.scroller.scrollTop = this.scroller.scrollHeight;
    const last = this.tbody.lastElementChild;
    if (last && last.dataset.position) last.focus({ preventScroll: true });
  }

  updateJump() {
    this.jumpBtn.hidden = this.unseen === 0;
    this.jumpBtn.textContent = `${this.unseen} new ↓`;
  }

  updateCount() {
    const n = this.byPosition.size;
    let text = `${n} event${n === 1 ? '' : 's'}`;
    if (this.liveCount) text += ` (${this.liveCount} live)`;
    if (this.trimmed) text += ` · only the latest ${MAX_ROWS} kept`;
    if (this.loading) text = this.loaded ? `${text} · loading…` : 'Loading…';
    else if (this.hasNextPage && !this.liveWanted) text += ' · more available';
    this.countEl.textContent = text;
  }

  updateControls() {
    this.moreBtn.hidden = !this.hasNextPage || this.liveWanted || !this.loaded;
    this.moreBtn.disabled = this.loading;
    this.updateCount();
  }

  setLive(on) {
    this.liveWanted = on;
    if (this.opts.livePref) prefs[this.opts.livePref] = on;
    this.liveToggle.setAttribute('aria-pressed', String(on));
    if (on) {
      if (!this.loading) this.startLive();
    } else {
      this.feed.stop();
      // Events may have committed since: let "Load more" look.
      if (this.loaded) this.hasNextPage = true;
    }
    this.updateControls();
  }

  startLive() {
    this.liveToggle.setAttribute('aria-pressed', 'true');
    this.following = true;
    this.scheduleScroll();
    this.feed.start();
  }

  showLiveState(state, detail) {
    this.liveStateEl.textContent = state;
    this.liveStateEl.dataset.state = state;
    this.liveDetailEl.textContent = detail || '';
    this.liveDetailEl.title = detail || '';
  }

  rowFromEvent(e) {
    const tr = e.target.closest('tr');
    return tr && tr.dataset.position ? tr : null;
  }

  onRowClick(e) {
    const tr = this.rowFromEvent(e);
    if (!tr || e.target.closest('a, button')) return;
    this.showDetails(tr.dataset.position);
  }

  onRowKey(e) {
    const tr = this.rowFromEvent(e);
    if (!tr || e.target !== tr) return;
    let next = null;
    switch (e.key) {
      case 'Enter':
      case ' ':
        e.preventDefault();
        this.showDetails(tr.dataset.position);
        return;
      case 'ArrowDown': next = tr.nextElementSibling; break;
      case 'ArrowUp': next = tr.previousElementSibling; break;
      case 'Home': next = this.tbody.querySelector('tr[data-position]'); break;
      case 'End': next = this.tbody.lastElementChild; break;
      case 'Escape': this.closeDetails(false); return;
      default: return;
    }
    if (next && next.dataset.position) {
      e.preventDefault();
      next.focus();
    }
  }

  rowFor(position) {
    return this.tbody.querySelector(`tr[data-position="${position}"]`);
  }

  showDetails(position) {
    const event = this.byPosition.get(position);
    if (!event) return;
    if (this.selected) {
      const prev = this.rowFor(this.selected);
      if (prev) {
        prev.classList.remove('selected');
        prev.removeAttribute('aria-current');
      }
    }
    const tr = this.rowFor(position);
    if (tr) {
      tr.classList.add('selected');
      tr.setAttribute('aria-current', 'true');
    }
    this.selected = position;
    const meta = event.metadata || {};
    const actor = meta.actor || {};
    const idLine = (id) => (id ? h('span', { class: 'mono' }, id) : h('span', { class: 'muted' }, '—'));
    const kv = (pairs) => h('dl', { class: 'kv' }, pairs.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v))));
    const actions = [];
    if (event.streamType === 'ENROLLMENT' && !this.opts.streamPage) {
      actions.push(h('a', { class: 'btn btn-small', href: `#/enrollment/${event.streamId}` }, 'Open enrollment'));
    }
    if (!this.opts.streamPage) {
      actions.push(h('a', { class: 'btn btn-small', href: `#/audit?streamId=${event.streamId}` }, 'Stream history'));
    }
    if (this.opts.onAsOf) {
      actions.push(h('button', {
        type: 'button', class: 'btn btn-small', 'data-testid': 'as-of-event',
        onclick: () => this.opts.onAsOf(event),
      }, 'State as of this event'));
    }
    this.detailsTitle.replaceChildren(h('span', { class: `badge type-${typeCategory(event.type)}` }, event.type), ` #${event.position}`);
    this.detailsBody.replaceChildren(
      kv([
        ['Recorded at', [timeEl(event.recordedAt), h('span', { class: 'muted small' }, ` (${TZ})`)]],
        ['Stream', [titleCase(event.streamType), ` · version ${event.version}`]],
        ['Stream id', idLine(event.streamId)],
        ['Actor', [actor.role ? titleCase(actor.role) : '—', ' ', idLine(actor.id)]],
      ]),
      actions.length ? h('div', { class: 'details-actions' }, actions) : null,
      h('h3', {}, 'data'),
      jsonView(event.data, 'event-data'),
      h('h3', {}, 'metadata'),
      jsonView(event.metadata, 'event-metadata'),
      h('h3', {}, 'envelope'),
      kv([
        ['Position', h('span', { class: 'mono' }, event.position)],
        ['Recorded at (UTC)', h('span', { class: 'mono' }, event.recordedAt)],
        ['Event id', idLine(event.eventId)],
        ['Schema version', String(event.schemaVersion)],
        ['Trainee', idLine(event.traineeId)],
        ['Course', idLine(event.courseId)],
        ['Correlation id', idLine(meta.correlationId)],
      ]),
    );
    this.details.hidden = false;
    this.details.dataset.position = position;
    this.el.classList.add('with-details');
  }

  closeDetails(returnFocus) {
    if (!this.details) return;
    const position = this.selected;
    this.details.hidden = true;
    this.el && this.el.classList.remove('with-details');
    if (position) {
      const tr = this.rowFor(position);
      if (tr) {
        tr.classList.remove('selected');
        tr.removeAttribute('aria-current');
        if (returnFocus) tr.focus();
      }
    }
    this.selected = null;
  }

  setMarkAfter(iso) {
    this.markAfter = iso;
    for (const tr of this.tbody.querySelectorAll('tr[data-position]')) {
      const event = this.byPosition.get(tr.dataset.position);
      const later = Boolean(iso && event && event.recordedAt > iso);
      tr.classList.toggle('later', later);
      if (later) tr.title = 'Recorded after the as-of time';
      else tr.removeAttribute('title');
    }
  }

  async exportCsv() {
    const f = this.filter || {};
    const params = new URLSearchParams();
    for (const key of ['traineeId', 'courseId', 'streamId', 'from', 'to']) if (f[key]) params.set(key, f[key]);
    if (f.eventTypes) params.set('eventTypes', f.eventTypes.map(storedEventName).join(','));
    params.set('format', 'csv');
    this.exportBtn.disabled = true;
    setStatus('Exporting events…');
    try {
      let response;
      try {
        response = await fetch(`/audit/export?${params}`, { headers: { Authorization: `Bearer ${getToken()}` }, credentials: 'omit' });
      } catch (error) {
        throw new ApiError([{ message: `Could not reach the server: ${error.message}`, code: 'NETWORK_ERROR' }], 0);
      }
      if (!response.ok) {
        const text = await response.text();
        let body = null;
        try {
          body = JSON.parse(text);
        } catch {
          body = null;
        }
        if (body && Array.isArray(body.errors)) throw new ApiError(body.errors.map(normaliseError), response.status);
        throw new ApiError([{ message: `HTTP ${response.status}${text ? `: ${text.slice(0, 300)}` : ''}`, code: `HTTP_${response.status}` }], response.status);
      }
      const blob = await response.blob();
      downloadBlob(`coursetrail-audit-${stamp()}.csv`, blob);
      setStatus('Export downloaded.');
    } catch (error) {
      showError(error, 'Exporting the audit trail');
      setStatus('Export failed.');
    } finally {
      this.exportBtn.disabled = false;
    }
  }

  destroy() {
    this.destroyed = true;
    this.gen += 1;
    this.feed.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Views. Each mount(main, params, match) returns {update?(params), destroy?()}.

function pageHeader(title, ...extra) {
  return h('div', { class: 'page-head' }, h('h1', { tabindex: '-1', class: 'page-title' }, title), ...extra);
}

function roleNotice(text) {
  return h('p', { class: 'notice', 'data-testid': 'role-notice' }, text);
}

// --- Sign-in ---------------------------------------------------------------------------------

function mountSignIn(main, params) {
  const next = params.get('next');
  const textarea = h('textarea', {
    id: uid('token'), 'data-testid': 'token-input', rows: '6', spellcheck: 'false', autocomplete: 'off',
    autocapitalize: 'off', required: true, placeholder: 'eyJhbGciOi…',
  });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'sign-in' }, 'Sign in');
  const form = h('form', { class: 'signin-form', novalidate: true },
    field('Access token (JWT)', textarea, 'Kept only in this browser tab (sessionStorage); closing the tab forgets it.'),
    h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const token = textarea.value.trim().replace(/^Bearer\s+/i, '');
    if (!token) {
      showError([{ message: 'Paste a token first.', code: 'BAD_USER_INPUT' }], 'Signing in');
      textarea.focus();
      return;
    }
    clearErrors();
    submit.disabled = true;
    setStatus('Signing in…');
    setToken(token);
    try {
      const me = await loadMe();
      setStatus(`Signed in as ${titleCase(me.role)}.`);
      navigate(next && next.startsWith('/') && !next.startsWith('/signin') ? next : defaultPath(me.role));
    } catch (error) {
      setToken(null);
      renderSession();
      showError(error, 'Signing in');
      setStatus('Sign-in failed.');
      submit.disabled = false;
    }
  });

  const current = session.me
    ? h('div', { class: 'card signed-in', 'data-testid': 'signed-in' },
      h('p', {}, 'You are signed in as ', h('strong', {}, whoText(session.me)), '.'),
      h('div', { class: 'actions' },
        h('a', { class: 'btn btn-primary', href: `#${defaultPath(session.me.role)}` }, 'Continue'),
        h('button', { type: 'button', class: 'btn', onclick: signOut }, 'Sign out')),
      h('p', { class: 'hint' }, 'Or paste another token below to switch.'))
    : null;

  main.append(h('div', { class: 'signin' },
    h('div', { class: 'card signin-card' },
      pageHeader('Sign in to the coursetrail console'),
      h('p', { class: 'lead' }, 'The console speaks the public GraphQL API with a bearer token; it can do exactly what the token’s role allows.'),
      current,
      form),
    h('section', { class: 'card help', 'aria-labelledby': 'help-title' },
      h('h2', { id: 'help-title' }, 'Where do I get a token?'),
      h('p', {}, 'In development, the server prints an ', h('strong', {}, 'admin token'), ' on start-up (on stderr, next to the GraphiQL address): paste the part after ', h('code', {}, 'Bearer '), ', or open the printed console link (', h('code', {}, '/console/#token=…'), '), which signs you in directly and drops the token from the address.'),
      h('p', {}, 'Tokens for other roles are minted on the command line, with the same data directory:'),
      h('pre', { class: 'cmd', tabindex: '0' }, 'coursetrail token --tenant <tenant id> --role instructor --sub <uuid> --ttl 8h\ncoursetrail token --tenant <tenant id> --role trainee --sub <trainee id> --ttl 8h'),
      h('p', {}, h('strong', {}, 'Admins'), ' see everything in their tenant; ', h('strong', {}, 'instructors'), ' see courses, enrollments, reports and course events; ', h('strong', {}, 'trainees'), ' see only their own enrollments and history.'))));
  textarea.focus();
  return {};
}

// --- Audit trail -----------------------------------------------------------------------------

function auditFilterFromParams(params) {
  const filter = {};
  for (const key of ['traineeId', 'courseId', 'streamId']) {
    const v = (params.get(key) || '').trim();
    if (v) filter[key] = v;
  }
  const types = (params.get('types') || '').split(',').filter((t) => EVENT_TYPES.includes(t));
  if (types.length) filter.eventTypes = types;
  if (params.get('from')) filter.from = params.get('from');
  if (params.get('to')) filter.to = params.get('to');
  return filter;
}

function mountAudit(main, params) {
  const role = session.me.role;
  const trainee = role === 'TRAINEE';
  const uuidInput = (testid, listId) => h('input', {
    type: 'text', 'data-testid': testid, pattern: UUID_PATTERN, placeholder: 'any', autocomplete: 'off',
    spellcheck: 'false', list: listId, title: 'A UUID', class: 'mono-input',
  });
  const traineeList = h('datalist', { id: uid('trainees') });
  const courseList = h('datalist', { id: uid('courses') });
  const inputs = {
    traineeId: uuidInput('filter-trainee', traineeList.id),
    courseId: uuidInput('filter-course', courseList.id),
    streamId: uuidInput('filter-stream', null),
    from: h('input', { type: 'datetime-local', step: '1', 'data-testid': 'filter-from' }),
    to: h('input', { type: 'datetime-local', step: '1', 'data-testid': 'filter-to' }),
    first: select([['25', '25'], ['50', '50'], ['100', '100']], { 'data-testid': 'filter-page-size' }),
  };
  const typeBoxes = EVENT_TYPES.map((t) => h('input', { type: 'checkbox', value: t, 'data-testid': 'filter-event-type', name: 'eventTypes' }));
  const typesSummary = h('span', { class: 'summary-value' }, 'all');
  const typesDetails = h('details', { class: 'multi' },
    h('summary', { 'data-testid': 'filter-event-types' }, 'Event types: ', typesSummary),
    h('fieldset', {}, h('legend', { class: 'sr-only' }, 'Event types to show'),
      h('div', { class: 'checks' }, typeBoxes.map((cb) => h('label', { class: 'check' }, cb, h('span', { class: 'mono' }, cb.value)))),
      h('div', { class: 'check-actions' },
        h('button', { type: 'button', class: 'btn btn-small', onclick: () => { typeBoxes.forEach((cb) => { cb.checked = true; }); syncTypes(); } }, 'All'),
        h('button', { type: 'button', class: 'btn btn-small', onclick: () => { typeBoxes.forEach((cb) => { cb.checked = false; }); syncTypes(); } }, 'None (= all)'))));
  const syncTypes = () => {
    const n = typeBoxes.filter((cb) => cb.checked).length;
    typesSummary.textContent = n === 0 || n === EVENT_TYPES.length ? 'all' : `${n} selected`;
  };
  typeBoxes.forEach((cb) => cb.addEventListener('change', syncTypes));

  const form = h('form', { class: 'filters card', 'aria-label': 'Audit filters' },
    h('div', { class: 'filter-grid' },
      trainee ? null : field('Trainee id', inputs.traineeId),
      field('Course id', inputs.courseId),
      field('Stream id', inputs.streamId),
      field('From (recorded at or after)', inputs.from, null, 'time'),
      field('To (recorded before)', inputs.to, null, 'time'),
      field('Page size', inputs.first, null, 'narrow')),
    h('div', { class: 'filter-row' }, typesDetails,
      h('span', { class: 'hint' }, `Times are local (${TZ}).`),
      h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'btn', 'data-testid': 'filter-reset', onclick: () => navigate('/audit') }, 'Reset'),
      h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'filter-apply' }, 'Apply filters')),
    traineeList, courseList);

  const panel = new AuditPanel({ label: trainee ? 'My history' : 'Audit trail', fill: true, livePref: 'auditLive' });

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!form.reportValidity()) return;
    const p = new URLSearchParams();
    for (const key of ['traineeId', 'courseId', 'streamId']) {
      if (inputs[key] && inputs[key].value.trim()) p.set(key, inputs[key].value.trim());
    }
    const types = typeBoxes.filter((cb) => cb.checked).map((cb) => cb.value);
    if (types.length && types.length < EVENT_TYPES.length) p.set('types', types.join(','));
    const from = fromLocalInput(inputs.from.value);
    const to = fromLocalInput(inputs.to.value);
    if (from) p.set('from', from);
    if (to) p.set('to', to);
    if (inputs.first.value !== '50') p.set('first', inputs.first.value);
    navigate(`/audit${p.toString() ? `?${p}` : ''}`, true);
  });

  main.append(h('div', { class: 'view audit-view' },
    pageHeader(trainee ? 'My history' : 'Audit trail',
      h('p', { class: 'page-sub' }, trainee
        ? 'Every event about you and your enrollments, in the order they were recorded.'
        : role === 'INSTRUCTOR'
          ? 'Events about courses and their enrollments, in commit order.'
          : 'Every event of the tenant, in commit (position) order.')),
    form, panel.el));

  if (!trainee) fillDatalist(traineeList, loadTrainees, (t) => `${t.name} <${t.email}>`, 'Loading trainees');
  fillDatalist(courseList, loadCourses, courseLabel, 'Loading courses');

  function update(p) {
    for (const key of ['traineeId', 'courseId', 'streamId']) if (inputs[key]) inputs[key].value = p.get(key) || '';
    inputs.from.value = toLocalInput(p.get('from'));
    inputs.to.value = toLocalInput(p.get('to'));
    inputs.first.value = ['25', '50', '100'].includes(p.get('first')) ? p.get('first') : '50';
    const types = (p.get('types') || '').split(',');
    typeBoxes.forEach((cb) => { cb.checked = types.includes(cb.value); });
    syncTypes();
    const filter = auditFilterFromParams(p);
    if (trainee) delete filter.traineeId;
    if (p.get('live') === '1' && !panel.liveWanted) {
      panel.liveWanted = true;
      prefs.auditLive = true;
      panel.liveToggle.setAttribute('aria-pressed', 'true');
    }
    panel.load(filter, Number(inputs.first.value));
  }
  update(params);
  return { update, destroy: () => panel.destroy() };
}

// --- Reports ---------------------------------------------------------------------------------

/** A <details> with one checkbox per course; get() → ids (empty = all). */
function courseChooser(testid) {
  const summaryValue = h('span', { class: 'summary-value' }, 'all');
  const list = h('div', { class: 'checks courses' }, h('span', { class: 'muted' }, 'Loading courses…'));
  let pending = [];
  let boxes = [];
  const sync = () => {
    const n = boxes.filter((cb) => cb.checked).length;
    summaryValue.textContent = n === 0 ? 'all' : `${n} selected`;
  };
  const el = h('details', { class: 'multi' },
    h('summary', { 'data-testid': testid }, 'Courses: ', summaryValue),
    h('fieldset', {}, h('legend', { class: 'sr-only' }, 'Courses to include (none checked = all)'), list));
  loadCourses().then((courses) => {
    boxes = courses.map((c) => h('input', { type: 'checkbox', value: c.id, 'data-testid': `${testid}-option`, checked: pending.includes(c.id) }));
    boxes.forEach((cb) => cb.addEventListener('change', sync));
    list.replaceChildren(...(courses.length
      ? courses.map((c, i) => h('label', { class: 'check' }, boxes[i], h('span', {}, courseLabel(c))))
      : [h('span', { class: 'muted' }, 'No courses yet.')]));
    sync();
  }).catch((error) => {
    list.replaceChildren(h('span', { class: 'muted' }, 'Courses could not be loaded.'));
    showError(error, 'Loading courses');
  });
  return {
    el,
    get: () => (boxes.length ? boxes.filter((cb) => cb.checked).map((cb) => cb.value) : pending),
    set: (ids) => {
      pending = ids;
      boxes.forEach((cb) => { cb.checked = ids.includes(cb.value); });
      sync();
    },
  };
}

function reportMeta(report, extra) {
  return h('div', {
    class: 'report-meta', 'data-testid': 'report-meta', 'data-as-of': report.asOf,
    'data-position': report.position, 'data-events-replayed': report.eventsReplayed,
  },
  h('span', {}, 'As of ', h('strong', {}, timeEl(report.asOf))),
  h('span', {}, 'log position ', h('strong', { class: 'mono' }, report.position)),
  h('span', {}, h('strong', { class: 'mono' }, report.eventsReplayed), ' events replayed'),
  h('span', { class: 'spacer' }), extra);
}

/** Shared runner: one query at a time, cancellable, with a visible state. */
function reportRunner(resultEl, submit, cancel) {
  let controller = null;
  return {
    async run(query, variables, render, context) {
      if (controller) controller.abort();
      controller = new AbortController();
      const mine = controller;
      submit.disabled = true;
      cancel.hidden = false;
      resultEl.setAttribute('aria-busy', 'true');
      resultEl.replaceChildren(h('p', { class: 'loading', 'data-testid': 'report-loading' }, 'Running the report (it replays the event log)…'));
      setStatus('Running report…');
      const started = performance.now();
      try {
        const data = await gql(query, variables, { signal: mine.signal });
        if (mine !== controller) return;
        render(data);
        setStatus(`Report ready in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
      } catch (error) {
        if (mine !== controller) return;
        if (error.name === 'AbortError') {
          resultEl.replaceChildren(h('p', { class: 'muted' }, 'Report cancelled.'));
          setStatus('Report cancelled.');
        } else {
          resultEl.replaceChildren(h('p', { class: 'muted' }, 'The report failed (see the error above).'));
          showError(error, context);
          setStatus('Report failed.');
        }
      } finally {
        if (mine === controller) {
          controller = null;
          submit.disabled = false;
          cancel.hidden = true;
          resultEl.removeAttribute('aria-busy');
        }
      }
    },
    abort() {
      if (controller) controller.abort();
    },
  };
}

const DURATION_QUERY = `query Duration($input: DurationReportInput!) {
  durationReport(input: $input) {
    asOf position eventsReplayed
    rows {
      group count stillOpen endedEarly
      course { id code title }
      durations { count meanSeconds medianSeconds p75Seconds p90Seconds minSeconds maxSeconds }
    }
  }
}`;

const FUNNEL_QUERY = `query Funnel($input: FunnelReportInput!) {
  funnelReport(input: $input) {
    asOf position eventsReplayed
    rows {
      courseId course { id code title }
      registered started submitted passed completed withdrawn
      startRate submissionRate passRate completionRate overallRate
      meanAttemptsToPass medianAttemptsToPass firstAttemptPassRate
    }
  }
}`;

function mountReports(main, params, match) {
  const tab = match[1] || 'duration';
  const staff = STAFF.includes(session.me.role);
  const tabs = h('nav', { class: 'tabs', 'aria-label': 'Reports' },
    [['duration', 'Durations'], ['funnel', 'Funnel']].map(([key, text]) => h('a', {
      href: `#/reports/${key}`, class: `tab${key === tab ? ' active' : ''}`, 'aria-current': key === tab ? 'page' : null,
      'data-testid': `tab-${key}`,
    }, text)));
  const view = h('div', { class: 'view reports-view' },
    pageHeader('Reports', h('p', { class: 'page-sub' }, 'Replayed from the event log, so they can describe any past moment (“as of”).')),
    staff ? null : roleNotice('Reports are for admins and instructors; the server will refuse them for your role.'),
    tabs);
  main.append(view);
  return tab === 'funnel' ? mountFunnel(view, params) : mountDuration(view, params);
}

function reportFormParts(testidPrefix) {
  const asOf = h('input', { type: 'datetime-local', step: '1', 'data-testid': `${testidPrefix}-as-of` });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'report-submit' }, 'Run report');
  const cancel = h('button', { type: 'button', class: 'btn', hidden: true, 'data-testid': 'report-cancel' }, 'Cancel');
  const csv = h('button', { type: 'button', class: 'btn', disabled: true, 'data-testid': 'csv-download' }, 'Download CSV');
  const courses = courseChooser(`${testidPrefix}-courses`);
  return { asOf, submit, cancel, csv, courses };
}

function mountDuration(view, params) {
  const from = select(LIFECYCLE_POINTS, { 'data-testid': 'duration-from' });
  const to = select(LIFECYCLE_POINTS, { 'data-testid': 'duration-to' });
  const groupBy = select(GROUPINGS, { 'data-testid': 'duration-group-by' });
  const { asOf, submit, cancel, csv, courses } = reportFormParts('duration');
  const form = h('form', { class: 'card report-form', 'aria-label': 'Duration report' },
    h('div', { class: 'filter-grid' },
      field('From (lifecycle point)', from),
      field('To (lifecycle point)', to),
      field('Group by', groupBy),
      field(`As of (empty = now; ${TZ})`, asOf, null, 'time')),
    h('div', { class: 'filter-row' }, courses.el, h('span', { class: 'spacer' }), cancel, submit, csv));
  const result = h('div', { class: 'report-result', 'data-testid': 'duration-result' },
    h('p', { class: 'muted empty-state' }, 'Choose two lifecycle points and run the report: how long enrollments took between them, per course, cohort month or overall.'));
  view.append(form, result);
  const runner = reportRunner(result, submit, cancel);
  cancel.addEventListener('click', () => runner.abort());
  let shown = null;

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const p = new URLSearchParams({ from: from.value, to: to.value, groupBy: groupBy.value });
    const at = fromLocalInput(asOf.value);
    if (at) p.set('asOf', at);
    const ids = courses.get();
    if (ids.length) p.set('courses', ids.join(','));
    navigate(`/reports/duration?${p}`, true);
  });

  csv.addEventListener('click', () => {
    if (!shown) return;
    const { report, groupByValue, input } = shown;
    const rows = [['group', 'courseCode', 'courseTitle', 'count', 'stillOpen', 'endedEarly', 'minSeconds', 'medianSeconds', 'meanSeconds', 'p75Seconds', 'p90Seconds', 'maxSeconds', 'from', 'to', 'groupBy', 'asOf', 'position']];
    for (const r of report.rows) {
      const d = r.durations || {};
      rows.push([r.group, r.course?.code, r.course?.title, r.count, r.stillOpen, r.endedEarly, d.minSeconds, d.medianSeconds, d.meanSeconds, d.p75Seconds, d.p90Seconds, d.maxSeconds, input.from, input.to, groupByValue, report.asOf, report.position]);
    }
    downloadCsv(`coursetrail-durations-${input.from.toLowerCase()}-${input.to.toLowerCase()}-${stamp()}.csv`, rows);
  });

  function render(report, input) {
    shown = { report, groupByValue: input.groupBy, input };
    csv.disabled = false;
    const label = (x) => LIFECYCLE_POINTS.find(([v]) => v === x)?.[1] || x;
    const scale = durationScale(Math.max(0, ...report.rows.map((r) => (r.durations ? r.durations.maxSeconds : 0))));
    const legend = h('div', { class: 'legend', 'aria-hidden': 'true' },
      h('span', {}, swatch('whisker', 'line'), 'min – max'),
      h('span', {}, swatch('box-a'), 'median – 75th pct'),
      h('span', {}, swatch('box-b'), '75th – 90th pct'),
      h('span', {}, swatch('median', 'vline'), 'median'),
      h('span', {}, swatch('mean', 'diamond'), 'mean'),
      h('span', { class: 'legend-sep' }),
      h('span', {}, swatch('seg-count'), 'reached both'),
      h('span', {}, swatch('seg-open'), 'still open'),
      h('span', {}, swatch('seg-early'), 'ended early'));
    const groups = report.rows.map((r) => durationGroup(r, scale, input.groupBy));
    result.replaceChildren(
      reportMeta(report, h('span', {}, h('strong', {}, label(input.from)), ' → ', h('strong', {}, label(input.to)))),
      legend,
      groups.length
        ? h('div', { class: 'group-grid' }, groups)
        : h('p', { class: 'muted empty-state', 'data-testid': 'report-empty' }, 'No enrollment reached the “from” point yet.'),
    );
  }

  function update(p) {
    if (p.get('from')) from.value = p.get('from');
    else from.value = 'STARTED';
    to.value = p.get('to') || 'COMPLETED';
    groupBy.value = p.get('groupBy') || 'COURSE';
    asOf.value = toLocalInput(p.get('asOf'));
    courses.set((p.get('courses') || '').split(',').filter(Boolean));
    if (!p.get('from')) return;
    const input = { from: from.value, to: to.value, groupBy: groupBy.value };
    if (p.get('asOf')) input.asOf = p.get('asOf');
    const ids = (p.get('courses') || '').split(',').filter(Boolean);
    if (ids.length) input.courseIds = ids;
    runner.run(DURATION_QUERY, { input }, (data) => render(data.durationReport, input), 'Duration report');
  }
  update(params);
  return { update, destroy: () => runner.abort() };
}

function groupTitle(row, groupBy) {
  if (row.course) return [row.course.code, row.course.title];
  if (row.group === 'all' || groupBy === 'NONE') return ['All enrollments', ''];
  const m = /^(\d{4})-(\d{2})$/.exec(row.group);
  if (m) {
    const month = new Date(Number(m[1]), Number(m[2]) - 1, 1).toLocaleString('en', { month: 'long', year: 'numeric' });
    return [`Cohort ${row.group}`, month];
  }
  return [row.group, groupBy === 'COURSE' ? 'course' : ''];
}

function durationGroup(row, scale, groupBy) {
  const d = row.durations;
  const [title, sub] = groupTitle(row, groupBy);
  const stat = (key, label, value, kind) => h('div', { class: `stat stat-${kind}` },
    h('dt', {}, label),
    h('dd', {
      'data-stat': key, 'data-value': value ?? '',
      title: kind === 'dur' && value != null ? `${value} s` : null,
    }, kind === 'dur' ? fmtDuration(value) : String(value ?? '—')));
  return h('article', {
    class: 'card group', 'data-testid': 'duration-group', 'data-group': row.group,
    'data-course-code': row.course?.code,
  },
  h('header', { class: 'group-head' }, h('h3', {}, title), sub ? h('span', { class: 'muted' }, sub) : null),
  d ? durationBoxPlot(d, scale, { label: title }) : emptyPlot('No enrollment reached both points'),
  outcomeBar(row),
  h('dl', { class: 'stats' },
    stat('count', 'Reached both', row.count, 'int'),
    stat('stillOpen', 'Still open', row.stillOpen, 'int'),
    stat('endedEarly', 'Ended early', row.endedEarly, 'int'),
    stat('min', 'Min', d?.minSeconds, 'dur'),
    stat('median', 'Median', d?.medianSeconds, 'dur'),
    stat('mean', 'Mean', d?.meanSeconds, 'dur'),
    stat('p75', '75th percentile', d?.p75Seconds, 'dur'),
    stat('p90', '90th percentile', d?.p90Seconds, 'dur'),
    stat('max', 'Max', d?.maxSeconds, 'dur')));
}

function mountFunnel(view, params) {
  const { asOf, submit, cancel, csv, courses } = reportFormParts('funnel');
  const form = h('form', { class: 'card report-form', 'aria-label': 'Funnel report' },
    h('div', { class: 'filter-row' },
      field(`As of (empty = now; ${TZ})`, asOf, null, 'time'),
      courses.el, h('span', { class: 'spacer' }), cancel, submit, csv));
  const result = h('div', { class: 'report-result', 'data-testid': 'funnel-result' },
    h('p', { class: 'muted empty-state' }, 'Run the report: per course, how many enrollments reached each lifecycle point.'));
  view.append(form, result);
  const runner = reportRunner(result, submit, cancel);
  cancel.addEventListener('click', () => runner.abort());
  let shown = null;

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const p = new URLSearchParams({ run: '1' });
    const at = fromLocalInput(asOf.value);
    if (at) p.set('asOf', at);
    const ids = courses.get();
    if (ids.length) p.set('courses', ids.join(','));
    navigate(`/reports/funnel?${p}`, true);
  });

  const FIELDS = ['registered', 'started', 'submitted', 'passed', 'completed', 'withdrawn', 'startRate', 'submissionRate', 'passRate', 'completionRate', 'overallRate', 'meanAttemptsToPass', 'medianAttemptsToPass', 'firstAttemptPassRate'];
  csv.addEventListener('click', () => {
    if (!shown) return;
    const rows = [['courseId', 'courseCode', 'courseTitle', ...FIELDS, 'asOf', 'position']];
    for (const r of shown.rows) rows.push([r.courseId, r.course?.code, r.course?.title, ...FIELDS.map((f) => r[f]), shown.asOf, shown.position]);
    downloadCsv(`coursetrail-funnel-${stamp()}.csv`, rows);
  });

  function render(report) {
    shown = report;
    csv.disabled = false;
    const legend = h('div', { class: 'legend', 'aria-hidden': 'true' },
      h('span', {}, swatch('bar stage'), 'lifecycle point reached'),
      h('span', {}, swatch('bar done'), 'completed'),
      h('span', {}, swatch('bar withdrawn'), 'withdrawn'));
    result.replaceChildren(
      reportMeta(report),
      legend,
      report.rows.length
        ? h('div', { class: 'group-grid' }, report.rows.map(funnelCourse))
        : h('p', { class: 'muted empty-state', 'data-testid': 'report-empty' }, 'No enrollments yet.'),
    );
  }

  function update(p) {
    asOf.value = toLocalInput(p.get('asOf'));
    const ids = (p.get('courses') || '').split(',').filter(Boolean);
    courses.set(ids);
    if (![...p.keys()].length) return;
    const input = { courseIds: ids.length ? ids : null, asOf: p.get('asOf') || null };
    runner.run(FUNNEL_QUERY, { input }, (data) => render(data.funnelReport), 'Funnel report');
  }
  update(params);
  return { update, destroy: () => runner.abort() };
}

function funnelCourse(row) {
  const title = row.course ? row.course.code : shortId(row.courseId);
  const stages = [
    { key: 'registered', label: 'Registered', value: row.registered, cls: 'stage' },
    { key: 'started', label: 'Started', value: row.started, cls: 'stage' },
    { key: 'submitted', label: 'Submitted a test', value: row.submitted, cls: 'stage' },
    { key: 'passed', label: 'Passed', value: row.passed, cls: 'stage' },
    { key: 'completed', label: 'Completed', value: row.completed, cls: 'done' },
    { key: 'withdrawn', label: 'Withdrawn', value: row.withdrawn, cls: 'withdrawn' },
  ];
  const stat = (key, label, value, kind) => h('div', { class: 'stat' },
    h('dt', {}, label),
    h('dd', { 'data-stat': key, 'data-value': value ?? '' },
      kind === 'pct' ? fmtPct(value) : kind === 'num' ? fmtNum(value) : String(value ?? '—')));
  return h('article', {
    class: 'card group funnel', 'data-testid': 'funnel-course', 'data-course-id': row.courseId,
    'data-course-code': row.course?.code,
  },
  h('header', { class: 'group-head' }, h('h3', {}, title), row.course ? h('span', { class: 'muted' }, row.course.title) : null),
  barChart(stages, { label: `Funnel of ${title}` }),
  h('dl', { class: 'stats rates' },
    stat('startRate', 'Start rate (started / registered)', row.startRate, 'pct'),
    stat('submissionRate', 'Submission rate (submitted / started)', row.submissionRate, 'pct'),
    stat('passRate', 'Pass rate (passed / submitted)', row.passRate, 'pct'),
    stat('completionRate', 'Completion rate (completed / passed)', row.completionRate, 'pct'),
    stat('overallRate', 'Overall (completed / registered)', row.overallRate, 'pct'),
    stat('firstAttemptPassRate', 'First-attempt pass rate', row.firstAttemptPassRate, 'pct'),
    stat('meanAttemptsToPass', 'Mean attempts to pass', row.meanAttemptsToPass, 'num'),
    stat('medianAttemptsToPass', 'Median attempts to pass', row.medianAttemptsToPass, 'num')));
}

// --- Enrollments -----------------------------------------------------------------------------

const ENROLLMENT_FIELDS = `id courseId traineeId status registeredAt startedAt completedAt withdrawnAt
  submissionCount bestScore passedAt updatedAt version
  course { id code title passingScore }
  trainee { id name email }`;
const ENROLLMENTS_QUERY = `query Enrollments($courseId: UUID, $traineeId: UUID, $status: EnrollmentStatus, $first: Int, $after: String) {
  enrollments(courseId: $courseId, traineeId: $traineeId, status: $status, first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes { ${ENROLLMENT_FIELDS} }
  }
}`;
const ENROLLMENT_QUERY = `query Enrollment($id: UUID!, $asOf: DateTime) {
  enrollment(id: $id, asOf: $asOf) {
    ${ENROLLMENT_FIELDS}
    withdrawalReason
    submissions { id submittedAt score passed gradedAt }
  }
}`;

function mountEnrollments(main, params) {
  const role = session.me.role;
  const trainee = role === 'TRAINEE';
  const course = h('select', { 'data-testid': 'enrollment-filter-course' }, h('option', { value: '' }, 'All courses'));
  const traineeList = h('datalist', { id: uid('trainees') });
  const traineeInput = h('input', {
    type: 'text', 'data-testid': 'enrollment-filter-trainee', pattern: UUID_PATTERN, placeholder: 'any',
    list: traineeList.id, autocomplete: 'off', spellcheck: 'false', class: 'mono-input', title: 'A trainee id (UUID)',
  });
  const status = select([['', 'Any status'], ...STATUSES.map((s) => [s, titleCase(s)])], { 'data-testid': 'enrollment-filter-status' });
  const search = h('input', { type: 'search', 'data-testid': 'enrollment-search', placeholder: 'course, trainee, id…', autocomplete: 'off' });
  const form = h('form', { class: 'filters card', 'aria-label': 'Enrollment filters' },
    h('div', { class: 'filter-grid' },
      field('Course', course),
      trainee ? null : field('Trainee id', traineeInput),
      field('Status', status, null, 'narrow'),
      h('div', { class: 'field actions-field' }, h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'enrollment-apply' }, 'Apply')),
      field('Search what is loaded', search, null, 'search')),
    traineeList);

  const countEl = h('span', { class: 'count', 'data-testid': 'enrollment-count' }, '');
  const summary = h('span', { class: 'status-summary' });
  const tbody = h('tbody');
  const table = h('table', { class: 'data enrollments-table' },
    h('caption', { class: 'sr-only' }, 'Enrollments. Press Enter on a row to open it.'),
    h('thead', {}, h('tr', {}, ['Id', 'Course', 'Trainee', 'Status', 'Registered', 'Started', 'Ended', 'Tests', 'Best score', 'Last change']
      .map((c) => h('th', { scope: 'col' }, c)))),
    tbody);
  const more = h('button', { type: 'button', class: 'btn', hidden: true, 'data-testid': 'load-more' }, 'Load more');
  main.append(h('div', { class: 'view enrollments-view' },
    pageHeader(trainee ? 'My enrollments' : 'Enrollments'),
    form,
    h('section', { class: 'card table-card', 'aria-label': 'Enrollment list' },
      h('div', { class: 'panel-toolbar' }, countEl, h('span', { class: 'spacer' }), summary),
      h('div', { class: 'table-scroll' }, table),
      h('div', { class: 'table-foot' }, more))));

  loadCourses().then((courses) => {
    const selected = course.value || pendingCourse;
    course.replaceChildren(h('option', { value: '' }, 'All courses'), ...courses.map((c) => h('option', { value: c.id }, courseLabel(c))));
    course.value = selected;
  }).catch((error) => showError(error, 'Loading courses'));
  if (!trainee) fillDatalist(traineeList, loadTrainees, (t) => `${t.name} <${t.email}>`, 'Loading trainees');

  let items = [];
  let cursor = null;
  let gen = 0;
  let variables = {};
  let pendingCourse = '';

  const matches = (e, q) => !q || [e.id, e.status, e.course?.code, e.course?.title, e.trainee?.name, e.trainee?.email, e.traineeId, e.courseId]
    .some((v) => v && String(v).toLowerCase().includes(q));

  function applySearch() {
    const q = search.value.trim().toLowerCase();
    let shownCount = 0;
    const byStatus = {};
    for (const tr of tbody.querySelectorAll('tr[data-enrollment-id]')) {
      const e = tr.enrollment;
      const ok = matches(e, q);
      tr.hidden = !ok;
      if (ok) {
        shownCount += 1;
        byStatus[e.status] = (byStatus[e.status] || 0) + 1;
      }
    }
    countEl.textContent = q
      ? `${shownCount} of ${items.length} loaded enrollments match “${search.value.trim()}”`
      : `${items.length} enrollment${items.length === 1 ? '' : 's'}${cursor ? ' · more available' : ''}`;
    ensureTabStop(tbody);
    summary.replaceChildren(...STATUSES.filter((s) => byStatus[s]).map((s) => h('span', { class: 'summary-chip' }, statusBadge(s), ` ${byStatus[s]}`)));
    if (!items.length && !tbody.querySelector('.empty-row')) {
      tbody.append(h('tr', { class: 'empty-row' }, h('td', { colspan: '10' }, 'No enrollments match these filters.')));
    }
  }

  function row(e) {
    const ended = e.completedAt || e.withdrawnAt;
    const tr = h('tr', { 'data-testid': 'enrollment-row', 'data-enrollment-id': e.id, 'data-status': e.status, tabindex: '-1' },
      h('td', {}, h('a', { href: `#/enrollment/${e.id}`, tabindex: '-1', class: 'mono', title: e.id }, shortId(e.id))),
      h('td', {}, e.course ? [h('strong', {}, e.course.code), h('div', { class: 'muted small' }, e.course.title)] : h('span', { class: 'mono' }, shortId(e.courseId))),
      h('td', {}, e.trainee ? [e.trainee.name, h('div', { class: 'muted small' }, e.trainee.email)] : h('span', { class: 'mono' }, shortId(e.traineeId))),
      h('td', {}, statusBadge(e.status)),
      h('td', {}, timeEl(e.registeredAt, true)),
      h('td', {}, timeEl(e.startedAt, true)),
      h('td', {}, timeEl(ended, true)),
      h('td', { class: 'num' }, String(e.submissionCount)),
      h('td', { class: 'num' }, e.bestScore == null ? '—' : String(e.bestScore)),
      h('td', {}, timeEl(e.updatedAt, true)));
    tr.enrollment = e;
    return tr;
  }

  rovingRows(tbody);
  const open = (tr) => navigate(`/enrollment/${tr.dataset.enrollmentId}`);
  tbody.addEventListener('click', (e) => {
    const tr = e.target.closest('tr[data-enrollment-id]');
    if (tr && !e.target.closest('a')) open(tr);
  });
  tbody.addEventListener('keydown', (e) => {
    const tr = e.target.closest('tr[data-enrollment-id]');
    if (!tr || e.target !== tr) return;
    const visibleSibling = (start, dir) => {
      let n = start[dir];
      while (n && n.hidden) n = n[dir];
      return n;
    };
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      open(tr);
    } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      const next = visibleSibling(tr, e.key === 'ArrowDown' ? 'nextElementSibling' : 'previousElementSibling');
      if (next && next.dataset.enrollmentId) {
        e.preventDefault();
        next.focus();
      }
    }
  });

  async function fetchPage(after) {
    const mine = (gen += 1);
    more.disabled = true;
    if (!after) {
      tbody.replaceChildren(h('tr', { class: 'empty-row' }, h('td', { colspan: '10' }, 'Loading enrollments…')));
      countEl.textContent = 'Loading…';
    }
    try {
      const data = await gql(ENROLLMENTS_QUERY, { ...variables, first: 100, after });
      if (mine !== gen) return;
      const conn = data.enrollments;
      if (!after) {
        tbody.replaceChildren();
        items = [];
      }
      items.push(...conn.nodes);
      for (const e of conn.nodes) tbody.append(row(e));
      cursor = conn.pageInfo.hasNextPage ? conn.pageInfo.endCursor : null;
      more.hidden = !cursor;
      applySearch();
      setStatus(`Loaded ${items.length} enrollment${items.length === 1 ? '' : 's'}.`);
    } catch (error) {
      if (mine !== gen) return;
      showError(error, 'Loading enrollments');
      if (!after) {
        tbody.replaceChildren(h('tr', { class: 'empty-row' }, h('td', { colspan: '10' }, 'Could not load enrollments (see the error above).')));
        countEl.textContent = '';
      }
    } finally {
      if (mine === gen) more.disabled = false;
    }
  }
  more.addEventListener('click', () => cursor && fetchPage(cursor));

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!form.reportValidity()) return;
    const p = new URLSearchParams();
    if (course.value) p.set('courseId', course.value);
    if (!trainee && traineeInput.value.trim()) p.set('traineeId', traineeInput.value.trim());
    if (status.value) p.set('status', status.value);
    if (search.value.trim()) p.set('q', search.value.trim());
    navigate(`/enrollments${p.toString() ? `?${p}` : ''}`, true);
  });
  search.addEventListener('input', () => {
    applySearch();
    // Keep the search in the address without re-querying.
    const { path, params: p } = parseHash();
    if (search.value.trim()) p.set('q', search.value.trim());
    else p.delete('q');
    history.replaceState(null, '', `#${path}${p.toString() ? `?${p}` : ''}`);
  });

  function update(p) {
    pendingCourse = p.get('courseId') || '';
    course.value = pendingCourse;
    traineeInput.value = p.get('traineeId') || '';
    status.value = STATUSES.includes(p.get('status')) ? p.get('status') : '';
    search.value = p.get('q') || '';
    variables = {
      courseId: pendingCourse || null,
      traineeId: (!trainee && p.get('traineeId')) || null,
      status: status.value || null,
    };
    fetchPage(null);
  }
  update(params);
  return { update, destroy: () => { gen += 1; } };
}

// --- One enrollment --------------------------------------------------------------------------

function mountEnrollment(main, params, match) {
  const id = decodeURIComponent(match[1]);
  const staff = STAFF.includes(session.me.role);
  const title = h('h1', { tabindex: '-1', class: 'page-title' }, 'Enrollment');
  const subtitle = h('p', { class: 'page-sub mono' }, id);
  const asOfInput = h('input', { type: 'datetime-local', step: '1', 'data-testid': 'as-of' });
  const asOfForm = h('form', { class: 'as-of-form', 'aria-label': 'Point in time' },
    field('State as of', asOfInput, `Local time (${TZ}); empty = now.`, 'time'),
    h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'as-of-apply' }, 'Show'),
    h('button', { type: 'button', class: 'btn', 'data-testid': 'as-of-clear', onclick: () => navigate(`/enrollment/${id}`, true) }, 'Now'));
  const banner = h('div', { class: 'as-of-banner', 'data-testid': 'as-of-banner', hidden: true });
  const state = h('section', { class: 'card state-card', 'data-testid': 'enrollment-state', 'aria-label': 'Enrollment state', 'aria-busy': 'true' },
    h('p', { class: 'muted' }, 'Loading…'));
  const subs = h('section', { class: 'card subs-card', 'aria-labelledby': 'subs-title' },
    h('h2', { id: 'subs-title' }, 'Test submissions'), h('p', { class: 'muted' }, 'Loading…'));
  const history = new AuditPanel({
    label: 'History', livePref: 'historyLive', streamPage: true,
    onAsOf: (event) => navigate(`/enrollment/${id}?asOf=${encodeURIComponent(event.recordedAt)}`, true),
  });
  main.append(h('div', { class: 'view enrollment-view' },
    h('p', { class: 'crumbs' }, h('a', { href: '#/enrollments', 'data-testid': 'back-to-enrollments' }, '← Enrollments')),
    h('div', { class: 'page-head split' }, h('div', {}, title, subtitle), asOfForm),
    banner,
    h('div', { class: 'enrollment-grid' }, state, subs),
    h('section', { class: 'card history-card', 'data-testid': 'enrollment-history', 'aria-labelledby': 'history-title' },
      h('h2', { id: 'history-title' }, 'History ', h('span', { class: 'muted small' }, '(this enrollment’s events; select one to see its data)')),
      history.el)));

  asOfForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const at = fromLocalInput(asOfInput.value);
    navigate(`/enrollment/${id}${at ? `?asOf=${encodeURIComponent(at)}` : ''}`, true);
  });

  let gen = 0;
  async function load(asOf) {
    const mine = (gen += 1);
    state.setAttribute('aria-busy', 'true');
    try {
      const data = await gql(ENROLLMENT_QUERY, { id, asOf: asOf || null });
      if (mine !== gen) return;
      renderEnrollment(data.enrollment, asOf);
    } catch (error) {
      if (mine !== gen) return;
      showError(error, 'Loading the enrollment');
      state.replaceChildren(h('p', { class: 'muted' }, 'Could not load the enrollment (see the error above).'));
      subs.replaceChildren(h('h2', { id: 'subs-title' }, 'Test submissions'), h('p', { class: 'muted' }, '—'));
    } finally {
      if (mine === gen) state.removeAttribute('aria-busy');
    }
  }

  function renderEnrollment(e, asOf) {
    if (!e) {
      state.dataset.status = '';
      state.replaceChildren(h('p', { class: 'notice', 'data-testid': 'enrollment-missing' },
        asOf ? `This enrollment did not exist yet at ${fmtTime(asOf)} (or you may not see it).` : 'No enrollment with this id (or you may not see it).'));
      subs.replaceChildren(h('h2', { id: 'subs-title' }, 'Test submissions'), h('p', { class: 'muted' }, '—'));
      return;
    }
    title.replaceChildren(e.course ? `${e.course.code} — ${e.course.title}` : 'Enrollment', ' ', statusBadge(e.status));
    subtitle.replaceChildren(
      e.trainee ? h('span', {}, e.trainee.name, ' ', h('span', { class: 'muted' }, `<${e.trainee.email}>`)) : null,
      h('span', { class: 'muted' }, ` · enrollment ${e.id}`));
    document.title = `${e.course ? e.course.code : 'Enrollment'} · ${e.trainee ? e.trainee.name : shortId(e.id)} · coursetrail console`;
    state.dataset.status = e.status;
    state.dataset.version = e.version;
    const firstSubmission = e.submissions.map((s) => s.submittedAt).sort()[0];
    const steps = [
      ['Registered', e.registeredAt],
      ['Started', e.startedAt],
      ['First test', firstSubmission],
      ['Passed', e.passedAt],
      e.withdrawnAt ? ['Withdrawn', e.withdrawnAt] : ['Completed', e.completedAt],
    ];
    const dd = (key, value) => h('dd', { 'data-field': key }, value);
    state.replaceChildren(
      h('h2', {}, 'State'),
      h('ol', { class: 'timeline', 'aria-label': 'Lifecycle' }, steps.map(([name, at]) => h('li', {
        class: at ? (name === 'Withdrawn' ? 'done withdrawn' : 'done') : 'pending',
      }, h('span', { class: 'dot', 'aria-hidden': 'true' }), h('span', { class: 'step-name' }, name),
      h('span', { class: 'step-time' }, at ? timeEl(at) : 'not yet')))),
      h('dl', { class: 'kv two' },
        h('div', {}, h('dt', {}, 'Status'), dd('status', statusBadge(e.status))),
        h('div', {}, h('dt', {}, 'Stream version'), dd('version', String(e.version))),
        h('div', {}, h('dt', {}, 'Registered'), dd('registeredAt', timeEl(e.registeredAt))),
        h('div', {}, h('dt', {}, 'Started'), dd('startedAt', timeEl(e.startedAt))),
        h('div', {}, h('dt', {}, 'Passed'), dd('passedAt', timeEl(e.passedAt))),
        h('div', {}, h('dt', {}, 'Completed'), dd('completedAt', timeEl(e.completedAt))),
        h('div', {}, h('dt', {}, 'Withdrawn'), dd('withdrawnAt', [timeEl(e.withdrawnAt), e.withdrawalReason ? h('span', { class: 'muted' }, ` — “${e.withdrawalReason}”`) : null])),
        h('div', {}, h('dt', {}, 'Tests submitted'), dd('submissionCount', String(e.submissionCount))),
        h('div', {}, h('dt', {}, 'Best score'), dd('bestScore', e.bestScore == null ? '—' : `${e.bestScore}${e.course ? ` (pass ≥ ${e.course.passingScore})` : ''}`)),
        h('div', {}, h('dt', {}, 'Last change'), dd('updatedAt', timeEl(e.updatedAt)))),
      h('p', { class: 'links' },
        staff ? h('a', { href: `#/enrollments?courseId=${e.courseId}` }, 'Enrollments of this course') : null,
        staff ? h('a', { href: `#/enrollments?traineeId=${e.traineeId}` }, 'Enrollments of this trainee') : null,
        staff ? h('a', { href: `#/audit?traineeId=${e.traineeId}` }, 'Trainee’s history') : null));
    subs.replaceChildren(h('h2', { id: 'subs-title' }, 'Test submissions'),
      e.submissions.length
        ? h('table', { class: 'data compact' },
          h('caption', { class: 'sr-only' }, 'Test submissions'),
          h('thead', {}, h('tr', {}, ['#', 'Submitted', 'Score', 'Result', 'Graded'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, e.submissions.map((s, i) => h('tr', { 'data-testid': 'submission-row', 'data-submission-id': s.id },
            h('td', { class: 'num' }, String(i + 1)),
            h('td', {}, timeEl(s.submittedAt)),
            h('td', { class: 'num' }, s.score == null ? '—' : String(s.score)),
            h('td', {}, s.passed == null ? h('span', { class: 'badge status-registered' }, 'Awaiting grade')
              : s.passed ? h('span', { class: 'badge status-completed' }, 'Passed') : h('span', { class: 'badge status-withdrawn' }, 'Failed')),
            h('td', {}, timeEl(s.gradedAt))))))
        : h('p', { class: 'muted' }, 'No tests submitted.'));
  }

  function update(p) {
    const asOf = p.get('asOf');
    asOfInput.value = toLocalInput(asOf);
    banner.hidden = !asOf;
    banner.replaceChildren(...(asOf ? ['Showing the enrollment as it was at ', h('strong', {}, timeEl(asOf)), ', replayed from its stream. History rows recorded later are dimmed.'] : []));
    history.setMarkAfter(asOf);
    load(asOf);
  }

  history.load({ streamId: id }, 100);
  update(params);
  return { update, destroy: () => { gen += 1; history.destroy(); } };
}

// --- Not found -------------------------------------------------------------------------------

function mountNotFound(main) {
  main.append(h('div', { class: 'view' }, pageHeader('Page not found'),
    h('p', {}, 'There is no such page. ', h('a', { href: `#${defaultPath(session.me?.role)}` }, 'Go to the start page'), '.')));
  return {};
}

// ---------------------------------------------------------------------------------------------
// Router and shell

const ROUTES = [
  { name: 'signin', re: /^\/signin$/, mount: mountSignIn, public: true, title: () => 'Sign in' },
  { name: 'audit', re: /^\/audit$/, mount: mountAudit, roles: ALL_ROLES, nav: 'audit', title: (r) => (r === 'TRAINEE' ? 'My history' : 'Audit trail') },
  { name: 'reports', re: /^\/reports(?:\/(duration|funnel))?$/, mount: mountReports, roles: STAFF, nav: 'reports', title: () => 'Reports' },
  { name: 'enrollments', re: /^\/enrollments$/, mount: mountEnrollments, roles: ALL_ROLES, nav: 'enrollments', title: (r) => (r === 'TRAINEE' ? 'My enrollments' : 'Enrollments') },
  { name: 'enrollment', re: /^\/enrollment\/([^/]+)$/, mount: mountEnrollment, roles: ALL_ROLES, nav: 'enrollments', title: () => 'Enrollment' },
];

const NAV_ITEMS = [
  { id: 'audit', path: '/audit', label: (r) => (r === 'TRAINEE' ? 'My history' : 'Audit trail'), roles: ALL_ROLES },
  { id: 'reports', path: '/reports/duration', label: () => 'Reports', roles: STAFF },
  { id: 'enrollments', path: '/enrollments', label: (r) => (r === 'TRAINEE' ? 'My enrollments' : 'Enrollments'), roles: ALL_ROLES },
];

const defaultPath = (role) => (role === 'TRAINEE' ? '/enrollments' : '/audit');

function parseHash() {
  const raw = location.hash.replace(/^#/, '');
  const q = raw.indexOf('?');
  const path = (q >= 0 ? raw.slice(0, q) : raw) || '/';
  const params = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : '');
  return { path: path.startsWith('/') ? path : `/${path}`, params };
}

/** Goes to a path ("/audit?x=1"); a same-address navigation re-runs the view's update. */
function navigate(path, rerunIfSame = false) {
  const target = `#${path}`;
  if (location.hash === target) {
    if (rerunIfSame) route();
    return;
  }
  location.hash = target;
}

/**
 * `#token=<jwt>[&next=/path?query]`: store the token, strip it from the address, go to `next`
 * (everything after `next=`, encoded or not) or the start page.
 */
function consumeTokenFragment() {
  const m = /^#token=([^&]*)(?:&next=(.*))?$/.exec(location.hash);
  if (!m) return false;
  const token = decodeURIComponent(m[1]).trim();
  let next = m[2] || '';
  if (/^%2F/i.test(next)) {
    try {
      next = decodeURIComponent(next);
    } catch {
      next = '';
    }
  }
  if (token) setToken(token);
  const target = next ? (next.startsWith('/') ? next : `/${next}`) : '/';
  history.replaceState(null, '', `${location.pathname}${location.search}#${target}`);
  return true;
}

const ME_QUERY = 'query Me { me { id subject tenantId role trainee { id name email } } }';

async function loadMe() {
  const data = await gql(ME_QUERY);
  session.me = data.me;
  if (!session.claims) session.claims = decodeClaims(getToken());
  renderSession();
  return data.me;
}

function whoText(me) {
  const role = titleCase(me.role);
  if (me.trainee) return `${me.trainee.name} (${role})`;
  return `${role} ${shortId(me.subject)}`;
}

function renderSession() {
  const nav = document.getElementById('nav');
  const sessionEl = document.getElementById('session');
  const who = document.getElementById('whoami');
  const me = session.me;
  nav.hidden = !me;
  sessionEl.hidden = !me;
  if (!me) {
    document.getElementById('nav-list').replaceChildren();
    who.replaceChildren();
    return;
  }
  const exp = session.claims && session.claims.exp ? new Date(session.claims.exp * 1000) : null;
  who.dataset.role = me.role;
  who.dataset.subject = me.subject;
  who.dataset.tenant = me.tenantId;
  who.title = `Subject ${me.subject}\nTenant ${me.tenantId}${exp ? `\nToken expires ${fmtTime(exp.toISOString())}` : ''}`;
  who.replaceChildren(
    h('span', { class: `role-pill role-${me.role.toLowerCase()}` }, titleCase(me.role)),
    h('span', { class: 'who-name' }, me.trainee ? me.trainee.name : h('span', { class: 'mono' }, shortId(me.subject))),
    h('span', { class: 'who-tenant muted-inv' }, `tenant ${shortId(me.tenantId)}`));
  document.getElementById('nav-list').replaceChildren(...NAV_ITEMS.filter((item) => item.roles.includes(me.role)).map((item) => h('li', {},
    h('a', { href: `#${item.path}`, 'data-testid': `nav-${item.id}`, 'data-nav': item.id }, item.label(me.role)))));
  highlightNav();
}

function highlightNav() {
  const current = ROUTES.find((r) => r.re.test(parseHash().path));
  for (const a of document.querySelectorAll('#nav-list a')) {
    if (current && current.nav === a.dataset.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function signOut() {
  if (current && current.view.destroy) current.view.destroy();
  current = null;
  setToken(null);
  renderSession();
  clearErrors();
  setStatus('Signed out.');
  navigate('/signin');
  if (parseHash().path === '/signin') route();
}

let current = null; // {key, view}
let routeSeq = 0;
let firstRender = true;
let keepErrors = false; // the next mount keeps the banners (an error that caused the navigation)

async function route() {
  const seq = (routeSeq += 1);
  const { path, params } = parseHash();
  if (path === '/' || path === '') {
    if (!getToken()) navigate('/signin');
    else if (session.me) navigate(defaultPath(session.me.role));
    else {
      await ensureMe(seq);
      if (seq === routeSeq && session.me) navigate(defaultPath(session.me.role));
    }
    return;
  }
  const entry = ROUTES.find((r) => r.re.test(path));
  if (!getToken() && !(entry && entry.public)) {
    const next = `${path}${params.toString() ? `?${params}` : ''}`;
    history.replaceState(null, '', `#/signin?next=${encodeURIComponent(next)}`);
    mount(ROUTES[0], ROUTES[0].re.exec('/signin'), new URLSearchParams({ next }));
    return;
  }
  if (getToken() && !session.me) {
    const ok = await ensureMe(seq);
    if (seq !== routeSeq) return;
    if (!ok) {
      if (!(entry && entry.public)) mountUnavailable();
      else mount(entry, entry.re.exec(path), params);
      return;
    }
  }
  if (!entry) {
    mount({ name: 'notfound', mount: mountNotFound, title: () => 'Not found' }, [path], params);
    return;
  }
  mount(entry, entry.re.exec(path), params);
}

/** Loads `me` for the stored token; a refused token is dropped. */
async function ensureMe(seq) {
  setStatus('Checking your token…');
  try {
    await loadMe();
    setStatus('');
    return true;
  } catch (error) {
    if (seq !== routeSeq) return false;
    if (error instanceof ApiError && ['UNAUTHENTICATED', 'FORBIDDEN'].includes(error.code)) {
      setToken(null);
      renderSession();
      showError(error, 'Signing in with the stored token');
      keepErrors = true;
      navigate('/signin');
    } else {
      showError(error, 'Contacting the server');
    }
    setStatus('');
    return false;
  }
}

function mountUnavailable() {
  if (current && current.view.destroy) current.view.destroy();
  current = { key: 'unavailable', view: {} };
  const main = document.getElementById('main');
  main.replaceChildren(h('div', { class: 'view' }, pageHeader('The server did not answer'),
    h('p', {}, 'Your token is kept. ', h('button', { type: 'button', class: 'btn btn-primary', onclick: () => { clearErrors(); route(); } }, 'Try again'))));
}

function mount(entry, match, params) {
  const key = `${entry.name}:${match.slice(1).join('/')}`;
  if (current && current.key === key && current.view.update) {
    current.view.update(params);
    return;
  }
  if (current && current.view.destroy) current.view.destroy();
  current = null;
  const main = document.getElementById('main');
  main.replaceChildren();
  main.dataset.view = entry.name;
  if (!firstRender && !keepErrors) clearErrors();
  keepErrors = false;
  document.title = `${entry.title(session.me?.role)} · coursetrail console`;
  let view = {};
  try {
    view = entry.mount(main, params, match) || {};
  } catch (error) {
    showError(error, 'Showing the page');
  }
  current = { key, view };
  highlightNav();
  if (!firstRender && entry.name !== 'signin') {
    const heading = main.querySelector('h1');
    if (heading) heading.focus({ preventScroll: true });
  }
  firstRender = false;
}

function init() {
  window.addEventListener('error', (e) => showError(e.error || e.message, 'The console'));
  window.addEventListener('unhandledrejection', (e) => showError(e.reason, 'The console'));
  getToken();
  if (session.token) session.claims = decodeClaims(session.token);
  consumeTokenFragment();
  window.addEventListener('hashchange', () => {
    consumeTokenFragment();
    route();
  });
  document.getElementById('sign-out').addEventListener('click', signOut);
  document.querySelector('.skip-link').addEventListener('click', (e) => {
    e.preventDefault();
    const main = document.getElementById('main');
    (main.querySelector('h1') || main).focus();
  });
  route();
}

init();
