/* Background jobs: freeing layers, merging a deleted snapshot into its child,
 * flattening, full clones, import and export. A job walks a list of extents
 * in ascending order with a few in flight; everything below its cursor is
 * done, and the cursor is saved to the catalog every second, so a restart
 * resumes where it stopped. Every step is idempotent: redoing an extent after
 * a crash gives the same result. (A scrub's steps are in scrub_step.c.) */
#include "vdisk/job_int.h"

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SAVE_NS 1000000000ull
#define RETRY_NS 5000000000ull
#define KEEP_DONE_S 3600
#define MAX_RETRIES 3

static const char *const type_names[] = {
	[JOB_FREE] = "delete", [JOB_MERGE] = "delete", [JOB_FLATTEN] = "flatten",
	[JOB_CLONE] = "clone", [JOB_IMPORT] = "import", [JOB_EXPORT] = "export",
	[JOB_SCRUB] = "scrub",
};
static const char *const kind_names[] = {
	[JOB_FREE] = "free", [JOB_MERGE] = "merge", [JOB_FLATTEN] = "flatten",
	[JOB_CLONE] = "clone", [JOB_IMPORT] = "import", [JOB_EXPORT] = "export",
	[JOB_SCRUB] = "scrub",
};
static const char *const state_names[] = {
	[JOB_RUNNING] = "running", [JOB_DONE] = "done", [JOB_FAILED] = "failed",
	[JOB_CANCELLED] = "cancelled",
};

const char *vd_job_type_name(enum vd_job_type t)
{
	return type_names[t];
}

struct vd_job *vd_job_get(struct kura_vd_engine *e, uint64_t id)
{
	for (struct vd_job *j = e->jobs; j; j = j->next)
		if (j->id == id)
			return j;
	return NULL;
}

struct vd_job *vd_job_new(struct kura_vd_engine *e, enum vd_job_type type)
{
	struct vd_job *j = calloc(1, sizeof(*j)), **p;

	if (!j)
		return NULL;
	j->id = vd_new_id(e);
	j->type = type;
	j->state = JOB_RUNNING;
	j->started = (uint64_t)time(NULL);
	j->fd = -1;
	j->e = e;
	j->ready_seq = e->commit_seq + 1;
	for (p = &e->jobs; *p; p = &(*p)->next)
		;
	*p = j;
	return j;
}

void vd_job_free(struct vd_job *j)
{
	vd_chain_free(&j->chain);
	free(j->layers);
	free(j->file);
	free(j->exts);
	free(j->inflight_ext);
	if (j->fd >= 0)
		close(j->fd);
	free(j);
}

static void job_unlink(struct kura_vd_engine *e, struct vd_job *j)
{
	for (struct vd_job **p = &e->jobs; *p; p = &(*p)->next) {
		if (*p == j) {
			*p = j->next;
			vd_job_free(j);
			return;
		}
	}
}

/* ---- JSON ---- */

/* A scrub's findings: bytes read, blocks that would not read, and where
 * the first of them are (the snapshot holding each, or null: the vdisk's
 * own blocks or a layer no longer named). */
static void scrub_json(struct kura_jw *w, const struct vd_job *j)
{
	kura_jw_u64(w, "scrub_bytes", j->scrub_bytes);
	kura_jw_u64(w, "bad_blocks", j->bad_blocks);
	kura_jw_u64(w, "copies_repaired", j->copies_repaired);
	kura_jw_arr(w, "bad");
	for (unsigned i = 0; i < j->nbad; i++) {
		const struct vd_layer *l = vd_layer_get(j->e, j->bad[i].layer);

		kura_jw_obj(w, NULL);
		kura_jw_u64(w, "offset", j->bad[i].off);
		kura_jw_u64(w, "layer", j->bad[i].layer);
		if (l && l->snap[0])
			kura_jw_str(w, "snapshot", l->snap);
		else
			kura_jw_null(w, "snapshot");
		kura_jw_end(w);
	}
	kura_jw_end(w);
}

void vd_job_json(struct kura_jw *w, const char *key, const struct vd_job *j)
{
	kura_jw_obj(w, key);
	kura_jw_u64(w, "id", j->id);
	kura_jw_str(w, "type", type_names[j->type]);
	kura_jw_str(w, "kind", kind_names[j->type]);
	kura_jw_str(w, "state", state_names[j->state]);
	if (j->vname[0])
		kura_jw_str(w, "vdisk", j->vname);
	else
		kura_jw_null(w, "vdisk");
	kura_jw_str(w, "source", j->source);
	kura_jw_str(w, "target", j->target);
	kura_jw_u64(w, "done", j->done);
	kura_jw_u64(w, "total", j->total);
	kura_jw_u64(w, "rate", (uint64_t)j->rate);
	if (j->state == JOB_RUNNING && j->rate > 0 && j->total >= j->done)
		kura_jw_u64(w, "eta", (uint64_t)((double)(j->total - j->done) / j->rate + 0.5));
	else
		kura_jw_null(w, "eta");
	kura_jw_u64(w, "started", j->started);
	if (j->finished)
		kura_jw_u64(w, "finished", j->finished);
	else
		kura_jw_null(w, "finished");
	if (j->error[0])
		kura_jw_str(w, "error", j->error);
	else
		kura_jw_null(w, "error");
	/* What a restart needs to resume it. */
	kura_jw_u64(w, "vdisk_id", j->vdisk);
	kura_jw_u64(w, "src", j->src);
	kura_jw_u64(w, "dst", j->dst);
	kura_jw_u64(w, "cursor", j->cursor);
	kura_jw_u64(w, "size", j->size);
	if (j->file)
		kura_jw_str(w, "file", j->file);
	kura_jw_arr(w, "layers");
	for (unsigned i = 0; i < j->nlayers; i++)
		kura_jw_u64(w, NULL, j->layers[i]);
	kura_jw_end(w);
	if (j->type == JOB_SCRUB)
		scrub_json(w, j);
	kura_jw_end(w);
}

