// Run from the workspace root: node --test otm-http/assets/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import * as otm from '../otm-format.js';

const vectorsUrl = new URL('../../../otm-core/tests/data/envelope_v1_vectors.json', import.meta.url);
const data = JSON.parse(readFileSync(vectorsUrl, 'utf8'));

const hex = (bytes) => Buffer.from(bytes).toString('hex');
const fromHex = (text) => new Uint8Array(Buffer.from(text, 'hex'));

function assertOtmError(err, code) {
  assert.ok(err instanceof otm.OtmError, `expected OtmError, got ${err && err.name}: ${err && err.message}`);
  assert.equal(err.code, code, err.message);
  return true;
}

async function rejectsWith(promiseOrFn, code) {
  await assert.rejects(promiseOrFn, (err) => assertOtmError(err, code));
}

function throwsWith(fn, code) {
  assert.throws(fn, (err) => assertOtmError(err, code));
}

test('vector file header', () => {
  assert.equal(data.format_version, otm.FORMAT_VERSION);
  assert.equal(data.pbkdf2_iterations, otm.PBKDF2_ITERATIONS);
  assert.ok(data.vectors.length >= 8);
  assert.ok(data.fail.length >= 14);
});

for (const v of data.vectors) {
  test(`vector ${v.name}`, async () => {
    const key = otm.parseKey(v.key);
    assert.equal(otm.encodeBase64url(key), v.key);

    if (v.passphrase !== null) {
      const nfc = otm.normalizePassphrase(v.passphrase);
      assert.equal(hex(new TextEncoder().encode(nfc)), v.passphrase_nfc_utf8_hex);
    }

    const raw = await otm.deriveSecretBytes(key, v.passphrase);
    assert.equal(hex(raw.contentKey), v.content_key_hex, 'content key');
    assert.equal(otm.encodeBase64url(raw.claimProof), v.claim_proof, 'claim proof');
    assert.equal(otm.encodeBase64url(raw.accessProof), v.access_proof, 'access proof');
    assert.equal(raw.passphrase, v.passphrase !== null);
    assert.equal(raw.passphraseSalt === null ? null : hex(raw.passphraseSalt), v.pbkdf2_salt_hex, 'PBKDF2 salt');

    const secrets = await otm.deriveSecrets(key, v.passphrase);
    assert.equal(secrets.contentKey.extractable, false);
    assert.equal(otm.encodeBase64url(secrets.claimProof), v.claim_proof);
    const verifier = await otm.claimVerifier(secrets.claimProof);
    assert.equal(otm.encodeBase64url(verifier), v.claim_verifier, 'claim verifier');
    assert.deepEqual(otm.parseClaim(v.claim_verifier), verifier);
    assert.equal(otm.encodeBase64url(secrets.accessProof), v.access_proof);
    const access = await otm.accessVerifier(secrets.accessProof);
    assert.equal(otm.encodeBase64url(access), v.access_verifier, 'access verifier');
    assert.deepEqual(otm.parseClaim(v.access_verifier), access);
    // The two proofs never coincide, nor does either equal its verifier.
    assert.notEqual(v.access_proof, v.claim_proof);
    assert.notEqual(v.access_verifier, v.claim_verifier);

    const envelope = otm.decodeBase64url(v.envelope);
    assert.equal(envelope.length, v.envelope_len);
    assert.deepEqual(otm.validate(envelope), {
      passphrase: v.passphrase !== null,
      bucket: v.envelope_len - 33,
    });

    assert.equal(otm.charCount(v.message), v.chars);
    const opened = await otm.open(secrets, envelope);
    assert.equal(opened, v.message);

    const resealed = await otm.sealWithNonce(secrets, v.message, fromHex(v.nonce_hex));
    assert.equal(otm.encodeBase64url(resealed), v.envelope, 're-seal must match byte for byte');

    // A fresh random seal opens to the same text, with a different nonce.
    const fresh = await otm.seal(secrets, v.message);
    assert.equal(fresh.length, v.envelope_len);
    assert.equal(await otm.open(secrets, fresh), v.message);
  });
}

