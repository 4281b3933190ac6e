/* The SCSI LU core: dispatch, completion, unit attentions, range locks,
 * sense data, Data-In/Data-Out residuals and medium I/O in bytes over a
 * 4 KiB backend (see scsi.h and scsi_int.h). */
#include "iscsi-target/scsi_int.h"

#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(struct scsi_cstate) <= sizeof(((struct kura_scsi_cmd *)0)->lu_priv),
	       "command scratch must fit in lu_priv");

#define PBS KURA_SCSI_PBS
#define UA_MAX 8

/* The company id in the NAA designator: an IEEE OUI-shaped value fixed for
 * kura (24 bits), followed in the designator by the LU's uid. */
#define KURA_NAA_COMPANY 0x6b7572u /* "kur" */

struct scsi_ua {
	uint64_t nexus;
	char iport[sizeof(((struct kura_scsi_nexus *)0)->iport)];
	uint16_t q[UA_MAX]; /* asc << 8 | ascq, oldest first */
	unsigned n;
	struct scsi_ua *next;
};

struct scsi_lock {
	uint64_t off, end;
	bool excl, granted, cancelled;
	void (*granted_fn)(void *arg);
	void *arg;
	const void *owner; /* the command it waits for: aborting that ends the wait */
	struct kura_op op;
	struct scsi_lock *next;
};

/* ---- life cycle ---- */

int kura_scsi_lu_create(const struct kura_scsi_lu_opts *o, struct kura_scsi_lu **out)
{
	struct kura_scsi_lu *lu;
	int err;

	if (!o->loop || (!o->ops && !o->fwd) || o->size % PBS)
		return -EINVAL;
	if (!(lu = calloc(1, sizeof(*lu))))
		return -ENOMEM;
	lu->o = *o;
	snprintf(lu->name, sizeof(lu->name), "%s", o->name ? o->name : "");
	lu->o.name = lu->name;
	lu->o.pr_state = NULL; /* the caller's string: not ours to keep */
	lu->nblocks = o->size / KURA_SCSI_LBS;
	lu->wce = o->write_cache;
	/* NAA 6 (IEEE registered extended): kura's company id, then the uid in
	 * the vendor-specific part. The uid is unique per vdisk and snapshot and
	 * never reused, so the designator is stable across restarts and
	 * distinct between LUs, as multipath and VMFS require. */
	lu->naa[0] = 0x60 | (uint8_t)(KURA_NAA_COMPANY >> 20);
	lu->naa[1] = (uint8_t)(KURA_NAA_COMPANY >> 12);
	lu->naa[2] = (uint8_t)(KURA_NAA_COMPANY >> 4);
	lu->naa[3] = (uint8_t)(KURA_NAA_COMPANY << 4);
	scsi_put64(lu->naa + 8, o->uid);
	if ((err = scsi_pr_init(lu, o->pr_state))) {
		free(lu);
		return err;
	}
	*out = lu;
	return 0;
}

void kura_scsi_lu_destroy(struct kura_scsi_lu *lu)
{
	if (!lu)
		return;
	while (lu->uas) {
		struct scsi_ua *u = lu->uas;
		lu->uas = u->next;
		free(u);
	}
	scsi_pr_free(lu);
	scsi_xcopy_free(lu);
	free(lu);
}

void kura_scsi_lu_naa(const struct kura_scsi_lu *lu, uint8_t naa[16])
{
	memcpy(naa, lu->naa, 16);
}

/* ---- unit attentions ---- */

static struct scsi_ua *ua_of(struct kura_scsi_lu *lu, uint64_t nexus)
{
	for (struct scsi_ua *u = lu->uas; u; u = u->next)
		if (u->nexus == nexus)
			return u;
	return NULL;
}

static void ua_push(struct scsi_ua *u, uint8_t asc, uint8_t ascq)
{
	uint16_t v = (uint16_t)(asc << 8 | ascq);

	for (unsigned i = 0; i < u->n; i++)
		if (u->q[i] == v)
			return;
	if (u->n == UA_MAX)
		return; /* the oldest ones are reported; an initiator re-reads state on any UA */
	u->q[u->n++] = v;
}

static void ua_take(struct scsi_ua *u, uint8_t *asc, uint8_t *ascq)
{
	*asc = (uint8_t)(u->q[0] >> 8);
	*ascq = (uint8_t)u->q[0];
	memmove(u->q, u->q + 1, (--u->n) * sizeof(u->q[0]));
}

