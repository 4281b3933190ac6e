/* Replicated block I/O: the block store's reads and writes over the
 * cluster (docs/cluster.md, "Replication").
 *
 * Where a block lives: extent (layer, ext) belongs to group
 * kura_map_pg(); its replicas are the set kura_map_place() gives; the
 * group's primary is the first UP node of the set.
 *
 * Writes: the node a write enters forwards it to the group's primary (over
 * the link, flagged KURA_PROTO_F_PRIMARY), or is the primary itself. The
 * primary orders the group's writes: it gives each one a version, higher
 * than any earlier write to that extent and than any version of an earlier
 * epoch (epoch << 32 | sequence), writes it to its own store and, at the
 * same time, to every other replica of the set that is UP (flagged
 * KURA_PROTO_F_REPLICA), and acknowledges once every one of them has it
 * durable and this node may acknowledge (replication/member.h, fencing).
 *
 * A replica link that breaks while the map still says the node is UP:
 * the write waits; the link reconnects and the primary sends every write
 * that node has not acknowledged again, in version order; the replica
 * applies a write only when it is newer than what its extent holds
 * (KURA_PROTO_F_REPLICA), so a write it already had is not applied twice,
 * and an older one never overwrites a newer one. When the map marks the
 * node DOWN, writes stop waiting for it (the group is degraded). A write
 * whose group has no UP replica waits for one. So while one replica lives,
 * I/O stalls and never fails.
 *
 * Reads go to the group's primary (this node's own store when it is;
 * KURA_OP_READ flagged KURA_PROTO_F_PRIMARY on a link). A primary whose own
 * copy fails to read (-EIO: a disk error, or a block whose checksum does
 * not match) reads another member's instead, one UP and not behind on the
 * group (it holds every acknowledged write), over a plain READ; the read
 * fails only when every such copy fails. A copy that failed its checksum
 * is written again from the good one when the extent did not change
 * meanwhile (read.c).
 *
 * Resync (sync.c): a node that is RECOVERING (back after DOWN or OUT,
 * restarted, or taking an OUT node's place) is nobody's primary and gets no
 * copies until it has caught up. For every group whose set holds it, it
 * asks the group's sync source (kura_map_sync_source: the primary, or with
 * no member UP the member that was UP last) with SYNC requests
 * (blockd/proto.h) listing the extents it holds there and their versions.
 * From the first request on, the source sends it the group's new writes as
 * to any replica (the stream). Then for each extent of either side the
 * source waits for the extent's writes in flight, holds new ones, and
 * compares: equal versions and no write since the stream began: nothing
 * moves; otherwise the member's copy is freed and the source's present
 * blocks are sent at the source's version (rebuild class); an extent the
 * source lacks is freed at the member. Only extents that differ move,
 * whole. When every group is copied from its current source, the node
 * reports it (kura_member_set_synced) and the leader marks it UP; a group
 * whose source changes meanwhile is copied again from the new one.
 *
 * Peering (peering.c): a node that becomes a group's primary compares the
 * group with each other member that is UP and holds it (GLIST, then the
 * resync walk) before it takes writes to it; they wait meanwhile. A node
 * refuses copies and resync writes from a node that is not the group's
 * primary or sync source in its map (kura_rep_peer_may_write), so an old
 * primary's late copies never land after the new primary's; the old
 * primary sends such a write again through the new one when it entered
 * at this node, and answers -EAGAIN when another node forwarded it (that
 * node alone sends it again, while its client waits).
 *
 * The vdisk service: the node serving the vdisks (replication/vdblk.h)
 * sends its writes and frees under the etcd revision at which it took the
 * vdisk-service key (member.h); a group's primary refuses (-ESTALE, final)
 * one sent under a revision older than its map's svc_rev (map.h). So once
 * the map names the next serving node, the late writes of the one before
 * (retried while it lost its lease, say) never land over the new one's.
 * Writes sent with svc 0 (the store socket's) are not checked.
 *
 * Space: a primary refuses (-ENOSPC) a write that needs a new extent
 * (this copy lacks the extent) while its own store, or that of another UP
 * member of the set, is low (kura_blk_space_low); a replica says so in
 * each answer (KURA_PROTO_RF_LOW_SPACE), believed for 2 s. Refused before
 * any copy takes it. Frees, reads and writes into allocated extents go on.
 *
 * Strays (stray.c): a node frees what it holds of groups whose set no
 * longer holds it, once its map shows such a group clean (every member UP,
 * none filling), a while after each new map, one extent at a time.

 *
 * Thread rule: the store's loop thread, callbacks included (never from
 * inside the submitting call). Errors: -EINVAL (range), -ENOMEM,
 * -EHOSTDOWN before the node holds a map; otherwise what the store gives.
 */
