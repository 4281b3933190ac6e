/* The real-process crash test: blockd runs under a stream of pipelined writes
 * from this client and is killed with SIGKILL at a random moment, again and
 * again. After every restart each block must hold its last acknowledged
 * value or a value written after it that was in flight at the kill, never a
 * torn block, and reads must not fail their checksums.
 *
 * usage: kura-crashtest --blockd PATH --dir DIR [--cycles N] [--seed S]
 * Prints one line per cycle and "crash test: N cycles passed" at the end;
 * exits non-zero on the first violation. */
#include "blockd/client.h"
#include "blockd/store.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LAYER 7
#define NEXT 16
#define NBLK (NEXT * KURA_EXT_BLOCKS)
#define QD 16
#define MAXPEND 64

struct block {
	uint64_t acked;           /* tag of the last acknowledged write */
	uint64_t pend[MAXPEND];   /* tags written, not acknowledged */
	unsigned npend;
};

struct inflight {
	uint64_t tag;
	unsigned first, n;
	int used;
};

static struct block blocks[NBLK];
static struct inflight infl[QD * 2];
static const char *blockd_path, *dir;
static char sock[4200], logpath[4200];
static uint64_t rng = 88172645463325252ULL;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fill(uint8_t *b, uint64_t tag, uint64_t addr)
{
	uint64_t *p = (uint64_t *)b;

	for (unsigned s = 0; s < KURA_BLK_SIZE / 512; s++) {
		uint64_t *q = p + s * 64;
		q[0] = tag;
		q[1] = addr;
		for (unsigned i = 2; i < 64; i++)
			q[i] = kura_hash64(tag ^ (addr << 20) ^ (s * 64 + i));
	}
}

/* tag, 0 for zeros, UINT64_MAX when torn or misplaced */
static uint64_t tag_of(const uint8_t *b, uint64_t addr)
{
	const uint64_t *p = (const uint64_t *)b;
	uint64_t tag = p[0];
	int zero = 1;

	for (unsigned i = 0; i < KURA_BLK_SIZE / 8; i++)
		zero &= p[i] == 0;
	if (zero)
		return 0;
	for (unsigned s = 0; s < KURA_BLK_SIZE / 512; s++) {
		const uint64_t *q = p + s * 64;
		if (q[0] != tag || q[1] != addr)
			return UINT64_MAX;
		for (unsigned i = 2; i < 64; i++)
			if (q[i] != kura_hash64(tag ^ (addr << 20) ^ (s * 64 + i)))
				return UINT64_MAX;
	}
	return tag;
}

static pid_t running = -1; /* the blockd to kill if this test stops early */

static void kill_running(void)
{
	if (running > 0) {
		kill(running, SIGKILL);
		waitpid(running, NULL, 0);
	}
}

static pid_t start_blockd(void)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
		}
		execl(blockd_path, blockd_path, "--data", dir, "--journal-size", "16M", "--disk",
		      "disk0.img,size=256M", "--log-level", "warn", (char *)NULL);
		_exit(127);
	}
	running = pid;
	return pid;
}

static struct kura_client *connect_wait(pid_t pid)
{
	struct kura_client *c = NULL;

	for (int i = 0; i < 3000; i++) {
		int st;
		if (kura_client_connect(sock, &c) == 0)
			return c;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			char cmd[4300];
			fprintf(stderr, "blockd exited during start (status %d); its log ends:\n", st);
			snprintf(cmd, sizeof(cmd), "tail -n 15 '%s' >&2", logpath);
			if (system(cmd))
				fprintf(stderr, "(no log)\n");
			exit(1);
		}
		usleep(5000);
	}
	fprintf(stderr, "blockd did not start within 15 s; see %s\n", logpath);
	exit(1);
}

static void verify(struct kura_client *c, unsigned cycle)
{
	uint8_t *buf = kura_aligned_alloc(KURA_EXT_SIZE);
	unsigned changed = 0;

	for (unsigned e = 0; e < NEXT; e++) {
		struct kura_proto_req q = { .op = KURA_OP_READ, .layer = LAYER, .ext = e,
					    .blk = 0, .nblk = KURA_EXT_BLOCKS };
		size_t got;
		int err = kura_client_call(c, &q, NULL, buf, KURA_EXT_SIZE, &got);

		if (err || got != KURA_EXT_SIZE) {
			fprintf(stderr, "cycle %u: read of extent %u failed: %d\n", cycle, e, err);
			exit(1);
		}
		for (unsigned b = 0; b < KURA_EXT_BLOCKS; b++) {
			unsigned i = e * KURA_EXT_BLOCKS + b;
			struct block *bl = &blocks[i];
			uint64_t t = tag_of(buf + (size_t)b * KURA_BLK_SIZE, i);
			int ok = t == bl->acked;

			for (unsigned k = 0; k < bl->npend && !ok; k++)
				ok = t == bl->pend[k] && t > bl->acked;
			if (!ok) {
				fprintf(stderr,
					"cycle %u: block %u holds %s%llu; acknowledged %llu, %u in flight\n",
					cycle, i, t == UINT64_MAX ? "a torn block " : "",
					(unsigned long long)(t == UINT64_MAX ? 0 : t),
					(unsigned long long)bl->acked, bl->npend);
				exit(1);
			}
			changed += t != bl->acked;
			bl->acked = t; /* what survived is now the durable value */
			bl->npend = 0;
		}
	}
	free(buf);
	printf("cycle %u: verified %u blocks (%u in-flight writes survived)\n", cycle, NBLK,
	       changed);
	fflush(stdout);
}

