//! The WebAssembly host: one engine per process, compiled strategies shared
//! by every core, and per-core tenant slots that call them under budget.
//!
//! # Lifetimes and costs
//!
//! | type | lives | cost |
//! | --- | --- | --- |
//! | [`Runtime`] | the process | one `Engine` (pooling allocator, copy-on-write memory images, fuel, epoch interruption) and one ticker thread advancing the epoch |
//! | [`Strategy`] | one uploaded version, shared by all cores (`Arc`) | validation and compilation (milliseconds to seconds): never on a serving core |
//! | [`TenantSlot`] | one tenant on one core | a persistent instance: instantiation from the pool is a few microseconds, rebuilt after any trap |
//! | [`TenantSlot::call`] | one request | copy the request in, set fuel and epoch deadline, call, verify and check the answer |
//!
//! A strategy is untrusted. Its imports are checked against ABI v1 and the
//! tenant's grants ([`validate`], [`capability`]), every call runs under fuel, a wall-clock
//! deadline (epoch ticks) and a memory cap, and its answer is verified and
//! checked against the request ([`answer`]) before it can reach the auction.
//! Any trap drops the instance; a tenant that keeps failing is skipped for a
//! cool-down by its per-core [`breaker::Breaker`].

pub mod answer;
pub mod breaker;
pub mod capability;
mod host;
pub mod share;
mod slot;
pub mod validate;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module, OptLevel,
    PoolingAllocationConfig,
};

pub use answer::{Answer, RequestIndex, ValidBid};
pub use capability::{Access, Capabilities, Capability};
pub use host::{BYTES_PER_FUEL, HOST_CALL_FUEL, HostState, LOG_CAPTURE_LINES_MAX, LogCapture};
pub use slot::{CallContext, CallTime, NoBidReason, Outcome, TenantSlot, TenantStats};
pub use validate::{ModuleLimits, RejectReason};

/// The largest memory a 32-bit wasm module can address.
const WASM32_MEMORY_BYTES_MAX: usize = 1 << 32;

/// Bytes of each freed memory slot kept resident (see
/// `PoolingAllocationConfig::linear_memory_keep_resident`). Measured
/// (`benches/RESULTS.md`): 128 KiB takes a fresh minimal instance from 5.2
/// to 1.9 us; 1 MiB costs more in memset than it saves in page faults.
const LINEAR_MEMORY_KEEP_RESIDENT_BYTES: usize = 128 << 10;

/// Bytes of each freed table slot kept resident.
const TABLE_KEEP_RESIDENT_BYTES: usize = 64 << 10;

/// How a tenant's instances live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// One instance per core kept across calls: state (e.g. pacing) survives
    /// between requests; the cheapest mode.
    #[default]
    Persistent,
    /// A fresh instance for every call: nothing leaks between requests, at
    /// the price of an instantiation (microseconds with the pooling
    /// allocator) per call.
    PerRequest,
}

/// A tenant's budgets for one strategy version, chosen at upload within the
/// operator's [`StrategyCaps`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StrategySettings {
    /// Fuel (about one unit per wasm instruction) for one `gavel_v1_bid`
    /// call, input buffer request included. Default 10 million: far more
    /// than a real strategy needs (thousands), small enough that a runaway
    /// loop ends in a few milliseconds.
    pub fuel_per_call: u64,
    /// Wall-clock budget for one call, in microseconds; also bounded by the
    /// time left before the request's own deadline. Default 5 ms.
    pub deadline_us: u64,
    /// Linear memory cap in bytes. Default 16 MiB.
    pub memory_bytes_max: u64,
    /// Persistent (default) or per-request instances.
    pub isolation: Isolation,
    /// Log bytes per second per core the tenant may write; excess is dropped
    /// and counted. Default 4 KiB.
    pub log_bytes_per_second: u32,
}

impl Default for StrategySettings {
    fn default() -> Self {
        Self {
            fuel_per_call: 10_000_000,
            deadline_us: 5_000,
            memory_bytes_max: 16 << 20,
            isolation: Isolation::Persistent,
            log_bytes_per_second: 4 << 10,
        }
    }
}

