/* Persistent reservations (SPC-4 5.13, PERSISTENT RESERVE IN/OUT) and
 * RESERVE(6)/RELEASE(6). Registrations are keyed by initiator port name
 * (the iSCSI initiator name with its ISID). Every change is saved through
 * the backend's pr_save before the command is answered, so an acknowledged
 * PERSISTENT RESERVE OUT survives a crash. A restart of blockd is not a
 * power loss from the initiators' side (their sessions come back to the
 * same target), so registrations are kept whatever APTPL said; APTPL is
 * recorded and reported. */
#include "iscsi-target/scsi_int.h"

#include "common/json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REGS 128u
#define IPORT_MAX 280u

enum { WE = 1, EA = 3, WE_RO = 5, EA_RO = 6, WE_AR = 7, EA_AR = 8 };

struct reg {
	char iport[IPORT_MAX];
	uint64_t key;
};

struct scsi_pr {
	struct reg regs[MAX_REGS];
	unsigned n;
	uint32_t gen;
	bool aptpl;
	bool resv;
	uint8_t type;
	char holder[IPORT_MAX]; /* for WE/EA/RO types: the nexus that reserved */
};

static bool type_ok(uint8_t t)
{
	return t == WE || t == EA || t == WE_RO || t == EA_RO || t == WE_AR || t == EA_AR;
}

static bool all_reg_type(uint8_t t) { return t == WE_AR || t == EA_AR; }

static struct reg *reg_find(struct scsi_pr *pr, const char *iport)
{
	for (unsigned i = 0; i < pr->n; i++)
		if (!strcmp(pr->regs[i].iport, iport))
			return &pr->regs[i];
	return NULL;
}

static void reg_remove(struct scsi_pr *pr, struct reg *r)
{
	unsigned i = (unsigned)(r - pr->regs);

	memmove(pr->regs + i, pr->regs + i + 1, (pr->n - i - 1) * sizeof(*r));
	pr->n--;
}

/* Whether iport holds the persistent reservation. */
static bool is_holder(struct scsi_pr *pr, const char *iport)
{
	if (!pr->resv)
		return false;
	if (all_reg_type(pr->type))
		return reg_find(pr, iport) != NULL;
	return !strcmp(pr->holder, iport);
}

/* ---- state as JSON ---- */

static char *pr_json(struct scsi_pr *pr)
{
	struct kura_jw w;
	char k[24];
	const char *s;
	char *out;

	kura_jw_init(&w);
	kura_jw_obj(&w, NULL);
	kura_jw_u64(&w, "gen", pr->gen);
	kura_jw_bool(&w, "aptpl", pr->aptpl);
	kura_jw_arr(&w, "regs");
	for (unsigned i = 0; i < pr->n; i++) {
		kura_jw_obj(&w, NULL);
		kura_jw_str(&w, "iport", pr->regs[i].iport);
		snprintf(k, sizeof(k), "%016" PRIx64, pr->regs[i].key);
		kura_jw_str(&w, "key", k);
		kura_jw_end(&w);
	}
	kura_jw_end(&w);
	if (pr->resv) {
		kura_jw_obj(&w, "resv");
		kura_jw_u64(&w, "type", pr->type);
		kura_jw_str(&w, "holder", pr->holder);
		kura_jw_end(&w);
	} else {
		kura_jw_null(&w, "resv");
	}
	kura_jw_end(&w);
	s = kura_jw_finish(&w, NULL);
	out = s ? strdup(s) : NULL;
	kura_jw_free(&w);
	return out;
}

