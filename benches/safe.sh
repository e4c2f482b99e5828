#!/usr/bin/env bash
# benches/safe.sh: what the safe-change features cost, each side by side with its baseline.
#
#   plan, nothing new     `gitops plan` on a machine that has applied the tip, against the
#                         no-op `gitops sync` (the pass a timer runs every 5 minutes): what
#                         asking "what would the next pass do" costs beyond doing it.
#   plan, a new commit    `gitops plan` on a machine one commit behind (30 of 300 files changed),
#                         against git's own dry run in a clone just as far behind: `git fetch`,
#                         `git log HEAD..origin/main`, `git diff --stat HEAD origin/main` and the
#                         entry point's diff.
#   revert                a pass whose new commit fails its health check and is reverted
#                         (`--on-failure revert`: the new tree written and run, then the applied
#                         tree written again and run), against a pass whose new commit applies
#                         (the same change, a health check that passes). Each timed run starts
#                         from a copy of the same state directory, made untimed.
#
# Every row runs once untimed first; then RUNS rounds (default 15) rotate the contenders. Wall
# time is bash's $EPOCHREALTIME around the command; CPU is perf's task-clock of the command and
# its children when perf works here, else the rusage of the reaped children (1 ms steps). The
# revert row runs through `bash -c` (it must exit 1), which adds about a millisecond of CPU.
#
# Usage: benches/safe.sh          (builds target/release/gitops with cargo first)
#        GITOPS_BIN=/path/to/gitops RUNS=30 benches/safe.sh
# Needs git (with git daemon), bash >= 5. Uses only 127.0.0.1; leaves nothing behind.
set -euo pipefail

export BENCH_NAME=safe.sh
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${RUNS:-15}
FILES=300

bench_binary
bench_tmp gitops-safe
bench_isolate
export BENCH_PERF=1

say "benches/safe.sh: plan and revert, side by side with their baselines ($RUNS rounds)"
bench_machine

srv=$tmp/srv
mkdir -p "$srv"
work=$tmp/work
git init -q -b main "$work"
for i in $(seq 1 $FILES); do
    printf 'setting %d = %d\n' "$i" "$RANDOM" >"$work/file$i.conf"
done
printf '#!/bin/sh\ncat ./*.conf > "$OUT/applied"\n' >"$work/run.sh"
chmod +x "$work/run.sh"
git -C "$work" add -A
git -C "$work" commit -qm "the applied commit"
git clone -q --bare "$work" "$srv/good.git"
git clone -q --bare "$work" "$srv/bad.git"
bench_git_daemon "$srv"
url=git://127.0.0.1:$DAEMON_PORT

# One machine that applied the first commit, kept as the template of every timed run.
export OUT=$tmp/out
mkdir -p "$OUT"
template=$tmp/template
common=(--config "$tmp/empty.env")
"$gitops" sync "${common[@]}" --checkout "$tmp/link-template" --state-dir "$template" \
    --repo-url "$url/good.git" >/dev/null 2>&1 || die "the first pass failed"

# The same change on both servers: 30 files edited and a health check, passing on good.git,
# failing on bad.git.
change() { # change REPO HEALTH_EXIT
    local clone=$tmp/clone-$1
    git clone -q "$srv/$1.git" "$clone"
    for i in $(seq 1 30); do printf 'setting %d = changed\n' "$i" >"$clone/file$i.conf"; done
    mkdir -p "$clone/.gitops"
    printf '#!/bin/sh\nexit %d\n' "$2" >"$clone/.gitops/health"
    printf 'echo "converged"\n' >>"$clone/run.sh"
    chmod +x "$clone/.gitops/health"
    git -C "$clone" add -A
    git -C "$clone" commit -qm "thirty settings and a health check"
    git -C "$clone" push -q origin main
}
change good 0
change bad 1

# The machine for the plans: behind by that commit, as the template is. Its clone for git's
# dry run is as far behind.
planned=$tmp/planned
cp -a "$template" "$planned"
ln -s "$planned/trees/$(git -C "$srv/good.git" rev-parse main~1)" "$tmp/link-plan-new"
behind=$tmp/behind
git clone -q "$srv/good.git" "$behind"
git -C "$behind" reset -q --hard HEAD~1
ahead=$tmp/ahead
cp -a "$template" "$ahead"
"$gitops" sync "${common[@]}" --checkout "$tmp/link-ahead" --state-dir "$ahead" \
    --repo-url "$url/good.git" >/dev/null 2>&1 || die "the pass on good.git failed"
