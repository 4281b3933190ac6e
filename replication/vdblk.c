/* vdisks on the replicated layer (vdblk.h): a table of what every vdisk
 * extent holds, and the engine's operations through kura_rep. */
#include "replication/vdblk.h"
#include "replication/rep_int.h"

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LOAD_PARALLEL 8
#define LOAD_CAP (sizeof(struct kura_proto_sync) + \
		  KURA_PROTO_PLIST_MAX * sizeof(struct kura_proto_plist_ent))

/* An extent in the table; layer 0 marks an empty slot (vdisk layers are
 * never 0). */
struct pent {
	uint64_t layer, ext, version;
	struct kura_blk_bitmap present;
};

struct load;

struct kura_vdblk {
	struct kura_rep *r;
	uint64_t svc;     /* the vdisk service its writes are sent under (rep.h) */
	struct kura_blk_store *store;
	struct pent *tab; /* open addressing, linear probing; cap a power of two */
	size_t cap, n;
	void *zeros;      /* a zero extent, for trims */
	struct load *load;
	struct vop *ops;  /* in flight */
	uint64_t local_reads, remote_reads;
	uint64_t local_read_errors; /* local reads that failed and went to the primary */
	int abandoned;    /* kura_vdblk_abandon: new operations get -ESHUTDOWN */
	int dead;         /* destroyed with a load or operations in flight: the
			   * last of them frees it */
};

static void maybe_free(struct kura_vdblk *v);

/* ---- the table ---- */

static size_t slot_of(const struct kura_vdblk *v, uint64_t layer, uint64_t ext)
{
	return kura_hash64(kura_hash64(layer) + ext) & (v->cap - 1);
}

static struct pent *lookup(struct kura_vdblk *v, uint64_t layer, uint64_t ext)
{
	if (!v->cap)
		return NULL;
	for (size_t i = slot_of(v, layer, ext);; i = (i + 1) & (v->cap - 1)) {
		struct pent *p = &v->tab[i];

		if (!p->layer)
			return NULL;
		if (p->layer == layer && p->ext == ext)
			return p;
	}
}

static int grow(struct kura_vdblk *v)
{
	size_t cap = v->cap ? v->cap * 2 : 1024;
	struct pent *old = v->tab, *tab = calloc(cap, sizeof(*tab));

	if (!tab)
		return -ENOMEM;
	size_t ocap = v->cap;

	v->tab = tab;
	v->cap = cap;
	for (size_t i = 0; i < ocap; i++) {
		size_t j;

		if (!old[i].layer)
			continue;
		for (j = slot_of(v, old[i].layer, old[i].ext); tab[j].layer; j = (j + 1) & (cap - 1))
			;
		tab[j] = old[i];
	}
	free(old);
	return 0;
}

/* The entry of (layer, ext), added empty when absent (NULL: no memory). */
static struct pent *get(struct kura_vdblk *v, uint64_t layer, uint64_t ext)
{
	struct pent *p = lookup(v, layer, ext);
	size_t i;

	if (p)
		return p;
	if ((v->n + 1) * 4 > v->cap * 3 && grow(v))
		return NULL;
	for (i = slot_of(v, layer, ext); v->tab[i].layer; i = (i + 1) & (v->cap - 1))
		;
	p = &v->tab[i];
	memset(p, 0, sizeof(*p));
	p->layer = layer;
	p->ext = ext;
	v->n++;
	return p;
}

/* Removal with backward shift: entries after the hole that probed past it
 * move into it, so lookups never stop early. */
static void drop(struct kura_vdblk *v, uint64_t layer, uint64_t ext)
{
	struct pent *p = lookup(v, layer, ext);
	size_t hole, i;

	if (!p)
		return;
	hole = (size_t)(p - v->tab);
	v->tab[hole].layer = 0;
	v->n--;
	for (i = (hole + 1) & (v->cap - 1); v->tab[i].layer; i = (i + 1) & (v->cap - 1)) {
		size_t home = slot_of(v, v->tab[i].layer, v->tab[i].ext);

		/* i may move to the hole when its home is not in (hole, i] */
		if (((i - home) & (v->cap - 1)) >= ((i - hole) & (v->cap - 1))) {
			v->tab[hole] = v->tab[i];
			v->tab[i].layer = 0;
			hole = i;
		}
	}
}

