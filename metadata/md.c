#include "metadata/md.h"
#include "common/log.h"

#include <errno.h>
#include <rocksdb/c.h>
#include <stdlib.h>
#include <string.h>

struct kura_md {
	rocksdb_t *db;
	rocksdb_options_t *opts;
	rocksdb_writeoptions_t *wsync, *wnosync;
	rocksdb_readoptions_t *ropts;
};

struct kura_md_batch {
	rocksdb_writebatch_t *wb;
};

static int md_error(char *err, const char *what)
{
	int ret = -EIO;

	if (strstr(err, "lock") || strstr(err, "Resource temporarily unavailable"))
		ret = -EBUSY;
	else if (strstr(err, "does not exist"))
		ret = -ENOENT;
	kura_log(ERR, "rocksdb %s: %s", what, err);
	free(err);
	return ret;
}

int kura_md_open(const char *path, int create, struct kura_md **out)
{
	struct kura_md *md = calloc(1, sizeof(*md));
	char *err = NULL;

	if (!md)
		return -ENOMEM;
	md->opts = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(md->opts, create);
	/* Metadata is small; keep memory modest and predictable. */
	rocksdb_options_set_write_buffer_size(md->opts, 16 << 20);
	rocksdb_options_set_max_open_files(md->opts, 256);
	rocksdb_options_set_keep_log_file_num(md->opts, 2);
	md->db = rocksdb_open(md->opts, path, &err);
	if (err) {
		int ret = md_error(err, "open");
		rocksdb_options_destroy(md->opts);
		free(md);
		return ret;
	}
	md->wsync = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(md->wsync, 1);
	md->wnosync = rocksdb_writeoptions_create();
	md->ropts = rocksdb_readoptions_create();
	*out = md;
	return 0;
}

void kura_md_close(struct kura_md *md)
{
	if (!md)
		return;
	rocksdb_close(md->db);
	rocksdb_writeoptions_destroy(md->wsync);
	rocksdb_writeoptions_destroy(md->wnosync);
	rocksdb_readoptions_destroy(md->ropts);
	rocksdb_options_destroy(md->opts);
	free(md);
}

int kura_md_get(struct kura_md *md, const void *key, size_t klen, void *buf, size_t cap,
		size_t *len)
{
	char *err = NULL;
	size_t vlen = 0;
	char *v = rocksdb_get(md->db, md->ropts, key, klen, &vlen, &err);

	if (err)
		return md_error(err, "get");
	if (!v)
		return -ENOENT;
	*len = vlen;
	if (vlen > cap) {
		rocksdb_free(v);
		return -EOVERFLOW;
	}
	memcpy(buf, v, vlen);
	rocksdb_free(v);
	return 0;
}

struct kura_md_batch *kura_md_batch_create(void)
{
	struct kura_md_batch *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->wb = rocksdb_writebatch_create();
	return b;
}

void kura_md_batch_destroy(struct kura_md_batch *b)
{
	if (!b)
		return;
	rocksdb_writebatch_destroy(b->wb);
	free(b);
}

void kura_md_batch_put(struct kura_md_batch *b, const void *key, size_t klen, const void *val,
		       size_t vlen)
{
	rocksdb_writebatch_put(b->wb, key, klen, val, vlen);
}

void kura_md_batch_delete(struct kura_md_batch *b, const void *key, size_t klen)
{
	rocksdb_writebatch_delete(b->wb, key, klen);
}

size_t kura_md_batch_count(const struct kura_md_batch *b)
{
	return (size_t)rocksdb_writebatch_count(b->wb);
}

int kura_md_write(struct kura_md *md, struct kura_md_batch *b, int sync)
{
	char *err = NULL;

	rocksdb_write(md->db, sync ? md->wsync : md->wnosync, b->wb, &err);
	if (err)
		return md_error(err, "write");
	return 0;
}

int kura_md_scan(struct kura_md *md, const void *prefix, size_t plen, kura_md_scan_fn fn,
		 void *arg)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator(md->db, md->ropts);
	char *err = NULL;
	int ret = 0;

	for (rocksdb_iter_seek(it, prefix, plen); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t klen, vlen;
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v = rocksdb_iter_value(it, &vlen);

		if (klen < plen || memcmp(k, prefix, plen))
			break;
		ret = fn(arg, (const uint8_t *)k, klen, (const uint8_t *)v, vlen);
		if (ret)
			break;
	}
	rocksdb_iter_get_error(it, &err);
	rocksdb_iter_destroy(it);
	if (err && !ret)
		ret = md_error(err, "scan");
	else if (err)
		free(err);
	return ret;
}
