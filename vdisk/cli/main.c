/* vdisk: manages the vdisks of a kura node through blockd's control socket.
 * This file reads the command line and turns results into exit statuses;
 * the commands are in cmd_*.c, their help texts in help.c. */
#include "vdisk/cli/cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAIN_USAGE "vdisk [--socket PATH] COMMAND [ARGS]"

static const struct {
	const char *flag;
	unsigned opt;
} flags[] = {
	{ "--json", OPT_JSON },
	{ "--wait", OPT_WAIT },
	{ "--full", OPT_FULL },
	{ "--shrink", OPT_SHRINK },
	{ "--mutual", OPT_MUTUAL },
	{ "--clear", OPT_CLEAR },
	{ "--watch", OPT_WATCH },
	{ "--force", OPT_FORCE },
};

static int is_flag(const char *arg)
{
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		if (!strcmp(arg, flags[i].flag))
			return 1;
	return 0;
}

static int is_help(const char *arg)
{
	return !strcmp(arg, "--help") || !strcmp(arg, "-h");
}

/* The start of the one error line; stdout first, so that the two streams
 * interleave in order on a terminal. */
static void say(const char *fmt, va_list ap)
{
	fflush(stdout);
	fputs("vdisk: ", stderr);
	vfprintf(stderr, fmt, ap);
}

int cli_fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return err;
}

int cli_usage(struct cli *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(fmt, ap);
	va_end(ap);
	if (c->cmd)
		fprintf(stderr, "; usage: vdisk %s%s%s\n", c->cmd->name, *c->cmd->args ? " " : "",
			c->cmd->args);
	else
		fputs("; usage: " MAIN_USAGE " (see: vdisk help)\n", stderr);
	return CLI_E_USAGE;
}

static void print_main_help(void)
{
	printf("usage: " MAIN_USAGE "\n\n"
	       "Manages the vdisks of a kura node: thin virtual disks with snapshots and\n"
	       "clones, served by blockd, also as iSCSI targets. vdisk talks to blockd over\n"
	       "its control socket: --socket PATH, else $KURA_SOCKET, else\n"
	       CLI_DEFAULT_SOCKET ". --socket may also follow the command.\n\nCommands:\n");
	for (size_t i = 0; i < cli_ncmds; i++) {
		char line[160];

		snprintf(line, sizeof(line), "%s %s", cli_cmds[i].name, cli_cmds[i].args);
		/* A usage too long for its column gets a line of its own. */
		if (strlen(line) > 41)
			printf("  %s\n  %-41s %s\n", line, "", cli_cmds[i].summary);
		else
			printf("  %-41s %s\n", line, cli_cmds[i].summary);
	}
	printf("  %-41s %s\n\n", "help [COMMAND]", "this text, or a command's details");
	printf("Names: 1 to 64 characters from A-Z a-z 0-9 . _ -, not starting with . or -.\n"
	       "SIZE: bytes, or a number with K, M, G, T or P (powers of 1024); a multiple of\n"
	       "4 KiB, from 4 KiB to 1 PiB.\n"
	       "Exit status: 0 done; 1 blockd refused or failed, or a check here failed (bad\n"
	       "name, size, file or initiator name, fsck found problems, a waited-for job\n"
	       "failed); 2 the command line is wrong; 130 Ctrl-C while waiting for a job (it\n"
	       "keeps running) or while a secret is asked for.\n"
	       "Errors are one line on stderr starting with \"vdisk: \".\n"
	       "Run 'vdisk COMMAND --help' for the details of a command.\n");
}

static void print_cmd_help(const struct cli_cmd *cmd)
{
	printf("usage: vdisk %s%s%s\n\n%s", cmd->name, *cmd->args ? " " : "", cmd->args,
	       cmd->help);
}

/* The command named by argv[0] (and argv[1] for two-word commands); *used
 * says how many words it took. */
static const struct cli_cmd *find_cmd(int argc, char **argv, int *used)
{
	for (size_t i = 0; i < cli_ncmds; i++) {
		const char *name = cli_cmds[i].name, *sp = strchr(name, ' ');

		if (!sp && !strcmp(argv[0], name)) {
			*used = 1;
			return &cli_cmds[i];
		}
		if (sp && argc > 1 && !strncmp(argv[0], name, (size_t)(sp - name)) &&
		    !argv[0][sp - name] && !strcmp(argv[1], sp + 1)) {
			*used = 2;
			return &cli_cmds[i];
		}
	}
	return NULL;
}

/* "--socket PATH" or "--socket=PATH" at argv[*i]: 1 when taken, 0 when argv[*i]
 * is something else, CLI_E_USAGE when the path is missing. */
static int take_socket(struct cli *c, int argc, char **argv, int *i)
{
	if (!strncmp(argv[*i], "--socket=", 9)) {
		c->socket = argv[*i] + 9;
	} else if (!strcmp(argv[*i], "--socket")) {
		if (*i + 1 >= argc)
			return cli_usage(c, "--socket needs a PATH");
		c->socket = argv[++*i];
	} else {
		return 0;
	}
	if (!*c->socket)
		return cli_usage(c, "--socket needs a PATH");
	return 1;
}

