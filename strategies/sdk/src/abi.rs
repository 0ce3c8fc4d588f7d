//! The raw strategy ABI v1 (see `ABI.md`): the host functions a strategy may
//! import, and how an answer is packed into the `i64` that `gavel_v1_bid`
//! returns.
//!
//! On `wasm32` the imports come from the host module `gavel_v1`. Everywhere
//! else a stub stands in for the host, so the SDK and every strategy build and
//! run their unit tests natively: `log` collects messages in a thread-local
//! list and `request_time_us` returns a thread-local value, both reachable
//! through [`crate::testing`].

#[cfg(target_arch = "wasm32")]
mod host {
    #[link(wasm_import_module = "gavel_v1")]
    unsafe extern "C" {
        /// Appends `len` bytes of UTF-8 at `ptr` to the tenant's log. The
        /// host traps if the range is outside memory and drops text over the
        /// tenant's rate limit.
        pub(super) fn log(ptr: *const u8, len: usize);

        /// Microseconds since the Unix epoch at which the server received the
        /// current request. Takes nothing and touches no guest memory, so
        /// calling it is always sound.
        pub(super) safe fn request_time_us() -> i64;
    }
}

/// Writes one message to the tenant's log.
#[cfg(target_arch = "wasm32")]
pub(crate) fn log(message: &str) {
    // SAFETY: the pointer and length come from a live `&str`, so the host
    // reads exactly the message's bytes, all inside linear memory, and the
    // import keeps no reference to them after it returns.
    unsafe { host::log(message.as_ptr(), message.len()) }
}

/// The current request's arrival time, in microseconds since the Unix epoch.
#[cfg(target_arch = "wasm32")]
pub(crate) fn request_time_us() -> i64 {
    host::request_time_us()
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use stub::{log, request_time_us};

/// The native stand-in for the host, for unit tests.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod stub {
    use std::cell::{Cell, RefCell};

    thread_local! {
        static LOG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
        static REQUEST_TIME_US: Cell<i64> = const { Cell::new(0) };
    }

    pub(crate) fn log(message: &str) {
        LOG.with_borrow_mut(|log| log.push(message.to_owned()));
    }

    pub(crate) fn request_time_us() -> i64 {
        REQUEST_TIME_US.get()
    }

    pub(crate) fn take_log() -> Vec<String> {
        LOG.take()
    }

    pub(crate) fn set_request_time_us(time_us: i64) {
        REQUEST_TIME_US.set(time_us);
    }
}

/// Packs the location of an answer into `gavel_v1_bid`'s return value,
/// `(address << 32) | length`, or `None` when the ABI cannot express it.
///
/// The value must be positive (negative values are error codes), so the
/// address must be below 2 GiB; an empty answer is a no-bid and is never
/// packed.
pub(crate) fn pack_answer(address: usize, len: usize) -> Option<i64> {
    let address = i64::from(i32::try_from(address).ok()?);
    let len = i64::from(u32::try_from(len).ok()?);
    (len > 0).then_some((address << 32) | len)
}

#[cfg(test)]
mod tests {
    use super::pack_answer;

    #[test]
    fn answers_pack_address_high_and_length_low() {
        assert_eq!(pack_answer(0x10_0000, 0x2a), Some(0x0010_0000_0000_002a));
        assert_eq!(pack_answer(0x7fff_ffff, 0xffff_ffff), Some(i64::MAX));
    }

    #[test]
    fn answers_the_abi_cannot_express_are_refused() {
        // At or above 2 GiB the packed value would turn negative: an error code.
        assert_eq!(pack_answer(0x8000_0000, 1), None);
        assert_eq!(pack_answer(16, 0), None);
        assert_eq!(pack_answer(16, 1 << 32), None);
    }
}
