/* Reads at a group's primary (rep.h, "Reads"): this node's own copy, and
 * when that fails with a disk or checksum error (-EIO) the copy of another
 * member that holds every acknowledged write (or when this node's store has
 * stopped, KURA_E_DEAD: the node is leaving): one UP in this node's map and
 * not behind on the group (the primary acknowledges a write only once
 * every such member has it durable). The members are tried in the set's
 * order; the read fails with -EIO only when every one of them failed.
 *
 * Repair: when this copy failed its checksum (the disk answered, with
 * wrong data) and the extent did not change while the good copy was read
 * (its version is the same, no write to it in flight), the blocks this
 * copy holds in the range are written again from the good copy, at the
 * extent's version: a write ordered later is submitted after it and lands
 * over it. A disk that fails reads is left alone (a write to it fails too,
 * and the store would stop: that is the disk's own failure to report). */
#include "replication/rep_int.h"

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_EVERY_NS 1000000000ull

struct pread {
	struct kura_link_req lr;
	struct kura_rep *r;
	uint64_t layer, ext;
	unsigned blk, nblk;
	enum kura_io_class cls;
	void *buf;
	kura_blk_cb cb;
	void *arg;
	unsigned next; /* the set's member tried next */
	uint64_t io_errors; /* the store's, when the read started */
	uint64_t version;   /* this copy's extent version when it failed */
	int repairable;     /* it failed its checksum: it may be written again */
};

/* The good blocks of p (from another copy) written over this copy's
 * present blocks in the range, when nothing changed the extent meanwhile. */
static void repair_done(void *arg, int err)
{
	struct kura_rep *r = arg;

	r->outstanding--;
	if (!err)
		r->reads_repaired++;
}

static void pread_repair(struct pread *p)
{
	struct kura_rep *r = p->r;
	struct kura_blk_extent_info info;
	struct vent *v = *rep_vent_slot(r, p->layer, p->ext);
	unsigned b = p->blk, end = p->blk + p->nblk;

	if (!p->repairable || r->destroying || (v && (v->inflight || v->locker)) ||
	    kura_blk_extent_info(r->store, p->layer, p->ext, &info) || info.version != p->version)
		return;
	while (b < end) {
		unsigned s;

		while (b < end && !kura_blk_bit(&info.present, b))
			b++;
		s = b;
		while (b < end && kura_blk_bit(&info.present, b))
			b++;
		if (b > s &&
		    !kura_blk_write(r->store, p->layer, p->ext, s, b - s,
				    (const uint8_t *)p->buf + (size_t)(s - p->blk) * KURA_BLK_SIZE,
				    info.version, KURA_IO_REBUILD, repair_done, r))
			r->outstanding++;
	}
}

static void pread_finish(struct pread *p, int err)
{
	struct kura_rep *r = p->r;

	r->outstanding--;
	p->cb(p->arg, err);
	free(p);
}

static void pread_next(struct pread *p);

static void pread_remote_done(struct kura_link_req *lr)
{
	struct pread *p = lr->arg;

	if (!lr->status) {
		p->r->reads_elsewhere++;
		pread_repair(p);
		pread_finish(p, 0);
		return;
	}
	pread_next(p);
}

/* The next member that may serve the read, over its link; none left: -EIO. */
static void pread_next(struct pread *p)
{
	struct kura_rep *r = p->r;

	while (!r->destroying && r->map) {
		uint32_t pg = kura_map_pg(r->map, p->layer, p->ext);
		unsigned idx[KURA_MAP_MAX_REPLICAS], n = kura_map_place(r->map, pg, idx);
		const struct kura_map_node *m;
		struct peer *pe;

		if (p->next >= n)
			break;
		m = &r->map->nodes[idx[p->next++]];
		if (!strcmp(m->name, r->name) || m->state != KURA_NODE_UP ||
		    rep_behind(r->map, pg, m))
			continue;
		if (!(pe = rep_peer(r, m)) || !pe->link || !kura_link_up(pe->link))
			continue;
		memset(&p->lr, 0, sizeof(p->lr));
		p->lr.req.magic = KURA_PROTO_MAGIC;
		p->lr.req.op = KURA_OP_READ;
		p->lr.req.cls = (uint8_t)p->cls;
		p->lr.req.layer = p->layer;
		p->lr.req.ext = p->ext;
		p->lr.req.blk = (uint16_t)p->blk;
		p->lr.req.nblk = (uint16_t)p->nblk;
		p->lr.buf = p->buf;
		p->lr.cap = (size_t)p->nblk * KURA_BLK_SIZE;
		p->lr.cb = pread_remote_done;
		p->lr.arg = p;
		if (!kura_link_submit(pe->link, &p->lr))
			return;
	}
	pread_finish(p, r->destroying ? -ESHUTDOWN : -EIO);
}

