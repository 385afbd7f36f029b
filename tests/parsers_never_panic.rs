//! Property tests for every parser of outside input, bounded so they run in CI on every change
//! (the coverage-guided fuzz targets in `fuzz/` run the same parsers for as long as you like):
//! SSI messages, client frames, the upgrade handshake, permessage-deflate offers, delta messages
//! (the Fossil decoder and the client's `Rebuilder`), SignalR frames and the Redis envelope.
//! Arbitrary input must give a result or a typed refusal, never a panic; well-formed input must
//! round-trip.

mod common;

use common::client_frame;
use http::{HeaderMap, HeaderName, HeaderValue};
use marketcast::bridge::envelope;
use marketcast::broadcast::connection::read_client_frame;
use marketcast::broadcast::delta::{self, Rebuilder};
use marketcast::broadcast::handshake;
use marketcast::feed::ssi::signalr;
use marketcast::feed::ssi::{parse_message, Message};
use proptest::prelude::*;

const TRADE: &str = r#"{"DataType":"X-TRADE","Content":"{\"RType\":\"X-TRADE\",\"TradingDate\":\"14/08/2023\",\"Time\":\"14:07:53\",\"Symbol\":\"ACB\",\"Ceiling\":24500.0,\"Floor\":21300.0,\"RefPrice\":22900.0,\"LastPrice\":22950.0,\"LastVol\":100.0,\"TotalVal\":201713015000.0,\"TotalVol\":8797700.0,\"TradingSession\":\"LO\",\"Side\":\"SD\"}"}"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn ssi_parser_takes_any_text(text in ".{0,400}") {
        let _ = parse_message(&text);
    }

    #[test]
    fn ssi_parser_takes_any_mutation_of_a_real_message(
        at in 0usize..TRADE.len(),
        cut in 0usize..TRADE.len(),
        insert in "[\\\\\"{}:,0-9a-zA-Z.\\- ]{0,8}",
    ) {
        let mut text = TRADE.to_string();
        let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text.insert_str(at, &insert);
        let _ = parse_message(&text);
        let cut = (0..=cut.min(text.len())).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let _ = parse_message(&text[..cut]);
    }

    #[test]
    fn numbers_of_any_kind_in_a_field_give_an_event_or_a_named_field(
        value in prop_oneof![
            "-?[0-9]{1,25}(\\.[0-9]{0,12})?(e-?[0-9]{1,3})?",
            "\\\\\"[^\\\\\"]{0,12}\\\\\"",
            Just("null".to_string()),
            Just("true".to_string()),
            Just("[]".to_string()),
        ]
    ) {
        let text = TRADE.replace("22950.0", &value);
        match parse_message(&text) {
            Ok(Message::Event(_)) | Ok(Message::Skipped { .. }) => {}
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn frame_reader_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300), deflate: bool) {
        let mut buf = &bytes[..];
        while let Ok(Some((_, used))) = read_client_frame(buf, deflate, 0, 4096) {
            prop_assert!(used > 0 && used <= buf.len());
            buf = &buf[used..];
        }
    }

    #[test]
    fn well_formed_frames_round_trip_in_any_split(
        // Small payloads, and some past 65,535 bytes for the 64-bit length form.
        payload in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            proptest::collection::vec(any::<u8>(), 65_530..66_000),
        ],
        mask: [u8; 4],
        fin: bool,
        split in 0usize..70_010,
    ) {
        let first = if fin { 0x81 } else { 0x01 };
        let frame = client_frame(first, Some(mask), &payload);
        let split = split.min(frame.len());
        // Any prefix asks for more; the whole frame reads back exactly.
        if split < frame.len() {
            prop_assert_eq!(read_client_frame(&frame[..split], false, 0, 1 << 20), Ok(None));
        }
        let (read, used) = read_client_frame(&frame, false, 0, 1 << 20).unwrap().unwrap();
        prop_assert_eq!(used, frame.len());
        prop_assert_eq!(read.fin, fin);
        prop_assert_eq!(read.payload, payload);
    }

    #[test]
    fn handshake_takes_any_header_values(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6)) {
        const NAMES: [&str; 5] = ["upgrade", "connection", "sec-websocket-version", "sec-websocket-key", "sec-websocket-extensions"];
        let mut headers = HeaderMap::new();
        for (i, v) in values.iter().enumerate() {
            if let Ok(value) = HeaderValue::from_bytes(v) {
                headers.append(HeaderName::from_static(NAMES[i % NAMES.len()]), value);
            }
        }
        if let Err(e) = handshake::accept(&headers, true) {
            prop_assert!(matches!(e.status(), 400 | 426));
        }
    }

    #[test]
    fn any_valid_key_is_accepted_with_the_rfc_s_answer(key: [u8; 16], extensions in "[a-z_=; ,0-9-]{0,60}") {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD.encode(key);
        let mut headers = HeaderMap::new();
        headers.insert("upgrade", HeaderValue::from_static("websocket"));
        headers.insert("connection", HeaderValue::from_static("keep-alive, Upgrade"));
        headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
        headers.insert("sec-websocket-key", HeaderValue::from_str(&key).unwrap());
        headers.insert("sec-websocket-extensions", HeaderValue::from_str(&extensions).unwrap());
        let accepted = handshake::accept(&headers, true).unwrap();
        prop_assert_eq!(accepted.accept, handshake::accept_key(&key));
    }

    #[test]
    fn deflate_offer_parser_takes_any_text(offer in ".{0,120}") {
        let _ = handshake::acceptable_deflate_offer(&offer);
    }
}

