//! `dotmac`: the control plane's command line (dev, serve, migrate, config
//! check, admin create-user, schema).

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use dotmac_api::config::Config;
use dotmac_api::seed::{self, DEFAULT_DEMO_PASSWORD};
use dotmac_api::store::Store;
use dotmac_api::wiring;
use dotmac_schema::{ManualClock, Role, SharedClock};

/// GraphQL execution allocates many small, short-lived objects; mimalloc
/// serves them faster than glibc and hands freed memory back to the OS
/// (argon2's 19 MiB buffers otherwise stay resident per thread arena).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "dotmac",
    version,
    about = "DotMac Management Platform control plane"
)]
struct Cli {
    /// Configuration file (default ./dotmac.toml when present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process with no outside service: SQLite, in-process bus, demo data.
    Dev {
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: String,
        #[arg(long, default_value = ".dotmac")]
        data_dir: PathBuf,
    },
    /// The API on Postgres and Redis (DOTMAC_DATABASE_URL, DOTMAC_REDIS_URL).
    Serve,
    /// Applies pending migrations to DOTMAC_DATABASE_URL (connect as the owner role);
    /// with DOTMAC_KAFKA_BROKERS set, also the ClickHouse usage tables and the topics.
    Migrate,
    /// The usage aggregator: Kafka (DOTMAC_KAFKA_BROKERS) to ClickHouse (DOTMAC_CLICKHOUSE_URL).
    Aggregate,
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Administration of a production install.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Prints the GraphQL schema (SDL).
    Schema,
    /// Billing commands.
    Bill {
        #[command(subcommand)]
        command: BillCommand,
    },
    /// The orchestrator: reconciles tenants' instances on Kubernetes
    /// (orchestrator.kubeconfig) with their secrets in Vault (DOTMAC_VAULT_ADDR).
    Orchestrate {
        #[command(subcommand)]
        command: Option<OrchestrateCommand>,
    },
    /// Licence files: verify one offline, or make the platform's signing key.
    Licence {
        #[command(subcommand)]
        command: LicenceCommand,
    },
}

