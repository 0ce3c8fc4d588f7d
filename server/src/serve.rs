//! `gavel serve`: wires the engine, the tenants, the admin port and the
//! bid port together, and shuts down cleanly on SIGTERM or SIGINT.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::admin::{self, AdminState};
use crate::auth::{Auth, Principal};
use crate::compiler::Compiler;
use crate::config::Config;
use crate::error::Error;
use crate::fleet::FleetStats;
use crate::fleet::frequency::FrequencyStats;
use crate::fleet::ledger::{Banker, LedgerStats};
use crate::fleet::notices::NoticeLink;
use crate::fleet::registry::{JetStreamRegistry, RegistryStats};
use crate::fleet::stream::{Replicated, StreamStats};
use crate::lineup::Lineup;
use crate::metrics::Metrics;
use crate::money::account::{Accounts, Budget, DayClock};
use crate::money::events::{EventLog, EventSink, LogLimits};
use crate::money::ledger::{Ledger, LedgerConfig};
use crate::money::price::PriceKeys;
use crate::money::token::NoticeKeys;
use crate::money::{DEFAULT_EXCHANGE, Money, MoneySettings};
use crate::recorder::{Recorder, RecordingSpec};
use crate::runtime::validate::imported_capabilities;
use crate::runtime::{Runtime, StrategySettings};
use crate::shard::{self, Shared};
use crate::store::{Change, Registry, Store};
use crate::tenant_log::TenantLogs;
use crate::tenants::{CapabilitySettings, RolloutSettings, TenantError, Tenants};

