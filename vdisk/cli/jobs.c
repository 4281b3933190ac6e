/* Jobs seen from the command line: the "started" line, and --wait, which
 * polls the job and draws a progress bar.
 *
 * SIGINT while waiting must stop the waiting and say so, without a handler
 * and a global flag: it is blocked and read from a signalfd that the waits
 * (the pause between polls and the read of an answer) watch besides their
 * own fd. */
#include "vdisk/cli/cli.h"

#include "common/util.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define POLL_MS 200
#define BAR_WIDTH 24

struct waiting {
	uint64_t id;
	uint64_t start_ns;
	int drawn; /* a progress line is on the terminal */
};

const char *cli_job_what(const struct kura_json *job, char *buf, size_t len)
{
	const char *type = cli_str(job, "type"), *src = cli_str(job, "source");
	const char *dst = cli_str(job, "target");

	/* Name what the user thinks of: the vdisk being made or changed, or the
	 * one being read out. */
	if (!strcmp(type, "clone"))
		snprintf(buf, len, "clone of %s to %s", src, dst);
	else if (!strcmp(type, "import") || !strcmp(type, "flatten"))
		snprintf(buf, len, "%s of %s", type, dst);
	else
		snprintf(buf, len, "%s of %s", type, src);
	return buf;
}

static int fetch_job(struct cli *c, uint64_t id, struct kura_json **ans,
		     const struct kura_json **job)
{
	struct kura_jw w;
	int err;

	cli_req(&w, "job");
	kura_jw_u64(&w, "id", id);
	if ((err = cli_call(c, &w, ans)))
		return err;
	if ((*job = cli_need(*ans, "job", KURA_JSON_OBJ)))
		return 0;
	kura_json_free(*ans);
	*ans = NULL;
	return -EPROTO;
}

static void draw_bar(struct waiting *wt, const struct kura_json *job)
{
	uint64_t done = cli_u64(job, "done"), total = cli_u64(job, "total"), eta;
	unsigned pct = total ? (unsigned)(KURA_MIN(done, total) * 100 / total) : 0;
	char bar[BAR_WIDTH + 1], d[32], t[32], r[32], e[32] = "?";
	unsigned fill = pct * BAR_WIDTH / 100;

	memset(bar, '#', fill);
	memset(bar + fill, '.', BAR_WIDTH - fill);
	bar[BAR_WIDTH] = '\0';
	if (!kura_json_get_u64(job, "eta", &eta))
		cli_fmt_secs(eta, e, sizeof(e));
	/* \r and erase-to-end redraw the one line in place. */
	printf("\r[%s] %3u%%  %s / %s  %s/s  %s left\033[K", bar, pct,
	       kura_fmt_size(done, d, sizeof(d)), kura_fmt_size(total, t, sizeof(t)),
	       kura_fmt_size(cli_u64(job, "rate"), r, sizeof(r)), e);
	fflush(stdout);
	wt->drawn = 1;
}

static void clear_bar(struct waiting *wt)
{
	if (!wt->drawn)
		return;
	fputs("\r\033[K", stdout);
	fflush(stdout);
	wt->drawn = 0;
}

void cli_print_bad_blocks(const struct kura_json *job)
{
	const struct kura_json *bad = cli_get(job, "bad", KURA_JSON_ARR);
	uint64_t n = cli_u64(job, "bad_blocks");
	size_t i;

	for (i = 0; i < kura_json_len(bad); i++) {
		const struct kura_json *b = kura_json_at(bad, i);
		const char *snap = NULL;

		kura_json_get_str(b, "snapshot", &snap);
		printf("  offset %llu (4 KiB block %llu)%s%s\n",
		       (unsigned long long)cli_u64(b, "offset"),
		       (unsigned long long)(cli_u64(b, "offset") / 4096), snap ? ", snapshot " : "",
		       snap ? snap : "");
	}
	if (n > i)
		printf("  and %llu more\n", (unsigned long long)(n - i));
}

/* A scrub's last word: what it read, and the blocks that do not read. */
static int scrub_finished(const struct kura_json *job, const char *what, double secs)
{
	uint64_t n = cli_u64(job, "bad_blocks");
	char b[32];

	uint64_t fixed = cli_u64(job, "copies_repaired");

	printf("%s done: %s read and checked in %.1f s; %s\n", what,
	       kura_fmt_size(cli_u64(job, "scrub_bytes"), b, sizeof(b)), secs,
	       n ? "these blocks do not read:" : "every block read back as written");
	if (fixed)
		printf("%llu block%s had a copy that did not read or differed: written again on "
		       "every copy\n", (unsigned long long)fixed, fixed == 1 ? "" : "s");
	if (!n)
		return 0;
	cli_print_bad_blocks(job);
	return cli_fail(-EIO, "%s: %llu block%s do%s not read (the data there is lost): write %s "
			"again, or restore %s from a backup", what, (unsigned long long)n,
			n == 1 ? "" : "s", n == 1 ? "es" : "", n == 1 ? "it" : "them",
			n == 1 ? "it" : "them");
}

