//! `marketcast ssi-check`: what a user runs first with new SSI credentials.
//!
//! It walks the same path as `FEED=ssi` (token, VN30 list, negotiate, connect, subscribe) with
//! the same settings, says what each step gave, prints the first messages of each type with
//! their decoded fields, then each subscribed channel with the first message it delivered and
//! the symbols it has not delivered yet (so a futures contract or an extra symbol without
//! quotes shows), and ends with one line per failure that says what to do. It exits 0 only
//! when every step worked and every subscribed type delivered a message.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::stream::{self, SessionEvent, SsiClient, SsiSettings, SsiStreamError};
use super::{parse_message, Message};
use crate::base::time::{Clock, SystemClock};

/// What the check is told. The feed defines it and the command line builds it, so the check
/// walks the same path as `FEED=ssi` with the same settings without knowing where they came
/// from.
#[derive(Debug, Clone)]
pub struct CheckSettings {
    /// The stream's settings, exactly as `FEED=ssi` would get them.
    pub ssi: SsiSettings,
    /// What the settings lack (a missing credential, say), as the settings' own validation
    /// put it (`what: fix`): reported as the only failure, before anything is asked of SSI.
    pub settings_problem: Option<String>,
    /// The VN30 list to fall back on when SSI's cannot be fetched (`VN30_SYMBOLS`, else the
    /// built-in list).
    pub vn30_fallback: Vec<String>,
    /// The futures contracts to follow (`FUTURES_OVERRIDE`, else the two live contracts).
    pub futures: Vec<String>,
    /// The `EXTRA_SYMBOLS` entries, subscribed with the default channels.
    pub extra_symbols: Vec<String>,
    /// The configured channels (`SSI_CHANNELS`, split); empty: the default channels.
    pub channels: Vec<String>,
    /// How long to wait for stream messages.
    pub timeout: Duration,
    /// Messages to print per type.
    pub messages: usize,
}

/// One thing that went wrong, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub what: String,
    pub fix: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FAIL {}. Fix: {}", self.what, self.fix)
    }
}

fn failure(what: impl Into<String>, fix: impl Into<String>) -> Failure {
    Failure {
        what: what.into(),
        fix: fix.into(),
    }
}

/// A failure from an error (whose text already names its step).
fn from_error(e: &SsiStreamError) -> Failure {
    failure(e.to_string(), e.advice())
}

/// The channel type (`X-TRADE` of `X-TRADE:ACB-FPT`), upper-cased.
fn channel_type(channel: &str) -> String {
    channel
        .split(':')
        .next()
        .unwrap_or(channel)
        .trim()
        .to_ascii_uppercase()
}

/// The type a message reports (its envelope's `DataType`, else the content's `RType`,
/// upper-cased) and the symbol it is about (the content's `Symbol`, else its `IndexId`).
fn message_key(text: &str) -> (String, Option<String>) {
    let decode = |v: Value| match v {
        Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::Null),
        v => v,
    };
    let v = decode(serde_json::from_str(text).unwrap_or(Value::Null));
    let field = |v: &Value, key: &str| {
        v.as_object().and_then(|o| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .and_then(|(_, v)| v.as_str().map(str::to_string))
        })
    };
    let content = v
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("Content")))
        .map(|(_, c)| decode(c.clone()))
        .unwrap_or_else(|| v.clone());
    let kind = field(&v, "DataType")
        .or_else(|| field(&content, "RType"))
        .map_or_else(|| "?".into(), |t| t.to_ascii_uppercase());
    let symbol = field(&content, "Symbol").or_else(|| field(&content, "IndexId"));
    (kind, symbol)
}

/// Symbols a channel lists before it says which it has not delivered yet.
const SHOWN_MISSING: usize = 12;

/// One subscribed channel as the check follows it: what it lists, the first message it
/// delivered, and which of its symbols were heard from.
struct ChannelWatch {
    channel: String,
    kind: String,
    /// Upper-cased; `None` for `ALL`.
    symbols: Option<Vec<String>>,
    first: Option<String>,
    heard: BTreeSet<String>,
    messages: usize,
}

