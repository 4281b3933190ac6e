/* The initiator of iscsi_initiator.h. */
#include "tests/integration/iscsi_initiator.h"


/* Appends to what the running check found; returns ret, so that a check
 * can end with return note(r, false, ...). */
bool note(struct run *r, bool ret, const char *fmt, ...)
{
	size_t l = strlen(r->msg);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->msg + l, sizeof(r->msg) - l, fmt, ap);
	va_end(ap);
	return ret;
}

int fail_why(struct sess *s, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->why, sizeof(s->why), fmt, ap);
	va_end(ap);
	return err;
}

uint64_t now_ms(void)
{
	return kura_now_ns() / 1000000;
}

void hex(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* MD5 for CHAP comes from the library, but only once it has given the
 * known answers of RFC 1321 (one block and two): a wrong hash shared by
 * both ends must not let the CHAP checks pass. */
void md5(const void *p, size_t n, char out[33])
{
	struct kura_hash_piece v = {p, n};
	uint8_t d[16];

	kura_md5(&v, 1, d);
	hex(d, 16, out);
}

bool md5_known_answers(void)
{
	const char *two = "123456789012345678901234567890123456789012345678901234567890"
			  "12345678901234567890";
	char a[33], b[33];

	md5("abc", 3, a);
	md5(two, strlen(two), b);
	return !strcmp(a, "900150983cd24fb0d6963f7d28e17f72") &&
	       !strcmp(b, "57edf4a22be3c955ac49da2e2107b67a");
}

/* ---- sockets with deadlines ---- */

int wait_fd(int fd, short ev, uint64_t deadline)
{
	for (;;) {
		struct pollfd p = {.fd = fd, .events = ev};
		uint64_t now = now_ms();
		int n;

		if (now >= deadline)
			return -ETIMEDOUT;
		n = poll(&p, 1, (int)(deadline - now));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

/* Sends or receives all of len bytes by the deadline. 0, -ETIMEDOUT, or
 * -ECONNRESET when the peer closed (EOF included). */
int io_all(int fd, bool out, void *buf, size_t len, uint64_t deadline)
{
	uint8_t *p = buf;
	int err;

	while (len) {
		ssize_t n = out ? send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT)
				: recv(fd, p, len, MSG_DONTWAIT);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n == 0 || errno == ECONNRESET || errno == EPIPE) {
			return -ECONNRESET;
		} else if (errno != EAGAIN && errno != EINTR) {
			return -errno;
		} else if ((err = wait_fd(fd, out ? POLLOUT : POLLIN, deadline))) {
			return err;
		}
	}
	return 0;
}

int send_all(int fd, const void *buf, size_t len)
{
	return io_all(fd, true, (void *)buf, len, now_ms() + PDU_MS);
}

/* A connection to the portal; rcvbuf, when not 0, keeps our receive buffer
 * small so that a client that never reads pushes back on the target soon. */
int tcp_open(const struct cfg *c, int rcvbuf)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
	int fd, one = 1, err = 0;
	socklen_t el = sizeof(err);

	if (inet_pton(AF_INET, c->host, &sa.sin_addr) != 1)
		return -EINVAL;
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	if (rcvbuf)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) && errno != EINPROGRESS)
		err = -errno;
	else if (!(err = wait_fd(fd, POLLOUT, now_ms() + PDU_MS)) &&
		 (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) || err))
		err = err ? -err : -EIO;
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

/* ---- PDUs ---- */

void pdu_free(struct pdu *p)
{
	free(p->data);
	p->data = NULL;
}

/* A BHS (its DataSegmentLength set to dlen) and dlen bytes of data, padded. */
int pdu_send(int fd, uint8_t *bhs, const void *data, uint32_t dlen)
{
	static const uint8_t zero[4];
	int err;

	iscsi_set_dlen(bhs, dlen);
	if ((err = send_all(fd, bhs, BHS)) || (dlen && (err = send_all(fd, data, dlen))))
		return err;
	return dlen & 3 ? send_all(fd, zero, 4 - (dlen & 3)) : 0;
}

