//! Capture files: bid requests with their arrival times, format version 1.
//!
//! A capture is what the server records from live traffic (`gavel serve
//! --record`) and what `gavel-loadgen` synthesizes, imports and replays. The
//! byte layout is specified in `loadgen/CAPTURE.md`; in short:
//!
//! ```text
//! header:  "GAVELCAP" | version u16 = 1 | flags u16 = 0 | created-at u64 (Unix ns)
//!          | source length u16 | source (UTF-8)
//! record:  offset u64 (ns since the capture started) | content type u8
//!          | body length u32 | CRC-32 u32 | body
//! ```
//!
//! All integers are little-endian. Records follow one another until the end
//! of the file; a file that ends exactly at a record boundary is complete.
//!
//! # Design
//!
//! Both ends stream. [`CaptureWriter`] writes a record as two `write_all`
//! calls and keeps nothing but the last offset, so a recorder can hand it a
//! `BufWriter<File>` on a background thread and never hold more than the
//! record at hand. [`CaptureReader`] reads records into one reused body
//! buffer that grows to the largest body seen and never past
//! [`RECORD_BODY_BYTES_MAX`], whatever the file claims.
//!
//! Every record carries its own CRC-32, so a torn write at the end of a file
//! (a crash, a full disk) or a flipped bit in the middle is found at the
//! record where it happened, and every record before it is still usable.
//! Each [`CaptureError`] carries the byte offset of the problem.
//!
//! # Recording from several cores
//!
//! Offsets must never decrease. A recorder fed by several cores through a
//! queue sees samples slightly out of order; it should clamp each offset to
//! [`CaptureWriter::last_offset_ns`] rather than drop the sample.

use std::fmt;
use std::io::{self, Read, Write};

use crate::verify::BID_REQUEST_BYTES_MAX;

/// The first eight bytes of every capture file.
pub const MAGIC: [u8; 8] = *b"GAVELCAP";

/// The format version this module reads and writes.
pub const VERSION: u16 = 1;

/// Longest `source` description in the header. It names the program and its
/// target ("gavel serve 127.0.0.1:8080"); 1 KiB leaves room for a command
/// line while keeping a corrupt length from reading far into the records.
pub const SOURCE_BYTES_MAX: usize = 1024;

/// Largest body in one record: the largest bid request Gavel reads.
pub const RECORD_BODY_BYTES_MAX: usize = BID_REQUEST_BYTES_MAX;

/// Bytes of the header before the source text: magic, version, flags,
/// created-at and the source length.
pub const HEADER_FIXED_BYTES: usize = 8 + 2 + 2 + 8 + 2;

/// Bytes of a record before its body: offset, content type, body length and
/// CRC-32.
pub const RECORD_HEAD_BYTES: usize = 8 + 1 + 4 + 4;

/// Bytes of a record head covered by the CRC (everything before the CRC).
const RECORD_CRC_COVERS_BYTES: usize = 8 + 1 + 4;

const _: () = assert!(SOURCE_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(RECORD_BODY_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(RECORD_CRC_COVERS_BYTES + 4 == RECORD_HEAD_BYTES);

/// How a record's body is encoded: the request's HTTP `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ContentType {
    /// `application/json`: OpenRTB 2.6 JSON.
    Json = 1,
    /// `application/x-flatbuffers`: a `gavel.openrtb.BidRequest` flatbuffer.
    Flatbuffers = 2,
}

impl ContentType {
    /// The byte that stands for this content type in a record.
    pub const fn to_byte(self) -> u8 {
        self as u8
    }

    /// The content type a record byte stands for, if any.
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(ContentType::Json),
            2 => Some(ContentType::Flatbuffers),
            _ => None,
        }
    }

    /// The HTTP media type.
    pub const fn mime(self) -> &'static str {
        match self {
            ContentType::Json => "application/json",
            ContentType::Flatbuffers => "application/x-flatbuffers",
        }
    }
}

