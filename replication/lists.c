/* Lists of a store's extents for resync and peering (rep_int.h): a
 * group's, from the store's lists by class; and the checks and lists the
 * node answers other nodes with (GLIST, PLIST, whether a peer may write
 * here). Loop thread only. */
#include "replication/rep_int.h"

#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int rep_each_extent(struct kura_rep *r, int (*fn)(void *arg, uint64_t layer, uint64_t ext),
		    void *arg)
{
	uint64_t *layers = NULL, *exts;
	size_t nl, ne;
	int err = kura_blk_layers(r->store, &layers, &nl);

	for (size_t i = 0; !err && i < nl; i++) {
		if ((err = kura_blk_list(r->store, layers[i], &exts, &ne)))
			break;
		for (size_t e = 0; e < ne && !err; e++)
			err = fn(arg, layers[i], exts[e]);
		free(exts);
	}
	free(layers);
	return err;
}

struct group_list {
	struct kura_rep *r;
	uint32_t pg;
	const struct kura_proto_sync *h;
	struct kura_proto_sync_ent *v;
	size_t n, cap;
};

static int group_add(void *arg, uint64_t layer, uint64_t ext)
{
	struct group_list *g = arg;

	if (kura_map_pg(g->r->map, layer, ext) != g->pg ||
	    rep_key_cmp(layer, ext, g->h->from_layer, g->h->from_ext) < 0 ||
	    rep_key_cmp(layer, ext, g->h->to_layer, g->h->to_ext) >= 0)
		return 0;
	if (g->n == g->cap) {
		void *nv = realloc(g->v, (g->cap = g->cap ? g->cap * 2 : 64) * sizeof(*g->v));
		if (!nv)
			return -ENOMEM;
		g->v = nv;
	}
	g->v[g->n].layer = layer;
	g->v[g->n].ext = ext;
	g->v[g->n++].version = 0;
	return 0;
}

/* This store's extents of group pg in [from, to), ascending: from the
 * store's lists of extents by class (kura_rep_create keeps them), so a
 * request costs what the group holds, not what the node holds. */
int rep_list_group(struct kura_rep *r, uint32_t pg, const struct kura_proto_sync *h,
		      struct kura_proto_sync_ent **out, size_t *nout)
{
	struct group_list g = { .r = r, .pg = pg, .h = h };
	struct kura_blk_key *keys;
	size_t nk;
	int err = kura_blk_list_classes(r->store, r->map->pgs - 1, pg, &keys, &nk);

	if (err)
		return err;
	for (size_t i = 0; !err && i < nk; i++)
		err = group_add(&g, keys[i].layer, keys[i].ext);
	free(keys);
	if (err) {
		free(g.v);
		return err;
	}
	*out = g.v;
	*nout = g.n;
	return 0;
}

/* ---- checks and lists for other nodes ---- */

int kura_rep_peer_may_write(struct kura_rep *r, const char *peer, const struct kura_proto_req *q)
{
	int src;

	if (!r->map)
		return -EAGAIN;
	if (q->ext >= KURA_EXT_MAX)
		return -EINVAL;
	if ((q->op == KURA_OP_WRITE || q->op == KURA_OP_FREE) && q->arg_layer > r->map->epoch)
		return 0; /* sent as primary or source under a map newer than this node's */
	src = kura_map_sync_source(r->map, kura_map_pg(r->map, q->layer, q->ext));
	return src >= 0 && !strcmp(r->map->nodes[src].name, peer) ? 0 : -EREMOTE;
}

struct glist {
	struct kura_rep *r;
	int plist; /* PLIST: with present blocks, at the primary only */
	struct kura_proto_sync h;
	void (*done)(void *arg, int err, uint8_t *data, size_t len);
	void *arg;
};

/* PLIST is answered by the group's primary, once it has peered the group:
 * then what it holds is what the group holds. */
static int plist_check(struct kura_rep *r, uint32_t pg)
{
	int i = kura_map_primary(r->map, pg);

	if (i < 0 || strcmp(r->map->nodes[i].name, r->name))
		return -EREMOTE;
	return r->peering && peering_holds(r, pg) ? -EAGAIN : 0;
}

static void glist_flushed(void *arg, int err)
{
	struct glist *g = arg;
	struct kura_rep *r = g->r;
	struct kura_proto_sync_ent *v = NULL;
	size_t n = 0, len = 0;
	size_t esize = g->plist ? sizeof(struct kura_proto_plist_ent)
				: sizeof(struct kura_proto_sync_ent);
	size_t max = g->plist ? KURA_PROTO_PLIST_MAX : KURA_PROTO_SYNC_MAX;
	uint8_t *buf = NULL;

	r->outstanding--;
	if (!err && (r->destroying || !r->map))
		err = -ESHUTDOWN;
	if (!err && g->plist)
		err = plist_check(r, g->h.pg);
	if (!err)
		err = rep_list_group(r, g->h.pg, &g->h, &v, &n);
	if (!err && n > max) {
		/* the rest in the next answer */
		g->h.to_layer = v[max].layer;
		g->h.to_ext = v[max].ext;
		n = max;
	}
	g->h.n = (uint32_t)n;
	len = sizeof(g->h) + n * esize;
	if (!err && !(buf = malloc(len)))
		err = -ENOMEM;
	if (!err)
		memcpy(buf, &g->h, sizeof(g->h));
	for (size_t i = 0; !err && i < n; i++) {
		struct kura_blk_extent_info info = { 0 };
		struct kura_proto_plist_ent pe = { v[i].layer, v[i].ext, 0, { 0 } };

		if (!kura_blk_extent_info(r->store, v[i].layer, v[i].ext, &info))
			pe.version = info.version;
		memcpy(pe.present, info.present.w, sizeof(pe.present));
		/* a GLIST entry is the first 24 bytes of a PLIST one */
		memcpy(buf + sizeof(g->h) + i * esize, &pe, esize);
	}
	free(v);
	g->done(g->arg, err, buf, err ? 0 : len);
	free(g);
}

int kura_rep_glist(struct kura_rep *r, const struct kura_proto_req *q,
		   void (*done)(void *arg, int err, uint8_t *data, size_t len), void *arg)
{
	struct glist *g;
	int err;

	if (r->destroying)
		return -ESHUTDOWN;
	if (!r->map)
		return -EHOSTDOWN;
	if (q->arg_layer >= r->map->pgs || q->ext >= KURA_EXT_MAX || q->blk || q->nblk ||
	    q->arg_ext)
		return -EINVAL;
	if (q->version > r->map->epoch)
		return -EAGAIN; /* the asking primary's map is newer: wait for it */
	if (!(g = calloc(1, sizeof(*g))))
		return -ENOMEM;
	g->r = r;
	g->plist = q->op == KURA_OP_PLIST;
	g->h.pg = (uint32_t)q->arg_layer;
	g->h.from_layer = q->layer;
	g->h.from_ext = q->ext;
	g->h.to_layer = g->h.to_ext = UINT64_MAX;
	g->done = done;
	g->arg = arg;
	/* copies that waited for journal room are in the index once this is
	 * done: the list shows them */
	if ((err = kura_blk_flush(r->store, glist_flushed, g))) {
		free(g);
		return err;
	}
	r->outstanding++;
	return 0;
}
