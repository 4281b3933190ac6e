/* The memory LU of memlu.h. */
#include "tests/unit/iscsi/memlu.h"

#include "common/util.h"
#include "tests/unit/harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct memlu_op {
	struct kura_op op;
	struct memlu *m;
	kura_blk_cb cb;
	void *arg;
	int err;
	struct memlu_op *next;
};

static void op_fire(struct kura_op *op, int res)
{
	struct memlu_op *o = KURA_CONTAINER_OF(op, struct memlu_op, op);
	kura_blk_cb cb = o->cb;
	void *arg = o->arg;

	(void)res;
	if (o->m->hold) {
		o->next = o->m->held;
		o->m->held = o;
		return;
	}
	res = o->err;
	free(o);
	cb(arg, res);
}

static int op_queue(struct memlu *m, int err, kura_blk_cb cb, void *arg)
{
	struct memlu_op *o = calloc(1, sizeof(*o));

	if (!o)
		return -ENOMEM;
	if (m->fail_next) {
		err = m->fail_next;
		m->fail_next = 0;
	}
	o->m = m;
	o->cb = cb;
	o->arg = arg;
	o->err = err;
	o->op.fn = op_fire;
	kura_loop_defer(m->loop, &o->op, 0);
	return 0;
}

static int range_ok(struct memlu *m, uint64_t off, uint64_t len)
{
	return off % KURA_SCSI_PBS == 0 && len % KURA_SCSI_PBS == 0 && off <= m->size &&
	       len <= m->size - off;
}

static int mem_read(void *be, uint64_t off, uint64_t len, void *buf, enum kura_io_class cls,
		    kura_blk_cb cb, void *arg)
{
	struct memlu *m = be;

	(void)cls;
	if (!range_ok(m, off, len))
		return -EINVAL;
	m->reads++;
	memcpy(buf, m->data + off, len);
	return op_queue(m, 0, cb, arg);
}

static int mem_write(void *be, uint64_t off, uint64_t len, const void *buf,
		     enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	struct memlu *m = be;

	(void)cls;
	if (!range_ok(m, off, len))
		return -EINVAL;
	m->writes++;
	memcpy(m->data + off, buf, len);
	memset(m->mapped + off / KURA_SCSI_PBS, 1, len / KURA_SCSI_PBS);
	return op_queue(m, 0, cb, arg);
}

static int mem_write_cached(void *be, uint64_t off, uint64_t len, const void *buf,
			    enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	struct memlu *m = be;
	int err = mem_write(be, off, len, buf, cls, cb, arg);

	if (!err)
		m->cached_writes++;
	return err;
}

static int mem_discard(void *be, uint64_t off, uint64_t len, kura_blk_cb cb, void *arg)
{
	struct memlu *m = be;

	if (!range_ok(m, off, len))
		return -EINVAL;
	m->discards++;
	memset(m->data + off, 0, len);
	memset(m->mapped + off / KURA_SCSI_PBS, 0, len / KURA_SCSI_PBS);
	return op_queue(m, 0, cb, arg);
}

static int mem_flush(void *be, kura_blk_cb cb, void *arg)
{
	struct memlu *m = be;

	m->flushes++;
	return op_queue(m, 0, cb, arg);
}

static int mem_mapped(void *be, uint64_t blk, uint64_t max, uint64_t *run)
{
	struct memlu *m = be;
	uint64_t n = m->size / KURA_SCSI_PBS, i;
	int st;

	if (blk >= n)
		return -EINVAL;
	st = m->mapped[blk];
	for (i = blk; i < n && i - blk < max && m->mapped[i] == st; i++)
		;
	*run = i - blk;
	return st;
}

static int mem_pr_save(void *be, const char *state, kura_blk_cb cb, void *arg)
{
	struct memlu *m = be;
	char *s = strdup(state);

	if (!s)
		return -ENOMEM;
	free(m->pr_state);
	m->pr_state = s;
	m->pr_saves++;
	return op_queue(m, 0, cb, arg);
}

