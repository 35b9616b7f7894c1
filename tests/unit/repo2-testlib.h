/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * For unit tests of the version 2 engine (hostd/repo/repo2.h): a repository
 * in a temporary folder with its own cache, random data from one seed,
 * backups of synthetic disks and files.  Header-only; every function static
 * inline.
 */
#ifndef VB_TEST_REPO2_TESTLIB_H
#define VB_TEST_REPO2_TESTLIB_H

#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "repo2.h"

struct trepo {
    char *dir;                   /* the repository */
    char *cache;                 /* its cache folder */
    enum vb_aead aead;
    struct vb_secret secret;
    struct vb2_repo *r;
};

static inline void trepo_secret(struct vb_secret *s, const char *password)
{
    memset(s, 0, sizeof(*s));
    s->kind = VB_SECRET_PASSWORD;
    s->data = (uint8_t *)g_strdup(password);
    s->len = strlen(password);
}

/* Fast scrypt for tests: the least the bounds allow. */
static const struct vb_kdf_params trepo_kdf = { 1u << 14, 1, 1 };

static inline struct vb2_open_opts trepo_open_opts(struct trepo *t)
{
    struct vb2_open_opts o = { .secret = t->aead == VB_AEAD_NONE ? NULL : &t->secret,
                               .cache_dir = t->cache };
    return o;
}

static inline void trepo_open(struct trepo *t)
{
    struct vb2_open_opts o = trepo_open_opts(t);
    vb_error e = { 0 };

    if (vb2_repo_open(t->dir, &o, &t->r, &e))
        g_error("open %s: %s", t->dir, vb_strerror(&e));
}

/* A new repository; pack_target 0: the default. */
static inline void trepo_init(struct trepo *t, enum vb_aead aead, uint32_t pack_target)
{
    struct vb2_create_opts co = { .encryption = aead, .kdf = &trepo_kdf,
                                  .pack_target = pack_target };
    vb_error e = { 0 };

    memset(t, 0, sizeof(*t));
    t->aead = aead;
    t->dir = g_dir_make_tmp("vb-repo2-XXXXXX", NULL);
    t->cache = g_dir_make_tmp("vb-cache2-XXXXXX", NULL);
    trepo_secret(&t->secret, "correct horse");
    co.secret = aead == VB_AEAD_NONE ? NULL : &t->secret;
    if (vb2_repo_create(t->dir, &co, &e))
        g_error("create %s: %s", t->dir, vb_strerror(&e));
    trepo_open(t);
}

static inline void trepo_close(struct trepo *t)
{
    vb2_repo_close(t->r);
    t->r = NULL;
}

static inline void trepo_free(struct trepo *t)
{
    if (t->r)
        trepo_close(t);
    g_assert_cmpint(vb_rm_rf_at(AT_FDCWD, t->dir), ==, 0);
    g_assert_cmpint(vb_rm_rf_at(AT_FDCWD, t->cache), ==, 0);
    g_free(t->dir);
    g_free(t->cache);
    vb_secret_wipe(&t->secret);
}

/* Deterministic pseudo-random bytes: block b of stream s (64 KiB blocks). */
static inline void tdata(uint32_t s, uint64_t b, uint8_t *out, size_t n)
{
    uint64_t x = (uint64_t)s * 0x9e3779b97f4a7c15ull ^ (b + 1) * 0xbf58476d1ce4e5b9ull;

    for (size_t i = 0; i < n; i += 8) {
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        /* half the bytes compress: keep zstd busy as real data would */
        if ((b + i / 4096) % 3 == 0)
            z &= 0x0f0f0f0f0f0f0f0full;
        memcpy(out + i, &z, VB_MIN((size_t)8, n - i));
    }
}

/* The chunks of a disk snapshot: chunk i of "disk" seed s is tdata(s, i),
 * except the chunks listed in zero (holes). */
struct tdisk {
    uint32_t seed;
    uint32_t chunk;              /* bytes per chunk */
    uint64_t nchunks;
    uint64_t hole_every;         /* 0: no holes; else chunks i % hole_every == 1 */
    uint64_t shared_below;       /* chunks i < this come from shared_seed instead */
    uint32_t shared_seed;
};

/* The content of chunk i of a disk. */
static inline void tdisk_chunk(const struct tdisk *d, uint64_t i, uint8_t *out)
{
    tdata(i < d->shared_below ? d->shared_seed : d->seed, i, out, d->chunk);
}

static inline bool tdisk_hole(const struct tdisk *d, uint64_t i)
{
    return d->hole_every && i % d->hole_every == 1;
}

/*
 * Back up a disk through a session: put every chunk, write the chunk list
 * as the "chunks" stream, commit.  *id_out gets the snapshot id (g_free).
 * Returns the commit's result (asserts everything before it).
 */
