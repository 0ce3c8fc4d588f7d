//! The WebAssembly host: module validation, example strategies, and
//! containment of hostile ones.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gavel::runtime::breaker::BreakerConfig;
use gavel::runtime::share::FairnessConfig;
use gavel::runtime::{
    Access, CallContext, CallTime, Isolation, NoBidReason, Outcome, RejectReason, RequestIndex,
    StrategySettings, TenantSlot, TenantStats,
};
use gavel_schemas::verify;

use crate::support::{example_json, flatbuffer, runtime, unhurried, wat};

fn slot(tenant: &str, wasm: &[u8], settings: StrategySettings) -> TenantSlot {
    let strategy = runtime()
        .compile(tenant, 1, wasm, settings)
        .unwrap_or_else(|e| panic!("{tenant}: {e}"));
    // Containment is under test here, not fairness: each slot is called
    // as if alone on its core.
    TenantSlot::new(
        strategy,
        Access::none(tenant),
        BreakerConfig::default(),
        &FairnessConfig::default(),
        Arc::new(TenantStats::default()),
    )
}

fn example(name: &str) -> &'static [u8] {
    gavel_strategies::example(name).unwrap_or_else(|| panic!("no example strategy {name}"))
}

fn hostile(name: &str) -> &'static [u8] {
    gavel_strategies::hostile(name).unwrap_or_else(|| panic!("no hostile strategy {name}"))
}

fn now_unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Calls `slot` on `request` (a flatbuffer) with `budget` for the whole
/// request; returns the outcome and how long the call took.
fn call(slot: &mut TenantSlot, request: &[u8], budget: Duration) -> (Outcome, Duration) {
    let view = verify::bid_request(request).expect("valid request");
    let started = Instant::now();
    let index = RequestIndex::of(&view);
    let ctx = CallContext {
        request: view,
        index: &index,
        bytes: request,
        currency: "USD",
        arrival_unix_us: now_unix_us(),
        user_key: 0,
    };
    let time = CallTime {
        now: started,
        time: budget,
        shared: false,
    };
    let outcome = slot.call(&runtime(), &ctx, time);
    (outcome, started.elapsed())
}

const MINIMAL_WAT: &str = r#"
    (module
      (memory (export "memory") 1)
      (func (export "gavel_v1_input") (param i32) (result i32) i32.const 1024)
      (func (export "gavel_v1_bid") (param i32) (result i64) i64.const 0))"#;

fn reject(wasm: &[u8]) -> RejectReason {
    match runtime().compile("t", 1, wasm, StrategySettings::default()) {
        Ok(_) => panic!("module accepted"),
        Err(reason) => reason,
    }
}

mod validation {
    use super::*;

    #[test]
    fn a_minimal_abi_module_compiles_and_declines() {
        let mut slot = slot("minimal", &wat(MINIMAL_WAT), unhurried());
        let request = flatbuffer(&example_json("simple-banner"));
        assert_eq!(
            call(&mut slot, &request, Duration::from_millis(100)).0,
            Outcome::NoBid(NoBidReason::NoBid)
        );
    }

