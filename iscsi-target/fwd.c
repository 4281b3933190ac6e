/* Forwarding (target.h, "Forwarding"): a forwarding portal's part (the
 * target list, and each session's commands, task management, start and
 * end sent to the node serving the vdisks) and the serving node's part
 * (running them on its LUs, for a nexus of its own standing for each
 * forwarded session). Messages: fwd.h. Everything on the portal's loop
 * thread. */
#include "iscsi-target/fwd.h"
#include "iscsi-target/iscsi_int.h"

#include "common/err.h"
#include "common/json.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ================= the forwarding portal's part ================= */

struct fwd_out {
	struct kura_iscsi *p;
	struct kura_scsi_cmd *cmd;   /* EXEC */
	uint64_t nexus;              /* the session it is for (0: none) */
	uint64_t id;
	int fd;                      /* DIR: the connection waiting for the list */
	uint8_t *msg;
	size_t len;
	uint8_t *ans;
	size_t cap;
	void (*then)(struct fwd_out *o, int err, size_t got);
	struct kura_op op;           /* a send that failed at once ends on a later turn */
	struct fwd_out *next, *prev; /* p->outs: EXECs awaiting answers */
};

static void out_free(struct fwd_out *o)
{
	free(o->msg);
	free(o->ans);
	free(o);
}

/* A message: tmpl's fields, data (dlen bytes) before them; room for an
 * answer of cap bytes. */
static struct fwd_out *out_new(struct kura_iscsi *p, const struct kura_fwd_msg *tmpl,
			       const void *data, uint32_t dlen, size_t cap)
{
	struct fwd_out *o = calloc(1, sizeof(*o));
	struct kura_fwd_msg m = *tmpl;

	if (!o)
		return NULL;
	m.magic = KURA_FWD_MAGIC;
	m.dlen = dlen;
	m.incarnation = p->incarnation;
	o->p = p;
	o->nexus = m.nexus;
	o->id = m.id;
	o->fd = -1;
	o->len = dlen + sizeof(m);
	o->msg = malloc(o->len);
	o->cap = cap;
	if (cap)
		o->ans = malloc(cap);
	if (!o->msg || (cap && !o->ans)) {
		out_free(o);
		return NULL;
	}
	if (dlen)
		memcpy(o->msg, data, dlen);
	memcpy(o->msg + dlen, &m, sizeof(m)); /* the trailer may be unaligned */
	return o;
}

static void out_answered(void *arg, int err, size_t got)
{
	struct fwd_out *o = arg;

	o->p->fwd_pending--;
	o->then(o, err, got);
}

static void out_failed(struct kura_op *op, int res)
{
	struct fwd_out *o = KURA_CONTAINER_OF(op, struct fwd_out, op);

	o->p->fwd_pending--;
	o->then(o, res, 0);
}

/* o->then runs later, whatever happens. */
static void out_send(struct fwd_out *o)
{
	struct kura_iscsi *p = o->p;
	int err;

	p->fwd_pending++;
	err = p->fwd->send(p->fwd->arg, o->msg, o->len, o->ans, o->cap, out_answered, o);
	if (err) {
		o->op.fn = out_failed;
		kura_loop_defer(p->loop, &o->op, err);
	}
}

/* The session with forwarding id `nexus` cannot go on: its connection
 * closes (the initiator logs in again). */
static void session_lost(struct kura_iscsi *p, uint64_t nexus, const char *why, int err)
{
	for (struct iconn *c = p->conns, *n; c; c = n) {
		n = c->next;
		if (c->state == C_CLOSING || !c->tsih || c->nexus.id != nexus)
			continue;
		kura_log(WARN, "iSCSI session %u (%s) closes: %s: %s", c->tsih, c->iname, why,
			 kura_strerror(err));
		iscsi_conn_close(c, NULL);
		iscsi_conn_maybe_free(c);
	}
}

/* ---- the target list ---- */