#[derive(Subcommand)]
enum LicenceCommand {
    /// Verifies a licence file offline, as an instance does: signature
    /// (keys compiled in), validity window, grace, revocation; prints what
    /// it grants. Exits non-zero when it does not verify.
    Verify {
        file: PathBuf,
        /// The tenant it must be for (default: the one it names).
        #[arg(long)]
        tenant: Option<String>,
        /// An instance id that must hold a seat.
        #[arg(long)]
        instance: Option<String>,
        /// A signed revocation list to check it against.
        #[arg(long)]
        revocations: Option<PathBuf>,
        /// Judge at this RFC 3339 time instead of now.
        #[arg(long)]
        now: Option<String>,
    },
    /// Makes a new signing key straight into Vault (DOTMAC_VAULT_ADDR) at
    /// platform/licence-signing and prints its public half, to compile into
    /// the verifier (licence/src/keys.rs) before signing with it.
    Keygen {
        /// The key's id (e.g. prod-2027).
        #[arg(long)]
        key_id: String,
        /// Replace a key already there.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum OrchestrateCommand {
    /// Prints the TenantInstance CRD (YAML), to apply before the first run.
    Crd,
    /// Rolls a framework version out across tenants in waves; stops at the
    /// first instance rolled back. Run it again to continue.
    Rollout {
        /// The framework version (image tag).
        #[arg(long)]
        version: String,
        /// Instances per wave.
        #[arg(long, default_value_t = 10)]
        wave_size: usize,
        /// Seconds between two waves.
        #[arg(long, default_value_t = 60)]
        pause_secs: u64,
        /// Seconds one wave may take before the rollout stops (default:
        /// twice orchestrator.progress_deadline_secs).
        #[arg(long)]
        wave_deadline_secs: Option<u64>,
    },
}

#[derive(Subcommand)]
enum BillCommand {
    /// Closes every subscription's period that starts in --period: rates its
    /// usage into a draft invoice, and finalizes drafts past their grace.
    /// Safe to run again, or twice at once.
    Close {
        /// The month, YYYY-MM.
        #[arg(long)]
        period: String,
        /// Days an invoice stays a draft after its period ends (late usage);
        /// default billing.grace_days.
        #[arg(long)]
        grace_days: Option<i64>,
        /// Run as of this RFC 3339 time instead of now.
        #[arg(long)]
        now: Option<String>,
        /// Close the embedded store of `dotmac dev` in this data dir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Reconciles the periods starting in --period: invoiced quantities vs
    /// committed rollups vs raw deduplicated events, per tenant and meter.
    /// Exits non-zero when anything differs.
    Reconcile {
        /// The month, YYYY-MM.
        #[arg(long)]
        period: String,
        /// Reconcile the embedded store of `dotmac dev` in this data dir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Dunning: past_due after the due date, suspension after
    /// billing.suspend_after_days, reactivation once paid.
    Dunning {
        /// Run as of this RFC 3339 time instead of now.
        #[arg(long)]
        now: Option<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Loads and validates the configuration, then prints it (secrets masked).
    Check,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Creates a user; the password is read from DOTMAC_ADMIN_PASSWORD or the first line of stdin.
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "platform_admin")]
        role: String,
        #[arg(long)]
        tenant_id: Option<String>,
        #[arg(long)]
        reseller_id: Option<String>,
    },
}

/// The clock of a command run "as of" `--now` (RFC 3339), else the wall clock.
fn clock_at(now: Option<&str>) -> anyhow::Result<SharedClock> {
    Ok(match now {
        None => dotmac_schema::clock::system(),
        Some(t) => {
            let at = chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|e| anyhow::anyhow!("--now: {t:?} is not an RFC 3339 time ({e})"))?
                .with_timezone(&chrono::Utc);
            let at = dotmac_schema::dates::check_time(at)
                .map_err(|e| anyhow::anyhow!("--now: {t:?} {e}"))?;
            Arc::new(ManualClock::new(at))
        }
    })
}

/// Logs as `DOTMAC_LOG` says (an env-filter), else at INFO.
fn init_tracing(format: &str) {
    init_tracing_with(format, QUIET_LIBRARIES)
}

/// The default filter: vaultrs logs every 404 as an ERROR, and a tenant
/// without secrets yet is an expected 404; the orchestrator reports the
/// store's real failures itself, with their context.
const QUIET_LIBRARIES: &str = "info,vaultrs=off,rustify=off";

