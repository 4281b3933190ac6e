/* Control operations that change the layer tree. Each checks everything
 * first and answers with one clear line when it refuses, so a refused
 * request changes nothing; then it changes the in-memory catalog, commits
 * that as one transaction and answers once the transaction is durable. */
#include "vdisk/vd_int.h"

#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void committed(void *arg, int err)
{
	struct vd_ctl *c = arg;

	if (err) {
		vd_ctl_reply(c, err, "cannot write the catalog (%s); restart blockd", strerror(-err));
		return;
	}
	if (c->answer)
		c->answer(c);
	vd_ctl_reply(c, 0, NULL);
}

static void commit(struct vd_ctl *c, struct kura_cat_txn *t, void (*answer)(struct vd_ctl *))
{
	c->answer = answer;
	vd_commit(c->e, t, committed, c);
}

static void answer_vdisk(struct vd_ctl *c)
{
	vd_vdisk_json(c->e, c->out, "vdisk", c->v);
}

static void answer_job(struct vd_ctl *c)
{
	struct vd_job *j = vd_job_get(c->e, c->job);

	if (j)
		vd_job_json(c->out, "job", j);
	else
		kura_jw_null(c->out, "job");
}

static void answer_vdisk_job(struct vd_ctl *c)
{
	answer_vdisk(c);
	answer_job(c);
}

static struct vd_layer *new_layer(struct kura_vd_engine *e, uint64_t parent, uint64_t vdisk,
				  uint64_t clip)
{
	struct vd_layer *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->id = vd_new_id(e);
	l->parent = parent;
	l->vdisk = vdisk;
	l->clip = clip;
	l->created = (uint64_t)time(NULL);
	l->top = true;
	l->next = e->layers;
	e->layers = l;
	return l;
}

/* A new vdisk with an empty top layer above parent. */
static struct vd_vdisk *new_vdisk(struct kura_vd_engine *e, const char *name, uint64_t size,
				  uint64_t parent)
{
	struct vd_vdisk *v = calloc(1, sizeof(*v));
	struct vd_layer *l;

	if (!v)
		return NULL;
	v->id = vd_new_id(e);
	l = new_layer(e, parent, v->id, size);
	if (!l) {
		free(v);
		return NULL;
	}
	snprintf(v->name, sizeof(v->name), "%s", name);
	v->size = size;
	v->top = l->id;
	v->created = l->created;
	v->next = e->vdisks;
	e->vdisks = v;
	return v;
}

static int name_free(struct vd_ctl *c, const char *name)
{
	if (vd_check_name(c, "vdisk", name))
		return -EINVAL;
	if (vd_find(c->e, name)) {
		vd_ctl_reply(c, -EEXIST, "vdisk '%s' already exists", name);
		return -EEXIST;
	}
	return 0;
}

/* A running job (other than freeing) that works on v. */
struct vd_job *vd_job_using(struct kura_vd_engine *e, const struct vd_vdisk *v)
{
	for (struct vd_job *j = e->jobs; j; j = j->next)
		if (j->state == JOB_RUNNING && j->vdisk == v->id && j->type != JOB_FREE &&
		    j->type != JOB_MERGE)
			return j;
	return NULL;
}

/* A merge moving a deleted snapshot's blocks into one of v's layers: those
 * layers must stay until it ends. */
static struct vd_job *merge_into(struct kura_vd_engine *e, const struct vd_vdisk *v)
{
	for (struct vd_job *j = e->jobs; j; j = j->next) {
		struct vd_layer *d;
		if (j->state == JOB_RUNNING && j->type == JOB_MERGE &&
		    (d = vd_layer_get(e, j->dst)) && d->vdisk == v->id)
			return j;
	}
	return NULL;
}