static int dir_apply(struct kura_iscsi *p, const char *text, size_t len)
{
	struct kura_json *j;
	const struct kura_json *arr;
	int err = -EPROTO;

	if (kura_json_parse(text, len, &j, NULL, 0))
		return -EPROTO;
	arr = kura_json_get(j, "targets");
	if (!arr || kura_json_type(arr) != KURA_JSON_ARR)
		goto out;
	for (struct itgt *t = p->tgts; t; t = t->next)
		t->live = false;
	for (size_t i = 0; i < kura_json_len(arr); i++) {
		const struct kura_json *e = kura_json_at(arr, i);
		const char *name = NULL, *snap = NULL, *set = NULL;
		uint64_t uid = 0;
		struct itgt *t;

		if (kura_json_get_str(e, "name", &name) || kura_json_get_str(e, "snap", &snap) ||
		    kura_json_get_str(e, "settings", &set) ||
		    kura_json_u64(kura_json_get(e, "uid"), &uid) || kura_vd_name_check(name) ||
		    (snap[0] && kura_vd_name_check(snap)))
			goto out;
		if (!(t = iscsi_tgt_put(p, uid, name, snap[0] ? snap : NULL))) {
			err = -ENOMEM;
			goto out;
		}
		if (iscsi_settings_parse(t, set))
			goto out;
		t->live = true;
	}
	iscsi_tgt_prune(p);
	err = 0;
out:
	kura_json_free(j);
	return err;
}

static void dir_then(struct fwd_out *o, int err, size_t got)
{
	struct kura_iscsi *p = o->p;

	if (!err)
		err = dir_apply(p, (const char *)o->ans, got);
	if (err && p->dir_ok)
		kura_log(WARN, "iSCSI portal %s: cannot get the targets from the node serving "
			 "the vdisks: %s; logins are answered \"target not available\" until it "
			 "answers", p->portal, kura_strerror(err));
	p->dir_ok = !err;
	if (p->stopping)
		close(o->fd);
	else
		iscsi_conn_accept(p, o->fd);
	out_free(o);
}

void iscsi_fwd_accept(struct kura_iscsi *p, int fd)
{
	struct kura_fwd_msg m = { .kind = KURA_FWD_DIR };
	struct fwd_out *o = out_new(p, &m, NULL, 0, KURA_FWD_DIR_MAX);

	if (!o) {
		kura_log(WARN, "iSCSI portal %s: out of memory: connection refused", p->portal);
		close(fd);
		return;
	}
	o->fd = fd;
	o->then = dir_then;
	out_send(o);
}

/* ---- commands ---- */

static void exec_then(struct fwd_out *o, int err, size_t got)
{
	struct kura_iscsi *p = o->p;
	struct kura_scsi_cmd *cmd = o->cmd;
	struct kura_fwd_ans a;

	if (o->prev)
		o->prev->next = o->next;
	else
		p->outs = o->next;
	if (o->next)
		o->next->prev = o->prev;
	if (!err) {
		if (got < sizeof(a))
			err = -EPROTO;
		else
			memcpy(&a, o->ans + got - sizeof(a), sizeof(a));
		if (!err && (a.magic != KURA_FWD_ANS_MAGIC || a.din_len != got - sizeof(a) ||
			     a.din_len > cmd->edtl || a.sense_len > KURA_SCSI_SENSE_MAX))
			err = -EPROTO;
	}
	if (err) {
		/* the command's outcome is unknown: no answer goes to the
		 * initiator, whose session closes; it sends the command again
		 * once logged in again */
		session_lost(p, o->nexus, "a command could not be forwarded", err);
		cmd->status = KURA_SCSI_BUSY;
	} else {
		cmd->status = a.status;
		cmd->sense_len = a.sense_len;
		memcpy(cmd->sense, a.sense, a.sense_len);
		cmd->overflow = a.flags & KURA_FWD_ANS_OVERFLOW;
		cmd->underflow = a.flags & KURA_FWD_ANS_UNDERFLOW;
		cmd->residual = a.residual;
		cmd->din_len = a.din_len;
		if (a.din_len) {
			cmd->din = o->ans; /* the Data-In leads the answer */
			o->ans = NULL;
		}
	}
	out_free(o);
	cmd->done(cmd);
}

/* A command that could not be sent for want of memory: its session closes
 * and it ends on a later turn (exec must not complete inside the call),
 * through this, kept in the command's LU scratch space. */
struct nomem {
	struct kura_op op;
	struct kura_iscsi *p;
	struct kura_scsi_cmd *cmd;
};
_Static_assert(sizeof(struct nomem) <= sizeof(((struct kura_scsi_cmd *)0)->lu_priv),
	       "the LU scratch space holds a struct nomem");

