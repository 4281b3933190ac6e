#!/bin/sh
# Vdisks in the cluster: one node at a time (the vdisk service) serves the
# cluster's vdisks over iSCSI, their catalog in etcd and their blocks on
# the replicated layer. A vdisk is written through qemu-img over iSCSI,
# snapshotted, written again, cloned from the snapshot; then the serving
# node is killed with -9: another node takes the service, and through its
# portal the vdisk, its snapshot and the clone read back exactly what was
# written; a snapshot and a clone are deleted there and their space freed
# on every node.
. "$(dirname "$0")/lib.sh"
command -v qemu-img >/dev/null 2>&1 || skip "skip: qemu-img is not installed"

hosts 3
PORTALS=1
cluster_up 3 60s

wait_for 20 "a node serves the vdisks" serving
S=$SERVER
for i in 1 2 3; do
	[ "$i" = "$S" ] && continue
	msg=$(vdn "$i" list 2>&1) && fail "n$i answers vdisk list though n$S serves the vdisks"
	echo "$msg" | grep -q "node n$S serves the cluster's vdisks" ||
		fail "n$i's refusal does not name n$S: $msg"
done
echo "ok: n$S serves the cluster's vdisks; the others name it"

IQN=iqn.2026-11.io.kura:
url() { echo "iscsi://10.99.0.$1:3260/$IQN$2/0"; }
qimg() { on "$1" timeout -k 5 120 qemu-img "$2" "$3" "$4" "$5" "$6" "$7" "$8" "$9"; }

head -c 24M /dev/urandom > "$WORK/a.img"
head -c 40M /dev/zero >> "$WORK/a.img"
# a block the scrub below finds on the disks (4 MiB in: the same in b.img)
printf 'kura-scrub-mark-5d1e77' | dd of="$WORK/a.img" bs=4096 seek=1024 conv=notrunc 2>/dev/null
cp "$WORK/a.img" "$WORK/b.img"
head -c 8M /dev/urandom | dd of="$WORK/b.img" bs=1M seek=20 conv=notrunc 2>/dev/null
vdn $S create vm1 64M >/dev/null || fail "create vm1"
on $S timeout -k 5 120 qemu-img convert -n -f raw -O raw "$WORK/a.img" "$(url $S vm1)" ||
	fail "qemu-img convert onto vm1"
vdn $S snapshot vm1 s1 >/dev/null || fail "snapshot vm1@s1"
on $S timeout -k 5 120 qemu-img convert -n -f raw -O raw "$WORK/b.img" "$(url $S vm1)" ||
	fail "qemu-img convert onto vm1 after the snapshot"
vdn $S clone vm1@s1 c1 >/dev/null || fail "clone vm1@s1 c1"
vdn $S snapshot vm1 s2 >/dev/null || fail "snapshot vm1@s2"
check_all() {
	on "$1" timeout -k 5 120 qemu-img compare -f raw -F raw "$WORK/b.img" "$(url "$1" vm1)" ||
		fail "vm1 through n$1 differs from what was written"
	on "$1" timeout -k 5 120 qemu-img compare -f raw -F raw "$WORK/a.img" "$(url "$1" c1)" ||
		fail "clone c1 through n$1 differs from the snapshot's data"
}
check_all $S
echo "ok: vm1 written over iSCSI, snapshot s1, written again, clone c1 of s1: both read back"
vdn $S scrub vm1 --wait >"$WORK/scrub.out" 2>&1 || fail "scrub of vm1: $(cat "$WORK/scrub.out")"
grep -q "^scrub of vm1 done: .* read and checked in .*; every block read back as written$" \
	"$WORK/scrub.out" || fail "scrub of vm1 said: $(cat "$WORK/scrub.out")"
echo "ok: $(cat "$WORK/scrub.out")"
# bit rot on a copy the serving node does not read (another node's): the
# scrub compares every copy, finds it and has it written again; the next
# scrub finds every copy alike
R=$((S % 3 + 1))
checkpointed() { "$BUILD/kura-repcheck" stats "$WORK/n$R/store.sock" | grep -q '"journal_used":0,'; }
wait_for 20 "n$R's journal checkpointed" checkpointed
hits=$(grep -obUa "kura-scrub-mark-5d1e77" "$WORK/n$R/disk.img" | cut -d: -f1)
[ -n "$hits" ] || fail "the scrub mark is not on n$R's disk"
for off in $hits; do
	printf 'X' | dd of="$WORK/n$R/disk.img" bs=1 seek=$((off + 100)) conv=notrunc,fsync 2>/dev/null
done
vdn $S scrub vm1 --wait >"$WORK/scrub.out" 2>&1 || fail "scrub of vm1 after the rot: $(cat "$WORK/scrub.out")"
grep -q "^[0-9]* blocks* had a copy that did not read or differed: written again on every copy$" \
	"$WORK/scrub.out" || fail "the scrub did not repair n$R's copy: $(cat "$WORK/scrub.out")"
