/* Node links against the real TCP server on a store on a fake disk, all on
 * one loop; and against a fake peer, a plain socket this test drives, for
 * what a real server never sends. */
#include "replication/link.h"
#include "blockd/server.h"
#include "common/util.h"
#include "tests/unit/harness.h"
#include "tests/unit/tstore.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define MEDIA (48ull << 20)
#define CLUSTER "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
#define OTHER_CLUSTER "9f0c1d2e-3a4b-4c5d-8e6f-708192a3b4c5"
#define SERVER_EPOCH 42
#define MS 1000000ull

/* ---- the two nodes' HELLOs ---- */

struct ident {
	const char *cluster, *name;
	uint64_t epoch;
};

static void fill_hello(const struct ident *id, struct kura_proto_hello *h)
{
	memset(h, 0, sizeof(*h));
	h->version = KURA_PROTO_VERSION;
	h->epoch = id->epoch;
	memcpy(h->cluster_id, id->cluster, 36);
	snprintf(h->node, sizeof(h->node), "%s", id->name);
}

/* As blockd's node_hello answers. */
static int server_hello(void *arg, const struct kura_proto_hello *in, struct kura_proto_hello *out,
			char *why, size_t len)
{
	const struct ident *id = arg;

	if (strncmp(in->cluster_id, id->cluster, 36)) {
		snprintf(why, len, "node %s belongs to cluster %.36s, this node to %s", in->node,
			 in->cluster_id, id->cluster);
		return -EXDEV;
	}
	fill_hello(id, out);
	return 0;
}

static const struct ident client_id = { CLUSTER, "node-a", 7 };

static void client_hello(void *arg, struct kura_proto_hello *out)
{
	(void)arg;
	fill_hello(&client_id, out);
}

/* ---- a store, its TCP server, a link to it ---- */

struct env {
	struct tstore t;
	struct fake_media *m;
	struct kura_loop *loop;
	struct ident srv_id;
	struct kura_server *srv;
	char addr[32];
	struct kura_link *l;
	unsigned ups, downs;
};

static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	CHECK(fd >= 0);
	CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static int server_start(struct env *e)
{
	struct kura_server_peer peer = { server_hello, &e->srv_id };
	char err[256];
	int rc = kura_server_start_tcp(e->loop, e->t.s, e->addr, &peer, &e->srv, err, sizeof(err));

	if (rc && rc != -EADDRINUSE)
		fprintf(stderr, "  server: %s\n", err);
	return rc;
}

static void env_store(struct env *e, const char *cluster)
{
	e->m = fake_media_create(MEDIA);
	CHECK_EQ(ts_open(&e->t, e->m, "s"), 0);
	e->loop = e->t.loop;
	e->srv_id = (struct ident){ cluster, "node-b", SERVER_EPOCH };
	snprintf(e->addr, sizeof(e->addr), "127.0.0.1:%d", free_port());
}

/* A store and its server on a free port. */
static void env_open(struct env *e, const char *cluster)
{
	int rc;

	env_store(e, cluster);
	for (int i = 0; (rc = server_start(e)) == -EADDRINUSE && i < 20; i++)
		snprintf(e->addr, sizeof(e->addr), "127.0.0.1:%d", free_port());
	CHECK_EQ(rc, 0);
}

static void on_state(void *arg, struct kura_link *l, int up)
{
	struct env *e = arg;

	CHECK(l == e->l);
	CHECK_EQ(kura_link_up(l), up);
	if (up)
		e->ups++;
	else
		e->downs++;
}

static void link_open(struct env *e, const char *peer, unsigned timeout_ms)
{
	struct kura_link_opts o = { .loop = e->loop, .addr = e->addr, .peer = peer,
				    .timeout_ms = timeout_ms, .hello = client_hello,
				    .state = on_state, .arg = e };

	CHECK_EQ(kura_link_open(&o, &e->l), 0);
}

static void env_close(struct env *e)
{
	kura_link_close(e->l);
	kura_server_stop(e->srv);
	ts_close(&e->t);
	fake_media_destroy(e->m);
}

/* Turns the loop until *n >= want or ms pass: whether it got there. */
static int wait_count(struct kura_loop *loop, const unsigned *n, unsigned want, unsigned ms)
{
	uint64_t end = kura_now_ns() + ms * MS;

	while (*n < want && kura_now_ns() < end)
		kura_loop_run_once(loop, 10 * MS);
	return *n >= want;
}

static void spin(struct kura_loop *loop, unsigned ms)
{
	uint64_t end = kura_now_ns() + ms * MS;

	while (kura_now_ns() < end)
		kura_loop_run_once(loop, 10 * MS);
}

/* ---- requests ---- */

struct treq {
	struct kura_link_req lr;
	unsigned calls;
	unsigned *done;
};

static void treq_cb(struct kura_link_req *r)
{
	struct treq *t = KURA_CONTAINER_OF(r, struct treq, lr);

	t->calls++;
	(*t->done)++;
}