static int not_busy(struct vd_ctl *c, struct vd_vdisk *v, const char *what)
{
	struct vd_job *j;

	if (v->state == VD_BUILDING) {
		vd_ctl_reply(c, -EBUSY, "vdisk '%s' is being built by job %llu; wait for it or "
			     "cancel it with: vdisk job cancel %llu", v->name,
			     (unsigned long long)v->job, (unsigned long long)v->job);
		return -EBUSY;
	}
	if ((j = vd_job_using(c->e, v))) {
		vd_ctl_reply(c, -EBUSY, "cannot %s '%s' while job %llu (%s) uses it; wait for it or "
			     "cancel it with: vdisk job cancel %llu", what, v->name,
			     (unsigned long long)j->id, vd_job_type_name(j->type),
			     (unsigned long long)j->id);
		return -EBUSY;
	}
	if ((j = merge_into(c->e, v)) && (!strcmp(what, "delete") || !strcmp(what, "roll back"))) {
		vd_ctl_reply(c, -EBUSY, "cannot %s '%s' while job %llu merges a deleted snapshot "
			     "into it; try again when it ends (vdisk jobs)", what, v->name,
			     (unsigned long long)j->id);
		return -EBUSY;
	}
	return 0;
}

static int not_exported(struct vd_ctl *c, struct vd_vdisk *v, const char *what)
{
	if (!v->opens)
		return 0;
	vd_ctl_reply(c, -EBUSY, "cannot %s '%s': it is exported (%u open handle%s); stop "
		     "exporting it first", what, v->name, v->opens, v->opens == 1 ? "" : "s");
	return -EBUSY;
}

static struct vd_layer *need_snap(struct vd_ctl *c, struct vd_vdisk *v, const char *snap)
{
	struct vd_layer *l = vd_snap_find(c->e, v, snap);

	if (!l)
		vd_ctl_reply(c, -ENOENT, "vdisk '%s' has no snapshot '%s'; see: vdisk snapshots %s",
			     v->name, snap, v->name);
	return l;
}

/* ---- create, resize ---- */

void vd_op_create(struct vd_ctl *c, const char *name, uint64_t size)
{
	struct kura_cat_txn t;

	if (name_free(c, name) || vd_check_size(c, size))
		return;
	c->v = new_vdisk(c->e, name, size, 0);
	if (!c->v) {
		vd_ctl_reply(c, -ENOMEM, "out of memory");
		return;
	}
	kura_cat_txn_init(&t);
	vd_txn_vdisk(&t, c->v);
	vd_txn_layer(&t, vd_layer_get(c->e, c->v->top));
	commit(c, &t, answer_vdisk);
}

static void resize_commit(struct vd_ctl *c)
{
	struct vd_layer *top = vd_layer_get(c->e, c->v->top);
	struct kura_cat_txn t;

	c->v->size = c->size;
	top->clip = KURA_MIN(top->clip, c->size);
	kura_cat_txn_init(&t);
	vd_txn_vdisk(&t, c->v);
	vd_txn_layer(&t, top);
	commit(c, &t, answer_vdisk);
}

static void shrink_trimmed(void *arg, int err)
{
	struct vd_ctl *c = arg;

	if (err && err != -ENOENT && !c->err)
		c->err = err;
	if (--c->pending)
		return;
	if (c->err) {
		vd_ctl_reply(c, c->err, "shrinking '%s' failed: %s", c->v->name, strerror(-c->err));
		return;
	}
	resize_commit(c);
}

/* Drops the top layer's blocks past the new size before the size changes:
 * they must not reappear if the vdisk grows again. Lower layers are hidden
 * by the top layer's clip instead. */
static void shrink(struct vd_ctl *c)
{
	struct kura_vd_engine *e = c->e;
	uint64_t *exts;
	size_t n;
	int err = e->bops->list(e->b, c->v->top, &exts, &n);

	c->pending = 1;
	for (size_t i = 0; !err && i < n; i++) {
		uint64_t base = exts[i] * VD_EXT;
		if (base + VD_EXT <= c->size)
			continue;
		if (base >= c->size) {
			err = e->bops->free(e->b, c->v->top, exts[i], shrink_trimmed, c);
		} else {
			unsigned blk = (unsigned)((c->size - base) / VD_BLK);
			err = e->bops->trim(e->b, c->v->top, exts[i], blk, KURA_EXT_BLOCKS - blk,
					    shrink_trimmed, c);
		}
		if (!err)
			c->pending++;
	}
	if (!err)
		free(exts);
	else
		c->err = err;
	shrink_trimmed(c, 0);
}

