/* Inside the SCSI LU: what the command files (spc.c, sbc.c, pr.c, xcopy.c)
 * share. The core (lu.c) owns the LU struct, command dispatch, unit
 * attentions, range locks and sense building; pr.c owns reservations;
 * xcopy.c owns copy operations. Same thread rule as scsi.h.
 */
#ifndef KURA_ISCSI_SCSI_INT_H
#define KURA_ISCSI_SCSI_INT_H

#include "iscsi-target/scsi.h"

/* Sense keys. */
#define SK_NO_SENSE 0x0
#define SK_NOT_READY 0x2
#define SK_MEDIUM_ERROR 0x3
#define SK_HARDWARE_ERROR 0x4
#define SK_ILLEGAL_REQUEST 0x5
#define SK_UNIT_ATTENTION 0x6
#define SK_DATA_PROTECT 0x7
#define SK_COPY_ABORTED 0xa
#define SK_ABORTED_COMMAND 0xb
#define SK_MISCOMPARE 0xe

struct scsi_pr;    /* pr.c */
struct scsi_xcopy; /* xcopy.c */
struct scsi_ua;    /* lu.c: pending unit attentions of one nexus */
struct scsi_lock;  /* lu.c: a range lock */

struct kura_scsi_lu {
	struct kura_scsi_lu_opts o; /* name copied into name[] */
	char name[2 * 64 + 2];
	uint64_t nblocks;
	uint8_t naa[16];
	bool wce;                   /* caching mode page: write cache enabled (reported) */
	bool swp;                   /* control mode page: software write protect */
	struct kura_scsi_cmd *cmds; /* running commands */
	struct scsi_ua *uas;
	struct scsi_lock *locks;
	struct scsi_pr *pr;
	struct scsi_xcopy *xc;
	uint64_t reserve6_nexus;    /* RESERVE(6) holder's nexus id, 0 none */
	unsigned inflight;          /* backend calls outstanding */
};

/* Completing a command. Status, sense and Data-In are set; done runs on a
 * later loop turn if called from inside kura_scsi_exec. */
void scsi_complete(struct kura_scsi_cmd *cmd);
void scsi_good(struct kura_scsi_cmd *cmd);
void scsi_check(struct kura_scsi_cmd *cmd, uint8_t key, uint8_t asc, uint8_t ascq);
/* ILLEGAL REQUEST (or key) with a sense-key-specific field pointer: byte
 * `field` of the CDB (in_cdb) or of the parameter list, bit `bit` (-1: none). */
void scsi_check_field(struct kura_scsi_cmd *cmd, uint8_t key, uint8_t asc, uint8_t ascq,
		      bool in_cdb, uint16_t field, int bit);
/* INVALID FIELD IN CDB at byte/bit. */
void scsi_bad_cdb(struct kura_scsi_cmd *cmd, uint16_t field, int bit);
/* INVALID FIELD IN PARAMETER LIST at byte/bit. */
void scsi_bad_param(struct kura_scsi_cmd *cmd, uint16_t field, int bit);

/* Data-In: allocates a zeroed 4 KiB-aligned buffer of `want` bytes (what the
 * command would return in full) and sets din_len = min(want, edtl, the
 * CDB's allocation length alloc) and the residual against edtl. NULL (and a
 * CHECK CONDITION already set) when memory is short. */
uint8_t *scsi_din(struct kura_scsi_cmd *cmd, uint32_t want, uint32_t alloc);
/* Data-Out: the parameter list or write data the command needs (`want`
 * bytes). When fewer bytes arrived, sets the residual and returns what there
 * is in *got. */
const uint8_t *scsi_dout(struct kura_scsi_cmd *cmd, uint32_t want, uint32_t *got);
/* As scsi_din, without zeroing: for medium reads that fill the buffer. */
uint8_t *scsi_din_raw(struct kura_scsi_cmd *cmd, uint32_t want, uint32_t alloc);

/* Limits the BLOCK LIMITS VPD page advertises and sbc.c enforces, in
 * logical blocks. */
