//! Oracles for the server's own decoders: the HTTP/1.1 head parser both
//! ports use, the host's checks of a strategy's answer, and the structural
//! checks a module passes before it is compiled.
//!
//! These link the `gavel` crate (and so wasmtime); the schema oracles in
//! [`crate::oracle`] do not.

use std::sync::OnceLock;

use gavel::http::{self, HeadLimits};
use gavel::kv::{Table, TableLimits};
use gavel::money::amount::parse_decimal_micros;
use gavel::money::price::{PriceKeys, clearing_cpm_micros};
use gavel::money::token::{ClaimsRef, NoticeKeys};
use gavel::runtime::answer::{Answer, RequestIndex, Rules};
use gavel::runtime::validate::{self, ModuleLimits};
use gavel_schemas::json::Encoder;
use gavel_schemas::verify;

use crate::oracle::Verdict;

/// The two ports' limits: the bid port's defaults, and the admin port's
/// (larger head and body, no `Content-Length` needed).
const PORT_LIMITS: [HeadLimits; 2] = [
    HeadLimits {
        header_bytes_max: 8 << 10,
        body_bytes_max: 256 << 10,
        length_required: true,
    },
    HeadLimits {
        header_bytes_max: 16 << 10,
        body_bytes_max: 8 << 20,
        length_required: false,
    },
];

/// `http_head`: a request head, as either port reads it.
///
/// - A complete head lies inside the input and under the head limit, with a
///   body length under the body limit, and every line ends with CRLF.
/// - Its target and `Authorization` value are slices of the head.
/// - Framing is stable: parsing the head alone gives the same head length
///   and body length (nothing after the head changes where it ends).
/// - An incomplete head is one still under the head limit.
pub fn http_head(bytes: &[u8]) -> Verdict {
    let mut verdict = Verdict::Rejected;
    for limits in PORT_LIMITS {
        match http::parse_head(bytes, limits) {
            Ok(Some(head)) => {
                verdict = Verdict::Accepted;
                assert!(head.head_len <= bytes.len(), "head past the input");
                assert!(
                    head.head_len <= limits.header_bytes_max,
                    "head over the limit"
                );
                assert!(
                    head.body_len <= limits.body_bytes_max,
                    "body over the limit"
                );
                let raw = &bytes[..head.head_len];
                for (i, &b) in raw.iter().enumerate() {
                    assert!(
                        b != b'\n' || (i > 0 && raw[i - 1] == b'\r'),
                        "a bare LF at {i} was accepted"
                    );
                }
                let (path, query) = head.path_and_query(raw);
                assert!(path.len() + query.len() <= raw.len());
                if let Some(auth) = head.authorization {
                    assert!(auth.get(raw).len() <= raw.len());
                }
                let again = http::parse_head(raw, limits)
                    .expect("the head alone parses")
                    .expect("the head alone is complete");
                assert_eq!(
                    (again.head_len, again.body_len),
                    (head.head_len, head.body_len),
                    "framing depends on the bytes after the head"
                );
            }
            Ok(None) => assert!(
                bytes.len() <= limits.header_bytes_max,
                "an incomplete head over the limit is still waited for"
            ),
            Err(fatal) => assert!(
                (400..500).contains(&fatal.status),
                "a bad head is a 4xx, got {}",
                fatal.status
            ),
        }
    }
    verdict
}

/// The request every answer is checked against: two impressions, one with
/// a floor in another currency, one in a private auction with a deal, and
/// blocked advertisers and categories.
const ANSWER_REQUEST_JSON: &[u8] = br#"{"id":"fuzz","tmax":100,"cur":["USD"],
"imp":[{"id":"1","bidfloor":0.5,"banner":{"w":300,"h":250}},
{"id":"2","bidfloor":1.0,"bidfloorcur":"EUR","banner":{"w":728,"h":90}},
{"id":"3","pmp":{"private_auction":1,"deals":[{"id":"d1","bidfloor":2.0,"wseat":["seat"]}]},"banner":{"w":1,"h":1}}],
"badv":["blocked.com"],"bcat":["IAB25"]}"#;

/// Highest price the checks accept in this oracle.
const PRICE_MAX: f64 = 1000.0;

fn answer_request() -> &'static [u8] {
    static REQUEST: OnceLock<Vec<u8>> = OnceLock::new();
    REQUEST.get_or_init(|| {
        Encoder::new()
            .bid_request(ANSWER_REQUEST_JSON)
            .expect("the oracle's request is valid")
            .to_vec()
    })
}

