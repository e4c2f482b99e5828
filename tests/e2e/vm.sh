#!/usr/bin/env bash
# End-to-end test in a real VM: the original article's own test, automated. "Start the VM,
# change run.sh, wait 5 minutes, see the motd change" becomes:
#
#   1. debootstrap a minimal Debian bookworm (cached with GITOPS_E2E_CACHE=DIR), copy gitops
#      into it, `gitops install-units --root` it, shorten the timer with a drop-in;
#   2. boot it under QEMU; its only way out is a guestfwd to `git daemon --inetd` serving this
#      test's config repository at git://10.0.2.100/config.git;
#   3. wait for the timer's pass to apply commit v1 (run.sh writes /etc/motd), push v2, wait
#      for the timer to apply it too. The guest reports /etc/motd and `gitops status` on its
#      serial console after every pass; the test reads that log;
#   4. push v3, which adds `.gitops/reboot` ("this machine must have booted at or after T", T a
#      few seconds after the guest's boot): the pass that applies it runs `systemctl reboot`
#      and QEMU restarts the guest in the same process (no -no-reboot; snapshot=on keeps the
#      disk's writes until QEMU exits). The serial log must then hold exactly two boots, and
#      two more passes must find the request `satisfied` without asking again.
#
# Opt-in: GITOPS_E2E=1 tests/e2e/vm.sh. Root (debootstrap, chroot). Other settings:
#   GITOPS_BIN=PATH          use this binary instead of `cargo build --release`
#   GITOPS_E2E_CACHE=DIR     keep the debootstrapped rootfs there between runs
#   GITOPS_E2E_ACCEL=kvm|tcg skip the KVM probe
#   GITOPS_E2E_MIRROR=URL    Debian mirror (default: the one apt uses on this host)
#   GITOPS_E2E_KEEP=1        keep the temporary directory (serial log, image) at the end
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_opt_in vm.sh 4 "it boots a Debian VM under QEMU and reboots it once"
e2e_need_common
e2e_need qemu-system-x86_64 qemu-system-x86
e2e_need mkfs.ext4 e2fsprogs
mkfs_usage=$(mkfs.ext4 2>&1 || true)
[[ $mkfs_usage == *"-d root-directory"* ]] ||
    e2e_skip "mkfs.ext4 has no -d (e2fsprogs 1.43 or later is needed to build the image without a loop mount)"

# How long each wait may take, in seconds (TCG: boot ~30-60 s, a pass every 15 s).
BOOT_TIMEOUT=${GITOPS_E2E_BOOT_TIMEOUT:-420}
PASS_TIMEOUT=${GITOPS_E2E_PASS_TIMEOUT:-300}
# The kernel's first line on the console: one per boot of the guest.
BOOT_LINE="Linux version "

GUEST_URL=git://10.0.2.100/config.git
QEMU_PID=

cleanup() {
    local rc=$?
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$QEMU_PID" 2>/dev/null || true
        wait "$QEMU_PID" 2>/dev/null || true
    fi
    e2e_finish
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    e2e_log "FAIL: $*"
    e2e_show_log
    if [ -s "${E2E_TMP:-/nonexistent}/qemu.log" ]; then
        echo "---- qemu's own output ----" >&2
        tail -n 20 "$E2E_TMP/qemu.log" >&2
    fi
    exit 1
}

# How many lines of the serial log, from line FROM on, hold the fixed string NEEDLE.
count_lines() { # NEEDLE [FROM]
    tail -n "+${2:-1}" "$SERIAL" 2>/dev/null | grep -a -c -F -- "$1" || true
}

# Wait until COUNT lines of the serial log hold the fixed string NEEDLE; fail after TIMEOUT
# seconds or when QEMU is gone. With FROM, only lines from FROM on count.
wait_count() { # NEEDLE COUNT TIMEOUT WHAT [FROM]
    local deadline=$((SECONDS + $3))
    while [ "$(count_lines "$1" "${5:-1}")" -lt "$2" ]; do
        kill -0 "$QEMU_PID" 2>/dev/null || fail "QEMU exited while waiting for $4"
        [ "$SECONDS" -lt "$deadline" ] || fail "no $4 after $3 s (looked for \"$1\" in the serial log)"
        sleep 1
    done
}

