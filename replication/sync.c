/* Resync (replication/rep.h, "Resync"): a member that is behind copies
 * each of its groups from the group's sync source.
 *
 * At the member (the syncer): while the map says this node is RECOVERING,
 * every group whose set holds it is pending until copied from the group's
 * source under the current map; up to SYNC_PARALLEL groups at a time, each
 * by SYNC requests over the link to the source, listing what this store
 * holds of the group. When every group is done, the node says so to the
 * leader (kura_member_set_synced), which marks it UP.
 *
 * At the source: a SYNC request starts the group's stream to that member
 * (its new writes go there too) and walks the union of both sides'
 * extents in the range; each extent is locked (its in-flight writes
 * finish, new ones wait), compared, and sent whole (FREE, then its present
 * blocks, the source's version going with the last run once every other
 * request is answered without error) when the versions differ or it was
 * written since the stream began, or freed at the member when the source
 * has none. At most the request's budget of extents (16, fewer while the
 * member's rebuild is paced) are sent per request, so an answer comes well
 * within the link's timeout; the answer says where the next request
 * starts. */
#include "replication/rep_int.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYNC_TASKS 8u           /* extents a source works on at once per request */
#define SYNC_RETRY_NS 200000000ull
#define SYNC_JOB_NS 1000000000ull  /* a request starts no extent after this long */

/* ---- keys ---- */

/* ---- streams ---- */

struct stream *sync_stream(struct kura_rep *r, uint32_t pg, const char *node)
{
	for (struct stream *st = r->streams[pg % STREAM_BUCKETS]; st; st = st->next)
		if (st->pg == pg && !strcmp(st->node, node))
			return st;
	return NULL;
}

static struct stream *stream_get(struct kura_rep *r, uint32_t pg, const char *node)
{
	struct stream *st = sync_stream(r, pg, node);

	if (st || !(st = calloc(1, sizeof(*st))))
		return st;
	st->pg = pg;
	st->id = ++r->sync.next_stream ? r->sync.next_stream : ++r->sync.next_stream;
	snprintf(st->node, sizeof(st->node), "%s", node);
	st->next = r->streams[pg % STREAM_BUCKETS];
	r->streams[pg % STREAM_BUCKETS] = st;
	return st;
}

static void stream_free(struct stream *st)
{
	for (unsigned b = 0; b < DIRTY_BUCKETS; b++)
		while (st->dirty[b]) {
			struct dext *d = st->dirty[b];
			st->dirty[b] = d->next;
			free(d);
		}
	free(st);
}

static struct dext **dirty_slot(struct stream *st, uint64_t layer, uint64_t ext)
{
	struct dext **pp = &st->dirty[rep_ext_hash(layer, ext) % DIRTY_BUCKETS];

	while (*pp && ((*pp)->layer != layer || (*pp)->ext != ext))
		pp = &(*pp)->next;
	return pp;
}

void sync_dirty(struct stream *st, uint64_t layer, uint64_t ext)
{
	struct dext **pp = dirty_slot(st, layer, ext), *d;

	if (*pp)
		return;
	if (!(d = calloc(1, sizeof(*d)))) {
		/* cannot remember it: the member is no longer known to match */
		kura_log(WARN, "resync: out of memory; group %u of node %s starts again", st->pg,
			 st->node);
		st->pg = UINT32_MAX; /* dropped at the next map; requests get -EREMOTE */
		return;
	}
	d->layer = layer;
	d->ext = ext;
	*pp = d;
}

static int dirty_take(struct stream *st, uint64_t layer, uint64_t ext)
{
	struct dext **pp = dirty_slot(st, layer, ext), *d = *pp;

	if (!d)
		return 0;
	*pp = d->next;
	free(d);
	return 1;
}

/* ---- the source: serving a SYNC request ---- */

struct sjob;

/* One extent of a request, from lock to unlock. */
struct xtask {
	struct kura_op op;
	struct sjob *j;
	struct vent *v;
	struct xtask *wnext;  /* the next task waiting for v */
	uint64_t layer, ext, nver;
	int listed;
	uint64_t version;     /* the source's, when it has the extent */
	struct kura_blk_bitmap present;
	int delta;            /* only the blocks in `missed` go (missed.c) */
	unsigned rlo, rn;     /* blocks read here: the delta's span, else all */
	struct kura_blk_bitmap missed;
	void *buf;
	struct kura_link_req *reqs;
	unsigned nreq, pending;
	unsigned sent;        /* requests submitted so far */
	unsigned vreq;        /* the one carrying the version (nreq: none) */
	int err, freeing, started;
};

struct sjob {
	struct kura_rep *r;
	char node[KURA_MAP_NAME_MAX];
	uint32_t pg;
	struct kura_proto_sync range;
	struct kura_proto_sync_ent *ents;
	size_t n, ni;
	struct kura_proto_sync_ent *mine; /* the source's (version unused) */
	size_t nm, mi;
	unsigned active, started, begun;
	unsigned budget;      /* extents to send or free at most */
	struct rslot *slot;   /* this node's pacing of its reads (pace.c), or NULL */
	uint64_t deadline_ns;
	int err, stopped;
	uint64_t next_layer, next_ext;
	struct kura_proto_sync_result *out;
	kura_blk_cb cb;
	void *arg;
};

static void job_pump(struct sjob *j);

/* Whether the member may still be copied to: this node is the group's
 * source, the member is in its set, UP or RECOVERING with its stream. */
static int member_ok(struct kura_rep *r, uint32_t pg, const char *node, int need_stream)
{
	unsigned idx[KURA_MAP_MAX_REPLICAS], n;
	int src;

	if (r->destroying || !r->map || pg >= r->map->pgs)
		return 0;
	src = kura_map_sync_source(r->map, pg);
	if (src < 0 || strcmp(r->map->nodes[src].name, r->name))
		return 0;
	n = kura_map_place(r->map, pg, idx);
	for (unsigned i = 0; i < n; i++) {
		const struct kura_map_node *nd = &r->map->nodes[idx[i]];

		if (strcmp(nd->name, node))
			continue;
		if (rep_behind(r->map, pg, nd))
			return !need_stream || sync_stream(r, pg, node);
		return nd->state == KURA_NODE_UP;
	}
	return 0;
}

