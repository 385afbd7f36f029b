//! Replay files: recorded SSI messages, one per line.
//!
//! A line is the message exactly as the stream delivered it (the envelope JSON), optionally
//! preceded by the time it was received and a tab:
//!
//! ```text
//! 2026-11-26T09:15:00.125000+07:00<TAB>{"DataType":"X-TRADE","Content":"{\"RType\":...}"}
//! ```
//!
//! Blank lines and lines starting with `#` are skipped. A bad time prefix is an error of the
//! file (with its line number); a bad message is the message's problem and is left to the SSI
//! parser, which counts it and moves on.

use std::io::BufRead;

use crate::base::time::Timestamp;

/// How fast a replay plays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReplaySpeed {
    /// Recorded gaps divided by this factor.
    Factor(f64),
    /// No waiting at all.
    Max,
}

/// A problem with the replay file itself.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be read (includes invalid UTF-8).
    #[error("line {line}: cannot read: {source}")]
    Io {
        line: usize,
        #[source]
        source: std::io::Error,
    },
    /// The text before the tab is not an RFC 3339 time.
    #[error("line {line}: the time before the tab is not RFC 3339: {text:?}")]
    BadTime { line: usize, text: String },
}

/// One recorded message.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayLine {
    /// 1-based line number in the file.
    pub line: usize,
    /// When it was received, if recorded.
    pub at: Option<Timestamp>,
    /// The message text.
    pub message: String,
}

/// Splits a line into its optional time and its message, borrowing the message; `None` for
/// blank and comment lines.
pub fn split_line(
    line_no: usize,
    line: &str,
) -> Result<Option<(Option<Timestamp>, &str)>, ReplayError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    match line.split_once('\t') {
        Some((time, rest)) if !time.trim_start().starts_with(['{', '"']) => {
            let at = Timestamp::parse_rfc3339(time.trim()).map_err(|_| ReplayError::BadTime {
                line: line_no,
                text: time.chars().take(40).collect(),
            })?;
            Ok(Some((Some(at), rest)))
        }
        _ => Ok(Some((None, line))),
    }
}

/// Splits a line into its optional time and its message; `None` for blank and comment lines.
pub fn parse_line(line_no: usize, line: &str) -> Result<Option<ReplayLine>, ReplayError> {
    Ok(split_line(line_no, line)?.map(|(at, message)| ReplayLine {
        line: line_no,
        at,
        message: message.to_string(),
    }))
}

/// Formats a line of the replay format.
pub fn format_line(at: Timestamp, message: &str) -> String {
    format!("{at}\t{message}")
}

/// Iterates over the messages of a replay file.
pub struct ReplayReader<R> {
    reader: R,
    line: usize,
    buf: String,
}

impl<R: BufRead> ReplayReader<R> {
    /// Reads from any buffered reader.
    pub fn new(reader: R) -> Self {
        ReplayReader {
            reader,
            line: 0,
            buf: String::new(),
        }
    }
}

impl<R: BufRead> Iterator for ReplayReader<R> {
    type Item = Result<ReplayLine, ReplayError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            self.line += 1;
            match self.reader.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => match parse_line(self.line, &self.buf) {
                    Ok(Some(l)) => return Some(Ok(l)),
                    Ok(None) => continue,
                    Err(e) => return Some(Err(e)),
                },
                Err(source) => {
                    return Some(Err(ReplayError::Io {
                        line: self.line,
                        source,
                    }))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_and_without_time() {
        let text = "# recorded\n\n2026-11-26T09:15:00.125000+07:00\t{\"RType\":\"MI\"}\n{\"RType\":\"R\"}\n";
        let lines: Vec<_> = ReplayReader::new(text.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].line, 3);
        assert_eq!(
            lines[0].at.unwrap().to_string(),
            "2026-11-26T09:15:00.125000+07:00"
        );
        assert_eq!(lines[0].message, "{\"RType\":\"MI\"}");
        assert_eq!((lines[1].line, lines[1].at), (4, None));
    }

    #[test]
    fn a_tab_inside_the_json_is_not_a_time() {
        let l = parse_line(1, "{\"a\":\"x\ty\"}").unwrap().unwrap();
        assert_eq!(l.at, None);
    }

    #[test]
    fn bad_time_and_bad_bytes_name_the_line() {
        let err = parse_line(7, "yesterday\t{}").unwrap_err();
        assert!(err.to_string().starts_with("line 7:"), "{err}");
        let bytes: &[u8] = b"{}\n\xff\xfe\n";
        let results: Vec<_> = ReplayReader::new(bytes).collect();
        assert!(results[0].is_ok());
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(err.starts_with("line 2: cannot read"), "{err}");
    }

    #[test]
    fn format_round_trips() {
        let at = Timestamp::from_local(2026, 11, 26, 9, 15, 0).unwrap();
        let line = format_line(at, "{}");
        assert_eq!(parse_line(1, &line).unwrap().unwrap().at, Some(at));
    }
}
