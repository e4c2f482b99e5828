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
# For scale a fourth row, "empty (true)", times /bin/true the same way: what fork, exec and
# /usr/bin/time cost by themselves (every row contains that much).
# Each command runs once untimed first, so every timed run is a no-op pass. Then RUNS rounds
# (default 25) run the four, rotating which goes first, each under
# `/usr/bin/time -f '%e %U %S %M'` with its output discarded and its exit status checked (a
# failure stops the benchmark and reruns the command with its output shown).
#
# How to read the output:
#   wall ms   measured by this script around each run with bash's $EPOCHREALTIME (us), since
#             GNU time's %e has 10 ms resolution. Median and minimum over the runs.
#   CPU ms    user + system time of the run and every child it waited for (the recipe's bash,
#             git fetch, its auto-maintenance child, rev-parse, merge-base, ...).
#             "rusage": the difference of bash's `times` before and after the run, 1 ms steps:
#             this is the figure to read, and the CPU ratio uses its mean (sum / RUNS).
#             "GNU time": %U + %S, printed in 10 ms steps and truncated, so any run with under
#             10 ms of user and under 10 ms of system time shows 0. It is shown (median and
#             mean) for reference; for no-op passes it is mostly zeros.
#   peak RSS  the largest %M (max resident set) over the runs, in MiB. For the recipe this is
#             its largest single process, not the sum of the processes.
#   ratios    "as measured" divides the figures above; "net of the empty command" subtracts the
#             empty row from both sides first (what the commands cost beyond an empty process).
#   task-clock  when `perf stat` works here, a second set of rotated rounds measures CPU as
#             perf's task-clock of the command and its children: microsecond precision and
#             none of /usr/bin/time's own exec cost. The CPU target uses its medians when
#             present.
#   targets   on the ratios as measured: gitops wall <= 0.2x recipe, gitops CPU <= 0.25x
#             recipe (task-clock medians, else rusage means), gitops wall <= 2x floor, gitops peak RSS <= 25 MiB; one PASS/FAIL
#             line each. The script exits 0 even when a target is missed (it is a report), and
#             non-zero only when something failed (setup, build, a measured command).
#
# Transport: TRANSPORT=git (default: git daemon), http (git http-backend behind a small
# python3 CGI server, see benches/lib.sh) or ssh (a throwaway sshd on 127.0.0.1 with its own
# host and user keys; gitops gets --ssh-key and --known-hosts, git a GIT_SSH_COMMAND using the
# same two files). The targets are those of git://; over ssh the handshake dominates every row.
#
# Usage: benches/noop.sh                     (builds target/release/gitops with cargo first)
#        GITOPS_BIN=/path/to/gitops RUNS=50 TRANSPORT=http benches/noop.sh
# Needs git (with git daemon), bash >= 5, GNU time (/usr/bin/time: installed with apt-get
# when missing and running as root), python3 for http, openssh-server for ssh. Uses only
# 127.0.0.1; leaves nothing behind.
set -euo pipefail

RUNS=${RUNS:-25}
TRANSPORT=${TRANSPORT:-git}
FILES=300
DIRS=20
COMMITS=400
BRANCH=main

BENCH_NAME=noop.sh
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case $RUNS in '' | *[!0-9]* | 0) die "RUNS must be a positive integer, not '$RUNS'" ;; esac
case $TRANSPORT in git | http | ssh) ;; *) die "TRANSPORT must be git, http or ssh, not '$TRANSPORT'" ;; esac

root=$bench_root

# --- 1. the binary --------------------------------------------------------------------------
if [[ -n ${GITOPS_BIN:-} ]]; then
    gitops=$GITOPS_BIN
else
    command -v cargo >/dev/null || die "cargo not found: install Rust, or set GITOPS_BIN=path/to/gitops"
    say "building the release binary (cargo build --release) ..." >&2
    (cd "$root" && cargo build --release) || die "cargo build --release failed"
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
    clock=\$EPOCHREALTIME
    now_us() { local t=${EPOCHREALTIME/[.,]/}; REPLY=$((10#$t)); }
else
    clock='date +%s%N'
    now_us() { REPLY=$(($(date +%s%N) / 1000)); }
fi

# --- 3. an isolated world: temp dir, git config, repository, daemon --------------------------
bench_tmp gitops-noop-bench

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

# GIT_SSH_COMMAND is set after the host's GIT_* variables were dropped, for git's ssh rows.
gitops_transport=()
case $TRANSPORT in
    git)
        bench_git_daemon "$tmp/srv"
        served_by="git daemon"
        ;;
    http)
        bench_http_backend "$tmp/srv"
        served_by="git http-backend (python3 CGI server)"
        ;;
    ssh)
        bench_sshd "$tmp/sshd"
        export GIT_SSH_COMMAND=$SSH_GIT_COMMAND
        gitops_transport=(--ssh-key "$SSH_KEY" --known-hosts "$SSH_KNOWN_HOSTS")
        served_by="sshd + git upload-pack"
        ;;
