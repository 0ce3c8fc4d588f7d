// The Gavel strategy SDK for AssemblyScript: what `strategies/sdk/ABI.md`
// asks of a module, so that an author writes only `bid`.
//
//   import { Bid, Bids, BidRequest, Strategy, register } from "../sdk";
//   class Mine extends Strategy { bid(request: BidRequest, bids: Bids): void { ... } }
//   register(new Mine());
//   export { gavel_v1_input, gavel_v1_bid } from "../sdk";
//
// The request is read in place from the flatbuffer the host wrote into
// this module's memory (the generated readers in `../generated/openrtb`);
// the answer is built into a buffer kept from call to call.

import { BidRequest, Banner, Imp } from "../generated/openrtb";
import { StrategyBidSlot, StrategyBidsSlot } from "../generated/strategy";
import { ANSWER_BYTES_MAX, Builder } from "./builder";
import { Str } from "./flatbuffer";

export { BidRequest, Banner, Imp, Str };
export { Format, Pmp, Deal, User } from "../generated/openrtb";

// ---- the host's imports (module `gavel_v1`) --------------------------------

// @ts-ignore: decorator
@external("gavel_v1", "log")
declare function host_log(ptr: usize, len: i32): void;

// @ts-ignore: decorator
@external("gavel_v1", "request_time_us")
declare function host_request_time_us(): i64;

// @ts-ignore: decorator
@external("gavel_v1", "kv_get")
declare function host_kv_get(
  table: usize, tableLen: i32, key: usize, keyLen: i32, out: usize, outCap: i32,
): i32;

// @ts-ignore: decorator
@external("gavel_v1", "frequency")
declare function host_frequency(key: usize, keyLen: i32, windowS: i32): i32;

// @ts-ignore: decorator
@external("gavel_v1", "budget_remaining")
declare function host_budget_remaining(): f64;

/** A value read by `kvGet`: at most `tables.value_bytes_max` (4 KiB). */
const KV_VALUE_BYTES_MAX: i32 = 4096;
let kvBuffer: usize = 0;

/** Capability `kv`: the value of `key` in the tenant's table `table`, or
 * null when either is absent. */
export function kvGet(table: string, key: Str): string | null {
  if (!kvBuffer) kvBuffer = heap.alloc(<usize>KV_VALUE_BYTES_MAX);
  const name = String.UTF8.encode(table);
  const len = host_kv_get(
    changetype<usize>(name), name.byteLength, key.ptr, key.len, kvBuffer, KV_VALUE_BYTES_MAX,
  );
  if (len < 0) return null;
  return String.UTF8.decodeUnsafe(kvBuffer, <usize>min(len, KV_VALUE_BYTES_MAX));
}

/** Capability `frequency`: wins of this tenant's bids with creative `crid`
 * (empty: any) for the request's user within `windowS` seconds. */
export function frequency(crid: string, windowS: i32): i32 {
  const bytes = String.UTF8.encode(crid);
  return host_frequency(changetype<usize>(bytes), bytes.byteLength, windowS);
}

/** Capability `budget`: what the tenant has left, in the bidder's currency;
 * -1 without a budget. */
export function budgetRemaining(): f64 {
  return host_budget_remaining();
}

/** Appends a line to the tenant's log (rate-limited by the host). */
export function log(line: string): void {
  const bytes = String.UTF8.encode(line);
  host_log(changetype<usize>(bytes), bytes.byteLength);
}

/** When the request arrived, in microseconds since the Unix epoch. */
export function requestTimeUs(): i64 {
  return host_request_time_us();
}

// ---- helpers, as in the Rust SDK ------------------------------------------

/** The currency a strategy bids in unless it says otherwise. */
export const DEFAULT_CURRENCY = "USD";

/** Bid types (`mtype`). */
export namespace mtype {
  export const BANNER: i32 = 1;
  export const VIDEO: i32 = 2;
  export const AUDIO: i32 = 3;
  export const NATIVE: i32 = 4;
}

/** The impression's floor in `currency`, CPM: 0 without one; -1 when the
 * floor is in another currency (the host does not convert). */
