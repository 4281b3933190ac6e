/* Replicated block I/O (replication/rep.h): routing to a group's primary,
 * the primary's fan-out to the replicas, resending after a link breaks,
 * waiting (never failing) while replicas or the primary are away. */
#include "replication/rep_int.h"

#define UNREACH_NS 2000000000ull      /* no answer this long: reported */
#define UNREACH_SCAN_NS 500000000ull
#define LOW_SPACE_HOLD_NS 2000000000ull /* a replica low on space is believed this long */

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- peers and links ---- */

static void link_hello(void *arg, struct kura_proto_hello *out)
{
	struct peer *p = arg;

	kura_map_hello(p->r->map, p->r->name, out);
}

static void send_replica(struct rtarget *t);
static void park(struct rtarget *t);

static void link_state(void *arg, struct kura_link *l, int up)
{
	struct peer *p = arg;
	struct rtarget *t = p->resend;

	(void)l;
	if (!up)
		return;
	/* every write the peer has not acknowledged, oldest first: it applies
	 * only what is newer than what it has */
	p->resend = NULL;
	while (t) {
		struct rtarget *next = t->next;

		t->next = NULL;
		if (p->resend || kura_link_submit(p->link, &t->lr)) {
			park(t);
		}
		t = next;
	}
}

static struct peer *peer_link(struct kura_rep *r, const struct kura_map_node *n, int reopen);

/* The link to node n (a new one when its address changed). */
static struct peer *peer_get(struct kura_rep *r, const struct kura_map_node *n)
{
	return peer_link(r, n, 0);
}

struct peer *rep_peer(struct kura_rep *r, const struct kura_map_node *n)
{
	return peer_get(r, n);
}

static struct peer *peer_find(struct kura_rep *r, const char *name)
{
	for (struct peer *p = r->peers; p; p = p->next)
		if (!strcmp(p->name, name))
			return p;
	return NULL;
}

struct oldlink {
	struct kura_op op;
	struct kura_link *link;
	struct kura_rep *r;
};

static void close_later(struct kura_op *op, int res)
{
	struct oldlink *o = KURA_CONTAINER_OF(op, struct oldlink, op);

	(void)res;
	kura_link_close(o->link);
	o->r->closing--;
	free(o);
}

/* The link to node n, opened when there is none or (reopen) anew: the old
 * one is closed on a later turn (closing turns the loop, which a
 * completion must not) and fails what it held, which goes again. */
static struct peer *peer_link(struct kura_rep *r, const struct kura_map_node *n, int reopen)
{
	struct peer *p = peer_find(r, n->name);
	struct kura_link_opts o = { 0 };

	if (p && !reopen && !strcmp(p->addr, n->addr))
		return p;
	if (p) {
		struct oldlink *o = calloc(1, sizeof(*o));

		if (!o)
			return p; /* keep the old link: the node is unreachable meanwhile */
		o->link = p->link;
		o->r = r;
		r->closing++;
		o->op.fn = close_later;
		kura_loop_defer(r->loop, &o->op, 0);
		p->link = NULL;
	} else {
		if (!(p = calloc(1, sizeof(*p))))
			return NULL;
		p->r = r;
		snprintf(p->name, sizeof(p->name), "%s", n->name);
		p->next = r->peers;
		r->peers = p;
	}
	snprintf(p->addr, sizeof(p->addr), "%s", n->addr);
	o.loop = r->loop;
	o.addr = p->addr;
	o.peer = p->name;
	o.hello = link_hello;
	o.state = link_state;
	o.arg = p;
	if (kura_link_open(&o, &p->link))
		kura_log(WARN, "replication: no link to node %s at %s", p->name, p->addr);
	return p;
}

/* ---- versions ---- */

struct vent **rep_vent_slot(struct kura_rep *r, uint64_t layer, uint64_t ext)
{
	struct vent **pp = &r->vers[rep_ext_hash(layer, ext) % VER_BUCKETS];

	while (*pp && ((*pp)->layer != layer || (*pp)->ext != ext))
		pp = &(*pp)->next;
	return pp;
}

/* The next version of an extent: above everything it has and everything
 * handed out, and above every version of earlier epochs. */
struct vent *rep_vent_get(struct kura_rep *r, uint64_t layer, uint64_t ext)
{
	struct vent **pp = rep_vent_slot(r, layer, ext), *v = *pp;
	struct kura_blk_extent_info info;

	if (v)
		return v;
	if (!(v = calloc(1, sizeof(*v))))
		return NULL;
	v->layer = layer;
	v->ext = ext;
	if (!kura_blk_extent_info(r->store, layer, ext, &info))
		v->last = info.version;
	*pp = v;
	return v;
}

void rep_vent_put(struct kura_rep *r, struct vent *v)
{
	struct vent **pp;

	if (v->inflight || v->sticky || v->locker || v->held)
		return;
	/* the store's own version now covers it */
	pp = rep_vent_slot(r, v->layer, v->ext);
	*pp = v->next;
	free(v);
}

