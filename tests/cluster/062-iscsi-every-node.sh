#!/bin/sh
# Every node's iSCSI portal serves every vdisk: a node that does not serve
# the vdisks forwards its sessions' commands to the one that does, so a
# hypervisor logs in to its own node. Through one forwarding portal a vdisk
# is written with qemu-img and read back through the other forwarding
# portal and the serving node's; discovery there lists it; an ACL set on
# the serving node refuses an initiator at a forwarding portal, and so
# does its CHAP secret; a snapshot is read-only there; malformed
# forwarded messages are refused and change nothing; libiscsi's
# conformance suites pass through a forwarding portal, and its
# multipath tests with one path through each forwarding portal. Then the
# serving node is killed with -9 while a writer goes through a forwarding
# portal: the writer's sessions log in again, no write fails, and once
# another node serves the vdisks everything reads back.
. "$(dirname "$0")/lib.sh"
command -v qemu-img >/dev/null 2>&1 || skip "skip: qemu-img is not installed"
command -v iscsi-test-cu >/dev/null 2>&1 || skip "skip: libiscsi's tools are not installed"

hosts 3
PORTALS=1
cluster_up 3 60s
wait_for 20 "a node serves the vdisks" serving
S=$SERVER
A= B=
for i in 1 2 3; do
	[ "$i" = "$S" ] && continue
	if [ -z "$A" ]; then A=$i; else B=$i; fi
done
IQN=iqn.2026-11.io.kura:
url() { echo "iscsi://10.99.0.$1:3260/$IQN$2/0"; }

head -c 24M /dev/urandom > "$WORK/a.img"
head -c 40M /dev/zero >> "$WORK/a.img"
vdn $S create vm1 64M >/dev/null || fail "create vm1"
on $A timeout -k 5 120 qemu-img convert -n -f raw -O raw "$WORK/a.img" "$(url $A vm1)" ||
	fail "qemu-img convert onto vm1 through n$A's forwarding portal"
for i in $B $S; do
	on $i timeout -k 5 120 qemu-img compare -f raw -F raw "$WORK/a.img" "$(url $i vm1)" ||
		fail "vm1 through n$i differs from what was written through n$A"
done
echo "ok: n$S serves the vdisks; vm1 written through n$A's portal reads back through n$B's and n$S's"

# forwarded messages are checked field by field (kura-fwdcheck, as a
# broken or hostile node); a node that does not serve the vdisks refuses them
on $A "$BUILD/kura-fwdcheck" "10.99.0.$S:7400" "$id" vm1 > "$WORK/fwdcheck.log" 2>&1 ||
	{ cat "$WORK/fwdcheck.log"; fail "forwarded message checks against n$S"; }
on $A "$BUILD/kura-fwdcheck" "10.99.0.$B:7400" "$id" --not-serving >> "$WORK/fwdcheck.log" 2>&1 ||
	{ cat "$WORK/fwdcheck.log"; fail "forwarded message checks against n$B"; }
kill -0 "$(eval echo \$NODE$S)" || fail "n$S died during the forwarded message checks"
echo "ok: $(grep -c '^ok' "$WORK/fwdcheck.log") checks of forwarded messages; n$S still serves"

# discovery through a forwarding portal
found=$(on $B timeout -k 5 30 iscsi-ls -s "iscsi://10.99.0.$B:3260" 2>&1)
echo "$found" | grep -q "Target:${IQN}vm1 Portal:10.99.0.$B:3260" ||
	fail "discovery through n$B does not list vm1 at n$B's portal: $found"
echo "ok: discovery through n$B lists vm1 at n$B's portal"

# an ACL set on the serving node holds at every portal
vdn $S iscsi acl vm1 add iqn.2026-11.test:allowed >/dev/null || fail "acl add"
on $A timeout -k 5 30 iscsi-inq -i iqn.2026-11.test:other "$(url $A vm1)" >/dev/null 2>&1 &&
	fail "an initiator not on vm1's ACL logged in through n$A"
