//! JSON lines to capture: one OpenRTB request per line.
//!
//! Logs and exchange samples often come as JSON lines. Each line is decoded
//! with the server's own bridge; lines that are not a bid request are
//! counted and reported by line number and skipped, so one bad line in a
//! million does not throw away the rest. The request bytes are stored
//! exactly as they were (minus surrounding whitespace), so a replay sends
//! what the exchange sent.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read};
use std::path::Path;

use gavel_schemas::capture::{CaptureWriter, ContentType, Header};
use gavel_schemas::json::JSON_BYTES_MAX;

use crate::error::{Error, Result};
use crate::limits::RATE_MAX;
use crate::wire::{Converter, Format};

/// Requests per second given to imported lines when `--rate` is not set:
/// JSON lines carry no arrival times, so they are spaced evenly.
pub const RATE_DEFAULT: f64 = 1_000.0;

/// Bad lines reported by number; past this they are only counted, so a
/// file of garbage does not produce a report as long as itself.
pub const BAD_LINES_REPORTED_MAX: usize = 20;

/// What `import` did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportSummary {
    /// Requests written to the capture.
    pub records: u64,
    /// Lines that were not a bid request.
    pub bad: u64,
    /// The first [`BAD_LINES_REPORTED_MAX`] bad lines: number (from 1) and why.
    pub bad_lines: Vec<(u64, String)>,
    /// Empty or whitespace-only lines, skipped.
    pub blank: u64,
}

/// One line read with a bound on its length.
enum Line {
    Text,
    /// Longer than the bound; the rest of the line was skipped.
    TooLong,
}

/// Reads one line (without its `\n`) into `buf`, holding at most
/// `bytes_max + 1` bytes of it. `None` at the end of the input.
fn read_line_bounded<R: BufRead>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    bytes_max: usize,
) -> io::Result<Option<Line>> {
    buf.clear();
    let limit = bytes_max as u64 + 1;
    let read = Read::take(&mut *reader, limit).read_until(b'\n', buf)?;
    if read == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Some(Line::Text));
    }
    if buf.len() <= bytes_max {
        // The input ended without a newline.
        return Ok(Some(Line::Text));
    }
    // Skip the rest of the over-long line without holding it.
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            break;
        }
        match available.iter().position(|&b| b == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                break;
            }
            None => {
                let len = available.len();
                reader.consume(len);
            }
        }
    }
    Ok(Some(Line::TooLong))
}

/// Imports the JSON lines of `input` into a new capture at `out`, spacing
/// requests evenly at `rate` per second.
pub fn import_file(input: &Path, out: &Path, rate: f64) -> Result<ImportSummary> {
    if !(rate > 0.0 && rate <= RATE_MAX) {
        return Err(Error::Usage(format!(
            "--rate {rate} is out of range: use a rate above 0 and at most {RATE_MAX} requests/s"
        )));
    }
    let mut reader = BufReader::new(File::open(input).map_err(Error::file(input))?);
    let file = File::create(out).map_err(Error::file(out))?;
    let header = Header::now(format!(
        "gavel-loadgen import {} rate={rate}",
        input.display()
    ));
    let mut writer =
        CaptureWriter::new(BufWriter::new(file), &header).map_err(Error::capture(out))?;
    let mut converter = Converter::default();
    let (mut line, mut scratch) = (Vec::new(), Vec::new());
    let mut summary = ImportSummary::default();
    let mut line_number = 0u64;
    let gap_ns = 1e9 / rate;
    while let Some(kind) =
        read_line_bounded(&mut reader, &mut line, JSON_BYTES_MAX).map_err(Error::file(input))?
    {
        line_number += 1;
        let reason = match kind {
            Line::TooLong => Some(format!(
                "longer than the {JSON_BYTES_MAX}-byte limit of a JSON request"
            )),
            Line::Text => {
                let text = line.trim_ascii();
                if text.is_empty() {
                    summary.blank += 1;
                    continue;
                }
                scratch.clear();
                match converter.request(Format::Json, text, Format::Json, &mut scratch) {
                    Ok(_) => {
                        let offset_ns = (summary.records as f64 * gap_ns) as u64;
                        writer
                            .write(offset_ns, ContentType::Json, text)
                            .map_err(Error::capture(out))?;
                        summary.records += 1;
                        None
                    }
                    Err(reason) => Some(reason),
                }
            }
        };
        if let Some(reason) = reason {
            summary.bad += 1;
            if summary.bad_lines.len() < BAD_LINES_REPORTED_MAX {
                summary.bad_lines.push((line_number, reason));
            }
        }
    }
    let out_file = writer.finish().map_err(Error::capture(out))?;
    out_file
        .into_inner()
        .map_err(|e| Error::file(out)(e.into_error()))?
        .sync_all()
        .map_err(Error::file(out))?;
    if summary.records == 0 {
        // Best effort: an empty capture would only fail later, at replay.
        let _ = std::fs::remove_file(out);
        let first = summary
            .bad_lines
            .first()
            .map(|(line, reason)| format!("; line {line}: {reason}"))
            .unwrap_or_default();
        return Err(Error::NoRequests(format!(
            "{}: no line is an OpenRTB 2.6 bid request ({} bad, {} blank){first}",
            input.display(),
            summary.bad,
            summary.blank
        )));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_skipped_whole() {
        let input = b"short\nxxxxxxxxxx\nlast".to_vec();
        let mut reader = io::BufReader::with_capacity(4, &input[..]);
        let mut buf = Vec::new();
        assert!(matches!(
            read_line_bounded(&mut reader, &mut buf, 5).unwrap(),
            Some(Line::Text)
        ));
        assert_eq!(buf, b"short");
        assert!(matches!(
            read_line_bounded(&mut reader, &mut buf, 5).unwrap(),
            Some(Line::TooLong)
        ));
        assert!(matches!(
            read_line_bounded(&mut reader, &mut buf, 5).unwrap(),
            Some(Line::Text)
        ));
        assert_eq!(buf, b"last");
        assert!(
            read_line_bounded(&mut reader, &mut buf, 5)
                .unwrap()
                .is_none()
        );
    }
}