#ifndef KURA_REPLICATION_REP_H
#define KURA_REPLICATION_REP_H

#include <stdint.h>

#include "blockd/proto.h"
#include "blockd/store.h"
#include "common/json.h"
#include "replication/member.h"
#include "vdisk/sched.h"

struct kura_rep;

struct kura_rep_opts {
	struct kura_loop *loop;
	struct kura_blk_store *store; /* this node's own */
	struct kura_member *member;
	const char *name;             /* this node's name */
	enum vd_sched_mode sched_mode; /* rebuild pacing: VD_SCHED_QOS, or FIFO (none) */
};

int kura_rep_create(const struct kura_rep_opts *o, struct kura_rep **out);
/* Stopping: what waits for a primary or a replica ends with -ESHUTDOWN,
 * the links close, and this returns once every request it had is
 * answered; new requests get -ESHUTDOWN. Then the servers that feed it can
 * stop, and kura_rep_destroy() frees it. */
void kura_rep_shutdown(struct kura_rep *r);
void kura_rep_destroy(struct kura_rep *r);
/* A new map (from the member's on_map): links to new nodes, writes that
 * waited on nodes now DOWN go on. */
void kura_rep_map(struct kura_rep *r, const struct kura_map *map);

/* Writes through the cluster as described above; buf is copied. svc: the
 * vdisk service the write is sent under, 0 for none (see "The vdisk
 * service" below). ver (may be NULL) gets the version the primary wrote
 * it at, before cb(arg, 0): a copy whose extent version is at least that
 * holds the write (replicas apply an extent's writes in version order). */
int kura_rep_write(struct kura_rep *r, uint64_t layer, uint64_t ext, unsigned blk,
		   unsigned nblk, const void *buf, enum kura_io_class cls, uint64_t svc,
		   uint64_t *ver, kura_blk_cb cb, void *arg);
/* The primary's part: this node must be the group's primary (else
 * -EREMOTE: the sender's map is older or newer; it retries); svc: the
 * vdisk service the sender wrote under (-ESTALE when older than the
 * map's, for a vdisk layer). -EAGAIN: held while this node was fenced or
 * refused by a replica, the cluster moved on; the sender sends it again
 * to the new primary (this node never does: see Peering). */
int kura_rep_write_primary(struct kura_rep *r, uint64_t layer, uint64_t ext, unsigned blk,
			   unsigned nblk, const void *buf, enum kura_io_class cls, uint64_t svc,
			   uint64_t *ver, kura_blk_cb cb, void *arg);
/* Frees a whole extent the same way: ordered by the group's primary among
 * the extent's writes, applied on every replica. A replica applies a free
 * whenever it comes (a free carries no "newer than" test), so a caller
 * never frees an extent it may still write to (the vdisk engine frees only
 * layers nothing writes to any more). */
int kura_rep_free(struct kura_rep *r, uint64_t layer, uint64_t ext, enum kura_io_class cls,
		  uint64_t svc, kura_blk_cb cb, void *arg);
