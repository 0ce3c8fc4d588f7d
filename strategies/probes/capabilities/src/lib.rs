//! Test strategy: reports what the capability imports return, in the
//! fields of its bid, so that tests can read them from the response.
//!
//! It bids 1.00 on the first impression, creative `probe`, and reads its
//! parameters from that impression's `tagid`, `"<buffer bytes>,<window s>"`
//! (default `"64,3600"`):
//!
//! - `cid`: `kv_get("probe", <user id>)` with a buffer of that many bytes:
//!   `"<full length>:<bytes copied>"`, or `"-1"` when absent;
//! - `adid`: `frequency` over the window, `"<any creative>/<creative probe>"`;
//! - `adm`: `budget_remaining()`, `"none"` without a budget.
//!
//! It needs every grant: `kv`, `frequency`, `budget`.

#![forbid(unsafe_code)]

use std::fmt::Write as _;

use gavel_sdk::{Bid, BidRequest, Bids, Strategy, budget_remaining, frequency, kv_get};

/// Reports its capabilities' answers.
#[derive(Default)]
pub struct Probe {
    buf: Vec<u8>,
    cid: String,
    adid: String,
    adm: String,
}

impl Strategy for Probe {
    fn bid(&mut self, request: BidRequest<'_>, bids: &mut Bids) {
        let Some(imp) = request.imp().iter().next() else {
            return;
        };
        let mut params = imp.tagid().unwrap_or("64,3600").split(',');
        let cap: usize = params.next().and_then(|p| p.parse().ok()).unwrap_or(64);
        let window: u32 = params.next().and_then(|p| p.parse().ok()).unwrap_or(3600);
        let user = request.user().and_then(|u| u.id()).unwrap_or("");

        self.buf.clear();
        self.buf.resize(cap.min(1 << 16), 0);
        self.cid.clear();
        match kv_get("probe", user.as_bytes(), &mut self.buf) {
            Some(value) => {
                let _ = write!(
                    self.cid,
                    "{}:{}",
                    value.full_len(),
                    String::from_utf8_lossy(value.bytes())
                );
            }
            None => self.cid.push_str("-1"),
        }
        self.adid.clear();
        let _ = write!(
            self.adid,
            "{}/{}",
            frequency("", window),
            frequency("probe", window)
        );
        self.adm.clear();
        match budget_remaining() {
            Some(remaining) => {
                let _ = write!(self.adm, "{remaining:.6}");
            }
            None => self.adm.push_str("none"),
        }
        bids.push(
            Bid::new(imp.id(), 1.00)
                .crid("probe")
                .cid(&self.cid)
                .adid(&self.adid)
                .adm(&self.adm),
        );
    }
}

gavel_sdk::export_strategy!(Probe);
