/* A hostile iSCSI initiator: proves that bad input from one client never
 * hurts the target or its other sessions.
 *
 * It is a small, self-contained initiator (RFC 7143): login without
 * authentication or with one-way CHAP (MD5), READ(10)/WRITE(10) with immediate data
 * and R2T/Data-Out, NOP-Out, Logout; non-blocking sockets waited on with
 * poll and deadlines. A healthy session is opened before any attack and,
 * after every check, must still write and read back a fresh pattern; blockd
 * must still run. Each check uses connections of its own. One line per
 * check, "ok: ..." or "FAIL: ..."; exit status 0 only when every check that
 * ran passed.
 *
 * usage: kura-iscsicheck --port PORT --target IQN [options]; without
 * arguments it lists the options.
 */
#include "tests/integration/iscsi_initiator.h"

/* ---- the checks: true when passed; r->msg says what happened ---- */

/* A bare header: opcode, F bit, a new ITT, TTT reserved, s's CmdSN (not
 * counted) and ExpStatSN. */
static void bare_bhs(struct sess *s, uint8_t *h, uint8_t op)
{
	memset(h, 0, BHS);
	h[0] = op;
	h[1] = ISCSI_F_FINAL;
	iscsi_put32(h + 16, next_itt(s));
	iscsi_put32(h + 20, RSVD);
	iscsi_put32(h + 24, s->cmdsn);
	iscsi_put32(h + 28, s->expstatsn);
}

/* 1: opcodes no initiator may send (the last with a data segment to skip):
 * a Reject, after which the session still works, or a closed connection. */
static bool check_opcodes(struct run *r)
{
	static const uint8_t ops[] = {0x1f, 0x3e, 0x07, 0x1c, 0x21, 0x3f, 0x1f};
	uint8_t junk[1000], h[BHS];
	struct sess s = {.fd = -1};
	bool ok = true;

	memset(junk, 0xee, sizeof(junk));
	for (unsigned i = 0; i < sizeof(ops) && ok; i++) {
		uint32_t dlen = i == sizeof(ops) - 1 ? sizeof(junk) : 0;
		struct seen w;

		if (s.fd < 0 && !attacker(r, &s))
			return false;
		bare_bhs(&s, h, ops[i]);
		pdu_send(s.fd, h, junk, dlen); /* the target may have closed already */
		watch(&s, 2000, W_REJECT, &w);
		note(r, true, "%s0x%02x%s: ", i ? ", " : "", ops[i], dlen ? "+data" : "");
		if (w.closed)
			note(r, true, "closed"), sess_close(&s);
		else if (!w.reject)
			ok = note(r, false, "no Reject in 2 s, the connection open");
		else if (w.reason != ISCSI_REJECT_PROTOCOL && w.reason != ISCSI_REJECT_UNSUPPORTED)
			ok = note(r, false, "Reject with reason 0x%02x", w.reason);
		else if (note(r, true, "Reject %02x", w.reason) && nop_ping(&s))
			/* The stream must still be framed right: the next PDU is understood. */
			ok = note(r, false, ", then the session broke: %s", s.why);
	}
	sess_close(&s);
	return ok;
}

/* 2: headers cut short, closed at once or left hanging, before and after
 * login, and a data segment cut short: other sessions go on meanwhile. */
static bool check_truncated(struct run *r)
{
	for (unsigned v = 0; v < 5; v++) {
		uint8_t h[BHS] = {0}, data[1000] = {0};
		struct sess s;

		if (v < 2) {
			if (!connected(r, &s, 0))
				return false;
			login_bhs(&s, h, ISCSI_F_TRANSIT | 1);
		} else if (!attacker(r, &s)) {
			return false;
		} else {
			rw10_bhs(&s, h, false, ATTACK_OFF, r->bs);
		}
		if (v == 4) { /* a NOP-Out that announces 1000 bytes and brings 100 */
			bare_bhs(&s, h, ISCSI_OP_NOP_OUT);
			iscsi_set_dlen(h, sizeof(data));
			send_all(s.fd, h, BHS);
			send_all(s.fd, data, 100);
		} else {
			send_all(s.fd, h, 20);
		}
		if (v % 2) {
			usleep(200000);
			if (!healthy_ok(r)) {
				sess_close(&s);
				return note(r, false, " while a %s header hung",
					    v < 2 ? "login" : "command");
			}
		}
		sess_close(&s);
	}
	return note(r, true, "login and command headers cut and closed or left hanging, a data "
		    "segment cut; the healthy session worked while they hung");
}

