//! Reader walks: read every field of a verified flatbuffer through the
//! generated accessors, as the host does, and count what was read.
//!
//! A bid request needs no walk of its own here: `json::bid_request_to_json`
//! reads every field of every table of `openrtb.fbs` (its readers are
//! generated from the same field lists as the schema mirror).

use gavel_schemas::flatbuffers::{ForwardsUOffset, Vector};
use gavel_schemas::strategy::{StrategyBid, StrategyBidArgs, StrategyBids};

/// What a walk read. Both counts are per reference: a string that two
/// fields share is counted twice, as the verifier counts it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Walked {
    /// Tables visited, the root included.
    pub tables: usize,
    /// Payload bytes read: string contents and vector elements.
    pub bytes: usize,
}

impl Walked {
    fn string(&mut self, value: Option<&str>) {
        if let Some(value) = value {
            // Touch the first and last byte: the verifier promised they
            // are inside the buffer.
            std::hint::black_box(value.as_bytes().first());
            std::hint::black_box(value.as_bytes().last());
            self.bytes += value.len();
        }
    }

    fn strings(&mut self, values: Option<Vector<'_, ForwardsUOffset<&str>>>) {
        for value in values.iter().flat_map(|values| values.iter()) {
            self.string(Some(value));
        }
    }

    fn ints(&mut self, values: Option<Vector<'_, i32>>) {
        for value in values.iter().flat_map(|values| values.iter()) {
            std::hint::black_box(value);
            self.bytes += size_of::<i32>();
        }
    }
}

/// Reads every field of every bid of a verified strategy answer.
pub fn strategy_bids(answer: StrategyBids<'_>) -> Walked {
    let mut walked = Walked {
        tables: 1,
        bytes: 0,
    };
    for bid in answer.bids().iter().flat_map(|bids| bids.iter()) {
        strategy_bid(bid, &mut walked);
    }
    walked
}

fn strategy_bid(bid: StrategyBid<'_>, walked: &mut Walked) {
    // Exhaustive on purpose: a field added to `strategy.fbs` stops this
    // from compiling until the walk below reads it too.
    let StrategyBidArgs {
        impid: _,
        price: _,
        crid: _,
        adid: _,
        cid: _,
        adomain: _,
        cat: _,
        attr: _,
        dealid: _,
        adm: _,
        nurl: _,
        burl: _,
        lurl: _,
        w: _,
        h: _,
        mtype: _,
    } = StrategyBidArgs::default();

    walked.tables += 1;
    walked.string(Some(bid.impid()));
    std::hint::black_box(bid.price());
    walked.string(bid.crid());
    walked.string(bid.adid());
    walked.string(bid.cid());
    walked.strings(bid.adomain());
    walked.strings(bid.cat());
    walked.ints(bid.attr());
    walked.string(bid.dealid());
    walked.string(bid.adm());
    walked.string(bid.nurl());
    walked.string(bid.burl());
    walked.string(bid.lurl());
    std::hint::black_box((bid.w(), bid.h(), bid.mtype()));
}
