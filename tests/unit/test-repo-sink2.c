/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests: the write-session door over a version 2 session
 * (hostd/repo/sink2.c, vb_sink_v2): a files snapshot committed through it
 * and read back through the read door (snapread.h), its parent found again,
 * the session's token in the manifest's notes, the budget (charge) of what
 * a session adds, and a disk backup through the session's disk sink.
 */
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "diskbackup.h"
#include "diskrestore.h"
#include "disksink2.h"
#include "escape.h"
#include "repo-teststore.h"
#include "repo2-testlib.h"
#include "sink2.h"
#include "snapread.h"
#include "vbackup/protolib.h"

#define GROUP "files:/etc /data/\xff\xfe"
#define ROOT_BAD "/data/\xff\xfe"

/* ---- a small files backup through a sink -------------------------------------------------- */

/* Content of file n, chunk k (len bytes). */
static void fdata(unsigned n, unsigned k, uint8_t *out, size_t len)
{
    tdata(1000 + n, k, out, len);
}

struct tfiles {
    uint8_t *cat;            /* the serialized catalog */
    size_t cat_len;
    uint64_t entries, chunks, bytes;
    unsigned puts_new;       /* puts that stored */
    uint64_t stored;         /* what they reported */
};

static void tfiles_clear(struct tfiles *f)
{
    g_free(f->cat);
    memset(f, 0, sizeof(*f));
}

/* A chunk of file n through the sink, into the catalog at offset off. */
static int put_chunk(struct vb_sink *s, struct vb_codec *c, struct vb_catb *b, uint64_t idx,
                     unsigned n, unsigned k, uint64_t off, uint32_t len, struct tfiles *f,
                     vb_error *e)
{
    struct vb_cat_chunk ch = { .offset = off, .len = len };
    uint8_t *buf = g_malloc(len);
    uint32_t stored = 0;
    int ret;

    fdata(n, k, buf, len);
    ret = vb_sink_put(s, c, buf, len, ch.id, &stored, e);
    g_free(buf);
    if (ret < 0)
        return ret;
    if (ret == 1) {
        f->puts_new++;
        f->stored += stored;
        g_assert_cmpuint(stored, >, 0);
    }
    vb_catb_add_chunk(b, idx, &ch);
    return 0;
}

/*
 * The tree: a directory, three regular files (one with two chunks, one
 * with a run of written zeros, one holding the first file's first chunk
 * again), a symlink.  Chunks go through the sink; f gets the catalog.
 */
static int tfiles_build(struct vb_sink *s, struct tfiles *f, vb_error *e)
{
    struct vb_catb *b = vb_catb_new();
    struct vb_cat_entry m = { .type = VB_FT_DIR, .mode = 0755, .mtime_sec = 1700000000 };
    struct vb_codec c;
    uint64_t i;
    int ret;

    memset(f, 0, sizeof(*f));
    g_assert_cmpint(vb_codec_init(&c, 1), ==, 0);
    vb_catb_add(b, &m, "", 0, NULL, 0);
    vb_catb_add(b, &m, "etc", 3, NULL, 0);
    m.type = VB_FT_REG;
    m.mode = 0644;
    m.size = 100000 + 30000;
    i = vb_catb_add(b, &m, "etc/a", 5, NULL, 0);
    if ((ret = put_chunk(s, &c, b, i, 1, 0, 0, 100000, f, e)) ||
        (ret = put_chunk(s, &c, b, i, 1, 1, 100000, 30000, f, e)))
        goto out;
    m.size = 8192 + 5000;
    i = vb_catb_add(b, &m, "etc/b", 5, NULL, 0);
    {
        struct vb_cat_chunk z = { .offset = 0, .len = 8192, .flags = VB_CATC_ZERO };
        vb_catb_add_chunk(b, i, &z);
    }
    if ((ret = put_chunk(s, &c, b, i, 2, 0, 8192, 5000, f, e)))
        goto out;
    m.size = 100000;                        /* the same bytes as a's first chunk */
    i = vb_catb_add(b, &m, "etc/c", 5, NULL, 0);
    if ((ret = put_chunk(s, &c, b, i, 1, 0, 0, 100000, f, e)))
        goto out;
    memset(&m, 0, sizeof(m));
    m.type = VB_FT_SYMLINK;
    m.mode = 0777;
    vb_catb_add(b, &m, "etc/l", 5, "a", 1);
    f->cat = vb_catb_serialize(b, &f->cat_len, &f->entries, &f->chunks, &f->bytes);
out:
    vb_catb_free(b);
    vb_codec_free(&c);
    return ret;
}

struct tcommit {
    const char *group;
    const char *mode;
    const char *parent;
    int64_t created_ns;
};

/* Commit f through s as a files snapshot as vbackupd would describe it. */
static int tfiles_commit(struct vb_sink *s, const struct tfiles *f, const struct tcommit *tc,
                         char **id, vb_error *e)
{
    const char *roots[] = { "/etc", ROOT_BAD };
    json_object *disks = json_tokener_parse(
        "[{\"serial\": \"vda\", \"image\": \"/images/w.qcow2\", \"format\": \"qcow2\"}]");
    json_object *stats = json_tokener_parse(
        "{\"bytes_read\": 243192, \"bytes_new\": 135000, \"bytes_reused\": 0, "
        "\"stored_new\": 1, \"job\": 7, \"batch\": 3}");
    json_object *plan = json_tokener_parse("[\"full: the first backup of this group\"]");
    json_object *inc = json_tokener_parse(
        "{\"problems\": 2, \"listed\": [{\"path\": \"/etc/shadow\", \"reason\": \"EACCES\"}]}");
    struct vb_files_commit fc = {
        .group = tc->group ? tc->group : GROUP, .mode = tc->mode ? tc->mode : "full",
        .mode_note = tc->parent ? NULL : "no parent: full", .parent = tc->parent,
        .roots = roots, .nroots = 2, .catalog = f->cat, .catalog_len = f->cat_len,
        .entries = f->entries, .chunks = f->chunks, .bytes = f->bytes, .disks = disks,
        .stats = stats, .plan = plan, .incomplete = inc, .created_ns = tc->created_ns,
    };
    int ret;

    json_object_object_add(stats, "seconds", json_object_new_double(1.25));
    ret = vb_sink_files_commit(s, &fc, id, e);
    json_object_put(disks);
    json_object_put(stats);
    json_object_put(plan);
    json_object_put(inc);
    return ret;
}

