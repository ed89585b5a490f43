//! `otm`: one-time secret messages from the command line.
//!
//! The message is sealed on this machine (the same format as the browser
//! app, docs/FORMAT.md); the server only ever receives ciphertext.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use clap::{Args, Parser, Subcommand};
use otm_core::{
    open, seal, Key, Link, ManageLink, ManageToken, MessageId, Passphrase, Secrets, Zeroizing,
};
use serde_json::{json, Value};

/// Send and open one-time secret messages with any otm server.
///
/// Messages are encrypted here, before they leave this machine; the link
/// carries the key, and the server deletes the message when it is opened.
#[derive(Parser, Debug)]
#[command(name = "otm", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Print results as JSON (for scripts).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Encrypt a message and print a link that opens it once.
    ///
    /// The message is read from FILE, from standard input when it is piped,
    /// or from a prompt that does not echo.
    Send(SendArgs),
    /// Open a link: fetch the message once, decrypt it here, print it.
    Open(OpenArgs),
    /// Show whether a message was opened (needs its private status link).
    Status(ManageArgs),
    /// Destroy a message before it is read (needs its private status link).
    Burn(ManageArgs),
}

#[derive(Args, Debug)]
struct SendArgs {
    /// Read the message from this file ("-" for standard input).
    file: Option<std::path::PathBuf>,

    /// The otm server.
    #[arg(long, env = "OTM_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,

    /// Delete the message unread after this long (e.g. 1h, 1d, 7d). Default: the server's.
    #[arg(long, value_parser = humantime::parse_duration)]
    ttl: Option<Duration>,

    #[command(flatten)]
    passphrase: PassphraseArgs,

    /// Also protect the message with a passphrase (asked for without echo).
    #[arg(long, short = 'p')]
    with_passphrase: bool,
}

#[derive(Args, Debug)]
struct PassphraseArgs {
    /// Read the passphrase from this environment variable instead of asking.
    #[arg(long, value_name = "VAR")]
    passphrase_env: Option<String>,

    /// The passphrase itself. Visible to other users in the process list:
    /// only for throwaway use; prefer the prompt or --passphrase-env.
    #[arg(long, value_name = "PASSPHRASE", hide_short_help = true)]
    insecure_passphrase: Option<String>,
}

#[derive(Args, Debug)]
struct OpenArgs {
    /// The link, `https://…/otm/ID#key=…`.
    link: String,

    #[command(flatten)]
    passphrase: PassphraseArgs,
}

#[derive(Args, Debug)]
struct ManageArgs {
    /// The private status link, `https://…/manage/ID#token=…`.
    link: String,
}

/// What went wrong, and the exit code it maps to.
#[derive(Debug)]
enum Failure {
    /// 2: the input (link, file, arguments) is unusable.
    Input(String),
    /// 3: opened already, expired or burned.
    Gone(String),
    /// 4: wrong key, passphrase or token.
    Denied(String),
    /// 5: the server cannot be reached or is unavailable (try again).
    Unavailable(String),
    /// 1: anything else.
    Other(String),
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Other(_) => 1,
            Failure::Input(_) => 2,
            Failure::Gone(_) => 3,
            Failure::Denied(_) => 4,
            Failure::Unavailable(_) => 5,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Failure::Other(_) => "error",
            Failure::Input(_) => "bad_input",
            Failure::Gone(_) => "gone",
            Failure::Denied(_) => "denied",
            Failure::Unavailable(_) => "unavailable",
        }
    }
    fn message(&self) -> &str {
        match self {
            Failure::Other(m)
            | Failure::Input(m)
            | Failure::Gone(m)
            | Failure::Denied(m)
            | Failure::Unavailable(m) => m,
        }
    }
}

type Outcome<T> = Result<T, Failure>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if json {
                println!(
                    "{}",
                    json!({"ok": false, "error": failure.kind(), "message": failure.message()})
                );
            } else {
                eprintln!("otm: {}", failure.message());
            }
            ExitCode::from(failure.code())
        }
    }
}

