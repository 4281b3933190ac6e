#include "common/usock.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int kura_unix_listen(const char *path, int owned, char *errbuf, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, err;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(errbuf, errlen, "socket path %s is too long (at most %zu bytes)", path,
			 sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(errbuf, errlen, "socket: %s", strerror(errno));
		return -errno;
	}
	if (!owned && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		snprintf(errbuf, errlen, "%s is in use by a running server", path);
		close(fd);
		return -EADDRINUSE;
	}
	close(fd);
	unlink(path); /* a stale socket from a previous run */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 128)) {
		err = -errno;
		snprintf(errbuf, errlen, "cannot listen on %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return err;
	}
	return fd;
}
