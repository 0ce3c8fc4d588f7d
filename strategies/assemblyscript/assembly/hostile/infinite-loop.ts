// Test-only: never returns from `bid`; the host's fuel or deadline ends
// the call.

import { BidRequest, Bids, Strategy, register } from "../sdk";

export { gavel_v1_input, gavel_v1_bid } from "../sdk";

class Spin extends Strategy {
  bid(request: BidRequest, bids: Bids): void {
    let n: u64 = 0;
    while (request.impLength() >= 0) n++;
  }
}

register(new Spin());
