//! The `gavel-loadgen` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use gavel_loadgen::exchange::{self, Clearing, ExchangePlay};
use gavel_loadgen::plan::Pacing;
use gavel_loadgen::replay::{self, CONNECTIONS_DEFAULT, ReplayOptions};
use gavel_loadgen::rng::SEED_DEFAULT;
use gavel_loadgen::synth::{self, Length, SynthOptions};
use gavel_loadgen::wire::Format;
use gavel_loadgen::{Result, import};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Record, synthesize and replay OpenRTB traffic open-loop with honest
/// latency reports.
#[derive(Parser)]
#[command(name = "gavel-loadgen", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a capture of synthetic OpenRTB 2.6 requests (Poisson arrivals).
    Synth(SynthArgs),
    /// Turn JSON lines (one OpenRTB request per line) into a capture.
    Import(ImportArgs),
    /// Replay a capture open-loop against a bidder and report latency.
    Replay(ReplayArgs),
}

#[derive(Args)]
struct SynthArgs {
    /// The capture file to write.
    #[arg(long)]
    out: PathBuf,
    /// Number of requests [default: 10000 unless --duration is given].
    #[arg(long, conflicts_with = "duration")]
    count: Option<u64>,
    /// Traffic to write instead of a count, e.g. `5s`, `2m`.
    #[arg(long)]
    duration: Option<humantime::Duration>,
    /// Mean arrival rate, requests per second.
    #[arg(long, default_value_t = synth::RATE_DEFAULT)]
    rate: f64,
    /// Seed of the generator: the same seed gives the same file.
    #[arg(long, default_value_t = SEED_DEFAULT)]
    seed: u64,
    /// Body encoding of the requests.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
}

#[derive(Args)]
struct ImportArgs {
    /// The capture file to write.
    #[arg(long)]
    out: PathBuf,
    /// JSON lines: one OpenRTB 2.6 bid request per line.
    input: PathBuf,
    /// Requests per second to space the lines at.
    #[arg(long, default_value_t = import::RATE_DEFAULT)]
    rate: f64,
}

#[derive(Args)]
struct ReplayArgs {
    /// The bidder, HOST:PORT.
    #[arg(long)]
    target: String,
    /// The capture to replay.
    file: PathBuf,
    /// Send at a fixed rate (requests per second) instead of the recorded times.
    #[arg(long, conflicts_with = "speed")]
    rate: Option<f64>,
    /// Play the recorded arrival times this many times faster.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Time to measure after the warm-up, e.g. `30s`, `5m` [default: the
    /// capture, once].
    #[arg(long)]
    duration: Option<humantime::Duration>,
    /// Repeat the capture until --duration is over.
    #[arg(long = "loop", requires = "duration")]
    looped: bool,
    /// Keep-alive connections, spread over the threads.
    #[arg(long, default_value_t = CONNECTIONS_DEFAULT)]
    connections: usize,
    /// Executor threads, each with its own connections and share of the schedule.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Time at the start whose results are discarded, e.g. `1s`.
    #[arg(long, default_value = "0s")]
    warmup: humantime::Duration,
    /// Body encoding to send; records are converted to it.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    wire: Format,
    /// Most requests due and unanswered at once [default: --connections];
    /// past it, due requests are counted as not sent.
    #[arg(long)]
    in_flight_max: Option<usize>,
    /// Per-request timeout, e.g. `500ms`, `2s`.
    #[arg(long, default_value_t = replay::TIMEOUT_DEFAULT.into())]
    timeout: humantime::Duration,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the corrected latency distribution (.hgrm, milliseconds) to this file.
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Write a latency-by-percentile plot (SVG) to this file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long)]
    quiet: bool,
    /// Play the exchange: each returned bid wins with this probability and
    /// gets its win and billing notices, the others a loss notice.
    #[arg(long)]
    win_rate: Option<f64>,
    /// How the exchange prices a win (with --win-rate).
    #[arg(long, value_enum, default_value_t = Clearing::SecondPrice, requires = "win_rate")]
    clearing: Clearing,
    /// Time between an answer and its notices, e.g. `50ms` (with --win-rate).
    #[arg(long, default_value_t = exchange::NOTICE_DELAY_DEFAULT.into(), requires = "win_rate")]
    notice_delay: humantime::Duration,
    /// The same delay in milliseconds (the older spelling).
    #[arg(
        long,
        hide = true,
        conflicts_with = "notice_delay",
        requires = "win_rate"
    )]
    notice_delay_ms: Option<u64>,
}

fn synth(args: SynthArgs) -> Result<()> {
    let length = match (args.count, args.duration) {
        (Some(count), _) => Length::Count(count),
        (None, Some(duration)) => Length::Duration(duration.into()),
        (None, None) => Length::Count(synth::COUNT_DEFAULT),
    };
    let options = SynthOptions {
        length,
        rate: args.rate,
        seed: args.seed,
        format: args.format,
    };
    eprintln!("gavel-loadgen synth: seed {}", options.seed);
    let summary = synth::synthesize_file(&options, &args.out)?;
    println!(
        "wrote {}: {} requests, {} bytes, {:.3} s of traffic (seed {})",
        args.out.display(),
        summary.records,
        summary.bytes,
        summary.span.as_secs_f64(),
        options.seed
    );
    Ok(())
}

fn import(args: ImportArgs) -> Result<()> {
    let summary = import::import_file(&args.input, &args.out, args.rate)?;
    for (line, reason) in &summary.bad_lines {
        eprintln!("{}:{line}: skipped: {reason}", args.input.display());
    }
    if summary.bad > summary.bad_lines.len() as u64 {
        eprintln!(
            "... and {} more bad lines",
            summary.bad - summary.bad_lines.len() as u64
        );
    }
    println!(
        "wrote {}: {} requests ({} bad lines skipped, {} blank)",
        args.out.display(),
        summary.records,
        summary.bad,
        summary.blank
    );
    Ok(())
}

fn replay(args: ReplayArgs) -> Result<()> {
    let options = ReplayOptions {
        target: args.target,
        pacing: match args.rate {
            Some(rate) => Pacing::Rate(rate),
            None => Pacing::Recorded { speed: args.speed },
        },
        duration: args.duration.map(Duration::from),
        looped: args.looped,
        connections: args.connections,
        threads: args.threads,
        warmup: args.warmup.into(),
        wire: args.wire,
        in_flight_max: args.in_flight_max,
        timeout: args.timeout.into(),
        progress: !args.quiet,
        exchange: args.win_rate.map(|win_rate| ExchangePlay {
            win_rate,
            clearing: args.clearing,
            delay: args
                .notice_delay_ms
                .map_or(args.notice_delay.into(), Duration::from_millis),
        }),
    };
    let report = replay::replay(&args.file, &options)?;
    print!("{}", report.text());
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    if let Some(path) = &args.hgrm {
        report.write_hgrm(path)?;
    }
    if let Some(path) = &args.plot {
        report.write_plot(path)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Synth(args) => synth(args),
        Command::Import(args) => import(args),
        Command::Replay(args) => replay(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            // Causes already in the message are not repeated.
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !message.contains(&cause_text) {
                    message = format!("{message}: {cause_text}");
                }
                source = cause.source();
            }
            eprintln!("gavel-loadgen: {message}");
            ExitCode::FAILURE
        }
    }
}
