/* iSCSI connections: framing received PDUs (header, AHS, digests, data
 * segments straight into task buffers when large), sending queued PDUs in
 * batches with one sendmsg, the login phase, and closing. */
#include "iscsi-target/iscsi_int.h"

#include "common/crc.h"
#include "common/log.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CONNS 1024u
#define DIRECT_MIN (64u << 10) /* data segments this large are received in place */
#define LOGIN_DSL 8192u

static void rx_process(struct iconn *c);
static void tx_kick(struct iconn *c);

static uint32_t digest_init(void) { return 0xffffffffu; }
static uint32_t digest_add(uint32_t crc, const void *p, size_t n)
{
	return kura_crc32c(crc, p, n);
}
static void digest_put(uint8_t *out, uint32_t crc)
{
	crc ^= 0xffffffffu; /* sent little-endian, as initiators compute it */
	out[0] = (uint8_t)crc;
	out[1] = (uint8_t)(crc >> 8);
	out[2] = (uint8_t)(crc >> 16);
	out[3] = (uint8_t)(crc >> 24);
}
static bool digest_ok(const uint8_t *in, uint32_t crc)
{
	uint8_t want[4];

	digest_put(want, crc);
	return !memcmp(in, want, 4);
}

void iscsi_conn_warn(struct iconn *c, const char *fmt, ...)
{
	uint64_t held;
	char msg[256];
	va_list ap;

	if (!kura_ratelimit_ok(&c->rl, &held))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	kura_log(WARN, "iSCSI connection %u (%s%s%s): %s%s", c->id, c->peer, c->iname[0] ? ", " : "",
		 c->iname, msg, held ? " (and more, not logged)" : "");
}

/* ---- sending ---- */

struct txpdu *iscsi_txpdu(uint8_t opcode)
{
	struct txpdu *t = calloc(1, sizeof(*t));

	if (t)
		t->bhs[0] = opcode;
	return t;
}

static void tx_free(struct txpdu *t)
{
	if (t->task)
		iscsi_task_put(t->task);
	free(t->owned);
	free(t);
}

void iscsi_send(struct iconn *c, struct txpdu *t)
{
	bool hd = c->prm.header_digest; /* negotiated values apply once login is done */
	bool dd = c->prm.data_digest;
	uint32_t pad = (4 - (t->dlen & 3)) & 3;

	if (c->state == C_CLOSING) {
		tx_free(t);
		return;
	}
	iscsi_set_dlen(t->bhs, t->dlen);
	t->niov = 0;
	t->iov[t->niov++] = (struct iovec){t->bhs, KURA_ISCSI_BHS};
	if (hd) {
		digest_put(t->hdig, digest_add(digest_init(), t->bhs, KURA_ISCSI_BHS));
		t->iov[t->niov++] = (struct iovec){t->hdig, 4};
	}
	if (t->dlen) {
		t->iov[t->niov++] = (struct iovec){(void *)t->data, t->dlen};
		if (pad)
			t->iov[t->niov++] = (struct iovec){t->pad, pad};
		if (dd) {
			uint32_t crc = digest_add(digest_init(), t->data, t->dlen);
			digest_put(t->ddig, digest_add(crc, t->pad, pad));
			t->iov[t->niov++] = (struct iovec){t->ddig, 4};
		}
	}
	t->len = 0;
	for (unsigned i = 0; i < t->niov; i++)
		t->len += t->iov[i].iov_len;
	t->off = 0;
	t->next = NULL;
	if (c->txq_tail)
		c->txq_tail->next = t;
	else
		c->txq = t;
	c->txq_tail = t;
	c->tx_bytes += t->len;
	tx_kick(c);
}

