/* Persistent reservations and RESERVE(6)/RELEASE(6) (pr.c) on a memory LU:
 * every service action and reservation type, the conflict table seen from
 * the holder, a registrant and a stranger, unit attentions and aborts,
 * READ FULL STATUS, and the saved state: written before the answer,
 * reloaded by a new LU, refused when damaged. */
#include "iscsi-target/scsi_int.h"
#include "tests/unit/harness.h"
#include "tests/unit/iscsi/memlu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LU_SIZE (4u << 20)

enum { WE = 1, EA = 3, WE_RO = 5, EA_RO = 6, WE_AR = 7, EA_AR = 8 };
enum {
	REGISTER = 0, RESERVE = 1, RELEASE = 2, CLEAR = 3, PREEMPT = 4, PREEMPT_ABORT = 5,
	REGISTER_IGNORE = 6, REGISTER_MOVE = 7
};
static const uint8_t all_types[] = {WE, EA, WE_RO, EA_RO, WE_AR, EA_AR};

/* A LU and initiator ports: a and b register, c is a stranger, o only
 * looks (PERSISTENT RESERVE IN) and so never has a unit attention. */
struct fx {
	struct kura_loop *loop;
	struct memlu *m;
	struct kura_scsi_nexus a, b, c, o;
	struct kura_scsi_cmd cmd;
};

static void nexus_add(struct fx *f)
{
	kura_scsi_nexus_new(f->m->lu, &f->a);
	kura_scsi_nexus_new(f->m->lu, &f->b);
	kura_scsi_nexus_new(f->m->lu, &f->c);
	kura_scsi_nexus_new(f->m->lu, &f->o);
}

static void fx_init(struct fx *f)
{
	memset(f, 0, sizeof(*f));
	CHECK_EQ(kura_loop_create(&f->loop, 64), 0);
	f->m = memlu_new(f->loop, LU_SIZE, false, 7, "vd", NULL);
	memlu_nexus(&f->a, 1, "iqn.2026-11.test:node-a", 0x23d000000001ULL);
	memlu_nexus(&f->b, 2, "iqn.2026-11.test:node-b", 0x23d000000002ULL);
	memlu_nexus(&f->c, 3, "iqn.2026-11.test:node-c", 0x23d000000003ULL);
	memlu_nexus(&f->o, 4, "iqn.2026-11.test:observer", 0x23d000000004ULL);
	nexus_add(f);
}

static void fx_fini(struct fx *f)
{
	kura_scsi_cmd_release(&f->cmd);
	memlu_free(f->m);
	kura_loop_destroy(f->loop);
}

static struct kura_scsi_cmd *run(struct fx *f, const struct kura_scsi_nexus *n,
				 const uint8_t *cdb, unsigned cl, uint32_t edtl, unsigned dir,
				 const void *out, uint32_t olen)
{
	memlu_run(f->m, &f->cmd, n, cdb, cl, edtl, dir, out, olen);
	return &f->cmd;
}

#define CHECK_GOOD(c) CHECK_EQ((c)->status, KURA_SCSI_GOOD)
#define CHECK_CONFLICT(c) CHECK_EQ((c)->status, KURA_SCSI_RESERVATION_CONFLICT)
#define CHECK_SENSE(cx, k, a, q)                                 \
	do {                                                     \
		const struct kura_scsi_cmd *c_ = (cx);           \
		CHECK_EQ(c_->status, KURA_SCSI_CHECK_CONDITION); \
		CHECK_EQ(memlu_sk(c_), k);                       \
		CHECK_EQ(memlu_asc(c_), a);                      \
		CHECK_EQ(memlu_ascq(c_), q);                     \
	} while (0)
/* The sense-key-specific field pointer: parameter list byte `field`. */
#define CHECK_PARAM_PTR(c, field, bit)                                          \
	do {                                                                    \
		CHECK_EQ((c)->sense[15] & 0xc0, 0x80);                          \
		CHECK_EQ(scsi_be16((c)->sense + 16), field);                    \
		CHECK_EQ((c)->sense[15] & 0x0f, (bit) < 0 ? 0 : 0x08 | (bit)); \
	} while (0)

/* PERSISTENT RESERVE OUT with a 24-byte parameter list. */
static struct kura_scsi_cmd *prout_flags(struct fx *f, const struct kura_scsi_nexus *n,
					 uint8_t sa, uint8_t type, uint64_t key, uint64_t sakey,
					 uint8_t flags)
{
	uint8_t cdb[10] = {0x5f, sa, type}, p[24] = {0};

	scsi_put32(cdb + 5, sizeof(p));
	scsi_put64(p, key);
	scsi_put64(p + 8, sakey);
	p[20] = flags;
	return run(f, n, cdb, sizeof(cdb), sizeof(p), KURA_SCSI_WRITE, p, sizeof(p));
}

static struct kura_scsi_cmd *prout(struct fx *f, const struct kura_scsi_nexus *n, uint8_t sa,
				   uint8_t type, uint64_t key, uint64_t sakey)
{
	return prout_flags(f, n, sa, type, key, sakey, 0);
}

static struct kura_scsi_cmd *prin(struct fx *f, const struct kura_scsi_nexus *n, uint8_t sa,
				  uint16_t alloc)
{
	uint8_t cdb[10] = {0x5e, sa};

	scsi_put16(cdb + 7, alloc);
	return run(f, n, cdb, sizeof(cdb), alloc, KURA_SCSI_READ, NULL, 0);
}

static void reg(struct fx *f, const struct kura_scsi_nexus *n, uint64_t key)
{
	CHECK_GOOD(prout(f, n, REGISTER_IGNORE, 0, 0, key));
}

static uint32_t generation(struct fx *f)
{
	struct kura_scsi_cmd *c = prin(f, &f->o, 0, 8);

	CHECK_GOOD(c);
	return scsi_be32(c->din);
}

/* READ KEYS: how many, and whether key is among them. */
static unsigned nkeys(struct fx *f, uint64_t key, bool *found)
{
	struct kura_scsi_cmd *c = prin(f, &f->o, 0, 4096);
	unsigned n;

	CHECK_GOOD(c);
	n = scsi_be32(c->din + 4) / 8;
	CHECK_EQ(c->din_len, 8 + 8 * n);
	*found = false;
	for (unsigned i = 0; i < n; i++)
		*found |= scsi_be64(c->din + 8 + 8 * i) == key;
	return n;
}

