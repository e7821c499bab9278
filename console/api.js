// coursetrail console: the GraphQL-over-HTTP client, the session (token in sessionStorage, `me`),
// error normalisation and the cached course / trainee lists.

const TOKEN_KEY = 'coursetrail.console.token';
export const ALL_ROLES = ['ADMIN', 'INSTRUCTOR', 'TRAINEE'];
export const STAFF = ['ADMIN', 'INSTRUCTOR'];

export const session = { token: null, me: null, claims: null };
const cache = { courses: null, trainees: null };

export function getToken() {
  if (session.token == null) session.token = sessionStorage.getItem(TOKEN_KEY);
  return session.token;
}

export function setToken(token) {
  session.token = token;
  session.me = null;
  session.claims = decodeClaims(token);
  cache.courses = null;
  cache.trainees = null;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** The token's claims, unverified, for display only (the server verifies). */
export function decodeClaims(token) {
  try {
    const part = token.split('.')[1];
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

export class ApiError extends Error {
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

export function normaliseError(e) {
  const ext = (e && e.extensions) || {};
  let message = (e && e.message) || 'Unknown error';
  if (ext.retryAfterSeconds != null) message += ` (retry after ${ext.retryAfterSeconds} s)`;
  return { message, code: ext.code || 'UNKNOWN', path: Array.isArray(e?.path) ? e.path.join('.') : null };
}

/** POST /graphql; resolves to `data`, rejects with ApiError (message + code) on any failure. */
export async function gql(query, variables = {}, { signal } = {}) {
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

export function loadCourses() {
  if (!cache.courses) {
    cache.courses = fetchAll(COURSES_QUERY, 'courses').catch((error) => {
      cache.courses = null;
      throw error;
    });
  }
  return cache.courses;
}

export function loadTrainees() {
  if (!STAFF.includes(session.me?.role)) return Promise.resolve([]);
  if (!cache.trainees) {
    cache.trainees = fetchAll(TRAINEES_QUERY, 'trainees').catch((error) => {
      cache.trainees = null;
      throw error;
    });
  }
  return cache.trainees;
}
