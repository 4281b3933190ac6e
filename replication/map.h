/* The cluster map: which nodes the cluster has, the state of each, and (by
 * computation, not storage) where each placement group's replicas live.
 *
 * One map per cluster, in etcd under KURA_KEY_MAP (replication/member.h),
 * written only by the map leader with a compare-and-swap on its revision;
 * every change bumps the epoch. Every node holds a copy and computes
 * placement from it, so every node agrees on placement for an epoch.
 *
 * Placement: an extent (layer, ext) belongs to placement group
 * kura_map_pg(); a group's replica set is chosen by rendezvous (highest
 * random weight) hashing over the nodes that are not OUT, at most one node
 * per fault domain, ordered by weight: the first UP node of the set is the
 * group's primary. A node going DOWN keeps its place (its replicas are
 * missing until it returns: the group is degraded); a node going OUT leaves
 * every set it was in, and the next node by weight takes its place (the
 * group must be rebuilt there). Adding or removing a node moves only the
 * groups whose sets it enters or leaves. A node's weight in a group hashes
 * the group and the node's name, never its index. Placement uses 64-bit
 * integer hashing only, so every process on every architecture computes
 * the same sets; those hash functions are part of the on-disk contract (a
 * change to them moves nearly every extent of every cluster), and the unit
 * tests pin their output.
 *
 * Pure data and functions, no I/O; any thread (a map is not shared: the
 * owner copies it).
 *
 * Errors: 0 or -errno; parsing gives -EINVAL with a one-line reason.
 */
#ifndef KURA_REPLICATION_MAP_H
#define KURA_REPLICATION_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "blockd/proto.h"

#define KURA_MAP_MAX_NODES 4096
#define KURA_MAP_MAX_REPLICAS 3
#define KURA_MAP_NAME_MAX 64   /* node names and fault domains, NUL included */
#define KURA_MAP_ADDR_MAX 64   /* "HOST:PORT", NUL included */
#define KURA_MAP_PGS_MAX 65536
#define KURA_MAP_UNREACH_MAX 8 /* nodes one node may report unreachable */

enum kura_node_state {
	KURA_NODE_UP = 0,   /* holds a live lease in etcd */
	KURA_NODE_DOWN = 1, /* lease gone for less than out_after: keeps its place */
	KURA_NODE_OUT = 2,  /* gone for out_after or more: its copies are rebuilt elsewhere */
	KURA_NODE_RECOVERING = 3, /* registered again after it was DOWN or OUT, or as
				   * a new process (a restart): it keeps its place
				   * but may have missed writes, so it is nobody's
				   * primary and gets no copies until it has been
				   * brought up to date (then UP) */
};
const char *kura_node_state_name(enum kura_node_state s);

struct kura_map_node {
	char name[KURA_MAP_NAME_MAX];   /* [A-Za-z0-9._-], 1-63 chars; unique */
	char addr[KURA_MAP_ADDR_MAX];   /* its node-to-node listener, HOST:PORT */
	char domain[KURA_MAP_NAME_MAX]; /* fault domain (rack); same charset */
	enum kura_node_state state;
	uint64_t since_ms;              /* unix ms it entered this state */
	uint64_t started_ms;            /* its process's start (unix ms): a new value
					 * is a restart; 0 unknown */
	uint64_t last_up_epoch;         /* the last epoch it was UP in, set when it
					 * leaves UP (0: it never left UP) */
};

/* A member filling a group: it entered the group's set when another node
 * went OUT, so it holds nothing of the group yet. It is not the group's
 * primary or sync source, and the group is not clean, until it has copied
 * the group (replication/rep.h, "Resync") and said so (filled_epoch). */
struct kura_map_fill {
	uint32_t pg;
	char node[KURA_MAP_NAME_MAX];
	uint64_t epoch; /* the map epoch it began in */
};

