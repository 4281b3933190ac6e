# The vdisk command against a real blockd: every command, every refused
# input with its one error line and exit status, data in and out byte for
# byte, a restart in between; then the client against fake servers that
# split, cut short or inflate their answers.
. "$(dirname "$0")/lib.sh"
V="$BUILD/vdisk"
D="$WORK/data"
export KURA_SOCKET="$D/blockd.sock"
HAVE_PY=0
command -v python3 >/dev/null 2>&1 && HAVE_PY=1
cd "$WORK" || fail "cd $WORK"
W=$(pwd -P)

# expect_err STATUS "what" "text" cmd...: expect_fail (text is a grep pattern:
# write [ as .), and exit status STATUS.
expect_err() {
	st=$1; shift
	expect_fail "$@"
	shift 2
	"$@" >/dev/null 2>&1; rc=$?
	[ $rc -eq "$st" ] || fail "exit status $rc, wanted $st: $*"
}
# must "what" cmd...: cmd succeeds and is silent on stderr; its stdout is in $OUT.
must() {
	what=$1; shift
	OUT=$("$@" 2>"$WORK/stderr") || fail "$what: exit $?: $(cat "$WORK/stderr")"
	[ ! -s "$WORK/stderr" ] || fail "$what: wrote to stderr: $(cat "$WORK/stderr")"
	echo "ok: $what"
}
# has "text": the last $OUT contains text.
has() {
	printf '%s\n' "$OUT" | grep -qF -- "$1" || fail "expected '$1' in: $OUT"
}
# json_is "what" PYEXPR TEXT: $OUT is JSON for which PYEXPR (over v) holds;
# without python3, $OUT must at least contain TEXT.
json_is() {
	if [ $HAVE_PY -eq 1 ]; then
		printf '%s' "$OUT" | python3 -c "import json, sys
v = json.load(sys.stdin)
assert ($2), v" || fail "$1: $2 does not hold for: $OUT"
	else
		has "$3"
	fi
	echo "ok: $1"
}
start_blockd() {
	"$BUILD/blockd" --data "$D" "$@" 2>>"$WORK/blockd.log" &
	BPID=$!
	PIDS="$PIDS $BPID"
	wait_socket "$KURA_SOCKET"
}
stop_blockd() {
	kill -TERM $BPID
	wait $BPID || fail "blockd did not stop cleanly (exit $?): $(tail -n 5 "$WORK/blockd.log")"
}
# wait_job ID: until the job is no longer running (at most 60 s).
wait_job() {
	i=0
	while "$V" job show "$1" | grep -q "^state: *running"; do
		i=$((i + 1)); [ $i -lt 300 ] || fail "job $1 still running"
		sleep 0.2
	done
}

# ---- without blockd: help, command-line errors, the not-running message
must "help" "$V" help
for c in create list info resize delete snapshot snapshots rollback clone flatten scrub import \
	export jobs "job show" "job cancel" fsck version; do
	printf '%s\n' "$OUT" | grep -q "^  $c " || fail "help lacks $c"
	"$V" $c --help | head -n 1 | grep -q "^usage: vdisk $c" || fail "$c --help"
done
must "--help" "$V" --help
has "Exit status"
must "help COMMAND" "$V" help clone
has "usage: vdisk clone NAME@SNAP NEWNAME [--full] [--wait]"
expect_err 2 "no command" "vdisk: no command given; usage: vdisk .--socket PATH. COMMAND" "$V"
expect_err 2 "unknown command" "unknown command 'frob'" "$V" frob
expect_err 2 "unknown global option" "unknown option --bogus" "$V" --bogus list
expect_err 2 "missing argument" "create needs more arguments; usage: vdisk create NAME SIZE" \
	"$V" create vm1
expect_err 2 "extra argument" "list has too many arguments; usage: vdisk list .--json." \
	"$V" list extra
