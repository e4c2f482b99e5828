//! The pass: lock, fetch, decide (a pure function), apply the entry point, record the outcome in
//! the state directory.

pub mod apply;
pub mod commit;
pub mod decide;
pub mod guard;
pub mod health;
mod hold;
pub mod lock;
pub mod observe;
pub mod plan;
pub mod run;
pub mod state;
pub mod suspend;

pub use crate::report::text::one_line;
pub use run::{record_config_error, run};