static int version_take(struct kura_rep *r, uint64_t layer, uint64_t ext, uint64_t *out,
			uint64_t *prev)
{
	struct vent *v = rep_vent_get(r, layer, ext);
	struct kura_blk_extent_info info;
	uint64_t v0 = r->map->epoch << 32;

	if (!v)
		return -ENOMEM;
	if (v->last >> 32 > r->map->epoch) {
		/* ordered under a newer map than this node holds: it is not the
		 * primary there; the write waits for this node's map */
		rep_vent_put(r, v);
		return -EAGAIN;
	}
	if (v->sticky && !v->inflight && !kura_blk_extent_info(r->store, layer, ext, &info) &&
	    info.version > v->last) {
		/* a vent kept (sticky) while this node was not the primary
		 * (one made just now has read the store): copies it took
		 * since (a resync, a peering primary's) are what the replicas
		 * hold now, and what this write follows */
		v->last = info.version;
		v->freed = 0;
	}
	*prev = v->last;
	v->last = KURA_MAX(v->last + 1, v0 + 1);
	v->inflight++;
	*out = v->last;
	return 0;
}

static void version_done(struct kura_rep *r, uint64_t layer, uint64_t ext, int failed)
{
	struct vent *v = *rep_vent_slot(r, layer, ext);

	if (!v)
		return;
	if (failed)
		v->sticky = 1; /* replicas may hold a version this store does not */
	if (--v->inflight)
		return;
	if (v->locker)
		sync_vent_idle(r, v); /* a resync waits to lock it */
	else
		rep_vent_put(r, v);
}

/* ---- the primary's write ---- */

/* A request may start: 0, or why not. A change of nblk 0 (and blk 0) frees
 * the whole extent: writes, held writes and remote writes carry frees that
 * way, so they are ordered, versioned and sent again like writes. */
int rep_can_start(const struct kura_rep *r, uint64_t ext, unsigned blk, unsigned nblk)
{
	if (r->destroying)
		return -ESHUTDOWN;
	if (!r->map)
		return -EHOSTDOWN;
	if (nblk > KURA_EXT_BLOCKS || blk + nblk > KURA_EXT_BLOCKS || (!nblk && blk) ||
	    ext >= KURA_EXT_MAX)
		return -EINVAL;
	return 0;
}

static const struct pgset *set_of(struct kura_rep *r, uint64_t layer, uint64_t ext)
{
	uint32_t pg = kura_map_pg(r->map, layer, ext);
	struct pgset *g = r->sets ? &r->sets[pg] : &r->uncached;

	if (!g->known || !r->sets) {
		int i = kura_map_primary(r->map, pg);

		g->n = (uint8_t)kura_map_place(r->map, pg, g->idx);
		g->primary = (int16_t)i;
		g->self = i >= 0 && !strcmp(r->map->nodes[i].name, r->name);
		g->known = 1;
	}
	return g;
}

int kura_rep_holds(struct kura_rep *r, uint64_t layer, uint64_t ext)
{
	const struct pgset *g;

	if (!r->map || r->destroying)
		return 0;
	g = set_of(r, layer, ext);
	for (unsigned i = 0; i < g->n; i++) {
		const struct kura_map_node *n = &r->map->nodes[g->idx[i]];

		if (!strcmp(n->name, r->name))
			return n->state == KURA_NODE_UP &&
			       !rep_behind(r->map, kura_map_pg(r->map, layer, ext), n);
	}
	return 0;
}

int rep_primary_of(struct kura_rep *r, uint64_t layer, uint64_t ext, int *self)
{
	const struct pgset *g = set_of(r, layer, ext);

	*self = g->self;
	return g->primary;
}

static void write_finish(struct rwrite *w)
{
	if (!w->err && w->ver_out)
		*w->ver_out = w->version;
	version_done(w->r, w->layer, w->ext, w->err != 0);
	w->r->outstanding--;
	w->cb(w->arg, w->err);
	free(w->buf);
	free(w);
}

static int remote_start(struct kura_rep *r, int write, uint64_t layer, uint64_t ext,
			unsigned blk, unsigned nblk, void *buf, enum kura_io_class cls,
			kura_blk_cb cb, void *arg, uint64_t delay_ns, uint64_t svc,
			uint64_t *ver);

static void fence_check(struct kura_op *op, int res);