void rep_release(struct kura_rep *r, struct held **list, int lost)
{
	struct held *h = *list;

	*list = NULL;
	while (h) {
		struct held *next = h->next;
		int err;

		r->outstanding--;
		err = lost && h->forwarded ? -EAGAIN
					   : rep_change(r, h->layer, h->ext, h->blk, h->nblk,
							h->buf, h->cls, h->cb, h->arg, h->svc,
							h->ver);
		if (err)
			h->cb(h->arg, err);
		free(h->buf);
		free(h);
		h = next;
	}
}

static void task_locked(struct kura_op *op, int res);

/* The lock passes to the next task waiting, or the writes held go on. */
static void unlock(struct kura_rep *r, struct vent *v)
{
	struct xtask *t = v->locker;

	v->locked = 0;
	v->locker = t->wnext;
	if (v->locker) {
		if (!v->inflight) {
			v->locked = 1;
			v->locker->op.fn = task_locked;
			kura_loop_defer(r->loop, &v->locker->op, 0);
		}
		return;
	}
	/* the writes released may fail and finish their versions at once:
	 * v stays until they are all on their way */
	v->inflight++;
	v->held_tail = NULL;
	rep_release(r, &v->held, 0);
	v->inflight--;
	rep_vent_put(r, v);
}

/* The member's peer (missed.c's notes hang on it), or NULL. */
static struct peer *member_peer(struct sjob *j)
{
	int i = j->r->map ? kura_map_find(j->r->map, j->node) : -1;

	return i >= 0 ? rep_peer(j->r, &j->r->map->nodes[i]) : NULL;
}

static void task_end(struct xtask *t)
{
	struct sjob *j = t->j;
	struct kura_rep *r = j->r;

	if (t->err && t->started && !t->delta) {
		/* a copy that may have landed in part: whatever the member lists
		 * for it next time, it is sent again (the blocks it missed go as
		 * one write with the version: all or nothing, so the member's
		 * next listing says which, and the notes stay until it lands) */
		struct stream *st = sync_stream(r, j->pg, j->node);

		if (st)
			sync_dirty(st, t->layer, t->ext);
	}
	if (t->v)
		unlock(r, t->v);
	if (t->err && !j->err)
		j->err = t->err;
	free(t->buf);
	free(t->reqs);
	free(t);
	j->active--;
	job_pump(j);
}

static void send_stage(struct xtask *t);
static void stage_done(struct xtask *t);

static void req_done(struct kura_link_req *lr)
{
	struct xtask *t = lr->arg;

	if (lr->status && !(lr->req.op == KURA_OP_FREE && lr->status == -ENOENT) && !t->err)
		t->err = lr->status;
	if (--t->pending)
		return;
	stage_done(t);
}

/* Every request sent so far is answered: send the rest, or finish. */
static void stage_done(struct xtask *t)
{
	struct kura_rep *r = t->j->r;

	if (!t->err && t->sent < t->nreq) {
		send_stage(t);
		return;
	}
	if (!t->err) {
		struct stream *st = sync_stream(r, t->j->pg, t->j->node);
		struct peer *p = member_peer(t->j);

		/* the member now has this extent as the source does; writes
		 * after this reach it in order on the same link */
		if (st)
			dirty_take(st, t->layer, t->ext);
		if (p)
			missed_forget(p, t->layer, t->ext);
		if (t->buf) {
			uint64_t bytes = 0;

			for (unsigned i = 0; i < t->nreq; i++)
				if (t->reqs[i].req.op == KURA_OP_WRITE)
					bytes += (uint64_t)t->reqs[i].req.nblk * KURA_BLK_SIZE;
			t->j->out->copied++;
			t->j->out->copied_bytes += bytes;
			r->sync.served_copied++;
			r->sync.served_bytes += bytes;
			r->sync.served_missed += t->delta;
		} else {
			t->j->out->freed++;
			r->sync.served_freed++;
		}
	}
	task_end(t);
}

/* Whether block b goes to the member: present here, and when the member
 * needs only what it missed, one of those. */
static int sends(const struct xtask *t, unsigned b)
{
	return kura_blk_bit(&t->present, b) && (!t->delta || kura_blk_bit(&t->missed, b));
}

/* The member's link, when the copy may still go to it: else t->err. */
static struct peer *member_link(struct xtask *t)
{
	struct sjob *j = t->j;
	struct kura_rep *r = j->r;
	int i = kura_map_find(r->map, j->node);
	struct peer *p = i >= 0 && !r->destroying ? rep_peer(r, &r->map->nodes[i]) : NULL;

	if (!member_ok(r, j->pg, j->node, 1)) {
		/* the map moved on while the extent was read: another source may
		 * be copying it now; this copy must not land after that one */
		t->err = -EREMOTE;
		return NULL;
	}
	if (!p || !p->link || !kura_link_up(p->link)) {
		t->err = r->destroying ? -ESHUTDOWN : -ENOTCONN;
		return NULL;
	}
	return p;
}

/* Submits the next stage on the member's link, in order: everything
 * before the request that carries the version, then (once all of those
 * are answered without error) that one, so the member shows the source's
 * version only over a copy that is whole: a run it failed to write (its
 * disk, its space) must not hide behind the version, where a later source
 * would take the copy for complete. */
static void send_stage(struct xtask *t)
{
	struct peer *p = member_link(t);
	unsigned to = t->sent < t->vreq ? t->vreq : t->nreq;

	if (!p) {
		task_end(t);
		return;
	}
	t->pending = 1; /* until every request of the stage is in */
	for (unsigned k = t->sent; k < to; k++) {
		int err;

		t->reqs[k].cb = req_done;
		t->reqs[k].arg = t;
		t->pending++;
		if ((err = kura_link_submit(p->link, &t->reqs[k]))) {
			t->pending--;
			t->err = err;
			break; /* the link keeps its order: nothing after a gap */
		}
	}
	t->sent = to;
	if (!--t->pending)
		stage_done(t);
}

/* Sends the FREE (when the member may hold anything) and the runs of
 * present blocks, all on the member's link, in this order, the version
 * last (send_stage). */
