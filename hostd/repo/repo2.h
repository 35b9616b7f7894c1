/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The version 2 repository engine (docs/repository-v2.md): create and open,
 * write sessions, snapshot reads, maintenance.  The one door to a v2
 * repository; nothing above it knows packs, index files or object names.
 *
 * Callers still use the version 1 code (hostd/lib/repo.h, session.h) until
 * they move behind this door; the write session here has the same shape as
 * v1's (begin / put / has / commit / abort, reference counted), with metadata
 * written as streams and the snapshot described by a manifest (manifest.h).
 *
 * Errors are negative errno with a message in e naming the call and the
 * object.  Every function may be called from several threads on one
 * struct vb2_repo, except create, open and close.
 */
#ifndef VB_REPO_REPO2_H
#define VB_REPO_REPO2_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "chunk.h"
#include "crypto.h"
#include "keyfile.h"
#include "manifest.h"
#include "pack.h"
#include "store.h"
#include "stream.h"
#include "util.h"

#define VB2_FILE_AVG_DEFAULT   (1u << 20)     /* content-defined chunks of files */
#define VB2_DISK_CHUNK_DEFAULT (4u << 20)     /* fixed chunks of disks */
#define VB2_ZSTD_DEFAULT       1      /* as format 1: docs/repository-v2.md, "Config" */

struct vb2_repo;
struct vb2_write;

/* ---- create and open ---------------------------------------------------------------- */

struct vb2_create_opts {
    enum vb_aead encryption;         /* VB_AEAD_NONE: no secret needed */
    const struct vb_secret *secret;  /* the first key file's password or raw key */
    const struct vb_kdf_params *kdf; /* NULL: the defaults */
    uint32_t file_avg;               /* 0: VB2_FILE_AVG_DEFAULT (power of two, 64 KiB-4 MiB) */
    uint32_t disk_chunk;             /* 0: VB2_DISK_CHUNK_DEFAULT (power of two, 64 KiB-16 MiB) */
    int zstd_level;                  /* 0: VB2_ZSTD_DEFAULT (1..19) */
    uint32_t pack_target;            /* 0: VB_PACK_TARGET (1 MiB..512 MiB) */
    const char *const *store_opts;   /* the store's options (vb2_open_opts.store_opts) */
};

/*
 * A new repository at location (a folder, created when missing; it must not
 * hold a repository yet).  Writes keys/<id> (encrypted) and then config,
 * the last step: a repository without config is none.
 */
int vb2_repo_create(const char *location, const struct vb2_create_opts *o, vb_error *e);

struct vb2_open_opts {
    const struct vb_secret *secret;  /* encrypted repositories: tried on every key file */
    const char *cache_dir;           /* NULL: vb_cache_dir()'s default */
    bool readonly;                   /* refuse every write */
    unsigned upload_threads;         /* packs uploaded at once per session (0: 2) */
    unsigned read_threads;           /* parallel gets (0: 4) */
    /* leases (0: the defaults of lease.h); tests shorten them */
    int64_t lease_expiry_ns, lease_refresh_ns, lease_margin_ns;
    /* records per index file written (0: VB_INDEX_FILE_RECORDS); a session
     * writes one as soon as it has this many (tests lower it) */
    unsigned index_file_records;
    /* the store's options ("key=value", NULL-terminated; NULL: none): an
     * s3:// location's endpoint, region, credentials_file, ... (store.h,
     * vb_store_open_opts); a folder takes none */
    const char *const *store_opts;
};

/*
 * Open a repository.  Clear errors: -ENOENT "not a vbackup repository" (no
 * config), -EPROTONOSUPPORT for a version 1 repository or an unknown
 * format, -ENOKEY when it is encrypted and no secret was given, -EACCES
 * "wrong password or key", -EBADMSG for a damaged config or key file.
 */
int vb2_repo_open(const char *location, const struct vb2_open_opts *o, struct vb2_repo **out,
                  vb_error *e);