int scsi_pr_init(struct kura_scsi_lu *lu, const char *state)
{
	struct scsi_pr *pr = calloc(1, sizeof(*pr));
	struct kura_json *o = NULL;
	const struct kura_json *regs, *resv;
	uint64_t v;
	int ok;

	if (!pr)
		return -ENOMEM;
	lu->pr = pr;
	if (!state)
		return 0;
	if (kura_json_parse(state, strlen(state), &o, NULL, 0) ||
	    kura_json_type(o) != KURA_JSON_OBJ || kura_json_get_u64(o, "gen", &v))
		goto bad;
	pr->gen = (uint32_t)v;
	if (!kura_json_get_bool(o, "aptpl", &ok))
		pr->aptpl = ok;
	regs = kura_json_get(o, "regs");
	if (!regs || kura_json_type(regs) != KURA_JSON_ARR || kura_json_len(regs) > MAX_REGS)
		goto bad;
	for (size_t i = 0; i < kura_json_len(regs); i++) {
		const struct kura_json *r = kura_json_at(regs, i);
		const char *ip, *k;
		char *end;

		if (kura_json_get_str(r, "iport", &ip) || kura_json_get_str(r, "key", &k) ||
		    strlen(ip) >= IPORT_MAX)
			goto bad;
		snprintf(pr->regs[pr->n].iport, IPORT_MAX, "%s", ip);
		pr->regs[pr->n].key = strtoull(k, &end, 16);
		if (*end || !k[0])
			goto bad;
		pr->n++;
	}
	resv = kura_json_get(o, "resv");
	if (resv && kura_json_type(resv) == KURA_JSON_OBJ) {
		const char *h;

		if (kura_json_get_u64(resv, "type", &v) || !type_ok((uint8_t)v) ||
		    kura_json_get_str(resv, "holder", &h) || strlen(h) >= IPORT_MAX)
			goto bad;
		pr->resv = true;
		pr->type = (uint8_t)v;
		snprintf(pr->holder, IPORT_MAX, "%s", h);
	}
	kura_json_free(o);
	return 0;
bad:
	kura_json_free(o);
	free(pr);
	lu->pr = NULL;
	return -EINVAL;
}

void scsi_pr_free(struct kura_scsi_lu *lu)
{
	free(lu->pr);
	lu->pr = NULL;
}

void scsi_pr_nexus_gone(struct kura_scsi_lu *lu, const struct kura_scsi_nexus *n)
{
	(void)lu;
	(void)n; /* persistent registrations outlive the nexus */
}

/* ---- conflicts ---- */

static bool is_read_class(uint8_t op)
{
	switch (op) {
	case 0x08: case 0x28: case 0xa8: case 0x88: /* READ */
	case 0x2f: case 0xaf: case 0x8f:            /* VERIFY */
	case 0x34: case 0x90:                       /* PRE-FETCH */
		return true;
	}
	return false;
}

static bool always_allowed(const struct kura_scsi_cmd *cmd)
{
	switch (cmd->cdb[0]) {
	case 0x00: /* TEST UNIT READY */
	case 0x03: /* REQUEST SENSE */
	case 0x12: /* INQUIRY */
	case 0x25: /* READ CAPACITY(10) */
	case 0x4d: /* LOG SENSE */
	case 0x5e: /* PERSISTENT RESERVE IN */
	case 0x5f: /* PERSISTENT RESERVE OUT */
	case 0xa0: /* REPORT LUNS */
	case 0xa3: /* MAINTENANCE IN (REPORT SUPPORTED OPERATION CODES) */
	case 0x84: /* RECEIVE COPY RESULTS */
		return true;
	case 0x9e:
		return (cmd->cdb[1] & 0x1f) == 0x10 || (cmd->cdb[1] & 0x1f) == 0x12;
	}
	return false;
}

bool scsi_pr_conflict(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;
	struct scsi_pr *pr = lu->pr;
	const char *ip = cmd->nexus->iport;
	uint8_t op = cmd->cdb[0];

	if (lu->reserve6_nexus && lu->reserve6_nexus != cmd->nexus->id) {
		/* RESERVE(6) by another nexus (SPC-2): little gets through. */
		return !(op == 0x12 || op == 0x03 || op == 0xa0 || op == 0x17 ||
			 (op == 0xa3 && (cmd->cdb[1] & 0x1f) == 0x0c));
	}
	if (!pr->resv || is_holder(pr, ip) || always_allowed(cmd))
		return false;
	if (is_read_class(op)) {
		switch (pr->type) {
		case WE:
		case WE_RO:
		case WE_AR:
			return false;
		case EA:
			return true;
		default: /* EA_RO, EA_AR: registrants may read */
			return !reg_find(pr, ip);
		}
	}
	/* Writes and everything else. */
	if ((pr->type == WE_RO || pr->type == EA_RO) && reg_find(pr, ip))
		return op == 0x16 || op == 0x17; /* registrants may not use RESERVE/RELEASE(6) */
	return true;
}

void scsi_reserve6(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;

	if (lu->pr->resv) {
		cmd->status = KURA_SCSI_RESERVATION_CONFLICT;
		scsi_complete(cmd);
		return;
	}
	if (cmd->cdb[1] & 0x01) { /* 3rd-party reservations are obsolete */
		scsi_bad_cdb(cmd, 1, 0);
		return;
	}
	lu->reserve6_nexus = cmd->nexus->id;
	scsi_good(cmd);
}

