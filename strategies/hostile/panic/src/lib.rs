//! Test-only hostile strategy: must be contained by the host.
//!
//! `bid` panics. Strategies are built with `panic = "abort"` (and wasm32
//! cannot unwind), so the panic traps. The host must end the call, answer
//! without this tenant, and rebuild the instance. `gavel_v1_init` returns
//! normally.

#![forbid(unsafe_code)]

use gavel_sdk::{BidRequest, Bids, Strategy};

/// Panics in `bid`.
#[derive(Default)]
pub struct Panic;

impl Strategy for Panic {
    fn bid(&mut self, request: BidRequest<'_>, _: &mut Bids) {
        panic!("hostile strategy panics on request {}", request.id());
    }
}

gavel_sdk::export_strategy!(Panic);

#[cfg(test)]
mod tests {
    use gavel_schemas::json::Encoder;
    use gavel_sdk::testing::Host;

    use super::Panic;

    #[test]
    #[should_panic(expected = "hostile strategy panics on request r-1")]
    fn bid_panics() {
        let mut encoder = Encoder::new();
        let request = encoder
            .bid_request(br#"{"id": "r-1", "imp": [{"id": "1"}]}"#)
            .expect("test request is valid OpenRTB");
        let _ = Host::<Panic>::new().expect("no init hook").bid(request);
    }
}
