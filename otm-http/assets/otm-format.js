// otm format version 1 in JavaScript (see docs/FORMAT.md).
//
// Pure module: no DOM, only WebCrypto (globalThis.crypto), TextEncoder and
// TextDecoder, so it runs in browsers and in Node 20 alike. Error codes are
// the variant names of the Rust `otm_core::Error`, so both implementations
// report the same thing for the same input.
//
// One file past 500 lines on purpose: it is the whole format (encodings, key
// schedule, envelope, links and status links) in one module, mirroring
// otm-core and checked against the same vectors.

// ---------------------------------------------------------------------------
// Constants

const MAGIC = Object.freeze([0x4f, 0x54, 0x4d]); // "OTM"
const HEADER_LEN = 17;
const NONCE_LEN = 12;
const TAG_LEN = 16;
const KEY_LEN = 32;
const ID_LEN = 16;
const CLAIM_LEN = 32;
const ACCESS_LEN = 32;
const MANAGE_TOKEN_LEN = 32;
const FLAG_PASSPHRASE = 0x01;
const MANAGE_PATH_PREFIX = '/manage/';

export const FORMAT_VERSION = 1;
export const MAX_MESSAGE_CHARS = 8000;
export const MAX_PASSPHRASE_CHARS = 1024;
export const PADDING_BUCKETS = Object.freeze([256, 512, 1024, 2048, 4096, 8192, 16384, 32768]);
export const MIN_ENVELOPE_LEN = HEADER_LEN + PADDING_BUCKETS[0] + TAG_LEN; // 289
export const MAX_ENVELOPE_LEN = HEADER_LEN + PADDING_BUCKETS[PADDING_BUCKETS.length - 1] + TAG_LEN; // 32801
export const PBKDF2_ITERATIONS = 600000;
export const LINK_PATH_PREFIX = '/otm/';

const LEN_PREFIX = 4;
const INFO_SALT = 'otm v1 passphrase salt';
const INFO_CONTENT = 'otm v1 content key';
const INFO_CLAIM = 'otm v1 claim proof';
const INFO_ACCESS = 'otm v1 access proof';

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

function subtle() {
  const c = globalThis.crypto;
  if (!c || !c.subtle) {
    throw new Error('WebCrypto is not available (a secure context, https or localhost, is required)');
  }
  return c.subtle;
}

// ---------------------------------------------------------------------------
// Errors

/**
 * An error of the otm format. `code` is the name of the matching Rust
 * `otm_core::Error` variant (for example "DecryptionFailed"). The only code
 * with no Rust counterpart is "BadEncoding": envelope text from a transport
 * that is not strict base64url.
 */
export class OtmError extends Error {
  constructor(code, message, details = {}) {
    super(message);
    this.name = 'OtmError';
    this.code = code;
    for (const [k, v] of Object.entries(details)) this[k] = v;
  }
}

// ---------------------------------------------------------------------------
// Characters (Unicode scalar values)

/** Replaces lone surrogates with U+FFFD, as TextEncoder would. */
export function toWellFormed(text) {
  if (typeof text.toWellFormed === 'function') return text.toWellFormed();
  let out = '';
  for (const ch of text) {
    // Iterating by code point yields a lone surrogate as a single unit.
    const c = ch.charCodeAt(0);
    out += ch.length === 1 && c >= 0xd800 && c <= 0xdfff ? '\uFFFD' : ch;
  }
  return out;
}

/** Number of Unicode scalar values, what Rust's `str::chars().count()` gives. */
export function charCount(text) {
  return Array.from(text).length;
}

// Rust's `char::is_whitespace` (the Unicode White_Space property). Unlike
// JavaScript's `trim()` it includes U+0085 and excludes U+FEFF.
const WS = '\\t\\n\\v\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000';
const TRIM_RE = new RegExp(`^[${WS}]+|[${WS}]+$`, 'g');
const WS_OR_CONTROL_RE = new RegExp(`[${WS}\\u0000-\\u001F\\u007F-\\u009F]`);

/** Trims the way Rust's `str::trim` does. */
function rustTrim(text) {
  return text.replace(TRIM_RE, '');
}

// ---------------------------------------------------------------------------
// Base64url, unpadded, strict

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const LOOKUP = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) LOOKUP[ALPHABET.charCodeAt(i)] = i;