void scsi_release6(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;

	if (lu->reserve6_nexus == cmd->nexus->id)
		lu->reserve6_nexus = 0;
	scsi_good(cmd);
}

/* ---- PERSISTENT RESERVE IN ---- */

/* iSCSI TransportID, format 01b: "name,i,0x<isid>", NUL-padded to 4. */
static uint32_t transport_id(const char *iport, uint8_t *p)
{
	size_t l = strlen(iport) + 1;
	uint32_t pl = (uint32_t)((l + 3) & ~(size_t)3);

	if (pl < 20)
		pl = 20;
	p[0] = 0x45;
	scsi_put16(p + 2, (uint16_t)pl);
	memcpy(p + 4, iport, l);
	return 4 + pl;
}

void scsi_pr_in(struct kura_scsi_cmd *cmd)
{
	struct scsi_pr *pr = cmd->lu->pr;
	uint8_t sa = cmd->cdb[1] & 0x1f, *d, *t;
	uint32_t alloc = scsi_be16(cmd->cdb + 7), n = 8;
	size_t cap = 8 + (size_t)MAX_REGS * (24 + 4 + IPORT_MAX + 4);

	if (sa > 3) {
		scsi_bad_cdb(cmd, 1, 4);
		return;
	}
	t = calloc(1, cap);
	if (!t) {
		scsi_check(cmd, SK_HARDWARE_ERROR, 0x44, 0x00);
		return;
	}
	scsi_put32(t, pr->gen);
	switch (sa) {
	case 0: /* READ KEYS */
		for (unsigned i = 0; i < pr->n; i++, n += 8)
			scsi_put64(t + n, pr->regs[i].key);
		scsi_put32(t + 4, n - 8);
		break;
	case 1: /* READ RESERVATION */
		if (pr->resv) {
			struct reg *h = all_reg_type(pr->type) ? NULL : reg_find(pr, pr->holder);
			scsi_put64(t + 8, h ? h->key : 0);
			t[8 + 13] = pr->type & 0x0f;
			n += 16;
		}
		scsi_put32(t + 4, n - 8);
		break;
	case 2: /* REPORT CAPABILITIES */
		scsi_put16(t, 8);
		t[2] = 0x10 | 0x08 | 0x01;   /* CRH, SIP_C, PTPL_C */
		t[3] = 0x80 | (pr->aptpl ? 0x01 : 0); /* TMV, PTPL_A */
		t[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02; /* WE_AR EA_RO WE_RO EA WE */
		t[5] = 0x01;                 /* EA_AR */
		n = 8;
		break;
	case 3: /* READ FULL STATUS */
		for (unsigned i = 0; i < pr->n; i++) {
			uint8_t *p = t + n;
			uint32_t tl;

			scsi_put64(p, pr->regs[i].key);
			if (is_holder(pr, pr->regs[i].iport)) {
				p[12] = 0x01;
				p[13] = pr->type & 0x0f;
			}
			scsi_put16(p + 18, 1);
			tl = transport_id(pr->regs[i].iport, p + 24);
			scsi_put32(p + 20, tl);
			n += 24 + tl;
		}
		scsi_put32(t + 4, n - 8);
		break;
	}
	if ((d = scsi_din(cmd, n, alloc)))
		memcpy(d, t, n < alloc ? n : alloc);
	free(t);
	scsi_complete(cmd);
}

/* ---- PERSISTENT RESERVE OUT ---- */

static void saved(void *arg, int err)
{
	struct kura_scsi_cmd *cmd = arg;

	if (err)
		scsi_check(cmd, SK_HARDWARE_ERROR, 0x44, 0x00);
	else
		scsi_good(cmd);
}

/* The state changed: save it, answer when durable. */
static void commit(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;
	char *s = pr_json(lu->pr);
	int err;

	if (!s) {
		saved(cmd, -ENOMEM);
		return;
	}
	err = lu->o.ops->pr_save(lu->o.be, s, saved, cmd);
	free(s);
	if (err)
		saved(cmd, err);
}

static void conflict(struct kura_scsi_cmd *cmd)
{
	cmd->status = KURA_SCSI_RESERVATION_CONFLICT;
	scsi_complete(cmd);
}

/* Removes registration r (and what it held), telling its nexus why. */
static void unregister(struct kura_scsi_lu *lu, struct reg *r, uint8_t ascq, bool tell)
{
	struct scsi_pr *pr = lu->pr;
	char ip[IPORT_MAX];

	snprintf(ip, sizeof(ip), "%s", r->iport);
	reg_remove(pr, r);
	if (pr->resv && ((!all_reg_type(pr->type) && !strcmp(pr->holder, ip)) ||
			 (all_reg_type(pr->type) && !pr->n))) {
		uint8_t t = pr->type;
		pr->resv = false;
		/* Releasing an RO or AR reservation tells the other registrants. */
		if (t == WE_RO || t == EA_RO)
			for (unsigned i = 0; i < pr->n; i++)
				scsi_ua_iport(lu, pr->regs[i].iport, 0x2a, 0x04);
	}
	if (tell)
		scsi_ua_iport(lu, ip, 0x2a, ascq);
}

static void pr_register(struct kura_scsi_cmd *cmd, uint64_t key, uint64_t sakey, bool ignore,
			bool aptpl)
{
	struct kura_scsi_lu *lu = cmd->lu;
	struct scsi_pr *pr = lu->pr;
	struct reg *r = reg_find(pr, cmd->nexus->iport);

	if (!r) {
		if (!ignore && key) {
			conflict(cmd);
			return;
		}
		if (!sakey) {
			scsi_good(cmd);
			return;
		}
		if (pr->n == MAX_REGS) {
			scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x55, 0x04); /* INSUFFICIENT REGISTRATION RESOURCES */
			return;
		}
		r = &pr->regs[pr->n++];
		snprintf(r->iport, IPORT_MAX, "%s", cmd->nexus->iport);
		r->key = sakey;
	} else {
		if (!ignore && key != r->key) {
			conflict(cmd);
			return;
		}
		if (!sakey)
			unregister(lu, r, 0, false);
		else
			r->key = sakey;
	}
	pr->aptpl = aptpl;
	pr->gen++;
	commit(cmd);
}

