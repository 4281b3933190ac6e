/* Target settings (initiator ACL, CHAP credentials, write cache) as catalog
 * records, and the iscsi_* control requests that show and change them. */
#include "iscsi-target/iscsi_int.h"

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET_MIN 12u
#define SECRET_MAX 255u

/* ACL arrays end with a NULL entry. */
static void acl_free(char **acl, unsigned n)
{
	(void)n;
	for (unsigned i = 0; acl && acl[i]; i++)
		free(acl[i]);
	free(acl);
}

static int get_cred(const struct kura_json *o, const char *key, char *out, size_t cap)
{
	const char *s;

	if (!kura_json_get(o, key) || kura_json_type(kura_json_get(o, key)) == KURA_JSON_NULL) {
		out[0] = 0;
		return 0;
	}
	if (kura_json_get_str(o, key, &s) || strlen(s) >= cap)
		return -EINVAL;
	snprintf(out, cap, "%s", s);
	return 0;
}

int iscsi_settings_parse(struct itgt *t, const char *val)
{
	struct kura_json *o;
	const struct kura_json *acl, *chap;
	struct kura_iscsi_target_auth auth = {0};
	const struct kura_json *wc;
	char **list = NULL;
	unsigned n = 0;
	int err = -EINVAL, write_cache = 0;

	if (kura_json_parse(val, strlen(val), &o, NULL, 0))
		return -EINVAL;
	if (kura_json_type(o) != KURA_JSON_OBJ)
		goto out;
	acl = kura_json_get(o, "acl");
	if (acl) {
		if (kura_json_type(acl) != KURA_JSON_ARR || kura_json_len(acl) > ISCSI_MAX_ACL)
			goto out;
		list = calloc(kura_json_len(acl) + 1, sizeof(*list));
		if (!list) {
			err = -ENOMEM;
			goto out;
		}
		for (; n < kura_json_len(acl); n++) {
			const char *s = kura_json_str(kura_json_at(acl, n));
			if (!s || !(list[n] = strdup(s)))
				goto out;
		}
	}
	chap = kura_json_get(o, "chap");
	if (chap && kura_json_type(chap) == KURA_JSON_OBJ &&
	    (get_cred(chap, "user", auth.user, sizeof(auth.user)) ||
	     get_cred(chap, "secret", auth.secret, sizeof(auth.secret)) ||
	     get_cred(chap, "mutual_user", auth.muser, sizeof(auth.muser)) ||
	     get_cred(chap, "mutual_secret", auth.msecret, sizeof(auth.msecret))))
		goto out;
	/* absent in records written before the setting existed: off */
	if ((wc = kura_json_get(o, "write_cache")) && kura_json_get_bool(o, "write_cache",
									 &write_cache))
		goto out;
	acl_free(t->acl, t->nacl);
	t->write_cache = write_cache != 0;
	t->acl = list;
	t->nacl = n;
	t->auth = auth;
	list = NULL;
	err = 0;
out:
	if (list)
		acl_free(list, n + 1);
	kura_json_free(o);
	return err;
}

char *iscsi_settings_json(char **acl, unsigned nacl, const struct kura_iscsi_target_auth *a,
			  bool write_cache)
{
	struct kura_jw w;
	const char *s;
	char *copy;

	kura_jw_init(&w);
	kura_jw_obj(&w, NULL);
	kura_jw_arr(&w, "acl");
	for (unsigned i = 0; i < nacl; i++)
		kura_jw_str(&w, NULL, acl[i]);
	kura_jw_end(&w);
	if (a->user[0]) {
		kura_jw_obj(&w, "chap");
		kura_jw_str(&w, "user", a->user);
		kura_jw_str(&w, "secret", a->secret);
		kura_jw_str(&w, "mutual_user", a->muser[0] ? a->muser : NULL);
		kura_jw_str(&w, "mutual_secret", a->msecret[0] ? a->msecret : NULL);
		kura_jw_end(&w);
	} else {
		kura_jw_null(&w, "chap");
	}
	kura_jw_bool(&w, "write_cache", write_cache);
	kura_jw_end(&w);
	s = kura_jw_finish(&w, NULL);
	copy = s ? strdup(s) : NULL;
	kura_jw_free(&w);
	return copy;
}