/// The operator's ceilings on what any tenant may ask for, and the budget
/// of one-time work (instantiation with `gavel_v1_init` or a start function).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StrategyCaps {
    /// Largest module accepted, in bytes. Default 4 MiB: Rust strategies are
    /// 50-500 KB; compile time grows with size.
    pub module_bytes_max: usize,
    /// Highest `fuel_per_call` a tenant may set. Default 100 million.
    pub fuel_per_call_max: u64,
    /// Highest `deadline_us` a tenant may set. Default 50 ms.
    pub deadline_us_max: u64,
    /// Highest `memory_bytes_max` a tenant may set. Default 64 MiB.
    pub memory_bytes_max: u64,
    /// Highest `log_bytes_per_second`. Default 64 KiB.
    pub log_bytes_per_second_max: u32,
    /// Fuel for instantiation plus `gavel_v1_init`. Default 100 million.
    pub init_fuel: u64,
    /// Wall-clock budget for instantiation plus `gavel_v1_init`, in
    /// microseconds. Default 20 ms.
    pub init_deadline_us: u64,
    /// Highest bid price (CPM) accepted from a strategy; anything above is
    /// treated as a broken strategy, not a bid. Default 1000.
    pub price_max: f64,
}

impl Default for StrategyCaps {
    fn default() -> Self {
        Self {
            module_bytes_max: 4 << 20,
            fuel_per_call_max: 100_000_000,
            deadline_us_max: 50_000,
            memory_bytes_max: 64 << 20,
            log_bytes_per_second_max: 64 << 10,
            init_fuel: 100_000_000,
            init_deadline_us: 20_000,
            price_max: 1_000.0,
        }
    }
}

impl StrategyCaps {
    /// Checks a tenant's settings against these caps.
    pub fn check(&self, s: &StrategySettings) -> Result<(), RejectReason> {
        let over = |what: &'static str, value: u64, max: u64| {
            if value > max || value == 0 {
                Err(RejectReason::Settings(format!(
                    "{what} must be between 1 and {max}, got {value}"
                )))
            } else {
                Ok(())
            }
        };
        over("fuel_per_call", s.fuel_per_call, self.fuel_per_call_max)?;
        over("deadline_us", s.deadline_us, self.deadline_us_max)?;
        over(
            "memory_bytes_max",
            s.memory_bytes_max,
            self.memory_bytes_max,
        )?;
        over(
            "log_bytes_per_second",
            u64::from(s.log_bytes_per_second),
            u64::from(self.log_bytes_per_second_max),
        )?;
        Ok(())
    }
}

/// How uploads and stored modules are compiled: in a child process with
/// its own time and memory limits, a bounded number at a time, never on a
/// serving core. The structural [`ModuleLimits`] refuse the known
/// compile bombs in microseconds; the child's limits bound whatever shape
/// is left, and its exit returns every byte the compiler took.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompileConfig {
    /// Compiles running at once. Default 1: compiling is CPU-bound and
    /// shares the machine with the serving cores.
    pub workers: usize,
    /// Compiles waiting for a worker; more get 503 at once. Default 8.
    pub queue_max: usize,
    /// CPU and wall-clock budget of one compile, in ms. Default 10000: the
    /// largest module under the structural limits compiles in about a
    /// second here (`benches/RESULTS.md`).
    pub time_ms_max: u64,
    /// Private writable memory (heap) of the compiling process, in bytes
    /// (its data limit). Default 2 GiB.
    pub memory_bytes_max: u64,
    /// Structural limits checked before compiling.
    pub limits: ModuleLimits,
}

impl Default for CompileConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            queue_max: 8,
            time_ms_max: 10_000,
            memory_bytes_max: 2 << 30,
            limits: ModuleLimits::default(),
        }
    }
}