static int str_field(const struct kura_json *o, const char *k, char *dst, size_t cap)
{
	const char *s;
	int err = kura_json_get_str(o, k, &s);

	if (err == -ENOENT || kura_json_type(kura_json_get(o, k)) == KURA_JSON_NULL) {
		dst[0] = '\0';
		return 0;
	}
	if (err)
		return err;
	snprintf(dst, cap, "%s", s);
	return 0;
}

static int job_kind(const char *s, enum vd_job_type *out)
{
	for (unsigned i = 0; i < KURA_ARRAY_SIZE(kind_names); i++) {
		if (!strcmp(s, kind_names[i])) {
			*out = (enum vd_job_type)i;
			return 0;
		}
	}
	return -EINVAL;
}

int vd_job_from_json(struct kura_vd_engine *e, uint64_t id, const struct kura_json *o)
{
	const struct kura_json *arr = kura_json_get(o, "layers");
	const char *kind = NULL, *file = NULL;
	enum vd_job_type type;
	struct vd_job *j;
	int err;

	if (kura_json_get_str(o, "kind", &kind) || job_kind(kind, &type))
		return -EINVAL;
	j = vd_job_new(e, type);
	if (!j)
		return -ENOMEM;
	e->next_id--; /* vd_job_new took an id; this job has its own */
	j->id = id;
	j->ready_seq = 0;
	err = kura_json_get_u64(o, "vdisk_id", &j->vdisk);
	err = err ? err : kura_json_get_u64(o, "src", &j->src);
	err = err ? err : kura_json_get_u64(o, "dst", &j->dst);
	err = err ? err : kura_json_get_u64(o, "cursor", &j->cursor);
	err = err ? err : kura_json_get_u64(o, "size", &j->size);
	err = err ? err : kura_json_get_u64(o, "started", &j->started);
	err = err ? err : str_field(o, "vdisk", j->vname, sizeof(j->vname));
	err = err ? err : str_field(o, "source", j->source, sizeof(j->source));
	err = err ? err : str_field(o, "target", j->target, sizeof(j->target));
	if (!err && !kura_json_get_str(o, "file", &file) && !(j->file = strdup(file)))
		err = -ENOMEM;
	if (!err && kura_json_type(arr) == KURA_JSON_ARR && kura_json_len(arr)) {
		j->nlayers = (unsigned)kura_json_len(arr);
		j->layers = calloc(j->nlayers, sizeof(*j->layers));
		for (unsigned i = 0; !err && i < j->nlayers; i++)
			err = j->layers ? kura_json_u64(kura_json_at(arr, i), &j->layers[i]) : -ENOMEM;
	}
	if (!err && type == JOB_SCRUB) {
		const struct kura_json *bad = kura_json_get(o, "bad");

		kura_json_get_u64(o, "scrub_bytes", &j->scrub_bytes);
		kura_json_get_u64(o, "bad_blocks", &j->bad_blocks);
		kura_json_get_u64(o, "copies_repaired", &j->copies_repaired);
		for (size_t i = 0; i < kura_json_len(bad) && j->nbad < VD_SCRUB_KEEP; i++) {
			const struct kura_json *b = kura_json_at(bad, i);
			struct vd_bad *d = &j->bad[j->nbad];

			if (!kura_json_get_u64(b, "offset", &d->off) &&
			    !kura_json_get_u64(b, "layer", &d->layer))
				j->nbad++;
		}
	}
	if (err)
		job_unlink(e, j);
	return err;
}

/* ---- progress ---- */

static void job_rate(struct vd_job *j, uint64_t now)
{
	if (!j->rate_t0) {
		j->rate_t0 = now;
		j->rate_b0 = j->done;
		return;
	}
	if (now - j->rate_t0 >= 500000000ull) {
		double r = (double)(j->done - j->rate_b0) * 1e9 / (double)(now - j->rate_t0);
		j->rate = j->rate > 0 ? 0.5 * j->rate + 0.5 * r : r;
		j->rate_t0 = now;
		j->rate_b0 = j->done;
	}
}

static uint64_t job_cursor(const struct vd_job *j)
{
	uint64_t c = j->pos < j->nexts ? j->exts[j->pos] : UINT64_MAX;

	for (unsigned i = 0; i < j->inflight; i++)
		c = KURA_MIN(c, j->inflight_ext[i]);
	return c;
}

static void job_saved(void *arg, int err)
{
	struct vd_job *j = arg;

	(void)err;
	j->saving = false;
}

struct fsync_save {
	struct kura_op op;
	struct kura_vd_engine *e;
	struct vd_job *j;
};

static void save_commit(struct kura_vd_engine *e, struct vd_job *j)
{
	struct kura_cat_txn t;

	kura_cat_txn_init(&t);
	vd_txn_job(&t, j);
	vd_commit(e, &t, job_saved, j);
}

static void save_fsynced(struct kura_op *op, int res)
{
	struct fsync_save *fs = KURA_CONTAINER_OF(op, struct fsync_save, op);

	if (res < 0) {
		kura_log(WARN, "job %llu: fsync: %s", (unsigned long long)fs->j->id,
			 strerror(-res));
		fs->j->saving = false;
	} else {
		save_commit(fs->e, fs->j);
	}
	free(fs);
}

/* Saves the cursor. An export makes the file durable first, so a cursor on
 * disk never claims data the file may lose. */
