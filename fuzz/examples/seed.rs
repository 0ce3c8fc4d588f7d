//! Writes the seed corpora and the JSON dictionary: `run.sh seed`.
//!
//! Usage: `seed OPENRTB_EXAMPLES_DIR` (the IAB bid request examples,
//! `shared/openrtb-2.6/jsonschema/examples/bid-requests`). Run from `fuzz/`.
//! Every seed is checked to take its decoder's accepting path.

use std::fs;
use std::path::{Path, PathBuf};

use gavel_fuzz::oracle::{self, Verdict};
use gavel_fuzz::seed::{self, Seed};

/// A target's oracle: what every seed of its corpus must pass.
type Oracle = fn(&[u8]) -> Verdict;

fn main() {
    let examples_dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .expect("usage: seed OPENRTB_EXAMPLES_DIR");
    let mut json_examples: Vec<Seed> = fs::read_dir(&examples_dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", examples_dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let name = format!("iab-{}", path.file_name().unwrap().to_string_lossy());
            (name, fs::read(&path).expect("a readable example"))
        })
        .collect();
    json_examples.sort();
    assert!(
        !json_examples.is_empty(),
        "no *.json in {}",
        examples_dir.display()
    );

    let flatbuffers = seed::flatbuffers_requests(&json_examples);
    let smallest_json = json_examples
        .iter()
        .min_by_key(|(_, json)| json.len())
        .unwrap();
    let smallest_flatbuffer = flatbuffers.iter().min_by_key(|(_, fb)| fb.len()).unwrap();
    let captures = seed::captures(&smallest_json.1, &smallest_flatbuffer.1);

    let corpora: [(&str, &[Seed], Oracle); 4] = [
        ("json_request", &json_examples, oracle::json_request),
        (
            "flatbuffers_request",
            &flatbuffers,
            oracle::flatbuffers_request,
        ),
        (
            "strategy_bids",
            &seed::strategy_answers(),
            oracle::strategy_bids,
        ),
        ("capture_reader", &captures, oracle::capture_reader),
    ];
    for (target, seeds, check) in corpora {
        let dir = Path::new("corpus").join(target);
        fs::create_dir_all(&dir).expect("a writable corpus directory");
        for (name, bytes) in seeds {
            assert_eq!(
                check(bytes),
                Verdict::Accepted,
                "seed {target}/{name} is refused"
            );
            fs::write(dir.join(name), bytes).expect("a writable corpus directory");
        }
        println!("corpus/{target}: {} seeds", seeds.len());
    }

    let openrtb_fbs = fs::read_to_string("../schemas/openrtb.fbs").expect("../schemas/openrtb.fbs");
    fs::create_dir_all("dict").expect("a writable dict directory");
    fs::write(
        "dict/json_request.dict",
        seed::json_request_dictionary(&openrtb_fbs),
    )
    .expect("a writable dict directory");
    println!("dict/json_request.dict");
}
