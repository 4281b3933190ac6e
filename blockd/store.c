/* Opening, creating, closing and inspecting a store. */
#include "blockd/store_int.h"
#include "common/crc.h"
#include "common/err.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uuid/uuid.h>

#define MARKER "KURA"
#define MARKER_HEAD "kura store"
#define DEFAULT_DISK_SIZE (8ull << 30)
#define MIN_EXTENTS 16u

struct md_store {
	uint32_t format, pad;
	uint8_t uuid[16];
};

struct md_disk {
	uint32_t index, pad;
	uint8_t uuid[16];
	char path[PATH_MAX];
};

#define ERR(...) snprintf(errbuf, errlen, __VA_ARGS__)

/* ---- the data dir: lock and marker ---- */

static int dir_prepare(struct kura_blk_store *s, const struct kura_blk_opts *o, int *fresh,
		       char *errbuf, size_t errlen)
{
	char path[PATH_MAX + 16], line[128];
	struct stat st;
	FILE *f;
	int fd;

	if (stat(o->dir, &st)) {
		if (errno != ENOENT || !o->create) {
			ERR("data dir %s: %s", o->dir, strerror(errno));
			return -errno;
		}
		if (mkdir(o->dir, 0700)) {
			ERR("cannot create data dir %s: %s", o->dir, strerror(errno));
			return -errno;
		}
	} else if (!S_ISDIR(st.st_mode)) {
		ERR("data dir %s is not a directory", o->dir);
		return -ENOTDIR;
	}
	if (access(o->dir, W_OK | X_OK)) {
		ERR("data dir %s is not writable: %s", o->dir, strerror(errno));
		return -errno;
	}
	snprintf(path, sizeof(path), "%s/LOCK", o->dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		ERR("cannot create %s: %s", path, strerror(errno));
		return -errno;
	}
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		char pid[32] = "";
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		ERR("data dir %s is in use by another blockd (pid %s); stop it first", o->dir,
		    pid[0] ? pid : "unknown");
		close(fd);
		return -EBUSY;
	}
	if (ftruncate(fd, 0) == 0) {
		int n = snprintf(line, sizeof(line), "%d\n", (int)getpid());
		if (pwrite(fd, line, (size_t)n, 0) != n)
			kura_log(WARN, "cannot record pid in %s", path);
	}
	s->dir_lock_fd = fd;

	snprintf(path, sizeof(path), "%s/" MARKER, o->dir);
	f = fopen(path, "re");
	if (f) {
		char uuid[64] = "";
		unsigned format = 0;
		int ok = fgets(line, sizeof(line), f) && !strncmp(line, MARKER_HEAD, strlen(MARKER_HEAD)) &&
			 fscanf(f, "format %u\nuuid %36s", &format, uuid) == 2;
		fclose(f);
		if (!ok) {
			ERR("data dir %s holds a KURA file that is not a kura store marker; "
			    "refusing to touch it", o->dir);
			return KURA_E_NOTKURA;
		}
		if (format > KURA_FORMAT_VERSION) {
			ERR("data dir %s was written by a newer kura (format %u); this blockd "
			    "reads format %u", o->dir, format, KURA_FORMAT_VERSION);
			return KURA_E_FORMAT;
		}
		if (uuid_parse(uuid, s->store_uuid)) {
			ERR("data dir %s: marker has a bad uuid", o->dir);
			return KURA_E_CORRUPT;
		}
		*fresh = 0;
		return 0;
	}
	if (errno != ENOENT) {
		ERR("cannot read %s: %s", path, strerror(errno));
		return -errno;
	}
	/* no marker: only an empty dir (but for our lock) may become a store */
	{
		DIR *d = opendir(o->dir);
		struct dirent *de;
		int other = 0;

		while (d && (de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
			    strcmp(de->d_name, "LOCK") && strcmp(de->d_name, "lost+found"))
				other = 1;
		if (d)
			closedir(d);
		if (other) {
			ERR("data dir %s is not empty and holds no kura store; use an empty "
			    "directory", o->dir);
			return KURA_E_NOTKURA;
		}
	}
	if (!o->create) {
		ERR("no kura store in %s", o->dir);
		return -ENOENT;
	}
	{
		char uuid[37];
		int mfd;

		uuid_generate(s->store_uuid);
		uuid_unparse_lower(s->store_uuid, uuid);
		snprintf(line, sizeof(line), MARKER_HEAD "\nformat %u\nuuid %s\n",
			 KURA_FORMAT_VERSION, uuid);
		mfd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (mfd < 0 || write(mfd, line, strlen(line)) != (ssize_t)strlen(line) ||
		    fsync(mfd)) {
			ERR("cannot write %s: %s", path, strerror(errno));
			if (mfd >= 0)
				close(mfd);
			return -EIO;
		}
		close(mfd);
		mfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (mfd >= 0) {
			if (fsync(mfd))
				kura_log(WARN, "fsync of %s failed", o->dir);
			close(mfd);
		}
	}
	*fresh = 1;
	return 0;
}

/* ---- disks ---- */

