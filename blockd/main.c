/* blockd: the kura node daemon. It serves vdisks (control socket, JSON) and
 * its local store (store socket, binary); frontends (iSCSI, vhost-user-blk,
 * FUSE) and the cluster join it. */
#include "blockd/control.h"
#include "blockd/server.h"
#include "blockd/store.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "iscsi-target/target.h"
#include "replication/svclink.h"
#include "replication/vdblk.h"
#include "replication/member.h"
#include "replication/rep.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define MAX_DISKS 64

static const char usage[] =
	"usage: blockd --data DIR [--disk PATH[,size=SIZE]]... [options]\n"
	"\n"
	"Runs one kura node: pools the disks into one store kept in DIR and serves it.\n"
	"\n"
	"  --data DIR            data dir: metadata, lock, socket (created if missing)\n"
	"  --disk PATH[,size=S]  a disk of the pool: a block device, or a file created\n"
	"                        at size S (like 10G) if missing; repeat for more disks.\n"
	"                        Without --disk a new store gets DIR/disk0.img of 8G;\n"
	"                        a store remembers its disks, so later starts need none.\n"
	"  --socket PATH         control socket, where the vdisk command connects\n"
	"                        (default DIR/blockd.sock)\n"
	"  --store-socket PATH   raw store protocol socket (default DIR/store.sock)\n"
	"  --iscsi ADDR:PORT     serve every vdisk over iSCSI on this portal\n"
	"                        (default " KURA_ISCSI_DEFAULT_PORTAL "; \"off\" serves none);\n"
	"                        in a cluster, a node not serving the vdisks forwards\n"
	"                        its sessions to the one that does\n"
	"  --journal-size SIZE   journal on the first disk, for a new store\n"
	"                        (default 1/16 of the disk, 16M to 256M)\n"
	"  --crc-cache SIZE      memory for checksum pages (default 64M)\n"
	"  --scheduler MODE      qos (default): guest I/O first, background work\n"
	"                        adapts to guest latency, per-vdisk limits apply;\n"
	"                        fifo: every I/O goes at once (no limits), to compare\n"
	"  --scrub-every TIME    scrub each vdisk (read every block it holds against\n"
	"                        its checksum) once its last scrub is TIME old, like\n"
	"                        30d; one at a time, as scrub-class I/O (default:\n"
	"                        none; `vdisk scrub` runs one at any time)\n"
	"  --cluster URLS        join the cluster coordinated by etcd at URLS\n"
	"                        (http://HOST:PORT[,...]); without it the node is\n"
	"                        a cluster of its own. A new cluster is created\n"
	"                        once with `vdisk cluster init` (docs/cluster.md)\n"
	"  --node NAME           this node's name in the cluster (default: hostname)\n"
	"  --listen ADDR:PORT    node-to-node address the other nodes reach it on\n"
	"                        (with --cluster; required)\n"
	"  --fault-domain NAME   rack or failure domain: no two replicas of a block\n"
	"                        share one (default: the node's name)\n"
	"  --drop-failed-disks   start without the disks recorded as failed, losing\n"
	"                        the data on them (a cluster node does this by\n"
	"                        itself: resync copies that data back from the\n"
	"                        other nodes)\n"
	"  --log-level LEVEL     error, warn, info (default) or debug\n"
	"  -h, --help            this text\n"
	"  --version             print the version\n"
	"\n"
	"Stop it with Ctrl-C or SIGTERM: it finishes in-flight I/O and checkpoints.\n";

struct args {
	const char *data;
	const char *socket, *store_socket;
	const char *iscsi; /* NULL: the default portal */
	struct kura_blk_disk_spec disks[MAX_DISKS];
	char disk_paths[MAX_DISKS][PATH_MAX];
	unsigned ndisks;
	uint64_t journal_size, crc_cache;
	int sched_fifo;
	uint64_t scrub_every_ms;
	int drop_failed;
	const char *cluster, *node, *listen, *domain;
	char hostname[KURA_MAP_NAME_MAX];
};

static int fail(const char *fmt, const char *a)
{
	fprintf(stderr, "blockd: ");
	fprintf(stderr, fmt, a);
	fprintf(stderr, "\n");
	return 2;
}

