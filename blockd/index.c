/* The in-memory extent index: per layer, an open-addressing table of 24-byte
 * entries; bitmaps only for extents that are partly filled. This is what keeps
 * RAM near 32 MiB per TiB of allocated data. In a cluster, lists of extents
 * per class (12 bytes an extent more) let a placement group's extents be
 * listed without walking every layer. */
#include "blockd/store_int.h"
#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

unsigned bm_count(const struct kura_blk_bitmap *b)
{
	unsigned n = 0;

	for (unsigned i = 0; i < KURA_ARRAY_SIZE(b->w); i++)
		n += (unsigned)__builtin_popcountll(b->w[i]);
	return n;
}

int bm_any_range(const struct kura_blk_bitmap *b, unsigned blk, unsigned n)
{
	for (unsigned i = blk; i < blk + n; i++)
		if (bm_test(b, i))
			return 1;
	return 0;
}

static void bm_set_range(struct kura_blk_bitmap *b, unsigned blk, unsigned n, int val)
{
	for (unsigned i = blk; i < blk + n; i++) {
		uint64_t bit = 1ull << (i % 64);
		if (val)
			b->w[i / 64] |= bit;
		else
			b->w[i / 64] &= ~bit;
	}
}

void md_extent_key(uint8_t key[17], uint64_t layer, uint64_t ext)
{
	key[0] = 'E';
	kura_put_be64(key + 1, layer);
	kura_put_be64(key + 9, ext);
}

int idx_init(struct kura_idx *x)
{
	memset(x, 0, sizeof(*x));
	x->lcap = 16;
	x->layers = calloc(x->lcap, sizeof(*x->layers));
	x->bm_free = UINT32_MAX;
	return x->layers ? 0 : -ENOMEM;
}

void idx_destroy(struct kura_idx *x)
{
	for (uint32_t i = 0; i < x->lcap; i++) {
		if (x->layers[i]) {
			free(x->layers[i]->slots);
			free(x->layers[i]);
		}
	}
	free(x->layers);
	if (x->classes)
		for (uint32_t c = 0; c < KURA_BLK_CLASSES; c++)
			free(x->classes[c].v);
	free(x->classes);
	free(x->bms);
	free(x->dirty);
	memset(x, 0, sizeof(*x));
}

static uint32_t layer_slot(const struct kura_idx *x, uint64_t id)
{
	uint32_t i = (uint32_t)kura_hash64(id) & (x->lcap - 1);

	while (x->layers[i] && x->layers[i]->id != id)
		i = (i + 1) & (x->lcap - 1);
	return i;
}

static struct idx_layer *layer_get(const struct kura_idx *x, uint64_t id)
{
	return x->layers[layer_slot(x, id)];
}

static int layers_grow(struct kura_idx *x)
{
	struct idx_layer **old = x->layers;
	uint32_t ocap = x->lcap;

	x->layers = calloc((size_t)ocap * 2, sizeof(*x->layers));
	if (!x->layers) {
		x->layers = old;
		return -ENOMEM;
	}
	x->lcap = ocap * 2;
	for (uint32_t i = 0; i < ocap; i++)
		if (old[i])
			x->layers[layer_slot(x, old[i]->id)] = old[i];
	free(old);
	return 0;
}

static struct idx_layer *layer_create(struct kura_idx *x, uint64_t id)
{
	struct idx_layer *l;

	if ((x->lcount + 1) * 4 > x->lcap * 3 && layers_grow(x))
		return NULL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->id = id;
	l->cap = 8;
	l->slots = malloc(sizeof(*l->slots) * l->cap);
	if (!l->slots) {
		free(l);
		return NULL;
	}
	for (uint32_t i = 0; i < l->cap; i++)
		l->slots[i].loc = LOC_NONE;
	x->layers[layer_slot(x, id)] = l;
	x->lcount++;
	return l;
}

/* Removing a layer from linear probing: re-insert the run after it. */
static void layer_remove(struct kura_idx *x, struct idx_layer *l)
{
	uint32_t i = layer_slot(x, l->id);

	x->layers[i] = NULL;
	x->lcount--;
	for (uint32_t j = (i + 1) & (x->lcap - 1); x->layers[j]; j = (j + 1) & (x->lcap - 1)) {
		struct idx_layer *m = x->layers[j];
		x->layers[j] = NULL;
		x->layers[layer_slot(x, m->id)] = m;
	}
	free(l->slots);
	free(l);
}

