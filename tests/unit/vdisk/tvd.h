/* Helpers for tests of the vdisk layer: a store on a fake disk, the RocksDB
 * catalog and an engine, driven through control requests and handles. */
#ifndef KURA_TESTS_TVD_H
#define KURA_TESTS_TVD_H

#include "tests/unit/tstore.h"
#include "vdisk/vdisk.h"

struct tvd {
	struct tstore ts;
	struct fake_media *m;
	struct kura_cat *cat;
	struct kura_vd_engine *e;
	struct kura_json *ans; /* the last answer, freed by the next request */
	char msg[512];         /* the last error message */
	char name[32];
	/* set before tvd_restart: the engine's block operations from then on,
	 * called with the store (NULL: the store's own) */
	const struct kura_vd_blk_ops *blk;
};

void tvd_open(struct tvd *t, uint64_t media_size);
void tvd_close(struct tvd *t);
/* Close and open again (everything durable survives). */
void tvd_restart(struct tvd *t);
/* Power cut: nothing more reaches the media; then opens again. */
void tvd_crash_restart(struct tvd *t);

/* Sends a control request (printf-style JSON); returns its err and keeps the
 * answer in t->ans. */
int tvd_ctl(struct tvd *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint64_t tvd_ans_u64(struct tvd *t, const char *obj, const char *key);

/* Writes nblk blocks at block lba of name, each filled with tag (ts_fill,
 * salt = the block's lba); tag 0 writes zeros. */
int tvd_write(struct tvd *t, const char *name, uint64_t lba, unsigned nblk, uint64_t tag);
/* Checks that blocks lba.. of name[@snap] carry tags[i] (0: zeros). */
void tvd_expect(struct tvd *t, const char *name, const char *snap, uint64_t lba, unsigned nblk,
		const uint64_t *tags);
/* The tag of one block. */
uint64_t tvd_tag(struct tvd *t, const char *name, const char *snap, uint64_t lba);
/* Runs jobs to completion. */
void tvd_jobs(struct tvd *t);
/* fsck must be clean. */
void tvd_fsck_clean(struct tvd *t);

#endif
