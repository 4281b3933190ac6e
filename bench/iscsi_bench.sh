#!/bin/sh
# kura's iSCSI target against tgt (bstype aio: O_DIRECT, as kura does its
# I/O), same machine, same run, same backing directory, both on 1 GiB that
# was written once with the same random data: iscsi-perf random 4 KiB
# reads at QD32 and QD1, fio random 4 KiB writes at QD32 and QD1 through
# qemu-nbd (QEMU's libiscsi driver), and the CPU time the target process
# spends per I/O (utime + stime from /proc/PID/stat, its threads included).
# tgt's aio writes are not durable when acknowledged (no flush, no FUA: its
# write cache is on), so they are set against kura's with the target's
# write cache on (vdisk iscsi cache NAME writeback), and kura's durable
# writes (writethrough, the default) against tgt with O_SYNC|O_DIRECT
# (bstype rdwr).
#   bench/iscsi_bench.sh BUILD_DIR
# BENCH_DIR (default /var/tmp/kura-bench; files go to its iscsi/),
# BENCH_RUNTIME seconds per run (default 10), BENCH_OUT: file that also
# receives the table.
set -u
BUILD=$(cd "${1:-build}" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_DIR:-/var/tmp/kura-bench}/iscsi
RT=${BENCH_RUNTIME:-10}
PIDS=""
. "$ROOT/tests/integration/iscsi-lib.sh"
[ -x "$BUILD/kura-iscsi-perf" ] || { echo "iscsi bench: $BUILD/kura-iscsi-perf missing (make)"; exit 1; }
for t in iscsi-perf qemu-nbd fio tgtd; do
	have $t || { echo "iscsi bench: $t missing (make deps); skipped"; exit 0; }
done
cleanup() {
	stop_nbd
	stop_tgt
	for p in $PIDS; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "iscsi bench: $*"; exit 1; }
rm -rf "$WORK"; mkdir -p "$WORK" || die "cannot create $WORK"

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
# us_per_io TICKS IOS: CPU microseconds per I/O.
us_per_io() { awk -v t="$1" -v n="$2" -v hz="$HZ" 'BEGIN { printf "%.1f", (n > 0) ? t / hz * 1e6 / n : 0 }'; }

# perf URL QD -> "iops cpu_us_per_io": iscsi-perf random 4 KiB reads
# (iscsi-perf counts in logical blocks: 4 KiB is 8 of 512 bytes).
perf() {
	lbs=$(iscsi-readcapacity16 "$1" 2>/dev/null | sed -n 's/^LOGICAL BLOCK LENGTH IN BYTES://p')
	t0=$(ticks "$TPID")
	timeout -k 5 $((RT + 30)) iscsi-perf -t "$RT" -m "$2" -b $((4096 / ${lbs:-512})) -r "$1" \
		>"$WORK/perf.out" 2>&1
	t1=$(ticks "$TPID")
	iops=$(tr '\r' '\n' <"$WORK/perf.out" | sed -n 's/^iops average \([0-9]*\) .*/\1/p' | tail -n 1)
	[ -n "$iops" ] || { tail -n 3 "$WORK/perf.out" >&2; echo "0 0"; return; }
	echo "$iops $(us_per_io $((t1 - t0)) $((iops * RT)))"
}

# fio_side SIDE JSON -> "iops clat_mean_us clat_p99_us total_ios" of the
# read or write side (sections in fio's order: read, write, trim; the first
# match after the start of the side's section is that side's).
fio_side() {
	tr -d ' \n\t' <"$2" | awk -v side="$1" '
	function after(s, k,   i, r) {
		i = index(s, k); if (!i) return 0
		r = substr(s, i + length(k)); sub(/[,}].*/, "", r); return r + 0 }
	{
		s = substr($0, index($0, "\"" side "\":{"))
		c = substr(s, index(s, "\"clat_ns\":{"))
		printf "%.0f %.1f %.1f %d\n", after(s, "\"iops\":"), after(c, "\"mean\":") / 1000,
			after(c, "\"99.000000\":") / 1000, after(s, "\"total_ios\":") }'
}

