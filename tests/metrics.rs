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
