#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2086,SC2016,SC2054 # cmd_* arrays are used by name; sample lists split on purpose
# benches/run.sh: every benchmark of issue 18 in one go, each measured side by side with what a
# user compares gitops with, and the whole output written to BENCHMARKS.md (repo root) with the
# date and the machine.
#
# Sections (each prints medians and ratios measured in the same run, rounds rotated):
#   1. no-op pass over git://, http:// and ssh://: benches/noop.sh with TRANSPORT=git|http|ssh
#      (gitops vs the shell recipe vs the `ls-remote` floor; noop.sh's targets are git://'s)
#   2. repository shapes: the no-op pass on 100k commits, 10k refs, 50k files vs the 301-file,
#      400-commit baseline, with the floor on each; target: flat (<= 1.2x the baseline's CPU)
#   3. apply pass: benches/apply.sh for 301 files and FILES=50000, on TMPDIR and on /dev/shm
#   4. first pass (gitops --depth 1): 50k files, vs `git clone --depth 1` + run.sh (wall, CPU); 200 MB
#      repository: peak RSS and store size vs a depth-1 clone (issue 18's target: <= 1.1x)
#   5. growth over 1,000 passes: benches/growth.sh when present (RUNS; FETCHES from
#      GROWTH_FETCHES, default growth.sh's own; QUICK: "1 50")
#   6. ansible-pull --only-if-changed (ansible-core installed by pip into a venv under
#      $BENCH_CACHE, default ~/.cache/gitops-bench): its no-op pass vs gitops' and the recipe's
#   7. with FLEET=1: benches/fleet.sh (long: N = 100, 500, 1,000 machines), or with
#      FLEET_OUTPUT=FILE the saved output of a separate fleet.sh run
# BENCHMARKS.md gets the date, the machine and this output; a section "## Beyond one Git server"
# already in the file (hand-written, derived from the fleet figures) is kept as it is.
#
# Usage: benches/run.sh                         (builds target/release/gitops first)
#        GITOPS_BIN=path/to/gitops benches/run.sh
#        QUICK=1 benches/run.sh                 (few rounds, small shapes: checks the script)
#        SECTIONS="noop shapes" benches/run.sh  (only those: noop shapes apply first growth
#                                                ansible fleet); OUT=file (default BENCHMARKS.md)
# Exits 0 when a target is missed (the lines say FAIL), non-zero only when something failed.
set -euo pipefail

BENCH_NAME=run.sh
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

QUICK=${QUICK:-0}
BENCH_CACHE=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gitops-bench}
OUT=${OUT:-$bench_root/BENCHMARKS.md}
SECTIONS=${SECTIONS:-noop shapes apply first growth ansible${FLEET:+ fleet}${FLEET_OUTPUT:+ fleet}}
if [[ $QUICK == 1 ]]; then
    NOOP_RUNS=3 SHAPE_RUNS=3 APPLY_RUNS=3 FIRST_RUNS=2 ANSIBLE_RUNS=2 GROWTH_RUNS=3
    GROWTH_FETCHES=${GROWTH_FETCHES:-1 50}
    SHAPE_COMMITS=10000 SHAPE_REFS=1000 SHAPE_FILES=5000 APPLY_BIG=5000 FIRST_FILES=5000 BIG_MB=20
else
    NOOP_RUNS=25 SHAPE_RUNS=15 APPLY_RUNS=15 FIRST_RUNS=5 ANSIBLE_RUNS=7 GROWTH_RUNS=15
    GROWTH_FETCHES=${GROWTH_FETCHES:-}
    SHAPE_COMMITS=100000 SHAPE_REFS=10000 SHAPE_FILES=50000 APPLY_BIG=50000 FIRST_FILES=50000 BIG_MB=200
fi

