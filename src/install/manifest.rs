//! The manifest: what install-units wrote, by fingerprint, so it can tell its files from an admin's edits.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::Result;

use super::units::{write, Item, MANIFEST};

/// A file's fingerprint: its Git blob id, which gix already computes for us.
pub(super) fn fingerprint(bytes: &[u8]) -> String {
    gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, bytes)
        .map(|id| id.to_string())
        .unwrap_or_default()
}

pub(super) fn fingerprint_item(item: &Item) -> String {
    match item {
        Item::File { text, .. } => fingerprint(text.as_bytes()),
        Item::Link { target, .. } => format!("link:{target}"),
    }
}

pub(super) fn read_manifest(root: &Path) -> BTreeMap<String, String> {
    let text = fs::read_to_string(root.join(MANIFEST)).unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .map(|(print, path)| (path.to_string(), print.to_string()))
        .collect()
}

pub(super) fn write_manifest(root: &Path, manifest: &BTreeMap<String, String>) -> Result<()> {
    let mut text = String::from("# What `gitops install-units` wrote here, so it can tell its files from an admin's edits.\n");
    for (path, print) in manifest {
        text.push_str(&format!("{print} {path}\n"));
    }
    write(
        root,
        &Item::File {
            path: MANIFEST,
            text,
            mode: 0o600,
        },
    )
}
