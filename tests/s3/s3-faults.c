/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The S3 store through tests/s3/fault-proxy.py, which delays, drops
 * connections, answers 500/503 and truncates at random: every operation
 * either succeeds with the right data or fails with a clean error, and the
 * bucket never holds a partial object.
 *
 *   s3-faults PROXY_URL SEED OPS ATTEMPTS
 *
 * A model keeps, for each name, every state the object may be in (absent,
 * or one of the contents put): a successful put leaves one state, a failed
 * one adds its content to the possible ones (all-or-nothing: never a
 * part).  Gets, stats and listings through the proxy are checked against
 * the model; at the end every object is read directly from radosgw (AWS_*
 * variables) and must be exactly one of its possible states.  Prints one
 * TAP-free summary line; exit 0 when every check held.
 */
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "store-backend.h"

#define NNAMES 24

struct obj {
    char name[VB_OBJ_NAME_MAX];
    GPtrArray *states;       /* GBytes *, NULL = absent */
};

static struct obj objs[NNAMES];
static unsigned violations, ok_ops, failed_ops;
static GRand *rnd;

#define VIOLATION(...)                                                          \
    do {                                                                        \
        fprintf(stderr, "s3-faults: VIOLATION: " __VA_ARGS__);                  \
        fputc('\n', stderr);                                                    \
        violations++;                                                           \
    } while (0)

static void set_only(struct obj *o, GBytes *b)
{
    g_ptr_array_set_size(o->states, 0);
    g_ptr_array_add(o->states, b ? g_bytes_ref(b) : NULL);
}

static void add_state(struct obj *o, GBytes *b)
{
    g_ptr_array_add(o->states, b ? g_bytes_ref(b) : NULL);
}

static bool may_be_absent(struct obj *o)
{
    for (guint i = 0; i < o->states->len; i++)
        if (!o->states->pdata[i])
            return true;
    return false;
}

static bool may_be_present(struct obj *o)
{
    for (guint i = 0; i < o->states->len; i++)
        if (o->states->pdata[i])
            return true;
    return false;
}

/* data equals bytes [off, off+len) of some possible state */
static bool matches(struct obj *o, uint64_t off, const uint8_t *data, size_t len)
{
    for (guint i = 0; i < o->states->len; i++) {
        GBytes *b = o->states->pdata[i];
        gsize n;
        const uint8_t *d = b ? g_bytes_get_data(b, &n) : NULL;
        if (d && off + len <= n && !memcmp(d + off, data, len))
            return true;
    }
    return false;
}

static bool size_possible(struct obj *o, uint64_t size)
{
    for (guint i = 0; i < o->states->len; i++)
        if (o->states->pdata[i] && g_bytes_get_size(o->states->pdata[i]) == size)
            return true;
    return false;
}

static GBytes *content(void)
{
    /* mostly small; now and then big enough for a multipart upload */
    size_t len = g_rand_int_range(rnd, 0, 10) == 0 ? (size_t)g_rand_int_range(rnd, 5 << 20,
                                                                              11 << 20)
                                                   : (size_t)g_rand_int_range(rnd, 0, 70000);
    uint8_t *d = g_malloc(len ? len : 1);
    uint32_t x = g_rand_int(rnd) | 1;

    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        d[i] = (uint8_t)x;
    }
    return g_bytes_new_take(d, len);
}

/* a failure must be a negative errno with a message naming the object */
static void check_clean(int ret, const vb_error *e, const char *name)
{
    if (ret >= 0 || !e->msg[0] || !strstr(e->msg, name))
        VIOLATION("%s: unclean failure %d '%s'", name, ret, e->msg);
    else
        fprintf(stderr, "s3-faults: failed cleanly: %s\n", e->msg);
    failed_ops++;
}

