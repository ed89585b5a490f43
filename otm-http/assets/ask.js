// "Request a secret" page: make a receive secret here, seal the note for
// request-link holders, store the request (verifiers only), and show the
// request link to send and the private receive link to keep. The receive
// secret never leaves this page except inside the receive link's fragment
// (FORMAT.md section 14).

import {
  MAX_PASSPHRASE_CHARS,
  OtmError,
  accessVerifier,
  charCount,
  claimVerifier,
  isValidId,
  toWellFormed,
  wipeSecrets,
} from './otm-format.js';
import {
  MAX_NOTE_CHARS,
  answerProof,
  answerSecrets,
  answerToken,
  fingerprint,
  formatReceiveLink,
  formatRequestLink,
  generateReceiveSecret,
  receiveKeyPair,
  sealNote,
} from './otm-request.js';
import { ApiError, askForSecret, basePath, describeApiError, parseExpiry } from './api.js';
import { t } from './i18n.js';
import {
  $,
  clearError,
  copyField,
  linkBase,
  loadSettings,
  markBusy,
  qrToggle,
  resetTtl,
  setTime,
  showError,
} from './ui.js';


const els = {
  ask: $('ask'),
  form: $('ask-form'),
  note: $('note'),
  noteCounter: $('note-counter'),
  noteProblem: $('note-problem'),
  ttl: $('ttl'),
  passphrase: $('passphrase'),
  button: $('ask-button'),
  busy: $('busy'),
  asked: $('asked'),
  askedTitle: $('asked-title'),
  requestLink: $('request-link'),
  copyRequest: $('copy-request-link'),
  copyRequestStatus: $('copy-request-status'),
  showQr: $('show-qr'),
  qr: $('qr'),
  qrCode: $('qr-code'),
  qrCaption: $('qr-caption'),
  fingerprint: $('fingerprint'),
  expires: $('expires'),
  receiveLink: $('receive-link'),
  copyReceive: $('copy-receive-link'),
  copyReceiveStatus: $('copy-receive-status'),
  askedPassphrase: $('asked-passphrase'),
  openReceive: $('open-receive'),
  newRequest: $('new-request'),
};

let config = null;
let busy = false;
let over = false;
const copyTimers = [0, 0];

function setBusy(on, text = '') {
  busy = on;
  markBusy(els.form, els.busy, on, text);
  els.button.disabled = busy || over;
}

function updateCounter() {
  const n = charCount(els.note.value);
  over = n > MAX_NOTE_CHARS;
  els.noteCounter.textContent = t('compose.counter', { n, max: MAX_NOTE_CHARS });
  els.noteCounter.classList.toggle('over', over);
  if (over) {
    els.note.setAttribute('aria-invalid', 'true');
    els.noteProblem.textContent = t('ask.note_too_long', { max: MAX_NOTE_CHARS });
  } else {
    els.note.removeAttribute('aria-invalid');
    els.noteProblem.textContent = '';
  }
  els.button.disabled = busy || over;
}

async function loadConfig() {
  config = await loadSettings(els.ttl);
}

function describeError(err) {
  if (err instanceof ApiError) return describeApiError(err);
  if (err instanceof OtmError) {
    if (err.code === 'BadPassphrase') return t('compose.passphrase_too_long', { max: MAX_PASSPHRASE_CHARS });
    if (err.code === 'MessageTooLong') return t('ask.note_too_long', { max: MAX_NOTE_CHARS });
    if (err.code === 'BadId') return t('compose.bad_answer');
    return t('ask.failed');
  }
  if (err && err.name === 'NotSupportedError') return t('compose.unsupported');
  return t('ask.failed');
}

