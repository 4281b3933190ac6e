/* Checks blockd's control socket from outside: garbage, a request that is
 * not an object, a line longer than 1 MiB, a request cut off by the client,
 * a client that disconnects while its request runs, and many requests in
 * one write; after each, the server still answers everyone and the catalog
 * is consistent (fsck clean).
 *
 * usage: kura-ctlcheck SOCKET */
#include "common/json.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CHECK(c)                                                                          \
	do {                                                                              \
		if (!(c)) {                                                               \
			fprintf(stderr, "ctlcheck:%d: %s\n", __LINE__, #c);               \
			exit(1);                                                          \
		}                                                                         \
	} while (0)

static const char *sock;

static int conn(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	return fd;
}

/* Writes all of s; a server that closed the connection ends it quietly
 * (the over-long line case reads the answer that explains why). */
static void put(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t w = write(fd, s, len);
		if (w < 0 && errno == EPIPE)
			return;
		CHECK(w > 0);
		s += w;
		len -= (size_t)w;
	}
}

static void puts_(int fd, const char *s)
{
	put(fd, s, strlen(s));
}

/* Reads one answer line; NULL when the server closed the connection. */
static struct kura_json *answer(int fd)
{
	static char buf[1 << 16];
	size_t len = 0;
	struct kura_json *j;
	char why[100];

	for (;;) {
		ssize_t r = read(fd, buf + len, 1);
		if (r <= 0)
			return NULL;
		if (buf[len] == '\n')
			break;
		CHECK(++len < sizeof(buf));
	}
	CHECK(kura_json_parse(buf, len, &j, why, sizeof(why)) == 0);
	return j;
}

static const char *code(const struct kura_json *a)
{
	const char *c = NULL;
	int ok = 1;

	CHECK(kura_json_get_bool(a, "ok", &ok) == 0);
	if (ok)
		return "ok";
	CHECK(kura_json_get_str(a, "code", &c) == 0);
	return c;
}

static void expect(int fd, const char *req, const char *want)
{
	struct kura_json *a;

	put(fd, req, strlen(req));
	a = answer(fd);
	CHECK(a);
	if (strcmp(code(a), want)) {
		fprintf(stderr, "ctlcheck: %s: got %s, expected %s\n", req, code(a), want);
		exit(1);
	}
	kura_json_free(a);
}

static void still_serving(void)
{
	int fd = conn();
	struct kura_json *a;
	int clean = 0;

	puts_(fd, "{\"op\":\"fsck\"}\n");
	CHECK((a = answer(fd)));
	CHECK(kura_json_get_bool(a, "clean", &clean) == 0 && clean);
	kura_json_free(a);
	close(fd);
}

int main(int argc, char **argv)
{
	char *big;
	int fd, fd2;

	CHECK(argc == 2);
	sock = argv[1];
	signal(SIGPIPE, SIG_IGN);
	fd = conn();
	expect(fd, "{\"op\":\"version\"}\n", "ok");
	expect(fd, "garbage\n", "EPROTO");
	expect(fd, "[1,2,3]\n", "EINVAL");
	expect(fd, "{\"op\":42}\n", "EINVAL");
	expect(fd, "{\"op\":\"create\",\"name\":\"x\",\"size\":\"big\"}\n", "EINVAL");
	expect(fd, "{\"op\":\"create\",\"name\":\"x\",\"size\":4096,\"size\":8192}\n", "EPROTO");
	expect(fd, "{\"op\":\"create\",\"name\":\"x\",\"size\":-4096}\n", "EINVAL");
	expect(fd, "{\"op\":\"create\",\"name\":\"x\",\"size\":99999999999999999999999}\n",
	       "EINVAL");
	expect(fd, "{\"op\":\"create\",\"name\":\"a\\u0000b\",\"size\":4096}\n", "EPROTO");
	expect(fd, "{\"op\":\"create\",\"name\":\"good\",\"size\":1048576}\n", "ok");
	/* several requests in one write, answered in order */
	puts_(fd, "{\"op\":\"info\",\"name\":\"good\"}\n{\"op\":\"info\",\"name\":\"nope\"}\n");
	{
		struct kura_json *a = answer(fd), *b = answer(fd);
		CHECK(a && b && !strcmp(code(a), "ok") && !strcmp(code(b), "ENOENT"));
		kura_json_free(a);
		kura_json_free(b);
	}
	close(fd);
	still_serving();

	/* a line longer than 1 MiB: an error, then the connection closes */
	fd = conn();
	big = malloc((2u << 20) + 2);
	CHECK(big);
	memset(big, ' ', 2u << 20);
	big[0] = '{';
	{
		struct kura_json *a;
		put(fd, big, 2u << 20);
		CHECK((a = answer(fd)));
		CHECK(!strcmp(code(a), "EPROTO"));
		kura_json_free(a);
		CHECK(answer(fd) == NULL);
	}
	free(big);
	close(fd);
	still_serving();

	/* a request cut off before its newline is not acted on */
	fd = conn();
	puts_(fd, "{\"op\":\"create\",\"name\":\"cut\",\"size\":4096}");
	shutdown(fd, SHUT_WR);
	CHECK(answer(fd) == NULL);
	close(fd);
	fd = conn();
	expect(fd, "{\"op\":\"info\",\"name\":\"cut\"}\n", "ENOENT");
	close(fd);

	/* a client that goes away while its request runs: the request still
	 * completes, and the others are served */
	fd = conn();
	fd2 = conn();
	puts_(fd, "{\"op\":\"snapshot\",\"name\":\"good\",\"snap\":\"s\"}\n");
	close(fd);
	expect(fd2, "{\"op\":\"list\"}\n", "ok");
	expect(fd2, "{\"op\":\"info\",\"name\":\"good\",\"snap\":\"s\"}\n", "ok");
	expect(fd2, "{\"op\":\"delete\",\"name\":\"good\"}\n", "ok");
	close(fd2);
	still_serving();
	printf("control socket checks passed\n");
	return 0;
}