/// Logs as `DOTMAC_LOG` says, else by `default` (an env-filter).
fn init_tracing_with(format: &str, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DOTMAC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Schema => {
            print!("{}", dotmac_api::graphql::sdl());
            Ok(())
        }
        Command::Licence {
            command:
                LicenceCommand::Verify {
                    file,
                    tenant,
                    instance,
                    revocations,
                    now,
                },
        } => verify_licence(
            &file,
            tenant,
            instance.as_deref(),
            revocations.as_deref(),
            now,
        ),
        Command::Licence {
            command: LicenceCommand::Keygen { key_id, force },
        } => licence_keygen(&config, &key_id, force).await,
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            let mut shown = config.clone();
            if !shown.billing.payment_webhook_secret.is_empty() {
                shown.billing.payment_webhook_secret = "***".into();
            }
            if !shown.auth.jwt_secret.is_empty() {
                shown.auth.jwt_secret = "***".into();
            }
            println!(
                "configuration is valid:\n{}",
                serde_json::to_string_pretty(&shown)?
            );
            Ok(())
        }
        Command::Migrate => {
            init_tracing(&config.log_format);
            let store = Store::connect(&config.database_url, 2)
                .await
                .context("connecting to database_url")?;
            store.migrate().await.context("migrating")?;
            if !config.kafka_brokers.is_empty() {
                config
                    .usage_store()
                    .migrate()
                    .await
                    .context("migrating clickhouse at clickhouse_url")?;
                dotmac_ingest::kafka::create_topics(
                    &config.kafka_brokers,
                    &config.kafka_security,
                    &config.topics(),
                )
                .await
                .context("creating topics at kafka_brokers")?;
            }
            println!("migrations applied");
            Ok(())
        }
        Command::Aggregate => {
            init_tracing(&config.log_format);
            let settings = config.aggregator()?;
            let store = Store::connect(&config.database_url, 2)
                .await
                .context("connecting to database_url")?;
            let catalog = Arc::new(dotmac_api::pipeline::catalog::StoreCatalog::new(store));
            let bus = dotmac_api::bus::RedisBus::connect(
                &config.redis_url,
                &format!("{}:events", config.redis_prefix),
            )
            .await
            .map_err(|e| anyhow::anyhow!("redis at redis_url: {e}"))?;
            let hook =
                dotmac_api::pipeline::usage_updates::publish_usage_updates(bus, catalog.clone());
            let (stop, stopped) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                wiring::shutdown_signal().await;
                tracing::info!("stopping: draining pending usage");
                let _ = stop.send(true);
            });
            let stats = Arc::new(dotmac_aggregator::AggregatorStats::default());
            // Raw-event retention and compaction of closed rollup buckets,
            // hourly, beside the consumer.
            let (retention, usage, clock) = (
                config.retention(),
                config.usage_store(),
                settings.clock.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let cutoff = retention.raw_cutoff(clock.now());
                    if let Err(e) =
                        dotmac_aggregator::retention::drop_expired_raw(&usage, cutoff).await
                    {
                        tracing::warn!(error = %e, "raw-event retention failed; retried in an hour");
                    }
                    if let Err(e) = dotmac_aggregator::compaction::compact_closed(
                        &usage,
                        clock.now(),
                        retention.dedupe_horizon,
                    )
                    .await
                    {
                        tracing::warn!(error = %e, "compaction failed; retried in an hour");
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                }
            });
            dotmac_aggregator::run(
                settings,
                config.usage_store(),
                catalog,
                stats,
                stopped,
                Some(hook),
            )
            .await
            .context("aggregating")?;
            Ok(())
        }
        Command::Admin {
            command:
                AdminCommand::CreateUser {
                    email,
                    role,
                    tenant_id,
                    reseller_id,
                },
        } => {
            init_tracing(&config.log_format);
            let role =
                Role::parse(&role).with_context(|| format!("--role: unknown role {role:?}"))?;
            let password = match std::env::var("DOTMAC_ADMIN_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    eprintln!("password (one line on stdin):");
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let app = wiring::production_app(config, dotmac_schema::clock::system()).await?;
            let user = dotmac_api::service::identity::users::create_user_system(
                &app.identity,
                &email,
                &password,
                role,
                tenant_id,
                reseller_id,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("created {} ({}) as {}", user.email, user.id, user.role);
            Ok(())
        }
        Command::Bill {
            command:
                BillCommand::Close {
                    period,
                    grace_days,
                    now,
                    data_dir,
                },
        } => {
            init_tracing(&config.log_format);
            let month = dotmac_schema::dates::parse_month(&period)
                .map_err(|e| anyhow::anyhow!("--period: {period:?} {e}"))?;
            let clock = clock_at(now.as_deref())?;
            let now = clock.now();
            let grace_days = grace_days.unwrap_or(config.billing.grace_days);
            if !(0..=dotmac_api::config::MAX_GRACE_DAYS).contains(&grace_days) {
                bail!(
                    "--grace-days: must be 0 to {} days",
                    dotmac_api::config::MAX_GRACE_DAYS
                );
            }
            let app = match data_dir {
                Some(dir) => wiring::embedded_app(config, &dir, clock.clone()).await?,
                None => wiring::production_app(config, clock.clone()).await?,
            };
            tracing::info!("connected; closing {period}");
            let request = dotmac_api::service::billing::close::CloseRequest {
                month,
                now,
                grace: chrono::TimeDelta::days(grace_days),
            };
            let progress = |done: usize, total: usize| {
                eprint!("\rclosing {period}: {done}/{total}");
                if done == total {
                    eprintln!();
                }
            };
            let report = dotmac_api::service::billing::close::close_period(
                &app.billing,
                &request,
                &progress,
            )
            .await
            .map_err(|e| anyhow::anyhow!("closing {period}: {e}"))?;
            publish_before_exit(&app).await;
            println!(
                "{period}: {} subscriptions, {} drafted, {} updated, {} unchanged, {} finalized, {} in trial",
                report.subscriptions,
                report.drafted,
                report.updated,
                report.unchanged,
                report.finalized,
                report.in_trial
            );
            for f in &report.failed {
                eprintln!(
                    "not billed: subscription {} of tenant {}: {}",
                    f.subscription_id, f.tenant_id, f.cause
                );
            }
            for c in &report.credit_due {
                println!(
                    "usage fell after billing (a credit note is the platform's call): subscription {} of tenant {}, {} for the period from {}: billed {}, counted {}, worth {}",
                    c.subscription_id, c.tenant_id, c.fall.meter, c.fall.original.start, c.fall.was, c.fall.now, c.fall.credit
                );
            }
            if !report.failed.is_empty() {
                bail!(
                    "{period}: {} subscriptions could not be billed (the others were)",
                    report.failed.len()
                );
            }
            Ok(())
        }
        Command::Bill {
            command: BillCommand::Reconcile { period, data_dir },
        } => {
            init_tracing(&config.log_format);
            let clock = dotmac_schema::clock::system();
            let month = dotmac_schema::dates::parse_month(&period)
                .map_err(|e| anyhow::anyhow!("--period: {period:?} {e}"))?;
            let app = match data_dir {
                Some(dir) => wiring::embedded_app(config, &dir, clock.clone()).await?,
                None => wiring::production_app(config, clock.clone()).await?,
            };
            let report = dotmac_api::service::billing::reconcile::reconcile(
                &app.billing,
                &dotmac_schema::Scope::All,
                month,
            )
            .await
            .map_err(|e| anyhow::anyhow!("reconciling {period}: {e}"))?;
            println!("tenant\tmeter\tinvoiced\trollups\traw\tcauses");
            for r in &report.rows {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    r.tenant_id,
                    r.meter,
                    r.invoiced
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "-".into()),
                    r.rollups,
                    r.raw,
                    r.causes.join("; ")
                );
            }
            let n = report.discrepancies();
            if n > 0 {
                bail!("{period}: {n} discrepancies");
            }
            println!("{period}: clean ({} rows)", report.rows.len());
            Ok(())
        }
        Command::Bill {
            command: BillCommand::Dunning { now },
        } => {
            init_tracing(&config.log_format);
            let clock = clock_at(now.as_deref())?;
            let now = clock.now();
            let days = config.billing.suspend_after_days;
            let app = wiring::production_app(config, clock).await?;
            let r = dotmac_api::service::billing::dunning::run_dunning(&app.billing, now, days)
                .await
                .map_err(|e| anyhow::anyhow!("dunning: {e}"))?;
            publish_before_exit(&app).await;
            println!(
                "dunning: {} past due, {} suspended, {} reactivated",
                r.past_due, r.suspended, r.reactivated
            );
            Ok(())
        }
        Command::Orchestrate {
            command: Some(OrchestrateCommand::Crd),
        } => {
            print!("{}", dotmac_orchestrator::resource::crd_yaml());
            Ok(())
        }
        Command::Orchestrate {
            command:
                Some(OrchestrateCommand::Rollout {
                    version,
                    wave_size,
                    pause_secs,
                    wave_deadline_secs,
                }),
        } => {
            init_tracing(&config.log_format);
            let deadline = wave_deadline_secs.unwrap_or(
                2 * u64::try_from(config.orchestrator.progress_deadline_secs).unwrap_or(600),
            );
            let app = wiring::production_app(config, dotmac_schema::clock::system()).await?;
            let plan = dotmac_api::service::directory::rollout::RolloutPlan {
                version,
                wave_size,
                pause: std::time::Duration::from_secs(pause_secs),
                wave_deadline: std::time::Duration::from_secs(deadline),
            };
            // Recorded like one started through GraphQL, so operators follow
            // it in `instanceRollouts` and a second one cannot start meanwhile.
            let ctx = dotmac_api::caller::RequestCtx::system("rollout");
            let started =
                dotmac_api::service::directory::rollout::start(&app.directory, &ctx, &plan)
                    .await
                    .map_err(|e| anyhow::anyhow!("rollout: {e}"))?;
            println!("rollout {} of {}", started.id, plan.version);
            let done =
                dotmac_api::service::directory::rollout::run(&app.directory, &started, |p| {
                    println!(
                        "wave {}/{}: {} upgraded, {} to go{}",
                        p.wave,
                        p.waves,
                        p.upgraded,
                        p.remaining,
                        p.stopped
                            .as_deref()
                            .map(|s| format!("; stopped: {s}"))
                            .unwrap_or_default()
                    )
                })
                .await
                .map_err(|e| anyhow::anyhow!("rollout: {e}"))?;
            publish_before_exit(&app).await;
            if let Some(why) = done.stopped {
                bail!("rollout of {} stopped: {why}", plan.version);
            }
            println!(
                "rollout of {} done: {} instances upgraded",
                plan.version, done.upgraded
            );
            Ok(())
        }
        Command::Orchestrate { command: None } => {
            init_tracing(&config.log_format);
            let o = &config.orchestrator;
            let kubeconfig = (!o.kubeconfig.is_empty()).then(|| PathBuf::from(&o.kubeconfig));
            let client = dotmac_orchestrator::kube_cluster::connect(kubeconfig.as_deref()).await?;
            let vault = wiring::secret_vault(&config, None)?;
            tracing::info!(secrets = %vault.describe(), "orchestrating tenant instances");
            dotmac_orchestrator::controller::run(
                client,
                vault,
                config.orchestrator_settings(),
                dotmac_schema::clock::system(),
                wiring::shutdown_signal(),
            )
            .await?;
            Ok(())
        }
        Command::Serve => {
            init_tracing(&config.log_format);
            let listen = config.listen.clone();
            let app = wiring::production_app(config, dotmac_schema::clock::system()).await?;
            dotmac_api::service::billing::schedule::spawn_schedule(app.billing.clone());
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding `listen` {listen}"))?;
            tracing::info!(%listen, "serving");
            wiring::serve(app, listener).await?;
            Ok(())
        }
        Command::Dev { listen, data_dir } => {
            // A newcomer reads the banner below, not every migration and
            // library message: warnings, and the platform's own news.
            init_tracing_with(
                &config.log_format,
                "warn,dotmac_api=info,vaultrs=off,rustify=off",
            );
            if listen.parse::<std::net::SocketAddr>().is_err() {
                bail!("--listen: {listen:?} is not an address such as 127.0.0.1:8000");
            }
            let password = std::env::var("DOTMAC_DEMO_PASSWORD")
                .unwrap_or_else(|_| DEFAULT_DEMO_PASSWORD.into());
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding --listen {listen}"))?;
            let addr = listener.local_addr()?;
            // The demo's tenants get instances: on the local recorder unless
            // a cluster was configured.
            let mut config = config;
            if config.orchestrator.target == dotmac_api::config::OrchestratorTarget::None {
                config.orchestrator.target = dotmac_api::config::OrchestratorTarget::Local;
            }
            let (app, pipeline) =
                wiring::embedded(config, &data_dir, dotmac_schema::clock::system()).await?;
            let fresh = seed::seed_demo(&app, &password)
                .await
                .map_err(|e| anyhow::anyhow!("seeding the demo: {e}"))?;
            seed::seed_demo_meters(&app)
                .await
                .map_err(|e| anyhow::anyhow!("seeding the demo meters: {e}"))?;
            seed::seed_demo_billing(&app, &pipeline)
                .await
                .map_err(|e| anyhow::anyhow!("seeding the demo billing: {e}"))?;
            let licence_files = seed::seed_demo_licensing(&app, &data_dir)
                .await
                .map_err(|e| anyhow::anyhow!("seeding the demo licences: {e}"))?;
            seed::spawn_usage_generator(app.clone());
            dotmac_api::service::billing::schedule::spawn_schedule(app.billing.clone());
            println!("DotMac dev is serving at http://{addr}/graphql (GraphiQL in a browser)");
            println!(
                "data dir: {} ({})",
                data_dir.display(),
                if fresh {
                    "demo seeded"
                } else {
                    "existing data"
                }
            );
            println!(
                "demo users (password {}):",
                if std::env::var("DOTMAC_DEMO_PASSWORD").is_ok() {
                    "from DOTMAC_DEMO_PASSWORD"
                } else {
                    DEFAULT_DEMO_PASSWORD
                }
            );
            for u in seed::demo_users() {
                println!(
                    "  {:<32} {}{}",
                    u.email,
                    u.role.as_str(),
                    u.tenant.map(|t| format!(" of {t}")).unwrap_or_default()
                );
            }
            println!(
                "demo usage: meters `session-bytes` and `sessions`, fed every 2 s for acme-fiber \
                 (query `usage(meter: \"sessions\", from: …, to: …)`, subscribe `usageUpdated`)"
            );
            let month = seed::last_month(app.clock.now());
            println!(
                "demo billing: last month is {month}; as the admin, close it with \
                 `mutation {{ closeBillingPeriod(month: \"{month}\") {{ drafted finalized }} }}` \
                 or `dotmac bill close --period {month} --data-dir {}`",
                data_dir.display()
            );
            println!(
                "demo instances: provisioned tenants get an ISP-framework instance on the local \
                 cluster, recorded as YAML in {}/cluster (Secrets redacted); query \
                 `tenants(first: 10) {{ edges {{ node {{ slug state instance {{ phase ready \
                 conditions {{ type ok reason }} }} }} }} }}`",
                data_dir.display()
            );
            println!(
                "demo licences: plugins in `plugins(first: 10)`; acme-fiber's licences (a paid one, \
                 a trial) in `licences(first: 10) {{ edges {{ node {{ plugin {{ slug }} tier kind file }} }} }}`, \
                 or GET /v1/licences/<id> with a license:read API key{}",
                match licence_files.first() {
                    Some(f) => format!("; verify one offline: `dotmac licence verify {}`", f.display()),
                    None => String::new(),
                }
            );
            println!("ready in {} ms", started.elapsed().as_millis());
            wiring::serve(app, listener).await?;
            Ok(())
        }
    }
}