static void task_send(struct xtask *t)
{
	struct kura_rep *r = t->j->r;
	unsigned runs = 0, n = 0;

	for (unsigned b = 0; t->buf && b < KURA_EXT_BLOCKS; b++)
		runs += sends(t, b) && (!b || !sends(t, b - 1));
	if (!member_link(t)) {
		task_end(t);
		return;
	}
	if (!(t->reqs = calloc(runs + 1, sizeof(*t->reqs)))) {
		t->err = -ENOMEM;
		task_end(t);
		return;
	}
	if (t->freeing) {
		struct kura_link_req *q = &t->reqs[n++];

		q->req.op = KURA_OP_FREE;
		q->req.cls = KURA_IO_REBUILD;
		q->req.layer = t->layer;
		q->req.ext = t->ext;
	}
	for (unsigned b = 0; t->buf && b < KURA_EXT_BLOCKS;) {
		unsigned e = b;
		struct kura_link_req *q;

		if (!sends(t, b)) {
			b++;
			continue;
		}
		while (e < KURA_EXT_BLOCKS && sends(t, e))
			e++;
		q = &t->reqs[n++];
		q->req.op = KURA_OP_WRITE;
		q->req.cls = KURA_IO_REBUILD;
		q->req.layer = t->layer;
		q->req.ext = t->ext;
		q->req.blk = (uint16_t)b;
		q->req.nblk = (uint16_t)(e - b);
		q->data = (uint8_t *)t->buf + (size_t)b * KURA_BLK_SIZE;
		b = e;
	}
	/* the runs land as plain writes, the last one carries the version
	 * (flagged, so the member applies it only when newer than what it
	 * has: the extent is freed first, so it is): until every run is in,
	 * the member's copy does not show the source's version, and a copy
	 * cut short is compared as different and sent again */
	t->vreq = n;
	for (unsigned k = n; k-- > 0;)
		if (t->reqs[k].req.op == KURA_OP_WRITE) {
			t->vreq = k;
			/* (a delta is not freed first: its last run is written
			 * whatever version the member has by then, none above
			 * this one while the extent is locked here) */
			t->reqs[k].req.flags = t->version && !t->delta ? KURA_PROTO_F_REPLICA : 0;
			t->reqs[k].req.version = t->version;
			break;
		}
	for (unsigned k = 0; k < n; k++)
		t->reqs[k].req.arg_layer = r->map->epoch; /* sent as the source under this map */
	t->nreq = n;
	t->sent = 0;
	if (!n) {
		task_end(t); /* nothing here and nothing there: nothing to send */
		return;
	}
	send_stage(t);
}

static void task_read_done(void *arg, int err)
{
	struct xtask *t = arg;

	if (err) {
		kura_log(WARN, "resync: cannot read extent %llu/%llu to copy it to node %s: %s",
			 (unsigned long long)t->layer, (unsigned long long)t->ext, t->j->node,
			 strerror(-err));
		t->err = err;
		task_end(t);
		return;
	}
	task_send(t);
}

/* The member holds the extent at a version this node held, and missed
 * only the blocks noted since (missed.c): those go over its copy (no
 * FREE), as one write from the first to the last of them carrying the
 * version, so the member takes all of it or nothing (a copy cut short
 * must not leave it at the old version with some new blocks, which
 * another source would take for the old content). When a block in that
 * span is absent here (writing it would make it present there), or for
 * an extent written since the stream began (the member's listing may
 * predate a copy it got), the extent goes whole. */
static void task_delta(struct xtask *t)
{
	struct peer *p = member_peer(t->j);
	int lo = -1, hi = -1;

	if (!p || !missed_blocks(p, t->layer, t->ext, t->nver, t->version, &t->missed))
		return;
	for (unsigned b = 0; b < KURA_EXT_BLOCKS; b++)
		if (kura_blk_bit(&t->missed, b)) {
			lo = lo < 0 ? (int)b : lo;
			hi = (int)b;
		}
	if (lo < 0)
		return;
	memset(&t->missed, 0, sizeof(t->missed));
	for (int b = lo; b <= hi; b++) {
		if (!kura_blk_bit(&t->present, (unsigned)b))
			return; /* whole */
		t->missed.w[b / 64] |= 1ull << (b % 64);
	}
	t->delta = 1;
	t->freeing = 0;
	t->rlo = (unsigned)lo;
	t->rn = (unsigned)(hi - lo + 1);
}

/* The extent is locked: nothing is in flight to it and new writes wait. */
static void task_decide(struct xtask *t)
{
	struct sjob *j = t->j;
	struct kura_rep *r = j->r;
	struct kura_blk_extent_info info;
	struct stream *st = sync_stream(r, j->pg, j->node);
	int have = !kura_blk_extent_info(r->store, t->layer, t->ext, &info);
	int dirty = st && dirty_slot(st, t->layer, t->ext)[0] != NULL;
	struct peer *p = member_peer(j);
	int err;

	if (t->err) {
		task_end(t);
		return;
	}
	if (!member_ok(r, j->pg, j->node, 1)) {
		t->err = -EREMOTE; /* the map moved on: the member asks again */
		task_end(t);
		return;
	}
	j->out->checked++;
	if ((have && !dirty && t->listed && t->nver == info.version &&
	     !(p && missed_any(p, t->layer, t->ext))) ||
	    (!have && !dirty && !t->listed)) {
		task_end(t); /* the member has it as it is here */
		return;
	}
	j->started++;
	t->started = 1;
	t->freeing = t->listed || dirty;
	if (!have) {
		task_send(t);
		return;
	}
	t->version = info.version;
	t->present = info.present;
	t->rlo = 0;
	t->rn = KURA_EXT_BLOCKS;
	if (t->listed && !dirty && t->nver != info.version)
		task_delta(t);
	if (!(t->buf = kura_aligned_alloc_raw(KURA_EXT_SIZE))) {
		t->err = -ENOMEM;
		task_end(t);
		return;
	}
	err = kura_blk_read(r->store, t->layer, t->ext, t->rlo, t->rn,
			    (uint8_t *)t->buf + (size_t)t->rlo * KURA_BLK_SIZE, KURA_IO_REBUILD,
			    task_read_done, t);
	if (err) {
		t->err = err;
		task_end(t);
	}
}

static void task_locked(struct kura_op *op, int res)
{
	(void)res;
	task_decide(KURA_CONTAINER_OF(op, struct xtask, op));
}

void sync_vent_idle(struct kura_rep *r, struct vent *v)
{
	if (v->locked)
		return;
	v->locked = 1;
	v->locker->op.fn = task_locked;
	kura_loop_defer(r->loop, &v->locker->op, 0);
}

