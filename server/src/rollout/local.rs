//! `gavel strategy run`: one module on one request, with the server's own
//! host, limits and checks, and no server.
//!
//! The module is validated and compiled as an upload is (size, structure,
//! imports, exports), instantiated under the init budget and called once
//! under the given settings; its answer goes through the host's checks
//! against the request. The report says what the server would have done
//! with it: the bids that pass, the no-bid reason, the bids dropped and why,
//! the fuel and wall time of the call, and the strategy's log lines.
//!
//! Locally every capability the module imports is granted (the report
//! names them: the operator must grant them on a server); `--table
//! NAME=FILE` loads data tables with the server's default limits; there are
//! no frequency counts (0) and no budget (`budget_remaining` is -1).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gavel_schemas::verify;
use serde::Serialize;

use super::compare::Answered;
use crate::kv::{Table, TableLimits, Tables};
use crate::runtime::RequestIndex;
use crate::runtime::answer::BidRejection;
use crate::runtime::breaker::BreakerConfig;
use crate::runtime::share::FairnessConfig;
use crate::runtime::{
    Access, CallContext, CallTime, LogCapture, NoBidReason, Outcome, Runtime, RuntimeConfig,
    StrategySettings, TenantSlot, TenantStats,
};

/// The tenant id a local run bids as (the seat of its bids).
pub const LOCAL_TENANT: &str = "local";

/// What to run.
#[derive(Clone, Debug)]
pub struct LocalRun {
    pub wasm: Vec<u8>,
    /// An OpenRTB 2.6 JSON request or a `BidRequest` flatbuffer.
    pub request: Vec<u8>,
    pub settings: StrategySettings,
    /// `(name, JSON lines)` per table.
    pub tables: Vec<(String, Vec<u8>)>,
    /// The bidder's currency.
    pub currency: String,
}

/// Why a local run could not call the strategy at all.
#[derive(Debug, thiserror::Error)]
pub enum LocalRunError {
    #[error("the request is not a valid OpenRTB 2.6 JSON or flatbuffer request: {0}")]
    Request(String),
    #[error("table {name}: {reason}")]
    Table { name: String, reason: String },
    #[error("the module would be refused at upload: {0}")]
    Rejected(String),
    #[error("starting the WebAssembly engine: {0}")]
    Engine(String),
}

/// What the run came to.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The bids that passed the host's checks, as OpenRTB `Bid` objects.
    pub bids: Vec<serde_json::Value>,
    /// Why there is no bid, when there is none.
    pub no_bid: Option<&'static str>,
    /// Bids the host dropped, by reason.
    pub rejected_bids: Vec<(&'static str, u64)>,
    pub fuel_used: u64,
    /// Wall time of the call, instantiation and init included.
    pub wall_us: u64,
    /// Time to validate and compile the module.
    pub compile_ms: u64,
    /// The strategy's log lines.
    pub log: Vec<String>,
    /// Capabilities its imports need: a server's operator must grant them.
    pub capabilities: Vec<&'static str>,
}

/// The request as a verified flatbuffer: JSON when it starts with `{`.
pub fn request_flatbuffer(bytes: &[u8]) -> Result<Vec<u8>, LocalRunError> {
    let request_error = |e: String| LocalRunError::Request(e);
    if bytes.trim_ascii_start().first() == Some(&b'{') {
        let mut encoder = gavel_schemas::json::Encoder::new();
        let verified = encoder
            .bid_request_checked(bytes)
            .map_err(|e| request_error(e.to_string()))?;
        Ok(verified.bytes().to_vec())
    } else {
        verify::bid_request_checked(bytes).map_err(|e| request_error(e.to_string()))?;
        Ok(bytes.to_vec())
    }
}

/// A compiled module with its tables, ready to make slots on any thread:
/// what a local run and a what-if share.
pub struct Harness {
    pub runtime: Arc<Runtime>,
    pub strategy: Arc<crate::runtime::Strategy>,
    access: Arc<Access>,
    pub currency: String,
    /// Time to validate and compile the module.
    pub compile_ms: u64,
}

/// Starts an engine for `instances` instances at once.
pub fn engine(instances: u32) -> Result<Arc<Runtime>, LocalRunError> {
    Runtime::new(RuntimeConfig {
        // Each slot may hold an instance and, while rebuilding, a second.
        instances_max: instances.max(1) * 2,
        ..RuntimeConfig::default()
    })
    .map(Arc::new)
    .map_err(|e| LocalRunError::Engine(format!("{e:#}")))
}

/// Loads `(name, JSON lines)` tables with the server's default limits.
pub fn load_tables(tables: &[(String, Vec<u8>)]) -> Result<Tables, LocalRunError> {
    let limits = TableLimits::default();
    let mut loaded = Tables::default();
    for (name, body) in tables {
        let (entries, bytes) = loaded.usage_except(name);
        let table = Table::parse(name, body, &limits, entries, bytes).map_err(|e| {
            LocalRunError::Table {
                name: name.clone(),
                reason: e.to_string(),
            }
        })?;
        loaded = loaded.with(Arc::new(table));
    }
    Ok(loaded)
}