static void job_save(struct kura_vd_engine *e, struct vd_job *j, uint64_t cursor)
{
	struct fsync_save *fs;

	if (j->saving)
		return;
	j->saving = true;
	j->cursor = cursor;
	j->last_save_ns = kura_now_ns();
	if (j->type != JOB_EXPORT || j->fd < 0) {
		save_commit(e, j);
		return;
	}
	fs = malloc(sizeof(*fs));
	if (!fs) {
		j->saving = false;
		return;
	}
	fs->op.fn = save_fsynced;
	fs->e = e;
	fs->j = j;
	io_uring_prep_fsync(kura_loop_sqe(e->loop, &fs->op), j->fd, IORING_FSYNC_DATASYNC);
}

/* ---- steps ---- */


/* Where block pos of what the step read is (pos within lo..hi). */
static const char *step_src(const struct step *st, unsigned pos)
{
	return st->sb ? vd_share_data(st->sb, pos) : st->buf + (size_t)(pos - st->lo) * VD_BLK;
}

static void job_pump(struct kura_vd_engine *e, struct vd_job *j);
static void job_finish(struct kura_vd_engine *e, struct vd_job *j);

void vd_step_end(struct step *st, int err)
{
	struct kura_vd_engine *e = st->e;
	struct vd_job *j = st->j;

	if (st->locked)
		vd_unlock_ext(e, st->ext, (j->type == JOB_CLONE || j->type == JOB_SCRUB) && !st->excl);
	vd_sched_end(e, &st->sr);
	for (unsigned i = 0; i < j->inflight; i++) {
		if (j->inflight_ext[i] == st->ext) {
			j->inflight_ext[i] = j->inflight_ext[--j->inflight];
			break;
		}
	}
	if (err == KURA_E_DEAD || err == -ESHUTDOWN) {
		/* The store (or, in a cluster, the replicated layer) stopped:
		 * nothing more can be done until blockd restarts, and then the
		 * job resumes from its cursor. */
		j->paused = true;
	} else if (err && err != -ENOENT && !j->error[0]) {
		j->err_code = err;
		snprintf(j->error, sizeof(j->error), "extent %llu: %s",
			 (unsigned long long)st->ext, strerror(err < -4096 ? EIO : -err));
		j->state = JOB_FAILED;
	}
	if (j->type != JOB_FREE && j->type != JOB_MERGE)
		j->done = KURA_MIN(j->total, j->done + VD_EXT);
	else
		j->done += VD_EXT;
	if (st->sb)
		vd_share_put(e, st->sb);
	free(st->buf);
	free(st->cbuf);
	free(st->ids);
	free(st);
	job_pump(e, j);
}

static void step_io_done(void *arg, int err)
{
	struct step *st = arg;

	if (err && !st->err)
		st->err = err;
	if (--st->pending)
		return;
	vd_step_end(st, st->err);
}

/* Runs fn on the loop with res later; steps finish through here when they
 * have nothing to submit. */
static void step_deferred(struct kura_op *op, int res)
{
	vd_step_end(KURA_CONTAINER_OF(op, struct step, op), res);
}

void vd_step_later(struct step *st, int err)
{
	st->op.fn = step_deferred;
	kura_loop_defer(st->e->loop, &st->op, err);
}

/* Writes the runs of st->need from what the step read (blocks lo..hi) into
 * layer dst; then `then` (free the source extent, or nothing). */
static void step_write_runs(struct step *st, uint64_t dst, uint64_t free_after);

static void step_after_writes(void *arg, int err)
{
	struct step *st = arg;

	if (err && !st->err)
		st->err = err;
	if (--st->pending)
		return;
	if (!st->err && st->one_id) {
		/* merge: the source extent's blocks are all in dst now */
		st->pending = 1;
		int e2 = st->e->bops->free(st->e->b, st->one_id, st->ext, step_io_done, st);
		if (!e2)
			return;
		st->err = e2;
	}
	vd_step_end(st, st->err);
}

static void step_write_next(void *arg, int err)
{
	struct step *st = arg;
	unsigned pos = st->wpos, n;

	if (err && !st->err)
		st->err = err;
	if (!st->err && (n = vd_bm_next_run(&st->need, &pos, st->hi))) {
		n = KURA_MIN(n, VD_STEP_CHUNK_BLOCKS);
		st->wpos = pos + n;
		err = st->e->bops->write(st->e->b, st->wdst, st->ext, pos, n,
				     step_src(st, pos), st->sr.cls, step_write_next, st);
		if (!err)
			return;
		st->err = err;
	}
	step_after_writes(st, 0);
}

static void step_write_runs(struct step *st, uint64_t dst, uint64_t free_after)
{
	struct kura_vd_engine *e = st->e;
	int err = 0;

	(void)free_after;
	st->pending = 1;
	if (vd_sched_guests_active(e->sched, kura_now_ns())) {
		st->wdst = dst;
		st->wpos = st->lo;
		step_write_next(st, 0);
		return;
	}
	for (unsigned pos = st->lo, n; (n = vd_bm_next_run(&st->need, &pos, st->hi)); pos += n) {
		err = e->bops->write(e->b, dst, st->ext, pos, n, step_src(st, pos), st->sr.cls,
				     step_after_writes, st);
		if (err)
			break;
		st->pending++;
	}
	if (err)
		st->err = err;
	step_after_writes(st, 0);
}

static void span_of(const struct kura_blk_bitmap *b, unsigned *lo, unsigned *hi)
{
	unsigned i = 0, n;

	*lo = *hi = 0;
	n = vd_bm_next_run(b, &i, KURA_EXT_BLOCKS);
	if (!n)
		return;
	*lo = i;
	*hi = i + n;
	for (unsigned p = *hi; (n = vd_bm_next_run(b, &p, KURA_EXT_BLOCKS)); p += n)
		*hi = p + n;
}

