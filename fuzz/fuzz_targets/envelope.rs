//! Messages on the Redis channel, from a marketcast producer or anything else that publishes
//! there: any bytes decode to an envelope, a JSON body or a typed error, never a panic. A
//! decoded envelope encodes to the bytes it came from, and an envelope made from any fields
//! decodes to the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marketcast::bridge::envelope::{self, Envelope, Incoming};

fuzz_target!(|data: &[u8]| {
    match envelope::decode(data) {
        Ok(Incoming::Envelope(e)) => assert_eq!(e.encode(), data),
        Ok(Incoming::Json(body)) => {
            assert_eq!(body, data);
            assert!(!data.starts_with(&envelope::MAGIC));
        }
        Err(_) => {}
    }

    // The same bytes as fields: 24 bytes of numbers, one of where the message ends, the rest
    // the message (braced, as the decoder checks) and its compressed copy.
    let Some((numbers, rest)) = data.split_first_chunk::<25>() else {
        return;
    };
    let word = |at: usize| {
        let mut b = [0; 8];
        b.copy_from_slice(&numbers[at..at + 8]);
        b
    };
    let at = usize::from(numbers[24]) % (rest.len() + 1);
    let (body, deflated) = rest.split_at(at);
    let mut payload = vec![b'{'];
    payload.extend_from_slice(body);
    payload.push(b'}');
    let sent = Envelope {
        epoch: u64::from_be_bytes(word(0)),
        seq: u64::from_be_bytes(word(8)),
        ts_ms: i64::from_be_bytes(word(16)),
        payload: &payload,
        deflated: (!deflated.is_empty()).then_some(deflated),
        seal: None,
    };
    assert_eq!(
        envelope::decode(&sent.encode()),
        Ok(Incoming::Envelope(sent))
    );
});
