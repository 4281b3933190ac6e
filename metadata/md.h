/* Node-local metadata: a thin, typed-by-prefix wrapper over RocksDB's C API.
 *
 * Thread rule: a kura_md handle may be used from several threads at once
 * (the store's checkpoint worker and the catalog's worker both write to it);
 * kura_md_write() with sync=1 blocks for a device flush, so the store calls it
 * on its worker thread, never on an event loop. Batches are owned by their
 * creator until written.
 *
 * Key spaces (first byte of every key; values are little-endian structs
 * defined by their owners):
 *   'M'  store-wide records (format version, store uuid)
 *   'D'  one record per disk of the pool, keyed by disk index (blockd/pool)
 *   'J'  per-disk journal checkpoint (blockd/journal)
 *   'E'  extent index: layer id (BE64) + extent number (BE64) (blockd/index)
 *   'V'  vdisk catalog: kind byte + id (BE64) -> JSON (metadata/catalog_rocks)
 *
 * Errors: 0 or -errno; RocksDB error text is logged.
 */
#ifndef KURA_METADATA_MD_H
#define KURA_METADATA_MD_H

#include <stddef.h>
#include <stdint.h>

struct kura_md;
struct kura_md_batch;

/* Opens (create=1: creates if missing) the database in directory `path`. */
int kura_md_open(const char *path, int create, struct kura_md **out);
void kura_md_close(struct kura_md *md);

/* Reads a value into buf (cap bytes); *len gets its full length.
 * -ENOENT when absent, -EOVERFLOW when it does not fit. */
int kura_md_get(struct kura_md *md, const void *key, size_t klen, void *buf, size_t cap,
		size_t *len);

struct kura_md_batch *kura_md_batch_create(void);
void kura_md_batch_destroy(struct kura_md_batch *b);
void kura_md_batch_put(struct kura_md_batch *b, const void *key, size_t klen, const void *val,
		       size_t vlen);
void kura_md_batch_delete(struct kura_md_batch *b, const void *key, size_t klen);
size_t kura_md_batch_count(const struct kura_md_batch *b);
/* Applies the batch atomically; sync=1 returns only once it is durable. */
int kura_md_write(struct kura_md *md, struct kura_md_batch *b, int sync);

/* Calls fn for every key starting with prefix, in key order; fn returning
 * non-zero stops the scan and that value is returned. */
typedef int (*kura_md_scan_fn)(void *arg, const uint8_t *key, size_t klen, const uint8_t *val,
			       size_t vlen);
int kura_md_scan(struct kura_md *md, const void *prefix, size_t plen, kura_md_scan_fn fn,
		 void *arg);

#endif
