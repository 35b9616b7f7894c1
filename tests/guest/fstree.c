// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * fstree - make a tree with everything a file system holds, and describe a
 * tree field by field, for the fidelity tests (tests/integration/guest-fidelity.py).
 *
 *   fstree make DIR      build the torture tree in DIR (made; root, on ext4
 *                        with ea_inode and project quotas for everything)
 *   fstree dump DIR      one line per entry, sorted by path bytes:
 *                        path (hex), type, mode, owner, size, nlink, inode,
 *                        rdev, link target (hex), mtime/atime/ctime (s.ns),
 *                        inode flags, project id, every extended attribute
 *                        (name=hex value; ACLs are system.posix_acl_*),
 *                        SHA-256 of the content, and the layout from FIEMAP
 *                        (D data, Z 4 KiB blocks of data that read as zeros,
 *                        U unwritten; holes are what is not listed; past the
 *                        size too)
 *   fstree unflag DIR    clear the immutable and append-only flags below DIR
 *                        (so that rm -rf can remove it)
 *   fstree rm DIR        unflag and remove DIR, however deep (busybox rm
 *                        cannot remove paths longer than PATH_MAX)
 *   fstree deep DIR N    a chain of folders whose path is longer than N bytes
 *
 * Everything is done relative to folder fds (openat, fstatat, readlinkat),
 * so paths longer than PATH_MAX work.  Extended attributes of symlinks and
 * special files go through the /proc link of an O_PATH fd.  Files are read
 * with O_NOATIME.  Built static for the guest by tests/guest/artifacts and
 * for the host by meson, from this one source.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

/* the inode flags a backup keeps (proto.h VB_FSFL_MASK) */
#define KEPT_FLAGS	0x6283C0FFu

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("fstree: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

#define CHECK(x) do { if ((x) < 0) die("%s:%d: %s: %s", __FILE__, __LINE__, #x, \
				       strerror(errno)); } while (0)

/* ---- SHA-256 (FIPS 180-4) ------------------------------------------------------- */

struct sha {
	uint32_t h[8];
	uint64_t n;
	uint8_t buf[64];
	size_t fill;
};

static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
	0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
	0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
	0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
	0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
	0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
	0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha_block(struct sha *s, const uint8_t *p)
{
	uint32_t w[64], a, b, c, d, e, f, g, h;

	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);

		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	a = s->h[0]; b = s->h[1]; c = s->h[2]; d = s->h[3];
	e = s->h[4]; f = s->h[5]; g = s->h[6]; h = s->h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) +
			      K[i] + w[i];
		uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));

		h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
	}
	s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d;
	s->h[4] += e; s->h[5] += f; s->h[6] += g; s->h[7] += h;
}

static void sha_init(struct sha *s)
{
	static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
					0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };

	memcpy(s->h, iv, sizeof(iv));
	s->n = 0;
	s->fill = 0;
}

static void sha_update(struct sha *s, const uint8_t *p, size_t n)
{
	s->n += n;
	while (n) {
		size_t k = 64 - s->fill < n ? 64 - s->fill : n;

		memcpy(s->buf + s->fill, p, k);
		s->fill += k;
		p += k;
		n -= k;
		if (s->fill == 64) {
			sha_block(s, s->buf);
			s->fill = 0;
		}
	}
}

static void sha_hex(struct sha *s, char out[65])
{
	uint64_t bits = s->n * 8;
	uint8_t pad = 0x80, len[8];

	sha_update(s, &pad, 1);
	pad = 0;
	while (s->fill != 56)
		sha_update(s, &pad, 1);
	for (int i = 0; i < 8; i++)
		len[i] = (uint8_t)(bits >> (56 - 8 * i));
	sha_update(s, len, 8);
	for (int i = 0; i < 8; i++)
		sprintf(out + 8 * i, "%08x", s->h[i]);
}

/* ---- dump ------------------------------------------------------------------------- */

static void hex(FILE *f, const void *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", ((const uint8_t *)p)[i]);
}

static char *path;		/* the current path, relative to the dumped folder */
static size_t path_cap;

