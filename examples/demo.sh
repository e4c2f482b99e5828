#!/usr/bin/env bash
# What gitops does, in two minutes and one temporary directory: build it, make a Git repository
# of examples/config-repo, and run passes against it as the timer would: the first apply, a
# pass with nothing to do, a new commit applied, a broken commit retried and then fixed, and a
# force-push refused. No root needed; nothing outside the temporary directory is touched.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gitops-demo.XXXXXX")
repo=$tmp/config-repo

step() { printf '\n==> %s\n' "$*"; }
# gitops EXPECTED ARGS...: run gitops with the demo's env file and show its exit code, which is
# what the timer sees; stop if it is not the one this step should give (CI runs the demo).
gitops() {
    local expected=$1 code=0
    shift
    "$here/target/debug/gitops" --config "$tmp/gitops.env" "$@" || code=$?
    echo "    (exit $code)"
    if [ "$code" -ne "$expected" ]; then
        echo "demo: gitops $* exited $code where $expected was expected" >&2
        exit 1
    fi
}
commit() { # commit MESSAGE: commit everything in the example repository
    git -C "$repo" add --all
    git -C "$repo" -c user.name=demo -c user.email=demo@localhost commit --quiet -m "$1"
    echo "    committed $(git -C "$repo" rev-parse --short=12 HEAD) \"$1\""
}

if [ ! -x "$here/target/debug/gitops" ]; then
    step "building gitops (the first build compiles about 250 crates: a few minutes)"
else
    step "building gitops"
fi
cargo build --quiet --manifest-path "$here/Cargo.toml"

step "making a Git repository of examples/config-repo in $repo"
cp -r "$here/examples/config-repo" "$repo"
git -C "$repo" init --quiet --initial-branch=main
commit "Example configuration"

# The same settings the timer reads from /etc/gitops/gitops.env.
cat >"$tmp/gitops.env" <<ENV
GITOPS_REPO_URL=$repo
GITOPS_STATE_DIR=$tmp/state
GITOPS_CHECKOUT=$tmp/gitops
DEMO_ROOT=$tmp/root
ENV

step "gitops sync: the first pass clones and runs run.sh"
gitops 0 sync
step "gitops sync: nothing changed, nothing runs"
gitops 0 sync

step "a new commit: the next pass applies it"
sed -i "s/^Managed by gitops.*/Managed by gitops: this line came with a new commit./" "$repo/motd"
commit "Say how the motd gets here"
gitops 0 sync
echo "    $tmp/root/etc/motd now reads:"
sed 's/^/      /' "$tmp/root/etc/motd"

step "a broken commit (a typo in run.sh): it fails, stays pending, and every pass retries it"
sed -i 's/^cp motd/cpy motd/' "$repo/run.sh"
commit "Install the motd (with a typo)"
gitops 1 sync
gitops 1 sync
step "gitops status: the applied commit is still the last good one; the broken one is pending"
gitops 1 status

step "the fix, as a new commit: applied, and status is healthy again"
sed -i 's/^cpy motd/cp motd/' "$repo/run.sh"
commit "Fix the typo"
gitops 0 sync
gitops 0 status

step "a force-push that rewinds the branch: refused, nothing runs, the applied commit stays"
git -C "$repo" reset --quiet --hard HEAD~3
echo "    main now points at $(git -C "$repo" rev-parse --short=12 HEAD) again"
gitops 4 sync

echo
echo "Everything is under $tmp (remove it with: rm -rf $tmp)"