/// The capture header: when and by what the capture was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Wall-clock time of offset 0, in ns since the Unix epoch; 0 when the
    /// traffic never happened (synthesized captures, which must be
    /// reproducible byte for byte).
    pub created_at_unix_ns: u64,
    /// What made the capture, at most [`SOURCE_BYTES_MAX`] bytes:
    /// `"gavel serve 127.0.0.1:8080"`, `"gavel-loadgen synth seed=42"`.
    pub source: String,
}

impl Header {
    /// A header stamped with the current wall-clock time.
    pub fn now(source: impl Into<String>) -> Self {
        let created_at_unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
            });
        Header {
            created_at_unix_ns,
            source: source.into(),
        }
    }
}

/// One request of a capture, borrowed from the reader's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Arrival time in ns since the capture started; never decreases.
    pub offset_ns: u64,
    pub content_type: ContentType,
    /// The request body exactly as it arrived.
    pub body: &'a [u8],
}

/// Why a capture could not be read or written. Every variant carries
/// `offset`: the byte position in the file where the problem is (for a
/// record, the first byte of that record).
#[derive(Debug)]
pub enum CaptureError {
    /// Reading or writing the underlying file failed.
    Io { offset: u64, source: io::Error },
    /// The file does not start with [`MAGIC`].
    BadMagic { offset: u64, found: [u8; 8] },
    /// The file was written in a format version this build does not read.
    UnsupportedVersion { offset: u64, version: u16 },
    /// The header sets flags that version 1 does not define.
    UnsupportedFlags { offset: u64, flags: u16 },
    /// The header's source is longer than [`SOURCE_BYTES_MAX`].
    SourceTooLong { offset: u64, bytes: usize },
    /// The header's source is not UTF-8.
    SourceNotUtf8 { offset: u64 },
    /// The file ends inside the header, at `offset`.
    TruncatedHeader { offset: u64 },
    /// The file ends inside the record that starts at `offset`; the data
    /// stops at `end`.
    TruncatedRecord { offset: u64, end: u64 },
    /// A record's content type byte is not one [`ContentType`] defines.
    UnknownContentType { offset: u64, byte: u8 },
    /// A record's body is larger than [`RECORD_BODY_BYTES_MAX`].
    BodyTooLarge { offset: u64, bytes: u64 },
    /// A record's CRC-32 does not match its contents.
    CrcMismatch {
        offset: u64,
        stored: u32,
        computed: u32,
    },
    /// A record's arrival offset is smaller than the one before it.
    OffsetBackwards {
        offset: u64,
        previous_ns: u64,
        found_ns: u64,
    },
}

