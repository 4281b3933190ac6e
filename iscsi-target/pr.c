/* Persistent reservations (SPC-4 5.13, PERSISTENT RESERVE IN/OUT) and the
 * SPC-2 RESERVE(6)/RELEASE(6) with SPC-4's compatible reservation handling
 * (CRH).
 *
 * Registrations belong to I_T nexuses, identified by the initiator port name
 * (iSCSI: "<iqn>,i,0x<isid>") and the relative target port id, so they
 * outlive the sessions that made them.
 *
 * Durability: a PERSISTENT RESERVE OUT builds the next state beside the
 * current one, saves it through the backend's pr_save, and only when that is
 * durable does the new state take effect (its unit attentions and aborts
 * included) and the command complete. PERSISTENT RESERVE OUT commands of a
 * LU therefore run one at a time, in arrival order, and a save never races
 * another. A failed save leaves the old state in force and answers HARDWARE
 * ERROR.
 *
 * APTPL: a restart of blockd is not a power loss from the initiators' point
 * of view (their sessions come back to the same target and expect their
 * registrations, as Windows failover clusters do), so registrations and the
 * reservation are kept across restarts whatever APTPL said. The APTPL bit
 * is recorded and reported (PTPL_A) but changes nothing.
 *
 * RESERVE(6) reservations are not persistent (SPC-2): they live in
 * lu->reserve6_nexus and end with their nexus or a LU reset (lu.c). */
#include "iscsi-target/scsi_int.h"

#include "common/json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REGS_MAX 256u /* beyond: INSUFFICIENT REGISTRATION RESOURCES */
#define IPORT_MAX sizeof(((struct kura_scsi_nexus *)0)->iport)
#define STATE_VERSION 1

/* Reservation types (SPC-4 table 168). */
enum { WE = 1, EA = 3, WE_RO = 5, EA_RO = 6, WE_AR = 7, EA_AR = 8 };

/* PERSISTENT RESERVE OUT service actions. */
enum {
	SA_REGISTER = 0,
	SA_RESERVE = 1,
	SA_RELEASE = 2,
	SA_CLEAR = 3,
	SA_PREEMPT = 4,
	SA_PREEMPT_ABORT = 5,
	SA_REGISTER_IGNORE = 6,
	SA_REGISTER_MOVE = 7,
};

/* Unit attention ASCQs under ASC 2Ah. */
#define UA_RESV_PREEMPTED 0x03
#define UA_RESV_RELEASED 0x04
#define UA_REGS_PREEMPTED 0x05

struct reg {
	char iport[IPORT_MAX];
	uint64_t key;
	uint16_t rtpi;
};

/* One version of the persistent state. */
struct prs {
	struct reg *regs;
	unsigned n, cap;
	uint32_t gen;
	bool aptpl;
	bool resv;
	uint8_t type;
	/* Holder of a reservation that is not of an all-registrants type. */
	char holder[IPORT_MAX];
	uint16_t holder_rtpi;
};

/* What a change does to other nexuses once it is durable. */
struct effect {
	char iport[IPORT_MAX];
	uint8_t ascq;   /* unit attention 2Ah/ascq, 0 none */
	bool abort;     /* PREEMPT AND ABORT: end the nexus's commands */
};

struct scsi_pr {
	struct prs cur;
	struct prs next;               /* being saved by `running` */
	struct effect *fx;
	unsigned nfx, fxcap;
	struct kura_scsi_cmd *running; /* the PERSISTENT RESERVE OUT being saved */
	struct kura_scsi_cmd *head, *tail; /* waiting, linked through scsi_cs()->a */
};

static bool type_ok(uint8_t t)
{
	return t == WE || t == EA || t == WE_RO || t == EA_RO || t == WE_AR || t == EA_AR;
}

static bool all_reg(uint8_t t) { return t == WE_AR || t == EA_AR; }
static bool reg_only(uint8_t t) { return t == WE_RO || t == EA_RO; }
static bool excl_access(uint8_t t) { return t == EA || t == EA_RO || t == EA_AR; }

static bool same_port(const char *a, uint16_t ra, const char *b, uint16_t rb)
{
	/* iSCSI names are case-insensitive (RFC 3722 folds them to lower case);
	 * a TransportID may spell the ISID's hex digits either way. */
	return ra == rb && !strcasecmp(a, b);
}

static struct reg *reg_find(struct prs *s, const char *iport, uint16_t rtpi)
{
	for (unsigned i = 0; i < s->n; i++)
		if (same_port(s->regs[i].iport, s->regs[i].rtpi, iport, rtpi))
			return &s->regs[i];
	return NULL;
}

static void reg_remove(struct prs *s, struct reg *r)
{
	unsigned i = (unsigned)(r - s->regs);

	memmove(s->regs + i, s->regs + i + 1, (s->n - i - 1) * sizeof(*r));
	s->n--;
}

static bool is_holder_reg(const struct prs *s, const struct reg *r)
{
	if (!s->resv || !r)
		return false;
	if (all_reg(s->type))
		return true;
	return same_port(s->holder, s->holder_rtpi, r->iport, r->rtpi);
}

static struct reg *holder_reg(struct prs *s)
{
	if (!s->resv || all_reg(s->type))
		return NULL;
	return reg_find(s, s->holder, s->holder_rtpi);
}