static uint32_t ent_slot(const struct idx_layer *l, uint32_t ext)
{
	uint32_t i = (uint32_t)kura_hash64(ext) & (l->cap - 1);

	while (l->slots[i].loc != LOC_NONE && l->slots[i].ext != ext)
		i = (i + 1) & (l->cap - 1);
	return i;
}

static int ents_grow(struct idx_layer *l)
{
	struct idx_entry *old = l->slots;
	uint32_t ocap = l->cap;

	l->slots = malloc(sizeof(*l->slots) * ocap * 2);
	if (!l->slots) {
		l->slots = old;
		return -ENOMEM;
	}
	l->cap = ocap * 2;
	for (uint32_t i = 0; i < l->cap; i++)
		l->slots[i].loc = LOC_NONE;
	for (uint32_t i = 0; i < ocap; i++)
		if (old[i].loc != LOC_NONE)
			l->slots[ent_slot(l, old[i].ext)] = old[i];
	free(old);
	return 0;
}

/* ---- classes ---- */

static int class_reserve(struct idx_class *c)
{
	if (c->n == c->cap) {
		uint32_t ncap = c->cap ? c->cap * 2 : 4;
		struct idx_ckey *nv = realloc(c->v, sizeof(*nv) * ncap);

		if (!nv)
			return -ENOMEM;
		c->v = nv;
		c->cap = ncap;
	}
	return 0;
}

/* Room reserved: e (layer, ext) joins its class. */
static void class_push(struct kura_idx *x, struct idx_entry *e, uint64_t layer, uint64_t ext)
{
	struct idx_class *c = &x->classes[kura_blk_ext_class(layer, ext)];

	c->v[c->n] = (struct idx_ckey){ (uint32_t)layer, (uint32_t)(layer >> 32), (uint32_t)ext };
	e->cpos = c->n++;
}

/* e (layer, ext) leaves its class: the class's last key takes its place. */
static void class_remove(struct kura_idx *x, const struct idx_entry *e, uint64_t layer,
			 uint64_t ext)
{
	struct idx_class *c = &x->classes[kura_blk_ext_class(layer, ext)];
	uint32_t pos = e->cpos;
	struct idx_ckey last = c->v[--c->n];

	if (pos != c->n) {
		c->v[pos] = last;
		idx_find(x, (uint64_t)last.layer_hi << 32 | last.layer_lo, last.ext)->cpos = pos;
	}
}

static int class_add_one(void *arg, uint64_t layer, const struct idx_entry *e)
{
	struct kura_idx *x = arg;
	struct idx_class *c = &x->classes[kura_blk_ext_class(layer, e->ext)];

	if (class_reserve(c))
		return -ENOMEM;
	class_push(x, (struct idx_entry *)e, layer, e->ext);
	return 0;
}

int idx_classes_keep(struct kura_idx *x)
{
	int err;

	if (x->classes)
		return 0;
	if (!(x->classes = calloc(KURA_BLK_CLASSES, sizeof(*x->classes))))
		return -ENOMEM;
	if ((err = idx_for_each(x, class_add_one, x))) {
		for (uint32_t c = 0; c < KURA_BLK_CLASSES; c++)
			free(x->classes[c].v);
		free(x->classes);
		x->classes = NULL;
	}
	return err;
}

int idx_classes_list(const struct kura_idx *x, uint32_t mask, uint32_t value,
		     struct kura_blk_key **out, size_t *n)
{
	size_t total = 0, k = 0;
	struct kura_blk_key *v;

	value &= mask;
	for (uint32_t c = value; c < KURA_BLK_CLASSES; c += mask + 1)
		total += x->classes[c].n;
	if (!(v = malloc(total ? total * sizeof(*v) : 1)))
		return -ENOMEM;
	for (uint32_t c = value; c < KURA_BLK_CLASSES; c += mask + 1)
		for (uint32_t i = 0; i < x->classes[c].n; i++) {
			const struct idx_ckey *ck = &x->classes[c].v[i];

			v[k].layer = (uint64_t)ck->layer_hi << 32 | ck->layer_lo;
			v[k++].ext = ck->ext;
		}
	*out = v;
	*n = total;
	return 0;
}

/* ---- entries ---- */

struct idx_entry *idx_find(struct kura_idx *x, uint64_t layer, uint64_t ext)
{
	struct idx_layer *l = layer_get(x, layer);
	struct idx_entry *e;