int pdu_recv_raw(int fd, struct pdu *p, uint64_t deadline)
{
	uint8_t ahs[1024];
	int err;

	p->data = NULL;
	p->dlen = 0;
	if ((err = io_all(fd, false, p->bhs, BHS, deadline)) ||
	    (err = io_all(fd, false, ahs, iscsi_ahs_len(p->bhs), deadline)))
		return err;
	if ((p->dlen = iscsi_dlen(p->bhs)) > MAX_RX_DATA)
		return -EMSGSIZE;
	if (!p->dlen)
		return 0;
	if (!(p->data = malloc((p->dlen + 3) & ~3u)))
		return -ENOMEM;
	if ((err = io_all(fd, false, p->data, (p->dlen + 3) & ~3u, deadline)))
		pdu_free(p);
	return err;
}

uint32_t next_itt(struct sess *s)
{
	if (++s->itt == RSVD)
		s->itt = 1;
	return s->itt;
}

/* The next PDU that is not a target's ping (answered here) or an
 * asynchronous message (skipped). */
int sess_recv(struct sess *s, struct pdu *p, uint64_t deadline)
{
	for (;;) {
		uint8_t op, h[BHS] = {0};
		uint32_t statsn;
		int err = pdu_recv_raw(s->fd, p, deadline);

		if (err)
			return err;
		op = iscsi_opcode(p->bhs);
		statsn = iscsi_get32(p->bhs + 24);
		/* ExpStatSN acknowledges PDUs that carry a status; a login response
		 * sets it whatever it was (the target picks the first StatSN). */
		if ((op != ISCSI_OP_R2T && (op != ISCSI_OP_DATA_IN || (p->bhs[1] & ISCSI_F_S)) &&
		     (op != ISCSI_OP_NOP_IN || iscsi_itt(p->bhs) != RSVD) &&
		     iscsi_sn_le(s->expstatsn, statsn)) || op == ISCSI_OP_LOGIN_RSP)
			s->expstatsn = statsn + 1;
		if (op == ISCSI_OP_ASYNC) {
			pdu_free(p);
			continue;
		}
		if (op != ISCSI_OP_NOP_IN || iscsi_itt(p->bhs) != RSVD)
			return 0;
		pdu_free(p);
		if (iscsi_w20(p->bhs) == RSVD)
			continue; /* only news of ExpCmdSN and MaxCmdSN */
		/* A ping: answer with its TTT, immediate, no CmdSN of its own. */
		h[0] = ISCSI_F_IMMEDIATE | ISCSI_OP_NOP_OUT;
		h[1] = ISCSI_F_FINAL;
		memcpy(h + 8, p->bhs + 8, 8);
		iscsi_put32(h + 16, RSVD);
		iscsi_put32(h + 20, iscsi_w20(p->bhs));
		iscsi_put32(h + 24, s->cmdsn);
		iscsi_put32(h + 28, s->expstatsn);
		if ((err = pdu_send(s->fd, h, NULL, 0)))
			return err;
	}
}

/* Reads what the target sends for up to ms, until the connection closes or
 * a PDU whose kind is in `stop` arrives. */
void watch(struct sess *s, unsigned ms, unsigned stop, struct seen *w)
{
	uint64_t deadline = now_ms() + ms;
	struct pdu p;
	int err;

	memset(w, 0, sizeof(*w));
	while (!(err = sess_recv(s, &p, deadline))) {
		uint8_t op = iscsi_opcode(p.bhs), *h = p.bhs;
		unsigned hit = 0;

		w->npdus++;
		if (op == ISCSI_OP_REJECT) {
			w->reject = true;
			w->reason = h[2];
			hit = W_REJECT;
		} else if (op == ISCSI_OP_SCSI_RSP ||
			   (op == ISCSI_OP_DATA_IN && (h[1] & ISCSI_F_S))) {
			uint32_t sl = p.dlen >= 2 ? iscsi_get16(p.data) : 0;

			w->status = true;
			w->status_byte = h[3];
			if (op == ISCSI_OP_SCSI_RSP && sl >= 14 && sl <= p.dlen - 2) {
				bool desc = (p.data[2] & 0x7f) >= 0x72;

				w->sense_key = p.data[2 + (desc ? 1 : 2)] & 15;
				w->asc = p.data[2 + (desc ? 2 : 12)];
			}
			hit = W_STATUS;
		} else if (op == ISCSI_OP_R2T) {
			w->r2t = true;
			w->r2t_ttt = iscsi_w20(h);
			w->r2t_off = iscsi_get32(h + 40);
			w->r2t_len = iscsi_get32(h + 44);
			hit = W_R2T;
		} else if (op == ISCSI_OP_LOGIN_RSP) {
			w->login = true;
			w->login_class = h[36];
			w->login_detail = h[37];
			hit = W_LOGIN;
		} else if (op != ISCSI_OP_DATA_IN) {
			w->other = true;
		}
		pdu_free(&p);
		if (hit & stop)
			return;
	}
	w->closed = err != -ETIMEDOUT;
}

