#!/bin/sh
. common/lib.sh
install_motd "database"
install_file hosts/db-1/postgresql.conf /etc/postgresql/conf.d/gitops.conf
