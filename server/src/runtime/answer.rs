//! Checking a strategy's answer against the request it answers.
//!
//! The answer is untrusted bytes from tenant memory. It is copied out once
//! (so the instance can be reused or dropped), verified as a `StrategyBids`
//! flatbuffer, and every bid is checked: the impression exists, the price
//! is finite, positive, under the cap and at or above the floor (the deal's
//! floor for a deal bid), the deal belongs to that impression and admits
//! this seat, and nothing the request blocks (`badv`, `bcat`) is in it.
//! Of the bids that pass, the highest per impression is kept.

use gavel_schemas::openrtb::{BidRequest, Imp};
use gavel_schemas::strategy::{StrategyBid, StrategyBids};
use gavel_schemas::verify::{self, VerifyError};

/// Why a single bid in an otherwise readable answer was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BidRejection {
    /// `impid` is not an impression of the request.
    UnknownImp,
    /// Price NaN, infinite, <= 0 or above the operator's cap.
    BadPrice,
    /// Price below the impression's (or deal's) floor.
    BelowFloor,
    /// `dealid` is not a deal of the impression, or the deal excludes this
    /// seat; or the impression is a private auction and no deal was named.
    BadDeal,
    /// An advertiser domain in `badv` or a category in `bcat`.
    Blocked,
    /// The floor is in a currency other than the bidder's.
    Currency,
}

impl BidRejection {
    pub const ALL: [BidRejection; 6] = [
        BidRejection::UnknownImp,
        BidRejection::BadPrice,
        BidRejection::BelowFloor,
        BidRejection::BadDeal,
        BidRejection::Blocked,
        BidRejection::Currency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BidRejection::UnknownImp => "unknown_imp",
            BidRejection::BadPrice => "bad_price",
            BidRejection::BelowFloor => "below_floor",
            BidRejection::BadDeal => "bad_deal",
            BidRejection::Blocked => "blocked",
            BidRejection::Currency => "currency",
        }
    }
}

/// A bid that passed every check.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ValidBid {
    /// Index of the impression in `request.imp`.
    pub imp_index: usize,
    /// Index of the bid in the answer's `bids`.
    pub bid_index: usize,
    pub price: f64,
}

/// What the request allows, for checking bids.
pub struct Rules<'r> {
    pub request: BidRequest<'r>,
    /// The bidder's currency (ISO-4217), e.g. "USD".
    pub currency: &'r str,
    /// The seat bids would be made under (the tenant id).
    pub seat: &'r str,
    pub price_max: f64,
}

/// One tenant's checked answer, kept per slot and reused across requests.
#[derive(Default)]
pub struct Answer {
    bytes: Vec<u8>,
    valid: Vec<ValidBid>,
}

impl Answer {
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.valid.clear();
    }

    /// The valid bids, at most one per impression, in impression order.
    pub fn bids(&self) -> &[ValidBid] {
        &self.valid
    }

    /// The strategy's full bid behind a [`ValidBid`] of this answer.
    pub fn bid(&self, valid: &ValidBid) -> StrategyBid<'_> {
        // SAFETY: `bytes` passed `verify::strategy_bids` in `check` and is
        // private to this type, unchanged since; `valid` came from `bids()`
        // of the same check, so `bid_index` is in range.
        let answer = unsafe { flatbuffers::root_unchecked::<StrategyBids>(&self.bytes) };
        answer
            .bids()
            .expect("a checked answer with valid bids has bids")
            .get(valid.bid_index)
    }

    /// Copies `output` in, verifies it and checks every bid. Returns the
    /// number of valid bids; `rejected` is called for every dropped one.
    pub fn check(
        &mut self,
        output: &[u8],
        rules: &Rules<'_>,
        mut rejected: impl FnMut(BidRejection),
    ) -> Result<usize, VerifyError> {
        self.clear();
        self.bytes.extend_from_slice(output);
        let answer = verify::strategy_bids(&self.bytes)?;
        let Some(bids) = answer.bids() else {
            return Ok(0);
        };
        let imps = rules.request.imp();
        for (bid_index, bid) in bids.iter().enumerate() {
            let Some(imp_index) = imps.iter().position(|imp| imp.id() == bid.impid()) else {
                rejected(BidRejection::UnknownImp);
                continue;
            };
            if let Err(reason) = check_bid(&bid, imps.get(imp_index), rules) {
                rejected(reason);
                continue;
            }
            let price = bid.price();
            match self.valid.iter_mut().find(|v| v.imp_index == imp_index) {
                // The first of equal prices stays: ties break by bid order.
                Some(best) if best.price >= price => {}
                Some(best) => {
                    *best = ValidBid {
                        imp_index,
                        bid_index,
                        price,
                    }
                }
                None => self.valid.push(ValidBid {
                    imp_index,
                    bid_index,
                    price,
                }),
            }
        }
        self.valid.sort_unstable_by_key(|v| v.imp_index);
        Ok(self.valid.len())
    }
}

fn contains(
    list: Option<flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<&str>>>,
    value: &str,
) -> bool {
    list.is_some_and(|list| list.iter().any(|item| item == value))
}

fn check_bid(bid: &StrategyBid<'_>, imp: Imp<'_>, rules: &Rules<'_>) -> Result<(), BidRejection> {
    let price = bid.price();
    if !price.is_finite() || price <= 0.0 || price > rules.price_max {
        return Err(BidRejection::BadPrice);
    }
    let request = &rules.request;
    let blocked_domain = bid
        .adomain()
        .is_some_and(|ds| ds.iter().any(|d| contains(request.badv(), d)));
    let blocked_category = bid
        .cat()
        .is_some_and(|cs| cs.iter().any(|c| contains(request.bcat(), c)));
    if blocked_domain || blocked_category {
        return Err(BidRejection::Blocked);
    }
    let pmp = imp.pmp();
    match bid.dealid() {
        Some(dealid) => {
            let deal = pmp
                .and_then(|p| p.deals())
                .and_then(|deals| deals.iter().find(|d| d.id() == dealid))
                .ok_or(BidRejection::BadDeal)?;
            if deal.wseat().is_some() && !contains(deal.wseat(), rules.seat) {
                return Err(BidRejection::BadDeal);
            }
            check_floor(price, deal.bidfloor(), deal.bidfloorcur(), rules.currency)
        }
        None => {
            if pmp.and_then(|p| p.private_auction()) == Some(1) {
                return Err(BidRejection::BadDeal);
            }
            check_floor(price, imp.bidfloor(), imp.bidfloorcur(), rules.currency)
        }
    }
}

/// OpenRTB's default floor currency is USD. A floor that is not a finite
/// number (a NaN from a flatbuffer request) admits no bid: no price can be
/// shown to meet it.
fn check_floor(
    price: f64,
    floor: Option<f64>,
    floor_currency: Option<&str>,
    currency: &str,
) -> Result<(), BidRejection> {
    let floor = floor.unwrap_or(0.0);
    if floor > 0.0 && floor_currency.unwrap_or("USD") != currency {
        return Err(BidRejection::Currency);
    }
    if !floor.is_finite() || price < floor {
        return Err(BidRejection::BelowFloor);
    }
    Ok(())
}
