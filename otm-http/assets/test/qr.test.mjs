// The QR encoder of the link page, without a browser. Run from the workspace
// root: node --test otm-http/assets/test/
// (The Chromium test decodes what the page draws with a real decoder.)
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  QrTooLong,
  alignmentCentres,
  byteCapacity,
  encodeQr,
  formatBits,
  reedSolomon,
  totalCodewords,
  versionBits,
} from '../qr.js';

test('capacities match the standard (byte mode, versions 1 to 10 and 40)', () => {
  // ISO/IEC 18004 table 7: bytes per version at levels L, M, Q and H.
  const table = {
    L: [17, 32, 53, 78, 106, 134, 154, 192, 230, 271],
    M: [14, 26, 42, 62, 84, 106, 122, 152, 180, 213],
    Q: [11, 20, 32, 46, 60, 74, 86, 108, 130, 151],
    H: [7, 14, 24, 34, 44, 58, 64, 84, 98, 119],
  };
  for (const [level, bytes] of Object.entries(table)) {
    bytes.forEach((want, i) => assert.equal(byteCapacity(i + 1, level), want, `v${i + 1}-${level}`));
  }
  assert.equal(byteCapacity(40, 'L'), 2953);
  assert.equal(byteCapacity(40, 'M'), 2331);
  assert.equal(byteCapacity(40, 'H'), 1273);
  assert.equal(totalCodewords(1), 26);
  assert.equal(totalCodewords(40), 3706);
});

test('alignment pattern centres match the standard', () => {
  assert.deepEqual(alignmentCentres(1), []);
  assert.deepEqual(alignmentCentres(2), [6, 18]);
  assert.deepEqual(alignmentCentres(7), [6, 22, 38]);
  assert.deepEqual(alignmentCentres(15), [6, 26, 48, 70]);
  assert.deepEqual(alignmentCentres(32), [6, 34, 60, 86, 112, 138]);
  assert.deepEqual(alignmentCentres(36), [6, 24, 50, 76, 102, 128, 154]);
  assert.deepEqual(alignmentCentres(40), [6, 30, 58, 86, 114, 142, 170]);
});

test('format and version bits match the standard', () => {
  // Level M mask 0, level L mask 4, level H mask 7 (ISO/IEC 18004 annex C).
  assert.equal(formatBits('M', 0), 0b101010000010010);
  assert.equal(formatBits('L', 4), 0b110011000101111);
  assert.equal(formatBits('H', 7), 0b000100000111011);
  assert.equal(versionBits(7), 0x07c94);
  assert.equal(versionBits(40), 0x28c69);
});

test('Reed–Solomon of the standard worked example (1-M "01234567")', () => {
  const data = [0x10, 0x20, 0x0c, 0x56, 0x61, 0x80, 0xec, 0x11, 0xec, 0x11, 0xec, 0x11, 0xec, 0x11, 0xec, 0x11];
  assert.deepEqual(
    reedSolomon(data, 10),
    [0xa5, 0x24, 0xd4, 0xc1, 0xed, 0x36, 0xc7, 0x87, 0x2c, 0x55],
  );
});

test('a link picks the smallest version, with the fixed patterns in place', () => {
  const link = 'https://otm.example/otm/AAAAAAAAAAAAAAAAAAAAAA#key=' + 'A'.repeat(43);
  const qr = encodeQr(link, 'M');
  assert.equal(new TextEncoder().encode(link).length, 94);
  assert.equal(qr.version, 6); // 85 to 106 bytes at M
  assert.equal(qr.size, 41);
  const at = (x, y) => qr.dark[y * qr.size + x];
  // The three finders' centres and separators, the timing row, the dark module.
  for (const [x, y] of [[3, 3], [qr.size - 4, 3], [3, qr.size - 4]]) {
    assert.equal(at(x, y), 1);
    assert.equal(at(x + 2, y), 0);
    assert.equal(at(x + 3, y), 1);
  }
  assert.equal(at(7, 0), 0);
  for (let x = 8; x < qr.size - 8; x++) assert.equal(at(x, 6), x % 2 === 0 ? 1 : 0);
  assert.equal(at(8, qr.size - 8), 1);
  assert.ok(qr.mask >= 0 && qr.mask < 8);
  const longer = encodeQr(link + '&p=1' + 'x'.repeat(200), 'M');
  assert.equal(longer.version, 13); // 288 to 331 bytes at M
});

test('too long for version 40 is a clear error', () => {
  assert.throws(() => encodeQr('x'.repeat(2332), 'M'), QrTooLong);
  assert.equal(encodeQr('x'.repeat(2331), 'M').version, 40);
  assert.throws(() => encodeQr('x', 'Z'), TypeError);
});