/* iqn.YYYY-MM.reverse.domain[:anything], eui.<16 hex>, naa.<16 or 32 hex>. */
static bool iqn_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 5 || n > KURA_ISCSI_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '.' ||
		      s[i] == '-' || s[i] == ':'))
			return false;
	if (!strncmp(s, "iqn.", 4))
		return n > 12 && isdigit((unsigned char)s[4]) && isdigit((unsigned char)s[7]) &&
		       s[8] == '-' && isdigit((unsigned char)s[9]) && isdigit((unsigned char)s[10]) &&
		       s[11] == '.';
	if (!strncmp(s, "eui.", 4) || !strncmp(s, "naa.", 4)) {
		for (size_t i = 4; i < n; i++)
			if (!isxdigit((unsigned char)s[i]))
				return false;
		return !strncmp(s, "eui.", 4) ? n == 20 : (n == 20 || n == 36);
	}
	return false;
}

/* ---- answers ---- */

static unsigned session_count(struct kura_iscsi *p, const struct itgt *t)
{
	unsigned n = 0;

	for (struct iconn *c = p->conns; c; c = c->next)
		if (c->tgt == t && c->tsih && c->state != C_CLOSING)
			n++;
	return n + iscsi_fwd_sessions(p, t, NULL);
}

static void show_json(struct kura_iscsi *p, const struct itgt *t, struct kura_jw *w)
{
	kura_jw_str(w, "target", t->iqn);
	kura_jw_str(w, "vdisk", t->vname);
	kura_jw_str(w, "snapshot", t->snap[0] ? t->snap : NULL);
	kura_jw_bool(w, "read_only", t->snap[0] != 0);
	kura_jw_str(w, "portal", p->listening ? p->portal : NULL);
	kura_jw_arr(w, "acl");
	for (unsigned i = 0; i < t->nacl; i++)
		kura_jw_str(w, NULL, t->acl[i]);
	kura_jw_end(w);
	if (t->auth.user[0]) {
		kura_jw_obj(w, "chap");
		kura_jw_str(w, "user", t->auth.user);
		kura_jw_str(w, "mutual_user", t->auth.muser[0] ? t->auth.muser : NULL);
		kura_jw_end(w);
	} else {
		kura_jw_null(w, "chap");
	}
	kura_jw_str(w, "write_cache", t->snap[0] ? "read-only" : t->write_cache ? "writeback"
										  : "writethrough");
	kura_jw_arr(w, "sessions");
	for (struct iconn *c = p->conns; c; c = c->next) {
		char isid[16];

		if (c->tgt != t || !c->tsih || c->state == C_CLOSING)
			continue;
		snprintf(isid, sizeof(isid), "0x%02x%02x%02x%02x%02x%02x", c->isid[0], c->isid[1],
			 c->isid[2], c->isid[3], c->isid[4], c->isid[5]);
		kura_jw_obj(w, NULL);
		kura_jw_str(w, "initiator", c->iname);
		kura_jw_str(w, "isid", isid);
		kura_jw_str(w, "address", c->peer);
		kura_jw_u64(w, "tsih", c->tsih);
		kura_jw_u64(w, "connected", c->connected);
		kura_jw_end(w);
	}
	iscsi_fwd_sessions(p, t, w); /* through other nodes' portals */
	kura_jw_end(w);
}

struct list_walk {
	struct kura_iscsi *p;
	struct kura_jw *w;
};