void kura_scsi_nexus_new(struct kura_scsi_lu *lu, const struct kura_scsi_nexus *n)
{
	struct scsi_ua *u;

	if (lu && lu->o.fwd) {
		lu->o.fwd->nexus(lu->o.fwd_ctx, n, false);
		return;
	}
	if (!lu || ua_of(lu, n->id) || !(u = calloc(1, sizeof(*u))))
		return;
	u->nexus = n->id;
	snprintf(u->iport, sizeof(u->iport), "%s", n->iport);
	u->next = lu->uas;
	lu->uas = u;
}

void kura_scsi_nexus_gone(struct kura_scsi_lu *lu, const struct kura_scsi_nexus *n)
{
	if (lu && lu->o.fwd) {
		lu->o.fwd->nexus(lu->o.fwd_ctx, n, true);
		return;
	}
	if (!lu)
		return;
	for (struct scsi_ua **pp = &lu->uas; *pp; pp = &(*pp)->next)
		if ((*pp)->nexus == n->id) {
			struct scsi_ua *u = *pp;
			*pp = u->next;
			free(u);
			break;
		}
	if (lu->reserve6_nexus == n->id)
		lu->reserve6_nexus = 0;
	scsi_pr_nexus_gone(lu, n);
}

void scsi_ua_all(struct kura_scsi_lu *lu, uint64_t except, uint8_t asc, uint8_t ascq)
{
	for (struct scsi_ua *u = lu->uas; u; u = u->next)
		if (u->nexus != except || !except)
			ua_push(u, asc, ascq);
}

void scsi_ua_iport(struct kura_scsi_lu *lu, const char *iport, uint8_t asc, uint8_t ascq)
{
	for (struct scsi_ua *u = lu->uas; u; u = u->next)
		if (!strcmp(u->iport, iport))
			ua_push(u, asc, ascq);
}

bool scsi_ua_pop(struct kura_scsi_lu *lu, uint64_t nexus, uint8_t *asc, uint8_t *ascq)
{
	struct scsi_ua *u = ua_of(lu, nexus);

	if (!u || !u->n)
		return false;
	ua_take(u, asc, ascq);
	return true;
}

void kura_scsi_lu_set_write_cache(struct kura_scsi_lu *lu, bool on)
{
	if (lu->o.fwd)
		return; /* the serving node's LU has the setting */
	lu->o.write_cache = on;
	lu->wce = on;
	scsi_ua_all(lu, 0, 0x2a, 0x01); /* MODE PARAMETERS CHANGED */
}

void kura_scsi_lu_resized(struct kura_scsi_lu *lu, uint64_t size)
{
	lu->o.size = size;
	lu->nblocks = size / KURA_SCSI_LBS;
	scsi_ua_all(lu, 0, 0x2a, 0x09); /* CAPACITY DATA HAS CHANGED */
}

/* ---- sense and completion ---- */

static void sense_fixed(struct kura_scsi_cmd *cmd, uint8_t key, uint8_t asc, uint8_t ascq)
{
	memset(cmd->sense, 0, sizeof(cmd->sense));
	cmd->sense[0] = 0x70; /* current error, fixed format */
	cmd->sense[2] = key;
	cmd->sense[7] = 10;   /* additional sense length: 18 bytes in all */
	cmd->sense[12] = asc;
	cmd->sense[13] = ascq;
	cmd->sense_len = 18;
	cmd->status = KURA_SCSI_CHECK_CONDITION;
}

void kura_scsi_set_sense(struct kura_scsi_cmd *cmd, uint8_t key, uint8_t asc, uint8_t ascq)
{
	sense_fixed(cmd, key, asc, ascq);
}

static struct kura_scsi_cmd *cmd_of_cs(struct scsi_cstate *cs)
{
	return (struct kura_scsi_cmd *)(void *)((char *)cs - offsetof(struct kura_scsi_cmd, lu_priv));
}

static void cmd_unlink(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;

	if (cmd->lu_prev)
		cmd->lu_prev->lu_next = cmd->lu_next;
	else if (lu->cmds == cmd)
		lu->cmds = cmd->lu_next;
	if (cmd->lu_next)
		cmd->lu_next->lu_prev = cmd->lu_prev;
	cmd->lu_next = cmd->lu_prev = NULL;
}

