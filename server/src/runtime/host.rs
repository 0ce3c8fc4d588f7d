//! What a strategy's instance sees of the host: the `gavel_v1` imports and
//! the per-store state behind them (memory cap, log budget, clock).

use std::time::Instant;

use wasmtime::{Caller, Engine, Extern, Linker, ResourceLimiter};

use super::validate::{EXPORT_MEMORY, IMPORT_MODULE};

/// Per-instance host state (the `T` of `Store<T>`).
pub struct HostState {
    tenant: std::sync::Arc<str>,
    memory_bytes_max: usize,
    /// Set when a `memory.grow` was refused: the trap that usually follows
    /// (an allocator abort) is then reported as a memory no-bid.
    pub(super) memory_denied: bool,
    /// Unix time in microseconds at which the current request arrived.
    pub(super) request_time_us: i64,
    log: LogBudget,
    pub(super) log_bytes_dropped: u64,
}

impl HostState {
    pub(super) fn new(
        tenant: std::sync::Arc<str>,
        memory_bytes_max: u64,
        log_bytes_per_second: u32,
    ) -> Self {
        Self {
            tenant,
            memory_bytes_max: usize::try_from(memory_bytes_max).unwrap_or(usize::MAX),
            memory_denied: false,
            request_time_us: 0,
            log: LogBudget::new(log_bytes_per_second),
            log_bytes_dropped: 0,
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

/// Longest single log line, in bytes; longer ones are cut.
const LOG_LINE_BYTES_MAX: usize = 1024;

/// A tenant's log text with every control character escaped (`\n`,
/// `\r`, `\u{0}` ...), so that one line stays one line and a tenant
/// cannot forge the server's own log lines.
pub(crate) fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    std::borrow::Cow::Owned(escaped)
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
            let Some(Extern::Memory(memory)) = caller.get_export(EXPORT_MEMORY) else {
                wasmtime::bail!("log: no exported memory");
            };
            let (start, len) = (ptr as u32 as usize, len as u32 as usize);
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let Some(bytes) = start.checked_add(len).and_then(|end| data.get(start..end)) else {
                wasmtime::bail!("log: pointer range {start}+{len} is outside memory");
            };
            if !state.log.take(len) {
                state.log_bytes_dropped += len as u64;
                return Ok(());
            }
            let text = String::from_utf8_lossy(&bytes[..len.min(LOG_LINE_BYTES_MAX)]);
            let line = escape_controls(&text);
            tracing::debug!(target: "gavel::tenant_log", tenant = %state.tenant, "{line}");
            Ok(())
        },
    )?;
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn log_lines_cannot_break_lines() {
        assert_eq!(escape_controls("plain text é"), "plain text é");
        assert_eq!(
            escape_controls("a\nINFO forged\r\0\x1b[31m"),
            "a\\nINFO forged\\r\\u{0}\\u{1b}[31m"
        );
    }
}
