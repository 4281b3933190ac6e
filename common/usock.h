/* Unix stream sockets for blockd's listeners. Any thread. */
#ifndef KURA_COMMON_USOCK_H
#define KURA_COMMON_USOCK_H

#include <stddef.h>

/* Listens on path. A socket file already there is replaced when `owned` (it
 * lies in a data dir this process has locked, so whatever holds it is a
 * previous instance on its way out); otherwise a live listener makes this
 * fail with -EADDRINUSE. Returns the fd, or -errno with a one-line reason in
 * errbuf. */
int kura_unix_listen(const char *path, int owned, char *errbuf, size_t errlen);

#endif
