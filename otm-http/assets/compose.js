// Compose page: encrypt a message in the browser, upload the ciphertext,
// show the one-time link. The key never leaves this page except inside the
// link's fragment.

import {
  MAX_MESSAGE_CHARS,
  MAX_PASSPHRASE_CHARS,
  OtmError,
  MAX_GROUP,
  accessVerifier,
  charCount,
  checkLabel,
  claimVerifier,
  deriveSecrets,
  formatGroupLink,
  formatLink,
  formatManageLink,
  generateKey,
  isValidId,
  seal,
  toWellFormed,
  wipeSecrets,
} from './otm-format.js';
import { ApiError, createGroup, createMessage, parseExpiry } from './api.js';
import { describeApiError } from './api.js';
import { t, tn } from './i18n.js';
import {
  $,
  clearError,
  copyField,
  linkBase,
  loadSettings,
  markBusy,
  messageCounter,
  qrToggle,
  resetTtl,
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
  severalBox: $('several-box'),
  several: $('several'),
  recipientsBox: $('recipients-box'),
  recipients: $('recipients'),
  addRecipient: $('add-recipient'),
  recipientsLive: $('recipients-live'),
  groupResult: $('group-result'),
  groupResultTitle: $('group-result-title'),
  groupLinks: $('group-links'),
  groupExpires: $('group-expires'),
  groupPassphrase: $('group-passphrase'),
  groupStatusLink: $('group-status-link'),
  copyGroupStatus: $('copy-group-status'),
  copyGroupStatusStatus: $('copy-group-status-status'),
  groupNew: $('group-new'),
};

/** The fewest recipients of a group. */
const MIN_RECIPIENTS = 2;


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
  const idle = !els.severalBox.hidden && els.several.checked ? t('compose.create_links') : t('compose.create');
  els.create.textContent = on ? t('compose.creating') : idle;
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