static void op_put(struct vb_store *s, struct obj *o)
{
    GBytes *b = content();
    bool noreplace = g_rand_int_range(rnd, 0, 3) == 0;
    gsize len;
    const void *d = g_bytes_get_data(b, &len);
    vb_error e = { 0 };
    int ret = vb_store_put(s, o->name, d, len, noreplace ? VB_PUT_NOREPLACE : 0, &e);

    if (!ret) {
        if (noreplace && !may_be_absent(o))
            VIOLATION("put %s NOREPLACE succeeded over an object that exists", o->name);
        set_only(o, b);
        ok_ops++;
    } else if (ret == -EEXIST && noreplace) {
        if (!may_be_present(o))
            VIOLATION("put %s NOREPLACE: -EEXIST, but it cannot exist", o->name);
        /* it exists: drop "absent" */
        for (guint i = 0; i < o->states->len;)
            if (!o->states->pdata[i])
                g_ptr_array_remove_index(o->states, i);
            else
                i++;
        ok_ops++;
    } else {
        check_clean(ret, &e, o->name);
        add_state(o, b);
    }
    g_bytes_unref(b);
}

static void op_get(struct vb_store *s, struct obj *o)
{
    GByteArray *out = g_byte_array_new();
    uint64_t off = 0;
    size_t len = 0;
    vb_error e = { 0 };
    int ret;

    for (guint i = 0; i < o->states->len; i++) {
        GBytes *b = o->states->pdata[i];
        if (b && g_bytes_get_size(b)) {
            size_t n = g_bytes_get_size(b);
            off = (uint64_t)g_rand_int_range(rnd, 0, (gint32)n);
            len = (size_t)g_rand_int_range(rnd, 0, (gint32)(n - off) + 1);
            break;
        }
    }
    ret = vb_store_get(s, o->name, off, len, out, &e);
    if (!ret) {
        if (out->len != len || !matches(o, off, out->data, len))
            VIOLATION("get %s %llu+%zu: data that the object never held", o->name,
                      (unsigned long long)off, len);
        ok_ops++;
    } else {
        if (out->len)
            VIOLATION("get %s: failed, yet %u bytes returned", o->name, out->len);
        if (ret == -ENOENT && !may_be_absent(o))
            VIOLATION("get %s: -ENOENT, but it exists", o->name);
        if (ret == -ENOENT || ret == -EIO)
            ok_ops++;       /* a legitimate answer (missing, or shorter) */
        else
            check_clean(ret, &e, o->name);
    }
    g_byte_array_free(out, TRUE);
}

static void op_stat(struct vb_store *s, struct obj *o)
{
    struct vb_obj_info info;
    vb_error e = { 0 };
    int ret = vb_store_stat(s, o->name, &info, &e);

    if (!ret) {
        if (!size_possible(o, info.size))
            VIOLATION("stat %s: size %llu the object never had", o->name,
                      (unsigned long long)info.size);
        ok_ops++;
    } else if (ret == -ENOENT) {
        if (!may_be_absent(o))
            VIOLATION("stat %s: -ENOENT, but it exists", o->name);
        ok_ops++;
    } else {
        check_clean(ret, &e, o->name);
    }
}

static void op_remove(struct vb_store *s, struct obj *o)
{
    vb_error e = { 0 };
    int ret = vb_store_remove(s, o->name, &e);

    if (!ret) {
        set_only(o, NULL);
        ok_ops++;
    } else if (ret == -ENOENT) {
        if (!may_be_absent(o))
            VIOLATION("remove %s: -ENOENT, but it exists", o->name);
        set_only(o, NULL);
        ok_ops++;
    } else {
        check_clean(ret, &e, o->name);
        add_state(o, NULL);
    }
}

static int listed(void *opaque, const char *name, const struct vb_obj_info *info, vb_error *e)
{
    GHashTable *seen = opaque;

    g_hash_table_insert(seen, g_strdup(name), GSIZE_TO_POINTER((gsize)info->size + 1));
    return 0;
}