impl Harness {
    /// Validates and compiles `wasm` as an upload is, granting it every
    /// capability it imports.
    pub fn new(
        runtime: Arc<Runtime>,
        wasm: &[u8],
        settings: StrategySettings,
        tables: Arc<Tables>,
        currency: &str,
    ) -> Result<Self, LocalRunError> {
        let started = Instant::now();
        let strategy = runtime
            .compile(LOCAL_TENANT, 1, wasm, settings)
            .map_err(|e| LocalRunError::Rejected(e.to_string()))?;
        let compile_ms = started.elapsed().as_millis() as u64;
        let none = Access::none(LOCAL_TENANT);
        let access = Arc::new(Access {
            granted: strategy.capabilities,
            tables,
            account: none.account.clone(),
            frequency: None,
            clock: none.clock,
            events: None,
            log: none.log.clone(),
        });
        Ok(Self {
            runtime,
            strategy,
            access,
            currency: currency.to_string(),
            compile_ms,
        })
    }

    /// A slot of its own (one per thread), with its counters.
    pub fn slot(&self) -> (TenantSlot, Arc<TenantStats>) {
        let stats = Arc::new(TenantStats::default());
        let slot = TenantSlot::new(
            self.strategy.clone(),
            self.access.clone(),
            BreakerConfig {
                // Every request is tried: a what-if compares them all.
                failures_max: u32::MAX,
                ..BreakerConfig::default()
            },
            &FairnessConfig::default(),
            stats.clone(),
        );
        (slot, stats)
    }

    /// Calls `slot` on a verified request flatbuffer, alone on its core,
    /// within the call's own deadline plus the init budget (the request's
    /// `tmax` does not apply off the server).
    /// The outcome; the slot holds the checked answer until its next call.
    pub fn call(&self, slot: &mut TenantSlot, request: &[u8]) -> Result<Outcome, LocalRunError> {
        let view =
            verify::bid_request(request).map_err(|e| LocalRunError::Request(e.to_string()))?;
        let index = RequestIndex::of(&view);
        let ctx = CallContext {
            request: view,
            index: &index,
            bytes: request,
            currency: &self.currency,
            arrival_unix_us: crate::money::unix_us() as i64,
            user_key: crate::money::frequency::user_key(&view),
        };
        let time = CallTime {
            now: Instant::now(),
            time: Duration::from_micros(
                self.strategy.settings.deadline_us + self.runtime.config().caps.init_deadline_us,
            ),
            shared: false,
        };
        Ok(slot.call(&self.runtime, &ctx, time))
    }
}

/// Runs the module once on the request.
pub fn run(run: &LocalRun) -> Result<Report, LocalRunError> {
    let request = request_flatbuffer(&run.request)?;
    let tables = Arc::new(load_tables(&run.tables)?);
    let harness = Harness::new(
        engine(1)?,
        &run.wasm,
        run.settings.clone(),
        tables,
        &run.currency,
    )?;
    let (mut slot, stats) = harness.slot();
    let log = LogCapture::default();
    slot.capture_log(log.clone());
    let outcome = harness.call(&mut slot, &request)?;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let rejected_bids = BidRejection::ALL
        .into_iter()
        .map(|why| (why.as_str(), load(&stats.rejected_bids[why as usize])))
        .filter(|(_, n)| *n > 0)
        .collect();
    Ok(Report {
        bids: Answered::new(&slot, outcome).bids_json(),
        no_bid: match outcome {
            Outcome::Bids(_) => None,
            Outcome::NoBid(reason) => Some(reason.as_str()),
        },
        rejected_bids,
        fuel_used: slot.last_fuel(),
        wall_us: slot.last_wall().as_micros() as u64,
        compile_ms: harness.compile_ms,
        log: log.take(),
        capabilities: harness
            .strategy
            .capabilities
            .iter()
            .map(|c| c.as_str())
            .collect(),
    })
}

/// The report for people: the answer first, then the numbers and the log.
pub fn render(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    match report.no_bid {
        None => {
            let _ = writeln!(out, "bids ({}):", report.bids.len());
            for bid in &report.bids {
                let _ = writeln!(out, "  {bid}");
            }
        }
        Some(reason) => {
            let _ = writeln!(out, "no bid: {reason}");
        }
    }
    for (why, n) in &report.rejected_bids {
        let _ = writeln!(out, "dropped by the host's checks: {n} ({why})");
    }
    let _ = writeln!(
        out,
        "fuel used: {}  wall: {} us  compile: {} ms",
        report.fuel_used, report.wall_us, report.compile_ms
    );
    if !report.capabilities.is_empty() {
        let _ = writeln!(
            out,
            "capabilities (granted locally; a server's operator must grant them): {}",
            report.capabilities.join(", ")
        );
    }
    let _ = writeln!(out, "log ({} lines):", report.log.len());
    for line in &report.log {
        let _ = writeln!(out, "  {line}");
    }
    out
}

/// Reads `path`, or standard input for `-`.
pub fn read_input(path: &PathBuf) -> std::io::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)?;
        Ok(bytes)
    } else {
        std::fs::read(path)
    }
}

/// Whether the strategy failed (a trap, fuel, time, memory, a broken
/// answer), as opposed to answering with bids or a no-bid of its own.
pub fn failed(report: &Report) -> bool {
    report.no_bid.is_some_and(|reason| {
        reason != NoBidReason::NoBid.as_str() && reason != NoBidReason::InvalidBids.as_str()
    })
}
