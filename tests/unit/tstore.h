/* Helpers for tests that drive a store on fake disks. */
#ifndef KURA_TESTS_TSTORE_H
#define KURA_TESTS_TSTORE_H

#include "blockd/store.h"
#include "tests/unit/fakedisk.h"

struct tstore {
	struct kura_loop *loop;
	struct kura_blk_store *s;
	struct fake_media *m;
	struct fake_media *m2; /* a second disk, when set */
	char dir[300];
	uint64_t journal_size;
	uint64_t crc_cache;   /* 0: 1 MiB */
	uint64_t checkpoint_ns; /* 0: 50 ms */
	uint64_t apply_idle_ns; /* 0: the store's default */
	int drop_failed; /* kura_blk_opts.drop_failed_disks */
	int err; /* of the last open */
	char errbuf[512];
};

/* Opens (creating if needed) a store in test_tmpdir()/name on media m. */
int ts_open(struct tstore *t, struct fake_media *m, const char *name);
void ts_close(struct tstore *t);
/* Power fails now: the media keeps nothing more; the store is dropped
 * without writing anything. */
void ts_crash(struct tstore *t);
/* blockd is killed (kill -9) now: the store is dropped without writing
 * anything more, but what reached the device stays, flushed or not (the
 * device and the kernel outlive the process). */
void ts_kill(struct tstore *t);
/* A 4 KiB-aligned buffer of n blocks, freed when the test ends. */
void *ts_buf(unsigned nblocks);

int ts_write(struct tstore *t, uint64_t layer, uint64_t ext, unsigned blk, unsigned n,
	     const void *buf, uint64_t version);
/* kura_blk_write_cached: answered once in the device's cache. */
int ts_write_cached(struct tstore *t, uint64_t layer, uint64_t ext, unsigned blk, unsigned n,
		    const void *buf, uint64_t version);
int ts_flush(struct tstore *t);
/* kura_blk_write_replica of a copy of buf. */
int ts_write_replica(struct tstore *t, uint64_t layer, uint64_t ext, unsigned blk, unsigned n,
		     const void *buf, uint64_t version, uint64_t prev);
int ts_read(struct tstore *t, uint64_t layer, uint64_t ext, unsigned blk, unsigned n, void *buf);
int ts_trim(struct tstore *t, uint64_t layer, uint64_t ext, unsigned blk, unsigned n);
int ts_free(struct tstore *t, uint64_t layer, uint64_t ext);
int ts_move(struct tstore *t, uint64_t layer, uint64_t ext, uint64_t nl, uint64_t ne);

/* Fills a block with a recognizable pattern for (tag, block); every 512-byte
 * sector carries the tag, so a torn block is visible. */
void ts_fill(void *blk, uint64_t tag, uint64_t salt);
/* The tag of a block filled by ts_fill; 0 for zeros; UINT64_MAX if the block
 * is torn or foreign. */
uint64_t ts_tag(const void *blk, uint64_t salt);

#endif
