/* vdisk iscsi list, show, acl, chap. */
#include "vdisk/cli/cli.h"

#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SECRET_MIN 12u
#define SECRET_MAX 255u

static int print_targets(const struct kura_json *ans)
{
	static const char *const hdr[] = { "TARGET", "VDISK", "ACCESS", "SESSIONS", "ACL", "CHAP" };
	const struct kura_json *arr = cli_need(ans, "targets", KURA_JSON_ARR);
	const char *portal = cli_str(ans, "portal");
	struct cli_table t;

	if (!arr)
		return -EPROTO;
	if (strcmp(portal, "-"))
		printf("portal %s\n", portal);
	else
		printf("iSCSI is off (start blockd with --iscsi ADDR:PORT)\n");
	if (!kura_json_len(arr)) {
		printf("no targets (create a vdisk)\n");
		return 0;
	}
	cli_table_init(&t, KURA_ARRAY_SIZE(hdr), hdr);
	for (size_t i = 0; i < kura_json_len(arr); i++) {
		const struct kura_json *o = kura_json_at(arr, i);
		const struct kura_json *snap = cli_get(o, "snapshot", KURA_JSON_STR);
		const struct kura_json *ro = cli_get(o, "read_only", KURA_JSON_BOOL);
		const struct kura_json *chap = cli_get(o, "chap", KURA_JSON_BOOL);
		int b = 0;

		cli_table_add(&t, "%s", cli_str(o, "target"));
		cli_table_add(&t, "%s%s%s", cli_str(o, "vdisk"), snap ? "@" : "",
			      snap ? kura_json_str(snap) : "");
		cli_table_add(&t, "%s", ro && !kura_json_bool(ro, &b) && b ? "ro" : "rw");
		cli_table_add(&t, "%llu", (unsigned long long)cli_u64(o, "sessions"));
		if (cli_u64(o, "acl"))
			cli_table_add(&t, "%llu", (unsigned long long)cli_u64(o, "acl"));
		else
			cli_table_add(&t, "any");
		cli_table_add(&t, "%s", chap && !kura_json_bool(chap, &b) && b ? "yes" : "none");
	}
	return cli_table_print(&t);
}

int cli_cmd_iscsi_list(struct cli *c, int argc, char **argv)
{
	struct kura_json *ans;
	int err;

	(void)argc;
	(void)argv;
	if ((err = cli_call_op(c, "iscsi_list", &ans)))
		return err;
	if (c->opts & OPT_JSON) {
		err = cli_print_json(ans, "ok");
	} else {
		err = print_targets(ans);
	}
	kura_json_free(ans);
	return err;
}

static int print_target(const struct kura_json *o)
{
	const struct kura_json *acl = cli_get(o, "acl", KURA_JSON_ARR);
	const struct kura_json *chap = cli_get(o, "chap", KURA_JSON_OBJ);
	const struct kura_json *sess = cli_get(o, "sessions", KURA_JSON_ARR);
	const struct kura_json *ro = cli_get(o, "read_only", KURA_JSON_BOOL);
	char *who = NULL;
	int b = 0;

	cli_kv("target", "%s", cli_str(o, "target"));
	cli_kv("access", "%s", ro && !kura_json_bool(ro, &b) && b ? "read-only (snapshot)" : "read-write");
	cli_kv("portal", "%s", strcmp(cli_str(o, "portal"), "-") ? cli_str(o, "portal") : "iSCSI is off");
	if (!acl || !kura_json_len(acl)) {
		cli_kv("initiators", "any initiator that reaches the portal (empty ACL)");
	} else {
		if (!(who = cli_join(acl)))
			return -ENOMEM;
		cli_kv("initiators", "%s", who);
		free(who);
	}
	if (!chap)
		cli_kv("chap", "none");
	else if (strcmp(cli_str(chap, "mutual_user"), "-"))
		cli_kv("chap", "user %s, mutual: target user %s", cli_str(chap, "user"),
		       cli_str(chap, "mutual_user"));
	else
		cli_kv("chap", "user %s (one-way)", cli_str(chap, "user"));
	cli_kv("sessions", "%zu", sess ? kura_json_len(sess) : 0);
	for (size_t i = 0; sess && i < kura_json_len(sess); i++) {
		const struct kura_json *s = kura_json_at(sess, i);
		char tb[40];

		printf("  %s isid %s from %s since %s\n", cli_str(s, "initiator"), cli_str(s, "isid"),
		       cli_str(s, "address"), cli_fmt_time(cli_u64(s, "connected"), tb, sizeof(tb)));
	}
	return 0;
}

/* Sends op with "name" (NAME or NAME@SNAP, checked here first) plus the
 * fields add() writes, then shows the target in the answer. */
static int target_op(struct cli *c, const char *op, const char *name,
		     void (*add)(struct kura_jw *w, void *arg), void *arg, int quiet)
{
	struct cli_target t;
	struct kura_json *ans;
	struct kura_jw w;
	int err;

	if ((err = cli_parse_target(name, 0, &t)))
		return err;
	cli_req(&w, op);
	kura_jw_str(&w, "name", name);
	if (add)
		add(&w, arg);
	if ((err = cli_call(c, &w, &ans)))
		return err;
	if (c->opts & OPT_JSON)
		err = cli_print_json(ans, "ok");
	else if (!quiet)
		err = print_target(ans);
	kura_json_free(ans);
	return err;
}

