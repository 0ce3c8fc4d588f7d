//! Bounded compilation: every module a tenant uploads, and every stored
//! one at start-up, is compiled in a child process (`gavel compile-module`)
//! that limits its own address space and CPU time before it reads the
//! module, under a wall-clock deadline enforced by its parent, by a fixed
//! number of worker threads fed from a bounded queue.
//!
//! Why a process: a module of nested `loop`s is small on the wire and
//! quadratic for the compiler; the structural limits
//! ([`crate::runtime::ModuleLimits`]) refuse the shapes known to do that,
//! but only a process gives a bound for shapes nobody has thought of yet:
//! the kernel ends it when it passes its limits, and its exit returns every
//! byte the compiler took (an allocator in the server would keep them).
//! The child hands back wasmtime's native artifact over a pipe; the server
//! loads it with the same engine settings ([`Runtime::load_precompiled`]).
//!
//! ```text
//! admin thread ──job──► bounded queue ──► worker ──stdin──► gavel compile-module
//!      ▲                  (full: 503)        │  ◄──stdout── artifact | stderr: reason
//!      └──────── reply ◄── load + ABI checks ┘  (killed past time_ms_max)
//! ```

use std::io::{self, Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::runtime::{self, RejectReason, Runtime, RuntimeConfig, Strategy, StrategySettings};

/// The hidden subcommand that runs a compile in a child process.
pub const CHILD_SUBCOMMAND: &str = "compile-module";

/// How often a worker checks whether its child has finished.
const CHILD_POLL: Duration = Duration::from_millis(2);

/// mimalloc's reservation size in the child (`MIMALLOC_ARENA_RESERVE`).
const CHILD_ARENA_RESERVE: &str = "64MiB";

/// Exit code of a child that refused the module (reason on stderr).
const EXIT_REJECTED: u8 = 2;

/// Longest reason read back from a child's stderr.
const REASON_BYTES_MAX: u64 = 4 << 10;

/// Why a compile did not produce a strategy.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The module (or its settings) was refused; the tenant can fix it.
    #[error(transparent)]
    Rejected(#[from] RejectReason),
    /// Every worker is busy and the queue is full: try again later.
    #[error("the compile queue is full ({queue_max} waiting); try again shortly")]
    Busy { queue_max: usize },
    /// The machine could not run the compiler (spawn, pipes).
    #[error("running the compiler: {0}")]
    Machine(#[source] io::Error),
}

struct Job {
    tenant: String,
    version: u64,
    wasm: Arc<[u8]>,
    settings: StrategySettings,
    reply: Sender<Result<Arc<Strategy>, CompileError>>,
}

/// The compile workers and their queue. Cheap to share (`Arc`); dropping
/// the last handle lets the workers finish their jobs and exit.
pub struct Compiler {
    jobs: Sender<Job>,
    queue_max: usize,
}

impl std::fmt::Debug for Compiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiler")
            .field("queue_max", &self.queue_max)
            .finish_non_exhaustive()
    }
}

impl Compiler {
    /// Starts `runtime.config().compile.workers` threads that compile with
    /// `exe compile-module` (normally this very binary).
    pub fn start(runtime: Arc<Runtime>, exe: PathBuf) -> io::Result<Self> {
        let config = &runtime.config().compile;
        let (jobs, queue) = crossbeam_channel::bounded::<Job>(config.queue_max);
        let queue_max = config.queue_max;
        let config_json = Arc::new(
            serde_json::to_vec(runtime.config()).map_err(|e| io::Error::other(e.to_string()))?,
        );
        for worker in 0..config.workers {
            let (runtime, exe, queue, config_json) = (
                runtime.clone(),
                exe.clone(),
                queue.clone(),
                config_json.clone(),
            );
            std::thread::Builder::new()
                .name(format!("gavel-compile-{worker}"))
                .spawn(move || work(&runtime, &exe, &config_json, &queue))?;
        }
        Ok(Self { jobs, queue_max })
    }

    /// Compiles one module and loads it, waiting for a worker. Fails at
    /// once with [`CompileError::Busy`] when the queue is full.
    pub fn compile(
        &self,
        tenant: &str,
        version: u64,
        wasm: Arc<[u8]>,
        settings: StrategySettings,
    ) -> Result<Arc<Strategy>, CompileError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let job = Job {
            tenant: tenant.into(),
            version,
            wasm,
            settings,
            reply,
        };
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(CompileError::Busy {
                    queue_max: self.queue_max,
                });
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(CompileError::Machine(io::Error::other(
                    "the compile workers have stopped",
                )));
            }
        }
        answer.recv().unwrap_or_else(|_| {
            Err(CompileError::Machine(io::Error::other(
                "a compile worker stopped before answering",
            )))
        })
    }
}

fn work(runtime: &Runtime, exe: &std::path::Path, config_json: &[u8], queue: &Receiver<Job>) {
    for job in queue {
        let started = Instant::now();
        let result = compile_in_child(exe, config_json, &job.wasm, &runtime.config().compile)
            .and_then(|artifact| {
                runtime
                    .load_precompiled(&job.tenant, job.version, &artifact, job.settings)
                    .map_err(CompileError::Rejected)
            });
        tracing::info!(
            tenant = %job.tenant,
            version = job.version,
            module_bytes = job.wasm.len(),
            ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "compiled"
        );
        // The asker may have gone (its connection closed): nothing to do.
        let _ = job.reply.send(result);
    }
}

