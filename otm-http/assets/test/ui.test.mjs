// The DOM-free helpers of ui.js. Run from the workspace root:
// node --test otm-http/assets/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { formatDate, formatTime, plural, relativeTime, ttlLabel } from '../ui.js';

test('plural', () => {
  assert.equal(plural(0, 'day'), '0 days');
  assert.equal(plural(1, 'day'), '1 day');
  assert.equal(plural(2, 'attempt'), '2 attempts');
});

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

test('formatDate and formatTime give text', () => {
  const d = new Date(Date.UTC(2025, 2, 12, 14, 5, 9));
  assert.ok(formatDate(d).includes('2025'), formatDate(d));
  assert.match(formatTime(d), /\d/);
});