bench_binary
bench_tmp gitops-run-bench
real_path=$PATH
bench_isolate
exec 3>&1
exec > >(tee "$tmp/output.txt") 2>&1
failures=0
section() { say ""; say "=== $* ==="; say ""; }
has() { [[ " $SECTIONS " == *" $1 "* ]]; }
sub() { # run a sibling script with the chosen binary; a failure is counted, not fatal
    local rc=0
    env GITOPS_BIN="$gitops" PATH="$real_path" "$@" || rc=$?
    if ((rc != 0)); then
        say "FAIL  $* exited $rc"
        failures=$((failures + 1))
    fi
}

quick_note=
[[ $QUICK == 1 ]] && quick_note=", QUICK=1: few rounds, small shapes"
say "gitops benchmarks (benches/run.sh$quick_note)"
bench_machine
say "  gitops       $gitops ($("$gitops" --version 2>/dev/null || echo 'version unknown'))"
busy_pct=$(ps -eo pcpu= | awk '{ s += $1 } END { printf "%.0f", s }')
load_start=$(cut -d' ' -f1 /proc/loadavg)
say "  busy         other processes' CPU at the start: $busy_pct% (of $(nproc)00%)"

# --- 1. no-op over three transports -----------------------------------------------------------
if has noop; then
    for t in git http ssh; do
        section "no-op pass over $t:// (benches/noop.sh, TRANSPORT=$t, RUNS=$NOOP_RUNS)"
        sub env RUNS=$NOOP_RUNS TRANSPORT=$t bash "$bench_root/benches/noop.sh"
    done
fi

# --- 2. shapes --------------------------------------------------------------------------------
# One fast-import stream: commit 1 adds FILES files and run.sh, each later commit rewrites one.
make_repo() { # make_repo BARE FILES COMMITS
    git init -q --bare -b main "$1"
    awk -v files="$2" -v commits="$3" '
    function path(f) { return sprintf("etc%02d/service%05d.conf", f % 20, f) }
    function blob(f, rev) {
        print "data <<EOD"
        printf "# %s, revision %d\noption = value-%d-%d\n", path(f), rev, f, rev
        print "EOD"
    }
    function header(c) {
        print "commit refs/heads/main"
        printf "committer Bench <bench@example.invalid> %d +0000\n", 1700000000 + 60 * c
        print "data <<EOM"; printf "change %d\n", c; print "EOM"
    }
    BEGIN {
        header(1)
        for (f = 0; f < files; f++) { print "M 100644 inline " path(f); blob(f, 1) }
        print "M 100755 inline run.sh"
        print "data <<EOD"; print "#!/bin/sh"; print "true"; print "EOD"
        print ""
        for (c = 2; c <= commits; c++) {
            f = ((c - 2) * 37) % files
            header(c)
            print "M 100644 inline " path(f); blob(f, c)
            print ""
        }
    }' | git -C "$1" fast-import --quiet
    git -C "$1" repack -adq
}

