// What the page scripts share: DOM lookup, the error box, busy state,
// copying to the clipboard, and dates, durations and relative times.
//
// Every page has one error box, `<div id="error" role="alert" hidden>`.
// Importing this module touches no DOM, so Node can test the pure helpers.

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------
// The error box

/** Shows `text` in the page's error box (#error). */
export function showError(text) {
  const box = $('error');
  box.textContent = text;
  box.hidden = false;
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
 * asks the user to press Ctrl+C. While copied, `button` reads "Copied".
 *
 * @param {object} options `label`: the button's own label, put back after
 *   2.5 seconds; `what`: what the field holds ("link"); `select`: focus and
 *   select the field even when copying worked.
 * @returns {Promise<number>} the timer that puts the label back (0 if none),
 *   for `clearTimeout` when the page resets.
 */
export async function copyField(field, button, statusEl, { label, what, select = false }) {
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
    button.textContent = 'Copied';
    statusEl.textContent = 'Copied to the clipboard.';
    return setTimeout(() => {
      button.textContent = label;
    }, 2500);
  }
  statusEl.textContent = `The ${what} is selected: press Ctrl+C (or ⌘C) to copy it.`;
  return 0;
}

// ---------------------------------------------------------------------------
// Dates, durations and relative times

/** "1 day", "2 days". */
export function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** A lifetime choice: "1 hour", "1 day", "7 days", "30 minutes"… */
export function ttlLabel(seconds) {
  const units = [
    [86400, 'day'],
    [3600, 'hour'],
    [60, 'minute'],
  ];
  for (const [size, word] of units) {
    if (seconds >= size && seconds % size === 0) return plural(seconds / size, word);
  }
  return plural(seconds, 'second');
}

/** "in 3 hours" (rounded, at least "in 1 minute"), or "" when `date` has passed. */
export function relativeTime(date, now = Date.now()) {
  const seconds = Math.round((date.getTime() - now) / 1000);
  if (seconds <= 0) return '';
  if (seconds >= 86400) return `in ${plural(Math.round(seconds / 86400), 'day')}`;
  if (seconds >= 3600) return `in ${plural(Math.round(seconds / 3600), 'hour')}`;
  return `in ${plural(Math.max(1, Math.round(seconds / 60)), 'minute')}`;
}

/** Date and time in the reader's locale, e.g. "12 Mar 2025, 14:05". */
export function formatDate(date) {
  try {
    return new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' }).format(date);
  } catch {
    return date.toLocaleString();
  }
}

/** Time of day with seconds, in the reader's locale. */
export function formatTime(date) {
  try {
    return new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' }).format(date);
  } catch {
    return date.toLocaleTimeString();
  }
}

/**
 * Fills a `<time>` element: the date (with "(in 3 hours)" after it when
 * `withRelative` and still ahead) and its datetime attribute, or `unknown`
 * when there is no date.
 */
export function setTime(el, date, withRelative, unknown = 'unknown') {
  if (!date) {
    el.textContent = unknown;
    el.removeAttribute('datetime');
    return;
  }
  const rel = withRelative ? relativeTime(date) : '';
  el.textContent = rel ? `${formatDate(date)} (${rel})` : formatDate(date);
  el.setAttribute('datetime', date.toISOString());
}
