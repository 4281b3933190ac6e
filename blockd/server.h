/* blockd's socket server: serves the store protocol (blockd/proto.h) on a
 * unix socket, every connection on the store's loop; no thread per
 * connection. Each connection may have at most 128 requests (and 32 MiB of
 * data) in flight; beyond that the server stops reading from it until
 * responses have been sent, so a client that never reads cannot make the
 * server grow.
 *
 * Thread rule: everything runs on the store's loop thread.
 */
#ifndef KURA_BLOCKD_SERVER_H
#define KURA_BLOCKD_SERVER_H

#include "blockd/store.h"

struct kura_server;

/* Listens on path. A socket file already there is replaced when `owned` (it
 * lies in the data dir this process has locked, so whatever holds it is a
 * previous instance on its way out); otherwise a live listener makes this
 * fail with -EADDRINUSE. Errors: -errno, with a one-line reason in errbuf. */
int kura_server_start(struct kura_loop *loop, struct kura_blk_store *s, const char *path,
		      int owned, struct kura_server **out, char *errbuf, size_t errlen);
/* Stops accepting, closes every connection once its requests are done. */
void kura_server_stop(struct kura_server *srv);

#endif