#[test]
fn the_rfc_6455_example_key() {
    // Section 1.3 of RFC 6455.
    assert_eq!(
        handshake::accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert!(handshake::acceptable_deflate_offer("permessage-deflate"));
    assert!(handshake::acceptable_deflate_offer(
        "permessage-deflate; client_max_window_bits"
    ));
}

// Delta messages (`?delta=fossil`): the Fossil decoder and the client's `Rebuilder` read bytes a
// server (or anyone on the wire) sent. Any delta gives bytes or a typed error, never a panic,
// and never more bytes than the delta declares or than `MAX_OUTPUT`; a delta made by `encode`
// rebuilds its target exactly.

/// A number in Fossil's base-64 digits (the most significant first).
fn fossil_number(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n & 63) as usize]);
        n >>= 6;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}

/// One command of a hand-made delta.
#[derive(Debug, Clone)]
enum DeltaOp {
    /// `n@offset,`: copy from the base.
    Copy(u64, u64),
    /// `n:bytes`: literal bytes (the count may disagree with the bytes that follow).
    Insert(u64, Vec<u8>),
    /// `n;`: the end, with a checksum.
    End(u64),
    /// A byte where a command should be.
    Junk(u8),
}

fn delta_op() -> impl Strategy<Value = DeltaOp> {
    // Small counts mostly (commands that may apply), some of any size (the caps).
    let count =
        prop_oneof![4 => 0u64..80, 1 => any::<u32>().prop_map(u64::from), 1 => any::<u64>()];
    prop_oneof![
        (count.clone(), count.clone()).prop_map(|(n, at)| DeltaOp::Copy(n, at)),
        (count.clone(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(n, b)| DeltaOp::Insert(n, b)),
        count.prop_map(DeltaOp::End),
        any::<u8>().prop_map(DeltaOp::Junk),
    ]
}

/// A delta that declares `size` and runs `ops`.
fn hand_made_delta(size: u64, ops: &[DeltaOp]) -> Vec<u8> {
    let mut d = format!("{}\n", fossil_number(size)).into_bytes();
    for op in ops {
        match op {
            DeltaOp::Copy(n, at) => {
                d.extend(format!("{}@{},", fossil_number(*n), fossil_number(*at)).bytes())
            }
            DeltaOp::Insert(n, bytes) => {
                d.extend(format!("{}:", fossil_number(*n)).bytes());
                d.extend_from_slice(bytes);
            }
            DeltaOp::End(sum) => d.extend(format!("{};", fossil_number(*sum)).bytes()),
            DeltaOp::Junk(b) => d.push(*b),
        }
    }
    d
}

/// Fossil's checksum, written again from the format's description: the sum of the output as
/// big-endian 32-bit words, the last one padded with zeros.
fn fossil_checksum(data: &[u8]) -> u32 {
    data.chunks(4).fold(0u32, |sum, word| {
        let mut w = [0u8; 4];
        w[..word.len()].copy_from_slice(word);
        sum.wrapping_add(u32::from_be_bytes(w))
    })
}

/// One command of a well-formed delta.
#[derive(Debug, Clone)]
enum WellFormedOp {
    /// Copy `n` bytes from `offset` of the base (which may be past its end).
    Copy(usize, usize),
    /// Insert these bytes.
    Insert(Vec<u8>),
    /// The end, with the right checksum or a wrong one.
    End(bool),
}

fn well_formed_op() -> impl Strategy<Value = WellFormedOp> {
    prop_oneof![
        4 => (0usize..80, 0usize..250).prop_map(|(n, at)| WellFormedOp::Copy(n, at)),
        4 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(WellFormedOp::Insert),
        1 => any::<bool>().prop_map(WellFormedOp::End),
    ]
}

/// A delta of `ops` declaring `size` (or, when `None`, the size the commands make), and what
/// Fossil's format says applying it to `base` gives: the output, or `None` for an error.
fn delta_and_model(
    base: &[u8],
    size: Option<usize>,
    ops: &[WellFormedOp],
) -> (Vec<u8>, Option<Vec<u8>>) {
    let made: usize = ops
        .iter()
        .take_while(|op| !matches!(op, WellFormedOp::End(_)))
        .map(|op| match op {
            WellFormedOp::Copy(n, _) => *n,
            WellFormedOp::Insert(bytes) => bytes.len(),
            WellFormedOp::End(_) => 0,
        })
        .sum();
    let size = size.unwrap_or(made);
    let mut d = format!("{}\n", fossil_number(size as u64)).into_bytes();
    let mut out = Vec::new();
    let mut failed = false;
    for op in ops {
        match op {
            WellFormedOp::Copy(n, at) => {
                d.extend(
                    format!(
                        "{}@{},",
                        fossil_number(*n as u64),
                        fossil_number(*at as u64)
                    )
                    .bytes(),
                );
                match base.get(*at..at + n) {
                    Some(piece) if out.len() + n <= size => out.extend_from_slice(piece),
                    _ => failed = true,
                }
            }
            WellFormedOp::Insert(bytes) => {
                d.extend(format!("{}:", fossil_number(bytes.len() as u64)).bytes());
                d.extend_from_slice(bytes);
                if out.len() + bytes.len() <= size {
                    out.extend_from_slice(bytes);
                } else {
                    failed = true;
                }
            }
            WellFormedOp::End(right) => {
                let sum = fossil_checksum(&out).wrapping_add(u32::from(!right));
                d.extend(format!("{};", fossil_number(u64::from(sum))).bytes());
                let ok = !failed && *right && out.len() == size;
                return (d, ok.then_some(out));
            }
        }
        if failed {
            // The decoder stops at the first bad command; what follows is never read.
            return (d, None);
        }
    }
    (d, None)
}

/// A text and an edited copy of it (cuts, insertions and a repeated piece), as two ticks are.
fn text_and_edit() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (
        proptest::collection::vec(any::<u8>(), 0..3000),
        proptest::collection::vec(
            (
                any::<usize>(),
                0usize..64,
                proptest::collection::vec(any::<u8>(), 0..64),
            ),
            0..8,
        ),
    )
        .prop_map(|(a, edits)| {
            let mut b = a.clone();
            for (at, cut, insert) in edits {
                let at = if b.is_empty() { 0 } else { at % (b.len() + 1) };
                let end = (at + cut).min(b.len());
                b.splice(at..end, insert);
                // And a piece of the old text again further on.
                if !a.is_empty() {
                    let from = at % a.len();
                    let piece = a[from..(from + cut).min(a.len())].to_vec();
                    b.extend_from_slice(&piece);
                }
            }
            (a, b)
        })
}