export function floorCpm(imp: Imp, currency: string): f64 {
  const floor = imp.hasBidfloor() ? imp.bidfloor() : 0.0;
  const cur = imp.bidfloorcur();
  const other = cur ? !cur.eq(currency) : DEFAULT_CURRENCY != currency;
  return floor > 0.0 && other ? -1.0 : floor;
}

/** Whether only the impression's deals may bid (`pmp.private_auction`). */
export function isPrivateAuction(imp: Imp): bool {
  const pmp = imp.pmp();
  return pmp != null && pmp.hasPrivateAuction() && pmp.privateAuction() == 1;
}

/** The sizes a banner takes, `w` and `h` first, then its `format` list:
 * `[w0, h0, w1, h1, ...]`. */
export function bannerSizes(banner: Banner): StaticArray<i32> {
  const exact = banner.hasW() && banner.hasH() ? 1 : 0;
  let n = exact;
  for (let i = 0; i < banner.formatLength(); i++) {
    const f = banner.format(i);
    if (f.hasW() && f.hasH()) n++;
  }
  const sizes = new StaticArray<i32>(2 * n);
  let k = 0;
  if (exact) {
    sizes[k++] = banner.w();
    sizes[k++] = banner.h();
  }
  for (let i = 0; i < banner.formatLength(); i++) {
    const f = banner.format(i);
    if (f.hasW() && f.hasH()) {
      sizes[k++] = f.w();
      sizes[k++] = f.h();
    }
  }
  return sizes;
}

// ---- bids -----------------------------------------------------------------

/** One offer for one impression. `w`, `h`, `mtype` at -1 are left out. */
export class Bid {
  crid: string | null = null;
  adid: string | null = null;
  cid: string | null = null;
  dealid: string | null = null;
  adm: string | null = null;
  nurl: string | null = null;
  burl: string | null = null;
  lurl: string | null = null;
  adomain: string[] | null = null;
  cat: string[] | null = null;
  attr: i32[] | null = null;
  w: i32 = -1;
  h: i32 = -1;
  mtype: i32 = -1;

  /** An offer of `price` (CPM, in the bidder's currency) for `impid`. */
  constructor(public impid: Str, public price: f64) {}
}

/** Bids in one answer at most (the host's limit less the root). */
export const BIDS_MAX: i32 = 1023;

/** The answer being built: bids go straight into the flatbuffer. */
@final
export class Bids {
  private builder: Builder = new Builder();
  private offsets: StaticArray<i32> = new StaticArray<i32>(BIDS_MAX);
  private scratch: StaticArray<i32> = new StaticArray<i32>(64);
  private count: i32 = 0;
  private overMax: i32 = 0;

  /** Bids pushed so far. */
  get length(): i32 {
    return this.count + this.overMax;
  }

  clear(): void {
    this.builder.reset();
    this.count = 0;
    this.overMax = 0;
  }

  private string(s: string | null): i32 {
    return s == null ? 0 : this.builder.createString(s);
  }

  private strings(values: string[] | null): i32 {
    if (values == null || values.length == 0) return 0;
    if (values.length > this.scratch.length) this.scratch = new StaticArray<i32>(values.length);
    for (let i = 0; i < values.length; i++) this.scratch[i] = this.builder.createString(values[i]);
    return this.builder.createOffsetVector(this.scratch, values.length);
  }

