/* vdisk import, export, jobs, job show, job cancel, fsck, version. */
#include "vdisk/cli/cli.h"

#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Sends the request and follows the job it starts; frees file. */
static int start_job(struct cli *c, struct kura_jw *w, char *file)
{
	struct kura_json *ans;
	int err;

	err = cli_call(c, w, &ans);
	free(file);
	if (err)
		return err;
	err = cli_job_started(c, ans);
	kura_json_free(ans);
	return err;
}

int cli_cmd_import(struct cli *c, int argc, char **argv)
{
	struct kura_jw w;
	char *file;
	int err;

	(void)argc;
	if ((err = cli_check_name("vdisk", argv[1])) || (err = cli_import_path(argv[0], &file)))
		return err;
	cli_req(&w, "import");
	kura_jw_str(&w, "file", file);
	kura_jw_str(&w, "name", argv[1]);
	return start_job(c, &w, file);
}

int cli_cmd_export(struct cli *c, int argc, char **argv)
{
	struct cli_target t;
	struct kura_jw w;
	char *file;
	int err;

	(void)argc;
	if ((err = cli_parse_target(argv[0], 0, &t)) || (err = cli_export_path(argv[1], &file)))
		return err;
	cli_req(&w, "export");
	cli_req_target(&w, &t);
	kura_jw_str(&w, "file", file);
	return start_job(c, &w, file);
}

/* "45% of 1.0 GiB" */
static const char *fmt_progress(const struct kura_json *j, char *buf, size_t len)
{
	uint64_t done = cli_u64(j, "done"), total = cli_u64(j, "total");
	char b[32];

	snprintf(buf, len, "%llu%% of %s",
		 (unsigned long long)(total ? KURA_MIN(done, total) * 100 / total : 0),
		 kura_fmt_size(total, b, sizeof(b)));
	return buf;
}

static int print_jobs(const struct kura_json *arr)
{
	static const char *const hdr[] = { "ID", "TYPE", "STATE", "PROGRESS", "SOURCE", "TARGET" };
	struct cli_table t;
	char b[64];

	if (!kura_json_len(arr)) {
		printf("no jobs\n");
		return 0;
	}
	cli_table_init(&t, KURA_ARRAY_SIZE(hdr), hdr);
	for (size_t i = 0; i < kura_json_len(arr); i++) {
		const struct kura_json *j = kura_json_at(arr, i);

		cli_table_add(&t, "%llu", (unsigned long long)cli_u64(j, "id"));
		cli_table_add(&t, "%s", cli_str(j, "type"));
		cli_table_add(&t, "%s", cli_str(j, "state"));
		cli_table_add(&t, "%s", fmt_progress(j, b, sizeof(b)));
		cli_table_add(&t, "%s", cli_str(j, "source"));
		cli_table_add(&t, "%s", cli_str(j, "target"));
	}
	return cli_table_print(&t);
}

int cli_cmd_jobs(struct cli *c, int argc, char **argv)
{
	struct kura_json *ans;
	int err = cli_call_op(c, "jobs", &ans);

	(void)argc;
	(void)argv;
	return err ? err : cli_show(c, ans, "jobs", KURA_JSON_ARR, print_jobs);
}

static int print_job(const struct kura_json *j)
{
	char b[64], r[32];
	uint64_t eta;

	cli_kv("job:", "%llu", (unsigned long long)cli_u64(j, "id"));
	cli_kv("type:", "%s", cli_str(j, "type"));
	cli_kv("state:", "%s", cli_str(j, "state"));
	cli_kv("source:", "%s", cli_str(j, "source"));
	cli_kv("target:", "%s", cli_str(j, "target"));
	cli_kv("progress:", "%s", fmt_progress(j, b, sizeof(b)));
	cli_kv("rate:", "%s/s", kura_fmt_size(cli_u64(j, "rate"), r, sizeof(r)));
	if (!kura_json_get_u64(j, "eta", &eta))
		cli_kv("time left:", "%s", cli_fmt_secs(eta, b, sizeof(b)));
	cli_kv("started:", "%s", cli_fmt_time(cli_u64(j, "started"), b, sizeof(b)));
	cli_kv("finished:", "%s", cli_fmt_time(cli_u64(j, "finished"), b, sizeof(b)));
	cli_kv("error:", "%s", cli_str(j, "error"));
	if (!strcmp(cli_str(j, "type"), "scrub")) {
		cli_kv("read:", "%s", kura_fmt_size(cli_u64(j, "scrub_bytes"), r, sizeof(r)));
		cli_kv("bad blocks:", "%llu", (unsigned long long)cli_u64(j, "bad_blocks"));
		cli_kv("copies repaired:", "%llu blocks",
		       (unsigned long long)cli_u64(j, "copies_repaired"));
		cli_print_bad_blocks(j);
	}
	return 0;
}

