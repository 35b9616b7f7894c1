/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * PUT and GET throughput of the S3 store (hostd/repo/store-s3.c) with N
 * requests in flight through one store queue: bench/s3-bench runs it
 * against the test radosgw.  Objects are pack-sized (default 16 MiB) of
 * random bytes; each row writes COUNT objects, then reads them back whole
 * and checks them.  Prints a markdown table.
 *
 *   s3-bench LOCATION SIZE_MIB COUNT N...
 */
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>

#include "names.h"
#include "store-backend.h"

static double now(void)
{
    return (double)g_get_monotonic_time() / 1e6;
}

static void reap_one(struct vb_store_queue *q)
{
    struct vb_store_done d;

    if (vb_store_queue_reap(q, true, &d) == 1 && d.ret)
        g_error("%s", vb_strerror(&d.err));
}

int main(int argc, char **argv)
{
    size_t size;
    unsigned count;
    uint8_t *data;
    struct vb_store *s;
    vb_error e = { 0 };
    char (*names)[VB_OBJ_NAME_MAX];

    if (argc < 5) {
        fprintf(stderr, "usage: s3-bench LOCATION SIZE_MIB COUNT N...\n");
        return 2;
    }
    size = (size_t)strtoul(argv[2], NULL, 10) << 20;
    count = (unsigned)strtoul(argv[3], NULL, 10);
    data = g_malloc(size);
    RAND_bytes(data, (int)size);
    names = g_malloc_n(count, VB_OBJ_NAME_MAX);
    if (vb_store_open_opts(argv[1], VB_STORE_CREATE,
                           (const char *const[]){ "connections=64", NULL }, &s, &e))
        g_error("open %s: %s", argv[1], vb_strerror(&e));
    printf("| in flight | PUT MB/s | GET MB/s | objects | retries |\n");
    printf("|---:|---:|---:|---:|---:|\n");
    for (int a = 4; a < argc; a++) {
        unsigned n = (unsigned)strtoul(argv[a], NULL, 10);
        GByteArray **outs = g_malloc_n(n, sizeof(*outs));
        struct vb_store_queue *q;
        uint64_t retries = vb_store_s3_retries(s);
        double t0, put_s, get_s;

        if (vb_store_queue_new(s, n, &q, &e))
            g_error("%s", vb_strerror(&e));
        t0 = now();
        for (unsigned i = 0; i < count; i++) {
            uint8_t id[VB_OBJ_ID_LEN];
            RAND_bytes(id, sizeof(id));
            vb_obj_name(VB_OBJ_PACK, id, names[i]);
            /* each object differs in its first bytes (no server-side dedup) */
            memcpy(data, id, sizeof(id));
            if (vb_store_queue_pending(q) >= n)
                reap_one(q);
            /* the data of a put must not change until reaped: one buffer per
             * object would cost n × size; the first 32 bytes are copied */
            {
                uint8_t *copy = g_memdup2(data, size);
                if (vb_store_queue_put(q, names[i], copy, size, 0, copy, &e))
                    g_error("%s", vb_strerror(&e));
            }
            /* free buffers of finished puts */
            {
                struct vb_store_done d;
                while (vb_store_queue_reap(q, false, &d) == 1) {
                    if (d.ret)
                        g_error("%s", vb_strerror(&d.err));
                    g_free(d.tag);
                }
            }
        }
        {
            struct vb_store_done d;
            while (vb_store_queue_reap(q, true, &d) == 1) {
                if (d.ret)
                    g_error("%s", vb_strerror(&d.err));
                g_free(d.tag);
            }
        }
        put_s = now() - t0;
        for (unsigned i = 0; i < n; i++)
            outs[i] = g_byte_array_new();
        t0 = now();
        for (unsigned i = 0, slot = 0; i < count; i++) {
            struct vb_store_done d;
            if (vb_store_queue_pending(q) >= n) {
                if (vb_store_queue_reap(q, true, &d) != 1 || d.ret)
                    g_error("get: %s", vb_strerror(&d.err));
                slot = GPOINTER_TO_UINT(d.tag);
                if (memcmp(outs[slot]->data + VB_OBJ_ID_LEN, data + VB_OBJ_ID_LEN,
                           size - VB_OBJ_ID_LEN))
                    g_error("get: wrong data");
            } else {
                slot = vb_store_queue_pending(q);
            }
            if (vb_store_queue_get(q, names[i], 0, size, outs[slot], GUINT_TO_POINTER(slot), &e))
                g_error("%s", vb_strerror(&e));
        }
        {
            struct vb_store_done d;
            while (vb_store_queue_reap(q, true, &d) == 1)
                if (d.ret)
                    g_error("get: %s", vb_strerror(&d.err));
        }
        get_s = now() - t0;
        printf("| %u | %.1f | %.1f | %u × %zu MiB | %llu |\n", n,
               (double)count * (double)size / 1e6 / put_s,
               (double)count * (double)size / 1e6 / get_s, count, size >> 20,
               (unsigned long long)(vb_store_s3_retries(s) - retries));
        fflush(stdout);
        vb_store_queue_free(q);
        for (unsigned i = 0; i < count; i++)
            vb_store_remove(s, names[i], NULL);
        for (unsigned i = 0; i < n; i++)
            g_byte_array_free(outs[i], TRUE);
        g_free(outs);
    }
    vb_store_close(s);
    g_free(names);
    g_free(data);
    return 0;
}
