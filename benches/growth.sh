#!/usr/bin/env bash
# benches/growth.sh: does the no-op pass stay as cheap after years of fetches? Issue 18's target:
# the no-op pass after 1,000 and after 10,000 fetches costs <= 1.1x the no-op pass after the
# first (CPU, measured side by side in the same run).
#
# One upstream (a run.sh and one file) served by `git daemon` on 127.0.0.1, and one gitops
# state directory that follows it. The branch moves one commit at a time (commits made
# beforehand with fast-import; the branch's ref file rewritten between passes) and a pass
# fetches and applies each: one fetch, one new pack. At each checkpoint in FETCHES (default
# "1 1000 10000") the state directory is copied, and a repository sharing the upstream's
# objects is served with its branch at that checkpoint's commit, so the copy's pass is a
# no-op pass on a store that has seen that many fetches.
# Then RUNS rounds (default 15) time a no-op pass of every copy, the order rotating: CPU as
# perf's task-clock of the command and its children when `perf stat` works here, else bash's
# `times` (1 ms steps); wall as $EPOCHREALTIME around the run. Medians, and ratios to the copy
# after the first fetch, side by side; with each copy's pack count and store size (objects/
# only), and how many passes consolidated the store on the way.
#
# Usage: benches/growth.sh                          (builds target/release/gitops first)
#        GITOPS_BIN=path/to/gitops RUNS=25 FETCHES="1 200 1000" benches/growth.sh
# 10,000 fetches take several minutes (one apply pass each). Uses only 127.0.0.1; leaves
# nothing behind. Exits 0 whether or not the target is met.
set -euo pipefail

RUNS=${RUNS:-15}
FETCHES=${FETCHES:-1 1000 10000}

say() { printf '%s\n' "$*"; }
die() { printf 'growth.sh: %s\n' "$*" >&2; exit 1; }
case $RUNS in '' | *[!0-9]* | 0) die "RUNS must be a positive integer, not '$RUNS'" ;; esac
read -r -a checkpoints <<<"$FETCHES"
((${#checkpoints[@]} > 0)) || die "FETCHES must list at least one number of fetches"
prev=0
for k in "${checkpoints[@]}"; do
    case $k in '' | *[!0-9]* | 0) die "FETCHES must be increasing positive integers, not '$FETCHES'" ;; esac
    ((k > prev)) || die "FETCHES must be increasing positive integers, not '$FETCHES'"
    prev=$k
done
total=$prev

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -n ${GITOPS_BIN:-} ]]; then
    gitops=$GITOPS_BIN
else
    say "building the release binary (cargo build --release) ..." >&2
    (cd "$root" && cargo build --release) || die "cargo build --release failed"
    gitops=$root/target/release/gitops
