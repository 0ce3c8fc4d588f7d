//! JSON lines in, capture out; bad lines counted by number.

use std::fs;

use gavel_loadgen::import::import_file;
use gavel_schemas::capture::CaptureReader;

#[test]
fn good_lines_are_kept_and_bad_ones_reported() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    fs::write(
        &input,
        concat!(
            r#"{"id":"a","imp":[{"id":"1","banner":{"w":300,"h":250}}]}"#,
            "\n",
            "not json\n",
            "\n",
            r#"{"id":"b","imp":[{"id":"1","banner":{"w":"300"}}]}"#,
            "\n",
            r#"  {"id":"c","imp":[{"id":"1"}],"tmax":120}  "#,
            "\r\n",
        ),
    )
    .unwrap();
    let out = dir.path().join("out.cap");
    let summary = import_file(&input, &out, 100.0).unwrap();
    assert_eq!((summary.records, summary.bad, summary.blank), (2, 2, 1));
    let lines: Vec<u64> = summary.bad_lines.iter().map(|(line, _)| *line).collect();
    assert_eq!(lines, [2, 4]);
    assert!(
        summary.bad_lines[1].1.contains("imp[0].banner.w"),
        "{:?}",
        summary.bad_lines
    );

    let mut reader = CaptureReader::new(fs::File::open(&out).unwrap()).unwrap();
    let first = reader.next_record().unwrap().unwrap();
    assert_eq!(first.offset_ns, 0);
    let second = reader.next_record().unwrap().unwrap();
    // 100 requests/s: 10 ms apart; the line is stored trimmed.
    assert_eq!(second.offset_ns, 10_000_000);
    assert_eq!(second.body, br#"{"id":"c","imp":[{"id":"1"}],"tmax":120}"#);
    assert!(reader.next_record().unwrap().is_none());
}

#[test]
fn a_file_without_one_request_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    fs::write(&input, "{}\n[1,2]\n").unwrap();
    let out = dir.path().join("out.cap");
    let err = import_file(&input, &out, 100.0).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("no line is an OpenRTB"), "{message}");
    assert!(message.contains("line 1"), "{message}");
    assert!(!out.exists());
}