const struct kura_scsi_backend_ops memlu_ops = {
	.read = mem_read,
	.write = mem_write,
	.write_cached = mem_write_cached,
	.discard = mem_discard,
	.flush = mem_flush,
	.mapped = mem_mapped,
	.pr_save = mem_pr_save,
};

struct memlu *memlu_new(struct kura_loop *loop, uint64_t size, bool read_only, uint64_t uid,
			const char *name, const char *pr_state)
{
	struct memlu *m = calloc(1, sizeof(*m));
	struct kura_scsi_lu_opts o = {0};

	CHECK(m);
	m->loop = loop;
	m->size = size;
	m->data = calloc(1, size);
	m->mapped = calloc(1, size / KURA_SCSI_PBS + 1);
	CHECK(m->data && m->mapped);
	o.loop = loop;
	o.ops = &memlu_ops;
	o.be = m;
	o.size = size;
	o.read_only = read_only;
	o.uid = uid;
	o.name = name;
	o.pr_state = pr_state;
	CHECK_EQ(kura_scsi_lu_create(&o, &m->lu), 0);
	return m;
}

void memlu_free(struct memlu *m)
{
	kura_scsi_lu_destroy(m->lu);
	free(m->data);
	free(m->mapped);
	free(m->pr_state);
	free(m);
}

void memlu_release(struct memlu *m)
{
	struct memlu_op *o = m->held, *n;

	m->held = NULL;
	for (; o; o = n) {
		n = o->next;
		kura_loop_defer(m->loop, &o->op, 0);
	}
}

static void cmd_done(struct kura_scsi_cmd *cmd)
{
	*(int *)cmd->priv = 1;
}

void memlu_start(struct memlu *m, struct kura_scsi_cmd *cmd, const struct kura_scsi_nexus *n,
		 const uint8_t *cdb, unsigned cdb_len, uint32_t edtl, unsigned dir,
		 const void *dout, uint32_t dout_len, int *done)
{
	kura_scsi_cmd_release(cmd);
	memset(cmd, 0, sizeof(*cmd));
	CHECK(cdb_len <= sizeof(cmd->cdb));
	memcpy(cmd->cdb, cdb, cdb_len);
	cmd->lu = m->lu;
	cmd->nexus = n;
	cmd->edtl = edtl;
	cmd->dir = dir;
	if (dout_len) {
		CHECK(!posix_memalign((void **)&cmd->dout, 4096, dout_len));
		memcpy(cmd->dout, dout, dout_len);
	}
	cmd->dout_len = dout_len;
	cmd->done = cmd_done;
	*done = 0;
	cmd->priv = done;
	kura_scsi_exec(cmd);
}

void memlu_run(struct memlu *m, struct kura_scsi_cmd *cmd, const struct kura_scsi_nexus *n,
	       const uint8_t *cdb, unsigned cdb_len, uint32_t edtl, unsigned dir,
	       const void *dout, uint32_t dout_len)
{
	int done = 0;

	memlu_start(m, cmd, n, cdb, cdb_len, edtl, dir, dout, dout_len, &done);
	while (!done)
		kura_loop_run_once(m->loop, 1000000000ULL);
	free(cmd->dout);
	cmd->dout = NULL;
}

void memlu_nexus(struct kura_scsi_nexus *n, uint64_t id, const char *iname, uint64_t isid)
{
	memset(n, 0, sizeof(*n));
	n->id = id;
	n->rtpi = 1;
	snprintf(n->iname, sizeof(n->iname), "%s", iname);
	snprintf(n->iport, sizeof(n->iport), "%s,i,0x%012llx", iname, (unsigned long long)isid);
}

uint8_t memlu_sk(const struct kura_scsi_cmd *cmd)
{
	return cmd->sense_len > 2 ? cmd->sense[2] & 0x0f : 0;
}

uint8_t memlu_asc(const struct kura_scsi_cmd *cmd)
{
	return cmd->sense_len > 12 ? cmd->sense[12] : 0;
}

uint8_t memlu_ascq(const struct kura_scsi_cmd *cmd)
{
	return cmd->sense_len > 13 ? cmd->sense[13] : 0;
}