/* Begin, back up the tree, commit; the snapshot's id (g_free) and the token. */
static char *tfiles_backup(struct vb2_repo *r, const char *vm, const char *dedup,
                           const struct tcommit *tc, struct tfiles *f, char token[33])
{
    struct vb_sink *s;
    vb_error e = { 0 };
    char *id = NULL, *ret;

    if (vb_sink_v2(r, "/repo", vm, dedup, &s, &e))
        g_error("vb_sink_v2: %s", vb_strerror(&e));
    if (tfiles_build(s, f, &e) || tfiles_commit(s, f, tc, &id, &e))
        g_error("files backup: %s", vb_strerror(&e));
    if (token)
        snprintf(token, 33, "%s", vb_sink_token(s));
    g_assert_null(vb_sink_warning(s));
    vb_sink_unref(s);
    ret = g_strdup(id);
    free(id);
    return ret;
}

static int64_t at(int day)
{
    return (int64_t)(1790000000 + day * 86400) * 1000000000;
}

/* The read door on t (its password from a file when encrypted). */
static struct vb_sr *sr_open(struct trepo *t)
{
    g_autofree char *pw = g_build_filename(t->cache, "password", NULL);
    struct vb_sr *sr;
    vb_error e = { 0 };

    g_assert_true(g_file_set_contents(pw, "correct horse", -1, NULL));
    if (vb_sr_open_secret(t->dir, false, pw, NULL, &sr, &e))
        g_error("open %s for reading: %s", t->dir, vb_strerror(&e));
    return sr;
}

/* Snapshots of vm listed through the read door. */
static guint sr_count(struct trepo *t, const char *vm)
{
    struct vb_sr *sr = sr_open(t);
    GPtrArray *l;
    vb_error e = { 0 };
    guint n;

    g_assert_cmpint(vb_sr_list(sr, vm, &l, &e), ==, 0);
    n = l->len;
    g_ptr_array_free(l, TRUE);
    vb_sr_close(sr);
    return n;
}