/* 3: data segments over the target's MaxRecvDataSegmentLength: a NOP-Out
 * and a write's immediate data sent whole, and a header announcing 16 MiB
 * with 4 KiB behind it. Closed, or Rejected (or a failed write). */
static bool check_oversize(struct run *r)
{
	static const char *const what[] = {"NOP-Out", "WRITE immediate data", "NOP-Out header"};

	for (unsigned v = 0; v < 3; v++) {
		uint8_t h[BHS], *buf;
		struct sess s;
		struct seen w;
		uint32_t len;

		if (!attacker(r, &s))
			return false;
		len = v == 2 ? 0xffffffu : (s.mrdsl + 4096 + r->bs - 1) / r->bs * r->bs;
		if (!(buf = calloc(1, v == 2 ? 4096 : len))) {
			sess_close(&s);
			return note(r, false, "out of memory");
		}
		if (v == 1)
			rw10_bhs(&s, h, true, ATTACK_OFF, len);
		else
			bare_bhs(&s, h, ISCSI_OP_NOP_OUT), iscsi_put32(h + 24, s.cmdsn++);
		if (v == 2) {
			iscsi_set_dlen(h, len);
			send_all(s.fd, h, BHS);
			send_all(s.fd, buf, 4096);
		} else {
			pdu_send(s.fd, h, buf, len);
		}
		free(buf);
		watch(&s, 5000, W_REJECT | W_STATUS, &w);
		sess_close(&s);
		note(r, true, "%s%s of %u bytes (limit %u): ", v ? ", " : "", what[v], len,
		     s.mrdsl);
		if (w.closed)
			note(r, true, "closed");
		else if (w.reject && v < 2)
			note(r, true, "Reject %02x", w.reason);
		else if (w.status && w.status_byte && w.sense_key != 6 && v == 1)
			note(r, true, "status 0x%02x", w.status_byte);
		else
			return note(r, false, "%s",
				    w.npdus ? "accepted, answered" : "no answer, open");
	}
	return true;
}

/* 4: a login PDU announcing 16 MiB of data, with 255 words of AHS and
 * without: the connection closes. */
static bool check_login_huge(struct run *r)
{
	uint8_t junk[8192], h[BHS];

	memset(junk, 'A', sizeof(junk));
	for (unsigned v = 0; v < 2; v++) {
		struct sess s;
		struct seen w;

		if (!connected(r, &s, 0))
			return false;
		login_bhs(&s, h, ISCSI_F_TRANSIT | 1);
		h[4] = v ? 0 : 255;
		iscsi_set_dlen(h, 0xffffff);
		send_all(s.fd, h, BHS);
		send_all(s.fd, junk, sizeof(junk));
		watch(&s, 5000, 0, &w);
		sess_close(&s);
		if (!w.closed || (w.login && !w.login_class))
			return note(r, false, "%s: %s", v ? "without AHS" : "with AHS 255",
				    w.closed ? "logged in" : "the connection is open after 5 s");
	}
	return note(r, true, "closed, with AHS 255 and without");
}

/* 5: commands with CmdSNs far ahead of and behind the window are dropped
 * without an answer; the session goes on with the right CmdSN. */