struct kura_map {
	char cluster_id[37];  /* UUID text, set by `vdisk cluster init` */
	uint64_t epoch;       /* 1 for the first map; +1 per change */
	unsigned replicas;    /* 1..KURA_MAP_MAX_REPLICAS */
	unsigned pgs;         /* a power of two, 1..KURA_MAP_PGS_MAX */
	uint64_t out_after_ms;
	unsigned nnodes;
	struct kura_map_node *nodes; /* sorted by name; malloc'd */
	unsigned nfills;
	struct kura_map_fill *fills; /* sorted by (pg, node), unique; malloc'd */
	/* The etcd revision at which the node serving the vdisks took the
	 * vdisk-service key (member.h); 0: none yet. Only rises. Nodes refuse
	 * vdisk writes sent under an older one (rep.h, "The vdisk service"). */
	uint64_t svc_rev;
	/* Not in the JSON: set by the leader before kura_map_update(). A node
	 * seen for the first time joins UP until this time (unix ms; the
	 * cluster is forming and holds no data yet) and RECOVERING after it (it
	 * would otherwise become primary of groups whose data it lacks). 0:
	 * always UP. */
	uint64_t join_up_until_ms;
	/* Not in the JSON: every group's set, worked out once (kura_map_index),
	 * or NULL (each placement is worked out when asked). */
	struct kura_map_table *table;
};

/* What an administrator asked of the map about another node, through the
 * node `vdisk cluster out|remove` ran on: carried in that node's
 * registration until its map shows it done (replication/member.h). */
enum kura_map_ask_kind {
	KURA_ASK_OUT = 1,    /* a DOWN node goes OUT now, not after out_after */
	KURA_ASK_REMOVE = 2, /* an OUT node leaves the map */
};
#define KURA_MAP_ASKS_MAX 4 /* asks one registration carries */
struct kura_map_ask {
	char node[KURA_MAP_NAME_MAX];
	enum kura_map_ask_kind kind;
};

/* A node as it registers itself (its key in etcd, held by its lease). */
struct kura_live_node {
	char name[KURA_MAP_NAME_MAX];
	char addr[KURA_MAP_ADDR_MAX];
	char domain[KURA_MAP_NAME_MAX];
	uint64_t started_ms; /* when its process started (unix ms) */
	uint64_t synced_ms;  /* a RECOVERING node that has every write it missed
			      * puts its since_ms here (0: not synced) */
	uint64_t synced_epoch; /* ... in the map of this epoch: it counts only
				* in that map (0: none) */
	uint64_t filled_epoch; /* it has filled every group it was filling in
				* the map of this epoch, which counts only in
				* that map (0: none) */
	/* nodes it has copies for that have answered none for a while
	 * (replication/rep.h, "Partitions") */
	unsigned nunreach;
	char unreach[KURA_MAP_UNREACH_MAX][KURA_MAP_NAME_MAX];
	unsigned nasks;
	struct kura_map_ask asks[KURA_MAP_ASKS_MAX];
};

/* A new map: epoch 1, no nodes. -EINVAL for a cluster_id that is not UUID
 * text or bad replicas/pgs. */
int kura_map_init(struct kura_map *m, const char *cluster_id, unsigned replicas, unsigned pgs,
		  uint64_t out_after_ms);
/* Frees the nodes and zeroes the map; freeing twice is harmless. */
void kura_map_free(struct kura_map *m);
/* dst becomes a deep copy of src; dst is overwritten, not freed first.
 * -ENOMEM. */
int kura_map_copy(struct kura_map *dst, const struct kura_map *src);

