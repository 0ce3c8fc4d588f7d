//! The `gavel` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use gavel::config::{Config, DataDir};

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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
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
    gavel::serve::serve(config)?;
    Ok(())
}