static void nomem_fired(struct kura_op *op, int res)
{
	struct nomem *n = KURA_CONTAINER_OF(op, struct nomem, op);
	struct kura_scsi_cmd *cmd = n->cmd;

	n->p->fwd_pending--;
	session_lost(n->p, cmd->nexus->id, "a command could not be forwarded", res);
	cmd->status = KURA_SCSI_BUSY;
	cmd->done(cmd);
}

static void fwd_exec(void *ctx, struct kura_scsi_cmd *cmd)
{
	struct itgt *t = ctx;
	struct kura_iscsi *p = t->portal;
	struct kura_fwd_msg m = { .kind = KURA_FWD_EXEC, .dir = (uint8_t)cmd->dir,
				  .edtl = cmd->edtl, .nexus = cmd->nexus->id,
				  .id = ++p->next_fwd_id, .lun = cmd->lun };
	struct fwd_out *o;

	memcpy(m.cdb, cmd->cdb, sizeof(m.cdb));
	o = out_new(p, &m, cmd->dout, cmd->dout_len, (size_t)cmd->edtl + sizeof(struct kura_fwd_ans));
	if (!o) {
		struct nomem *n = (struct nomem *)(void *)cmd->lu_priv;

		n->p = p;
		n->cmd = cmd;
		n->op.fn = nomem_fired;
		p->fwd_pending++;
		kura_loop_defer(p->loop, &n->op, -ENOMEM);
		return;
	}
	o->cmd = cmd;
	o->then = exec_then;
	o->next = p->outs;
	if (p->outs)
		p->outs->prev = o;
	p->outs = o;
	out_send(o);
}

/* A session event or task management message: on failure the session
 * closes. */
static void event_then(struct fwd_out *o, int err, size_t got)
{
	(void)got;
	if (err)
		session_lost(o->p, o->nexus, "the node serving the vdisks did not take it", err);
	out_free(o);
}

static void event_send(struct kura_iscsi *p, enum kura_fwd_kind kind, uint64_t nexus, uint64_t uid,
		       uint64_t id, const void *data, uint32_t dlen)
{
	struct kura_fwd_msg m = { .kind = (uint16_t)kind, .nexus = nexus, .uid = uid, .id = id };
	struct fwd_out *o = out_new(p, &m, data, dlen, 0);

	if (!o) {
		session_lost(p, nexus, "out of memory", -ENOMEM);
		return;
	}
	o->then = event_then;
	if (kind == KURA_FWD_GONE)
		o->nexus = 0; /* nothing left to close */
	out_send(o);
}

static void fwd_abort(void *ctx, struct kura_scsi_cmd *cmd)
{
	struct itgt *t = ctx;

	for (struct fwd_out *o = t->portal->outs; o; o = o->next)
		if (o->cmd == cmd) {
			event_send(t->portal, KURA_FWD_ABORT, cmd->nexus->id, 0, o->id, NULL, 0);
			return;
		}
}

static void fwd_reset(void *ctx, const struct kura_scsi_nexus *by)
{
	struct itgt *t = ctx;

	event_send(t->portal, KURA_FWD_RESET, by->id, 0, 0, NULL, 0);
}

static void fwd_nexus(void *ctx, const struct kura_scsi_nexus *n, bool gone)
{
	struct itgt *t = ctx;
	char names[sizeof(n->iport) + sizeof(n->iname)];
	size_t a = strlen(n->iport) + 1, b = strlen(n->iname) + 1;

	if (gone) {
		event_send(t->portal, KURA_FWD_GONE, n->id, 0, 0, NULL, 0);
		return;
	}
	memcpy(names, n->iport, a);
	memcpy(names + a, n->iname, b);
	event_send(t->portal, KURA_FWD_NEXUS, n->id, t->uid, 0, names, (uint32_t)(a + b));
}

const struct kura_scsi_fwd_ops iscsi_fwd_lu_ops = {
	.exec = fwd_exec,
	.abort = fwd_abort,
	.reset = fwd_reset,
	.nexus = fwd_nexus,
};

/* ================= the serving node's part ================= */

struct fwd_cmd;

