/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The write session (session.h): begin → put → commit or abort, with the
 * repository claimed from begin to end.  docs/repository.md.
 */
#include "session.h"

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

struct vb_write {
    struct vb_repo *r;
    struct vb_claim *claim;  /* released once ended and no put is running */
    uint64_t gen;            /* gc generation, fixed while the claim is held */
    char vm[72];
    char token[33];          /* the session's name, recorded in its snapshot */
    struct vb_idspace space; /* its dedup group's (read only) */
    int64_t started_ns;
    GMutex mu;               /* everything below */
    GHashTable *known;       /* ids that exist: stored, found or inherited here */
    struct vb_snap_writer sw;
    int refs;
    unsigned puts;           /* puts running */
    unsigned writing;        /* file writes and the commit running */
    bool ended;              /* committed or aborted */
    bool abort_wanted;       /* abort asked while writing: the writer ends it */
    bool failed;             /* a put failed: no commit */
    uint64_t added;          /* bytes stored: chunks and files */
    vb_write_charge_fn charge;   /* set before the first put, then read only */
    void *charge_opaque;
    void (*charge_release)(void *opaque);
};

int vb_write_begin(struct vb_repo *r, const char *vm, const char *group, unsigned flags,
                   struct vb_write **out, vb_error *e)
{
    struct vb_idspace space;
    struct vb_write *w;
    int ret;

    if (!vb_valid_name(vm))
        return vb_seterr(e, -EINVAL, "'%s' is not a valid VM name (letters, digits, . _ -; at "
                         "most 64)", vm);
    if ((ret = vb_idspace_init(&space, group, e)))
        return ret;
    w = calloc(1, sizeof(*w));
    if (!w)
        return vb_seterr(e, -ENOMEM, "out of memory");
    w->space = space;
    ret = vb_repo_claim(r, !(flags & VB_WRITE_NOWAIT), &w->claim, e);
    if (!ret)
        ret = vb_repo_gc_generation(r, &w->gen, e);
    /* the snapshot's temporary folder: what a crash leaves, gc removes */
    if (!ret)
        ret = vb_snap_begin(r, vm, &w->sw, e);
    if (ret) {
        vb_repo_release(w->claim);
        free(w);
        return ret;
    }
    w->r = r;
    snprintf(w->vm, sizeof(w->vm), "%s", vm);
    w->started_ns = vb_wall_ns();
    {
        uint8_t rnd[16];
        uint64_t mix = (uint64_t)w->started_ns ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)w;

        /* unique: a daemon that died finds its job's snapshot by it */
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
            for (size_t i = 0; i < sizeof(rnd); i++)
                rnd[i] = (uint8_t)((mix >> (8 * (i % 8))) ^ (uint64_t)random());
        vb_hex(rnd, sizeof(rnd), w->token);
    }
    g_mutex_init(&w->mu);
    w->known = g_hash_table_new_full(vb_id_hash, vb_id_equal, g_free, NULL);
    w->refs = 1;
    *out = w;
    return 0;
}

const struct vb_idspace *vb_write_space(const struct vb_write *w)
{
    return &w->space;
}

bool vb_write_same_space(const struct vb_write *w, const struct vb_snapshot *s)
{
    return vb_idspace_same(&w->space, &s->space);
}

struct vb_repo *vb_write_repo(struct vb_write *w)
{
    return w->r;
}

uint64_t vb_write_generation(const struct vb_write *w)
{
    return w->gen;
}

void vb_write_set_charge(struct vb_write *w, vb_write_charge_fn charge, void *opaque,
                         void (*release)(void *opaque))
{
    if (w->charge_release)
        w->charge_release(w->charge_opaque);
    w->charge = charge;
    w->charge_opaque = opaque;
    w->charge_release = release;
}

uint64_t vb_write_added(struct vb_write *w)
{
    uint64_t n;

    g_mutex_lock(&w->mu);
    n = w->added;
    g_mutex_unlock(&w->mu);
    return n;
}

