//! The SSI FastConnect test double against a hand-played client: every step of the
//! reference transcript (§5), the double encoding of `Broadcast`, and each scripted failure.
//!
//! Each test waits for what it expects (a frame, an end of stream, a log entry) with a
//! generous timeout that only guards against hanging; none depends on which of two events
//! happens first.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::ssi_double::{envelope, http_post_json, percent_encode, DoubleConfig, SsiDouble, HUB};
use common::{http_get, http_request, Ws};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::{self, Message};

/// A guard against hanging, never a condition of success.
const PATIENCE: Duration = Duration::from_secs(10);

/// `[{"name":"FcMarketDataV2Hub"}]`, as the reference recommends sending it.
const CONNECTION_DATA: &str = r#"[{"name":"FcMarketDataV2Hub"}]"#;

fn trade(symbol: &str, price: f64) -> String {
    envelope(
        "X-TRADE",
        &json!({ "RType": "X-TRADE", "Symbol": symbol, "LastPrice": price, "LastVol": 100.0 }),
    )
}

fn index_value(value: f64) -> String {
    envelope(
        "MI",
        &json!({ "RType": "MI", "IndexId": "VN30", "IndexValue": value }),
    )
}

fn trades(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| trade(common::ssi_double::VN30[i], 20000.0 + i as f64))
        .collect()
}

// --- the client side of the transcript -------------------------------------------------------

async fn access_token(double: &SsiDouble) -> String {
    let body = json!({ "consumerID": "test-id", "consumerSecret": "test-secret" });
    let reply = http_post_json(double.addr, "/api/v2/Market/AccessToken", &body, &[]).await;
    assert_eq!(reply.status, 200);
    let reply = reply.json();
    assert_eq!(reply["status"], 200, "{reply}");
    reply["data"]["accessToken"].as_str().unwrap().to_string()
}

fn bearer(jwt: &str) -> String {
    format!("Bearer {jwt}")
}

fn negotiate_path() -> String {
    format!(
        "/v2.0/signalr/negotiate?clientProtocol=1.5&connectionData={}",
        percent_encode(CONNECTION_DATA)
    )
}

/// `GET negotiate`; returns the HTTP status and the body.
async fn negotiate(double: &SsiDouble, jwt: &str) -> (u16, String) {
    let auth = bearer(jwt);
    let reply = http_get(double.addr, &negotiate_path(), &[("Authorization", &auth)]).await;
    (reply.status, reply.body)
}

async fn connection_token(double: &SsiDouble, jwt: &str) -> String {
    let (status, body) = negotiate(double, jwt).await;
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    reply["ConnectionToken"].as_str().unwrap().to_string()
}

/// The query of `connect` and `start`, with the token encoded as given.
fn transport_query(encoded_token: &str) -> String {
    format!(
        "transport=webSockets&clientProtocol=1.5&connectionToken={encoded_token}&connectionData={}",
        percent_encode(CONNECTION_DATA)
    )
}

async fn try_connect(
    double: &SsiDouble,
    jwt: &str,
    encoded_token: &str,
) -> Result<Ws, tungstenite::Error> {
    let url = format!(
        "ws://{}/v2.0/signalr/connect?{}",
        double.addr,
        transport_query(encoded_token)
    );
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", bearer(jwt).parse().unwrap());
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(ws, _)| ws)
}

/// Token, negotiate, connect: an open hub socket (its init frame not read yet).
async fn open_hub(double: &SsiDouble) -> Ws {
    let jwt = access_token(double).await;
    let token = connection_token(double, &jwt).await;
    try_connect(double, &jwt, &percent_encode(&token))
        .await
        .expect("connect")
}

async fn invoke(ws: &mut Ws, method: &str, argument: &str, id: Value) {
    let call = json!({ "H": HUB, "M": method, "A": [argument], "I": id });
    ws.send(Message::text(call.to_string())).await.unwrap();
}

/// A server frame, classified the way a client must read it.
#[derive(Debug, Clone, PartialEq)]
enum Frame {
    Init,
    KeepAlive,
    Reply(Value),
    /// The `Broadcast` arguments (`A[0]`, still a JSON string each) of one data frame.
    Broadcast(Vec<String>),
    HubError(String),
    Reconnect,
    /// Anything else (the malformed frames).
    Other(String),
}

