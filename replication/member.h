/* A node's membership in a cluster: its etcd lease and registration, its
 * copy of the cluster map, and, on one node at a time, the map leader.
 *
 * etcd keys (all under KURA_KEY_PREFIX):
 *   cluster      {"id","replicas","pgs","out_after_ms","created_ms"}: written
 *                once, by `vdisk cluster init` (kura_member_ctl, cluster_init)
 *   nodes/NAME   {"name","addr","domain","capacity","used","started_ms",
 *                "synced_ms","synced_epoch","filled_epoch","unreachable",
 *                "asks"}:
 *                the node's registration, held by its lease, so it vanishes
 *                when the node stops renewing it
 *   map          the cluster map (replication/map.h), written only by the
 *                leader, with a compare on the map's and its own leader key's
 *                revisions
 *   leader       the leader's node name, held by its lease
 *   vdisk-service the name of the node serving the cluster's vdisks, held
 *                by its lease (with on_service set, a node UP in the map
 *                takes it when it is free)
 *
 * Who does what: every node renews its lease every lease_ttl/3 and watches
 * the map, leader and vdisk-service keys (one etcd watch stream each, on
 * their own threads: member_watch.c), reading a key when its watch says it
 * changed and every 2 s besides (every tick, KURA_MEMBER_TICK_MS, while a
 * watch is down): single-key reads, whatever the cluster's size. The
 * leader also lists nodes/ every tick
 * and writes the next map when kura_map_update() says it changed (a node
 * joined, its lease lapsed, it stayed away out_after). When the leader key
 * is absent, any node takes it with a create-if-absent transaction.
 *
 * Fencing: a node may acknowledge a replicated write only while
 * kura_member_may_ack() is true: its last successful lease renewal was sent
 * less than lease_ttl - KURA_MEMBER_FENCE_MARGIN_MS ago (so etcd cannot have
 * expired its lease and given its groups to others yet) and it is UP in the
 * newest map it holds.
 *
 * The node's store remembers the cluster it joined (DIR/cluster-id); a store
 * that belongs to another cluster is refused at start.
 *
 * Threads: kura_member_start(), kura_member_stop() and every other call run on
 * the owner loop's thread. Everything that talks to etcd runs on the
 * member's agent thread (and the three watch threads, which only wake it),
 * which hands maps and answers back to the loop with kura_loop_post();
 * on_map runs on the loop thread.
 *
 * Errors: 0 or -errno with a one-line reason in errbuf: -EHOSTUNREACH etcd
 * does not answer at start; -EEXIST another live process holds this node
 * name; -EXDEV the store belongs to another cluster; -EINVAL bad options.
 */
#ifndef KURA_REPLICATION_MEMBER_H
#define KURA_REPLICATION_MEMBER_H

#include <stdint.h>

#include "common/json.h"
#include "common/loop.h"
#include "replication/map.h"
#include "vdisk/vdisk.h"

#define KURA_KEY_PREFIX "/kura/"
#define KURA_MEMBER_TICK_MS 250
#define KURA_MEMBER_LEASE_TTL_S 2
#define KURA_MEMBER_RENEW_MS 500
#define KURA_MEMBER_FENCE_MARGIN_MS 700
/* Each etcd request of the member's agent waits this long for one etcd
 * member before trying the next. The agent's requests run one after another
 * (renewal, map, leader), so a member cut off mid-request delays the next
 * renewal by up to two of these: 2 x 500 ms plus a tick stays inside the
 * fence (TTL - margin), where a longer wait would let the lease lapse.
 * (Working out a new map's placement table runs on the agent too: 220 ms
 * at 65,536 groups and 1,000 nodes, when a node joined or went out; see
 * docs/cluster-scale.md.) */
#define KURA_MEMBER_ETCD_TIMEOUT_MS 500
#define KURA_MEMBER_OUT_AFTER_MS (10 * 60 * 1000ull)
#define KURA_MEMBER_FORMING_MS 60000ull /* after init, new nodes join UP */