/*
 * Open a repository, and only when it is encrypted read its secret: the raw
 * key file key_file, else the password in password_file, else in the file
 * $VBACKUP_PASSWORD_FILE names, else typed on a terminal (keyfile.h).  o
 * may be NULL (the defaults); its secret is ignored.  Secrets never come
 * from a command line.
 */
int vb2_repo_open_asking(const char *location, const struct vb2_open_opts *o,
                         const char *password_file, const char *key_file,
                         struct vb2_repo **out, vb_error *e);
/* Whether location names a version 2 repository: s3://..., or a folder
 * holding a config object (no secret needed to tell). */
bool vb2_is_repository(const char *location);
/* The same on a store already opened (tests, other backends); it is closed
 * with the repository, or on failure.  location names it in messages. */
int vb2_repo_open_store(struct vb_store *s, const char *location,
                        const struct vb2_open_opts *o, struct vb2_repo **out, vb_error *e);
void vb2_repo_close(struct vb2_repo *r);

struct vb2_repo_info {
    char id[33];                     /* repository id, hex */
    enum vb_aead encryption;
    uint32_t file_avg, disk_chunk, meta_avg;
    int zstd_level;
    uint32_t pack_target;
    const char *cache_dir;
};
void vb2_repo_info(const struct vb2_repo *r, struct vb2_repo_info *info);
/* The store underneath (tests, maintenance tools). */
struct vb_store *vb2_repo_store(struct vb2_repo *r);

/* The id key of a dedup group (NULL or "": the repository's). */
int vb2_group_key(struct vb2_repo *r, const char *group, uint8_t key[VB_KEY_LEN], vb_error *e);

/* ---- key files (keys.c) ------------------------------------------------------------------ */

struct vb2_key {
    char id[33];                     /* keys/<id> */
    bool current;                    /* the one this repository was opened with */
    bool damaged;                    /* unreadable: info is empty */
    struct vb_keyfile_info info;
};
/* Every key file (a GArray of struct vb2_key; none when unencrypted). */
int vb2_key_list(struct vb2_repo *r, GArray **out, vb_error *e);
/* A key file for secret s, wrapping the master key this open unlocked (kdf
 * NULL: the defaults).  id_out (33 bytes, may be NULL) gets its id.  -EPERM
 * on an unencrypted repository. */
int vb2_key_add(struct vb2_repo *r, const struct vb_secret *s, const struct vb_kdf_params *kdf,
                char id_out[33], vb_error *e);
/* Remove the key file whose id starts with id (4..32 hex; unique).  Refused
 * (-EBUSY) for the key this open used and for the last key. */
int vb2_key_remove(struct vb2_repo *r, const char *id, vb_error *e);

/* ---- write sessions -------------------------------------------------------------------- */

struct vb2_write_opts {
    const char *vm;                  /* the snapshot's VM (shared: NULL) */
    const char *dedup_group;         /* NULL: the repository's id key */
    bool shared;                     /* several snapshots, of several VMs, commit from it
                                      * (vb2_write_commit_one) */
};

/*
 * Begin: create a lease, read the condemned lists (a list that vanished
 * meanwhile: start again), bring the index cache up to date, start the
 * upload threads and the lease timer.
 */
int vb2_write_begin(struct vb2_repo *r, const struct vb2_write_opts *o, struct vb2_write **out,
                    vb_error *e);
struct vb2_write *vb2_write_ref(struct vb2_write *w);
/* The last unref aborts a session that never ended and frees it. */
void vb2_write_unref(struct vb2_write *w);

/*
 * Store len bytes (at most VB_BLOB_MAX) as a blob of type t; id gets its
 * keyed id.  1 when this call stored it (*stored: bytes it adds to a
 * pack, may be NULL), 0 when the session or the index has it already (in a
 * pack that is not condemned).  Thread-safe; c is the caller's (one per
 * thread).  -ECANCELED once the session ended.  A failed put fails the
 * session: its commit is refused.
 */