static int sb_check(const struct kura_sb *sb)
{
	uint32_t crc = kura_crc32c(0, sb, offsetof(struct kura_sb, crc));

	if (sb->magic != KURA_SB_MAGIC)
		return KURA_E_NOTKURA;
	if (sb->format > KURA_FORMAT_VERSION)
		return KURA_E_FORMAT;
	if (sb->crc != crc || sb->sb_size != sizeof(*sb) || sb->block_size != KURA_BLK_SIZE ||
	    sb->extent_size != KURA_EXT_SIZE || sb->data_off + sb->nextents * KURA_EXT_SIZE >
	    sb->disk_size)
		return KURA_E_CORRUPT;
	return 0;
}

static int is_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return 0;
	return 1;
}

/* Reads or writes (durably) the superblock through an aligned buffer. */
static int sb_io(struct kura_disk *d, int write, struct kura_sb *sb)
{
	struct kura_sb *buf = kura_aligned_alloc(sizeof(*buf));
	int err;

	if (!buf)
		return -ENOMEM;
	if (write)
		memcpy(buf, sb, sizeof(*buf));
	err = kura_disk_rw_sync(d, write, buf, sizeof(*buf), 0, write ? KURA_DISK_FUA : 0);
	if (!err && !write)
		memcpy(sb, buf, sizeof(*sb));
	free(buf);
	return err;
}

static uint64_t journal_default(uint64_t size)
{
	uint64_t j = size / 16;

	j = KURA_MAX(j, 16ull << 20);
	j = KURA_MIN(j, 256ull << 20);
	return KURA_ALIGN_UP(j, 1ull << 20);
}

static int sb_layout(struct kura_sb *sb, uint64_t size, uint64_t jlen)
{
	uint64_t n, crc_len, data_off;

	sb->disk_size = size;
	sb->journal_off = KURA_JOURNAL_OFF;
	sb->journal_len = jlen;
	if (size < KURA_JOURNAL_OFF + jlen)
		return -ENOSPC;
	n = (size - KURA_JOURNAL_OFF - jlen) / KURA_EXT_SIZE;
	for (;;) {
		crc_len = KURA_ALIGN_UP(KURA_ALIGN_UP(n, KURA_CRC_PER_PAGE_EXTENTS) /
					KURA_CRC_PER_PAGE_EXTENTS * KURA_BLK_SIZE, 1ull << 20);
		data_off = KURA_JOURNAL_OFF + jlen + crc_len;
		if (!n || data_off + n * KURA_EXT_SIZE <= size)
			break;
		n--;
	}
	sb->crc_off = KURA_JOURNAL_OFF + jlen;
	sb->crc_len = crc_len;
	sb->data_off = data_off;
	sb->nextents = n;
	return n >= MIN_EXTENTS ? 0 : -ENOSPC;
}

static uint64_t min_disk_size(uint64_t jlen)
{
	return KURA_JOURNAL_OFF + jlen + (1ull << 20) + (uint64_t)MIN_EXTENTS * KURA_EXT_SIZE;
}

static int zero_range(struct kura_disk *d, uint64_t off, uint64_t len)
{
	uint64_t chunk = 1ull << 20;
	void *z = kura_aligned_alloc(chunk);
	int err = 0;

	if (!z)
		return -ENOMEM;
	for (uint64_t o = 0; o < len && !err; o += chunk)
		err = kura_disk_rw_sync(d, 1, z, KURA_MIN(chunk, len - o), off + o, 0);
	free(z);
	return err < 0 ? err : 0;
}

static int disk_format(struct kura_blk_store *s, const struct kura_blk_opts *o,
		       struct kura_disk *d, uint32_t index, struct kura_sb *sb, char *errbuf,
		       size_t errlen)
{
	uint64_t jlen = index == 0 ? (o->journal_size ? KURA_ALIGN_UP(o->journal_size, 1ull << 20)
						      : journal_default(d->size))
				   : 0;
	char sz[32], need[32];
	int err;

	if (index == 0 && jlen < (16ull << 20)) {
		ERR("journal size must be at least 16 MiB");
		return -EINVAL;
	}
	memset(sb, 0, sizeof(*sb));
	if (sb_layout(sb, d->size, jlen)) {
		ERR("disk %s is too small: %s; kura needs at least %s", d->path,
		    kura_fmt_size(d->size, sz, sizeof(sz)),
		    kura_fmt_size(min_disk_size(jlen), need, sizeof(need)));
		return -ENOSPC;
	}
	sb->magic = KURA_SB_MAGIC;
	sb->format = KURA_FORMAT_VERSION;
	sb->sb_size = sizeof(*sb);
	memcpy(sb->store_uuid, s->store_uuid, 16);
	uuid_generate(sb->disk_uuid);
	sb->disk_index = index;
	sb->block_size = KURA_BLK_SIZE;
	sb->extent_size = KURA_EXT_SIZE;
	memcpy(&sb->journal_nonce, sb->disk_uuid, sizeof(sb->journal_nonce));
	sb->crc = kura_crc32c(0, sb, offsetof(struct kura_sb, crc));
	/* written extents make later flushes cheap on filesystems that track
	 * unwritten space; the journal and checksum table are rewritten often */
	err = zero_range(d, sb->journal_off, sb->journal_len + sb->crc_len);
	if (!err)
		err = sb_io(d, 1, sb);
	if (!err)
		err = kura_disk_flush_sync(d);
	if (err < 0) {
		ERR("cannot format disk %s: %s", d->path, kura_strerror(err));
		return err;
	}
	return 0;
}

