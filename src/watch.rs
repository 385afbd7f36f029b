//! `marketcast watch [URL]`: the market in a terminal, from any marketcast server.
//!
//! Why it is its own module: it is a client, not part of the server. It connects to
//! `/ws/market` like any other client (with `--token` as `?token=`), and shows a compact table
//! refreshed in place: the VN30 board (price, change, active buy and sell), the indices, the
//! futures basis, foreign net flow, the message rate and latency (arrival time minus the
//! message's `ts`). It draws with ratatui over crossterm, so it works in any terminal, over a
//! plain SSH session too. It reconnects by itself with backoff.
//!
//! `--once` prints one snapshot as plain text and exits; `--json` prints every message as it
//! arrives, one per line, for `jq`.

use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

use crate::base::Backoff;
use crate::broadcast::delta::Rebuilder;
use crate::market::snapshot::MarketSnapshot;

/// Where to connect when no URL is given: a server started with the defaults.
pub const DEFAULT_URL: &str = "ws://127.0.0.1:8000/ws/market";

/// The `/ws/market` URL for what the user typed: a `ws(s)://` URL as it is, an `http(s)://`
/// one turned into its WebSocket twin, a bare `host:port` as `ws://`; the path defaults to
/// `/ws/market`, and `token` is added as `?token=`.
pub fn ws_url(input: &str, token: Option<&str>) -> anyhow::Result<String> {
    let with_scheme = if input.contains("://") {
        input.to_string()
    } else {
        format!("ws://{input}")
    };
    let mut url = url::Url::parse(&with_scheme).with_context(|| format!("not a URL: {input}"))?;
    let scheme = match url.scheme() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => bail!("unsupported scheme {other}: use ws://, wss://, http:// or https://"),
    };
    // Only between special schemes (http/ws); both sides here are.
    let _ = url.set_scheme(scheme);
    if url.path().is_empty() || url.path() == "/" {
        url.set_path("/ws/market");
    }
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        url.query_pairs_mut().append_pair("token", token);
    }
    // Deltas when the server offers them; a server that does not sends full messages.
    if !url.query_pairs().any(|(k, _)| k == "delta") {
        url.query_pairs_mut()
            .append_pair("delta", crate::broadcast::delta::FORMAT);
    }
    Ok(url.into())
}

/// The full text of a message: a text message as it is, a delta rebuilt against the last one.
fn full_text(rebuild: &mut Rebuilder, msg: Message) -> anyhow::Result<Option<String>> {
    match msg {
        Message::Text(text) => {
            rebuild.full(text.as_bytes());
            Ok(Some(text.to_string()))
        }
        Message::Binary(payload) => {
            let full = rebuild.delta(&payload).context("a delta message")?;
            Ok(Some(String::from_utf8(full).context("a rebuilt message")?))
        }
        _ => Ok(None),
    }
}

/// A `/ws/market` message: the snapshot and its stamp.
#[derive(Deserialize)]
struct Stamped {
    seq: Option<u64>,
    ts: Option<i64>,
    #[serde(flatten)]
    snapshot: MarketSnapshot,
}

/// What one message was.
enum Incoming {
    Snapshot(Box<Stamped>),
    /// A `{"type":"status",...}` message: a short note for the header.
    Status(String),
    /// Anything else (`{"type":"pong"}`, unknown shapes).
    Other,
}

fn classify(text: &str) -> Incoming {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return Incoming::Other;
    };
    if value.get("type").and_then(|t| t.as_str()) == Some("status") {
        let note = if value["connected"] == false {
            format!(
                "feed down: {}",
                value["error"].as_str().unwrap_or("no detail")
            )
        } else if value["stale"] == true {
            "feed quiet".to_string()
        } else {
            "feed up".to_string()
        };
        return Incoming::Status(note);
    }
    match serde_json::from_value::<Stamped>(value) {
        Ok(s) => Incoming::Snapshot(Box::new(s)),
        Err(_) => Incoming::Other,
    }
}

/// One row of the board, ready to print.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardRow {
    pub symbol: String,
    /// Price in thousands of VND, as Vietnamese boards show it (0: no trade yet).
    pub price: f64,
    pub change_pct: f64,
    pub buy: i64,
    pub sell: i64,
    pub total: i64,
    pub tone: Tone,
}

/// The colour a Vietnamese board gives a price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Ceiling,
    Up,
    Reference,
    Down,
    Floor,
}

