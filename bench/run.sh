#!/bin/sh
# make bench: the store through its own API against fio on the same file.
# BENCH_DIR (default /var/tmp/kura-bench), BENCH_RUNTIME seconds per run (6),
# BENCH_SIZE region (1G).
set -e
BUILD=${1:-build}
DIR=${BENCH_DIR:-/var/tmp/kura-bench}
rm -rf "$DIR"
mkdir -p "$DIR"
"$BUILD/kura-bench-store" --dir "$DIR/store" --size "${BENCH_SIZE:-1G}" --runtime "${BENCH_RUNTIME:-6}"
rm -rf "$DIR"
