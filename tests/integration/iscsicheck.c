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
#include "common/util.h"
#include "iscsi-target/hash.h"
#include "iscsi-target/pdu.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NCHECKS 11
#define PDU_MS 5000u               /* one expected PDU must arrive within this */
#define MAX_RX_DATA (16u << 20)    /* larger data segments from a target are an error */
#define HEALTHY_LEN (256u << 10)   /* the healthy pattern: immediate data, then R2T */
#define ATTACK_OFF (8ull << 20)    /* attacks write from here on, away from the pattern */
#define RSVD ISCSI_RSVD_TAG
#define BHS KURA_ISCSI_BHS

struct cfg {
	const char *host, *target;
	unsigned port, lun;
	const char *iname;          /* every session's initiator name */
	const char *chap_target, *chap_user, *chap_secret;
	const char *acl_target, *acl_iname; /* acl_iname is on the ACL, iname is not */
	int pid;                    /* blockd, for liveness and RSS; 0 unknown */
	unsigned checks;            /* bit n: check n runs */
	unsigned rounds, logins, sessions, slow_qd, slow_kib, rss_slack_mib, deadline_ms;
};

struct run;

struct sess {
	struct run *r;
	int fd;
	uint8_t isid[6];
	uint32_t itt, cmdsn, expstatsn;
	uint32_t mrdsl, first_burst; /* what the target accepts, from the login */
	bool imm_data;
	uint8_t login_class, login_detail;
	char why[256];              /* the last failure */
};

struct run {
	struct cfg cfg;
	struct sess healthy;        /* logged in before the attacks, used after each */
	uint32_t next_isid;         /* each connection its own ISID: no session reinstatement */
	uint32_t pattern_seq;
	uint32_t bs;                /* logical block size, from READ CAPACITY */
	char msg[1024];             /* what the running check found */
};

struct pdu {
	uint8_t bhs[BHS];
	uint8_t *data;
	uint32_t dlen;
};

/* What a connection said while we watched it. */
struct seen {
	bool closed, reject, status, r2t, login, other;
	uint8_t reason, status_byte, sense_key, asc, login_class, login_detail;
	uint32_t r2t_ttt, r2t_off, r2t_len;
	unsigned npdus;
};

/* Appends to what the running check found; returns ret, so that a check
 * can end with return note(r, false, ...). */
static bool note(struct run *r, bool ret, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static bool note(struct run *r, bool ret, const char *fmt, ...)
{
	size_t l = strlen(r->msg);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->msg + l, sizeof(r->msg) - l, fmt, ap);
	va_end(ap);
	return ret;
}

static int fail_why(struct sess *s, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail_why(struct sess *s, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->why, sizeof(s->why), fmt, ap);
	va_end(ap);
	return err;
}

static uint64_t now_ms(void)
{
	return kura_now_ns() / 1000000;
}