int cli_cmd_iscsi_show(struct cli *c, int argc, char **argv)
{
	(void)argc;
	return target_op(c, "iscsi_show", argv[0], NULL, NULL, 0);
}

/* iqn.YYYY-MM.domain[:x], eui.<16 hex>, naa.<16 or 32 hex>; lower case. */
static int iqn_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 5 || n > 223)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '.' ||
		      s[i] == '-' || s[i] == ':'))
			return 0;
	if (!strncmp(s, "iqn.", 4))
		return n > 12 && isdigit((unsigned char)s[4]) && isdigit((unsigned char)s[7]) &&
		       s[8] == '-' && isdigit((unsigned char)s[9]) && isdigit((unsigned char)s[10]) &&
		       s[11] == '.';
	if (!strncmp(s, "eui.", 4) || !strncmp(s, "naa.", 4)) {
		for (size_t i = 4; i < n; i++)
			if (!isxdigit((unsigned char)s[i]))
				return 0;
		return !strncmp(s, "eui.", 4) ? n == 20 : (n == 20 || n == 36);
	}
	return 0;
}

struct acl_args {
	const char *action, *iqn;
};

static void add_acl(struct kura_jw *w, void *arg)
{
	struct acl_args *a = arg;

	kura_jw_str(w, "action", a->action);
	kura_jw_str(w, "initiator", a->iqn);
}

int cli_cmd_iscsi_acl(struct cli *c, int argc, char **argv)
{
	struct acl_args a = { argv[1], argv[2] };
	int err;

	(void)argc;
	if (strcmp(a.action, "add") && strcmp(a.action, "remove"))
		return cli_usage(c, "the second argument must be add or remove, not '%s'", a.action);
	if (!iqn_ok(a.iqn))
		return cli_fail(-EINVAL, "'%s' is not an initiator name: use iqn.YYYY-MM.domain[:name], "
				"eui.<16 hex> or naa.<hex>, in lower case", a.iqn);
	if ((err = target_op(c, "iscsi_acl", argv[0], add_acl, &a, 1)))
		return err;
	printf("%s %s %s the ACL of %s\n", !strcmp(a.action, "add") ? "added" : "removed", a.iqn,
	       !strcmp(a.action, "add") ? "to" : "from", argv[0]);
	return 0;
}

struct chap_args {
	const char *user, *secret, *muser, *msecret;
	char sbuf[SECRET_MAX + 2], mbuf[SECRET_MAX + 2];
	int clear;
};

static void add_chap(struct kura_jw *w, void *arg)
{
	struct chap_args *a = arg;

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

/* "-" reads the secret from standard input, one line. */
static int secret_arg(const char *arg, char *buf, size_t cap, const char **out)
{
	size_t n;

	if (strcmp(arg, "-")) {
		*out = arg;
		return 0;
	}
	if (!fgets(buf, (int)cap, stdin))
		return cli_fail(-EINVAL, "no secret on standard input");
	n = strcspn(buf, "\r\n");
	buf[n] = 0;
	*out = buf;
	return 0;
}

static int cred_ok(const char *what, const char *s, int secret)
{
	size_t n = strlen(s);

	if (secret && (n < SECRET_MIN || n > SECRET_MAX))
		return cli_fail(-EINVAL, "a CHAP %s must be %u to %u characters long, not %zu", what,
				SECRET_MIN, SECRET_MAX, n);
	if (!secret && (n < 1 || n > SECRET_MAX))
		return cli_fail(-EINVAL, "a CHAP %s must be 1 to %u characters long", what, SECRET_MAX);
	return 0;
}

int cli_cmd_iscsi_chap(struct cli *c, int argc, char **argv)
{
	struct chap_args a = { 0 };
	int err;

	if (c->opts & OPT_CLEAR) {
		if (argc != 1 || (c->opts & OPT_MUTUAL))
			return cli_usage(c, "--clear takes only the target's NAME");
		a.clear = 1;
	} else {
		if (argc != ((c->opts & OPT_MUTUAL) ? 5 : 3))
			return cli_usage(c, (c->opts & OPT_MUTUAL) ? "--mutual needs the target's USER and SECRET"
							       : "give NAME USER SECRET, or NAME --clear");
		a.user = argv[1];
		if ((err = secret_arg(argv[2], a.sbuf, sizeof(a.sbuf), &a.secret)))
			return err;
		if (argc == 5) {
			a.muser = argv[3];
			if ((err = secret_arg(argv[4], a.mbuf, sizeof(a.mbuf), &a.msecret)))
				return err;
		}
		if ((err = cred_ok("user name", a.user, 0)) || (err = cred_ok("secret", a.secret, 1)) ||
		    (a.muser && ((err = cred_ok("mutual user name", a.muser, 0)) ||
				 (err = cred_ok("mutual secret", a.msecret, 1)))))
			return err;
	}
	if ((err = target_op(c, "iscsi_chap", argv[0], add_chap, &a, 1)))
		return err;
	if (a.clear)
		printf("CHAP cleared for %s\n", argv[0]);
	else
		printf("CHAP set for %s (user %s%s%s)\n", argv[0], a.user, a.muser ? ", mutual user " : "",
		       a.muser ? a.muser : "");
	memset(&a, 0, sizeof(a));
	return 0;
}
