/* The SCSI LU core: dispatch, completion, unit attentions, range locks,
 * sense data, Data-In/Data-Out residuals (see scsi.h and scsi_int.h). */
#include "iscsi-target/scsi_int.h"

#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(struct scsi_cstate) <= sizeof(((struct kura_scsi_cmd *)0)->lu_priv),
	       "command scratch must fit in lu_priv");

#define UA_MAX 8

struct scsi_ua {
	uint64_t nexus;
	char iport[sizeof(((struct kura_scsi_nexus *)0)->iport)];
	uint16_t q[UA_MAX]; /* asc << 8 | ascq, oldest first */
	unsigned n;
	struct scsi_ua *next;
};

struct scsi_lock {
	uint64_t off, end;
	bool excl, granted;
	void (*granted_fn)(void *arg);
	void *arg;
	struct kura_op op;
	struct kura_scsi_lu *lu;
	struct scsi_lock *next;
};

/* ---- life cycle ---- */

int kura_scsi_lu_create(const struct kura_scsi_lu_opts *o, struct kura_scsi_lu **out)
{
	struct kura_scsi_lu *lu = calloc(1, sizeof(*lu));
	int err;

	if (!lu)
		return -ENOMEM;
	lu->o = *o;
	snprintf(lu->name, sizeof(lu->name), "%s", o->name ? o->name : "");
	lu->o.name = lu->name;
	lu->o.pr_state = NULL;
	lu->nblocks = o->size / KURA_SCSI_LBS;
	/* NAA 6 (IEEE registered extended): a fixed kura prefix, then the uid
	 * (unique per vdisk and snapshot, never reused), so the id is stable
	 * across restarts and distinct between LUs. */
	lu->naa[0] = 0x66;
	lu->naa[1] = 0xb7;
	lu->naa[2] = 0x57;
	lu->naa[3] = 0x20;
	scsi_put64(lu->naa + 8, o->uid);
	lu->wce = false;
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
		return;
	u->q[u->n++] = v;
}

void kura_scsi_nexus_new(struct kura_scsi_lu *lu, const struct kura_scsi_nexus *n)
{
	struct scsi_ua *u;

	if (!lu || ua_of(lu, n->id) || !(u = calloc(1, sizeof(*u))))
		return;
	u->nexus = n->id;
	snprintf(u->iport, sizeof(u->iport), "%s", n->iport);
	u->next = lu->uas;
	lu->uas = u;
}

void kura_scsi_nexus_gone(struct kura_scsi_lu *lu, const struct kura_scsi_nexus *n)
{
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
		if (u->nexus != except)
			ua_push(u, asc, ascq);
}

void scsi_ua_iport(struct kura_scsi_lu *lu, const char *iport, uint8_t asc, uint8_t ascq)
{
	for (struct scsi_ua *u = lu->uas; u; u = u->next)
		if (!strcmp(u->iport, iport))
			ua_push(u, asc, ascq);
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
	cmd->sense[0] = 0x70;
	cmd->sense[2] = key;
	cmd->sense[7] = 10;
	cmd->sense[12] = asc;
	cmd->sense[13] = ascq;
	cmd->sense_len = 18;
	cmd->status = KURA_SCSI_CHECK_CONDITION;
}

void kura_scsi_set_sense(struct kura_scsi_cmd *cmd, uint8_t key, uint8_t asc, uint8_t ascq)
{
	sense_fixed(cmd, key, asc, ascq);
}

