/* Inside replication/rep: shared by rep.c (routing, the primary's writes)
 * and sync.c (resync: a member that is behind copies its groups from their
 * sync source). Loop thread only. */
#ifndef KURA_REPLICATION_REP_INT_H
#define KURA_REPLICATION_REP_INT_H

#include "replication/link.h"
#include "replication/rep.h"
#include "vdisk/sched.h"

#define RETRY_NS 100000000ull  /* a write or read waiting for a primary tries again */
#define VER_BUCKETS 4096u

/* A peer node and the link to it. */
struct peer {
	char name[KURA_MAP_NAME_MAX];
	char addr[KURA_MAP_ADDR_MAX];
	struct kura_link *link;
	struct kura_rep *r;
	int up_in_map;          /* takes copies in the newest map: UP, or RECOVERING
				 * (copies of the groups it is catching up on) */
	int strictly_up;        /* UP in the newest map */
	int was_up;             /* ... in the one before (kura_rep_map) */
	struct rtarget *resend; /* replica writes to send again when the link is up, by seq */
	struct kura_timer drain; /* sends them again when they were parked on an up link */
	int drain_armed;
	unsigned pending;        /* copies sent or parked, not finished */
	uint64_t progress_ns;    /* the last answer, or when pending became non-zero */
	uint64_t low_until_ns;   /* its store said it is low on space: until then
				  * it gets no write that needs a new extent */
	struct missed **missed;  /* what it missed while not UP (missed.c), or NULL */
	unsigned nmissed;
	struct peer *next;
};

struct xtask;
struct held;

/* The versions handed out for an extent whose writes are in flight; and
 * the lock a resync takes on it (sync.c): writes arriving meanwhile wait. */
struct vent {
	uint64_t layer, ext, last;
	unsigned inflight;
	int sticky; /* kept: a local write failed after replicas took its version */
	int freed;  /* the last version handed out was a free's */
	struct xtask *locker;     /* the resync task holding or waiting for the lock */
	int locked;               /* held: new writes go to held */
	struct held *held, **held_tail;
	struct vent *next;
};

/* A write that arrived while its extent was locked. */
struct held {
	uint64_t layer, ext;
	unsigned blk, nblk;
	enum kura_io_class cls;
	void *buf;
	kura_blk_cb cb;
	void *arg;
	uint64_t since_ns;
	int forwarded; /* from another node (F_PRIMARY): it retries on EAGAIN */
	uint64_t svc;  /* the vdisk service it was sent under (rep.h) */
	uint64_t *ver; /* gets the version it was written at (or NULL) */
	struct held *next;
};

#define DIRTY_BUCKETS 256u
struct dext {
	uint64_t layer, ext;
	struct dext *next;
};

/* At a group's sync source: a member catching up on group pg gets the
 * group's new writes from the moment it first asks (a stream), and the
 * extents written since are remembered (dirty): what the member listed for
 * them may predate a copy it got, so they are copied whole. */
struct stream {
	uint32_t pg;
	char node[KURA_MAP_NAME_MAX];
	uint32_t id;  /* unique in this process's life */
	struct dext *dirty[DIRTY_BUCKETS];
	struct stream *next;
};
#define STREAM_BUCKETS 256u

/* At a member catching up: one group. */
enum sg_state { SG_NA = 0, SG_PENDING, SG_RUNNING, SG_DONE };
struct sgroup {
	uint8_t state;
	char source[KURA_MAP_NAME_MAX];  /* who it was copied from (SG_DONE) */
	uint64_t source_started;         /* ... in that process's life */
	uint64_t from_layer, from_ext;   /* where the next request starts */
	uint32_t stream;                 /* the source's stream id (0: none yet) */
	uint8_t confirmed, confirming;   /* its stream checked in this map */
	uint32_t cseq;                   /* the confirm request whose answer counts */
};

struct syncreq;

/* A member's resync (sync.c): of every group whose set holds it while it
 * is RECOVERING, else of the groups it is filling (map.h). */
struct syncer {
	int active;
	uint64_t since;          /* the RECOVERING state's since_ms; 0: filling only */
	struct sgroup *g;        /* map->pgs entries */
	unsigned pgs, total, done, running, confirmed;
	unsigned next_pg;        /* where the pump looks first: the group after
	                          * the last one sent, so that groups take turns */
	uint64_t reported_epoch; /* the map the last report was made in */
	uint64_t epoch;          /* of the map the groups were counted in */
	uint64_t gen;            /* which recovery or rebuild this is */
	uint64_t checked, copied, copied_bytes, freed;
	uint64_t start_ns, end_ns;
	struct ment *mine;       /* this store's extents, sorted by (pg, layer, ext) */
	size_t nmine;
	int mine_built;
	struct kura_timer pump;
	int pump_armed;
	struct kura_op pump_soon; /* sync_pump_soon */
	int pump_soon_pending;
	uint32_t next_stream;    /* at sources: the next stream's id */
	/* at sources: what this node copied to others */
	uint64_t served_copied, served_bytes, served_freed;
	uint64_t served_missed; /* ... of those copied, only the blocks the member missed */
};

