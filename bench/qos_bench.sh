#!/bin/sh
# Guest latency while clones run, with the scheduler (qos) and without it
# (fifo), same store, same machine, same run.
#
# A guest-like load, fio 4 KiB random read/write 70/30 at QD8 over a 1 GiB
# vdisk through the iSCSI target (fio -> qemu-nbd -> QEMU's libiscsi ->
# blockd), runs alone for QOS_PHASE seconds, then while QOS_CLONES full
# clones of a QOS_TEMPLATE template run at once, then alone again. For each
# mode: guest p50 / p99 / max latency per phase and the clones' throughput,
# against the clones' throughput on an idle node; then a scrub of the
# template (`vdisk scrub`: every block read and checked) under the same
# guest load, against the scrub on an idle node. Then the per-vdisk limit:
# 1000 IOPS under a QD32 random-read load. A plot of guest latency over time
# goes to QOS_PLOT (default bench-qos.png in the current directory).
#   bench/qos_bench.sh BUILD_DIR
# BENCH_DIR (default /var/tmp/kura-bench; files in its qos/), QOS_TEMPLATE
# (4G), QOS_CLONES (4), QOS_PHASE (20), QOS_MODES (fifo qos), BENCH_OUT: a
# file that also gets the table.
set -u
BUILD=$(cd "${1:-build}" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_DIR:-/var/tmp/kura-bench}/qos
TEMPLATE=${QOS_TEMPLATE:-4G}
NCLONES=${QOS_CLONES:-4}
PHASE=${QOS_PHASE:-20}
PLOT=${QOS_PLOT:-$(pwd)/bench-qos.png}
PIDS=""
. "$ROOT/tests/integration/iscsi-lib.sh"
for t in qemu-nbd fio; do
	have $t || { echo "qos bench: $t missing (make deps); skipped"; exit 0; }
