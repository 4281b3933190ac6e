# A hostile iSCSI client against blockd: unknown opcodes, cut and oversized
# PDUs, CmdSNs outside the window, garbage login keys, bad Data-Out, clients
# that vanish mid-write or never read, wrong CHAP secrets and initiators
# not on the ACL, many logins and sessions. After each attack blockd must
# still run and a session opened before the attacks must still write and
# read back; refused logins must be logged. KURA_ISCSICHECK_ARGS adds
# options to kura-iscsicheck (like --checks 3,5).
. "$(dirname "$0")/lib.sh"
BUILD=${BUILD:-$(cd "$(dirname "$0")/../.." && pwd)/build}
. "$(dirname "$0")/iscsi-lib.sh"
[ -x "$BUILD/kura-iscsicheck" ] ||
	{ echo "kura-iscsicheck not built (make $BUILD/kura-iscsicheck)"; exit 77; }

HOSTILE=iqn.2026-11.test:hostile
ALLOWED=iqn.2026-11.test:allowed
SECRET=hostile-secret-1234
rss_slack=4
# A sanitizer build keeps freed memory in quarantine: RSS says nothing about
# leaks there (LeakSanitizer's report at exit does).
if grep -q __asan_init "$BUILD/blockd" 2>/dev/null; then
	export ASAN_OPTIONS="${ASAN_OPTIONS:-}:quarantine_size_mb=4"
	rss_slack=16
fi

port=$(free_port 21700)
start_kura "$WORK/k" "$port" --disk "$WORK/disk.img,size=1G" --journal-size 16M
for v in hv chapvd aclvd; do
	vd create "$v" 64M >/dev/null || fail "cannot create vdisk $v"
done
vd iscsi chap chapvd alice "$SECRET" >/dev/null || fail "vdisk iscsi chap"
vd iscsi acl aclvd add "$ALLOWED" >/dev/null || fail "vdisk iscsi acl"

"$BUILD/kura-iscsicheck" --port "$port" --target "${IQN_PREFIX}hv" --iname "$HOSTILE" \
	--chap-target "${IQN_PREFIX}chapvd" --chap-user alice --chap-secret "$SECRET" \
	--acl-target "${IQN_PREFIX}aclvd" --acl-iname "$ALLOWED" \
	--pid "$KURA_PID" --rss-slack "$rss_slack" ${KURA_ISCSICHECK_ARGS:-}
rc=$?

refusals=0
grep -q "login refused: initiator $HOSTILE .*wrong CHAP user or secret" "$WORK/k.log" &&
	refusals=$((refusals + 1)) || echo "FAIL: no log line for the wrong CHAP secret"
grep -q "login refused: initiator $HOSTILE .*not on the target's ACL" "$WORK/k.log" &&
	refusals=$((refusals + 1)) || echo "FAIL: no log line for the initiator not on the ACL"
[ $refusals -eq 2 ] && echo "ok: both refusals are in blockd's log"

stop_kura || { tail -n 20 "$WORK/k.log"; fail "blockd did not stop cleanly"; }
kura_log_clean "$WORK/k" || exit 1
[ $rc -eq 0 ] && [ $refusals -eq 2 ] || fail "hostile client checks"
echo "all hostile client checks passed"