static void path_set(size_t at, const char *name)
{
	size_t nl = strlen(name), need = at + 1 + nl + 1;

	if (need > path_cap) {
		path_cap = need * 2;
		path = realloc(path, path_cap);
		if (!path)
			die("out of memory");
	}
	if (at)
		path[at++] = '/';
	memcpy(path + at, name, nl + 1);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char **list_dir(int dfd, size_t *n)
{
	int fd = dup(dfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	char **v = NULL;
	size_t cap = 0;

	*n = 0;
	if (!d)
		die("opendir %s: %s", path, strerror(errno));
	rewinddir(d);
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 32;
			v = realloc(v, cap * sizeof(*v));
			if (!v)
				die("out of memory");
		}
		v[(*n)++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(v, *n, sizeof(*v), name_cmp);
	return v;
}

static void dump_xattrs(FILE *f, int fd, bool opath)
{
	char proc[64], *names, *val;
	ssize_t ll;
	char *list[4096];
	size_t n = 0;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	names = malloc(1 << 17);
	val = malloc(1 << 17);
	if (!names || !val)
		die("out of memory");
	ll = opath ? listxattr(proc, names, 1 << 17) : flistxattr(fd, names, 1 << 17);
	if (ll < 0 && errno != ENOTSUP && errno != EOPNOTSUPP)
		die("listxattr %s: %s", path, strerror(errno));
	for (ssize_t o = 0; o < ll && n < 4096; o += (ssize_t)strlen(names + o) + 1)
		list[n++] = names + o;
	qsort(list, n, sizeof(*list), name_cmp);
	fputs(" xattrs=", f);
	for (size_t i = 0; i < n; i++) {
		ssize_t vl = opath ? getxattr(proc, list[i], val, 1 << 17)
				   : fgetxattr(fd, list[i], val, 1 << 17);

		if (vl < 0)
			die("getxattr %s %s: %s", path, list[i], strerror(errno));
		fprintf(f, "%s%s:", i ? "," : "", list[i]);
		hex(f, val, (size_t)vl);
	}
	if (!n)
		fputs("-", f);
	free(names);
	free(val);
}

/* Layout output: runs "K:offset:length", comma-separated. */
struct runs {
	FILE *f;
	bool any;
	char kind;
	uint64_t off, len;
};

static void run_put(struct runs *r, char kind, uint64_t off, uint64_t len)
{
	if (r->len && r->kind == kind && r->off + r->len == off) {
		r->len += len;
		return;
	}
	if (r->len) {
		fprintf(r->f, "%s%c:%" PRIu64 ":%" PRIu64, r->any ? "," : "", r->kind, r->off,
			r->len);
		r->any = true;
	}
	r->kind = kind;
	r->off = off;
	r->len = len;
}

/* Data extents split into D (data) and Z (4 KiB blocks of the file that
 * read as zeros), so that a comparison can tell written zeros apart. */
static void data_runs(struct runs *r, int fd, uint64_t off, uint64_t len, uint64_t size)
{
	static uint8_t buf[4096];

	while (len) {
		uint64_t n = 4096 - off % 4096;
		ssize_t got;
		bool zero = true;

		if (n > len)
			n = len;
		got = off < size ? pread(fd, buf, n, (off_t)off) : 0;
		if (got < 0)
			die("read %s: %s", path, strerror(errno));
		for (ssize_t i = 0; i < got && zero; i++)
			zero = !buf[i];
		run_put(r, zero ? 'Z' : 'D', off, n);
		off += n;
		len -= n;
	}
}

/* The layout of a regular file: FIEMAP's extents, merged by kind. */
static void dump_map(FILE *f, int fd, uint64_t size)
{
	struct fiemap *fm = calloc(1, sizeof(*fm) + 256 * sizeof(struct fiemap_extent));
	struct runs r = { .f = f };
	uint64_t start = 0;
	bool first = true;

	if (!fm)
		die("out of memory");
	fputs(" map=", f);
	for (;;) {
		bool last = false;

		memset(fm, 0, sizeof(*fm));
		fm->fm_start = start;
		fm->fm_length = FIEMAP_MAX_OFFSET - start;
		fm->fm_flags = first ? FIEMAP_FLAG_SYNC : 0;
		fm->fm_extent_count = 256;
		first = false;
		if (ioctl(fd, FS_IOC_FIEMAP, fm) < 0) {
			fputs("nofiemap", f);
			free(fm);
			return;
		}
		if (!fm->fm_mapped_extents)
			break;
		for (uint32_t i = 0; i < fm->fm_mapped_extents; i++) {
			struct fiemap_extent *e = &fm->fm_extents[i];

			if (e->fe_flags & FIEMAP_EXTENT_LAST)
				last = true;
			if (e->fe_flags & FIEMAP_EXTENT_UNWRITTEN)
				run_put(&r, 'U', e->fe_logical, e->fe_length);
			else
				data_runs(&r, fd, e->fe_logical, e->fe_length, size);
			start = e->fe_logical + e->fe_length;
		}
		if (last)
			break;
	}
	run_put(&r, 0, 0, 0);
	if (!r.any)
		fputs("-", f);
	free(fm);
}

static void dump_entry(FILE *f, int pfd, const char *name, size_t plen)
{
	struct stat st;
	int fd;

	if (fstatat(pfd, name, &st, *name ? AT_SYMLINK_NOFOLLOW : AT_EMPTY_PATH) < 0)
		die("stat %s: %s", path, strerror(errno));
	fputs("path=", f);
	hex(f, path, strlen(path));
	fprintf(f, " type=%o mode=%04o uid=%u gid=%u size=%" PRIu64 " nlink=%" PRIu64
		" ino=%" PRIu64 " rdev=%u:%u mtime=%" PRId64 ".%09ld atime=%" PRId64 ".%09ld"
		" ctime=%" PRId64 ".%09ld", (unsigned)(st.st_mode & S_IFMT) >> 12,
		(unsigned)(st.st_mode & 07777), st.st_uid, st.st_gid, (uint64_t)st.st_size,
		(uint64_t)st.st_nlink, (uint64_t)st.st_ino,
		S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? major(st.st_rdev) : 0,
		S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? minor(st.st_rdev) : 0,
		(int64_t)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (int64_t)st.st_atim.tv_sec,
		st.st_atim.tv_nsec, (int64_t)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
	if (S_ISLNK(st.st_mode)) {
		char t[8192];
		ssize_t l = readlinkat(pfd, name, t, sizeof(t));

		if (l < 0)
			die("readlink %s: %s", path, strerror(errno));
		fputs(" link=", f);
		hex(f, t, (size_t)l);
	}
	if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
		int fl = 0;
		struct fsxattr fx = { 0 };

		fd = *name ? openat(pfd, name, O_RDONLY | O_NOFOLLOW | O_NOATIME | O_NONBLOCK |
					       O_CLOEXEC) : dup(pfd);
		if (fd < 0)
			die("open %s: %s", path, strerror(errno));
		if (ioctl(fd, FS_IOC_GETFLAGS, &fl) < 0)
			fl = 0;
		if (ioctl(fd, FS_IOC_FSGETXATTR, &fx) < 0)
			fx.fsx_projid = 0;
		fprintf(f, " flags=%x projid=%u", (unsigned)fl & KEPT_FLAGS, fx.fsx_projid);
		dump_xattrs(f, fd, false);
		if (S_ISREG(st.st_mode)) {
			static uint8_t buf[1 << 16];
			struct sha s;
			char h[65];
			ssize_t n;

			sha_init(&s);
			while ((n = read(fd, buf, sizeof(buf))) > 0)
				sha_update(&s, buf, (size_t)n);
			if (n < 0)
				die("read %s: %s", path, strerror(errno));
			sha_hex(&s, h);
			fprintf(f, " sha256=%s", h);
			dump_map(f, fd, (uint64_t)st.st_size);
		}
		fputc('\n', f);
		if (S_ISDIR(st.st_mode)) {
			size_t n;
			char **names = list_dir(fd, &n);

			for (size_t i = 0; i < n; i++) {
				path_set(plen, names[i]);
				dump_entry(f, fd, names[i], plen + (plen ? 1 : 0) + strlen(names[i]));
				path[plen] = 0;
				free(names[i]);
			}
			free(names);
		}
		close(fd);
		return;
	}
	fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	fputs(" flags=0 projid=0", f);
	dump_xattrs(f, fd, true);
	fputc('\n', f);
	close(fd);
}

static void cmd_dump(const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOATIME | O_CLOEXEC);

	if (dfd < 0)
		die("%s: %s", dir, strerror(errno));
	path_set(0, "");
	dump_entry(stdout, dfd, "", 0);
	close(dfd);
	fflush(stdout);
}

/* ---- unflag ------------------------------------------------------------------------ */

static void unflag(int dfd)
{
	size_t n;
	char **names = list_dir(dfd, &n);
	int fl;

	if (ioctl(dfd, FS_IOC_GETFLAGS, &fl) == 0 && (fl & (FS_IMMUTABLE_FL | FS_APPEND_FL))) {
		fl &= ~(FS_IMMUTABLE_FL | FS_APPEND_FL);
		CHECK(ioctl(dfd, FS_IOC_SETFLAGS, &fl));
	}
	for (size_t i = 0; i < n; i++) {
		struct stat st;

		if (fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode))) {
			int fd = openat(dfd, names[i], O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
					O_CLOEXEC);

			if (fd >= 0) {
				if (S_ISDIR(st.st_mode))
					unflag(fd);
				else if (ioctl(fd, FS_IOC_GETFLAGS, &fl) == 0 &&
					 (fl & (FS_IMMUTABLE_FL | FS_APPEND_FL))) {
					fl &= ~(FS_IMMUTABLE_FL | FS_APPEND_FL);
					CHECK(ioctl(fd, FS_IOC_SETFLAGS, &fl));
				}
				close(fd);
			}
		}
		free(names[i]);
	}
	free(names);
}

