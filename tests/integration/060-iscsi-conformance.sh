# libiscsi's conformance suite against kura's iSCSI target and, in the same
# run on the same machine, against tgt: kura must fail nothing (ALL and the
# multipath tests, same URL twice) and pass more tests than tgt.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/iscsi-lib.sh"
have iscsi-test-cu || { echo "iscsi-test-cu missing (Debian libiscsi-bin; make deps)"; exit 77; }
trap 'stop_tgt; cleanup' EXIT INT TERM

port=$(free_port 21260)
start_kura "$WORK/k" "$port"
vd create lun1 1G >/dev/null || fail "cannot create the vdisk"
url="iscsi://127.0.0.1:$port/${IQN_PREFIX}lun1/0"

cd "$WORK"
timeout 600 iscsi-test-cu -d -t ALL "$url" >"$WORK/kura.log" 2>&1
echo "kura (exit $?):"
cu_count "$WORK/kura.log" | tee "$WORK/kura.count" | grep -v '^SKIP'
grep '^SKIP' "$WORK/kura.count" | sed 's/^/  /'
timeout 300 iscsi-test-cu -d -t SCSI.MultipathIO "$url" "$url" >"$WORK/mp.log" 2>&1
echo "kura multipath (exit $?):"
cu_count "$WORK/mp.log" | tee "$WORK/mp.count"
kill -0 "$KURA_PID" || fail "blockd died during the suite"

tpass=""
if have tgtd; then
	tport=$(free_port $((port + 1)))
	truncate -s 1G "$WORK/tgt.img"
	if start_tgt 17 "$tport" "$WORK/tgt.img"; then
		timeout 600 iscsi-test-cu -d -t ALL "iscsi://127.0.0.1:$tport/iqn.2026-11.test:ref/1" \
			>"$WORK/tgt.log" 2>&1
		echo "tgt (exit $?):"
		cu_count "$WORK/tgt.log" | tee "$WORK/tgt.count" | grep -v '^SKIP'
		tpass=$(tail -n 1 "$WORK/tgt.count" | awk '{print $2}')
	else
		echo "tgt could not be set up; comparing kura against nothing"
	fi
	stop_tgt
else
	echo "tgtd missing (Debian tgt): no comparison"
fi

set -- $(tail -n 1 "$WORK/kura.count")
kpass=$2 kfail=$6
set -- $(tail -n 1 "$WORK/mp.count")
mpass=$2 mfail=$6
[ "$kfail" -eq 0 ] || fail "kura failed $kfail conformance tests"
[ "$mfail" -eq 0 ] || fail "kura failed $mfail multipath tests"
[ "$mpass" -gt 0 ] || fail "no multipath test passed"
[ "$kpass" -gt 150 ] || fail "only $kpass tests passed"
if [ -n "$tpass" ]; then
	[ "$kpass" -gt "$tpass" ] || fail "kura passed $kpass tests, tgt $tpass"
	echo "kura passed $kpass tests and failed none; tgt passed $tpass"
else
	echo "kura passed $kpass tests and failed none"
fi