/* A journal nonce other than old (struct md_journal): random, so it matches
 * none that this disk's journal used before either. */
static uint64_t new_nonce(uint64_t old)
{
	uint64_t n = 0;

	while (getrandom(&n, sizeof(n), 0) != (ssize_t)sizeof(n) || n == old || !n)
		n ^= kura_now_ns();
	return n;
}

static int md_put_sync(struct kura_md *md, const void *k, size_t kl, const void *v, size_t vl)
{
	struct kura_md_batch *b = kura_md_batch_create();
	int err;

	if (!b)
		return -ENOMEM;
	kura_md_batch_put(b, k, kl, v, vl);
	err = kura_md_write(md, b, 1);
	kura_md_batch_destroy(b);
	return err;
}

/* 'D' + index: the disk's record (struct md_disk); 'F' + index: the disk
 * failed, and this is its superblock as it was (struct kura_sb), so that
 * its place in the extent numbering stays without reading it. */
static int disk_key_of(uint8_t key[5], char kind, uint32_t index)
{
	key[0] = (uint8_t)kind;
	key[1] = (uint8_t)(index >> 24);
	key[2] = (uint8_t)(index >> 16);
	key[3] = (uint8_t)(index >> 8);
	key[4] = (uint8_t)index;
	return 5;
}

static int disk_key(uint8_t key[5], uint32_t index)
{
	return disk_key_of(key, 'D', index);
}

void store_disk_failed(struct kura_blk_store *s, struct pool_disk *pd)
{
	unsigned i;
	uint8_t key[5];
	int err;

	if (!pd || s->failed_disk >= 0 || pd->failed)
		return;
	i = (unsigned)(pd - s->pool.d);
	if (i == 0)
		return; /* the journal's disk: nothing goes on without it */
	s->failed_disk = (int)i;
	err = md_put_sync(s->md, key, (size_t)disk_key_of(key, 'F', i), &pd->sb, sizeof(pd->sb));
	if (err)
		kura_log(ERR, "disk %s failed, and recording so failed too: %s", pd->disk->path,
			 kura_strerror(err));
	else
		kura_log(ERR, "disk %s (kura disk %u) failed: recorded; the store's next open "
			 "goes on without it", pd->disk->path, i);
}

/* Opens a disk and reads its superblock. *fresh: it holds no kura data. */
static int disk_open(struct kura_blk_store *s, const struct kura_blk_opts *o,
		     const struct kura_blk_disk_spec *spec, uint64_t size, struct kura_disk **out,
		     struct kura_sb *sb, int *fresh, char *errbuf, size_t errlen)
{
	struct kura_disk *d = spec->disk;
	int created = 0, err;

	*fresh = 0;
	if (!d) {
		err = kura_disk_file_open(o->loop, spec->path, size, &d, &created, errbuf, errlen);
		if (err)
			return err;
	}
	err = sb_io(d, 0, sb);
	if (err < 0) {
		ERR("cannot read disk %s: %s", d->path, kura_strerror(err));
		goto close;
	}
	err = sb_check(sb);
	if (err == KURA_E_NOTKURA && (created || is_zero(sb, sizeof(*sb)))) {
		*fresh = 1;
		err = 0;
	} else if (err == KURA_E_NOTKURA) {
		ERR("disk %s holds data that is not kura's; wipe its first 4 KiB to let kura "
		    "use it", d->path);
	} else if (err == KURA_E_FORMAT) {
		ERR("disk %s was written by a newer kura (format %u)", d->path, sb->format);
	} else if (err) {
		ERR("disk %s: superblock is corrupt", d->path);
	} else if (memcmp(sb->store_uuid, s->store_uuid, 16)) {
		char u[37];
		uuid_unparse_lower(sb->store_uuid, u);
		ERR("disk %s belongs to another kura store (%s)", d->path, u);
		err = KURA_E_FOREIGN;
	}
	if (err)
		goto close;
	*out = d;
	return 0;
close:
	d->ops->close(d);
	return err;
}

struct disk_scan {
	struct md_disk *v;
	unsigned n;
};

static int scan_disk(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct disk_scan *ds = arg;
	struct md_disk *n;

	(void)k;
	(void)kl;
	if (vl != sizeof(struct md_disk))
		return KURA_E_CORRUPT;
	n = realloc(ds->v, sizeof(*n) * (ds->n + 1));
	if (!n)
		return -ENOMEM;
	ds->v = n;
	memcpy(&ds->v[ds->n++], v, vl);
	return 0;
}

static int spec_matches(const struct kura_blk_disk_spec *spec, const char *recorded)
{
	char a[PATH_MAX], b[PATH_MAX];
	const char *p = spec->disk ? spec->disk->path : spec->path;

	if (!strcmp(p, recorded))
		return 1;
	return realpath(p, a) && realpath(recorded, b) && !strcmp(a, b);
}