/// `strategy_answer`: a strategy's answer through the host's checks.
///
/// - A verified answer yields valid bids plus counted rejections, never
///   more valid bids than impressions, at most one per impression.
/// - Every valid bid names an impression of the request, has a finite
///   price above 0, at most the cap and at least the impression's floor in
///   the bidder's currency; a bid in the private auction carries its deal.
pub fn strategy_answer(bytes: &[u8]) -> Verdict {
    let request = verify::bid_request(answer_request()).expect("the oracle's request verifies");
    let index = RequestIndex::of(&request);
    let rules = Rules {
        request,
        index: &index,
        currency: "USD",
        seat: "seat",
        price_max: PRICE_MAX,
    };
    let mut answer = Answer::default();
    let mut rejected = 0usize;
    let Ok(valid) = answer.check(bytes, &rules, |_| rejected += 1) else {
        return Verdict::Rejected;
    };
    let imps = request.imp();
    assert_eq!(valid, answer.bids().len());
    assert!(valid <= imps.len(), "more valid bids than impressions");
    let mut seen = Vec::new();
    for checked in answer.bids() {
        assert!(
            !seen.contains(&checked.imp_index),
            "two bids for one impression"
        );
        seen.push(checked.imp_index);
        let imp = imps.get(checked.imp_index);
        let bid = answer.bid(checked);
        assert_eq!(bid.impid(), imp.id(), "the bid names another impression");
        let price = checked.price;
        assert!(
            price.is_finite() && price > 0.0 && price <= PRICE_MAX,
            "price {price}"
        );
        let mut domains = bid.adomain().into_iter().flatten();
        assert!(!domains.any(|d| d == "blocked.com"), "a blocked domain");
        let mut categories = bid.cat().into_iter().flatten();
        assert!(!categories.any(|c| c == "IAB25"), "a blocked category");
        match imp.id() {
            "1" => assert!(price >= 0.5, "under the floor: {price}"),
            "2" => panic!("a floor in EUR cannot be met in USD"),
            "3" => {
                assert_eq!(bid.dealid(), Some("d1"), "private auction without its deal");
                assert!(price >= 2.0, "under the deal floor: {price}");
            }
            other => panic!("unknown impression {other}"),
        }
    }
    Verdict::Accepted
}

/// Limits so small that almost every module is over one of them.
const TIGHT_LIMITS: ModuleLimits = ModuleLimits {
    functions_max: 2,
    function_body_bytes_max: 64,
    nesting_depth_max: 2,
    locals_per_function_max: 4,
    br_table_targets_max: 2,
    loops_per_function_max: 1,
    loops_max: 2,
};

/// `module_structure`: the structural checks before compilation.
///
/// - They never panic and take one linear pass, whatever the bytes.
/// - Refusal is monotonic: a module within tight limits is within the
///   default (looser) ones, and a refusal names a limit.
pub fn module_structure(bytes: &[u8]) -> Verdict {
    let defaults = ModuleLimits::default();
    let loose = validate::check_structure(bytes, &defaults);
    let tight = validate::check_structure(bytes, &TIGHT_LIMITS);
    if tight.is_ok() {
        assert!(
            loose.is_ok(),
            "within tight limits but not the default ones: {loose:?}"
        );
    }
    match loose {
        Ok(()) => Verdict::Accepted,
        Err(reason) => {
            assert!(
                reason.to_string().contains("_max"),
                "a refusal names its limit: {reason}"
            );
            Verdict::Rejected
        }
    }
}

/// The notice keys `notice` verifies with: one fixed key (bytes 0..32, id
/// 1), so that the committed corpus can hold tokens it accepts.
fn notice_keys() -> &'static NoticeKeys {
    static KEYS: OnceLock<NoticeKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("gavel-fuzz-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let secret: Vec<u8> = (0..32).collect();
        let file = serde_json::json!({
            "keys": [{ "id": 1, "secret": hex::encode(secret), "created_unix_s": 0 }]
        });
        std::fs::write(dir.join("notice-keys.json"), file.to_string()).expect("key file");
        let keys = NoticeKeys::open(&dir).expect("fixed key");
        let _ = std::fs::remove_dir_all(&dir);
        keys
    })
}

/// The price-encryption scheme's published sample keys.
fn price_keys() -> &'static PriceKeys {
    static KEYS: OnceLock<PriceKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        PriceKeys::from_base64(
            "skU7Ax_NL5pPAFyKdkfZjZz2-VhIN8bjj1rVFOaJ_5o=",
            "arO23ykdNqUQ5LEoQ0FVmPkBd7xB5CO89PDZlSjpFxo=",
        )
        .expect("sample keys")
    })
}

