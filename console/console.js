// coursetrail admin console: a single-page application over the public GraphQL API.
// Plain ES modules, no build step, no dependencies. See index.html for the shell. This module is
// the router and the shell (nav, whoami, sign-in/out); the screens live in audit.js, reports.js and
// enrollments.js, on top of ui.js (DOM, formatting, errors), api.js (GraphQL, token) and live.js.
//
// Routes (hash): #/signin · #/audit?traineeId&courseId&streamId&types&from&to&first&live ·
// #/reports/duration?from&to&groupBy&asOf&courses · #/reports/funnel?asOf&courses ·
// #/enrollments?courseId&traineeId&status&q · #/enrollment/<id>?asOf
// A fragment `#token=<jwt>[&next=/audit]` is moved into sessionStorage and stripped at once.

import { ALL_ROLES, ApiError, decodeClaims, getToken, gql, session, setToken, STAFF } from './api.js';
import {
  clearErrors, field, fmtTime, h, navigate, pageHeader, parseHash, setRouter, setStatus, shortId,
  showError, titleCase, uid,
} from './ui.js';
import { mountAudit } from './audit.js';
import { mountReports } from './reports.js';
import { mountEnrollment, mountEnrollments } from './enrollments.js';

// ---------------------------------------------------------------------------------------------
// Views. Each mount(main, params, match) returns {update?(params), destroy?()}.

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

/**
 * `#token=<jwt>[&next=/path?query]`: store the token, strip it from the address, go to `next`
 * (everything after `next=`, encoded or not) or the start page.
 */
function consumeTokenFragment() {
  const m = /^#token=([^&]*)(?:&next=(.*))?$/.exec(location.hash);
  if (!m) return false;
  // The fragment leaves the address bar whatever it holds: a token must not stay on screen.
  history.replaceState(null, '', `${location.pathname}${location.search}#/`);
  let token = '';
  try {
    token = decodeURIComponent(m[1]).trim();
  } catch {
    token = '';
  }
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
  setRouter(route);
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