static bool check_cmdsn(struct run *r)
{
	static const uint32_t off[] = {0x40000000u, (uint32_t)-1000, 0x7fffffffu};
	uint8_t h[BHS];
	struct sess s;
	struct seen w;
	bool ok = false;

	if (!attacker(r, &s))
		return false;
	for (unsigned i = 0; i < 3; i++) {
		if (i < 2)
			rw10_bhs(&s, h, false, ATTACK_OFF, r->bs), s.cmdsn--;
		else
			bare_bhs(&s, h, ISCSI_OP_NOP_OUT); /* a NOP-Out that wants an answer */
		iscsi_put32(h + 24, s.cmdsn + off[i]);
		pdu_send(s.fd, h, NULL, 0);
	}
	watch(&s, 1500, 0, &w);
	if (w.closed)
		note(r, false, "the target closed the session instead of ignoring the commands");
	else if (w.npdus)
		note(r, false, "answered (%s%s%s)", w.status ? "a status " : "",
		     w.reject ? "a Reject " : "", w.other ? "another PDU" : "");
	else if (write_verify(&s, ATTACK_OFF, 64 << 10, PDU_MS) || nop_ping(&s))
		note(r, false, "no answer, but then the right CmdSN failed: %s", s.why);
	else
		ok = note(r, true, "CmdSN +2^30, -1000 and +2^31-1 dropped without an answer; "
			  "the session went on");
	sess_close(&s);
	return ok;
}

/* Sends data as the text of a login, in PDUs of at most chunk bytes (the C
 * bit on all but the last); true when the target refuses with status class
 * 2 or closes the connection. */
static bool login_refuses(struct run *r, const uint8_t *data, uint32_t len, uint32_t chunk)
{
	struct sess s;
	struct seen w = {0};
	uint8_t h[BHS];

	if (!connected(r, &s, 0))
		return false;
	for (uint32_t done = 0, k; done < len && !w.closed && !w.login_class; done += k) {
		k = len - done < chunk ? len - done : chunk;
		login_bhs(&s, h, done + k == len ? ISCSI_F_TRANSIT | 1 : ISCSI_F_CONTINUE);
		pdu_send(s.fd, h, data + done, k);
		watch(&s, 3000, W_LOGIN, &w);
		if (!w.closed && !w.login)
			break;
	}
	sess_close(&s);
	if (w.closed)
		return note(r, true, "closed");
	if (!w.login)
		return note(r, false, "no answer in 3 s");
	return note(r, w.login_class == 2, "%s%02x/%02x", w.login_class ? "" : "accepted, ",
		    w.login_class, w.login_detail);
}

/* 6: login text that breaks the rules: refused (class 2) or closed. */
static bool check_login_text(struct run *r)
{
	static const char *const what[] = {
		"pair without '='", "no final NUL", "100 KB value in one PDU",
		"100 KB value in C-bit PDUs", "duplicate key", "binary junk", "empty key",
		"1000-byte key"};
	uint32_t big = 100 << 10;
	uint8_t *buf = malloc(big + 9000);
	bool ok = true;

	if (!buf)
		return note(r, false, "out of memory");
	for (unsigned v = 0; v < 8; v++) {
		struct kv k = {.len = 0};
		uint32_t len, chunk = 8192;
		uint64_t x = 0x1234567;

		kv_add(&k, "InitiatorName", r->cfg.iname);
		kv_add(&k, "TargetName", r->cfg.target);
		kv_add(&k, "SessionType", "Normal");
		kv_add(&k, "AuthMethod", "None");
		if (v == 4)
			kv_add(&k, "InitiatorName", "iqn.2026-11.io.kura:someone-else");
		memcpy(buf, k.buf, len = k.len);
		if (v == 0)
			len += (uint32_t)snprintf((char *)buf + len, big + 9000 - len, "NoEqualsSignHere") + 1;
		else if (v == 1)
			len--; /* the last pair loses its NUL */
		else if (v == 2 || v == 3)
			len += (uint32_t)snprintf((char *)buf + len, big + 9000 - len, "InitiatorAlias=%0*d", big,
						 0) + 1, chunk = v == 2 ? len : 8192;
		else if (v == 6)
			len += (uint32_t)snprintf((char *)buf + len, big + 9000 - len, "=value") + 1;
		else if (v == 7)
			len += (uint32_t)snprintf((char *)buf + len, big + 9000 - len, "%01000d=1", 0) + 1;
		else if (v == 5) /* high bytes only: no '=', no NUL, no key */
			for (len = 0; len < 3000; len++) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				buf[len] = (uint8_t)(x | 0x80);
			}
		note(r, true, "%s%s: ", v ? ", " : "", what[v]);
		ok = login_refuses(r, buf, len, chunk) && ok;
	}
	free(buf);
	return ok;
}