static int open_disks(struct kura_blk_store *s, const struct kura_blk_opts *o, char *errbuf,
		      size_t errlen)
{
	struct disk_scan ds = { 0 };
	uint8_t prefix = 'D';
	struct kura_blk_disk_spec def = { 0 };
	const struct kura_blk_disk_spec *specs = o->disks;
	unsigned nspecs = o->ndisks;
	char defpath[PATH_MAX];
	int err;

	err = kura_md_scan(s->md, &prefix, 1, scan_disk, &ds);
	if (err) {
		ERR("cannot read the disk list from %s/meta: %s", o->dir, kura_strerror(err));
		goto out;
	}
	if (!ds.n && !nspecs) {
		snprintf(defpath, sizeof(defpath), "%s/disk0.img", o->dir);
		def.path = defpath;
		def.size = o->default_disk_size ? o->default_disk_size : DEFAULT_DISK_SIZE;
		specs = &def;
		nspecs = 1;
	}
	/* the disks the store already has, at the paths it recorded */
	for (unsigned i = 0; i < ds.n; i++) {
		struct kura_blk_disk_spec rec = { .path = ds.v[i].path };
		struct kura_disk *d;
		struct kura_sb sb;
		int fresh;

		uint8_t fkey[5];
		size_t flen;

		err = kura_md_get(s->md, fkey, (size_t)disk_key_of(fkey, 'F', ds.v[i].index), &sb,
				  sizeof(sb), &flen);
		if (!err && (flen != sizeof(sb) || ds.v[i].index != s->pool.n)) {
			ERR("metadata: malformed record of failed disk %u", ds.v[i].index);
			err = KURA_E_CORRUPT;
		}
		if (!err) {
			if ((err = pool_add_failed(&s->pool, &sb, ds.v[i].path))) {
				ERR("cannot add failed disk %s: %s", ds.v[i].path, kura_strerror(err));
				goto out;
			}
			kura_log(WARN, "disk %s (kura disk %u) is recorded as failed: not used",
				 ds.v[i].path, ds.v[i].index);
			continue;
		}
		if (err != -ENOENT) {
			if (!errbuf[0])
				ERR("cannot read the disk list: %s", kura_strerror(err));
			goto out;
		}
		for (unsigned k = 0; k < nspecs; k++)
			if (specs[k].disk && spec_matches(&specs[k], ds.v[i].path))
				rec.disk = specs[k].disk;
		err = disk_open(s, o, &rec, 0, &d, &sb, &fresh, errbuf, errlen);
		if (!err && (fresh || memcmp(sb.disk_uuid, ds.v[i].uuid, 16) ||
			     sb.disk_index != ds.v[i].index)) {
			ERR("disk %s is not the disk this store recorded there (index %u)",
			    d->path, ds.v[i].index);
			d->ops->close(d);
			err = KURA_E_FOREIGN;
		}
		if (err)
			goto out;
		err = pool_add(&s->pool, d, &sb);
		if (err) {
			d->ops->close(d);
			ERR("cannot add disk %s: %s", ds.v[i].path, kura_strerror(err));
			goto out;
		}
	}
	/* new disks named on the command line */
	for (unsigned k = 0; k < nspecs; k++) {
		const struct kura_blk_disk_spec *sp = &specs[k];
		struct md_disk rec = { 0 };
		struct kura_disk *d;
		struct kura_sb sb;
		uint8_t key[5];
		int fresh, known = 0;

		for (unsigned i = 0; i < ds.n; i++)
			if (spec_matches(sp, ds.v[i].path))
				known = 1 + s->pool.d[i].failed;
		if (known == 2 && sp->disk)
			sp->disk->ops->close(sp->disk); /* opened for a disk that failed */
		if (known)
			continue;
		err = disk_open(s, o, sp, sp->size ? sp->size : DEFAULT_DISK_SIZE, &d, &sb, &fresh,
				errbuf, errlen);
		if (err)
			goto out;
		if (!fresh && sb.disk_index != s->pool.n) {
			ERR("disk %s already belongs to this store under another path", d->path);
			d->ops->close(d);
			err = -EEXIST;
			goto out;
		}
		if (fresh) {
			err = disk_format(s, o, d, s->pool.n, &sb, errbuf, errlen);
			if (err && !sp->disk && d->created)
				unlink(d->path); /* do not leave a file we made for nothing */
		}
		if (!err) {
			rec.index = s->pool.n;
			memcpy(rec.uuid, sb.disk_uuid, 16);
			snprintf(rec.path, sizeof(rec.path), "%s", d->path);
			if (!sp->disk && !realpath(sp->path, rec.path))
				snprintf(rec.path, sizeof(rec.path), "%s", d->path);
			err = md_put_sync(s->md, key, (size_t)disk_key(key, rec.index), &rec,
					  sizeof(rec));
			if (err)
				ERR("cannot record disk %s: %s", d->path, kura_strerror(err));
		}
		if (!err && (err = pool_add(&s->pool, d, &sb)))
			ERR("cannot add disk %s: %s", d->path, kura_strerror(err));
		if (err) {
			d->ops->close(d);
			goto out;
		}
		kura_log(INFO, "disk %s: %s kura disk %u", d->path, fresh ? "formatted as" : "adopted",
			 rec.index);
	}
	if (!s->pool.n || !s->pool.d[0].sb.journal_len) {
		ERR("store in %s has no journal disk", o->dir);
		err = KURA_E_CORRUPT;
	}
out:
	free(ds.v);
	return err;
}

