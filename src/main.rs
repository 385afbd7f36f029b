//! The `marketcast` command: `serve` (the default), `snapshot --replay FILE`, `simulate`,
//! `ssi-check`, `watch [URL]`, `schema`.

use std::io::{BufReader, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use marketcast::base::time::{at_local_time, Clock, SystemClock, Timestamp};
use marketcast::config::{
    Cli, Command, ImportArgs, LogFormat, ServeArgs, SimulateArgs, SnapshotArgs, SsiCheckArgs,
    WatchArgs,
};
use marketcast::feed::replay::{format_line, ReplayReader};
use marketcast::feed::simulator::{Simulator, SimulatorConfig};
use marketcast::feed::ssi::check;
use marketcast::feed::{ingest, FeedStats};
use marketcast::market::contracts::front_month_contract;
use marketcast::node::{self, Node};

/// jemalloc rather than the system's malloc: over a trading day it gives freed memory back,
/// where glibc's kept several times what was in use (see BENCHMARKS.md, "Memory over a
/// trading day").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // `.env` first, so the settings below see it; variables already set win.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("marketcast: cannot read .env: {e}");
            return ExitCode::from(2);
        }
    }
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(*args),
        Some(Command::Snapshot(args)) => snapshot(args),
        Some(Command::Simulate(args)) => simulate(args),
        Some(Command::SsiCheck(args)) => ssi_check(*args),
        Some(Command::Watch(args)) => watch(args),
        Some(Command::Import(args)) => import(args),
        Some(Command::Schema(args)) => {
            let schema = if args.board {
                marketcast::market::board_message::json_schema()
            } else {
                marketcast::market::snapshot::json_schema()
            };
            serde_json::to_writer_pretty(std::io::stdout(), &schema)
                .map(|()| println!())
                .context("cannot write the schema")
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("marketcast: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let filter =
        tracing_subscriber::EnvFilter::try_new(format!("marketcast={0},{0}", args.log_level))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    // jemalloc gives freed pages back on a thread of its own, so what a burst freed (a
    // back-fill, clients gone) leaves the process even when the threads that freed it go quiet.
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!("jemalloc's background purging is off ({e}); freed memory returns later");
    }
    let runtime = runtime()?;
    let result = runtime.block_on(async {
        let node = Node::bind(args).await?;
        node.run(node::shutdown_signal()).await
    });
    // Do not wait for stragglers: shutdown has already given clients their grace period.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}

fn watch(args: WatchArgs) -> anyhow::Result<()> {
    use marketcast::watch;
    let url = watch::ws_url(
        args.url.as_deref().unwrap_or(watch::DEFAULT_URL),
        args.token.as_deref(),
    )?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = runtime()?;
    let mut out = std::io::stdout();
    let result = runtime.block_on(async {
        if args.once {
            watch::once(&url, &mut out).await
        } else if args.json {
            watch::json_lines(&url, &mut out).await
        } else {
            watch::live(&url).await
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}

fn import(args: ImportArgs) -> anyhow::Result<()> {
    let file = std::fs::File::open(&args.replay)
        .with_context(|| format!("cannot open {}", args.replay.display()))?;
    let mut processor = marketcast::market::MarketProcessor::default();
    processor.enable_history(usize::MAX);
    let stats = FeedStats::new("replay");
    let mut last_at: Option<Timestamp> = None;
    for line in ReplayReader::new(BufReader::new(file)) {
        let line = line.with_context(|| args.replay.display().to_string())?;
        let Some(now) = line.at.or(last_at) else {
            anyhow::bail!(
                "{} line {}: no receive time; import needs the replay format's times",
                args.replay.display(),
                line.line
            );
        };
        last_at = Some(now);
        let _ = ingest(&mut processor, &stats, &line.message, now, String::new);
    }
    let records = processor.take_history();
    let url = args.history_url();
    if let Some(dir) = url.strip_prefix("sqlite://").map(|_| &args.data_dir) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("DATA_DIR {}: cannot create it", dir.display()))?;
    }
    let runtime = runtime()?;
    let summary = runtime.block_on(async {
        let pool = marketcast::history::store::open(&url).await?;
        let written = marketcast::history::import(&pool, records).await?;
        let counts = marketcast::history::store::counts(&pool).await?;
        anyhow::Ok((written, counts))
    })?;
    let status = stats.status();
    let counts: std::collections::BTreeMap<_, _> = summary.1.into_iter().collect();
    println!(
        "{}",
        serde_json::json!({
            "messages": status.messages,
            "malformed": status.malformed,
            "records": summary.0,
            "tables": counts,
        })
    );
    Ok(())
}

fn ssi_check(args: SsiCheckArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let settings = args.check_settings(SystemClock.now());
    let runtime = runtime()?;
    let mut out = std::io::stdout();
    let failures = runtime.block_on(check::run(&settings, &mut out));
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    if failures.is_empty() {
        println!("ssi-check passed: marketcast can stream from SSI with these settings (FEED=ssi)");
        return Ok(());
    }
    for f in &failures {
        println!("{f}");
    }
    anyhow::bail!("ssi-check found {} problem(s)", failures.len())
}

fn snapshot(args: SnapshotArgs) -> anyhow::Result<()> {
    let file = std::fs::File::open(&args.replay)
        .with_context(|| format!("cannot open {}", args.replay.display()))?;
    let mut processor =
        marketcast::market::MarketProcessor::new(marketcast::market::ProcessorConfig {
            // Offline, every alert of the day is kept, not only the server's last 500.
            alerts: marketcast::market::alerts::AlertConfig {
                capacity: usize::MAX,
                ..args.thresholds.config()
            },
            ..Default::default()
        });
    let stats = FeedStats::new("replay");
    let start = SystemClock.now();
    let mut last_at: Option<Timestamp> = None;
    let mut first_error: Option<String> = None;
    for line in ReplayReader::new(BufReader::new(file)) {
        let line = line.with_context(|| args.replay.display().to_string())?;
        let now = line.at.or(last_at).unwrap_or(start);
        last_at = Some(now);
        let origin = || format!("{} line {}", args.replay.display(), line.line);
        if let Err(e) = ingest(&mut processor, &stats, &line.message, now, origin) {
            let note = format!("{} line {}: {e}", args.replay.display(), line.line);
            if args.strict {
                anyhow::bail!(note);
            }
            first_error.get_or_insert(note);
        }
    }
    let status = stats.status();
    eprintln!(
        "marketcast: {} messages: {} events, {} of unused types, {} malformed",
        status.messages, status.events, status.skipped, status.malformed
    );
    if let Some(first) = first_error {
        eprintln!("marketcast: first malformed message: {first}");
    }
    let mut out = std::io::stdout().lock();
    if args.alerts {
        for alert in processor.alerts().all() {
            serde_json::to_writer(&mut out, alert)?;
            out.write_all(b"\n")?;
        }
        return Ok(());
    }
    let snap = processor.snapshot();
    if args.pretty {
        serde_json::to_writer_pretty(&mut out, &snap)?;
    } else {
        out.write_all(&snap.to_json_vec())?;
    }
    out.write_all(b"\n")?;
    Ok(())
}

fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let start = match &args.start {
        Some(s) => Timestamp::parse_rfc3339(s)
            .map_err(|e| anyhow::anyhow!("--start {s:?} is not an RFC 3339 time: {e}"))?,
        None => {
            let nine_fifteen = chrono::NaiveTime::from_hms_opt(9, 15, 0).unwrap_or_default();
            at_local_time(SystemClock.now(), nine_fifteen).unwrap_or_else(|| SystemClock.now())
        }
    };
    let mut config = SimulatorConfig::new(args.seed, start.0);
    config.events_per_second = args.rate;
    config.futures_symbol = front_month_contract(start.0.date_naive());
    let mut sim = Simulator::new(config);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for _ in 0..args.events {
        let (at, message) = sim.next_message();
        let line = format_line(Timestamp(at), &message);
        if let Err(e) = writeln!(out, "{line}") {
            // A closed pipe (`| head`) is a normal way to stop.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e.into());
        }
    }
    out.flush().or_else(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    Ok(())
}