static void tx_done(struct kura_op *op, int res)
{
	struct iconn *c = KURA_CONTAINER_OF(op, struct iconn, tx_op);
	size_t left = res > 0 ? (size_t)res : 0;
	bool close_now = false;

	c->tx_armed = false;
	if (res <= 0) {
		if (c->state != C_CLOSING)
			iscsi_conn_close(c, res == -EPIPE || res == -ECONNRESET || !res
						    ? "peer closed the connection"
						    : "send failed");
		iscsi_conn_maybe_free(c);
		return;
	}
	c->tx_bytes -= left;
	while (c->txq && left) {
		struct txpdu *t = c->txq;
		size_t n = t->len - t->off;

		if (left < n) {
			t->off += left;
			break;
		}
		left -= n;
		c->txq = t->next;
		if (!c->txq)
			c->txq_tail = NULL;
		close_now |= t->close_after;
		tx_free(t);
	}
	if (close_now) {
		iscsi_conn_close(c, NULL);
		iscsi_conn_maybe_free(c);
		return;
	}
	if (c->state == C_CLOSING) {
		iscsi_conn_maybe_free(c);
		return;
	}
	if (c->rx_paused && c->tx_bytes < ISCSI_TX_HIGH / 2)
		iscsi_conn_resume_rx(c);
	tx_kick(c);
}

static void tx_kick(struct iconn *c)
{
	unsigned n = 0;

	if (c->tx_armed || !c->txq || c->state == C_CLOSING)
		return;
	for (struct txpdu *t = c->txq; t && n + 5 <= 64; t = t->next) {
		size_t skip = t->off;

		for (unsigned i = 0; i < t->niov; i++) {
			if (skip >= t->iov[i].iov_len) {
				skip -= t->iov[i].iov_len;
				continue;
			}
			c->tx_iov[n].iov_base = (uint8_t *)t->iov[i].iov_base + skip;
			c->tx_iov[n].iov_len = t->iov[i].iov_len - skip;
			skip = 0;
			n++;
		}
		if (t->close_after)
			break;
	}
	memset(&c->tx_msg, 0, sizeof(c->tx_msg));
	c->tx_msg.msg_iov = c->tx_iov;
	c->tx_msg.msg_iovlen = n;
	c->tx_armed = true;
	io_uring_prep_sendmsg(kura_loop_sqe(c->p->loop, &c->tx_op), c->fd, &c->tx_msg,
			      MSG_NOSIGNAL);
}

void iscsi_fill_sn(struct iconn *c, uint8_t *bhs, bool advance)
{
	iscsi_put32(bhs + 24, advance ? c->statsn++ : c->statsn);
	iscsi_put32(bhs + 28, c->exp_cmdsn);
	iscsi_put32(bhs + 32, c->max_cmdsn);
}

/* ---- login ---- */

static void login_fail_target(uint8_t *rsp)
{
	rsp[36] = 3; /* target error */
	rsp[37] = 0;
	rsp[1] &= ~ISCSI_F_TRANSIT;
}

/* A leading login for a session that already exists (same initiator, ISID
 * and target) replaces it: the old one is closed (session reinstatement). */
static void reinstate(struct iconn *c)
{
	for (struct iconn *o = c->p->conns; o; o = o->next)
		if (o != c && o->state == C_FULL && o->type == c->type && o->tgt == c->tgt &&
		    !memcmp(o->isid, c->isid, 6) && !strcmp(o->iname, c->iname))
			iscsi_conn_close(o, "session reinstated by a new login");
}

