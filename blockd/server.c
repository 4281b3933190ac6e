/* The store protocol server (see server.h and proto.h). */
#include "blockd/server.h"
#include "blockd/proto.h"
#include "common/err.h"
#include "common/log.h"
#include "common/rxbuf.h"
#include "common/usock.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_INFLIGHT 128u
#define MAX_INFLIGHT_BYTES (32u << 20)
#define MAX_CONNS 1024u
/* A connection reads into a buffer of RX_BUF bytes, so that a burst of
 * requests (a header and 4 KiB each at a queue depth of 32) comes in with a
 * few receives rather than two each; the rest of a payload that does not
 * fit is received straight into its own buffer. */
#define RX_BUF (64u << 10)
/* Answers per sendmsg: those ready together leave in one system call. */
#define TX_BATCH 16u

struct conn;

struct sreq {
	struct conn *c;
	struct kura_proto_req req;
	struct kura_proto_resp resp;
	uint8_t *data;     /* READ buffer or response payload */
	size_t out_len;
	size_t reserved;   /* bytes counted in flight before the answer exists */
	struct sreq *next;
	int store_done;
};

struct conn {
	struct kura_server *srv;
	int fd;
	struct kura_op rx_op, tx_op;
	struct kura_proto_req hdr;
	size_t hdr_got;
	uint8_t *payload;
	size_t payload_got;
	struct kura_rxbuf rx;  /* RX_BUF bytes */
	int rx_direct;         /* the receive armed goes into payload */
	int rx_armed, tx_armed, closing;
	unsigned inflight;
	uint64_t inflight_bytes;
	struct sreq *txq_head, *txq_tail;
	size_t tx_off;         /* bytes of txq_head already sent */
	struct msghdr msg;
	struct iovec iov[2 * TX_BATCH];
	struct conn *next, *prev;
	unsigned id;
	int greeted;       /* a node link that has passed its HELLO */
	char peer[64];     /* ... from this node */
	int close_after_tx; /* refused: close once the answer is out */
};

struct kura_server {
	struct kura_loop *loop;
	struct kura_blk_store *s;
	int lfd;
	char path[108]; /* the unix socket, or the TCP address */
	int tcp;
	struct kura_server_peer peer;
	struct kura_server_route route;
	struct kura_op accept_op;
	int accept_armed, stopping;
	struct conn *conns;
	unsigned next_id, nconns;
};

int kura_proto_check(const struct kura_proto_req *r, const char **why)
{
	if (r->magic != KURA_PROTO_MAGIC)
		*why = "bad magic";
	else if (!r->op || r->op > KURA_OP_MAX)
		*why = "unknown op";
	else if (r->flags && ((r->op != KURA_OP_WRITE && r->op != KURA_OP_FREE &&
			       r->op != KURA_OP_READ) ||
			      (r->flags != KURA_PROTO_F_PRIMARY && r->flags != KURA_PROTO_F_REPLICA) ||
			      (r->op == KURA_OP_READ && r->flags != KURA_PROTO_F_PRIMARY)))
		*why = "unknown flags";
	else if (r->op == KURA_OP_FREE && (r->blk || r->nblk || r->data_len))
		*why = "free with blocks or data";
	else if (r->op == KURA_OP_WRITE && (!r->nblk || r->nblk > KURA_EXT_BLOCKS ||
					    r->data_len != (uint32_t)r->nblk * KURA_BLK_SIZE))
		*why = "write data length does not match its block count";
	else if (r->op == KURA_OP_HELLO && r->data_len != sizeof(struct kura_proto_hello))
		*why = "hello of the wrong size";
	else if (r->op == KURA_OP_SYNC &&
		 (r->data_len < sizeof(struct kura_proto_sync) ||
		  (r->data_len - sizeof(struct kura_proto_sync)) %
			  sizeof(struct kura_proto_sync_ent) ||
		  r->data_len > sizeof(struct kura_proto_sync) +
					KURA_PROTO_SYNC_MAX * sizeof(struct kura_proto_sync_ent)))
		*why = "sync of the wrong size";
	else if (r->op == KURA_OP_FWD && (!r->data_len || r->data_len > KURA_PROTO_FWD_MAX))
		*why = "forwarded request of the wrong size";
	else if (r->op != KURA_OP_WRITE && r->op != KURA_OP_HELLO && r->op != KURA_OP_SYNC &&
		 r->op != KURA_OP_FWD && r->data_len)
		*why = "data on a request that takes none";
	else
		return 0;
	return KURA_E_PROTO;
}