/* ---- index load and replay ---- */

/* pool_take, but an extent of a failed disk (all counted used) is taken as
 * it is: its entry is dropped after the replay (drop_lost). */
static int pool_take_or_lost(struct kura_pool *p, uint32_t loc)
{
	struct pool_disk *pd = pool_disk_of(p, loc);

	return pd && pd->failed ? 0 : pool_take(p, loc);
}

struct lost_ctx {
	struct kura_pool *pool;
	struct idx_key *v;
	size_t n, cap;
};

static int lost_one(void *arg, uint64_t layer, const struct idx_entry *e)
{
	struct lost_ctx *lc = arg;
	struct pool_disk *pd = pool_disk_of(lc->pool, e->loc);

	if (!pd || !pd->failed)
		return 0;
	if (lc->n == lc->cap) {
		size_t ncap = lc->cap ? lc->cap * 2 : 256;
		struct idx_key *n = realloc(lc->v, sizeof(*n) * ncap);
		if (!n)
			return -ENOMEM;
		lc->v = n;
		lc->cap = ncap;
	}
	lc->v[lc->n].layer = layer;
	lc->v[lc->n++].ext = e->ext;
	return 0;
}

/* Extents of failed disks are lost: with drop_failed_disks their entries go
 * (the next checkpoint deletes them from RocksDB), else open refuses. How
 * many were dropped, or -errno. */
static int64_t drop_lost(struct kura_blk_store *s, const struct kura_blk_opts *o, char *errbuf,
			 size_t errlen)
{
	struct lost_ctx lc = { .pool = &s->pool };
	int err = idx_for_each(&s->idx, lost_one, &lc);

	if (!err && lc.n && !o->drop_failed_disks) {
		ERR("%zu extents of this store were on a disk that failed (see the log); start "
		    "blockd with --drop-failed-disks to go on without them (a cluster node does "
		    "by itself: its copies come back from the other nodes)", lc.n);
		err = -EIO;
	}
	for (size_t i = 0; !err && i < lc.n; i++) {
		idx_del(&s->idx, lc.v[i].layer, lc.v[i].ext);
		err = idx_mark_dirty(&s->idx, lc.v[i].layer, lc.v[i].ext);
	}
	free(lc.v);
	if (err) {
		if (!errbuf[0])
			ERR("cannot drop the extents of a failed disk: %s", kura_strerror(err));
		return err;
	}
	if (lc.n)
		kura_log(WARN, "dropped %zu extents that were on a failed disk: this store no "
			 "longer holds them", lc.n);
	return (int64_t)lc.n;
}

struct load_ctx {
	struct kura_blk_store *s;
	char *errbuf;
	size_t errlen;
};

static int load_extent(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct load_ctx *lc = arg;
	struct kura_blk_store *s = lc->s;
	struct md_extent me;
	uint64_t layer, ext;
	struct idx_entry *e;
	int err;

	if (kl != 17 || vl != sizeof(me)) {
		snprintf(lc->errbuf, lc->errlen, "metadata: malformed extent record");
		return KURA_E_CORRUPT;
	}
	memcpy(&me, v, sizeof(me));
	layer = kura_get_be64(k + 1);
	ext = kura_get_be64(k + 9);
	err = pool_take_or_lost(&s->pool, me.loc);
	if (err) {
		snprintf(lc->errbuf, lc->errlen,
			 "metadata: extent %llu of layer %llu %s physical extent %u",
			 (unsigned long long)ext, (unsigned long long)layer,
			 err == -EEXIST ? "shares" : "points outside every disk at", me.loc);
		return KURA_E_CORRUPT;
	}
	err = idx_add(&s->idx, layer, ext, me.loc);
	if (err)
		return err;
	e = idx_find(&s->idx, layer, ext);
	ent_raise_version(e, me.version);
	idx_set_bitmap(&s->idx, e, &me.present);
	return 0;
}

static int clear_dirty(void *arg, uint64_t layer, const struct idx_entry *e)
{
	(void)arg;
	(void)layer;
	ent_set_dirty((struct idx_entry *)e, 0);
	return 0;
}

struct sync_wait {
	struct kura_op op;
	int done, res;
};

static void sync_wait_done(struct kura_op *op, int res)
{
	struct sync_wait *w = KURA_CONTAINER_OF(op, struct sync_wait, op);

	w->done = 1;
	w->res = res;
}

/* Loads the checksum page of loc by turning the loop (replay only). */
static int crc_sync_get(struct kura_blk_store *s, uint32_t loc)
{
	for (;;) {
		struct sync_wait w = { .op.fn = sync_wait_done };
		uint32_t *crcs;
		int r = crc_get(&s->crc, loc, &w.op, &crcs);

		if (r)
			return r < 0 ? r : 0;
		while (!w.done)
			kura_loop_run_once(s->loop, 100000000ULL);
		if (w.res < 0)
			return w.res;
	}
}