/* READ RESERVATION: false when none; else its key and type. */
static bool reservation(struct fx *f, uint64_t *key, uint8_t *type)
{
	struct kura_scsi_cmd *c = prin(f, &f->o, 1, 4096);

	CHECK_GOOD(c);
	if (!scsi_be32(c->din + 4)) {
		CHECK_EQ(c->din_len, 8);
		return false;
	}
	CHECK_EQ(scsi_be32(c->din + 4), 16);
	CHECK_EQ(c->din_len, 24);
	*key = scsi_be64(c->din + 8);
	*type = c->din[21];
	return true;
}

static struct kura_scsi_cmd *rw(struct fx *f, const struct kura_scsi_nexus *n, bool write)
{
	uint8_t cdb[10] = {write ? 0x2a : 0x28}, buf[512] = {0};

	scsi_put32(cdb + 2, 8);
	scsi_put16(cdb + 7, 1);
	if (write)
		return run(f, n, cdb, sizeof(cdb), 512, KURA_SCSI_WRITE, buf, 512);
	return run(f, n, cdb, sizeof(cdb), 512, KURA_SCSI_READ, NULL, 0);
}

static bool can(struct fx *f, const struct kura_scsi_nexus *n, bool write)
{
	struct kura_scsi_cmd *c = rw(f, n, write);

	if (c->status == KURA_SCSI_RESERVATION_CONFLICT)
		return false;
	CHECK_GOOD(c);
	return true;
}

static void tur_until_good(struct fx *f, const struct kura_scsi_nexus *n)
{
	uint8_t cdb[6] = {0};

	for (int i = 0; i < 10; i++)
		if (run(f, n, cdb, 6, 0, 0, NULL, 0)->status == KURA_SCSI_GOOD)
			return;
	CHECK(!"unit attentions never end");
}

/* The unit attention n gets next (TEST UNIT READY), 0 for none. */
static uint8_t ua_ascq(struct fx *f, const struct kura_scsi_nexus *n, uint8_t asc)
{
	uint8_t cdb[6] = {0};
	struct kura_scsi_cmd *c = run(f, n, cdb, 6, 0, 0, NULL, 0);

	if (c->status == KURA_SCSI_GOOD)
		return 0;
	CHECK_EQ(memlu_sk(c), SK_UNIT_ATTENTION);
	CHECK_EQ(memlu_asc(c), asc);
	return memlu_ascq(c);
}

TEST(test_pr_register_unregister_and_generation)
{
	struct fx f;
	bool found;
	uint32_t g0;

	fx_init(&f);
	g0 = generation(&f);
	CHECK_EQ(nkeys(&f, 0, &found), 0);
	reg(&f, &f.a, 0x1111);
	reg(&f, &f.b, 0x2222);
	CHECK_EQ(generation(&f), g0 + 2);
	CHECK_EQ(nkeys(&f, 0x2222, &found), 2);
	CHECK(found);
	/* REGISTER needs the current key; REGISTER AND IGNORE does not. */
	CHECK_CONFLICT(prout(&f, &f.a, REGISTER, 0, 0x9999, 0x3333));
	CHECK_CONFLICT(prout(&f, &f.a, REGISTER, 0, 0, 0x3333));
	CHECK_EQ(generation(&f), g0 + 2); /* failed commands count nothing */
	CHECK_GOOD(prout(&f, &f.a, REGISTER, 0, 0x1111, 0x3333));
	CHECK_EQ(nkeys(&f, 0x3333, &found), 2);
	CHECK(found);
	CHECK_GOOD(prout(&f, &f.a, REGISTER_IGNORE, 0, 0x4444, 0x5555));
	CHECK_EQ(nkeys(&f, 0x5555, &found), 2);
	CHECK(found);
	CHECK_EQ(generation(&f), g0 + 4);
	/* unregister */
	CHECK_GOOD(prout(&f, &f.a, REGISTER, 0, 0x5555, 0));
	CHECK_EQ(nkeys(&f, 0x5555, &found), 1);
	CHECK(!found);
	CHECK_EQ(generation(&f), g0 + 5);
	/* an unregistered nexus "unregistering": GOOD, nothing happens */
	CHECK_GOOD(prout(&f, &f.c, REGISTER, 0, 0, 0));
	CHECK_EQ(generation(&f), g0 + 5);
	/* an unregistered nexus with a non-zero key conflicts */
	CHECK_CONFLICT(prout(&f, &f.c, REGISTER, 0, 0x77, 0x88));
	/* one initiator name with two ISIDs is two initiator ports */
	{
		struct kura_scsi_nexus a2;

		memlu_nexus(&a2, 9, "iqn.2026-11.test:node-a", 0x23d000000009ULL);
		reg(&f, &a2, 0x6666);
		CHECK_EQ(nkeys(&f, 0x6666, &found), 2);
	}
	fx_fini(&f);
}

TEST(test_pr_parameter_list_and_cdb_checks)
{
	struct fx f;
	struct kura_scsi_cmd *c;
	uint8_t cdb[10] = {0x5f, REGISTER_IGNORE}, p[32] = {0};

	fx_init(&f);
	/* parameter list length must be 24 */
	scsi_put64(p + 8, 0x10);
	scsi_put32(cdb + 5, 25);
	c = run(&f, &f.a, cdb, 10, 25, KURA_SCSI_WRITE, p, 25);
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x1a, 0x00);
	scsi_put32(cdb + 5, 20);
	c = run(&f, &f.a, cdb, 10, 20, KURA_SCSI_WRITE, p, 20);
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x1a, 0x00);
	/* SPEC_I_PT and ALL_TG_PT are not offered: field pointers say which */
	c = prout_flags(&f, &f.a, REGISTER, 0, 0, 0x10, 0x08);
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x26, 0x00);
	CHECK_PARAM_PTR(c, 20, 3);
	c = prout_flags(&f, &f.a, REGISTER_IGNORE, 0, 0, 0x10, 0x04);
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x26, 0x00);
	CHECK_PARAM_PTR(c, 20, 2);
	/* service action, scope and type */
	c = prout(&f, &f.a, 8, 0, 0, 0);
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x24, 0x00);
	reg(&f, &f.a, 0x10);
	CHECK_SENSE(prout(&f, &f.a, RESERVE, 0x10 | WE, 0x10, 0), SK_ILLEGAL_REQUEST, 0x24, 0x00);
	CHECK_SENSE(prout(&f, &f.a, RESERVE, 2, 0x10, 0), SK_ILLEGAL_REQUEST, 0x24, 0x00);
	CHECK_SENSE(prout(&f, &f.a, PREEMPT, 0x0f, 0x10, 0x10), SK_ILLEGAL_REQUEST, 0x24, 0x00);
	/* PERSISTENT RESERVE IN: service actions 0-3 only */
	for (uint8_t sa = 0; sa < 0x20; sa++) {
		c = prin(&f, &f.a, sa, 4096);
		if (sa < 4)
			CHECK_GOOD(c);
		else
			CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x24, 0x00);
	}
	fx_fini(&f);
}

