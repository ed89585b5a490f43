// Small client for the otm HTTP API.
//
// Endpoints (relative to the mount prefix read from <meta name="otm-base">):
//   GET  {base}/api/v1/config
//   POST {base}/api/v1/messages             {"envelope", "verifier", "access_verifier", "ttl_seconds"}
//   POST {base}/api/v1/messages/{id}/open   {"access_proof", "proof"}
//   GET    {base}/api/v1/messages/{id}      (Authorization: Bearer <manage token>)
//   DELETE {base}/api/v1/messages/{id}      (Authorization: Bearer <manage token>)
//   POST {base}/api/v1/groups               {"members": [{"envelope", "verifier", "access_verifier"}…], "ttl_seconds"}
//   POST {base}/api/v1/groups/status        {"members": [{"id", "manage_token"}…]}
//   POST {base}/api/v1/groups/burn          {"members": [{"id", "manage_token"}…]}
//   POST {base}/api/v1/requests             {"note", "answer_verifier", "access_verifier", "verifier", "ttl_seconds"}
//   POST {base}/api/v1/requests/{id}/read   {"answer_proof"}
//   POST {base}/api/v1/requests/{id}/answer {"answer_proof", "answer"}
//   GET    {base}/api/v1/requests/{id}      (Authorization: Bearer <the answer's access proof>)
//   DELETE {base}/api/v1/requests/{id}      (Authorization: Bearer <the answer's access proof>)
// Binary values travel as unpadded base64url text.

import { t } from './i18n.js';
import { decodeBase64url, encodeBase64url, parseManageToken } from './otm-format.js';

const API_PATHS = Object.freeze({
  config: '/api/v1/config',
  messages: '/api/v1/messages',
  open: (id) => `/api/v1/messages/${encodeURIComponent(id)}/open`,
  message: (id) => `/api/v1/messages/${encodeURIComponent(id)}`,
  groups: '/api/v1/groups',
  groupStatus: '/api/v1/groups/status',
  groupBurn: '/api/v1/groups/burn',
  requests: '/api/v1/requests',
  request: (id) => `/api/v1/requests/${encodeURIComponent(id)}`,
  readRequest: (id) => `/api/v1/requests/${encodeURIComponent(id)}/read`,
  answerRequest: (id) => `/api/v1/requests/${encodeURIComponent(id)}/answer`,
});

/**
 * An error answer from the server (or a network failure, status 0). `body`
 * is the parsed JSON of the answer, when it had one (for example the current
 * status fields of a 409 from burnMessage).
 */
export class ApiError extends Error {
  constructor(status, code, message, attemptsLeft, body) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    if (attemptsLeft !== undefined && attemptsLeft !== null) this.attemptsLeft = attemptsLeft;
    if (body !== undefined && body !== null) this.body = body;
  }
}

/**
 * What to tell the reader about `err`, in the page's language, by its error
 * code: the server's own (English) text is never shown, except a host
 * policy's refusal (`create_denied`), which is in the host's own words.
 */
export function describeApiError(err) {
  if (err.code === 'create_denied' && err.message) return err.message;
  const key = `error.${err.code}`;
  const text = t(key, { status: err.status });
  return text === key ? t('error.http', { status: err.status }) : text;
}

/** The mount prefix: "" at the root, or for example "/secrets". */
export function basePath() {
  if (typeof document === 'undefined') return '';
  const meta = document.querySelector('meta[name="otm-base"]');
  let base = meta ? meta.getAttribute('content') || '' : '';
  // An unfilled template placeholder means the page was served as a plain file.
  if (base.includes('{{')) base = '';
  return base.replace(/\/+$/, '');
}

function asText(value) {
  return typeof value === 'string' ? value : encodeBase64url(value);
}

