/* The unit test harness: each test runs in its own child process with a
 * timeout; the runner prints one line per test and ends with
 * "N passed, N failed, N skipped". */
#ifndef KURA_TESTS_HARNESS_H
#define KURA_TESTS_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn, unsigned timeout_s);

#define TEST_T(name, timeout)                                                      \
	static void name(void);                                                    \
	__attribute__((constructor)) static void reg_##name(void)                  \
	{                                                                          \
		test_register(#name, name, timeout);                               \
	}                                                                          \
	static void name(void)
#define TEST(name) TEST_T(name, 60)

/* Failing check: report and end the test's process with failure. */
#define CHECK(cond)                                                                \
	do {                                                                       \
		if (!(cond)) {                                                     \
			fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__,  \
				__LINE__, #cond);                                  \
			exit(1);                                                   \
		}                                                                  \
	} while (0)
#define CHECK_EQ(a, b)                                                             \
	do {                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                \
		if (a_ != b_) {                                                    \
			fprintf(stderr, "  %s:%d: %s == %lld, expected %s == %lld\n", \
				__FILE__, __LINE__, #a, a_, #b, b_);               \
			exit(1);                                                   \
		}                                                                  \
	} while (0)
#define SKIP(why)                                                                  \
	do {                                                                       \
		fprintf(stderr, "  skipped: %s\n", why);                           \
		exit(77);                                                          \
	} while (0)

/* A fresh temporary directory for this test (removed by the runner). */
const char *test_tmpdir(void);

#endif