static int replay_rec(void *arg, const struct kura_jrec *rec, const uint32_t *crcs,
		      const uint8_t *data)
{
	struct kura_blk_store *s = arg;
	struct idx_entry *e;
	struct pool_disk *pd;
	int err;

	if (!kura_jrec_has_crcs(rec)) {
		err = io_meta_apply(s, rec);
		if (err)
			kura_log(WARN, "journal replay: %s of layer %llu extent %llu: %s",
				 rec->type == KURA_JREC_MOVE ? "move" : "free",
				 (unsigned long long)rec->layer, (unsigned long long)rec->ext,
				 kura_strerror(err));
		return 0;
	}
	pd = pool_disk_of(&s->pool, rec->loc);
	if (!pd) {
		kura_log(ERR, "journal replay: write to physical extent %u outside every disk",
			 rec->loc);
		return KURA_E_CORRUPT;
	}
	e = idx_find(&s->idx, rec->layer, rec->ext);
	if (e && e->loc != rec->loc) {
		kura_log(ERR, "journal replay: layer %llu extent %llu is at %u, record says %u",
			 (unsigned long long)rec->layer, (unsigned long long)rec->ext, e->loc,
			 rec->loc);
		return KURA_E_CORRUPT;
	}
	if (!e) {
		err = pool_take_or_lost(&s->pool, rec->loc);
		if (!err)
			err = idx_add(&s->idx, rec->layer, rec->ext, rec->loc);
		if (err) {
			kura_log(ERR, "journal replay: cannot place layer %llu extent %llu at %u: %s",
				 (unsigned long long)rec->layer, (unsigned long long)rec->ext,
				 rec->loc, kura_strerror(err));
			return KURA_E_CORRUPT;
		}
		e = idx_find(&s->idx, rec->layer, rec->ext);
	}
	idx_set_bits(&s->idx, e, rec->blk, rec->nblk);
	ent_raise_version(e, rec->version);
	idx_mark_dirty(&s->idx, rec->layer, rec->ext);
	if (pd->failed)
		return 0; /* the extent is lost: dropped after the replay */
	err = 0;
	if (rec->type == KURA_JREC_WRITE) /* a DWRITE's blocks were in place first */
		err = kura_disk_rw_sync(pd->disk, 1, (void *)data,
					(size_t)rec->nblk * KURA_BLK_SIZE,
					pool_data_off(pd, rec->loc, rec->blk), 0);
	if (!err)
		err = crc_sync_get(s, rec->loc);
	if (err < 0)
		return err;
	crc_update(&s->crc, rec->loc, rec->blk, rec->nblk, crcs);
	return 0;
}

/* ---- open / close ---- */

static void store_free(struct kura_blk_store *s)
{
	kura_worker_destroy(s->worker);
	ckpt_destroy(s);
	journal_destroy(&s->journal);
	io_destroy(s);
	crc_destroy(&s->crc);
	idx_destroy(&s->idx);
	pool_destroy(&s->pool);
	kura_md_close(s->md);
	if (s->dir_lock_fd >= 0)
		close(s->dir_lock_fd);
	free(s);
}

