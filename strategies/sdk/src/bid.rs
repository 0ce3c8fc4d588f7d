//! The answer side: [`Bid`], one offer, and [`Bids`], which encodes offers
//! into the `StrategyBids` flatbuffer as they are pushed.

use flatbuffers::{FlatBufferBuilder, WIPOffset};
use gavel_schemas::strategy::{StrategyBid, StrategyBidArgs, StrategyBids, StrategyBidsArgs};
use gavel_schemas::verify::{STRATEGY_BIDS_BYTES_MAX, STRATEGY_BIDS_TABLES_MAX};

use crate::BidError;

/// Markup types for [`Bid::mtype`] (OpenRTB `Bid.mtype`).
pub mod mtype {
    /// HTML or image banner markup.
    pub const BANNER: i32 = 1;
    /// VAST video markup.
    pub const VIDEO: i32 = 2;
    /// DAAST or VAST audio markup.
    pub const AUDIO: i32 = 3;
    /// Native ad markup (JSON).
    pub const NATIVE: i32 = 4;
}

/// Most bids one answer may hold. The host verifies answers with a limit of
/// [`STRATEGY_BIDS_TABLES_MAX`] tables, one of which is the `StrategyBids`
/// root; at most one bid per impression counts anyway.
pub const BIDS_MAX: usize = STRATEGY_BIDS_TABLES_MAX - 1;

/// Room the answer builder starts with: a few bids with HTML markup fit
/// without growing it. It grows on demand and keeps its size across calls.
const ANSWER_CAPACITY_BYTES: usize = 8 << 10;

/// One offer for one impression: an impression id and a price, then any of
/// the optional fields, builder style.
///
/// A `Bid` only borrows its strings (from the request, from the strategy or
/// from constants); [`Bids::push`] copies them into the answer at once.
///
/// ```
/// use gavel_sdk::{mtype, Bid};
///
/// let bid = Bid::new("1", 1.50)
///     .crid("trailhead-300x250-v3")
///     .adomain(&["trailhead.example"])
///     .adm("<a href=\"https://trailhead.example/\">Trailhead</a>")
///     .w(300)
///     .h(250)
///     .mtype(mtype::BANNER);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "a bid does nothing until it is pushed into `Bids`"]
pub struct Bid<'a> {
    impid: &'a str,
    price: f64,
    crid: Option<&'a str>,
    adid: Option<&'a str>,
    cid: Option<&'a str>,
    adomain: &'a [&'a str],
    cat: &'a [&'a str],
    attr: &'a [i32],
    dealid: Option<&'a str>,
    adm: Option<&'a str>,
    nurl: Option<&'a str>,
    burl: Option<&'a str>,
    lurl: Option<&'a str>,
    w: Option<i32>,
    h: Option<i32>,
    mtype: Option<i32>,
}

impl<'a> Bid<'a> {
    /// A bid of `price` (CPM, in the bidder's currency) on the impression
    /// whose `Imp.id` is `impid`.
    ///
    /// The host drops the bid unless the price is finite, above zero, at or
    /// above the impression's floor (the deal's floor with [`Bid::dealid`])
    /// and at or below its price cap.
    pub fn new(impid: &'a str, price: f64) -> Self {
        Self {
            impid,
            price,
            crid: None,
            adid: None,
            cid: None,
            adomain: &[],
            cat: &[],
            attr: &[],
            dealid: None,
            adm: None,
            nurl: None,
            burl: None,
            lurl: None,
            w: None,
            h: None,
            mtype: None,
        }
    }

    /// Creative id, for the exchange's ad quality review.
    pub fn crid(self, crid: &'a str) -> Self {
        Self {
            crid: Some(crid),
            ..self
        }
    }

    /// Id of an ad preloaded at the exchange.
    pub fn adid(self, adid: &'a str) -> Self {
        Self {
            adid: Some(adid),
            ..self
        }
    }

    /// Campaign id.
    pub fn cid(self, cid: &'a str) -> Self {
        Self {
            cid: Some(cid),
            ..self
        }
    }

    /// Advertiser domains; the host drops the bid if the request blocks one
    /// of them in `badv`.
    pub fn adomain(self, adomain: &'a [&'a str]) -> Self {
        Self { adomain, ..self }
    }

    /// IAB content categories of the creative; the host drops the bid if
    /// the request blocks one of them in `bcat`.
    pub fn cat(self, cat: &'a [&'a str]) -> Self {
        Self { cat, ..self }
    }

    /// Creative attributes (AdCOM list "Creative Attributes").
    pub fn attr(self, attr: &'a [i32]) -> Self {
        Self { attr, ..self }
    }

    /// The `Deal.id` this bid is for; it must be a deal of the impression's
    /// `pmp` that admits the tenant's seat, and the price must meet that
    /// deal's floor.
    pub fn dealid(self, dealid: &'a str) -> Self {
        Self {
            dealid: Some(dealid),
            ..self
        }
    }

    /// Ad markup: HTML for banners, VAST for video, native JSON.
    pub fn adm(self, adm: &'a str) -> Self {
        Self {
            adm: Some(adm),
            ..self
        }
    }

    /// Win notice URL.
    pub fn nurl(self, nurl: &'a str) -> Self {
        Self {
            nurl: Some(nurl),
            ..self
        }
    }

    /// Billing notice URL.
    pub fn burl(self, burl: &'a str) -> Self {
        Self {
            burl: Some(burl),
            ..self
        }
    }

    /// Loss notice URL.
    pub fn lurl(self, lurl: &'a str) -> Self {
        Self {
            lurl: Some(lurl),
            ..self
        }
    }

    /// Creative width in device-independent pixels.
    pub fn w(self, w: i32) -> Self {
        Self { w: Some(w), ..self }
    }

    /// Creative height in device-independent pixels.
    pub fn h(self, h: i32) -> Self {
        Self { h: Some(h), ..self }
    }

    /// Markup type, one of [`mtype`].
    pub fn mtype(self, mtype: i32) -> Self {
        Self {
            mtype: Some(mtype),
            ..self
        }
    }
}