async function onAsk(event) {
  event.preventDefault();
  if (busy) return;
  clearError();
  const note = toWellFormed(els.note.value).trim();
  if (charCount(note) > MAX_NOTE_CHARS) {
    showError(t('ask.note_too_long', { max: MAX_NOTE_CHARS }));
    els.note.focus();
    return;
  }
  const passphrase = els.passphrase.value === '' ? null : els.passphrase.value;
  const ttl = Number(els.ttl.value);
  setBusy(true, passphrase === null ? t('ask.preparing') : t('compose.deriving'));
  let secret = null;
  let token = null;
  let proof = null;
  let secrets = null;
  try {
    secret = generateReceiveSecret();
    const pair = await receiveKeyPair(secret);
    token = await answerToken(secret);
    proof = await answerProof(token);
    const sealedNote = await sealNote(token, pair.publicKey, note);
    secrets = await answerSecrets(secret, passphrase);
    setBusy(true, t('compose.uploading'));
    const answer = await askForSecret({
      note: sealedNote,
      answerVerifier: await accessVerifier(proof),
      accessVerifier: await accessVerifier(secrets.accessProof),
      verifier: await claimVerifier(secrets.claimProof),
      ttlSeconds: Number.isInteger(ttl) && ttl > 0 ? ttl : undefined,
    });
    if (!answer || typeof answer.id !== 'string' || !isValidId(answer.id)) {
      throw new OtmError('BadId', 'the server returned no valid request ID');
    }
    const base = linkBase(config);
    showAsked({
      requestLink: formatRequestLink(base, answer.id, pair.publicKey, token),
      receiveLink: formatReceiveLink(base, answer.id, secret, passphrase !== null),
      fingerprint: await fingerprint(pair.publicKey),
      expiresAt: parseExpiry(answer.expires_at),
      passphrase: passphrase !== null,
    });
  } catch (err) {
    showError(describeError(err));
  } finally {
    for (const bytes of [secret, token, proof]) if (bytes) bytes.fill(0);
    wipeSecrets(secrets);
    setBusy(false);
  }
}

function showAsked(result) {
  els.note.value = '';
  els.passphrase.value = '';
  updateCounter();
  els.requestLink.value = result.requestLink;
  els.receiveLink.value = result.receiveLink;
  els.openReceive.href = result.receiveLink;
  els.fingerprint.textContent = result.fingerprint;
  setTime(els.expires, result.expiresAt, true, t('link.expiry_unknown'));
  els.askedPassphrase.hidden = !result.passphrase;
  els.copyRequestStatus.textContent = '';
  els.copyReceiveStatus.textContent = '';
  els.copyRequest.textContent = t('asked.copy_request');
  els.copyReceive.textContent = t('asked.copy_receive');
  hideQr();
  els.ask.hidden = true;
  els.asked.hidden = false;
  // The receive link cannot be shown again: changing the language asks first.
  document.documentElement.dataset.unsaved = 'link';
  els.askedTitle.focus();
}

function onNewRequest() {
  copyTimers.forEach(clearTimeout);
  hideQr();
  for (const field of [els.requestLink, els.receiveLink]) field.value = '';
  els.openReceive.href = `${basePath()}/request`;
  els.fingerprint.textContent = '';
  els.asked.hidden = true;
  delete document.documentElement.dataset.unsaved;
  els.form.reset();
  resetTtl(els.ttl, config);
  clearError();
  updateCounter();
  els.ask.hidden = false;
  els.note.focus();
}

const qr = qrToggle(
  { button: els.showQr, figure: els.qr, code: els.qrCode, caption: els.qrCaption },
  () => els.requestLink.value,
  () => t('asked.qr_alt'),
);
const hideQr = qr.hide;

els.form.addEventListener('submit', onAsk);
els.note.addEventListener('input', updateCounter);
els.copyRequest.addEventListener('click', async () => {
  clearTimeout(copyTimers[0]);
  copyTimers[0] = await copyField(els.requestLink, els.copyRequest, els.copyRequestStatus, {
    label: t('asked.copy_request'),
    selected: t('link.selected'),
    select: true,
  });
});
els.copyReceive.addEventListener('click', async () => {
  clearTimeout(copyTimers[1]);
  copyTimers[1] = await copyField(els.receiveLink, els.copyReceive, els.copyReceiveStatus, {
    label: t('asked.copy_receive'),
    selected: t('link.status_selected'),
    select: true,
  });
});
els.showQr.addEventListener('click', qr.toggle);
els.requestLink.addEventListener('focus', () => els.requestLink.select());
els.receiveLink.addEventListener('focus', () => els.receiveLink.select());
els.newRequest.addEventListener('click', onNewRequest);

updateCounter();
loadConfig();
