# Real initiators move real data through kura's iSCSI target: qemu-img
# copies an image onto a vdisk and compares it back; a snapshot's read-only
# target refuses writes and reads as the vdisk did; fio through qemu-nbd
# (QEMU's libiscsi driver) runs a crc32c verify job of random 4 KiB writes
# at queue depth 32 over 1 GiB, and after a kill -9 of blockd every
# acknowledged block still verifies.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/iscsi-lib.sh"
for t in qemu-img qemu-nbd fio; do
	have $t || { echo "$t missing (make deps)"; exit 77; }
done
NBD_PID=
stop_nbd() { [ -n "$NBD_PID" ] && kill "$NBD_PID" 2>/dev/null && wait "$NBD_PID" 2>/dev/null; NBD_PID=; }
trap 'stop_nbd; cleanup' EXIT INT TERM

port=$(free_port 21360)
start_kura "$WORK/k" "$port" --disk "$WORK/disk.img,size=3G"
url() { echo "iscsi://127.0.0.1:$port/${IQN_PREFIX}$1/0"; }

# 1. qemu-img: 96 MiB of random data with holes and an odd tail.
src="$WORK/src.img"
truncate -s 96M "$src"
head -c 16M /dev/urandom | dd of="$src" bs=1M seek=0 conv=notrunc 2>/dev/null
head -c 8M /dev/urandom | dd of="$src" bs=1M seek=40 conv=notrunc 2>/dev/null
head -c 12345 /dev/urandom | dd of="$src" bs=1 seek=$((96 * 1048576 - 12345)) conv=notrunc 2>/dev/null
vd create img 96M >/dev/null || fail "create img"
qemu-img convert -n -f raw -O raw "$src" "$(url img)" || fail "qemu-img convert onto iSCSI"
qemu-img compare -f raw -F raw "$src" "$(url img)" || fail "qemu-img compare: the vdisk differs"
echo "ok: qemu-img convert and compare over iSCSI"

# 2. a snapshot is a read-only target with the data of its time.
vd snapshot img s1 >/dev/null || fail "snapshot"
head -c 1M /dev/urandom > "$WORK/new.bin"
qemu-img convert -n -f raw -O raw "$WORK/new.bin" "$(url img)" 2>/dev/null || true
qemu-img compare -f raw -F raw "$src" "$(url img:s1)" || fail "the snapshot target does not read as the vdisk did"
if qemu-img convert -n -f raw -O raw "$WORK/new.bin" "$(url img:s1)" 2>"$WORK/ro.err"; then
	fail "a write to the snapshot's target succeeded"
fi
echo "ok: snapshot target reads the old data and refuses writes ($(head -n 1 "$WORK/ro.err"))"

# 3. fio verify through qemu-nbd, then again after kill -9.
vd create fio 1G >/dev/null || fail "create fio"
nbd_up() {
	qemu-nbd -f raw -t -e 4 -k "$WORK/nbd.sock" "$(url fio)" 2>"$WORK/nbd.log" &
	NBD_PID=$!
	i=0
	while [ ! -S "$WORK/nbd.sock" ]; do
		i=$((i + 1)); [ $i -lt 500 ] || { cat "$WORK/nbd.log"; fail "qemu-nbd did not start"; }
		sleep 0.02
	done
}
job() {
	fio --name=verify --ioengine=nbd --uri="nbd+unix:///?socket=$WORK/nbd.sock" \
		--rw=randwrite --bs=4k --iodepth=32 --size=1G --verify=crc32c --verify_fatal=1 \
		--do_verify=1 --randrepeat=1 --randseed=4242 --output-format=json "$@"
}
nbd_up
job --output="$WORK/fio1.json" >/dev/null 2>"$WORK/fio1.err" || { cat "$WORK/fio1.err"; fail "fio verify job failed"; }
grep -q '"error" : 0' "$WORK/fio1.json" || fail "fio reported errors"
echo "ok: fio randwrite QD32 over 1 GiB, crc32c verify passed"
stop_nbd
rm -f "$WORK/nbd.sock"

kill -9 "$KURA_PID"; wait "$KURA_PID" 2>/dev/null
rm -f "$WORK/k/blockd.sock" "$WORK/k/store.sock"
start_kura "$WORK/k" "$port"
nbd_up
job --verify_only --output="$WORK/fio2.json" >/dev/null 2>"$WORK/fio2.err" || { cat "$WORK/fio2.err"; fail "data lost over kill -9"; }
grep -q '"error" : 0' "$WORK/fio2.json" || fail "fio verify-only reported errors after kill -9"
echo "ok: after kill -9 of blockd every acknowledged block verifies"
stop_nbd
stop_kura
