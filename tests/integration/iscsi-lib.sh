# Helpers for the iSCSI tests and benchmark (sourced after lib.sh, or alone
# with WORK, PIDS and BUILD set): free ports, a kura blockd serving iSCSI,
# a tgt reference target, and per-test counting of iscsi-test-cu logs.
# Everything binds to 127.0.0.1 only.
IQN_PREFIX=iqn.2026-11.io.kura:
TGT_IQN=iqn.2026-11.test:ref

have() { command -v "$1" >/dev/null 2>&1; }

# free_port [BASE]: a TCP port nobody listens on. The search starts at an
# offset taken from our pid so that tests run side by side by different
# people rarely reach for the same port at the same moment.
free_port() {
	p=$(( ${1:-20000} + $$ % 400 ))
	while ss -Hltn 2>/dev/null | awk '{print $4}' | grep -q ":$p\$"; do p=$((p + 1)); done
	echo "$p"
}

# proc_gone PID: the process has exited (a zombie counts as gone).
proc_gone() {
	[ ! -r "/proc/$1/stat" ] && return 0
	[ "$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null)" = Z ]
}

# start_kura DIR PORT [blockd args...]: runs blockd with iSCSI on
# 127.0.0.1:PORT, its stderr in DIR.log (earlier runs kept in DIR.old.log),
# and waits until it says it serves that portal. Sets KURA_PID and
# KURA_SOCK; exits the test if blockd does not come up within 30 s.
start_kura() {
	d=$1; port=$2; shift 2
	[ -f "$d.log" ] && cat "$d.log" >>"$d.old.log" && : >"$d.log"
	"$BUILD/blockd" --data "$d" --iscsi "127.0.0.1:$port" "$@" 2>>"$d.log" &
	KURA_PID=$!
	PIDS="$PIDS $KURA_PID"
	KURA_SOCK="$d/blockd.sock"
	i=0
	while ! grep -q "ready; control socket .*iSCSI 127.0.0.1:$port " "$d.log" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt 1500 ] || proc_gone "$KURA_PID"; then
			tail -n 20 "$d.log"; echo "FAIL: blockd did not start serving iSCSI on 127.0.0.1:$port"
			exit 1
		fi
		sleep 0.02
	done
}

# stop_kura: SIGTERM, then SIGKILL if blockd has not ended within 30 s.
# Returns blockd's exit status (non-zero when it had to be killed).
stop_kura() {
	kill -TERM "$KURA_PID" 2>/dev/null || return 0
	i=0
	while ! proc_gone "$KURA_PID"; do
		i=$((i + 1))
		if [ $i -gt 600 ]; then
			echo "blockd ignored SIGTERM for 30 s; killed"
			kill -9 "$KURA_PID"; wait "$KURA_PID" 2>/dev/null
			return 1
		fi
		sleep 0.05
	done
	wait "$KURA_PID"
}

# kura_log_clean DIR: no sanitizer report in the logs of start_kura DIR
# (a SAN=1 build reports undefined behaviour and leaks there).
kura_log_clean() {
	pat="runtime error:\|ERROR: AddressSanitizer\|ERROR: LeakSanitizer"
	cat "$1.old.log" "$1.log" 2>/dev/null | grep -q "$pat" || return 0
	cat "$1.old.log" "$1.log" 2>/dev/null | grep -A3 "$pat" | head -n 12
	echo "FAIL: sanitizer report in blockd's log"
	return 1
}

# kill_kura: SIGKILL, as a power cut would stop it.
kill_kura() {
	kill -9 "$KURA_PID" 2>/dev/null; wait "$KURA_PID" 2>/dev/null
	return 0
}

vd() { "$BUILD/vdisk" --socket "$KURA_SOCK" "$@"; }

# start_nbd URL: qemu-nbd (QEMU's libiscsi driver) serving URL on
# $WORK/nbd.sock, for fio's nbd engine; sets NBD_PID. Returns non-zero, with
# qemu-nbd's log on stderr, when the socket does not appear within 10 s.
# stop_nbd ends it; call it from the EXIT trap too.
NBD_PID=
start_nbd() {
	qemu-nbd -f raw -t -e 4 -k "$WORK/nbd.sock" "$1" 2>"$WORK/nbd.log" &
	NBD_PID=$!
	i=0
	while [ ! -S "$WORK/nbd.sock" ]; do
		i=$((i + 1))
		if [ $i -gt 500 ] || proc_gone "$NBD_PID"; then
			cat "$WORK/nbd.log" >&2; stop_nbd; return 1
		fi
		sleep 0.02
	done
}
stop_nbd() {
	[ -n "$NBD_PID" ] || return 0
	kill -9 "$NBD_PID" 2>/dev/null; wait "$NBD_PID" 2>/dev/null
	NBD_PID=
	rm -f "$WORK/nbd.sock"
}

