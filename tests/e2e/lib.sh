# tests/e2e/lib.sh: what vm.sh and nspawn.sh share (sourced, not run): the opt-in, the
# prerequisites, the gitops binary, the Debian rootfs and its cache, the config repository.
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
