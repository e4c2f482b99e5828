#!/usr/bin/env bash
# benches/watch.sh: what --watch and --sparse cost and save (issue 20, point 2), side by side
# with their baselines.
#
# The repository is a fleet's: hosts/web-0001/ .. hosts/web-2000/, 10 files each (its run.sh
# and 9 settings files), common/ (3 files) and run.sh: 20,004 files. Every entry point only
# writes one file into $OUT, so the rows time gitops, not the entry point. Commit A is the first
# one; each round pushes a new tip that changes one file under hosts/web-1500/ (another
# machine's). The machine is web-0001, always with --host web-0001.
#
#   skip                  a machine with --watch "hosts/{host}/ common/" that applied A: the pass
#                         that fetches the new tip and skips it (outcome up-to-date, the tip
#                         recorded as seen, A still applied, the entry point not run), against
#                         the no-op pass of a machine like it that has already seen the tip (the
#                         pass a timer runs every 5 minutes). The ratio is what deciding "not
#                         mine" costs beyond finding nothing new: the fetch of one small commit
#                         and a few tree reads at the watched paths, whatever the tree's size.
#   skip vs apply         the same tip on a machine without --watch: it applies it (the tree
#                         brought to the tip, the entry point run). The ratio is what --watch
#                         saves a machine per commit that is not its own. "apply" is a machine's
#                         steady state: it has applied twice before, so its spare tree (the one
#                         linked before the last apply) is brought up to date by the diff.
#                         "apply-nospare" is the same apply from a copy of a template state
#                         directory that applied A (made untimed, as safe.sh's revert row): a
#                         copy has new inodes and ctimes, so no spare is reused and the whole
#                         tree is written afresh, as on a machine's first apply after its
#                         initial one, or after its state directory was restored from a copy.
#   sparse first apply    the first pass of an empty state directory with --watch
#                         "hosts/{host}/ common/" --sparse, against the first pass without them
#                         (the whole tree written). Both fetch the same commit; the ratio is what
#                         writing only the machine's paths saves. The trees' file counts (find
#                         -type f) and sizes (du -sk) are printed beside it.
#
#   wait                  the same fleet with a .gitops/rollout (waves = 0.1%, 100%, interval =
#                         30d) served as a second repository, whose rounds change common/: a
#                         machine with --watch that is not in the first wave (web-0001 is not,
#                         checked) fetches each new tip and waits for its wave (outcome
#                         up-to-date, state.json "waiting", the entry point not run): the rollout
#                         read and parsed, web-0001 ranked among the 2,000 hosts, and the walk back
#                         to the commit that last changed its paths. Against the skip above (both
#                         fetch one new commit) and the no-op pass.
#
# The skip, no-op and apply machines are kept from round to round (one new commit each round;
# the no-op machine catches up with it untimed first); the apply-nospare and first-pass runs
# start from a fresh copy or from nothing and are removed after. Every run is checked: a skip or
# a no-op must leave A applied and not run the entry point; an apply must run it and leave the
# tip applied.
#
# Every contender runs once untimed first; then RUNS rounds (default 15) rotate the contenders.
# Wall time is bash's $EPOCHREALTIME around the command; CPU is perf's task-clock of the command
# and its children when perf works here, else the rusage of the reaped children (1 ms steps).
#
# Usage: benches/watch.sh          (builds target/release/gitops with cargo first)
#        GITOPS_BIN=/path/to/gitops RUNS=30 HOSTS=2000 benches/watch.sh
# Needs git (with git daemon), bash >= 5. Uses only 127.0.0.1; leaves nothing behind.
set -euo pipefail

export BENCH_NAME=watch.sh
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${RUNS:-15}
HOSTS=${HOSTS:-2000}
for v in RUNS HOSTS; do
    case ${!v} in '' | *[!0-9]* | 0) die "$v must be a positive integer, not '${!v}'" ;; esac
done
((HOSTS >= 1500)) || die "HOSTS must be at least 1500: the tip changes hosts/web-1500/"
WATCH="hosts/{host}/ common/"
HOST=web-0001

bench_binary
bench_tmp gitops-watch
bench_isolate
export BENCH_PERF=1

say "benches/watch.sh: --watch and --sparse, side by side with their baselines ($RUNS rounds)"
bench_machine

# The repository: every file distinct (a fleet's settings are), so the store holds 20,000 blobs.
srv=$tmp/srv
mkdir -p "$srv"
work=$tmp/work
git init -q -b main "$work"
mkdir -p "$work/common"
printf 'Welcome to the fleet.\n' >"$work/common/motd"
printf 'ntp = pool.ntp.org\n' >"$work/common/ntp.conf"
printf 'log() { printf "%%s\\n" "$*"; }\n' >"$work/common/lib.sh"
# shellcheck disable=SC2016 # expanded by the entry point
printf '#!/bin/sh\nprintf "root\\n" >"$OUT/ran-root"\n' >"$work/run.sh"
for h in $(seq -f '%04g' 1 "$HOSTS"); do
    d=$work/hosts/web-$h
    mkdir -p "$d"
    # shellcheck disable=SC2016
    printf '#!/bin/sh\nprintf "%%s\\n" "$GITOPS_HOST" >"$OUT/ran-$GITOPS_HOST"\n' >"$d/run.sh"
    for f in nginx.conf app.env limits.conf users.conf cron.conf ports.conf tls.conf disks.conf dns.conf; do
        printf 'host = web-%s\nfile = %s\nvalue = %d\n' "$h" "$f" "$RANDOM" >"$d/$f"
    done