/* ---- rm ------------------------------------------------------------------------------ */

static void rm_below(int dfd)
{
	size_t n;
	char **names = list_dir(dfd, &n);

	for (size_t i = 0; i < n; i++) {
		struct stat st;

		if (fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
			int fd = openat(dfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
					O_CLOEXEC);

			if (fd < 0)
				die("open %s: %s", names[i], strerror(errno));
			rm_below(fd);
			close(fd);
			CHECK(unlinkat(dfd, names[i], AT_REMOVEDIR));
		} else {
			CHECK(unlinkat(dfd, names[i], 0));
		}
		free(names[i]);
	}
	free(names);
}

/* ---- make ------------------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		p[i] = (uint8_t)rng;
	}
}

static int mkfile(int dfd, const char *name, mode_t mode)
{
	int fd = openat(dfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);

	if (fd < 0)
		die("create %s: %s", name, strerror(errno));
	CHECK(fchmod(fd, mode));
	return fd;
}

static void put(int fd, uint64_t off, size_t len, bool zeros)
{
	uint8_t *b = malloc(len);

	if (!b)
		die("out of memory");
	if (zeros)
		memset(b, 0, len);
	else
		fill_random(b, len);
	if (pwrite(fd, b, len, (off_t)off) != (ssize_t)len)
		die("pwrite: %s", strerror(errno));
	free(b);
}

static void file(int dfd, const char *name, size_t len)
{
	int fd = mkfile(dfd, name, 0644);

	put(fd, 0, len, false);
	close(fd);
}

static int mkdirfd(int dfd, const char *name, mode_t mode)
{
	int fd;

	CHECK(mkdirat(dfd, name, mode));
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		die("open %s: %s", name, strerror(errno));
	CHECK(fchmod(fd, mode));
	return fd;
}

static void xset(int fd, bool opath, const char *name, const void *v, size_t n)
{
	char proc[64];

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if ((opath ? setxattr(proc, name, v, n, 0) : fsetxattr(fd, name, v, n, 0)) < 0)
		die("setxattr %s: %s", name, strerror(errno));
}

/* A POSIX ACL in the kernel's xattr format: version 2, then (tag, perm, id). */
struct acl_ent {
	uint16_t tag, perm;
	uint32_t id;
};