# fio_nbd URL QD RW -> "iops clat_mean_us clat_p99_us cpu_us_per_io" of
# fio's random 4 KiB RW (randread or randwrite) through qemu-nbd at URL;
# qemu-nbd's own CPU microseconds per I/O go to $WORK/nbd.us (its iSCSI
# driver runs on its one main-loop thread, so 1e6 / that is the most I/Os a
# second the chain can carry whatever the target).
# qemu-nbd takes at most 16 requests at a time from one NBD connection
# (QEMU's NBD server reads no more until one is answered), so a queue depth
# above 16 is that many fio jobs of 16, each on its own connection (-e 4),
# their figures taken together: QD32 then reaches the target as QD32.
fio_nbd() {
	start_nbd "$1" || { echo "0 0 0 0"; return; }
	nj=1 qd=$2
	[ "$qd" -gt 16 ] && nj=$((qd / 16)) qd=16
	t0=$(ticks "$TPID") n0=$(ticks "$NBD_PID")
	timeout -k 5 $((RT + 30)) fio --name=w --ioengine=nbd --uri="nbd+unix:///?socket=$WORK/nbd.sock" \
		--rw="$3" --bs=4k --iodepth="$qd" --numjobs="$nj" --group_reporting --size=1G \
		--time_based --runtime="$RT" \
		--output-format=json --output="$WORK/fio.json" >/dev/null 2>"$WORK/fio.err"
	rc=$?
	t1=$(ticks "$TPID") n1=$(ticks "$NBD_PID")
	stop_nbd
	[ $rc -eq 0 ] || { echo "fio exit $rc: $(tail -n 2 "$WORK/fio.err")" >&2; echo "0 0 0 0"; return; }
	set -- $(fio_side "${3#rand}" "$WORK/fio.json")
	us_per_io $((n1 - n0)) "$4" >"$WORK/nbd.us"
	echo "$1 $2 $3 $(us_per_io $((t1 - t0)) "$4")"
}
fiow() { fio_nbd "$1" "$2" randwrite; }

# dw URL QD -> "iops mean_us p99_us cpu_us_per_io": random 4 KiB writes
# straight from libiscsi (kura-iscsi-perf), no QEMU or NBD in between.
dw() {
	t0=$(ticks "$TPID")
	set -- $(timeout -k 5 $((RT + 30)) "$BUILD/kura-iscsi-perf" -w -m "$2" -t "$RT" "$1" 2>"$WORK/dw.err")
	t1=$(ticks "$TPID")
	[ "${1:-}" = iops ] || { tail -n 2 "$WORK/dw.err" >&2; echo "0 0 0 0"; return; }
	echo "$2 $4 $8 $(us_per_io $((t1 - t0)) "$(awk -v i="$2" -v t="$RT" 'BEGIN { printf "%.0f", i * t }')")"
}
# direct NAME URL: writes at QD32 and QD1 from kura-iscsi-perf into NAME.dw
direct() { echo "$(dw "$2" 32) $(dw "$2" 1)" >"$WORK/$1.dw"; }

# measure NAME URL: the thirteen figures of one target into NAME.res:
# read QD32 IOPS, CPU us/IO; read QD1 IOPS, CPU us/IO; write QD32 IOPS,
# mean and p99 latency us, CPU us/IO; the same for write QD1; read QD32
# IOPS through the fio chain (what that chain delivers at all).
measure() {
	echo "iscsi bench: $1: reads QD32, QD1 (iscsi-perf); writes QD32, QD1 and reads QD32 (fio via qemu-nbd), ${RT} s each"
	set -- "$1" "$2" $(perf "$2" 32) $(perf "$2" 1) $(fiow "$2" 32) \
		$(cp "$WORK/nbd.us" "$WORK/$1.nbd"; fiow "$2" 1) \
		$(fio_nbd "$2" 32 randread | cut -d' ' -f1)
	echo "$3 $4 $5 $6 $7 $8 $9 ${10} ${11} ${12} ${13} ${14} ${15}" >"$WORK/$1.res"
}

# The fio chain without iSCSI: qemu-nbd over QEMU's null block driver
# (every I/O done at once, nothing stored): what fio and qemu-nbd reach on
# their own on this machine.
chain_alone() {
	TPID=$$
	set -- $(fio_nbd 'json:{"driver":"raw","file":{"driver":"null-co","size":1073741824}}' 32 randwrite)
	cp "$WORK/nbd.us" "$WORK/null.nbd"
	echo "$1"
}

null_iops=$(chain_alone)
echo "iscsi bench: writing 1 GiB of random data for each target into $WORK"
head -c 1G /dev/urandom >"$WORK/data.img" || die "cannot write $WORK/data.img"
cp "$WORK/data.img" "$WORK/tgt.img" || die "cannot write $WORK/tgt.img"
# on disk before any measuring: write-back of 2 GiB would slow the first runs
sync "$WORK/data.img" "$WORK/tgt.img"

start_tgt 19 "$(free_port 23260)" "$WORK/tgt.img" >"$WORK/tgt.why" ||
	die "tgt failed to start: $(tail -n 1 "$WORK/tgt.why")"
tport=$(ss -Hltnp | grep "pid=$TGT_PID," | awk '{ print $4 }' | sed 's/.*://' | head -n 1)
TPID=$TGT_PID
measure tgt "iscsi://127.0.0.1:$tport/$TGT_IQN/1"
echo "iscsi bench: tgt: writes QD32, QD1 (kura-iscsi-perf), ${RT} s each"
direct tgt "iscsi://127.0.0.1:$tport/$TGT_IQN/1"
stop_tgt