/* (a) a files snapshot read back through snapread; (c) its manifest */
static void test_files(void)
{
    struct trepo t;
    struct tfiles f;
    struct tcommit tc = { .created_ns = at(0) };
    struct vb_sr *sr;
    struct vb_sr_snap *ss;
    const struct vb_catalog *cat;
    struct vb_manifest *m;
    GPtrArray *l;
    GByteArray *ids = g_byte_array_new();
    json_object *v, *v2;
    vb_error e = { 0 };
    char token[33], *id;
    g_autofree char *root_esc = vb_escape(ROOT_BAD, strlen(ROOT_BAD));
    g_autofree char *group_esc = vb_escape(GROUP, strlen(GROUP));

    trepo_init(&t, VB_AEAD_NONE, 0);
    id = tfiles_backup(t.r, "web1", NULL, &tc, &f, token);
    g_assert_cmpstr(id, ==, "web1/2026-09-21T14:13:20Z");
    g_assert_cmpuint(f.puts_new, ==, 3);     /* c's chunk is a's */
    g_assert_cmpuint(strlen(token), ==, 32);
    g_assert_cmpuint(strspn(token, "0123456789abcdef"), ==, 32);

    /* listed and read back through the read door */
    sr = sr_open(&t);
    g_assert_cmpint(vb_sr_list(sr, "web1", &l, &e), ==, 0);
    g_assert_cmpuint(l->len, ==, 1);
    {
        const struct vb_sr_info *i = l->pdata[0];
        g_assert_cmpstr(i->id, ==, id);
        g_assert_cmpint(i->kind, ==, VB_SR_FILES);
        g_assert_cmpuint(i->size, ==, f.bytes);
        g_assert_cmpint(i->created_ns, ==, at(0));
    }
    g_ptr_array_free(l, TRUE);
    g_assert_cmpint(vb_sr_snap_open(sr, id, &ss, &e), ==, 0);
    cat = vb_sr_files_catalog(ss);
    g_assert_cmpuint(cat->n, ==, f.entries);
    g_assert_cmpuint(cat->len, ==, f.cat_len);
    g_assert_cmpmem(cat->data, cat->len, f.cat, f.cat_len);
    {
        static const struct { const char *path; unsigned n; } files[] = {
            { "etc/a", 1 }, { "etc/b", 2 }, { "etc/c", 1 } };
        size_t ll;
        uint64_t li = vb_cat_find(cat, "etc/l", 5);
        g_assert_cmpuint(li, !=, VB_CAT_NONE);
        g_assert_cmpint(cat->e[li].type, ==, VB_FT_SYMLINK);
        g_assert_cmpmem(vb_cat_link(cat, li, &ll), ll, "a", 1);
        g_assert_cmpint(cat->e[vb_cat_find(cat, "etc", 3)].type, ==, VB_FT_DIR);
        for (size_t k = 0; k < G_N_ELEMENTS(files); k++) {
            uint64_t i = vb_cat_find(cat, files[k].path, strlen(files[k].path));
            unsigned data_k = 0;
            g_assert_cmpuint(i, !=, VB_CAT_NONE);
            for (uint64_t x = 0; x < cat->e[i].n_chunks; x++) {
                const struct vb_cat_chunk *ch = &cat->c[cat->e[i].first_chunk + x];
                uint8_t *got, *want;
                if (ch->flags & VB_CATC_ZERO)
                    continue;
                got = g_malloc(ch->len);
                want = g_malloc(ch->len);
                fdata(files[k].n, data_k++, want, ch->len);
                g_assert_cmpint(vb_sr_read_chunk(sr, vb_sr_snap_space(ss), ch->id, got,
                                                 ch->len, &e), ==, 0);
                g_assert_cmpmem(got, ch->len, want, ch->len);
                g_free(got);
                g_free(want);
            }
            g_assert_cmpuint(data_k, >, 0);
        }
    }
    vb_sr_snap_close(ss);
    vb_sr_close(sr);

    /* the manifest: as a copy writes one, the token in its notes */
    g_assert_cmpint(vb2_snap_load(t.r, id, &m, &e), ==, 0);
    g_assert_cmpint(m->type, ==, VB_MF_FILES);
    g_assert_cmpstr(m->group, ==, group_esc);
    g_assert_cmpstr(m->mode, ==, "full");
    g_assert_null(m->parent);
    g_assert_null(m->dedup_group);
    g_assert_cmpuint(m->files.nroots, ==, 2);
    g_assert_cmpstr(m->files.roots[0], ==, "/etc");
    g_assert_cmpstr(m->files.roots[1], ==, root_esc);
    g_assert_cmpuint(m->files.entries, ==, f.entries);
    g_assert_cmpuint(m->files.bytes, ==, f.bytes);
    g_assert_true(json_object_object_get_ex(m->notes, "session", &v));
    g_assert_cmpstr(json_object_get_string(v), ==, token);
    g_assert_true(json_object_object_get_ex(m->notes, "mode_note", &v));
    g_assert_true(json_object_object_get_ex(m->notes, "plan", &v));
    g_assert_cmpuint(json_object_array_length(v), ==, 1);
    /* what the guest could not back up, one level flatter than vbackupd's */
    g_assert_true(json_object_object_get_ex(m->notes, "incomplete", &v));
    g_assert_true(json_object_object_get_ex(v, "problems", &v2));
    g_assert_cmpint(json_object_get_int(v2), ==, 2);
    g_assert_true(json_object_object_get_ex(m->notes, "incomplete_listed", &v));
    g_assert_cmpuint(json_object_array_length(v), ==, 1);
    g_assert_true(json_object_object_get_ex(m->source, "disks", &v));
    g_assert_cmpuint(json_object_array_length(v), ==, 1);
    g_assert_true(json_object_object_get_ex(m->stats, "seconds", &v));
    g_assert_true(json_object_is_type(v, json_type_double));
    g_assert_true(json_object_object_get_ex(m->stats, "batch", &v));
    g_assert_cmpint(json_object_get_int(v), ==, 3);
    /* the chunks stream: each distinct data chunk once (a's first, a's
     * second, b's; not the zeros, not c's again) */
    g_assert_cmpint(vb2_stream_get_all(t.r, m, &m->chunks, ids, &e), ==, 0);
    g_assert_cmpuint(ids->len, ==, 3 * VB_HASH_LEN);
    vb_manifest_free(m);

    /* the session's start when created_ns is 0 */
    {
        struct tfiles f2;
        struct tcommit now = { .group = "files:/srv" };
        int64_t before = vb_wall_ns();
        char *id2 = tfiles_backup(t.r, "web1", NULL, &now, &f2, NULL);
        g_assert_cmpint(vb2_snap_load(t.r, id2, &m, &e), ==, 0);
        g_assert_cmpint(m->created_ns, >=, before);
        g_assert_cmpint(m->created_ns, <=, vb_wall_ns());
        vb_manifest_free(m);
        tfiles_clear(&f2);
        g_free(id2);
    }

    g_byte_array_free(ids, TRUE);
    tfiles_clear(&f);
    g_free(id);
    trepo_free(&t);
}

/* A catalog naming a chunk the session neither stored nor found is refused. */
static void test_files_unknown_chunk(void)
{
    struct trepo t;
    struct tfiles f;
    struct tcommit tc = { .created_ns = at(0) };
    struct vb_sink *s;
    struct vb_catb *b = vb_catb_new();
    struct vb_cat_entry m = { .type = VB_FT_REG, .mode = 0644, .size = 4096 };
    struct vb_cat_chunk ch = { .offset = 0, .len = 4096 };
    vb_error e = { 0 };
    char *id = NULL;
    uint64_t i;

    trepo_init(&t, VB_AEAD_NONE, 0);
    g_assert_cmpint(vb_sink_v2(t.r, NULL, "web1", NULL, &s, &e), ==, 0);
    i = vb_catb_add(b, &m, "x", 1, NULL, 0);
    memset(ch.id, 0x5a, sizeof(ch.id));
    vb_catb_add_chunk(b, i, &ch);
    memset(&f, 0, sizeof(f));
    f.cat = vb_catb_serialize(b, &f.cat_len, &f.entries, &f.chunks, &f.bytes);
    vb_catb_free(b);
    g_assert_cmpint(tfiles_commit(s, &f, &tc, &id, &e), ==, -EBADMSG);
    g_assert_nonnull(strstr(e.msg, "neither stored nor found"));
    g_assert_nonnull(strstr(e.msg, "'x'"));
    g_assert_null(id);
    vb_sink_unref(s);
    g_assert_cmpuint(sr_count(&t, "web1"), ==, 0);
    tfiles_clear(&f);
    trepo_free(&t);
}

