//! Example strategy: geo, device and category targeting that honours block
//! lists.
//!
//! Summit Gear's climbing campaign bids [`PRICE_CPM`] (2.50) on banner
//! impressions of 320x50, 300x250 or 728x90 (the banner's `w`/`h`, else its
//! first accepted `format`) with a floor at or below that, in USD, when the
//! request passes every rule:
//!
//! - **Geo**: `device.geo` is in the United States in California, Oregon,
//!   Washington or Colorado (`country` "USA", `region` "CA", "OR", "WA",
//!   "CO"), or anywhere in Canada ("CAN"). No `device.geo`, no bid.
//! - **Device**: `device.devicetype` is a phone, a tablet or the older
//!   "mobile/tablet" value (AdCOM 4, 5, 1).
//! - **Context**: `site.cat` or `app.cat` holds Sports (IAB17, with any
//!   subcategory), Travel (IAB20, likewise) or Weather (IAB15-10).
//! - **Block lists**: the creative's category IAB17-8 (Climbing) is not in
//!   `bcat`, nor is its parent IAB17; its domain `summitgear.com` is not in
//!   `badv`; the app it promotes (`com.summitgear.routes`) is not in `bapp`.
//!   The host would drop a blocked bid anyway; not making it is cheaper and
//!   keeps the exchange's quality metrics clean.
//!
//! Private auctions (`pmp.private_auction = 1`) are skipped: the campaign
//! buys no deals. The strategy keeps no state.

#![forbid(unsafe_code)]

use gavel_sdk::flatbuffers::{ForwardsUOffset, Vector};
use gavel_sdk::{Banner, Bid, BidRequest, Bids, DEFAULT_CURRENCY, Strategy, floor_cpm, mtype};

/// The price of every bid, CPM.
pub const PRICE_CPM: f64 = 2.50;

/// Countries (ISO-3166-1 alpha-3) and, for each, the regions (ISO-3166-2
/// subdivision codes) targeted; no regions means the whole country.
const GEO: &[(&str, &[&str])] = &[("USA", &["CA", "OR", "WA", "CO"]), ("CAN", &[])];

/// AdCOM device types: 1 mobile/tablet (OpenRTB 2.x), 4 phone, 5 tablet.
const DEVICE_TYPES: &[i32] = &[1, 4, 5];

/// Site or app categories targeted; a category also covers its
/// subcategories ("IAB17" covers "IAB17-8").
const CONTEXT_CATEGORIES: &[&str] = &["IAB17", "IAB20", "IAB15-10"];

/// The creative's category (Sports > Climbing), its advertiser domain and
/// the app it promotes: the three things a request can block.
const CAT: &str = "IAB17-8";
const ADOMAIN: &str = "summitgear.com";
const BUNDLE: &str = "com.summitgear.routes";

/// Win notice; the exchange substitutes the `${...}` macros.
const NURL: &str = "https://rtb.summitgear.com/win?auction=${AUCTION_ID}&price=${AUCTION_PRICE}";

/// One banner creative.
struct Creative {
    w: i32,
    h: i32,
    crid: &'static str,
    adm: &'static str,
}

const CREATIVES: &[Creative] = &[
    Creative {
        w: 320,
        h: 50,
        crid: "sg-routes-app-320x50-v7",
        adm: concat!(
            r#"<a href="https://apps.apple.com/app/summit-gear-routes/id1500000042" target="_blank">"#,
            r#"<img src="https://cdn.summitgear.com/ads/routes-app-320x50-v7.png" width="320" height="50" "#,
            r#"alt="Summit Gear Routes: every crag in your pocket"></a>"#,
        ),
    },
    Creative {
        w: 300,
        h: 250,
        crid: "sg-routes-app-300x250-v7",
        adm: concat!(
            r#"<a href="https://apps.apple.com/app/summit-gear-routes/id1500000042" target="_blank">"#,
            r#"<img src="https://cdn.summitgear.com/ads/routes-app-300x250-v7.png" width="300" height="250" "#,
            r#"alt="Summit Gear Routes: every crag in your pocket"></a>"#,
        ),
    },
    Creative {
        w: 728,
        h: 90,
        crid: "sg-routes-app-728x90-v7",
        adm: concat!(
            r#"<a href="https://apps.apple.com/app/summit-gear-routes/id1500000042" target="_blank">"#,
            r#"<img src="https://cdn.summitgear.com/ads/routes-app-728x90-v7.png" width="728" height="90" "#,
            r#"alt="Summit Gear Routes: every crag in your pocket"></a>"#,
        ),
    },
];

