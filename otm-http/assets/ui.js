// What the page scripts share: DOM lookup, the error box, busy state,
// copying to the clipboard, and dates, durations and relative times in the
// page's language (Intl).
//
// Every page has one error box, `<div id="error" role="alert" hidden>`.
// Importing this module touches no DOM, so Node can test the pure helpers.

import { basePath, getConfig } from './api.js';
import { lang, t, tn } from './i18n.js';
import { QrTooLong, qrSvg } from './qr.js';

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------
// The error box

/**
 * Shows `text` in the page's error box (#error, an alert) and moves the
 * focus to it, so keyboard and screen reader users land on what went wrong;
 * a caller whose error is about one field focuses that field afterwards
 * (the field names the box in its aria-describedby).
 */
export function showError(text) {
  const box = $('error');
  box.textContent = text;
  box.hidden = false;
  box.focus();
}

/** Empties and hides the page's error box. */
export function clearError() {
  const box = $('error');
  box.textContent = '';
  box.hidden = true;
}

// ---------------------------------------------------------------------------
// Busy state

/**
 * Marks `region` busy (aria-busy) and shows `text` in the live status line
 * `statusEl`, or clears both. Each page adds its own buttons and fields.
 */
export function markBusy(region, statusEl, on, text = '') {
  region.setAttribute('aria-busy', on ? 'true' : 'false');
  statusEl.textContent = on ? text : '';
}

// ---------------------------------------------------------------------------
// Clipboard

/**
 * Copies the value of a read-only `field`. When the Clipboard API refuses,
 * selects the text and tries the older copy command; when that fails too,
 * says `selected` (which asks the user to press Ctrl+C). While copied,
 * `button` reads "Copied".
 *
 * @param {object} options `label`: the button's own label, put back after
 *   2.5 seconds; `selected`: what to say when only selecting worked;
 *   `select`: focus and select the field even when copying worked.
 * @returns {Promise<number>} the timer that puts the label back (0 if none),
 *   for `clearTimeout` when the page resets.
 */
export async function copyField(field, button, statusEl, { label, selected, select = false }) {
  let copied = false;
  try {
    await navigator.clipboard.writeText(field.value);
    copied = true;
  } catch {
    copied = false;
  }
  if (select || !copied) {
    field.focus();
    field.select();
  }
  if (!copied) {
    try {
      copied = document.execCommand('copy');
    } catch {
      copied = false;
    }
  }
  if (copied) {
    button.textContent = t('ui.copied');
    statusEl.textContent = t('ui.copied_status');
    return setTimeout(() => {
      button.textContent = label;
    }, 2500);
  }
  statusEl.textContent = selected;
  return 0;
}

// ---------------------------------------------------------------------------
// Bidirectional text

// The explicit embedding, override and isolate controls of Unicode's
// bidirectional algorithm: invisible, yet they reorder how the text around
// them is shown, so what a reader sees (and copies) could differ from what
// it looks like ("Trojan Source"). The weak marks (LRM, RLM, ALM) are
// ordinary in right-to-left writing and are left alone.
const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069]/g;

/**
 * `text` with every bidirectional control replaced by a visible marker
 * ("⟦U+202E⟧"), and how many there were.
 */
export function visibleBidiControls(text) {
  let count = 0;
  const shown = text.replace(BIDI_CONTROLS, (c) => {
    count += 1;
    return `⟦U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}⟧`;
  });
  return { shown, count };
}

// ---------------------------------------------------------------------------
// Dates, durations and relative times

function unitFormat(unit) {
  return new Intl.NumberFormat(lang(), { style: 'unit', unit, unitDisplay: 'long' });
}

/** A lifetime choice in the largest whole unit: "1 hour", "7 days", "30 minutes"… */
export function ttlLabel(seconds) {
  const units = [
    [86400, 'day'],
    [3600, 'hour'],
    [60, 'minute'],
  ];
  for (const [size, unit] of units) {
    if (seconds >= size && seconds % size === 0) return unitFormat(unit).format(seconds / size);
  }
  return unitFormat('second').format(seconds);
}

/** "in 3 hours" (rounded, at least "in 1 minute"), or "" when `date` has passed. */
export function relativeTime(date, now = Date.now()) {
  const seconds = Math.round((date.getTime() - now) / 1000);
  if (seconds <= 0) return '';
  const format = new Intl.RelativeTimeFormat(lang(), { numeric: 'always' });
  if (seconds >= 86400) return format.format(Math.round(seconds / 86400), 'day');
  if (seconds >= 3600) return format.format(Math.round(seconds / 3600), 'hour');
  return format.format(Math.max(1, Math.round(seconds / 60)), 'minute');
}

/** Date and time in the page's language, e.g. "12 Mar 2025, 14:05". */
export function formatDate(date) {
  try {
    return new Intl.DateTimeFormat(lang(), { dateStyle: 'medium', timeStyle: 'short' }).format(date);
  } catch {
    return date.toLocaleString();
  }
}

/** Time of day with seconds, in the page's language. */
export function formatTime(date) {
  try {
    return new Intl.DateTimeFormat(lang(), { timeStyle: 'medium' }).format(date);
  } catch {
    return date.toLocaleTimeString();
  }
}

/**
 * Fills a `<time>` element: the date (with "(in 3 hours)" after it when
 * `withRelative` and still ahead) and its datetime attribute, or `unknown`
 * when there is no date.
 */
export function setTime(el, date, withRelative, unknown = t('ui.unknown')) {
  if (!date) {
    el.textContent = unknown;
    el.removeAttribute('datetime');
    return;
  }
  const rel = withRelative ? relativeTime(date) : '';
  el.textContent = rel ? t('ui.date_relative', { date: formatDate(date), relative: rel }) : formatDate(date);
  el.setAttribute('datetime', date.toISOString());
}