test('access proof: from the key alone, whatever the passphrase', async () => {
  const byKey = new Map();
  for (const v of data.vectors) {
    if (!byKey.has(v.key)) byKey.set(v.key, []);
    byKey.get(v.key).push(v);
  }
  let pairs = 0;
  for (const [key, entries] of byKey) {
    // One access proof and verifier per key, with or without a passphrase.
    assert.equal(new Set(entries.map((v) => v.access_proof)).size, 1, key);
    assert.equal(new Set(entries.map((v) => v.access_verifier)).size, 1, key);
    for (const plain of entries.filter((v) => v.passphrase === null)) {
      for (const guarded of entries.filter((v) => v.passphrase !== null)) {
        assert.equal(guarded.access_proof, plain.access_proof, `${guarded.name} / ${plain.name}`);
        assert.equal(guarded.access_verifier, plain.access_verifier, `${guarded.name} / ${plain.name}`);
        assert.notEqual(guarded.claim_proof, plain.claim_proof, `${guarded.name} / ${plain.name}`);
        assert.notEqual(guarded.claim_verifier, plain.claim_verifier, `${guarded.name} / ${plain.name}`);
        pairs++;
      }
    }
  }
  assert.ok(pairs >= 2, 'the vectors pair a key with and without a passphrase');
  // Different keys give different access proofs.
  assert.equal(new Set(data.vectors.map((v) => v.access_proof)).size, byKey.size);

  // Without a passphrase the access proof is one more output of the PRK.
  const v = data.vectors.find((x) => x.name === 'plain_hello');
  const key = otm.parseKey(v.key);
  const ikm = await crypto.subtle.importKey('raw', key, 'HKDF', false, ['deriveBits']);
  const label = new TextEncoder().encode('otm v1 access proof');
  assert.equal(label.length, 19);
  const bits = await crypto.subtle.deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: label },
    ikm,
    256,
  );
  assert.equal(otm.encodeBase64url(new Uint8Array(bits)), v.access_proof);

  await rejectsWith(otm.accessVerifier(new Uint8Array(31)), 'BadClaim');
  await rejectsWith(otm.claimVerifier(new Uint8Array(33)), 'BadClaim');
});

for (const f of data.fail) {
  test(`fail vector ${f.name} -> ${f.error}`, async () => {
    const key = otm.parseKey(f.key);
    const secrets = await otm.deriveSecrets(key, f.passphrase);
    const envelope = otm.decodeBase64url(f.envelope);
    await rejectsWith(otm.open(secrets, envelope), f.error);
    // validate() reports the same error for every structural problem.
    const structural = ['Truncated', 'BadMagic', 'UnsupportedVersion', 'UnknownFlags', 'BadSize', 'TooLarge'];
    if (structural.includes(f.error)) throwsWith(() => otm.validate(envelope), f.error);
    else otm.validate(envelope);
  });
}

test('worked example: plain_hello layout', async () => {
  const v = data.vectors.find((x) => x.name === 'plain_hello');
  const env = otm.decodeBase64url(v.envelope);
  assert.equal(hex(env.subarray(0, 5)), '4f544d0100');
  assert.equal(hex(env.subarray(5, 17)), '101112131415161718191a1b');
  assert.equal(hex(env.subarray(17, 33)), 'a561a27e89b60a59c8af455342e0c829');
  assert.equal(hex(env.subarray(273)), '9cb99ef92d0cf27c4d422d716c68631a');
});

