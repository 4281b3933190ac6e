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

#include "vdisk/vdisk.h"

#define KURA_ISCSI_IQN_PREFIX "iqn.2026-11.io.kura:"
#define KURA_ISCSI_DEFAULT_PORTAL "127.0.0.1:3260"

struct kura_iscsi;

struct kura_iscsi_opts {
	struct kura_loop *loop;
	struct kura_vd_engine *vd;
	struct kura_cat *cat;
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

/* Control requests iscsi_list, iscsi_show, iscsi_acl, iscsi_chap
 * (docs/control.md), with the same contract as kura_vd_ctl. */
void kura_iscsi_ctl(struct kura_iscsi *t, const struct kura_json *req, struct kura_jw *out,
		    kura_vd_ctl_cb cb, void *arg);

#endif
