#!/usr/bin/env bash
# benches/apply.sh: the cost of an apply pass, i.e. a pass that fetches one new commit which
# changes one file, writes the tree and runs the entry point. Issue 18's target: CPU <= 1.0x
# the recipe below on the 301-file repository, <= 1.5x on a 50k-file one (FILES=50000).
#
# Two contenders apply the same commits, served by `git daemon` on 127.0.0.1:
#   gitops sync  on a state dir that applied the previous commit
#   git          `git fetch -q origin main && git merge -q --ff-only FETCH_HEAD && sh run.sh`
#                in a clone made beforehand (what `git pull --ff-only && sh run.sh` does)
# Each round pushes one commit that rewrites one file, then runs both, the order rotating.
# CPU is perf's task-clock of the command and its children when `perf stat` works here, else
# bash's `times` (1 ms steps); wall is $EPOCHREALTIME around the run. Medians of RUNS rounds
# (default 15). Also printed: how many packs the store holds at the end (each fetch adds one
# until the store is consolidated).
#
# Usage: benches/apply.sh                          (builds target/release/gitops first)
#        GITOPS_BIN=path/to/gitops RUNS=25 FILES=50000 TMPDIR=/dev/shm benches/apply.sh
# Uses only 127.0.0.1; leaves nothing behind. Exits 0 whether or not the target is met.
set -euo pipefail

RUNS=${RUNS:-15}
FILES=${FILES:-300}

say() { printf '%s\n' "$*"; }
die() { printf 'apply.sh: %s\n' "$*" >&2; exit 1; }
case $RUNS in '' | *[!0-9]* | 0) die "RUNS must be a positive integer, not '$RUNS'" ;; esac
case $FILES in '' | *[!0-9]* | 0) die "FILES must be a positive integer, not '$FILES'" ;; esac

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
[[ -n ${EPOCHREALTIME:-} ]] || die "bash >= 5 is needed (EPOCHREALTIME)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gitops-apply-bench.XXXXXX")
daemon_pid=
cleanup() {
    if [[ -n $daemon_pid ]]; then
        kill "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    # An upload-pack the daemon forked may still be closing its files for a moment.
    rm -rf "$tmp" 2>/dev/null || { sleep 1; rm -rf "$tmp"; }
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(GITOPS_|GIT_|REPO_URL$)' || true)
export HOME=$tmp XDG_CONFIG_HOME=$tmp/.config GIT_CONFIG_NOSYSTEM=1 LC_ALL=C
export GIT_AUTHOR_NAME=Bench GIT_AUTHOR_EMAIL=bench@example.invalid
export GIT_COMMITTER_NAME=Bench GIT_COMMITTER_EMAIL=bench@example.invalid
: >"$tmp/empty.env"

# The repository: FILES files over 20 directories and a run.sh that only prints.
mkdir -p "$tmp/work" "$tmp/srv"
(
    cd "$tmp/work"
    git init -q -b main
    mkdir etc{00..19}
    awk -v files="$FILES" -v dir="$tmp/work" 'BEGIN {
        for (f = 0; f < files; f++) {
            p = sprintf("%s/etc%02d/service%05d.conf", dir, f % 20, f)
            for (k = 0; k < 12; k++) printf "option_%02d = value-%d-%d\n", k, f, k > p
            close(p)
        }
    }'
    printf '#!/bin/sh\necho applied\n' >run.sh
    chmod +x run.sh
    git add -A
    git commit -q -m init
)
git clone -q --bare "$tmp/work" "$tmp/srv/config.git"
touch "$tmp/srv/config.git/git-daemon-export-ok"
port=$((20000 + RANDOM % 20000))
git daemon --reuseaddr --listen=127.0.0.1 --port="$port" --base-path="$tmp/srv" "$tmp/srv" \
    >"$tmp/daemon.log" 2>&1 &
daemon_pid=$!
url=git://127.0.0.1:$port/config.git
for _ in $(seq 50); do git ls-remote "$url" >/dev/null 2>&1 && break; sleep 0.1; done
git ls-remote "$url" >/dev/null || die "git daemon did not start (see $tmp/daemon.log)"