/// `notice`: what a win, billing or loss notice carries, as the bid port
/// reads it. The first byte picks the part; the rest is its text.
///
/// - 0, a token: an accepted token is canonical. Signing its claims again
///   with the same key gives back the same text, byte for byte, so no two
///   spellings name one bid (and no altered token verifies).
/// - 1, a clear price: an accepted price is exact and non-negative; its
///   micros printed back with six decimals parse to the same micros.
/// - 2, an encrypted price: one that passes its integrity check decrypts
///   to micros that, encrypted again under its own IV, give the same text
///   (without padding).
pub fn notice(bytes: &[u8]) -> Verdict {
    let Some((&part, rest)) = bytes.split_first() else {
        return Verdict::Rejected;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return Verdict::Rejected;
    };
    match part % 3 {
        0 => match notice_keys().verify(text) {
            Ok(claims) => {
                let (mut payload, mut again) = (Vec::new(), String::new());
                notice_keys().sign(
                    &ClaimsRef {
                        time_ms: claims.time_ms,
                        price_cpm_micros: claims.price_cpm_micros,
                        user_key: claims.user_key,
                        crid_key: claims.crid_key,
                        tenant: &claims.tenant,
                        exchange: &claims.exchange,
                        request: &claims.request,
                        imp: &claims.imp,
                        bid: &claims.bid,
                        node: &claims.node,
                    },
                    &mut payload,
                    &mut again,
                );
                // Signing writes the current version: a version 1 or 2
                // token (still read) comes back longer, with the same
                // claims.
                let older =
                    base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, text)
                        .is_ok_and(|bytes| matches!(bytes.first(), Some(1 | 2)));
                if older {
                    assert_eq!(notice_keys().verify(&again), Ok(claims), "claims changed");
                } else {
                    assert_eq!(again, text, "an accepted token is not canonical");
                }
                Verdict::Accepted
            }
            Err(_) => Verdict::Rejected,
        },
        1 => match clearing_cpm_micros(text, None) {
            Ok(micros) => {
                assert!(micros >= 0, "negative price {micros}");
                let printed = format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
                assert_eq!(parse_decimal_micros(&printed), Some(micros), "{text:?}");
                Verdict::Accepted
            }
            Err(_) => Verdict::Rejected,
        },
        _ => match price_keys().decrypt(text) {
            Ok(micros) => {
                let trimmed = text.trim_end_matches('=');
                let raw = base64_iv(trimmed);
                assert_eq!(price_keys().encrypt(micros, raw), trimmed, "{text:?}");
                Verdict::Accepted
            }
            Err(_) => Verdict::Rejected,
        },
    }
}

/// The IV (first 16 bytes) of a web-safe base64 ciphertext that decrypted.
fn base64_iv(text: &str) -> [u8; 16] {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("it decrypted, so it decodes");
    bytes[..16].try_into().expect("28 bytes")
}

/// Small limits, so that the fuzzer reaches every one of them.
const TABLE_LIMITS: TableLimits = TableLimits {
    tables_max: 4,
    entries_max: 64,
    key_bytes_max: 32,
    value_bytes_max: 64,
    bytes_max: 1024,
};

/// `data_table`: a tenant's uploaded table (JSON lines).
///
/// - Parsing never panics, whatever the bytes.
/// - An accepted table holds exactly its lines: every line's key finds its
///   value, the counts match, and keys that differ by one trailing byte
///   from a stored key are absent unless stored themselves.
/// - A refusal names a line or a limit.
pub fn data_table(bytes: &[u8]) -> Verdict {
    match Table::parse("fuzz", bytes, &TABLE_LIMITS, 0, 0) {
        Ok(table) => {
            let mut keys = std::collections::HashSet::new();
            let mut stored = 0;
            for raw in bytes.split(|b| *b == b'\n') {
                if raw.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let line: serde_json::Value =
                    serde_json::from_slice(raw).expect("an accepted line is JSON");
                let (key, value) = (
                    line["key"].as_str().expect("a string key"),
                    line["value"].as_str().expect("a string value"),
                );
                assert_eq!(
                    table.get(key.as_bytes()),
                    Some(value.as_bytes()),
                    "line {key:?}"
                );
                keys.insert(key.as_bytes().to_vec());
                stored += key.len() + value.len();
            }
            for key in &keys {
                let longer = [key.as_slice(), b"\x01"].concat();
                if !keys.contains(&longer) {
                    assert_eq!(table.get(&longer), None, "a key never stored was found");
                }
            }
            assert_eq!(table.info().entries, keys.len());
            assert_eq!(table.info().bytes, stored);
            Verdict::Accepted
        }
        Err(error) => {
            let text = error.to_string();
            assert!(
                text.contains("line ") || text.contains("_max"),
                "a refusal names a line or a limit: {text}"
            );
            Verdict::Rejected
        }
    }
}