TEST(test_pr_reserve_release_every_type)
{
	struct fx f;
	uint64_t key;
	uint8_t type;
	uint32_t g;

	fx_init(&f);
	reg(&f, &f.a, 0xa1);
	reg(&f, &f.b, 0xb1);
	g = generation(&f);
	for (unsigned i = 0; i < sizeof(all_types); i++) {
		uint8_t t = all_types[i];
		bool ar = t == WE_AR || t == EA_AR;

		CHECK(!reservation(&f, &key, &type));
		CHECK_CONFLICT(prout(&f, &f.c, RESERVE, t, 0, 0)); /* not registered */
		CHECK_CONFLICT(prout(&f, &f.a, RESERVE, t, 0xbad, 0)); /* wrong key */
		CHECK_GOOD(prout(&f, &f.a, RESERVE, t, 0xa1, 0));
		CHECK(reservation(&f, &key, &type));
		CHECK_EQ(type, t);
		CHECK_EQ(key, ar ? 0 : 0xa1); /* all-registrants types report key 0 */
		/* the holder again, same type: GOOD; another type: conflict */
		CHECK_GOOD(prout(&f, &f.a, RESERVE, t, 0xa1, 0));
		CHECK_CONFLICT(prout(&f, &f.a, RESERVE, t == WE ? EA : WE, 0xa1, 0));
		/* another registrant: conflict, unless all registrants hold it */
		if (ar)
			CHECK_GOOD(prout(&f, &f.b, RESERVE, t, 0xb1, 0));
		else
			CHECK_CONFLICT(prout(&f, &f.b, RESERVE, t, 0xb1, 0));
		/* a registrant that does not hold it releases nothing */
		if (!ar) {
			CHECK_GOOD(prout(&f, &f.b, RELEASE, t, 0xb1, 0));
			CHECK(reservation(&f, &key, &type));
		}
		/* the holder with the wrong type */
		CHECK_SENSE(prout(&f, &f.a, RELEASE, t == WE ? EA : WE, 0xa1, 0),
			    SK_ILLEGAL_REQUEST, 0x26, 0x04);
		CHECK_GOOD(prout(&f, ar ? &f.b : &f.a, RELEASE, t, ar ? 0xb1 : 0xa1, 0));
		CHECK(!reservation(&f, &key, &type));
		tur_until_good(&f, &f.a);
		tur_until_good(&f, &f.b);
	}
	/* RESERVE and RELEASE leave PRgeneration alone */
	CHECK_EQ(generation(&f), g);
	fx_fini(&f);
}

TEST(test_pr_release_tells_registrants_of_shared_types)
{
	struct fx f;

	fx_init(&f);
	reg(&f, &f.a, 1);
	reg(&f, &f.b, 2);
	CHECK_GOOD(prout(&f, &f.a, RESERVE, WE, 1, 0));
	CHECK_GOOD(prout(&f, &f.a, RELEASE, WE, 1, 0));
	CHECK_EQ(ua_ascq(&f, &f.b, 0x2a), 0); /* Write Exclusive: no one is told */
	CHECK_GOOD(prout(&f, &f.a, RESERVE, WE_RO, 1, 0));
	CHECK_GOOD(prout(&f, &f.a, RELEASE, WE_RO, 1, 0));
	CHECK_EQ(ua_ascq(&f, &f.b, 0x2a), 0x04); /* RESERVATIONS RELEASED */
	CHECK_EQ(ua_ascq(&f, &f.a, 0x2a), 0);
	CHECK_EQ(ua_ascq(&f, &f.c, 0x2a), 0);   /* not a registrant */
	fx_fini(&f);
}

/* Expected access for a registrant that does not hold the reservation and
 * for a nexus that is not registered. */
struct access {
	uint8_t type;
	bool reg_read, reg_write, unreg_read, unreg_write;
};

TEST(test_pr_conflict_matrix_every_type)
{
	static const struct access table[] = {
		{WE, true, false, true, false},
		{EA, false, false, false, false},
		{WE_RO, true, true, true, false},
		{EA_RO, true, true, false, false},
		{WE_AR, true, true, true, false},
		{EA_AR, true, true, false, false},
	};
	struct fx f;

	fx_init(&f);
	for (unsigned i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		const struct access *t = &table[i];
		uint8_t inq[6] = {0x12, 0, 0, 0, 36}, rc10[10] = {0x25}, ms[6] = {0x1a, 0, 0x3f, 0, 255};
		uint8_t sync[10] = {0x35};

		reg(&f, &f.a, 0xa);
		reg(&f, &f.b, 0xb);
		CHECK_GOOD(prout(&f, &f.a, RESERVE, t->type, 0xa, 0));
		/* the holder does everything */
		CHECK(can(&f, &f.a, false));
		CHECK(can(&f, &f.a, true));
		CHECK_EQ(can(&f, &f.b, false), t->reg_read);
		CHECK_EQ(can(&f, &f.b, true), t->reg_write);
		CHECK_EQ(can(&f, &f.c, false), t->unreg_read);
		CHECK_EQ(can(&f, &f.c, true), t->unreg_write);
		/* always allowed: INQUIRY, READ CAPACITY, TEST UNIT READY, PRIN */
		CHECK_GOOD(run(&f, &f.c, inq, 6, 36, KURA_SCSI_READ, NULL, 0));
		CHECK_GOOD(run(&f, &f.c, rc10, 10, 8, KURA_SCSI_READ, NULL, 0));
		tur_until_good(&f, &f.c);
		CHECK_GOOD(prin(&f, &f.c, 0, 1024));
		/* MODE SENSE passes Write Exclusive types (ALLOW COMMANDS 011b) */
		CHECK_EQ(run(&f, &f.c, ms, 6, 255, KURA_SCSI_READ, NULL, 0)->status,
			 t->unreg_read ? KURA_SCSI_GOOD : KURA_SCSI_RESERVATION_CONFLICT);
		/* SYNCHRONIZE CACHE counts as a write */
		CHECK_EQ(run(&f, &f.c, sync, 10, 0, 0, NULL, 0)->status,
			 KURA_SCSI_RESERVATION_CONFLICT);
		/* unregistered, b is a stranger too */
		CHECK_GOOD(prout(&f, &f.b, REGISTER, 0, 0xb, 0));
		CHECK_EQ(can(&f, &f.b, false), t->unreg_read);
		CHECK_EQ(can(&f, &f.b, true), t->unreg_write);
		CHECK_GOOD(prout(&f, &f.a, CLEAR, 0, 0xa, 0));
		tur_until_good(&f, &f.b);
		CHECK(can(&f, &f.c, true));
	}
	fx_fini(&f);
}

