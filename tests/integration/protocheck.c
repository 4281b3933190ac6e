/* Checks blockd's store protocol from outside, as a client would: data round
 * trips, field errors are answered, framing errors close only that
 * connection, truncated and garbage input and a client that never reads
 * leave the server serving everyone else.
 *
 * usage: kura-protocheck DATA_DIR   (the socket and blockd's pid, from its
 * LOCK file, are found there) */
#include "blockd/client.h"
#include "blockd/store.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static const char *sock;
static int pid;

#define CHECK(c)                                                                          \
	do {                                                                              \
		if (!(c)) {                                                               \
			fprintf(stderr, "protocheck:%d: %s\n", __LINE__, #c);             \
			exit(1);                                                          \
		}                                                                         \
	} while (0)

static struct kura_client *conn(void)
{
	struct kura_client *c;
	CHECK(kura_client_connect(sock, &c) == 0);
	return c;
}

static int raw_conn(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	return fd;
}

/* The server closes a connection after a framing error: recv sees EOF. */
static void expect_closed(const void *msg, size_t len)
{
	char buf[64];
	int fd = raw_conn();
	struct timeval tv = { .tv_sec = 5 };
	ssize_t n;

	CHECK(send(fd, msg, len, MSG_NOSIGNAL) == (ssize_t)len);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	n = recv(fd, buf, sizeof(buf), 0);
	CHECK(n == 0 || (n < 0 && errno == ECONNRESET));
	close(fd);
}

static void still_serving(void)
{
	struct kura_client *c = conn();
	struct kura_proto_req q = { .op = KURA_OP_INFO, .layer = 5, .ext = 2 };
	struct kura_proto_info info;
	size_t got;

	CHECK(kill(pid, 0) == 0);
	CHECK(kura_client_call(c, &q, NULL, &info, sizeof(info), &got) == 0);
	CHECK(got == sizeof(info) && info.version == 7);
	kura_client_close(c);
}

static long rss_kib(void)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kib = strtol(line + 6, NULL, 10);
	if (f)
		fclose(f);
	return kib;
}

