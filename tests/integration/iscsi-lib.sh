# Helpers for the iSCSI tests and benchmark (sourced after lib.sh, or alone
# with WORK and PIDS set): free ports, a kura blockd serving iSCSI, a tgt
# reference target, and per-test counting of iscsi-test-cu logs.
IQN_PREFIX=iqn.2026-11.io.kura:

have() { command -v "$1" >/dev/null 2>&1; }

# A TCP port nobody listens on, from 20000 up.
free_port() {
	p=${1:-20000}
	while ss -ltn 2>/dev/null | awk '{print $4}' | grep -q ":$p\$"; do p=$((p + 1)); done
	echo "$p"
}

# start_kura DIR PORT [blockd args...]: runs blockd with iSCSI on
# 127.0.0.1:PORT, its log in DIR.log; sets KURA_PID and KURA_SOCK.
start_kura() {
	d=$1; port=$2; shift 2
	[ -f "$d.log" ] && cat "$d.log" >>"$d.old.log" && : >"$d.log"
	"$BUILD/blockd" --data "$d" --iscsi "127.0.0.1:$port" "$@" 2>>"$d.log" &
	KURA_PID=$!
	PIDS="$PIDS $KURA_PID"
	KURA_SOCK="$d/blockd.sock"
	i=0
	while ! grep -q "ready; control socket" "$d.log" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt 500 ] || ! kill -0 "$KURA_PID" 2>/dev/null; then
			cat "$d.log"; echo "FAIL: blockd did not start"; exit 1
		fi
		sleep 0.02
	done
}

stop_kura() {
	kill -TERM "$KURA_PID" 2>/dev/null && wait "$KURA_PID" 2>/dev/null
}

vd() { "$BUILD/vdisk" --socket "$KURA_SOCK" "$@"; }

# start_tgt ID PORT FILE [IQN]: a tgt target on 127.0.0.1:PORT with FILE as
# LUN 1 through O_DIRECT (bstype aio). Sets TGT_PID; stop_tgt undoes it.
start_tgt() {
	TGT_ID=$1; port=$2; file=$3; iqn=${4:-iqn.2026-11.test:ref}
	tgtd -f -C "$TGT_ID" --iscsi "portal=127.0.0.1:$port" >"$WORK/tgtd.log" 2>&1 &
	TGT_PID=$!
	PIDS="$PIDS $TGT_PID"
	T="tgtadm -C $TGT_ID --lld iscsi"
	i=0
	until $T --mode target --op show >/dev/null 2>&1; do
		i=$((i + 1)); [ $i -lt 250 ] || return 1; sleep 0.02
	done
	$T --mode target --op new --tid 1 --targetname "$iqn" &&
	$T --mode logicalunit --op new --tid 1 --lun 1 --backing-store "$file" --bstype aio &&
	$T --mode target --op bind --tid 1 --initiator-address ALL
}

stop_tgt() {
	[ -n "${TGT_PID:-}" ] || return 0
	tgtadm -C "$TGT_ID" --op update --mode sys --name State -v offline >/dev/null 2>&1
	tgtadm -C "$TGT_ID" --op delete --mode system >/dev/null 2>&1
	kill -9 "$TGT_PID" 2>/dev/null; wait "$TGT_PID" 2>/dev/null
	TGT_PID=
}

# Counts an iscsi-test-cu log per test (CUnit counts a skip as a pass):
# prints "FAIL name" / "SKIP name: reason" lines, then "pass N skip N fail N".
cu_count() {
	awk '
	/^Suite: / { suite = $2 }
	/^  Test: / { name = suite "." $2; cur = 1; skip = ""; }
	cur && /\[SKIPPED\]/ { r = $0; sub(/.*\[SKIPPED\] */, "", r); if (skip == "") skip = r }
	cur && /\.\.\.passed$|^passed$/ {
		if (skip != "") { s++; print "SKIP " name ": " skip } else p++
		cur = 0; next }
	cur && /FAILED$/ { f++; print "FAIL " name; cur = 0; next }
	END { printf "pass %d skip %d fail %d\n", p, s, f }' "$1"
}
