// The language menu in every page's footer: the choice is kept in a cookie
// that holds the language tag only (no identifier), and the page is loaded
// again, in that language, with its address (and any key in the fragment)
// unchanged. The server picks the language before the page is sent, so no
// page is ever shown first in another language.

const COOKIE = 'otm_lang';
const YEAR = 365 * 24 * 3600;

function base() {
  const meta = document.querySelector('meta[name="otm-base"]');
  return meta ? meta.content : '';
}

const select = document.getElementById('language');
if (select) {
  select.disabled = false;
  select.addEventListener('change', () => {
    const tag = select.value;
    if (!/^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$/.test(tag)) return;
    const secure = location.protocol === 'https:' ? '; Secure' : '';
    document.cookie = `${COOKIE}=${tag}; Path=${base() || '/'}; Max-Age=${YEAR}; SameSite=Lax${secure}`;
    location.reload();
  });
}