static int prs_reserve(struct prs *s, unsigned cap)
{
	struct reg *r;

	if (cap <= s->cap)
		return 0;
	if (!(r = realloc(s->regs, cap * sizeof(*r))))
		return -ENOMEM;
	s->regs = r;
	s->cap = cap;
	return 0;
}

/* dst = src, with room for one more registration. */
static int prs_copy(struct prs *dst, const struct prs *src)
{
	struct reg *regs;
	unsigned cap;

	if (prs_reserve(dst, src->n + 1))
		return -ENOMEM;
	regs = dst->regs;
	cap = dst->cap;
	*dst = *src;
	dst->regs = regs;
	dst->cap = cap;
	if (src->n)
		memcpy(dst->regs, src->regs, src->n * sizeof(*regs));
	return 0;
}

/* ---- the state as JSON ---- */

static char *state_json(const struct prs *s)
{
	struct kura_jw w;
	char key[24];
	const char *t;
	char *out;

	kura_jw_init(&w);
	kura_jw_obj(&w, NULL);
	kura_jw_u64(&w, "version", STATE_VERSION);
	kura_jw_u64(&w, "generation", s->gen);
	kura_jw_bool(&w, "aptpl", s->aptpl);
	kura_jw_arr(&w, "registrations");
	for (unsigned i = 0; i < s->n; i++) {
		kura_jw_obj(&w, NULL);
		kura_jw_str(&w, "iport", s->regs[i].iport);
		kura_jw_u64(&w, "rtpi", s->regs[i].rtpi);
		/* hex text: 64-bit keys survive tools that read numbers as doubles */
		snprintf(key, sizeof(key), "0x%016" PRIx64, s->regs[i].key);
		kura_jw_str(&w, "key", key);
		kura_jw_end(&w);
	}
	kura_jw_end(&w);
	if (s->resv) {
		kura_jw_obj(&w, "reservation");
		kura_jw_u64(&w, "type", s->type);
		if (all_reg(s->type)) {
			kura_jw_null(&w, "holder");
		} else {
			kura_jw_str(&w, "holder", s->holder);
			kura_jw_u64(&w, "holder_rtpi", s->holder_rtpi);
		}
		kura_jw_end(&w);
	} else {
		kura_jw_null(&w, "reservation");
	}
	kura_jw_end(&w);
	t = kura_jw_finish(&w, NULL);
	out = t ? strdup(t) : NULL;
	kura_jw_free(&w);
	return out;
}

static int parse_key(const char *t, uint64_t *key)
{
	char *end;

	if (strncmp(t, "0x", 2) || !t[2] || strlen(t) > 18)
		return -EINVAL;
	errno = 0;
	*key = strtoull(t + 2, &end, 16);
	return *end || errno ? -EINVAL : 0;
}

static int parse_port(const struct kura_json *o, const char *name, const char *rname,
		      char *iport, uint16_t *rtpi)
{
	const char *t;
	uint64_t v;

	if (kura_json_get_str(o, name, &t) || !t[0] || strlen(t) >= IPORT_MAX ||
	    kura_json_get_u64(o, rname, &v) || v > UINT16_MAX)
		return -EINVAL;
	snprintf(iport, IPORT_MAX, "%s", t);
	*rtpi = (uint16_t)v;
	return 0;
}

static int parse_state(struct prs *s, const struct kura_json *o)
{
	const struct kura_json *regs, *resv;
	uint64_t v;
	int b;

	if (kura_json_type(o) != KURA_JSON_OBJ || kura_json_get_u64(o, "version", &v) ||
	    v != STATE_VERSION || kura_json_get_u64(o, "generation", &v) || v > UINT32_MAX ||
	    kura_json_get_bool(o, "aptpl", &b))
		return -EINVAL;
	s->gen = (uint32_t)v;
	s->aptpl = b;
	regs = kura_json_get(o, "registrations");
	if (!regs || kura_json_type(regs) != KURA_JSON_ARR || kura_json_len(regs) > REGS_MAX ||
	    prs_reserve(s, (unsigned)kura_json_len(regs) + 1))
		return -EINVAL;
	for (size_t i = 0; i < kura_json_len(regs); i++) {
		const struct kura_json *r = kura_json_at(regs, i);
		struct reg *g = &s->regs[s->n];
		const char *k;

		if (kura_json_type(r) != KURA_JSON_OBJ ||
		    parse_port(r, "iport", "rtpi", g->iport, &g->rtpi) ||
		    kura_json_get_str(r, "key", &k) || parse_key(k, &g->key) || !g->key ||
		    reg_find(s, g->iport, g->rtpi))
			return -EINVAL;
		s->n++;
	}
	resv = kura_json_get(o, "reservation");
	if (!resv)
		return -EINVAL;
	if (kura_json_type(resv) == KURA_JSON_NULL)
		return 0;
	if (kura_json_type(resv) != KURA_JSON_OBJ || kura_json_get_u64(resv, "type", &v) ||
	    !type_ok((uint8_t)v) || v > 0xff)
		return -EINVAL;
	s->resv = true;
	s->type = (uint8_t)v;
	if (all_reg(s->type))
		/* every registrant holds it: there must be one */
		return s->n ? 0 : -EINVAL;
	if (parse_port(resv, "holder", "holder_rtpi", s->holder, &s->holder_rtpi) ||
	    !holder_reg(s))
		return -EINVAL;
	return 0;
}

