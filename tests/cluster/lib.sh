# Helpers for the cluster tests: hosts as network namespaces on one bridge,
# a 3-member etcd cluster (one member per host), and blockd nodes.
# Everything lives in namespaces the test creates and deletes (addresses
# 10.99.0.x exist only there) and in $WORK; the EXIT trap removes it all.
#   . tests/cluster/lib.sh   (with BUILD and ROOT set, as tests/run.sh does)
set -u
. "$ROOT/tests/integration/lib.sh"

NS=kc$$ # namespace prefix, unique per test run
NHOSTS=0
MOUNTS="" # file systems a test mounted (loop devices): unmounted at exit
cluster_cleanup() {
	for p in $PIDS; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	PIDS=""
	for m in $MOUNTS; do umount -l "$m" 2>/dev/null; done
	for i in $(seq 1 "$NHOSTS"); do ip netns del "${NS}h$i" 2>/dev/null; done
	ip netns del "${NS}br" 2>/dev/null
	[ -n "${KURA_KEEP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cluster_cleanup EXIT
trap 'exit 130' INT TERM

skip() { echo "$*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "cluster tests need root (network namespaces)"
command -v etcd >/dev/null || skip "etcd missing (make deps)"
command -v ip >/dev/null || skip "ip missing (make deps)"

# hosts N: N hosts NS h1..hN at 10.99.0.1..N/24 on one bridge
hosts() {
	NHOSTS=$1
	ip netns add "${NS}br" || skip "cannot create network namespaces here"
	ip -n "${NS}br" link add br0 type bridge
	ip -n "${NS}br" link set br0 up
	for i in $(seq 1 "$1"); do
		ip netns add "${NS}h$i"
		ip -n "${NS}br" link add "p$i" type veth peer name eth0 netns "${NS}h$i"
		ip -n "${NS}br" link set "p$i" master br0
		ip -n "${NS}br" link set "p$i" up
		ip -n "${NS}h$i" addr add "10.99.0.$i/24" dev eth0
		ip -n "${NS}h$i" link set eth0 up
		ip -n "${NS}h$i" link set lo up
	done
}
on() { h=$1; shift; ip netns exec "${NS}h$h" "$@"; }
link_down() { ip -n "${NS}h$1" link set eth0 down; }
link_up() { ip -n "${NS}h$1" link set eth0 up; }

# etcd_start I: etcd member sI on host I (of a 3-member cluster on h1..h3)
ETCD_URLS="http://10.99.0.1:2379,http://10.99.0.2:2379,http://10.99.0.3:2379"
etcd_start() {
	i=$1
	mkdir -p "$WORK/etcd$i"
	ip netns exec "${NS}h$i" etcd --name "s$i" --data-dir "$WORK/etcd$i" \
		--listen-client-urls "http://10.99.0.$i:2379" \
		--advertise-client-urls "http://10.99.0.$i:2379" \
		--listen-peer-urls "http://10.99.0.$i:2380" \
		--initial-advertise-peer-urls "http://10.99.0.$i:2380" \
		--initial-cluster "s1=http://10.99.0.1:2380,s2=http://10.99.0.2:2380,s3=http://10.99.0.3:2380" \
		--initial-cluster-state new --initial-cluster-token "$NS" \
		>>"$WORK/etcd$i.log" 2>&1 &
	eval "ETCD$i=\$!"
	PIDS="$PIDS $!"
}
etcd_kill() { eval "kill -9 \$ETCD$1; wait \$ETCD$1 2>/dev/null"; }
etcd_up() {
	i=0
	until on 1 etcdctl --endpoints "$ETCD_URLS" endpoint health >/dev/null 2>&1; do
		i=$((i + 1)); [ $i -lt 100 ] || fail "etcd did not become healthy: $(tail -n 5 "$WORK/etcd1.log")"
		sleep 0.2
	done
}

# (ip netns exec runs in the background itself, not through on(), so that $!
# is the server's own pid.)
# node_start I [blockd args]: blockd n$I on host I, data in $WORK/n$I,
# control socket $WORK/n$I/blockd.sock, log $WORK/n$I.log
node_start() {
	i=$1; shift
	mkdir -p "$WORK/n$i"
	# DISKDIR<i>: where node i's disk file lives (default: its data dir)
	ddir=$(eval echo "\${DISKDIR$i:-$WORK/n$i}")
	# DISKSIZE<i>: its size (default 256M)
	dsize=$(eval echo "\${DISKSIZE$i:-256M}")
	# PORTALS=1: an iSCSI portal on 10.99.0.i:3260
	portal=off; [ -n "${PORTALS:-}" ] && portal="10.99.0.$i:3260"
	# ETCD_URLS<i>: the etcd members node i asks, in its order (default: all, s1 first)
	urls=$(eval echo "\${ETCD_URLS$i:-$ETCD_URLS}")
	# DISK2_<i>: a second disk for node i (PATH,size=S)
	disk2=$(eval echo "\${DISK2_$i:-}")
	ip netns exec "${NS}h$i" "$BUILD/blockd" --data "$WORK/n$i" --disk "$ddir/disk.img,size=$dsize" \
		${disk2:+--disk "$disk2"} \
		--iscsi "$portal" --cluster "$urls" --node "n$i" --listen "10.99.0.$i:7400" \
		--fault-domain "rack$i" "$@" >>"$WORK/n$i.log" 2>&1 &
	eval "NODE$i=\$!"
	PIDS="$PIDS $!"
	wait_socket "$WORK/n$i/blockd.sock"
}
# own_fs I: node I's data disk on an ext4 file system of its own (a loop
# device, unmounted at exit), so that `kura-repcheck fsdown` can fail it
# alone; its metadata database stays in its data dir
own_fs() {
	command -v mkfs.ext4 >/dev/null 2>&1 || skip "skip: mkfs.ext4 missing"
	mkdir -p "$WORK/n$1disk"
	truncate -s 600M "$WORK/n$1fs.img"
	mkfs.ext4 -q -F "$WORK/n$1fs.img" || skip "skip: cannot make an ext4 file system"
	mount -o loop "$WORK/n$1fs.img" "$WORK/n$1disk" || skip "skip: cannot mount a loop device here"
	MOUNTS="$MOUNTS $WORK/n$1disk"
	eval "DISKDIR$1=\$WORK/n$1disk"
}
# disk_fails I: node I's disk (on own_fs) fails: every later I/O gets EIO
disk_fails() { "$BUILD/kura-repcheck" fsdown "$WORK/n$1disk/disk.img" || fail "fsdown n$1"; }
node_kill() { eval "kill -9 \$NODE$1; wait \$NODE$1 2>/dev/null"; }
node_stop() { eval "kill -TERM \$NODE$1; wait \$NODE$1 2>/dev/null"; }
vdn() { i=$1; shift; "$BUILD/vdisk" --socket "$WORK/n$i/blockd.sock" "$@"; }

# status_of I: node I's `vdisk cluster status --json`, on one line
status_of() { vdn "$1" cluster status --json 2>&1 | tr -d ' \n'; }
# state_in I NAME: NAME's state in node I's map
state_in() {
	status_of "$1" | sed -n "s/.*{\"name\":\"$2\",\"addr\":\"[^\"]*\",\"domain\":\"[^\"]*\",\"state\":\"\([a-z]*\)\".*/\1/p"
}
# cluster_up N OUT_AFTER: etcd on hosts 1-3, nodes n1..nN, a cluster of
# RF 3 and 64 groups; returns once every node sees all 64 groups clean.
# Sets $id, the cluster id.
cluster_up() {
	for i in 1 2 3; do etcd_start $i; done
	etcd_up
	for i in $(seq 1 "$1"); do node_start $i; done
	id=$(vdn 1 cluster init --replicas 3 --pgs 64 --out-after "$2" | sed -n 's/^created cluster //p')
	[ ${#id} = 36 ] || fail "cluster init gave no id"
	CLUSTER_NODES=$1
	wait_for 20 "$1 nodes up, 64 groups clean" all_clean
}
# rebuild_cluster EXTS LAYER [BLOCKD ARGS...]: the rebuild benches' start:
# etcd on hosts 1-3, four nodes, RF 3, 64 groups, --out-after 3s, and
# EXTS extents of LAYER written through n1 (three copies); clean1 then
# says whether n1 sees all 64 groups clean
clean1() { status_of 1 | grep -q '"clean":64'; }
rebuild_cluster() {
	exts=$1 layer=$2
	shift 2
	for i in 1 2 3; do etcd_start $i; done
	etcd_up
	for i in 1 2 3 4; do node_start $i "$@"; done
	vdn 1 cluster init --replicas 3 --pgs 64 --out-after 3s >/dev/null || fail "cluster init"
	wait_for 20 "four nodes up" clean1
	sleep 1
	"$BUILD/kura-repcheck" load "$WORK/n1/store.sock" "$layer" "$exts" $((exts / 24 + 4)) \
		"$WORK/fill" >/dev/null || fail "filling the layer"
}
all_clean() {
	for i in $(seq 1 "$CLUSTER_NODES"); do status_of "$i" | grep -q '"clean":64' || return 1; done
}
# serving: sets SERVER to the node whose `vdisk list` answers (the one
# serving the vdisks), skipping node SKIP_NODE
SERVER=
serving() {
	for i in $(seq 1 "$CLUSTER_NODES"); do
		[ "$i" = "${SKIP_NODE:-}" ] && continue
		vdn "$i" list >/dev/null 2>&1 && { SERVER=$i; return 0; }
	done
	return 1
}
# etcd_leader_to I: etcd's leader moves to member sI
etcd_leader_to() {
	m=$(on 1 etcdctl --endpoints "$ETCD_URLS" member list 2>/dev/null | awk -F', ' -v n="s$1" '$3 == n { print $1 }')
	[ -n "$m" ] && on 1 etcdctl --endpoints "$ETCD_URLS" move-leader "$m" >/dev/null 2>&1
}

# resyncs I: how many times node I has caught up (resync) so far
resyncs() { grep -c "resync: node n$1 has every group it holds" "$WORK/n$1.log"; }
# back_up J I: node I is UP in node J's map and has caught up once more
# than when RESYNCS_BEFORE_I was taken (back_up_mark I)
back_up_mark() { eval "RESYNCS_BEFORE_$1=\$(resyncs $1)"; }
back_up() {
	[ "$(state_in "$1" "n$2")" = up ] || return 1
	eval "[ \"\$(resyncs $2)\" -gt \"\${RESYNCS_BEFORE_$2:-0}\" ]"
}
# resync_fig I FIELD: a figure of node I's last resync (status "resync")
resync_fig() { status_of "$1" | sed -n "s/.*\"resync\":{[^}]*\"$2\":\([0-9]*\).*/\1/p"; }
# peering_fig I FIELD: node I's peering figures (status "peering")
peering_fig() { status_of "$1" | sed -n "s/.*\"peering\":{[^}]*\"$2\":\([0-9]*\).*/\1/p"; }
# gaps_fig I: copies node I took after a missed one (their version not kept)
gaps_fig() { status_of "$1" | sed -n 's/.*"replica_copies_after_a_missed_one":\([0-9]*\).*/\1/p'; }
# served_fig I FIELD: what node I copied to others (status "resync_served")
served_fig() { status_of "$1" | sed -n "s/.*\"resync_served\":{[^}]*\"$2\":\([0-9]*\).*/\1/p"; }

# The aim: I/O resumes within 5 s. Sanitizer builds run several times
# slower and raise the bound (KURA_STALL_LIMIT_MS, .ci/run).
LIMIT=${KURA_STALL_LIMIT_MS:-5000}
# load_while TAG LAYER SECONDS ACTION...: writes through n1 for SECONDS,
# ACTION 3 s in; every write must succeed and read back, none wait LIMIT
# (or WAIT_LIMIT ms when set)
load_while() {
	tag=$1 layer=$2 secs=$3 lim=${WAIT_LIMIT:-$LIMIT}
	shift 3
	"$BUILD/kura-repcheck" load "$WORK/n1/store.sock" "$layer" 8 "$secs" "$WORK/$tag" \
		>"$WORK/$tag.out" 2>&1 &
	LP=$!
	sleep 3
	"$@"
	wait $LP || fail "writes during $tag: $(cat "$WORK/$tag.out")"
	cat "$WORK/$tag.out"
	max=$(sed -n 's/.*max_ms \([0-9]*\).*/\1/p' "$WORK/$tag")
	[ -n "$max" ] && [ "$max" -lt "$lim" ] || { diag; fail "a write waited ${max} ms (over $lim ms) during $tag"; }
}

# diag: what each node and etcd hold, for a failure's log
diag() {
	for i in $(seq 1 "$NHOSTS"); do
		echo "-- n$i status: $(status_of "$i" | head -c 700)"
		echo "-- n$i log:"; tail -n 8 "$WORK/n$i.log" 2>/dev/null
	done
	echo "-- etcd /kura/ keys: $(on 1 etcdctl --endpoints "$ETCD_URLS" get --prefix /kura/ --keys-only 2>&1 | tr '\n' ' ')"
	echo "-- etcd leases: $(on 1 etcdctl --endpoints "$ETCD_URLS" lease list 2>&1 | tr '\n' ' ')"
}
# wait_for SECONDS WHAT CMD...: polls CMD every 0.2 s until it succeeds;
# prints how long it took (ms) into $WAITED
wait_for() {
	limit=$1 what=$2; shift 2
	t0=$(date +%s%N)
	until "$@"; do
		[ $(( ($(date +%s%N) - t0) / 1000000 )) -lt $((limit * 1000)) ] || {
			diag
			fail "$what: not within ${limit} s"
		}
		sleep 0.2
	done
	WAITED=$(( ($(date +%s%N) - t0) / 1000000 ))
}
