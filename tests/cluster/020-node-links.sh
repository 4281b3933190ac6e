#!/bin/sh
# Node-to-node links: two nodes of one cluster; a link must open with a
# HELLO of the same cluster (another cluster's node is refused with EXDEV),
# every field of the hello is checked, requests before it, a second hello,
# a wrong-size hello and garbage close that link only, the node keeps
# serving; a node that is not a group's primary may not change this node's
# copy (writes, copies, frees refused), reads are served (kura-peercheck, run from
# the other host). SYNC: one of the wrong size closes its link (logged); one
# breaking a field rule (count, reserved, group, range, order, extent
# number, an entry of another group) is answered EINVAL and the link goes
# on; a well-formed one from a node not in the map is answered EREMOTE and
# writes nothing. A node whose store belongs to another cluster cannot even
# start (010-membership).
. "$(dirname "$0")/lib.sh"

hosts 3
for i in 1 2 3; do etcd_start $i; done
etcd_up
node_start 1
node_start 2
id=$(vdn 1 cluster init --replicas 2 --pgs 16 | sed -n 's/^created cluster //p')
[ ${#id} = 36 ] || fail "cluster init gave no id"
in_map() { status_of 1 | grep -q '"initialized":true'; }
wait_for 10 "n1 holding the map" in_map
on 2 "$BUILD/kura-peercheck" 10.99.0.1:7400 "$id" || { tail -n 30 "$WORK/n1.log"; fail "node link checks"; }
grep -q "node link .* refused: node intruder belongs to cluster 11111111-2222-3333-4444-555555555555" "$WORK/n1.log" ||
	fail "the refusal of another cluster's node is not logged: $(grep refused "$WORK/n1.log")"
grep -q "closed: the first request on a node link must be hello" "$WORK/n1.log" || fail "request before hello not logged"
[ "$(grep -c "closed: sync of the wrong size" "$WORK/n1.log")" -ge 3 ] ||
	fail "the syncs of the wrong size are not logged: $(grep -c "sync of the wrong size" "$WORK/n1.log")"
kill -0 "$NODE1" || fail "n1 died"
vdn 1 cluster status >/dev/null || fail "n1 does not answer after the checks"
echo "ok: n1 logged the refusals and still serves"
echo "PASS"