int kura_blk_store_open(const struct kura_blk_opts *o, struct kura_blk_store **out,
			char *errbuf, size_t errlen)
{
	struct kura_blk_store *s = calloc(1, sizeof(*s));
	char path[PATH_MAX + 16];
	struct md_store ms;
	struct md_journal mj = { 1, 0, 0 };
	uint8_t mkey = 'M', jkey[2] = { 'J', 0 }, eprefix = 'E';
	struct load_ctx lc = { s, errbuf, errlen };
	uint64_t end_seq, end_lpos, nbatches;
	int64_t dropped;
	size_t len;
	int fresh = 0, err;

	errbuf[0] = '\0';
	if (!s)
		return -ENOMEM;
	s->dir_lock_fd = -1;
	s->failed_disk = -1;
	s->loop = o->loop;
	s->checkpoint_ns = o->checkpoint_ns ? o->checkpoint_ns : 5000000000ULL;
	s->apply_idle_ns = o->apply_idle_ns ? o->apply_idle_ns : 2000000ULL;
	snprintf(s->dir, sizeof(s->dir), "%s", o->dir);
	err = dir_prepare(s, o, &fresh, errbuf, errlen);
	if (err)
		goto fail;
	snprintf(path, sizeof(path), "%s/meta", o->dir);
	err = kura_md_open(path, 1, &s->md);
	if (err) {
		ERR("cannot open metadata database %s: %s", path, kura_strerror(err));
		goto fail;
	}
	err = kura_md_get(s->md, &mkey, 1, &ms, sizeof(ms), &len);
	if (err == -ENOENT) {
		/* a new store (or one whose creation was interrupted before this) */
		ms.format = KURA_FORMAT_VERSION;
		ms.pad = 0;
		memcpy(ms.uuid, s->store_uuid, 16);
		err = md_put_sync(s->md, &mkey, 1, &ms, sizeof(ms));
	} else if (!err && (len != sizeof(ms) || memcmp(ms.uuid, s->store_uuid, 16))) {
		ERR("metadata in %s/meta belongs to another store", o->dir);
		err = KURA_E_FOREIGN;
	} else if (!err && ms.format > KURA_FORMAT_VERSION) {
		ERR("metadata in %s/meta is of a newer format (%u)", o->dir, ms.format);
		err = KURA_E_FORMAT;
	}
	if (err) {
		if (!errbuf[0])
			ERR("cannot read store record: %s", kura_strerror(err));
		goto fail;
	}
	err = kura_worker_create(&s->worker, o->loop, "kura-md");
	if (!err)
		err = idx_init(&s->idx);
	if (!err)
		err = io_init(s);
	if (err) {
		ERR("cannot start: %s", kura_strerror(err));
		goto fail;
	}
	err = open_disks(s, o, errbuf, errlen);
	if (err)
		goto fail;
	err = crc_init(&s->crc, s, o->crc_cache_bytes ? o->crc_cache_bytes : (64ull << 20));
	if (!err)
		err = ckpt_init(s);
	if (err) {
		ERR("cannot start: %s", kura_strerror(err));
		goto fail;
	}
	err = kura_md_scan(s->md, &eprefix, 1, load_extent, &lc);
	if (err) {
		if (!errbuf[0])
			ERR("cannot load the extent index: %s", kura_strerror(err));
		goto fail;
	}
	idx_for_each(&s->idx, clear_dirty, NULL);
	s->idx.ndirty = 0;
	err = kura_md_get(s->md, jkey, sizeof(jkey), &mj, sizeof(mj), &len);
	if (err == -ENOENT || (!err && len == 2 * sizeof(uint64_t)))
		mj.nonce = s->pool.d[0].sb.journal_nonce; /* new, or from before it was kept */
	else if (!err && len != sizeof(mj))
		err = -EINVAL;
	if (err && err != -ENOENT) {
		ERR("cannot read the journal position: %s", kura_strerror(err));
		goto fail;
	}
	journal_init(&s->journal, s, &s->pool.d[0], mj.seq, mj.lpos, mj.nonce);
	err = journal_replay(&s->journal, mj.seq, mj.lpos, replay_rec, s, &end_seq, &end_lpos,
			     &nbatches);
	if (err) {
		ERR("journal replay failed on %s: %s", s->pool.d[0].disk->path, kura_strerror(err));
		goto fail;
	}
	journal_init(&s->journal, s, &s->pool.d[0], end_seq, end_lpos, new_nonce(mj.nonce));
	if (nbatches)
		kura_log(INFO, "journal: replayed %llu batches", (unsigned long long)nbatches);
	if ((dropped = drop_lost(s, o, errbuf, errlen)) < 0) {
		err = (int)dropped;
		goto fail;
	}
	if (nbatches || fresh || dropped) {
		/* records the new nonce with the position */
		err = ckpt_sync(s);
		if (err) {
			ERR("cannot checkpoint after replay: %s", kura_strerror(err));
			goto fail;
		}
	} else {
		/* nothing to put in place: replay starts where it ended, under the
		 * new nonce, before any batch carries it */
		mj.seq = end_seq;
		mj.lpos = end_lpos;
		mj.nonce = s->journal.nonce;
		err = md_put_sync(s->md, jkey, sizeof(jkey), &mj, sizeof(mj));
		if (err) {
			ERR("cannot record the journal position: %s", kura_strerror(err));
			goto fail;
		}
	}
	ckpt_start_timer(s);
	*out = s;
	return 0;
fail:
	store_free(s);
	return err;
}

static void stop_timer(struct kura_blk_store *s)
{
	if (s->ck_timer_armed)
		kura_loop_cancel_sync(s->loop, &s->ck_timer.op);
	while (s->ck_timer_armed)
		kura_loop_run_once(s->loop, 100000000ULL);
}

void kura_blk_store_close(struct kura_blk_store *s)
{
	if (!s)
		return;
	/* finish what was submitted */
	io_apply_kick(s);
	while ((!s->dead && (s->blocked_head || io_pending(s) || s->journal.inflight ||
			     s->journal.open)) || s->ndirect)
		kura_loop_run_once(s->loop, 100000000ULL);
	if (!s->dead)
		ckpt_sync(s);
	s->closing = 1;
	while (s->apply_timer_armed || journal_flush_pending(&s->journal)) /* a few ms */
		kura_loop_run_once(s->loop, 10000000ULL);
	stop_timer(s);
	store_free(s);
}

void kura_blk_store_abandon(struct kura_blk_store *s)
{
	if (s)
		store_free(s);
}

/* ---- inspection ---- */

int kura_blk_extent_info(struct kura_blk_store *s, uint64_t layer, uint64_t ext,
			 struct kura_blk_extent_info *out)
{
	struct idx_entry *e = idx_find(&s->idx, layer, ext);
	struct pool_disk *pd;

	if (!e)
		return -ENOENT;
	memset(out, 0, sizeof(*out));
	out->layer = layer;
	out->ext = ext;
	out->version = ent_version(e);
	idx_bitmap(&s->idx, e, &out->present);
	out->nblocks = bm_count(&out->present);
	pd = pool_disk_of(&s->pool, e->loc);
	out->disk = pd ? (uint32_t)(pd - s->pool.d) : 0;
	return 0;
}

struct list_ctx {
	uint64_t *v;
	size_t n, cap;
};