#define SCSI_MAX_XFER_LBAS (KURA_SCSI_MAX_XFER / KURA_SCSI_LBS)
#define SCSI_MAX_UNMAP_LBAS (1u << 20)   /* 512 MiB per UNMAP command */
#define SCSI_MAX_UNMAP_DESC 256u
#define SCSI_MAX_WS_LBAS SCSI_MAX_XFER_LBAS
#define SCSI_MAX_CAW_BLOCKS 8u
#define SCSI_PB_LBAS (KURA_SCSI_PBS / KURA_SCSI_LBS)

/* Medium I/O in bytes (multiples of KURA_SCSI_LBS; buffers need no
 * alignment) through the LU's range locks: writes wait while an overlapping
 * COMPARE AND WRITE holds its range, and a COMPARE AND WRITE waits for
 * overlapping writes in flight. Writes that cover part of a 4 KiB block
 * read, merge and write it under an exclusive lock. Every write path
 * (WRITE*, WRITE SAME, UNMAP, EXTENDED COPY) goes through here. */
int scsi_lu_read(struct kura_scsi_lu *lu, uint64_t off, uint64_t len, void *buf,
		 enum kura_io_class cls, kura_blk_cb cb, void *arg);
int scsi_lu_write(struct kura_scsi_lu *lu, uint64_t off, uint64_t len, const void *buf,
		  enum kura_io_class cls, kura_blk_cb cb, void *arg);
int scsi_lu_discard(struct kura_scsi_lu *lu, uint64_t off, uint64_t len, kura_blk_cb cb,
		    void *arg);

/* A range lock taken directly (COMPARE AND WRITE holds one exclusively
 * around its read, compare and write): granted(arg) runs on a later loop
 * turn once no earlier overlapping request conflicts. Ranges are widened to
 * whole 4 KiB blocks. Aligned writes share; an exclusive lock conflicts
 * with everything. NULL when out of memory. */
struct scsi_lock *scsi_lock_take(struct kura_scsi_lu *lu, uint64_t off, uint64_t len, bool excl,
				 void (*granted)(void *arg), void *arg);
void scsi_lock_drop(struct kura_scsi_lu *lu, struct scsi_lock *l);

/* Per-command scratch for the command files (lives in cmd->lu_priv). */
struct scsi_cstate {
	struct kura_op op;      /* deferred completion */
	unsigned pending;       /* backend calls in flight */
	int err;                /* first backend error */
	void (*step)(struct kura_scsi_cmd *cmd, int err); /* runs when pending reaches 0 */
	uint8_t *buf;           /* a buffer the command owns (freed at completion) */
	uint64_t a, b;          /* command-specific */
};
static inline struct scsi_cstate *scsi_cs(struct kura_scsi_cmd *cmd)
{
	return (struct scsi_cstate *)(void *)cmd->lu_priv;
}
/* A backend completion for a command: counts down pending, then runs step. */
void scsi_io_done(void *arg, int err);
/* Reads or writes [off, off+len) while the caller holds an exclusive lock
 * over it (COMPARE AND WRITE): partial 4 KiB blocks are merged. */
int scsi_lu_read_locked(struct kura_scsi_lu *lu, uint64_t off, uint64_t len, void *buf,
			kura_blk_cb cb, void *arg);
int scsi_lu_write_locked(struct kura_scsi_lu *lu, uint64_t off, uint64_t len, const void *buf,
			 kura_blk_cb cb, void *arg);
/* Maps a backend error to sense data (MEDIUM ERROR, SPACE ALLOCATION FAILED...). */
void scsi_io_error(struct kura_scsi_cmd *cmd, int err, bool write);

/* A command's medium transfer of [off, off+len) bytes in backend calls of at
 * most SCSI_XFER_CHUNK, SCSI_XFER_DEPTH in flight, through the range locks.
 * step(cmd, err) runs once every call has ended (possibly before scsi_xfer
 * returns, for an error at once): err is the first error, or -ECANCELED
 * when the command was aborted before everything was issued (the rest is
 * not issued). While the command is aborted its waits for range locks end
 * at once. The same holds for scsi_lu_write / scsi_lu_discard /
 * scsi_lock_take called with the command itself as arg: their waits end
 * (cb gets -ECANCELED; a lock's granted runs at once and the caller sees
 * cmd->aborted). */
