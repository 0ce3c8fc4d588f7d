//! The per-impression auction and the BidResponse it produces.
//!
//! Every tenant's answer has already been checked (one valid bid per
//! impression at most). Per impression the highest price wins; equal prices
//! go to the tenant first in the lineup (ordered by tenant id), so the
//! result depends only on the bids. Winners are grouped into one `seatbid`
//! per tenant, `seat` = tenant id.

use flatbuffers::{FlatBufferBuilder, WIPOffset};
use gavel_schemas::openrtb::{
    Bid, BidArgs, BidRequest, BidResponse, BidResponseArgs, SeatBid, SeatBidArgs,
};

use crate::lineup::Lane;
use crate::runtime::{Outcome, ValidBid};

/// One impression's winner.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Winner {
    pub slot: usize,
    pub bid: ValidBid,
}

/// Picks a winner per impression from the lanes that bid. `outcomes[i]`
/// belongs to `lanes[i]`; `winners` is cleared and refilled.
pub fn run(lanes: &[Lane], outcomes: &[Outcome], winners: &mut Vec<Winner>) {
    winners.clear();
    for (slot_index, (lane, outcome)) in lanes.iter().zip(outcomes).enumerate() {
        if !matches!(outcome, Outcome::Bids(_)) {
            continue;
        }
        for bid in lane.answering().answer().bids() {
            match winners
                .iter_mut()
                .find(|w| w.bid.imp_index == bid.imp_index)
            {
                // Strictly higher only: ties stay with the earlier tenant.
                Some(w) if bid.price > w.bid.price => {
                    *w = Winner {
                        slot: slot_index,
                        bid: *bid,
                    }
                }
                Some(_) => {}
                None => winners.push(Winner {
                    slot: slot_index,
                    bid: *bid,
                }),
            }
        }
    }
    // Group by tenant, then impression order: seatbids come out in lineup order.
    winners.sort_unstable_by_key(|w| (w.slot, w.bid.imp_index));
}

/// The id and notice URLs of one returned bid, from the money loop
/// (buffers reused across requests).
#[derive(Debug, Default)]
pub struct BidNotice {
    pub id: String,
    pub nurl: String,
    pub burl: String,
    pub lurl: String,
}

/// Builds BidResponse flatbuffers, reusing its buffers across requests.
pub struct ResponseBuilder {
    fbb: FlatBufferBuilder<'static>,
    seatbids: Vec<WIPOffset<SeatBid<'static>>>,
    bids: Vec<WIPOffset<Bid<'static>>>,
    strings: Vec<WIPOffset<&'static str>>,
    ints: Vec<i32>,
}

impl Default for ResponseBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseBuilder {
    /// Initial capacity: a response with markup for a few impressions.
    const CAPACITY_BYTES: usize = 16 << 10;

    pub fn new() -> Self {
        Self {
            fbb: FlatBufferBuilder::with_capacity(Self::CAPACITY_BYTES),
            seatbids: Vec::new(),
            bids: Vec::new(),
            strings: Vec::new(),
            ints: Vec::new(),
        }
    }

    /// The last response built.
    pub fn finished(&self) -> &[u8] {
        self.fbb.finished_data()
    }

    /// The BidResponse for `winners` (from [`run`]); `notices[i]` holds
    /// the i-th winner's bid id and Gavel's notice URLs, which replace the
    /// strategy's own.
    pub fn bids(
        &mut self,
        request: &BidRequest<'_>,
        lanes: &[Lane],
        winners: &[Winner],
        notices: &[BidNotice],
        currency: &str,
    ) {
        let Self {
            fbb,
            seatbids,
            bids,
            strings,
            ints,
        } = self;
        fbb.reset();
        seatbids.clear();
        let imps = request.imp();
        let mut rest = winners;
        let mut notices = notices;
        while let Some(first) = rest.first() {
            let count = rest.iter().take_while(|w| w.slot == first.slot).count();
            let (seat_winners, tail) = rest.split_at(count);
            let (seat_notices, notices_tail) = notices.split_at(count);
            rest = tail;
            notices = notices_tail;
            let slot = lanes[first.slot].answering();
            bids.clear();
            for (winner, notice) in seat_winners.iter().zip(seat_notices) {
                let offered = slot.answer().bid(&winner.bid);
                let mut string_vector =
                    |list: Option<flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<&str>>>| {
                        list.map(|list| {
                            strings.clear();
                            strings.extend(list.iter().map(|s| fbb.create_string(s)));
                            fbb.create_vector(strings)
                        })
                    };
                let adomain = string_vector(offered.adomain());
                let cat = string_vector(offered.cat());
                let attr = offered.attr().map(|a| {
                    ints.clear();
                    ints.extend(a.iter());
                    fbb.create_vector(ints)
                });
                let mut string = |s: Option<&str>| s.map(|s| fbb.create_string(s));
                let args = BidArgs {
                    id: string(Some(&notice.id)),
                    impid: string(Some(imps.get(winner.bid.imp_index).id())),
                    price: winner.bid.price,
                    adid: string(offered.adid()),
                    cid: string(offered.cid()),
                    crid: string(offered.crid()),
                    dealid: string(offered.dealid()),
                    adm: string(offered.adm()),
                    nurl: string(Some(&notice.nurl)),
                    burl: string(Some(&notice.burl)),
                    lurl: string(Some(&notice.lurl)),
                    adomain,
                    cat,
                    attr,
                    w: offered.w(),
                    h: offered.h(),
                    mtype: offered.mtype(),
                    ..Default::default()
                };
                bids.push(Bid::create(fbb, &args));
            }
            let bid = fbb.create_vector(bids);
            let seat = fbb.create_string(&slot.strategy().tenant);
            seatbids.push(SeatBid::create(
                fbb,
                &SeatBidArgs {
                    bid: Some(bid),
                    seat: Some(seat),
                    ..Default::default()
                },
            ));
        }
        let seatbid = (!seatbids.is_empty()).then(|| fbb.create_vector(seatbids));
        let id = fbb.create_string(request.id());
        let cur = seatbid.is_some().then(|| fbb.create_string(currency));
        let root = BidResponse::create(
            fbb,
            &BidResponseArgs {
                id: Some(id),
                seatbid,
                cur,
                ..Default::default()
            },
        );
        fbb.finish_minimal(root);
    }

    /// A no-bid BidResponse: `id` and a no-bid reason code.
    pub fn no_bid(&mut self, request_id: &str, nbr: i32) {
        let fbb = &mut self.fbb;
        fbb.reset();
        let id = fbb.create_string(request_id);
        let root = BidResponse::create(
            fbb,
            &BidResponseArgs {
                id: Some(id),
                nbr: Some(nbr),
                ..Default::default()
            },
        );
        fbb.finish_minimal(root);
    }
}
