/* The engine's blocks in the node's own store: the store's functions, with
 * each write's version taken from the clock (a later write to an extent
 * always carries a higher version on one node). */
#include "vdisk/vdisk.h"

#include "common/util.h"

static int st_read(void *b, uint64_t layer, uint64_t ext, unsigned blk, unsigned nblk,
		   void *buf, enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	return kura_blk_read(b, layer, ext, blk, nblk, buf, cls, cb, arg);
}

static int st_write(void *b, uint64_t layer, uint64_t ext, unsigned blk, unsigned nblk,
		    const void *buf, enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	return kura_blk_write(b, layer, ext, blk, nblk, buf, kura_now_ns(), cls, cb, arg);
}

static int st_write_cached(void *b, uint64_t layer, uint64_t ext, unsigned blk, unsigned nblk,
			   const void *buf, enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	return kura_blk_write_cached(b, layer, ext, blk, nblk, buf, kura_now_ns(), cls, cb, arg);
}

static int st_trim(void *b, uint64_t layer, uint64_t ext, unsigned blk, unsigned nblk,
		   kura_blk_cb cb, void *arg)
{
	return kura_blk_trim(b, layer, ext, blk, nblk, cb, arg);
}

static int st_free(void *b, uint64_t layer, uint64_t ext, kura_blk_cb cb, void *arg)
{
	return kura_blk_free(b, layer, ext, cb, arg);
}

static int st_move(void *b, uint64_t layer, uint64_t ext, uint64_t new_layer, uint64_t new_ext,
		   kura_blk_cb cb, void *arg)
{
	return kura_blk_move(b, layer, ext, new_layer, new_ext, cb, arg);
}

static int st_flush(void *b, kura_blk_cb cb, void *arg)
{
	return kura_blk_flush(b, cb, arg);
}

static int st_extent_info(void *b, uint64_t layer, uint64_t ext, struct kura_blk_extent_info *out)
{
	return kura_blk_extent_info(b, layer, ext, out);
}

static int st_list(void *b, uint64_t layer, uint64_t **exts, size_t *n)
{
	return kura_blk_list(b, layer, exts, n);
}

static int st_layers(void *b, uint64_t **ids, size_t *n)
{
	return kura_blk_layers(b, ids, n);
}

static void st_layer_usage(void *b, uint64_t layer, uint64_t *extents, uint64_t *blocks)
{
	kura_blk_layer_usage(b, layer, extents, blocks);
}

static int st_disk_info(void *b, unsigned i, struct kura_blk_disk_info *out)
{
	return kura_blk_disk_info(b, i, out);
}

const struct kura_vd_blk_ops kura_vd_store_ops = {
	.read = st_read,
	.write = st_write,
	.write_cached = st_write_cached,
	.trim = st_trim,
	.free = st_free,
	.move = st_move,
	.flush = st_flush,
	.extent_info = st_extent_info,
	.list = st_list,
	.layers = st_layers,
	.layer_usage = st_layer_usage,
	.disk_info = st_disk_info,
};