int scsi_pr_init(struct kura_scsi_lu *lu, const char *state)
{
	struct scsi_pr *pr = calloc(1, sizeof(*pr));
	struct kura_json *o = NULL;
	int err;

	if (!pr)
		return -ENOMEM;
	lu->pr = pr;
	if (!state)
		return 0;
	err = kura_json_parse(state, strlen(state), &o, NULL, 0);
	if (!err && parse_state(&pr->cur, o))
		err = -EINVAL;
	kura_json_free(o);
	if (err) {
		/* -ENOMEM stays what it is: the string may be fine */
		scsi_pr_free(lu);
		return err == -ENOMEM ? err : -EINVAL;
	}
	return 0;
}

void scsi_pr_free(struct kura_scsi_lu *lu)
{
	struct scsi_pr *pr = lu->pr;

	if (!pr)
		return;
	free(pr->cur.regs);
	free(pr->next.regs);
	free(pr->fx);
	free(pr);
	lu->pr = NULL;
}

void scsi_pr_nexus_gone(struct kura_scsi_lu *lu, const struct kura_scsi_nexus *n)
{
	/* Registrations and persistent reservations belong to the initiator
	 * port, not the session: the initiator logs in again and finds them. */
	(void)lu;
	(void)n;
}

/* ---- which commands conflict (SPC-4 5.13.1, SBC-3 4.17, SPC-2 5.5.1) ---- */

enum cmd_class {
	ALLOWED,   /* allowed through every reservation */
	READ_LIKE, /* allowed through Write Exclusive types, not Exclusive Access */
	WRITE_LIKE /* allowed for the holder (and RO/AR registrants) only */
};

static enum cmd_class classify(const uint8_t *cdb)
{
	switch (cdb[0]) {
	case 0x00: /* TEST UNIT READY (ALLOW COMMANDS 011b) */
	case 0x03: /* REQUEST SENSE */
	case 0x12: /* INQUIRY */
	case 0x25: /* READ CAPACITY(10) */
	case 0x4d: /* LOG SENSE */
	case 0x5e: /* PERSISTENT RESERVE IN */
	case 0x5f: /* PERSISTENT RESERVE OUT: checks its own service actions */
	case 0xa0: /* REPORT LUNS */
		return ALLOWED;
	case 0x1e: /* PREVENT ALLOW MEDIUM REMOVAL: allowing is harmless */
		return cdb[4] & 0x03 ? WRITE_LIKE : ALLOWED;
	case 0x1b: /* START STOP UNIT: starting is harmless */
		return (cdb[4] & 0x01) && !(cdb[4] & 0xf0) ? ALLOWED : WRITE_LIKE;
	case 0x9e: /* SERVICE ACTION IN(16) */
		switch (cdb[1] & 0x1f) {
		case 0x10: /* READ CAPACITY(16) */
		case 0x13: /* REPORT REFERRALS */
			return ALLOWED;
		case 0x12: /* GET LBA STATUS */
			return READ_LIKE;
		}
		return WRITE_LIKE;
	case 0xa3: /* MAINTENANCE IN */
		switch (cdb[1] & 0x1f) {
		case 0x05: /* REPORT IDENTIFYING INFORMATION */
		case 0x0a: /* REPORT TARGET PORT GROUPS */
		case 0x0b: /* REPORT ALIASES */
		case 0x0e: /* REPORT PRIORITY */
		case 0x0f: /* REPORT TIMESTAMP */
			return ALLOWED;
		case 0x0c: /* REPORT SUPPORTED OPERATION CODES */
		case 0x0d: /* REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS */
		case 0x10: /* MANAGEMENT PROTOCOL IN */
			return READ_LIKE;
		}
		return WRITE_LIKE;
	case 0xab: /* SERVICE ACTION IN(12): READ MEDIA SERIAL NUMBER */
		return (cdb[1] & 0x1f) == 0x01 ? ALLOWED : WRITE_LIKE;
	case 0x08: case 0x28: case 0xa8: case 0x88: /* READ */
	case 0x2f: case 0xaf: case 0x8f:            /* VERIFY */
	case 0x34: case 0x90:                       /* PRE-FETCH */
	case 0x37: case 0xb7:                       /* READ DEFECT DATA */
	/* The commands ALLOW COMMANDS 011b lets through Write Exclusive. */
	case 0x1a: case 0x5a:                       /* MODE SENSE */
	case 0x3c:                                  /* READ BUFFER */
	case 0x8c:                                  /* READ ATTRIBUTE */
	case 0x1c:                                  /* RECEIVE DIAGNOSTIC RESULTS */
	case 0x84:                                  /* RECEIVE COPY RESULTS */
		return READ_LIKE;
	}
	return WRITE_LIKE;
}

/* SPC-4 5.13.3: RESERVE and RELEASE from these nexuses complete with GOOD
 * and change nothing. */
static bool crh_noop(struct prs *s, const struct kura_scsi_nexus *n)
{
	struct reg *r = reg_find(s, n->iport, n->rtpi);

	return is_holder_reg(s, r) || (r && s->resv && (reg_only(s->type) || all_reg(s->type)));
}