/// The board's rows, by symbol.
pub fn board_rows(s: &MarketSnapshot) -> Vec<BoardRow> {
    let mut symbols: Vec<&String> = s.quotes.keys().chain(s.prices.keys()).collect();
    symbols.sort();
    symbols.dedup();
    symbols
        .into_iter()
        .map(|symbol| {
            let q = s.quotes.get(symbol);
            let p = s.prices.get(symbol).copied().unwrap_or_default();
            let tone = if p.ceiling > 0.0 && p.last_price >= p.ceiling {
                Tone::Ceiling
            } else if p.floor > 0.0 && p.last_price > 0.0 && p.last_price <= p.floor {
                Tone::Floor
            } else if p.last_price > p.ref_price && p.ref_price > 0.0 {
                Tone::Up
            } else if p.last_price < p.ref_price && p.last_price > 0.0 {
                Tone::Down
            } else {
                Tone::Reference
            };
            BoardRow {
                symbol: symbol.clone(),
                price: p.last_price / 1000.0,
                change_pct: p.change_pct,
                buy: q.map_or(0, |q| q.mua_chu_dong_volume),
                sell: q.map_or(0, |q| q.ban_chu_dong_volume),
                total: q.map_or(0, |q| q.total_volume),
                tone,
            }
        })
        .collect()
}

/// The lines above the board: indices, futures, foreign flow.
pub fn summary_lines(s: &MarketSnapshot) -> Vec<String> {
    let mut out = Vec::new();
    for id in ["VN30", "VNINDEX"] {
        if let Some(i) = s.indices.get(id) {
            out.push(format!(
                "{id:<8} {:>9.2} {:>+7.2} ({:>+5.2}%)  adv {} / unch {} / dec {}",
                i.value, i.change, i.ratio_change, i.advances, i.no_changes, i.declines
            ));
        }
    }
    match &s.derivatives {
        Some(d) => out.push(format!(
            "{:<8} {:>9.1} {:>+7.1}  basis {:+.2} ({})",
            d.symbol,
            d.last_price,
            d.change,
            d.basis,
            if d.is_premium { "premium" } else { "discount" }
        )),
        None => out.push("futures  no trade yet".to_string()),
    }
    if let Some(f) = &s.foreign {
        out.push(format!(
            "foreign  buy {:.2} bn  sell {:.2} bn  net {:+.2} bn VND",
            f.total_buy_value / 1e9,
            f.total_sell_value / 1e9,
            f.total_net_value / 1e9
        ));
    }
    out
}

/// The whole view as plain text (`--once`).
pub fn plain_text(s: &MarketSnapshot, seq: Option<u64>, latency_ms: Option<i64>) -> String {
    let mut out = String::new();
    let stamp = match (seq, latency_ms) {
        (Some(seq), Some(ms)) => format!("seq {seq}, {ms} ms after the snapshot"),
        (Some(seq), None) => format!("seq {seq}"),
        _ => String::new(),
    };
    out.push_str(&format!("marketcast  {stamp}\n"));
    for line in summary_lines(s) {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!(
        "{:<8} {:>9} {:>8} {:>12} {:>12} {:>12}\n",
        "symbol", "price", "chg %", "active buy", "active sell", "total"
    ));
    let rows = board_rows(s);
    if rows.is_empty() {
        out.push_str("(no trades yet: the session has not started)\n");
    }
    for r in rows {
        out.push_str(&format!(
            "{:<8} {:>9.2} {:>+8.2} {:>12} {:>12} {:>12}\n",
            r.symbol, r.price, r.change_pct, r.buy, r.sell, r.total
        ));
    }
    out
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> anyhow::Result<Socket> {
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(15),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .with_context(|| format!("{url}: no answer in 15 s"))?
    .with_context(|| format!("cannot connect to {url}"))?;
    Ok(ws)
}

/// `--once`: the first snapshot, as plain text.
pub async fn once(url: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let mut ws = connect(url).await?;
    let mut rebuild = Rebuilder::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .context("no snapshot in 30 s")?
            .context("the server closed the connection")??;
        if let Some(text) = full_text(&mut rebuild, msg)? {
            if let Incoming::Snapshot(s) = classify(&text) {
                let latency = s.ts.map(|ts| now_ms() - ts);
                out.write_all(plain_text(&s.snapshot, s.seq, latency).as_bytes())?;
                let _ = ws.close(None).await;
                return Ok(());
            }
        }
    }
}

