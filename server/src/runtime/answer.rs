//! Checking a strategy's answer against the request it answers.
//!
//! The answer is untrusted bytes from tenant memory. It is copied out once
//! (so the instance can be reused or dropped), verified as a `StrategyBids`
//! flatbuffer, and every bid is checked: the impression exists, the price
//! is finite, positive, under the cap and at or above the floor (the deal's
//! floor for a deal bid), the deal belongs to that impression and admits
//! this seat, and nothing the request blocks (`badv`, `bcat`) is in it.
//! Of the bids that pass, the highest per impression is kept.
//!
//! A check is linear in the answer's size: the request's impressions,
//! deals and blocklists are indexed once per request ([`RequestIndex`]),
//! so a bid costs lookups, not scans of the request.

use std::hash::BuildHasher as _;

use foldhash::fast::RandomState;
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

/// The request's ids and blocklists by hash, built once per request and
/// shared by every tenant's check: impression ids, each impression's deal
/// ids, `badv` and `bcat`. Sorted hashes with the index they came from; a
/// hit is confirmed against the request's own string, so a collision costs
/// a comparison, never a wrong answer. The buffers are reused.
#[derive(Debug, Default)]
pub struct RequestIndex {
    /// Seeded per process, so requests cannot aim collisions at it.
    hasher: RandomState,
    /// (hash of the id, index in `imp`).
    imps: Vec<(u64, u32)>,
    /// (hash of impression index and deal id, index in the deals).
    deals: Vec<(u64, u32)>,
    /// Hashes of `badv` entries.
    badv: Vec<u64>,
    /// Hashes of `bcat` entries.
    bcat: Vec<u64>,
}

impl RequestIndex {
    /// An index of `request`.
    pub fn of(request: &BidRequest<'_>) -> Self {
        let mut index = Self::default();
        index.fill(request);
        index
    }

    /// Indexes `request`, replacing what was indexed before.
    pub fn fill(&mut self, request: &BidRequest<'_>) {
        let Self {
            hasher,
            imps,
            deals,
            badv,
            bcat,
        } = self;
        imps.clear();
        deals.clear();
        for (i, imp) in request.imp().iter().enumerate() {
            imps.push((hasher.hash_one(imp.id()), i as u32));
            let imp_deals = imp.pmp().and_then(|p| p.deals());
            for (d, deal) in imp_deals.iter().flatten().enumerate() {
                deals.push((hasher.hash_one((i, deal.id())), d as u32));
            }
        }
        imps.sort_unstable();
        deals.sort_unstable();
        for (hashes, list) in [(&mut *badv, request.badv()), (&mut *bcat, request.bcat())] {
            hashes.clear();
            hashes.extend(list.iter().flatten().map(|s| hasher.hash_one(s)));
            hashes.sort_unstable();
        }
    }

    /// The indexes stored under `hash`.
    fn under(entries: &[(u64, u32)], hash: u64) -> impl Iterator<Item = usize> + '_ {
        let from = entries.partition_point(|(h, _)| *h < hash);
        entries[from..]
            .iter()
            .take_while(move |(h, _)| *h == hash)
            .map(|(_, i)| *i as usize)
    }

    /// The index in `request.imp` of the impression `id`.
    fn imp(&self, request: &BidRequest<'_>, id: &str) -> Option<usize> {
        let imps = request.imp();
        Self::under(&self.imps, self.hasher.hash_one(id)).find(|&i| imps.get(i).id() == id)
    }

    /// The deal `id` of impression `imp_index` (that is `imp`).
    fn deal<'r>(
        &self,
        imp_index: usize,
        imp: &Imp<'r>,
        id: &str,
    ) -> Option<gavel_schemas::openrtb::Deal<'r>> {
        let deals = imp.pmp().and_then(|p| p.deals())?;
        let hash = self.hasher.hash_one((imp_index, id));
        Self::under(&self.deals, hash)
            .map(|d| deals.get(d))
            .find(|deal| deal.id() == id)
    }

    /// Whether `value` is in `list`, whose hashes are `hashes`.
    fn listed(
        &self,
        hashes: &[u64],
        list: Option<flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<&str>>>,
        value: &str,
    ) -> bool {
        hashes.binary_search(&self.hasher.hash_one(value)).is_ok() && contains(list, value)
    }
}

/// What the request allows, for checking bids.
pub struct Rules<'r> {
    pub request: BidRequest<'r>,
    /// The request's index ([`RequestIndex::fill`] of `request`).
    pub index: &'r RequestIndex,
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
    /// Per impression, the index in `valid` of its best bid during a
    /// check; [`NO_BID`] everywhere between checks, so a check resets only
    /// what it set.
    best: Vec<u32>,
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
        // Grown once to the largest request seen; never cleared in full.
        if self.best.len() < imps.len() {
            self.best.resize(imps.len(), NO_BID);
        }
        for (bid_index, bid) in bids.iter().enumerate() {
            let Some(imp_index) = rules.index.imp(&rules.request, bid.impid()) else {
                rejected(BidRejection::UnknownImp);
                continue;
            };
            if let Err(reason) = check_bid(&bid, imp_index, imps.get(imp_index), rules) {
                rejected(reason);
                continue;
            }
            let price = bid.price();
            let valid = ValidBid {
                imp_index,
                bid_index,
                price,
            };
            match self.best[imp_index] {
                NO_BID => {
                    self.best[imp_index] = self.valid.len() as u32;
                    self.valid.push(valid);
                }
                // The first of equal prices stays: ties break by bid order.
                best if self.valid[best as usize].price >= price => {}
                best => self.valid[best as usize] = valid,
            }
        }
        for valid in &self.valid {
            self.best[valid.imp_index] = NO_BID;
        }
        self.valid.sort_unstable_by_key(|v| v.imp_index);
        Ok(self.valid.len())
    }
}