static void export_write(struct step *st);

static void copy_read_done(void *arg, int err, const struct kura_blk_bitmap *present)
{
	struct step *st = arg;
	struct vd_job *j = st->j;

	(void)present;
	if (err) {
		vd_step_end(st, err);
		return;
	}
	if (j->type == JOB_EXPORT) {
		export_write(st);
		return;
	}
	step_write_runs(st, j->dst, 0);
}

static void step_read_next(void *arg, int err, const struct kura_blk_bitmap *present)
{
	struct step *st = arg;
	unsigned pos = st->rpos, n;

	if (err || pos >= st->hi) {
		copy_read_done(st, err, present);
		return;
	}
	n = KURA_MIN(st->hi - pos, VD_STEP_CHUNK_BLOCKS);
	st->rpos = pos + n;
	err = vd_chain_read(st->e, st->rchain, st->ext, pos, n,
			    st->buf + (size_t)(pos - st->lo) * VD_BLK, st->sr.cls, step_read_next, st);
	if (err)
		vd_step_later(st, err);
}

static void shared_read_done(void *arg, int err)
{
	copy_read_done(arg, err, NULL);
}

/* Reads blocks lo..hi of st->ext through chain c, then continues in
 * copy_read_done; a clone shares the read with the other clones of its
 * template. */
static void step_read(struct step *st, const struct vd_chain *c)
{
	int err;

	span_of(&st->need, &st->lo, &st->hi);
	if (st->hi == st->lo) {
		vd_step_later(st, 0);
		return;
	}
	if (st->j->type == JOB_CLONE) {
		err = vd_share_get(st->e, c, st->ext, st->lo, st->hi, st->sr.cls, shared_read_done,
				   st, &st->sb);
		if (err == 1) {
			step_write_runs(st, st->j->dst, 0);
			return;
		}
		if (!err)
			return;
		st->sb = NULL;
		if (err != -EAGAIN) {
			vd_step_later(st, err);
			return;
		}
	}
	st->buf = kura_aligned_alloc_raw((size_t)(st->hi - st->lo) * VD_BLK);
	if (!st->buf) {
		vd_step_later(st, -ENOMEM);
		return;
	}
	if (vd_sched_guests_active(st->e->sched, kura_now_ns())) {
		st->rchain = c;
		st->rpos = st->lo;
		step_read_next(st, 0, NULL);
		return;
	}
	err = vd_chain_read(st->e, c, st->ext, st->lo, st->hi - st->lo, st->buf, st->sr.cls,
			    copy_read_done, st);
	if (err)
		vd_step_later(st, err);
}

/* merge: move the whole extent when dst has none, else copy what dst lacks. */
static void merge_locked(void *arg)
{
	struct step *st = arg;
	struct kura_vd_engine *e = st->e;
	struct vd_job *j = st->j;
	struct vd_layer *dl = vd_layer_get(e, j->dst);
	struct kura_blk_extent_info si, di;
	int err;

	st->locked = true;
	if (!dl || e->bops->extent_info(e->b, j->src, st->ext, &si)) {
		vd_step_later(st, 0);
		return;
	}
	st->need = si.present;
	vd_bm_range(&st->need, 0, dl->clip >= (st->ext + 1) * VD_EXT ? KURA_EXT_BLOCKS :
				  dl->clip > st->ext * VD_EXT ?
				  (unsigned)((dl->clip - st->ext * VD_EXT) / VD_BLK) : 0);
	if (e->bops->extent_info(e->b, j->dst, st->ext, &di)) {
		if (e->bops->move && !memcmp(&st->need, &si.present, sizeof(si.present))) {
			st->pending = 1;
			err = e->bops->move(e->b, j->src, st->ext, j->dst, st->ext,
					    step_io_done, st);
			if (err)
				vd_step_later(st, err);
			return;
		}
		memset(&di.present, 0, sizeof(di.present));
	}
	for (unsigned i = 0; i < KURA_EXT_BLOCKS / 64; i++)
		st->need.w[i] &= ~di.present.w[i];
	st->one_id = j->src;
	st->one_lim = UINT64_MAX;
	st->one.n = 1;
	st->one.ids = &st->one_id;
	st->one.lims = &st->one_lim;
	if (!vd_bm_count(&st->need)) {
		/* Nothing dst lacks: only the free is left. */
		st->pending = 1;
		st->lo = st->hi = 0;
		step_after_writes(st, 0);
		return;
	}
	step_read(st, &st->one);
}

int vd_job_chain(struct kura_vd_engine *e, struct vd_job *j)
{
	struct vd_layer *dl;
	struct vd_vdisk *v;

	if (j->chain.n && j->chain.gen == e->tree_gen)
		return 0;
	if (j->type == JOB_EXPORT || j->type == JOB_SCRUB) {
		uint64_t top = j->src;
		if (!top) {
			v = vd_get(e, j->vdisk);
			if (!v)
				return -ENOENT;
			top = v->top;
		}
		return vd_chain_build(e, &j->chain, top, UINT64_MAX);
	}
	dl = vd_layer_get(e, j->dst);
	if (!dl)
		return -ENOENT;
	if (!dl->parent) {
		vd_chain_free(&j->chain);
		j->chain.gen = e->tree_gen;
		return 0;
	}
	return vd_chain_build(e, &j->chain, dl->parent, dl->clip);
}

int vd_step_locked(struct step *st)
{
	int err;

	st->locked = true;
	if ((err = vd_job_chain(st->e, st->j)))
		vd_step_later(st, err);
	return err;
}