static void op_list(struct vb_store *s)
{
    GHashTable *seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    vb_error e = { 0 };
    int ret = vb_store_list(s, "", listed, seen, &e);

    if (!ret) {
        for (int i = 0; i < NNAMES; i++) {
            gpointer v = g_hash_table_lookup(seen, objs[i].name);
            if (!v && !may_be_absent(&objs[i]))
                VIOLATION("list: %s missing", objs[i].name);
            if (v && !size_possible(&objs[i], GPOINTER_TO_SIZE(v) - 1))
                VIOLATION("list: %s with a size it never had", objs[i].name);
        }
        if (g_hash_table_size(seen) > NNAMES)
            VIOLATION("list: %u objects, more than were ever put", g_hash_table_size(seen));
        ok_ops++;
    } else {
        if (ret >= 0 || !e.msg[0])
            VIOLATION("list: unclean failure %d", ret);
        else
            fprintf(stderr, "s3-faults: failed cleanly: %s\n", e.msg);
        failed_ops++;
    }
    g_hash_table_destroy(seen);
}

/* puts and gets through a queue, several in flight */
static void op_queue(struct vb_store *s)
{
    struct vb_store_queue *q;
    struct vb_store_done d;
    GBytes *b[6] = { NULL };
    GByteArray *out[6];
    int which[6];
    vb_error e = { 0 };

    if (vb_store_queue_new(s, 6, &q, &e))
        g_error("queue: %s", vb_strerror(&e));
    for (int i = 0; i < 6; i++) {
        struct obj *o = &objs[g_rand_int_range(rnd, 0, NNAMES)];
        bool dup = false;
        for (int j = 0; j < i; j++)
            dup |= which[j] >= 0 && &objs[which[j]] == o;
        which[i] = (int)(o - objs);
        out[i] = g_byte_array_new();
        if (dup) {
            which[i] = -1;
            continue;
        }
        if (g_rand_boolean(rnd)) {
            gsize len;
            const void *data;
            b[i] = content();
            data = g_bytes_get_data(b[i], &len);
            if (vb_store_queue_put(q, o->name, data, len, 0, GINT_TO_POINTER(i), &e))
                g_error("queue put: %s", vb_strerror(&e));
            add_state(o, b[i]);     /* until it is reaped */
        } else {
            if (vb_store_queue_get(q, o->name, 0, 0, out[i], GINT_TO_POINTER(i), &e))
                g_error("queue get: %s", vb_strerror(&e));
        }
    }
    while (vb_store_queue_reap(q, true, &d) == 1) {
        int i = GPOINTER_TO_INT(d.tag);
        struct obj *o = &objs[which[i]];
        if (b[i] && !d.ret) {
            set_only(o, b[i]);
            ok_ops++;
        } else if (d.ret && d.ret != -ENOENT && d.ret != -EIO) {
            check_clean(d.ret, &d.err, o->name);
        } else {
            ok_ops++;
        }
        if (!b[i] && d.ret == -ENOENT && !may_be_absent(o))
            VIOLATION("queued get %s: -ENOENT, but it exists", o->name);
    }
    vb_store_queue_free(q);
    for (int i = 0; i < 6; i++) {
        if (b[i])
            g_bytes_unref(b[i]);
        g_byte_array_free(out[i], TRUE);
    }
}

/* Each object, read straight from radosgw, is whole: one of its states. */
static void final_check(struct vb_store *direct)
{
    GByteArray *out = g_byte_array_new();

    for (int i = 0; i < NNAMES; i++) {
        struct obj *o = &objs[i];
        struct vb_obj_info info;
        vb_error e = { 0 };
        int ret = vb_store_stat(direct, o->name, &info, &e);

        if (ret == -ENOENT) {
            if (!may_be_absent(o))
                VIOLATION("%s is gone, though it was put", o->name);
            continue;
        }
        if (ret)
            g_error("stat %s directly: %s", o->name, vb_strerror(&e));
        ret = vb_store_get(direct, o->name, 0, (size_t)info.size, out, &e);
        if (ret)
            g_error("get %s directly: %s", o->name, vb_strerror(&e));
        if (!size_possible(o, info.size) || !matches(o, 0, out->data, out->len))
            VIOLATION("%s holds %llu bytes that are none of the contents put (partial?)",
                      o->name, (unsigned long long)info.size);
    }
    g_byte_array_free(out, TRUE);
}