void vd_op_resize(struct vd_ctl *c, const char *name, uint64_t size, int do_shrink)
{
	char a[32], b[32];

	if (!(c->v = vd_need_vdisk(c, name)) || vd_check_size(c, size) ||
	    not_busy(c, c->v, "resize"))
		return;
	c->size = size;
	if (size >= c->v->size) {
		resize_commit(c);
		return;
	}
	if (!do_shrink) {
		vd_ctl_reply(c, -EINVAL, "shrinking '%s' from %s to %s drops its data past %s; "
			     "add --shrink to do it", name, kura_fmt_size(c->v->size, a, sizeof(a)),
			     kura_fmt_size(size, b, sizeof(b)), b);
		return;
	}
	if (not_exported(c, c->v, "shrink"))
		return;
	shrink(c);
}

/* ---- delete ---- */

/* Names of existing vdisks other than v whose layers sit on a layer of v. */
static int dependents(struct kura_vd_engine *e, const struct vd_vdisk *v, uint64_t only_layer,
		      char *buf, size_t len)
{
	size_t used = 0;
	int n = 0;

	buf[0] = '\0';
	for (struct vd_layer *l = e->layers; l; l = l->next) {
		struct vd_layer *p = l->parent ? vd_layer_get(e, l->parent) : NULL;
		struct vd_vdisk *w;
		if (!p || p->vdisk != v->id || l->vdisk == v->id)
			continue;
		if (only_layer && p->id != only_layer)
			continue;
		if (!(w = vd_get(e, l->vdisk)) || strstr(buf, w->name))
			continue;
		used += (size_t)snprintf(buf + used, used < len ? len - used : 0, "%s%s",
					 n ? ", " : "", w->name);
		n++;
	}
	return n;
}

static void answer_delete(struct vd_ctl *c)
{
	if (c->job)
		kura_jw_u64(c->out, "job", c->job);
	else
		kura_jw_null(c->out, "job");
}

static void answer_snap_delete(struct vd_ctl *c)
{
	char deps[1024];

	answer_delete(c);
	if (c->l && dependents(c->e, c->v, c->l->id, deps, sizeof(deps)))
		kura_jw_str(c->out, "note", deps);
}

static void delete_snapshot(struct vd_ctl *c, const char *snap)
{
	struct kura_vd_engine *e = c->e;
	struct kura_cat_txn t;
	struct vd_layer *l;

	if (!(l = need_snap(c, c->v, snap)))
		return;
	if (l->opens) {
		vd_ctl_reply(c, -EBUSY, "cannot delete '%s@%s': it is exported; stop exporting it "
			     "first", c->v->name, snap);
		return;
	}
	for (struct vd_job *j = e->jobs; j; j = j->next) {
		if (j->state == JOB_RUNNING && j->type == JOB_EXPORT && j->src == l->id) {
			vd_ctl_reply(c, -EBUSY, "cannot delete '%s@%s' while job %llu exports it",
				     c->v->name, snap, (unsigned long long)j->id);
			return;
		}
	}
	l->snap[0] = '\0';
	l->hidden = true;
	kura_cat_txn_init(&t);
	vd_txn_layer(&t, l);
	vd_layer_gc(e, l->id, &t);
	c->job = l->job;
	/* A layer others still depend on stays hidden; the answer names them. */
	c->l = l->job ? NULL : l;
	commit(c, &t, answer_snap_delete);
}

