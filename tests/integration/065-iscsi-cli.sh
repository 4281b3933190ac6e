# vdisk iscsi list/show/acl/chap: the help, every refused command line with
# its one error line and exit status, then against a real blockd (iSCSI off,
# then on a free port): every command, --json parsed, and each setting
# checked with a real initiator (iscsi-inq, iscsi-ls, iscsi-perf of
# libiscsi): an ACL keeps other initiators out of login and discovery,
# one-way CHAP refuses a missing or wrong secret, mutual CHAP proves the
# target to the initiator, secrets are never shown, and the settings
# survive a restart of blockd.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/iscsi-lib.sh"
for t in iscsi-inq iscsi-ls iscsi-perf; do
	have $t || { echo "$t missing (Debian libiscsi-bin; make deps)"; exit 77; }
done
V="$BUILD/vdisk"
HAVE_PY=0
have python3 && HAVE_PY=1
cd "$WORK" || fail "cd $WORK"
# A secret given as - is read from standard input, asked for on a terminal:
# here it is never a terminal.
exec </dev/null
PERF_PID=
stop_perf() {
	[ -n "$PERF_PID" ] || return 0
	# iscsi-perf runs under timeout: kill it too, or it lives on and logs
	# in again to the next blockd on the port
	pkill -9 -P "$PERF_PID" 2>/dev/null
	kill -9 "$PERF_PID" 2>/dev/null; wait "$PERF_PID" 2>/dev/null
	PERF_PID=
}
trap 'stop_perf; cleanup' EXIT INT TERM

