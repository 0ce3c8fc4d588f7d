//! What a tenant's grants unlock: its data tables ([`kv_get`]), its wins per
//! user ([`frequency`]) and its remaining budget ([`budget_remaining`]).
//!
//! Each is a `gavel_v1` import that a module has only if it calls the
//! function: a strategy that never calls [`kv_get`] does not import it and
//! needs no grant. A module that imports one the operator has not granted
//! is refused at upload, with the import and the grant named. Every call is
//! bounded and charged fuel (a few dozen units plus one per 8 bytes read or
//! copied); none allocates.

use crate::abi;

/// A value found by [`kv_get`]: the bytes that fit in the buffer, and the
/// value's full length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Value<'b> {
    bytes: &'b [u8],
    full_len: usize,
}

impl<'b> Value<'b> {
    /// The bytes copied: the whole value, or its first `buf.len()` bytes.
    pub fn bytes(&self) -> &'b [u8] {
        self.bytes
    }

    /// The copied bytes as UTF-8, when they are (values uploaded as JSON
    /// strings always are, unless cut by a short buffer).
    pub fn as_str(&self) -> Option<&'b str> {
        std::str::from_utf8(self.bytes).ok()
    }

    /// The value's length in the table, which may exceed what was copied.
    pub fn full_len(&self) -> usize {
        self.full_len
    }

    /// Whether the buffer held the whole value.
    pub fn is_complete(&self) -> bool {
        self.bytes.len() == self.full_len
    }
}

/// Capability `kv`: the value stored under `key` in the tenant's table
/// `table`, copied into `buf` (as much as fits); `None` when the table or
/// the key does not exist. A buffer as long as the table's longest value
/// (the operator's `tables.value_bytes_max`, 4 KiB by default) never cuts.
///
/// ```
/// use gavel_sdk::kv_get;
///
/// gavel_sdk::testing::set_table_entry("segments", b"user-1", b"sports");
/// let mut buf = [0u8; 64];
/// let value = kv_get("segments", b"user-1", &mut buf).unwrap();
/// assert_eq!(value.as_str(), Some("sports"));
/// assert!(kv_get("segments", b"user-2", &mut buf).is_none());
/// ```
pub fn kv_get<'b>(table: &str, key: &[u8], buf: &'b mut [u8]) -> Option<Value<'b>> {
    let full_len = usize::try_from(abi::kv_get(table, key, buf)).ok()?;
    let copied = full_len.min(buf.len());
    Some(Value {
        bytes: &buf[..copied],
        full_len,
    })
}

/// Capability `frequency`: how many of this tenant's bids for the current
/// request's user (its `user.id`, else `user.buyeruid`, else `device.ifa`)
/// with creative id `crid` won in the last `window_s` seconds; an empty
/// `crid` counts every creative. 0 when the request names no user.
///
/// Counts come from the win notices the host settled; the host keeps a
/// handful of recent wins per user (8 by default) and forgets them on a
/// restart, so use it for caps such as "3 per hour", not for reporting.
pub fn frequency(crid: &str, window_s: u32) -> u32 {
    let window_s = i32::try_from(window_s).unwrap_or(i32::MAX);
    u32::try_from(abi::frequency(crid, window_s)).unwrap_or(0)
}

/// Capability `budget`: what the tenant has left to spend, in the bidder's
/// currency (the smaller of the total and today's budget, less spend and
/// money reserved by bids awaiting a notice); `None` without a budget.
pub fn budget_remaining() -> Option<f64> {
    let remaining = abi::budget_remaining();
    (remaining >= 0.0).then_some(remaining)
}
