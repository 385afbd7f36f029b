//! The fast path: hand-written scanners for the exact shapes SSI's servers write.
//!
//! Almost every message on the stream is `{"DataType":"X","Content":"{\"RType\":...}"}`: an
//! envelope in one fixed spelling around a flat object of scalars encoded as a string. Parsing
//! that with serde_json means decoding the string (an escape every few bytes) and then parsing
//! it again; profiling put most of a message's cost there. So these scanners read that shape in
//! place, borrowing every value from the message text, and fill the same field table as the
//! general path ([`super::fields::Content`]).
//!
//! They only have to be right, not complete: each returns `None` (or defers to serde_json) on
//! anything it does not check completely (an escape inside a value, a nested value, another
//! spelling of the envelope), and the caller then takes the general path. That includes
//! anything that is not valid JSON (a number token serde_json refuses, a raw control character
//! inside a string `Content`): the fast path must never read a message the general path
//! refuses (`tests/ssi_paths_agree.rs`).

use std::borrow::Cow;

use super::fields::{assign, Content, Value};
use super::SsiError;

/// The envelope exactly as SSI's servers write it, `{"DataType":"X","Content":"..."}`, split
/// without a JSON pass: the content body is then scanned in place by [`scan_flat`], which
/// checks it completely. Any other spelling or order takes the general path.
pub(super) fn split_envelope(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(r#"{"DataType":""#)?;
    let end = rest.find(['"', '\\'])?;
    let (data_type, rest) = rest.split_at(end);
    if data_type.bytes().any(|c| c < 0x20) {
        // Not valid JSON: the general path says so.
        return None;
    }
    let body = rest
        .strip_prefix(r#"","Content":""#)?
        .strip_suffix(r#""}"#)?;
    Some((data_type, body))
}

/// Decodes a JSON string literal (quotes included) to its text.
///
/// SSI's `Content` is a whole JSON document inside a string, so it holds an escape every few
/// bytes (`\"`); serde_json's general string decoder spends most of the parse time on them.
/// This loop copies the runs between escapes in bulk. Anything unusual (a `\u` escape, a
/// control character) goes to serde_json, which stays the reference for correctness.
pub(super) fn unescape_string(raw: &str) -> Result<Cow<'_, str>, SsiError> {
    let slow = || -> Result<Cow<'_, str>, SsiError> {
        serde_json::from_str::<Cow<'_, str>>(raw).map_err(|e| SsiError::Json(e.to_string()))
    };
    let bytes = raw.as_bytes();
    if bytes.len() < 2 || bytes[0] != b'"' || bytes[bytes.len() - 1] != b'"' {
        return slow();
    }
    let body = &bytes[1..bytes.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let run = body[i..]
            .iter()
            .position(|&b| b == b'\\' || b == b'"' || b < 0x20)
            .map_or(body.len(), |p| i + p);
        out.extend_from_slice(&body[i..run]);
        if run == body.len() {
            break;
        }
        let escaped = match (body[run], body.get(run + 1)) {
            (b'\\', Some(b'"')) => b'"',
            (b'\\', Some(b'\\')) => b'\\',
            (b'\\', Some(b'/')) => b'/',
            (b'\\', Some(b'n')) => b'\n',
            (b'\\', Some(b't')) => b'\t',
            (b'\\', Some(b'r')) => b'\r',
            // \u escapes, a bare quote or control character: let serde_json decide.
            _ => return slow(),
        };
        out.push(escaped);
        i = run + 2;
    }
    // The input was a &str and only ASCII escapes were replaced by ASCII bytes.
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|e| SsiError::Json(e.to_string()))
}

/// The fast path: a flat object of scalars, scanned in place. `escaped` is true when the
/// object is the body of a JSON string (SSI's `Content`), where every quote reads `\"`.
/// Returns `None` for anything else (an escape inside a value, a nested value, odd spacing):
/// the caller then takes the general path, so this only has to be right, not complete.
pub(super) fn scan_flat(text: &str, escaped: bool) -> Option<Content<'_>> {
    let b = text.as_bytes();
    let quote_len = if escaped { 2 } else { 1 };
    // Compared byte by byte: a slice comparison would call memcmp for one or two bytes.
    let is_quote = |i: usize| {
        if escaped {
            b.get(i) == Some(&b'\\') && b.get(i + 1) == Some(&b'"')
        } else {
            b.get(i) == Some(&b'"')
        }
    };
    let mut i = 0;
    // Inside a JSON string (`escaped`) only a space may stand raw: a tab or a newline there
    // would have to be an escape, which declines.
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || !escaped && matches!(b[*i], b'\t' | b'\n' | b'\r'))
        {
            *i += 1;
        }
    };
    // A string's body: from after its opening quote to its closing quote, with no escape and no
    // control character (which JSON does not allow raw) in it.
    let string = |i: &mut usize| -> Option<&str> {
        let start = *i;
        let end = start
            + b[start..]
                .iter()
                .position(|&c| ENDS_STRING[usize::from(c)])?;
        if !is_quote(end) {
            return None;
        }
        *i = end + quote_len;
        text.get(start..end)
    };
    skip_ws(&mut i);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let mut c = Content::default();
    skip_ws(&mut i);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            skip_ws(&mut i);
            if !is_quote(i) {
                return None;
            }
            i += quote_len;
            let key = string(&mut i)?;
            skip_ws(&mut i);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i += 1;
            skip_ws(&mut i);
            let value = match *b.get(i)? {
                _ if is_quote(i) => {
                    i += quote_len;
                    Value::Str(Cow::Borrowed(string(&mut i)?))
                }
                b'n' if b[i..].starts_with(b"null") => {
                    i += 4;
                    Value::Null
                }
                b't' if b[i..].starts_with(b"true") => {
                    i += 4;
                    Value::Bool(true)
                }
                b'f' if b[i..].starts_with(b"false") => {
                    i += 5;
                    Value::Bool(false)
                }
                b'-' | b'0'..=b'9' => {
                    let start = i;
                    i += plain_number_len(&b[start..])?;
                    Value::NumberText(text.get(start..i)?)
                }
                _ => return None,
            };
            assign(&mut c, key.as_bytes(), value);
            skip_ws(&mut i);
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    skip_ws(&mut i);
    (i == b.len()).then_some(c)
}

