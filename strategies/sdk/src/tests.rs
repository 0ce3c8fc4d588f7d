//! The SDK's guest path, natively: input, verification, strategy, answer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use gavel_schemas::json::Encoder;

use crate::guest::{self, Guest};
use crate::testing::{self, Host, OwnedBid};
use crate::{BIDS_MAX, Bid, BidError, BidRequest, Bids, InitError, Strategy, mtype};

const BANNER_REQUEST: &str = r#"{
    "id": "req-1",
    "imp": [
        {"id": "1", "bidfloor": 0.5, "banner": {"w": 300, "h": 250}},
        {"id": "2", "banner": {"w": 728, "h": 90}}
    ]
}"#;

fn flatbuffer(json: &str) -> Vec<u8> {
    Encoder::new()
        .bid_request(json.as_bytes())
        .expect("test request is valid OpenRTB")
        .to_vec()
}

/// Bids on every impression with every field set.
#[derive(Default)]
struct EveryField;

impl Strategy for EveryField {
    fn bid(&mut self, request: BidRequest<'_>, bids: &mut Bids) {
        for imp in request.imp() {
            bids.push(
                Bid::new(imp.id(), 2.25)
                    .crid("cr-1")
                    .adid("ad-1")
                    .cid("campaign-1")
                    .adomain(&["trailhead.example", "trailhead-shop.example"])
                    .cat(&["IAB17"])
                    .attr(&[1, 3])
                    .dealid("deal-1")
                    .adm("<div>ad</div>")
                    .nurl("https://win.example/n")
                    .burl("https://win.example/b")
                    .lurl("https://win.example/l")
                    .w(300)
                    .h(250)
                    .mtype(mtype::BANNER),
            );
        }
    }
}

#[test]
fn every_field_survives_the_answer() {
    let mut host = Host::<EveryField>::new().expect("no init hook");
    let bids = host.bid(&flatbuffer(BANNER_REQUEST)).expect("answer");
    let expected = |impid: &str| OwnedBid {
        impid: impid.to_owned(),
        price: 2.25,
        crid: Some("cr-1".into()),
        adid: Some("ad-1".into()),
        cid: Some("campaign-1".into()),
        adomain: vec!["trailhead.example".into(), "trailhead-shop.example".into()],
        cat: vec!["IAB17".into()],
        attr: vec![1, 3],
        dealid: Some("deal-1".into()),
        adm: Some("<div>ad</div>".into()),
        nurl: Some("https://win.example/n".into()),
        burl: Some("https://win.example/b".into()),
        lurl: Some("https://win.example/l".into()),
        w: Some(300),
        h: Some(250),
        mtype: Some(1),
    };
    assert_eq!(bids, [expected("1"), expected("2")]);
}

/// Bids a bare price on imp "1", counting calls.
#[derive(Default)]
struct Counter {
    calls: u32,
}

impl Strategy for Counter {
    fn bid(&mut self, request: BidRequest<'_>, bids: &mut Bids) {
        self.calls += 1;
        if let Some(imp) = request.imp().iter().find(|imp| imp.id() == "1") {
            bids.push(Bid::new(imp.id(), 1.0));
        }
    }
}

#[test]
fn unset_fields_stay_absent_and_state_persists() {
    let mut host = Host::<Counter>::new().expect("no init hook");
    for _ in 0..3 {
        let bids = host.bid(&flatbuffer(BANNER_REQUEST)).expect("answer");
        assert_eq!(bids.len(), 1);
        let bid = &bids[0];
        assert_eq!((bid.impid.as_str(), bid.price), ("1", 1.0));
        assert_eq!((&bid.crid, &bid.adm, &bid.dealid), (&None, &None, &None));
        assert!(bid.adomain.is_empty() && bid.cat.is_empty() && bid.attr.is_empty());
        assert_eq!((bid.w, bid.h, bid.mtype), (None, None, None));
    }
    assert_eq!(host.strategy().calls, 3);
}

