#!/bin/sh
# Disk loss inside a node. n4's data disk lives on its own ext4 file system
# (a loop device; its metadata database stays in its data dir, as on a
# node whose boot disk holds it); during writes through n1 that file system
# is shut down as a dying disk would be (every I/O fails with EIO). n4's
# store stops, the node leaves the cluster at once (it revokes its lease), writes go on
# without it (none fails, none waits past the node-loss bound). The
# administrator, who knows the disk is dead, marks n4 out at once (`vdisk
# cluster out`, from n2: --out-after is 10 minutes) and its groups are
# rebuilt on the other three: every extent on three nodes, identical, and
# everything written reads back. Then n4 is removed from the map. Asks
# that make no sense (an up node, a down node removed, an unknown node)
# are refused with a reason and change nothing.
. "$(dirname "$0")/lib.sh"

LAYER=0x7e57000021
hosts 4
own_fs 4
cluster_up 4 10m
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
# refused, each with its reason, the map unchanged
refused() { # REASON-PATTERN VDISK-ARGS...: exit 1, one line matching the pattern
	pat=$1
	shift
	if vdn 2 "$@" >"$WORK/ask.out" 2>&1; then fail "vdisk $* was not refused"; fi
	grep -q "$pat" "$WORK/ask.out" || fail "vdisk $*: $(cat "$WORK/ask.out")"
	[ "$(wc -l <"$WORK/ask.out")" = 1 ] || fail "vdisk $*: more than one line"
}
down4() { [ "$(state_in 2 n4)" = down ]; }
wait_for 10 "n4 down" down4
epoch=$(status_of 2 | sed -n 's/.*"epoch":\([0-9]*\),"leader".*/\1/p')
refused "is down, not out: run .vdisk cluster out n4. first" cluster remove n4
refused "is up: only a node that is down" cluster out n1
refused "no node n9 in the cluster map" cluster out n9
[ "$(status_of 2 | sed -n 's/.*"epoch":\([0-9]*\),"leader".*/\1/p')" = "$epoch" ] ||
	fail "a refused ask changed the map"
vdn 2 cluster out n4 >"$WORK/ask.out" 2>&1 || fail "vdisk cluster out n4: $(cat "$WORK/ask.out")"
grep -q "^node n4 is out (map epoch [0-9]*)" "$WORK/ask.out" || fail "cluster out said: $(cat "$WORK/ask.out")"
[ "$(state_in 2 n4)" = out ] || fail "n4 is not out in n2's map once vdisk cluster out answered"
grep -q "asking the map leader to out node n4" "$WORK/n2.log" || fail "n2 did not log the ask"
grep -q "map epoch [0-9]* written: .*n4 down -> out" "$WORK"/n[123].log ||
	fail "the leader did not log n4 going out"
echo "ok: vdisk cluster out n4 (--out-after is 10m): out at once; refused: remove of a down node, out of an up node, an unknown node"
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
# n4 forgotten: remove it; the map lists three nodes, still clean
vdn 2 cluster remove n4 --json >"$WORK/ask.out" 2>&1 || fail "vdisk cluster remove n4: $(cat "$WORK/ask.out")"
tr -d ' \n' <"$WORK/ask.out" | grep -q '"node":"n4","state":"removed"' ||
	fail "cluster remove said: $(cat "$WORK/ask.out")"
gone4() { ! status_of 1 | grep -q '"name":"n4"'; }
wait_for 5 "n4 gone from n1's map" gone4
status_of 1 | grep -q '"clean":64' || fail "not every group clean once n4 was removed"
refused "no node n4 in the cluster map" cluster remove n4
"$BUILD/kura-repcheck" load "$WORK/n1/store.sock" $LAYER 8 2 "$WORK/load2" ||
	fail "writes after n4 was removed did not read back"
on 1 "$BUILD/kura-repcheck" replicas "$id" $LAYER 8 3 10.99.0.1:7400 10.99.0.2:7400 \
	10.99.0.3:7400 || fail "after n4 was removed, the copies on n1-n3 differ"
echo "ok: vdisk cluster remove n4: gone from the map, 64 groups clean, writes go on, copies identical"
echo "PASS"
