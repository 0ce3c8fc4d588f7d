//! One strategy instance as the host sees it: the input buffer, the strategy
//! and its answer builder, and the glue behind the exports that
//! [`export_strategy!`](crate::export_strategy!) generates.
//!
//! [`crate::testing`] drives the same [`Guest`] natively, so unit tests run the
//! exact path a wasm instance runs, minus the pointer packing.

use gavel_schemas::openrtb::BidRequest;
use gavel_schemas::verify::BID_REQUEST_BYTES_MAX;

use crate::{BidError, Bids, InitError, Strategy, abi};

/// Room the input buffer starts with: typical requests (1-10 KB of JSON,
/// about as much flatbuffer) fit without growing it. It grows on demand up to
/// `BID_REQUEST_BYTES_MAX` and keeps its size across calls.
const INPUT_CAPACITY_BYTES: usize = 16 << 10;

/// A strategy with its buffers; one per instance, living as long as it.
pub struct Guest<S> {
    strategy: S,
    /// Where the host writes requests. Its length only grows, so a request
    /// no larger than an earlier one costs no allocation and no zeroing.
    input: Vec<u8>,
    bids: Bids,
}

impl<S: Strategy> Guest<S> {
    /// Builds the strategy with `Default` and runs its [`Strategy::init`].
    pub(crate) fn new() -> Result<Self, InitError> {
        Self::with_strategy(S::default())
    }

    /// Runs `strategy`'s [`Strategy::init`] and wraps it.
    pub(crate) fn with_strategy(mut strategy: S) -> Result<Self, InitError> {
        strategy.init()?;
        Ok(Self {
            strategy,
            input: Vec::with_capacity(INPUT_CAPACITY_BYTES),
            bids: Bids::new(),
        })
    }

    /// Only native tests inspect the strategy from outside.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn strategy(&self) -> &S {
        &self.strategy
    }

    /// `gavel_v1_input`: room for a request of `len` bytes, or `None` if the
    /// request is over `BID_REQUEST_BYTES_MAX` or memory is exhausted.
    pub(crate) fn input(&mut self, len: usize) -> Option<&mut [u8]> {
        if len > BID_REQUEST_BYTES_MAX {
            return None;
        }
        if let Some(additional) = len.checked_sub(self.input.len()) {
            // A failed grow means the memory cap is reached: answer "cannot"
            // rather than abort the instance.
            self.input.try_reserve(additional).ok()?;
            self.input.resize(len, 0);
        }
        Some(&mut self.input[..len])
    }

    /// `gavel_v1_bid`: reads the `len` request bytes the host wrote, runs the
    /// strategy and returns its answer (`None` for a no-bid), valid until the
    /// next call.
    pub(crate) fn bid(&mut self, len: usize) -> Result<Option<&[u8]>, BidError> {
        let bytes = self.input.get(..len).ok_or(BidError::Request)?;
        // SAFETY: ABI v1 guarantees that the host wrote a `BidRequest` that
        // passed `verify::bid_request` (the server verifies every request
        // before any tenant sees it; `testing::Host` does the same). Reading
        // it again unverified saves a second verification, about as costly
        // as the strategy itself, on every call; and a guest can only harm
        // its own sandbox.
        let request = unsafe { gavel_schemas::flatbuffers::root_unchecked::<BidRequest>(bytes) };
        self.bids.clear();
        self.strategy.bid(request, &mut self.bids);
        self.bids.finish()
    }
}

/// Creates the guest on first use: when the host calls `gavel_v1_init` (it
/// always does), or on the first call if it did not.
fn get_or_init<S: Strategy>(slot: &mut Option<Guest<S>>) -> Option<&mut Guest<S>> {
    if slot.is_none() {
        match Guest::new() {
            Ok(guest) => *slot = Some(guest),
            Err(error) => crate::log!("strategy init failed: {error}"),
        }
    }
    slot.as_mut()
}

/// `gavel_v1_init() -> i32`: 0 when the strategy is ready, 1 when its init
/// failed (the reason goes to the log).
pub fn init<S: Strategy>(slot: &mut Option<Guest<S>>) -> i32 {
    *slot = None;
    match get_or_init(slot) {
        Some(_) => 0,
        None => 1,
    }
}

/// `gavel_v1_input(len: i32) -> i32`: the address of `len` writable bytes,
/// or 0 when the guest cannot provide them.
pub fn input<S: Strategy>(slot: &mut Option<Guest<S>>, len: i32) -> i32 {
    let Ok(len) = usize::try_from(len) else {
        return 0;
    };
    get_or_init(slot)
        .and_then(|guest| guest.input(len))
        // The address is exposed: the host writes through it before the next
        // call reads the buffer.
        .and_then(|buffer| i32::try_from(buffer.as_mut_ptr().expose_provenance()).ok())
        .unwrap_or(0)
}

/// `gavel_v1_bid(len: i32) -> i64`: 0 for a no-bid, `(address << 32) | len`
/// of the answer, or a negative [`BidError`] code.
pub fn bid<S: Strategy>(slot: &mut Option<Guest<S>>, len: i32) -> i64 {
    let Ok(len) = usize::try_from(len) else {
        return BidError::Request.code();
    };
    let Some(guest) = get_or_init(slot) else {
        return BidError::Strategy.code();
    };
    match guest.bid(len) {
        Ok(None) => 0,
        Ok(Some(answer)) => abi::pack_answer(answer.as_ptr().expose_provenance(), answer.len())
            .unwrap_or(BidError::Strategy.code()),
        Err(error) => error.code(),
    }
}