on $A timeout -k 5 30 iscsi-inq -i iqn.2026-11.test:allowed "$(url $A vm1)" >/dev/null ||
	fail "the initiator on vm1's ACL cannot log in through n$A"
grep -q "iqn.2026-11.test:other.*not on the target's ACL" "$WORK/n$A.log" ||
	fail "n$A did not log the refused login"
vdn $S iscsi acl vm1 remove iqn.2026-11.test:allowed >/dev/null || fail "acl remove"
echo "ok: vm1's ACL, set on n$S, refuses an initiator at n$A's portal"

# CHAP set on the serving node: the forwarding portal checks the secret
SECRET=secret123456789
vdn $S iscsi chap vm1 alice $SECRET >/dev/null || fail "chap set"
chap_url() { echo "iscsi://$1@10.99.0.$A:3260/${IQN}vm1/0"; }
on $A timeout -k 5 30 iscsi-inq "$(url $A vm1)" >/dev/null 2>&1 &&
	fail "a login without CHAP got in through n$A"
on $A timeout -k 5 30 iscsi-inq "$(chap_url alice%wrongsecret999)" >/dev/null 2>&1 &&
	fail "a wrong CHAP secret got in through n$A"
on $A timeout -k 5 30 iscsi-inq "$(chap_url alice%$SECRET)" >/dev/null ||
	fail "the right CHAP secret cannot log in through n$A"
vdn $S iscsi chap vm1 --clear >/dev/null || fail "chap clear"
echo "ok: vm1's CHAP secret, set on n$S, is checked at n$A's portal"

# The whole conformance suite through a forwarding portal, and the
# multipath tests with one path through each forwarding portal (SCSI state
# is one across the portals: reservations, COMPARE AND WRITE, resets)
. "$ROOT/tests/integration/iscsi-lib.sh"
cu() {
	n=$1 secs=$2; shift 2
	on $A timeout -k 5 "$secs" iscsi-test-cu -d "$@" >"$WORK/$n.log" 2>&1
	RC=$?
	cu_count "$WORK/$n.log" >"$WORK/$n.count"
	[ $RC -eq 0 ] && [ "$(cu_total "$WORK/$n.count" fail)" -eq 0 ] &&
		[ "$(cu_total "$WORK/$n.count" pass)" -gt 0 ] ||
		fail "$n (exit $RC): $(grep '^pass ' "$WORK/$n.count") $(grep '^FAIL' "$WORK/$n.count" | cut -c6- | tr '\n' ' ')"
}
vdn $S create lun1 128M >/dev/null || fail "create lun1"
# (the whole suite takes about 150 s here, most of it replicated writes:
# KURA_FULL_SUITE=1 runs it; by default, the suites that exercise what
# forwarding carries: data both ways, ATS, XCOPY, reservations, task
# management, residuals, thin provisioning)
SUITES=ALL WHICH=ALL
[ -n "${KURA_FULL_SUITE:-}" ] || WHICH="(20 suites)"
[ -n "${KURA_FULL_SUITE:-}" ] ||
	SUITES=$(echo ALL.CompareAndWrite ALL.ExtendedCopy ALL.ReceiveCopyResults ALL.Inquiry \
		ALL.ReadCapacity16 ALL.Read16 ALL.Write16 ALL.WriteVerify16 ALL.Unmap \
		ALL.GetLBAStatus ALL.PrinReadKeys ALL.ProutRegister ALL.ProutReserve \
		ALL.ProutClear ALL.ProutPreempt ALL.Reserve6 ALL.iSCSITMF ALL.iSCSIResiduals \
		ALL.ModeSense6 ALL.TestUnitReady | tr ' ' ',')
