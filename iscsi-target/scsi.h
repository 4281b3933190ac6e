/* SCSI logical units (SPC-4 / SBC-3) on a block backend, independent of the
 * transport. The iSCSI connection code turns each SCSI Command PDU into a
 * struct kura_scsi_cmd, gathers all of its Data-Out first, calls
 * kura_scsi_exec(), and sends the Data-In, status and sense it gets back.
 *
 * Thread rule: a LU, its backend and its commands belong to one loop thread;
 * every call is made there and cmd->done runs there, never from inside
 * kura_scsi_exec() (a command finished at once is completed through
 * kura_loop_defer).
 *
 * Blocks: logical blocks are 512 bytes on 4096-byte physical blocks (512e,
 * what ESXi, Windows and libiscsi's conformance tests expect). The backend
 * works in 4 KiB units; the LU turns a write that covers part of a 4 KiB
 * block into a read-modify-write under an exclusive range lock, so aligned
 * I/O (what hypervisors send) takes the direct path.
 *
 * Errors: functions return 0 or -errno. Command outcomes are SCSI status and
 * sense data in the command, never errno values.
 */
#ifndef KURA_ISCSI_SCSI_H
#define KURA_ISCSI_SCSI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blockd/store.h" /* kura_blk_cb, enum kura_io_class */
#include "common/bufpool.h"
#include "common/loop.h"

#define KURA_SCSI_LBS 512u   /* logical block */
#define KURA_SCSI_PBS 4096u  /* physical block: the backend's unit */
#define KURA_SCSI_SENSE_MAX 32u
/* Largest data transfer a command may carry (BLOCK LIMITS advertises it);
 * the transport refuses a larger Expected Data Transfer Length before
 * receiving any data. */
#define KURA_SCSI_MAX_XFER (8u << 20)

/* SCSI status codes. */
#define KURA_SCSI_GOOD 0x00
#define KURA_SCSI_CHECK_CONDITION 0x02
#define KURA_SCSI_CONDITION_MET 0x04
#define KURA_SCSI_BUSY 0x08
#define KURA_SCSI_RESERVATION_CONFLICT 0x18
#define KURA_SCSI_TASK_SET_FULL 0x28
#define KURA_SCSI_TASK_ABORTED 0x40

/* What the backend does for a LU: a vdisk handle in blockd, memory in unit
 * tests. Every function returns 0 and later calls cb(arg, err) exactly once
 * (never from inside the call), or returns -errno and never calls cb. off and
 * len are multiples of KURA_SCSI_PBS; buffers are 4 KiB aligned. */
struct kura_scsi_backend_ops {
	int (*read)(void *be, uint64_t off, uint64_t len, void *buf, enum kura_io_class cls,
		    kura_blk_cb cb, void *arg);
	int (*write)(void *be, uint64_t off, uint64_t len, const void *buf,
		     enum kura_io_class cls, kura_blk_cb cb, void *arg);
	/* Optional: a write that may complete before it is durable (write-back,
	 * used while the LU's write cache is enabled and the command has no
	 * FUA); flush makes every write completed before it durable. */
	int (*write_cached)(void *be, uint64_t off, uint64_t len, const void *buf,
			    enum kura_io_class cls, kura_blk_cb cb, void *arg);
	/* The range reads as zeros afterwards and is deallocated where possible. */
	int (*discard)(void *be, uint64_t off, uint64_t len, kura_blk_cb cb, void *arg);
	int (*flush)(void *be, kura_blk_cb cb, void *arg);
	/* Synchronous: whether 4 KiB block `blk` is mapped (1) or deallocated
	 * (0); *run receives how many such blocks from blk (at most max) share
	 * that state. */
	int (*mapped)(void *be, uint64_t blk, uint64_t max, uint64_t *run);
	/* Persists the LU's persistent-reservation state (an opaque NUL-terminated
	 * string made by this module); cb when durable. */
	int (*pr_save)(void *be, const char *state, kura_blk_cb cb, void *arg);
};

struct kura_scsi_lu;

/* The I_T nexus a command arrives on: one per iSCSI session. PERSISTENT
 * RESERVE keys registrations by initiator port name, which for iSCSI is
 * "<initiator iqn>,i,0x<isid in 12 hex digits>". */
struct kura_scsi_nexus {
	uint64_t id;             /* unique while the session lives */
	char iport[256 + 24];    /* initiator port name, as above */
	char iname[256];         /* initiator name alone */
	uint16_t rtpi;           /* relative target port id (1) */
};

/* Finds a LU of this node by the 16-byte NAA designator its VPD page 0x83
 * reports (EXTENDED COPY's CSCD descriptors name LUs that way). NULL when
 * none. */
typedef struct kura_scsi_lu *(*kura_scsi_lu_lookup)(void *ctx, const uint8_t naa[16]);

struct kura_scsi_cmd;

/* A LU that runs elsewhere (a forwarding portal, target.h): kura_scsi_exec,
 * kura_scsi_abort, kura_scsi_lu_reset and the nexus calls on it go to these
 * instead, with the same contracts (exec: cmd->done later, never from
 * inside; abort: done still runs, with TASK ABORTED if it was stopped). */
struct kura_scsi_fwd_ops {
	void (*exec)(void *ctx, struct kura_scsi_cmd *cmd);
	void (*abort)(void *ctx, struct kura_scsi_cmd *cmd);
	void (*reset)(void *ctx, const struct kura_scsi_nexus *by);
	void (*nexus)(void *ctx, const struct kura_scsi_nexus *n, bool gone);
};

