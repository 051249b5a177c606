//! The composition root: one [`App`] per process composes the capabilities'
//! use cases ([`Directory`], [`Identity`], [`Metering`], [`Billing`],
//! [`Licensing`]) from
//! the store, the clock and the ports the wiring chose (`crate::wiring`):
//! production services in `serve`, embedded ones in `dev`. Transports read
//! it; nothing it composes knows which ports run.

use std::sync::Arc;

use dotmac_schema::SharedClock;

use crate::auth::TokenKeys;
use crate::bus::EventBus;
use crate::config::Config;
use crate::limiter::RateLimiter;
use crate::outbox::Outbox;
use crate::pipeline::{UsageReader, UsageSink};
use crate::service::billing::Billing;
use crate::service::directory::instance_watch;
use crate::service::directory::instances::{self, InstanceDefaults, Orchestration};
use crate::service::directory::Directory;
use crate::service::identity::standing::StandingCache;
use crate::service::identity::Identity;
use crate::service::licensing::{Licensing, SigningKey};
use crate::service::metering::Metering;
use crate::store::Store;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    /// Direct scoped reads of resolvers, and readiness.
    pub store: Store,
    /// Where every use case reads "now" (the wall clock in production).
    pub clock: SharedClock,
    /// Subscriptions listen here.
    pub bus: Arc<dyn EventBus>,
    /// Announcements of committed changes wait here for the relay.
    pub outbox: Arc<Outbox>,
    /// Per-tenant request rates.
    pub limiter: Arc<dyn RateLimiter>,
    /// Where `POST /v1/events` sends accepted events; `None` when no broker
    /// is configured.
    pub intake: Option<Arc<dyn UsageSink>>,
    pub directory: Directory,
    pub identity: Identity,
    pub metering: Metering,
    pub billing: Billing,
    pub licensing: Licensing,
}

/// The ports an [`App`] is composed of.
pub struct Ports {
    pub store: Store,
    pub clock: SharedClock,
    pub bus: Arc<dyn EventBus>,
    pub limiter: Arc<dyn RateLimiter>,
    pub keys: TokenKeys,
    pub usage: Arc<dyn UsageReader>,
    pub intake: Option<Arc<dyn UsageSink>>,
    /// Where tenants' instances are declared; `None` without a cluster target.
    pub instances: Option<Arc<dyn dotmac_orchestrator::cluster::Instances>>,
    /// The key licence files and entitlement snapshots are signed with.
    pub signing: Arc<dyn SigningKey>,
}

impl App {
    pub fn new(config: Config, ports: Ports) -> App {
        let Ports {
            store,
            clock,
            bus,
            limiter,
            keys,
            usage,
            intake,
            instances,
            signing,
        } = ports;
        let standing = Arc::new(StandingCache::default());
        let outbox = Outbox::new(store.clone(), bus.clone(), clock.clone());
        // The relay runs for the life of the process (every process has
        // one: what a dead one recorded is published by the others).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(outbox.clone().run());
        }
        let orchestration = instances.map(|instances| {
            let o = &config.orchestrator;
            Orchestration::new(
                instances,
                InstanceDefaults {
                    image: o.image.clone(),
                    version: o.version.clone(),
                    domain_suffix: (!o.domain_suffix.is_empty()).then(|| o.domain_suffix.clone()),
                    onboarding_deadline: chrono::TimeDelta::seconds(
                        i64::try_from(o.onboarding_deadline_secs).unwrap_or(i64::MAX),
                    ),
                    rotate_every: (o.rotate_secrets_days > 0)
                        .then(|| chrono::TimeDelta::days(i64::from(o.rotate_secrets_days))),
                },
            )
        });
        let directory = Directory {
            store: store.clone(),
            clock: clock.clone(),
            outbox: outbox.clone(),
            standing: standing.clone(),
            orchestration: orchestration.clone(),
        };
        // The sync and the watcher of tenants' instances run for the life
        // of the process, like the relay.
        if let (Some(o), Ok(runtime)) = (orchestration, tokio::runtime::Handle::try_current()) {
            runtime.spawn(instances::run_sync(directory.clone(), o.clone()));
            runtime.spawn(instance_watch::run_watch(directory.clone(), o));
        }
        let identity = Identity {
            store: store.clone(),
            clock: clock.clone(),
            keys,
            limiter: limiter.clone(),
            key_cache: Default::default(),
            standing,
            settings: config.auth.clone(),
            login_per_minute: config.limits.login_per_minute,
        };
        let metering = Metering {
            store: store.clone(),
            clock: clock.clone(),
            usage: usage.clone(),
        };
        let billing = Billing {
            store: store.clone(),
            clock: clock.clone(),
            outbox: outbox.clone(),
            usage,
            directory: directory.clone(),
            settings: config.billing.clone(),
        };
        let licensing = Licensing {
            store: store.clone(),
            clock: clock.clone(),
            outbox: outbox.clone(),
            signing,
            limiter: limiter.clone(),
        };
        App {
            config: Arc::new(config),
            store,
            clock,
            bus,
            outbox,
            limiter,
            intake,
            directory,
            identity,
            metering,
            billing,
            licensing,
        }
    }
}
