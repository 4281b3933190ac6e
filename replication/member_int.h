/* Inside replication/member: shared by member.c (lifecycle and the agent
 * thread) and member_ctl.c (control requests). */
#ifndef KURA_REPLICATION_MEMBER_INT_H
#define KURA_REPLICATION_MEMBER_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "metadata/etcd.h"
#include "replication/member.h"
#include "replication/regtab.h"

#define KEY_CLUSTER KURA_KEY_PREFIX "cluster"
#define KEY_MAP KURA_KEY_PREFIX "map"
#define KEY_LEADER KURA_KEY_PREFIX "leader"
#define KEY_NODES KURA_KEY_PREFIX "nodes/"
#define KEY_SERVICE KURA_KEY_PREFIX "vdisk-service"

/* The cluster's fixed settings (KEY_CLUSTER). */
struct mcluster {
	char id[37];
	unsigned replicas, pgs;
	uint64_t out_after_ms, created_ms;
};

/* What the agent last read of the cluster besides the map, handed to the
 * loop so that status never waits for etcd. */
struct mview {
	struct kura_op op;
	struct kura_member *m;
	struct mreg *regs; /* every registration */
	size_t nregs;
	char leader[KURA_MAP_NAME_MAX];
	uint64_t read_ms;  /* wall ms it was read */
};

enum mreq_kind { MREQ_INIT, MREQ_ASK };

/* The leader acts on a node's report that another is unreachable only
 * once it has stood this long: when each reports the other, both reports
 * are in by then and the rule between them applies (map.h). */
#define KURA_MEMBER_REPORT_AGE_MS 750
struct ureport {
	char from[KURA_MAP_NAME_MAX], to[KURA_MAP_NAME_MAX];
	uint64_t first_ms;
	int seen;
};

/* Watches (member_watch.c): a thread per key the agent follows, each on
 * its own etcd connection, poking the agent when the key changes. */
#define MEMBER_WATCHES 3
/* While every watch is live the agent reads the keys it watches when
 * poked, and this often besides. */
#define KURA_MEMBER_POLL_MS 2000
struct mwatch {
	struct kura_member *m;
	const char *key;
	struct kura_etcd *e;
	pthread_t thread;
	int started;
	atomic_int halt; /* end the watch: stopping, or member_watch_restart */
	atomic_int_least64_t seen_rev; /* the revision it last reported (or listed) */
	atomic_int *live;    /* counts it while set up: m->watch_live or m->regw_live */
	struct regtab *tab;  /* the registrations' watch: what it feeds; it runs
			      * only while the node leads (m->leading) */
};
#define MEMBER_WATCH_MAP 0 /* watches[] index of the map's */

/* A control request handed to the agent and answered back on the loop. */
struct mreq {
	struct kura_op op; /* posted back to the loop when answered */
	struct kura_member *m;
	enum mreq_kind kind;
	struct mreq *next;
	/* MREQ_INIT */
	unsigned replicas, pgs;
	uint64_t out_after_ms;
	/* MREQ_ASK (member_ask.c) */
	struct kura_map_ask ask;
	uint64_t deadline_ms; /* mono ms the agent stops waiting for the leader */
	/* answer */
	int err;
	char msg[256];
	char cluster_id[37];
	const char *state; /* MREQ_ASK: the node's state in the map that shows it
			    * done ("out", or "removed") */
	uint64_t epoch;    /* ... that map's epoch */
	/* where the answer goes */
	struct kura_jw *out;
	kura_vd_ctl_cb cb;
	void *arg;
};

struct kura_member {
	struct kura_loop *loop;
	char name[KURA_MAP_NAME_MAX], addr[KURA_MAP_ADDR_MAX], domain[KURA_MAP_NAME_MAX];
	char *endpoints, *data_dir;
	uint64_t out_after_ms;
	void (*usage)(void *arg, uint64_t *capacity, uint64_t *used);
	void (*on_map)(void *arg, const struct kura_map *map);
	void (*status)(void *arg, struct kura_jw *w);
	void (*on_service)(void *arg, int held, int64_t rev);
	void *arg;

