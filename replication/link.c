/* Node-to-node links (replication/link.h): the store protocol over TCP on
 * the owner's io_uring loop.
 *
 * A request is in one place at a time: the queue (not sent yet), or the
 * slot table (sent or being sent, waiting for its answer). While a send or
 * a receive submission points into a request, the request stays held even
 * after it is answered or failed, and its callback runs when the kernel
 * lets go of it: a caller may free a request in its callback. */
#include "replication/link.h"

#include "blockd/store.h"
#include "common/err.h"
#include "common/log.h"
#include "common/rxbuf.h"
#include "common/usock.h"
#include "common/util.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TICK_NS 100000000ull
#define BACKOFF_MIN_NS 100000000ull
#define BACKOFF_MAX_NS 2000000000ull
/* Answers find their request by tag in a direct-mapped table (tag % SLOTS);
 * a request waits to be sent while its slot still holds an older one. That
 * bounds what is in flight to SLOTS, well above the 128 a server serves at
 * once, and needs no allocation per request. */
#define SLOTS 1024u
/* Requests per sendmsg: a burst of submissions leaves in one system call. */
#define TX_BATCH 16u
/* Answers are read into a buffer of RX_BUF bytes, so that a burst of them
 * comes in with one receive; the rest of an answer's data that does not
 * fit is received straight into the request's buffer. */
#define RX_BUF (64u << 10)
#define NAME_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"

enum lstate {
	L_IDLE,       /* no socket; the next attempt at retry_at */
	L_CONNECTING, /* connect submitted */
	L_HELLO,      /* connected, HELLO sent, its answer awaited */
	L_UP,
	L_DRAIN,      /* connection failed: waiting for its submissions to end */
};

struct kura_link {
	struct kura_loop *loop;
	struct sockaddr_storage ss;
	socklen_t sslen;
	char addr[64], peer[64];
	uint64_t timeout_ns;
	void (*hello)(void *arg, struct kura_proto_hello *out);
	void (*state)(void *arg, struct kura_link *l, int up);
	void *arg;

	enum lstate st;
	int fd, closing;
	int conn_armed, rx_armed, tx_armed, tick_armed;
	unsigned ncancel;
	struct kura_op conn_op, rx_op, tx_op, cancel_op;
	struct kura_timer tick;
	uint64_t attempt_deadline, retry_at, backoff_ns, peer_epoch;
	struct kura_ratelimit rl;

	struct kura_link_req *q_head, *q_tail;
	unsigned npending; /* submitted, callback not run yet */
	uint64_t next_tag, low_tag; /* low_tag: no older tag is in flight */
	struct kura_link_req *slots[SLOTS];

	struct kura_link_req *txb[TX_BATCH]; /* in the sendmsg, in wire order */
	unsigned ntx;
	size_t tx_off; /* bytes of txb[0] already sent */
	struct msghdr msg;
	struct iovec iov[2 * TX_BATCH];

	struct kura_proto_resp rhdr;
	size_t rdata_got;
	struct kura_link_req *rcur; /* receiving its answer's data */
	struct kura_rxbuf rx;       /* RX_BUF bytes */
	int rx_direct;              /* the receive armed goes into rcur's buffer */

	struct kura_link_req hello_req;
	struct kura_proto_hello hello_out, hello_in;
	int hello_due;
};

static void arm_tx(struct kura_link *l);
static void arm_rx(struct kura_link *l);
static void hello_answer(struct kura_link *l);

static struct kura_link_req **slot(struct kura_link *l, uint64_t tag)
{
	return &l->slots[tag % SLOTS];
}

static int live(struct kura_link *l, struct kura_link_req *r)
{
	return *slot(l, r->req.tag) == r;
}

static int held(const struct kura_link *l, const struct kura_link_req *r)
{
	for (unsigned i = 0; i < l->ntx; i++)
		if (l->txb[i] == r)
			return 1;
	return r == l->rcur;
}

