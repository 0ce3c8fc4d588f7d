//! Synthetic traffic: reproducible, and every request one Gavel accepts.

use std::fs;
use std::time::Duration;

use gavel_loadgen::synth::{Length, SynthOptions, synthesize_file};
use gavel_loadgen::wire::Format;
use gavel_schemas::capture::{CaptureReader, ContentType};
use gavel_schemas::json::Encoder;
use gavel_schemas::verify;

use crate::support::synth;

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for format in [Format::Json, Format::Flatbuffers] {
        let a = fs::read(synth(dir.path(), "a.cap", 500, 42, format)).unwrap();
        let b = fs::read(synth(dir.path(), "b.cap", 500, 42, format)).unwrap();
        let c = fs::read(synth(dir.path(), "c.cap", 500, 43, format)).unwrap();
        assert_eq!(a, b, "{format:?}: same seed, same bytes");
        assert_ne!(a, c, "{format:?}: another seed, other bytes");
    }
}

#[test]
fn every_synthesized_request_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let mut encoder = Encoder::new();
    let json = synth(dir.path(), "json.cap", 2_000, 7, Format::Json);
    let mut reader = CaptureReader::new(fs::File::open(&json).unwrap()).unwrap();
    let (mut count, mut video, mut native, mut app, mut deals) = (0, 0, 0, 0, 0);
    while let Some(record) = reader.next_record().unwrap() {
        assert_eq!(record.content_type, ContentType::Json);
        let flatbuffer = encoder
            .bid_request(record.body)
            .unwrap_or_else(|e| panic!("record {count}: {e}"));
        let request = verify::bid_request(flatbuffer).unwrap();
        assert!(request.tmax().is_some_and(|t| t > 0));
        let imps = request.imp();
        video += imps.iter().filter(|i| i.video().is_some()).count();
        native += imps.iter().filter(|i| i.native().is_some()).count();
        deals += imps.iter().filter(|i| i.pmp().is_some()).count();
        app += usize::from(request.app().is_some());
        assert!(
            request
                .device()
                .and_then(|d| d.geo())
                .and_then(|g| g.country())
                .is_some()
        );
        count += 1;
    }
    assert_eq!(count, 2_000);
    // The mix is there (each share is far above these floors).
    assert!(video > 200 && native > 100 && app > 400 && deals > 100);

    let flatbuffers = synth(dir.path(), "fb.cap", 500, 7, Format::Flatbuffers);
    let mut reader = CaptureReader::new(fs::File::open(&flatbuffers).unwrap()).unwrap();
    while let Some(record) = reader.next_record().unwrap() {
        assert_eq!(record.content_type, ContentType::Flatbuffers);
        verify::bid_request(record.body).unwrap();
    }
}

#[test]
fn a_duration_sets_the_span_at_the_rate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.cap");
    let summary = synthesize_file(
        &SynthOptions {
            length: Length::Duration(Duration::from_secs(2)),
            rate: 500.0,
            seed: 3,
            format: Format::Json,
        },
        &path,
    )
    .unwrap();
    assert!(summary.span < Duration::from_secs(2));
    // Poisson arrivals: 1000 expected, within a few standard deviations (~32).
    assert!(
        (850..=1150).contains(&summary.records),
        "{}",
        summary.records
    );
}

#[test]
fn bad_options_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let options = SynthOptions {
        length: Length::Count(0),
        rate: 1_000.0,
        seed: 1,
        format: Format::Json,
    };
    let err = synthesize_file(&options, &dir.path().join("x.cap")).unwrap_err();
    assert!(err.to_string().contains("--count"), "{err}");
    let options = SynthOptions {
        length: Length::Count(1),
        rate: -1.0,
        ..options
    };
    let err = synthesize_file(&options, &dir.path().join("x.cap")).unwrap_err();
    assert!(err.to_string().contains("--rate"), "{err}");
}
