/* Inside vdisk/: a job's steps, shared by job.c (every job) and
 * scrub_step.c (a scrub's steps). */
#ifndef KURA_VDISK_JOB_INT_H
#define KURA_VDISK_JOB_INT_H

#include "vdisk/vd_int.h"

struct step {
	struct kura_vd_engine *e;
	struct vd_job *j;
	uint64_t ext;
	uint64_t layer;          /* free */
	struct kura_blk_bitmap need;
	unsigned lo, hi;         /* block span read */
	char *buf;
	unsigned pending;
	int err;
	bool locked;
	struct vd_chain one;     /* merge: the source as a one-layer chain */
	uint64_t one_id, one_lim;
	struct kura_op op;
	struct vd_sreq sr;       /* its place in the scheduler (not for freeing) */
	uint64_t wdst;           /* writing: the layer, and the next block */
	unsigned wpos;
	const struct vd_chain *rchain; /* reading in pieces: the chain, the next block */
	unsigned rpos;
	struct vd_share *sb;     /* a clone's data read once for several (share.c) */
	uint64_t *ids;           /* scrub: the chain's layers when the step began */
	unsigned nids, sli, sn;  /* ... how many, the one read, and the blocks of
				  * the read in flight (at rpos) */
	unsigned one_end;        /* scrub: reading block by block up to here (0: not) */
	unsigned copy;           /* scrub: the copy read next (read_copy) */
	bool differs;            /* ... a copy of this chunk failed or differed */
	bool checking;           /* ... comparing again, locked against writes */
	bool excl;               /* the extent is locked against every I/O */
	char *cbuf;              /* scrub: a copy's blocks */
	char cwho[64];           /* ... where that copy is */
	char who[64];            /* ... where the first that failed or differed is */
};

/* Ends a step: its lock, scheduler slot and buffers go, the job goes on. */
void vd_step_end(struct step *st, int err);
/* Ends it from the loop later (never from inside the call that failed). */
void vd_step_later(struct step *st, int err);
/* The job's chain of layers, built again when the tree changed. */
int vd_job_chain(struct kura_vd_engine *e, struct vd_job *j);
/* A step's extent lock is granted: st holds it, and the job's chain is
 * built; on failure the step ends (later) and this returns the error. */
int vd_step_locked(struct step *st);
/* A scrub step, its extent locked against merges (scrub_step.c). */
void vd_scrub_locked(void *arg);

#endif
