/* vdisk iscsi list, show, acl, chap, cache: who may log in to the iSCSI
 * targets blockd serves, and their write cache (docs/iscsi.md). blockd checks every setting again; the
 * checks here explain a mistake in the words of the command line, before a
 * secret has been typed in vain. */
#include "vdisk/cli/cli.h"

#include "common/util.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#define SECRET_MIN 12u  /* what Windows and ESXi demand; blockd's bound too */
#define SECRET_MAX 255u /* blockd's bound, for user names as well */
#define IQN_MAX 223u    /* RFC 3720 3.2.6.1 */
#define TARGET_NAME_MAX (2 * CLI_NAME_MAX + 1)

static int is_true(const struct kura_json *o, const char *key)
{
	const struct kura_json *v = cli_get(o, key, KURA_JSON_BOOL);
	int b = 0;

	return v && !kura_json_bool(v, &b) && b;
}

/* "vm1" or "vm1@s1": the name blockd knows the target by. */
static const char *target_name(const struct kura_json *o, char *buf, size_t len)
{
	const struct kura_json *snap = cli_get(o, "snapshot", KURA_JSON_STR);

	snprintf(buf, len, "%s%s%s", cli_str(o, "vdisk"), snap ? "@" : "",
		 snap ? kura_json_str(snap) : "");
	return buf;
}

static int has_mutual(const struct kura_json *chap)
{
	return cli_get(chap, "mutual_user", KURA_JSON_STR) != NULL;
}

/* ---- list ---- */

/* "none", "one-way" or "mutual" for one entry of the list. The list only
 * says whether CHAP is set, so a target with CHAP is asked for its user
 * names; each answer is small and on the same connection. */
static int chap_mode(struct cli *c, const struct kura_json *o, const char **mode)
{
	char name[TARGET_NAME_MAX + 1];
	struct kura_json *ans;
	struct kura_jw w;
	int err;

	*mode = "none";
	if (!is_true(o, "chap"))
		return 0;
	cli_req(&w, "iscsi_show");
	kura_jw_str(&w, "name", target_name(o, name, sizeof(name)));
	if ((err = cli_call(c, &w, &ans)))
		return err;
	*mode = has_mutual(cli_get(ans, "chap", KURA_JSON_OBJ)) ? "mutual" : "one-way";
	kura_json_free(ans);
	return 0;
}

static int print_portal(const struct kura_json *ans)
{
	if (cli_get(ans, "portal", KURA_JSON_STR))
		printf("portal %s\n", cli_str(ans, "portal"));
	else
		printf("iSCSI is off: blockd serves no portal (start it with --iscsi ADDR:PORT)\n");
	return 0;
}

static int print_targets(struct cli *c, const struct kura_json *ans)
{
	static const char *const hdr[] = { "TARGET", "VDISK", "ACCESS", "SESSIONS", "ACL", "CHAP" };
	const struct kura_json *arr = cli_need(ans, "targets", KURA_JSON_ARR);
	size_t n = arr ? kura_json_len(arr) : 0;
	const char **modes;
	struct cli_table t;
	char name[TARGET_NAME_MAX + 1];
	int err = 0;

	if (!arr)
		return -EPROTO;
	print_portal(ans);
	if (!n) {
		printf("no targets: each vdisk and snapshot is one; make one with: vdisk create "
		       "NAME SIZE\n");
		return 0;
	}
	/* Asked before the table is drawn, so that an error leaves no half table. */
	if (!(modes = calloc(n, sizeof(*modes))))
		return cli_fail(-ENOMEM, "out of memory");
	for (size_t i = 0; i < n && !err; i++)
		err = chap_mode(c, kura_json_at(arr, i), &modes[i]);
	if (err)
		goto out_free;
	cli_table_init(&t, KURA_ARRAY_SIZE(hdr), hdr);
	for (size_t i = 0; i < n; i++) {
		const struct kura_json *o = kura_json_at(arr, i);
		uint64_t acl = cli_u64(o, "acl");

		cli_table_add(&t, "%s", cli_str(o, "target"));
		cli_table_add(&t, "%s", target_name(o, name, sizeof(name)));
		cli_table_add(&t, "%s", is_true(o, "read_only") ? "ro" : "rw");
		cli_table_add(&t, "%llu", (unsigned long long)cli_u64(o, "sessions"));
		if (acl)
			cli_table_add(&t, "%llu", (unsigned long long)acl);
		else
			cli_table_add(&t, "any");
		cli_table_add(&t, "%s", modes[i]);
	}
	err = cli_table_print(&t);
out_free:
	free(modes);
	return err;
}