static void mark(struct kura_vdblk *v, uint64_t layer, uint64_t ext, unsigned blk, unsigned nblk,
		 uint64_t version)
{
	struct pent *p = get(v, layer, ext);

	if (!p) {
		/* the engine would read zeros where data is: say so loudly */
		kura_log(ERR, "vdisks: out of memory recording extent %llu/%llu",
			 (unsigned long long)layer, (unsigned long long)ext);
		return;
	}
	for (unsigned i = blk; i < blk + nblk; i++)
		p->present.w[i / 64] |= 1ull << (i % 64);
	/* a write acknowledged without its version (0) leaves the extent's
	 * unknown: its reads go to the primary until the next one */
	p->version = version ? KURA_MAX(p->version, version) : 0;
}

/* ---- operations ---- */

struct vop {
	struct kura_vdblk *v;
	uint64_t layer, ext;
	unsigned blk, nblk; /* nblk 0: a free */
	kura_blk_cb cb;
	void *arg;
	int detached;       /* answered by kura_vdblk_abandon already */
	uint64_t version;   /* a write's, once acknowledged */
	int local;          /* a read of this node's own copy: it is never
			     * abandoned (it ends soon, into the caller's buffer) */
	void *rbuf;         /* a read's own buffer, copied out when answered */
	void *out;          /* ... to the caller's (a local read's too) */
	enum kura_io_class cls;
	struct vop *prev, *next;
	struct kura_op op;  /* flush */
};

/* o is finished with: out of the list, freed (and v, when it waited). */
static void vop_end(struct vop *o)
{
	struct kura_vdblk *v = o->v;

	if (o->prev)
		o->prev->next = o->next;
	else
		v->ops = o->next;
	if (o->next)
		o->next->prev = o->prev;
	free(o);
	maybe_free(v);
}

static void vop_done(void *arg, int err)
{
	struct vop *o = arg;

	if (o->detached) {
		vop_end(o);
		return;
	}
	if (!o->nblk && err == -ENOENT)
		err = 0; /* freed already */
	if (!err && o->nblk)
		mark(o->v, o->layer, o->ext, o->blk, o->nblk, o->version);
	else if (!err)
		drop(o->v, o->layer, o->ext);
	o->cb(o->arg, err);
	vop_end(o);
}

/* Takes an operation: NULL with errno set (-ESHUTDOWN once abandoned). */
static struct vop *vop_new(struct kura_vdblk *v, uint64_t layer, uint64_t ext, unsigned blk,
			   unsigned nblk, kura_blk_cb cb, void *arg)
{
	struct vop *o;

	if (v->abandoned) {
		errno = ESHUTDOWN;
		return NULL;
	}
	if (!(o = calloc(1, sizeof(*o)))) {
		errno = ENOMEM;
		return NULL;
	}
	o->next = v->ops;
	if (v->ops)
		v->ops->prev = o;
	v->ops = o;
	o->v = v;
	o->layer = layer;
	o->ext = ext;
	o->blk = blk;
	o->nblk = nblk;
	o->cb = cb;
	o->arg = arg;
	return o;
}

static void read_done(void *arg, int err);

/* A read of this node's own copy that failed with -EIO (a disk or
 * checksum error) goes to the group's primary, which reads another
 * replica when its own copy is the one that fails (rep.h). */
static void read_local_done(void *arg, int err)
{
	struct vop *o = arg;
	struct kura_vdblk *v = o->v;

	if ((err == -EIO || err == KURA_E_DEAD) && !o->detached && !v->abandoned) {
		v->local_read_errors++;
		o->local = 0;
		if (!(o->rbuf = kura_aligned_alloc_raw((size_t)o->nblk * KURA_BLK_SIZE)))
			err = -ENOMEM;
		else if (!(err = kura_rep_read(v->r, o->layer, o->ext, o->blk, o->nblk, o->rbuf,
					       o->cls, read_done, o)))
			return;
		free(o->rbuf);
	}
	if (!o->detached)
		o->cb(o->arg, err);
	vop_end(o);
}

static void read_done(void *arg, int err)
{
	struct vop *o = arg;

	if (!o->detached) {
		if (!err)
			memcpy(o->out, o->rbuf, (size_t)o->nblk * KURA_BLK_SIZE);
		o->cb(o->arg, err);
	}
	free(o->rbuf);
	vop_end(o);
}

/* Whether this node's own copy of the extent holds every write the
 * engine had acknowledged to it, so the read need not travel: a copy the
 * cluster keeps (not one of a group this node has left, which may be freed
 * meanwhile), whose version is at least the last one acknowledged (or
 * listed at the load). Replicas
 * apply an extent's writes in version order and a resync sets the version
 * only with the extent's last run, so such a copy is complete. */