static int parse_disk(struct args *a, const char *arg)
{
	const char *comma = strchr(arg, ',');
	size_t len = comma ? (size_t)(comma - arg) : strlen(arg);
	struct kura_blk_disk_spec *d;

	if (a->ndisks == MAX_DISKS)
		return fail("at most %s disks", "64");
	if (!len || len >= PATH_MAX)
		return fail("--disk %s: give a path", arg);
	d = &a->disks[a->ndisks];
	memcpy(a->disk_paths[a->ndisks], arg, len);
	a->disk_paths[a->ndisks][len] = '\0';
	d->path = a->disk_paths[a->ndisks];
	if (comma) {
		if (strncmp(comma + 1, "size=", 5) || kura_parse_size(comma + 6, &d->size) ||
		    !d->size)
			return fail("--disk %s: expected PATH or PATH,size=SIZE (like 10G)", arg);
	}
	a->ndisks++;
	return 0;
}

static int parse(int argc, char **argv, struct args *a)
{
	static const struct option opts[] = {
		{ "data", required_argument, NULL, 'd' },
		{ "disk", required_argument, NULL, 'k' },
		{ "socket", required_argument, NULL, 's' },
		{ "store-socket", required_argument, NULL, 'S' },
		{ "iscsi", required_argument, NULL, 'i' },
		{ "journal-size", required_argument, NULL, 'j' },
		{ "crc-cache", required_argument, NULL, 'c' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "scheduler", required_argument, NULL, 'Q' },
		{ "scrub-every", required_argument, NULL, 'R' },
		{ "cluster", required_argument, NULL, 'C' },
		{ "node", required_argument, NULL, 'N' },
		{ "listen", required_argument, NULL, 'L' },
		{ "fault-domain", required_argument, NULL, 'F' },
		{ "drop-failed-disks", no_argument, NULL, 'X' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	int c, err;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': a->data = optarg; break;
		case 'C': a->cluster = optarg; break;
		case 'N': a->node = optarg; break;
		case 'L': a->listen = optarg; break;
		case 'F': a->domain = optarg; break;
		case 'X': a->drop_failed = 1; break;
		case 's': a->socket = optarg; break;
		case 'S': a->store_socket = optarg; break;
		case 'i':
			a->iscsi = optarg;
			if (strcmp(optarg, "off") && !kura_iscsi_portal_ok(optarg))
				return fail("bad iSCSI portal '%s': use ADDR:PORT, e.g. "
					    KURA_ISCSI_DEFAULT_PORTAL ", or off", optarg);
			break;
		case 'k':
			if ((err = parse_disk(a, optarg)))
				return err;
			break;
		case 'j':
			if (kura_parse_size(optarg, &a->journal_size))
				return fail("--journal-size %s: expected a size like 64M", optarg);
			break;
		case 'c':
			if (kura_parse_size(optarg, &a->crc_cache))
				return fail("--crc-cache %s: expected a size like 64M", optarg);
			break;
		case 'Q':
			if (strcmp(optarg, "qos") && strcmp(optarg, "fifo"))
				return fail("--scheduler %s: expected qos or fifo", optarg);
			a->sched_fifo = !strcmp(optarg, "fifo");
			break;
		case 'R':
			if (kura_parse_duration(optarg, &a->scrub_every_ms))
				return fail("--scrub-every %s: expected a time like 30d, 12h or 30s "
					    "(at most 366d)", optarg);
			break;
		case 'l':
			if (!strcmp(optarg, "error")) kura_log_set_level(KURA_LOG_ERR);
			else if (!strcmp(optarg, "warn")) kura_log_set_level(KURA_LOG_WARN);
			else if (!strcmp(optarg, "info")) kura_log_set_level(KURA_LOG_INFO);
			else if (!strcmp(optarg, "debug")) kura_log_set_level(KURA_LOG_DEBUG);
			else return fail("--log-level %s: use error, warn, info or debug", optarg);
			break;
		case 'h':
			fputs(usage, stdout);
			exit(0);
		case 'V':
			puts("blockd (kura) format 1");
			exit(0);
		case ':':
			return fail("%s needs a value; see blockd --help", argv[optind - 1]);
		default:
			return fail("unknown option %s; see blockd --help", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return fail("unexpected argument %s; see blockd --help", argv[optind]);
	if (!a->data)
		return fail("%s", "--data DIR is required; see blockd --help");
	if (!a->cluster && (a->node || a->listen || a->domain))
		return fail("%s", "--node, --listen and --fault-domain need --cluster URLS");
	if (a->cluster && !a->listen)
		return fail("%s", "--cluster needs --listen ADDR:PORT (where other nodes reach this one)");
	if (a->cluster && !a->node) {
		if (gethostname(a->hostname, sizeof(a->hostname) - 1))
			return fail("%s", "cannot read the hostname: give --node NAME");
		a->node = a->hostname;
	}
	return 0;
}

struct sigwatch {
	struct kura_op op;
	int fd;
	struct signalfd_siginfo si;
	struct kura_loop *loop;
	int signo;
};

static void sig_arm(struct sigwatch *w);

static void sig_done(struct kura_op *op, int res)
{
	struct sigwatch *w = KURA_CONTAINER_OF(op, struct sigwatch, op);

	if (res == (int)sizeof(w->si)) {
		w->signo = (int)w->si.ssi_signo;
		kura_loop_stop(w->loop);
		return;
	}
	sig_arm(w);
}

static void sig_arm(struct sigwatch *w)
{
	struct io_uring_sqe *sqe = kura_loop_sqe(w->loop, &w->op);
	io_uring_prep_read(sqe, w->fd, &w->si, sizeof(w->si), 0);
}

/* Everything a running node owns, torn down in reverse order. */
struct node {
	struct kura_loop *loop;
	struct kura_blk_store *s;
	struct kura_cat *cat;
	struct kura_vd_engine *vd;
	struct kura_iscsi *iscsi;
	struct kura_server *srv;
	struct kura_ctl_server *ctl;
	struct kura_member *member;
	struct kura_server *peers; /* node-to-node listener (--listen) */
	struct kura_rep *rep;      /* reads and writes through the cluster */
	struct kura_vdblk *vdblk;  /* the vdisks' blocks, while this node serves them */
	struct kura_svclink *svclink; /* to the node serving the vdisks, for the iSCSI
				       * portal while this node does not */
	struct kura_iscsi_fwd fwd;
	uint64_t svc_gen;          /* +1 whenever the vdisk service is taken or lost */
	int64_t svc_rev;
	int svc_held;              /* the member's last word on the service */
	unsigned svc_stopping;     /* vdisks_stop is draining */
	int stopping;              /* node_stop: the vdisk service starts no more */
	struct kura_timer svc_retry; /* starts the service again after a failure */
	int svc_retry_armed;
	struct kura_timer store_watch; /* in a cluster: leaves it if the store stops */
	int store_watch_armed;
	int restart;               /* a data disk failed: start again without it */
	const struct args *args;
	const char *name;          /* --node */
	char ctl_path[PATH_MAX];
};

/* The frontends, the vdisk engine and its catalog, in that order. Each
 * stop turns the loop while it drains, so the node forgets each part
 * before stopping it (requests arriving meanwhile find none), and a
 * change of the vdisk service meanwhile waits (node_service). */
static void vdisks_stop(struct node *n)
{
	struct kura_iscsi *iscsi = n->iscsi;
	struct kura_vd_engine *vd = n->vd;
	struct kura_cat *cat = n->cat;
	struct kura_vdblk *vdblk = n->vdblk;

	n->iscsi = NULL;
	n->vd = NULL;
	n->cat = NULL;
	n->vdblk = NULL;
	n->svc_stopping++;
	/* I/O stuck on a primary that does not answer ends, so the frontends
	 * and the engine drain (it was never acknowledged); once the iSCSI
	 * connections are closed: initiators see the connection drop and log
	 * in again elsewhere, not I/O errors */
	kura_iscsi_drop_all(iscsi);
	kura_vdblk_abandon(vdblk);
	kura_svclink_reset(n->svclink); /* what a forwarding portal awaits fails */
	kura_iscsi_stop(iscsi);
	if (vd)
		kura_vd_engine_close(vd);
	if (cat)
		kura_cat_close(cat);
	kura_vdblk_destroy(vdblk);
	n->svc_stopping--;
}

static void node_stop(struct node *n)
{
	n->stopping = 1;
	kura_ctl_server_stop(n->ctl);
	n->svc_gen++; /* a vdisk service start in progress ends */
	n->svc_held = 0;
	if (n->svc_retry_armed)
		kura_loop_cancel_sync(n->loop, &n->svc_retry.op);
	n->svc_retry_armed = 0;
	if (n->store_watch_armed)
		kura_loop_cancel_sync(n->loop, &n->store_watch.op);
	n->store_watch_armed = 0;
	/* in a cluster, vdisk I/O waiting for a primary ends (-ESHUTDOWN) here,
	 * so the frontends can drain */
	kura_rep_shutdown(n->rep); /* maps arriving from now on are ignored */
	kura_svclink_reset(n->svclink);
	kura_iscsi_stop(n->iscsi);
	n->iscsi = NULL;
	kura_server_stop(n->peers);
	kura_server_stop(n->srv);
	vdisks_stop(n); /* while the member's map, which the rep reads, is there */
	kura_svclink_destroy(n->svclink);
	n->svclink = NULL;
	kura_member_stop(n->member);
	kura_rep_destroy(n->rep);
	n->rep = NULL;
	if (n->s)
		kura_blk_store_close(n->s);
	kura_loop_destroy(n->loop);
}

/* Control requests: iscsi_* to the iSCSI target, cluster_* to the cluster
 * membership, the rest to the vdisk engine. */
static void node_ctl(void *ctx, const struct kura_json *req, struct kura_jw *out,
		     kura_vd_ctl_cb cb, void *arg)
{
	struct node *n = ctx;
	const char *op = NULL;

	kura_json_get_str(req, "op", &op);
	if (op && !strncmp(op, "cluster_", 8)) {
		kura_member_ctl(n->member, req, out, cb, arg);
	} else if (!n->vd || !n->iscsi) {
		/* a cluster node that does not serve the vdisks (now) */
		const char *holder = kura_member_service_holder(n->member);
		char msg[256];

		if (*holder && strcmp(holder, n->name))
			snprintf(msg, sizeof(msg), "node %s serves the cluster's vdisks; run this "
				 "on %s", holder, holder);
		else
			snprintf(msg, sizeof(msg), "no node serves the cluster's vdisks yet (this "
				 "one is starting to, or none is up): try again in a few seconds");
		cb(arg, -EAGAIN, msg);
	} else if (op && !strncmp(op, "iscsi_", 6)) {
		kura_iscsi_ctl(n->iscsi, req, out, cb, arg);
	} else {
		kura_vd_ctl(n->vd, req, out, cb, arg);
	}
}

static int start_iscsi(struct node *n, const struct args *a, char *errbuf, size_t errlen)
{
	struct kura_iscsi_opts io = { 0 };
	int err;

	io.loop = n->loop;
	io.vd = n->vd;
	io.cat = n->cat;
	if (!n->vd)
		io.fwd = &n->fwd; /* a cluster node not serving the vdisks forwards */
	io.portal = a->iscsi ? a->iscsi : KURA_ISCSI_DEFAULT_PORTAL;
	if (!strcmp(io.portal, "off"))
		io.portal = NULL;
	err = kura_iscsi_start(&io, &n->iscsi, errbuf, errlen);
	if (err == -EADDRINUSE && !a->iscsi) {
		/* The default portal is taken (another target on this host): the
		 * node still serves everything else. */
		kura_log(WARN, "%s; iSCSI is off (choose a portal with --iscsi ADDR:PORT)", errbuf);
		errbuf[0] = '\0';
		io.portal = NULL;
		err = kura_iscsi_start(&io, &n->iscsi, errbuf, errlen);
	}
	return err;
}

static void node_usage(void *arg, uint64_t *capacity, uint64_t *used)
{
	struct node *n = arg;
	struct kura_blk_stats st;

	kura_blk_stats(n->s, &st);
	*capacity = st.capacity_extents * KURA_EXT_SIZE;
	*used = st.used_extents * KURA_EXT_SIZE;
}

/* A node link's HELLO: the peer must be of this node's cluster. */
static int node_hello(void *arg, const struct kura_proto_hello *in, struct kura_proto_hello *out,
		      char *why, size_t len)
{
	struct node *n = arg;
	const struct kura_map *map = kura_member_map(n->member);

	if (!map) {
		snprintf(why, len, "node %s: this node is in no initialized cluster yet", in->node);
		return -EAGAIN;
	}
	if (strncmp(in->cluster_id, map->cluster_id, 36)) {
		snprintf(why, len, "node %s belongs to cluster %.36s, this node to %s", in->node,
			 in->cluster_id, map->cluster_id);
		return -EXDEV;
	}
	kura_map_hello(map, n->name, out);
	return 0;
}

static void node_map(void *arg, const struct kura_map *map)
{
	struct node *n = arg;

	if (n->rep)
		kura_rep_map(n->rep, map);
}

/* The store socket and node links, in a cluster (blockd/server.h). */
static struct kura_rep *route_rep(void *arg)
{
	return ((struct node *)arg)->rep;
}

static int route_read(void *arg, const struct kura_proto_req *q, void *buf, kura_blk_cb cb,
		      void *cbarg)
{
	return kura_rep_read(route_rep(arg), q->layer, q->ext, q->blk, q->nblk, buf,
			     (enum kura_io_class)q->cls, cb, cbarg);
}

static int route_read_primary(void *arg, const struct kura_proto_req *q, void *buf,
			      kura_blk_cb cb, void *cbarg)
{
	return kura_rep_read_primary(route_rep(arg), q->layer, q->ext, q->blk, q->nblk, buf,
				     (enum kura_io_class)q->cls, cb, cbarg);
}

static int route_write(void *arg, const struct kura_proto_req *q, const void *data,
		       kura_blk_cb cb, void *cbarg)
{
	return kura_rep_write(route_rep(arg), q->layer, q->ext, q->blk, q->nblk, data,
			      (enum kura_io_class)q->cls, 0, NULL, cb, cbarg);
}

static int route_write_primary(void *arg, const struct kura_proto_req *q, const void *data,
			       uint64_t *ver, kura_blk_cb cb, void *cbarg)
{
	return kura_rep_write_primary(route_rep(arg), q->layer, q->ext, q->blk, q->nblk, data,
				      (enum kura_io_class)q->cls, q->arg_layer, ver, cb, cbarg);
}

static int route_free(void *arg, const struct kura_proto_req *q, kura_blk_cb cb, void *cbarg)
{
	return kura_rep_free(route_rep(arg), q->layer, q->ext, (enum kura_io_class)q->cls, 0, cb, cbarg);
}

static int route_free_primary(void *arg, const struct kura_proto_req *q, kura_blk_cb cb,
			      void *cbarg)
{
	return kura_rep_free_primary(route_rep(arg), q->layer, q->ext, (enum kura_io_class)q->cls,
				     q->arg_layer, cb, cbarg);
}

static int route_sync(void *arg, const char *peer, const void *data, size_t len,
		      struct kura_proto_sync_result *out, kura_blk_cb cb, void *cbarg)
{
	return kura_rep_sync(route_rep(arg), peer, data, len, out, cb, cbarg);
}

static int route_glist(void *arg, const struct kura_proto_req *q,
		       void (*done)(void *cbarg, int err, uint8_t *data, size_t len), void *cbarg)
{
	return kura_rep_glist(route_rep(arg), q, done, cbarg);
}

static int route_peer_may_write(void *arg, const char *peer, const struct kura_proto_req *q)
{
	return kura_rep_peer_may_write(route_rep(arg), peer, q);
}

/* A forwarding portal's message (iscsi-target/target.h), served while this
 * node serves the vdisks. */
static int route_fwd(void *arg, unsigned conn, const char *peer, uint8_t *data, size_t len,
		     void (*done)(void *cbarg, int err, uint8_t *data, size_t len), void *cbarg)
{
	struct node *n = arg;

	if (!n->vd || !n->iscsi) {
		free(data);
		return -EREMOTE;
	}
	return kura_iscsi_fwd_serve(n->iscsi, conn, peer, data, len, done, cbarg);
}

static void route_conn_closed(void *arg, unsigned conn)
{
	struct node *n = arg;

	if (n->vd && n->iscsi)
		kura_iscsi_fwd_gone(n->iscsi, conn);
}

static int fwd_send(void *arg, const void *msg, size_t len, void *ans, size_t cap,
		    void (*cb)(void *cbarg, int err, size_t got), void *cbarg)
{
	return kura_svclink_send(arg, msg, len, ans, cap, cb, cbarg);
}

static void node_status(void *arg, struct kura_jw *w)
{
	struct node *n = arg;

	if (n->rep)
		kura_rep_status(n->rep, w);
	if (n->vdblk)
		kura_vdblk_status(n->vdblk, w);
}

/* ---- the cluster's vdisks, on the node holding the vdisk service ---- */

/* The engine and the frontends, on a catalog already open in n->cat. */
static int vdisks_serve(struct node *n, const struct kura_vd_blk_ops *blk, void *blk_arg,
			char *errbuf, size_t errlen)
{
	struct kura_vd_opts vo = { 0 };
	int err;

	vo.loop = n->loop;
	vo.store = n->s;
	vo.blk = blk;
	vo.blk_arg = blk_arg;
	vo.cat = n->cat;
	vo.sched_fifo = n->args->sched_fifo;
	vo.scrub_every_ms = n->args->scrub_every_ms;
	if ((err = kura_vd_engine_open(&vo, &n->vd, errbuf, errlen)))
		return err;
	return start_iscsi(n, n->args, errbuf, errlen);
}

static int vdisks_open(struct node *n, const struct kura_cat_ops *ops, void *be,
		       const struct kura_vd_blk_ops *blk, void *blk_arg, char *errbuf,
		       size_t errlen)
{
	int err;

	if ((err = kura_cat_open(n->loop, ops, be, &n->cat))) {
		ops->close(be);
		snprintf(errbuf, errlen, "cannot start the catalog: %s", kura_strerror(err));
		return err;
	}
	return vdisks_serve(n, blk, blk_arg, errbuf, errlen);
}

static void svc_retry_later(struct node *n, uint64_t ms);

struct svc_start {
	struct node *n;
	uint64_t gen;
};

static void svc_failed(struct node *n, const char *why)
{
	kura_log(ERR, "cluster: node %s cannot serve the vdisks: %s; trying again in 2 s", n->name,
		 why);
	vdisks_stop(n);
	svc_retry_later(n, 2000);
}

/* The catalog's records are read (on its worker thread: etcd never stalls
 * this loop): the engine and the frontends follow. */
static void svc_cat_read(void *arg, int err)
{
	struct svc_start *ss = arg;
	struct node *n = ss->n;
	char errbuf[512] = "";
	bool current = ss->gen == n->svc_gen;

	free(ss);
	if (!current)
		return; /* lost or stopping meanwhile */
	if (err)
		snprintf(errbuf, sizeof(errbuf), "cannot read the catalog from etcd: %s",
			 kura_strerror(err));
	else
		err = vdisks_serve(n, &kura_vdblk_ops, n->vdblk, errbuf, sizeof(errbuf));
	if (err) {
		svc_failed(n, errbuf);
		return;
	}
	kura_log(INFO, "cluster: node %s serves the cluster's vdisks; iSCSI %s", n->name,
		 kura_iscsi_portal(n->iscsi));
}

/* What the cluster holds of the vdisks is listed: the catalog is read next. */
static void svc_loaded(void *arg, int err)
{
	struct svc_start *ss = arg;
	struct node *n = ss->n;
	const struct kura_cat_ops *ops;
	char errbuf[512] = "";
	void *be;

	if (ss->gen != n->svc_gen) {
		free(ss);
		return; /* lost or stopping meanwhile */
	}
	if (!err)
		err = kura_cat_etcd_create(n->args->cluster, KURA_KEY_PREFIX "cat/",
					   KURA_KEY_PREFIX "vdisk-service", n->svc_rev, &ops, &be,
					   errbuf, sizeof(errbuf));
	else
		snprintf(errbuf, sizeof(errbuf), "cannot list the vdisks' extents: %s",
			 kura_strerror(err));
	if (!err && (err = kura_cat_open(n->loop, ops, be, &n->cat))) {
		ops->close(be);
		snprintf(errbuf, sizeof(errbuf), "cannot start the catalog: %s",
			 kura_strerror(err));
	}
	if (!err && (err = kura_cat_prefetch(n->cat, svc_cat_read, ss)))
		snprintf(errbuf, sizeof(errbuf), "out of memory");
	if (err) {
		free(ss);
		svc_failed(n, errbuf);
	}
}

static void svc_apply(struct node *n);

/* Not serving the vdisks (now): the node's portal forwards to the one that
 * does. */
static void forward_again(struct node *n)
{
	char errbuf[512] = "";

	if (n->iscsi || n->stopping || !n->svclink)
		return;
	kura_svclink_resume(n->svclink);
	if (start_iscsi(n, n->args, errbuf, sizeof(errbuf)))
		kura_log(ERR, "cluster: node %s cannot open its iSCSI portal: %s; it stays closed "
			 "until the vdisk service moves again", n->name, errbuf);
}

static void svc_retry_fired(struct kura_op *op, int res)
{
	struct node *n = KURA_CONTAINER_OF(op, struct node, svc_retry.op);

	n->svc_retry_armed = 0;
	if (res != -ECANCELED)
		svc_apply(n);
}

static void svc_retry_later(struct node *n, uint64_t ms)
{
	if (n->svc_retry_armed || n->stopping)
		return;
	n->svc_retry_armed = 1;
	n->svc_retry.op.fn = svc_retry_fired;
	kura_loop_timer(n->loop, &n->svc_retry, ms * 1000000ull);
}

static void node_service(void *arg, int held, int64_t rev)
{
	struct node *n = arg;

	if (n->stopping)
		return; /* heard while the node stops */
	n->svc_held = held;
	n->svc_rev = rev;
	svc_apply(n);
}

/* Makes the vdisks served or not as the member last said. */
static void svc_apply(struct node *n)
{
	const struct kura_map *map;
	struct svc_start *ss;
	int err;

	if (n->svc_stopping) {
		svc_retry_later(n, 100); /* once the stop in progress is over */
		return;
	}
	n->svc_gen++;
	vdisks_stop(n);
	if (!n->svc_held || n->svc_stopping) {
		forward_again(n);
		return;
	}
	map = kura_member_map(n->member);
	if (!map || map->svc_rev < (uint64_t)n->svc_rev) {
		/* the leader has not yet named this node in the map: until
		 * every node refuses the previous one's writes, wait */
		svc_retry_later(n, 100);
		return;
	}
	if (!(ss = calloc(1, sizeof(*ss))) ||
	    kura_vdblk_create(n->rep, n->s, (uint64_t)n->svc_rev, &n->vdblk)) {
		free(ss);
		kura_log(ERR, "cluster: out of memory starting the vdisk service");
		return;
	}
	ss->n = n;
	ss->gen = n->svc_gen;
	if ((err = kura_vdblk_load(n->vdblk, KURA_VD_ID_BASE, svc_loaded, ss))) {
		free(ss);
		kura_log(ERR, "cluster: cannot list the vdisks' extents: %s", kura_strerror(err));
		svc_retry_later(n, 2000);
	}
}

/* A node whose store stopped (a disk failed) holds nothing safely: it
 * leaves the cluster at once. When the disk that failed is a data disk (not
 * the journal's), the node then restarts in this process: its store opens
 * without that disk, forgetting the extents it held, and the node joins
 * again as a restarted one, so resync copies back exactly what it lost (and
 * what changed meanwhile). When it is the journal's disk, the node stays out:
 * its data is rebuilt on other nodes after out_after. Checked every 100 ms. */
static void store_watch(struct kura_op *op, int res)
{
	struct node *n = KURA_CONTAINER_OF(op, struct node, store_watch.op);
	struct kura_blk_disk_info di;
	int d;

	n->store_watch_armed = 0;
	if (res == -ECANCELED)
		return;
	if (!kura_blk_store_dead(n->s)) {
		n->store_watch_armed = 1;
		kura_loop_timer(n->loop, &n->store_watch, 100000000ull);
		return;
	}
	d = kura_blk_failed_disk(n->s);
	if (d > 0 && !kura_blk_disk_info(n->s, (unsigned)d, &di)) {
		kura_member_leave(n->member, "its data disk failed (see above); it restarts "
			 "without that disk and resync copies back what it held");
		kura_log(WARN, "blockd: disk %s failed: restarting the node without it", di.path);
		n->restart = 1;
		kura_loop_stop(n->loop);
		return;
	}
	kura_member_leave(n->member, "its store stopped (its journal's disk failed: see "
		 "above); its data is rebuilt on other nodes after out-after; replace the "
		 "disk and restart blockd");
}

static int start_member(struct node *n, const struct args *a, char *errbuf, size_t errlen)
{
	struct kura_member_opts mo = { 0 };
	struct kura_server_peer peer = { node_hello, n };
	struct kura_rep_opts ro = { 0 };
	struct kura_server_route route = { .read = route_read,
					   .read_primary = route_read_primary,
					   .write = route_write,
					   .write_primary = route_write_primary,
					   .sync = route_sync,
					   .free = route_free,
					   .free_primary = route_free_primary,
					   .glist = route_glist,
					   .peer_may_write = route_peer_may_write,
					   .fwd = route_fwd,
					   .conn_closed = route_conn_closed };
	int err;

	mo.loop = n->loop;
	mo.endpoints = a->cluster;
	mo.name = a->node;
	mo.addr = a->listen;
	mo.domain = a->domain;
	mo.data_dir = a->data;
	mo.usage = node_usage;
	mo.on_map = node_map;
	mo.status = node_status;
	mo.on_service = node_service;
	mo.arg = n;
	n->name = a->node;
	if ((err = kura_member_start(&mo, &n->member, errbuf, errlen)))
		return err;
	ro.loop = n->loop;
	ro.store = n->s;
	ro.member = n->member;
	ro.name = a->node;
	ro.sched_mode = a->sched_fifo ? VD_SCHED_FIFO : VD_SCHED_QOS;
	if ((err = kura_rep_create(&ro, &n->rep))) {
		snprintf(errbuf, errlen, "out of memory");
		return err;
	}
	route.arg = n;
	if ((err = kura_server_start_tcp(n->loop, n->s, a->listen, &peer, &n->peers, errbuf,
					 errlen)))
		return err;
	kura_server_set_route(n->peers, &route);
	kura_server_set_route(n->srv, &route);
	/* until it serves the vdisks, the node's portal forwards to the node
	 * that does (30 s: an initiator's own command timeout) */
	if ((err = kura_svclink_create(n->loop, n->member, a->node, 30000, &n->svclink))) {
		snprintf(errbuf, errlen, "out of memory");
		return err;
	}
	n->fwd.send = fwd_send;
	n->fwd.arg = n->svclink;
	if ((err = start_iscsi(n, a, errbuf, errlen)))
		return err;
	n->store_watch.op.fn = store_watch;
	store_watch(&n->store_watch.op, 0);
	return 0;
}

static int node_start(struct node *n, const struct args *a, char *errbuf, size_t errlen)
{
	struct kura_blk_opts o = { 0 };
	const struct kura_cat_ops *ops;
	char sock[PATH_MAX];
	void *be;
	int err;

	o.dir = a->data;
	o.loop = n->loop;
	o.disks = a->disks;
	o.ndisks = a->ndisks;
	o.journal_size = a->journal_size;
	o.crc_cache_bytes = a->crc_cache;
	o.create = 1;
	o.drop_failed_disks = a->drop_failed || a->cluster;
	if ((err = kura_blk_store_open(&o, &n->s, errbuf, errlen)))
		return err;
	n->args = a;
	/* On its own, the node serves its vdisks from its store; in a cluster,
	 * the node holding the vdisk service does (node_service). */
	if (!a->cluster) {
		kura_cat_rocks_create(kura_blk_store_md(n->s), &ops, &be);
		if ((err = vdisks_open(n, ops, be, NULL, NULL, errbuf, errlen)))
			return err;
	}
	if (a->store_socket)
		snprintf(sock, sizeof(sock), "%s", a->store_socket);
	else
		snprintf(sock, sizeof(sock), "%s/store.sock", a->data);
	if ((err = kura_server_start(n->loop, n->s, sock, !a->store_socket, &n->srv, errbuf,
				     errlen)))
		return err;
	if (a->cluster && (err = start_member(n, a, errbuf, errlen)))
		return err;
	if (a->socket)
		snprintf(n->ctl_path, sizeof(n->ctl_path), "%s", a->socket);
	else
		snprintf(n->ctl_path, sizeof(n->ctl_path), "%s/blockd.sock", a->data);
	return kura_ctl_server_start(n->loop, node_ctl, n, n->ctl_path, !a->socket, &n->ctl, errbuf,
				     errlen);
}

int main(int argc, char **argv)
{
	struct args a = { 0 };
	struct node n = { 0 };
	struct sigwatch sw = { 0 };
	char errbuf[1024], sz[32];
	sigset_t mask;
	struct kura_blk_disk_info di;
	int err;

	if ((err = parse(argc, argv, &a)))
		return err;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sw.fd = signalfd(-1, &mask, SFD_CLOEXEC);
	sw.op.fn = sig_done;
	for (;;) {
		if ((err = kura_loop_create(&n.loop, 1024))) {
			fprintf(stderr, "blockd: cannot set up io_uring: %s\n", kura_strerror(err));
			return 1;
		}
		errbuf[0] = '\0';
		if ((err = node_start(&n, &a, errbuf, sizeof(errbuf)))) {
			fprintf(stderr, "blockd: %s\n", errbuf[0] ? errbuf : kura_strerror(err));
			node_stop(&n);
			return 1;
		}
		sw.loop = n.loop;
		sig_arm(&sw);
		for (unsigned i = 0; !kura_blk_disk_info(n.s, i, &di); i++)
			fprintf(stderr, "blockd: disk %u: %s (%s)%s\n", i, di.path,
				kura_fmt_size(di.size, sz, sizeof(sz)),
				di.failed ? ", failed: not used" : "");
		fprintf(stderr, "blockd: store %s ready; control socket unix:%s; iSCSI %s (pid %d); "
			"stop with Ctrl-C or kill -TERM %d\n", a.data, n.ctl_path,
			kura_iscsi_portal(n.iscsi), (int)getpid(), (int)getpid());
		kura_loop_run(n.loop);
		if (!n.restart)
			break;
		/* a data disk failed: the node starts again without it */
		node_stop(&n);
		memset(&n, 0, sizeof(n));
		fprintf(stderr, "blockd: a data disk failed; starting again without it\n");
	}
	fprintf(stderr, "blockd: %s received; finishing in-flight I/O and checkpointing\n",
		sw.signo == SIGINT ? "SIGINT" : "SIGTERM");
	node_stop(&n);
	close(sw.fd);
	fprintf(stderr, "blockd: stopped cleanly\n");
	return 0;
}
