/* The control socket server (see control.h). */
#include "blockd/control.h"

#include "common/log.h"
#include "common/usock.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 256u
#define RX_CHUNK 65536u

struct cconn {
	struct kura_ctl_server *srv;
	int fd;
	unsigned id;
	struct kura_op rx_op, tx_op;
	char *rbuf;
	size_t rlen, rcap;
	bool rx_armed, tx_armed, busy, closing, eof, close_after_tx;
	struct kura_json *req;
	struct kura_jw jw;
	const char *tx;
	size_t tx_len, tx_off;
	struct cconn *next, *prev;
};

struct kura_ctl_server {
	struct kura_loop *loop;
	kura_ctl_fn fn;
	void *ctx;
	int lfd;
	char path[108];
	struct kura_op accept_op;
	bool accept_armed, stopping;
	struct cconn *conns;
	unsigned nconns, next_id;
};

static void arm_rx(struct cconn *c);
static void process(struct cconn *c);

static void conn_maybe_free(struct cconn *c)
{
	struct kura_ctl_server *srv = c->srv;

	if (!c->closing || c->busy || c->rx_armed || c->tx_armed)
		return;
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->nconns--;
	kura_jw_free(&c->jw);
	kura_json_free(c->req);
	free(c->rbuf);
	free(c);
}

static void conn_close(struct cconn *c, const char *why)
{
	if (!c->closing && why)
		kura_log(WARN, "control connection %u closed: %s", c->id, why);
	c->closing = true;
	shutdown(c->fd, SHUT_RDWR); /* wakes a pending recv */
	conn_maybe_free(c);
}

static void tx_done(struct kura_op *op, int res)
{
	struct cconn *c = KURA_CONTAINER_OF(op, struct cconn, tx_op);

	c->tx_armed = false;
	if (res <= 0 || c->closing) {
		conn_close(c, res < 0 && res != -EPIPE && res != -ECONNRESET ? "send failed" : NULL);
		return;
	}
	c->tx_off += (size_t)res;
	if (c->tx_off < c->tx_len) {
		c->tx_armed = true;
		io_uring_prep_send(kura_loop_sqe(c->srv->loop, &c->tx_op), c->fd, c->tx + c->tx_off,
				   c->tx_len - c->tx_off, MSG_NOSIGNAL);
		return;
	}
	kura_jw_free(&c->jw);
	c->tx = NULL;
	if (c->close_after_tx) {
		conn_close(c, NULL);
		return;
	}
	process(c);
}

static void send_answer(struct cconn *c)
{
	kura_jw_end(&c->jw);
	c->tx = kura_jw_finish(&c->jw, &c->tx_len);
	if (!c->tx) {
		conn_close(c, "out of memory for an answer");
		return;
	}
	/* The writer's buffer has room for its NUL: it becomes the newline. */
	((char *)c->tx)[c->tx_len++] = '\n';
	c->tx_off = 0;
	c->tx_armed = true;
	io_uring_prep_send(kura_loop_sqe(c->srv->loop, &c->tx_op), c->fd, c->tx, c->tx_len,
			   MSG_NOSIGNAL);
}

static void answer_error(struct cconn *c, const char *code, const char *msg)
{
	kura_jw_free(&c->jw);
	kura_jw_init(&c->jw);
	kura_jw_obj(&c->jw, NULL);
	kura_jw_bool(&c->jw, "ok", 0);
	kura_jw_str(&c->jw, "error", msg);
	kura_jw_str(&c->jw, "code", code);
	send_answer(c);
}

static void ctl_done(void *arg, int err, const char *msg)
{
	struct cconn *c = arg;

	c->busy = false;
	kura_json_free(c->req);
	c->req = NULL;
	if (c->closing) {
		/* The client went away: the request still ran; drop the answer. */
		conn_maybe_free(c);
		return;
	}
	kura_jw_bool(&c->jw, "ok", !err);
	if (err)
		kura_jw_str(&c->jw, "error", msg ? msg : strerror(-err));
	send_answer(c);
}