/* Locks the extent for t: at once when nothing is in flight to it (on a
 * later turn), else when its writes are done. */
static void task_start(struct xtask *t)
{
	struct kura_rep *r = t->j->r;
	struct vent *v = rep_vent_get(r, t->layer, t->ext);
	struct xtask **pp;

	if (!v) {
		/* fails from a later turn (task_decide finds no lock), not
		 * inside the walk that started it */
		t->err = -ENOMEM;
		t->op.fn = task_locked;
		kura_loop_defer(r->loop, &t->op, 0);
		return;
	}
	t->v = v;
	for (pp = &v->locker; *pp; pp = &(*pp)->wnext)
		;
	*pp = t;
	if (v->locker == t && !v->inflight)
		sync_vent_idle(r, v);
}

static void job_finish(struct sjob *j)
{
	struct kura_rep *r = j->r;

	if (!j->err) {
		struct stream *st = sync_stream(r, j->pg, j->node);

		j->out->stream = st ? st->id : 0;
		j->out->done = !j->stopped;
		j->out->next_layer = j->stopped ? j->next_layer : 0;
		j->out->next_ext = j->stopped ? j->next_ext : 0;
	}
	r->outstanding--;
	pace_release(r, j->slot, j->err ? 0 : j->out->copied_bytes);
	j->cb(j->arg, j->err);
	free(j->ents);
	free(j->mine);
	free(j);
}

static void job_pump(struct sjob *j)
{
	while (!j->err && !j->stopped && j->active < SYNC_TASKS) {
		const struct kura_proto_sync_ent *a = j->ni < j->n ? &j->ents[j->ni] : NULL;
		const struct kura_proto_sync_ent *b = j->mi < j->nm ? &j->mine[j->mi] : NULL;
		const struct kura_proto_sync_ent *k;
		struct xtask *t;
		int c;

		if (!a && !b)
			break;
		c = !a ? 1 : !b ? -1 : rep_key_cmp(a->layer, a->ext, b->layer, b->ext);
		k = c <= 0 ? a : b;
		if (j->started >= j->budget || (j->begun && kura_now_ns() >= j->deadline_ns)) {
			/* the budget is spent, or answer well within the link's
			 * timeout: the rest next time */
			j->stopped = 1;
			j->next_layer = k->layer;
			j->next_ext = k->ext;
			break;
		}
		if (j->started + j->active >= j->budget)
			break; /* each task in flight may copy: the next when one ends */
		if (!(t = calloc(1, sizeof(*t)))) {
			j->err = -ENOMEM;
			break;
		}
		t->j = j;
		t->layer = k->layer;
		t->ext = k->ext;
		t->listed = c <= 0;
		t->nver = c <= 0 ? a->version : 0;
		j->ni += c <= 0;
		j->mi += c >= 0;
		j->active++;
		j->begun++;
		task_start(t);
	}
	if (!j->active)
		job_finish(j);
}

static int add_inflight(struct kura_rep *r, const struct kura_proto_sync *h, const char *node,
			struct kura_proto_sync_ent **mine, size_t *n);

static void job_walk(struct sjob *j)
{
	j->deadline_ns = kura_now_ns() + SYNC_JOB_NS;
	job_pump(j);
}

/* This node's pacing granted the walk a slot, or none in time (s NULL:
 * the job answers at once, having moved nothing; the member asks again). */
static void job_paced(void *arg, struct rslot *s)
{
	struct sjob *j = arg;

	j->slot = s;
	j->budget = s ? KURA_MIN(j->budget, pace_budget(s)) : 0;
	if (j->r->destroying)
		j->err = -ESHUTDOWN;
	job_walk(j);
}

/* Copies other nodes sent before the walk began (an old primary's, say)
 * are in the index now, even those that waited for journal room: the
 * walk sees them. */
static void job_flushed(void *arg, int err)
{
	struct sjob *j = arg;

	if (!err)
		err = rep_list_group(j->r, j->pg, &j->range, &j->mine, &j->nm);
	if (!err)
		err = add_inflight(j->r, &j->range, j->node, &j->mine, &j->nm);
	j->err = err;
	/* the walk reads only with a slot of this node's pacing (a confirm,
	 * an empty range, reads nothing) */
	if (!err && rep_key_cmp(j->range.from_layer, j->range.from_ext, j->range.to_layer,
				j->range.to_ext) < 0 &&
	    !pace_ask(j->r, job_paced, j))
		return;
	job_walk(j);
}

static int ent_cmp(const void *a, const void *b)
{
	const struct kura_proto_sync_ent *x = a, *y = b;

	return rep_key_cmp(x->layer, x->ext, y->layer, y->ext);
}

/* Extents of the group with writes in flight or waiting (a vent): a first
 * write to an extent may still wait for journal room, absent from the
 * index, with no copy for the member, whose stream began after it; so
 * each is walked too and, when the member is behind, sent whole. */
static int add_inflight(struct kura_rep *r, const struct kura_proto_sync *h, const char *node,
			struct kura_proto_sync_ent **mine, size_t *n)
{
	struct stream *st = sync_stream(r, h->pg, node);
	size_t k = *n, cap = *n;
	struct kura_proto_sync_ent *v = *mine;

	for (unsigned b = 0; b < VER_BUCKETS; b++)
		for (struct vent *e = r->vers[b]; e; e = e->next) {
			if (kura_map_pg(r->map, e->layer, e->ext) != h->pg ||
			    rep_key_cmp(e->layer, e->ext, h->from_layer, h->from_ext) < 0 ||
			    rep_key_cmp(e->layer, e->ext, h->to_layer, h->to_ext) >= 0)
				continue;
			if (st)
				sync_dirty(st, e->layer, e->ext);
			if (k == cap) {
				void *nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));
				if (!nv) {
					*mine = v;
					return -ENOMEM;
				}
				v = nv;
			}
			v[k].layer = e->layer;
			v[k].ext = e->ext;
			v[k++].version = 0;
		}
	if (k > *n) {
		/* sorted, each once */
		size_t w = 0;

		qsort(v, k, sizeof(*v), ent_cmp);
		for (size_t i = 0; i < k; i++)
			if (!w || ent_cmp(&v[w - 1], &v[i]))
				v[w++] = v[i];
		k = w;
	}
	*mine = v;
	*n = k;
	return 0;
}