int kura_rep_free_primary(struct kura_rep *r, uint64_t layer, uint64_t ext,
			  enum kura_io_class cls, uint64_t svc, kura_blk_cb cb, void *arg);

/* Reads from the group's primary. */
int kura_rep_read(struct kura_rep *r, uint64_t layer, uint64_t ext, unsigned blk,
		  unsigned nblk, void *buf, enum kura_io_class cls, kura_blk_cb cb, void *arg);
/* Reads copy `copy` of the extent: that of the copy-th member of its
 * group's set (in the set's order; the primary is the first UP one), from
 * this node's store or, over its link, from that member's own (a plain
 * READ: no other copy stands in for it). who gets the member's name.
 * -ENOENT when the set has no such member (copy 0, 1, ... until this);
 * -EAGAIN when that member's copy cannot be read now: it is not UP, or it
 * is behind on the group, or its link is down. A copy read this way may
 * lag a write being made (a scrub compares copies with the extent locked
 * against writes: vdisk/job.c). */
int kura_rep_read_copy(struct kura_rep *r, unsigned copy, uint64_t layer, uint64_t ext,
		       unsigned blk, unsigned nblk, void *buf, enum kura_io_class cls,
		       char who[KURA_MAP_NAME_MAX], kura_blk_cb cb, void *arg);
/* Whether this node is a member of the extent's group, UP and not behind
 * on it, in its map: its copy is one the cluster keeps (a copy of a group
 * it has left may be freed at any time: see "Strays"). */
int kura_rep_holds(struct kura_rep *r, uint64_t layer, uint64_t ext);
/* The primary's part of a read (a READ flagged F_PRIMARY on a link): this
 * node must be the group's primary, else -EREMOTE (the sender asks again). */
int kura_rep_read_primary(struct kura_rep *r, uint64_t layer, uint64_t ext, unsigned blk,
			  unsigned nblk, void *buf, enum kura_io_class cls, kura_blk_cb cb,
			  void *arg);

/* A SYNC request from node peer (blockd/proto.h: data of len bytes, framing
 * checked): 0 and cb(arg, status) later, with *out filled when status is
 * 0; or -EINVAL (a field breaks the rules), -EREMOTE (this node is not
 * the group's source or peer not a member, in this node's map),
 * -EHOSTDOWN (no map yet), -ESHUTDOWN, -ENOMEM. */
int kura_rep_sync(struct kura_rep *r, const char *peer, const void *data, size_t len,
		  struct kura_proto_sync_result *out, kura_blk_cb cb, void *arg);

/* GLIST (blockd/proto.h): what this node holds of a group, from a key on,
 * once everything it took before is in its index: 0 and done(arg, 0,
 * data (malloc'd, the callee's), len) later, or done(arg, -errno, NULL,
 * 0); or at once -EINVAL, -EHOSTDOWN, -EAGAIN (the asker's map, in the
 * request's version, is newer than this node's), -ENOMEM. */
int kura_rep_glist(struct kura_rep *r, const struct kura_proto_req *q,
		   void (*done)(void *arg, int err, uint8_t *data, size_t len), void *arg);

/* Whether node peer may change this node's copy of the group of q's
 * extent (a copy, a resync's FREE or write): only the group's primary or
 * sync source in this node's map, or a node that sent it as such under a
 * newer map (the request's arg_layer). 0, -EREMOTE (the sender then sends the write through
 * whoever is primary now), -EAGAIN (no map yet). */
int kura_rep_peer_may_write(struct kura_rep *r, const char *peer, const struct kura_proto_req *q);

/* This node's resync figures, for `vdisk cluster status`: objects
 * "resync" (its own catching up: state none|running|done, groups,
 * groups_done, extents_compared, extents_copied, bytes_copied,
 * extents_freed, ms) and "resync_served" (what it copied to others); and
 * stale_vdisk_writes_refused (rep.h, "The vdisk service"). */
void kura_rep_status(struct kura_rep *r, struct kura_jw *w);

#endif