static int list_one(void *arg, const char *name, const char *snap, uint64_t uid, uint64_t size)
{
	struct list_walk *lw = arg;
	struct itgt *t = iscsi_tgt_get(lw->p, name, snap);

	(void)uid;
	(void)size;
	if (!t)
		return -ENOMEM;
	kura_jw_obj(lw->w, NULL);
	kura_jw_str(lw->w, "target", t->iqn);
	kura_jw_str(lw->w, "vdisk", t->vname);
	kura_jw_str(lw->w, "snapshot", t->snap[0] ? t->snap : NULL);
	kura_jw_bool(lw->w, "read_only", t->snap[0] != 0);
	kura_jw_u64(lw->w, "sessions", session_count(lw->p, t));
	kura_jw_u64(lw->w, "acl", t->nacl);
	kura_jw_bool(lw->w, "chap", t->auth.user[0] != 0);
	kura_jw_end(lw->w);
	return 0;
}

/* ---- changes ---- */

struct ctlop {
	struct kura_iscsi *p;
	struct itgt *t;
	struct kura_jw *out;
	kura_vd_ctl_cb cb;
	void *arg;
	char **acl;
	unsigned nacl;
	struct kura_iscsi_target_auth auth;
	bool write_cache;
	char msg[640];
};

static void change_done(void *arg, int err)
{
	struct ctlop *op = arg;

	if (err) {
		snprintf(op->msg, sizeof(op->msg), "cannot save the iSCSI settings: %s",
			 kura_strerror(err));
		acl_free(op->acl, op->nacl);
		op->cb(op->arg, err, op->msg);
		free(op);
		return;
	}
	acl_free(op->t->acl, op->t->nacl);
	op->t->acl = op->acl;
	op->t->nacl = op->nacl;
	op->t->auth = op->auth;
	if (op->t->write_cache != op->write_cache) {
		op->t->write_cache = op->write_cache;
		if (op->t->lu)
			kura_scsi_lu_set_write_cache(op->t->lu, op->write_cache);
	}
	show_json(op->p, op->t, op->out);
	op->cb(op->arg, 0, NULL);
	free(op);
}

static void commit_change(struct ctlop *op)
{
	struct kura_cat_txn txn;
	char *val = iscsi_settings_json(op->acl, op->nacl, &op->auth, op->write_cache);
	int err;

	if (!val) {
		change_done(op, -ENOMEM);
		return;
	}
	kura_cat_txn_init(&txn);
	kura_cat_txn_add(&txn, 'i', op->t->uid, val);
	free(val);
	err = kura_cat_commit(op->p->cat, &txn, change_done, op);
	if (err)
		change_done(op, err);
}

static char **acl_copy(const struct itgt *t, unsigned extra)
{
	char **a = calloc(t->nacl + extra + 1, sizeof(*a));

	if (!a)
		return NULL;
	for (unsigned i = 0; i < t->nacl; i++)
		if (!(a[i] = strdup(t->acl[i]))) {
			acl_free(a, i);
			return NULL;
		}
	return a;
}

static int op_acl(struct ctlop *op, const struct kura_json *req, char *msg, size_t ml)
{
	const char *action, *iqn;
	struct itgt *t = op->t;
	unsigned i;

	if (kura_json_get_str(req, "action", &action) ||
	    (strcmp(action, "add") && strcmp(action, "remove"))) {
		snprintf(msg, ml, "iscsi_acl needs \"action\": \"add\" or \"remove\"");
		return -EINVAL;
	}
	if (kura_json_get_str(req, "initiator", &iqn) || !iqn_ok(iqn)) {
		snprintf(msg, ml, "bad initiator name: use iqn.YYYY-MM.domain[:name], eui.<16 hex> "
				  "or naa.<hex>, in lower case");
		return -EINVAL;
	}
	for (i = 0; i < t->nacl && strcmp(t->acl[i], iqn); i++)
		;
	if (!strcmp(action, "add")) {
		if (i < t->nacl) {
			snprintf(msg, ml, "%s is already on the ACL of %s", iqn, t->iqn);
			return -EEXIST;
		}
		if (t->nacl >= ISCSI_MAX_ACL) {
			snprintf(msg, ml, "the ACL of %s is full (%u initiators)", t->iqn,
				 ISCSI_MAX_ACL);
			return -ENOSPC;
		}
		if (!(op->acl = acl_copy(t, 1)) || !(op->acl[t->nacl] = strdup(iqn)))
			return -ENOMEM;
		op->nacl = t->nacl + 1;
	} else {
		if (i == t->nacl) {
			snprintf(msg, ml, "%s is not on the ACL of %s", iqn, t->iqn);
			return -ENOENT;
		}
		if (!(op->acl = acl_copy(t, 0)))
			return -ENOMEM;
		free(op->acl[i]);
		memmove(op->acl + i, op->acl + i + 1, (t->nacl - i - 1) * sizeof(char *));
		op->nacl = t->nacl - 1;
		op->acl[op->nacl] = NULL;
	}
	op->auth = t->auth;
	return 0;
}

