/* The portal: the listening socket, the targets (one per vdisk and per
 * snapshot) with their settings (catalog kind 'i') and persistent
 * reservations (kind 'p'), opening a target's LU on the vdisk for its
 * first session, the login callbacks, and the ping timer. */
#include "iscsi-target/iscsi_int.h"

#include "common/err.h"
#include "common/log.h"
#include "common/usock.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

/* ---- targets ---- */

struct itgt *iscsi_tgt_by_uid(struct kura_iscsi *p, uint64_t uid)
{
	for (struct itgt *t = p->tgts; t; t = t->next)
		if (t->uid == uid)
			return t;
	return NULL;
}

void iscsi_tgt_free(struct itgt *t)
{
	for (unsigned i = 0; i < t->nacl; i++)
		free(t->acl[i]);
	free(t->acl);
	free(t->pr_state);
	free(t);
}

static void tgt_names(struct itgt *t, const char *vname, const char *snap)
{
	snprintf(t->vname, sizeof(t->vname), "%s", vname);
	snprintf(t->snap, sizeof(t->snap), "%s", snap ? snap : "");
	if (snap)
		snprintf(t->iqn, sizeof(t->iqn), KURA_ISCSI_IQN_PREFIX "%s:%s", vname, snap);
	else
		snprintf(t->iqn, sizeof(t->iqn), KURA_ISCSI_IQN_PREFIX "%s", vname);
}

struct itgt *iscsi_tgt_put(struct kura_iscsi *p, uint64_t uid, const char *name,
			   const char *snap)
{
	struct itgt *t = iscsi_tgt_by_uid(p, uid);

	if (!t && (t = calloc(1, sizeof(*t)))) {
		t->uid = uid;
		t->next = p->tgts;
		p->tgts = t;
	}
	if (t)
		tgt_names(t, name, snap);
	return t;
}

void iscsi_tgt_prune(struct kura_iscsi *p)
{
	for (struct itgt **pp = &p->tgts; *pp;) {
		struct itgt *t = *pp;

		if (t->live || t->nsess || t->lu) {
			pp = &t->next;
			continue;
		}
		*pp = t->next;
		iscsi_tgt_free(t);
	}
}

int iscsi_each(struct kura_iscsi *p,
	       int (*fn)(void *arg, const char *name, const char *snap, uint64_t uid,
			 uint64_t size),
	       void *arg)
{
	int err;

	if (!p->fwd)
		return kura_vd_each(p->vd, fn, arg);
	for (struct itgt *t = p->tgts; t; t = t->next)
		if (t->live && (err = fn(arg, t->vname, t->snap[0] ? t->snap : NULL, t->uid, 0)))
			return err;
	return 0;
}

/* The target of vdisk name (snap NULL) or of its snapshot, made on first use. */
struct itgt *iscsi_tgt_get(struct kura_iscsi *p, const char *name, const char *snap)
{
	struct itgt *t;
	uint64_t uid;

	if (p->fwd) {
		for (t = p->tgts; t; t = t->next)
			if (t->live && !strcmp(t->vname, name) && !strcmp(t->snap, snap ? snap : ""))
				return t;
		return NULL;
	}
	if (kura_vd_uid(p->vd, name, snap, &uid))
		return NULL;
	if ((t = iscsi_tgt_by_uid(p, uid))) {
		tgt_names(t, name, snap); /* names follow the vdisk's */
		return t;
	}
	if (!(t = calloc(1, sizeof(*t))))
		return NULL;
	t->uid = uid;
	tgt_names(t, name, snap);
	t->next = p->tgts;
	p->tgts = t;
	return t;
}

bool iscsi_acl_allows(const struct itgt *t, const char *iname)
{
	if (!t->nacl)
		return true;
	for (unsigned i = 0; i < t->nacl; i++)
		if (!strcasecmp(t->acl[i], iname))
			return true;
	return false;
}

int iscsi_target_find(struct kura_iscsi *p, const char *iqn, const char *iname,
		      struct itgt **out)
{
	size_t pl = strlen(KURA_ISCSI_IQN_PREFIX);
	char name[KURA_VD_NAME_MAX + 1], *snap;
	struct itgt *t;