/// Engine-wide settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Epoch tick in microseconds: the granularity of call deadlines (a call
    /// may overrun its deadline by up to one tick). Default 500 us: 2000
    /// wake-ups per second of one thread, negligible next to bid traffic.
    pub epoch_tick_us: u64,
    /// Instances the pooling allocator holds at once, across all cores and
    /// tenants: at least tenants x cores x 2 (a reload briefly holds old and
    /// new), plus per-request isolation calls in flight. Default 1024.
    pub instances_max: u32,
    /// Wasm stack limit for every call, in bytes. Engine-wide: wasmtime
    /// sets it per engine, not per store. Default 512 KiB.
    pub wasm_stack_bytes_max: usize,
    /// Caps on tenant settings.
    pub caps: StrategyCaps,
    /// Bounded, isolated compilation.
    pub compile: CompileConfig,
    /// Charge fuel. Always on in a server (not a setting an operator can
    /// change); benchmarks turn it off to measure its cost.
    #[serde(skip)]
    pub fuel: bool,
    /// Interrupt on epoch deadlines. Always on in a server, as `fuel`.
    #[serde(skip)]
    pub epoch_interruption: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            epoch_tick_us: 500,
            instances_max: 1024,
            wasm_stack_bytes_max: 512 << 10,
            caps: StrategyCaps::default(),
            compile: CompileConfig::default(),
            fuel: true,
            epoch_interruption: true,
        }
    }
}

/// The process-wide WebAssembly engine and the epoch ticker.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    config: RuntimeConfig,
    ticker: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A compiled, validated strategy version, ready to instantiate on any core.
pub struct Strategy {
    pub tenant: Arc<str>,
    pub version: u64,
    pub settings: StrategySettings,
    /// The capabilities its imports need: the tenant must hold each.
    pub capabilities: Capabilities,
    pre: InstancePre<HostState>,
    has_init: bool,
}

impl std::fmt::Debug for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Strategy")
            .field("tenant", &self.tenant)
            .field("version", &self.version)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Strategy {
    /// Refuses the strategy unless `granted` holds every capability its
    /// imports need; the error names the first import and grant missing.
    pub fn check_granted(&self, granted: Capabilities) -> Result<(), RejectReason> {
        match self.capabilities.missing_from(granted).iter().next() {
            None => Ok(()),
            Some(capability) => Err(RejectReason::NotGranted {
                capability,
                tenant: self.tenant.to_string(),
            }),
        }
    }

    /// The same compiled module under another version number (the number
    /// is known only once the upload is stored).
    pub fn with_version(&self, version: u64) -> Arc<Strategy> {
        Arc::new(Strategy {
            tenant: self.tenant.clone(),
            version,
            settings: self.settings.clone(),
            capabilities: self.capabilities,
            pre: self.pre.clone(),
            has_init: self.has_init,
        })
    }
}

