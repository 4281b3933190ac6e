# blockd killed with SIGKILL in the middle of snapshots, clones, deletes,
# rollbacks and jobs; after each restart fsck is clean and every vdisk and
# snapshot reads back as the file its data came from. (run.sh makes BUILD absolute.)
. "$(dirname "$0")/lib.sh"
seed=$(date +%s)
echo "seed $seed"
mkdir -p "$WORK/vd"
"$BUILD/kura-vdcrash" --blockd "$BUILD/blockd" --dir "$WORK/vd" \
	--cycles "${KURA_VDCRASH_CYCLES:-40}" --seed "$seed" || {
	tail -20 "$WORK/vd/blockd.log" >&2
	fail "vdisk crash test (seed $seed)"
}