	if (strncasecmp(iqn, KURA_ISCSI_IQN_PREFIX, pl) || strlen(iqn + pl) >= sizeof(name))
		return -ENOENT;
	snprintf(name, sizeof(name), "%s", iqn + pl);
	if ((snap = strchr(name, ':')))
		*snap++ = 0;
	if (p->fwd && !p->dir_ok)
		return -EAGAIN; /* the serving node did not answer: try again */
	if (!(t = iscsi_tgt_get(p, name, snap)))
		return -ENOENT;
	if (!iscsi_acl_allows(t, iname))
		return -EACCES;
	*out = t;
	return 0;
}

/* ---- the LU on a vdisk handle ---- */

static int be_read(void *be, uint64_t off, uint64_t len, void *buf, enum kura_io_class cls,
		   kura_blk_cb cb, void *arg)
{
	return kura_vd_read(((struct itgt *)be)->h, off, len, buf, cls, cb, arg);
}

static int be_write(void *be, uint64_t off, uint64_t len, const void *buf,
		    enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	return kura_vd_write(((struct itgt *)be)->h, off, len, buf, cls, cb, arg);
}

static int be_write_cached(void *be, uint64_t off, uint64_t len, const void *buf,
			   enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	return kura_vd_write_cached(((struct itgt *)be)->h, off, len, buf, cls, cb, arg);
}

static int be_discard(void *be, uint64_t off, uint64_t len, kura_blk_cb cb, void *arg)
{
	return kura_vd_discard(((struct itgt *)be)->h, off, len, cb, arg);
}

static int be_flush(void *be, kura_blk_cb cb, void *arg)
{
	return kura_vd_flush(((struct itgt *)be)->h, cb, arg);
}

static int be_mapped(void *be, uint64_t blk, uint64_t max, uint64_t *run)
{
	return kura_vd_mapped(((struct itgt *)be)->h, blk, max, run);
}

static int be_pr_save(void *be, const char *state, kura_blk_cb cb, void *arg)
{
	struct itgt *t = be;
	struct kura_iscsi *p = t->portal;
	struct kura_cat_txn txn;
	char *copy = strdup(state);
	int err;

	if (!copy)
		return -ENOMEM;
	kura_cat_txn_init(&txn);
	kura_cat_txn_add(&txn, 'p', t->uid, state);
	err = kura_cat_commit(p->cat, &txn, cb, arg);
	if (err) {
		free(copy);
		return err;
	}
	free(t->pr_state);
	t->pr_state = copy; /* what the next LU of this target starts from */
	return 0;
}

static const struct kura_scsi_backend_ops vd_backend = {
	.read = be_read,
	.write = be_write,
	.write_cached = be_write_cached,
	.discard = be_discard,
	.flush = be_flush,
	.mapped = be_mapped,
	.pr_save = be_pr_save,
};

static struct kura_scsi_lu *lu_by_naa(void *ctx, const uint8_t naa[16])
{
	struct kura_iscsi *p = ctx;
	uint8_t n[16];

	for (struct itgt *t = p->tgts; t; t = t->next) {
		if (!t->lu)
			continue;
		kura_scsi_lu_naa(t->lu, n);
		if (!memcmp(n, naa, 16))
			return t->lu;
	}
	return NULL;
}

int iscsi_target_attach(struct kura_iscsi *p, struct itgt *t)
{
	struct kura_scsi_lu_opts o = {0};
	char name[2 * KURA_VD_NAME_MAX + 2];
	int err;

	if (t->lu) {
		t->nsess++;
		return 0;
	}
	t->portal = p;
	if (p->fwd) {
		/* the serving node's LU does the work */
		o.loop = p->loop;
		o.fwd = &iscsi_fwd_lu_ops;
		o.fwd_ctx = t;
		o.uid = t->uid;
		if ((err = kura_scsi_lu_create(&o, &t->lu)))
			return err;
		t->nsess = 1;
		return 0;
	}
	err = kura_vd_open(p->vd, t->vname, t->snap[0] ? t->snap : NULL, &t->h);
	if (err) {
		kura_log(WARN, "iSCSI target %s: cannot open the vdisk: %s", t->iqn,
			 kura_strerror(err));
		return err;
	}
	snprintf(name, sizeof(name), "%s%s%s", t->vname, t->snap[0] ? "@" : "", t->snap);
	o.loop = p->loop;
	o.ops = &vd_backend;
	o.be = t;
	o.size = kura_vd_size(t->h) / KURA_SCSI_PBS * KURA_SCSI_PBS;
	o.read_only = t->snap[0] != 0;
	o.write_cache = t->write_cache && !o.read_only;
	o.uid = t->uid;
	o.name = name;
	o.pr_state = t->pr_state;
	o.lookup = lu_by_naa;
	o.lookup_ctx = p;
	o.bufs = &p->bufs;
	err = kura_scsi_lu_create(&o, &t->lu);
	if (err) {
		kura_log(WARN, "iSCSI target %s: cannot start its LU: %s", t->iqn,
			 kura_strerror(err));
		kura_vd_close(t->h);
		t->h = NULL;
		t->lu = NULL;
		return err;
	}
	t->nsess = 1;
	t->lu_size = o.size;
	return 0;
}