test('round trips with random keys, with and without passphrase', async () => {
  const messages = ['', 'x', 'the door code is 4711', '😀'.repeat(8000), 'é'.repeat(8000), 'a'.repeat(252), 'a'.repeat(253)];
  for (const msg of messages) {
    const key = otm.generateKey();
    assert.equal(key.length, 32);
    const s = await otm.deriveSecrets(key, null);
    const env = await otm.seal(s, msg);
    assert.equal(env.length, otm.bucketFor(new TextEncoder().encode(msg).length) + 33);
    assert.equal(await otm.open(s, env), msg);
    // Another key cannot open it.
    const other = await otm.deriveSecrets(otm.generateKey(), null);
    await rejectsWith(otm.open(other, env), 'DecryptionFailed');
  }
  const key = otm.generateKey();
  const withPass = await otm.deriveSecrets(key, 'hunter2 ünïcödé');
  const without = await otm.deriveSecrets(key, null);
  assert.notDeepEqual(withPass.claimProof, without.claimProof);
  assert.deepEqual(withPass.accessProof, without.accessProof);
  assert.equal(withPass.accessProof.length, 32);
  const env = await otm.seal(withPass, 'guarded');
  assert.equal(env[4], 1);
  assert.equal(await otm.open(withPass, env), 'guarded');
  await rejectsWith(otm.open(without, env), 'PassphraseRequired');
  const wrong = await otm.deriveSecrets(key, 'hunter3 ünïcödé');
  await rejectsWith(otm.open(wrong, env), 'DecryptionFailed');
  const plainEnv = await otm.seal(without, 'open');
  await rejectsWith(otm.open(withPass, plainEnv), 'PassphraseNotExpected');

  // Tampering anywhere fails as DecryptionFailed.
  // (Flag flips are covered by the fail vectors.)
  for (const i of [5, 16, 17, 100, env.length - 1]) {
    const t = env.slice();
    t[i] ^= 1;
    await rejectsWith(otm.open(withPass, t), 'DecryptionFailed');
  }
  otm.wipeSecrets(withPass);
  assert.ok(withPass.claimProof.every((b) => b === 0));
  assert.ok(withPass.accessProof.every((b) => b === 0));
  // Each secrets object holds its own copy: wiping one leaves the other.
  assert.ok(without.accessProof.some((b) => b !== 0));
});

test('character counting and limits', async () => {
  assert.equal(otm.charCount('😀'.repeat(8000)), 8000);
  assert.equal('😀'.repeat(8000).length, 16000);
  assert.equal(otm.charCount('hello'), 5);
  assert.equal(otm.charCount('\u00e9'), 1);
  assert.equal(otm.charCount('e\u0301'), 2);
  assert.equal(otm.charCount('👍🏽'), 2);
  assert.equal(otm.charCount('a\uD800b'), 3);
  assert.equal(otm.toWellFormed('a\uD800b\uDC00'), 'a\uFFFDb\uFFFD');

  const s = await otm.deriveSecrets(otm.generateKey(), null);
  await rejectsWith(otm.seal(s, 'a'.repeat(8001)), 'MessageTooLong');
  await rejectsWith(otm.seal(s, '😀'.repeat(8001)), 'MessageTooLong');
  const big = await otm.seal(s, '😀'.repeat(8000));
  assert.equal(big.length, otm.MAX_ENVELOPE_LEN);

  // A lone surrogate is sealed as U+FFFD (3 UTF-8 bytes).
  const env = await otm.seal(s, 'a\uD800');
  assert.equal(await otm.open(s, env), 'a\uFFFD');
  // A leading BOM is kept.
  const bom = await otm.seal(s, '\uFEFFbom');
  assert.equal(await otm.open(s, bom), '\uFEFFbom');

  assert.equal(otm.MAX_MESSAGE_CHARS, 8000);
  assert.equal(otm.MAX_ENVELOPE_LEN, 32801);
  assert.equal(otm.MIN_ENVELOPE_LEN, 289);
  assert.equal(otm.PBKDF2_ITERATIONS, 600000);
  assert.deepEqual([...otm.PADDING_BUCKETS], [256, 512, 1024, 2048, 4096, 8192, 16384, 32768]);
  assert.equal(otm.bucketFor(252), 256);
  assert.equal(otm.bucketFor(253), 512);
  assert.equal(otm.bucketFor(32764), 32768);
  assert.equal(otm.bucketFor(32765), null);
});

