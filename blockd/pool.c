/* The pool: the disks of a store and one allocator of extents over them.
 * Extents are numbered globally; disk i owns [base, base + nextents). Which
 * extents are used is not stored anywhere: it is rebuilt from the index at
 * open, so space can never leak across a crash. */
#include "blockd/store_int.h"
#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int pool_add(struct kura_pool *p, struct kura_disk *disk, const struct kura_sb *sb)
{
	struct pool_disk *nd = realloc(p->d, sizeof(*nd) * (p->n + 1));
	struct pool_disk *pd;
	uint64_t base = 0;

	if (!nd)
		return -ENOMEM;
	p->d = nd;
	if (p->n) {
		struct pool_disk *last = &p->d[p->n - 1];
		base = KURA_ALIGN_UP((uint64_t)last->base + last->sb.nextents,
				     KURA_CRC_PER_PAGE_EXTENTS);
	}
	if (base + sb->nextents >= LOC_NONE)
		return -EFBIG;
	pd = &p->d[p->n];
	memset(pd, 0, sizeof(*pd));
	pd->used = calloc((sb->nextents + 63) / 64, sizeof(uint64_t));
	if (!pd->used)
		return -ENOMEM;
	pd->disk = disk;
	pd->sb = *sb;
	pd->base = (uint32_t)base;
	pd->nfree = (uint32_t)sb->nextents;
	kura_ratelimit_init(&pd->rl, 5000000000ULL, 5);
	p->n++;
	p->capacity += sb->nextents;
	p->nfree += sb->nextents;
	return 0;
}

int pool_add_failed(struct kura_pool *p, const struct kura_sb *sb, const char *path)
{
	struct pool_disk *pd;
	int err = pool_add(p, NULL, sb);

	if (err)
		return err;
	pd = &p->d[p->n - 1];
	pd->failed = 1;
	if (!(pd->failed_path = strdup(path)))
		return -ENOMEM;
	memset(pd->used, 0xff, (sb->nextents + 63) / 64 * sizeof(uint64_t));
	p->capacity -= pd->nfree;
	p->nfree -= pd->nfree;
	pd->nfree = 0;
	return 0;
}

void pool_destroy(struct kura_pool *p)
{
	free(p->busy);
	for (unsigned i = 0; i < p->n; i++) {
		free(p->d[i].used);
		free(p->d[i].failed_path);
		if (p->d[i].disk)
			p->d[i].disk->ops->close(p->d[i].disk);
	}
	free(p->d);
	memset(p, 0, sizeof(*p));
}

struct pool_disk *pool_disk_of(struct kura_pool *p, uint32_t loc)
{
	for (unsigned i = 0; i < p->n; i++)
		if (loc >= p->d[i].base && loc - p->d[i].base < p->d[i].sb.nextents)
			return &p->d[i];
	return NULL;
}

uint64_t pool_data_off(struct pool_disk *pd, uint32_t loc, unsigned blk)
{
	return pd->sb.data_off + (uint64_t)(loc - pd->base) * KURA_EXT_SIZE +
	       (uint64_t)blk * KURA_BLK_SIZE;
}

static int bit_test(const uint64_t *b, uint32_t i)
{
	return (int)((b[i / 64] >> (i % 64)) & 1);
}

int pool_take(struct kura_pool *p, uint32_t loc)
{
	struct pool_disk *pd = pool_disk_of(p, loc);
	uint32_t i;

	if (!pd)
		return -ERANGE;
	i = loc - pd->base;
	if (bit_test(pd->used, i))
		return -EEXIST;
	pd->used[i / 64] |= 1ull << (i % 64);
	pd->nfree--;
	p->nfree--;
	return 0;
}

void pool_release(struct kura_pool *p, uint32_t loc)
{
	struct pool_disk *pd = pool_disk_of(p, loc);
	uint32_t i;

	if (!pd || pd->failed)
		return;
	i = loc - pd->base;
	if (!bit_test(pd->used, i))
		return;
	pd->used[i / 64] &= ~(1ull << (i % 64));
	pd->nfree++;
	p->nfree++;
}

/* ---- extents busy in the live journal ---- */

static struct pool_busy *busy_slot(const struct kura_pool *p, uint32_t loc)
{
	uint32_t i = (uint32_t)kura_hash64(loc) & (p->busy_cap - 1);

	while (p->busy[i].loc != LOC_NONE && p->busy[i].loc != loc)
		i = (i + 1) & (p->busy_cap - 1);
	return &p->busy[i];
}