struct kura_scsi_lu_opts {
	struct kura_loop *loop;
	const struct kura_scsi_backend_ops *ops; /* NULL with fwd */
	void *be;
	const struct kura_scsi_fwd_ops *fwd;     /* set: a LU of another node */
	void *fwd_ctx;
	uint64_t size;          /* bytes, multiple of KURA_SCSI_PBS */
	bool read_only;         /* WRITE PROTECTED for every write */
	/* The write cache (WCE of the caching mode page) at start and after a
	 * reset. Enabled, a WRITE without FUA completes once the backend's
	 * write_cached does (before it is durable); SYNCHRONIZE CACHE and FUA
	 * writes are durable. An initiator may change it with MODE SELECT
	 * until the next reset. */
	bool write_cache;
	uint64_t uid;           /* stable, unique per vdisk/snapshot: makes the NAA id and serial */
	const char *name;       /* vdisk name (or vdisk@snap): the unit serial's text */
	const char *pr_state;   /* as saved by pr_save, or NULL: no registrations */
	kura_scsi_lu_lookup lookup; /* for EXTENDED COPY; NULL: copies within this LU only */
	void *lookup_ctx;
	/* Data-In buffers come from here (NULL: malloc); it belongs to the
	 * transport and must outlive every command of the LU, released or not. */
	struct kura_bufpool *bufs;
};

int kura_scsi_lu_create(const struct kura_scsi_lu_opts *o, struct kura_scsi_lu **out);
/* Commands must all have completed. */
void kura_scsi_lu_destroy(struct kura_scsi_lu *lu);
/* The size grew or shrank underneath (vdisk resize): the next command from each
 * nexus gets UNIT ATTENTION CAPACITY DATA HAS CHANGED. */
void kura_scsi_lu_resized(struct kura_scsi_lu *lu, uint64_t size);
/* The administrator changed the write cache setting: it is the LU's WCE at
 * once and after resets; every nexus gets UNIT ATTENTION MODE PARAMETERS
 * CHANGED. */
void kura_scsi_lu_set_write_cache(struct kura_scsi_lu *lu, bool on);
/* The 16-byte NAA designator of this LU (VPD 0x83). */
void kura_scsi_lu_naa(const struct kura_scsi_lu *lu, uint8_t naa[16]);
/* A nexus ended (session logout or drop): drops its RESERVE(6) reservation
 * and its unit attentions; persistent registrations stay. */
void kura_scsi_nexus_gone(struct kura_scsi_lu *lu, const struct kura_scsi_nexus *n);
/* A nexus logged in to the LU's target. No unit attention is queued for a
 * new nexus (initiators log in again after every network blip; a reset
 * report each time would only make them re-scan). */
void kura_scsi_nexus_new(struct kura_scsi_lu *lu, const struct kura_scsi_nexus *n);

enum kura_scsi_dir { KURA_SCSI_NONE = 0, KURA_SCSI_READ = 1, KURA_SCSI_WRITE = 2 };

typedef void (*kura_scsi_done_fn)(struct kura_scsi_cmd *cmd);

struct kura_scsi_cmd {
	/* Set by the transport. */
	struct kura_scsi_lu *lu;
	const struct kura_scsi_nexus *nexus;
	uint8_t cdb[16];
	uint64_t lun;                /* the LUN addressed (REPORT LUNS lists 0 only) */
	uint32_t edtl;               /* expected data transfer length from the initiator */
	unsigned dir;                /* KURA_SCSI_READ and/or KURA_SCSI_WRITE flags */
	uint8_t *dout;               /* Data-Out received: dout_len bytes, 4 KiB aligned, owned by transport */
	uint32_t dout_len;
	kura_scsi_done_fn done;
	void *priv;                  /* transport's */

	/* Set by the LU before done runs. */
	uint8_t status;
	uint8_t sense[KURA_SCSI_SENSE_MAX];
	unsigned sense_len;          /* fixed-format sense, 0 when none */
	uint8_t *din;                /* Data-In to send (din_len bytes), freed by kura_scsi_cmd_release */
	uint32_t din_len;            /* never more than edtl */
	struct kura_bufpool *din_pool; /* din's pool (the LU's opts.bufs), NULL: malloc'd */
	size_t din_cap;              /* din's length as got from din_pool */
	/* Residual (SAM-5 5.4.3): the command wanted `want` bytes of transfer;
	 * overflow when want > edtl, underflow when want < edtl. */
	bool overflow, underflow;
	uint32_t residual;

	/* The LU's own state while the command runs. */
	bool aborted;                /* set through kura_scsi_abort */
	struct kura_scsi_cmd *lu_next, *lu_prev;
	uint64_t lu_priv[8];
};

/* Runs one command. The transport must not touch cmd (except through
 * kura_scsi_abort) until done runs. */
void kura_scsi_exec(struct kura_scsi_cmd *cmd);
/* Frees din; the command may then be reused. */
void kura_scsi_cmd_release(struct kura_scsi_cmd *cmd);

/* Task management. Commands already at the backend still run to their end
 * (a write may land); their done runs with status TASK ABORTED (the transport
 * sends no response for those it aborted itself). Commands waiting inside the
 * LU (behind a COMPARE AND WRITE, a reservation, a range lock) end at once. */
void kura_scsi_abort(struct kura_scsi_cmd *cmd);
/* LOGICAL UNIT RESET: aborts every command of the LU, drops RESERVE(6)
 * reservations, keeps persistent ones, and queues UNIT ATTENTION BUS DEVICE
 * RESET for every other nexus. */
void kura_scsi_lu_reset(struct kura_scsi_lu *lu, const struct kura_scsi_nexus *by);

/* Sense helpers for the transport (e.g. a command for an absent LUN). */
void kura_scsi_set_sense(struct kura_scsi_cmd *cmd, uint8_t key, uint8_t asc, uint8_t ascq);

#endif
