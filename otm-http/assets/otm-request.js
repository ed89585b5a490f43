// Requests for a secret, the browser's half of FORMAT.md section 14: the
// asker's receive secret and what comes from it (the public key answers are
// sealed to, its fingerprint, the proofs that take the answer), and sealing
// and opening an answer with HPKE, bound to its request. The same bytes as
// otm-core's `request` module (otm-core/tests/data/answer_v1_vectors.json).
//
// Touches no DOM; runs in browsers and in Node.

import { PUBLIC_KEY_LEN, concat, deriveKeyPair, setupRecipient, setupSender } from './otm-hpke.js';
import {
  OtmError,
  PADDING_BUCKETS,
  charCount,
  decodeExact,
  deriveSecrets,
  deriveSecretBytes,
  encodeBase64url,
  formatBase,
  isValidId,
  padMessage,
  splitLink,
  unpadBlock,
} from './otm-format.js';

const subtle = globalThis.crypto.subtle;
const encoder = new TextEncoder();

/** `"OTA"`: the first three bytes of a sealed answer. */
export const ANSWER_MAGIC = Object.freeze([0x4f, 0x54, 0x41]);
/** The answer format's version (byte 3). */
export const ANSWER_VERSION = 1;
/** Magic, version and `enc`. */
export const ANSWER_HEADER_LEN = 4 + PUBLIC_KEY_LEN;
const TAG_LEN = 16;
/** The smallest and the largest sealed answer. */
export const MIN_ANSWER_LEN = ANSWER_HEADER_LEN + PADDING_BUCKETS[0] + TAG_LEN;
export const MAX_ANSWER_LEN = ANSWER_HEADER_LEN + PADDING_BUCKETS[PADDING_BUCKETS.length - 1] + TAG_LEN;
/** The most characters a request's note may have. */
export const MAX_NOTE_CHARS = 500;
/** The padded block of a note, and a sealed note (nonce, block, tag). */
export const NOTE_BLOCK_LEN = 2048;
export const SEALED_NOTE_LEN = 12 + NOTE_BLOCK_LEN + 16;
export const REQUEST_PATH_PREFIX = '/request/';
export const RECEIVE_PATH_PREFIX = '/receive/';

/** HKDF-SHA256 of the receive secret (no salt) under `label`: 32 bytes. */
async function expand(secret, label) {
  const k = await subtle.importKey('raw', secret, 'HKDF', false, ['deriveBits']);
  const bits = await subtle.deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: encoder.encode(label) },
    k,
    256,
  );
  return new Uint8Array(bits);
}

function checkSecret(secret) {
  if (!(secret instanceof Uint8Array) || secret.length !== 32) {
    throw new TypeError('a receive secret is 32 bytes');
  }
}

/** A fresh 32-byte receive secret. */
export function generateReceiveSecret() {
  return globalThis.crypto.getRandomValues(new Uint8Array(32));
}

/** The key pair answers are sealed to: `{ privateKey, publicKey }`. */
export async function receiveKeyPair(secret) {
  checkSecret(secret);
  const ikm = await expand(secret, 'otm request v1 kem');
  try {
    return await deriveKeyPair(ikm);
  } finally {
    ikm.fill(0);
  }
}

/**
 * The secrets of the answer as a stored message (`deriveSecrets`): their
 * access and claim proofs take the answer; `raw` gives the bytes instead
 * (`deriveSecretBytes`), for vectors and verifiers.
 */
