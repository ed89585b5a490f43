// Sender's page: the private status link `{base}/manage/{id}#token=…`.
// Shows whether the message is waiting, opened, destroyed or expired, and
// can destroy it while it waits. Unlike the reveal page, this page calls the
// API on load: the link is the sender's own and reading the status changes
// nothing.
//
// The token is read from the fragment and kept in memory only: it is never
// logged, stored, or put into the page, and the address is left as it is so
// the sender can bookmark it.

import { parseManageLink } from './otm-format.js';
import { ApiError, asReceipt, burnMessage, describeApiError, getStatus } from './api.js';
import { t } from './i18n.js';
import { $, clearError, formatDate, formatTime, markBusy, receiptText, setTime, showError } from './ui.js';

const els = {
  title: $('manage-title'),
  loading: $('loading'),
  status: $('status'),
  state: $('state'),
  expiresLabel: $('expires-label'),
  expires: $('expires'),
  stateDetail: $('state-detail'),
  refresh: $('refresh'),
  burn: $('burn'),
  busy: $('busy'),
  confirmBox: $('burn-confirm-box'),
  burnConfirm: $('burn-confirm'),
  burnCancel: $('burn-cancel'),
  checked: $('checked'),
};

const page = {
  id: null,
  token: null,
  busy: false,
  // The last status shown, or null.
  current: null,
};

// The page's errors, by what went wrong (keys of the string table).
const MESSAGES = {
  badId: 'manage.bad_id',
  incomplete: 'manage.bad_token',
  wrongToken: 'manage.wrong_token',
  notFound: 'manage.not_found',
  rateLimited: 'manage.rate_limited',
  badAnswer: 'manage.bad_answer',
  generic: 'manage.failed',
};

// ---------------------------------------------------------------------------
// Display

function render(status) {
  page.current = status;
  const { state } = status;
  els.state.dataset.state = state;
  els.state.textContent = receiptText(status);

  switch (state) {
    case 'waiting':
      els.expiresLabel.textContent = t('manage.deleted_unread_on');
      els.stateDetail.textContent = t('manage.waiting_detail');
      break;
    case 'opened':
      els.expiresLabel.textContent = t('manage.works_until');
      els.stateDetail.textContent = t('manage.opened_detail');
      break;
    case 'burned':
      els.expiresLabel.textContent = t('manage.works_until');
      els.stateDetail.textContent = t('manage.burned_detail');
      break;
    default:
      els.expiresLabel.textContent = t('manage.expired_on');
      els.stateDetail.textContent = t('manage.expired_detail');
      break;
  }
  setTime(els.expires, status.expiresAt, state === 'waiting');

  els.burn.disabled = state !== 'waiting';
  if (state !== 'waiting') closeConfirm(false);
  els.checked.textContent = t('manage.checked_at', { time: formatTime(new Date()) });
  els.loading.hidden = true;
  els.status.hidden = false;
}

/** The status can no longer be shown (wrong link, receipt gone). */
function hideStatus() {
  page.current = null;
  closeConfirm(false);
  els.loading.hidden = true;
  els.status.hidden = true;
}

function setBusy(on, text = '') {
  page.busy = on;
  markBusy(els.status, els.busy, on, text);
  // aria-disabled rather than disabled: a disabled button drops keyboard focus.
  for (const button of [els.refresh, els.burnConfirm, els.burnCancel]) {
    if (on) button.setAttribute('aria-disabled', 'true');
    else button.removeAttribute('aria-disabled');
  }
  if (on) els.burn.setAttribute('aria-disabled', 'true');
  else els.burn.removeAttribute('aria-disabled');
}

// ---------------------------------------------------------------------------
// Confirmation (inline: window.confirm is blocked in some contexts)

function openConfirm() {
  els.confirmBox.hidden = false;
  els.burn.setAttribute('aria-expanded', 'true');
  els.burnConfirm.focus();
}

function closeConfirm(focusBurn) {
  const wasOpen = !els.confirmBox.hidden;
  els.confirmBox.hidden = true;
  els.burn.setAttribute('aria-expanded', 'false');
  if (wasOpen && focusBurn && !els.burn.disabled) els.burn.focus();
}

