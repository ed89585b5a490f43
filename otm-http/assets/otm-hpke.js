// HPKE (RFC 9180), base mode, with the one cipher suite otm uses:
// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM (the suite of the
// RFC's appendix A.1). WebCrypto has X25519, HMAC-SHA-256 and AES-GCM but no
// HPKE, so the RFC's key schedule is written here on those primitives, and
// checked against the RFC's vectors (otm-core/tests/data/hpke_rfc9180_a1.json)
// in Node and in Chromium, like otm-core's Rust version is.
//
// Works in browsers and in Node (globalThis.crypto); touches no DOM.

const subtle = globalThis.crypto.subtle;
const enc = new TextEncoder();

const KEM_SUITE = new Uint8Array([0x4b, 0x45, 0x4d, 0x00, 0x20]); // "KEM" 0x0020
const HPKE_SUITE = new Uint8Array([0x48, 0x50, 0x4b, 0x45, 0x00, 0x20, 0x00, 0x01, 0x00, 0x01]);
const NK = 16;
const NN = 12;
const NH = 32;

/** The length of an X25519 public key, and so of `enc`. */
export const PUBLIC_KEY_LEN = 32;

/** Raised when a ciphertext does not open, or a key is of low order. */
export class HpkeError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'HpkeError';
    this.code = code;
  }
}

/** The bytes of `parts`, one after the other. */
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function hmac(key, data) {
  // HMAC keys of length 0 are refused by WebCrypto; HMAC pads the key
  // with zeros to the block size, so an empty salt equals 32 zero bytes.
  const raw = key.length === 0 ? new Uint8Array(NH) : key;
  const k = await subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await subtle.sign('HMAC', k, data));
}

/** LabeledExtract(salt, label, ikm). */
async function labeledExtract(suite, salt, label, ikm) {
  return hmac(salt, concat(enc.encode('HPKE-v1'), suite, enc.encode(label), ikm));
}

/** LabeledExpand(prk, label, info, L): HKDF-Expand, written out. */
async function labeledExpand(suite, prk, label, info, length) {
  const labeled = concat(
    new Uint8Array([length >> 8, length & 0xff]),
    enc.encode('HPKE-v1'),
    suite,
    enc.encode(label),
    info,
  );
  const out = new Uint8Array(length);
  let previous = new Uint8Array(0);
  for (let i = 1, at = 0; at < length; i++) {
    previous = await hmac(prk, concat(previous, labeled, new Uint8Array([i])));
    out.set(previous.subarray(0, Math.min(NH, length - at)), at);
    at += NH;
  }
  return out;
}

// PKCS #8 wrapping of a raw X25519 private key (RFC 8410): WebCrypto
// imports X25519 private keys as PKCS #8 or JWK, not raw.
const PKCS8_PREFIX = new Uint8Array([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
]);

/**
 * DeriveKeyPair(ikm): `{ privateKey }` (a non-extractable X25519 CryptoKey
 * for deriveBits) and `publicKey` (the 32 raw bytes).
 */
export async function deriveKeyPair(ikm) {
  const prk = await labeledExtract(KEM_SUITE, new Uint8Array(0), 'dkp_prk', ikm);
  const sk = await labeledExpand(KEM_SUITE, prk, 'sk', new Uint8Array(0), 32);
  const pkcs8 = concat(PKCS8_PREFIX, sk);
  sk.fill(0);
  // Extractable once, to read the public half (JWK "x"); then a
  // non-extractable copy is what the caller keeps.
  const exportable = await subtle.importKey('pkcs8', pkcs8, { name: 'X25519' }, true, ['deriveBits']);
  const jwk = await subtle.exportKey('jwk', exportable);
  const privateKey = await subtle.importKey('pkcs8', pkcs8, { name: 'X25519' }, false, ['deriveBits']);
  pkcs8.fill(0);
  const publicKey = base64urlBytes(jwk.x);
  jwk.d = '';
  return { privateKey, publicKey };
}