/* The request's fields, each one: 0 or -EINVAL. */
static int check_request(const struct kura_rep *r, const struct kura_proto_sync *h,
			 const struct kura_proto_sync_ent *e, size_t n)
{
	if (h->n != n || h->reserved || h->budget > KURA_PROTO_SYNC_BUDGET || h->pg >= r->map->pgs ||
	    rep_key_cmp(h->from_layer, h->from_ext, h->to_layer, h->to_ext) > 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (e[i].ext >= KURA_EXT_MAX || kura_map_pg(r->map, e[i].layer, e[i].ext) != h->pg ||
		    rep_key_cmp(e[i].layer, e[i].ext, h->from_layer, h->from_ext) < 0 ||
		    rep_key_cmp(e[i].layer, e[i].ext, h->to_layer, h->to_ext) >= 0 ||
		    (i && rep_key_cmp(e[i - 1].layer, e[i - 1].ext, e[i].layer, e[i].ext) >= 0))
			return -EINVAL;
	}
	return 0;
}

int sync_job(struct kura_rep *r, const char *peer, const struct kura_proto_sync *h,
	     struct kura_proto_sync_ent *ents, size_t n, struct kura_proto_sync_result *out,
	     kura_blk_cb cb, void *arg)
{
	struct sjob *j = NULL;
	int i, err;

	if (r->destroying)
		err = -ESHUTDOWN;
	else if (!r->map)
		err = -EHOSTDOWN;
	else if (!(j = calloc(1, sizeof(*j))))
		err = -ENOMEM;
	else
		err = check_request(r, h, ents, n);
	if (err) {
		free(j);
		free(ents);
		return err;
	}
	j->ents = ents;
	/* a member catching up: its stream starts now */
	i = kura_map_find(r->map, peer);
	if (!member_ok(r, h->pg, peer, 0))
		err = -EREMOTE;
	else if (rep_behind(r->map, h->pg, &r->map->nodes[i]) && !stream_get(r, h->pg, peer))
		err = -ENOMEM;
	if (!err)
		err = kura_blk_flush(r->store, job_flushed, j);
	if (err) {
		free(j->ents);
		free(j);
		return err;
	}
	j->r = r;
	snprintf(j->node, sizeof(j->node), "%s", peer);
	j->pg = h->pg;
	j->budget = h->budget ? h->budget : KURA_PROTO_SYNC_BUDGET;
	j->range = *h;
	j->n = n;
	j->out = out;
	j->cb = cb;
	j->arg = arg;
	memset(out, 0, sizeof(*out));
	r->outstanding++;
	return 0;
}

int kura_rep_sync(struct kura_rep *r, const char *peer, const void *data, size_t len,
		  struct kura_proto_sync_result *out, kura_blk_cb cb, void *arg)
{
	struct kura_proto_sync h;
	struct kura_proto_sync_ent *ents = NULL;
	size_t n;

	if (len < sizeof(h) || (len - sizeof(h)) % sizeof(struct kura_proto_sync_ent))
		return -EINVAL;
	memcpy(&h, data, sizeof(h));
	n = (len - sizeof(h)) / sizeof(struct kura_proto_sync_ent);
	if (n && !(ents = malloc(n * sizeof(*ents))))
		return -ENOMEM;
	if (n)
		memcpy(ents, (const uint8_t *)data + sizeof(h), n * sizeof(*ents));
	return sync_job(r, peer, &h, ents, n, out, cb, arg);
}

/* ---- the member: catching up ---- */

struct syncreq {
	struct kura_link_req lr;
	struct kura_rep *r;
	uint32_t pg;
	uint64_t gen; /* the recovery or rebuild it belongs to */
	int confirm;  /* an empty range: is the group's stream still the one? */
	uint32_t cseq; /* confirm: which one (an older one's answer does not count) */
	struct rslot *slot; /* its rebuild pacing slot (pace.c), NULL for a confirm */
	struct kura_proto_sync_result res;
	uint8_t *data;
};

static int ment_cmp(const void *a, const void *b)
{
	const struct ment *x = a, *y = b;

	if (x->pg != y->pg)
		return x->pg < y->pg ? -1 : 1;
	return rep_key_cmp(x->layer, x->ext, y->layer, y->ext);
}

struct mine_list {
	struct kura_rep *r;
	size_t cap;
};

static int mine_add(void *arg, uint64_t layer, uint64_t ext)
{
	struct mine_list *l = arg;
	struct syncer *sy = &l->r->sync;
	struct ment *m;

	if (sy->nmine == l->cap) {
		void *nv = realloc(sy->mine, (l->cap = l->cap ? l->cap * 2 : 256) * sizeof(*m));
		if (!nv)
			return -ENOMEM;
		sy->mine = nv;
	}
	m = &sy->mine[sy->nmine++];
	m->pg = kura_map_pg(l->r->map, layer, ext);
	m->layer = layer;
	m->ext = ext;
	return 0;
}

/* Every extent of this store, by group: once per recovery (extents the
 * stream creates later are the source's to send anyway). */
static int build_mine(struct kura_rep *r)
{
	struct syncer *sy = &r->sync;
	struct mine_list l = { .r = r };
	int err;

	free(sy->mine);
	sy->mine = NULL;
	sy->nmine = 0;
	err = rep_each_extent(r, mine_add, &l);
	if (!err && sy->nmine)
		qsort(sy->mine, sy->nmine, sizeof(*sy->mine), ment_cmp);
	return err;
}

static void pump_later(struct kura_rep *r);

static void sg_reset(struct sgroup *g)
{
	g->state = SG_PENDING;
	g->source[0] = '\0';
	g->from_layer = g->from_ext = 0;
	g->stream = 0;
	g->confirming = 0; /* an answer on its way no longer counts (cseq) */
}

static void report_if_done(struct kura_rep *r)
{
	struct syncer *sy = &r->sync;

	if (!sy->active || sy->done < sy->total || sy->confirmed < sy->total ||
	    sy->reported_epoch == sy->epoch)
		return;
	if (!sy->end_ns) {
		sy->end_ns = kura_now_ns();
		kura_log(INFO, "resync: node %s has every group it %s (%u): %llu extents compared, "
			 "%llu copied (%.1f MiB), %llu freed, in %.1f s", r->name,
			 sy->since ? "holds" : "was filling", sy->total,
			 (unsigned long long)sy->checked, (unsigned long long)sy->copied,
			 (double)sy->copied_bytes / 1048576.0, (unsigned long long)sy->freed,
			 (double)(sy->end_ns - sy->start_ns) / 1e9);
	}
	/* good for this map only: the leader takes it if its map is this one */
	sy->reported_epoch = sy->epoch;
	if (sy->since)
		kura_member_set_synced(r->member, sy->since, sy->epoch);
	kura_member_set_filled(r->member, sy->epoch);
}