void vd_op_delete(struct vd_ctl *c, const char *name, const char *snap)
{
	char deps[1024];
	struct kura_cat_txn t;

	if (!(c->v = vd_need_vdisk(c, name)))
		return;
	if (snap) {
		delete_snapshot(c, snap);
		return;
	}
	if (not_busy(c, c->v, "delete") || not_exported(c, c->v, "delete"))
		return;
	if (dependents(c->e, c->v, 0, deps, sizeof(deps))) {
		vd_ctl_reply(c, -ENOTEMPTY, "vdisk '%s' has clones: %s; delete or flatten them "
			     "first", name, deps);
		return;
	}
	kura_cat_txn_init(&t);
	vd_delete_vdisk(c->e, c->v, &t, &c->job);
	c->v = NULL;
	commit(c, &t, answer_delete);
}

/* ---- snapshot, rollback ---- */

static void answer_snapshot(struct vd_ctl *c)
{
	vd_snap_json(c->e, c->out, "snapshot", c->l);
}

static void snapshot_committed(void *arg, int err)
{
	struct vd_ctl *c = arg;

	vd_resume_writes(c->e, c->v);
	committed(c, err);
}

/* No write is in flight: every acknowledged write is in the old top, and
 * new ones wait until the new top is durable in the catalog. */
static void snapshot_drained(void *arg)
{
	struct vd_ctl *c = arg;
	struct kura_vd_engine *e = c->e;
	struct vd_layer *t0 = vd_layer_get(e, c->v->top), *n;
	struct kura_cat_txn t;

	n = new_layer(e, t0->id, c->v->id, c->v->size);
	if (!n) {
		vd_resume_writes(e, c->v);
		vd_ctl_reply(c, -ENOMEM, "out of memory");
		return;
	}
	snprintf(t0->snap, sizeof(t0->snap), "%s", c->snap);
	t0->size = c->v->size;
	t0->top = false;
	t0->created = (uint64_t)time(NULL);
	c->v->top = n->id;
	c->l = t0;
	kura_cat_txn_init(&t);
	vd_txn_layer(&t, t0);
	vd_txn_layer(&t, n);
	vd_txn_vdisk(&t, c->v);
	c->answer = answer_snapshot;
	vd_commit(e, &t, snapshot_committed, c);
}

void vd_op_snapshot(struct vd_ctl *c, const char *name, const char *snap)
{
	if (!(c->v = vd_need_vdisk(c, name)) || vd_check_name(c, "snapshot", snap))
		return;
	if (vd_snap_find(c->e, c->v, snap)) {
		vd_ctl_reply(c, -EEXIST, "snapshot '%s@%s' already exists", name, snap);
		return;
	}
	if (c->v->state == VD_BUILDING) {
		not_busy(c, c->v, "snapshot");
		return;
	}
	snprintf(c->snap, sizeof(c->snap), "%s", snap);
	vd_pause_writes(c->e, c->v, snapshot_drained, c);
}

void vd_op_rollback(struct vd_ctl *c, const char *name, const char *snap)
{
	struct kura_vd_engine *e = c->e;
	struct vd_layer *l, *old, *n;
	struct kura_cat_txn t;

	if (!(c->v = vd_need_vdisk(c, name)) || !(l = need_snap(c, c->v, snap)) ||
	    not_busy(c, c->v, "roll back") || not_exported(c, c->v, "roll back"))
		return;
	old = vd_layer_get(e, c->v->top);
	n = new_layer(e, l->id, c->v->id, l->size);
	if (!n) {
		vd_ctl_reply(c, -ENOMEM, "out of memory");
		return;
	}
	c->v->top = n->id;
	c->v->size = l->size;
	old->top = false;
	old->hidden = true;
	kura_cat_txn_init(&t);
	vd_txn_layer(&t, n);
	vd_txn_vdisk(&t, c->v);
	vd_txn_layer(&t, old);
	vd_layer_gc(e, old->id, &t);
	commit(c, &t, answer_vdisk);
}

/* ---- clone, flatten ---- */