struct kura_member_opts {
	struct kura_loop *loop;
	const char *endpoints;   /* etcd: http://HOST:PORT[,...] */
	const char *name;        /* this node's name */
	const char *addr;        /* its node-to-node listener, HOST:PORT */
	const char *domain;      /* fault domain; NULL: the node's name */
	const char *data_dir;    /* the store's dir (for cluster-id) */
	uint64_t out_after_ms;   /* for cluster_init from this node; 0: the default */
	/* capacity and used bytes of the node's store, for its registration */
	void (*usage)(void *arg, uint64_t *capacity, uint64_t *used);
	/* a newer map: runs on the loop thread; map stays valid until the next call */
	void (*on_map)(void *arg, const struct kura_map *map);
	/* adds this node's replication figures to `vdisk cluster status` (an
	 * object's members, on the loop thread); may be NULL */
	void (*status)(void *arg, struct kura_jw *w);
	/* this node got (held 1; rev: the key's mod revision, which fences the
	 * catalog's commits) or lost (held 0) the vdisk service; loop thread;
	 * NULL: the node never takes it */
	void (*on_service)(void *arg, int held, int64_t rev);
	void *arg;
};

struct kura_member;

/* Checks that etcd answers and that this store may join the cluster there,
 * then starts the agent thread (which registers the node once the cluster
 * is initialized, and waits for that otherwise). Blocks for at most a few
 * seconds (etcd's timeout). */
int kura_member_start(const struct kura_member_opts *o, struct kura_member **out, char *errbuf,
		      size_t errlen);
/* Revokes the lease (the node leaves at once rather than after its TTL),
 * joins the agent. */
void kura_member_stop(struct kura_member *m);

/* The newest map this node holds (NULL before the cluster is initialized). */
const struct kura_map *kura_member_map(const struct kura_member *m);
/* See "Fencing" above. */
int kura_member_may_ack(const struct kura_member *m);
/* The node can no longer hold data (its store stopped: a disk failed): it
 * acknowledges nothing from now on, revokes its lease (the leader marks it
 * down at once, writes go on without it, and after out_after its groups
 * are rebuilt on other nodes) and never registers again in this process's
 * life. why goes to the log. */
void kura_member_leave(struct kura_member *m, const char *why);

/* This RECOVERING node has every write it missed (replication/rep.h,
 * "Resync") in the map of this epoch: since_ms is its state's since_ms
 * there; both go into the registration (synced_ms, synced_epoch), and the
 * leader marks the node UP (kura_map_update) if its map is still that
 * one. since_ms 0 withdraws it. */
void kura_member_set_synced(struct kura_member *m, uint64_t since_ms, uint64_t epoch);
/* This node has filled every group it was filling in the map of this
 * epoch (map.h, fills): it goes into the registration (filled_epoch) and
 * the leader ends those fills. */
void kura_member_set_filled(struct kura_member *m, uint64_t epoch);
/* Nodes this node holds copies for that have answered none for a while
 * (at most KURA_MAP_UNREACH_MAX; n 0 clears): they go into the
 * registration (unreachable), and the leader sets them back (map.h). */
void kura_member_set_unreachable(struct kura_member *m, const char (*names)[KURA_MAP_NAME_MAX],
				 unsigned n);

/* The node serving the cluster's vdisks as last read ("" none known). */
const char *kura_member_service_holder(const struct kura_member *m);
/* Control requests whose op starts with "cluster_" (docs/control.md):
 * cluster_init {replicas, pgs, out_after_ms}, cluster_status, cluster_out
 * {node, force} and cluster_remove {node} (member_ask.c, answered once the
 * map shows them done). */
void kura_member_ctl(struct kura_member *m, const struct kura_json *req, struct kura_jw *out,
		     kura_vd_ctl_cb cb, void *arg);

#endif