/** Length of the unpadded base64url text for `n` bytes: ceil(4n / 3). */
export function encodedLen(n) {
  return Math.ceil((n * 4) / 3);
}

/** Encodes bytes as unpadded base64url. */
export function encodeBase64url(bytes) {
  const b = toBytes(bytes);
  const parts = [];
  let chunk = '';
  let i = 0;
  for (; i + 3 <= b.length; i += 3) {
    const n = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2];
    chunk += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63] + ALPHABET[n & 63];
    if (chunk.length >= 4096) {
      parts.push(chunk);
      chunk = '';
    }
  }
  const rest = b.length - i;
  if (rest === 1) {
    const n = b[i] << 16;
    chunk += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63];
  } else if (rest === 2) {
    const n = (b[i] << 16) | (b[i + 1] << 8);
    chunk += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63];
  }
  parts.push(chunk);
  return parts.join('');
}

// Returns the bytes, or a reason string when the text is not strict base64url.
function decodeStrict(text) {
  if (typeof text !== 'string') return 'not a string';
  const len = text.length;
  if (len % 4 === 1) return 'impossible length';
  const out = new Uint8Array(Math.floor((len * 3) / 4));
  let o = 0;
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < len; i++) {
    const c = text.charCodeAt(i);
    const v = c < 128 ? LOOKUP[c] : -1;
    if (v < 0) return 'contains a character outside the base64url alphabet';
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  // Left-over bits of the last character must be zero (canonical form).
  if (bits > 0 && (acc & ((1 << bits) - 1)) !== 0) return 'not canonical base64url';
  return out;
}

/**
 * Decodes strict unpadded base64url of any length (used for envelopes sent
 * as text). Throws OtmError "BadEncoding".
 */
export function decodeBase64url(text) {
  const r = decodeStrict(text);
  if (typeof r === 'string') throw new OtmError('BadEncoding', `bad base64url: ${r}`);
  return r;
}

// Alternative names for the two helpers above.
export { encodeBase64url as base64urlEncode, decodeBase64url as base64urlDecode };

/**
 * Decodes exactly `n` bytes from strict base64url (FORMAT.md section 2).
 * Throws OtmError with `code` (BadKey, BadId, BadClaim, BadToken).
 */
export function decodeExact(text, n, code = 'BadEncoding', what = 'value') {
  if (typeof text !== 'string') throw new OtmError(code, `bad ${what}: not text`);
  const expected = encodedLen(n);
  if (text.length !== expected) {
    throw new OtmError(code, `bad ${what}: ${text.length < expected ? 'too short' : 'too long'}`);
  }
  const r = decodeStrict(text);
  if (typeof r === 'string') throw new OtmError(code, `bad ${what}: ${r}`);
  if (r.length !== n) throw new OtmError(code, `bad ${what}: not canonical base64url`);
  return r;
}

export const parseKey = (text) => decodeExact(text, KEY_LEN, 'BadKey', 'key');
export const parseId = (text) => decodeExact(text, ID_LEN, 'BadId', 'message ID');
export const parseClaim = (text) => decodeExact(text, CLAIM_LEN, 'BadClaim', 'claim value');
/** A sender's management token (32 bytes). Throws OtmError "BadToken", as Rust's `ManageToken` does. */
export const parseManageToken = (text) => decodeExact(text, MANAGE_TOKEN_LEN, 'BadToken', 'management token');

/** True when `text` is a canonical 22-character message ID. */
export function isValidId(text) {
  try {
    parseId(text);
    return true;
  } catch {
    return false;
  }
}

function toBytes(value) {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  throw new TypeError('expected a Uint8Array');
}

// ---------------------------------------------------------------------------
// Keys

/** A fresh 256-bit key from the CSPRNG. Zero it with `.fill(0)` after use. */
export function generateKey() {
  const key = new Uint8Array(KEY_LEN);
  globalThis.crypto.getRandomValues(key);
  return key;
}

function checkKeyBytes(key) {
  if (!(key instanceof Uint8Array) || key.length !== KEY_LEN) {
    throw new OtmError('BadKey', 'bad key: a key is 32 bytes');
  }
}

/**
 * Normalises a passphrase as FORMAT.md 4.3 says: lone surrogates to U+FFFD,
 * NFC, then 1..=1024 scalar values. Returns the normalised text or throws
 * OtmError "BadPassphrase".
 */
