/* vdisk: the command-line client of blockd's control socket (docs/control.md).
 *
 * Thread rule: one thread; one struct cli per run, passed down to everything.
 *
 * Errors: functions return 0 or a negative errno. A function that fails
 * prints the one error line ("vdisk: ..." on stderr) itself, so its callers
 * only pass the code up and main turns it into the exit status. CLI_E_USAGE
 * (exit 2) and CLI_E_INTR (exit 130) are the CLI's own codes; every other
 * error exits 1.
 */
#ifndef KURA_VDISK_CLI_H
#define KURA_VDISK_CLI_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/json.h"

#define CLI_VERSION "kura 0.3"
#define CLI_DEFAULT_SOCKET "./data/blockd.sock"
#define CLI_NAME_MAX 64
#define CLI_BLOCK 4096ull
#define CLI_SIZE_MAX (1ull << 50) /* 1 PiB, as blockd */
/* A bound on one answer, so that a confused peer cannot make us eat memory:
 * a list of a hundred thousand vdisks is about 30 MiB. */
#define CLI_MAX_ANSWER (256u << 20)

enum {
	CLI_E_USAGE = -(4096 + 64), /* bad command line: exit 2 */
	CLI_E_INTR = -(4096 + 65),  /* SIGINT while waiting for a job: exit 130 */
};

/* Options a command may accept (struct cli_cmd.opts) and was given (cli.opts). */
enum {
	OPT_JSON = 1u << 0,
	OPT_WAIT = 1u << 1,
	OPT_FULL = 1u << 2,
	OPT_SHRINK = 1u << 3,
	OPT_MUTUAL = 1u << 4,
	OPT_CLEAR = 1u << 5,
	OPT_WATCH = 1u << 6,
	OPT_VALUES = 1u << 7, /* takes --key VALUE options of its own, left in argv */
	OPT_FORCE = 1u << 8,
};

struct cli;

struct cli_cmd {
	const char *name;    /* "create", or "job show" for a two-word command */
	const char *args;    /* what follows the name in the usage line */
	const char *summary; /* one line for `vdisk help` */
	const char *help;    /* the rest of `vdisk COMMAND --help` */
	unsigned opts;       /* OPT_* it accepts */
	int min_args, max_args;
	int (*run)(struct cli *c, int argc, char **argv);
};

/* One connection to blockd, opened by the first request. */
struct cli_conn {
	int fd;           /* -1 until connected */
	char *buf;        /* received bytes not yet consumed */
	size_t len, cap;
};

struct cli {
	const char *socket;
	unsigned opts;             /* OPT_* given */
	const struct cli_cmd *cmd; /* the command running, for usage lines */
	struct cli_conn conn;
	int intr_fd;               /* signalfd for SIGINT while waiting; else -1 */
	int tty;                   /* stdout is a terminal: draw progress */
};

