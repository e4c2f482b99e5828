# tests/e2e/lib.sh: what vm.sh, nspawn.sh and package.sh share (sourced, not run): the opt-in,
# the prerequisites, the gitops binary, the Debian rootfs and its cache, the config repository,
# the end of a run (keep or remove, show the log on failure), and a booted nspawn container.
# Everything is created under one temporary directory ($E2E_TMP) removed at exit; only the
# rootfs cache survives, and only when GITOPS_E2E_CACHE names it.
# shellcheck shell=bash
# The E2E_* variables set here are read by the scripts that source this file.
# shellcheck disable=SC2034

E2E_SUITE=bookworm
# What the rootfs holds. systemd-networkd (part of the systemd package) does DHCP in the VM,
# so neither ifupdown nor a DHCP client is needed.
E2E_PACKAGES=systemd,systemd-sysv,udev,dbus,git,ca-certificates,linux-image-amd64,initramfs-tools,kmod,iproute2
# Written into the cache beside the rootfs: a cache built with other packages is rebuilt.
E2E_STAMP="debootstrap --variant=minbase --include=$E2E_PACKAGES $E2E_SUITE (e2e rootfs v1)"

E2E_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
E2E_T0=$EPOCHREALTIME
E2E_TMP=
E2E_CLEANUP=()
# The guest's console or serial log, and what to call it: shown on failure, named when kept.
E2E_LOG=
E2E_LOG_NAME=log

e2e_log() { printf 'e2e: %s\n' "$*" >&2; }

# The opt-in, the same for every script here: print why nothing ran and succeed.
e2e_opt_in() { # SCRIPT MINUTES WHAT
    if [ "${GITOPS_E2E:-}" != 1 ]; then
        echo "e2e: skipped (set GITOPS_E2E=1 to run it; $3, about $2 minutes)"
        exit 0
    fi
}

e2e_skip() {
    echo "e2e: skipped ($*)"
    exit 0
}

# Seconds since a mark taken with $EPOCHREALTIME, one decimal.
e2e_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# Ensure COMMAND exists; install PACKAGE with apt-get when root, else skip the test saying why.
e2e_need() { # COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        e2e_skip "$1 is missing: install the $2 package (apt-get install $2) or run as root"
    fi
    if [ -z "${E2E_APT_UPDATED:-}" ]; then
        e2e_log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 ||
            e2e_skip "$1 is missing and apt-get update failed"
        E2E_APT_UPDATED=1
    fi
    e2e_log "installing $2 (for $1)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" >&2 ||
        e2e_skip "$1 is missing and apt-get install $2 failed"
    command -v "$1" >/dev/null 2>&1 || e2e_skip "$1 is still missing after installing $2"
}

e2e_need_common() {
    [ "$(id -u)" -eq 0 ] || e2e_skip "debootstrap and the image need root; run it as root"
    e2e_need debootstrap debootstrap
    e2e_need git git
    e2e_need chroot coreutils
}

e2e_tmp() { # PREFIX
    E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    E2E_CLEANUP+=("$E2E_TMP")
}

# The gitops binary: GITOPS_BIN, or the release build (cargo rebuilds only what changed).
e2e_binary() {
    local t=$EPOCHREALTIME
    if [ -n "${GITOPS_BIN:-}" ]; then
        [ -x "$GITOPS_BIN" ] || { e2e_log "GITOPS_BIN=$GITOPS_BIN is not an executable"; exit 1; }
        E2E_BIN=$GITOPS_BIN
    else
        command -v cargo >/dev/null 2>&1 ||
            e2e_skip "cargo is missing: install Rust or point GITOPS_BIN at a gitops binary"
        e2e_log "cargo build --release"
        cargo build --release --quiet --manifest-path "$E2E_REPO/Cargo.toml" >&2
        E2E_BIN=$E2E_REPO/target/release/gitops
    fi
    e2e_log "binary: $E2E_BIN ($("$E2E_BIN" --version)) in $(e2e_since "$t") s"
    E2E_TIME_BINARY=$(e2e_since "$t")
}

# The Debian mirror apt uses on this host (the only package source it may reach), from
# sources.list's one-line format or the deb822 .sources files; GITOPS_E2E_MIRROR overrides.
e2e_mirror() {
    if [ -n "${GITOPS_E2E_MIRROR:-}" ]; then
        echo "$GITOPS_E2E_MIRROR"
        return
    fi
    local f uri
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri=$(sed -e 's/#.*//' -e 's/\[[^]]*\]//g' "$f" |
            awk '$1 == "deb" && $3 !~ /-(security|updates|backports)$/ { print $2; exit }')
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && enabled != "no" && uris != "" &&
                    suites !~ /^ *[^ ]*-(security|updates|backports)( |$)/) {
                    split(uris, u, " "); print u[1]; found = 1; exit
                }
                types = uris = suites = ""; enabled = "yes"
            }
            BEGIN { enabled = "yes" }
            /^#/ { next }
            /^[ \t]*$/ { flush(); next }
            /^[A-Za-z-]+:/ {
                key = tolower(substr($0, 1, index($0, ":") - 1))
                val = substr($0, index($0, ":") + 1); gsub(/^[ \t]+|[ \t]+$/, "", val)
                if (key == "types") types = val
                else if (key == "uris") uris = val
                else if (key == "suites") suites = val
                else if (key == "enabled") enabled = tolower(val)
            }
            END { if (!found) flush() }' "$f")
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    echo "http://deb.debian.org/debian"
}

