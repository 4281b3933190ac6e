/* vdisk qos, qos show, stats: per-vdisk I/O limits and what the scheduler
 * measures (docs/qos.md). */
#include "vdisk/cli/cli.h"

#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WEIGHT_MAX 10000ull

static const struct {
	const char *opt, *key;
	int bytes; /* SIZE/s rather than a count */
} qos_opts[] = {
	{ "--iops-limit", "iops_limit", 0 },   { "--bw-limit", "bw_limit", 1 },
	{ "--iops-reserve", "iops_reserve", 0 }, { "--bw-reserve", "bw_reserve", 1 },
	{ "--weight", "weight", 0 },
};

/* "1000", "0", "none"; for bandwidth "200M/s", "200M" too. */
static int parse_value(const char *opt, const char *arg, int bytes, uint64_t *out)
{
	char buf[40], *end;
	size_t n = strlen(arg);

	if (!strcmp(arg, "none") || !strcmp(arg, "0")) {
		*out = 0;
		return 0;
	}
	if (bytes) {
		if (n >= 2 && !strcmp(arg + n - 2, "/s"))
			n -= 2;
		if (n && n < sizeof(buf)) {
			memcpy(buf, arg, n);
			buf[n] = '\0';
			if (!kura_parse_size(buf, out) && *out)
				return 0;
		}
		return cli_fail(-EINVAL, "%s %.40s: give bytes a second like 200M/s (K, M, G are "
				"powers of 1024), or 0 for none", opt, arg);
	}
	errno = 0;
	if (arg[0] >= '0' && arg[0] <= '9') {
		*out = strtoull(arg, &end, 10);
		if (!errno && !*end && (strcmp(opt, "--weight") || *out <= WEIGHT_MAX))
			return 0;
	}
	if (!strcmp(opt, "--weight"))
		return cli_fail(-EINVAL, "--weight %.40s: give 1 to 10000 (0 for the default, 100)",
				arg);
	return cli_fail(-EINVAL, "%s %.40s: give a whole number of I/Os a second, or 0 for none",
			opt, arg);
}

static int print_qos(const struct kura_json *q)
{
	char b[32];
	uint64_t v;

	v = cli_u64(q, "iops_limit");
	cli_kv("iops limit", v ? "%llu/s" : "none", (unsigned long long)v);
	v = cli_u64(q, "bw_limit");
	cli_kv("bw limit", v ? "%s/s" : "none", kura_fmt_size(v, b, sizeof(b)));
	v = cli_u64(q, "iops_reserve");
	cli_kv("iops reserve", v ? "%llu/s" : "none", (unsigned long long)v);
	v = cli_u64(q, "bw_reserve");
	cli_kv("bw reserve", v ? "%s/s" : "none", kura_fmt_size(v, b, sizeof(b)));
	v = cli_u64(q, "weight");
	cli_kv("weight", "%llu%s", (unsigned long long)(v ? v : 100), v ? "" : " (default)");
	return 0;
}

int cli_cmd_qos(struct cli *c, int argc, char **argv)
{
	struct kura_json *ans;
	struct kura_jw w;
	int err, given = 0;

	if ((err = cli_check_name("vdisk", argv[0])))
		return err;
	cli_req(&w, "qos");
	kura_jw_str(&w, "name", argv[0]);
	for (int i = 1; i < argc; i += 2) {
		size_t k;
		uint64_t v;

		for (k = 0; k < KURA_ARRAY_SIZE(qos_opts); k++)
			if (!strcmp(argv[i], qos_opts[k].opt))
				break;
		if (k == KURA_ARRAY_SIZE(qos_opts)) {
			kura_jw_free(&w);
			return cli_usage(c, argv[i][0] == '-' ? "unknown option %s"
							       : "unexpected argument '%s'", argv[i]);
		}
		if (i + 1 >= argc) {
			kura_jw_free(&w);
			return cli_usage(c, "%s needs a value", argv[i]);
		}
		if ((err = parse_value(argv[i], argv[i + 1], qos_opts[k].bytes, &v))) {
			kura_jw_free(&w);
			return err;
		}
		kura_jw_u64(&w, qos_opts[k].key, v);
		given++;
	}
	if (!given) {
		kura_jw_free(&w);
		return cli_cmd_qos_show(c, 1, argv);
	}
	if ((err = cli_call(c, &w, &ans)))
		return err;
	if (!(c->opts & OPT_JSON))
		printf("set the I/O settings of %s:\n", argv[0]);
	return cli_show(c, ans, "qos", KURA_JSON_OBJ, print_qos);
}

