/* Peering (replication/rep.h, "Peering"): a node that becomes a group's
 * primary makes every other member that is UP and holds the group equal
 * to its own copy before it takes writes to the group. For each member it
 * asks what the member holds (GLIST, a page at a time) and walks both
 * sides as a resync source does (sync.c: per-extent lock, versions
 * compared, what differs sent whole or freed). Writes to the group wait
 * meanwhile (peering_queue); they go on when every member is done, or
 * when this node no longer leads the group. */
#include "replication/rep_int.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEER_PARALLEL 8u
#define PEER_RETRY_NS 200000000ull
#define PEER_HOLD_NS 1000000000ull /* forwarded writes wait at most this long */
#define GLIST_CAP (sizeof(struct kura_proto_sync) + \
		   KURA_PROTO_SYNC_MAX * sizeof(struct kura_proto_sync_ent))

struct pgpeer {
	uint64_t sethash; /* of the set need's positions refer to */
	uint8_t need;    /* set positions of members not compared yet */
	uint8_t running; /* ... being compared */
	uint8_t lead;    /* this node led the group in the last map */
	struct heldq q;  /* writes waiting for the group */
};

struct peering {
	struct pgpeer *g;
	unsigned pgs, running;
	uint64_t epoch;      /* of the last map seen */
	uint64_t gen;        /* +1 per map: drives of older maps are ignored */
	uint64_t rounds, copied, bytes, freed; /* for status */
};

/* Comparing one group with one member. */
struct pdrive {
	struct kura_link_req lr;
	struct kura_rep *r;
	uint32_t pg;
	unsigned pos;
	uint64_t gen;
	char node[KURA_MAP_NAME_MAX];
	uint64_t from_layer, from_ext;
	uint8_t *ans;
	struct kura_proto_sync_result res;
};

static void pump(struct kura_rep *r);
static void retry_later(struct kura_rep *r);

int peering_holds(struct kura_rep *r, uint32_t pg)
{
	const struct peering *pe = r->peering;

	return pe && pg < pe->pgs && pe->g[pg].need;
}

struct heldq *peering_queue(struct kura_rep *r, uint32_t pg)
{
	return &r->peering->g[pg].q;
}

static void group_done(struct kura_rep *r, struct pgpeer *g, int lost)
{
	g->need = 0;
	g->q.tail = NULL;
	rep_release(r, &g->q.head, lost);
}

/* Forwarded writes held a second get EAGAIN (their node tries again in
 * 100 ms), so none waits on its link's timeout; the others stay in order. */
static void expire_forwarded(struct kura_rep *r, struct pgpeer *g, uint64_t now)
{
	struct held **pp = &g->q.head, *h;

	while ((h = *pp)) {
		if (!h->forwarded || now - h->since_ns < PEER_HOLD_NS) {
			pp = &h->next;
			continue;
		}
		*pp = h->next;
		r->outstanding--;
		h->cb(h->arg, -EAGAIN);
		free(h->buf);
		free(h);
	}
	g->q.tail = pp;
	if (!g->q.head)
		g->q.tail = NULL;
}

/* A hash of the group's set, in order: another set means the members to
 * compare are others. */
static uint64_t set_hash(const struct kura_map *m, const unsigned *idx, unsigned n)
{
	uint64_t h = n;

	for (unsigned i = 0; i < n; i++)
		for (const char *c = m->nodes[idx[i]].name; *c; c++)
			h = kura_hash64(h ^ (uint8_t)*c);
	return h;
}

/* The members of group pg (set positions) that must be compared: UP,
 * holding it, not this node. */
static uint8_t members(struct kura_rep *r, uint32_t pg, unsigned idx[KURA_MAP_MAX_REPLICAS],
		       unsigned *n)
{
	const struct kura_map *m = r->map;
	uint8_t mask = 0;

	*n = kura_map_place(m, pg, idx);
	for (unsigned i = 0; i < *n; i++) {
		const struct kura_map_node *nd = &m->nodes[idx[i]];

		if (strcmp(nd->name, r->name) && nd->state == KURA_NODE_UP && !rep_behind(m, pg, nd))
			mask |= (uint8_t)(1u << i);
	}
	return mask;
}