fn classify(text: &str) -> Frame {
    if text == "{}" {
        return Frame::KeepAlive;
    }
    let Ok(Value::Object(frame)) = serde_json::from_str::<Value>(text) else {
        return Frame::Other(text.to_string());
    };
    if frame.contains_key("I") {
        return Frame::Reply(Value::Object(frame));
    }
    if frame.get("S") == Some(&json!(1)) {
        return Frame::Init;
    }
    if frame.get("T") == Some(&json!(1)) {
        return Frame::Reconnect;
    }
    let calls = frame
        .get("M")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let argument = |call: &Value| call["A"][0].as_str().unwrap().to_string();
    let hub_calls = |name: &str| -> Vec<String> {
        calls
            .iter()
            .filter(|c| c["H"].as_str().unwrap().eq_ignore_ascii_case(HUB))
            .filter(|c| c["M"].as_str().unwrap().eq_ignore_ascii_case(name))
            .map(argument)
            .collect()
    };
    if let Some(error) = hub_calls("Error").pop() {
        return Frame::HubError(error);
    }
    Frame::Broadcast(hub_calls("Broadcast"))
}

/// The next text frame as sent, or `None` at the end of the stream.
async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        let message = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a frame or the end of the stream in time");
        match message {
            Some(Ok(Message::Text(text))) => return Some(text.to_string()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => panic!("unexpected {other:?}"),
            Some(Err(_)) | None => return None,
        }
    }
}

async fn next_frame(ws: &mut Ws) -> Option<Frame> {
    next_text(ws).await.map(|text| classify(&text))
}

/// The next frame that is not a keep-alive.
async fn next_significant(ws: &mut Ws) -> Option<Frame> {
    loop {
        match next_frame(ws).await {
            Some(Frame::KeepAlive) => continue,
            other => return other,
        }
    }
}