/* Takes one complete line from rbuf, if there is one, and runs it. */
static void process(struct cconn *c)
{
	char *nl = c->rlen ? memchr(c->rbuf, '\n', c->rlen) : NULL;
	char why[160];
	size_t len;

	if (c->busy || c->tx_armed || c->closing)
		return;
	if (!nl) {
		if (c->rlen > KURA_CTL_MAX_LINE) {
			c->close_after_tx = true;
			answer_error(c, "EPROTO", "request longer than 1 MiB; closing");
			return;
		}
		if (c->eof) {
			/* A request cut off by the client is not acted on. */
			conn_close(c, c->rlen ? "request cut off before its newline" : NULL);
			return;
		}
		arm_rx(c);
		return;
	}
	len = (size_t)(nl - c->rbuf);
	if (kura_json_parse(c->rbuf, len, &c->req, why, sizeof(why))) {
		c->req = NULL;
		memmove(c->rbuf, nl + 1, c->rlen - len - 1);
		c->rlen -= len + 1;
		answer_error(c, "EPROTO", why);
		return;
	}
	memmove(c->rbuf, nl + 1, c->rlen - len - 1);
	c->rlen -= len + 1;
	c->busy = true;
	kura_jw_init(&c->jw);
	kura_jw_obj(&c->jw, NULL);
	c->srv->fn(c->srv->ctx, c->req, &c->jw, ctl_done, c);
}

static void rx_done(struct kura_op *op, int res)
{
	struct cconn *c = KURA_CONTAINER_OF(op, struct cconn, rx_op);

	c->rx_armed = false;
	if (c->closing) {
		conn_maybe_free(c);
		return;
	}
	if (res < 0 && res != -ECONNRESET) {
		conn_close(c, "receive failed");
		return;
	}
	if (res <= 0)
		c->eof = true;
	else
		c->rlen += (size_t)res;
	process(c);
}

static void arm_rx(struct cconn *c)
{
	if (c->rx_armed || c->closing || c->eof)
		return;
	if (c->rcap - c->rlen < RX_CHUNK) {
		size_t ncap = c->rcap ? c->rcap * 2 : RX_CHUNK * 2;
		char *n = realloc(c->rbuf, ncap);
		if (!n) {
			conn_close(c, "out of memory");
			return;
		}
		c->rbuf = n;
		c->rcap = ncap;
	}
	c->rx_armed = true;
	io_uring_prep_recv(kura_loop_sqe(c->srv->loop, &c->rx_op), c->fd, c->rbuf + c->rlen,
			   c->rcap - c->rlen, 0);
}

static void arm_accept(struct kura_ctl_server *srv);

static void accept_done(struct kura_op *op, int res)
{
	struct kura_ctl_server *srv = KURA_CONTAINER_OF(op, struct kura_ctl_server, accept_op);
	struct cconn *c;

	srv->accept_armed = false;
	if (srv->stopping) {
		if (res >= 0)
			close(res);
		return;
	}
	if (res < 0) {
		kura_log(WARN, "accept on %s: %s", srv->path, strerror(-res));
		arm_accept(srv);
		return;
	}
	c = srv->nconns < MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
	if (!c) {
		kura_log(WARN, "refusing a control connection: %u open", srv->nconns);
		close(res);
		arm_accept(srv);
		return;
	}
	srv->nconns++;
	c->srv = srv;
	c->fd = res;
	c->id = ++srv->next_id;
	c->rx_op.fn = rx_done;
	c->tx_op.fn = tx_done;
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	arm_rx(c);
	arm_accept(srv);
}

static void arm_accept(struct kura_ctl_server *srv)
{
	if (srv->accept_armed || srv->stopping)
		return;
	srv->accept_armed = true;
	io_uring_prep_accept(kura_loop_sqe(srv->loop, &srv->accept_op), srv->lfd, NULL, NULL,
			     SOCK_CLOEXEC);
}

int kura_ctl_server_start(struct kura_loop *loop, kura_ctl_fn fn, void *ctx, const char *path,
			  int owned, struct kura_ctl_server **out, char *errbuf, size_t errlen)
{
	struct kura_ctl_server *srv;
	int fd = kura_unix_listen(path, owned, errbuf, errlen);

	if (fd < 0)
		return fd;
	srv = calloc(1, sizeof(*srv));
	if (!srv) {
		close(fd);
		return -ENOMEM;
	}
	srv->loop = loop;
	srv->fn = fn;
	srv->ctx = ctx;
	srv->lfd = fd;
	snprintf(srv->path, sizeof(srv->path), "%s", path);
	srv->accept_op.fn = accept_done;
	arm_accept(srv);
	*out = srv;
	return 0;
}

void kura_ctl_server_stop(struct kura_ctl_server *srv)
{
	if (!srv)
		return;
	srv->stopping = true;
	if (srv->accept_armed)
		kura_loop_cancel_sync(srv->loop, &srv->accept_op);
	for (struct cconn *c = srv->conns, *n; c; c = n) {
		n = c->next;
		conn_close(c, NULL);
	}
	while (srv->accept_armed || srv->conns)
		kura_loop_run_once(srv->loop, 100000000ULL);
	close(srv->lfd);
	unlink(srv->path);
	free(srv);
}
