#!/usr/bin/env bash
# Install what the tests need on Debian or Ubuntu, and nothing else: the README's test command
# and .ci/run both call it. Works as root (apt-get directly) and as a user with sudo.
#
#   tests/deps.sh          what `cargo test` needs: git, sshd and ssh, socat and openssl (the
#                          https test), systemd-analyze and man (unit checks)
#   tests/deps.sh --ci     also what .ci/run's packaging checks need (rpm, cloud-init, packer)
#
# Only missing commands are installed; a machine that has them all runs no apt-get at all.
set -euo pipefail

ci=false
case "${1:-}" in
--ci) ci=true ;;
"") ;;
*)
    echo "usage: tests/deps.sh [--ci]" >&2
    exit 2
    ;;
esac

missing=()
need() { # need COMMAND-OR-PATH PACKAGE
    if [[ $1 == /* ]]; then
        [ -e "$1" ] || missing+=("$2")
    else
        command -v "$1" >/dev/null 2>&1 || missing+=("$2")
    fi
}

# The integration tests drive the real git CLI, git daemon and git http-backend, an OpenSSH
# server, socat as the TLS front of the https test, openssl for its throwaway CA, and
# systemd-analyze to verify the units (PID 1 need not be systemd).
need git git
need /usr/sbin/sshd openssh-server
need ssh openssh-client
need ssh-keygen openssh-client
need socat socat
need openssl openssl
need systemd-analyze systemd
# systemd-analyze verify looks the units' Documentation=man: pages up with man.
need man man-db
# The soak's entry point (tests/soak.rs) tells two runs at once apart with flock(1).
need flock util-linux
# Reboot windows in named time zones (Europe/Berlin's DST changes) read the tz database.
need /usr/share/zoneinfo/Europe/Berlin tzdata
if $ci; then
    # packaging/check.sh: rpm lists the .rpm, cloud-init validates the user data, packer
    # validates the template.
    need rpm rpm
    need cloud-init cloud-init
    need packer packer
fi

# One package can cover several commands.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u | sed '/^$/d')
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "tests/deps.sh: missing ${missing[*]}, and this is not a Debian-like system: install them with your package manager" >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "tests/deps.sh: missing ${missing[*]}: run this as root, or install sudo" >&2
    exit 1
fi
echo "==> apt-get install ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
