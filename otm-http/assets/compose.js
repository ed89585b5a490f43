// Compose page: encrypt a message in the browser, upload the ciphertext,
// show the one-time link. The key never leaves this page except inside the
// link's fragment.

import {
  MAX_MESSAGE_CHARS,
  MAX_PASSPHRASE_CHARS,
  OtmError,
  accessVerifier,
  charCount,
  claimVerifier,
  deriveSecrets,
  formatLink,
  formatManageLink,
  generateKey,
  isValidId,
  seal,
  toWellFormed,
  wipeSecrets,
} from './otm-format.js';
import { ApiError, basePath, createMessage, getConfig, parseExpiry } from './api.js';
import { describeApiError } from './api.js';
import { t, tn } from './i18n.js';
import {
  $,
  FALLBACK_DEFAULT_TTL,
  FALLBACK_TTLS,
  clearError,
  copyField,
  fillTtl,
  markBusy,
  messageCounter,
  qrToggle,
  setTime,
  showError,
} from './ui.js';


const els = {
  composeSection: $('compose'),
  form: $('compose-form'),
  message: $('message'),
  counter: $('counter'),
  counterLive: $('counter-live'),
  limitNote: $('limit-note'),
  ttl: $('ttl'),
  passphrase: $('passphrase'),
  showPassphrase: $('show-passphrase'),
  create: $('create'),
  busy: $('busy'),
  result: $('result'),
  resultTitle: $('result-title'),
  link: $('link'),
  copyLink: $('copy-link'),
  copyStatus: $('copy-status'),
  showQr: $('show-qr'),
  qr: $('qr'),
  qrCode: $('qr-code'),
  qrCaption: $('qr-caption'),
  expires: $('expires'),
  resultPassphrase: $('result-passphrase'),
  statusBox: $('status-box'),
  statusLink: $('status-link'),
  copyStatusLink: $('copy-status-link'),
  copyStatusLinkStatus: $('copy-status-link-status'),
  newMessage: $('new-message'),
};


let config = null;
let busy = false;
let over = false;
let copyTimer = 0;
let copyStatusTimer = 0;

// ---------------------------------------------------------------------------
// Busy state

function setBusy(on, text = '') {
  busy = on;
  markBusy(els.form, els.busy, on, text);
  els.create.textContent = on ? t('compose.creating') : t('compose.create');
  updateCreateState();
}

function updateCreateState() {
  els.create.disabled = busy || over;
}

// ---------------------------------------------------------------------------
// Character counter (Unicode scalar values, never textarea.length)

const countMessage = messageCounter(
  { field: els.message, counter: els.counter, live: els.counterLive, note: els.limitNote },
  MAX_MESSAGE_CHARS,
  charCount,
);

function updateCounter() {
  over = countMessage();
  updateCreateState();
}

// ---------------------------------------------------------------------------
// Settings

function fillTtlChoices(choices, defaultTtl) {
  fillTtl(els.ttl, choices, defaultTtl);
}

async function loadConfig() {
  fillTtlChoices(FALLBACK_TTLS, FALLBACK_DEFAULT_TTL);
  try {
    config = await getConfig();
    // The server's default wins over the fallback chosen before it answered.
    els.ttl.value = '';
    fillTtlChoices(config.ttl_choices_seconds, config.default_ttl_seconds);
  } catch (err) {
    config = null;
    showError(t('compose.config_failed'));
  }
}

function linkBase() {
  const fromConfig = config && typeof config.link_base === 'string' ? config.link_base.trim() : '';
  return fromConfig || location.origin + basePath();
}

/**
 * The sender's private status link, `{link_base}/manage/{id}#token=…`, or
 * null when the server sent no (valid) management token.
 */