#[test]
fn no_bids_is_a_no_bid() {
    let mut host = Host::<Counter>::new().expect("no init hook");
    let request = flatbuffer(r#"{"id": "r", "imp": [{"id": "7"}]}"#);
    assert_eq!(host.bid(&request), Ok(Vec::new()));
}

#[test]
fn unreadable_requests_are_refused_before_the_strategy_runs() {
    // The test host, like the server, verifies before the guest reads.
    let mut host = Host::<Counter>::new().expect("no init hook");
    assert_eq!(host.bid(b"not a flatbuffer"), Err(BidError::Request));
    assert_eq!(host.bid(&[]), Err(BidError::Request));
    let too_large = vec![0; gavel_schemas::verify::BID_REQUEST_BYTES_MAX + 1];
    assert_eq!(host.bid(&too_large), Err(BidError::Request));
    assert_eq!(host.strategy().calls, 0);
}

#[test]
fn a_longer_request_after_a_shorter_one_is_read_whole() {
    let mut host = Host::<Counter>::new().expect("no init hook");
    let short = flatbuffer(r#"{"id": "r", "imp": [{"id": "1"}]}"#);
    let long = flatbuffer(BANNER_REQUEST);
    assert_eq!(host.bid(&short).expect("answer").len(), 1);
    assert_eq!(host.bid(&long).expect("answer").len(), 1);
    assert_eq!(host.bid(&short).expect("answer").len(), 1);
}

/// Pushes one bid more than an answer may hold.
#[derive(Default)]
struct TooMany;

impl Strategy for TooMany {
    fn bid(&mut self, _: BidRequest<'_>, bids: &mut Bids) {
        for _ in 0..=BIDS_MAX {
            bids.push(Bid::new("1", 1.0));
        }
        assert_eq!(bids.len(), BIDS_MAX + 1);
    }
}

#[test]
fn too_many_bids_fail_loudly() {
    let mut host = Host::<TooMany>::new().expect("no init hook");
    assert_eq!(
        host.bid(&flatbuffer(BANNER_REQUEST)),
        Err(BidError::Strategy)
    );
    let log = testing::take_log();
    assert!(log[0].contains("over the limit of 1023"), "{log:?}");
}

/// Pushes more markup than an answer may hold.
#[derive(Default)]
struct TooLarge;

impl Strategy for TooLarge {
    fn bid(&mut self, request: BidRequest<'_>, bids: &mut Bids) {
        let adm = "x".repeat(gavel_schemas::verify::STRATEGY_BIDS_BYTES_MAX);
        for imp in request.imp() {
            bids.push(Bid::new(imp.id(), 1.0).adm(&adm));
        }
    }
}

#[test]
fn oversized_answers_fail_loudly() {
    let mut host = Host::<TooLarge>::new().expect("no init hook");
    assert_eq!(
        host.bid(&flatbuffer(BANNER_REQUEST)),
        Err(BidError::Strategy)
    );
    let log = testing::take_log();
    assert!(log[0].starts_with("answer refused: "), "{log:?}");
}

/// Whose init hook fails.
#[derive(Default)]
struct BadInit;

impl Strategy for BadInit {
    fn init(&mut self) -> Result<(), InitError> {
        Err("deal table is empty".into())
    }

    fn bid(&mut self, _: BidRequest<'_>, _: &mut Bids) {
        unreachable!("an instance whose init failed never bids");
    }
}

#[test]
fn a_failed_init_refuses_the_instance() {
    assert!(Host::<BadInit>::new().is_err());
    let mut slot = None;
    assert_eq!(guest::init::<BadInit>(&mut slot), 1);
    assert_eq!(
        guest::bid::<BadInit>(&mut slot, 0),
        BidError::Strategy.code()
    );
    assert_eq!(guest::input::<BadInit>(&mut slot, 16), 0);
    let log = testing::take_log();
    assert_eq!(log[0], "strategy init failed: deal table is empty");
}

#[test]
fn a_successful_init_is_ready() {
    let mut slot = None;
    assert_eq!(guest::init::<Counter>(&mut slot), 0);
    assert!(slot.is_some());
    // Negative lengths are not lengths.
    assert_eq!(guest::input::<Counter>(&mut slot, -1), 0);
    assert_eq!(
        guest::bid::<Counter>(&mut slot, -1),
        BidError::Request.code()
    );
}

/// Reads the clock and logs.
#[derive(Default)]
struct Clock;

impl Strategy for Clock {
    fn bid(&mut self, _: BidRequest<'_>, _: &mut Bids) {
        crate::log!("now {}", crate::request_time_us());
    }
}

#[test]
fn the_clock_and_log_stubs_are_per_thread() {
    let mut host = Host::<Clock>::new().expect("no init hook");
    testing::set_request_time_us(1_700_000_000_123_456);
    host.bid(&flatbuffer(BANNER_REQUEST)).expect("no-bid");
    assert_eq!(testing::take_log(), ["now 1700000000123456"]);
    assert!(testing::take_log().is_empty());
}

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Counts this thread's allocations, to prove the steady state allocates
/// nothing.
struct CountingAllocator;

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is a const-initialized thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.set(ALLOCATIONS.get() + 1);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.set(ALLOCATIONS.get() + 1);
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn answering_allocates_nothing_after_warm_up() {
    let requests = [
        flatbuffer(BANNER_REQUEST),
        flatbuffer(r#"{"id": "r", "imp": [{"id": "1"}]}"#),
    ];
    let mut guest = Guest::<EveryField>::new().expect("no init hook");
    let run = |guest: &mut Guest<EveryField>| {
        for request in &requests {
            guest
                .input(request.len())
                .expect("room for the request")
                .copy_from_slice(request);
            let answer = guest.bid(request.len()).expect("answer").expect("bids");
            assert!(!answer.is_empty());
        }
    };
    run(&mut guest);
    let before = ALLOCATIONS.get();
    for _ in 0..100 {
        run(&mut guest);
    }
    assert_eq!(ALLOCATIONS.get() - before, 0);
}
