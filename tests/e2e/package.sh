#!/usr/bin/env bash
# End-to-end test of the .deb on a real, running systemd: boot the Debian rootfs of vm.sh with
# systemd-nspawn (read-only underneath: --volatile=overlay), and inside it run a oneshot unit
# that
#
#   - installs the package with dpkg (its postinst enables and starts gitops.timer),
#   - starts gitops.service before any configuration exists: the pass must be skipped
#     (ConditionPathExists), nothing recorded,
#   - runs `gitops install-units --now --repo-url file:///srv/config.git`: it must enable the
#     packaged units, not copy them into /etc/systemd/system where they would hide upgrades,
#   - runs a pass (applies v1: run.sh writes /etc/motd),
#   - removes the package: the timer is stopped and disabled, no unit is left behind, and the
#     administrator's /etc/gitops/gitops.env stays,
#   - powers the container off.
#
# Opt-in: GITOPS_E2E=1 tests/e2e/package.sh. Root. GITOPS_DEB=PATH uses that .deb instead of
# building one with packaging/build.sh; GITOPS_E2E_CACHE, GITOPS_E2E_MIRROR and
# GITOPS_E2E_KEEP as for vm.sh.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_opt_in package.sh 3 "it installs the .deb into a Debian rootfs booted with systemd-nspawn"
e2e_need_common
e2e_need systemd-nspawn systemd-container

NSPAWN_TIMEOUT=${GITOPS_E2E_NSPAWN_TIMEOUT:-180}

cleanup() {
    local rc=$?
    if [ "${GITOPS_E2E_KEEP:-}" = 1 ] && [ -n "$E2E_TMP" ]; then
        e2e_log "kept $E2E_TMP (console log: $E2E_TMP/console.log)"
    else
        e2e_cleanup_dirs
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    e2e_log "FAIL: $*"
    if [ -f "${CONSOLE:-}" ]; then
        echo "---- last 60 lines of the container's console ----" >&2
        tail -n 60 "$CONSOLE" | tr -d '\r' | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' >&2
        echo "---- end of the console ----" >&2
    fi
    exit 1
}

# The line the unit printed for KEY ("E2E-PKG: KEY: value"), value only.
said() { grep -a "E2E-PKG: $1: " "$CLEAN" | head -n 1 | sed "s/.*E2E-PKG: $1: //"; }

e2e_tmp gitops-e2e-package
CONSOLE=$E2E_TMP/console.log
CLEAN=$E2E_TMP/console.txt
INJECT=$E2E_TMP/inject

t=$EPOCHREALTIME
if [ -n "${GITOPS_DEB:-}" ]; then
    [ -f "$GITOPS_DEB" ] || { e2e_log "GITOPS_DEB=$GITOPS_DEB is not a file"; exit 1; }
    DEB=$(realpath "$GITOPS_DEB")
else
    e2e_log "building the .deb with packaging/build.sh"
    # build.sh prints the .deb's path, then the .rpm's; a failed build stops the script here.
    built=$("$E2E_REPO/packaging/build.sh")
    DEB=$(printf '%s\n' "$built" | tail -n 2 | head -n 1)
    DEB=$(cd "$E2E_REPO" && realpath "$DEB")
    [ -f "$DEB" ] || { e2e_log "packaging/build.sh named no .deb (it printed: $built)"; exit 1; }
fi
TIME_DEB=$(e2e_since "$t")
e2e_log "package: $DEB"

e2e_rootfs

e2e_config_repo "$E2E_TMP/srv"
e2e_commit_run_sh v1
V1=$E2E_COMMIT
e2e_log "config repo: $E2E_SRV/config.git, v1 = $V1"

mkdir -p "$INJECT"
cat >"$INJECT/e2e-package.service" <<'EOF'
[Unit]
Description=e2e: the gitops .deb on the running systemd
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/e2e-package
ExecStopPost=/bin/systemctl poweroff --no-block
StandardOutput=journal+console
StandardError=journal+console
EOF
cat >"$INJECT/e2e-package" <<'EOF'
#!/bin/sh
# Each fact on one line, "E2E-PKG: KEY: value", for the host to read from the console.
say() { echo "E2E-PKG: $1: $2"; }
run() { # KEY COMMAND...: the output, prefixed, then the exit status
    key=$1; shift
    "$@" >/tmp/e2e-out 2>&1; rc=$?
    sed "s/^/E2E-PKG: $key output: /" /tmp/e2e-out
    say "$key exit" "$rc"
}
exists() { if [ -e "$1" ] || [ -L "$1" ]; then echo yes; else echo no; fi; }
run dpkg-install dpkg -i /pkg/gitops.deb
say "installed is-enabled" "$(systemctl is-enabled gitops.timer 2>&1)"
say "installed is-active" "$(systemctl is-active gitops.timer 2>&1)"
say "config dir mode" "$(stat -c %a /etc/gitops 2>&1)"
# No configuration yet: a pass must be skipped by the unit's condition, nothing recorded.
run early-start systemctl start gitops.service
say "early condition" "$(systemctl show -P ConditionResult gitops.service 2>&1)"
say "early state" "$(exists /var/lib/gitops/state.json)"
run install-units gitops install-units --now --repo-url file:///srv/config.git
say "etc service" "$(exists /etc/systemd/system/gitops.service)"
say "etc timer" "$(exists /etc/systemd/system/gitops.timer)"
say "wants link" "$(readlink /etc/systemd/system/timers.target.wants/gitops.timer 2>&1)"
say "fragment" "$(systemctl show -P FragmentPath gitops.service 2>&1)"
run start systemctl start gitops.service
say "service result" "$(systemctl show -P Result gitops.service 2>&1)"
say "motd" "$(cat /etc/motd 2>&1)"
run status gitops status
run dpkg-remove dpkg -r gitops
say "removed binary" "$(exists /usr/bin/gitops)"
say "removed is-enabled" "$(systemctl is-enabled gitops.timer 2>&1)"
say "removed wants link" "$(exists /etc/systemd/system/timers.target.wants/gitops.timer)"
say "removed etc units" "$(exists /etc/systemd/system/gitops.service)$(exists /etc/systemd/system/gitops.timer)"
say "removed env file" "$(exists /etc/gitops/gitops.env)"
say "done" "yes"
EOF
chmod 0755 "$INJECT/e2e-package"