/* flatten and clone: copy what dst's ancestors show and dst lacks. */
static void flatten_locked(void *arg)
{
	struct step *st = arg;
	struct kura_vd_engine *e = st->e;
	struct vd_job *j = st->j;
	struct kura_blk_extent_info di;

	if (vd_step_locked(st))
		return;
	vd_chain_present(e, &j->chain, st->ext, &st->need);
	if (!e->bops->extent_info(e->b, j->dst, st->ext, &di))
		for (unsigned i = 0; i < KURA_EXT_BLOCKS / 64; i++)
			st->need.w[i] &= ~di.present.w[i];
	step_read(st, &j->chain);
}

static void export_locked(void *arg)
{
	struct step *st = arg;
	struct kura_vd_engine *e = st->e;
	struct vd_job *j = st->j;
	uint64_t end = KURA_MIN(j->size, (st->ext + 1) * VD_EXT);

	if (vd_step_locked(st))
		return;
	vd_chain_present(e, &j->chain, st->ext, &st->need);
	vd_bm_range(&st->need, 0, (unsigned)((end - st->ext * VD_EXT) / VD_BLK));
	step_read(st, &j->chain);
}

struct file_io {
	struct kura_op op;
	struct step *st;
};

static void file_write_done(struct kura_op *op, int res)
{
	struct file_io *fio = KURA_CONTAINER_OF(op, struct file_io, op);
	struct step *st = fio->st;

	free(fio);
	step_io_done(st, res < 0 ? res : 0);
}

static void export_write(struct step *st)
{
	struct vd_job *j = st->j;
	int err = 0;

	st->pending = 1;
	for (unsigned pos = st->lo, n; (n = vd_bm_next_run(&st->need, &pos, st->hi)); pos += n) {
		struct file_io *fio = malloc(sizeof(*fio));
		if (!fio) {
			err = -ENOMEM;
			break;
		}
		fio->op.fn = file_write_done;
		fio->st = st;
		/* Short writes to a regular file happen only on ENOSPC-like
		 * errors, which the next fsync reports. */
		io_uring_prep_write(kura_loop_sqe(st->e->loop, &fio->op), j->fd,
				    st->buf + (size_t)(pos - st->lo) * VD_BLK, n * VD_BLK,
				    st->ext * VD_EXT + (uint64_t)pos * VD_BLK);
		st->pending++;
	}
	if (err)
		st->err = err;
	step_io_done(st, 0);
}

static void import_read_done(struct kura_op *op, int res)
{
	struct step *st = KURA_CONTAINER_OF(op, struct step, op);
	struct vd_job *j = st->j;
	struct vd_vdisk *v = vd_get(st->e, j->vdisk);
	size_t len = (size_t)KURA_MIN(VD_EXT, KURA_ALIGN_UP(j->size, VD_BLK) - st->ext * VD_EXT);

	if (res < 0 || !v) {
		vd_step_end(st, res < 0 ? res : -ENOENT);
		return;
	}
	if ((size_t)res < len)
		memset(st->buf + res, 0, len - (size_t)res);
	/* Thin import: all-zero blocks are not written. */
	memset(&st->need, 0, sizeof(st->need));
	for (unsigned b = 0; b < len / VD_BLK; b++) {
		const uint64_t *p = (const uint64_t *)(st->buf + (size_t)b * VD_BLK);
		for (unsigned k = 0; k < VD_BLK / 8; k++) {
			if (p[k]) {
				vd_bm_set(&st->need, b);
				break;
			}
		}
	}
	st->lo = 0;
	st->hi = (unsigned)(len / VD_BLK);
	j->dst = v->top;
	step_write_runs(st, v->top, 0);
}

static void import_step(struct step *st)
{
	struct vd_job *j = st->j;
	size_t len = (size_t)KURA_MIN(VD_EXT, KURA_ALIGN_UP(j->size, VD_BLK) - st->ext * VD_EXT);

	st->buf = kura_aligned_alloc_raw(VD_EXT);
	if (!st->buf) {
		vd_step_later(st, -ENOMEM);
		return;
	}
	st->op.fn = import_read_done;
	io_uring_prep_read(kura_loop_sqe(st->e->loop, &st->op), j->fd, st->buf, (unsigned)len,
			   st->ext * VD_EXT);
}

static void step_go(struct vd_sreq *r);

/* A step waits for the scheduler before it touches data; freeing extents
 * writes only metadata and goes at once. */
static void step_start(struct kura_vd_engine *e, struct vd_job *j, uint64_t ext)
{
	struct step *st = calloc(1, sizeof(*st));

	if (!st) {
		j->state = JOB_FAILED;
		snprintf(j->error, sizeof(j->error), "out of memory");
		return;
	}
	st->e = e;
	st->j = j;
	st->ext = ext;
	j->inflight_ext[j->inflight++] = ext;
	st->sr.dispatch = step_go;
	if (j->type == JOB_FREE) {
		step_go(&st->sr);
		return;
	}
	st->sr.vdisk = j->vdisk;
	st->sr.cls = j->type == JOB_MERGE || j->type == JOB_FLATTEN ? KURA_IO_MERGE
		     : j->type == JOB_SCRUB ? KURA_IO_SCRUB
					      : KURA_IO_CLONE;
	st->sr.bytes = VD_EXT;
	vd_sched_go(e, &st->sr);
}

