//! The pages' languages: string tables, the choice of a page's language,
//! and how a string becomes page text.
//!
//! Every text of the pages (and of their scripts) comes from a table per
//! language, `assets/i18n/{tag}.json`; English, German, French and Arabic
//! are compiled in ([`Translations::builtin`]). An operator changes strings or
//! adds a language without rebuilding: a directory of tables in the same
//! format, laid over the built-in ones ([`Translations::with_dir`], otm-server's
//! `--translations-dir`). A key a table leaves out falls back to English.
//!
//! A table's strings are text, never markup: the page escapes them (braces
//! included, so no string is ever read as a placeholder of the page), and
//! the scripts only ever set `textContent`. In the strings the server puts
//! into a page, three marks give emphasis: `**strong**`, `*emphasis*` and
//! `` `code` `` (shown left to right); the scripts' strings show them as they
//! are, so those use none.
//!
//! The language of a page is chosen by the server before the page is sent,
//! so no reader sees a flash of English: the `otm_lang` cookie when the reader
//! picked one with the page's language menu, else the best match of the
//! browser's `Accept-Language`, else English. Pages answer with
//! `Vary: Accept-Language, Cookie` and `Content-Language`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The language every other one falls back to.
pub const FALLBACK: &str = "en";

/// The cookie that holds the language a reader picked (the tag only).
pub const COOKIE: &str = "otm_lang";

/// The tables compiled in, by tag.
const BUILTIN: &[(&str, &str)] = &[
    ("en", include_str!("../assets/i18n/en.json")),
    ("de", include_str!("../assets/i18n/de.json")),
    ("fr", include_str!("../assets/i18n/fr.json")),
    ("ar", include_str!("../assets/i18n/ar.json")),
];

/// Which way a language's text runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Left to right.
    Ltr,
    /// Right to left (Arabic, Hebrew, Persian…).
    Rtl,
}

impl Direction {
    /// `ltr` or `rtl`, as HTML's `dir` attribute takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ltr => "ltr",
            Direction::Rtl => "rtl",
        }
    }
}

/// One string of a table: plain text, or one text per plural category of
/// the language (`Intl.PluralRules`: `zero`, `one`, `two`, `few`, `many`,
/// `other`), each with the count as `{n}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Text {
    /// The same text for every count.
    Plain(String),
    /// A text per plural category.
    Plural(BTreeMap<String, String>),
}

impl Text {
    fn texts(&self) -> Vec<&str> {
        match self {
            Text::Plain(s) => vec![s.as_str()],
            Text::Plural(forms) => forms.values().map(String::as_str).collect(),
        }
    }
}

/// A table as written in a file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    language: String,
    name: String,
    dir: Direction,
    /// Keys whose text was made by machine translation and awaits review by
    /// a native speaker (security wording above all).
    #[serde(default)]
    machine_translated: Vec<String>,
    strings: BTreeMap<String, Text>,
}

/// One language: its tag, its own name, its direction and its strings.
#[derive(Clone, Debug)]
pub struct Language {
    tag: String,
    name: String,
    dir: Direction,
    strings: BTreeMap<String, Text>,
}

impl Language {
    /// The BCP 47 tag (`en`, `de`, `pt-BR`).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The language's name in itself (`Deutsch`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which way its text runs.
    pub fn dir(&self) -> Direction {
        self.dir
    }

    /// The string of `key`, if this table has it.
    pub fn get(&self, key: &str) -> Option<&Text> {
        self.strings.get(key)
    }

    /// Every string of the table, by key.
    pub fn strings(&self) -> &BTreeMap<String, Text> {
        &self.strings
    }
}

/// Why a table could not be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum TranslationError {
    /// The directory or a file could not be read.
    Io {
        /// The directory or file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A file is not a table (not JSON, or not the table's shape).
    Format {
        /// The file.
        path: PathBuf,
        /// What the JSON parser said.
        source: serde_json::Error,
    },
    /// A table breaks a rule: its tag, a key English does not have, a
    /// placeholder English does not use, a plural without `other`.
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        reason: String,
    },
}