int vb2_write_put(struct vb2_write *w, struct vb_codec *c, enum vb_blob_type t,
                  const void *data, size_t len, uint8_t id[VB_HASH_LEN], uint32_t *stored,
                  vb_error *e);
/*
 * The same with a budget of the caller's instead of the session's (each job
 * of a shared session has its own; NULL charge: none).  A refusal fails
 * only this put in a shared session (nothing was added), the session too
 * otherwise.
 */
struct vb2_budget {
    int (*charge)(void *opaque, int64_t bytes, vb_error *e);
    void *opaque;
};
int vb2_write_put_budget(struct vb2_write *w, struct vb_codec *c, enum vb_blob_type t,
                         const void *data, size_t len, uint8_t id[VB_HASH_LEN],
                         uint32_t *stored, const struct vb2_budget *b, vb_error *e);
/* Whether the blob exists for this session: stored by it, or in the index in
 * a pack that is not condemned.  For chunks referenced without their data. */
bool vb2_write_has(struct vb2_write *w, const uint8_t id[VB_HASH_LEN]);
/* The keyed id this session gives data (no store). */
int vb2_write_id(struct vb2_write *w, const void *data, size_t len, uint8_t id[VB_HASH_LEN]);

/* A metadata stream: whole, or piece by piece (the writer puts meta blobs
 * through this session with codec c; free it with vb_stream_writer_free). */
int vb2_write_stream(struct vb2_write *w, struct vb_codec *c, const void *data, size_t len,
                     struct vb_stream_ref *out, vb_error *e);
struct vb_stream_writer *vb2_write_stream_new(struct vb2_write *w, struct vb_codec *c);

/*
 * Commit: flush the open packs, wait for every upload, write the session's
 * index file(s), sync the store, then put the manifest (NOREPLACE, synced):
 * the commit point.  m is completed here: object (random), vm, id
 * ("<vm>/<time>[-n]" from created_ns, or the session's start when 0; an id
 * the caller set is kept, or refused with -EEXIST when a snapshot has it:
 * copies keep their ids), dedup_group.  *id_out (may be NULL; free()) gets the snapshot id.  Refused
 * (nothing visible) when a put failed, an abort came first, or the lease
 * may have expired (-ESTALE).  The session has ended either way.
 */
int vb2_write_commit(struct vb2_write *w, struct vb_manifest *m, char **id_out, vb_error *e);
/* End without a snapshot; a no-op once ended.  Safe from any thread. */
void vb2_write_abort(struct vb2_write *w);

/*
 * A shared session (opts.shared): commit m, a snapshot of vm, with every
 * blob put before this call, and go on.  New puts wait while the ones
 * running finish (a blob another put was storing is in a pack then), the
 * open packs are uploaded, an index file names what was uploaded since the
 * last commit, the store is synced, then the manifest is put (charged to
 * b, when given): the commit point.  Commits of one session take turns.
 * A failed upload fails the session and every later commit; a refused
 * charge or a commit that fails for its own manifest fails only itself.
 * The session ends when its last reference goes (what no commit took is
 * left for gc).
 */
int vb2_write_commit_one(struct vb2_write *w, struct vb_manifest *m, const char *vm,
                         const struct vb2_budget *b, char **id_out, vb_error *e);

/*
 * A budget for what the session adds (sink.h, vb_sink_set_charge): a put of
 * a blob new to the session calls charge(opaque, vb_blob_bound of its
 * length) before it encodes it, and gives back (a negative charge) what the
 * stored blob is smaller, or all of it when the blob is not added after all
 * (an error, an abort); the commit charges its sealed manifest's length
 * before writing it, and gives it back when the manifest is not written.
 * A refusal (a negative errno, the reason in e) fails the put with that
 * errno and message, and with it the session (the commit is refused,
 * nothing is visible); a refused manifest fails the commit.  charge runs on
 * the writing thread, outside the session's lock; give-backs are never
 * refused.  Blobs in a pack whose upload fails stay charged (the session
 * failed).  release(opaque) runs when the session is freed (last unref), or
 * when another budget replaces this one.  Set it before the first put.
 */
