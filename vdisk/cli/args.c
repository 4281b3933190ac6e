/* Checks of names, sizes, ids and paths made before asking blockd. blockd
 * checks the same again; checking here too means a typo is explained
 * without a round trip and with the argument as the user typed it. */
#include "vdisk/cli/cli.h"

#include "common/util.h"

#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

/* name[0..n) need not end with NUL: NAME@SNAP is checked in place. */
static int check_name_n(const char *what, const char *name, size_t n)
{
	if (kura_name_ok(name, n))
		return 0;
	return cli_fail(-EINVAL, "invalid %s name '%.*s': use 1 to 64 characters from A-Z a-z "
			"0-9 . _ -, not starting with . or -", what, (int)(n > 80 ? 80 : n), name);
}

int cli_check_name(const char *what, const char *name)
{
	return check_name_n(what, name, strlen(name));
}

int cli_parse_size(const char *arg, uint64_t *out)
{
	char b[32];
	int err = kura_parse_size(arg, out);

	if (err == -ERANGE || (!err && *out > CLI_SIZE_MAX))
		return cli_fail(-EFBIG, "size %s is beyond the supported maximum of 1 PiB", arg);
	if (err)
		return cli_fail(-EINVAL, "invalid size '%.40s': give bytes or a number with K, M, G, "
				"T or P, like 10G", arg);
	if (!*out)
		return cli_fail(-EINVAL, "size must be at least 4 KiB");
	if (*out % CLI_BLOCK)
		return cli_fail(-EINVAL, "size %s (%llu bytes, %s) is not a multiple of 4 KiB "
				"(4096 bytes)", arg, (unsigned long long)*out,
				kura_fmt_size(*out, b, sizeof(b)));
	return 0;
}

int cli_parse_id(const char *arg, uint64_t *out)
{
	char *end;

	errno = 0;
	if (arg[0] >= '0' && arg[0] <= '9') {
		*out = strtoull(arg, &end, 10);
		if (!errno && !*end)
			return 0;
	}
	return cli_fail(-EINVAL, "invalid job id '%.40s': give the number shown by: vdisk jobs",
			arg);
}

int cli_parse_target(const char *arg, int need_snap, struct cli_target *t)
{
	const char *at = strchr(arg, '@');
	size_t n = at ? (size_t)(at - arg) : strlen(arg);

	if (need_snap && !at)
		return cli_fail(-EINVAL, "'%.80s' names no snapshot: write NAME@SNAP", arg);
	if (check_name_n("vdisk", arg, n) || (at && cli_check_name("snapshot", at + 1)))
		return -EINVAL;
	snprintf(t->name, sizeof(t->name), "%.*s", (int)n, arg);
	snprintf(t->snap, sizeof(t->snap), "%s", at ? at + 1 : "");
	return 0;
}

int cli_import_path(const char *file, char **out)
{
	*out = realpath(file, NULL);
	if (*out)
		return 0;
	return cli_fail(-errno, "cannot import '%s': %s", file, strerror(errno));
}

int cli_export_path(const char *file, char **out)
{
	char *d = strdup(file), *b = strdup(file), *dir = NULL;
	const char *base;
	int err;

	if (!d || !b) {
		err = cli_fail(-ENOMEM, "out of memory");
		goto out_free;
	}
	base = basename(b);
	if (!*file || file[strlen(file) - 1] == '/' || !strcmp(base, ".") ||
	    !strcmp(base, "..")) {
		err = cli_fail(-EISDIR, "cannot export to '%s': give a file name, not a directory",
			       file);
		goto out_free;
	}
	dir = realpath(dirname(d), NULL);
	if (!dir) {
		err = cli_fail(-errno, "cannot export to '%s': %s", file, strerror(errno));
		goto out_free;
	}
	/* The root needs no separator of its own: "/" + "x" is "/x". */
	if (asprintf(out, "%s/%s", strcmp(dir, "/") ? dir : "", base) < 0)
		err = cli_fail(-ENOMEM, "out of memory");
	else
		err = 0;
	free(dir);
out_free:
	free(d);
	free(b);
	return err;
}
