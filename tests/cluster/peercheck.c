/* Checks a node's node-to-node listener from outside, as another node (or a
 * hostile host) would: HELLO first, the cluster id checked, every field of
 * the hello validated, a second HELLO or a request before it closes the
 * link, and the node keeps serving other links; then store data round
 * trips over a link.
 *
 * usage: kura-peercheck ADDR:PORT CLUSTER_ID
 * Prints "ok: ..." per check; exits 1 at the first failure. */
#include "blockd/client.h"
#include "blockd/store.h"
#include "common/usock.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(c)                                                                          \
	do {                                                                              \
		if (!(c)) {                                                               \
			fprintf(stderr, "peercheck:%d: %s\n", __LINE__, #c);              \
			exit(1);                                                          \
		}                                                                         \
	} while (0)

#define TEST_LAYER 0x7e57000000ull /* far above any vdisk layer id */

static const char *addr, *cluster;

static struct kura_client *link_open(void)
{
	struct kura_client *c;

	CHECK(kura_client_connect_tcp(addr, &c) == 0);
	return c;
}

static void hello_fill(struct kura_proto_hello *h, const char *id, const char *node)
{
	memset(h, 0, sizeof(*h));
	h->version = KURA_PROTO_VERSION;
	h->epoch = 1;
	memcpy(h->cluster_id, id, strnlen(id, 36));
	snprintf(h->node, sizeof(h->node), "%s", node);
}

/* Sends a HELLO; returns the status (transport errors too). */
static int hello(struct kura_client *c, const struct kura_proto_hello *h,
		 struct kura_proto_hello *answer)
{
	struct kura_proto_req q = { .magic = KURA_PROTO_MAGIC, .op = KURA_OP_HELLO,
				    .data_len = sizeof(*h) };
	struct kura_proto_hello a;
	size_t got = 0;
	int st = kura_client_call(c, &q, h, &a, sizeof(a), &got);

	if (!st && answer) {
		CHECK(got == sizeof(a));
		*answer = a;
	}
	return st;
}

/* The server has closed c: a read sees end of stream (or a reset). */
static void expect_closed(struct kura_client *c, const char *what)
{
	struct kura_proto_resp r;
	int st = kura_client_recv(c, &r, NULL, 0);

	if (st >= 0 && r.status < 0) /* a refusal answered first */
		st = kura_client_recv(c, &r, NULL, 0);
	CHECK(st < 0);
	kura_client_close(c);
	printf("ok: %s: link closed\n", what);
}

static void bad_hello(const char *what, void (*spoil)(struct kura_proto_hello *h))
{
	struct kura_client *c = link_open();
	struct kura_proto_hello h;

	hello_fill(&h, cluster, "peercheck");
	spoil(&h);
	CHECK(hello(c, &h, NULL) != 0);
	expect_closed(c, what);
}

static void spoil_version(struct kura_proto_hello *h) { h->version = 2; }
static void spoil_pad(struct kura_proto_hello *h) { h->reserved = 1; }
static void spoil_id(struct kura_proto_hello *h) { h->cluster_id[20] = '\0'; }
static void spoil_name(struct kura_proto_hello *h) { h->node[3] = ' '; }
static void spoil_padding(struct kura_proto_hello *h) { h->node[40] = 'x'; }
static void spoil_unterminated(struct kura_proto_hello *h) { memset(h->node, 'a', sizeof(h->node)); }

static void round_trip(struct kura_client *c)
{
	struct kura_proto_req q = { .magic = KURA_PROTO_MAGIC, .op = KURA_OP_WRITE,
				    .cls = KURA_IO_REBUILD, .layer = TEST_LAYER, .ext = 3, .blk = 5,
				    .nblk = 2, .data_len = 2 * KURA_BLK_SIZE, .version = 7 };
	uint8_t *w = malloc(2 * KURA_BLK_SIZE), *r = malloc(2 * KURA_BLK_SIZE);
	size_t got = 0;

	CHECK(w && r);
	for (size_t i = 0; i < 2 * KURA_BLK_SIZE; i++)
		w[i] = (uint8_t)(i * 7 + 3);
	CHECK(kura_client_call(c, &q, w, NULL, 0, &got) == 0);
	q = (struct kura_proto_req){ .magic = KURA_PROTO_MAGIC, .op = KURA_OP_READ,
				     .cls = KURA_IO_REBUILD, .layer = TEST_LAYER, .ext = 3,
				     .blk = 5, .nblk = 2 };
	CHECK(kura_client_call(c, &q, NULL, r, 2 * KURA_BLK_SIZE, &got) == 0);
	CHECK(got == 2 * KURA_BLK_SIZE && !memcmp(w, r, got));
	q = (struct kura_proto_req){ .magic = KURA_PROTO_MAGIC, .op = KURA_OP_FREE,
				     .layer = TEST_LAYER, .ext = 3 };
	CHECK(kura_client_call(c, &q, NULL, NULL, 0, &got) == 0);
	free(w);
	free(r);
	printf("ok: 8 KiB written and read back over a node link, then freed\n");
}

int main(int argc, char **argv)
{
	struct kura_proto_hello h, a;
	struct kura_proto_req q;
	struct kura_client *c;
	size_t got;

	if (argc != 3) {
		fprintf(stderr, "usage: kura-peercheck ADDR:PORT CLUSTER_ID\n");
		return 2;
	}
	addr = argv[1];
	cluster = argv[2];

	/* a request before HELLO */
	c = link_open();
	q = (struct kura_proto_req){ .magic = KURA_PROTO_MAGIC, .op = KURA_OP_STATS };
	CHECK(kura_client_send(c, &q, NULL) == 0);
	expect_closed(c, "a request before hello");

	/* another cluster's node: refused with -EXDEV */
	c = link_open();
	hello_fill(&h, "11111111-2222-3333-4444-555555555555", "intruder");
	CHECK(hello(c, &h, NULL) == -EXDEV);
	expect_closed(c, "a node of another cluster (EXDEV)");

	bad_hello("hello of protocol version 2", spoil_version);
	bad_hello("hello with a reserved field set", spoil_pad);
	bad_hello("hello with a short cluster id", spoil_id);
	bad_hello("hello with a space in the node name", spoil_name);
	bad_hello("hello with bytes after the name's NUL", spoil_padding);
	bad_hello("hello with an unterminated name", spoil_unterminated);

	/* a hello of the wrong size is a framing error */
	c = link_open();
	q = (struct kura_proto_req){ .magic = KURA_PROTO_MAGIC, .op = KURA_OP_HELLO, .data_len = 64 };
	{
		uint8_t junk[64] = { 0 };
		CHECK(kura_client_send(c, &q, junk) == 0);
	}
	expect_closed(c, "a hello of 64 bytes");

	/* garbage */
	{
		struct sockaddr_storage ss;
		socklen_t sl;
		uint8_t junk[200];
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = (uint8_t)(i * 31 + 1);
		CHECK(fd >= 0 && !kura_tcp_parse(addr, &ss, &sl));
		CHECK(!connect(fd, (struct sockaddr *)&ss, sl));
		CHECK(write(fd, junk, sizeof(junk)) == (ssize_t)sizeof(junk));
		CHECK(read(fd, junk, sizeof(junk)) <= 0);
		close(fd);
		printf("ok: garbage bytes: link closed\n");
	}

	/* a good link: the answer names the node and its cluster */
	c = link_open();
	hello_fill(&h, cluster, "peercheck");
	CHECK(hello(c, &h, &a) == 0);
	CHECK(a.version == KURA_PROTO_VERSION && a.epoch >= 1);
	CHECK(!memcmp(a.cluster_id, cluster, 36));
	CHECK(a.node[0] && memchr(a.node, 0, sizeof(a.node)));
	printf("ok: hello answered by node %s, map epoch %llu\n", a.node,
	       (unsigned long long)a.epoch);
	round_trip(c);

	/* a second HELLO on that link closes it */
	CHECK(hello(c, &h, NULL) != 0);
	kura_client_close(c);
	printf("ok: a second hello: link closed\n");

	/* and the node still serves a new link */
	c = link_open();
	CHECK(hello(c, &h, &a) == 0);
	q = (struct kura_proto_req){ .magic = KURA_PROTO_MAGIC, .op = KURA_OP_STATS };
	{
		char buf[16384];
		CHECK(kura_client_call(c, &q, NULL, buf, sizeof(buf), &got) == 0 && got > 0);
	}
	kura_client_close(c);
	printf("ok: after all that the node serves a new link\n");
	return 0;
}