static int list_one(void *arg, uint64_t layer, const struct idx_entry *e)
{
	struct list_ctx *lc = arg;

	(void)layer;
	if (lc->n == lc->cap) {
		size_t ncap = lc->cap ? lc->cap * 2 : 64;
		uint64_t *n = realloc(lc->v, sizeof(*n) * ncap);
		if (!n)
			return -ENOMEM;
		lc->v = n;
		lc->cap = ncap;
	}
	lc->v[lc->n++] = e->ext;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int kura_blk_list(struct kura_blk_store *s, uint64_t layer, uint64_t **exts, size_t *n)
{
	struct list_ctx lc = { 0 };
	int err = idx_for_layer(&s->idx, layer, list_one, &lc);

	if (err) {
		free(lc.v);
		return err;
	}
	if (lc.n)
		qsort(lc.v, lc.n, sizeof(*lc.v), cmp_u64);
	*exts = lc.v;
	*n = lc.n;
	return 0;
}

struct usage_ctx {
	const struct kura_idx *x;
	uint64_t extents, blocks;
};

static int usage_one(void *arg, uint64_t layer, const struct idx_entry *e)
{
	struct usage_ctx *u = arg;
	struct kura_blk_bitmap bm;

	(void)layer;
	idx_bitmap(u->x, e, &bm);
	u->extents++;
	u->blocks += bm_count(&bm);
	return 0;
}

void kura_blk_layer_usage(struct kura_blk_store *s, uint64_t layer, uint64_t *extents,
			  uint64_t *blocks)
{
	struct usage_ctx u = { .x = &s->idx };

	idx_for_layer(&s->idx, layer, usage_one, &u);
	*extents = u.extents;
	*blocks = u.blocks;
}

int kura_blk_layers(struct kura_blk_store *s, uint64_t **ids, size_t *n)
{
	struct kura_idx *x = &s->idx;
	uint64_t *v = malloc(sizeof(*v) * (x->lcount ? x->lcount : 1));
	size_t k = 0;

	if (!v)
		return -ENOMEM;
	for (uint32_t i = 0; i < x->lcap; i++)
		if (x->layers[i])
			v[k++] = x->layers[i]->id;
	if (k)
		qsort(v, k, sizeof(*v), cmp_u64);
	*ids = v;
	*n = k;
	return 0;
}

int kura_blk_index_classes(struct kura_blk_store *s)
{
	return idx_classes_keep(&s->idx);
}

static int cmp_key(const void *a, const void *b)
{
	const struct kura_blk_key *x = a, *y = b;

	if (x->layer != y->layer)
		return x->layer < y->layer ? -1 : 1;
	return x->ext < y->ext ? -1 : x->ext > y->ext;
}

int kura_blk_list_classes(struct kura_blk_store *s, uint32_t mask, uint32_t value,
			  struct kura_blk_key **out, size_t *n)
{
	int err;

	if (mask >= KURA_BLK_CLASSES || (mask & (mask + 1)))
		return -EINVAL;
	if ((err = idx_classes_keep(&s->idx)) || (err = idx_classes_list(&s->idx, mask, value, out, n)))
		return err;
	if (*n > 1)
		qsort(*out, *n, sizeof(**out), cmp_key);
	return 0;
}

struct kura_md *kura_blk_store_md(struct kura_blk_store *s)
{
	return s->md;
}

int kura_blk_store_dead(const struct kura_blk_store *s)
{
	return s->dead;
}

int kura_blk_failed_disk(const struct kura_blk_store *s)
{
	return s->failed_disk;
}

uint64_t kura_blk_io_errors(const struct kura_blk_store *s)
{
	return s->st.io_errors;
}

int kura_blk_space_low(const struct kura_blk_store *s)
{
	uint64_t reserve = KURA_MIN(KURA_MAX(s->pool.capacity / 64, 8u), 1024u);

	return s->pool.nfree < reserve;
}

void kura_blk_stats(struct kura_blk_store *s, struct kura_blk_stats *out)
{
	*out = s->st;
	out->capacity_extents = s->pool.capacity;
	out->used_extents = s->pool.capacity - s->pool.nfree;
	out->journal_bytes = s->journal.len;
	out->journal_used = journal_used(&s->journal);
	out->index_bytes = idx_mem_bytes(&s->idx);
	out->crc_cache_bytes = crc_mem_bytes(&s->crc);
	out->ndisks = s->pool.n;
	out->dead = s->dead;
}

void kura_blk_guest_counts(const struct kura_blk_store *s, uint64_t *started, uint64_t *done,
			   uint64_t *lat_ns)
{
	*started = s->st.guest_started;
	*done = s->st.guest_done;
	*lat_ns = s->st.guest_lat_ns;
}

int kura_blk_disk_info(struct kura_blk_store *s, unsigned i, struct kura_blk_disk_info *out)
{
	const struct kura_disk *d;

	if (i >= s->pool.n)
		return -ENOENT;
	d = s->pool.d[i].disk;
	memset(out, 0, sizeof(*out));
	if (!d) {
		out->path = s->pool.d[i].failed_path;
		out->size = s->pool.d[i].sb.disk_size;
		out->failed = 1;
		return 0;
	}
	out->path = d->path;
	out->size = d->size;
	out->used_extents = s->pool.d[i].sb.nextents - s->pool.d[i].nfree;
	out->slow_ios = d->slow.ios;
	out->slow_worst_ns = d->slow.worst_ns;
	return 0;
}
