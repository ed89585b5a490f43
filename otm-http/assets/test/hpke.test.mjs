// The browser's HPKE (otm-hpke.js) against RFC 9180's vectors of otm's
// suite, the same file otm-core's Rust HPKE is checked against. Run from
// the workspace root: node --test otm-http/assets/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { HpkeError, deriveKeyPair, setupRecipient, setupSender } from '../otm-hpke.js';

const v = JSON.parse(
  readFileSync(new URL('../../../otm-core/tests/data/hpke_rfc9180_a1.json', import.meta.url), 'utf8'),
);
const hex = (s) => Uint8Array.from(Buffer.from(s, 'hex'));
const toHex = (b) => Buffer.from(b).toString('hex');

test('RFC 9180 A.1: key pairs, enc, every encryption and export, both sides', async () => {
  const s = v.setup;
  assert.deepEqual([s.mode, s.kem_id, s.kdf_id, s.aead_id], ['0', '32', '1', '1']);
  const e = await deriveKeyPair(hex(s.ikmE));
  assert.equal(toHex(e.publicKey), s.pkEm);
  const r = await deriveKeyPair(hex(s.ikmR));
  assert.equal(toHex(r.publicKey), s.pkRm);
  const { enc, context: sender } = await setupSender(r.publicKey, hex(s.info), hex(s.ikmE));
  assert.equal(toHex(enc), s.enc);
  assert.equal(toHex(sender.baseNonce), s.base_nonce);
  assert.equal(toHex(sender.exporterSecret), s.exporter_secret);
  const recipient = await setupRecipient(enc, r, hex(s.info));
  for (const x of v.encryptions) {
    sender.seq = x.seq;
    recipient.seq = x.seq;
    assert.equal(toHex(sender.nonce()), x.nonce, `nonce #${x.seq}`);
    assert.equal(toHex(await sender.seal(hex(x.aad), hex(x.pt))), x.ct, `seal #${x.seq}`);
    assert.equal(toHex(await recipient.open(hex(x.aad), hex(x.ct))), x.pt, `open #${x.seq}`);
  }
  for (const x of v.exports) {
    assert.equal(toHex(await recipient.export(hex(x.context), x.length)), x.value);
  }
});

test('a wrong key, info or aad does not open; a low-order key is refused', async () => {
  const r = await deriveKeyPair(new TextEncoder().encode('recipient ikm, 32 bytes or more..'));
  const info = new TextEncoder().encode('info');
  const aad = new TextEncoder().encode('aad');
  const { enc, context } = await setupSender(r.publicKey, info);
  const ct = await context.seal(aad, new TextEncoder().encode('the answer'));
  const ok = await setupRecipient(enc, r, info);
  assert.equal(new TextDecoder().decode(await ok.open(aad, ct)), 'the answer');
  const other = await deriveKeyPair(new TextEncoder().encode("somebody else's ikm, 32 bytes...."));
  for (const [who, ctx, a] of [
    ['key', await setupRecipient(enc, other, info), aad],
    ['info', await setupRecipient(enc, r, new TextEncoder().encode('other')), aad],
    ['aad', await setupRecipient(enc, r, info), new TextEncoder().encode('other')],
  ]) {
    await assert.rejects(ctx.open(a, ct), (e) => e instanceof HpkeError && e.code === 'Open', who);
  }
  await assert.rejects(
    setupRecipient(new Uint8Array(32), r, info),
    (e) => e instanceof HpkeError && e.code === 'LowOrderKey',
  );
  const second = await setupSender(r.publicKey, info);
  assert.notEqual(toHex(second.enc), toHex(enc));
});