#define A_USER_OBJ	0x01
#define A_USER		0x02
#define A_GROUP_OBJ	0x04
#define A_GROUP		0x08
#define A_MASK		0x10
#define A_OTHER		0x20
#define NOID		0xffffffffu

static void acl(int fd, const char *which, const struct acl_ent *e, size_t n)
{
	uint8_t b[4 + 8 * 16];
	uint32_t ver = 2;

	memcpy(b, &ver, 4);
	memcpy(b + 4, e, n * sizeof(*e));
	xset(fd, false, which, b, 4 + n * sizeof(*e));
}

static void times_at(int dfd, const char *name, int64_t msec, long mnsec, int64_t asec,
		     long ansec)
{
	struct timespec ts[2] = { { (time_t)asec, ansec }, { (time_t)msec, mnsec } };

	CHECK(utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW));
}

static void flags(int dfd, const char *name, int add, unsigned projid)
{
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC), fl = 0;

	if (fd < 0)
		die("open %s: %s", name, strerror(errno));
	if (projid) {
		struct fsxattr fx;

		CHECK(ioctl(fd, FS_IOC_FSGETXATTR, &fx));
		fx.fsx_projid = projid;
		CHECK(ioctl(fd, FS_IOC_FSSETXATTR, &fx));
	}
	if (add) {
		CHECK(ioctl(fd, FS_IOC_GETFLAGS, &fl));
		fl |= add;
		CHECK(ioctl(fd, FS_IOC_SETFLAGS, &fl));
	}
	close(fd);
}

