#!/bin/sh
# Disk loss inside a node. n4's data disk lives on its own ext4 file system
# (a loop device; its metadata database stays in its data dir, as on a
# node whose boot disk holds it); during writes through n1 that file system
# is shut down as a dying disk would be (every I/O fails with EIO). n4's
# store stops, the node leaves the cluster at once (it revokes its lease), writes go on
# without it (none fails, none waits past the node-loss bound), it is out
# after --out-after and its groups are rebuilt on the other three: every
# extent on three nodes, identical, and everything written reads back.
. "$(dirname "$0")/lib.sh"

LAYER=0x7e57000021
hosts 4
own_fs 4
cluster_up 4 6s
"$BUILD/kura-repcheck" load "$WORK/n1/store.sock" $LAYER 8 3 "$WORK/load1" ||
	fail "writes through n1 did not read back"
on 1 "$BUILD/kura-repcheck" replicas "$id" $LAYER 8 3 10.99.0.1:7400 10.99.0.2:7400 \
	10.99.0.3:7400 10.99.0.4:7400 || fail "replicas differ before the disk loss"

load_while diskloss $LAYER 14 disk_fails 4
echo "ok: n4's disk failed during writes through n1: no write failed, the longest waited ${max} ms"
if ! grep -q "store stopped" "$WORK/n4.log"; then
	kill -0 "$NODE4" 2>/dev/null && echo "n4 still runs; its log ends:" || echo "n4 is gone; its log ends:"
	tail -n 15 "$WORK/n4.log"
	fail "n4's store did not stop on its disk's errors"
fi
grep -q "node n4 left the cluster" "$WORK/n4.log" || fail "n4 did not leave the cluster"
is_out() { [ "$(state_in 1 n4)" = out ]; }
wait_for 20 "n4 out after --out-after 6s" is_out
rebuilt() {
	for i in 1 2 3; do [ "$(state_in 1 "n$i")" = up ] || return 1; done
	status_of 1 | grep -q '"clean":64'
}
wait_for 30 "the groups n4 held rebuilt on the others" rebuilt
copied=0
for i in 1 2 3; do copied=$((copied + $(served_fig $i extents_copied))); done
[ "$copied" -ge 1 ] || fail "no extent was copied to rebuild n4's groups"
on 1 "$BUILD/kura-repcheck" replicas "$id" $LAYER 8 3 10.99.0.1:7400 10.99.0.2:7400 \
	10.99.0.3:7400 || fail "after the rebuild, the copies on n1-n3 differ"
echo "ok: n4 out; its groups rebuilt on n1-n3 ($copied extents copied), every extent on 3 nodes, identical"
