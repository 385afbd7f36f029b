//! TLS (`TLS_CERT`, `TLS_KEY`): `wss://` and `https://` on the server's one port, with a
//! certificate made at test time, picked up again when its files change.

mod common;

use std::time::{Duration, Instant};

use common::tls::TestCa;
use common::*;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;

fn tls_server(ca: &TestCa, extra: &[(&str, &str)]) -> ServerProcess {
    let cert = ca.issue("server");
    let (c, k) = (
        cert.cert.to_string_lossy().into_owned(),
        cert.key.to_string_lossy().into_owned(),
    );
    let mut env = vec![("TLS_CERT", c.as_str()), ("TLS_KEY", k.as_str())];
    env.extend_from_slice(extra);
    ServerProcess::start(&env)
}

async fn wss(server: &ServerProcess, ca: &TestCa, path: &str) -> Ws {
    let url = format!("wss://localhost:{}{path}", server.addr.port());
    let (ws, resp) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        false,
        Some(Connector::Rustls(ca.client_config())),
    )
    .await
    .expect("wss connect");
    assert_eq!(resp.status(), 101);
    ws
}

/// `GET path` over HTTPS, trusting only the test CA.
async fn https_get(server: &ServerProcess, ca: &TestCa, path: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .use_preconfigured_tls((*ca.client_config()).clone())
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://localhost:{}{path}", server.addr.port()))
        .send()
        .await
        .expect("https request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// The certificate the server presents to a new TLS connection.
async fn presented_cert(server: &ServerProcess, ca: &TestCa) -> Vec<u8> {
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(ca.client_config());
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_and_https_serve_the_market_and_plain_http_gets_nothing() {
    let ca = TestCa::new("serve");
    let server = tls_server(&ca, &[("WS_BROADCAST_INTERVAL", "0.1")]);

    // A compressing client (tungstenite offers no deflate, so a raw one is below) and the
    // REST face over HTTPS.
    let mut ws = wss(&server, &ca, "/ws/market").await;
    let mut seqs = Vec::new();
    while seqs.len() < 5 {
        let (text, v) = next_json(&mut ws, Duration::from_secs(10)).await;
        assert!(v["quotes"].is_object(), "{text:.200}");
        seqs.push(leading_seq(text.as_bytes()));
    }
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");

    let (status, body) = https_get(&server, &ca, "/health").await;
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["clients"], 1, "{health}");
    let (status, body) = https_get(&server, &ca, "/api/market/snapshot").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"quotes\""));

    // Plain HTTP on the TLS port gets no HTTP answer: the TLS layer refuses the bytes and the
    // connection ends.
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut answer))
        .await
        .expect("the server ends a plain connection on a TLS port");
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");

    // The client kept receiving all along.
    let (text, _) = next_json(&mut ws, Duration::from_secs(10)).await;
    assert!(leading_seq(text.as_bytes()) > *seqs.last().unwrap());
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_presented_without_a_restart_and_old_clients_keep_receiving() {
    let ca = TestCa::new("renew");
    let server = tls_server(&ca, &[("WS_BROADCAST_INTERVAL", "0.1")]);
    let first = presented_cert(&server, &ca).await;
    let mut ws = wss(&server, &ca, "/ws/market").await;
    let (text, _) = next_json(&mut ws, Duration::from_secs(10)).await;
    let before = leading_seq(text.as_bytes());

    // Renewed in place, as certbot does: certificate, then key, each renamed over the old.
    let renewed = ca.issue("server");
    assert_ne!(renewed.der.to_vec(), first);
    // The server checks the files every second; 30 s is a guard against a hang.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = presented_cert(&server, &ca).await;
        if now == renewed.der.to_vec() {
            break;
        }
        assert_eq!(
            now, first,
            "presented neither the old nor the new certificate"
        );
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never presented"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server
        .drain_logs()
        .iter()
        .any(|l| l.contains("TLS certificate reloaded")));

    // The connection made under the old certificate is untouched.
    let mut last = before;
    for _ in 0..3 {
        let (text, _) = next_json(&mut ws, Duration::from_secs(10)).await;
        let seq = leading_seq(text.as_bytes());
        assert!(seq > last);
        last = seq;
    }
    // A broken renewal (a key that is not the certificate's) keeps the renewed pair in use.
    let other = ca.issue("other");
    std::fs::copy(&other.key, &renewed.key).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server
        .drain_logs()
        .iter()
        .any(|l| l.contains("TLS certificate not reloaded"))
    {
        assert!(
            Instant::now() < deadline,
            "the broken pair was never reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(presented_cert(&server, &ca).await, renewed.der.to_vec());
    let (text, _) = next_json(&mut ws, Duration::from_secs(10)).await;
    assert!(leading_seq(text.as_bytes()) > last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_that_never_reads_is_closed_4008_and_tls_readers_miss_nothing() {
    // 480 KB snapshots five times a second: a client that does not read fills its socket in
    // a few ticks, and each TLS reader's copy is encrypted for it alone.
    let ca = TestCa::new("slow");
    let large = fixture("snapshot-large.json");
    let server = tls_server(
        &ca,
        &[
            ("FEED", "static"),
            ("SNAPSHOT_FILE", &large),
            ("WS_BROADCAST_INTERVAL", "0.2"),
            ("WS_QUEUE_SIZE", "20"),
            ("WS_SLOW_CLIENT_TIMEOUT", "1"),
            ("WS_COMPRESSION", "false"),
        ],
    );
    let mut readers = Vec::new();
    for _ in 0..5 {
        readers.push(wss(&server, &ca, "/ws/market").await);
    }
    let slow = wss(&server, &ca, "/ws/market").await;
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                while seqs.len() < 12 {
                    let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
                        .await
                        .expect("a message in time")
                        .expect("stream open")
                        .expect("no error");
                    let Message::Text(text) = msg else { continue };
                    assert!(text.len() > 400_000);
                    // The seq is the first key; the rest of 480 KB need not be parsed.
                    let seq: u64 = text
                        .strip_prefix("{\"seq\":")
                        .and_then(|r| r.split(',').next())
                        .and_then(|n| n.parse().ok())
                        .unwrap();
                    seqs.push(seq);
                }
                seqs
            })
        })
        .collect();
    for t in tasks {
        let seqs = t.await.unwrap();
        // Four seconds of queue is slack enough that a reader never loses a tick.
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    }
    // Only the one that never read was closed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = https_get(&server, &ca, "/health").await;
        let h: serde_json::Value = serde_json::from_str(&body).unwrap();
        if h["broadcast"]["slow_client_closes"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow TLS client was never closed: {h}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What it finally reads: the frames it had been sent, then Close 4008 (or, if the
    // close could not get through within its grace, the end of the stream).
    let mut slow = slow;
    let mut code = None;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(10), slow.next()).await {
        match msg {
            Ok(Message::Close(Some(frame))) => {
                code = Some(u16::from(frame.code));
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(code == Some(4008) || code.is_none(), "{code:?}");
}

#[test]
fn tls_settings_are_checked_at_start() {
    let ca = TestCa::new("settings");
    let cert = ca.issue("server");
    let run = |env: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_marketcast"))
            .arg("serve")
            .env("APP_PORT", "0")
            .env("DATA_DIR", ca.dir.join("data"))
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let c = cert.cert.to_str().unwrap();
    let k = cert.key.to_str().unwrap();
    assert!(run(&[("TLS_CERT", c)]).contains("TLS_CERT needs TLS_KEY"));
    assert!(run(&[("TLS_KEY", k)]).contains("TLS_KEY needs TLS_CERT"));
    let err = run(&[("TLS_CERT", k), ("TLS_KEY", k)]);
    assert!(
        err.contains("TLS_CERT") && err.contains("no PEM certificate"),
        "{err}"
    );
    let err = run(&[("TLS_CERT", c), ("TLS_KEY", c)]);
    assert!(err.contains("TLS_KEY"), "{err}");
    let other = ca.issue("other");
    let err = run(&[("TLS_CERT", c), ("TLS_KEY", other.key.to_str().unwrap())]);
    assert!(err.contains("does not belong"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_starts_its_tls_handshake_is_dropped_and_others_are_served() {
    let ca = TestCa::new("silent");
    let server = tls_server(&ca, &[("WS_HANDSHAKE_TIMEOUT", "1")]);
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut ws = wss(&server, &ca, "/ws/market").await;
    let mut buf = [0u8; 16];
    // Dropped after WS_HANDSHAKE_TIMEOUT; 30 s only guards against a hang.
    let n = tokio::time::timeout(Duration::from_secs(30), silent.read(&mut buf))
        .await
        .expect("the silent connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    next_json(&mut ws, Duration::from_secs(10)).await;
}
