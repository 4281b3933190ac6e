#!/bin/sh
# Replicated write cost: 4 KiB writes through a node's store socket at QD1
# (latency) and QD32 (IOPS) on three network-namespace hosts with a
# 3-member etcd, with 1, 2 and 3 replicas (a new cluster each), all in the
# same run on the same machine. Each node's disk is a file on the same host
# disk, so the three replicas of a write share one device.
#   bench/cluster_bench.sh BUILD_DIR     (root; CLUSTER_SECONDS per run, 5;
#   CLUSTER_RFS, the replica counts to run, "1 2 3")
set -u
BUILD=$(cd "${1:-build}" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export BUILD ROOT
SECS=${CLUSTER_SECONDS:-5}
. "$ROOT/tests/cluster/lib.sh"
LAYER=0x7e57000002
hosts 3
printf "%-3s %12s %12s %12s %12s\n" RF qd1_mean_us qd1_p99_us qd32_iops qd32_mean_us
for rf in ${CLUSTER_RFS:-1 2 3}; do
	for i in 1 2 3; do rm -rf "$WORK/etcd$i" "$WORK/n$i"; etcd_start $i; done
	etcd_up
	for i in 1 2 3; do node_start $i; done
	vdn 1 cluster init --replicas $rf --pgs 64 >/dev/null || fail "cluster init"
	clean() { for i in 1 2 3; do status_of "$i" | grep -q '"clean":64' || return 1; done; }
	wait_for 15 "cluster of RF $rf up" clean
	sleep 1 # links up
	set -- $("$BUILD/kura-repcheck" bench "$WORK/n1/store.sock" $LAYER 1 "$SECS")
	q1m=$4 q1p=$6
	set -- $("$BUILD/kura-repcheck" bench "$WORK/n1/store.sock" $LAYER 32 "$SECS")
	printf "%-3s %12s %12s %12s %12s\n" $rf "$q1m" "$q1p" "$2" "$4"
	for i in 1 2 3; do node_stop $i; done
	for i in 1 2 3; do etcd_kill $i; done
done
exit 0
