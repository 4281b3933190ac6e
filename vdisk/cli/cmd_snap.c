/* vdisk snapshot, snapshots, rollback, clone, flatten, scrub. */
#include "vdisk/cli/cli.h"

#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* NAME@SNAP as one argument, or NAME SNAP as two. */
static int name_and_snap(int argc, char **argv, struct cli_target *t)
{
	if (argc == 1)
		return cli_parse_target(argv[0], 1, t);
	if (cli_check_name("vdisk", argv[0]) || cli_check_name("snapshot", argv[1]))
		return -EINVAL;
	snprintf(t->name, sizeof(t->name), "%s", argv[0]);
	snprintf(t->snap, sizeof(t->snap), "%s", argv[1]);
	return 0;
}

/* Sends op with NAME and SNAP; on success prints "<done> NAME@SNAP". */
static int snap_op(struct cli *c, const char *op, const char *done, int argc, char **argv)
{
	struct cli_target t;
	struct kura_json *ans;
	int err;

	if ((err = name_and_snap(argc, argv, &t)) || (err = cli_call_target(c, op, &t, &ans)))
		return err;
	printf("%s %s@%s\n", done, t.name, t.snap);
	kura_json_free(ans);
	return 0;
}

int cli_cmd_snapshot(struct cli *c, int argc, char **argv)
{
	return snap_op(c, "snapshot", "created snapshot", argc, argv);
}

int cli_cmd_rollback(struct cli *c, int argc, char **argv)
{
	return snap_op(c, "rollback", "rolled back to", argc, argv);
}

static int print_snapshots(const struct kura_json *arr)
{
	static const char *const hdr[] = { "NAME", "SIZE", "ALLOCATED", "CREATED", "CLONES" };
	struct cli_table t;
	char b[40], *clones;

	if (!kura_json_len(arr)) {
		printf("no snapshots\n");
		return 0;
	}
	cli_table_init(&t, KURA_ARRAY_SIZE(hdr), hdr);
	for (size_t i = 0; i < kura_json_len(arr); i++) {
		const struct kura_json *s = kura_json_at(arr, i);

		cli_table_add(&t, "%s", cli_str(s, "name"));
		cli_table_size(&t, cli_u64(s, "size"));
		cli_table_size(&t, cli_u64(s, "allocated"));
		cli_table_add(&t, "%s", cli_fmt_time(cli_u64(s, "created"), b, sizeof(b)));
		clones = cli_join(cli_get(s, "clones", KURA_JSON_ARR));
		cli_table_add(&t, "%s", clones ? clones : "?");
		free(clones);
	}
	return cli_table_print(&t);
}

int cli_cmd_snapshots(struct cli *c, int argc, char **argv)
{
	struct kura_json *ans;
	int err = cli_call_name(c, "snapshots", argv[0], &ans);

	(void)argc;
	return err ? err : cli_show(c, ans, "snapshots", KURA_JSON_ARR, print_snapshots);
}

int cli_cmd_clone(struct cli *c, int argc, char **argv)
{
	struct cli_target t;
	struct kura_json *ans;
	struct kura_jw w;
	int err;

	(void)argc;
	if ((err = cli_parse_target(argv[0], 1, &t)) || (err = cli_check_name("vdisk", argv[1])))
		return err;
	cli_req(&w, "clone");
	cli_req_target(&w, &t);
	kura_jw_str(&w, "new", argv[1]);
	if (c->opts & OPT_FULL)
		kura_jw_bool(&w, "full", 1);
	if ((err = cli_call(c, &w, &ans)))
		return err;
	if (c->opts & OPT_FULL)
		err = cli_job_started(c, ans);
	else
		printf("cloned %s to %s (thin: it shares the snapshot's blocks until written)\n",
		       argv[0], argv[1]);
	kura_json_free(ans);
	return err;
}

/* op on vdisk name starts a job: follow it as cli_job_started does. */
static int name_job(struct cli *c, const char *op, const char *name)
{
	struct kura_json *ans;
	int err;

	if ((err = cli_call_name(c, op, name, &ans)))
		return err;
	err = cli_job_started(c, ans);
	kura_json_free(ans);
	return err;
}

int cli_cmd_flatten(struct cli *c, int argc, char **argv)
{
	(void)argc;
	return name_job(c, "flatten", argv[0]);
}

int cli_cmd_scrub(struct cli *c, int argc, char **argv)
{
	(void)argc;
	return name_job(c, "scrub", argv[0]);
}
