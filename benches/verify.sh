#!/usr/bin/env bash
# benches/verify.sh: what checking signatures adds to a pass that applies a new tip.
#
# A repository whose branch moved by 100 commits since the machine's applied one, each commit
# signed; every timed run starts from a copy of the same state directory (the base applied,
# the 100 commits not yet fetched) and applies the tip with `gitops sync` from a file:// URL.
# Contenders, side by side in one run, rotated so that none always goes first:
#   none          no signers configured: the pass as it was (the baseline of every ratio)
#   tip ed25519   --allowed-signers, --verify tip: the tip's signature
#   range ed25519 --verify range: all 100 commits between the applied one and the tip
#   tip rsa       the same with RSA-3072 keys (the slowest key type verified here)
#   range rsa
#   range gpgv    --gpg-keyring, --verify range: 100 OpenPGP signatures through gpgv
# The entry point is `exit 0`: what is measured is the pass, not the apply.
#
# Output: per contender the median and minimum wall time (ms) and the mean CPU (user+sys of
# gitops and its children, from bash's `times`), then "+ms" (median wall minus none's) and the
# ratio of medians against none.
#
# Usage: benches/verify.sh                    (builds target/release/gitops first)
#        GITOPS_BIN=/path/to/gitops RUNS=15 benches/verify.sh
# Needs git, ssh-keygen, gpg and gpgv. Uses only local files; leaves nothing behind.
set -euo pipefail

RUNS=${RUNS:-15}
COMMITS=100
say() { printf '%s\n' "$*"; }
die() { printf 'verify.sh: %s\n' "$*" >&2; exit 1; }
case $RUNS in '' | *[!0-9]* | 0) die "RUNS must be a positive integer, not '$RUNS'" ;; esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -n ${GITOPS_BIN:-} ]]; then
    gitops=$GITOPS_BIN
else
    command -v cargo >/dev/null || die "cargo not found: install Rust, or set GITOPS_BIN=path/to/gitops"
    say "building the release binary (cargo build --release) ..." >&2
    (cd "$root" && cargo build --release) >&2 || die "cargo build --release failed"
    gitops=$root/target/release/gitops
fi
[[ -x $gitops ]] || die "$gitops is not an executable file (GITOPS_BIN?)"
for tool in git ssh-keygen gpg gpgv; do
    command -v $tool >/dev/null || die "$tool is needed: install it (Debian: git, openssh-client, gnupg, gpgv)"
done