// ---------------------------------------------------------------------------
// What the compose pages share: the expiry choices, the QR code of a link,
// the character counter of a message

/** The expiry choices a page offers when the server's are unknown. */
export const FALLBACK_TTLS = Object.freeze([3600, 86400, 604800]);
/** The expiry chosen when the server's default is unknown. */
export const FALLBACK_DEFAULT_TTL = 86400;

/**
 * Fills the expiry `select` with the server's `choices` (seconds; the
 * fallback ones when none is valid) and selects the one chosen before, if
 * still offered, else `defaultTtl`, else the second choice.
 */
export function fillTtl(select, choices, defaultTtl) {
  const valid = (Array.isArray(choices) ? choices : []).map(Number).filter((s) => Number.isInteger(s) && s > 0);
  const list = valid.length ? valid : FALLBACK_TTLS;
  const previous = select.value;
  select.replaceChildren();
  for (const seconds of list) {
    const option = document.createElement('option');
    option.value = String(seconds);
    option.textContent = ttlLabel(seconds);
    select.append(option);
  }
  const wanted = list.includes(Number(previous)) ? Number(previous) : Number(defaultTtl);
  select.value = String(list.includes(wanted) ? wanted : list[Math.min(1, list.length - 1)]);
}

/**
 * The QR code of a link, drawn here only when asked for (screens are shared
 * and photographed) and removed from the page when hidden. `els`: the
 * toggle `button` (aria-expanded), the `figure`, the `code` box and its
 * `caption`; `text()` gives the link, `alt` the image's label.
 */
export function qrToggle(els, text, alt) {
  const hide = () => {
    els.code.replaceChildren();
    els.caption.hidden = false;
    els.figure.hidden = true;
    els.button.textContent = t('link.show_qr');
    els.button.setAttribute('aria-expanded', 'false');
  };
  const toggle = () => {
    if (!els.figure.hidden) {
      hide();
      return;
    }
    try {
      els.code.replaceChildren(qrSvg(document, text(), alt()));
    } catch (err) {
      if (!(err instanceof QrTooLong)) throw err;
      // Only a link longer than a QR code holds (2,331 bytes) gets here.
      els.code.replaceChildren();
      els.code.textContent = t('link.qr_too_long');
      els.caption.hidden = true;
    }
    els.figure.hidden = false;
    els.button.textContent = t('link.hide_qr');
    els.button.setAttribute('aria-expanded', 'true');
  };
  return { hide, toggle };
}

// Near the limit, a screen reader hears how much is left once typing
// pauses (not at every key); over it, the limit note says by how much.
const ANNOUNCE_WHEN_LEFT = 1000;
const ANNOUNCE_AFTER_MS = 1000;

/**
 * The character counter of a message field (Unicode scalar values, never
 * textarea.length): `els.field`, the visible `counter`, the polite `live`
 * line and the `note` that says by how much it is over. `count(text)` counts
 * characters; `update()` returns whether the text is over `max`.
 */
export function messageCounter(els, max, count) {
  let timer = 0;
  const announce = (n) => {
    clearTimeout(timer);
    const left = max - n;
    if (left < 0 || left > ANNOUNCE_WHEN_LEFT) {
      els.live.textContent = '';
      return;
    }
    timer = setTimeout(() => {
      els.live.textContent = tn('compose.chars_left', left);
    }, ANNOUNCE_AFTER_MS);
  };
  return function update() {
    const n = count(els.field.value);
    const over = n > max;
    els.counter.textContent = t('compose.counter', { n, max });
    announce(n);
    els.counter.classList.toggle('over', over);
    if (over) {
      els.field.setAttribute('aria-invalid', 'true');
      els.note.textContent = tn('compose.over_limit', n - max, { max });
    } else {
      els.field.removeAttribute('aria-invalid');
      els.note.textContent = '';
    }
    return over;
  };
}

/**
 * A message's state as the sender's pages show it: waiting, opened or
 * destroyed (with the date when known), or expired. `status` is
 * {state, changedAt}.
 */
export function receiptText(status) {
  const date = status.changedAt ? formatDate(status.changedAt) : null;
  switch (status.state) {
    case 'waiting':
      return t('manage.waiting');
    case 'opened':
      return date ? t('manage.opened_on', { date }) : t('manage.opened');
    case 'burned':
      return date ? t('manage.burned_on', { date }) : t('manage.burned');
    default:
      return t('manage.expired');
  }
}

/**
 * Loads the server's settings (`GET /api/v1/config`) for a page that
 * creates: the expiry menu `select` offers the fallback choices at once and
 * the server's choices and default when it answers. Resolves to the
 * settings, or to null after saying in the error box that they could not be
 * loaded.
 */
export async function loadSettings(select) {
  resetTtl(select, null);
  try {
    const config = await getConfig();
    // The server's default wins over the fallback chosen before it answered.
    select.value = '';
    resetTtl(select, config);
    return config;
  } catch {
    showError(t('compose.config_failed'));
    return null;
  }
}

/** Fills the expiry menu from the server's settings, or the fallback when null. */
export function resetTtl(select, config) {
  if (config) fillTtl(select, config.ttl_choices_seconds, config.default_ttl_seconds);
  else fillTtl(select, FALLBACK_TTLS, FALLBACK_DEFAULT_TTL);
}

/** The base of links: the server's announced `link_base`, else this page's origin and mount path. */
export function linkBase(config) {
  const fromConfig = config && typeof config.link_base === 'string' ? config.link_base.trim() : '';
  return fromConfig || location.origin + basePath();
}