static void prep(struct treq *t, unsigned *done, uint16_t op, uint64_t ext, unsigned blk,
		 unsigned nblk)
{
	memset(t, 0, sizeof(*t));
	t->lr.req.op = op;
	t->lr.req.layer = 1;
	t->lr.req.ext = ext;
	t->lr.req.blk = (uint16_t)blk;
	t->lr.req.nblk = (uint16_t)nblk;
	t->lr.req.version = 1;
	t->lr.cb = treq_cb;
	t->done = done;
}

static void prep_write(struct treq *t, unsigned *done, uint64_t ext, unsigned blk, unsigned nblk,
		       const void *data)
{
	prep(t, done, KURA_OP_WRITE, ext, blk, nblk);
	t->lr.data = data;
}

static void prep_read(struct treq *t, unsigned *done, uint64_t ext, unsigned blk, unsigned nblk,
		      void *buf)
{
	prep(t, done, KURA_OP_READ, ext, blk, nblk);
	t->lr.buf = buf;
	t->lr.cap = (size_t)nblk * KURA_BLK_SIZE;
}

/* One request, waited for: its status. */
static int call(struct env *e, struct treq *t)
{
	unsigned done = 0;

	t->done = &done;
	CHECK_EQ(kura_link_submit(e->l, &t->lr), 0);
	CHECK(wait_count(e->loop, &done, 1, 5000));
	return t->lr.status;
}

/* ---- the cases ---- */

TEST(test_link_up_pipelined_writes_read_back)
{
	struct env e = { 0 };
	struct treq w[64], r[64];
	uint8_t *data = ts_buf(64), *back = ts_buf(64);
	unsigned done = 0;

	env_open(&e, CLUSTER);
	link_open(&e, "node-b", 0);
	CHECK_EQ(kura_link_up(e.l), 0);
	CHECK_EQ(kura_link_peer_epoch(e.l), 0);
	CHECK(strcmp(kura_link_peer(e.l), "node-b") == 0);
	CHECK(wait_count(e.loop, &e.ups, 1, 3000));
	CHECK(kura_link_up(e.l));
	CHECK_EQ(kura_link_peer_epoch(e.l), SERVER_EPOCH);

	for (unsigned i = 0; i < 64; i++) {
		ts_fill(data + i * KURA_BLK_SIZE, 1000 + i, 5);
		prep_write(&w[i], &done, i / 16, (i % 16) * 3, 1, data + i * KURA_BLK_SIZE);
		CHECK_EQ(kura_link_submit(e.l, &w[i].lr), 0);
	}
	CHECK_EQ(done, 0); /* never from inside the submitting call */
	CHECK(wait_count(e.loop, &done, 64, 5000));
	for (unsigned i = 0; i < 64; i++) {
		CHECK_EQ(w[i].calls, 1);
		CHECK_EQ(w[i].lr.status, 0);
		CHECK_EQ(w[i].lr.got, 0);
	}
	memset(back, 0xee, 64 * KURA_BLK_SIZE);
	done = 0;
	for (unsigned i = 0; i < 64; i++) {
		prep_read(&r[i], &done, i / 16, (i % 16) * 3, 1, back + i * KURA_BLK_SIZE);
		CHECK_EQ(kura_link_submit(e.l, &r[i].lr), 0);
	}
	CHECK(wait_count(e.loop, &done, 64, 5000));
	for (unsigned i = 0; i < 64; i++) {
		CHECK_EQ(r[i].calls, 1);
		CHECK_EQ(r[i].lr.status, 0);
		CHECK_EQ(r[i].lr.got, KURA_BLK_SIZE);
		CHECK_EQ(ts_tag(back + i * KURA_BLK_SIZE, 5), 1000 + i);
		/* every request its own tag */
		CHECK(r[i].lr.req.tag != 0);
		for (unsigned j = 0; j < 64; j++)
			CHECK(r[i].lr.req.tag != w[j].lr.req.tag && (i == j || r[i].lr.req.tag !=
									r[j].lr.req.tag));
	}
	CHECK_EQ(e.ups, 1);
	CHECK_EQ(e.downs, 0);
	env_close(&e);
}

TEST(test_link_queued_requests_wait_for_a_server_that_starts_later)
{
	struct env e = { 0 };
	struct treq w[4], r;
	uint8_t *data = ts_buf(4), *back = ts_buf(4);
	unsigned done = 0, rdone = 0;

	env_store(&e, CLUSTER);
	link_open(&e, "node-b", 0);
	for (unsigned i = 0; i < 4; i++) {
		ts_fill(data + i * KURA_BLK_SIZE, 70 + i, 1);
		prep_write(&w[i], &done, 2, i, 1, data + i * KURA_BLK_SIZE);
		CHECK_EQ(kura_link_submit(e.l, &w[i].lr), 0);
	}
	spin(e.loop, 300);
	CHECK_EQ(done, 0);
	CHECK_EQ(kura_link_up(e.l), 0);
	if (server_start(&e) == -EADDRINUSE)
		SKIP("the port was taken meanwhile");
	CHECK(wait_count(e.loop, &done, 4, 4000));
	CHECK_EQ(e.ups, 1);
	for (unsigned i = 0; i < 4; i++)
		CHECK_EQ(w[i].lr.status, 0);
	prep_read(&r, &rdone, 2, 0, 4, back);
	CHECK_EQ(call(&e, &r), 0);
	CHECK(memcmp(back, data, 4 * KURA_BLK_SIZE) == 0);
	env_close(&e);
}