test('passphrase rules', async () => {
  throwsWith(() => otm.normalizePassphrase(''), 'BadPassphrase');
  assert.equal(otm.normalizePassphrase('x'.repeat(1024)).length, 1024);
  throwsWith(() => otm.normalizePassphrase('x'.repeat(1025)), 'BadPassphrase');
  // 1024 emoji are 1024 scalar values even though .length is 2048.
  assert.equal(otm.charCount(otm.normalizePassphrase('🔑'.repeat(1024))), 1024);
  // 1025 decomposed characters that compose to 1024 after NFC are fine.
  assert.equal(otm.charCount(otm.normalizePassphrase('e\u0301' + 'x'.repeat(1023))), 1024);
  assert.equal(otm.normalizePassphrase('cafe\u0301'), 'caf\u00e9');
  assert.equal(otm.normalizePassphrase('  spaced  '), '  spaced  ');
  await rejectsWith(otm.deriveSecrets(otm.generateKey(), ''), 'BadPassphrase');
  await rejectsWith(otm.deriveSecrets(new Uint8Array(31), null), 'BadKey');
});

test('base64url is strict', () => {
  const key = new Uint8Array(32).map((_, i) => i);
  const text = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8';
  assert.equal(otm.encodeBase64url(key), text);
  assert.deepEqual(otm.parseKey(text), key);
  throwsWith(() => otm.parseKey(text.slice(0, 42)), 'BadKey');
  throwsWith(() => otm.parseKey(text + 'A'), 'BadKey');
  throwsWith(() => otm.parseKey(text + '='), 'BadKey');
  throwsWith(() => otm.parseKey(text.slice(0, 42) + '9'), 'BadKey'); // non-zero unused bits
  throwsWith(() => otm.parseKey(text.slice(0, 42) + '='), 'BadKey');
  throwsWith(() => otm.parseKey('+' + text.slice(1)), 'BadKey');
  throwsWith(() => otm.parseKey('/' + text.slice(1)), 'BadKey');
  throwsWith(() => otm.parseKey(' ' + text.slice(1)), 'BadKey');
  throwsWith(() => otm.parseKey('é' + text.slice(1)), 'BadKey');
  for (const last of 'AEIMQUYcgkosw048') otm.parseKey(text.slice(0, 42) + last);
  for (const last of 'BCDFfhz19-_') throwsWith(() => otm.parseKey(text.slice(0, 42) + last), 'BadKey');

  assert.equal(otm.encodeBase64url(new Uint8Array(16)), 'AAAAAAAAAAAAAAAAAAAAAA');
  for (const last of 'AQgw') otm.parseId('AAAAAAAAAAAAAAAAAAAAA' + last);
  for (const last of 'BEPRhx-_') throwsWith(() => otm.parseId('AAAAAAAAAAAAAAAAAAAAA' + last), 'BadId');
  throwsWith(() => otm.parseId('AAAAAAAAAAAAAAAAAAAAAAAA'), 'BadId');
  throwsWith(() => otm.parseClaim('abc'), 'BadClaim');

  for (let n = 0; n < 70; n++) {
    const bytes = new Uint8Array(n);
    globalThis.crypto.getRandomValues(bytes);
    const t = otm.encodeBase64url(bytes);
    assert.equal(t.length, otm.encodedLen(n));
    assert.equal(Buffer.from(bytes).toString('base64url'), t);
    assert.deepEqual(otm.decodeBase64url(t), bytes);
    assert.deepEqual(otm.decodeExact(t, n), bytes);
  }
  assert.equal(otm.base64urlEncode, otm.encodeBase64url);
  assert.equal(otm.base64urlDecode, otm.decodeBase64url);
  throwsWith(() => otm.decodeBase64url('AAAAA'), 'BadEncoding');
  throwsWith(() => otm.decodeBase64url('AB'), 'BadEncoding');
  throwsWith(() => otm.decodeBase64url('AAAA=='), 'BadEncoding');
});