#define SCSI_XFER_CHUNK (1u << 20)
#define SCSI_XFER_DEPTH 4u
#define SCSI_XFER_WRITE 1u  /* write buf (else read into it) */
#define SCSI_XFER_REPEAT 2u /* every chunk writes buf[0, SCSI_XFER_CHUNK) again */
#define SCSI_XFER_LOCKED 4u /* the command holds an exclusive lock over the range */
#define SCSI_XFER_CACHED 8u /* writes may complete before durable (WCE set, no FUA) */
void scsi_xfer(struct kura_scsi_cmd *cmd, unsigned flags, uint64_t off, uint64_t len,
	       uint8_t *buf, enum kura_io_class cls, void (*step)(struct kura_scsi_cmd *cmd, int err));

/* Unit attention for every nexus except `except` (0: all). */
void scsi_ua_all(struct kura_scsi_lu *lu, uint64_t except, uint8_t asc, uint8_t ascq);
/* REQUEST SENSE: takes the oldest unit attention of a nexus; false when none. */
bool scsi_ua_pop(struct kura_scsi_lu *lu, uint64_t nexus, uint8_t *asc, uint8_t *ascq);
/* Unit attention for every live nexus whose initiator port name is iport. */
void scsi_ua_iport(struct kura_scsi_lu *lu, const char *iport, uint8_t asc, uint8_t ascq);
/* Aborts (as kura_scsi_abort) every running command from nexuses whose
 * initiator port is iport, except `keep` (PREEMPT AND ABORT). */
void scsi_abort_iport(struct kura_scsi_lu *lu, const char *iport, struct kura_scsi_cmd *keep);

/* Command files: each returns false, touching nothing, when the opcode is
 * not one of its own; lu.c then tries the next and finally answers INVALID
 * COMMAND OPERATION CODE. lu.c has already checked unit attentions and
 * reservation conflicts. */
bool scsi_spc_exec(struct kura_scsi_cmd *cmd);
bool scsi_sbc_exec(struct kura_scsi_cmd *cmd);

/* pr.c */
int scsi_pr_init(struct kura_scsi_lu *lu, const char *state);
void scsi_pr_free(struct kura_scsi_lu *lu);
/* True when this command from this nexus must end in RESERVATION CONFLICT
 * (SPC-4 5.13.1 and its table of commands allowed, RESERVE(6) included). */
bool scsi_pr_conflict(struct kura_scsi_cmd *cmd);
/* Whether a READ (write false) or WRITE (true) from nexus n to lu would end
 * in RESERVATION CONFLICT: EXTENDED COPY asks it of the LUs it copies
 * between, since the initiator could not have read or written them itself. */
bool scsi_pr_io_conflict(struct kura_scsi_lu *lu, const struct kura_scsi_nexus *n, bool write);
void scsi_pr_in(struct kura_scsi_cmd *cmd);
void scsi_pr_out(struct kura_scsi_cmd *cmd);
void scsi_reserve6(struct kura_scsi_cmd *cmd);
void scsi_release6(struct kura_scsi_cmd *cmd);
void scsi_pr_nexus_gone(struct kura_scsi_lu *lu, const struct kura_scsi_nexus *n);

/* xcopy.c */
void scsi_xcopy(struct kura_scsi_cmd *cmd);        /* EXTENDED COPY (LID1) */
void scsi_copy_results(struct kura_scsi_cmd *cmd); /* RECEIVE COPY RESULTS */
void scsi_xcopy_free(struct kura_scsi_lu *lu);

/* Big-endian helpers. */
static inline uint16_t scsi_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t scsi_be24(const uint8_t *p)
{
	return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}
static inline uint32_t scsi_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t scsi_be64(const uint8_t *p)
{
	return (uint64_t)scsi_be32(p) << 32 | scsi_be32(p + 4);
}
static inline void scsi_put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = (uint8_t)v; }
static inline void scsi_put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24; p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void scsi_put64(uint8_t *p, uint64_t v)
{
	scsi_put32(p, (uint32_t)(v >> 32));
	scsi_put32(p + 4, (uint32_t)v);
}

#endif
