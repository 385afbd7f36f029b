//! The broker is not a door: what someone who can write to Redis can and cannot make an edge
//! send (`REDIS_SIGNING_KEY`, `REDIS_ACCEPT_FOREIGN`, the `seq` window and the new count after
//! ticks keep arriving below a `seq` published ahead, signed copies put back in Redis), and the
//! README's ACL example, against a real `redis-server`, real producers and edges, and WebSocket
//! clients.

mod common;

use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::*;
use marketcast::base::Secret;
use marketcast::bridge::envelope::{self, Envelope, Incoming};
use marketcast::bridge::signing::{self, Document, SigningKey};
use marketcast::bridge::{MAX_SIGNED_AGE, TAKEOVER_SKEW};

const KEY: &str = "a-deployment-wide-signing-key-of-some-length";

fn prefix(tag: &str) -> String {
    format!("mc-sig-{tag}-{}", std::process::id())
}

fn node(role: &str, url: &str, prefix: &str, extra: &[(&str, &str)]) -> ServerProcess {
    let mut env = vec![
        ("ROLE", role),
        ("REDIS_URL", url),
        ("REDIS_CHANNEL_PREFIX", prefix),
        ("WS_BROADCAST_INTERVAL", "0.2"),
        ("HISTORY", "false"),
    ];
    env.extend_from_slice(extra);
    ServerProcess::start(&env)
}

async fn publish(conn: &redis::aio::MultiplexedConnection, channel: &str, body: Vec<u8>) {
    let mut c = conn.clone();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(body)
        .query_async(&mut c)
        .await
        .unwrap();
}

/// The producer's epoch and the market channel's last published `seq`, as Redis has them.
async fn epoch_and_seq(conn: &redis::aio::MultiplexedConnection, prefix: &str) -> (u64, u64) {
    let mut c = conn.clone();
    let epoch: u64 = redis::cmd("GET")
        .arg(format!("{prefix}:epoch"))
        .query_async(&mut c)
        .await
        .unwrap();
    let seq: u64 = redis::cmd("HGET")
        .arg(format!("{prefix}:seq"))
        .arg("market")
        .query_async(&mut c)
        .await
        .unwrap();
    (epoch, seq)
}