test('validate: order of checks', () => {
  throwsWith(() => otm.validate(new Uint8Array(32802)), 'TooLarge');
  const big = new Uint8Array(40000);
  big.set([0x4f, 0x54, 0x4d, 0x02]);
  throwsWith(() => otm.validate(big), 'TooLarge');
  throwsWith(() => otm.validate(new Uint8Array(0)), 'Truncated');
  throwsWith(() => otm.validate(new Uint8Array([0x4f, 0x54, 0x4d])), 'Truncated');
  throwsWith(() => otm.validate(new TextEncoder().encode('nonsense')), 'BadMagic');
  throwsWith(() => otm.validate(new Uint8Array([0x4f, 0x54, 0x4d, 0x02])), 'UnsupportedVersion');
  throwsWith(() => otm.validate(new Uint8Array([0x4f, 0x54, 0x4d, 0x01, 0x00])), 'Truncated');
  const hdr = new Uint8Array(17);
  hdr.set([0x4f, 0x54, 0x4d, 0x01, 0x02]);
  throwsWith(() => otm.validate(hdr), 'UnknownFlags');
  hdr[4] = 1;
  throwsWith(() => otm.validate(hdr), 'Truncated');
  const e = new Uint8Array(300);
  e.set([0x4f, 0x54, 0x4d, 0x01, 0x01]);
  throwsWith(() => otm.validate(e), 'BadSize');
  const ok = new Uint8Array(545);
  ok.set([0x4f, 0x54, 0x4d, 0x01, 0x01]);
  assert.deepEqual(otm.validate(ok), { passphrase: true, bucket: 512 });
});

const KEY = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8';
const ID = 'AAAAAAAAAAAAAAAAAAAAAA';

test('fragments: format and parse', () => {
  const key = otm.parseKey(KEY);
  assert.equal(otm.formatFragment(key, false), `key=${KEY}`);
  assert.equal(otm.formatFragment(key, true), `key=${KEY}&p=1`);

  const ok = [
    [`#key=${KEY}&p=1`, true],
    [`key=${KEY}&p=1`, true],
    [`key=${KEY}`, false],
    [`#key=${KEY}`, false],
    [KEY, false],
    [`#${KEY}`, false],
    [`p=1&key=${KEY}`, true],
    [`key=${KEY}&p=0`, false],
    [`  #key=${KEY}&p=1\n`, true],
    [`\u3000key=${KEY}\u0085`, false],
  ];
  for (const [text, p] of ok) {
    const f = otm.parseFragment(text);
    assert.deepEqual(f.key, key, text);
    assert.equal(f.passphrase, p, text);
  }

  const bad = [
    '',
    '#',
    '   ',
    `##key=${KEY}`,
    `key=${KEY}&key=${KEY}`,
    `key=${KEY}&p=1&p=1`,
    `key=${KEY}&p=2`,
    `key=${KEY}&p=`,
    `key=${KEY}&x=1`,
    `key=${KEY}&`,
    `key=${KEY}&p`,
    `&key=${KEY}`,
    'p=1',
    'key=',
    `key=${KEY}A`,
    `key=${KEY.slice(0, 42)}9`,
    KEY.slice(0, 42),
    `Key=${KEY}`,
    `key=${KEY}%26p=1`,
    `\uFEFFkey=${KEY}`, // U+FEFF is not White_Space in Rust
  ];
  for (const text of bad) throwsWith(() => otm.parseFragment(text), 'BadLink');
});

