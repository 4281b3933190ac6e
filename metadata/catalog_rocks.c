/* The embedded catalog backend: records in the node's RocksDB, key space 'V':
 * 'V' + kind + id (BE64) -> JSON text. One synchronous write batch per
 * transaction, so a transaction is atomic and durable. */
#include "metadata/catalog.h"
#include "metadata/md.h"

#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define KEY_LEN 10

static void rec_key(uint8_t key[KEY_LEN], char kind, uint64_t id)
{
	key[0] = 'V';
	key[1] = (uint8_t)kind;
	kura_put_be64(key + 2, id);
}

struct load_ctx {
	int (*fn)(void *arg, const struct kura_cat_rec *r);
	void *arg;
};

static int load_one(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
	struct load_ctx *lc = arg;
	struct kura_cat_rec r;
	int ret;

	if (klen != KEY_LEN)
		return -EINVAL;
	r.kind = (char)key[1];
	r.id = kura_get_be64(key + 2);
	r.val = malloc(vlen + 1);
	if (!r.val)
		return -ENOMEM;
	memcpy(r.val, val, vlen);
	r.val[vlen] = '\0';
	ret = lc->fn(lc->arg, &r);
	free(r.val);
	return ret;
}

static int rocks_load(void *be, int (*fn)(void *arg, const struct kura_cat_rec *r), void *arg)
{
	struct load_ctx lc = { fn, arg };

	return kura_md_scan(be, "V", 1, load_one, &lc);
}

static int rocks_commit(void *be, const struct kura_cat_txn *t)
{
	struct kura_md_batch *b = kura_md_batch_create();
	uint8_t key[KEY_LEN];
	int err;

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++) {
		rec_key(key, t->recs[i].kind, t->recs[i].id);
		if (t->recs[i].val)
			kura_md_batch_put(b, key, sizeof(key), t->recs[i].val,
					  strlen(t->recs[i].val));
		else
			kura_md_batch_delete(b, key, sizeof(key));
	}
	err = kura_md_write(be, b, 1);
	kura_md_batch_destroy(b);
	return err;
}

static void rocks_close(void *be)
{
	(void)be; /* the store owns the database */
}

static const struct kura_cat_ops rocks_ops = {
	.name = "rocksdb",
	.load = rocks_load,
	.commit = rocks_commit,
	.close = rocks_close,
};

int kura_cat_rocks_create(struct kura_md *md, const struct kura_cat_ops **ops, void **be)
{
	*ops = &rocks_ops;
	*be = md;
	return 0;
}