/* ---- main.c ---- */
/* Prints "vdisk: <message>" and returns err. */
int cli_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A usage error of the running command: the message, then its usage line. */
int cli_usage(struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- args.c: checks made before asking blockd (it checks again) ---- */
struct cli_target {
	char name[CLI_NAME_MAX + 1];
	char snap[CLI_NAME_MAX + 1]; /* "" when no @SNAP was given */
};

int cli_check_name(const char *what, const char *name);
int cli_parse_size(const char *arg, uint64_t *out);
int cli_parse_id(const char *arg, uint64_t *out);
/* NAME or NAME@SNAP; need_snap makes @SNAP required. */
int cli_parse_target(const char *arg, int need_snap, struct cli_target *t);
/* blockd opens the file itself, from its own working directory, so paths
 * go absolute (malloc'd into *out). Import: the file must exist here.
 * Export: the realpath of its directory, plus its name. */
int cli_import_path(const char *file, char **out);
int cli_export_path(const char *file, char **out);

/* ---- client.c: requests and answers ---- */
/* Starts a request object {"op": op, ...}; add fields with kura_jw_*. */
void cli_req(struct kura_jw *w, const char *op);
/* Closes and sends the request (and frees w), reads the one answer. On
 * {"ok": true} *ans is the whole answer, to be freed with kura_json_free. On
 * {"ok": false} prints blockd's error as is and returns -EREMOTEIO. */
int cli_call(struct cli *c, struct kura_jw *w, struct kura_json **ans);
void cli_disconnect(struct cli *c);
/* Adds "name" and, when t names a snapshot, "snap". */
void cli_req_target(struct kura_jw *w, const struct cli_target *t);
/* Requests with no other fields than op; op and a vdisk name (checked
 * first); op and a NAME[@SNAP]. As cli_call. */
int cli_call_op(struct cli *c, const char *op, struct kura_json **ans);
int cli_call_name(struct cli *c, const char *op, const char *name, struct kura_json **ans);
int cli_call_target(struct cli *c, const char *op, const struct cli_target *t,
		    struct kura_json **ans);

/* ---- print.c: output ---- */
/* The value as indented JSON on stdout; skip names a member of a top-level
 * object to leave out (or NULL). */
int cli_print_json(const struct kura_json *v, const char *skip);
/* "2026-11-12 10:13:20 +0100" in local time, or "-" for 0. */
const char *cli_fmt_time(uint64_t epoch, char *buf, size_t len);
/* "1h02m", "3m05s", "42s". */
const char *cli_fmt_secs(uint64_t secs, char *buf, size_t len);
/* Member key of o if it has that type, else NULL (o may be NULL). */
const struct kura_json *cli_get(const struct kura_json *o, const char *key,
				enum kura_json_type type);
/* The same for a member blockd must send: NULL after an error line. */
const struct kura_json *cli_need(const struct kura_json *o, const char *key,
				 enum kura_json_type type);
/* String and integer members; "-" and 0 when absent, null or empty. */
const char *cli_str(const struct kura_json *o, const char *key);
uint64_t cli_u64(const struct kura_json *o, const char *key);
/* Element i of an array of strings; "?" when it is not a string. */
const char *cli_str_at(const struct kura_json *arr, size_t i);
/* Array of strings as "a, b, c" ("-" when empty), malloc'd; NULL on ENOMEM. */
char *cli_join(const struct kura_json *arr);
/* Member key of the answer, printed as JSON with --json or else by human();
 * frees the answer. */
int cli_show(struct cli *c, struct kura_json *ans, const char *key, enum kura_json_type type,
	     int (*human)(const struct kura_json *v));

/* An aligned table: cells are added row by row, header first. */
#define CLI_TABLE_COLS 8

struct cli_table {
	unsigned ncols;
	char **cells;
	size_t n, cap;
	int err; /* an allocation failed; reported by cli_table_print */
};

/* The header row is given here. */
void cli_table_init(struct cli_table *t, unsigned ncols, const char *const *header);
void cli_table_add(struct cli_table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_table_size(struct cli_table *t, uint64_t bytes);
/* Prints and frees the table. */
int cli_table_print(struct cli_table *t);
/* "key:        value" lines for info and job show. */
void cli_kv(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- jobs.c ---- */
/* After a request that started a job: the answer's "job" (an object or an id).
 * Without --wait prints "job ID started: ..."; with it, waits (see
 * cli_wait_job). */
int cli_job_started(struct cli *c, const struct kura_json *ans);
/* Polls the job every 200 ms until it stops; a progress bar on a terminal,
 * one line at the end. SIGINT stops the waiting, not the job. */
int cli_wait_job(struct cli *c, uint64_t id);
/* "import of vm1", "clone of tmpl@base to vm2" into buf. */
const char *cli_job_what(const struct kura_json *job, char *buf, size_t len);
/* A scrub job's blocks that do not read, a line each (offset, snapshot). */
void cli_print_bad_blocks(const struct kura_json *job);

/* ---- commands (cmd_*.c) ---- */
extern const struct cli_cmd cli_cmds[];
extern const size_t cli_ncmds;

int cli_cmd_create(struct cli *c, int argc, char **argv);
int cli_cmd_list(struct cli *c, int argc, char **argv);
int cli_cmd_info(struct cli *c, int argc, char **argv);
int cli_cmd_resize(struct cli *c, int argc, char **argv);
int cli_cmd_delete(struct cli *c, int argc, char **argv);
int cli_cmd_snapshot(struct cli *c, int argc, char **argv);
int cli_cmd_snapshots(struct cli *c, int argc, char **argv);
int cli_cmd_rollback(struct cli *c, int argc, char **argv);
int cli_cmd_clone(struct cli *c, int argc, char **argv);
int cli_cmd_flatten(struct cli *c, int argc, char **argv);
int cli_cmd_scrub(struct cli *c, int argc, char **argv);
int cli_cmd_import(struct cli *c, int argc, char **argv);
int cli_cmd_export(struct cli *c, int argc, char **argv);
int cli_cmd_jobs(struct cli *c, int argc, char **argv);
int cli_cmd_job_show(struct cli *c, int argc, char **argv);
int cli_cmd_job_cancel(struct cli *c, int argc, char **argv);
int cli_cmd_fsck(struct cli *c, int argc, char **argv);
int cli_cmd_version(struct cli *c, int argc, char **argv);
int cli_cmd_iscsi_list(struct cli *c, int argc, char **argv);
int cli_cmd_iscsi_show(struct cli *c, int argc, char **argv);
int cli_cmd_iscsi_acl(struct cli *c, int argc, char **argv);
int cli_cmd_iscsi_chap(struct cli *c, int argc, char **argv);
int cli_cmd_iscsi_cache(struct cli *c, int argc, char **argv);
int cli_cmd_qos(struct cli *c, int argc, char **argv);
int cli_cmd_cluster_init(struct cli *c, int argc, char **argv);
int cli_cmd_cluster_status(struct cli *c, int argc, char **argv);
int cli_cmd_cluster_out(struct cli *c, int argc, char **argv);
int cli_cmd_cluster_remove(struct cli *c, int argc, char **argv);
int cli_cmd_qos_show(struct cli *c, int argc, char **argv);
int cli_cmd_stats(struct cli *c, int argc, char **argv);

#endif
