/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Inside the version 2 engine: what repo2.c, write.c, gc.c and verify.c
 * share.  Nothing outside hostd/repo includes this.
 */
#ifndef VB_REPO_REPO2_INT_H
#define VB_REPO_REPO2_INT_H

#include "index.h"
#include "lease.h"
#include "repo2.h"

struct vb2_repo {
    struct vb_store *s;
    char *location;
    uint8_t id[16];
    struct vb_keys keys;
    uint32_t file_avg, disk_chunk, meta_avg, pack_target;
    int zstd_level;
    bool readonly;
    unsigned upload_threads, read_threads;
    unsigned index_file_records;
    int64_t lease_expiry_ns, lease_refresh_ns, lease_margin_ns;
    char *cache_dir;
    bool cache_private;              /* a temporary folder of this open, removed at close */
    struct vb_index_cache *cache;
    int snapfd;                      /* <cache>/snapshots/: manifests as fetched */
    GMutex mu;                       /* groups */
    GHashTable *groups;              /* group name -> 32-byte key */
    uint64_t range_gets;             /* __atomic */
    char key_name[VB_OBJ_NAME_MAX];  /* the key file that opened it ("" unencrypted) */
};

/* Random bytes (getrandom). */
int vb2_random(uint8_t *out, size_t n, vb_error *e);

/*
 * A pack writer whose first blob is a salt: 16 random bytes (a meta blob
 * under the repository's id key that nothing references), so that no two
 * packs are ever the same object.  Without it an unencrypted session could
 * make a pack byte for byte equal to a condemned one, find its name taken
 * (NOREPLACE) and rely on a pack that gc is about to delete.
 */
struct vb_pack_writer *vb2_pack_new(struct vb2_repo *r, struct vb_codec *c, vb_error *e);
/* The same into a buffer of an earlier pack (buf, cap: vb_pack_writer_new_buf). */
struct vb_pack_writer *vb2_pack_new_buf(struct vb2_repo *r, struct vb_codec *c, uint8_t *buf,
                                        size_t cap, vb_error *e);

/* Read a whole object of at most max bytes. */
int vb2_get_object(struct vb2_repo *r, const char *name, size_t max, GByteArray *out,
                   vb_error *e);

/* A lookup through a view, or a refresh-and-retry read of one blob with
 * a known location. */
int vb2_blob_read_at(struct vb2_repo *r, struct vb_codec *c, const uint8_t *idkey,
                     const uint8_t id[VB_HASH_LEN], const struct vb_blob_loc *loc,
                     GByteArray *out, vb_error *e);

/* The group keys of every manifest in list (plus the default key), for
 * checking blobs whose group is not known: an array of 32-byte keys. */
GArray *vb2_all_group_keys(struct vb2_repo *r, GPtrArray *manifests, vb_error *e);

/* Put index files for ents (pack ordinals into packs), split into files of
 * VB_INDEX_FILE_RECORDS; *written counts them (may be NULL). */
int vb2_put_index(struct vb2_repo *r, struct vb_index_entry *ents, size_t n,
                  const struct vb_pack_id *packs, size_t npacks, unsigned *written,
                  vb_error *e);

/* Remove a cached manifest (forget, gc); add one (commit). */
void vb2_snap_cache_drop(struct vb2_repo *r, const char *object);
void vb2_snap_cache_put(struct vb2_repo *r, const char *object, const GByteArray *b);

/* vb2_snap_list reading every manifest from the store, not the cache (verify:
 * a manifest changed in the store must not hide behind its cached copy). */
int vb2_snap_list_fresh(struct vb2_repo *r, const char *vm, GPtrArray **out,
                        GPtrArray **problems, vb_error *e);

/* The names of the store's objects under prefix (a GPtrArray of strings). */
int vb2_list_names(struct vb_store *s, const char *prefix, GPtrArray **out, vb_error *e);

#endif