impl std::fmt::Display for TranslationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TranslationError::Io { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            TranslationError::Format { path, source } => {
                write!(f, "{} is not a string table: {source}", path.display())
            }
            TranslationError::Invalid { path, reason } => write!(f, "{}: {reason}", path.display()),
        }
    }
}

impl std::error::Error for TranslationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TranslationError::Io { source, .. } => Some(source),
            TranslationError::Format { source, .. } => Some(source),
            TranslationError::Invalid { .. } => None,
        }
    }
}

/// The languages the pages can be shown in ([`Config::translations`](crate::Config::translations)).
#[derive(Clone, Debug)]
pub struct Translations {
    /// English first, then by tag.
    languages: Vec<Language>,
}

impl Default for Translations {
    fn default() -> Self {
        Translations::builtin()
    }
}

impl Translations {
    /// English, German, French and Arabic, as compiled in.
    pub fn builtin() -> Translations {
        let mut languages: Vec<Language> = Vec::new();
        for (tag, json) in BUILTIN {
            let path = PathBuf::from(format!("assets/i18n/{tag}.json"));
            let table = serde_json::from_str::<TableFile>(json)
                .map_err(|source| TranslationError::Format {
                    path: path.clone(),
                    source,
                })
                .and_then(|file| check(&path, file, languages.first()))
                // The compiled-in tables are checked by this crate's tests.
                .unwrap_or_else(|e| panic!("a built-in string table is broken: {e}"));
            languages.push(table);
        }
        Translations { languages }
    }

    /// These languages with the tables of `dir` laid over them: each
    /// `{tag}.json` there replaces the strings it has of a language already
    /// known, or adds a language (whose missing strings fall back to
    /// English). Files not ending in `.json` are ignored.
    pub fn with_dir(mut self, dir: &Path) -> Result<Translations, TranslationError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| TranslationError::Io { path, source }
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .map(|entry| entry.map(|e| e.path()).map_err(io(dir)))
            .collect::<Result<_, _>>()?;
        files.retain(|p| p.extension().is_some_and(|e| e == "json"));
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            let file: TableFile =
                serde_json::from_str(&text).map_err(|source| TranslationError::Format {
                    path: path.clone(),
                    source,
                })?;
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if stem != file.language {
                return Err(TranslationError::Invalid {
                    path,
                    reason: format!(
                        "the file of language {:?} must be named {}.json",
                        file.language, file.language
                    ),
                });
            }
            let table = check(&path, file, self.languages.first())?;
            match self.languages.iter_mut().find(|l| l.tag == table.tag) {
                Some(known) => {
                    known.name = table.name;
                    known.dir = table.dir;
                    known.strings.extend(table.strings);
                }
                None => self.languages.push(table),
            }
        }
        let english = self.languages.remove(0);
        self.languages.sort_by(|a, b| a.tag.cmp(&b.tag));
        self.languages.insert(0, english);
        Ok(self)
    }

    /// Every language, English first.
    pub fn languages(&self) -> &[Language] {
        &self.languages
    }

    /// The language of `tag` (exact, ignoring case), if there is one.
    pub fn get(&self, tag: &str) -> Option<&Language> {
        self.languages
            .iter()
            .find(|l| l.tag.eq_ignore_ascii_case(tag))
    }

    /// English, which every other language falls back to.
    pub fn fallback(&self) -> &Language {
        &self.languages[0]
    }

    /// The language for a request: the one named by the `otm_lang` cookie
    /// (`cookie`, the `Cookie` header's values), else the best match of
    /// `accept_language` (a `de-AT` reader gets `de`), else English.
    pub fn pick<'a>(
        &self,
        cookies: impl IntoIterator<Item = &'a str>,
        accept_language: Option<&str>,
    ) -> &Language {
        let chosen = cookies
            .into_iter()
            .flat_map(|header| header.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .and_then(|(_, tag)| self.get(tag.trim_matches('"')));
        if let Some(language) = chosen {
            return language;
        }
        let mut wanted: Vec<(f32, usize, &str)> = accept_language
            .unwrap_or("")
            .split(',')
            .enumerate()
            .filter_map(|(order, item)| {
                let mut parts = item.split(';');
                let tag = parts.next()?.trim();
                let q = parts
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                (!tag.is_empty() && tag != "*" && q > 0.0).then_some((q, order, tag))
            })
            .collect();
        wanted.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, _, tag) in wanted {
            if let Some(language) = self.get(tag) {
                return language;
            }
            let primary = tag.split('-').next().unwrap_or(tag);
            if let Some(language) = self.languages.iter().find(|l| {
                l.tag
                    .split('-')
                    .next()
                    .is_some_and(|p| p.eq_ignore_ascii_case(primary))
            }) {
                return language;
            }
        }
        self.fallback()
    }

    /// The text of `key` in `language`, or in English when that table has
    /// none; `None` when no table has the key.
    pub fn text<'a>(&'a self, language: &'a Language, key: &str) -> Option<&'a Text> {
        language.get(key).or_else(|| self.fallback().get(key))
    }

    /// What a page gives its scripts: the language, its direction, every
    /// string the scripts use (the about page's texts left out), English
    /// filling what the language lacks, and `settings` of the server that
    /// texts mention. JSON, safe inside `<script>`.
    pub(crate) fn script_data(&self, language: &Language, settings: serde_json::Value) -> String {
        let mut strings: BTreeMap<&str, &Text> = BTreeMap::new();
        for (key, text) in self.fallback().strings.iter().chain(&language.strings) {
            if !key.starts_with("about.") {
                strings.insert(key, text);
            }
        }
        let data = serde_json::json!({
            "lang": language.tag,
            "dir": language.dir,
            "strings": strings,
            "settings": settings,
        });
        // `<` only occurs inside JSON strings: written as an escape, no text
        // can close the script element or open a comment.
        data.to_string().replace('<', "\\u003c")
    }
}