/* (b) files_parent: group as stored, full_only, the session's dedup group */
static void check_parent(struct vb2_repo *r, const char *dedup, const char *group,
                         bool full_only, const char *want, const struct tfiles *want_cat)
{
    struct vb_sink *s;
    struct vb_files_parent *p = NULL;
    vb_error e = { 0 };

    g_assert_cmpint(vb_sink_v2(r, NULL, "web1", dedup, &s, &e), ==, 0);
    g_assert_cmpint(vb_sink_files_parent(s, group, full_only, &p, &e), ==, 0);
    if (!want) {
        g_assert_null(p);
    } else {
        g_assert_nonnull(p);
        g_assert_cmpstr(p->id, ==, want);
        g_assert_false(p->known);
        g_assert_cmpmem(p->cat->data, p->cat->len, want_cat->cat, want_cat->cat_len);
        /* its chunks exist for this session: a backup takes them by has() */
        for (uint64_t k = 0; k < p->cat->n_chunks; k++)
            if (!(p->cat->c[k].flags & VB_CATC_ZERO))
                g_assert_true(vb_sink_has(s, p->cat->c[k].id));
        vb_sink_inherit(s, p->cat->c[0].id);      /* does nothing, safely */
    }
    vb_files_parent_free(p);
    vb_sink_unref(s);                       /* no commit: aborted */
}

static void test_parent(void)
{
    struct trepo t;
    struct tfiles f1, f2, f3, f4;
    struct tcommit c1 = { .created_ns = at(1) };
    struct tcommit c3 = { .group = "files:/srv", .created_ns = at(3) };
    struct tcommit c4 = { .created_ns = at(4) };
    char *id1, *id2, *id3, *id4;

    trepo_init(&t, VB_AEAD_NONE, 0);
    id1 = tfiles_backup(t.r, "web1", NULL, &c1, &f1, NULL);
    {
        struct tcommit c2 = { .mode = "incremental", .parent = id1, .created_ns = at(2) };
        id2 = tfiles_backup(t.r, "web1", NULL, &c2, &f2, NULL);
    }
    id3 = tfiles_backup(t.r, "web1", NULL, &c3, &f3, NULL);
    id4 = tfiles_backup(t.r, "web1", "other", &c4, &f4, NULL);

    check_parent(t.r, NULL, GROUP, false, id2, &f2);
    check_parent(t.r, NULL, GROUP, true, id1, &f1);
    check_parent(t.r, NULL, "files:/srv", false, id3, &f3);
    check_parent(t.r, NULL, "files:/none", false, NULL, NULL);
    check_parent(t.r, "", GROUP, false, id2, &f2);      /* "" is no dedup group too */
    check_parent(t.r, "other", GROUP, false, id4, &f4);
    check_parent(t.r, "other", "files:/srv", false, NULL, NULL);
    check_parent(t.r, "third", GROUP, true, NULL, NULL);
    /* the sessions that only looked left nothing behind */
    g_assert_cmpuint(sr_count(&t, "web1"), ==, 4);

    tfiles_clear(&f1);
    tfiles_clear(&f2);
    tfiles_clear(&f3);
    tfiles_clear(&f4);
    g_free(id1);
    g_free(id2);
    g_free(id3);
    g_free(id4);
    trepo_free(&t);
}

/* ---- (d) the budget ------------------------------------------------------------------------ */

struct budget {
    gint64 charged;          /* net: charges less give-backs */
    int64_t limit;           /* 0: none */
    bool refuse;             /* refuse every charge */
    gint releases;
    gint refusals;
};

static int budget_charge(void *opaque, int64_t bytes, vb_error *e)
{
    struct budget *b = opaque;

    if (bytes > 0 && (b->refuse || (b->limit && b->charged + bytes > b->limit))) {
        b->refusals++;
        return vb_seterr(e, -EDQUOT, "the quota of %lld bytes is used up",
                         (long long)b->limit);
    }
    b->charged += bytes;
    g_assert_cmpint(b->charged, >=, 0);
    return 0;
}

static void budget_release(void *opaque)
{
    ((struct budget *)opaque)->releases++;
}