/* Charge BYTES (negative: give back) to the session's budget; 0 or -errno. */
static int charge(struct vb_write *w, int64_t bytes, vb_error *e)
{
    return w->charge ? w->charge(w->charge_opaque, bytes, e) : 0;
}

const char *vb_write_token(const struct vb_write *w)
{
    return w->token;
}

const char *vb_write_vm(const struct vb_write *w)
{
    return w->vm;
}

const char *vb_write_warning(const struct vb_write *w)
{
    return w->sw.warning[0] ? w->sw.warning : NULL;
}

/* Under mu. */
static void release_if_done(struct vb_write *w)
{
    if (w->ended && !w->puts && w->claim) {
        vb_repo_release(w->claim);
        w->claim = NULL;
    }
}

/* Under mu: the session ends; an unfinished snapshot goes. */
static void end(struct vb_write *w)
{
    w->ended = true;
    vb_snap_abort(&w->sw);
    release_if_done(w);
}

struct vb_write *vb_write_ref(struct vb_write *w)
{
    g_mutex_lock(&w->mu);
    w->refs++;
    g_mutex_unlock(&w->mu);
    return w;
}

void vb_write_unref(struct vb_write *w)
{
    bool last;

    if (!w)
        return;
    g_mutex_lock(&w->mu);
    last = --w->refs == 0;
    if (last && !w->ended)
        end(w);                 /* nobody can commit it any more */
    g_mutex_unlock(&w->mu);
    if (!last)
        return;
    vb_repo_release(w->claim);  /* no put runs without a reference */
    if (w->charge_release)
        w->charge_release(w->charge_opaque);
    g_hash_table_destroy(w->known);
    g_mutex_clear(&w->mu);
    free(w);
}

void vb_write_abort(struct vb_write *w)
{
    if (!w)
        return;
    g_mutex_lock(&w->mu);
    if (!w->ended) {
        if (w->writing)
            w->abort_wanted = true;     /* refused at the commit point */
        else
            end(w);
    }
    g_mutex_unlock(&w->mu);
}

bool vb_write_has(struct vb_write *w, const uint8_t id[VB_ID_LEN])
{
    bool known;

    g_mutex_lock(&w->mu);
    known = g_hash_table_contains(w->known, id);
    g_mutex_unlock(&w->mu);
    if (known)
        return true;
    if (!vb_repo_has_chunk(w->r, id))
        return false;
    g_mutex_lock(&w->mu);
    if (!g_hash_table_contains(w->known, id))
        g_hash_table_add(w->known, g_memdup2(id, VB_ID_LEN));
    g_mutex_unlock(&w->mu);
    return true;
}

bool vb_write_inherits(const struct vb_write *w, const struct vb_snapshot *s)
{
    return s->gc_generation >= 0 && (uint64_t)s->gc_generation == w->gen &&
           vb_write_same_space(w, s);
}

void vb_write_inherit(struct vb_write *w, const uint8_t id[VB_ID_LEN])
{
    g_mutex_lock(&w->mu);
    if (!g_hash_table_contains(w->known, id))
        g_hash_table_add(w->known, g_memdup2(id, VB_ID_LEN));
    g_mutex_unlock(&w->mu);
}

