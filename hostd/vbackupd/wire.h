/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Parsing and checking of request payloads.  Every length, count, offset and
 * name from a guest is checked here, once; the rest of vbackupd relies on
 * the parsed structures.  Functions return VB_S_OK or a VB_S_* status with a
 * message in msg.  No global state: the fuzzer calls these directly.
 */
#ifndef VBD_WIRE_H
#define VBD_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vbackup/protolib.h"

#define VBD_MSG 512

bool vbd_check_path(const char *p, size_t n, bool allow_root, char *why, size_t why_len);
bool vbd_check_name(const char *p, size_t n);   /* target / serial: printable, no '/' */

struct vbd_begin {
    uint8_t kind, mode;
    uint32_t flags;
    char target[VB_MAX_TARGET + 1];
    uint16_t n_disks, n_roots;
    char serials[VB_MAX_DISKS][VB_MAX_SERIAL + 1];
    char *roots[VB_MAX_ROOTS];    /* malloc'd */
    uint64_t n_files_hint, bytes_hint;
    /* VB_BEGIN_HOST_MAP: the map section (proto.h) */
    uint16_t n_fs, n_prune, n_exclude;
    struct vb_map_fs fs[VB_MAX_ROOTS];
    uint16_t root_fs[VB_MAX_ROOTS];
    char *inside[VB_MAX_ROOTS];   /* malloc'd: the roots' paths inside their file systems */
    char **prune;                 /* malloc'd, n_prune */
    char **exclude;               /* malloc'd, n_exclude */
};
int vbd_parse_begin(const uint8_t *p, size_t n, struct vbd_begin *out, char *msg);
void vbd_begin_clear(struct vbd_begin *b);

struct vbd_prec {                  /* one parsed file record */
    struct vb_rec r;               /* path, link, xattrs point into the payload */
    struct vb_extent *ext;         /* malloc'd copy in host order, n = r.n_extents */
};

struct vbd_files_ctx {
    unsigned n_disks;
    const uint64_t *disk_sizes;    /* per disk index */
    const char *const *disk_names;
    uint64_t files_left;           /* files the job may still take */
    /* previous record of the job (for VB_FD_MORE) */
    const char *prev_path;
    size_t prev_path_len;
    bool prev_can_continue;        /* previous record was a regular file or MORE */
    bool prev_mapped;              /* ... whose data is read from the disk (EXTENTS) */
    uint64_t prev_ext_end;         /* logical end of the previous extents */
    uint64_t prev_disk;
};

struct vbd_files {
    uint64_t job;
    uint32_t n;
    struct vbd_prec *recs;         /* malloc'd */
};
int vbd_parse_files(const uint8_t *p, size_t n, const struct vbd_files_ctx *ctx,
                    struct vbd_files *out, char *msg);
void vbd_files_clear(struct vbd_files *f);
/* peek the job id of a FILES payload (so the caller can build the context) */
int vbd_peek_job(const uint8_t *p, size_t n, uint64_t *job, char *msg);

struct vbd_problem {               /* points into the payload */
    const char *path, *reason;
    size_t path_len, reason_len;
};

struct vbd_problems {
    uint64_t job;
    uint32_t n;
    struct vbd_problem *items;     /* malloc'd */
};
int vbd_parse_problems(const uint8_t *p, size_t n, struct vbd_problems *out, char *msg);
void vbd_problems_clear(struct vbd_problems *pr);

struct vbd_data {
    uint64_t job, file, offset;
    uint32_t len, flags;
    const uint8_t *bytes;
};
int vbd_parse_data(const uint8_t *p, size_t n, struct vbd_data *out, char *msg);

int vbd_parse_job_ref(const uint8_t *p, size_t n, uint64_t *job, char *msg);

struct vbd_list {
    uint32_t start;
    char target[VB_MAX_TARGET + 1];
};
int vbd_parse_list(const uint8_t *p, size_t n, struct vbd_list *out, char *msg);

struct vbd_restore_begin {
    char target[VB_MAX_TARGET + 1];
    char snapshot[VB_MAX_SNAPSHOT_ID + 1];
    uint16_t n_paths;
    char **paths;                  /* malloc'd */
};
int vbd_parse_restore_begin(const uint8_t *p, size_t n, struct vbd_restore_begin *out, char *msg);
void vbd_restore_begin_clear(struct vbd_restore_begin *r);

int vbd_parse_restore_list(const uint8_t *p, size_t n, uint64_t *job, uint64_t *start, char *msg);
int vbd_parse_restore_read(const uint8_t *p, size_t n, struct vb_restore_read *out, char *msg);
int vbd_parse_hello(const uint8_t *p, size_t n, struct vb_hello *out, char *msg);

const char *vb_op_name(unsigned type);
const char *vb_status_name(int status);

/* Frame header check: VB_S_OK, or an error status (then the connection is
 * not trustworthy unless the status is VB_S_BAD_REQUEST). */
int vbd_check_header(const struct vb_hdr *h, char *msg);

#endif
