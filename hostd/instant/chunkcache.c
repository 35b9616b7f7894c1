/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The chunk cache (chunkcache.h).  One mutex guards the table, the LRU list
 * and the counters; chunks are read and decoded outside it.  A chunk being
 * read is in the table (so a second reader waits for it instead of reading
 * it again) but not in the LRU list; a chunk that failed to read leaves the
 * table at once, so the next reader tries again.
 */
#include "chunkcache.h"

#include <stdlib.h>
#include <string.h>

#define PREFETCH_QUEUE_MAX 64

enum { CH_LOADING, CH_READY, CH_FAILED };

struct vb_cchunk {
    uint8_t id[VB_ID_LEN];
    uint32_t len;
    struct vb_idspace space;  /* its id's */
    int state;
    unsigned refs;           /* readers, plus one while in the table */
    bool in_table;
    uint8_t *data;
    vb_error err;            /* CH_FAILED: what the reader met */
    GList link;              /* in lru while ready and in the table */
};

struct vb_ccache {
    struct vb_sr *src;
    size_t max;
    GMutex lock;
    GCond cond;
    GHashTable *map;         /* id -> struct vb_cchunk (key: its id) */
    GQueue lru;              /* most recently used first */
    size_t bytes;
    GThreadPool *pool;
    gint stopping;           /* queued prefetches are dropped */
    struct vb_ccache_stats st;
};

struct prefetch {
    uint8_t id[VB_ID_LEN];
    uint32_t len;
    struct vb_idspace space;
};

struct vb_ccache *vb_ccache_new(struct vb_sr *src, size_t max_bytes)
{
    struct vb_ccache *c = g_new0(struct vb_ccache, 1);

    c->src = src;
    c->max = max_bytes;
    g_mutex_init(&c->lock);
    g_cond_init(&c->cond);
    c->map = g_hash_table_new(vb_id_hash, vb_id_equal);
    g_queue_init(&c->lru);
    return c;
}

static void chunk_unref_locked(struct vb_cchunk *ch)
{
    if (--ch->refs == 0) {
        free(ch->data);
        g_free(ch);
    }
}

/* Takes ch out of the table (and the LRU list); its readers keep it. */
static void chunk_drop_locked(struct vb_ccache *c, struct vb_cchunk *ch)
{
    if (!ch->in_table)
        return;
    g_hash_table_remove(c->map, ch->id);
    ch->in_table = false;
    if (ch->state == CH_READY) {
        g_queue_unlink(&c->lru, &ch->link);
        c->bytes -= ch->len;
    }
    chunk_unref_locked(ch);
}

static void evict_locked(struct vb_ccache *c)
{
    while (c->bytes > c->max && c->lru.tail) {
        chunk_drop_locked(c, c->lru.tail->data);
        c->st.evicted++;
    }
}

static int get(struct vb_ccache *c, const struct vb_idspace *sp, const uint8_t id[VB_ID_LEN],
               uint32_t len, struct vb_cchunk **out, bool *missed, vb_error *e)
{
    struct vb_cchunk *ch;
    int ret;

    *missed = false;
    g_mutex_lock(&c->lock);
    ch = g_hash_table_lookup(c->map, id);
    if (ch) {
        if (ch->len != len) {
            char hex[VB_ID_HEX];
            g_mutex_unlock(&c->lock);
            vb_hex(id, VB_ID_LEN, hex);
            return vb_seterr(e, -EBADMSG, "chunk %s is %u bytes long in one index and %u in "
                             "another", hex, ch->len, len);
        }
        if (!vb_idspace_same(&ch->space, sp)) {
            char hex[VB_ID_HEX];
            g_mutex_unlock(&c->lock);
            vb_hex(id, VB_ID_LEN, hex);
            return vb_seterr(e, -EBADMSG, "chunk %s is named by snapshots of two dedup groups "
                             "(a tampered index)", hex);
        }
        ch->refs++;
        if (ch->state == CH_LOADING) {
            c->st.waits++;
            while (ch->state == CH_LOADING)
                g_cond_wait(&c->cond, &c->lock);
        } else {
            c->st.hits++;
        }
        if (ch->state == CH_FAILED) {
            ret = ch->err.code;
            if (e)
                *e = ch->err;
            chunk_unref_locked(ch);
            g_mutex_unlock(&c->lock);
            return ret;
        }
        if (ch->in_table) {
            g_queue_unlink(&c->lru, &ch->link);
            g_queue_push_head_link(&c->lru, &ch->link);
        }
        g_mutex_unlock(&c->lock);
        *out = ch;
        return 0;
    }
    c->st.misses++;
    *missed = true;
    ch = g_new0(struct vb_cchunk, 1);
    memcpy(ch->id, id, VB_ID_LEN);
    ch->len = len;
    if (sp)
        ch->space = *sp;
    ch->state = CH_LOADING;
    ch->refs = 2;
    ch->in_table = true;
    ch->link.data = ch;
    g_hash_table_insert(c->map, ch->id, ch);
    g_mutex_unlock(&c->lock);

    ch->data = malloc(VB_MAX(len, 1u));
    ret = ch->data ? vb_sr_read_chunk(c->src, sp, id, ch->data, len, &ch->err)
                   : vb_seterr(&ch->err, -ENOMEM, "out of memory for a chunk of %u bytes", len);

    g_mutex_lock(&c->lock);
    if (ret) {
        ch->state = CH_FAILED;
        ch->err.code = ret;
        c->st.errors++;
        if (e)
            *e = ch->err;
        chunk_drop_locked(c, ch);
        chunk_unref_locked(ch);
    } else {
        ch->state = CH_READY;
        c->bytes += len;
        g_queue_push_head_link(&c->lru, &ch->link);
        evict_locked(c);
        *out = ch;
    }
    g_cond_broadcast(&c->cond);
    g_mutex_unlock(&c->lock);
    return ret;
}

