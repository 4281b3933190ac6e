/* vdisk cluster init, cluster status: create a cluster in etcd and show its
 * nodes and placement groups (docs/cluster.md). */
#include "vdisk/cli/cli.h"

#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int parse_duration(const char *arg, uint64_t *ms)
{
	if (!kura_parse_duration(arg, ms))
		return 0;
	return cli_fail(-EINVAL, "--out-after %.40s: give a time like 30s, 10m or 1h", arg);
}

static int parse_count(const char *opt, const char *arg, uint64_t max, uint64_t *out)
{
	char *end;

	errno = 0;
	if (arg[0] >= '0' && arg[0] <= '9') {
		*out = strtoull(arg, &end, 10);
		if (!errno && !*end && *out && *out <= max)
			return 0;
	}
	return cli_fail(-EINVAL, "%s %.40s: give a whole number from 1 to %llu", opt, arg,
			(unsigned long long)max);
}

int cli_cmd_cluster_init(struct cli *c, int argc, char **argv)
{
	struct kura_json *ans;
	struct kura_jw w;
	uint64_t v;
	int err, have_replicas = 0;

	cli_req(&w, "cluster_init");
	for (int i = 0; i < argc; i += 2) {
		const char *o = argv[i];

		if (strcmp(o, "--replicas") && strcmp(o, "--pgs") && strcmp(o, "--out-after")) {
			kura_jw_free(&w);
			return cli_usage(c, o[0] == '-' ? "unknown option %s" : "unexpected argument '%s'",
					 o);
		}
		if (i + 1 >= argc) {
			kura_jw_free(&w);
			return cli_usage(c, "%s needs a value", o);
		}
		if (!strcmp(o, "--replicas")) {
			err = parse_count(o, argv[i + 1], 3, &v);
			have_replicas = 1;
		} else if (!strcmp(o, "--pgs")) {
			err = parse_count(o, argv[i + 1], 65536, &v);
			if (!err && (v & (v - 1)))
				err = cli_fail(-EINVAL, "--pgs %.40s: give a power of two (256, 1024, ...)",
					       argv[i + 1]);
		} else {
			err = parse_duration(argv[i + 1], &v);
		}
		if (err) {
			kura_jw_free(&w);
			return err;
		}
		kura_jw_u64(&w, !strcmp(o, "--replicas") ? "replicas"
				: !strcmp(o, "--pgs")  ? "pgs"
						       : "out_after_ms", v);
	}
	if (!have_replicas) {
		kura_jw_free(&w);
		return cli_usage(c, "give --replicas 1, 2 or 3");
	}
	if ((err = cli_call(c, &w, &ans)))
		return err;
	if (c->opts & OPT_JSON)
		err = cli_print_json(ans, "ok");
	else
		printf("created cluster %s\n", cli_str(ans, "cluster_id"));
	kura_json_free(ans);
	return err;
}

static const char *ago(uint64_t since_ms, char *buf, size_t len)
{
	struct timespec ts;
	uint64_t now;

	if (!since_ms)
		return "-";
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	return cli_fmt_secs(now > since_ms ? (now - since_ms) / 1000 : 0, buf, len);
}

/* The state of node name in the map's node list ("" when absent). */
static const char *own_state(const struct kura_json *nodes, const char *name)
{
	for (size_t i = 0; i < kura_json_len(nodes); i++)
		if (!strcmp(cli_str(kura_json_at(nodes, i), "name"), name))
			return cli_str(kura_json_at(nodes, i), "state");
	return "";
}