/* A link that connects but is refused never comes UP; its requests time out. */
static void never_up(const char *cluster, const char *peer)
{
	struct env e = { 0 };
	struct treq t[3];
	unsigned done = 0;
	uint64_t t0;

	env_open(&e, cluster);
	link_open(&e, peer, 300);
	t0 = kura_now_ns();
	for (unsigned i = 0; i < 3; i++) {
		prep(&t[i], &done, KURA_OP_FLUSH, 0, 0, 0);
		CHECK_EQ(kura_link_submit(e.l, &t[i].lr), 0);
	}
	CHECK(wait_count(e.loop, &done, 3, 3000));
	CHECK(kura_now_ns() - t0 >= 300 * MS);
	for (unsigned i = 0; i < 3; i++) {
		CHECK_EQ(t[i].calls, 1);
		CHECK_EQ(t[i].lr.status, -ETIMEDOUT);
	}
	spin(e.loop, 500); /* several attempts */
	CHECK_EQ(e.ups, 0);
	CHECK_EQ(kura_link_up(e.l), 0);
	CHECK_EQ(kura_link_peer_epoch(e.l), 0);
	env_close(&e);
}

TEST(test_link_to_an_unexpected_node_never_comes_up)
{
	never_up(CLUSTER, "other");
}

TEST(test_link_to_another_cluster_never_comes_up)
{
	never_up(OTHER_CLUSTER, "node-b");
}

TEST(test_link_server_stop_fails_in_flight_then_reconnects)
{
	struct env e = { 0 };
	struct treq w[64], again, r;
	uint8_t *data = ts_buf(64), *back = ts_buf(1);
	unsigned done = 0, failed = 0;

	env_open(&e, CLUSTER);
	link_open(&e, "node-b", 0);
	CHECK(wait_count(e.loop, &e.ups, 1, 3000));
	for (unsigned i = 0; i < 64; i++) {
		ts_fill(data + i * KURA_BLK_SIZE, 500 + i, 2);
		prep_write(&w[i], &done, 3, i, 1, data + i * KURA_BLK_SIZE);
		CHECK_EQ(kura_link_submit(e.l, &w[i].lr), 0);
	}
	kura_loop_run_once(e.loop, 0); /* on their way */
	kura_server_stop(e.srv);
	e.srv = NULL;
	CHECK(wait_count(e.loop, &done, 64, 3000));
	CHECK(wait_count(e.loop, &e.downs, 1, 3000));
	for (unsigned i = 0; i < 64; i++) {
		CHECK_EQ(w[i].calls, 1);
		CHECK(w[i].lr.status == 0 || w[i].lr.status == -ENOTCONN);
		failed += w[i].lr.status != 0;
	}
	CHECK(failed > 0); /* the server had read only a few of them */
	CHECK_EQ(kura_link_up(e.l), 0);

	spin(e.loop, 200);
	if (server_start(&e) == -EADDRINUSE)
		SKIP("the port was taken meanwhile");
	CHECK(wait_count(e.loop, &e.ups, 2, 5000));
	CHECK_EQ(e.downs, 1);
	prep_write(&again, NULL, 3, 100, 1, data);
	CHECK_EQ(call(&e, &again), 0);
	prep_read(&r, NULL, 3, 100, 1, back);
	CHECK_EQ(call(&e, &r), 0);
	CHECK_EQ(ts_tag(back, 2), 500);
	env_close(&e);
}

/* UP, then the peer restarts into another cluster: it refuses the link
 * (-EXDEV), which stays DOWN and fails nothing it was not asked. */
TEST(test_link_peer_restarted_into_another_cluster_stays_down)
{
	struct env e = { 0 };
	struct treq t;
	unsigned done = 0;

	env_open(&e, CLUSTER);
	link_open(&e, "node-b", 300);
	CHECK(wait_count(e.loop, &e.ups, 1, 3000));
	kura_server_stop(e.srv);
	e.srv_id.cluster = OTHER_CLUSTER;
	if (server_start(&e) == -EADDRINUSE)
		SKIP("the port was taken meanwhile");
	CHECK(wait_count(e.loop, &e.downs, 1, 3000));
	prep(&t, &done, KURA_OP_FLUSH, 0, 0, 0);
	CHECK_EQ(kura_link_submit(e.l, &t.lr), 0);
	CHECK(wait_count(e.loop, &done, 1, 3000));
	CHECK_EQ(t.lr.status, -ETIMEDOUT);
	spin(e.loop, 1000); /* attempts at 100, 200, 400 ms... */
	CHECK_EQ(e.ups, 1);
	CHECK_EQ(kura_link_up(e.l), 0);
	env_close(&e);
}

