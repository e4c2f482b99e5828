# gitops %preun: on erase ($1 = 0, not on upgrade) stop and disable the timer, and the trigger
# if someone enabled it (install-units --trigger links the packaged units): no port stays open
# and no enable link is left pointing at a unit that no longer exists.
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null 2>&1; then
	if [ -d /run/systemd/system ]; then
		systemctl stop gitops-trigger.socket gitops-trigger.path gitops-trigger.service \
			gitops.timer gitops.service >/dev/null 2>&1 || :
	fi
	systemctl disable gitops.timer gitops-trigger.socket gitops-trigger.path >/dev/null 2>&1 || :
fi
