/* A link to another node: the store protocol (blockd/proto.h) over TCP,
 * driven on the owner's io_uring loop, with the HELLO exchange, pipelined
 * requests, and reconnection.
 *
 * Life of a link: kura_link_open() starts connecting at once. Once the TCP
 * connection is up the link sends its HELLO (this node's cluster id, name
 * and epoch, from the hello callback) and checks the answer: the same
 * cluster id, protocol version, and the node name the caller expects (a
 * link to 10.0.0.2:7400 that reaches another node is refused). Then it is
 * UP and sends queued requests in order, many in flight, matching the
 * answers by tag (they may come in any order).
 *
 * Failures: when an UP connection fails, closes, or carries anything that
 * is not the protocol (bad magic, an unknown tag, a data length that does
 * not fit the request), every request in flight and queued completes with
 * -ENOTCONN (-ETIMEDOUT for those already past their deadline), and the
 * link reconnects after a delay (100 ms, doubling to 2 s, reset once UP).
 * A request waiting longer than timeout_ms for its answer (default 5000)
 * fails with -ETIMEDOUT and the link is reset (its peer is stuck or gone);
 * deadlines are checked every 100 ms. An attempt that fails before UP
 * (refused, no HELLO answer within timeout_ms, a HELLO answer with a
 * non-zero status, another cluster id, protocol version or node name)
 * fails no request: it is logged (a refused HELLO as a warning: the peer
 * may be restarted into the right cluster) and retried after the delay.
 * Requests submitted while the link is down wait in the queue until it is
 * UP or until their timeout. At most KURA_LINK_MAX_QUEUED requests are
 * pending (queued or in flight; more: -EAGAIN at once).
 *
 * Thread rule: everything runs on the owner loop's thread, callbacks
 * included; a callback never runs from inside the call that submitted.
 * kura_link_close() turns the loop (as kura_loop_cancel_sync() does), so
 * it must not be called from a completion the loop is running: not from
 * a request's callback, the state callback, a timer or a posted op. From
 * there, kura_loop_defer() an op that closes the link.
 *
 * Memory: the request's data (WRITE, SYNC) must stay valid until its
 * callback. Answer data lands in the caller's buffer: READ answers carry
 * exactly nblk * 4096 bytes (cap must hold them), SYNC answers a struct
 * kura_proto_sync_result, GLIST a struct kura_proto_sync and whole
 * entries, at most cap bytes; INFO, LIST and STATS answers at
 * most cap bytes (a longer one is a protocol error: the link resets);
 * other answers and every error carry none. No allocation per request;
 * each link reads its answers through a 64 KiB buffer (a burst of answers
 * comes in with one receive; the rest of a long answer's data goes
 * straight to the caller's buffer).
 */
#ifndef KURA_REPLICATION_LINK_H
#define KURA_REPLICATION_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "blockd/proto.h"
#include "common/loop.h"

#define KURA_LINK_MAX_QUEUED 4096u

struct kura_link;

/* One request on a link. The caller fills req (the link sets magic, tag,
 * and a WRITE's data_len from nblk), data (WRITE), buf/cap (answers with
 * data), cb and arg; status and got are set before cb(r) runs: status is
 * the peer's answer (0 or -errno) or the link's error (-ENOTCONN,
 * -ETIMEDOUT), got the answer's data bytes. The caller owns r and must
 * keep it alive until cb runs; it may free or submit r again in cb. */
struct kura_link_req {
	struct kura_proto_req req;
	const void *data;
	void *buf;
	size_t cap;
	void (*cb)(struct kura_link_req *r);
	void *arg;
	int status;
	size_t got;
	uint32_t flags; /* the answer's (KURA_PROTO_RF_*) */
	/* the link's own: the queue, then the deadline of the answer */
	struct kura_link_req *next;
	uint64_t deadline_ns;
};

struct kura_link_opts {
	struct kura_loop *loop;
	const char *addr;      /* "A.B.C.D:PORT" */
	const char *peer;      /* the node name expected at addr */
	unsigned timeout_ms;   /* per request; 0: 5000 */
	/* Fills this node's HELLO (called before every connection's HELLO). */
	void (*hello)(void *arg, struct kura_proto_hello *out);
	/* The link went UP (up = 1) or DOWN (up = 0, after the failed
	 * requests' callbacks); may be NULL. Not called by kura_link_close. */
	void (*state)(void *arg, struct kura_link *l, int up);
	void *arg;
};

/* -EINVAL for a bad address or name, -ENOMEM. Never fails for an
 * unreachable peer: that is a link that is not UP yet. */
int kura_link_open(const struct kura_link_opts *o, struct kura_link **out);
/* Ends the link's submissions, fails everything pending with -ENOTCONN
 * (callbacks run before this returns, on this thread; an answer that had
 * already arrived keeps its status), closes the socket, frees the link.
 * NULL is a no-op. See the thread rule above. */
void kura_link_close(struct kura_link *l);

/* Queues r: 0; or, and cb will not run: -EAGAIN (too many pending; r
 * untouched), -EINVAL (a request the protocol does not frame: bad op or
 * flags, HELLO, a WRITE without data or blocks, a READ whose buf cannot
 * hold its blocks, no cb), -ENOTCONN (the link is closing: a callback run
 * by kura_link_close submitted). */
int kura_link_submit(struct kura_link *l, struct kura_link_req *r);

/* Whether the link is UP (0 while it closes). */
int kura_link_up(const struct kura_link *l);
const char *kura_link_peer(const struct kura_link *l);
/* The epoch the peer sent in its HELLO answer (0 before the first). */
uint64_t kura_link_peer_epoch(const struct kura_link *l);

#endif
