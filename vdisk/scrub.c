/* Scrubs (docs/vdisk.md, "Scrub"): the job's record, what a vdisk keeps of
 * its last scrub, and periodic scrubs. The job's steps are job.c's. */
#include "vdisk/vd_int.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct vd_job *vd_scrub_new(struct kura_vd_engine *e, struct vd_vdisk *v, struct kura_cat_txn *t)
{
	struct vd_job *j = vd_job_new(e, JOB_SCRUB);

	if (!j)
		return NULL;
	j->vdisk = v->id;
	snprintf(j->vname, sizeof(j->vname), "%s", v->name);
	snprintf(j->source, sizeof(j->source), "%s", v->name);
	snprintf(j->target, sizeof(j->target), "%s", v->name);
	vd_txn_job(t, j);
	return j;
}

void vd_scrub_ended(struct kura_vd_engine *e, struct vd_job *j, struct kura_cat_txn *t)
{
	struct vd_vdisk *v = vd_get(e, j->vdisk);

	if (!v)
		return;
	v->scrubbed = (uint64_t)time(NULL);
	v->scrub_bad = j->bad_blocks;
	vd_txn_vdisk(t, v);
}

/* ---- periodic ---- */

/* How often the engine looks for a vdisk due: a quarter of the period,
 * from 1 s to a minute. */
static uint64_t check_ns(const struct kura_vd_engine *e)
{
	uint64_t s = KURA_MAX(1, KURA_MIN(60, e->scrub_every_s / 4));

	return s * 1000000000ull;
}

static void arm(struct kura_vd_engine *e);

/* The vdisk most overdue (its last scrub, or its creation, longest ago),
 * among those due and free (ready, no other job working for it). */
static struct vd_vdisk *due(struct kura_vd_engine *e, uint64_t now)
{
	struct vd_vdisk *best = NULL;
	uint64_t best_t = 0;

	for (struct vd_vdisk *v = e->vdisks; v; v = v->next) {
		uint64_t t = v->scrubbed ? v->scrubbed : v->created;

		if (v->state != VD_READY || v->deleting || t + e->scrub_every_s > now ||
		    v->scrub_tried + e->scrub_every_s > now || vd_job_using(e, v))
			continue;
		if (!best || t < best_t) {
			best = v;
			best_t = t;
		}
	}
	return best;
}

static void started(void *arg, int err)
{
	(void)arg;
	if (err)
		kura_log(WARN, "periodic scrub: the catalog did not take the job: %s",
			 strerror(-err));
}

static void tick(struct kura_op *op, int res)
{
	struct kura_vd_engine *e = KURA_CONTAINER_OF(op, struct kura_vd_engine, scrub_timer.op);
	uint64_t now = (uint64_t)time(NULL);
	struct kura_cat_txn t;
	struct vd_vdisk *v;

	e->scrub_armed = false;
	if (res == -ECANCELED || e->closing)
		return;
	for (struct vd_job *j = e->jobs; j; j = j->next)
		if (j->type == JOB_SCRUB && j->state == JOB_RUNNING)
			goto again; /* one at a time */
	if (!e->cat_err && (v = due(e, now))) {
		kura_cat_txn_init(&t);
		if (vd_scrub_new(e, v, &t)) {
			/* one that fails or is cancelled is not started again
			 * before the next period: the others get their turn */
			v->scrub_tried = now;
			kura_log(INFO, "periodic scrub of %s (%s)", v->name,
				 v->scrubbed ? "its last scrub is due" : "never scrubbed");
			vd_commit(e, &t, started, NULL);
		} else {
			kura_cat_txn_free(&t);
		}
	}
again:
	arm(e);
}

static void arm(struct kura_vd_engine *e)
{
	if (e->scrub_armed || e->closing || !e->scrub_every_s)
		return;
	e->scrub_armed = true;
	e->scrub_timer.op.fn = tick;
	kura_loop_timer(e->loop, &e->scrub_timer, check_ns(e));
}

void vd_scrub_auto_start(struct kura_vd_engine *e)
{
	arm(e);
}

void vd_scrub_auto_stop(struct kura_vd_engine *e)
{
	if (e->scrub_armed)
		kura_loop_cancel_sync(e->loop, &e->scrub_timer.op);
	while (e->scrub_armed)
		kura_loop_run_once(e->loop, 100000000ull);
}
