// The language menu in every page's footer: the reader picks a language and
// presses the button next to it (a choice alone changes nothing, so moving
// through the menu with the arrow keys never reloads the page). The choice
// is kept in a cookie that holds the language tag only (no identifier), and
// the page is loaded again, in that language, with its address (and any key
// in the fragment) unchanged. The server picks the language before the page
// is sent, so no page is ever shown first in another language.
//
// A page that shows something it cannot show again (a new link, a revealed
// message) marks the document `data-unsaved`; changing the language then
// asks first.

import { lang, t } from './i18n.js';

const COOKIE = 'otm_lang';
const YEAR = 365 * 24 * 3600;

function base() {
  const meta = document.querySelector('meta[name="otm-base"]');
  return meta ? meta.content : '';
}

const select = document.getElementById('language');
const apply = document.getElementById('language-apply');
if (select && apply) {
  select.disabled = false;
  apply.disabled = false;
  apply.addEventListener('click', () => {
    const tag = select.value;
    if (tag === lang() || !/^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$/.test(tag)) return;
    if ('unsaved' in document.documentElement.dataset && !window.confirm(t('site.language_unsaved'))) {
      return;
    }
    const secure = location.protocol === 'https:' ? '; Secure' : '';
    document.cookie = `${COOKIE}=${tag}; Path=${base() || '/'}; Max-Age=${YEAR}; SameSite=Lax${secure}`;
    location.reload();
  });
}