static void test_charge(void)
{
    struct trepo t;
    struct tfiles f;
    struct tcommit tc = { .created_ns = at(0) };
    struct vb_sink *s;
    vb_error e = { 0 };
    char *id = NULL;

    trepo_init(&t, VB_AEAD_AES256GCM, 0);

    /* no limit: what was charged in the end is what the session added */
    {
        struct budget b = { 0 };
        g_assert_cmpint(vb_sink_v2(t.r, NULL, "web1", NULL, &s, &e), ==, 0);
        vb_sink_set_charge(s, budget_charge, &b, budget_release);
        g_assert_cmpint(tfiles_build(s, &f, &e), ==, 0);
        g_assert_cmpint(b.charged, ==, (gint64)vb_sink_added(s));
        g_assert_cmpint(b.charged, ==, (gint64)f.stored);
        g_assert_cmpint(tfiles_commit(s, &f, &tc, &id, &e), ==, 0);
        /* the catalog, the chunk list and the manifest on top */
        g_assert_cmpint(b.charged, >, (gint64)f.stored);
        g_assert_cmpint(b.charged, ==, (gint64)vb_sink_added(s));
        g_assert_cmpint(b.releases, ==, 0);
        vb_sink_unref(s);
        g_assert_cmpint(b.releases, ==, 1);
        tfiles_clear(&f);
        free(id);
        id = NULL;
    }

    /* a limit the third new chunk crosses: that put fails with the budget's
     * errno and reason, and the commit is refused; nothing is visible */
    {
        struct budget b = { .limit = 150000 };
        struct vb_codec c;
        struct vb_catb *cb = vb_catb_new();
        struct vb_cat_entry m = { .type = VB_FT_REG, .mode = 0644, .size = 3 * 70000 };
        struct tfiles part = { 0 };
        uint64_t i = vb_catb_add(cb, &m, "big", 3, NULL, 0);
        int ret;
        unsigned k;

        g_assert_cmpint(vb_codec_init(&c, 1), ==, 0);
        g_assert_cmpint(vb_sink_v2(t.r, NULL, "web1", NULL, &s, &e), ==, 0);
        vb_sink_set_charge(s, budget_charge, &b, budget_release);
        for (k = 0; k < 2; k++)
            g_assert_cmpint(put_chunk(s, &c, cb, i, 9, k, k * 70000, 70000, &part, &e), ==, 0);
        {
            uint8_t *buf = g_malloc(70000), rid[32];
            fdata(9, 2, buf, 70000);
            ret = vb_sink_put(s, &c, buf, 70000, rid, NULL, &e);
            g_assert_cmpint(ret, ==, -EDQUOT);
            g_assert_nonnull(strstr(e.msg, "quota of 150000 bytes is used up"));
            g_assert_cmpint(b.refusals, ==, 1);
            /* the refused chunk is not the session's, and was charged nothing */
            g_assert_false(vb_sink_has(s, rid));
            g_free(buf);
        }
        g_assert_cmpint(b.charged, ==, (gint64)vb_sink_added(s));
        g_assert_cmpint(b.charged, ==, (gint64)part.stored);
        part.cat = vb_catb_serialize(cb, &part.cat_len, &part.entries, &part.chunks,
                                     &part.bytes);
        vb_catb_free(cb);
        e = (vb_error){ 0 };
        ret = tfiles_commit(s, &part, &tc, &id, &e);
        g_assert_cmpint(ret, ==, -EDQUOT);
        g_assert_nonnull(strstr(e.msg, "used up"));
        g_assert_null(id);
        g_assert_cmpint(b.charged, ==, (gint64)vb_sink_added(s));
        vb_sink_unref(s);
        g_assert_cmpint(b.releases, ==, 1);
        g_assert_cmpuint(sr_count(&t, "web1"), ==, 1);
        vb_codec_free(&c);
        tfiles_clear(&part);
    }

    /* the manifest is charged too: refused, the commit fails and nothing is
     * visible; what was charged is still what the session added */
    {
        struct budget b = { 0 };
        struct vb2_write_opts wo = { .vm = "web1" };
        struct vb2_write *w;
        struct vb_manifest *m = vb_manifest_new();
        struct vb_codec c;
        uint8_t buf[5000], cid[32];
        char *mid = NULL;

        g_assert_cmpint(vb_codec_init(&c, 1), ==, 0);
        g_assert_cmpint(vb2_write_begin(t.r, &wo, &w, &e), ==, 0);
        vb2_write_set_charge(w, budget_charge, &b, budget_release);
        tdata(77, 0, buf, sizeof(buf));
        g_assert_cmpint(vb2_write_put(w, &c, VB_BLOB_DATA, buf, sizeof(buf), cid, NULL, &e),
                        ==, 1);
        m->type = VB_MF_DISK;
        m->group = g_strdup("disk:vda");
        m->mode = g_strdup("full");
        m->disk.name = g_strdup("vda");
        m->disk.size = 4096;
        m->disk.chunk_size = 4096;
        m->disk.chunk_count = 1;
        g_assert_cmpint(vb2_write_stream(w, &c, cid, 32, &m->chunks, &e), ==, 0);
        b.refuse = true;
        g_assert_cmpint(vb2_write_commit(w, m, &mid, &e), ==, -EDQUOT);
        g_assert_nonnull(strstr(e.msg, "used up"));
        g_assert_null(mid);
        g_assert_cmpint(b.refusals, ==, 1);
        g_assert_cmpint(b.charged, ==, (gint64)vb2_write_added(w));
        vb2_write_unref(w);
        g_assert_cmpint(b.releases, ==, 1);
        g_assert_cmpuint(sr_count(&t, "web1"), ==, 1);
        vb_manifest_free(m);
        vb_codec_free(&c);
    }
    trepo_free(&t);
}

/* ---- (e) a disk backup through the session's disk sink ---------------------------------------- */