static void login_complete(struct iconn *c, struct txpdu *t)
{
	const struct kura_iscsi_login_result *r = kura_iscsi_login_result(c->login);
	struct kura_iscsi *p = c->p;

	c->type = r->type;
	snprintf(c->iname, sizeof(c->iname), "%s", r->iname);
	memcpy(c->isid, r->isid, 6);
	c->cid = r->cid;
	if (r->tsih) {
		/* Adding a connection to a session: we offer MaxConnections=1. */
		t->bhs[36] = 2;
		t->bhs[37] = 0x0a; /* session does not exist */
		t->bhs[1] &= ~ISCSI_F_TRANSIT;
		t->close_after = true;
		kura_log(WARN, "iSCSI login from %s (%s) refused: TSIH %u is not a session here",
			 c->iname, c->peer, r->tsih);
		return;
	}
	if (c->type == KURA_ISCSI_NORMAL) {
		if (!c->tgt || iscsi_target_attach(p, c->tgt)) {
			login_fail_target(t->bhs);
			t->close_after = true;
			return;
		}
		reinstate(c);
	}
	if (!++p->next_tsih)
		p->next_tsih = 1;
	c->tsih = p->next_tsih;
	iscsi_put16(t->bhs + 14, c->tsih);
	c->nexus.id = ++p->next_nexus;
	c->nexus.rtpi = 1;
	snprintf(c->nexus.iname, sizeof(c->nexus.iname), "%s", c->iname);
	snprintf(c->nexus.iport, sizeof(c->nexus.iport), "%s,i,0x%02x%02x%02x%02x%02x%02x", c->iname,
		 c->isid[0], c->isid[1], c->isid[2], c->isid[3], c->isid[4], c->isid[5]);
	if (c->tgt)
		kura_scsi_nexus_new(c->tgt->lu, &c->nexus);
	if (kura_iscsi_text_create(&iscsi_login_ops, c, c->iname, c->tgt ? c->tgt->iqn : "",
				   &c->text))
		c->text = NULL;
	c->connected = (uint64_t)time(NULL);
	kura_log(INFO, "iSCSI %s session %u: %s (%s) logged in%s%s", c->tgt ? "normal" : "discovery",
		 c->tsih, c->iname, c->peer, c->tgt ? " to " : "", c->tgt ? c->tgt->iqn : "");
}

static void login_pdu(struct iconn *c, const uint8_t *data, uint32_t dlen)
{
	struct txpdu *t = iscsi_txpdu(ISCSI_OP_LOGIN_RSP);
	const struct kura_iscsi_login_result *r;
	uint8_t *rd = NULL;
	uint32_t rl = 0;
	bool first = !c->login;
	int ret;

	if (!t || (!c->login && kura_iscsi_login_create(&iscsi_login_ops, c, &c->login))) {
		free(t);
		iscsi_conn_close(c, "out of memory");
		return;
	}
	ret = kura_iscsi_login_step(c->login, c->cur, data, dlen, t->bhs, &rd, &rl);
	r = kura_iscsi_login_result(c->login);
	if (first) {
		c->statsn = r->expstatsn;
		c->exp_cmdsn = r->cmdsn;
		c->max_cmdsn = r->cmdsn + ISCSI_WINDOW - 1;
	}
	t->owned = rd;
	t->data = rd;
	t->dlen = rl;
	iscsi_put16(t->bhs + 14, r->tsih);
	if (ret == 1)
		login_complete(c, t);
	else if (ret < 0)
		t->close_after = true;
	iscsi_fill_sn(c, t->bhs, true);
	iscsi_send(c, t);
	if (ret == 1 && !(t->close_after)) {
		/* Digests and sizes apply from the next PDU on. */
		c->prm = r->params;
		c->state = C_FULL;
		kura_iscsi_login_free(c->login);
		c->login = NULL;
	}
}

/* ---- receiving ---- */

static void arm_rx(struct iconn *c)
{
	uint8_t *dst;
	size_t cap;

	if (c->rx_armed || c->rx_paused || c->state == C_CLOSING)
		return;
	if (c->in_data && !c->ddiscard && !c->rlen && c->dneed - c->dhave >= DIRECT_MIN) {
		/* A large data segment: straight into its buffer. */
		dst = c->dst + c->dhave;
		cap = c->dneed - c->dhave;
	} else {
		if (c->rpos && c->rpos + c->rlen > ISCSI_RBUF / 2) {
			memmove(c->rbuf, c->rbuf + c->rpos, c->rlen);
			c->rpos = 0;
		}
		dst = c->rbuf + c->rpos + c->rlen;
		cap = ISCSI_RBUF - c->rpos - c->rlen;
	}
	c->rx_armed = true;
	io_uring_prep_recv(kura_loop_sqe(c->p->loop, &c->rx_op), c->fd, dst, cap, 0);
}

