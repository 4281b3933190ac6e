#include "common/hist.h"

unsigned kura_hist_bucket(uint64_t ns)
{
	unsigned e;

	if (ns < (1ull << KURA_HIST_MIN_SHIFT))
		return 0;
	e = 63u - (unsigned)__builtin_clzll(ns);
	if (e >= KURA_HIST_MAX_SHIFT)
		return KURA_HIST_BUCKETS - 1;
	return 1u + (e - KURA_HIST_MIN_SHIFT) * KURA_HIST_SUB +
	       (unsigned)((ns >> (e - 3)) & (KURA_HIST_SUB - 1));
}

uint64_t kura_hist_upper(unsigned bucket)
{
	unsigned e, sub;

	if (!bucket)
		return (1ull << KURA_HIST_MIN_SHIFT) - 1;
	if (bucket >= KURA_HIST_BUCKETS)
		bucket = KURA_HIST_BUCKETS - 1;
	e = KURA_HIST_MIN_SHIFT + (bucket - 1) / KURA_HIST_SUB;
	sub = (bucket - 1) % KURA_HIST_SUB;
	return (1ull << e) + ((uint64_t)(sub + 1) << (e - 3)) - 1;
}

void kura_hist_add(struct kura_hist *h, uint64_t ns)
{
	unsigned i = kura_hist_bucket(ns);

	kura_counter_add(&h->b[i], 1);
	kura_counter_add(&h->n, 1);
	kura_counter_add(&h->sum_ns, ns);
	if (ns > kura_counter_get(&h->max_ns))
		kura_counter_set(&h->max_ns, ns);
}

void kura_hist_copy(struct kura_hist *dst, const struct kura_hist *src)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < KURA_HIST_BUCKETS; i++) {
		dst->b[i] = kura_counter_get(&src->b[i]);
		n += dst->b[i];
	}
	/* n from the buckets copied, so percentiles add up */
	dst->n = n;
	dst->sum_ns = kura_counter_get(&src->sum_ns);
	dst->max_ns = kura_counter_get(&src->max_ns);
}

void kura_hist_sub(struct kura_hist *dst, const struct kura_hist *a, const struct kura_hist *b)
{
	uint64_t n = 0, top = 0;

	for (unsigned i = 0; i < KURA_HIST_BUCKETS; i++) {
		dst->b[i] = a->b[i] >= b->b[i] ? a->b[i] - b->b[i] : 0;
		n += dst->b[i];
		if (dst->b[i])
			top = i;
	}
	dst->n = n;
	dst->sum_ns = a->sum_ns >= b->sum_ns ? a->sum_ns - b->sum_ns : 0;
	/* the interval's max is not kept: its top bucket bounds it */
	dst->max_ns = n ? (kura_hist_upper(top) < a->max_ns ? kura_hist_upper(top) : a->max_ns) : 0;
}

uint64_t kura_hist_pct(const struct kura_hist *h, double p)
{
	uint64_t rank, seen = 0;

	if (!h->n)
		return 0;
	if (p < 0)
		p = 0;
	if (p > 1)
		p = 1;
	rank = (uint64_t)(p * (double)h->n + 0.999999);
	if (rank < 1)
		rank = 1;
	for (unsigned i = 0; i < KURA_HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank) {
			uint64_t up = kura_hist_upper(i);
			return h->max_ns && up > h->max_ns ? h->max_ns : up;
		}
	}
	return h->max_ns;
}