/* ---- text keys ---- */


void kv_add(struct kv *k, const char *key, const char *val)
{
	int n = snprintf(k->buf + k->len, sizeof(k->buf) - k->len, "%s=%s", key, val);

	if (n >= 0 && (size_t)n < sizeof(k->buf) - k->len)
		k->len += (uint32_t)n + 1; /* the NUL ends the pair */
}

/* The value of key among NUL-terminated pairs; NULL if absent. */
static const char *kv_get(const uint8_t *data, uint32_t dlen, const char *key, char *out,
			  size_t cap)
{
	size_t kl = strlen(key);

	for (uint32_t pos = 0; pos < dlen;) {
		const char *pair = (const char *)data + pos, *z = memchr(pair, 0, dlen - pos);
		size_t n = z ? (size_t)(z - pair) : dlen - pos;

		if (n > kl && !memcmp(pair, key, kl) && pair[kl] == '=') {
			size_t vl = n - kl - 1 < cap - 1 ? n - kl - 1 : cap - 1;

			memcpy(out, pair + kl + 1, vl);
			out[vl] = 0;
			return out;
		}
		pos += (uint32_t)n + 1;
	}
	return NULL;
}

int hexval(char c)
{
	static const char d[] = "0123456789abcdef";

	return isxdigit((unsigned char)c) ? (int)(strchr(d, tolower((unsigned char)c)) - d) : -1;
}

/* A binary value in hex (0x...), the form targets use for CHAP_C; base64
 * (0b...) is not understood. Returns its length or -EINVAL. */
int parse_hex(const char *s, uint8_t *out, size_t cap)
{
	size_t l, n = 0;

	if (s[0] != '0' || (s[1] != 'x' && s[1] != 'X') || !(l = strlen(s += 2)))
		return -EINVAL;
	for (size_t i = 0; i < l; n++) {
		/* An odd count of digits: the first one is a byte of its own. */
		int hi = i == 0 && l % 2 ? 0 : hexval(s[i++]);
		int lo = hexval(s[i++]);

		if (hi < 0 || lo < 0 || n >= cap)
			return -EINVAL;
		out[n] = (uint8_t)(hi << 4 | lo);
	}
	return (int)n;
}

/* ---- login ---- */


void sess_init(struct sess *s, struct run *r)
{
	uint32_t n = ++r->next_isid;

	memset(s, 0, sizeof(*s));
	s->r = r;
	s->fd = -1;
	s->isid[0] = 0x80; /* ISID type "random", then our pid and a count */
	s->isid[1] = 0x6b;
	iscsi_put32(s->isid + 2, n ^ (uint32_t)getpid() << 12);
	s->itt = n << 16;
	s->cmdsn = 0x1000 + n * 7;
	s->mrdsl = 8192; /* RFC 7143's defaults until the target says otherwise */
	s->first_burst = 65536;
	s->imm_data = true;
}