/// The engine's settings. `pooling` is off in the compiling child
/// process, which never instantiates: the instance pool is a runtime
/// setting that compiled code does not depend on, and reserving it would
/// defeat the child's address-space limit.
fn engine_config(config: &RuntimeConfig, pooling: bool) -> Config {
    let mut wasm = Config::new();
    if pooling {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(config.instances_max)
            .total_memories(config.instances_max)
            .total_tables(config.instances_max)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            // Slots span the whole 32-bit space (reserved, not committed:
            // wasmtime reserves 4 GiB per memory by default anyway); the
            // real cap is per tenant, enforced by validation and the store's
            // limiter, so that a too-large module gets a clear reason.
            .max_memory_size(WASM32_MEMORY_BYTES_MAX)
            // Rust strategies' function tables are small; a cap keeps a
            // hostile module from claiming a huge table slot.
            .table_elements(10_000)
            // Keep the first pages of a freed slot resident and reset them
            // with a memset instead of returning them to the kernel: a
            // fresh instance (per-request isolation, a rebuild after a trap)
            // then starts without page faults on its hot pages.
            .linear_memory_keep_resident(LINEAR_MEMORY_KEEP_RESIDENT_BYTES)
            .table_keep_resident(TABLE_KEEP_RESIDENT_BYTES);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    // Compilation is single-threaded (wasmtime's parallel-compilation
    // feature is off): spreading it over every core would take time from
    // the serving cores.
    wasm.memory_init_cow(true)
        .consume_fuel(config.fuel)
        .epoch_interruption(config.epoch_interruption)
        .max_wasm_stack(config.wasm_stack_bytes_max)
        .cranelift_opt_level(OptLevel::Speed)
        // ABI v1 is the core wasm of Rust's wasm32 target; everything
        // else is off so that modules relying on it are rejected
        // (threads, GC and exceptions are compiled out of the engine).
        .wasm_memory64(false)
        .wasm_multi_memory(false)
        .wasm_gc(false)
        .wasm_tail_call(false)
        .wasm_relaxed_simd(false)
        .wasm_wide_arithmetic(false)
        .wasm_custom_page_sizes(false)
        .wasm_stack_switching(false)
        .wasm_simd(true)
        .wasm_bulk_memory(true)
        .wasm_multi_value(true);
    wasm
}

/// Compiles `wasm` to a native artifact for an engine built from `config`,
/// after the size and structural checks. This is the work the compiling
/// child process does (`gavel compile-module`); it may take seconds and
/// gigabytes for a hostile module, which is why it runs there.
pub fn precompile(config: &RuntimeConfig, wasm: &[u8]) -> Result<Vec<u8>, RejectReason> {
    validate::check_size(wasm, config.caps.module_bytes_max)?;
    validate::check_structure(wasm, &config.compile.limits)?;
    let engine = Engine::new(&engine_config(config, false))
        .map_err(|e| RejectReason::Compile(one_line(&format!("engine: {e:#}"))))?;
    engine
        .precompile_module(wasm)
        .map_err(|e| RejectReason::Compile(one_line(&format!("{e:#}"))))
}

impl Runtime {
    /// Builds the engine and starts the epoch ticker thread.
    pub fn new(config: RuntimeConfig) -> Result<Self, wasmtime::Error> {
        let engine = Engine::new(&engine_config(&config, true))?;
        let linker = host::linker(&engine)?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticker = if config.epoch_interruption {
            let (engine, stop, tick) = (
                engine.clone(),
                stop.clone(),
                Duration::from_micros(config.epoch_tick_us),
            );
            Some(
                std::thread::Builder::new()
                    .name("gavel-epoch".into())
                    .spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(tick);
                            engine.increment_epoch();
                        }
                    })?,
            )
        } else {
            None
        };
        Ok(Self {
            engine,
            linker,
            config,
            ticker,
            stop,
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Validates and compiles a module. Slow (compilation): call it from a
    /// loader thread, never from a serving core.
    pub fn compile(
        &self,
        tenant: &str,
        version: u64,
        wasm: &[u8],
        settings: StrategySettings,
    ) -> Result<Arc<Strategy>, RejectReason> {
        self.config.caps.check(&settings)?;
        validate::check_size(wasm, self.config.caps.module_bytes_max)?;
        validate::check_structure(wasm, &self.config.compile.limits)?;
        let module = Module::from_binary(&self.engine, wasm)
            .map_err(|e| RejectReason::Compile(one_line(&format!("{e:#}"))))?;
        self.prepare(tenant, version, module, settings)
    }

    /// Loads an artifact made by [`precompile`] for this engine's settings
    /// and runs the ABI checks on it.
    pub fn load_precompiled(
        &self,
        tenant: &str,
        version: u64,
        artifact: &[u8],
        settings: StrategySettings,
    ) -> Result<Arc<Strategy>, RejectReason> {
        self.config.caps.check(&settings)?;
        // SAFETY: `artifact` is the output of `precompile` in a child
        // process of this same binary, handed over a private pipe and never
        // stored: it is exactly what `Module::from_binary` would have made
        // in process, and trusting it is trusting our own compiler, as an
        // in-process compile does. wasmtime still checks its header against
        // this engine's version, target and settings.
        let module = unsafe { Module::deserialize(&self.engine, artifact) }.map_err(|e| {
            RejectReason::Compile(one_line(&format!("loading the artifact: {e:#}")))
        })?;
        self.prepare(tenant, version, module, settings)
    }

    fn prepare(
        &self,
        tenant: &str,
        version: u64,
        module: Module,
        settings: StrategySettings,
    ) -> Result<Arc<Strategy>, RejectReason> {
        let abi = validate::check_abi(&module, settings.memory_bytes_max)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| RejectReason::Imports(format!("{e:#}")))?;
        Ok(Arc::new(Strategy {
            tenant: tenant.into(),
            version,
            settings,
            capabilities: abi.capabilities,
            pre,
            has_init: abi.has_init,
        }))
    }
}

/// Error text on one line: wasmparser pretty-prints byte arrays over
/// several, which reads badly in a JSON error or a log line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}
