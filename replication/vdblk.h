/* vdisks on the replicated layer: the vdisk engine's block operations
 * (vdisk/vdisk.h, struct kura_vd_blk_ops) over kura_rep, for the node that
 * serves the cluster's vdisks (docs/cluster.md, "Vdisks in the cluster").
 *
 * Writes and frees go through the groups' primaries (rep.h). A read is
 * served from this node's own copy when it has one holding every write
 * acknowledged to the extent (its version is at least the last one the
 * primary answered: data locality), else from the group's primary. The
 * engine asks synchronously which blocks of an extent a layer holds; this
 * node keeps that in memory for every extent of every vdisk layer (56
 * bytes an extent: 56 MiB a TiB of data written): loaded once from the
 * groups' primaries (PLIST, proto.h) before the engine opens, then kept by
 * the engine's own writes and frees. That holds because one node at a time
 * serves the vdisks and changes their layers (the vdisk service, member.h).
 *
 * A trim writes zeros over the blocks the extent holds in the range (they
 * stay present and read as zeros; their space returns when the layer is
 * freed): replicas order writes by version, and a trim would need the same. Extents are never moved (move is
 * NULL: the engine copies instead). A flush has nothing to wait for: a
 * write is acknowledged once every replica has it durable.
 *
 * Thread rule: the rep's loop thread, callbacks never from inside the
 * submitting call. Errors: those of rep.h; -ENOMEM.
 */
#ifndef KURA_REPLICATION_VDBLK_H
#define KURA_REPLICATION_VDBLK_H

#include "replication/rep.h"
#include "vdisk/vdisk.h"

struct kura_vdblk;

/* store: this node's own (for its disks' figures only); svc: the etcd
 * revision at which this node took the vdisk service, which its writes
 * carry (rep.h, "The vdisk service"). */
int kura_vdblk_create(struct kura_rep *r, struct kura_blk_store *store, uint64_t svc,
		      struct kura_vdblk **out);
/* Answers every operation in flight with -ESHUTDOWN at once and refuses
 * new ones (the service is lost: what still travels is refused by the
 * groups' primaries once the map names the next serving node, rep.h). */
void kura_vdblk_abandon(struct kura_vdblk *v);
/* Abandons, and frees v once its load and operations in flight end. */
void kura_vdblk_destroy(struct kura_vdblk *v);

/* Loads what the cluster holds of layers >= min_layer, group by group from
 * each group's primary (asked again while a group has none, or its
 * primary is peering); cb(arg, err) once every group is in (0), or the rep
 * stops (-ESHUTDOWN). One load at a time, before the engine opens. */
int kura_vdblk_load(struct kura_vdblk *v, uint64_t min_layer, kura_blk_cb cb, void *arg);

extern const struct kura_vd_blk_ops kura_vdblk_ops; /* b: the struct kura_vdblk */

/* For `vdisk cluster status`: object "vdisk_reads" {local (from this
 * node's own copy), remote (from a group's primary), extents_known}. */
void kura_vdblk_status(const struct kura_vdblk *v, struct kura_jw *w);

#endif