static int local_copy_ok(struct kura_vdblk *v, uint64_t layer, uint64_t ext)
{
	const struct pent *p = lookup(v, layer, ext);
	struct kura_blk_extent_info info;

	return p && p->version && !kura_blk_store_dead(v->store) &&
	       kura_rep_holds(v->r, layer, ext) &&
	       !kura_blk_extent_info(v->store, layer, ext, &info) && info.version >= p->version;
}

/* o reads into a buffer of its own: from the group's primary (copy < 0),
 * or that copy (kura_rep_read_copy). On error o is gone. */
static int read_via(struct kura_vdblk *v, struct vop *o, int copy, char *who)
{
	int err;

	if (!(o->rbuf = kura_aligned_alloc_raw((size_t)o->nblk * KURA_BLK_SIZE)))
		err = -ENOMEM;
	else if (copy < 0)
		err = kura_rep_read(v->r, o->layer, o->ext, o->blk, o->nblk, o->rbuf, o->cls,
				    read_done, o);
	else
		err = kura_rep_read_copy(v->r, (unsigned)copy, o->layer, o->ext, o->blk, o->nblk,
					 o->rbuf, o->cls, who, read_done, o);
	if (err) {
		free(o->rbuf);
		vop_end(o);
	}
	return err;
}

/* A read lands in a buffer of its own: one abandoned (kura_vdblk_abandon)
 * may still be answered after its caller's buffer is gone. It is read
 * from this node's own copy when that holds every acknowledged write
 * (data locality), else from the group's primary. */
static int vb_read(void *b, uint64_t layer, uint64_t ext, unsigned blk, unsigned nblk, void *buf,
		   enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	struct kura_vdblk *v = b;
	struct vop *o = vop_new(v, layer, ext, blk, nblk, cb, arg);
	int err;

	if (!o)
		return -errno;
	o->out = buf;
	o->cls = cls;
	if (local_copy_ok(v, layer, ext)) {
		v->local_reads++;
		o->local = 1;
		err = kura_blk_read(v->store, layer, ext, blk, nblk, buf, cls, read_local_done, o);
		if (err)
			vop_end(o);
		return err;
	}
	v->remote_reads++;
	return read_via(v, o, -1, NULL);
}

/* One copy, into a buffer of the read's own (as a remote read's). */
static int vb_read_copy(void *b, unsigned copy, uint64_t layer, uint64_t ext, unsigned blk,
			unsigned nblk, void *buf, enum kura_io_class cls, char who[64],
			kura_blk_cb cb, void *arg)
{
	struct kura_vdblk *v = b;
	struct vop *o = vop_new(v, layer, ext, blk, nblk, cb, arg);

	if (!o)
		return -errno;
	o->out = buf;
	o->cls = cls;
	return read_via(v, o, (int)copy, who);
}

static int vb_write(void *b, uint64_t layer, uint64_t ext, unsigned blk, unsigned nblk,
		    const void *buf, enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	struct kura_vdblk *v = b;
	struct vop *o = vop_new(v, layer, ext, blk, nblk, cb, arg);
	int err;

	if (!o)
		return -errno;
	if ((err = kura_rep_write(v->r, layer, ext, blk, nblk, buf, cls, v->svc, &o->version,
				  vop_done, o)))
		vop_end(o);
	return err;
}

static int vb_flush(void *b, kura_blk_cb cb, void *arg);

/* Zeros over the blocks of the range the extent holds, from the first to
 * the last; blocks it does not hold already read as zeros. */
static int vb_trim(void *b, uint64_t layer, uint64_t ext, unsigned blk, unsigned nblk,
		   kura_blk_cb cb, void *arg)
{
	struct kura_vdblk *v = b;
	struct pent *p = lookup(v, layer, ext);
	unsigned lo = KURA_EXT_BLOCKS, hi = 0;

	for (unsigned i = blk; p && i < blk + nblk && i < KURA_EXT_BLOCKS; i++)
		if (kura_blk_bit(&p->present, i)) {
			lo = KURA_MIN(lo, i);
			hi = i + 1;
		}
	if (lo >= hi)
		return vb_flush(b, cb, arg); /* nothing to do: answered on a later turn */
	if (!v->zeros && !(v->zeros = kura_aligned_alloc(KURA_EXT_SIZE)))
		return -ENOMEM;
	return vb_write(b, layer, ext, lo, hi - lo, v->zeros, KURA_IO_GUEST, cb, arg);
}