expect_err 2 "unknown option" "unknown option --bogus; usage: vdisk info" "$V" info vm1 --bogus
expect_err 2 "option of another command" "create does not take --json" "$V" create a 1M --json
expect_err 2 "--socket without path" "--socket needs a PATH" "$V" list --socket
expect_err 2 "job without subcommand" "usage: vdisk job show ID .*, or vdisk job cancel ID" \
	"$V" job
expect_err 1 "invalid name" \
	"invalid vdisk name 'bad name': use 1 to 64 characters from A-Z a-z 0-9 . _ -" \
	"$V" create "bad name" 1M
expect_err 1 "name starting with a dot" "invalid vdisk name '.x'" "$V" create .x 1M
expect_err 1 "name starting with a dash" "invalid vdisk name '-x'" "$V" create -- -x 1M
long=$(printf 'n%.0s' $(seq 65))
expect_err 1 "name too long" "invalid vdisk name '$long'" "$V" create "$long" 1M
expect_err 1 "invalid snapshot name" "invalid snapshot name 's/1'" "$V" snapshot vm1 s/1
expect_err 1 "size 0" "size must be at least 4 KiB" "$V" create z 0
expect_err 1 "unaligned size" "is not a multiple of 4 KiB" "$V" create z 1000
expect_err 1 "size too big" "beyond the supported maximum of 1 PiB" "$V" create z 1125899906846720
expect_err 1 "size far too big" "beyond the supported maximum of 1 PiB" "$V" create z 99999999P
expect_err 1 "size not a size" "invalid size 'lots'" "$V" create z lots
expect_err 1 "clone needs a snapshot" "names no snapshot: write NAME@SNAP" "$V" clone vm1 vm2
expect_err 1 "bad job id" "invalid job id 'x7'" "$V" job show x7
expect_err 1 "import of a missing file" "cannot import 'nofile': No such file or directory" \
	"$V" import nofile vm9
expect_err 1 "export into a missing dir" "cannot export to 'nodir/f': No such file or directory" \
	"$V" export vm1 nodir/f
expect_err 1 "blockd not running" \
	"vdisk: cannot reach blockd at $D/blockd.sock (No such file or directory); start it with: blockd --data $D$" \
	"$V" list
expect_err 1 "--socket beats KURA_SOCKET" "cannot reach blockd at $WORK/other.sock" \
	"$V" --socket "$WORK/other.sock" list

# ---- a real blockd
mkdir -p "$D"
start_blockd --disk "$WORK/disk.img,size=512M" --journal-size 16M
must "version" "$V" version
has "vdisk kura"; has "blockd kura"
must "empty list" "$V" list
has "no vdisks"
must "create" "$V" create vm1 10G
has "created vm1: 10.0 GiB"
must "create in bytes" "$V" create small 65536
must "create 1 PiB" "$V" create huge 1P
must "list" "$V" list
printf '%s\n' "$OUT" | head -n 1 | grep -q "^NAME  *SIZE  *ALLOCATED  *PARENT  *SNAPS  *DEPTH" ||
	fail "list header: $OUT"
printf '%s\n' "$OUT" | grep -q "^vm1  *10.0 GiB  *0 B  *-  *0  *1  *ready$" || fail "list row: $OUT"
must "list --json" "$V" list --json
json_is "list is an array of vdisks" \
	'[d["name"] for d in v] == ["huge", "small", "vm1"] and
	 v[2]["size"] == 10 << 30 and v[0]["size"] == 1 << 50' \
	'"size": 10737418240'
must "info --json" "$V" info vm1 --json
json_is "info fields" \
	'v["name"] == "vm1" and v["allocated"] == 0 and v["parent"] is None and
	 v["snapshots"] == [] and v["depth"] == 1 and v["state"] == "ready" and v["created"] > 0' \
	'"name": "vm1"'
must "info" "$V" info vm1
for k in "name: *vm1" "provisioned: *10.0 GiB (10737418240 bytes)" "allocated:" "unique:" \
	"parent: *-" "snapshots: *-" "chain depth: *1" "state: *ready" "created: *20[0-9][0-9]-"; do
	printf '%s\n' "$OUT" | grep -q "^$k" || fail "info lacks '$k': $OUT"
