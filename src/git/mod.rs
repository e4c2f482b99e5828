//! Everything gix: the bare object store, fetching one branch, ancestry, writing a tree and the
//! checkout link that points at it.

mod fetch;
mod heal;
pub mod options;
pub mod pack;
mod repo_size;
mod store;
pub mod tree;
pub mod trust;

pub use fetch::Fetched;
pub use heal::{after_read_failure, fetch};
pub use store::{
    commit_time, open_store, record_applied, recorded_applied, relation, subject, Relation,
    APPLIED_REF,
};
pub use tree::write_tree;
