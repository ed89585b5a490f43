// The asker's page (/receive/{id}#r=…[&p=1]): the request's state with the
// answer's access proof; once answered, take the answer once (with the
// claim proof, and the passphrase when the link says so), open it here
// with the key pair from the receive secret, and show it; or withdraw the
// request. The receive secret never leaves this page (FORMAT.md section 14).

import { MAX_PASSPHRASE_CHARS, OtmError, decodeBase64url, wipeSecrets } from './otm-format.js';
import {
  answerProof,
  answerSecrets,
  answerToken,
  fingerprint,
  openAnswer,
  openNote,
  parseReceiveLink,
  receiveKeyPair,
} from './otm-request.js';
import {
  ApiError,
  describeApiError,
  getRequestStatus,
  openMessage,
  parseExpiry,
  readRequest,
  withdrawRequest,
} from './api.js';
import { t, tn } from './i18n.js';
import { $, clearError, copyField, formatDate, markBusy, setTime, showError, visibleBidiControls } from './ui.js';

const els = {
  loading: $('loading'),
  receive: $('receive'),
  title: $('receive-title'),
  state: $('state'),
  expires: $('expires'),
  fingerprint: $('fingerprint'),
  detail: $('state-detail'),
  form: $('reveal-form'),
  passphraseBox: $('passphrase-box'),
  passphrase: $('passphrase-field'),
  reveal: $('reveal'),
  refresh: $('refresh'),
  withdraw: $('withdraw'),
  busy: $('busy'),
  withdrawBox: $('withdraw-box'),
  withdrawConfirm: $('withdraw-confirm'),
  withdrawCancel: $('withdraw-cancel'),
  revealed: $('revealed'),
  revealedTitle: $('revealed-title'),
  controlsBox: $('controls-box'),
  controlsText: $('controls-text'),
  plaintext: $('plaintext'),
  copyText: $('copy-text'),
  copyOriginal: $('copy-original'),
  copyStatus: $('copy-status'),
  gone: $('gone'),
  goneTitle: $('gone-title'),
};

const link = { id: null, idBytes: null, secret: null, passphrase: false };
let busy = false;
let original = null;
let copyTimer = 0;

function show(section, title) {
  els.loading.hidden = true;
  for (const s of [els.receive, els.revealed, els.gone]) s.hidden = s !== section;
  if (title) title.focus();
}

function setBusy(on, text = '') {
  busy = on;
  markBusy(els.receive, els.busy, on, text);
  for (const b of [els.reveal, els.refresh, els.withdraw, els.withdrawConfirm]) b.disabled = on;
}

/** The answer's access proof (from the secret alone, never the passphrase). */
async function accessProof() {
  const secrets = await answerSecrets(link.secret, null, { raw: true });
  secrets.claimProof.fill(0);
  secrets.contentKey.fill(0);
  return secrets.accessProof;
}

function showStatus(status) {
  const state = status.state;
  els.state.textContent = t(`receive.state_${state}`);
  setTime(els.expires, parseExpiry(status.expires_at_unix ?? status.expires_at), true);
  const answered = parseExpiry(status.answered_at);
  const changed = parseExpiry(status.changed_at);
  const when = (d) => (d ? formatDate(d) : '');
  els.detail.textContent =
    state === 'waiting'
      ? t('receive.detail_waiting')
      : state === 'answered'
        ? t('receive.detail_answered', { when: when(answered) })
        : state === 'opened'
          ? t('receive.detail_opened', { when: when(changed) })
          : t('receive.detail_burned', { when: when(changed) });
  els.form.hidden = state !== 'answered';
  els.passphraseBox.hidden = !link.passphrase;
  show(els.receive, null);
}

async function refresh(focus) {
  clearError();
  let proof = null;
  try {
    proof = await accessProof();
    const status = await getRequestStatus(link.id, proof);
    showStatus(status);
    if (focus) els.title.focus();
  } catch (err) {
    handleError(err);
  } finally {
    if (proof) proof.fill(0);
  }
}

function handleError(err) {
  if (err instanceof ApiError && err.code === 'not_found') {
    show(els.gone, els.goneTitle);
    return;
  }
  els.loading.hidden = true;
  showError(err instanceof ApiError ? describeApiError(err) : t('receive.failed'));
}

