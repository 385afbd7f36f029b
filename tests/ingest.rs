//! The ingest endpoints against the real server: good batches, mixed good and bad lines,
//! oversized bodies, missing and wrong tokens, and a WebSocket bridge that disconnects
//! mid-stream.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "ingest-s3cret";

fn ingest_server(extra: &[(&str, &str)]) -> ServerProcess {
    let mut env = vec![("FEED", "ingest"), ("INGEST_TOKEN", TOKEN)];
    env.extend_from_slice(extra);
    ServerProcess::start(&env)
}

async fn post(server: &ServerProcess, path: &str, auth: Option<&str>, body: &str) -> HttpResponse {
    let header;
    let mut headers = vec![("Content-Type", "application/x-ndjson")];
    if let Some(token) = auth {
        header = format!("Bearer {token}");
        headers.push(("Authorization", header.as_str()));
    }
    http_request(server.addr, "POST", path, &headers, body.as_bytes()).await
}

async fn ingest_messages(server: &ServerProcess) -> u64 {
    let h = server.get("/health").await.json();
    h["ingest"]["messages"]["messages"].as_u64().unwrap()
}

#[tokio::test]
async fn a_good_batch_is_applied_and_counted() {
    let server = ingest_server(&[]);
    let lines = simulated_day(500, 3);
    let r = post(&server, "/api/ingest", Some(TOKEN), &lines.join("\n")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["received"], 500);
    assert_eq!(v["rejected"], 0);
    assert_eq!(
        v["applied"].as_u64().unwrap() + v["skipped"].as_u64().unwrap(),
        500
    );
    assert!(v["applied"].as_u64().unwrap() > 400, "{v}");
    let snap = server.get("/api/market/snapshot").await.json();
    assert!(
        snap["quotes"].as_object().unwrap().len() > 10,
        "the session is built from the batch"
    );
    let h = server.get("/health").await.json();
    assert_eq!(h["feed"]["kind"], "ingest");
    assert_eq!(h["ingest"]["messages"]["messages"], 500);
    assert_eq!(h["ingest"]["endpoints"]["batches"], 1);
    let m = server.get("/metrics").await.body;
    assert!(m.contains("marketcast_ingest_messages_total 500"), "{m}");
}

#[tokio::test]
async fn bad_lines_get_their_own_results_and_good_lines_go_through() {
    let server = ingest_server(&[]);
    let good = simulated_day(3, 4);
    let bad_field = r#"{"DataType":"X-TRADE","Content":"{\"RType\":\"X-TRADE\",\"Symbol\":\"FPT\",\"LastPrice\":\"lots\",\"LastVol\":100}"}"#;
    let body = [
        good[0].as_str(),
        "{not json",
        good[1].as_str(),
        bad_field,
        "",
        good[2].as_str(),
    ]
    .join("\n");
    let r = post(&server, "/api/ingest", Some(TOKEN), &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["received"], 5);
    assert_eq!(v["rejected"], 2);
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["line"], 2);
    assert!(errors[0]["field"].is_null());
    assert!(errors[0]["reason"].as_str().unwrap().contains("JSON"));
    assert_eq!(errors[1]["line"], 4);
    assert_eq!(errors[1]["field"], "LastPrice");
    assert_eq!(ingest_messages(&server).await, 5);
    let h = server.get("/health").await.json();
    assert_eq!(h["ingest"]["messages"]["malformed"], 2);
    assert!(h["ingest"]["messages"]["last_error"]
        .as_str()
        .unwrap()
        .contains("line 4"));
}