int main(int argc, char **argv)
{
	uint8_t *w = kura_aligned_alloc(3 * KURA_BLK_SIZE), *r = kura_aligned_alloc(KURA_EXT_SIZE);
	struct kura_client *c;
	struct kura_proto_req q;
	struct kura_proto_info info;
	uint64_t exts[4];
	char stats[16384];
	size_t got;

	static char sockpath[4200];
	char lock[4200], exe[64], target[256];
	FILE *lf;
	ssize_t n;

	if (argc != 2) {
		fprintf(stderr, "usage: kura-protocheck DATA_DIR\n");
		return 2;
	}
	snprintf(sockpath, sizeof(sockpath), "%s/store.sock", argv[1]);
	sock = sockpath;
	snprintf(lock, sizeof(lock), "%s/LOCK", argv[1]);
	lf = fopen(lock, "r");
	CHECK(lf && fscanf(lf, "%d", &pid) == 1);
	fclose(lf);
	snprintf(exe, sizeof(exe), "/proc/%d/exe", pid);
	n = readlink(exe, target, sizeof(target) - 1);
	CHECK(n > 0);
	target[n] = '\0';
	CHECK(strstr(target, "blockd") != NULL); /* LOCK names the running blockd */
	signal(SIGPIPE, SIG_IGN);

	/* data round trip, extent info, list, stats */
	c = conn();
	for (unsigned i = 0; i < 3 * KURA_BLK_SIZE; i++)
		w[i] = (uint8_t)(i * 7 + 3);
	q = (struct kura_proto_req){ .op = KURA_OP_WRITE, .layer = 5, .ext = 2, .blk = 10,
				     .nblk = 3, .data_len = 3 * KURA_BLK_SIZE, .version = 7 };
	CHECK(kura_client_call(c, &q, w, NULL, 0, &got) == 0);
	q = (struct kura_proto_req){ .op = KURA_OP_READ, .layer = 5, .ext = 2, .blk = 9, .nblk = 5 };
	CHECK(kura_client_call(c, &q, NULL, r, KURA_EXT_SIZE, &got) == 0);
	CHECK(got == 5 * KURA_BLK_SIZE);
	CHECK(memcmp(r + KURA_BLK_SIZE, w, 3 * KURA_BLK_SIZE) == 0);
	for (unsigned i = 0; i < KURA_BLK_SIZE; i++)
		CHECK(r[i] == 0 && r[4 * KURA_BLK_SIZE + i] == 0);
	q = (struct kura_proto_req){ .op = KURA_OP_INFO, .layer = 5, .ext = 2 };
	CHECK(kura_client_call(c, &q, NULL, &info, sizeof(info), &got) == 0);
	CHECK(info.version == 7 && info.nblocks == 3 && info.present[0] == (7ull << 10));
	q = (struct kura_proto_req){ .op = KURA_OP_LIST, .layer = 5 };
	CHECK(kura_client_call(c, &q, NULL, exts, sizeof(exts), &got) == 0);
	CHECK(got == 8 && exts[0] == 2);
	q = (struct kura_proto_req){ .op = KURA_OP_STATS };
	CHECK(kura_client_call(c, &q, NULL, stats, sizeof(stats) - 1, &got) == 0);
	stats[got] = '\0';
	CHECK(strstr(stats, "\"io_errors\":0") && strstr(stats, "\"crc_errors\":0") &&
	      strstr(stats, "\"used_bytes\":1048576"));
	printf("round trip, info, list and stats: ok\n");

	/* bad fields are answered and the connection stays */
	q = (struct kura_proto_req){ .op = KURA_OP_READ, .layer = 5, .ext = 2, .blk = 250, .nblk = 10 };
	CHECK(kura_client_call(c, &q, NULL, r, KURA_EXT_SIZE, &got) == -EINVAL);
	q = (struct kura_proto_req){ .op = KURA_OP_READ, .layer = 5, .ext = 2, .nblk = 1, .cls = 9 };
	CHECK(kura_client_call(c, &q, NULL, r, KURA_EXT_SIZE, &got) == -EINVAL);
	q = (struct kura_proto_req){ .op = KURA_OP_READ, .layer = 5, .ext = 1ull << 40, .nblk = 1 };
	CHECK(kura_client_call(c, &q, NULL, r, KURA_EXT_SIZE, &got) == -EINVAL);
	q = (struct kura_proto_req){ .op = KURA_OP_FREE, .layer = 99, .ext = 1 };
	CHECK(kura_client_call(c, &q, NULL, NULL, 0, &got) == -ENOENT);
	q = (struct kura_proto_req){ .op = KURA_OP_INFO, .layer = 5, .ext = 2 };
	CHECK(kura_client_call(c, &q, NULL, &info, sizeof(info), &got) == 0);
	kura_client_close(c);
	printf("field errors answered with EINVAL/ENOENT: ok\n");

	/* many requests sent back to back, in pieces that cut headers and data
	 * anywhere (one larger than the server's receive buffer): every one is
	 * answered once, and the data reads back */
	{
		enum { NW = 41 };
		size_t cuts[] = { 1, 63, 64, 65, 4095, 4097, 100000 }, len = 0, off = 0;
		uint8_t *blob = malloc((size_t)NW * (64 + 64 * KURA_BLK_SIZE));
		struct kura_proto_resp resp;
		uint8_t seen[NW] = { 0 };
		int fd = raw_conn();

		CHECK(blob);
		for (unsigned i = 0; i < NW; i++) {
			unsigned nb = i == 20 ? 64 : 1 + i % 3;
			q = (struct kura_proto_req){ .magic = KURA_PROTO_MAGIC, .op = KURA_OP_WRITE,
						     .tag = 1000 + i, .layer = 6, .ext = i, .blk = 3,
						     .nblk = (uint16_t)nb,
						     .data_len = nb * KURA_BLK_SIZE, .version = 1 };
			memcpy(blob + len, &q, sizeof(q));
			len += sizeof(q);
			for (size_t k = 0; k < (size_t)nb * KURA_BLK_SIZE; k++)
				blob[len + k] = (uint8_t)(k * 13 + i * 7 + 1);
			len += (size_t)nb * KURA_BLK_SIZE;
		}
		for (unsigned k = 0; off < len; k++) {
			size_t n = KURA_MIN(cuts[k % 7], len - off);
			CHECK(send(fd, blob + off, n, MSG_NOSIGNAL) == (ssize_t)n);
			off += n;
			if (k % 5 == 0)
				usleep(2000); /* let the server take a part alone */
		}
		for (unsigned i = 0; i < NW; i++) {
			CHECK(recv(fd, &resp, sizeof(resp), MSG_WAITALL) == (ssize_t)sizeof(resp));
			CHECK(resp.magic == KURA_PROTO_RESP_MAGIC && resp.status == 0 &&
			      resp.tag >= 1000 && resp.tag < 1000 + NW && !seen[resp.tag - 1000] &&
			      resp.data_len == 0);
			seen[resp.tag - 1000] = 1;
		}
		close(fd);
		c = conn();
		for (unsigned i = 0; i < NW; i++) {
			unsigned nb = i == 20 ? 64 : 1 + i % 3;
			q = (struct kura_proto_req){ .op = KURA_OP_READ, .layer = 6, .ext = i, .blk = 3,
						     .nblk = (uint16_t)nb };
			CHECK(kura_client_call(c, &q, NULL, r, KURA_EXT_SIZE, &got) == 0);
			CHECK(got == (size_t)nb * KURA_BLK_SIZE);
			for (size_t k = 0; k < got; k++)
				CHECK(r[k] == (uint8_t)(k * 13 + i * 7 + 1));
		}
		kura_client_close(c);
		free(blob);
		printf("%d requests in pieces cut anywhere, each answered, read back: ok\n", NW);
	}

	/* framing errors close that connection only */
	{
		struct kura_proto_req bad;
		uint8_t blob[64 + 4096];

		bad = (struct kura_proto_req){ .magic = 0xdeadbeef, .op = KURA_OP_READ, .nblk = 1 };
		expect_closed(&bad, sizeof(bad));
		bad = (struct kura_proto_req){ .magic = KURA_PROTO_MAGIC, .op = 77 };
		expect_closed(&bad, sizeof(bad));
		/* HELLO opens node links (TCP) only */
		bad = (struct kura_proto_req){ .magic = KURA_PROTO_MAGIC, .op = KURA_OP_HELLO,
					       .data_len = sizeof(struct kura_proto_hello) };
		memset(blob, 0, sizeof(blob));
		memcpy(blob, &bad, sizeof(bad));
		expect_closed(blob, sizeof(bad) + sizeof(struct kura_proto_hello));
		bad = (struct kura_proto_req){ .magic = KURA_PROTO_MAGIC, .op = KURA_OP_READ, .flags = 1, .nblk = 1 };
		expect_closed(&bad, sizeof(bad));
		bad = (struct kura_proto_req){ .magic = KURA_PROTO_MAGIC, .op = KURA_OP_WRITE, .nblk = 2,
					       .data_len = 4096 };
		memcpy(blob, &bad, sizeof(bad));
		expect_closed(blob, sizeof(blob));
		bad = (struct kura_proto_req){ .magic = KURA_PROTO_MAGIC, .op = KURA_OP_WRITE, .nblk = 1,
					       .data_len = 0xffffffffu };
		expect_closed(&bad, sizeof(bad));
		bad = (struct kura_proto_req){ .magic = KURA_PROTO_MAGIC, .op = KURA_OP_READ, .nblk = 1,
					       .data_len = 16 };
		expect_closed(&bad, sizeof(bad));
		still_serving();
		printf("framing errors close the connection, server keeps serving: ok\n");

		/* truncated header, truncated payload, then the client vanishes */
		int fd = raw_conn();
		CHECK(send(fd, &bad, 20, 0) == 20);
		close(fd);
		bad = (struct kura_proto_req){ .magic = KURA_PROTO_MAGIC, .op = KURA_OP_WRITE, .layer = 5,
					       .ext = 3, .nblk = 4, .data_len = 4 * 4096 };
		fd = raw_conn();
		CHECK(send(fd, &bad, sizeof(bad), 0) == sizeof(bad));
		CHECK(send(fd, blob, 1000, 0) == 1000);
		close(fd);
		still_serving();
		/* a write that was never complete left nothing behind */
		c = conn();
		q = (struct kura_proto_req){ .op = KURA_OP_INFO, .layer = 5, .ext = 3 };
		CHECK(kura_client_call(c, &q, NULL, &info, sizeof(info), &got) == -ENOENT);
		kura_client_close(c);
		printf("truncated requests and vanished clients: ok\n");

		/* garbage headers */
		srand(42);
		for (int i = 0; i < 200; i++) {
			for (unsigned k = 0; k < sizeof(blob); k++)
				blob[k] = (uint8_t)rand();
			if (i % 2) { /* plausible magic and op, random rest */
				((struct kura_proto_req *)blob)->magic = KURA_PROTO_MAGIC;
				((struct kura_proto_req *)blob)->op = (uint16_t)(1 + i % 9);
			}
			fd = raw_conn();
			send(fd, blob, 64 + (size_t)(rand() % 4096), MSG_NOSIGNAL);
			close(fd);
		}
		still_serving();
		printf("200 garbage requests: ok\n");
	}

	/* a client that sends 2000 reads of 1 MiB and never reads the answers */
	{
		long before = rss_kib(), after;
		int slow = raw_conn(), sent = 0;
		struct kura_client *other;

		q = (struct kura_proto_req){ .magic = KURA_PROTO_MAGIC, .op = KURA_OP_READ, .layer = 5,
					     .ext = 2, .nblk = KURA_EXT_BLOCKS };
		/* send until the server stops taking requests (its back-pressure) */
		for (int i = 0; i < 2000; i++) {
			q.tag = (uint64_t)i;
			if (send(slow, &q, sizeof(q), MSG_DONTWAIT | MSG_NOSIGNAL) != sizeof(q))
				break;
			sent++;
		}
		printf("slow client: %d reads of 1 MiB sent before the socket filled\n", sent);
		usleep(300000);
		other = conn();
		q = (struct kura_proto_req){ .op = KURA_OP_READ, .layer = 5, .ext = 2, .blk = 10, .nblk = 3 };
		CHECK(kura_client_call(other, &q, NULL, r, KURA_EXT_SIZE, &got) == 0);
		CHECK(memcmp(r, w, 3 * KURA_BLK_SIZE) == 0);
		kura_client_close(other);
		after = rss_kib();
		printf("slow client: blockd RSS %ld KiB before, %ld KiB with %d MiB of answers unread\n",
		       before, after, sent);
		CHECK(after - before < 200 * 1024);
		close(slow);
		still_serving();
		printf("slow client does not stall others or grow the server: ok\n");
	}
	free(w);
	free(r);
	return 0;
}
