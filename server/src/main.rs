//! The `gavel` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use gavel::client::{self, Client, render};
use gavel::config::{Config, DataDir};
use gavel::rollout::shadow::{self, ShadowReport};
use gavel::runtime::{Isolation, StrategySettings};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Gavel: a real-time bidding server running tenant WebAssembly strategies.
#[derive(Parser)]
#[command(name = "gavel", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve bids (default: 127.0.0.1:8080) and the admin API (127.0.0.1:8081).
    Serve(ServeArgs),
    /// Manage strategies through the admin API.
    Strategy(StrategyArgs),
    /// A tenant's budget, spend and events, through the admin API.
    Tenant(TenantArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Internal: compile one module under limits, for `gavel serve`.
    #[command(name = "compile-module", hide = true)]
    CompileModule,
}

#[derive(Args)]
struct StrategyArgs {
    /// Admin port address.
    #[arg(long, global = true, default_value = "127.0.0.1:8081")]
    admin: SocketAddr,
    /// File holding the bearer token (default: the GAVEL_TOKEN variable).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    action: StrategyAction,
}

#[derive(Subcommand)]
enum StrategyAction {
    /// Upload a new version; it is validated, stored and made live.
    Upload {
        tenant: String,
        /// The WebAssembly module.
        module: PathBuf,
        /// Fuel per call (default 10000000).
        #[arg(long)]
        fuel_per_call: Option<u64>,
        /// Wall-clock budget per call, e.g. `3ms`, `500us` (default 5ms).
        #[arg(long, value_name = "DURATION", conflicts_with = "deadline_us")]
        deadline: Option<humantime::Duration>,
        /// The same budget in microseconds (the older spelling).
        #[arg(long, hide = true)]
        deadline_us: Option<u64>,
        /// Linear memory cap in bytes (default 16 MiB).
        #[arg(long)]
        memory_bytes_max: Option<u64>,
        /// A fresh instance for every request instead of one per core.
        #[arg(long)]
        per_request: bool,
        /// Store and compile the version without making it live
        /// (`activate=false`); `activate` makes it live later.
        #[arg(long)]
        inactive: bool,
        /// Print the server's JSON answer instead.
        #[arg(long)]
        json: bool,
    },
    /// Run a module on one request locally, with the server's host, limits
    /// and checks (no server needed): prints the checked bids or the
    /// no-bid reason, the fuel and time used and the strategy's log.
    Run {
        /// The WebAssembly module.
        module: PathBuf,
        /// An OpenRTB 2.6 JSON request or a BidRequest flatbuffer (`-`: stdin).
        request: PathBuf,
        /// Fuel per call (default 10000000).
        #[arg(long)]
        fuel_per_call: Option<u64>,
        /// Wall-clock budget per call, e.g. `3ms`, `500us` (default 5ms).
        #[arg(long, value_name = "DURATION", conflicts_with = "deadline_us")]
        deadline: Option<humantime::Duration>,
        /// The same budget in microseconds (the older spelling).
        #[arg(long, hide = true)]
        deadline_us: Option<u64>,
        /// Linear memory cap in bytes (default 16 MiB).
        #[arg(long)]
        memory_bytes_max: Option<u64>,
        /// A data table for `kv_get`, as NAME=FILE (JSON lines); repeatable.
        #[arg(long, value_name = "NAME=FILE")]
        table: Vec<String>,
        /// The bidder's currency.
        #[arg(long, default_value = "USD")]
        currency: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a baseline and a candidate module on every request of a capture
    /// (offline, on every core) and report what would change.
    Whatif {
        /// The capture: a recording (`.gcap`) or the load generator's.
        capture: PathBuf,
        /// The module live today.
        #[arg(long)]
        baseline: PathBuf,
        /// The module to try.
        #[arg(long)]
        candidate: PathBuf,
        /// Also write the report as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Also draw the two bid price distributions as SVG to this file.
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
        /// Fuel per call for both (default 10000000).
        #[arg(long)]
        fuel_per_call: Option<u64>,
        /// Wall-clock budget per call for both, e.g. `3ms` (default 5ms).
        #[arg(long, value_name = "DURATION", conflicts_with = "deadline_us")]
        deadline: Option<humantime::Duration>,
        /// The same budget in microseconds (the older spelling).
        #[arg(long, hide = true)]
        deadline_us: Option<u64>,
        /// A data table for `kv_get`, as NAME=FILE (JSON lines); repeatable.
        #[arg(long, value_name = "NAME=FILE")]
        table: Vec<String>,
        /// The bidder's currency.
        #[arg(long, default_value = "USD")]
        currency: String,
        /// Threads (default: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Shadow a stored version on a sample of the tenant's live requests
    /// (after each answer; it never bids), or, without VERSION, show the
    /// running shadow's report.
    Shadow {
        tenant: String,
        /// The version to shadow; absent: show the report.
        version: Option<u64>,
        /// Share of the tenant's requests to shadow, 0 < R <= 1 (default 0.1).
        #[arg(long)]
        sample_rate: Option<f64>,
        /// Stop the shadow and show its final report.
        #[arg(long, conflicts_with_all = ["version", "sample_rate"])]
        stop: bool,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Canary a stored version on a share of the tenant's users (sticky per
    /// user, rolled back by itself when it fails more than the active
    /// version), or, without VERSION, show the canary.
    Canary {
        tenant: String,
        /// The version to canary; absent: show the canary.
        version: Option<u64>,
        /// Share of the tenant's users, 0 < P <= 100.
        #[arg(long, requires = "version")]
        percent: Option<f64>,
        /// Stop the canary (or clear how it ended).
        #[arg(long, conflicts_with_all = ["version", "percent"])]
        stop: bool,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Make a version live for everyone (promotes its canary).
    Promote {
        tenant: String,
        version: u64,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// List tenants, their state and versions.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One tenant: its state, trials and stored versions.
    Show {
        tenant: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make a stored version live.
    Activate {
        tenant: String,
        version: u64,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Go back to the previously active version.
    Rollback {
        tenant: String,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Stop a tenant from bidding.
    Pause {
        tenant: String,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Let a paused tenant bid again.
    Resume {
        tenant: String,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Delete a version that is not active.
    Delete {
        tenant: String,
        version: u64,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Create a tenant (operator only); prints its token once.
    CreateTenant {
        tenant: String,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct TenantArgs {
    /// Admin port address.
    #[arg(long, global = true, default_value = "127.0.0.1:8081")]
    admin: SocketAddr,
    /// File holding the bearer token (default: the GAVEL_TOKEN variable).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    action: TenantAction,
}

#[derive(Subcommand)]
enum TenantAction {
    /// Set a tenant's budget (currency units); options left out stay as they are.
    Budget {
        tenant: String,
        /// Total budget.
        #[arg(long, conflicts_with = "no_total")]
        total: Option<f64>,
        /// Daily budget (UTC days).
        #[arg(long, conflicts_with = "no_daily")]
        daily: Option<f64>,
        /// `asap` or `even` (spread the daily budget over the day).
        #[arg(long, value_parser = ["asap", "even"])]
        pacing: Option<String>,
        /// Remove the total budget.
        #[arg(long)]
        no_total: bool,
        /// Remove the daily budget.
        #[arg(long)]
        no_daily: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Grant a tenant exactly these capabilities (kv, frequency, budget),
    /// replacing what it had (operator only).
    Grant {
        tenant: String,
        /// Capabilities: kv, frequency, budget.
        #[arg(required_unless_present = "none", value_parser = ["kv", "frequency", "budget"])]
        capabilities: Vec<String>,
        /// Revoke every capability.
        #[arg(long, conflicts_with = "capabilities")]
        none: bool,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Show a tenant's granted capabilities.
    Grants {
        tenant: String,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// A tenant's data tables.
    Table {
        #[command(subcommand)]
        action: TableAction,
    },
    /// What a tenant has spent, reserved and has left.
    Spend {
        tenant: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A tenant's bid, win, bill, loss and expiry events.
    Events {
        tenant: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// The lines a tenant's strategy logged, oldest first.
    Logs {
        tenant: String,
        #[command(flatten)]
        paging: Paging,
    },
}

/// How to page through a tenant's events or log lines.
#[derive(Args)]
struct Paging {
    /// Only those after this sequence number.
    #[arg(long, default_value_t = 0)]
    since: u64,
    /// At most this many per call (1-1000).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Keep polling for new ones until interrupted.
    #[arg(long)]
    follow: bool,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file; every setting has a default.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (overrides the file).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Bid port address (overrides the file).
    #[arg(long)]
    bid_listen: Option<SocketAddr>,
    /// Admin port address (overrides the file).
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Serving cores, 0 = all (overrides the file).
    #[arg(long)]
    cores: Option<usize>,
    /// The fleet's registry and event stream, `nats://HOST:PORT` (NATS
    /// JetStream); default: this node's data directory (overrides the file).
    #[arg(long, value_name = "URL")]
    registry: Option<String>,
    /// The fleet's budget ledger, `redis://HOST:PORT`: budgets shared by
    /// every node through leases; default: this node's own (overrides the
    /// file).
    #[arg(long, value_name = "URL")]
    ledger: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Record sampled bid requests to this capture file (it must not exist).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Fraction of requests recorded, in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    record_sample_rate: f64,
    /// Stop recording after this many bytes.
    #[arg(long, default_value_t = 1 << 30)]
    record_max_bytes: u64,
    /// Stop recording after this long, e.g. `10m`, `1h` (whole seconds).
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    record_max_duration: humantime::Duration,
    /// The same limit in seconds (the older spelling).
    #[arg(long, hide = true, conflicts_with = "record_max_duration")]
    record_max_seconds: Option<u64>,
}

fn main() -> ExitCode {
    // The compiling child process: no logging, no argument parsing beyond
    // its name, so that it starts in microseconds.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == gavel::compiler::CHILD_SUBCOMMAND)
    {
        return gavel::compiler::child_main();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        end_quietly_on_closed_pipe();
    }
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Strategy(StrategyArgs {
            action: action @ (StrategyAction::Run { .. } | StrategyAction::Whatif { .. }),
            ..
        }) => {
            return match run_locally(action) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("gavel: {}", one_line(&*e));
                    ExitCode::FAILURE
                }
            };
        }
        Command::Strategy(args) => strategy(args),
        Command::Tenant(args) => tenant(args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "gavel", &mut std::io::stdout());
            Ok(())
        }
        Command::CompileModule => return gavel::compiler::child_main(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gavel: {}", one_line(&*e));
            ExitCode::FAILURE
        }
    }
}

/// A command whose output is piped into `head` ends when the pipe closes,
/// as Unix tools do, instead of failing to print (the runtime ignores
/// SIGPIPE; the server keeps it ignored).
fn end_quietly_on_closed_pipe() {
    use signal_hook::consts::SIGPIPE;
    // SAFETY: the handler only restores the default action and raises
    // the signal again, which the crate documents as safe in a handler.
    let _ = unsafe {
        signal_hook::low_level::register(SIGPIPE, || {
            let _ = signal_hook::low_level::emulate_default_handler(SIGPIPE);
        })
    };
}

/// An error and its causes on one line; a cause its message already
/// holds is not repeated.
fn one_line(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !message.contains(&cause_text) {
            message = format!("{message}: {cause_text}");
        }
        source = cause.source();
    }
    message
}

/// A call's deadline in microseconds from `--deadline` or `--deadline-us`.
fn deadline_us(deadline: Option<humantime::Duration>, us: Option<u64>) -> Option<u64> {
    deadline
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .or(us)
}

fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(dir) = args.data_dir {
        config.data_dir = DataDir(dir);
    }
    if let Some(addr) = args.bid_listen {
        config.bid.listen = addr;
    }
    if let Some(addr) = args.admin_listen {
        config.admin.listen = addr;
    }
    if let Some(cores) = args.cores {
        config.bid.cores = cores;
    }
    if let Some(url) = args.registry {
        config.fleet.registry = Some(url);
    }
    if let Some(url) = args.ledger {
        config.fleet.ledger = Some(url);
    }
    if args.print_config {
        print!("{}", toml::to_string_pretty(&config)?);
        return Ok(());
    }
    let recording = args.record.map(|path| {
        let spec = gavel::recorder::RecordingSpec {
            sample_rate: args.record_sample_rate,
            max_bytes: args.record_max_bytes,
            max_seconds: args
                .record_max_seconds
                .unwrap_or(args.record_max_duration.as_secs()),
        };
        (path, spec)
    });
    gavel::serve::serve(config, recording)?;
    Ok(())
}

/// `gavel strategy run`: exits 0 on bids or a no-bid, 2 when the strategy
/// failed (trap, fuel, deadline, memory, broken answer), 1 when it could
/// not run (a module the server would refuse, a bad request or table).
fn run_locally(action: StrategyAction) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use gavel::rollout::local::{self, LocalRun};
    let read = |path: &PathBuf| {
        local::read_input(path).map_err(|e| format!("reading {}: {e}", path.display()))
    };
    let tables_of = |specs: &[String]| -> Result<Vec<(String, Vec<u8>)>, String> {
        specs
            .iter()
            .map(|spec| {
                let (name, file) = spec
                    .split_once('=')
                    .ok_or_else(|| format!("--table {spec}: use NAME=FILE"))?;
                Ok((name.to_string(), read(&PathBuf::from(file))?))
            })
            .collect()
    };
    let defaults = StrategySettings::default();
    if let StrategyAction::Whatif {
        capture,
        baseline,
        candidate,
        json,
        plot,
        fuel_per_call,
        deadline,
        deadline_us,
        table,
        currency,
        threads,
    } = action
    {
        use gavel::rollout::whatif::{self, WhatIf};
        let report = whatif::compare(
            &capture,
            &WhatIf {
                baseline: read(&baseline)?,
                candidate: read(&candidate)?,
                settings: StrategySettings {
                    fuel_per_call: fuel_per_call.unwrap_or(defaults.fuel_per_call),
                    deadline_us: self::deadline_us(deadline, deadline_us)
                        .unwrap_or(defaults.deadline_us),
                    ..defaults
                },
                tables: tables_of(&table)?,
                currency,
                threads,
            },
        )?;
        print!("{}", whatif::render(&report));
        if let Some(path) = json {
            std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        if let Some(path) = plot {
            let svg = whatif::plot_svg(&report).map_err(|e| format!("drawing the plot: {e}"))?;
            std::fs::write(&path, svg).map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let StrategyAction::Run {
        module,
        request,
        fuel_per_call,
        deadline,
        deadline_us,
        memory_bytes_max,
        table,
        currency,
        json,
    } = action
    else {
        return Err("not a local run".into());
    };
    let tables = tables_of(&table)?;
    let report = local::run(&LocalRun {
        wasm: read(&module)?,
        request: read(&request)?,
        settings: StrategySettings {
            fuel_per_call: fuel_per_call.unwrap_or(defaults.fuel_per_call),
            deadline_us: self::deadline_us(deadline, deadline_us).unwrap_or(defaults.deadline_us),
            memory_bytes_max: memory_bytes_max.unwrap_or(defaults.memory_bytes_max),
            ..defaults
        },
        tables,
        currency,
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", local::render(&report));
    }
    Ok(if local::failed(&report) {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn strategy(args: StrategyArgs) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client {
        admin: args.admin,
        token: client::token(args.token_file.as_deref())?,
    };
    let answer: (String, bool, serde_json::Value) = match args.action {
        StrategyAction::Upload {
            tenant,
            module,
            fuel_per_call,
            deadline,
            deadline_us,
            memory_bytes_max,
            per_request,
            inactive,
            json,
        } => {
            let wasm =
                std::fs::read(&module).map_err(|e| format!("reading {}: {e}", module.display()))?;
            let defaults = StrategySettings::default();
            let settings = StrategySettings {
                fuel_per_call: fuel_per_call.unwrap_or(defaults.fuel_per_call),
                deadline_us: self::deadline_us(deadline, deadline_us)
                    .unwrap_or(defaults.deadline_us),
                memory_bytes_max: memory_bytes_max.unwrap_or(defaults.memory_bytes_max),
                isolation: if per_request {
                    Isolation::PerRequest
                } else {
                    Isolation::Persistent
                },
                ..defaults
            };
            let path = format!(
                "/v1/tenants/{tenant}/versions?{}{}",
                client::settings_query(&settings),
                if inactive { "&activate=false" } else { "" }
            );
            let meta = client.call("POST", &path, &wasm)?;
            return print_or(json, &meta, || render::uploaded(&tenant, &meta, !inactive));
        }
        StrategyAction::Run { .. } | StrategyAction::Whatif { .. } => {
            return Err("a local run needs no admin port".into());
        }
        StrategyAction::Shadow {
            tenant,
            version,
            sample_rate,
            stop,
            json,
        } => {
            let path = format!("/v1/tenants/{tenant}/shadow");
            let answer = match (version, stop) {
                (_, true) => client.call("DELETE", &path, &[])?,
                (Some(version), false) => {
                    let rate = sample_rate
                        .map(|r| format!("?sample_rate={r}"))
                        .unwrap_or_default();
                    let started = client.call(
                        "POST",
                        &format!("/v1/tenants/{tenant}/versions/{version}/shadow{rate}"),
                        &[],
                    )?;
                    return print_or(json, &started, || {
                        format!(
                            "tenant {tenant}: shadowing version {version} on {} of its requests; `gavel strategy shadow {tenant}` shows the report\n",
                            started["sample_rate"]
                        )
                    });
                }
                (None, false) => client.call("GET", &path, &[])?,
            };
            let report: ShadowReport = serde_json::from_value(answer.clone())?;
            return print_or(json, &answer, || shadow::render(&report));
        }
        StrategyAction::Canary {
            tenant,
            version,
            percent,
            stop,
            json,
        } => {
            let answer = match (version, percent, stop) {
                (_, _, true) => {
                    client.call("DELETE", &format!("/v1/tenants/{tenant}/canary"), &[])?
                }
                (Some(version), Some(percent), false) => client.call(
                    "POST",
                    &format!("/v1/tenants/{tenant}/versions/{version}/canary?percent={percent}"),
                    &[],
                )?,
                (Some(_), None, false) => {
                    return Err("a canary needs --percent P (0 < P <= 100)".into());
                }
                (None, _, false) => {
                    let view = client.call("GET", &format!("/v1/tenants/{tenant}"), &[])?;
                    view.get("canary").cloned().unwrap_or_default()
                }
            };
            return print_or(json, &answer, || canary_text(&tenant, &answer, stop));
        }
        StrategyAction::Promote {
            tenant,
            version,
            json,
        } => {
            let state = client.call(
                "POST",
                &format!("/v1/tenants/{tenant}/versions/{version}/activate"),
                &[],
            )?;
            return print_or(json, &state, || {
                format!("tenant {tenant}: version {version} is live for every user\n")
            });
        }
        StrategyAction::List { json } => {
            let list = client.call("GET", "/v1/tenants", &[])?;
            return print_or(json, &list, || render::tenants(&list));
        }
        StrategyAction::Show { tenant, json } => {
            let view = client.call("GET", &format!("/v1/tenants/{tenant}"), &[])?;
            return print_or(json, &view, || render::tenant(&view));
        }
        StrategyAction::Activate {
            tenant,
            version,
            json,
        } => (
            tenant.clone(),
            json,
            client.call(
                "POST",
                &format!("/v1/tenants/{tenant}/versions/{version}/activate"),
                &[],
            )?,
        ),
        StrategyAction::Rollback { tenant, json } => (
            tenant.clone(),
            json,
            client.call("POST", &format!("/v1/tenants/{tenant}/rollback"), &[])?,
        ),
        StrategyAction::Pause { tenant, json } => (
            tenant.clone(),
            json,
            client.call("POST", &format!("/v1/tenants/{tenant}/pause"), &[])?,
        ),
        StrategyAction::Resume { tenant, json } => (
            tenant.clone(),
            json,
            client.call("POST", &format!("/v1/tenants/{tenant}/resume"), &[])?,
        ),
        StrategyAction::Delete {
            tenant,
            version,
            json,
        } => (
            tenant.clone(),
            json,
            client.call(
                "DELETE",
                &format!("/v1/tenants/{tenant}/versions/{version}"),
                &[],
            )?,
        ),
        StrategyAction::CreateTenant { tenant, json } => {
            let created = client.call("POST", &format!("/v1/tenants/{tenant}"), &[])?;
            return print_or(json, &created, || {
                format!(
                    "tenant {tenant} created; its token, shown once (keep it):\n{}\n",
                    created["token"].as_str().unwrap_or("")
                )
            });
        }
    };
    let (tenant, json, state) = answer;
    print_or(json, &state, || render::state(&tenant, &state))
}

/// Prints `value` as JSON when asked, else `text()`.
fn print_or(
    json: bool,
    value: &serde_json::Value,
    text: impl FnOnce() -> String,
) -> Result<(), Box<dyn std::error::Error>> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", text());
    }
    Ok(())
}

/// A canary (as `GET /v1/tenants/{t}` shows it) for people.
fn canary_text(tenant: &str, canary: &serde_json::Value, stopped: bool) -> String {
    if canary.is_null() {
        return format!("tenant {tenant} has no canary\n");
    }
    let (version, percent, state) = (&canary["version"], &canary["percent"], &canary["state"]);
    let state = state.as_str().unwrap_or("unknown");
    let mut text = if stopped {
        format!(
            "tenant {tenant}: canary of version {version} ({state}) stopped; every user bids with the active version\n"
        )
    } else {
        format!("tenant {tenant}: canary of version {version} for {percent} % of users: {state}\n")
    };
    if let Some(reason) = canary["reason"].as_str() {
        text.push_str(&format!("reason: {reason}\n"));
    }
    let window = &canary["window"];
    if window.is_object() {
        text.push_str(&format!(
            "last window: canary {} calls, {} failed; active {} calls, {} failed\n",
            window["canary_calls"],
            window["canary_failures"],
            window["active_calls"],
            window["active_failures"]
        ));
    }
    text
}

#[derive(Subcommand)]
enum TableAction {
    /// Upload a table from a file of JSON lines `{"key": "...", "value": "..."}`
    /// (`-` reads stdin); replaces the table of that name.
    Put {
        tenant: String,
        name: String,
        file: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List a tenant's tables: entries, bytes, SHA-256.
    List {
        tenant: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a table.
    Delete {
        tenant: String,
        name: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn table(client: &Client, action: TableAction) -> Result<(), Box<dyn std::error::Error>> {
    let (tenant, json, answer) = match action {
        TableAction::Put {
            tenant,
            name,
            file,
            json,
        } => {
            let body = if file.as_os_str() == "-" {
                let mut body = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut body)?;
                body
            } else {
                std::fs::read(&file).map_err(|e| format!("reading {}: {e}", file.display()))?
            };
            client.call("PUT", &format!("/v1/tenants/{tenant}/tables/{name}"), &body)?;
            let answer = client.call("GET", &format!("/v1/tenants/{tenant}/tables"), &[])?;
            (tenant, json, answer)
        }
        TableAction::List { tenant, json } => {
            let answer = client.call("GET", &format!("/v1/tenants/{tenant}/tables"), &[])?;
            (tenant, json, answer)
        }
        TableAction::Delete { tenant, name, json } => {
            let answer = client.call(
                "DELETE",
                &format!("/v1/tenants/{tenant}/tables/{name}"),
                &[],
            )?;
            (tenant, json, answer)
        }
    };
    print_or(json, &answer, || render::tables(&tenant, &answer))
}

fn tenant(args: TenantArgs) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client {
        admin: args.admin,
        token: client::token(args.token_file.as_deref())?,
    };
    match args.action {
        TenantAction::Budget {
            tenant,
            total,
            daily,
            pacing,
            no_total,
            no_daily,
            json,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(total) = total {
                body.insert("total".into(), total.into());
            }
            if no_total {
                body.insert("total".into(), serde_json::Value::Null);
            }
            if let Some(daily) = daily {
                body.insert("daily".into(), daily.into());
            }
            if no_daily {
                body.insert("daily".into(), serde_json::Value::Null);
            }
            if let Some(pacing) = pacing {
                body.insert("pacing".into(), pacing.into());
            }
            let body = serde_json::to_vec(&body)?;
            client.call("PUT", &format!("/v1/tenants/{tenant}/budget"), &body)?;
            let spend = client.call("GET", &format!("/v1/tenants/{tenant}/spend"), &[])?;
            print_or(json, &spend, || render::spend(&spend))?;
        }
        TenantAction::Grant {
            tenant,
            capabilities,
            none: _,
            json,
        } => {
            let body = serde_json::to_vec(&serde_json::json!({ "capabilities": capabilities }))?;
            let answer = client.call("PUT", &format!("/v1/tenants/{tenant}/grants"), &body)?;
            print_or(json, &answer, || grants_text(&tenant, &answer))?;
        }
        TenantAction::Grants { tenant, json } => {
            let answer = client.call("GET", &format!("/v1/tenants/{tenant}/grants"), &[])?;
            print_or(json, &answer, || grants_text(&tenant, &answer))?;
        }
        TenantAction::Table { action } => table(&client, action)?,
        TenantAction::Spend { tenant, json } => {
            let spend = client.call("GET", &format!("/v1/tenants/{tenant}/spend"), &[])?;
            print_or(json, &spend, || render::spend(&spend))?;
        }
        TenantAction::Events { tenant, paging } => page_through(
            &client,
            &format!("/v1/tenants/{tenant}/events"),
            "events",
            paging,
            (render::EVENT_HEADER, render::event),
        )?,
        TenantAction::Logs { tenant, paging } => page_through(
            &client,
            &format!("/v1/tenants/{tenant}/logs"),
            "lines",
            paging,
            (render::LOG_HEADER, render::log_line),
        )?,
    }
    Ok(())
}

/// Prints the items under `key` of each page of `path` (`since` and
/// `limit` added), as JSON lines or as rows under a header, and with
/// `follow` keeps asking for new ones.
fn page_through(
    client: &Client,
    path: &str,
    key: &str,
    mut paging: Paging,
    (header, row): (&str, fn(&serde_json::Value) -> String),
) -> Result<(), Box<dyn std::error::Error>> {
    if !paging.json {
        println!("{header}");
    }
    loop {
        let page = client.call(
            "GET",
            &format!("{path}?since={}&limit={}", paging.since, paging.limit),
            &[],
        )?;
        if let Some(missed) = page["missed"].as_u64().filter(|n| *n > 0) {
            eprintln!("({missed} lines were dropped from the buffer before this read)");
        }
        let items = page[key].as_array().cloned().unwrap_or_default();
        for item in &items {
            if paging.json {
                println!("{item}");
            } else {
                print!("{}", row(item));
            }
        }
        paging.since = page["next"].as_u64().unwrap_or(paging.since);
        if !paging.follow {
            return Ok(());
        }
        if items.len() < paging.limit {
            std::thread::sleep(FOLLOW_POLL);
        }
    }
}

/// How often `--follow` asks for more.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(500);

fn grants_text(tenant: &str, answer: &serde_json::Value) -> String {
    let granted: Vec<&str> = answer["capabilities"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str())
        .collect();
    if granted.is_empty() {
        format!("tenant {tenant}: no capabilities granted\n")
    } else {
        format!("tenant {tenant}: granted {}\n", granted.join(", "))
    }
}