/* This node's catching up (resync) and what it copied to others. */
static void print_resync(const struct kura_json *me)
{
	const struct kura_json *rs = cli_get(me, "resync", KURA_JSON_OBJ);
	const struct kura_json *sv = cli_get(me, "resync_served", KURA_JSON_OBJ);
	const struct kura_json *pe = cli_get(me, "peering", KURA_JSON_OBJ);
	const char *st = cli_str(rs, "state");
	char b[32];

	if (rs && strcmp(st, "none"))
		cli_kv("resync", "%s: %llu of %llu groups, %llu extents compared, %llu copied "
		       "(%s), %llu freed, %.1f s", st,
		       (unsigned long long)cli_u64(rs, "groups_done"),
		       (unsigned long long)cli_u64(rs, "groups"),
		       (unsigned long long)cli_u64(rs, "extents_compared"),
		       (unsigned long long)cli_u64(rs, "extents_copied"),
		       kura_fmt_size(cli_u64(rs, "bytes_copied"), b, sizeof(b)),
		       (unsigned long long)cli_u64(rs, "extents_freed"),
		       (double)cli_u64(rs, "ms") / 1000.0);
	if (pe && cli_u64(pe, "groups_waiting"))
		cli_kv("peering", "%llu groups wait for their members to be compared",
		       (unsigned long long)cli_u64(pe, "groups_waiting"));
	if (sv && cli_u64(sv, "extents_copied") + cli_u64(sv, "extents_freed"))
		cli_kv("copied to others", "%llu extents (%s), %llu freed",
		       (unsigned long long)cli_u64(sv, "extents_copied"),
		       kura_fmt_size(cli_u64(sv, "bytes_copied"), b, sizeof(b)),
		       (unsigned long long)cli_u64(sv, "extents_freed"));
}

/* One side of the rebuild pacing: "window 1 MiB, paced at 4 MiB/s, 57
 * requests held back". */
static void pace_side(const struct kura_json *rp, const char *window, const char *rate,
		      const char *held, char *out, size_t len)
{
	char w[32], r[32];
	uint64_t rt = cli_u64(rp, rate);

	kura_fmt_size(cli_u64(rp, window), w, sizeof(w));
	if (rt)
		kura_fmt_size(rt, r, sizeof(r));
	snprintf(out, len, "window %s, %s%s%s, %llu requests held back", w, rt ? "paced at " : "unpaced",
		 rt ? r : "", rt ? "/s" : "", (unsigned long long)cli_u64(rp, held));
}

/* The rebuild pacing, once this node has copied or read for a copy under
 * it: how far guest I/O holds the copies back (docs/qos.md). */
static void print_pacing(const struct kura_json *me)
{
	const struct kura_json *rp = cli_get(me, "rebuild_pacing", KURA_JSON_OBJ);
	char own[128], src[128];

	if (!rp || !(cli_u64(rp, "bytes_copied") + cli_u64(rp, "bytes_sent")))
		return;
	pace_side(rp, "window", "rate", "requests_held", own, sizeof(own));
	pace_side(rp, "source_window", "source_rate", "source_requests_held", src, sizeof(src));
	cli_kv("rebuild pacing", "%s; guest latency %llu us (idle %llu us); copies taken: %s; "
	       "reads for others: %s", cli_str(rp, "mode"),
	       (unsigned long long)cli_u64(rp, "guest_latency_us"),
	       (unsigned long long)cli_u64(rp, "guest_baseline_us"), own, src);
}

