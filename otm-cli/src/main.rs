//! `otm`: one-time secret messages from the command line.
//!
//! The message is sealed on this machine (the same format as the browser
//! app, docs/FORMAT.md); the server only ever receives ciphertext.

mod io;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use io::{emit, emit_line, for_terminal, passphrase, read_link, read_message, wants_passphrase};
use otm_client::{AskOptions, Client, Error, Receipt, SendOptions};
use otm_core::api::{MessageState, RequestState};
use otm_core::{Link, ManageLink, MessageId, ReceiveLink, RequestLink, Zeroizing};
use serde_json::json;

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

    /// Allow plain http:// to a server that is not on this machine. Without
    /// TLS, anyone on the path can read the proofs and tokens sent, and
    /// swap the page or the answers.
    #[arg(long, global = true)]
    insecure_http: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Encrypt a message and print a link that opens it once.
    ///
    /// The message is read from FILE, from standard input when it is piped,
    /// or from a prompt that does not echo. A server where only API token
    /// holders may create takes the token from the environment variable
    /// OTM_API_TOKEN. With --recipients or --to, each person gets their own
    /// link (one per line; with --to, the name, a tab, then the link), and one private
    /// status link follows them all.
    Send(SendArgs),
    /// Open a link: fetch the message once, decrypt it here, print it.
    Open(OpenArgs),
    /// Show whether a message was opened (needs its private status link,
    /// or --id with an API token of the manage scope in OTM_API_TOKEN). With
    /// a group status link: each person's link, one per line.
    Status(ManageArgs),
    /// Destroy a message before it is read (needs its private status link,
    /// or --id with an API token of the manage scope in OTM_API_TOKEN). With
    /// a receive link: withdraw the request (and destroy an unread answer).
    /// With a group status link: destroy every link not opened yet.
    Burn(ManageArgs),
    /// Ask someone for a secret: print a request link to send them (standard
    /// output) and your private receive link (standard error).
    ///
    /// Whoever holds the request link can answer once; only the receive
    /// link reads the answer: open it with `otm open`, check it with `otm
    /// status`, withdraw it with `otm burn`. The answer is sealed to a key
    /// made here; the server never sees anything that reads it.
    Request(RequestArgs),
    /// Answer a request for a secret, once.
    ///
    /// The request link is read from the file --link-file names, or from a
    /// prompt that does not echo; the secret from standard input when it is
    /// piped, or from a prompt that does not echo. The note and who asked
    /// are shown first (standard error).
    Reply(ReplyArgs),
}

#[derive(Args, Debug)]
struct RequestArgs {
    /// A note for the person who answers (at most 500 characters, plain
    /// text), e.g. "the VPN password for the Berlin office". Only request-link
    /// holders can read it. Visible to other users of this machine in the
    /// process list: prefer --note-file for anything you would not show.
    #[arg(long, default_value = "", conflicts_with = "note_file")]
    note: String,

    /// Read the note from this file instead.
    #[arg(long, value_name = "FILE")]
    note_file: Option<std::path::PathBuf>,

    /// The otm server.
    #[arg(long, env = "OTM_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,

    /// Delete the request (and its answer) after this long (e.g. 1h, 1d).
    /// Default: the server's.
    #[arg(long, value_parser = humantime::parse_duration)]
    ttl: Option<Duration>,

    #[command(flatten)]
    passphrase: PassphraseArgs,

    /// Also need a passphrase to open the answer (asked for without echo).
    #[arg(long, short = 'p')]
    with_passphrase: bool,
}

#[derive(Args, Debug)]
struct ReplyArgs {
    /// Read the request link from this file (its first line) instead of a
    /// prompt.
    #[arg(long, value_name = "FILE")]
    link_file: Option<std::path::PathBuf>,
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

    /// Send it to this many people (2 to 20), each with their own link.
    #[arg(long, value_name = "N", conflicts_with = "to", value_parser = clap::value_parser!(u8).range(2..=20))]
    recipients: Option<u8>,

