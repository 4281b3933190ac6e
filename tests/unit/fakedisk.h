/* A fake disk for unit tests: memory with a volatile write cache.
 *
 * Writes land in `current` (what reads see); a flush, or a FUA write, makes
 * them durable. Faults: fail the Nth read or write with EIO, fail reads of a
 * byte range, or lose power at the Nth write: that write is torn (a random
 * prefix of its 512-byte sectors reaches the media) and every write not yet
 * flushed is dropped (CUT_DROP), sector by sector randomly kept
 * (CUT_RANDOM), or write by write kept whole or dropped, in no order
 * (CUT_REORDER: a cache that writes back whole writes in any order); from
 * then on every operation fails until fake_power_on(). */
#ifndef KURA_TESTS_FAKEDISK_H
#define KURA_TESTS_FAKEDISK_H

#include "blockd/disk.h"

enum fake_cut_mode { CUT_DROP, CUT_RANDOM, CUT_REORDER };

struct fake_write;

struct fake_media {
	uint8_t *durable, *current;
	uint64_t size;
	struct fake_write *unflushed, *unflushed_tail;
	uint64_t writes, reads, flushes;
	uint64_t fail_write_at, fail_read_at; /* 1-based op count, 0 = never */
	uint64_t bad_off, bad_len;            /* reads touching this range fail */
	uint64_t cut_at;                      /* lose power at this write */
	enum fake_cut_mode cut_mode;
	unsigned seed;
	int lost;
	uint64_t flush_delay_ns; /* a flush completes this long after it is issued
				  * (it covers what was written before then) */
	/* Writes in flight: with write_delay_ns set, a write completes that
	 * long after it is issued (its data is in place at once). Writes are
	 * counted as inside [watch_lo, watch_hi) or outside it; max_out is the
	 * most outside it at once, max_out_while_in the most outside it at
	 * once while one inside it was in flight too. Close the store before
	 * the media goes while writes are delayed: a crash or kill leaves
	 * their timers pending. */
	uint64_t write_delay_ns;
	uint64_t watch_lo, watch_hi;
	unsigned in_watch, out_watch, max_out, max_out_while_in;
};

struct fake_media *fake_media_create(uint64_t size);
void fake_media_destroy(struct fake_media *m);
/* The device's cache writes back, on its own, the nth (0 = oldest) write not
 * yet flushed: it becomes durable, whole, ahead of those before it, as a
 * volatile cache may do in any order. Returns 0, or -1 if there is none. */
int fake_keep_unflushed(struct fake_media *m, unsigned nth);
/* Power back on: what reads see is what was durable; faults are cleared. */
void fake_power_on(struct fake_media *m);
struct kura_disk *fake_disk_open(struct kura_loop *loop, struct fake_media *m, const char *name);

#endif
