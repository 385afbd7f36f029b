//! Who may read what (#20), against the real binary: the token guards the REST data as it
//! guards the WebSockets, `/health` tells anyone only its plain status, the details and
//! `/metrics` take the operators' token, `PUBLIC_REST` opens the data again, a wrong token
//! spends its address's connect rate, and one address connecting in a loop leaves the others
//! their own rate. Clients come from several loopback addresses (127.0.0.2, 127.0.0.3, ...), as
//! the per-address limits count them; `TRUSTED_PROXIES` is emptied so that each is itself.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncReadExt;

const TOKEN: &str = "s3cret";
const ADMIN: &str = "0perator";
const SENTENCE: &str =
    "missing or wrong token: send ?token=<WS_AUTH_TOKEN> or Authorization: Bearer <WS_AUTH_TOKEN>";

/// Every REST data route the token guards.
const DATA_ROUTES: [&str; 10] = [
    "/api/market/snapshot",
    "/api/market/board",
    "/api/schema/board",
    "/api/market/foreign-detail",
    "/api/market/volume-stats",
    "/api/market/basis-trend?minutes=5",
    "/api/market/alerts",
    "/api/vn30-components",
    "/api/schema",
    "/api/history/FPT/candles?start=2026-11-26&end=2026-11-26",
];

fn ip(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn start(extra: &[(&str, &str)]) -> ServerProcess {
    let mut env = vec![("WS_AUTH_TOKEN", TOKEN), ("TRUSTED_PROXIES", "")];
    env.extend_from_slice(extra);
    ServerProcess::start(&env)
}

/// The status of a WebSocket upgrade from `local`, with the token given as `?token=`.
async fn upgrade_from(local: IpAddr, server: &ServerProcess, token: Option<&str>) -> u16 {
    let path = match token {
        Some(t) => format!("/ws/market?token={t}"),
        None => "/ws/market".to_string(),
    };
    let (_s, head) = raw_connect_from(local, server.addr, &path, "").await;
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn the_token_guards_every_data_route_as_it_guards_the_websockets() {
    let server = start(&[]);
    // The history database opens after the listener: wait, so its route answers 200.
    server.wait_health(|h| h["database"] == "connected").await;
    for route in DATA_ROUTES {
        let r = server.get(route).await;
        assert_eq!(r.status, 401, "{route} without the token: {}", r.body);
        assert_eq!(r.body.trim(), SENTENCE, "{route}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{route}");
        let r = http_get(server.addr, route, &[("Authorization", &bearer("guess"))]).await;
        assert_eq!(r.status, 401, "{route} with a wrong token");
        let r = http_get(server.addr, route, &[("Authorization", &bearer(TOKEN))]).await;
        assert_ne!(r.status, 401, "{route} with the bearer token: {}", r.body);
        assert!(r.status < 500, "{route}: {} {}", r.status, r.body);
        let sep = if route.contains('?') { '&' } else { '?' };
        let r = server.get(&format!("{route}{sep}token={TOKEN}")).await;
        assert_ne!(r.status, 401, "{route} with ?token=: {}", r.body);
    }
    let r = http_get(
        server.addr,
        "/api/market/snapshot",
        &[("Authorization", &bearer(TOKEN))],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.json()["quotes"].is_object());
    // The WebSocket's refusal says the same.
    let r = server.get("/ws/market").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body.trim(), SENTENCE);
    // The dashboard itself is public (it asks for the token in its URL).
    assert_eq!(server.get("/").await.status, 200);
}

#[tokio::test]
async fn health_tells_anyone_its_plain_status_and_the_operator_everything() {
    let server = start(&[]);
    let plain = server.get("/health").await;
    assert_eq!(plain.status, 200);
    let plain = plain.json();
    let keys: Vec<&str> = plain
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["status", "role", "feed"], "{plain}");
    assert_eq!(plain["status"], "ok");
    assert_eq!(plain["role"], "standalone");
    assert_eq!(plain["feed"]["kind"], "simulator");
    assert!(plain["feed"]["state"].is_string(), "{plain}");
    // Nothing about clients, addresses or databases.
    let text = plain.to_string();
    for word in ["client", "127.0.0.1", "database", "sqlite", "history"] {
        assert!(!text.contains(word), "{word} in {text}");
    }
    // The client list and a wrong token are refused; the token gets the details.
    let _ws = connect(&server.ws_url(&format!("/ws/market?token={TOKEN}"))).await;
    assert_eq!(server.get("/health?clients=true").await.status, 401);
    let wrong = http_get(server.addr, "/health", &[("Authorization", &bearer("x"))]).await;
    assert_eq!(wrong.status, 401);
    let full = http_get(
        server.addr,
        "/health?clients=true",
        &[("Authorization", &bearer(TOKEN))],
    )
    .await;
    assert_eq!(full.status, 200);
    let full = full.json();
    assert_eq!(full["role"], "standalone");
    assert!(full["database"].is_string(), "{full}");
    assert_eq!(
        full["client_list"].as_array().map(Vec::len),
        Some(1),
        "{full}"
    );
    // /metrics takes the token too (Prometheus sends it as a bearer token).
    let m = server.get("/metrics").await;
    assert_eq!(m.status, 401);
    let m = http_get(
        server.addr,
        "/metrics",
        &[("Authorization", &bearer(TOKEN))],
    )
    .await;
    assert_eq!(m.status, 200);
    assert!(m
        .body
        .contains("marketcast_connections_refused_total{reason=\"unauthorized\"}"));
}

