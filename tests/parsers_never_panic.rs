//! Property tests for every parser of outside input, bounded so they run in CI on every change
//! (the coverage-guided fuzz targets in `fuzz/` run the same parsers for as long as you like):
//! SSI messages, client frames, the upgrade handshake and permessage-deflate offers. Arbitrary
//! input must give a result or a typed refusal, never a panic; well-formed input must round-trip.

mod common;

use common::client_frame;
use http::{HeaderMap, HeaderName, HeaderValue};
use marketcast::broadcast::connection::read_client_frame;
use marketcast::broadcast::handshake;
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