	if (!l || ext >= KURA_EXT_MAX)
		return NULL;
	e = &l->slots[ent_slot(l, (uint32_t)ext)];
	return e->loc == LOC_NONE ? NULL : e;
}

int idx_add(struct kura_idx *x, uint64_t layer, uint64_t ext, uint32_t loc)
{
	struct idx_layer *l = layer_get(x, layer);
	struct idx_entry *e;

	if (ext >= KURA_EXT_MAX)
		return -EINVAL;
	if (idx_reserve(x))
		return -ENOMEM; /* so that marking it dirty below cannot fail */
	/* (before a new layer is made: nothing may fail once it is) */
	if (x->classes && class_reserve(&x->classes[kura_blk_ext_class(layer, ext)]))
		return -ENOMEM;
	if (!l && !(l = layer_create(x, layer)))
		return -ENOMEM;
	if (idx_find(x, layer, ext))
		return -EEXIST;
	if ((l->count + 1) * 5 > l->cap * 4 && ents_grow(l))
		return -ENOMEM;
	e = &l->slots[ent_slot(l, (uint32_t)ext)];
	e->ext = (uint32_t)ext;
	e->loc = loc;
	e->ver_lo = e->ver_hi = 0;
	e->bm = BM_EMPTY;
	if (x->classes)
		class_push(x, e, layer, ext);
	l->count++;
	x->nextents++;
	return idx_mark_dirty(x, layer, ext);
}

static void bm_release(struct kura_idx *x, uint32_t bm)
{
	if (bm == BM_FULL || bm == BM_EMPTY)
		return;
	x->bms[bm].w[0] = x->bm_free;
	x->bm_free = bm;
	x->bm_used--;
}

static int bm_alloc(struct kura_idx *x, uint32_t *out)
{
	if (x->bm_free == UINT32_MAX) {
		uint32_t ncap = x->bm_cap ? x->bm_cap * 2 : 64;
		struct kura_blk_bitmap *n = realloc(x->bms, sizeof(*n) * ncap);
		if (!n)
			return -ENOMEM;
		x->bms = n;
		for (uint32_t i = ncap; i-- > x->bm_cap;) {
			x->bms[i].w[0] = x->bm_free;
			x->bm_free = i;
		}
		x->bm_cap = ncap;
	}
	*out = x->bm_free;
	x->bm_free = (uint32_t)x->bms[*out].w[0];
	memset(&x->bms[*out], 0, sizeof(x->bms[*out]));
	x->bm_used++;
	return 0;
}

void idx_del(struct kura_idx *x, uint64_t layer, uint64_t ext)
{
	struct idx_layer *l = layer_get(x, layer);
	uint32_t i;

	if (!l || !idx_find(x, layer, ext))
		return;
	i = ent_slot(l, (uint32_t)ext);
	if (x->classes)
		class_remove(x, &l->slots[i], layer, ext);
	bm_release(x, l->slots[i].bm);
	l->slots[i].loc = LOC_NONE;
	l->count--;
	x->nextents--;
	for (uint32_t j = (i + 1) & (l->cap - 1); l->slots[j].loc != LOC_NONE;
	     j = (j + 1) & (l->cap - 1)) {
		struct idx_entry m = l->slots[j];
		l->slots[j].loc = LOC_NONE;
		l->slots[ent_slot(l, m.ext)] = m;
	}
	if (!l->count)
		layer_remove(x, l);
	idx_mark_dirty(x, layer, ext);
}

int idx_move(struct kura_idx *x, uint64_t layer, uint64_t ext, uint64_t nlayer, uint64_t next)
{
	struct idx_entry *e = idx_find(x, layer, ext), saved;
	int err;

	if (!e)
		return -ENOENT;
	if (next >= KURA_EXT_MAX)
		return -EINVAL;
	if (idx_find(x, nlayer, next))
		return -EEXIST;
	saved = *e;
	e->bm = BM_EMPTY; /* the bitmap moves with the entry */
	err = idx_add(x, nlayer, next, saved.loc);
	if (err) {
		e = idx_find(x, layer, ext); /* the add may have moved the slots */
		e->bm = saved.bm;
		return err;
	}
	e = idx_find(x, nlayer, next);
	e->ver_lo = saved.ver_lo;
	e->ver_hi = saved.ver_hi & ~ENT_DIRTY;
	ent_set_dirty(e, 1);
	e->bm = saved.bm;
	idx_del(x, layer, ext);
	return 0;
}