    #[test]
    fn wasi_and_unknown_imports_are_rejected() {
        let wasi = MINIMAL_WAT.replace(
            "(module",
            r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
        );
        let err = reject(&wat(&wasi));
        assert!(matches!(err, RejectReason::Imports(_)), "{err}");
        assert!(
            err.to_string().contains("wasi_snapshot_preview1::fd_write"),
            "{err}"
        );

        let unknown =
            MINIMAL_WAT.replace("(module", r#"(module (import "gavel_v1" "exit" (func))"#);
        let err = reject(&wat(&unknown));
        assert!(
            err.to_string()
                .contains("`gavel_v1::exit` is not part of ABI v1"),
            "{err}"
        );

        let wrong_type = MINIMAL_WAT.replace(
            "(module",
            r#"(module (import "gavel_v1" "log" (func (param i64)))"#,
        );
        let err = reject(&wat(&wrong_type));
        assert!(
            err.to_string()
                .contains("`log` has type (i64) -> (), expected (i32, i32) -> ()"),
            "{err}"
        );

        let imported_memory = r#"(module (import "gavel_v1" "memory" (memory 1)))"#;
        assert!(matches!(
            reject(&wat(imported_memory)),
            RejectReason::Imports(_)
        ));
    }

    #[test]
    fn missing_or_mistyped_exports_are_rejected() {
        let no_bid = r#"(module (memory (export "memory") 1)
            (func (export "gavel_v1_input") (param i32) (result i32) i32.const 0))"#;
        let err = reject(&wat(no_bid));
        assert_eq!(
            err.to_string(),
            "exports: missing required export `gavel_v1_bid`"
        );

        let no_memory = r#"(module (memory 1)
            (func (export "gavel_v1_input") (param i32) (result i32) i32.const 0)
            (func (export "gavel_v1_bid") (param i32) (result i64) i64.const 0))"#;
        assert_eq!(
            reject(&wat(no_memory)).to_string(),
            "exports: missing required export `memory`"
        );

        let wrong = MINIMAL_WAT.replace(
            "(param i32) (result i64) i64.const 0",
            "(param i32) (result i32) i32.const 0",
        );
        let err = reject(&wat(&wrong));
        assert!(
            err.to_string()
                .contains("`gavel_v1_bid` has type (i32) -> (i32), expected (i32) -> (i64)"),
            "{err}"
        );
    }

    #[test]
    fn oversized_modules_and_memories_are_rejected() {
        let runtime = runtime();
        let caps = &runtime.config().caps;
        let big = format!(
            r#"(module (memory (export "memory") 100)
                (data (i32.const 0) "{}")
                (func (export "gavel_v1_input") (param i32) (result i32) i32.const 0)
                (func (export "gavel_v1_bid") (param i32) (result i64) i64.const 0))"#,
            "x".repeat(caps.module_bytes_max)
        );
        let err = reject(&wat(&big));
        assert!(matches!(err, RejectReason::TooLarge { .. }), "{err}");

        let huge_memory = MINIMAL_WAT.replace(
            "(memory (export \"memory\") 1)",
            "(memory (export \"memory\") 1000)",
        );
        let err = reject(&wat(&huge_memory));
        assert!(
            err.to_string()
                .starts_with("memory: declares 65536000 bytes initially"),
            "{err}"
        );
    }

    #[test]
    fn garbage_and_disabled_features_are_rejected() {
        assert!(matches!(
            reject(b"not wasm at all"),
            RejectReason::Compile(_)
        ));
        assert!(matches!(
            reject(&[0, b'a', b's', b'm', 1, 0, 0, 0, 0xff]),
            RejectReason::Compile(_)
        ));
        let shared = MINIMAL_WAT.replace(
            "(memory (export \"memory\") 1)",
            "(memory (export \"memory\") 1 1 shared)",
        );
        assert!(
            matches!(reject(&wat(&shared)), RejectReason::Compile(_)),
            "threads are off"
        );
    }

    #[test]
    fn settings_over_the_caps_are_rejected() {
        let caps = runtime().config().caps.clone();
        let settings = StrategySettings {
            fuel_per_call: caps.fuel_per_call_max + 1,
            ..unhurried()
        };
        let err = runtime()
            .compile("t", 1, &wat(MINIMAL_WAT), settings)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("settings: fuel_per_call must be between 1 and"),
            "{err}"
        );
    }
}

mod containment {
    use super::*;

    /// Budget for the whole request in these tests; generous so that only
    /// the strategy's own deadline matters.
    const REQUEST_BUDGET: Duration = Duration::from_millis(500);
    /// How far past its deadline a contained call may end: the epoch tick
    /// plus scheduling noise on a busy 2-core machine.
    const SLACK: Duration = Duration::from_millis(250);

    fn banner_request() -> Vec<u8> {
        flatbuffer(&example_json("simple-banner"))
    }

