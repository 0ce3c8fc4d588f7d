//! The properties each fuzz target asserts.
//!
//! Each function takes libFuzzer's bytes, runs one decoder and panics, with
//! a message that says which promise broke, when the outcome is wrong. An
//! input the decoder rejects cleanly is fine: the [`Verdict`] says which
//! path it took, for the seed generator's self-check.

use std::cell::RefCell;
use std::io::{self, Read};

use gavel_schemas::capture::{
    CaptureError, CaptureReader, CaptureWriter, RECORD_BODY_BYTES_MAX, RECORD_HEAD_BYTES,
    SOURCE_BYTES_MAX,
};
use gavel_schemas::json::{self, Encoder, JsonError};
use gavel_schemas::verify::{self, STRATEGY_BIDS_BYTES_MAX, STRATEGY_BIDS_TABLES_MAX, VerifyError};

use crate::{meter, walk};

/// Which path a decoder took for an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Decoded, and every check on the result passed.
    Accepted,
    /// Refused with an error, as it should be for bad input.
    Rejected,
}

thread_local! {
    /// One encoder kept across inputs, as each server core keeps one: state
    /// leaking from one request into the next shows up as a difference from
    /// a fresh encoder's output.
    static ENCODER: RefCell<Encoder> = RefCell::new(Encoder::new());
}

/// The JSON -> flatbuffer step under test: the checked path the server
/// takes (it was `encoder.bid_request(json)` before that path existed).
fn encode<'e>(encoder: &'e mut Encoder, json: &[u8]) -> Result<&'e [u8], JsonError> {
    encoder
        .bid_request_checked(json)
        .map(|request| request.bytes())
}

/// `json_request`: OpenRTB JSON through the bridge.
///
/// - The reused encoder and a fresh one agree: both refuse, or both build
///   the same bytes.
/// - What `Encoder::bid_request_checked` accepts passes
///   `verify::bid_request_checked`: the encoder skips the verifier on bytes
///   it built itself (an `unsafe` promise), so this is what keeps that
///   sound, and both wire formats apply the same rules. It converts back
///   to JSON.
/// - What it refuses for a request rule (duplicate imp ids, negative
///   tmax), the flatbuffer path refuses for the same rule.
/// - Round trip: that JSON encodes again, and converts to the same JSON
///   (numbers compared as numbers: see [`same_json`]).
pub fn json_request(json: &[u8]) -> Verdict {
    let mut fresh = Encoder::new();
    let first = ENCODER.with_borrow_mut(|reused| {
        let reused = encode(reused, json);
        let fresh = encode(&mut fresh, json);
        match (reused, fresh) {
            (Err(error), Err(_)) => {
                same_rule_for_flatbuffers(&error, json);
                None
            }
            (Ok(reused), Ok(fresh)) => {
                assert!(
                    reused == fresh,
                    "the reused encoder built different bytes than a fresh one"
                );
                Some(request_to_json(reused, "the encoder's output"))
            }
            (reused, fresh) => panic!(
                "the reused encoder and a fresh one disagree: reused {:?}, fresh {:?}",
                reused.map(<[u8]>::len),
                fresh.map(<[u8]>::len)
            ),
        }
    });
    let Some(first) = first else {
        return Verdict::Rejected;
    };
    let again = encode(&mut fresh, &first).unwrap_or_else(|error| {
        panic!(
            "the bridge does not read the JSON it wrote: {error}\n{}",
            String::from_utf8_lossy(&first)
        )
    });
    let second = request_to_json(again, "the re-encoded output");
    assert!(
        same_json(&first, &second),
        "JSON -> flatbuffer -> JSON is not a fixed point:\n{}\n{}",
        String::from_utf8_lossy(&first),
        String::from_utf8_lossy(&second)
    );
    Verdict::Accepted
}

fn request_to_json(bytes: &[u8], what: &str) -> Vec<u8> {
    let request = verify::bid_request_checked(bytes)
        .unwrap_or_else(|error| panic!("{what} does not verify: {error}"));
    let mut out = Vec::new();
    json::bid_request_to_json(request.view(), &mut out)
        .unwrap_or_else(|error| panic!("{what} does not convert to JSON: {error}"));
    out
}

