# kura's etcd client (metadata/etcd.h) against a real single-member etcd on
# free 127.0.0.1 ports: values, lists, transactions, leases, watches and
# their stop flag, endpoint failover, dead endpoints and answers no etcd
# sends (kura-etcdcheck). --compact is passed because this etcd is ours alone.
# Then the catalog's etcd backend (metadata/catalog_etcd.c) on the same etcd:
# records in (kind, id) order, deletes, duplicate keys, the fence, the op
# limit, foreign keys, lost answers (kura-etcdcheck catalog).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/iscsi-lib.sh"
have etcd || { echo "etcd missing (Debian etcd-server; make deps)"; exit 77; }
have curl || { echo "curl missing (make deps)"; exit 77; }
[ -x "$BUILD/kura-etcdcheck" ] || { echo "kura-etcdcheck not built (make $BUILD/kura-etcdcheck)"; exit 77; }

cport=$(free_port 22379)
pport=$(free_port $((cport + 1)))
url=http://127.0.0.1:$cport
peer=http://127.0.0.1:$pport
etcd --name kura-test --data-dir "$WORK/etcd" --listen-client-urls "$url" \
	--advertise-client-urls "$url" --listen-peer-urls "$peer" \
	--initial-advertise-peer-urls "$peer" --initial-cluster "kura-test=$peer" \
	>"$WORK/etcd.log" 2>&1 &
EPID=$!
PIDS="$PIDS $EPID"
i=0
until curl -sf -m 1 "$url/health" 2>/dev/null | grep -q '"health":"true"'; do
	proc_gone $EPID && { tail -n 20 "$WORK/etcd.log"; fail "etcd exited"; }
	i=$((i + 1)); [ $i -lt 200 ] || { tail -n 20 "$WORK/etcd.log"; fail "etcd not ready after 10 s"; }
	sleep 0.05
done
echo "ok: etcd $(etcd --version | sed -n 's/^etcd Version: //p') serves $url"
"$BUILD/kura-etcdcheck" --endpoints "$url" --compact || fail "etcd client checks"
"$BUILD/kura-etcdcheck" catalog --endpoints "$url" || fail "etcd catalog backend checks"