int cli_cmd_qos_show(struct cli *c, int argc, char **argv)
{
	struct kura_json *ans;
	int err = cli_call_name(c, "qos_show", argv[0], &ans);

	(void)argc;
	return err ? err : cli_show(c, ans, "qos", KURA_JSON_OBJ, print_qos);
}

/* ---- stats ---- */

static void rate_cell(struct cli_table *t, uint64_t bytes)
{
	char b[32];

	cli_table_add(t, "%s/s", kura_fmt_size(bytes, b, sizeof(b)));
}

static int print_stats(const struct kura_json *ans)
{
	static const char *const hdr[] = { "VDISK", "CLASS", "IOPS", "BANDWIDTH",
					   "P50", "P99", "P99.9", "MAX" };
	const struct kura_json *sch = cli_get(ans, "scheduler", KURA_JSON_OBJ);
	const struct kura_json *vds = cli_get(ans, "vdisks", KURA_JSON_ARR);
	const struct kura_json *disks = cli_get(ans, "disks", KURA_JSON_ARR);
	struct cli_table t;
	uint64_t win = cli_u64(sch, "background_window"), rate = cli_u64(sch, "background_rate");
	char b[32], r[40] = "";
	unsigned rows = 0;

	if (rate)
		snprintf(r, sizeof(r), ", paced to %s/s", kura_fmt_size(rate, b, sizeof(b)));
	printf("scheduler %s: guest latency mean %llu us, p99 %llu us (idle %llu us, %llu us); "
	       "background window %s%s\n",
	       cli_str(sch, "mode"), (unsigned long long)cli_u64(sch, "guest_latency_us"),
	       (unsigned long long)cli_u64(sch, "guest_p99_us"),
	       (unsigned long long)cli_u64(sch, "guest_baseline_us"),
	       (unsigned long long)cli_u64(sch, "guest_baseline_p99_us"),
	       kura_fmt_size(win, b, sizeof(b)), r);
	for (size_t i = 0; i < kura_json_len(disks); i++) {
		const struct kura_json *d = kura_json_at(disks, i);

		if (cli_u64(d, "slow_ios"))
			printf("disk %s: %llu I/Os took over 100 ms (worst %llu ms): the device "
			       "stalled\n", cli_str(d, "path"),
			       (unsigned long long)cli_u64(d, "slow_ios"),
			       (unsigned long long)cli_u64(d, "slow_worst_ms"));
	}
	for (size_t i = 0; i < kura_json_len(vds); i++)
		rows += (unsigned)kura_json_len(cli_get(kura_json_at(vds, i), "classes",
							KURA_JSON_OBJ));
	if (!rows) {
		printf("no I/O yet\n");
		return 0;
	}
	cli_table_init(&t, KURA_ARRAY_SIZE(hdr), hdr);
	for (size_t i = 0; i < kura_json_len(vds); i++) {
		const struct kura_json *v = kura_json_at(vds, i);
		const struct kura_json *cls = cli_get(v, "classes", KURA_JSON_OBJ);

		for (size_t k = 0; k < kura_json_len(cls); k++) {
			const struct kura_json *s = kura_json_at(cls, k);
			const struct kura_json *lat = cli_get(s, "lat_us", KURA_JSON_OBJ);

			cli_table_add(&t, "%s", cli_str(v, "name"));
			cli_table_add(&t, "%s", kura_json_key_at(cls, k));
			cli_table_add(&t, "%llu", (unsigned long long)cli_u64(s, "iops"));
			rate_cell(&t, cli_u64(s, "bw"));
			cli_table_add(&t, "%lluus", (unsigned long long)cli_u64(lat, "p50"));
			cli_table_add(&t, "%lluus", (unsigned long long)cli_u64(lat, "p99"));
			cli_table_add(&t, "%lluus", (unsigned long long)cli_u64(lat, "p999"));
			cli_table_add(&t, "%lluus", (unsigned long long)cli_u64(lat, "max"));
		}
	}
	return cli_table_print(&t);
}

int cli_cmd_stats(struct cli *c, int argc, char **argv)
{
	for (;;) {
		struct kura_json *ans;
		struct kura_jw w;
		int err;

		if (argc && (err = cli_check_name("vdisk", argv[0])))
			return err;
		cli_req(&w, "stats");
		if (argc)
			kura_jw_str(&w, "name", argv[0]);
		if ((err = cli_call(c, &w, &ans)))
			return err;
		err = (c->opts & OPT_JSON) ? cli_print_json(ans, "ok") : print_stats(ans);
		kura_json_free(ans);
		if (err || !(c->opts & OPT_WATCH))
			return err;
		if (fflush(stdout))
			return cli_fail(-errno, "cannot write the output: %s", strerror(errno));
		sleep(1);
		if (!(c->opts & OPT_JSON))
			putchar('\n');
	}
}
