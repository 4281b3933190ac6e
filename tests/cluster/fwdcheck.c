/* Checks the forwarded iSCSI messages (iscsi-target/fwd.h) a node serving
 * the vdisks takes over a node link, as a broken or hostile node would send
 * them: an empty FWD is a framing error (the link closes); a message too
 * short, of another magic, with a wrong data length, an unknown kind,
 * fields its kind does not use, names without their NULs or a command
 * larger than allowed is answered EPROTO and the link goes on; a session
 * or target the node does not know gets ENOENT. Then a real session: the
 * target list names VDISK, a session to it runs INQUIRY and READ
 * CAPACITY(16) with the right answers, and ends.
 *
 * usage: kura-fwdcheck ADDR:PORT CLUSTER_ID VDISK
 *        kura-fwdcheck ADDR:PORT CLUSTER_ID --not-serving
 *            (the node does not serve the vdisks: EREMOTE)
 * Prints "ok: ..." per check; exits 1 at the first failure. */
#include "blockd/client.h"
#include "iscsi-target/fwd.h"
#include "replication/map.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                          \
	do {                                                                              \
		if (!(c)) {                                                               \
			fprintf(stderr, "fwdcheck:%d: %s\n", __LINE__, #c);               \
			exit(1);                                                          \
		}                                                                         \
	} while (0)

static const char *addr, *cluster;

static struct kura_client *greeted(void)
{
	struct kura_client *c;
	struct kura_proto_req q = { .magic = KURA_PROTO_MAGIC, .op = KURA_OP_HELLO,
				    .data_len = sizeof(struct kura_proto_hello) };
	struct kura_proto_hello h = { .version = KURA_PROTO_VERSION }, a;
	size_t got = 0;

	CHECK(kura_client_connect_tcp(addr, &c) == 0);
	memcpy(h.cluster_id, cluster, strnlen(cluster, 36));
	snprintf(h.node, sizeof(h.node), "fwdcheck");
	CHECK(kura_client_call(c, &q, &h, &a, sizeof(a), &got) == 0);
	return c;
}

/* Sends data (dlen bytes) and the trailer m as one FWD; the answer's
 * status, its data in ans (cap bytes). */
static int fwd(struct kura_client *c, const void *data, uint32_t dlen, const struct kura_fwd_msg *m,
	       void *ans, size_t cap, size_t *got)
{
	size_t len = dlen + (m ? sizeof(*m) : 0);
	uint8_t *msg = malloc(len ? len : 1);
	struct kura_proto_req q = { .magic = KURA_PROTO_MAGIC, .op = KURA_OP_FWD,
				    .data_len = (uint32_t)len };
	size_t g = 0;
	int st;

	CHECK(msg);
	if (dlen)
		memcpy(msg, data, dlen);
	if (m)
		memcpy(msg + dlen, m, sizeof(*m));
	st = kura_client_call(c, &q, msg, ans, cap, got ? got : &g);
	free(msg);
	return st;
}

static struct kura_fwd_msg base(enum kura_fwd_kind kind, uint32_t dlen)
{
	return (struct kura_fwd_msg){ .magic = KURA_FWD_MAGIC, .kind = (uint16_t)kind,
				      .dlen = dlen, .incarnation = 0xfc, .nexus = 7 };
}

static void bad(struct kura_client *c, const char *what, const void *data, uint32_t dlen,
		struct kura_fwd_msg m, int want)
{
	int st = fwd(c, data, dlen, &m, NULL, 0, NULL);

	if (st != want) {
		fprintf(stderr, "fwdcheck: %s: answered %d, not %d\n", what, st, want);
		exit(1);
	}
	printf("ok: %s: %s\n", what, strerror(-want));
}

/* The uid of VDISK in a target list. */
static uint64_t uid_of(const char *list, const char *vdisk)
{
	char key[128];
	const char *p;
	uint64_t uid = 0;

	snprintf(key, sizeof(key), "{\"name\":\"%s\",\"snap\":\"\",\"uid\":", vdisk);
	p = strstr(list, key);
	CHECK(p && sscanf(p + strlen(key), "%" SCNu64, &uid) == 1 && uid);
	return uid;
}

static struct kura_fwd_ans exec(struct kura_client *c, const uint8_t *cdb, uint32_t edtl,
				uint8_t *din, size_t *din_len)
{
	struct kura_fwd_msg m = base(KURA_FWD_EXEC, 0);
	size_t cap = edtl + sizeof(struct kura_fwd_ans), got = 0;
	uint8_t *ans = malloc(cap);
	struct kura_fwd_ans a;

	CHECK(ans);
	m.dir = KURA_SCSI_READ;
	m.edtl = edtl;
	m.id = 1;
	memcpy(m.cdb, cdb, 16);
	CHECK(fwd(c, NULL, 0, &m, ans, cap, &got) == 0);
	CHECK(got >= sizeof(a));
	memcpy(&a, ans + got - sizeof(a), sizeof(a));
	CHECK(a.magic == KURA_FWD_ANS_MAGIC && a.din_len == got - sizeof(a) && a.din_len <= edtl);
	memcpy(din, ans, a.din_len);
	*din_len = a.din_len;
	free(ans);
	return a;
}

int main(int argc, char **argv)
{
	struct kura_client *c;
	struct kura_proto_req q;
	struct kura_proto_resp r;
	struct kura_fwd_msg m;
	char *list;
	uint8_t cdb[16], din[512];
	size_t got = 0, dl = 0;
	uint64_t uid;

	if (argc != 4) {
		fprintf(stderr, "usage: kura-fwdcheck ADDR:PORT CLUSTER_ID VDISK|--not-serving\n");
		return 2;
	}
	addr = argv[1];
	cluster = argv[2];

	if (!strcmp(argv[3], "--not-serving")) {
		c = greeted();
		m = base(KURA_FWD_DIR, 0);
		m.nexus = 0;
		bad(c, "a target list asked of a node that does not serve the vdisks", NULL, 0, m,
		    -EREMOTE);
		kura_client_close(c);
		return 0;
	}

	/* an empty FWD does not frame: the link closes */
	c = greeted();
	q = (struct kura_proto_req){ .magic = KURA_PROTO_MAGIC, .op = KURA_OP_FWD };
	CHECK(kura_client_send(c, &q, NULL) == 0);
	CHECK(kura_client_recv(c, &r, NULL, 0) < 0);
	kura_client_close(c);
	printf("ok: an empty forwarded request: link closed\n");

	c = greeted();
	{
		uint8_t shortmsg[10] = { 1, 2, 3 };
		CHECK(fwd(c, shortmsg, sizeof(shortmsg), NULL, NULL, 0, NULL) == -EPROTO);
		printf("ok: a message shorter than its trailer: %s\n", strerror(EPROTO));
	}
	m = base(KURA_FWD_DIR, 0);
	m.nexus = 0;
	m.magic ^= 1;
	bad(c, "another magic", NULL, 0, m, -EPROTO);
	m = base(KURA_FWD_DIR, 0);
	m.nexus = 0;
	m.dlen = 4;
	bad(c, "a data length that is not the data's", NULL, 0, m, -EPROTO);
	m = base(9, 0);
	bad(c, "an unknown kind", NULL, 0, m, -EPROTO);
	m = base(KURA_FWD_GONE, 0);
	m.edtl = 512;
	bad(c, "a session's end with a transfer length", NULL, 0, m, -EPROTO);
	m = base(KURA_FWD_GONE, 0);
	m.pad = 1;
	bad(c, "a padding byte set", NULL, 0, m, -EPROTO);
	m = base(KURA_FWD_GONE, 0);
	bad(c, "the end of a session the node does not know", NULL, 0, m, -ENOENT);
	{
		char names[] = "iqn.x,i,0x000000000001";
		m = base(KURA_FWD_NEXUS, (uint32_t)strlen(names));
		m.uid = 1;
		bad(c, "a session's start whose names lack their NULs", names,
		    (uint32_t)strlen(names), m, -EPROTO);
	}
	{
		const char names[] = "iqn.x,i,0x000000000001\0iqn.x";
		m = base(KURA_FWD_NEXUS, sizeof(names));
		m.uid = 0x7fffffffffffull;
		bad(c, "a session to a target that does not exist", names, sizeof(names), m, -ENOENT);
	}
	m = base(KURA_FWD_EXEC, 0);
	m.edtl = 512;
	m.dir = KURA_SCSI_READ;
	m.id = 1;
	bad(c, "a command of a session the node does not know", NULL, 0, m, -ENOENT);
	m.edtl = KURA_SCSI_MAX_XFER + 512;
	bad(c, "a command larger than the largest transfer", NULL, 0, m, -EPROTO);
	m.edtl = 512;
	m.dir = 4;
	bad(c, "a command of an unknown direction", NULL, 0, m, -EPROTO);

	/* the target list, then a real session */
	list = calloc(1, KURA_FWD_DIR_MAX + 1);
	CHECK(list);
	m = base(KURA_FWD_DIR, 0);
	m.nexus = 0;
	CHECK(fwd(c, NULL, 0, &m, list, KURA_FWD_DIR_MAX, &got) == 0);
	uid = uid_of(list, argv[3]);
	printf("ok: the target list names %s (uid %" PRIu64 ")\n", argv[3], uid);
	{
		const char names[] = "iqn.2026-11.test:fwdcheck,i,0x000000000001\0iqn.2026-11.test:fwdcheck";
		m = base(KURA_FWD_NEXUS, sizeof(names));
		m.uid = uid;
		CHECK(fwd(c, names, sizeof(names), &m, NULL, 0, NULL) == 0);
		CHECK(fwd(c, names, sizeof(names), &m, NULL, 0, NULL) == -EEXIST);
	}
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x12; /* INQUIRY */
	cdb[4] = 96;
	{
		struct kura_fwd_ans a = exec(c, cdb, 96, din, &dl);
		CHECK(a.status == 0 && dl >= 36 && !memcmp(din + 8, "KURA", 4));
	}
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x9e; /* READ CAPACITY(16) */
	cdb[1] = 0x10;
	cdb[13] = 32;
	{
		struct kura_fwd_ans a = exec(c, cdb, 32, din, &dl);
		uint64_t last = 0;

		CHECK(a.status == 0 && dl == 32);
		for (int i = 0; i < 8; i++)
			last = last << 8 | din[i];
		CHECK(last > 0);
		printf("ok: a forwarded session: INQUIRY names KURA, READ CAPACITY(16): %" PRIu64
		       " blocks\n", last + 1);
	}
	m = base(KURA_FWD_GONE, 0);
	CHECK(fwd(c, NULL, 0, &m, NULL, 0, NULL) == 0);
	m = base(KURA_FWD_EXEC, 0);
	m.edtl = 512;
	m.dir = KURA_SCSI_READ;
	m.id = 2;
	bad(c, "a command after the session's end", NULL, 0, m, -ENOENT);
	free(list);
	kura_client_close(c);
	return 0;
}
