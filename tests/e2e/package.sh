#!/usr/bin/env bash
# End-to-end test of the .deb on a real, running systemd: boot the Debian rootfs of vm.sh with
# systemd-nspawn (read-only underneath: --volatile=overlay), and inside it run a oneshot unit
# that
#
#   - installs the package with dpkg (its postinst enables and starts gitops.timer),
#   - starts gitops.service before any configuration exists: the pass must be skipped
#     (ConditionPathExists), nothing recorded,
#   - checks that the package left the trigger's units disabled (it opens a port: opt-in),
#   - runs `gitops install-units --now --trigger --repo-url file:///srv/config.git`: it must
#     enable the packaged units (the trigger's too), not copy them into /etc/systemd/system
#     where they would hide upgrades,
#   - runs a pass (applies v1: run.sh writes /etc/motd),
#   - removes the package: the timer and the trigger are stopped and disabled, no unit or enable
#     link is left behind, and the administrator's /etc/gitops/gitops.env and the webhook
#     secret stay,
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

trap 'rc=$?; e2e_finish; exit "$rc"' EXIT
trap 'exit 130' INT TERM

e2e_tmp gitops-e2e-package

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

# What runs inside, as a oneshot unit after the boot (say and run come from e2e_nspawn).
cat >"$E2E_TMP/e2e-package.sh" <<'EOF'
exists() { if [ -e "$1" ] || [ -L "$1" ]; then echo yes; else echo no; fi; }
run dpkg-install dpkg -i /pkg/gitops.deb
say "installed is-enabled" "$(systemctl is-enabled gitops.timer 2>&1)"
say "installed is-active" "$(systemctl is-active gitops.timer 2>&1)"
say "installed trigger" "$(systemctl is-enabled gitops-trigger.socket 2>&1) $(systemctl is-enabled gitops-trigger.path 2>&1) $(systemctl is-active gitops-trigger.socket 2>&1)"
say "config dir mode" "$(stat -c %a /etc/gitops 2>&1)"
# No configuration yet: a pass must be skipped by the unit's condition, nothing recorded.
run early-start systemctl start gitops.service
say "early condition" "$(systemctl show -P ConditionResult gitops.service 2>&1)"
say "early state" "$(exists /var/lib/gitops/state.json)"
run install-units gitops install-units --now --trigger --repo-url file:///srv/config.git
say "etc service" "$(exists /etc/systemd/system/gitops.service)"
say "etc timer" "$(exists /etc/systemd/system/gitops.timer)"
say "etc trigger units" "$(exists /etc/systemd/system/gitops-trigger.socket)$(exists /etc/systemd/system/gitops-trigger.service)$(exists /etc/systemd/system/gitops-trigger.path)"
say "wants link" "$(readlink /etc/systemd/system/timers.target.wants/gitops.timer 2>&1)"
say "trigger links" "$(readlink /etc/systemd/system/sockets.target.wants/gitops-trigger.socket 2>&1) $(readlink /etc/systemd/system/paths.target.wants/gitops-trigger.path 2>&1)"
say "trigger active" "$(systemctl is-active gitops-trigger.socket 2>&1) $(systemctl is-active gitops-trigger.path 2>&1)"
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
say "removed trigger links" "$(exists /etc/systemd/system/sockets.target.wants/gitops-trigger.socket)$(exists /etc/systemd/system/paths.target.wants/gitops-trigger.path)"
say "removed trigger active" "$(systemctl is-active gitops-trigger.socket 2>&1)"
say "removed secret" "$(exists /etc/gitops/trigger.secret)"
EOF

e2e_nspawn e2e-package E2E-PKG "$E2E_TMP/e2e-package.sh" \
    --bind-ro="$DEB:/pkg/gitops.deb" \
    --bind-ro="$E2E_SRV/config.git:/srv/config.git"

