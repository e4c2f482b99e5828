#!/usr/bin/env bash
# benches/fleet.sh: what a fleet of machines costs one Git server (issue 18, point 7).
#
# N simulated machines (each its own state dir and checkout, all on this host) run `gitops
# sync` against one server on 127.0.0.1: a git daemon, then git http-backend behind the small
# python3 CGI server of benches/lib.sh, then (for N <= SSH_MAX_N) sshd + git upload-pack.
# Per transport:
#   first pass  the largest N machines clone and apply for the first time (also how the
#               machines are prepared)
#   no-op       for each N: N passes that find the branch unchanged
#   apply       for each N: one new commit (one file changed) is pushed, then N passes, each of
#               which fetches and applies it; every machine must end on the new commit
# Passes start as systemd's RandomizedDelaySec spreads a timer's machines: at uniformly random
# offsets over the period. The 5-minute period is compressed to a window of N x *_MS ms
# (NOOP_MS=15, APPLY_MS=80, FIRST_MS=120 by default: 1,000 no-op passes start within 15 s,
# i.e. 67 passes a second, the rate of 20,000 machines at 5-minute passes). The window is set
# by what the clients' own CPU allows on this host (they share its cores with the server): a
# shorter window only queues the clients; the server's CPU per pass is what is measured.
#
# Server CPU: read from /proc/<server pid>/stat before and after a round: utime + stime of the
# server process plus cutime + cstime, the CPU of every child it has reaped (git daemon forks
# `git daemon --serve` per connection, which runs and waits for `git upload-pack`; the CGI
# server runs and waits for `git http-backend`, which waits for upload-pack; sshd's listener
# reaps each connection's sshd-session, which waits for the shell and git-upload-pack). The
# round ends once the server has no child left, so every pass is in the figure. Clock ticks
# (10 ms) summed over N passes: the per-pass figure is exact to 10/N ms. For http the Python
# front end's own share is shown apart ("backend"= http-backend and upload-pack only): a real
# deployment puts nginx/Apache + fcgiwrap there.
# Client outcome: every pass must exit 0 (a failed pass is counted and its log's last line
# printed; the script then exits 1). Client wall per pass: median and 99th percentile.
#
# Output: one table row per transport, round and N, then "derived": the machines one server
# core sustains at 5-minute passes (300,000 ms / server CPU ms per no-op pass) and, for an apply
# storm (every machine fetching a new commit within the RandomizedDelaySec window), the cores it
# takes to keep up.
#
# Usage: benches/fleet.sh                          (builds target/release/gitops first)
#        GITOPS_BIN=path/to/gitops NS="100 500 1000" TRANSPORTS="git http ssh" benches/fleet.sh
#        QUICK=1 benches/fleet.sh                   (N = 20 and 50: checks the script itself)
# Env: NS, TRANSPORTS (default "git http ssh"), SSH_MAX_N (default 100: ssh's handshake costs
# ~100 ms of client CPU a pass, 1,000 of them do not fit this host's cores), NOOP_MS, APPLY_MS,
# FIRST_MS, SEED. Uses only 127.0.0.1; leaves nothing behind.
set -euo pipefail

BENCH_NAME=fleet.sh
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ${QUICK:-0} == 1 ]]; then NS=${NS:-20 50}; else NS=${NS:-100 500 1000}; fi
TRANSPORTS=${TRANSPORTS:-git http ssh}
SSH_MAX_N=${SSH_MAX_N:-100}
NOOP_MS=${NOOP_MS:-15}
APPLY_MS=${APPLY_MS:-80}
FIRST_MS=${FIRST_MS:-120}
SEED=${SEED:-18}
PERIOD_MS=300000
for v in NOOP_MS APPLY_MS FIRST_MS SSH_MAX_N SEED; do
    case ${!v} in '' | *[!0-9]*) die "$v must be a non-negative integer, not '${!v}'" ;; esac