done
expect_err 1 "existing name" "vdisk: vdisk 'vm1' already exists" "$V" create vm1 1M
expect_err 1 "unknown vdisk" "no vdisk 'nosuch'" "$V" info nosuch
expect_err 1 "unknown vdisk to delete" "no vdisk 'nosuch'" "$V" delete nosuch
expect_err 1 "unknown vdisk to resize" "no vdisk 'nosuch'" "$V" resize nosuch 1G
expect_err 1 "unknown snapshot" "vdisk 'vm1' has no snapshot 'nosnap'" "$V" info vm1@nosnap
expect_err 1 "rollback to unknown snapshot" "has no snapshot 'nosnap'" "$V" rollback vm1@nosnap
expect_err 1 "clone of unknown snapshot" "has no snapshot 'nosnap'" "$V" clone vm1@nosnap c
expect_err 1 "unknown job" "no job 999" "$V" job show 999
expect_err 1 "cancel unknown job" "no job 999" "$V" job cancel 999
must "grow" "$V" resize vm1 20G
has "resized vm1 to 20.0 GiB"
expect_err 1 "shrink without --shrink" "add --shrink" "$V" resize vm1 1G
must "shrink" "$V" resize vm1 1G --shrink
must "delete" "$V" delete huge
must "delete small" "$V" delete small

# snapshots, rollback, thin clone
must "snapshot NAME SNAP" "$V" snapshot vm1 s1
has "created snapshot vm1@s1"
must "snapshot NAME@SNAP" "$V" snapshot vm1@s2
expect_err 1 "existing snapshot" "snapshot 'vm1@s1' already exists" "$V" snapshot vm1 s1
must "snapshots" "$V" snapshots vm1
printf '%s\n' "$OUT" | grep -q "^NAME  *SIZE  *ALLOCATED  *CREATED  *CLONES" || fail "$OUT"
has "s1"; has "s2"
must "snapshots --json" "$V" snapshots vm1 --json
json_is "snapshots fields" '[s["name"] for s in v] == ["s1", "s2"] and v[0]["vdisk"] == "vm1"' \
	'"vdisk": "vm1"'
must "info of a snapshot" "$V" info vm1@s1 --json
json_is "snapshot info" 'v["name"] == "s1" and v["size"] == 1 << 30 and v["clones"] == []' \
	'"clones": []'
must "rollback" "$V" rollback vm1@s1
must "rollback NAME SNAP" "$V" rollback vm1 s2
must "thin clone" "$V" clone vm1@s1 c1
has "cloned vm1@s1 to c1"
expect_err 1 "clone onto an existing name" "'c1' already exists" "$V" clone vm1@s1 c1
must "info of the clone" "$V" info c1 --json
json_is "clone's parent" 'v["parent"] == "vm1@s1" and v["depth"] == 2' '"parent": "vm1@s1"'
expect_err 1 "delete of a vdisk with clones names them" "has clones: c1" "$V" delete vm1
must "delete of a snapshot with clones" "$V" delete vm1@s1
has "c1"
must "delete snapshot" "$V" delete vm1@s2
must "flatten" "$V" flatten c1 --wait
has "flatten of c1 done"
must "delete after flatten" "$V" delete vm1
must "delete clone" "$V" delete c1