static void step_go(struct vd_sreq *r)
{
	struct step *st = KURA_CONTAINER_OF(r, struct step, sr);
	struct kura_vd_engine *e = st->e;
	struct vd_job *j = st->j;
	uint64_t ext = st->ext;
	int err = 0;

	switch (j->type) {
	case JOB_FREE:
		st->pending = 1;
		err = e->bops->free(e->b, j->layers[j->li], ext, step_io_done, st);
		break;
	case JOB_MERGE:
		err = vd_lock_ext(e, ext, false, merge_locked, st);
		break;
	case JOB_FLATTEN:
	case JOB_CLONE:
		/* a clone's top layer is not open to anyone until it is built */
		err = vd_lock_ext(e, ext, j->type == JOB_CLONE, flatten_locked, st);
		break;
	case JOB_EXPORT:
		err = vd_lock_ext(e, ext, false, export_locked, st);
		break;
	case JOB_SCRUB:
		/* against merges only, which move blocks between the layers
		 * it reads: guest writes land beside it */
		err = vd_lock_ext(e, ext, true, vd_scrub_locked, st);
		break;
	case JOB_IMPORT:
		import_step(st);
		break;
	}
	if (err)
		vd_step_later(st, err);
}

/* ---- work lists ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Sorted, unique extents of every layer of c, from `from` up. */
static int union_list(struct kura_vd_engine *e, const struct vd_chain *c, uint64_t from,
		      uint64_t **out, size_t *n)
{
	uint64_t *all = NULL;
	size_t na = 0, k = 0;

	for (unsigned i = 0; i < c->n; i++) {
		uint64_t *v;
		size_t nv;
		int err = e->bops->list(e->b, c->ids[i], &v, &nv);
		if (err) {
			free(all);
			return err;
		}
		uint64_t *m = realloc(all, (na + nv + 1) * sizeof(*m));
		if (!m) {
			free(v);
			free(all);
			return -ENOMEM;
		}
		all = m;
		if (nv)
			memcpy(all + na, v, nv * sizeof(*v));
		na += nv;
		free(v);
	}
	if (na)
		qsort(all, na, sizeof(*all), cmp_u64);
	for (size_t i = 0; i < na; i++)
		if (all[i] >= from && (!k || all[k - 1] != all[i]))
			all[k++] = all[i];
	*out = all;
	*n = k;
	return 0;
}

static int job_list(struct kura_vd_engine *e, struct vd_job *j)
{
	int err = 0;

	free(j->exts);
	j->exts = NULL;
	j->nexts = j->pos = 0;
	switch (j->type) {
	case JOB_FREE:
		while (j->li < j->nlayers) {
			err = e->bops->list(e->b, j->layers[j->li], &j->exts, &j->nexts);
			if (err || j->nexts)
				break;
			free(j->exts);
			j->exts = NULL;
			j->li++;
		}
		break;
	case JOB_MERGE:
		err = e->bops->list(e->b, j->src, &j->exts, &j->nexts);
		break;
	case JOB_FLATTEN:
	case JOB_CLONE:
	case JOB_EXPORT:
	case JOB_SCRUB:
		err = vd_job_chain(e, j);
		if (!err)
			err = union_list(e, &j->chain, j->cursor, &j->exts, &j->nexts);
		if (!err && j->type == JOB_EXPORT)
			while (j->nexts && j->exts[j->nexts - 1] * VD_EXT >= j->size)
				j->nexts--;
		break;
	case JOB_IMPORT: {
		uint64_t n = (j->size + VD_EXT - 1) / VD_EXT;
		j->exts = malloc((size_t)(n - KURA_MIN(n, j->cursor) + 1) * sizeof(*j->exts));
		if (!j->exts)
			return -ENOMEM;
		for (uint64_t x = j->cursor; x < n; x++)
			j->exts[j->nexts++] = x;
		break;
	}
	}
	return err;
}

static int job_open_file(struct vd_job *j)
{
	int flags = j->type == JOB_IMPORT ? O_RDONLY : O_WRONLY | O_CREAT;

	if (j->type != JOB_IMPORT && j->type != JOB_EXPORT)
		return 0;
	j->fd = open(j->file, flags | O_CLOEXEC, 0644);
	if (j->fd < 0)
		return -errno;
	if (j->type == JOB_EXPORT && ftruncate(j->fd, (off_t)j->size))
		return -errno;
	return 0;
}

static void job_begin(struct kura_vd_engine *e, struct vd_job *j)
{
	int err;

	j->running = true;
	e->running_jobs++;
	j->inflight_ext = calloc(e->job_qd, sizeof(*j->inflight_ext));
	err = j->inflight_ext ? job_open_file(j) : -ENOMEM;
	if (!err)
		err = job_list(e, j);
	if (err) {
		snprintf(j->error, sizeof(j->error), "%s%s%s", j->file && err != -ENOMEM ? j->file : "",
			 j->file && err != -ENOMEM ? ": " : "", strerror(-err));
		j->state = JOB_FAILED;
	}
	if (j->type == JOB_IMPORT || j->type == JOB_EXPORT)
		j->total = j->size;
	else if (j->type == JOB_FLATTEN || j->type == JOB_CLONE || j->type == JOB_SCRUB)
		j->total = (j->nexts + j->pos) * VD_EXT + j->done;
	else
		j->total = j->done + j->nexts * VD_EXT;
	if (j->type == JOB_IMPORT || j->type == JOB_EXPORT)
		j->done = KURA_MIN(j->size, j->cursor * VD_EXT);
	j->last_save_ns = kura_now_ns();
	job_pump(e, j);
}