int main(int argc, char **argv)
{
    struct vb_store *s, *direct;
    char *loc, *opt_ep, *opt_att;
    unsigned seed, ops, attempts;
    vb_error e = { 0 };

    if (argc != 5) {
        fprintf(stderr, "usage: s3-faults PROXY_URL SEED OPS ATTEMPTS\n");
        return 2;
    }
    seed = (unsigned)strtoul(argv[2], NULL, 10);
    ops = (unsigned)strtoul(argv[3], NULL, 10);
    attempts = (unsigned)strtoul(argv[4], NULL, 10);
    rnd = g_rand_new_with_seed(seed);
    loc = g_strdup_printf("s3://vbtest/faults-%u-%u-%08x", seed, attempts, g_random_int());
    opt_ep = g_strdup_printf("endpoint=%s", argv[1]);
    opt_att = g_strdup_printf("attempts=%u", attempts);
    {
        /* The default timeout (60 s of no progress), not a short one: a request
         * that the client gives up on while the proxy still forwards it may
         * land at radosgw after the client's retry and after later operations
         * on the same name (a late write, as on any real network); the model
         * here does not allow for that, and the repository never rewrites a
         * name with other bytes (docs/repository-v2.md, "Late requests").
         * The proxy's delays (at most 0.6 s) stay far below it on any load. */
        const char *opts[] = { opt_ep, opt_att, "backoff_ms=5",
                               "multipart_threshold=5M", "part_size=5M", "connections=4",
                               NULL };
        const char *dopts[] = { "multipart_threshold=5M", "part_size=5M", NULL };
        /* the bucket through radosgw directly; opening through the proxy may fail */
        if (vb_store_open_opts(loc, VB_STORE_CREATE, dopts, &direct, &e))
            g_error("open %s directly: %s", loc, vb_strerror(&e));
        for (int tries = 0;; tries++) {
            if (!vb_store_open_opts(loc, 0, opts, &s, &e))
                break;
            if (tries >= 20)
                g_error("open %s through the proxy: %s", loc, vb_strerror(&e));
        }
    }
    for (int i = 0; i < NNAMES; i++) {
        objs[i].states = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
        g_ptr_array_add(objs[i].states, NULL);
        if (i % 3 == 0)
            snprintf(objs[i].name, sizeof(objs[i].name), "index/%02d", i);
        else
            snprintf(objs[i].name, sizeof(objs[i].name), "data/%02x/%02x%062x", i * 11 % 256,
                     i * 11 % 256, i);
    }
    for (unsigned n = 0; n < ops; n++) {
        struct obj *o = &objs[g_rand_int_range(rnd, 0, NNAMES)];
        switch (g_rand_int_range(rnd, 0, 10)) {
        case 0: case 1: case 2: op_put(s, o); break;
        case 3: case 4: op_get(s, o); break;
        case 5: op_stat(s, o); break;
        case 6: op_remove(s, o); break;
        case 7: op_list(s); break;
        default: op_queue(s); break;
        }
    }
    final_check(direct);
    printf("s3-faults: seed %u, %u attempts: %u operations succeeded, %u failed cleanly, "
           "%llu requests retried, %u violations\n", seed, attempts, ok_ops, failed_ops,
           (unsigned long long)vb_store_s3_retries(s), violations);
    vb_store_close(s);
    vb_store_close(direct);
    for (int i = 0; i < NNAMES; i++)
        g_ptr_array_free(objs[i].states, TRUE);
    g_free(loc);
    g_free(opt_ep);
    g_free(opt_att);
    g_rand_free(rnd);
    return violations ? 1 : 0;
}
