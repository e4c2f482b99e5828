//! The integration tests: the real binary against real Git servers on 127.0.0.1.

mod harness;
mod receiver;
mod support;

mod bad_input;
mod config_attacks;
mod config_file;
mod crash;
mod env_fds_checkout;
mod fleetlock_server;
mod hostile_content;
mod install_trigger;
mod install_units;
mod journal;
mod limits_secrets_messages;
mod local_attacks;
mod metrics;
mod newcomer;
mod notify;
mod notify_pass;
mod orphans;
mod pass_guards;
mod reboot;
mod records;
mod state_dir;
mod status_report;
mod status_truth;
mod store_heal;
mod sync_pass;
mod transport_trust;
mod transports;
mod tree_write;
mod trigger;
mod trigger_attacks;
mod trust;
mod trust_attacks;