export function normalizePassphrase(text) {
  if (typeof text !== 'string') throw new OtmError('BadPassphrase', 'bad passphrase: not text');
  const normalized = toWellFormed(text).normalize('NFC');
  const chars = charCount(normalized);
  if (chars === 0) throw new OtmError('BadPassphrase', 'bad passphrase: it is empty', { reason: 'empty' });
  if (chars > MAX_PASSPHRASE_CHARS) {
    throw new OtmError('BadPassphrase', 'bad passphrase: it is longer than 1024 characters', { reason: 'too long' });
  }
  return normalized;
}

async function hkdf(ikm, label, bits) {
  const s = subtle();
  const k = await s.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  const out = await s.deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt: EMPTY, info: encoder.encode(label) },
    k,
    bits,
  );
  return new Uint8Array(out);
}

/**
 * The key schedule (FORMAT.md section 4) as raw bytes. Exposed for tests and
 * other tools; the app uses `deriveSecrets`, which keeps the content key
 * inside a non-extractable CryptoKey.
 *
 * The access proof comes from the key alone, never from the passphrase
 * (FORMAT.md section 5): a reader with the right link but a wrong passphrase
 * still proves the link (and spends an attempt), while someone who knows
 * only the message ID proves nothing and can spend none.
 *
 * @param {Uint8Array} key 32 bytes
 * @param {string|null} passphrase null (or undefined) for none
 * @returns {Promise<{contentKey: Uint8Array, claimProof: Uint8Array,
 *   accessProof: Uint8Array, passphrase: boolean, passphraseSalt: Uint8Array|null}>}
 */
export async function deriveSecretBytes(key, passphrase) {
  checkKeyBytes(key);
  const hasPassphrase = passphrase !== null && passphrase !== undefined;
  let ikm = key;
  let salt = null;
  if (hasPassphrase) {
    const pw = encoder.encode(normalizePassphrase(passphrase));
    salt = await hkdf(key, INFO_SALT, 128);
    const s = subtle();
    const pk = await s.importKey('raw', pw, 'PBKDF2', false, ['deriveBits']);
    pw.fill(0);
    const stretched = new Uint8Array(
      await s.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations: PBKDF2_ITERATIONS }, pk, 256),
    );
    ikm = new Uint8Array(KEY_LEN + 32);
    ikm.set(key, 0);
    ikm.set(stretched, KEY_LEN);
    stretched.fill(0);
  }
  try {
    const contentKey = await hkdf(ikm, INFO_CONTENT, 256);
    const claimProof = await hkdf(ikm, INFO_CLAIM, 256);
    const accessProof = await hkdf(key, INFO_ACCESS, 256); // the key alone
    return { contentKey, claimProof, accessProof, passphrase: hasPassphrase, passphraseSalt: salt };
  } finally {
    if (ikm !== key) ikm.fill(0);
  }
}

/**
 * Derives the secrets of a message from its key and optional passphrase.
 *
 * @returns {Promise<{contentKey: CryptoKey, claimProof: Uint8Array,
 *   accessProof: Uint8Array, passphrase: boolean}>}
 *   contentKey is a non-extractable AES-GCM key; claimProof (key and
 *   passphrase) and accessProof (key alone) are 32 bytes each (zero them
 *   with `wipeSecrets` when done).
 */
export async function deriveSecrets(key, passphrase) {
  const raw = await deriveSecretBytes(key, passphrase);
  try {
    const contentKey = await subtle().importKey('raw', raw.contentKey, { name: 'AES-GCM' }, false, [
      'encrypt',
      'decrypt',
    ]);
    return {
      contentKey,
      claimProof: raw.claimProof,
      accessProof: raw.accessProof,
      passphrase: raw.passphrase,
    };
  } finally {
    raw.contentKey.fill(0);
  }
}

/** Zeroes the claim proof and the access proof held by a secrets object. */
export function wipeSecrets(secrets) {
  if (!secrets) return;
  if (secrets.claimProof instanceof Uint8Array) secrets.claimProof.fill(0);
  if (secrets.accessProof instanceof Uint8Array) secrets.accessProof.fill(0);
}

