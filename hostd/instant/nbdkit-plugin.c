/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * nbdkit-vbackup-plugin: one disk snapshot of a vbackup repository, served
 * read-only over NBD (docs/instant-access.md).
 *
 *   nbdkit -r vbackup repo=DIR snapshot=VM/TIME [cache=SIZE] [readahead=N]
 *          [prefetch-threads=N]
 *
 * Requests run in parallel (NBDKIT_THREAD_MODEL_PARALLEL): every nbdkit
 * thread can have a chunk read in flight; a bounded LRU cache of decoded
 * chunks (chunkcache.c) is shared by all connections; readers that go
 * through the disk in order get the next chunks read ahead; block status
 * (.extents) reports the snapshot's holes, so clients skip them.  The
 * repository is read only through snapread.h, with a read claim held from
 * start to exit (gc waits for the export).
 */
#define NBDKIT_API_VERSION 2
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

#include <nbdkit-plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunkcache.h"
#include "diskread.h"
#include "snapread.h"
#include "workers.h"

#define DEFAULT_CACHE      (256u << 20)
#define DEFAULT_READAHEAD  8u

static char *repo_path;
static char *snapshot_id;
static uint64_t cache_bytes = DEFAULT_CACHE;
static unsigned readahead = DEFAULT_READAHEAD;
static int prefetch_threads;          /* 0: one per CPU, at least 2 */
static char *description;

static struct vb_sr *sr;
static struct vb_sr_snap *snap;
static struct vb_ccache *cache;
static struct vb_diskread *disk;

static void vbp_unload(void)
{
    free(repo_path);
    free(snapshot_id);
    free(description);
}