/// Runs the server until SIGTERM or SIGINT, then drains and returns.
/// `recording`: record sampled bid requests to this capture file from the
/// start.
pub fn serve(config: Config, recording: Option<(PathBuf, RecordingSpec)>) -> Result<(), Error> {
    config.validate()?;
    let config = Arc::new(config);
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, shutdown.clone())
            .map_err(Error::io("installing signal handlers"))?;
    }

    let runtime = Arc::new(
        Runtime::new(config.runtime.clone()).map_err(|e| Error::Engine(format!("{e:#}")))?,
    );
    let cores = shard::core_count(&config);
    let metrics = Arc::new(Metrics::new(cores));
    let lineup = Arc::new(Lineup::default());
    let recorder = Arc::new(Recorder::new(cores));

    let data_dir = &config.data_dir.0;
    let (store, auth, registry) = open_registry(&config)?;
    let mut budgets = Vec::new();
    for tenant in store.tenants().map_err(Error::Store)? {
        if let Some(budget) = store.budget(&tenant).map_err(Error::Store)? {
            budgets.push((tenant, budget));
        }
    }
    let (mut ledger, money) = start_money(&config, budgets)?;
    // A fleet signs with shared notice keys, and hands notices for other
    // nodes' bids to them.
    if let Some((registry, _)) = &registry {
        money
            .adopt_keys(|path| {
                registry
                    .adopt_notice_keys(path)
                    .map_err(std::io::Error::other)
            })
            .map_err(Error::io("taking the fleet's notice keys"))?;
        let node = config.fleet.node_name(config.bid.listen.port());
        NoticeLink::start(registry.clone(), &config.fleet.nats, &node, money.clone())
            .map_err(Error::Store)?;
    }
    // With a fleet ledger, budgets are leased from Redis (after the local
    // ledger restored this node's spend, which its reports carry).
    let mut fleet_stats = FleetStats::default();
    let mut banker = None;
    if let Some(url) = &config.fleet.ledger {
        let stats = Arc::new(LedgerStats::default());
        banker = Some(
            Banker::start(
                url,
                &config.fleet.redis,
                config.fleet.node_name(config.bid.listen.port()),
                data_dir,
                money.accounts.clone(),
                money.settings.clock,
                stats.clone(),
            )
            .map_err(Error::io("starting the fleet's ledger"))?,
        );
        fleet_stats.ledger = Some(stats);
    }
    let exe = std::env::current_exe().map_err(Error::io("finding the gavel executable"))?;
    let compiler =
        Compiler::start(runtime.clone(), exe).map_err(Error::io("starting the compile workers"))?;
    let logs = Arc::new(TenantLogs::new(config.logs));
    TenantLogs::start_drain(&logs).map_err(Error::io("starting the tenant log thread"))?;
    let tenants = Arc::new(Tenants::new(
        store,
        runtime.clone(),
        compiler,
        lineup.clone(),
        CapabilitySettings {
            accounts: money.accounts.clone(),
            clock: money.settings.clock,
            tables: config.tables.clone(),
            frequency: config.frequency.clone(),
            logs: logs.clone(),
        },
        RolloutSettings {
            canary: config.canary.clone(),
            shadows_max: config.shadow.running_max,
            events: money.ledger_handle(),
        },
    ));
    // Canary guards report rollbacks from the cores; the control plane
    // records them here, off the bid path.
    let (watched, tripped) = (tenants.clone(), tenants.tripped());
    std::thread::Builder::new()
        .name("gavel-canary".into())
        .spawn(move || {
            for trip in tripped {
                watched.canary_tripped(&trip);
            }
        })
        .map_err(Error::io("starting the canary thread"))?;
    // Changes other nodes make to a shared registry apply here, off the
    // bid path.
    if let Some((keys_registry, changes)) = &registry {
        let (tenants, auth, changes) = (tenants.clone(), auth.clone(), changes.clone());
        let (money, keys_registry) = (money.clone(), keys_registry.clone());
        std::thread::Builder::new()
            .name("gavel-registry".into())
            .spawn(move || {
                for change in changes {
                    match &change {
                        Change::Token { sha256, tenant } => {
                            if let Err(e) = auth.learn(sha256, tenant.as_deref()) {
                                tracing::error!(error = %e, "a token from the registry was not learned");
                            }
                        }
                        // The registry's current keys, never this change's
                        // payload, which a later rotation may have passed.
                        Change::NoticeKeys(_) => {
                            let adopted = money.adopt_keys(|path| {
                                keys_registry
                                    .adopt_notice_keys(path)
                                    .map_err(std::io::Error::other)
                            });
                            if let Err(e) = adopted {
                                tracing::error!(error = %e, "the fleet's rotated notice keys were not taken");
                            }
                        }
                        _ => tenants.refresh(&change),
                    }
                }
            })
            .map_err(Error::io("starting the registry thread"))?;
    }
    // Grants and tables before the bid port opens: a strategy never starts
    // without its data.
    tenants.load_access().map_err(Error::Store)?;
    // With a fleet ledger, frequency counts are the fleet's: wins go to
    // Redis, and each node's tables (made just above) cache them.
    if let Some(url) = &config.fleet.ledger {
        let stats = Arc::new(FrequencyStats::default());
        crate::fleet::frequency::start(
            url,
            &config.fleet.redis,
            &config.frequency,
            config.fleet.node_name(config.bid.listen.port()),
            money.ledger_handle(),
            stats.clone(),
        )
        .map_err(Error::io("sharing frequency counts"))?;
        fleet_stats.frequency = Some(stats);
    }

    // The admin port opens first so that /readyz can say "not yet".
    let admin_listener = std::net::TcpListener::bind(config.admin.listen).map_err(Error::io(
        format!("binding the admin port {}", config.admin.listen),
    ))?;
    let admin = Arc::new(AdminState {
        config: config.admin.clone(),
        metrics: metrics.clone(),
        tenants: tenants.clone(),
        auth: auth.clone(),
        recorder: recorder.clone(),
        money: money.clone(),
        recordings_dir: data_dir.join("recordings"),
        bid_listen: config.bid.listen,
        ready: AtomicBool::new(false),
        stopping: shutdown.clone(),
        fleet: FleetStats {
            registry: registry.as_ref().map(|(shared, _)| shared.stats().clone()),
            ..fleet_stats
        },
    });
    admin::start(admin_listener, admin.clone()).map_err(Error::io("starting the admin thread"))?;

    // On a shared registry, only the first node to find it empty seeds.
    if auth.is_empty() && tenants.store().claim_seeding().map_err(Error::Store)? {
        seed_demo(&tenants, &auth, data_dir)?;
    }
    if let Some((path, spec)) = recording {
        let source = format!("gavel serve {}", config.bid.listen);
        recorder
            .start(&path, spec, source)
            .map_err(|e| Error::io("starting the recording")(std::io::Error::other(e)))?;
    }

    let shared = Arc::new(Shared {
        config: config.clone(),
        runtime,
        lineup,
        metrics,
        recorder: recorder.clone(),
        money,
        shutdown: shutdown.clone(),
    });
    let shards = shard::start(shared).map_err(Error::io("starting the bid port"))?;
    if shutdown.load(Ordering::Relaxed) {
        let _ = shards.join_all();
        ledger.stop();
        return Err(Error::io("starting the bid port")(std::io::Error::other(
            "a core failed to start; see the log",
        )));
    }
    tracing::info!(bid = %config.bid.listen, admin = %config.admin.listen, cores, "gavel is serving");
    // Stored strategies load in the background, each tenant bidding as
    // soon as its own compile is done; /readyz turns ready once all have
    // been tried, so a load balancer waits for the full lineup.
    let (loader_tenants, loader_admin) = (tenants.clone(), admin.clone());
    let data_dir_shown = config.data_dir.0.display().to_string();
    std::thread::Builder::new()
        .name("gavel-loader".into())
        .spawn(move || {
            match loader_tenants.load_all() {
                Ok(loaded) => {
                    tracing::info!(tenants = loaded, data_dir = %data_dir_shown, "strategies loaded")
                }
                Err(e) => tracing::error!(error = %e, "listing stored tenants failed"),
            }
            loader_admin.ready.store(true, Ordering::Release);
        })
        .map_err(Error::io("starting the loader thread"))?;

    let _ = shards.join_all();
    // The cores are gone: everything they queued is applied and committed,
    // then reported to the fleet's ledger.
    ledger.stop();
    if let Some(banker) = &mut banker {
        banker.stop();
    }
    let recording = recorder.stop();
    if recording.recorded > 0 {
        tracing::info!(
            recorded = recording.recorded,
            dropped = recording.dropped,
            "recording closed"
        );
    }
    tracing::info!("shut down cleanly");
    Ok(())
}