# start_tgt BASE PORT FILE: a tgt target $TGT_IQN on 127.0.0.1:PORT with
# FILE as LUN 1 through O_DIRECT (bstype aio; TGT_BSTYPE and TGT_BSOFLAGS
# choose another backing store type and its open flags). tgtd's control socket id is
# the first from BASE that no other tgtd holds (a tgtd that finds its id
# taken exits at once). Sets TGT_PID and TGT_ID; stop_tgt undoes it all.
# Returns non-zero, with the reason on stdout, if tgt cannot be set up.
start_tgt() {
	id=$1; port=$2; file=$3
	TGT_PID=
	while [ "$id" -lt $(($1 + 50)) ]; do
		tgtd -f -C "$id" --iscsi "portal=127.0.0.1:$port" >"$WORK/tgtd.log" 2>&1 &
		pid=$!
		i=0
		# ours once it holds the lock file of its control socket
		while ! ls -l "/proc/$pid/fd" 2>/dev/null | grep -q "socket\.$id\.lock\$"; do
			i=$((i + 1))
			if proc_gone "$pid" || [ $i -gt 250 ]; then
				kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
				pid=; break
			fi
			sleep 0.02
		done
		[ -n "$pid" ] && break
		grep -q "another tgtd is using" "$WORK/tgtd.log" || {
			echo "tgtd did not start: $(tail -n 1 "$WORK/tgtd.log")"; return 1; }
		id=$((id + 1))
	done
	[ -n "$pid" ] || { echo "no free tgtd control socket id"; return 1; }
	TGT_PID=$pid TGT_ID=$id
	PIDS="$PIDS $TGT_PID"
	T="tgtadm -C $TGT_ID --lld iscsi"
	i=0
	until $T --mode target --op show >/dev/null 2>&1; do
		i=$((i + 1)); [ $i -lt 250 ] || { echo "tgtd does not answer tgtadm"; return 1; }
		sleep 0.02
	done
	$T --mode target --op new --tid 1 --targetname "$TGT_IQN" &&
	$T --mode logicalunit --op new --tid 1 --lun 1 --backing-store "$file" --bstype "${TGT_BSTYPE:-aio}" ${TGT_BSOFLAGS:+--bsoflags "$TGT_BSOFLAGS"} &&
	$T --mode target --op bind --tid 1 --initiator-address ALL || return 1
	# the portal is bound by now, unless the port was taken meanwhile
	ss -Hltnp "sport = :$port" | grep -q "pid=$TGT_PID," ||
		{ echo "tgtd does not listen on 127.0.0.1:$port"; return 1; }
}

stop_tgt() {
	[ -n "${TGT_PID:-}" ] || return 0
	tgtadm -C "$TGT_ID" --op update --mode sys --name State -v offline >/dev/null 2>&1
	tgtadm -C "$TGT_ID" --op delete --mode system >/dev/null 2>&1
	kill -9 "$TGT_PID" 2>/dev/null; wait "$TGT_PID" 2>/dev/null
	TGT_PID=
}

# cu_count LOG: counts an iscsi-test-cu log test by test, because CUnit's
# summary counts a skipped test as passed. A test's result is the word
# "passed" or "FAILED" right after its "Test: NAME ..." or at the start of
# a later line; a test is skipped when its output before that has a
# "[SKIPPED] reason" line; a test with no result (the run died or timed
# out) is a failure. Prints "FAIL name" and "SKIP name: reason" lines, then
# "pass N skip N fail N", and a NOTE when CUnit's own totals disagree.
cu_count() {
	awk '
	function open_fail() { if (cur) { f++; print "FAIL " name " (no result: the run ended)" } cur = 0 }
	/^Suite: / { open_fail(); suite = $2; next }
	/^Run Summary:/ { open_fail(); summ = 1; next }
	summ && $1 == "tests" { cu_pass = $4; cu_fail = $5; next }
	{
		line = $0
		if (line ~ /^  Test: /) {
			open_fail()
			name = suite "." $2; cur = 1; skip = ""
			line = substr(line, index(line, " ...") + 4)
		}
		if (!cur) next
		if (line ~ /^passed/) {
			if (skip != "") { s++; print "SKIP " name ": " skip } else p++
			cur = 0; next
		}
		if (line ~ /^FAILED/) { f++; print "FAIL " name; cur = 0; next }
		if (skip == "" && line ~ /\[SKIPPED\]/) { skip = line; sub(/.*\[SKIPPED\] */, "", skip); if (skip == "") skip = "-" }
	}
	END {
		open_fail()
		printf "pass %d skip %d fail %d\n", p, s, f
		if (cu_pass != "" && (cu_pass != p + s || cu_fail != f))
			printf "NOTE CUnit summary: %d passed (skips included), %d failed\n", cu_pass, cu_fail
	}' "$1"
}

# cu_total COUNT_FILE FIELD: pass, skip or fail from cu_count's output.
cu_total() {
	grep '^pass [0-9]* skip' "$1" | awk -v f="$2" '{ for (i = 1; i < NF; i++) if ($i == f) print $(i + 1) }'
}