    /// Send it to this person (repeat for each, 2 to 20), each with their
    /// own link; the names appear only in your private group status link.
    #[arg(long, value_name = "NAME")]
    to: Vec<String>,
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
    /// The link, `https://…/otm/ID#key=…`. Left out, it is read from
    /// standard input, or from a prompt that does not echo. An argument is
    /// visible to other users of this machine (process list) and stays in
    /// shell history: prefer standard input or the prompt.
    link: Option<String>,

    #[command(flatten)]
    passphrase: PassphraseArgs,
}

#[derive(Args, Debug)]
struct ManageArgs {
    /// The private status link, `https://…/manage/ID#token=…`. Left out, it
    /// is read from standard input, or from a prompt that does not echo. An
    /// argument is visible to other users of this machine (process list)
    /// and stays in shell history: prefer standard input or the prompt.
    #[arg(conflicts_with = "id")]
    link: Option<String>,

    /// The message's ID instead of its status link, for a message created
    /// with the API token in OTM_API_TOKEN (a token with the manage scope).
    #[arg(long, requires = "server")]
    id: Option<String>,

    /// The otm server, with --id (a status link names its own).
    #[arg(long, env = "OTM_SERVER")]
    server: Option<String>,
}

/// What went wrong, and the exit code it maps to.
#[derive(Debug)]
enum Failure {
    /// 2: the input (link, file, arguments) is unusable.
    Input(String),
    /// 3: opened already, expired or burned.
    Gone(String),
    /// 4: wrong passphrase (or, from older servers, a wrong management
    /// token; a wrong key or token is answered like an unknown ID: 3).
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
                let line =
                    json!({"ok": false, "error": failure.kind(), "message": failure.message()});
                let _ = writeln!(std::io::stdout(), "{line}");
            } else {
                let stderr = std::io::stderr();
                let message = if stderr.is_terminal() {
                    for_terminal(failure.message())
                } else {
                    failure.message().into()
                };
                let _ = writeln!(stderr.lock(), "otm: {message}");
            }
            ExitCode::from(failure.code())
        }
    }
}

async fn run(cli: Cli) -> Outcome<()> {
    let http = cli.insecure_http;
    match cli.command {
        Command::Send(args) => send(args, cli.json, http).await,
        Command::Open(args) => open_link(args, cli.json, http).await,
        Command::Status(args) => manage(args, cli.json, http, false).await,
        Command::Burn(args) => manage(args, cli.json, http, true).await,
        Command::Request(args) => request(args, cli.json, http).await,
        Command::Reply(args) => reply(args, cli.json, http).await,
    }
}

/// `scheme://host[:port]` of a URL (lower-case scheme and host), or `None`.
fn origin(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    Some((scheme.to_ascii_lowercase(), authority.to_ascii_lowercase()))
}

/// A client of `base`: plain http only to this machine unless allowed.
fn client(base: &str, insecure_http: bool) -> Outcome<Client> {
    client_with_token(base, insecure_http, None)
}

/// [`client`], sending `api_token` with creates and with status and burn
/// by ID.
fn client_with_token(base: &str, insecure_http: bool, api_token: Option<&str>) -> Outcome<Client> {
    let mut builder =
        Client::builder(base).user_agent(concat!("otm-cli/", env!("CARGO_PKG_VERSION")));
    if let Some(token) = api_token {
        builder = builder.api_token(token);
    }
    let client = builder.build().map_err(|e| Failure::Input(e.to_string()))?;
    // Judged on the URL as parsed (once, by the client), not on its text.
    if client.is_plain_http_to_another_host() && !insecure_http {
        return Err(Failure::Input(format!(
            "refusing plain http:// to {}: anyone on the way could read the proofs and \
             tokens sent; use https://, or --insecure-http if you must",
            client.base()
        )));
    }
    Ok(client)
}

/// The failure (and exit code) of a client error. `gone` words the 404 for
/// the command at hand.
fn failure(err: Error, gone: &str) -> Failure {
    match err {
        Error::Gone => Failure::Gone(gone.to_owned()),
        Error::NotWaiting { receipt } => Failure::Gone(format!(
            "the message is {} and can no longer be destroyed",
            receipt.state
        )),
        Error::WrongToken => Failure::Denied(err.to_string()),
        Error::AlreadyAnswered => Failure::Gone(err.to_string()),
        Error::WrongProof { .. } => Failure::Denied(err.to_string()),
        e @ (Error::RateLimited { .. }
        | Error::Unavailable { .. }
        | Error::Timeout(_)
        | Error::Unreachable { .. }) => Failure::Unavailable(chain(&e)),
        e @ (Error::Refused { .. } | Error::InvalidBase(_) | Error::NoApiToken) => {
            Failure::Input(e.to_string())
        }
        Error::Format(e) => Failure::Input(e.to_string()),
        other => Failure::Other(chain(&other)),
    }
}