# data in and out, byte for byte
dd if=/dev/urandom of="$WORK/a.bin" bs=1M count=20 status=none
must "import --wait" "$V" import "$WORK/a.bin" img --wait
[ "$(printf '%s\n' "$OUT" | wc -l)" -eq 1 ] || fail "--wait without a terminal printed more: $OUT"
printf '%s\n' "$OUT" | grep -q "^import of img done: 20.0 MiB in [0-9.]* s (.*/s)$" || fail "$OUT"
must "info of the import" "$V" info img --json
json_is "imported size" 'v["size"] == 20 << 20 and v["allocated"] == 20 << 20' '"size": 20971520'
must "export --wait" "$V" export img out1.bin --wait
cmp "$WORK/a.bin" "$WORK/out1.bin" || fail "export differs from the imported file"
expect_err 1 "export onto an existing file" "it exists" "$V" export img out1.bin
must "import without --wait (relative path)" "$V" import a.bin img2
printf '%s\n' "$OUT" | grep -q "^job [0-9]* started: import $W/a.bin -> img2$" || fail "$OUT"
id=$(printf '%s\n' "$OUT" | sed -n 's/^job \([0-9]*\) started.*/\1/p')
wait_job "$id"
must "job show" "$V" job show "$id"
has "import"; printf '%s\n' "$OUT" | grep -q "^state: *done" || fail "$OUT"
must "job show --json" "$V" job show "$id" --json
json_is "job fields" \
	'v["id"] == '"$id"' and v["state"] == "done" and v["done"] == v["total"] == 20 << 20' \
	'"state": "done"'
expect_err 1 "cancel a finished job" "has already finished" "$V" job cancel "$id"
must "delete img2" "$V" delete img2

# a snapshot keeps the old content when the vdisk changes under it: shrinking
# drops the data past 8 MiB, growing back reads zeros there
must "snapshot before" "$V" snapshot img before
must "shrink img" "$V" resize img 8M --shrink
must "grow img" "$V" resize img 20M
head -c 8M "$WORK/a.bin" > "$WORK/b.bin" && truncate -s 20M "$WORK/b.bin"
must "export changed" "$V" export img out2.bin --wait
cmp "$WORK/b.bin" "$WORK/out2.bin" || fail "changed vdisk exports wrong data"
must "export snapshot" "$V" export img@before out3.bin --wait
cmp "$WORK/a.bin" "$WORK/out3.bin" || fail "snapshot lost the old content"
must "full clone --wait" "$V" clone img@before full --full --wait
has "clone of img@before to full done"
must "export full clone" "$V" export full out4.bin --wait
cmp "$WORK/a.bin" "$WORK/out4.bin" || fail "full clone differs"
must "full clone without --wait" "$V" clone img@before full2 --full
printf '%s\n' "$OUT" | grep -q "^job [0-9]* started: clone img@before -> full2$" || fail "$OUT"
wait_job "$(printf '%s\n' "$OUT" | sed -n 's/^job \([0-9]*\) started.*/\1/p')"
must "jobs" "$V" jobs
printf '%s\n' "$OUT" | head -n 1 | grep -q "^ID  *TYPE  *STATE  *PROGRESS  *SOURCE  *TARGET$" ||
	fail "$OUT"
has "import"; has "export"; has "clone"
must "jobs --json" "$V" jobs --json
json_is "jobs is an array" 'len(v) >= 5 and all(j["state"] in ("running", "done") for j in v)' \
	'"type": "export"'
must "fsck" "$V" fsck
has "clean"
must "fsck --json" "$V" fsck --json
json_is "fsck answer" 'v["clean"] is True and v["problems"] == [] and "ok" not in v' '"clean": true'

# Ctrl-C while waiting stops the waiting, not the job (the job may also be
# done before the signal: then the wait simply succeeded)
dd if=/dev/urandom of="$WORK/c.bin" bs=1M count=100 status=none
"$V" import c.bin big --wait >/dev/null 2>"$WORK/int.err" &
VPID=$!
sleep 0.05
kill -INT $VPID
wait $VPID
rc=$?
if [ $rc -eq 130 ]; then
	grep -q "^vdisk: stopped waiting; job [0-9]* keeps running" "$WORK/int.err" ||
		fail "$(cat "$WORK/int.err")"
	echo "ok: SIGINT stopped the waiting"
else
	[ $rc -eq 0 ] || fail "import interrupted: exit $rc: $(cat "$WORK/int.err")"