    /// A well-behaved tenant that must keep bidding after each hostile call.
    fn assert_neighbour_still_bids(neighbour: &mut TenantSlot, request: &[u8]) {
        let (outcome, _) = call(neighbour, request, REQUEST_BUDGET);
        assert_eq!(
            outcome,
            Outcome::Bids(1),
            "the neighbour's bid after a hostile call"
        );
    }

    fn contained(name: &str, settings: StrategySettings, request: &[u8], expected: NoBidReason) {
        let deadline = Duration::from_micros(settings.deadline_us);
        let mut neighbour = slot("neighbour", example("fixed-cpm"), unhurried());
        let mut hostile_slot = slot(name, hostile(name), settings);
        for round in 0..2 {
            let (outcome, took) = call(&mut hostile_slot, request, REQUEST_BUDGET);
            assert_eq!(outcome, Outcome::NoBid(expected), "{name}, round {round}");
            assert!(
                took <= deadline + SLACK,
                "{name} took {took:?}, deadline {deadline:?}"
            );
            assert_neighbour_still_bids(&mut neighbour, request);
        }
        let stats = hostile_slot.stats();
        assert_eq!(stats.calls.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert_eq!(
            stats.no_bids[expected as usize].load(std::sync::atomic::Ordering::Relaxed),
            2
        );
    }

    #[test]
    fn infinite_loop_hits_the_deadline() {
        let settings = StrategySettings {
            fuel_per_call: 100_000_000,
            deadline_us: 20_000,
            ..Default::default()
        };
        contained(
            "infinite-loop",
            settings,
            &banner_request(),
            NoBidReason::Deadline,
        );
    }

    #[test]
    fn infinite_loop_runs_out_of_fuel() {
        let settings = StrategySettings {
            fuel_per_call: 100_000,
            deadline_us: 50_000,
            ..Default::default()
        };
        contained(
            "infinite-loop",
            settings,
            &banner_request(),
            NoBidReason::OutOfFuel,
        );
    }

    #[test]
    fn stack_overflow_is_a_trap() {
        let settings = StrategySettings {
            fuel_per_call: 100_000_000,
            deadline_us: 50_000,
            ..Default::default()
        };
        contained(
            "deep-recursion",
            settings,
            &banner_request(),
            NoBidReason::Trap,
        );
    }

    #[test]
    fn memory_bomb_is_stopped_at_the_cap() {
        let settings = StrategySettings {
            fuel_per_call: 100_000_000,
            deadline_us: 50_000,
            memory_bytes_max: 4 << 20,
            ..Default::default()
        };
        contained(
            "memory-bomb",
            settings,
            &banner_request(),
            NoBidReason::Memory,
        );
    }

    #[test]
    fn panic_is_a_trap() {
        contained("panic", unhurried(), &banner_request(), NoBidReason::Trap);
    }

    #[test]
    fn unreadable_output_is_bad_output() {
        for name in ["bad-output", "huge-output", "out-of-range"] {
            contained(name, unhurried(), &banner_request(), NoBidReason::BadOutput);
        }
    }

    #[test]
    fn init_that_never_returns_fails_within_the_init_budget() {
        // Instantiation runs under the init budget (20 ms by default).
        let init_deadline = Duration::from_micros(runtime().config().caps.init_deadline_us);
        let settings = StrategySettings {
            deadline_us: init_deadline.as_micros() as u64,
            ..Default::default()
        };
        contained(
            "init-never-returns",
            settings,
            &banner_request(),
            NoBidReason::InitFailed,
        );
    }

    #[test]
    fn start_function_that_never_returns_fails_instantiation() {
        let looping_start = MINIMAL_WAT.replace(
            "(module",
            "(module (func $spin (loop $l (br $l))) (start $spin)",
        );
        let mut slot = slot("spin", &wat(&looping_start), unhurried());
        let (outcome, took) = call(&mut slot, &banner_request(), REQUEST_BUDGET);
        assert_eq!(outcome, Outcome::NoBid(NoBidReason::InitFailed));
        let init_deadline = Duration::from_micros(runtime().config().caps.init_deadline_us);
        assert!(took <= init_deadline + SLACK, "took {took:?}");
    }

    #[test]
    fn bad_input_pointer_is_a_guest_error() {
        let bad_pointer = MINIMAL_WAT.replace("i32.const 1024", "i32.const -16");
        let mut pointed = slot("bad-pointer", &wat(&bad_pointer), unhurried());
        let (outcome, _) = call(&mut pointed, &banner_request(), REQUEST_BUDGET);
        assert_eq!(outcome, Outcome::NoBid(NoBidReason::GuestError));
        let error_code = MINIMAL_WAT.replace("i64.const 0", "i64.const -2");
        let mut coded = slot("error-code", &wat(&error_code), unhurried());
        assert_eq!(
            call(&mut coded, &banner_request(), REQUEST_BUDGET).0,
            Outcome::NoBid(NoBidReason::GuestError)
        );
    }

    #[test]
    fn hostile_prices_are_dropped_and_counted() {
        use gavel::runtime::answer::BidRejection;
        let tags = ["nan", "inf", "neg", "zero", "absurd"];
        let imps: Vec<String> = tags
            .iter()
            .enumerate()
            .map(|(i, tag)| {
                format!(r#"{{"id":"{i}","tagid":"{tag}","banner":{{"w":300,"h":250}}}}"#)
            })
            .collect();
        let request =
            flatbuffer(format!(r#"{{"id":"prices","imp":[{}]}}"#, imps.join(",")).as_bytes());
        let mut slot = slot("bad-prices", hostile("bad-prices"), unhurried());
        let (outcome, _) = call(&mut slot, &request, REQUEST_BUDGET);
        assert_eq!(outcome, Outcome::NoBid(NoBidReason::InvalidBids));
        let rejected = slot.stats().rejected_bids[BidRejection::BadPrice as usize]
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(rejected, tags.len() as u64);
    }

    #[test]
    fn unknown_impression_ids_are_dropped() {
        use gavel::runtime::answer::BidRejection;
        let mut slot = slot("unknown-imp", hostile("unknown-imp"), unhurried());
        let (outcome, _) = call(&mut slot, &banner_request(), REQUEST_BUDGET);
        assert_eq!(outcome, Outcome::NoBid(NoBidReason::InvalidBids));
        let rejected = slot.stats().rejected_bids[BidRejection::UnknownImp as usize]
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(rejected, 1);
    }

    #[test]
    fn a_trapped_instance_is_rebuilt_and_the_breaker_opens() {
        let mut slot = slot("panic", hostile("panic"), unhurried());
        let request = banner_request();
        let failures_max = BreakerConfig::default().failures_max;
        for _ in 0..failures_max {
            assert_eq!(
                call(&mut slot, &request, REQUEST_BUDGET).0,
                Outcome::NoBid(NoBidReason::Trap)
            );
        }
        let instantiations = slot
            .stats()
            .instantiations
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            instantiations,
            u64::from(failures_max),
            "one fresh instance per trapped call"
        );
        let (outcome, took) = call(&mut slot, &request, REQUEST_BUDGET);
        assert_eq!(outcome, Outcome::NoBid(NoBidReason::CircuitOpen));
        assert!(
            took < Duration::from_millis(50),
            "an open breaker skips the call"
        );
        assert!(slot.is_tripped(Instant::now()));
    }

    #[test]
    fn per_request_isolation_instantiates_every_call() {
        let settings = StrategySettings {
            isolation: Isolation::PerRequest,
            ..unhurried()
        };
        let mut slot = slot("fixed", example("fixed-cpm"), settings);
        let request = banner_request();
        for _ in 0..3 {
            assert_eq!(
                call(&mut slot, &request, REQUEST_BUDGET).0,
                Outcome::Bids(1)
            );
        }
        assert_eq!(
            slot.stats()
                .instantiations
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
        let mut persistent = super::slot("fixed", example("fixed-cpm"), unhurried());
        for _ in 0..3 {
            assert_eq!(
                call(&mut persistent, &request, REQUEST_BUDGET).0,
                Outcome::Bids(1)
            );
        }
        assert_eq!(
            persistent
                .stats()
                .instantiations
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }
}
