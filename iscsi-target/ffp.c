/* The full feature phase: SCSI commands in CmdSN order, solicited and
 * unsolicited Data-Out, Data-In with status (phase collapse), task
 * management, NOP-Out/NOP-In, Text and Logout. */
#include "iscsi-target/iscsi_int.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void deliver(struct iconn *c, struct itask *t);
static void task_exec(struct itask *t);
static void pdu_now(struct iconn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dlen);

/* ---- tasks ---- */

static struct itask *task_find(struct iconn *c, uint32_t itt)
{
	for (struct itask *t = c->tasks; t; t = t->next)
		if (t->itt == itt && !t->aborted)
			return t;
	return NULL;
}

void iscsi_task_put(struct itask *t)
{
	struct iconn *c = t->c;

	if (--t->refs)
		return;
	for (struct itask **pp = &c->tasks; *pp; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	kura_scsi_cmd_release(&t->cmd);
	if (t->kind_pdu)
		free(t->buf);
	else
		kura_bufpool_put(&c->p->bufs, t->buf, t->edtl);
	free(t);
}

/* An aborted task goes once nothing refers to it: not in the LU, not
 * holding a CmdSN slot. */
static void task_drop(struct itask *t)
{
	if (t->state == T_WAIT_SN || t->in_lu || t->state == T_DONE)
		return;
	t->state = T_DONE;
	iscsi_task_put(t);
}

static struct itask *task_new(struct iconn *c, const uint8_t *bhs)
{
	struct itask *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->c = c;
	t->refs = 1;
	t->itt = iscsi_itt(bhs);
	t->cmdsn = iscsi_cmdsn(bhs);
	t->immediate = iscsi_immediate(bhs);
	t->edtl = iscsi_w20(bhs);
	memcpy(t->bhs, bhs, KURA_ISCSI_BHS);
	t->state = T_WAIT_SN;
	t->next = c->tasks;
	c->tasks = t;
	return t;
}

/* ---- CmdSN ---- */

static bool sn_in_window(struct iconn *c, uint32_t sn)
{
	return iscsi_sn_le(c->exp_cmdsn, sn) && iscsi_sn_le(sn, c->max_cmdsn);
}

static void sn_queue(struct iconn *c, struct itask *t)
{
	struct itask **pp = &c->snq;

	while (*pp && iscsi_sn_lt((*pp)->cmdsn, t->cmdsn))
		pp = &(*pp)->sn_next;
	t->sn_next = *pp;
	*pp = t;
}

static void sn_advance(struct iconn *c)
{
	while (c->snq && c->snq->cmdsn == c->exp_cmdsn && c->state != C_CLOSING) {
		struct itask *t = c->snq;

		c->snq = t->sn_next;
		c->exp_cmdsn++;
		c->max_cmdsn = c->exp_cmdsn + ISCSI_WINDOW - 1;
		deliver(c, t);
	}
}

/* ---- responses ---- */

static void send_status(struct itask *t)
{
	struct iconn *c = t->c;
	struct kura_scsi_cmd *cmd = &t->cmd;
	struct txpdu *p = iscsi_txpdu(ISCSI_OP_SCSI_RSP);
	uint8_t *sense = NULL;

	if (!p) {
		iscsi_conn_close(c, "out of memory");
		return;
	}
	p->bhs[1] = ISCSI_F_FINAL | (cmd->overflow ? ISCSI_F_O : 0) | (cmd->underflow ? ISCSI_F_U : 0);
	p->bhs[2] = 0;
	p->bhs[3] = cmd->status;
	iscsi_put32(p->bhs + 16, t->itt);
	iscsi_put32(p->bhs + 36, t->r2tsn);
	iscsi_put32(p->bhs + 44, cmd->overflow || cmd->underflow ? cmd->residual : 0);
	if (cmd->sense_len && (sense = malloc(2 + cmd->sense_len))) {
		iscsi_put16(sense, (uint16_t)cmd->sense_len);
		memcpy(sense + 2, cmd->sense, cmd->sense_len);
		p->owned = sense;
		p->data = sense;
		p->dlen = 2 + cmd->sense_len;
	}
	iscsi_fill_sn(c, p->bhs, true);
	iscsi_send(c, p);
}

/* Data-In for a read, the last PDU carrying the status when it is GOOD. */
static void send_data_in(struct itask *t)
{
	struct iconn *c = t->c;
	struct kura_scsi_cmd *cmd = &t->cmd;
	uint32_t off = 0, len = cmd->din_len, seg = c->prm.max_xmit_dsl;
	bool collapse = cmd->status == KURA_SCSI_GOOD && !cmd->sense_len;
	uint32_t datasn = 0;

	if (!seg)
		seg = 8192;
	while (off < len) {
		uint32_t n = len - off < seg ? len - off : seg;
		bool last = off + n == len;
		struct txpdu *p = iscsi_txpdu(ISCSI_OP_DATA_IN);

		if (!p) {
			iscsi_conn_close(c, "out of memory");
			return;
		}
		memcpy(p->bhs + 8, t->bhs + 8, 8);
		iscsi_put32(p->bhs + 16, t->itt);
		iscsi_put32(p->bhs + 20, ISCSI_RSVD_TAG);
		iscsi_put32(p->bhs + 36, datasn++);
		iscsi_put32(p->bhs + 40, off);
		if (last) {
			p->bhs[1] = ISCSI_F_FINAL;
			if (collapse) {
				p->bhs[1] |= ISCSI_F_S | (cmd->overflow ? ISCSI_F_O : 0) |
					     (cmd->underflow ? ISCSI_F_U : 0);
				p->bhs[3] = cmd->status;
				iscsi_put32(p->bhs + 44,
					    cmd->overflow || cmd->underflow ? cmd->residual : 0);
			}
		}
		p->data = cmd->din + off;
		p->dlen = n;
		p->task = t;
		t->refs++;
		iscsi_fill_sn(c, p->bhs, last && collapse);
		iscsi_send(c, p);
		off += n;
	}
	t->r2tsn = datasn; /* ExpDataSN in a separate status */
	if (!len || !collapse)
		send_status(t);
}

static void tmf_answer(struct itmf *m);

static void cmd_done(struct kura_scsi_cmd *cmd)
{
	struct itask *t = cmd->priv;
	struct iconn *c = t->c;

	t->in_lu = false;
	c->in_lu--;
	if (t->tmf) {
		struct itmf *m = t->tmf;
		t->tmf = NULL;
		if (!--m->waiting)
			tmf_answer(m);
	}
	if (c->state == C_CLOSING || t->aborted) {
		task_drop(t);
		if (c->state == C_CLOSING)
			iscsi_conn_maybe_free(c);
		return;
	}
	t->state = T_DONE;
	send_data_in(t);
	iscsi_task_put(t);
	if (c->state == C_LOGOUT && !c->in_lu)
		pdu_now(c, c->logout_bhs, NULL, 0); /* the held logout */
}

/* A command for a LUN other than 0: INQUIRY says no device is there, REPORT
 * LUNS goes to the target's LU (it lists LUN 0), anything else gets
 * LOGICAL UNIT NOT SUPPORTED. */
static bool other_lun(struct itask *t)
{
	struct kura_scsi_cmd *cmd = &t->cmd;

	if (kura_iscsi_lun_id(iscsi_lun(t->bhs)) == 0 || cmd->cdb[0] == 0xa0)
		return false;
	cmd->status = KURA_SCSI_GOOD;
	if (cmd->cdb[0] == 0x12 && !(cmd->cdb[1] & 1)) {
		uint32_t want = 36, alloc = (uint32_t)cmd->cdb[3] << 8 | cmd->cdb[4];
		uint32_t n = want < alloc ? want : alloc;

		if (n > t->edtl)
			n = t->edtl;
		cmd->din = kura_aligned_alloc(4096);
		if (cmd->din) {
			memset(cmd->din, 0, 4096);
			cmd->din[0] = 0x7f; /* peripheral qualifier 3: no LU here */
			cmd->din[2] = 0x06;
			cmd->din[3] = 0x02;
			cmd->din[4] = 31;
			cmd->din_len = n;
			if (t->edtl > n) {
				cmd->underflow = true;
				cmd->residual = t->edtl - n;
			}
			return true;
		}
	}
	kura_scsi_set_sense(cmd, 0x05, 0x25, 0x00);
	return true;
}

static void task_exec(struct itask *t)
{
	struct iconn *c = t->c;
	struct kura_scsi_cmd *cmd = &t->cmd;
	uint8_t flags = t->bhs[1];

	t->state = T_EXEC;
	memcpy(cmd->cdb, t->bhs + 32, 16);
	cmd->lu = c->tgt->lu;
	cmd->nexus = &c->nexus;
	cmd->lun = iscsi_lun(t->bhs);
	cmd->edtl = t->edtl;
	cmd->dir = (flags & ISCSI_F_READ ? KURA_SCSI_READ : 0) |
		   (flags & ISCSI_F_WRITE ? KURA_SCSI_WRITE : 0);
	cmd->dout = t->buf;
	cmd->dout_len = t->got;
	cmd->done = cmd_done;
	cmd->priv = t;
	if (t->edtl > KURA_SCSI_MAX_XFER) {
		kura_scsi_set_sense(cmd, 0x05, 0x24, 0x00);
		cmd->overflow = false;
		t->state = T_DONE;
		send_status(t);
		iscsi_task_put(t);
		return;
	}
	if (other_lun(t)) {
		t->state = T_DONE;
		send_data_in(t);
		iscsi_task_put(t);
		return;
	}
	iscsi_target_sync_size(c->tgt);
	t->in_lu = true;
	c->in_lu++;
	kura_scsi_exec(cmd);
}

/* Asks for the next pieces of a write's data. */
static void send_r2ts(struct itask *t)
{
	struct iconn *c = t->c;
	uint32_t burst = c->prm.max_burst ? c->prm.max_burst : 262144;
	uint32_t maxr = c->prm.max_outstanding_r2t ? c->prm.max_outstanding_r2t : 1;

	while (t->r2t_next < t->edtl && t->r2t_out < maxr) {
		uint32_t n = t->edtl - t->r2t_next < burst ? t->edtl - t->r2t_next : burst;
		struct txpdu *p = iscsi_txpdu(ISCSI_OP_R2T);

		if (!p) {
			iscsi_conn_close(c, "out of memory");
			return;
		}
		p->bhs[1] = ISCSI_F_FINAL;
		memcpy(p->bhs + 8, t->bhs + 8, 8);
		iscsi_put32(p->bhs + 16, t->itt);
		iscsi_put32(p->bhs + 20, t->ttt_base + t->r2tsn);
		iscsi_put32(p->bhs + 36, t->r2tsn);
		iscsi_put32(p->bhs + 40, t->r2t_next);
		iscsi_put32(p->bhs + 44, n);
		iscsi_fill_sn(c, p->bhs, false);
		iscsi_send(c, p);
		t->r2tsn++;
		t->r2t_out++;
		t->r2t_next += n;
	}
}

static bool write_data_done(struct itask *t)
{
	return !(t->bhs[1] & ISCSI_F_WRITE) || t->got >= t->edtl;
}

/* Ends a write whose data came out of sequence: ABORTED COMMAND, DATA PHASE ERROR. */
static void task_fail_data(struct itask *t)
{
	kura_scsi_set_sense(&t->cmd, 0x0b, 0x4b, 0x00);
	t->state = T_DONE;
	send_status(t);
	iscsi_task_put(t);
}

/* The command's CmdSN has come: it runs now or once its data is in. */
static void deliver(struct iconn *c, struct itask *t)
{
	if (t->data_err && !t->aborted) {
		task_fail_data(t);
		return;
	}
	if (t->aborted) {
		t->state = T_DATA_OUT; /* no longer holds a CmdSN slot */
		task_drop(t);
		return;
	}
	if (t->kind_pdu) {
		uint8_t *d = t->buf;
		uint32_t n = t->got;

		t->state = T_DONE;
		pdu_now(c, t->bhs, d, n);
		iscsi_task_put(t);
		return;
	}
	if (write_data_done(t) || t->edtl > KURA_SCSI_MAX_XFER) {
		task_exec(t);
		return;
	}
	t->state = T_DATA_OUT;
	send_r2ts(t);
}

/* ---- headers: where data goes ---- */

static void reject_data(struct iconn *c, uint8_t reason)
{
	c->rej = reason;
	c->ddiscard = true;
}

static void scsi_cmd_header(struct iconn *c)
{
	const uint8_t *h = c->cur;
	uint32_t dlen = iscsi_dlen(h), edtl = iscsi_w20(h);
	bool imm = iscsi_immediate(h);
	struct itask *t;

	if (c->type != KURA_ISCSI_NORMAL || c->state != C_FULL) {
		reject_data(c, ISCSI_REJECT_PROTOCOL);
		return;
	}
	if (!imm && !sn_in_window(c, iscsi_cmdsn(h))) {
		iscsi_conn_warn(c, "CmdSN %u outside %u..%u; command dropped", iscsi_cmdsn(h),
				c->exp_cmdsn, c->max_cmdsn);
		c->ddiscard = true;
		return;
	}
	if (task_find(c, iscsi_itt(h))) {
		reject_data(c, ISCSI_REJECT_TASK_IN_PROGRESS);
		return;
	}
	if (dlen && (!(h[1] & ISCSI_F_WRITE) || !c->prm.immediate_data || dlen > edtl ||
		     dlen > c->prm.first_burst)) {
		reject_data(c, ISCSI_REJECT_PROTOCOL);
		return;
	}
	if (!(t = task_new(c, h))) {
		iscsi_conn_close(c, "out of memory");
		return;
	}
	c->ntask = t;
	if ((h[1] & ISCSI_F_WRITE) && edtl && edtl <= KURA_SCSI_MAX_XFER) {
		t->buf = kura_bufpool_getz(&c->p->bufs, edtl);
		if (!t->buf) {
			iscsi_conn_close(c, "out of memory");
			return;
		}
	}
	/* Unsolicited data ends at the first burst unless F says none follows. */
	if (h[1] & ISCSI_F_FINAL)
		t->unsol_end = dlen;
	else
		t->unsol_end = c->prm.initial_r2t ? dlen
			       : (edtl < c->prm.first_burst ? edtl : c->prm.first_burst);
	t->r2t_next = t->unsol_end;
	t->ttt_base = (++c->next_ttt & 0x7fffu) << 16;
	if (dlen) {
		if (t->buf) {
			c->dst = t->buf;
			c->dtask = t;
			t->refs++;
		} else {
			c->ddiscard = true;
		}
	}
}

static void data_out_header(struct iconn *c)
{
	const uint8_t *h = c->cur;
	uint32_t dlen = iscsi_dlen(h), ttt = iscsi_w20(h), off = iscsi_bufoff(h);
	struct itask *t = task_find(c, iscsi_itt(h));
	uint32_t end;
	bool ok;

	if (!t || t->state == T_EXEC || t->state == T_DONE || !t->buf || t->data_err) {
		c->ddiscard = true; /* for a task that ended or was aborted */
		return;
	}
	end = ttt == ISCSI_RSVD_TAG ? t->unsol_end : t->edtl;
	ok = off == t->got && dlen <= end - off && off <= end &&
	     iscsi_datasn(h) == t->datasn_expect &&
	     (ttt == ISCSI_RSVD_TAG || (ttt - t->ttt_base < t->r2tsn && t->r2t_out));
	if (!ok) {
		/* A sequence error: the PDU is rejected and its command fails
		 * (closing the connection would only make the initiator retry it). */
		iscsi_conn_warn(c, "Data-Out out of sequence for task 0x%x (offset %u, %u bytes, "
				"DataSN %u, TTT 0x%x); the command fails", t->itt, off, dlen,
				iscsi_datasn(h), ttt);
		reject_data(c, ISCSI_REJECT_PROTOCOL);
		t->data_err = true;
		if (t->state == T_DATA_OUT)
			task_fail_data(t);
		return;
	}
	c->dst = t->buf + off;
	c->dtask = t;
	t->refs++;
}

void iscsi_ffp_header(struct iconn *c)
{
	switch (iscsi_opcode(c->cur)) {
	case ISCSI_OP_SCSI_CMD:
		scsi_cmd_header(c);
		break;
	case ISCSI_OP_DATA_OUT:
		data_out_header(c);
		break;
	default:
		break;
	}
}

/* ---- whole PDUs ---- */

static void data_out_pdu(struct iconn *c)
{
	struct itask *t = c->dtask;
	const uint8_t *h = c->cur;

	c->dtask = NULL;
	if (!t)
		return;
	t->got += iscsi_dlen(h);
	t->datasn_expect++;
	if (h[1] & ISCSI_F_FINAL) {
		t->datasn_expect = 0;
		if (iscsi_w20(h) != ISCSI_RSVD_TAG && t->r2t_out)
			t->r2t_out--;
	}
	if (t->aborted || c->state != C_FULL) {
		iscsi_task_put(t);
		return;
	}
	if (t->state == T_DATA_OUT) {
		if (write_data_done(t))
			task_exec(t);
		else
			send_r2ts(t);
	}
	iscsi_task_put(t);
}

static void scsi_cmd_pdu(struct iconn *c)
{
	struct itask *t = c->ntask;

	c->ntask = NULL;
	if (c->dtask) {
		t->got = iscsi_dlen(c->cur);
		iscsi_task_put(c->dtask);
		c->dtask = NULL;
	}
	if (!t)
		return;
	if (t->immediate) {
		deliver(c, t);
		return;
	}
	sn_queue(c, t);
	sn_advance(c);
}

static void send_nop_in(struct iconn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dlen)
{
	struct txpdu *p = iscsi_txpdu(ISCSI_OP_NOP_IN);
	uint8_t *copy = dlen ? malloc(dlen) : NULL;

	if (!p || (dlen && !copy)) {
		free(p);
		free(copy);
		iscsi_conn_close(c, "out of memory");
		return;
	}
	if (dlen)
		memcpy(copy, data, dlen);
	p->bhs[1] = ISCSI_F_FINAL;
	memcpy(p->bhs + 8, bhs + 8, 8);
	iscsi_put32(p->bhs + 16, iscsi_itt(bhs));
	iscsi_put32(p->bhs + 20, ISCSI_RSVD_TAG);
	p->owned = copy;
	p->data = copy;
	p->dlen = dlen;
	iscsi_fill_sn(c, p->bhs, true);
	iscsi_send(c, p);
}

static void tmf_answer(struct itmf *m)
{
	struct iconn *c = m->c;
	struct txpdu *p;

	if (c->state != C_CLOSING && (p = iscsi_txpdu(ISCSI_OP_TMF_RSP))) {
		p->bhs[1] = ISCSI_F_FINAL;
		p->bhs[2] = m->response;
		iscsi_put32(p->bhs + 16, iscsi_itt(m->bhs));
		iscsi_fill_sn(c, p->bhs, true);
		iscsi_send(c, p);
		if (m->cold) {
			/* TARGET COLD RESET: every session of the target ends. */
			for (struct iconn *o = c->p->conns; o; o = o->next)
				if (o != c && o->tgt == c->tgt && o->state != C_CLOSING)
					iscsi_conn_close(o, "target cold reset");
			p->close_after = true;
		}
	}
	c->in_lu--; /* the hold taken while it waited */
	free(m);
	if (c->state == C_CLOSING)
		iscsi_conn_maybe_free(c);
}

/* Aborts task t for m: no response will be sent for it. */
static void tmf_abort(struct itmf *m, struct itask *t)
{
	if (t->aborted)
		return;
	t->aborted = true;
	if (t->in_lu) {
		if (!t->tmf) {
			t->tmf = m;
			m->waiting++;
		}
		kura_scsi_abort(&t->cmd);
	} else {
		task_drop(t);
	}
}

static void tmf_pdu(struct iconn *c)
{
	const uint8_t *h = c->cur;
	uint8_t fn = h[1] & 0x7f;
	uint32_t lun = kura_iscsi_lun_id(iscsi_lun(h));
	struct itmf *m = calloc(1, sizeof(*m));
	struct itask *t, *n;

	if (!m) {
		iscsi_conn_close(c, "out of memory");
		return;
	}
	m->c = c;
	memcpy(m->bhs, h, KURA_ISCSI_BHS);
	m->waiting = 1;
	c->in_lu++; /* keeps the connection until the answer */
	if (c->type != KURA_ISCSI_NORMAL) {
		m->response = 0xff;
	} else if ((fn == 1 || fn == 2 || fn == 4 || fn == 5) && lun != 0) {
		m->response = 2; /* LUN does not exist */
	} else {
		switch (fn) {
		case 1: /* ABORT TASK */
			t = task_find(c, iscsi_w20(h));
			if (!t) {
				m->response = 1; /* task does not exist */
				break;
			}
			tmf_abort(m, t);
			break;
		case 2: /* ABORT TASK SET */
		case 4: /* CLEAR TASK SET */
			for (t = c->tasks; t; t = n) {
				n = t->next;
				tmf_abort(m, t);
			}
			break;
		case 5: /* LOGICAL UNIT RESET */
		case 6: /* TARGET WARM RESET */
		case 7: /* TARGET COLD RESET */
			for (struct iconn *o = c->p->conns; o; o = o->next) {
				if (o->tgt != c->tgt || o->state == C_CLOSING)
					continue;
				for (t = o->tasks; t; t = n) {
					n = t->next;
					tmf_abort(m, t);
				}
			}
			kura_scsi_lu_reset(c->tgt->lu, &c->nexus);
			m->cold = fn == 7;
			kura_log(WARN, "iSCSI session %u (%s): %s reset of %s", c->tsih, c->iname,
				 fn == 5 ? "logical unit" : fn == 6 ? "target warm" : "target cold",
				 c->tgt->iqn);
			break;
		case 8: /* TASK REASSIGN */
			m->response = 4; /* allegiance reassignment not supported (ERL 0) */
			break;
		default:
			m->response = 5; /* function not supported */
		}
	}
	if (!--m->waiting)
		tmf_answer(m);
}

static void text_pdu(struct iconn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dlen)
{
	struct txpdu *p = iscsi_txpdu(ISCSI_OP_TEXT_RSP);
	uint8_t *rd = NULL;
	uint32_t rl = 0;
	int r;

	if (!p || !c->text) {
		free(p);
		iscsi_conn_close(c, "out of memory");
		return;
	}
	r = kura_iscsi_text_step(c->text, &c->prm, bhs, data, dlen, p->bhs, &rd, &rl);
	p->owned = rd;
	p->data = rd;
	p->dlen = rl;
	p->close_after = r < 0;
	iscsi_fill_sn(c, p->bhs, true);
	iscsi_send(c, p);
}

static void logout_pdu(struct iconn *c, const uint8_t *bhs)
{
	struct txpdu *p = iscsi_txpdu(ISCSI_OP_LOGOUT_RSP);
	uint8_t reason = bhs[1] & 0x7f;

	if (!p) {
		iscsi_conn_close(c, "out of memory");
		return;
	}
	p->bhs[1] = ISCSI_F_FINAL;
	p->bhs[2] = reason == 2 ? 2 : 0; /* recovery is not supported at ERL 0 */
	iscsi_put32(p->bhs + 16, iscsi_itt(bhs));
	iscsi_fill_sn(c, p->bhs, true);
	p->close_after = reason != 2;
	iscsi_send(c, p);
	if (reason != 2)
		kura_log(INFO, "iSCSI session %u (%s) logged out", c->tsih, c->iname);
}

/* A non-SCSI PDU whose turn has come. */
static void pdu_now(struct iconn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dlen)
{
	switch (iscsi_opcode(bhs)) {
	case ISCSI_OP_NOP_OUT:
		if (iscsi_w20(bhs) != ISCSI_RSVD_TAG) {
			if (iscsi_w20(bhs) == c->ping_ttt)
				c->ping_ttt = ISCSI_RSVD_TAG;
		} else if (iscsi_itt(bhs) != ISCSI_RSVD_TAG) {
			send_nop_in(c, bhs, data, dlen);
		}
		break;
	case ISCSI_OP_TEXT_REQ:
		text_pdu(c, bhs, data, dlen);
		break;
	case ISCSI_OP_LOGOUT_REQ:
		if (c->in_lu) {
			/* Answered when the commands in flight are done. */
			c->state = C_LOGOUT;
			memcpy(c->logout_bhs, bhs, KURA_ISCSI_BHS);
			break;
		}
		c->state = C_FULL;
		logout_pdu(c, bhs);
		break;
	default:
		break;
	}
}

/* A non-SCSI PDU in CmdSN order: immediate ones and those whose CmdSN is
 * next run now; later ones wait in the queue like commands. */
static void pdu_ordered(struct iconn *c, const uint8_t *data, uint32_t dlen)
{
	const uint8_t *h = c->cur;
	uint32_t sn = iscsi_cmdsn(h);
	struct itask *t;

	if (iscsi_immediate(h) || (iscsi_opcode(h) == ISCSI_OP_NOP_OUT &&
				   iscsi_itt(h) == ISCSI_RSVD_TAG)) {
		pdu_now(c, h, data, dlen);
		return;
	}
	if (!sn_in_window(c, sn)) {
		iscsi_conn_warn(c, "CmdSN %u outside %u..%u; PDU dropped", sn, c->exp_cmdsn,
				c->max_cmdsn);
		return;
	}
	if (sn == c->exp_cmdsn) {
		c->exp_cmdsn++;
		c->max_cmdsn = c->exp_cmdsn + ISCSI_WINDOW - 1;
		pdu_now(c, h, data, dlen);
		sn_advance(c);
		return;
	}
	t = calloc(1, sizeof(*t));
	if (!t || (dlen && !(t->buf = malloc(dlen)))) {
		free(t);
		iscsi_conn_close(c, "out of memory");
		return;
	}
	t->c = c;
	t->refs = 1;
	t->kind_pdu = true;
	t->itt = ISCSI_RSVD_TAG;
	t->cmdsn = sn;
	memcpy(t->bhs, h, KURA_ISCSI_BHS);
	if (dlen)
		memcpy(t->buf, data, dlen);
	t->got = dlen;
	t->aborted = true; /* invisible to task lookups */
	t->state = T_WAIT_SN;
	t->next = c->tasks;
	c->tasks = t;
	sn_queue(c, t);
}

void iscsi_ffp_pdu(struct iconn *c, const uint8_t *data, uint32_t dlen)
{
	uint8_t op = iscsi_opcode(c->cur);

	if (op == ISCSI_OP_DATA_OUT) {
		data_out_pdu(c);
		return;
	}
	if (c->ddiscard && (c->rej || op != ISCSI_OP_SCSI_CMD || !c->ntask))
		return; /* an oversized command's immediate data is dropped, not the command */
	if (c->state == C_LOGOUT)
		return; /* nothing new is taken once a logout waits */
	switch (op) {
	case ISCSI_OP_SCSI_CMD:
		scsi_cmd_pdu(c);
		break;
	case ISCSI_OP_TMF_REQ:
		tmf_pdu(c);
		break;
	case ISCSI_OP_NOP_OUT:
	case ISCSI_OP_TEXT_REQ:
	case ISCSI_OP_LOGOUT_REQ:
		pdu_ordered(c, data, dlen);
		break;
	case ISCSI_OP_SNACK:
	default: {
		/* SNACK needs ErrorRecoveryLevel > 0, which we never negotiate. */
		struct txpdu *p = iscsi_txpdu(ISCSI_OP_REJECT);
		uint8_t *copy = malloc(KURA_ISCSI_BHS);

		if (!p || !copy) {
			free(p);
			free(copy);
			iscsi_conn_close(c, "out of memory");
			return;
		}
		memcpy(copy, c->cur, KURA_ISCSI_BHS);
		p->bhs[1] = ISCSI_F_FINAL;
		p->bhs[2] = op == ISCSI_OP_SNACK ? ISCSI_REJECT_PROTOCOL : ISCSI_REJECT_UNSUPPORTED;
		iscsi_put32(p->bhs + 16, ISCSI_RSVD_TAG);
		p->owned = copy;
		p->data = copy;
		p->dlen = KURA_ISCSI_BHS;
		iscsi_fill_sn(c, p->bhs, true);
		iscsi_send(c, p);
	}
	}
}

void iscsi_ffp_teardown(struct iconn *c)
{
	struct itask *t, *n;

	c->snq = NULL;
	for (t = c->tasks; t; t = n) {
		n = t->next;
		t->aborted = true;
		if (t->state == T_WAIT_SN)
			t->state = T_DATA_OUT;
		if (t->in_lu)
			kura_scsi_abort(&t->cmd);
		else
			task_drop(t);
	}
}