/* ---- a fake peer: a socket this test answers by hand ---- */

struct fake {
	int lfd, fd;
};

static void fake_listen(struct env *e, struct fake *f)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);

	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	CHECK(f->lfd >= 0);
	CHECK(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(listen(f->lfd, 8) == 0);
	CHECK(getsockname(f->lfd, (struct sockaddr *)&sa, &len) == 0);
	snprintf(e->addr, sizeof(e->addr), "127.0.0.1:%d", ntohs(sa.sin_port));
}

static void fake_accept(struct env *e, struct fake *f)
{
	uint64_t end = kura_now_ns() + 3000 * MS;

	while ((f->fd = accept4(f->lfd, NULL, NULL, SOCK_NONBLOCK)) < 0 && kura_now_ns() < end)
		kura_loop_run_once(e->loop, 10 * MS);
	CHECK(f->fd >= 0);
}

static void fake_recv(struct env *e, struct fake *f, void *buf, size_t n)
{
	uint64_t end = kura_now_ns() + 3000 * MS;
	size_t got = 0;

	while (got < n && kura_now_ns() < end) {
		ssize_t r = recv(f->fd, (uint8_t *)buf + got, n - got, 0);
		if (r > 0)
			got += (size_t)r;
		else
			kura_loop_run_once(e->loop, 10 * MS);
	}
	CHECK_EQ(got, n);
}

static void fake_send(struct fake *f, const void *buf, size_t n)
{
	CHECK_EQ(send(f->fd, buf, n, MSG_NOSIGNAL), (long long)n);
}

static void fake_answer(struct fake *f, uint32_t magic, int32_t status, uint64_t tag,
			const void *data, uint32_t len)
{
	struct kura_proto_resp a = { .magic = magic, .status = status, .tag = tag, .data_len = len };

	fake_send(f, &a, sizeof(a));
	if (len)
		fake_send(f, data, len);
}

/* Accepts the link's next connection and answers its HELLO as id, in
 * protocol version `version`. */
static void fake_hello(struct env *e, struct fake *f, const struct ident *id, uint32_t version)
{
	struct kura_proto_req q;
	struct kura_proto_hello in, out;

	fake_accept(e, f);
	fake_recv(e, f, &q, sizeof(q));
	CHECK_EQ(q.magic, KURA_PROTO_MAGIC);
	CHECK_EQ(q.op, KURA_OP_HELLO);
	CHECK_EQ(q.data_len, sizeof(in));
	fake_recv(e, f, &in, sizeof(in));
	CHECK(strncmp(in.cluster_id, CLUSTER, 36) == 0);
	CHECK(strcmp(in.node, "node-a") == 0);
	CHECK_EQ(in.epoch, 7);
	fill_hello(id, &out);
	out.version = version;
	fake_answer(f, KURA_PROTO_RESP_MAGIC, 0, q.tag, &out, sizeof(out));
}

static const struct ident fake_id = { CLUSTER, "node-b", 9 };

static void fake_up(struct env *e, struct fake *f)
{
	fake_hello(e, f, &fake_id, KURA_PROTO_VERSION);
	CHECK(wait_count(e->loop, &e->ups, 1, 3000));
	CHECK_EQ(kura_link_peer_epoch(e->l), 9);
}

/* The link closes a connection it refused: the fake peer reads its end. */
static void fake_refused(struct env *e, struct fake *f)
{
	uint64_t end = kura_now_ns() + 3000 * MS;
	char c;

	while (recv(f->fd, &c, 1, 0) < 0 && errno == EAGAIN && kura_now_ns() < end)
		kura_loop_run_once(e->loop, 10 * MS);
	CHECK_EQ(recv(f->fd, &c, 1, 0), 0);
	CHECK_EQ(e->ups, 0);
	CHECK_EQ(kura_link_up(e->l), 0);
	close(f->fd);
}

static void fake_close(struct fake *f)
{
	close(f->fd);
	close(f->lfd);
}

enum bad { BAD_TAG, BAD_MAGIC, BAD_READ_LENGTH, BAD_WRITE_DATA, BAD_STATUS_DATA };

/* A READ and a WRITE in flight, then an answer that is not the protocol:
 * both fail with -ENOTCONN and the link goes DOWN. */