static void warn(struct kura_link *l, const char *what, const char *why)
{
	uint64_t quiet;
	char more[64] = "";

	if (!kura_ratelimit_ok(&l->rl, &quiet))
		return;
	if (quiet)
		snprintf(more, sizeof(more), " (%llu before it not logged)", (unsigned long long)quiet);
	kura_log(WARN, "link to %s at %s: %s: %s%s", l->peer, l->addr, what, why, more);
}

/* r's status is set and nothing points at it any more. */
static void release(struct kura_link *l, struct kura_link_req *r)
{
	if (r == &l->hello_req) {
		if (l->st == L_HELLO && !l->closing)
			hello_answer(l);
		return;
	}
	l->npending--;
	r->cb(r);
}

/* Runs r's callback once it is neither waiting for an answer nor held. */
static void settle(struct kura_link *l, struct kura_link_req *r)
{
	if (!live(l, r) && !held(l, r))
		release(l, r);
}

static int fail_status(const struct kura_link_req *r, uint64_t now)
{
	return r->deadline_ns <= now ? -ETIMEDOUT : -ENOTCONN;
}

static void take(struct kura_link_req ***tail, struct kura_link_req *r, int status)
{
	r->status = status;
	r->next = NULL;
	**tail = r;
	*tail = &r->next;
}

/* Moves every request waiting for an answer, then every queued one when
 * `queue`, onto *tail with a failure status. */
static void take_all(struct kura_link *l, struct kura_link_req ***tail, int queue, uint64_t now)
{
	struct kura_link_req *r, *next;

	for (unsigned i = 0; i < SLOTS; i++) {
		if ((r = l->slots[i])) {
			l->slots[i] = NULL;
			take(tail, r, r == &l->hello_req ? -ENOTCONN : fail_status(r, now));
		}
	}
	l->low_tag = l->next_tag;
	if (!queue)
		return;
	for (r = l->q_head; r; r = next) {
		next = r->next;
		take(tail, r, fail_status(r, now));
	}
	l->q_head = l->q_tail = NULL;
}

/* A send or receive that has ended lets go of its requests: those already
 * answered (or failed) join *tail with their status; the others are still
 * in the slot table. */
static void unhold(struct kura_link *l, struct kura_link_req ***tail)
{
	struct kura_link_req *r = l->rcur;

	if (!l->rx_armed) {
		l->rcur = NULL;
		if (r && !live(l, r) && !held(l, r))
			take(tail, r, r->status);
	}
	if (!l->tx_armed) {
		for (unsigned i = 0; i < l->ntx; i++)
			if (!live(l, l->txb[i]))
				take(tail, l->txb[i], l->txb[i]->status);
		l->ntx = 0;
		l->tx_off = 0;
	}
}

static void settle_list(struct kura_link *l, struct kura_link_req *list)
{
	while (list) {
		struct kura_link_req *r = list;
		list = r->next;
		settle(l, r);
	}
}

static void retry_later(struct kura_link *l)
{
	l->st = L_IDLE;
	l->retry_at = kura_now_ns() + l->backoff_ns;
	l->backoff_ns = KURA_MIN(l->backoff_ns * 2, BACKOFF_MAX_NS);
}

/* Closes the connection at once: what the kernel still holds to send is
 * dropped (a reset, not a FIN after it), so a request this node gave up
 * on never reaches the peer later, when a cut link comes back; the writes
 * among them count as missed there (replication/missed.c). */
