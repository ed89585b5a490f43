// The string tables of the pages: every shipped language is complete (every
// key of English, every plural category the language has, the same
// placeholders), and every key the pages and scripts use exists. Run from
// the workspace root: node --test otm-http/assets/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';

import { t, tn, useStrings } from '../i18n.js';

const dir = new URL('../i18n/', import.meta.url);
const assets = new URL('../', import.meta.url);
const tables = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => JSON.parse(readFileSync(new URL(f, dir), 'utf8')));
const english = tables.find((x) => x.language === 'en');

const placeholders = (text) => [...text.matchAll(/\{([A-Za-z0-9_]+)\}/g)].map((m) => m[1]).sort();
const texts = (value) => (typeof value === 'string' ? [value] : Object.values(value));

test('English, German, French and Arabic are shipped; Arabic right to left', () => {
  const tags = tables.map((x) => x.language).sort();
  assert.deepEqual(tags, ['ar', 'de', 'en', 'fr']);
  for (const table of tables) assert.equal(table.dir, table.language === 'ar' ? 'rtl' : 'ltr');
});

for (const table of tables) {
  test(`${table.language}: every key, every plural category, the same placeholders`, () => {
    const categories = new Intl.PluralRules(table.language).resolvedOptions().pluralCategories;
    const missing = Object.keys(english.strings).filter((k) => !(k in table.strings));
    assert.deepEqual(missing, [], 'keys missing');
    const extra = Object.keys(table.strings).filter((k) => !(k in english.strings));
    assert.deepEqual(extra, [], 'keys English does not have');
    for (const [key, value] of Object.entries(table.strings)) {
      const original = english.strings[key];
      assert.equal(typeof value, typeof original, `${key}: plain or plural like English`);
      if (typeof value === 'object') {
        assert.deepEqual(Object.keys(value).sort(), [...categories].sort(), `${key}: plural categories`);
      }
      const want = [...new Set(texts(original).flatMap(placeholders))].sort();
      for (const text of texts(value)) {
        assert.ok(text.trim().length > 0, `${key} is empty`);
        for (const p of placeholders(text)) assert.ok(want.includes(p), `${key} uses {${p}}`);
      }
      // A plural names its count; plain text keeps every placeholder.
      if (typeof value === 'string') assert.deepEqual(placeholders(value), placeholders(original), key);
    }
    for (const key of table.machine_translated) assert.ok(key in table.strings, key);
    if (table.language !== 'en') {
      assert.ok(table.machine_translated.length > 0, 'machine translations are marked for review');
    }
  });
}

test('every key the pages and scripts use is in English', () => {
  const used = new Set();
  const prefixes = 'site|title|description|footer|compose|link|ui|reveal|manage|error|about';
  const literal = new RegExp(`'((?:${prefixes})\\.[a-z0-9_.]+)'`, 'g');
  for (const file of readdirSync(assets).filter((f) => /\.(html|js)$/.test(f))) {
    const text = readFileSync(new URL(file, assets), 'utf8');
    if (file.endsWith('.html')) for (const m of text.matchAll(/\{\{t:([a-z0-9_.]+)\}\}/g)) used.add(m[1]);
    if (file.endsWith('.js')) for (const m of text.matchAll(literal)) used.add(m[1]);
  }
  assert.ok(used.size > 100, `only ${used.size} keys found`);
  for (const key of used) assert.ok(key in english.strings, `${key} is used but not in en.json`);
});

test('t and tn fill placeholders and pick the plural form', () => {
  const ar = tables.find((x) => x.language === 'ar');
  useStrings({ lang: 'ar', dir: 'rtl', strings: ar.strings });
  const forms = new Set([0, 1, 2, 3, 11, 100].map((n) => tn('compose.chars_left', n)));
  assert.equal(forms.size, 6, 'Arabic uses six forms for 0, 1, 2, 3, 11, 100');
  useStrings({ lang: 'en', dir: 'ltr', strings: english.strings });
  assert.equal(tn('compose.chars_left', 1), '1 character left.');
  assert.equal(tn('compose.chars_left', 1500), '1,500 characters left.');
  assert.equal(t('compose.counter', { n: 12, max: 8000 }), '12 / 8,000');
  assert.equal(t('no.such.key'), 'no.such.key');
});