	/* loop thread */
	struct kura_map map;
	int have_map;
	struct kura_timer usage_timer;
	int usage_armed;
	struct mview *view; /* the newest, or NULL */
	char svc_holder[KURA_MAP_NAME_MAX]; /* the vdisk service's node, as last heard */
	int svc_held_loop;                  /* on_service last said held */
	int64_t svc_rev_loop;               /* ... at this revision */
	struct kura_timer svc_watch;        /* the lease's freshness, while held */
	int svc_watch_armed;

	/* shared: the agent writes, the loop reads */
	atomic_uint_least64_t renewed_ms; /* monotonic ms the last good renewal was sent */
	atomic_uint_least64_t capacity, used;
	atomic_uint_least64_t posted, delivered; /* messages to the loop */
	atomic_int stop;
	atomic_int map_stale; /* the lease was lost: no acks until the map is read again */
	atomic_int svc_dropped; /* the loop stopped serving the vdisks (member_svc.c) */
	atomic_int leaving;     /* kura_member_leave: leave_why is set */
	char leave_why[256];
	atomic_uint_least64_t synced_ms, synced_epoch; /* kura_member_set_synced */
	atomic_uint_least64_t filled_epoch; /* kura_member_set_filled */
	atomic_uint_least64_t etcd_failing_ms; /* wall ms etcd stopped answering; 0: it answers */
	atomic_uint_least64_t view_wanted_ms;  /* mono ms status last asked for a fresh view */
	pthread_mutex_t mu; /* guards reqs and unreach */
	unsigned nunreach;
	char unreach[KURA_MAP_UNREACH_MAX][KURA_MAP_NAME_MAX];
	atomic_uint_least64_t unreach_gen; /* +1 per change */
	uint64_t reg_unreach_gen;          /* agent: the one etcd holds */
	/* asks of `vdisk cluster out|remove` run here (member_ask.c), in the
	 * registration until the map shows them done; guarded by mu */
	unsigned nasks;
	struct kura_map_ask asks[KURA_MAP_ASKS_MAX];
	atomic_uint_least64_t asks_gen; /* +1 per change */
	uint64_t reg_asks_gen;          /* agent: the one etcd holds */
	struct mreq *asking;            /* agent: their requests, waiting */
	struct ureport *ureps;             /* leader (agent): reports by age */
	size_t nureps;
	pthread_cond_t cv;
	struct mreq *reqs;
	atomic_uint_least64_t poke_gen; /* +1 per change a watch saw (member_poke) */
	atomic_int watch_live;          /* watches set up and not ended */
	struct mwatch watches[MEMBER_WATCHES];
	/* The leader's registrations (regtab.h), kept by a watch of KEY_NODES
	 * that runs while this node leads, so that the leader lists them only
	 * every KURA_MEMBER_POLL_MS (to catch a silent stream) instead of at
	 * every tick. */
	struct regtab regtab;
	struct mwatch regw;
	atomic_int regw_live; /* 1 while regw is set up and regtab valid */
	atomic_int leading;   /* the agent's `leader`, for regw's thread */

	/* agent thread */
	pthread_t thread;
	int thread_started;
	struct kura_etcd *etcd;
	struct mcluster cluster;
	int have_cluster;
	int64_t lease;
	int registered, leader, waiting_logged;
	int old_map_logged; /* map_is_mine said so once */
	uint64_t seen_poke;    /* poke_gen when the keys were last read */
	uint64_t next_poll_ms; /* read them then even if not poked */
	int must_read;         /* read them at the next tick (registered anew) */
	int64_t suspect_rev;   /* a timed read found the map here, unreported */
	uint64_t suspect_ms;   /* ... at this time */
	uint64_t next_reglist_ms; /* leader: list the registrations then */
	int64_t reg_suspect_rev;  /* ... a listing found this unreported by regw */
	uint64_t reg_suspect_ms;  /* ... at this time */

