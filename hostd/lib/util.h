/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Small shared helpers: errors with a reason, sizes, hex, files. */
#ifndef VB_UTIL_H
#define VB_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VB_MIN(a, b) ((a) < (b) ? (a) : (b))
#define VB_MAX(a, b) ((a) > (b) ? (a) : (b))
#define VB_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define VB_ALIGN_UP(x, a) (((x) + (a) - 1) / (a) * (a))

/*
 * Functions return 0 or a negative errno; where a reason helps the user they
 * also fill a vb_error (when one is passed).  Text stays in the error until
 * the edge (a CLI message, a reply to a guest) prints it.
 */
typedef struct vb_error {
    int code;           /* negative errno, 0 when unset */
    char msg[512];
} vb_error;

/* Set e (if non-NULL) from a printf format; returns code (a negative errno). */
int vb_seterr(vb_error *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefix an existing message: "prefix: old message". */
void vb_prefixerr(vb_error *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The message, or strerror(-code) when none was set. */
const char *vb_strerror(const vb_error *e);

/* "1.5 GiB" style; buf at least 32 bytes. */
const char *vb_fmt_bytes(uint64_t n, char *buf, size_t len);
/* "12:03" / "1:02:03" style. */
const char *vb_fmt_duration(double seconds, char *buf, size_t len);

void vb_hex(const uint8_t *in, size_t n, char *out /* 2n+1 */);
int vb_unhex(const char *in, uint8_t *out, size_t n);  /* 0 or -EINVAL */

/* Set by a signal handler to stop long operations cleanly (-EINTR). */
#include <signal.h>
extern volatile sig_atomic_t vb_interrupted;
void vb_install_interrupt_handlers(void);

/* Monotonic and wall time. */
double vb_now(void);          /* CLOCK_MONOTONIC seconds */
int64_t vb_wall_ns(void);     /* CLOCK_REALTIME nanoseconds */
/* RFC 3339 UTC "2026-11-25T13:45:00Z". */
void vb_fmt_time(int64_t ns, char *buf, size_t len);
/* the same with nanoseconds: 1969-12-31T23:59:58.500000000Z */
void vb_fmt_time_ns(int64_t ns, char *buf, size_t len);
/* the same from seconds and nanoseconds: any year gmtime_r knows */
void vb_fmt_timespec(int64_t sec, uint32_t nsec, char *buf, size_t len);
int vb_parse_time(const char *s, int64_t *ns);

/* read/write all, retrying EINTR and short transfers. */
int vb_pread_all(int fd, void *buf, size_t len, uint64_t off);   /* -EIO on EOF */
int vb_write_all(int fd, const void *buf, size_t len);
int vb_fsync_dir(const char *dir);
int vb_fsync_dirfd(int dirfd);
/*
 * Write a file crash-safely: temp name in the same folder, fsync, rename (or
 * link without replacing, when exclusive), fsync the folder.
 * exclusive: -EEXIST when path exists.
 */
int vb_write_file_atomic(const char *path, const void *data, size_t len,
                         bool exclusive, vb_error *e);
int vb_read_file(const char *path, char **data, size_t *len, size_t max, vb_error *e);
/* The same from an open file (closed either way); name is for messages. */
int vb_read_fd(int fd, const char *name, char **data, size_t *len, size_t max, vb_error *e);
int vb_mkdir_p(const char *path, mode_t mode);
/* Remove name (file or folder tree) under the folder parent; -errno. */
int vb_rm_rf_at(int parent, const char *name);

/* A name usable as one path component: [A-Za-z0-9._-]{1,64}, not starting with '.' */
bool vb_valid_name(const char *s);

/*
 * Whether N bytes of S are plain text: valid UTF-8 without a control
 * character, i.e. vb_escape (escape.h) would change nothing in them but
 * spaces and backslashes.  Text composed on the host around escaped guest
 * bytes (a job's reason, a log line) is written as it is when plain and
 * through vb_escape, whole, when not.
 */
bool vb_text_plain(const char *s, size_t n);

/* Parse "4M", "1G", "512", "64k" (binary units). */
int vb_parse_size(const char *s, uint64_t *out);

/* True when every byte of buf is zero (fast). */
bool vb_is_zero(const void *buf, size_t len);

#endif
