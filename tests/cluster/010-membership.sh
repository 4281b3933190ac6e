#!/bin/sh
# Membership on three hosts (network namespaces) with a 3-member etcd:
# cluster init; nodes join up; a node cut off (link down) fences itself
# (acknowledges no write) and is marked down, and registers again as
# recovering when the link returns, then catches up and is up; the map
# leader killed: another node takes over, the restarted one recovers; a
# node killed with -9 goes down within the lease time and out after
# --out-after, and recovers when restarted; an etcd member killed and
# restarted; watches on an etcd member gone silent set up again; a store of another
# cluster and an unreachable etcd are refused at start.
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
# every node follows the map, leader and vdisk-service keys by etcd watch
watching() { for i in 1 2 3; do status_of "$i" | grep -q '"etcd_watches":3' || return 1; done; }
wait_for 10 "every node watching its three keys" watching
echo "ok: every node follows the map, leader and vdisk-service keys by etcd watch"
# the leader follows the registrations by watch; the others do not watch them
regs_watched() {
	rl=$(status_of 1 | sed -n 's/.*"leader":"\([^"]*\)".*/\1/p')
	[ -n "$rl" ] || return 1
	for i in 1 2 3; do
		if [ "n$i" = "$rl" ]; then
			status_of "$i" | grep -q '"registrations_watched":true' || return 1
		else
			status_of "$i" | grep -q '"registrations_watched":false' || return 1
		fi
	done
}
wait_for 10 "the leader watching the registrations" regs_watched
echo "ok: the leader ($rl) follows the registrations by etcd watch, the others do not"
table_ok() {
	vdn 2 cluster status >"$WORK/st.txt" || fail "cluster status"
	grep -q "^n3 *up .*10.99.0.3:7400 *rack3 *238.0 MiB" "$WORK/st.txt"
}
wait_for 5 "n3 with its capacity in n2's status table" table_ok
id=$(sed 's/created cluster //' "$WORK/init.out")
[ "$(cat "$WORK/n2/cluster-id")" = "$id" ] || fail "n2 did not record the cluster id"

is_state() { [ "$(state_in "$1" "$2")" = "$3" ]; }
may_ack() { status_of "$1" | grep -q "\"may_ack\":$2"; }

# cut n3 off: it fences itself (no acknowledgements) and the others mark it
# down; link back: it registers again as recovering (it may have missed
# writes: nobody's primary, no acknowledgements), catches up (resync) and
# is marked up again
link_down 3
wait_for 6 "n3 fenced after its link went down" may_ack 3 false
echo "ok: n3 cut off: fenced itself after ${WAITED} ms"
wait_for 10 "n3 down in n1's map" is_state 1 n3 down
status_of 1 | grep -q '"degraded":64' || fail "groups not degraded: $(status_of 1 | head -c 400)"
echo "ok: n3 down in n1's map after a further ${WAITED} ms; every group degraded"
back_up_mark 3
link_up 3
wait_for 20 "n3 up again after its link returned" back_up 1 3
echo "ok: n3 link back: recovering, brought up to date, up again after ${WAITED} ms"

# kill the map leader (n1 or n2): the other takes over and marks it down;
# restarted, it is recovering
leader=$(status_of 1 | sed -n 's/.*"leader":"\(n[0-9]\)".*/\1/p')
case "$leader" in n1) other=2 ;; n2) other=1 ;; *) fail "leader is '$leader', not n1 or n2" ;; esac
li=${leader#n}
node_kill "$li"
wait_for 10 "$leader down after the leader was killed" is_state "$other" "$leader" down
newleader=$(status_of "$other" | sed -n 's/.*"leader":"\(n[0-9]\)".*/\1/p')
[ -n "$newleader" ] && [ "$newleader" != "$leader" ] || fail "leader is still '$newleader'"
echo "ok: leader $leader killed: $newleader leads, $leader down after ${WAITED} ms"
back_up_mark "$li"
node_start "$li"
wait_for 15 "$leader up again after its restart" back_up "$other" "$li"
echo "ok: $leader restarted: recovering, then up after ${WAITED} ms"
wait_for 10 "the new leader watching the registrations" regs_watched
[ "$rl" = "$newleader" ] || fail "leader is '$rl', not $newleader"
echo "ok: the new leader $rl follows the registrations by etcd watch, $leader no longer does"

# kill -9 n3: down, then out after --out-after; restarted: recovering
node_kill 3
wait_for 8 "n3 down after kill -9" is_state "$other" n3 down
echo "ok: n3 killed: down after ${WAITED} ms"
wait_for 15 "n3 out after --out-after 8s" is_state "$other" n3 out
echo "ok: n3 out after a further ${WAITED} ms"
back_up_mark 3
node_start 3
wait_for 15 "n3 up again after its restart" back_up "$other" 3
echo "ok: n3 restarted: recovering, then up after ${WAITED} ms"

# an etcd member killed and restarted: the cluster keeps working
registered() {
	for i in 1 2 3; do
		[ "$(status_of "$other" | grep -o "\"name\":\"n$i\",[^}]*\"registered\":true" | head -c 1)" ] || return 1
	done
	may_ack "$other" true
}
etcd_kill 2
sleep 2
wait_for 10 "all registered with one etcd member down" registered
etcd_start 2
sleep 1
wait_for 10 "all registered with etcd s2 back" registered
# (a watch on s2 broke and was set up again, on another member or on s2)
wait_for 10 "every node watching its three keys again" watching
echo "ok: etcd member s2 killed and restarted: every node stayed registered and watching, n$other acknowledging"

# etcd s1 goes silent for a node that does not lead (nftables drops what
# s1 sends it): its watches, on s1 (first in its list, never failed),
# hear nothing, as on a cut cable (TCP notices after half a minute); n3
# leaves: the node's timed read finds the new map, the map's watch has
# still said nothing a tick later, and the node sets that watch up again,
# on a member that answers
leader=$(status_of 1 | sed -n 's/.*"leader":"\(n[0-9]\)".*/\1/p')
case "$leader" in n1) w=2 ;; n2) w=1 ;; *) fail "leader is '$leader', not n1 or n2" ;; esac
on $w nft add table inet kwatch
on $w nft add chain inet kwatch in '{ type filter hook input priority 0; }'
on $w nft add rule inet kwatch in ip saddr 10.99.0.1 tcp sport 2379 drop
node_stop 3
wait_for 10 "n3 down in n$w's map, n$w's watches silent" is_state $w n3 down
rewatched() { grep -q "a change of /kura/map came without its etcd watch" "$WORK/n$w.log"; }
wait_for 10 "n$w watching the map again after its watch went silent" rewatched
on $w nft delete table inet kwatch
echo "ok: n$w's etcd watches silent: n3's leaving still reached it (timed read), and it set the map's watch up again"

# a store of another cluster is refused
echo "00000000-0000-0000-0000-000000000000" >"$WORK/n3/cluster-id"
out=$(on 3 "$BUILD/blockd" --data "$WORK/n3" --iscsi off --cluster "$ETCD_URLS" --node n3 \
	--listen 10.99.0.3:7400 2>&1); rc=$?
[ $rc -eq 1 ] || fail "store of another cluster: exit $rc"
echo "$out" | grep -q "belongs to cluster 00000000-0000-0000-0000-000000000000, but etcd" ||
	fail "another cluster: $out"
echo "ok: a store of another cluster refused: $(echo "$out" | tail -n 1)"
echo "PASS"