void iscsi_target_detach(struct kura_iscsi *p, struct itgt *t)
{
	(void)p;
	if (!t->nsess || --t->nsess)
		return;
	kura_scsi_lu_destroy(t->lu);
	t->lu = NULL;
	if (t->h)
		kura_vd_close(t->h);
	t->h = NULL;
}

void iscsi_target_sync_size(struct itgt *t)
{
	if (t->h && kura_vd_size(t->h) != t->lu_size) {
		t->lu_size = kura_vd_size(t->h);
		kura_scsi_lu_resized(t->lu, t->lu_size);
	}
}

/* ---- login callbacks (ctx: the connection) ---- */

static int login_target(void *ctx, const char *tname, const char *iname,
			struct kura_iscsi_target_auth *auth)
{
	struct iconn *c = ctx;
	struct itgt *t;
	int err = iscsi_target_find(c->p, tname, iname, &t);

	if (err)
		return err;
	*auth = t->auth;
	c->tgt = t;
	return 0;
}

static void portal_address(struct iconn *c, char *buf, size_t cap)
{
	char a[INET6_ADDRSTRLEN] = "127.0.0.1";
	unsigned port = 3260;

	if (c->local.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&c->local;
		inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
		snprintf(buf, cap, "[%s]:%u,1", a, ntohs(s6->sin6_port));
		return;
	}
	if (c->local.ss_family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&c->local;
		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		port = ntohs(s4->sin_port);
	}
	snprintf(buf, cap, "%s:%u,1", a, port);
}

struct st_walk {
	struct iconn *c;
	const char *iname, *which, *own;
	char addr[INET6_ADDRSTRLEN + 16];
	char *buf;
	size_t cap, len;
};

static int st_one(void *arg, const char *name, const char *snap, uint64_t uid, uint64_t size)
{
	struct st_walk *w = arg;
	struct itgt *t = iscsi_tgt_by_uid(w->c->p, uid);
	char iqn[KURA_ISCSI_NAME_MAX + 1];
	int n;

	(void)size;
	if (snap)
		snprintf(iqn, sizeof(iqn), KURA_ISCSI_IQN_PREFIX "%s:%s", name, snap);
	else
		snprintf(iqn, sizeof(iqn), KURA_ISCSI_IQN_PREFIX "%s", name);
	if (!strcmp(w->which, "All")) {
		if (t && !iscsi_acl_allows(t, w->iname))
			return 0;
	} else if (strcasecmp(iqn, w->which[0] ? w->which : w->own)) {
		return 0;
	}
	n = snprintf(w->buf + w->len, w->cap - w->len, "TargetName=%s%cTargetAddress=%s%c", iqn, 0,
		     w->addr, 0);
	if (n < 0 || (size_t)n >= w->cap - w->len)
		return -ENOSPC;
	w->len += (size_t)n;
	return 0;
}

static int login_send_targets(void *ctx, const char *iname, const char *which, const char *own,
			      char *buf, size_t cap)
{
	struct iconn *c = ctx;
	struct st_walk w = {.c = c, .iname = iname, .which = which, .own = own ? own : "",
			    .buf = buf, .cap = cap};
	int err;

	portal_address(c, w.addr, sizeof(w.addr));
	if (!cap)
		return -ENOSPC;
	if ((err = iscsi_each(c->p, st_one, &w)))
		return err;
	return (int)w.len;
}

static void login_refusal(void *ctx, const char *iname, const char *tname, const char *why)
{
	struct iconn *c = ctx;

	kura_log(WARN, "iSCSI login refused: initiator %s from %s to %s: %s",
		 iname && iname[0] ? iname : "(none)", c->peer, tname && tname[0] ? tname : "(none)",
		 why);
}

