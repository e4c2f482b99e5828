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
#   - installs the webhook trigger (`install-units --now --trigger`, with an allow list, a URL
#     path and a secret file of its own), "pushes" v2 (moves main in the bound repository) and
#     sends a GitHub-signed POST (openssl for the HMAC, bash's /dev/tcp for the request): the
#     socket starts the trigger, its pulse starts gitops.service through the path unit, v2 is
#     applied; it measures the time from the POST to the pass starting, cold (socket
#     activation) and again warm, checks that an unsigned POST starts nothing and that an
#     address outside the allow list never reaches the trigger (the kernel drops it), and runs
#     `systemd-analyze security` on the trigger's service,
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
# v2 waits on the branch next; the container moves main to it (a push) before the webhook.
e2e_commit_run_sh v2
V2=$E2E_COMMIT
e2e_git --git-dir="$E2E_SRV/config.git" update-ref refs/heads/next "$V2"
e2e_git --git-dir="$E2E_SRV/config.git" update-ref refs/heads/main "$V1"
e2e_log "config repo: $E2E_SRV/config.git, v1 = $V1 (main), v2 = $V2 (next)"

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

# --- the webhook trigger ---------------------------------------------------------------------
# A POST signed as GitHub signs it (X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>)
# sent with bash's /dev/tcp: prints the wall clock just before the connection and the status
# line. The rootfs has openssl (ca-certificates needs it) but no curl or python.
cat >/tmp/post.sh <<'POST'
#!/bin/bash
# post.sh ADDRESS URL-PATH SECRET-FILE|-: a push to main; "-" sends it unsigned. Each push's
# body differs (as GitHub's do: "after", the delivery), or the trigger refuses it as a replay.
delivery=$(cat /proc/sys/kernel/random/uuid)
body="{\"ref\":\"refs/heads/main\",\"after\":\"$(git --git-dir=/srv/config.git rev-parse main)\",\"delivery\":\"$delivery\"}"
sig=
if [ "$3" != - ]; then
    sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$(cat "$3")" -r | cut -d' ' -f1)
    sig="X-Hub-Signature-256: sha256=$sig"$'\r\n'
fi
t0=$EPOCHREALTIME
exec 3<>"/dev/tcp/$1/9419" || { echo "$t0 no-connection"; exit 0; }
printf 'POST %s HTTP/1.1\r\nHost: e2e\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: %s\r\n%sContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
    "$2" "$delivery" "$sig" "${#body}" "$body" >&3
IFS= read -r status <&3
echo "$t0 ${status%$'\r'} $(tr -d '\r' <&3 | tail -n 1)"
POST
# The realtime clock in seconds of a unit's property, microseconds kept (systemd 248+).
started() { date -d "$(systemctl show --timestamp=us+utc -P "$1" "$2")" +%s.%6N 2>/dev/null || echo 0; }
# Wait (20 s at most) for gitops.service to start after BEFORE (its previous start) and end.
wait_pass() {
    i=0
    while [ $i -lt 200 ]; do
        now=$(systemctl show -P ExecMainStartTimestampMonotonic gitops.service)
        if [ "$now" != "$1" ] && [ "$(systemctl is-active gitops.service)" != activating ]; then
            echo "$now"; return 0
        fi
        sleep 0.1; i=$((i + 1))
    done
    echo timeout
}
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 }'; }
run trigger-install gitops install-units --now --repo-url file:///srv/config.git --branch main \
    --trigger --trigger-allow 127.0.0.0/8,::1 --trigger-path /hooks/e2e \
    --trigger-min-interval 3s --trigger-secret-file /etc/gitops/e2e-trigger.secret