wait_for() { # NEEDLE TIMEOUT WHAT [FROM]
    wait_count "$1" 1 "$2" "$3" "${4:-1}"
}

# The line number the serial log has reached: waits that pass FROM see only what follows.
log_mark() { wc -l <"$SERIAL"; }

# KVM when it really runs this kernel: /dev/kvm can exist and still not boot a stock Debian
# kernel (a PVM device does that). The probe boots the kernel without root: under working KVM it
# panics on the missing root within a few seconds.
pick_accel() { # KERNEL
    case ${GITOPS_E2E_ACCEL:-} in
    kvm | tcg)
        echo "$GITOPS_E2E_ACCEL"
        return
        ;;
    esac
    if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
        echo tcg
        return
    fi
    timeout 15 qemu-system-x86_64 -accel kvm -cpu host -m 256 -nodefaults -display none \
        -no-reboot -kernel "$1" -append "console=ttyS0 panic=-1" \
        -serial "file:$E2E_TMP/kvm-probe.log" </dev/null >/dev/null 2>&1 || true
    if grep -a -q "Unable to mount root fs" "$E2E_TMP/kvm-probe.log" 2>/dev/null; then
        echo kvm
    else
        echo tcg
    fi
}

e2e_tmp gitops-e2e-vm
SERIAL=$E2E_TMP/serial.log
E2E_LOG=$SERIAL
E2E_LOG_NAME="serial log"
SRV=$E2E_TMP/srv
ROOTFS=$E2E_TMP/rootfs
IMAGE=$E2E_TMP/image.raw
case $SRV in *,*) e2e_skip "the temporary directory $SRV holds a comma, which QEMU's -netdev cannot carry" ;; esac

# --- 1. the binary, the rootfs ----------------------------------------------------------------
e2e_binary
e2e_rootfs

# --- 2. this run's guest: gitops installed as a package would, plus the test's own files -------
t=$EPOCHREALTIME
e2e_rootfs_copy "$ROOTFS"
echo gitops-e2e >"$ROOTFS/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 gitops-e2e\n' >"$ROOTFS/etc/hosts"
echo '/dev/vda / ext4 rw 0 1' >"$ROOTFS/etc/fstab"
# Log in on the serial console as root without a password, to look around when debugging.
chroot "$ROOTFS" passwd --quiet --delete root >/dev/null
# DHCP on the virtio NIC: QEMU's user network gives 10.0.2.15.
mkdir -p "$ROOTFS/etc/systemd/network"
cat >"$ROOTFS/etc/systemd/network/50-e2e.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
EOF
chroot "$ROOTFS" systemctl enable --quiet systemd-networkd.service 2>/dev/null
# Nothing reaches Debian from inside: apt's daily timers would only fail.
ln -sf /dev/null "$ROOTFS/etc/systemd/system/apt-daily.timer"
ln -sf /dev/null "$ROOTFS/etc/systemd/system/apt-daily-upgrade.timer"
# The journal goes to the serial console too: gitops' own lines, run.sh's output, the reports.
mkdir -p "$ROOTFS/etc/systemd/journald.conf.d"
printf '[Journal]\nForwardToConsole=yes\nMaxLevelConsole=info\n' \
    >"$ROOTFS/etc/systemd/journald.conf.d/e2e-console.conf"

# gitops, the way an image build installs it.
install -m 0755 "$E2E_BIN" "$ROOTFS/usr/bin/gitops"
"$E2E_BIN" install-units --root "$ROOTFS" --repo-url "$GUEST_URL" >"$E2E_TMP/install-units.log" 2>&1 ||
    { cat "$E2E_TMP/install-units.log" >&2; fail "gitops install-units --root $ROOTFS failed"; }
for f in etc/systemd/system/gitops.service etc/systemd/system/gitops.timer etc/gitops/gitops.env; do
    [ -f "$ROOTFS/$f" ] || fail "install-units did not write /$f"
done
[ "$(readlink "$ROOTFS/etc/systemd/system/timers.target.wants/gitops.timer")" = /etc/systemd/system/gitops.timer ] ||
    fail "install-units did not enable gitops.timer (timers.target.wants/gitops.timer)"