#[tokio::test]
async fn an_admin_token_of_their_own_for_the_operators_and_public_rest_for_the_original_frontend() {
    let server = start(&[("ADMIN_TOKEN", ADMIN), ("PUBLIC_REST", "true")]);
    // PUBLIC_REST: the data routes answer without a token, as the original's did.
    for route in DATA_ROUTES {
        let r = server.get(route).await;
        assert_ne!(r.status, 401, "{route}: {}", r.body);
    }
    // The WebSockets still take WS_AUTH_TOKEN.
    assert_eq!(upgrade_from(ip(1), &server, None).await, 401);
    assert_eq!(upgrade_from(ip(1), &server, Some(TOKEN)).await, 101);
    // The operators' routes take ADMIN_TOKEN, and only it.
    for path in ["/metrics", "/health?clients=true"] {
        let r = http_get(server.addr, path, &[("Authorization", &bearer(TOKEN))]).await;
        assert_eq!(r.status, 401, "{path} with WS_AUTH_TOKEN");
        assert!(r.body.contains("ADMIN_TOKEN"), "{}", r.body);
        let r = server
            .get(&format!(
                "{path}{}token={ADMIN}",
                if path.contains('?') { '&' } else { '?' }
            ))
            .await;
        assert_eq!(r.status, 200, "{path} with ADMIN_TOKEN: {}", r.body);
    }
    assert_eq!(server.health().await["role"], "standalone");
}

#[tokio::test]
async fn without_tokens_everything_stays_open_as_before() {
    let server = ServerProcess::start(&[]);
    for route in DATA_ROUTES {
        assert_ne!(server.get(route).await.status, 401, "{route}");
    }
    let h = server.get("/health?clients=true").await;
    assert_eq!(h.status, 200);
    assert!(h.json()["client_list"].is_array());
    assert_eq!(server.get("/metrics").await.status, 200);
}