done
FIO_PID=
cleanup() {
	[ -n "$FIO_PID" ] && kill -9 "$FIO_PID" 2>/dev/null
	stop_nbd
	for p in $PIDS; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "qos bench: $*"; exit 1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
rm -rf "$WORK"; mkdir -p "$WORK" || die "cannot create $WORK"

port=$(free_port 24260)
url() { echo "iscsi://127.0.0.1:$port/${IQN_PREFIX}$1/0"; }

nbd_up() { start_nbd "$(url "$1")" || die "qemu-nbd did not start"; }

# clones TAG: QOS_CLONES full clones of tmpl@base at once; prints seconds
clones() {
	t0=$(now_ms)
	i=1
	while [ $i -le "$NCLONES" ]; do
		vd clone tmpl@base "c$1$i" --full --wait >"$WORK/clone$i.out" 2>&1 &
		eval "cp$i=\$!"
		i=$((i + 1))
	done
	i=1
	while [ $i -le "$NCLONES" ]; do
		eval "wait \$cp$i" || die "clone $i failed: $(cat "$WORK/clone$i.out")"
		i=$((i + 1))
	done
	t1=$(now_ms)
	echo $((t1 - t0))
}

# unclone TAG: deletes the clones (their space is freed by jobs)
unclone() {
	i=1
	while [ $i -le "$NCLONES" ]; do vd delete "c$1$i" >/dev/null; i=$((i + 1)); done
}

# Waits until the deletes' freeing jobs are done and blockd (RocksDB's
# compactions included) has used under 5% of a core for a second, at most a
# minute, so that the next phase starts on a quiet node.
HZ=$(getconf CLK_TCK)
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
quiet() {
	while vd jobs | grep -q running; do sleep 0.5; done
	i=0
	while [ $i -lt 60 ]; do
		a=$(ticks "$KURA_PID"); sleep 1; b=$(ticks "$KURA_PID")
		[ $((b - a)) -le $((HZ / 20)) ] && return 0
		i=$((i + 1))
	done
}

echo "qos bench: a $TEMPLATE template, $NCLONES full clones of it at once, guest fio 4 KiB randrw 70/30 QD8; phases of ${PHASE} s"
mkdir -p "$WORK/node"
start_kura "$WORK/node" "$port" --disk "$WORK/disk.img,size=40G"
head -c 64M /dev/urandom >"$WORK/chunk" || die "cannot write $WORK/chunk"
n=$(($(numfmt --from=iec "$TEMPLATE") / 67108864))
i=0
while [ $i -lt "$n" ]; do cat "$WORK/chunk"; i=$((i + 1)); done >"$WORK/tmpl.img"
head -c 1G "$WORK/tmpl.img" >"$WORK/guest.img"
vd import "$WORK/tmpl.img" tmpl --wait >/dev/null || die "import of the template failed"
vd import "$WORK/guest.img" guest --wait >/dev/null || die "import of the guest vdisk failed"
rm -f "$WORK/tmpl.img" "$WORK/guest.img" "$WORK/chunk"
vd snapshot tmpl base >/dev/null || die "snapshot failed"

idle_ms=$(clones idle)
unclone idle
quiet
tmpl_bytes=$(numfmt --from=iec "$TEMPLATE")
mibs() { awk -v b="$1" -v ms="$2" 'BEGIN { printf "%.0f", (ms > 0) ? b / 1048576 / (ms / 1000) : 0 }'; }
idle_mibs=$(mibs $((tmpl_bytes * NCLONES)) "$idle_ms")
echo "qos bench: $NCLONES clones on an idle node: ${idle_ms} ms, $idle_mibs MiB/s"
# scrub TAG: a scrub of the template; prints its milliseconds
scrub() {
	t0=$(now_ms)
	vd scrub tmpl --wait >"$WORK/scrub$1.out" 2>&1 || die "scrub failed: $(cat "$WORK/scrub$1.out")"
	echo $(($(now_ms) - t0))
}
scrub_idle_ms=$(scrub idle)
quiet
echo "qos bench: a scrub of the template on an idle node: ${scrub_idle_ms} ms, $(mibs "$tmpl_bytes" "$scrub_idle_ms") MiB/s"

# scenario MODE: the three phases under blockd --scheduler MODE; the per-I/O
# latency log goes to MODE_lat.1.log (times in unix ms), the start, the
# clones' start and end and the end (unix ms) and the clones' ms to
# MODE.phases.
scenario() {
	stop_kura
	start_kura "$WORK/node" "$port" --scheduler "$1"
	quiet
	nbd_up guest
	t0=$(now_ms)
	fio --name=guest --ioengine=nbd --uri="nbd+unix:///?socket=$WORK/nbd.sock" \
		--rw=randrw --rwmixread=70 --bs=4k --iodepth=8 --size=1G --time_based --runtime=3600 \
		--write_lat_log="$WORK/$1" --log_avg_msec=0 --log_unix_epoch=1 --output-format=json \
		--output="$WORK/$1.json" >/dev/null 2>"$WORK/$1.err" &
	FIO_PID=$!
	sleep "$PHASE"
	c0=$(now_ms)
	ms=$(clones "$1")
	c1=$(now_ms)
	sleep "$PHASE"
	s0=$(now_ms)
	sms=$(scrub "$1")
	s1=$(now_ms)
	sleep 2
	e=$(now_ms)
	kill -TERM "$FIO_PID"; wait "$FIO_PID"; FIO_PID=
	stop_nbd
	unclone "$1"
	quiet
	[ -s "$WORK/${1}_lat.1.log" ] || die "$1: fio wrote no latency log: $(tail -n 3 "$WORK/$1.err")"
	echo "$t0 $c0 $c1 $e $ms $s0 $s1 $sms" >"$WORK/$1.phases"
}

# stats MODE FROM TO: "n p50 p99 max" in microseconds of the guest I/Os
# that started in [FROM, TO) (unix ms; fio logs completion time and latency).
stats() {
	awk -F', *' -v a="$2" -v b="$3" '{ t = $1 - $2 / 1e6; if (t >= a && t < b) print $2 }' \
		"$WORK/${1}_lat.1.log" | sort -n >"$WORK/sorted"
	awk '{ v[NR] = $1 } END {
		if (!NR) { print "0 0 0 0"; exit }
		i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
		i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
		printf "%d %.0f %.0f %.0f\n", NR, v[i50] / 1000, v[i99] / 1000, v[NR] / 1000 }' "$WORK/sorted"
}

# series MODE T0: "seconds max_ms" per 250 ms from T0 (unix ms), for the plot
series() {
	awk -F', *' -v t0="$2" '{ b = int(($1 - t0) / 250); if (b < 0) next
		if ($2 > m[b]) m[b] = $2; if (b > top) top = b } END {
		for (k = 0; k <= top; k++) if (k in m) printf "%.2f %.3f\n", k / 4, m[k] / 1e6 }' \
		"$WORK/${1}_lat.1.log" >"$WORK/$1.series"
}

MODES=${QOS_MODES:-fifo qos}
for mode in $MODES; do
	echo "qos bench: scenario with --scheduler $mode"
	scenario $mode
	series $mode "$(cut -d' ' -f1 "$WORK/$mode.phases")"
done

