/* The vdisk crash test: a real blockd gets a random stream of control
 * requests (import, snapshot, linked and full clone, delete of snapshots and
 * vdisks, rollback, flatten, export) and is killed with SIGKILL at a random
 * moment, mostly while a request or a job runs. After every restart, once
 * the resumed jobs end: fsck is clean, every vdisk and snapshot whose
 * creation was acknowledged (and whose deletion was not) exists, and each
 * exports byte for byte equal to the file its data came from.
 *
 * Every vdisk's data comes from one imported file and nothing writes to it
 * afterwards, so its content is known from its name: "f<k>-<n>" holds file k.
 *
 * usage: kura-vdcrash --blockd PATH --dir DIR [--cycles N] [--seed S] */
#include "common/json.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NFILES 3
#define FILE_SIZE (6u << 20)
#define MAXOBJ 64

struct obj {
	char name[80];   /* vdisk, or vdisk@snap */
	int file;
	int acked;       /* its creation was answered */
};

struct test {
	const char *blockd, *dir;
	char sock[600], files[NFILES][600], logpath[600];
	pid_t pid;
	int fd;
	struct obj objs[MAXOBJ];
	unsigned nobj, next;
	char in_flight[80];      /* name the request in flight creates or deletes */
	uint64_t rng;
	unsigned kills, ops, verified;
};

static struct test *cleanup_t; /* the blockd to kill if this test stops early */

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "vdcrash: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static void kill_running(void)
{
	if (cleanup_t && cleanup_t->pid > 0) {
		kill(cleanup_t->pid, SIGKILL);
		waitpid(cleanup_t->pid, NULL, 0);
	}
}

static uint64_t rnd(struct test *t)
{
	t->rng ^= t->rng << 13;
	t->rng ^= t->rng >> 7;
	t->rng ^= t->rng << 17;
	return t->rng;
}

/* ---- blockd ---- */

static void start(struct test *t)
{
	char data[700];

	snprintf(data, sizeof(data), "%s/data", t->dir);
	t->pid = fork();
	if (t->pid < 0)
		die("fork: %s", strerror(errno));
	if (!t->pid) {
		int lfd = open(t->logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (lfd >= 0) {
			dup2(lfd, 1);
			dup2(lfd, 2);
		}
		execl(t->blockd, t->blockd, "--data", data, "--disk", "disk.img,size=1G",
		      "--log-level", "warn", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 300; i++) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int st;
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%.107s", t->sock);
		t->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (!connect(t->fd, (struct sockaddr *)&sa, sizeof(sa)))
			return;
		close(t->fd);
		if (waitpid(t->pid, &st, WNOHANG) == t->pid)
			die("blockd exited at start (status %d); see %s", st, t->logpath);
		usleep(20000);
	}
	die("blockd did not open %s; see %s", t->sock, t->logpath);
}

static void crash(struct test *t)
{
	kill(t->pid, SIGKILL);
	waitpid(t->pid, NULL, 0);
	t->pid = -1;
	close(t->fd);
	/* A killed process's ring may keep its listener alive for a moment:
	 * unlinking the path makes sure the next connect reaches the new one. */
	unlink(t->sock);
	t->kills++;
}

/* ---- requests ---- */

static void send_req(struct test *t, const char *fmt, va_list ap)
{
	char line[2048];
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);

	line[n++] = '\n';
	if (getenv("VDCRASH_VERBOSE"))
		fprintf(stdout, "> %.*s", n, line);
	if (write(t->fd, line, (size_t)n) != n)
		die("send to blockd: %s", strerror(errno));
}

/* One answer line, parsed. */
static struct kura_json *recv_ans(struct test *t)
{
	static char buf[1 << 20];
	size_t len = 0;
	struct kura_json *j;
	char why[128];

	for (;;) {
		ssize_t r = read(t->fd, buf + len, 1);
		if (r <= 0)
			die("blockd closed the control socket");
		if (buf[len] == '\n')
			break;
		if (++len == sizeof(buf))
			die("answer too long");
	}
	if (kura_json_parse(buf, len, &j, why, sizeof(why)))
		die("bad answer: %s", why);
	return j;
}

