//! `VerifiedBidRequest`: the same limits and request rules on both wire
//! formats.

use flatbuffers::FlatBufferBuilder;
use gavel_schemas::json::{Encoder, JsonError};
use gavel_schemas::openrtb::{Banner, BannerArgs, BidRequest, BidRequestArgs, Imp, ImpArgs};
use gavel_schemas::verify::{self, BID_REQUEST_TABLES_MAX, VerifyError};

use super::example_requests;

/// A JSON request with one imp per id, each with a banner when `banners`,
/// and `extra` fields (`,"site":{}`) after the imps.
fn request_json<S: AsRef<str>>(ids: &[S], banners: bool, extra: &str) -> String {
    let imps: Vec<String> = ids
        .iter()
        .map(|id| {
            let banner = if banners {
                r#","banner":{"w":300}"#
            } else {
                ""
            };
            format!(r#"{{"id":{:?}{banner}}}"#, id.as_ref())
        })
        .collect();
    format!(r#"{{"id":"r","imp":[{}]{extra}}}"#, imps.join(","))
}

fn numbered_ids(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("imp-{i}")).collect()
}

/// The same request as `request_json(ids, true, "")`, built directly as a
/// flatbuffer (the encoder would refuse to build an oversized one).
fn request_flatbuffer(ids: &[String]) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let imps: Vec<_> = ids
        .iter()
        .map(|id| {
            let id = fbb.create_string(id);
            let banner = Banner::create(
                &mut fbb,
                &BannerArgs {
                    w: Some(300),
                    ..Default::default()
                },
            );
            Imp::create(
                &mut fbb,
                &ImpArgs {
                    id: Some(id),
                    banner: Some(banner),
                    ..Default::default()
                },
            )
        })
        .collect();
    let imp = fbb.create_vector(&imps);
    let id = fbb.create_string("r");
    let root = BidRequest::create(
        &mut fbb,
        &BidRequestArgs {
            id: Some(id),
            imp: Some(imp),
            ..Default::default()
        },
    );
    fbb.finish_minimal(root);
    fbb.finished_data().to_vec()
}

/// Both paths reject `json` (the flatbuffer path gets it through the plain
/// encoder, which does not apply the request rules); returns both errors.
fn rejected_on_both_paths(json: &str) -> (JsonError, VerifyError) {
    let mut encoder = Encoder::new();
    let json_err = encoder
        .bid_request_checked(json.as_bytes())
        .expect_err("the JSON path accepted it");
    let flatbuffer = encoder
        .bid_request(json.as_bytes())
        .expect("well-formed and within the limits")
        .to_vec();
    let verify_err =
        verify::bid_request_checked(&flatbuffer).expect_err("the flatbuffers path accepted it");
    (json_err, verify_err)
}

mod limits {
    use super::*;

    #[test]
    fn json_with_too_many_tables_is_rejected_naming_the_limit() {
        // 2,100 imps with a banner each: 4,201 tables with the request.
        let json = request_json(&numbered_ids(2_100), true, "");
        let mut encoder = Encoder::new();
        let err = encoder.bid_request_checked(json.as_bytes()).unwrap_err();
        assert!(
            matches!(err, JsonError::TooManyTables { tables_max } if tables_max == BID_REQUEST_TABLES_MAX),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("request has more than 4096 objects (tables), the limit"),
            "{err}"
        );
        // The plain encoder refuses it too: its bytes always verify.
        assert!(matches!(
            encoder.bid_request(json.as_bytes()),
            Err(JsonError::TooManyTables { .. })
        ));
        // And the encoder is fine afterwards.
        let ok = request_json(&numbered_ids(2), true, "");
        encoder.bid_request_checked(ok.as_bytes()).unwrap();
    }