/// No valid bid on the impression yet (in [`Answer`]'s `best`).
const NO_BID: u32 = u32::MAX;

fn contains(
    list: Option<flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<&str>>>,
    value: &str,
) -> bool {
    list.is_some_and(|list| list.iter().any(|item| item == value))
}

fn check_bid(
    bid: &StrategyBid<'_>,
    imp_index: usize,
    imp: Imp<'_>,
    rules: &Rules<'_>,
) -> Result<(), BidRejection> {
    let price = bid.price();
    if !price.is_finite() || price <= 0.0 || price > rules.price_max {
        return Err(BidRejection::BadPrice);
    }
    let (request, index) = (&rules.request, rules.index);
    let blocked_domain = bid.adomain().is_some_and(|ds| {
        ds.iter()
            .any(|d| index.listed(&index.badv, request.badv(), d))
    });
    let blocked_category = bid.cat().is_some_and(|cs| {
        cs.iter()
            .any(|c| index.listed(&index.bcat, request.bcat(), c))
    });
    if blocked_domain || blocked_category {
        return Err(BidRejection::Blocked);
    }
    let pmp = imp.pmp();
    match bid.dealid() {
        Some(dealid) => {
            let deal = index
                .deal(imp_index, &imp, dealid)
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

#[cfg(test)]
mod tests {
    use super::*;
    use gavel_schemas::json::Encoder;
    use gavel_schemas::strategy::{StrategyBidArgs, StrategyBidsArgs};

    /// A bid on `impid` at `price`, with an optional deal and domain.
    struct Bid(
        &'static str,
        f64,
        Option<&'static str>,
        Option<&'static str>,
    );

    fn answer(bids: &[Bid]) -> Vec<u8> {
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let bids: Vec<_> = bids
            .iter()
            .map(|Bid(impid, price, deal, domain)| {
                let impid = Some(fbb.create_string(impid));
                let dealid = deal.map(|d| fbb.create_string(d));
                let adomain = domain.map(|d| {
                    let d = fbb.create_string(d);
                    fbb.create_vector(&[d])
                });
                StrategyBid::create(
                    &mut fbb,
                    &StrategyBidArgs {
                        impid,
                        price: *price,
                        dealid,
                        adomain,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let bids = Some(fbb.create_vector(&bids));
        let root = StrategyBids::create(&mut fbb, &StrategyBidsArgs { bids });
        fbb.finish(root, None);
        fbb.finished_data().to_vec()
    }

    /// Seat `acme` bidding in USD, prices up to 100.
    fn acme_rules<'r>(request: BidRequest<'r>, index: &'r RequestIndex) -> Rules<'r> {
        Rules {
            request,
            index,
            currency: "USD",
            seat: "acme",
            price_max: 100.0,
        }
    }

    #[test]
    fn bids_are_checked_through_the_request_index() {
        let json = br#"{"id":"r","badv":["blocked.example","other.example"],
            "imp":[{"id":"a","bidfloor":1.0},
                   {"id":"b","pmp":{"deals":[{"id":"d1","bidfloor":2.0},{"id":"d2","wseat":["someone"]}]}},
                   {"id":"c"}]}"#;
        let mut encoder = Encoder::new();
        let request = encoder.bid_request_checked(json).expect("valid").view();
        let index = RequestIndex::of(&request);
        let rules = acme_rules(request, &index);
        let output = answer(&[
            Bid("zz", 5.0, None, None),                   // unknown impression
            Bid("a", 0.5, None, None),                    // below the floor
            Bid("a", 1.5, None, None),                    // valid
            Bid("a", 1.5, None, None),                    // a tie: the first stays
            Bid("b", 3.0, Some("d9"), None),              // no such deal
            Bid("b", 3.0, Some("d2"), None),              // the deal excludes this seat
            Bid("a", 3.0, Some("d1"), None),              // d1 is b's deal, not a's
            Bid("b", 1.0, Some("d1"), None),              // below the deal's floor
            Bid("b", 2.5, Some("d1"), None),              // valid
            Bid("c", 9.0, None, Some("blocked.example")), // blocked
            Bid("c", 8.0, None, Some("allowed.example")), // valid
            Bid("c", 9.5, None, Some("allowed.example")), // better: replaces it
        ]);
        let mut rejected = Vec::new();
        let mut checked = Answer::default();
        let valid = checked.check(&output, &rules, |why| rejected.push(why));
        assert_eq!(valid.ok(), Some(3));
        use BidRejection::*;
        assert_eq!(
            rejected,
            [
                UnknownImp, BelowFloor, BadDeal, BadDeal, BadDeal, BelowFloor, Blocked
            ]
        );
        let kept: Vec<_> = checked
            .bids()
            .iter()
            .map(|v| (v.imp_index, v.bid_index))
            .collect();
        assert_eq!(
            kept,
            [(0, 2), (1, 8), (2, 11)],
            "best per impression, in order"
        );

        // The same index, refilled for a request without blocklists.
        let json = br#"{"id":"s","imp":[{"id":"c"}]}"#;
        let mut encoder = Encoder::new();
        let request = encoder.bid_request_checked(json).expect("valid").view();
        let mut index = index;
        index.fill(&request);
        let rules = acme_rules(request, &index);
        let output = answer(&[
            Bid("c", 1.0, None, Some("blocked.example")),
            Bid("a", 1.0, None, None),
        ]);
        let mut rejected = Vec::new();
        assert_eq!(
            checked
                .check(&output, &rules, |why| rejected.push(why))
                .ok(),
            Some(1)
        );
        assert_eq!(rejected, [UnknownImp]);
    }
}
