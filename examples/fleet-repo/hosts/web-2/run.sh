#!/bin/sh
# web-2 is a web server like the others, plus one file of its own: the group's entry point,
# then its own file.
. common/lib.sh
. groups/web/web.sh
install_file hosts/web-2/extra.conf /etc/nginx/conf.d/extra.conf
