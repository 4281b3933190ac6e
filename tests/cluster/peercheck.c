/* Checks a node's node-to-node listener from outside, as another node (or a
 * hostile host) would: HELLO first, the cluster id checked, every field of
 * the hello validated, a second HELLO or a request before it closes the
 * link, and the node keeps serving other links; then store data round
 * trips over a link. SYNC: one of the wrong size closes the link; one that
 * breaks a field rule gets -EINVAL and the link goes on; a well-formed one
 * from a node that is not in the map gets -EREMOTE and changes nothing.
 *
 * usage: kura-peercheck ADDR:PORT CLUSTER_ID
 * Prints "ok: ..." per check; exits 1 at the first failure. */
#include "blockd/client.h"
#include "blockd/store.h"
#include "common/usock.h"
#include "common/util.h"
#include "replication/map.h"

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
#define TEST_PGS 16u                /* 020-node-links.sh: cluster init --pgs 16 */

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

static void spoil_version(struct kura_proto_hello *h) { h->version = KURA_PROTO_VERSION + 1; }
static void spoil_pad(struct kura_proto_hello *h) { h->reserved = 1; }
static void spoil_id(struct kura_proto_hello *h) { h->cluster_id[20] = '\0'; }
static void spoil_name(struct kura_proto_hello *h) { h->node[3] = ' '; }
static void spoil_padding(struct kura_proto_hello *h) { h->node[40] = 'x'; }
static void spoil_unterminated(struct kura_proto_hello *h) { memset(h->node, 'a', sizeof(h->node)); }

/* A node that is not the group's primary or source may not change this
 * node's copy: its writes and frees are refused (EREMOTE), its reads
 * served. */
static struct kura_client *link_open_hello(void)
{
	struct kura_client *c = link_open();
	struct kura_proto_hello h;

	hello_fill(&h, cluster, "peercheck");
	CHECK(hello(c, &h, NULL) == 0);
	return c;
}

static void round_trip(void)
{
	struct kura_client *c = link_open_hello();
	struct kura_proto_req q = { .magic = KURA_PROTO_MAGIC, .op = KURA_OP_WRITE,
				    .cls = KURA_IO_REBUILD, .layer = TEST_LAYER, .ext = 3, .blk = 5,
				    .nblk = 2, .data_len = 2 * KURA_BLK_SIZE, .version = 7 };
	uint8_t *w = malloc(2 * KURA_BLK_SIZE), *r = malloc(2 * KURA_BLK_SIZE);
	size_t got = 0;

	CHECK(w && r);
	for (size_t i = 0; i < 2 * KURA_BLK_SIZE; i++)
		w[i] = (uint8_t)(i * 7 + 3);
	CHECK(kura_client_call(c, &q, w, NULL, 0, &got) == -EREMOTE);
	q.flags = KURA_PROTO_F_REPLICA;
	CHECK(kura_client_call(c, &q, w, NULL, 0, &got) == -EREMOTE);
	kura_client_close(c); /* a refused copy closes the link */
	c = link_open_hello();
	q = (struct kura_proto_req){ .magic = KURA_PROTO_MAGIC, .op = KURA_OP_FREE,
				     .layer = TEST_LAYER, .ext = 3 };
	CHECK(kura_client_call(c, &q, NULL, NULL, 0, &got) == -EREMOTE);
	q = (struct kura_proto_req){ .magic = KURA_PROTO_MAGIC, .op = KURA_OP_READ,
				     .cls = KURA_IO_REBUILD, .layer = TEST_LAYER, .ext = 3,
				     .blk = 5, .nblk = 2 };
	CHECK(kura_client_call(c, &q, NULL, r, 2 * KURA_BLK_SIZE, &got) == 0);
	CHECK(got == 2 * KURA_BLK_SIZE);
	for (size_t i = 0; i < got; i++)
		CHECK(r[i] == 0);
	kura_client_close(c);
	free(w);
	free(r);
	printf("ok: writes, copies and frees from a node that is not the group's primary "
	       "refused (EREMOTE); reads served\n");
}

/* A READ on c still answers (absent blocks read as zeros). */
static void read_works(struct kura_client *c)
{
	struct kura_proto_req q = { .magic = KURA_PROTO_MAGIC, .op = KURA_OP_READ,
				    .cls = KURA_IO_REBUILD, .layer = TEST_LAYER, .ext = 0,
				    .blk = 0, .nblk = 1 };
	uint8_t *b = malloc(KURA_BLK_SIZE);
	size_t got = 0;

	CHECK(b);
	CHECK(kura_client_call(c, &q, NULL, b, KURA_BLK_SIZE, &got) == 0 && got == KURA_BLK_SIZE);
	free(b);
}

/* A link that has said a good HELLO as node "peercheck". */
static struct kura_client *greeted_link(void)
{
	struct kura_client *c = link_open();
	struct kura_proto_hello h;

