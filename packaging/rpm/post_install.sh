# gitops %post: enable the timer (and start it on a running systemd). The service skips its
# passes (ConditionPathExists) until /etc/gitops/gitops.env exists.
# Enable only on the first install ($1 = 1): an upgrade ($1 = 2) must not re-enable a timer
# the administrator disabled, nor start a pass inside dnf.
mkdir -p /etc/gitops
chmod 0700 /etc/gitops
if command -v systemctl >/dev/null 2>&1; then
	if [ "$1" -eq 1 ]; then
		systemctl enable gitops.timer >/dev/null 2>&1 || :
	fi
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload >/dev/null 2>&1 || :
		if [ "$1" -eq 1 ]; then
			systemctl start gitops.timer >/dev/null 2>&1 || :
		fi
	fi
fi