static void complete_now(struct kura_op *op, int res)
{
	struct scsi_cstate *cs = KURA_CONTAINER_OF(op, struct scsi_cstate, op);
	struct kura_scsi_cmd *cmd = cmd_of_cs(cs);

	(void)res;
	cmd_unlink(cmd);
	free(cs->buf);
	cs->buf = NULL;
	if (cmd->aborted) {
		/* The transport sends nothing for a task it aborted; what matters
		 * is that no data or sense of a half-done command goes out. */
		cmd->status = KURA_SCSI_TASK_ABORTED;
		cmd->sense_len = 0;
	}
	/* A failed command sends no data: a read buffer that failed half way
	 * holds whatever the allocator left there. */
	if (cmd->status != KURA_SCSI_GOOD && cmd->status != KURA_SCSI_CONDITION_MET)
		cmd->din_len = 0;
	cmd->done(cmd);
}

void scsi_complete(struct kura_scsi_cmd *cmd)
{
	struct scsi_cstate *cs = scsi_cs(cmd);

	cs->op.fn = complete_now;
	kura_loop_defer(cmd->lu->o.loop, &cs->op, 0);
}

void scsi_good(struct kura_scsi_cmd *cmd)
{
	cmd->status = KURA_SCSI_GOOD;
	scsi_complete(cmd);
}

void scsi_check(struct kura_scsi_cmd *cmd, uint8_t key, uint8_t asc, uint8_t ascq)
{
	sense_fixed(cmd, key, asc, ascq);
	scsi_complete(cmd);
}

void scsi_check_field(struct kura_scsi_cmd *cmd, uint8_t key, uint8_t asc, uint8_t ascq,
		      bool in_cdb, uint16_t field, int bit)
{
	sense_fixed(cmd, key, asc, ascq);
	/* Sense-key specific: SKSV, C/D, BPV and bit pointer, field pointer. */
	cmd->sense[15] = 0x80 | (in_cdb ? 0x40 : 0) | (bit >= 0 ? 0x08 | (bit & 7) : 0);
	scsi_put16(cmd->sense + 16, field);
	scsi_complete(cmd);
}

void scsi_bad_cdb(struct kura_scsi_cmd *cmd, uint16_t field, int bit)
{
	scsi_check_field(cmd, SK_ILLEGAL_REQUEST, 0x24, 0x00, true, field, bit);
}

void scsi_bad_param(struct kura_scsi_cmd *cmd, uint16_t field, int bit)
{
	scsi_check_field(cmd, SK_ILLEGAL_REQUEST, 0x26, 0x00, false, field, bit);
}

void scsi_io_error(struct kura_scsi_cmd *cmd, int err, bool write)
{
	if (err == -ENOSPC)
		sense_fixed(cmd, SK_DATA_PROTECT, 0x27, 0x07); /* SPACE ALLOCATION FAILED WRITE PROTECT */
	else if (err == -EIO || err == -EILSEQ)
		/* WRITE ERROR / UNRECOVERED READ ERROR */
		sense_fixed(cmd, SK_MEDIUM_ERROR, write ? 0x0c : 0x11, 0x00);
	else if (err == -EROFS)
		sense_fixed(cmd, SK_DATA_PROTECT, 0x27, 0x00); /* WRITE PROTECTED */
	else
		sense_fixed(cmd, SK_HARDWARE_ERROR, 0x44, 0x00); /* INTERNAL TARGET FAILURE */
}

void scsi_io_done(void *arg, int err)
{
	struct kura_scsi_cmd *cmd = arg;
	struct scsi_cstate *cs = scsi_cs(cmd);

	if (err && !cs->err)
		cs->err = err;
	if (--cs->pending)
		return;
	cs->step(cmd, cs->err);
}

/* ---- data buffers and residuals ---- */

static void residual(struct kura_scsi_cmd *cmd, uint32_t want)
{
	cmd->overflow = want > cmd->edtl;
	cmd->underflow = want < cmd->edtl;
	cmd->residual = want > cmd->edtl ? want - cmd->edtl : cmd->edtl - want;
}