	hello_fill(&h, cluster, "peercheck");
	CHECK(hello(c, &h, NULL) == 0);
	return c;
}

/* A SYNC of data_len bytes is a framing error: the link closes (the whole
 * data is sent; the node may reset the link before it has all gone). */
static void bad_sync_size(const char *what, uint32_t data_len)
{
	struct kura_client *c = greeted_link();
	struct kura_proto_req q = { .magic = KURA_PROTO_MAGIC, .op = KURA_OP_SYNC,
				    .tag = 1, .data_len = data_len };
	uint8_t *d = calloc(1, data_len);

	CHECK(d);
	(void)kura_client_send(c, &q, d);
	free(d);
	expect_closed(c, what);
}

/* A SYNC that keeps every field rule: group pg of the test cluster's map,
 * range [from, to), n entries ascending and in pg. */
struct sync_msg {
	struct kura_proto_sync h;
	struct kura_proto_sync_ent e[2];
	unsigned n; /* entries sent */
};

static struct kura_map map16 = { .pgs = TEST_PGS }; /* kura_map_pg reads only pgs */
static uint64_t sync_e0, sync_e1, sync_other; /* exts of TEST_LAYER; see sync_base */

/* The base of the field cases: group pg of (TEST_LAYER, KURA_EXT_MAX), so
 * that an entry of that extent breaks no rule but the extent number's;
 * range the whole test layer; entries sync_e0 < sync_e1, both in pg.
 * sync_other lies between them in another group. */
static void sync_base(struct sync_msg *m)
{
	uint32_t pg = kura_map_pg(&map16, TEST_LAYER, KURA_EXT_MAX);

	if (!sync_e1) {
		uint64_t x = 1, found[2];
		unsigned k = 0;

		for (; k < 2; x++) {
			CHECK(x < 100000);
			if (kura_map_pg(&map16, TEST_LAYER, x) == pg)
				found[k++] = x;
		}
		sync_e0 = found[0];
		sync_e1 = found[1];
		for (x = sync_e0 + 1; x < sync_e1 && kura_map_pg(&map16, TEST_LAYER, x) == pg; x++)
			;
		CHECK(x < sync_e1); /* another group's extent between the two */
		sync_other = x;
	}
	memset(m, 0, sizeof(*m));
	m->h.pg = pg;
	m->h.n = 2;
	m->h.from_layer = TEST_LAYER;
	m->h.from_ext = 0;
	m->h.to_layer = TEST_LAYER + 1;
	m->h.to_ext = 0;
	m->e[0] = (struct kura_proto_sync_ent){ .layer = TEST_LAYER, .ext = sync_e0, .version = 3 };
	m->e[1] = (struct kura_proto_sync_ent){ .layer = TEST_LAYER, .ext = sync_e1, .version = 4 };
	m->n = 2;
}

/* Sends m on c; returns the status, and a result's size in *got. */
static int sync_call(struct kura_client *c, const struct sync_msg *m, size_t *got)
{
	uint8_t d[sizeof(m->h) + sizeof(m->e)];
	struct kura_proto_sync_result res;
	struct kura_proto_req q = { .magic = KURA_PROTO_MAGIC, .op = KURA_OP_SYNC,
				    .data_len = (uint32_t)(sizeof(m->h) +
							   m->n * sizeof(m->e[0])) };

	memcpy(d, &m->h, sizeof(m->h));
	memcpy(d + sizeof(m->h), m->e, m->n * sizeof(m->e[0]));
	*got = 0;
	return kura_client_call(c, &q, d, &res, sizeof(res), got);
}

/* A well-framed SYNC breaking one field rule: -EINVAL, and the link goes on. */
static void bad_sync_field(const char *what, void (*spoil)(struct sync_msg *m))
{
	struct kura_client *c = greeted_link();
	struct sync_msg m;
	size_t got;

	sync_base(&m);
	spoil(&m);
	CHECK(sync_call(c, &m, &got) == -EINVAL);
	read_works(c);
	kura_client_close(c);
	printf("ok: sync with %s: EINVAL, the link still serves\n", what);
}

static void spoil_count(struct sync_msg *m) { m->h.n = 3; }
static void spoil_reserved(struct sync_msg *m) { m->h.reserved = 1; }
static void spoil_budget(struct sync_msg *m) { m->h.budget = KURA_PROTO_SYNC_BUDGET + 1; }
static void spoil_pg(struct sync_msg *m) { m->h.pg = 0xffffffffu; }
static void spoil_range(struct sync_msg *m)
{
	/* no entries: a reversed range holds none that would fit it */
	m->h.from_layer = TEST_LAYER;
	m->h.from_ext = sync_e1;
	m->h.to_layer = TEST_LAYER;
	m->h.to_ext = sync_e0;
	m->h.n = 0;
	m->n = 0;
}
static void spoil_order(struct sync_msg *m)
{
	struct kura_proto_sync_ent t = m->e[0];

	m->e[0] = m->e[1];
	m->e[1] = t;
}
static void spoil_duplicate(struct sync_msg *m) { m->e[1] = m->e[0]; }
static void spoil_below(struct sync_msg *m) { m->h.from_ext = sync_e0 + 1; }
static void spoil_at_end(struct sync_msg *m)
{
	m->h.to_layer = TEST_LAYER;
	m->h.to_ext = sync_e1; /* exclusive */
}
static void spoil_ext(struct sync_msg *m) { m->e[1].ext = KURA_EXT_MAX; }
static void spoil_group(struct sync_msg *m) { m->e[1].ext = sync_other; }

