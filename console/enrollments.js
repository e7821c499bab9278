// coursetrail console: the enrollments list and the one-enrollment screen (state as of a time, history).

import { gql, loadCourses, loadTrainees, session, STAFF } from './api.js';
import {
  courseLabel, ensureTabStop, field, fillDatalist, fmtTime, fromLocalInput, h, navigate, pageHeader,
  parseHash, rovingRows, select, setStatus, shortId, showError, statusBadge, timeEl, titleCase,
  toLocalInput, TZ, uid, UUID_PATTERN,
} from './ui.js';
import { AuditPanel } from './audit.js';

const STATUSES = ['REGISTERED', 'STARTED', 'COMPLETED', 'WITHDRAWN'];

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

export function mountEnrollments(main, params) {
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

export function mountEnrollment(main, params, match) {
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