async function onReveal(event) {
  event.preventDefault();
  if (busy) return;
  clearError();
  const phrase = link.passphrase ? els.passphrase.value : null;
  if (link.passphrase && !phrase) {
    showError(t('receive.passphrase_first'));
    els.passphrase.focus();
    return;
  }
  setBusy(true, link.passphrase ? t('compose.deriving') : t('reveal.opening'));
  let token = null;
  let proof = null;
  let secrets = null;
  try {
    // The answer is bound to the note: read it as the responder did.
    token = await answerToken(link.secret);
    proof = await answerProof(token);
    const pair = await receiveKeyPair(link.secret);
    const info = await readRequest(link.id, proof);
    const note = await openNote(token, pair.publicKey, info.note);
    secrets = await answerSecrets(link.secret, phrase);
    const { envelope } = await openMessage(link.id, {
      accessProof: secrets.accessProof,
      claimProof: secrets.claimProof,
    });
    const text = await openAnswer(link.secret, link.idBytes, note, envelope);
    showRevealed(text);
  } catch (err) {
    if (err instanceof ApiError && err.code === 'wrong_proof') {
      const left = err.attemptsLeft ?? 0;
      showError(left === 0 ? t('receive.wrong_destroyed') : tn('reveal.wrong_left', left));
      if (left === 0) await refresh(false);
      else els.passphrase.focus();
    } else if (err instanceof OtmError && err.code === 'BadPassphrase') {
      showError(t('reveal.passphrase_too_long', { max: MAX_PASSPHRASE_CHARS }));
    } else if (err instanceof OtmError) {
      showError(t('receive.undecryptable'));
    } else {
      handleError(err);
    }
  } finally {
    for (const bytes of [token, proof]) if (bytes) bytes.fill(0);
    wipeSecrets(secrets);
    setBusy(false);
  }
}

function showRevealed(text) {
  const { shown, count } = visibleBidiControls(text);
  original = count > 0 ? text : null;
  els.plaintext.value = shown;
  els.controlsBox.hidden = count === 0;
  els.controlsText.textContent = count > 0 ? tn('reveal.controls', count) : '';
  els.copyOriginal.hidden = count === 0;
  els.passphrase.value = '';
  show(els.revealed, els.revealedTitle);
}

function toggleWithdraw(open) {
  els.withdrawBox.hidden = !open;
  els.withdraw.setAttribute('aria-expanded', open ? 'true' : 'false');
  if (open) els.withdrawConfirm.focus();
}

async function onWithdraw() {
  if (busy) return;
  clearError();
  setBusy(true, t('receive.withdrawing'));
  let proof = null;
  try {
    proof = await accessProof();
    await withdrawRequest(link.id, proof);
    toggleWithdraw(false);
    show(els.gone, els.goneTitle);
  } catch (err) {
    handleError(err);
  } finally {
    if (proof) proof.fill(0);
    setBusy(false);
  }
}

async function init() {
  els.form.addEventListener('submit', onReveal);
  els.refresh.addEventListener('click', () => refresh(true));
  els.withdraw.addEventListener('click', () => toggleWithdraw(els.withdrawBox.hidden));
  els.withdrawCancel.addEventListener('click', () => {
    toggleWithdraw(false);
    els.withdraw.focus();
  });
  els.withdrawConfirm.addEventListener('click', onWithdraw);
  els.copyText.addEventListener('click', async () => {
    clearTimeout(copyTimer);
    copyTimer = await copyField(els.plaintext, els.copyText, els.copyStatus, {
      label: t('reveal.copy'),
      selected: t('reveal.selected'),
    });
  });
  els.copyOriginal.addEventListener('click', async () => {
    if (original === null) return;
    try {
      await navigator.clipboard.writeText(original);
      els.copyStatus.textContent = t('ui.copied_status');
    } catch {
      els.copyStatus.textContent = t('reveal.copy_original_failed');
    }
  });
  let parsed;
  try {
    parsed = parseReceiveLink(location.href);
  } catch {
    els.loading.hidden = true;
    show(els.gone, null);
    showError(t('receive.bad_link'));
    return;
  }
  link.id = parsed.id;
  link.idBytes = decodeBase64url(parsed.id);
  link.secret = parsed.secret;
  link.passphrase = parsed.passphrase;
  try {
    const pair = await receiveKeyPair(link.secret);
    els.fingerprint.textContent = await fingerprint(pair.publicKey);
  } catch {
    showError(t('compose.unsupported'));
    return;
  }
  await refresh(false);
}

init();
