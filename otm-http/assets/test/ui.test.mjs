// The DOM-free helpers of ui.js. Run from the workspace root:
// node --test otm-http/assets/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { readFileSync } from 'node:fs';

import { useStrings } from '../i18n.js';
import { formatDate, formatTime, relativeTime, ttlLabel, visibleBidiControls } from '../ui.js';

const table = (tag) => JSON.parse(readFileSync(new URL(`../i18n/${tag}.json`, import.meta.url), 'utf8'));
const use = (tag) => {
  const t = table(tag);
  useStrings({ lang: t.language, dir: t.dir, strings: t.strings });
};
use('en');

test('ttlLabel names lifetimes in the largest whole unit', () => {
  assert.equal(ttlLabel(3600), '1 hour');
  assert.equal(ttlLabel(86400), '1 day');
  assert.equal(ttlLabel(604800), '7 days');
  assert.equal(ttlLabel(1800), '30 minutes');
  assert.equal(ttlLabel(5400), '90 minutes');
  assert.equal(ttlLabel(90000), '25 hours');
  assert.equal(ttlLabel(45), '45 seconds');
  assert.equal(ttlLabel(1), '1 second');
});

test('relativeTime rounds to days, hours or minutes', () => {
  const now = Date.UTC(2025, 0, 1);
  const at = (seconds) => new Date(now + seconds * 1000);
  assert.equal(relativeTime(at(0), now), '');
  assert.equal(relativeTime(at(-60), now), '');
  assert.equal(relativeTime(at(1), now), 'in 1 minute');
  assert.equal(relativeTime(at(90), now), 'in 2 minutes');
  assert.equal(relativeTime(at(3599), now), 'in 60 minutes');
  assert.equal(relativeTime(at(3600), now), 'in 1 hour');
  assert.equal(relativeTime(at(5 * 3600 + 1700), now), 'in 5 hours');
  assert.equal(relativeTime(at(86400), now), 'in 1 day');
  assert.equal(relativeTime(at(7 * 86400 - 60), now), 'in 7 days');
  // Without `now`, the clock is used.
  assert.equal(relativeTime(new Date(Date.now() + 2 * 86400 * 1000)), 'in 2 days');
});

test('durations and relative times follow the page language', () => {
  const now = Date.UTC(2025, 0, 1);
  use('de');
  assert.equal(ttlLabel(86400), '1 Tag');
  assert.equal(ttlLabel(604800), '7 Tage');
  assert.equal(relativeTime(new Date(now + 3 * 3600 * 1000), now), 'in 3 Stunden');
  use('ar');
  // Arabic has six plural forms; Intl knows them: 2 days is a dual.
  assert.notEqual(ttlLabel(2 * 86400), ttlLabel(3 * 86400).replace('٣', '٢'));
  use('en');
});

test('bidirectional controls in a message are made visible and counted', () => {
  const trojan = 'access = "user\u202E \u2066// admin\u2069 \u2066"';
  const { shown, count } = visibleBidiControls(trojan);
  assert.equal(count, 4);
  assert.equal(shown, 'access = "user⟦U+202E⟧ ⟦U+2066⟧// admin⟦U+2069⟧ ⟦U+2066⟧"');
  assert.ok(!/[\u202A-\u202E\u2066-\u2069]/.test(shown));
  // The weak marks of right-to-left writing stay as they are.
  const arabic = 'كلمة\u200F 123';
  assert.deepEqual(visibleBidiControls(arabic), { shown: arabic, count: 0 });
});

test('formatDate and formatTime give text', () => {
  const d = new Date(Date.UTC(2025, 2, 12, 14, 5, 9));
  assert.ok(formatDate(d).includes('2025'), formatDate(d));
  assert.match(formatTime(d), /\d/);
});