struct fwd_nexus {
	unsigned conn;
	char via[64];                /* the forwarding node's name */
	uint64_t connected;          /* unix seconds */
	uint64_t incarnation, rid;   /* the forwarding portal's names for it */
	struct kura_scsi_nexus nexus;
	struct itgt *t;
	struct fwd_cmd *cmds;
	unsigned inflight;
	bool gone;
	struct fwd_nexus *next;
};

typedef void (*fwd_done_fn)(void *cbarg, int err, uint8_t *data, size_t len);

struct fwd_cmd {
	struct kura_scsi_cmd cmd;
	struct kura_iscsi *p;
	struct fwd_nexus *rn;
	uint64_t id;
	uint8_t *data;
	fwd_done_fn done;
	void *cbarg;
	struct fwd_cmd *next, *prev;
};

static struct fwd_nexus *rn_find(struct kura_iscsi *p, unsigned conn, const struct kura_fwd_msg *m)
{
	for (struct fwd_nexus *rn = p->rnexus; rn; rn = rn->next)
		if (rn->conn == conn && rn->incarnation == m->incarnation && rn->rid == m->nexus &&
		    !rn->gone)
			return rn;
	return NULL;
}

/* A forwarded session that ended (or whose link did) goes once its
 * commands are done, as a connection's would. */
static void rn_maybe_end(struct kura_iscsi *p, struct fwd_nexus *rn)
{
	if (!rn->gone || rn->inflight)
		return;
	for (struct fwd_nexus **pp = &p->rnexus; *pp; pp = &(*pp)->next)
		if (*pp == rn) {
			*pp = rn->next;
			break;
		}
	kura_scsi_nexus_gone(rn->t->lu, &rn->nexus);
	iscsi_target_detach(p, rn->t);
	free(rn);
}

static void rn_end(struct kura_iscsi *p, struct fwd_nexus *rn)
{
	rn->gone = true;
	for (struct fwd_cmd *fc = rn->cmds; fc; fc = fc->next)
		kura_scsi_abort(&fc->cmd);
	rn_maybe_end(p, rn);
}

struct dir_walk {
	struct kura_iscsi *p;
	struct kura_jw *w;
};

static int dir_one(void *arg, const char *name, const char *snap, uint64_t uid, uint64_t size)
{
	struct dir_walk *d = arg;
	struct itgt *t = iscsi_tgt_by_uid(d->p, uid);
	static const struct kura_iscsi_target_auth none;
	char *set = t ? iscsi_settings_json(t->acl, t->nacl, &t->auth, t->write_cache)
		      : iscsi_settings_json(NULL, 0, &none, false);

	(void)size;
	if (!set)
		return -ENOMEM;
	kura_jw_obj(d->w, NULL);
	kura_jw_str(d->w, "name", name);
	kura_jw_str(d->w, "snap", snap ? snap : "");
	kura_jw_u64(d->w, "uid", uid);
	kura_jw_str(d->w, "settings", set);
	kura_jw_end(d->w);
	free(set);
	return 0;
}

static int serve_dir(struct kura_iscsi *p, fwd_done_fn done, void *cbarg)
{
	struct dir_walk d = { .p = p };
	struct kura_jw w;
	const char *s;
	size_t len = 0;
	uint8_t *ans;
	int err;

	kura_jw_init(&w);
	d.w = &w;
	kura_jw_obj(&w, NULL);
	kura_jw_arr(&w, "targets");
	err = iscsi_each(p, dir_one, &d);
	kura_jw_end(&w);
	kura_jw_end(&w);
	s = kura_jw_finish(&w, &len);
	if (!err && !s)
		err = -ENOMEM;
	if (!err && len > KURA_FWD_DIR_MAX)
		err = -E2BIG;
	ans = err ? NULL : malloc(len ? len : 1);
	if (!err && !ans)
		err = -ENOMEM;
	if (!err)
		memcpy(ans, s, len);
	kura_jw_free(&w);
	if (err)
		return err;
	done(cbarg, 0, ans, len);
	return 0;
}

struct uid_find {
	uint64_t uid;
	char name[KURA_VD_NAME_MAX + 1], snap[KURA_VD_NAME_MAX + 1];
	bool found;
};

static int uid_one(void *arg, const char *name, const char *snap, uint64_t uid, uint64_t size)
{
	struct uid_find *f = arg;

	(void)size;
	if (uid != f->uid)
		return 0;
	snprintf(f->name, sizeof(f->name), "%s", name);
	snprintf(f->snap, sizeof(f->snap), "%s", snap ? snap : "");
	f->found = true;
	return 1;
}