void peering_map(struct kura_rep *r)
{
	const struct kura_map *m = r->map;
	struct peering *pe = r->peering;
	unsigned idx[KURA_MAP_MAX_REPLICAS], n;
	int skipped;

	if (!pe || pe->pgs != m->pgs) {
		if (pe)
			peering_shutdown(r);
		if (!(pe = calloc(1, sizeof(*pe))) || !(pe->g = calloc(m->pgs, sizeof(*pe->g)))) {
			free(pe);
			r->peering = NULL;
			kura_log(WARN, "replication: out of memory; groups this node leads are not "
				 "peered");
			return;
		}
		pe->pgs = m->pgs;
		r->peering = pe;
	}
	/* maps this node never saw may have given the group to another node
	 * and back: every group it leads is compared again */
	skipped = !pe->epoch || m->epoch != pe->epoch + 1;
	pe->epoch = m->epoch;
	pe->gen++;
	pe->running = 0;
	for (uint32_t pg = 0; pg < pe->pgs; pg++) {
		struct pgpeer *g = &pe->g[pg];
		int p = kura_map_primary(m, pg);
		int lead = p >= 0 && !strcmp(m->nodes[p].name, r->name);
		uint8_t mask;
		uint64_t h;

		g->running = 0; /* drives under the old map are ignored when they end */
		if (!lead) {
			g->lead = 0;
			if (g->need || g->q.head)
				group_done(r, g, 1); /* the writes go to whoever leads now */
			continue;
		}
		mask = members(r, pg, idx, &n);
		h = set_hash(m, idx, n);
		if (!g->lead || skipped || h != g->sethash)
			g->need = mask; /* positions in the set name other nodes now */
		else
			g->need &= mask; /* members gone meanwhile are not waited for */
		g->sethash = h;
		g->lead = 1;
		if (!g->need && g->q.head)
			group_done(r, g, 0);
	}
	pump(r);
}

static void drive_free(struct pdrive *d)
{
	d->r->outstanding--;
	free(d->ans);
	free(d);
}

/* Whether d still counts: same map, group still being compared with it. */
static struct pgpeer *drive_group(struct pdrive *d)
{
	struct peering *pe = d->r->peering;

	if (d->r->destroying || !pe || pe->gen != d->gen || d->pg >= pe->pgs)
		return NULL;
	return &pe->g[d->pg];
}

static void drive_next(struct pdrive *d);

static void drive_failed(struct pdrive *d, int err)
{
	struct pgpeer *g = drive_group(d);
	struct kura_rep *r = d->r;

	if (g) {
		g->running &= (uint8_t) ~(1u << d->pos);
		r->peering->running--;
		if (err != -ENOTCONN && err != -EREMOTE && err != -EHOSTDOWN && err != -ESHUTDOWN &&
		    err != -EAGAIN)
			kura_log(WARN, "peering: group %u with node %s: %s; trying again", d->pg,
				 d->node, strerror(-err));
	}
	drive_free(d);
	retry_later(r); /* never pump from here: it may be inside pump */
}

static void job_done(void *arg, int err)
{
	struct pdrive *d = arg;
	struct pgpeer *g = drive_group(d);
	struct peering *pe = d->r->peering;
	const struct kura_proto_sync *h = (const struct kura_proto_sync *)d->ans;

	if (!g) {
		drive_free(d);
		return;
	}
	if (err) {
		drive_failed(d, err);
		return;
	}
	pe->copied += d->res.copied;
	pe->bytes += d->res.copied_bytes;
	pe->freed += d->res.freed;
	if (d->res.done && h->to_layer == UINT64_MAX && h->to_ext == UINT64_MAX) {
		/* this member holds what this node holds */
		struct kura_rep *r = d->r;

		g->running &= (uint8_t) ~(1u << d->pos);
		g->need &= (uint8_t) ~(1u << d->pos);
		pe->running--;
		pe->rounds++;
		if (!g->need)
			group_done(r, g, 0);
		drive_free(d);
		pump(r);
		return;
	}
	d->from_layer = d->res.done ? h->to_layer : d->res.next_layer;
	d->from_ext = d->res.done ? h->to_ext : d->res.next_ext;
	drive_next(d);
}

static void glist_done(struct kura_link_req *lr)
{
	struct pdrive *d = lr->arg;
	struct kura_proto_sync h;
	struct kura_proto_sync_ent *ents = NULL;
	size_t n;
	int err;

	if (!drive_group(d)) {
		drive_free(d);
		return;
	}
	if (lr->status) {
		drive_failed(d, lr->status);
		return;
	}
	memcpy(&h, d->ans, sizeof(h));
	n = (lr->got - sizeof(h)) / sizeof(*ents);
	if (h.n != n || h.pg != d->pg || h.from_layer != d->from_layer || h.from_ext != d->from_ext) {
		drive_failed(d, -EPROTO);
		return;
	}
	if (n && !(ents = malloc(n * sizeof(*ents)))) {
		drive_failed(d, -ENOMEM);
		return;
	}
	if (n)
		memcpy(ents, d->ans + sizeof(h), n * sizeof(*ents));
	/* the walk checks every entry (order, range, group) */
	err = sync_job(d->r, d->node, &h, ents, n, &d->res, job_done, d);
	if (err)
		drive_failed(d, err);
}