static struct kura_json *req(struct test *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static struct kura_json *req(struct test *t, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	send_req(t, fmt, ap);
	va_end(ap);
	return recv_ans(t);
}

static int ok(const struct kura_json *a)
{
	int v = 0;

	kura_json_get_bool(a, "ok", &v);
	return v;
}

static void wait_jobs(struct test *t)
{
	for (int i = 0; i < 6000; i++) {
		struct kura_json *a = req(t, "{\"op\":\"jobs\"}");
		const struct kura_json *jobs = kura_json_get(a, "jobs");
		int busy = 0;
		for (size_t k = 0; k < kura_json_len(jobs); k++) {
			const char *st = NULL;
			kura_json_get_str(kura_json_at(jobs, k), "state", &st);
			busy |= st && !strcmp(st, "running");
		}
		kura_json_free(a);
		if (!busy)
			return;
		usleep(10000);
	}
	die("jobs did not finish in 60 s");
}

/* ---- the model ---- */

static struct obj *find(struct test *t, const char *name)
{
	for (unsigned i = 0; i < t->nobj; i++)
		if (!strcmp(t->objs[i].name, name))
			return &t->objs[i];
	return NULL;
}

static struct obj *add(struct test *t, const char *name, int file)
{
	struct obj *o = &t->objs[t->nobj++];

	snprintf(o->name, sizeof(o->name), "%s", name);
	o->file = file;
	o->acked = 0;
	return o;
}

static void drop(struct test *t, const char *name)
{
	struct obj *o = find(t, name);

	if (o)
		*o = t->objs[--t->nobj];
}

/* A random vdisk (snap 0) or snapshot (snap 1) from the model; NULL if none. */
static struct obj *pick(struct test *t, int snap)
{
	struct obj *c[MAXOBJ];
	unsigned n = 0;

	for (unsigned i = 0; i < t->nobj; i++)
		if (t->objs[i].acked && (strchr(t->objs[i].name, '@') != NULL) == snap)
			c[n++] = &t->objs[i];
	return n ? c[rnd(t) % n] : NULL;
}

static void split(const char *name, char *v, char *s)
{
	const char *at = strchr(name, '@');

	snprintf(v, 80, "%.*s", at ? (int)(at - name) : (int)strlen(name), name);
	snprintf(s, 80, "%s", at ? at + 1 : "");
}

/* ---- verification ---- */

static int same_as(const char *path, const char *ref)
{
	char cmd[1500];

	snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", path, ref);
	return system(cmd) == 0;
}

static void export_check(struct test *t, const struct obj *o)
{
	char v[80], s[80], out[700];
	struct kura_json *a;
	uint64_t id;

	split(o->name, v, s);
	snprintf(out, sizeof(out), "%s/check.img", t->dir);
	unlink(out);
	if (s[0])
		a = req(t, "{\"op\":\"export\",\"name\":\"%s\",\"snap\":\"%s\",\"file\":\"%s\"}", v, s,
			out);
	else
		a = req(t, "{\"op\":\"export\",\"name\":\"%s\",\"file\":\"%s\"}", v, out);
	if (!ok(a) || kura_json_get_u64(kura_json_get(a, "job"), "id", &id))
		die("export of %s refused", o->name);
	kura_json_free(a);
	wait_jobs(t);
	if (!same_as(out, t->files[o->file]))
		die("%s does not read back as file %d", o->name, o->file);
	unlink(out);
	t->verified++;
}

static int exists(struct test *t, const char *name)
{
	char v[80], s[80];
	struct kura_json *a;
	int r;

	split(name, v, s);
	if (s[0])
		a = req(t, "{\"op\":\"info\",\"name\":\"%s\",\"snap\":\"%s\"}", v, s);
	else
		a = req(t, "{\"op\":\"info\",\"name\":\"%s\"}", v);
	r = ok(a);
	kura_json_free(a);
	return r;
}

static void verify(struct test *t)
{
	struct kura_json *a;
	int clean = 0;

	wait_jobs(t);
	a = req(t, "{\"op\":\"fsck\"}");
	kura_json_get_bool(a, "clean", &clean);
	if (!clean) {
		const struct kura_json *p = kura_json_get(a, "problems");
		for (size_t i = 0; i < kura_json_len(p); i++)
			fprintf(stderr, "  fsck: %s\n", kura_json_str(kura_json_at(p, i)));
		die("fsck found problems after restart %u", t->kills);
	}
	kura_json_free(a);
	for (unsigned i = 0; i < t->nobj;) {
		struct obj *o = &t->objs[i];
		int present = exists(t, o->name);
		size_t fl = strlen(t->in_flight);
		int flight = fl && !strncmp(t->in_flight, o->name, fl) &&
			     (o->name[fl] == '\0' || o->name[fl] == '@');
		if (!present && o->acked && !flight)
			die("%s was acknowledged but is gone after restart %u", o->name, t->kills);
		if (!present) {
			*o = t->objs[--t->nobj];
			continue;
		}
		o->acked = 1; /* it exists now, whatever the request in flight did */
		export_check(t, o);
		i++;
	}
	t->in_flight[0] = '\0';
}

/* ---- operations ---- */

/* Sends a request; with kill set, kills blockd after a random short delay
 * instead of reading the answer (0 returned). Else returns the answer's ok. */
static int op(struct test *t, int kill_now, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int op(struct test *t, int kill_now, const char *fmt, ...)
{
	struct kura_json *a;
	va_list ap;
	int r;

	va_start(ap, fmt);
	send_req(t, fmt, ap);
	va_end(ap);
	t->ops++;
	if (kill_now) {
		usleep((useconds_t)(rnd(t) % 20000));
		crash(t);
		return 0;
	}
	a = recv_ans(t);
	r = ok(a);
	kura_json_free(a);
	return r;
}

static int do_import(struct test *t, int kill_now)
{
	char name[80];
	int k = (int)(rnd(t) % NFILES);

	snprintf(name, sizeof(name), "f%d-%u", k, t->next++);
	add(t, name, k);
	snprintf(t->in_flight, sizeof(t->in_flight), "%s", name);
	if (!op(t, kill_now, "{\"op\":\"import\",\"file\":\"%s\",\"name\":\"%s\"}", t->files[k],
		name))
		return kill_now;
	find(t, name)->acked = 1;
	return 0;
}

static int do_snapshot(struct test *t, int kill_now)
{
	struct obj *v = pick(t, 0);
	char name[80];
	int file;

	if (!v)
		return do_import(t, kill_now);
	file = v->file;
	snprintf(name, sizeof(name), "%.60s@s%u", v->name, t->next++);
	add(t, name, file);
	snprintf(t->in_flight, sizeof(t->in_flight), "%s", name);
	{
		char vn[80], sn[80];
		split(name, vn, sn);
		if (!op(t, kill_now, "{\"op\":\"snapshot\",\"name\":\"%s\",\"snap\":\"%s\"}", vn, sn))
			return kill_now;
	}
	find(t, name)->acked = 1;
	return 0;
}

static int do_clone(struct test *t, int kill_now)
{
	struct obj *s = pick(t, 1);
	char v[80], sn[80], name[80];
	int full = (int)(rnd(t) % 2);

	if (!s)
		return do_snapshot(t, kill_now);
	split(s->name, v, sn);
	snprintf(name, sizeof(name), "f%d-%u", s->file, t->next++);
	add(t, name, s->file);
	snprintf(t->in_flight, sizeof(t->in_flight), "%s", name);
	if (!op(t, kill_now, "{\"op\":\"clone\",\"name\":\"%s\",\"snap\":\"%s\",\"new\":\"%s\","
		"\"full\":%s}", v, sn, name, full ? "true" : "false"))
		return kill_now;
	find(t, name)->acked = 1;
	return 0;
}

static int do_delete(struct test *t, int kill_now)
{
	struct obj *o = pick(t, (int)(rnd(t) % 2));
	char v[80], s[80], name[80];

	if (!o)
		return 0;
	snprintf(name, sizeof(name), "%s", o->name);
	split(name, v, s);
	snprintf(t->in_flight, sizeof(t->in_flight), "%s", name);
	if (s[0]) {
		if (!op(t, kill_now, "{\"op\":\"delete\",\"name\":\"%s\",\"snap\":\"%s\"}", v, s))
			return kill_now;
	} else if (!op(t, kill_now, "{\"op\":\"delete\",\"name\":\"%s\"}", v)) {
		if (!kill_now)
			t->in_flight[0] = '\0'; /* refused: it has clones */
		return kill_now;
	}
	drop(t, name);
	/* a vdisk's snapshots go with it */
	for (unsigned i = 0; !s[0] && i < t->nobj;) {
		char ov[80], os[80];
		split(t->objs[i].name, ov, os);
		if (os[0] && !strcmp(ov, v))
			t->objs[i] = t->objs[--t->nobj];
		else
			i++;
	}
	t->in_flight[0] = '\0';
	return 0;
}

static int do_rollback_or_flatten(struct test *t, int kill_now)
{
	struct obj *s = pick(t, 1), *v = pick(t, 0);
	char vn[80], sn[80];

	if (rnd(t) % 2 && s) {
		split(s->name, vn, sn);
		op(t, kill_now, "{\"op\":\"rollback\",\"name\":\"%s\",\"snap\":\"%s\"}", vn, sn);
	} else if (v) {
		op(t, kill_now, "{\"op\":\"flatten\",\"name\":\"%s\"}", v->name);
	}
	return kill_now;
}

static int one_op(struct test *t, int kill_now)
{
	int (*const ops[])(struct test *, int) = {
		do_import, do_snapshot, do_snapshot, do_clone, do_clone, do_delete, do_delete,
		do_rollback_or_flatten,
	};
	unsigned k = (unsigned)(rnd(t) % KURA_ARRAY_SIZE(ops));

	if (t->nobj > 24)
		k = 5; /* keep the population bounded */
	return ops[k](t, kill_now);
}

static void make_files(struct test *t)
{
	char *buf = malloc(FILE_SIZE);

	for (int k = 0; k < NFILES; k++) {
		int fd;
		snprintf(t->files[k], sizeof(t->files[k]), "%s/file%d.img", t->dir, k);
		for (size_t i = 0; i < FILE_SIZE / 8; i++)
			((uint64_t *)buf)[i] = rnd(t);
		/* holes, which import leaves unallocated */
		memset(buf + (1u << 20) * (unsigned)k, 0, 1u << 20);
		fd = open(t->files[k], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, buf, FILE_SIZE) != FILE_SIZE)
			die("cannot write %s", t->files[k]);
		close(fd);
	}
	free(buf);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "blockd", required_argument, NULL, 'b' },
		{ "dir", required_argument, NULL, 'd' },
		{ "cycles", required_argument, NULL, 'c' },
		{ "seed", required_argument, NULL, 's' },
		{ 0 }
	};
	static struct test t = { .pid = -1, .rng = 88172645463325252ull };
	unsigned cycles = 20;
	int o;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'b': t.blockd = optarg; break;
		case 'd': t.dir = optarg; break;
		case 'c': cycles = (unsigned)strtoul(optarg, NULL, 10); break;
		case 's': t.rng ^= (uint64_t)strtoull(optarg, NULL, 10) * 0x9e3779b97f4a7c15ull; break;
		default: die("usage: kura-vdcrash --blockd PATH --dir DIR [--cycles N] [--seed S]");
		}
	}
	if (!t.blockd || !t.dir || t.dir[0] != '/')
		die("usage: kura-vdcrash --blockd PATH --dir ABSOLUTE_DIR [--cycles N] [--seed S]");
	if (chdir(t.dir))
		die("%s: %s", t.dir, strerror(errno));
	snprintf(t.sock, sizeof(t.sock), "%s/data/blockd.sock", t.dir);
	snprintf(t.logpath, sizeof(t.logpath), "%s/blockd.log", t.dir);
	cleanup_t = &t;
	atexit(kill_running);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	make_files(&t);
	for (unsigned c = 1; c <= cycles; c++) {
		unsigned n = 1 + (unsigned)(rnd(&t) % 5);
		start(&t);
		verify(&t);
		for (unsigned i = 0; i < n; i++)
			if (one_op(&t, i == n - 1))
				break;
		if (t.pid > 0)
			crash(&t);
		printf("cycle %u: %u objects, %u ops so far\n", c, t.nobj, t.ops);
	}
	start(&t);
	verify(&t);
	kill(t.pid, SIGTERM);
	waitpid(t.pid, NULL, 0);
	t.pid = -1;
	printf("vdisk crash test: %u kills, %u requests, %u exports verified\n", t.kills, t.ops,
	       t.verified);
	return 0;
}