static bool is_reserve_release(uint8_t op)
{
	return op == 0x16 || op == 0x17 || op == 0x56 || op == 0x57;
}

/* What SPC-2 lets through another nexus's RESERVE(6). */
static bool reserve6_allows(const uint8_t *cdb)
{
	switch (cdb[0]) {
	case 0x03: /* REQUEST SENSE */
	case 0x12: /* INQUIRY */
	case 0xa0: /* REPORT LUNS */
	case 0x17: /* RELEASE(6): GOOD, changes nothing */
	case 0x57: /* RELEASE(10) */
		return true;
	case 0x1e: /* PREVENT ALLOW MEDIUM REMOVAL, allowing */
		return !(cdb[4] & 0x03);
	}
	return false;
}

static bool conflicts(struct kura_scsi_lu *lu, const struct kura_scsi_nexus *n,
		      const uint8_t *cdb)
{
	struct prs *s = &lu->pr->cur;
	struct reg *r;

	if (lu->reserve6_nexus) {
		/* SPC-2 5.5.1: while any RESERVE holds, every PERSISTENT RESERVE
		 * IN and OUT conflicts, whoever sends it. */
		if (cdb[0] == 0x5e || cdb[0] == 0x5f)
			return true;
		return lu->reserve6_nexus != n->id && !reserve6_allows(cdb);
	}
	if (is_reserve_release(cdb[0]))
		/* SPC-2: registrations make RESERVE/RELEASE conflict, except
		 * for the nexuses CRH turns them into no-ops for. */
		return s->n && !crh_noop(s, n);
	if (!s->resv)
		return false;
	r = reg_find(s, n->iport, n->rtpi);
	if (is_holder_reg(s, r) || (r && reg_only(s->type)))
		return false;
	switch (classify(cdb)) {
	case ALLOWED:
		return false;
	case READ_LIKE:
		return excl_access(s->type);
	default:
		return true;
	}
}

bool scsi_pr_conflict(struct kura_scsi_cmd *cmd)
{
	return conflicts(cmd->lu, cmd->nexus, cmd->cdb);
}

bool scsi_pr_io_conflict(struct kura_scsi_lu *lu, const struct kura_scsi_nexus *n, bool write)
{
	uint8_t cdb[16] = {write ? 0x8a : 0x88}; /* WRITE(16) / READ(16) */

	return conflicts(lu, n, cdb);
}

/* ---- RESERVE(6) / RELEASE(6) ---- */

static void conflict(struct kura_scsi_cmd *cmd)
{
	cmd->status = KURA_SCSI_RESERVATION_CONFLICT;
	scsi_complete(cmd);
}

void scsi_reserve6(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;
	struct scsi_pr *pr = lu->pr;

	if (cmd->cdb[1] & 0x01) { /* extent reservations: obsolete, not offered */
		scsi_bad_cdb(cmd, 1, 0);
		return;
	}
	if (cmd->cdb[1] & 0x10) { /* third-party reservations: obsolete, not offered */
		scsi_bad_cdb(cmd, 1, 4);
		return;
	}
	if (pr->cur.n) {
		if (crh_noop(&pr->cur, cmd->nexus))
			scsi_good(cmd);
		else
			conflict(cmd);
		return;
	}
	/* A registration being saved will exist in a moment. */
	if (pr->running || (lu->reserve6_nexus && lu->reserve6_nexus != cmd->nexus->id)) {
		conflict(cmd);
		return;
	}
	lu->reserve6_nexus = cmd->nexus->id;
	scsi_good(cmd);
}

void scsi_release6(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;
	struct scsi_pr *pr = lu->pr;

	if (pr->cur.n && !crh_noop(&pr->cur, cmd->nexus)) {
		conflict(cmd);
		return;
	}
	/* Releasing what another nexus holds, or nothing, is a no-op (SPC-2). */
	if (lu->reserve6_nexus == cmd->nexus->id)
		lu->reserve6_nexus = 0;
	scsi_good(cmd);
}

/* ---- PERSISTENT RESERVE IN ---- */

/* An iSCSI TransportID, format 01b (SPC-4 7.6.4.6): the initiator port name,
 * NUL-terminated, padded to a multiple of 4 bytes and at least 20. */
static uint32_t transport_id(const char *iport, uint8_t *p)
{
	size_t l = strlen(iport) + 1;
	uint32_t pl = (uint32_t)((l + 3) & ~(size_t)3);

	if (pl < 20)
		pl = 20;
	if (p) {
		p[0] = 0x40 | 0x05;
		scsi_put16(p + 2, (uint16_t)pl);
		memcpy(p + 4, iport, l);
	}
	return 4 + pl;
}

static uint32_t read_keys(struct prs *s, uint8_t *t)
{
	for (unsigned i = 0; i < s->n; i++)
		scsi_put64(t + 8 + 8 * i, s->regs[i].key);
	scsi_put32(t + 4, 8 * s->n);
	return 8 + 8 * s->n;
}

