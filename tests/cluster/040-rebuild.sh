#!/bin/sh
# Rebuild and whole-cluster restart, RF 3 on four hosts (etcd on three).
# A client writes through n1; n4 is killed with -9 during the writes: it
# goes down, then out after --out-after, and the nodes that take its place
# in each group's set recover those groups from the survivors (rebuild)
# while the writes go on; none fails, every group is clean again, and every
# extent is on three nodes, identical. Then every node is killed at once
# and restarted: with no node up, each group is copied from the member
# that was up last, every node comes back up, and the copies are identical
# and serve the data written before.
. "$(dirname "$0")/lib.sh"

LAYER=0x7e57000011
L2=0x7e57000012
hosts 4
cluster_up 4 6s
clean() { status_of "$1" | grep -q '"clean":64'; }
"$BUILD/kura-repcheck" load "$WORK/n1/store.sock" $LAYER 8 4 "$WORK/load1" ||
	fail "writes through n1 did not read back"
echo "ok: RF 3 on 4 nodes through n1: $(cat "$WORK/load1")"
on 1 "$BUILD/kura-repcheck" replicas "$id" $LAYER 8 3 10.99.0.1:7400 10.99.0.2:7400 \
	10.99.0.3:7400 10.99.0.4:7400 || fail "replicas differ"

# n4 killed during writes to LAYER; out after 6 s; its groups rebuilt
for i in 1 2 3; do back_up_mark $i; done
kill_n4() { node_kill 4; }
load_while out $LAYER 16 kill_n4
echo "ok: n4 killed -9 during writes: no write failed, the longest waited ${max} ms"
is_out() { [ "$(state_in 1 n4)" = out ]; }
wait_for 15 "n4 out after --out-after 6s" is_out
rebuilt() {
	for i in 1 2 3; do [ "$(state_in 1 "n$i")" = up ] || return 1; done
	clean 1
}
wait_for 30 "the groups n4 held rebuilt on the others" rebuilt
copied=0
for i in 1 2 3; do copied=$((copied + $(served_fig $i extents_copied))); done
[ "$copied" -ge 1 ] || fail "no extent was copied to rebuild n4's groups"
# the copies came under rebuild pacing slots (replication/pace.c), at the
# members that took them and at the sources that read them
paced=0
sent=0
for i in 1 2 3; do
	st=$(status_of $i)
	p=$(echo "$st" | sed -n 's/.*"rebuild_pacing":{[^}]*"bytes_copied":\([0-9]*\).*/\1/p')
	s=$(echo "$st" | sed -n 's/.*"rebuild_pacing":{[^}]*"bytes_sent":\([0-9]*\).*/\1/p')
	paced=$((paced + ${p:-0}))
	sent=$((sent + ${s:-0}))
done
[ "$paced" -ge $((copied * 4096)) ] || fail "rebuild copies not paced: $paced bytes under slots"
[ "$sent" -ge $((copied * 4096)) ] || fail "rebuild reads not paced at the sources: $sent bytes under slots"
# ...and `vdisk cluster status` says how far guests held the copies back
shown=
for i in 1 2 3; do
	l=$(vdn $i cluster status | grep "^rebuild pacing qos; guest latency [0-9]* us (idle [0-9]* us); copies taken: window .*; reads for others: window")
	[ -n "$l" ] && shown="n$i: $l"
done
[ -n "$shown" ] || fail "vdisk cluster status does not show the rebuild pacing: $(vdn 1 cluster status)"
echo "ok: $shown"
echo "ok: n4 out; its groups rebuilt on the other three ($copied extents copied), 64 groups clean"
for l in $LAYER; do
	on 1 "$BUILD/kura-repcheck" replicas "$id" $l 8 3 10.99.0.1:7400 10.99.0.2:7400 \
		10.99.0.3:7400 || fail "copies of layer $l differ after the rebuild"
done
echo "ok: every extent on three nodes, identical, after the rebuild"

# every node killed at once, then all restarted: each group is copied from
# the member that was up last; all come back up
"$BUILD/kura-repcheck" load "$WORK/n1/store.sock" $L2 8 3 "$WORK/load2" ||
	fail "writes through n1 did not read back"
for i in 1 2 3; do back_up_mark $i; done
for i in 1 2 3; do node_kill $i; done
for i in 1 2 3; do node_start $i; done
# (a node's first map after its restart is the old one, where all were
# up: each must also have caught up since)
all3() {
	for i in 1 2 3; do back_up 1 $i || return 1; done
	clean 1
}
wait_for 30 "every node caught up and up again after a restart of all" all3
echo "ok: all nodes killed and restarted: recovering, caught up from each other, up after ${WAITED} ms"
for l in $LAYER $L2; do
	on 1 "$BUILD/kura-repcheck" replicas "$id" $l 8 3 10.99.0.1:7400 10.99.0.2:7400 \
		10.99.0.3:7400 || fail "copies of layer $l differ after the restart"
done
"$BUILD/kura-repcheck" load "$WORK/n1/store.sock" $L2 8 2 "$WORK/load3" ||
	fail "writes after the restart did not read back"
echo "ok: copies identical after the restart; writes go on: $(cat "$WORK/load3")"

# n4 comes back with the data it had: it takes its places again, catches
# up, and the nodes that filled them free the copies they no longer keep:
# every extent on exactly three of the four nodes, identical
back_up_mark 4
node_start 4
n4_back() { back_up 1 4 && clean 1; }
wait_for 30 "n4 back up, every group clean" n4_back
three_of_four() {
	for l in $LAYER $L2; do
		on 1 "$BUILD/kura-repcheck" replicas "$id" $l 8 3 10.99.0.1:7400 10.99.0.2:7400 \
			10.99.0.3:7400 10.99.0.4:7400 >"$WORK/strays.out" 2>&1 || return 1
	done
}
wait_for 20 "the copies of the groups n4 took back freed on the nodes that filled them" three_of_four
strays=0
for i in 1 2 3 4; do
	s=$(status_of $i | sed -n 's/.*"stray_copies_freed":\([0-9]*\).*/\1/p')
	strays=$((strays + ${s:-0}))
done
[ "$strays" -ge 1 ] || fail "no node counted a freed stray copy"
grep -q "copies of groups this node no longer holds" "$WORK"/n[1234].log || fail "no stray free logged"
"$BUILD/kura-repcheck" load "$WORK/n1/store.sock" $L2 8 2 "$WORK/load4" ||
	fail "writes after the strays were freed did not read back"
echo "ok: n4 back; $strays stray copies freed (${WAITED} ms); every extent on 3 of 4 nodes, identical; writes go on"
echo "PASS"