export async function answerSecrets(secret, passphrase = null, { raw = false } = {}) {
  checkSecret(secret);
  const key = await expand(secret, 'otm request v1 answer key');
  try {
    return raw ? await deriveSecretBytes(key, passphrase) : await deriveSecrets(key, passphrase);
  } finally {
    key.fill(0);
  }
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/**
 * The fingerprint of a public key: the first 80 bits of
 * SHA-256("otm request fingerprint v1" || key) in base32, four groups of four.
 */
export async function fingerprint(publicKey) {
  const digest = new Uint8Array(
    await subtle.digest('SHA-256', concat(encoder.encode('otm request fingerprint v1'), publicKey)),
  );
  let bits = 0n;
  for (const b of digest.subarray(0, 10)) bits = (bits << 8n) | BigInt(b);
  let out = '';
  for (let i = 0; i < 16; i++) {
    if (i > 0 && i % 4 === 0) out += '-';
    out += BASE32[Number((bits >> BigInt(75 - 5 * i)) & 31n)];
  }
  return out;
}

/** HPKE `info`: "otm answer v1" 0x00, the request ID, SHA-256 of the note. */
async function info(requestId, note) {
  const noteHash = new Uint8Array(await subtle.digest('SHA-256', encoder.encode(note)));
  return concat(encoder.encode('otm answer v1\0'), requestId, noteHash);
}

/**
 * Seals `text` as the answer to the request `requestId` (16 bytes) whose
 * note is `note` ("" for none), to `publicKey` (32 bytes). `ikmE` fixes
 * the ephemeral key: for vectors only.
 */
export async function sealAnswer(publicKey, requestId, note, text, ikmE = null) {
  const block = padMessage(text);
  try {
    const { enc, context } = await setupSender(publicKey, await info(requestId, note), ikmE);
    const header = concat(new Uint8Array(ANSWER_MAGIC), new Uint8Array([ANSWER_VERSION]), enc);
    const sealed = await context.seal(header, block);
    context.wipe();
    return concat(header, sealed);
  } finally {
    block.fill(0);
  }
}

/** Checks a sealed answer's structure without a key. */
export function validateAnswer(answer) {
  const len = answer.length;
  if (len > MAX_ANSWER_LEN) throw new OtmError('TooLarge', `answer of ${len} bytes is too large`, { len });
  if (len < MIN_ANSWER_LEN) throw new OtmError('Truncated', `answer of ${len} bytes is truncated`, { len });
  if (ANSWER_MAGIC.some((b, i) => answer[i] !== b)) {
    throw new OtmError('BadMagic', 'not an otm answer: the magic bytes are wrong');
  }
  if (answer[3] !== ANSWER_VERSION) {
    throw new OtmError('UnsupportedVersion', `unsupported answer version ${answer[3]}`, { version: answer[3] });
  }
  if (!PADDING_BUCKETS.includes(len - ANSWER_HEADER_LEN - TAG_LEN)) {
    throw new OtmError('BadSize', `answer length ${len} is not a valid padded size`, { len });
  }
}

/**
 * Opens a sealed answer with the receive secret; any wrong secret, request,
 * note or altered byte is the one OtmError "DecryptionFailed".
 */
export async function openAnswer(secret, requestId, note, answer) {
  validateAnswer(answer);
  const header = answer.subarray(0, ANSWER_HEADER_LEN);
  const pair = await receiveKeyPair(secret);
  let block;
  try {
    const context = await setupRecipient(header.slice(4), pair, await info(requestId, note));
    block = await context.open(header, answer.subarray(ANSWER_HEADER_LEN));
    context.wipe();
  } catch {
    throw new OtmError('DecryptionFailed', 'the answer does not open with this secret for this request');
  }
  return unpadBlock(block);
}

// ---------------------------------------------------------------------------
// The answer token, the note, the links (FORMAT.md 14.1 to 14.3)

/** The answer token of the request link (32 bytes). */
export function answerToken(secret) {
  checkSecret(secret);
  return expand(secret, 'otm request v1 answer token');
}

/** The answer proof a responder presents (32 bytes). */
export function answerProof(token) {
  checkSecret(token);
  return expand(token, 'otm request v1 answer proof');
}

async function noteKey(token) {
  checkSecret(token);
  const raw = await expand(token, 'otm request v1 note key');
  try {
    return await subtle.importKey('raw', raw, 'AES-GCM', false, ['encrypt', 'decrypt']);
  } finally {
    raw.fill(0);
  }
}

function noteAad(publicKey) {
  return concat(encoder.encode('otm note v1\0'), publicKey);
}

/**
 * Seals the note (at most 500 characters) for request-link holders, bound
 * to the request's public key (32 bytes).
 */
export async function sealNote(token, publicKey, note, nonce = null) {
  const chars = charCount(note);
  if (chars > MAX_NOTE_CHARS) {
    throw new OtmError('MessageTooLong', `the note has ${chars} characters; the maximum is ${MAX_NOTE_CHARS}`, {
      chars,
      max: MAX_NOTE_CHARS,
    });
  }
  const utf8 = encoder.encode(note);
  const block = new Uint8Array(NOTE_BLOCK_LEN);
  new DataView(block.buffer).setUint32(0, utf8.length, false);
  block.set(utf8, 4);
  const iv = nonce ?? globalThis.crypto.getRandomValues(new Uint8Array(12));
  try {
    const sealed = await subtle.encrypt(
      { name: 'AES-GCM', iv, additionalData: noteAad(publicKey), tagLength: 128 },
      await noteKey(token),
      block,
    );
    return concat(iv, new Uint8Array(sealed));
  } finally {
    block.fill(0);
  }
}

/** Opens a sealed note; a wrong token, public key or altered byte: DecryptionFailed. */
export async function openNote(token, publicKey, sealed) {
  if (sealed.length !== SEALED_NOTE_LEN) {
    throw new OtmError('BadSize', `a sealed note is ${SEALED_NOTE_LEN} bytes`, { len: sealed.length });
  }
  let block;
  try {
    block = new Uint8Array(
      await subtle.decrypt(
        { name: 'AES-GCM', iv: sealed.subarray(0, 12), additionalData: noteAad(publicKey), tagLength: 128 },
        await noteKey(token),
        sealed.subarray(12),
      ),
    );
  } catch {
    throw new OtmError('DecryptionFailed', 'the note does not open with this link');
  }
  const malformed = (reason) => new OtmError('MalformedPlaintext', `the note is malformed: ${reason}`, { reason });
  try {
    const len = new DataView(block.buffer).getUint32(0, false);
    if (len > 4 * MAX_NOTE_CHARS) throw malformed("the note's length is over the limit");
    if (block.subarray(4 + len).some((b) => b !== 0)) throw malformed("the note's padding is not all zero");
    let note;
    try {
      note = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(block.subarray(4, 4 + len));
    } catch {
      throw malformed('the note is not valid UTF-8');
    }
    if (charCount(note) > MAX_NOTE_CHARS) throw malformed('the note has more characters than allowed');
    return note;
  } finally {
    block.fill(0);
  }
}

/** The `name=value` pairs of a fragment, each name once, no others. */
function fragmentParams(fragment, names) {
  const values = {};
  for (const part of fragment.split('&')) {
    const eq = part.indexOf('=');
    if (eq < 0) throw new OtmError('BadLink', 'bad link: a fragment parameter has no value');
    const name = part.slice(0, eq);
    if (!names.includes(name)) throw new OtmError('BadLink', 'bad link: unknown fragment parameter');
    if (name in values) throw new OtmError('BadLink', 'bad link: a fragment parameter is given twice');
    values[name] = part.slice(eq + 1);
  }
  return values;
}

const REQUEST_LINK_ERRORS = {
  noFragment: ['not a request link: /request/{id}#pk=…&t=… expected'],
  noPath: ['not a request link: /request/{id}#pk=…&t=… expected'],
  badId: ['the ID in the link is malformed'],
};
const RECEIVE_LINK_ERRORS = {
  noFragment: ['not a receive link: /receive/{id}#r=… expected'],
  noPath: ['not a receive link: /receive/{id}#r=… expected'],
  badId: ['the ID in the link is malformed'],
};

/** `{base}/request/{id}#pk=…&t=…` (id as text, key and token as bytes). */
export function formatRequestLink(base, id, publicKey, token) {
  if (!isValidId(id)) throw new OtmError('BadId', 'the request ID is malformed');
  return `${formatBase(base)}${REQUEST_PATH_PREFIX}${id}#pk=${encodeBase64url(publicKey)}&t=${encodeBase64url(token)}`;
}

/** Parses a request link strictly: `{ base, id, publicKey, token }`. */
export function parseRequestLink(text) {
  const { base, id, fragment } = splitLink(text, REQUEST_PATH_PREFIX, REQUEST_LINK_ERRORS);
  const v = fragmentParams(fragment, ['pk', 't']);
  const exact = (value, what) => {
    try {
      return decodeExact(value ?? '', 32, 'BadLink', what);
    } catch {
      throw new OtmError('BadLink', `bad link: the request link's ${what} is missing or malformed`);
    }
  };
  return { base, id, publicKey: exact(v.pk, 'key'), token: exact(v.t, 'token') };
}

/** `{base}/receive/{id}#r=…[&p=1]`. */
export function formatReceiveLink(base, id, secret, passphrase) {
  if (!isValidId(id)) throw new OtmError('BadId', 'the request ID is malformed');
  checkSecret(secret);
  return `${formatBase(base)}${RECEIVE_PATH_PREFIX}${id}#r=${encodeBase64url(secret)}${passphrase ? '&p=1' : ''}`;
}

/** Parses a receive link strictly: `{ base, id, secret, passphrase }`. */
export function parseReceiveLink(text) {
  const { base, id, fragment } = splitLink(text, RECEIVE_PATH_PREFIX, RECEIVE_LINK_ERRORS);
  const v = fragmentParams(fragment, ['r', 'p']);
  let secret;
  try {
    secret = decodeExact(v.r ?? '', 32, 'BadLink', 'secret');
  } catch {
    throw new OtmError('BadLink', "bad link: the receive link's secret is missing or malformed");
  }
  if (v.p !== undefined && v.p !== '0' && v.p !== '1') throw new OtmError('BadLink', 'bad link: p must be 0 or 1');
  return { base, id, secret, passphrase: v.p === '1' };
}