static void cmd_make(const char *dir)
{
	static const struct acl_ent file_acl[] = {
		{ A_USER_OBJ, 6, NOID }, { A_USER, 4, 1001 }, { A_GROUP_OBJ, 4, NOID },
		{ A_GROUP, 6, 2002 }, { A_MASK, 6, NOID }, { A_OTHER, 0, NOID },
	};
	static const struct acl_ent dir_acl[] = {
		{ A_USER_OBJ, 7, NOID }, { A_USER, 5, 1001 }, { A_GROUP_OBJ, 5, NOID },
		{ A_MASK, 5, NOID }, { A_OTHER, 1, NOID },
	};
	static const struct acl_ent def_acl[] = {
		{ A_USER_OBJ, 7, NOID }, { A_USER, 7, 1003 }, { A_GROUP_OBJ, 5, NOID },
		{ A_MASK, 7, NOID }, { A_OTHER, 0, NOID },
	};
	/* VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE, permitted CAP_NET_RAW (13),
	 * as /usr/bin/ping has it */
	static const uint32_t cap[5] = { 0x02000001, 1u << 13, 0, 0, 0 };
	static const char selinux[] = "system_u:object_r:ping_exec_t:s0";
	uint8_t bin[256], *big;
	int root, d, d2, fd;

	umask(0);
	mkdir(dir, 0755);
	root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		die("%s: %s", dir, strerror(errno));

	/* contents, owners, modes */
	file(root, "plain", 100000);
	fd = mkfile(root, "setuid", 04755);
	put(fd, 0, 5000, false);
	close(fd);
	fd = mkfile(root, "owned", 0640);
	put(fd, 0, 10, false);
	CHECK(fchown(fd, 1234, 5678));
	close(fd);
	fd = mkfile(root, "setgid-owned", 02750);
	put(fd, 0, 10, false);
	CHECK(fchown(fd, 0, 50));
	CHECK(fchmod(fd, 02750));
	close(fd);
	file(root, "empty", 0);

	/* layout: holes, written zeros, preallocated ranges (also past the end) */
	fd = mkfile(root, "sparse", 0644);
	put(fd, 0, 65536, false);
	put(fd, 4 << 20, 65536, false);
	CHECK(ftruncate(fd, 8 << 20));
	close(fd);
	fd = mkfile(root, "zeros", 0644);
	put(fd, 0, 256 << 10, true);
	put(fd, 256 << 10, 4096, false);
	close(fd);
	fd = mkfile(root, "zero-blocks-in-data", 0644);
	put(fd, 0, 20000, false);
	put(fd, 20000, 40000, true);
	put(fd, 60000, 20000, false);
	close(fd);
	fd = mkfile(root, "prealloc", 0644);
	CHECK(fallocate(fd, 0, 0, 1 << 20));
	close(fd);
	fd = mkfile(root, "prealloc-mid", 0644);
	put(fd, 0, 65536, false);
	CHECK(fallocate(fd, 0, 65536, 458752));
	put(fd, 524288, 65536, false);
	close(fd);
	fd = mkfile(root, "prealloc-eof", 0644);
	put(fd, 0, 10000, false);
	CHECK(fallocate(fd, FALLOC_FL_KEEP_SIZE, 16384, 1 << 20));
	close(fd);
	fd = mkfile(root, "prealloc-empty", 0644);
	CHECK(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 65536));
	close(fd);

	/* extended attributes: every namespace, binary values, empty, the largest */
	for (int i = 0; i < 256; i++)
		bin[i] = (uint8_t)i;
	big = malloc(65536);
	if (!big)
		die("out of memory");
	fill_random(big, 65536);
	fd = mkfile(root, "xattrs", 0755);
	put(fd, 0, 3000, false);
	xset(fd, false, "user.small", "v", 1);
	xset(fd, false, "user.binary", bin, sizeof(bin));
	xset(fd, false, "user.empty", "", 0);
	xset(fd, false, "user.large", big, 65536);
	xset(fd, false, "trusted.secret", "t\0x", 3);
	xset(fd, false, "security.selinux", selinux, sizeof(selinux));
	xset(fd, false, "security.capability", cap, sizeof(cap));
	close(fd);
	free(big);
	d = mkdirfd(root, "xdir", 0750);
	xset(d, false, "user.d", "dir value", 9);
	xset(d, false, "trusted.d", bin, 17);
	file(d, "inside", 100);
	close(d);
	CHECK(symlinkat("plain", root, "xlink"));
	fd = openat(root, "xlink", O_PATH | O_NOFOLLOW | O_CLOEXEC);
	CHECK(fd);
	xset(fd, true, "trusted.l", "on a symlink", 12);
	xset(fd, true, "security.selinux", selinux, sizeof(selinux));
	close(fd);

	/* POSIX ACLs: access on a file and a folder, a default one that a file
	 * created under it inherits */
	fd = mkfile(root, "acl-file", 0640);
	put(fd, 0, 10, false);
	acl(fd, "system.posix_acl_access", file_acl, 6);
	close(fd);
	d = mkdirfd(root, "acl-dir", 0750);
	acl(d, "system.posix_acl_access", dir_acl, 5);
	acl(d, "system.posix_acl_default", def_acl, 5);
	file(d, "inherited", 10);
	d2 = mkdirfd(d, "sub", 0750);
	close(d2);
	close(d);

	/* names and targets as bytes; a path longer than PATH_MAX */
	file(root, "\xff\xfe-not-utf8", 10);
	d = mkdirfd(root, "caf\xe9", 0755);
	file(d, "new\nline \\ and\ttab", 10);
	close(d);
	CHECK(symlinkat("\xc3\x28 target not utf-8", root, "bad-target"));
	CHECK(symlinkat("/absolute/../elsewhere", root, "abs-target"));
	d = dup(root);
	CHECK(mkdirat(root, "deep", 0755));
	close(d);
	d = openat(root, "deep", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	for (int lvl = 0; lvl < 24; lvl++) {
		char name[256];

		memset(name, 'a' + lvl % 26, 200);
		snprintf(name + 200, 56, "-%02d", lvl);
		d2 = mkdirfd(d, name, 0755);
		close(d);
		d = d2;
	}
	file(d, "bottom", 5000);
	CHECK(symlinkat("../bottom", d, "link-at-bottom"));
	fd = openat(d, "bottom", O_RDONLY | O_CLOEXEC);
	xset(fd, false, "user.deep", "yes", 3);
	close(fd);
	close(d);

	/* times: before 1970 with fractions, after 2262, near ext4's end (2446) */
	file(root, "time-1960", 1);
	times_at(root, "time-1960", -315619200, 123456789, -2145916800, 999999999);
	file(root, "time-2300", 1);
	times_at(root, "time-2300", 10413792000, 500000000, 10413792001, 1);
	file(root, "time-2440", 1);
	times_at(root, "time-2440", 14831769600, 7, 0, 0);
	CHECK(symlinkat("time-1960", root, "time-link"));
	times_at(root, "time-link", 915148800, 42, 915148801, 43);

	/* special files */
	CHECK(mkfifoat(root, "fifo", 0620));
	CHECK(mknodat(root, "null-dev", S_IFCHR | 0666, makedev(1, 3)));
	CHECK(mknodat(root, "big-dev", S_IFBLK | 0600, makedev(259, 65541)));
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int s = socket(AF_UNIX, SOCK_STREAM, 0), cwd = open(".", O_RDONLY | O_CLOEXEC);

		CHECK(s);
		CHECK(fchdir(root));
		strcpy(sa.sun_path, "sock");
		CHECK(bind(s, (struct sockaddr *)&sa, sizeof(sa)));
		CHECK(fchmodat(root, "sock", 0640, 0));
		close(s);
		CHECK(fchdir(cwd));
		close(cwd);
	}

	/* hard links across folders; one group immutable, with attributes */
	d = mkdirfd(root, "links", 0755);
	d2 = mkdirfd(root, "other", 0755);
	file(d, "a", 4000);
	CHECK(linkat(d, "a", d2, "b", 0));
	CHECK(linkat(d, "a", d, "c", 0));
	file(d, "frozen", 3000);
	fd = openat(d, "frozen", O_RDONLY | O_CLOEXEC);
	xset(fd, false, "user.frozen", "1", 1);
	close(fd);
	CHECK(linkat(d, "frozen", d2, "frozen-too", 0));
	close(d2);

	/* empty folders */
	mkdirfd(root, "empty-dir", 0700);
	d = mkdirfd(root, "empty-with-acl", 0755);
	acl(d, "system.posix_acl_default", def_acl, 5);
	close(d);

	/* inode flags and project ids, set last (immutable forbids the rest) */
	file(root, "flag-dAS", 100);
	flags(root, "flag-dAS", FS_NODUMP_FL | FS_NOATIME_FL | FS_SYNC_FL, 0);
	file(root, "projid", 100);
	flags(root, "projid", 0, 77);
	d = mkdirfd(root, "proj-dir", 0755);
	flags(root, "proj-dir", FS_PROJINHERIT_FL, 42);
	file(d, "inherits", 100);
	close(d);
	d = mkdirfd(root, "idir", 0755);
	file(d, "in-immutable-dir", 100);
	close(d);
	d = mkdirfd(root, "adir", 0755);
	file(d, "in-append-dir", 100);
	close(d);
	file(root, "flag-a", 100);
	file(root, "flag-i", 100);
	d = openat(root, "links", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	flags(d, "frozen", FS_IMMUTABLE_FL, 0);
	close(d);
	flags(root, "flag-a", FS_APPEND_FL, 0);
	flags(root, "flag-i", FS_IMMUTABLE_FL, 0);
	flags(root, "adir", FS_APPEND_FL, 0);
	flags(root, "idir", FS_IMMUTABLE_FL, 0);

	/* folders' times last (making entries in them moved their mtimes) */
	times_at(root, "caf\xe9", -618105600, 250000000, -618105600, 750000000);
	times_at(root, "empty-dir", 10413792000, 1, 10413792000, 2);
	close(root);
}

