#!/usr/bin/env bash
# benches/noop.sh: the cost of a no-op pass, i.e. a pass that fetches, finds the branch has
# not moved, and exits 0. That is what the agent does on almost every timer tick.
#
# Three contenders run against the same repository (~300 files, ~400 commits, branch main),
# served by `git daemon` on 127.0.0.1:
#   gitops sync  `gitops sync` on a state dir that has already applied the tip
#   shell recipe the article's cron script, no-op path: git fetch -q, git rev-parse @,
#                git rev-parse @{u}, git merge-base @ @{u}, compare, echo Up-to-date,
#                run as `bash script.sh` on a clone made beforehand
#   floor        `git -c protocol.version=0 ls-remote URL refs/heads/main`: one connection and
#                one ref advertisement, nothing more; no client can be much faster
# Each contender runs once untimed first, so every timed run is a no-op pass. Then RUNS
# rounds (default 25) run all three, rotating which goes first, each under
# `/usr/bin/time -f '%e %U %S %M'`.
#
# How to read the output:
#   wall ms  measured by this script around each run (bash's $EPOCHREALTIME, microseconds;
#            GNU time's %e only has 10 ms resolution). It includes the fork/exec of
#            /usr/bin/time itself (~1 ms), equally for every contender. Median over the runs.
#   CPU ms   user + system time (%U + %S) of the command and every child it waited for
#            (the recipe's bash, git fetch, rev-parse, merge-base, auto-maintenance, ...).
#            GNU time prints it in 10 ms steps per run, so a 3 ms process shows as 0 or 10:
#            the median is coarse, the mean over all runs (sum / RUNS) is the usable figure,
#            and the CPU ratio is computed from the means.
#   peak RSS the largest %M (max resident set, KiB) seen over the runs, shown in MiB. For the
#            recipe it is the largest single process of the tree, not the sum.
#   targets  gitops wall <= 0.2x recipe, gitops CPU <= 0.25x recipe (means),
#            gitops wall <= 2x floor, gitops peak RSS <= 25 MiB. Each gets a PASS/FAIL line.
#            The script exits 0 even when a target is missed (it is a report); it exits
#            non-zero only when something failed (a measured command, the setup).
#
# Usage: benches/noop.sh                     (builds target/release/gitops with cargo first)
#        GITOPS_BIN=/path/to/gitops RUNS=50 benches/noop.sh
# Needs git (with git daemon), bash >= 5, GNU time (/usr/bin/time: installed with apt-get
# when missing and running as root). Uses only 127.0.0.1; leaves nothing behind.
set -euo pipefail

RUNS=${RUNS:-25}
FILES=300
DIRS=20
COMMITS=400
BRANCH=main

say() { printf '%s\n' "$*"; }
die() { printf 'noop.sh: %s\n' "$*" >&2; exit 1; }

case $RUNS in '' | *[!0-9]* | 0) die "RUNS must be a positive integer, not '$RUNS'" ;; esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# --- 1. the binary --------------------------------------------------------------------------
if [[ -n ${GITOPS_BIN:-} ]]; then
    gitops=$GITOPS_BIN
else
    command -v cargo >/dev/null || die "cargo not found: install Rust, or set GITOPS_BIN=path/to/gitops"
    say "building the release binary (cargo build --release) ..." >&2
    (cd "$root" && cargo build --release --quiet) || die "cargo build --release failed"
    gitops=$root/target/release/gitops
fi
[[ -x $gitops ]] || die "$gitops is not an executable file (GITOPS_BIN?)"
gitops=$(cd "$(dirname "$gitops")" && pwd)/$(basename "$gitops")

# --- 2. GNU time ----------------------------------------------------------------------------
gnu_time_ok() { [[ -x /usr/bin/time && $(/usr/bin/time --version 2>&1) == *GNU* ]]; }
if ! gnu_time_ok; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        say "GNU time (/usr/bin/time) is missing: installing the Debian package 'time' ..." >&2
        apt-get update -qq >&2 || die "apt-get update failed; install GNU time (package 'time') by hand"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >&2 ||
            die "apt-get install time failed; install GNU time (package 'time') by hand"
        gnu_time_ok || die "/usr/bin/time is still not GNU time after installing 'time'"
    else
        die "GNU time is needed at /usr/bin/time: install it (Debian/Ubuntu: apt-get install time; Fedora: dnf install time) and rerun"
    fi
