# Real initiators move real data through kura's iSCSI target: qemu-img
# copies an image with holes onto a vdisk full of other data and compares
# it back; a snapshot's read-only target refuses writes and reads as the
# vdisk did when it was taken; fio through qemu-nbd (QEMU's libiscsi
# driver) runs a crc32c verify job of random 4 KiB writes at queue depth 32
# over 1 GiB, and after a kill -9 of blockd every acknowledged block still
# verifies; the same on a target with its write cache on (writeback: writes
# complete before they are durable, and a kill -9 of blockd must still not
# lose them).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/iscsi-lib.sh"
for t in qemu-img qemu-nbd fio; do
	have $t || { echo "$t missing (make deps)"; exit 77; }
done
trap 'stop_nbd; cleanup' EXIT INT TERM
cd "$WORK" || fail "cd $WORK"

port=$(free_port 21360)
start_kura "$WORK/k" "$port" --disk "$WORK/disk.img,size=3G"
url() { echo "iscsi://127.0.0.1:$port/${IQN_PREFIX}$1/0"; }
# qemu-img with a time limit: a target that stops answering must not hang the test
qimg() { timeout -k 5 120 qemu-img "$@"; }

# 1. qemu-img: 96 MiB of random data with holes and an odd-sized non-zero
# tail, copied over a vdisk that holds other data there, so that the holes
# must be written as zeros too.
MiB=1048576
src="$WORK/src.img"
truncate -s 96M "$src"
head -c 16M /dev/urandom | dd of="$src" bs=1M seek=0 conv=notrunc status=none
head -c 8M /dev/urandom | dd of="$src" bs=1M seek=40 conv=notrunc status=none
head -c 12345 /dev/urandom | dd of="$src" bs=1 seek=$((96 * MiB - 12345)) conv=notrunc status=none
head -c 96M /dev/urandom >"$WORK/junk.img"
vd create img 96M >/dev/null || fail "create img"
qimg convert -n -f raw -O raw "$WORK/junk.img" "$(url img)" || fail "qemu-img convert (junk) onto iSCSI"
qimg convert -n -f raw -O raw "$src" "$(url img)" || fail "qemu-img convert onto iSCSI"
qimg compare -f raw -F raw "$src" "$(url img)" || fail "qemu-img compare: the vdisk differs from the image"
echo "ok: qemu-img convert -n and compare over iSCSI (96 MiB, holes, odd tail)"

# 2. a snapshot is a read-only target with the data of its time.
vd snapshot img s1 >/dev/null || fail "snapshot"
head -c 4M /dev/urandom >"$WORK/new.bin"
qimg convert -n -f raw --target-image-opts "$WORK/new.bin" \
	"driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=127.0.0.1:$port,file.target=${IQN_PREFIX}img,file.lun=0" ||
	fail "writing to the vdisk after its snapshot"
cp "$src" "$WORK/now.img" && dd if="$WORK/new.bin" of="$WORK/now.img" conv=notrunc status=none
qimg compare -f raw -F raw "$WORK/now.img" "$(url img)" || fail "the vdisk does not read as written after the snapshot"
qimg compare -f raw -F raw "$src" "$(url img:s1)" || fail "the snapshot target does not read as the vdisk did"
if qimg convert -n -f raw -O raw "$WORK/new.bin" "$(url img:s1)" 2>"$WORK/ro.err"; then
	fail "a write to the snapshot's target succeeded"
fi
grep -qi "read.only\|write.protect\|permission denied" "$WORK/ro.err" ||
	fail "the write to the snapshot target failed for another reason: $(cat "$WORK/ro.err")"
qimg compare -f raw -F raw "$src" "$(url img:s1)" || fail "the snapshot changed after a refused write"
echo "ok: snapshot target reads the old data and refuses writes ($(head -n 1 "$WORK/ro.err"))"

# 3. fio verify through qemu-nbd, then again after kill -9.
vd create fio 1G >/dev/null || fail "create fio"
SIZE=1G
BYTES=1073741824
job() {
	timeout -k 5 180 fio --name=verify --ioengine=nbd --uri="nbd+unix:///?socket=$WORK/nbd.sock" \
		--rw=randwrite --bs=4k --iodepth=32 --size=$SIZE --verify=crc32c --verify_fatal=1 \
		--do_verify=1 --randrepeat=1 --randseed=4242 --verify_state_save=0 \
		--output-format=json "$@"
}
# fio_ok JSON WHAT: no error in the job, and BYTES bytes read back verified.
fio_ok() {
	tr -d ' \n' <"$1" | grep -q '"jobname":"verify"' || fail "$2: no fio result: $(head -c 300 "$1")"
	tr -d ' \n' <"$1" | grep -q '"error":0,' || fail "$2: fio reports an error: $(grep '"error"' "$1")"
	tr -d ' \n' <"$1" | grep -q "\"read\":{\"io_bytes\":$BYTES," ||
		fail "$2: fio did not read back all $SIZE: $(tr -d ' \n' <"$1" | grep -o '"read":{"io_bytes":[0-9]*')"
}
# fio_run VDISK N WHAT [fio args]: the verify job through qemu-nbd on the
# vdisk's target, its result in fioN.json; fails the test unless it passed.
fio_run() {
	start_nbd "$(url "$1")" || fail "qemu-nbd did not start"
	n=$2 what=$3
	shift 3
	job --output="$WORK/fio$n.json" "$@" >/dev/null 2>"$WORK/fio$n.err"
	rc=$?
	stop_nbd
	[ $rc -eq 0 ] || { cat "$WORK/fio$n.err"; fail "$what: fio exit $rc"; }
	fio_ok "$WORK/fio$n.json" "$what"
}
fio_run fio 1 "verify job"
tr -d ' \n' <"$WORK/fio1.json" | grep -q '"write":{"io_bytes":1073741824,' || fail "fio did not write all 1 GiB"
echo "ok: fio randwrite QD32 over 1 GiB, crc32c verify passed"
kill_kura
start_kura "$WORK/k" "$port"
fio_run fio 2 "data lost over kill -9" --verify_only
echo "ok: after kill -9 of blockd every acknowledged block verifies"

# 4. the same with the write cache on, over 256 MiB: QEMU sends writes
# without FUA, which complete once in the device's cache.
SIZE=256M
BYTES=268435456
vd create wb 256M >/dev/null || fail "create wb"
vd iscsi cache wb writeback >/dev/null || fail "iscsi cache wb writeback"
fio_run wb 3 "verify job (writeback)"
kill_kura
start_kura "$WORK/k" "$port"
vd iscsi show wb | grep -q "^write cache: writeback" || fail "the write cache setting was not kept"
fio_run wb 4 "writeback: data lost over kill -9" --verify_only
echo "ok: write cache on: fio verify passed, and again after kill -9 of blockd"
stop_kura || { kura_log_clean "$WORK/k"; fail "blockd did not stop cleanly: $(tail -n 5 "$WORK/k.log")"; }
kura_log_clean "$WORK/k" || exit 1