static void job_pump(struct kura_vd_engine *e, struct vd_job *j)
{
	uint64_t now = kura_now_ns();

	while (j->state == JOB_RUNNING && !j->cancel && !j->paused && j->inflight < e->job_qd &&
	       !e->closing) {
		if (j->pos == j->nexts) {
			if (j->type != JOB_FREE || j->li >= j->nlayers || j->inflight)
				break;
			/* next layer to free */
			j->li++;
			if (j->li >= j->nlayers || job_list(e, j))
				break;
			j->total += j->nexts * VD_EXT;
			continue;
		}
		step_start(e, j, j->exts[j->pos++]);
	}
	job_rate(j, now);
	if (j->inflight)
		goto save;
	if (j->state != JOB_RUNNING || j->cancel || j->paused || e->closing ||
	    (j->pos == j->nexts && (j->type != JOB_FREE || j->li >= j->nlayers))) {
		job_finish(e, j);
		return;
	}
save:
	if (now - j->last_save_ns >= SAVE_NS && j->state == JOB_RUNNING)
		job_save(e, j, job_cursor(j));
}

/* ---- finishing ---- */

struct finish_ctx {
	struct kura_vd_engine *e;
	uint64_t job;
};

static void finish_committed(void *arg, int err)
{
	(void)arg;
	(void)err;
}

/* Layers of vdisk v (all of them) into a new free job. */
static struct vd_job *free_vdisk_layers(struct kura_vd_engine *e, struct vd_vdisk *v,
					struct kura_cat_txn *t)
{
	struct vd_job *fj = vd_job_new(e, JOB_FREE);
	unsigned n = 0;

	if (!fj) {
		t->err = -ENOMEM;
		return NULL;
	}
	for (struct vd_layer *l = e->layers; l; l = l->next)
		if (l->vdisk == v->id)
			n++;
	fj->layers = calloc(n ? n : 1, sizeof(*fj->layers));
	if (!fj->layers) {
		t->err = -ENOMEM;
		return fj;
	}
	for (struct vd_layer *l = e->layers; l; l = l->next) {
		if (l->vdisk != v->id)
			continue;
		fj->layers[fj->nlayers++] = l->id;
		l->job = fj->id;
		l->top = false;
		l->hidden = true;
		l->snap[0] = '\0';
		vd_txn_layer(t, l);
	}
	snprintf(fj->vname, sizeof(fj->vname), "%s", v->name);
	snprintf(fj->source, sizeof(fj->source), "%s", v->name);
	vd_txn_job(t, fj);
	return fj;
}

void vd_delete_vdisk(struct kura_vd_engine *e, struct vd_vdisk *v, struct kura_cat_txn *t,
		     uint64_t *job)
{
	struct vd_job *fj = free_vdisk_layers(e, v, t);

	if (job)
		*job = fj ? fj->id : 0;
	kura_cat_txn_add(t, 'v', v->id, NULL);
	kura_cat_txn_add(t, 'q', v->id, NULL);
	vd_sched_forget(e->sched, v->id);
	vd_vdisk_unlink(e, v);
}

static void finish_free(struct kura_vd_engine *e, struct vd_job *j, struct kura_cat_txn *t)
{
	uint64_t *parents = calloc(j->nlayers + 1, sizeof(*parents));
	unsigned np = 0;

	for (unsigned i = 0; i < j->nlayers; i++) {
		struct vd_layer *l = vd_layer_get(e, j->layers[i]);
		if (!l)
			continue;
		if (parents)
			parents[np++] = l->parent;
		kura_cat_txn_add(t, 'l', l->id, NULL);
		vd_layer_unlink(e, l);
	}
	for (unsigned i = 0; i < np; i++)
		vd_layer_gc(e, parents[i], t);
	free(parents);
}

static void finish_merge(struct kura_vd_engine *e, struct vd_job *j, struct kura_cat_txn *t)
{
	struct vd_layer *src = vd_layer_get(e, j->src), *dst = vd_layer_get(e, j->dst);

	if (dst && src)
		dst->parent = src->parent;
	if (dst) {
		dst->clip = src ? KURA_MIN(dst->clip, src->clip) : dst->clip;
		vd_txn_layer(t, dst);
	}
	if (src) {
		kura_cat_txn_add(t, 'l', src->id, NULL);
		vd_layer_unlink(e, src);
	}
	j->state = JOB_DONE; /* no longer blocks the collection of dst */
	if (dst) {
		/* dst's new parent may have waited for this merge */
		vd_layer_gc(e, dst->parent, t);
		vd_layer_gc(e, dst->id, t);
	}
}

/* flatten / clone: dst no longer needs its parent. */
static void finish_detach(struct kura_vd_engine *e, struct vd_job *j, struct kura_cat_txn *t)
{
	struct vd_layer *dst = vd_layer_get(e, j->dst);
	uint64_t parent;

	if (!dst)
		return;
	parent = dst->parent;
	dst->parent = 0;
	vd_txn_layer(t, dst);
	j->state = JOB_DONE; /* no longer blocks the collection of dst */
	vd_layer_gc(e, parent, t);
	vd_layer_gc(e, dst->id, t);
}

static void finish_vdisk_ready(struct kura_vd_engine *e, struct vd_job *j,
			       struct kura_cat_txn *t)
{
	struct vd_vdisk *v = vd_get(e, j->vdisk);

	if (!v)
		return;
	v->state = VD_READY;
	v->job = 0;
	vd_txn_vdisk(t, v);
}

static void finish_ok(struct kura_vd_engine *e, struct vd_job *j, struct kura_cat_txn *t)
{
	switch (j->type) {
	case JOB_FREE:
		finish_free(e, j, t);
		break;
	case JOB_MERGE:
		finish_merge(e, j, t);
		break;
	case JOB_CLONE:
		finish_detach(e, j, t);
		finish_vdisk_ready(e, j, t);
		break;
	case JOB_FLATTEN:
		finish_detach(e, j, t);
		break;
	case JOB_IMPORT:
		finish_vdisk_ready(e, j, t);
		break;
	case JOB_EXPORT:
		break;
	case JOB_SCRUB:
		vd_scrub_ended(e, j, t);
		break;
	}
}