static void fake_peer_breaks_protocol(enum bad how)
{
	struct env e = { 0 };
	struct fake f;
	struct treq t[2];
	struct kura_proto_req q[2];
	uint8_t *data = ts_buf(1), *back = ts_buf(2), junk[8] = { 0 };
	unsigned done = 0;

	CHECK_EQ(kura_loop_create(&e.loop, 64), 0);
	fake_listen(&e, &f);
	link_open(&e, "node-b", 0);
	fake_up(&e, &f);
	prep_read(&t[0], &done, 0, 0, 1, back);
	prep_write(&t[1], &done, 0, 1, 1, data);
	/* room for an answer the WRITE must not get */
	t[1].lr.buf = back + KURA_BLK_SIZE;
	t[1].lr.cap = KURA_BLK_SIZE;
	for (unsigned i = 0; i < 2; i++)
		CHECK_EQ(kura_link_submit(e.l, &t[i].lr), 0);
	fake_recv(&e, &f, &q[0], sizeof(q[0]));
	CHECK_EQ(q[0].op, KURA_OP_READ);
	fake_recv(&e, &f, &q[1], sizeof(q[1]));
	CHECK_EQ(q[1].op, KURA_OP_WRITE);
	CHECK_EQ(q[1].data_len, KURA_BLK_SIZE);
	fake_recv(&e, &f, ts_buf(1), KURA_BLK_SIZE);
	CHECK(q[0].tag != q[1].tag);
	switch (how) {
	case BAD_TAG: /* differs from a live tag in its high bits only */
		fake_answer(&f, KURA_PROTO_RESP_MAGIC, 0, q[1].tag + (1ull << 40), NULL, 0);
		break;
	case BAD_MAGIC:
		fake_answer(&f, KURA_PROTO_MAGIC, 0, q[1].tag, NULL, 0);
		break;
	case BAD_READ_LENGTH: /* a READ answer carries exactly its blocks */
		fake_answer(&f, KURA_PROTO_RESP_MAGIC, 0, q[0].tag, junk, sizeof(junk));
		break;
	case BAD_WRITE_DATA: /* a WRITE answer carries nothing */
		fake_answer(&f, KURA_PROTO_RESP_MAGIC, 0, q[1].tag, junk, sizeof(junk));
		break;
	case BAD_STATUS_DATA: /* nor does an error */
		fake_answer(&f, KURA_PROTO_RESP_MAGIC, -EIO, q[0].tag, junk, sizeof(junk));
		break;
	}
	CHECK(wait_count(e.loop, &done, 2, 3000));
	CHECK(wait_count(e.loop, &e.downs, 1, 3000));
	for (unsigned i = 0; i < 2; i++) {
		CHECK_EQ(t[i].calls, 1);
		CHECK_EQ(t[i].lr.status, -ENOTCONN);
	}
	CHECK_EQ(kura_link_up(e.l), 0);
	kura_link_close(e.l);
	fake_close(&f);
	kura_loop_destroy(e.loop);
}

TEST(test_link_answer_with_unknown_tag_resets)
{
	fake_peer_breaks_protocol(BAD_TAG);
}

TEST(test_link_answer_with_bad_magic_resets)
{
	fake_peer_breaks_protocol(BAD_MAGIC);
}

TEST(test_link_answer_with_data_that_does_not_fit_resets)
{
	fake_peer_breaks_protocol(BAD_READ_LENGTH);
	fake_peer_breaks_protocol(BAD_WRITE_DATA);
	fake_peer_breaks_protocol(BAD_STATUS_DATA);
}

/* HELLO answers naming another cluster or protocol version are refused;
 * the link retries and comes UP once the answer is right. */
TEST(test_link_hello_answer_checked_by_the_link)
{
	struct env e = { 0 };
	struct fake f;
	const struct ident other = { OTHER_CLUSTER, "node-b", 9 };

	CHECK_EQ(kura_loop_create(&e.loop, 64), 0);
	fake_listen(&e, &f);
	link_open(&e, "node-b", 0);
	fake_hello(&e, &f, &other, KURA_PROTO_VERSION);
	fake_refused(&e, &f);
	fake_hello(&e, &f, &fake_id, KURA_PROTO_VERSION + 1);
	fake_refused(&e, &f);
	fake_up(&e, &f);
	kura_link_close(e.l);
	fake_close(&f);
	kura_loop_destroy(e.loop);
}