impl CaptureError {
    /// The byte position in the file where the problem is.
    pub fn offset(&self) -> u64 {
        match self {
            CaptureError::Io { offset, .. }
            | CaptureError::BadMagic { offset, .. }
            | CaptureError::UnsupportedVersion { offset, .. }
            | CaptureError::UnsupportedFlags { offset, .. }
            | CaptureError::SourceTooLong { offset, .. }
            | CaptureError::SourceNotUtf8 { offset }
            | CaptureError::TruncatedHeader { offset }
            | CaptureError::TruncatedRecord { offset, .. }
            | CaptureError::UnknownContentType { offset, .. }
            | CaptureError::BodyTooLarge { offset, .. }
            | CaptureError::CrcMismatch { offset, .. }
            | CaptureError::OffsetBackwards { offset, .. } => *offset,
        }
    }
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::Io { offset, source } => {
                write!(f, "capture I/O failed at byte {offset}: {source}")
            }
            CaptureError::BadMagic { found, .. } => write!(
                f,
                "not a Gavel capture: the file starts with {:?}, not \"GAVELCAP\"",
                String::from_utf8_lossy(found)
            ),
            CaptureError::UnsupportedVersion { offset, version } => write!(
                f,
                "capture format version {version} (byte {offset}) is not supported: \
                 this build reads version {VERSION}; use a gavel-loadgen of the same release"
            ),
            CaptureError::UnsupportedFlags { offset, flags } => write!(
                f,
                "capture header flags {flags:#06x} (byte {offset}) are not defined in \
                 format version {VERSION}; the file is corrupt or from a newer release"
            ),
            CaptureError::SourceTooLong { offset, bytes } => write!(
                f,
                "capture source at byte {offset} is {bytes} bytes, over the \
                 {SOURCE_BYTES_MAX}-byte limit"
            ),
            CaptureError::SourceNotUtf8 { offset } => {
                write!(f, "capture source at byte {offset} is not UTF-8")
            }
            CaptureError::TruncatedHeader { offset } => write!(
                f,
                "capture header cut short: the file ends at byte {offset}; \
                 it holds no records"
            ),
            CaptureError::TruncatedRecord { offset, end } => write!(
                f,
                "record at byte {offset} is cut short (the file ends at byte {end}): \
                 the capture was not finished; every record before it is intact"
            ),
            CaptureError::UnknownContentType { offset, byte } => write!(
                f,
                "record at byte {offset} has content type {byte}, which format \
                 version {VERSION} does not define (1 = JSON, 2 = flatbuffers)"
            ),
            CaptureError::BodyTooLarge { offset, bytes } => write!(
                f,
                "record at byte {offset} has a {bytes}-byte body, over the \
                 {RECORD_BODY_BYTES_MAX}-byte limit"
            ),
            CaptureError::CrcMismatch {
                offset,
                stored,
                computed,
            } => write!(
                f,
                "record at byte {offset} is corrupt: stored CRC-32 {stored:#010x}, \
                 contents give {computed:#010x}; every record before it is intact"
            ),
            CaptureError::OffsetBackwards {
                offset,
                previous_ns,
                found_ns,
            } => write!(
                f,
                "record at byte {offset} arrives at {found_ns} ns, before the \
                 previous record's {previous_ns} ns: arrival offsets must not decrease"
            ),
        }
    }
}

impl std::error::Error for CaptureError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CaptureError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn record_crc(head: &[u8; RECORD_HEAD_BYTES], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&head[..RECORD_CRC_COVERS_BYTES]);
    hasher.update(body);
    hasher.finalize()
}

/// Writes a capture, one record at a time.
///
/// The writer adds no buffering of its own: give it a `BufWriter` when the
/// destination is a file. If a write fails half-way, the file ends with a
/// partial record, which readers report as [`CaptureError::TruncatedRecord`]
/// after yielding every complete record before it.
pub struct CaptureWriter<W: Write> {
    out: W,
    /// Bytes written so far: where the next record starts.
    position: u64,
    last_offset_ns: u64,
}

impl<W: Write> CaptureWriter<W> {
    /// Writes the header and returns a writer for the records.
    pub fn new(mut out: W, header: &Header) -> Result<Self, CaptureError> {
        let source = header.source.as_bytes();
        if source.len() > SOURCE_BYTES_MAX {
            return Err(CaptureError::SourceTooLong {
                offset: (HEADER_FIXED_BYTES - 2) as u64,
                bytes: source.len(),
            });
        }
        let mut fixed = [0u8; HEADER_FIXED_BYTES];
        fixed[0..8].copy_from_slice(&MAGIC);
        fixed[8..10].copy_from_slice(&VERSION.to_le_bytes());
        fixed[10..12].copy_from_slice(&0u16.to_le_bytes());
        fixed[12..20].copy_from_slice(&header.created_at_unix_ns.to_le_bytes());
        // Cannot truncate: checked against SOURCE_BYTES_MAX <= u16::MAX above.
        fixed[20..22].copy_from_slice(&(source.len() as u16).to_le_bytes());
        let io = |source| CaptureError::Io { offset: 0, source };
        out.write_all(&fixed).map_err(io)?;
        out.write_all(source).map_err(io)?;
        Ok(CaptureWriter {
            out,
            position: (HEADER_FIXED_BYTES + source.len()) as u64,
            last_offset_ns: 0,
        })
    }