static void arm_rx(struct conn *c);
static void arm_tx(struct conn *c);

static void conn_maybe_free(struct conn *c)
{
	struct kura_server *srv = c->srv;

	if (!c->closing || c->inflight || c->rx_armed || c->tx_armed)
		return;
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->nconns--;
	free(c->payload);
	kura_rxbuf_free(&c->rx);
	free(c);
}

static void sreq_free(struct sreq *r)
{
	struct conn *c = r->c;

	c->inflight--;
	c->inflight_bytes -= r->out_len + r->req.data_len + r->reserved;
	free(r->data);
	free(r);
}

static void conn_close(struct conn *c, const char *why)
{
	const struct kura_server_route *rt = &c->srv->route;

	if (!c->closing && why)
		kura_log(WARN, "connection %u closed: %s", c->id, why);
	if (!c->closing && c->greeted && rt->conn_closed)
		rt->conn_closed(rt->arg, c->id);
	c->closing = 1;
	/* queued responses will never be sent */
	while (c->txq_head && !c->tx_armed) {
		struct sreq *r = c->txq_head;
		c->txq_head = r->next;
		sreq_free(r);
	}
	if (!c->txq_head)
		c->txq_tail = NULL;
	shutdown(c->fd, SHUT_RDWR); /* wakes a pending recv */
	conn_maybe_free(c);
}

static void respond(struct sreq *r, int status, size_t out_len)
{
	struct conn *c = r->c;

	r->store_done = 1;
	if (c->closing) {
		sreq_free(r);
		conn_maybe_free(c);
		return;
	}
	if (status == -ENOENT && r->req.op == KURA_OP_FREE && r->req.flags == KURA_PROTO_F_REPLICA)
		status = 0; /* a primary's free of what this copy lacks: sent again, or
			     * an extent a member catching up never got */
	if (status && status != -EREMOTE && r->req.flags == KURA_PROTO_F_REPLICA &&
	    !c->close_after_tx) {
		/* a replica's copy failed: nothing after it on this link may be
		 * applied (a later version would hide the missing one); the
		 * primary reconnects and sends both again, in order. (A copy
		 * refused as not the primary's, EREMOTE, is written again by the
		 * group's primary as a new write, newer than any: the link goes
		 * on.) */
		kura_log(WARN, "node link %u on %s: copy of extent %llu/%llu failed (%s); closing "
			 "the link", c->id, c->srv->path, (unsigned long long)r->req.layer,
			 (unsigned long long)r->req.ext, strerror(-status));
		c->close_after_tx = 1;
	}
	r->resp.magic = KURA_PROTO_RESP_MAGIC;
	r->resp.status = status;
	r->resp.tag = r->req.tag;
	r->resp.data_len = status ? 0 : (uint32_t)out_len;
	r->resp.flags = c->srv->tcp && kura_blk_space_low(c->srv->s) ? KURA_PROTO_RF_LOW_SPACE : 0;
	r->out_len = status ? 0 : out_len;
	c->inflight_bytes += r->out_len;
	c->inflight_bytes -= r->reserved;
	r->reserved = 0;
	r->next = NULL;
	if (c->txq_tail)
		c->txq_tail->next = r;
	else
		c->txq_head = r;
	c->txq_tail = r;
	arm_tx(c);
}

