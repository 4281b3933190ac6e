/* Control requests: decoding, one at a time per engine, answers as JSON.
 * Read-only requests (list, info, jobs, fsck) answer from memory. */
#include "vdisk/vd_int.h"

#include "common/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *errno_name(int err)
{
	switch (-err) {
	case EEXIST: return "EEXIST";
	case ENOENT: return "ENOENT";
	case EINVAL: return "EINVAL";
	case EBUSY: return "EBUSY";
	case ENOSPC: return "ENOSPC";
	case EFBIG: return "EFBIG";
	case ENOTEMPTY: return "ENOTEMPTY";
	case ECANCELED: return "ECANCELED";
	case EPROTO: return "EPROTO";
	case ENOMEM: return "ENOMEM";
	case EROFS: return "EROFS";
	default: return "EIO";
	}
}

static void ctl_run(struct kura_op *op, int res);
static void ctl_next(struct kura_vd_engine *e, struct vd_ctl *c);

void vd_ctl_reply(struct vd_ctl *c, int err, const char *fmt, ...)
{
	struct kura_vd_engine *e = c->e;
	char msg[1024] = "";
	va_list ap;

	if (err && fmt) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	if (err)
		kura_jw_str(c->out, "code", errno_name(err));
	c->cb(c->arg, err, err ? msg : NULL);
	if (c->in_dispatch) {
		/* The op may still look at c after its checks refused: the
		 * dispatcher frees it when the op returns. */
		c->replied = true;
		return;
	}
	ctl_next(e, c);
}

static void ctl_next(struct kura_vd_engine *e, struct vd_ctl *c)
{
	free(c);
	e->ctl_busy = false;
	if (e->ctl_head) {
		struct vd_ctl *n = e->ctl_head;
		e->ctl_head = n->next;
		if (!e->ctl_head)
			e->ctl_tail = NULL;
		e->ctl_busy = true;
		n->op.fn = ctl_run;
		kura_loop_defer(e->loop, &n->op, 0);
	}
}

int vd_check_name(struct vd_ctl *c, const char *what, const char *name)
{
	if (!kura_vd_name_check(name))
		return 0;
	vd_ctl_reply(c, -EINVAL, "invalid %s name '%.80s': use 1 to 64 characters from A-Z a-z "
		     "0-9 . _ -, not starting with . or -", what, name);
	return -EINVAL;
}

int vd_check_size(struct vd_ctl *c, uint64_t size)
{
	char b[32];

	if (!size) {
		vd_ctl_reply(c, -EINVAL, "size must be at least 4 KiB");
		return -EINVAL;
	}
	if (size % VD_BLK) {
		vd_ctl_reply(c, -EINVAL, "size %llu is not a multiple of 4 KiB (4096 bytes)",
			     (unsigned long long)size);
		return -EINVAL;
	}
	if (size > KURA_VD_SIZE_MAX) {
		vd_ctl_reply(c, -EFBIG, "size %s is beyond the supported maximum of 1 PiB",
			     kura_fmt_size(size, b, sizeof(b)));
		return -EFBIG;
	}
	return 0;
}

struct vd_vdisk *vd_need_vdisk(struct vd_ctl *c, const char *name)
{
	struct vd_vdisk *v = vd_find(c->e, name);

	if (!v)
		vd_ctl_reply(c, -ENOENT, "no vdisk '%.80s'; see: vdisk list", name);
	return v;
}

/* ---- answers ---- */

static uint64_t layer_bytes(struct kura_vd_engine *e, uint64_t id)
{
	uint64_t exts, blocks;

	e->bops->layer_usage(e->b, id, &exts, &blocks);
	return blocks * VD_BLK;
}

/* Whether some other vdisk's chain reaches layer id. */
static bool layer_shared(struct kura_vd_engine *e, const struct vd_layer *l)
{
	for (struct vd_layer *c = e->layers; c; c = c->next) {
		if (c->parent != l->id)
			continue;
		if (c->vdisk != l->vdisk || layer_shared(e, c))
			return true;
	}
	return false;
}

static void parent_name(struct kura_vd_engine *e, struct vd_vdisk *v, char *buf, size_t len)
{
	buf[0] = '\0';
	for (struct vd_layer *l = vd_layer_get(e, v->top); l; l = vd_layer_get(e, l->parent)) {
		if (l->vdisk != v->id) {
			struct vd_vdisk *p = vd_get(e, l->vdisk);
			snprintf(buf, len, "%s@%s", p ? p->name : "(deleted)",
				 l->snap[0] ? l->snap : "(deleted snapshot)");
			return;
		}
		if (!l->parent)
			return;
	}
}

