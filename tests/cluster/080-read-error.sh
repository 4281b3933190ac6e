#!/bin/sh
# Read errors: a node whose disk fails reads (every I/O gets EIO) while
# nothing writes to it stays in the cluster, and every read it would have
# served from its own copy is served from another replica's instead.
# Blocks written through n1's store socket read back, as acknowledged,
# through every node's; a vdisk written over iSCSI reads back exactly
# through the serving node after that node's own disk failed (its local
# copy first, then the group's primary, which may be itself).
. "$(dirname "$0")/lib.sh"
command -v qemu-img >/dev/null 2>&1 || skip "skip: qemu-img is not installed"

LAYER=0x7e57000031
hosts 3
for i in 1 2 3; do own_fs $i; done
PORTALS=1
cluster_up 3 60s
wait_for 20 "a node serves the vdisks" serving
S=$SERVER

# 48 extents: each node is the primary of some of them
"$BUILD/kura-repcheck" load "$WORK/n1/store.sock" $LAYER 48 2 "$WORK/load" ||
	fail "writes through n1 did not read back"
IQN=iqn.2026-11.io.kura:
URL="iscsi://10.99.0.$S:3260/${IQN}vm1/0"
head -c 24M /dev/urandom > "$WORK/a.img"
vdn $S create vm1 24M >/dev/null || fail "create vm1"
on $S timeout -k 5 120 qemu-img convert -n -f raw -O raw "$WORK/a.img" "$URL" ||
	fail "qemu-img convert onto vm1"

fig() { status_of "$1" | sed -n "s/.*\"$2\":{[^}]*\"$3\":\([0-9]*\).*/\1/p"; }

R=$((S % 3 + 1))
# bit rot: block 0 of every extent of LAYER changed on n$R's disk (a
# node other than the serving one, whose disk fails next); reads
# through n$R get the data as written (the primary's checksum fails, another
# copy serves it) and n$R's copies it is the primary of are written again
"$BUILD/kura-repcheck" corrupt "$WORK/n${R}disk/disk.img" 48 || fail "no block to corrupt found"
"$BUILD/kura-repcheck" verify "$WORK/n$R/store.sock" $LAYER 48 "$WORK/load" ||
	fail "blocks read through n$R after its copies rotted differ from what was acknowledged"
f1=$(fig $R primary_reads own_copy_failed)
rep=$(fig $R primary_reads repairs)
[ "${f1:-0}" -ge 1 ] && [ "${rep:-0}" -ge 1 ] ||
	fail "n$R's rotted copies: ${f1:-no} failed reads, ${rep:-no} repairs"
"$BUILD/kura-repcheck" verify "$WORK/n$R/store.sock" $LAYER 48 "$WORK/load" ||
	fail "a second read through n$R differs"
f2=$(fig $R primary_reads own_copy_failed)
[ "$f2" = "$f1" ] || fail "n$R's copies were not repaired: $f1 failed reads, then $f2"
echo "ok: bit rot on n$R: $f1 reads failed their checksum and were served by another replica; $rep repairs; read again, none failed"

# nothing left for n$S to write (its checkpoint, every 5 s, writes too):
# from here on only reads reach its disk
quiet() { "$BUILD/kura-repcheck" stats "$WORK/n$S/store.sock" | grep -q '"journal_used":0,'; }
wait_for 20 "n$S's journal checkpointed" quiet
disk_fails $S
echo "ok: n$S's disk fails every I/O now"
on $S timeout -k 5 120 qemu-img compare -f raw -F raw "$WORK/a.img" "$URL" ||
	fail "vm1 read through n$S after its disk failed differs from what was written"
lf=$(fig $S vdisk_reads local_failed)
[ "${lf:-0}" -ge 1 ] || fail "n$S read no vdisk block from its own copy (local_failed ${lf:-none})"
echo "ok: vm1 read back exactly through n$S; $lf of its local reads failed and went to a primary"
for i in 1 2 3; do
	"$BUILD/kura-repcheck" verify "$WORK/n$i/store.sock" $LAYER 48 "$WORK/load" ||
		fail "blocks read through n$i after n$S's disk failed differ from what was acknowledged"
done
failed=$(fig $S primary_reads own_copy_failed)
served=$(fig $S primary_reads served_by_another_replica)
[ "${failed:-0}" -ge 1 ] && [ "${served:-0}" -ge "$failed" ] ||
	fail "n$S's primary reads: own copy failed ${failed:-none}, served elsewhere ${served:-none}"
grep -q "could not be read; reading another replica's" "$WORK/n$S.log" ||
	fail "n$S did not log its failed reads"
[ "$(state_in 1 "n$S")" = up ] || fail "n$S is $(state_in 1 "n$S") after read errors alone"
echo "ok: every block read back through n1-n3; n$S's own copy failed $failed reads at the primary, all served by another replica; n$S is still up"