static inline int tbackup_disk(struct vb2_repo *r, const char *vm, const char *group,
                               const struct tdisk *d, char **id_out, vb_error *e)
{
    struct vb2_write_opts wo = { .vm = vm, .dedup_group = group };
    struct vb2_write *w;
    struct vb_codec c;
    struct vb_manifest *m = vb_manifest_new();
    uint8_t *buf = g_malloc(d->chunk), *ids = g_malloc0(d->nchunks * 32 + 1);
    char *id = NULL;
    int ret;

    g_assert_cmpint(vb_codec_init(&c, 1), ==, 0);
    ret = vb2_write_begin(r, &wo, &w, e);
    if (ret) {
        vb_manifest_free(m);
        g_free(buf);
        g_free(ids);
        vb_codec_free(&c);
        return ret;
    }
    for (uint64_t i = 0; i < d->nchunks; i++) {
        if (tdisk_hole(d, i))
            continue;
        tdisk_chunk(d, i, buf);
        ret = vb2_write_put(w, &c, VB_BLOB_DATA, buf, d->chunk, ids + i * 32, NULL, e);
        g_assert_cmpint(ret, >=, 0);
    }
    m->type = VB_MF_DISK;
    m->group = g_strdup("disk:test");
    m->mode = g_strdup("full");
    m->disk.name = g_strdup("vda");
    m->disk.size = d->nchunks * d->chunk;
    m->disk.chunk_size = d->chunk;
    m->disk.chunk_count = d->nchunks;
    ret = vb2_write_stream(w, &c, ids, d->nchunks * 32, &m->chunks, e);
    g_assert_cmpint(ret, ==, 0);
    ret = vb2_write_commit(w, m, &id, e);
    vb2_write_unref(w);
    if (id_out)
        *id_out = id ? g_strdup(id) : NULL;
    free(id);
    vb_manifest_free(m);
    g_free(buf);
    g_free(ids);
    vb_codec_free(&c);
    return ret;
}

struct tcheck {
    const struct tdisk *d;
    const uint8_t *ids;
    gint bad, got;
};

static inline void tcheck_got(void *opaque, size_t i, const uint8_t *data, size_t len, int err,
                              const vb_error *e)
{
    struct tcheck *t = opaque;
    uint8_t *want;

    g_atomic_int_inc(&t->got);
    if (err) {
        if (g_test_verbose())
            g_printerr("# chunk %zu: %s\n", i, vb_strerror(e));
        g_atomic_int_inc(&t->bad);
        return;
    }
    want = g_malloc(t->d->chunk);
    tdisk_chunk(t->d, i, want);
    if (len != t->d->chunk || memcmp(want, data, len)) {
        if (g_test_verbose())
            g_printerr("# chunk %zu: wrong content\n", i);
        g_atomic_int_inc(&t->bad);
    }
    g_free(want);
}

struct tfwd {
    struct tcheck *tc;
    GArray *map;
};

static inline void tfwd_got(void *o, size_t i, const uint8_t *data, size_t len, int err,
                            const vb_error *e)
{
    struct tfwd *f = o;

    tcheck_got(f->tc, g_array_index(f->map, size_t, i), data, len, err, e);
}

/*
 * Restore-check a disk snapshot: its chunk stream, then every chunk with
 * vb2_get_many (holes: zero ids).  0 when everything is there and right.
 */
static inline int tcheck_disk(struct vb2_repo *r, const char *id, const struct tdisk *d,
                              vb_error *e)
{
    struct vb_manifest *m;
    GByteArray *list = g_byte_array_new();
    uint8_t key[32], zero[32] = { 0 };
    int ret = vb2_snap_load(r, id, &m, e);

    if (ret) {
        g_byte_array_free(list, TRUE);
        return ret;
    }
    ret = vb2_stream_get_all(r, m, &m->chunks, list, e);
    if (!ret && list->len != d->nchunks * 32)
        ret = vb_seterr(e, -EBADMSG, "chunk list of %u bytes", list->len);
    if (!ret)
        ret = vb2_group_key(r, m->dedup_group, key, e);
    if (!ret) {
        /* holes are not fetched: give get_many only the chunks */
        struct tcheck tc = { .d = d, .ids = list->data };
        GArray *idx = g_array_new(FALSE, FALSE, 32);
        GArray *map = g_array_new(FALSE, FALSE, sizeof(size_t));
        for (uint64_t i = 0; i < d->nchunks; i++) {
            if (!memcmp(list->data + i * 32, zero, 32)) {
                if (!tdisk_hole(d, i))
                    tc.bad++;
                continue;
            }
            g_array_append_vals(idx, list->data + i * 32, 1);
            g_array_append_val(map, i);
        }
        /* get_many numbers blobs by their place in idx: translate via map */
        {
            struct tfwd ctx = { &tc, map };
            ret = vb2_get_many(r, key, (const uint8_t *)idx->data, idx->len, tfwd_got, &ctx, e);
        }
        if (!ret && tc.bad)
            ret = vb_seterr(e, -EBADMSG, "%d chunks wrong", tc.bad);
        if (!ret && (guint)tc.got != idx->len)
            ret = vb_seterr(e, -EIO, "%d of %u chunks delivered", tc.got, idx->len);
        g_array_free(idx, TRUE);
        g_array_free(map, TRUE);
    }
    vb_manifest_free(m);
    g_byte_array_free(list, TRUE);
    return ret;
}

#endif