    /// Appends one record. `offset_ns` is the arrival time in ns since the
    /// capture started and must not be smaller than the previous record's.
    pub fn write(
        &mut self,
        offset_ns: u64,
        content_type: ContentType,
        body: &[u8],
    ) -> Result<(), CaptureError> {
        let offset = self.position;
        if body.len() > RECORD_BODY_BYTES_MAX {
            return Err(CaptureError::BodyTooLarge {
                offset,
                bytes: body.len() as u64,
            });
        }
        if offset_ns < self.last_offset_ns {
            return Err(CaptureError::OffsetBackwards {
                offset,
                previous_ns: self.last_offset_ns,
                found_ns: offset_ns,
            });
        }
        let mut head = [0u8; RECORD_HEAD_BYTES];
        head[0..8].copy_from_slice(&offset_ns.to_le_bytes());
        head[8] = content_type.to_byte();
        // Cannot truncate: RECORD_BODY_BYTES_MAX <= u32::MAX (asserted).
        head[9..13].copy_from_slice(&(body.len() as u32).to_le_bytes());
        let crc = record_crc(&head, body);
        head[13..17].copy_from_slice(&crc.to_le_bytes());
        let io = |source| CaptureError::Io { offset, source };
        self.out.write_all(&head).map_err(io)?;
        self.out.write_all(body).map_err(io)?;
        self.position += (RECORD_HEAD_BYTES + body.len()) as u64;
        self.last_offset_ns = offset_ns;
        Ok(())
    }

    /// The offset of the last record written (0 before the first): the
    /// smallest offset the next record may have.
    pub fn last_offset_ns(&self) -> u64 {
        self.last_offset_ns
    }

    /// Bytes written so far, header included.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Flushes and returns the destination. The capture is complete: it
    /// ends at a record boundary. Syncing a file to disk is up to the caller.
    pub fn finish(mut self) -> Result<W, CaptureError> {
        self.out.flush().map_err(|source| CaptureError::Io {
            offset: self.position,
            source,
        })?;
        Ok(self.out)
    }
}

/// Reads into `buf` until it is full or the input ends; returns the bytes
/// read. Unlike `read_exact`, a short read says how far the data went.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads a capture record by record, with bounded memory.
///
/// ```
/// # use gavel_schemas::capture::*;
/// let mut file = Vec::new();
/// let mut writer = CaptureWriter::new(&mut file, &Header::now("doc example"))?;
/// writer.write(0, ContentType::Json, br#"{"id":"1","imp":[{"id":"1"}]}"#)?;
/// writer.finish()?;
///
/// let mut reader = CaptureReader::new(&file[..])?;
/// while let Some(record) = reader.next_record()? {
///     assert_eq!(record.content_type, ContentType::Json);
/// }
/// # Ok::<(), CaptureError>(())
/// ```
pub struct CaptureReader<R: Read> {
    reader: R,
    header: Header,
    /// Reused for every record; grows to the largest body seen, at most
    /// [`RECORD_BODY_BYTES_MAX`].
    body: Vec<u8>,
    /// Bytes consumed so far: where the next record starts.
    position: u64,
    last_offset_ns: u64,
}

