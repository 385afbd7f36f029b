//! Scale-out through Redis (`ROLE=producer` and `edge`), with real processes: a real
//! `redis-server` (see `common::redis_server`), producers and edges started from the binary,
//! and WebSocket clients on each.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

/// A prefix of the test's own, so tests sharing nothing still never share channels.
fn prefix(tag: &str) -> String {
    format!("mc-{tag}-{}", std::process::id())
}

fn producer(redis: &RedisServer, prefix: &str, extra: &[(&str, &str)]) -> ServerProcess {
    let url = redis.url();
    let mut env = vec![
        ("ROLE", "producer"),
        ("REDIS_URL", url.as_str()),
        ("REDIS_CHANNEL_PREFIX", prefix),
        ("WS_BROADCAST_INTERVAL", "0.2"),
        ("HISTORY", "false"),
    ];
    env.extend_from_slice(extra);
    ServerProcess::start(&env)
}

fn edge(redis: &RedisServer, prefix: &str, extra: &[(&str, &str)]) -> ServerProcess {
    let url = redis.url();
    let mut env = vec![
        ("ROLE", "edge"),
        ("REDIS_URL", url.as_str()),
        ("REDIS_CHANNEL_PREFIX", prefix),
        ("HISTORY", "false"),
    ];
    env.extend_from_slice(extra);
    ServerProcess::start(&env)
}

/// The next `n` messages of `path` on `server` as raw frame payloads (compressed when
/// `deflate`), in order, with their seq.
async fn raw_messages(
    server: &ServerProcess,
    path: &str,
    deflate: bool,
    n: usize,
) -> Vec<(u64, Vec<u8>)> {
    let ext = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    } else {
        ""
    };
    let (mut s, head) = raw_connect(server.addr, path, ext).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(deflate, head.contains("permessage-deflate"), "{head}");
    let mut out = Vec::new();
    while out.len() < n {
        let (first, payload) = tokio::time::timeout(Duration::from_secs(30), read_frame(&mut s))
            .await
            .expect("a frame in time")
            .expect("a frame");
        match first {
            0x81 => out.push((leading_seq(&payload), payload)),
            0xC1 => out.push((leading_seq(&inflate(&payload)), payload)),
            0x89 => continue,
            other => panic!("unexpected frame {other:#x}"),
        }
    }
    out
}

fn strictly_increasing(seqs: &[u64]) -> bool {
    seqs.windows(2).all(|w| w[0] < w[1])
}

