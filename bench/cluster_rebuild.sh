#!/bin/sh
# Resync and rebuild on four network-namespace hosts (etcd on three), RF 3,
# every node's disks files on the same host disk:
# - resync: n3 is cut off while one 4 KiB block of each of N extents is
#   written; back, it copies what changed: bytes moved against bytes
#   changed (and against the data it holds);
# - rebuild: n4 is killed and goes out; the nodes that take its places copy
#   its groups: rebuild throughput against the host disk's sequential
#   bandwidth (dd, 1 MiB O_DIRECT writes and reads of a file beside the
#   nodes' disks; fio's durable write stream) and against its durable copy
#   bandwidth (8 dd copies at once: what one shared device can copy).
#   bench/cluster_rebuild.sh BUILD_DIR     (root; REBUILD_EXTENTS of data, 256,
#   on disks of REBUILD_DISK each, 1G)
set -u
BUILD=$(cd "${1:-build}" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export BUILD ROOT
EXTS=${REBUILD_EXTENTS:-256}
TOUCH=32
. "$ROOT/tests/cluster/lib.sh"
LAYER=0x7e57000021
hosts 4
DISK=${REBUILD_DISK:-1G}
DISKSIZE1=$DISK DISKSIZE2=$DISK DISKSIZE3=$DISK DISKSIZE4=$DISK
# the data: every block of EXTS extents, three copies
rebuild_cluster "$EXTS" $LAYER
clean() { clean1; }

# resync: N extents change while n3 is away
back_up_mark 3
link_down 3
down3() { [ "$(state_in 1 n3)" = down ]; }
wait_for 15 "n3 down" down3
"$BUILD/kura-repcheck" touch "$WORK/n1/store.sock" $LAYER 0 $TOUCH || fail "writes while n3 was away"
link_up 3
wait_for 30 "n3 back up" back_up 1 3
moved=$(resync_fig 3 bytes_copied) ext=$(resync_fig 3 extents_copied) ms=$(resync_fig 3 ms)
deltas=0
for i in 1 2 4; do deltas=$((deltas + $(served_fig $i extents_copied_missed_blocks))); done
held=$((EXTS * 3 / 4))
echo "resync: one 4 KiB block of each of $TOUCH extents written while n3 was away (n3 holds about 3/4 of the $EXTS extents: ~$((TOUCH * 3 / 4)) of those)"
echo "resync: moved $ext extents, $((moved / 1024)) KiB in $ms ms: $((moved / (ext * 4096)))x the bytes changed in them (the blocks a member missed move, else whole 1 MiB extents), $((moved * 100 / (held * 1048576)))% of a full copy; $deltas extents as the blocks n3 missed"
# (with --out-after 3s, n3 may go out before it is back: then its groups
# were filled elsewhere, what it missed is forgotten and it copies whole)

# rebuild: n4 out
# store_fig I FIELD: a figure of node I's store statistics
store_fig() { "$BUILD/kura-repcheck" stats "$WORK/n$1/store.sock" | sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"; }
before=0 dbefore=0 wbefore=0
for i in 1 2 3; do
	before=$((before + $(served_fig $i bytes_copied)))
	dbefore=$((dbefore + $(store_fig $i direct_bytes)))
	wbefore=$((wbefore + $(store_fig $i write_bytes)))
done
node_kill 4
out4() { [ "$(state_in 1 n4)" = out ]; }
wait_for 20 "n4 out" out4
wait_for 120 "n4's groups rebuilt" clean
after=0 ms=0 dafter=0 wafter=0
for i in 1 2 3; do
	after=$((after + $(served_fig $i bytes_copied)))
	dafter=$((dafter + $(store_fig $i direct_bytes)))
	wafter=$((wafter + $(store_fig $i write_bytes)))
	m=$(resync_fig $i ms)
	[ "${m:-0}" -gt $ms ] && ms=$m
done
bytes=$((after - before))
[ $ms -gt 0 ] || fail "no rebuild time"
rb=$((bytes / 1048576 * 1000 / ms))
dd if=/dev/zero of="$WORK/seq.img" bs=1M count=512 oflag=direct 2>"$WORK/dd.w" || fail "dd"
dd if="$WORK/seq.img" of=/dev/null bs=1M iflag=direct 2>"$WORK/dd.r" || fail "dd"
mbs() { sed -n 's/.* \([0-9.]*\) \([MG]\)B\/s$/\1 \2/p' "$1" | awk '{ print ($2 == "G") ? $1 * 1000 : $1 }'; }
w=$(mbs "$WORK/dd.w") r=$(mbs "$WORK/dd.r")
# The durable figure: a rebuilt copy counts only once it is on the disk, so
# the nodes write with FUA; fio's 1 MiB writes with O_DSYNC at QD8 are the
# same kind of write. (On a virtual disk, dd's figure above is mostly the
# host's cache.)
dw=
if command -v fio >/dev/null; then
	fio --name=seq --filename="$WORK/seq.img" --size=512M --ioengine=io_uring --direct=1 \
		--rw=write --bs=1M --iodepth=8 --sync=dsync --output-format=json \
		>"$WORK/fio.w" 2>&1 || fail "fio: $(tail -n 2 "$WORK/fio.w")"
	dw=$(tr -d ' \n\t' <"$WORK/fio.w" | sed 's/.*"write":{[^}]*"bw_bytes":\([0-9]*\),.*/\1/')
	dw=$((dw / 1000000))
fi
# The copy figure: on this machine every node's disk is a file on the same
# host disk, so a rebuild's reads (at the sources) and writes (at the
# targets) share one device; the most any rebuild can move here is what the
# device copies: 8 copies at once of 64 MiB each, 1 MiB O_DIRECT reads and
# O_DIRECT|O_DSYNC writes (the same queue depth as the rebuild's 8 groups),
# into a file written once beforehand, as the nodes' disk files are.
dd if=/dev/zero of="$WORK/copy.img" bs=1M count=512 oflag=direct 2>/dev/null || fail "dd"
t0=$(date +%s%N)
pids=
for k in 0 1 2 3 4 5 6 7; do
	dd if="$WORK/seq.img" of="$WORK/copy.img" bs=1M count=64 skip=$((k * 64)) seek=$((k * 64)) \
		iflag=direct oflag=direct,dsync conv=notrunc 2>/dev/null &
	pids="$pids $!"
done
# (only the copies: a bare wait would wait for the nodes too)
for p in $pids; do wait "$p" || fail "dd copy"; done
cp_mbs=$((512 * 1048576 / (($(date +%s%N) - t0) / 1000)))
rm -f "$WORK/seq.img" "$WORK/copy.img"
echo "rebuild: $((bytes / 1048576)) MiB copied in $ms ms: $rb MiB/s; host disk sequential write $w MB/s (durable: ${dw:-?} MB/s), read $r MB/s, durable copy $cp_mbs MB/s"
echo "rebuild: the nodes wrote $(((wafter - wbefore) / 1048576)) MiB meanwhile, $(((dafter - dbefore) / 1048576)) MiB of it in place directly (no journal copy)"
awk -v rb="$rb" -v w="$w" -v dw="${dw:-0}" -v cp="$cp_mbs" 'BEGIN {
	printf "rebuild: %.2f of the sequential write bandwidth", rb * 1.048576 / w
	if (dw > 0) printf ", %.2f of the durable sequential write bandwidth", rb * 1.048576 / dw
	if (cp > 0) printf ", %.2f of the durable copy bandwidth", rb * 1.048576 / cp
	printf " (each byte read once and written once, in place, with its checksums journaled; all on one disk)\n" }'
exit 0