async function request(method, path, body, token, { emptyOk = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (token !== undefined) {
    // Checked here so a damaged token never reaches fetch (which would throw
    // on some characters) or the server as something else.
    try {
      parseManageToken(token).fill(0); // 43 characters of canonical base64url
    } catch {
      throw new ApiError(0, 'token_required', 'The status link is incomplete: its token is missing or damaged.');
    }
    headers.Authorization = `Bearer ${token}`;
  }
  const init = {
    method,
    headers,
    cache: 'no-store',
    credentials: 'same-origin',
    referrerPolicy: 'no-referrer',
  };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(basePath() + path, init);
  } catch {
    throw new ApiError(0, 'network', 'Could not reach the server. Check your connection and try again.');
  }
  let data = null;
  try {
    const text = await res.text();
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const obj = data && typeof data === 'object' ? data : {};
    const code = typeof obj.error === 'string' ? obj.error : `http_${res.status}`;
    // The server's text, for a host policy's refusal and for debugging; the
    // pages show describeApiError's text.
    const message = typeof obj.message === 'string' ? obj.message : '';
    let left = obj.attempts_left ?? obj.attemptsLeft;
    if (typeof left !== 'number') left = undefined;
    throw new ApiError(res.status, code, message, left, data && typeof data === 'object' ? data : undefined);
  }
  if (emptyOk && res.status === 204) return {};
  if (data === null || typeof data !== 'object') {
    throw new ApiError(res.status, 'bad_response', 'The server sent an answer this page does not understand.');
  }
  return data;
}

/**
 * The server's settings, for example
 * {ttl_choices_seconds: [...], default_ttl_seconds, max_ttl_seconds, link_base}.
 */
export function getConfig() {
  return request('GET', API_PATHS.config);
}

/**
 * Stores a sealed envelope. `envelope`, `verifier` (the claim verifier) and
 * `accessVerifier` are Uint8Arrays (or base64url text); all three are
 * required. Resolves to the server's answer, e.g. {id, expires_at}.
 */
export function createMessage({ envelope, verifier, accessVerifier, ttlSeconds }) {
  const body = {
    envelope: asText(envelope),
    verifier: asText(verifier),
    access_verifier: asText(accessVerifier),
  };
  if (ttlSeconds !== undefined && ttlSeconds !== null) body.ttl_seconds = ttlSeconds;
  return request('POST', API_PATHS.messages, body);
}

/**
 * Claims a message with its access proof (from the key alone) and its claim
 * proof (key and passphrase), each a Uint8Array or base64url text. The
 * server deletes the message as it answers. A wrong access proof gets the
 * answer of an unknown message (404 not_found) and counts nothing; a right
 * one with a wrong claim proof is a counted attempt (403 wrong_proof).
 * Resolves to {envelope: Uint8Array}; a malformed envelope text throws an
 * OtmError with code "BadEncoding".
 */
export async function openMessage(id, { accessProof, claimProof }) {
  const body = { access_proof: asText(accessProof), proof: asText(claimProof) };
  const data = await request('POST', API_PATHS.open(id), body);
  if (typeof data.envelope !== 'string') {
    throw new ApiError(200, 'bad_response', 'The server sent an answer this page does not understand.');
  }
  return { ...data, envelope: decodeBase64url(data.envelope) };
}

/**
 * The sender's view of a message, with the management token from the
 * private status link. Resolves to
 * {state: "waiting"|"opened"|"burned"|"expired", expires_at, expires_at_unix, changed_at}.
 * Errors: 401 token_required, 403 wrong_token, 404 not_found, 400 bad_id, 429.
 */
export function getStatus(id, token) {
  return request('GET', API_PATHS.message(id), undefined, token);
}

/**
 * Destroys a message that is still waiting. Resolves to the new status
 * ({state: "burned", …}). A 409 not_waiting ApiError carries the current
 * status in `err.body` (state "opened", "burned" or "expired").
 */
export function burnMessage(id, token) {
  return request('DELETE', API_PATHS.message(id), undefined, token);
}

// ---------------------------------------------------------------------------
// One message for several recipients (FORMAT.md section 9.6)

/**
 * Stores 2 to 20 sealed envelopes at once, all or none: `members` is a list
 * of {envelope, verifier, accessVerifier} as for createMessage. Resolves to
 * {members: [{id, path, expires_at, expires_at_unix, manage_token}…],
 * group_secret (absent when the tokens derive from an API token),
 * expires_at, expires_at_unix}.
 */
