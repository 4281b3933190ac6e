/* blockd's socket server: serves the store protocol (blockd/proto.h) on a
 * unix socket, and on TCP to the other nodes of a cluster, every connection
 * on the store's loop; no thread per connection. Each connection may have at
 * most 128 requests (and 32 MiB of data) in flight; beyond that the server
 * stops reading from it until responses have been sent, so a client that
 * never reads cannot make the server grow. A connection reads into a 64 KiB
 * buffer (a burst of requests comes in with one receive, not two each) and
 * sends up to 16 ready answers with one sendmsg.
 *
 * Thread rule: everything runs on the store's loop thread.
 */
#ifndef KURA_BLOCKD_SERVER_H
#define KURA_BLOCKD_SERVER_H

#include "blockd/proto.h"
#include "blockd/store.h"

#include <stddef.h>

struct kura_server;

/* Listens on path. A socket file already there is replaced when `owned` (it
 * lies in the data dir this process has locked, so whatever holds it is a
 * previous instance on its way out); otherwise a live listener makes this
 * fail with -EADDRINUSE. Errors: -errno, with a one-line reason in errbuf. */
int kura_server_start(struct kura_loop *loop, struct kura_blk_store *s, const char *path,
		      int owned, struct kura_server **out, char *errbuf, size_t errlen);
/* A node-to-node listener: the store protocol on TCP, each connection
 * opened with a HELLO (proto.h) that hello() checks: it returns 0 and fills
 * out (this node), or -errno with a reason, and the link is refused. */
struct kura_server_peer {
	int (*hello)(void *arg, const struct kura_proto_hello *in, struct kura_proto_hello *out,
		     char *why, size_t len);
	void *arg;
};
/* Listens on addr ("A.B.C.D:PORT" or "[V6]:PORT"). Errors as above. */
int kura_server_start_tcp(struct kura_loop *loop, struct kura_blk_store *s, const char *addr,
			  const struct kura_server_peer *peer, struct kura_server **out,
			  char *errbuf, size_t errlen);
/* Where requests go besides this node's store, in a cluster: READ, WRITE
 * and FREE on the local socket through the replication layer (read, write,
 * free; TRIM and MOVE there get -EOPNOTSUPP),
 * WRITE flagged KURA_PROTO_F_PRIMARY on node links to the primary's part
 * (write_primary; without it such a write gets -EREMOTE), and SYNC. Each returns 0
 * (cb(cbarg, status) will run) or -errno; data is the request's payload
 * (the callee copies what it keeps), and q is valid only during the call
 * (the next request of the connection may be read into it at once).
 * NULL members: the local store. */
struct kura_server_route {
	int (*read)(void *arg, const struct kura_proto_req *q, void *buf, kura_blk_cb cb,
		    void *cbarg);
	int (*write)(void *arg, const struct kura_proto_req *q, const void *data, kura_blk_cb cb,
		     void *cbarg);
	/* WRITE flagged F_PRIMARY on a node link; *ver gets the version it
	 * was written at (answered as 8 bytes of data). */
	int (*write_primary)(void *arg, const struct kura_proto_req *q, const void *data,
			     uint64_t *ver, kura_blk_cb cb, void *cbarg);
	/* READ flagged F_PRIMARY on a node link. NULL: -EREMOTE. */
	int (*read_primary)(void *arg, const struct kura_proto_req *q, void *buf,
			    kura_blk_cb cb, void *cbarg);
	/* FREE on the local socket (through the replication layer). */
	int (*free)(void *arg, const struct kura_proto_req *q, kura_blk_cb cb, void *cbarg);
	/* FREE flagged F_PRIMARY on a node link. NULL: -EREMOTE. */
	int (*free_primary)(void *arg, const struct kura_proto_req *q, kura_blk_cb cb,
			    void *cbarg);
	/* SYNC from node peer (proto.h): data is the request's payload, of len
	 * bytes (framing checked, fields not); the answer goes into *out.
	 * NULL: SYNC gets -EREMOTE. */
	int (*sync)(void *arg, const char *peer, const void *data, size_t len,
		    struct kura_proto_sync_result *out, kura_blk_cb cb, void *cbarg);
	/* GLIST and PLIST (proto.h): 0 and done(cbarg, status, data (malloc'd, the
	 * server frees it), len) later, or -errno; NULL: -EREMOTE. */
	int (*glist)(void *arg, const struct kura_proto_req *q,
		     void (*done)(void *cbarg, int err, uint8_t *data, size_t len), void *cbarg);
	/* Whether node peer may change this node's copy with q (a WRITE
	 * without F_PRIMARY, or FREE), on a node link: 0, or -errno answered
	 * at once. NULL: any may; TRIM and MOVE are refused (EOPNOTSUPP) when
	 * it is set. */
	int (*peer_may_write)(void *arg, const char *peer, const struct kura_proto_req *q);
	/* FWD (proto.h) from node peer on node link `conn` (an id no other
	 * connection of this server has): data (len bytes, 4 KiB aligned) is
	 * the callee's to free(), whatever it returns; then as glist. NULL:
	 * -EREMOTE. */
	int (*fwd)(void *arg, unsigned conn, const char *peer, uint8_t *data, size_t len,
		   void (*done)(void *cbarg, int err, uint8_t *data, size_t len), void *cbarg);
	/* Node link `conn` closes (answers still to come are dropped). */
	void (*conn_closed)(void *arg, unsigned conn);
	void *arg;
};
void kura_server_set_route(struct kura_server *srv, const struct kura_server_route *route);

/* Stops accepting, closes every connection once its requests are done. */
void kura_server_stop(struct kura_server *srv);

#endif
