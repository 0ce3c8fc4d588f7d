//! What a strategy's instance sees of the host: the `gavel_v1` imports and
//! the per-store state behind them (memory cap, log budget, clock, and what
//! the tenant's grants reach).
//!
//! Every import is bounded: it reads and writes only ranges the guest
//! names inside its own memory (out of range traps), never allocates in
//! guest memory, and the capability imports charge fuel for their work,
//! [`HOST_CALL_FUEL`] plus one unit per [`BYTES_PER_FUEL`] bytes read or
//! copied, so that a strategy looping over host calls runs out of fuel like
//! one looping over its own code.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::{Caller, Engine, Extern, Linker, Memory, ResourceLimiter, Trap};

use super::capability::{Access, Capability};
use super::validate::{EXPORT_MEMORY, IMPORT_MODULE};
use crate::kv::TABLE_NAME_BYTES_MAX;
use crate::money::frequency::crid_key;
use crate::tenant_log::{LINE_BYTES_MAX, LOG_LINES_PER_CALL_MAX, clean};

/// Fuel every capability call costs before its bytes: about what the call
/// costs in time, in units of guest instructions.
pub const HOST_CALL_FUEL: u64 = 50;

/// Bytes read or copied per unit of fuel a capability call is charged.
pub const BYTES_PER_FUEL: u64 = 8;

/// Longest creative id `frequency` hashes; a longer key counts nothing.
pub const FREQUENCY_KEY_BYTES_MAX: usize = 1024;

/// Per-instance host state (the `T` of `Store<T>`).
pub struct HostState {
    memory_bytes_max: usize,
    /// Set when a `memory.grow` was refused: the trap that usually follows
    /// (an allocator abort) is then reported as a memory no-bid.
    pub(super) memory_denied: bool,
    /// Unix time in microseconds at which the current request arrived.
    pub(super) request_time_us: i64,
    /// The current request's user key for `frequency` (0: none).
    pub(super) user_key: u64,
    /// The instance's exported memory, once instantiated.
    pub(super) memory: Option<Memory>,
    /// What the tenant's grants reach.
    pub(super) access: Arc<Access>,
    log: LogBudget,
    pub(super) log_bytes_dropped: u64,
    /// Lines refused: over the log rate or [`LOG_LINES_PER_CALL_MAX`].
    pub(super) log_lines_dropped: u64,
    /// Lines logged during the current call, handed to the tenant's log
    /// by the slot after it (see [`crate::tenant_log`]).
    pub(super) pending_log: Vec<String>,
    /// Capability calls since the slot last folded them into its stats.
    pub(super) host_calls: HostCalls,
    /// Where log lines go instead of the server's log (a local run).
    pub(super) log_capture: Option<LogCapture>,
}

/// Log lines kept for a local run (`gavel strategy run`), beyond the
/// instance's life: a trap drops the instance, and the lines before it are
/// what the author needs most. At most [`LOG_CAPTURE_LINES_MAX`] lines.
#[derive(Clone, Debug, Default)]
pub struct LogCapture(Arc<std::sync::Mutex<Vec<String>>>);

/// Lines a [`LogCapture`] keeps; later ones are dropped.
pub const LOG_CAPTURE_LINES_MAX: usize = 10_000;

impl LogCapture {
    fn push(&self, line: &str) {
        let mut lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() < LOG_CAPTURE_LINES_MAX {
            lines.push(line.to_string());
        }
    }

    /// The lines logged so far, emptied.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Capability calls counted in the store, folded into the tenant's
/// counters after each call (no atomics inside a host call).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct HostCalls {
    pub used: bool,
    pub by_capability: [u64; Capability::ALL.len()],
    pub kv_misses: u64,
}

impl HostCalls {
    fn count(&mut self, capability: Capability) {
        self.used = true;
        self.by_capability[capability as usize] += 1;
    }
}