[ "$(stat -c %a "$ROOTFS/etc/gitops/gitops.env")" = 600 ] ||
    fail "/etc/gitops/gitops.env is mode $(stat -c %a "$ROOTFS/etc/gitops/gitops.env"), not 0600"
grep -q "^GITOPS_REPO_URL=$GUEST_URL\$" "$ROOTFS/etc/gitops/gitops.env" ||
    fail "/etc/gitops/gitops.env does not set GITOPS_REPO_URL=$GUEST_URL"
# The reboot's guards, as an operator of this machine would set them: the timer's passes come
# right after the boot, under the 15 min --reboot-min-uptime, and restrict=on leaves the guest
# no NTP server to synchronise with (its clock comes from QEMU's RTC, the host's time).
printf '%s\n' GITOPS_REBOOT_MIN_UPTIME=0 GITOPS_REBOOT_REQUIRE_CLOCK_SYNC=false \
    >>"$ROOTFS/etc/gitops/gitops.env"

# The test's drop-ins: a pass 10 s after boot, then 15 s after each pass (not 5 min + 0-60 s).
# An empty OnBootSec= first resets the timer list, or the 5min triggers would stay as well.
mkdir -p "$ROOTFS/etc/systemd/system/gitops.timer.d" "$ROOTFS/etc/systemd/system/gitops.service.d"
cat >"$ROOTFS/etc/systemd/system/gitops.timer.d/e2e.conf" <<'EOF'
[Timer]
OnBootSec=
OnBootSec=10s
OnUnitInactiveSec=15s
RandomizedDelaySec=0
EOF
# After every pass, successful or not, report to the console (one template instance each, so
# systemd has a single trigger to name).
cat >"$ROOTFS/etc/systemd/system/gitops.service.d/e2e.conf" <<'EOF'
[Unit]
OnSuccess=e2e-report@success.service
OnFailure=e2e-report@failure.service
EOF
cat >"$ROOTFS/etc/systemd/system/e2e-report@.service" <<'EOF'
[Unit]
Description=e2e: report /etc/motd and gitops status after a gitops pass (%i)

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/e2e-report %i
EOF
mkdir -p "$ROOTFS/usr/local/sbin"
cat >"$ROOTFS/usr/local/sbin/e2e-report" <<'EOF'
#!/bin/sh
# One line per fact, each with a prefix the host greps the serial log for.
echo "E2E-TIMER: pass $1; gitops.timer last triggered $(systemctl show -P LastTriggerUSec gitops.timer)"
echo "E2E-BOOT: boot $(cat /proc/sys/kernel/random/boot_id) btime $(awk '$1 == "btime" { print $2 }' /proc/stat) now $(date -u +%s)"
if [ -f /etc/motd ]; then sed 's/^/E2E-MOTD: /' /etc/motd | head -n 3; else echo "E2E-MOTD: (none)"; fi
gitops status 2>&1 | sed 's/^/E2E-STATUS: /'
# The plan as a script would ask for it (on one line: the JSON is indented).
echo "E2E-PLAN: $(gitops reboot-plan --dry-run --json 2>&1 | tr -s ' \n' ' ')"
EOF
chmod 0755 "$ROOTFS/usr/local/sbin/e2e-report"
# Every boot says so once multi-user is reached, with its boot id: the boots counted a second
# way, beside the kernel's banner.
cat >"$ROOTFS/etc/systemd/system/e2e-booted.service" <<'EOF'
[Unit]
Description=e2e: say which boot this is
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "E2E-BOOTED: boot $(cat /proc/sys/kernel/random/boot_id)"'

[Install]
WantedBy=multi-user.target
EOF
chroot "$ROOTFS" systemctl enable --quiet e2e-booted.service 2>/dev/null
E2E_TIME_GUEST=$(e2e_since "$t")

# --- 3. the config repository, commit v1 ------------------------------------------------------
e2e_config_repo "$SRV"
e2e_commit_run_sh v1
V1=$E2E_COMMIT
e2e_log "config repo: $SRV/config.git, v1 = $V1"

