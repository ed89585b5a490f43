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
  deriveSecrets,
  deriveSecretBytes,
  padMessage,
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