static int cred(const struct kura_json *req, const char *key, char *out, size_t cap,
		bool secret, char *msg, size_t ml)
{
	const char *s;
	size_t n;

	if (kura_json_get_str(req, key, &s)) {
		snprintf(msg, ml, "iscsi_chap needs \"%s\"", key);
		return -EINVAL;
	}
	n = strlen(s);
	if (secret ? (n < SECRET_MIN || n > SECRET_MAX) : (n < 1 || n > SECRET_MAX)) {
		snprintf(msg, ml, secret ? "a CHAP secret must be %u to %u characters long"
				       : "a CHAP user name must be 1 to %u characters long",
			 secret ? SECRET_MIN : SECRET_MAX, SECRET_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
			snprintf(msg, ml, "CHAP names and secrets may not hold control characters");
			return -EINVAL;
		}
	snprintf(out, cap, "%s", s);
	return 0;
}

static int op_chap(struct ctlop *op, const struct kura_json *req, char *msg, size_t ml)
{
	int clear = 0, err;

	if (!(op->acl = acl_copy(op->t, 0)))
		return -ENOMEM;
	op->nacl = op->t->nacl;
	memset(&op->auth, 0, sizeof(op->auth));
	if (!kura_json_get_bool(req, "clear", &clear) && clear)
		return 0;
	if ((err = cred(req, "user", op->auth.user, sizeof(op->auth.user), false, msg, ml)) ||
	    (err = cred(req, "secret", op->auth.secret, sizeof(op->auth.secret), true, msg, ml)))
		return err;
	if (kura_json_get(req, "mutual_user") || kura_json_get(req, "mutual_secret")) {
		if ((err = cred(req, "mutual_user", op->auth.muser, sizeof(op->auth.muser), false,
				msg, ml)) ||
		    (err = cred(req, "mutual_secret", op->auth.msecret, sizeof(op->auth.msecret),
				true, msg, ml)))
			return err;
		if (!strcmp(op->auth.secret, op->auth.msecret)) {
			snprintf(msg, ml, "the mutual CHAP secret must differ from the initiator's");
			return -EINVAL;
		}
	}
	return 0;
}

static int op_cache(struct ctlop *op, const struct kura_json *req, char *msg, size_t ml)
{
	const char *mode;

	if (kura_json_get_str(req, "mode", &mode) ||
	    (strcmp(mode, "writeback") && strcmp(mode, "writethrough"))) {
		snprintf(msg, ml, "iscsi_cache needs \"mode\": \"writeback\" or \"writethrough\"");
		return -EINVAL;
	}
	if (op->t->snap[0]) {
		snprintf(msg, ml, "%s is a read-only snapshot target: it has no write cache",
			 op->t->iqn);
		return -EROFS;
	}
	op->write_cache = !strcmp(mode, "writeback");
	return 0;
}

/* "vm1" or "vm1@snap" → its target. */
static int need_target(struct kura_iscsi *p, const struct kura_json *req, struct itgt **out,
		       char *msg, size_t ml)
{
	char name[2 * KURA_VD_NAME_MAX + 2], *snap;
	const char *s;

	if (kura_json_get_str(req, "name", &s) || strlen(s) >= sizeof(name) || !s[0]) {
		snprintf(msg, ml, "the request needs \"name\": a vdisk or vdisk@snapshot");
		return -EINVAL;
	}
	snprintf(name, sizeof(name), "%s", s);
	if ((snap = strchr(name, '@')))
		*snap++ = 0;
	if (kura_vd_name_check(name) || (snap && kura_vd_name_check(snap))) {
		snprintf(msg, ml, "bad name '%s'", s);
		return -EINVAL;
	}
	if (!(*out = iscsi_tgt_get(p, name, snap))) {
		snprintf(msg, ml, snap ? "no snapshot '%s' of vdisk '%s'" : "no vdisk '%s'%s",
			 snap ? snap : name, snap ? name : "");
		return -ENOENT;
	}
	return 0;
}

void kura_iscsi_ctl(struct kura_iscsi *p, const struct kura_json *req, struct kura_jw *out,
		    kura_vd_ctl_cb cb, void *arg)
{
	char msg[640] = "";
	const char *opname = "";
	struct ctlop *op;
	struct itgt *t;
	int err;

	kura_json_get_str(req, "op", &opname);
	if (!strcmp(opname, "iscsi_list")) {
		struct list_walk lw = {p, out};

		kura_jw_str(out, "portal", p->listening ? p->portal : NULL);
		kura_jw_arr(out, "targets");
		err = kura_vd_each(p->vd, list_one, &lw);
		kura_jw_end(out);
		cb(arg, err, err ? "out of memory" : NULL);
		return;
	}
	if ((err = need_target(p, req, &t, msg, sizeof(msg)))) {
		cb(arg, err, msg);
		return;
	}
	if (!strcmp(opname, "iscsi_show")) {
		show_json(p, t, out);
		cb(arg, 0, NULL);
		return;
	}
	if (!(op = calloc(1, sizeof(*op)))) {
		cb(arg, -ENOMEM, "out of memory");
		return;
	}
	op->p = p;
	op->t = t;
	op->out = out;
	op->cb = cb;
	op->arg = arg;
	op->write_cache = t->write_cache;
	if (!strcmp(opname, "iscsi_acl")) {
		err = op_acl(op, req, msg, sizeof(msg));
	} else if (!strcmp(opname, "iscsi_chap")) {
		err = op_chap(op, req, msg, sizeof(msg));
	} else if (!strcmp(opname, "iscsi_cache")) {
		err = (op->acl = acl_copy(t, 0)) ? op_cache(op, req, msg, sizeof(msg)) : -ENOMEM;
		op->nacl = t->nacl;
		op->auth = t->auth;
	} else {
		snprintf(msg, sizeof(msg), "unknown request '%s'", opname);
		err = -EINVAL;
	}
	if (err) {
		acl_free(op->acl, op->nacl + 1);
		free(op);
		cb(arg, err, msg[0] ? msg : "out of memory");
		return;
	}
	if (!strcmp(opname, "iscsi_chap"))
		kura_log(INFO, "iSCSI target %s: CHAP %s", t->iqn,
			 op->auth.user[0] ? (op->auth.muser[0] ? "set (mutual)" : "set") : "cleared");
	else if (!strcmp(opname, "iscsi_cache"))
		kura_log(INFO, "iSCSI target %s: write cache %s", t->iqn,
			 op->write_cache ? "on (writeback): writes without FUA complete before "
					   "they are durable; SYNCHRONIZE CACHE makes them so"
					 : "off (writethrough): every write is durable when it completes");
	else
		kura_log(INFO, "iSCSI target %s: ACL now has %u initiators", t->iqn, op->nacl);
	commit_change(op);
}
