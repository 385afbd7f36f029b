//! `/metrics`: parsed by Prometheus's own OpenMetrics parser (Python `prometheus_client`), and
//! its values move as clients connect, receive and leave.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The samples of `/metrics`, as the Prometheus parser reads them (`name{labels}` -> value).
async fn scrape(server: &ServerProcess) -> serde_json::Map<String, serde_json::Value> {
    let r = server.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        r.header("content-type")
    );
    let script = format!("{}/tests/e2e/parse_metrics.py", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test installs prometheus_client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(r.body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        r.body
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_object()
        .unwrap()
        .clone()
}

fn value(m: &serde_json::Map<String, serde_json::Value>, key: &str) -> f64 {
    m.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {:#?}", m.keys().collect::<Vec<_>>()))
        .as_f64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_as_clients_connect_receive_and_leave() {
    let server = ServerProcess::start(&[("WS_BROADCAST_INTERVAL", "0.1")]);
    let before = scrape(&server).await;
    assert_eq!(
        value(&before, r#"marketcast_clients{channel="market"}"#),
        0.0
    );
    assert_eq!(
        value(
            &before,
            r#"marketcast_connections_opened_total{channel="market"}"#
        ),
        0.0
    );

    let mut market = connect(&server.ws_url("/ws/market")).await;
    let mut foreign = connect(&server.ws_url("/ws/foreign")).await;
    for _ in 0..3 {
        next_json(&mut market, Duration::from_secs(10)).await;
        next_json(&mut foreign, Duration::from_secs(10)).await;
    }
    let during = scrape(&server).await;
    assert_eq!(
        value(&during, r#"marketcast_clients{channel="market"}"#),
        1.0
    );
    assert_eq!(
        value(&during, r#"marketcast_clients{channel="foreign"}"#),
        1.0
    );
    assert_eq!(
        value(&during, r#"marketcast_clients{channel="index"}"#),
        0.0
    );
    assert!(
        value(
            &during,
            r#"marketcast_messages_sent_total{channel="market"}"#
        ) >= 3.0
    );
    assert!(value(&during, r#"marketcast_bytes_sent_total{channel="market"}"#) > 3000.0);
    assert!(value(&during, r#"marketcast_snapshot_bytes{channel="market"}"#) > 1000.0);
    assert!(
        value(
            &during,
            r#"marketcast_tick_seconds_count{channel="market"}"#
        ) >= 3.0
    );
    assert!(
        value(
            &during,
            r#"marketcast_encode_seconds_count{channel="foreign"}"#
        ) >= 3.0
    );
    assert!(
        value(
            &during,
            r#"marketcast_feed_events_total{feed="simulator",type="trade"}"#
        ) > 0.0
    );
    assert_eq!(
        value(&during, r#"marketcast_feed_stale{feed="simulator"}"#),
        0.0
    );

    market.close(None).await.unwrap();
    drop(foreign);
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let m = scrape(&server).await;
        if value(&m, r#"marketcast_clients{channel="market"}"#) == 0.0
            && value(&m, r#"marketcast_clients{channel="foreign"}"#) == 0.0
        {
            break m;
        }
        assert!(Instant::now() < deadline, "clients never left the metrics");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        value(
            &after,
            r#"marketcast_connections_closed_total{channel="market",reason="client"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"marketcast_connections_opened_total{channel="foreign"}"#
        ),
        1.0
    );
    // Counters kept what the departed clients were sent.
    assert!(
        value(
            &after,
            r#"marketcast_messages_sent_total{channel="market"}"#
        ) >= value(
            &during,
            r#"marketcast_messages_sent_total{channel="market"}"#
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_reads_only_metrics_the_server_exports() {
    let server = ServerProcess::start(&[("WS_BROADCAST_INTERVAL", "0.1")]);
    let mut ws = connect(&server.ws_url("/ws/market")).await;
    next_json(&mut ws, Duration::from_secs(10)).await;
    // Families, as declared (a family with no sample yet, like feed errors, still counts).
    scrape(&server).await;
    let text = server.get("/metrics").await.body;
    let exported: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let path = format!("{}/docs/grafana-dashboard.json", env!("CARGO_MANIFEST_DIR"));
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut used = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("marketcast_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                used.insert(name);
            }
        }
    }
    assert!(used.len() >= 15, "{used:?}");
    // Only a live feed (SSI) has an upstream link to report.
    let live_feed_only = ["marketcast_feed_connected"];
    for name in &used {
        let family = ["_total", "_bucket"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(
            exported.contains(family) || live_feed_only.contains(&name.as_str()),
            "the dashboard reads {name}, which /metrics does not export"
        );
    }
}
