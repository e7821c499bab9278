// coursetrail console: the duration and funnel report screens, and their CSV downloads.

import { gql, loadCourses, session, STAFF } from './api.js';
import {
  courseLabel, downloadBlob, field, fmtNum, fmtPct, fromLocalInput, h, navigate, pageHeader,
  roleNotice, select, setStatus, shortId, showError, stamp, timeEl, toLocalInput, TZ,
} from './ui.js';
import {
  barChart, durationBoxPlot, durationScale, emptyPlot, fmtDuration, outcomeBar, swatch,
} from './charts.js';

const LIFECYCLE_POINTS = [
  ['REGISTERED', 'Registered'], ['STARTED', 'Started'], ['FIRST_SUBMISSION', 'First test submitted'],
  ['PASSED', 'Passed'], ['COMPLETED', 'Completed'], ['WITHDRAWN', 'Withdrawn'],
];
const GROUPINGS = [['COURSE', 'Course'], ['COHORT_MONTH', 'Cohort month'], ['NONE', 'Everything']];

function csvCell(value) {
  if (value == null) return '';
  let text = String(value);
  // Keep spreadsheets from evaluating text cells as formulas.
  if (typeof value === 'string' && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function downloadCsv(filename, rows) {
  const text = rows.map((row) => row.map(csvCell).join(',')).join('\r\n') + '\r\n';
  downloadBlob(filename, new Blob([text], { type: 'text/csv;charset=utf-8' }));
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

export function mountReports(main, params, match) {
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