/// Runs `exe compile-module` on `wasm` and returns its artifact.
fn compile_in_child(
    exe: &std::path::Path,
    config_json: &[u8],
    wasm: &[u8],
    config: &runtime::CompileConfig,
) -> Result<Vec<u8>, CompileError> {
    let mut child = Command::new(exe)
        .arg(CHILD_SUBCOMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "off")
        // mimalloc reserves address space 1 GiB at a time by default, which
        // the data limit would count as used; small reservations make the
        // limit measure what the compiler really takes.
        .env("MIMALLOC_ARENA_RESERVE", CHILD_ARENA_RESERVE)
        .spawn()
        .map_err(CompileError::Machine)?;
    let (Some(mut stdin), Some(mut stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(CompileError::Machine(io::Error::other(
            "the compiler's pipes are missing",
        )));
    };
    let deadline = Instant::now() + Duration::from_millis(config.time_ms_max);
    std::thread::scope(|scope| {
        // The pipes are drained on their own threads so that neither side
        // can block the other; the worker only watches the clock.
        let writer = scope.spawn(move || -> io::Result<()> {
            stdin.write_all(&(config_json.len() as u64).to_le_bytes())?;
            stdin.write_all(config_json)?;
            stdin.write_all(wasm)
        });
        let reader = scope.spawn(move || {
            let mut artifact = Vec::new();
            stdout.read_to_end(&mut artifact).map(|_| artifact)
        });
        let reasons = scope.spawn(move || {
            let mut reason = String::new();
            let _ = stderr.take(REASON_BYTES_MAX).read_to_string(&mut reason);
            reason
        });
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(CompileError::Rejected(RejectReason::CompileBudget(
                        format!(
                            "did not finish within time_ms_max = {} ms",
                            config.time_ms_max
                        ),
                    )));
                }
                Ok(None) => std::thread::sleep(CHILD_POLL),
                Err(e) => break Err(CompileError::Machine(e)),
            }
        };
        // A child that exited has closed its pipes, so these finish.
        let _ = writer.join();
        let artifact = reader.join();
        let reason = reasons.join().unwrap_or_default();
        let status = status?;
        let reason = reason.trim();
        if status.success() {
            return match artifact {
                Ok(Ok(artifact)) => Ok(artifact),
                _ => Err(CompileError::Machine(io::Error::other(
                    "reading the compiler's output failed",
                ))),
            };
        }
        Err(CompileError::Rejected(match status.code() {
            Some(code) if code == i32::from(EXIT_REJECTED) => serde_json::from_str(reason)
                .unwrap_or_else(|_| RejectReason::Compile(reason.to_owned())),
            // Killed by the kernel (SIGXCPU past the CPU limit) or aborted
            // (allocation refused past the address-space limit).
            _ => RejectReason::CompileBudget(format!(
                "the compiler stopped ({status}) within time_ms_max = {} ms and \
                 memory_bytes_max = {} bytes{}{}",
                config.time_ms_max,
                config.memory_bytes_max,
                if reason.is_empty() { "" } else { ": " },
                reason.lines().next().unwrap_or_default()
            )),
        }))
    })
}

/// The child's side: `gavel compile-module`. Reads the runtime settings and
/// the module from stdin, limits itself, compiles, and writes the artifact
/// to stdout (exit 0) or the reason to stderr (exit 2).
pub fn child_main() -> ExitCode {
    match child_compile() {
        Ok(artifact) => match io::stdout().lock().write_all(&artifact) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        },
        Err(reason) => {
            let text = serde_json::to_string(&reason).unwrap_or_else(|_| reason.to_string());
            let _ = writeln!(io::stderr(), "{text}");
            ExitCode::from(EXIT_REJECTED)
        }
    }
}

fn child_compile() -> Result<Vec<u8>, RejectReason> {
    let broken = |what: String| RejectReason::Compile(format!("compiler input: {what}"));
    let mut input = Vec::new();
    io::stdin()
        .lock()
        .read_to_end(&mut input)
        .map_err(|e| broken(e.to_string()))?;
    let (length, rest) = input
        .split_first_chunk::<8>()
        .ok_or_else(|| broken("too short for its header".into()))?;
    let length = usize::try_from(u64::from_le_bytes(*length)).unwrap_or(usize::MAX);
    if length > rest.len() {
        return Err(broken("shorter than its header says".into()));
    }
    let (config, wasm) = rest.split_at(length);
    let config: RuntimeConfig =
        serde_json::from_slice(config).map_err(|e| broken(format!("runtime settings: {e}")))?;
    let compile = &config.compile;
    // Limits first, before the module is looked at. CPU time is whole
    // seconds, rounded up: the parent's wall-clock deadline is the exact one.
    // Memory is the data limit: private writable memory, heap included,
    // which is what a compiler grows; address space would also count
    // reservations that never hold a byte.
    let cpu_s = compile.time_ms_max.div_ceil(1000).max(1);
    rlimit::setrlimit(rlimit::Resource::CPU, cpu_s, cpu_s + 1)
        .map_err(|e| broken(format!("limiting CPU time: {e}")))?;
    rlimit::setrlimit(
        rlimit::Resource::DATA,
        compile.memory_bytes_max,
        compile.memory_bytes_max,
    )
    .map_err(|e| broken(format!("limiting memory: {e}")))?;
    runtime::precompile(&config, wasm)
}