/* A WRITE(10) of len bytes at the attack offset, without data; waits for
 * the target's first answer. */
static void write_no_data(struct sess *s, uint8_t *h, uint32_t len, uint16_t blocks,
			  struct seen *w)
{
	rw10_bhs(s, h, true, ATTACK_OFF, len);
	iscsi_put16(h + 32 + 7, blocks);
	pdu_send(s->fd, h, NULL, 0);
	watch(s, 3000, W_R2T | W_STATUS | W_REJECT, w);
}

/* 7: a write over any sane limit, and Data-Out that does not fit its R2T.
 * Refused with a CHECK CONDITION or a Reject, or closed; never GOOD. */
static bool check_bad_writes(struct run *r)
{
	static const char *const what[] = {"EDTL 4 GiB", "Data-Out with a wrong TTT",
					   "Data-Out past EDTL", "Data-Out with DataSN 5",
					   "Data-Out for no task"};
	uint32_t len = 64 << 10;
	uint8_t *data = calloc(1, len), h[BHS];
	bool ok = data || note(r, false, "out of memory");

	for (unsigned v = 0; v < 5 && data; v++) {
		uint8_t tur[16] = {0};
		struct sess s;
		struct seen w;
		bool vok = true;

		if (!attacker(r, &s)) {
			ok = false;
			break;
		}
		/* A new session's unit attention would answer the write instead. */
		scsi_bhs(&s, h, ISCSI_F_FINAL, 0, tur);
		if (scsi_good(&s, h, NULL, 0, PDU_MS)) {
			ok = note(r, false, "TEST UNIT READY: %s", s.why);
			sess_close(&s);
			break;
		}
		note(r, true, "%s%s: ", v ? ", " : "", what[v]);
		if (v == 0) {
			write_no_data(&s, h, 0xfffff000u, 0xffff, &w);
		} else if (v < 4) {
			write_no_data(&s, h, len, (uint16_t)(len / r->bs), &w);
			if (w.r2t && v == 1)
				send_data_out(&s, h, w.r2t_ttt ^ 0x5a5a5a5au, data, 0, len, 0);
			else if (w.r2t && v == 2)
				send_data_out(&s, h, w.r2t_ttt, data, len + 4096, 4096, 0);
			else if (w.r2t)
				send_data_out(&s, h, w.r2t_ttt, data, 0, len, 5);
			if ((vok = w.r2t || note(r, false, "no R2T for a plain 64 KiB write")))
				watch(&s, 3000, W_STATUS, &w);
		} else {
			memset(h, 0, BHS);
			iscsi_put32(h + 16, 0x7777);
			send_data_out(&s, h, 0x1234, data, 0, 4096, 0);
			watch(&s, 1000, W_STATUS, &w);
			if (!w.closed && !w.status && nop_ping(&s))
				vok = note(r, false, "then the session broke: %s", s.why);
		}
		sess_close(&s);
		if (!vok)
			;
		else if (w.status && !w.status_byte)
			vok = note(r, false, "GOOD status: the target took it");
		else if (v == 0 && w.r2t && !w.status)
			vok = note(r, false, "an R2T for %u bytes: it wants the data", w.r2t_len);
		else if (w.status)
			note(r, true, "%sstatus %02x sense %x/%02x", w.reject ? "Reject, " : "",
			     w.status_byte, w.sense_key, w.asc);
		else if (w.reject)
			note(r, true, "Reject %02x", w.reason);
		else if (w.closed)
			note(r, true, "closed");
		else
			vok = v == 4 ? note(r, true, "ignored")
				     : note(r, false, "no answer in 3 s");
		ok = vok && ok;
	}
	free(data);
	return ok;
}

/* One client that vanishes in the middle of a write: after the command
 * alone, halfway through its immediate data, or halfway through a
 * Data-Out; by FIN or by reset. */
