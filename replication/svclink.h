/* A link to the node serving the cluster's vdisks (the vdisk service,
 * member.h), for what other nodes' frontends forward there (FWD,
 * blockd/proto.h; iscsi-target/target.h, "Forwarding"). It follows the
 * service: each request goes to the node the member last named as serving;
 * when that changes (checked every 100 ms), the link to the previous one is
 * closed and what was pending on it fails (-ENOTCONN), as it does when the
 * link breaks: a request never waits out its timeout on a node that has
 * lost the service. A
 * request unanswered for timeout_ms fails with -ETIMEDOUT (and the link is
 * reset, replication/link.h).
 *
 * Thread rule: the node's loop thread; callbacks never from inside the
 * submitting call. */
#ifndef KURA_REPLICATION_SVCLINK_H
#define KURA_REPLICATION_SVCLINK_H

#include <stddef.h>

#include "common/loop.h"
#include "replication/member.h"

struct kura_svclink;

/* name: this node's. -ENOMEM. */
int kura_svclink_create(struct kura_loop *loop, struct kura_member *m, const char *name,
			unsigned timeout_ms, struct kura_svclink **out);
/* Closes the link (pending requests fail, their callbacks run before this
 * returns) and frees s. Not from a completion the loop runs (as
 * kura_link_close). NULL is a no-op. */
void kura_svclink_destroy(struct kura_svclink *s);
/* The link is closed on a later loop turn, failing what is pending, and
 * sends fail with -ENOTCONN until kura_svclink_resume: while the portal
 * using it stops (what it still sends, such as aborts, must not wait on a
 * new link). */
void kura_svclink_reset(struct kura_svclink *s);
void kura_svclink_resume(struct kura_svclink *s);

/* Sends msg (len bytes, valid until cb) as a FWD request; cb(cbarg, err,
 * got) later with the answer in ans (at most cap bytes). 0; or, and cb
 * will not run: -EHOSTUNREACH (no other node serves the vdisks now),
 * -ENOTCONN (reset, not resumed),
 * -EAGAIN (too many pending), -ENOMEM, -EINVAL (len 0 or too long). */
int kura_svclink_send(struct kura_svclink *s, const void *msg, size_t len, void *ans, size_t cap,
		      void (*cb)(void *cbarg, int err, size_t got), void *cbarg);

#endif
