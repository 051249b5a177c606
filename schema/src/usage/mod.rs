//! Usage metering contracts: the CloudEvents usage event,
//! meter definitions, and rollup rows with their merge law.

pub mod event;
pub mod meter;
pub mod rollup;
pub mod view;

pub use event::{EventError, UsageEvent, MAX_EVENT_BYTES, MAX_ID_LEN};
pub use meter::{
    Aggregation, Contribution, Meter, MeterError, MeteredEvent, Part, Window, MAX_EVENT_VALUE,
};
pub use rollup::{
    fold, merge_all, merge_into, RollupError, RollupKey, RollupState, MAX_WINDOW_TOTAL,
};
pub use view::{EventView, Scalar};