void vb2_write_set_charge(struct vb2_write *w,
                          int (*charge)(void *opaque, int64_t bytes, vb_error *e), void *opaque,
                          void (*release)(void *opaque));
/* Bytes the session added: the stored length of every blob it put into its
 * packs (data and meta: stats' stored_new) and, once committed, of its
 * manifest.  What its charges come to after give-backs.  Pack framing (the
 * salt blob, the trailer) and index files are not counted. */
uint64_t vb2_write_added(struct vb2_write *w);

struct vb2_write_stats {
    uint64_t blobs_new, bytes_new;       /* plain bytes of blobs stored */
    uint64_t stored_new;                 /* bytes added to packs */
    uint64_t blobs_known;                /* puts answered by the session or the index */
    uint64_t packs;                      /* uploaded */
};
void vb2_write_stats(struct vb2_write *w, struct vb2_write_stats *st);

/* ---- reads -------------------------------------------------------------------------------- */

/* Every snapshot, oldest first (a GPtrArray of struct vb_manifest *, freeing
 * them); vm (may be NULL) filters.  Manifests are cached in the cache folder
 * (they never change).  *problems (may be NULL) gets a GPtrArray of strings
 * naming each manifest that could not be read; without it such a manifest
 * fails the call. */
int vb2_snap_list(struct vb2_repo *r, const char *vm, GPtrArray **out, GPtrArray **problems,
                  vb_error *e);
/* One snapshot by id ("<vm>/<time>[-n]") or object (32 hex). */
int vb2_snap_load(struct vb2_repo *r, const char *id, struct vb_manifest **out, vb_error *e);
/* A stream of a manifest, whole (checked) or piece by piece (ref must
 * outlive the reader; vb_stream_read's rules: the end is reported once the
 * length and SHA-256 are found right). */
int vb2_stream_get_all(struct vb2_repo *r, const struct vb_manifest *m,
                       const struct vb_stream_ref *ref, GByteArray *out, vb_error *e);
struct vb2_stream;
struct vb2_stream *vb2_stream_open(struct vb2_repo *r, const struct vb_manifest *m,
                                   const struct vb_stream_ref *ref, vb_error *e);
int vb2_stream_read(struct vb2_stream *s, void *buf, size_t cap, size_t *got, vb_error *e);
void vb2_stream_close(struct vb2_stream *s);

/*
 * One blob: index lookup, a range get of its pack, vb_blob_decode with the
 * keyed id checked under idkey (a group key, vb2_group_key()).  out gets the
 * plain bytes.  A pack gone since the lookup (gc moved the blob): the index
 * is refreshed and the lookup made again.  -ENOENT when the index does not
 * have it.
 */
int vb2_blob_get(struct vb2_repo *r, struct vb_codec *c, const uint8_t idkey[VB_KEY_LEN],
                 const uint8_t id[VB_HASH_LEN], GByteArray *out, vb_error *e);

/* Called once per requested blob, from a worker thread (several at once):
 * data/len on success, or err (negative) and e naming what failed. */
typedef void (*vb2_got_fn)(void *opaque, size_t i, const uint8_t *data, size_t len, int err,
                           const vb_error *e);
/*
 * Many blobs (n ids, 32 bytes each, duplicates allowed) with the repository's
 * read threads: the blobs of one pack that lie near each other (gaps under
 * 1 MiB) are fetched with one range get.  Returns 0 when every blob was
 * delivered, else the first error (every other blob is still delivered).
 */
int vb2_get_many(struct vb2_repo *r, const uint8_t idkey[VB_KEY_LEN], const uint8_t *ids,
                 size_t n, vb2_got_fn fn, void *opaque, vb_error *e);
