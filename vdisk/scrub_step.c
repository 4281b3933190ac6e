/* A scrub's steps (docs/vdisk.md, "Scrub"): every block each layer of
 * the vdisk's chain holds in the step's extent, and, where several copies
 * are kept, every copy of it. The job around them is job.c's. */
#include "vdisk/job_int.h"

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads every block each layer of the vdisk's chain holds in the step's
 * extent, each layer on its own (a block hidden by a newer layer's is
 * checked too), at most VD_STEP_CHUNK_BLOCKS at a time, as scrub-class I/O.
 * The store checks every block against its checksum as it reads it. A read
 * that fails with EIO is done again block by block; each block that still
 * fails is counted (and the first VD_SCRUB_KEEP placed), and the scrub goes
 * on. Any other error ends the step as it would any job's. */
static void scrub_read(struct step *st);

static void scrub_bad(struct step *st, uint64_t layer, unsigned blk)
{
	struct vd_job *j = st->j;
	uint64_t off = st->ext * VD_EXT + (uint64_t)blk * VD_BLK;

	for (unsigned i = 0; i < j->nbad; i++)
		if (j->bad[i].layer == layer && j->bad[i].off == off)
			return; /* read again after a restart */
	if (j->nbad < VD_SCRUB_KEEP) {
		j->bad[j->nbad].layer = layer;
		j->bad[j->nbad++].off = off;
		kura_log(WARN, "scrub of %s: the block at offset %llu (layer %llu) does not read: "
			 "its data fails its checksum or the disk's read", j->vname,
			 (unsigned long long)off, (unsigned long long)layer);
	}
	j->bad_blocks++;
}

/* Where copies are kept (read_copy), each copy of a chunk that read is
 * read too and compared with it. A copy that fails or differs is checked
 * again with the extent locked against every I/O (a guest write may have
 * come between the reads); if it still does, the chunk read then is
 * written again through the normal write path (in a cluster: by the
 * group's primary, to every copy). */
static void scrub_copy_next(struct step *st);
static void scrub_next_chunk(struct step *st);
static void scrub_recheck(void *arg);

static void scrub_relocked(void *arg)
{
	struct step *st = arg;

	st->locked = true;
	scrub_read(st);
}

/* Back to the shared lock the scrub holds, then on to the next chunk. */
static void scrub_unlock_excl(struct step *st)
{
	int err;

	vd_unlock_ext(st->e, st->ext, false);
	st->excl = false;
	st->locked = false;
	st->checking = false;
	st->rpos += st->sn;
	if ((err = vd_lock_ext(st->e, st->ext, true, scrub_relocked, st)))
		vd_step_later(st, err);
}

static void scrub_rewritten(void *arg, int err)
{
	struct step *st = arg;
	struct vd_job *j = st->j;

	if (err) {
		vd_step_end(st, err);
		return;
	}
	j->copies_repaired += st->sn;
	kura_log(WARN, "scrub of %s: a copy (on %s) of the %u blocks at offset %llu (layer %llu) "
		 "did not read or differed; they were written again on every copy", j->vname,
		 st->who, st->sn, (unsigned long long)(st->ext * VD_EXT + (uint64_t)st->rpos * VD_BLK),
		 (unsigned long long)st->ids[st->sli]);
	scrub_unlock_excl(st);
}

static void scrub_copy_done(void *arg, int err)
{
	struct step *st = arg;

	if (err == -EIO || (!err && memcmp(st->cbuf, st->buf, (size_t)st->sn * VD_BLK))) {
		if (!st->differs)
			snprintf(st->who, sizeof(st->who), "%s", st->cwho);
		st->differs = true;
	}
	st->copy++;
	scrub_copy_next(st);
}

static void scrub_copy_next(struct step *st)
{
	struct kura_vd_engine *e = st->e;
	int err;

	for (;; st->copy++) {
		err = e->bops->read_copy(e->b, st->copy, st->ids[st->sli], st->ext, st->rpos, st->sn,
					 st->cbuf, st->sr.cls, st->cwho, scrub_copy_done, st);
		if (!err)
			return;
		if (err == -ESHUTDOWN || err == KURA_E_DEAD) {
			vd_step_later(st, err); /* resumes after the restart */
			return;
		}
		if (err == -ENOENT || st->copy >= 8)
			break; /* every copy read */
		/* -EAGAIN: that copy is not there to compare now (its node is
		 * down or behind; resync brings it up to date) */
	}
	if (!st->differs) {
		if (st->checking) {
			scrub_unlock_excl(st); /* a write had come between */
			return;
		}
		scrub_next_chunk(st);
		return;
	}
	if (st->checking) {
		err = e->bops->write(e->b, st->ids[st->sli], st->ext, st->rpos, st->sn, st->buf,
				     st->sr.cls, scrub_rewritten, st);
		if (err)
			vd_step_later(st, err);
		return;
	}
	/* again, locked against writes */
	vd_unlock_ext(e, st->ext, true);
	st->locked = false;
	if ((err = vd_lock_ext(e, st->ext, false, scrub_recheck, st)))
		vd_step_later(st, err);
}