static void hex(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* MD5 for CHAP comes from the library, but only once it has given the
 * known answers of RFC 1321 (one block and two): a wrong hash shared by
 * both ends must not let the CHAP checks pass. */
static void md5(const void *p, size_t n, char out[33])
{
	struct kura_hash_piece v = {p, n};
	uint8_t d[16];

	kura_md5(&v, 1, d);
	hex(d, 16, out);
}

static bool md5_known_answers(void)
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

static int wait_fd(int fd, short ev, uint64_t deadline)
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
static int io_all(int fd, bool out, void *buf, size_t len, uint64_t deadline)
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

static int send_all(int fd, const void *buf, size_t len)
{
	return io_all(fd, true, (void *)buf, len, now_ms() + PDU_MS);
}

/* A connection to the portal; rcvbuf, when not 0, keeps our receive buffer
 * small so that a client that never reads pushes back on the target soon. */
static int tcp_open(const struct cfg *c, int rcvbuf)
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

static void pdu_free(struct pdu *p)
{
	free(p->data);
	p->data = NULL;
}

/* A BHS (its DataSegmentLength set to dlen) and dlen bytes of data, padded. */
static int pdu_send(int fd, uint8_t *bhs, const void *data, uint32_t dlen)
{
	static const uint8_t zero[4];
	int err;

	iscsi_set_dlen(bhs, dlen);
	if ((err = send_all(fd, bhs, BHS)) || (dlen && (err = send_all(fd, data, dlen))))
		return err;
	return dlen & 3 ? send_all(fd, zero, 4 - (dlen & 3)) : 0;
}

static int pdu_recv_raw(int fd, struct pdu *p, uint64_t deadline)
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

static uint32_t next_itt(struct sess *s)
{
	if (++s->itt == RSVD)
		s->itt = 1;
	return s->itt;
}

/* The next PDU that is not a target's ping (answered here) or an
 * asynchronous message (skipped). */
static int sess_recv(struct sess *s, struct pdu *p, uint64_t deadline)
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
#define W_STATUS 1u /* a SCSI status: SCSI Response, or Data-In with S */
#define W_R2T 2u
#define W_REJECT 4u
#define W_LOGIN 8u
static void watch(struct sess *s, unsigned ms, unsigned stop, struct seen *w)
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

struct kv {
	char buf[8192];
	uint32_t len;
};

static void kv_add(struct kv *k, const char *key, const char *val)
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

static int hexval(char c)
{
	static const char d[] = "0123456789abcdef";

	return isxdigit((unsigned char)c) ? (int)(strchr(d, tolower((unsigned char)c)) - d) : -1;
}

/* A binary value in hex (0x...), the form targets use for CHAP_C; base64
 * (0b...) is not understood. Returns its length or -EINVAL. */
static int parse_hex(const char *s, uint8_t *out, size_t cap)
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

struct login_opts {
	const char *target, *iname;
	const char *chap_user, *chap_secret; /* NULL: AuthMethod=None */
};

static void sess_init(struct sess *s, struct run *r)
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

static void sess_close(struct sess *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

static void login_bhs(struct sess *s, uint8_t *h, uint8_t flags)
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
static void take_op_keys(struct sess *s, const uint8_t *d, uint32_t n)
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
static int chap_answer(struct sess *s, const struct login_opts *o, const uint8_t *d,
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
static int sess_login(struct sess *s, const struct login_opts *o)
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

static int sess_open(struct sess *s, struct run *r, const struct login_opts *o)
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
static bool connected(struct run *r, struct sess *s, int rcvbuf)
{
	sess_init(s, r);
	if ((s->fd = tcp_open(&r->cfg, rcvbuf)) >= 0)
		return true;
	return note(r, false, "cannot connect: %s", strerror(-s->fd));
}

/* A session to the main target as cfg.iname; false with the reason noted. */
static bool attacker(struct run *r, struct sess *s)
{
	struct login_opts o = {.target = r->cfg.target, .iname = r->cfg.iname};

	if (!sess_open(s, r, &o))
		return true;
	return note(r, false, "cannot log in: %s", s->why);
}

/* ---- full feature phase ---- */

static void scsi_bhs(struct sess *s, uint8_t *h, uint8_t flags, uint32_t edtl, const uint8_t *cdb)
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
static void rw10_bhs(struct sess *s, uint8_t *h, bool write, uint64_t off, uint32_t len)
{
	uint8_t cdb[16] = {write ? 0x2a : 0x28};

	iscsi_put32(cdb + 2, (uint32_t)(off / s->r->bs));
	iscsi_put16(cdb + 7, (uint16_t)(len / s->r->bs));
	scsi_bhs(s, h, ISCSI_F_FINAL | (write ? ISCSI_F_WRITE : ISCSI_F_READ), len, cdb);
}

/* Data-Out PDUs with len bytes of data for buffer offset off, answering the
 * R2T with tag ttt; DataSN counts from sn. */
static int send_data_out(struct sess *s, const uint8_t *cmd, uint32_t ttt, const uint8_t *data,
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
static int scsi_cmd(struct sess *s, uint8_t *h, uint8_t *buf, uint32_t len, uint8_t *status,
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
static int scsi_good(struct sess *s, uint8_t *h, uint8_t *buf, uint32_t len, unsigned ms)
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
static int scsi_rw(struct sess *s, bool write, uint64_t off, uint8_t *buf, uint32_t len,
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

static int read_capacity(struct sess *s)
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
static int nop_ping(struct sess *s)
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

static int sess_logout(struct sess *s)
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
static int write_verify(struct sess *s, uint64_t off, uint32_t len, unsigned ms)
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

static long rss_kib(int pid)
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
static bool blockd_alive(struct run *r)
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
static bool healthy_ok(struct run *r)
{
	if (r->healthy.fd < 0)
		return note(r, false, "the healthy session is closed");
	if (write_verify(&r->healthy, 0, HEALTHY_LEN, r->cfg.deadline_ms))
		return note(r, false, "the healthy session failed: %s", r->healthy.why);
	return true;
}

/* A new healthy session (at the start, or after a check broke the old one). */
static int healthy_open(struct run *r)
{
	struct login_opts o = {.target = r->cfg.target, .iname = r->cfg.iname};
	int err;

	sess_close(&r->healthy);
	if (!(err = sess_open(&r->healthy, r, &o)) && (err = read_capacity(&r->healthy)))
		sess_close(&r->healthy);
	return err;
}

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
			len += (uint32_t)sprintf((char *)buf + len, "NoEqualsSignHere") + 1;
		else if (v == 1)
			len--; /* the last pair loses its NUL */
		else if (v == 2 || v == 3)
			len += (uint32_t)sprintf((char *)buf + len, "InitiatorAlias=%0*d", big,
						 0) + 1, chunk = v == 2 ? len : 8192;
		else if (v == 6)
			len += (uint32_t)sprintf((char *)buf + len, "=value") + 1;
		else if (v == 7)
			len += (uint32_t)sprintf((char *)buf + len, "%01000d=1", 0) + 1;
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