/// A CLI run publishes what it recorded in the outbox before it exits; what
/// it cannot publish waits there for a serving process's relay.
async fn publish_before_exit(app: &dotmac_api::app::App) {
    if let Err(e) = app.outbox.drain().await {
        eprintln!("announcements wait in the outbox for a serving process: {e}");
    }
}

/// `dotmac licence verify`.
fn verify_licence(
    file: &std::path::Path,
    tenant: Option<String>,
    instance: Option<&str>,
    revocations: Option<&std::path::Path>,
    now: Option<String>,
) -> anyhow::Result<()> {
    use dotmac_licence::{envelope, Kind, LicencePayload, Verifier};
    let document = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let now = match now {
        Some(t) => chrono::DateTime::parse_from_rfc3339(&t)
            .context("--now must be an RFC 3339 time")?
            .timestamp(),
        None => chrono::Utc::now().timestamp(),
    };
    let verifier = Verifier::new(0);
    if let Some(path) = revocations {
        let list = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let seq = verifier
            .accept_revocations(&list)
            .map_err(|e| anyhow::anyhow!("revocation list: {e}"))?;
        println!("revocation list {seq} accepted");
    }
    let tenant = match tenant {
        Some(t) => t,
        None => {
            envelope::open_json::<LicencePayload>(&document, Kind::Licence)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
                .1
                .tenant_id
        }
    };
    let v = verifier
        .verify(&document, &tenant, instance, now)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let at = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0).map_or_else(|| t.to_string(), |d| d.to_rfc3339())
    };
    let p = &v.payload;
    println!(
        "licence {} for tenant {} (key {})",
        p.licence_id, p.tenant_id, v.key_id
    );
    println!("  standing: {:?}", v.standing);
    for g in &p.plugins {
        println!(
            "  plugin: {} at {}{}",
            g.plugin,
            g.tier,
            if g.trial { " (trial)" } else { "" }
        );
    }
    for (name, f) in &p.features {
        println!("  feature: {name} ({:?})", f.enforcement);
    }
    for (name, n) in &p.limits {
        println!("  limit: {name} = {n}");
    }
    println!("  seats: {}", p.instance_ids.join(", "));
    println!(
        "  valid {} to {}; refresh after {}; grace until {}",
        at(p.not_before),
        at(p.expires_at),
        at(p.refresh_after),
        at(p.grace_until)
    );
    if v.revocations_behind {
        println!(
            "  note: issued after revocation list {}; check a newer list",
            p.revocation_seq
        );
    }
    if let Some(by) = v.clock_rolled_back_by {
        println!("  warning: the clock is {by} s behind the latest time seen");
    }
    if v.standing == dotmac_licence::Standing::PastGrace {
        bail!(
            "{}: expired, and its grace ended at {}",
            file.display(),
            at(p.grace_until)
        );
    }
    Ok(())
}

