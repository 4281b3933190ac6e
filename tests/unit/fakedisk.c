#include "tests/unit/fakedisk.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fake_write {
	struct fake_write *next;
	uint64_t off, len;
	uint8_t *data;
};

struct fake_disk {
	struct kura_disk d;
	struct fake_media *m;
};

struct fake_req {
	struct kura_op op;
	struct kura_op *user;
	struct kura_timer timer; /* a delayed flush or write */
	struct fake_media *m;    /* a write counted in flight: */
	int in_watch, res;       /* where, and its result */
};

struct fake_media *fake_media_create(uint64_t size)
{
	struct fake_media *m = calloc(1, sizeof(*m));

	m->size = size;
	m->durable = calloc(1, size);
	m->current = calloc(1, size);
	m->seed = 1;
	return m;
}

static void drop_unflushed(struct fake_media *m)
{
	struct fake_write *w = m->unflushed;

	while (w) {
		struct fake_write *n = w->next;
		free(w->data);
		free(w);
		w = n;
	}
	m->unflushed = m->unflushed_tail = NULL;
}

void fake_media_destroy(struct fake_media *m)
{
	drop_unflushed(m);
	free(m->durable);
	free(m->current);
	free(m);
}

int fake_keep_unflushed(struct fake_media *m, unsigned nth)
{
	struct fake_write *w = m->unflushed;

	for (; w && nth; nth--)
		w = w->next;
	if (!w)
		return -1;
	memcpy(m->durable + w->off, w->data, w->len);
	return 0;
}

void fake_power_on(struct fake_media *m)
{
	drop_unflushed(m);
	memcpy(m->current, m->durable, m->size);
	m->lost = 0;
	m->cut_at = m->fail_read_at = m->fail_write_at = 0;
	m->bad_len = 0;
}

static unsigned rnd(struct fake_media *m)
{
	m->seed = m->seed * 1103515245u + 12345u;
	return (m->seed >> 16) & 0x7fff;
}

/* Some prefix (CUT_DROP) or random subset (CUT_RANDOM) of the sectors of a
 * write reaches the media. */
static void persist_partly(struct fake_media *m, uint64_t off, const uint8_t *data, uint64_t len,
			   int random_subset)
{
	uint64_t nsec = len / 512, keep = rnd(m) % (nsec + 1);

	for (uint64_t i = 0; i < nsec; i++) {
		int k = random_subset ? (int)(rnd(m) & 1) : i < keep;
		if (k)
			memcpy(m->durable + off + i * 512, data + i * 512, 512);
	}
}

static void power_cut(struct fake_media *m, uint64_t off, const uint8_t *data, uint64_t len)
{
	for (struct fake_write *w = m->unflushed; w; w = w->next)
		if (m->cut_mode == CUT_RANDOM)
			persist_partly(m, w->off, w->data, w->len, 1);
		else if (m->cut_mode == CUT_REORDER && rnd(m) & 1)
			memcpy(m->durable + w->off, w->data, w->len);
	persist_partly(m, off, data, len, m->cut_mode == CUT_RANDOM);
	drop_unflushed(m);
	m->lost = 1;
}

static void fake_done(struct kura_op *op, int res)
{
	struct fake_req *r = KURA_CONTAINER_OF(op, struct fake_req, op);
	struct kura_op *user = r->user;

	free(r);
	user->fn(user, res);
}

static void complete(struct kura_disk *d, struct kura_op *user, int res)
{
	struct fake_req *r = malloc(sizeof(*r));

	r->op.fn = fake_done;
	r->user = user;
	kura_loop_defer(d->loop, &r->op, res);
}

static void write_timer_done(struct kura_op *op, int res)
{
	struct fake_req *r = KURA_CONTAINER_OF(op, struct fake_req, timer.op);
	struct kura_op *user = r->user;

	(void)res;
	res = r->res;
	if (r->in_watch)
		r->m->in_watch--;
	else
		r->m->out_watch--;
	free(r);
	user->fn(user, res);
}

/* A write that landed completes: at once, or write_delay_ns later, counted
 * in flight meanwhile. */
static void write_complete(struct kura_disk *d, struct fake_media *m, uint64_t off,
			   struct kura_op *user, int res)
{
	struct fake_req *r;