/// An error and its sources on one line.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `OTM_API_TOKEN`, unless empty.
fn api_token_from_env() -> Option<String> {
    std::env::var("OTM_API_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
}

/// What every send needs: the client (with the API token from the
/// environment), the message, and the passphrase when one is asked for.
fn prepare_send(
    args: &SendArgs,
    insecure_http: bool,
    prompt: &str,
) -> Outcome<(Client, Zeroizing<String>, Option<otm_core::Passphrase>)> {
    let token = api_token_from_env();
    let client = client_with_token(&args.server, insecure_http, token.as_deref())?;
    let message = read_message(args.file.as_deref())?;
    let phrase = if args.with_passphrase || wants_passphrase(&args.passphrase) {
        Some(passphrase(&args.passphrase, prompt, true)?)
    } else {
        None
    };
    Ok((client, message, phrase))
}

/// The send options of `ttl` and `phrase`.
fn send_options(ttl: Option<Duration>, phrase: Option<&otm_core::Passphrase>) -> SendOptions<'_> {
    let mut options = SendOptions::new();
    if let Some(ttl) = ttl {
        options = options.ttl(ttl);
    }
    if let Some(p) = phrase {
        options = options.passphrase(p);
    }
    options
}

async fn send(args: SendArgs, json_out: bool, insecure_http: bool) -> Outcome<()> {
    if args.recipients.is_some() || !args.to.is_empty() {
        return send_group(args, json_out, insecure_http).await;
    }
    let (client, message, phrase) =
        prepare_send(&args, insecure_http, "Passphrase for the reader: ")?;
    let options = send_options(args.ttl, phrase.as_ref());
    let sent = client
        .send(&message, &options)
        .await
        .map_err(|e| failure(e, "the server lost the message"))?;
    let expires = rfc3339(sent.expires_at);
    let link = sent.link.to_url();
    let status_link = sent.manage_link.to_url();
    // The server announces where links point (its public base URL): say so
    // when that is not the server this command talked to.
    if origin(&sent.link.base) != origin(client.base()) {
        eprintln!(
            "note: the server at {} makes links on {}, another origin",
            client.base(),
            for_terminal(&sent.link.base)
        );
    }
    if json_out {
        let line = json!({
            "ok": true,
            "link": link.as_str(),
            "status_link": status_link.as_str(),
            "id": sent.link.id.to_string(),
            "expires_at": expires,
            "passphrase": phrase.is_some(),
        });
        emit_line(&line.to_string())?;
    } else {
        emit_line(link.as_str())?;
        eprintln!("This link opens once. Unopened, the message is deleted at {expires}.");
        if phrase.is_some() {
            eprintln!("The reader also needs the passphrase: send it another way.");
        }
        eprintln!("Private status link (check or destroy it; do not share):");
        eprintln!("{}", status_link.as_str());
    }
    Ok(())
}