/* How many range gets the last vb2_get_many made (tests, benches). */
uint64_t vb2_repo_range_gets(const struct vb2_repo *r);

/* ---- maintenance ----------------------------------------------------------------------------- */

/* Remove one snapshot's manifest (id or object).  Its data stays for gc. */
int vb2_forget(struct vb2_repo *r, const char *id, vb_error *e);

#define VB2_GC_CONDEMN   (1u << 0)    /* phase 1: mark, repack, condemn */
#define VB2_GC_DELETE    (1u << 1)    /* phase 2: delete what condemned lists allow */
#define VB2_GC_ALL       (VB2_GC_CONDEMN | VB2_GC_DELETE)

struct vb2_gc_opts {
    unsigned phases;                 /* 0: VB2_GC_ALL (phase 1 then 2, and phase 2 of the
                                      * new list at once when no lease is live) */
    bool dry_run;                    /* decide and report, change nothing */
    unsigned repack_percent;         /* repack a pack when at least this much of it is
                                      * garbage (0: 50; 100: only whole packs) */
    size_t bloom_bytes;              /* 0: 10 bits per indexed blob, at least 1 MiB */
    unsigned merge_min_files;        /* merge index files when more than this many are
                                      * small (0: 16) */
};

struct vb2_gc_report {
    unsigned snapshots;              /* manifests marked */
    uint64_t packs, pack_bytes;      /* in the store at the start */
    unsigned lists_written;          /* condemned lists made */
    uint64_t packs_condemned, bytes_condemned;
    uint64_t packs_repacked, blobs_repacked, bytes_repacked;
    unsigned lists_done;             /* condemned lists whose packs were deleted */
    unsigned lists_waiting;          /* still blocked by a live lease */
    uint64_t packs_deleted, bytes_deleted;
    uint64_t packs_saved;            /* condemned, then used by a new snapshot */
    unsigned index_written, index_removed;
    size_t bloom_bytes;
};

/*
 * gc (docs/repository-v2.md, "Concurrency"), under the maintenance lock.
 * Fail-safe: if any manifest or stream cannot be read, nothing is condemned
 * or deleted and the cause is named.
 */
int vb2_gc(struct vb2_repo *r, const struct vb2_gc_opts *o, struct vb2_gc_report *rep,
           vb_error *e);

struct vb2_verify_opts {
    bool read_data;                  /* read and check every blob (default: trailers and
                                      * index only) */
    const char *snapshot;            /* only this snapshot's references (NULL: all) */
};

struct vb2_verify_report {
    uint64_t packs, blobs, bytes;    /* checked */
    unsigned snapshots;
    GPtrArray *problems;             /* strings naming each damaged or missing thing */
};
/* Check the repository; 0 when the checks ran (look at problems), < 0 when
 * they could not.  Free the report with vb2_verify_report_free. */
int vb2_verify(struct vb2_repo *r, const struct vb2_verify_opts *o,
               struct vb2_verify_report *rep, vb_error *e);
void vb2_verify_report_free(struct vb2_verify_report *rep);

struct vb2_stats {
    unsigned snapshots;
    uint64_t packs, pack_bytes;
    unsigned index_files;
    uint64_t blobs, data_blobs, meta_blobs;      /* distinct, as indexed */
    uint64_t plain_bytes, stored_bytes;          /* of those blobs */
    uint64_t logical_bytes;                      /* sum over snapshots of their chunks */
};
int vb2_stats(struct vb2_repo *r, struct vb2_stats *st, vb_error *e);

/*
 * Rebuild the index from pack trailers, under the maintenance lock: new
 * index files for every pack in the store, then the old ones (those listed
 * at the start) are removed.  *packs / *blobs (may be NULL) count what was
 * indexed; a pack whose trailer is damaged is named in e only if nothing
 * else fails, and left out.
 */
int vb2_repair_index(struct vb2_repo *r, uint64_t *packs, uint64_t *blobs, GPtrArray *problems,
                     vb_error *e);

#endif
