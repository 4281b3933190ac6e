#!/bin/sh
# Replicated writes on three hosts, RF 3: a client writes through n1's store
# socket (the cluster's block API on that node); every extent lands on all
# three nodes with the same version and data (compared over node links).
# Then n3 is killed with -9 while the client writes: writes stall while the
# map catches up and go on (no error, under 5 s), and every acknowledged
# write reads back; n1 and n2 hold identical copies of everything.
. "$(dirname "$0")/lib.sh"

LAYER=0x7e57000001 # far above the ids vdisks use
hosts 3
for i in 1 2 3; do etcd_start $i; done
etcd_up
for i in 1 2 3; do node_start $i; done
id=$(vdn 1 cluster init --replicas 3 --pgs 64 --out-after 10m | sed -n 's/^created cluster //p')
[ ${#id} = 36 ] || fail "cluster init gave no id"
all_up() {
	for i in 1 2 3; do status_of "$i" | grep -q '"clean":64' || return 1; done
}
wait_for 15 "three nodes up" all_up

"$BUILD/kura-repcheck" load "$WORK/n1/store.sock" $LAYER 8 4 "$WORK/load1" ||
	fail "writes through n1 did not read back"
echo "ok: RF 3 through n1: $(cat "$WORK/load1")"
on 1 "$BUILD/kura-repcheck" replicas "$id" $LAYER 8 3 10.99.0.1:7400 10.99.0.2:7400 10.99.0.3:7400 ||
	fail "replicas differ"

"$BUILD/kura-repcheck" load "$WORK/n1/store.sock" $LAYER 8 12 "$WORK/load2" >"$WORK/load2.out" 2>&1 &
LP=$!
sleep 3
node_kill 3
wait $LP || fail "writes while n3 was killed: $(cat "$WORK/load2.out")"
cat "$WORK/load2.out"
max=$(sed -n 's/.*max_ms \([0-9]*\).*/\1/p' "$WORK/load2")
[ -n "$max" ] && [ "$max" -lt 5000 ] || fail "a write waited ${max} ms (over 5 s) after n3 was killed"
echo "ok: n3 killed -9 during writes: no write failed, the longest waited ${max} ms"
on 1 "$BUILD/kura-repcheck" replicas "$id" $LAYER 8 2 10.99.0.1:7400 10.99.0.2:7400 ||
	fail "n1 and n2 differ after n3 was lost"
echo "PASS"