/* The test layer holds nothing on the node. */
static void layer_empty(struct kura_client *c)
{
	struct kura_proto_req q = { .magic = KURA_PROTO_MAGIC, .op = KURA_OP_LIST,
				    .layer = TEST_LAYER };
	uint64_t exts[16];
	size_t got = 1;

	CHECK(kura_client_call(c, &q, NULL, exts, sizeof(exts), &got) == 0 && got == 0);
}

/* The node's store write count (STATS). */
static unsigned long long store_writes(struct kura_client *c)
{
	struct kura_proto_req q = { .magic = KURA_PROTO_MAGIC, .op = KURA_OP_STATS };
	char buf[16384];
	size_t got = 0;
	const char *p;

	CHECK(kura_client_call(c, &q, NULL, buf, sizeof(buf) - 1, &got) == 0 && got > 0);
	buf[got] = '\0';
	CHECK((p = strstr(buf, "\"writes\":")));
	return strtoull(p + strlen("\"writes\":"), NULL, 10);
}

static void sync_checks(void)
{
	struct kura_client *c;
	struct sync_msg m;
	unsigned long long writes;
	size_t got;

	/* framing: the size must be 48 + k * 24 bytes, k <= 4096 */
	bad_sync_size("a sync of 47 bytes", sizeof(struct kura_proto_sync) - 1);
	bad_sync_size("a sync of 48 + 23 bytes", sizeof(struct kura_proto_sync) + 23);
	bad_sync_size("a sync of 4097 entries",
		      (uint32_t)(sizeof(struct kura_proto_sync) +
				 (KURA_PROTO_SYNC_MAX + 1) * sizeof(struct kura_proto_sync_ent)));
	c = greeted_link();
	read_works(c);
	kura_client_close(c);
	printf("ok: after the syncs of the wrong size the node serves a new link\n");
	/* a READ takes F_PRIMARY only */
	c = greeted_link();
	{
		struct kura_proto_req q = { .magic = KURA_PROTO_MAGIC, .op = KURA_OP_READ,
					    .flags = KURA_PROTO_F_REPLICA, .layer = TEST_LAYER,
					    .nblk = 1 };

		CHECK(kura_client_send(c, &q, NULL) == 0);
	}
	expect_closed(c, "a read flagged as a replica's copy");

	/* the base of the field cases keeps every rule: only the membership
	 * check refuses it (peercheck is no member) */
	c = greeted_link();
	sync_base(&m);
	CHECK(sync_call(c, &m, &got) == -EREMOTE && got == 0);
	kura_client_close(c);
	printf("ok: a well-formed sync of group %u (extents %llu, %llu): EREMOTE\n", m.h.pg,
	       (unsigned long long)sync_e0, (unsigned long long)sync_e1);

	bad_sync_field("n not the entry count", spoil_count);
	bad_sync_field("a reserved field set", spoil_reserved);
	bad_sync_field("a budget over 16 extents", spoil_budget);
	bad_sync_field("group 0xffffffff", spoil_pg);
	bad_sync_field("from after to", spoil_range);
	bad_sync_field("two entries out of order", spoil_order);
	bad_sync_field("an entry twice", spoil_duplicate);
	bad_sync_field("an entry below from", spoil_below);
	bad_sync_field("an entry at to (exclusive)", spoil_at_end);
	bad_sync_field("an entry of extent 0xffffffff", spoil_ext);
	bad_sync_field("an entry of another group", spoil_group);

	/* a node that is not in the map: -EREMOTE, and nothing is written */
	c = greeted_link();
	layer_empty(c);
	writes = store_writes(c);
	memset(&m, 0, sizeof(m));
	m.h.pg = 0;
	m.h.to_layer = UINT64_MAX;
	m.h.to_ext = UINT64_MAX;
	CHECK(sync_call(c, &m, &got) == -EREMOTE && got == 0);
	layer_empty(c);
	CHECK(store_writes(c) == writes);
	read_works(c);
	kura_client_close(c);
	printf("ok: sync of group 0 from a node not in the map: EREMOTE, nothing written\n");
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

	/* a second HELLO on that link closes it */
	CHECK(hello(c, &h, NULL) != 0);
	kura_client_close(c);
	printf("ok: a second hello: link closed\n");
	round_trip();

	sync_checks();

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