static uint32_t read_reservation(struct prs *s, uint8_t *t)
{
	struct reg *h;

	if (!s->resv)
		return 8;
	scsi_put32(t + 4, 16);
	h = holder_reg(s);
	scsi_put64(t + 8, h ? h->key : 0); /* all-registrants types report 0 */
	t[21] = s->type;                   /* scope 0: the logical unit */
	return 24;
}

static uint32_t report_capabilities(struct prs *s, uint8_t *t)
{
	scsi_put16(t, 8);
	/* CRH; PTPL_C (we always persist); no SIP_C, no ATP_C: SPEC_I_PT and
	 * ALL_TG_PT are refused with INVALID FIELD IN PARAMETER LIST. */
	t[2] = 0x10 | 0x01;
	/* TMV; ALLOW COMMANDS 011b: TEST UNIT READY passes Write Exclusive and
	 * Exclusive Access, MODE SENSE and the like pass Write Exclusive. */
	t[3] = 0x80 | 0x30 | (s->aptpl ? 0x01 : 0);
	t[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02; /* WE_AR EA_RO WE_RO EA WE */
	t[5] = 0x01;                             /* EA_AR */
	return 8;
}

static uint32_t read_full_status(struct prs *s, uint8_t *t)
{
	uint32_t n = 8;

	for (unsigned i = 0; i < s->n; i++) {
		const struct reg *r = &s->regs[i];
		uint32_t tl = transport_id(r->iport, t ? t + n + 24 : NULL);

		if (t) {
			scsi_put64(t + n, r->key);
			if (is_holder_reg(s, r)) {
				t[n + 12] = 0x01; /* R_HOLDER */
				t[n + 13] = s->type;
			}
			scsi_put16(t + n + 18, r->rtpi);
			scsi_put32(t + n + 20, tl);
		}
		n += 24 + tl;
	}
	if (t)
		scsi_put32(t + 4, n - 8);
	return n;
}

void scsi_pr_in(struct kura_scsi_cmd *cmd)
{
	struct prs *s = &cmd->lu->pr->cur;
	uint8_t sa = cmd->cdb[1] & 0x1f, *t, *d;
	uint32_t alloc = scsi_be16(cmd->cdb + 7), n;

	if (sa > 3) {
		scsi_bad_cdb(cmd, 1, 4);
		return;
	}
	n = sa == 3 ? read_full_status(s, NULL) : 24 + 8 * s->n;
	if (!(t = calloc(1, n))) {
		scsi_check(cmd, SK_HARDWARE_ERROR, 0x44, 0x00);
		return;
	}
	scsi_put32(t, s->gen);
	switch (sa) {
	case 0:
		n = read_keys(s, t);
		break;
	case 1:
		n = read_reservation(s, t);
		break;
	case 2:
		n = report_capabilities(s, t);
		break;
	default:
		n = read_full_status(s, t);
		break;
	}
	/* The lengths inside say what there is, whatever the allocation length cuts. */
	if ((d = scsi_din(cmd, n, alloc)))
		memcpy(d, t, n < alloc ? n : alloc);
	free(t);
	scsi_complete(cmd);
}

/* ---- PERSISTENT RESERVE OUT ---- */

/* A command being worked out: the state it builds and where it came from. */
struct pro {
	struct kura_scsi_cmd *cmd;
	struct kura_scsi_lu *lu;
	struct prs *s;           /* the next state */
	const uint8_t *p;        /* parameter list */
	uint32_t len;
	uint8_t sa, type;
	uint64_t key, sakey;
};

/* What a service action did: CHANGED the next state, which is to be saved
 * before the answer; or DONE: answered already, nothing to save. */
enum { CHANGED = 0, DONE = 1 };

static void effect(struct scsi_pr *pr, const char *iport, uint8_t ascq, bool abort)
{
	struct effect *e;

	if (pr->nfx == pr->fxcap)
		return; /* sized for every registration: cannot happen */
	e = &pr->fx[pr->nfx++];
	snprintf(e->iport, sizeof(e->iport), "%s", iport);
	e->ascq = ascq;
	e->abort = abort;
}

static const char *my_port(const struct pro *x) { return x->cmd->nexus->iport; }
static uint16_t my_rtpi(const struct pro *x) { return x->cmd->nexus->rtpi; }

static bool is_me(const struct pro *x, const struct reg *r)
{
	return same_port(r->iport, r->rtpi, my_port(x), my_rtpi(x));
}

/* Removes registration r; a reservation it alone held goes with it. */
static void unregister(struct pro *x, struct reg *r)
{
	struct scsi_pr *pr = x->lu->pr;
	struct prs *s = x->s;
	bool held = is_holder_reg(s, r) && !all_reg(s->type);

	reg_remove(s, r);
	if (held) {
		s->resv = false;
		/* SPC-4 5.13.11.3: the other registrants of a registrants-only
		 * reservation learn that it is gone. */
		if (reg_only(s->type))
			for (unsigned i = 0; i < s->n; i++)
				if (!is_me(x, &s->regs[i]))
					effect(pr, s->regs[i].iport, UA_RESV_RELEASED, false);
	} else if (s->resv && all_reg(s->type) && !s->n) {
		s->resv = false; /* the last registrant took it along */
	}
}

static int pro_register(struct pro *x, struct reg *me)
{
	struct prs *s = x->s;
	bool ignore = x->sa == SA_REGISTER_IGNORE;

	if (!me) {
		if (!ignore && x->key) {
			conflict(x->cmd);
			return DONE;
		}
		if (!x->sakey) { /* unregistering what is not registered: nothing to do */
			scsi_good(x->cmd);
			return DONE;
		}
		if (s->n >= REGS_MAX) {
			scsi_check(x->cmd, SK_ILLEGAL_REQUEST, 0x55, 0x04); /* INSUFFICIENT REGISTRATION RESOURCES */
			return DONE;
		}
		me = &s->regs[s->n++];
		snprintf(me->iport, sizeof(me->iport), "%s", my_port(x));
		me->rtpi = my_rtpi(x);
		me->key = x->sakey;
	} else {
		if (!ignore && x->key != me->key) {
			conflict(x->cmd);
			return DONE;
		}
		if (x->sakey)
			me->key = x->sakey;
		else
			unregister(x, me);
	}
	s->aptpl = x->p[20] & 0x01;
	s->gen++;
	return CHANGED;
}

static int pro_reserve(struct pro *x, struct reg *me)
{
	struct prs *s = x->s;

	if (s->resv) {
		/* The holder reserving again with the same type changes nothing. */
		if (is_holder_reg(s, me) && s->type == x->type)
			scsi_good(x->cmd);
		else
			conflict(x->cmd);
		return DONE;
	}
	s->resv = true;
	s->type = x->type;
	snprintf(s->holder, sizeof(s->holder), "%s", me->iport);
	s->holder_rtpi = me->rtpi;
	return CHANGED; /* PRgeneration counts registrations, not reservations */
}

static int pro_release(struct pro *x, struct reg *me)
{
	struct scsi_pr *pr = x->lu->pr;
	struct prs *s = x->s;

	if (!is_holder_reg(s, me)) { /* nothing of ours to release */
		scsi_good(x->cmd);
		return DONE;
	}
	if ((x->cmd->cdb[2] >> 4) || x->type != s->type) {
		scsi_check(x->cmd, SK_ILLEGAL_REQUEST, 0x26, 0x04); /* INVALID RELEASE OF PERSISTENT RESERVATION */
		return DONE;
	}
	s->resv = false;
	if (reg_only(s->type) || all_reg(s->type))
		for (unsigned i = 0; i < s->n; i++)
			if (!is_me(x, &s->regs[i]))
				effect(pr, s->regs[i].iport, UA_RESV_RELEASED, false);
	return CHANGED;
}

static int pro_clear(struct pro *x)
{
	struct scsi_pr *pr = x->lu->pr;
	struct prs *s = x->s;

	for (unsigned i = 0; i < s->n; i++)
		if (!is_me(x, &s->regs[i]))
			effect(pr, s->regs[i].iport, UA_RESV_PREEMPTED, false);
	s->n = 0;
	s->resv = false;
	s->gen++;
	return CHANGED;
}

/* SPC-4 5.13.11.4: PREEMPT and PREEMPT AND ABORT. */
static int pro_preempt(struct pro *x, struct reg *me)
{
	struct scsi_pr *pr = x->lu->pr;
	struct prs *s = x->s;
	bool ar = s->resv && all_reg(s->type), abort = x->sa == SA_PREEMPT_ABORT;
	struct reg *h = holder_reg(s);
	char mine[IPORT_MAX];
	uint16_t mine_rtpi = me->rtpi;
	unsigned removed = 0;

	if (!x->sakey && !ar) {
		scsi_bad_param(x->cmd, 8, -1); /* key 0 preempts only all-registrants types */
		return DONE;
	}
	snprintf(mine, sizeof(mine), "%s", me->iport);
	if ((ar && !x->sakey) || (h && h->key == x->sakey)) {
		/* The key names the reservation holder: its reservation goes, and
		 * so do the registrations with that key (all others for key 0 of
		 * an all-registrants type), ours excepted. */
		uint8_t old = s->type;

		for (unsigned i = 0; i < s->n;) {
			struct reg *r = &s->regs[i];

			if (is_me(x, r) || (x->sakey && r->key != x->sakey)) {
				i++;
				continue;
			}
			effect(pr, r->iport, UA_REGS_PREEMPTED, abort);
			reg_remove(s, r);
		}
		s->resv = true;
		s->type = x->type;
		snprintf(s->holder, sizeof(s->holder), "%s", mine);
		s->holder_rtpi = mine_rtpi;
		if (old != x->type)
			for (unsigned i = 0; i < s->n; i++)
				if (!is_me(x, &s->regs[i]))
					effect(pr, s->regs[i].iport, UA_RESV_RELEASED, false);
		s->gen++;
		return CHANGED;
	}
	/* No reservation, or the key is not the holder's (SPC-4 5.13.11.4.4):
	 * every registration with that key goes, ours too but without a unit
	 * attention; the reservation stays unless it was an all-registrants
	 * one and no registrant is left. */
	for (unsigned i = 0; i < s->n;) {
		struct reg *r = &s->regs[i];

		if (r->key != x->sakey) {
			i++;
			continue;
		}
		if (!is_me(x, r))
			effect(pr, r->iport, UA_REGS_PREEMPTED, abort);
		reg_remove(s, r);
		removed++;
	}
	if (!removed) {
		conflict(x->cmd);
		return DONE;
	}
	if (ar && !s->n)
		s->resv = false;
	s->gen++;
	return CHANGED;
}

/* Parses the iSCSI TransportID of a REGISTER AND MOVE (format 01b, naming
 * an initiator port) into iport. Returns 0, or the parameter list offset of
 * the bad field plus one. */
static unsigned parse_tid(const uint8_t *p, uint32_t avail, char *iport, size_t cap)
{
	uint32_t al, nl;
	const char *name = (const char *)p + 4, *sep;
	size_t plen;

	if (avail < 24)
		return 20 + 1;
	if ((p[0] & 0x0f) != 0x05)      /* iSCSI */
		return 24 + 1;
	if ((p[0] >> 6) != 0x01)        /* a port (name and ISID), not a device */
		return 24 + 1;
	al = scsi_be16(p + 2);
	if (al < 20 || al % 4 || 4 + al > avail)
		return 26 + 1;
	nl = (uint32_t)strnlen(name, al);
	if (nl == al)                   /* not NUL-terminated */
		return 28 + 1;
	sep = strstr(name, ",i,0x");
	if (!sep)
		sep = strstr(name, ",I,0X");
	if (!sep || sep == name || strlen(sep + 5) != 12 || nl >= cap)
		return 28 + 1;
	for (const char *c = sep + 5; *c; c++)
		if (!strchr("0123456789abcdefABCDEF", *c))
			return 28 + 1;
	plen = (size_t)(sep - name);
	memcpy(iport, name, plen);
	snprintf(iport + plen, cap - plen, ",i,0x%s", sep + 5);
	for (char *c = iport + plen + 5; *c; c++)
		if (*c >= 'A' && *c <= 'F')
			*c = (char)(*c - 'A' + 'a');
	return 0;
}

/* SPC-4 5.13.8: REGISTER AND MOVE. */
static int pro_register_move(struct pro *x, struct reg *me)
{
	struct prs *s = x->s;
	uint32_t tl = scsi_be32(x->p + 20);
	char dest[IPORT_MAX];
	uint16_t rtpi = scsi_be16(x->p + 18);
	unsigned bad;
	struct reg *d;

	if (!s->resv) {
		scsi_bad_cdb(x->cmd, 1, 4); /* nothing to move */
		return DONE;
	}
	if (!is_holder_reg(s, me) || all_reg(s->type)) {
		conflict(x->cmd);
		return DONE;
	}
	if (!x->sakey) {
		scsi_bad_param(x->cmd, 8, -1);
		return DONE;
	}
	if (24 + (uint64_t)tl > x->len) {
		scsi_check(x->cmd, SK_ILLEGAL_REQUEST, 0x1a, 0x00); /* PARAMETER LIST LENGTH ERROR */
		return DONE;
	}
	if ((bad = parse_tid(x->p + 24, tl, dest, sizeof(dest)))) {
		scsi_bad_param(x->cmd, (uint16_t)(bad - 1), -1);
		return DONE;
	}
	/* Only the target port this command came through is known here. */
	if (rtpi != my_rtpi(x)) {
		scsi_bad_param(x->cmd, 18, -1);
		return DONE;
	}
	if (same_port(dest, rtpi, my_port(x), my_rtpi(x))) {
		scsi_bad_param(x->cmd, 28, -1); /* moving to ourselves */
		return DONE;
	}
	if (!(d = reg_find(s, dest, rtpi))) {
		if (s->n >= REGS_MAX) {
			scsi_check(x->cmd, SK_ILLEGAL_REQUEST, 0x55, 0x04);
			return DONE;
		}
		d = &s->regs[s->n++];
		snprintf(d->iport, sizeof(d->iport), "%s", dest);
		d->rtpi = rtpi;
	}
	d->key = x->sakey;
	/* The reservation keeps its type; the CDB's TYPE is ignored. */
	snprintf(s->holder, sizeof(s->holder), "%s", dest);
	s->holder_rtpi = rtpi;
	if (x->p[17] & 0x02) { /* UNREG */
		me = reg_find(s, my_port(x), my_rtpi(x));
		if (me)
			reg_remove(s, me);
	}
	s->aptpl = x->p[17] & 0x01;
	s->gen++;
	return CHANGED;
}

static void pro_next(struct scsi_pr *pr);

static void pro_saved(void *arg, int err)
{
	struct kura_scsi_cmd *cmd = arg;
	struct kura_scsi_lu *lu = cmd->lu;
	struct scsi_pr *pr = lu->pr;

	pr->running = NULL;
	if (err) {
		scsi_check(cmd, SK_HARDWARE_ERROR, 0x44, 0x00);
	} else {
		struct prs t = pr->cur;

		pr->cur = pr->next;
		pr->next = t;
		/* The change is in force: now the others hear of it. */
		for (unsigned i = 0; i < pr->nfx; i++) {
			if (pr->fx[i].abort)
				scsi_abort_iport(lu, pr->fx[i].iport, cmd);
			if (pr->fx[i].ascq)
				scsi_ua_iport(lu, pr->fx[i].iport, 0x2a, pr->fx[i].ascq);
		}
		scsi_good(cmd);
	}
	pr->nfx = 0;
	pro_next(pr);
}

/* The next state is ready: make it durable, then current. */
static void pro_commit(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;
	struct scsi_pr *pr = lu->pr;
	char *js;
	int err;

	pr->running = cmd;
	if (!lu->o.ops->pr_save) {
		/* A backend without persistence: in force at once. */
		pro_saved(cmd, 0);
		return;
	}
	if (!(js = state_json(&pr->next))) {
		pro_saved(cmd, -ENOMEM);
		return;
	}
	err = lu->o.ops->pr_save(lu->o.be, js, pro_saved, cmd);
	free(js);
	if (err)
		pro_saved(cmd, err);
}

static bool valid_fields(struct kura_scsi_cmd *cmd, uint8_t sa, uint32_t len,
			 const uint8_t **pp)
{
	uint8_t scope = cmd->cdb[2] >> 4, type = cmd->cdb[2] & 0x0f;
	uint32_t got;
	const uint8_t *p;

	if (sa > SA_REGISTER_MOVE) {
		scsi_bad_cdb(cmd, 1, 4);
		return false;
	}
	if (sa == SA_RESERVE || sa == SA_PREEMPT || sa == SA_PREEMPT_ABORT) {
		if (scope) { /* only LU_SCOPE exists */
			scsi_bad_cdb(cmd, 2, 7);
			return false;
		}
		if (!type_ok(type)) {
			scsi_bad_cdb(cmd, 2, 3);
			return false;
		}
	}
	p = scsi_dout(cmd, len, &got);
	if (len < 24 || got < len) {
		scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x1a, 0x00);
		return false;
	}
	if (sa != SA_REGISTER_MOVE) {
		if (p[20] & 0x08) { /* SPEC_I_PT: not offered (SIP_C 0) */
			scsi_bad_param(cmd, 20, 3);
			return false;
		}
		if (len != 24) {
			scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x1a, 0x00);
			return false;
		}
		if ((sa == SA_REGISTER || sa == SA_REGISTER_IGNORE) && (p[20] & 0x04)) {
			scsi_bad_param(cmd, 20, 2); /* ALL_TG_PT: not offered (ATP_C 0) */
			return false;
		}
	}
	*pp = p;
	return true;
}

