//! Example strategy: the floor plus a margin, capped.
//!
//! For every banner or video impression, bids the impression's floor times
//! [`MARGIN`] (1.2), at most [`PRICE_CPM_MAX`] (20.00); an impression with no
//! floor (absent or 0) gets [`DEFAULT_PRICE_CPM`] (0.50). When even the cap
//! is below the floor, or the floor is in a currency other than USD
//! (`bidfloorcur`), the bidder's, the impression is skipped. So are private
//! auctions
//! (`pmp.private_auction = 1`; this strategy buys no deals) and impressions
//! it has no creative for. The creative is chosen thus:
//!
//! - An impression whose banner has a size (its `w`/`h`, else its first
//!   `format`) gets Harbor Line Cruises' responsive HTML5 creative at that
//!   size.
//! - Otherwise, an impression whose video player takes `video/mp4` (or
//!   names no MIME types) and 15-second ads gets a 15-second VAST 4.2 inline
//!   ad.
//!
//! The markup for banners is written into a buffer the strategy keeps, so
//! sizing a creative costs no allocation once the buffer has grown.

#![forbid(unsafe_code)]

use std::fmt::Write;

use gavel_sdk::{Bid, BidRequest, Bids, DEFAULT_CURRENCY, Strategy, Video, floor_cpm, mtype};

/// What the bid adds on top of the floor: 20 %.
pub const MARGIN: f64 = 1.2;

/// The highest bid, CPM, whatever the floor.
pub const PRICE_CPM_MAX: f64 = 20.0;

/// The bid on an impression without a floor, CPM.
pub const DEFAULT_PRICE_CPM: f64 = 0.50;

const _: () = assert!(DEFAULT_PRICE_CPM <= PRICE_CPM_MAX);

const ADOMAIN: &[&str] = &["harborlinecruises.com"];

/// IAB category of the creatives: Travel > Cruises.
const CAT: &[&str] = &["IAB20-5"];

const BANNER_CRID: &str = "hlc-fjords-html5-responsive-v4";

const VIDEO_CRID: &str = "hlc-fjords-vast-15s-v1";

/// Length of the video creative, seconds.
const VIDEO_DURATION_S: i32 = 15;

const VIDEO_MIME: &str = "video/mp4";

const VAST: &str = concat!(
    r#"<VAST version="4.2"><Ad id="hlc-fjords-15s"><InLine>"#,
    r#"<AdSystem>Harbor Line Cruises</AdSystem><AdTitle>Fjords in 15 seconds</AdTitle>"#,
    r#"<Impression><![CDATA[https://rtb.harborlinecruises.com/imp?auction=${AUCTION_ID}]]></Impression>"#,
    r#"<Creatives><Creative id="hlc-fjords-vast-15s-v1"><Linear><Duration>00:00:15</Duration>"#,
    r#"<MediaFiles><MediaFile delivery="progressive" type="video/mp4" width="1280" height="720">"#,
    r#"<![CDATA[https://cdn.harborlinecruises.com/ads/fjords-15s-720p.mp4]]></MediaFile></MediaFiles>"#,
    r#"<VideoClicks><ClickThrough><![CDATA[https://harborlinecruises.com/fjords?utm_source=rtb]]>"#,
    r#"</ClickThrough></VideoClicks></Linear></Creative></Creatives></InLine></Ad></VAST>"#,
);

/// Bids floor x [`MARGIN`] on banner and video impressions.
#[derive(Default)]
pub struct FloorMargin {
    /// Banner markup for the current bid, reused from bid to bid.
    markup: String,
}

impl Strategy for FloorMargin {
    fn bid(&mut self, request: BidRequest<'_>, bids: &mut Bids) {
        for imp in request.imp() {
            if gavel_sdk::is_private_auction(&imp) {
                continue;
            }
            let floor = floor_cpm(imp.bidfloor(), imp.bidfloorcur(), DEFAULT_CURRENCY);
            let Some(price) = floor.and_then(price_cpm) else {
                continue;
            };
            if let Some((w, h)) = imp.banner().and_then(|banner| {
                let formats = banner.format().into_iter().flatten();
                let first = formats.filter_map(|f| f.w().zip(f.h())).next();
                banner.w().zip(banner.h()).or(first)
            }) {
                self.write_banner(w, h);
                bids.push(
                    Bid::new(imp.id(), price)
                        .crid(BANNER_CRID)
                        .adomain(ADOMAIN)
                        .cat(CAT)
                        .adm(&self.markup)
                        .w(w)
                        .h(h)
                        .mtype(mtype::BANNER),
                );
            } else if imp.video().is_some_and(accepts_our_video) {
                bids.push(
                    Bid::new(imp.id(), price)
                        .crid(VIDEO_CRID)
                        .adomain(ADOMAIN)
                        .cat(CAT)
                        .adm(VAST)
                        .mtype(mtype::VIDEO),
                );
            }
        }
    }
}

gavel_sdk::export_strategy!(FloorMargin);

impl FloorMargin {
    /// Writes the responsive banner, sized `w` x `h`, into `self.markup`.
    fn write_banner(&mut self, w: i32, h: i32) {
        self.markup.clear();
        // Writing to a `String` cannot fail.
        let _ = write!(
            self.markup,
            concat!(
                r#"<div style="width:{w}px;height:{h}px;overflow:hidden">"#,
                r#"<a href="https://harborlinecruises.com/fjords?utm_source=rtb&utm_content={w}x{h}" target="_blank">"#,
                r#"<img src="https://cdn.harborlinecruises.com/ads/fjords.svg" width="{w}" height="{h}" "#,
                r#"alt="Harbor Line Cruises: the fjords this summer"></a></div>"#,
            ),
            w = w,
            h = h,
        );
    }
}