static struct vd_job *new_job(struct vd_ctl *c, enum vd_job_type type, struct vd_vdisk *v)
{
	struct vd_job *j = vd_job_new(c->e, type);

	if (!j) {
		vd_ctl_reply(c, -ENOMEM, "out of memory");
		return NULL;
	}
	j->vdisk = v->id;
	snprintf(j->vname, sizeof(j->vname), "%s", v->name);
	c->job = j->id;
	return j;
}

void vd_op_clone(struct vd_ctl *c, const char *name, const char *snap, const char *new_name,
		 int full)
{
	struct kura_cat_txn t;
	struct vd_vdisk *src;
	struct vd_layer *l;
	struct vd_job *j = NULL;

	if (!(src = vd_need_vdisk(c, name)) || !(l = need_snap(c, src, snap)) ||
	    name_free(c, new_name))
		return;
	c->v = new_vdisk(c->e, new_name, l->size, l->id);
	if (!c->v) {
		vd_ctl_reply(c, -ENOMEM, "out of memory");
		return;
	}
	kura_cat_txn_init(&t);
	if (full) {
		if (!(j = new_job(c, JOB_CLONE, c->v)))
			return;
		j->dst = c->v->top;
		snprintf(j->source, sizeof(j->source), "%s@%s", name, snap);
		snprintf(j->target, sizeof(j->target), "%s", new_name);
		c->v->state = VD_BUILDING;
		c->v->job = j->id;
		vd_txn_job(&t, j);
	}
	vd_txn_vdisk(&t, c->v);
	vd_txn_layer(&t, vd_layer_get(c->e, c->v->top));
	commit(c, &t, full ? answer_vdisk_job : answer_vdisk);
}

void vd_op_flatten(struct vd_ctl *c, const char *name)
{
	struct kura_vd_engine *e = c->e;
	struct vd_layer *b, *p;
	struct kura_cat_txn t;
	struct vd_job *j;

	if (!(c->v = vd_need_vdisk(c, name)) || not_busy(c, c->v, "flatten"))
		return;
	b = vd_layer_get(e, c->v->top);
	while (b->parent && (p = vd_layer_get(e, b->parent)) && p->vdisk == c->v->id)
		b = p;
	if (!b->parent) {
		vd_ctl_reply(c, -EINVAL, "vdisk '%s' does not depend on another vdisk; nothing to "
			     "flatten", name);
		return;
	}
	if (!(j = new_job(c, JOB_FLATTEN, c->v)))
		return;
	j->dst = b->id;
	p = vd_layer_get(e, b->parent);
	snprintf(j->source, sizeof(j->source), "%s", p && p->snap[0] ? p->snap : "parent");
	if (p && p->snap[0] && vd_get(e, p->vdisk))
		snprintf(j->source, sizeof(j->source), "%s@%s", vd_get(e, p->vdisk)->name, p->snap);
	snprintf(j->target, sizeof(j->target), "%s", name);
	kura_cat_txn_init(&t);
	vd_txn_job(&t, j);
	commit(c, &t, answer_job);
}

/* ---- scrub ---- */

void vd_op_scrub(struct vd_ctl *c, const char *name)
{
	struct kura_cat_txn t;
	struct vd_job *j;

	if (!(c->v = vd_need_vdisk(c, name)) || not_busy(c, c->v, "scrub"))
		return;
	kura_cat_txn_init(&t);
	if (!(j = vd_scrub_new(c->e, c->v, &t))) {
		kura_cat_txn_free(&t);
		vd_ctl_reply(c, -ENOMEM, "out of memory");
		return;
	}
	c->job = j->id;
	commit(c, &t, answer_job);
}

/* ---- import, export ---- */

static int check_path(struct vd_ctl *c, const char *file)
{
	if (file[0] != '/' || strlen(file) >= 4000) {
		vd_ctl_reply(c, -EINVAL, "'%s': give an absolute path (blockd resolves it)", file);
		return -EINVAL;
	}
	return 0;
}