static void test_disk(void)
{
    struct trepo t;
    struct vb2_repo_info info;
    g_autofree char *img = NULL;
    uint8_t *image;
    uint64_t size;
    struct vb_sink *s;
    struct vb_disk_sink sk;
    struct vb_disk_stats st;
    struct vb_disk_backup_opts o = { .vm = "db1", .format = "raw", .name = "vda",
                                     .threads = 2, .no_direct = true };
    struct vb_manifest *m;
    struct vb_sr *sr;
    struct vb_sr_snap *ss;
    struct budget b = { 0 };
    json_object *v;
    vb_error e = { 0 };
    char *id = NULL, *id2 = NULL, token[33];

    trepo_init(&t, VB_AEAD_CHACHA20POLY1305, 0);
    vb2_repo_info(t.r, &info);
    /* data, a hole, data again, and a short last chunk */
    size = 3 * (uint64_t)info.disk_chunk + 6144;   /* whole sectors, as a raw image is sized */
    image = g_malloc0(size);
    tdata(5, 0, image, info.disk_chunk);
    tdata(5, 2, image + 2 * (uint64_t)info.disk_chunk, info.disk_chunk + 6144);
    img = g_build_filename(t.cache, "disk.raw", NULL);
    g_assert_true(g_file_set_contents(img, (const char *)image, (gssize)size, NULL));
    o.image = img;

    g_assert_cmpint(vb_sink_v2(t.r, t.dir, "db1", NULL, &s, &e), ==, 0);
    snprintf(token, sizeof(token), "%s", vb_sink_token(s));
    vb_sink_set_charge(s, budget_charge, &b, budget_release);
    vb_sink_disk(s, &sk);
    g_assert_cmpstr(sk.location, ==, t.dir);
    g_assert_cmpstr(sk.space_name, ==, "(none)");
    g_assert_cmpuint(sk.chunk_size, ==, info.disk_chunk);
    if (vb_disk_backup(&sk, &o, &st, &id, &e))
        g_error("disk backup: %s", vb_strerror(&e));
    vb_disk_sink_clear(&sk);
    g_assert_cmpuint(st.chunks_hole, ==, 1);
    g_assert_cmpint(b.charged, ==, (gint64)vb_sink_added(s));
    g_assert_cmpint(b.charged, >, (gint64)st.stored_new);
    /* the session has ended with the commit */
    {
        struct vb_codec c;
        uint8_t cid[32];
        g_assert_cmpint(vb_codec_init(&c, 1), ==, 0);
        g_assert_cmpint(vb_sink_put(s, &c, "after the end", 13, cid, NULL, &e), ==, -ECANCELED);
        vb_codec_free(&c);
    }
    vb_sink_unref(s);
    g_assert_cmpint(b.releases, ==, 1);

    g_assert_cmpint(vb2_snap_load(t.r, id, &m, &e), ==, 0);
    g_assert_cmpint(m->type, ==, VB_MF_DISK);
    g_assert_true(json_object_object_get_ex(m->notes, "session", &v));
    g_assert_cmpstr(json_object_get_string(v), ==, token);
    g_assert_true(json_object_object_get_ex(m->notes, "tracking", &v));
    vb_manifest_free(m);

    /* restored through the read door, byte for byte */
    sr = sr_open(&t);
    g_assert_cmpint(vb_sr_snap_open(sr, id, &ss, &e), ==, 0);
    g_assert_cmpuint(vb_sr_disk_size(ss), ==, size);
    g_assert_cmpuint(vb_sr_disk_chunks(ss), ==, 4);
    g_assert_null(vb_sr_disk_chunk(ss, 1));
    for (uint64_t i = 0; i < vb_sr_disk_chunks(ss); i++) {
        uint64_t off = i * info.disk_chunk, len = VB_MIN((uint64_t)info.disk_chunk, size - off);
        const uint8_t *cid = vb_sr_disk_chunk(ss, i);
        uint8_t *got = g_malloc0(len);
        if (cid)
            g_assert_cmpint(vb_sr_read_chunk(sr, vb_sr_snap_space(ss), cid, got, len, &e), ==,
                            0);
        g_assert_cmpmem(got, len, image + off, len);
        g_free(got);
    }
    vb_sr_snap_close(ss);
    vb_sr_close(sr);

    /* vb2_disk_sink (a session of its own, over the same code) still works:
     * an incremental on top, its parent the first */
    g_assert_cmpint(vb2_disk_sink(t.r, t.dir, "db1", NULL, &sk, &e), ==, 0);
    o.mode = VB_MODE_INCREMENTAL;
    if (vb_disk_backup(&sk, &o, &st, &id2, &e))
        g_error("disk backup: %s", vb_strerror(&e));
    vb2_disk_sink_end(&sk);
    g_assert_cmpuint(st.chunks_new, ==, 0);
    g_assert_cmpint(vb2_snap_load(t.r, id2, &m, &e), ==, 0);
    g_assert_cmpstr(m->parent, ==, id);
    g_assert_false(json_object_object_get_ex(m->notes, "session", &v));
    vb_manifest_free(m);

    /* a disk sink taken and never used: the session is aborted, nothing left */
    g_assert_cmpint(vb_sink_v2(t.r, t.dir, "db1", NULL, &s, &e), ==, 0);
    vb_sink_disk(s, &sk);
    vb_disk_sink_clear(&sk);
    vb_sink_abort(s);
    vb_sink_unref(s);
    g_assert_cmpuint(sr_count(&t, "db1"), ==, 2);

    free(id);
    free(id2);
    g_free(image);
    trepo_free(&t);
}

/* ---- (f) a disk restore reads each pack with few range gets --------------------------------- */

static void test_restore_batched(void)
{
    struct trepo t;
    struct tdisk d = { .seed = 7, .chunk = 256 << 10, .nchunks = 40, .hole_every = 5 };
    struct vb_disk_restore_opts o = { .format = "raw", .batched = true };
    struct vb_disk_stats st;
    struct vb2_stats rst;
    struct vb2_open_opts oo;
    struct vb2_repo *r;
    struct teststore *ts;
    struct vb_sr *sr;
    g_autofree char *to = NULL, *got = NULL;
    uint8_t *want;
    gsize got_len = 0;
    uint64_t ranges, data_chunks = 0;
    int gets;
    vb_error e = { 0 };
    char *id = NULL;

    /* 1 MiB packs: the 32 chunks (about 8 MiB) fill several */
    trepo_init(&t, VB_AEAD_AES256GCM, 1 << 20);
    g_assert_cmpint(tbackup_disk(t.r, "db1", NULL, &d, &id, &e), ==, 0);
    g_assert_cmpint(vb2_stats(t.r, &rst, &e), ==, 0);
    g_assert_cmpuint(rst.packs, >=, 3);
    want = g_malloc0(d.nchunks * d.chunk);
    for (uint64_t i = 0; i < d.nchunks; i++) {
        if (tdisk_hole(&d, i))
            continue;
        tdisk_chunk(&d, i, want + i * d.chunk);
        data_chunks++;
    }
    trepo_close(&t);

    /* the same folder through a store that counts its requests and is not
     * "local": a restore reads it as it reads object storage */
    ts = teststore_new(t.dir);
    ts->ops.name = "counting";
    oo = trepo_open_opts(&t);
    g_assert_cmpint(vb2_repo_open_store(ts->s, t.dir, &oo, &r, &e), ==, 0);
    g_assert_cmpint(vb_sr_over(NULL, r, false, &sr, &e), ==, 0);
    g_assert_true(vb_sr_batches(sr));
    to = g_build_filename(t.cache, "restored.raw", NULL);
    o.snapshot = id;
    o.to = to;
    teststore_zero(ts);
    ranges = vb2_repo_range_gets(r);
    if (vb_disk_restore(sr, &o, &st, &e))
        g_error("restore: %s", vb_strerror(&e));
    ranges = vb2_repo_range_gets(r) - ranges;
    gets = g_atomic_int_get(&ts->count[TS_GET]);
    vb_sr_close(sr);
    vb2_repo_close(r);               /* and the store with it */
    g_free(ts->dir);
    g_free(ts);
    printf("# %" G_GUINT64_FORMAT " chunks in %" G_GUINT64_FORMAT " packs: %d gets, %"
           G_GUINT64_FORMAT " of them range gets of blobs (the chunk list's among them)\n",
           data_chunks, rst.packs, gets, ranges);
    g_assert_cmpuint(st.chunks_new, ==, data_chunks);
    /* one range get per pack (a batch is 64 MiB: every chunk at once), where
     * one per chunk was made before; the other gets: the manifest */
    g_assert_cmpuint(ranges, >=, 1);
    g_assert_cmpuint(ranges, <=, rst.packs);
    g_assert_cmpint(gets, <=, (int)rst.packs + 2);
    g_assert_true(g_file_get_contents(to, &got, &got_len, NULL));
    g_assert_cmpmem(got, got_len, want, d.nchunks * d.chunk);

    g_free(want);
    g_free(id);
    trepo_free(&t);
}

