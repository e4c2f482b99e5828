//! One repository, many machines: who this machine is (its host name and groups) and which of
//! a commit's entry points is its own.

pub mod entry;
pub mod identity;
pub mod rollout;
