// Reveal page: nothing is requested from the API until the reader presses
// "Reveal message". Link-preview bots and prefetchers that load this page
// therefore consume nothing; claiming needs two proofs derived from the key
// in the fragment, which only this script can read: the access proof (key
// alone) and the claim proof (key and passphrase). Without the right access
// proof the server answers as for an unknown message and counts nothing, so
// knowing the ID alone cannot use up the attempts (FORMAT.md section 5).

import {
  LINK_PATH_PREFIX,
  MAX_PASSPHRASE_CHARS,
  OtmError,
  deriveSecrets,
  isValidId,
  open,
  parseFragment,
  parseLink,
  wipeSecrets,
} from './otm-format.js';
import { ApiError, describeApiError, openMessage } from './api.js';
import { setting, t, tn } from './i18n.js';
import { $, clearError, copyField, markBusy, showError, visibleBidiControls } from './ui.js';

const els = {
  intro: $('reveal-intro'),
  introText: $('intro-text'),
  form: $('reveal-form'),
  keyBox: $('key-box'),
  manualKey: $('manual-key'),
  manualHasPassphrase: $('manual-has-passphrase'),
  passphraseBox: $('passphrase-box'),
  passphraseField: $('passphrase-field'),
  passphraseHint: $('passphrase-field-hint'),
  reveal: $('reveal'),
  busy: $('busy'),
  revealed: $('revealed'),
  revealedTitle: $('revealed-title'),
  plaintext: $('plaintext'),
  controlsBox: $('controls-box'),
  controlsText: $('controls-text'),
  copyText: $('copy-text'),
  copyOriginal: $('copy-original'),
  copyStatus: $('copy-status'),
  clearClipboard: $('clear-clipboard'),
  gone: $('gone'),
  goneTitle: $('gone-title'),
  openedHere: $('opened-here'),
  openedHereTitle: $('opened-here-title'),
};

// What this tab remembers, for its session only, of the messages it
// revealed: their IDs, never a key or a text. A reload after a reveal (the
// key is gone from the address bar by then) can then say what happened
// instead of asking for a key.
const OPENED_PREFIX = 'otm.opened.';


const state = {
  id: null,
  // The fragment as loaded ("#key=…"), when it holds a valid key; else null.
  fragment: null,
  // Whether the key is typed in by hand (#key-box) instead of taken from the link.
  manual: false,
  // Set when the server accepted the key but the claim needs a passphrase
  // the link did not announce (its "&p=1" was lost).
  needsPassphrase: false,
  busy: false,
};

let copyTimer = 0;

// The message exactly as sent, while it is on the page and held only when
// it had direction controls (the field then shows them as markers).
let original = null;

class UiError extends Error {}

// ---------------------------------------------------------------------------
// Helpers

/** Removes the key from the address bar and from this history entry. */
function removeFragment() {
  state.fragment = null;
  try {
    history.replaceState(history.state, '', location.pathname + location.search);
  } catch {
    // Some embedded browsers refuse; the page stays usable.
  }
}

/** Notes, for this tab's session, that it took the message off the server. */
function rememberOpened() {
  try {
    sessionStorage.setItem(OPENED_PREFIX + state.id, '1');
  } catch {
    // Storage refused (some private modes): a reload then asks for the key.
  }
}

/** Whether this tab revealed the message earlier in its session. */
function openedInThisTab() {
  try {
    return sessionStorage.getItem(OPENED_PREFIX + state.id) === '1';
  } catch {
    return false;
  }
}

function setBusy(on, text = '') {
  state.busy = on;
  markBusy(els.form, els.busy, on, text);
  els.reveal.disabled = on;
  els.reveal.textContent = on && text ? text : t('reveal.button');
  els.manualKey.disabled = on;
  els.manualHasPassphrase.disabled = on;
  els.passphraseField.disabled = on;
}

function idFromPath() {
  const path = location.pathname;
  const at = path.lastIndexOf(LINK_PATH_PREFIX);
  if (at < 0) return null;
  let id = path.slice(at + LINK_PATH_PREFIX.length);
  if (id.endsWith('/')) id = id.slice(0, -1);
  return isValidId(id) ? id : null;
}

// ---------------------------------------------------------------------------
// The key: from the link's fragment, or typed in by hand

/** Parses what the reader pasted: a fragment, a bare key, or the whole link. */
function parseManual(text) {
  if (text.trim() === '') throw new UiError(t('reveal.paste_first'));
  try {
    return parseFragment(text);
  } catch {
    // Perhaps the whole link was pasted.
  }
  if (text.includes('#')) {
    let link = null;
    try {
      link = parseLink(text);
    } catch {
      link = null;
    }
    if (link) {
      if (link.id !== state.id) {
        link.key.fill(0);
        throw new UiError(t('reveal.other_message'));
      }
      return { key: link.key, passphrase: link.passphrase };
    }
  }
  throw new UiError(
    t('reveal.bad_key'),
  );
}