void vd_op_import(struct vd_ctl *c, const char *file, const char *name)
{
	struct kura_cat_txn t;
	struct stat st;
	struct vd_job *j;
	uint64_t size;
	int fd;

	if (check_path(c, file) || name_free(c, name))
		return;
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) || (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))) {
		int err = fd < 0 ? -errno : -EINVAL;
		if (fd >= 0)
			close(fd);
		vd_ctl_reply(c, err, "cannot import '%s': %s", file,
			     err == -EINVAL ? "not a regular file or block device" : strerror(-err));
		return;
	}
	size = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);
		size = end > 0 ? (uint64_t)end : 0;
	}
	close(fd);
	if (!size) {
		vd_ctl_reply(c, -EINVAL, "cannot import '%s': it is empty", file);
		return;
	}
	if (vd_check_size(c, KURA_ALIGN_UP(size, VD_BLK)))
		return;
	c->v = new_vdisk(c->e, name, KURA_ALIGN_UP(size, VD_BLK), 0);
	if (!c->v || !(j = new_job(c, JOB_IMPORT, c->v)))
		return;
	j->size = size;
	j->file = strdup(file);
	snprintf(j->source, sizeof(j->source), "%.*s", (int)sizeof(j->source) - 1, file);
	snprintf(j->target, sizeof(j->target), "%s", name);
	c->v->state = VD_BUILDING;
	c->v->job = j->id;
	kura_cat_txn_init(&t);
	vd_txn_vdisk(&t, c->v);
	vd_txn_layer(&t, vd_layer_get(c->e, c->v->top));
	vd_txn_job(&t, j);
	commit(c, &t, answer_vdisk_job);
}

void vd_op_export(struct vd_ctl *c, const char *name, const char *snap, const char *file)
{
	struct vd_layer *l = NULL;
	struct kura_cat_txn t;
	struct vd_job *j;
	int fd;

	if (check_path(c, file) || !(c->v = vd_need_vdisk(c, name)) ||
	    (snap && !(l = need_snap(c, c->v, snap))))
		return;
	if (c->v->state == VD_BUILDING) {
		not_busy(c, c->v, "export");
		return;
	}
	/* Created here so that a bad path is refused now, not by the job. */
	fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		int err = -errno;
		vd_ctl_reply(c, err, "cannot export to '%s': %s", file,
			     err == -EEXIST ? "it exists; remove it or choose another path" :
			     strerror(-err));
		return;
	}
	close(fd);
	if (!(j = new_job(c, JOB_EXPORT, c->v))) {
		unlink(file);
		return;
	}
	j->src = l ? l->id : 0;
	j->size = l ? l->size : c->v->size;
	j->file = strdup(file);
	if (l)
		snprintf(j->source, sizeof(j->source), "%s@%s", name, snap);
	else
		snprintf(j->source, sizeof(j->source), "%s", name);
	snprintf(j->target, sizeof(j->target), "%s", file);
	kura_cat_txn_init(&t);
	vd_txn_job(&t, j);
	commit(c, &t, answer_job);
}

void vd_op_job_cancel(struct vd_ctl *c, uint64_t id)
{
	struct vd_job *j = vd_job_get(c->e, id);

	if (!j) {
		vd_ctl_reply(c, -ENOENT, "no job %llu; see: vdisk jobs", (unsigned long long)id);
		return;
	}
	if (j->state != JOB_RUNNING) {
		vd_ctl_reply(c, -EINVAL, "job %llu has already finished", (unsigned long long)id);
		return;
	}
	if (j->type == JOB_FREE || j->type == JOB_MERGE) {
		vd_ctl_reply(c, -EINVAL, "job %llu frees the space of a deleted vdisk or snapshot "
			     "and cannot be cancelled", (unsigned long long)id);
		return;
	}
	vd_job_cancel(c->e, j);
	c->job = id;
	answer_job(c);
	vd_ctl_reply(c, 0, NULL);
}