/// The registry behind the seam: the data directory, or NATS JetStream
/// when `fleet.registry` is set (then also the tokens it holds, its
/// health and the changes other nodes make).
#[allow(clippy::type_complexity)]
fn open_registry(
    config: &Config,
) -> Result<
    (
        Arc<dyn Registry>,
        Arc<Auth>,
        Option<(Arc<JetStreamRegistry>, crossbeam_channel::Receiver<Change>)>,
    ),
    Error,
> {
    let data_dir = &config.data_dir.0;
    std::fs::create_dir_all(data_dir)
        .map_err(Error::io(format!("creating {}", data_dir.display())))?;
    let auth = Auth::open(data_dir).map_err(Error::io(format!(
        "reading tokens in {}",
        data_dir.display()
    )))?;
    let Some(url) = &config.fleet.registry else {
        let store = Store::open(data_dir).map_err(Error::Store)?;
        return Ok((Arc::new(store), Arc::new(auth), None));
    };
    let stats = Arc::new(RegistryStats::default());
    let node = config.fleet.node_name(config.bid.listen.port());
    let (registry, changes) = JetStreamRegistry::open(url, &config.fleet.nats, node, stats.clone())
        .map_err(Error::Store)?;
    let registry = Arc::new(registry);
    for (sha256, tenant) in registry.tokens() {
        auth.learn(&sha256, tenant.as_deref())
            .map_err(Error::io("learning the registry's tokens"))?;
    }
    tracing::info!(registry = %url, "the registry is on NATS JetStream");
    let auth = auth.shared_with(registry.clone());
    Ok((registry.clone(), Arc::new(auth), Some((registry, changes))))
}

