// Test-only: traps on every request (`unreachable`, the way a failed
// assertion or an out-of-range index ends in AssemblyScript); the host
// contains it.

import { BidRequest, Bids, Strategy, register } from "../sdk";

export { gavel_v1_input, gavel_v1_bid } from "../sdk";

class Trap extends Strategy {
  bid(request: BidRequest, bids: Bids): void {
    if (request.impLength() >= 0) unreachable();
  }
}

register(new Trap());