static void tx_done(struct kura_op *op, int res)
{
	struct conn *c = KURA_CONTAINER_OF(op, struct conn, tx_op);
	size_t sent;

	c->tx_armed = 0;
	if (res <= 0) {
		conn_close(c, res < 0 ? "send failed" : NULL);
		return;
	}
	sent = c->tx_off + (size_t)res;
	while (c->txq_head && sent >= sizeof(c->txq_head->resp) + c->txq_head->out_len) {
		struct sreq *r = c->txq_head;
		sent -= sizeof(r->resp) + r->out_len;
		c->txq_head = r->next;
		sreq_free(r);
	}
	if (!c->txq_head)
		c->txq_tail = NULL;
	c->tx_off = sent;
	if (c->closing || (c->close_after_tx && !c->txq_head)) {
		conn_close(c, NULL);
		return;
	}
	arm_tx(c);
	arm_rx(c);
}

static void arm_tx(struct conn *c)
{
	struct sreq *r = c->txq_head;
	struct io_uring_sqe *sqe;
	size_t off = c->tx_off;
	int n = 0;

	if (c->tx_armed || !r || c->closing)
		return;
	for (unsigned k = 0; r && k < TX_BATCH; k++, r = r->next, off = 0) {
		size_t doff = off > sizeof(r->resp) ? off - sizeof(r->resp) : 0;
		if (off < sizeof(r->resp)) {
			c->iov[n].iov_base = (uint8_t *)&r->resp + off;
			c->iov[n++].iov_len = sizeof(r->resp) - off;
		}
		if (r->out_len > doff) {
			c->iov[n].iov_base = r->data + doff;
			c->iov[n++].iov_len = r->out_len - doff;
		}
	}
	memset(&c->msg, 0, sizeof(c->msg));
	c->msg.msg_iov = c->iov;
	c->msg.msg_iovlen = (size_t)n;
	c->tx_armed = 1;
	sqe = kura_loop_sqe(c->srv->loop, &c->tx_op);
	io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
}

static void store_done(void *arg, int err)
{
	struct sreq *r = arg;

	respond(r, err, r->req.op == KURA_OP_READ ? (size_t)r->req.nblk * KURA_BLK_SIZE
			: r->req.op == KURA_OP_SYNC ? sizeof(struct kura_proto_sync_result)
			: r->req.op == KURA_OP_WRITE && r->req.flags == KURA_PROTO_F_PRIMARY && r->data
				? sizeof(uint64_t)
				: 0);
}