fi
[[ -x $gitops ]] || die "$gitops is not an executable file (GITOPS_BIN?)"
gitops=$(cd "$(dirname "$gitops")" && pwd)/$(basename "$gitops")
command -v git >/dev/null || die "git not found"
[[ -x $(git --exec-path)/git-daemon ]] || die "this git has no 'git daemon' (Debian: it is in the 'git' package)"
[[ -n ${EPOCHREALTIME:-} ]] || die "bash >= 5 is needed (EPOCHREALTIME)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gitops-growth-bench.XXXXXX")
daemon_pid=
cleanup() {
    if [[ -n $daemon_pid ]]; then
        kill "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp" 2>/dev/null || { sleep 1; rm -rf "$tmp"; }
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(GITOPS_|GIT_|REPO_URL$)' || true)
export HOME=$tmp XDG_CONFIG_HOME=$tmp/.config GIT_CONFIG_NOSYSTEM=1 LC_ALL=C
: >"$tmp/empty.env"

# --- the upstream: TOTAL commits in a chain, each changing one small file --------------------
mkdir -p "$tmp/srv"
bare=$tmp/srv/config.git
git init -q --bare -b main "$bare"
awk -v n="$total" 'BEGIN {
    for (c = 1; c <= n; c++) {
        print "commit refs/heads/all"
        printf "committer Bench <bench@example.invalid> %d +0000\n", 1700000000 + 60 * c
        print "data <<EOM"; printf "change %d\n", c; print "EOM"
        if (c == 1) {
            print "M 100755 inline run.sh"
            print "data <<EOD"; print "#!/bin/sh"; print "true"; print "EOD"
        }
        print "M 100644 inline motd"
        print "data <<EOD"; printf "change %d\n", c; print "EOD"
        print ""
    }
}' | git -C "$bare" fast-import --quiet
mapfile -t commits < <(git -C "$bare" rev-list --reverse refs/heads/all)
((${#commits[@]} == total)) || die "fast-import made ${#commits[@]} commits, not $total"
# main moves by rewriting its loose ref: no process per step. HEAD stays main.
set_main() { printf '%s\n' "$1" >"$2/refs/heads/main"; }
set_main "${commits[0]}" "$bare"

port=
for _ in 1 2 3 4 5; do
    try=$((20000 + RANDOM % 40000))
    "$(git --exec-path)/git-daemon" --reuseaddr --export-all --base-path="$tmp/srv" --listen=127.0.0.1 --port="$try" \
        "$tmp/srv" >"$tmp/daemon.log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 100); do
        if git ls-remote "git://127.0.0.1:$try/config.git" >/dev/null 2>&1; then
            port=$try
            break 2
        fi
        kill -0 "$daemon_pid" 2>/dev/null || break
        sleep 0.05
    done
    kill "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
    daemon_pid=
done
[[ -n $port ]] || { cat "$tmp/daemon.log" >&2; die "git daemon did not come up on 127.0.0.1"; }

sync_in() { # sync_in STATE CHECKOUT REPO: one pass, its output in $tmp/pass.out
    "$gitops" sync --config "$tmp/empty.env" --repo-url "git://127.0.0.1:$port/$3" --branch main \
        --state-dir "$1" --checkout "$2" >"$tmp/pass.out" 2>&1 ||
        { cat "$tmp/pass.out" >&2; die "gitops sync failed in $1"; }
}
packs_in() { find "$1/repo.git/objects/pack" -name '*.idx' | wc -l; }
store_kib() { du -sk "$1/repo.git/objects" | cut -f1; }

# --- the fetches ------------------------------------------------------------------------------
say "making $total fetches, one apply pass each ..." >&2
consolidations=0
max_packs=0
next=0
started=$EPOCHREALTIME
for ((i = 1; i <= total; i++)); do
    set_main "${commits[i - 1]}" "$bare"
    sync_in "$tmp/live" "$tmp/live-current" config.git
    grep -q 'consolidated the object store' "$tmp/pass.out" && consolidations=$((consolidations + 1))
    if ((i == checkpoints[next])); then
        cp -a "$tmp/live" "$tmp/state-$i"
        git init -q --bare -b main "$tmp/srv/at-$i.git"
        printf '%s\n' "$bare/objects" >"$tmp/srv/at-$i.git/objects/info/alternates"
        set_main "${commits[i - 1]}" "$tmp/srv/at-$i.git"
        next=$((next + 1))
    fi
    p=$(find "$tmp/live/repo.git/objects/pack" -name '*.idx' -printf . | wc -c)
    ((p > max_packs)) && max_packs=$p
    if ((i % 1000 == 0)); then
        say "  $i fetches ($(awk -v s="$started" -v e="$EPOCHREALTIME" 'BEGIN {printf "%.0f", e - s}') s), $p packs" >&2
    fi
done

# Each copy's first pass against its own repository: the checkout link is set to the copy's
# tree (it pointed into the live state). From then on every pass is a no-op.
for k in "${checkpoints[@]}"; do
    sync_in "$tmp/state-$k" "$tmp/current-$k" "at-$k.git"
    sync_in "$tmp/state-$k" "$tmp/current-$k" "at-$k.git"
    grep -q 'up to date' "$tmp/pass.out" || { cat "$tmp/pass.out" >&2; die "the copy after $k fetches is not up to date"; }
done

# --- timed rounds -----------------------------------------------------------------------------
have_perf=0
if command -v perf >/dev/null 2>&1 && perf stat -x, -e task-clock -o "$tmp/perf.probe" -- /bin/true 2>/dev/null; then
    have_perf=1
fi
children_ms() {
    local user sys m sec
    { read -r _ && read -r user sys; } <"$1"
    REPLY=0
    for m in "$user" "$sys"; do
        m=${m%s}
        sec=${m#*m}
        REPLY=$((REPLY + 10#${m%%m*} * 60000 + 10#${sec/./}))
    done
}
declare -A cpu wall
for k in "${checkpoints[@]}"; do cpu[$k]=; wall[$k]=; done
say "timing $RUNS rounds ..." >&2
n=${#checkpoints[@]}
for ((r = 0; r < RUNS; r++)); do
    for ((j = 0; j < n; j++)); do
        k=${checkpoints[(r + j) % n]}
        cmd=("$gitops" sync --config "$tmp/empty.env" --repo-url "git://127.0.0.1:$port/at-$k.git" --branch main
            --state-dir "$tmp/state-$k" --checkout "$tmp/current-$k")
        t0=${EPOCHREALTIME/[.,]/}
        if ((have_perf)); then
            perf stat -x, -e task-clock -o "$tmp/perf.out" -- "${cmd[@]}" >/dev/null 2>&1 || die "a no-op pass failed: ${cmd[*]}"
            ms=$(awk -F, '$3 ~ /task-clock/ {print $1}' "$tmp/perf.out")
        else
            times >"$tmp/times.0"
            "${cmd[@]}" >/dev/null 2>&1 || die "a no-op pass failed: ${cmd[*]}"
            times >"$tmp/times.1"
            children_ms "$tmp/times.0"; c0=$REPLY
            children_ms "$tmp/times.1"; ms=$((REPLY - c0))
        fi
        t1=${EPOCHREALTIME/[.,]/}
        cpu[$k]+=" $ms"
        wall[$k]+=" $(((10#$t1 - 10#$t0)))"
    done
done

median() { tr ' ' '\n' <<<"$1" | awk 'NF' | sort -g | awk '{v[NR] = $1} END {printf "%.3f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.3f", a / b; else print "inf"}'; }

say "gitops growth benchmark: the no-op pass after many fetches"
say "  gitops       $gitops ($("$gitops" --version 2>/dev/null || echo 'version unknown'))"
say "  git          $(git --version)"
say "  nproc        $(nproc) (kernel $(uname -r))"
say "  fetches      $total, one apply pass each: $consolidations consolidated the store, at most $max_packs packs seen after a pass"
say "  runs         $RUNS rounds, order rotated every round; CPU: $( ((have_perf)) && echo 'perf stat task-clock' || echo "bash's times (1 ms steps)")"
say ""
first=${checkpoints[0]}
cpu_first=$(median "${cpu[$first]}")
wall_first=$(awk -v x="$(median "${wall[$first]}")" 'BEGIN {printf "%.3f", x / 1000}')
printf '%-16s %12s %10s %12s %10s %7s %11s\n' "no-op pass after" "CPU ms (med)" "CPU ratio" "wall ms (med)" "wall ratio" "packs" "store KiB"
for k in "${checkpoints[@]}"; do
    c=$(median "${cpu[$k]}")
    w=$(awk -v x="$(median "${wall[$k]}")" 'BEGIN {printf "%.3f", x / 1000}')
    printf '%-16s %12s %10s %12s %10s %7s %11s\n' "$k fetches" "$c" "$(ratio "$c" "$cpu_first")" "$w" \
        "$(ratio "$w" "$wall_first")" "$(packs_in "$tmp/state-$k")" "$(store_kib "$tmp/state-$k")"
done
say ""
say "target: CPU after 1,000 and 10,000 fetches <= 1.1 x after the first"
for k in "${checkpoints[@]:1}"; do
    rr=$(ratio "$(median "${cpu[$k]}")" "$cpu_first")
    ok=$(awk -v v="$rr" 'BEGIN {print (v != "inf" && v + 0 <= 1.1) ? "PASS" : "FAIL"}')
    printf '  %-4s  after %s fetches: %s x\n' "$ok" "$k" "$rr"
done