static int parse_count(const char *key, const char *value, unsigned max, unsigned *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(value, &end, 10);
    if (errno || !*value || *end || value[0] == '-' || v > max) {
        nbdkit_error("%s: a number from 0 to %u, not '%s'", key, max, value);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

static int vbp_config(const char *key, const char *value)
{
    unsigned n;

    if (!strcmp(key, "repo")) {
        free(repo_path);
        repo_path = nbdkit_realpath(value);
        return repo_path ? 0 : -1;
    }
    if (!strcmp(key, "snapshot")) {
        free(snapshot_id);
        snapshot_id = strdup(value);
        return snapshot_id ? 0 : -1;
    }
    if (!strcmp(key, "cache")) {
        int64_t v = nbdkit_parse_size(value);
        if (v < 0)
            return -1;
        if (v < (int64_t)VB_CHUNK_MAX) {
            nbdkit_error("cache: at least 16M (one chunk of the largest size), not '%s'", value);
            return -1;
        }
        cache_bytes = (uint64_t)v;
        return 0;
    }
    if (!strcmp(key, "readahead"))
        return parse_count(key, value, 256, &readahead);
    if (!strcmp(key, "prefetch-threads")) {
        if (parse_count(key, value, 64, &n))
            return -1;
        prefetch_threads = (int)n;
        return 0;
    }
    nbdkit_error("unknown parameter '%s' (repo, snapshot, cache, readahead, prefetch-threads)",
                 key);
    return -1;
}

static int vbp_config_complete(void)
{
    if (!repo_path || !snapshot_id) {
        nbdkit_error("repo=DIR and snapshot=VM/TIME are required");
        return -1;
    }
    return 0;
}

#define vbp_config_help \
    "repo=DIR              (required) the vbackup repository\n" \
    "snapshot=VM/TIME      (required) the disk snapshot to serve\n" \
    "cache=SIZE            decoded chunks kept in memory (default 256M)\n" \
    "readahead=N           chunks read ahead of a sequential reader (default 8)\n" \
    "prefetch-threads=N    threads reading ahead (default: one per CPU, at least 2)"

/* Open the repository and the snapshot before serving: an error stops
 * nbdkit at once, with the reason, instead of failing each connection. */
static int vbp_get_ready(void)
{
    vb_error e = { 0 };
    const struct vb_sr_info *i;

    if (vb_sr_open(repo_path, true, &sr, &e) || vb_sr_snap_open(sr, snapshot_id, &snap, &e)) {
        nbdkit_error("%s", vb_strerror(&e));
        return -1;
    }
    i = vb_sr_snap_info(snap);
    if (i->kind != VB_SR_DISK) {
        nbdkit_error("snapshot %s is a files snapshot, not a disk (vbackupctl mount shows "
                     "files)", snapshot_id);
        return -1;
    }
    if (asprintf(&description, "vbackup disk snapshot %s (disk %s)", i->id, i->disk) < 0)
        description = NULL;
    cache = vb_ccache_new(sr, cache_bytes);
    disk = vb_diskread_new(snap, cache, readahead);
    nbdkit_debug("snapshot %s: %llu bytes, %llu chunks of %u bytes", i->id,
                 (unsigned long long)vb_sr_disk_size(snap),
                 (unsigned long long)vb_sr_disk_chunks(snap), vb_sr_disk_chunk_size(snap));
    return 0;
}

/* threads are started after nbdkit forked into the background, if it does */
static int vbp_after_fork(void)
{
    vb_error e = { 0 };
    int n = prefetch_threads ? prefetch_threads : VB_MAX(vb_cpu_count(), 2);

    if (readahead && vb_ccache_start_prefetch(cache, n, &e)) {
        nbdkit_error("%s", vb_strerror(&e));
        return -1;
    }
    return 0;
}

static void vbp_cleanup(void)
{
    if (cache) {
        struct vb_ccache_stats st;
        vb_ccache_stats(cache, &st);
        nbdkit_debug("chunk cache: %llu hits, %llu misses, %llu waits, %llu read ahead, "
                     "%llu evicted, %llu errors", (unsigned long long)st.hits,
                     (unsigned long long)st.misses, (unsigned long long)st.waits,
                     (unsigned long long)st.prefetched, (unsigned long long)st.evicted,
                     (unsigned long long)st.errors);
    }
    vb_diskread_free(disk);
    vb_ccache_free(cache);
    vb_sr_snap_close(snap);
    vb_sr_close(sr);
    disk = NULL;
    cache = NULL;
    snap = NULL;
    sr = NULL;
}

static const char *vbp_default_export(int readonly, int is_tls)
{
    return snapshot_id;
}

static void *vbp_open(int readonly)
{
    const char *name = nbdkit_export_name();

    /* an overlay made for another snapshot must not read this one */
    if (name && *name && strcmp(name, snapshot_id)) {
        nbdkit_error("this server exports snapshot %s, not '%s'", snapshot_id, name);
        errno = ENOENT;
        return NULL;
    }
    return disk;
}

static const char *vbp_export_description(void *h)
{
    return description;
}

static int64_t vbp_get_size(void *h)
{
    return (int64_t)vb_diskread_size(h);
}

static int vbp_can_write(void *h)
{
    return 0;
}

static int vbp_can_multi_conn(void *h)
{
    return 1;                /* read-only: every connection sees the same bytes */
}

static int vbp_can_cache(void *h)
{
    return NBDKIT_CACHE_NATIVE;
}

static int vbp_can_extents(void *h)
{
    return 1;
}

static int vbp_pread(void *h, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
    vb_error e = { 0 };
    int ret = vb_diskread_pread(h, buf, count, offset, &e);

    if (ret) {
        nbdkit_error("read of %u bytes at %llu: %s", count, (unsigned long long)offset,
                     vb_strerror(&e));
        nbdkit_set_error(ret == -EINVAL ? EINVAL : EIO);
        return -1;
    }
    return 0;
}

static int vbp_extents(void *h, uint32_t count, uint64_t offset, uint32_t flags,
                       struct nbdkit_extents *ext)
{
    uint64_t end = offset + count, size = vb_diskread_size(h);

    end = VB_MIN(end, size);
    while (offset < end) {
        uint64_t len;
        bool hole;
        vb_diskread_extent(h, offset, end - offset, &len, &hole);
        if (nbdkit_add_extent(ext, offset, len, hole ? NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO
                                                     : 0) < 0)
            return -1;
        offset += len;
        if (flags & NBDKIT_FLAG_REQ_ONE)
            break;
    }
    return 0;
}

static int vbp_cache(void *h, uint32_t count, uint64_t offset, uint32_t flags)
{
    vb_diskread_prefetch(h, offset, count);
    return 0;
}

static void vbp_dump_plugin(void)
{
    printf("vbackup_chunk_cache_default=%u\n", DEFAULT_CACHE);
    printf("vbackup_readahead_default=%u\n", DEFAULT_READAHEAD);
}

static struct nbdkit_plugin plugin = {
    .name = "vbackup",
    .longname = "vbackup disk snapshot (read-only)",
    .version = "0.1.0",
    .description = "Serve a whole-disk snapshot of a vbackup repository, read-only",
    .unload = vbp_unload,
    .config = vbp_config,
    .config_complete = vbp_config_complete,
    .config_help = vbp_config_help,
    .get_ready = vbp_get_ready,
    .after_fork = vbp_after_fork,
    .cleanup = vbp_cleanup,
    .default_export = vbp_default_export,
    .open = vbp_open,
    .export_description = vbp_export_description,
    .get_size = vbp_get_size,
    .can_write = vbp_can_write,
    .can_multi_conn = vbp_can_multi_conn,
    .can_cache = vbp_can_cache,
    .can_extents = vbp_can_extents,
    .pread = vbp_pread,
    .extents = vbp_extents,
    .cache = vbp_cache,
    .dump_plugin = vbp_dump_plugin,
    .errno_is_preserved = 0,
};

struct nbdkit_plugin *plugin_init(void);   /* defined by the macro below */

NBDKIT_REGISTER_PLUGIN(plugin)