#[tokio::test]
async fn a_wrong_token_spends_its_address_s_connect_rate_and_is_logged_once_a_second() {
    // One connection (or guess) saved up per address, one more every five seconds.
    let server = start(&[("WS_CONNECT_RATE", "0.2")]);
    let guesser = ip(2);
    let started = Instant::now();
    let r = http_get_from(
        guesser,
        server.addr,
        "/api/market/snapshot?token=guess-1",
        &[],
    )
    .await;
    assert_eq!(r.status, 401);
    let mut throttled = 0;
    for n in 2..=20 {
        let r = http_get_from(
            guesser,
            server.addr,
            &format!("/api/market/snapshot?token=guess-{n}"),
            &[],
        )
        .await;
        assert!(
            r.status == 429 || r.status == 401,
            "{} {}",
            r.status,
            r.body
        );
        if r.status == 429 {
            throttled += 1;
            assert!(r.header("retry-after").is_some());
            assert!(r.body.contains("WS_CONNECT_RATE"), "{}", r.body);
        }
    }
    // At one guess per five seconds, at most one more was heard in the time taken.
    let heard = 19 - throttled;
    let allowed = (started.elapsed().as_secs_f64() / 5.0).ceil() as usize;
    assert!(
        heard <= allowed,
        "{heard} guesses heard in {:?}",
        started.elapsed()
    );
    // The guesser's WebSockets wait too (the guesses spent its rate), unless five seconds
    // have passed and brought a token back ...
    let status = upgrade_from(guesser, &server, Some(TOKEN)).await;
    assert!(
        status == 429 || started.elapsed() >= Duration::from_secs(5),
        "{status}"
    );
    // ... but no other address is touched: its wrong token is a 401, its right one a 200.
    let other = ip(3);
    let r = http_get_from(other, server.addr, "/api/market/snapshot?token=nope", &[]).await;
    assert_eq!(r.status, 401);
    let r = http_get_from(
        other,
        server.addr,
        &format!("/api/vn30-components?token={TOKEN}"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    // A missing token costs no rate (nothing was guessed), and is still a 401.
    for _ in 0..3 {
        let r = http_get_from(ip(4), server.addr, "/api/schema", &[]).await;
        assert_eq!(r.status, 401);
    }
    // The warnings: at most one line a second for the guesser, with the count.
    let elapsed = started.elapsed().as_secs_f64();
    let lines: Vec<String> = server
        .drain_logs()
        .into_iter()
        .filter(|l| l.contains("refused: wrong token") && l.contains("127.0.0.2"))
        .collect();
    assert!(!lines.is_empty());
    assert!(
        lines.len() as f64 <= elapsed.ceil() + 1.0,
        "{} lines in {elapsed:.1} s: {lines:#?}",
        lines.len()
    );
    let h = server.health().await;
    assert!(
        h["admission"]["refused"]["unauthorized"].as_u64().unwrap() >= 24,
        "{h}"
    );
}

#[tokio::test]
async fn one_address_connecting_in_a_loop_leaves_the_others_their_rate() {
    // One connection saved up per address, one more every five seconds; no process ceiling.
    let server = start(&[("WS_CONNECT_RATE", "0.2"), ("WS_CONNECT_RATE_TOTAL", "0")]);
    // 127.0.0.2 connects and disconnects in a loop: its first is let in, then 429s (one more
    // may get in for each five seconds the loop takes).
    let started = Instant::now();
    assert_eq!(upgrade_from(ip(2), &server, Some(TOKEN)).await, 101);
    let mut refused = 0u64;
    for _ in 0..10 {
        if upgrade_from(ip(2), &server, Some(TOKEN)).await == 429 {
            refused += 1;
        }
    }
    let refills = (started.elapsed().as_secs_f64() / 5.0).ceil() as u64;
    assert!(refused + refills >= 10, "{refused} of 10 refused");
    // The others still connect, each on its own bucket.
    for n in 3..=5 {
        assert_eq!(upgrade_from(ip(n), &server, Some(TOKEN)).await, 101);
    }
    let h = server.health().await;
    assert!(
        h["admission"]["refused"]["rate"].as_u64().unwrap() >= 1,
        "{h}"
    );
    assert_eq!(h["admission"]["refused"]["rate_total"], 0, "{h}");
}

#[tokio::test]
async fn the_process_wide_ceiling_holds_over_all_addresses_and_says_so() {
    // One connection saved up for the whole process, one more every five seconds.
    let server = start(&[("WS_CONNECT_RATE", "0"), ("WS_CONNECT_RATE_TOTAL", "0.2")]);
    assert_eq!(upgrade_from(ip(2), &server, Some(TOKEN)).await, 101);
    // Fresh addresses, each with nothing spent of its own: the ceiling turns them away (a
    // token comes back every five seconds, so most of nine attempts meet it).
    let mut ceiling = None;
    for n in 3..=11 {
        let (mut s, head) =
            raw_connect_from(ip(n), server.addr, &format!("/ws/market?token={TOKEN}"), "").await;
        if head.starts_with("HTTP/1.1 429") {
            // The sentence follows the head (the connection stays open: read what came).
            let mut body = vec![0u8; 512];
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut body))
                .await
                .expect("the refusal's body")
                .unwrap();
            ceiling = Some(String::from_utf8_lossy(&body[..n]).to_string());
            break;
        }
    }
    let body = ceiling.expect("the process-wide ceiling was never met");
    assert!(body.contains("WS_CONNECT_RATE_TOTAL"), "{body}");
    let h = server.health().await;
    assert!(
        h["admission"]["refused"]["rate_total"].as_u64().unwrap() >= 1,
        "{h}"
    );
}