/* An extent of this store, by group, for SYNC requests. */
struct ment {
	uint32_t pg;
	uint64_t layer, ext;
};

/* Copies of groups this node has left, being freed (stray.c). */
struct stray_key {
	uint64_t layer, ext;
};
struct strays {
	struct kura_timer timer; /* the next pass, a while after a new map */
	int armed, inflight;
	struct stray_key *keys;  /* this pass's, freed one at a time */
	size_t n, next;
	uint64_t epoch;          /* the map the pass was made in */
	uint64_t freed, logged;
};

struct rwrite;

/* One replica's copy of a write. */
struct rtarget {
	struct kura_link_req lr;
	struct rwrite *w;
	struct peer *p;
	int stream;           /* to a member catching up (not UP) */
	struct rtarget *next; /* in its peer's resend list */
};

/* A write at the primary. */
struct rwrite {
	struct kura_rep *r;
	uint64_t layer, ext, version, seq, epoch;
	uint64_t prev;      /* the extent's version ordered before this one */
	uint64_t rprev;     /* ... as a replica's store sees it: 0 after a free */
	unsigned blk, nblk;
	enum kura_io_class cls;
	void *buf;
	unsigned waiting;   /* replicas (and the local write) not done yet */
	int err;            /* the local write's */
	kura_blk_cb cb;
	void *arg;
	struct kura_timer fence_wait;
	int redrive;        /* a replica refused it (not the primary in its map) */
	int forwarded;      /* from another node (F_PRIMARY): never sent again from
			     * here (write_maybe_done) */
	uint64_t svc;       /* the vdisk service it was sent under (rep.h) */
	uint64_t *ver_out;  /* gets its version once acknowledged (or NULL) */
	unsigned ntargets;
	struct rtarget t[KURA_MAP_MAX_REPLICAS];
};

/* A write or read that goes to another node's primary, tried again until
 * it is answered. */
struct remote {
	struct kura_link_req lr;
	struct kura_rep *r;
	int write;
	uint64_t layer, ext;
	unsigned blk, nblk;
	enum kura_io_class cls;
	void *buf;       /* write: a copy of the data; read: the caller's */
	uint64_t svc;    /* write: the vdisk service it is sent under (rep.h) */
	uint64_t ver;    /* write: the version the primary answered */
	uint64_t *ver_out; /* ... copied there when done (or NULL) */
	kura_blk_cb cb;
	void *arg;
	struct kura_timer retry;
};

/* A group's replica set under the current map, computed on first use:
 * placement hashes every node (9 us a group at 1,000 nodes), too much for
 * every I/O. */
struct pgset {
	uint8_t known, n;
	int16_t primary; /* index of the first UP node, -1 none */
	uint16_t self;   /* this node is the primary */
	unsigned idx[KURA_MAP_MAX_REPLICAS];
};

/* pace.c: rebuild pacing (the member's SYNC requests wait for slots, and
 * so do the reads a source does for another node's requests) */
struct rslot;
struct rpace {
	struct vd_sched *sched;   /* this node's own catching up (the writes) */
	struct vd_sched *src;     /* what it reads as a source for other nodes */
	struct kura_timer timer;
	int armed, in_take;
	unsigned asking;          /* slots asked for, not granted yet */
	struct rslot *granted;    /* granted, not taken */
	struct rslot *src_wait;   /* a source's, asked for, not granted yet */
	struct rslot *src_ready;  /* a source's, granted, to hand over */
	struct kura_op src_op;    /* hands them over on a later turn */
	int src_pending;
	uint64_t seen_started, seen_done, seen_lat; /* the store's guest counts last seen */
	uint64_t waits, bytes;    /* slots held back; bytes copied under slots */
	uint64_t src_waits, src_late, src_bytes; /* a source's: held back, not
	                          * granted in time, bytes sent under slots */
};