	if (!m->write_delay_ns) {
		complete(d, user, res);
		return;
	}
	r = calloc(1, sizeof(*r));
	r->user = user;
	r->m = m;
	r->res = res;
	r->in_watch = off >= m->watch_lo && off < m->watch_hi;
	if (r->in_watch)
		m->in_watch++;
	else if (++m->out_watch > m->max_out)
		m->max_out = m->out_watch;
	if (m->in_watch && m->out_watch > m->max_out_while_in)
		m->max_out_while_in = m->out_watch;
	r->timer.op.fn = write_timer_done;
	kura_loop_timer(d->loop, &r->timer, m->write_delay_ns);
}

static void fake_rw(struct kura_disk *d, int write, const struct iovec *iov, int iovcnt,
		    uint64_t off, unsigned flags, struct kura_op *op)
{
	struct fake_media *m = KURA_CONTAINER_OF(d, struct fake_disk, d)->m;
	uint64_t len = 0, pos = off;
	uint8_t *flat;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (m->lost || off + len > m->size || off % 512 || len % 512) {
		complete(d, op, -EIO);
		return;
	}
	if (!write) {
		m->reads++;
		if (m->reads == m->fail_read_at ||
		    (m->bad_len && off < m->bad_off + m->bad_len && m->bad_off < off + len)) {
			complete(d, op, -EIO);
			return;
		}
		for (int i = 0; i < iovcnt; i++) {
			memcpy(iov[i].iov_base, m->current + pos, iov[i].iov_len);
			pos += iov[i].iov_len;
		}
		complete(d, op, (int)len);
		return;
	}
	m->writes++;
	if (m->writes == m->fail_write_at) {
		complete(d, op, -EIO);
		return;
	}
	flat = malloc(len);
	for (int i = 0; i < iovcnt; i++) {
		memcpy(flat + (pos - off), iov[i].iov_base, iov[i].iov_len);
		pos += iov[i].iov_len;
	}
	if (m->writes == m->cut_at) {
		power_cut(m, off, flat, len);
		free(flat);
		complete(d, op, -EIO);
		return;
	}
	memcpy(m->current + off, flat, len);
	if (flags & KURA_DISK_FUA) {
		memcpy(m->durable + off, flat, len);
		free(flat);
	} else {
		struct fake_write *w = malloc(sizeof(*w));
		w->next = NULL;
		w->off = off;
		w->len = len;
		w->data = flat;
		if (m->unflushed_tail)
			m->unflushed_tail->next = w;
		else
			m->unflushed = w;
		m->unflushed_tail = w;
	}
	write_complete(d, m, off, op, (int)len);
}

static void flush_timer_done(struct kura_op *op, int res)
{
	struct fake_req *r = KURA_CONTAINER_OF(op, struct fake_req, timer.op);
	struct kura_op *user = r->user;

	(void)res;
	free(r);
	user->fn(user, 0);
}

static void fake_flush(struct kura_disk *d, struct kura_op *op)
{
	struct fake_media *m = KURA_CONTAINER_OF(d, struct fake_disk, d)->m;

	if (m->lost) {
		complete(d, op, -EIO);
		return;
	}
	m->flushes++;
	for (struct fake_write *w = m->unflushed; w; w = w->next)
		memcpy(m->durable + w->off, w->data, w->len);
	drop_unflushed(m);
	if (m->flush_delay_ns) {
		struct fake_req *r = malloc(sizeof(*r));
		r->user = op;
		r->timer.op.fn = flush_timer_done;
		kura_loop_timer(d->loop, &r->timer, m->flush_delay_ns);
		return;
	}
	complete(d, op, 0);
}

static void fake_close(struct kura_disk *d)
{
	free(KURA_CONTAINER_OF(d, struct fake_disk, d));
}

static const struct kura_disk_ops fake_ops = {
	.rw = fake_rw,
	.flush = fake_flush,
	.close = fake_close,
};

struct kura_disk *fake_disk_open(struct kura_loop *loop, struct fake_media *m, const char *name)
{
	struct fake_disk *fd = calloc(1, sizeof(*fd));

	fd->d.ops = &fake_ops;
	fd->d.loop = loop;
	fd->d.size = m->size;
	fd->m = m;
	snprintf(fd->d.path, sizeof(fd->d.path), "%s", name);
	return &fd->d;
}
