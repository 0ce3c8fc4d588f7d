//! The OpenRTB codec against the IAB examples, the official JSON Schema,
//! and hostile input.

use std::path::{Path, PathBuf};

use gavel_schemas::json::{self, Encoder, JsonError};
use gavel_schemas::openrtb::{Bid, BidArgs, BidResponse, BidResponseArgs, SeatBid, SeatBidArgs};
use gavel_schemas::verify;
use serde_json::Value;

#[path = "codec/verified.rs"]
mod verified;

fn openrtb_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/openrtb-2.6");
    assert!(
        dir.is_dir(),
        "the OpenRTB 2.6 reference folder is missing: expected {}",
        dir.display()
    );
    dir
}

fn json_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no JSON files in {}", dir.display());
    files
}

fn example_requests() -> Vec<(String, Vec<u8>)> {
    let mut files = json_files(&openrtb_dir().join("jsonschema/examples/bid-requests"));
    files.push((
        "ext-everywhere.json".into(),
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ext-everywhere.json"))
            .unwrap(),
    ));
    files
}

/// Keeps only the fields the official JSON Schema defines, following `$ref`s
/// from `schema` (a file name such as `BidRequest.json`). Fields outside the
/// schema (like `video.apis` in an IAB example, which 2.6 spells `api`) are
/// ignored by decoding, as spec section 2.6 requires, so they cannot survive a
/// round trip.
fn project(value: &Value, schema: &str) -> Value {
    let dir = openrtb_dir().join("jsonschema");
    let schema: Value = serde_json::from_slice(&std::fs::read(dir.join(schema)).unwrap()).unwrap();
    let (Value::Object(fields), Some(Value::Object(props))) = (value, schema.get("properties"))
    else {
        return value.clone();
    };
    let mut out = serde_json::Map::new();
    for (key, field) in fields {
        let Some(prop) = props.get(key) else { continue };
        let reference = prop
            .get("$ref")
            .or_else(|| prop.get("items").and_then(|items| items.get("$ref")));
        let projected = match (reference.and_then(Value::as_str), field) {
            (Some(r), Value::Array(items)) => {
                Value::Array(items.iter().map(|item| project(item, r)).collect())
            }
            (Some(r), _) => project(field, r),
            (None, _) => field.clone(),
        };
        out.insert(key.clone(), projected);
    }
    Value::Object(out)
}