/// Checks a table (against English, when it is not English itself).
fn check(
    path: &Path,
    file: TableFile,
    english: Option<&Language>,
) -> Result<Language, TranslationError> {
    let invalid = |reason: String| TranslationError::Invalid {
        path: path.to_owned(),
        reason,
    };
    if !valid_tag(&file.language) {
        return Err(invalid(format!(
            "{:?} is not a language tag (like en, de or pt-BR)",
            file.language
        )));
    }
    if file.name.trim().is_empty() {
        return Err(invalid("the language has no name".into()));
    }
    for key in &file.machine_translated {
        if !file.strings.contains_key(key) {
            return Err(invalid(format!(
                "machine_translated names {key:?}, which the table does not have"
            )));
        }
    }
    for (key, text) in &file.strings {
        if let Text::Plural(forms) = text {
            if !forms.contains_key("other") {
                return Err(invalid(format!("{key:?} has no \"other\" plural form")));
            }
            if let Some(bad) = forms
                .keys()
                .find(|c| !PLURAL_CATEGORIES.contains(&c.as_str()))
            {
                return Err(invalid(format!(
                    "{key:?} has a plural form {bad:?}; the forms are {PLURAL_CATEGORIES:?}"
                )));
            }
        }
        let Some(english) = english else { continue };
        let Some(original) = english.get(key) else {
            return Err(invalid(format!("{key:?} is not a string of the pages")));
        };
        if matches!(original, Text::Plural(_)) != matches!(text, Text::Plural(_)) {
            return Err(invalid(format!(
                "{key:?} must be {} like the English one",
                if matches!(original, Text::Plural(_)) {
                    "a plural (an object of forms)"
                } else {
                    "plain text"
                }
            )));
        }
        let allowed: Vec<&str> = original
            .texts()
            .into_iter()
            .flat_map(placeholders)
            .collect();
        for t in text.texts() {
            if let Some(bad) = placeholders(t).find(|p| !allowed.contains(p)) {
                let fills = if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(invalid(format!(
                    "{key:?} uses {{{bad}}}, which the page does not fill (it fills {fills})"
                )));
            }
        }
    }
    Ok(Language {
        tag: file.language,
        name: file.name,
        dir: file.dir,
        strings: file.strings,
    })
}

