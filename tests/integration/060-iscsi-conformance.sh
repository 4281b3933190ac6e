# libiscsi's conformance suite (iscsi-test-cu) against kura's iSCSI target
# and, in the same run on the same machine, against tgt on a 1 GiB file
# (bstype aio): kura must fail nothing, in ALL and in the multipath tests
# (the same target through two sessions), and pass more tests than tgt; a
# snapshot's target must pass the write-protection test.
# Tests are counted one by one from the logs: CUnit's summary counts a
# skip as a pass.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/iscsi-lib.sh"
have iscsi-test-cu || { echo "iscsi-test-cu missing (Debian libiscsi-bin; make deps)"; exit 77; }
trap 'stop_tgt; cleanup' EXIT INT TERM
cd "$WORK" || fail "cd $WORK"

# run_cu NAME SECONDS URL...: the whole suite selection into NAME.log,
# counted into NAME.count; sets RC to iscsi-test-cu's exit status.
run_cu() {
	n=$1 secs=$2; shift 2
	timeout -k 5 "$secs" iscsi-test-cu -d "$@" >"$WORK/$n.log" 2>&1
	RC=$?
	cu_count "$WORK/$n.log" >"$WORK/$n.count"
}
# report NAME TITLE [brief]: the totals, then every failure and every skip
# with its reason, one a line; brief: the failures on one line, no skips.
report() {
	echo "$2: $(grep '^pass ' "$WORK/$1.count") (exit $RC)"
	grep '^NOTE' "$WORK/$1.count" | sed 's/^/  /'
	if [ "${3:-}" = brief ]; then
		grep -q '^FAIL' "$WORK/$1.count" &&
			echo "  failed: $(grep '^FAIL' "$WORK/$1.count" | cut -c6- | tr '\n' ' ')"
	else
		grep '^FAIL' "$WORK/$1.count" | sed 's/^/  /'
		grep '^SKIP' "$WORK/$1.count" | sed 's/^/  /'
	fi
	return 0
}

port=$(free_port 21260)
start_kura "$WORK/k" "$port" --disk "$WORK/disk.img,size=2G"
vd create lun1 1G >/dev/null || fail "cannot create the vdisk"
url="iscsi://127.0.0.1:$port/${IQN_PREFIX}lun1/0"

run_cu kura 120 -t ALL "$url"; krc=$RC
report kura "kura ALL"
run_cu mp 60 -t SCSI.MultipathIO "$url" "$url"; mrc=$RC
report mp "kura SCSI.MultipathIO, two sessions"
# a snapshot is a write-protected LU (SBC's ReadOnly test; ALL itself
# needs a writable LU)
vd snapshot lun1 s1 >/dev/null || fail "cannot snapshot the vdisk"
run_cu ro 60 -t SCSI.ReadOnly "iscsi://127.0.0.1:$port/${IQN_PREFIX}lun1:s1/0"; rrc=$RC
report ro "kura SCSI.ReadOnly on the snapshot's target"
proc_gone "$KURA_PID" && fail "blockd died during the suite: $(tail -n 5 "$WORK/k.log")"

tpass=""
if ! have tgtd; then
	echo "tgt: tgtd missing (Debian tgt); no comparison"
else
	truncate -s 1G "$WORK/tgt.img"
	tport=$(free_port 21300)
	if start_tgt 17 "$tport" "$WORK/tgt.img" >"$WORK/tgt.why"; then
		run_cu tgt 120 -t ALL "iscsi://127.0.0.1:$tport/$TGT_IQN/1"
		report tgt "tgt ALL" brief
		if [ $RC -eq 124 ] || [ $RC -eq 137 ] || [ $RC -eq 255 ]; then
			echo "tgt: the suite did not run through (exit $RC); no comparison"
		else
			tpass=$(cu_total "$WORK/tgt.count" pass)
		fi
	else
		echo "tgt could not be set up ($(tail -n 1 "$WORK/tgt.why")); no comparison"
	fi
	stop_tgt
fi

kpass=$(cu_total "$WORK/kura.count" pass)
[ $krc -ne 124 ] && [ $krc -ne 137 ] || fail "kura ALL did not finish within 120 s"
[ $mrc -ne 124 ] && [ $mrc -ne 137 ] || fail "kura multipath tests did not finish within 60 s"
[ "$(cu_total "$WORK/kura.count" fail)" -eq 0 ] && [ $krc -eq 0 ] ||
	fail "kura failed conformance tests (exit $krc): $(grep '^FAIL' "$WORK/kura.count" | cut -c6- | tr '\n' ' ')"
[ "$(cu_total "$WORK/mp.count" fail)" -eq 0 ] && [ $mrc -eq 0 ] ||
	fail "kura failed multipath tests (exit $mrc): $(grep '^FAIL' "$WORK/mp.count" | cut -c6- | tr '\n' ' ')"
[ "$(cu_total "$WORK/ro.count" fail)" -eq 0 ] && [ $rrc -eq 0 ] ||
	fail "kura's snapshot target failed SCSI.ReadOnly (exit $rrc)"
[ "$(cu_total "$WORK/ro.count" pass)" -gt 0 ] ||
	fail "SCSI.ReadOnly did not run on the snapshot's target: $(grep '^SKIP' "$WORK/ro.count" | head -n 1)"
[ "$(cu_total "$WORK/mp.count" pass)" -gt 0 ] || fail "no multipath test ran: $(grep '^SKIP' "$WORK/mp.count" | head -n 1)"
if [ -n "$tpass" ]; then
	[ "$kpass" -gt "$tpass" ] || fail "kura passed $kpass tests, tgt $tpass: kura must pass more"
	echo "kura passed $kpass tests and failed none; tgt passed $tpass"
else
	# without tgt, at least the count tgt reached here (bstype rdwr: 160)
	[ "$kpass" -gt 160 ] || fail "kura passed only $kpass tests"
	echo "kura passed $kpass tests and failed none"
fi
stop_kura || { kura_log_clean "$WORK/k"; fail "blockd did not stop cleanly: $(tail -n 5 "$WORK/k.log")"; }
kura_log_clean "$WORK/k" || exit 1
