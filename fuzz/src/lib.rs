//! Coverage-guided fuzzing for Gavel's decoders: the oracles the targets
//! assert and the generators of their seed corpora.
//!
//! # Layout
//!
//! Every decoder that reads bytes from outside (an exchange's JSON or
//! flatbuffer request, a tenant strategy's answer, a capture file) has one
//! target in `fuzz_targets/`. A target is one line: it hands libFuzzer's
//! bytes to a function of [`oracle`], which runs the decoder and panics when
//! the result breaks a property the decoder promises. libFuzzer turns the
//! panic into a crash and saves the input under `artifacts/TARGET/`.
//! Everything else is ordinary library code, so the oracles can be reused by
//! tests, and [`seed`] (run by `run.sh seed`) checks that every seed it
//! writes takes the decoder's accepting path.
//!
//! # Build
//!
//! No nightly: `run.sh build` compiles with stable rustc and the
//! SanitizerCoverage LLVM pass switched on by `-Cpasses=sancov-module` and
//! `-Cllvm-args` (the flags `cargo fuzz build --sanitizer none` passes), and
//! `libfuzzer-sys` compiles libFuzzer itself from C++. There is no
//! AddressSanitizer (it needs nightly); the decoders are safe Rust apart
//! from the generated flatbuffers accessors, whose soundness rests on the
//! verifier that every target runs first.
//!
//! # Cost
//!
//! [`meter::MeteredAlloc`] is this crate's global allocator: two relaxed
//! atomic operations per allocation buy the capture target an exact peak
//! of the heap it used, to check the reader's memory bound.

pub mod meter;
pub mod oracle;
pub mod seed;
pub mod server;
pub mod walk;

#[global_allocator]
static ALLOCATOR: meter::MeteredAlloc = meter::MeteredAlloc;