cu all 300 -t "$SUITES" "$(url $A lun1)"
# on a vdisk of its own: MultipathIO.CompareAndWrite zeroes blocks 0-255
# and then expects zeros at block 256 too, which the suites above wrote
vdn $S create mp1 64M >/dev/null || fail "create mp1"
cu mp 120 -t SCSI.MultipathIO "$(url $A mp1)" "$(url $B mp1)"
echo "ok: iscsi-test-cu $WHICH through n$A's forwarding portal: $(grep '^pass ' "$WORK/all.count")"
echo "ok: SCSI.MultipathIO, one path through n$A and one through n$B: $(grep '^pass ' "$WORK/mp.count")"

# a snapshot through a forwarding portal is read-only there too
vdn $S snapshot vm1 s1 >/dev/null || fail "snapshot vm1@s1"
cu ro 120 -t SCSI.ReadOnly "$(url $A vm1:s1)"
on $A timeout -k 5 120 qemu-img compare -f raw -F raw "$WORK/a.img" "$(url $A vm1:s1)" ||
	fail "vm1@s1 through n$A differs from vm1's data"
echo "ok: vm1@s1 through n$A is write protected (SCSI.ReadOnly: $(grep '^pass ' "$WORK/ro.count")) and reads vm1's data"

# The serving node killed while writers go through both forwarding
# portals (whichever of them takes the service, the other still forwards,
# now to it): the portals stay up, the writers' sessions log in again, and
# once another node serves the vdisks the writes go on: none fails. Before
# the kill, the serving node's `vdisk iscsi show` lists the session that
# came through another node's portal. The writers are held to 16 MiB/s
# (64 MiB: about 4 s), so that on a fast disk they still run when the
# node is killed.
vdn $S create vm2 64M >/dev/null || fail "create vm2"
head -c 64M /dev/urandom > "$WORK/c.img"
head -c 64M /dev/urandom > "$WORK/d.img"
on $A timeout -k 5 180 qemu-img convert -n -r 16M -f raw -O raw "$WORK/c.img" "$(url $A vm1)" \
	>"$WORK/writer1.log" 2>&1 &
W1=$!
on $B timeout -k 5 180 qemu-img convert -n -r 16M -f raw -O raw "$WORK/d.img" "$(url $B vm2)" \
	>"$WORK/writer2.log" 2>&1 &
W2=$!
# the serving node lists the sessions that came through other portals
listed() {
	vdn $S iscsi show vm1 > "$WORK/show.txt" 2>&1 && grep -q "through node n$A" "$WORK/show.txt"
}
wait_for 10 "vdisk iscsi show on n$S lists the session through n$A" listed
kill -0 "$W1" 2>/dev/null && kill -0 "$W2" 2>/dev/null ||
	fail "a writer ended before n$S was killed: $(tail -n 3 "$WORK/writer1.log" "$WORK/writer2.log")"
SKIP_NODE=$S
node_kill $S
t0=$(date +%s%N)
wait_for 30 "another node serves the vdisks after n$S was killed" serving
S2=$SERVER
wait "$W1" || fail "the writer through n$A failed when n$S was killed: $(tail -n 3 "$WORK/writer1.log")"
wait "$W2" || fail "the writer through n$B failed when n$S was killed: $(tail -n 3 "$WORK/writer2.log")"
took=$(( ($(date +%s%N) - t0) / 1000000 ))
for i in $A $B; do
	on $i timeout -k 5 120 qemu-img compare -f raw -F raw "$WORK/c.img" "$(url $i vm1)" &&
		on $i timeout -k 5 120 qemu-img compare -f raw -F raw "$WORK/d.img" "$(url $i vm2)" ||
		fail "vm1 or vm2 through n$i differs from what the writers wrote"
done
[ "$S2" = "$A" ] && F=$B || F=$A
grep -q "iSCSI session of .* through node n$F" "$WORK/n$S2.log" ||
	fail "n$S2 served no session forwarded from n$F"
echo "ok: n$S killed -9 during writes through n$A and n$B; n$S2 serves the vdisks and n$F forwards to it; both writers finished (${took} ms after the kill), no write failed, and both vdisks read back through both portals"
echo "PASS"