fi
while "$V" info big | grep -q "^state: *building"; do sleep 0.2; done
must "delete big" "$V" delete big
if command -v script >/dev/null 2>&1; then
	script -qc "$V import c.bin big2 --wait" /dev/null > "$WORK/tty.out" 2>&1 </dev/null
	grep -q "import of big2 done" "$WORK/tty.out" ||
		fail "no end line on a terminal: $(cat "$WORK/tty.out")"
	must "delete big2" "$V" delete big2
fi

# ---- a restart keeps everything (once the jobs freeing space are done)
while "$V" jobs | grep -q " running "; do sleep 0.2; done
stop_blockd
start_blockd
must "list after restart" "$V" list --json
json_is "vdisks after restart" \
	'[d["name"] for d in v] == ["full", "full2", "img"] and v[2]["snapshots"] == ["before"]' \
	'"before"'
rm -f "$WORK/out4.bin"
must "export after restart" "$V" export img@before out4.bin --wait
cmp "$WORK/a.bin" "$WORK/out4.bin" || fail "snapshot differs after restart"
must "fsck after restart" "$V" fsck
must "rollback" "$V" rollback img@before
must "export after rollback" "$V" export img out5.bin --wait
cmp "$WORK/a.bin" "$WORK/out5.bin" || fail "rollback did not restore the snapshot"

# ---- scrub: every stored block read back against its checksum; a block
# spoiled on the disk while blockd was down is found and placed
head -c 1048576 /dev/urandom >"$WORK/s.bin"
printf 'kura-scrub-mark-7f3a9c' | dd of="$WORK/s.bin" bs=4096 seek=128 conv=notrunc 2>/dev/null
must "import for scrub" "$V" import s.bin sc --wait
must "scrub --wait" "$V" scrub sc --wait
printf '%s\n' "$OUT" | grep -q "^scrub of sc done: 1.0 MiB read and checked in [0-9.]* s; every block read back as written$" ||
	fail "scrub said: $OUT"
stop_blockd
hits=$(grep -obUa "kura-scrub-mark-7f3a9c" "$WORK/disk.img" | cut -d: -f1)
[ -n "$hits" ] || fail "the scrub mark is not on the disk"
for off in $hits; do
	printf 'X' | dd of="$WORK/disk.img" bs=1 seek=$((off + 100)) conv=notrunc 2>/dev/null
done
start_blockd
expect_err 1 "scrub finds the spoiled block" \
	"scrub of sc: 1 block does not read (the data there is lost): write it again, or restore it from a backup$" \
	"$V" scrub sc --wait
"$V" scrub sc --wait >"$WORK/scrub.out" 2>/dev/null
grep -q "^  offset 524288 (4 KiB block 128)$" "$WORK/scrub.out" || fail "scrub placed: $(cat "$WORK/scrub.out")"
grep -q "1020.0 KiB read and checked in" "$WORK/scrub.out" || fail "scrub read: $(cat "$WORK/scrub.out")"
id=$("$V" jobs --json | tr -d ' \n' | sed 's/.*"id":\([0-9]*\),"type":"scrub".*/\1/')
must "job show of a scrub" "$V" job show "$id"
has "bad blocks:"
printf '%s\n' "$OUT" | grep -q "^  offset 524288 (4 KiB block 128)$" || fail "job show: $OUT"
must "scrub without --wait" "$V" scrub sc
has "started: scrub"
must "job show --json of a scrub" "$V" job show "$id" --json
json_is "scrub job record" 'v["bad_blocks"] == 1 and v["bad"][0]["offset"] == 524288 and v["scrub_bytes"] == 1044480' '"bad_blocks": 1'
while "$V" jobs | grep -q " running "; do sleep 0.2; done
must "info after the scrubs" "$V" info sc
printf '%s\n' "$OUT" | grep -q "^last scrub: .*, some blocks did not read" || fail "info: $OUT"
has "bad blocks:"
must "info of a vdisk never scrubbed" "$V" info img
printf '%s\n' "$OUT" | grep -q "^last scrub: *never$" || fail "info: $OUT"
must "delete the scrubbed vdisk" "$V" delete sc
# periodic scrubs: every vdisk whose last scrub (or creation) is older
# than --scrub-every gets one, one at a time
while "$V" jobs | grep -q " running "; do sleep 0.2; done
stop_blockd
start_blockd --scrub-every 2s
scrubbed_all() {
	for n in full full2 img; do
		"$V" info "$n" | grep -q "^last scrub: .*every block read back as written$" || return 1
	done
}
i=0
until scrubbed_all; do
	i=$((i + 1)); [ $i -lt 150 ] || fail "periodic scrubs did not reach every vdisk: $(grep 'periodic scrub' "$WORK/blockd.log")"
	sleep 0.2