static void sync_send(struct kura_rep *r, uint32_t pg, struct peer *p, int confirm,
		      struct rslot *slot);

static void syncreq_done(struct kura_link_req *lr)
{
	struct syncreq *q = lr->arg;
	struct kura_rep *r = q->r;
	struct syncer *sy = &r->sync;
	struct sgroup *g = sy->active && q->gen == sy->gen ? &sy->g[q->pg] : NULL;
	const struct kura_proto_sync *h = (const struct kura_proto_sync *)q->data;
	int st = lr->status;

	r->outstanding--;
	sy->running--;
	pace_release(r, q->slot, st ? 0 : q->res.copied_bytes);
	q->slot = NULL;
	if (q->confirm) {
		/* whether the stream the group was copied under still runs */
		if (!r->destroying && g && g->state == SG_DONE && g->confirming &&
		    q->cseq == g->cseq) {
			g->confirming = 0;
			if (!st && q->res.stream == g->stream) {
				g->confirmed = 1;
				sy->confirmed++;
			} else if (!st) {
				/* it began again: writes may have missed this node */
				sg_reset(g);
				sy->done--;
			}
		}
		free(q->data);
		free(q);
		if (st)
			pump_later(r);
		else
			sync_pump(r);
		return;
	}
	if (r->destroying || !g || g->state != SG_RUNNING) {
		/* of an earlier recovery, or a group that changed meanwhile:
		 * its place in the window goes to the next */
		free(q->data);
		free(q);
		if (!r->destroying)
			sync_pump(r);
		return;
	}
	if (!st && !q->res.done &&
	    (rep_key_cmp(q->res.next_layer, q->res.next_ext, h->from_layer, h->from_ext) < 0 ||
	     rep_key_cmp(q->res.next_layer, q->res.next_ext, h->to_layer, h->to_ext) >= 0))
		st = -EPROTO;
	if (st) {
		if (st != -EREMOTE && st != -ENOTCONN && st != -ESHUTDOWN)
			kura_log(WARN, "resync: group %u from node %s: %s; trying again", q->pg,
				 g->source, strerror(-st));
		g->state = SG_PENDING; /* from where it got to: the source sends only what differs */
		free(q->data);
		free(q);
		pump_later(r);
		return;
	}
	{
		int src = kura_map_sync_source(r->map, q->pg);

		if (src < 0 || strcmp(r->map->nodes[src].name, g->source) ||
		    r->map->nodes[src].started_ms != g->source_started) {
			/* the source changed while it answered: again, from the new one */
			sg_reset(g);
			free(q->data);
			free(q);
			sync_pump(r);
			return;
		}
	}
	if (g->stream != q->res.stream && (g->from_layer || g->from_ext || g->stream)) {
		/* the source's stream began again: writes may have been missed
		 * in between; the group again from its start */
		g->stream = q->res.stream;
		g->from_layer = g->from_ext = 0;
		g->state = SG_PENDING;
		free(q->data);
		free(q);
		sync_pump(r);
		return;
	}
	g->stream = q->res.stream;
	sy->checked += q->res.checked;
	sy->copied += q->res.copied;
	sy->copied_bytes += q->res.copied_bytes;
	sy->freed += q->res.freed;
	if (q->res.done && h->to_layer == UINT64_MAX && h->to_ext == UINT64_MAX) {
		g->state = SG_DONE;
		sy->done++;
	} else {
		g->state = SG_PENDING;
		g->from_layer = q->res.done ? h->to_layer : q->res.next_layer;
		g->from_ext = q->res.done ? h->to_ext : q->res.next_ext;
	}
	free(q->data);
	free(q);
	sync_pump(r);
}

/* One SYNC request for group pg from its cursor. */
static void sync_send(struct kura_rep *r, uint32_t pg, struct peer *p, int confirm,
		      struct rslot *slot)
{
	struct syncer *sy = &r->sync;
	struct sgroup *g = &sy->g[pg];
	struct ment key = { pg, g->from_layer, g->from_ext };
	size_t lo = 0, hi = sy->nmine, n = 0, i;
	struct kura_proto_sync *h;
	struct kura_proto_sync_ent *e;
	struct syncreq *q = calloc(1, sizeof(*q));