esac
bench_url "$TRANSPORT" "$bare"
url=$REPLY

# --- 4. the contenders, each run once untimed ------------------------------------------------
names=(gitops recipe floor)
declare -A label=([gitops]="gitops sync" [recipe]="shell recipe" [floor]="ls-remote floor")

cmd_gitops=("$gitops" sync --config "$tmp/empty.env" --repo-url "$url" --branch "$BRANCH"
    --state-dir "$tmp/gitops-state" --checkout "$tmp/gitops-current" "${gitops_transport[@]}")

# The same pass with notifications and metrics on: a json destination signed with an HMAC key
# (a receiver on 127.0.0.1 answering 204, so the first apply's event is delivered while
# priming and the outbox is empty) and a metrics directory. A no-op pass tells nothing; what
# it costs is reading the options and the key, looking at the outbox and writing gitops.prom.
python3 -c '
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204); self.end_headers()
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(s.server_port))
s.serve_forever()' "$tmp/receiver.port" &
receiver_pid=$!
bench_track "$receiver_pid"
for _ in $(seq 100); do [[ -s $tmp/receiver.port ]] && break; sleep 0.05; done
[[ -s $tmp/receiver.port ]] || die "the notification receiver did not come up on 127.0.0.1"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/hmac.key"
chmod 600 "$tmp/hmac.key"
mkdir -p "$tmp/metrics"
names+=(feedback)
label[feedback]="+notify+metrics"
cmd_feedback=("$gitops" sync --config "$tmp/empty.env" --repo-url "$url" --branch "$BRANCH"
    --state-dir "$tmp/feedback-state" --checkout "$tmp/feedback-current" "${gitops_transport[@]}"
    --notify-url "http://127.0.0.1:$(cat "$tmp/receiver.port")/hook" --notify-format json
    --notify-secret-file "$tmp/hmac.key" --metrics-dir "$tmp/metrics")

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
prime feedback
prime feedback
[[ -s $tmp/metrics/gitops.prom ]] || die "gitops sync --metrics-dir wrote no gitops.prom"
[[ -z $(ls -A "$tmp/feedback-state/outbox" 2>/dev/null) ]] || die "the first apply's notification was not delivered to the receiver"
prime recipe
prime floor
[[ $(bash "$tmp/recipe.sh") == Up-to-date ]] || die "the shell recipe does not see its clone as up to date"

# --- 5. timed rounds -------------------------------------------------------------------------
# For scale, an empty command under the same harness.
names+=(empty)
label[empty]="empty (true)"
cmd_empty=(/bin/true)

declare -A wall_us cpu_ms gt_cpu_ms rss_kib # name -> space-separated samples
for n in "${names[@]}"; do wall_us[$n]=; cpu_ms[$n]=; gt_cpu_ms[$n]=; rss_kib[$n]=; done