static int serve_nexus(struct kura_iscsi *p, unsigned conn, const char *peer,
		       const struct kura_fwd_msg *m, const char *iport, const char *iname)
{
	struct uid_find f = { .uid = m->uid };
	struct fwd_nexus *rn;
	struct itgt *t;
	int err;

	if (rn_find(p, conn, m))
		return -EEXIST;
	iscsi_each(p, uid_one, &f);
	if (!f.found || !(t = iscsi_tgt_get(p, f.name, f.snap[0] ? f.snap : NULL)))
		return -ENOENT;
	if (!iscsi_acl_allows(t, iname))
		return -EACCES;
	if (!(rn = calloc(1, sizeof(*rn))))
		return -ENOMEM;
	if ((err = iscsi_target_attach(p, t))) {
		free(rn);
		return err;
	}
	rn->conn = conn;
	snprintf(rn->via, sizeof(rn->via), "%s", peer);
	rn->connected = (uint64_t)time(NULL);
	rn->incarnation = m->incarnation;
	rn->rid = m->nexus;
	rn->t = t;
	rn->nexus.id = ++p->next_nexus;
	rn->nexus.rtpi = 1;
	snprintf(rn->nexus.iport, sizeof(rn->nexus.iport), "%s", iport);
	snprintf(rn->nexus.iname, sizeof(rn->nexus.iname), "%s", iname);
	rn->next = p->rnexus;
	p->rnexus = rn;
	kura_scsi_nexus_new(t->lu, &rn->nexus);
	kura_log(INFO, "iSCSI session of %s through node %s (link %u): %s", rn->nexus.iname,
		 rn->via, conn, t->iqn);
	return 0;
}

static void exec_done(struct kura_scsi_cmd *cmd)
{
	struct fwd_cmd *fc = cmd->priv;
	struct fwd_nexus *rn = fc->rn;
	struct kura_iscsi *p = fc->p;
	struct kura_fwd_ans a = { .magic = KURA_FWD_ANS_MAGIC };
	size_t len = cmd->din_len + sizeof(a);
	uint8_t *ans = malloc(len);

	a.status = cmd->status;
	a.sense_len = (uint8_t)KURA_MIN(cmd->sense_len, KURA_SCSI_SENSE_MAX);
	memcpy(a.sense, cmd->sense, a.sense_len);
	a.flags = (uint8_t)((cmd->overflow ? KURA_FWD_ANS_OVERFLOW : 0) |
			    (cmd->underflow ? KURA_FWD_ANS_UNDERFLOW : 0));
	a.residual = cmd->residual;
	a.din_len = cmd->din_len;
	if (ans) {
		if (cmd->din_len)
			memcpy(ans, cmd->din, cmd->din_len);
		memcpy(ans + cmd->din_len, &a, sizeof(a));
	}
	kura_scsi_cmd_release(cmd);
	if (fc->prev)
		fc->prev->next = fc->next;
	else
		rn->cmds = fc->next;
	if (fc->next)
		fc->next->prev = fc->prev;
	rn->inflight--;
	p->rcmds--;
	if (rn->gone && ans) {
		/* the session ended here (the portal stops, or its link went):
		 * an aborted command's TASK ABORTED must not reach the
		 * initiator as its outcome; an error closes the session there,
		 * and the initiator sends the command again */
		free(ans);
		ans = NULL;
	}
	fc->done(fc->cbarg, ans ? 0 : rn->gone ? -ESHUTDOWN : -ENOMEM, ans, ans ? len : 0);
	free(fc->data);
	free(fc);
	rn_maybe_end(p, rn);
}