/// JSON equality where 2 and 2.0 are the same number (OpenRTB decimals may
/// be written either way).
fn assert_same_json(path: &str, expected: &Value, actual: &Value) {
    match (expected, actual) {
        (Value::Number(e), Value::Number(a)) => {
            assert_eq!(e.as_f64(), a.as_f64(), "{path}: number differs")
        }
        (Value::Object(e), Value::Object(a)) => {
            let mut e_keys: Vec<_> = e.keys().collect();
            let mut a_keys: Vec<_> = a.keys().collect();
            e_keys.sort();
            a_keys.sort();
            assert_eq!(e_keys, a_keys, "{path}: fields differ");
            for (key, value) in e {
                assert_same_json(&format!("{path}.{key}"), value, &a[key]);
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(e.len(), a.len(), "{path}: array length differs");
            for (i, (e, a)) in e.iter().zip(a).enumerate() {
                assert_same_json(&format!("{path}[{i}]"), e, a);
            }
        }
        _ => assert_eq!(expected, actual, "{path}"),
    }
}

mod round_trip {
    use super::*;

    #[test]
    fn every_example_request_survives_json_to_flatbuffer_to_json() {
        let mut encoder = Encoder::new();
        for (name, body) in example_requests() {
            let fb = encoder
                .bid_request(&body)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let request = verify::bid_request(fb).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut out = Vec::new();
            json::bid_request_to_json(request, &mut out).unwrap();
            let expected = project(&serde_json::from_slice(&body).unwrap(), "BidRequest.json");
            let actual: Value = serde_json::from_slice(&out).unwrap();
            assert_same_json(&name, &expected, &actual);
        }
    }

    #[test]
    fn flatbuffer_view_reads_fields_in_place() {
        let body = std::fs::read(
            openrtb_dir().join("jsonschema/examples/bid-requests/pmp-direct-deal.json"),
        )
        .unwrap();
        let mut encoder = Encoder::new();
        let fb = encoder.bid_request(&body).unwrap().to_vec();
        let request = verify::bid_request(&fb).unwrap();
        assert_eq!(request.id(), "80ce30c53c16e6ede735f123ef6e32361bfc7b22");
        let imp = request.imp().get(0);
        assert_eq!(imp.bidfloor(), Some(0.03));
        assert_eq!(imp.banner().and_then(|b| b.w()), Some(300));
        let deals = imp.pmp().and_then(|p| p.deals()).expect("deals");
        assert_eq!(deals.len(), 2);
        assert_eq!(deals.get(0).id(), "AB-Agency1-0001");
        assert_eq!(deals.get(0).bidfloor(), Some(2.5));
        assert_eq!(request.tmax(), None, "absent scalars stay absent");
        // Zero copy: strings point into the buffer itself.
        let range = fb.as_ptr_range();
        assert!(range.contains(&request.id().as_ptr()));
    }

    #[test]
    fn ext_is_kept_verbatim() {
        let body =
            br#"{"id":"1","imp":[{"id":"1","ext":{"z":1,  "a":[true]}}],"ext":{"k":"\u00e9"}}"#;
        let mut encoder = Encoder::new();
        let request = verify::bid_request(encoder.bid_request(body).unwrap()).unwrap();
        assert_eq!(request.ext(), Some(r#"{"k":"\u00e9"}"#));
        assert_eq!(request.imp().get(0).ext(), Some(r#"{"z":1,  "a":[true]}"#));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let body = br#"{"id":"1","future":{"x":[1,2]},"imp":[{"id":"1","newfield":7,"banner":{"w":1,"zzz":"q"}}]}"#;
        let mut encoder = Encoder::new();
        let request = verify::bid_request(encoder.bid_request(body).unwrap()).unwrap();
        assert_eq!(request.imp().get(0).banner().and_then(|b| b.w()), Some(1));
    }

    #[test]
    fn encoder_reuse_gives_identical_bytes() {
        let mut encoder = Encoder::new();
        for (name, body) in example_requests() {
            let first = encoder.bid_request(&body).unwrap().to_vec();
            let _ = encoder
                .bid_request(br#"{"id":"other","imp":[{"id":"9"}]}"#)
                .unwrap();
            assert_eq!(first, encoder.bid_request(&body).unwrap(), "{name}");
        }
    }
}

mod response_schema {
    use super::*;

    fn validator() -> jsonschema::Validator {
        let dir = openrtb_dir().join("jsonschema");
        let mut options = jsonschema::options();
        for (name, body) in json_files(&dir) {
            let schema: Value = serde_json::from_slice(&body).unwrap();
            let uri = schema["$id"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has no $id"))
                .to_owned();
            options = options.with_resource(
                uri,
                jsonschema::Resource::from_contents(schema).expect("a known draft"),
            );
        }
        let root: Value =
            serde_json::from_slice(&std::fs::read(dir.join("BidResponse.json")).unwrap()).unwrap();
        options.build(&root).expect("BidResponse.json compiles")
    }

    fn assert_valid(validator: &jsonschema::Validator, name: &str, json: &[u8]) {
        let value: Value = serde_json::from_slice(json).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{}: {e}", e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "{name} violates BidResponse.json: {errors:?}\n{value}"
        );
    }

    #[test]
    fn example_responses_round_trip_and_validate() {
        let validator = validator();
        let mut encoder = Encoder::new();
        for (name, body) in json_files(&openrtb_dir().join("jsonschema/examples/bid-responses")) {
            let fb = encoder
                .bid_response(&body)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let response = verify::bid_response(fb).unwrap();
            let mut out = Vec::new();
            json::bid_response_to_json(response, &mut out).unwrap();
            assert_valid(&validator, &name, &out);
            let expected = project(&serde_json::from_slice(&body).unwrap(), "BidResponse.json");
            assert_same_json(&name, &expected, &serde_json::from_slice(&out).unwrap());
        }
    }

    #[test]
    fn built_responses_validate() {
        let validator = validator();
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let bid_id = fbb.create_string("b-1");
        let impid = fbb.create_string("1");
        let crid = fbb.create_string("creative-9");
        let dealid = fbb.create_string("deal-1");
        let adm = fbb.create_string("<div>\"ad\"</div>");
        let domain = fbb.create_string("advertiser.example");
        let adomain = fbb.create_vector(&[domain]);
        let bid_ext = fbb.create_string(r#"{"gavel":{"strategy_version":3}}"#);
        let bid = Bid::create(
            &mut fbb,
            &BidArgs {
                id: Some(bid_id),
                impid: Some(impid),
                price: 2.75,
                crid: Some(crid),
                dealid: Some(dealid),
                adm: Some(adm),
                adomain: Some(adomain),
                w: Some(300),
                h: Some(250),
                mtype: Some(1),
                ext: Some(bid_ext),
                ..Default::default()
            },
        );
        let bids = fbb.create_vector(&[bid]);
        let seat = fbb.create_string("tenant-a");
        let seatbid = SeatBid::create(
            &mut fbb,
            &SeatBidArgs {
                bid: Some(bids),
                seat: Some(seat),
                ..Default::default()
            },
        );
        let seatbids = fbb.create_vector(&[seatbid]);
        let id = fbb.create_string("req-1");
        let cur = fbb.create_string("USD");
        let root = BidResponse::create(
            &mut fbb,
            &BidResponseArgs {
                id: Some(id),
                seatbid: Some(seatbids),
                cur: Some(cur),
                ..Default::default()
            },
        );
        fbb.finish_minimal(root);
        let mut out = Vec::new();
        json::bid_response_to_json(verify::bid_response(fbb.finished_data()).unwrap(), &mut out)
            .unwrap();
        assert_valid(&validator, "bid", &out);
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            value["seatbid"][0]["bid"][0]["ext"]["gavel"]["strategy_version"],
            3
        );
        assert_eq!(value["seatbid"][0]["seat"], "tenant-a");

        // A no-bid answer: id and nbr only.
        fbb.reset();
        let id = fbb.create_string("req-2");
        let root = BidResponse::create(
            &mut fbb,
            &BidResponseArgs {
                id: Some(id),
                nbr: Some(15),
                ..Default::default()
            },
        );
        fbb.finish_minimal(root);
        out.clear();
        json::bid_response_to_json(verify::bid_response(fbb.finished_data()).unwrap(), &mut out)
            .unwrap();
        assert_valid(&validator, "no-bid", &out);
        assert_eq!(out, br#"{"id":"req-2","nbr":15}"#);
    }

    #[test]
    fn bad_ext_in_a_flatbuffer_is_an_error_not_invalid_json() {
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let id = fbb.create_string("r");
        let ext = fbb.create_string("{not json");
        let root = BidResponse::create(
            &mut fbb,
            &BidResponseArgs {
                id: Some(id),
                ext: Some(ext),
                ..Default::default()
            },
        );
        fbb.finish_minimal(root);
        let mut out = Vec::new();
        let err = json::bid_response_to_json(
            verify::bid_response(fbb.finished_data()).unwrap(),
            &mut out,
        );
        assert!(matches!(err, Err(JsonError::BadExt(_))), "{err:?}");
    }
}

mod hostile_input {
    use super::*;

    fn decode_err(body: &[u8]) -> String {
        match Encoder::new().bid_request(body) {
            Ok(_) => panic!(
                "accepted: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn wrong_types_name_the_field_path() {
        let err = decode_err(br#"{"id":"1","imp":[{"id":"1","banner":{"w":"300","h":250}}]}"#);
        assert!(
            err.starts_with("imp[0].banner.w: invalid type: string \"300\", expected i32"),
            "{err}"
        );
        let err = decode_err(br#"{"id":"1","imp":[{"id":"1"},{"id":"2","bidfloor":"cheap"}]}"#);
        assert!(
            err.starts_with("imp[1].bidfloor: invalid type: string"),
            "{err}"
        );
        let err = decode_err(br#"{"id":7,"imp":[{"id":"1"}]}"#);
        assert!(
            err.starts_with("id: invalid type: integer `7`, expected a string"),
            "{err}"
        );
        let err = decode_err(br#"{"id":"1","imp":[{"id":"1"}],"device":{"geo":{"lat":"north"}}}"#);
        assert!(err.starts_with("device.geo.lat:"), "{err}");
    }

    #[test]
    fn missing_required_fields_are_errors() {
        let err = decode_err(br#"{"imp":[{"id":"1"}]}"#);
        assert!(err.contains("missing field `id`"), "{err}");
        let err = decode_err(br#"{"id":"1"}"#);
        assert!(err.contains("missing field `imp`"), "{err}");
        let err = decode_err(br#"{"id":"1","imp":[{"id":"1"},{"banner":{}}]}"#);
        assert!(err.starts_with("imp[1]: missing field `id`"), "{err}");
        let err = decode_err(br#"{"id":"1","imp":[{"id":"1","pmp":{"deals":[{"bidfloor":1}]}}]}"#);
        assert!(
            err.starts_with("imp[0].pmp.deals[0]: missing field `id`"),
            "{err}"
        );
    }

    #[test]
    fn truncated_and_non_json_bytes_are_errors() {
        let body = std::fs::read(openrtb_dir().join("jsonschema/examples/bid-requests/video.json"))
            .unwrap();
        let mut encoder = Encoder::new();
        for len in 0..body.len() - 1 {
            // Trailing whitespace aside, every proper prefix is incomplete.
            if body[len..].iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            assert!(
                encoder.bid_request(&body[..len]).is_err(),
                "prefix of {len} bytes accepted"
            );
        }
        for garbage in [
            &b""[..],
            b"null",
            b"[]",
            b"42",
            b"\"id\"",
            b"{",
            b"}{",
            b"\x00\x01\x02",
            b"{\"id\":\"1\",\"imp\":[]}x",
        ] {
            assert!(
                encoder.bid_request(garbage).is_err(),
                "{garbage:?} accepted"
            );
        }
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let err = decode_err(b"{\"id\":\"\xff\xfe\",\"imp\":[{\"id\":\"1\"}]}");
        assert!(
            err.contains("invalid unicode") || err.contains("UTF-8"),
            "{err}"
        );
        let err =
            decode_err(b"{\"id\":\"1\",\"imp\":[{\"id\":\"1\"}],\"ext\":{\"k\":\"\xc3\x28\"}}");
        assert!(
            err.contains("invalid unicode") || err.contains("UTF-8"),
            "{err}"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let depth = 10_000;
        let deep = || format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let in_ext = format!(r#"{{"id":"1","imp":[{{"id":"1"}}],"ext":{}}}"#, deep());
        let in_known_field = format!(r#"{{"id":"1","imp":[{{"id":"1"}}],"bcat":{}}}"#, deep());
        let ext_33 = format!(
            r#"{{"id":"1","imp":[{{"id":"1","ext":{{"a":{}}}}}]}}"#,
            "[".repeat(32) + &"]".repeat(32)
        );
        for body in [deep(), in_ext, in_known_field, ext_33] {
            let err = decode_err(body.as_bytes());
            assert!(
                err.contains("recursion limit")
                    || err.contains("ext nests deeper")
                    || err.contains("invalid type"),
                "{err}"
            );
        }
        // Unknown fields are skipped without recursion (no stack, no memory),
        // so spec section 2.6 (ignore unknown fields) holds even for these.
        let in_unknown = format!(r#"{{"id":"1","imp":[{{"id":"1"}}],"x":{}}}"#, deep());
        let mut encoder = Encoder::new();
        let request =
            verify::bid_request(encoder.bid_request(in_unknown.as_bytes()).unwrap()).unwrap();
        assert_eq!(request.id(), "1");
    }

    #[test]
    fn huge_documents_are_refused_before_parsing() {
        let ids = r#"{"id":"1"},"#.repeat(json::JSON_BYTES_MAX / 10);
        let body = format!(r#"{{"id":"1","imp":[{ids}{{"id":"2"}}]}}"#);
        let err = Encoder::new().bid_request(body.as_bytes()).unwrap_err();
        assert!(matches!(err, JsonError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn large_arrays_under_the_limit_decode() {
        // The worst case for growth into a flatbuffer: as many empty strings
        // as fit under the JSON limit. It must encode and then verify.
        let count = (json::JSON_BYTES_MAX - 100) / 3;
        let cats = r#""","#.repeat(count);
        let body = format!(r#"{{"id":"1","imp":[{{"id":"1"}}],"bcat":[{cats}""]}}"#);
        assert!(body.len() <= json::JSON_BYTES_MAX);
        let mut encoder = Encoder::new();
        let request = verify::bid_request(encoder.bid_request(body.as_bytes()).unwrap()).unwrap();
        assert_eq!(request.bcat().map(|v| v.len()), Some(count + 1));
    }

    fn sample_flatbuffer() -> Vec<u8> {
        let body = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ext-everywhere.json"),
        )
        .unwrap();
        Encoder::new().bid_request(&body).unwrap().to_vec()
    }

    /// Reads every field the way the server and the JSON path do.
    fn read_everything(bytes: &[u8]) {
        if let Ok(request) = verify::bid_request(bytes) {
            let mut out = Vec::new();
            let _ = json::bid_request_to_json(request, &mut out);
        }
    }

    #[test]
    fn corrupted_flatbuffers_are_rejected_or_read_safely() {
        let good = sample_flatbuffer();
        let mut rejected = 0;
        for i in 0..good.len() {
            for xor in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= xor;
                if verify::bid_request(&bad).is_err() {
                    rejected += 1;
                }
                read_everything(&bad);
            }
        }
        // Offsets and lengths are everywhere: most flips must be caught.
        assert!(
            rejected > good.len() / 4,
            "only {rejected} corruptions of {} bytes rejected",
            good.len()
        );
        for len in 0..good.len() {
            assert!(
                verify::bid_request(&good[..len]).is_err() || len > 8,
                "{len}-byte prefix accepted"
            );
            read_everything(&good[..len]);
        }
    }

    #[test]
    fn bad_offsets_are_rejected() {
        // A root offset pointing past the end, and one pointing at itself.
        assert!(verify::bid_request(&[0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]).is_err());
        assert!(verify::bid_request(&[0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(verify::bid_request(&[]).is_err());
        let too_big = vec![0u8; verify::BID_REQUEST_BYTES_MAX + 1];
        assert!(matches!(
            verify::bid_request(&too_big),
            Err(verify::VerifyError::TooLarge { .. })
        ));
    }

    #[test]
    fn missing_required_field_in_a_flatbuffer_is_rejected() {
        use gavel_schemas::openrtb::{BidRequest, BidRequestArgs};
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let id = fbb.create_string("no-imps");
        // Build the table by hand: the generated `create` would refuse.
        let start = fbb.start_table();
        fbb.push_slot_always(BidRequest::VT_ID, id);
        let table = fbb.end_table(start);
        fbb.finish_minimal(flatbuffers::WIPOffset::<BidRequest>::new(table.value()));
        let err = verify::bid_request(fbb.finished_data()).unwrap_err();
        assert!(err.to_string().contains("imp"), "{err}");
        let _ = BidRequestArgs::default();
    }
}