done
chmod +x "$work/run.sh" "$work"/hosts/*/run.sh
git -C "$work" add -A
git -C "$work" commit -qm "A: the fleet"
commit_a=$(git -C "$work" rev-parse HEAD)
git clone -q --bare "$work" "$srv/fleet.git"
bench_git_daemon "$srv"
url=git://127.0.0.1:$DAEMON_PORT/fleet.git
files_repo=$(git -C "$work" ls-files | wc -l)

watch_args=(--host "$HOST" --watch "$WATCH")
full_args=(--host "$HOST")
# sync STATE LINK ARGS...: one pass of web-0001, its entry point writing into $OUT. The timed
# runs call the binary itself (perf cannot run a shell function): cmd STATE LINK sets $cmd.
cmd() {
    local state=$1 link=$2
    shift 2
    cmd=("$gitops" sync --config "$tmp/empty.env" --checkout "$link" --state-dir "$state" --repo-url "${use_url:-$url}" "$@")
}
sync() { cmd "$@" && "${cmd[@]}"; }

# Every machine first applies A. W (--watch) is timed skipping, N (--watch) is timed finding
# nothing new, F (no --watch) is timed applying; tpl-full (no --watch) is the template of the
# apply without a usable spare.
export OUT=$tmp/out-setup
mkdir -p "$OUT"
for m in W N F tpl-full; do
    case $m in W | N) args=("${watch_args[@]}") ;; *) args=("${full_args[@]}") ;; esac
    sync "$tmp/$m" "$tmp/link-$m" "${args[@]}" >"$tmp/setup.log" 2>&1 || { cat "$tmp/setup.log" >&2; die "the first pass of $m failed"; }
done

# push: a new tip, one more change to one file of another machine's (web-1500's nginx.conf).
round=0
push() {
    printf 'value = %d\n' "$round" >>"$work/hosts/web-1500/nginx.conf"
    git -C "$work" commit -qam "web-1500's nginx.conf, change $round"
    git -C "$work" push -q "$srv/fleet.git" main
    tip=$(git -C "$work" rev-parse HEAD)
}
# F's first apply after A writes its tree afresh (there is no spare yet): untimed.
push
sync "$tmp/F" "$tmp/link-F" "${full_args[@]}" >"$tmp/setup.log" 2>&1 || { cat "$tmp/setup.log" >&2; die "F's second pass failed"; }

# The second repository: the same fleet and a rollout in which web-0001 waits for 30 days.
work2=$tmp/work2
git clone -q "$work" "$work2"
mkdir -p "$work2/.gitops"
printf 'waves = 0.1%%, 100%%\ninterval = 30d\n' >"$work2/.gitops/rollout"
git -C "$work2" add -A
git -C "$work2" -c user.name=bench -c user.email=bench@localhost commit -qm "B: a rollout"
git clone -q --bare "$work2" "$srv/rollout.git"
url2=git://127.0.0.1:$DAEMON_PORT/rollout.git
export OUT=$tmp/out-setup
use_url=$url2 sync "$tmp/WT" "$tmp/link-WT" "${watch_args[@]}" >"$tmp/setup.log" 2>&1 || { cat "$tmp/setup.log" >&2; die "WT's first pass failed"; }
commit_b=$(git -C "$work2" rev-parse HEAD)
push2() {
    printf 'value = %d\n' "$round" >>"$work2/common/motd"
    git -C "$work2" -c user.name=bench -c user.email=bench@localhost commit -qam "common/motd, change $round"
    git -C "$work2" push -q "$srv/rollout.git" HEAD:main
    tip2=$(git -C "$work2" rev-parse HEAD)
}

declare -A wall cpu tree_files tree_kib
contenders=(noop skip wait apply apply-nospare sparse-first full-first)

# expect STATE APPLIED RAN: the pass left APPLIED applied and ran the entry point (RAN=1) or not.
expect() {
    awk '/"applied": \{/ { getline; print; exit }' "$1/state.json" | grep -q "$2" || die "$c: the applied commit is not $2"
    if [[ $3 == 1 ]]; then
        [[ -f $OUT/ran-$HOST ]] || die "$c: the entry point did not run"
    else
        [[ ! -e $OUT/ran-$HOST ]] || die "$c: the entry point ran"
    fi
}

run_one() {
    c=$1
    local state link=$tmp/link-$1
    export OUT=$tmp/out-$1
    rm -rf "$OUT"
    mkdir -p "$OUT"
    case $1 in
    noop) state=$tmp/N link=$tmp/link-N ;;
    skip) state=$tmp/W link=$tmp/link-W ;;
    wait) state=$tmp/WT link=$tmp/link-WT ;;
    apply) state=$tmp/F link=$tmp/link-F ;;
    *)
        state=$tmp/run-$1
        rm -rf "$state" "$link"
        if [[ $1 == apply-nospare ]]; then
            cp -a "$tmp/tpl-full" "$state"
            ln -s "$state/trees/$commit_a" "$link"
        fi
        ;;
    esac
    case $1 in
    noop | skip) cmd "$state" "$link" "${watch_args[@]}" ;;
    wait) use_url=$url2 cmd "$state" "$link" "${watch_args[@]}" ;;
    apply | apply-nospare | full-first) cmd "$state" "$link" "${full_args[@]}" ;;
    sparse-first) cmd "$state" "$link" "${watch_args[@]}" --sparse ;;
    esac
    bench_run_timed "$1" "${cmd[@]}"
    case $1 in
    noop | skip) expect "$state" "$commit_a" 0 ;;
    wait) expect "$state" "$commit_b" 0 ;;
    *) expect "$state" "$tip" 1 ;;
    esac
    if [[ $1 == wait ]] && ! grep -A1 '"waiting"' "$state/state.json" | grep -q "$tip2"; then
        die "wait: web-0001 did not wait for its wave (is it in the first 0.1%?)"
    fi
    if [[ $1 == skip ]]; then
        if ! grep -q "\"commit\": \"$tip\"" "$state/state.json" || ! grep -q '"outcome": "up-to-date"' "$state/state.json"; then
            die "skip: the tip was not recorded as seen"
        fi
    fi
    if [[ $1 == *-first ]]; then
        tree_files[$1]=$(find "$state/trees/$tip" -type f | wc -l)
        tree_kib[$1]=$(du -sk "$state/trees/$tip" | cut -f1)
    fi
    wall[$1]+="$WALL_MS "
    cpu[$1]+="$CPU_MS "
    if [[ $state == "$tmp/run-"* ]]; then rm -rf "$state" "$link"; fi
    rm -rf "$OUT"
}

# round ROTATION: a new tip; N catches up with it untimed (so its timed pass finds nothing new);
# then every contender once, starting at ROTATION.
one_round() {
    local k
    round=$((round + 1))
    push
    push2
    export OUT=$tmp/out-setup
    sync "$tmp/N" "$tmp/link-N" "${watch_args[@]}" >"$tmp/setup.log" 2>&1 || { cat "$tmp/setup.log" >&2; die "N's catching-up pass failed"; }
    for k in $(seq 0 $((${#contenders[@]} - 1))); do
        run_one "${contenders[$(((k + $1) % ${#contenders[@]}))]}"
    done
}

one_round 0 # untimed warm-up
for c in "${contenders[@]}"; do wall[$c]=""; cpu[$c]=""; done
for r in $(seq 1 "$RUNS"); do one_round $((r % ${#contenders[@]})); done

say "  repository   $files_repo files ($HOSTS hosts x 10, common/, run.sh); machine $HOST, --watch \"$WATCH\""
median() { bench_stat median "$@"; }
say ""
printf '  %-14s %12s %12s\n' "" "wall ms" "CPU ms"
for c in "${contenders[@]}"; do
    # shellcheck disable=SC2086 # one value per word
    printf '  %-14s %12s %12s\n' "$c" "$(median ${wall[$c]})" "$(median ${cpu[$c]})"
done
say ""
say "trees written by the first pass:"
for c in full-first sparse-first; do
    printf '  %-14s %6s files %8s KiB\n' "$c" "${tree_files[$c]}" "${tree_kib[$c]}"
done
pair() { # pair LABEL A B: medians of A over B
    local wa wb ca cb
    # shellcheck disable=SC2086
    wa=$(median ${wall[$2]}) wb=$(median ${wall[$3]}) ca=$(median ${cpu[$2]}) cb=$(median ${cpu[$3]})
    printf '  %-44s wall %sx  CPU %sx\n' "$1" "$(bench_ratio "$wa" "$wb")" "$(bench_ratio "$ca" "$cb")"
}
say ""
say "ratios (medians):"
pair "skip / no-op (--watch, nothing new)" skip noop
pair "wait / skip (both fetch one new commit)" wait skip
pair "wait / no-op" wait noop
pair "skip / apply (no --watch, the same commit)" skip apply
pair "skip / apply without a usable spare tree" skip apply-nospare
pair "sparse first apply / full first apply" sparse-first full-first
printf '  %-44s files %sx\n' "sparse tree / full tree" \
    "$(bench_ratio "${tree_files[sparse-first]}" "${tree_files[full-first]}")"