void iscsi_conn_resume_rx(struct iconn *c)
{
	c->rx_paused = false;
	rx_process(c);
}

static void rx_done(struct kura_op *op, int res)
{
	struct iconn *c = KURA_CONTAINER_OF(op, struct iconn, rx_op);
	bool direct;

	c->rx_armed = false;
	if (c->state == C_CLOSING) {
		iscsi_conn_maybe_free(c);
		return;
	}
	if (res <= 0) {
		iscsi_conn_close(c, res == 0 || res == -ECONNRESET ? NULL : "receive failed");
		iscsi_conn_maybe_free(c);
		return;
	}
	c->last_rx_ns = kura_now_ns();
	direct = c->in_data && !c->ddiscard && !c->rlen && c->dneed - c->dhave >= DIRECT_MIN;
	if (direct) {
		if (c->prm.data_digest)
			c->dcrc = digest_add(c->dcrc, c->dst + c->dhave, (size_t)res);
		c->dhave += (uint32_t)res;
	} else {
		c->rlen += (uint32_t)res;
	}
	rx_process(c);
}

static void consume(struct iconn *c, uint32_t n)
{
	c->rpos += n;
	c->rlen -= n;
	if (!c->rlen)
		c->rpos = 0;
}

static void send_reject(struct iconn *c, const uint8_t *bhs, uint8_t reason)
{
	struct txpdu *t = iscsi_txpdu(ISCSI_OP_REJECT);
	uint8_t *copy = malloc(KURA_ISCSI_BHS);

	if (!t || !copy) {
		free(t);
		free(copy);
		iscsi_conn_close(c, "out of memory");
		return;
	}
	memcpy(copy, bhs, KURA_ISCSI_BHS);
	t->bhs[1] = ISCSI_F_FINAL;
	t->bhs[2] = reason;
	iscsi_put32(t->bhs + 16, ISCSI_RSVD_TAG);
	t->owned = copy;
	t->data = copy;
	t->dlen = KURA_ISCSI_BHS;
	iscsi_fill_sn(c, t->bhs, true);
	iscsi_send(c, t);
}

/* A header is complete at rbuf[rpos]: check it and decide where its data goes. */
static int rx_header(struct iconn *c, int *reject)
{
	const uint8_t *h = c->rbuf + c->rpos;
	bool full = c->state != C_LOGIN;
	bool hd = full && c->prm.header_digest;
	struct kura_iscsi_hdr_limits lim = {
		.full_feature = full,
		.max_recv_dsl = full ? c->prm.max_recv_dsl : LOGIN_DSL,
		.max_ahs = ISCSI_MAX_AHS,
	};
	const char *why = "";
	bool fatal = false;
	uint32_t hlen, dlen;
	int r;

	r = kura_iscsi_hdr_check(h, &lim, &fatal, &why);
	if (fatal) {
		kura_log(WARN, "iSCSI connection %u (%s): %s; closing", c->id, c->peer, why);
		return -EPROTO;
	}
	hlen = KURA_ISCSI_BHS + iscsi_ahs_len(h) + (hd ? 4 : 0);
	if (c->rlen < hlen)
		return -EAGAIN;
	if (hd && !digest_ok(h + hlen - 4, digest_add(digest_init(), h, hlen - 4))) {
		kura_log(WARN, "iSCSI connection %u (%s): header digest error; closing", c->id,
			 c->peer);
		return -EPROTO;
	}
	if (r)
		iscsi_conn_warn(c, "rejecting opcode 0x%02x: %s", iscsi_opcode(h), why);
	*reject = r;
	memcpy(c->cur, h, KURA_ISCSI_BHS);
	consume(c, hlen);
	dlen = iscsi_dlen(c->cur);
	c->in_data = true;
	c->dneed = dlen;
	c->dhave = 0;
	c->dtail = ((4 - (dlen & 3)) & 3) + (full && c->prm.data_digest && dlen ? 4 : 0);
	c->dst = NULL;
	c->dtask = NULL;
	c->ddiscard = r != 0;
	c->dcrc = digest_init();
	if (!r && full)
		iscsi_ffp_header(c);
	if (c->state == C_CLOSING)
		return -EPROTO;
	if (dlen && !c->dst && !c->ddiscard) {
		c->dseg = malloc(dlen);
		if (!c->dseg)
			return -ENOMEM;
		c->dst = c->dseg;
	}
	return 0;
}