struct kura_rep {
	struct kura_loop *loop;
	struct kura_blk_store *store;
	struct kura_member *member;
	char name[KURA_MAP_NAME_MAX];
	const struct kura_map *map; /* the member's, valid until the next kura_rep_map */
	struct pgset *sets;         /* map->pgs entries, for this map (NULL: no memory) */
	struct pgset uncached;      /* used while sets is NULL */
	struct peer *peers;
	struct vent *vers[VER_BUCKETS];
	uint64_t seq;
	struct stream *streams[STREAM_BUCKETS];
	struct syncer sync;
	struct strays strays;
	struct peering *peering;     /* peering.c's */
	struct kura_timer peering_retry;
	int peering_retry_armed;
	struct kura_timer unreach_timer; /* looks for peers that answer nothing */
	int unreach_armed;
	uint64_t stale_refused; /* writes of a node that no longer serves the vdisks */
	uint64_t read_errors;    /* reads of this node's copy that failed (read.c) */
	uint64_t reads_elsewhere; /* ... and were served by another replica's */
	uint64_t reads_repaired;  /* ... and rewrote this copy's blocks (read.c) */
	uint64_t read_error_logged_ns;
	uint64_t nospace_refused; /* writes refused: a copy of their group is low on space */
	uint64_t low_until_ns;    /* the latest of the peers' low_until_ns */
	uint64_t nospace_logged_ns;
	uint64_t stale_logged_ns;
	struct rpace pace;
	unsigned outstanding; /* writes, remote requests and resync work not finished */
	unsigned closing;     /* old links whose close is deferred */
	int destroying;
};

/* Whether node n (of r's map) is behind on group pg: RECOVERING, or
 * filling it. It gets the group's writes only through a stream. */
static inline int rep_behind(const struct kura_map *m, uint32_t pg, const struct kura_map_node *n)
{
	return n->state == KURA_NODE_RECOVERING ||
	       (m->nfills && n->state == KURA_NODE_UP && kura_map_filling(m, pg, n->name));
}

/* rep.c */
struct peer *rep_peer(struct kura_rep *r, const struct kura_map_node *n);
struct vent **rep_vent_slot(struct kura_rep *r, uint64_t layer, uint64_t ext);
/* The vent of an extent, created when absent (NULL: no memory). */
struct vent *rep_vent_get(struct kura_rep *r, uint64_t layer, uint64_t ext);
/* A write, or with nblk 0 a free of the whole extent, through the
 * group's primary (kura_rep_write, kura_rep_free). */
int rep_change(struct kura_rep *r, uint64_t layer, uint64_t ext, unsigned blk, unsigned nblk,
	       const void *buf, enum kura_io_class cls, kura_blk_cb cb, void *arg, uint64_t svc,
	       uint64_t *ver);
/* rep_can_start: 0, or why a request cannot start (-ESHUTDOWN, -EHOSTDOWN,
 * -EINVAL); rep_primary_of: the index in the map of the group's primary
 * (-1: none UP), *self whether it is this node. */
int rep_can_start(const struct kura_rep *r, uint64_t ext, unsigned blk, unsigned nblk);
int rep_primary_of(struct kura_rep *r, uint64_t layer, uint64_t ext, int *self);
/* Frees v when nothing holds it any more. */
void rep_vent_put(struct kura_rep *r, struct vent *v);

/* read.c: a read at the group's primary (this node): its own copy, or on
 * -EIO another member's (kura_rep_read_primary without the checks). */
int rep_read_primary(struct kura_rep *r, uint64_t layer, uint64_t ext, unsigned blk,
		     unsigned nblk, void *buf, enum kura_io_class cls, kura_blk_cb cb, void *arg);

/* stray.c: a new map (a pass is made a while later); whether a free of
 * a stray is in flight (this node's resync waits for it); stopping. */
void rep_strays_map(struct kura_rep *r);
int rep_strays_busy(const struct kura_rep *r);
void rep_strays_shutdown(struct kura_rep *r);

/* A hash of an extent's key, for the tables of rep.c, sync.c and missed.c. */
static inline uint64_t rep_ext_hash(uint64_t layer, uint64_t ext)
{
	return kura_hash64(layer * 0x9e3779b97f4a7c15ull ^ ext);
}

/* Extent keys in (layer, ext) order. */
static inline int rep_key_cmp(uint64_t al, uint64_t ae, uint64_t bl, uint64_t be)
{
	if (al != bl)
		return al < bl ? -1 : 1;
	return ae < be ? -1 : ae > be;
}

/* lists.c */
/* Calls fn for every extent of this store, layer by layer, in order; stops
 * at fn's first error and returns it (or the store's). */
int rep_each_extent(struct kura_rep *r, int (*fn)(void *arg, uint64_t layer, uint64_t ext),
		    void *arg);
/* This store's extents of group pg in [h->from, h->to), ascending, into a
 * malloc'd array (versions 0). */
int rep_list_group(struct kura_rep *r, uint32_t pg, const struct kura_proto_sync *h,
		   struct kura_proto_sync_ent **out, size_t *nout);

