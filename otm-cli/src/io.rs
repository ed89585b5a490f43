//! Reading what the user gives (message, passphrase, link) and writing
//! what otm prints, with secrets kept off command lines and out of terminal
//! escape sequences.

use std::io::{IsTerminal, Read, Write};

use otm_core::{Passphrase, Zeroizing};

use crate::{Failure, Outcome, PassphraseArgs};

/// The message from `file`, standard input, or a prompt that does not echo.
pub(crate) fn read_message(file: Option<&std::path::Path>) -> Outcome<Zeroizing<String>> {
    let mut text = Zeroizing::new(String::new());
    match file {
        Some(path) if path != std::path::Path::new("-") => {
            let bytes = Zeroizing::new(
                std::fs::read(path)
                    .map_err(|e| Failure::Input(format!("cannot read {}: {e}", path.display())))?,
            );
            text.push_str(
                std::str::from_utf8(&bytes)
                    .map_err(|_| Failure::Input(format!("{} is not UTF-8 text", path.display())))?,
            );
        }
        _ if file.is_none() && std::io::stdin().is_terminal() => {
            let line = Zeroizing::new(
                rpassword::prompt_password("Message (not shown): ")
                    .map_err(|e| Failure::Input(format!("cannot read the message: {e}")))?,
            );
            text.push_str(&line);
        }
        _ => {
            std::io::stdin().read_to_string(&mut text).map_err(|e| {
                Failure::Input(format!("cannot read standard input as UTF-8 text: {e}"))
            })?;
        }
    }
    if text.is_empty() {
        return Err(Failure::Input("the message is empty".into()));
    }
    Ok(text)
}

/// The passphrase from the variable or argument given, or a prompt.
pub(crate) fn passphrase(
    args: &PassphraseArgs,
    prompt: &str,
    confirm: bool,
) -> Outcome<Passphrase> {
    let text = if let Some(var) = &args.passphrase_env {
        Zeroizing::new(
            std::env::var(var)
                .map_err(|_| Failure::Input(format!("environment variable {var} is not set")))?,
        )
    } else if let Some(p) = &args.insecure_passphrase {
        Zeroizing::new(p.clone())
    } else {
        let first = Zeroizing::new(
            rpassword::prompt_password(prompt)
                .map_err(|e| Failure::Input(format!("cannot read the passphrase: {e}")))?,
        );
        if confirm {
            let again = Zeroizing::new(
                rpassword::prompt_password("Repeat the passphrase: ")
                    .map_err(|e| Failure::Input(format!("cannot read the passphrase: {e}")))?,
            );
            if *again != *first {
                return Err(Failure::Input("the passphrases differ".into()));
            }
        }
        first
    };
    Passphrase::new(&text).map_err(|e| Failure::Input(e.to_string()))
}

/// Whether a passphrase was given without a prompt.
pub(crate) fn wants_passphrase(args: &PassphraseArgs) -> bool {
    args.passphrase_env.is_some() || args.insecure_passphrase.is_some()
}

/// The link argument, or one line from standard input (piped), or a prompt
/// that does not echo: links hold keys and tokens, which an argument would
/// show to every user of the machine.
pub(crate) fn read_link(given: Option<String>, what: &str) -> Outcome<Zeroizing<String>> {
    if let Some(link) = given {
        return Ok(Zeroizing::new(link));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return rpassword::prompt_password(format!("{what} (not shown): "))
            .map(Zeroizing::new)
            .map_err(|e| Failure::Input(format!("cannot read the {what}: {e}")));
    }
    let mut text = Zeroizing::new(String::new());
    stdin
        .lock()
        .read_to_string(&mut text)
        .map_err(|e| Failure::Input(format!("cannot read the {what} from standard input: {e}")))?;
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    line.map(|l| Zeroizing::new(l.to_owned()))
        .ok_or_else(|| Failure::Input(format!("no {what} given (argument or standard input)")))
}

/// `text` with control characters (and bidirectional overrides) shown as
/// `\u{…}` escapes, for a terminal: a message cannot move the cursor,
/// rewrite earlier lines, set the window title or reorder what is shown.
/// Line breaks and tabs stay.
pub(crate) fn for_terminal(text: &str) -> std::borrow::Cow<'_, str> {
    let hidden = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(hidden) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if hidden(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// Writes to standard output; a failure (closed pipe, full disk) is an error.
pub(crate) fn emit(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

pub(crate) fn emit_line(line: &str) -> Outcome<()> {
    emit(format!("{line}\n").as_bytes())
        .map_err(|e| Failure::Other(format!("cannot write to standard output: {e}")))
}

#[cfg(test)]
mod tests {
    use super::for_terminal;

    #[test]
    fn terminal_output_shows_control_characters() {
        assert_eq!(
            for_terminal("plain\ntext\twith tabs"),
            "plain\ntext\twith tabs"
        );
        assert_eq!(
            for_terminal("red \u{1b}[31malert\u{7}"),
            "red \\u{1b}[31malert\\u{7}"
        );
        assert_eq!(for_terminal("a\rb"), "a\\u{d}b");
        assert_eq!(for_terminal("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(for_terminal("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(for_terminal("Grüße 🌍"), "Grüße 🌍");
    }
}