grep -q "scrub of vm1: a copy (on n$R) of the" "$WORK/n$S.log" || fail "n$S did not log n$R's copy"
vdn $S scrub vm1 --wait >"$WORK/scrub2.out" 2>&1 || fail "scrub of vm1 again: $(cat "$WORK/scrub2.out")"
grep -q "written again" "$WORK/scrub2.out" && fail "copies still differ after the repair: $(cat "$WORK/scrub2.out")"
check_all $S
echo "ok: rot on n$R's copy ($(echo $hits | wc -w) places on its disk): $(tail -n 1 "$WORK/scrub.out"); scrubbed again, every copy alike"
# RF 3 on three nodes: the serving node holds a copy of everything, and
# reads it from its own disks
reads_of() { status_of "$1" | sed -n 's/.*"vdisk_reads":{"local":\([0-9]*\),"remote":\([0-9]*\).*/\1 \2/p'; }
set -- $(reads_of $S)
[ "${1:-0}" -gt 0 ] || fail "n$S read nothing from its own copies (local ${1:-?}, remote ${2:-?})"
echo "ok: n$S read $1 pieces from its own copies, $2 from other nodes"

# the serving node is killed: another takes over
SKIP_NODE=$S
node_kill $S
cut0=$(date +%s%N)
wait_for 30 "another node serves the vdisks after n$S was killed" serving
took=$(( ($(date +%s%N) - cut0) / 1000000 ))
S2=$SERVER
echo "ok: n$S killed -9; n$S2 serves the vdisks ${took} ms later"
check_all $S2
vdn $S2 list | grep -q vm1 || fail "vm1 missing from the list on n$S2"
set -- $(reads_of $S2)
[ "${1:-0}" -gt 0 ] || fail "n$S2 read nothing from its own copies (local ${1:-?}, remote ${2:-?})"
echo "ok: n$S2 read $1 pieces from its own copies, $2 from other nodes"
echo "ok: through n$S2, vm1 and the clone of its snapshot read back what was written"

# deletes: the clone, then the snapshot it came from; their blocks freed
vdn $S2 delete c1 >/dev/null || fail "delete c1 on n$S2"
vdn $S2 delete vm1@s1 >/dev/null || fail "delete vm1@s1 on n$S2"
idle() { vdn $S2 jobs 2>/dev/null | grep -q running && return 1; return 0; }
wait_for 30 "delete jobs done" idle
check_all_vm1() {
	on "$1" timeout -k 5 120 qemu-img compare -f raw -F raw "$WORK/b.img" "$(url "$1" vm1)" ||
		fail "vm1 through n$1 differs after the deletes"
}
check_all_vm1 $S2
vdn $S2 list
echo "ok: clone and snapshot deleted on n$S2, vm1 unchanged"

# The serving node cut off (link down) while it writes: it stops serving
# before its lease lapses, another node takes over and vm1 is written
# there; when the link is back, what the cut-off node still had in flight
# is refused (the map names the new serving node), so vm1 holds exactly
# what was written through the new one.
node_start $S # the node killed above, back
back_in() { [ "$(state_in $S2 n$S)" = up ]; }
wait_for 30 "n$S up again" back_in
head -c 64M /dev/urandom > "$WORK/c.img"
head -c 64M /dev/urandom > "$WORK/d.img"
# a writer through n$S2 that goes on until the cut stops it
(while on $S2 timeout -k 5 60 qemu-img convert -n -f raw -O raw "$WORK/d.img" "$(url $S2 vm1)"; do
	:; done) >"$WORK/d.log" 2>&1 &
WRITER=$!
sleep 1.5
link_down $S2
cut0=$(date +%s%N)
SKIP_NODE=$S2
wait_for 30 "another node serves the vdisks after n$S2 was cut off" serving
took=$(( ($(date +%s%N) - cut0) / 1000000 ))
# the writer's initiator retries the portal it knew: stop it
pkill -f "$WORK/d.img" 2>/dev/null
wait "$WRITER"
S3=$SERVER
echo "ok: n$S2 cut off during writes; n$S3 serves the vdisks ${took} ms later"
grep -q "n$S2 has no confirmed lease: it stops serving" "$WORK/n$S2.log" ||
	fail "n$S2 did not stop serving when its lease went unconfirmed"
# (etcd lost a member with that host: a node whose lease renewal stalls
# meanwhile stops serving and serves again; an initiator logs in again)
n=0
until on $S3 timeout -k 5 120 qemu-img convert -n -f raw -O raw "$WORK/c.img" "$(url $S3 vm1)"; do
	n=$((n + 1))
	[ $n -lt 3 ] || fail "qemu-img convert onto vm1 through n$S3"
	wait_for 20 "a node serves the vdisks" serving
	S3=$SERVER
done
link_up $S2
back2() { [ "$(state_in $S3 n$S2)" = up ]; }
wait_for 30 "n$S2 up again after its link is back" back2
sleep 2 # what n$S2 still had in flight is sent again, and refused
on $S3 timeout -k 5 120 qemu-img compare -f raw -F raw "$WORK/c.img" "$(url $S3 vm1)" ||
	fail "vm1 differs from what was written through n$S3: a late write of n$S2 landed"
refused=0
for i in 1 2 3; do
	r=$(status_of $i | sed -n 's/.*"stale_vdisk_writes_refused":\([0-9]*\).*/\1/p')
	refused=$((refused + ${r:-0}))
done
echo "ok: after n$S2's link is back, vm1 holds what n$S3 wrote ($refused late writes of n$S2 refused)"