/* sync.c */
/* The stream of group pg to node, or NULL. */
struct stream *sync_stream(struct kura_rep *r, uint32_t pg, const char *node);
/* A write of (layer, ext) in group pg goes out: remembered in its stream. */
void sync_dirty(struct stream *st, uint64_t layer, uint64_t ext);
/* v's in-flight writes are done: a task waiting to lock it goes on. */
void sync_vent_idle(struct kura_rep *r, struct vent *v);
/* A new map: streams that no longer apply end; this node's own resync
 * starts, goes on or stops. */
void sync_map(struct kura_rep *r);
/* Stopping: every stream ends. */
void sync_shutdown(struct kura_rep *r);
/* Starts what this node's recovery can start now. */
void sync_pump(struct kura_rep *r);
/* The source's walk of group h->pg over [from, to) for member peer, as a
 * SYNC request does (ents: what the member holds there, taken, freed
 * here; *out filled when cb gets 0): 0, or -errno and cb will not run. */
int sync_job(struct kura_rep *r, const char *peer, const struct kura_proto_sync *h,
	     struct kura_proto_sync_ent *ents, size_t n, struct kura_proto_sync_result *out,
	     kura_blk_cb cb, void *arg);
/* Starts the writes that waited on a lock or on peering, in order; with
 * lost set (this node no longer leads the group), those another node
 * forwarded get EAGAIN instead: that node sends them to the new primary
 * itself, in its own order. */
void rep_release(struct kura_rep *r, struct held **list, int lost);

/* missed.c: missed writes. At a group's primary, a member that misses a
 * write (ordered while it is not UP, parked for it or failed for it when
 * it went down; or got only through a stream) has the write's blocks
 * noted (nblk 0: a free), with the write's version and the one before. */
void missed_note(struct peer *p, uint64_t layer, uint64_t ext, unsigned blk, unsigned nblk,
		 uint64_t prev, uint64_t version);
/* 1 and the blocks to send when the member, listing the extent at
 * `listed`, needs only the blocks noted since while this node holds it at
 * `current`; 0: copy it whole. */
int missed_blocks(struct peer *p, uint64_t layer, uint64_t ext, uint64_t listed, uint64_t current,
		  struct kura_blk_bitmap *out);
/* Whether anything is noted for the extent: a member that lists it at this
 * node's own version may still lack a write it missed (a stream write
 * raised its version), so it is copied whole. */
int missed_any(struct peer *p, uint64_t layer, uint64_t ext);
/* The extent was copied to the member: it holds what this node holds. */
void missed_forget(struct peer *p, uint64_t layer, uint64_t ext);
/* The member is UP (in sync) or gone: forget what it missed. */
void missed_clear(struct peer *p);

/* peering.c */
struct heldq {
	struct held *head, **tail;
};
/* A new map: groups this node became the primary of start peering;
 * groups it no longer leads stop (their waiting writes go on). */
void peering_map(struct kura_rep *r);
/* Whether writes to group pg wait for peering, and where. */
int peering_holds(struct kura_rep *r, uint32_t pg);
struct heldq *peering_queue(struct kura_rep *r, uint32_t pg);
/* Stopping: waiting writes go on (and fail: the layer is stopping). */
void peering_shutdown(struct kura_rep *r);
/* figures for status */
void peering_status(struct kura_rep *r, struct kura_jw *w);

/* pace.c (and sync.c: how many groups a member copies at once, which the
 * pacing's window is sized for) */
#define SYNC_PARALLEL 8u
int pace_init(struct kura_rep *r, enum vd_sched_mode mode);
/* A slot for one SYNC request that may copy data, or NULL: one was asked
 * for, and sync_pump runs again (sync_pump_soon) once it is granted. */
struct rslot *pace_take(struct kura_rep *r);
/* The request that held s is answered, having copied `bytes`. */
void pace_release(struct kura_rep *r, struct rslot *s, uint64_t bytes);
/* The extents s's request may have the source send (s NULL: a confirm,
 * which sends none: the protocol's default). */
unsigned pace_budget(const struct rslot *s);
/* A source's SYNC job asks for a slot for its reads: 0, and fn runs on a
 * later turn of the loop with the slot, or with NULL when none came within
 * PACE_SOURCE_WAIT_NS (the job then answers at once, having moved nothing,
 * and the member asks again); 1: no pacing here, go on at once. fn also
 * runs during a shutdown (r->destroying set). Release the slot with
 * pace_release. */
typedef void (*pace_fn)(void *arg, struct rslot *s);
int pace_ask(struct kura_rep *r, pace_fn fn, void *arg);
void pace_return_unused(struct kura_rep *r);
void pace_shutdown(struct kura_rep *r);
void pace_destroy(struct kura_rep *r);
void pace_status(struct kura_rep *r, struct kura_jw *w);
/* sync.c: runs sync_pump on a later turn of the loop. */
void sync_pump_soon(struct kura_rep *r);

#endif