static int vb_free(void *b, uint64_t layer, uint64_t ext, kura_blk_cb cb, void *arg)
{
	struct kura_vdblk *v = b;
	struct vop *o = vop_new(v, layer, ext, 0, 0, cb, arg);
	int err;

	if (!o)
		return -errno;
	if ((err = kura_rep_free(v->r, layer, ext, KURA_IO_MERGE, v->svc, vop_done, o)))
		vop_end(o);
	return err;
}

static void flush_fired(struct kura_op *op, int res)
{
	struct vop *o = KURA_CONTAINER_OF(op, struct vop, op);

	(void)res;
	if (!o->detached)
		o->cb(o->arg, 0);
	vop_end(o);
}

static int vb_flush(void *b, kura_blk_cb cb, void *arg)
{
	struct kura_vdblk *v = b;
	struct vop *o = vop_new(v, 0, 0, 0, 0, cb, arg);

	if (!o)
		return -errno;
	o->op.fn = flush_fired;
	kura_loop_defer(v->r->loop, &o->op, 0);
	return 0;
}

static int vb_extent_info(void *b, uint64_t layer, uint64_t ext, struct kura_blk_extent_info *out)
{
	struct pent *p = lookup(b, layer, ext);
	unsigned n = 0;

	if (!p)
		return -ENOENT;
	memset(out, 0, sizeof(*out));
	out->layer = layer;
	out->ext = ext;
	out->version = p->version;
	out->present = p->present;
	for (unsigned i = 0; i < KURA_EXT_BLOCKS / 64; i++)
		n += (unsigned)__builtin_popcountll(p->present.w[i]);
	out->nblocks = n;
	return 0;
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Every extent of layer (all: every layer's id, each once), sorted. */
static int collect(struct kura_vdblk *v, uint64_t layer, int all, uint64_t **out, size_t *n)
{
	uint64_t *a = malloc((v->n ? v->n : 1) * sizeof(*a));
	size_t k = 0, w = 0;

	if (!a)
		return -ENOMEM;
	for (size_t i = 0; i < v->cap; i++)
		if (v->tab[i].layer && (all || v->tab[i].layer == layer))
			a[k++] = all ? v->tab[i].layer : v->tab[i].ext;
	qsort(a, k, sizeof(*a), u64_cmp);
	for (size_t i = 0; i < k; i++)
		if (!w || a[w - 1] != a[i])
			a[w++] = a[i];
	*out = a;
	*n = w;
	return 0;
}

static int vb_list(void *b, uint64_t layer, uint64_t **exts, size_t *n)
{
	return collect(b, layer, 0, exts, n);
}

static int vb_layers(void *b, uint64_t **ids, size_t *n)
{
	return collect(b, 0, 1, ids, n);
}

static void vb_layer_usage(void *b, uint64_t layer, uint64_t *extents, uint64_t *blocks)
{
	struct kura_vdblk *v = b;
	struct kura_blk_extent_info info;

	*extents = *blocks = 0;
	for (size_t i = 0; i < v->cap; i++)
		if (v->tab[i].layer == layer &&
		    !vb_extent_info(v, layer, v->tab[i].ext, &info)) {
			(*extents)++;
			*blocks += info.nblocks;
		}
}

static int vb_disk_info(void *b, unsigned i, struct kura_blk_disk_info *out)
{
	struct kura_vdblk *v = b;

	return kura_blk_disk_info(v->store, i, out);
}

void kura_vdblk_status(const struct kura_vdblk *v, struct kura_jw *w)
{
	kura_jw_obj(w, "vdisk_reads");
	kura_jw_u64(w, "local", v->local_reads);
	kura_jw_u64(w, "remote", v->remote_reads);
	kura_jw_u64(w, "local_failed", v->local_read_errors);
	kura_jw_u64(w, "extents_known", v->n);
	kura_jw_end(w);
}

const struct kura_vd_blk_ops kura_vdblk_ops = {
	.read = vb_read,
	.write = vb_write,
	.trim = vb_trim,
	.free = vb_free,
	.move = NULL,
	.flush = vb_flush,
	.extent_info = vb_extent_info,
	.list = vb_list,
	.layers = vb_layers,
	.layer_usage = vb_layer_usage,
	.disk_info = vb_disk_info,
	.read_copy = vb_read_copy,
};

/* ---- loading ---- */

/* One group's listing, a page at a time. */
struct lgroup {
	struct load *ld;
	uint32_t pg;
	uint64_t from_layer, from_ext;
	struct kura_link_req lr;
	struct kura_timer retry;
	uint8_t *ans;
};

struct load {
	struct kura_vdblk *v;
	uint64_t min_layer;
	uint32_t next_pg, pgs, running;
	int err;
	int pumping;             /* a group that ends at once does not finish it */
	struct kura_timer start; /* also runs the end, on a turn of its own */
	kura_blk_cb cb;
	void *arg;
};

static void group_ask(struct lgroup *g);

static void load_pump(struct load *ld);
static void load_end(struct kura_op *op, int res);

static void group_end(struct lgroup *g, int err)
{
	struct load *ld = g->ld;

	if (err && !ld->err)
		ld->err = err;
	free(g->ans);
	free(g);
	ld->running--;
	load_pump(ld);
}

/* Takes one page (h and n entries, already framed): 0 or -EPROTO. */
static int group_take(struct lgroup *g, const uint8_t *data, size_t len)
{
	struct kura_vdblk *v = g->ld->v;
	struct kura_proto_sync h;
	size_t n;

	if (len < sizeof(h))
		return -EPROTO;
	memcpy(&h, data, sizeof(h));
	n = (len - sizeof(h)) / sizeof(struct kura_proto_plist_ent);
	if (h.n != n || n > KURA_PROTO_PLIST_MAX || h.pg != g->pg ||
	    h.from_layer != g->from_layer || h.from_ext != g->from_ext)
		return -EPROTO;
	for (size_t i = 0; i < n; i++) {
		struct kura_proto_plist_ent e;
		struct pent *p;

		memcpy(&e, data + sizeof(h) + i * sizeof(e), sizeof(e));
		if (e.layer < g->ld->min_layer || e.ext >= KURA_EXT_MAX ||
		    kura_map_pg(v->r->map, e.layer, e.ext) != g->pg)
			return -EPROTO;
		if (!(p = get(v, e.layer, e.ext)))
			return -ENOMEM;
		p->version = e.version;
		memcpy(p->present.w, e.present, sizeof(e.present));
	}
	if (h.to_layer == UINT64_MAX && h.to_ext == UINT64_MAX)
		return 1;
	g->from_layer = h.to_layer;
	g->from_ext = h.to_ext;
	return 0;
}

static void group_retry(struct kura_op *op, int res)
{
	struct lgroup *g = KURA_CONTAINER_OF(op, struct lgroup, retry.op);

	(void)res;
	group_ask(g);
}

static void group_answer(struct lgroup *g, int err, const uint8_t *data, size_t len)
{
	struct kura_rep *r = g->ld->v->r;

	if (r->destroying || g->ld->v->dead) {
		group_end(g, r->destroying ? -ESHUTDOWN : -ECANCELED);
		return;
	}
	if (!err)
		err = group_take(g, data, len);
	if (err == 1) {
		group_end(g, 0);
		return;
	}
	if (!err) {
		group_ask(g);
		return;
	}
	if (err == -EPROTO || err == -ENOMEM || err == -EINVAL) {
		kura_log(ERR, "vdisks: listing group %u failed: %s", g->pg, strerror(-err));
		group_end(g, err);
		return;
	}
	/* no primary yet, peering, maps that disagree, a link down: the map
	 * will settle; ask again */
	g->retry.op.fn = group_retry;
	kura_loop_timer(r->loop, &g->retry, RETRY_NS);
}

static void link_answered(struct kura_link_req *lr)
{
	struct lgroup *g = lr->arg;

	group_answer(g, lr->status, g->ans, lr->got);
}

static void local_answered(void *arg, int err, uint8_t *data, size_t len)
{
	struct lgroup *g = arg;

	group_answer(g, err, data, len);
	free(data);
}

static void group_ask(struct lgroup *g)
{
	struct kura_rep *r = g->ld->v->r;
	int i, err;
	struct peer *p;

	if (r->destroying || g->ld->v->dead) {
		group_end(g, r->destroying ? -ESHUTDOWN : -ECANCELED);
		return;
	}
	memset(&g->lr, 0, sizeof(g->lr));
	g->lr.req.magic = KURA_PROTO_MAGIC;
	g->lr.req.op = KURA_OP_PLIST;
	g->lr.req.cls = KURA_IO_GUEST;
	g->lr.req.layer = g->from_layer;
	g->lr.req.ext = g->from_ext;
	g->lr.req.arg_layer = g->pg;
	g->lr.req.version = r->map->epoch;
	i = kura_map_primary(r->map, g->pg);
	if (i >= 0 && !strcmp(r->map->nodes[i].name, r->name)) {
		if ((err = kura_rep_glist(r, &g->lr.req, local_answered, g)))
			group_answer(g, err, NULL, 0);
		return;
	}
	p = i >= 0 ? rep_peer(r, &r->map->nodes[i]) : NULL;
	g->lr.buf = g->ans;
	g->lr.cap = LOAD_CAP;
	g->lr.cb = link_answered;
	g->lr.arg = g;
	if (!p || !p->link || !kura_link_up(p->link) || kura_link_submit(p->link, &g->lr))
		group_answer(g, -ENOTCONN, NULL, 0);
}

static void load_pump(struct load *ld)
{
	struct kura_vdblk *v = ld->v;

	if (ld->pumping)
		return;
	ld->pumping = 1;
	while (!ld->err && ld->next_pg < ld->pgs && ld->running < LOAD_PARALLEL) {
		struct lgroup *g = calloc(1, sizeof(*g));

		if (!g || !(g->ans = malloc(LOAD_CAP))) {
			free(g);
			ld->err = -ENOMEM;
			break;
		}
		g->ld = ld;
		g->pg = ld->next_pg++;
		g->from_layer = ld->min_layer;
		ld->running++;
		group_ask(g);
	}
	ld->pumping = 0;
	if (ld->running)
		return;
	/* the end runs on a turn of its own: cb may turn the loop (starting or
	 * stopping the engine), which a link's or the store's completion must
	 * not */
	ld->start.op.fn = load_end;
	kura_loop_timer(v->r->loop, &ld->start, 1);
}

static void load_end(struct kura_op *op, int res)
{
	struct load *ld = KURA_CONTAINER_OF(op, struct load, start.op);
	struct kura_vdblk *v = ld->v;

	(void)res;
	v->r->outstanding--;
	if (!ld->err && !v->dead)
		kura_log(INFO, "vdisks: %zu extents of vdisk layers listed from %u groups", v->n,
			 ld->pgs);
	/* v->load stays set while cb runs: a destroy from inside it leaves
	 * the freeing to this function */
	ld->cb(ld->arg, v->dead && !ld->err ? -ECANCELED : ld->err);
	v->load = NULL;
	free(ld);
	maybe_free(v);
}

static void load_start(struct kura_op *op, int res);

int kura_vdblk_load(struct kura_vdblk *v, uint64_t min_layer, kura_blk_cb cb, void *arg)
{
	struct load *ld;

	if (v->load)
		return -EBUSY;
	if (v->r->destroying)
		return -ESHUTDOWN;
	if (!v->r->map)
		return -EHOSTDOWN;
	if (!(ld = calloc(1, sizeof(*ld))))
		return -ENOMEM;
	ld->v = v;
	ld->min_layer = min_layer;
	ld->pgs = v->r->map->pgs;
	ld->cb = cb;
	ld->arg = arg;
	v->load = ld;
	v->r->outstanding++;
	/* the first asks on a later turn: cb never runs inside this call */
	ld->start.op.fn = load_start;
	kura_loop_timer(v->r->loop, &ld->start, 1);
	return 0;
}

static void load_start(struct kura_op *op, int res)
{
	struct load *ld = KURA_CONTAINER_OF(op, struct load, start.op);

	(void)res;
	load_pump(ld);
}

int kura_vdblk_create(struct kura_rep *r, struct kura_blk_store *store, uint64_t svc,
		      struct kura_vdblk **out)
{
	struct kura_vdblk *v = calloc(1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	v->r = r;
	v->store = store;
	v->svc = svc;
	*out = v;
	return 0;
}

void kura_vdblk_abandon(struct kura_vdblk *v)
{
	if (!v || v->abandoned)
		return;
	v->abandoned = 1;
	for (struct vop *o = v->ops; o; o = o->next)
		if (!o->detached && !o->local) {
			o->detached = 1;
			o->cb(o->arg, -ESHUTDOWN);
		}
}

static void maybe_free(struct kura_vdblk *v)
{
	if (v->dead && !v->load && !v->ops) {
		free(v->tab);
		free(v->zeros);
		free(v);
	}
}

void kura_vdblk_destroy(struct kura_vdblk *v)
{
	if (!v)
		return;
	kura_vdblk_abandon(v);
	v->dead = 1;
	maybe_free(v); /* or once the load and the operations in flight end */
}

