//! sea-orm entities, one per table of the migrations. Timestamps are UTC;
//! lifecycle states and tiers are the schema's enums, stored as their
//! snake_case text.

pub mod reseller {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "resellers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub tier: dotmac_schema::ResellerTier,
        pub contact_email: Option<String>,
        pub created_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod tenant {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tenants")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub slug: String,
        pub state: dotmac_schema::TenantState,
        pub state_reason: Option<String>,
        pub tier: dotmac_schema::ResourceTier,
        pub contact_name: Option<String>,
        pub contact_email: Option<String>,
        pub reseller_id: Option<String>,
        pub created_at: ChronoDateTimeUtc,
        pub updated_at: ChronoDateTimeUtc,
        /// ISO 3166 code (`KE`, `US-CA`) whose tax rate its invoices carry.
        pub tax_jurisdiction: Option<String>,
        /// When the tenant entered its state (a suspended tenant's keys may
        /// still report usage timed before it).
        pub state_changed_at: Option<ChronoDateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub email: String,
        pub name: Option<String>,
        pub password_hash: String,
        pub role: String,
        pub tenant_id: Option<String>,
        pub reseller_id: Option<String>,
        pub created_at: ChronoDateTimeUtc,
        /// Access tokens carry it; signing out or changing the password
        /// moves it on, which revokes every token issued before.
        pub token_generation: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Failed sign-ins of one account from one client, and that client's
/// lockout of the account.
pub mod login_attempt {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "login_attempts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub client: String,
        /// Failures since the last lock (or success).
        pub failures: i32,
        /// Locks so far: each lasts twice the one before.
        pub locks: i32,
        pub locked_until: Option<ChronoDateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod refresh_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refresh_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub user_id: String,
        pub family_id: String,
        pub token_hash: String,
        pub expires_at: ChronoDateTimeUtc,
        pub revoked_at: Option<ChronoDateTimeUtc>,
        pub created_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod invitation {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "invitations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub email: String,
        pub role: String,
        pub tenant_id: Option<String>,
        pub reseller_id: Option<String>,
        pub token_hash: String,
        pub invited_by: String,
        pub expires_at: ChronoDateTimeUtc,
        pub accepted_at: Option<ChronoDateTimeUtc>,
        pub created_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod api_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub name: String,
        pub prefix: String,
        pub secret_hash: String,
        /// Comma-separated `ApiKeyScope` texts.
        pub scopes: String,
        pub created_by: String,
        pub created_at: ChronoDateTimeUtc,
        pub last_used_at: Option<ChronoDateTimeUtc>,
        pub revoked_at: Option<ChronoDateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod audit {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub at: ChronoDateTimeUtc,
        pub actor: String,
        pub actor_role: Option<String>,
        pub scope: String,
        pub tenant_id: Option<String>,
        pub reseller_id: Option<String>,
        pub action: String,
        pub object_id: Option<String>,
        pub before_state: Option<String>,
        pub after_state: Option<String>,
        pub request_id: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod outbox {
    use sea_orm::entity::prelude::*;

    /// An announcement written with the change it announces, waiting for
    /// the relay while `published_at` is empty.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: Option<String>,
        pub reseller_id: Option<String>,
        pub kind: String,
        pub event: String,
        pub created_at: ChronoDateTimeUtc,
        pub published_at: Option<ChronoDateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod tenant_instance {
    use sea_orm::entity::prelude::*;

    /// What the control plane wants of a tenant's instance, how far the
    /// cluster was told, and what it last reported.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tenant_instances")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        /// The `TenantInstanceSpec` as JSON.
        pub desired: String,
        pub desired_generation: i64,
        pub synced_generation: i64,
        pub delete_requested: bool,
        /// Why the last sync to the cluster failed (cleared by a success).
        pub sync_error: Option<String>,
        /// The instance's `Phase`, as the cluster reported it.
        pub phase: Option<String>,
        /// The reported status (conditions, versions) as JSON.
        pub observed: Option<String>,
        pub observed_at: Option<ChronoDateTimeUtc>,
        /// When its secrets were made or last rotated (the schedule's clock).
        pub secrets_rotated_at: Option<ChronoDateTimeUtc>,
        pub updated_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod instance_rollout {
    use dotmac_schema::RolloutState;
    use sea_orm::entity::prelude::*;

    /// A rollout of a framework version across tenants' instances.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "instance_rollouts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub version: String,
        pub wave_size: i32,
        pub pause_secs: i64,
        pub wave_deadline_secs: i64,
        pub state: RolloutState,
        pub wave: i32,
        pub waves: i32,
        pub upgraded: i32,
        pub remaining: i32,
        pub stopped_reason: Option<String>,
        /// The platform admin who started it.
        pub started_by: String,
        pub started_at: ChronoDateTimeUtc,
        /// Its runner's last report: a running rollout not heard of for a
        /// while was interrupted.
        pub updated_at: ChronoDateTimeUtc,
        pub finished_at: Option<ChronoDateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod plugin {
    use sea_orm::entity::prelude::*;

    /// A plugin of the marketplace's catalog.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "plugins")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub slug: String,
        pub name: String,
        pub description: String,
        pub category: String,
        pub created_at: ChronoDateTimeUtc,
        pub updated_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod plugin_version {
    use sea_orm::entity::prelude::*;

    /// A plugin version and the framework versions it runs on.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "plugin_versions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub plugin_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: String,
        pub framework_min: String,
        pub framework_max: Option<String>,
        pub released_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod plugin_tier {
    use dotmac_schema::PluginTier;
    use sea_orm::entity::prelude::*;

    /// What a plugin's tier adds (features, JSON array) and costs.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "plugin_tiers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub plugin_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub tier: PluginTier,
        /// The features this tier adds to the tiers below it, as JSON.
        pub features: String,
        /// A decimal string, per month.
        pub monthly_fee: String,
        pub currency: String,
        pub usage_meter: Option<String>,
        pub usage_unit_price: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod licence {
    use dotmac_schema::{LicenceKind, LicenceState, PluginTier};
    use sea_orm::entity::prelude::*;

    /// A tenant's licence of one plugin.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "licences")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub plugin_id: String,
        /// The tier in force now (its history: `licence_tier_changes`).
        pub tier: PluginTier,
        pub kind: LicenceKind,
        pub state: LicenceState,
        pub activation_limit: i32,
        pub starts_at: ChronoDateTimeUtc,
        /// A trial's end, or a cancellation's.
        pub ends_at: Option<ChronoDateTimeUtc>,
        pub created_at: ChronoDateTimeUtc,
        pub updated_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod licence_tier_change {
    use dotmac_schema::PluginTier;
    use sea_orm::entity::prelude::*;

    /// A licence moved from one tier to another from an instant on.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "licence_tier_changes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub licence_id: String,
        pub tenant_id: String,
        pub from_tier: PluginTier,
        pub to_tier: PluginTier,
        pub effective_at: ChronoDateTimeUtc,
        pub created_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod licence_activation {
    use sea_orm::entity::prelude::*;

    /// One instance's seat on a licence.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "licence_activations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub licence_id: String,
        pub tenant_id: String,
        pub instance_id: String,
        pub activated_at: ChronoDateTimeUtc,
        pub deactivated_at: Option<ChronoDateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod licence_revocation {
    use sea_orm::entity::prelude::*;

    /// A licence withdrawn by the platform, at its place in the list.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "licence_revocations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub sequence: i64,
        pub licence_id: String,
        pub tenant_id: String,
        pub reason: String,
        pub revoked_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod meter {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "meters")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub slug: String,
        pub name: String,
        pub event_type: String,
        /// `Aggregation` in SCREAMING_SNAKE_CASE.
        pub aggregation: String,
        pub value_path: Option<String>,
        /// JSON array of property paths.
        pub group_by: String,
        /// `Window` in SCREAMING_SNAKE_CASE.
        pub window_size: String,
        pub created_at: ChronoDateTimeUtc,
        pub updated_at: ChronoDateTimeUtc,
        pub archived_at: Option<ChronoDateTimeUtc>,
        /// Whether events may carry negative values (refused by default).
        pub allow_negative: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod plan {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "plans")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub slug: String,
        pub version: i32,
        pub name: String,
        /// ISO-4217 code.
        pub currency: String,
        /// `Interval` in SCREAMING_SNAKE_CASE.
        pub billing_interval: String,
        pub trial_days: i32,
        /// JSON array of `dotmac_schema::price::Price`.
        pub prices: String,
        pub created_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod subscription {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "subscriptions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub plan_id: String,
        pub state: dotmac_schema::SubscriptionState,
        /// The first period's start, `YYYY-MM-DD`.
        pub anchor_date: String,
        pub trial_ends_at: Option<ChronoDateTimeUtc>,
        pub cancel_at_period_end: bool,
        pub cancelled_at: Option<ChronoDateTimeUtc>,
        /// Set with `cancel_at_period_end`: the end of the period in which
        /// the cancellation was asked, when it takes effect.
        pub cancels_at: Option<ChronoDateTimeUtc>,
        /// The anchor at 00:00 UTC: no other subscription of the tenant may
        /// cover an instant from here to `cancelled_at`.
        pub covers_from: ChronoDateTimeUtc,
        pub created_at: ChronoDateTimeUtc,
        pub updated_at: ChronoDateTimeUtc,
        /// JSON `dotmac_billing::TaxRate` of the tenant's jurisdiction.
        pub tax: Option<String>,
        /// JSON `dotmac_billing::Coupon`.
        pub coupon: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod invoice {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "invoices")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub subscription_id: String,
        /// `YYYY-MM-DD` (00:00 UTC).
        pub period_start: String,
        pub period_end: String,
        pub status: dotmac_schema::InvoiceStatus,
        pub currency: String,
        pub issuer: String,
        /// Assigned at finalization, gapless per issuer.
        pub number: Option<String>,
        pub subtotal: String,
        pub discount: String,
        pub tax: String,
        pub total: String,
        pub amount_due: String,
        /// JSON array of `dotmac_billing::InvoiceLine`.
        pub lines: String,
        pub finalized_at: Option<ChronoDateTimeUtc>,
        pub due_at: Option<ChronoDateTimeUtc>,
        pub created_at: ChronoDateTimeUtc,
        pub updated_at: ChronoDateTimeUtc,
        /// Payments applied to this invoice so far.
        pub paid: String,
        /// Credit notes applied to this invoice so far.
        pub credited: String,
        /// Prepaid credit used at finalization.
        pub credit_applied: String,
        /// What a negative total gave the tenant as credit, for its next
        /// invoices.
        pub credit_issued: String,
        /// Why it was voided or written off.
        pub status_reason: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod invoice_sequence {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "invoice_sequences")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub issuer: String,
        pub next_number: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod credit_note {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "credit_notes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub invoice_id: String,
        pub number: String,
        pub reason: String,
        /// JSON array of `{ line, net, tax }`.
        pub lines: String,
        pub total: String,
        /// The part beyond what the invoice still asked (it was paid).
        pub to_credit_balance: String,
        pub created_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod payment {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub invoice_id: String,
        pub amount: String,
        pub currency: String,
        pub method: dotmac_schema::PaymentMethod,
        /// Unique: a redelivered webhook records nothing twice.
        pub reference: String,
        pub to_invoice: String,
        pub to_credit_balance: String,
        pub received_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod credit_balance {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "credit_balances")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub currency: String,
        pub balance: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod plan_change {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "plan_changes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub subscription_id: String,
        pub from_plan_id: String,
        pub to_plan_id: String,
        pub changed_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod subscription_pause {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "subscription_pauses")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub subscription_id: String,
        pub paused_at: ChronoDateTimeUtc,
        /// None while the pause lasts.
        pub resumed_at: Option<ChronoDateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod tax_rate {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tax_rates")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub jurisdiction: String,
        pub name: String,
        /// Decimal text.
        pub percent: String,
        pub inclusive: bool,
        /// `YYYY-MM-DD`.
        pub effective_from: String,
        pub created_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
