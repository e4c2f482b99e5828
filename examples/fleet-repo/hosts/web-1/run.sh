#!/bin/sh
# web-1's own entry point: it runs this, and nothing of groups/web/ unless it says so.
. common/lib.sh
install_motd "web"
install_file hosts/web-1/site.conf /etc/nginx/conf.d/site.conf