TEST(test_link_answers_in_any_order_match_their_requests)
{
	struct env e = { 0 };
	struct fake f;
	struct treq r[3];
	struct kura_proto_req q[3];
	uint8_t *blk = ts_buf(3), *back = ts_buf(3);
	unsigned done = 0;

	CHECK_EQ(kura_loop_create(&e.loop, 64), 0);
	fake_listen(&e, &f);
	link_open(&e, "node-b", 0);
	fake_up(&e, &f);
	for (unsigned i = 0; i < 3; i++) {
		prep_read(&r[i], &done, 0, i, 1, back + i * KURA_BLK_SIZE);
		CHECK_EQ(kura_link_submit(e.l, &r[i].lr), 0);
		ts_fill(blk + i * KURA_BLK_SIZE, 300 + i, 3);
	}
	for (unsigned i = 0; i < 3; i++)
		fake_recv(&e, &f, &q[i], sizeof(q[i]));
	/* backwards, the middle one failing */
	fake_answer(&f, KURA_PROTO_RESP_MAGIC, 0, q[2].tag, blk + 2 * KURA_BLK_SIZE, KURA_BLK_SIZE);
	fake_answer(&f, KURA_PROTO_RESP_MAGIC, -EIO, q[1].tag, NULL, 0);
	fake_answer(&f, KURA_PROTO_RESP_MAGIC, 0, q[0].tag, blk, KURA_BLK_SIZE);
	CHECK(wait_count(e.loop, &done, 3, 3000));
	CHECK_EQ(r[0].lr.status, 0);
	CHECK_EQ(r[1].lr.status, -EIO);
	CHECK_EQ(r[1].lr.got, 0);
	CHECK_EQ(r[2].lr.status, 0);
	CHECK_EQ(ts_tag(back, 3), 300);
	CHECK_EQ(ts_tag(back + 2 * KURA_BLK_SIZE, 3), 302);
	CHECK(kura_link_up(e.l));
	CHECK_EQ(e.downs, 0);
	kura_link_close(e.l);
	fake_close(&f);
	kura_loop_destroy(e.loop);
}

TEST(test_link_queue_limit_while_down)
{
	struct env e = { 0 };
	struct treq *t = calloc(KURA_LINK_MAX_QUEUED + 1, sizeof(*t));
	struct treq bad;
	unsigned done = 0;

	CHECK(t != NULL);
	CHECK_EQ(kura_loop_create(&e.loop, 64), 0);
	snprintf(e.addr, sizeof(e.addr), "127.0.0.1:%d", free_port()); /* nobody there */
	link_open(&e, "node-b", 0);
	for (unsigned i = 0; i < KURA_LINK_MAX_QUEUED; i++) {
		prep(&t[i], &done, KURA_OP_FLUSH, 0, 0, 0);
		CHECK_EQ(kura_link_submit(e.l, &t[i].lr), 0);
	}
	prep(&t[KURA_LINK_MAX_QUEUED], &done, KURA_OP_FLUSH, 0, 0, 0);
	CHECK_EQ(kura_link_submit(e.l, &t[KURA_LINK_MAX_QUEUED].lr), -EAGAIN);
	spin(e.loop, 250); /* a few failed attempts */
	CHECK_EQ(done, 0);
	CHECK_EQ(kura_link_submit(e.l, &t[KURA_LINK_MAX_QUEUED].lr), -EAGAIN);
	kura_link_close(e.l);
	CHECK_EQ(done, KURA_LINK_MAX_QUEUED);
	for (unsigned i = 0; i < KURA_LINK_MAX_QUEUED; i++) {
		CHECK_EQ(t[i].calls, 1);
		CHECK_EQ(t[i].lr.status, -ENOTCONN);
	}
	CHECK_EQ(t[KURA_LINK_MAX_QUEUED].calls, 0);
	CHECK_EQ(e.ups, 0);
	/* a request the server could not frame is refused at once */
	link_open(&e, "node-b", 0);
	prep(&bad, &done, KURA_OP_READ, 0, 0, 1); /* no buffer */
	CHECK_EQ(kura_link_submit(e.l, &bad.lr), -EINVAL);
	prep(&bad, &done, KURA_OP_HELLO, 0, 0, 0);
	CHECK_EQ(kura_link_submit(e.l, &bad.lr), -EINVAL);
	kura_link_close(e.l);
	free(t);
	kura_loop_destroy(e.loop);
}

TEST(test_link_close_fails_queued_and_in_flight)
{
	struct env e = { 0 };
	struct treq *t = calloc(96, sizeof(*t));
	uint8_t *data = ts_buf(1), *back = ts_buf(32);
	unsigned done = 0, before;

	CHECK(t != NULL);
	env_open(&e, CLUSTER);
	link_open(&e, "node-b", 0);
	CHECK(wait_count(e.loop, &e.ups, 1, 3000));
	for (unsigned i = 0; i < 96; i++) {
		if (i % 3 == 2)
			prep_read(&t[i], &done, 4, i % 32, 1, back + (i % 32) * KURA_BLK_SIZE);
		else
			prep_write(&t[i], &done, 4, i % 32, 1, data);
		CHECK_EQ(kura_link_submit(e.l, &t[i].lr), 0);
	}
	kura_loop_run_once(e.loop, 0); /* some sent, some maybe answered */
	before = done;
	kura_link_close(e.l);
	e.l = NULL;
	CHECK_EQ(done, 96);
	for (unsigned i = 0; i < 96; i++) {
		CHECK_EQ(t[i].calls, 1);
		CHECK(t[i].lr.status == 0 || t[i].lr.status == -ENOTCONN);
	}
	CHECK(before < 96);
	free(t); /* a completion touching them now is a use after free */
	spin(e.loop, 200);
	env_close(&e);
}