static int finished(struct waiting *wt, const struct kura_json *job)
{
	const char *state = cli_str(job, "state");
	double secs = (double)(kura_now_ns() - wt->start_ns) / 1e9;
	uint64_t total = cli_u64(job, "total");
	char what[300], b[32], r[32];

	cli_job_what(job, what, sizeof(what));
	if (!strcmp(state, "failed"))
		return cli_fail(-EIO, "%s failed: %s", what, cli_str(job, "error"));
	if (!strcmp(state, "cancelled"))
		return cli_fail(-ECANCELED, "%s was cancelled", what);
	if (strcmp(state, "done"))
		return cli_fail(-EPROTO, "%s: blockd says it is '%s'", what, state);
	if (secs < 0.001)
		secs = 0.001;
	if (!strcmp(cli_str(job, "type"), "scrub"))
		return scrub_finished(job, what, secs);
	printf("%s done: %s in %.1f s (%s/s)\n", what, kura_fmt_size(total, b, sizeof(b)), secs,
	       kura_fmt_size((uint64_t)((double)total / secs), r, sizeof(r)));
	return 0;
}

/* Sleeps between polls; CLI_E_INTR when SIGINT comes first. */
static int pause_or_intr(struct cli *c)
{
	struct pollfd p = { .fd = c->intr_fd, .events = POLLIN };

	if (poll(&p, 1, POLL_MS) > 0 && (p.revents & POLLIN))
		return CLI_E_INTR;
	return 0;
}

static int wait_loop(struct cli *c, struct waiting *wt)
{
	const struct kura_json *job;
	struct kura_json *ans;
	int err;

	for (;;) {
		if ((err = fetch_job(c, wt->id, &ans, &job)))
			return err;
		if (strcmp(cli_str(job, "state"), "running")) {
			clear_bar(wt);
			err = finished(wt, job);
			kura_json_free(ans);
			return err;
		}
		if (c->tty)
			draw_bar(wt, job);
		kura_json_free(ans);
		if ((err = pause_or_intr(c)))
			return err;
	}
}

int cli_wait_job(struct cli *c, uint64_t id)
{
	struct waiting wt = { .id = id, .start_ns = kura_now_ns() };
	sigset_t set, old;
	int err;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, &old))
		return cli_fail(-errno, "sigprocmask: %s", strerror(errno));
	c->intr_fd = signalfd(-1, &set, SFD_CLOEXEC);
	if (c->intr_fd < 0) {
		err = cli_fail(-errno, "signalfd: %s", strerror(errno));
		goto out_mask;
	}
	err = wait_loop(c, &wt);
	clear_bar(&wt);
	if (err == CLI_E_INTR)
		cli_fail(err, "stopped waiting; job %llu keeps running (see: vdisk job show %llu; "
			 "stop it with: vdisk job cancel %llu)", (unsigned long long)id,
			 (unsigned long long)id, (unsigned long long)id);
	close(c->intr_fd);
	c->intr_fd = -1;
out_mask:
	/* After SIGINT we only exit: it stays blocked, so that a second one
	 * (timeout(1) sends two) cannot kill us before the exit status. */
	if (err != CLI_E_INTR)
		sigprocmask(SIG_SETMASK, &old, NULL);
	return err;
}

/* The answer's "job": an object (flatten, clone, import, export) or an id. */
static int answer_job(const struct kura_json *ans, uint64_t *id, const struct kura_json **job)
{
	const struct kura_json *j = cli_get(ans, "job", KURA_JSON_NUM);

	*job = cli_get(ans, "job", KURA_JSON_OBJ);
	if (*job)
		j = cli_get(*job, "id", KURA_JSON_NUM);
	if (!j || kura_json_u64(j, id))
		return cli_fail(-EPROTO, "blockd's answer names no job");
	return 0;
}

int cli_job_started(struct cli *c, const struct kura_json *ans)
{
	const struct kura_json *job;
	struct kura_json *fetched = NULL;
	uint64_t id;
	int err;

	if ((err = answer_job(ans, &id, &job)))
		return err;
	if (c->opts & OPT_WAIT)
		return cli_wait_job(c, id);
	if (!job && (err = fetch_job(c, id, &fetched, &job)))
		return err;
	printf("job %llu started: %s %s -> %s\n", (unsigned long long)id, cli_str(job, "type"),
	       cli_str(job, "source"), cli_str(job, "target"));
	kura_json_free(fetched);
	return 0;
}
