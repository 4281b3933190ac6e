/* blockd's control socket: newline-delimited JSON requests (docs/control.md)
 * answered by the vdisk engine and the frontends. Connections run on the engine's loop; each
 * has at most one request running and one answer being sent, so a client
 * that never reads holds at most one answer of memory.
 *
 * Thread rule: everything runs on the engine's loop thread.
 */
#ifndef KURA_BLOCKD_CONTROL_H
#define KURA_BLOCKD_CONTROL_H

#include "vdisk/vdisk.h"

#define KURA_CTL_MAX_LINE (1u << 20)

struct kura_ctl_server;

/* Answers one request: the contract of kura_vd_ctl (which is one). */
typedef void (*kura_ctl_fn)(void *ctx, const struct kura_json *req, struct kura_jw *out,
			    kura_vd_ctl_cb cb, void *arg);

/* Listens on path (see kura_unix_listen for `owned`); requests go to
 * fn(ctx, ...). -errno with a one-line reason in errbuf. */
int kura_ctl_server_start(struct kura_loop *loop, kura_ctl_fn fn, void *ctx, const char *path,
			  int owned, struct kura_ctl_server **out, char *errbuf, size_t errlen);
/* Stops accepting; waits for running requests, then closes every connection. */
void kura_ctl_server_stop(struct kura_ctl_server *srv);

#endif
