/* Logging for every kura binary.
 *
 * Thread rule: any thread may log. The level is set once by main() before any
 * other thread starts (kura_log_set_level) and only read afterwards.
 * Lines go to stderr as "LEVEL file:line func: message".
 */
#ifndef KURA_COMMON_LOG_H
#define KURA_COMMON_LOG_H

#include <stdint.h>

enum kura_log_level { KURA_LOG_ERR = 0, KURA_LOG_WARN, KURA_LOG_INFO, KURA_LOG_DEBUG };

void kura_log_set_level(enum kura_log_level lvl);
int kura_log_enabled(enum kura_log_level lvl);
void kura_log_at(enum kura_log_level lvl, const char *file, int line, const char *func,
		 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define kura_log(lvl, ...) kura_log_at(KURA_LOG_##lvl, __FILE__, __LINE__, __func__, __VA_ARGS__)

/* A rate limiter for I/O-path errors: at most `burst` lines per `interval_ns`;
 * the lines it holds back are counted and reported with the next one it lets
 * through. One instance per object that logs (e.g. per disk), owned by the
 * object's thread. */
struct kura_ratelimit {
	uint64_t interval_ns;
	uint64_t window_start;
	unsigned burst;
	unsigned in_window;
	uint64_t suppressed;
};

void kura_ratelimit_init(struct kura_ratelimit *rl, uint64_t interval_ns, unsigned burst);
/* Returns 1 when the caller may log now; *suppressed receives how many lines
 * were held back since the last permitted one. */
int kura_ratelimit_ok(struct kura_ratelimit *rl, uint64_t *suppressed);

#endif