/// A tick message with `seq` and `body`, as the server stamps them.
fn tick(seq: u64, body: &[u8]) -> Vec<u8> {
    let mut m = format!("{{\"seq\":{seq},\"ts\":1700000000000,\"q\":\"").into_bytes();
    m.extend_from_slice(body);
    m.extend_from_slice(b"\"}");
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn fossil_decoder_takes_any_bytes(
        base in proptest::collection::vec(any::<u8>(), 0..200),
        d in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        if let Ok(out) = delta::apply(&base, &d) {
            prop_assert!(out.len() <= delta::MAX_OUTPUT);
        }
    }

    #[test]
    fn fossil_decoder_takes_any_commands_and_keeps_to_the_declared_size(
        base in proptest::collection::vec(any::<u8>(), 0..200),
        size in prop_oneof![4 => 0u64..400, 1 => any::<u64>()],
        ops in proptest::collection::vec(delta_op(), 0..12),
    ) {
        match delta::apply(&base, &hand_made_delta(size, &ops)) {
            Ok(out) => {
                prop_assert_eq!(out.len() as u64, size);
                prop_assert!(out.len() <= delta::MAX_OUTPUT);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        // More than MAX_OUTPUT is refused whatever follows.
        let too_big = delta::MAX_OUTPUT as u64 + 1 + size;
        prop_assert!(delta::apply(&base, &hand_made_delta(too_big, &ops)).is_err());
    }

    #[test]
    fn fossil_decoder_does_what_the_format_says(
        base in proptest::collection::vec(any::<u8>(), 0..200),
        size in prop_oneof![3 => Just(None), 1 => (0usize..400).prop_map(Some)],
        ops in proptest::collection::vec(well_formed_op(), 0..12),
    ) {
        let (d, expected) = delta_and_model(&base, size, &ops);
        match (delta::apply(&base, &d), expected) {
            (Ok(out), Some(expected)) => prop_assert_eq!(out, expected),
            (Err(_), None) => {}
            (got, expected) => prop_assert!(false, "{:?} for {:?}, expected {:?}", got, d, expected),
        }
    }

    #[test]
    fn fossil_decoder_takes_any_mutation_of_a_real_delta(
        (a, b) in text_and_edit(),
        at: usize,
        byte: u8,
        cut: usize,
    ) {
        let mut d = delta::encode(&a, &b);
        let at = at % d.len();
        d[at] = byte;
        let cut = cut % (d.len() + 1);
        for d in [&d[..], &d[..cut]] {
            if let Ok(out) = delta::apply(&a, d) {
                prop_assert!(out.len() <= delta::MAX_OUTPUT);
            }
        }
    }

    #[test]
    fn a_delta_rebuilds_its_target_exactly(
        (a, b) in prop_oneof![
            text_and_edit(),
            (proptest::collection::vec(any::<u8>(), 0..600), proptest::collection::vec(any::<u8>(), 0..600)),
        ],
    ) {
        prop_assert_eq!(delta::apply(&a, &delta::encode(&a, &b)), Ok(b.clone()));
        prop_assert_eq!(delta::apply(&b, &delta::encode(&b, &a)), Ok(a));
    }

    #[test]
    fn rebuilder_takes_any_messages(
        messages in proptest::collection::vec(
            (any::<bool>(), prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..120),
                // A header line that parses, then any delta.
                (0u64..4, 0u64..4, proptest::collection::vec(any::<u8>(), 0..60)).prop_map(|(seq, base, d)| delta::message(seq, 0, base, &d)),
                (0u64..4, proptest::collection::vec(any::<u8>(), 0..60)).prop_map(|(seq, body)| tick(seq, &body)),
            ]),
            0..12,
        ),
    ) {
        let mut rebuild = Rebuilder::default();
        for (binary, payload) in messages {
            if binary {
                if let Ok(message) = rebuild.delta(&payload) {
                    prop_assert!(message.len() <= delta::MAX_OUTPUT);
                }
            } else {
                rebuild.full(&payload);
            }
        }
    }

    #[test]
    fn rebuilder_rebuilds_every_tick_of_a_chain(
        bodies in proptest::collection::vec(proptest::collection::vec(b'a'..=b'z', 0..400), 1..8),
        first_seq in 1u64..1_000_000,
    ) {
        let ticks: Vec<Vec<u8>> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| tick(first_seq + i as u64, body))
            .collect();
        let mut rebuild = Rebuilder::default();
        rebuild.full(&ticks[0]);
        for (i, pair) in ticks.windows(2).enumerate() {
            let seq = first_seq + i as u64 + 1;
            let payload = delta::message(seq, 0, seq - 1, &delta::encode(&pair[0], &pair[1]));
            prop_assert_eq!(rebuild.delta(&payload), Ok(pair[1].clone()));
        }
        // A delta against a message it does not have is refused.
        let stale = delta::message(first_seq + 100, 0, first_seq + 50, &delta::encode(&ticks[0], &ticks[0]));
        prop_assert!(rebuild.delta(&stale).is_err());
    }
}

