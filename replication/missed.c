/* What a member missed (rep_int.h, "missed.c"): at a group's primary, per
 * member, the blocks of each extent written while the member was not UP
 * (or parked or failed for it when it went down), so that its resync
 * sends only those blocks (sync.c). Loop thread only.
 *
 * Why it is exact. An entry holds a chain of versions: `base`, then each
 * noted write's version, each write's previous version being the last
 * one before it (notes may come out of order: a write that failed late
 * extends the chain backwards). Versions name one content (they carry the
 * epoch of the map they were ordered under, and one primary orders a
 * group's writes per epoch), and replicas apply an extent's writes in
 * version order. So a member that lists the extent at exactly `base`
 * holds what this node held at `base`; and when this node holds it at
 * exactly `last`, every write between was noted, so its blocks are in
 * `blocks`: sending their present content and then the version makes the
 * member's copy equal. A write not noted (another primary's while this
 * node was a replica, one the member missed unseen) breaks the chain or
 * moves the extent past `last`: the extent is copied whole, as it is for a
 * free, version 0, or no entry. */
#include "replication/rep_int.h"

#include <stdlib.h>
#include <string.h>

#define MISSED_BUCKETS 1024u
/* Extents noted per member at most (80 bytes each): past that, the
 * extents written for the first time copy whole. */
#define MISSED_MAX 65536u

struct missed {
	uint64_t layer, ext;
	uint64_t base, last; /* the chain of noted versions */
	int whole;           /* a free, or a gap in the chain: only a whole copy will do */
	struct kura_blk_bitmap blocks;
	struct missed *next;
};

static struct missed **slot(struct peer *p, uint64_t layer, uint64_t ext)
{
	struct missed **pp = &p->missed[rep_ext_hash(layer, ext) % MISSED_BUCKETS];

	while (*pp && ((*pp)->layer != layer || (*pp)->ext != ext))
		pp = &(*pp)->next;
	return pp;
}

static struct missed *find(struct peer *p, uint64_t layer, uint64_t ext)
{
	return p->missed ? *slot(p, layer, ext) : NULL;
}

void missed_note(struct peer *p, uint64_t layer, uint64_t ext, unsigned blk, unsigned nblk,
		 uint64_t prev, uint64_t version)
{
	struct missed **pp, *m;

	if (!p->missed && !(p->missed = calloc(MISSED_BUCKETS, sizeof(*p->missed))))
		return;
	pp = slot(p, layer, ext);
	if (!(m = *pp)) {
		if (p->nmissed >= MISSED_MAX || !(m = calloc(1, sizeof(*m))))
			return; /* the extent copies whole: a write after this one
				 * starts a chain the member's version is below */
		m->layer = layer;
		m->ext = ext;
		m->base = prev;
		m->last = version;
		m->next = *pp;
		*pp = m;
		p->nmissed++;
	} else if (prev == m->last) {
		m->last = version;
	} else if (version == m->base) {
		m->base = prev;
	} else if (!(version > m->base && version <= m->last)) {
		m->whole = 1; /* a gap: a write in it was not noted */
	}
	if (!nblk || version <= prev)
		m->whole = 1;
	for (unsigned b = blk; b < blk + nblk && b < KURA_EXT_BLOCKS; b++)
		m->blocks.w[b / 64] |= 1ull << (b % 64);
}

int missed_blocks(struct peer *p, uint64_t layer, uint64_t ext, uint64_t listed, uint64_t current,
		  struct kura_blk_bitmap *out)
{
	const struct missed *m = find(p, layer, ext);

	/* version 0 names no content: a copy cut short, or an extent made
	 * again after a free */
	if (!m || m->whole || !listed || listed != m->base || current != m->last)
		return 0;
	*out = m->blocks;
	return 1;
}

int missed_any(struct peer *p, uint64_t layer, uint64_t ext)
{
	return find(p, layer, ext) != NULL;
}

void missed_forget(struct peer *p, uint64_t layer, uint64_t ext)
{
	struct missed **pp, *m;

	if (!p->missed || !(m = *(pp = slot(p, layer, ext))))
		return;
	*pp = m->next;
	free(m);
	p->nmissed--;
}

void missed_clear(struct peer *p)
{
	if (!p->missed)
		return;
	for (unsigned b = 0; b < MISSED_BUCKETS; b++)
		while (p->missed[b]) {
			struct missed *m = p->missed[b];

			p->missed[b] = m->next;
			free(m);
		}
	free(p->missed);
	p->missed = NULL;
	p->nmissed = 0;
}