// SHA-256 of a 32-byte proof. Both kinds report "BadClaim", as in Rust.
async function verifierOf(proof, len, what) {
  const p = toBytes(proof);
  if (p.length !== len) throw new OtmError('BadClaim', `bad claim value: ${what} is ${len} bytes`);
  return new Uint8Array(await subtle().digest('SHA-256', p));
}

/** The claim verifier: SHA-256 of the 32-byte claim proof. */
export async function claimVerifier(proof) {
  return verifierOf(proof, CLAIM_LEN, 'a claim proof');
}

/** The access verifier: SHA-256 of the 32-byte access proof (`secrets.accessProof`). */
export async function accessVerifier(proof) {
  return verifierOf(proof, ACCESS_LEN, 'an access proof');
}

// ---------------------------------------------------------------------------
// Envelope

/** The bucket for a message of `utf8Len` bytes, or null if none holds it. */
export function bucketFor(utf8Len) {
  for (const b of PADDING_BUCKETS) if (b >= utf8Len + LEN_PREFIX) return b;
  return null;
}

function checkSecrets(secrets) {
  if (!secrets || typeof secrets.passphrase !== 'boolean' || !secrets.contentKey) {
    throw new TypeError('expected secrets from deriveSecrets()');
  }
}

/** Seals a message with a fresh random nonce. Returns the envelope bytes. */
export async function seal(secrets, text) {
  const nonce = new Uint8Array(NONCE_LEN);
  globalThis.crypto.getRandomValues(nonce);
  return sealWithNonce(secrets, text, nonce);
}

/**
 * Seals with a given nonce. For test vectors only: reusing a nonce under one
 * key breaks AES-GCM.
 */
export async function sealWithNonce(secrets, text, nonce) {
  checkSecrets(secrets);
  if (typeof text !== 'string') throw new TypeError('the message must be a string');
  const n = toBytes(nonce);
  if (n.length !== NONCE_LEN) throw new TypeError('the nonce must be 12 bytes');
  const block = padMessage(text);
  const header = new Uint8Array(HEADER_LEN);
  header.set(MAGIC, 0);
  header[3] = FORMAT_VERSION;
  header[4] = secrets.passphrase ? FLAG_PASSPHRASE : 0;
  header.set(n, 5);
  try {
    const body = new Uint8Array(
      await subtle().encrypt(
        { name: 'AES-GCM', iv: header.slice(5, HEADER_LEN), additionalData: header, tagLength: 128 },
        secrets.contentKey,
        block,
      ),
    );
    const envelope = new Uint8Array(HEADER_LEN + body.length);
    envelope.set(header, 0);
    envelope.set(body, HEADER_LEN);
    return envelope;
  } finally {
    block.fill(0);
  }
}

/**
 * Checks an envelope's structure without a key (FORMAT.md 8.1).
 * @returns {{passphrase: boolean, bucket: number}}
 */
export function validate(envelope) {
  const e = toBytes(envelope);
  const len = e.length;
  if (len > MAX_ENVELOPE_LEN) {
    throw new OtmError('TooLarge', `envelope of ${len} bytes exceeds the maximum of ${MAX_ENVELOPE_LEN} bytes`, {
      len,
      max: MAX_ENVELOPE_LEN,
    });
  }
  const truncated = () =>
    new OtmError('Truncated', `envelope is truncated: ${len} bytes, at least ${MIN_ENVELOPE_LEN} are needed`, {
      len,
      min: MIN_ENVELOPE_LEN,
    });
  if (len < 4) throw truncated();
  if (e[0] !== MAGIC[0] || e[1] !== MAGIC[1] || e[2] !== MAGIC[2]) {
    throw new OtmError('BadMagic', 'not an otm envelope: the magic bytes are wrong');
  }
  if (e[3] !== FORMAT_VERSION) {
    throw new OtmError('UnsupportedVersion', `unsupported envelope version ${e[3]} (this library reads version 1)`, {
      version: e[3],
    });
  }
  if (len < HEADER_LEN) throw truncated();
  const flags = e[4];
  if ((flags & ~FLAG_PASSPHRASE) !== 0) {
    throw new OtmError('UnknownFlags', `envelope header has unknown flag bits 0x${flags.toString(16).padStart(2, '0')}`, {
      flags,
    });
  }
  if (len < MIN_ENVELOPE_LEN) throw truncated();
  const bucket = len - HEADER_LEN - TAG_LEN;
  if (!PADDING_BUCKETS.includes(bucket)) {
    throw new OtmError('BadSize', `envelope length ${len} is not a valid padded size`, { len });
  }
  return { passphrase: (flags & FLAG_PASSPHRASE) !== 0, bucket };
}