/* Everyone has it: acknowledge, if this node still may. */
static void write_maybe_done(struct rwrite *w)
{
	if (w->waiting)
		return;
	if ((!w->err && !w->r->destroying && w->epoch != w->r->map->epoch &&
	     !kura_member_may_ack(w->r->member)) ||
	    (w->redrive && !w->err && !w->r->destroying)) {
		/* held while fenced, and the cluster moved on meanwhile: another
		 * node may have ordered writes to this extent; write it again
		 * through whoever is its primary now */
		struct kura_rep *r = w->r;
		int err = 0;

		/* or a replica refused it: its map makes another node the
		 * group's primary; once this node's map says so too, the write
		 * goes there (tried again every 100 ms until then). But only the
		 * node the write entered sends it again, and only while its
		 * client still waits: a forwarded one is answered EAGAIN. That
		 * node may have given up on this one (a link reset), sent it to
		 * the new primary itself and acknowledged it, and its client may
		 * have written the blocks again since; sent from here, it would
		 * land over those. (Either way this store holds its version: the
		 * extent's versions go on as after any write.) */
		if (!w->forwarded)
			err = remote_start(r, 1, w->layer, w->ext, w->blk, w->nblk, w->buf, w->cls,
					   w->cb, w->arg, w->redrive ? RETRY_NS : 0, w->svc,
					   w->ver_out);
		if (!err) {
			kura_blk_cb cb = w->forwarded ? w->cb : NULL;
			void *arg = w->arg;

			version_done(r, w->layer, w->ext, 0);
			r->outstanding--;
			free(w->buf);
			free(w);
			if (cb)
				cb(arg, -EAGAIN);
			return;
		}
		if (w->redrive)
			w->err = err; /* never acknowledged: the group's primary lacks it */
	}
	if (w->redrive && !w->err)
		w->err = -ESHUTDOWN; /* refused by a replica, and this node is stopping */
	if (!w->err && !kura_member_may_ack(w->r->member) && !w->r->destroying) {
		/* fenced: hold the answer until the lease is renewed (or the
		 * node is stopped) */
		w->fence_wait.op.fn = fence_check;
		kura_loop_timer(w->r->loop, &w->fence_wait, RETRY_NS);
		return;
	}
	if (!w->err && w->r->destroying && !kura_member_may_ack(w->r->member))
		w->err = -ESHUTDOWN; /* stopping while fenced: not acknowledged */
	write_finish(w);
}

static void fence_check(struct kura_op *op, int res)
{
	struct rwrite *w = KURA_CONTAINER_OF(op, struct rwrite, fence_wait.op);

	(void)res;
	write_maybe_done(w);
}

static void local_done(void *arg, int err)
{
	struct rwrite *w = arg;

	if (!w->nblk && err == -ENOENT)
		err = 0; /* a free of what is gone already (sent again) */

	w->err = err;
	w->waiting--;
	write_maybe_done(w);
}

static void target_done(struct kura_link_req *lr);

static void send_replica(struct rtarget *t)
{
	struct rwrite *w = t->w;

	memset(&t->lr, 0, sizeof(t->lr));
	t->lr.req.magic = KURA_PROTO_MAGIC;
	t->lr.req.op = w->nblk ? KURA_OP_WRITE : KURA_OP_FREE;
	t->lr.req.cls = (uint8_t)w->cls;
	t->lr.req.flags = KURA_PROTO_F_REPLICA;
	t->lr.req.layer = w->layer;
	t->lr.req.ext = w->ext;
	t->lr.req.blk = (uint16_t)w->blk;
	t->lr.req.nblk = (uint16_t)w->nblk;
	t->lr.req.data_len = w->nblk * KURA_BLK_SIZE;
	t->lr.req.version = w->version;
	t->lr.req.arg_layer = w->epoch; /* ordered by this node as primary under that map */
	t->lr.req.arg_ext = w->rprev;   /* what the replica's copy must be at before it */
	t->lr.data = w->buf;
	t->lr.cb = target_done;
	t->lr.arg = t;
	if (!t->p->pending++)
		t->p->progress_ns = kura_now_ns();
	/* the link carries a peer's copies in write order only: while it is
	 * down, or older copies wait to be sent again, this one waits too */
	if (!t->p->link || !kura_link_up(t->p->link) || t->p->resend ||
	    kura_link_submit(t->p->link, &t->lr))
		park(t);
}

static void drain_fired(struct kura_op *op, int res)
{
	struct peer *p = KURA_CONTAINER_OF(op, struct peer, drain.op);

	p->drain_armed = 0;
	if (res == -ECANCELED || p->r->destroying)
		return;
	if (p->link && kura_link_up(p->link))
		link_state(p, p->link, 1);
}

/* Keeps t for when its peer's link is up again, in write order. Parked
 * while the link is up (its queue was full, or the replica answered an
 * error): tried again in 100 ms rather than at the next reconnect. */
static void park(struct rtarget *t)
{
	struct rtarget **pp = &t->p->resend;
	struct peer *p = t->p;

	while (*pp && (*pp)->w->seq < t->w->seq)
		pp = &(*pp)->next;
	t->next = *pp;
	*pp = t;
	if (p->link && kura_link_up(p->link) && !p->drain_armed) {
		p->drain_armed = 1;
		p->drain.op.fn = drain_fired;
		kura_loop_timer(p->r->loop, &p->drain, RETRY_NS);
	}
}