done
for n in $NS; do case $n in '' | *[!0-9]* | 0) die "NS must hold positive integers, not '$n'" ;; esac; done
for t in $TRANSPORTS; do case $t in git | http | ssh) ;; *) die "TRANSPORTS: unknown '$t' (git, http, ssh)" ;; esac; done

bench_binary
bench_tmp gitops-fleet-bench
bench_isolate

# The repository of benches/noop.sh: 300 files over 20 directories, 400 commits, run.sh.
mkdir -p "$tmp/srv"
bare=$tmp/srv/config.git
git init -q --bare -b main "$bare"
awk -v files=300 -v dirs=20 -v commits=400 '
    function path(f) { return sprintf("etc%02d/service%03d.conf", int(f * dirs / files), f) }
    function blob(f, rev,   k) {
        print "data <<EOD"
        printf "# %s, revision %d\n", path(f), rev
        for (k = 0; k < 12; k++) printf "option_%02d = value-%d-%d-%d\n", k, f, k, (rev + k) % 7
        print "EOD"
    }
    function header(c, msg) {
        print "commit refs/heads/main"
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
    }' | git -C "$bare" fast-import --quiet
git -C "$bare" repack -adq
git clone -q "$bare" "$tmp/work"
pushes=0
push_commit() {
    pushes=$((pushes + 1))
    echo "# fleet push $pushes" >>"$tmp/work/etc00/service000.conf"
    git -C "$tmp/work" commit -qam "fleet push $pushes"
    git -C "$tmp/work" push -q origin main
    TIP=$(git -C "$tmp/work" rev-parse HEAD)
}
TIP=$(git -C "$bare" rev-parse main)

# A never-written pipe: `read -t` on it sleeps without forking a sleep(1).
exec {sleep_fd}<> <(:)
nap() { read -r -t "$1" -u "$sleep_fd" _ || true; }