done
[ "$(grep -c "periodic scrub of .* (never scrubbed)" "$WORK/blockd.log")" -ge 3 ] ||
	fail "periodic scrubs not logged: $(grep 'scrub' "$WORK/blockd.log")"
echo "ok: --scrub-every 2s scrubbed every vdisk"
while "$V" jobs | grep -q " running "; do sleep 0.2; done
stop_blockd
start_blockd
expect_err 2 "--scrub-every with a bad time" "--scrub-every 1w: expected a time like 30d, 12h or 30s" \
	"$BUILD/blockd" --data "$WORK/unused" --scrub-every 1w

# a dead blockd leaves its socket behind: refused, and said so
kill -9 $BPID; wait $BPID 2>/dev/null
# io_uring may hold the listening socket a moment after the process is gone
i=0
while "$V" list 2>&1 | grep -q "closed the connection"; do
	i=$((i + 1)); [ $i -lt 50 ] || fail "socket of a killed blockd still accepts"
	sleep 0.1
done
expect_err 1 "blockd killed" \
	"cannot reach blockd at $D/blockd.sock (Connection refused); start it with: blockd --data $D$" \
	"$V" list

# ---- fake servers: answers in pieces, no answer, a long answer, an error
if [ $HAVE_PY -eq 1 ]; then
	cat > "$WORK/fake.py" <<'EOF'
import json, socket, sys, time
path, mode = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(1)
c, _ = s.accept()
req = b""
while not req.endswith(b"\n"):
    req += c.recv(4096)
vd = lambda i: {"name": "vd%05d" % i, "size": 4096, "allocated": 0, "unique": 0,
                "parent": None, "snapshots": [], "depth": 1, "created": 1795000000,
                "state": "ready", "job": None}
if mode == "split":
    ans = json.dumps({"ok": True, "vdisks": [vd(1), vd(2)]}).encode() + b"\n"
    for i in range(0, len(ans), 7):
        c.sendall(ans[i:i + 7])
        time.sleep(0.002)
elif mode == "big":
    c.sendall(json.dumps({"ok": True, "vdisks": [vd(i) for i in range(3000)]}).encode() + b"\n")
elif mode == "error":
    c.sendall(b'{"ok": false, "error": "the disk is on fire", "code": "EIO"}\n')
c.close()
EOF
	for mode in split big close error; do
		rm -f "$WORK/fake.sock"
		python3 "$WORK/fake.py" "$WORK/fake.sock" $mode &
		FPID=$!
		PIDS="$PIDS $FPID"
		wait_socket "$WORK/fake.sock"
		case $mode in
		split)
			must "answer in pieces" "$V" --socket "$WORK/fake.sock" list
			has "vd00001"; has "vd00002" ;;
		big)
			must "answer over 64 KiB" "$V" --socket "$WORK/fake.sock" list --json
			json_is "long answer whole" 'len(v) == 3000 and v[2999]["name"] == "vd02999"' vd02999 ;;
		close)
			expect_fail "server closes" "blockd at $WORK/fake.sock closed the connection before answering" \
				"$V" --socket "$WORK/fake.sock" list ;;
		error)
			expect_fail "server error as is" "^vdisk: the disk is on fire$" \
				"$V" --socket "$WORK/fake.sock" list ;;
		esac
		wait $FPID
	done
else
	echo "python3 not found: fake-server checks skipped"
fi
echo "all vdisk command checks passed"