t=$EPOCHREALTIME
e2e_log "systemd-nspawn -b (console: $CONSOLE)"
rc=0
timeout "$NSPAWN_TIMEOUT" systemd-nspawn --quiet -b -D "$E2E_ROOTFS_CACHED" \
    --register=no --keep-unit --private-network --volatile=overlay \
    --console=read-only --hostname=gitops-e2e \
    --bind-ro="$DEB:/pkg/gitops.deb" \
    --bind-ro="$E2E_SRV/config.git:/srv/config.git" \
    --bind-ro="$INJECT/e2e-package.service:/etc/systemd/system/e2e-package.service" \
    --bind-ro="$INJECT/e2e-package:/usr/local/sbin/e2e-package" \
    systemd.wants=e2e-package.service </dev/null >"$CONSOLE" 2>&1 || rc=$?
TIME_BOOT=$(e2e_since "$t")
tr -d '\r' <"$CONSOLE" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' >"$CLEAN"
[ "$rc" -ne 124 ] || fail "the container did not power off within $NSPAWN_TIMEOUT s"
[ "$(said "done")" = yes ] || fail "the e2e unit did not finish (systemd-nspawn exit $rc)"

# The package alone: timer on, configuration directory private, no pass before configuration.
[ "$(said "dpkg-install exit")" = 0 ] || fail "dpkg -i exited $(said "dpkg-install exit")"
[ "$(said "installed is-enabled")" = enabled ] || fail "after dpkg -i, gitops.timer is $(said "installed is-enabled")"
[ "$(said "installed is-active")" = active ] || fail "after dpkg -i, gitops.timer is $(said "installed is-active")"
[ "$(said "config dir mode")" = 700 ] || fail "/etc/gitops is mode $(said "config dir mode"), not 700"
[ "$(said "early condition")" = no ] || fail "a pass ran before /etc/gitops/gitops.env existed (ConditionResult $(said "early condition"))"
[ "$(said "early state")" = no ] || fail "a pass recorded state before any configuration existed"

# install-units next to the package: the packaged units, enabled, not shadowed.
[ "$(said "install-units exit")" = 0 ] || fail "gitops install-units --now exited $(said "install-units exit")"
[ "$(said "etc service")$(said "etc timer")" = nono ] || fail "install-units copied units into /etc/systemd/system over the package's"
[ "$(said "wants link")" = /lib/systemd/system/gitops.timer ] || fail "the enable link points at $(said "wants link")"
[ "$(said "fragment")" = /lib/systemd/system/gitops.service ] || fail "systemd loads gitops.service from $(said "fragment")"
[ "$(said "service result")" = success ] || fail "gitops.service result: $(said "service result")"
[ "$(said motd)" = "gitops e2e v1 $V1" ] || fail "/etc/motd is \"$(said motd)\", not \"gitops e2e v1 $V1\""
grep -a -q -F "E2E-PKG: status output: applied:      ${V1:0:12} " "$CLEAN" ||
    fail "gitops status does not report $V1 applied"

# Removal: nothing of ours runs or stays enabled; the administrator's configuration stays.
[ "$(said "dpkg-remove exit")" = 0 ] || fail "dpkg -r exited $(said "dpkg-remove exit")"
[ "$(said "removed binary")" = no ] || fail "/usr/bin/gitops is still there after dpkg -r"
[ "$(said "removed wants link")" = no ] || fail "the timer is still enabled after dpkg -r"
[ "$(said "removed etc units")" = nono ] || fail "unit files are left in /etc/systemd/system after dpkg -r"
[ "$(said "removed env file")" = yes ] || fail "dpkg -r removed the administrator's /etc/gitops/gitops.env"

echo "---- the container's report ----"
grep -a "E2E-PKG: " "$CLEAN" | sed 's/.*E2E-PKG: /  /'
echo "---- durations (s) ----"
printf '%-34s %8s\n' \
    "package" "$TIME_DEB" \
    "rootfs${E2E_ROOTFS_REUSED:+ (cached)}" "$E2E_TIME_ROOTFS" \
    "container: boot, test, poweroff" "$TIME_BOOT" \
    "total" "$(e2e_since "$E2E_T0")"
echo "e2e: package.sh passed: the .deb enables the timer, waits for configuration, works with install-units and leaves cleanly"
