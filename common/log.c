#include "common/log.h"
#include "common/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Written once by main() before threads start; read-only afterwards. */
static enum kura_log_level log_level = KURA_LOG_INFO;

static const char *const level_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };

void kura_log_set_level(enum kura_log_level lvl)
{
	log_level = lvl;
}

int kura_log_enabled(enum kura_log_level lvl)
{
	return lvl <= log_level;
}

void kura_log_at(enum kura_log_level lvl, const char *file, int line, const char *func,
		 const char *fmt, ...)
{
	char msg[1024], when[32] = "";
	struct timespec ts;
	struct tm tm;
	va_list ap;
	const char *base;

	if (lvl > log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	base = strrchr(file, '/');
	base = base ? base + 1 : file;
	/* UTC to the millisecond: lines of several nodes line up */
	clock_gettime(CLOCK_REALTIME, &ts);
	if (gmtime_r(&ts.tv_sec, &tm)) {
		size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);

		snprintf(when + n, sizeof(when) - n, ".%03ldZ ", ts.tv_nsec / 1000000);
	}
	fprintf(stderr, "%s%s %s:%d %s: %s\n", when, level_names[lvl], base, line, func, msg);
}

void kura_ratelimit_init(struct kura_ratelimit *rl, uint64_t interval_ns, unsigned burst)
{
	memset(rl, 0, sizeof(*rl));
	rl->interval_ns = interval_ns;
	rl->burst = burst;
}

int kura_ratelimit_ok(struct kura_ratelimit *rl, uint64_t *suppressed)
{
	uint64_t now = kura_now_ns();

	if (now - rl->window_start >= rl->interval_ns) {
		rl->window_start = now;
		rl->in_window = 0;
	}
	if (rl->in_window >= rl->burst) {
		rl->suppressed++;
		return 0;
	}
	rl->in_window++;
	*suppressed = rl->suppressed;
	rl->suppressed = 0;
	return 1;
}
