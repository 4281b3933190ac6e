#include "tests/unit/harness.h"
#include "common/log.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

struct test {
	const char *name;
	test_fn fn;
	unsigned timeout;
};

static struct test tests[512];
static unsigned ntests;
static char tmpdir[256];

void test_register(const char *name, test_fn fn, unsigned timeout_s)
{
	if (ntests < sizeof(tests) / sizeof(tests[0]))
		tests[ntests++] = (struct test){ name, fn, timeout_s };
}

const char *test_tmpdir(void)
{
	return tmpdir;
}

static int run_one(struct test *t)
{
	int status, ret = 1;
	pid_t pid;
	char cmd[600], log[300];

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/kura-unit-%d-XXXXXX", (int)getpid());
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	fflush(stdout);
	snprintf(log, sizeof(log), "%s.log", tmpdir);
	pid = fork();
	if (pid == 0) {
		/* the test's own output is shown only when it fails */
		if (!freopen(log, "w", stderr))
			exit(1);
		setvbuf(stderr, NULL, _IONBF, 0);
		alarm(t->timeout);
		t->fn();
		exit(0);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status))
		ret = WEXITSTATUS(status);
	else if (WIFSIGNALED(status)) {
		FILE *f = fopen(log, "a");
		if (f) {
			fprintf(f, "  killed by signal %d%s\n", WTERMSIG(status),
				WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
			fclose(f);
		}
	}
	if (ret != 0 || getenv("KURA_TEST_VERBOSE")) {
		snprintf(cmd, sizeof(cmd), "tail -n 40 '%s' >&2", log);
		if (system(cmd))
			fprintf(stderr, "  (no output)\n");
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", tmpdir, log);
	if (system(cmd))
		fprintf(stderr, "  cannot remove %s\n", tmpdir);
	return ret;
}

int main(int argc, char **argv)
{
	unsigned passed = 0, failed = 0, skipped = 0;

	kura_log_set_level(getenv("KURA_TEST_VERBOSE") ? KURA_LOG_DEBUG : KURA_LOG_INFO);
	for (unsigned i = 0; i < ntests; i++) {
		int r;

		if (argc > 1) {
			int want = 0;
			for (int a = 1; a < argc; a++)
				want |= strstr(tests[i].name, argv[a]) != NULL;
			if (!want)
				continue;
		}
		r = run_one(&tests[i]);
		if (r == 0) {
			printf("ok   %s\n", tests[i].name);
			passed++;
		} else if (r == 77) {
			printf("skip %s\n", tests[i].name);
			skipped++;
		} else {
			printf("FAIL %s\n", tests[i].name);
			failed++;
		}
	}
	printf("%u passed, %u failed, %u skipped\n", passed, failed, skipped);
	return failed ? 1 : 0;
}