async fn run(cli: Cli) -> Outcome<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("otm-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Failure::Other(format!("cannot set up HTTP: {e}")))?;
    match cli.command {
        Command::Send(args) => send(&http, args, cli.json).await,
        Command::Open(args) => open_link(&http, args, cli.json).await,
        Command::Status(args) => manage(&http, args, cli.json, false).await,
        Command::Burn(args) => manage(&http, args, cli.json, true).await,
    }
}

fn read_message(file: Option<&std::path::Path>) -> Outcome<Zeroizing<String>> {
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

fn passphrase(args: &PassphraseArgs, prompt: &str, confirm: bool) -> Outcome<Passphrase> {
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

fn wants_passphrase(args: &PassphraseArgs) -> bool {
    args.passphrase_env.is_some() || args.insecure_passphrase.is_some()
}

/// Turns a non-2xx answer into a failure, with the server's own message.
async fn failure(response: reqwest::Response, gone: &str) -> Failure {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or_default();
    let message = body["message"]
        .as_str()
        .unwrap_or("no explanation")
        .to_owned();
    match status {
        404 => Failure::Gone(gone.to_owned()),
        403 => Failure::Denied(message),
        401 => Failure::Input(message),
        409 => Failure::Gone(message),
        429 | 502 | 503 | 504 => {
            Failure::Unavailable(format!("the server is busy or unavailable: {message}"))
        }
        400..=499 => Failure::Input(format!("the server refused the request: {message}")),
        _ => Failure::Other(format!("the server failed ({status}): {message}")),
    }
}

fn unreachable(server: &str, e: reqwest::Error) -> Failure {
    Failure::Unavailable(format!(
        "cannot reach the otm server at {server}: {}",
        without_url(&e)
    ))
}

/// A reqwest error without its URL (which may hold a fragment-free path only,
/// but is noise in a message).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

async fn send(http: &reqwest::Client, args: SendArgs, json_out: bool) -> Outcome<()> {
    let server = args.server.trim_end_matches('/').to_owned();
    let message = read_message(args.file.as_deref())?;
    let phrase = if args.with_passphrase || wants_passphrase(&args.passphrase) {
        Some(passphrase(
            &args.passphrase,
            "Passphrase for the reader: ",
            true,
        )?)
    } else {
        None
    };
    let key = Key::generate().map_err(|e| Failure::Other(e.to_string()))?;
    let secrets = Secrets::derive(&key, phrase.as_ref());
    let envelope = seal(&secrets, &message).map_err(|e| Failure::Input(e.to_string()))?;
    let mut body = json!({
        "envelope": URL_SAFE_NO_PAD.encode(&envelope),
        "verifier": secrets.claim_verifier().to_base64url(),
    });
    if let Some(ttl) = args.ttl {
        body["ttl_seconds"] = json!(ttl.as_secs().max(1));
    }
    let config: Value = match http.get(format!("{server}/api/v1/config")).send().await {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
        Ok(r) => return Err(failure(r, "").await),
        Err(e) => return Err(unreachable(&server, e)),
    };
    let response = http
        .post(format!("{server}/api/v1/messages"))
        .json(&body)
        .send()
        .await
        .map_err(|e| unreachable(&server, e))?;
    if !response.status().is_success() {
        return Err(failure(response, "").await);
    }
    let created: Value = response
        .json()
        .await
        .map_err(|e| Failure::Other(format!("the server's answer is not JSON: {e}")))?;
    let bad_answer = || Failure::Other("the server's answer lacks the message ID or token".into());
    let id: MessageId = created["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad_answer)?;
    let token = created["manage_token"]
        .as_str()
        .and_then(|t| ManageToken::from_base64url(t).ok())
        .ok_or_else(bad_answer)?;
    let base = config["link_base"].as_str().unwrap_or(&server).to_owned();
    let link =
        Link::new(&base, id, key, phrase.is_some()).map_err(|e| Failure::Other(e.to_string()))?;
    let status_link =
        ManageLink::new(&base, id, token).map_err(|e| Failure::Other(e.to_string()))?;
    let expires = created["expires_at"].as_str().unwrap_or("unknown");
    if json_out {
        println!(
            "{}",
            json!({
                "ok": true,
                "link": link.to_url().as_str(),
                "status_link": status_link.to_url().as_str(),
                "id": id.to_string(),
                "expires_at": expires,
                "passphrase": phrase.is_some(),
            })
        );
    } else {
        println!("{}", link.to_url().as_str());
        eprintln!("This link opens once. Unopened, the message is deleted at {expires}.");
        if phrase.is_some() {
            eprintln!("The reader also needs the passphrase: send it another way.");
        }
        eprintln!("Private status link (check or destroy it; do not share):");
        eprintln!("{}", status_link.to_url().as_str());
    }
    Ok(())
}

async fn open_link(http: &reqwest::Client, args: OpenArgs, json_out: bool) -> Outcome<()> {
    let link = Link::parse(&args.link).map_err(|e| Failure::Input(e.to_string()))?;
    let phrase = if link.passphrase || wants_passphrase(&args.passphrase) {
        Some(passphrase(&args.passphrase, "Passphrase: ", false)?)
    } else {
        None
    };
    let secrets = Secrets::derive(&link.key, phrase.as_ref());
    let response = http
        .post(format!("{}/api/v1/messages/{}/open", link.base, link.id))
        .json(&json!({ "proof": secrets.claim_proof().to_base64url().as_str() }))
        .send()
        .await
        .map_err(|e| unreachable(&link.base, e))?;
    let status = response.status().as_u16();
    if status == 403 {
        let body: Value = response.json().await.unwrap_or_default();
        let left = body["attempts_left"].as_u64().unwrap_or(0);
        return Err(match (phrase.is_some(), left) {
            (_, 0) => Failure::Gone(
                "wrong key or passphrase; the message was destroyed after too many attempts".into(),
            ),
            (true, n) => Failure::Denied(format!("wrong passphrase ({n} attempts left)")),
            (false, n) => {
                Failure::Denied(format!("the key in the link is wrong ({n} attempts left)"))
            }
        });
    }
    if !response.status().is_success() {
        return Err(failure(response, "this message was already opened or has expired").await);
    }
    let body: Value = response
        .json()
        .await
        .map_err(|e| Failure::Other(format!("the server's answer is not JSON: {e}")))?;
    let envelope = body["envelope"]
        .as_str()
        .and_then(|e| URL_SAFE_NO_PAD.decode(e).ok())
        .ok_or_else(|| Failure::Other("the server's answer holds no envelope".into()))?;
    let text = open(&secrets, &envelope)
        .map_err(|e| Failure::Other(format!("the message cannot be decrypted: {e}")))?;
    if json_out {
        println!("{}", json!({"ok": true, "message": text.as_str()}));
    } else {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        if !text.ends_with('\n') && std::io::stdout().is_terminal() {
            let _ = out.write_all(b"\n");
        }
    }
    Ok(())
}

async fn manage(
    http: &reqwest::Client,
    args: ManageArgs,
    json_out: bool,
    burn: bool,
) -> Outcome<()> {
    let link = ManageLink::parse(&args.link).map_err(|e| Failure::Input(e.to_string()))?;
    let url = format!("{}/api/v1/messages/{}", link.base, link.id);
    let request = if burn {
        http.delete(&url)
    } else {
        http.get(&url)
    };
    let response = request
        .bearer_auth(link.token.to_base64url().as_str())
        .send()
        .await
        .map_err(|e| unreachable(&link.base, e))?;
    if !response.status().is_success() {
        return Err(failure(response, "this message has expired (or the link is wrong)").await);
    }
    let body: Value = response
        .json()
        .await
        .map_err(|e| Failure::Other(format!("the server's answer is not JSON: {e}")))?;
    let state = body["state"].as_str().unwrap_or("unknown");
    if json_out {
        let mut out = body.clone();
        out["ok"] = json!(true);
        println!("{out}");
        return Ok(());
    }
    let when = body["changed_at"].as_str().unwrap_or("");
    let expires = body["expires_at"].as_str().unwrap_or("unknown");
    match state {
        "waiting" => println!("waiting: not opened yet; deleted unread at {expires}"),
        "opened" => println!("opened at {when}"),
        "burned" if burn => println!("destroyed: nobody can open it now"),
        "burned" => println!("destroyed at {when}"),
        "expired" => println!("expired unread"),
        other => println!("{other}"),
    }
    Ok(())
}