function base64urlBytes(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

async function dh(privateKey, publicKeyBytes) {
  let shared;
  try {
    const pub = await subtle.importKey('raw', publicKeyBytes, { name: 'X25519' }, false, []);
    shared = new Uint8Array(await subtle.deriveBits({ name: 'X25519', public: pub }, privateKey, 256));
  } catch {
    // WebCrypto refuses a low-order point outright.
    throw new HpkeError('LowOrderKey', 'the public key is of low order');
  }
  if (shared.every((b) => b === 0)) throw new HpkeError('LowOrderKey', 'the public key is of low order');
  return shared;
}

async function extractAndExpand(dhBytes, kemContext) {
  const prk = await labeledExtract(KEM_SUITE, new Uint8Array(0), 'eae_prk', dhBytes);
  return labeledExpand(KEM_SUITE, prk, 'shared_secret', kemContext, NH);
}

/** An encryption context of the base mode. */
export class Context {
  constructor(key, baseNonce, exporterSecret) {
    this.key = key; // AES-GCM CryptoKey, not extractable
    this.baseNonce = baseNonce;
    this.exporterSecret = exporterSecret;
    this.seq = 0;
  }

  /** The nonce of the current sequence number. */
  nonce() {
    const nonce = this.baseNonce.slice();
    let seq = BigInt(this.seq);
    for (let i = NN - 1; i >= NN - 8; i--) {
      nonce[i] ^= Number(seq & 0xffn);
      seq >>= 8n;
    }
    return nonce;
  }

  /** ContextS.Seal(aad, pt). */
  async seal(aad, plaintext) {
    const ct = await subtle.encrypt(
      { name: 'AES-GCM', iv: this.nonce(), additionalData: aad, tagLength: 128 },
      this.key,
      plaintext,
    );
    this.seq += 1;
    return new Uint8Array(ct);
  }

  /** ContextR.Open(aad, ct); HpkeError "Open" when it does not open. */
  async open(aad, ciphertext) {
    let pt;
    try {
      pt = await subtle.decrypt(
        { name: 'AES-GCM', iv: this.nonce(), additionalData: aad, tagLength: 128 },
        this.key,
        ciphertext,
      );
    } catch {
      throw new HpkeError('Open', 'the ciphertext does not open with this key');
    }
    this.seq += 1;
    return new Uint8Array(pt);
  }

  /** Context.Export(exporter_context, L). */
  export(exporterContext, length) {
    return labeledExpand(HPKE_SUITE, this.exporterSecret, 'sec', exporterContext, length);
  }

  /** Forgets the secrets this context holds. */
  wipe() {
    this.baseNonce.fill(0);
    this.exporterSecret.fill(0);
  }
}

async function keySchedule(sharedSecret, info) {
  const empty = new Uint8Array(0);
  const pskIdHash = await labeledExtract(HPKE_SUITE, empty, 'psk_id_hash', empty);
  const infoHash = await labeledExtract(HPKE_SUITE, empty, 'info_hash', info);
  const context = concat(new Uint8Array([0]), pskIdHash, infoHash);
  const secret = await labeledExtract(HPKE_SUITE, sharedSecret, 'secret', empty);
  const keyBytes = await labeledExpand(HPKE_SUITE, secret, 'key', context, NK);
  const baseNonce = await labeledExpand(HPKE_SUITE, secret, 'base_nonce', context, NN);
  const exporterSecret = await labeledExpand(HPKE_SUITE, secret, 'exp', context, NH);
  secret.fill(0);
  const key = await subtle.importKey('raw', keyBytes, 'AES-GCM', false, ['encrypt', 'decrypt']);
  keyBytes.fill(0);
  return new Context(key, baseNonce, exporterSecret);
}

/**
 * SetupBaseS(pkR, info): `{ enc, context }`. The ephemeral key pair comes
 * from 32 fresh random bytes, or from `ikmE` (the RFC's vectors).
 */
export async function setupSender(recipientPublicKey, info, ikmE = null) {
  const ikm = ikmE ?? globalThis.crypto.getRandomValues(new Uint8Array(32));
  const ephemeral = await deriveKeyPair(ikm);
  if (!ikmE) ikm.fill(0);
  const shared = await dh(ephemeral.privateKey, recipientPublicKey);
  const kemContext = concat(ephemeral.publicKey, recipientPublicKey);
  const sharedSecret = await extractAndExpand(shared, kemContext);
  shared.fill(0);
  const context = await keySchedule(sharedSecret, info);
  sharedSecret.fill(0);
  return { enc: ephemeral.publicKey, context };
}

/** SetupBaseR(enc, skR, info) for a key pair from deriveKeyPair. */
export async function setupRecipient(encBytes, recipient, info) {
  const shared = await dh(recipient.privateKey, encBytes);
  const kemContext = concat(encBytes, recipient.publicKey);
  const sharedSecret = await extractAndExpand(shared, kemContext);
  shared.fill(0);
  const context = await keySchedule(sharedSecret, info);
  sharedSecret.fill(0);
  return context;
}