report() {
	printf "%-5s %-17s %8s %8s %8s %8s\n" mode phase ios p50_us p99_us max_us
	for mode in $MODES; do
		set -- $(cat "$WORK/$mode.phases")
		t0=$1; c0=$2; c1=$3; e=$4; ms=$5; s0=$6; s1=$7; sms=$8
		a=$(stats $mode $((t0 + 1000)) "$c0")
		w=$(stats $mode "$c0" "$c1")
		b=$(stats $mode "$c1" "$s0")
		sc=$(stats $mode "$s0" "$s1")
		printf "%-5s %-17s %8s %8s %8s %8s\n" $mode "alone" $a
		printf "%-5s %-17s %8s %8s %8s %8s\n" $mode "with $NCLONES clones" $w
		printf "%-5s %-17s %8s %8s %8s %8s\n" $mode "alone again" $b
		printf "%-5s %-17s %8s %8s %8s %8s\n" $mode "with a scrub" $sc
		spct=$(awk -v a="$scrub_idle_ms" -v b="$sms" 'BEGIN { printf "%.0f", 100 * a / b }')
		set -- $b; pb=$3; set -- $sc; psc=$3
		echo "$mode: the scrub took $sms ms: $(mibs "$tmpl_bytes" "$sms") MiB/s ($spct% of the idle node's); guest p99 with it $(awk -v a="$pb" -v b="$psc" 'BEGIN { printf "%.2f", (a > 0) ? b / a : 0 }')x alone (the phase before it)"
		pct=$(awk -v a="$idle_ms" -v b="$ms" 'BEGIN { printf "%.0f", 100 * a / b }')
		echo "$mode: clones took $ms ms: $(mibs $((tmpl_bytes * NCLONES)) "$ms") MiB/s ($pct% of the idle node's $idle_mibs MiB/s)"
		# the aims: guest p99 with the clones at most 1.5x its p99 alone
		# (the phase before them), no guest I/O over 1 s, clones at half
		# their idle speed or more
		set -- $a; pa=$3; set -- $w; pw=$3; mw=$4
		awk -v pa="$pa" -v pw="$pw" -v mw="$mw" -v pct="$pct" -v mode="$mode" 'BEGIN {
			r = (pa > 0) ? pw / pa : 0
			v1 = (r <= 1.5) ? "met" : "not met"
			v2 = (mw < 1000000) ? "met" : "not met"
			v3 = (pct >= 50) ? "met" : "not met"
			printf("%s: guest p99 with the clones %.2fx alone (aim <= 1.5: %s), worst %.1f ms (aim < 1000: %s), clones %d%% of idle (aim >= 50: %s)\n",
				mode, r, v1, mw / 1000, v2, pct, v3) }'
	done
}

limit() {
	vd qos guest --iops-limit 1000 >/dev/null || die "vdisk qos failed"
	nbd_up guest
	fio --name=limit --ioengine=nbd --uri="nbd+unix:///?socket=$WORK/nbd.sock" \
		--rw=randread --bs=4k --iodepth=32 --size=1G --time_based --runtime=10 --ramp_time=2 \
		--output-format=json --output="$WORK/limit.json" >/dev/null 2>"$WORK/limit.err" ||
		die "limit fio failed: $(tail -n 2 "$WORK/limit.err")"
	stop_nbd
	vd qos guest --iops-limit 0 >/dev/null
	iops=$(tr -d ' \n\t' <"$WORK/limit.json" | sed 's/.*"read":{[^}]*"iops":\([0-9.]*\),.*/\1/')
	echo "per-vdisk limit 1000 IOPS, fio randread QD32: $iops IOPS ($(awk -v i="$iops" 'BEGIN { printf "%+.1f", (i - 1000) / 10 }')%)"
}

stop_kura
start_kura "$WORK/node" "$port"
{
	echo "== qos bench: guest latency while $NCLONES full clones of a $TEMPLATE template run =="
	report
	limit
} | tee "$WORK/table"
[ -n "${BENCH_OUT:-}" ] && cat "$WORK/table" >>"$BENCH_OUT"

if ! [ -f "$WORK/qos.phases" ] || ! [ -f "$WORK/fifo.phases" ]; then
	echo "qos bench: the plot needs both modes (QOS_MODES): no plot"
elif have gnuplot; then
	set -- $(cat "$WORK/qos.phases"); q0=$(($2 - $1)); q1=$(($3 - $1))
	set -- $(cat "$WORK/fifo.phases"); f0=$(($2 - $1)); f1=$(($3 - $1))
	gnuplot <<EOF 2>"$WORK/gnuplot.err" || echo "qos bench: gnuplot failed: $(head -n 2 "$WORK/gnuplot.err")"
set terminal pngcairo size 1200,800 font ",10"
set output "$PLOT"
set multiplot layout 2,1 title "Guest 4 KiB randrw 70/30 QD8 through iSCSI: worst latency per 250 ms, $NCLONES full clones of a $TEMPLATE template in the shaded span"
set logscale y
set ylabel "latency (ms)"
set xlabel "seconds"
set grid
set yrange [0.1:*]
set object 1 rect from $q0/1000.0, graph 0 to $q1/1000.0, graph 1 fc rgb "#eeeeee" behind
set title "with the scheduler (--scheduler qos)"
plot "$WORK/qos.series" using 1:2 with lines lc rgb "#1060c0" title "max per 250 ms"
unset object 1
set object 2 rect from $f0/1000.0, graph 0 to $f1/1000.0, graph 1 fc rgb "#eeeeee" behind
set title "without it (--scheduler fifo)"
plot "$WORK/fifo.series" using 1:2 with lines lc rgb "#c03010" title "max per 250 ms"
unset multiplot
EOF
	[ -s "$PLOT" ] && echo "qos bench: plot in $PLOT"
else
	echo "qos bench: gnuplot missing (make deps): no plot"
fi
stop_kura