/* Works one PERSISTENT RESERVE OUT out: completes it, or starts saving the
 * state it makes. */
static void pro_run(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;
	struct scsi_pr *pr = lu->pr;
	struct pro x = {.cmd = cmd, .lu = lu, .s = &pr->next};
	struct reg *me;
	int r;

	x.sa = cmd->cdb[1] & 0x1f;
	x.type = cmd->cdb[2] & 0x0f;
	x.len = scsi_be32(cmd->cdb + 5);
	if (!valid_fields(cmd, x.sa, x.len, &x.p))
		return;
	if (lu->reserve6_nexus) { /* taken while this command waited its turn */
		conflict(cmd);
		return;
	}
	x.key = scsi_be64(x.p);
	x.sakey = scsi_be64(x.p + 8);
	free(pr->fx);
	pr->nfx = 0;
	pr->fxcap = pr->cur.n + 1;
	pr->fx = calloc(pr->fxcap, sizeof(*pr->fx));
	if (!pr->fx || prs_copy(&pr->next, &pr->cur)) {
		pr->fxcap = 0;
		scsi_check(cmd, SK_HARDWARE_ERROR, 0x44, 0x00);
		return;
	}
	me = reg_find(x.s, my_port(&x), my_rtpi(&x));
	if (x.sa == SA_REGISTER || x.sa == SA_REGISTER_IGNORE) {
		r = pro_register(&x, me);
	} else if (!me || me->key != x.key) {
		conflict(cmd); /* every other service action needs our registration */
		return;
	} else {
		switch (x.sa) {
		case SA_RESERVE:
			r = pro_reserve(&x, me);
			break;
		case SA_RELEASE:
			r = pro_release(&x, me);
			break;
		case SA_CLEAR:
			r = pro_clear(&x);
			break;
		case SA_PREEMPT:
		case SA_PREEMPT_ABORT:
			r = pro_preempt(&x, me);
			break;
		default:
			r = pro_register_move(&x, me);
			break;
		}
	}
	if (r == CHANGED)
		pro_commit(cmd);
}

/* Runs waiting commands until one is being saved or none is left. */
static void pro_next(struct scsi_pr *pr)
{
	while (!pr->running && pr->head) {
		struct kura_scsi_cmd *cmd = pr->head;

		pr->head = (struct kura_scsi_cmd *)(uintptr_t)scsi_cs(cmd)->a;
		if (!pr->head)
			pr->tail = NULL;
		if (cmd->aborted)
			scsi_complete(cmd); /* completes as TASK ABORTED */
		else
			pro_run(cmd);
	}
}

void scsi_pr_out(struct kura_scsi_cmd *cmd)
{
	struct scsi_pr *pr = cmd->lu->pr;

	if (pr->running || pr->head) {
		scsi_cs(cmd)->a = 0;
		if (pr->tail)
			scsi_cs(pr->tail)->a = (uint64_t)(uintptr_t)cmd;
		else
			pr->head = cmd;
		pr->tail = cmd;
		return;
	}
	pro_run(cmd);
}
