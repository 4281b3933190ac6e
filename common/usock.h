/* Stream sockets for blockd's listeners: unix sockets and TCP. Any thread. */
#ifndef KURA_COMMON_USOCK_H
#define KURA_COMMON_USOCK_H

#include <stddef.h>
#include <sys/socket.h>

/* Listens on path. A socket file already there is replaced when `owned` (it
 * lies in a data dir this process has locked, so whatever holds it is a
 * previous instance on its way out); otherwise a live listener makes this
 * fail with -EADDRINUSE. Returns the fd, or -errno with a one-line reason in
 * errbuf. */
int kura_unix_listen(const char *path, int owned, char *errbuf, size_t errlen);

/* "A.B.C.D:PORT" or "[V6]:PORT" (port 1-65535) into ss: 0 or -EINVAL. */
int kura_tcp_parse(const char *addr, struct sockaddr_storage *ss, socklen_t *len);
/* Binds (SO_REUSEADDR) and listens: the fd, or -errno with "cannot WHAT on
 * ADDR: reason" in errbuf. */
int kura_tcp_listen(const struct sockaddr_storage *ss, socklen_t len, const char *what,
		    const char *addr, char *errbuf, size_t errlen);

#endif
