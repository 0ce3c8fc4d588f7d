//! Capture files on disk: what synth writes reads back, and damage is
//! reported with its offset.

use std::fs;

use gavel_loadgen::Error;
use gavel_loadgen::wire::Format;
use gavel_schemas::capture::{CaptureError, CaptureReader, ContentType};

use crate::support::synth;

#[test]
fn synthesized_captures_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = synth(dir.path(), "a.cap", 200, 1, Format::Flatbuffers);
    let mut reader = CaptureReader::new(fs::File::open(&path).unwrap()).unwrap();
    assert!(
        reader
            .header()
            .source
            .starts_with("gavel-loadgen synth seed=1")
    );
    assert_eq!(reader.header().created_at_unix_ns, 0);
    let mut count = 0;
    let mut last = 0;
    while let Some(record) = reader.next_record().unwrap() {
        assert_eq!(record.content_type, ContentType::Flatbuffers);
        assert!(record.offset_ns >= last);
        last = record.offset_ns;
        count += 1;
    }
    assert_eq!(count, 200);
}

#[test]
fn a_damaged_capture_is_refused_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = synth(dir.path(), "a.cap", 20, 1, Format::Json);
    let mut bytes = fs::read(&path).unwrap();
    let len = bytes.len();
    bytes[len - 10] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let err = gavel_loadgen::plan::Plan::load(&path, Format::Json, "127.0.0.1:1")
        .err()
        .expect("a corrupt record is an error");
    match err {
        Error::Capture {
            source: CaptureError::CrcMismatch { offset, .. },
            ..
        } => assert!(offset > 0 && offset < len as u64 - 10),
        other => panic!("{other}"),
    }
}