static int print_status(const struct kura_json *ans)
{
	static const char *const hdr[] = { "NODE", "STATE", "FOR", "ADDRESS", "DOMAIN",
					   "CAPACITY", "USED" };
	const struct kura_json *nodes = cli_get(ans, "nodes", KURA_JSON_ARR);
	const struct kura_json *pgs = cli_get(ans, "pgs", KURA_JSON_OBJ);
	const struct kura_json *me = cli_get(ans, "node", KURA_JSON_OBJ);
	const struct kura_json *nc = cli_get(pgs, "not_clean", KURA_JSON_ARR);
	struct cli_table t;
	char b[32];
	int init = 0, may = 0;

	kura_json_get_bool(ans, "initialized", &init);
	if (!init) {
		printf("etcd at %s holds no cluster yet: run `vdisk cluster init --replicas N`\n",
		       cli_str(ans, "etcd"));
		return 0;
	}
	cli_kv("cluster", "%s", cli_str(ans, "cluster_id"));
	cli_kv("epoch", "%llu", (unsigned long long)cli_u64(ans, "epoch"));
	cli_kv("leader", "%s", cli_str(ans, "leader"));
	cli_kv("vdisks served by", "%s", cli_str(ans, "vdisk_service"));
	cli_kv("replicas", "%llu", (unsigned long long)cli_u64(ans, "replicas"));
	cli_kv("out after", "%s", cli_fmt_secs(cli_u64(ans, "out_after_ms") / 1000, b, sizeof(b)));
	if (!me || kura_json_get_bool(me, "may_ack", &may))
		may = 0;
	cli_kv("this node", "%s (%s)", cli_str(me, "name"),
	       may ? "in the cluster, may acknowledge writes"
	       : !strcmp(own_state(nodes, cli_str(me, "name")), "recovering")
		       ? "recovering: may have missed writes, serves none until brought up to date"
		       : "fenced: acknowledges no replicated write");
	print_resync(me);
	print_pacing(me);
	cli_kv("groups", "%llu: %llu clean, %llu degraded, %llu with no replica up",
	       (unsigned long long)cli_u64(pgs, "total"), (unsigned long long)cli_u64(pgs, "clean"),
	       (unsigned long long)cli_u64(pgs, "degraded"),
	       (unsigned long long)cli_u64(pgs, "down"));
	for (size_t i = 0; i < kura_json_len(nc); i++) {
		const struct kura_json *g = kura_json_at(nc, i);
		char *set = cli_join(cli_get(g, "replicas", KURA_JSON_ARR));

		printf("  group %llu: %llu of its replicas up (%s)\n",
		       (unsigned long long)cli_u64(g, "pg"), (unsigned long long)cli_u64(g, "up"),
		       set ? set : "?");
		free(set);
	}
	printf("\n");
	cli_table_init(&t, KURA_ARRAY_SIZE(hdr), hdr);
	for (size_t i = 0; i < kura_json_len(nodes); i++) {
		const struct kura_json *n = kura_json_at(nodes, i);

		cli_table_add(&t, "%s", cli_str(n, "name"));
		cli_table_add(&t, "%s", cli_str(n, "state"));
		cli_table_add(&t, "%s", ago(cli_u64(n, "since_ms"), b, sizeof(b)));
		cli_table_add(&t, "%s", cli_str(n, "addr"));
		cli_table_add(&t, "%s", cli_str(n, "domain"));
		cli_table_size(&t, cli_u64(n, "capacity"));
		cli_table_size(&t, cli_u64(n, "used"));
	}
	return cli_table_print(&t);
}

int cli_cmd_cluster_status(struct cli *c, int argc, char **argv)
{
	struct kura_json *ans;
	struct kura_jw w;
	int err;

	(void)argc;
	(void)argv;
	cli_req(&w, "cluster_status");
	if ((err = cli_call(c, &w, &ans)))
		return err;
	err = (c->opts & OPT_JSON) ? cli_print_json(ans, "ok") : print_status(ans);
	kura_json_free(ans);
	return err;
}

/* vdisk cluster out NODE [--force], vdisk cluster remove NODE */
static int node_ask(struct cli *c, const char *op, const char *node)
{
	struct kura_json *ans;
	struct kura_jw w;
	int err;

	cli_req(&w, op);
	kura_jw_str(&w, "node", node);
	if (c->opts & OPT_FORCE)
		kura_jw_bool(&w, "force", 1);
	if ((err = cli_call(c, &w, &ans)))
		return err;
	if (c->opts & OPT_JSON)
		err = cli_print_json(ans, "ok");
	else if (!strcmp(cli_str(ans, "state"), "removed"))
		printf("node %s is no longer in the cluster map (epoch %llu)\n", node,
		       (unsigned long long)cli_u64(ans, "epoch"));
	else
		printf("node %s is out (map epoch %llu): the nodes that took its places copy its "
		       "data; see `vdisk cluster status`\n", node,
		       (unsigned long long)cli_u64(ans, "epoch"));
	kura_json_free(ans);
	return err;
}

int cli_cmd_cluster_out(struct cli *c, int argc, char **argv)
{
	(void)argc;
	return node_ask(c, "cluster_out", argv[0]);
}

int cli_cmd_cluster_remove(struct cli *c, int argc, char **argv)
{
	(void)argc;
	return node_ask(c, "cluster_remove", argv[0]);
}