void sess_close(struct sess *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

void login_bhs(struct sess *s, uint8_t *h, uint8_t flags)
{
	memset(h, 0, BHS);
	h[0] = ISCSI_F_IMMEDIATE | ISCSI_OP_LOGIN_REQ;
	h[1] = flags;
	memcpy(h + 8, s->isid, 6);
	iscsi_put32(h + 16, s->itt);
	iscsi_put32(h + 24, s->cmdsn);
	iscsi_put32(h + 28, s->expstatsn);
}

/* Our offer for the operational stage. */
static const char op_keys[] =
	"HeaderDigest=None\0DataDigest=None\0MaxConnections=1\0InitialR2T=Yes\0"
	"ImmediateData=Yes\0MaxBurstLength=262144\0FirstBurstLength=65536\0"
	"DefaultTime2Wait=0\0DefaultTime2Retain=0\0MaxOutstandingR2T=1\0DataPDUInOrder=Yes\0"
	"DataSequenceInOrder=Yes\0ErrorRecoveryLevel=0\0MaxRecvDataSegmentLength=262144";

/* InitialR2T is Yes whatever the target says (we offer Yes; the result is
 * the OR), so only these matter. */
void take_op_keys(struct sess *s, const uint8_t *d, uint32_t n)
{
	char v[64];

	if (kv_get(d, n, "MaxRecvDataSegmentLength", v, sizeof(v)))
		s->mrdsl = (uint32_t)strtoul(v, NULL, 0);
	if (kv_get(d, n, "FirstBurstLength", v, sizeof(v)))
		s->first_burst = (uint32_t)strtoul(v, NULL, 0);
	if (kv_get(d, n, "ImmediateData", v, sizeof(v)))
		s->imm_data = !strcmp(v, "Yes");
	if (s->mrdsl < 512) /* nonsense must not make us send empty PDUs forever */
		s->mrdsl = 512;
}

/* CHAP_N and CHAP_R for the challenge among a target's keys. */
int chap_answer(struct sess *s, const struct login_opts *o, const uint8_t *d,
		       uint32_t n, struct kv *k)
{
	char id[16], chal[2100], alg[16] = "", r[35] = "0x";
	uint8_t msg[1 + 256 + 1024];
	size_t sl = strlen(o->chap_secret);
	int cl;

	if (!kv_get(d, n, "CHAP_A", alg, sizeof(alg)) || strcmp(alg, "5"))
		return fail_why(s, -EPROTO, "target chose CHAP_A=%s; we offered 5 (MD5)", alg);
	if (!kv_get(d, n, "CHAP_I", id, sizeof(id)) || !kv_get(d, n, "CHAP_C", chal, sizeof(chal)))
		return fail_why(s, -EPROTO, "CHAP challenge without CHAP_I or CHAP_C");
	if (sl > 256 || (cl = parse_hex(chal, msg + 1 + sl, 1024)) < 0)
		return fail_why(s, -EPROTO, "a CHAP_C we cannot read: %.40s", chal);
	msg[0] = (uint8_t)strtoul(id, NULL, 0);
	memcpy(msg + 1, o->chap_secret, sl);
	md5(msg, 1 + sl + (size_t)cl, r + 2);
	kv_add(k, "CHAP_N", o->chap_user);
	kv_add(k, "CHAP_R", r);
	return 0;
}

/* Logs in on an open connection: security stage (AuthMethod None, or CHAP
 * with MD5), operational stage, full feature phase. 0: logged in;
 * -EACCES: refused (s->login_class and detail); other -errno: a protocol
 * error or a closed connection (s->why says which). */
int sess_login(struct sess *s, const struct login_opts *o)
{
	uint8_t h[BHS], stage = 0, flags;
	struct kv k = {.len = 0};
	bool chap = o->chap_user != NULL, chap_a_sent = false, op_sent = false;
	uint64_t deadline = now_ms() + 4 * PDU_MS;
	char v[16];
	int err;

	kv_add(&k, "InitiatorName", o->iname);
	kv_add(&k, "SessionType", "Normal");
	kv_add(&k, "TargetName", o->target);
	kv_add(&k, "AuthMethod", chap ? "CHAP" : "None");
	login_bhs(s, h, ISCSI_F_TRANSIT | 1);
	for (unsigned round = 0; round < 12; round++) {
		struct pdu p;

		if ((err = pdu_send(s->fd, h, k.buf, k.len)))
			return fail_why(s, err, "sending a login request: %s", strerror(-err));
		if ((err = sess_recv(s, &p, deadline)))
			return fail_why(s, err, "waiting for a login response: %s", strerror(-err));
		s->login_class = p.bhs[36];
		s->login_detail = p.bhs[37];
		k.len = 0;
		flags = ISCSI_F_TRANSIT | 1; /* in the security stage: try to move on */
		if (iscsi_opcode(p.bhs) != ISCSI_OP_LOGIN_RSP || iscsi_itt(p.bhs) != s->itt) {
			err = fail_why(s, -EPROTO, "opcode 0x%02x answered a login request",
				       iscsi_opcode(p.bhs));
		} else if (s->login_class) {
			err = fail_why(s, -EACCES, "login refused with status %02x/%02x",
				       s->login_class, s->login_detail);
		} else if (p.bhs[1] & ISCSI_F_CONTINUE) {
			flags = (uint8_t)(stage << 2); /* the target has more keys: ask for them */
		} else {
			take_op_keys(s, p.data, p.dlen);
			if (p.bhs[1] & ISCSI_F_TRANSIT)
				stage = p.bhs[1] & 3;
			if (stage == 0 && chap && kv_get(p.data, p.dlen, "CHAP_C", v, sizeof(v))) {
				err = chap_answer(s, o, p.data, p.dlen, &k);
			} else if (stage == 0 && chap && !chap_a_sent) {
				kv_add(&k, "CHAP_A", "5");
				chap_a_sent = true;
				flags = 0; /* the challenge comes before any transit */
			} else if (stage == 1) {
				if (!op_sent)
					memcpy(k.buf, op_keys, k.len = sizeof(op_keys));
				op_sent = true;
				flags = ISCSI_F_TRANSIT | 1 << 2 | 3;
			}
		}
		pdu_free(&p);
		if (err || stage == 3)
			return err;
		login_bhs(s, h, flags);
	}
	return fail_why(s, -EPROTO, "login did not finish in 12 rounds");
}

int sess_open(struct sess *s, struct run *r, const struct login_opts *o)
{
	int err;

	sess_init(s, r);
	if ((s->fd = tcp_open(&r->cfg, 0)) < 0) {
		err = s->fd;
		s->fd = -1;
		return fail_why(s, err, "cannot connect: %s", strerror(-err));
	}
	if ((err = sess_login(s, o)))
		sess_close(s);
	return err;
}

/* A connection, not logged in; false with the reason noted. */
bool connected(struct run *r, struct sess *s, int rcvbuf)
{
	sess_init(s, r);
	if ((s->fd = tcp_open(&r->cfg, rcvbuf)) >= 0)
		return true;
	return note(r, false, "cannot connect: %s", strerror(-s->fd));
}

/* A session to the main target as cfg.iname; false with the reason noted. */
bool attacker(struct run *r, struct sess *s)
{
	struct login_opts o = {.target = r->cfg.target, .iname = r->cfg.iname};

	if (!sess_open(s, r, &o))
		return true;
	return note(r, false, "cannot log in: %s", s->why);
}

/* ---- full feature phase ---- */

void scsi_bhs(struct sess *s, uint8_t *h, uint8_t flags, uint32_t edtl, const uint8_t *cdb)
{
	memset(h, 0, BHS);
	h[0] = ISCSI_OP_SCSI_CMD;
	h[1] = (uint8_t)(flags | 1); /* task attribute SIMPLE */
	if (s->r->cfg.lun < 256) {
		h[9] = (uint8_t)s->r->cfg.lun; /* peripheral device addressing */
	} else {
		h[8] = (uint8_t)(0x40 | s->r->cfg.lun >> 8); /* flat space addressing */
		h[9] = (uint8_t)s->r->cfg.lun;
	}
	iscsi_put32(h + 16, next_itt(s));
	iscsi_put32(h + 20, edtl);
	iscsi_put32(h + 24, s->cmdsn++);
	iscsi_put32(h + 28, s->expstatsn);
	memcpy(h + 32, cdb, 16);
}

/* A READ(10) or WRITE(10) command header for len bytes at byte offset off. */
void rw10_bhs(struct sess *s, uint8_t *h, bool write, uint64_t off, uint32_t len)
{
	uint8_t cdb[16] = {write ? 0x2a : 0x28};

	iscsi_put32(cdb + 2, (uint32_t)(off / s->r->bs));
	iscsi_put16(cdb + 7, (uint16_t)(len / s->r->bs));
	scsi_bhs(s, h, ISCSI_F_FINAL | (write ? ISCSI_F_WRITE : ISCSI_F_READ), len, cdb);
}

/* Data-Out PDUs with len bytes of data for buffer offset off, answering the
 * R2T with tag ttt; DataSN counts from sn. */
int send_data_out(struct sess *s, const uint8_t *cmd, uint32_t ttt, const uint8_t *data,
			 uint32_t off, uint32_t len, uint32_t sn)
{
	int err = 0;

	for (uint32_t done = 0, n; done < len && !err; done += n) {
		uint8_t h[BHS] = {ISCSI_OP_DATA_OUT};

		n = len - done < s->mrdsl ? len - done : s->mrdsl;
		h[1] = done + n == len ? ISCSI_F_FINAL : 0;
		memcpy(h + 8, cmd + 8, 12); /* LUN and ITT */
		iscsi_put32(h + 20, ttt);
		iscsi_put32(h + 28, s->expstatsn);
		iscsi_put32(h + 36, sn++);
		iscsi_put32(h + 40, off + done);
		err = pdu_send(s->fd, h, data + done, n);
	}
	return err;
}

/* One SCSI command (h built by scsi_bhs or rw10_bhs): reads into or writes
 * from buf, len bytes, as its flags say. Returns 0 with the status in
 * *status (sense key in *key), or -errno with s->why. */
int scsi_cmd(struct sess *s, uint8_t *h, uint8_t *buf, uint32_t len, uint8_t *status,
		    uint8_t *key, unsigned ms)
{
	bool write = h[1] & ISCSI_F_WRITE, read = h[1] & ISCSI_F_READ;
	uint32_t itt = iscsi_itt(h), imm = 0;
	uint64_t deadline = now_ms() + ms;
	struct pdu p;
	int err;

	if (write && s->imm_data) {
		imm = len < s->first_burst ? len : s->first_burst;
		imm = imm < s->mrdsl ? imm : s->mrdsl;
	}
	/* InitialR2T=Yes: after the immediate data only R2Ts bring more. */
	if ((err = pdu_send(s->fd, h, buf, imm)))
		return fail_why(s, err, "sending a command: %s", strerror(-err));
	*key = 0;
	while (!(err = sess_recv(s, &p, deadline))) {
		uint8_t op = iscsi_opcode(p.bhs);
		uint32_t off = iscsi_get32(p.bhs + 40), n = iscsi_get32(p.bhs + 44);

		if (iscsi_itt(p.bhs) != itt || op == ISCSI_OP_REJECT) {
			err = fail_why(s, -EPROTO, "opcode 0x%02x (reason 0x%02x) for task 0x%x, "
				       "ours is 0x%x", op, p.bhs[2], iscsi_itt(p.bhs), itt);
		} else if (op == ISCSI_OP_R2T && write) {
			if (off > len || n > len - off || !n)
				err = fail_why(s, -EPROTO, "R2T for %u bytes at %u of %u", n, off,
					       len);
			else if ((err = send_data_out(s, h, iscsi_w20(p.bhs), buf + off, off, n,
						       0)))
				fail_why(s, err, "sending Data-Out: %s", strerror(-err));
		} else if (op == ISCSI_OP_DATA_IN && read) {
			if (off > len || p.dlen > len - off)
				err = fail_why(s, -EPROTO, "Data-In of %u bytes at %u of %u",
					       p.dlen, off, len);
			else if (p.dlen)
				memcpy(buf + off, p.data, p.dlen);
			if (!err && (p.bhs[1] & ISCSI_F_S)) {
				*status = p.bhs[3];
				err = 1;
			}
		} else if (op == ISCSI_OP_SCSI_RSP) {
			uint32_t sl = p.dlen >= 2 ? iscsi_get16(p.data) : 0;

			*status = p.bhs[3];
			if (sl >= 14 && sl <= p.dlen - 2)
				*key = p.data[2 + ((p.data[2] & 0x7f) >= 0x72 ? 1 : 2)] & 15;
			err = p.bhs[2] ? fail_why(s, -EPROTO, "SCSI response 0x%02x", p.bhs[2]) : 1;
		} else {
			err = fail_why(s, -EPROTO, "unexpected opcode 0x%02x", op);
		}
		pdu_free(&p);
		if (err)
			return err > 0 ? 0 : err;
	}
	return fail_why(s, err, "waiting for the answer to CDB 0x%02x: %s", h[32], strerror(-err));
}

/* A command that must end GOOD. A unit attention (new session, reset,
 * resize) is reported once per event: the command is simply sent again. */
int scsi_good(struct sess *s, uint8_t *h, uint8_t *buf, uint32_t len, unsigned ms)
{
	uint8_t status = 0, key = 0;
	int err;

	for (unsigned i = 0; i < 4; i++) {
		if ((err = scsi_cmd(s, h, buf, len, &status, &key, ms)))
			return err;
		if (status != 2 || key != 6)
			break;
		iscsi_put32(h + 16, next_itt(s));
		iscsi_put32(h + 24, s->cmdsn++);
		iscsi_put32(h + 28, s->expstatsn);
	}
	if (!status)
		return 0;
	return fail_why(s, -EIO, "CDB 0x%02x: SCSI status 0x%02x, sense key %x", h[32], status,
			key);
}

/* Writes or reads len bytes at byte offset off, in commands of 1 MiB at most. */
int scsi_rw(struct sess *s, bool write, uint64_t off, uint8_t *buf, uint32_t len,
		   unsigned ms)
{
	int err = 0;

	for (uint32_t done = 0, n; done < len && !err; done += n) {
		uint8_t h[BHS];

		n = len - done < (1u << 20) ? len - done : 1u << 20;
		rw10_bhs(s, h, write, off + done, n);
		err = scsi_good(s, h, buf + done, n, ms);
	}
	return err;
}

int read_capacity(struct sess *s)
{
	uint8_t h[BHS], cdb[16] = {0x25}, d[8];
	uint64_t bytes;
	int err;

	scsi_bhs(s, h, ISCSI_F_FINAL | ISCSI_F_READ, 8, cdb);
	if ((err = scsi_good(s, h, d, 8, PDU_MS)))
		return err;
	s->r->bs = iscsi_get32(d + 4);
	bytes = ((uint64_t)iscsi_get32(d) + 1) * s->r->bs;
	if (s->r->bs < 512 || s->r->bs > 65536 || s->r->bs & (s->r->bs - 1))
		return fail_why(s, -EPROTO, "block size %u", s->r->bs);
	if (bytes < ATTACK_OFF + (32u << 20))
		return fail_why(s, -ENOSPC, "the LU has %llu bytes; the checks need 40 MiB",
				(unsigned long long)bytes);
	return 0;
}

/* A NOP-Out that asks for an answer, with ping data to echo. */
int nop_ping(struct sess *s)
{
	uint8_t h[BHS] = {ISCSI_OP_NOP_OUT, ISCSI_F_FINAL}, data[64];
	uint32_t itt = next_itt(s);
	struct pdu p;
	int err;

	for (unsigned i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(itt + i);
	iscsi_put32(h + 16, itt);
	iscsi_put32(h + 20, RSVD);
	iscsi_put32(h + 24, s->cmdsn++);
	iscsi_put32(h + 28, s->expstatsn);
	if ((err = pdu_send(s->fd, h, data, sizeof(data))) ||
	    (err = sess_recv(s, &p, now_ms() + PDU_MS)))
		return fail_why(s, err, "NOP-Out: %s", strerror(-err));
	if (iscsi_opcode(p.bhs) != ISCSI_OP_NOP_IN || iscsi_itt(p.bhs) != itt ||
	    p.dlen != sizeof(data) || memcmp(p.data, data, sizeof(data)))
		err = fail_why(s, -EPROTO, "NOP-Out answered by opcode 0x%02x, %u bytes",
			       iscsi_opcode(p.bhs), p.dlen);
	pdu_free(&p);
	return err;
}

int sess_logout(struct sess *s)
{
	/* Reason 0: close the session. */
	uint8_t h[BHS] = {ISCSI_F_IMMEDIATE | ISCSI_OP_LOGOUT_REQ, ISCSI_F_FINAL};
	uint32_t itt = next_itt(s);
	struct pdu p;
	int err;

	iscsi_put32(h + 16, itt);
	iscsi_put32(h + 24, s->cmdsn);
	iscsi_put32(h + 28, s->expstatsn);
	if ((err = pdu_send(s->fd, h, NULL, 0)) || (err = sess_recv(s, &p, now_ms() + PDU_MS)))
		return fail_why(s, err, "Logout: %s", strerror(-err));
	if (iscsi_opcode(p.bhs) != ISCSI_OP_LOGOUT_RSP || iscsi_itt(p.bhs) != itt || p.bhs[2])
		err = fail_why(s, -EPROTO, "Logout answered by opcode 0x%02x, response %u",
			       iscsi_opcode(p.bhs), p.bhs[2]);
	pdu_free(&p);
	return err;
}

/* Writes a pattern no earlier write left there at off, reads it back and
 * compares, all within ms. */
int write_verify(struct sess *s, uint64_t off, uint32_t len, unsigned ms)
{
	uint8_t *w = malloc(len), *rd = malloc(len);
	uint64_t x = ((uint64_t)++s->r->pattern_seq << 32 ^ off) * 0x9e3779b97f4a7c15ull + 1;
	uint64_t deadline = now_ms() + ms;
	int err = -ENOMEM;

	if (w && rd) {
		for (uint32_t i = 0; i < len; i += 8) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			memcpy(w + i, &x, len - i < 8 ? len - i : 8);
		}
		memset(rd, 0xa5, len);
		err = scsi_rw(s, true, off, w, len, ms);
		if (!err && now_ms() >= deadline)
			err = fail_why(s, -ETIMEDOUT, "the write took over %u ms", ms);
		if (!err)
			err = scsi_rw(s, false, off, rd, len, (unsigned)(deadline - now_ms()));
		if (!err && memcmp(w, rd, len))
			err = fail_why(s, -EIO, "what was read back differs from what was written");
	}
	free(w);
	free(rd);
	return err;
}

/* ---- the proof after each attack ---- */

long rss_kib(int pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	if (!(f = fopen(path, "r")))
		return -1;
	while (fgets(line, sizeof(line), f) && sscanf(line, "VmRSS: %ld kB", &kib) != 1)
		;
	fclose(f);
	return kib;
}

/* blockd runs (when its pid is known: a zombie does not count) and its
 * portal accepts connections. Notes why not. */
bool blockd_alive(struct run *r)
{
	char path[64], st[512] = "";
	FILE *f;
	int fd;

	if (r->cfg.pid > 0) {
		snprintf(path, sizeof(path), "/proc/%d/stat", r->cfg.pid);
		if ((f = fopen(path, "r"))) {
			if (!fgets(st, sizeof(st), f))
				st[0] = 0;
			fclose(f);
		}
		if (!strstr(st, ") ") || strstr(st, ") ")[2] == 'Z')
			return note(r, false, "blockd (pid %d) is gone", r->cfg.pid);
	}
	if ((fd = tcp_open(&r->cfg, 0)) < 0)
		return note(r, false, "the portal refuses connections: %s", strerror(-fd));
	close(fd);
	return true;
}

/* The healthy session writes a fresh pattern and reads it back in time. */
bool healthy_ok(struct run *r)
{
	if (r->healthy.fd < 0)
		return note(r, false, "the healthy session is closed");
	if (write_verify(&r->healthy, 0, HEALTHY_LEN, r->cfg.deadline_ms))
		return note(r, false, "the healthy session failed: %s", r->healthy.why);
	return true;
}

/* A new healthy session (at the start, or after a check broke the old one). */
int healthy_open(struct run *r)
{
	struct login_opts o = {.target = r->cfg.target, .iname = r->cfg.iname};
	int err;

	sess_close(&r->healthy);
	if (!(err = sess_open(&r->healthy, r, &o)) && (err = read_capacity(&r->healthy)))
		sess_close(&r->healthy);
	return err;
}