async fn open_link(args: OpenArgs, json_out: bool, insecure_http: bool) -> Outcome<()> {
    let text = read_link(args.link, "link")?;
    let opened = if is_receive_link(&text) {
        let link = ReceiveLink::parse(&text).map_err(|e| Failure::Input(e.to_string()))?;
        let phrase = if link.passphrase || wants_passphrase(&args.passphrase) {
            Some(passphrase(&args.passphrase, "Passphrase: ", false)?)
        } else {
            None
        };
        let has_phrase = phrase.is_some();
        let opened = client(&link.base, insecure_http)?
            .receive(&link, phrase.as_ref())
            .await;
        (opened, has_phrase, "this request has no answer to open: not answered yet, already opened, withdrawn or expired (otm status tells which), or the link is not complete")
    } else {
        let link = Link::parse(&text).map_err(|e| Failure::Input(e.to_string()))?;
        let phrase = if link.passphrase || wants_passphrase(&args.passphrase) {
            Some(passphrase(&args.passphrase, "Passphrase: ", false)?)
        } else {
            None
        };
        let has_phrase = phrase.is_some();
        let opened = client(&link.base, insecure_http)?
            .open(&link, phrase.as_ref())
            .await;
        (
            opened,
            has_phrase,
            "this message was already opened or has expired, or the link is not complete",
        )
    };
    let (opened, has_phrase, gone) = opened;
    let text = match opened {
        Ok(text) => text,
        // The access proof was right (the key fits): only the passphrase
        // is wrong or missing.
        Err(Error::WrongProof { attempts_left: 0 }) => {
            return Err(Failure::Gone(
                "wrong passphrase; the message was destroyed after too many attempts".into(),
            ))
        }
        Err(Error::WrongProof { attempts_left: n }) if has_phrase => {
            return Err(Failure::Denied(format!(
                "wrong passphrase ({n} attempts left)"
            )))
        }
        Err(Error::WrongProof { attempts_left: n }) => {
            return Err(Failure::Denied(format!(
                "this message needs a passphrase, but the link does not say so (its end may \
                 be cut off); give it with --passphrase-env ({n} attempts left)"
            )))
        }
        Err(e @ Error::Format(otm_core::Error::PassphraseRequired)) => {
            return Err(Failure::Input(e.to_string()))
        }
        Err(Error::Format(e)) => {
            return Err(Failure::Other(format!(
                "the message cannot be decrypted: {e}"
            )))
        }
        Err(e) => return Err(failure(e, gone)),
    };
    // The message is gone from the server now: failing to hand it over
    // must not look like success.
    let lost = |e: std::io::Error| {
        Failure::Other(format!(
            "the message was opened (it is gone from the server) but writing it failed: {e}"
        ))
    };
    if json_out {
        let line = Zeroizing::new(json!({"ok": true, "message": text.as_str()}).to_string());
        emit(format!("{}\n", line.as_str()).as_bytes()).map_err(lost)?;
    } else if std::io::stdout().is_terminal() {
        let mut shown = Zeroizing::new(for_terminal(&text).into_owned());
        if !shown.ends_with('\n') {
            shown.push('\n');
        }
        emit(shown.as_bytes()).map_err(lost)?;
    } else {
        // Piped: byte-exact.
        emit(text.as_bytes()).map_err(lost)?;
    }
    Ok(())
}

async fn manage(args: ManageArgs, json_out: bool, insecure_http: bool, burn: bool) -> Outcome<()> {
    let gone = "this message has expired (or the link is wrong)";
    let receipt = match (args.id, args.server) {
        (Some(id), Some(server)) => {
            let id: MessageId = id
                .trim()
                .parse()
                .map_err(|e: otm_core::Error| Failure::Input(e.to_string()))?;
            let token = api_token_from_env().ok_or_else(|| {
                Failure::Input("--id needs an API token in OTM_API_TOKEN".to_owned())
            })?;
            let client = client_with_token(&server, insecure_http, Some(&token))?;
            if burn {
                client.burn_by_id(&id).await
            } else {
                client.status_by_id(&id).await
            }
        }
        _ => {
            let text = read_link(args.link, "status link")?;
            if is_receive_link(&text) {
                return request_status(&text, json_out, insecure_http, burn).await;
            }
            if is_group_link(&text) {
                return group_status(&text, json_out, insecure_http, burn).await;
            }
            let link = ManageLink::parse(&text).map_err(|e| Failure::Input(e.to_string()))?;
            let client = client(&link.base, insecure_http)?;
            if burn {
                client.burn(&link).await
            } else {
                client.status(&link).await
            }
        }
    }
    .map_err(|e| failure(e, gone))?;
    if json_out {
        return emit_line(&receipt_json(&receipt).to_string());
    }
    let when = receipt.changed_at.map(rfc3339).unwrap_or_default();
    let expires = rfc3339(receipt.expires_at);
    emit_line(&match receipt.state {
        MessageState::Waiting => format!("waiting: not opened yet; deleted unread at {expires}"),
        MessageState::Opened => format!("opened at {when}"),
        MessageState::Burned if burn => "destroyed: nobody can open it now".to_owned(),
        MessageState::Burned => format!("destroyed at {when}"),
        MessageState::Expired => "expired unread".to_owned(),
    })
}