/// The plural categories of Unicode CLDR (`Intl.PluralRules`).
const PLURAL_CATEGORIES: [&str; 6] = ["zero", "one", "two", "few", "many", "other"];

/// `{name}` placeholders of a text.
fn placeholders(text: &str) -> impl Iterator<Item = &str> {
    text.split('{').skip(1).filter_map(|rest| {
        let name = rest.split('}').next()?;
        (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .then_some(name)
    })
}

/// `en`, `de`, `pt-BR`, `zh-Hant`: letters, then subtags of letters and digits.
fn valid_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let primary = parts.next().unwrap_or("");
    (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// A string as page HTML: escaped, then the marks `**strong**`, `*em*` and
/// `` `code` `` turned into elements (a mark without its end stays as it is).
pub(crate) fn to_html(text: &str) -> String {
    let escaped = escape(text);
    let mut out = String::with_capacity(escaped.len() + 16);
    let mut rest = escaped.as_str();
    while let Some(at) = rest.find(['*', '`']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let (mark, tag) = if tail.starts_with("**") {
            ("**", "strong")
        } else if tail.starts_with('`') {
            ("`", "code")
        } else {
            ("*", "em")
        };
        let inner = &tail[mark.len()..];
        // As in Markdown: the marked text neither starts nor ends with a space.
        let end = inner.find(mark).filter(|&end| {
            let content = &inner[..end];
            !content.is_empty()
                && !content.starts_with(char::is_whitespace)
                && !content.ends_with(char::is_whitespace)
        });
        match end {
            Some(end) => {
                let content = &inner[..end];
                // Code is literal; strong and em may hold code.
                let content = if tag == "code" {
                    content.to_owned()
                } else {
                    to_html_marked(content)
                };
                out.push_str(&format!("<{tag}>{content}</{tag}>"));
                rest = &inner[end + mark.len()..];
            }
            _ => {
                out.push_str(mark);
                rest = inner;
            }
        }
    }
    out.push_str(rest);
    out
}

/// [`to_html`] of text that is already escaped (inside a mark).
fn to_html_marked(escaped: &str) -> String {
    let mut out = String::new();
    let mut rest = escaped;
    while let Some(at) = rest.find('`') {
        out.push_str(&rest[..at]);
        let inner = &rest[at + 1..];
        match inner.find('`') {
            Some(end) if end > 0 => {
                out.push_str(&format!("<code>{}</code>", &inner[..end]));
                rest = &inner[end + 1..];
            }
            _ => {
                out.push('`');
                rest = inner;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for HTML content and attribute values; braces too, so no
/// string can ever be taken for one of the page's `{{…}}` placeholders.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '{' => out.push_str("&#123;"),
            '}' => out.push_str("&#125;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_tables_load_and_english_comes_first() {
        let t = Translations::builtin();
        let tags: Vec<&str> = t.languages().iter().map(Language::tag).collect();
        assert_eq!(tags, ["en", "de", "fr", "ar"]);
        assert_eq!(t.get("ar").unwrap().dir(), Direction::Rtl);
        assert_eq!(t.get("DE").unwrap().name(), "Deutsch");
    }

    #[test]
    fn a_cookie_wins_then_accept_language_by_quality_then_english() {
        let t = Translations::builtin();
        let pick =
            |cookie: Option<&str>, accept: Option<&str>| t.pick(cookie, accept).tag().to_owned();
        assert_eq!(pick(None, None), "en");
        assert_eq!(pick(None, Some("de-AT,de;q=0.9,en;q=0.8")), "de");
        assert_eq!(pick(None, Some("ja, fr;q=0.5, ar;q=0.7")), "ar");
        assert_eq!(pick(None, Some("ja, *;q=0.1")), "en");
        assert_eq!(pick(None, Some("fr;q=0, de;q=0.2")), "de");
        assert_eq!(pick(None, Some("garbage;;;q=x,,")), "en");
        assert_eq!(pick(Some("a=b; otm_lang=fr"), Some("de")), "fr");
        assert_eq!(pick(Some("otm_lang=xx"), Some("ar")), "ar");
    }

    #[test]
    fn marks_become_elements_and_everything_else_is_escaped() {
        assert_eq!(
            to_html("**Bold.** then *em* and `a<b>`"),
            "<strong>Bold.</strong> then <em>em</em> and <code>a&lt;b&gt;</code>"
        );
        assert_eq!(to_html("a * b ** c"), "a * b ** c");
        assert_eq!(to_html("<script>\"'&"), "&lt;script&gt;&quot;&#39;&amp;");
        assert_eq!(to_html("{{BASE}}"), "&#123;&#123;BASE&#125;&#125;");
        assert_eq!(
            to_html("**see `#`**"),
            "<strong>see <code>#</code></strong>"
        );
    }

    #[test]
    fn script_data_cannot_close_its_script_element() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("en.json"),
            r#"{"language":"en","name":"English","dir":"ltr","strings":{"ui.copied":"</script><!--"}}"#,
        )
        .unwrap();
        let t = Translations::builtin().with_dir(dir.path()).unwrap();
        let data = t.script_data(t.fallback(), serde_json::json!({}));
        assert!(!data.contains('<'), "{data}");
        let parsed: serde_json::Value = serde_json::from_str(&data).unwrap();
        assert_eq!(parsed["strings"]["ui.copied"], "</script><!--");
        assert!(parsed["strings"].get("about.lead").is_none());
    }

    #[test]
    fn an_operator_directory_overrides_and_adds_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, json: &str| std::fs::write(dir.path().join(name), json).unwrap();
        write(
            "de.json",
            r#"{"language":"de","name":"Deutsch","dir":"ltr","strings":{"compose.create":"Link machen"}}"#,
        );
        write(
            "nl.json",
            r#"{"language":"nl","name":"Nederlands","dir":"ltr","strings":{"compose.create":"Link maken"}}"#,
        );
        write("README.txt", "not a table");
        let t = Translations::builtin().with_dir(dir.path()).unwrap();
        let de = t.get("de").unwrap();
        assert_eq!(
            t.text(de, "compose.create"),
            Some(&Text::Plain("Link machen".into()))
        );
        // The rest of German stays.
        assert_ne!(
            t.text(de, "compose.title"),
            t.text(t.fallback(), "compose.title")
        );
        let nl = t.get("nl").unwrap();
        // A key the new language lacks falls back to English.
        assert_eq!(
            t.text(nl, "compose.title"),
            t.text(t.fallback(), "compose.title")
        );
        let tags: Vec<&str> = t.languages().iter().map(Language::tag).collect();
        assert_eq!(tags, ["en", "ar", "de", "fr", "nl"]);

        for (name, json, says) in [
            (
                "xx.json",
                r#"{"language":"xx","name":"X","dir":"ltr","strings":{"compose.craete":"typo"}}"#,
                "\"compose.craete\" is not a string of the pages",
            ),
            (
                "xx.json",
                r#"{"language":"xx","name":"X","dir":"ltr","strings":{"compose.counter":"{count}"}}"#,
                "uses {count}",
            ),
            (
                "xx.json",
                r#"{"language":"xx","name":"X","dir":"ltr","strings":{"compose.chars_left":{"one":"{n}"}}}"#,
                "no \"other\" plural form",
            ),
            (
                "xx.json",
                r#"{"language":"xx","name":"X","dir":"ltr","strings":{"compose.create":{"other":"x"}}}"#,
                "must be plain text",
            ),
            (
                "yy.json",
                r#"{"language":"xx","name":"X","dir":"ltr","strings":{}}"#,
                "must be named xx.json",
            ),
            (
                "xx.json",
                r#"{"language":"xx","name":"X","dir":"sideways","strings":{}}"#,
                "not a string table",
            ),
        ] {
            let bad = tempfile::tempdir().unwrap();
            std::fs::write(bad.path().join(name), json).unwrap();
            let err = Translations::builtin()
                .with_dir(bad.path())
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{err}");
        }
        let missing = Translations::builtin().with_dir(Path::new("/no/such/dir"));
        assert!(matches!(missing, Err(TranslationError::Io { .. })));
    }
}