static size_t stats_json(struct kura_blk_store *s, char *buf, size_t len)
{
	struct kura_blk_stats st;
	size_t n;
	const char *p;
	struct kura_blk_disk_info di;

	kura_blk_stats(s, &st);
	n = (size_t)snprintf(buf, len,
		"{\"capacity_bytes\":%llu,\"used_bytes\":%llu,\"reads\":%llu,\"writes\":%llu,"
		"\"read_bytes\":%llu,\"write_bytes\":%llu,\"direct_writes\":%llu,"
		"\"direct_bytes\":%llu,\"queued_reads\":%llu,\"io_errors\":%llu,\"crc_errors\":%llu,\"enospc\":%llu,"
		"\"replica_gaps\":%llu,\"journal_bytes\":%llu,\"journal_used\":%llu,\"checkpoints\":%llu,"
		"\"index_ram_bytes\":%llu,\"crc_cache_ram_bytes\":%llu,\"stopped\":%s,\"disks\":[",
		(unsigned long long)st.capacity_extents * KURA_EXT_SIZE,
		(unsigned long long)st.used_extents * KURA_EXT_SIZE, (unsigned long long)st.reads,
		(unsigned long long)st.writes, (unsigned long long)st.read_bytes,
		(unsigned long long)st.write_bytes, (unsigned long long)st.direct_writes,
		(unsigned long long)st.direct_bytes, (unsigned long long)st.queued_reads,
		(unsigned long long)st.io_errors,
		(unsigned long long)st.crc_errors, (unsigned long long)st.enospc,
		(unsigned long long)st.replica_gaps, (unsigned long long)st.journal_bytes, (unsigned long long)st.journal_used,
		(unsigned long long)st.checkpoints, (unsigned long long)st.index_bytes,
		(unsigned long long)st.crc_cache_bytes, st.dead ? "true" : "false");
	for (unsigned i = 0; !kura_blk_disk_info(s, i, &di) && n < len; i++) {
		n += (size_t)snprintf(buf + n, len - n, "%s{\"path\":\"", i ? "," : "");
		p = di.path;
		for (; *p && n + 8 < len; p++) {
			if (*p == '"' || *p == '\\')
				buf[n++] = '\\';
			if ((unsigned char)*p >= 0x20)
				buf[n++] = *p;
		}
		if (n < len)
			n += (size_t)snprintf(buf + n, len - n,
					      "\",\"size\":%llu,\"used_bytes\":%llu,\"slow_ios\":%llu,"
					      "\"slow_worst_ms\":%llu,\"failed\":%s}",
					      (unsigned long long)di.size,
					      (unsigned long long)di.used_extents * KURA_EXT_SIZE,
					      (unsigned long long)di.slow_ios,
					      (unsigned long long)(di.slow_worst_ns / 1000000),
					      di.failed ? "true" : "false");
	}
	if (n < len)
		n += (size_t)snprintf(buf + n, len - n, "]}\n");
	return KURA_MIN(n, len);
}

/* HELLO opens a node link and comes nowhere else: 0, or 1 with why. */
static int hello_check(const struct conn *c, const char **why)
{
	int hello = c->hdr.op == KURA_OP_HELLO;

	if (!c->srv->tcp)
		*why = hello ? "hello on the local socket"
		       : c->hdr.flags ? "node link flags on the local socket"
		       : c->hdr.op == KURA_OP_SYNC ? "sync on the local socket"
		       : c->hdr.op == KURA_OP_GLIST ? "group list on the local socket"
		       : c->hdr.op == KURA_OP_PLIST ? "presence list on the local socket"
		       : c->hdr.op == KURA_OP_FWD ? "forwarded request on the local socket" : NULL;
	else if (c->greeted)
		*why = hello ? "a second hello" : NULL;
	else
		*why = hello ? NULL : "the first request on a node link must be hello";
	return *why != NULL;
}

