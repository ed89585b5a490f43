// The responder's page (/request/{id}#pk=…&t=…): read the request with the
// link's answer proof, show who asked (or that anyone could have), the note
// as plain text, the expiry and the key's fingerprint; seal the answer here
// to the public key from the link (never one from the server) and store it
// once. Reading changes nothing on the server, so a link preview that loads
// this page uses nothing up (FORMAT.md section 14).

import { MAX_MESSAGE_CHARS, OtmError, charCount, decodeBase64url, toWellFormed } from './otm-format.js';
import { answerProof, fingerprint, openNote, parseRequestLink, sealAnswer } from './otm-request.js';
import { ApiError, answerRequest, describeApiError, parseExpiry, readRequest } from './api.js';
import { t, tn } from './i18n.js';
import { $, clearError, markBusy, messageCounter, setTime, showError, visibleBidiControls } from './ui.js';

const els = {
  loading: $('loading'),
  respond: $('respond'),
  title: $('respond-title'),
  anonymous: $('anonymous'),
  askerRow: $('asker-row'),
  asker: $('asker'),
  noteRow: $('note-row'),
  note: $('note'),
  expires: $('expires'),
  fingerprint: $('fingerprint'),
  form: $('answer-form'),
  secret: $('secret'),
  counter: $('counter'),
  counterLive: $('counter-live'),
  limitNote: $('limit-note'),
  send: $('send-answer'),
  busy: $('busy'),
  sent: $('sent'),
  sentTitle: $('sent-title'),
  answered: $('answered'),
  answeredTitle: $('answered-title'),
  gone: $('gone'),
  goneTitle: $('gone-title'),
};

// The request as the link and the server give it.
const request = { id: null, idBytes: null, publicKey: null, token: null, note: '' };
let busy = false;
let over = false;

function show(section, title) {
  els.loading.hidden = true;
  for (const s of [els.respond, els.sent, els.answered, els.gone]) s.hidden = s !== section;
  if (title) title.focus();
}

function setBusy(on, text = '') {
  busy = on;
  markBusy(els.form, els.busy, on, text);
  els.send.disabled = busy || over;
  els.secret.readOnly = on;
}

const countSecret = messageCounter(
  { field: els.secret, counter: els.counter, live: els.counterLive, note: els.limitNote },
  MAX_MESSAGE_CHARS,
  charCount,
);

function updateCounter() {
  over = countSecret();
  els.send.disabled = busy || over;
}

/** Who asked, as the server vouches for them. */
function askerText(creator) {
  if (!creator || typeof creator.kind !== 'string') return null;
  if (typeof creator.name === 'string' && creator.name) return creator.name;
  if (creator.kind === 'server') return t('respond.asker_server');
  return null;
}

function showRequest(info) {
  const asker = askerText(info.creator);
  els.anonymous.hidden = asker !== null;
  els.askerRow.hidden = asker === null;
  els.asker.textContent = asker ?? '';
  els.noteRow.hidden = request.note === '';
  // Plain text only: nothing in a note becomes a link or markup, and
  // direction controls are shown, not obeyed.
  els.note.textContent = visibleBidiControls(request.note).shown;
  setTime(els.expires, parseExpiry(info.expires_at_unix ?? info.expires_at), true);
  show(els.respond, null);
  updateCounter();
}

async function load() {
  let link;
  try {
    link = parseRequestLink(location.href);
  } catch {
    showGoneWith(t('respond.bad_link'));
    return;
  }
  request.id = link.id;
  request.idBytes = decodeBase64url(link.id);
  request.publicKey = link.publicKey;
  request.token = link.token;
  els.fingerprint.textContent = await fingerprint(link.publicKey);
  let proof = null;
  try {
    proof = await answerProof(link.token);
    const info = await readRequest(link.id, proof);
    request.note = await openNote(link.token, link.publicKey, info.note);
    if (info.answered) {
      show(els.answered, els.answeredTitle);
      return;
    }
    showRequest(info);
  } catch (err) {
    if (err instanceof ApiError && err.code === 'not_found') {
      showGoneWith(null);
    } else if (err instanceof OtmError) {
      // The note does not open with this link's token and key: the link is
      // not the one the asker made (or the server changed the note).
      showGoneWith(t('respond.bad_link'));
    } else {
      els.loading.hidden = true;
      showError(err instanceof ApiError ? describeApiError(err) : t('respond.failed'));
    }
  } finally {
    if (proof) proof.fill(0);
  }
}

function showGoneWith(text) {
  show(els.gone, els.goneTitle);
  if (text) showError(text);
}

async function onSend(event) {
  event.preventDefault();
  if (busy) return;
  clearError();
  const text = toWellFormed(els.secret.value);
  const chars = charCount(text);
  if (chars === 0) {
    showError(t('respond.empty'));
    els.secret.focus();
    return;
  }
  if (chars > MAX_MESSAGE_CHARS) {
    showError(tn('compose.too_long', chars, { max: MAX_MESSAGE_CHARS }));
    els.secret.focus();
    return;
  }
  setBusy(true, t('respond.sealing'));
  let proof = null;
  try {
    const sealed = await sealAnswer(request.publicKey, request.idBytes, request.note, text);
    proof = await answerProof(request.token);
    setBusy(true, t('compose.uploading'));
    await answerRequest(request.id, proof, sealed);
    els.secret.value = '';
    request.token.fill(0);
    show(els.sent, els.sentTitle);
  } catch (err) {
    if (err instanceof ApiError && err.code === 'already_answered') {
      els.secret.value = '';
      show(els.answered, els.answeredTitle);
    } else if (err instanceof ApiError && err.code === 'not_found') {
      els.secret.value = '';
      showGoneWith(null);
    } else {
      showError(err instanceof ApiError ? describeApiError(err) : t('respond.failed'));
    }
  } finally {
    if (proof) proof.fill(0);
    setBusy(false);
  }
}

els.form.addEventListener('submit', onSend);
els.secret.addEventListener('input', updateCounter);
load();