static void pr_preempt(struct kura_scsi_cmd *cmd, struct reg *me, uint64_t sakey, uint8_t type,
		       bool abort)
{
	struct kura_scsi_lu *lu = cmd->lu;
	struct scsi_pr *pr = lu->pr;
	bool took = false;

	if (!pr->resv || all_reg_type(pr->type)) {
		if (!pr->resv && !sakey) {
			scsi_bad_param(cmd, 8, -1);
			return;
		}
		if (pr->resv && !sakey) {
			/* All-registrants reservation, key 0: everyone else goes. */
			for (unsigned i = 0; i < pr->n;) {
				if (&pr->regs[i] == me) {
					i++;
					continue;
				}
				if (abort)
					scsi_abort_iport(lu, pr->regs[i].iport, cmd);
				scsi_ua_iport(lu, pr->regs[i].iport, 0x2a, 0x05);
				if (&pr->regs[i] < me)
					me--;
				reg_remove(pr, &pr->regs[i]);
			}
			took = true;
		}
	} else {
		struct reg *h = reg_find(pr, pr->holder);
		took = h && h->key == sakey;
	}
	if (sakey) {
		bool any = false;
		char myport[IPORT_MAX];

		snprintf(myport, sizeof(myport), "%s", me->iport);
		for (unsigned i = 0; i < pr->n;) {
			if (pr->regs[i].key != sakey || !strcmp(pr->regs[i].iport, myport)) {
				i++;
				continue;
			}
			any = true;
			if (abort)
				scsi_abort_iport(lu, pr->regs[i].iport, cmd);
			scsi_ua_iport(lu, pr->regs[i].iport, 0x2a, 0x05);
			reg_remove(pr, &pr->regs[i]);
		}
		if (!any && !took) {
			conflict(cmd);
			return;
		}
		me = reg_find(pr, myport);
	}
	if (took && me) {
		pr->resv = true;
		pr->type = type;
		snprintf(pr->holder, IPORT_MAX, "%s", me->iport);
	}
	pr->gen++;
	commit(cmd);
}