static int busy_resize(struct kura_pool *p, uint32_t cap, uint64_t tail_seq)
{
	struct pool_busy *old = p->busy;
	uint32_t ocap = p->busy_cap;

	p->busy = malloc(sizeof(*p->busy) * cap);
	if (!p->busy) {
		p->busy = old;
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < cap; i++)
		p->busy[i].loc = LOC_NONE;
	p->busy_cap = cap;
	p->busy_count = 0;
	for (uint32_t i = 0; i < ocap; i++) {
		if (old[i].loc == LOC_NONE || old[i].seq < tail_seq)
			continue;
		*busy_slot(p, old[i].loc) = old[i];
		p->busy_count++;
	}
	free(old);
	return 0;
}

void pool_mark_busy(struct kura_pool *p, uint32_t loc, uint64_t seq)
{
	struct pool_busy *b;

	if ((p->busy_count + 1) * 2 > p->busy_cap &&
	    busy_resize(p, p->busy_cap ? p->busy_cap * 2 : 1024, 0)) {
		/* cannot remember it: count every extent busy instead */
		if (seq > p->busy_floor)
			p->busy_floor = seq;
		return;
	}
	b = busy_slot(p, loc);
	if (b->loc == LOC_NONE) {
		b->loc = loc;
		b->seq = seq;
		p->busy_count++;
	} else if (seq > b->seq) {
		b->seq = seq;
	}
}

int pool_clean(const struct kura_pool *p, uint32_t loc, uint64_t tail_seq)
{
	const struct pool_busy *b;

	if (p->busy_floor >= tail_seq)
		return 0;
	if (!p->busy_count)
		return 1;
	b = busy_slot(p, loc);
	return b->loc == LOC_NONE || b->seq < tail_seq;
}

void pool_prune_busy(struct kura_pool *p, uint64_t tail_seq)
{
	uint32_t cap = 1024;

	if (!p->busy_count)
		return;
	while (cap < p->busy_count * 2 && cap < p->busy_cap)
		cap *= 2;
	busy_resize(p, cap, tail_seq); /* on failure the old table still holds */
}

/* ---- allocation ---- */

/* The disk with the most free extents takes the next one, so disks fill
 * evenly. With tail_seq below UINT64_MAX, busy extents are passed over and at
 * most `tries` of them looked at. */
static int alloc_from(struct kura_pool *p, uint64_t tail_seq, unsigned tries, uint32_t *loc)
{
	struct pool_disk *best = NULL;
	uint32_t n, i;

	for (unsigned d = 0; d < p->n; d++)
		if (p->d[d].nfree && (!best || p->d[d].nfree > best->nfree))
			best = &p->d[d];
	if (!best)
		return -ENOSPC;
	n = (uint32_t)best->sb.nextents;
	for (uint32_t k = 0; k < (n + 63) / 64; k++) {
		uint32_t w = (best->hint / 64 + k) % ((n + 63) / 64);
		uint64_t free_bits = ~best->used[w];
		while (free_bits) {
			i = w * 64 + (uint32_t)__builtin_ctzll(free_bits);
			free_bits &= free_bits - 1;
			if (i >= n)
				break;
			if (tail_seq != UINT64_MAX && !pool_clean(p, best->base + i, tail_seq)) {
				if (!--tries)
					return -EAGAIN;
				continue;
			}
			best->hint = i + 1 < n ? i + 1 : 0;
			*loc = best->base + i;
			return pool_take(p, *loc);
		}
	}
	return tail_seq != UINT64_MAX ? -EAGAIN : -ENOSPC;
}

int pool_alloc(struct kura_pool *p, uint32_t *loc)
{
	return alloc_from(p, UINT64_MAX, 0, loc);
}

int pool_alloc_clean(struct kura_pool *p, uint64_t tail_seq, uint32_t *loc)
{
	return alloc_from(p, tail_seq, 64, loc);
}

void pool_reset(struct kura_pool *p)
{
	p->nfree = 0;
	for (unsigned d = 0; d < p->n; d++) {
		if (p->d[d].failed)
			continue;
		memset(p->d[d].used, 0, (p->d[d].sb.nextents + 63) / 64 * sizeof(uint64_t));
		p->d[d].nfree = (uint32_t)p->d[d].sb.nextents;
		p->nfree += p->d[d].nfree;
	}
}