/// The bid for a floor, or `None` when the cap is below the floor.
fn price_cpm(floor: f64) -> Option<f64> {
    if floor <= 0.0 {
        return Some(DEFAULT_PRICE_CPM);
    }
    (floor <= PRICE_CPM_MAX).then(|| (floor * MARGIN).min(PRICE_CPM_MAX))
}

/// Whether the player takes a 15-second MP4.
fn accepts_our_video(video: Video<'_>) -> bool {
    let mime_ok = video
        .mimes()
        .is_none_or(|mimes| mimes.iter().any(|mime| mime == VIDEO_MIME));
    let duration_ok = video.minduration().unwrap_or(0) <= VIDEO_DURATION_S
        && video
            .maxduration()
            .is_none_or(|max| VIDEO_DURATION_S <= max);
    mime_ok && duration_ok
}

#[cfg(test)]
mod tests {
    use gavel_sdk::testing::{self, Host, OwnedBid};

    use super::*;

    fn bids(json: &[u8]) -> Vec<OwnedBid> {
        let mut host = Host::<FloorMargin>::new().expect("no init hook");
        host.bid_json(json).expect("an answer")
    }

    fn iab_example(name: &str) -> Vec<OwnedBid> {
        bids(&testing::iab_example(name))
    }

    fn assert_close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
    }

    #[test]
    fn simple_banner_pays_the_floor_plus_margin() {
        let bids = iab_example("simple-banner.json");
        assert_eq!(bids.len(), 1);
        assert_close(bids[0].price, 0.03 * MARGIN);
        assert_eq!((bids[0].w, bids[0].h), (Some(300), Some(250)));
        let adm = bids[0].adm.as_deref().expect("markup");
        assert!(adm.contains("width:300px;height:250px"), "{adm}");
        assert!(adm.contains("utm_content=300x250"), "{adm}");
    }

    #[test]
    fn mobile_app_banner() {
        let bids = iab_example("mobile-app.json");
        assert_eq!(bids.len(), 1);
        assert_close(bids[0].price, 0.5 * MARGIN);
        assert_eq!((bids[0].w, bids[0].h), (Some(728), Some(90)));
    }

    #[test]
    fn video_gets_vast() {
        // MP4 accepted, 5 to 30 seconds.
        let bids = iab_example("video.json");
        assert_eq!(bids.len(), 1);
        assert_eq!(bids[0].mtype, Some(mtype::VIDEO));
        assert_eq!(bids[0].crid.as_deref(), Some(VIDEO_CRID));
        assert!(
            bids[0]
                .adm
                .as_deref()
                .is_some_and(|adm| adm.starts_with("<VAST"))
        );
    }

    #[test]
    fn private_auctions_are_skipped() {
        assert!(iab_example("pmp-direct-deal.json").is_empty());
    }

    #[test]
    fn prices_follow_the_floor_up_to_the_cap() {
        let bids = bids(
            br#"{"id": "r", "imp": [
                {"id": "no-floor", "banner": {"w": 320, "h": 50}},
                {"id": "zero-floor", "bidfloor": 0, "banner": {"w": 320, "h": 50}},
                {"id": "floor-10", "bidfloor": 10, "banner": {"format": [{"w": 300, "h": 600}]}},
                {"id": "floor-18", "bidfloor": 18, "banner": {"w": 320, "h": 50}},
                {"id": "floor-25", "bidfloor": 25, "banner": {"w": 320, "h": 50}},
                {"id": "euro", "bidfloor": 1, "bidfloorcur": "EUR", "banner": {"w": 320, "h": 50}},
                {"id": "no-size", "banner": {}},
                {"id": "audio", "audio": {"mimes": ["audio/mp4"]}}
            ]}"#,
        );
        let prices: Vec<_> = bids
            .iter()
            .map(|bid| (bid.impid.as_str(), bid.price))
            .collect();
        assert_eq!(
            prices,
            [
                ("no-floor", DEFAULT_PRICE_CPM),
                ("zero-floor", DEFAULT_PRICE_CPM),
                ("floor-10", 12.0),
                ("floor-18", PRICE_CPM_MAX),
            ]
        );
        // Each banner is sized to its own slot.
        assert_eq!((bids[2].w, bids[2].h), (Some(300), Some(600)));
        assert!(
            bids[2]
                .adm
                .as_deref()
                .is_some_and(|adm| adm.contains("width:300px;height:600px"))
        );
    }

    #[test]
    fn video_we_cannot_fill_is_skipped() {
        let bids = bids(
            br#"{"id": "r", "imp": [
                {"id": "webm-only", "video": {"mimes": ["video/webm"]}},
                {"id": "too-short", "video": {"mimes": ["video/mp4"], "maxduration": 10}},
                {"id": "too-long", "video": {"minduration": 20}},
                {"id": "any", "video": {}}
            ]}"#,
        );
        let impids: Vec<_> = bids.iter().map(|bid| bid.impid.as_str()).collect();
        assert_eq!(impids, ["any"]);
    }
}
