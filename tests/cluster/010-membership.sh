#!/bin/sh
# Membership on three hosts (network namespaces) with a 3-member etcd:
# cluster init; nodes join up; a node killed with -9 goes down within the
# lease time and out after --out-after, and comes back up when restarted;
# the map leader killed: another node takes over; a node cut off (link
# down) fences itself (acknowledges no write) and is marked down, and
# rejoins when the link returns; an etcd member killed and restarted; a
# store of another cluster and an unreachable etcd are refused at start.
. "$(dirname "$0")/lib.sh"

hosts 3
for i in 1 2 3; do etcd_start $i; done
etcd_up
echo "ok: etcd cluster of 3 members up"

# etcd unreachable at start: one clear line, exit 1
out=$(on 1 "$BUILD/blockd" --data "$WORK/x" --disk "$WORK/x.img,size=64M" --iscsi off --cluster http://10.99.0.1:1 \
	--node x --listen 10.99.0.1:7401 2>&1); rc=$?
[ $rc -eq 1 ] || fail "blockd with an unreachable etcd: exit $rc: $out"
echo "$out" | grep -q "etcd at http://10.99.0.1:1 does not answer" || fail "unreachable etcd: $out"
echo "ok: unreachable etcd refused at start: $(echo "$out" | tail -n 1)"

for i in 1 2 3; do node_start $i; done
vdn 1 cluster status | grep -q "holds no cluster yet" || fail "status before init: $(vdn 1 cluster status 2>&1)"
expect_fail "init without --replicas" "give --replicas" vdn 1 cluster init
expect_fail "init --replicas 4" "--replicas 4: give a whole number from 1 to 3" vdn 1 cluster init --replicas 4
expect_fail "init --pgs 100" "give a power of two" vdn 1 cluster init --replicas 3 --pgs 100
vdn 1 cluster init --replicas 3 --pgs 64 --out-after 8s >"$WORK/init.out" || fail "cluster init: $(cat "$WORK/init.out")"
grep -q "^created cluster [0-9a-f-]\{36\}$" "$WORK/init.out" || fail "init said: $(cat "$WORK/init.out")"
expect_fail "second init" "already holds a cluster" vdn 2 cluster init --replicas 2

all_up() {
	for i in 1 2 3; do
		s=$(status_of "$i")
		for n in n1 n2 n3; do echo "$s" | grep -q "\"name\":\"$n\",[^}]*\"state\":\"up\"" || return 1; done
		echo "$s" | grep -q '"clean":64' || return 1
		echo "$s" | grep -q '"may_ack":true' || return 1
	done
}
wait_for 15 "three nodes up in every node's map" all_up
echo "ok: 3 nodes up, 64 groups clean, every node may acknowledge (${WAITED} ms after init)"
table_ok() {
	vdn 2 cluster status >"$WORK/st.txt" || fail "cluster status"
	grep -q "^n3 *up .*10.99.0.3:7400 *rack3 *238.0 MiB" "$WORK/st.txt"
}
wait_for 5 "n3 with its capacity in n2's status table" table_ok
id=$(sed 's/created cluster //' "$WORK/init.out")
[ "$(cat "$WORK/n2/cluster-id")" = "$id" ] || fail "n2 did not record the cluster id"

# kill -9 a node: down within the lease time, every group degraded (RF 3
# on 3 nodes), out after --out-after, then back up when restarted
node_kill 3
is_state() { [ "$(state_in "$1" "$2")" = "$3" ]; }
wait_for 8 "n3 down after kill -9" is_state 1 n3 down
echo "ok: n3 killed: down in n1's map after ${WAITED} ms"
status_of 1 | grep -q '"degraded":64' || fail "groups not degraded: $(status_of 1 | head -c 400)"
wait_for 15 "n3 out after --out-after 8s" is_state 2 n3 out
echo "ok: n3 out after a further ${WAITED} ms"
node_start 3
wait_for 15 "n3 back up" is_state 1 n3 up
wait_for 5 "every group clean again" sh -c "'$BUILD/vdisk' --socket '$WORK/n1/blockd.sock' cluster status --json | tr -d ' \n' | grep -q '\"clean\":64'"
echo "ok: n3 restarted: up and all groups clean after ${WAITED} ms"

# kill the map leader: another node takes over and marks it down
leader=$(status_of 1 | sed -n 's/.*"leader":"\(n[0-9]\)".*/\1/p')
[ -n "$leader" ] || fail "no leader: $(status_of 1 | head -c 300)"
li=${leader#n}
other=$((li % 3 + 1))
node_kill "$li"
wait_for 10 "$leader down after the leader was killed" is_state "$other" "$leader" down
newleader=$(status_of "$other" | sed -n 's/.*"leader":"\(n[0-9]\)".*/\1/p')
[ -n "$newleader" ] && [ "$newleader" != "$leader" ] || fail "leader is still '$newleader'"
echo "ok: leader $leader killed: $newleader leads, $leader down after ${WAITED} ms"
node_start "$li"
wait_for 15 "$leader back up" is_state "$other" "$leader" up

# cut a node off: it fences itself (no acknowledgements) and the others
# mark it down; link back: it rejoins
cut=$(( (li % 3) + 1 )); [ "$cut" = "$other" ] && cut=$(( (other % 3) + 1 ))
fenced() { status_of "$cut" | grep -q '"may_ack":false'; }
link_down "$cut"
wait_for 6 "n$cut fenced after its link went down" fenced
echo "ok: n$cut cut off: fenced itself after ${WAITED} ms"
wait_for 10 "n$cut down in n$other's map" is_state "$other" "n$cut" down
link_up "$cut"
unfenced() { status_of "$cut" | grep -q '"may_ack":true'; }
wait_for 20 "n$cut rejoined after the link returned" unfenced
back=$WAITED
wait_for 5 "n$cut up in n$other's map" is_state "$other" "n$cut" up
echo "ok: n$cut link back: up and acknowledging after $back ms"

# an etcd member killed and restarted: the cluster keeps working
etcd_kill 2
sleep 2
wait_for 10 "all up with one etcd member down" all_up
etcd_start 2
sleep 1
wait_for 10 "all up with etcd s2 back" all_up
echo "ok: etcd member s2 killed and restarted: every node stayed up"

# a store of another cluster is refused
node_stop 3
echo "00000000-0000-0000-0000-000000000000" >"$WORK/n3/cluster-id"
out=$(on 3 "$BUILD/blockd" --data "$WORK/n3" --iscsi off --cluster "$ETCD_URLS" --node n3 \
	--listen 10.99.0.3:7400 2>&1); rc=$?
[ $rc -eq 1 ] || fail "store of another cluster: exit $rc"
echo "$out" | grep -q "belongs to cluster 00000000-0000-0000-0000-000000000000, but etcd" ||
	fail "another cluster: $out"
echo "ok: a store of another cluster refused: $(echo "$out" | tail -n 1)"
echo "PASS"
