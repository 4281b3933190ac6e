# The control socket from outside: garbage, wrong types, duplicate keys,
# over-long and cut-off requests, clients that leave mid-request.
. "$(dirname "$0")/lib.sh"
"$BUILD/blockd" --data "$WORK/s" --disk "$WORK/d.img,size=128M" --journal-size 16M \
	2>"$WORK/blockd.log" &
BPID=$!
PIDS="$PIDS $BPID"
wait_socket "$WORK/s/blockd.sock"
"$BUILD/kura-ctlcheck" "$WORK/s/blockd.sock" || { cat "$WORK/blockd.log"; fail "control check"; }
kill -TERM $BPID
wait $BPID || fail "blockd did not stop cleanly"
grep -q "request cut off" "$WORK/blockd.log" || fail "cut-off request not logged"