/** The key and passphrase flag for this attempt. Fresh bytes every call. */
function currentKey() {
  if (!state.manual) {
    const fromLink = parseFragment(state.fragment);
    return { key: fromLink.key, passphrase: fromLink.passphrase || state.needsPassphrase };
  }
  const parsed = parseManual(els.manualKey.value);
  return { key: parsed.key, passphrase: parsed.passphrase || els.manualHasPassphrase.checked };
}

function onManualKeyInput() {
  // A pasted "key=…&p=1" or full link says whether a passphrase is needed.
  try {
    const parsed = parseManual(els.manualKey.value);
    parsed.key.fill(0);
    if (parsed.passphrase && !els.manualHasPassphrase.checked) {
      els.manualHasPassphrase.checked = true;
      els.passphraseBox.hidden = false;
    }
  } catch {
    // Not complete yet; checked on reveal.
  }
}

// ---------------------------------------------------------------------------
// Reveal

async function onReveal(event) {
  event.preventDefault();
  if (state.busy || !state.id) return;
  clearError();

  let parsed;
  try {
    parsed = currentKey();
  } catch (err) {
    showError(err instanceof UiError ? err.message : t('reveal.damaged_key'));
    if (state.manual) els.manualKey.focus();
    return;
  }

  let passphrase = null;
  if (parsed.passphrase) {
    passphrase = els.passphraseField.value;
    if (passphrase === '') {
      parsed.key.fill(0);
      els.passphraseBox.hidden = false;
      showError(t('reveal.passphrase_first'));
      els.passphraseField.focus();
      return;
    }
  }
  const usedPassphrase = passphrase !== null;

  setBusy(true, usedPassphrase ? t('reveal.deriving') : t('reveal.opening'));
  let secrets = null;
  try {
    try {
      secrets = await deriveSecrets(parsed.key, passphrase);
    } catch (err) {
      if (err instanceof OtmError && err.code === 'BadPassphrase') {
        showError(t('reveal.passphrase_too_long', { max: MAX_PASSPHRASE_CHARS }));
      } else if (err && err.name === 'NotSupportedError') {
        showError(t('reveal.unsupported'));
      } else {
        showError(t('reveal.key_failed'));
      }
      return;
    } finally {
      parsed.key.fill(0);
    }

    if (usedPassphrase) setBusy(true, t('reveal.opening'));
    let answer;
    try {
      answer = await openMessage(state.id, { accessProof: secrets.accessProof, claimProof: secrets.claimProof });
    } catch (err) {
      setBusy(false); // re-enable the fields before focusing one of them
      handleClaimError(err, usedPassphrase);
      return;
    }

    // The server has deleted the message: the link is spent.
    removeFragment();
    rememberOpened();
    let text;
    try {
      text = await open(secrets, answer.envelope);
    } catch {
      showUndecryptable();
      return;
    } finally {
      answer.envelope.fill(0);
    }
    showRevealed(text);
  } finally {
    wipeSecrets(secrets);
    setBusy(false);
  }
}

function handleClaimError(err, usedPassphrase) {
  if (err instanceof OtmError || (err instanceof ApiError && err.status >= 200 && err.status < 300)) {
    // A 200 whose envelope could not even be decoded: it is deleted already.
    removeFragment();
    rememberOpened();
    showUndecryptable();
    return;
  }
  if (!(err instanceof ApiError)) {
    showError(t('reveal.failed'));
    return;
  }
  if (err.status === 404) {
    // One answer for a message that was opened, expired or destroyed and for
    // a key that does not fit it (a wrong access proof): nothing was counted.
    if (state.manual) {
      // A key typed by hand may have a typo: keep the form for another try.
      showError(t('reveal.no_such_key'));
      els.manualKey.focus();
      return;
    }
    clearError();
    showGone();
    return;
  }
  if (err.status === 403) {
    // The key fits (the access proof was accepted), so the passphrase is what
    // is wrong, or missing. Each such attempt is counted.
    const left = err.attemptsLeft;
    if (left === 0) {
      showError(usedPassphrase ? t('reveal.wrong_destroyed') : t('reveal.missing_destroyed'));
      showGone();
      return;
    }
    const counted = typeof left === 'number';
    if (usedPassphrase) {
      showError(counted ? tn('reveal.wrong_left', left) : t('reveal.wrong'));
    } else {
      // The link lost its "&p=1": ask for the passphrase from now on.
      state.needsPassphrase = true;
      els.manualHasPassphrase.checked = true;
      els.passphraseBox.hidden = false;
      showError(counted ? tn('reveal.needs_passphrase_left', left) : t('reveal.needs_passphrase'));
    }
    els.passphraseField.focus();
    els.passphraseField.select();
    return;
  }
  if (err.status === 429) {
    showError(t('reveal.too_many'));
    return;
  }
  showError(describeApiError(err));
}