/* t is finished with (done, refused, or its node no longer counts). */
static void target_settled(struct rtarget *t)
{
	t->p->pending--;
	t->p->progress_ns = kura_now_ns();
}

static void target_done(struct kura_link_req *lr)
{
	struct rtarget *t = lr->arg;
	struct rwrite *w = t->w;

	if (lr->status != -ENOTCONN && lr->status != -ETIMEDOUT) {
		t->p->progress_ns = kura_now_ns(); /* it answers */
		t->p->low_until_ns = (lr->flags & KURA_PROTO_RF_LOW_SPACE) || lr->status == -ENOSPC
					     ? t->p->progress_ns + LOW_SPACE_HOLD_NS : 0;
		w->r->low_until_ns = KURA_MAX(w->r->low_until_ns, t->p->low_until_ns);
	}
	if (!w->nblk && lr->status == -ENOENT)
		lr->status = 0; /* a free the replica had already, or never held */

	if (lr->status == -EREMOTE && !w->r->destroying) {
		w->redrive = 1; /* see write_maybe_done */
		target_settled(t);
		w->waiting--;
		write_maybe_done(w);
		return;
	}
	if (lr->status && !w->r->destroying &&
	    (t->p->strictly_up || (t->stream && t->p->up_in_map))) {
		/* still a copy the node must have: UP, or catching up by this
		 * stream (set back to recovering, it catches up by resync) */
		if (lr->status != -ENOTCONN && lr->status != -ETIMEDOUT && lr->status != -EAGAIN)
			kura_log(WARN, "replication: node %s failed a write of extent %llu/%llu: %s; "
				 "sending it again", t->p->name, (unsigned long long)w->layer,
				 (unsigned long long)w->ext, strerror(-lr->status));
		park(t); /* sent again, in order, when the link is up */
		return;
	}
	/* done, or the node is DOWN now (the group is degraded without it), or
	 * this node is stopping (the write is not acknowledged then) */
	if (lr->status && w->r->destroying && !w->err)
		w->err = -ESHUTDOWN;
	if (lr->status && !w->r->destroying)
		/* the member missed it: its resync must send these blocks */
		missed_note(t->p, w->layer, w->ext, w->blk, w->nblk, w->prev, w->version);
	target_settled(t);
	w->waiting--;
	write_maybe_done(w);
}

/* A write to an extent a resync is locking, or to a group being peered,
 * waits on list (head, tail) until rep_release(). */
static int hold(struct kura_rep *r, struct held **head, struct held ***tail, uint64_t layer,
		uint64_t ext, unsigned blk, unsigned nblk, const void *buf, enum kura_io_class cls,
		kura_blk_cb cb, void *arg, int forwarded, uint64_t svc, uint64_t *ver)
{
	struct held *h = calloc(1, sizeof(*h));

	if (!h || (nblk && !(h->buf = kura_aligned_alloc_raw((size_t)nblk * KURA_BLK_SIZE)))) {
		free(h);
		return -ENOMEM;
	}
	if (nblk)
		memcpy(h->buf, buf, (size_t)nblk * KURA_BLK_SIZE);
	h->layer = layer;
	h->ext = ext;
	h->blk = blk;
	h->nblk = nblk;
	h->cls = cls;
	h->cb = cb;
	h->arg = arg;
	h->since_ns = kura_now_ns();
	h->forwarded = forwarded;
	h->svc = svc;
	h->ver = ver;
	if (!*head)
		*tail = head;
	**tail = h;
	*tail = &h->next;
	r->outstanding++;
	return 0;
}

static int write_primary(struct kura_rep *r, uint64_t layer, uint64_t ext, unsigned blk,
			 unsigned nblk, const void *buf, enum kura_io_class cls, kura_blk_cb cb,
			 void *arg, int forwarded, uint64_t svc, uint64_t *ver);

int kura_rep_write_primary(struct kura_rep *r, uint64_t layer, uint64_t ext, unsigned blk,
			   unsigned nblk, const void *buf, enum kura_io_class cls, uint64_t svc,
			   uint64_t *ver, kura_blk_cb cb, void *arg)
{
	if (!nblk)
		return -EINVAL;
	return write_primary(r, layer, ext, blk, nblk, buf, cls, cb, arg, 1, svc, ver);
}

/* Whether a write to (layer, ext) must be refused for space: it needs a
 * new extent (this copy lacks the extent) and this store, or the store of
 * another member it would go to, is low on space (kura_blk_space_low; a
 * replica says so in its answers). Refused before any copy holds it, so
 * the copies never differ by a write that failed. */
