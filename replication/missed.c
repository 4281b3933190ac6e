/* What a member missed (rep_int.h, "Missed writes"): at a group's
 * primary, per member that is not UP, the blocks of each extent written
 * since the version the member last had, so that its resync sends only
 * those blocks (sync.c). Loop thread only.
 *
 * Why it is exact: an entry begins at the first write this primary orders
 * for the extent while the member is not UP; `base` is the version ordered
 * just before it, and every later write to the extent goes through this
 * primary while its lead lasts (lead_gen: a new one when the group's set
 * changes too, so a member that left the set and came back starts over),
 * and a write the member did not take is noted (ordered while it was not
 * UP, parked for it when it went down, or failed for it then), so it is in
 * `blocks`. Replicas
 * apply an extent's writes in version order and a version names one
 * content (versions carry the map's epoch), so a member that lists the
 * extent at exactly `base` holds what the primary held at `base`: the
 * blocks written since, sent at their present content, make its copy
 * equal. Anything else (another version, version 0, a free meanwhile, a
 * lead lost or gained again, no entry, an extent written since the
 * member's stream began, whose listing may predate a copy) falls back to
 * copying the extent whole. */
#include "replication/rep_int.h"

#include <stdlib.h>
#include <string.h>

#define MISSED_BUCKETS 1024u
/* Extents tracked per member at most (72 bytes each): past that, the
 * extents written for the first time copy whole. */
#define MISSED_MAX 65536u

struct missed {
	uint64_t layer, ext, base;
	uint32_t lead_gen;
	int whole;   /* freed meanwhile: only a whole copy will do */
	struct kura_blk_bitmap blocks;
	struct missed *next;
};

static struct missed **slot(struct peer *p, uint64_t layer, uint64_t ext)
{
	struct missed **pp =
		&p->missed[kura_hash64(layer * 0x9e3779b97f4a7c15ull ^ ext) % MISSED_BUCKETS];

	while (*pp && ((*pp)->layer != layer || (*pp)->ext != ext))
		pp = &(*pp)->next;
	return pp;
}

void missed_note(struct kura_rep *r, struct peer *p, uint32_t pg, uint64_t layer, uint64_t ext,
		 unsigned blk, unsigned nblk, uint64_t prev)
{
	uint32_t gen = peering_lead_gen(r, pg);
	struct missed **pp, *m;

	if (!gen || (!p->missed && !(p->missed = calloc(MISSED_BUCKETS, sizeof(*p->missed)))))
		return;
	pp = slot(p, layer, ext);
	if ((m = *pp) && m->lead_gen != gen) {
		/* from an earlier lead: writes of another primary came between */
		*pp = m->next;
		free(m);
		p->nmissed--;
		m = NULL;
	}
	if (!m) {
		if (p->nmissed >= MISSED_MAX || !(m = calloc(1, sizeof(*m))))
			return; /* the extent copies whole */
		m->layer = layer;
		m->ext = ext;
		m->base = prev;
		m->lead_gen = gen;
		m->next = *pp;
		*pp = m;
		p->nmissed++;
	}
	if (!nblk)
		m->whole = 1;
	for (unsigned b = blk; b < blk + nblk && b < KURA_EXT_BLOCKS; b++)
		m->blocks.w[b / 64] |= 1ull << (b % 64);
}

int missed_blocks(struct kura_rep *r, struct peer *p, uint32_t pg, uint64_t layer, uint64_t ext,
		  uint64_t version, struct kura_blk_bitmap *out)
{
	struct missed *m;

	/* version 0 names no content: a copy cut short, or an extent made
	 * again after a free */
	if (!version || !p->missed || !(m = *slot(p, layer, ext)))
		return 0;
	if (m->whole || m->base != version || m->lead_gen != peering_lead_gen(r, pg))
		return 0;
	*out = m->blocks;
	return 1;
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
