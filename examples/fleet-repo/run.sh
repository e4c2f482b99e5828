#!/bin/sh
# Every machine with no entry point of its own or of its groups.
. common/lib.sh
install_motd "default"