/// Opens the money loop in `config.data_dir`: accounts with the stored
/// `budgets`, the notice keys, the event log and the ledger thread. The
/// caller stops the ledger after the cores are gone.
pub fn start_money(
    config: &Config,
    budgets: Vec<(String, Budget)>,
) -> Result<(Ledger, Arc<Money>), Error> {
    let data_dir = &config.data_dir.0;
    let accounts = Arc::new(match config.fleet.ledger {
        Some(_) => Accounts::leased(),
        None => Accounts::default(),
    });
    for (tenant, budget) in budgets {
        accounts.get(&tenant).set_budget(&budget);
    }
    let keys = NoticeKeys::open(data_dir).map_err(Error::io("reading the notice keys"))?;
    let events_dir = data_dir.join("events");
    let events = &config.events;
    let log = EventLog::open(
        &events_dir,
        LogLimits {
            file_bytes_max: events.log_file_bytes_max,
            files_max: events.log_files_max,
        },
    )
    .map_err(Error::io(format!(
        "opening the event log in {}",
        events_dir.display()
    )))?;
    let clock = DayClock {
        day_ms: config.budget.day_length_s * 1000,
        lead_per_mille: config.budget.pacing_lead_per_mille,
    };
    // With NATS, every event also goes to the fleet's stream.
    let (sink, stream): (Box<dyn EventSink>, _) = match config.fleet.events_url() {
        None => (Box::new(log), None),
        Some(url) => {
            let stats = Arc::new(StreamStats::default());
            let node = config.fleet.node_name(config.bid.listen.port());
            let replicated = Replicated::start(log, node, url, &config.fleet.nats, stats.clone())
                .map_err(Error::io("starting the event stream publisher"))?;
            (Box::new(replicated), Some(stats))
        }
    };
    let ledger_path = data_dir.join("ledger.redb");
    let ledger = Ledger::start(
        &ledger_path,
        accounts.clone(),
        sink,
        LedgerConfig {
            reservation_ttl_ms: events.reservation_ttl_ms,
            notice_ttl_ms: events.notice_ttl_ms,
            queue_max: events.queue_max,
            clock,
        },
    )
    .map_err(Error::io(format!(
        "opening the ledger {}",
        ledger_path.display()
    )))?;
    let mut exchanges = vec![(DEFAULT_EXCHANGE.to_string(), None)];
    for (name, exchange) in &config.exchanges {
        // Validated with the config: both keys decode, or neither is set.
        let keys = match (&exchange.encryption_key, &exchange.integrity_key) {
            (Some(e), Some(i)) => Some(
                PriceKeys::from_base64(e, i)
                    .map_err(|e| Error::io(format!("exchange {name}"))(std::io::Error::other(e)))?,
            ),
            _ => None,
        };
        exchanges.push((name.clone(), keys));
    }
    if events.public_url.is_none() && config.bid.listen.ip().is_unspecified() {
        tracing::warn!(
            listen = %config.bid.listen,
            "notice URLs will name an unspecified address: set events.public_url to the address exchanges reach"
        );
    }
    let settings = MoneySettings {
        public_url: events.public_url(config.bid.listen),
        notice_ttl_ms: events.notice_ttl_ms,
        clock,
        currency: config.bid.currency.clone(),
        exchanges,
        events_dir,
        // Named only in a fleet, where notices may reach another node.
        node: match config.fleet.registry {
            Some(_) => config.fleet.node_name(config.bid.listen.port()),
            None => String::new(),
        },
    };
    let money = Arc::new(Money::new(
        accounts,
        keys,
        ledger.handle(),
        ledger.boot,
        settings,
        stream,
    ));
    Ok((ledger, money))
}

/// First run on an empty data directory: one demo tenant per example
/// strategy, named after it, an operator token and one token per tenant.
/// The tokens are written to `demo-tokens.txt` (owner-only) and never
/// logged.
fn seed_demo(tenants: &Tenants, auth: &Auth, data_dir: &Path) -> Result<(), Error> {
    let mut lines = String::from(
        "# Gavel demo tokens: send as `Authorization: Bearer <token>` to the admin port.\n",
    );
    let token = auth
        .issue(Principal::Operator)
        .map_err(Error::io("issuing the operator token"))?;
    lines.push_str(&format!("operator {token}\n"));
    for example in gavel_strategies::EXAMPLES {
        let seed_error = |e: TenantError| match e {
            TenantError::Store(e) => Error::Store(e),
            TenantError::Rejected(reason) => Error::Tenant {
                tenant: example.name.into(),
                reason,
            },
            other => Error::io(format!("seeding demo tenant {}", example.name))(
                std::io::Error::other(other.to_string()),
            ),
        };
        // The seeding operator grants each example what it imports, and
        // loads the tables it ships, before its upload is checked.
        tenants.store().create_tenant(example.name)?;
        tenants
            .set_grants(example.name, imported_capabilities(example.wasm))
            .map_err(seed_error)?;
        for (name, body) in example.tables {
            tenants
                .put_table(example.name, name, body)
                .map_err(seed_error)?;
        }
        tenants
            .upload(
                example.name,
                example.wasm,
                &StrategySettings::default(),
                true,
            )
            .map_err(seed_error)?;
        let token = auth
            .issue(Principal::Tenant(example.name.into()))
            .map_err(Error::io("issuing a tenant token"))?;
        lines.push_str(&format!("tenant {} {token}\n", example.name));
    }
    let path = data_dir.join("demo-tokens.txt");
    // Owner-only from its first byte: the file is created with mode 0600.
    crate::durable::write_atomic_mode(&path, lines.as_bytes(), 0o600)
        .map_err(Error::io(format!("writing {}", path.display())))?;
    tracing::info!(
        tenants = gavel_strategies::EXAMPLES.len(),
        tokens = %path.display(),
        "empty data directory: demo tenants created; admin tokens are in the tokens file"
    );
    Ok(())
}