static int no_space_for(struct kura_rep *r, uint64_t layer, uint64_t ext)
{
	struct kura_blk_extent_info info;
	const struct pgset *g;
	uint64_t now = 0;
	int low = kura_blk_space_low(r->store);

	/* the members' links only while some peer said it is low lately */
	if (!low && r->low_until_ns && (now = kura_now_ns()) < r->low_until_ns) {
		g = set_of(r, layer, ext);
		for (unsigned i = 0; i < g->n && !low; i++) {
			const struct kura_map_node *n = &r->map->nodes[g->idx[i]];
			struct peer *p;

			if (n->state == KURA_NODE_UP && strcmp(n->name, r->name) &&
			    (p = peer_find(r, n->name)) && p->low_until_ns > now)
				low = 1;
		}
	}
	if (!low || !kura_blk_extent_info(r->store, layer, ext, &info))
		return 0;
	now = now ? now : kura_now_ns();
	if (!r->nospace_refused++ || now - r->nospace_logged_ns >= 1000000000ull) {
		r->nospace_logged_ns = now;
		kura_log(WARN, "replication: refused a write to extent %llu/%llu: a copy of its "
			 "group is low on space (%llu such writes so far); free space or add disks",
			 (unsigned long long)layer, (unsigned long long)ext,
			 (unsigned long long)r->nospace_refused);
	}
	return 1;
}

static int write_primary(struct kura_rep *r, uint64_t layer, uint64_t ext, unsigned blk,
			 unsigned nblk, const void *buf, enum kura_io_class cls, kura_blk_cb cb,
			 void *arg, int forwarded, uint64_t svc, uint64_t *ver)
{
	const struct pgset *g;
	struct rwrite *w;
	struct vent *v;
	uint64_t prev = 0;
	uint32_t pg;
	int self, err;

	if ((err = rep_can_start(r, ext, blk, nblk)))
		return err;
	if (rep_primary_of(r, layer, ext, &self) < 0 || !self)
		return -EREMOTE;
	if (svc && svc < r->map->svc_rev) {
		/* from a node that served the vdisks before the one now */
		uint64_t now = kura_now_ns();

		if (!r->stale_refused++ || now - r->stale_logged_ns >= 1000000000ull) {
			r->stale_logged_ns = now;
			kura_log(WARN, "replication: refused a write to extent %llu/%llu sent under "
				 "vdisk service %llu, older than the map's %llu (%llu so far)",
				 (unsigned long long)layer, (unsigned long long)ext,
				 (unsigned long long)svc, (unsigned long long)r->map->svc_rev,
				 (unsigned long long)r->stale_refused);
		}
		return -ESTALE;
	}
	if (nblk && no_space_for(r, layer, ext))
		return -ENOSPC;
	pg = kura_map_pg(r->map, layer, ext);
	if (r->peering && peering_holds(r, pg)) {
		struct heldq *q = peering_queue(r, pg);

		return hold(r, &q->head, &q->tail, layer, ext, blk, nblk, buf, cls, cb, arg,
			    forwarded, svc, ver);
	}
	if ((v = *rep_vent_slot(r, layer, ext)) && v->locker)
		return hold(r, &v->held, &v->held_tail, layer, ext, blk, nblk, buf, cls, cb, arg,
			    forwarded, svc, ver);
	if (!(w = calloc(1, sizeof(*w))))
		return -ENOMEM;
	if ((nblk && !(w->buf = kura_aligned_alloc_raw((size_t)nblk * KURA_BLK_SIZE))) ||
	    (err = version_take(r, layer, ext, &w->version, &prev))) {
		free(w->buf);
		free(w);
		return err == -EAGAIN ? err : -ENOMEM;
	}
	if (nblk)
		memcpy(w->buf, buf, (size_t)nblk * KURA_BLK_SIZE);
	w->r = r;
	w->layer = layer;
	w->ext = ext;
	w->blk = blk;
	w->nblk = nblk;
	w->cls = cls;
	w->cb = cb;
	w->arg = arg;
	w->seq = ++r->seq;
	w->prev = prev;
	v = *rep_vent_slot(r, layer, ext); /* (version_take made it) */
	w->rprev = v->freed ? 0 : prev;
	v->freed = !nblk;
	w->svc = svc;
	w->forwarded = forwarded;
	w->ver_out = ver;
	w->epoch = r->map->epoch;
	r->outstanding++;
	g = set_of(r, layer, ext);
	w->waiting = 1;
	for (unsigned i = 0; i < g->n; i++) {
		const struct kura_map_node *n = &r->map->nodes[g->idx[i]];
		struct rtarget *t = &w->t[w->ntargets];
		struct stream *st;
		struct peer *mp;

		if (!strcmp(n->name, r->name))
			continue;
		if (n->state != KURA_NODE_UP && (mp = rep_peer(r, n)))
			missed_note(mp, layer, ext, blk, nblk, prev, w->version); /* for its resync */
		t->stream = 0;
		if (rep_behind(r->map, pg, n)) {
			if (!(st = sync_stream(r, pg, n->name)))
				continue;
			sync_dirty(st, layer, ext); /* it is catching up: it gets this too */
			t->stream = 1;
		} else if (n->state != KURA_NODE_UP) {
			continue;
		}
		t->w = w;
		if (!(t->p = peer_get(r, n)))
			continue; /* out of memory: the group is degraded for this write */
		w->ntargets++;
		w->waiting++;
	}
	err = nblk ? kura_blk_write(r->store, layer, ext, blk, nblk, w->buf, w->version, cls,
				    local_done, w)
		   : kura_blk_free(r->store, layer, ext, local_done, w);
	if (err) {
		r->outstanding--;
		version_done(r, layer, ext, 0);
		free(w->buf);
		free(w);
		return err;
	}
	for (unsigned i = 0; i < w->ntargets; i++)
		send_replica(&w->t[i]);
	return 0;
}

