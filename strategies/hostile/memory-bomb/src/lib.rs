//! Test-only hostile strategy: must be contained by the host.
//!
//! `bid` allocates 1 MiB blocks, fills them and keeps them all, forever. Each
//! allocation grows linear memory until `memory.grow` hits the host's cap and
//! fails; Rust's allocator then aborts, which traps. The host must end the
//! call, answer without this tenant, and rebuild the instance (freeing the
//! memory). `gavel_v1_init` returns normally.

#![forbid(unsafe_code)]

use gavel_sdk::{BidRequest, Bids, Strategy};

/// Size of each block kept.
const BLOCK_BYTES: usize = 1 << 20;

/// Hoards memory in `bid` until the instance dies.
#[derive(Default)]
pub struct MemoryBomb {
    /// Kept in the instance so that nothing allocated can be freed or
    /// optimized away.
    hoard: Vec<Vec<u8>>,
}

impl Strategy for MemoryBomb {
    fn bid(&mut self, _: BidRequest<'_>, _: &mut Bids) {
        loop {
            self.hoard.push(vec![0xa5; BLOCK_BYTES]);
        }
    }
}

gavel_sdk::export_strategy!(MemoryBomb);