/* Every chunk of files snapshot id reads back through sr, with its length. */
static void read_back(struct vb_sr *sr, const char *id)
{
    struct vb_sr_snap *ss;
    const struct vb_catalog *cat;
    vb_error e = { 0 };

    if (vb_sr_snap_open(sr, id, &ss, &e))
        g_error("open %s: %s", id, vb_strerror(&e));
    cat = vb_sr_files_catalog(ss);
    for (uint64_t k = 0; k < cat->n_chunks; k++) {
        const struct vb_cat_chunk *ch = &cat->c[k];
        uint8_t *buf;
        if (ch->flags & VB_CATC_ZERO)
            continue;
        buf = g_malloc(ch->len);
        if (vb_sr_read_chunk(sr, vb_sr_snap_space(ss), ch->id, buf, ch->len, &e))
            g_error("snapshot %s, chunk %llu: %s", id, (unsigned long long)k, vb_strerror(&e));
        g_free(buf);
    }
    vb_sr_snap_close(ss);
}

/* ---- a session shared by the jobs of a batch --------------------------------------------- */

struct shared_job {
    struct vb_sink *s;
    struct tfiles f;
    int ret;
    vb_error e;
};

static gpointer shared_build(gpointer opaque)
{
    struct shared_job *j = opaque;

    j->ret = tfiles_build(j->s, &j->f, &j->e);
    return NULL;
}

/*
 * Three jobs of three VMs back up the same tree at once through one shared
 * session: the data is stored once; one job aborts, one is refused by its
 * budget, and neither fails the others' commits; each committed snapshot
 * reads back; gc condemns nothing a snapshot names and verify passes.
 */
static void test_shared(void)
{
    static const char *vms[] = { "clone1", "clone2", "clone3", "clone4" };
    struct shared_job jobs[4];
    struct vb2_write_opts wo = { .shared = true };
    struct vb2_write_stats st;
    struct budget tight = { .limit = 1 };
    struct trepo t;
    struct vb2_write *w;
    GThread *th[4];
    vb_error e = { 0 };
    char *ids[4] = { 0 };

    trepo_init(&t, VB_AEAD_CHACHA20POLY1305, 0);
    g_assert_cmpint(vb2_write_begin(t.r, &wo, &w, &e), ==, 0);
    for (int i = 0; i < 4; i++) {
        memset(&jobs[i], 0, sizeof(jobs[i]));
        g_assert_cmpint(vb_sink_v2_shared(t.r, w, "/repo", vms[i], NULL, &jobs[i].s, &e), ==, 0);
    }
    vb_sink_set_charge(jobs[3].s, budget_charge, &tight, budget_release);
    for (int i = 0; i < 4; i++)
        th[i] = g_thread_new("job", shared_build, &jobs[i]);
    for (int i = 0; i < 4; i++)
        g_thread_join(th[i]);
    for (int i = 0; i < 3; i++)
        g_assert_cmpint(jobs[i].ret, ==, 0);
    /* the budget refused clone4's first new chunk, if it came first, or found
     * every chunk stored by the others: either way it refused or added nothing */
    g_assert_true(jobs[3].ret == -EDQUOT || vb_sink_added(jobs[3].s) == 0);
    if (jobs[3].ret)
        g_assert_nonnull(strstr(vb_strerror(&jobs[3].e), "quota"));
    /* three distinct chunks, however many jobs put them */
    vb2_write_stats(w, &st);
    g_assert_cmpuint(st.blobs_new, ==, 3);

    /* clone2 aborts: the others commit all the same */
    vb_sink_abort(jobs[1].s);
    g_assert_cmpint(tfiles_commit(jobs[1].s, &jobs[1].f, &(struct tcommit){ .created_ns = at(0) },
                                  &ids[1], &e), ==, -ECANCELED);
    for (int i = 0; i < 3; i += 2) {
        struct tcommit tc = { .created_ns = at(i) };
        if (tfiles_commit(jobs[i].s, &jobs[i].f, &tc, &ids[i], &e))
            g_error("commit %s: %s", vms[i], vb_strerror(&e));
        g_assert_cmpstr(vb_sink_token(jobs[i].s), !=, vb_sink_token(jobs[(i + 1) % 4].s));
    }
    /* a job whose commit came and went cannot put any more; the session goes on */
    {
        uint8_t buf[4096], id[32];
        struct vb_codec c;
        memset(buf, 7, sizeof(buf));
        g_assert_cmpint(vb_codec_init(&c, 1), ==, 0);
        g_assert_cmpint(vb_sink_put(jobs[0].s, &c, buf, sizeof(buf), id, NULL, &e), ==,
                        -ECANCELED);
        g_assert_cmpint(vb_sink_put(jobs[3].s, &c, buf, sizeof(buf), id, NULL, &e), <=, 1);
        vb_codec_free(&c);
    }
    for (int i = 0; i < 4; i++) {
        vb_sink_unref(jobs[i].s);
        tfiles_clear(&jobs[i].f);
    }
    g_assert_cmpint(tight.releases, ==, 1);
    vb2_write_unref(w);

    /* both snapshots read back; the data is in the repository once */
    {
        struct vb_sr *sr = sr_open(&t);
        struct vb2_gc_report rep = { 0 };
        struct vb2_verify_report vr = { 0 };
        struct vb2_verify_opts vo = { .read_data = true };
        for (int i = 0; i < 3; i += 2)
            read_back(sr, ids[i]);
        vb_sr_close(sr);
        g_assert_cmpuint(sr_count(&t, "clone2"), ==, 0);
        g_assert_cmpint(vb2_gc(t.r, NULL, &rep, &e), ==, 0);
        g_assert_cmpuint(rep.snapshots, ==, 2);
        g_assert_cmpuint(rep.packs_condemned, ==, 0);
        g_assert_cmpint(vb2_verify(t.r, &vo, &vr, &e), ==, 0);
        g_assert_cmpuint(vr.problems->len, ==, 0);
        g_assert_cmpuint(vr.blobs, >=, 3);
        vb2_verify_report_free(&vr);
    }
    for (int i = 0; i < 4; i++)
        free(ids[i]);
    trepo_free(&t);
}

