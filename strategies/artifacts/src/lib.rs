//! The example and hostile strategies, compiled to WebAssembly, for the
//! server and its tests.
//!
//! This crate's build script builds every crate under `strategies/examples/`
//! (package `strategy-<name>`), `strategies/hostile/` (package
//! `hostile-<name>`) and `strategies/probes/` (package `probe-<name>`) with
//! one nested
//! `cargo build --release --target wasm32-unknown-unknown`, into
//! `target/strategies/`, installing the wasm target with rustup if it is
//! missing. The modules are embedded here with `include_bytes!`, so a test
//! needs no paths and no files at run time:
//!
//! ```
//! let wasm = gavel_strategies::example("fixed-cpm").expect("an example strategy");
//! assert_eq!(&wasm[..4], b"\0asm");
//! ```
//!
//! The build reruns when the SDK, a strategy, the schemas or the workspace
//! manifest or lock change. Adding a strategy is adding its folder: the build
//! script lists the folders and names each artifact after its folder.
//!
//! The AssemblyScript strategies (`strategies/assemblyscript/assembly/
//! examples/`) are built too, by that npm package's own build script with
//! the compiler its lockfile pins, when Node.js and npm are installed
//! ([`ASSEMBLYSCRIPT`], [`assemblyscript`]).
//!
//! Examples are the strategies documented in their crates; hostile strategies
//! are test-only modules that misbehave on purpose (loop, overflow the stack,
//! exhaust memory, panic, answer garbage) and must be contained by the host;
//! probes are test-only modules that report what the host gives them (the
//! capability imports' answers) in the fields of their bids.

/// One compiled strategy.
#[derive(Clone, Copy)]
pub struct Artifact {
    /// The strategy's folder name, such as `"fixed-cpm"`.
    pub name: &'static str,
    /// The WebAssembly module (release build).
    pub wasm: &'static [u8],
    /// The data tables it ships for its demo, `(name, JSON lines)`: the
    /// files `tables/<name>.jsonl` in its folder.
    pub tables: &'static [(&'static str, &'static [u8])],
}

impl std::fmt::Debug for Artifact {
    /// The module's size, not its bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifact")
            .field("name", &self.name)
            .field("wasm_bytes", &self.wasm.len())
            .field("tables", &self.tables.len())
            .finish()
    }
}

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// The module of the example strategy `name` (such as `"fixed-cpm"`).
pub fn example(name: &str) -> Option<&'static [u8]> {
    find(EXAMPLES, name)
}

/// The module of the hostile strategy `name` (such as `"infinite-loop"`).
pub fn hostile(name: &str) -> Option<&'static [u8]> {
    find(HOSTILE, name)
}

/// The module of the AssemblyScript strategy `name` (such as
/// `"fixed-cpm"`); `None` as well when Node.js was missing at build time
/// ([`ASSEMBLYSCRIPT`] is then empty).
pub fn assemblyscript(name: &str) -> Option<&'static [u8]> {
    find(ASSEMBLYSCRIPT, name)
}

/// The module of the probe strategy `name` (such as `"capabilities"`).
pub fn probe(name: &str) -> Option<&'static [u8]> {
    find(PROBES, name)
}

fn find(artifacts: &[Artifact], name: &str) -> Option<&'static [u8]> {
    artifacts
        .iter()
        .find(|artifact| artifact.name == name)
        .map(|artifact| artifact.wasm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_strategy_is_a_wasm_module() {
        assert!(!EXAMPLES.is_empty() && !HOSTILE.is_empty());
        for artifact in EXAMPLES.iter().chain(HOSTILE).chain(ASSEMBLYSCRIPT) {
            assert_eq!(&artifact.wasm[..8], b"\0asm\x01\0\0\0", "{}", artifact.name);
        }
    }

    #[test]
    fn artifacts_are_found_by_folder_name() {
        assert!(example("fixed-cpm").is_some());
        assert!(hostile("infinite-loop").is_some());
        assert!(example("infinite-loop").is_none());
        assert!(hostile("no-such-strategy").is_none());
    }
}