function malformed(reason) {
  return new OtmError('MalformedPlaintext', `decrypted content is malformed: ${reason}`, { reason });
}

/** Opens an envelope (FORMAT.md 8.2) and returns the message text. */
export async function open(secrets, envelope) {
  checkSecrets(secrets);
  const e = toBytes(envelope);
  const info = validate(e);
  if (info.passphrase && !secrets.passphrase) {
    throw new OtmError('PassphraseRequired', 'this message is protected by a passphrase, but none was given');
  }
  if (!info.passphrase && secrets.passphrase) {
    throw new OtmError('PassphraseNotExpected', 'this message has no passphrase, but one was given');
  }
  const header = e.slice(0, HEADER_LEN);
  let block;
  try {
    block = new Uint8Array(
      await subtle().decrypt(
        { name: 'AES-GCM', iv: header.slice(5, HEADER_LEN), additionalData: header, tagLength: 128 },
        secrets.contentKey,
        e.subarray(HEADER_LEN),
      ),
    );
  } catch {
    throw new OtmError('DecryptionFailed', 'decryption failed: wrong key or passphrase, or the envelope was altered');
  }
  return unpadBlock(block);
}

/**
 * The padded block of a message (FORMAT.md 6.2): its UTF-8 length (4 bytes,
 * big-endian), the text, zeros up to the smallest bucket that holds it.
 * The caller wipes it (fill(0)) once sealed.
 */
export function padMessage(text) {
  if (typeof text !== 'string') throw new TypeError('the message must be a string');
  const message = toWellFormed(text);
  const chars = charCount(message);
  if (chars > MAX_MESSAGE_CHARS) {
    throw new OtmError('MessageTooLong', `message has ${chars} characters; the maximum is ${MAX_MESSAGE_CHARS}`, {
      chars,
      max: MAX_MESSAGE_CHARS,
    });
  }
  const utf8 = encoder.encode(message);
  const bucket = bucketFor(utf8.length);
  if (bucket === null) {
    utf8.fill(0);
    throw new OtmError('MessageTooLong', 'message is too long', { chars, max: MAX_MESSAGE_CHARS });
  }
  const block = new Uint8Array(bucket);
  new DataView(block.buffer).setUint32(0, utf8.length, false);
  block.set(utf8, LEN_PREFIX);
  utf8.fill(0);
  return block;
}

/**
 * The text of a decrypted padded block, checked as strictly as `open`
 * checks it; the block is wiped (fill(0)) either way.
 */
export function unpadBlock(block) {
  try {
    if (block.length < LEN_PREFIX) throw malformed('the padded block has no length prefix');
    const len = new DataView(block.buffer, block.byteOffset, block.byteLength).getUint32(0, false);
    if (len > block.length - LEN_PREFIX) throw malformed('length prefix exceeds the padded block');
    if (bucketFor(len) !== block.length) throw malformed('message is not in the smallest bucket that holds it');
    const end = LEN_PREFIX + len;
    for (let i = end; i < block.length; i++) {
      if (block[i] !== 0) throw malformed('padding is not all zero');
    }
    let text;
    try {
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(block.subarray(LEN_PREFIX, end));
    } catch {
      throw malformed('message is not valid UTF-8');
    }
    const chars = charCount(text);
    if (chars > MAX_MESSAGE_CHARS) {
      throw new OtmError('MessageTooLong', `message has ${chars} characters; the maximum is ${MAX_MESSAGE_CHARS}`, {
        chars,
        max: MAX_MESSAGE_CHARS,
      });
    }
    return text;
  } finally {
    block.fill(0);
  }
}

// ---------------------------------------------------------------------------
// Links (FORMAT.md section 9)

function badLink(reason, part) {
  return new OtmError('BadLink', `bad link: ${reason}`, part === undefined ? { reason } : { reason, part });
}

/** The fragment text without "#": "key=…" plus "&p=1" when a passphrase is set. */
export function formatFragment(key, passphrase) {
  checkKeyBytes(key);
  return `key=${encodeBase64url(key)}${passphrase ? '&p=1' : ''}`;
}

