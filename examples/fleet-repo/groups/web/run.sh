#!/bin/sh
# Every machine in the group web (--group web) without a hosts/<host>/run.sh of its own.
. common/lib.sh
. groups/web/web.sh
