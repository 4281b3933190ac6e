# The store protocol from outside: round trips, field and framing errors,
# truncated and garbage input, a client that never reads.
. "$(dirname "$0")/lib.sh"
"$BUILD/blockd" --data "$WORK/s" --disk "$WORK/d.img,size=128M" --journal-size 16M \
	2>"$WORK/blockd.log" &
BPID=$!
PIDS="$PIDS $BPID"
wait_socket "$WORK/s/store.sock"
"$BUILD/kura-protocheck" "$WORK/s" || { cat "$WORK/blockd.log"; fail "protocol check"; }
kill -TERM $BPID
wait $BPID || fail "blockd did not stop cleanly"
grep -q "connection .* closed: bad magic" "$WORK/blockd.log" || fail "framing error not logged"
echo "protocol checks passed"