# tgt with durable writes, the way kura acknowledges them: bstype rdwr
# with O_SYNC|O_DIRECT (bstype aio takes no open flags). Writes only.
TGT_BSTYPE=rdwr TGT_BSOFLAGS=sync:direct start_tgt 19 "$(free_port 23360)" "$WORK/tgt.img" \
	>"$WORK/tgt.why" || die "tgt (sync) failed to start: $(tail -n 1 "$WORK/tgt.why")"
tport=$(ss -Hltnp | grep "pid=$TGT_PID," | awk '{ print $4 }' | sed 's/.*://' | head -n 1)
TPID=$TGT_PID
echo "iscsi bench: tgt O_SYNC: writes QD32, QD1 (fio via qemu-nbd), ${RT} s each"
echo "$(fiow "iscsi://127.0.0.1:$tport/$TGT_IQN/1" 32) $(fiow "iscsi://127.0.0.1:$tport/$TGT_IQN/1" 1)" \
	>"$WORK/tgtsync.res"
direct tgtsync "iscsi://127.0.0.1:$tport/$TGT_IQN/1"
stop_tgt
rm -f "$WORK/tgt.img"

kport=$(free_port 23660)
start_kura "$WORK/k" "$kport" --disk "$WORK/k-disk.img,size=3G"
vd import "$WORK/data.img" lun --wait >/dev/null || die "import into kura failed"
rm -f "$WORK/data.img"
TPID=$KURA_PID
measure kura "iscsi://127.0.0.1:$kport/${IQN_PREFIX}lun/0"
direct kura "iscsi://127.0.0.1:$kport/${IQN_PREFIX}lun/0"
vd iscsi cache lun writeback >/dev/null || die "vdisk iscsi cache lun writeback failed"
echo "iscsi bench: kura, write cache on: writes QD32, QD1 (fio via qemu-nbd, then kura-iscsi-perf), ${RT} s each"
echo "$(fiow "iscsi://127.0.0.1:$kport/${IQN_PREFIX}lun/0" 32) $(cp "$WORK/nbd.us" "$WORK/kurawb.nbd"
	fiow "iscsi://127.0.0.1:$kport/${IQN_PREFIX}lun/0" 1)" >"$WORK/kurawb.res"
direct kurawb "iscsi://127.0.0.1:$kport/${IQN_PREFIX}lun/0"
stop_kura || echo "iscsi bench: blockd did not stop cleanly"