/// A market envelope with `marker` in its message, numbered right after the producer's last.
fn envelope_after(epoch: u64, seq: u64, marker: &str) -> (Vec<u8>, u64) {
    let seq = seq + 1;
    let payload = format!(r#"{{"seq":{seq},"ts":1,"{marker}":true}}"#);
    let bytes = Envelope {
        epoch,
        seq,
        ts_ms: 1,
        payload: payload.as_bytes(),
        deflated: None,
        seal: None,
    };
    (bytes.encode(), seq)
}

/// Reads `ws` until a message numbered above `seq` arrives; returns every text read.
async fn read_past(ws: &mut Ws, seq: u64) -> Vec<String> {
    let mut texts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no tick past {seq}: {texts:?}");
        let (text, v) = next_json(ws, Duration::from_secs(30)).await;
        let s = v["seq"].as_u64();
        texts.push(text);
        if s > Some(seq) {
            return texts;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_only_the_producers_signed_ticks_reach_clients() {
    let redis = RedisServer::shared();
    let p = prefix("key");
    let url = redis.url();
    let key = [("REDIS_SIGNING_KEY", KEY)];
    let producer = node("producer", &url, &p, &key);
    let edge = node("edge", &url, &p, &key);
    edge.wait_health(|h| {
        h["redis"] == "connected" && h["channels"]["market"]["seq"].as_u64() > Some(0)
    })
    .await;
    producer
        .wait_health(|h| h["broker"]["leader"] == true)
        .await;
    let mut ws = connect(&edge.ws_url("/ws/market")).await;
    let (_, first) = next_json(&mut ws, Duration::from_secs(10)).await;
    assert!(
        first["quotes"].is_object(),
        "the signed producer's ticks flow"
    );

    let conn = redis.connection().await;
    let channel = format!("{p}:market");
    let (epoch, seq) = epoch_and_seq(&conn, &p).await;
    // Signed, but with another key: forged.
    let other =
        SigningKey::new(&Secret::from("not-the-deployment-key-at-all".to_string())).unwrap();
    let payload = format!(r#"{{"seq":{},"ts":1,"forged":true}}"#, seq + 1);
    let forged = Envelope {
        epoch,
        seq: seq + 1,
        ts_ms: 1,
        payload: payload.as_bytes(),
        deflated: None,
        seal: None,
    }
    .encode_signed(&other, &channel);
    publish(&conn, &channel, forged).await;
    // The producer's own last envelope with one byte of its message changed: forged too.
    let mut c = conn.clone();
    let last: Vec<u8> = redis::cmd("GET")
        .arg(format!("{p}:last:market"))
        .query_async(&mut c)
        .await
        .unwrap();
    let mut tampered = last.clone();
    let at = tampered.len() - 2;
    tampered[at] ^= 1; // always a change, whatever the byte was
    publish(&conn, &channel, tampered).await;
    // Unsigned: an envelope without a tag, and a bare JSON body.
    let (unsigned, _) = envelope_after(epoch, seq + 1, "unsigned");
    publish(&conn, &channel, unsigned).await;
    publish(&conn, &channel, br#"{"seq":999999,"bare":true}"#.to_vec()).await;

    let h = edge
        .wait_health(|h| {
            h["broker"]["forged"].as_u64() >= Some(2) && h["broker"]["unsigned"].as_u64() >= Some(2)
        })
        .await;
    assert_eq!(h["broker"]["forged"], 2, "{h}");
    assert_eq!(h["broker"]["unsigned"], 2, "{h}");
    // Every message the client got up to the producer's next ticks is the producer's own.
    let after = edge.get("/health").await.json()["channels"]["market"]["seq"]
        .as_u64()
        .unwrap();
    for text in read_past(&mut ws, after + 1).await {
        for marker in ["forged", "unsigned", "bare"] {
            assert!(
                !text.contains(&format!("\"{marker}\"")),
                "{marker} got through: {text}"
            );
        }
        assert!(text.contains("\"quotes\""), "{text}");
    }
    let metrics = edge.get("/metrics").await.body;
    for line in [
        "marketcast_redis_forged_total{role=\"edge\"} 2",
        "marketcast_redis_unsigned_total{role=\"edge\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    // The REST routes answer from the producer's signed state.
    let vn30 = edge.get("/api/vn30-components").await;
    assert_eq!(vn30.status, 200, "{}", vn30.body);
    assert_eq!(
        vn30.json(),
        producer.get("/api/vn30-components").await.json()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_an_unsigned_state_document_is_not_served() {
    let redis = RedisServer::shared();
    let p = prefix("state");
    let conn = redis.connection().await;
    let mut c = conn.clone();
    let _: () = redis::cmd("SET")
        .arg(format!("{p}:state"))
        .arg(r#"{"vn30":["HACKED"]}"#)
        .query_async(&mut c)
        .await
        .unwrap();
    let edge = node("edge", &redis.url(), &p, &[("REDIS_SIGNING_KEY", KEY)]);
    edge.wait_health(|h| h["redis"] == "connected").await;
    let r = edge.get("/api/vn30-components").await;
    assert_eq!(r.status, 503, "no state the producer signed: {}", r.body);
    assert!(!r.body.contains("HACKED"));
    // A bare document has no tag at all: unsigned, as the README says.
    let h = edge
        .wait_health(|h| h["broker"]["unsigned"].as_u64() >= Some(1))
        .await;
    assert_eq!(h["broker"]["forged"], 0, "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seq_far_ahead_does_not_freeze_an_edge() {
    let redis = RedisServer::shared();
    let p = prefix("freeze");
    let url = redis.url();
    let _producer = node("producer", &url, &p, &[]);
    // One edge as shipped, one that also takes other publishers' bodies.
    let edges = [
        node("edge", &url, &p, &[]),
        node("edge", &url, &p, &[("REDIS_ACCEPT_FOREIGN", "true")]),
    ];
    for e in &edges {
        e.wait_health(|h| h["channels"]["market"]["seq"].as_u64() > Some(0))
            .await;
    }
    let mut clients = Vec::new();
    for e in &edges {
        let mut ws = connect(&e.ws_url("/ws/market")).await;
        next_json(&mut ws, Duration::from_secs(10)).await;
        clients.push(ws);
    }
    let conn = redis.connection().await;
    let channel = format!("{p}:market");
    let (epoch, _) = epoch_and_seq(&conn, &p).await;
    // An envelope with the producer's epoch and the highest seq there is, and the body of the
    // issue.
    let wall = Envelope {
        epoch,
        seq: u64::MAX,
        ts_ms: 1,
        payload: br#"{"seq":18446744073709551615,"ts":1}"#,
        deflated: None,
        seal: None,
    }
    .encode();
    publish(&conn, &channel, wall).await;
    publish(&conn, &channel, br#"{"seq":18446744073709551615}"#.to_vec()).await;
    edges[0]
        .wait_health(|h| h["broker"]["foreign"].as_u64() >= Some(1))
        .await;
    // Both edges' clients go on getting the producer's ticks (numbered far below the wall).
    for (e, ws) in edges.iter().zip(clients.iter_mut()) {
        let (_, seq) = epoch_and_seq(&conn, &p).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "the edge stayed frozen");
            let (_, v) = next_json(ws, Duration::from_secs(30)).await;
            let s = v["seq"].as_u64().unwrap();
            if s > seq && s < u64::MAX && v["quotes"].is_object() {
                break;
            }
        }
        let h = e.get("/health").await.json();
        let relayed = h["channels"]["market"]["seq"].as_u64().unwrap();
        assert!(relayed < u64::MAX, "{h}");
    }
    let h = edges[0].get("/health").await.json();
    assert_eq!(
        h["broker"]["foreign"], 1,
        "the bare body is not relayed by default: {h}"
    );
    assert_eq!(edges[1].get("/health").await.json()["broker"]["foreign"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_bodies_are_relayed_only_when_the_setting_says_so() {
    let redis = RedisServer::shared();
    let p = prefix("foreign");
    let url = redis.url();
    let shut = node("edge", &url, &p, &[]);
    let open = node("edge", &url, &p, &[("REDIS_ACCEPT_FOREIGN", "true")]);
    for e in [&shut, &open] {
        e.wait_health(|h| h["redis"] == "connected").await;
    }
    let mut on_shut = connect(&shut.ws_url("/ws/market")).await;
    let mut on_open = connect(&open.ws_url("/ws/market")).await;
    let conn = redis.connection().await;
    publish(
        &conn,
        &format!("{p}:market"),
        br#"{"quotes":{"X":1}}"#.to_vec(),
    )
    .await;
    let (text, _) = next_json(&mut on_open, Duration::from_secs(10)).await;
    assert!(
        text.starts_with("{\"seq\":1,\"ts\":") && text.contains("\"X\""),
        "{text}"
    );
    let h = shut.wait_health(|h| h["broker"]["foreign"] == 1).await;
    assert_eq!(h["channels"]["market"]["seq"], 0, "nothing relayed: {h}");
    assert_eq!(shut.get("/api/market/snapshot").await.status, 503);
    // Nothing reached the default edge's client (it was counted before this read began).
    let nothing = tokio::time::timeout(
        Duration::from_millis(500),
        next_json(&mut on_shut, Duration::from_secs(1)),
    )
    .await;
    assert!(nothing.is_err(), "{:?}", nothing.ok().map(|m| m.0));
    assert!(shut
        .get("/metrics")
        .await
        .body
        .contains("marketcast_redis_foreign_total{role=\"edge\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_acl_lets_producers_publish_and_edges_only_read() {
    let redis = RedisServer::start();
    // The README's commands, as they are (this Redis is the test's own: the default prefix).
    let p = "marketcast";
    let conn = redis.connection().await;
    for acl in [
        "ACL SETUSER mc-producer on >producer-secret resetkeys ~marketcast:* resetchannels &marketcast:* -@all +ping +get +set +del +pexpire +hget +hset +hgetall +publish +eval +evalsha +script|load",
        "ACL SETUSER mc-edge on >edge-secret resetkeys %R~marketcast:* resetchannels &marketcast:* -@all +ping +get +mget +subscribe",
        "ACL SETUSER default off",
    ] {
        let mut c = conn.clone();
        let args: Vec<&str> = acl.split(' ').collect();
        let _: () = redis::cmd(args[0])
            .arg(&args[1..])
            .query_async(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{acl}: {e}"));
    }
    let as_user = |user: &str, pw: &str| format!("redis://{user}:{pw}@127.0.0.1:{}", redis.port);
    let producer = node(
        "producer",
        &as_user("mc-producer", "producer-secret"),
        p,
        &[],
    );
    let edge = node("edge", &as_user("mc-edge", "edge-secret"), p, &[]);
    producer
        .wait_health(|h| h["broker"]["leader"] == true)
        .await;
    edge.wait_health(|h| h["channels"]["market"]["seq"].as_u64() > Some(0))
        .await;
    let mut ws = connect(&edge.ws_url("/ws/market")).await;
    let (_, v) = next_json(&mut ws, Duration::from_secs(10)).await;
    assert!(v["quotes"].is_object());
    assert_eq!(edge.get("/api/vn30-components").await.status, 200);
    // The edge's user may read, and may not publish or write.
    let mut as_edge = redis::Client::open(as_user("mc-edge", "edge-secret"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let refused: redis::RedisResult<i64> = redis::cmd("PUBLISH")
        .arg("marketcast:market")
        .arg("{}")
        .query_async(&mut as_edge)
        .await;
    assert!(refused.is_err(), "an edge's user must not publish");
    let refused: redis::RedisResult<()> = redis::cmd("SET")
        .arg("marketcast:state")
        .arg("{}")
        .query_async(&mut as_edge)
        .await;
    assert!(refused.is_err(), "an edge's user must not write");
    // Nor may anyone without a user.
    let anonymous = async {
        let mut c = redis::Client::open(redis.url())
            .ok()?
            .get_multiplexed_async_connection()
            .await
            .ok()?;
        redis::cmd("PUBLISH")
            .arg("marketcast:market")
            .arg("{}")
            .query_async::<i64>(&mut c)
            .await
            .ok()
    };
    assert_eq!(
        anonymous.await,
        None,
        "an anonymous client must not publish"
    );
    let h = edge.get("/health").await.json();
    assert_eq!(h["redis"], "connected", "{h}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn get_bytes(conn: &redis::aio::MultiplexedConnection, key: &str) -> Vec<u8> {
    let mut c = conn.clone();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("GET {key}: {e}"))
}

async fn set_bytes(conn: &redis::aio::MultiplexedConnection, key: &str, value: &[u8]) {
    let mut c = conn.clone();
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut c)
        .await
        .unwrap();
}

/// The review's case: without a key, one envelope with the producer's epoch and `seq` the
/// last plus ten million (inside the window) froze an edge for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_a_seq_published_ahead_holds_for_a_few_ticks_only() {
    let redis = RedisServer::shared();
    let p = prefix("ahead");
    let url = redis.url();
    let _producer = node("producer", &url, &p, &[]);
    let edge = node("edge", &url, &p, &[]);
    edge.wait_health(|h| h["channels"]["market"]["seq"].as_u64() > Some(0))
        .await;
    let mut ws = connect(&edge.ws_url("/ws/market")).await;
    next_json(&mut ws, Duration::from_secs(10)).await;
    let conn = redis.connection().await;
    let (epoch, seq) = epoch_and_seq(&conn, &p).await;
    let ahead = seq + 10_000_000;
    let payload = format!(r#"{{"seq":{ahead},"ts":1,"ahead":true}}"#);
    let wall = Envelope {
        epoch,
        seq: ahead,
        ts_ms: 1,
        payload: payload.as_bytes(),
        deflated: None,
        seal: None,
    }
    .encode();
    publish(&conn, &format!("{p}:market"), wall).await;
    // The producer's next ticks come in below it, and after a few a new count starts.
    edge.wait_health(|h| h["broker"]["resets"].as_u64() >= Some(1))
        .await;
    let (_, now) = epoch_and_seq(&conn, &p).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "the edge stayed frozen");
        let (text, v) = next_json(&mut ws, Duration::from_secs(30)).await;
        let s = v["seq"].as_u64().unwrap();
        if s > now && s < ahead && v["quotes"].is_object() {
            assert!(!text.contains("\"ahead\""), "{text}");
            break;
        }
    }
    edge.wait_health(|h| {
        h["channels"]["market"]["seq"]
            .as_u64()
            .is_some_and(|s| s > now && s < ahead)
    })
    .await;
    let metrics = edge.get("/metrics").await.body;
    assert!(
        metrics.contains("marketcast_redis_resets_total{role=\"edge\"}"),
        "{metrics}"
    );
}

/// A signed tick captured from Redis and published again after the producers restarted on an
/// empty Redis (a new epoch, a new count) is not relayed; nor is one the key signed long ago.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_a_captured_tick_published_again_is_not_relayed() {
    let redis = RedisServer::shared();
    let p = prefix("replay");
    let url = redis.url();
    let key = [("REDIS_SIGNING_KEY", KEY)];
    let mut first = node("producer", &url, &p, &key);
    let edge = node("edge", &url, &p, &key);
    edge.wait_health(|h| h["channels"]["market"]["seq"].as_u64() > Some(0))
        .await;
    let conn = redis.connection().await;
    let channel = format!("{p}:market");
    // Captured: the channel's last message, as anyone who may GET (or SUBSCRIBE) has it.
    let captured = get_bytes(&conn, &format!("{p}:last:market")).await;
    let Ok(Incoming::Envelope(old)) = envelope::decode(&captured) else {
        panic!("the producer's last message is an envelope");
    };
    let (old_seq, old_payload) = (old.seq, String::from_utf8(old.payload.to_vec()).unwrap());
    edge.wait_health(|h| h["channels"]["market"]["seq"].as_u64() >= Some(old_seq))
        .await;
    // The producers restart on a Redis that lost its record: a new epoch, counting from 1.
    first.sigterm();
    assert!(first.wait_exit(Duration::from_secs(10)).is_some());
    let mut c = conn.clone();
    let _: i64 = redis::cmd("DEL")
        .arg(
            ["epoch", "seq", "leader", "state", "last:market"]
                .map(|k| format!("{p}:{k}"))
                .as_slice(),
        )
        .query_async(&mut c)
        .await
        .unwrap();
    let _second = node("producer", &url, &p, &key);
    edge.wait_health(|h| h["broker"]["resets"].as_u64() >= Some(1))
        .await;
    let mut ws = connect(&edge.ws_url("/ws/market")).await;
    next_json(&mut ws, Duration::from_secs(10)).await;

    publish(&conn, &channel, captured.clone()).await;
    edge.wait_health(|h| h["broker"]["replayed"].as_u64() >= Some(1))
        .await;
    // A tick the key signed ten minutes ago, numbered just above the producer's: stale.
    let (epoch, seq) = epoch_and_seq(&conn, &p).await;
    let signer = SigningKey::new(&Secret::from(KEY.to_string())).unwrap();
    let ts = now_ms() - MAX_SIGNED_AGE.as_millis() as i64 - 300_000;
    let payload = format!(r#"{{"seq":{},"ts":{ts},"old":true}}"#, seq + 1000);
    let long_ago = Envelope {
        epoch,
        seq: seq + 1000,
        ts_ms: ts,
        payload: payload.as_bytes(),
        deflated: None,
        seal: None,
    }
    .encode_signed(&signer, &channel);
    publish(&conn, &channel, long_ago).await;
    edge.wait_health(|h| h["broker"]["stale"].as_u64() >= Some(1))
        .await;
    // The client goes on with the new count: neither copy reached it, and the edge was not
    // made to wait for a seq a thousand ahead.
    let (_, now) = epoch_and_seq(&conn, &p).await;
    for text in read_past(&mut ws, now + 1).await {
        assert_ne!(text, old_payload, "the captured tick got through");
        assert!(!text.contains("\"old\""), "{text}");
        assert!(text.contains("\"quotes\""), "{text}");
    }
    let h = edge.get("/health").await.json();
    assert_eq!(h["broker"]["forged"], 0, "{h}");
    let metrics = edge.get("/metrics").await.body;
    for line in [
        "marketcast_redis_replayed_total{role=\"edge\"} ",
        "marketcast_redis_stale_total{role=\"edge\"} ",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

/// The state document carries a signed time: an older copy put back in Redis is refused, and
/// the edge goes on answering from the last good one. An edge without the key reads a signing
/// producer's state unchecked (the rollout's middle step) and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_a_signed_state_document_put_back_is_refused() {
    let redis = RedisServer::shared();
    let p = prefix("state-replay");
    let url = redis.url();
    let key = [("REDIS_SIGNING_KEY", KEY)];
    let producer = node("producer", &url, &p, &key);
    let edge = node("edge", &url, &p, &key);
    let keyless = node("edge", &url, &p, &[]);
    producer
        .wait_health(|h| h["broker"]["leader"] == true)
        .await;
    let conn = redis.connection().await;
    let state_key = format!("{p}:state");
    let ts_of = |bytes: &[u8]| match signing::read_document(bytes) {
        Ok(Document::Sealed(doc)) => doc.ts_ms,
        other => panic!("the state is not signed: {other:?}"),
    };
    // Captured, then the producer writes newer copies (every second).
    let deadline = Instant::now() + Duration::from_secs(30);
    let captured = loop {
        let mut c = conn.clone();
        let got: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&state_key)
            .query_async(&mut c)
            .await
            .unwrap();
        if let Some(bytes) = got {
            break bytes;
        }
        assert!(Instant::now() < deadline, "the producer wrote no state");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let captured_ts = ts_of(&captured);
    let newer = captured_ts + TAKEOVER_SKEW.as_millis() as i64 + 1_000;
    let deadline = Instant::now() + Duration::from_secs(60);
    while ts_of(&get_bytes(&conn, &state_key).await) < newer {
        assert!(Instant::now() < deadline, "the producer's state stayed old");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let expected = producer.get("/api/vn30-components").await.json();
    // Put back again and again (the producer writes its own every second), with requests that
    // make the edge read the state (at most once a second) both right after it was put back
    // and after the producer wrote its own again: once the edge has taken a copy newer than
    // the captured one by more than the skew, the captured one is refused.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        set_bytes(&conn, &state_key, &captured).await;
        for _ in 0..2 {
            let r = edge.get("/api/vn30-components").await;
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.json(), expected);
            tokio::time::sleep(Duration::from_millis(1_200)).await;
        }
        if edge.health().await["broker"]["replayed"].as_u64() >= Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the put-back copy was never refused"
        );
    }
    // A document the key signed ten minutes ago (whatever it says): stale, never served.
    let signer = SigningKey::new(&Secret::from(KEY.to_string())).unwrap();
    let ts = now_ms() - MAX_SIGNED_AGE.as_millis() as i64 - 300_000;
    let long_ago = signer.seal_document(state_key.as_bytes(), ts, br#"{"vn30":["HACKED"]}"#);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        set_bytes(&conn, &state_key, &long_ago).await;
        let r = edge.get("/api/vn30-components").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(!r.body.contains("HACKED"), "{}", r.body);
        if edge.health().await["broker"]["stale"].as_u64() >= Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the old copy was never refused");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let h = edge.health().await;
    assert_eq!(h["broker"]["forged"], 0, "{h}");
    assert_eq!(h["broker"]["unsigned"], 0, "{h}");
    // The edge without a key: ticks and REST from the signing producer, unchecked and counted.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = keyless.get("/api/vn30-components").await;
        if r.status == 200 && r.json() == expected {
            break;
        }
        assert!(Instant::now() < deadline, "{} {}", r.status, r.body);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let h = keyless
        .wait_health(|h| {
            h["broker"]["unverified"].as_u64() >= Some(2)
                && h["channels"]["market"]["seq"].as_u64() > Some(0)
        })
        .await;
    assert_eq!(h["broker"]["malformed"], 0, "{h}");
}