#[tokio::test]
async fn oversized_bodies_and_messages_are_refused() {
    let server = ingest_server(&[
        ("INGEST_MAX_BODY_SIZE", "4096"),
        ("INGEST_MAX_MESSAGE_SIZE", "1024"),
    ]);
    let line = simulated_day(1, 5).remove(0);
    let big = vec![line.as_str(); 40].join("\n");
    assert!(big.len() > 4096);
    let r = post(&server, "/api/ingest", Some(TOKEN), &big).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("INGEST_MAX_BODY_SIZE"));
    // One oversized line in a body that fits: only that line is refused.
    let long_line = format!(
        r#"{{"DataType":"X-TRADE","Content":"{{\"RType\":\"X-TRADE\",\"Symbol\":\"FPT\",\"Pad\":\"{}\"}}"}}"#,
        "x".repeat(1500)
    );
    let body = format!("{line}\n{long_line}\n{line}");
    let r = post(&server, "/api/ingest", Some(TOKEN), &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        (v["received"].as_u64(), v["rejected"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(v["errors"][0]["line"], 2);
    assert!(v["errors"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("INGEST_MAX_MESSAGE_SIZE"));
    let h = server.get("/health").await.json();
    assert_eq!(h["ingest"]["endpoints"]["rejected_too_large"], 1);
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_refused_and_no_token_means_off() {
    let server = ingest_server(&[]);
    let line = simulated_day(1, 6).remove(0);
    for auth in [None, Some("wrong")] {
        let r = post(&server, "/api/ingest", auth, &line).await;
        assert_eq!(r.status, 401, "{auth:?}: {}", r.body);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    let r = post(&server, &format!("/api/ingest?token={TOKEN}"), None, &line).await;
    assert_eq!(r.status, 200, "?token= works too: {}", r.body);
    let h = server.get("/health").await.json();
    assert_eq!(h["ingest"]["endpoints"]["rejected_unauthorized"], 2);
    assert_eq!(
        h["ingest"]["messages"]["messages"], 1,
        "refused bodies are not read"
    );
    // The WebSocket is refused before the upgrade.
    let refused = tokio_tungstenite::connect_async(server.ws_url("/ws/ingest")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 401)
        }
        other => panic!("expected 401, got {other:?}"),
    }

    // Without INGEST_TOKEN the endpoints do not exist (and FEED=ingest cannot start).
    let plain = ServerProcess::start(&[]);
    let r = post(&plain, "/api/ingest", Some(TOKEN), &line).await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("INGEST_TOKEN"));
}

async fn ingest_ws(server: &ServerProcess) -> Ws {
    let mut req = server.ws_url("/ws/ingest").into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    ws
}

#[tokio::test]
async fn a_websocket_bridge_streams_answers_and_survives_a_disconnect() {
    let server = ingest_server(&[]);
    let lines = simulated_day(1000, 7);
    let mut ws = ingest_ws(&server).await;
    // One message per frame, then several lines in one frame.
    for line in &lines[..300] {
        ws.send(Message::text(line.clone())).await.unwrap();
    }
    ws.send(Message::text(lines[300..400].join("\n")))
        .await
        .unwrap();
    // A bad message is answered with its number on this connection; a ping with a pong.
    ws.send(Message::text("garbage")).await.unwrap();
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    let mut got_error = None;
    let mut got_pong = false;
    while got_error.is_none() || !got_pong {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer")
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        match v["type"].as_str() {
            Some("error") => got_error = Some(v),
            Some("pong") => got_pong = true,
            other => panic!("unexpected answer {other:?}: {v}"),
        }
    }
    let error = got_error.unwrap();
    assert_eq!(error["line"], 401, "{error}");
    assert!(error["reason"].as_str().unwrap().contains("JSON"));
    server
        .wait_health(|h| h["ingest"]["messages"]["messages"].as_u64() >= Some(401))
        .await;
    assert_eq!(
        ingest_messages(&server).await,
        401,
        "no message counted twice"
    );

    // The bridge vanishes mid-stream without a close; what it sent was applied, nothing else.
    for line in &lines[400..600] {
        ws.send(Message::text(line.clone())).await.unwrap();
    }
    drop(ws);
    server
        .wait_health(|h| h["ingest"]["messages"]["messages"].as_u64() >= Some(601))
        .await;
    assert_eq!(
        ingest_messages(&server).await,
        601,
        "no message counted twice"
    );
    // A new bridge carries on.
    let mut ws = ingest_ws(&server).await;
    for line in &lines[600..] {
        ws.send(Message::text(line.clone())).await.unwrap();
    }
    server
        .wait_health(|h| h["ingest"]["messages"]["messages"].as_u64() >= Some(1001))
        .await;
    assert_eq!(
        ingest_messages(&server).await,
        1001,
        "no message counted twice"
    );
    // Binary frames are refused with 1003; the server keeps running.
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                assert_eq!(frame.code, CloseCode::Unsupported);
                break;
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
    let h = server.get("/health").await.json();
    assert_eq!(h["ingest"]["endpoints"]["websocket_connections"], 2);
    assert_eq!(h["status"], "ok");
}

#[tokio::test]
async fn ingest_runs_beside_another_feed_with_its_own_counts() {
    let server = ServerProcess::start(&[("INGEST_TOKEN", TOKEN)]);
    let lines = simulated_day(10, 8);
    let r = post(&server, "/api/ingest", Some(TOKEN), &lines.join("\n")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let h = server.get("/health").await.json();
    assert_eq!(h["feed"]["kind"], "simulator");
    assert_eq!(h["ingest"]["messages"]["kind"], "ingest");
    assert_eq!(h["ingest"]["messages"]["messages"], 10);
}

#[tokio::test]
async fn a_silent_bridge_is_pinged_then_closed() {
    let server = ingest_server(&[("WS_HEARTBEAT_INTERVAL", "0.5")]);
    let mut ws = ingest_ws(&server).await;
    // Read nothing (so the Ping goes unanswered) for three heartbeat intervals.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut pinged = false;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pinged = true,
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| f.code),
            other => panic!("expected a ping and a close, got {other:?}"),
        }
    };
    assert!(pinged);
    assert_eq!(code, Some(CloseCode::Error));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_is_applied_whole_while_rest_requests_are_answered() {
    // A stopped clock, so the reference below gives the same snapshot byte for byte.
    let big = [
        ("INGEST_MAX_BODY_SIZE", "134217728"),
        ("CLOCK_FIXED_AT", "2026-11-26T14:00:00+07:00"),
    ];
    let server = ingest_server(&big);
    let lines = simulated_day(40_000, 8);
    let body = lines.join("\n");
    let posting = post(&server, "/api/ingest", Some(TOKEN), &body);
    tokio::pin!(posting);
    // Snapshot requests go on for as long as the batch is being applied.
    let mut answered = 0;
    let result = loop {
        tokio::select! {
            r = &mut posting => break r,
            r = server.get("/api/market/snapshot") => {
                assert_eq!(r.status, 200, "{}", r.body);
                assert!(r.json()["quotes"].is_object());
                answered += 1;
            }
        }
    };
    assert_eq!(result.status, 200, "{}", result.body);
    let v = result.json();
    assert_eq!(v["received"], 40_000, "{v}");
    assert_eq!(v["rejected"], 0, "{v}");
    assert_eq!(
        v["applied"].as_u64().unwrap() + v["skipped"].as_u64().unwrap(),
        40_000
    );
    // A 40,000-line batch takes far longer to upload and apply than a shared snapshot takes to
    // serve: requests were answered meanwhile, not held until the batch was done.
    assert!(
        answered >= 1,
        "no snapshot request answered while the batch was applied"
    );
    println!("{answered} snapshot requests answered while the batch was applied");
    // Everything is in the snapshot as soon as the POST has answered.
    let h = server.get("/health").await.json();
    assert_eq!(h["ingest"]["messages"]["messages"], 40_000, "{h}");
    let snap = server.get("/api/market/snapshot").await.json();
    let traded: i64 = snap["quotes"]
        .as_object()
        .unwrap()
        .values()
        .map(|q| q["total_volume"].as_i64().unwrap())
        .sum();
    // The same batch into a fresh server in one go, as a reference: the same session.
    let reference = ingest_server(&big);
    assert_eq!(
        post(&reference, "/api/ingest", Some(TOKEN), &body)
            .await
            .status,
        200
    );
    let expected = reference.get("/api/market/snapshot").await.json();
    let expected_traded: i64 = expected["quotes"]
        .as_object()
        .unwrap()
        .values()
        .map(|q| q["total_volume"].as_i64().unwrap())
        .sum();
    assert!(traded > 0);
    assert_eq!(traded, expected_traded);
    assert_eq!(snap, expected, "the batch applied in chunks, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_past_the_concurrency_limit_get_429_with_retry_after() {
    use tokio::io::AsyncWriteExt;
    let server = ingest_server(&[("INGEST_MAX_CONCURRENT", "1")]);
    let good = simulated_day(50, 9).join("\n");
    // A POST that sends its head and half its body, and holds the one turn while it waits.
    let mut held = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (first, rest) = good.as_bytes().split_at(good.len() / 2);
    let head = format!(
        "POST /api/ingest HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        good.len()
    );
    held.write_all(head.as_bytes()).await.unwrap();
    held.write_all(first).await.unwrap();
    // Once the held request has its turn, another POST is refused at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let r = post(&server, "/api/ingest", Some(TOKEN), "").await;
        if r.status == 429 {
            break r;
        }
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(std::time::Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(
        refused.body.contains("INGEST_MAX_CONCURRENT"),
        "{}",
        refused.body
    );
    // The held request, finished, is applied; then the next one has a turn again.
    held.write_all(rest).await.unwrap();
    let mut answer = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut held, &mut answer)
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"received\":50"), "{answer}");
    let again = post(&server, "/api/ingest", Some(TOKEN), &good).await;
    assert_eq!(again.status, 200, "{}", again.body);
    let h = server.get("/health").await.json();
    assert!(
        h["ingest"]["endpoints"]["rejected_busy"].as_u64() >= Some(1),
        "{h}"
    );
    let m = server.get("/metrics").await.body;
    assert!(m.contains("reason=\"busy\"}"), "{m}");
}
