#!/usr/bin/env bash
# Build the release binary and the .deb and .rpm packages from Cargo.toml's metadata.
# Needs cargo-deb and cargo-generate-rpm (`cargo install --locked cargo-deb cargo-generate-rpm`).
# Prints the paths of the two packages.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --locked
deb=$(cargo deb --no-build --quiet | tail -n 1)
cargo generate-rpm
rpm=$(ls -t target/generate-rpm/gitops-*.rpm | head -n 1)
echo "$deb"
echo "$rpm"
