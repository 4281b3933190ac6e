/* Freeing strays (rep.h, "Strays"): copies this node still holds of
 * groups whose set no longer holds it (it filled a group for a node that
 * was out and has come back, say). A group's copies here are freed once
 * this node's map shows the group clean without it: every member UP, none
 * filling; they hold every acknowledged write, so this copy is one too
 * many.
 *
 * Safety: a node enters a group's set only as one that is behind (filling
 * it, or RECOVERING), and it then lists what it holds to the group's
 * source, which copies whatever differs. So a free here must never be in
 * flight while this node lists (the listing would count a copy the free
 * then removes): frees go one at a time, each checked against the map of
 * that moment, the pass stops at the first new map, and this node's
 * resync does not start while a free is in flight (sync_pump asks
 * rep_stray_busy). Loop thread only. */
#include "replication/rep_int.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define STRAY_DELAY_NS 1000000000ull /* after a new map, before a pass */

/* Whether this node's copies of group pg are strays in map m. */
static int stray_group(const struct kura_rep *r, const struct kura_map *m, uint32_t pg)
{
	unsigned idx[KURA_MAP_MAX_REPLICAS], n = kura_map_place(m, pg, idx);

	if (!n)
		return 0;
	for (unsigned i = 0; i < n; i++) {
		const struct kura_map_node *x = &m->nodes[idx[i]];

		if (!strcmp(x->name, r->name) || x->state != KURA_NODE_UP ||
		    (m->nfills && kura_map_filling(m, pg, x->name)))
			return 0; /* a member, or the group is not clean */
	}
	return 1;
}

/* Whether this node may free strays now: UP itself, not catching up. */
static int may_free(const struct kura_rep *r)
{
	int self = kura_map_find(r->map, r->name);

	return self >= 0 && r->map->nodes[self].state == KURA_NODE_UP && !r->sync.active &&
	       !r->destroying;
}

static void stray_next(struct kura_rep *r);

static void stray_freed(void *arg, int err)
{
	struct kura_rep *r = arg;
	struct strays *s = &r->strays;

	s->inflight = 0;
	r->outstanding--;
	if (!err || err == -ENOENT) {
		s->freed += !err;
	} else {
		kura_log(WARN, "replication: freeing a copy of a group this node left failed: %s",
			 strerror(-err));
		s->n = 0; /* the next map tries again */
	}
	sync_pump(r); /* a resync may have waited for this free */
	stray_next(r);
}

static void stray_end(struct kura_rep *r)
{
	struct strays *s = &r->strays;

	if (s->freed > s->logged)
		kura_log(INFO, "replication: freed %llu copies of groups this node no longer holds "
			 "(%llu in all)", (unsigned long long)(s->freed - s->logged),
			 (unsigned long long)s->freed);
	s->logged = s->freed;
	free(s->keys);
	s->keys = NULL;
	s->n = s->next = 0;
}

static void stray_next(struct kura_rep *r)
{
	struct strays *s = &r->strays;

	while (s->next < s->n) {
		const struct stray_key *k = &s->keys[s->next++];
		int err;

		/* the map of this moment still makes it a stray */
		if (!r->map || r->map->epoch != s->epoch || !may_free(r))
			break;
		err = kura_blk_free(r->store, k->layer, k->ext, stray_freed, r);
		if (!err) {
			s->inflight = 1;
			r->outstanding++;
			return;
		}
		if (err != -ENOENT)
			break;
	}
	stray_end(r);
}

struct stray_list {
	struct kura_rep *r;
	const uint8_t *pgs; /* 1: a group this node holds strays of */
	size_t cap;
};

static int stray_add(void *arg, uint64_t layer, uint64_t ext)
{
	struct stray_list *l = arg;
	struct strays *s = &l->r->strays;

	if (!l->pgs[kura_map_pg(l->r->map, layer, ext)])
		return 0;
	if (s->n == l->cap) {
		void *nk = realloc(s->keys, (l->cap = l->cap ? l->cap * 2 : 256) * sizeof(*s->keys));
		if (!nk)
			return -ENOMEM;
		s->keys = nk;
	}
	s->keys[s->n].layer = layer;
	s->keys[s->n++].ext = ext;
	return 0;
}

/* A pass over this store: the extents of groups it holds strays of. */
static void stray_pass(struct kura_op *op, int res)
{
	struct kura_rep *r = KURA_CONTAINER_OF(op, struct kura_rep, strays.timer.op);
	struct strays *s = &r->strays;
	struct stray_list l = { .r = r };
	uint8_t *pgs;
	unsigned any = 0;
	int err = 0;

	s->armed = 0;
	if (res == -ECANCELED || !r->map || !may_free(r))
		return;
	if (s->inflight || s->n) {
		rep_strays_map(r); /* a pass of an older map is still ending */
		return;
	}
	if (!(pgs = calloc(r->map->pgs, 1)))
		return;
	for (uint32_t pg = 0; pg < r->map->pgs; pg++)
		any += pgs[pg] = (uint8_t)stray_group(r, r->map, pg);
	l.pgs = pgs;
	if (any)
		err = rep_each_extent(r, stray_add, &l);
	free(pgs);
	s->next = 0;
	s->epoch = r->map->epoch;
	if (err)
		s->n = 0; /* stray_end frees what was listed; the next map tries again */
	stray_next(r);
}

void rep_strays_map(struct kura_rep *r)
{
	struct strays *s = &r->strays;

	if (s->armed || r->destroying)
		return;
	s->armed = 1;
	s->timer.op.fn = stray_pass;
	kura_loop_timer(r->loop, &s->timer, STRAY_DELAY_NS);
}

int rep_strays_busy(const struct kura_rep *r)
{
	return r->strays.inflight;
}

void rep_strays_shutdown(struct kura_rep *r)
{
	struct strays *s = &r->strays;

	if (s->armed) {
		kura_loop_cancel_sync(r->loop, &s->timer.op);
		s->armed = 0;
	}
	if (!s->inflight) {
		free(s->keys);
		s->keys = NULL;
		s->n = s->next = 0;
	}
}