static void complete_now(struct kura_op *op, int res)
{
	struct scsi_cstate *cs = KURA_CONTAINER_OF(op, struct scsi_cstate, op);
	struct kura_scsi_cmd *cmd = (struct kura_scsi_cmd *)(void *)((char *)cs -
		offsetof(struct kura_scsi_cmd, lu_priv));
	struct kura_scsi_lu *lu = cmd->lu;

	(void)res;
	if (cmd->lu_prev)
		cmd->lu_prev->lu_next = cmd->lu_next;
	else if (lu->cmds == cmd)
		lu->cmds = cmd->lu_next;
	if (cmd->lu_next)
		cmd->lu_next->lu_prev = cmd->lu_prev;
	cmd->lu_next = cmd->lu_prev = NULL;
	free(cs->buf);
	cs->buf = NULL;
	if (cmd->aborted) {
		cmd->status = KURA_SCSI_TASK_ABORTED;
		cmd->sense_len = 0;
	}
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
		sense_fixed(cmd, SK_MEDIUM_ERROR, write ? 0x0c : 0x11, 0x00);
	else if (err == -EROFS)
		sense_fixed(cmd, SK_DATA_PROTECT, 0x27, 0x00);
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

uint8_t *scsi_din(struct kura_scsi_cmd *cmd, uint32_t want, uint32_t alloc)
{
	uint32_t n = want < alloc ? want : alloc;
	uint32_t cap = (n + 4095) & ~4095u;

	free(cmd->din);
	cmd->din = kura_aligned_alloc(cap ? cap : 4096);
	if (!cmd->din) {
		sense_fixed(cmd, SK_HARDWARE_ERROR, 0x44, 0x00);
		return NULL;
	}
	memset(cmd->din, 0, cap ? cap : 4096);
	residual(cmd, n);
	cmd->din_len = n < cmd->edtl ? n : cmd->edtl;
	return cmd->din;
}

const uint8_t *scsi_dout(struct kura_scsi_cmd *cmd, uint32_t want, uint32_t *got)
{
	residual(cmd, want);
	*got = cmd->dout_len < want ? cmd->dout_len : want;
	return cmd->dout;
}

void kura_scsi_cmd_release(struct kura_scsi_cmd *cmd)
{
	free(cmd->din);
	cmd->din = NULL;
	cmd->din_len = 0;
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

/* Grants, in order, every waiting lock with no earlier conflicting one. */
static void locks_grant(struct kura_scsi_lu *lu)
{
	for (struct scsi_lock *l = lu->locks; l; l = l->next) {
		bool blocked = false;

		if (l->granted)
			continue;
		for (struct scsi_lock *e = lu->locks; e != l; e = e->next)
			if (lock_conflicts(e, l)) {
				blocked = true;
				break;
			}
		if (blocked)
			continue;
		l->granted = true;
		l->op.fn = lock_fire;
		kura_loop_defer(lu->o.loop, &l->op, 0);
	}
}

struct scsi_lock *scsi_lock_take(struct kura_scsi_lu *lu, uint64_t off, uint64_t len, bool excl,
				 void (*granted)(void *arg), void *arg)
{
	struct scsi_lock *l = calloc(1, sizeof(*l)), **pp = &lu->locks;

	if (!l)
		return NULL;
	l->off = off / KURA_SCSI_PBS * KURA_SCSI_PBS;
	l->end = (off + len + KURA_SCSI_PBS - 1) / KURA_SCSI_PBS * KURA_SCSI_PBS;
	l->excl = excl;
	l->granted_fn = granted;
	l->arg = arg;
	l->lu = lu;
	while (*pp)
		pp = &(*pp)->next;
	*pp = l;
	locks_grant(lu);
	return l;
}

void scsi_lock_drop(struct kura_scsi_lu *lu, struct scsi_lock *l)
{
	for (struct scsi_lock **pp = &lu->locks; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	free(l);
	locks_grant(lu);
}

/* ---- medium I/O in bytes over a 4 KiB backend ---- */

#define PBS KURA_SCSI_PBS

static bool aligned(uint64_t off, uint64_t len, const void *buf)
{
	return !(off % PBS) && !(len % PBS) && !((uintptr_t)buf % PBS);
}

/* One read or write, possibly bounced through an aligned buffer and, for a
 * write covering part of a 4 KiB block, read-modified-written. */
struct aio {
	struct kura_scsi_lu *lu;
	uint64_t off, len, aoff, alen;
	uint8_t *rbuf;            /* read: the caller's buffer */
	const uint8_t *wbuf;      /* write: the caller's data */
	uint8_t *tmp;             /* aligned bounce buffer of alen bytes, or NULL */
	bool write, discard, rmw, own_lock;
	unsigned reads;           /* edge reads in flight (RMW) */
	int err;
	struct scsi_lock *lock;
	enum kura_io_class cls;
	kura_blk_cb cb;
	void *arg;
};

static void aio_end(struct aio *a, int err)
{
	kura_blk_cb cb = a->cb;
	void *arg = a->arg;

	if (!err && !a->write && a->tmp)
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
	else if (a->tmp)
		err = ops->write(a->lu->o.be, a->aoff, a->alen, a->tmp, a->cls, aio_done, a);
	else
		err = ops->write(a->lu->o.be, a->off, a->len, a->wbuf, a->cls, aio_done, a);
	if (err)
		aio_end(a, err); /* we run from a loop turn of our own, not the submitter's */
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

/* The lock is held: start the write (reading partial edge blocks first). */
static void aio_write_go(void *arg)
{
	struct aio *a = arg;
	const struct kura_scsi_backend_ops *ops = a->lu->o.ops;
	uint64_t edges[2];
	unsigned n = 0;

	if (!a->rmw) {
		if (a->tmp)
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
				    KURA_IO_GUEST, rmw_read_done, a);
		if (err) {
			a->err = err;
			a->reads -= n - i;
			break;
		}
	}
	rmw_read_done(a, 0);
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
	a->alen = (off + len + PBS - 1) / PBS * PBS - a->aoff;
	a->cls = cls;
	a->cb = cb;
	a->arg = arg;
	return a;
}

static int aio_write(struct kura_scsi_lu *lu, uint64_t off, uint64_t len, const void *buf,
		     enum kura_io_class cls, bool take_lock, kura_blk_cb cb, void *arg)
{
	struct aio *a = aio_new(lu, off, len, cls, cb, arg);

	if (!a)
		return -ENOMEM;
	a->write = true;
	a->wbuf = buf;
	a->rmw = (off % PBS) || (len % PBS);
	if (!aligned(off, len, buf) && !(a->tmp = kura_aligned_alloc(a->alen))) {
		free(a);
		return -ENOMEM;
	}
	lu->inflight++;
	if (!take_lock) {
		/* The caller holds an exclusive lock; still never complete inside the call. */
		a->lock = NULL;
		a->own_lock = false;
		a->lock = scsi_lock_take(lu, 0, 0, false, aio_write_go, a);
		if (!a->lock) {
			lu->inflight--;
			free(a->tmp);
			free(a);
			return -ENOMEM;
		}
		return 0;
	}
	/* A partial block is read, merged and written: nobody else may touch it meanwhile. */
	a->lock = scsi_lock_take(lu, off, len, a->rmw, aio_write_go, a);
	if (!a->lock) {
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
	if (!(a->tmp = kura_aligned_alloc(a->alen))) {
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
	return aio_write(lu, off, len, buf, cls, true, cb, arg);
}

int scsi_lu_write_locked(struct kura_scsi_lu *lu, uint64_t off, uint64_t len, const void *buf,
			 kura_blk_cb cb, void *arg)
{
	return aio_write(lu, off, len, buf, KURA_IO_GUEST, false, cb, arg);
}

/* A discard: whole 4 KiB blocks are deallocated, partial ones get zeros. */
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

	if (err && !d->err)
		d->err = err;
	if (--d->pending)
		return;
	err = d->err;
	{
		kura_blk_cb cb = d->cb;
		void *cbarg = d->arg;
		free(d);
		cb(cbarg, err);
	}
}

int scsi_lu_discard(struct kura_scsi_lu *lu, uint64_t off, uint64_t len, kura_blk_cb cb,
		    void *arg)
{
	uint64_t end = off + len, in0 = (off + PBS - 1) / PBS * PBS, in1 = end / PBS * PBS;
	struct discard *d;
	struct aio *a;
	int err = 0;

	if (lu->o.read_only)
		return -EROFS;
	if (!(d = calloc(1, sizeof(*d))))
		return -ENOMEM;
	d->cb = cb;
	d->arg = arg;
	d->pending = 1;
	if (in0 >= in1) {
		/* Inside one or two blocks: zeros. */
		for (uint64_t o = off; o < end && !err;) {
			uint64_t n = end - o < PBS - o % PBS ? end - o : PBS - o % PBS;
			d->pending++;
			if ((err = aio_write(lu, o, n, zero_block, KURA_IO_GUEST, true, discard_part_done, d)))
				d->pending--;
			o += n;
		}
	} else {
		if (off < in0) {
			d->pending++;
			if ((err = aio_write(lu, off, in0 - off, zero_block, KURA_IO_GUEST, true,
					     discard_part_done, d)))
				d->pending--;
		}
		if (!err && end > in1) {
			d->pending++;
			if ((err = aio_write(lu, in1, end - in1, zero_block, KURA_IO_GUEST, true,
					     discard_part_done, d)))
				d->pending--;
		}
		if (!err && (a = aio_new(lu, in0, in1 - in0, KURA_IO_GUEST, discard_part_done, d))) {
			a->write = a->discard = true;
			lu->inflight++;
			d->pending++;
			if (!(a->lock = scsi_lock_take(lu, in0, in1 - in0, false, aio_write_go, a))) {
				lu->inflight--;
				d->pending--;
				free(a);
				err = -ENOMEM;
			}
		} else if (!err) {
			err = -ENOMEM;
		}
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

/* ---- dispatch ---- */

/* Commands a pending unit attention does not block (SPC-4 5.14). */
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
	cmd->overflow = cmd->underflow = false;
	cmd->residual = 0;
	cmd->aborted = false;
	cmd->lu_prev = NULL;
	cmd->lu_next = lu->cmds;
	if (lu->cmds)
		lu->cmds->lu_prev = cmd;
	lu->cmds = cmd;

	if ((u = ua_of(lu, cmd->nexus->id)) && u->n && !ua_exempt(op)) {
		uint16_t v = u->q[0];

		memmove(u->q, u->q + 1, (--u->n) * sizeof(u->q[0]));
		scsi_check(cmd, SK_UNIT_ATTENTION, (uint8_t)(v >> 8), (uint8_t)v);
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
	scsi_check_field(cmd, SK_ILLEGAL_REQUEST, 0x20, 0x00, true, 0, 7); /* INVALID COMMAND OPERATION CODE */
}

/* Pops the oldest unit attention of a nexus for REQUEST SENSE; false when none. */
bool scsi_ua_pop(struct kura_scsi_lu *lu, uint64_t nexus, uint8_t *asc, uint8_t *ascq)
{
	struct scsi_ua *u = ua_of(lu, nexus);

	if (!u || !u->n)
		return false;
	*asc = (uint8_t)(u->q[0] >> 8);
	*ascq = (uint8_t)u->q[0];
	memmove(u->q, u->q + 1, (--u->n) * sizeof(u->q[0]));
	return true;
}

void kura_scsi_abort(struct kura_scsi_cmd *cmd)
{
	cmd->aborted = true;
}

void scsi_abort_iport(struct kura_scsi_lu *lu, const char *iport, struct kura_scsi_cmd *keep)
{
	for (struct kura_scsi_cmd *c = lu->cmds; c; c = c->lu_next)
		if (c != keep && !strcmp(c->nexus->iport, iport))
			c->aborted = true;
}

void kura_scsi_lu_reset(struct kura_scsi_lu *lu, const struct kura_scsi_nexus *by)
{
	for (struct kura_scsi_cmd *c = lu->cmds; c; c = c->lu_next)
		c->aborted = true;
	lu->reserve6_nexus = 0;
	(void)by; /* every nexus hears of it, the one that asked included */
	scsi_ua_all(lu, 0, 0x29, 0x03); /* BUS DEVICE RESET FUNCTION OCCURRED */
}