static void pread_own_done(void *arg, int err)
{
	struct pread *p = arg;
	struct kura_rep *r = p->r;
	uint64_t now;

	if (err != -EIO && err != KURA_E_DEAD) {
		pread_finish(p, err);
		return;
	}
	{
		struct kura_blk_extent_info info;

		p->repairable = err == -EIO && kura_blk_io_errors(r->store) == p->io_errors &&
				!kura_blk_extent_info(r->store, p->layer, p->ext, &info);
		p->version = p->repairable ? info.version : 0;
	}
	now = kura_now_ns();
	if (!r->read_errors++ || now - r->read_error_logged_ns >= LOG_EVERY_NS) {
		r->read_error_logged_ns = now;
		kura_log(WARN, "replication: this node's copy of extent %llu/%llu could not be "
			 "read; reading another replica's (%llu such reads so far)",
			 (unsigned long long)p->layer, (unsigned long long)p->ext,
			 (unsigned long long)r->read_errors);
	}
	p->next = 0;
	pread_next(p);
}

int rep_read_primary(struct kura_rep *r, uint64_t layer, uint64_t ext, unsigned blk,
		     unsigned nblk, void *buf, enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	struct pread *p;
	int err;

	if (!(p = calloc(1, sizeof(*p))))
		return -ENOMEM;
	p->r = r;
	p->layer = layer;
	p->ext = ext;
	p->blk = blk;
	p->nblk = nblk;
	p->cls = cls;
	p->buf = buf;
	p->cb = cb;
	p->arg = arg;
	p->io_errors = kura_blk_io_errors(r->store);
	if ((err = kura_blk_read(r->store, layer, ext, blk, nblk, buf, cls, pread_own_done, p))) {
		free(p);
		return err;
	}
	r->outstanding++;
	return 0;
}

int kura_rep_read_primary(struct kura_rep *r, uint64_t layer, uint64_t ext, unsigned blk,
			  unsigned nblk, void *buf, enum kura_io_class cls, kura_blk_cb cb,
			  void *arg)
{
	int self, err;

	if ((err = rep_can_start(r, ext, blk, nblk)))
		return err;
	if (!nblk)
		return -EINVAL;
	if (rep_primary_of(r, layer, ext, &self) < 0 || !self)
		return -EREMOTE; /* the maps differ: the sender asks again */
	return rep_read_primary(r, layer, ext, blk, nblk, buf, cls, cb, arg);
}

/* ---- one copy (a scrub's) ---- */

struct cread {
	struct kura_link_req lr;
	struct kura_rep *r;
	kura_blk_cb cb;
	void *arg;
};

static void cread_finish(struct cread *c, int err)
{
	struct kura_rep *r = c->r;

	r->outstanding--;
	c->cb(c->arg, err);
	free(c);
}

static void cread_local_done(void *arg, int err)
{
	cread_finish(arg, err);
}

static void cread_remote_done(struct kura_link_req *lr)
{
	struct cread *c = lr->arg;

	cread_finish(c, lr->status);
}

int kura_rep_read_copy(struct kura_rep *r, unsigned copy, uint64_t layer, uint64_t ext,
		       unsigned blk, unsigned nblk, void *buf, enum kura_io_class cls,
		       char who[KURA_MAP_NAME_MAX], kura_blk_cb cb, void *arg)
{
	unsigned idx[KURA_MAP_MAX_REPLICAS], n;
	const struct kura_map_node *m;
	struct cread *c;
	struct peer *pe;
	uint32_t pg;
	int err;

	if ((err = rep_can_start(r, ext, blk, nblk)))
		return err;
	if (!nblk)
		return -EINVAL;
	pg = kura_map_pg(r->map, layer, ext);
	n = kura_map_place(r->map, pg, idx);
	if (copy >= n)
		return -ENOENT;
	m = &r->map->nodes[idx[copy]];
	snprintf(who, KURA_MAP_NAME_MAX, "%s", m->name);
	if (m->state != KURA_NODE_UP || rep_behind(r->map, pg, m))
		return -EAGAIN; /* not a copy that holds every acknowledged write */
	if (!(c = calloc(1, sizeof(*c))))
		return -ENOMEM;
	c->r = r;
	c->cb = cb;
	c->arg = arg;
	if (!strcmp(m->name, r->name)) {
		err = kura_blk_read(r->store, layer, ext, blk, nblk, buf, cls, cread_local_done, c);
	} else if (!(pe = rep_peer(r, m)) || !pe->link || !kura_link_up(pe->link)) {
		err = -EAGAIN;
	} else {
		/* a plain READ on a link: the receiver's own copy */
		c->lr.req.magic = KURA_PROTO_MAGIC;
		c->lr.req.op = KURA_OP_READ;
		c->lr.req.cls = (uint8_t)cls;
		c->lr.req.layer = layer;
		c->lr.req.ext = ext;
		c->lr.req.blk = (uint16_t)blk;
		c->lr.req.nblk = (uint16_t)nblk;
		c->lr.buf = buf;
		c->lr.cap = (size_t)nblk * KURA_BLK_SIZE;
		c->lr.cb = cread_remote_done;
		c->lr.arg = c;
		err = kura_link_submit(pe->link, &c->lr);
	}
	if (err) {
		free(c);
		return err;
	}
	r->outstanding++;
	return 0;
}

