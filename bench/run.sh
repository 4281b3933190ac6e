#!/bin/sh
# make bench: the store through its own API against fio on the same file,
# then vdisk snapshots, clones, deletes, deep chains, import and export,
# the iSCSI target against tgt, guest latency under clones, and replicated
# writes with 1, 2 and 3 replicas on three namespace hosts, and resync and
# rebuild on four, and a vdisk served by the cluster against one node.
# BENCH_DIR (default /var/tmp/kura-bench), BENCH_RUNTIME seconds per run (6),
# BENCH_SIZE region (1G), BENCH_FILE size of the import/export file (1G).
set -e
BUILD=${1:-build}
DIR=${BENCH_DIR:-/var/tmp/kura-bench}
rm -rf "$DIR"
mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT
"$BUILD/kura-bench-store" --dir "$DIR/store" --size "${BENCH_SIZE:-1G}" --runtime "${BENCH_RUNTIME:-6}"
rm -rf "$DIR/store"
"$BUILD/kura-bench-vdisk" --dir "$DIR/vdisk" --runtime "${BENCH_RUNTIME:-6}" --file-size "${BENCH_FILE:-1G}"
sh "$(dirname "$0")/iscsi_bench.sh" "$BUILD"
sh "$(dirname "$0")/qos_bench.sh" "$BUILD"
echo "== replicated writes, RF 1, 2, 3 (three namespace hosts)"
sh "$(dirname "$0")/cluster_bench.sh" "$BUILD" || echo "cluster bench: exit $? (77: skipped)"
echo "== resync and rebuild, RF 3 (four namespace hosts)"
sh "$(dirname "$0")/cluster_rebuild.sh" "$BUILD" || echo "cluster rebuild bench: exit $? (77: skipped)"
echo "== guest writes during a rebuild, with rebuild pacing and without (four namespace hosts)"
sh "$(dirname "$0")/rebuild_qos.sh" "$BUILD" || echo "rebuild qos bench: exit $? (77: skipped)"
echo "== vdisks served by the cluster (RF 3, three namespace hosts) against one node"
sh "$(dirname "$0")/cluster_vdisk.sh" "$BUILD" || echo "cluster vdisk bench: exit $? (77: skipped)"