/* Writes far larger than the socket buffers leave in pieces: the peer
 * reads every header and payload intact and in order. */
TEST(test_link_large_writes_survive_short_sends)
{
	struct env e = { 0 };
	struct fake f;
	enum { N = 40, NBLK = 64 };
	const size_t len = (size_t)NBLK * KURA_BLK_SIZE;
	struct treq *t = calloc(N, sizeof(*t));
	uint8_t *data = kura_aligned_alloc(N * len), *in = kura_aligned_alloc(len);
	struct kura_proto_req q;
	uint64_t last_tag = 0;
	unsigned done = 0;

	CHECK(t && data && in);
	CHECK_EQ(kura_loop_create(&e.loop, 64), 0);
	fake_listen(&e, &f);
	link_open(&e, "node-b", 0);
	fake_up(&e, &f);
	for (unsigned i = 0; i < N; i++) {
		for (unsigned b = 0; b < NBLK; b++)
			ts_fill(data + i * len + (size_t)b * KURA_BLK_SIZE, 1 + i * NBLK + b, 4);
		prep_write(&t[i], &done, i, 0, NBLK, data + i * len);
		CHECK_EQ(kura_link_submit(e.l, &t[i].lr), 0);
	}
	for (unsigned i = 0; i < N; i++) {
		fake_recv(&e, &f, &q, sizeof(q));
		CHECK_EQ(q.magic, KURA_PROTO_MAGIC);
		CHECK_EQ(q.op, KURA_OP_WRITE);
		CHECK_EQ(q.ext, i);
		CHECK_EQ(q.nblk, NBLK);
		CHECK_EQ(q.data_len, len);
		CHECK(q.tag > last_tag);
		last_tag = q.tag;
		fake_recv(&e, &f, in, len);
		CHECK(memcmp(in, data + i * len, len) == 0);
		fake_answer(&f, KURA_PROTO_RESP_MAGIC, 0, q.tag, NULL, 0);
	}
	CHECK(wait_count(e.loop, &done, N, 3000));
	for (unsigned i = 0; i < N; i++)
		CHECK_EQ(t[i].lr.status, 0);
	CHECK_EQ(e.downs, 0);
	kura_link_close(e.l);
	free(t);
	free(data);
	free(in);
	fake_close(&f);
	kura_loop_destroy(e.loop);
}

/* The peer answers the HELLO, then reads nothing: a send stays pending on
 * a full socket, more requests are in flight and queued behind it. */
TEST(test_link_close_with_a_send_stuck_on_a_full_socket)
{
	struct env e = { 0 };
	struct fake f;
	const unsigned n = 200, nblk = 64;
	struct treq *t = calloc(n, sizeof(*t));
	uint8_t *data = kura_aligned_alloc((size_t)nblk * KURA_BLK_SIZE);
	unsigned done = 0;

	CHECK(t && data);
	CHECK_EQ(kura_loop_create(&e.loop, 64), 0);
	fake_listen(&e, &f);
	link_open(&e, "node-b", 0);
	fake_up(&e, &f);
	for (unsigned i = 0; i < n; i++) {
		prep_write(&t[i], &done, 0, 0, nblk, data);
		CHECK_EQ(kura_link_submit(e.l, &t[i].lr), 0);
	}
	spin(e.loop, 100);
	CHECK_EQ(done, 0);
	CHECK(kura_link_up(e.l));
	kura_link_close(e.l);
	CHECK_EQ(done, n);
	for (unsigned i = 0; i < n; i++) {
		CHECK_EQ(t[i].calls, 1);
		CHECK_EQ(t[i].lr.status, -ENOTCONN);
	}
	free(t);
	free(data);
	spin(e.loop, 100);
	fake_close(&f);
	kura_loop_destroy(e.loop);
}

/* The way to close a link from a callback: defer it. The first answer's
 * callback asks; the close runs on the loop's next turn and fails the
 * rest. */
struct closer {
	struct kura_op op;
	struct env *e;
	unsigned asked;
};

static struct closer closer;

static void close_deferred(struct kura_op *op, int res)
{
	struct closer *c = KURA_CONTAINER_OF(op, struct closer, op);

	(void)res;
	kura_link_close(c->e->l);
	c->e->l = NULL;
}

static void close_later_cb(struct kura_link_req *r)
{
	treq_cb(r);
	if (!closer.asked++) {
		closer.op.fn = close_deferred;
		kura_loop_defer(closer.e->loop, &closer.op, 0);
	}
}

