// coursetrail console, live feed: graphql-transport-ws over /graphql/ws
//
// States (exactly these words): connecting → live → (socket lost) reconnecting → live …;
// offline when switched off or after a fatal refusal. Reconnects back off 0.5 s, 1 s, 2 s … 30 s
// (±20 %), resuming after the last position shown; a ping every 20 s detects dead sockets.

import { ApiError, getToken, normaliseError } from './api.js';

// The audit event fields, shared by the live subscription and the audit trail query (audit.js).
export const EVENT_FRAGMENT = `
fragment Ev on AuditEvent {
  eventId position cursor streamId streamType version type schemaVersion data recordedAt
  traineeId courseId
  metadata { actor { id role } commandId correlationId causationId }
}`;

const LIVE_QUERY = `subscription Live($afterPosition: Position, $filter: AuditFilter) {
  events(afterPosition: $afterPosition, filter: $filter) { ...Ev }
}`;
const FATAL_CODES = new Set([
  'UNAUTHENTICATED', 'FORBIDDEN', 'BAD_USER_INPUT', 'BAD_REQUEST', 'GRAPHQL_VALIDATION_FAILED',
  'GRAPHQL_PARSE_FAILED', 'NOT_FOUND',
]);

export class LiveFeed {
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