/* JSON text (malloc'd, NUL-terminated; NULL on ENOMEM) and back:
 *   {"cluster_id":"<uuid>","epoch":7,"replicas":3,"pgs":256,
 *    "out_after_ms":600000,"nodes":[{"name":"n1","addr":"10.99.0.1:7400",
 *    "domain":"rack1","state":"up","since_ms":1796300000000}],
 *    "fills":[{"pg":12,"node":"n1","epoch":6}]}
 * ("fills" may be absent: none; each names a node of the map, a group
 * below pgs, an epoch from 1 to the map's, sorted by (pg, node), unique).
 * Parsing validates every field (types, ranges, names' charset, sorted
 * unique names, addresses, states; at most KURA_MAP_MAX_NODES nodes) and
 * gives -EINVAL with a one-line reason naming the field in err (such as
 * "nodes[3].addr: port out of range"), or -ENOMEM. Every field is required;
 * unknown keys, at the top or in a node, are ignored, so that an older
 * node reads a newer map. An address is HOST:PORT, the host a dotted-quad
 * IPv4 address or a name of the node-name charset, the port 1..65535. On
 * error *out holds nothing (kura_map_free() on it is harmless); err may be
 * NULL. */
char *kura_map_to_json(const struct kura_map *m);
int kura_map_from_json(const char *text, size_t len, struct kura_map *out, char *err,
		       size_t errlen);

/* Whether node is filling group pg. */
int kura_map_filling(const struct kura_map *m, uint32_t pg, const char *node);

/* A node link's HELLO from node `node` holding map m (NULL: none yet, so
 * no cluster id and epoch 0). */
void kura_map_hello(const struct kura_map *m, const char *node, struct kura_proto_hello *out);

/* Index of the node called name, or -1. */
int kura_map_find(const struct kura_map *m, const char *name);

/* The placement group of an extent, in 0..pgs-1; consecutive extents of a
 * layer spread over unrelated groups. The group is a hash masked to pgs-1,
 * so doubling pgs splits each group g into g and g + the old pgs. */
uint32_t kura_map_pg(const struct kura_map *m, uint64_t layer, uint64_t ext);

/* The replica set of group pg: up to m->replicas node indexes into idx, in
 * order; returns how many (fewer than m->replicas when there are not enough
 * fault domains with a node that is not OUT). The rule: every node that is
 * not OUT, by weight descending (equal weights: the lower name first),
 * skipping nodes whose fault domain is already in the set. Costs one hash
 * per node, or a table lookup once the map is indexed. */
unsigned kura_map_place(const struct kura_map *m, uint32_t pg, unsigned idx[KURA_MAP_MAX_REPLICAS]);

/* Works out every group's set once, into a table kura_map_place() (and
 * everything built on it: primaries, sync sources, health) then reads; or
 * takes prev's table (prev may be NULL) when the placement's inputs are
 * the same: pgs, replicas, and the nodes' names, fault domains and whether
 * they are OUT, in map order. Most new maps only change states (down,
 * recovering, up), so this costs a compare of the node list. When a few
 * nodes went out, came back or joined (at most a quarter of them, none
 * moved to another fault domain), the sets are worked out from prev's:
 * only groups that held a node that went out are placed again, and a
 * joining node costs one weight per group (about 2 ms at 65,536 groups
 * and 1,000 nodes); otherwise every group is placed over every node
 * (about 220 ms there).
 * The table is the map's: copies share it (kura_map_copy, reference
 * counted, any thread), kura_map_free drops it, and kura_map_update drops
 * it (the inputs may change there: index again after). A map must not be
 * changed in any other way once indexed. 0, or -ENOMEM (no table: every
 * placement is worked out when asked, as before). */
int kura_map_index(struct kura_map *m, const struct kura_map *prev);
/* How many groups of m's table were worked out from the last map's table
 * rather than placed over every node (0 when not indexed). */
unsigned kura_map_table_carried(const struct kura_map *m);

/* The group's primary: the first UP node of its set that is not filling
 * it, or -1 when there is none. */
int kura_map_primary(const struct kura_map *m, uint32_t pg);

