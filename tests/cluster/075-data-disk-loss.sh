#!/bin/sh
# A node with two data disks loses one. n4 pools its first disk (the
# journal's, in its data dir) and a second on an ext4 file system of its own
# (a loop device); during writes through n1 that file system is shut down
# as a dying disk would be (every I/O fails with EIO). n4's store stops at
# its first failed write or flush there and records the disk as failed; n4
# leaves the cluster at once, starts again in the same process without
# that disk (forgetting the extents it held there) and joins again as a
# restarted node. Its resync copies back exactly what it lost plus what
# was written while it was away; no write fails; every extent is again on
# three nodes, identical, and reads back as acknowledged.
. "$(dirname "$0")/lib.sh"

LAYER=0x7e57000075
LAYER2=0x7e57000076
hosts 4
own_fs 4
DISKDIR4=  # n4's first disk and its journal stay in its data dir
DISK2_4="$WORK/n4disk/disk1.img,size=256M"
cluster_up 4 60s

# disk_used I D: bytes allocated on disk D of node I
disk_used() {
	"$BUILD/kura-repcheck" stats "$WORK/n$1/store.sock" | tr '{' '\n' | grep '"path"' |
		sed -n "$(($2 + 1))p" | sed -n 's/.*"used_bytes":\([0-9]*\).*/\1/p'
}
"$BUILD/kura-repcheck" load "$WORK/n1/store.sock" $LAYER 48 3 "$WORK/load1" ||
	fail "writes through n1 did not read back"
on 1 "$BUILD/kura-repcheck" replicas "$id" $LAYER 48 3 10.99.0.1:7400 10.99.0.2:7400 \
	10.99.0.3:7400 10.99.0.4:7400 || fail "replicas differ before the disk loss"
held0=$(($(disk_used 4 0) / 1048576)) held1=$(($(disk_used 4 1) / 1048576))
[ "$held0" -ge 1 ] && [ "$held1" -ge 1 ] ||
	fail "n4 should hold extents on both disks (disk 0: $held0, disk 1: $held1)"
echo "ok: n4 holds $held0 extents on its first disk, $held1 on its second"

# the second disk fails while 8 extents of another layer are written
disk1_fails() { "$BUILD/kura-repcheck" fsdown "$WORK/n4disk/disk1.img" || fail "fsdown"; }
load_while diskloss $LAYER2 12 disk1_fails
grep -q "disk .*disk1.img (kura disk 1) failed: recorded" "$WORK/n4.log" ||
	{ tail -n 20 "$WORK/n4.log"; fail "n4 did not record its second disk as failed"; }
grep -q "restarting the node without it" "$WORK/n4.log" || fail "n4 did not restart"
dropped=$(sed -n 's/.*dropped \([0-9]*\) extents that were on a failed disk.*/\1/p' "$WORK/n4.log")
[ -n "$dropped" ] && [ "$dropped" -ge 1 ] || fail "n4 dropped no extent of its failed disk"
echo "ok: n4's second disk failed during writes: no write failed, the longest waited ${max} ms;" \
	"n4 restarted without it, dropping $dropped extents"

n4_up() { [ "$(state_in 1 n4)" = up ] && status_of 1 | grep -q '"clean":64'; }
wait_for 30 "n4 up again, every group clean" n4_up
copied=$(resync_fig 4 extents_copied)
[ -n "$copied" ] && [ "$copied" -ge "$dropped" ] ||
	fail "n4's resync copied ${copied:-no} extents, fewer than the $dropped it lost"
[ "$copied" -le $((dropped + 8)) ] ||
	fail "n4's resync copied $copied extents: more than the $dropped lost and 8 written"
[ "$(disk_used 4 1)" = 0 ] || fail "n4 still counts data on its failed disk"
echo "ok: n4 up ${WAITED} ms later; its resync copied $copied extents ($dropped lost, at most 8" \
	"written meanwhile) of the $((held0 + held1)) it held"
for l in "$LAYER 48" "$LAYER2 8"; do
	set -- $l
	on 1 "$BUILD/kura-repcheck" replicas "$id" $1 $2 3 10.99.0.1:7400 10.99.0.2:7400 \
		10.99.0.3:7400 10.99.0.4:7400 || fail "after the resync, the copies of $1 differ"
done
"$BUILD/kura-repcheck" verify "$WORK/n4/store.sock" $LAYER 48 "$WORK/load1" ||
	fail "what was written before the disk loss does not read back through n4"
"$BUILD/kura-repcheck" verify "$WORK/n4/store.sock" $LAYER2 8 "$WORK/diskloss" ||
	fail "what was written during the disk loss does not read back through n4"
echo "ok: every extent on 3 of the 4 nodes, identical; everything reads back through n4"
"$BUILD/kura-repcheck" load "$WORK/n1/store.sock" $LAYER 48 2 "$WORK/load2" ||
	fail "writes after the disk loss did not read back"
echo "ok: writes go on"