uptodate=$tmp/uptodate
git clone -q "$srv/good.git" "$uptodate"

# shellcheck disable=SC2016 # expanded by the inner bash
git_dry_run='git -C "$1" fetch -q origin &&
    git -C "$1" log --oneline HEAD..origin/main &&
    git -C "$1" diff --stat HEAD origin/main &&
    git -C "$1" diff HEAD origin/main -- run.sh'

declare -A wall cpu
contenders=(
    "sync-noop" "plan-noop"
    "plan-new" "git-dry-run"
    "apply" "revert"
)
run_one() {
    local fresh
    # Each contender its own checkout link: a no-op pass finding the link elsewhere would
    # repair it, and so do more than a no-op.
    local common=(--config "$tmp/empty.env" --checkout "$tmp/link-$1")
    case $1 in
    sync-noop) bench_run_timed "$1" "$gitops" sync "${common[@]}" --state-dir "$ahead" --repo-url "$url/good.git" ;;
    plan-noop) bench_run_timed "$1" "$gitops" plan "${common[@]}" --state-dir "$ahead" --repo-url "$url/good.git" ;;
    plan-new)
        # Exit 10: it would apply. bench_run_timed needs 0.
        bench_run_timed "$1" bash -c '"$@"; test $? -eq 10' _ "$gitops" plan "${common[@]}" --state-dir "$planned" --repo-url "$url/good.git"
        ;;
    git-dry-run) bench_run_timed "$1" bash -c "$git_dry_run" _ "$behind" ;;
    apply | revert)
        fresh=$tmp/run-$1
        rm -rf "$fresh" "$tmp/link-$1"
        cp -a "$template" "$fresh"
        if [[ $1 == apply ]]; then
            bench_run_timed "$1" "$gitops" sync "${common[@]}" --state-dir "$fresh" --repo-url "$url/good.git" --on-failure revert
        else
            bench_run_timed "$1" bash -c '"$@"; test $? -eq 1' _ "$gitops" sync "${common[@]}" --state-dir "$fresh" --repo-url "$url/bad.git" --on-failure revert
            grep -q '"outcome": "reverted"' "$fresh/state.json" || die "the revert row did not revert"
        fi
        ;;
    esac
    wall[$1]+="$WALL_MS "
    cpu[$1]+="$CPU_MS "
}

for c in "${contenders[@]}"; do run_one "$c"; done # untimed warm-up
for c in "${contenders[@]}"; do wall[$c]=""; cpu[$c]=""; done
for round in $(seq 1 "$RUNS"); do
    shift=$((round % ${#contenders[@]}))
    for k in $(seq 0 $((${#contenders[@]} - 1))); do
        run_one "${contenders[$(((k + shift) % ${#contenders[@]}))]}"
    done
done

median() { bench_stat median "$@"; }
say ""
printf '  %-14s %12s %12s\n' "" "wall ms" "CPU ms"
for c in "${contenders[@]}"; do
    # shellcheck disable=SC2086 # one value per word
    printf '  %-14s %12s %12s\n' "$c" "$(median ${wall[$c]})" "$(median ${cpu[$c]})"
done
pair() { # pair LABEL A B: medians of A over B
    local wa wb ca cb
    # shellcheck disable=SC2086
    wa=$(median ${wall[$2]}) wb=$(median ${wall[$3]}) ca=$(median ${cpu[$2]}) cb=$(median ${cpu[$3]})
    printf '  %-44s wall %sx  CPU %sx\n' "$1" "$(bench_ratio "$wa" "$wb")" "$(bench_ratio "$ca" "$cb")"
}
say ""
say "ratios (medians):"
pair "plan, nothing new / sync, nothing new" plan-noop sync-noop
pair "plan, a new commit / git fetch+log+diff" plan-new git-dry-run
pair "a pass that reverts / a pass that applies" revert apply