/// Reads until `count` messages arrived; returns them (skipping replies and keep-alives).
async fn read_messages(ws: &mut Ws, count: usize) -> Vec<String> {
    let mut messages = Vec::new();
    while messages.len() < count {
        match next_frame(ws).await.expect("stream open") {
            Frame::Broadcast(batch) => messages.extend(batch),
            Frame::KeepAlive | Frame::Reply(_) | Frame::Init => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(messages.len(), count, "no more than asked for");
    messages
}

/// The two decodes every client must do: `A[0]` to the envelope, `Content` to the record.
fn decode(argument: &str) -> (String, Value) {
    let envelope: Value = serde_json::from_str(argument).unwrap();
    let content: Value = serde_json::from_str(envelope["Content"].as_str().unwrap()).unwrap();
    (envelope["DataType"].as_str().unwrap().to_string(), content)
}

fn jwt_claims(jwt: &str) -> (String, Value) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "header.payload.signature: {jwt}");
    let payload = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
    (
        parts[1].to_string(),
        serde_json::from_slice(&payload).unwrap(),
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// --- the tests -------------------------------------------------------------------------------

#[tokio::test]
async fn the_transcript_delivers_double_encoded_messages_in_batches() {
    let messages = trades(5);
    let double = SsiDouble::start(DoubleConfig {
        messages: messages.clone(),
        batch: 2,
        keepalive: Duration::from_millis(100),
        ..DoubleConfig::default()
    })
    .await;

    // 1. Token: a JWT whose payload carries exp and reads with the standard alphabet too.
    let jwt = access_token(&double).await;
    let (payload, claims) = jwt_claims(&jwt);
    let exp = claims["exp"].as_u64().unwrap();
    assert!(exp.abs_diff(unix_now() + 8 * 3600) <= 2, "{claims}");
    assert!(!payload.contains(['-', '_']), "{payload}");

    // 2. VN30 members, nested in IndexComponent.
    let auth = bearer(&jwt);
    let path = "/api/v2/Market/IndexComponents?indexCode=VN30&pageIndex=1&pageSize=100";
    let reply = http_get(double.addr, path, &[("Authorization", &auth)]).await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    let symbols: Vec<&str> = body["data"][0]["IndexComponent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["StockSymbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, common::ssi_double::VN30);
    assert_eq!(body["status"], "Success");

    // 3. Negotiate.
    let (status, body) = negotiate(&double, &jwt).await;
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    let token = reply["ConnectionToken"].as_str().unwrap();
    assert!(
        token.contains('+') && token.contains('/') && token.contains('='),
        "{token}"
    );
    assert_eq!(reply["ProtocolVersion"], "1.5");
    assert_eq!(reply["KeepAliveTimeout"], 20.0);
    assert_eq!(reply["TryWebSockets"], true);

    // 4. Connect, and (like SSI's Python client) invoke before reading the init frame.
    let encoded = percent_encode(token);
    let mut ws = try_connect(&double, &jwt, &encoded).await.expect("connect");
    invoke(
        &mut ws,
        "SwitchChannels",
        "X-TRADE:ACB-BCM-BID-CTG-DGC",
        json!(0),
    )
    .await;
    invoke(&mut ws, "NoSuchMethod", "x", json!("7")).await;
    let init = next_text(&mut ws).await.expect("the init frame");
    assert!(init.starts_with(r#"{"C":"d-"#), "{init}");
    assert!(
        init.ends_with(r#"-A,0|B,0|C,1|D,0","S":1,"M":[]}"#),
        "{init}"
    );

    // 5. Start is served, though not required.
    let start = format!("/v2.0/signalr/start?{}", transport_query(&encoded));
    let reply = http_get(double.addr, &start, &[("Authorization", &auth)]).await;
    assert_eq!(reply.json(), json!({ "Response": "started" }));

    // 6-8. Replies, data frames of at most two messages, then keep-alive while idle.
    let (mut replies, mut batches, mut keepalives) = (Vec::new(), Vec::<Vec<String>>::new(), 0);
    let mut first_data_frame = None;
    while replies.len() < 2 || batches.concat().len() < messages.len() || keepalives == 0 {
        let text = next_text(&mut ws).await.expect("stream open");
        match classify(&text) {
            Frame::Reply(reply) => replies.push(reply),
            Frame::Broadcast(batch) => {
                first_data_frame.get_or_insert(text);
                batches.push(batch);
            }
            Frame::KeepAlive => keepalives += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(replies[0], json!({ "I": "0" }));
    assert_eq!(
        replies[1],
        json!({ "I": "7", "E": "'NoSuchMethod' method could not be resolved on hub 'FcMarketDataV2Hub'." })
    );
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert_eq!(sizes, [2, 2, 1]);
    // Byte for byte: A[0] is the envelope text as a JSON string, so Content is escaped twice.
    let first_data_frame = first_data_frame.unwrap();
    let cursor: Value = serde_json::from_str(&first_data_frame).unwrap();
    let call = |m: &String| {
        format!(
            r#"{{"H":"FcMarketDataV2Hub","M":"Broadcast","A":[{}]}}"#,
            Value::from(m.as_str())
        )
    };
    let expected = format!(
        r#"{{"C":"{}","M":[{},{}]}}"#,
        cursor["C"].as_str().unwrap(),
        call(&messages[0]),
        call(&messages[1])
    );
    assert_eq!(first_data_frame, expected);
    assert!(expected.contains(r#"\"Content\":\"{\\\"RType\\\":\\\"X-TRADE\\\""#));
    let received = batches.concat();
    assert_eq!(received, messages);
    for (i, argument) in received.iter().enumerate() {
        let (data_type, record) = decode(argument);
        assert_eq!(data_type, "X-TRADE");
        assert_eq!(record["Symbol"], common::ssi_double::VN30[i]);
        assert_eq!(record["LastPrice"], 20000.0 + i as f64);
    }

    let log = double.log();
    assert_eq!(log.token_requests, 1);
    assert_eq!(
        log.index_component_requests,
        ["indexCode=VN30&pageIndex=1&pageSize=100"]
    );
    assert_eq!(log.negotiates.len(), 1);
    assert_eq!(log.negotiates[0].method, "GET");
    assert_eq!(
        log.negotiates[0].authorization.as_deref(),
        Some(auth.as_str())
    );
    assert_eq!(log.connects.len(), 1);
    assert!(log.connects[0].path_and_query.contains(&encoded));
    assert_eq!(log.starts.len(), 1);
    assert_eq!(log.invocations.len(), 2);
    assert_eq!(log.invocations[0].0, 0);
    assert_eq!(log.invocations[0].1["M"], "SwitchChannels");
    assert_eq!(log.messages_sent, 5);
    assert_eq!(log.open_connections, 1);
    assert_eq!(log.unauthorized, 0);
}

#[tokio::test]
async fn requests_a_real_server_would_refuse_are_refused() {
    let double = SsiDouble::start(DoubleConfig::default()).await;
    let jwt = access_token(&double).await;
    let auth = bearer(&jwt);

    // Negotiate by POST with an empty body (SSI's Python client), hub name in another case.
    let cd = percent_encode(r#"[{"name": "fcmarketdatav2hub"}]"#);
    let path = format!("/v2.0/signalr/negotiate?connectionData={cd}&clientProtocol=1.3");
    let reply = http_request(double.addr, "POST", &path, &[("Authorization", &auth)], b"").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["ProtocolVersion"], "1.3");
    let token = reply.json()["ConnectionToken"]
        .as_str()
        .unwrap()
        .to_string();

    // Without the hub, or without a bearer.
    let path = "/v2.0/signalr/negotiate?clientProtocol=1.5&connectionData=%5B%5D";
    assert_eq!(
        http_get(double.addr, path, &[("Authorization", &auth)])
            .await
            .status,
        400
    );
    assert_eq!(
        http_get(double.addr, &negotiate_path(), &[]).await.status,
        401
    );

    // A connection token sent raw: its '+' arrives as a space.
    match try_connect(&double, &jwt, &token).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 400),
        other => panic!("expected HTTP 400, got {other:?}"),
    }
    assert!(try_connect(&double, &jwt, &percent_encode(&token))
        .await
        .is_ok());

    let log = double.log();
    assert_eq!(log.negotiates.len(), 3);
    assert_eq!(log.negotiates[0].method, "POST");
    assert_eq!(log.connects.len(), 2);
    assert_eq!(log.unauthorized, 1);
}

#[tokio::test]
async fn wrong_credentials_get_body_status_401_with_http_200() {
    let double = SsiDouble::start(DoubleConfig::default()).await;
    let path = "/api/v2/Market/AccessToken";

    let wrong = json!({ "consumerID": "test-id", "consumerSecret": "nope" });
    let reply = http_post_json(double.addr, path, &wrong, &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({ "message": "Invalid consumer", "status": 401, "data": null })
    );

    // The .NET client's PascalCase keys are accepted.
    let pascal = json!({ "ConsumerID": "test-id", "ConsumerSecret": "test-secret" });
    let reply = http_post_json(double.addr, path, &pascal, &[]).await.json();
    assert_eq!(reply["status"], 200);
    assert_eq!(reply["message"], "Success");

    let log = double.log();
    assert_eq!(log.token_requests, 2);
    assert_eq!(log.tokens_issued.len(), 1);
    assert_eq!(log.tokens_issued[0], reply["data"]["accessToken"]);
    assert_eq!(log.token_bodies, [wrong, pascal]);
}

#[tokio::test]
async fn revoked_and_expired_tokens_are_refused() {
    let double = SsiDouble::start(DoubleConfig::default()).await;
    let old = access_token(&double).await;
    let token = connection_token(&double, &old).await;

    double.revoke_tokens();
    assert_eq!(negotiate(&double, &old).await.0, 401);
    match try_connect(&double, &old, &percent_encode(&token)).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected HTTP 401, got {other:?}"),
    }
    let path = "/api/v2/Market/IndexComponents?indexCode=VN30&pageIndex=1&pageSize=100";
    let auth = bearer(&old);
    assert_eq!(
        http_get(double.addr, path, &[("Authorization", &auth)])
            .await
            .status,
        401
    );

    let fresh = access_token(&double).await;
    assert_ne!(fresh, old);
    assert_eq!(negotiate(&double, &fresh).await.0, 200);

    double.set_token_lifetime(Duration::ZERO);
    let expired = access_token(&double).await;
    assert!(jwt_claims(&expired).1["exp"].as_u64().unwrap() <= unix_now());
    assert_eq!(negotiate(&double, &expired).await.0, 401);

    assert_eq!(double.log().unauthorized, 4);
}

#[tokio::test]
async fn drop_after_resumes_on_the_next_connection_without_loss() {
    let messages = trades(7);
    let double = SsiDouble::start(DoubleConfig {
        messages: messages.clone(),
        batch: 2,
        drop_after: vec![3],
        ..DoubleConfig::default()
    })
    .await;

    let mut first = open_hub(&double).await;
    invoke(&mut first, "SwitchChannels", "X-TRADE:ALL", json!("0")).await;
    let mut received = Vec::new();
    let ending = loop {
        match tokio::time::timeout(PATIENCE, first.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(Message::Text(text))) => match classify(text.as_str()) {
                Frame::Broadcast(batch) => received.extend(batch),
                Frame::Init | Frame::Reply(_) | Frame::KeepAlive => {}
                other => panic!("unexpected {other:?}"),
            },
            other => break other,
        }
    };
    // The end of the stream, without a Close frame.
    assert!(
        matches!(
            ending,
            Some(Err(tungstenite::Error::Protocol(
                ProtocolError::ResetWithoutClosingHandshake
            )))
        ),
        "{ending:?}"
    );
    drop(first);
    assert_eq!(received, messages[..3]);
    double
        .wait_until(
            |l| l.connections_closed_by_double == 1 && l.open_connections == 0,
            PATIENCE,
        )
        .await;

    let mut second = open_hub(&double).await;
    invoke(&mut second, "SwitchChannels", "X-TRADE:ALL", json!("0")).await;
    received.extend(read_messages(&mut second, 4).await);
    assert_eq!(received, messages);
    let log = double.log();
    assert_eq!(log.messages_sent, 7);
    assert_eq!(log.connects.len(), 2);
    assert_eq!(
        log.invocations.iter().map(|i| i.0).collect::<Vec<_>>(),
        [0, 1]
    );
}

#[tokio::test]
async fn malformed_frames_hub_error_and_reconnect_request_come_in_order() {
    let messages = trades(4);
    let double = SsiDouble::start(DoubleConfig {
        messages: messages.clone(),
        malformed_after: Some(1),
        error_after: Some((1, "quota exceeded".to_string())),
        reconnect_after: Some(2),
        ..DoubleConfig::default()
    })
    .await;

    let mut first = open_hub(&double).await;
    invoke(&mut first, "SwitchChannels", "X-TRADE:ALL", json!(0)).await;
    let mut frames = Vec::new();
    while frames.last() != Some(&Frame::Reconnect) {
        frames.push(next_significant(&mut first).await.expect("stream open"));
    }
    let broken = Frame::Broadcast(vec![r#"{"DataType":"X-TRADE","Content":"#.to_string()]);
    let expected = [
        Frame::Init,
        Frame::Reply(json!({ "I": "0" })),
        Frame::Broadcast(vec![messages[0].clone()]),
        Frame::Other("this is not JSON".to_string()),
        Frame::Other("[1,2,3]".to_string()),
        broken,
        Frame::HubError("quota exceeded".to_string()),
        Frame::Broadcast(vec![messages[1].clone()]),
        Frame::Reconnect,
    ];
    assert_eq!(frames, expected);

    // The rest goes to the next connection; the first stays open.
    let mut second = open_hub(&double).await;
    invoke(&mut second, "SwitchChannels", "X-TRADE:ALL", json!(0)).await;
    assert_eq!(read_messages(&mut second, 2).await, messages[2..]);
    let log = double.log();
    assert_eq!(log.open_connections, 2);
    assert_eq!(log.connections_closed_by_double, 0);
}

#[tokio::test]
async fn a_silent_connection_sends_nothing_until_the_client_moves_on() {
    let messages = trades(3);
    let double = SsiDouble::start(DoubleConfig {
        messages: messages.clone(),
        silent_after: Some(1),
        keepalive: Duration::from_millis(50),
        ..DoubleConfig::default()
    })
    .await;

    let mut first = open_hub(&double).await;
    invoke(&mut first, "SwitchChannels", "X-TRADE:ALL", json!(0)).await;
    assert_eq!(read_messages(&mut first, 1).await, messages[..1]);
    // Ten keep-alive periods without a single frame, not even a pong.
    first
        .send(Message::Ping(b"hello".to_vec().into()))
        .await
        .unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(500), first.next()).await;
    assert!(quiet.is_err(), "expected silence, got {quiet:?}");

    let mut second = open_hub(&double).await;
    invoke(&mut second, "SwitchChannels", "X-TRADE:ALL", json!(0)).await;
    assert_eq!(read_messages(&mut second, 2).await, messages[1..]);
    assert_eq!(next_frame(&mut second).await, Some(Frame::KeepAlive));

    drop(first);
    double
        .wait_until(|l| l.open_connections == 1, PATIENCE)
        .await;
}

#[tokio::test]
async fn held_messages_and_the_events_between_them_wait_for_release() {
    let messages = trades(4);
    let double = SsiDouble::start(DoubleConfig {
        messages: messages.clone(),
        hold: true,
        drop_after: vec![2],
        keepalive: Duration::from_millis(50),
        ..DoubleConfig::default()
    })
    .await;

    let mut first = open_hub(&double).await;
    invoke(&mut first, "SwitchChannels", "X-TRADE:ALL", json!(0)).await;
    assert_eq!(next_significant(&mut first).await, Some(Frame::Init));
    let reply = next_significant(&mut first).await;
    assert_eq!(reply, Some(Frame::Reply(json!({ "I": "0" }))));
    // Held: only keep-alives.
    assert_eq!(next_frame(&mut first).await, Some(Frame::KeepAlive));
    assert_eq!(double.log().messages_sent, 0);

    // The first two flow; the drop scripted after them waits for the third's release.
    double.release(2);
    assert_eq!(read_messages(&mut first, 2).await, messages[..2]);
    assert_eq!(next_frame(&mut first).await, Some(Frame::KeepAlive));
    assert_eq!(double.log().connections_closed_by_double, 0);

    double.release(4);
    assert_eq!(next_significant(&mut first).await, None);
    let mut second = open_hub(&double).await;
    invoke(&mut second, "SwitchChannels", "X-TRADE:ALL", json!(0)).await;
    assert_eq!(read_messages(&mut second, 2).await, messages[2..]);
}

#[tokio::test]
async fn routing_by_channel_sends_each_type_to_its_subscriber_in_global_order() {
    let messages = vec![
        trade("ACB", 1.0),
        index_value(1200.0),
        trade("FPT", 2.0),
        index_value(1201.0),
    ];
    let double = SsiDouble::start(DoubleConfig {
        messages: messages.clone(),
        route_by_channel: true,
        ..DoubleConfig::default()
    })
    .await;

    let mut trades_ws = open_hub(&double).await;
    invoke(
        &mut trades_ws,
        "SwitchChannels",
        "X-TRADE:ACB-FPT",
        json!(0),
    )
    .await;
    let mut index_ws = open_hub(&double).await;
    invoke(&mut index_ws, "SwitchChannels", "F:ALL,mi:VN30", json!(0)).await;

    let got_trades = read_messages(&mut trades_ws, 2).await;
    let got_index = read_messages(&mut index_ws, 2).await;
    assert_eq!(got_trades, [messages[0].clone(), messages[2].clone()]);
    assert_eq!(got_index, [messages[1].clone(), messages[3].clone()]);
    assert_eq!(decode(&got_index[1]).0, "MI");

    // Dropping the double ends every connection.
    let addr = double.addr;
    drop(double);
    assert_eq!(next_significant(&mut trades_ws).await, None);
    assert_eq!(next_significant(&mut index_ws).await, None);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener is still open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn routing_by_symbol_sends_only_what_was_subscribed_and_skips_the_rest() {
    let messages = vec![
        trade("ACB", 1.0),
        trade("AAA", 2.0),
        index_value(1200.0),
        trade("FPT", 3.0),
    ];
    let double = SsiDouble::start(DoubleConfig {
        messages: messages.clone(),
        route_by_symbol: true,
        ..DoubleConfig::default()
    })
    .await;

    let mut ws = open_hub(&double).await;
    invoke(&mut ws, "SwitchChannels", "X-TRADE:acb-FPT", json!(0)).await;
    // The index waits for its channel; AAA, whose type is subscribed without it, never comes.
    invoke(&mut ws, "SwitchChannels", "MI:vn30", json!(1)).await;
    let got = read_messages(&mut ws, 3).await;
    assert_eq!(
        got,
        [
            messages[0].clone(),
            messages[2].clone(),
            messages[3].clone()
        ]
    );
    let log = double.wait_until(|l| l.messages_sent == 3, PATIENCE).await;
    assert_eq!(log.unsubscribed, ["X-TRADE AAA"]);
}
