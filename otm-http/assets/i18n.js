// The page's strings, in the language the server chose for it: the page
// carries them as JSON in <script type="application/json" id="otm-i18n">
// (data, never run). Every text a script shows comes from here, set with
// textContent only.
//
// Importing this module touches no DOM; the strings are read at the first
// call, so Node can test the helpers with `useStrings`.

let table = null;

function load() {
  if (table) return table;
  table = { lang: 'en', dir: 'ltr', strings: {}, settings: {} };
  try {
    const el = typeof document === 'undefined' ? null : document.getElementById('otm-i18n');
    if (el) {
      const data = JSON.parse(el.textContent);
      if (data && typeof data === 'object' && data.strings && typeof data.strings === 'object') {
        table = {
          lang: typeof data.lang === 'string' ? data.lang : 'en',
          dir: data.dir === 'rtl' ? 'rtl' : 'ltr',
          strings: data.strings,
          settings: data.settings && typeof data.settings === 'object' ? data.settings : {},
        };
      }
    }
  } catch {
    // A page without its strings shows keys: visible, never a crash.
  }
  return table;
}

/** Uses `data` ({lang, dir, strings}) instead of the page's strings (tests). */
export function useStrings(data) {
  table = { lang: data.lang, dir: data.dir || 'ltr', strings: data.strings, settings: data.settings || {} };
}

/**
 * A setting of this server that the page's texts mention, sent with the
 * strings (for example `max_failed_attempts`), or `fallback`.
 */
export function setting(name, fallback) {
  const value = load().settings[name];
  return value === undefined ? fallback : value;
}

/** The page's language tag ("en", "ar"). */
export function lang() {
  return load().lang;
}

/** A number as the page's language writes it. */
export function formatNumber(n) {
  try {
    return new Intl.NumberFormat(lang()).format(n);
  } catch {
    return String(n);
  }
}

function fill(text, params) {
  return text.replace(/\{([A-Za-z0-9_]+)\}/g, (whole, name) => {
    if (!(name in params)) return whole;
    const value = params[name];
    return typeof value === 'number' ? formatNumber(value) : String(value);
  });
}

/**
 * The string of `key` with `{name}` placeholders filled from `params`
 * (numbers written the language's way). A missing key shows as itself.
 */
export function t(key, params = {}) {
  const text = load().strings[key];
  if (typeof text === 'string') return fill(text, params);
  if (text && typeof text === 'object') return tn(key, 0, params);
  return key;
}

/** The plural category of `n` in the page's language ("one", "few"…). */
export function pluralCategory(n) {
  try {
    return new Intl.PluralRules(lang()).select(n);
  } catch {
    return n === 1 ? 'one' : 'other';
  }
}

/**
 * The string of `key` for the count `n`: the form of `n`'s plural category
 * (Intl.PluralRules), with `{n}` and the other placeholders filled.
 */
export function tn(key, n, params = {}) {
  const forms = load().strings[key];
  if (typeof forms === 'string') return fill(forms, { ...params, n });
  if (!forms || typeof forms !== 'object') return key;
  const text = forms[pluralCategory(n)] ?? forms.other;
  return typeof text === 'string' ? fill(text, { ...params, n }) : key;
}
