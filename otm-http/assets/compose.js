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
import { QrTooLong, qrSvg } from './qr.js';
import { describeApiError } from './api.js';
import { t, tn } from './i18n.js';
import { $, clearError, copyField, markBusy, setTime, showError, ttlLabel } from './ui.js';

const FALLBACK_TTLS = [3600, 86400, 604800];
const FALLBACK_DEFAULT_TTL = 86400;

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

// Near the limit, a screen reader hears how much is left once typing
// pauses (not at every key); over it, the limit note says by how much.
const ANNOUNCE_WHEN_LEFT = 1000;
const ANNOUNCE_AFTER_MS = 1000;
let counterTimer = 0;

function announceLeft(n) {
  clearTimeout(counterTimer);
  const left = MAX_MESSAGE_CHARS - n;
  if (left < 0 || left > ANNOUNCE_WHEN_LEFT) {
    els.counterLive.textContent = '';
    return;
  }
  counterTimer = setTimeout(() => {
    els.counterLive.textContent = tn('compose.chars_left', left);
  }, ANNOUNCE_AFTER_MS);
}

function updateCounter() {
  const n = charCount(els.message.value);
  over = n > MAX_MESSAGE_CHARS;
  els.counter.textContent = t('compose.counter', { n, max: MAX_MESSAGE_CHARS });
  announceLeft(n);
  els.counter.classList.toggle('over', over);
  if (over) {
    els.message.setAttribute('aria-invalid', 'true');
    const extra = n - MAX_MESSAGE_CHARS;
    els.limitNote.textContent = tn('compose.over_limit', extra, { max: MAX_MESSAGE_CHARS });
  } else {
    els.message.removeAttribute('aria-invalid');
    els.limitNote.textContent = '';
  }
  updateCreateState();
}

// ---------------------------------------------------------------------------
// Settings

function fillTtl(choices, defaultTtl) {
  const valid = (Array.isArray(choices) ? choices : [])
    .map(Number)
    .filter((s) => Number.isInteger(s) && s > 0);
  const list = valid.length ? valid : FALLBACK_TTLS;
  const previous = els.ttl.value;
  els.ttl.replaceChildren();
  for (const seconds of list) {
    const option = document.createElement('option');
    option.value = String(seconds);
    option.textContent = ttlLabel(seconds);
    els.ttl.append(option);
  }
  const wanted = list.includes(Number(previous)) ? Number(previous) : Number(defaultTtl);
  els.ttl.value = String(list.includes(wanted) ? wanted : list[Math.min(1, list.length - 1)]);
}

async function loadConfig() {
  fillTtl(FALLBACK_TTLS, FALLBACK_DEFAULT_TTL);
  try {
    config = await getConfig();
    // The server's default wins over the fallback chosen before it answered.
    els.ttl.value = '';
    fillTtl(config.ttl_choices_seconds, config.default_ttl_seconds);
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
  if (config) fillTtl(config.ttl_choices_seconds, config.default_ttl_seconds);
  else fillTtl(FALLBACK_TTLS, FALLBACK_DEFAULT_TTL);
  clearError();
  updateCounter();
  els.composeSection.hidden = false;
  els.message.focus();
}

// ---------------------------------------------------------------------------
// QR code: drawn here from the full link only when asked for (screens are
// shared and photographed), and removed from the page when hidden.

function hideQr() {
  els.qrCode.replaceChildren();
  els.qrCaption.hidden = false;
  els.qr.hidden = true;
  els.showQr.textContent = t('link.show_qr');
  els.showQr.setAttribute('aria-expanded', 'false');
}

function onToggleQr() {
  if (!els.qr.hidden) {
    hideQr();
    return;
  }
  try {
    els.qrCode.replaceChildren(qrSvg(document, els.link.value, t('link.qr_alt')));
  } catch (err) {
    if (!(err instanceof QrTooLong)) throw err;
    // Only a link longer than a QR code holds (2,331 bytes) gets here.
    els.qrCode.replaceChildren();
    els.qrCode.textContent = t('link.qr_too_long');
    els.qrCaption.hidden = true;
  }
  els.qr.hidden = false;
  els.showQr.textContent = t('link.hide_qr');
  els.showQr.setAttribute('aria-expanded', 'true');
}

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
els.showQr.addEventListener('click', onToggleQr);
els.link.addEventListener('focus', () => els.link.select());
els.copyStatusLink.addEventListener('click', onCopyStatusLink);
els.statusLink.addEventListener('focus', () => els.statusLink.select());
els.newMessage.addEventListener('click', onNewMessage);

updateCounter();
loadConfig();