impl<R: Read> CaptureReader<R> {
    /// Reads and checks the header.
    pub fn new(mut reader: R) -> Result<Self, CaptureError> {
        let mut fixed = [0u8; HEADER_FIXED_BYTES];
        let got = read_full(&mut reader, &mut fixed)
            .map_err(|source| CaptureError::Io { offset: 0, source })?;
        // Check what is there before complaining that it is short, so that
        // a file that is not a capture at all says so.
        let magic_len = got.min(MAGIC.len());
        if fixed[..magic_len] != MAGIC[..magic_len] {
            let mut found = [0u8; 8];
            found[..magic_len].copy_from_slice(&fixed[..magic_len]);
            return Err(CaptureError::BadMagic { offset: 0, found });
        }
        if got < HEADER_FIXED_BYTES {
            return Err(CaptureError::TruncatedHeader { offset: got as u64 });
        }
        let u16_at = |at: usize| u16::from_le_bytes([fixed[at], fixed[at + 1]]);
        let version = u16_at(8);
        if version != VERSION {
            return Err(CaptureError::UnsupportedVersion { offset: 8, version });
        }
        let flags = u16_at(10);
        if flags != 0 {
            return Err(CaptureError::UnsupportedFlags { offset: 10, flags });
        }
        let mut created_at = [0u8; 8];
        created_at.copy_from_slice(&fixed[12..20]);
        let source_len = usize::from(u16_at(20));
        if source_len > SOURCE_BYTES_MAX {
            return Err(CaptureError::SourceTooLong {
                offset: 20,
                bytes: source_len,
            });
        }
        let mut source = vec![0u8; source_len];
        let got = read_full(&mut reader, &mut source).map_err(|source| CaptureError::Io {
            offset: HEADER_FIXED_BYTES as u64,
            source,
        })?;
        if got < source_len {
            return Err(CaptureError::TruncatedHeader {
                offset: (HEADER_FIXED_BYTES + got) as u64,
            });
        }
        let source = String::from_utf8(source).map_err(|_| CaptureError::SourceNotUtf8 {
            offset: HEADER_FIXED_BYTES as u64,
        })?;
        Ok(CaptureReader {
            reader,
            header: Header {
                created_at_unix_ns: u64::from_le_bytes(created_at),
                source,
            },
            body: Vec::new(),
            position: (HEADER_FIXED_BYTES + source_len) as u64,
            last_offset_ns: 0,
        })
    }

