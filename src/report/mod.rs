//! What the passes did, told to the operator: `gitops status`.

pub mod status;
