/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Changed-block tracking (docs/cbt.md).  Between two backups a VM's disk
 * runs on a qcow2 overlay made at the instant of the last backup: the
 * overlay's own allocated (and zero) subclusters are exactly what the
 * guest wrote since, and the image under it holds exactly what that backup
 * read.  A *tracking record* binds the two:
 *
 *   STATE_DIR/cbt/VM/DISK.json
 *     image, format, chain   the disk's own image and the files under it,
 *                            with their identities (device, inode, size,
 *                            mtime) taken after the last backup folded the
 *                            previous overlay into the image and synced it
 *     overlay                the tracking overlay (its device and inode)
 *     basis                  the snapshot (and repository) whose content the
 *                            image holds; set once that snapshot is committed
 *     state                  "ready" (bound to basis) or "pending"
 *
 * The record proves "disk now = basis with the overlay's clusters
 * replaced" when it is ready, the disk runs on that overlay over exactly
 * that chain with the same identities and size, and the basis is the newest
 * backup of the disk in the repository.  Anything else is a full read with
 * the reason.  This file holds the record and those checks (pure), and
 * turns an overlay's map into the change set a backup reads.
 */
#ifndef VB_CBT_H
#define VB_CBT_H

#include <glib.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "image.h"
#include "util.h"

#define VB_CBT_VERSION 1

/* What tells that a file was written: device, inode, size, mtime. */
struct vb_file_id {
    uint64_t dev, ino, size;
    int64_t mtime_ns;
};

int vb_file_id_get(const char *path, struct vb_file_id *id, vb_error *e);
bool vb_file_id_same(const struct vb_file_id *a, const struct vb_file_id *b);

struct vb_cbt_record {
    char *vm, *disk;         /* the VM and the disk's name (its serial) */
    char *image;             /* the disk's own image (real path) */
    char *format;            /* its format */
    char *overlay;           /* the tracking overlay QEMU runs the disk on (real path) */
    char *previous;          /* the overlay before it while a rotation is under way, or NULL */
    bool ready;              /* bound to basis: the change set is proven */
    uint64_t job;            /* the vbackupd job that made the overlay; 0: vbackupctl */
    uint64_t size;           /* virtual size of the disk */
    uint64_t overlay_dev, overlay_ino;
    unsigned n_chain;        /* the image and every file under it, image first */
    char **chain;
    struct vb_file_id *ids;
    char *basis_repo;        /* ready: the repository (real path) */
    char *basis;             /* ready: the snapshot the image holds */
    int64_t written_ns;      /* when the record was written (information) */
    char *boot_id;           /* the host's boot when it was written (information) */
};

void vb_cbt_free(struct vb_cbt_record *r);
struct vb_cbt_record *vb_cbt_copy(const struct vb_cbt_record *r);
json_object *vb_cbt_to_json(const struct vb_cbt_record *r);
/* NULL with e set when o is not a complete record of this version. */
struct vb_cbt_record *vb_cbt_from_json(json_object *o, vb_error *e);

/* STATE_DIR/cbt/VM/DISK.json (a disk name that is not a file name is hex
 * encoded, "x-..."); -ENAMETOOLONG if it does not fit. */
int vb_cbt_path(const char *state_dir, const char *vm, const char *disk, char *out,
                size_t len);
/* -ENOENT when the disk has no record; -EINVAL (e says why) when it is damaged. */
int vb_cbt_load(const char *state_dir, const char *vm, const char *disk,
                struct vb_cbt_record **out, vb_error *e);
/* Crash-safe (temporary file, fsync, rename, fsync the folder); stamps
 * written_ns and boot_id. */
int vb_cbt_save(const char *state_dir, struct vb_cbt_record *r, vb_error *e);
int vb_cbt_forget(const char *state_dir, const char *vm, const char *disk, vb_error *e);

/* Whether path (a real path) is the record's overlay or the one before it. */
bool vb_cbt_names_overlay(const struct vb_cbt_record *r, const char *path);

/* The chain a backup reads, top first, as found on the host. */
struct vb_cbt_chain {
    unsigned n;
    const char *const *files;        /* real paths */
    const struct vb_file_id *ids;
    uint64_t size;                   /* virtual size of the top */
    bool top_is_qcow2;
};

/* Whether r proves that everything the disk holds beyond its basis is in
 * the top layer of c.  false: why says what does not hold (no host paths). */
bool vb_cbt_chain_proves(const struct vb_cbt_record *r, const struct vb_cbt_chain *c,
                         char *why, size_t len);

/* The repository side. */
struct vb_cbt_repo_facts {
    const char *repo;                /* real path of the repository written to */
    const char *newest;              /* the newest disk snapshot of the disk there, or NULL */
    uint64_t newest_size;            /* its virtual size */
    uint32_t newest_chunk_size;
};

bool vb_cbt_basis_proves(const struct vb_cbt_record *r, const struct vb_cbt_repo_facts *f,
                         char *why, size_t len);

/* ---- the change set ------------------------------------------------------------------- */

struct vb_cbt_range {
    uint64_t off, len;
};

/* The changes split by chunk: ranges[first[i] .. first[i] + count[i]) lie
 * in chunk i, ascending, none crossing a chunk boundary. */
struct vb_cbt_plan {
    uint64_t n_chunks;
    uint32_t chunk_size;
    uint32_t *first, *count;
    GArray *ranges;          /* struct vb_cbt_range */
    uint64_t bytes;          /* changed bytes */
    uint64_t runs;           /* maximal runs of changed bytes */
    uint64_t chunks_changed;
};

/* What the top layer of img holds of its own (data, compressed or zero
 * (sub)clusters), in ascending order, neighbours merged: appended to
 * ranges (struct vb_cbt_range). */
int vb_cbt_changes(struct vb_image *img, GArray *ranges, vb_error *e);
/* Split ascending, non-overlapping ranges inside [0, size) by chunk.
 * -EINVAL when they are not. */
int vb_cbt_plan_build(const GArray *ranges, uint64_t size, uint32_t chunk_size,
                      struct vb_cbt_plan *p);
void vb_cbt_plan_clear(struct vb_cbt_plan *p);

/* The chain of an image as its headers give it (top first): real paths,
 * identities, the top's virtual size and format. */
struct vb_cbt_found {
    unsigned n;
    char *files[VB_MAX_CHAIN];
    struct vb_file_id ids[VB_MAX_CHAIN];
    uint64_t size;
    bool top_is_qcow2;
};

int vb_cbt_find_chain(const char *image, const struct vb_image_opts *io,
                      struct vb_cbt_found *f, vb_error *e);
void vb_cbt_found_clear(struct vb_cbt_found *f);
bool vb_cbt_found_same(const struct vb_cbt_found *a, const struct vb_cbt_found *b);
struct vb_cbt_chain vb_cbt_found_chain(const struct vb_cbt_found *f);

/* Whether another process holds a lock on path as QEMU does on the images it
 * runs (OFD locks on bytes 100..299): 1 yes, 0 no, or -errno. */
int vb_image_in_use(const char *path);

#endif