tmp=$(mktemp -d /tmp/gitops-verify.XXXXXX)
gnupg=$tmp/g
cleanup() {
    gpgconf --kill all >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
export HOME=$tmp/home GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com \
    GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com
mkdir -p "$HOME" "$gnupg"
chmod 700 "$gnupg"

# --- keys -----------------------------------------------------------------------------------
ssh-keygen -q -N '' -t ed25519 -C ed25519 -f "$tmp/ed25519"
ssh-keygen -q -N '' -t rsa -b 3072 -C rsa -f "$tmp/rsa"
export GNUPGHOME=$gnupg
gpg --batch --quiet --passphrase '' --quick-gen-key 'bench <bench@example.com>' ed25519 sign never 2>/dev/null
fpr=$(gpg --batch --with-colons --list-keys 2>/dev/null | awk -F: '/^fpr:/ { print $10; exit }')
gpg --batch --export "$fpr" >"$tmp/keyring.gpg"
{
    printf 'bench@example.com namespaces="git" %s\n' "$(cut -d' ' -f1,2 "$tmp/ed25519.pub")"
    printf 'bench@example.com namespaces="git" %s\n' "$(cut -d' ' -f1,2 "$tmp/rsa.pub")"
} >"$tmp/allowed_signers"

# --- one repository per key, and a state directory that applied its base --------------------
# make_repo NAME SIGNING-CONFIG...: base commit, then (after the template state is made) 100
# signed commits on top.
make_repo() {
    local name=$1
    shift
    local work=$tmp/$name.work bare=$tmp/$name.git
    git init -q --bare -b main "$bare"
    git init -q -b main "$work"
    printf '#!/bin/sh\nexit 0\n' >"$work/run.sh"
    chmod 755 "$work/run.sh"
    git -C "$work" add -A
    git -C "$work" "$@" commit -q -m base
    git -C "$work" push -q "$bare" HEAD:refs/heads/main
    mkdir -p "$tmp/$name.template"
    "$gitops" sync --config /dev/null --repo-url "file://$bare" --state-dir "$tmp/$name.template/state" \
        --checkout "$tmp/$name.template/co" >/dev/null 2>&1 || die "the template pass of $name failed"
    for i in $(seq 1 $COMMITS); do
        printf '%s\n' "$i" >"$work/counter"
        git -C "$work" add -A
        git -C "$work" "$@" commit -q -m "change $i"
    done
    git -C "$work" push -q "$bare" HEAD:refs/heads/main
}
say "making three repositories of $COMMITS signed commits (ed25519, RSA-3072, OpenPGP) ..." >&2
make_repo ssh-ed25519 -c gpg.format=ssh -c user.signingkey="$tmp/ed25519" -c commit.gpgsign=true
make_repo ssh-rsa -c gpg.format=ssh -c user.signingkey="$tmp/rsa" -c commit.gpgsign=true
make_repo gpg -c gpg.format=openpgp -c user.signingkey="$fpr" -c commit.gpgsign=true

# --- contenders -----------------------------------------------------------------------------
names=("none" "tip ed25519" "range ed25519" "tip rsa" "range rsa" "range gpgv")
repo_of=(ssh-ed25519 ssh-ed25519 ssh-ed25519 ssh-rsa ssh-rsa gpg)
args_of=(
    ""
    "--allowed-signers=$tmp/allowed_signers --verify=tip"
    "--allowed-signers=$tmp/allowed_signers --verify=range"
    "--allowed-signers=$tmp/allowed_signers --verify=tip"
    "--allowed-signers=$tmp/allowed_signers --verify=range"
    "--gpg-keyring=$tmp/keyring.gpg --verify=range"
)
declare -A walls cpus

# run_one I: a fresh copy of the template, then one timed pass.
run_one() {
    local i=$1 repo=${repo_of[$1]} dir=$tmp/run
    rm -rf "$dir"
    cp -a "$tmp/$repo.template" "$dir"
    local t0 t1 c0 c1
    times >"$tmp/times.0"
    t0=$EPOCHREALTIME
    # shellcheck disable=SC2086 # the arguments are words on purpose
    if ! "$gitops" sync --config /dev/null --repo-url "file://$tmp/$repo.git" --state-dir "$dir/state" \
        --checkout "$dir/co" ${args_of[$i]} >/dev/null 2>"$tmp/err"; then
        cat "$tmp/err" >&2
        die "${names[$i]}: the pass failed"
    fi
    t1=$EPOCHREALTIME
    times >"$tmp/times.1"
    children_ms "$tmp/times.0"; c0=$REPLY
    children_ms "$tmp/times.1"; c1=$REPLY
    walls[$i]+="$((${t1/./} - ${t0/./})) "
    cpus[$i]+="$((c1 - c0)) "
}

# bash's `times` prints, on its second line, the user and system time of every child this
# shell has reaped ("0m0.012s 0m0.004s"): read without forking, so the reading is the pass's.
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

for i in "${!names[@]}"; do run_one "$i" >/dev/null; walls[$i]=""; cpus[$i]=""; done
say "timing $RUNS rotated rounds ..." >&2
for round in $(seq 0 $((RUNS - 1))); do
    for k in "${!names[@]}"; do
        run_one $(((k + round) % ${#names[@]}))
    done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
minimum() { tr ' ' '\n' | grep . | sort -n | head -n 1; }
mean() { tr ' ' '\n' | grep . | awk '{ s += $1 } END { printf "%.1f", s / NR }'; }

base=$(median <<<"${walls[0]}")
printf '\n%-15s %10s %10s %10s %9s %7s\n' "pass applying" "wall med" "wall min" "CPU mean" "+ms" "ratio"
printf '%-15s %10s %10s %10s %9s %7s\n' "100 commits" "ms" "ms" "ms" "vs none" "vs none"
for i in "${!names[@]}"; do
    med=$(median <<<"${walls[$i]}")
    awk -v n="${names[$i]}" -v med="$med" -v min="$(minimum <<<"${walls[$i]}")" -v cpu="$(mean <<<"${cpus[$i]}")" -v base="$base" \
        'BEGIN { printf "%-15s %10.1f %10.1f %10s %+9.1f %6.2fx\n", n, med / 1000, min / 1000, cpu, (med - base) / 1000, med / base }'
done
say ""
say "gitops $("$gitops" --version 2>/dev/null | awk '{ print $2 }'), $RUNS rounds, $(nproc) cores, $(uname -r)"