static int take_flag(struct cli *c, const char *arg)
{
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		if (!strcmp(arg, flags[i].flag)) {
			if (!(c->cmd->opts & flags[i].opt))
				return cli_usage(c, "%s does not take %s", c->cmd->name, arg);
			c->opts |= flags[i].opt;
			return 0;
		}
	}
	return cli_usage(c, "unknown option %s", arg);
}

/* Moves the command's positional arguments to the front of argv and takes
 * its options, wherever they stand; "--" ends the options. Returns how many
 * positional arguments there are (*help is set by --help), or CLI_E_USAGE. */
static int parse_cmd_args(struct cli *c, int argc, char **argv, int *help)
{
	int n = 0, dashdash = 0, err;

	for (int i = 0; i < argc; i++) {
		char *a = argv[i];

		if (dashdash || a[0] != '-' || !a[1]) {
			argv[n++] = a;
		} else if (!strcmp(a, "--")) {
			dashdash = 1;
		} else if (is_help(a)) {
			*help = 1;
		} else if ((err = take_socket(c, argc, argv, &i)) != 0) {
			if (err < 0)
				return err;
		} else if ((c->cmd->opts & OPT_VALUES) && !strncmp(a, "--", 2) && !is_flag(a)) {
			argv[n++] = a; /* --key VALUE: the command reads it */
		} else if ((err = take_flag(c, a)) < 0) {
			return err;
		}
	}
	return n;
}

/* Whether cmd is a two-word command whose first word is word ("job"). */
static int in_group(const struct cli_cmd *cmd, const char *word)
{
	size_t n = strlen(word);

	return !strncmp(cmd->name, word, n) && cmd->name[n] == ' ';
}

/* Prints the help of every command of the group; returns how many. */
static int group_help(const char *word)
{
	int found = 0;

	for (size_t i = 0; i < cli_ncmds; i++) {
		if (!in_group(&cli_cmds[i], word))
			continue;
		if (found++)
			putchar('\n');
		print_cmd_help(&cli_cmds[i]);
	}
	return found;
}

/* "vdisk job show ID [--json], or vdisk job cancel ID" into buf; returns
 * how many commands the group has. */
static int group_usages(const char *word, char *buf, size_t len)
{
	size_t used = 0;
	int found = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < cli_ncmds && used < len; i++) {
		if (!in_group(&cli_cmds[i], word))
			continue;
		used += (size_t)snprintf(buf + used, len - used, "%svdisk %s %s", found++ ? ", or " : "",
					 cli_cmds[i].name, cli_cmds[i].args);
	}
	return found;
}

static int help_cmd(struct cli *c, int argc, char **argv)
{
	const struct cli_cmd *cmd;
	int used;

	if (!argc) {
		print_main_help();
		return 0;
	}
	cmd = find_cmd(argc, argv, &used);
	if (cmd && used == argc)
		print_cmd_help(cmd);
	else if (argc > 1 || !group_help(argv[0]))
		return cli_usage(c, "no command '%s'", argv[0]);
	return 0;
}

static int run_cmd(struct cli *c, int argc, char **argv)
{
	int used, n, help = 0;
	char usage[512];
	const char *env;

	c->cmd = find_cmd(argc, argv, &used);
	if (!c->cmd && group_usages(argv[0], usage, sizeof(usage))) {
		if (argc > 1 && is_help(argv[1])) {
			group_help(argv[0]);
			return 0;
		}
		if (argc > 1 && argv[1][0] != '-')
			return cli_fail(CLI_E_USAGE, "unknown command '%s %.40s'; usage: %s", argv[0],
					argv[1], usage);
		return cli_fail(CLI_E_USAGE, "%s needs a subcommand; usage: %s", argv[0], usage);
	}
	if (!c->cmd)
		return cli_usage(c, "unknown command '%s'", argv[0]);
	n = parse_cmd_args(c, argc - used, argv + used, &help);
	if (n < 0)
		return n;
	if (help) {
		print_cmd_help(c->cmd);
		return 0;
	}
	if (n < c->cmd->min_args || n > c->cmd->max_args)
		return cli_usage(c, "%s %s", c->cmd->name,
				 n < c->cmd->min_args ? "needs more arguments" : "has too many arguments");
	env = getenv("KURA_SOCKET");
	if (!c->socket)
		c->socket = env && *env ? env : CLI_DEFAULT_SOCKET;
	c->tty = isatty(STDOUT_FILENO);
	return c->cmd->run(c, n, argv + used);
}

static int run(struct cli *c, int argc, char **argv)
{
	int i = 0, err;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (is_help(argv[i])) {
			print_main_help();
			return 0;
		}
		err = take_socket(c, argc, argv, &i);
		if (err < 0)
			return err;
		if (!err)
			return cli_usage(c, "unknown option %s", argv[i]);
	}
	if (i == argc)
		return cli_usage(c, "no command given");
	if (!strcmp(argv[i], "help"))
		return help_cmd(c, argc - i - 1, argv + i + 1);
	return run_cmd(c, argc - i, argv + i);
}

int main(int argc, char **argv)
{
	struct cli c = { .conn = { .fd = -1 }, .intr_fd = -1 };
	int err = run(&c, argc - 1, argv + 1);

	cli_disconnect(&c);
	if (fflush(stdout) && !err)
		err = cli_fail(-errno, "cannot write the output: %s", strerror(errno));
	if (!err)
		return 0;
	if (err == CLI_E_USAGE)
		return 2;
	return err == CLI_E_INTR ? 130 : 1;
}
