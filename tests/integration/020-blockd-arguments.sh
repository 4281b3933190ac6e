# Bad arguments end with one clear line and a non-zero exit; nothing is damaged.
. "$(dirname "$0")/lib.sh"
B="$BUILD/blockd"
expect_fail "unknown flag" "unknown option --bogus" "$B" --bogus
expect_fail "missing --data" "--data DIR is required" "$B"
expect_fail "bad disk size" "expected PATH or PATH,size=SIZE" "$B" --data "$WORK/d0" --disk "$WORK/x.img,size=lots"
mkdir -p "$WORK/ro" && chmod 0500 "$WORK/ro"
if [ "$(id -u)" -ne 0 ]; then
	expect_fail "unwritable dir" "not writable" "$B" --data "$WORK/ro"
fi
expect_fail "dir under a file" "Not a directory" "$B" --data /etc/passwd/x
expect_fail "disk too small" "is too small" "$B" --data "$WORK/d1" --disk "$WORK/small.img,size=20M"
mkdir "$WORK/other" && echo precious > "$WORK/other/file"
expect_fail "foreign dir" "not empty and holds no kura store" "$B" --data "$WORK/other"
[ "$(cat "$WORK/other/file")" = precious ] || fail "foreign dir was touched"
mkdir "$WORK/newer" && printf 'kura store\nformat 99\nuuid 1b4e28ba-2fa1-11d2-883f-0016d3cca427\n' > "$WORK/newer/KURA"
expect_fail "newer format" "newer kura (format 99)" "$B" --data "$WORK/newer"
head -c 4096 /dev/urandom > "$WORK/junk.img"; truncate -s 64M "$WORK/junk.img"
cp "$WORK/junk.img" "$WORK/junk.orig"
expect_fail "disk with other data" "not kura's" "$B" --data "$WORK/d2" --disk "$WORK/junk.img"
cmp -s "$WORK/junk.img" "$WORK/junk.orig" || fail "foreign disk was modified"
expect_fail "bad iSCSI portal" "bad iSCSI portal 'nowhere'" "$B" --data "$WORK/d3" --iscsi nowhere
expect_fail "iSCSI portal port 0" "bad iSCSI portal" "$B" --data "$WORK/d4" --iscsi 127.0.0.1:0

# a running store: its dir and its disk are refused to a second blockd
"$B" --data "$WORK/s1" --disk "$WORK/s1.img,size=64M" --journal-size 16M 2>"$WORK/s1.log" &
PIDS="$PIDS $!"
wait_socket "$WORK/s1/blockd.sock"
expect_fail "second blockd on the dir" "in use by another blockd" "$B" --data "$WORK/s1"
expect_fail "disk used by another blockd" "in use by another process" "$B" --data "$WORK/s2" --disk "$WORK/s1.img"
kill -TERM $!; wait $! || fail "blockd did not stop cleanly"
grep -q "stopped cleanly" "$WORK/s1.log" || fail "no clean stop line"
expect_fail "disk of another store" "belongs to another kura store" "$B" --data "$WORK/s3" --disk "$WORK/s1.img"
# the store still opens, with its disk remembered
"$B" --data "$WORK/s1" 2>"$WORK/s1b.log" &
PIDS="$PIDS $!"
wait_socket "$WORK/s1/blockd.sock"
grep -q "s1.img" "$WORK/s1b.log" || fail "recorded disk not reopened"
kill -TERM $!; wait $!
echo "all argument checks passed"
