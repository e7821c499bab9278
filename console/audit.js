// coursetrail console: the audit trail screen and its event panel (also used for one enrollment's history).

import { ApiError, getToken, gql, loadCourses, loadTrainees, normaliseError, session } from './api.js';
import {
  comparePositions, courseLabel, downloadBlob, ensureTabStop, field, fillDatalist, forgetSuggestion,
  fromLocalInput,
  h, jsonView, navigate, pageHeader, rovingRows, select, setStatus, shortId, showError, stamp,
  timeEl, titleCase, toLocalInput, typeCategory, TZ, uid, UUID_PATTERN,
} from './ui.js';
import { EVENT_FRAGMENT, LiveFeed } from './live.js';

const EVENT_TYPES = [
  'COURSE_CREATED', 'COURSE_RETIRED', 'TRAINEE_REGISTERED', 'TRAINEE_FORGOTTEN', 'COURSE_REGISTERED', 'COURSE_STARTED',
  'TEST_SUBMITTED', 'TEST_GRADED', 'COURSE_COMPLETED', 'REGISTRATION_WITHDRAWN',
];
const prefs = { auditLive: false, historyLive: false };

// ---------------------------------------------------------------------------------------------
// Audit panel: an event table with paging, details, CSV export and the live feed

const AUDIT_QUERY = `query Audit($filter: AuditFilter, $first: Int, $after: String) {
  auditTrail(filter: $filter, first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes { ...Ev }
  }
}${EVENT_FRAGMENT}`;

const MAX_ROWS = 2000;
const storedEventName = (type) => type.toLowerCase().split('_').map((w) => w[0].toUpperCase() + w.slice(1)).join('');

export class AuditPanel {
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
    if (event.type === 'TRAINEE_FORGOTTEN') forgetSuggestion(event.streamId);
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

export function mountAudit(main, params) {
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
