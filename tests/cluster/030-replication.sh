#!/bin/sh
# Replicated writes on three hosts, RF 3: a client writes through n1's store
# socket (the cluster's block API on that node); every extent lands on all
# three nodes with the same version and data (compared over node links).
# Then n3 is killed with -9 while the client writes: writes stall while the
# map catches up and go on (no error, under 5 s), and every acknowledged
# write reads back; n1 and n2 hold identical copies of everything. Then n2
# is cut off (link down) during writes: the same, and it comes back as
# recovering, catches up (resync: only the extents that changed move) and
# is up again, identical to n1; what it held for n1 from the cut's time
# never lands over writes acknowledged since. Then etcd is lost altogether for 3 s:
# writes wait, none fail. Last, n3 restarts during writes to extents it
# holds old copies of: it catches up meanwhile, and all three copies of
# everything are identical.
. "$(dirname "$0")/lib.sh"

LAYER=0x7e57000001 # far above the ids vdisks use
hosts 3
# n1 asks host 2's etcd member first: when host 2 is cut below, n1's
# requests to it hang, and n1 must move to another member before its lease
# lapses (the cut must not fence the one node left)
ETCD_URLS1="http://10.99.0.2:2379,http://10.99.0.1:2379,http://10.99.0.3:2379"
cluster_up 3 10m

"$BUILD/kura-repcheck" load "$WORK/n1/store.sock" $LAYER 8 4 "$WORK/load1" ||
	fail "writes through n1 did not read back"
echo "ok: RF 3 through n1: $(cat "$WORK/load1")"
on 1 "$BUILD/kura-repcheck" replicas "$id" $LAYER 8 3 10.99.0.1:7400 10.99.0.2:7400 10.99.0.3:7400 ||
	fail "replicas differ"
# every node up: each copy follows the version its replica holds (a copy
# after a missed one is for a node catching up only)
for i in 1 2 3; do
	[ "$(gaps_fig $i)" = 0 ] || fail "n$i took $(gaps_fig $i) copies after missed ones while all were up"
done
echo "ok: no copy after a missed one while every node was up"

peered0=$(( $(peering_fig 1 members_compared) + $(peering_fig 2 members_compared) ))
load_while kill9 $LAYER 12 node_kill 3
echo "ok: n3 killed -9 during writes: no write failed, the longest waited ${max} ms"
# the groups n3 led have new primaries, which compared them with the other
# member before taking writes (peering)
peered=$(( $(peering_fig 1 members_compared) + $(peering_fig 2 members_compared) - peered0 ))
[ "$peered" -gt 0 ] || fail "no group was peered after n3 was lost"
echo "ok: new primaries peered $peered groups with their other member"
on 1 "$BUILD/kura-repcheck" replicas "$id" $LAYER 8 2 10.99.0.1:7400 10.99.0.2:7400 ||
	fail "n1 and n2 differ after n3 was lost"

# cut n2 off during writes (n3 still down): n2 fences itself, writes wait
# until the map marks it down, then go on with n1 alone; its link back, n2
# registers as recovering and is nobody's primary: every acknowledged
# write still reads back
L2=0x7e57000003
# etcd's leader stays on host 1: a cut etcd leader costs etcd an election
# and gives every lease its full time again (about 2 s more; docs/cluster.md)
etcd_leader_to 1
cut_n2() { link_down 2; sleep 5; link_up 2; }
back_up_mark 2
load_while cut $L2 9 cut_n2
echo "ok: n2 cut off for 5 s during writes: no write failed, the longest waited ${max} ms"
wait_for 20 "n2 up again after its link returned" back_up 1 2
# the writes ended about when n2's link came back, before n2 learnt that
# the cluster had moved on: a write n2 held for n1 from the cut's time
# must not land now (n1 sent it again itself, long ago, and wrote the
# blocks again since)
"$BUILD/kura-repcheck" verify "$WORK/n1/store.sock" $L2 8 "$WORK/cut" ||
	fail "after n2's return, a block of L2 no longer holds what was acknowledged last"
echo "ok: after n2's return every block still holds the write acknowledged last"
# what n2 caught up on: only extents of L2 (8) changed while it was away
copied=$(resync_fig 2 extents_copied) bytes=$(resync_fig 2 bytes_copied)
[ -n "$copied" ] && [ "$copied" -ge 1 ] && [ "$copied" -le 8 ] && [ "$bytes" -le $((copied << 20)) ] ||
	fail "n2's resync copied ${copied:-?} extents (${bytes:-?} bytes); 1 to 8 changed"
