#include "blockd/client.h"
#include "common/usock.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct kura_client {
	int fd;
	uint64_t next_tag;
};

static int connect_to(const struct sockaddr *sa, socklen_t len, struct kura_client **out)
{
	struct kura_client *c;
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0), err;

	if (fd < 0)
		return -errno;
	if (connect(fd, sa, len)) {
		err = -errno;
		close(fd);
		return err;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->fd = fd;
	*out = c;
	return 0;
}

int kura_client_connect(const char *path, struct kura_client **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	return connect_to((struct sockaddr *)&sa, sizeof(sa), out);
}

int kura_client_connect_tcp(const char *addr, struct kura_client **out)
{
	struct sockaddr_storage ss;
	socklen_t len;

	if (kura_tcp_parse(addr, &ss, &len))
		return -EINVAL;
	return connect_to((struct sockaddr *)&ss, len, out);
}

void kura_client_close(struct kura_client *c)
{
	if (!c)
		return;
	close(c->fd);
	free(c);
}

static int send_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n) {
		ssize_t r = send(fd, b, n, MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EPIPE;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

static int recv_all(int fd, void *p, size_t n)
{
	uint8_t *b = p;

	while (n) {
		ssize_t r = recv(fd, b, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -ECONNRESET;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

int kura_client_send(struct kura_client *c, const struct kura_proto_req *req, const void *data)
{
	int err = send_all(c->fd, req, sizeof(*req));

	if (!err && req->data_len)
		err = send_all(c->fd, data, req->data_len);
	return err;
}

int kura_client_recv(struct kura_client *c, struct kura_proto_resp *resp, void *buf, size_t cap)
{
	int err = recv_all(c->fd, resp, sizeof(*resp));

	if (err)
		return err;
	if (resp->magic != KURA_PROTO_RESP_MAGIC)
		return -EPROTO;
	if (resp->data_len > cap) {
		uint8_t sink[4096];
		size_t left = resp->data_len;
		while (left && !err) {
			size_t n = left < sizeof(sink) ? left : sizeof(sink);
			err = recv_all(c->fd, sink, n);
			left -= n;
		}
		return err ? err : -EMSGSIZE;
	}
	return resp->data_len ? recv_all(c->fd, buf, resp->data_len) : 0;
}

int kura_client_call(struct kura_client *c, struct kura_proto_req *req, const void *data,
		     void *buf, size_t cap, size_t *got)
{
	struct kura_proto_resp resp;
	int err;

	req->magic = KURA_PROTO_MAGIC;
	req->tag = ++c->next_tag;
	err = kura_client_send(c, req, data);
	if (!err)
		err = kura_client_recv(c, &resp, buf, cap);
	if (err)
		return err;
	if (got)
		*got = resp.data_len;
	return resp.status;
}