/* ---- writes and reads sent to another node's primary ---- */

static void remote_send(struct remote *x);

static void remote_retry(struct kura_op *op, int res)
{
	struct remote *x = KURA_CONTAINER_OF(op, struct remote, retry.op);

	(void)res;
	remote_send(x);
}

static void remote_finish(struct remote *x, int err)
{
	if (!err && x->write && x->ver_out)
		*x->ver_out = x->ver;
	x->r->outstanding--;
	x->cb(x->arg, err);
	if (x->write)
		free(x->buf);
	free(x);
}

static void local_primary_done(void *arg, int err)
{
	remote_finish(arg, err);
}

static void remote_done(struct kura_link_req *lr)
{
	struct remote *x = lr->arg;
	int st = lr->status;

	if (st == -ENOTCONN || st == -ETIMEDOUT || st == -EREMOTE || st == -EAGAIN ||
	    st == -ESHUTDOWN || st == -EHOSTDOWN || st == KURA_E_DEAD ||
	    (st == -EIO && x->write)) {
		/* the primary is away, stopping or starting, its store stopped
		 * (a write error stops it: it leaves the cluster), or the maps
		 * disagree: the map will tell */
		if (x->r->destroying) {
			remote_finish(x, -ESHUTDOWN);
			return;
		}
		x->retry.op.fn = remote_retry;
		kura_loop_timer(x->r->loop, &x->retry, RETRY_NS);
		return;
	}
	remote_finish(x, st);
}

static void remote_send(struct remote *x)
{
	struct kura_rep *r = x->r;
	int self, i = rep_primary_of(r, x->layer, x->ext, &self), err;
	struct peer *p;

	if (r->destroying) {
		remote_finish(x, -ESHUTDOWN);
		return;
	}
	if (i >= 0 && self) {
		/* this node became the primary */
		err = x->write ? write_primary(r, x->layer, x->ext, x->blk, x->nblk, x->buf, x->cls,
					       local_primary_done, x, 0, x->svc, &x->ver)
			       : rep_read_primary(r, x->layer, x->ext, x->blk, x->nblk, x->buf,
						  x->cls, local_primary_done, x);
		if (err == -EAGAIN) {
			/* this node's map is behind the extent's versions */
			x->retry.op.fn = remote_retry;
			kura_loop_timer(r->loop, &x->retry, RETRY_NS);
		} else if (err) {
			remote_finish(x, err);
		}
		return;
	}
	p = i >= 0 ? peer_get(r, &r->map->nodes[i]) : NULL;
	memset(&x->lr, 0, sizeof(x->lr));
	x->lr.req.magic = KURA_PROTO_MAGIC;
	x->lr.req.op = !x->write ? KURA_OP_READ : x->nblk ? KURA_OP_WRITE : KURA_OP_FREE;
	x->lr.req.cls = (uint8_t)x->cls;
	x->lr.req.flags = KURA_PROTO_F_PRIMARY; /* a read too: it may try other copies */
	x->lr.req.arg_layer = x->write ? x->svc : 0; /* the vdisk service it is sent under */
	x->lr.req.layer = x->layer;
	x->lr.req.ext = x->ext;
	x->lr.req.blk = (uint16_t)x->blk;
	x->lr.req.nblk = (uint16_t)x->nblk;
	if (x->write) {
		x->lr.req.data_len = x->nblk * KURA_BLK_SIZE;
		x->lr.data = x->buf;
		x->lr.buf = &x->ver; /* the primary answers a write with its version */
		x->lr.cap = sizeof(x->ver);
	} else {
		x->lr.buf = x->buf;
		x->lr.cap = (size_t)x->nblk * KURA_BLK_SIZE;
	}
	x->lr.cb = remote_done;
	x->lr.arg = x;
	if (!p || !p->link || !kura_link_up(p->link) || kura_link_submit(p->link, &x->lr)) {
		/* no primary UP, or no link to it now: ask the map again soon
		 * rather than wait in a link's queue for a node that may be gone */
		x->lr.status = -ENOTCONN;
		remote_done(&x->lr);
	}
}

