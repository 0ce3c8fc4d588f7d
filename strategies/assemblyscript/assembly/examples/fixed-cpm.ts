// fixed-cpm in AssemblyScript: the twin of `strategies/examples/fixed-cpm`
// (Rust). It bids 1.50 CPM on every open-auction banner impression whose
// floor it meets, with the creative of the first size the banner takes.

import {
  Banner, Bid, BidRequest, Bids, DEFAULT_CURRENCY, Strategy,
  bannerSizes, floorCpm, isPrivateAuction, mtype, register,
} from "../sdk";

export { gavel_v1_input, gavel_v1_bid } from "../sdk";

/** The bid, CPM in the bidder's currency. */
const PRICE_CPM: f64 = 1.5;

const ADOMAIN = ["lumenroasters.com"];
const CAT = ["IAB8"];
const NURL = "https://rtb.lumenroasters.com/win?auction=${AUCTION_ID}&price=${AUCTION_PRICE}";

class Creative {
  constructor(public w: i32, public h: i32, public crid: string, public adm: string) {}
}

const CREATIVES: Creative[] = [
  new Creative(
    300, 250, "lr-autumn-blend-300x250-v2",
    `<a href="https://lumenroasters.com/autumn?utm_source=rtb&utm_content=300x250" target="_blank">` +
      `<img src="https://cdn.lumenroasters.com/ads/autumn-blend-300x250-v2.jpg" width="300" height="250" ` +
      `alt="Lumen Roasters Autumn Blend: roasted this week"></a>`,
  ),
  new Creative(
    728, 90, "lr-autumn-blend-728x90-v2",
    `<a href="https://lumenroasters.com/autumn?utm_source=rtb&utm_content=728x90" target="_blank">` +
      `<img src="https://cdn.lumenroasters.com/ads/autumn-blend-728x90-v2.jpg" width="728" height="90" ` +
      `alt="Lumen Roasters Autumn Blend: roasted this week"></a>`,
  ),
  new Creative(
    320, 50, "lr-autumn-blend-320x50-v2",
    `<a href="https://lumenroasters.com/autumn?utm_source=rtb&utm_content=320x50" target="_blank">` +
      `<img src="https://cdn.lumenroasters.com/ads/autumn-blend-320x50-v2.jpg" width="320" height="50" ` +
      `alt="Lumen Roasters Autumn Blend"></a>`,
  ),
];

/** The creative for the first of the banner's sizes one fits. */
function creativeFor(banner: Banner): Creative | null {
  const sizes = bannerSizes(banner);
  for (let i = 0; i < sizes.length; i += 2) {
    for (let c = 0; c < CREATIVES.length; c++) {
      const creative = CREATIVES[c];
      if (creative.w == sizes[i] && creative.h == sizes[i + 1]) return creative;
    }
  }
  return null;
}

class FixedCpm extends Strategy {
  bid(request: BidRequest, bids: Bids): void {
    for (let i = 0; i < request.impLength(); i++) {
      const imp = request.imp(i);
      const floor = floorCpm(imp, DEFAULT_CURRENCY);
      if (floor < 0.0 || floor > PRICE_CPM || isPrivateAuction(imp)) continue;
      const banner = imp.banner();
      if (banner == null) continue;
      const creative = creativeFor(banner);
      if (creative == null) continue;
      const bid = new Bid(imp.id(), PRICE_CPM);
      bid.crid = creative.crid;
      bid.adomain = ADOMAIN;
      bid.cat = CAT;
      bid.adm = creative.adm;
      bid.nurl = NURL;
      bid.w = creative.w;
      bid.h = creative.h;
      bid.mtype = mtype.BANNER;
      bids.push(bid);
    }
  }
}

register(new FixedCpm());