static void login_random(void *ctx, void *buf, size_t len)
{
	uint8_t *b = buf;

	(void)ctx;
	while (len) {
		ssize_t n = getrandom(b, len, 0);
		if (n <= 0)
			continue;
		b += n;
		len -= (size_t)n;
	}
}

const struct kura_iscsi_login_ops iscsi_login_ops = {
	.target = login_target,
	.send_targets = login_send_targets,
	.log_refusal = login_refusal,
	.random = login_random,
};

/* ---- listener and timer ---- */

static void arm_accept(struct kura_iscsi *p);

static void accept_done(struct kura_op *op, int res)
{
	struct kura_iscsi *p = KURA_CONTAINER_OF(op, struct kura_iscsi, accept_op);

	p->accept_armed = false;
	if (p->stopping) {
		if (res >= 0)
			close(res);
		return;
	}
	if (res < 0)
		kura_log(WARN, "iSCSI accept on %s: %s", p->portal, strerror(-res));
	else if (p->fwd)
		iscsi_fwd_accept(p, res);
	else
		iscsi_conn_accept(p, res);
	arm_accept(p);
}

static void arm_accept(struct kura_iscsi *p)
{
	if (p->accept_armed || p->stopping || !p->listening)
		return;
	p->accept_armed = true;
	io_uring_prep_accept(kura_loop_sqe(p->loop, &p->accept_op), p->lfd, NULL, NULL,
			     SOCK_CLOEXEC);
}

static void timer_fired(struct kura_op *op, int res)
{
	struct kura_iscsi *p = KURA_CONTAINER_OF(op, struct kura_iscsi, timer.op);
	uint64_t now = kura_now_ns();

	(void)res;
	p->timer_armed = false;
	if (p->stopping)
		return;
	for (struct iconn *c = p->conns, *n; c; c = n) {
		n = c->next;
		iscsi_conn_ping_check(c, now);
	}
	p->timer_armed = true;
	kura_loop_timer(p->loop, &p->timer, 1000000000ull);
}

static bool loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
	return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

static int open_unprotected(void *arg, const char *name, const char *snap, uint64_t uid,
			    uint64_t size)
{
	struct kura_iscsi *p = arg;
	struct itgt *t = iscsi_tgt_by_uid(p, uid);

	(void)size;
	if (!t || (!t->nacl && !t->auth.user[0]))
		kura_log(WARN, "iSCSI target %s%s%s on %s has neither CHAP nor an ACL: any "
			       "initiator that reaches it may log in",
			 name, snap ? "@" : "", snap ? snap : "", p->portal);
	return 0;
}

static int listen_portal(struct kura_iscsi *p, char *errbuf, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd;

	if (kura_tcp_parse(p->portal, &ss, &sl)) {
		snprintf(errbuf, errlen, "bad iSCSI portal '%s': use ADDR:PORT, e.g. %s", p->portal,
			 KURA_ISCSI_DEFAULT_PORTAL);
		return -EINVAL;
	}
	fd = kura_tcp_listen(&ss, sl, "serve iSCSI", p->portal, errbuf, errlen);
	if (fd < 0)
		return fd;
	p->lfd = fd;
	p->listening = true;
	if (!loopback(&ss) && !p->fwd)
		kura_vd_each(p->vd, open_unprotected, p);
	return 0;
}

/* ---- settings ---- */

static int load_rec(void *arg, const struct kura_cat_rec *r)
{
	struct kura_iscsi *p = arg;
	struct itgt *t;

	if (r->kind != 'i' && r->kind != 'p')
		return 0;
	if (!(t = iscsi_tgt_by_uid(p, r->id))) {
		if (!(t = calloc(1, sizeof(*t))))
			return -ENOMEM;
		t->uid = r->id;
		t->next = p->tgts;
		p->tgts = t;
	}
	if (r->kind == 'p')
		return (t->pr_state = strdup(r->val)) ? 0 : -ENOMEM;
	if (iscsi_settings_parse(t, r->val)) {
		kura_log(WARN, "iSCSI settings of target %llu are damaged; ignored",
			 (unsigned long long)r->id);
	}
	return 0;
}

static int name_one(void *arg, const char *name, const char *snap, uint64_t uid, uint64_t size)
{
	struct itgt *t = iscsi_tgt_by_uid(arg, uid);

	(void)size;
	if (t) {
		tgt_names(t, name, snap);
		t->live = true;
	}
	return 0;
}