function showUndecryptable() {
  els.intro.hidden = true;
  els.passphraseField.value = '';
  els.manualKey.value = '';
  showError(t('reveal.undecryptable'));
}

function showGone() {
  removeFragment();
  els.intro.hidden = true;
  els.passphraseField.value = '';
  els.manualKey.value = '';
  els.gone.hidden = false;
  els.goneTitle.focus();
}

function showOpenedHere() {
  removeFragment();
  els.intro.hidden = true;
  els.openedHere.hidden = false;
  els.openedHereTitle.focus();
}

function showRevealed(text) {
  els.passphraseField.value = '';
  els.manualKey.value = '';
  els.intro.hidden = true;
  clearError();
  // Direction controls are shown as markers, and the reader is told: a
  // right-to-left page must not reorder what they read and copy.
  const { shown, count } = visibleBidiControls(text);
  els.plaintext.value = shown;
  els.controlsBox.hidden = count === 0;
  els.controlsText.textContent = count === 0 ? '' : tn('reveal.controls', count);
  original = count === 0 ? null : text;
  els.copyOriginal.hidden = count === 0;
  const lines = shown.split('\n').length;
  els.plaintext.setAttribute('rows', String(Math.min(20, Math.max(4, lines + 1))));
  els.revealed.hidden = false;
  // The message cannot be shown again: changing the language asks first.
  document.documentElement.dataset.unsaved = 'message';
  els.revealedTitle.focus();
}

async function onCopyText() {
  clearTimeout(copyTimer);
  copyTimer = await copyField(els.plaintext, els.copyText, els.copyStatus, {
    label: t('reveal.copy'),
    selected: t('reveal.selected'),
  });
  // Copied: offer to take it out of the clipboard again once pasted.
  if (copyTimer) els.clearClipboard.hidden = false;
}

// The original text has no field to select, so only the Clipboard API can
// copy it; a refusal is said.
async function onCopyOriginal() {
  if (original === null) return;
  try {
    await navigator.clipboard.writeText(original);
    els.copyStatus.textContent = t('ui.copied_status');
    els.clearClipboard.hidden = false;
  } catch {
    els.copyStatus.textContent = t('reveal.copy_original_failed');
  }
}

// Best effort: the Clipboard API may be refused; then say so.
async function onClearClipboard() {
  try {
    await navigator.clipboard.writeText('');
    els.copyStatus.textContent = t('reveal.clipboard_cleared');
    els.clearClipboard.hidden = true;
  } catch {
    els.copyStatus.textContent = t('reveal.clipboard_not_cleared');
  }
}

// Leaving the page (or putting it in the back-forward cache) takes the
// message off it: it is gone from the server, and must not come back with
// the Back button.
function forgetRevealed() {
  els.plaintext.value = '';
  original = null;
  delete document.documentElement.dataset.unsaved;
  els.controlsText.textContent = '';
  els.revealed.hidden = true;
}

// ---------------------------------------------------------------------------
// Start: read the page address only. No network request happens here.

function init() {
  els.form.addEventListener('submit', onReveal);
  els.manualKey.addEventListener('input', onManualKeyInput);
  els.manualHasPassphrase.addEventListener('change', () => {
    els.passphraseBox.hidden = !els.manualHasPassphrase.checked;
  });
  els.copyText.addEventListener('click', onCopyText);
  els.copyOriginal.addEventListener('click', onCopyOriginal);
  els.clearClipboard.addEventListener('click', onClearClipboard);
  window.addEventListener('pagehide', forgetRevealed);
  // Editing the fragment in the address bar (for example pasting the link
  // again into this tab) does not reload the page; start over with it.
  window.addEventListener('hashchange', () => {
    if (!state.busy && location.hash && location.hash !== '#') location.reload();
  });

  // This server's number of wrong attempts, written before the form shows.
  els.passphraseHint.textContent = tn('reveal.passphrase_hint', setting('max_failed_attempts', 5));

  state.id = idFromPath();
  if (!state.id) {
    showError(t('reveal.bad_id'));
    return;
  }

  if (openedInThisTab()) {
    // Revealed in this tab already (the page was reloaded, or the link
    // opened again): the server no longer has it, so say so rather than
    // ask for a key or send a request that can only find nothing.
    showOpenedHere();
    return;
  }

  const hash = location.hash;
  let fromLink = null;
  if (hash && hash !== '#') {
    try {
      fromLink = parseFragment(hash);
    } catch {
      fromLink = null;
    }
  }

  if (fromLink) {
    fromLink.key.fill(0);
    state.fragment = hash;
    state.manual = false;
    els.keyBox.hidden = true;
    els.passphraseBox.hidden = !fromLink.passphrase;
  } else {
    state.manual = true;
    els.introText.textContent = t('reveal.intro_no_key');
    els.keyBox.hidden = false;
    els.passphraseBox.hidden = true;
    if (hash && hash !== '#') {
      showError(t('reveal.key_incomplete'));
    }
  }
  els.intro.hidden = false;
}

init();