TEST(test_pr_holder_unregistering_ends_its_reservation)
{
	struct fx f;
	uint64_t key;
	uint8_t type;

	fx_init(&f);
	for (unsigned i = 0; i < sizeof(all_types); i++) {
		uint8_t t = all_types[i];
		bool ar = t == WE_AR || t == EA_AR, ro = t == WE_RO || t == EA_RO;

		reg(&f, &f.a, 0xa);
		reg(&f, &f.b, 0xb);
		CHECK_GOOD(prout(&f, &f.a, RESERVE, t, 0xa, 0));
		CHECK_GOOD(prout(&f, &f.a, REGISTER, 0, 0xa, 0));
		if (ar) {
			/* b still holds it */
			CHECK(reservation(&f, &key, &type));
			CHECK_EQ(type, t);
			CHECK_GOOD(prout(&f, &f.b, REGISTER, 0, 0xb, 0));
			/* the last registrant took it along */
			CHECK(!reservation(&f, &key, &type));
		} else {
			CHECK(!reservation(&f, &key, &type));
			CHECK_EQ(ua_ascq(&f, &f.b, 0x2a), ro ? 0x04 : 0);
			CHECK_GOOD(prout(&f, &f.b, REGISTER, 0, 0xb, 0));
		}
		tur_until_good(&f, &f.a);
		tur_until_good(&f, &f.b);
	}
	fx_fini(&f);
}

TEST(test_pr_holder_changing_its_key_keeps_the_reservation)
{
	struct fx f;
	uint64_t key;
	uint8_t type;

	fx_init(&f);
	reg(&f, &f.a, 0xa);
	CHECK_GOOD(prout(&f, &f.a, RESERVE, EA, 0xa, 0));
	CHECK_GOOD(prout(&f, &f.a, REGISTER, 0, 0xa, 0xaa));
	CHECK(reservation(&f, &key, &type));
	CHECK_EQ(key, 0xaa);
	CHECK_EQ(type, EA);
	CHECK(!can(&f, &f.b, false));
	fx_fini(&f);
}

TEST(test_pr_preempt_removes_a_registration)
{
	struct fx f;
	bool found;
	uint32_t g;

	fx_init(&f);
	reg(&f, &f.a, 0x1a);
	reg(&f, &f.b, 0x2b);
	g = generation(&f);
	/* no reservation: the registrations with the key go */
	CHECK_GOOD(prout(&f, &f.b, PREEMPT, EA, 0x2b, 0x1a));
	CHECK_EQ(nkeys(&f, 0x1a, &found), 1);
	CHECK(!found);
	CHECK_EQ(generation(&f), g + 1);
	CHECK_EQ(ua_ascq(&f, &f.a, 0x2a), 0x05); /* REGISTRATIONS PREEMPTED */
	CHECK_EQ(ua_ascq(&f, &f.b, 0x2a), 0);
	uint64_t key;
	uint8_t type;
	CHECK(!reservation(&f, &key, &type)); /* TYPE is ignored without a holder */
	/* a key nobody has: conflict; key 0 without an all-registrants type: bad field */
	CHECK_CONFLICT(prout(&f, &f.b, PREEMPT, EA, 0x2b, 0x99));
	struct kura_scsi_cmd *c = prout(&f, &f.b, PREEMPT, EA, 0x2b, 0);
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x26, 0x00);
	CHECK_PARAM_PTR(c, 8, -1);
	/* a stranger, or a wrong key, may not preempt */
	CHECK_CONFLICT(prout(&f, &f.c, PREEMPT, EA, 0, 0x2b));
	CHECK_CONFLICT(prout(&f, &f.a, PREEMPT, EA, 0x1a, 0x2b));
	/* the key is our own: our registration goes (SPC-4 5.13.11.4.4) */
	CHECK_GOOD(prout(&f, &f.b, PREEMPT, EA, 0x2b, 0x2b));
	CHECK_EQ(nkeys(&f, 0, &found), 0);
	CHECK_EQ(ua_ascq(&f, &f.b, 0x2a), 0);
	fx_fini(&f);
}

TEST(test_pr_preempt_takes_the_reservation)
{
	struct fx f;
	uint64_t key;
	uint8_t type;
	bool found;

	fx_init(&f);
	reg(&f, &f.a, 0xa);
	reg(&f, &f.b, 0xb);
	reg(&f, &f.c, 0xc);
	CHECK_GOOD(prout(&f, &f.a, RESERVE, WE, 0xa, 0));
	/* b preempts a's reservation and registration, with a new type */
	CHECK_GOOD(prout(&f, &f.b, PREEMPT, EA_RO, 0xb, 0xa));
	CHECK(reservation(&f, &key, &type));
	CHECK_EQ(key, 0xb);
	CHECK_EQ(type, EA_RO);
	CHECK_EQ(nkeys(&f, 0xa, &found), 2);
	CHECK(!found);
	CHECK_EQ(ua_ascq(&f, &f.a, 0x2a), 0x05);
	CHECK_EQ(ua_ascq(&f, &f.c, 0x2a), 0x04); /* the type changed: RESERVATIONS RELEASED */
	CHECK_EQ(ua_ascq(&f, &f.b, 0x2a), 0);
	CHECK(!can(&f, &f.a, false));
	CHECK(can(&f, &f.c, true));
	/* the holder may preempt itself to change the type */
	CHECK_GOOD(prout(&f, &f.b, PREEMPT, EA, 0xb, 0xb));
	CHECK(reservation(&f, &key, &type));
	CHECK_EQ(type, EA);
	CHECK_EQ(nkeys(&f, 0xb, &found), 2);
	CHECK(found);
	CHECK_EQ(ua_ascq(&f, &f.c, 0x2a), 0x04);
	fx_fini(&f);
}

