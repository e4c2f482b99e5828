//! What the passes did, told to the operator: `gitops status`, notifications, metrics, the
//! journal's priorities.

pub mod journal;
pub mod metrics;
pub mod notify;
pub mod status;
pub mod text;