/// Whether `text` is a group status link (`…/group#…`).
fn is_group_link(text: &str) -> bool {
    let path = text.trim().split(['#', '?']).next().unwrap_or_default();
    path.trim_end_matches('/').ends_with(otm_core::GROUP_PATH)
}

/// `otm send --recipients N` or `--to NAME…`: one link per person (standard
/// output), the group status link on standard error.
async fn send_group(args: SendArgs, json_out: bool, insecure_http: bool) -> Outcome<()> {
    let labels: Vec<Option<&str>> = match args.recipients {
        Some(n) => vec![None; usize::from(n)],
        None => args.to.iter().map(|n| Some(n.trim())).collect(),
    };
    if !(2..=otm_core::MAX_GROUP).contains(&labels.len()) {
        return Err(Failure::Input(format!(
            "--to names 2 to {} people, not {}",
            otm_core::MAX_GROUP,
            labels.len()
        )));
    }
    for label in labels.iter().flatten() {
        otm_core::check_label(label).map_err(|e| Failure::Input(format!("--to {label:?}: {e}")))?;
    }
    let (client, message, phrase) =
        prepare_send(&args, insecure_http, "Passphrase for the readers: ")?;
    let options = send_options(args.ttl, phrase.as_ref());
    let sent = client
        .send_group(&message, &labels, &options)
        .await
        .map_err(|e| failure(e, "the server lost the messages"))?;
    let expires = rfc3339(sent.expires_at);
    let status_link = sent.group_link.to_url();
    let links: Vec<Zeroizing<String>> = sent.links.iter().map(Link::to_url).collect();
    if json_out {
        let members: Vec<_> = links
            .iter()
            .zip(&labels)
            .zip(&sent.links)
            .map(|((link, label), l)| json!({"link": link.as_str(), "label": label, "id": l.id.to_string()}))
            .collect();
        let line = json!({
            "ok": true,
            "links": members,
            "status_link": status_link.as_str(),
            "expires_at": expires,
            "passphrase": phrase.is_some(),
        });
        return emit_line(&line.to_string());
    }
    for (link, label) in links.iter().zip(&labels) {
        match label {
            Some(name) => emit_line(&format!("{name}\t{}", link.as_str()))?,
            None => emit_line(link.as_str())?,
        }
    }
    eprintln!(
        "Each link opens once; give each person only their own. Unopened ones are deleted at {expires}."
    );
    if phrase.is_some() {
        eprintln!("The readers also need the passphrase: send it another way.");
    }
    eprintln!("Private status link for all of them (check or destroy them; do not share):");
    eprintln!("{}", status_link.as_str());
    Ok(())
}

/// `otm status` / `otm burn` with a group status link: one line per person.
async fn group_status(text: &str, json_out: bool, insecure_http: bool, burn: bool) -> Outcome<()> {
    let link = otm_core::GroupLink::parse(text).map_err(|e| Failure::Input(e.to_string()))?;
    let client = client(&link.base, insecure_http)?;
    let receipts = if burn {
        client.burn_group(&link).await
    } else {
        client.group_status(&link).await
    }
    .map_err(|e| failure(e, "these messages have expired (or the link is wrong)"))?;
    if json_out {
        let members: Vec<_> = link
            .members
            .iter()
            .zip(&receipts)
            .map(|(m, r)| {
                json!({
                    "id": m.id.to_string(),
                    "label": m.label,
                    "status": r.as_ref().map(receipt_json),
                })
            })
            .collect();
        return emit_line(&json!({"ok": true, "members": members}).to_string());
    }
    for (n, (member, receipt)) in link.members.iter().zip(&receipts).enumerate() {
        let name = member
            .label
            .clone()
            .unwrap_or_else(|| format!("link {}", n + 1));
        let state = match receipt {
            None => "expired, or not in this link".to_owned(),
            Some(r) => {
                let when = r.changed_at.map(rfc3339).unwrap_or_default();
                match r.state {
                    MessageState::Waiting => {
                        format!("waiting; deleted unread at {}", rfc3339(r.expires_at))
                    }
                    MessageState::Opened => format!("opened at {when}"),
                    MessageState::Burned => format!("destroyed at {when}"),
                    MessageState::Expired => "expired unread".to_owned(),
                }
            }
        };
        emit_line(&format!("{}: {state}", for_terminal(&name)))?;
    }
    Ok(())
}

