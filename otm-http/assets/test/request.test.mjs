// The browser's half of requests (otm-request.js) against otm's own answer
// vectors, the file otm-core's `request` module must reproduce too. Run from
// the workspace root: node --test otm-http/assets/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { accessVerifier, claimVerifier, decodeBase64url, encodeBase64url } from '../otm-format.js';
import {
  answerProof,
  answerSecrets,
  answerToken,
  fingerprint,
  formatReceiveLink,
  formatRequestLink,
  openAnswer,
  openNote,
  parseReceiveLink,
  parseRequestLink,
  receiveKeyPair,
  sealAnswer,
  sealNote,
  validateAnswer,
} from '../otm-request.js';

const v = JSON.parse(
  readFileSync(new URL('../../../otm-core/tests/data/answer_v1_vectors.json', import.meta.url), 'utf8'),
);

test('answer vectors: key, fingerprint, verifiers, the sealed answer byte for byte, and opening', async () => {
  assert.ok(v.vectors.length >= 4);
  for (const x of v.vectors) {
    const secret = decodeBase64url(x.receive_secret);
    const id = decodeBase64url(x.request_id);
    const pair = await receiveKeyPair(secret);
    assert.equal(encodeBase64url(pair.publicKey), x.public_key, x.name);
    assert.equal(await fingerprint(pair.publicKey), x.fingerprint, x.name);
    const secrets = await answerSecrets(secret, null, { raw: true });
    assert.equal(encodeBase64url(await accessVerifier(secrets.accessProof)), x.access_verifier, x.name);
    assert.equal(encodeBase64url(await claimVerifier(secrets.claimProof)), x.claim_verifier, x.name);
    const sealed = await sealAnswer(pair.publicKey, id, x.note, x.text, decodeBase64url(x.ikm_e));
    assert.equal(encodeBase64url(sealed), x.answer, x.name);
    assert.equal(await openAnswer(secret, id, x.note, decodeBase64url(x.answer)), x.text, x.name);

    const token = await answerToken(secret);
    assert.equal(encodeBase64url(token), x.answer_token, x.name);
    assert.equal(encodeBase64url(await accessVerifier(await answerProof(token))), x.answer_verifier, x.name);
    const note = await sealNote(token, pair.publicKey, x.note, decodeBase64url(x.note_nonce));
    assert.equal(encodeBase64url(note), x.sealed_note, x.name);
    assert.equal(await openNote(token, pair.publicKey, note), x.note, x.name);
    assert.equal(formatRequestLink('https://otm.example/base/', x.request_id, pair.publicKey, token), x.request_link);
    assert.equal(formatReceiveLink('https://otm.example/base', x.request_id, secret, false), x.receive_link);
    const request = parseRequestLink(x.request_link);
    assert.equal(request.id, x.request_id);
    assert.equal(encodeBase64url(request.publicKey), x.public_key);
    assert.equal(encodeBase64url(request.token), x.answer_token);
    const receive = parseReceiveLink(x.receive_link + '&p=1');
    assert.equal(encodeBase64url(receive.secret), x.receive_secret);
    assert.equal(receive.passphrase, true);
  }
});

test('links are parsed as strictly as in Rust', () => {
  const x = v.vectors[0];
  const bad = [
    x.request_link.replace(/&t=.*$/, ''),
    `${x.request_link}&x=1`,
    x.request_link.replace('/request/', '/otm/'),
    x.request_link.replace('https://', 'ftp://'),
    x.request_link.split('#')[0],
  ];
  for (const link of bad) assert.throws(() => parseRequestLink(link), (e) => e.code === 'BadLink', link);
  for (const link of [x.receive_link.replace(/#r=.*$/, '#r=short'), `${x.receive_link}&p=2`, `${x.receive_link}&r=x`]) {
    assert.throws(() => parseReceiveLink(link), (e) => e.code === 'BadLink', link);
  }
});

test('an answer opens only with its secret, request and note; tampering is refused', async () => {
  const x = v.vectors[1];
  const secret = decodeBase64url(x.receive_secret);
  const id = decodeBase64url(x.request_id);
  const answer = decodeBase64url(x.answer);
  const otherId = id.slice();
  otherId[0] ^= 1;
  const otherSecret = secret.slice();
  otherSecret[0] ^= 1;
  const flipped = answer.slice();
  flipped[answer.length - 1] ^= 1;
  for (const [what, s, i, n, a] of [
    ['request', secret, otherId, x.note, answer],
    ['note', secret, id, x.note + '!', answer],
    ['secret', otherSecret, id, x.note, answer],
    ['byte', secret, id, x.note, flipped],
  ]) {
    await assert.rejects(openAnswer(s, i, n, a), (e) => e.code === 'DecryptionFailed', what);
  }
  assert.throws(() => validateAnswer(answer.subarray(0, 100)), (e) => e.code === 'Truncated');
  const wrongVersion = answer.slice();
  wrongVersion[3] = 2;
  assert.throws(() => validateAnswer(wrongVersion), (e) => e.code === 'UnsupportedVersion');
  // Fresh ephemeral keys: two sealings of one text differ, both open.
  const pair = await receiveKeyPair(secret);
  const a1 = await sealAnswer(pair.publicKey, id, '', 'same');
  const a2 = await sealAnswer(pair.publicKey, id, '', 'same');
  assert.notEqual(encodeBase64url(a1), encodeBase64url(a2));
  assert.equal(await openAnswer(secret, id, '', a2), 'same');
});