TEST(test_link_closed_from_a_deferred_op_after_a_callback)
{
	struct env e = { 0 };
	struct treq t[32];
	uint8_t *data = ts_buf(1);
	unsigned done = 0, ok = 0;

	closer.e = &e;
	env_open(&e, CLUSTER);
	link_open(&e, "node-b", 0);
	CHECK(wait_count(e.loop, &e.ups, 1, 3000));
	for (unsigned i = 0; i < 32; i++) {
		prep_write(&t[i], &done, 5, i, 1, data);
		t[i].lr.cb = close_later_cb;
		CHECK_EQ(kura_link_submit(e.l, &t[i].lr), 0);
	}
	CHECK(wait_count(e.loop, &done, 32, 3000));
	CHECK(e.l == NULL);
	for (unsigned i = 0; i < 32; i++) {
		CHECK_EQ(t[i].calls, 1);
		CHECK(t[i].lr.status == 0 || t[i].lr.status == -ENOTCONN);
		ok += t[i].lr.status == 0;
	}
	CHECK(ok >= 1 && ok < 32);
	spin(e.loop, 200);
	env_close(&e);
}

/* A peer that stops reading while UP: the requests time out and the link
 * resets, though a send is still pending on the full socket. */
TEST(test_link_peer_that_stops_reading_times_out)
{
	struct env e = { 0 };
	struct fake f;
	const unsigned n = 100, nblk = 64;
	struct treq *t = calloc(n, sizeof(*t));
	uint8_t *data = kura_aligned_alloc((size_t)nblk * KURA_BLK_SIZE);
	unsigned done = 0, timed_out = 0;
	uint64_t t0;

	CHECK(t && data);
	CHECK_EQ(kura_loop_create(&e.loop, 64), 0);
	fake_listen(&e, &f);
	link_open(&e, "node-b", 300);
	fake_up(&e, &f);
	t0 = kura_now_ns();
	for (unsigned i = 0; i < n; i++) {
		prep_write(&t[i], &done, 0, 0, nblk, data);
		CHECK_EQ(kura_link_submit(e.l, &t[i].lr), 0);
	}
	CHECK(wait_count(e.loop, &done, n, 3000));
	CHECK(kura_now_ns() - t0 >= 300 * MS);
	CHECK_EQ(e.downs, 1);
	for (unsigned i = 0; i < n; i++) {
		CHECK_EQ(t[i].calls, 1);
		CHECK(t[i].lr.status == -ETIMEDOUT || t[i].lr.status == -ENOTCONN);
		timed_out += t[i].lr.status == -ETIMEDOUT;
	}
	CHECK(timed_out > 0);
	kura_link_close(e.l);
	free(t);
	free(data);
	fake_close(&f);
	kura_loop_destroy(e.loop);
}

/* Prints round trips of 4 KiB writes, at QD1 and QD32 (KURA_TEST_VERBOSE=1). */
TEST(test_link_write_latency_and_throughput)
{
	struct env e = { 0 };
	enum { QD1_N = 2000, QD = 32, QD32_N = 20000 };
	struct treq t[QD];
	uint8_t *data = ts_buf(1);
	unsigned done = 0, sent = 0;
	uint64_t t0, qd1_ns, qd32_ns;

	env_open(&e, CLUSTER);
	link_open(&e, "node-b", 0);
	CHECK(wait_count(e.loop, &e.ups, 1, 3000));
	ts_fill(data, 1, 1);
	t0 = kura_now_ns();
	for (unsigned i = 0; i < QD1_N; i++) {
		prep_write(&t[0], &done, i / 256 % 8, i % 256, 1, data);
		CHECK_EQ(kura_link_submit(e.l, &t[0].lr), 0);
		while (done == i)
			kura_loop_run_once(e.loop, 100 * MS);
		CHECK_EQ(t[0].lr.status, 0);
	}
	qd1_ns = kura_now_ns() - t0;

	done = 0;
	t0 = kura_now_ns();
	for (; sent < QD; sent++) {
		prep_write(&t[sent], &done, sent / 256 % 8, sent % 256, 1, data);
		CHECK_EQ(kura_link_submit(e.l, &t[sent].lr), 0);
	}
	while (done < QD32_N) {
		kura_loop_run_once(e.loop, 100 * MS);
		for (unsigned i = 0; i < QD && sent < QD32_N; i++) {
			if (!t[i].calls)
				continue;
			CHECK_EQ(t[i].lr.status, 0);
			prep_write(&t[i], &done, sent / 256 % 8, sent % 256, 1, data);
			CHECK_EQ(kura_link_submit(e.l, &t[i].lr), 0);
			sent++;
		}
	}
	qd32_ns = kura_now_ns() - t0;
	if (getenv("KURA_TEST_VERBOSE"))
		fprintf(stderr,
			"  4 KiB writes over a link to a store on a fake disk, one thread:\n"
			"  QD1:  %u round trips, mean %.1f us\n"
			"  QD32: %u writes in %.2f s: %.0f IOPS, %.1f MiB/s\n",
			QD1_N, (double)qd1_ns / QD1_N / 1000.0, QD32_N, (double)qd32_ns / 1e9,
			QD32_N / ((double)qd32_ns / 1e9),
			QD32_N * 4096.0 / (1 << 20) / ((double)qd32_ns / 1e9));
	env_close(&e);
}
