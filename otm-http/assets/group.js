// Group status page: the sender's view of one message sent to several
// people (FORMAT.md section 9.6). The IDs, tokens (or the group secret they
// derive from) and the names are in the fragment, which is never sent; the
// page reads every receipt in one request and burns one link or all the
// unopened ones. Nothing here can read the message.

import { parseGroupLink } from './otm-format.js';
import { ApiError, asReceipt, burnGroup, burnMessage, describeApiError, getGroupStatus } from './api.js';
import { t, tn } from './i18n.js';
import { $, clearError, formatTime, markBusy, receiptText, setTime, showError } from './ui.js';

const els = {
  title: $('group-title'),
  loading: $('loading'),
  group: $('group'),
  summary: $('summary'),
  members: $('members'),
  expires: $('expires'),
  refresh: $('refresh'),
  burnAll: $('burn-all'),
  busy: $('busy'),
  confirmBox: $('burn-confirm-box'),
  question: $('burn-question'),
  burnConfirm: $('burn-confirm'),
  burnCancel: $('burn-cancel'),
  checked: $('checked'),
};

const page = {
  members: [],
  busy: false,
  // What the open confirmation would destroy: a member's index, or 'all'.
  target: null,
  // The button that opened the confirmation, for the focus afterwards.
  opener: null,
};

function nameOf(member, n) {
  return member.label ?? t('group.unnamed', { n });
}

function stateText(status) {
  return status ? receiptText(status) : t('group.gone');
}

function waiting() {
  return page.members.filter((m) => m.status && m.status.state === 'waiting');
}

function render() {
  els.members.replaceChildren();
  page.members.forEach((member, i) => {
    const n = i + 1;
    const row = document.createElement('tr');
    const name = document.createElement('th');
    name.scope = 'row';
    name.dir = 'auto';
    name.id = `member-${n}`;
    name.textContent = nameOf(member, n);
    const state = document.createElement('td');
    const strong = document.createElement('span');
    strong.className = 'state';
    strong.dataset.state = member.status ? member.status.state : 'gone';
    strong.textContent = stateText(member.status);
    state.append(strong);
    const actions = document.createElement('td');
    if (member.status && member.status.state === 'waiting') {
      const burn = document.createElement('button');
      burn.type = 'button';
      burn.className = 'button danger';
      burn.textContent = t('group.burn_one');
      burn.setAttribute('aria-label', t('group.burn_one_label', { name: nameOf(member, n) }));
      burn.setAttribute('aria-controls', 'burn-confirm-box');
      burn.setAttribute('aria-expanded', 'false');
      burn.addEventListener('click', () => onBurnClick(i, burn));
      actions.append(burn);
    }
    row.append(name, state, actions);
    els.members.append(row);
  });
  const opened = page.members.filter((m) => m.status && m.status.state === 'opened').length;
  els.summary.textContent = t('group.summary', { opened, total: page.members.length });
  const expiry = page.members.map((m) => m.status && m.status.expiresAt).find(Boolean) ?? null;
  setTime(els.expires, expiry, waiting().length > 0);
  els.burnAll.disabled = waiting().length === 0;
  els.checked.textContent = t('manage.checked_at', { time: formatTime(new Date()) });
  els.loading.hidden = true;
  els.group.hidden = false;
}

function setBusy(on, text = '') {
  page.busy = on;
  markBusy(els.group, els.busy, on, text);
  for (const button of els.group.querySelectorAll('button')) {
    if (on) button.setAttribute('aria-disabled', 'true');
    else button.removeAttribute('aria-disabled');
  }
}

function apply(answer) {
  const list = answer && Array.isArray(answer.members) ? answer.members : null;
  if (!list || list.length !== page.members.length) {
    showError(t('manage.bad_answer'));
    return;
  }
  list.forEach((entry, i) => {
    page.members[i].status = entry && entry.id === page.members[i].id ? asReceipt(entry.status) : null;
  });
  render();
}

function handleError(err) {
  if (err instanceof ApiError && err.status === 429) showError(t('manage.rate_limited'));
  else if (err instanceof ApiError) showError(describeApiError(err));
  else showError(t('manage.failed'));
}

async function refresh() {
  if (page.busy) return;
  clearError();
  setBusy(true, t('manage.checking'));
  try {
    apply(await getGroupStatus(page.members));
  } catch (err) {
    handleError(err);
  } finally {
    setBusy(false);
    els.loading.hidden = true;
  }
}

// ---------------------------------------------------------------------------
// Destroying: one link, or every unopened one, after a confirmation

function openConfirm(target, opener) {
  page.target = target;
  page.opener = opener;
  if (target === 'all') {
    els.question.textContent = tn('group.burn_all_question', waiting().length);
  } else {
    els.question.textContent = t('group.burn_one_question', {
      name: nameOf(page.members[target], target + 1),
    });
  }
  els.confirmBox.hidden = false;
  opener.setAttribute('aria-expanded', 'true');
  els.burnConfirm.focus();
}

function closeConfirm(focusOpener) {
  const opener = page.opener;
  els.confirmBox.hidden = true;
  page.target = null;
  page.opener = null;
  if (opener) {
    opener.setAttribute('aria-expanded', 'false');
    if (focusOpener && opener.isConnected && !opener.disabled) opener.focus();
  }
}

function onBurnClick(target, opener) {
  if (page.busy) return;
  if (!els.confirmBox.hidden && page.target === target) closeConfirm(true);
  else {
    if (!els.confirmBox.hidden) closeConfirm(false);
    openConfirm(target, opener);
  }
}

async function burn() {
  if (page.busy || page.target === null) return;
  const target = page.target;
  closeConfirm(false);
  clearError();
  setBusy(true, t('manage.destroying'));
  try {
    if (target === 'all') {
      const before = waiting().length;
      apply(await burnGroup(page.members));
      const destroyed = before - waiting().length;
      els.checked.textContent = tn('group.destroyed', destroyed);
    } else {
      const member = page.members[target];
      try {
        member.status = asReceipt(await burnMessage(member.id, member.token));
      } catch (err) {
        // Opened or expired meanwhile: the answer says which.
        if (!(err instanceof ApiError && err.status === 409)) throw err;
        member.status = asReceipt(err.body);
      }
      render();
    }
  } catch (err) {
    handleError(err);
  } finally {
    setBusy(false);
  }
  els.summary.focus();
}

// ---------------------------------------------------------------------------
// Start

async function init() {
  els.refresh.addEventListener('click', () => {
    refresh();
  });
  els.burnAll.addEventListener('click', () => onBurnClick('all', els.burnAll));
  els.burnConfirm.addEventListener('click', () => {
    burn();
  });
  els.burnCancel.addEventListener('click', () => {
    if (!page.busy) closeConfirm(true);
  });
  els.confirmBox.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !page.busy) {
      event.preventDefault();
      closeConfirm(true);
    }
  });
  window.addEventListener('hashchange', () => {
    if (!page.busy && location.hash && location.hash !== '#') location.reload();
  });
  window.addEventListener('pageshow', (event) => {
    if (event.persisted && page.members.length > 0) refresh();
  });

  let link;
  try {
    link = await parseGroupLink(location.href);
  } catch {
    showError(t('group.bad_link'));
    return;
  }
  page.members = link.members.map((m) => ({ id: m.id, token: m.token, label: m.label, status: null }));
  els.loading.hidden = false;
  refresh();
}

init();
