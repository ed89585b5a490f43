// Run from the workspace root: node --test otm-http/assets/test/
// The request bodies api.js sends, with fetch replaced by a recorder.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ApiError, createMessage, openMessage } from '../api.js';
import * as otm from '../otm-format.js';

function recordFetch(status, answer) {
  const calls = [];
  globalThis.fetch = async (url, init) => {
    calls.push({ url, method: init.method, body: init.body === undefined ? undefined : JSON.parse(init.body) });
    return new Response(JSON.stringify(answer), { status, headers: { 'Content-Type': 'application/json' } });
  };
  return calls;
}

const ID = 'AAAAAAAAAAAAAAAAAAAAAA';

test('create sends envelope, verifier and access_verifier', async () => {
  const secrets = await otm.deriveSecrets(otm.generateKey(), null);
  const envelope = await otm.seal(secrets, 'hello');
  const verifier = await otm.claimVerifier(secrets.claimProof);
  const access = await otm.accessVerifier(secrets.accessProof);
  const calls = recordFetch(201, { id: ID, expires_at: 0, manage_token: 'x' });
  await createMessage({ envelope, verifier, accessVerifier: access, ttlSeconds: 3600 });
  assert.equal(calls.length, 1);
  assert.equal(calls[0].method, 'POST');
  assert.equal(calls[0].url, '/api/v1/messages');
  assert.deepEqual(calls[0].body, {
    envelope: otm.encodeBase64url(envelope),
    verifier: otm.encodeBase64url(verifier),
    access_verifier: otm.encodeBase64url(access),
    ttl_seconds: 3600,
  });
  assert.equal(calls[0].body.access_verifier.length, 43);
  assert.notEqual(calls[0].body.access_verifier, calls[0].body.verifier);
});

test('open sends access_proof and proof', async () => {
  const secrets = await otm.deriveSecrets(otm.generateKey(), null);
  const envelope = await otm.seal(secrets, 'hello');
  const calls = recordFetch(200, { envelope: otm.encodeBase64url(envelope) });
  const answer = await openMessage(ID, { accessProof: secrets.accessProof, claimProof: secrets.claimProof });
  assert.deepEqual(answer.envelope, envelope);
  assert.equal(calls[0].url, `/api/v1/messages/${ID}/open`);
  assert.deepEqual(calls[0].body, {
    access_proof: otm.encodeBase64url(secrets.accessProof),
    proof: otm.encodeBase64url(secrets.claimProof),
  });
});

test('open: a 404 and a 403 with attempts_left become ApiErrors', async () => {
  const secrets = await otm.deriveSecrets(otm.generateKey(), null);
  const proofs = { accessProof: secrets.accessProof, claimProof: secrets.claimProof };
  recordFetch(404, { error: 'not_found', message: 'gone' });
  await assert.rejects(openMessage(ID, proofs), (err) => {
    assert.ok(err instanceof ApiError);
    assert.equal(err.status, 404);
    assert.equal(err.code, 'not_found');
    assert.equal(err.attemptsLeft, undefined);
    return true;
  });
  recordFetch(403, { error: 'wrong_proof', message: 'wrong', attempts_left: 4 });
  await assert.rejects(openMessage(ID, proofs), (err) => {
    assert.equal(err.status, 403);
    assert.equal(err.code, 'wrong_proof');
    assert.equal(err.attemptsLeft, 4);
    return true;
  });
});