# expect_err STATUS "what" "text" cmd...: expect_fail (text is a grep
# pattern: write [ as .), and exit status STATUS.
expect_err() {
	st=$1; shift
	expect_fail "$@"
	shift 2
	"$@" >/dev/null 2>&1 </dev/null; rc=$?
	[ $rc -eq "$st" ] || fail "exit status $rc, wanted $st: $*"
}
# must "what" cmd...: cmd succeeds and is silent on stderr; its stdout is in $OUT.
must() {
	what=$1; shift
	OUT=$("$@" 2>"$WORK/stderr") || fail "$what: exit $?: $(cat "$WORK/stderr")"
	[ ! -s "$WORK/stderr" ] || fail "$what: wrote to stderr: $(cat "$WORK/stderr")"
	echo "ok: $what"
}
# has "text" / hasnt "text": the last $OUT contains text, or does not.
has() {
	printf '%s\n' "$OUT" | grep -qF -- "$1" || fail "expected '$1' in: $OUT"
}
hasnt() {
	printf '%s\n' "$OUT" | grep -qF -- "$1" && fail "did not expect '$1' in: $OUT"
	return 0
}
# row PATTERN: a line of $OUT matches the extended regular expression.
row() {
	printf '%s\n' "$OUT" | grep -qE -- "$1" || fail "no line like '$1' in: $OUT"
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
# login WHAT IQN URL / refused WHAT IQN URL: iscsi-inq logs in as IQN (it
# logs out again at once), or is refused.
login() {
	timeout -k 5 30 iscsi-inq -i "$2" "$3" >/dev/null 2>"$WORK/inq.err" ||
		fail "$1: $2 could not log in to $3: $(cat "$WORK/inq.err")"
	echo "ok: login: $1"
}
refused() {
	timeout -k 5 30 iscsi-inq -i "$2" "$3" >/dev/null 2>"$WORK/inq.err" &&
		fail "$1: $2 logged in to $3"
	grep -q "Login Failed" "$WORK/inq.err" ||
		fail "$1: iscsi-inq failed for another reason than its login: $(cat "$WORK/inq.err")"
	echo "ok: refused: $1 ($(head -n 1 "$WORK/inq.err"))"
}

H1=iqn.2024-01.org.example:host1
H2=iqn.2024-01.org.example:host2
S1=secret123456789
S2=targetsecret42

# ---- without blockd: help and everything refused before asking it
must "help" "$V" help
for c in "iscsi list" "iscsi show" "iscsi acl" "iscsi chap" "iscsi cache"; do
	printf '%s\n' "$OUT" | grep -q "^  $c " || fail "help lacks $c"
	"$V" $c --help | head -n 1 | grep -q "^usage: vdisk $c" || fail "$c --help"
done
must "iscsi --help" "$V" iscsi --help
for c in list show acl chap cache; do has "usage: vdisk iscsi $c"; done
must "help iscsi" "$V" help iscsi
has "usage: vdisk iscsi chap NAME[@SNAP] USER SECRET [--mutual USER SECRET] | --clear"
must "iscsi chap --help" "$V" iscsi chap --help
has "read from standard input"; has "process list"; has "12 to 255 characters"
must "iscsi acl --help" "$V" iscsi acl --help
has "While the ACL is empty any initiator"
must "iscsi show --help" "$V" iscsi show --help
has "An empty ACL means that any initiator"
must "iscsi cache --help" "$V" iscsi cache --help
has "usage: vdisk iscsi cache NAME writeback|writethrough"; has "ESXi does not"
expect_err 2 "cache, bad mode" \
	"the second argument must be writeback or writethrough, not 'on'; usage: vdisk iscsi cache NAME writeback|writethrough" \
	"$V" iscsi cache vm1 on
expect_err 2 "cache without a mode" "iscsi cache needs more arguments" "$V" iscsi cache vm1
expect_err 1 "cache of a snapshot" "vm1@s1 is a read-only snapshot target: it has no write cache" \
	"$V" iscsi cache vm1@s1 writeback

expect_err 2 "iscsi without subcommand" \
	"iscsi needs a subcommand; usage: vdisk iscsi list .--json., or vdisk iscsi show NAME.@SNAP. .--json., or vdisk iscsi acl NAME.@SNAP. add|remove IQN, or vdisk iscsi chap" \
	"$V" iscsi
expect_err 2 "unknown iscsi subcommand" "unknown command 'iscsi frob'; usage: vdisk iscsi list" \
	"$V" iscsi frob
expect_err 2 "list with an argument" "iscsi list has too many arguments; usage: vdisk iscsi list .--json." \
	"$V" iscsi list vm1
expect_err 2 "show without a name" "iscsi show needs more arguments; usage: vdisk iscsi show NAME.@SNAP. .--json." \
	"$V" iscsi show
expect_err 2 "acl without the IQN" "iscsi acl needs more arguments" "$V" iscsi acl vm1 add
expect_err 2 "acl with --json" "iscsi acl does not take --json" "$V" iscsi acl vm1 add "$H1" --json
expect_err 2 "acl bad action" \
	"the second argument must be add or remove, not 'grant'; usage: vdisk iscsi acl NAME.@SNAP. add|remove IQN" \
	"$V" iscsi acl vm1 grant "$H1"
expect_err 2 "chap without USER" "give the USER and SECRET initiators must log in with, or --clear" \
	"$V" iscsi chap vm1
expect_err 2 "chap without SECRET" "USER needs a SECRET" "$V" iscsi chap vm1 alice
expect_err 2 "chap, four arguments" "mutual CHAP takes --mutual and a second USER and SECRET" \
	"$V" iscsi chap vm1 alice $S1 tgt
expect_err 2 "chap, five without --mutual" "a second USER and SECRET need --mutual" \
	"$V" iscsi chap vm1 alice $S1 tgt $S2
expect_err 2 "chap --mutual half" "--mutual needs a second USER and SECRET, the target's" \
	"$V" iscsi chap vm1 alice $S1 --mutual tgt
expect_err 2 "chap --clear with more" "--clear takes only the target's NAME" \
	"$V" iscsi chap vm1 alice --clear
expect_err 2 "chap --clear --mutual" "--clear takes only the target's NAME" \
	"$V" iscsi chap vm1 --clear --mutual
expect_err 2 "chap --json" "iscsi chap does not take --json" "$V" iscsi chap vm1 --clear --json
expect_err 2 "too many arguments" "iscsi chap has too many arguments" \
	"$V" iscsi chap vm1 a b c d e

expect_err 1 "acl, not a name" \
	"'NotAnIQN' is not an initiator name: it does not start with iqn., eui. or naa.; use iqn.YYYY-MM.reverse.domain.:name., eui.<16 hex> or naa.<16 or 32 hex>" \
	"$V" iscsi acl vm1 add NotAnIQN
expect_err 1 "acl, capitals" \
	"'IQN.2024-01.org.Example:Host1' is not an initiator name: iSCSI names are written in lower case: iqn.2024-01.org.example:host1" \
	"$V" iscsi acl vm1 add IQN.2024-01.org.Example:Host1
expect_err 1 "acl, no date" "iqn. must be followed by a date YYYY-MM and a dot" \
	"$V" iscsi acl vm1 add iqn.2024-1.org.example
expect_err 1 "acl, month 13" "its date has no month 01 to 12" "$V" iscsi acl vm1 add iqn.2024-13.org.example
expect_err 1 "acl, no domain" "it has no domain name after the date" "$V" iscsi acl vm1 add iqn.2024-01.:x
expect_err 1 "acl, empty label" "its domain name has an empty part between dots" \
	"$V" iscsi acl vm1 add iqn.2024-01.org..example
expect_err 1 "acl, trailing colon" "it ends with ':'" "$V" iscsi acl vm1 add iqn.2024-01.org.example:
expect_err 1 "acl, a blank" "it holds a character that is not a-z, 0-9, '.', '-' or ':'" \
	"$V" iscsi acl vm1 add "iqn.2024-01.org.example:a b"
expect_err 1 "acl, short eui" "eui. must be followed by 16 hex digits" "$V" iscsi acl vm1 add eui.0123
expect_err 1 "acl, naa not hex" "naa. must be followed by 16 or 32 hex digits" \
	"$V" iscsi acl vm1 add naa.0123456789abcdeg
expect_err 1 "acl, too long" "it is longer than 223 bytes" \
	"$V" iscsi acl vm1 add "iqn.2024-01.org.example:$(printf 'x%.0s' $(seq 220))"
expect_err 1 "acl, bad vdisk name" "invalid vdisk name 'bad name'" "$V" iscsi acl "bad name" add "$H1"
expect_err 1 "show, bad snapshot name" "invalid snapshot name 's/1'" "$V" iscsi show vm1@s/1
expect_err 1 "chap, short secret" "a CHAP secret must be 12 to 255 characters long, not 5" \
	"$V" iscsi chap vm1 alice short
expect_err 1 "chap, long secret" "a CHAP secret must be 12 to 255 characters long, not 256" \
	"$V" iscsi chap vm1 alice "$(printf 'x%.0s' $(seq 256))"
expect_err 1 "chap, long user" "a CHAP user name must be 1 to 255 characters long, not 256" \
	"$V" iscsi chap vm1 "$(printf 'u%.0s' $(seq 256))" $S1
expect_err 1 "chap, empty user" "a CHAP user name must be 1 to 255 characters long, not 0" \
	"$V" iscsi chap vm1 "" $S1
expect_err 1 "chap, control character" "a CHAP secret may not hold control characters" \
	"$V" iscsi chap vm1 alice "$(printf 'secret\t123456789')"
expect_err 1 "chap, long mutual user" "a CHAP mutual user name must be 1 to 255 characters long" \
	"$V" iscsi chap vm1 alice $S1 --mutual "$(printf 'u%.0s' $(seq 256))" $S2
expect_err 1 "chap, short mutual secret" "a CHAP mutual secret must be 12 to 255 characters long, not 3" \
	"$V" iscsi chap vm1 alice $S1 --mutual tgt abc
expect_err 1 "chap, same secrets" "the mutual CHAP secret must differ from the initiator's" \
	"$V" iscsi chap vm1 alice $S1 --mutual tgt $S1
# secrets on standard input (expect_err gives the command /dev/null)
expect_err 1 "chap, empty standard input" "no CHAP secret of user alice on standard input: give it as one line" \
	"$V" iscsi chap vm1 alice -
printf 'short\n' >"$WORK/short.in"
printf '%0300d\n' 0 >"$WORK/long.in"
printf '%s\n' $S1 >"$WORK/one.in"
expect_fail "chap, short secret on stdin" "a CHAP secret must be 12 to 255 characters long, not 5" \
	sh -c "exec \"$V\" iscsi chap vm1 alice - <\"$WORK/short.in\""
expect_fail "chap, long line on stdin" "the line on standard input is longer" \
	sh -c "exec \"$V\" iscsi chap vm1 alice - <\"$WORK/long.in\""
expect_fail "chap, one line for two secrets" "no mutual CHAP secret of user tgt on standard input" \
	sh -c "exec \"$V\" iscsi chap vm1 alice - --mutual tgt - <\"$WORK/one.in\""
export KURA_SOCKET="$WORK/none.sock"
expect_err 1 "blockd not running" "cannot reach blockd at $WORK/none.sock" "$V" iscsi list
unset KURA_SOCKET

# ---- blockd with iSCSI off: the settings can be made, nothing is served
"$BUILD/blockd" --data "$WORK/off" --iscsi off 2>>"$WORK/off.log" &
OFF_PID=$!
PIDS="$PIDS $OFF_PID"
wait_socket "$WORK/off/blockd.sock"
VO="$V --socket $WORK/off/blockd.sock"
must "list, iSCSI off, no vdisks" $VO iscsi list
has "iSCSI is off: blockd serves no portal (start it with --iscsi ADDR:PORT)"
has "no targets"
$VO create vm1 16M >/dev/null || fail "create (iSCSI off)"
must "list, iSCSI off" $VO iscsi list
has "iSCSI is off"; row "^${IQN_PREFIX}vm1 +vm1 +rw +0 +any +none$"
must "list --json, iSCSI off" $VO iscsi list --json
json_is "portal is null when iSCSI is off" \
	"v['portal'] is None and [t['target'] for t in v['targets']] == ['${IQN_PREFIX}vm1']" '"portal": null'
must "show, iSCSI off" $VO iscsi show vm1
has "portal:      none: iSCSI is off"
must "acl add, iSCSI off" $VO iscsi acl vm1 add "$H1"
kill -TERM $OFF_PID; wait $OFF_PID || fail "blockd (iSCSI off) did not stop cleanly"

# ---- blockd serving iSCSI
port=$(free_port 21460)
start_kura "$WORK/k" "$port"
VK="$V --socket $KURA_SOCK"
# url TARGET [USER%SECRET@] [?QUERY]
url() { echo "iscsi://${2:-}127.0.0.1:$port/${IQN_PREFIX}$1/0${3:-}"; }
$VK create vm1 64M >/dev/null && $VK snapshot vm1 s1 >/dev/null && $VK create vm2 16M >/dev/null ||
	fail "setup"

must "list" $VK iscsi list
has "portal 127.0.0.1:$port"
row "^TARGET +VDISK +ACCESS +SESSIONS +ACL +CHAP$"
row "^${IQN_PREFIX}vm1 +vm1 +rw +0 +any +none$"
row "^${IQN_PREFIX}vm1:s1 +vm1@s1 +ro +0 +any +none$"
row "^${IQN_PREFIX}vm2 +vm2 +rw +0 +any +none$"
must "list --json" $VK iscsi list --json
json_is "list --json" "v['portal'] == '127.0.0.1:$port' and 'ok' not in v and \
sorted((t['target'], t['vdisk'], t['snapshot'], t['read_only'], t['sessions'], t['acl'], t['chap']) \
for t in v['targets']) == [('${IQN_PREFIX}vm1', 'vm1', None, False, 0, 0, False), \
('${IQN_PREFIX}vm1:s1', 'vm1', 's1', True, 0, 0, False), ('${IQN_PREFIX}vm2', 'vm2', None, False, 0, 0, False)]" \
	'"read_only": true'
must "show" $VK iscsi show vm1
has "target:      ${IQN_PREFIX}vm1"; has "access:      read-write"; has "portal:      127.0.0.1:$port"
has "may log in:  any initiator that reaches the portal (the ACL is empty, no CHAP)"
has "acl:         empty"; has "chap:        none"; has "sessions:    none"
must "show a snapshot" $VK iscsi show vm1@s1
has "target:      ${IQN_PREFIX}vm1:s1"; has "vdisk:       vm1@s1"; has "access:      read-only (a snapshot)"
must "show --json" $VK iscsi show vm1@s1 --json
json_is "show --json" "v == {'target': '${IQN_PREFIX}vm1:s1', 'vdisk': 'vm1', 'snapshot': 's1', \
'read_only': True, 'portal': '127.0.0.1:$port', 'acl': [], 'chap': None, 'write_cache': 'read-only', 'sessions': []}" '"snapshot": "s1"'
expect_err 1 "show an unknown vdisk" "^vdisk: no vdisk 'nope'$" $VK iscsi show nope
expect_err 1 "show an unknown snapshot" "^vdisk: no snapshot 'nosnap' of vdisk 'vm1'$" $VK iscsi show vm1@nosnap
login "empty ACL, no CHAP: anyone" "$H2" "$(url vm1)"

# ACL
must "acl add" $VK iscsi acl vm1 add "$H1"
has "added $H1 to the ACL of vm1; 1 initiator may log in"
must "acl add a second" $VK iscsi acl vm1 add eui.0123456789abcdef
has "2 initiators may log in"
must "acl add to a snapshot's target" $VK iscsi acl vm1@s1 add "$H2"
expect_err 1 "acl add twice" "^vdisk: $H1 is already on the ACL of ${IQN_PREFIX}vm1$" $VK iscsi acl vm1 add "$H1"
expect_err 1 "acl remove absent" "^vdisk: $H2 is not on the ACL of ${IQN_PREFIX}vm1$" \
	$VK iscsi acl vm1 remove "$H2"
expect_err 1 "acl, unknown vdisk" "^vdisk: no vdisk 'nope'$" $VK iscsi acl nope add "$H1"
expect_err 1 "acl, unknown snapshot" "^vdisk: no snapshot 'x' of vdisk 'vm1'$" $VK iscsi acl vm1@x add "$H1"
must "list with ACLs" $VK iscsi list
row "^${IQN_PREFIX}vm1 +vm1 +rw +0 +2 +none$"; row "^${IQN_PREFIX}vm1:s1 +vm1@s1 +ro +0 +1 +none$"
must "show with an ACL" $VK iscsi show vm1
has "may log in:  only the initiators on the ACL"; has "acl:         $H1"
row "^ {13}eui.0123456789abcdef$"
must "show --json with an ACL" $VK iscsi show vm1 --json
json_is "show --json acl" "v['acl'] == ['$H1', 'eui.0123456789abcdef']" "$H1"
login "on the ACL" "$H1" "$(url vm1)"
refused "not on the ACL" "$H2" "$(url vm1)"
grep -q "login refused: initiator $H2 .*not on the target's ACL" "$WORK/k.log" ||
	fail "no log line for the ACL refusal"
login "on the snapshot's ACL" "$H2" "$(url vm1:s1)"
refused "not on the snapshot's ACL" "$H1" "$(url vm1:s1)"
login "an open target still" "$H2" "$(url vm2)"
OUT=$(timeout -k 5 30 iscsi-ls -i "$H2" "iscsi://127.0.0.1:$port") || fail "iscsi-ls as $H2"
hasnt "Target:${IQN_PREFIX}vm1 "; has "Target:${IQN_PREFIX}vm1:s1 "; has "Target:${IQN_PREFIX}vm2 "
OUT=$(timeout -k 5 30 iscsi-ls -i "$H1" "iscsi://127.0.0.1:$port") || fail "iscsi-ls as $H1"
has "Target:${IQN_PREFIX}vm1 "; hasnt "Target:${IQN_PREFIX}vm1:s1 "
echo "ok: discovery shows a target only to the initiators on its ACL"

# one-way CHAP, the secret on standard input
OUT=$(printf '%s\n' $S1 | $VK iscsi chap vm1 alice - 2>&1) || fail "chap set from stdin: $OUT"
has "CHAP set for vm1: one-way, initiators answer as user alice"
must "list with CHAP" $VK iscsi list
row "^${IQN_PREFIX}vm1 +vm1 +rw +0 +2 +one-way$"
must "list --json with CHAP" $VK iscsi list --json
json_is "list --json chap" "[t['chap'] for t in v['targets'] if t['target'] == '${IQN_PREFIX}vm1'] == [True]" '"chap": true'
must "show with CHAP" $VK iscsi show vm1
has "may log in:  only the initiators on the ACL, with the CHAP secret"
has "chap:        one-way: initiators answer as user alice"; hasnt "$S1"
must "show --json with CHAP" $VK iscsi show vm1 --json
json_is "show --json chap" "v['chap'] == {'user': 'alice', 'mutual_user': None}" '"user": "alice"'
hasnt "$S1"; hasnt "secret"
refused "no CHAP answer" "$H1" "$(url vm1)"
refused "a wrong CHAP secret" "$H1" "$(url vm1 alice%wrongsecret999@)"
refused "a wrong CHAP user" "$H1" "$(url vm1 bob%$S1@)"
grep -q "wrong CHAP user or secret" "$WORK/k.log" || fail "no log line for the CHAP refusal"
login "the right CHAP secret" "$H1" "$(url vm1 alice%$S1@)"
refused "the right secret, not on the ACL" "$H2" "$(url vm1 alice%$S1@)"

# mutual CHAP, both secrets on standard input
OUT=$(printf '%s\n%s\n' $S1 $S2 | $VK iscsi chap vm1 alice - --mutual tgt - 2>&1) || fail "chap --mutual: $OUT"
has "CHAP set for vm1: mutual, initiators answer as user alice, the target as user tgt"
must "list with mutual CHAP" $VK iscsi list
row "^${IQN_PREFIX}vm1 +vm1 +rw +0 +2 +mutual$"
must "show with mutual CHAP" $VK iscsi show vm1
has "chap:        mutual: initiators answer as user alice, the target as user tgt"
hasnt "$S1"; hasnt "$S2"
must "show --json with mutual CHAP" $VK iscsi show vm1 --json
json_is "show --json mutual" "v['chap'] == {'user': 'alice', 'mutual_user': 'tgt'}" '"mutual_user": "tgt"'
login "mutual CHAP" "$H1" "$(url vm1 alice%$S1@ "?target_user=tgt&target_password=$S2")"
refused "mutual CHAP, the target's secret is not the one the initiator knows" "$H1" \
	"$(url vm1 alice%$S1@ "?target_user=tgt&target_password=wrongsecret12")"
login "one-way from an initiator that does not ask" "$H1" "$(url vm1 alice%$S1@)"
# a snapshot's target has CHAP of its own, given on the command line
must "chap on a snapshot's target" $VK iscsi chap vm1@s1 carol carolsecret123
has "CHAP set for vm1@s1: one-way, initiators answer as user carol"
refused "snapshot target without CHAP" "$H2" "$(url vm1:s1)"
login "snapshot target with CHAP" "$H2" "$(url vm1:s1 carol%carolsecret123@)"
for s in $S1 $S2 carolsecret123; do
	grep -q "$s" "$WORK/k.log" && fail "blockd logged a secret"
done
echo "ok: CHAP"

# a session that stays: show and list name it
timeout -k 5 60 iscsi-perf -i "$H1" "$(url vm1 alice%$S1@)" >"$WORK/perf.out" 2>&1 &
PERF_PID=$!
i=0
until $VK iscsi show vm1 | grep -q "^sessions:    1$"; do
	i=$((i + 1)); [ $i -lt 150 ] || fail "the session of iscsi-perf did not show: $(cat "$WORK/perf.out")"
	sleep 0.1
done
must "show with a session" $VK iscsi show vm1
row "^  $H1 from 127\\.0\\.0\\.1:[0-9]+, isid 0x[0-9a-f]{12}, tsih [0-9]+, since 20[0-9-]+ [0-9:]+ [-+][0-9]{4}$"
must "show --json with a session" $VK iscsi show vm1 --json
json_is "show --json session" "len(v['sessions']) == 1 and v['sessions'][0]['initiator'] == '$H1' and \
v['sessions'][0]['address'].startswith('127.0.0.1:') and v['sessions'][0]['connected'] > 0 and \
v['sessions'][0]['tsih'] > 0" "$H1"
must "list with a session" $VK iscsi list
row "^${IQN_PREFIX}vm1 +vm1 +rw +1 +2 +mutual$"
stop_perf
echo "ok: sessions"

# the write cache: writethrough unless set, shown, kept over a restart
must "show before cache" $VK iscsi show vm1
has "write cache: writethrough: every write is durable when it completes"
must "cache writeback" $VK iscsi cache vm1 writeback
has "write cache of vm1: writeback (writes without FUA complete before they are durable; SYNCHRONIZE CACHE makes them so)"
must "show --json with writeback" $VK iscsi show vm1 --json
json_is "show --json writeback" "v['write_cache'] == 'writeback'" '"write_cache": "writeback"'
must "show snapshot" $VK iscsi show vm1@s1 --json
json_is "show --json snapshot cache" "v['write_cache'] == 'read-only'" '"write_cache": "read-only"'
expect_err 1 "cache of a missing vdisk" "no vdisk 'nosuch'" $VK iscsi cache nosuch writeback
grep -q "iSCSI target ${IQN_PREFIX}vm1: write cache on (writeback)" "$WORK/k.log" ||
	fail "blockd did not log the write cache change"
echo "ok: write cache"

# the settings survive a restart
$VK iscsi show vm1 --json >"$WORK/before.json" && $VK iscsi show vm1@s1 --json >"$WORK/before-s1.json" ||
	fail "show before the restart"
stop_kura || fail "blockd did not stop cleanly"
start_kura "$WORK/k" "$port"
must "show after a restart" $VK iscsi show vm1 --json
if [ $HAVE_PY -eq 1 ]; then
	for t in vm1 vm1@s1; do
		f=$WORK/before.json; [ $t = vm1 ] || f=$WORK/before-s1.json
		OUT=$($VK iscsi show $t --json) || fail "show $t after the restart"
		json_is "$t after the restart" "{k: x for k, x in v.items() if k != 'sessions'} == \
{k: x for k, x in json.load(open('$f')).items() if k != 'sessions'}" ""
	done
else
	has "$H1"; has '"mutual_user": "tgt"'
fi
refused "CHAP after the restart, no secret" "$H1" "$(url vm1)"
login "mutual CHAP after the restart" "$H1" "$(url vm1 alice%$S1@ "?target_user=tgt&target_password=$S2")"
refused "the ACL after the restart" "$H2" "$(url vm1 alice%$S1@)"
must "cache after the restart" $VK iscsi show vm1
has "write cache: writeback: writes without FUA complete"
must "cache writethrough" $VK iscsi cache vm1 writethrough
has "write cache of vm1: writethrough (every write is durable when it completes)"
login "the snapshot's settings after the restart" "$H2" "$(url vm1:s1 carol%carolsecret123@)"

# clearing
must "chap --clear" $VK iscsi chap vm1 --clear
has "CHAP cleared for vm1: initiators log in without a secret"
must "acl remove" $VK iscsi acl vm1 remove "$H1"
has "removed $H1 from the ACL of vm1; 1 initiator may log in"
must "acl remove the last" $VK iscsi acl vm1 remove eui.0123456789abcdef
has "removed eui.0123456789abcdef from the ACL of vm1; the ACL is empty: any initiator may log in"
must "show after clearing" $VK iscsi show vm1
has "may log in:  any initiator that reaches the portal (the ACL is empty, no CHAP)"; has "chap:        none"
login "anyone again" "$H2" "$(url vm1)"
# the initiator has logged out; the target counts its session until its
# loop has seen the connection close, which may be a moment later
i=0
while :; do
	must "list after clearing" $VK iscsi list
	printf '%s\n' "$OUT" | grep -qE "^${IQN_PREFIX}vm1 +vm1 +rw +0 " && break
	i=$((i + 1))
	[ $i -lt 50 ] || break
	sleep 0.1
done
row "^${IQN_PREFIX}vm1 +vm1 +rw +0 +any +none$"; row "^${IQN_PREFIX}vm1:s1 +vm1@s1 +ro +0 +1 +one-way$"

# On a terminal the secret is asked for and not echoed; Ctrl-C while it is
# asked for leaves CHAP as it was. tty_chap type|intr CMD...: runs CMD on a
# pseudo-terminal, types a secret or sends SIGINT, prints what the terminal
# showed and "status N".
tty_chap() {
	python3 - "$@" <<'PY'
import os, pty, select, signal, sys, time
mode, argv = sys.argv[1], sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
out = b""
def read_for(secs):
    global out
    end = time.time() + secs
    while time.time() < end:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                d = os.read(fd, 4096)
            except OSError:
                return
            if not d:
                return
            out += d
read_for(1)
if mode == "type":
    os.write(fd, b"ttysecret12345\n")
else:
    os.write(fd, b"ttysec")
    time.sleep(0.3)
    os.kill(pid, signal.SIGINT)
read_for(3)
_, st = os.waitpid(pid, 0)
print(out.decode(errors="replace").replace("\r", ""), end="")
print("status", os.waitstatus_to_exitcode(st))
PY
}
if [ $HAVE_PY -eq 1 ]; then
	OUT=$(tty_chap type $VK iscsi chap vm2 dave -) || fail "tty_chap"
	has "CHAP secret of user dave: "; has "CHAP set for vm2: one-way, initiators answer as user dave"
	has "status 0"; hasnt "ttysecret"
	login "the secret typed on a terminal" "$H1" "$(url vm2 dave%ttysecret12345@)"
	OUT=$(tty_chap intr $VK iscsi chap vm2 erin -) || fail "tty_chap"
	has "vdisk: interrupted; CHAP unchanged"; has "status 130"; hasnt "ttysec"
	must "show after an interrupted chap" $VK iscsi show vm2
	has "chap:        one-way: initiators answer as user dave"
	echo "ok: a secret typed on a terminal"
fi
stop_kura || fail "blockd did not stop cleanly"
echo "ok: vdisk iscsi"