// ---------------------------------------------------------------------------
// Actions

function handleError(err) {
  if (!(err instanceof ApiError)) {
    showError(t(MESSAGES.generic));
    return;
  }
  switch (err.status) {
    case 0:
      if (err.code === 'token_required') {
        hideStatus();
        showError(t(MESSAGES.incomplete));
      } else {
        showError(describeApiError(err));
      }
      return;
    case 400:
      hideStatus();
      showError(t(MESSAGES.badId));
      return;
    case 401:
      hideStatus();
      showError(t(MESSAGES.incomplete));
      return;
    case 403:
      hideStatus();
      showError(t(MESSAGES.wrongToken));
      return;
    case 404:
      hideStatus();
      showError(t(MESSAGES.notFound));
      return;
    case 429:
      showError(t(MESSAGES.rateLimited));
      return;
    default:
      showError(describeApiError(err));
  }
}

async function refresh() {
  if (page.busy) return;
  clearError();
  setBusy(true, t('manage.checking'));
  try {
    const status = asReceipt(await getStatus(page.id, page.token));
    if (status) render(status);
    else showError(t(MESSAGES.badAnswer));
  } catch (err) {
    handleError(err);
  } finally {
    setBusy(false);
    els.loading.hidden = true;
  }
}

/** The text for a 409: the message left "waiting" before it could be destroyed. */
function notWaitingText(status) {
  switch (status.state) {
    case 'opened':
      return status.changedAt
        ? t('manage.too_late_on', { date: formatDate(status.changedAt) })
        : t('manage.too_late');
    case 'burned':
      return t('manage.already_burned');
    case 'expired':
      return t('manage.already_expired');
    default:
      return t('manage.not_destroyed');
  }
}

async function burn() {
  if (page.busy) return;
  clearError();
  setBusy(true, t('manage.destroying'));
  let refreshAfter = false;
  try {
    const status = asReceipt(await burnMessage(page.id, page.token));
    if (status) render(status);
    else showError(t(MESSAGES.badAnswer));
  } catch (err) {
    if (err instanceof ApiError && err.status === 409) {
      // No longer waiting: the answer carries the current status.
      const status = asReceipt(err.body);
      if (status) {
        render(status);
        showError(notWaitingText(status));
      } else {
        closeConfirm(false);
        refreshAfter = true;
      }
    } else {
      handleError(err);
    }
  } finally {
    setBusy(false);
  }
  if (refreshAfter) await refresh();
  if (!els.status.hidden && els.confirmBox.hidden) els.state.focus();
  else if (els.status.hidden) els.title.focus();
}

function onBurnClick() {
  if (page.busy || els.burn.disabled) return;
  if (els.confirmBox.hidden) openConfirm();
  else closeConfirm(true);
}

function onConfirmKeydown(event) {
  if (event.key === 'Escape' && !page.busy) {
    event.preventDefault();
    closeConfirm(true);
  }
}

// ---------------------------------------------------------------------------
// Start

function init() {
  els.refresh.addEventListener('click', () => {
    refresh();
  });
  els.burn.addEventListener('click', onBurnClick);
  els.burnConfirm.addEventListener('click', () => {
    burn();
  });
  els.burnCancel.addEventListener('click', () => {
    if (!page.busy) closeConfirm(true);
  });
  els.confirmBox.addEventListener('keydown', onConfirmKeydown);
  // Pasting another status link into this tab changes only the fragment.
  window.addEventListener('hashchange', () => {
    if (!page.busy && location.hash && location.hash !== '#') location.reload();
  });
  // Back to this page from the history cache: the status may have changed.
  window.addEventListener('pageshow', (event) => {
    if (event.persisted && page.id && page.token) refresh();
  });

  // The address is the status link itself, read as strictly as Rust's
  // ManageLink::parse (and so `otm status`) reads it.
  let link;
  try {
    link = parseManageLink(location.href);
  } catch (err) {
    showError(t(err && err.part === 'token' ? MESSAGES.incomplete : MESSAGES.badId));
    return;
  }
  page.id = link.id;
  page.token = link.token;
  els.loading.hidden = false;
  refresh();
}

init();