// SignalR frames from SSI's stream (`feed::ssi::signalr`): any text gives a frame or a typed error,
// never a panic; frames of SignalR's shapes read back as what they carry.

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("[A-Z]{1,2}|.{0,4}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// An object with SignalR's keys (`C`, `S`, `M`, `T`, `I`, `E`, `R`, `G`) holding any values.
fn signalr_like_frame() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        (
            prop::sample::select(vec!["C", "S", "M", "T", "I", "E", "R", "G", "H", "A"]),
            json_value(),
        ),
        0..6,
    )
    .prop_map(|kv| {
        serde_json::Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            .to_string()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn signalr_frame_parser_takes_any_text(text in prop_oneof![".{0,200}", signalr_like_frame()]) {
        if let Err(e) = signalr::parse_frame(&text) {
            prop_assert!(!e.to_string().is_empty());
        }
        if let Err(e) = signalr::Negotiation::parse(&text) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn signalr_frame_parser_takes_any_cut_of_a_real_frame(cut in 0usize..400, at in 0usize..400, byte in "[\\[\\]{}\":,0-9a-zA-Z\\\\ ]") {
        const DATA: &str = r#"{"C":"d-1-A,0|B,1|C,1|D,0","M":[{"H":"fcmarketdatav2hub","M":"broadcast","A":["{\"DataType\":\"X-TRADE\",\"Content\":\"{\\\"RType\\\":\\\"X-TRADE\\\"}\"}"]},{"H":"FcMarketDataV2Hub","M":"Error","A":["quota exceeded"]}]}"#;
        let mut text = DATA.to_string();
        text.insert_str(at % (text.len() + 1), &byte);
        let _ = signalr::parse_frame(&text[..cut.min(text.len())]);
    }

    #[test]
    fn signalr_data_frames_carry_their_calls(
        calls in proptest::collection::vec(("[a-zA-Z]{0,12}", "[a-zA-Z]{0,12}", proptest::collection::vec(json_value(), 0..3)), 0..4),
        reconnect: bool,
        message_id in "[a-zA-Z0-9,|-]{0,20}",
    ) {
        let raw: Vec<serde_json::Value> = calls
            .iter()
            .map(|(h, m, a)| serde_json::json!({ "H": h, "M": m, "A": a }))
            .collect();
        let mut frame = serde_json::json!({ "C": message_id, "M": raw });
        if reconnect {
            frame["T"] = 1.into();
        }
        let expected: Vec<signalr::HubCall> = calls
            .into_iter()
            .map(|(hub, method, args)| signalr::HubCall { hub, method, args })
            .collect();
        prop_assert_eq!(
            signalr::parse_frame(&frame.to_string()),
            Ok(signalr::ServerFrame::Data { calls: expected, reconnect })
        );
    }

    #[test]
    fn signalr_results_carry_their_id_and_error(id in ".{0,16}", error in proptest::option::of(".{0,30}")) {
        let mut frame = serde_json::json!({ "I": id });
        if let Some(e) = &error {
            frame["E"] = e.clone().into();
        }
        prop_assert_eq!(
            signalr::parse_frame(&frame.to_string()),
            Ok(signalr::ServerFrame::Result { id, error, value: None })
        );
    }
}

// The Redis envelope (`bridge::envelope`): any pub/sub message decodes to an envelope, a JSON
// body or a typed error, never a panic; an envelope's bytes decode to the same envelope, and a
// decoded envelope encodes to the bytes it came from.

/// Bytes that start with the envelope's magic most of the time, so the header is reached.
fn pubsub_message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80),
        (
            proptest::collection::vec(any::<u8>(), 0..60),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..60),
            any::<bool>()
        )
            .prop_map(|(header, len, body, object)| {
                let mut m = envelope::MAGIC.to_vec();
                m.extend_from_slice(&header[..header.len().min(24)]);
                if header.len() >= 24 {
                    // A length that fits the body now and then.
                    let len = if len % 2 == 0 {
                        (len as usize % (body.len() + 1)) as u32
                    } else {
                        len
                    };
                    m.extend_from_slice(&len.to_be_bytes());
                }
                if object {
                    m.push(b'{');
                    m.extend_from_slice(&body);
                    m.push(b'}');
                } else {
                    m.extend_from_slice(&body);
                }
                m
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn envelope_decoder_takes_any_bytes(message in pubsub_message()) {
        match envelope::decode(&message) {
            Ok(envelope::Incoming::Envelope(e)) => prop_assert_eq!(e.encode(), message),
            Ok(envelope::Incoming::Json(body)) => {
                prop_assert_eq!(body, &message[..]);
                prop_assert!(!message.starts_with(&envelope::MAGIC));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn envelopes_round_trip(
        epoch: u64,
        seq: u64,
        ts_ms: i64,
        body in proptest::collection::vec(any::<u8>(), 0..200),
        deflated in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..200)),
    ) {
        let mut payload = vec![b'{'];
        payload.extend_from_slice(&body);
        payload.push(b'}');
        let sent = envelope::Envelope { epoch, seq, ts_ms, payload: &payload, deflated: deflated.as_deref(), seal: None };
        let bytes = sent.encode();
        prop_assert_eq!(envelope::decode(&bytes), Ok(envelope::Incoming::Envelope(sent)));
        // An envelope cut inside its message is refused, never read as a shorter one.
        let cut = bytes.len() - deflated.as_ref().map_or(0, Vec::len) - 1;
        prop_assert!(envelope::decode(&bytes[..cut]).is_err());
    }
}
