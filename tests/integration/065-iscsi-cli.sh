# vdisk iscsi list/show/acl/chap against a real blockd, checked with a real
# initiator (iscsi-inq): an ACL keeps other initiators out, CHAP refuses a
# wrong secret and lets the right one in, refusals are logged, and the
# settings survive a restart.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/iscsi-lib.sh"
have iscsi-inq || { echo "iscsi-inq missing (Debian libiscsi-bin; make deps)"; exit 77; }
port=$(free_port 21460)
start_kura "$WORK/k" "$port"
V="$BUILD/vdisk --socket $KURA_SOCK"
url="iscsi://127.0.0.1:$port/${IQN_PREFIX}vm1/0"
H1=iqn.2024-01.org.example:host1
H2=iqn.2024-01.org.example:host2
login() { iscsi-inq "$@" >/dev/null 2>&1; }

$V create vm1 64M >/dev/null && $V snapshot vm1 s1 >/dev/null || fail "setup"
out=$($V iscsi list) || fail "iscsi list"
echo "$out" | grep -q "portal 127.0.0.1:$port" || fail "iscsi list: no portal line: $out"
echo "$out" | grep -q "${IQN_PREFIX}vm1 .*rw .*any *none" || fail "iscsi list: vm1 row: $out"
echo "$out" | grep -q "${IQN_PREFIX}vm1:s1 .*ro" || fail "iscsi list: snapshot row: $out"
$V iscsi show vm1 | grep -q "any initiator" || fail "iscsi show: empty ACL not explained"
login -i "$H2" "$url" || fail "an empty ACL must let any initiator in"

$V iscsi acl vm1 add "$H1" >/dev/null || fail "acl add"
expect_fail "acl add twice" "already on the ACL" $V iscsi acl vm1 add "$H1"
expect_fail "acl bad name" "is not an initiator name" $V iscsi acl vm1 add NotAnIQN
expect_fail "acl bad action" "add or remove" $V iscsi acl vm1 grant "$H1"
expect_fail "acl unknown vdisk" "no vdisk 'nope'" $V iscsi acl nope add "$H1"
login -i "$H1" "$url" || fail "an initiator on the ACL was refused"
login -i "$H2" "$url" && fail "an initiator not on the ACL logged in"
grep -q "login refused: initiator $H2 .*not on the target's ACL" "$WORK/k.log" || fail "no log line for the ACL refusal"
echo "ok: ACL"

expect_fail "chap short secret" "12 to 255 characters" $V iscsi chap vm1 alice short
expect_fail "chap mutual half" "--mutual needs" $V iscsi chap vm1 alice secret123456789 --mutual tgt
echo secret123456789 | $V iscsi chap vm1 alice - >/dev/null || fail "chap set (secret on stdin)"
login -i "$H1" "$url" && fail "a login without CHAP got in"
login -i "$H1" "iscsi://alice%wrongsecret999@127.0.0.1:$port/${IQN_PREFIX}vm1/0" && fail "a wrong CHAP secret got in"
grep -q "wrong CHAP user or secret" "$WORK/k.log" || fail "no log line for the CHAP refusal"
login -i "$H1" "iscsi://alice%secret123456789@127.0.0.1:$port/${IQN_PREFIX}vm1/0" || fail "the right CHAP secret was refused"
$V iscsi show vm1 --json | grep -q '"user": "alice"' || fail "show --json lacks the CHAP user"
$V iscsi show vm1 --json | grep -q secret123 && fail "a secret was shown"
echo "ok: CHAP"

stop_kura
start_kura "$WORK/k" "$port"
$V iscsi show vm1 | grep -q "$H1" || fail "the ACL did not survive a restart"
login -i "$H1" "iscsi://alice%secret123456789@127.0.0.1:$port/${IQN_PREFIX}vm1/0" || fail "CHAP did not survive a restart"
login -i "$H1" "$url" && fail "CHAP was lost over a restart"
$V iscsi chap vm1 --clear >/dev/null && $V iscsi acl vm1 remove "$H1" >/dev/null || fail "clear"
expect_fail "acl remove absent" "is not on the ACL" $V iscsi acl vm1 remove "$H1"
login -i "$H2" "$url" || fail "after clearing, any initiator should log in"
$V iscsi show vm1@s1 | grep -q "read-only" || fail "snapshot target not read-only"
echo "ok: settings survive restarts and clear"
stop_kura
