// Small client for the otm HTTP API.
//
// Endpoints (relative to the mount prefix read from <meta name="otm-base">):
//   GET  {base}/api/v1/config
//   POST {base}/api/v1/messages             {"envelope", "verifier", "ttl_seconds"}
//   POST {base}/api/v1/messages/{id}/open   {"proof"}
// Binary values travel as unpadded base64url text.

import { decodeBase64url, encodeBase64url } from './otm-format.js';

export const API_PATHS = Object.freeze({
  config: '/api/v1/config',
  messages: '/api/v1/messages',
  open: (id) => `/api/v1/messages/${encodeURIComponent(id)}/open`,
});

/** An error answer from the server (or a network failure, status 0). */
export class ApiError extends Error {
  constructor(status, code, message, attemptsLeft) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    if (attemptsLeft !== undefined && attemptsLeft !== null) this.attemptsLeft = attemptsLeft;
  }
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

async function request(method, path, body) {
  const headers = { Accept: 'application/json' };
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
    const message =
      typeof obj.message === 'string' && obj.message
        ? obj.message
        : `The server answered with an error (HTTP ${res.status}). Please try again.`;
    let left = obj.attempts_left ?? obj.attemptsLeft;
    if (typeof left !== 'number') left = undefined;
    throw new ApiError(res.status, code, message, left);
  }
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
 * Stores a sealed envelope. `envelope` and `verifier` are Uint8Arrays (or
 * base64url text). Resolves to the server's answer, e.g. {id, expires_at}.
 */
export function createMessage({ envelope, verifier, ttlSeconds }) {
  const body = { envelope: asText(envelope), verifier: asText(verifier) };
  if (ttlSeconds !== undefined && ttlSeconds !== null) body.ttl_seconds = ttlSeconds;
  return request('POST', API_PATHS.messages, body);
}

/**
 * Claims a message with its proof (Uint8Array or base64url text). The server
 * deletes it as it answers. Resolves to {envelope: Uint8Array}; a malformed
 * envelope text throws an OtmError with code "BadEncoding".
 */
export async function openMessage(id, proof) {
  const data = await request('POST', API_PATHS.open(id), { proof: asText(proof) });
  if (typeof data.envelope !== 'string') {
    throw new ApiError(200, 'bad_response', 'The server sent an answer this page does not understand.');
  }
  return { ...data, envelope: decodeBase64url(data.envelope) };
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
