/* A LU on memory for unit tests of the SCSI layer: a kura_scsi_backend_ops
 * over a calloc'd buffer, completing each call on a later loop turn, with a
 * map of which blocks were written (for GET LBA STATUS), a saved PR state
 * string, and failure injection. */
#ifndef KURA_TESTS_MEMLU_H
#define KURA_TESTS_MEMLU_H

#include "iscsi-target/scsi.h"

struct memlu {
	struct kura_loop *loop;
	uint8_t *data;
	uint8_t *mapped;       /* one byte per 4 KiB block */
	uint64_t size;
	char *pr_state;        /* last pr_save'd string (malloc'd) */
	unsigned pr_saves;
	int fail_next;         /* next backend call completes with this error, then 0 */
	unsigned hold;         /* while non-zero, completions queue instead of running */
	unsigned reads, writes, discards, flushes;
	unsigned cached_writes; /* of the writes, through write_cached */
	struct memlu_op *held;
	struct kura_scsi_lu *lu;
};

extern const struct kura_scsi_backend_ops memlu_ops;

/* A loop plus a memory LU of `size` bytes (read_only, uid and name as given;
 * pr_state may be NULL). Checks and exits the test on failure. */
struct memlu *memlu_new(struct kura_loop *loop, uint64_t size, bool read_only, uint64_t uid,
			const char *name, const char *pr_state);
void memlu_free(struct memlu *m);
/* Releases completions held while m->hold was set. */
void memlu_release(struct memlu *m);

/* Runs cmd (cdb of cdb_len bytes, edtl, dir flags, data-out) on m->lu from
 * nexus n and turns the loop until it completes. The command's din stays
 * valid until the next call with the same cmd or kura_scsi_cmd_release. */
void memlu_run(struct memlu *m, struct kura_scsi_cmd *cmd, const struct kura_scsi_nexus *n,
	       const uint8_t *cdb, unsigned cdb_len, uint32_t edtl, unsigned dir,
	       const void *dout, uint32_t dout_len);
/* Starts the command and returns without turning the loop (for concurrency
 * tests); *done is set to 1 when it completes. */
void memlu_start(struct memlu *m, struct kura_scsi_cmd *cmd, const struct kura_scsi_nexus *n,
		 const uint8_t *cdb, unsigned cdb_len, uint32_t edtl, unsigned dir,
		 const void *dout, uint32_t dout_len, int *done);

/* A nexus for initiator iname with ISID isid (the iport is built from them). */
void memlu_nexus(struct kura_scsi_nexus *n, uint64_t id, const char *iname, uint64_t isid);

/* Sense key / ASC / ASCQ of a fixed-format sense in cmd (0 when none). */
uint8_t memlu_sk(const struct kura_scsi_cmd *cmd);
uint8_t memlu_asc(const struct kura_scsi_cmd *cmd);
uint8_t memlu_ascq(const struct kura_scsi_cmd *cmd);

#endif
