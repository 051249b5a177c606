//! Tenant lifecycle: its states and the only legal transitions
//! between them. Every state change in the platform goes through [`TenantState::apply`].

use std::fmt;

/// Where a tenant is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(
    feature = "sea-orm",
    derive(sea_orm::EnumIter, sea_orm::DeriveActiveEnum),
    sea_orm(rs_type = "String", db_type = "Text")
)]
#[serde(rename_all = "snake_case")]
pub enum TenantState {
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "pending"))]
    Pending,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "provisioning"))]
    Provisioning,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "active"))]
    Active,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "suspended"))]
    Suspended,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "maintenance"))]
    Maintenance,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "failed"))]
    Failed,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "cancelled"))]
    Cancelled,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "deprovisioned"))]
    Deprovisioned,
}

/// A lifecycle operation an operator (or the orchestrator) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "snake_case")]
pub enum TenantAction {
    /// pending/failed → provisioning.
    Provision,
    /// provisioning/maintenance → active.
    Activate,
    /// provisioning → failed.
    MarkFailed,
    /// active → suspended.
    Suspend,
    /// suspended → active.
    Reactivate,
    /// active → maintenance.
    StartMaintenance,
    /// pending/active/suspended/failed → cancelled.
    Cancel,
    /// cancelled → deprovisioned.
    Deprovision,
}

/// An operation asked of a tenant in a state that does not allow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a tenant that is {from}")]
pub struct TransitionError {
    pub from: TenantState,
    pub action: TenantAction,
}

impl TenantState {
    pub const ALL: [TenantState; 8] = [
        TenantState::Pending,
        TenantState::Provisioning,
        TenantState::Active,
        TenantState::Suspended,
        TenantState::Maintenance,
        TenantState::Failed,
        TenantState::Cancelled,
        TenantState::Deprovisioned,
    ];

    /// The listed transitions; everything else is illegal.
    pub const TRANSITIONS: [(TenantState, TenantAction, TenantState); 12] = {
        use TenantAction as A;
        use TenantState as S;
        [
            (S::Pending, A::Provision, S::Provisioning),
            (S::Failed, A::Provision, S::Provisioning),
            (S::Provisioning, A::Activate, S::Active),
            (S::Maintenance, A::Activate, S::Active),
            (S::Provisioning, A::MarkFailed, S::Failed),
            (S::Active, A::Suspend, S::Suspended),
            (S::Suspended, A::Reactivate, S::Active),
            (S::Active, A::StartMaintenance, S::Maintenance),
            (S::Pending, A::Cancel, S::Cancelled),
            (S::Active, A::Cancel, S::Cancelled),
            (S::Suspended, A::Cancel, S::Cancelled),
            (S::Cancelled, A::Deprovision, S::Deprovisioned),
        ]
    };

    /// The state after `action`, or why it is not allowed from here.
    pub fn apply(self, action: TenantAction) -> Result<TenantState, TransitionError> {
        Self::TRANSITIONS
            .iter()
            .find(|(from, a, _)| *from == self && *a == action)
            .map(|(_, _, to)| *to)
            .ok_or(TransitionError { from: self, action })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TenantState::Pending => "pending",
            TenantState::Provisioning => "provisioning",
            TenantState::Active => "active",
            TenantState::Suspended => "suspended",
            TenantState::Maintenance => "maintenance",
            TenantState::Failed => "failed",
            TenantState::Cancelled => "cancelled",
            TenantState::Deprovisioned => "deprovisioned",
        }
    }

    pub fn parse(s: &str) -> Option<TenantState> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for TenantState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TenantAction {
    pub const ALL: [TenantAction; 8] = [
        TenantAction::Provision,
        TenantAction::Activate,
        TenantAction::MarkFailed,
        TenantAction::Suspend,
        TenantAction::Reactivate,
        TenantAction::StartMaintenance,
        TenantAction::Cancel,
        TenantAction::Deprovision,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TenantAction::Provision => "provision",
            TenantAction::Activate => "activate",
            TenantAction::MarkFailed => "mark failed",
            TenantAction::Suspend => "suspend",
            TenantAction::Reactivate => "reactivate",
            TenantAction::StartMaintenance => "start maintenance of",
            TenantAction::Cancel => "cancel",
            TenantAction::Deprovision => "deprovision",
        }
    }
}

impl fmt::Display for TenantAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_action() -> impl Strategy<Value = TenantAction> {
        proptest::sample::select(TenantAction::ALL.to_vec())
    }

    /// The legal transitions, written out independently of the table.
    fn listed(from: TenantState, to: TenantState) -> bool {
        use TenantState::*;
        matches!(
            (from, to),
            (Pending, Provisioning)
                | (Provisioning, Active)
                | (Provisioning, Failed)
                | (Failed, Provisioning)
                | (Active, Suspended)
                | (Suspended, Active)
                | (Active, Maintenance)
                | (Maintenance, Active)
                | (Pending | Active | Suspended, Cancelled)
                | (Cancelled, Deprovisioned)
        )
    }

    proptest! {
        #[test]
        fn no_sequence_reaches_an_unlisted_transition(actions in proptest::collection::vec(any_action(), 0..64)) {
            let mut state = TenantState::Pending;
            for action in actions {
                match state.apply(action) {
                    Ok(next) => {
                        prop_assert!(listed(state, next), "{state} -[{action}]-> {next} is not listed");
                        state = next;
                    }
                    Err(e) => {
                        prop_assert_eq!(e, TransitionError { from: state, action });
                    }
                }
            }
        }

        #[test]
        fn deprovisioned_is_terminal(action in any_action()) {
            prop_assert!(TenantState::Deprovisioned.apply(action).is_err());
        }
    }

    #[test]
    fn error_names_current_state_and_action() {
        let err = TenantState::Pending
            .apply(TenantAction::Suspend)
            .unwrap_err();
        assert_eq!(err.to_string(), "cannot suspend a tenant that is pending");
    }

    #[test]
    fn states_round_trip_through_text() {
        for s in TenantState::ALL {
            assert_eq!(TenantState::parse(s.as_str()), Some(s));
        }
    }
}