/* ---- deep -------------------------------------------------------------------------- */

static void cmd_deep(const char *dir, unsigned long len)
{
	int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), d2;
	unsigned long have = 0;
	char name[256];

	if (d < 0) {
		CHECK(mkdir(dir, 0755));
		d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	memset(name, 'd', 250);
	name[250] = 0;
	while (have <= len) {
		d2 = mkdirfd(d, name, 0755);
		close(d);
		d = d2;
		have += 251;
	}
	file(d, "beyond", 10);
	close(d);
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "make"))
		cmd_make(argv[2]);
	else if (argc == 3 && !strcmp(argv[1], "dump"))
		cmd_dump(argv[2]);
	else if (argc == 3 && !strcmp(argv[1], "unflag")) {
		int fd = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (fd < 0)
			die("%s: %s", argv[2], strerror(errno));
		unflag(fd);
		close(fd);
	} else if (argc == 3 && !strcmp(argv[1], "rm")) {
		int fd = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (fd < 0)
			die("%s: %s", argv[2], strerror(errno));
		unflag(fd);
		rm_below(fd);
		close(fd);
		CHECK(rmdir(argv[2]));
	} else if (argc == 4 && !strcmp(argv[1], "deep"))
		cmd_deep(argv[2], strtoul(argv[3], NULL, 0));
	else
		die("usage: fstree make|dump|unflag|rm DIR, fstree deep DIR BYTES");
	return 0;
}
