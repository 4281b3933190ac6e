#!/bin/sh
# A vdisk served by the cluster against one served by a node on its own:
# fio random 4 KiB reads and writes at QD1 and QD32 through qemu-nbd
# (QEMU's libiscsi driver) on the iSCSI portal of the node serving the
# vdisks, in a cluster of three namespace hosts with RF 3 (every block on
# all three, so reads come from the serving node's own copy), then the
# same on a single blockd without --cluster, in the same run on the same
# machine and disk. (Each node has a 256 MiB disk: the vdisk region is 96 MiB.)
#   bench/cluster_vdisk.sh BUILD_DIR   (root; CLUSTER_SECONDS per run, 5)
set -u
BUILD=$(cd "${1:-build}" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export BUILD ROOT
RT=${CLUSTER_SECONDS:-5}
. "$ROOT/tests/cluster/lib.sh"
for t in qemu-nbd qemu-img fio; do command -v $t >/dev/null || skip "$t missing (make deps)"; done
IQN=iqn.2026-11.io.kura:

# fio4 HOST URL -> "rq1_iops rq1_us rq32_iops wq1_iops wq1_us wq32_iops"
fio_one() { # HOST RW QD -> "iops mean_us"
	on "$1" timeout -k 5 $((RT + 30)) fio --name=b --ioengine=nbd \
		--uri="nbd+unix:///?socket=$WORK/nbd.sock" --rw="$2" --bs=4k --iodepth="$3" \
		--size=96M --time_based --runtime="$RT" --output-format=json \
		--output="$WORK/fio.json" >/dev/null 2>"$WORK/fio.err" || { echo "0 0"; return; }
	tr -d ' \n\t' <"$WORK/fio.json" | awk -v k="\"${2#rand}\":{" '
	function after(s, key,   i, r) {
		i = index(s, key); if (!i) return 0
		r = substr(s, i + length(key)); sub(/[,}].*/, "", r); return r + 0 }
	{ s = substr($0, index($0, k)); c = substr(s, index(s, "\"clat_ns\":{"))
	  printf "%.0f %.0f\n", after(s, "\"iops\":"), after(c, "\"mean\":") / 1000 }'
}
measure() { # HOST URL LABEL
	# (ip netns exec itself in the background: $! is qemu-nbd's pid)
	ip netns exec "${NS}h$1" qemu-nbd -f raw -t -e 4 -k "$WORK/nbd.sock" "$2" \
		2>"$WORK/nbd.log" &
	NBD=$!
	PIDS="$PIDS $NBD"
	wait_for 10 "qemu-nbd on $2" test -S "$WORK/nbd.sock"
	set -- "$1" "$2" "$3" $(fio_one "$1" randread 1) $(fio_one "$1" randread 32) \
		$(fio_one "$1" randwrite 1) $(fio_one "$1" randwrite 32)
	kill "$NBD" 2>/dev/null; wait "$NBD" 2>/dev/null; rm -f "$WORK/nbd.sock"
	printf "%-22s %9s %9s %9s %9s %9s %9s\n" "$3" "$4" "$5" "$6" "$8" "$9" "${10}"
}
head -c 96M /dev/urandom > "$WORK/fill.img"

hosts 3
for i in 1 2 3; do etcd_start $i; done
etcd_up
for i in 1 2 3; do node_start $i --iscsi "10.99.0.$i:3260"; done
vdn 1 cluster init --replicas 3 --pgs 64 >/dev/null || fail "cluster init"
CLUSTER_NODES=3
wait_for 20 "cluster up" all_clean
S=
serving() { for i in 1 2 3; do vdn $i list >/dev/null 2>&1 && { S=$i; return 0; }; done; return 1; }
wait_for 20 "a node serves the vdisks" serving
vdn $S create b 1G >/dev/null || fail "create"
on $S qemu-img convert -n -f raw -O raw "$WORK/fill.img" "iscsi://10.99.0.$S:3260/${IQN}b/0" ||
	fail "fill"
printf "%-22s %9s %9s %9s %9s %9s %9s\n" vdisk rd_qd1 rd_qd1_us rd_qd32 wr_qd1 wr_qd1_us wr_qd32
measure $S "iscsi://10.99.0.$S:3260/${IQN}b/0" "cluster RF 3 (n$S)"
echo "reads from own copies / from other nodes on n$S: $(status_of $S |
	sed -n 's/.*"vdisk_reads":{"local":\([0-9]*\),"remote":\([0-9]*\).*/\1 \/ \2/p')"
for i in 1 2 3; do node_stop $i; done

# the same vdisk size on a node of its own, in host 1's namespace
mkdir -p "$WORK/solo"
ip netns exec "${NS}h1" "$BUILD/blockd" --data "$WORK/solo" --disk "$WORK/solo/disk.img,size=1G" \
	--iscsi 10.99.0.1:3261 >>"$WORK/solo.log" 2>&1 &
PIDS="$PIDS $!"
wait_socket "$WORK/solo/blockd.sock"
"$BUILD/vdisk" --socket "$WORK/solo/blockd.sock" create b 1G >/dev/null || fail "create (solo)"
on 1 qemu-img convert -n -f raw -O raw "$WORK/fill.img" "iscsi://10.99.0.1:3261/${IQN}b/0" ||
	fail "fill (solo)"
measure 1 "iscsi://10.99.0.1:3261/${IQN}b/0" "one node, no cluster"
exit 0