static void submit(struct kura_client *c, uint64_t tag, uint8_t *buf)
{
	unsigned n = 1 + (unsigned)(rnd() % 8);
	unsigned e = (unsigned)(rnd() % NEXT), b = (unsigned)(rnd() % (KURA_EXT_BLOCKS - n + 1));
	unsigned first = e * KURA_EXT_BLOCKS + b;
	struct kura_proto_req q = { .magic = KURA_PROTO_MAGIC, .op = KURA_OP_WRITE, .tag = tag,
				    .layer = LAYER, .ext = e, .blk = (uint16_t)b,
				    .nblk = (uint16_t)n, .data_len = n * KURA_BLK_SIZE,
				    .version = tag };
	unsigned slot = 0;

	while (infl[slot].used)
		slot++;
	infl[slot] = (struct inflight){ tag, first, n, 1 };
	for (unsigned k = 0; k < n; k++) {
		struct block *bl = &blocks[first + k];
		fill(buf + (size_t)k * KURA_BLK_SIZE, tag, first + k);
		if (bl->npend == MAXPEND) {
			fprintf(stderr, "more than %d writes in flight on one block\n", MAXPEND);
			exit(1);
		}
		bl->pend[bl->npend++] = tag;
	}
	kura_client_send(c, &q, buf);
}

static void acked(uint64_t tag)
{
	for (unsigned s = 0; s < QD * 2; s++) {
		if (!infl[s].used || infl[s].tag != tag)
			continue;
		for (unsigned k = 0; k < infl[s].n; k++) {
			struct block *bl = &blocks[infl[s].first + k];
			unsigned keep = 0;
			if (tag > bl->acked)
				bl->acked = tag;
			/* only writes newer than the acknowledged one may still show */
			for (unsigned i = 0; i < bl->npend; i++)
				if (bl->pend[i] > bl->acked)
					bl->pend[keep++] = bl->pend[i];
			bl->npend = keep;
		}
		infl[s].used = 0;
		return;
	}
	fprintf(stderr, "response with unknown tag %llu\n", (unsigned long long)tag);
	exit(1);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "blockd", required_argument, NULL, 'b' }, { "dir", required_argument, NULL, 'd' },
		{ "cycles", required_argument, NULL, 'c' }, { "seed", required_argument, NULL, 's' },
		{ 0 }
	};
	unsigned cycles = 50, c;
	uint64_t tag = 0, total_acked = 0;
	uint8_t *buf = kura_aligned_alloc(8 * KURA_BLK_SIZE);
	int o;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'b': blockd_path = optarg; break;
		case 'd': dir = optarg; break;
		case 'c': cycles = (unsigned)strtoul(optarg, NULL, 10); break;
		case 's': rng = strtoull(optarg, NULL, 10) | 1; break;
		default:
			fprintf(stderr, "usage: kura-crashtest --blockd PATH --dir DIR [--cycles N] [--seed S]\n");
			return 2;
		}
	}
	if (!blockd_path || !dir) {
		fprintf(stderr, "usage: kura-crashtest --blockd PATH --dir DIR [--cycles N] [--seed S]\n");
		return 2;
	}
	{
		static char abs_blockd[4096], abs_dir[4096];
		if (!realpath(blockd_path, abs_blockd)) {
			perror(blockd_path);
			return 1;
		}
		blockd_path = abs_blockd;
		if (mkdir(dir, 0700) && errno != EEXIST) {
			perror(dir);
			return 1;
		}
		if (!realpath(dir, abs_dir)) {
			perror(dir);
			return 1;
		}
		dir = abs_dir;
	}
	snprintf(sock, sizeof(sock), "%s/store.sock", dir);
	snprintf(logpath, sizeof(logpath), "%s.log", dir);
	if (chdir(dir)) {
		perror(dir);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	atexit(kill_running);
	for (c = 1; c <= cycles; c++) {
		pid_t pid = start_blockd();
		struct kura_client *cl = connect_wait(pid);
		uint64_t deadline, inq = 0;
		int st;

		verify(cl, c);
		deadline = kura_now_ns() + (20 + rnd() % 280) * 1000000ULL;
		while (kura_now_ns() < deadline) {
			struct kura_proto_resp resp;
			while (inq < QD) {
				submit(cl, ++tag, buf);
				inq++;
			}
			int rerr = kura_client_recv(cl, &resp, NULL, 0);
			if (rerr) {
				fprintf(stderr, "cycle %u: connection lost while writing: %s\n", c,
					strerror(-rerr));
				return 1;
			}
			if (resp.status) {
				fprintf(stderr, "cycle %u: write %llu failed: %d\n", c,
					(unsigned long long)resp.tag, resp.status);
				return 1;
			}
			acked(resp.tag);
			total_acked++;
			inq--;
		}
		if (getenv("KURA_CRASHTEST_DEBUG"))
			fprintf(stderr, "cycle %u: killing %d after %llu writes\n", c, (int)pid,
				(unsigned long long)tag);
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		running = -1;
		kura_client_close(cl);
		/* the dead process's listening socket may linger while the kernel tears
		 * down its io_uring; only the next blockd's socket may be used */
		unlink(sock);
		memset(infl, 0, sizeof(infl));
	}
	{
		/* a last start, verify and a clean stop */
		pid_t pid = start_blockd();
		struct kura_client *cl = connect_wait(pid);
		int st;

		verify(cl, c);
		kura_client_close(cl);
		kill(pid, SIGTERM);
		waitpid(pid, &st, 0);
		running = -1;
		if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			fprintf(stderr, "blockd did not stop cleanly on SIGTERM; see %s\n", logpath);
			return 1;
		}
	}
	printf("crash test: %u cycles passed, %llu acknowledged writes checked\n", cycles,
	       (unsigned long long)total_acked);
	free(buf);
	return 0;
}