# The minbase rootfs, built once per cache: sets E2E_ROOTFS_CACHED (do not write into it when it
# is the caller's cache) and E2E_TIME_ROOTFS.
e2e_rootfs() {
    local t=$EPOCHREALTIME cache mirror
    if [ -n "${GITOPS_E2E_CACHE:-}" ]; then
        mkdir -p "$GITOPS_E2E_CACHE"
        cache=$(cd "$GITOPS_E2E_CACHE" && pwd)
    else
        cache=$E2E_TMP/cache
        mkdir -p "$cache"
    fi
    E2E_ROOTFS_CACHED=$cache/rootfs-$E2E_SUITE
    if [ -f "$cache/rootfs-$E2E_SUITE.stamp" ] &&
        [ "$(cat "$cache/rootfs-$E2E_SUITE.stamp")" = "$E2E_STAMP" ] &&
        [ -d "$E2E_ROOTFS_CACHED/usr" ]; then
        e2e_log "rootfs: reusing $E2E_ROOTFS_CACHED"
        E2E_ROOTFS_REUSED=1
    else
        mirror=$(e2e_mirror)
        e2e_log "rootfs: debootstrap $E2E_SUITE from $mirror into $E2E_ROOTFS_CACHED (about 2 minutes)"
        rm -rf "$E2E_ROOTFS_CACHED" "$E2E_ROOTFS_CACHED.new" "$cache/rootfs-$E2E_SUITE.stamp"
        if ! debootstrap --variant=minbase --include="$E2E_PACKAGES" \
            "$E2E_SUITE" "$E2E_ROOTFS_CACHED.new" "$mirror" >"$cache/debootstrap.log" 2>&1; then
            tail -n 30 "$cache/debootstrap.log" >&2
            e2e_log "FAIL: debootstrap failed (log: $cache/debootstrap.log)"
            rm -rf "$E2E_ROOTFS_CACHED.new"
            exit 1
        fi
        rm -f "$E2E_ROOTFS_CACHED.new"/var/cache/apt/archives/*.deb \
            "$E2E_ROOTFS_CACHED.new"/var/lib/apt/lists/*_Packages
        mv "$E2E_ROOTFS_CACHED.new" "$E2E_ROOTFS_CACHED"
        echo "$E2E_STAMP" >"$cache/rootfs-$E2E_SUITE.stamp"
        E2E_ROOTFS_REUSED=
    fi
    E2E_TIME_ROOTFS=$(e2e_since "$t")
}

# A private copy of the cached rootfs to write this run's files into (the temporary cache is
# used in place: nothing else will read it).
e2e_rootfs_copy() { # DEST
    if [ -n "${GITOPS_E2E_CACHE:-}" ]; then
        cp -a "$E2E_ROOTFS_CACHED" "$1"
    else
        mv "$E2E_ROOTFS_CACHED" "$1"
    fi
}

e2e_git() { # git with none of the host's configuration
    GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1 \
        git -c user.name=gitops-e2e -c user.email=e2e@localhost -c init.defaultBranch=main "$@"
}

# The config repository: SRV/config.git (bare, branch main) and a work tree to commit from.
e2e_config_repo() { # SRV
    E2E_SRV=$1
    E2E_WORK=$E2E_TMP/work
    mkdir -p "$E2E_SRV"
    e2e_git init --quiet --bare "$E2E_SRV/config.git"
    e2e_git init --quiet "$E2E_WORK"
    e2e_git -C "$E2E_WORK" remote add origin "$E2E_SRV/config.git"
}

# Commit a run.sh that writes /etc/motd with "gitops e2e VERSION <commit>"; sets E2E_COMMIT.
e2e_commit_run_sh() { # VERSION
    cat >"$E2E_WORK/run.sh" <<EOF
#!/bin/sh
set -e
printf 'gitops e2e $1 %s\n' "\$GITOPS_COMMIT" > /etc/motd
echo "run.sh: wrote /etc/motd for $1"
EOF
    chmod +x "$E2E_WORK/run.sh"
    e2e_git -C "$E2E_WORK" add run.sh
    e2e_git -C "$E2E_WORK" commit --quiet -m "e2e: run.sh writes motd $1"
    e2e_git -C "$E2E_WORK" push --quiet origin HEAD:main
    E2E_COMMIT=$(e2e_git -C "$E2E_WORK" rev-parse HEAD)
}

e2e_cleanup_dirs() {
    local d
    for d in "${E2E_CLEANUP[@]}"; do
        [ -n "$d" ] && rm -rf "$d"
    done
}

# At exit: keep the temporary directory when GITOPS_E2E_KEEP=1 (saying where the log is),
# else remove it.
e2e_finish() {
    if [ "${GITOPS_E2E_KEEP:-}" = 1 ] && [ -n "$E2E_TMP" ]; then
        e2e_log "kept $E2E_TMP ($E2E_LOG_NAME: ${E2E_LOG:-none})"
    else
        e2e_cleanup_dirs
    fi
}

# Console text without carriage returns and colour codes.
e2e_plain() { tr -d '\r' | sed 's/\x1b\[[0-9;]*[A-Za-z]//g'; }

# The last 60 lines of the guest's log, on stderr.
e2e_show_log() {
    [ -f "${E2E_LOG:-}" ] || return 0
    echo "---- last 60 lines of the $E2E_LOG_NAME ----" >&2
    tail -n 60 "$E2E_LOG" | e2e_plain >&2
    echo "---- end of the $E2E_LOG_NAME ----" >&2
}

e2e_fail() {
    e2e_log "FAIL: $*"
    e2e_show_log
    exit 1
}

# Boot the cached rootfs with systemd-nspawn (read-only underneath: --volatile=overlay; no
# network) and run SCRIPT in it as the oneshot unit NAME.service once the boot is done; the
# unit then powers the container off. SCRIPT reports facts with `say KEY VALUE` and
# `run KEY COMMAND...`, console lines "TAG: KEY: value" that e2e_said reads back. Further
# arguments go to systemd-nspawn (binds).
e2e_nspawn() { # NAME TAG SCRIPT [NSPAWN-ARGS...]
    local name=$1 tag=$2 script=$3 t=$EPOCHREALTIME rc=0
    shift 3
    local inject=$E2E_TMP/inject
    mkdir -p "$inject"
    printf '%s\n' \
        '[Unit]' \
        "Description=e2e: $name" \
        'After=multi-user.target' \
        '' \
        '[Service]' \
        'Type=oneshot' \
        "ExecStart=/usr/local/sbin/$name" \
        'ExecStopPost=/bin/systemctl poweroff --no-block' \
        'StandardOutput=journal+console' \
        'StandardError=journal+console' >"$inject/$name.service"
    {
        echo '#!/bin/sh'
        echo "say() { echo \"$tag: \$1: \$2\"; }"
        echo '# KEY COMMAND...: the output, each line prefixed, then the exit status'
        echo 'run() {'
        echo '    key=$1; shift'
        echo '    "$@" >/tmp/e2e-out 2>&1; rc=$?'
        echo "    sed \"s/^/$tag: \$key output: /\" /tmp/e2e-out"
        echo '    say "$key exit" "$rc"'
        echo '}'
        cat "$script"
        echo 'say done yes'
    } >"$inject/$name"
    chmod 0755 "$inject/$name"
    E2E_LOG=$E2E_TMP/console.log
    E2E_LOG_NAME="container's console"
    E2E_SAID=$E2E_TMP/console.txt
    E2E_TAG=$tag
    e2e_log "systemd-nspawn -b (console: $E2E_LOG)"
    timeout "${GITOPS_E2E_NSPAWN_TIMEOUT:-180}" systemd-nspawn --quiet -b -D "$E2E_ROOTFS_CACHED" \
        --register=no --keep-unit --private-network --volatile=overlay \
        --console=read-only --hostname=gitops-e2e \
        --bind-ro="$inject/$name.service:/etc/systemd/system/$name.service" \
        --bind-ro="$inject/$name:/usr/local/sbin/$name" \
        "$@" systemd.wants="$name.service" </dev/null >"$E2E_LOG" 2>&1 || rc=$?
    E2E_TIME_BOOT=$(e2e_since "$t")
    e2e_plain <"$E2E_LOG" >"$E2E_SAID"
    [ "$rc" -ne 124 ] ||
        e2e_fail "the container did not power off within ${GITOPS_E2E_NSPAWN_TIMEOUT:-180} s"
    [ "$(e2e_said done)" = yes ] || e2e_fail "the e2e unit did not finish (systemd-nspawn exit $rc)"
}

# What the script in the container reported for KEY, value only.
e2e_said() { grep -a "$E2E_TAG: $1: " "$E2E_SAID" | head -n 1 | sed "s/.*$E2E_TAG: $1: //"; }

# Every report line of the container, for the record.
e2e_report() {
    echo "---- the container's report ----"
    grep -a "$E2E_TAG: " "$E2E_SAID" | sed "s/.*$E2E_TAG: /  /"
}

# Whether the container reported the fixed text "TAG: TEXT" (an output line, say).
e2e_saw() { grep -a -q -F "$E2E_TAG: $1" "$E2E_SAID"; }
