/* The messages a forwarding portal sends the node serving the vdisks
 * (target.h, "Forwarding"), carried as the data of node-link FWD requests
 * (blockd/proto.h), in the machine's byte order (kura nodes are
 * little-endian, as the store protocol is).
 *
 * A message is [data][struct kura_fwd_msg]: the data comes first so that a
 * write's data arrives 4 KiB aligned and goes to the LU without a copy. An
 * EXEC's answer is [Data-In][struct kura_fwd_ans]; a DIR's is JSON text,
 * {"targets":[{"name","snap" ("" for a vdisk),"uid","settings" (the
 * target's settings as the catalog keeps them, as a string)}]}; the
 * others' carry nothing.
 *
 * The serving node checks every field: a message too short, of another
 * magic, whose dlen is not the data before it, of an unknown kind, with
 * data where the kind takes none, with names not NUL-terminated within it,
 * or a command larger than KURA_SCSI_MAX_XFER is answered -EPROTO and the
 * link goes on. A session it does not know (any more) gets -ENOENT; a
 * target it does not serve, -ENOENT; an initiator not on the target's
 * ACL, -EACCES; a node that does not serve the vdisks answers -EREMOTE. */
#ifndef KURA_ISCSI_FWD_H
#define KURA_ISCSI_FWD_H

#include <stddef.h>
#include <stdint.h>

#include "iscsi-target/scsi.h"

#define KURA_FWD_MAGIC 0x3146494bu     /* "KIF1" */
#define KURA_FWD_ANS_MAGIC 0x3141494bu /* "KIA1" */
#define KURA_FWD_DIR_MAX (1u << 20)    /* bytes of target list */
/* NEXUS names, NULs included at most (struct kura_scsi_nexus's sizes) */
#define KURA_FWD_IPORT_MAX (256u + 24u)
#define KURA_FWD_INAME_MAX 256u

enum kura_fwd_kind {
	KURA_FWD_DIR = 1,   /* the targets and their settings */
	KURA_FWD_NEXUS = 2, /* a session logged in to target uid; data "iport\0iname\0" */
	KURA_FWD_GONE = 3,  /* the session ended */
	KURA_FWD_EXEC = 4,  /* a command; data: its Data-Out */
	KURA_FWD_ABORT = 5, /* abort command id of the session */
	KURA_FWD_RESET = 6, /* LOGICAL UNIT RESET by the session */
};

struct kura_fwd_msg {
	uint32_t magic;
	uint16_t kind;
	uint8_t dir;          /* EXEC: KURA_SCSI_READ / KURA_SCSI_WRITE flags */
	uint8_t pad;
	uint32_t edtl;        /* EXEC */
	uint32_t dlen;        /* bytes of data before this trailer */
	uint64_t incarnation; /* of the forwarding portal (random at its start) */
	uint64_t nexus;       /* the forwarding portal's id of the session */
	uint64_t uid;         /* NEXUS: the target */
	uint64_t id;          /* EXEC: the command's id; ABORT: the one to abort */
	uint64_t lun;         /* EXEC */
	uint8_t cdb[16];      /* EXEC */
};
_Static_assert(sizeof(struct kura_fwd_msg) == 72, "forwarded message trailer is 72 bytes");

#define KURA_FWD_ANS_OVERFLOW 1u
#define KURA_FWD_ANS_UNDERFLOW 2u
struct kura_fwd_ans {
	uint32_t magic;
	uint8_t status, sense_len, flags, pad;
	uint32_t residual;
	uint32_t din_len;
	uint8_t sense[KURA_SCSI_SENSE_MAX];
};
_Static_assert(sizeof(struct kura_fwd_ans) == 48, "forwarded answer trailer is 48 bytes");

/* Checks a message as the serving node takes it (the rules above): 0 with
 * its trailer in *m and, for NEXUS, *iport and *iname pointing at the two
 * names in data; -EPROTO when it breaks a rule. */
int kura_fwd_parse(const uint8_t *data, size_t len, struct kura_fwd_msg *m, const char **iport,
		   const char **iname);

#endif