static int remote_start(struct kura_rep *r, int write, uint64_t layer, uint64_t ext,
			unsigned blk, unsigned nblk, void *buf, enum kura_io_class cls,
			kura_blk_cb cb, void *arg, uint64_t delay_ns, uint64_t svc,
			uint64_t *ver)
{
	struct remote *x;
	int err;

	if ((err = rep_can_start(r, ext, blk, nblk)))
		return err;
	if (!(x = calloc(1, sizeof(*x))))
		return -ENOMEM;
	x->r = r;
	x->write = write;
	x->layer = layer;
	x->ext = ext;
	x->blk = blk;
	x->nblk = nblk;
	x->cls = cls;
	x->cb = cb;
	x->arg = arg;
	x->svc = svc;
	x->ver_out = ver;
	if (write && nblk) {
		if (!(x->buf = kura_aligned_alloc_raw((size_t)nblk * KURA_BLK_SIZE))) {
			free(x);
			return -ENOMEM;
		}
		memcpy(x->buf, buf, (size_t)nblk * KURA_BLK_SIZE);
	} else if (!write) {
		x->buf = buf;
	}
	r->outstanding++;
	/* first try on a later turn: callbacks never run inside this call */
	x->retry.op.fn = remote_retry;
	kura_loop_timer(r->loop, &x->retry, delay_ns ? delay_ns : 1);
	return 0;
}

int kura_rep_write(struct kura_rep *r, uint64_t layer, uint64_t ext, unsigned blk,
		   unsigned nblk, const void *buf, enum kura_io_class cls, uint64_t svc,
		   uint64_t *ver, kura_blk_cb cb, void *arg)
{
	if (!nblk)
		return -EINVAL;
	return rep_change(r, layer, ext, blk, nblk, buf, cls, cb, arg, svc, ver);
}

int kura_rep_free(struct kura_rep *r, uint64_t layer, uint64_t ext, enum kura_io_class cls,
		  uint64_t svc, kura_blk_cb cb, void *arg)
{
	return rep_change(r, layer, ext, 0, 0, NULL, cls, cb, arg, svc, NULL);
}

int kura_rep_free_primary(struct kura_rep *r, uint64_t layer, uint64_t ext,
			  enum kura_io_class cls, uint64_t svc, kura_blk_cb cb, void *arg)
{
	return write_primary(r, layer, ext, 0, 0, NULL, cls, cb, arg, 1, svc, NULL);
}

int rep_change(struct kura_rep *r, uint64_t layer, uint64_t ext, unsigned blk, unsigned nblk,
	       const void *buf, enum kura_io_class cls, kura_blk_cb cb, void *arg, uint64_t svc,
	       uint64_t *ver)
{
	int self;

	int err;

	if (r->destroying)
		return -ESHUTDOWN;
	if (r->map && rep_primary_of(r, layer, ext, &self) >= 0 && self &&
	    (err = write_primary(r, layer, ext, blk, nblk, buf, cls, cb, arg, 0, svc, ver)) !=
		    -EAGAIN)
		return err;
	/* another node's, or this node's map is behind: through the retry path */
	return remote_start(r, 1, layer, ext, blk, nblk, (void *)buf, cls, cb, arg, 0, svc, ver);
}

int kura_rep_read(struct kura_rep *r, uint64_t layer, uint64_t ext, unsigned blk,
		  unsigned nblk, void *buf, enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	int self;

	if (r->destroying)
		return -ESHUTDOWN;
	if (r->map && rep_primary_of(r, layer, ext, &self) >= 0 && self)
		return rep_read_primary(r, layer, ext, blk, nblk, buf, cls, cb, arg);
	return remote_start(r, 0, layer, ext, blk, nblk, buf, cls, cb, arg, 0, 0, NULL);
}

/* ---- the map ---- */

/* Every half second: peers that hold copies of this node's writes and have
 * answered nothing for UNREACH_NS while the map counts them are reported
 * to the leader (a partition between nodes that etcd does not see). */
static void unreach_scan(struct kura_op *op, int res)
{
	struct kura_rep *r = KURA_CONTAINER_OF(op, struct kura_rep, unreach_timer.op);
	char names[KURA_MAP_UNREACH_MAX][KURA_MAP_NAME_MAX];
	uint64_t now = kura_now_ns();
	unsigned n = 0;

	r->unreach_armed = 0;
	if (res == -ECANCELED || r->destroying)
		return;
	for (struct peer *p = r->peers; p && n < KURA_MAP_UNREACH_MAX; p = p->next)
		if (p->up_in_map && p->pending && now - p->progress_ns >= UNREACH_NS)
			snprintf(names[n++], KURA_MAP_NAME_MAX, "%s", p->name);
	kura_member_set_unreachable(r->member, names, n);
	r->unreach_armed = 1;
	r->unreach_timer.op.fn = unreach_scan;
	kura_loop_timer(r->loop, &r->unreach_timer, UNREACH_SCAN_NS);
}