static uint8_t *din_alloc(struct kura_scsi_cmd *cmd, uint32_t want, uint32_t alloc, bool zero)
{
	uint32_t n = want < alloc ? want : alloc;
	size_t cap = KURA_ALIGN_UP((size_t)(want ? want : 1), PBS);

	kura_scsi_cmd_release(cmd);
	/* The whole response is built even when the allocation length cuts it:
	 * builders write `want` bytes and only din_len of them go out. */
	if ((cmd->din_pool = cmd->lu->o.bufs)) {
		cmd->din = zero ? kura_bufpool_getz(cmd->din_pool, cap)
				: kura_bufpool_get(cmd->din_pool, cap);
		cmd->din_cap = cap;
	} else {
		cmd->din = zero ? kura_aligned_alloc(cap) : kura_aligned_alloc_raw(cap);
	}
	if (!cmd->din) {
		sense_fixed(cmd, SK_HARDWARE_ERROR, 0x44, 0x00);
		return NULL;
	}
	residual(cmd, n);
	cmd->din_len = n < cmd->edtl ? n : cmd->edtl;
	return cmd->din;
}

uint8_t *scsi_din(struct kura_scsi_cmd *cmd, uint32_t want, uint32_t alloc)
{
	return din_alloc(cmd, want, alloc, true);
}

uint8_t *scsi_din_raw(struct kura_scsi_cmd *cmd, uint32_t want, uint32_t alloc)
{
	return din_alloc(cmd, want, alloc, false);
}

const uint8_t *scsi_dout(struct kura_scsi_cmd *cmd, uint32_t want, uint32_t *got)
{
	residual(cmd, want);
	*got = cmd->dout_len < want ? cmd->dout_len : want;
	return cmd->dout;
}

void kura_scsi_cmd_release(struct kura_scsi_cmd *cmd)
{
	if (cmd->din_pool)
		kura_bufpool_put(cmd->din_pool, cmd->din, cmd->din_cap);
	else
		free(cmd->din);
	cmd->din = NULL;
	cmd->din_len = 0;
	cmd->din_pool = NULL;
	cmd->din_cap = 0;
}

/* ---- range locks ---- */

static bool lock_conflicts(const struct scsi_lock *a, const struct scsi_lock *b)
{
	return (a->excl || b->excl) && a->off < b->end && b->off < a->end;
}

static void lock_fire(struct kura_op *op, int res)
{
	struct scsi_lock *l = KURA_CONTAINER_OF(op, struct scsi_lock, op);

	(void)res;
	l->granted_fn(l->arg);
}

/* Grants, in arrival order, every waiting lock that no earlier lock (granted
 * or waiting) conflicts with: a COMPARE AND WRITE waiting behind writes is
 * not starved by newer ones, and newer writes wait behind it. */
static void locks_grant(struct kura_scsi_lu *lu)
{
	for (struct scsi_lock *l = lu->locks; l; l = l->next) {
		bool blocked = false;

		if (l->granted)
			continue;
		for (struct scsi_lock *e = lu->locks; e != l && !blocked; e = e->next)
			blocked = lock_conflicts(e, l);
		if (blocked)
			continue;
		l->granted = true;
		l->op.fn = lock_fire;
		kura_loop_defer(lu->o.loop, &l->op, 0);
	}
}

static struct scsi_lock *lock_take(struct kura_scsi_lu *lu, uint64_t off, uint64_t len, bool excl,
				   void (*granted)(void *arg), void *arg, const void *owner)
{
	struct scsi_lock *l = calloc(1, sizeof(*l)), **pp = &lu->locks;

	if (!l)
		return NULL;
	l->off = off / PBS * PBS;
	l->end = KURA_ALIGN_UP(off + len, PBS);
	l->excl = excl;
	l->granted_fn = granted;
	l->arg = arg;
	l->owner = owner;
	while (*pp)
		pp = &(*pp)->next;
	*pp = l;
	locks_grant(lu);
	return l;
}

struct scsi_lock *scsi_lock_take(struct kura_scsi_lu *lu, uint64_t off, uint64_t len, bool excl,
				 void (*granted)(void *arg), void *arg)
{
	return lock_take(lu, off, len, excl, granted, arg, arg);
}