/* Sends op with the job id of argv[0]; the answer's "job" is the job. */
static int job_op(struct cli *c, const char *op, char **argv, struct kura_json **ans)
{
	struct kura_jw w;
	uint64_t id;
	int err;

	if ((err = cli_parse_id(argv[0], &id)))
		return err;
	cli_req(&w, op);
	kura_jw_u64(&w, "id", id);
	return cli_call(c, &w, ans);
}

int cli_cmd_job_show(struct cli *c, int argc, char **argv)
{
	struct kura_json *ans;
	int err;

	(void)argc;
	if ((err = job_op(c, "job", argv, &ans)))
		return err;
	return cli_show(c, ans, "job", KURA_JSON_OBJ, print_job);
}

int cli_cmd_job_cancel(struct cli *c, int argc, char **argv)
{
	const struct kura_json *job;
	struct kura_json *ans;
	char what[300];
	int err;

	(void)argc;
	if ((err = job_op(c, "job_cancel", argv, &ans)))
		return err;
	if ((job = cli_need(ans, "job", KURA_JSON_OBJ))) {
		cli_job_what(job, what, sizeof(what));
		/* The job stops at its next step, which may be after the answer. */
		if (!strcmp(cli_str(job, "state"), "running"))
			printf("job %s (%s) is stopping; see: vdisk job show %s\n", argv[0], what,
			       argv[0]);
		else
			printf("job %s (%s) %s\n", argv[0], what, cli_str(job, "state"));
	}
	kura_json_free(ans);
	return job ? 0 : -EPROTO;
}

static int print_fsck(const struct kura_json *ans)
{
	const struct kura_json *p = cli_get(ans, "problems", KURA_JSON_ARR);
	size_t n = p ? kura_json_len(p) : 0;

	for (size_t i = 0; i < n; i++)
		printf("%s\n", cli_str_at(p, i));
	printf("%s: %llu vdisks, %llu layers, %llu extents, %llu leaked extents, %llu dangling "
	       "layers\n", n ? "problems found" : "clean", (unsigned long long)cli_u64(ans, "vdisks"),
	       (unsigned long long)cli_u64(ans, "layers"), (unsigned long long)cli_u64(ans, "extents"),
	       (unsigned long long)cli_u64(ans, "leaked_extents"),
	       (unsigned long long)cli_u64(ans, "dangling_layers"));
	return 0;
}

int cli_cmd_fsck(struct cli *c, int argc, char **argv)
{
	const struct kura_json *problems;
	struct kura_json *ans;
	int err, clean = 0;

	(void)argc;
	(void)argv;
	if ((err = cli_call_op(c, "fsck", &ans)))
		return err;
	if (kura_json_get_bool(ans, "clean", &clean))
		err = cli_fail(-EPROTO, "blockd's fsck answer lacks the field \"clean\"");
	else if (c->opts & OPT_JSON)
		err = cli_print_json(ans, "ok");
	else
		err = print_fsck(ans);
	problems = cli_get(ans, "problems", KURA_JSON_ARR);
	if (!err && !clean)
		err = cli_fail(-EUCLEAN, "fsck found %zu problem(s)",
			       problems ? kura_json_len(problems) : 0);
	kura_json_free(ans);
	return err;
}

int cli_cmd_version(struct cli *c, int argc, char **argv)
{
	struct kura_json *ans;
	int err;

	(void)argc;
	(void)argv;
	printf("vdisk %s\n", CLI_VERSION);
	if ((err = cli_call_op(c, "version", &ans)))
		return err;
	printf("blockd %s (at %s)\n", cli_str(ans, "version"), c->socket);
	kura_json_free(ans);
	return 0;
}