server_children() { # how many children the server process still has
    cat "/proc/$1/task/"*/children 2>/dev/null | wc -w
}
server_cpu() { # REPLY = total ms, REPLY2 = ms of reaped children only
    local stat rest
    stat=$(<"/proc/$1/stat")
    rest=${stat##*) }
    # shellcheck disable=SC2086 # split on purpose
    set -- $rest
    REPLY=$(((${12} + ${13} + ${14} + ${15}) * 1000 / bench_clk_tck))
    REPLY2=$(((${14} + ${15}) * 1000 / bench_clk_tck))
}

# round LABEL N WINDOW_MS: N machines' passes at random offsets within WINDOW_MS.
# Appends a result row to $tmp/rows.
round() {
    local label=$1 n=$2 window=$3 i off t0 now c0 c1 s0 s0c s1 s1c fails rss_ok last
    local -a offs pids=()
    mapfile -t offs < <(awk -v n="$n" -v w="$window" -v seed="$SEED$n${#label}" \
        'BEGIN { srand(seed); for (i = 0; i < n; i++) printf "%.3f\n", rand() * w }' | sort -g)
    rm -f "$tmp"/m/*/result
    while (($(server_children "$server_pid") > 0)); do nap 0.05; done
    server_cpu "$server_pid"; s0=$REPLY; s0c=$REPLY2
    times >"$tmp/times.0"
    bench_now_us; t0=$REPLY
    for ((i = 0; i < n; i++)); do
        off=${offs[i]}
        bench_now_us; now=$REPLY
        local wait_us=$((t0 + ${off%.*} * 1000 - now))
        ((wait_us > 1000)) && nap "$(printf '%d.%06d' $((wait_us / 1000000)) $((wait_us % 1000000)))"
        (
            m=$tmp/m/$i
            a=${EPOCHREALTIME/[.,]/}
            rc=0
            "$gitops" --config "$tmp/empty.env" sync --repo-url "$url" --state-dir "$m/state" \
                --checkout "$m/current" "${transport_args[@]}" >"$m/log" 2>&1 || rc=$?
            b=${EPOCHREALTIME/[.,]/}
            echo "$rc $((10#$b - 10#$a))" >"$m/result"
        ) &
        pids+=($!)
    done
    # Not a bare `wait`: that would wait for the server too. bash may already have forgotten
    # a job that ended long ago ("not a child"): the result files are what counts.
    wait "${pids[@]}" 2>/dev/null || true
    for ((i = 0; i < n; i++)); do
        while [[ ! -s $tmp/m/$i/result ]] && kill -0 "${pids[i]}" 2>/dev/null; do nap 0.05; done
    done
    bench_now_us; last=$REPLY
    times >"$tmp/times.1"
    while (($(server_children "$server_pid") > 0)); do nap 0.05; done
    server_cpu "$server_pid"; s1=$REPLY; s1c=$REPLY2
    bench_children_ms "$tmp/times.0"; c0=$REPLY
    bench_children_ms "$tmp/times.1"; c1=$REPLY
    fails=0
    for ((i = 0; i < n; i++)); do
        local rc us
        read -r rc us <"$tmp/m/$i/result" || { rc=missing; us=0; }
        if [[ $rc != 0 ]]; then
            fails=$((fails + 1))
            ((fails <= 3)) && say "  machine $i: $label pass exited $rc: $(tail -n 1 "$tmp/m/$i/log")" >&2
        fi
        echo "$us"
    done >"$tmp/walls"
    # The apply rounds must leave every machine on the new tip.
    rss_ok=-
    if [[ $label != no-op ]]; then
        rss_ok=$(for ((i = 0; i < n; i++)); do readlink "$tmp/m/$i/current"; done | grep -c -- "$TIP" || true)
    fi
    local med p99 span
    med=$(sort -n "$tmp/walls" | awk '{ v[NR] = $1 } END { printf "%.1f", v[int((NR + 1) / 2)] / 1000 }')
    p99=$(sort -n "$tmp/walls" | awk '{ v[NR] = $1 } END { i = int(NR * 0.99 + 0.999); if (i < 1) i = 1; printf "%.1f", v[i] / 1000 }')
    span=$(awk -v d=$((last - t0)) 'BEGIN { printf "%.1f", d / 1e6 }')
    printf '%s %s %s %s %s %s %s %s %s %s %s %s\n' "$transport" "$label" "$n" "$window" "$span" \
        $((s1 - s0)) $((s1c - s0c)) $((c1 - c0)) "$fails" "$med" "$p99" "$rss_ok" >>"$tmp/rows"
    say "  $transport $label N=$n: window $((window / 1000)) s, done in $span s, server $((s1 - s0)) ms, $fails failed" >&2
    total_fails=$((total_fails + fails))
    if [[ $label != no-op && $rss_ok != "$n" ]]; then
        say "  $transport $label N=$n: only $rss_ok of $n machines are on the new commit $TIP" >&2
        total_fails=$((total_fails + 1))
    fi
}

total_fails=0
: >"$tmp/rows"
for transport in $TRANSPORTS; do
    transport_args=()
    case $transport in
        git)
            bench_git_daemon "$tmp/srv"
            server_pid=$DAEMON_PID
            ;;
        http)
            bench_http_backend "$tmp/srv"
            server_pid=$HTTP_PID
            ;;
        ssh)
            bench_sshd "$tmp/sshd"
            server_pid=$SSHD_PID
            transport_args=(--ssh-key "$SSH_KEY" --known-hosts "$SSH_KNOWN_HOSTS")
            ;;
    esac
    bench_url "$transport" "$bare"
    url=$REPLY
    ns=()
    for n in $NS; do
        [[ $transport == ssh ]] && ((n > SSH_MAX_N)) && continue
        ns+=("$n")
    done
    if ((${#ns[@]} == 0)); then
        say "  $transport: every N is above SSH_MAX_N=$SSH_MAX_N, skipped" >&2
    else
        max=$(printf '%s\n' "${ns[@]}" | sort -n | tail -n 1)
        rm -rf "$tmp/m"
        for ((i = 0; i < max; i++)); do mkdir -p "$tmp/m/$i"; done
        round first "$max" $((max * FIRST_MS))
        for n in "${ns[@]}"; do round no-op "$n" $((n * NOOP_MS)); done
        for n in "${ns[@]}"; do
            push_commit
            round apply "$n" $((n * APPLY_MS))
        done
        rm -rf "$tmp/m"
    fi
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
done

# --- report ---------------------------------------------------------------------------------
say "fleet benchmark: N machines, one server on 127.0.0.1"
bench_machine
say "  gitops       $gitops ($("$gitops" --version 2>/dev/null || echo 'version unknown'))"
say "  repository   301 files, 400 commits (benches/noop.sh's); an apply changes one file"
say "  spread       uniform random start offsets (RandomizedDelaySec) over N x ${NOOP_MS} ms (no-op),"
say "               N x ${APPLY_MS} ms (apply), N x ${FIRST_MS} ms (first pass): the 5-minute period compressed"
say "               so that this host's 2 cores can run the clients' own CPU"
say "  server CPU   /proc/<server>/stat utime+stime+cutime+cstime before/after each round (every"
say "               child reaped); http: \"backend\" is git http-backend + upload-pack without the Python front end"
say ""
printf '%-5s %-6s %6s %8s %8s %12s %12s %11s %11s %6s %9s %9s\n' \
    transp round N "window s" "span s" "server ms" "srv ms/pass" "backend/p" "client/p" fails "wall med" "wall p99"
while read -r tr label n window span s sc c fails med p99 ok; do
    per=$(awk -v a="$s" -v n="$n" 'BEGIN { printf "%.2f", a / n }')
    back=-
    [[ $tr == http ]] && back=$(awk -v a="$sc" -v n="$n" 'BEGIN { printf "%.2f", a / n }')
    cper=$(awk -v a="$c" -v n="$n" 'BEGIN { printf "%.1f", a / n }')
    printf '%-5s %-6s %6s %8s %8s %12s %12s %11s %11s %6s %9s %9s\n' "$tr" "$label" "$n" \
        "$(awk -v w="$window" 'BEGIN { printf "%.1f", w / 1000 }')" "$span" "$s" "$per" "$back" "$cper" "$fails" "$med" "$p99"
done <"$tmp/rows"
say "(ms per pass; client/p = the machines' own CPU per pass, on the same cores; wall = one pass's wall time)"
say ""

# Derived: per transport, the largest N's figures.
say "derived (largest N of each transport; 5-minute passes = 300,000 ms between a machine's passes)"
printf '  %-5s %14s %18s %16s %22s %22s\n' transp "no-op srv ms" "machines / core" "apply srv ms" "10k apply in 5 min" "100k apply in 5 min"
for tr in $TRANSPORTS; do
    noop=$(awk -v t="$tr" '$1 == t && $2 == "no-op" { n = $3; s = $6 } END { if (n) printf "%.3f", s / n }' "$tmp/rows")
    apply=$(awk -v t="$tr" '$1 == t && $2 == "apply" { n = $3; s = $6 } END { if (n) printf "%.3f", s / n }' "$tmp/rows")
    [[ -n $noop ]] || continue
    awk -v t="$tr" -v noop="$noop" -v apply="$apply" -v p="$PERIOD_MS" 'BEGIN {
        per_core = (noop > 0) ? p / noop : 0
        c10 = 10000 * apply / p; c100 = 100000 * apply / p
        printf "  %-5s %14.2f %18.0f %16.2f %16.2f cores %16.2f cores\n", t, noop, per_core, apply, c10, c100
    }'
done
say "  machines / core = 300,000 / no-op srv ms. An apply storm: N machines each fetching the new"
say "  commit within one 5-minute window needs N x apply srv ms / 300,000 ms cores (a shorter"
say "  RandomizedDelaySec window needs proportionally more)."

if ((total_fails > 0)); then
    say "FAIL  $total_fails client pass(es) failed or did not end on the new commit"
    exit 1
fi
say "PASS  every client pass exited 0 and every apply round ended on the new commit"