if has shapes; then
    section "repository shapes: the no-op pass stays flat (git://, $SHAPE_RUNS rotated rounds, perf task-clock)"
    mkdir -p "$tmp/shapes"
    make_repo "$tmp/shapes/base.git" 300 400
    make_repo "$tmp/shapes/commits.git" 300 "$SHAPE_COMMITS"
    make_repo "$tmp/shapes/refs.git" 300 400
    git -C "$tmp/shapes/refs.git" rev-parse main >"$tmp/tip"
    awk -v n="$SHAPE_REFS" -v tip="$(cat "$tmp/tip")" \
        'BEGIN { for (i = 1; i < n; i++) printf "create refs/heads/feature-%05d %s\n", i, tip }' |
        git -C "$tmp/shapes/refs.git" update-ref --stdin
    git -C "$tmp/shapes/refs.git" pack-refs --all
    make_repo "$tmp/shapes/files.git" "$SHAPE_FILES" 2
    bench_git_daemon "$tmp/shapes"
    shapes=(base commits refs files)
    declare -A shape_label=([base]="301 files, 400 commits" [commits]="$SHAPE_COMMITS commits"
        [refs]="$SHAPE_REFS refs" [files]="$((SHAPE_FILES + 1)) files")
    for s in "${shapes[@]}"; do
        url=git://127.0.0.1:$DAEMON_PORT/$s.git
        "$gitops" --config "$tmp/empty.env" sync --repo-url "$url" --state-dir "$tmp/shape-$s" \
            --checkout "$tmp/shape-$s-current" >"$tmp/prime.out" 2>&1 ||
            { cat "$tmp/prime.out"; die "the first gitops pass on the $s shape failed"; }
    done
    declare -A sw sc fw fc
    BENCH_PERF=1
    for ((r = 0; r < SHAPE_RUNS; r++)); do
        for ((i = 0; i < ${#shapes[@]}; i++)); do
            s=${shapes[(r + i) % ${#shapes[@]}]}
            url=git://127.0.0.1:$DAEMON_PORT/$s.git
            bench_run_timed "gitops-$s" "$gitops" --config "$tmp/empty.env" sync --repo-url "$url" \
                --state-dir "$tmp/shape-$s" --checkout "$tmp/shape-$s-current"
            sw[$s]+=" $WALL_MS"; sc[$s]+=" $CPU_MS"
            bench_run_timed "floor-$s" git -c protocol.version=0 ls-remote "$url" refs/heads/main
            fw[$s]+=" $WALL_MS"; fc[$s]+=" $CPU_MS"
        done
    done
    BENCH_PERF=0
    printf '%-24s %14s %14s %14s %14s %12s\n' shape "gitops wall" "gitops CPU" "floor wall" "floor CPU" "CPU / base"
    declare -A smed
    for s in "${shapes[@]}"; do smed[$s]=$(bench_stat median ${sc[$s]}); done
    for s in "${shapes[@]}"; do
        # shellcheck disable=SC2086 # sample lists split on purpose
        printf '%-24s %14s %14s %14s %14s %12s\n' "${shape_label[$s]}" "$(bench_stat median ${sw[$s]})" \
            "${smed[$s]}" "$(bench_stat median ${fw[$s]})" "$(bench_stat median ${fc[$s]})" \
            "$(bench_ratio "${smed[$s]}" "${smed[base]}")"
    done
    say "(ms, medians; wall includes perf stat's own start-up, the same for every row; floor ="
    say " git -c protocol.version=0 ls-remote URL refs/heads/main, which receives every ref)"
    for s in commits refs files; do
        r=$(bench_ratio "${smed[$s]}" "${smed[base]}")
        bench_verdict "no-op CPU on ${shape_label[$s]} <= 1.2 x the baseline's ($r)" "$r" 1.2
    done
    kill "$DAEMON_PID" 2>/dev/null || true
    rm -rf "$tmp/shapes" "$tmp"/shape-*
fi

# --- 3. apply ---------------------------------------------------------------------------------
if has apply; then
    for files in 300 "$APPLY_BIG"; do
        for dir in "${TMPDIR:-/tmp}" /dev/shm; do
            fs=$(df -PT "$dir" 2>/dev/null | awk 'NR == 2 { print $2 }')
            section "apply pass: $((files + 1)) files on $dir ($fs) (benches/apply.sh, RUNS=$APPLY_RUNS)"
            if [[ ! -d $dir || ! -w $dir ]]; then
                say "skipped: $dir is not a writable directory"
                continue
            fi
            sub env RUNS=$APPLY_RUNS FILES="$files" TMPDIR="$dir" bash "$bench_root/benches/apply.sh"
        done
    done
fi

# --- 4. first pass ----------------------------------------------------------------------------
if has first; then
    mkdir -p "$tmp/first"
    make_repo "$tmp/first/files.git" "$FIRST_FILES" 2
    bench_git_daemon "$tmp/first"
    url=git://127.0.0.1:$DAEMON_PORT/files.git
    first_gitops() {
        rm -rf "$fp/state" "$fp/current"
        bench_run_timed first-gitops "$gitops" --config "$tmp/empty.env" sync --repo-url "$url" \
            --state-dir "$fp/state" --checkout "$fp/current" --depth 1
    }
    first_git() {
        rm -rf "$fp/clone"
        bench_run_timed first-git sh -c 'git clone -q --depth 1 "$1" "$2" && cd "$2" && sh run.sh' sh "$url" "$fp/clone"
    }
    # The checkouts on TMPDIR and on tmpfs: writing 50k files is most of a first pass, and what
    # it costs depends on the filesystem far more than on the client.
    for dir in "${TMPDIR:-/tmp}" /dev/shm; do
        fs=$(df -PT "$dir" 2>/dev/null | awk 'NR == 2 { print $2 }')
        section "first pass: $((FIRST_FILES + 1)) files on $dir ($fs), gitops vs git clone --depth 1 + run.sh ($FIRST_RUNS rotated rounds, rusage CPU)"
        if [[ ! -d $dir || ! -w $dir ]]; then
            say "skipped: $dir is not a writable directory"
            continue
        fi
        fp=$(mktemp -d "$dir/gitops-first-bench.XXXXXX")
        bench_dirs+=("$fp")
        BENCH_RSS=1
        gw='' gc='' gr='' cw='' cc='' cr=''
        for ((r = 0; r < FIRST_RUNS; r++)); do
            if ((r % 2)); then order="first_git first_gitops"; else order="first_gitops first_git"; fi
            for who in $order; do
                $who
                if [[ $who == first_gitops ]]; then gw+=" $WALL_MS" gc+=" $CPU_MS" gr+=" $RSS_KIB"; else cw+=" $WALL_MS" cc+=" $CPU_MS" cr+=" $RSS_KIB"; fi
            done
        done
        BENCH_RSS=0
        rm -rf "$fp"
        gwm=$(bench_stat median $gw) gcm=$(bench_stat median $gc) grm=$(bench_stat max $gr)
        cwm=$(bench_stat median $cw) ccm=$(bench_stat median $cc) crm=$(bench_stat max $cr)
        printf '%-36s %10s %10s %14s\n' "" "wall ms" "CPU ms" "peak RSS MiB"
        printf '%-36s %10s %10s %14s\n' "gitops sync --depth 1 (first pass)" "$gwm" "$gcm" "$(awk -v k="$grm" 'BEGIN { printf "%.1f", k / 1024 }')"
        printf '%-36s %10s %10s %14s\n' "git clone --depth 1 && sh run.sh" "$cwm" "$ccm" "$(awk -v k="$crm" 'BEGIN { printf "%.1f", k / 1024 }')"
        printf '%-36s %10s %10s\n' "ratio gitops / clone" "$(bench_ratio "$gwm" "$cwm")" "$(bench_ratio "$gcm" "$ccm")"
        say "(no target of its own in issue 18: its table's figures, 1,448 ms vs 1,078 ms on tmpfs, to compare with)"
    done
    kill "$DAEMON_PID" 2>/dev/null || true
    rm -rf "$tmp/first"

    section "first pass: a $BIG_MB MB repository (two commits of $((BIG_MB / 2)) MB of random data), peak RSS and store size"
    mkdir -p "$tmp/big" "$tmp/bigwork"
    (
        cd "$tmp/bigwork"
        git init -q -b main
        printf '#!/bin/sh\ntrue\n' >run.sh
        chmod +x run.sh
        for c in 1 2; do
            # One big blob (a quarter of the commit) and files of 1 MB: what a repository with
            # a firmware image and some binaries looks like.
            head -c $((BIG_MB * 1024 * 1024 / 8)) /dev/urandom >big.bin
            for f in $(seq $((BIG_MB * 3 / 8))); do head -c 1048576 /dev/urandom >"blob$f.bin"; done
            git add -A
            git commit -qm "data $c"
        done
    )
    git clone -q --bare "$tmp/bigwork" "$tmp/big/big.git"
    rm -rf "$tmp/bigwork"
    bench_git_daemon "$tmp/big"
    url=git://127.0.0.1:$DAEMON_PORT/big.git
    BENCH_RSS=1
    bench_run_timed big-gitops "$gitops" --config "$tmp/empty.env" sync --repo-url "$url" \
        --state-dir "$tmp/big-state" --checkout "$tmp/big-current" --depth 1
    g_rss=$RSS_KIB g_wall=$WALL_MS
    g_store=$(du -sk "$tmp/big-state/repo.git" | cut -f1)
    bench_run_timed big-gitops-full "$gitops" --config "$tmp/empty.env" sync --repo-url "$url" \
        --state-dir "$tmp/big-state-full" --checkout "$tmp/big-current-full"
    gf_rss=$RSS_KIB gf_wall=$WALL_MS
    gf_store=$(du -sk "$tmp/big-state-full/repo.git" | cut -f1)
    bench_run_timed big-depth1 git clone -q --depth 1 "$url" "$tmp/big-depth1"
    d_rss=$RSS_KIB d_wall=$WALL_MS
    d_store=$(du -sk "$tmp/big-depth1/.git" | cut -f1)
    bench_run_timed big-full git clone -q --bare "$url" "$tmp/big-full.git"
    f_rss=$RSS_KIB f_wall=$WALL_MS
    f_store=$(du -sk "$tmp/big-full.git" | cut -f1)
    BENCH_RSS=0
    mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
    printf '%-36s %10s %14s %16s\n' "" "wall ms" "peak RSS MiB" "store MiB"
    printf '%-36s %10s %14s %16s\n' "gitops sync --depth 1 (first pass)" "$g_wall" "$(mib "$g_rss")" "$(mib "$g_store")"
    printf '%-36s %10s %14s %16s\n' "gitops sync (whole history)" "$gf_wall" "$(mib "$gf_rss")" "$(mib "$gf_store")"
    printf '%-36s %10s %14s %16s\n' "git clone --depth 1" "$d_wall" "$(mib "$d_rss")" "$(mib "$d_store")"
    printf '%-36s %10s %14s %16s\n' "git clone --bare (full history)" "$f_wall" "$(mib "$f_rss")" "$(mib "$f_store")"
    say "(store: du of gitops' repo.git, of the clone's .git; peak RSS: GNU time %M, the largest process)"
    r_rss=$(bench_ratio "$g_rss" "$d_rss") r_store=$(bench_ratio "$g_store" "$d_store")
    bench_verdict "first-pass peak RSS <= 1.1 x a depth-1 clone's ($r_rss)" "$r_rss" 1.1
    bench_verdict "store on disk <= 1.1 x a depth-1 clone's ($r_store)" "$r_store" 1.1
    kill "$DAEMON_PID" 2>/dev/null || true
    rm -rf "$tmp/big" "$tmp"/big-* "$tmp"/big-state-full "$tmp"/big-current-full
fi

# --- 5. growth --------------------------------------------------------------------------------
if has growth; then
    section "growth over 1,000 passes (benches/growth.sh)"
    if [[ -f $bench_root/benches/growth.sh ]]; then
        # growth.sh's own FETCHES (1, 1,000, 10,000) unless GROWTH_FETCHES says otherwise.
        growth_env=(RUNS="$GROWTH_RUNS")
        [[ -n $GROWTH_FETCHES ]] && growth_env+=(FETCHES="$GROWTH_FETCHES")
        sub env QUICK="$QUICK" "${growth_env[@]}" bash "$bench_root/benches/growth.sh"
    else
        say "benches/growth.sh is missing: not measured here (another change adds it)"
    fi
fi

# --- 6. ansible-pull --------------------------------------------------------------------------
if has ansible; then
    section "no-op pass vs ansible-pull --only-if-changed (git://, $ANSIBLE_RUNS rotated rounds, rusage CPU)"
    venv=$BENCH_CACHE/ansible-venv
    if [[ ! -e $venv/.complete ]]; then
        say "installing ansible-core into $venv (python3 -m venv + pip) ..."
        rm -rf "$venv"
        mkdir -p "$BENCH_CACHE"
        if PATH=$real_path python3 -m venv "$venv" >"$tmp/venv.log" 2>&1 &&
            PATH=$real_path HOME=$tmp "$venv/bin/pip" install -q ansible-core >>"$tmp/venv.log" 2>&1; then
            touch "$venv/.complete"
        else
            tail -n 5 "$tmp/venv.log"
            say "FAIL  could not install ansible-core into a venv (is PyPI reachable?)"
            failures=$((failures + 1))
        fi
    fi
    if [[ -e $venv/.complete ]]; then
        # ansible refuses a non-UTF-8 locale; its modules must run on the venv's Python, not
        # whatever python3 interpreter discovery finds first.
        ans_env=(env LC_ALL=C.UTF-8 ANSIBLE_LOCAL_TEMP="$tmp/ansible-tmp" ANSIBLE_HOME="$tmp/ansible-home"
            ANSIBLE_PYTHON_INTERPRETER="$venv/bin/python")
        say "  ansible      $("${ans_env[@]}" "$venv/bin/ansible-pull" --version 2>&1 | head -n 1)"
        mkdir -p "$tmp/ans"
        make_repo "$tmp/ans/config.git" 300 400
        git clone -q "$tmp/ans/config.git" "$tmp/ans-work"
        cat >"$tmp/ans-work/local.yml" <<'EOF'
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: apply
      command: sh run.sh
EOF
        git -C "$tmp/ans-work" add local.yml
        git -C "$tmp/ans-work" commit -qm "playbook"
        git -C "$tmp/ans-work" push -q origin main
        bench_git_daemon "$tmp/ans"
        url=git://127.0.0.1:$DAEMON_PORT/config.git
        cmd_ans=("${ans_env[@]}" "$venv/bin/ansible-pull" -U "$url" -C main -d "$tmp/ans-checkout" -i localhost,
            --only-if-changed local.yml)
        cmd_gitops=("$gitops" --config "$tmp/empty.env" sync --repo-url "$url" --state-dir "$tmp/ans-state"
            --checkout "$tmp/ans-current")
        git clone -q "$url" "$tmp/ans-recipe"
        # shellcheck disable=SC2016 # the recipe of benches/noop.sh, run by bash
        cmd_recipe=(bash -c 'cd "$1" && git fetch -q && LOCAL=$(git rev-parse @) && REMOTE=$(git rev-parse @{u}) && BASE=$(git merge-base @ @{u}) && [ "$LOCAL" = "$REMOTE" ] && echo Up-to-date' bash "$tmp/ans-recipe")
        for c in ans gitops recipe; do
            declare -n cmd=cmd_$c
            "${cmd[@]}" >"$tmp/prime.out" 2>&1 || { tail -n 20 "$tmp/prime.out"; die "priming $c failed: ${cmd[*]}"; }
            "${cmd[@]}" >"$tmp/prime.out" 2>&1 || { tail -n 20 "$tmp/prime.out"; die "priming $c (second run) failed: ${cmd[*]}"; }
            unset -n cmd
        done
        grep -q 'Repository has not changed' "$tmp/prime.out" 2>/dev/null || true
        declare -A aw ac
        names=(ans gitops recipe)
        for ((r = 0; r < ANSIBLE_RUNS; r++)); do
            for ((i = 0; i < 3; i++)); do
                c=${names[(r + i) % 3]}
                declare -n cmd=cmd_$c
                bench_run_timed "ans-$c" "${cmd[@]}"
                unset -n cmd
                aw[$c]+=" $WALL_MS"; ac[$c]+=" $CPU_MS"
            done
        done
        # ansible-pull's no-op must have skipped the playbook: its last run's output says so.
        if grep -q 'PLAY \[' "$tmp/ans-ans.out"; then
            say "warning: ansible-pull ran the playbook in a timed run: not a no-op pass"
        fi
        printf '%-36s %10s %10s\n' "" "wall ms" "CPU ms"
        declare -A awm acm
        for c in "${names[@]}"; do
            # shellcheck disable=SC2086
            awm[$c]=$(bench_stat median ${aw[$c]}) acm[$c]=$(bench_stat median ${ac[$c]})
        done
        printf '%-36s %10s %10s\n' "gitops sync" "${awm[gitops]}" "${acm[gitops]}"
        printf '%-36s %10s %10s\n' "shell recipe" "${awm[recipe]}" "${acm[recipe]}"
        printf '%-36s %10s %10s\n' "ansible-pull --only-if-changed" "${awm[ans]}" "${acm[ans]}"
        printf '%-36s %10s %10s\n' "ratio gitops / ansible-pull" "$(bench_ratio "${awm[gitops]}" "${awm[ans]}")" "$(bench_ratio "${acm[gitops]}" "${acm[ans]}")"
        r=$(bench_ratio "${awm[gitops]}" "${awm[ans]}")
        bench_verdict "gitops no-op wall <= 0.05 x ansible-pull's ($r)" "$r" 0.05
        kill "$DAEMON_PID" 2>/dev/null || true
        rm -rf "$tmp/ans" "$tmp"/ans-*
    fi
fi

# --- 7. fleet ---------------------------------------------------------------------------------
if has fleet; then
    section "fleet: N machines against one server (benches/fleet.sh)"
    if [[ -n ${FLEET_OUTPUT:-} ]]; then
        # fleet.sh takes long; its output from a separate run can be included instead.
        say "(the output of a separate run of benches/fleet.sh, $FLEET_OUTPUT, included as it is)"
        cat "$FLEET_OUTPUT" || { say "FAIL  cannot read FLEET_OUTPUT=$FLEET_OUTPUT"; failures=$((failures + 1)); }
    else
        sub env QUICK="$QUICK" bash "$bench_root/benches/fleet.sh"
    fi
fi

section "done"
say "failures: $failures"

# --- BENCHMARKS.md ----------------------------------------------------------------------------
exec >&3 2>&1
sleep 0.2 # let tee drain
{
    say "# Benchmarks"
    say ""
    [[ $QUICK == 1 ]] && quick_note=" (QUICK=1: few rounds and small shapes; a check of the script, not the figures to quote)"
say "Written by \`benches/run.sh\`$quick_note"
    say "on $(date -u '+%Y-%m-%d'). Rerun it on a quiet machine before quoting a figure: every section measures"
    say "gitops and what it is compared with side by side in the same run, so the ratios hold better than"
    say "the absolute times on a busy machine."
    load_end=$(cut -d' ' -f1 /proc/loadavg)
    if ((busy_pct > 25)) || awk -v a="$load_start" -v b="$load_end" -v n="$(nproc)" 'BEGIN { exit !(a > n / 2 || b > n / 2) }'; then
        say ""
        say "**This run's machine was busy**: other processes used $busy_pct% CPU at the start, load average"
        say "$load_start at the start and $load_end at the end ($(nproc) cores). Rerun on a quiet machine for figures to quote."
    fi
    say ""
    say "## Output"
    say ""
    say '```'
    sed 's/\x1b\[[0-9;]*m//g' "$tmp/output.txt"
    say '```'
    if [[ -f $OUT ]] && grep -q '^## Beyond one Git server' "$OUT"; then
        say ""
        sed -n '/^## Beyond one Git server/,$p' "$OUT"
    fi
} >"$tmp/BENCHMARKS.md"
cp "$tmp/BENCHMARKS.md" "$OUT"
say "wrote $OUT"
((failures == 0)) || exit 1
