// kv-price: prices from the tenant's own data table. Needs the `kv` grant
// and a table `prices` of JSON lines `{"key": "<user id>", "value": "<CPM>"}`.
// For a request whose `user.id` is in the table, it bids that price on
// every open-auction banner impression whose floor it meets, creative
// `kv-price-300x250` when the banner takes 300x250; users not in the table
// get no bid.

import {
  Bid, BidRequest, Bids, DEFAULT_CURRENCY, Strategy,
  bannerSizes, floorCpm, isPrivateAuction, kvGet, mtype, register,
} from "../sdk";

export { gavel_v1_input, gavel_v1_bid } from "../sdk";

const ADM =
  `<a href="https://example.com/kv-price" target="_blank">` +
  `<img src="https://cdn.example.com/kv-price-300x250.jpg" width="300" height="250" alt="kv-price"></a>`;

class KvPrice extends Strategy {
  bid(request: BidRequest, bids: Bids): void {
    const user = request.user();
    if (user == null) return;
    const id = user.id();
    if (id == null) return;
    const value = kvGet("prices", id);
    if (value == null) return;
    const price = parseFloat(value);
    if (!(price > 0.0)) return;
    for (let i = 0; i < request.impLength(); i++) {
      const imp = request.imp(i);
      const floor = floorCpm(imp, DEFAULT_CURRENCY);
      if (floor < 0.0 || floor > price || isPrivateAuction(imp)) continue;
      const banner = imp.banner();
      if (banner == null) continue;
      const sizes = bannerSizes(banner);
      let fits = false;
      for (let s = 0; s < sizes.length; s += 2) {
        if (sizes[s] == 300 && sizes[s + 1] == 250) fits = true;
      }
      if (!fits) continue;
      const bid = new Bid(imp.id(), price);
      bid.crid = "kv-price-300x250";
      bid.adomain = ["example.com"];
      bid.adm = ADM;
      bid.w = 300;
      bid.h = 250;
      bid.mtype = mtype.BANNER;
      bids.push(bid);
    }
  }
}

register(new KvPrice());