/// A JSON request refused for a request rule, as a flatbuffer, is refused
/// by `verify::bid_request_checked` for the same rule.
fn same_rule_for_flatbuffers(error: &JsonError, json: &[u8]) {
    if !matches!(
        error,
        JsonError::DuplicateImpId(_) | JsonError::NegativeTmax(_)
    ) {
        return;
    }
    let mut encoder = Encoder::new();
    let bytes = encoder.bid_request(json).unwrap_or_else(|unchecked| {
        panic!("refused for a rule ({error}), but the unchecked encoder says: {unchecked}")
    });
    match (error, verify::bid_request_checked(bytes)) {
        (JsonError::DuplicateImpId(a), Err(VerifyError::DuplicateImpId(b))) if *a == b => {}
        (JsonError::NegativeTmax(a), Err(VerifyError::NegativeTmax(b))) if *a == b => {}
        (_, flatbuffer) => panic!(
            "the JSON path refuses ({error}) but the flatbuffer path says {:?}",
            flatbuffer.map(|request| request.bytes().len())
        ),
    }
}

/// `flatbuffers_request`: an exchange's flatbuffer request.
///
/// - `verify::bid_request` accepts or refuses, never panics;
///   `verify::bid_request_checked` accepts exactly the same buffers except
///   those that break a request rule (duplicate imp ids, negative tmax).
/// - On a verified request, reading every field of every table (the JSON
///   writer's walk) never panics and fails only on an `ext` that is not
///   JSON text, which the sender is to blame for.
/// - The JSON it writes is well formed.
pub fn flatbuffers_request(bytes: &[u8]) -> Verdict {
    let checked = verify::bid_request_checked(bytes);
    let Ok(request) = verify::bid_request(bytes) else {
        assert!(
            checked.is_err(),
            "bid_request_checked accepts a buffer bid_request refuses"
        );
        return Verdict::Rejected;
    };
    match checked {
        Ok(checked) => assert!(checked.bytes() == bytes, "checked view of other bytes"),
        Err(VerifyError::DuplicateImpId(_) | VerifyError::NegativeTmax(_)) => {}
        Err(error) => panic!("verifies, but bid_request_checked refuses: {error}"),
    }
    let mut out = Vec::new();
    match json::bid_request_to_json(request, &mut out) {
        Ok(()) => {}
        Err(JsonError::BadExt(_)) => return Verdict::Accepted,
        Err(error) => panic!("a verified request does not convert to JSON: {error}"),
    }
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&out) {
        // An `ext` may legally nest as deep as serde_json reads (128); under
        // the request's own tables that can pass the checker's limit.
        assert!(
            error.to_string().starts_with("recursion limit exceeded"),
            "the walk wrote malformed JSON: {error}\n{}",
            String::from_utf8_lossy(&out)
        );
    }
    Verdict::Accepted
}

/// How far past the buffer size `verify` lets the apparent size of shared
/// sub-objects go: `max_apparent_size` in `schemas/src/verify.rs`.
const APPARENT_SIZE_FACTOR: usize = 2;

/// `strategy_bids`: a tenant strategy's answer.
///
/// - `verify::strategy_bids` accepts or refuses, never panics.
/// - On a verified answer, reading every field of every bid never panics,
///   and what the reader reads stays within the verifier's limits: at most
///   `STRATEGY_BIDS_TABLES_MAX` tables and twice `STRATEGY_BIDS_BYTES_MAX`
///   bytes, so a small hostile answer cannot cost the host unbounded time.
pub fn strategy_bids(bytes: &[u8]) -> Verdict {
    let Ok(answer) = verify::strategy_bids(bytes) else {
        return Verdict::Rejected;
    };
    let walked = walk::strategy_bids(answer);
    assert!(
        walked.tables <= STRATEGY_BIDS_TABLES_MAX,
        "the reader visited {} tables, over the verifier's limit of {STRATEGY_BIDS_TABLES_MAX}",
        walked.tables
    );
    let bytes_max = APPARENT_SIZE_FACTOR * STRATEGY_BIDS_BYTES_MAX;
    assert!(
        walked.bytes <= bytes_max,
        "the reader read {} bytes, over the verifier's apparent-size limit of {bytes_max}",
        walked.bytes
    );
    Verdict::Accepted
}