# --- 4. the disk image --------------------------------------------------------------------------
t=$EPOCHREALTIME
KERNEL=$(find "$ROOTFS/boot" -name 'vmlinuz-*' | sort -V | tail -n 1)
INITRD=$(find "$ROOTFS/boot" -name 'initrd.img-*' | sort -V | tail -n 1)
if [ -z "$KERNEL" ] || [ -z "$INITRD" ]; then
    fail "no kernel or initrd under $ROOTFS/boot"
fi
cp "$KERNEL" "$E2E_TMP/vmlinuz"
cp "$INITRD" "$E2E_TMP/initrd.img"
mkfs.ext4 -q -F -L gitops-e2e -d "$ROOTFS" "$IMAGE" 2G >"$E2E_TMP/mkfs.log" 2>&1 ||
    { cat "$E2E_TMP/mkfs.log" >&2; fail "mkfs.ext4 -d $ROOTFS failed"; }
rm -rf "$ROOTFS"
E2E_TIME_IMAGE=$(e2e_since "$t")
e2e_log "image: $IMAGE in $E2E_TIME_IMAGE s"

# --- 5. boot ----------------------------------------------------------------------------------
t=$EPOCHREALTIME
ACCEL=$(pick_accel "$E2E_TMP/vmlinuz")
E2E_TIME_PROBE=$(e2e_since "$t")
CPU=()
[ "$ACCEL" = kvm ] && CPU=(-cpu host)
e2e_log "accelerator: $ACCEL (probe took $E2E_TIME_PROBE s)"
GIT=$(command -v git)
# QEMU runs the command for each connection the guest opens to 10.0.2.100:9418 (a -tcp: forward
# would connect once at start, and the guest's second fetch would hang).
GUESTFWD="guestfwd=tcp:10.0.2.100:9418-cmd:$GIT daemon --inetd --export-all --base-path=$SRV $SRV"
t_boot=$EPOCHREALTIME
qemu-system-x86_64 -accel "$ACCEL" "${CPU[@]}" -m 1024 -smp 2 \
    -nographic -monitor none -serial "file:$SERIAL" \
    -kernel "$E2E_TMP/vmlinuz" -initrd "$E2E_TMP/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0" \
    -drive "file=$IMAGE,format=raw,if=virtio,snapshot=on" \
    -netdev "user,id=n0,restrict=on,$GUESTFWD" \
    -device virtio-net-pci,netdev=n0 \
    </dev/null >"$E2E_TMP/qemu.log" 2>&1 &
QEMU_PID=$!
e2e_log "QEMU started (pid $QEMU_PID), serial log $SERIAL"

wait_for "Multi-User System" "$BOOT_TIMEOUT" "multi-user.target (boot)"
E2E_TIME_BOOT=$(e2e_since "$t_boot")
e2e_log "guest reached multi-user.target after $E2E_TIME_BOOT s"

# --- 6. v1: the first timer pass applies it ---------------------------------------------------
wait_for "E2E-MOTD: gitops e2e v1 $V1" "$PASS_TIMEOUT" "motd v1 ($V1)"
wait_for "E2E-STATUS: applied:      ${V1:0:12} " 60 "gitops status reporting v1 applied"
E2E_TIME_V1=$(e2e_since "$t_boot")
e2e_log "v1 applied by the timer, $E2E_TIME_V1 s after QEMU started"

# --- 7. v2: change run.sh, push, wait for the motd to change ----------------------------------
t=$EPOCHREALTIME
e2e_commit_run_sh v2
V2=$E2E_COMMIT
e2e_log "pushed v2 = $V2"
wait_for "E2E-MOTD: gitops e2e v2 $V2" "$PASS_TIMEOUT" "motd v2 ($V2)"
wait_for "E2E-STATUS: applied:      ${V2:0:12} " 60 "gitops status reporting v2 applied"
E2E_TIME_V2=$(e2e_since "$t")
e2e_log "v2 applied by the timer, $E2E_TIME_V2 s after the push"