/* The data segment, its padding and digest are in: act on the PDU. */
static void rx_pdu_done(struct iconn *c, int reject)
{
	uint8_t *data = c->dst;
	uint32_t dlen = c->dneed;

	c->in_data = false;
	if (reject) {
		send_reject(c, c->cur, (uint8_t)reject);
	} else if (c->state == C_LOGIN) {
		login_pdu(c, data, dlen);
	} else if (c->state == C_FULL || c->state == C_LOGOUT) {
		iscsi_ffp_pdu(c, data, dlen);
	}
	free(c->dseg);
	c->dseg = NULL;
	c->dst = NULL;
}

static void rx_process(struct iconn *c)
{
	int reject = 0;

	while (c->state != C_CLOSING && !c->rx_paused) {
		if (!c->in_data) {
			int r;

			if (c->rlen < KURA_ISCSI_BHS)
				break;
			r = rx_header(c, &reject);
			if (r == -EAGAIN)
				break;
			if (r) {
				iscsi_conn_close(c, r == -ENOMEM ? "out of memory" : NULL);
				break;
			}
			c->rej = (uint8_t)reject;
		}
		if (c->dhave < c->dneed) {
			uint32_t n = c->dneed - c->dhave;
			const uint8_t *src = c->rbuf + c->rpos;

			if (n > c->rlen)
				n = c->rlen;
			if (n) {
				if (c->prm.data_digest)
					c->dcrc = digest_add(c->dcrc, src, n);
				if (!c->ddiscard)
					memcpy(c->dst + c->dhave, src, n);
				c->dhave += n;
				consume(c, n);
			}
			if (c->dhave < c->dneed)
				break;
		}
		if (c->rlen < c->dtail)
			break;
		if (c->dtail) {
			uint32_t pad = (4 - (c->dneed & 3)) & 3;
			const uint8_t *tail = c->rbuf + c->rpos;

			if (c->dtail > pad) {
				uint32_t crc = digest_add(c->dcrc, tail, pad);
				if (!digest_ok(tail + pad, crc)) {
					kura_log(WARN,
						 "iSCSI connection %u (%s): data digest error; closing",
						 c->id, c->peer);
					consume(c, c->dtail);
					iscsi_conn_close(c, NULL);
					break;
				}
			}
			consume(c, c->dtail);
		}
		rx_pdu_done(c, c->rej);
		c->rej = 0;
		if (c->tx_bytes > ISCSI_TX_HIGH)
			c->rx_paused = true; /* a client that does not read: stop reading it */
	}
	arm_rx(c);
	if (c->state == C_CLOSING)
		iscsi_conn_maybe_free(c);
}

/* ---- life cycle ---- */