/// Whether `text` is a receive link (`…/receive/ID#r=…`) rather than a
/// share or status link.
fn is_receive_link(text: &str) -> bool {
    let path = text.trim().split(['#', '?']).next().unwrap_or_default();
    path.contains(otm_core::RECEIVE_PATH_PREFIX)
}

async fn request(args: RequestArgs, json_out: bool, insecure_http: bool) -> Outcome<()> {
    let token = api_token_from_env();
    let client = client_with_token(&args.server, insecure_http, token.as_deref())?;
    let phrase = if args.with_passphrase || wants_passphrase(&args.passphrase) {
        Some(passphrase(
            &args.passphrase,
            "Passphrase to open the answer: ",
            true,
        )?)
    } else {
        None
    };
    let note = match &args.note_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| Failure::Input(format!("cannot read {}: {e}", path.display())))?
            .trim_end()
            .to_owned(),
        None => args.note.clone(),
    };
    let mut options = AskOptions::new().note(&note);
    if let Some(ttl) = args.ttl {
        options = options.ttl(ttl);
    }
    if let Some(p) = &phrase {
        options = options.passphrase(p);
    }
    let asked = client
        .ask(&options)
        .await
        .map_err(|e| failure(e, "the server lost the request"))?;
    let request_link = asked.request_link.to_url();
    let receive_link = asked.receive_link.to_url();
    let fingerprint = asked.request_link.public_key.fingerprint();
    let expires = rfc3339(asked.expires_at);
    if json_out {
        let line = json!({
            "ok": true,
            "request_link": request_link.as_str(),
            "receive_link": receive_link.as_str(),
            "id": asked.request_link.id.to_string(),
            "fingerprint": fingerprint,
            "expires_at": expires,
            "passphrase": phrase.is_some(),
        });
        return emit_line(&line.to_string());
    }
    emit_line(request_link.as_str())?;
    eprintln!("Send this request link to the person who should answer; it answers once.");
    eprintln!("Key fingerprint (compare it with theirs over another channel): {fingerprint}");
    eprintln!("Unanswered, the request is deleted at {expires}.");
    eprintln!("Your private receive link (open the answer with `otm open`; do not share):");
    eprintln!("{}", receive_link.as_str());
    Ok(())
}

async fn reply(args: ReplyArgs, json_out: bool, insecure_http: bool) -> Outcome<()> {
    let text = match &args.link_file {
        Some(path) => {
            let content = Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| Failure::Input(format!("cannot read {}: {e}", path.display())))?,
            );
            let line = content.lines().map(str::trim).find(|l| !l.is_empty());
            Zeroizing::new(
                line.ok_or_else(|| Failure::Input(format!("{} is empty", path.display())))?
                    .to_owned(),
            )
        }
        None => Zeroizing::new(
            rpassword::prompt_password("Request link (not shown): ")
                .map_err(|e| Failure::Input(format!("cannot read the request link: {e}")))?,
        ),
    };
    let link = RequestLink::parse(&text).map_err(|e| Failure::Input(e.to_string()))?;
    let client = client(&link.base, insecure_http)?;
    let gone = "this request was withdrawn or has expired, or the link is not complete";
    let request = client
        .read_request(&link)
        .await
        .map_err(|e| failure(e, gone))?;
    if request.answered {
        return Err(failure(Error::AlreadyAnswered, gone));
    }
    let asker = match &request.creator {
        None => {
            "anyone could have made this request: answer only if you know who sent you the link"
                .to_owned()
        }
        Some(c) => match c.name() {
            Some(name) => format!("{name} ({}, as this server knows them)", c.kind()),
            None => format!("this server's own backend ({})", c.kind()),
        },
    };
    eprintln!("Asked by: {}", for_terminal(&asker));
    if !request.note.is_empty() {
        eprintln!("Note: {}", for_terminal(&request.note));
    }
    eprintln!("Key fingerprint: {}", request.fingerprint);
    eprintln!("Expires: {}", rfc3339(request.expires_at));
    let secret = read_message(None)?;
    let at = client
        .reply(&link, &secret)
        .await
        .map_err(|e| failure(e, gone))?;
    if json_out {
        let line =
            json!({"ok": true, "answered_at": rfc3339(at), "fingerprint": request.fingerprint});
        return emit_line(&line.to_string());
    }
    emit_line(&format!(
        "answered at {}: only the person who asked can open it, once",
        rfc3339(at)
    ))
}

