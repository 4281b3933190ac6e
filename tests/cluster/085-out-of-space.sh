#!/bin/sh
# Out of space: n3's disk is half the size of the others', and n3 holds a
# copy of every group (RF 3 on three nodes), so it fills first, as a
# replica. Writes through n1 that need new extents then fail with ENOSPC,
# at once (the primaries refuse them before any copy takes them), instead
# of waiting for ever for n3; writes into extents already allocated go on;
# every extent written is on all three nodes, identical. Once extents are
# freed, new ones can be written again.
. "$(dirname "$0")/lib.sh"

LAYER=0x7e57000041 LAYER2=0x7e57000042
hosts 3
DISKSIZE3=128M
cluster_up 3 60s
fill_once() {
	out=$(timeout -k 5 120 "$BUILD/kura-repcheck" fill "$WORK/n1/store.sock" "$1" 0 4096 2>&1) ||
		{ diag; fail "filling through n1: $out"; }
	echo "$out"
	FILLED=$(echo "$out" | sed -n 's/^filled \([0-9]*\) extents.*/\1/p')
	LONGEST=$(echo "$out" | sed -n 's/.*longest write \([0-9]*\) ms.*/\1/p')
	[ "${FILLED:-0}" -ge 32 ] || fail "only ${FILLED:-no} extents filled"
	[ "$LONGEST" -lt 2000 ] || fail "a write waited $LONGEST ms while the disks filled"
}
fill_once $LAYER
N=$FILLED
refused=0
for i in 1 2 3; do
	r=$(status_of $i | sed -n 's/.*"writes_refused_low_space":\([0-9]*\).*/\1/p')
	refused=$((refused + ${r:-0}))
done
[ "$refused" -ge 1 ] || fail "no primary counted a write refused for space"
grep -q "a copy of its group is low on space" "$WORK"/n[123].log || fail "no refusal logged"
on 1 "$BUILD/kura-repcheck" replicas "$id" $LAYER "$N" 3 10.99.0.1:7400 10.99.0.2:7400 \
	10.99.0.3:7400 || fail "the copies differ after the disks filled"
echo "ok: $N extents filled; the next write got ENOSPC (longest write $LONGEST ms); $refused writes refused; every extent on 3 nodes, identical"

"$BUILD/kura-repcheck" free "$WORK/n1/store.sock" $LAYER 0 "$N" || fail "freeing the filled extents"
on 1 "$BUILD/kura-repcheck" replicas "$id" $LAYER "$N" 0 10.99.0.1:7400 10.99.0.2:7400 \
	10.99.0.3:7400 || fail "a freed extent is still held"
sleep 2.5 # what a replica said of its space holds 2 s
fill_once $LAYER2
[ "$FILLED" -ge $((N / 2)) ] || fail "after freeing $N extents only $FILLED could be written"
on 1 "$BUILD/kura-repcheck" replicas "$id" $LAYER2 "$FILLED" 3 10.99.0.1:7400 \
	10.99.0.2:7400 10.99.0.3:7400 || fail "the copies differ after the second fill"
echo "ok: after freeing them, $FILLED new extents were written; every extent on 3 nodes, identical"