void iscsi_conn_accept(struct kura_iscsi *p, int fd)
{
	struct iconn *c;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int one = 1;

	c = p->nconns < MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
	if (c)
		c->rbuf = malloc(ISCSI_RBUF);
	if (!c || !c->rbuf) {
		kura_log(WARN, "refusing an iSCSI connection: %u open", p->nconns);
		if (c)
			free(c);
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->p = p;
	c->fd = fd;
	c->id = ++p->next_conn_id;
	c->state = C_LOGIN;
	c->ping_ttt = ISCSI_RSVD_TAG;
	c->rx_op.fn = rx_done;
	c->tx_op.fn = tx_done;
	c->last_rx_ns = kura_now_ns();
	kura_ratelimit_init(&c->rl, 10000000000ull, 5);
	kura_iscsi_params_default(&c->prm);
	if (!getpeername(fd, (struct sockaddr *)&ss, &sl)) {
		char a[INET6_ADDRSTRLEN] = "?";
		unsigned port = 0;

		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
			port = ntohs(s4->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
			port = ntohs(s6->sin6_port);
		}
		snprintf(c->peer, sizeof(c->peer), "%s:%u", a, port);
	}
	sl = sizeof(c->local);
	getsockname(fd, (struct sockaddr *)&c->local, &sl);
	c->next = p->conns;
	if (p->conns)
		p->conns->prev = c;
	p->conns = c;
	p->nconns++;
	arm_rx(c);
}

void iscsi_conn_close(struct iconn *c, const char *why)
{
	if (c->state == C_CLOSING)
		return;
	if (why)
		kura_log(WARN, "iSCSI connection %u (%s%s%s) closed: %s", c->id, c->peer,
			 c->iname[0] ? ", " : "", c->iname, why);
	else if (c->tsih)
		kura_log(INFO, "iSCSI session %u (%s) ended", c->tsih, c->iname);
	c->state = C_CLOSING;
	shutdown(c->fd, SHUT_RDWR); /* wakes a pending recv or send */
	iscsi_ffp_teardown(c);
}

void iscsi_conn_maybe_free(struct iconn *c)
{
	struct kura_iscsi *p = c->p;

	if (c->state != C_CLOSING || c->rx_armed || c->tx_armed || c->in_lu)
		return;
	while (c->txq) {
		struct txpdu *t = c->txq;
		c->txq = t->next;
		tx_free(t);
	}
	if (c->tgt) {
		if (c->tsih)
			kura_scsi_nexus_gone(c->tgt->lu, &c->nexus);
		if (c->tsih)
			iscsi_target_detach(p, c->tgt);
	}
	if (c->dtask)
		iscsi_task_put(c->dtask);
	kura_iscsi_login_free(c->login);
	kura_iscsi_text_free(c->text);
	free(c->dseg);
	free(c->rbuf);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		p->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	p->nconns--;
	free(c);
}

void iscsi_conn_ping_check(struct iconn *c, uint64_t now)
{
	struct kura_iscsi *p = c->p;
	struct txpdu *t;

	if (c->state == C_LOGIN && now - c->last_rx_ns > p->nop_timeout_ns) {
		iscsi_conn_close(c, "login not finished in time");
		iscsi_conn_maybe_free(c);
		return;
	}
	if (c->state != C_FULL)
		return;
	if (c->ping_ttt != ISCSI_RSVD_TAG) {
		if (now - c->ping_ns > p->nop_timeout_ns) {
			iscsi_conn_close(c, "initiator did not answer a NOP-In ping");
			iscsi_conn_maybe_free(c);
		}
		return;
	}
	if (now - c->last_rx_ns < p->nop_interval_ns || !(t = iscsi_txpdu(ISCSI_OP_NOP_IN)))
		return;
	/* A ping the initiator must answer with a NOP-Out carrying this TTT. */
	c->ping_ttt = 0x80000000u | (++c->next_ttt & 0x7fffffffu);
	c->ping_ns = now;
	t->bhs[1] = ISCSI_F_FINAL;
	iscsi_put32(t->bhs + 8, 0);
	iscsi_put32(t->bhs + 12, 0);
	iscsi_put32(t->bhs + 16, ISCSI_RSVD_TAG);
	iscsi_put32(t->bhs + 20, c->ping_ttt);
	iscsi_fill_sn(c, t->bhs, false);
	iscsi_send(c, t);
}