int vb_write_put(struct vb_write *w, struct vb_codec *c, const void *data, size_t len,
                 uint8_t id[VB_ID_LEN], uint32_t *stored, vb_error *e)
{
    const uint8_t *enc;
    size_t enc_len;
    bool added = false;
    int ret = 0;

    *stored = 0;
    vb_idspace_id(&w->space, data, len, id);
    g_mutex_lock(&w->mu);
    if (w->ended || w->abort_wanted) {
        g_mutex_unlock(&w->mu);
        return vb_seterr(e, -ECANCELED, "the backup was aborted");
    }
    if (g_hash_table_contains(w->known, id)) {
        /* stored or found by this session (or being stored: should that
         * fail, the session fails with it) */
        g_mutex_unlock(&w->mu);
        return 0;
    }
    g_hash_table_add(w->known, g_memdup2(id, VB_ID_LEN));
    w->puts++;
    g_mutex_unlock(&w->mu);

    if (!vb_repo_has_chunk(w->r, id)) {
        vb_codec_set_level(c, w->r->level);
        ret = vb_chunk_encode(c, data, len, &enc, &enc_len);
        if (ret)
            vb_seterr(e, ret, "encode chunk: %s", strerror(-ret));
        /* the budget first: a chunk it refuses is never written */
        else if (!(ret = charge(w, (int64_t)enc_len, e))) {
            ret = vb_repo_put_chunk(w->r, id, enc, enc_len, &added, e);
            if (ret || !added)
                charge(w, -(int64_t)enc_len, NULL);
        }
        if (!ret && added)
            *stored = (uint32_t)enc_len;
    }

    g_mutex_lock(&w->mu);
    w->added += *stored;
    if (ret) {
        w->failed = true;
        g_hash_table_remove(w->known, id);
    }
    w->puts--;
    release_if_done(w);
    g_mutex_unlock(&w->mu);
    return ret ? ret : added;
}

/* A file write or the commit: refused once the session is over. */
static int enter(struct vb_write *w, vb_error *e)
{
    int ret = 0;

    g_mutex_lock(&w->mu);
    if (w->ended || w->abort_wanted)
        ret = vb_seterr(e, -ECANCELED, "the backup was aborted");
    else if (w->failed)
        ret = vb_seterr(e, -EIO, "a chunk of this backup could not be stored");
    if (!ret)
        w->writing++;
    g_mutex_unlock(&w->mu);
    return ret;
}

static void leave(struct vb_write *w, bool finish)
{
    g_mutex_lock(&w->mu);
    w->writing--;
    if (!w->ended && (finish || (w->abort_wanted && !w->writing)))
        end(w);
    g_mutex_unlock(&w->mu);
}

int vb_write_file(struct vb_write *w, const char *name, const void *data, size_t len,
                  uint8_t sha256[32], vb_error *e)
{
    int ret = enter(w, e);

    if (ret)
        return ret;
    ret = charge(w, (int64_t)len, e);
    if (!ret) {
        ret = vb_snap_write_file(&w->sw, name, data, len, sha256, e);
        if (ret)
            charge(w, -(int64_t)len, NULL);
    }
    g_mutex_lock(&w->mu);
    if (!ret)
        w->added += len;
    g_mutex_unlock(&w->mu);
    leave(w, false);
    return ret;
}

int vb_write_commit(struct vb_write *w, json_object *index, int64_t created_ns, char **id_out,
                    vb_error *e)
{
    uint64_t added;
    int ret = enter(w, e);

    if (ret) {
        vb_write_abort(w);
        return ret;
    }
    g_mutex_lock(&w->mu);
    if (w->puts)
        ret = vb_seterr(e, -EBUSY, "commit while chunks are being stored");
    added = w->added;
    g_mutex_unlock(&w->mu);
    if (!ret) {
        w->sw.created_ns = created_ns ? created_ns : w->started_ns;
        w->sw.gate = &w->mu;
        w->sw.cancel = &w->abort_wanted;
        json_object_object_add(index, "gc_generation", json_object_new_int64((int64_t)w->gen));
        json_object_object_add(index, "added_bytes", json_object_new_int64((int64_t)added));
        json_object_object_add(index, "session", json_object_new_string(w->token));
        if (w->space.tagged)
            json_object_object_add(index, "dedup_group",
                                   json_object_new_string(w->space.group));
        ret = vb_snap_commit(&w->sw, index, id_out, e);
    }
    leave(w, true);             /* ended: committed, or nothing visible */
    return ret;
}
