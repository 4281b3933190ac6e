/* kura's iSCSI target: one portal (TCP address) serving every vdisk as the
 * target iqn.2026-11.io.kura:<vdisk> (LUN 0, read-write) and every snapshot
 * as iqn.2026-11.io.kura:<vdisk>:<snapshot> (LUN 0, read-only), with
 * per-target initiator ACLs and CHAP credentials kept in the catalog.
 *
 * An empty ACL lets any initiator log in (and see the target in discovery);
 * a non-empty ACL lets in only the initiator names on it. CHAP, when set,
 * is required of every initiator in addition to the ACL.
 *
 * Thread rule: everything runs on the vdisk engine's loop thread: start,
 * stop, control requests, connections. No thread per connection.
 * Errors: 0 or -errno, with a one-line reason in errbuf where given.
 */
#ifndef KURA_ISCSI_TARGET_H
#define KURA_ISCSI_TARGET_H

#include <stddef.h>
#include <stdint.h>

#include "vdisk/vdisk.h"

#define KURA_ISCSI_IQN_PREFIX "iqn.2026-11.io.kura:"
#define KURA_ISCSI_DEFAULT_PORTAL "127.0.0.1:3260"

struct kura_iscsi;

/* Forwarding. In a cluster one node serves the vdisks (docs/cluster.md);
 * every other node runs a forwarding portal, so an initiator may log in
 * to any node's portal. A forwarding portal has no engine and no catalog:
 *
 * - when a connection arrives, it fetches the list of targets and their
 *   settings (ACL, CHAP) from the serving node, then reads the initiator's
 *   first PDU: logins and discovery see what the serving node would show
 *   (a target the list lacks is "not found"; no answer: "target not
 *   available", and the initiator tries again);
 * - each session's SCSI commands, task management and the session's start
 *   and end go to the serving node's LU of that target, which runs them
 *   for a nexus of its own standing for the session (so reservations, unit
 *   attentions and COMPARE AND WRITE hold across every node's portal:
 *   every portal is one target port group, relative port 1);
 * - a message that fails (the serving node is gone, changed, or does not
 *   know the session any more) closes that session's connection: its
 *   commands get no answer and the initiator logs in again (the I/O is
 *   retried, never failed), through the same portal.
 *
 * send: sends msg (len bytes) to the node serving the vdisks; later
 * cb(cbarg, err, got) with the answer's data (got bytes, at most cap) in
 * ans, or err < 0 (unreachable, timed out, refused by the peer). Returns 0,
 * or -errno and cb will not run. msg must stay valid until cb. */
struct kura_iscsi_fwd {
	int (*send)(void *arg, const void *msg, size_t len, void *ans, size_t cap,
		    void (*cb)(void *cbarg, int err, size_t got), void *cbarg);
	void *arg;
};

struct kura_iscsi_opts {
	struct kura_loop *loop;
	struct kura_vd_engine *vd;   /* NULL with fwd */
	struct kura_cat *cat;        /* NULL with fwd */
	const struct kura_iscsi_fwd *fwd; /* set: a forwarding portal */
	const char *portal;          /* "ADDR:PORT" (IPv4, or [IPv6]:PORT); NULL: iSCSI off,
				      * settings still kept */
	unsigned nop_interval_ms;    /* ping idle initiators this often; 0: 15000 */
	unsigned nop_timeout_ms;     /* drop a connection silent this long after a ping; 0: 30000 */
};

/* Loads the settings from the catalog and listens. -EADDRINUSE when the
 * portal is taken. */
int kura_iscsi_start(const struct kura_iscsi_opts *o, struct kura_iscsi **out, char *errbuf,
		     size_t errlen);
/* 1 when portal is a valid "ADDR:PORT" (checked before anything starts). */
int kura_iscsi_portal_ok(const char *portal);
/* "ADDR:PORT" served, or "off". */
const char *kura_iscsi_portal(const struct kura_iscsi *t);
/* Closes every connection (commands in flight finish first) and the listener. */
void kura_iscsi_stop(struct kura_iscsi *t);
/* Closes every connection at once, without waiting: answers of commands
 * still in flight are dropped, so initiators see the connection go (and
 * log in again, elsewhere) rather than errors. New logins are still
 * taken until kura_iscsi_stop. */
void kura_iscsi_drop_all(struct kura_iscsi *t);

/* On the serving node: a message from node link `conn` of node peer (a
 * forwarding portal's); data (len bytes, 4 KiB aligned) is the callee's to free(). 0 and
 * later done(cbarg, 0 or -errno, answer (malloc'd, the callee's), len); or
 * -errno at once (-EPROTO: not a valid message). */
int kura_iscsi_fwd_serve(struct kura_iscsi *t, unsigned conn, const char *peer, uint8_t *data,
			 size_t len,
			 void (*done)(void *cbarg, int err, uint8_t *data, size_t len),
			 void *cbarg);
/* Node link `conn` closed: the sessions it carried end once their commands
 * have (as a connection's end would). */
void kura_iscsi_fwd_gone(struct kura_iscsi *t, unsigned conn);

/* Control requests iscsi_list, iscsi_show, iscsi_acl, iscsi_chap
 * (docs/control.md), with the same contract as kura_vd_ctl. */
void kura_iscsi_ctl(struct kura_iscsi *t, const struct kura_json *req, struct kura_jw *out,
		    kura_vd_ctl_cb cb, void *arg);

#endif
