/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Snapshot manifests of a version 2 repository (docs/repository-v2.md,
 * "Manifests"): one JSON schema, built and checked here and nowhere else.
 * A manifest is sealed with the associated data "vbackup manifest" (or
 * followed by a CRC-32 in unencrypted repositories) and stored as
 * snapshots/<32 random hex>; the user-facing id stays "<vm>/<UTC time>"
 * (with "-2", "-3"... when one VM has two snapshots in one second).
 *
 * What gc needs from a manifest is in its streams: "chunks" is a stream of
 * 32-byte chunk ids (all zero: a hole), the data chunks the snapshot
 * references; every stream's blobs are meta blobs it references.  A disk
 * snapshot's chunks stream is its chunk list (chunk i of the disk at
 * position i); a files snapshot's lists the chunks its catalog refers to,
 * and its catalog stream is the caller's own format.
 */
#ifndef VB_REPO_MANIFEST_H
#define VB_REPO_MANIFEST_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "stream.h"
#include "util.h"

#define VB_MANIFEST_FORMAT   2
#define VB_MANIFEST_MAX      (64u << 20)  /* stored bytes */
#define VB_SNAP_ID_MAX       96           /* "<vm 64>/<time 20>-<n>" and a NUL */
#define VB_MF_ROOTS_MAX      4096
#define VB_MF_TEXT_MAX       4096         /* group, mode, disk name, a root */
#define VB_MF_FREE_DEPTH     4            /* nesting of source, notes */

enum vb_mf_type { VB_MF_DISK = 1, VB_MF_FILES = 2 };

struct vb_manifest {
    char object[33];             /* 32 hex: the object snapshots/<object> */
    char id[VB_SNAP_ID_MAX];     /* "<vm>/<UTC time>[-n]" */
    char vm[65];
    enum vb_mf_type type;
    int64_t created_ns;          /* >= 0 */
    char *group;                 /* retention group inside the VM; "" when none */
    char *mode;                  /* how it was made ("full", "incremental"...); may be "" */
    char *parent;                /* a snapshot id, or NULL */
    char *dedup_group;           /* NULL: the repository's default id key */
    json_object *source;         /* caller-defined object (never NULL once parsed) */
    json_object *notes;          /* caller-defined object */
    json_object *stats;          /* names -> non-negative numbers */
    struct {                     /* type disk */
        char *name;
        uint64_t size;
        uint32_t chunk_size;     /* a power of two, 4 KiB .. 16 MiB */
        uint64_t chunk_count;    /* ceil(size / chunk_size) */
    } disk;
    struct {                     /* type files */
        char **roots;
        size_t nroots;
        uint64_t entries;
        uint64_t bytes;
    } files;
    struct vb_stream_ref chunks;  /* 32-byte ids; disk: chunk_count of them */
    struct vb_stream_ref catalog; /* files only */
};

struct vb_manifest *vb_manifest_new(void);
void vb_manifest_free(struct vb_manifest *m);

/* "<vm>/<UTC time of created_ns, seconds>" and "-n" for n >= 2 into out
 * (VB_SNAP_ID_MAX bytes).  -EINVAL for an invalid VM name. */
int vb_snap_id_make(const char *vm, int64_t created_ns, unsigned n, char *out, vb_error *e);
/* The shape of a v2 snapshot id: a valid VM name, '/', an RFC 3339 UTC time
 * to the second ("2026-11-25T13:45:00Z"), optionally "-n" (2..99999). */
bool vb_snap_id_valid(const char *id);

/* The manifest as JSON (a new reference), checked first; NULL and e set when
 * a field is out of range. */
json_object *vb_manifest_to_json(const struct vb_manifest *m, vb_error *e);
/* Check and convert JSON (as vb_manifest_to_json makes it). name names it
 * in errors.  Unknown members are ignored. */
int vb_manifest_from_json(json_object *j, const char *name, struct vb_manifest **out,
                          vb_error *e);

/* The stored bytes of m (*out: free()), checked as a reader checks them. */
int vb_manifest_seal(const struct vb_keys *k, const struct vb_manifest *m, uint8_t **out,
                     size_t *len, vb_error *e);
/*
 * Open stored bytes of the object snapshots/<object> (object: 32 hex, or
 * NULL not to compare).  -EBADMSG names what is wrong: the seal or CRC, not
 * JSON, a field's type or range, an object id that is not the object's name.
 * -EPROTONOSUPPORT for a format other than 2.
 */
int vb_manifest_open(const struct vb_keys *k, const uint8_t *stored, size_t len,
                     const char *object, struct vb_manifest **out, vb_error *e);

#endif