function parseFragmentExact(text) {
  if (text.length === 0) throw badLink('the key is missing');
  const keyFrom = (value) => {
    try {
      return parseKey(value);
    } catch {
      throw badLink('the key is not a valid key');
    }
  };
  if (!text.includes('=')) return { key: keyFrom(text), passphrase: false };
  let key = null;
  let passphrase = null;
  for (const part of text.split('&')) {
    const eq = part.indexOf('=');
    if (eq < 0) throw badLink('a fragment parameter has no value');
    const name = part.slice(0, eq);
    const value = part.slice(eq + 1);
    if (name === 'key') {
      if (key !== null) throw badLink('the key is given twice');
      key = keyFrom(value);
    } else if (name === 'p') {
      if (passphrase !== null) throw badLink('p is given twice');
      if (value === '1') passphrase = true;
      else if (value === '0') passphrase = false;
      else throw badLink('p must be 0 or 1');
    } else {
      throw badLink('unknown fragment parameter');
    }
  }
  if (key === null) throw badLink('the key is missing');
  return { key, passphrase: passphrase ?? false };
}

/**
 * Parses a fragment: "#key=…&p=1", "key=…", or a bare 43-character key.
 * @returns {{key: Uint8Array, passphrase: boolean}}
 */
export function parseFragment(text) {
  if (typeof text !== 'string') throw badLink('the key is missing');
  const t = rustTrim(text);
  return parseFragmentExact(t.startsWith('#') ? t.slice(1) : t);
}

function checkBase(base) {
  let rest;
  if (base.startsWith('https://')) rest = base.slice(8);
  else if (base.startsWith('http://')) rest = base.slice(7);
  else throw badLink('the link must start with http:// or https://');
  if (rest.split('/')[0] === '') throw badLink('the link has no host');
  if (WS_OR_CONTROL_RE.test(base)) throw badLink('the link contains whitespace or control characters');
  if (base.includes('?') || base.includes('#')) throw badLink('the base URL must not contain ? or #');
  return base;
}

/**
 * Splits a link the way Rust's `Link::parse` and `ManageLink::parse` do:
 * trim, split at the first "#", drop a query string and one trailing "/",
 * take the base before the last `prefix` and the ID after it. `why` holds
 * the error reasons, each `[reason, part]`.
 */
export function splitLink(text, prefix, why) {
  if (typeof text !== 'string') throw badLink(...why.noFragment);
  const t = rustTrim(text);
  const hash = t.indexOf('#');
  if (hash < 0) throw badLink(...why.noFragment);
  let url = t.slice(0, hash);
  const q = url.indexOf('?');
  if (q >= 0) url = url.slice(0, q);
  if (url.endsWith('/')) url = url.slice(0, -1);
  const at = url.lastIndexOf(prefix);
  if (at < 0) throw badLink(...why.noPath);
  const base = checkBase(url.slice(0, at).replace(/\/+$/, ''));
  const id = url.slice(at + prefix.length);
  if (!isValidId(id)) throw badLink(...why.badId);
  return { base, id, fragment: t.slice(hash + 1) };
}

/** A link's base, trimmed and checked as Rust's `Link::new` does. */
export function formatBase(base) {
  return checkBase(rustTrim(String(base)).replace(/\/+$/, ''));
}

/**
 * Builds a share link: `{base}/otm/{id}#key=…[&p=1]`. Surrounding whitespace
 * and trailing slashes of `base` are removed, as in Rust's `Link::new`.
 */
export function formatLink(base, id, key, passphrase) {
  const b = formatBase(base);
  parseId(id);
  return `${b}${LINK_PATH_PREFIX}${id}#${formatFragment(key, passphrase)}`;
}

const SHARE_LINK_ERRORS = {
  noFragment: ['the link has no #key= part (it may have been cut off)'],
  noPath: ['the link has no /otm/ path'],
  badId: ['the message ID in the link is malformed'],
};

/**
 * Parses a full share link like Rust's `Link::parse`.
 * @returns {{base: string, id: string, key: Uint8Array, passphrase: boolean}}
 */
