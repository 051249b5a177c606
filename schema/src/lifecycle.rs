//! The lifecycles of billing objects, as enums end to end (the store keeps
//! their snake_case names in a text column, GraphQL shows them as enums):
//! subscriptions and their only legal transitions, invoices from draft to
//! settled, and how a payment arrived (credit notes have no lifecycle: one
//! is final when issued); and rollouts of a framework version across
//! tenants' instances.

/// Where a subscription is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(
    feature = "sea-orm",
    derive(sea_orm::EnumIter, sea_orm::DeriveActiveEnum),
    sea_orm(rs_type = "String", db_type = "Text")
)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionState {
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "trial"))]
    Trial,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "active"))]
    Active,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "past_due"))]
    PastDue,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "paused"))]
    Paused,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "cancelled"))]
    Cancelled,
}

/// What happens to a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionEvent {
    /// The trial ran out (or was ended early).
    TrialEnded,
    /// An invoice passed its due date unpaid.
    InvoiceOverdue,
    /// Every overdue invoice is paid.
    OverduePaid,
    Pause,
    Resume,
    Cancel,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state: a {from:?} subscription cannot take {event:?}")]
pub struct IllegalTransition {
    pub from: SubscriptionState,
    pub event: SubscriptionEvent,
}

impl SubscriptionState {
    pub const ALL: [SubscriptionState; 5] = [
        SubscriptionState::Trial,
        SubscriptionState::Active,
        SubscriptionState::PastDue,
        SubscriptionState::Paused,
        SubscriptionState::Cancelled,
    ];

    /// The state after `event`, or why it is not allowed.
    pub fn on(self, event: SubscriptionEvent) -> Result<SubscriptionState, IllegalTransition> {
        use SubscriptionEvent as E;
        use SubscriptionState as S;
        let next = match (self, event) {
            (S::Trial, E::TrialEnded) => S::Active,
            (S::Active, E::InvoiceOverdue) | (S::PastDue, E::InvoiceOverdue) => S::PastDue,
            (S::PastDue, E::OverduePaid) => S::Active,
            (S::Active, E::Pause) => S::Paused,
            (S::Paused, E::Resume) => S::Active,
            (S::Trial | S::Active | S::PastDue | S::Paused, E::Cancel) => S::Cancelled,
            (from, event) => return Err(IllegalTransition { from, event }),
        };
        Ok(next)
    }

    /// The stored name: `trial`, `active`, `past_due`, `paused`, `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionState::Trial => "trial",
            SubscriptionState::Active => "active",
            SubscriptionState::PastDue => "past_due",
            SubscriptionState::Paused => "paused",
            SubscriptionState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<SubscriptionState> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// Whether the recurring fee accrues in this state (not in a trial,
    /// a pause or after cancellation).
    pub fn accrues(self) -> bool {
        matches!(self, SubscriptionState::Active | SubscriptionState::PastDue)
    }
}

/// Where an invoice is in its life: a draft while its period's late usage
/// may still change it, finalized (immutable, numbered), then settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(
    feature = "sea-orm",
    derive(sea_orm::EnumIter, sea_orm::DeriveActiveEnum),
    sea_orm(rs_type = "String", db_type = "Text")
)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "draft"))]
    Draft,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "finalized"))]
    Finalized,
    /// Nothing is left to pay (paid, credited, or covered by prepaid credit).
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "paid"))]
    Paid,
    /// Cancelled before anything was paid or credited: bills nothing.
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "void"))]
    Void,
    /// Written off; a later payment still settles it.
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "uncollectible"))]
    Uncollectible,
}

impl InvoiceStatus {
    pub const ALL: [InvoiceStatus; 5] = [
        InvoiceStatus::Draft,
        InvoiceStatus::Finalized,
        InvoiceStatus::Paid,
        InvoiceStatus::Void,
        InvoiceStatus::Uncollectible,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "draft",
            InvoiceStatus::Finalized => "finalized",
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Void => "void",
            InvoiceStatus::Uncollectible => "uncollectible",
        }
    }

    pub fn parse(s: &str) -> Option<InvoiceStatus> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Whether credit notes and payments may apply to it.
    pub fn settleable(self) -> bool {
        matches!(
            self,
            InvoiceStatus::Finalized | InvoiceStatus::Uncollectible | InvoiceStatus::Paid
        )
    }

    /// Whether it may become `to` by an operator's decision: void only
    /// while finalized and `untouched` (nothing paid or credited), written
    /// off only while finalized.
    pub fn may_become(self, to: InvoiceStatus, untouched: bool) -> bool {
        match to {
            InvoiceStatus::Void => self == InvoiceStatus::Finalized && untouched,
            InvoiceStatus::Uncollectible => self == InvoiceStatus::Finalized,
            _ => false,
        }
    }
}

impl std::fmt::Display for InvoiceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a payment arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(
    feature = "sea-orm",
    derive(sea_orm::EnumIter, sea_orm::DeriveActiveEnum),
    sea_orm(rs_type = "String", db_type = "Text")
)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    /// Recorded by a platform admin.
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "manual"))]
    Manual,
    /// Reported by the payment provider's signed webhook.
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "webhook"))]
    Webhook,
}

impl PaymentMethod {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Manual => "manual",
            PaymentMethod::Webhook => "webhook",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in SubscriptionState::ALL {
            assert_eq!(SubscriptionState::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::String(s.as_str().into())
            );
        }
        for s in InvoiceStatus::ALL {
            assert_eq!(InvoiceStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::String(s.as_str().into())
            );
        }
    }

    #[test]
    fn only_finalized_untouched_invoices_are_voided() {
        use InvoiceStatus as I;
        assert!(I::Finalized.may_become(I::Void, true));
        assert!(!I::Finalized.may_become(I::Void, false));
        assert!(!I::Paid.may_become(I::Void, true));
        assert!(I::Finalized.may_become(I::Uncollectible, false));
        assert!(!I::Draft.may_become(I::Uncollectible, true));
        assert!(
            !I::Finalized.may_become(I::Paid, true),
            "paid is reached by settling"
        );
        assert!(!I::Draft.settleable() && !I::Void.settleable());
    }
}

/// Where a rollout of a framework version across tenants' instances is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(
    feature = "sea-orm",
    derive(sea_orm::EnumIter, sea_orm::DeriveActiveEnum),
    sea_orm(rs_type = "String", db_type = "Text")
)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Waves are being upgraded (its runner reports at least every minute).
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "running"))]
    Running,
    /// Every tenant that was not on the version runs it now.
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "completed"))]
    Completed,
    /// An instance was rolled back, a wave missed its deadline, or an
    /// upgrade failed: later tenants keep their version.
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "stopped"))]
    Stopped,
    /// The process running it went away. Starting the version again
    /// continues: tenants already on it are skipped.
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "interrupted"))]
    Interrupted,
}