# bash's `times` prints, on its second line, the user and system time of every child this shell
# has reaped ("0m0.012s 0m0.004s"): millisecond resolution, read without forking.
children_ms() {
    local user sys m sec
    { read -r _ && read -r user sys; } <"$1"
    REPLY=0
    for m in "$user" "$sys"; do # 1m2.345s -> 62345
        m=${m%s}
        sec=${m#*m}
        REPLY=$((REPLY + 10#${m%%m*} * 60000 + 10#${sec/./}))
    done
}
measure() {
    local name=$1 rc=0 t0 t1 c0 c1 u s m
    local -n cmd=cmd_$name
    times >"$tmp/times.0"
    now_us; t0=$REPLY
    /usr/bin/time -f '%e %U %S %M' -o "$tmp/time.out" "${cmd[@]}" >/dev/null 2>&1 || rc=$?
    now_us; t1=$REPLY
    times >"$tmp/times.1"
    ((rc == 0)) || failed "$name" "$rc" "${cmd[@]}"
    read -r _ u s m <"$tmp/time.out"
    children_ms "$tmp/times.0"; c0=$REPLY
    children_ms "$tmp/times.1"; c1=$REPLY
    wall_us[$name]+=" $((t1 - t0))"
    cpu_ms[$name]+=" $((c1 - c0))"
    # GNU time: seconds with two decimals -> milliseconds, in integers: "0.01" -> 10
    gt_cpu_ms[$name]+=" $(((10#${u/./} + 10#${s/./}) * 10))"
    rss_kib[$name]+=" $m"
}

say "timing $RUNS rounds ..." >&2
for ((r = 0; r < RUNS; r++)); do
    for ((i = 0; i < ${#names[@]}; i++)); do
        measure "${names[(r + i) % ${#names[@]}]}"
    done
done

# CPU again with `perf stat -e task-clock` when perf works here: it counts the CPU time the
# command and its children were actually scheduled for, to the microsecond, without the cost of
# /usr/bin/time's own exec that every rusage figure above carries. Same rotation.
declare -A task_ms
have_perf=0
if command -v perf >/dev/null 2>&1 && perf stat -x, -e task-clock -o "$tmp/perf.probe" -- /bin/true 2>/dev/null; then
    have_perf=1
    say "timing $RUNS rounds under perf stat ..." >&2
    for n in "${names[@]}"; do task_ms[$n]=; done
    for ((r = 0; r < RUNS; r++)); do
        for ((i = 0; i < ${#names[@]}; i++)); do
            n=${names[(r + i) % ${#names[@]}]}
            declare -n pcmd=cmd_$n
            perf stat -x, -e task-clock -o "$tmp/perf.out" -- "${pcmd[@]}" >/dev/null 2>&1 || failed "$n" "$?" "${pcmd[@]}"
            unset -n pcmd
            task_ms[$n]+=" $(awk -F, '$3 ~ /task-clock/ {print $1}' "$tmp/perf.out")"
        done
    done
fi

[[ $(readlink "$tmp/gitops-current") == "$applied" ]] || die "gitops moved the checkout during the timed runs: they were not no-op passes"
trees=$(find "$tmp/gitops-state/trees" -mindepth 1 -maxdepth 1 | wc -l)
((trees == 1)) || die "gitops has $trees trees after the timed runs, expected 1"

# --- 6. report -------------------------------------------------------------------------------
stat_of() { # stat_of median|mean|min|max SAMPLES
    tr ' ' '\n' <<<"$2" | awk 'NF' | sort -n | awk -v what="$1" '
        { v[NR] = $1; sum += $1 }
        END {
            if (what == "median") x = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            else if (what == "mean") x = sum / NR
            else if (what == "min") x = v[1]
            else x = v[NR]
            printf "%.3f\n", x
        }'
}
fmt() { awk -v x="$1" -v d="$2" -v p="$3" 'BEGIN {printf "%.*f", p, x / d}'; } # fmt X DIVISOR DECIMALS

declare -A wall_med wall_min cpu_med cpu_mean gt_med gt_mean rss_max
for n in "${names[@]}"; do
    wall_med[$n]=$(fmt "$(stat_of median "${wall_us[$n]}")" 1000 2)
    wall_min[$n]=$(fmt "$(stat_of min "${wall_us[$n]}")" 1000 2)
    cpu_med[$n]=$(fmt "$(stat_of median "${cpu_ms[$n]}")" 1 1)
    cpu_mean[$n]=$(fmt "$(stat_of mean "${cpu_ms[$n]}")" 1 2)
    gt_med[$n]=$(fmt "$(stat_of median "${gt_cpu_ms[$n]}")" 1 0)
    gt_mean[$n]=$(fmt "$(stat_of mean "${gt_cpu_ms[$n]}")" 1 2)
    rss_max[$n]=$(fmt "$(stat_of max "${rss_kib[$n]}")" 1024 1)
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.3f", a / b; else print "inf"}'; }
net_ratio() { # (a - e) / (b - e): both sides net of the empty command's cost
    awk -v a="$1" -v b="$2" -v e="$3" 'BEGIN {if (b - e > 0) printf "%.3f", (a - e) / (b - e); else print "inf"}'
}
verdict() { # verdict TEXT VALUE LIMIT: PASS when VALUE <= LIMIT
    local ok
    ok=$(awk -v v="$2" -v l="$3" 'BEGIN {print (v != "inf" && v + 0 <= l + 0) ? "PASS" : "FAIL"}')
    printf '  %-4s  %s\n' "$ok" "$1"
}

bin_size=$(stat -c %s "$gitops")
say "gitops no-op pass benchmark"
say "  gitops       $gitops ($("$gitops" --version 2>/dev/null || echo 'version unknown'))"
say "  binary size  $bin_size bytes ($(fmt "$bin_size" 1048576 1) MiB)"
say "  git          $(git --version)"
say "  nproc        $(nproc) (kernel $(uname -r))"
say "  repository   $shape_files files, $shape_commits commits on $BRANCH, served by $served_by at $url"
say "  runs         $RUNS rounds, order rotated every round"
say "  gitops sync      ${cmd_gitops[*]}"
say "  +notify+metrics  ${cmd_feedback[*]}"
say "  shell recipe     ${cmd_recipe[*]}, which runs:"
say "                   $(tail -n 1 "$tmp/recipe.sh")"
say "  ls-remote floor  ${cmd_floor[*]}"
say "  empty (true)     ${cmd_empty[*]}: the cost of fork + exec + /usr/bin/time alone"
say ""
printf '%-16s %17s   %19s   %23s   %8s\n' "" "wall ms" "CPU ms (rusage)" "CPU ms (GNU time)" "peak RSS"
printf '%-16s %8s %8s   %9s %9s   %11s %11s   %8s\n' contender median min median mean median mean MiB
for n in "${names[@]}"; do
    printf '%-16s %8s %8s   %9s %9s   %11s %11s   %8s\n' "${label[$n]}" "${wall_med[$n]}" \
        "${wall_min[$n]}" "${cpu_med[$n]}" "${cpu_mean[$n]}" "${gt_med[$n]}" "${gt_mean[$n]}" \
        "${rss_max[$n]}"
done
say ""
say "wall: $clock around each run (us). CPU (rusage): user+sys of the run and all its children, from"
say "bash's \`times\` before/after (1 ms steps). CPU (GNU time): %U+%S, which GNU time prints in 10 ms"
say "steps and truncates, so a run under 10 ms of user and of system time shows 0; shown for"
say "reference only. Peak RSS: the largest %M over the runs (for the recipe: its largest process)."
say ""

r_wall_script=$(ratio "${wall_med[gitops]}" "${wall_med[recipe]}")
r_cpu_script=$(ratio "${cpu_mean[gitops]}" "${cpu_mean[recipe]}")
r_wall_floor=$(ratio "${wall_med[gitops]}" "${wall_med[floor]}")
r_wall_feedback=$(ratio "${wall_med[feedback]}" "${wall_med[gitops]}")
r_cpu_feedback=$(ratio "${cpu_mean[feedback]}" "${cpu_mean[gitops]}")
n_wall_script=$(net_ratio "${wall_med[gitops]}" "${wall_med[recipe]}" "${wall_med[empty]}")
n_cpu_script=$(net_ratio "${cpu_mean[gitops]}" "${cpu_mean[recipe]}" "${cpu_mean[empty]}")
n_wall_floor=$(net_ratio "${wall_med[gitops]}" "${wall_med[floor]}" "${wall_med[empty]}")
say "ratios                              as measured   net of the empty command"
printf '  %-34s %11s   %s\n' "gitops / recipe, wall (medians)" "$r_wall_script" "$n_wall_script"
printf '  %-34s %11s   %s\n' "gitops / recipe, CPU (means)" "$r_cpu_script" "$n_cpu_script"
printf '  %-34s %11s   %s\n' "gitops / floor, wall (medians)" "$r_wall_floor" "$n_wall_floor"
printf '  %-34s %11s\n' "gitops peak RSS (MiB)" "${rss_max[gitops]}"
printf '  %-34s %11s\n' "notify+metrics on / off, wall" "$r_wall_feedback"
printf '  %-34s %11s\n' "notify+metrics on / off, CPU" "$r_cpu_feedback"
say "  (CPU ratios use the means of the rusage CPU: per-run CPU is in 1 ms steps, the mean is finer)"
say ""
if ((have_perf)); then
    declare -A task_mean task_med
    for n in "${names[@]}"; do
        task_mean[$n]=$(fmt "$(stat_of mean "${task_ms[$n]}")" 1 3)
        task_med[$n]=$(fmt "$(stat_of median "${task_ms[$n]}")" 1 3)
    done
    say "CPU by perf stat task-clock (ms over $RUNS runs, command and children only):"
    printf '  %-16s %8s %8s\n' "" median mean
    for n in "${names[@]}"; do printf '  %-16s %8s %8s\n' "${label[$n]}" "${task_med[$n]}" "${task_mean[$n]}"; done
    r_task_feedback=$(ratio "${task_med[feedback]}" "${task_med[gitops]}")
    printf '  %-34s %11s\n' "notify+metrics on / off (medians)" "$r_task_feedback"
    r_task_script=$(ratio "${task_med[gitops]}" "${task_med[recipe]}")
    r_task_mean=$(ratio "${task_mean[gitops]}" "${task_mean[recipe]}")
    printf '  %-34s %11s   (means: %s)\n' "gitops / recipe, CPU (task-clock medians)" "$r_task_script" "$r_task_mean"
    say ""
fi
say "targets (on the ratios as measured)"
verdict "gitops wall <= 0.2 x recipe wall     ($r_wall_script)" "$r_wall_script" 0.2
if ((have_perf)); then
    verdict "gitops CPU  <= 0.25 x recipe CPU     ($r_task_script, perf task-clock medians)" "$r_task_script" 0.25
else
    verdict "gitops CPU  <= 0.25 x recipe CPU     ($r_cpu_script, rusage means)" "$r_cpu_script" 0.25
fi
verdict "gitops wall <= 2 x floor wall        ($r_wall_floor)" "$r_wall_floor" 2
verdict "gitops peak RSS <= 25 MiB            (${rss_max[gitops]} MiB)" "${rss_max[gitops]}" 25
