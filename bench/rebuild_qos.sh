#!/bin/sh
# Guest writes while a node's groups are rebuilt, with rebuild pacing
# (--scheduler qos, the default) and without it (fifo), same machine, same
# run: four network-namespace hosts (etcd on three), RF 3, REBUILD_EXTENTS
# extents of data (default 768); a guest load of 4 KiB writes at QD8
# through n1's store socket runs in 1 s windows alone, then n4 is killed,
# goes out after 3 s and the other three rebuild its groups while the
# windows go on. Prints, per mode, the guest's mean and p99 latency alone
# and during the rebuild (the mean of the windows' means, the worst
# window's p99 and the median window's), and the rebuild's time and speed.
#   bench/rebuild_qos.sh BUILD_DIR      (root; disks of REBUILD_DISK each, 1G)
set -u
BUILD=$(cd "${1:-build}" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export BUILD ROOT
EXTS=${REBUILD_EXTENTS:-768}
. "$ROOT/tests/cluster/lib.sh"
LAYER=0x7e57000021
GUEST=0x7e57000031
hosts 4
DISK=${REBUILD_DISK:-1G}
DISKSIZE1=$DISK DISKSIZE2=$DISK DISKSIZE3=$DISK DISKSIZE4=$DISK

# window: one 1 s guest window: "mean_us p99_us"
window() {
	set -- $("$BUILD/kura-repcheck" bench "$WORK/n1/store.sock" $GUEST 8 1)
	echo "$4 $6"
}
# summary FILE: "n mean_of_means worst_p99 median_p99"
summary() {
	med=$(awk '{ print $2 }' "$1" | sort -n | awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : 0 }')
	awk -v med="$med" '{ n++; m += $1; if ($2 > p) p = $2 }
		END { printf "%d %.0f %d %d\n", n, n ? m / n : 0, p, med }' "$1"
}

run() {
	mode=$1
	for i in 1 2 3 4; do rm -rf "$WORK/etcd$i" "$WORK/n$i"; done
	rebuild_cluster "$EXTS" $LAYER --scheduler "$mode"
	window >/dev/null # the guest's extents exist from here on
	: >"$WORK/$mode.alone"
	for k in 1 2 3 4 5; do window >>"$WORK/$mode.alone"; done
	node_kill 4
	out4() { [ "$(state_in 1 n4)" = out ]; }
	wait_for 20 "n4 out" out4
	: >"$WORK/$mode.busy"
	t0=$(date +%s%N)
	k=0
	while ! clean1 && [ $k -lt 120 ]; do window >>"$WORK/$mode.busy"; k=$((k + 1)); done
	clean1 || fail "$mode: n4's groups not rebuilt within 120 windows"
	ms=0 bytes=0
	for i in 1 2 3; do
		m=$(resync_fig $i ms)
		[ "${m:-0}" -gt $ms ] && ms=$m
		bytes=$((bytes + $(resync_fig $i bytes_copied)))
	done
	# how often the pacing held a request back, at the members that took
	# the copies and at the sources that read them (replication/pace.c)
	held=0 sheld=0 late=0
	for i in 1 2 3; do
		st=$(status_of $i)
		for k in requests_held source_requests_held source_requests_late; do
			v=$(echo "$st" | sed -n "s/.*\"rebuild_pacing\":{[^}]*\"$k\":\([0-9]*\).*/\1/p")
			case $k in
			requests_held) held=$((held + ${v:-0})) ;;
			source_requests_held) sheld=$((sheld + ${v:-0})) ;;
			*) late=$((late + ${v:-0})) ;;
			esac
		done
	done
	echo "$mode: requests held back by the pacing: $held at the members, $sheld at the sources ($late not granted within 1 s)" >>"$WORK/held"
	set -- $(summary "$WORK/$mode.alone")
	alone="$2 $3"
	set -- $(summary "$WORK/$mode.busy")
	echo "$mode $alone $2 $3 $4 $ms $((bytes / 1048576))" >>"$WORK/results"
	for i in 1 2 3; do node_stop $i; done
	for i in 1 2 3; do etcd_kill $i; done
}

: >"$WORK/results"
: >"$WORK/held"
for mode in fifo qos; do run $mode; done
echo "guest 4 KiB writes at QD8 through n1 while n4's groups are rebuilt ($EXTS extents of data, RF 3)"
echo "(rebuild: the mean of the 1 s windows' means, the worst window's p99 and the median one's)"
printf "%-5s %14s %13s %14s %13s %13s %11s %12s\n" mode alone_mean_us alone_p99_us rebuild_mean_us \
	rebuild_p99_us median_p99_us rebuild_ms rebuild_MiB/s
awk '{ printf "%-5s %14s %13s %14s %13s %13s %11s %12.0f\n", $1, $2, $3, $4, $5, $6, $7,
	($7 > 0) ? $8 * 1000 / $7 : 0 }' "$WORK/results"
cat "$WORK/held"
exit 0
