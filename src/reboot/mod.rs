//! Reboots declared in Git: the request, the plan (a pure decision), the fleet lock, and
//! carrying a reboot out exactly once.

pub mod act;
pub mod facts;
pub mod fleetlock;
pub mod plan;
pub mod request;
pub mod window;