	int64_t leader_rev;
	char leader_name[KURA_MAP_NAME_MAX];
	uint64_t next_view_ms;
	size_t view_n; /* registrations in the last view posted */
	char view_leader[KURA_MAP_NAME_MAX]; /* the leader named in it */
	uint64_t next_renew_ms, next_reg_put_ms, started_ms;
	uint64_t reg_synced_ms, reg_synced_epoch; /* in the registration etcd holds */
	uint64_t reg_filled_epoch; /* ... and filled_epoch */
	int svc_held;         /* the vdisk service (member_svc.c) */
	int64_t svc_rev;
	int64_t svc_key_rev;  /* the key's mod revision, whoever holds it (0: absent) */
	int64_t svc_dropped_rev; /* the revision this node last stopped serving at */
	char svc_name[KURA_MAP_NAME_MAX];
	struct kura_map amap; /* the newest map the agent has seen */
	int64_t amap_rev;
	int have_amap;
	char cluster_file[4096];
};

/* member_svc.c: take or follow the vdisk service key; forget it when the
 * lease is lost. Agent thread. read: the key may have changed (a watch
 * said so, or a read is due).
 * -1: etcd did not answer (read again at the next tick). */
int member_service_tick(struct kura_member *m, int read);
void member_service_lost(struct kura_member *m);
/* Loop thread, stopping: the service's watch timer ends. */
void member_service_stop(struct kura_member *m);

/* member_watch.c: start the watches (after the agent); stop them (after
 * m->stop is set). member_poke: a watched key changed (any thread). */
void member_watch_start(struct kura_member *m);
void member_watch_stop(struct kura_member *m);
/* Agent: a timed read found a change watch i did not report, even a tick
 * later (its stream may be on an etcd member cut off): set it up again. */
void member_watch_restart(struct kura_member *m, unsigned i);
void member_poke(struct kura_member *m);

uint64_t member_wall_ms(void);
uint64_t member_mono_ms(void);
int member_parse_cluster(const char *text, size_t len, struct mcluster *out);
int member_parse_reg(const char *key, const char *text, size_t len, struct mreg *out);
/* Agent thread: answers one control request (posted back after), or keeps
 * it to answer later (returns 1: an ask waiting for the map). */
int member_agent_request(struct kura_member *m, struct mreq *r);

/* member_ask.c: `vdisk cluster out|remove NODE`. The node that runs it puts
 * the ask in its registration; the map leader carries it out
 * (kura_map_update); the request is answered once this node's map shows it
 * done, or when the node named registers again, or after
 * KURA_MEMBER_ASK_WAIT_MS. */
#define KURA_MEMBER_ASK_WAIT_MS 15000
/* Loop thread: checks op (cluster_out {node, force} or cluster_remove
 * {node}) against the node's map; 0 with r set up for the agent, 1 when
 * the map shows it done already (r's answer set), or -errno with msg. */
int member_ask_parse(struct kura_member *m, const struct kura_json *req, int remove,
		     struct mreq *r, char *msg, size_t len);
/* Agent: adds r's ask to the registration and keeps r in m->asking; 0, or
 * -EBUSY (r->msg set) when KURA_MAP_ASKS_MAX are in progress. */
int member_ask_start(struct kura_member *m, struct mreq *r);
/* Agent: answers (posts back) every waiting ask the map shows done or
 * failed, or that waited too long; every one when cancel is set. */
void member_asks_check(struct kura_member *m, int cancel);
/* A registration's "asks" array: written (under mu) and read back. */
void member_asks_json(struct kura_member *m, struct kura_jw *w);
void member_asks_parse(const struct kura_json *j, struct kura_live_node *n);
/* Posts a control request's answer back to the loop. */
void member_post_answer(struct kura_member *m, struct mreq *r);
/* Agent thread: the registrations under KEY_NODES; malloc'd array. With
 * feed, the listing goes into that table (regtab_list, which sets *missed)
 * and the answer is the table's copy. */
int member_list_regs(struct kura_member *m, struct regtab *feed, int64_t *missed,
		     struct mreg **regs, size_t *n);
/* Agent thread: hands regs (taken) and the leader's name to the loop. */
void member_post_view(struct kura_member *m, struct mreg *regs, size_t n);
/* Loop thread: the status answer from the newest map and view. */
void member_status_json(struct kura_member *m, struct kura_jw *w);

#endif
