/* A blocking client of the store protocol (blockd/proto.h), for tools and
 * tests. Requests may be pipelined: send several, then receive responses
 * (which may arrive in any order; match them by tag).
 *
 * Thread rule: one thread per client. Errors: 0 or -errno; a broken or
 * closed connection is -EPIPE / -ECONNRESET.
 */
#ifndef KURA_BLOCKD_CLIENT_H
#define KURA_BLOCKD_CLIENT_H

#include "blockd/proto.h"

#include <stddef.h>

struct kura_client;

int kura_client_connect(const char *path, struct kura_client **out);
/* A node link, "A.B.C.D:PORT" (send a HELLO first: proto.h). */
int kura_client_connect_tcp(const char *addr, struct kura_client **out);
void kura_client_close(struct kura_client *c);
/* Sends one request and data_len bytes of data. */
int kura_client_send(struct kura_client *c, const struct kura_proto_req *req, const void *data);
/* Receives one response header; its data (resp->data_len bytes) goes to buf
 * (cap bytes; -EMSGSIZE if it does not fit, after draining it). */
int kura_client_recv(struct kura_client *c, struct kura_proto_resp *resp, void *buf, size_t cap);
/* One request, one response: returns the response status or a transport error. */
int kura_client_call(struct kura_client *c, struct kura_proto_req *req, const void *data,
		     void *buf, size_t cap, size_t *got);

#endif