static int serve_exec(struct kura_iscsi *p, unsigned conn, const struct kura_fwd_msg *m,
		      uint8_t *data, fwd_done_fn done, void *cbarg)
{
	struct fwd_nexus *rn = rn_find(p, conn, m);
	struct fwd_cmd *fc;

	if (!rn || !rn->t->lu)
		return -ENOENT; /* a session this node does not know (any more) */
	if (!(fc = calloc(1, sizeof(*fc))))
		return -ENOMEM;
	fc->p = p;
	fc->rn = rn;
	fc->id = m->id;
	fc->data = data;
	fc->done = done;
	fc->cbarg = cbarg;
	fc->next = rn->cmds;
	if (rn->cmds)
		rn->cmds->prev = fc;
	rn->cmds = fc;
	rn->inflight++;
	p->rcmds++;
	memcpy(fc->cmd.cdb, m->cdb, sizeof(fc->cmd.cdb));
	fc->cmd.lu = rn->t->lu;
	fc->cmd.nexus = &rn->nexus;
	fc->cmd.lun = m->lun;
	fc->cmd.edtl = m->edtl;
	fc->cmd.dir = m->dir;
	fc->cmd.dout = m->dlen ? data : NULL;
	fc->cmd.dout_len = m->dlen;
	fc->cmd.done = exec_done;
	fc->cmd.priv = fc;
	iscsi_target_sync_size(rn->t);
	kura_scsi_exec(&fc->cmd);
	return 0;
}

int kura_iscsi_fwd_serve(struct kura_iscsi *p, unsigned conn, const char *peer, uint8_t *data,
			 size_t len,
			 void (*done)(void *cbarg, int err, uint8_t *data, size_t len),
			 void *cbarg)
{
	const char *iport, *iname;
	struct fwd_nexus *rn;
	struct kura_fwd_msg m;
	int err;

	if ((err = kura_fwd_parse(data, len, &m, &iport, &iname))) {
		free(data);
		return err;
	}
	if (p->fwd || p->stopping) {
		free(data);
		return -EREMOTE; /* this node forwards too: it does not serve them */
	}
	switch (m.kind) {
	case KURA_FWD_DIR:
		err = serve_dir(p, done, cbarg);
		break;
	case KURA_FWD_NEXUS:
		if (!(err = serve_nexus(p, conn, peer, &m, iport, iname)))
			done(cbarg, 0, NULL, 0);
		break;
	case KURA_FWD_EXEC:
		if (!(err = serve_exec(p, conn, &m, data, done, cbarg)))
			return 0; /* the data is the command's now */
		break;
	case KURA_FWD_GONE:
	case KURA_FWD_ABORT:
	case KURA_FWD_RESET:
		if (!(rn = rn_find(p, conn, &m))) {
			err = m.kind == KURA_FWD_ABORT ? 0 : -ENOENT;
		} else if (m.kind == KURA_FWD_GONE) {
			rn_end(p, rn);
		} else if (m.kind == KURA_FWD_ABORT) {
			for (struct fwd_cmd *fc = rn->cmds; fc; fc = fc->next)
				if (fc->id == m.id)
					kura_scsi_abort(&fc->cmd);
		} else {
			kura_log(WARN, "iSCSI: logical unit reset of %s by %s (forwarded)",
				 rn->t->iqn, rn->nexus.iname);
			kura_scsi_lu_reset(rn->t->lu, &rn->nexus);
		}
		if (!err)
			done(cbarg, 0, NULL, 0);
		break;
	default:
		err = -EPROTO;
	}
	free(data);
	return err;
}

void kura_iscsi_fwd_gone(struct kura_iscsi *p, unsigned conn)
{
	for (struct fwd_nexus *rn = p->rnexus, *n; rn; rn = n) {
		n = rn->next;
		if (rn->conn == conn && !rn->gone)
			rn_end(p, rn);
	}
}

void iscsi_fwd_end_all(struct kura_iscsi *p)
{
	for (struct fwd_nexus *rn = p->rnexus, *n; rn; rn = n) {
		n = rn->next;
		if (!rn->gone)
			rn_end(p, rn);
	}
}

unsigned iscsi_fwd_sessions(struct kura_iscsi *p, const struct itgt *t, struct kura_jw *w)
{
	unsigned n = 0;

	for (struct fwd_nexus *rn = p->rnexus; rn; rn = rn->next) {
		const char *isid;

		if (rn->t != t || rn->gone)
			continue;
		n++;
		if (!w)
			continue;
		isid = strstr(rn->nexus.iport, ",i,");
		kura_jw_obj(w, NULL);
		kura_jw_str(w, "initiator", rn->nexus.iname);
		kura_jw_str(w, "isid", isid ? isid + 3 : "");
		kura_jw_str(w, "via", rn->via);
		kura_jw_u64(w, "connected", rn->connected);
		kura_jw_end(w);
	}
	return n;
}
