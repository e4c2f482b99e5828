# gitops %preun: on erase ($1 = 0, not on upgrade) stop and disable the timer.
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null 2>&1; then
	if [ -d /run/systemd/system ]; then
		systemctl stop gitops.timer gitops.service >/dev/null 2>&1 || :
	fi
	systemctl disable gitops.timer >/dev/null 2>&1 || :
fi