T=$(cat "$WORK/tgt.res") K=$(cat "$WORK/kura.res") S=$(cat "$WORK/tgtsync.res")
W=$(cat "$WORK/kurawb.res")
DT=$(cat "$WORK/tgt.dw") DS=$(cat "$WORK/tgtsync.dw") DK=$(cat "$WORK/kura.dw") DW=$(cat "$WORK/kurawb.dw")
col() { echo "$1" | cut -d' ' -f"$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
row() { printf '%-42s %10s %10s %9s\n' "$1" "$(col "$T" "$2")" "$(col "$K" "$2")" "$(ratio "$(col "$K" "$2")" "$(col "$T" "$2")")"; }
# wrow LABEL TGT_COL KURA_WRITEBACK_COL
wrow() { printf '%-42s %10s %10s %9s\n' "$1" "$(col "$T" "$2")" "$(col "$W" "$3")" "$(ratio "$(col "$W" "$3")" "$(col "$T" "$2")")"; }
# drow LABEL A B COL: direct figures A and B (tgt side, kura side)
drow() { printf '%-42s %10s %10s %9s\n' "$1" "$(col "$2" "$4")" "$(col "$3" "$4")" "$(ratio "$(col "$3" "$4")" "$(col "$2" "$4")")"; }
srow() { printf '%-42s %10s %10s %9s\n' "$1" "$(col "$S" "$2")" "$(col "$K" "$3")" "$(ratio "$(col "$K" "$3")" "$(col "$S" "$2")")"; }
lat1() { awk -v n="$1" 'BEGIN { printf "%.1f", (n > 0) ? 1e6 / n : 0 }'; }
verdict() { awk "BEGIN { print (($1) ? \"met\" : \"NOT met\") }"; }
table() {
	echo
	echo "iSCSI target, 4 KiB random I/O on 1 GiB, kura vs tgt (bstype aio), ${RT} s per run"
	printf '%-42s %10s %10s %9s\n' "measure" "tgt" "kura" "kura/tgt"
	row "read QD32 IOPS (iscsi-perf)" 1
	row "read QD32 target CPU us/IO" 2
	row "read QD1 IOPS (iscsi-perf)" 3
	row "read QD1 target CPU us/IO" 4
	printf '%-42s %10s %10s %9s\n' "read QD1 latency us (1/IOPS)" "$(lat1 "$(col "$T" 3)")" \
		"$(lat1 "$(col "$K" 3)")" "$(ratio "$(lat1 "$(col "$K" 3)")" "$(lat1 "$(col "$T" 3)")")"
	row "read QD32 IOPS (fio via qemu-nbd, 2x16)" 13
	echo
	echo "writes into the write cache on both sides: tgt bstype aio, kura writeback"
	printf '%-42s %10s %10s %9s\n' "measure" "tgt" "kura wb" "kura/tgt"
	wrow "write QD32 IOPS (fio via qemu-nbd, 2x16)" 5 1
	wrow "write QD32 mean latency us" 6 2
	wrow "write QD32 p99 latency us" 7 3
	wrow "write QD32 target CPU us/IO" 8 4
	wrow "write QD1 IOPS (fio via qemu-nbd)" 9 5
	wrow "write QD1 mean latency us" 10 6
	wrow "write QD1 p99 latency us" 11 7
	wrow "write QD1 target CPU us/IO" 12 8
	drow "write QD32 IOPS (kura-iscsi-perf)" "$DT" "$DW" 1
	drow "write QD32 p99 latency us (direct)" "$DT" "$DW" 3
	drow "write QD32 target CPU us/IO (direct)" "$DT" "$DW" 4
	drow "write QD1 mean latency us (direct)" "$DT" "$DW" 6
	drow "write QD1 p99 latency us (direct)" "$DT" "$DW" 7
	echo
	echo "durable writes on both sides: tgt bstype rdwr with O_SYNC|O_DIRECT, kura writethrough"
	printf '%-42s %10s %10s %9s\n' "measure" "tgt sync" "kura" "kura/tgt"
	srow "write QD32 IOPS (fio via qemu-nbd, 2x16)" 1 5
	srow "write QD32 p99 latency us" 3 7
	srow "write QD32 target CPU us/IO" 4 8
	srow "write QD1 mean latency us" 6 10
	srow "write QD1 p99 latency us" 7 11
	srow "write QD1 target CPU us/IO" 8 12
	drow "write QD32 IOPS (kura-iscsi-perf)" "$DS" "$DK" 1
	drow "write QD32 p99 latency us (direct)" "$DS" "$DK" 3
	drow "write QD1 mean latency us (direct)" "$DS" "$DK" 6
	drow "write QD1 p99 latency us (direct)" "$DS" "$DK" 7
	echo
	echo "the fio chain without iSCSI (qemu-nbd over null-co), 4 KiB random writes at QD32: $null_iops IOPS, qemu-nbd $(cat "$WORK/null.nbd") CPU us/IO"
	nt=$(cat "$WORK/tgt.nbd") nk=$(cat "$WORK/kurawb.nbd")
	echo "qemu-nbd's own CPU per write at QD32 (its iSCSI driver runs on its one main-loop thread): tgt $nt us, kura $nk us;"
	echo "  at a whole core that thread carries at most $(awk -v u="$nk" 'BEGIN { printf "%.0f", (u > 0) ? 1e6 / u : 0 }') writes a second whatever the target, against 2x tgt = $((2 * $(col "$T" 5)))"
	r32=$(ratio "$(col "$K" 1)" "$(col "$T" 1)") w32=$(ratio "$(col "$W" 1)" "$(col "$T" 5)")
	echo "aim: kura >= 2x tgt IOPS at QD32: reads ${r32}x $(verdict "$(col "$K" 1) >= 2 * $(col "$T" 1)"), writes (write cache on) ${w32}x $(verdict "$(col "$W" 1) >= 2 * $(col "$T" 5)")"
	echo "aim: kura QD1 latency below tgt's: reads $(verdict "$(col "$K" 3) > $(col "$T" 3)"), writes (write cache on) $(verdict "$(col "$W" 6) < $(col "$T" 10) && $(col "$W" 6) > 0")"
	echo "straight from libiscsi (kura-iscsi-perf), write cache on: QD32 writes $(ratio "$(col "$DW" 1)" "$(col "$DT" 1)")x tgt $(verdict "$(col "$DW" 1) >= 2 * $(col "$DT" 1)"), QD1 write latency below tgt's $(verdict "$(col "$DW" 6) < $(col "$DT" 6) && $(col "$DW" 6) > 0")"
	echo "durable writes: kura QD1 write latency below tgt O_SYNC's: $(verdict "$(col "$K" 10) < $(col "$S" 6) && $(col "$K" 10) > 0"), QD32 write IOPS $(ratio "$(col "$K" 5)" "$(col "$S" 1)")x"
}
table >"$WORK/table.txt"
cat "$WORK/table.txt"
[ -z "${BENCH_OUT:-}" ] || cp "$WORK/table.txt" "$BENCH_OUT"