export function parseLink(text) {
  const { base, id, fragment } = splitLink(text, LINK_PATH_PREFIX, SHARE_LINK_ERRORS);
  const f = parseFragmentExact(fragment);
  return { base, id, key: f.key, passphrase: f.passphrase };
}

// ---------------------------------------------------------------------------
// The sender's status link (FORMAT.md section 9.5)

/**
 * Builds a status link: `{base}/manage/{id}#token={token}`, as Rust's
 * `ManageLink::new(…).to_url()`. The base is checked and trimmed as for a
 * share link; the ID and token must be canonical (BadId, BadToken).
 */
export function formatManageLink(base, id, token) {
  const b = formatBase(base);
  parseId(id);
  parseManageToken(token).fill(0);
  return `${b}${MANAGE_PATH_PREFIX}${id}#token=${token}`;
}

// `part` tells a page which half of the link is damaged: the token (or the
// whole fragment), or the path with the ID. Base errors have no part.
const MANAGE_LINK_ERRORS = {
  noFragment: ['the status link has no #token= part', 'token'],
  noPath: ['the status link has no /manage/ path', 'id'],
  badId: ['the message ID in the status link is malformed', 'id'],
};

/**
 * Parses a status link as strictly as Rust's `ManageLink::parse`: the
 * lenient parts are those of share links (whitespace around it, a query
 * string, one trailing "/"), and the fragment must be exactly "token="
 * followed by a canonical 43-character token.
 * @returns {{base: string, id: string, token: string}}
 */
export function parseManageLink(text) {
  const { base, id, fragment } = splitLink(text, MANAGE_PATH_PREFIX, MANAGE_LINK_ERRORS);
  const token = fragment.startsWith('token=') ? fragment.slice('token='.length) : null;
  try {
    parseManageToken(token).fill(0);
  } catch {
    throw badLink("the status link's token is malformed", 'token');
  }
  return { base, id, token };
}

// ---------------------------------------------------------------------------
// The group status link (FORMAT.md section 9.6)

const GROUP_PATH = '/group';
const GROUP_SECRET_LEN = 32;
const MANAGE_TOKEN_INFO = encoder.encode('otm manage token v1\0');

/** The most messages one group holds. */
export const MAX_GROUP = 20;
/** The longest label of a group member, in characters. */
export const MAX_LABEL_CHARS = 64;

/**
 * The management token of message `id` under a group secret (both
 * base64url text): HMAC-SHA256(secret, "otm manage token v1" 0x00 id), as
 * Rust's `ManageSecret::token_for`. Resolves to base64url text.
 */
export async function deriveManageToken(secret, id) {
  const secretBytes = decodeExact(secret, GROUP_SECRET_LEN, 'BadToken', 'group secret');
  const idBytes = parseId(id);
  try {
    const key = await subtle().importKey('raw', secretBytes, { name: 'HMAC', hash: 'SHA-256' }, false, [
      'sign',
    ]);
    const data = new Uint8Array(MANAGE_TOKEN_INFO.length + idBytes.length);
    data.set(MANAGE_TOKEN_INFO);
    data.set(idBytes, MANAGE_TOKEN_INFO.length);
    const mac = new Uint8Array(await subtle().sign('HMAC', key, data));
    const token = encodeBase64url(mac);
    mac.fill(0);
    return token;
  } finally {
    secretBytes.fill(0);
  }
}

/**
 * Checks a member's label as Rust's `check_label`: 1 to 64 characters (Unicode
 * scalar values), no control characters. Throws a BadLink OtmError.
 */
export function checkLabel(label) {
  // A lone surrogate is no text (Rust cannot hold it; encodeURIComponent throws).
  if (typeof label !== 'string' || toWellFormed(label) !== label) {
    throw badLink('a label in the group status link is malformed');
  }
  const n = charCount(label);
  if (n === 0 || n > MAX_LABEL_CHARS) throw badLink('a label has 1 to 64 characters');
  // Rust's char::is_control: the Cc category.
  if (/[\u0000-\u001F\u007F-\u009F]/.test(label)) throw badLink('a label has no control characters');
}