/* The group's sync source: the node a member that is behind copies the
 * group from (replication/rep.h, "Resync"). The primary when there is one;
 * else (the whole set restarted, say) of the members not filling the
 * group, the first RECOVERING one that was UP as late as any of them (the
 * highest last_up_epoch): no write can have been acknowledged without it;
 * -1 while such a member is DOWN (the group waits for it, or for it to go
 * OUT). When every member is filling (OUT took every copy: the group's
 * data is lost), the first member UP or RECOVERING. */
int kura_map_sync_source(const struct kura_map *m, uint32_t pg);

/* The leader's step: from the nodes registered now (live, any order), the
 * next map. A live node unknown to the map joins UP (RECOVERING from
 * join_up_until_ms on); a known one keeps its state, or becomes RECOVERING
 * when it was DOWN or OUT or started again (another started_ms), with
 * address and domain updated; a RECOVERING node whose synced_ms equals its
 * since_ms and whose synced_epoch is the map's epoch becomes UP; an UP or RECOVERING node that is not live
 * becomes DOWN at now_ms; a DOWN node gone for out_after_ms or
 * more becomes OUT (a now_ms before its since_ms, from a leader whose
 * clock is behind, counts as no time gone). When a node goes OUT, every
 * node that enters a group's set in its place is filling that group (a
 * fill, with the new epoch) until it reports filled_epoch equal to the
 * map's epoch (the rebuild); a fill ends too when its node leaves the
 * set. The same holds when a node's fault domain changes (placement moves). A node that an UP node reports unreachable (it
 * holds copies for it that it cannot deliver, while both hold their etcd
 * leases: a partition between nodes) is set back: UP becomes RECOVERING,
 * RECOVERING becomes DOWN; when two nodes report each other, only the one
 * whose name sorts last is. A node leaving UP records the epoch it leaves
 * (last_up_epoch). An UP node's asks (its state in m, before this step)
 * are carried out: KURA_ASK_OUT sets a node that is DOWN and not live OUT
 * at once, as if out_after had passed (its groups get fills);
 * KURA_ASK_REMOVE removes a node that is OUT and not live from the map
 * (it is in no group's set; should it register again, it joins as a node
 * never seen). Asks about a node in another state, or unknown, change
 * nothing.
 * since_ms is set to now_ms on every change of state and only then. Nodes
 * stay sorted by name; a node leaves the map only by KURA_ASK_REMOVE (an
 * OUT node keeps its entry otherwise). Returns 1 and bumps the
 * epoch by one when anything changed (a state, an address or a domain), 0
 * when nothing did, -errno (-ENOSPC past KURA_MAP_MAX_NODES, -ENOMEM,
 * -EINVAL for a live node whose name, address or domain is not valid as
 * kura_map_from_json() checks them, or a name listed twice); on error the
 * map is unchanged. */
int kura_map_update(struct kura_map *m, const struct kura_live_node *live, size_t nlive,
		    uint64_t now_ms);

/* A RECOVERING node has every write it missed: it becomes UP (epoch + 1).
 * (kura_map_update() does this from the node's synced_ms.)
 * 1 when it changed, 0 when the node is not RECOVERING, -ENOENT unknown. */
int kura_map_mark_up(struct kura_map *m, const char *name, uint64_t now_ms);

/* Counts of groups by health: every replica UP and none filling (clean),
 * some replica not UP, filling or missing (degraded), no replica UP and
 * holding the group (down; a group with no replica at all is down).
 * Places every group, hashing each name once. */
struct kura_map_health {
	unsigned clean, degraded, down;
};
void kura_map_health(const struct kura_map *m, struct kura_map_health *out);

/* What changed from prev to next, in words for the log: "n2 up -> down,
 * n4 new (recovering), fills 3 -> 0, vdisk service revision 812"; a node's
 * address or fault domain is named when it changed; "no node's state" when
 * none of these did. Always NUL-terminated; cut with "..." when len is too
 * short. */
void kura_map_describe_change(const struct kura_map *prev, const struct kura_map *next,
			      char *buf, size_t len);

#endif