static void drive_next(struct pdrive *d)
{
	struct kura_rep *r = d->r;
	int i = kura_map_find(r->map, d->node);
	struct peer *p = i >= 0 && !r->destroying ? rep_peer(r, &r->map->nodes[i]) : NULL;

	memset(&d->lr, 0, sizeof(d->lr));
	d->lr.req.op = KURA_OP_GLIST;
	d->lr.req.cls = KURA_IO_REBUILD;
	d->lr.req.layer = d->from_layer;
	d->lr.req.ext = d->from_ext;
	d->lr.req.arg_layer = d->pg;
	d->lr.req.version = r->map->epoch; /* the member answers once its map is this new */
	d->lr.buf = d->ans;
	d->lr.cap = GLIST_CAP;
	d->lr.cb = glist_done;
	d->lr.arg = d;
	if (!p || !p->link || !kura_link_up(p->link) || kura_link_submit(p->link, &d->lr))
		drive_failed(d, -ENOTCONN);
}

static void pump(struct kura_rep *r)
{
	struct peering *pe = r->peering;
	unsigned idx[KURA_MAP_MAX_REPLICAS], n;
	int waiting = 0;

	if (!pe || r->destroying)
		return;
	for (uint32_t pg = 0; pg < pe->pgs; pg++) {
		struct pgpeer *g = &pe->g[pg];
		uint8_t todo = g->need & (uint8_t)~g->running;

		if (g->q.head) {
			expire_forwarded(r, g, kura_now_ns());
			waiting |= g->q.head != NULL; /* swept again soon */
		}
		if (!todo || pe->running >= PEER_PARALLEL)
			continue;
		n = kura_map_place(r->map, pg, idx);
		for (unsigned pos = 0; pos < n && pe->running < PEER_PARALLEL; pos++) {
			struct pdrive *d;

			if (!(todo & (1u << pos)))
				continue;
			if (!(d = calloc(1, sizeof(*d))) || !(d->ans = malloc(GLIST_CAP))) {
				free(d);
				waiting = 1;
				break;
			}
			d->r = r;
			d->pg = pg;
			d->pos = pos;
			d->gen = pe->gen;
			snprintf(d->node, sizeof(d->node), "%s", r->map->nodes[idx[pos]].name);
			g->running |= (uint8_t)(1u << pos);
			pe->running++;
			r->outstanding++;
			drive_next(d); /* a failure comes back through drive_failed */
			if (!(g->running & (1u << pos)))
				waiting = 1;
		}
	}
	if (waiting)
		retry_later(r);
}

static void retry_cb(struct kura_op *op, int res)
{
	struct kura_rep *r = KURA_CONTAINER_OF(op, struct kura_rep, peering_retry.op);

	r->peering_retry_armed = 0;
	if (res != -ECANCELED && !r->destroying)
		pump(r);
}

static void retry_later(struct kura_rep *r)
{
	if (r->peering_retry_armed || r->destroying)
		return;
	r->peering_retry_armed = 1;
	r->peering_retry.op.fn = retry_cb;
	kura_loop_timer(r->loop, &r->peering_retry, PEER_RETRY_NS);
}

void peering_shutdown(struct kura_rep *r)
{
	struct peering *pe = r->peering;

	if (r->peering_retry_armed) {
		kura_loop_cancel_sync(r->loop, &r->peering_retry.op);
		r->peering_retry_armed = 0;
	}
	if (!pe)
		return;
	for (uint32_t pg = 0; pg < pe->pgs; pg++)
		group_done(r, &pe->g[pg], 1);
	r->peering = NULL;
	free(pe->g);
	free(pe);
}

void peering_status(struct kura_rep *r, struct kura_jw *w)
{
	const struct peering *pe = r->peering;
	unsigned waiting = 0;

	for (uint32_t pg = 0; pe && pg < pe->pgs; pg++)
		waiting += pe->g[pg].need != 0;
	kura_jw_obj(w, "peering");
	kura_jw_u64(w, "groups_waiting", waiting);
	kura_jw_u64(w, "members_compared", pe ? pe->rounds : 0);
	kura_jw_u64(w, "extents_copied", pe ? pe->copied : 0);
	kura_jw_u64(w, "bytes_copied", pe ? pe->bytes : 0);
	kura_jw_u64(w, "extents_freed", pe ? pe->freed : 0);
	kura_jw_end(w);
}