/* Names the loaded targets and forgets settings of vdisks that are gone. */
static void pruned(void *arg, int err)
{
	(void)arg;
	if (!err)
		kura_log(INFO, "iscsi: settings of deleted vdisks removed from the catalog");
}

static int prune(struct kura_iscsi *p)
{
	struct kura_cat_txn txn;
	int err;

	kura_vd_each(p->vd, name_one, p);
	kura_cat_txn_init(&txn);
	for (struct itgt **pp = &p->tgts; *pp;) {
		struct itgt *t = *pp;

		if (t->live) {
			pp = &t->next;
			continue;
		}
		kura_cat_txn_add(&txn, 'i', t->uid, NULL);
		kura_cat_txn_add(&txn, 'p', t->uid, NULL);
		*pp = t->next;
		iscsi_tgt_free(t);
	}
	if (!txn.n) {
		kura_cat_txn_free(&txn);
		return 0;
	}
	/* not waited for: the targets are gone from memory already, and a
	 * commit that fails (logged) is tried again at the next start */
	err = kura_cat_commit(p->cat, &txn, pruned, NULL);
	return err;
}

int kura_iscsi_start(const struct kura_iscsi_opts *o, struct kura_iscsi **out, char *errbuf,
		     size_t errlen)
{
	struct kura_iscsi *p = calloc(1, sizeof(*p));
	int err;

	if (!p)
		return -ENOMEM;
	p->loop = o->loop;
	p->vd = o->vd;
	p->cat = o->cat;
	p->lfd = -1;
	kura_bufpool_init(&p->bufs, ISCSI_BUFPOOL_BYTES);
	p->accept_op.fn = accept_done;
	p->timer.op.fn = timer_fired;
	p->nop_interval_ns = (o->nop_interval_ms ? o->nop_interval_ms : 15000) * 1000000ull;
	p->nop_timeout_ns = (o->nop_timeout_ms ? o->nop_timeout_ms : 30000) * 1000000ull;
	snprintf(p->portal, sizeof(p->portal), "%s", o->portal ? o->portal : "");
	p->fwd = o->fwd;
	login_random(NULL, &p->incarnation, sizeof(p->incarnation));
	if (!p->fwd && ((err = kura_cat_load(p->cat, load_rec, p)) || (err = prune(p)))) {
		snprintf(errbuf, errlen, "cannot load the iSCSI settings: %s", kura_strerror(err));
		kura_iscsi_stop(p);
		return err;
	}
	if (o->portal && (err = listen_portal(p, errbuf, errlen))) {
		kura_iscsi_stop(p);
		return err;
	}
	arm_accept(p);
	p->timer_armed = true;
	kura_loop_timer(p->loop, &p->timer, 1000000000ull);
	*out = p;
	return 0;
}

void kura_iscsi_drop_all(struct kura_iscsi *p)
{
	if (!p)
		return;
	for (struct iconn *c = p->conns, *n; c; c = n) {
		n = c->next;
		iscsi_conn_close(c, NULL);
		iscsi_conn_maybe_free(c);
	}
}

void kura_iscsi_stop(struct kura_iscsi *p)
{
	if (!p)
		return;
	p->stopping = true;
	if (p->accept_armed)
		kura_loop_cancel_sync(p->loop, &p->accept_op);
	if (p->timer_armed)
		kura_loop_cancel_sync(p->loop, &p->timer.op);
	for (struct iconn *c = p->conns, *n; c; c = n) {
		n = c->next;
		iscsi_conn_close(c, NULL);
		iscsi_conn_maybe_free(c);
	}
	iscsi_fwd_end_all(p);
	while (p->conns || p->accept_armed || p->timer_armed || p->fwd_pending || p->rcmds ||
	       p->rnexus)
		kura_loop_run_once(p->loop, 100000000ull);
	if (p->lfd >= 0)
		close(p->lfd);
	while (p->tgts) {
		struct itgt *t = p->tgts;
		p->tgts = t->next;
		iscsi_tgt_free(t);
	}
	kura_bufpool_drain(&p->bufs);
	free(p);
}

const char *kura_iscsi_portal(const struct kura_iscsi *p)
{
	return p && p->listening ? p->portal : "off";
}

int kura_iscsi_portal_ok(const char *portal)
{
	struct sockaddr_storage ss;
	socklen_t sl;

	return !kura_tcp_parse(portal, &ss, &sl);
}