int cli_cmd_iscsi_list(struct cli *c, int argc, char **argv)
{
	struct kura_json *ans;
	int err;

	(void)argc;
	(void)argv;
	if ((err = cli_call_op(c, "iscsi_list", &ans)))
		return err;
	if (c->opts & OPT_JSON)
		err = cli_need(ans, "targets", KURA_JSON_ARR) ? cli_print_json(ans, "ok") : -EPROTO;
	else
		err = print_targets(c, ans);
	kura_json_free(ans);
	return err;
}

/* ---- show ---- */

/* The table of docs/iscsi.md "Who may log in", for this target. */
static const char *who_may(size_t nacl, int chap)
{
	if (!nacl)
		return chap ? "any initiator that knows the CHAP secret (the ACL is empty)"
			    : "any initiator that reaches the portal (the ACL is empty, no CHAP)";
	return chap ? "only the initiators on the ACL, with the CHAP secret"
		    : "only the initiators on the ACL";
}

static void print_sessions(const struct kura_json *sess)
{
	size_t n = sess ? kura_json_len(sess) : 0;
	char tb[40];

	if (!n) {
		cli_kv("sessions:", "none");
		return;
	}
	cli_kv("sessions:", "%zu", n);
	for (size_t i = 0; i < n; i++) {
		const struct kura_json *s = kura_json_at(sess, i);

		if (kura_json_get(s, "via")) /* logged in at another node's portal */
			printf("  %s through node %s, isid %s, since %s\n", cli_str(s, "initiator"),
			       cli_str(s, "via"), cli_str(s, "isid"),
			       cli_fmt_time(cli_u64(s, "connected"), tb, sizeof(tb)));
		else
			printf("  %s from %s, isid %s, tsih %llu, since %s\n",
			       cli_str(s, "initiator"), cli_str(s, "address"), cli_str(s, "isid"),
			       (unsigned long long)cli_u64(s, "tsih"),
			       cli_fmt_time(cli_u64(s, "connected"), tb, sizeof(tb)));
	}
}

static int print_target(const struct kura_json *o)
{
	const struct kura_json *acl = cli_get(o, "acl", KURA_JSON_ARR);
	const struct kura_json *chap = cli_get(o, "chap", KURA_JSON_OBJ);
	size_t nacl = acl ? kura_json_len(acl) : 0;
	char name[TARGET_NAME_MAX + 1];

	cli_kv("target:", "%s", cli_str(o, "target"));
	cli_kv("vdisk:", "%s", target_name(o, name, sizeof(name)));
	cli_kv("access:", "%s", is_true(o, "read_only") ? "read-only (a snapshot)" : "read-write");
	if (cli_get(o, "portal", KURA_JSON_STR))
		cli_kv("portal:", "%s", cli_str(o, "portal"));
	else
		cli_kv("portal:", "none: iSCSI is off");
	cli_kv("may log in:", "%s", who_may(nacl, chap != NULL));
	cli_kv("acl:", "%s", nacl ? cli_str_at(acl, 0) : "empty");
	for (size_t i = 1; i < nacl; i++)
		cli_kv("", "%s", cli_str_at(acl, i));
	if (!chap)
		cli_kv("chap:", "none");
	else if (has_mutual(chap))
		cli_kv("chap:", "mutual: initiators answer as user %s, the target as user %s",
		       cli_str(chap, "user"), cli_str(chap, "mutual_user"));
	else
		cli_kv("chap:", "one-way: initiators answer as user %s", cli_str(chap, "user"));
	if (!strcmp(cli_str(o, "write_cache"), "writeback"))
		cli_kv("write cache:", "writeback: writes without FUA complete before they are "
		       "durable; SYNCHRONIZE CACHE makes them so");
	else if (!strcmp(cli_str(o, "write_cache"), "writethrough"))
		cli_kv("write cache:", "writethrough: every write is durable when it completes");
	print_sessions(cli_get(o, "sessions", KURA_JSON_ARR));
	return 0;
}