/** Percent-encodes everything but ASCII letters, digits and -_.~ (FORMAT.md 9.6). */
function encodeLabel(label) {
  return encodeURIComponent(label).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/**
 * Builds a group status link as Rust's `GroupLink::to_url`: `secret` is the
 * group secret's base64url text or null; `members` is a list of
 * `{id, token, label}` (label null or absent: none). A member whose token
 * derives from the secret is written as its ID alone.
 */
export async function formatGroupLink(base, secret, members) {
  const b = formatBase(base);
  checkMembers(members);
  const parts = [];
  for (const m of members) {
    parseManageToken(m.token).fill(0);
    const derived = secret !== null && (await deriveManageToken(secret, m.id)) === m.token;
    parts.push(derived ? m.id : `${m.id}.${m.token}`);
  }
  let url = `${b}${GROUP_PATH}#`;
  if (secret !== null) {
    decodeExact(secret, GROUP_SECRET_LEN, 'BadToken', 'group secret').fill(0);
    url += `s=${secret}&`;
  }
  url += `m=${parts.join(',')}`;
  if (members.some((m) => m.label != null)) {
    url += `&l=${members.map((m) => (m.label != null ? encodeLabel(m.label) : '')).join(',')}`;
  }
  return url;
}

function checkMembers(members) {
  if (!Array.isArray(members) || members.length === 0 || members.length > MAX_GROUP) {
    throw badLink('a group has 1 to 20 messages');
  }
  const seen = new Set();
  for (const m of members) {
    if (seen.has(m.id)) throw badLink('a message appears twice in the group');
    seen.add(m.id);
    if (m.label != null) checkLabel(m.label);
  }
}

/**
 * Parses a group status link as strictly as Rust's `GroupLink::parse`, with
 * the same reasons. Resolves to {base, secret (text or null), members: [{id,
 * token, label}]}, every token given or derived from the secret.
 */
export async function parseGroupLink(text) {
  if (typeof text !== 'string') throw badLink('the group status link has no # part');
  const t = rustTrim(text);
  const hash = t.indexOf('#');
  if (hash < 0) throw badLink('the group status link has no # part');
  let url = t.slice(0, hash);
  const fragment = t.slice(hash + 1);
  const q = url.indexOf('?');
  if (q >= 0) url = url.slice(0, q);
  if (url.endsWith('/')) url = url.slice(0, -1);
  if (!url.endsWith(GROUP_PATH)) throw badLink('the group status link has no /group path');
  const baseText = url.slice(0, -GROUP_PATH.length);
  const parts = fragment.split('&');
  let i = 0;
  let secret = null;
  if (parts[i].startsWith('s=')) {
    secret = parts[i].slice(2);
    try {
      decodeExact(secret, GROUP_SECRET_LEN, 'BadToken', 'group secret').fill(0);
    } catch {
      throw badLink("the group status link's secret is malformed");
    }
    i += 1;
  }
  if (i >= parts.length || !parts[i].startsWith('m=')) throw badLink('the group status link has no m= part');
  const ids = parts[i].slice(2);
  i += 1;
  let labels = null;
  if (i < parts.length) {
    if (!parts[i].startsWith('l=')) throw badLink('the group status link has an unknown part');
    labels = parts[i].slice(2);
    i += 1;
  }
  if (i < parts.length) throw badLink('the group status link has an unknown part');
  const members = [];
  for (const entry of ids.split(',')) {
    if (members.length === MAX_GROUP) throw badLink('the group status link names too many messages');
    const dot = entry.indexOf('.');
    const id = dot < 0 ? entry : entry.slice(0, dot);
    const given = dot < 0 ? null : entry.slice(dot + 1);
    if (!isValidId(id)) throw badLink('a message ID in the group status link is malformed');
    let token;
    if (given !== null) {
      try {
        parseManageToken(given).fill(0);
      } catch {
        throw badLink('a token in the group status link is malformed');
      }
      token = given;
    } else if (secret !== null) {
      token = await deriveManageToken(secret, id);
    } else {
      throw badLink('the group status link has neither a secret nor a token');
    }
    members.push({ id, token, label: null });
  }
  if (labels !== null) {
    const list = labels.split(',');
    if (list.length !== members.length) throw badLink('the group status link has not one label per message');
    list.forEach((raw, n) => {
      let label;
      try {
        label = decodeURIComponent(raw);
      } catch {
        throw badLink('a label in the group status link is malformed');
      }
      members[n].label = label === '' ? null : label;
    });
  }
  const base = formatBase(baseText);
  checkMembers(members);
  return { base, secret, members };
}