# The next pass finds nothing new, runs nothing and says so; no pass failed.
t=$EPOCHREALTIME
wait_for "E2E-STATUS: last pass:    up-to-date" 120 "an up-to-date pass after v2" "$(log_mark)"
E2E_TIME_NOOP=$(e2e_since "$t")
if grep -a -q "E2E-STATUS: failures:" "$SERIAL"; then
    fail "gitops status reported failed passes"
fi
[ "$(count_lines "run.sh: wrote /etc/motd")" -le 2 ] ||
    fail "run.sh ran more than twice for two commits"
[ "$(count_lines "$BOOT_LINE")" -eq 1 ] ||
    fail "the guest booted $(count_lines "$BOOT_LINE") times before any reboot was requested"

# --- 8. v3: a reboot requested in the repository, carried out once ----------------------------
# T is taken from the guest's own clock: its boot time (/proc/stat's btime, which gitops reads)
# plus 5 s. The guest has been up for more than that, so T is already past for it, and the
# host's clock does not matter (QEMU's RTC gave the guest the host's time at boot, to the
# second; without NTP nothing corrects either clock since).
boot_report=$(grep -a -o "E2E-BOOT: boot [0-9a-f-]* btime [0-9]* now [0-9]*" "$SERIAL" | tail -n 1)
read -r _ _ BOOT1 _ BTIME1 _ GUEST_NOW <<<"$boot_report"
[ -n "${GUEST_NOW:-}" ] || fail "the guest reported no boot time (no E2E-BOOT line)"
host_start=${t_boot%.*}
e2e_log "guest boot ${BOOT1:0:8}: btime $(date -u -d "@$BTIME1" +%H:%M:%S), $((BTIME1 - host_start)) s after the host started QEMU (the guest's clock is the host's, to the second)"
AFTER_EPOCH=$((BTIME1 + 5))
[ "$GUEST_NOW" -gt "$AFTER_EPOCH" ] ||
    fail "the guest's clock says $GUEST_NOW, not after its boot time + 5 s ($AFTER_EPOCH)"