/* A cancelled or failed build leaves nothing behind: its vdisk goes. */
static void finish_undo(struct kura_vd_engine *e, struct vd_job *j, struct kura_cat_txn *t)
{
	struct vd_vdisk *v;

	if (j->type == JOB_CLONE || j->type == JOB_IMPORT) {
		v = vd_get(e, j->vdisk);
		if (v)
			vd_delete_vdisk(e, v, t, NULL);
	} else if (j->type == JOB_EXPORT && j->file) {
		unlink(j->file);
	} else if (j->type == JOB_FLATTEN) {
		vd_layer_gc(e, j->dst, t); /* it may have become hidden meanwhile */
	}
}

static void retry_fired(struct kura_op *op, int res)
{
	struct vd_job *j = KURA_CONTAINER_OF(op, struct vd_job, retry.op);

	j->retry_armed = false;
	if (res == -ECANCELED || j->e->closing)
		return;
	j->paused = false;
	j->state = JOB_RUNNING;
	j->error[0] = '\0';
	vd_jobs_kick(j->e);
}

static void job_finish(struct kura_vd_engine *e, struct vd_job *j)
{
	struct kura_cat_txn t;
	bool internal = j->type == JOB_FREE || j->type == JOB_MERGE;

	j->running = false;
	e->running_jobs--;
	if (j->fd >= 0 && j->type == JOB_EXPORT && j->state == JOB_RUNNING && !j->cancel &&
	    !j->paused && !e->closing && fdatasync(j->fd)) {
		snprintf(j->error, sizeof(j->error), "%s: %s", j->file, strerror(errno));
		j->state = JOB_FAILED;
	}
	if (j->fd >= 0) {
		close(j->fd);
		j->fd = -1;
	}
	free(j->inflight_ext);
	j->inflight_ext = NULL;
	kura_cat_txn_init(&t);
	if (e->closing || j->paused) {
		/* Stopping: keep the record, with the cursor, for the restart. */
		j->cursor = job_cursor(j) == UINT64_MAX ? j->cursor : job_cursor(j);
		vd_txn_job(&t, j);
		vd_commit(e, &t, finish_committed, NULL);
		return;
	}
	if (j->state == JOB_FAILED &&
	    (internal || (j->retries < MAX_RETRIES && (j->err_code == -EIO ||
						       j->err_code == -ENOMEM)))) {
		/* Freeing space must happen eventually, and an I/O error may
		 * pass (a path, a disk being replaced): try again later. */
		j->retries++;
		kura_log(WARN, "job %llu (%s of %s): %s; retrying in 5 s",
			 (unsigned long long)j->id, kind_names[j->type], j->source, j->error);
		j->state = JOB_RUNNING;
		j->paused = true;
		j->retry_armed = true;
		j->retry.op.fn = retry_fired;
		kura_loop_timer(e->loop, &j->retry, RETRY_NS);
		kura_cat_txn_free(&t);
		return;
	}
	if (j->state == JOB_RUNNING)
		j->state = j->cancel ? JOB_CANCELLED : JOB_DONE;
	if (j->state == JOB_DONE)
		finish_ok(e, j, &t);
	else
		finish_undo(e, j, &t);
	j->finished = (uint64_t)time(NULL);
	if (j->state == JOB_DONE)
		j->done = j->total;
	kura_log_at(j->state == JOB_DONE ? KURA_LOG_INFO : KURA_LOG_WARN, __FILE__, __LINE__,
		    __func__, "job %llu: %s %s: %s%s%s", (unsigned long long)j->id,
		    kind_names[j->type], j->source, state_names[j->state], j->error[0] ? ": " : "",
		    j->error);
	kura_cat_txn_add(&t, 'j', j->id, NULL);
	vd_commit(e, &t, finish_committed, NULL);
}

/* ---- scheduling ---- */

static void prune_finished(struct kura_vd_engine *e)
{
	uint64_t now = (uint64_t)time(NULL);

	for (struct vd_job **p = &e->jobs; *p;) {
		struct vd_job *j = *p;
		if (j->state != JOB_RUNNING && j->finished + KEEP_DONE_S < now) {
			*p = j->next;
			vd_job_free(j);
		} else {
			p = &j->next;
		}
	}
}

void vd_jobs_kick(struct kura_vd_engine *e)
{
	if (e->closing || e->no_resume)
		return;
	prune_finished(e);
	for (struct vd_job *j = e->jobs; j && e->running_jobs < e->max_jobs; j = j->next)
		if (j->state == JOB_RUNNING && e->commit_done_seq >= j->ready_seq && !j->running &&
		    !j->paused)
			job_begin(e, j);
}

void vd_jobs_stop(struct kura_vd_engine *e)
{
	bool busy = true;

	for (struct vd_job *j = e->jobs; j; j = j->next) {
		if (j->retry_armed)
			kura_loop_cancel_sync(e->loop, &j->retry.op);
		j->paused = true;
	}
	while (busy) {
		busy = e->commits > 0;
		for (struct vd_job *j = e->jobs; j; j = j->next)
			if (j->running || j->saving)
				busy = true;
		for (struct vd_job *j = e->jobs; j; j = j->next)
			if (j->retry_armed)
				busy = true;
		if (busy)
			kura_loop_run_once(e->loop, 100000000ull);
	}
}

void vd_job_cancel(struct kura_vd_engine *e, struct vd_job *j)
{
	j->cancel = true;
	if (!j->running && j->state == JOB_RUNNING && !e->closing)
		job_begin(e, j); /* not started yet: finish it through the usual path */
}