/* Sends op for the target NAME[@SNAP] (checked here first) with the fields
 * add() writes; the answer is the target, as iscsi_show gives it. */
static int target_call(struct cli *c, const char *op, const char *name,
		       void (*add)(struct kura_jw *w, const void *arg), const void *arg,
		       struct kura_json **ans)
{
	struct cli_target t;
	struct kura_jw w;
	int err;

	*ans = NULL;
	if ((err = cli_parse_target(name, 0, &t)))
		return err;
	cli_req(&w, op);
	kura_jw_str(&w, "name", name);
	if (add)
		add(&w, arg);
	return cli_call(c, &w, ans);
}

int cli_cmd_iscsi_show(struct cli *c, int argc, char **argv)
{
	struct kura_json *ans;
	int err;

	(void)argc;
	if ((err = target_call(c, "iscsi_show", argv[0], NULL, NULL, &ans)))
		return err;
	err = (c->opts & OPT_JSON) ? cli_print_json(ans, "ok") : print_target(ans);
	kura_json_free(ans);
	return err;
}

/* ---- acl ---- */

static int all_of(const char *s, size_t n, const char *set)
{
	return strspn(s, set) >= n;
}

#define DIGITS "0123456789"
#define HEX DIGITS "abcdef"

/* iqn.YYYY-MM.reverse.domain[:anything]: the date, then labels of a-z 0-9 -
 * between dots, then optionally ':' and the rest. */
static const char *iqn_form(const char *s)
{
	const char *dom, *colon;
	size_t dn;
	int month;

	if (strlen(s) < 12 || !all_of(s + 4, 4, DIGITS) || s[8] != '-' ||
	    !all_of(s + 9, 2, DIGITS) || s[11] != '.')
		return "iqn. must be followed by a date YYYY-MM and a dot";
	dom = s + 12;
	colon = strchr(dom, ':');
	dn = colon ? (size_t)(colon - dom) : strlen(dom);
	month = (s[9] - '0') * 10 + (s[10] - '0');
	if (month < 1 || month > 12)
		return "its date has no month 01 to 12";
	if (!dn)
		return "it has no domain name after the date";
	if (dom[0] == '.' || dom[dn - 1] == '.' || memmem(dom, dn, "..", 2))
		return "its domain name has an empty part between dots";
	if (colon && !colon[1])
		return "it ends with ':'";
	return NULL;
}

static const char *hex_form(const char *s, size_t want1, size_t want2)
{
	size_t n = strlen(s + 4);

	if (!all_of(s + 4, n, HEX) || (n != want1 && n != want2))
		return want1 == want2 ? "eui. must be followed by 16 hex digits"
				      : "naa. must be followed by 16 or 32 hex digits";
	return NULL;
}

/* Why s is not an initiator name (NULL when it is one); s is in lower case
 * and at most IQN_MAX bytes long. */
static const char *iqn_problem(const char *s)
{
	size_t n = strlen(s);

	if (!n)
		return "it is empty";
	if (!all_of(s, n, HEX "ghijklmnopqrstuvwxyz.-:"))
		return "it holds a character that is not a-z, 0-9, '.', '-' or ':'";
	if (!strncmp(s, "iqn.", 4))
		return iqn_form(s);
	if (!strncmp(s, "eui.", 4))
		return hex_form(s, 16, 16);
	if (!strncmp(s, "naa.", 4))
		return hex_form(s, 16, 32);
	return "it does not start with iqn., eui. or naa.";
}