/// Bids [`PRICE_CPM`] on the requests its rules target.
#[derive(Default)]
pub struct Targeting;

impl Strategy for Targeting {
    fn bid(&mut self, request: BidRequest<'_>, bids: &mut Bids) {
        if !(geo_targeted(&request)
            && device_targeted(&request)
            && context_targeted(&request)
            && !blocked(&request))
        {
            return;
        }
        for imp in request.imp() {
            let floor = floor_cpm(imp.bidfloor(), imp.bidfloorcur(), DEFAULT_CURRENCY);
            if !floor.is_some_and(|floor| floor <= PRICE_CPM) || gavel_sdk::is_private_auction(&imp)
            {
                continue;
            }
            let Some(creative) = imp.banner().and_then(creative_for) else {
                continue;
            };
            bids.push(
                Bid::new(imp.id(), PRICE_CPM)
                    .crid(creative.crid)
                    .adomain(&[ADOMAIN])
                    .cat(&[CAT])
                    .adm(creative.adm)
                    .nurl(NURL)
                    .w(creative.w)
                    .h(creative.h)
                    .mtype(mtype::BANNER),
            );
        }
    }
}

gavel_sdk::export_strategy!(Targeting);

fn geo_targeted(request: &BidRequest<'_>) -> bool {
    let Some(geo) = request.device().and_then(|device| device.geo()) else {
        return false;
    };
    let (Some(country), region) = (geo.country(), geo.region()) else {
        return false;
    };
    GEO.iter().any(|&(targeted, regions)| {
        country == targeted
            && (regions.is_empty() || region.is_some_and(|region| regions.contains(&region)))
    })
}

fn device_targeted(request: &BidRequest<'_>) -> bool {
    request
        .device()
        .and_then(|device| device.devicetype())
        .is_some_and(|devicetype| DEVICE_TYPES.contains(&devicetype))
}

fn context_targeted(request: &BidRequest<'_>) -> bool {
    let site = request.site().and_then(|site| site.cat());
    let app = request.app().and_then(|app| app.cat());
    site.into_iter()
        .chain(app)
        .flatten()
        .any(|cat| CONTEXT_CATEGORIES.iter().any(|&wanted| within(cat, wanted)))
}

/// Whether the request blocks our category, domain or app.
fn blocked(request: &BidRequest<'_>) -> bool {
    any_of(request.bcat(), |blocked| within(CAT, blocked))
        || any_of(request.badv(), |blocked| {
            blocked.eq_ignore_ascii_case(ADOMAIN)
        })
        || any_of(request.bapp(), |blocked| blocked == BUNDLE)
}

/// Whether an optional list of strings has an entry that `hit`s.
fn any_of(list: Option<Vector<'_, ForwardsUOffset<&str>>>, hit: impl Fn(&str) -> bool) -> bool {
    list.is_some_and(|list| list.iter().any(hit))
}