/* Field checks of a peer's hello: 0 or a reason. */
static const char *hello_bad(const struct kura_proto_hello *h)
{
	size_t n;

	if (h->version != KURA_PROTO_VERSION)
		return "protocol version differs";
	if (h->pad || h->reserved)
		return "non-zero reserved fields";
	if (memchr(h->cluster_id, 0, 36) || h->cluster_id[36] || h->cluster_id[37] ||
	    h->cluster_id[38] || h->cluster_id[39])
		return "cluster id is not 36 characters";
	n = strnlen(h->node, sizeof(h->node));
	if (!n || n == sizeof(h->node) ||
	    strspn(h->node, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != n)
		return "bad node name";
	for (size_t i = n; i < sizeof(h->node); i++)
		if (h->node[i])
			return "node name not NUL-padded";
	return NULL;
}

static void do_hello(struct conn *c, struct sreq *r, const uint8_t *payload)
{
	struct kura_proto_hello in, *out = calloc(1, sizeof(*out));
	char why[256] = "";
	const char *bad;
	int err;

	memcpy(&in, payload, sizeof(in));
	if (!out) {
		respond(r, -ENOMEM, 0);
		c->close_after_tx = 1;
		return;
	}
	if ((bad = hello_bad(&in))) {
		snprintf(why, sizeof(why), "%s", bad);
		err = -EINVAL;
	} else {
		err = c->srv->peer.hello(c->srv->peer.arg, &in, out, why, sizeof(why));
	}
	if (err) {
		kura_log(WARN, "node link %u on %s refused: %s", c->id, c->srv->path, why);
		free(out);
		c->close_after_tx = 1;
		respond(r, err, 0);
		return;
	}
	kura_log(INFO, "node link %u on %s: node %s (epoch %llu)", c->id, c->srv->path, in.node,
		 (unsigned long long)in.epoch);
	c->greeted = 1;
	snprintf(c->peer, sizeof(c->peer), "%s", in.node);
	r->data = (uint8_t *)out;
	respond(r, 0, sizeof(*out));
}

static void glist_done(void *arg, int err, uint8_t *data, size_t len)
{
	struct sreq *r = arg;

	r->data = data;
	respond(r, err, len);
}

/* On a node link in a cluster, a request that would change this node's
 * copy from a node that may not (route.peer_may_write): 0, or the answer. */
static int peer_refuses(const struct conn *c, const struct kura_proto_req *q)
{
	const struct kura_server_route *rt = &c->srv->route;

	if (!rt->peer_may_write || !c->srv->tcp)
		return 0;
	switch (q->op) {
	case KURA_OP_TRIM:
	case KURA_OP_MOVE:
		return -EOPNOTSUPP; /* nothing sends them between nodes */
	case KURA_OP_WRITE:
	case KURA_OP_FREE:
		if (q->flags == KURA_PROTO_F_PRIMARY)
			return 0; /* the primary's part decides */
		return rt->peer_may_write(rt->arg, c->peer, q);
	default:
		return 0;
	}
}

/* Returns -1 when the connection was closed (and may be gone). */
static int dispatch(struct conn *c, uint8_t *payload)
{
	struct kura_blk_store *s = c->srv->s;
	const struct kura_server_route *rt = &c->srv->route;
	struct sreq *r = calloc(1, sizeof(*r));
	const struct kura_proto_req *q = &c->hdr;
	int err = 0;

	if (!r) {
		free(payload);
		conn_close(c, "out of memory");
		return -1;
	}
	r->c = c;
	r->req = *q;
	c->inflight++;
	c->inflight_bytes += q->data_len;
	if (q->cls >= KURA_IO_NCLASS) {
		err = -EINVAL;
		goto now;
	}
	if (rt->write && !c->srv->tcp && (q->op == KURA_OP_TRIM || q->op == KURA_OP_MOVE)) {
		err = -EOPNOTSUPP; /* in a cluster, only reads, writes and frees are replicated */
		goto now;
	}
	if ((err = peer_refuses(c, q)))
		goto now;
	switch (q->op) {
	case KURA_OP_READ:
		if (!q->nblk || q->nblk > KURA_EXT_BLOCKS) {
			err = -EINVAL;
			break;
		}
		r->data = kura_aligned_alloc_raw((size_t)q->nblk * KURA_BLK_SIZE);
		r->reserved = (size_t)q->nblk * KURA_BLK_SIZE; /* its answer is coming */
		c->inflight_bytes += r->reserved;
		if (!r->data)
			err = -ENOMEM;
		else if (rt->read && !c->srv->tcp)
			err = rt->read(rt->arg, q, r->data, store_done, r);
		else if (q->flags == KURA_PROTO_F_PRIMARY)
			err = rt->read_primary ? rt->read_primary(rt->arg, q, r->data, store_done, r)
					       : -EREMOTE;
		else
			err = kura_blk_read(s, q->layer, q->ext, q->blk, q->nblk, r->data,
					    (enum kura_io_class)q->cls, store_done, r);
		break;
	case KURA_OP_WRITE:
		if (rt->write && !c->srv->tcp) {
			err = rt->write(rt->arg, q, payload, store_done, r);
		} else if (q->flags == KURA_PROTO_F_PRIMARY) {
			r->data = calloc(1, sizeof(uint64_t)); /* the answer: its version */
			err = !r->data ? -ENOMEM
			      : rt->write_primary ? rt->write_primary(rt->arg, q, payload,
								      (uint64_t *)r->data,
								      store_done, r)
						  : -EREMOTE;
		} else if (q->flags == KURA_PROTO_F_REPLICA) {
			err = kura_blk_write_replica(s, q->layer, q->ext, q->blk, q->nblk, payload,
						     q->version, q->arg_ext,
						     (enum kura_io_class)q->cls, store_done, r);
			if (!err)
				payload = NULL;
		} else {
			/* the payload goes to the journal as it came off the socket */
			err = kura_blk_write_owned(s, q->layer, q->ext, q->blk, q->nblk, payload,
						   q->version, (enum kura_io_class)q->cls, store_done,
						   r);
			if (!err)
				payload = NULL;
		}
		break;
	case KURA_OP_TRIM:
		err = kura_blk_trim(s, q->layer, q->ext, q->blk, q->nblk, store_done, r);
		break;
	case KURA_OP_FREE:
		if (q->flags == KURA_PROTO_F_PRIMARY)
			err = rt->free_primary ? rt->free_primary(rt->arg, q, store_done, r)
					       : -EREMOTE;
		else if (rt->free && !c->srv->tcp)
			err = rt->free(rt->arg, q, store_done, r);
		else
			err = kura_blk_free(s, q->layer, q->ext, store_done, r);
		break;
	case KURA_OP_MOVE:
		err = kura_blk_move(s, q->layer, q->ext, q->arg_layer, q->arg_ext, store_done, r);
		break;
	case KURA_OP_FLUSH:
		err = kura_blk_flush(s, store_done, r);
		break;
	case KURA_OP_INFO: {
		struct kura_blk_extent_info info;
		struct kura_proto_info *pi;
		err = kura_blk_extent_info(s, q->layer, q->ext, &info);
		if (!err && !(r->data = calloc(1, sizeof(*pi))))
			err = -ENOMEM;
		if (err)
			goto now;
		pi = (struct kura_proto_info *)r->data;
		pi->version = info.version;
		pi->disk = info.disk;
		pi->nblocks = info.nblocks;
		memcpy(pi->present, info.present.w, sizeof(pi->present));
		free(payload);
		respond(r, 0, sizeof(*pi));
		return 0;
	}
	case KURA_OP_LIST: {
		uint64_t *exts;
		size_t n;
		err = kura_blk_list(s, q->layer, &exts, &n);
		if (err)
			goto now;
		r->data = (uint8_t *)exts;
		free(payload);
		respond(r, 0, n * sizeof(*exts));
		return 0;
	}
	case KURA_OP_HELLO:
		do_hello(c, r, payload);
		free(payload);
		return 0;
	case KURA_OP_GLIST:
	case KURA_OP_PLIST:
		err = rt->glist ? rt->glist(rt->arg, q, glist_done, r) : -EREMOTE;
		break;
	case KURA_OP_FWD:
		if (!rt->fwd) {
			err = -EREMOTE;
			break;
		}
		/* the payload becomes the route's: a forwarded write's data
		 * goes on without a copy */
		err = rt->fwd(rt->arg, c->id, c->peer, payload, q->data_len, glist_done, r);
		payload = NULL;
		break;
	case KURA_OP_SYNC:
		if (!rt->sync) {
			err = -EREMOTE; /* not in a cluster */
			break;
		}
		r->data = calloc(1, sizeof(struct kura_proto_sync_result));
		r->reserved = sizeof(struct kura_proto_sync_result);
		c->inflight_bytes += r->reserved;
		err = r->data ? rt->sync(rt->arg, c->peer, payload, q->data_len,
					 (struct kura_proto_sync_result *)r->data, store_done, r)
			      : -ENOMEM;
		break;
	case KURA_OP_STATS: {
		size_t n;
		r->data = malloc(16384);
		if (!r->data) {
			err = -ENOMEM;
			goto now;
		}
		n = stats_json(s, (char *)r->data, 16384);
		free(payload);
		respond(r, 0, n);
		return 0;
	}
	}
now:
	free(payload);
	if (err)
		respond(r, err, 0);
	return 0;
}

static int over_limits(const struct conn *c)
{
	return c->inflight >= MAX_INFLIGHT || c->inflight_bytes >= MAX_INFLIGHT_BYTES;
}

/* Takes the requests the buffer holds whole (and the start of a payload),
 * then receives more: into the buffer, or straight into the payload once
 * the buffer has given all it holds of it. Stops, reading nothing more,
 * while the connection is over its limits (back-pressure: resumed when
 * answers are sent) or refused. */
static void rx_parse(struct conn *c)
{
	const char *why;

	for (;;) {
		uint8_t *p;

		if (c->closing || c->close_after_tx)
			return;
		if (c->hdr_got < sizeof(c->hdr)) {
			if (over_limits(c))
				return;
			if (kura_rxbuf_avail(&c->rx) < sizeof(c->hdr))
				break;
			c->hdr_got = kura_rxbuf_take(&c->rx, &c->hdr, sizeof(c->hdr));
			if (kura_proto_check(&c->hdr, &why) || hello_check(c, &why)) {
				conn_close(c, why);
				return;
			}
			c->payload_got = 0;
			if (c->hdr.data_len &&
			    !(c->payload = kura_aligned_alloc_raw(c->hdr.data_len))) {
				conn_close(c, "out of memory");
				return;
			}
		}
		if (c->payload_got < c->hdr.data_len) { /* no payload: no buffer */
			c->payload_got += kura_rxbuf_take(&c->rx, c->payload + c->payload_got,
							  c->hdr.data_len - c->payload_got);
			if (c->payload_got < c->hdr.data_len)
				break;
		}
		p = c->payload;
		c->payload = NULL;
		c->hdr_got = 0;
		if (dispatch(c, p))
			return;
	}
	arm_rx(c);
}

static void rx_done(struct kura_op *op, int res)
{
	struct conn *c = KURA_CONTAINER_OF(op, struct conn, rx_op);

	c->rx_armed = 0;
	if (c->close_after_tx && res > 0) {
		free(c->payload);
		c->payload = NULL;
		if (!c->txq_head)
			conn_close(c, NULL);
		return; /* refused or failed: nothing more is read */
	}
	if (c->closing || res <= 0) {
		conn_close(c, res < 0 && !c->closing ? "receive failed" : NULL);
		return;
	}
	if (c->rx_direct)
		c->payload_got += (size_t)res;
	else
		c->rx.len += (size_t)res;
	rx_parse(c);
}

/* Receives more, or takes what the buffer holds first (when the
 * connection was held back with requests buffered). */
static void arm_rx(struct conn *c)
{
	struct io_uring_sqe *sqe;
	size_t need;

	if (c->rx_armed || c->closing || c->close_after_tx)
		return;
	if (c->hdr_got < sizeof(c->hdr) && over_limits(c))
		return; /* back-pressure: resumes when answers are sent */
	need = c->hdr_got < sizeof(c->hdr) ? sizeof(c->hdr) : c->hdr.data_len - c->payload_got;
	if (kura_rxbuf_avail(&c->rx) >= need ||
	    (c->hdr_got == sizeof(c->hdr) && kura_rxbuf_avail(&c->rx))) {
		rx_parse(c);
		return;
	}
	if (kura_rxbuf_ready(&c->rx, RX_BUF)) {
		conn_close(c, "out of memory");
		return;
	}
	c->rx_armed = 1;
	sqe = kura_loop_sqe(c->srv->loop, &c->rx_op);
	/* the rest of a payload larger than the buffer goes to its place */
	c->rx_direct = c->hdr_got == sizeof(c->hdr) && need > RX_BUF / 2;
	if (c->rx_direct)
		io_uring_prep_recv(sqe, c->fd, c->payload + c->payload_got, need, 0);
	else
		io_uring_prep_recv(sqe, c->fd, c->rx.buf + c->rx.len, c->rx.cap - c->rx.len, 0);
}

static void arm_accept(struct kura_server *srv);

static void accept_done(struct kura_op *op, int res)
{
	struct kura_server *srv = KURA_CONTAINER_OF(op, struct kura_server, accept_op);
	struct conn *c;

	srv->accept_armed = 0;
	if (srv->stopping) {
		if (res >= 0)
			close(res);
		return;
	}
	if (res < 0) {
		kura_log(WARN, "accept on %s: %s", srv->path, strerror(-res));
		arm_accept(srv);
		return;
	}
	c = srv->nconns < MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
	if (!c) {
		kura_log(WARN, "refusing a connection on %s: %u open", srv->path, srv->nconns);
		close(res);
		arm_accept(srv);
		return;
	}
	srv->nconns++;
	c->srv = srv;
	c->fd = res;
	c->id = ++srv->next_id;
	c->rx_op.fn = rx_done;
	c->tx_op.fn = tx_done;
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	arm_rx(c);
	arm_accept(srv);
}

static void arm_accept(struct kura_server *srv)
{
	struct io_uring_sqe *sqe;

	if (srv->accept_armed || srv->stopping)
		return;
	srv->accept_armed = 1;
	sqe = kura_loop_sqe(srv->loop, &srv->accept_op);
	io_uring_prep_accept(sqe, srv->lfd, NULL, NULL, SOCK_CLOEXEC);
}

static int serve(struct kura_loop *loop, struct kura_blk_store *s, int fd, const char *where,
		 const struct kura_server_peer *peer, struct kura_server **out)
{
	struct kura_server *srv = calloc(1, sizeof(*srv));

	if (!srv) {
		close(fd);
		return -ENOMEM;
	}
	srv->loop = loop;
	srv->s = s;
	srv->lfd = fd;
	if (peer) {
		srv->tcp = 1;
		srv->peer = *peer;
	}
	snprintf(srv->path, sizeof(srv->path), "%s", where);
	srv->accept_op.fn = accept_done;
	arm_accept(srv);
	*out = srv;
	return 0;
}

int kura_server_start(struct kura_loop *loop, struct kura_blk_store *s, const char *path,
		      int owned, struct kura_server **out, char *errbuf, size_t errlen)
{
	int fd = kura_unix_listen(path, owned, errbuf, errlen);

	return fd < 0 ? fd : serve(loop, s, fd, path, NULL, out);
}

int kura_server_start_tcp(struct kura_loop *loop, struct kura_blk_store *s, const char *addr,
			  const struct kura_server_peer *peer, struct kura_server **out,
			  char *errbuf, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd;

	if (kura_tcp_parse(addr, &ss, &sl)) {
		snprintf(errbuf, errlen, "bad address '%s': use ADDR:PORT, e.g. 10.0.0.1:7400", addr);
		return -EINVAL;
	}
	fd = kura_tcp_listen(&ss, sl, "listen for nodes", addr, errbuf, errlen);
	return fd < 0 ? fd : serve(loop, s, fd, addr, peer, out);
}

void kura_server_set_route(struct kura_server *srv, const struct kura_server_route *route)
{
	srv->route = *route;
}

void kura_server_stop(struct kura_server *srv)
{
	if (!srv)
		return;
	srv->stopping = 1;
	if (srv->accept_armed)
		kura_loop_cancel_sync(srv->loop, &srv->accept_op);
	for (struct conn *c = srv->conns, *n; c; c = n) {
		n = c->next;
		conn_close(c, NULL);
	}
	while (srv->accept_armed || srv->conns)
		kura_loop_run_once(srv->loop, 100000000ULL);
	close(srv->lfd);
	if (!srv->tcp)
		unlink(srv->path);
	free(srv);
}
