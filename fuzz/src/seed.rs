//! Seed corpora and dictionaries, generated deterministically.
//!
//! libFuzzer mutates its way out from valid inputs much faster than it finds
//! them from nothing, so every target starts from a few inputs that take
//! the decoder's accepting path: the IAB OpenRTB 2.6 examples, the same
//! requests as flatbuffers, strategy answers built with the generated
//! builders, and captures made by `CaptureWriter`. `run.sh seed` writes them
//! (the files are committed); the same bytes come out on every run.

use gavel_schemas::capture::{CaptureWriter, ContentType, Header};
use gavel_schemas::flatbuffers::FlatBufferBuilder;
use gavel_schemas::json::Encoder;
use gavel_schemas::strategy::{StrategyBid, StrategyBidArgs, StrategyBids, StrategyBidsArgs};

/// One seed input: a file name (without directory) and its bytes.
pub type Seed = (String, Vec<u8>);

/// The JSON examples (`name.json`) as `BidRequest` flatbuffers (`name.fb`).
pub fn flatbuffers_requests(json_examples: &[Seed]) -> Vec<Seed> {
    let mut encoder = Encoder::new();
    json_examples
        .iter()
        .map(|(name, json)| {
            let bytes = encoder
                .bid_request(json)
                .unwrap_or_else(|error| panic!("seed {name} does not encode: {error}"));
            (fb_name(name), bytes.to_vec())
        })
        .collect()
}

fn fb_name(json_name: &str) -> String {
    let stem = json_name.strip_suffix(".json").unwrap_or(json_name);
    format!("{stem}.fb")
}

/// The fields of one `StrategyBid`, borrowed; `None` or empty is absent.
#[derive(Default)]
struct BidFields<'a> {
    impid: &'a str,
    price: f64,
    crid: Option<&'a str>,
    adid: Option<&'a str>,
    cid: Option<&'a str>,
    adomain: &'a [&'a str],
    cat: &'a [&'a str],
    attr: &'a [i32],
    dealid: Option<&'a str>,
    adm: Option<&'a str>,
    nurl: Option<&'a str>,
    burl: Option<&'a str>,
    lurl: Option<&'a str>,
    w: Option<i32>,
    h: Option<i32>,
    mtype: Option<i32>,
}