TEST(test_pr_preempt_all_registrants_with_key_zero)
{
	struct fx f;
	uint64_t key;
	uint8_t type;
	bool found;

	fx_init(&f);
	reg(&f, &f.a, 0xa);
	reg(&f, &f.b, 0xb);
	reg(&f, &f.c, 0xc);
	CHECK_GOOD(prout(&f, &f.a, RESERVE, WE_AR, 0xa, 0));
	/* a non-zero key removes that registration, the reservation stays */
	CHECK_GOOD(prout(&f, &f.a, PREEMPT, WE_AR, 0xa, 0xc));
	CHECK_EQ(nkeys(&f, 0xc, &found), 2);
	CHECK(!found);
	CHECK(reservation(&f, &key, &type));
	CHECK_EQ(type, WE_AR);
	/* key 0: everyone else goes, a holds the new type alone */
	CHECK_GOOD(prout(&f, &f.a, PREEMPT, EA, 0xa, 0));
	CHECK_EQ(nkeys(&f, 0xa, &found), 1);
	CHECK(found);
	CHECK(reservation(&f, &key, &type));
	CHECK_EQ(key, 0xa);
	CHECK_EQ(type, EA);
	CHECK_EQ(ua_ascq(&f, &f.b, 0x2a), 0x05);
	CHECK_EQ(ua_ascq(&f, &f.c, 0x2a), 0x05);
	fx_fini(&f);
}

static void cmd_done(struct kura_scsi_cmd *cmd)
{
	*(int *)cmd->priv = 1;
}

TEST(test_pr_preempt_and_abort_ends_the_preempted_commands)
{
	struct fx f;
	struct kura_scsi_cmd rd = {0};
	uint8_t cdb[10] = {0x28};
	int done = 0;

	fx_init(&f);
	reg(&f, &f.a, 0xa);
	reg(&f, &f.b, 0xb);
	CHECK_GOOD(prout(&f, &f.a, RESERVE, WE, 0xa, 0));
	/* a's READ sits at the backend */
	f.m->hold = 1;
	scsi_put16(cdb + 7, 8);
	rd.lu = f.m->lu;
	rd.nexus = &f.a;
	memcpy(rd.cdb, cdb, sizeof(cdb));
	rd.edtl = 4096;
	rd.dir = KURA_SCSI_READ;
	rd.done = cmd_done;
	rd.priv = &done;
	kura_scsi_exec(&rd);
	for (int i = 0; i < 5; i++)
		kura_loop_run_once(f.loop, 0);
	CHECK(!done);
	f.m->hold = 0;
	CHECK_GOOD(prout(&f, &f.b, PREEMPT_ABORT, EA, 0xb, 0xa));
	memlu_release(f.m);
	while (!done)
		kura_loop_run_once(f.loop, 1000000000ULL);
	CHECK_EQ(rd.status, KURA_SCSI_TASK_ABORTED);
	kura_scsi_cmd_release(&rd);
	CHECK_EQ(ua_ascq(&f, &f.a, 0x2a), 0x05);
	CHECK(!can(&f, &f.a, false));
	fx_fini(&f);
}

TEST(test_pr_clear_removes_everything)
{
	struct fx f;
	uint64_t key;
	uint8_t type;
	bool found;
	uint32_t g;

	fx_init(&f);
	reg(&f, &f.a, 0xa);
	reg(&f, &f.b, 0xb);
	CHECK_GOOD(prout(&f, &f.a, RESERVE, EA, 0xa, 0));
	g = generation(&f);
	CHECK_CONFLICT(prout(&f, &f.c, CLEAR, 0, 0, 0));
	CHECK_CONFLICT(prout(&f, &f.b, CLEAR, 0, 0xa, 0));
	CHECK_GOOD(prout(&f, &f.b, CLEAR, 0, 0xb, 0));
	CHECK_EQ(nkeys(&f, 0, &found), 0);
	CHECK(!reservation(&f, &key, &type));
	CHECK_EQ(generation(&f), g + 1);
	CHECK_EQ(ua_ascq(&f, &f.a, 0x2a), 0x03); /* RESERVATIONS PREEMPTED */
	CHECK_EQ(ua_ascq(&f, &f.b, 0x2a), 0);
	CHECK_EQ(ua_ascq(&f, &f.c, 0x2a), 0);
	CHECK(can(&f, &f.c, true));
	fx_fini(&f);
}

/* REGISTER AND MOVE with an iSCSI TransportID naming port `to`. */
static struct kura_scsi_cmd *register_move(struct fx *f, const struct kura_scsi_nexus *n,
					   uint64_t key, uint64_t sakey, const char *to,
					   uint8_t flags, uint8_t proto)
{
	uint8_t cdb[10] = {0x5f, REGISTER_MOVE, WE}, p[24 + 4 + 300] = {0};
	size_t l = strlen(to) + 1;
	uint32_t tl = 4 + (uint32_t)((l + 3) & ~(size_t)3), len = 24 + tl;

	scsi_put64(p, key);
	scsi_put64(p + 8, sakey);
	p[17] = flags;
	scsi_put16(p + 18, 1);
	scsi_put32(p + 20, tl);
	p[24] = 0x40 | proto;
	scsi_put16(p + 26, (uint16_t)(tl - 4));
	memcpy(p + 28, to, l);
	scsi_put32(cdb + 5, len);
	return run(f, n, cdb, sizeof(cdb), len, KURA_SCSI_WRITE, p, len);
}

TEST(test_pr_register_and_move)
{
	struct fx f;
	uint64_t key;
	uint8_t type;
	bool found;
	struct kura_scsi_cmd *c;
	char upper[300];

	fx_init(&f);
	reg(&f, &f.a, 0xa);
	/* nothing to move yet */
	CHECK_SENSE(register_move(&f, &f.a, 0xa, 0xbb, f.b.iport, 0, 5), SK_ILLEGAL_REQUEST,
		    0x24, 0x00);
	CHECK_GOOD(prout(&f, &f.a, RESERVE, WE_RO, 0xa, 0));
	/* refusals: wrong key, key 0, another protocol, ourselves */
	CHECK_CONFLICT(register_move(&f, &f.a, 0xbad, 0xbb, f.b.iport, 0, 5));
	CHECK_CONFLICT(register_move(&f, &f.c, 0, 0xbb, f.b.iport, 0, 5));
	c = register_move(&f, &f.a, 0xa, 0, f.b.iport, 0, 5);
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x26, 0x00);
	c = register_move(&f, &f.a, 0xa, 0xbb, f.b.iport, 0, 1);
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x26, 0x00);
	CHECK_PARAM_PTR(c, 24, -1);
	c = register_move(&f, &f.a, 0xa, 0xbb, f.a.iport, 0, 5);
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x26, 0x00);
	/* to b (not registered yet), hex digits of the ISID in upper case */
	snprintf(upper, sizeof(upper), "%s", f.b.iport);
	for (char *p = strstr(upper, ",i,0x") + 5; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	CHECK_GOOD(register_move(&f, &f.a, 0xa, 0xbb, upper, 0, 5));
	CHECK(reservation(&f, &key, &type));
	CHECK_EQ(key, 0xbb);
	CHECK_EQ(type, WE_RO);
	CHECK_EQ(nkeys(&f, 0xa, &found), 2);
	CHECK(found); /* a stays registered without UNREG */
	CHECK(can(&f, &f.b, true));
	CHECK(can(&f, &f.a, true)); /* a registrant of a registrants-only type */
	/* back to a, unregistering b */
	CHECK_CONFLICT(register_move(&f, &f.a, 0xa, 0xaa, f.a.iport, 0, 5)); /* a no longer holds it */
	CHECK_GOOD(register_move(&f, &f.b, 0xbb, 0xaa, f.a.iport, 0x02, 5));
	CHECK(reservation(&f, &key, &type));
	CHECK_EQ(key, 0xaa);
	CHECK_EQ(nkeys(&f, 0xbb, &found), 1);
	CHECK(!found);
	/* all-registrants reservations cannot move */
	CHECK_GOOD(prout(&f, &f.a, RELEASE, WE_RO, 0xaa, 0));
	CHECK_GOOD(prout(&f, &f.a, RESERVE, EA_AR, 0xaa, 0));
	CHECK_CONFLICT(register_move(&f, &f.a, 0xaa, 0xbb, f.b.iport, 0, 5));
	fx_fini(&f);
}