impl ChannelWatch {
    fn new(channel: &str) -> Self {
        let (kind, list) = channel.split_once(':').unwrap_or((channel, "ALL"));
        let list = list.trim();
        let symbols = (!list.eq_ignore_ascii_case("ALL")).then(|| {
            list.split('-')
                .map(|s| s.trim().to_ascii_uppercase())
                .filter(|s| !s.is_empty())
                .collect()
        });
        ChannelWatch {
            channel: channel.trim().to_string(),
            kind: kind.trim().to_ascii_uppercase(),
            symbols,
            first: None,
            heard: BTreeSet::new(),
            messages: 0,
        }
    }

    /// Whether a message of this type, about this symbol, came through this channel.
    fn covers(&self, kind: &str, symbol: Option<&str>) -> bool {
        let kind_fits = self.kind == "ALL" || self.kind == kind;
        kind_fits
            && match (&self.symbols, symbol) {
                (None, _) => true,
                (Some(list), Some(symbol)) => list.iter().any(|s| s.eq_ignore_ascii_case(symbol)),
                (Some(_), None) => false,
            }
    }

    fn note(&mut self, symbol: Option<&str>, decoded: &dyn Fn() -> String) {
        self.messages += 1;
        if self.first.is_none() {
            self.first = Some(decoded());
        }
        if let Some(symbol) = symbol {
            self.heard.insert(symbol.to_ascii_uppercase());
        }
    }

    /// The channel's lines: what it lists, its first message, and who has not been heard from.
    fn report(&self, out: &mut impl Write) {
        let listed = match &self.symbols {
            None => "every symbol".to_string(),
            Some(list) => format!("{} symbols", list.len()),
        };
        let _ = writeln!(out, "chan {} ({listed})", self.channel);
        let Some(first) = &self.first else {
            let _ = writeln!(out, "     no message yet");
            return;
        };
        let _ = writeln!(out, "     first: {first}");
        let Some(list) = &self.symbols else {
            let _ = writeln!(
                out,
                "     {} messages from {} symbols",
                self.messages,
                self.heard.len()
            );
            return;
        };
        let missing: Vec<&str> = list
            .iter()
            .filter(|s| !self.heard.contains(*s))
            .map(String::as_str)
            .collect();
        let heard = list.len() - missing.len();
        let _ = match missing.len() {
            0 => writeln!(
                out,
                "     {} messages from all {} symbols",
                self.messages,
                list.len()
            ),
            n => writeln!(
                out,
                "     {} messages from {heard} of {} symbols; nothing yet from {}{}",
                self.messages,
                list.len(),
                missing[..n.min(SHOWN_MISSING)].join(" "),
                if n > SHOWN_MISSING { " ..." } else { "" }
            ),
        };
    }
}

/// A message's decoded event, as the check prints it (at most 400 characters).
fn decoded(message: &str) -> String {
    let decoded = match parse_message(message) {
        Ok(Message::Event(e)) => format!("{e:?}"),
        Ok(Message::Skipped { rtype }) => format!("(type {rtype}: not used)"),
        Err(e) => format!("(cannot be read: {e})"),
    };
    decoded.chars().take(400).collect()
}