echo "ok: n2 back: recovering, caught up ($copied extents, $bytes bytes copied; it held 16, 8 changed), up again"
on 1 "$BUILD/kura-repcheck" replicas "$id" $L2 8 2 10.99.0.1:7400 10.99.0.2:7400 &&
	on 1 "$BUILD/kura-repcheck" replicas "$id" $LAYER 8 2 10.99.0.1:7400 10.99.0.2:7400 ||
	fail "n1 and n2 differ after n2's resync"
echo "ok: n1 and n2 identical after the resync"

# etcd lost altogether for 3 s during writes: n1 cannot renew its lease,
# fences itself and holds its answers; etcd back (it gives leases their
# full time again), n1 acknowledges what it held: none failed, all read back
etcd_outage() {
	for i in 1 2 3; do etcd_kill $i; done
	sleep 3
	for i in 1 2 3; do etcd_start $i; done
	etcd_up
}
L4=0x7e57000004
WAIT_LIMIT=30000 load_while etcd $L4 12 etcd_outage
echo "ok: every etcd member down for 3 s during writes: no write failed, the longest waited ${max} ms"

# sparse extents while n3 is away: three blocks here and there in each of
# 8 extents (a copy must carry every run of blocks, not the first only)
L5=0x7e57000005
for seed in 1 2 3; do
	"$BUILD/kura-repcheck" touch "$WORK/n1/store.sock" $L5 0 8 $seed || fail "sparse writes"
done
# n3, killed long ago, restarted while writes go to extents it holds old
# copies of: it catches up (what it missed of four layers) while the
# writes go on, is marked up, and all three copies are identical
back_up_mark 3
load_while resync $LAYER 10 node_start 3
echo "ok: n3 restarted during writes: no write failed, the longest waited ${max} ms"
wait_for 30 "n3 up again after its resync" back_up 1 3
copied=$(resync_fig 3 extents_copied) bytes=$(resync_fig 3 bytes_copied)
[ -n "$copied" ] && [ "$copied" -ge 1 ] && [ "$copied" -le 32 ] ||
	fail "n3's resync copied ${copied:-?} extents; 1 to 32 changed"
echo "ok: n3 caught up: $copied extents, $bytes bytes copied (of 32 extents it lacked or held old); $(gaps_fig 3) copies it took after missed ones kept their old versions"
for l in $LAYER $L2 $L4 $L5; do
	on 1 "$BUILD/kura-repcheck" replicas "$id" $l 8 3 10.99.0.1:7400 10.99.0.2:7400 \
		10.99.0.3:7400 || fail "the three copies of layer $l differ after n3's resync"
done
echo "ok: every extent of four layers (one sparse) on all three nodes: same version, same data"

# n2 away (down in the map) while one 4 KiB block of each of 8 extents of
# L2 changes: back, it receives only the blocks it missed, written over
# the copies it kept (the primaries noted them: replication/missed.c)
back_up_mark 2
deltas0=$(( $(served_fig 1 extents_copied_missed_blocks) + $(served_fig 3 extents_copied_missed_blocks) ))
link_down 2
down2() { [ "$(state_in 1 n2)" = down ]; }
wait_for 15 "n2 down" down2
"$BUILD/kura-repcheck" touch "$WORK/n1/store.sock" $L2 0 8 4 || fail "writes while n2 was away"
link_up 2
wait_for 30 "n2 up again after its link returned" back_up 1 2
copied=$(resync_fig 2 extents_copied) bytes=$(resync_fig 2 bytes_copied)
deltas=$(( $(served_fig 1 extents_copied_missed_blocks) + $(served_fig 3 extents_copied_missed_blocks) - deltas0 ))
# (an extent of an earlier phase may still move whole beside them)
[ "$deltas" -eq 8 ] && [ "$bytes" -le $(( (copied - 8) * 1048576 + 8 * 4096 )) ] ||
	fail "n2's resync copied ${copied:-?} extents (${bytes:-?} bytes), ${deltas} as missed blocks: one 4 KiB block of 8 extents changed"
on 1 "$BUILD/kura-repcheck" replicas "$id" $L2 8 3 10.99.0.1:7400 10.99.0.2:7400 \
	10.99.0.3:7400 || fail "the copies of layer $L2 differ after n2's resync of missed blocks"
echo "ok: n2 back after missing one block of 8 extents: those 8 sent as the blocks it missed ($copied extents, $bytes bytes in all), all three copies identical"
echo "PASS"