static void scrub_read_done(void *arg, int err);

static void scrub_recheck(void *arg)
{
	struct step *st = arg;
	struct kura_vd_engine *e = st->e;
	int err;

	st->locked = true;
	st->excl = true;
	st->checking = true;
	err = e->bops->read(e->b, st->ids[st->sli], st->ext, st->rpos, st->sn, st->buf, st->sr.cls,
			    scrub_read_done, st);
	if (err)
		vd_step_later(st, err);
}

static void scrub_next_chunk(struct step *st)
{
	st->rpos += st->sn;
	scrub_read(st);
}

static void scrub_read_done(void *arg, int err)
{
	struct step *st = arg;
	uint64_t layer = st->ids[st->sli];

	if (st->checking) {
		/* the chunk read again, locked: compare the copies again */
		if (err) {
			scrub_unlock_excl(st); /* what it is, the next scrub says */
			return;
		}
		st->differs = false;
		st->copy = 0;
		scrub_copy_next(st);
		return;
	}
	if (!err && st->e->bops->read_copy) {
		st->j->scrub_bytes += (uint64_t)st->sn * VD_BLK;
		if (!st->cbuf &&
		    !(st->cbuf = kura_aligned_alloc_raw((size_t)VD_STEP_CHUNK_BLOCKS * VD_BLK))) {
			vd_step_end(st, -ENOMEM);
			return;
		}
		st->differs = false;
		st->copy = 0;
		scrub_copy_next(st);
		return;
	}
	if (err == -EIO && st->sn > 1 && !st->one_end) {
		/* which of these blocks: one by one */
		st->one_end = st->rpos + st->sn;
	} else if (err == -EIO) {
		scrub_bad(st, layer, st->rpos);
		st->rpos += st->sn;
	} else if (err) {
		vd_step_end(st, err);
		return;
	} else {
		st->j->scrub_bytes += (uint64_t)st->sn * VD_BLK;
		st->rpos += st->sn;
	}
	scrub_read(st);
}

static void scrub_read(struct step *st)
{
	struct kura_vd_engine *e = st->e;
	struct kura_blk_extent_info info;
	unsigned pos, n;
	int err;

	for (;;) {
		pos = st->rpos;
		n = st->sli < st->nids ? vd_bm_next_run(&st->need, &pos, KURA_EXT_BLOCKS) : 0;
		if (n)
			break;
		/* the next layer that holds this extent */
		st->one_end = 0;
		if (st->sli < st->nids)
			st->sli++;
		while (st->sli < st->nids &&
		       e->bops->extent_info(e->b, st->ids[st->sli], st->ext, &info))
			st->sli++;
		if (st->sli >= st->nids) {
			vd_step_end(st, 0);
			return;
		}
		st->need = info.present;
		st->rpos = 0;
	}
	if (st->one_end && pos >= st->one_end)
		st->one_end = 0;
	if (st->one_end)
		n = 1;
	st->rpos = pos;
	st->sn = KURA_MIN(n, VD_STEP_CHUNK_BLOCKS);
	err = e->bops->read(e->b, st->ids[st->sli], st->ext, pos, st->sn, st->buf, st->sr.cls,
			    scrub_read_done, st);
	if (err)
		vd_step_later(st, err);
}

void vd_scrub_locked(void *arg)
{
	struct step *st = arg;
	struct kura_vd_engine *e = st->e;
	struct vd_job *j = st->j;
	struct kura_blk_extent_info info;

	if (vd_step_locked(st))
		return;
	/* the chain may change under the step (a snapshot adds a layer): it
	 * reads the layers it began with */
	st->buf = kura_aligned_alloc_raw((size_t)VD_STEP_CHUNK_BLOCKS * VD_BLK);
	st->ids = malloc((j->chain.n ? j->chain.n : 1) * sizeof(*st->ids));
	if (!st->buf || !st->ids) {
		vd_step_later(st, -ENOMEM);
		return;
	}
	st->nids = j->chain.n;
	if (st->nids)
		memcpy(st->ids, j->chain.ids, st->nids * sizeof(*st->ids));
	/* layer 0 first; scrub_read moves on to the next that holds the extent */
	st->sli = 0;
	if (!st->nids || e->bops->extent_info(e->b, st->ids[0], st->ext, &info))
		memset(&st->need, 0, sizeof(st->need));
	else
		st->need = info.present;
	st->rpos = 0;
	scrub_read(st);
}

