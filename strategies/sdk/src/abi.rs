//! The raw strategy ABI v1 (see `ABI.md`): the host functions a strategy may
//! import, and how an answer is packed into the `i64` that `gavel_v1_bid`
//! returns.
//!
//! On `wasm32` the imports come from the host module `gavel_v1`. Everywhere
//! else a stub stands in for the host, so the SDK and every strategy build and
//! run their unit tests natively: `log` collects messages in a thread-local
//! list, and `request_time_us`, the tables, the frequency counts and the
//! remaining budget are thread-local values, all set through
//! [`crate::testing`].

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

        /// Capability `kv`: looks `key` up in table `table`, copies at
        /// most `out_cap` bytes of the value to `out`, and returns the
        /// value's full length, or -1 when the table or key is absent. The
        /// host traps if any range is outside memory.
        pub(super) fn kv_get(
            table: *const u8,
            table_len: usize,
            key: *const u8,
            key_len: usize,
            out: *mut u8,
            out_cap: usize,
        ) -> i32;

        /// Capability `frequency`: wins of this tenant's bids for the
        /// request's user with creative `key` (empty: any) in the last
        /// `window_s` seconds.
        pub(super) fn frequency(key: *const u8, key_len: usize, window_s: i32) -> i32;

        /// Capability `budget`: the tenant's remaining budget in currency
        /// units, or -1 without a budget. Touches no guest memory.
        pub(super) safe fn budget_remaining() -> f64;
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

/// Looks `key` up in `table`, copying what fits of the value into `out`;
/// the value's full length, or -1 when absent.
#[cfg(target_arch = "wasm32")]
pub(crate) fn kv_get(table: &str, key: &[u8], out: &mut [u8]) -> i32 {
    // SAFETY: every pointer and length comes from a live slice (`out`
    // borrowed mutably, so nothing else reads it meanwhile); the host
    // reads the first two ranges, writes at most `out.len()` bytes into
    // the third, and keeps no reference after it returns.
    unsafe {
        host::kv_get(
            table.as_ptr(),
            table.len(),
            key.as_ptr(),
            key.len(),
            out.as_mut_ptr(),
            out.len(),
        )
    }
}

/// Wins of the request's user with creative `crid` (empty: any) in the
/// last `window_s` seconds.
#[cfg(target_arch = "wasm32")]
pub(crate) fn frequency(crid: &str, window_s: i32) -> i32 {
    // SAFETY: the pointer and length come from a live `&str` the host only
    // reads, and it keeps no reference after it returns.
    unsafe { host::frequency(crid.as_ptr(), crid.len(), window_s) }
}

#[cfg(target_arch = "wasm32")]
pub(crate) fn budget_remaining() -> f64 {
    host::budget_remaining()
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use stub::{budget_remaining, frequency, kv_get, log, request_time_us};

/// The native stand-in for the host, for unit tests.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod stub {
    use std::cell::{Cell, RefCell};

    use std::collections::HashMap;

    /// (table, key) -> value.
    type Tables = HashMap<(String, Vec<u8>), Vec<u8>>;

    thread_local! {
        static LOG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
        static REQUEST_TIME_US: Cell<i64> = const { Cell::new(0) };
        static TABLES: RefCell<Tables> = RefCell::new(HashMap::new());
        static FREQUENCY: RefCell<HashMap<String, i32>> = RefCell::new(HashMap::new());
        static BUDGET_REMAINING: Cell<f64> = const { Cell::new(-1.0) };
    }

    pub(crate) fn kv_get(table: &str, key: &[u8], out: &mut [u8]) -> i32 {
        TABLES.with_borrow(
            |tables| match tables.get(&(table.to_owned(), key.to_vec())) {
                None => -1,
                Some(value) => {
                    let copied = value.len().min(out.len());
                    out[..copied].copy_from_slice(&value[..copied]);
                    i32::try_from(value.len()).unwrap_or(i32::MAX)
                }
            },
        )
    }

    pub(crate) fn frequency(crid: &str, window_s: i32) -> i32 {
        if window_s <= 0 {
            return 0;
        }
        FREQUENCY.with_borrow(|counts| {
            if crid.is_empty() {
                counts.values().sum()
            } else {
                counts.get(crid).copied().unwrap_or(0)
            }
        })
    }

    pub(crate) fn budget_remaining() -> f64 {
        BUDGET_REMAINING.get()
    }

    pub(crate) fn set_table_entry(table: &str, key: &[u8], value: &[u8]) {
        TABLES.with_borrow_mut(|tables| {
            tables.insert((table.to_owned(), key.to_vec()), value.to_vec());
        });
    }

    pub(crate) fn clear_tables() {
        TABLES.with_borrow_mut(HashMap::clear);
    }

    pub(crate) fn set_frequency(crid: &str, count: i32) {
        FREQUENCY.with_borrow_mut(|counts| {
            counts.insert(crid.to_owned(), count);
        });
    }

    pub(crate) fn set_budget_remaining(remaining: f64) {
        BUDGET_REMAINING.set(remaining);
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