/// Whether IAB category `cat` is `parent` or one of its subcategories:
/// "IAB17-8" is within "IAB17" and "IAB17-8", not within "IAB17-80" or "IAB1".
fn within(cat: &str, parent: &str) -> bool {
    cat.strip_prefix(parent)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

/// The creative for the first size `banner` accepts.
fn creative_for(banner: Banner<'_>) -> Option<&'static Creative> {
    gavel_sdk::banner_sizes(banner).find_map(|(w, h)| {
        CREATIVES
            .iter()
            .find(|creative| creative.w == w && creative.h == h)
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use gavel_schemas::json::Encoder;
    use gavel_sdk::testing::{Host, OwnedBid};
    use serde_json::{Value, json};

    use super::*;

    fn bids(request: &Value) -> Vec<OwnedBid> {
        let json = serde_json::to_vec(request).expect("JSON values serialize");
        let mut encoder = Encoder::new();
        let request = encoder
            .bid_request(&json)
            .expect("test request is valid OpenRTB");
        let mut host = Host::<Targeting>::new().expect("no init hook");
        host.bid(request).expect("an answer")
    }

    fn iab_example(name: &str) -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../../shared/openrtb-2.6/jsonschema/examples/bid-requests")
            .join(name);
        let json = std::fs::read(&path)
            .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
        serde_json::from_slice(&json).expect("the IAB examples are JSON")
    }

    /// The IAB mobile app example (a weather app on a phone, 728x90), placed
    /// at `geo`.
    fn mobile_app_at(geo: Value) -> Value {
        let mut request = iab_example("mobile-app.json");
        request["device"]["geo"] = geo;
        request
    }

    fn california() -> Value {
        json!({"country": "USA", "region": "CA"})
    }

    #[test]
    fn the_iab_examples_are_not_targeted() {
        // The app has no geo; the sites have no device type.
        for name in [
            "mobile-app.json",
            "simple-banner.json",
            "video.json",
            "pmp-direct-deal.json",
        ] {
            assert!(bids(&iab_example(name)).is_empty(), "{name}");
        }
    }

    #[test]
    fn the_mobile_app_in_california_is_bid_on() {
        let bids = bids(&mobile_app_at(california()));
        assert_eq!(bids.len(), 1);
        let bid = &bids[0];
        assert_eq!((bid.impid.as_str(), bid.price), ("1", PRICE_CPM));
        assert_eq!(bid.crid.as_deref(), Some("sg-routes-app-728x90-v7"));
        assert_eq!((bid.w, bid.h, bid.mtype), (Some(728), Some(90), Some(1)));
        assert_eq!(bid.adomain, [ADOMAIN]);
        assert_eq!(bid.cat, [CAT]);
    }

    #[test]
    fn geo_rules() {
        let targeted = |geo: Value| !bids(&mobile_app_at(geo)).is_empty();
        assert!(targeted(json!({"country": "USA", "region": "WA"})));
        assert!(targeted(json!({"country": "CAN", "region": "ON"})));
        assert!(targeted(json!({"country": "CAN"})));
        assert!(!targeted(json!({"country": "USA", "region": "TX"})));
        assert!(!targeted(json!({"country": "USA"})));
        assert!(!targeted(json!({"country": "MEX", "region": "CA"})));
        assert!(!targeted(json!({"region": "CA"})));
    }

    #[test]
    fn only_phones_and_tablets() {
        for (devicetype, targeted) in [(1, true), (4, true), (5, true), (2, false), (3, false)] {
            let mut request = mobile_app_at(california());
            request["device"]["devicetype"] = json!(devicetype);
            assert_eq!(
                !bids(&request).is_empty(),
                targeted,
                "devicetype {devicetype}"
            );
        }
    }

    #[test]
    fn context_categories_cover_their_subcategories() {
        for (cat, targeted) in [
            ("IAB15-10", true),
            ("IAB17", true),
            ("IAB17-12", true),
            ("IAB20-5", true),
            ("IAB15", false),
            ("IAB15-1", false),
            ("IAB170", false),
            ("IAB1", false),
        ] {
            let mut request = mobile_app_at(california());
            request["app"]["cat"] = json!([cat]);
            assert_eq!(!bids(&request).is_empty(), targeted, "app.cat {cat}");
        }
        // A site's categories count the same way.
        let mut request = mobile_app_at(california());
        let fields = request.as_object_mut().expect("a request is an object");
        fields.remove("app");
        fields.insert("site".into(), json!({"id": "s1", "cat": ["IAB20-3"]}));
        assert_eq!(bids(&request).len(), 1);
    }

    #[test]
    fn blocked_categories_domains_and_apps_are_never_bid_on() {
        for (field, blocked) in [
            ("bcat", "IAB17"),
            ("bcat", "IAB17-8"),
            ("badv", "summitgear.com"),
            ("badv", "SummitGear.com"),
            ("bapp", "com.summitgear.routes"),
        ] {
            // Added to the example's own block lists, where it has them.
            let mut request = mobile_app_at(california());
            let mut list = request[field].as_array().cloned().unwrap_or_default();
            list.push(json!(blocked));
            request[field] = Value::Array(list);
            assert!(bids(&request).is_empty(), "{field} {blocked}");
        }
        // Near misses do not block.
        let mut request = mobile_app_at(california());
        request["bcat"] = json!(["IAB17-80", "IAB1"]);
        request["badv"] = json!(["gear.com"]);
        request["bapp"] = json!(["com.summitgear"]);
        assert_eq!(bids(&request).len(), 1);
    }

    #[test]
    fn impressions_need_a_size_and_a_floor_we_meet() {
        let mut request = mobile_app_at(california());
        request["imp"] = json!([
            {"id": "phone", "banner": {"format": [{"w": 320, "h": 480}, {"w": 320, "h": 50}]}},
            {"id": "expensive", "bidfloor": 3.0, "banner": {"w": 320, "h": 50}},
            {"id": "skyscraper", "banner": {"w": 160, "h": 600}},
            {"id": "private", "pmp": {"private_auction": 1, "deals": [{"id": "d1"}]},
             "banner": {"w": 300, "h": 250}}
        ]);
        let bids = bids(&request);
        assert_eq!(bids.len(), 1);
        assert_eq!(bids[0].impid, "phone");
        assert_eq!((bids[0].w, bids[0].h), (Some(320), Some(50)));
    }
}