TEST(test_pr_read_full_status_contents)
{
	struct fx f;
	struct kura_scsi_cmd *c;
	uint32_t n, off = 8, seen = 0;

	fx_init(&f);
	reg(&f, &f.a, 0xa);
	reg(&f, &f.b, 0xb);
	CHECK_GOOD(prout(&f, &f.b, RESERVE, EA, 0xb, 0));
	c = prin(&f, &f.c, 3, 4096);
	CHECK_GOOD(c);
	n = scsi_be32(c->din + 4);
	CHECK_EQ(c->din_len, 8 + n);
	while (off < 8 + n) {
		const uint8_t *d = c->din + off;
		uint32_t tl = scsi_be32(d + 20);
		uint64_t key = scsi_be64(d);
		const struct kura_scsi_nexus *who = key == 0xa ? &f.a : &f.b;
		size_t l = strlen(who->iport) + 1;

		CHECK(key == 0xa || key == 0xb);
		CHECK_EQ(d[12], key == 0xb ? 0x01 : 0x00); /* R_HOLDER, no ALL_TG_PT */
		CHECK_EQ(d[13], key == 0xb ? EA : 0);
		CHECK_EQ(scsi_be16(d + 18), 1);           /* relative target port */
		/* iSCSI TransportID, format 01b: "<name>,i,0x<isid>", padded to 4 */
		CHECK_EQ(d[24], 0x45);
		CHECK_EQ(scsi_be16(d + 26), tl - 4);
		CHECK_EQ(tl, 4 + ((l + 3) & ~(size_t)3));
		CHECK(!memcmp(d + 28, who->iport, l));
		seen |= key == 0xa ? 1 : 2;
		off += 24 + tl;
	}
	CHECK_EQ(off, 8 + n);
	CHECK_EQ(seen, 3);
	/* cut by the allocation length, the length field still says all */
	c = prin(&f, &f.c, 3, 20);
	CHECK_GOOD(c);
	CHECK_EQ(c->din_len, 20);
	CHECK_EQ(scsi_be32(c->din + 4), n);
	fx_fini(&f);
}

TEST(test_pr_read_keys_truncated_and_capabilities)
{
	struct fx f;
	struct kura_scsi_cmd *c;

	fx_init(&f);
	reg(&f, &f.a, 0xa);
	reg(&f, &f.b, 0xb);
	c = prin(&f, &f.a, 0, 8);
	CHECK_GOOD(c);
	CHECK_EQ(c->din_len, 8);
	CHECK_EQ(scsi_be32(c->din + 4), 16);
	c = prin(&f, &f.a, 2, 8);
	CHECK_GOOD(c);
	CHECK_EQ(c->din_len, 8);
	CHECK_EQ(scsi_be16(c->din), 8);
	CHECK_EQ(c->din[2], 0x11);           /* CRH, PTPL_C; no SIP_C, ATP_C */
	CHECK_EQ(c->din[3] & 0x80, 0x80);    /* TMV */
	CHECK_EQ((c->din[3] >> 4) & 7, 3);   /* ALLOW COMMANDS */
	CHECK_EQ(c->din[3] & 0x01, 0);       /* PTPL_A */
	CHECK_EQ(c->din[4], 0xea);
	CHECK_EQ(c->din[5], 0x01);
	/* APTPL from the last registration is reported */
	CHECK_GOOD(prout_flags(&f, &f.a, REGISTER, 0, 0xa, 0xa, 0x01));
	c = prin(&f, &f.a, 2, 8);
	CHECK_EQ(c->din[3] & 0x01, 1);
	fx_fini(&f);
}

TEST(test_pr_state_survives_a_new_lu)
{
	struct fx f;
	struct memlu *m2;
	char *saved;
	uint64_t key;
	uint8_t type;
	bool found;
	uint32_t g;

	fx_init(&f);
	reg(&f, &f.a, 0xfedcba9876543210ULL);
	reg(&f, &f.b, 0xb);
	CHECK_GOOD(prout(&f, &f.a, RESERVE, WE_RO, 0xfedcba9876543210ULL, 0));
	g = generation(&f);
	CHECK(f.m->pr_saves >= 3);
	CHECK(f.m->pr_state);
	saved = strdup(f.m->pr_state);
	CHECK(saved);
	/* The daemon restarts: a new LU from the saved string. */
	m2 = memlu_new(f.loop, LU_SIZE, false, 7, "vd", saved);
	memlu_free(f.m);
	f.m = m2;
	nexus_add(&f);
	CHECK_EQ(generation(&f), g);
	CHECK_EQ(nkeys(&f, 0xfedcba9876543210ULL, &found), 2);
	CHECK(found);
	CHECK(reservation(&f, &key, &type));
	CHECK_EQ(key, 0xfedcba9876543210ULL);
	CHECK_EQ(type, WE_RO);
	CHECK(can(&f, &f.b, true));
	CHECK(!can(&f, &f.c, true));
	/* all-registrants reservations too */
	CHECK_GOOD(prout(&f, &f.a, RELEASE, WE_RO, 0xfedcba9876543210ULL, 0));
	tur_until_good(&f, &f.b); /* RESERVATIONS RELEASED */
	CHECK_GOOD(prout(&f, &f.b, RESERVE, EA_AR, 0xb, 0));
	free(saved);
	saved = strdup(f.m->pr_state);
	m2 = memlu_new(f.loop, LU_SIZE, false, 7, "vd", saved);
	memlu_free(f.m);
	f.m = m2;
	nexus_add(&f);
	CHECK(reservation(&f, &key, &type));
	CHECK_EQ(key, 0);
	CHECK_EQ(type, EA_AR);
	CHECK(can(&f, &f.a, false));
	CHECK(!can(&f, &f.c, false));
	free(saved);
	fx_fini(&f);
}