/// Heap the capture oracle may use beyond the reader's documented bound:
/// the reader and writer structs and the header's `String`.
const CAPTURE_OVERHEAD_BYTES: usize = 4 << 10;

/// `capture_reader`: a capture file, as `gavel-loadgen replay` reads it.
///
/// - The reader returns records and then the end or an error, never
///   panics, and yields at most one record per 17 bytes of file.
/// - Writing back the header and every record it returned with
///   `CaptureWriter` reproduces the file byte for byte up to where reading
///   stopped: the whole file when it ended cleanly.
/// - An error names the byte where the failing record starts (for the
///   header, where the problem is), and a truncation ends at the file's end.
/// - Memory: the reader's heap stays within its documented bound, one body
///   of at most `RECORD_BODY_BYTES_MAX` plus the header's source, whatever
///   lengths the file claims.
/// - The outcome does not depend on how the underlying reads are split.
pub fn capture_reader(file: &[u8]) -> Verdict {
    let (whole, peak_bytes) = meter::peak_bytes(|| read_and_rewrite(file, file.len()));
    // The rewrite buffer is preallocated to the file's size.
    let bound = file.len() + RECORD_BODY_BYTES_MAX + SOURCE_BYTES_MAX + CAPTURE_OVERHEAD_BYTES;
    assert!(
        peak_bytes <= bound,
        "reading a {}-byte capture took {peak_bytes} heap bytes, over the bound of {bound}",
        file.len()
    );
    let trickled = read_and_rewrite(Trickle::new(file), file.len());
    assert!(
        whole == trickled,
        "the outcome depends on how reads are split:\n{whole:?}\n{trickled:?}"
    );
    if let Err(_) | Ok(false) = &whole.end {
        return Verdict::Rejected;
    }
    Verdict::Accepted
}

/// What reading a capture gave, in a form two reads can be compared by.
#[derive(Debug, PartialEq, Eq)]
struct CaptureOutcome {
    /// The header and records written back.
    rewritten: Vec<u8>,
    records: usize,
    /// `Ok(true)`: ended at a record boundary; `Ok(false)`: the header
    /// failed; `Err`: a record failed, with the error's `Debug` text.
    end: Result<bool, String>,
}

fn read_and_rewrite(file: impl Read, file_bytes: usize) -> CaptureOutcome {
    let mut rewritten = Vec::with_capacity(file_bytes);
    let mut reader = match CaptureReader::new(file) {
        Ok(reader) => reader,
        Err(error) => {
            check_header_error(&error, file_bytes);
            return CaptureOutcome {
                rewritten,
                records: 0,
                end: Ok(false),
            };
        }
    };
    let mut writer = CaptureWriter::new(&mut rewritten, reader.header())
        .expect("a header the reader accepts can be written");
    assert_eq!(writer.position(), reader.position(), "header size");
    let records_max = file_bytes / RECORD_HEAD_BYTES;
    let mut records = 0;
    let end = loop {
        match reader.next_record() {
            Ok(Some(record)) => {
                records += 1;
                assert!(
                    records <= records_max,
                    "more than one record per {RECORD_HEAD_BYTES} bytes"
                );
                writer
                    .write(record.offset_ns, record.content_type, record.body)
                    .expect("a record the reader accepts can be written");
                assert_eq!(writer.position(), reader.position(), "record size");
            }
            Ok(None) => {
                assert_eq!(
                    writer.position(),
                    file_bytes as u64,
                    "a clean end before the end of the file"
                );
                break Ok(true);
            }
            Err(error) => {
                assert_eq!(
                    error.offset(),
                    writer.position(),
                    "the error does not name where the failing record starts: {error}"
                );
                if let CaptureError::TruncatedRecord { end, .. } = error {
                    assert_eq!(end, file_bytes as u64, "a truncation before the end");
                }
                break Err(format!("{error:?}"));
            }
        }
    };
    CaptureOutcome {
        rewritten,
        records,
        end,
    }
}