async function loadConfig() {
  config = await loadSettings(els.ttl);
  // Several recipients only where the store keeps a group all or none.
  els.severalBox.hidden = !(maxRecipients() >= MIN_RECIPIENTS);
  // A browser that restores form state may bring the box back ticked.
  if (els.severalBox.hidden) els.several.checked = false;
  onSeveralChange();
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

/** The message to seal, or null after showing why there is none. */
function messageText() {
  const text = toWellFormed(els.message.value);
  const chars = charCount(text);
  if (chars === 0 || chars > MAX_MESSAGE_CHARS) {
    showError(chars === 0 ? t('compose.empty') : tn('compose.too_long', chars, { max: MAX_MESSAGE_CHARS }));
    els.message.focus();
    return null;
  }
  return text;
}

async function onCreate(event) {
  event.preventDefault();
  if (busy) return;
  clearError();
  if (!els.severalBox.hidden && els.several.checked) {
    await onCreateGroup();
    return;
  }

  const text = messageText();
  if (text === null) return;
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
    const base = linkBase(config);
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
  resetTtl(els.ttl, config);
  clearError();
  updateCounter();
  els.composeSection.hidden = false;
  els.message.focus();
}

// ---------------------------------------------------------------------------
// Several recipients: one independent link each (FORMAT.md section 9.6)

function maxRecipients() {
  const max = config && Number.isInteger(config.max_recipients) ? config.max_recipients : 0;
  return Math.min(max, MAX_GROUP);
}

function recipientRows() {
  return [...els.recipients.children];
}

/** Numbers the rows 1…n again and enables what may be used. */
function renumberRecipients() {
  const rows = recipientRows();
  rows.forEach((row, i) => {
    const n = i + 1;
    const [nameLabel, phraseLabel] = row.querySelectorAll('label');
    const name = row.querySelector('input.recipient-name');
    const phrase = row.querySelector('input.recipient-passphrase');
    const remove = row.querySelector('button');
    name.id = `recipient-${n}`;
    nameLabel.htmlFor = name.id;
    nameLabel.textContent = t('compose.recipient_label', { n });
    phrase.id = `recipient-passphrase-${n}`;
    phraseLabel.htmlFor = phrase.id;
    phraseLabel.textContent = t('compose.recipient_passphrase', { n });
    remove.setAttribute('aria-label', t('compose.remove_recipient', { n }));
    remove.disabled = rows.length <= MIN_RECIPIENTS;
  });
  els.addRecipient.disabled = rows.length >= maxRecipients();
}

function textField(className, type) {
  const input = document.createElement('input');
  input.type = type;
  input.className = className;
  input.autocomplete = 'off';
  input.spellcheck = false;
  input.autocapitalize = 'off';
  if (type === 'text') input.dir = 'auto';
  return input;
}

function addRecipient(focus) {
  if (recipientRows().length >= maxRecipients()) return;
  const row = document.createElement('li');
  const nameLabel = document.createElement('label');
  const line = document.createElement('div');
  line.className = 'copy-row';
  const name = textField('recipient-name', 'text');
  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'button';
  remove.textContent = t('compose.remove');
  remove.addEventListener('click', () => removeRecipient(row));
  line.append(name, remove);
  // Their own passphrase, instead of the one above: told to them alone.
  const phraseLabel = document.createElement('label');
  phraseLabel.className = 'recipient-passphrase-label';
  const phrase = textField('recipient-passphrase', 'password');
  phrase.setAttribute('aria-describedby', 'recipients-passphrase-hint');
  row.append(nameLabel, line, phraseLabel, phrase);
  els.recipients.append(row);
  renumberRecipients();
  if (focus) {
    name.focus();
    els.recipientsLive.textContent = t('compose.recipient_added', { n: recipientRows().length });
  }
}

function removeRecipient(row) {
  const rows = recipientRows();
  if (rows.length <= MIN_RECIPIENTS) return;
  const at = rows.indexOf(row);
  row.remove();
  renumberRecipients();
  const left = recipientRows();
  left[Math.min(at, left.length - 1)].querySelector('input.recipient-name').focus();
  els.recipientsLive.textContent = t('compose.recipient_removed');
}

function onSeveralChange() {
  const on = els.several.checked;
  els.recipientsBox.hidden = !on;
  if (on && recipientRows().length === 0) {
    for (let i = 0; i < MIN_RECIPIENTS; i++) addRecipient(false);
  }
  els.create.textContent = on ? t('compose.create_links') : t('compose.create');
}

/** The labels typed, in order (null: none), or null after showing an error. */
function recipientLabels() {
  const labels = [];
  for (const row of recipientRows()) {
    const input = row.querySelector('input.recipient-name');
    const label = input.value.trim();
    if (label !== '') {
      try {
        checkLabel(label);
      } catch {
        showError(t('compose.label_bad', { max: 64 }));
        input.focus();
        return null;
      }
    }
    labels.push(label === '' ? null : label);
  }
  return labels;
}

async function onCreateGroup() {
  const text = messageText();
  if (text === null) return;
  const labels = recipientLabels();
  if (labels === null) return;
  if (labels.length < MIN_RECIPIENTS) {
    // The rows were not there (a restored form): show them to fill in.
    onSeveralChange();
    els.recipients.querySelector('input')?.focus();
    return;
  }
  const rawPassphrase = els.passphrase.value;
  const passphrase = rawPassphrase === '' ? null : rawPassphrase;
  // A person's own passphrase replaces the one above for their link.
  const passphrases = recipientRows().map((row) => {
    const own = row.querySelector('input.recipient-passphrase').value;
    return own === '' ? passphrase : own;
  });
  const ttl = Number(els.ttl.value);
  const total = labels.length;

  setBusy(true, t('compose.encrypting_n', { n: 1, total }));
  const keys = [];
  let secrets = null;
  try {
    const members = [];
    for (let n = 1; n <= total; n++) {
      setBusy(true, t('compose.encrypting_n', { n, total }));
      const key = generateKey();
      keys.push(key);
      secrets = await deriveSecrets(key, passphrases[n - 1]);
      const envelope = await seal(secrets, text);
      members.push({
        envelope,
        verifier: await claimVerifier(secrets.claimProof),
        accessVerifier: await accessVerifier(secrets.accessProof),
      });
      wipeSecrets(secrets);
      secrets = null;
    }
    setBusy(true, t('compose.uploading'));
    const answer = await createGroup({
      members,
      ttlSeconds: Number.isInteger(ttl) && ttl > 0 ? ttl : undefined,
    });
    const stored = answer && Array.isArray(answer.members) ? answer.members : [];
    if (stored.length !== total || !stored.every((m) => typeof m.id === 'string' && isValidId(m.id))) {
      throw new OtmError('BadId', 'the server returned no valid message IDs');
    }
    const base = linkBase(config);
    const links = stored.map((m, i) => ({
      label: labels[i],
      link: formatLink(base, m.id, keys[i], passphrases[i] !== null),
    }));
    const secret = typeof answer.group_secret === 'string' ? answer.group_secret : null;
    const statusLink = await formatGroupLink(
      base,
      secret,
      stored.map((m, i) => ({ id: m.id, token: m.manage_token, label: labels[i] })),
    );
    const expiresAt =
      parseExpiry(answer.expires_at) ??
      (Number.isInteger(ttl) && ttl > 0 ? new Date(Date.now() + ttl * 1000) : null);
    showGroupResult(links, expiresAt, passphrases.some((p) => p !== null), statusLink);
  } catch (err) {
    showError(describeError(err));
  } finally {
    for (const key of keys) key.fill(0);
    wipeSecrets(secrets);
    setBusy(false);
  }
}

function showGroupResult(links, expiresAt, hasPassphrase, statusLink) {
  for (const field of els.recipients.querySelectorAll('input.recipient-passphrase')) field.value = '';
  els.message.value = '';
  els.passphrase.value = '';
  els.passphrase.type = 'password';
  els.showPassphrase.checked = false;
  updateCounter();

  els.groupLinks.replaceChildren();
  links.forEach(({ label, link }, i) => {
    const n = i + 1;
    const row = document.createElement('li');
    row.className = 'field';
    const name = document.createElement('label');
    name.htmlFor = `group-link-${n}`;
    name.textContent = label ? t('group_link.link_label', { name: label }) : t('group_link.link_unnamed', { n });
    const line = document.createElement('div');
    line.className = 'copy-row';
    const input = document.createElement('input');
    input.id = `group-link-${n}`;
    input.type = 'text';
    input.readOnly = true;
    input.autocomplete = 'off';
    input.spellcheck = false;
    input.dir = 'ltr';
    input.value = link;
    input.addEventListener('focus', () => input.select());
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.className = 'button primary';
    copy.textContent = t('link.copy');
    name.id = `group-link-label-${n}`;
    copy.setAttribute('aria-describedby', name.id);
    const status = document.createElement('p');
    status.className = 'status';
    status.setAttribute('aria-live', 'polite');
    let timer = 0;
    copy.addEventListener('click', async () => {
      clearTimeout(timer);
      timer = await copyField(input, copy, status, {
        label: t('link.copy'),
        selected: t('link.selected'),
        select: true,
      });
    });
    line.append(input, copy);
    row.append(name, line, status);
    els.groupLinks.append(row);
  });
  setTime(els.groupExpires, expiresAt, true, t('link.expiry_unknown'));
  els.groupPassphrase.hidden = !hasPassphrase;
  els.groupStatusLink.value = statusLink;
  els.copyGroupStatusStatus.textContent = '';
  els.copyGroupStatus.textContent = t('link.copy_status');

  els.composeSection.hidden = true;
  els.groupResult.hidden = false;
  document.documentElement.dataset.unsaved = 'link';
  els.groupResultTitle.focus();
}

function onGroupNew() {
  clearTimeout(copyStatusTimer);
  els.groupLinks.replaceChildren();
  els.groupStatusLink.value = '';
  els.groupResult.hidden = true;
  els.recipients.replaceChildren();
  els.several.checked = false;
  onSeveralChange();
  onNewMessage();
}

async function onCopyGroupStatus() {
  clearTimeout(copyStatusTimer);
  copyStatusTimer = await copyField(els.groupStatusLink, els.copyGroupStatus, els.copyGroupStatusStatus, {
    label: t('link.copy_status'),
    selected: t('link.status_selected'),
    select: true,
  });
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
els.several.addEventListener('change', onSeveralChange);
els.addRecipient.addEventListener('click', () => addRecipient(true));
els.copyGroupStatus.addEventListener('click', onCopyGroupStatus);
els.groupStatusLink.addEventListener('focus', () => els.groupStatusLink.select());
els.groupNew.addEventListener('click', onGroupNew);

updateCounter();
loadConfig();