TEST(test_pr_damaged_state_is_refused)
{
	static const char *bad[] = {
		"",
		"{",
		"[]",
		"null",
		"{\"version\":1}",
		"{\"version\":2,\"generation\":0,\"aptpl\":false,\"registrations\":[],\"reservation\":null}",
		"{\"version\":1,\"generation\":-1,\"aptpl\":false,\"registrations\":[],\"reservation\":null}",
		"{\"version\":1,\"generation\":4294967296,\"aptpl\":false,\"registrations\":[],\"reservation\":null}",
		"{\"version\":1,\"generation\":0,\"aptpl\":0,\"registrations\":[],\"reservation\":null}",
		"{\"version\":1,\"generation\":0,\"aptpl\":false,\"registrations\":{},\"reservation\":null}",
		"{\"version\":1,\"generation\":0,\"aptpl\":false,\"registrations\":[]}",
		"{\"version\":1,\"generation\":0,\"aptpl\":false,\"registrations\":[{\"iport\":\"x\",\"rtpi\":1,\"key\":\"12\"}],\"reservation\":null}",
		"{\"version\":1,\"generation\":0,\"aptpl\":false,\"registrations\":[{\"iport\":\"x\",\"rtpi\":1,\"key\":\"0xzz\"}],\"reservation\":null}",
		"{\"version\":1,\"generation\":0,\"aptpl\":false,\"registrations\":[{\"iport\":\"x\",\"rtpi\":1,\"key\":\"0x0\"}],\"reservation\":null}",
		"{\"version\":1,\"generation\":0,\"aptpl\":false,\"registrations\":[{\"iport\":\"\",\"rtpi\":1,\"key\":\"0x1\"}],\"reservation\":null}",
		"{\"version\":1,\"generation\":0,\"aptpl\":false,\"registrations\":[{\"iport\":\"x\",\"rtpi\":70000,\"key\":\"0x1\"}],\"reservation\":null}",
		"{\"version\":1,\"generation\":0,\"aptpl\":false,\"registrations\":[{\"iport\":\"x\",\"rtpi\":1,\"key\":\"0x1\"},{\"iport\":\"x\",\"rtpi\":1,\"key\":\"0x2\"}],\"reservation\":null}",
		"{\"version\":1,\"generation\":0,\"aptpl\":false,\"registrations\":[{\"iport\":\"x\",\"rtpi\":1,\"key\":\"0x1\"}],\"reservation\":{\"type\":2,\"holder\":\"x\",\"holder_rtpi\":1}}",
		"{\"version\":1,\"generation\":0,\"aptpl\":false,\"registrations\":[{\"iport\":\"x\",\"rtpi\":1,\"key\":\"0x1\"}],\"reservation\":{\"type\":1,\"holder\":\"y\",\"holder_rtpi\":1}}",
		"{\"version\":1,\"generation\":0,\"aptpl\":false,\"registrations\":[],\"reservation\":{\"type\":7,\"holder\":null}}",
		"{\"version\":1,\"generation\":0,\"aptpl\":false,\"registrations\":[],\"reservation\":null} x",
	};
	static const char *good =
		"{\"version\":1,\"generation\":5,\"aptpl\":true,\"registrations\":[{\"iport\":\"x,i,0x000000000001\",\"rtpi\":1,\"key\":\"0x1\"}],\"reservation\":{\"type\":1,\"holder\":\"x,i,0x000000000001\",\"holder_rtpi\":1}}";
	struct kura_loop *loop;
	struct memlu m = {0};
	struct kura_scsi_lu_opts o = {0};
	struct kura_scsi_lu *lu;

	CHECK_EQ(kura_loop_create(&loop, 16), 0);
	o.loop = loop;
	o.ops = &memlu_ops;
	o.be = &m;
	o.size = LU_SIZE;
	o.uid = 1;
	o.name = "vd";
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o.pr_state = bad[i];
		lu = NULL;
		if (kura_scsi_lu_create(&o, &lu) != -EINVAL) {
			fprintf(stderr, "  accepted: %s\n", bad[i]);
			CHECK(0);
		}
	}
	o.pr_state = good;
	CHECK_EQ(kura_scsi_lu_create(&o, &lu), 0);
	kura_scsi_lu_destroy(lu);
	o.pr_state = NULL;
	CHECK_EQ(kura_scsi_lu_create(&o, &lu), 0);
	kura_scsi_lu_destroy(lu);
	kura_loop_destroy(loop);
}

TEST(test_pr_answer_waits_for_the_save)
{
	struct fx f;
	struct kura_scsi_cmd c1 = {0}, c2 = {0};
	uint8_t cdb[10] = {0x5f, REGISTER_IGNORE}, p1[24] = {0}, p2[24] = {0};
	int d1 = 0, d2 = 0;
	bool found;

	fx_init(&f);
	scsi_put32(cdb + 5, 24);
	scsi_put64(p1 + 8, 0xa);
	scsi_put64(p2 + 8, 0xb);
	f.m->hold = 1;
	memlu_start(f.m, &c1, &f.a, cdb, 10, 24, KURA_SCSI_WRITE, p1, 24, &d1);
	memlu_start(f.m, &c2, &f.b, cdb, 10, 24, KURA_SCSI_WRITE, p2, 24, &d2);
	for (int i = 0; i < 10; i++)
		kura_loop_run_once(f.loop, 0);
	/* one save at a time; nothing answered or visible before it is durable */
	CHECK(!d1 && !d2);
	CHECK_EQ(f.m->pr_saves, 1);
	f.m->hold = 0;
	CHECK_EQ(nkeys(&f, 0xa, &found), 0);
	memlu_release(f.m);
	while (!d1 || !d2)
		kura_loop_run_once(f.loop, 1000000000ULL);
	CHECK_GOOD(&c1);
	CHECK_GOOD(&c2);
	CHECK_EQ(f.m->pr_saves, 2);
	CHECK_EQ(nkeys(&f, 0xa, &found), 2);
	CHECK(found);
	CHECK(strstr(f.m->pr_state, "node-b"));
	free(c1.dout);
	free(c2.dout);
	kura_scsi_cmd_release(&c1);
	kura_scsi_cmd_release(&c2);
	fx_fini(&f);
}

