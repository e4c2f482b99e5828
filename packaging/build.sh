#!/usr/bin/env bash
# Build the release binary and the .deb and .rpm packages from Cargo.toml's metadata.
# Installs cargo-deb and cargo-generate-rpm (`cargo install --locked`, pinned versions) when
# they are missing. Prints the paths of the two packages.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Their progress goes to stderr: stdout carries only the two paths.
if ! cargo deb --version >/dev/null 2>&1; then
    cargo install --locked --quiet cargo-deb --version 3.8.0 >&2
fi
if ! cargo generate-rpm --version >/dev/null 2>&1; then
    cargo install --locked --quiet cargo-generate-rpm --version 0.21.1 >&2
fi

cargo build --release --locked
# The man pages and completions, from the binary's own clap definition.
rm -rf target/assets
target/release/gitops generate-docs target/assets
gzip -9n target/assets/man/man1/*.1
deb=$(cargo deb --no-build --quiet | tail -n 1)
cargo generate-rpm
rpm=$(ls -t target/generate-rpm/gitops-*.rpm | head -n 1)
echo "$deb"
echo "$rpm"
