/* What the store's writes (io.c) and reads (read.c) share: the queue of
 * writes not yet in place on each physical extent, which reads take data
 * from. Internal to blockd/. Same thread rule as the store. */
#ifndef KURA_BLOCKD_IO_INT_H
#define KURA_BLOCKD_IO_INT_H

#include "blockd/store_int.h"

#include <sys/uio.h>

struct wreq;
struct rreq;

/* The writes queued on one physical extent, in submission order, and the
 * reads waiting for one of them to be answered. */
struct xstate {
	uint32_t loc;
	int queued;            /* on the store's list of extents with applies to start */
	struct xstate *hnext, *qnext;
	struct wreq *head, *tail;
	struct rreq *waiters;
};

/* A write, from its submission until it is in place (or failed). */
struct wreq {
	struct jreq j;
	struct pend pend;
	struct kura_blk_store *s;
	struct jbatch *batch;
	uint64_t layer, ext, version;
	uint64_t prev;    /* if_newer: the version the write follows */
	uint32_t loc;
	uint16_t blk, nblk;
	uint8_t acked, applying; /* acked: durable, may go in place */
	uint8_t answered;        /* cb has run (a cached write: before durable) */
	uint8_t if_newer; /* a replica's copy: skipped unless newer than the extent */
	uint8_t fresh;    /* direct write to a new extent: loc is not in the index yet */
	uint8_t cached;   /* may be answered once in the device's cache */
	uint8_t pooled;   /* buf is from s->bufs (else the caller's, freed with free) */
	uint64_t t0;      /* guest class: when it arrived (ns), else 0 */
	void *buf;
	kura_blk_cb cb;
	void *arg;
	struct wreq *xnext;
	struct wreq *dnext; /* on s->directs */
	struct kura_op op;
	struct iovec iov;
	uint32_t crc[];
};

struct xstate *io_xs_find(struct kura_blk_store *s, uint32_t loc);
/* Whether a write queued on x touches blocks [blk, blk + n). */
int io_x_overlaps(const struct xstate *x, unsigned blk, unsigned n);
/* A guest-class request arrives (returns its t0, else 0) or is answered. */
uint64_t io_guest_start(struct kura_blk_store *s, enum kura_io_class cls);
void io_guest_end(struct kura_blk_store *s, uint64_t t0);
/* -EINVAL unless blocks [blk, blk + nblk) of extent ext exist. */
int io_check_range(uint64_t ext, unsigned blk, unsigned nblk);
/* read.c: reads that waited on an extent's queue (a list through their
 * next) look again. */
void read_wake(struct kura_blk_store *s, struct rreq *list);

#endif