/* iSCSI names compare without regard to case and are written in lower case
 * (RFC 3722); blockd takes them only so. A name with capitals is refused
 * with the name to write instead, when that one is valid. */
static int check_iqn(const char *s)
{
	char low[IQN_MAX + 2];
	const char *why;
	size_t n = strlen(s);

	if (n > IQN_MAX) {
		why = "it is longer than 223 bytes";
	} else {
		for (size_t i = 0; i <= n; i++)
			low[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] - 'A' + 'a' : s[i]);
		why = iqn_problem(low);
		if (!why && strcmp(low, s))
			return cli_fail(-EINVAL, "'%s' is not an initiator name: iSCSI names are "
					"written in lower case: %s", s, low);
	}
	if (!why)
		return 0;
	return cli_fail(-EINVAL, "'%.240s' is not an initiator name: %s; use "
			"iqn.YYYY-MM.reverse.domain[:name], eui.<16 hex> or naa.<16 or 32 hex>",
			s, why);
}

struct acl_args {
	const char *action, *iqn;
};

static void add_acl(struct kura_jw *w, const void *arg)
{
	const struct acl_args *a = arg;

	kura_jw_str(w, "action", a->action);
	kura_jw_str(w, "initiator", a->iqn);
}

int cli_cmd_iscsi_acl(struct cli *c, int argc, char **argv)
{
	struct acl_args a = { argv[1], argv[2] };
	const struct kura_json *acl;
	struct kura_json *ans;
	int add = !strcmp(a.action, "add"), err;
	size_t n;

	(void)argc;
	if (!add && strcmp(a.action, "remove"))
		return cli_usage(c, "the second argument must be add or remove, not '%.40s'",
				 a.action);
	if ((err = check_iqn(a.iqn)) || (err = target_call(c, "iscsi_acl", argv[0], add_acl, &a, &ans)))
		return err;
	acl = cli_get(ans, "acl", KURA_JSON_ARR);
	n = acl ? kura_json_len(acl) : 0;
	if (n)
		printf("%s %s %s the ACL of %s; %zu initiator%s may log in\n", add ? "added" : "removed",
		       a.iqn, add ? "to" : "from", argv[0], n, n == 1 ? "" : "s");
	else
		printf("removed %s from the ACL of %s; the ACL is empty: any initiator may log in\n",
		       a.iqn, argv[0]);
	kura_json_free(ans);
	return 0;
}

/* ---- cache ---- */

static void add_cache(struct kura_jw *w, const void *arg)
{
	kura_jw_str(w, "mode", arg);
}

int cli_cmd_iscsi_cache(struct cli *c, int argc, char **argv)
{
	struct kura_json *ans;
	int err;

	(void)argc;
	if (strcmp(argv[1], "writeback") && strcmp(argv[1], "writethrough"))
		return cli_usage(c, "the second argument must be writeback or writethrough, not "
				 "'%.40s'", argv[1]);
	if (strchr(argv[0], '@'))
		return cli_fail(-EROFS, "%s is a read-only snapshot target: it has no write cache",
				argv[0]);
	if ((err = target_call(c, "iscsi_cache", argv[0], add_cache, argv[1], &ans)))
		return err;
	printf("write cache of %s: %s\n", argv[0],
	       !strcmp(argv[1], "writeback")
		       ? "writeback (writes without FUA complete before they are durable; "
			 "SYNCHRONIZE CACHE makes them so)"
		       : "writethrough (every write is durable when it completes)");
	kura_json_free(ans);
	return 0;
}

/* ---- chap ---- */

struct chap_args {
	const char *user, *secret, *muser, *msecret;
	char sbuf[SECRET_MAX + 2], mbuf[SECRET_MAX + 2]; /* a line and its newline */
	int clear;
};

static void add_chap(struct kura_jw *w, const void *arg)
{
	const struct chap_args *a = arg;

	if (a->clear) {
		kura_jw_bool(w, "clear", 1);
		return;
	}
	kura_jw_str(w, "user", a->user);
	kura_jw_str(w, "secret", a->secret);
	if (a->muser) {
		kura_jw_str(w, "mutual_user", a->muser);
		kura_jw_str(w, "mutual_secret", a->msecret);
	}
}