/// `otm status` and `otm burn` with a receive link: the request's state,
/// or its withdrawal.
async fn request_status(
    text: &str,
    json_out: bool,
    insecure_http: bool,
    withdraw: bool,
) -> Outcome<()> {
    let link = ReceiveLink::parse(text).map_err(|e| Failure::Input(e.to_string()))?;
    let client = client(&link.base, insecure_http)?;
    let gone = "this request was withdrawn or has expired (or the link is wrong)";
    if withdraw {
        client.withdraw(&link).await.map_err(|e| failure(e, gone))?;
        if json_out {
            return emit_line(&json!({"ok": true, "state": "withdrawn"}).to_string());
        }
        return emit_line("withdrawn: the request is gone, and an unread answer with it");
    }
    let receipt = client
        .request_status(&link)
        .await
        .map_err(|e| failure(e, gone))?;
    if json_out {
        let line = json!({
            "ok": true,
            "state": receipt.state,
            "expires_at": rfc3339(receipt.expires_at),
            "answered_at": receipt.answered_at.map(rfc3339),
            "changed_at": receipt.changed_at.map(rfc3339),
            "reference": receipt.reference,
        });
        return emit_line(&line.to_string());
    }
    let expires = rfc3339(receipt.expires_at);
    let answered = receipt.answered_at.map(rfc3339).unwrap_or_default();
    let changed = receipt.changed_at.map(rfc3339).unwrap_or_default();
    emit_line(&match receipt.state {
        RequestState::Waiting => format!("waiting: not answered yet; deleted at {expires}"),
        RequestState::Answered => {
            format!("answered at {answered}: open it with `otm open`; deleted unread at {expires}")
        }
        RequestState::Opened => format!("answered at {answered}, opened at {changed}"),
        RequestState::Burned => format!("answered at {answered}, destroyed unread at {changed}"),
    })
}

/// The `--json` form of a receipt: the API's status fields and `"ok": true`.
fn receipt_json(receipt: &Receipt) -> serde_json::Value {
    let unix = receipt
        .expires_at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({
        "ok": true,
        "state": receipt.state,
        "expires_at": rfc3339(receipt.expires_at),
        "expires_at_unix": unix,
        "changed_at": receipt.changed_at.map(rfc3339),
        "reference": receipt.reference,
    })
}

#[cfg(test)]
mod tests {
    use super::{client, origin};

    #[test]
    fn plain_http_is_judged_by_the_parsed_host() {
        for local in [
            "http://localhost",
            "http://LOCALHOST:8080",
            "http://127.0.0.1:80",
            "http://127.9.9.9",
            "http://[::1]:8080",
            "http://app.localhost",
            "http://%6c%6fcalhost:8080",
            "https://example.org",
        ] {
            assert!(client(local, false).is_ok(), "{local}");
        }
        for remote in [
            "http://example.org",
            "http://10.0.0.1:80",
            "http://[2001:db8::1]:80",
            "http://localhost.example.org",
            "http://127.0.0.1.evil.example",
            "http://localhost%2eevil.example",
            "http://localhost:80@evil.example/",
            "http://127.0.0.1@evil.example",
        ] {
            assert!(client(remote, false).is_err(), "{remote}");
        }
        assert!(client("http://example.org", true).is_ok());
    }

    #[test]
    fn origins() {
        assert_eq!(
            origin("HTTPS://Otm.Example:8443/secrets/otm/x#key=y"),
            Some(("https".into(), "otm.example:8443".into()))
        );
        assert_eq!(origin("no scheme"), None);
    }
}