/// The bytes that end a string's body for the scanner: its closing quote, an escape (which
/// declines), and the control characters JSON does not allow raw (which decline too). A table,
/// so the scan stays one load and one test per byte.
const ENDS_STRING: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        table[c] = true;
        c += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// The longest number token the scanner reads itself: 300 digits stay below `f64::MAX`
/// (about 1.8e308), so no token it reads can overflow.
const LONGEST_PLAIN_NUMBER: usize = 300;

/// The length of the number at the start of `b`, when it is one as JSON writes it without an
/// exponent (`-?(0|[1-9][0-9]*)(\.[0-9]+)?`) and at most [`LONGEST_PLAIN_NUMBER`] long; `None`
/// for anything else, which the general path then reads or refuses.
///
/// Checked in the one pass that finds the number's end: a run serde_json would refuse (`01`,
/// `1-2`, `1.`) must be refused here too, or the fast path would read a message the general
/// path rejects; an exponent or a very long number may overflow an f64, which serde_json
/// refuses and `str::parse` reads as infinity (SSI writes neither).
fn plain_number_len(b: &[u8]) -> Option<usize> {
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    let mut i = usize::from(b.first() == Some(&b'-'));
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return None;
        }
    }
    // What follows must end the number: another number character means an exponent, or a
    // run that is not a JSON number (`01`, `1-2`, `1.2.3`, `0+`).
    if matches!(
        b.get(i),
        Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
    ) {
        return None;
    }
    (i <= LONGEST_PLAIN_NUMBER).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_tokens_are_checked_as_json_does() {
        // Read here: plain JSON numbers, whole, up to the character that ends them.
        for token in ["0", "-0", "22950.0", "1.03", "-12.6"] {
            assert!(serde_json::from_str::<f64>(token).is_ok(), "{token}");
            for end in ["", ",", "}", " "] {
                let text = format!("{token}{end}");
                assert_eq!(
                    plain_number_len(text.as_bytes()),
                    Some(token.len()),
                    "{text}"
                );
            }
        }
        // Left to the general path: numbers JSON allows but that may overflow an f64 read
        // here (exponents, very long ones)...
        for token in ["1e5", "1.5E-3", "2e+10"] {
            assert!(serde_json::from_str::<f64>(token).is_ok(), "{token}");
            assert_eq!(plain_number_len(token.as_bytes()), None, "{token}");
        }
        assert_eq!(plain_number_len("9".repeat(301).as_bytes()), None);
        assert_eq!(plain_number_len("9".repeat(300).as_bytes()), Some(300));
        // ...and every run that is not a JSON number, which serde_json refuses too.
        for token in [
            "01", "00.0", "-", "1.", "1e", "1-2", "0+", "--1", "1.2.3", "1e5e5", "",
        ] {
            assert_eq!(plain_number_len(token.as_bytes()), None, "{token}");
            assert!(serde_json::from_str::<f64>(token).is_err(), "{token}");
        }
    }

    #[test]
    fn the_scanner_declines_what_is_not_json() {
        assert!(scan_flat(r#"{"LastPrice":01}"#, false).is_none());
        assert!(scan_flat(r#"{\"LastPrice\":1-2}"#, true).is_none());
        assert!(scan_flat(r#"{"LastPrice":1e310}"#, false).is_none());
        assert!(scan_flat(&format!(r#"{{"LastPrice":{}}}"#, "9".repeat(310)), false).is_none());
        assert!(scan_flat("{\\\"Symbol\\\":\\\"F\tPT\\\"}", true).is_none());
        assert!(scan_flat("{\\\"Symbol\\\":\n\\\"FPT\\\"}", true).is_none());
        assert!(scan_flat("{\"Symbol\":\n\"FPT\"}", false).is_some());
        assert!(split_envelope("{\"DataType\":\"R\t\",\"Content\":\"{}\"}").is_none());
    }

    #[test]
    fn fast_unescape_agrees_with_serde_json() {
        for literal in [
            r#""plain""#,
            r#""{\"RType\":\"X\",\"S\":\"a\\\\b\/c\nd\te\r\"}""#,
            r#""caf\u00e9 \ud83d\ude00""#,
            r#""é and ü stay as they are""#,
            r#""""#,
        ] {
            let expected: String = serde_json::from_str(literal).unwrap();
            assert_eq!(unescape_string(literal).unwrap(), expected, "{literal}");
        }
        assert!(unescape_string(r#""bad \x escape""#).is_err());
        assert!(unescape_string("\"unterminated").is_err());
    }
}