say "trigger socket" "$(systemctl is-enabled gitops-trigger.socket 2>&1) $(systemctl is-active gitops-trigger.socket 2>&1)"
say "trigger path" "$(systemctl is-enabled gitops-trigger.path 2>&1) $(systemctl is-active gitops-trigger.path 2>&1)"
say "trigger listen" "$(systemctl show -P Listen gitops-trigger.socket 2>&1)"
# In no particular order (systemd keeps a set).
say "trigger allow" "$(systemctl show -P IPAddressAllow gitops-trigger.socket 2>&1 | tr ' ' '\n' | sort | paste -sd ' ')"
say "trigger secret" "$(stat -c '%a %U %s' /etc/gitops/e2e-trigger.secret 2>&1)"
say "trigger env mode" "$(stat -c %a /etc/gitops/trigger.env 2>&1)"
say "trigger credential" "$(systemctl cat gitops-trigger.service 2>&1 | grep '^LoadCredential=' | tail -n 1)"
# The push, then the webhook, cold: the trigger is not running yet; the socket starts it.
before=$(systemctl show -P ExecMainStartTimestampMonotonic gitops.service)
git --git-dir=/srv/config.git update-ref refs/heads/main refs/heads/next
stopped=$(systemctl is-active gitops-trigger.service)
out=$(bash /tmp/post.sh 127.0.0.1 /hooks/e2e /etc/gitops/e2e-trigger.secret)
t0=${out%% *}
say "signed post" "${out#* }"
say "cold trigger before" "$stopped"
after=$(wait_pass "$before")
say "cold pass" "$after"
say "cold pass result" "$(systemctl show -P Result gitops.service)"
say "cold trigger started ms" "$(ms "$t0" "$(started ExecMainStartTimestamp gitops-trigger.service)")"
say "cold pass started ms" "$(ms "$t0" "$(started ExecMainStartTimestamp gitops.service)")"
say "cold pass done ms" "$(ms "$t0" "$(started ExecMainExitTimestamp gitops.service)")"
say "motd after the webhook" "$(cat /etc/motd 2>&1)"
say "timer fired" "$(systemctl show -P LastTriggerUSecMonotonic gitops.timer)"
# An unsigned request: 401, and nothing starts.
before=$after
say "unsigned post" "$(bash /tmp/post.sh 127.0.0.1 /hooks/e2e - | cut -d' ' -f2-)"
sleep 1
say "unsigned started a pass" "$([ "$(systemctl show -P ExecMainStartTimestampMonotonic gitops.service)" = "$before" ] && echo no || echo yes)"
# Another address on the loopback, outside the allow list: the kernel drops its packets, so the
# connection never opens (the trigger would answer 403 if it got that far).
ip addr add 192.0.2.1/32 dev lo
say "outside the allow list" "$(timeout 3 bash -c 'exec 3<>/dev/tcp/192.0.2.1/9419 && echo connected' 2>&1; echo "exit $?")"
# Warm: the trigger still runs (60 s idle exit), and the 3 s interval has passed: one more.
say "warm trigger before" "$(systemctl is-active gitops-trigger.service)"
out=$(bash /tmp/post.sh ::1 /hooks/e2e /etc/gitops/e2e-trigger.secret)
t0=${out%% *}
say "warm post" "${out#* }"
say "warm pass" "$(wait_pass "$before")"
say "warm pass started ms" "$(ms "$t0" "$(started ExecMainStartTimestamp gitops.service)")"
say "trigger state dir" "$(readlink /var/lib/gitops-trigger) $(stat -c %a /var/lib/private/gitops-trigger 2>&1)"
run status-trigger gitops status
journalctl -b -u gitops-trigger.service -o cat --no-pager | sed 's/^/E2E-NOW: trigger-journal: /'
say "pass journal" "$(journalctl -b -u gitops.service -o cat --no-pager | grep -c 'gitops: ')"
say "security" "$(systemd-analyze security --no-pager gitops-trigger.service 2>&1 | tail -n 1)"
systemd-analyze security --no-pager gitops-trigger.service 2>&1 | grep -v '✓' | sed 's/^/E2E-NOW: security-detail: /'
# A pass that fails (a branch the repository does not have): journald files gitops's own
# error line as err, its other lines lower, so `journalctl -p err` lists the failure alone.
echo GITOPS_BRANCH=no-such-branch >>/etc/gitops/gitops.env
run failing-start systemctl start gitops.service
say "err lines" "$(journalctl -b -u gitops.service -p err -o cat --no-pager | grep -c '^gitops: ')"
say "err error" "$(journalctl -b -u gitops.service -p err -o cat --no-pager | grep -c '^gitops: error: ')"
say "info lines" "$(journalctl -b -u gitops.service -p info -o cat --no-pager | grep -c '^gitops: running ')"
journalctl -b -u gitops.service -p err -o cat --no-pager | sed 's/^/E2E-NOW: journal-err: /'
EOF

# cgroup v2 and the bpf() system call in the container, so that systemd there can enforce
# IPAddressDeny=/IPAddressAllow= (its BPF firewall) as on a host; the repository writable for
# the "push".
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 e2e_nspawn e2e-now E2E-NOW "$E2E_TMP/e2e-now.sh" \
    --system-call-filter=bpf \
    --bind-ro="$E2E_BIN:/usr/bin/gitops" \
    --bind="$E2E_SRV/config.git:/srv/config.git"

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

# The trigger: installed and listening as configured, its secret private, its credential loaded.
[ "$(e2e_said "trigger-install exit")" = 0 ] || e2e_fail "install-units --trigger exited $(e2e_said "trigger-install exit")"
e2e_saw "trigger-install output: gitops-trigger.socket and gitops-trigger.path are enabled and active" ||
    e2e_fail "install-units --trigger --now did not start the trigger's units"