int vb_ccache_get(struct vb_ccache *c, const struct vb_idspace *sp, const uint8_t id[VB_ID_LEN],
                  uint32_t len, struct vb_cchunk **out, vb_error *e)
{
    bool missed;

    return get(c, sp, id, len, out, &missed, e);
}

const uint8_t *vb_cchunk_data(const struct vb_cchunk *ch)
{
    return ch->data;
}

void vb_cchunk_release(struct vb_ccache *c, struct vb_cchunk *ch)
{
    g_mutex_lock(&c->lock);
    chunk_unref_locked(ch);
    g_mutex_unlock(&c->lock);
}

static void prefetch_work(gpointer data, gpointer opaque)
{
    struct prefetch *p = data;
    struct vb_ccache *c = opaque;
    struct vb_cchunk *ch;
    bool missed;

    /* a failure is not remembered: the reader that needs the chunk meets it */
    if (!g_atomic_int_get(&c->stopping) && get(c, &p->space, p->id, p->len, &ch, &missed, NULL) == 0) {
        if (missed) {
            g_mutex_lock(&c->lock);
            c->st.prefetched++;
            g_mutex_unlock(&c->lock);
        }
        vb_cchunk_release(c, ch);
    }
    g_free(p);
}

int vb_ccache_start_prefetch(struct vb_ccache *c, int n, vb_error *e)
{
    GError *err = NULL;

    if (n <= 0 || c->pool)
        return 0;
    c->pool = g_thread_pool_new(prefetch_work, c, n, FALSE, &err);
    if (!c->pool) {
        int ret = vb_seterr(e, -EAGAIN, "prefetch threads: %s", err->message);
        g_error_free(err);
        return ret;
    }
    return 0;
}

void vb_ccache_prefetch(struct vb_ccache *c, const struct vb_idspace *sp,
                        const uint8_t id[VB_ID_LEN], uint32_t len)
{
    struct prefetch *p;
    bool known;

    if (!c->pool || g_thread_pool_unprocessed(c->pool) >= PREFETCH_QUEUE_MAX)
        return;
    g_mutex_lock(&c->lock);
    known = g_hash_table_contains(c->map, id);
    g_mutex_unlock(&c->lock);
    if (known)
        return;
    p = g_new0(struct prefetch, 1);
    memcpy(p->id, id, VB_ID_LEN);
    p->len = len;
    if (sp)
        p->space = *sp;
    g_thread_pool_push(c->pool, p, NULL);
}

void vb_ccache_stats(struct vb_ccache *c, struct vb_ccache_stats *st)
{
    g_mutex_lock(&c->lock);
    *st = c->st;
    st->bytes = c->bytes;
    g_mutex_unlock(&c->lock);
}

void vb_ccache_free(struct vb_ccache *c)
{
    GHashTableIter it;
    gpointer k, v;

    if (!c)
        return;
    if (c->pool) {
        g_atomic_int_set(&c->stopping, 1);
        g_thread_pool_free(c->pool, FALSE, TRUE);     /* each queued item is freed */
    }
    g_hash_table_iter_init(&it, c->map);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        struct vb_cchunk *ch = v;
        g_hash_table_iter_steal(&it);
        ch->in_table = false;
        chunk_unref_locked(ch);
    }
    g_hash_table_destroy(c->map);
    g_mutex_clear(&c->lock);
    g_cond_clear(&c->cond);
    g_free(c);
}