/// The answer being built for one request: push a [`Bid`] for each
/// impression the strategy wants.
///
/// Every push is encoded straight into a flatbuffer builder that lives as
/// long as the instance, so after the first few requests answering
/// allocates nothing. No bids is a no-bid. An answer over [`BIDS_MAX`] bids
/// or over `STRATEGY_BIDS_BYTES_MAX` bytes is a strategy error (`-2`), logged
/// with the reason, never a silently shortened answer.
pub struct Bids {
    builder: FlatBufferBuilder<'static>,
    bids: Vec<WIPOffset<StrategyBid<'static>>>,
    /// Scratch space for the string offsets of `adomain` and `cat`, kept to
    /// avoid an allocation per bid.
    strings: Vec<WIPOffset<&'static str>>,
    /// Bids pushed after [`BIDS_MAX`]; any makes the answer an error.
    bids_over_max: usize,
}

impl Bids {
    pub(crate) fn new() -> Self {
        Self {
            builder: FlatBufferBuilder::with_capacity(ANSWER_CAPACITY_BYTES),
            bids: Vec::new(),
            strings: Vec::new(),
            bids_over_max: 0,
        }
    }

    /// Adds `bid` to the answer. At most one bid per impression counts (the
    /// host keeps the highest valid one).
    pub fn push(&mut self, bid: Bid<'_>) {
        if self.bids.len() == BIDS_MAX {
            self.bids_over_max += 1;
            return;
        }
        let builder = &mut self.builder;
        let mut string = |value: Option<&str>| value.map(|value| builder.create_string(value));
        let impid = string(Some(bid.impid));
        let crid = string(bid.crid);
        let adid = string(bid.adid);
        let cid = string(bid.cid);
        let dealid = string(bid.dealid);
        let adm = string(bid.adm);
        let nurl = string(bid.nurl);
        let burl = string(bid.burl);
        let lurl = string(bid.lurl);
        let adomain = self.strings(bid.adomain);
        let cat = self.strings(bid.cat);
        let attr = (!bid.attr.is_empty()).then(|| self.builder.create_vector(bid.attr));
        let offset = StrategyBid::create(
            &mut self.builder,
            &StrategyBidArgs {
                impid,
                price: bid.price,
                crid,
                adid,
                cid,
                adomain,
                cat,
                attr,
                dealid,
                adm,
                nurl,
                burl,
                lurl,
                w: bid.w,
                h: bid.h,
                mtype: bid.mtype,
            },
        );
        self.bids.push(offset);
    }

    /// How many bids have been pushed for this request.
    pub fn len(&self) -> usize {
        self.bids.len() + self.bids_over_max
    }

    /// Whether no bid has been pushed for this request.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Encodes a vector of strings, or nothing for an empty list.
    fn strings(
        &mut self,
        values: &[&str],
    ) -> Option<WIPOffset<flatbuffers::Vector<'static, flatbuffers::ForwardsUOffset<&'static str>>>>
    {
        if values.is_empty() {
            return None;
        }
        self.strings.clear();
        for value in values {
            self.strings.push(self.builder.create_string(value));
        }
        Some(self.builder.create_vector(&self.strings))
    }

    /// Starts the answer to a new request, keeping every buffer's capacity.
    pub(crate) fn clear(&mut self) {
        self.builder.reset();
        self.bids.clear();
        self.bids_over_max = 0;
    }

    /// Finishes the answer: `None` for a no-bid, else the `StrategyBids`
    /// flatbuffer, valid until the next [`Bids::clear`].
    pub(crate) fn finish(&mut self) -> Result<Option<&[u8]>, BidError> {
        if self.bids_over_max > 0 {
            crate::log!(
                "answer refused: {} bids pushed, over the limit of {BIDS_MAX}",
                self.len()
            );
            return Err(BidError::Strategy);
        }
        if self.bids.is_empty() {
            return Ok(None);
        }
        let bids = self.builder.create_vector(&self.bids);
        let root = StrategyBids::create(&mut self.builder, &StrategyBidsArgs { bids: Some(bids) });
        self.builder.finish_minimal(root);
        let answer = self.builder.finished_data();
        if answer.len() > STRATEGY_BIDS_BYTES_MAX {
            crate::log!(
                "answer refused: {} bytes, over the limit of {STRATEGY_BIDS_BYTES_MAX}",
                answer.len()
            );
            return Err(BidError::Strategy);
        }
        Ok(Some(answer))
    }
}