static int cmp_layer_id(const void *a, const void *b)
{
	const struct vd_layer *x = *(struct vd_layer *const *)a, *y = *(struct vd_layer *const *)b;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* The vdisk's snapshots, oldest first, into a malloc'd array. */
static size_t snap_list(struct kura_vd_engine *e, const struct vd_vdisk *v,
			struct vd_layer ***out)
{
	size_t n = 0, k = 0;
	struct vd_layer **a;

	for (struct vd_layer *l = e->layers; l; l = l->next)
		if (l->vdisk == v->id && l->snap[0])
			n++;
	a = calloc(n ? n : 1, sizeof(*a));
	if (!a) {
		*out = NULL;
		return 0;
	}
	for (struct vd_layer *l = e->layers; l; l = l->next)
		if (l->vdisk == v->id && l->snap[0])
			a[k++] = l;
	qsort(a, k, sizeof(*a), cmp_layer_id);
	*out = a;
	return k;
}

void vd_vdisk_json(struct kura_vd_engine *e, struct kura_jw *w, const char *key,
		   struct vd_vdisk *v)
{
	uint64_t alloc = 0, uniq = 0, b;
	struct vd_layer **snaps;
	struct vd_chain *c;
	char parent[160];
	size_t n;

	for (struct vd_layer *l = e->layers; l; l = l->next) {
		if (l->vdisk != v->id)
			continue;
		b = layer_bytes(e, l->id);
		alloc += b;
		if (!layer_shared(e, l))
			uniq += b;
	}
	parent_name(e, v, parent, sizeof(parent));
	kura_jw_obj(w, key);
	kura_jw_str(w, "name", v->name);
	kura_jw_u64(w, "size", v->size);
	kura_jw_u64(w, "allocated", alloc);
	kura_jw_u64(w, "unique", uniq);
	kura_jw_str(w, "parent", parent[0] ? parent : NULL);
	kura_jw_arr(w, "snapshots");
	n = snap_list(e, v, &snaps);
	for (size_t i = 0; i < n; i++)
		kura_jw_str(w, NULL, snaps[i]->snap);
	free(snaps);
	kura_jw_end(w);
	kura_jw_u64(w, "depth", vd_chain_get(e, v, &c) ? 0 : c->n);
	kura_jw_u64(w, "created", v->created);
	kura_jw_str(w, "state", v->state == VD_BUILDING ? "building" : "ready");
	if (v->job)
		kura_jw_u64(w, "job", v->job);
	else
		kura_jw_null(w, "job");
	kura_jw_u64(w, "exports", v->opens);
	if (v->scrubbed) {
		kura_jw_u64(w, "scrubbed", v->scrubbed);
		kura_jw_u64(w, "scrub_bad_blocks", v->scrub_bad);
	} else {
		kura_jw_null(w, "scrubbed");
		kura_jw_null(w, "scrub_bad_blocks");
	}
	kura_jw_end(w);
}

void vd_snap_json(struct kura_vd_engine *e, struct kura_jw *w, const char *key,
		  const struct vd_layer *l)
{
	struct vd_vdisk *v = vd_get(e, l->vdisk);

	kura_jw_obj(w, key);
	kura_jw_str(w, "name", l->snap);
	kura_jw_str(w, "vdisk", v ? v->name : NULL);
	kura_jw_u64(w, "size", l->size);
	kura_jw_u64(w, "created", l->created);
	kura_jw_u64(w, "allocated", layer_bytes(e, l->id));
	kura_jw_arr(w, "clones");
	for (struct vd_layer *c = e->layers; c; c = c->next) {
		struct vd_vdisk *cv;
		if (c->parent == l->id && c->vdisk != l->vdisk && (cv = vd_get(e, c->vdisk)))
			kura_jw_str(w, NULL, cv->name);
	}
	kura_jw_end(w);
	kura_jw_end(w);
}

static int cmp_vdisk_name(const void *a, const void *b)
{
	return strcmp((*(struct vd_vdisk *const *)a)->name, (*(struct vd_vdisk *const *)b)->name);
}

static void op_list(struct vd_ctl *c)
{
	struct kura_vd_engine *e = c->e;
	struct vd_vdisk **a;
	size_t n = 0, k = 0;

	for (struct vd_vdisk *v = e->vdisks; v; v = v->next)
		n++;
	a = calloc(n ? n : 1, sizeof(*a));
	if (!a) {
		vd_ctl_reply(c, -ENOMEM, "out of memory");
		return;
	}
	for (struct vd_vdisk *v = e->vdisks; v; v = v->next)
		a[k++] = v;
	qsort(a, k, sizeof(*a), cmp_vdisk_name);
	kura_jw_arr(c->out, "vdisks");
	for (size_t i = 0; i < k; i++)
		vd_vdisk_json(e, c->out, NULL, a[i]);
	kura_jw_end(c->out);
	free(a);
	vd_ctl_reply(c, 0, NULL);
}

static void op_info(struct vd_ctl *c, const char *name, const char *snap)
{
	struct vd_layer *l;

	if (!(c->v = vd_need_vdisk(c, name)))
		return;
	if (!snap) {
		vd_vdisk_json(c->e, c->out, "vdisk", c->v);
	} else if ((l = vd_snap_find(c->e, c->v, snap))) {
		vd_snap_json(c->e, c->out, "snapshot", l);
	} else {
		vd_ctl_reply(c, -ENOENT, "vdisk '%s' has no snapshot '%s'; see: vdisk snapshots %s",
			     name, snap, name);
		return;
	}
	vd_ctl_reply(c, 0, NULL);
}

static void op_snapshots(struct vd_ctl *c, const char *name)
{
	struct vd_layer **snaps;
	size_t n;

	if (!(c->v = vd_need_vdisk(c, name)))
		return;
	n = snap_list(c->e, c->v, &snaps);
	kura_jw_arr(c->out, "snapshots");
	for (size_t i = 0; i < n; i++)
		vd_snap_json(c->e, c->out, NULL, snaps[i]);
	kura_jw_end(c->out);
	free(snaps);
	vd_ctl_reply(c, 0, NULL);
}

static void op_jobs(struct vd_ctl *c)
{
	kura_jw_arr(c->out, "jobs");
	for (struct vd_job *j = c->e->jobs; j; j = j->next)
		vd_job_json(c->out, NULL, j);
	kura_jw_end(c->out);
	vd_ctl_reply(c, 0, NULL);
}

static void op_job(struct vd_ctl *c, uint64_t id)
{
	struct vd_job *j = vd_job_get(c->e, id);

	if (!j) {
		vd_ctl_reply(c, -ENOENT, "no job %llu; see: vdisk jobs", (unsigned long long)id);
		return;
	}
	vd_job_json(c->out, "job", j);
	vd_ctl_reply(c, 0, NULL);
}

/* ---- dispatch ---- */

struct fields {
	const char *name, *snap, *new_name, *file;
	uint64_t size, id;
	int shrink, full;
};

static int need(struct vd_ctl *c, const char *op, const char *key, int err)
{
	if (!err)
		return 0;
	vd_ctl_reply(c, -EINVAL, "request '%s' %s field '%s'", op,
		     err == -ENOENT ? "lacks the" : "has a wrong type for the", key);
	return -EINVAL;
}

static int opt_str(struct vd_ctl *c, const char *op, const char *key, const char **out)
{
	int err = kura_json_get_str(c->req, key, out);

	if (err == -ENOENT || kura_json_type(kura_json_get(c->req, key)) == KURA_JSON_NULL) {
		*out = NULL;
		return 0;
	}
	return need(c, op, key, err);
}

static int opt_bool(struct vd_ctl *c, const char *op, const char *key, int *out)
{
	int err = kura_json_get_bool(c->req, key, out);

	if (err == -ENOENT) {
		*out = 0;
		return 0;
	}
	return need(c, op, key, err);
}

static int str(struct vd_ctl *c, const char *op, const char *key, const char **out)
{
	return need(c, op, key, kura_json_get_str(c->req, key, out));
}

static int u64(struct vd_ctl *c, const char *op, const char *key, uint64_t *out)
{
	return need(c, op, key, kura_json_get_u64(c->req, key, out));
}

static bool mutating(const char *op)
{
	static const char *const ro[] = { "version", "list", "info", "snapshots", "jobs", "job",
					   "fsck", "qos_show", "stats" };

	for (size_t i = 0; i < KURA_ARRAY_SIZE(ro); i++)
		if (!strcmp(op, ro[i]))
			return false;
	return true;
}

static void dispatch(struct vd_ctl *c, const char *op)
{
	struct fields f = { 0 };

	if (!strcmp(op, "version")) {
		kura_jw_str(c->out, "version", "kura 0.3");
		vd_ctl_reply(c, 0, NULL);
	} else if (!strcmp(op, "list")) {
		op_list(c);
	} else if (!strcmp(op, "jobs")) {
		op_jobs(c);
	} else if (!strcmp(op, "fsck")) {
		vd_op_fsck(c);
	} else if (!strcmp(op, "job")) {
		if (!u64(c, op, "id", &f.id))
			op_job(c, f.id);
	} else if (!strcmp(op, "job_cancel")) {
		if (!u64(c, op, "id", &f.id))
			vd_op_job_cancel(c, f.id);
	} else if (!strcmp(op, "create")) {
		if (!str(c, op, "name", &f.name) && !u64(c, op, "size", &f.size))
			vd_op_create(c, f.name, f.size);
	} else if (!strcmp(op, "info")) {
		if (!str(c, op, "name", &f.name) && !opt_str(c, op, "snap", &f.snap))
			op_info(c, f.name, f.snap);
	} else if (!strcmp(op, "snapshots")) {
		if (!str(c, op, "name", &f.name))
			op_snapshots(c, f.name);
	} else if (!strcmp(op, "resize")) {
		if (!str(c, op, "name", &f.name) && !u64(c, op, "size", &f.size) &&
		    !opt_bool(c, op, "shrink", &f.shrink))
			vd_op_resize(c, f.name, f.size, f.shrink);
	} else if (!strcmp(op, "delete")) {
		if (!str(c, op, "name", &f.name) && !opt_str(c, op, "snap", &f.snap))
			vd_op_delete(c, f.name, f.snap);
	} else if (!strcmp(op, "snapshot")) {
		if (!str(c, op, "name", &f.name) && !str(c, op, "snap", &f.snap))
			vd_op_snapshot(c, f.name, f.snap);
	} else if (!strcmp(op, "rollback")) {
		if (!str(c, op, "name", &f.name) && !str(c, op, "snap", &f.snap))
			vd_op_rollback(c, f.name, f.snap);
	} else if (!strcmp(op, "clone")) {
		if (!str(c, op, "name", &f.name) && !str(c, op, "snap", &f.snap) &&
		    !str(c, op, "new", &f.new_name) && !opt_bool(c, op, "full", &f.full))
			vd_op_clone(c, f.name, f.snap, f.new_name, f.full);
	} else if (!strcmp(op, "flatten")) {
		if (!str(c, op, "name", &f.name))
			vd_op_flatten(c, f.name);
	} else if (!strcmp(op, "scrub")) {
		if (!str(c, op, "name", &f.name))
			vd_op_scrub(c, f.name);
	} else if (!strcmp(op, "import")) {
		if (!str(c, op, "file", &f.file) && !str(c, op, "name", &f.name))
			vd_op_import(c, f.file, f.name);
	} else if (!strcmp(op, "export")) {
		if (!str(c, op, "name", &f.name) && !opt_str(c, op, "snap", &f.snap) &&
		    !str(c, op, "file", &f.file))
			vd_op_export(c, f.name, f.snap, f.file);
	} else if (!strcmp(op, "qos")) {
		if (!str(c, op, "name", &f.name))
			vd_op_qos(c, f.name);
	} else if (!strcmp(op, "qos_show")) {
		if (!str(c, op, "name", &f.name))
			vd_op_qos_show(c, f.name);
	} else if (!strcmp(op, "stats")) {
		if (!opt_str(c, op, "name", &f.name))
			vd_op_stats(c, f.name);
	} else {
		vd_ctl_reply(c, -EINVAL, "unknown request '%.40s'; see docs/control.md", op);
	}
}

static void ctl_run(struct kura_op *op, int res)
{
	struct vd_ctl *c = KURA_CONTAINER_OF(op, struct vd_ctl, op);
	const char *name = NULL;

	(void)res;
	c->in_dispatch = true;
	if (kura_json_type(c->req) != KURA_JSON_OBJ || kura_json_get_str(c->req, "op", &name))
		vd_ctl_reply(c, -EINVAL, "a request is a JSON object with a string field 'op'");
	else if (c->e->cat_err && mutating(name))
		vd_ctl_reply(c, -EIO, "the catalog could not be written earlier; restart blockd");
	else if (c->e->closing)
		vd_ctl_reply(c, -ECANCELED, "blockd is stopping");
	else
		dispatch(c, name);
	c->in_dispatch = false;
	if (c->replied)
		ctl_next(c->e, c);
}

void kura_vd_ctl(struct kura_vd_engine *e, const struct kura_json *req, struct kura_jw *out,
		 kura_vd_ctl_cb cb, void *arg)
{
	struct vd_ctl *c = calloc(1, sizeof(*c));

	if (!c) {
		/* Not even room to queue it: answer from the loop later is
		 * impossible without memory, so answer now. */
		cb(arg, -ENOMEM, "out of memory");
		return;
	}
	c->e = e;
	c->req = req;
	c->out = out;
	c->cb = cb;
	c->arg = arg;
	if (e->closing) {
		free(c);
		cb(arg, -ESHUTDOWN, "the vdisks are no longer served here");
		return;
	}
	if (e->ctl_busy) {
		if (e->ctl_tail)
			e->ctl_tail->next = c;
		else
			e->ctl_head = c;
		e->ctl_tail = c;
		return;
	}
	e->ctl_busy = true;
	c->op.fn = ctl_run;
	kura_loop_defer(e->loop, &c->op, 0);
}