TEST(test_pr_failed_save_changes_nothing)
{
	struct fx f;
	bool found;
	uint32_t g;

	fx_init(&f);
	reg(&f, &f.a, 0xa);
	g = generation(&f);
	f.m->fail_next = -EIO;
	CHECK_SENSE(prout(&f, &f.b, REGISTER_IGNORE, 0, 0, 0xb), SK_HARDWARE_ERROR, 0x44, 0x00);
	CHECK_EQ(nkeys(&f, 0xb, &found), 1);
	CHECK(!found);
	CHECK_EQ(generation(&f), g);
	f.m->fail_next = -EIO;
	CHECK_SENSE(prout(&f, &f.a, RESERVE, EA, 0xa, 0), SK_HARDWARE_ERROR, 0x44, 0x00);
	CHECK(can(&f, &f.c, true));
	CHECK_GOOD(prout(&f, &f.a, RESERVE, EA, 0xa, 0));
	CHECK(!can(&f, &f.c, false));
	fx_fini(&f);
}

static struct kura_scsi_cmd *reserve6(struct fx *f, const struct kura_scsi_nexus *n, bool rel)
{
	uint8_t cdb[6] = {rel ? 0x17 : 0x16};

	return run(f, n, cdb, 6, 0, 0, NULL, 0);
}

TEST(test_pr_reserve6_two_initiators)
{
	struct fx f;
	uint8_t ms[6] = {0x1a, 0, 0x3f, 0, 255}, inq[6] = {0x12, 0, 0, 0, 36};

	fx_init(&f);
	CHECK_GOOD(reserve6(&f, &f.a, false));
	CHECK_GOOD(reserve6(&f, &f.a, false)); /* again: fine */
	CHECK_CONFLICT(reserve6(&f, &f.b, false));
	CHECK_GOOD(reserve6(&f, &f.b, true));  /* releasing another's: a no-op */
	CHECK_GOOD(run(&f, &f.a, ms, 6, 255, KURA_SCSI_READ, NULL, 0));
	CHECK_CONFLICT(run(&f, &f.b, ms, 6, 255, KURA_SCSI_READ, NULL, 0));
	CHECK_GOOD(run(&f, &f.b, inq, 6, 36, KURA_SCSI_READ, NULL, 0));
	CHECK(!can(&f, &f.b, false));
	CHECK(can(&f, &f.a, true));
	CHECK_CONFLICT(reserve6(&f, &f.b, false));
	CHECK_GOOD(reserve6(&f, &f.a, true));
	CHECK_GOOD(reserve6(&f, &f.b, false));
	CHECK(!can(&f, &f.a, false));
	/* the holder's nexus ends: its reservation goes */
	kura_scsi_nexus_gone(f.m->lu, &f.b);
	CHECK(can(&f, &f.a, true));
	/* obsolete extent and third-party reservations are refused */
	{
		uint8_t ext[6] = {0x16, 0x01}, third[6] = {0x16, 0x10};

		CHECK_SENSE(run(&f, &f.a, ext, 6, 0, 0, NULL, 0), SK_ILLEGAL_REQUEST, 0x24, 0x00);
		CHECK_SENSE(run(&f, &f.a, third, 6, 0, 0, NULL, 0), SK_ILLEGAL_REQUEST, 0x24, 0x00);
	}
	fx_fini(&f);
}

TEST(test_pr_reserve6_and_persistent_reservations_exclude_each_other)
{
	struct fx f;
	uint64_t key;
	uint8_t type;

	fx_init(&f);
	/* under RESERVE(6) every PERSISTENT RESERVE command conflicts, the holder's too */
	CHECK_GOOD(reserve6(&f, &f.a, false));
	CHECK_CONFLICT(prout(&f, &f.a, REGISTER_IGNORE, 0, 0, 0xa));
	CHECK_CONFLICT(prout(&f, &f.b, REGISTER_IGNORE, 0, 0, 0xb));
	CHECK_CONFLICT(prin(&f, &f.a, 0, 64));
	CHECK_GOOD(reserve6(&f, &f.a, true));
	/* registrations make RESERVE(6)/RELEASE(6) conflict (SPC-2) ... */
	reg(&f, &f.a, 0xa);
	reg(&f, &f.b, 0xb);
	CHECK_CONFLICT(reserve6(&f, &f.c, false));
	CHECK_CONFLICT(reserve6(&f, &f.c, true));
	CHECK_CONFLICT(reserve6(&f, &f.a, false)); /* registered, no reservation */
	/* ... except for the holder, and registrants of shared types (CRH):
	 * GOOD, and nothing changes */
	CHECK_GOOD(prout(&f, &f.a, RESERVE, WE, 0xa, 0));
	CHECK_GOOD(reserve6(&f, &f.a, false));
	CHECK_EQ(f.m->lu->reserve6_nexus, 0);
	CHECK_CONFLICT(reserve6(&f, &f.b, false));
	CHECK_GOOD(reserve6(&f, &f.a, true));
	CHECK(reservation(&f, &key, &type));
	CHECK_GOOD(prout(&f, &f.a, RELEASE, WE, 0xa, 0));
	CHECK_GOOD(prout(&f, &f.a, RESERVE, EA_RO, 0xa, 0));
	CHECK_GOOD(reserve6(&f, &f.b, false));
	CHECK_GOOD(reserve6(&f, &f.b, true));
	CHECK(reservation(&f, &key, &type));
	CHECK_EQ(type, EA_RO);
	CHECK_EQ(f.m->lu->reserve6_nexus, 0);
	fx_fini(&f);
}

TEST(test_pr_registrations_outlive_the_session)
{
	struct fx f;
	bool found;

	fx_init(&f);
	reg(&f, &f.a, 0xa);
	CHECK_GOOD(prout(&f, &f.a, RESERVE, EA, 0xa, 0));
	kura_scsi_nexus_gone(f.m->lu, &f.a);
	/* the initiator comes back on a new session, same port */
	f.a.id = 11;
	kura_scsi_nexus_new(f.m->lu, &f.a);
	CHECK_EQ(nkeys(&f, 0xa, &found), 1);
	CHECK(found);
	CHECK(can(&f, &f.a, true));
	CHECK(!can(&f, &f.b, false));
	fx_fini(&f);
}
