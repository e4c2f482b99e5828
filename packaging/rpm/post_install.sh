# gitops %post: enable the timer (and start it on a running systemd). The service skips its
# passes (ConditionPathExists) until /etc/gitops/gitops.env exists.
mkdir -p /etc/gitops
chmod 0700 /etc/gitops
if command -v systemctl >/dev/null 2>&1; then
	systemctl enable gitops.timer >/dev/null 2>&1 || :
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload >/dev/null 2>&1 || :
		systemctl start gitops.timer >/dev/null 2>&1 || :
	fi
fi