/* Ends buf at its line's end: 0, or -EMSGSIZE when no newline came within
 * cap - 1 bytes (the secret is too long) and more input follows. */
static int end_line(char *buf, size_t n, size_t cap, int more)
{
	if (n && buf[n - 1] == '\n')
		n--;
	else if (n == cap - 1 && more)
		return -EMSGSIZE;
	if (n && buf[n - 1] == '\r') /* a file saved on Windows */
		n--;
	buf[n] = '\0';
	return 0;
}

/* One line from a terminal, with echo off. SIGINT and its kin are taken
 * through a signalfd while echo is off, so that they cannot end us with the
 * terminal left silent; they end the read instead. */
static int read_tty(char *buf, size_t cap, size_t *len)
{
	struct pollfd p[2] = { { .fd = STDIN_FILENO, .events = POLLIN }, { .events = POLLIN } };
	struct termios old, quiet;
	sigset_t set, oldset;
	int err = 0;

	*len = 0;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGHUP);
	if (tcgetattr(STDIN_FILENO, &old))
		return cli_fail(-errno, "cannot read the terminal's settings: %s", strerror(errno));
	if (sigprocmask(SIG_BLOCK, &set, &oldset))
		return cli_fail(-errno, "sigprocmask: %s", strerror(errno));
	if ((p[1].fd = signalfd(-1, &set, SFD_CLOEXEC)) < 0) {
		err = cli_fail(-errno, "signalfd: %s", strerror(errno));
		goto out_mask;
	}
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	quiet.c_lflag |= ECHONL; /* the Enter still shows */
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet)) {
		err = cli_fail(-errno, "cannot turn off the terminal's echo: %s", strerror(errno));
		goto out_close;
	}
	while (!err && *len < cap - 1 && (!*len || buf[*len - 1] != '\n')) {
		ssize_t n;

		if (poll(p, 2, -1) < 0) {
			err = errno == EINTR ? 0 : cli_fail(-errno, "poll: %s", strerror(errno));
			continue;
		}
		if (p[1].revents & POLLIN) {
			err = CLI_E_INTR;
			break;
		}
		n = read(STDIN_FILENO, buf + *len, cap - 1 - *len);
		if (n < 0 && errno != EINTR && errno != EAGAIN)
			err = cli_fail(-errno, "cannot read standard input: %s", strerror(errno));
		else if (n == 0)
			break;
		else if (n > 0)
			*len += (size_t)n;
	}
	/* TCSAFLUSH also drops what was typed past the line we took. */
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
out_close:
	close(p[1].fd);
out_mask:
	/* After a signal we only exit: it stays blocked, as in cli_wait_job. */
	if (err != CLI_E_INTR)
		sigprocmask(SIG_SETMASK, &oldset, NULL);
	return err;
}

/* A SECRET given as "-": one line of standard input (a prompt and no echo
 * on a terminal), so that the secret is not in the process list. */
static int secret_arg(const char *arg, const char *prompt, char *buf, size_t cap,
		      const char **out)
{
	size_t n = 0;
	int err = 0, tty = isatty(STDIN_FILENO);

	*out = arg;
	if (strcmp(arg, "-"))
		return 0;
	if (tty) {
		fflush(stdout);
		fprintf(stderr, "%s: ", prompt);
		if ((err = read_tty(buf, cap, &n))) {
			if (err == CLI_E_INTR)
				fputc('\n', stderr);
			return err == CLI_E_INTR ? cli_fail(err, "interrupted; CHAP unchanged") : err;
		}
	} else if (fgets(buf, (int)cap, stdin)) {
		n = strlen(buf);
	} else if (ferror(stdin)) {
		return cli_fail(-EIO, "cannot read the %s from standard input", prompt);
	}
	if (!n)
		return cli_fail(-EINVAL, "no %s on standard input: give it as one line", prompt);
	err = end_line(buf, n, cap, tty ? 1 : !feof(stdin));
	if (err)
		return cli_fail(-EINVAL, "a CHAP secret must be %u to %u characters long; the line "
				"on standard input is longer", SECRET_MIN, SECRET_MAX);
	*out = buf;
	return 0;
}