test('links: format and parse', () => {
  const key = otm.parseKey(KEY);
  const url = otm.formatLink('https://otm.example', ID, key, true);
  assert.equal(url, `https://otm.example/otm/${ID}#key=${KEY}&p=1`);
  assert.equal(otm.formatLink(' https://example.org/tools/// ', ID, key, false), `https://example.org/tools/otm/${ID}#key=${KEY}`);
  assert.equal(url.length, 'https://otm.example'.length + 79);
  throwsWith(() => otm.formatLink('ftp://x', ID, key, false), 'BadLink');
  throwsWith(() => otm.formatLink('https://', ID, key, false), 'BadLink');
  throwsWith(() => otm.formatLink('https://x.org?a', ID, key, false), 'BadLink');
  throwsWith(() => otm.formatLink('https://x.org', 'short', key, false), 'BadId');

  const ok = [
    [url, 'https://otm.example', true],
    [`https://otm.example/otm/${ID}#key=${KEY}`, 'https://otm.example', false],
    [`  https://otm.example/otm/${ID}/#key=${KEY}&p=1  `, 'https://otm.example', true],
    [`https://otm.example/otm/${ID}?utm_source=chat#key=${KEY}`, 'https://otm.example', false],
    [`https://otm.example/otm/${ID}/?x=1#key=${KEY}`, 'https://otm.example', false],
    [`http://localhost:8080/secrets/otm/${ID}#${KEY}`, 'http://localhost:8080/secrets', false],
    [`https://a.example/otm/x/otm/${ID}#key=${KEY}`, 'https://a.example/otm/x', false],
    [`https://otm.example//otm/${ID}#key=${KEY}`, 'https://otm.example', false],
  ];
  for (const [text, base, p] of ok) {
    const l = otm.parseLink(text);
    assert.equal(l.base, base, text);
    assert.equal(l.id, ID, text);
    assert.deepEqual(l.key, key, text);
    assert.equal(l.passphrase, p, text);
  }

  const bad = [
    `https://otm.example/otm/${ID}`, // no fragment
    `https://otm.example/otm/${ID}#`,
    `https://otm.example/otm/${ID}//#key=${KEY}`,
    `https://otm.example/OTM/${ID}#key=${KEY}`,
    `https://otm.example/${ID}#key=${KEY}`,
    `otm.example/otm/${ID}#key=${KEY}`,
    `HTTPS://otm.example/otm/${ID}#key=${KEY}`,
    `https:///otm/${ID}#key=${KEY}`,
    `https://otm.example/otm/${ID}A#key=${KEY}`,
    `https://otm.example/otm/AAAAAAAAAAAAAAAAAAAAAB#key=${KEY}`,
    `https://otm .example/otm/${ID}#key=${KEY}`,
    `https://otm.example/otm/${ID}# key=${KEY}`,
    `https://otm.example/otm/${ID}##key=${KEY}`,
    `https://otm.example/otm/${ID}#key=${KEY}&x=1`,
    `https://otm.example/otm/${ID}#key=${KEY}#x`,
    `https://otm.\u0007example/otm/${ID}#key=${KEY}`,
  ];
  for (const text of bad) throwsWith(() => otm.parseLink(text), 'BadLink');
});

// The sender's status link, against the vectors Rust's `ManageLink` also runs
// (otm-core/tests/manage_link_vectors.rs).
const manageUrl = new URL('../../../otm-core/tests/data/manage_link_vectors.json', import.meta.url);
const manage = JSON.parse(readFileSync(manageUrl, 'utf8'));

function throwsBadLink(fn, reason, name = reason) {
  assert.throws(
    fn,
    (err) => {
      assertOtmError(err, 'BadLink');
      assert.equal(err.reason, reason, name);
      return true;
    },
    `${name}: accepted`,
  );
}

// The rejections the status page reports as "the token is missing or damaged".
const TOKEN_REASONS = ['the status link has no #token= part', "the status link's token is malformed"];

test('status link vectors: valid links format and parse back', () => {
  assert.ok(manage.valid.length >= 4);
  for (const v of manage.valid) {
    assert.equal(otm.formatManageLink(v.base_input ?? v.base, v.id, v.token), v.url, v.name);
    assert.deepEqual(otm.parseManageLink(v.url), { base: v.base, id: v.id, token: v.token }, v.name);
  }
});