void kura_rep_map(struct kura_rep *r, const struct kura_map *map)
{
	if (r->destroying)
		return; /* stopping: the peers are going */
	free(r->sets);
	r->sets = calloc(map->pgs, sizeof(*r->sets)); /* NULL: placed on every I/O */
	r->map = map;
	for (struct peer *p = r->peers; p; p = p->next)
		p->was_up = p->strictly_up, p->up_in_map = p->strictly_up = 0;
	for (unsigned i = 0; i < map->nnodes; i++) {
		const struct kura_map_node *n = &map->nodes[i];
		int up = n->state == KURA_NODE_UP || n->state == KURA_NODE_RECOVERING;
		struct peer *p = peer_find(r, n->name);

		if (n->state == KURA_NODE_OUT && p)
			missed_clear(p); /* out of every set: a resync of its would copy whole */
		if (!strcmp(n->name, r->name) || n->state == KURA_NODE_OUT)
			continue;
		/* a node no longer UP: requests stuck on its link (a cut cable
		 * answers nothing) fail now and go to whoever serves instead */
		if ((p = peer_link(r, n, p && p->was_up && n->state != KURA_NODE_UP))) {
			p->up_in_map = up;
			p->strictly_up = n->state == KURA_NODE_UP;
		}
	}
	for (struct peer *p = r->peers; p; p = p->next)
		if (p->strictly_up)
			missed_clear(p); /* in sync */
	/* writes parked for nodes that are DOWN now stop waiting for them, and
	 * those for nodes set back (recovering) too, but for the copies of
	 * their streams: they catch up by resync */
	for (struct peer *p = r->peers; p; p = p->next) {
		struct rtarget **pp = &p->resend, *t;

		if (p->strictly_up)
			continue;
		while ((t = *pp)) {
			if (p->up_in_map && t->stream) {
				pp = &t->next;
				continue;
			}
			*pp = t->next;
			/* (oldest first, so before the writes ordered under this map) */
			missed_note(p, t->w->layer, t->w->ext, t->w->blk, t->w->nblk, t->w->prev,
				    t->w->version);
			target_settled(t);
			t->w->waiting--;
			write_maybe_done(t->w);
		}
	}
	sync_map(r);
	if (!r->unreach_armed) {
		r->unreach_armed = 1;
		r->unreach_timer.op.fn = unreach_scan;
		kura_loop_timer(r->loop, &r->unreach_timer, UNREACH_SCAN_NS);
	}
	peering_map(r);
	rep_strays_map(r);
}

int kura_rep_create(const struct kura_rep_opts *o, struct kura_rep **out)
{
	struct kura_rep *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->loop = o->loop;
	r->store = o->store;
	r->member = o->member;
	snprintf(r->name, sizeof(r->name), "%s", o->name);
	/* groups' extents are listed by class (resync, peering, PLIST) */
	if (kura_blk_index_classes(r->store) || pace_init(r, o->sched_mode)) {
		free(r);
		return -ENOMEM;
	}
	*out = r;
	return 0;
}

void kura_rep_shutdown(struct kura_rep *r)
{
	if (!r || r->destroying)
		return;
	r->destroying = 1;
	if (r->unreach_armed) {
		kura_loop_cancel_sync(r->loop, &r->unreach_timer.op);
		r->unreach_armed = 0;
	}
	pace_shutdown(r);
	sync_shutdown(r);
	peering_shutdown(r);
	rep_strays_shutdown(r);
	for (struct peer *p = r->peers, *next; p; p = next) {
		struct rtarget *t = p->resend;

		next = p->next;
		p->resend = NULL;
		while (t) {
			struct rtarget *tn = t->next;
			t->w->waiting--;
			t->w->err = t->w->err ? t->w->err : -ESHUTDOWN;
			write_maybe_done(t->w);
			t = tn;
		}
		if (p->drain_armed)
			kura_loop_cancel_sync(r->loop, &p->drain.op);
		kura_link_close(p->link); /* fails what is in flight: they finish */
		missed_clear(p);
		free(p);
	}
	r->peers = NULL;
	/* writes waiting on the local store or on timers finish as the loop
	 * turns (timers within RETRY_NS) */
	while (r->outstanding || r->closing)
		kura_loop_run_once(r->loop, RETRY_NS);
}

void kura_rep_destroy(struct kura_rep *r)
{
	if (!r)
		return;
	kura_rep_shutdown(r);
	pace_destroy(r);
	free(r->sets);
	for (unsigned b = 0; b < VER_BUCKETS; b++)
		while (r->vers[b]) {
			struct vent *v = r->vers[b];
			r->vers[b] = v->next;
			free(v);
		}
	free(r);
}