function statusLinkFor(base, id, token) {
  if (typeof token !== 'string') return null;
  try {
    return formatManageLink(base, id, token);
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------
// Create

function describeError(err) {
  if (err instanceof ApiError) return describeApiError(err);
  if (err instanceof OtmError) {
    switch (err.code) {
      case 'BadPassphrase':
        return t('compose.passphrase_too_long', { max: MAX_PASSPHRASE_CHARS });
      case 'MessageTooLong':
        return t('compose.message_too_long', { max: MAX_MESSAGE_CHARS });
      case 'BadLink':
      case 'BadId':
        return t('compose.bad_answer');
      default:
        return t('compose.seal_failed');
    }
  }
  if (err && err.name === 'NotSupportedError') {
    return t('compose.unsupported');
  }
  return t('compose.failed');
}

async function onCreate(event) {
  event.preventDefault();
  if (busy) return;
  clearError();

  const text = toWellFormed(els.message.value);
  const chars = charCount(text);
  if (chars === 0) {
    showError(t('compose.empty'));
    els.message.focus();
    return;
  }
  if (chars > MAX_MESSAGE_CHARS) {
    showError(tn('compose.too_long', chars, { max: MAX_MESSAGE_CHARS }));
    els.message.focus();
    return;
  }
  const rawPassphrase = els.passphrase.value;
  const passphrase = rawPassphrase === '' ? null : rawPassphrase;
  const ttl = Number(els.ttl.value);

  setBusy(true, passphrase === null ? t('compose.encrypting') : t('compose.deriving'));
  let key = null;
  let secrets = null;
  try {
    key = generateKey();
    secrets = await deriveSecrets(key, passphrase);
    const envelope = await seal(secrets, text);
    const verifier = await claimVerifier(secrets.claimProof);
    const access = await accessVerifier(secrets.accessProof);
    wipeSecrets(secrets);

    setBusy(true, t('compose.uploading'));
    const answer = await createMessage({
      envelope,
      verifier,
      accessVerifier: access,
      ttlSeconds: Number.isInteger(ttl) && ttl > 0 ? ttl : undefined,
    });
    if (!answer || typeof answer.id !== 'string' || !isValidId(answer.id)) {
      throw new OtmError('BadId', 'the server returned no valid message ID');
    }
    const base = linkBase();
    const link = formatLink(base, answer.id, key, passphrase !== null);
    const expiresAt =
      parseExpiry(answer.expires_at) ??
      (Number.isInteger(ttl) && ttl > 0 ? new Date(Date.now() + ttl * 1000) : null);
    const statusLink = statusLinkFor(base, answer.id, answer.manage_token);
    showResult(link, expiresAt, passphrase !== null, statusLink);
  } catch (err) {
    showError(describeError(err));
  } finally {
    if (key) key.fill(0);
    wipeSecrets(secrets);
    setBusy(false);
  }
}

function showResult(link, expiresAt, hasPassphrase, statusLink) {
  // The message and passphrase are no longer needed on this page.
  els.message.value = '';
  els.passphrase.value = '';
  els.passphrase.type = 'password';
  els.showPassphrase.checked = false;
  updateCounter();

  els.link.value = link;
  setTime(els.expires, expiresAt, true, t('link.expiry_unknown'));
  els.resultPassphrase.hidden = !hasPassphrase;
  els.copyStatus.textContent = '';
  els.copyLink.textContent = t('link.copy');
  hideQr();

  // An older server sends no management token: no status link then.
  els.statusLink.value = statusLink || '';
  els.copyStatusLinkStatus.textContent = '';
  els.copyStatusLink.textContent = t('link.copy_status');
  els.statusBox.hidden = !statusLink;

  els.composeSection.hidden = true;
  els.result.hidden = false;
  // The link cannot be shown again: changing the language asks first.
  document.documentElement.dataset.unsaved = 'link';
  els.resultTitle.focus();
}

function onNewMessage() {
  clearTimeout(copyTimer);
  clearTimeout(copyStatusTimer);
  hideQr();
  els.link.value = '';
  els.expires.textContent = '—';
  els.expires.removeAttribute('datetime');
  els.copyStatus.textContent = '';
  els.copyLink.textContent = t('link.copy');
  els.statusLink.value = '';
  els.copyStatusLinkStatus.textContent = '';
  els.copyStatusLink.textContent = t('link.copy_status');
  els.statusBox.hidden = true;
  els.result.hidden = true;
  delete document.documentElement.dataset.unsaved;

  els.form.reset();
  els.passphrase.type = 'password';
  if (config) fillTtlChoices(config.ttl_choices_seconds, config.default_ttl_seconds);
  else fillTtlChoices(FALLBACK_TTLS, FALLBACK_DEFAULT_TTL);
  clearError();
  updateCounter();
  els.composeSection.hidden = false;
  els.message.focus();
}

// ---------------------------------------------------------------------------
// QR code

const qr = qrToggle(
  { button: els.showQr, figure: els.qr, code: els.qrCode, caption: els.qrCaption },
  () => els.link.value,
  () => t('link.qr_alt'),
);
const hideQr = qr.hide;

// ---------------------------------------------------------------------------
// Copy

async function onCopyLink() {
  clearTimeout(copyTimer);
  copyTimer = await copyField(els.link, els.copyLink, els.copyStatus, {
    label: t('link.copy'),
    selected: t('link.selected'),
    select: true,
  });
}

async function onCopyStatusLink() {
  clearTimeout(copyStatusTimer);
  copyStatusTimer = await copyField(els.statusLink, els.copyStatusLink, els.copyStatusLinkStatus, {
    label: t('link.copy_status'),
    selected: t('link.status_selected'),
    select: true,
  });
}

// ---------------------------------------------------------------------------
// Wiring

els.form.addEventListener('submit', onCreate);
els.message.addEventListener('input', updateCounter);
els.showPassphrase.addEventListener('change', () => {
  els.passphrase.type = els.showPassphrase.checked ? 'text' : 'password';
});
els.copyLink.addEventListener('click', onCopyLink);
els.showQr.addEventListener('click', qr.toggle);
els.link.addEventListener('focus', () => els.link.select());
els.copyStatusLink.addEventListener('click', onCopyStatusLink);
els.statusLink.addEventListener('focus', () => els.statusLink.select());
els.newMessage.addEventListener('click', onNewMessage);

updateCounter();
loadConfig();
