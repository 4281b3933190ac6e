/* Latency histograms: log-linear buckets (8 per power of two, so a bucket is
 * at most 12.5% wide) from 1 µs to about 68 s; below 1 µs is one bucket, above
 * the last bucket is counted in it.
 *
 * Threads: one writer (the I/O path's loop thread) updates with relaxed atomic
 * stores, never a lock; any thread may read a histogram at any time with
 * kura_hist_copy() and gets each bucket whole (a copy taken while the writer
 * runs may be a few samples behind, never torn). */
#ifndef KURA_COMMON_HIST_H
#define KURA_COMMON_HIST_H

#include <stdint.h>

#define KURA_HIST_SUB 8u
#define KURA_HIST_MIN_SHIFT 10u /* 1024 ns */
#define KURA_HIST_MAX_SHIFT 36u /* 2^36 ns, about 68.7 s */
#define KURA_HIST_BUCKETS (1u + (KURA_HIST_MAX_SHIFT - KURA_HIST_MIN_SHIFT) * KURA_HIST_SUB)

/* Single-writer counters that other threads may read: relaxed atomic
 * stores, no read-modify-write instruction. */
static inline uint64_t kura_counter_get(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline void kura_counter_set(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}
static inline void kura_counter_add(uint64_t *p, uint64_t v)
{
	kura_counter_set(p, kura_counter_get(p) + v);
}

struct kura_hist {
	uint64_t b[KURA_HIST_BUCKETS];
	uint64_t n, sum_ns, max_ns;
};

/* Writer side. */
void kura_hist_add(struct kura_hist *h, uint64_t ns);

/* Reader side: a consistent-per-field copy. */
void kura_hist_copy(struct kura_hist *dst, const struct kura_hist *src);
/* dst = a - b, bucket by bucket (b an earlier copy of a); max is a's. */
void kura_hist_sub(struct kura_hist *dst, const struct kura_hist *a, const struct kura_hist *b);
/* The latency at or below which a fraction p (0..1) of the samples lie: the
 * upper bound of the bucket holding that rank (never above max). 0 when empty. */
uint64_t kura_hist_pct(const struct kura_hist *h, double p);
/* Bucket index of a latency, and a bucket's upper bound (for tests). */
unsigned kura_hist_bucket(uint64_t ns);
uint64_t kura_hist_upper(unsigned bucket);

#endif