fi
command -v git >/dev/null || die "git not found"
[[ -x $(git --exec-path)/git-daemon ]] || die "this git has no 'git daemon' (Debian: it is in the 'git' package)"

# Wall-clock in microseconds without forking when bash has $EPOCHREALTIME (>= 5.0).
if [[ -n ${EPOCHREALTIME:-} ]]; then
    clock='$EPOCHREALTIME'
    now_us() { local t=${EPOCHREALTIME/[.,]/}; REPLY=$((10#$t)); }
else
    clock='date +%s%N'
    now_us() { REPLY=$(($(date +%s%N) / 1000)); }
fi

# --- 3. an isolated world: temp dir, git config, repository, daemon --------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gitops-noop-bench.XXXXXX")
daemon_pid=
cleanup() {
    if [[ -n $daemon_pid ]]; then
        kill "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Nothing from the host's environment or git config may take part: no GITOPS_* or GIT_*
# variables, no ~/.gitconfig, no /etc/gitconfig, and an empty env file for gitops so that
# /etc/gitops/gitops.env is not read.
while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(GITOPS_|GIT_|REPO_URL$)' || true)
export HOME=$tmp XDG_CONFIG_HOME=$tmp/.config GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME=Bench GIT_AUTHOR_EMAIL=bench@example.invalid
export GIT_COMMITTER_NAME=Bench GIT_COMMITTER_EMAIL=bench@example.invalid
export GIT_AUTHOR_DATE='1700000000 +0000' GIT_COMMITTER_DATE='1700000000 +0000'
export LC_ALL=C
: >"$tmp/empty.env"
mkdir -p "$tmp/srv"
bare=$tmp/srv/config.git

# Commit 1 adds FILES files spread over DIRS directories plus an executable run.sh; every
# later commit rewrites one file. One fast-import stream, so the whole repo takes well under
# a second to make.
gen_stream() {
    awk -v files="$FILES" -v dirs="$DIRS" -v commits="$COMMITS" -v branch="$BRANCH" '
    function path(f) { return sprintf("etc%02d/service%03d.conf", int(f * dirs / files), f) }
    function blob(f, rev,   k) {
        print "data <<EOD"
        printf "# %s, revision %d\n", path(f), rev
        for (k = 0; k < 12; k++) printf "option_%02d = value-%d-%d-%d\n", k, f, k, (rev + k) % 7
        print "EOD"
    }
    function header(c, msg) {
        printf "commit refs/heads/%s\n", branch
        printf "committer Bench <bench@example.invalid> %d +0000\n", 1700000000 + 60 * c
        print "data <<EOM"; print msg; print "EOM"
    }
    BEGIN {
        header(1, "initial configuration")
        for (f = 0; f < files; f++) { print "M 100644 inline " path(f); blob(f, 1) }
        print "M 100755 inline run.sh"
        print "data <<EOD"; print "#!/bin/sh"; print "true"; print "EOD"
        print ""
        for (c = 2; c <= commits; c++) {
            f = ((c - 2) * 37) % files
            header(c, sprintf("tune %s (change %d)", path(f), c))
            print "M 100644 inline " path(f); blob(f, c)
            print ""
        }
    }'
}
git init -q --bare -b "$BRANCH" "$bare"
gen_stream | git -C "$bare" fast-import --quiet
git -C "$bare" repack -adq
shape_files=$(git -C "$bare" ls-tree -r --name-only "$BRANCH" | wc -l)
shape_commits=$(git -C "$bare" rev-list --count "$BRANCH")

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
        2>/dev/null || echo $((20000 + RANDOM % 40000))
}
port=
for attempt in 1 2 3 4 5; do
    try=$(free_port)
    git daemon --reuseaddr --export-all --base-path="$tmp/srv" --listen=127.0.0.1 --port="$try" \
        "$tmp/srv" >"$tmp/daemon.log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 100); do # up to ~5 s
        if git -c protocol.version=0 ls-remote "git://127.0.0.1:$try/config.git" >/dev/null 2>&1; then
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
url=git://127.0.0.1:$port/config.git

# --- 4. the contenders, each run once untimed ------------------------------------------------
names=(gitops recipe floor)
declare -A label=([gitops]="gitops sync" [recipe]="shell recipe" [floor]="ls-remote floor")

cmd_gitops=("$gitops" sync --config "$tmp/empty.env" --repo-url "$url" --branch "$BRANCH"
    --state-dir "$tmp/gitops-state" --checkout "$tmp/gitops-current")

git clone -q "$url" "$tmp/clone"
{
    say '#!/bin/bash'
    say "# The article's cron recipe, no-op path."
    printf 'cd %q && ' "$tmp/clone"
    # shellcheck disable=SC2016 # written to the file as is
    say 'git fetch -q && LOCAL=$(git rev-parse @) && REMOTE=$(git rev-parse '\''@{u}'\'') && BASE=$(git merge-base @ '\''@{u}'\'') && [ "$LOCAL" = "$REMOTE" ] && echo Up-to-date'
} >"$tmp/recipe.sh"
cmd_recipe=(bash "$tmp/recipe.sh")

cmd_floor=(git -c protocol.version=0 ls-remote "$url" "refs/heads/$BRANCH")

# Rerun a failed command with its output visible, then stop.
failed() {
    local name=$1 rc=$2
    shift 2
    printf 'noop.sh: %s failed (exit %s): %s\n' "${label[$name]}" "$rc" "$*" >&2
    printf 'noop.sh: rerunning it with its output shown:\n' >&2
    "$@" >&2 || true
    exit 1
}
prime() {
    local name=$1 rc=0
    local -n cmd=cmd_$name
    "${cmd[@]}" >"$tmp/prime.out" 2>&1 || rc=$?
    if ((rc != 0)); then
        cat "$tmp/prime.out" >&2
        failed "$name" "$rc" "${cmd[@]}"
    fi
}
prime gitops # clones, checks out the tip, runs run.sh
[[ -L $tmp/gitops-current ]] || die "the first gitops sync did not create the checkout symlink"
applied=$(readlink "$tmp/gitops-current")
prime gitops # the first no-op pass, untimed like the others' warm-up
prime recipe
prime floor
[[ $(bash "$tmp/recipe.sh") == Up-to-date ]] || die "the shell recipe does not see its clone as up to date"

# --- 5. timed rounds -------------------------------------------------------------------------
declare -A wall_us cpu_ms rss_kib # "name" -> space-separated samples
for n in "${names[@]}"; do wall_us[$n]=; cpu_ms[$n]=; rss_kib[$n]=; done

measure() {
    local name=$1 rc=0 t0 t1 e u s m
    local -n cmd=cmd_$name
    now_us; t0=$REPLY
    /usr/bin/time -f '%e %U %S %M' -o "$tmp/time.out" "${cmd[@]}" >/dev/null 2>&1 || rc=$?
    now_us; t1=$REPLY
    ((rc == 0)) || failed "$name" "$rc" "${cmd[@]}"
    read -r e u s m <"$tmp/time.out"
    wall_us[$name]+=" $((t1 - t0))"
    # seconds with two decimals -> milliseconds, in integers: "0.01" -> 10
    cpu_ms[$name]+=" $(((10#${u/./} + 10#${s/./}) * 10))"
    rss_kib[$name]+=" $m"
}

say "timing $RUNS rounds ..." >&2
for ((r = 0; r < RUNS; r++)); do
    for ((i = 0; i < ${#names[@]}; i++)); do
        measure "${names[(r + i) % ${#names[@]}]}"
    done
done

[[ $(readlink "$tmp/gitops-current") == "$applied" ]] || die "gitops moved the checkout during the timed runs: they were not no-op passes"
trees=$(find "$tmp/gitops-state/trees" -mindepth 1 -maxdepth 1 | wc -l)
((trees == 1)) || die "gitops has $trees trees after the timed runs, expected 1"

# --- 6. report -------------------------------------------------------------------------------
median() { tr ' ' '\n' | awk 'NF' | sort -n | awk '{v[NR]=$1} END {printf "%.3f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
mean() { tr ' ' '\n' | awk 'NF {s+=$1; n++} END {print s/n}'; }
maxof() { tr ' ' '\n' | awk 'NF && (m == "" || $1 > m) {m=$1} END {print m}'; }
minof() { tr ' ' '\n' | awk 'NF && (m == "" || $1 < m) {m=$1} END {print m}'; }

declare -A wall_med wall_min cpu_med cpu_mean rss_max
for n in "${names[@]}"; do
    wall_med[$n]=$(median <<<"${wall_us[$n]}" | awk '{printf "%.2f", $1 / 1000}')
    wall_min[$n]=$(minof <<<"${wall_us[$n]}" | awk '{printf "%.2f", $1 / 1000}')
    cpu_med[$n]=$(median <<<"${cpu_ms[$n]}" | awk '{printf "%g", $1}')
    cpu_mean[$n]=$(mean <<<"${cpu_ms[$n]}" | awk '{printf "%.2f", $1}')
    rss_max[$n]=$(maxof <<<"${rss_kib[$n]}" | awk '{printf "%.1f", $1 / 1024}')
done

calc() { awk "BEGIN {print $*}"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.3f", a / b; else print "inf"}'; }
verdict() { # verdict LABEL VALUE LIMIT: PASS when VALUE <= LIMIT
    local ok
    ok=$(awk -v v="$2" -v l="$3" 'BEGIN {print (v != "inf" && v <= l) ? "PASS" : "FAIL"}')
    printf '%-4s  %s\n' "$ok" "$1"
}

bin_size=$(stat -c %s "$gitops")
say "gitops no-op pass benchmark"
say "  gitops      $gitops ($("$gitops" --version 2>/dev/null || echo '?'))"
say "  binary size $bin_size bytes ($(calc "$bin_size / 1048576" | awk '{printf "%.1f", $1}') MiB)"
say "  git         $(git --version)"
say "  nproc       $(nproc)     kernel $(uname -r)"
say "  repository  $shape_files files, $shape_commits commits, branch $BRANCH, served by git daemon at $url"
say "  runs        $RUNS rounds, order rotated each round; wall from $clock, CPU and RSS from GNU time"
say "  gitops sync     ${cmd_gitops[*]}"
say "  shell recipe    ${cmd_recipe[*]}: $(tail -n 1 "$tmp/recipe.sh")"
say "  ls-remote floor ${cmd_floor[*]}"
say ""
printf '%-16s %12s %12s %12s %12s %14s\n' contender "wall ms med" "wall ms min" "CPU ms med" "CPU ms mean" "peak RSS MiB"
for n in "${names[@]}"; do
    printf '%-16s %12s %12s %12s %12s %14s\n' "${label[$n]}" "${wall_med[$n]}" "${wall_min[$n]}" \
        "${cpu_med[$n]}" "${cpu_mean[$n]}" "${rss_max[$n]}"
done
say "(CPU ms per run is in 10 ms steps (GNU time prints 2 decimals of seconds): read the mean, not the median)"
say ""

r_wall_script=$(ratio "${wall_med[gitops]}" "${wall_med[recipe]}")
r_cpu_script=$(ratio "${cpu_mean[gitops]}" "${cpu_mean[recipe]}")
r_wall_floor=$(ratio "${wall_med[gitops]}" "${wall_med[floor]}")
say "ratios"
say "  gitops / recipe, wall (medians)    $r_wall_script"
say "  gitops / recipe, CPU  (means)      $r_cpu_script"
say "  gitops / floor,  wall (medians)    $r_wall_floor"
say "  gitops peak RSS                    ${rss_max[gitops]} MiB"
say ""
say "targets"
verdict "gitops wall <= 0.2 x recipe wall    ($r_wall_script)" "$r_wall_script" 0.2
verdict "gitops CPU  <= 0.25 x recipe CPU    ($r_cpu_script, from the means)" "$r_cpu_script" 0.25
verdict "gitops wall <= 2 x floor wall       ($r_wall_floor)" "$r_wall_floor" 2
verdict "gitops peak RSS <= 25 MiB           (${rss_max[gitops]} MiB)" "${rss_max[gitops]}" 25