static void close_abort(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* The failed connection's last submission has ended: close it, retry later. */
static void drained(struct kura_link *l)
{
	if (l->st != L_DRAIN || l->conn_armed || l->rx_armed || l->tx_armed || l->ncancel)
		return;
	close_abort(l->fd);
	l->fd = -1;
	kura_rxbuf_reset(&l->rx);
	l->hello_due = 0;
	retry_later(l);
}

/* Ends the connection: what waits for an answer fails, and so does the
 * queue when the link was UP (requests wait only for a link that is being
 * set up). Requests a submission still points at finish when it ends. */
static void link_reset(struct kura_link *l, const char *why)
{
	struct kura_link_req *list = NULL, **tail = &list;
	int was_up = l->st == L_UP;

	if (l->st == L_IDLE || l->st == L_DRAIN)
		return;
	l->st = L_DRAIN;
	shutdown(l->fd, SHUT_RDWR); /* ends the pending receive and send */
	if (l->conn_armed) { /* a connect in progress may ignore shutdown */
		io_uring_prep_cancel(kura_loop_sqe(l->loop, &l->cancel_op), &l->conn_op, 0);
		l->ncancel++;
	}
	if (was_up)
		kura_log(INFO, "link to %s at %s down: %s", l->peer, l->addr, why);
	else
		kura_log(DEBUG, "link to %s at %s: attempt failed: %s", l->peer, l->addr, why);
	unhold(l, &tail);
	take_all(l, &tail, was_up, kura_now_ns());
	settle_list(l, list);
	if (was_up && l->state)
		l->state(l->arg, l, 0);
	drained(l);
}

/* ---- connecting ---- */

static void start_connect(struct kura_link *l)
{
	int one = 1, fd = socket(l->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct io_uring_sqe *sqe;

	if (fd < 0) {
		kura_log(DEBUG, "link to %s at %s: socket: %s", l->peer, l->addr, strerror(errno));
		retry_later(l);
		return;
	}
	/* requests are small and each waits for its answer: no Nagle delay */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
		kura_log(DEBUG, "link to %s: TCP_NODELAY: %s", l->peer, strerror(errno));
	l->fd = fd;
	l->st = L_CONNECTING;
	l->attempt_deadline = kura_now_ns() + l->timeout_ns;
	l->conn_armed = 1;
	sqe = kura_loop_sqe(l->loop, &l->conn_op);
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&l->ss, l->sslen);
}

static void conn_done(struct kura_op *op, int res)
{
	struct kura_link *l = KURA_CONTAINER_OF(op, struct kura_link, conn_op);
	struct kura_link_req *h = &l->hello_req;
	char why[128];

	l->conn_armed = 0;
	if (l->closing)
		return;
	if (l->st == L_DRAIN) {
		drained(l);
		return;
	}
	if (res < 0) {
		snprintf(why, sizeof(why), "connect: %s", strerror(-res));
		link_reset(l, why);
		return;
	}
	memset(&l->hello_in, 0, sizeof(l->hello_in)); /* nothing stale from an earlier peer */
	memset(&l->hello_out, 0, sizeof(l->hello_out));
	l->hello_out.version = KURA_PROTO_VERSION;
	l->hello(l->arg, &l->hello_out);
	memset(h, 0, sizeof(*h));
	h->req.magic = KURA_PROTO_MAGIC;
	h->req.op = KURA_OP_HELLO;
	h->req.data_len = sizeof(l->hello_out);
	h->data = &l->hello_out;
	h->buf = &l->hello_in;
	h->cap = sizeof(l->hello_in);
	l->st = L_HELLO;
	l->hello_due = 1;
	kura_rxbuf_reset(&l->rx);
	arm_rx(l);
	arm_tx(l);
}

/* The peer answered the HELLO: UP, or a failed attempt when it is not the
 * node expected, in this cluster, speaking this protocol. */
static void hello_answer(struct kura_link *l)
{
	const struct kura_proto_hello *in = &l->hello_in;
	char why[256];

	if (l->hello_req.status)
		snprintf(why, sizeof(why), "the peer refused this node: %s",
			 kura_strerror(l->hello_req.status));
	else if (in->version != KURA_PROTO_VERSION)
		snprintf(why, sizeof(why), "the peer speaks protocol version %u, this node %u",
			 in->version, KURA_PROTO_VERSION);
	else if (memcmp(in->cluster_id, l->hello_out.cluster_id, 36))
		snprintf(why, sizeof(why), "the peer is in cluster %.36s, this node in %.36s",
			 in->cluster_id, l->hello_out.cluster_id);
	else if (strncmp(in->node, l->peer, sizeof(in->node)))
		snprintf(why, sizeof(why), "the peer is node %.*s, not %s",
			 (int)strnlen(in->node, sizeof(in->node)), in->node, l->peer);
	else
		why[0] = 0;
	if (why[0]) {
		warn(l, "hello refused", why);
		link_reset(l, why);
		return;
	}
	l->st = L_UP;
	l->peer_epoch = in->epoch;
	l->backoff_ns = BACKOFF_MIN_NS;
	kura_log(INFO, "link to %s at %s up (peer epoch %llu)", l->peer, l->addr,
		 (unsigned long long)in->epoch);
	if (l->state)
		l->state(l->arg, l, 1);
	arm_tx(l);
}

/* ---- sending ---- */

static size_t wire_len(const struct kura_link_req *r)
{
	return sizeof(r->req) + r->req.data_len;
}

static struct kura_link_req *next_out(struct kura_link *l)
{
	if (l->st == L_HELLO)
		return l->hello_due ? &l->hello_req : NULL;
	return l->q_head;
}

static void arm_tx(struct kura_link *l)
{
	struct kura_link_req *r;
	struct io_uring_sqe *sqe;
	size_t off = l->tx_off;
	size_t n = 0;

	if (l->tx_armed || (l->st != L_HELLO && l->st != L_UP))
		return;
	while (l->ntx < TX_BATCH && (r = next_out(l)) && !*slot(l, l->next_tag)) {
		if (r == &l->hello_req)
			l->hello_due = 0;
		else if (!(l->q_head = r->next))
			l->q_tail = NULL;
		r->req.tag = l->next_tag++;
		*slot(l, r->req.tag) = r;
		l->txb[l->ntx++] = r;
	}
	for (unsigned i = 0; i < l->ntx; i++) {
		r = l->txb[i];
		if (off < sizeof(r->req)) {
			l->iov[n].iov_base = (uint8_t *)&r->req + off;
			l->iov[n++].iov_len = sizeof(r->req) - off;
			off = 0;
		} else {
			off -= sizeof(r->req);
		}
		if (r->req.data_len > off) {
			l->iov[n].iov_base = (uint8_t *)(uintptr_t)r->data + off;
			l->iov[n++].iov_len = r->req.data_len - off;
		}
		off = 0;
	}
	if (!n)
		return;
	memset(&l->msg, 0, sizeof(l->msg));
	l->msg.msg_iov = l->iov;
	l->msg.msg_iovlen = n;
	l->tx_armed = 1;
	sqe = kura_loop_sqe(l->loop, &l->tx_op);
	io_uring_prep_sendmsg(sqe, l->fd, &l->msg, MSG_NOSIGNAL);
}

/* The first n requests of the batch are out of the send's hands. */
static void tx_let_go(struct kura_link *l, unsigned n)
{
	struct kura_link_req *out[TX_BATCH];

	memcpy(out, l->txb, n * sizeof(*out));
	memmove(l->txb, l->txb + n, (l->ntx - n) * sizeof(*l->txb));
	l->ntx -= n;
	for (unsigned i = 0; i < n; i++)
		settle(l, out[i]);
}

static void tx_done(struct kura_op *op, int res)
{
	struct kura_link *l = KURA_CONTAINER_OF(op, struct kura_link, tx_op);
	unsigned n = 0;
	char why[128];

	l->tx_armed = 0;
	if (l->closing)
		return;
	if (l->st == L_DRAIN) {
		l->tx_off = 0;
		tx_let_go(l, l->ntx);
		drained(l);
		return;
	}
	if (res <= 0) {
		snprintf(why, sizeof(why), "send: %s", res ? strerror(-res) : "nothing sent");
		link_reset(l, why);
		return;
	}
	l->tx_off += (size_t)res;
	while (n < l->ntx && l->tx_off >= wire_len(l->txb[n]))
		l->tx_off -= wire_len(l->txb[n++]);
	tx_let_go(l, n);
	arm_tx(l);
}

/* ---- receiving ---- */

/* Whether an answer's data length is what its request allows. */
static int answer_fits(const struct kura_link_req *r, const struct kura_proto_resp *h)
{
	if (h->status)
		return h->data_len == 0;
	switch (r->req.op) {
	case KURA_OP_READ:
		return h->data_len == (uint32_t)r->req.nblk * KURA_BLK_SIZE;
	case KURA_OP_HELLO:
		return h->data_len == sizeof(struct kura_proto_hello);
	case KURA_OP_INFO:
	case KURA_OP_LIST:
	case KURA_OP_STATS:
	case KURA_OP_FWD:
		return h->data_len <= r->cap;
	case KURA_OP_SYNC:
		return h->data_len == sizeof(struct kura_proto_sync_result) && r->cap >= h->data_len;
	case KURA_OP_WRITE:
		/* a primary answers a forwarded write with its version */
		return h->data_len == 0 ||
		       (r->req.flags == KURA_PROTO_F_PRIMARY && h->data_len == sizeof(uint64_t) &&
			r->cap >= h->data_len);
	case KURA_OP_GLIST:
		return h->data_len >= sizeof(struct kura_proto_sync) && h->data_len <= r->cap &&
		       (h->data_len - sizeof(struct kura_proto_sync)) %
				       sizeof(struct kura_proto_sync_ent) ==
			       0;
	case KURA_OP_PLIST:
		return h->data_len >= sizeof(struct kura_proto_sync) && h->data_len <= r->cap &&
		       (h->data_len - sizeof(struct kura_proto_sync)) %
				       sizeof(struct kura_proto_plist_ent) ==
			       0;
	default:
		return h->data_len == 0;
	}
}

static void answered(struct kura_link *l, struct kura_link_req *r)
{
	*slot(l, r->req.tag) = NULL;
	r->status = l->rhdr.status;
	r->got = l->rhdr.data_len;
	r->flags = l->rhdr.flags;
	settle(l, r);
	arm_tx(l); /* its slot is free: a request may have waited for it */
}

/* A whole answer header is in: -1 when it broke the link. */
static int on_header(struct kura_link *l)
{
	const struct kura_proto_resp *h = &l->rhdr;
	struct kura_link_req *r = *slot(l, h->tag);
	const char *why = NULL;

	if (h->magic != KURA_PROTO_RESP_MAGIC)
		why = "bad magic in an answer";
	else if (!r || r->req.tag != h->tag)
		why = "an answer with an unknown tag";
	else if (h->status > 0)
		why = "a positive status";
	else if (h->flags & ~KURA_PROTO_RF_LOW_SPACE)
		why = "unknown flags in an answer";
	else if (!answer_fits(r, h))
		why = "an answer's data length does not fit its request";
	if (why) {
		warn(l, "protocol error", why);
		link_reset(l, why);
		return -1;
	}
	if (h->data_len) {
		l->rcur = r;
		l->rdata_got = 0;
	} else {
		answered(l, r);
	}
	return 0;
}

static void arm_rx(struct kura_link *l)
{
	struct io_uring_sqe *sqe;
	size_t left = l->rcur ? l->rhdr.data_len - l->rdata_got : 0;

	if (l->rx_armed || (l->st != L_HELLO && l->st != L_UP))
		return;
	if (kura_rxbuf_ready(&l->rx, RX_BUF)) {
		link_reset(l, "out of memory");
		return;
	}
	l->rx_armed = 1;
	l->rx_direct = left > RX_BUF / 2;
	sqe = kura_loop_sqe(l->loop, &l->rx_op);
	if (l->rx_direct)
		io_uring_prep_recv(sqe, l->fd, (uint8_t *)l->rcur->buf + l->rdata_got, left, 0);
	else
		io_uring_prep_recv(sqe, l->fd, l->rx.buf + l->rx.len, l->rx.cap - l->rx.len, 0);
}

/* Takes every answer the buffer holds whole, and the start of an answer's
 * data: 0, or -1 when the link broke or stopped reading (nothing more may
 * be taken). */
static int rx_parse(struct kura_link *l)
{
	for (;;) {
		if (l->st != L_HELLO && l->st != L_UP)
			return -1; /* an answer ended the attempt (a refused HELLO) */
		if (l->rcur) {
			struct kura_link_req *r = l->rcur;
			l->rdata_got += kura_rxbuf_take(&l->rx, (uint8_t *)r->buf + l->rdata_got,
							l->rhdr.data_len - l->rdata_got);
			if (l->rdata_got < l->rhdr.data_len)
				return 0;
			l->rcur = NULL;
			answered(l, r);
			continue;
		}
		if (kura_rxbuf_avail(&l->rx) < sizeof(l->rhdr))
			return 0;
		kura_rxbuf_take(&l->rx, &l->rhdr, sizeof(l->rhdr));
		if (on_header(l))
			return -1;
	}
}

static void rx_done(struct kura_op *op, int res)
{
	struct kura_link *l = KURA_CONTAINER_OF(op, struct kura_link, rx_op);
	struct kura_link_req *r = l->rcur;
	char why[128];

	l->rx_armed = 0;
	if (l->closing)
		return;
	if (l->st == L_DRAIN) {
		l->rcur = NULL;
		if (r)
			settle(l, r);
		drained(l);
		return;
	}
	if (res <= 0) {
		snprintf(why, sizeof(why), "%s", res ? strerror(-res) : "closed by the peer");
		link_reset(l, why);
		return;
	}
	if (l->rx_direct)
		l->rdata_got += (size_t)res;
	else
		l->rx.len += (size_t)res;
	if (rx_parse(l))
		return;
	arm_rx(l);
}

/* ---- the periodic check ---- */

static struct kura_link_req *oldest_sent(struct kura_link *l)
{
	for (; l->low_tag < l->next_tag; l->low_tag++) {
		struct kura_link_req *r = *slot(l, l->low_tag);
		if (r && r->req.tag == l->low_tag)
			return r;
	}
	return NULL;
}

/* Queued requests past their deadline fail; the attempt to connect goes on. */
static void expire_queued(struct kura_link *l, uint64_t now)
{
	struct kura_link_req *list = NULL, **tail = &list;

	while (l->q_head && l->q_head->deadline_ns <= now) {
		struct kura_link_req *r = l->q_head;
		if (!(l->q_head = r->next))
			l->q_tail = NULL;
		take(&tail, r, -ETIMEDOUT);
	}
	settle_list(l, list);
}

static void check_deadlines(struct kura_link *l, uint64_t now)
{
	struct kura_link_req *r;
	char why[128];

	if (l->st == L_UP) {
		/* answers come in order of deadline when the peer keeps up: a late
		 * oldest one means the peer is stuck */
		r = oldest_sent(l);
		if ((!r || r->deadline_ns > now) && (!l->q_head || l->q_head->deadline_ns > now))
			return;
		snprintf(why, sizeof(why), "a request got no answer in %llu ms",
			 (unsigned long long)(l->timeout_ns / 1000000));
		link_reset(l, why);
		return;
	}
	if ((l->st == L_CONNECTING || l->st == L_HELLO) && now >= l->attempt_deadline)
		link_reset(l, "no connection or no hello answer in time");
	expire_queued(l, now);
}

static void tick_done(struct kura_op *op, int res)
{
	struct kura_link *l = KURA_CONTAINER_OF(op, struct kura_link, tick.op);
	uint64_t now = kura_now_ns();

	(void)res;
	l->tick_armed = 0;
	if (l->closing)
		return;
	check_deadlines(l, now);
	if (l->st == L_IDLE && now >= l->retry_at)
		start_connect(l);
	l->tick_armed = 1;
	kura_loop_timer(l->loop, &l->tick, TICK_NS);
}

static void cancel_done(struct kura_op *op, int res)
{
	struct kura_link *l = KURA_CONTAINER_OF(op, struct kura_link, cancel_op);

	(void)res;
	l->ncancel--;
	if (!l->closing)
		drained(l);
}

/* ---- the API ---- */

int kura_link_open(const struct kura_link_opts *o, struct kura_link **out)
{
	struct kura_link *l;
	size_t n;

	if (!o->loop || !o->hello || !o->addr || !o->peer)
		return -EINVAL;
	n = strlen(o->peer);
	if (!n || n >= sizeof(l->peer) || strspn(o->peer, NAME_CHARS) != n ||
	    strlen(o->addr) >= sizeof(l->addr))
		return -EINVAL;
	if (!(l = calloc(1, sizeof(*l))))
		return -ENOMEM;
	if (kura_tcp_parse(o->addr, &l->ss, &l->sslen)) {
		free(l);
		return -EINVAL;
	}
	snprintf(l->addr, sizeof(l->addr), "%s", o->addr);
	snprintf(l->peer, sizeof(l->peer), "%s", o->peer);
	l->loop = o->loop;
	l->timeout_ns = (uint64_t)(o->timeout_ms ? o->timeout_ms : 5000) * 1000000ull;
	l->hello = o->hello;
	l->state = o->state;
	l->arg = o->arg;
	l->fd = -1;
	l->next_tag = l->low_tag = 1;
	l->backoff_ns = BACKOFF_MIN_NS;
	l->conn_op.fn = conn_done;
	l->rx_op.fn = rx_done;
	l->tx_op.fn = tx_done;
	l->cancel_op.fn = cancel_done;
	l->tick.op.fn = tick_done;
	kura_ratelimit_init(&l->rl, 10000000000ull, 3);
	l->tick_armed = 1;
	kura_loop_timer(l->loop, &l->tick, TICK_NS);
	start_connect(l);
	*out = l;
	return 0;
}

static void cancel_wait(struct kura_link *l, const int *armed, struct kura_op *op)
{
	if (*armed)
		kura_loop_cancel_sync(l->loop, op);
}

void kura_link_close(struct kura_link *l)
{
	struct kura_link_req *list = NULL, **tail = &list;

	if (!l)
		return;
	l->closing = 1; /* completions from here on only say they ended */
	if (l->fd >= 0)
		shutdown(l->fd, SHUT_RDWR);
	cancel_wait(l, &l->conn_armed, &l->conn_op);
	cancel_wait(l, &l->rx_armed, &l->rx_op);
	cancel_wait(l, &l->tx_armed, &l->tx_op);
	cancel_wait(l, &l->tick_armed, &l->tick.op);
	while (l->conn_armed || l->rx_armed || l->tx_armed || l->tick_armed || l->ncancel)
		kura_loop_run_once(l->loop, TICK_NS);
	/* the kernel points into no request now */
	unhold(l, &tail);
	take_all(l, &tail, 1, 0);
	settle_list(l, list);
	if (l->fd >= 0)
		close_abort(l->fd);
	kura_rxbuf_free(&l->rx);
	free(l);
}

int kura_link_submit(struct kura_link *l, struct kura_link_req *r)
{
	struct kura_proto_req *q = &r->req;
	const char *why;

	if (l->closing)
		return -ENOTCONN;
	if (l->npending >= KURA_LINK_MAX_QUEUED)
		return -EAGAIN;
	q->magic = KURA_PROTO_MAGIC;
	q->tag = 0;
	if (q->op == KURA_OP_WRITE)
		q->data_len = (uint32_t)q->nblk * KURA_BLK_SIZE;
	if (!r->cb || q->op == KURA_OP_HELLO || kura_proto_check(q, &why) ||
	    ((q->op == KURA_OP_WRITE || q->op == KURA_OP_SYNC || q->op == KURA_OP_FWD) &&
	     !r->data) ||
	    (r->cap && !r->buf) ||
	    (q->op == KURA_OP_READ && (!q->nblk || q->nblk > KURA_EXT_BLOCKS ||
				       r->cap < (size_t)q->nblk * KURA_BLK_SIZE)))
		return -EINVAL;
	r->status = 0;
	r->got = 0;
	r->next = NULL;
	r->deadline_ns = kura_now_ns() + l->timeout_ns;
	if (l->q_tail)
		l->q_tail->next = r;
	else
		l->q_head = r;
	l->q_tail = r;
	l->npending++;
	arm_tx(l);
	return 0;
}

int kura_link_up(const struct kura_link *l)
{
	return l->st == L_UP && !l->closing;
}

const char *kura_link_peer(const struct kura_link *l)
{
	return l->peer;
}

uint64_t kura_link_peer_epoch(const struct kura_link *l)
{
	return l->peer_epoch;
}