impl HostState {
    pub(super) fn new(
        memory_bytes_max: u64,
        log_bytes_per_second: u32,
        access: Arc<Access>,
    ) -> Self {
        Self {
            memory_bytes_max: usize::try_from(memory_bytes_max).unwrap_or(usize::MAX),
            memory_denied: false,
            request_time_us: 0,
            user_key: 0,
            memory: None,
            access,
            log: LogBudget::new(log_bytes_per_second),
            log_bytes_dropped: 0,
            log_lines_dropped: 0,
            pending_log: Vec::new(),
            host_calls: HostCalls::default(),
            log_capture: None,
        }
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes_max {
            self.memory_denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // The pooling allocator's `table_elements` is the bound.
        Ok(true)
    }
}

/// A token bucket of log bytes, refilled continuously.
struct LogBudget {
    bytes_per_second: u32,
    tokens: f64,
    refilled: Instant,
}

impl LogBudget {
    fn new(bytes_per_second: u32) -> Self {
        Self {
            bytes_per_second,
            tokens: f64::from(bytes_per_second),
            refilled: Instant::now(),
        }
    }

    fn take(&mut self, bytes: usize) -> bool {
        let now = Instant::now();
        let rate = f64::from(self.bytes_per_second);
        self.tokens =
            (self.tokens + now.duration_since(self.refilled).as_secs_f64() * rate).min(rate);
        self.refilled = now;
        if (bytes as f64) <= self.tokens {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }
}

/// The instance's memory: cached at instantiation, looked up by name
/// during it (a start function).
fn guest_memory(caller: &mut Caller<'_, HostState>, call: &str) -> wasmtime::Result<Memory> {
    if let Some(memory) = caller.data().memory {
        return Ok(memory);
    }
    match caller.get_export(EXPORT_MEMORY) {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => wasmtime::bail!("{call}: no exported memory"),
    }
}

/// The byte range `ptr..ptr + len` of guest memory, or a trap naming the
/// call.
fn range(
    data_len: usize,
    ptr: i32,
    len: i32,
    call: &str,
) -> wasmtime::Result<std::ops::Range<usize>> {
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    match start.checked_add(len) {
        Some(end) if end <= data_len => Ok(start..end),
        _ => wasmtime::bail!("{call}: pointer range {start}+{len} is outside memory"),
    }
}

/// Traps unless the tenant holds `capability`. Uploads importing an
/// ungranted capability are refused and an in-use grant cannot be revoked,
/// so this is a second line, not the first.
fn require(
    caller: &Caller<'_, HostState>,
    capability: Capability,
    call: &str,
) -> wasmtime::Result<()> {
    if caller.data().access.granted.contains(capability) {
        Ok(())
    } else {
        wasmtime::bail!("{call}: the tenant has no `{capability}` grant")
    }
}

/// Charges a capability call's fuel for `bytes` read or copied; out of
/// fuel traps as running out in guest code does.
fn charge(caller: &mut Caller<'_, HostState>, bytes: usize) -> wasmtime::Result<()> {
    let cost = HOST_CALL_FUEL + (bytes as u64).div_ceil(BYTES_PER_FUEL);
    // Fuel is off only in benchmarks measuring its cost.
    let Ok(fuel) = caller.get_fuel() else {
        return Ok(());
    };
    if fuel < cost {
        caller.set_fuel(0)?;
        return Err(Trap::OutOfFuel.into());
    }
    caller.set_fuel(fuel - cost)
}

/// Microseconds of the current request, or of now during init.
fn now_us(state: &HostState) -> u64 {
    u64::try_from(state.request_time_us)
        .ok()
        .filter(|t| *t > 0)
        .unwrap_or_else(crate::money::unix_us)
}

/// `kv_get`: looks `key` up in the tenant's table `table`, copies at most
/// `out_cap` bytes of the value to `out_ptr`, and returns the value's full
/// length, or -1 when the table or the key is absent.
fn kv_get(
    mut caller: Caller<'_, HostState>,
    (table_ptr, table_len, key_ptr, key_len, out_ptr, out_cap): (i32, i32, i32, i32, i32, i32),
) -> wasmtime::Result<i32> {
    const CALL: &str = "kv_get";
    require(&caller, Capability::Kv, CALL)?;
    let memory = guest_memory(&mut caller, CALL)?;
    let (data, state) = memory.data_and_store_mut(&mut caller);
    let name = range(data.len(), table_ptr, table_len, CALL)?;
    let key = range(data.len(), key_ptr, key_len, CALL)?;
    let out = range(data.len(), out_ptr, out_cap, CALL)?;
    let mut touched = 0;
    let value = if name.len() > TABLE_NAME_BYTES_MAX {
        None
    } else {
        touched += name.len();
        state.access.tables.get(&data[name]).and_then(|table| {
            if key.len() > table.key_bytes_max() {
                return None;
            }
            touched += key.len();
            table.get(&data[key])
        })
    };
    state.host_calls.count(Capability::Kv);
    let answer = match value {
        None => {
            state.host_calls.kv_misses += 1;
            -1
        }
        Some(value) => {
            let copied = value.len().min(out.len());
            data[out.start..out.start + copied].copy_from_slice(&value[..copied]);
            touched += copied;
            // Values are bounded by `tables.value_bytes_max`, far below 2 GiB.
            i32::try_from(value.len()).unwrap_or(i32::MAX)
        }
    };
    charge(&mut caller, touched)?;
    Ok(answer)
}

/// `frequency`: the tenant's wins for the request's user with creative
/// `key` (empty: any) in the last `window_s` seconds.
fn frequency(
    mut caller: Caller<'_, HostState>,
    (key_ptr, key_len, window_s): (i32, i32, i32),
) -> wasmtime::Result<i32> {
    const CALL: &str = "frequency";
    require(&caller, Capability::Frequency, CALL)?;
    let memory = guest_memory(&mut caller, CALL)?;
    let (data, state) = memory.data_and_store_mut(&mut caller);
    state.host_calls.count(Capability::Frequency);
    let key = range(data.len(), key_ptr, key_len, CALL)?;
    let bytes = key.len();
    let count = if bytes > FREQUENCY_KEY_BYTES_MAX || state.user_key == 0 || window_s <= 0 {
        0
    } else {
        let now_s = u32::try_from(now_us(state) / 1_000_000).unwrap_or(u32::MAX);
        state.access.frequency.as_ref().map_or(0, |table| {
            table.count(state.user_key, crid_key(&data[key]), window_s as u32, now_s)
        })
    };
    charge(&mut caller, bytes.min(FREQUENCY_KEY_BYTES_MAX))?;
    Ok(count as i32)
}

/// `budget_remaining`: what the tenant has left to spend, in currency
/// units, or -1 without a budget.
fn budget_remaining(mut caller: Caller<'_, HostState>) -> wasmtime::Result<f64> {
    require(&caller, Capability::Budget, "budget_remaining")?;
    caller.data_mut().host_calls.count(Capability::Budget);
    let state = caller.data();
    let now_ms = now_us(state) / 1000;
    let access = &state.access;
    let remaining = access
        .account
        .remaining(now_ms, &access.clock)
        .map_or(-1.0, |micros| {
            crate::money::amount::micros_to_units(micros.max(0))
        });
    charge(&mut caller, 0)?;
    Ok(remaining)
}

/// The `gavel_v1` imports.
pub(super) fn linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    linker.func_wrap(
        IMPORT_MODULE,
        "request_time_us",
        |caller: Caller<'_, HostState>| caller.data().request_time_us,
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "log",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let memory = guest_memory(&mut caller, "log")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let bytes = &data[range(data.len(), ptr, len, "log")?];
            if state.pending_log.len() >= LOG_LINES_PER_CALL_MAX || !state.log.take(bytes.len()) {
                state.log_bytes_dropped += bytes.len() as u64;
                state.log_lines_dropped += 1;
                return Ok(());
            }
            // Escaping only lengthens: the first LINE_BYTES_MAX bytes hold
            // the whole kept line.
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(LINE_BYTES_MAX)]);
            let line = clean(&text, LINE_BYTES_MAX);
            match &state.log_capture {
                Some(capture) => capture.push(&line),
                None => state.pending_log.push(line),
            }
            Ok(())
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "kv_get",
        |caller: Caller<'_, HostState>,
         table_ptr: i32,
         table_len: i32,
         key_ptr: i32,
         key_len: i32,
         out_ptr: i32,
         out_cap: i32| {
            kv_get(
                caller,
                (table_ptr, table_len, key_ptr, key_len, out_ptr, out_cap),
            )
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "frequency",
        |caller: Caller<'_, HostState>, key_ptr: i32, key_len: i32, window_s: i32| {
            frequency(caller, (key_ptr, key_len, window_s))
        },
    )?;
    linker.func_wrap(IMPORT_MODULE, "budget_remaining", budget_remaining)?;
    Ok(linker)
}