/* A job that puts fresh chunks until told to stop (others commit meanwhile). */
struct busy_job {
    struct vb_sink *s;
    gint stop;
    unsigned puts;
    int ret;
};

static gpointer busy_put(gpointer opaque)
{
    struct busy_job *b = opaque;
    struct vb_codec c;
    uint8_t *buf = g_malloc(200000), id[32];
    vb_error e = { 0 };

    g_assert_cmpint(vb_codec_init(&c, 1), ==, 0);
    while (!g_atomic_int_get(&b->stop) && !b->ret && b->puts < 400) {
        tdata(5000 + b->puts, 0, buf, 200000);
        b->ret = vb_sink_put(b->s, &c, buf, 200000, id, NULL, &e) < 0;
        b->puts++;
    }
    vb_codec_free(&c);
    g_free(buf);
    return NULL;
}

/*
 * Commits of a shared session while other jobs keep putting: each commit
 * waits only for what was put before it (the others go on meanwhile, and
 * their packs belong to later commits), and every committed snapshot reads
 * back whole.  Packs are small here, so that many are uploaded meanwhile.
 */
static void test_shared_busy(void)
{
    struct vb2_write_opts wo = { .shared = true };
    struct busy_job busy = { 0 };
    struct trepo t;
    struct vb2_write *w;
    GThread *th;
    vb_error e = { 0 };
    char *ids[5] = { 0 };

    trepo_init(&t, VB_AEAD_NONE, 1u << 20);
    g_assert_cmpint(vb2_write_begin(t.r, &wo, &w, &e), ==, 0);
    g_assert_cmpint(vb_sink_v2_shared(t.r, w, "/repo", "busy", NULL, &busy.s, &e), ==, 0);
    th = g_thread_new("busy", busy_put, &busy);
    for (int i = 0; i < 5; i++) {
        struct vb_sink *s;
        struct tfiles f;
        struct tcommit tc = { .created_ns = at(i) };
        g_assert_cmpint(vb_sink_v2_shared(t.r, w, "/repo", "quick", NULL, &s, &e), ==, 0);
        if (tfiles_build(s, &f, &e) || tfiles_commit(s, &f, &tc, &ids[i], &e))
            g_error("job %d of a busy session: %s", i, vb_strerror(&e));
        vb_sink_unref(s);
        tfiles_clear(&f);
    }
    g_atomic_int_set(&busy.stop, 1);
    g_thread_join(th);
    g_assert_cmpint(busy.ret, ==, 0);
    g_assert_cmpuint(busy.puts, >, 0);
    vb_sink_unref(busy.s);              /* never committed: its blobs are gc's */
    vb2_write_unref(w);
    {
        struct vb_sr *sr = sr_open(&t);
        struct vb2_verify_report vr = { 0 };
        struct vb2_verify_opts vo = { .read_data = false };
        for (int i = 0; i < 5; i++) {
            read_back(sr, ids[i]);
            free(ids[i]);
        }
        vb_sr_close(sr);
        g_assert_cmpint(vb2_verify(t.r, &vo, &vr, &e), ==, 0);
        g_assert_cmpuint(vr.problems->len, ==, 0);
        vb2_verify_report_free(&vr);
    }
    trepo_free(&t);
}

int main(int argc, char **argv)
{
    g_autofree char *cache = g_dir_make_tmp("vb-sink2-cache-XXXXXX", NULL);
    int ret;

    /* the read door opens with the default cache folder: a private one */
    g_setenv("VBACKUP_CACHE", cache, TRUE);
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/repo-sink2/files", test_files);
    g_test_add_func("/repo-sink2/files-unknown-chunk", test_files_unknown_chunk);
    g_test_add_func("/repo-sink2/parent", test_parent);
    g_test_add_func("/repo-sink2/charge", test_charge);
    g_test_add_func("/repo-sink2/disk", test_disk);
    g_test_add_func("/repo-sink2/restore-batched", test_restore_batched);
    g_test_add_func("/repo-sink2/shared", test_shared);
    g_test_add_func("/repo-sink2/shared-busy", test_shared_busy);
    ret = g_test_run();
    vb_rm_rf_at(AT_FDCWD, cache);
    return ret;
}
