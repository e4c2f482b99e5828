#!/usr/bin/env bash
# Build gitops and run it against examples/config-repo, with state, checkout and the files
# run.sh writes all under one temporary directory: no root needed, nothing outside it touched.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gitops-demo.XXXXXX")

echo "==> building gitops"
cargo build --quiet --manifest-path "$here/Cargo.toml"
gitops="$here/target/debug/gitops"

echo "==> making a Git repository of examples/config-repo in $tmp/config-repo"
cp -r "$here/examples/config-repo" "$tmp/config-repo"
git -C "$tmp/config-repo" init --quiet --initial-branch=main
git -C "$tmp/config-repo" add --all
git -C "$tmp/config-repo" -c user.name=demo -c user.email=demo@localhost commit --quiet -m "Example configuration"

# The same settings the timer would read from /etc/gitops/gitops.env.
cat > "$tmp/gitops.env" <<ENV
GITOPS_REPO_URL=$tmp/config-repo
GITOPS_STATE_DIR=$tmp/state
GITOPS_CHECKOUT=$tmp/gitops
DEMO_ROOT=$tmp/root
ENV

echo "==> gitops sync (first pass: clones and applies)"
"$gitops" --config "$tmp/gitops.env" sync
echo "==> gitops sync (second pass: nothing changed, nothing runs)"
"$gitops" --config "$tmp/gitops.env" sync
echo "==> $tmp/root/etc/motd"
cat "$tmp/root/etc/motd"
echo "==> gitops status"
"$gitops" --config "$tmp/gitops.env" status
echo
echo "Everything is under $tmp (remove it with: rm -rf $tmp)"
