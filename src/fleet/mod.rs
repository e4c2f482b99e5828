//! One repository, many machines: who this machine is (its host name and groups), which of a
//! commit's entry points is its own, which commits concern it (`--watch`) and when its rollout
//! wave lets it apply one.

pub mod entry;
pub mod gate;
pub mod identity;
pub mod rollout;
pub mod watch;