void scsi_lock_drop(struct kura_scsi_lu *lu, struct scsi_lock *l)
{
	/* A cancelled lock has already left the list. */
	for (struct scsi_lock **pp = &lu->locks; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	free(l);
	locks_grant(lu);
}

/* Ends the waits of `owner`: each waiting lock leaves the queue and its
 * granted function runs on a later turn with the lock marked cancelled. */
static void locks_cancel(struct kura_scsi_lu *lu, const void *owner)
{
	bool any = false;

	for (struct scsi_lock **pp = &lu->locks; *pp;) {
		struct scsi_lock *l = *pp;

		if (l->granted || l->owner != owner) {
			pp = &l->next;
			continue;
		}
		*pp = l->next;
		l->next = NULL;
		l->granted = l->cancelled = true;
		l->op.fn = lock_fire;
		kura_loop_defer(lu->o.loop, &l->op, 0);
		any = true;
	}
	if (any)
		locks_grant(lu);
}

/* ---- medium I/O in bytes over a 4 KiB backend ---- */

static bool aligned(uint64_t off, uint64_t len, const void *buf)
{
	return !(off % PBS) && !(len % PBS) && !((uintptr_t)buf % PBS);
}

/* One read, write or discard, possibly bounced through an aligned buffer
 * and, for a write covering part of a 4 KiB block, read-modify-written. */
struct aio {
	struct kura_scsi_lu *lu;
	uint64_t off, len, aoff, alen;
	uint8_t *rbuf;            /* read: the caller's buffer */
	const uint8_t *wbuf;      /* write: the caller's data */
	uint8_t *tmp;             /* aligned bounce buffer of alen bytes, or NULL */
	bool discard, rmw;
	bool cached;              /* backend write_cached: may complete before durable */
	unsigned reads;           /* edge reads in flight (RMW) */
	int err;
	struct scsi_lock *lock;   /* NULL when the caller holds an exclusive lock */
	struct kura_op op;        /* start on a later turn under the caller's lock */
	enum kura_io_class cls;
	kura_blk_cb cb;
	void *arg;
};

static void aio_end(struct aio *a, int err)
{
	kura_blk_cb cb = a->cb;
	void *arg = a->arg;

	if (!err && a->rbuf && a->tmp)
		memcpy(a->rbuf, a->tmp + (a->off - a->aoff), a->len);
	if (a->lock)
		scsi_lock_drop(a->lu, a->lock);
	a->lu->inflight--;
	free(a->tmp);
	free(a);
	cb(arg, err);
}

static void aio_done(void *arg, int err)
{
	aio_end(arg, err);
}

static void aio_write_now(struct aio *a)
{
	const struct kura_scsi_backend_ops *ops = a->lu->o.ops;
	int err;

	if (a->discard)
		err = ops->discard(a->lu->o.be, a->aoff, a->alen, aio_done, a);
	else
		err = (a->cached && ops->write_cached ? ops->write_cached : ops->write)(
			a->lu->o.be, a->tmp ? a->aoff : a->off, a->tmp ? a->alen : a->len,
			a->tmp ? a->tmp : a->wbuf, a->cls, aio_done, a);
	if (err)
		aio_end(a, err); /* this runs on a loop turn of its own, never inside the submitter */
}

static void rmw_read_done(void *arg, int err)
{
	struct aio *a = arg;

	if (err && !a->err)
		a->err = err;
	if (--a->reads)
		return;
	if (a->err) {
		aio_end(a, a->err);
		return;
	}
	memcpy(a->tmp + (a->off - a->aoff), a->wbuf, a->len);
	aio_write_now(a);
}

/* The range is ours: start the write (reading partial edge blocks first). */
static void aio_write_go(void *arg)
{
	struct aio *a = arg;
	const struct kura_scsi_backend_ops *ops = a->lu->o.ops;
	uint64_t edges[2];
	unsigned n = 0;

	if (a->lock && a->lock->cancelled) {
		aio_end(a, -ECANCELED);
		return;
	}
	if (!a->rmw) {
		if (a->tmp && !a->discard)
			memcpy(a->tmp, a->wbuf, a->len);
		aio_write_now(a);
		return;
	}
	if (a->off % PBS)
		edges[n++] = a->aoff;
	if ((a->off + a->len) % PBS && (!n || a->aoff + a->alen - PBS != edges[0]))
		edges[n++] = a->aoff + a->alen - PBS;
	a->reads = n + 1; /* one held while submitting */
	for (unsigned i = 0; i < n; i++) {
		int err = ops->read(a->lu->o.be, edges[i], PBS, a->tmp + (edges[i] - a->aoff),
				    a->cls, rmw_read_done, a);
		if (err) {
			a->err = err;
			a->reads -= n - i;
			break;
		}
	}
	rmw_read_done(a, 0);
}

static void aio_locked_fire(struct kura_op *op, int res)
{
	(void)res;
	aio_write_go(KURA_CONTAINER_OF(op, struct aio, op));
}

static struct aio *aio_new(struct kura_scsi_lu *lu, uint64_t off, uint64_t len,
			   enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	struct aio *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->lu = lu;
	a->off = off;
	a->len = len;
	a->aoff = off / PBS * PBS;
	a->alen = KURA_ALIGN_UP(off + len, PBS) - a->aoff;
	a->cls = cls;
	a->cb = cb;
	a->arg = arg;
	return a;
}

/* A write (or, with discard, a deallocation of whole blocks). take_lock:
 * wait for the range (shared when whole 4 KiB blocks are written,
 * exclusive for a read-modify-write); else the caller holds it exclusively.
 * cached: through the backend's write_cached (write cache enabled, no FUA). */
static int aio_write(struct kura_scsi_lu *lu, uint64_t off, uint64_t len, const void *buf,
		     bool discard, bool cached, enum kura_io_class cls, bool take_lock,
		     const void *owner, kura_blk_cb cb, void *arg)
{
	struct aio *a = aio_new(lu, off, len, cls, cb, arg);

	if (!a)
		return -ENOMEM;
	a->discard = discard;
	a->cached = cached;
	a->wbuf = buf;
	a->rmw = !discard && ((off % PBS) || (len % PBS));
	if (!discard && !aligned(off, len, buf) && !(a->tmp = kura_aligned_alloc_raw(a->alen))) {
		free(a);
		return -ENOMEM;
	}
	lu->inflight++;
	if (!take_lock) {
		/* Still never complete inside the caller's call. */
		a->op.fn = aio_locked_fire;
		kura_loop_defer(lu->o.loop, &a->op, 0);
		return 0;
	}
	/* A partial block is read, merged and written: nobody else may touch it meanwhile. */
	if (!(a->lock = lock_take(lu, off, len, a->rmw, aio_write_go, a, owner))) {
		lu->inflight--;
		free(a->tmp);
		free(a);
		return -ENOMEM;
	}
	return 0;
}

int scsi_lu_read(struct kura_scsi_lu *lu, uint64_t off, uint64_t len, void *buf,
		 enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	struct aio *a;
	int err;

	if (aligned(off, len, buf))
		return lu->o.ops->read(lu->o.be, off, len, buf, cls, cb, arg);
	if (!(a = aio_new(lu, off, len, cls, cb, arg)))
		return -ENOMEM;
	a->rbuf = buf;
	if (!(a->tmp = kura_aligned_alloc_raw(a->alen))) {
		free(a);
		return -ENOMEM;
	}
	lu->inflight++;
	err = lu->o.ops->read(lu->o.be, a->aoff, a->alen, a->tmp, cls, aio_done, a);
	if (err) {
		lu->inflight--;
		free(a->tmp);
		free(a);
	}
	return err;
}

int scsi_lu_read_locked(struct kura_scsi_lu *lu, uint64_t off, uint64_t len, void *buf,
			kura_blk_cb cb, void *arg)
{
	return scsi_lu_read(lu, off, len, buf, KURA_IO_GUEST, cb, arg);
}

int scsi_lu_write(struct kura_scsi_lu *lu, uint64_t off, uint64_t len, const void *buf,
		  enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	if (lu->o.read_only)
		return -EROFS;
	return aio_write(lu, off, len, buf, false, false, cls, true, arg, cb, arg);
}

int scsi_lu_write_locked(struct kura_scsi_lu *lu, uint64_t off, uint64_t len, const void *buf,
			 kura_blk_cb cb, void *arg)
{
	if (lu->o.read_only)
		return -EROFS;
	return aio_write(lu, off, len, buf, false, false, KURA_IO_GUEST, false, arg, cb, arg);
}

/* A discard: whole 4 KiB blocks are deallocated, partial ones get zeros
 * (which is what LBPRZ promises a reader of the deallocated range). */
struct discard {
	unsigned pending;
	int err;
	kura_blk_cb cb;
	void *arg;
};

static const uint8_t zero_block[PBS];

static void discard_part_done(void *arg, int err)
{
	struct discard *d = arg;
	kura_blk_cb cb;
	void *cbarg;

	if (err && !d->err)
		d->err = err;
	if (--d->pending)
		return;
	err = d->err;
	cb = d->cb;
	cbarg = d->arg;
	free(d);
	cb(cbarg, err);
}

static int discard_piece(struct kura_scsi_lu *lu, struct discard *d, uint64_t off, uint64_t len,
			 bool zeros)
{
	int err;

	d->pending++;
	err = aio_write(lu, off, len, zeros ? zero_block : NULL, !zeros, false, KURA_IO_GUEST, true,
			d->arg, discard_part_done, d);
	if (err)
		d->pending--;
	return err;
}

int scsi_lu_discard(struct kura_scsi_lu *lu, uint64_t off, uint64_t len, kura_blk_cb cb,
		    void *arg)
{
	uint64_t end = off + len, in0 = KURA_ALIGN_UP(off, PBS), in1 = end / PBS * PBS;
	struct discard *d;
	int err = 0;

	if (lu->o.read_only)
		return -EROFS;
	if (!(d = calloc(1, sizeof(*d))))
		return -ENOMEM;
	d->cb = cb;
	d->arg = arg;
	d->pending = 1; /* held while submitting */
	if (in0 >= in1) {
		/* Inside one block or across one block edge: zeros, block by block. */
		for (uint64_t o = off; o < end && !err;) {
			uint64_t n = KURA_MIN(end - o, PBS - o % PBS);
			err = discard_piece(lu, d, o, n, true);
			o += n;
		}
	} else {
		if (off < in0)
			err = discard_piece(lu, d, off, in0 - off, true);
		if (!err && end > in1)
			err = discard_piece(lu, d, in1, end - in1, true);
		if (!err)
			err = discard_piece(lu, d, in0, in1 - in0, false);
	}
	if (err && d->pending == 1) {
		free(d);
		return err;
	}
	if (err)
		d->err = err;
	discard_part_done(d, 0);
	return 0;
}

/* ---- a command's transfer in chunks ---- */

struct xfer {
	struct kura_scsi_cmd *cmd;
	uint8_t *buf;
	uint64_t off, len, next; /* next: bytes issued so far */
	unsigned flags, inflight;
	int err;
	enum kura_io_class cls;
	void (*step)(struct kura_scsi_cmd *cmd, int err);
};

static void xfer_chunk_done(void *arg, int err);

static void xfer_fill(struct xfer *x)
{
	struct kura_scsi_lu *lu = x->cmd->lu;
	void (*step)(struct kura_scsi_cmd *, int);
	struct kura_scsi_cmd *cmd;
	int err;

	while (!x->err && !x->cmd->aborted && x->next < x->len && x->inflight < SCSI_XFER_DEPTH) {
		uint64_t n = KURA_MIN(x->len - x->next, (uint64_t)SCSI_XFER_CHUNK);
		uint8_t *b = x->flags & SCSI_XFER_REPEAT ? x->buf : x->buf + x->next;
		uint64_t at = x->off + x->next;

		if (!(x->flags & SCSI_XFER_WRITE))
			err = scsi_lu_read(lu, at, n, b, x->cls, xfer_chunk_done, x);
		else if (lu->o.read_only)
			err = -EROFS;
		else
			err = aio_write(lu, at, n, b, false, (x->flags & SCSI_XFER_CACHED) != 0, x->cls,
					!(x->flags & SCSI_XFER_LOCKED),
					x->cmd, xfer_chunk_done, x);
		if (err) {
			x->err = err;
			break;
		}
		x->next += n;
		x->inflight++;
	}
	if (x->inflight)
		return;
	err = x->err ? x->err : x->next < x->len ? -ECANCELED : 0;
	step = x->step;
	cmd = x->cmd;
	free(x);
	step(cmd, err);
}

static void xfer_chunk_done(void *arg, int err)
{
	struct xfer *x = arg;

	x->inflight--;
	if (err && !x->err)
		x->err = err;
	xfer_fill(x);
}

void scsi_xfer(struct kura_scsi_cmd *cmd, unsigned flags, uint64_t off, uint64_t len,
	       uint8_t *buf, enum kura_io_class cls, void (*step)(struct kura_scsi_cmd *cmd, int err))
{
	struct xfer *x = calloc(1, sizeof(*x));

	if (!x) {
		step(cmd, -ENOMEM);
		return;
	}
	x->cmd = cmd;
	x->buf = buf;
	x->off = off;
	x->len = len;
	x->flags = flags;
	x->cls = cls;
	x->step = step;
	xfer_fill(x);
}

/* ---- dispatch and task management ---- */

/* Commands a pending unit attention neither blocks nor consumes (SPC-4
 * 5.14); REQUEST SENSE reports it instead. */
static bool ua_exempt(uint8_t op)
{
	return op == 0x12 /* INQUIRY */ || op == 0xa0 /* REPORT LUNS */ ||
	       op == 0x03 /* REQUEST SENSE */;
}

void kura_scsi_exec(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;
	struct scsi_cstate *cs = scsi_cs(cmd);
	struct scsi_ua *u;
	uint8_t op = cmd->cdb[0];

	memset(cs, 0, sizeof(*cs));
	cmd->status = KURA_SCSI_GOOD;
	cmd->sense_len = 0;
	cmd->din = NULL;
	cmd->din_len = 0;
	cmd->din_pool = NULL;
	cmd->overflow = cmd->underflow = false;
	cmd->residual = 0;
	cmd->aborted = false;
	if (lu->o.fwd) {
		lu->o.fwd->exec(lu->o.fwd_ctx, cmd);
		return;
	}
	cmd->lu_prev = NULL;
	cmd->lu_next = lu->cmds;
	if (lu->cmds)
		lu->cmds->lu_prev = cmd;
	lu->cmds = cmd;

	if ((u = ua_of(lu, cmd->nexus->id)) && u->n && !ua_exempt(op)) {
		uint8_t asc, ascq;

		ua_take(u, &asc, &ascq);
		scsi_check(cmd, SK_UNIT_ATTENTION, asc, ascq);
		return;
	}
	if (scsi_pr_conflict(cmd)) {
		cmd->status = KURA_SCSI_RESERVATION_CONFLICT;
		scsi_complete(cmd);
		return;
	}
	if (scsi_sbc_exec(cmd) || scsi_spc_exec(cmd))
		return;
	switch (op) {
	case 0x5e:
		scsi_pr_in(cmd);
		return;
	case 0x5f:
		scsi_pr_out(cmd);
		return;
	case 0x16:
		scsi_reserve6(cmd);
		return;
	case 0x17:
		scsi_release6(cmd);
		return;
	case 0x83:
		scsi_xcopy(cmd);
		return;
	case 0x84:
		scsi_copy_results(cmd);
		return;
	}
	/* INVALID COMMAND OPERATION CODE, pointing at the opcode byte. */
	scsi_check_field(cmd, SK_ILLEGAL_REQUEST, 0x20, 0x00, true, 0, 7);
}

void kura_scsi_abort(struct kura_scsi_cmd *cmd)
{
	if (cmd->aborted)
		return;
	cmd->aborted = true;
	if (cmd->lu->o.fwd) {
		cmd->lu->o.fwd->abort(cmd->lu->o.fwd_ctx, cmd);
		return;
	}
	locks_cancel(cmd->lu, cmd);
}

void scsi_abort_iport(struct kura_scsi_lu *lu, const char *iport, struct kura_scsi_cmd *keep)
{
	for (struct kura_scsi_cmd *c = lu->cmds; c; c = c->lu_next)
		if (c != keep && !strcmp(c->nexus->iport, iport))
			kura_scsi_abort(c);
}

void kura_scsi_lu_reset(struct kura_scsi_lu *lu, const struct kura_scsi_nexus *by)
{
	if (lu->o.fwd) {
		lu->o.fwd->reset(lu->o.fwd_ctx, by);
		return;
	}
	for (struct kura_scsi_cmd *c = lu->cmds; c; c = c->lu_next)
		kura_scsi_abort(c);
	lu->reserve6_nexus = 0;
	/* Mode parameters return to their saved values: the write cache as the
	 * administrator set it, the rest the defaults. */
	lu->wce = lu->o.write_cache;
	lu->swp = false;
	/* SAM-5 establishes the unit attention for every I_T nexus, the one
	 * that asked included: its initiator learns of the reset like the
	 * others and rescans what the reset cleared. */
	(void)by;
	scsi_ua_all(lu, 0, 0x29, 0x03); /* BUS DEVICE RESET FUNCTION OCCURRED */
}