static int vanish_mid_write(struct run *r, unsigned i)
{
	uint32_t len = 256 << 10, imm;
	uint8_t h[BHS], d[BHS] = {ISCSI_OP_DATA_OUT}, *data = calloc(1, len);
	struct linger l = {.l_onoff = 1, .l_linger = 0};
	struct sess s;
	struct seen w;

	if (!data || !attacker(r, &s)) {
		free(data);
		return data ? -EIO : -ENOMEM;
	}
	imm = s.imm_data ? (s.mrdsl < 16384 ? s.mrdsl : 16384) : 0;
	rw10_bhs(&s, h, true, ATTACK_OFF + (i % 16) * len, len);
	if (i % 3 == 0) {
		pdu_send(s.fd, h, NULL, 0);
	} else if (i % 3 == 1) {
		iscsi_set_dlen(h, imm);
		send_all(s.fd, h, BHS);
		send_all(s.fd, data, imm / 2);
	} else {
		pdu_send(s.fd, h, data, imm);
		watch(&s, 2000, W_R2T | W_STATUS, &w);
		if (w.r2t) {
			memcpy(d + 8, h + 8, 12);
			iscsi_put32(d + 20, w.r2t_ttt);
			iscsi_put32(d + 40, w.r2t_off);
			iscsi_set_dlen(d, w.r2t_len < s.mrdsl ? w.r2t_len : s.mrdsl);
			send_all(s.fd, d, BHS);
			send_all(s.fd, data, 1000);
		}
	}
	if (i % 2) /* a reset instead of a FIN */
		setsockopt(s.fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	sess_close(&s);
	free(data);
	return 0;
}

/* blockd's RSS once it has settled: the lowest of a few samples. */
static long settled_rss(int pid)
{
	long best = -1;

	for (unsigned i = 0; i < 5; i++, usleep(100000)) {
		long v = rss_kib(pid);

		if (v >= 0 && (best < 0 || v < best))
			best = v;
	}
	return best;
}

/* 8: many clients vanish mid-write: blockd's RSS stays where it was after a
 * warm-up (allocator caches fill during the first rounds). */
static bool check_vanish(struct run *r)
{
	unsigned warm = r->cfg.rounds / 10 + 5;
	long before = -1, after;
	int err;

	for (unsigned i = 0; i < warm + r->cfg.rounds; i++) {
		if (i == warm && r->cfg.pid > 0)
			before = settled_rss(r->cfg.pid);
		if ((err = vanish_mid_write(r, i)))
			return note(r, false, "%sround %u", err == -EIO ? ", in " : "", i);
	}
	if (before < 0)
		return note(r, true, "%u clients vanished mid-write (RSS not checked: no --pid)",
			    r->cfg.rounds);
	usleep(300000);
	after = settled_rss(r->cfg.pid);
	return note(r, after - before <= (long)r->cfg.rss_slack_mib * 1024,
		    "%u clients vanished mid-write; RSS %ld -> %ld KiB (slack %u MiB)",
		    r->cfg.rounds, before, after, r->cfg.rss_slack_mib);
}

/* 9: a client queues large READs and never reads its socket. Others are
 * served meanwhile; blockd's RSS grows by at most twice what is queued (plus
 * 32 MiB) and stops growing. */
static bool check_slow_reader(struct run *r)
{
	uint32_t len = r->cfg.slow_kib << 10;
	long before = r->cfg.pid > 0 ? rss_kib(r->cfg.pid) : -1, v[3] = {0};
	long bound = 2 * (long)r->cfg.slow_qd * r->cfg.slow_kib + 32 * 1024;
	struct login_opts o = {.target = r->cfg.target, .iname = r->cfg.iname};
	struct sess s;
	uint8_t h[BHS];
	int err;

	if (!connected(r, &s, 4096))
		return false;
	if ((err = sess_login(&s, &o))) {
		sess_close(&s);
		return note(r, false, "cannot log in: %s", s.why);
	}
	for (unsigned i = 0; i < r->cfg.slow_qd; i++) {
		rw10_bhs(&s, h, false, ATTACK_OFF + (uint64_t)(i % 8) * len, len);
		if ((err = pdu_send(s.fd, h, NULL, 0))) {
			sess_close(&s);
			return note(r, false, "sending READ %u: %s", i, strerror(-err));
		}
	}
	for (unsigned i = 0; i < 3; i++) {
		usleep(700000);
		if (!healthy_ok(r)) {
			sess_close(&s);
			return note(r, false, " while the slow client waited");
		}
		v[i] = before >= 0 ? rss_kib(r->cfg.pid) : 0;
	}
	sess_close(&s);
	note(r, true, "%u READs of %u KiB unread; the healthy session kept working", r->cfg.slow_qd,
	     r->cfg.slow_kib);
	if (before < 0)
		return note(r, true, " (RSS not checked: no --pid)");
	if (v[2] - v[1] > 4096)
		return note(r, false, "; but blockd's RSS kept growing: %ld, then %ld KiB",
			    v[1], v[2]);
	return note(r, v[2] - before <= bound && v[1] - before <= bound,
		    "; RSS +%ld KiB (bound %ld)", v[2] > v[1] ? v[2] - before : v[1] - before,
		    bound);
}

/* A login that must be refused with status 02/detail. */
static bool refused(struct run *r, const struct login_opts *o, uint8_t detail, const char *what)
{
	struct sess s;
	int err = sess_open(&s, r, o);

	sess_close(&s);
	if (err == -EACCES && s.login_class == 2 && s.login_detail == detail)
		return note(r, true, "%s%s: 02/%02x", r->msg[0] ? ", " : "", what, detail);
	return note(r, false, "%s%s: %s", r->msg[0] ? ", " : "", what, err ? s.why : "logged in");
}

/* A login that must work: a read, a logout. */
static bool admitted(struct run *r, const struct login_opts *o, const char *what)
{
	uint8_t h[BHS], d[65536];
	struct sess s;
	int err = sess_open(&s, r, o);

	if (!err) {
		rw10_bhs(&s, h, false, 0, r->bs);
		if (!(err = scsi_good(&s, h, d, r->bs, PDU_MS)))
			err = sess_logout(&s);
	}
	sess_close(&s);
	return note(r, !err, "%s%s: %s", r->msg[0] ? ", " : "", what, err ? s.why : "in");
}

/* 10: a wrong CHAP secret, no CHAP, and an initiator not on the ACL are
 * refused (02/01, 02/01, 02/02); the right secret and initiator get in. */
static bool check_auth(struct run *r)
{
	const struct cfg *c = &r->cfg;
	char wrong[300];
	bool ok = true;

	if (c->chap_target && c->chap_user && c->chap_secret) {
		struct login_opts o = {.target = c->chap_target, .iname = c->iname,
				       .chap_user = c->chap_user, .chap_secret = wrong};

		snprintf(wrong, sizeof(wrong), "%s-wrong", c->chap_secret);
		ok &= refused(r, &o, 1, "wrong CHAP secret");
		o.chap_user = NULL;
		ok &= refused(r, &o, 1, "no CHAP");
		o.chap_user = c->chap_user;
		o.chap_secret = c->chap_secret;
		ok &= admitted(r, &o, "right CHAP secret");
	}
	if (c->acl_target && c->acl_iname) {
		struct login_opts o = {.target = c->acl_target, .iname = c->iname};

		ok &= refused(r, &o, 2, "initiator not on the ACL");
		o.iname = c->acl_iname;
		ok &= admitted(r, &o, "initiator on the ACL");
	}
	return r->msg[0] ? ok : note(r, false, "needs --chap-target, --chap-user and "
				     "--chap-secret, or --acl-target and --acl-iname");
}

/* 11: logins and logouts in a row, then many sessions at once, each writing
 * and reading back its own blocks. */
static bool check_many(struct run *r)
{
	unsigned ns = r->cfg.sessions, open = 0, i;
	struct sess *ss = calloc(ns, sizeof(*ss)), s;
	bool ok = false;

	if (!ss)
		return note(r, false, "out of memory");
	for (i = 0; i < r->cfg.logins; i++) {
		if (!attacker(r, &s) || nop_ping(&s) || sess_logout(&s)) {
			sess_close(&s);
			note(r, false, "%s in login %u of %u", s.fd < 0 ? "" : s.why, i + 1,
			     r->cfg.logins);
			goto out;
		}
		sess_close(&s);
	}
	for (open = 0; open < ns; open++)
		if (!attacker(r, &ss[open])) {
			note(r, false, " (session %u of %u)", open + 1, ns);
			goto out;
		}
	for (i = 0; i < ns; i++)
		if (write_verify(&ss[i], ATTACK_OFF + (uint64_t)i * 65536, 65536, PDU_MS) ||
		    nop_ping(&ss[i]) || sess_logout(&ss[i])) {
			note(r, false, "session %u of %u, all open: %s", i + 1, ns, ss[i].why);
			goto out;
		}
	ok = note(r, true, "%u logins and logouts in a row; %u sessions at once wrote and read "
		  "back", r->cfg.logins, ns);
out:
	for (i = 0; i < open; i++)
		sess_close(&ss[i]);
	free(ss);
	return ok;
}

/* ---- main ---- */

static const struct {
	const char *name;
	bool (*fn)(struct run *r);
} checks[NCHECKS + 1] = {
	{NULL, NULL},
	{"unknown opcodes", check_opcodes},
	{"truncated headers", check_truncated},
	{"data segment over MaxRecvDataSegmentLength", check_oversize},
	{"login PDU of 16 MiB with AHS", check_login_huge},
	{"CmdSN outside the window", check_cmdsn},
	{"garbage login keys", check_login_text},
	{"bad writes and Data-Out", check_bad_writes},
	{"disconnects mid-write", check_vanish},
	{"client that never reads", check_slow_reader},
	{"CHAP and ACL refusals", check_auth},
	{"logins in a row and sessions at once", check_many},
};

static const char usage[] =
	"usage: kura-iscsicheck --port PORT --target IQN [options]\n"
	"  --host ADDR             portal address (default 127.0.0.1)\n"
	"  --lun N                 the LU to use (default 0)\n"
	"  --iname IQN             initiator name (must not be on --acl-target's ACL)\n"
	"  --chap-target IQN --chap-user USER --chap-secret SECRET   a target with CHAP\n"
	"  --acl-target IQN --acl-iname IQN   a target whose ACL holds that initiator\n"
	"  --pid PID               blockd's pid, for liveness and RSS\n"
	"  --checks LIST           which checks, like 1,3-5 (default: all, 1-11)\n"
	"  --rounds N              check 8's disconnects (default 200)\n"
	"  --logins N --sessions N check 11's logins in a row and sessions (100, 32)\n"
	"  --slow-qd N --slow-kib N  check 9's READs and their size (16, 1024; at most 4096)\n"
	"  --rss-slack MIB         RSS growth allowed in check 8 (default 4)\n"
	"  --deadline MS           for the healthy session's write and read (default 5000)\n"
	"One line per check, ok: or FAIL:; exit status 0 only when all passed.\n";

/* "1,3-5" into bits 1, 3, 4 and 5. */
static int parse_checks(const char *s, unsigned *mask)
{
	char *end;

	for (*mask = 0; *s; s = end + (*end == ',')) {
		unsigned long a = strtoul(s, &end, 10), b = a;

		if (end != s && *end == '-')
			b = strtoul(s = end + 1, &end, 10);
		if (end == s || a < 1 || b > NCHECKS || a > b || (*end && *end != ','))
			return -EINVAL;
		while (a <= b)
			*mask |= 1u << a++;
	}
	return *mask ? 0 : -EINVAL;
}

static int parse_args(int argc, char **argv, struct cfg *c)
{
	static const struct option opts[] = {
		{"host", 1, NULL, 'H'}, {"port", 1, NULL, 'p'}, {"target", 1, NULL, 't'},
		{"lun", 1, NULL, 'l'}, {"iname", 1, NULL, 'i'}, {"chap-target", 1, NULL, 'C'},
		{"chap-user", 1, NULL, 'u'}, {"chap-secret", 1, NULL, 's'},
		{"acl-target", 1, NULL, 'A'}, {"acl-iname", 1, NULL, 'a'}, {"pid", 1, NULL, 'P'},
		{"checks", 1, NULL, 'c'}, {"rounds", 1, NULL, 'r'}, {"logins", 1, NULL, 'L'},
		{"sessions", 1, NULL, 'S'}, {"slow-qd", 1, NULL, 'q'}, {"slow-kib", 1, NULL, 'k'},
		{"rss-slack", 1, NULL, 'R'}, {"deadline", 1, NULL, 'd'},
		{NULL, 0, NULL, 0},
	};
	struct {
		int opt;
		unsigned *v;
	} nums[] = {{'p', &c->port}, {'l', &c->lun}, {'r', &c->rounds}, {'L', &c->logins},
		    {'S', &c->sessions}, {'q', &c->slow_qd}, {'k', &c->slow_kib},
		    {'R', &c->rss_slack_mib}, {'d', &c->deadline_ms}};
	int o;

	*c = (struct cfg){.host = "127.0.0.1", .iname = "iqn.2026-11.io.kura:hostile-initiator",
			  .checks = ((1u << (NCHECKS + 1)) - 1) & ~1u, .rounds = 200,
			  .logins = 100, .sessions = 32, .slow_qd = 16, .slow_kib = 1024,
			  .rss_slack_mib = 4, .deadline_ms = 5000};
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		const char **str = o == 'H' ? &c->host : o == 't' ? &c->target
				   : o == 'i' ? &c->iname : o == 'C' ? &c->chap_target
				   : o == 'u' ? &c->chap_user : o == 's' ? &c->chap_secret
				   : o == 'A' ? &c->acl_target : o == 'a' ? &c->acl_iname : NULL;
		char *end = NULL;

		if (str)
			*str = optarg;
		else if (o == 'c' && parse_checks(optarg, &c->checks))
			return -EINVAL;
		else if (o == 'P')
			c->pid = (int)strtol(optarg, &end, 10);
		for (unsigned i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
			if (o == nums[i].opt)
				*nums[i].v = (unsigned)strtoul(optarg, &end, 10);
		if (o == '?' || (end && (*end || end == optarg)))
			return -EINVAL;
	}
	if (optind != argc || !c->port || c->port > 65535 || !c->target || !c->sessions ||
	    !c->slow_kib || c->slow_kib > 4096 || c->lun > 16383 || !c->deadline_ms)
		return -EINVAL;
	return 0;
}

int main(int argc, char **argv)
{
	static struct run r; /* one per process; static only for its size */
	unsigned failed = 0, ran = 0;
	bool gone = false;

	if (parse_args(argc, argv, &r.cfg)) {
		fputs(usage, stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	r.healthy.fd = -1;
	if (!md5_known_answers()) {
		puts("FAIL: kura_md5 gives wrong answers for RFC 1321's test vectors");
		return 1;
	}
	if (healthy_open(&r) || !healthy_ok(&r)) {
		printf("FAIL: no healthy session to begin with: %s\n",
		       r.healthy.fd < 0 ? r.healthy.why : r.msg);
		return 1;
	}
	for (unsigned i = 1; i <= NCHECKS; i++) {
		uint64_t t0 = now_ms();
		size_t len;
		bool ok;

		if (!(r.cfg.checks & 1u << i))
			continue;
		ran++;
		r.msg[0] = 0;
		if (gone) {
			printf("FAIL: %u %s: not run: blockd is gone or takes no session\n", i,
			       checks[i].name);
			failed++;
			continue;
		}
		ok = checks[i].fn(&r);
		/* The proof: blockd runs and the session from before still works. */
		len = strlen(r.msg);
		note(&r, true, "; afterwards ");
		if (!blockd_alive(&r)) {
			ok = false;
			gone = true;
		} else if (!healthy_ok(&r)) {
			ok = false;
			if (healthy_open(&r))
				gone = note(&r, true, "; no new session: %s", r.healthy.why);
		} else {
			r.msg[len] = 0;
		}
		printf("%s: %u %s: %s (%.1f s)\n", ok ? "ok" : "FAIL", i, checks[i].name, r.msg,
		       (double)(now_ms() - t0) / 1000);
		fflush(stdout);
		failed += !ok;
	}
	if (!gone && sess_logout(&r.healthy)) {
		printf("FAIL: the healthy session's logout: %s\n", r.healthy.why);
		failed++;
	}
	sess_close(&r.healthy);
	printf("%u of %u checks passed\n", ran - failed, ran);
	return failed ? 1 : 0;
}