/// Runs the check, printing to `out`; returns the failures.
pub async fn run(args: &CheckSettings, out: &mut impl Write) -> Vec<Failure> {
    let mut failures = Vec::new();
    let _ = writeln!(out, "marketcast ssi-check: SSI FastConnect Data");
    if let Some(e) = &args.settings_problem {
        let (what, fix) = e.split_once(": ").unwrap_or((e, "set it"));
        failures.push(failure(what, fix));
        return failures;
    }
    let settings = args.ssi.clone();
    let _ = writeln!(
        out,
        "  REST {}  stream {}  subscribe mode {:?}",
        settings.base_url, settings.stream_url, settings.subscribe_mode
    );
    let client = match SsiClient::new(settings) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            failures.push(from_error(&e));
            return failures;
        }
    };

    // 1. Token.
    match client.token().await {
        Ok(jwt) => {
            let left = stream::jwt_expiry(&jwt).map(|exp| {
                let now = SystemClock.now().0.timestamp().max(0) as u64;
                exp.saturating_sub(now)
            });
            let _ = match left {
                Some(s) => writeln!(
                    out,
                    "ok   access token (expires in {}h{:02}m)",
                    s / 3600,
                    s % 3600 / 60
                ),
                None => writeln!(out, "ok   access token (no expiry in it)"),
            };
        }
        Err(e) => {
            let _ = writeln!(out, "fail {e}");
            failures.push(from_error(&e));
            return failures;
        }
    }

    // 2. VN30 list.
    let vn30 = match client.vn30_components().await {
        Ok(list) => {
            let _ = writeln!(
                out,
                "ok   VN30 constituents: {} symbols ({})",
                list.len(),
                list.join(" ")
            );
            list
        }
        Err(e) => {
            let _ = writeln!(out, "fail VN30 constituents: {e}");
            failures.push(failure(
                format!("VN30 constituents: {e}"),
                format!(
                    "{}; until then marketcast uses VN30_SYMBOLS or its built-in list",
                    e.advice()
                ),
            ));
            args.vn30_fallback.clone()
        }
    };

    // 3. Stream and subscriptions.
    let channels = stream::channels_or_default(
        args.channels.clone(),
        &vn30,
        &args.futures,
        &args.extra_symbols,
    );
    let plan = stream::plan_connections(&channels, client.settings().subscribe_mode);
    // Every call's answer is waited for too (SSI's answer to SwitchChannels is undocumented).
    let mut answers_due: usize = plan.iter().map(Vec::len).sum();
    let (tx, mut rx) = mpsc::channel::<Result<SessionEvent, String>>(1024);
    let mut sessions = tokio::task::JoinSet::new();
    for calls in plan {
        match client.open_session(&calls).await {
            Ok(mut session) => {
                let _ = writeln!(
                    out,
                    "ok   stream connected to {} (idle timeout {:?}), subscribed: {}",
                    client.hub_url(),
                    session.idle_timeout(),
                    calls.join(" | ")
                );
                let tx = tx.clone();
                sessions.spawn(async move {
                    loop {
                        let event = session.next_event().await.map_err(|e| e.to_string());
                        let end = event.is_err();
                        if tx.send(event).await.is_err() || end {
                            return;
                        }
                    }
                });
            }
            Err(e) => {
                let _ = writeln!(out, "fail {e}");
                failures.push(from_error(&e));
                return failures;
            }
        }
    }
    drop(tx);

    // 4. Messages.
    let expected: Vec<String> = channels
        .iter()
        .flat_map(|c| c.split(','))
        .map(channel_type)
        .collect();
    let mut watches: Vec<ChannelWatch> = channels
        .iter()
        .flat_map(|c| c.split(','))
        .filter(|c| !c.trim().is_empty())
        .map(ChannelWatch::new)
        .collect();
    let _ = writeln!(
        out,
        "...  waiting up to {:?} for {} messages",
        args.timeout,
        expected.join(", ")
    );
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + args.timeout;
    let done = |seen: &BTreeMap<String, usize>, watches: &[ChannelWatch], answers_due: usize| {
        answers_due == 0
            && expected
                .iter()
                .all(|t| seen.get(t).copied().unwrap_or(0) >= args.messages.max(1))
            && watches.iter().all(|w| w.first.is_some())
    };
    while !done(&seen, &watches, answers_due) {
        let event = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(e)) => e,
        };
        match event {
            Ok(SessionEvent::Messages(messages)) => {
                for m in messages {
                    let (kind, symbol) = message_key(&m);
                    let n = seen.entry(kind.clone()).or_default();
                    *n += 1;
                    if *n <= args.messages {
                        let _ = writeln!(out, "msg  {kind}: {}", decoded(&m));
                    }
                    for watch in watches
                        .iter_mut()
                        .filter(|w| w.covers(&kind, symbol.as_deref()))
                    {
                        watch.note(symbol.as_deref(), &|| decoded(&m));
                    }
                }
            }
            Ok(SessionEvent::Answer { channel, error }) => {
                answers_due = answers_due.saturating_sub(1);
                match error {
                    None => {
                        let _ = writeln!(out, "ok   SwitchChannels {channel}: accepted");
                    }
                    Some(e) => {
                        let _ = writeln!(out, "fail SwitchChannels {channel}: {e}");
                        failures.push(failure(
                        format!("SSI refused the channel {channel}: {e}"),
                        "check SSI_CHANNELS (TYPE:SYM-SYM or TYPE:ALL; types F, X, X-TRADE, X-QUOTE, R, MI, B, OL) and try SSI_SUBSCRIBE_MODE=connections or combined",
                    ));
                    }
                }
            }
            Ok(SessionEvent::HubError(text)) => {
                let _ = writeln!(out, "fail hub Error: {text}");
                failures.push(failure(
                    format!("the SSI hub reported an error: {text}"),
                    "read the text: quota messages mean too many connections or calls for this key",
                ));
            }
            Ok(SessionEvent::Malformed(why)) => {
                let _ = writeln!(out, "warn frame skipped: {why}");
            }
            Err(e) => {
                let _ = writeln!(out, "fail stream ended: {e}");
                failures.push(failure(
                    format!("the stream ended: {e}"),
                    "check the network; if it ends right after subscribing, try SSI_SUBSCRIBE_MODE=connections",
                ));
                break;
            }
        }
    }
    sessions.abort_all();
    for watch in &watches {
        watch.report(out);
    }
    let summary: Vec<String> = seen.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        out,
        "...  messages seen: {}",
        if summary.is_empty() {
            "none".to_string()
        } else {
            summary.join(", ")
        }
    );
    let missing: Vec<&String> = expected.iter().filter(|t| !seen.contains_key(*t)).collect();
    if seen.is_empty() {
        failures.push(failure(
            format!("no message in {:?}", args.timeout),
            "nothing streams outside trading hours (09:00-11:30 and 13:00-15:00 Vietnam time, Monday to Friday): run it again then; otherwise check SSI_CHANNELS",
        ));
    } else if !missing.is_empty() {
        let missing: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        failures.push(failure(
            format!(
                "no {} message in {:?} while other types arrived",
                missing.join(", "),
                args.timeout
            ),
            "if SSI keeps only the last SwitchChannels call of a connection, set SSI_SUBSCRIBE_MODE=connections (or combined); a longer --timeout helps for slow types such as MI",
        ));
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_of_channels_and_messages() {
        assert_eq!(channel_type("x-trade:ACB-FPT"), "X-TRADE");
        assert_eq!(channel_type("MI:VN30"), "MI");
        let key = |text: &str| message_key(text);
        let symbol = |s: &str| Some(s.to_string());
        assert_eq!(
            key(r#"{"DataType":"X-QUOTE","Content":"{\"Symbol\":\"VN30F2612\"}"}"#),
            ("X-QUOTE".into(), symbol("VN30F2612"))
        );
        assert_eq!(
            key(r#"{"DataType":"MI","Content":{"IndexId":"HNXIndex"}}"#),
            ("MI".into(), symbol("HNXIndex"))
        );
        assert_eq!(
            key(r#"{"RType":"r","Symbol":"SSI"}"#),
            ("R".into(), symbol("SSI"))
        );
        assert_eq!(key("junk"), ("?".into(), None));
    }

    #[test]
    fn a_channel_covers_its_type_and_symbols_and_reports_who_is_missing() {
        let mut quotes = ChannelWatch::new("X-QUOTE:ACB-VN30F2612-VN30F2701");
        assert!(quotes.covers("X-QUOTE", Some("vn30f2612")));
        assert!(!quotes.covers("X-TRADE", Some("ACB")));
        assert!(!quotes.covers("X-QUOTE", Some("FPT")));
        assert!(!quotes.covers("X-QUOTE", None));
        let mut out = Vec::new();
        quotes.report(&mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "chan X-QUOTE:ACB-VN30F2612-VN30F2701 (3 symbols)\n     no message yet\n"
        );
        quotes.note(Some("VN30F2612"), &|| "Quote(futures)".into());
        quotes.note(Some("ACB"), &|| "Quote(ACB)".into());
        let mut out = Vec::new();
        quotes.report(&mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "chan X-QUOTE:ACB-VN30F2612-VN30F2701 (3 symbols)\n     first: Quote(futures)\n     \
             2 messages from 2 of 3 symbols; nothing yet from VN30F2701\n"
        );
        let all = ChannelWatch::new("MI:ALL");
        assert!(all.covers("MI", Some("VN100")) && all.covers("MI", None));
        let everything = ChannelWatch::new("ALL");
        assert!(everything.covers("R", Some("FPT")));
    }

    #[test]
    fn failures_say_what_to_do() {
        let f = failure("access token: refused", "check SSI_CONSUMER_ID");
        assert_eq!(
            f.to_string(),
            "FAIL access token: refused. Fix: check SSI_CONSUMER_ID"
        );
    }
}
