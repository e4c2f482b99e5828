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
#   - runs a failing pass and reads journald's priorities of gitops's lines (-p err),
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

trap 'rc=$?; e2e_finish; exit "$rc"' EXIT
trap 'exit 130' INT TERM

e2e_tmp gitops-e2e-nspawn
e2e_binary
e2e_rootfs

e2e_config_repo "$E2E_TMP/srv"
e2e_commit_run_sh v1
V1=$E2E_COMMIT
e2e_log "config repo: $E2E_SRV/config.git, v1 = $V1"

# What runs inside, as a oneshot unit after the boot (say and run come from e2e_nspawn).
cat >"$E2E_TMP/e2e-now.sh" <<'EOF'
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
# A pass that fails (a branch the repository does not have): journald files gitops's own
# error line as err, its other lines lower, so `journalctl -p err` lists the failure alone.
echo GITOPS_BRANCH=no-such-branch >>/etc/gitops/gitops.env
run failing-start systemctl start gitops.service
say "err lines" "$(journalctl -b -u gitops.service -p err -o cat --no-pager | grep -c '^gitops: ')"
say "err error" "$(journalctl -b -u gitops.service -p err -o cat --no-pager | grep -c '^gitops: error: ')"
say "info lines" "$(journalctl -b -u gitops.service -p info -o cat --no-pager | grep -c '^gitops: running ')"
journalctl -b -u gitops.service -p err -o cat --no-pager | sed 's/^/E2E-NOW: journal-err: /'
EOF

e2e_nspawn e2e-now E2E-NOW "$E2E_TMP/e2e-now.sh" \
    --bind-ro="$E2E_BIN:/usr/bin/gitops" \
    --bind-ro="$E2E_SRV/config.git:/srv/config.git"

# What install-units --now did to the running systemd.
[ "$(e2e_said "install-units exit")" = 0 ] || e2e_fail "gitops install-units --now exited $(e2e_said "install-units exit")"
e2e_saw "install-units output: gitops.timer is enabled and active" ||
    e2e_fail "install-units --now did not say it started gitops.timer"
[ "$(e2e_said "env-file mode")" = 600 ] || e2e_fail "/etc/gitops/gitops.env is mode $(e2e_said "env-file mode"), not 600"
[ "$(e2e_said is-enabled)" = enabled ] || e2e_fail "systemctl is-enabled gitops.timer: $(e2e_said is-enabled)"
[ "$(e2e_said is-active)" = active ] || e2e_fail "systemctl is-active gitops.timer: $(e2e_said is-active)"
# A pass started by hand runs with the env file install-units wrote.
[ "$(e2e_said "start exit")" = 0 ] || e2e_fail "systemctl start gitops.service exited $(e2e_said "start exit")"
[ "$(e2e_said "service result")" = success ] || e2e_fail "gitops.service result: $(e2e_said "service result")"
[ "$(e2e_said motd)" = "gitops e2e v1 $V1" ] || e2e_fail "/etc/motd is \"$(e2e_said motd)\", not \"gitops e2e v1 $V1\""
e2e_saw "status output: applied:      ${V1:0:12} " ||
    e2e_fail "gitops status does not report $V1 applied"
# Again: the same files, nothing rewritten, the timer still on.
[ "$(e2e_said "install-units-again exit")" = 0 ] ||
    e2e_fail "the second install-units --now exited $(e2e_said "install-units-again exit")"
e2e_saw "install-units-again output: nothing to do" ||
    e2e_fail "the second install-units --now rewrote something"
# status asks the running systemd when the timer fires next.
e2e_saw "status output: next pass:    " || e2e_fail "gitops status does not show the timer's next run"
# The journal's priorities: the failing pass's error line is err; the lines of the pass that
# applied (gitops: running …) are info, so -p err leaves them out.
[ "$(e2e_said "failing-start exit")" != 0 ] || e2e_fail "a pass on a branch that does not exist succeeded"
[ "$(e2e_said "err error")" = 1 ] || e2e_fail "journalctl -p err has $(e2e_said "err error") 'gitops: error:' lines, not 1"
[ "$(e2e_said "err lines")" = 1 ] || e2e_fail "journalctl -p err lists $(e2e_said "err lines") lines of gitops's, not only the error"
[ "$(e2e_said "info lines")" -ge 1 ] || e2e_fail "journalctl -p info does not have the pass's 'gitops: running' line"

e2e_report
echo "---- durations (s) ----"
printf '%-34s %8s\n' \
    "binary" "$E2E_TIME_BINARY" \
    "rootfs${E2E_ROOTFS_REUSED:+ (cached)}" "$E2E_TIME_ROOTFS" \
    "container: boot, test, poweroff" "$E2E_TIME_BOOT" \
    "total" "$(e2e_since "$E2E_T0")"
echo "e2e: nspawn.sh passed: install-units --now enabled and started gitops.timer on a running systemd"