/* The bounds blockd applies (docs/control.md), with the same words. */
static int check_cred(const char *what, const char *s, int secret)
{
	size_t n = strlen(s);

	if (secret && (n < SECRET_MIN || n > SECRET_MAX))
		return cli_fail(-EINVAL, "a CHAP %s must be %u to %u characters long, not %zu", what,
				SECRET_MIN, SECRET_MAX, n);
	if (!secret && (n < 1 || n > SECRET_MAX))
		return cli_fail(-EINVAL, "a CHAP %s must be 1 to %u characters long, not %zu", what,
				SECRET_MAX, n);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return cli_fail(-EINVAL, "a CHAP %s may not hold control characters", what);
	return 0;
}

/* The command line of `iscsi chap` without --clear. The user names are
 * checked before a secret is asked for. */
static int chap_creds(struct cli *c, int argc, char **argv, struct chap_args *a)
{
	int mutual = !!(c->opts & OPT_MUTUAL), err;
	struct cli_target t;
	char prompt[96];

	if (argc == 1)
		return cli_usage(c, "give the USER and SECRET initiators must log in with, or --clear");
	if (mutual && argc != 5)
		return cli_usage(c, "--mutual needs a second USER and SECRET, the target's");
	if (!mutual && argc == 5)
		return cli_usage(c, "a second USER and SECRET need --mutual");
	if (argc == 2)
		return cli_usage(c, "USER needs a SECRET");
	if (argc == 4)
		return cli_usage(c, "mutual CHAP takes --mutual and a second USER and SECRET");
	if ((err = cli_parse_target(argv[0], 0, &t)) || (err = check_cred("user name", argv[1], 0)) ||
	    (mutual && (err = check_cred("mutual user name", argv[3], 0))))
		return err;
	a->user = argv[1];
	snprintf(prompt, sizeof(prompt), "CHAP secret of user %.60s", argv[1]);
	if ((err = secret_arg(argv[2], prompt, a->sbuf, sizeof(a->sbuf), &a->secret)) ||
	    (err = check_cred("secret", a->secret, 1)))
		return err;
	if (!mutual)
		return 0;
	a->muser = argv[3];
	snprintf(prompt, sizeof(prompt), "mutual CHAP secret of user %.60s", argv[3]);
	if ((err = secret_arg(argv[4], prompt, a->mbuf, sizeof(a->mbuf), &a->msecret)) ||
	    (err = check_cred("mutual secret", a->msecret, 1)))
		return err;
	if (!strcmp(a->secret, a->msecret))
		return cli_fail(-EINVAL, "the mutual CHAP secret must differ from the initiator's");
	return 0;
}

int cli_cmd_iscsi_chap(struct cli *c, int argc, char **argv)
{
	struct chap_args a;
	struct kura_json *ans = NULL;
	int err;

	memset(&a, 0, sizeof(a));
	if (c->opts & OPT_CLEAR) {
		if (argc != 1 || (c->opts & OPT_MUTUAL))
			err = cli_usage(c, "--clear takes only the target's NAME");
		else
			err = 0;
		a.clear = 1;
	} else {
		err = chap_creds(c, argc, argv, &a);
	}
	if (!err)
		err = target_call(c, "iscsi_chap", argv[0], add_chap, &a, &ans);
	if (!err && a.clear)
		printf("CHAP cleared for %s: initiators log in without a secret\n", argv[0]);
	else if (!err && a.muser)
		printf("CHAP set for %s: mutual, initiators answer as user %s, the target as user %s\n",
		       argv[0], a.user, a.muser);
	else if (!err)
		printf("CHAP set for %s: one-way, initiators answer as user %s\n", argv[0], a.user);
	kura_json_free(ans);
	/* Secrets read from standard input are not left in memory. */
	explicit_bzero(&a, sizeof(a));
	return err;
}
