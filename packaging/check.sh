#!/usr/bin/env bash
# Check that the packaging files build what they claim: the .deb and .rpm carry the binary,
# the units and the maintainer scripts; the cloud-init user data is valid; the Packer template
# validates. Run by .ci/run; packaging/build.sh installs cargo-deb and cargo-generate-rpm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fail() { echo "packaging: $*" >&2; exit 1; }

mapfile -t built < <(packaging/build.sh)
deb=${built[-2]}
rpm=${built[-1]}
echo "built $deb and $rpm"

# --- .deb: contents and maintainer scripts -----------------------------------------------------
listing=$(dpkg-deb -c "$deb")
echo "$listing"
for want in \
    '-rwxr-xr-x .* ./usr/bin/gitops$' \
    '-rw-r--r-- .* ./lib/systemd/system/gitops.service$' \
    '-rw-r--r-- .* ./lib/systemd/system/gitops.timer$' \
    '-rw-r--r-- .* ./lib/systemd/system/gitops-trigger.socket$' \
    '-rw-r--r-- .* ./lib/systemd/system/gitops-trigger.service$' \
    '-rw-r--r-- .* ./lib/systemd/system/gitops-trigger.path$' \
    '-rw-r--r-- .* ./usr/share/man/man1/gitops-trigger.1.gz$' \
    '-rw-r--r-- .* ./usr/share/doc/gitops/README.md$' \
    '-rw-r--r-- .* ./usr/share/man/man1/gitops.1.gz$' \
    '-rw-r--r-- .* ./usr/share/man/man1/gitops-sync.1.gz$' \
    '-rw-r--r-- .* ./usr/share/bash-completion/completions/gitops$' \
    '-rw-r--r-- .* ./usr/share/zsh/vendor-completions/_gitops$' \
    '-rw-r--r-- .* ./usr/share/fish/vendor_completions.d/gitops.fish$'; do
    grep -Eq -- "$want" <<<"$listing" || fail "the .deb lacks $want"
done
control=$(mktemp -d)
trap 'rm -rf "$control"' EXIT
dpkg-deb -e "$deb" "$control"
for script in postinst prerm postrm; do
    [ -x "$control/$script" ] || fail "the .deb has no executable $script"
    sh -n "$control/$script" || fail "the .deb's $script is not valid sh"
done
grep -q 'systemctl enable gitops.timer' "$control/postinst" || fail "postinst does not enable the timer"
# The trigger opens a port: opt-in (install-units --trigger), never enabled by the package.
! grep -q 'gitops-trigger' "$control/postinst" || fail "postinst touches the trigger, which is opt-in"
grep -q 'disable .*gitops-trigger.socket' "$control/prerm" || fail "prerm leaves the trigger enabled"
for unit in gitops.service gitops-trigger.socket gitops-trigger.service gitops-trigger.path; do
    cmp -s "units/$unit" <(dpkg-deb --fsys-tarfile "$deb" | tar -xO "./lib/systemd/system/$unit") ||
        fail "the .deb's $unit differs from units/$unit"
done

# --- .rpm ------------------------------------------------------------------------------------
if command -v rpm >/dev/null 2>&1; then
    files=$(rpm -qlp "$rpm" 2>/dev/null)
    echo "$files"
    for want in /usr/bin/gitops /usr/lib/systemd/system/gitops.service /usr/lib/systemd/system/gitops.timer \
        /usr/lib/systemd/system/gitops-trigger.socket /usr/lib/systemd/system/gitops-trigger.service \
        /usr/lib/systemd/system/gitops-trigger.path /usr/share/man/man1/gitops-trigger.1.gz \
        /usr/share/man/man1/gitops.1.gz /usr/share/bash-completion/completions/gitops; do
        grep -qx "$want" <<<"$files" || fail "the .rpm lacks $want"
    done
    scripts=$(rpm -qp --scripts "$rpm" 2>/dev/null)
    grep -q 'systemctl enable gitops.timer' <<<"$scripts" || fail "the .rpm's %post does not enable the timer"
    ! grep -q 'enable .*gitops-trigger' <<<"$scripts" || fail "the .rpm enables the trigger, which is opt-in"
    grep -q 'disable .*gitops-trigger.socket' <<<"$scripts" || fail "the .rpm's %preun leaves the trigger enabled"
else
    echo "packaging: rpm not installed, .rpm contents not listed"
fi

# --- cloud-init ----------------------------------------------------------------------------------
if command -v cloud-init >/dev/null 2>&1; then
    cloud-init schema --config-file packaging/cloud-init/user-data.yaml
else
    echo "packaging: cloud-init not installed, user-data not validated"
fi

# --- Packer ----------------------------------------------------------------------------------------
if command -v packer >/dev/null 2>&1; then
    # `packer validate` fetches the template's default checksum file. Without a route to it,
    # validate everything else and say what was not checked.
    sums=$(sed -n 's/^ *default = "file:\(.*\)"$/\1/p' packaging/packer/gitops.pkr.hcl)
    offline=()
    if [ -n "$sums" ] && ! curl -fsSI --max-time 15 -o /dev/null "$sums" 2>/dev/null; then
        echo "packaging: $sums is unreachable: Packer template validated with iso_checksum=none"
        offline=(-var iso_checksum=none)
    fi
    version=$(packer version | head -n 1)
    case $version in
    "Packer v1.6"*)
        # Debian ships Packer 1.6, which predates `required_plugins` (the qemu builder was
        # built in): validate the template without that block.
        old=$(mktemp -d)
        cp -r packaging/packer/. "$old/"
        sed -i '/^packer {/,/^}/d' "$old/gitops.pkr.hcl"
        packer validate -var repo_url=git@git.example.com:org/cfg.git "${offline[@]}" "$old"
        rm -rf "$old"
        ;;
    *) packer validate -var repo_url=git@git.example.com:org/cfg.git "${offline[@]}" packaging/packer ;;
    esac
else
    echo "packaging: packer not installed, template not validated"
fi
# --- kickstart ------------------------------------------------------------------------------------
if command -v ksvalidator >/dev/null 2>&1; then
    ksvalidator -v RHEL9 packaging/packer/http/ks.cfg
else
    echo "packaging: ksvalidator (pykickstart) not installed, kickstart not validated"
fi
echo "packaging: ok"