export function createGroup({ members, ttlSeconds }) {
  const body = {
    members: members.map((m) => ({
      envelope: asText(m.envelope),
      verifier: asText(m.verifier),
      access_verifier: asText(m.accessVerifier),
    })),
  };
  if (ttlSeconds !== undefined && ttlSeconds !== null) body.ttl_seconds = ttlSeconds;
  return request('POST', API_PATHS.groups, body);
}

/**
 * The receipts of up to 20 messages, `members` a list of {id, token}.
 * Resolves to {members: [{id, status: {state, expires_at, …} | null}…]}
 * (null: no message under that token).
 */
export function getGroupStatus(members) {
  return request('POST', API_PATHS.groupStatus, groupBody(members));
}

/** Burns every waiting message of `members` ({id, token}); resolves as getGroupStatus. */
export function burnGroup(members) {
  return request('POST', API_PATHS.groupBurn, groupBody(members));
}

function groupBody(members) {
  return { members: members.map((m) => ({ id: m.id, manage_token: m.token })) };
}

// ---------------------------------------------------------------------------
// Requests for a secret (FORMAT.md section 14)

/**
 * Stores a request for a secret: the sealed note and three verifiers
 * (Uint8Arrays or base64url text). Resolves to {id, path, receive_path,
 * expires_at, expires_at_unix}.
 */
export function askForSecret({ note, answerVerifier, accessVerifier, verifier, ttlSeconds }) {
  const body = {
    note: asText(note),
    answer_verifier: asText(answerVerifier),
    access_verifier: asText(accessVerifier),
    verifier: asText(verifier),
  };
  if (ttlSeconds !== undefined && ttlSeconds !== null) body.ttl_seconds = ttlSeconds;
  return request('POST', API_PATHS.requests, body);
}

/**
 * The request, for the holder of the request link's answer proof:
 * {note: Uint8Array (sealed), creator?: {kind, name?}, expires_at,
 * expires_at_unix, answered}. A wrong proof is 404 not_found, like an
 * unknown request.
 */
export async function readRequest(id, answerProof) {
  const data = await request('POST', API_PATHS.readRequest(id), { answer_proof: asText(answerProof) });
  if (typeof data.note !== 'string') {
    throw new ApiError(200, 'bad_response', 'The server sent an answer this page does not understand.');
  }
  return { ...data, note: decodeBase64url(data.note) };
}

/**
 * Stores the one answer of a request. Resolves to {answered_at}; a request
 * answered already is a 409 already_answered ApiError.
 */
export function answerRequest(id, answerProof, answer) {
  return request('POST', API_PATHS.answerRequest(id), { answer_proof: asText(answerProof), answer: asText(answer) });
}

/**
 * The asker's view of a request, with the answer's access proof (from the
 * receive link): {state: "waiting"|"answered"|"opened"|"burned",
 * expires_at, expires_at_unix, answered_at?, changed_at?}.
 */
export function getRequestStatus(id, accessProof) {
  return request('GET', API_PATHS.request(id), undefined, asText(accessProof));
}

/** Withdraws a request (and destroys an unopened answer). Resolves to {}. */
export function withdrawRequest(id, accessProof) {
  return request('DELETE', API_PATHS.request(id), undefined, asText(accessProof), { emptyOk: true });
}

/** Parses an expiry from the server: unix seconds, or an ISO 8601 / RFC 3339 string. */
export function parseExpiry(value) {
  if (typeof value === 'number' && Number.isFinite(value)) {
    // Treat very large numbers as milliseconds.
    return new Date(value > 1e12 ? value : value * 1000);
  }
  if (typeof value === 'string' && value) {
    const d = new Date(value);
    if (!Number.isNaN(d.getTime())) return d;
  }
  return null;
}

const RECEIPT_STATES = Object.freeze(['waiting', 'opened', 'burned', 'expired']);

/**
 * A message's status from the server ({state, expires_at, expires_at_unix,
 * changed_at}) as {state, expiresAt, changedAt}, or null when it is not one.
 */
export function asReceipt(data) {
  if (!data || typeof data !== 'object' || !RECEIPT_STATES.includes(data.state)) return null;
  return {
    state: data.state,
    expiresAt: parseExpiry(data.expires_at_unix) ?? parseExpiry(data.expires_at),
    changedAt: parseExpiry(data.changed_at),
  };
}