fn check_header_error(error: &CaptureError, file_bytes: usize) {
    assert!(
        error.offset() <= file_bytes as u64,
        "a header error past the end of the file: {error}"
    );
    if let CaptureError::TruncatedHeader { offset } = error {
        assert_eq!(*offset, file_bytes as u64, "a truncation before the end");
    }
}

/// A reader that hands out 1 to 7 bytes per call, in turn.
struct Trickle<'a> {
    rest: &'a [u8],
    calls: usize,
}

impl<'a> Trickle<'a> {
    /// Largest read; small reads make `read_full`'s loop go round.
    const CHUNK_BYTES_MAX: usize = 7;

    fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            calls: 0,
        }
    }
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        let chunk = 1 + self.calls % Self::CHUNK_BYTES_MAX;
        let n = chunk.min(buf.len()).min(self.rest.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

/// Whether two JSON texts are the same, comparing numbers by value.
///
/// serde_json parses floats fast but not always exactly (its
/// `float_roundtrip` feature is off), so a float written and read again
/// may move by an ulp or two; anything else must match byte for byte.
/// Numbers inside `ext` are copied as text and match exactly anyway.
pub fn same_json(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    let (mut a, mut b) = (Tokens::new(a), Tokens::new(b));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(Token::Number(x)), Some(Token::Number(y))) => {
                if !same_number(x, y) {
                    return false;
                }
            }
            (Some(Token::Other(x)), Some(Token::Other(y))) if x == y => {}
            _ => return false,
        }
    }
}

fn same_number(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    let parse = |text: &[u8]| std::str::from_utf8(text).ok()?.parse::<f64>().ok();
    let (Some(a), Some(b)) = (parse(a), parse(b)) else {
        return false;
    };
    // A few ulps, relative; absolute near zero, where subnormals lose
    // relative precision.
    const RELATIVE: f64 = 1e-13;
    const ABSOLUTE: f64 = 1e-300;
    let difference = (a - b).abs();
    difference <= RELATIVE * a.abs().max(b.abs()) || difference <= ABSOLUTE
}

enum Token<'a> {
    Number(&'a [u8]),
    /// One byte outside a number, or one whole string.
    Other(&'a [u8]),
}

struct Tokens<'a> {
    rest: &'a [u8],
}

impl<'a> Tokens<'a> {
    fn new(text: &'a [u8]) -> Self {
        Self { rest: text }
    }

    fn split(&mut self, at: usize) -> &'a [u8] {
        let (token, rest) = self.rest.split_at(at);
        self.rest = rest;
        token
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let first = *self.rest.first()?;
        let is_number = |byte: u8| byte.is_ascii_digit() || b"+-.eE".contains(&byte);
        if first == b'"' {
            let mut escaped = false;
            let mut end = self.rest.len();
            for (at, &byte) in self.rest.iter().enumerate().skip(1) {
                match byte {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => {
                        end = at + 1;
                        break;
                    }
                    _ => {}
                }
            }
            Some(Token::Other(self.split(end)))
        } else if first == b'-' || first.is_ascii_digit() {
            let end = self
                .rest
                .iter()
                .position(|&byte| !is_number(byte))
                .unwrap_or(self.rest.len());
            Some(Token::Number(self.split(end)))
        } else {
            Some(Token::Other(self.split(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::same_json;

    #[test]
    fn numbers_compare_by_value_and_the_rest_by_text() {
        assert!(same_json(br#"{"a":1.0}"#, br#"{"a":1.0}"#));
        assert!(same_json(
            br#"{"a":1.2345678901234567e-50,"b":"x"}"#,
            br#"{"a":1.2345678901234569e-50,"b":"x"}"#
        ));
        assert!(!same_json(br#"{"a":1.0}"#, br#"{"a":1.5}"#));
        assert!(!same_json(br#"{"a":"1.0"}"#, br#"{"a":"1.00"}"#));
        assert!(!same_json(br#"{"a":1}"#, br#"{"b":1}"#));
        assert!(!same_json(br#"{"a":1}"#, br#"{"a":1,"b":2}"#));
        assert!(same_json(br#"{"a":"\"1"}"#, br#"{"a":"\"1"}"#));
    }
}
