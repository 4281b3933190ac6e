/* vdisk create, list, info, resize, delete. */
#include "vdisk/cli/cli.h"

#include "common/util.h"

#include <errno.h>
#include <stdlib.h>

/* create and resize: NAME SIZE, checked here first. */
static int call_sized(struct cli *c, const char *op, char **argv, int shrink, uint64_t *size,
		      struct kura_json **ans)
{
	struct kura_jw w;
	int err;

	if ((err = cli_check_name("vdisk", argv[0])) || (err = cli_parse_size(argv[1], size)))
		return err;
	cli_req(&w, op);
	kura_jw_str(&w, "name", argv[0]);
	kura_jw_u64(&w, "size", *size);
	if (shrink)
		kura_jw_bool(&w, "shrink", 1);
	return cli_call(c, &w, ans);
}

int cli_cmd_create(struct cli *c, int argc, char **argv)
{
	struct kura_json *ans;
	uint64_t size;
	char b[32];
	int err = call_sized(c, "create", argv, 0, &size, &ans);

	(void)argc;
	if (err)
		return err;
	printf("created %s: %s, thin\n", argv[0], kura_fmt_size(size, b, sizeof(b)));
	kura_json_free(ans);
	return 0;
}

/* "ready", or "building (job 7)". */
static const char *fmt_state(const struct kura_json *v, char *buf, size_t len)
{
	if (cli_get(v, "job", KURA_JSON_NUM))
		snprintf(buf, len, "%s (job %llu)", cli_str(v, "state"),
			 (unsigned long long)cli_u64(v, "job"));
	else
		snprintf(buf, len, "%s", cli_str(v, "state"));
	return buf;
}

static int print_vdisks(const struct kura_json *arr)
{
	static const char *const hdr[] = { "NAME",  "SIZE",  "ALLOCATED", "PARENT",
					   "SNAPS", "DEPTH", "STATE" };
	struct cli_table t;
	char b[64];

	if (!kura_json_len(arr)) {
		printf("no vdisks; make one with: vdisk create NAME SIZE\n");
		return 0;
	}
	cli_table_init(&t, KURA_ARRAY_SIZE(hdr), hdr);
	for (size_t i = 0; i < kura_json_len(arr); i++) {
		const struct kura_json *v = kura_json_at(arr, i);
		const struct kura_json *snaps = cli_get(v, "snapshots", KURA_JSON_ARR);

		cli_table_add(&t, "%s", cli_str(v, "name"));
		cli_table_size(&t, cli_u64(v, "size"));
		cli_table_size(&t, cli_u64(v, "allocated"));
		cli_table_add(&t, "%s", cli_str(v, "parent"));
		cli_table_add(&t, "%zu", snaps ? kura_json_len(snaps) : 0);
		cli_table_add(&t, "%llu", (unsigned long long)cli_u64(v, "depth"));
		cli_table_add(&t, "%s", fmt_state(v, b, sizeof(b)));
	}
	return cli_table_print(&t);
}

int cli_cmd_list(struct cli *c, int argc, char **argv)
{
	struct kura_json *ans;
	int err = cli_call_op(c, "list", &ans);

	(void)argc;
	(void)argv;
	return err ? err : cli_show(c, ans, "vdisks", KURA_JSON_ARR, print_vdisks);
}

static void kv_size(const char *key, uint64_t bytes)
{
	char b[32];

	if (bytes < 1024)
		cli_kv(key, "%s", kura_fmt_size(bytes, b, sizeof(b)));
	else
		cli_kv(key, "%s (%llu bytes)", kura_fmt_size(bytes, b, sizeof(b)),
		       (unsigned long long)bytes);
}

static void kv_list(const char *key, const struct kura_json *o, const char *member)
{
	char *s = cli_join(cli_get(o, member, KURA_JSON_ARR));

	cli_kv(key, "%s", s ? s : "(out of memory)");
	free(s);
}

static int print_vdisk(const struct kura_json *v)
{
	char b[40];

	cli_kv("name:", "%s", cli_str(v, "name"));
	kv_size("provisioned:", cli_u64(v, "size"));
	kv_size("allocated:", cli_u64(v, "allocated"));
	kv_size("unique:", cli_u64(v, "unique"));
	cli_kv("parent:", "%s", cli_str(v, "parent"));
	kv_list("snapshots:", v, "snapshots");
	cli_kv("chain depth:", "%llu", (unsigned long long)cli_u64(v, "depth"));
	cli_kv("state:", "%s", fmt_state(v, b, sizeof(b)));
	cli_kv("created:", "%s", cli_fmt_time(cli_u64(v, "created"), b, sizeof(b)));
	if (cli_u64(v, "scrubbed")) {
		uint64_t bad = cli_u64(v, "scrub_bad_blocks");

		cli_kv("last scrub:", "%s, %s", cli_fmt_time(cli_u64(v, "scrubbed"), b, sizeof(b)),
		       bad ? "some blocks did not read (vdisk jobs; blockd's log)"
			   : "every block read back as written");
		if (bad)
			cli_kv("bad blocks:", "%llu", (unsigned long long)bad);
	} else {
		cli_kv("last scrub:", "never");
	}
	return 0;
}

static int print_snapshot(const struct kura_json *s)
{
	char b[40];

	cli_kv("snapshot:", "%s@%s", cli_str(s, "vdisk"), cli_str(s, "name"));
	kv_size("size:", cli_u64(s, "size"));
	kv_size("allocated:", cli_u64(s, "allocated"));
	kv_list("clones:", s, "clones");
	cli_kv("created:", "%s", cli_fmt_time(cli_u64(s, "created"), b, sizeof(b)));
	return 0;
}

int cli_cmd_info(struct cli *c, int argc, char **argv)
{
	struct cli_target t;
	struct kura_json *ans;
	int err;

	(void)argc;
	if ((err = cli_parse_target(argv[0], 0, &t)) || (err = cli_call_target(c, "info", &t, &ans)))
		return err;
	if (t.snap[0])
		return cli_show(c, ans, "snapshot", KURA_JSON_OBJ, print_snapshot);
	return cli_show(c, ans, "vdisk", KURA_JSON_OBJ, print_vdisk);
}

int cli_cmd_resize(struct cli *c, int argc, char **argv)
{
	struct kura_json *ans;
	uint64_t size;
	char b[32];
	int err = call_sized(c, "resize", argv, !!(c->opts & OPT_SHRINK), &size, &ans);

	(void)argc;
	if (err)
		return err;
	printf("resized %s to %s\n", argv[0], kura_fmt_size(size, b, sizeof(b)));
	kura_json_free(ans);
	return 0;
}

int cli_cmd_delete(struct cli *c, int argc, char **argv)
{
	struct cli_target t;
	struct kura_json *ans;
	int err;

	(void)argc;
	if ((err = cli_parse_target(argv[0], 0, &t)) ||
	    (err = cli_call_target(c, "delete", &t, &ans)))
		return err;
	printf("deleted %s", argv[0]);
	/* A snapshot others were cloned from is only hidden: say who holds it. */
	if (cli_get(ans, "note", KURA_JSON_STR))
		printf("; its blocks stay while these clones use them: %s", cli_str(ans, "note"));
	if (cli_get(ans, "job", KURA_JSON_NUM))
		printf("; job %llu frees the space in the background",
		       (unsigned long long)cli_u64(ans, "job"));
	putchar('\n');
	kura_json_free(ans);
	return 0;
}