/// `dotmac licence keygen`.
async fn licence_keygen(config: &Config, key_id: &str, force: bool) -> anyhow::Result<()> {
    use dotmac_api::service::licensing::VAULT_KEY_NAME;
    use dotmac_orchestrator::secrets::SecretValue;
    if config.vault_addr.is_empty() {
        bail!("vault_addr is not set (DOTMAC_VAULT_ADDR): the key is made straight into Vault");
    }
    let vault = wiring::openbao(config)?;
    if !force && vault.platform_secret(VAULT_KEY_NAME).await?.is_some() {
        bail!("a signing key exists at platform/{VAULT_KEY_NAME}: pass --force to replace it (files it signed stay valid only while its public key is compiled in)");
    }
    let seed: [u8; 32] = rand::random();
    let signer = dotmac_licence::sign::Signer::from_seed(key_id, seed)
        .map_err(|e| anyhow::anyhow!("--key-id: {e}"))?;
    vault
        .put_platform_secret(
            VAULT_KEY_NAME,
            &std::collections::BTreeMap::from([
                ("key_id".to_owned(), SecretValue::new(key_id.to_owned())),
                ("seed".to_owned(), SecretValue::new(hex::encode(seed))),
            ]),
        )
        .await?;
    let public = signer.public_key();
    println!("signing key {key_id} written to Vault at platform/{VAULT_KEY_NAME}");
    println!("compile its public half into licence/src/keys.rs (PRODUCTION):");
    println!(
        "    (\"{key_id}\", [{}]),",
        public
            .iter()
            .map(|b| format!("0x{b:02x}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