void idx_bitmap(const struct kura_idx *x, const struct idx_entry *e, struct kura_blk_bitmap *out)
{
	if (e->bm == BM_FULL)
		memset(out, 0xff, sizeof(*out));
	else if (e->bm == BM_EMPTY)
		memset(out, 0, sizeof(*out));
	else
		*out = x->bms[e->bm];
}

void idx_set_bitmap(struct kura_idx *x, struct idx_entry *e, const struct kura_blk_bitmap *bm)
{
	unsigned n = bm_count(bm);

	if (n == KURA_EXT_BLOCKS || n == 0) {
		bm_release(x, e->bm);
		e->bm = n ? BM_FULL : BM_EMPTY;
		return;
	}
	if ((e->bm == BM_FULL || e->bm == BM_EMPTY) && bm_alloc(x, &e->bm)) {
		e->bm = BM_FULL; /* no memory: over-report presence rather than lose it */
		return;
	}
	x->bms[e->bm] = *bm;
}

int idx_set_bits(struct kura_idx *x, struct idx_entry *e, unsigned blk, unsigned n)
{
	struct kura_blk_bitmap b;

	if (e->bm == BM_FULL)
		return 0;
	idx_bitmap(x, e, &b);
	bm_set_range(&b, blk, n, 1);
	idx_set_bitmap(x, e, &b);
	return 0;
}

unsigned idx_clear_bits(struct kura_idx *x, struct idx_entry *e, unsigned blk, unsigned n)
{
	struct kura_blk_bitmap b;

	idx_bitmap(x, e, &b);
	bm_set_range(&b, blk, n, 0);
	idx_set_bitmap(x, e, &b);
	return bm_count(&b);
}

int idx_reserve(struct kura_idx *x)
{
	if (x->ndirty + 2 > x->dirty_cap) {
		size_t ncap = x->dirty_cap ? x->dirty_cap * 2 : 256;
		struct idx_key *n = realloc(x->dirty, sizeof(*n) * ncap);
		if (!n)
			return -ENOMEM;
		x->dirty = n;
		x->dirty_cap = ncap;
	}
	return 0;
}

int idx_mark_dirty(struct kura_idx *x, uint64_t layer, uint64_t ext)
{
	struct idx_entry *e = idx_find(x, layer, ext);

	if (e && ent_dirty(e))
		return 0;
	if (idx_reserve(x))
		return -ENOMEM;
	if (e)
		ent_set_dirty(e, 1);
	x->dirty[x->ndirty].layer = layer;
	x->dirty[x->ndirty].ext = ext;
	x->ndirty++;
	return 0;
}

int idx_for_layer(struct kura_idx *x, uint64_t layer, idx_fn fn, void *arg)
{
	struct idx_layer *l = layer_get(x, layer);

	if (!l)
		return 0;
	for (uint32_t i = 0; i < l->cap; i++) {
		if (l->slots[i].loc != LOC_NONE) {
			int ret = fn(arg, layer, &l->slots[i]);
			if (ret)
				return ret;
		}
	}
	return 0;
}

int idx_for_each(struct kura_idx *x, idx_fn fn, void *arg)
{
	for (uint32_t i = 0; i < x->lcap; i++) {
		if (x->layers[i]) {
			int ret = idx_for_layer(x, x->layers[i]->id, fn, arg);
			if (ret)
				return ret;
		}
	}
	return 0;
}

uint64_t idx_mem_bytes(const struct kura_idx *x)
{
	uint64_t b = (uint64_t)x->lcap * sizeof(*x->layers) +
		     (uint64_t)x->bm_cap * sizeof(*x->bms) + x->dirty_cap * sizeof(*x->dirty);

	for (uint32_t i = 0; i < x->lcap; i++)
		if (x->layers[i])
			b += sizeof(struct idx_layer) +
			     (uint64_t)x->layers[i]->cap * sizeof(struct idx_entry);
	if (x->classes) {
		b += (uint64_t)KURA_BLK_CLASSES * sizeof(*x->classes);
		for (uint32_t c = 0; c < KURA_BLK_CLASSES; c++)
			b += (uint64_t)x->classes[c].cap * sizeof(struct idx_ckey);
	}
	return b;
}