/// The session's traded volume in a market message: the sum of every quote's `total_volume`.
fn traded_volume(v: &serde_json::Value) -> i64 {
    v["quotes"]
        .as_object()
        .map(|q| {
            q.values()
                .map(|s| s["total_volume"].as_i64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

async fn wait_relaying(node: &ServerProcess) {
    node.wait_health(|h| {
        h["redis"] == "connected" && h["channels"]["market"]["seq"].as_u64() > Some(0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edges_send_the_producers_bytes_for_every_seq() {
    let redis = RedisServer::shared();
    let p = prefix("bytes");
    let producer = producer(&redis, &p, &[]);
    let edges = [edge(&redis, &p, &[]), edge(&redis, &p, &[])];
    for e in &edges {
        wait_relaying(e).await;
    }
    let h = producer
        .wait_health(|h| h["broker"]["leader"] == true)
        .await;
    assert_eq!(h["broker"]["role"], "producer");

    // Plain and compressed clients on every node at once.
    let nodes = [&producer, &edges[0], &edges[1]];
    let mut runs = Vec::new();
    for deflate in [false, true] {
        for node in nodes {
            runs.push(raw_messages(node, "/ws/market", deflate, 12));
        }
    }
    let got = futures_util::future::join_all(runs).await;
    for (i, deflate) in [false, true].into_iter().enumerate() {
        let per_node = &got[i * 3..i * 3 + 3];
        let maps: Vec<BTreeMap<u64, &Vec<u8>>> = per_node
            .iter()
            .map(|msgs| {
                let seqs: Vec<u64> = msgs.iter().map(|(s, _)| *s).collect();
                assert!(strictly_increasing(&seqs), "{seqs:?}");
                msgs.iter().map(|(s, b)| (*s, b)).collect()
            })
            .collect();
        let common: Vec<u64> = maps[0]
            .keys()
            .filter(|s| maps[1].contains_key(s) && maps[2].contains_key(s))
            .copied()
            .collect();
        assert!(
            common.len() >= 5,
            "deflate {deflate}: seqs in common {common:?}"
        );
        for s in &common {
            assert_eq!(maps[1][s], maps[0][s], "edge 1, seq {s}, deflate {deflate}");
            assert_eq!(maps[2][s], maps[0][s], "edge 2, seq {s}, deflate {deflate}");
        }
    }

    // The other channels travel the same way.
    let (prod_index, edge_index) = tokio::join!(
        raw_messages(&producer, "/ws/index", false, 4),
        raw_messages(&edges[0], "/ws/index", false, 4)
    );
    let produced: BTreeMap<u64, Vec<u8>> = prod_index.into_iter().collect();
    let mut same = 0;
    for (seq, bytes) in edge_index {
        if let Some(b) = produced.get(&seq) {
            assert_eq!(b, &bytes, "index seq {seq}");
            same += 1;
        }
    }
    assert!(same >= 2, "index messages in common: {same}");

    // A client connecting to an edge gets the last snapshot at once.
    let mut ws = connect(&edges[1].ws_url("/ws/market")).await;
    let started = Instant::now();
    let (_, first) = next_json(&mut ws, Duration::from_secs(10)).await;
    assert!(first["seq"].as_u64() > Some(0) && first["quotes"].is_object());
    assert!(started.elapsed() < Duration::from_secs(5));

    // The REST routes answer on an edge, from the last snapshot and the producer's state.
    let e = &edges[0];
    let snap = e.get("/api/market/snapshot").await;
    assert_eq!(snap.status, 200);
    assert!(snap.json()["quotes"].is_object());
    for path in [
        "/api/market/foreign-detail",
        "/api/market/volume-stats",
        "/api/market/basis-trend?minutes=120",
        "/api/market/alerts?limit=5",
        "/api/vn30-components",
    ] {
        let (ours, theirs) = (e.get(path).await, producer.get(path).await);
        assert_eq!(
            (ours.status, theirs.status),
            (200, 200),
            "{path}: {}",
            ours.body
        );
        let (ours, theirs) = (ours.json(), theirs.json());
        match (&ours, &theirs) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                assert_eq!(
                    a.keys().collect::<Vec<_>>(),
                    b.keys().collect::<Vec<_>>(),
                    "{path}"
                )
            }
            (serde_json::Value::Array(_), serde_json::Value::Array(_)) => {}
            _ => panic!("{path}: {ours} against {theirs}"),
        }
    }
    assert_eq!(
        e.get("/api/vn30-components").await.json(),
        producer.get("/api/vn30-components").await.json()
    );
    let bad = e.get("/api/market/basis-trend?minutes=0").await;
    assert_eq!(bad.status, 422, "{}", bad.body);

    let metrics = e.get("/metrics").await.body;
    assert!(
        metrics.contains("marketcast_redis_connected{role=\"edge\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("marketcast_redis_gaps_total{role=\"edge\"} 0"),
        "{metrics}"
    );
    let hops = metrics
        .lines()
        .find(|l| l.starts_with("marketcast_redis_hop_seconds_count"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(hops > 0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_stamps_foreign_bodies_and_counts_what_is_not_a_tick() {
    let redis = RedisServer::shared();
    let p = prefix("foreign");
    // Off by default (tests/broker_signing.rs): this edge takes other publishers' bodies.
    let node = edge(&redis, &p, &[("REDIS_ACCEPT_FOREIGN", "true")]);
    node.wait_health(|h| h["redis"] == "connected").await;
    assert_eq!(
        node.get("/api/market/snapshot").await.status,
        503,
        "no tick yet"
    );
    let mut ws = connect(&node.ws_url("/ws/market")).await;
    let conn = redis.connection().await;
    let channel = format!("{p}:market");
    let publish = |body: Vec<u8>| {
        let channel = channel.clone();
        let mut c = conn.clone();
        async move {
            let _: i64 = redis::cmd("PUBLISH")
                .arg(channel)
                .arg(body)
                .query_async(&mut c)
                .await
                .unwrap();
        }
    };
    publish(br#"{"quotes":{}}"#.to_vec()).await;
    let (text, v) = next_json(&mut ws, Duration::from_secs(10)).await;
    assert!(text.starts_with("{\"seq\":1,\"ts\":"), "{text}");
    assert!(v["ts"].as_i64() > Some(0) && v["quotes"].is_object());

    // Not ticks: dropped and counted, nothing reaches the client.
    publish(b"not json".to_vec()).await;
    publish(b"[1,2]".to_vec()).await;
    publish(b"\x00MC\x01 truncated".to_vec()).await;
    // A body that has both keys goes out as it is; seq 7 after 1 is a gap of 5.
    publish(br#"{"seq":7,"ts":5,"x":1}"#.to_vec()).await;
    let (text, _) = next_json(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(text, r#"{"seq":7,"ts":5,"x":1}"#);
    let metrics = node.get("/metrics").await.body;
    for line in [
        "marketcast_redis_malformed_total{role=\"edge\"} 3",
        "marketcast_redis_gaps_total{role=\"edge\"} 1",
        "marketcast_redis_missed_total{role=\"edge\"} 5",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    // The same message again is not sent twice; a lower seq that is newer by its time is a
    // new count (the producers all restarted), which the client gets.
    publish(br#"{"seq":7,"ts":5,"x":1}"#.to_vec()).await;
    publish(br#"{"seq":2,"ts":99999999999999,"y":1}"#.to_vec()).await;
    let (again, _) = next_json(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(again, r#"{"seq":2,"ts":99999999999999,"y":1}"#);
    let text = again;
    // The REST snapshot and a new client get that last message.
    assert_eq!(node.get("/api/market/snapshot").await.body, text);
    let mut late = connect(&node.ws_url("/ws/market")).await;
    assert_eq!(next_json(&mut late, Duration::from_secs(10)).await.0, text);
    drop(conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edges_ride_out_a_redis_restart_and_keep_their_clients() {
    let mut redis = RedisServer::start();
    let p = prefix("restart");
    let producer = producer(&redis, &p, &[]);
    let node = edge(&redis, &p, &[]);
    wait_relaying(&node).await;
    let mut on_edge = connect(&node.ws_url("/ws/market")).await;
    let mut on_producer = connect(&producer.ws_url("/ws/market")).await;
    let mut edge_seqs = Vec::new();
    for _ in 0..3 {
        edge_seqs.push(
            next_json(&mut on_edge, Duration::from_secs(10)).await.1["seq"]
                .as_u64()
                .unwrap(),
        );
    }

    redis.stop();
    node.wait_health(|h| h["redis"] == "unavailable").await;
    producer.wait_health(|h| h["redis"] == "unavailable").await;
    // The producer's own clients carry on; the edge's stay connected and hear nothing.
    let mut producer_seqs = Vec::new();
    for _ in 0..5 {
        producer_seqs.push(
            next_json(&mut on_producer, Duration::from_secs(10)).await.1["seq"]
                .as_u64()
                .unwrap(),
        );
    }
    assert!(strictly_increasing(&producer_seqs), "{producer_seqs:?}");
    while let Ok(msg) = tokio::time::timeout(Duration::from_millis(300), on_edge.next()).await {
        match msg {
            Some(Ok(Message::Text(t))) => edge_seqs.push(leading_seq(t.as_bytes())),
            Some(Ok(Message::Ping(_))) => {}
            other => panic!("the edge's client must stay connected, got {other:?}"),
        }
    }
    let h = node.get("/health").await.json();
    assert_eq!(h["clients"], 1, "{h}");
    assert!(h["broker"]["error"].is_string(), "{h}");
    assert_eq!(
        node.get("/api/market/snapshot").await.status,
        200,
        "the last snapshot is still served"
    );

    redis.restart();
    let before = *edge_seqs.last().unwrap();
    let resumed = Instant::now();
    loop {
        let (_, v) = next_json(&mut on_edge, Duration::from_secs(30)).await;
        let seq = v["seq"].as_u64().unwrap();
        edge_seqs.push(seq);
        if seq > before {
            break;
        }
    }
    println!(
        "the edge's client got a tick {:?} after Redis came back",
        resumed.elapsed()
    );
    assert!(strictly_increasing(&edge_seqs), "{edge_seqs:?}");
    let h = node
        .wait_health(|h| h["redis"] == "connected" && h["broker"]["reconnects"].as_u64() >= Some(1))
        .await;
    assert_eq!(h["clients"], 1, "{h}");
    producer
        .wait_health(|h| h["broker"]["leader"] == true)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_takes_over_when_the_leader_is_killed() {
    const TOKEN: &str = "feed-token";
    let redis = RedisServer::shared();
    let p = prefix("failover");
    let settings = [
        ("FEED", "ingest"),
        ("INGEST_TOKEN", TOKEN),
        ("REDIS_LEASE_MS", "1000"),
    ];
    let leader = producer(&redis, &p, &settings);
    leader.wait_health(|h| h["broker"]["leader"] == true).await;
    let standby = producer(&redis, &p, &settings);
    standby
        .wait_health(|h| h["redis"] == "connected" && h["broker"]["leader"] == false)
        .await;
    let node = edge(&redis, &p, &[]);
    node.wait_health(|h| h["redis"] == "connected").await;

    // Both producers get the same feed, as two nodes on one SSI account would.
    let lines = simulated_day(6000, 11);
    let chunks: Vec<String> = lines
        .chunks(200)
        .map(|c| {
            c.iter()
                .map(|l| envelope_of(l))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    let mut ws = connect(&node.ws_url("/ws/market")).await;
    let mut seen: Vec<(u64, i64, Instant)> = Vec::new();
    let mut killed_at = None;
    let mut leader = Some(leader);
    for (i, chunk) in chunks.iter().enumerate() {
        if let Some(l) = &leader {
            assert_eq!(post_ingest(l, TOKEN, chunk).await.status, 200);
        }
        assert_eq!(post_ingest(&standby, TOKEN, chunk).await.status, 200);
        if i == chunks.len() / 2 {
            // Hard: no lease handed over, no goodbye.
            let mut l = leader.take().unwrap();
            let status = std::process::Command::new("kill")
                .args(["-9", &l.pid().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            l.wait_exit(Duration::from_secs(10))
                .expect("the leader died");
            killed_at = Some(Instant::now());
        }
        // Read what arrived meanwhile.
        while let Ok(Some(Ok(msg))) =
            tokio::time::timeout(Duration::from_millis(100), ws.next()).await
        {
            if let Message::Text(t) = msg {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                seen.push((
                    v["seq"].as_u64().unwrap(),
                    traded_volume(&v),
                    Instant::now(),
                ));
            }
        }
    }
    // Then until the standby's ticks carry the whole feed.
    let expected = traded_volume(&standby.get("/api/market/snapshot").await.json());
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.last().map(|s| s.1) != Some(expected) {
        assert!(
            Instant::now() < deadline,
            "the edge never showed the whole session"
        );
        let (_, v) = next_json(&mut ws, Duration::from_secs(30)).await;
        seen.push((
            v["seq"].as_u64().unwrap(),
            traded_volume(&v),
            Instant::now(),
        ));
    }
    let killed_at = killed_at.unwrap();
    let seqs: Vec<u64> = seen.iter().map(|s| s.0).collect();
    assert!(
        strictly_increasing(&seqs),
        "seq never goes back nor repeats: {seqs:?}"
    );
    let volumes: Vec<i64> = seen.iter().map(|s| s.1).collect();
    assert!(
        volumes.windows(2).all(|w| w[0] <= w[1]),
        "the totals carry on: {volumes:?}"
    );
    let before = seen.iter().filter(|s| s.2 < killed_at).count();
    assert!(before >= 3, "ticks from the first leader: {before}");
    let first_after = seen
        .iter()
        .find(|s| s.2 > killed_at)
        .expect("ticks after the failover");
    let took = first_after.2 - killed_at;
    println!("first tick from the standby {took:?} after the kill (lease 1 s)");
    // The stated bound is the lease plus a third of it; the test allows for a busy machine.
    assert!(took < Duration::from_secs(10), "failover took {took:?}");
    let h = standby.wait_health(|h| h["broker"]["leader"] == true).await;
    assert_eq!(h["broker"]["takeovers"], 1, "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_with_a_password_and_with_tls() {
    // A password: right, and wrong (refused, said so, never shown).
    let redis = RedisServer::with_password("s3cret-pw");
    let p = prefix("auth");
    let _producer = producer(&redis, &p, &[]);
    let node = edge(&redis, &p, &[]);
    wait_relaying(&node).await;
    let mut ws = connect(&node.ws_url("/ws/market")).await;
    assert!(next_json(&mut ws, Duration::from_secs(10)).await.1["quotes"].is_object());
    let wrong = format!("redis://:not-the-pw-77@127.0.0.1:{}", redis.port);
    let refused = ServerProcess::start(&[
        ("ROLE", "edge"),
        ("REDIS_URL", wrong.as_str()),
        ("REDIS_CHANNEL_PREFIX", p.as_str()),
        ("HISTORY", "false"),
    ]);
    let h = refused
        .wait_health(|h| h["broker"]["error"].is_string())
        .await;
    assert_eq!(h["redis"], "unavailable");
    let said = h["broker"]["error"].as_str().unwrap().to_lowercase();
    assert!(
        said.contains("wrongpass") || said.contains("auth"),
        "{said}"
    );
    let logs = refused.drain_logs().join("\n");
    assert!(
        !logs.contains("not-the-pw-77") && !h.to_string().contains("not-the-pw-77"),
        "{logs}"
    );

    // TLS, with a CA of the test's own.
    let ca = TestCaFiles::new();
    let redis = RedisServer::with_tls(&ca.cert, &ca.key, &ca.ca, "tls-pw");
    let p = prefix("tls");
    let ca_file = [("REDIS_CA_FILE", ca.ca.as_str())];
    let _producer = producer(&redis, &p, &ca_file);
    let node = edge(&redis, &p, &ca_file);
    wait_relaying(&node).await;
    let mut ws = connect(&node.ws_url("/ws/market")).await;
    let (text, _) = next_json(&mut ws, Duration::from_secs(10)).await;
    assert!(text.starts_with("{\"seq\":"));
    assert!(redis.url().starts_with("rediss://"));
    // A CA that did not sign Redis's certificate: refused, and said so.
    let other = tls::TestCa::new("redis-other");
    let other_ca = other.ca_file().display().to_string();
    let url = redis.url();
    let untrusting = ServerProcess::start(&[
        ("ROLE", "edge"),
        ("REDIS_URL", url.as_str()),
        ("REDIS_CHANNEL_PREFIX", p.as_str()),
        ("REDIS_CA_FILE", other_ca.as_str()),
        ("HISTORY", "false"),
    ]);
    let h = untrusting
        .wait_health(|h| h["broker"]["error"].is_string())
        .await;
    assert_eq!(h["redis"], "unavailable", "{h}");
    let said = h["broker"]["error"].as_str().unwrap().to_lowercase();
    assert!(
        said.contains("certificate") || said.contains("issuer"),
        "{said}"
    );
}

/// Sends a signal to a process.
fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Reads whatever `ws` gets for `wait`, appending the seqs to `seqs`.
async fn read_for(ws: &mut Ws, wait: Duration, seqs: &mut Vec<u64>) {
    let until = Instant::now() + wait;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => seqs.push(leading_seq(t.as_bytes())),
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("the client must stay connected, got {other:?}"),
            Err(_) => return,
        }
    }
}

/// A leader, a standby (1 s lease), an edge relaying, and a client on the edge that read a
/// second of ticks.
async fn leader_standby_edge(
    redis: &RedisServer,
    p: &str,
) -> (ServerProcess, ServerProcess, ServerProcess, Ws, Vec<u64>) {
    let lease = [("REDIS_LEASE_MS", "1000")];
    let leader = producer(redis, p, &lease);
    leader.wait_health(|h| h["broker"]["leader"] == true).await;
    let standby = producer(redis, p, &lease);
    standby.wait_health(|h| h["redis"] == "connected").await;
    let node = edge(redis, p, &[]);
    wait_relaying(&node).await;
    let mut ws = connect(&node.ws_url("/ws/market")).await;
    let mut seqs = Vec::new();
    read_for(&mut ws, Duration::from_secs(1), &mut seqs).await;
    (leader, standby, node, ws, seqs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_paused_past_its_lease_stands_down_and_publishes_nothing_stale() {
    let redis = RedisServer::shared();
    let p = prefix("paused");
    let (leader, standby, _edge, mut ws, mut seqs) = leader_standby_edge(&redis, &p).await;

    // Frozen (a long GC pause, a VM migration) while its ticks wait in its queue.
    signal(leader.pid(), "-STOP");
    standby.wait_health(|h| h["broker"]["leader"] == true).await;
    read_for(&mut ws, Duration::from_millis(500), &mut seqs).await;
    signal(leader.pid(), "-CONT");
    let h = leader.wait_health(|h| h["broker"]["leader"] == false).await;
    read_for(&mut ws, Duration::from_secs(2), &mut seqs).await;
    assert!(seqs.len() >= 8, "{seqs:?}");
    assert!(
        strictly_increasing(&seqs),
        "no stale tick after the pause: {seqs:?}"
    );
    assert_eq!(h["broker"]["takeovers"], 1, "{h}");
    let h = standby.get("/health").await.json();
    assert_eq!(
        h["broker"]["leader"], true,
        "the standby keeps the lease: {h}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_taking_over_an_empty_redis_carries_seq_on() {
    let mut redis = RedisServer::start();
    let p = prefix("empty");
    let (mut leader, standby, node, mut ws, mut seqs) = leader_standby_edge(&redis, &p).await;
    let before = seqs.len();

    // The leader dies and Redis comes back empty: no lease, no record of any seq.
    signal(leader.pid(), "-9");
    leader.wait_exit(Duration::from_secs(10)).expect("killed");
    redis.restart();
    standby.wait_health(|h| h["broker"]["leader"] == true).await;
    node.wait_health(|h| h["redis"] == "connected").await;
    read_for(&mut ws, Duration::from_secs(2), &mut seqs).await;
    assert!(
        seqs.len() > before + 3,
        "ticks from the new leader: {seqs:?}"
    );
    assert!(strictly_increasing(&seqs), "seq carries on: {seqs:?}");
}

/// A CA and a server certificate for `127.0.0.1`, as file paths.
struct TestCaFiles {
    _ca: tls::TestCa,
    ca: String,
    cert: String,
    key: String,
}

impl TestCaFiles {
    fn new() -> TestCaFiles {
        let ca = tls::TestCa::new("redis");
        let server = ca.issue("redis");
        TestCaFiles {
            ca: ca.ca_file().display().to_string(),
            cert: server.cert.display().to_string(),
            key: server.key.display().to_string(),
            _ca: ca,
        }
    }
}

#[test]
fn roles_without_redis_say_what_they_need() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_marketcast"))
        .args(["serve"])
        .env("ROLE", "edge")
        .env("APP_PORT", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ROLE=edge needs REDIS_URL"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_marketcast"))
        .args(["serve"])
        .env("ROLE", "producer")
        .env("REDIS_URL", "http://127.0.0.1:6379")
        .env("APP_PORT", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("REDIS_URL is not a Redis URL"), "{err}");
}