[ "$(e2e_said "trigger socket")" = "enabled active" ] || e2e_fail "gitops-trigger.socket: $(e2e_said "trigger socket")"
[ "$(e2e_said "trigger path")" = "enabled active" ] || e2e_fail "gitops-trigger.path: $(e2e_said "trigger path")"
[ "$(e2e_said "trigger listen")" = "[::]:9419 (Stream)" ] || e2e_fail "the socket listens on $(e2e_said "trigger listen")"
[ "$(e2e_said "trigger allow")" = "127.0.0.0/8 ::1/128" ] || e2e_fail "the socket allows $(e2e_said "trigger allow")"
[ "$(e2e_said "trigger secret")" = "600 root 64" ] || e2e_fail "the secret file is $(e2e_said "trigger secret"), not 600 root 64"
[ "$(e2e_said "trigger env mode")" = 600 ] || e2e_fail "trigger.env is mode $(e2e_said "trigger env mode")"
e2e_saw "trigger-install output: wrote /etc/gitops/e2e-trigger.secret (mode 0600): the webhook secret, not shown" ||
    e2e_fail "install-units did not say it wrote the secret (or showed it off a terminal)"
[ "$(e2e_said "trigger credential")" = "LoadCredential=trigger-secret:/etc/gitops/e2e-trigger.secret" ] ||
    e2e_fail "the service's credential comes from $(e2e_said "trigger credential")"
# Nothing but a signed request starts a pass; the kernel keeps other addresses out.
case $(e2e_said "unsigned post") in
"HTTP/1.1 401 "*) ;;
*) e2e_fail "an unsigned POST was answered $(e2e_said "unsigned post")" ;;
esac
[ "$(e2e_said "unsigned started a pass")" = no ] || e2e_fail "an unsigned POST started a pass"
[ "$(e2e_said "outside the allow list")" = "exit 124" ] ||
    e2e_fail "an address outside --trigger-allow reached the socket: $(e2e_said "outside the allow list")"
# The signed push: the socket started the trigger, the path unit the pass, which applied v2.
[ "$(e2e_said "cold trigger before")" = inactive ] || e2e_fail "the trigger was already running before the first POST"
case $(e2e_said "signed post") in
"HTTP/1.1 202 "*started*) ;;
*) e2e_fail "the signed POST was answered $(e2e_said "signed post")" ;;
esac
[ "$(e2e_said "cold pass")" != timeout ] || e2e_fail "no pass started within 20 s of the signed POST"
[ "$(e2e_said "cold pass result")" = success ] || e2e_fail "the webhook's pass: $(e2e_said "cold pass result")"
[ "$(e2e_said "motd after the webhook")" = "gitops e2e v2 $V2" ] ||
    e2e_fail "after the webhook /etc/motd is \"$(e2e_said "motd after the webhook")\", not v2"
[ "$(e2e_said "timer fired")" = 0 ] || e2e_fail "gitops.timer fired during the test: the pass may not be the webhook's"
e2e_saw "trigger-journal: gitops trigger: started: github request from " ||
    e2e_fail "the trigger's journal does not record the request that started the pass"
case $(e2e_said "warm post") in
"HTTP/1.1 202 "*started*) ;;
*) e2e_fail "the second signed POST was answered $(e2e_said "warm post")" ;;
esac
[ "$(e2e_said "warm pass")" != timeout ] || e2e_fail "no pass started within 20 s of the second POST"
[ "$(e2e_said "warm trigger before")" = active ] || e2e_fail "the trigger had exited before the second POST"
[ "$(e2e_said "trigger state dir")" = "private/gitops-trigger 700" ] ||
    e2e_fail "the trigger's state directory is $(e2e_said "trigger state dir")"
e2e_saw "status-trigger output: trigger:      last github request from " ||
    e2e_fail "gitops status does not show the trigger's last request"
COLD_TRIGGER_MS=$(e2e_said "cold trigger started ms")
COLD_MS=$(e2e_said "cold pass started ms")
COLD_DONE_MS=$(e2e_said "cold pass done ms")
WARM_MS=$(e2e_said "warm pass started ms")
SECURITY=$(e2e_said security)
case $SECURITY in
*"exposure level for gitops-trigger.service: "*) ;;
*) e2e_fail "systemd-analyze security said: $SECURITY" ;;
esac
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
echo "---- the trigger ----"
printf '%-50s %8s\n' \
    "signed POST -> gitops-trigger.service started (ms)" "$COLD_TRIGGER_MS" \
    "signed POST -> gitops.service started, cold (ms)" "$COLD_MS" \
    "signed POST -> v2 applied, the pass done (ms)" "$COLD_DONE_MS" \
    "signed POST -> gitops.service started, warm (ms)" "$WARM_MS"
echo "systemd-analyze security: ${SECURITY#→ }"
echo "e2e: nspawn.sh passed: install-units --now enabled and started gitops.timer on a running systemd; a signed POST to gitops-trigger.socket started a pass $COLD_MS ms later (cold; $WARM_MS ms warm), which had applied v2 $COLD_DONE_MS ms after the POST"