    /// The capture's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes consumed so far: where the next record starts.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The next record, or `None` when the file ends at a record boundary.
    ///
    /// After an error the reader's position is unspecified: stop reading.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, CaptureError> {
        let offset = self.position;
        let mut head = [0u8; RECORD_HEAD_BYTES];
        let io = |source| CaptureError::Io { offset, source };
        let got = read_full(&mut self.reader, &mut head).map_err(io)?;
        if got == 0 {
            return Ok(None);
        }
        if got < RECORD_HEAD_BYTES {
            return Err(CaptureError::TruncatedRecord {
                offset,
                end: offset + got as u64,
            });
        }
        let mut offset_ns = [0u8; 8];
        offset_ns.copy_from_slice(&head[0..8]);
        let offset_ns = u64::from_le_bytes(offset_ns);
        let content_type = head[8];
        let body_len = u32::from_le_bytes([head[9], head[10], head[11], head[12]]);
        let stored = u32::from_le_bytes([head[13], head[14], head[15], head[16]]);
        // Checked before anything is allocated: a corrupt length must not
        // make the reader reserve gigabytes.
        let body_len = match usize::try_from(body_len) {
            Ok(len) if len <= RECORD_BODY_BYTES_MAX => len,
            _ => {
                return Err(CaptureError::BodyTooLarge {
                    offset,
                    bytes: u64::from(body_len),
                });
            }
        };
        if self.body.len() < body_len {
            // Exactly what is needed: `resize` alone may double the
            // capacity, past the documented bound of one largest body.
            self.body.reserve_exact(body_len - self.body.len());
            self.body.resize(body_len, 0);
        }
        let body = &mut self.body[..body_len];
        let got = read_full(&mut self.reader, body).map_err(io)?;
        if got < body_len {
            return Err(CaptureError::TruncatedRecord {
                offset,
                end: offset + (RECORD_HEAD_BYTES + got) as u64,
            });
        }
        let computed = record_crc(&head, body);
        if computed != stored {
            return Err(CaptureError::CrcMismatch {
                offset,
                stored,
                computed,
            });
        }
        let Some(content_type) = ContentType::from_byte(content_type) else {
            return Err(CaptureError::UnknownContentType {
                offset,
                byte: content_type,
            });
        };
        if offset_ns < self.last_offset_ns {
            return Err(CaptureError::OffsetBackwards {
                offset,
                previous_ns: self.last_offset_ns,
                found_ns: offset_ns,
            });
        }
        self.last_offset_ns = offset_ns;
        self.position = offset + (RECORD_HEAD_BYTES + body_len) as u64;
        Ok(Some(Record {
            offset_ns,
            content_type,
            body: &self.body[..body_len],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "gavel-loadgen test";

    fn header() -> Header {
        Header {
            created_at_unix_ns: 1_700_000_000_000_000_000,
            source: SOURCE.into(),
        }
    }

    fn records() -> Vec<(u64, ContentType, Vec<u8>)> {
        vec![
            (
                0,
                ContentType::Json,
                br#"{"id":"a","imp":[{"id":"1"}]}"#.to_vec(),
            ),
            (1_000, ContentType::Flatbuffers, vec![0, 1, 2, 3, 255]),
            (1_000, ContentType::Json, Vec::new()),
            (u64::MAX, ContentType::Json, vec![b'x'; 3000]),
        ]
    }

    fn capture() -> Vec<u8> {
        let mut writer = CaptureWriter::new(Vec::new(), &header()).unwrap();
        for (offset_ns, content_type, body) in records() {
            writer.write(offset_ns, content_type, &body).unwrap();
        }
        writer.finish().unwrap()
    }

    /// Reads every record; returns how many were read and the error, if any.
    fn read_all(bytes: &[u8]) -> Result<Vec<(u64, ContentType, Vec<u8>)>, CaptureError> {
        let mut reader = CaptureReader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(record) = reader.next_record()? {
            out.push((record.offset_ns, record.content_type, record.body.to_vec()));
        }
        Ok(out)
    }

    /// Where record `index` of `capture()` starts.
    fn record_start(index: usize) -> usize {
        HEADER_FIXED_BYTES
            + SOURCE.len()
            + records()[..index]
                .iter()
                .map(|(_, _, body)| RECORD_HEAD_BYTES + body.len())
                .sum::<usize>()
    }

    /// Rewrites the CRC of the record at `start` after its fields were edited.
    fn fix_crc(bytes: &mut [u8], start: usize) {
        let mut head = [0u8; RECORD_HEAD_BYTES];
        head.copy_from_slice(&bytes[start..start + RECORD_HEAD_BYTES]);
        let len = u32::from_le_bytes([head[9], head[10], head[11], head[12]]) as usize;
        let body_start = start + RECORD_HEAD_BYTES;
        let crc = record_crc(&head, &bytes[body_start..body_start + len]);
        bytes[start + 13..start + 17].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn round_trip() {
        let bytes = capture();
        let reader = CaptureReader::new(&bytes[..]).unwrap();
        assert_eq!(reader.header(), &header());
        assert_eq!(read_all(&bytes).unwrap(), records());
        assert_eq!(bytes.len(), record_start(records().len()));
    }

    #[test]
    fn header_layout_is_as_documented() {
        let bytes = capture();
        assert_eq!(&bytes[0..8], b"GAVELCAP");
        assert_eq!(&bytes[8..10], &[1, 0]);
        assert_eq!(&bytes[10..12], &[0, 0]);
        assert_eq!(&bytes[12..20], &1_700_000_000_000_000_000u64.to_le_bytes());
        assert_eq!(&bytes[20..22], &(SOURCE.len() as u16).to_le_bytes());
        assert_eq!(&bytes[22..22 + SOURCE.len()], SOURCE.as_bytes());
        let first = record_start(0);
        assert_eq!(&bytes[first..first + 8], &0u64.to_le_bytes());
        assert_eq!(bytes[first + 8], 1);
        assert_eq!(&bytes[first + 9..first + 13], &29u32.to_le_bytes());
        let crc = crc32fast::hash(
            &[
                &bytes[first..first + 13],
                &bytes[first + RECORD_HEAD_BYTES..first + RECORD_HEAD_BYTES + 29],
            ]
            .concat(),
        );
        assert_eq!(&bytes[first + 13..first + 17], &crc.to_le_bytes());
    }

    #[test]
    fn the_example_in_capture_md_is_what_the_writer_writes() {
        let header = Header {
            created_at_unix_ns: 0,
            source: "synth".into(),
        };
        let mut writer = CaptureWriter::new(Vec::new(), &header).unwrap();
        writer
            .write(0, ContentType::Json, br#"{"id":"1","imp":[{"id":"1"}]}"#)
            .unwrap();
        let bytes = writer.finish().unwrap();
        let expected: &[u8] = &[
            0x47, 0x41, 0x56, 0x45, 0x4c, 0x43, 0x41, 0x50, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x73, 0x79, 0x6e, 0x74, 0x68, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x1d, 0x00, 0x00, 0x00, 0x2e, 0xb8,
            0x2c, 0x6f,
        ];
        assert_eq!(&bytes[..expected.len()], expected);
        assert_eq!(
            &bytes[expected.len()..],
            br#"{"id":"1","imp":[{"id":"1"}]}"#
        );
    }

    #[test]
    fn an_empty_capture_has_a_header_and_no_records() {
        let bytes = CaptureWriter::new(Vec::new(), &header())
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(read_all(&bytes).unwrap(), Vec::new());
    }

    #[test]
    fn bad_magic() {
        let mut bytes = capture();
        bytes[0] = b'X';
        let err = read_all(&bytes).unwrap_err();
        assert!(
            matches!(err, CaptureError::BadMagic { offset: 0, .. }),
            "{err}"
        );
        let err = read_all(b"{\"id\":").unwrap_err();
        assert!(
            matches!(err, CaptureError::BadMagic { offset: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn unsupported_version_and_flags() {
        let mut bytes = capture();
        bytes[8] = 2;
        let err = read_all(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                CaptureError::UnsupportedVersion {
                    offset: 8,
                    version: 2
                }
            ),
            "{err}"
        );
        let mut bytes = capture();
        bytes[11] = 0x80;
        let err = read_all(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                CaptureError::UnsupportedFlags {
                    offset: 10,
                    flags: 0x8000
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn source_limits() {
        let mut bytes = capture();
        bytes[20..22].copy_from_slice(&(SOURCE_BYTES_MAX as u16 + 1).to_le_bytes());
        let err = read_all(&bytes).unwrap_err();
        assert!(
            matches!(err, CaptureError::SourceTooLong { offset: 20, .. }),
            "{err}"
        );

        let mut bytes = capture();
        bytes[HEADER_FIXED_BYTES] = 0xff;
        let err = read_all(&bytes).unwrap_err();
        assert!(
            matches!(err, CaptureError::SourceNotUtf8 { offset: 22 }),
            "{err}"
        );

        let long = Header {
            created_at_unix_ns: 0,
            source: "s".repeat(SOURCE_BYTES_MAX + 1),
        };
        let err = CaptureWriter::new(Vec::new(), &long).err().unwrap();
        assert!(matches!(err, CaptureError::SourceTooLong { .. }), "{err}");
    }

    #[test]
    fn crc_mismatch_names_the_corrupt_record() {
        for index in 0..records().len() {
            let start = record_start(index);
            // Flip a bit in the offset field, which every record has.
            let mut bytes = capture();
            bytes[start] ^= 0x01;
            let err = read_all(&bytes).unwrap_err();
            assert!(
                matches!(err, CaptureError::CrcMismatch { offset, .. } if offset == start as u64),
                "record {index}: {err}"
            );
        }
        // A flipped body byte too.
        let start = record_start(3);
        let mut bytes = capture();
        bytes[start + RECORD_HEAD_BYTES + 100] ^= 0x40;
        let err = read_all(&bytes).unwrap_err();
        assert_eq!(err.offset(), start as u64, "{err}");
        assert!(matches!(err, CaptureError::CrcMismatch { .. }), "{err}");
    }

    #[test]
    fn records_before_a_corrupt_one_are_yielded() {
        let start = record_start(2);
        let mut bytes = capture();
        bytes[start + 13] ^= 0xff;
        let mut reader = CaptureReader::new(&bytes[..]).unwrap();
        assert!(reader.next_record().unwrap().is_some());
        assert!(reader.next_record().unwrap().is_some());
        let err = reader.next_record().unwrap_err();
        assert_eq!(err.offset(), start as u64);
    }

    #[test]
    fn body_over_the_limit() {
        let start = record_start(1);
        let mut bytes = capture();
        bytes[start + 9..start + 13].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = read_all(&bytes).unwrap_err();
        assert!(
            matches!(err, CaptureError::BodyTooLarge { offset, bytes } if offset == start as u64 && bytes == u64::from(u32::MAX)),
            "{err}"
        );

        let mut writer = CaptureWriter::new(Vec::new(), &header()).unwrap();
        let big = vec![0u8; RECORD_BODY_BYTES_MAX + 1];
        let err = writer.write(0, ContentType::Json, &big).unwrap_err();
        assert!(matches!(err, CaptureError::BodyTooLarge { .. }), "{err}");
        // The limit itself is fine.
        writer
            .write(0, ContentType::Json, &big[..RECORD_BODY_BYTES_MAX])
            .unwrap();
    }

    #[test]
    fn offsets_going_backwards() {
        let start = record_start(2);
        let mut bytes = capture();
        bytes[start..start + 8].copy_from_slice(&999u64.to_le_bytes());
        fix_crc(&mut bytes, start);
        let err = read_all(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                CaptureError::OffsetBackwards { offset, previous_ns: 1_000, found_ns: 999 }
                    if offset == start as u64
            ),
            "{err}"
        );

        let mut writer = CaptureWriter::new(Vec::new(), &header()).unwrap();
        writer.write(10, ContentType::Json, b"{}").unwrap();
        assert_eq!(writer.last_offset_ns(), 10);
        let err = writer.write(9, ContentType::Json, b"{}").unwrap_err();
        assert!(matches!(err, CaptureError::OffsetBackwards { .. }), "{err}");
    }

    #[test]
    fn unknown_content_type() {
        let start = record_start(1);
        let mut bytes = capture();
        bytes[start + 8] = 7;
        fix_crc(&mut bytes, start);
        let err = read_all(&bytes).unwrap_err();
        assert!(
            matches!(err, CaptureError::UnknownContentType { offset, byte: 7 } if offset == start as u64),
            "{err}"
        );
    }

    #[test]
    fn every_truncation_is_an_error_or_a_clean_prefix() {
        let bytes = capture();
        let all = records();
        let boundaries: Vec<usize> = (0..=all.len()).map(record_start).collect();
        for cut in 0..bytes.len() {
            let result = read_all(&bytes[..cut]);
            match boundaries.iter().position(|&b| b == cut) {
                Some(complete) => assert_eq!(
                    result.unwrap(),
                    all[..complete],
                    "cut at {cut} is a record boundary"
                ),
                None if cut < boundaries[0] => {
                    let err = result.unwrap_err();
                    assert!(
                        matches!(err, CaptureError::TruncatedHeader { offset } if offset == cut as u64),
                        "cut at {cut}: {err}"
                    );
                }
                None => {
                    let err = result.unwrap_err();
                    let record = boundaries.iter().rposition(|&b| b < cut).unwrap();
                    assert!(
                        matches!(
                            err,
                            CaptureError::TruncatedRecord { offset, end }
                                if offset == boundaries[record] as u64 && end == cut as u64
                        ),
                        "cut at {cut}: {err}"
                    );
                }
            }
        }
    }

    #[test]
    fn io_errors_keep_their_cause() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let err = CaptureReader::new(Failing).err().unwrap();
        assert!(matches!(err, CaptureError::Io { offset: 0, .. }));
        assert!(std::error::Error::source(&err).is_some());
    }
}
