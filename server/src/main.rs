//! The `gavel` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use gavel::client::{self, Client};
use gavel::config::{Config, DataDir};
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
    /// Internal: compile one module under limits, for `gavel serve`.
    #[command(name = "compile-module", hide = true)]
    CompileModule,
}

#[derive(Args)]
struct StrategyArgs {
    /// Admin port address.
    #[arg(long, default_value = "127.0.0.1:8081")]
    admin: SocketAddr,
    /// File holding the bearer token (default: the GAVEL_TOKEN variable).
    #[arg(long)]
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
        /// Wall-clock budget per call in microseconds (default 5000).
        #[arg(long)]
        deadline_us: Option<u64>,
        /// Linear memory cap in bytes (default 16 MiB).
        #[arg(long)]
        memory_bytes_max: Option<u64>,
        /// A fresh instance for every request instead of one per core.
        #[arg(long)]
        per_request: bool,
    },
    /// List tenants, their versions and state.
    List,
    /// Make a stored version live.
    Activate { tenant: String, version: u64 },
    /// Go back to the previously active version.
    Rollback { tenant: String },
    /// Stop a tenant from bidding.
    Pause { tenant: String },
    /// Let a paused tenant bid again.
    Resume { tenant: String },
    /// Delete a version that is not active.
    Delete { tenant: String, version: u64 },
    /// Create a tenant (operator only); prints its token once.
    CreateTenant { tenant: String },
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
    /// Stop recording after this many seconds.
    #[arg(long, default_value_t = 3600)]
    record_max_seconds: u64,
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
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Strategy(args) => strategy(args),
        Command::CompileModule => return gavel::compiler::child_main(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gavel: {e}");
            let mut source = std::error::Error::source(&*e);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
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
    if args.print_config {
        print!("{}", toml::to_string_pretty(&config)?);
        return Ok(());
    }
    let recording = args.record.map(|path| {
        let spec = gavel::recorder::RecordingSpec {
            sample_rate: args.record_sample_rate,
            max_bytes: args.record_max_bytes,
            max_seconds: args.record_max_seconds,
        };
        (path, spec)
    });
    gavel::serve::serve(config, recording)?;
    Ok(())
}

fn strategy(args: StrategyArgs) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client {
        admin: args.admin,
        token: client::token(args.token_file.as_deref())?,
    };
    let answer = match args.action {
        StrategyAction::Upload {
            tenant,
            module,
            fuel_per_call,
            deadline_us,
            memory_bytes_max,
            per_request,
        } => {
            let wasm =
                std::fs::read(&module).map_err(|e| format!("reading {}: {e}", module.display()))?;
            let defaults = StrategySettings::default();
            let settings = StrategySettings {
                fuel_per_call: fuel_per_call.unwrap_or(defaults.fuel_per_call),
                deadline_us: deadline_us.unwrap_or(defaults.deadline_us),
                memory_bytes_max: memory_bytes_max.unwrap_or(defaults.memory_bytes_max),
                isolation: if per_request {
                    Isolation::PerRequest
                } else {
                    Isolation::Persistent
                },
                ..defaults
            };
            let path = format!(
                "/v1/tenants/{tenant}/versions?{}",
                client::settings_query(&settings)
            );
            client.call("POST", &path, &wasm)?
        }
        StrategyAction::List => client.call("GET", "/v1/tenants", &[])?,
        StrategyAction::Activate { tenant, version } => client.call(
            "POST",
            &format!("/v1/tenants/{tenant}/versions/{version}/activate"),
            &[],
        )?,
        StrategyAction::Rollback { tenant } => {
            client.call("POST", &format!("/v1/tenants/{tenant}/rollback"), &[])?
        }
        StrategyAction::Pause { tenant } => {
            client.call("POST", &format!("/v1/tenants/{tenant}/pause"), &[])?
        }
        StrategyAction::Resume { tenant } => {
            client.call("POST", &format!("/v1/tenants/{tenant}/resume"), &[])?
        }
        StrategyAction::Delete { tenant, version } => client.call(
            "DELETE",
            &format!("/v1/tenants/{tenant}/versions/{version}"),
            &[],
        )?,
        StrategyAction::CreateTenant { tenant } => {
            client.call("POST", &format!("/v1/tenants/{tenant}"), &[])?
        }
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}
