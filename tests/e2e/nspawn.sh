#!/usr/bin/env bash
# End-to-end test of `gitops install-units --now` against a real, running systemd: boot the
# same Debian rootfs as vm.sh with systemd-nspawn (read-only underneath: --volatile=overlay),
# and inside it run a oneshot unit that
#
#   - runs `gitops install-units --now --repo-url file:///srv/config.git` on the live system,
#   - asks systemd whether gitops.timer is enabled and active,
#   - runs a pass with `systemctl start gitops.service` (applies commit v1: run.sh writes
#     /etc/motd), prints /etc/motd and `gitops status`,
#   - runs install-units --now again (must change nothing),
#   - powers the container off.
#
# Its output reaches this script through the container's console; the script checks it.
#
# Opt-in: GITOPS_E2E=1 tests/e2e/nspawn.sh. Root. GITOPS_BIN, GITOPS_E2E_CACHE,
# GITOPS_E2E_MIRROR and GITOPS_E2E_KEEP as for vm.sh.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_opt_in nspawn.sh 2 "it boots a Debian rootfs with systemd-nspawn"
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

# The line the unit printed for KEY ("E2E-NOW: KEY: value"), value only.
said() { grep -a "E2E-NOW: $1: " "$CLEAN" | head -n 1 | sed "s/.*E2E-NOW: $1: //"; }

e2e_tmp gitops-e2e-nspawn
CONSOLE=$E2E_TMP/console.log
CLEAN=$E2E_TMP/console.txt
INJECT=$E2E_TMP/inject

e2e_binary
e2e_rootfs

e2e_config_repo "$E2E_TMP/srv"
e2e_commit_run_sh v1
V1=$E2E_COMMIT
e2e_log "config repo: $E2E_SRV/config.git, v1 = $V1"

# The unit and its script are bound into the container; the rootfs itself stays untouched.
mkdir -p "$INJECT"
cat >"$INJECT/e2e-now.service" <<'EOF'
[Unit]
Description=e2e: gitops install-units --now on the running systemd
# Started through systemd.wants= on init's command line, after the boot is done.
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/e2e-now
ExecStopPost=/bin/systemctl poweroff --no-block
StandardOutput=journal+console
StandardError=journal+console
EOF
cat >"$INJECT/e2e-now" <<'EOF'
#!/bin/sh
# Each fact on one line, "E2E-NOW: KEY: value", for the host to read from the console.
say() { echo "E2E-NOW: $1: $2"; }
run() { # KEY COMMAND...: the output, prefixed, then the exit status
    key=$1; shift
    "$@" >/tmp/e2e-out 2>&1; rc=$?
    sed "s/^/E2E-NOW: $key output: /" /tmp/e2e-out
    say "$key exit" "$rc"
}
say "system" "$(systemctl is-system-running)"
run install-units gitops install-units --now --repo-url file:///srv/config.git
say "env-file mode" "$(stat -c %a /etc/gitops/gitops.env 2>&1)"
say "is-enabled" "$(systemctl is-enabled gitops.timer 2>&1)"
say "is-active" "$(systemctl is-active gitops.timer 2>&1)"
say "timer next" "$(systemctl show -P NextElapseUSecMonotonic gitops.timer 2>&1)"
run start systemctl start gitops.service
say "service result" "$(systemctl show -P Result gitops.service 2>&1)"
say "motd" "$(cat /etc/motd 2>&1)"
run status gitops status
journalctl -b -u gitops.service -o cat --no-pager | sed 's/^/E2E-NOW: journal: /'
run install-units-again gitops install-units --now --repo-url file:///srv/config.git
say "done" "yes"
EOF
chmod 0755 "$INJECT/e2e-now"

t=$EPOCHREALTIME
e2e_log "systemd-nspawn -b (console: $CONSOLE)"
rc=0
timeout "$NSPAWN_TIMEOUT" systemd-nspawn --quiet -b -D "$E2E_ROOTFS_CACHED" \
    --register=no --keep-unit --private-network --volatile=overlay \
    --console=read-only --hostname=gitops-e2e \
    --bind-ro="$E2E_BIN:/usr/bin/gitops" \
    --bind-ro="$E2E_SRV/config.git:/srv/config.git" \
    --bind-ro="$INJECT/e2e-now.service:/etc/systemd/system/e2e-now.service" \
    --bind-ro="$INJECT/e2e-now:/usr/local/sbin/e2e-now" \
    systemd.wants=e2e-now.service </dev/null >"$CONSOLE" 2>&1 || rc=$?
E2E_TIME_BOOT=$(e2e_since "$t")
tr -d '\r' <"$CONSOLE" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' >"$CLEAN"
[ "$rc" -ne 124 ] || fail "the container did not power off within $NSPAWN_TIMEOUT s"
[ "$(said "done")" = yes ] || fail "the e2e unit did not finish (systemd-nspawn exit $rc)"

# What install-units --now did to the running systemd.
[ "$(said "install-units exit")" = 0 ] || fail "gitops install-units --now exited $(said "install-units exit")"
grep -a -q -F "E2E-NOW: install-units output: gitops.timer is enabled and active" "$CLEAN" ||
    fail "install-units --now did not say it started gitops.timer"
[ "$(said "env-file mode")" = 600 ] || fail "/etc/gitops/gitops.env is mode $(said "env-file mode"), not 600"
[ "$(said is-enabled)" = enabled ] || fail "systemctl is-enabled gitops.timer: $(said is-enabled)"
[ "$(said is-active)" = active ] || fail "systemctl is-active gitops.timer: $(said is-active)"
# A pass started by hand runs with the env file install-units wrote.
[ "$(said "start exit")" = 0 ] || fail "systemctl start gitops.service exited $(said "start exit")"
[ "$(said "service result")" = success ] || fail "gitops.service result: $(said "service result")"
[ "$(said motd)" = "gitops e2e v1 $V1" ] || fail "/etc/motd is \"$(said motd)\", not \"gitops e2e v1 $V1\""
grep -a -q -F "E2E-NOW: status output: applied:      ${V1:0:12} " "$CLEAN" ||
    fail "gitops status does not report $V1 applied"
# Again: the same files, nothing rewritten, the timer still on.
[ "$(said "install-units-again exit")" = 0 ] ||
    fail "the second install-units --now exited $(said "install-units-again exit")"
grep -a -q -F "E2E-NOW: install-units-again output: nothing to do" "$CLEAN" ||
    fail "the second install-units --now rewrote something"

echo "---- the container's report ----"
grep -a "E2E-NOW: " "$CLEAN" | sed 's/.*E2E-NOW: /  /'
echo "---- durations (s) ----"
printf '%-34s %8s\n' \
    "binary" "$E2E_TIME_BINARY" \
    "rootfs${E2E_ROOTFS_REUSED:+ (cached)}" "$E2E_TIME_ROOTFS" \
    "container: boot, test, poweroff" "$E2E_TIME_BOOT" \
    "total" "$(e2e_since "$E2E_T0")"
echo "e2e: nspawn.sh passed: install-units --now enabled and started gitops.timer on a running systemd"
