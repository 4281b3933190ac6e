/* The round trip with blockd: one JSON object per line each way
 * (docs/control.md). An answer may arrive in any number of pieces and be of
 * any length up to CLI_MAX_ANSWER; one connection serves every request of a
 * run, so a --wait poll does not reconnect five times a second. */
#include "vdisk/cli/cli.h"

#include <errno.h>
#include <libgen.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CLI_E_REMOTE (-EREMOTEIO)

/* blockd is not there: say how to start it, for the data dir the socket
 * lies in (blockd puts its socket in its data dir unless told otherwise). */
static int unreachable(const char *path, int err)
{
	char *copy = strdup(path);
	const char *dir = copy ? dirname(copy) : ".";
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;

	if (!strcmp(base, "blockd.sock"))
		cli_fail(err, "cannot reach blockd at %s (%s); start it with: blockd --data %s", path,
			 strerror(-err), dir);
	else
		cli_fail(err, "cannot reach blockd at %s (%s); start it with: blockd --data %s "
			 "--socket %s", path, strerror(-err), dir, path);
	free(copy);
	return err;
}

static int connect_blockd(struct cli *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, err;

	if (strlen(c->socket) >= sizeof(sa.sun_path))
		return cli_fail(-ENAMETOOLONG, "socket path %s is longer than %zu bytes", c->socket,
				sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, c->socket, strlen(c->socket) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return cli_fail(-errno, "cannot make a socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		err = -errno;
		close(fd);
		if (err == -ENOENT || err == -ECONNREFUSED)
			return unreachable(c->socket, err);
		return cli_fail(err, "cannot connect to blockd at %s: %s", c->socket,
				strerror(-err));
	}
	c->conn.fd = fd;
	return 0;
}

void cli_disconnect(struct cli *c)
{
	if (c->conn.fd >= 0)
		close(c->conn.fd);
	c->conn.fd = -1;
	free(c->conn.buf);
	c->conn.buf = NULL;
	c->conn.len = c->conn.cap = 0;
}

static int closed_early(struct cli *c)
{
	return cli_fail(-ECONNRESET, "blockd at %s closed the connection before answering; see "
			"its log", c->socket);
}

static int send_all(struct cli *c, const char *p, size_t len)
{
	while (len) {
		/* MSG_NOSIGNAL: a blockd that went away is an error, not SIGPIPE. */
		ssize_t n = send(c->conn.fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
			return closed_early(c);
		if (n < 0)
			return cli_fail(-errno, "cannot send to blockd: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Room for at least one more read. */
static int grow(struct cli *c)
{
	struct cli_conn *cn = &c->conn;
	size_t cap = cn->cap ? cn->cap * 2 : 16384;
	char *p;

	if (cn->len < cn->cap)
		return 0;
	if (cap > CLI_MAX_ANSWER)
		return cli_fail(-EMSGSIZE, "blockd's answer is longer than %u MiB; giving up",
				CLI_MAX_ANSWER >> 20);
	p = realloc(cn->buf, cap);
	if (!p)
		return cli_fail(-ENOMEM, "out of memory for blockd's answer");
	cn->buf = p;
	cn->cap = cap;
	return 0;
}

/* Waits until the socket is readable; CLI_E_INTR when the SIGINT fd fires
 * first (only while waiting for a job). */
static int wait_readable(struct cli *c)
{
	struct pollfd p[2] = { { .fd = c->conn.fd, .events = POLLIN },
			       { .fd = c->intr_fd, .events = POLLIN } };

	for (;;) {
		int n = poll(p, c->intr_fd >= 0 ? 2 : 1, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return cli_fail(-errno, "poll: %s", strerror(errno));
		if (c->intr_fd >= 0 && (p[1].revents & POLLIN))
			return CLI_E_INTR;
		return 0;
	}
}

/* Reads until a whole line is buffered; *len is its length without '\n'. */
static int recv_line(struct cli *c, size_t *len)
{
	struct cli_conn *cn = &c->conn;
	size_t scanned = 0;
	char *nl;
	ssize_t n;
	int err;

	/* buf is NULL until the first read: memchr must not see it. */
	while (!(nl = cn->len > scanned ? memchr(cn->buf + scanned, '\n', cn->len - scanned) :
					  NULL)) {
		scanned = cn->len;
		if ((err = grow(c)) || (err = wait_readable(c)))
			return err;
		n = read(cn->fd, cn->buf + cn->len, cn->cap - cn->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return closed_early(c);
		if (n < 0)
			return cli_fail(-errno, "cannot read from blockd: %s", strerror(errno));
		cn->len += (size_t)n;
	}
	*len = (size_t)(nl - cn->buf);
	return 0;
}

/* Drops the line just parsed; whatever followed it stays for the next call. */
static void consume(struct cli_conn *cn, size_t line)
{
	memmove(cn->buf, cn->buf + line + 1, cn->len - line - 1);
	cn->len -= line + 1;
}

static int check_ok(struct kura_json *ans)
{
	const char *msg;
	int ok;

	if (kura_json_get_bool(ans, "ok", &ok))
		return cli_fail(-EPROTO, "blockd's answer has no \"ok\" field");
	if (ok)
		return 0;
	if (kura_json_get_str(ans, "error", &msg))
		msg = "blockd refused the request without saying why";
	return cli_fail(CLI_E_REMOTE, "%s", msg);
}

static int recv_answer(struct cli *c, struct kura_json **ans)
{
	char why[160];
	size_t len = 0;
	int err;

	if ((err = recv_line(c, &len)))
		return err;
	err = kura_json_parse(c->conn.buf, len, ans, why, sizeof(why));
	consume(&c->conn, len);
	if (err)
		return cli_fail(err, "blockd sent an answer that is not JSON: %s", why);
	if (kura_json_type(*ans) == KURA_JSON_OBJ && !(err = check_ok(*ans)))
		return 0;
	if (!err)
		err = cli_fail(-EPROTO, "blockd sent an answer that is not a JSON object");
	kura_json_free(*ans);
	*ans = NULL;
	return err;
}

void cli_req(struct kura_jw *w, const char *op)
{
	kura_jw_init(w);
	kura_jw_obj(w, NULL);
	kura_jw_str(w, "op", op);
}

void cli_req_target(struct kura_jw *w, const struct cli_target *t)
{
	kura_jw_str(w, "name", t->name);
	if (t->snap[0])
		kura_jw_str(w, "snap", t->snap);
}

int cli_call(struct cli *c, struct kura_jw *w, struct kura_json **ans)
{
	const char *text;
	size_t len;
	int err;

	*ans = NULL;
	kura_jw_end(w);
	text = kura_jw_finish(w, &len);
	if (!text) {
		err = cli_fail(-ENOMEM, "out of memory for the request");
		goto out_free;
	}
	if (c->conn.fd < 0 && (err = connect_blockd(c)))
		goto out_free;
	if (!(err = send_all(c, text, len)) && !(err = send_all(c, "\n", 1)))
		err = recv_answer(c, ans);
out_free:
	kura_jw_free(w);
	return err;
}

int cli_call_op(struct cli *c, const char *op, struct kura_json **ans)
{
	struct kura_jw w;

	cli_req(&w, op);
	return cli_call(c, &w, ans);
}

int cli_call_name(struct cli *c, const char *op, const char *name, struct kura_json **ans)
{
	struct kura_jw w;
	int err;

	*ans = NULL;
	if ((err = cli_check_name("vdisk", name)))
		return err;
	cli_req(&w, op);
	kura_jw_str(&w, "name", name);
	return cli_call(c, &w, ans);
}

int cli_call_target(struct cli *c, const char *op, const struct cli_target *t,
		    struct kura_json **ans)
{
	struct kura_jw w;

	cli_req(&w, op);
	cli_req_target(&w, t);
	return cli_call(c, &w, ans);
}
