#!/usr/bin/env bash
# One repository, four machines, one computer: examples/fleet-repo served to web-1, web-2 and
# db-1 (listed under hosts/) and web-9 (only in the group web). Each runs its own entry point,
# a commit runs only where it changes something a machine watches, and a commit to common/
# goes out in waves. The rollout's clock is moved forward with GITOPS_TEST_CLOCK_OFFSET, which
# only debug builds (this one) read. No root needed; nothing outside a temporary directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gitops-fleet.XXXXXX")
repo=$tmp/fleet-repo
machines=(web-1 web-2 db-1 web-9)

step() { printf '\n==> %s\n' "$*"; }
commit() {
    git -C "$repo" add --all
    git -C "$repo" -c user.name=demo -c user.email=demo@localhost commit --quiet -m "$1"
    echo "    committed $(git -C "$repo" rev-parse --short=12 HEAD) \"$1\""
}
# on HOST [OFFSET] ARGS...: gitops as HOST's timer runs it, OFFSET seconds from now; its
# journal lines are shown indented, and it must exit 0 (CI runs this demo).
on() {
    local host=$1 offset=$2
    shift 2
    local group=
    [[ $host == web-* ]] && group=web
    GITOPS_HOST=$host GITOPS_GROUPS=$group GITOPS_TEST_CLOCK_OFFSET=$offset \
        GITOPS_TEST_MACHINE_ID="$(printf '%s' "$host" | sha256sum | cut -c1-32)" \
        GITOPS_REPO_URL=$repo GITOPS_STATE_DIR=$tmp/$host/state \
        GITOPS_CHECKOUT=$tmp/$host/gitops DEMO_ROOT=$tmp/$host/root \
        GITOPS_WATCH="hosts/{host}/ groups/{group}/ common/" GITOPS_CONFIG=/dev/null \
        "$here/target/debug/gitops" "$@" 2>&1 | sed "s/^/    $host | /"
    return "${PIPESTATUS[0]}"
}
every() { for m in "${machines[@]}"; do on "$m" "$@"; done; }

step "building gitops"
cargo build --quiet --manifest-path "$here/Cargo.toml"
cp -r "$here/examples/fleet-repo" "$repo"
git -C "$repo" init --quiet --initial-branch=main
commit "The fleet"

step "the first pass on each machine: each runs its own entry point"
every 0 sync

step "a commit to hosts/db-1/ only: db-1 runs it, the others skip it"
echo "shared_buffers = 1GB" >> "$repo/hosts/db-1/postgresql.conf"
commit "db-1: more shared buffers"
every 0 sync

step "a commit to common/: it goes out in waves (.gitops/rollout: 1, 50%, 100%, 30min apart)"
echo "Maintenance on Sunday 02:00 UTC." >> "$repo/common/motd"
commit "Announce maintenance"
every 0 sync
step "gitops status on a machine that waits"
for m in "${machines[@]}"; do
    if [ -n "$(on "$m" 0 status | grep 'waiting:')" ]; then
        on "$m" 0 status
        break
    fi
done
step "31 minutes later: the second wave"
every 1860 sync
step "61 minutes later: everyone"
every 3660 sync

echo
echo "Each machine's files are under $tmp/<host>/root (remove it all with: rm -rf $tmp)"