test('status link vectors: lenient spellings parse to the same link', () => {
  assert.ok(manage.lenient.length >= 7);
  for (const v of manage.lenient) {
    assert.deepEqual(otm.parseManageLink(v.text), { base: v.base, id: v.id, token: v.token }, v.name);
  }
});

test('status link vectors: invalid links fail with the named reason', () => {
  assert.ok(manage.invalid.length >= 30);
  for (const v of manage.invalid) {
    throwsBadLink(() => otm.parseManageLink(v.url), v.reason, v.name);
    // The status page tells a damaged token apart from a damaged address.
    try {
      otm.parseManageLink(v.url);
    } catch (err) {
      assert.equal(err.part === 'token', TOKEN_REASONS.includes(v.reason), v.name);
    }
  }
});

test('status link vectors: invalid bases fail with the named reason', () => {
  const { id, token } = manage.valid[0];
  assert.ok(manage.invalid_base.length >= 7);
  for (const v of manage.invalid_base) {
    throwsBadLink(() => otm.formatManageLink(v.base, id, token), v.reason, v.name);
  }
  // Every rejection of Rust's ManageLink::parse and ::new has a vector.
  const reasons = new Set([...manage.invalid, ...manage.invalid_base].map((v) => v.reason));
  assert.equal(reasons.size, 8, [...reasons].join('\n'));
});

test('status links: ID and token are checked when formatting', () => {
  const { base, id, token } = manage.valid[0];
  throwsWith(() => otm.formatManageLink(base, id.slice(1), token), 'BadId');
  throwsWith(() => otm.formatManageLink(base, id, token.slice(1)), 'BadToken');
  throwsWith(() => otm.formatManageLink(base, id, `${token.slice(0, 42)}F`), 'BadToken');
  throwsWith(() => otm.formatManageLink(base, id, undefined), 'BadToken');
  throwsBadLink(() => otm.parseManageLink(undefined), 'the status link has no #token= part');

  assert.equal(otm.parseManageToken(token).length, 32);
  assert.equal(otm.encodeBase64url(otm.parseManageToken(token)), token);
  throwsWith(() => otm.parseManageToken(`${token}A`), 'BadToken');
  throwsWith(() => otm.parseManageToken(null), 'BadToken');
});

// The group status link, against the vectors Rust's `GroupLink` also runs
// (otm-core/tests/group_link_vectors.rs).
const groupUrl = new URL('../../../otm-core/tests/data/group_link_vectors.json', import.meta.url);
const group = JSON.parse(readFileSync(groupUrl, 'utf8'));

test('group link vectors: valid links format and parse back', async () => {
  assert.ok(group.valid.length >= 5);
  for (const v of group.valid) {
    assert.equal(await otm.formatGroupLink(v.base, v.secret, v.members), v.url, v.name);
    assert.deepEqual(
      await otm.parseGroupLink(v.url),
      { base: v.base, secret: v.secret, members: v.members },
      v.name,
    );
  }
});

test('group link vectors: invalid links fail with the named reason', async () => {
  assert.ok(group.invalid.length >= 10);
  for (const v of group.invalid) {
    await assert.rejects(
      otm.parseGroupLink(v.url),
      (err) => {
        assertOtmError(err, 'BadLink');
        assert.equal(err.reason, v.reason, v.name);
        return true;
      },
      `${v.name}: accepted`,
    );
  }
});

test('group links: tokens derive from the secret as in Rust', async () => {
  const v = group.valid[0];
  for (const m of v.members) assert.equal(await otm.deriveManageToken(v.secret, m.id), m.token);
  await assert.rejects(otm.deriveManageToken('short', v.members[0].id), (err) => err.code === 'BadToken');
  assert.throws(() => otm.checkLabel(''), (err) => err.code === 'BadLink');
  assert.throws(() => otm.checkLabel('x'.repeat(65)), (err) => err.code === 'BadLink');
  otm.checkLabel('😀'.repeat(64));
});