    #[test]
    fn flatbuffer_with_too_many_tables_is_rejected() {
        let flatbuffer = request_flatbuffer(&numbered_ids(2_100));
        let err = verify::bid_request_checked(&flatbuffer).unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::Invalid(flatbuffers::InvalidFlatbuffer::TooManyTables)
            ),
            "{err:?}"
        );
    }

    #[test]
    fn json_at_the_table_limit_is_accepted_and_verifies() {
        // The request, 2,047 imps with banners and a site: exactly 4,096.
        let ids = numbered_ids(2_047);
        assert_eq!(1 + 2 * ids.len() + 1, BID_REQUEST_TABLES_MAX);
        let at_limit = request_json(&ids, true, r#","site":{}"#);
        let mut encoder = Encoder::new();
        let request = encoder.bid_request_checked(at_limit.as_bytes()).unwrap();
        assert_eq!(request.view().imp().len(), 2_047);
        assert_eq!(request.view().imp().get(2_046).id(), "imp-2046");
        let bytes = request.bytes().to_vec();
        verify::bid_request(&bytes).expect("the encoder's bytes verify");
        let again = verify::bid_request_checked(&bytes).expect("and pass the request rules");
        assert_eq!(again.bytes(), &bytes[..]);

        // One more table is one too many, on both paths.
        let over = request_json(&ids, true, r#","site":{},"device":{}"#);
        assert!(matches!(
            encoder.bid_request_checked(over.as_bytes()),
            Err(JsonError::TooManyTables { .. })
        ));
        let mut ids_over = ids;
        ids_over.push("one-more".into());
        assert!(verify::bid_request_checked(&request_flatbuffer(&ids_over)).is_err());
    }
}

mod rules {
    use super::*;

    #[test]
    fn duplicate_imp_ids_are_rejected_on_both_paths_naming_the_id() {
        // Around the switch from pairwise comparison (<= 16 imps) to sorting,
        // with the duplicate at both ends and in the middle.
        for count in [2, 3, 15, 16, 17, 100, 2_000] {
            for (first, second) in [(0, count - 1), (count / 2 - 1, count / 2)] {
                let mut ids = numbered_ids(count);
                ids[second] = ids[first].clone();
                let duplicated = ids[first].clone();
                let json = request_json(&ids, false, "");
                let (json_err, verify_err) = rejected_on_both_paths(&json);
                let expected = format!(
                    "imp id {duplicated:?} appears more than once; imp ids must be unique within a request"
                );
                assert!(
                    matches!(&json_err, JsonError::DuplicateImpId(id) if *id == duplicated),
                    "{count} imps: {json_err:?}"
                );
                assert!(
                    matches!(&verify_err, VerifyError::DuplicateImpId(id) if *id == duplicated),
                    "{count} imps: {verify_err:?}"
                );
                assert_eq!(json_err.to_string(), expected);
                assert_eq!(verify_err.to_string(), expected);
            }
        }
    }

    #[test]
    fn unique_imp_ids_pass_at_every_size() {
        let mut encoder = Encoder::new();
        for count in [1, 2, 16, 17, 500] {
            let json = request_json(&numbered_ids(count), false, "");
            let request = encoder.bid_request_checked(json.as_bytes()).unwrap();
            assert_eq!(request.view().imp().len(), count);
            verify::bid_request_checked(request.bytes()).unwrap();
        }
        // Ids differing only in case or by a prefix are distinct.
        let json = request_json(&["a", "A", "ab", ""], false, "");
        encoder.bid_request_checked(json.as_bytes()).unwrap();
    }

    #[test]
    fn a_long_duplicate_id_is_quoted_only_in_part() {
        let long = "é".repeat(1_000);
        let json = request_json(&[long.as_str(), "x", long.as_str()], false, "");
        let (json_err, verify_err) = rejected_on_both_paths(&json);
        for message in [json_err.to_string(), verify_err.to_string()] {
            assert!(
                message.len() < verify::ID_IN_ERROR_BYTES_MAX + 100,
                "{message}"
            );
            assert!(message.starts_with("imp id \"éé"), "{message}");
            assert!(
                message.contains("...\" appears more than once"),
                "{message}"
            );
        }
    }

    #[test]
    fn negative_tmax_is_rejected_on_both_paths() {
        let json = request_json(&["1"], false, r#","tmax":-1"#);
        let (json_err, verify_err) = rejected_on_both_paths(&json);
        assert!(
            matches!(json_err, JsonError::NegativeTmax(-1)),
            "{json_err:?}"
        );
        assert!(
            matches!(verify_err, VerifyError::NegativeTmax(-1)),
            "{verify_err:?}"
        );
        for message in [json_err.to_string(), verify_err.to_string()] {
            assert_eq!(message, "tmax must be >= 0 (milliseconds), got -1");
        }
        // Zero and absent are valid.
        let mut encoder = Encoder::new();
        for extra in [r#","tmax":0"#, r#","tmax":120"#, ""] {
            let json = request_json(&["1"], false, extra);
            let request = encoder.bid_request_checked(json.as_bytes()).unwrap();
            verify::bid_request_checked(request.bytes()).unwrap();
        }
    }
}

#[test]
fn every_example_request_is_checked_on_both_paths() {
    let mut encoder = Encoder::new();
    for (name, body) in example_requests() {
        let request = encoder
            .bid_request_checked(&body)
            .unwrap_or_else(|e| panic!("{name}: JSON: {e}"));
        let id = request.view().id().to_owned();
        let bytes = request.bytes().to_vec();
        let from_flatbuffer = verify::bid_request_checked(&bytes)
            .unwrap_or_else(|e| panic!("{name}: flatbuffer: {e}"));
        assert_eq!(from_flatbuffer.view().id(), id, "{name}");
        assert_eq!(from_flatbuffer.bytes(), &bytes[..], "{name}");
        // The checked and plain encoders build the same bytes.
        assert_eq!(encoder.bid_request(&body).unwrap(), &bytes[..], "{name}");
    }
}