  push(bid: Bid): void {
    if (this.count == BIDS_MAX) {
      this.overMax++;
      return;
    }
    const b = this.builder;
    const impid = b.createBytes(bid.impid.ptr, bid.impid.len);
    const crid = this.string(bid.crid);
    const adid = this.string(bid.adid);
    const cid = this.string(bid.cid);
    const dealid = this.string(bid.dealid);
    const adm = this.string(bid.adm);
    const nurl = this.string(bid.nurl);
    const burl = this.string(bid.burl);
    const lurl = this.string(bid.lurl);
    const adomain = this.strings(bid.adomain);
    const cat = this.strings(bid.cat);
    let attr = 0;
    const attrs = bid.attr;
    if (attrs != null && attrs.length > 0) {
      if (attrs.length > this.scratch.length) this.scratch = new StaticArray<i32>(attrs.length);
      for (let i = 0; i < attrs.length; i++) this.scratch[i] = attrs[i];
      attr = b.createI32Vector(this.scratch, attrs.length);
    }
    b.startTable(StrategyBidSlot.COUNT);
    b.addF64(StrategyBidSlot.PRICE, bid.price);
    b.addOffset(StrategyBidSlot.IMPID, impid);
    if (crid) b.addOffset(StrategyBidSlot.CRID, crid);
    if (adid) b.addOffset(StrategyBidSlot.ADID, adid);
    if (cid) b.addOffset(StrategyBidSlot.CID, cid);
    if (adomain) b.addOffset(StrategyBidSlot.ADOMAIN, adomain);
    if (cat) b.addOffset(StrategyBidSlot.CAT, cat);
    if (attr) b.addOffset(StrategyBidSlot.ATTR, attr);
    if (dealid) b.addOffset(StrategyBidSlot.DEALID, dealid);
    if (adm) b.addOffset(StrategyBidSlot.ADM, adm);
    if (nurl) b.addOffset(StrategyBidSlot.NURL, nurl);
    if (burl) b.addOffset(StrategyBidSlot.BURL, burl);
    if (lurl) b.addOffset(StrategyBidSlot.LURL, lurl);
    if (bid.w >= 0) b.addI32(StrategyBidSlot.W, bid.w);
    if (bid.h >= 0) b.addI32(StrategyBidSlot.H, bid.h);
    if (bid.mtype >= 0) b.addI32(StrategyBidSlot.MTYPE, bid.mtype);
    this.offsets[this.count++] = b.endTable();
  }

  /** The finished answer, packed as the ABI wants it: 0 for no bid, -2
   * when over a limit. */
  finish(): i64 {
    if (this.overMax > 0) {
      log(`answer refused: ${this.length} bids pushed, over the limit of ${BIDS_MAX}`);
      return -2;
    }
    if (this.count == 0) return 0;
    const b = this.builder;
    const bids = b.createOffsetVector(this.offsets, this.count);
    b.startTable(StrategyBidsSlot.COUNT);
    b.addOffset(StrategyBidsSlot.BIDS, bids);
    b.finish(b.endTable());
    if (b.overflowed || b.length() > ANSWER_BYTES_MAX) {
      log(`answer refused: over the limit of ${ANSWER_BYTES_MAX} bytes`);
      return -2;
    }
    return (<i64>b.start() << 32) | <i64>b.length();
  }
}

// ---- the strategy and the ABI's exports ------------------------------------

/** What an author writes: `bid` is called once per request. */
export abstract class Strategy {
  abstract bid(request: BidRequest, bids: Bids): void;
}

let strategy: Strategy | null = null;
const bids = new Bids();

/** Registers the module's strategy (at the top level of its entry file). */
export function register(s: Strategy): void {
  strategy = s;
}

/** Largest request accepted (the host's own limit). */
const REQUEST_BYTES_MAX: i32 = 4 << 20;

let input: usize = 0;
let inputCap: i32 = 0;

/** `gavel_v1_input(len)`: where the host writes the next request. */
export function gavel_v1_input(len: i32): i32 {
  if (len < 0 || len > REQUEST_BYTES_MAX) return 0;
  if (len > inputCap) {
    if (input) heap.free(input);
    inputCap = max(len, 16 << 10);
    input = heap.alloc(<usize>inputCap);
  }
  return <i32>input;
}

/** `gavel_v1_bid(len)`: the request is in the input buffer. */
export function gavel_v1_bid(len: i32): i64 {
  if (len < 4 || len > inputCap) return -1;
  const s = strategy;
  if (s == null) return -2;
  const root = input + <usize>load<u32>(input);
  if (root >= input + <usize>len) return -1;
  bids.clear();
  s.bid(new BidRequest(root), bids);
  const answer = bids.finish();
  // Garbage of this call goes now, between calls, when nothing managed is
  // on the stack (the minimal runtime collects only when asked).
  __collect();
  return answer;
}