/// `--json`: every message, one per line, until the connection ends.
pub async fn json_lines(url: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let mut ws = connect(url).await?;
    let mut rebuild = Rebuilder::default();
    while let Some(msg) = ws.next().await {
        if let Some(text) = full_text(&mut rebuild, msg?)? {
            out.write_all(text.as_bytes())?;
            out.write_all(b"\n")?;
            out.flush()?;
        }
    }
    Ok(())
}

/// What the live view shows.
struct View {
    url: String,
    state: String,
    note: String,
    latest: Option<Box<Stamped>>,
    latency_ms: Option<i64>,
    arrivals: VecDeque<Instant>,
}

impl View {
    fn rate(&mut self) -> f64 {
        let now = Instant::now();
        while self
            .arrivals
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(5))
        {
            self.arrivals.pop_front();
        }
        self.arrivals.len() as f64 / 5.0
    }
}

fn draw(frame: &mut ratatui::Frame, view: &mut View) {
    use ratatui::layout::{Constraint, Layout};
    use ratatui::style::{Color, Modifier, Style};
    use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};

    let rate = view.rate();
    let header = format!(
        "marketcast watch  {}  [{}]  seq {}  {:.1} msg/s  latency {}  {}   (q quits)",
        view.url,
        view.state,
        view.latest
            .as_ref()
            .and_then(|s| s.seq)
            .map_or("-".into(), |s| s.to_string()),
        rate,
        view.latency_ms
            .map_or("-".to_string(), |ms| format!("{ms} ms")),
        view.note,
    );
    let summary = view
        .latest
        .as_ref()
        .map(|s| summary_lines(&s.snapshot))
        .unwrap_or_default();
    let [top, mid, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(summary.len() as u16 + 2),
        Constraint::Min(3),
    ])
    .areas(frame.area());
    frame.render_widget(
        Paragraph::new(header).style(Style::new().add_modifier(Modifier::BOLD)),
        top,
    );
    frame.render_widget(
        Paragraph::new(summary.join("\n")).block(Block::bordered().title(" VN30 ")),
        mid,
    );
    let rows: Vec<Row> = view
        .latest
        .as_ref()
        .map(|s| board_rows(&s.snapshot))
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let color = match r.tone {
                Tone::Ceiling => Color::Magenta,
                Tone::Up => Color::Green,
                Tone::Reference => Color::Yellow,
                Tone::Down => Color::Red,
                Tone::Floor => Color::Cyan,
            };
            Row::new(vec![
                Cell::from(r.symbol).style(Style::new().fg(color)),
                Cell::from(format!("{:>9.2}", r.price)).style(Style::new().fg(color)),
                Cell::from(format!("{:>+7.2}", r.change_pct)).style(Style::new().fg(color)),
                Cell::from(format!("{:>12}", r.buy)).style(Style::new().fg(Color::Green)),
                Cell::from(format!("{:>12}", r.sell)).style(Style::new().fg(Color::Red)),
                Cell::from(format!("{:>12}", r.total)),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(13),
            Constraint::Length(13),
            Constraint::Length(13),
        ],
    )
    .header(
        Row::new(vec![
            "symbol",
            "price",
            "chg %",
            "active buy",
            "active sell",
            "total",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .block(Block::bordered().title(" board "));
    frame.render_widget(table, bottom);
}

/// `q`, Esc or Ctrl-C.
fn quits(k: &ratatui::crossterm::event::KeyEvent) -> bool {
    use ratatui::crossterm::event::{KeyCode, KeyModifiers};
    let ctrl_c = k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
    ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc)
}

/// The live view, until the user quits.
pub async fn live(url: &str) -> anyhow::Result<()> {
    let mut terminal = ratatui::try_init().context("cannot take over the terminal")?;
    let result = live_loop(url, &mut terminal).await;
    ratatui::restore();
    result
}

async fn live_loop(url: &str, terminal: &mut ratatui::DefaultTerminal) -> anyhow::Result<()> {
    use ratatui::crossterm::event::{self as term, Event};

    // Keys are read on a thread of their own: crossterm's reads block.
    let (keys_tx, mut keys) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || loop {
        match term::poll(Duration::from_millis(200)) {
            Ok(true) => match term::read() {
                Ok(Event::Key(k)) => {
                    if keys_tx.send(k).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            },
            Ok(false) => {
                if keys_tx.is_closed() {
                    return;
                }
            }
            Err(_) => return,
        }
    });
    let mut view = View {
        url: url.to_string(),
        state: "connecting".into(),
        note: String::new(),
        latest: None,
        latency_ms: None,
        arrivals: VecDeque::new(),
    };
    let mut redraw = tokio::time::interval(Duration::from_millis(250));
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        terminal.draw(|f| draw(f, &mut view))?;
        // Keys still work while a connection is being made (it may take seconds).
        let connecting = connect(url);
        tokio::pin!(connecting);
        let connected = loop {
            tokio::select! {
                done = &mut connecting => break done,
                key = keys.recv() => {
                    if key.is_none_or(|k| quits(&k)) {
                        return Ok(());
                    }
                }
            }
        };
        let mut rebuild = Rebuilder::default();
        let mut ws = match connected {
            Ok(ws) => {
                backoff.reset();
                view.state = "live".into();
                Some(ws)
            }
            Err(e) => {
                view.state = "reconnecting".into();
                view.note = format!("{e:#}");
                None
            }
        };
        let nominal = backoff.nominal();
        let retry_at = tokio::time::Instant::now() + nominal;
        loop {
            tokio::select! {
                key = keys.recv() => {
                    if key.is_none_or(|k| quits(&k)) {
                        return Ok(());
                    }
                }
                _ = redraw.tick() => {
                    terminal.draw(|f| draw(f, &mut view))?;
                }
                msg = async { ws.as_mut()?.next().await }, if ws.is_some() => {
                    let text = match msg {
                        Some(Ok(msg)) => full_text(&mut rebuild, msg),
                        Some(Err(e)) => Err(e.into()),
                        None => Err(anyhow::anyhow!("closed")),
                    };
                    match text {
                        Ok(Some(text)) => match classify(&text) {
                            Incoming::Snapshot(s) => {
                                view.latency_ms = s.ts.map(|ts| now_ms() - ts);
                                view.arrivals.push_back(Instant::now());
                                view.latest = Some(s);
                            }
                            Incoming::Status(note) => view.note = note,
                            Incoming::Other => {}
                        },
                        Ok(None) => {}
                        // A lost connection, or a delta that cannot be applied: a new
                        // connection starts with a full message.
                        Err(_) => {
                            ws = None;
                            view.state = "reconnecting".into();
                        }
                    }
                }
                _ = tokio::time::sleep_until(retry_at), if ws.is_none() => break,
            }
            if ws.is_none() && tokio::time::Instant::now() >= retry_at {
                break;
            }
        }
        // Exponential backoff with jitter (up to half again), up to 30 s; keys still work
        // meanwhile.
        let jitter = backoff.next_wait().saturating_sub(nominal);
        let pause = tokio::time::sleep(jitter);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                key = keys.recv() => {
                    if key.is_none_or(|k| quits(&k)) {
                        return Ok(());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_people_type_become_the_market_socket() {
        let u = |s: &str| ws_url(s, None).unwrap();
        assert_eq!(
            u("ws://127.0.0.1:8000/ws/market"),
            "ws://127.0.0.1:8000/ws/market?delta=fossil"
        );
        assert_eq!(
            u("http://127.0.0.1:8000/"),
            "ws://127.0.0.1:8000/ws/market?delta=fossil"
        );
        assert_eq!(
            u("https://md.example"),
            "wss://md.example/ws/market?delta=fossil"
        );
        assert_eq!(
            u("localhost:8000"),
            "ws://localhost:8000/ws/market?delta=fossil"
        );
        assert_eq!(
            ws_url("ws://h:1/ws/market", Some("a b&c")).unwrap(),
            "ws://h:1/ws/market?token=a+b%26c&delta=fossil"
        );
        assert_eq!(
            ws_url("ws://h:1/ws/market?delta=none", None).unwrap(),
            "ws://h:1/ws/market?delta=none",
            "a choice in the URL is kept"
        );
        assert!(ws_url("ftp://h/", None).is_err());
    }

    #[test]
    fn status_and_snapshot_messages_are_told_apart() {
        assert!(matches!(
            classify(r#"{"type":"status","connected":false,"error":"timeout"}"#),
            Incoming::Status(n) if n == "feed down: timeout"
        ));
        assert!(matches!(classify(r#"{"type":"pong"}"#), Incoming::Other));
        assert!(matches!(classify("not json"), Incoming::Other));
        let empty = r#"{"seq":3,"ts":5,"quotes":{},"prices":{},"indices":{},"foreign":null,"derivatives":null}"#;
        let Incoming::Snapshot(s) = classify(empty) else {
            panic!("a snapshot")
        };
        assert_eq!(s.seq, Some(3));
        let text = plain_text(&s.snapshot, s.seq, None);
        assert!(text.contains("no trades yet"), "{text}");
    }
}