mkdir -m 700 "$tmp/state"
run_gitops() {
    "$gitops" --config "$tmp/empty.env" sync --repo-url "$url" --state-dir "$tmp/state" \
        --checkout "$tmp/checkout"
}
run_git() {
    cd "$tmp/clone" && git fetch -q origin main && git merge -q --ff-only FETCH_HEAD && sh run.sh
}
run_gitops >/dev/null 2>&1 || die "the first gitops pass failed"
git clone -q "$url" "$tmp/clone"

perf_ok=false
if perf stat -x, -e task-clock true >/dev/null 2>&1; then perf_ok=true; fi

# One measured run: sets CPU_MS and WALL_MS.
measure() {
    local name=$1 out=$tmp/$1.out t0 t1
    t0=${EPOCHREALTIME/[.,]/}
    if $perf_ok; then
        perf stat -x, -e task-clock -o "$tmp/perf.txt" bash -c "$(declare -f "$name"); $(declare -p tmp url gitops); $name" >"$out" 2>&1 ||
            { cat "$out" >&2; die "$name failed"; }
        CPU_MS=$(awk -F, '/task-clock/ { printf "%.2f", $1 }' "$tmp/perf.txt")
    else
        local before after
        before=$(times | tail -1)
        "$name" >"$out" 2>&1 || { cat "$out" >&2; die "$name failed"; }
        after=$(times | tail -1)
        CPU_MS=$(awk -v a="$before" -v b="$after" 'function ms(s,  m, x) { split(s, x, /[ms]/); return (x[1] * 60 + x[2]) * 1000 }
            BEGIN { split(a, p, " "); split(b, q, " "); printf "%.2f", ms(q[1]) + ms(q[2]) - ms(p[1]) - ms(p[2]) }')
    fi
    t1=${EPOCHREALTIME/[.,]/}
    WALL_MS=$(awk -v d=$((10#$t1 - 10#$t0)) 'BEGIN { printf "%.2f", d / 1000 }')
}

declare -a g_cpu g_wall r_cpu r_wall
for round in $(seq "$RUNS"); do
    (
        cd "$tmp/work"
        n=$((round % FILES))
        f=etc$(printf %02d $((n % 20)))/service$(printf %05d $n).conf
        echo "# round $round" >>"$f"
        git commit -q -am "round $round"
        git push -q "$tmp/srv/config.git" main
    )
    if ((round % 2)); then order="run_gitops run_git"; else order="run_git run_gitops"; fi
    for who in $order; do
        measure "$who"
        if [[ $who == run_gitops ]]; then g_cpu+=("$CPU_MS"); g_wall+=("$WALL_MS"); else r_cpu+=("$CPU_MS"); r_wall+=("$WALL_MS"); fi
    done
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
gc=$(median "${g_cpu[@]}"); gw=$(median "${g_wall[@]}")
rc=$(median "${r_cpu[@]}"); rw=$(median "${r_wall[@]}")
packs=$(find "$tmp/state/repo.git/objects/pack" -name '*.pack' | wc -l)
cpu_how=$($perf_ok && echo "perf task-clock" || echo "rusage")
say "apply pass, one changed file, $((FILES + 1))-file repository, git:// on 127.0.0.1, $RUNS rounds, median ($cpu_how)"
printf '%-40s %10s %10s\n' "" "CPU ms" "wall ms"
printf '%-40s %10s %10s\n' "gitops sync" "$gc" "$gw"
printf '%-40s %10s %10s\n' "git fetch + merge --ff-only + sh run.sh" "$rc" "$rw"
ratio_c=$(awk -v a="$gc" -v b="$rc" 'BEGIN { printf "%.2f", a / b }')
ratio_w=$(awk -v a="$gw" -v b="$rw" 'BEGIN { printf "%.2f", a / b }')
printf '%-40s %9sx %9sx\n' "ratio gitops / git" "$ratio_c" "$ratio_w"
say "packs in gitops's store after $((RUNS + 1)) fetches: $packs"
target=1.0
((FILES > 1000)) && target=1.5
if awk -v r="$ratio_c" -v t="$target" 'BEGIN { exit !(r <= t) }'; then
    say "PASS  gitops CPU <= ${target}x git's"
else
    say "FAIL  gitops CPU <= ${target}x git's (measured ${ratio_c}x)"
fi