	/* the first of this group's extents at or after the cursor */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ment_cmp(&sy->mine[mid], &key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (i = lo; !confirm && i < sy->nmine && sy->mine[i].pg == pg && n < KURA_PROTO_SYNC_MAX;
	     i++)
		n++;
	if (!q || !(q->data = calloc(1, sizeof(*h) + n * sizeof(*e)))) {
		free(q);
		pace_release(r, slot, 0);
		pump_later(r);
		return;
	}
	q->slot = slot;
	h = (struct kura_proto_sync *)q->data;
	e = (struct kura_proto_sync_ent *)(q->data + sizeof(*h));
	h->pg = pg;
	h->budget = pace_budget(slot);
	h->from_layer = confirm ? 0 : g->from_layer;
	h->from_ext = confirm ? 0 : g->from_ext;
	h->to_layer = h->to_ext = confirm ? 0 : UINT64_MAX; /* confirm: an empty range */
	if (!confirm && i < sy->nmine && sy->mine[i].pg == pg) {
		/* more than one request holds: this one ends where the next starts */
		h->to_layer = sy->mine[i].layer;
		h->to_ext = sy->mine[i].ext;
	}
	for (size_t k = lo; k < lo + n; k++) {
		struct kura_blk_extent_info info;

		if (kura_blk_extent_info(r->store, sy->mine[k].layer, sy->mine[k].ext, &info))
			continue; /* gone since: the source sends it if it has it */
		e[h->n].layer = sy->mine[k].layer;
		e[h->n].ext = sy->mine[k].ext;
		e[h->n++].version = info.version;
	}
	q->r = r;
	q->pg = pg;
	q->gen = sy->gen;
	q->confirm = confirm;
	q->cseq = confirm ? g->cseq + 1 : 0;
	q->lr.req.op = KURA_OP_SYNC;
	q->lr.req.cls = KURA_IO_REBUILD;
	q->lr.req.data_len = (uint32_t)(sizeof(*h) + h->n * sizeof(*e));
	q->lr.data = q->data;
	q->lr.buf = &q->res;
	q->lr.cap = sizeof(q->res);
	q->lr.cb = syncreq_done;
	q->lr.arg = q;
	if (kura_link_submit(p->link, &q->lr)) {
		free(q->data);
		free(q);
		pace_release(r, slot, 0);
		pump_later(r);
		return;
	}
	if (confirm) {
		g->confirming = 1;
		g->cseq = q->cseq;
	} else
		g->state = SG_RUNNING;
	sy->running++;
	r->outstanding++;
}

void sync_pump(struct kura_rep *r)
{
	struct syncer *sy = &r->sync;
	struct rslot *slot;
	int waiting = 0;

	if (r->destroying)
		return;
	if (!sy->active || !r->map || rep_strays_busy(r)) {
		/* (a stray free's end pumps again: what this node lists must
		 * not change meanwhile) */
		pace_return_unused(r);
		return;
	}
	if (!sy->mine_built) {
		if (build_mine(r)) {
			pump_later(r);
			return;
		}
		sy->mine_built = 1;
	}
	/* Groups take turns: a request answered having moved nothing (its
	 * source's pacing held it) must not have its group asked again ahead
	 * of the others while slots are scarce. */
	for (uint32_t k = 0, first = sy->next_pg; k < sy->pgs && sy->running < SYNC_PARALLEL; k++) {
		uint32_t pg = (first + k) % sy->pgs;
		struct sgroup *g = &sy->g[pg];
		int src;
		const struct kura_map_node *sn;
		struct peer *p;

		if (g->state != SG_PENDING)
			continue;
		src = kura_map_sync_source(r->map, pg);
		if (src < 0) {
			waiting = 1; /* no source yet: a member that was up last is away */
			continue;
		}
		sn = &r->map->nodes[src];
		if (!strcmp(sn->name, r->name)) {
			g->state = SG_DONE; /* this node is the source */
			snprintf(g->source, sizeof(g->source), "%s", sn->name);
			g->source_started = sn->started_ms;
			sy->done++;
			continue;
		}
		p = rep_peer(r, sn);
		if (!p || !p->link || !kura_link_up(p->link)) {
			waiting = 1;
			continue;
		}
		if (strcmp(g->source, sn->name) || g->source_started != sn->started_ms) {
			/* a source other than the one it started with: from the start */
			sg_reset(g);
			snprintf(g->source, sizeof(g->source), "%s", sn->name);
			g->source_started = sn->started_ms;
		}
		if (!(slot = pace_take(r))) {
			/* asked for: the pump runs again when it comes (and
			 * in a while anyway, should the asking have failed) */
			waiting = 1;
			break;
		}
		sync_send(r, pg, p, 0, slot);
		sy->next_pg = (pg + 1) % sy->pgs;
	}
	/* every group copied: before saying so, check each was copied under
	 * a stream that still runs (one that began again, or a source that
	 * changed in maps this node never saw, means writes may have missed
	 * it) */
	for (uint32_t pg = 0; sy->done == sy->total && pg < sy->pgs && sy->running < SYNC_PARALLEL;
	     pg++) {
		struct sgroup *g = &sy->g[pg];
		int src;
		struct peer *p;

		if (g->state != SG_DONE || g->confirmed || g->confirming)
			continue;
		src = kura_map_sync_source(r->map, pg);
		if (src >= 0 && !strcmp(r->map->nodes[src].name, r->name)) {
			g->confirmed = 1;
			sy->confirmed++;
			continue;
		}
		p = src >= 0 ? rep_peer(r, &r->map->nodes[src]) : NULL;
		if (!p || !p->link || !kura_link_up(p->link)) {
			waiting = 1;
			continue;
		}
		sync_send(r, pg, p, 1, NULL);
	}
	pace_return_unused(r);
	if (waiting)
		pump_later(r);
	report_if_done(r);
}

static void pump_now(struct kura_op *op, int res)
{
	struct kura_rep *r = KURA_CONTAINER_OF(op, struct kura_rep, sync.pump_soon);

	(void)res;
	r->sync.pump_soon_pending = 0;
	r->outstanding--; /* so a shutdown waits for this turn */
	sync_pump(r);
}

void sync_pump_soon(struct kura_rep *r)
{
	if (r->sync.pump_soon_pending || r->destroying)
		return;
	r->sync.pump_soon_pending = 1;
	r->outstanding++;
	r->sync.pump_soon.fn = pump_now;
	kura_loop_defer(r->loop, &r->sync.pump_soon, 0);
}

static void pump_fired(struct kura_op *op, int res)
{
	struct kura_rep *r = KURA_CONTAINER_OF(op, struct kura_rep, sync.pump.op);

	r->sync.pump_armed = 0;
	if (res != -ECANCELED)
		sync_pump(r);
}

static void pump_later(struct kura_rep *r)
{
	if (r->sync.pump_armed || r->destroying)
		return;
	r->sync.pump_armed = 1;
	r->sync.pump.op.fn = pump_fired;
	kura_loop_timer(r->loop, &r->sync.pump, SYNC_RETRY_NS);
}

static void syncer_stop(struct kura_rep *r)
{
	struct syncer *sy = &r->sync;

	free(sy->g);
	free(sy->mine);
	sy->g = NULL;
	sy->mine = NULL;
	sy->nmine = 0;
	sy->mine_built = 0;
	sy->since = 0;
	sy->active = 0;
}

/* This node's own catching up under the new map: every group of its sets
 * while it is RECOVERING, else the groups it is filling. */
static void syncer_map(struct kura_rep *r)
{
	struct syncer *sy = &r->sync;
	const struct kura_map *m = r->map;
	int self = kura_map_find(m, r->name), rec;
	unsigned idx[KURA_MAP_MAX_REPLICAS], fills = 0;
	uint64_t since;

	for (unsigned i = 0; self >= 0 && i < m->nfills; i++)
		fills += !strcmp(m->fills[i].node, r->name);
	rec = self >= 0 && m->nodes[self].state == KURA_NODE_RECOVERING;
	if (!rec && !fills) {
		if (sy->active)
			syncer_stop(r);
		return;
	}
	since = rec ? m->nodes[self].since_ms : 0;
	if (!sy->active || sy->since != since || sy->pgs != m->pgs) {
		/* a new recovery or rebuild: every group again */
		syncer_stop(r);
		if (!(sy->g = calloc(m->pgs, sizeof(*sy->g)))) {
			kura_log(WARN, "resync: out of memory; node %s stays behind", r->name);
			return;
		}
		sy->active = 1;
		sy->gen++;
		sy->pgs = m->pgs;
		sy->since = since;
		sy->checked = sy->copied = sy->copied_bytes = sy->freed = 0;
		sy->start_ns = kura_now_ns();
		sy->end_ns = 0;
		sy->reported_epoch = 0;
		if (rec)
			kura_member_set_synced(r->member, 0, 0);
		kura_log(INFO, "resync: node %s is %s", r->name,
			 rec ? "recovering: copying what it missed"
			     : "filling groups it took over from a node gone out: copying them");
	}
	sy->total = sy->done = 0;
	for (uint32_t pg = 0; pg < sy->pgs; pg++) {
		struct sgroup *g = &sy->g[pg];
		int want = 0, src;

		if (rec) {
			unsigned n = kura_map_place(m, pg, idx);
			for (unsigned i = 0; i < n; i++)
				want |= (int)idx[i] == self;
		} else {
			want = kura_map_filling(m, pg, r->name);
		}
		if (!want) {
			g->state = SG_NA; /* an answer on its way is ignored */
			continue;
		}
		sy->total++;
		if (g->state == SG_NA)
			sg_reset(g);
		src = kura_map_sync_source(m, pg);
		if (g->state == SG_DONE &&
		    (src < 0 || strcmp(m->nodes[src].name, g->source) ||
		     m->nodes[src].started_ms != g->source_started))
			sg_reset(g); /* copied from a node that is not its source now */
		sy->done += g->state == SG_DONE;
	}
	if (sy->end_ns && sy->done < sy->total)
		sy->end_ns = 0; /* not every group is copied any more */
	/* a report holds for one map: in this one, every group's stream is
	 * checked again first */
	sy->epoch = m->epoch;
	sy->confirmed = 0;
	for (uint32_t pg = 0; pg < sy->pgs; pg++) {
		/* a confirm sent under the previous map does not count either:
		 * each group is confirmed anew (and one whose answer came while
		 * it was being copied again is never left waiting for it) */
		sy->g[pg].confirmed = 0;
		sy->g[pg].confirming = 0;
	}
	sync_pump(r);
}

void sync_map(struct kura_rep *r)
{
	const struct kura_map *m = r->map;
	int self = kura_map_find(m, r->name);

	/* streams end when the member is no longer recovering or this node
	 * no longer the group's source */
	for (unsigned b = 0; b < STREAM_BUCKETS; b++) {
		struct stream **pp = &r->streams[b];

		while (*pp) {
			struct stream *st = *pp;
			int i = kura_map_find(m, st->node);
			int src = st->pg < m->pgs ? kura_map_sync_source(m, st->pg) : -1;

			if (i >= 0 && st->pg < m->pgs && rep_behind(m, st->pg, &m->nodes[i]) &&
			    src >= 0 && src == self) {
				pp = &st->next;
				continue;
			}
			*pp = st->next;
			stream_free(st);
		}
	}
	syncer_map(r);
}

void sync_shutdown(struct kura_rep *r)
{
	if (r->sync.pump_armed) {
		kura_loop_cancel_sync(r->loop, &r->sync.pump.op);
		r->sync.pump_armed = 0;
	}
	for (unsigned b = 0; b < STREAM_BUCKETS; b++)
		while (r->streams[b]) {
			struct stream *st = r->streams[b];
			r->streams[b] = st->next;
			stream_free(st);
		}
	syncer_stop(r);
}

void kura_rep_status(struct kura_rep *r, struct kura_jw *w)
{
	const struct syncer *sy = &r->sync;
	uint64_t now = kura_now_ns();

	kura_jw_obj(w, "resync");
	/* the last recovery's figures stay until the next one */
	kura_jw_str(w, "state", !sy->start_ns ? "none" : sy->end_ns ? "done"
				: sy->active ? "running" : "stopped");
	if (sy->start_ns) {
		kura_jw_u64(w, "groups", sy->total);
		kura_jw_u64(w, "groups_done", sy->done);
		kura_jw_u64(w, "extents_compared", sy->checked);
		kura_jw_u64(w, "extents_copied", sy->copied);
		kura_jw_u64(w, "bytes_copied", sy->copied_bytes);
		kura_jw_u64(w, "extents_freed", sy->freed);
		kura_jw_u64(w, "ms", ((sy->end_ns ? sy->end_ns : now) - sy->start_ns) / 1000000);
		kura_jw_u64(w, "requests_in_flight", sy->running);
	}
	kura_jw_end(w);
	peering_status(r, w);
	kura_jw_obj(w, "resync_served");
	kura_jw_u64(w, "extents_copied", sy->served_copied);
	kura_jw_u64(w, "bytes_copied", sy->served_bytes);
	kura_jw_u64(w, "extents_copied_missed_blocks", sy->served_missed);
	kura_jw_u64(w, "extents_freed", sy->served_freed);
	kura_jw_end(w);
	kura_jw_u64(w, "stale_vdisk_writes_refused", r->stale_refused);
	kura_jw_obj(w, "primary_reads");
	kura_jw_u64(w, "own_copy_failed", r->read_errors);
	kura_jw_u64(w, "served_by_another_replica", r->reads_elsewhere);
	kura_jw_u64(w, "repairs", r->reads_repaired);
	kura_jw_end(w);
	kura_jw_u64(w, "writes_refused_low_space", r->nospace_refused);
	kura_jw_u64(w, "stray_copies_freed", r->strays.freed);
	{
		struct kura_blk_stats st;

		/* copies taken after a missed one (kura_blk_write_replica):
		 * expected while catching up, not while up */
		kura_blk_stats(r->store, &st);
		kura_jw_u64(w, "replica_copies_after_a_missed_one", st.replica_gaps);
	}
	pace_status(r, w);
}