# The package alone: timer on, configuration directory private, no pass before configuration.
[ "$(e2e_said "dpkg-install exit")" = 0 ] || e2e_fail "dpkg -i exited $(e2e_said "dpkg-install exit")"
[ "$(e2e_said "installed is-enabled")" = enabled ] || e2e_fail "after dpkg -i, gitops.timer is $(e2e_said "installed is-enabled")"
[ "$(e2e_said "installed is-active")" = active ] || e2e_fail "after dpkg -i, gitops.timer is $(e2e_said "installed is-active")"
[ "$(e2e_said "installed trigger")" = "disabled disabled inactive" ] ||
    e2e_fail "after dpkg -i the trigger is $(e2e_said "installed trigger"), not disabled and inactive"
[ "$(e2e_said "config dir mode")" = 700 ] || e2e_fail "/etc/gitops is mode $(e2e_said "config dir mode"), not 700"
[ "$(e2e_said "early condition")" = no ] || e2e_fail "a pass ran before /etc/gitops/gitops.env existed (ConditionResult $(e2e_said "early condition"))"
[ "$(e2e_said "early state")" = no ] || e2e_fail "a pass recorded state before any configuration existed"

# install-units next to the package: the packaged units, enabled, not shadowed.
[ "$(e2e_said "install-units exit")" = 0 ] || e2e_fail "gitops install-units --now exited $(e2e_said "install-units exit")"
[ "$(e2e_said "etc service")$(e2e_said "etc timer")" = nono ] || e2e_fail "install-units copied units into /etc/systemd/system over the package's"
[ "$(e2e_said "wants link")" = /lib/systemd/system/gitops.timer ] || e2e_fail "the enable link points at $(e2e_said "wants link")"
[ "$(e2e_said "etc trigger units")" = nonono ] || e2e_fail "install-units copied the trigger's units into /etc/systemd/system"
[ "$(e2e_said "trigger links")" = "/lib/systemd/system/gitops-trigger.socket /lib/systemd/system/gitops-trigger.path" ] ||
    e2e_fail "the trigger's enable links point at $(e2e_said "trigger links")"
[ "$(e2e_said "trigger active")" = "active active" ] || e2e_fail "the trigger's socket and path unit are $(e2e_said "trigger active")"
[ "$(e2e_said "fragment")" = /lib/systemd/system/gitops.service ] || e2e_fail "systemd loads gitops.service from $(e2e_said "fragment")"
[ "$(e2e_said "service result")" = success ] || e2e_fail "gitops.service result: $(e2e_said "service result")"
[ "$(e2e_said motd)" = "gitops e2e v1 $V1" ] || e2e_fail "/etc/motd is \"$(e2e_said motd)\", not \"gitops e2e v1 $V1\""
e2e_saw "status output: applied:      ${V1:0:12} " ||
    e2e_fail "gitops status does not report $V1 applied"

# Removal: nothing of ours runs or stays enabled; the administrator's configuration stays.
[ "$(e2e_said "dpkg-remove exit")" = 0 ] || e2e_fail "dpkg -r exited $(e2e_said "dpkg-remove exit")"
[ "$(e2e_said "removed binary")" = no ] || e2e_fail "/usr/bin/gitops is still there after dpkg -r"
[ "$(e2e_said "removed wants link")" = no ] || e2e_fail "the timer is still enabled after dpkg -r"
[ "$(e2e_said "removed etc units")" = nono ] || e2e_fail "unit files are left in /etc/systemd/system after dpkg -r"
[ "$(e2e_said "removed env file")" = yes ] || e2e_fail "dpkg -r removed the administrator's /etc/gitops/gitops.env"
[ "$(e2e_said "removed trigger links")" = nono ] || e2e_fail "the trigger is still enabled after dpkg -r"
[ "$(e2e_said "removed trigger active")" != active ] || e2e_fail "the trigger's socket still listens after dpkg -r"
[ "$(e2e_said "removed secret")" = yes ] || e2e_fail "dpkg -r removed the webhook secret"

e2e_report
echo "---- durations (s) ----"
printf '%-34s %8s\n' \
    "package" "$TIME_DEB" \
    "rootfs${E2E_ROOTFS_REUSED:+ (cached)}" "$E2E_TIME_ROOTFS" \
    "container: boot, test, poweroff" "$E2E_TIME_BOOT" \
    "total" "$(e2e_since "$E2E_T0")"
echo "e2e: package.sh passed: the .deb enables the timer (not the trigger), waits for configuration, works with install-units (--trigger too) and leaves cleanly"