void scsi_pr_out(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;
	struct scsi_pr *pr = lu->pr;
	uint8_t sa = cmd->cdb[1] & 0x1f, scope = cmd->cdb[2] >> 4, type = cmd->cdb[2] & 0x0f;
	uint32_t len = scsi_be32(cmd->cdb + 5), got;
	const uint8_t *p;
	uint64_t key, sakey;
	struct reg *me;

	if (sa > 7) {
		scsi_bad_cdb(cmd, 1, 4);
		return;
	}
	p = scsi_dout(cmd, len, &got);
	if (sa == 7 ? len < 24 : len != 24) {
		scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x1a, 0x00);
		return;
	}
	if (got < len) {
		scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x1a, 0x00);
		return;
	}
	key = scsi_be64(p);
	sakey = scsi_be64(p + 8);
	if (sa != 7 && (p[20] & 0x08)) { /* SPEC_I_PT: not offered (SIP_C says so) */
		scsi_bad_param(cmd, 20, 3);
		return;
	}
	if (sa != 7 && (p[20] & 0x04)) { /* ALL_TG_PT: one target port here */
		scsi_bad_param(cmd, 20, 2);
		return;
	}
	if (sa == 0 || sa == 6) {
		pr_register(cmd, key, sakey, sa == 6, p[20] & 0x01);
		return;
	}
	me = reg_find(pr, cmd->nexus->iport);
	if (!me || me->key != key) {
		conflict(cmd);
		return;
	}
	if ((sa == 1 || sa == 2 || sa == 4 || sa == 5 || sa == 7) && (scope || !type_ok(type))) {
		scsi_bad_cdb(cmd, 2, scope ? 7 : 3);
		return;
	}
	switch (sa) {
	case 1: /* RESERVE */
		if (lu->reserve6_nexus) {
			conflict(cmd);
			return;
		}
		if (pr->resv) {
			if (!is_holder(pr, me->iport) || pr->type != type)
				conflict(cmd);
			else
				scsi_good(cmd);
			return;
		}
		pr->resv = true;
		pr->type = type;
		snprintf(pr->holder, IPORT_MAX, "%s", me->iport);
		commit(cmd);
		return;
	case 2: /* RELEASE */
		if (!pr->resv || !is_holder(pr, me->iport)) {
			scsi_good(cmd);
			return;
		}
		if (pr->type != type) {
			scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x26, 0x04); /* INVALID RELEASE OF PERSISTENT RESERVATION */
			return;
		}
		pr->resv = false;
		if (type != WE && type != EA)
			for (unsigned i = 0; i < pr->n; i++)
				if (strcmp(pr->regs[i].iport, me->iport))
					scsi_ua_iport(lu, pr->regs[i].iport, 0x2a, 0x04);
		commit(cmd);
		return;
	case 3: /* CLEAR */
		for (unsigned i = 0; i < pr->n; i++)
			if (strcmp(pr->regs[i].iport, me->iport))
				scsi_ua_iport(lu, pr->regs[i].iport, 0x2a, 0x03);
		pr->n = 0;
		pr->resv = false;
		pr->gen++;
		commit(cmd);
		return;
	case 4: /* PREEMPT */
	case 5: /* PREEMPT AND ABORT */
		pr_preempt(cmd, me, sakey, type, sa == 5);
		return;
	case 7: { /* REGISTER AND MOVE */
		uint32_t tl = scsi_be32(p + 20);
		char dest[IPORT_MAX];
		struct reg *r;
		size_t dl;

		if (!is_holder(pr, me->iport) || all_reg_type(pr->type)) {
			conflict(cmd);
			return;
		}
		if (tl < 24 || 24 + tl > len || (p[24] & 0x3f) != 0x05) {
			scsi_bad_param(cmd, 24, -1);
			return;
		}
		dl = strnlen((const char *)p + 28, tl - 4);
		if (!dl || dl >= IPORT_MAX) {
			scsi_bad_param(cmd, 28, -1);
			return;
		}
		memcpy(dest, p + 28, dl);
		dest[dl] = 0;
		if (!strcmp(dest, me->iport) || !sakey) {
			scsi_bad_param(cmd, sakey ? 28 : 8, -1);
			return;
		}
		if (!(r = reg_find(pr, dest))) {
			if (pr->n == MAX_REGS) {
				scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x55, 0x04);
				return;
			}
			r = &pr->regs[pr->n++];
			snprintf(r->iport, IPORT_MAX, "%s", dest);
		}
		r->key = sakey;
		pr->type = type;
		snprintf(pr->holder, IPORT_MAX, "%s", dest);
		if (p[17] & 0x02) { /* UNREG */
			me = reg_find(pr, cmd->nexus->iport);
			if (me)
				reg_remove(pr, me);
		}
		pr->aptpl = p[17] & 0x01;
		pr->gen++;
		commit(cmd);
		return;
	}
	default:
		scsi_bad_cdb(cmd, 1, 4);
	}
}