fn strategy_answer(bids: &[BidFields<'_>]) -> Vec<u8> {
    let mut builder = FlatBufferBuilder::new();
    let mut offsets = Vec::with_capacity(bids.len());
    for bid in bids {
        let mut string = |value: Option<&str>| value.map(|value| builder.create_string(value));
        let impid = string(Some(bid.impid));
        let crid = string(bid.crid);
        let adid = string(bid.adid);
        let cid = string(bid.cid);
        let dealid = string(bid.dealid);
        let adm = string(bid.adm);
        let nurl = string(bid.nurl);
        let burl = string(bid.burl);
        let lurl = string(bid.lurl);
        let mut strings = |values: &[&str]| {
            (!values.is_empty()).then(|| {
                let values: Vec<_> = values
                    .iter()
                    .map(|value| builder.create_string(value))
                    .collect();
                builder.create_vector(&values)
            })
        };
        let adomain = strings(bid.adomain);
        let cat = strings(bid.cat);
        let attr = (!bid.attr.is_empty()).then(|| builder.create_vector(bid.attr));
        offsets.push(StrategyBid::create(
            &mut builder,
            &StrategyBidArgs {
                impid,
                price: bid.price,
                crid,
                adid,
                cid,
                adomain,
                cat,
                attr,
                dealid,
                adm,
                nurl,
                burl,
                lurl,
                w: bid.w,
                h: bid.h,
                mtype: bid.mtype,
            },
        ));
    }
    let bids = builder.create_vector(&offsets);
    let root = StrategyBids::create(&mut builder, &StrategyBidsArgs { bids: Some(bids) });
    builder.finish_minimal(root);
    builder.finished_data().to_vec()
}

/// Strategy answers as the SDK builds them: a minimal bid, a bid with every
/// field, a private-auction answer for two impressions, and no bids.
pub fn strategy_answers() -> Vec<Seed> {
    let full = BidFields {
        impid: "1",
        price: 2.5,
        crid: Some("bwa-studio-buds-300x250-v5"),
        adid: Some("ad-314"),
        cid: Some("campaign-7"),
        adomain: &["brightwaveaudio.com"],
        cat: &["IAB19", "IAB19-29"],
        attr: &[1, 3, 6],
        dealid: None,
        adm: Some(
            "<a href=\"https://ads.example/click\"><img src=\"https://ads.example/b.png\"></a>",
        ),
        nurl: Some("https://win.example/n?price=${AUCTION_PRICE}"),
        burl: Some("https://bill.example/b?price=${AUCTION_PRICE}"),
        lurl: Some("https://loss.example/l?reason=${AUCTION_LOSS}"),
        w: Some(300),
        h: Some(250),
        mtype: Some(1),
    };
    let deal = BidFields {
        impid: "2",
        price: 12.0,
        crid: Some("deal-creative"),
        dealid: Some("AB-Agency1-0001"),
        adomain: &["advertiser.example", "brand.example"],
        mtype: Some(2),
        adm: Some("<VAST version=\"4.2\"></VAST>"),
        ..BidFields::default()
    };
    vec![
        (
            "answer-minimal.fb".into(),
            strategy_answer(&[BidFields {
                impid: "1",
                price: 1.0,
                ..BidFields::default()
            }]),
        ),
        ("answer-full.fb".into(), strategy_answer(&[full])),
        (
            "answer-two-impressions.fb".into(),
            strategy_answer(&[
                BidFields {
                    impid: "1",
                    price: 0.75,
                    cat: &["IAB1"],
                    w: Some(728),
                    h: Some(90),
                    ..BidFields::default()
                },
                deal,
            ]),
        ),
        ("answer-empty.fb".into(), strategy_answer(&[])),
    ]
}

/// Captures made by `CaptureWriter`: one empty, and one with a JSON
/// record, a flatbuffers record and an empty body at increasing offsets.
pub fn captures(json_request: &[u8], flatbuffers_request: &[u8]) -> Vec<Seed> {
    let header = |source: &str| Header {
        created_at_unix_ns: 0,
        source: source.into(),
    };
    let empty = CaptureWriter::new(Vec::new(), &header("gavel-fuzz seed empty"))
        .and_then(CaptureWriter::finish)
        .expect("writing to a Vec cannot fail");
    let mut writer = CaptureWriter::new(Vec::new(), &header("gavel-fuzz seed mixed"))
        .expect("writing to a Vec cannot fail");
    let records: [(u64, ContentType, &[u8]); 3] = [
        (0, ContentType::Json, json_request),
        (1_000_000, ContentType::Flatbuffers, flatbuffers_request),
        (1_000_000, ContentType::Json, b""),
    ];
    for (offset_ns, content_type, body) in records {
        writer
            .write(offset_ns, content_type, body)
            .expect("writing to a Vec cannot fail");
    }
    let mixed = writer.finish().expect("writing to a Vec cannot fail");
    vec![
        ("capture-empty.gcap".into(), empty),
        ("capture-mixed.gcap".into(), mixed),
    ]
}

/// A libFuzzer dictionary of every OpenRTB key in `openrtb.fbs` (the
/// request tables, which come first), written as `"key":`, so mutations
/// splice in real field names instead of guessing them byte by byte.
pub fn json_request_dictionary(openrtb_fbs: &str) -> String {
    let mut keys: Vec<&str> = openrtb_fbs
        .lines()
        .take_while(|line| !line.starts_with("table BidResponse"))
        .filter_map(|line| {
            let (name, _) = line.trim().split_once(':')?;
            let name = name.trim();
            let is_field = !name.is_empty()
                && !line.trim_start().starts_with("//")
                && name
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
            is_field.then_some(name)
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut dictionary =
        String::from("# OpenRTB 2.6 request keys, from schemas/openrtb.fbs (run.sh seed).\n");
    for key in keys {
        dictionary.push_str(&format!("\"\\\"{key}\\\":\"\n"));
    }
    dictionary
}