AFTER=$(date -u -d "@$AFTER_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
mkdir -p "$E2E_WORK/.gitops"
printf '# e2e: this machine must have booted at or after T (its first boot + 5 s)\nafter = %s\n' \
    "$AFTER" >"$E2E_WORK/.gitops/reboot"
e2e_git -C "$E2E_WORK" add .gitops/reboot
mark=$(log_mark)
t=$EPOCHREALTIME
e2e_commit_run_sh v3
V3=$E2E_COMMIT
e2e_log "pushed v3 = $V3 with .gitops/reboot: after = $AFTER"
wait_for "$BOOT_LINE" "$PASS_TIMEOUT" "reboot after v3 (a second kernel banner)" "$mark"
E2E_TIME_REBOOT=$(e2e_since "$t")
# From the second boot's banner on.
mark=$(grep -a -n -F -- "$BOOT_LINE" "$SERIAL" | sed -n 2p | cut -d: -f1)
e2e_log "the guest rebooted $E2E_TIME_REBOOT s after the push (serial log line $mark)"
t=$EPOCHREALTIME
wait_for "Multi-User System" "$BOOT_TIMEOUT" "multi-user.target after the reboot" "$mark"
E2E_TIME_REBOOT_BOOT=$(e2e_since "$t")
e2e_log "multi-user.target again after $E2E_TIME_REBOOT_BOOT s"
t=$EPOCHREALTIME
SATISFIED="E2E-STATUS: reboot:       satisfied: "
wait_count "$SATISFIED" 2 "$PASS_TIMEOUT" "two passes after the reboot finding the request satisfied" "$mark"
# Each report prints reboot-plan's JSON after the status lines: wait for the second one too.
wait_count '"decision": "satisfied"' 2 60 "gitops reboot-plan --dry-run --json saying \"satisfied\" twice after the reboot" "$mark"
E2E_TIME_SATISFIED=$(e2e_since "$t")
e2e_log "two passes found the request satisfied, $E2E_TIME_SATISFIED s after multi-user.target"

# Exactly one reboot: two kernel banners and two boot ids in the whole log, none after the
# passes that found the request satisfied.
boots=$(count_lines "$BOOT_LINE")
[ "$boots" -eq 2 ] || fail "the guest booted $boots times, not twice (one reboot)"
boot_ids=$(grep -a -o "E2E-BOOTED: boot [0-9a-f-]*" "$SERIAL" | sort -u | wc -l)
[ "$boot_ids" -eq 2 ] || fail "the guest reported $boot_ids boot ids at multi-user.target, not 2"
BOOT2=$(tail -n "+$mark" "$SERIAL" | grep -a -o "E2E-BOOT: boot [0-9a-f-]*" | tail -n 1 | cut -d' ' -f3)
if [ -z "$BOOT2" ] || [ "$BOOT2" = "$BOOT1" ]; then
    fail "the passes after the reboot report boot \"$BOOT2\", not a new one (before: $BOOT1)"
fi
# The satisfied passes are this boot's, and nothing after the reboot asked for another.
this_boot=$(tail -n "+$mark" "$SERIAL" | grep -a -F -- "$SATISFIED" | grep -a -c -F "(boot ${BOOT2:0:8})" || true)
[ "$this_boot" -ge 2 ] || fail "the satisfied passes do not name the new boot ${BOOT2:0:8}"
for plan in reboot-now blocked scheduled invalid; do
    [ "$(count_lines "E2E-STATUS: reboot:       $plan" "$mark")" -eq 0 ] ||
        fail "gitops status said \"$plan\" after the reboot"
done
[ "$(count_lines "E2E-STATUS: applied:      ${V3:0:12} " "$mark")" -ge 1 ] ||
    fail "gitops status does not report v3 ($V3) applied after the reboot"
[ "$(count_lines "E2E-MOTD: gitops e2e v3 $V3" "$mark")" -ge 1 ] ||
    fail "/etc/motd is not v3's ($V3) after the reboot"
# gitops said it was rebooting at most once (the line may be cut off by the shutdown), and
# run.sh ran once per commit.
asked=$(grep -a -F -- "must have booted at or after $AFTER: rebooting" "$SERIAL" | grep -a -c -v "E2E-" || true)
[ "$asked" -le 1 ] || fail "gitops asked for the reboot $asked times"
[ "$(count_lines "run.sh: wrote /etc/motd")" -le 3 ] ||
    fail "run.sh ran more than three times for three commits"
if grep -a -q "E2E-STATUS: failures:" "$SERIAL"; then
    fail "gitops status reported failed passes"
fi

echo "---- serial log: the boots ----"
grep -a -n -o -E "Linux version [^ ]+|E2E-BOOTED: .*|gitops: .*: rebooting" "$SERIAL" | e2e_plain
echo "---- serial log: the passes after the reboot ----"
tail -n "+$mark" "$SERIAL" | grep -a -E "E2E-TIMER|E2E-(MOTD|STATUS): (gitops e2e|applied|last pass|reboot)|gitops\[[0-9]+\]" |
    e2e_plain | tail -n 20
echo "---- durations (s) ----"
printf '%-38s %8s\n' \
    "binary" "$E2E_TIME_BINARY" \
    "rootfs${E2E_ROOTFS_REUSED:+ (cached)}" "$E2E_TIME_ROOTFS" \
    "guest files + install-units" "$E2E_TIME_GUEST" \
    "image (mkfs.ext4 -d)" "$E2E_TIME_IMAGE" \
    "kvm probe ($ACCEL)" "$E2E_TIME_PROBE" \
    "boot to multi-user" "$E2E_TIME_BOOT" \
    "boot to v1 applied" "$E2E_TIME_V1" \
    "push v2 to v2 applied" "$E2E_TIME_V2" \
    "then an up-to-date pass" "$E2E_TIME_NOOP" \
    "push v3 (reboot request) to the reboot" "$E2E_TIME_REBOOT" \
    "reboot to multi-user" "$E2E_TIME_REBOOT_BOOT" \
    "then two passes, satisfied" "$E2E_TIME_SATISFIED" \
    "total" "$(e2e_since "$E2E_T0")"
echo "e2e: vm.sh passed: the timer applied v1 ($V1) and v2 ($V2); v3 ($V3) requested a reboot after $AFTER: the guest rebooted once ($boots boots, ${BOOT1:0:8} then ${BOOT2:0:8}) and two passes found it satisfied"
