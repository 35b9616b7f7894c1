/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests: the local-folder store (hostd/repo/store-local.c), each case
 * twice: names resolved with openat2, and one component at a time as on a
 * kernel without it.  A tampered repository (links, files and FIFOs where
 * folders or objects belong, mount points) gives errors naming the culprit
 * and never touches anything outside the repository.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <grp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store-backend.h"
#include "store-conformance.h"

#define PACK "data/ab/ab00000000000000000000000000000000000000000000000000000000000001"

struct fx {
    char *tmp;          /* everything below is inside */
    char *repo;         /* tmp/repo */
    char *outside;      /* tmp/outside: must never change */
    char *before;       /* outside's listing when the test began */
    struct vb_store *s;
};

static char *path(struct fx *f, const char *rel)
{
    return g_build_filename(f->repo, rel, NULL);
}

static int cmp_str(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A listing of a tree with every file's content, links not followed. */
static void describe_tree(GString *out, const char *dir, const char *rel)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    const char *n;

    g_assert_nonnull(d);
    while ((n = g_dir_read_name(d)))
        g_ptr_array_add(names, g_strdup(n));
    g_dir_close(d);
    g_ptr_array_sort(names, cmp_str);
    for (guint i = 0; i < names->len; i++) {
        char *p = g_build_filename(dir, names->pdata[i], NULL);
        char *r = g_build_filename(rel, names->pdata[i], NULL);
        struct stat st;

        g_assert_cmpint(lstat(p, &st), ==, 0);
        g_string_append_printf(out, "%s %o %lld", r, st.st_mode, (long long)st.st_size);
        if (S_ISDIR(st.st_mode)) {
            g_string_append_c(out, '\n');
            describe_tree(out, p, r);
        } else if (S_ISREG(st.st_mode)) {
            char *data;
            gsize len;
            g_assert_true(g_file_get_contents(p, &data, &len, NULL));
            g_string_append_printf(out, " [%.*s]\n", (int)len, data);
            g_free(data);
        } else {
            g_string_append_c(out, '\n');
        }
        g_free(p);
        g_free(r);
    }
    g_ptr_array_free(names, TRUE);
}

static char *tree(const char *dir)
{
    GString *s = g_string_new(NULL);

    describe_tree(s, dir, "");
    return g_string_free(s, FALSE);
}

static void write_file(const char *p, const char *content)
{
    g_assert_true(g_file_set_contents(p, content, -1, NULL));
}

static void setup(struct fx *f, gconstpointer walk)
{
    char *p;
    vb_error e = { 0 };

    vb_store_local_test_no_openat2(GPOINTER_TO_INT(walk));
    f->tmp = g_dir_make_tmp("vb-store-local-XXXXXX", NULL);
    g_assert_nonnull(f->tmp);
    f->repo = g_build_filename(f->tmp, "repo", NULL);
    f->outside = g_build_filename(f->tmp, "outside", NULL);
    g_assert_cmpint(mkdir(f->outside, 0700), ==, 0);
    p = g_build_filename(f->outside, "ab", NULL);
    g_assert_cmpint(mkdir(p, 0700), ==, 0);
    g_free(p);
    p = g_build_filename(f->outside, "ab", "victim", NULL);
    write_file(p, "outside ab/victim");
    g_free(p);
    p = g_build_filename(f->outside, "victim", NULL);
    write_file(p, "outside victim");
    g_free(p);
    p = g_build_filename(f->outside, "ab", ".tmp-0123456789abcdef", NULL);
    write_file(p, "outside temporary file");
    g_free(p);
    f->before = tree(f->outside);
    g_assert_cmpint(vb_store_open(f->repo, VB_STORE_CREATE, &f->s, &e), ==, 0);
}

static void teardown(struct fx *f, gconstpointer walk)
{
    char *after = tree(f->outside);

    g_assert_cmpstr(after, ==, f->before);    /* nothing outside ever changes */
    g_free(after);
    vb_store_close(f->s);
    g_assert_cmpint(vb_rm_rf_at(AT_FDCWD, f->tmp), ==, 0);
    g_free(f->tmp);
    g_free(f->repo);
    g_free(f->outside);
    g_free(f->before);
    vb_store_local_test_no_openat2(false);
}

static int collect(void *opaque, const char *name, const struct vb_obj_info *info, vb_error *e)
{
    g_ptr_array_add(opaque, g_strdup_printf("%s:%llu", name, (unsigned long long)info->size));
    return 0;
}

/* The listing under prefix, sorted, "name:size,..." (or NULL on error, e set). */
static char *list(struct fx *f, const char *prefix, int *ret, vb_error *e)
{
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    char *out;

    *ret = vb_store_list(f->s, prefix, collect, names, e);
    g_ptr_array_sort(names, cmp_str);
    g_ptr_array_add(names, NULL);
    out = *ret ? NULL : g_strjoinv(",", (char **)names->pdata);
    g_ptr_array_free(names, TRUE);
    return out;
}

static void assert_list(struct fx *f, const char *prefix, const char *want)
{
    vb_error e = { 0 };
    int ret;
    char *got = list(f, prefix, &ret, &e);

    if (ret)
        g_error("list %s: %s", prefix, vb_strerror(&e));
    g_assert_cmpstr(got, ==, want);
    g_free(got);
}

/* No temporary file is left anywhere in the repository. */
static void assert_no_tmp(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *n;

    g_assert_nonnull(d);
    while ((n = g_dir_read_name(d))) {
        char *p = g_build_filename(dir, n, NULL);
        g_assert_false(g_str_has_prefix(n, ".tmp-"));
        if (g_file_test(p, G_FILE_TEST_IS_DIR) && !g_file_test(p, G_FILE_TEST_IS_SYMLINK))
            assert_no_tmp(p);
        g_free(p);
    }
    g_dir_close(d);
}

static void assert_get(struct fx *f, const char *name, uint64_t off, size_t len,
                       const char *want)
{
    GByteArray *out = g_byte_array_new();
    vb_error e = { 0 };
    int ret = vb_store_get(f->s, name, off, len, out, &e);

    if (ret)
        g_error("get %s: %s", name, vb_strerror(&e));
    g_assert_cmpmem(out->data, out->len, want, strlen(want));
    g_byte_array_free(out, TRUE);
}

/* call (with ERR for its vb_error) fails with code, its message containing word */
#define ERR (&e_)
#define assert_fails(call, code, word)                                          \
    do {                                                                        \
        vb_error e_ = { 0 };                                                    \
        int r_ = (call);                                                        \
        if (r_ != (code) || !strstr(e_.msg, (word)))                            \
            g_error("%s: got %d (%s), want %d and '%s'", #call, r_,             \
                    vb_strerror(&e_), (code), (word));                          \
    } while (0)

static void test_roundtrip(struct fx *f, gconstpointer walk)
{
    GByteArray *out = g_byte_array_new();
    struct vb_obj_info info;
    vb_error e = { 0 };
    struct stat st;
    char *p;

    g_assert_cmpint(vb_store_put(f->s, "config", "{\"v\":2}", 7, VB_PUT_SYNC, &e), ==, 0);
    g_assert_cmpint(vb_store_put(f->s, PACK, "0123456789", 10, 0, &e), ==, 0);
    g_assert_cmpint(vb_store_put(f->s, "index/aa", "", 0, 0, &e), ==, 0);
    g_assert_cmpint(vb_store_put(f->s, "gc/condemned-01", "c", 1, 0, &e), ==, 0);
    assert_get(f, "config", 0, 7, "{\"v\":2}");
    assert_get(f, PACK, 0, 10, "0123456789");
    assert_get(f, PACK, 3, 4, "3456");
    assert_get(f, PACK, 10, 0, "");
    assert_get(f, "index/aa", 0, 0, "");

    /* stat: the size, and the kernel's mtime in ns */
    g_assert_cmpint(vb_store_stat(f->s, PACK, &info, &e), ==, 0);
    g_assert_cmpuint(info.size, ==, 10);
    p = path(f, PACK);
    g_assert_cmpint(stat(p, &st), ==, 0);
    g_assert_cmpint(info.mtime_ns, ==, (int64_t)st.st_mtim.tv_sec * 1000000000 +
                    st.st_mtim.tv_nsec);
    g_assert_cmpuint(st.st_mode & 0077, ==, 0);
    g_free(p);
    p = path(f, "data/ab");
    g_assert_cmpint(stat(p, &st), ==, 0);
    g_assert_cmpuint(st.st_mode & 0777, ==, 0700);
    g_free(p);

    assert_list(f, "", "config:7," PACK ":10,gc/condemned-01:1,index/aa:0");
    assert_list(f, "data/", PACK ":10");
    assert_list(f, "data/ab", PACK ":10");
    assert_list(f, "data/ac", "");
    assert_list(f, "gc/condemned-", "gc/condemned-01:1");
    assert_list(f, "gc/x", "");
    assert_list(f, "snapshots/", "");
    assert_list(f, "config", "config:7");

    /* replace */
    g_assert_cmpint(vb_store_put(f->s, "config", "{}", 2, 0, &e), ==, 0);
    assert_get(f, "config", 0, 2, "{}");

    /* remove */
    g_assert_cmpint(vb_store_remove(f->s, PACK, &e), ==, 0);
    assert_fails(vb_store_get(f->s, PACK, 0, 1, out, ERR), -ENOENT, "no such object");
    assert_fails(vb_store_stat(f->s, PACK, &info, ERR), -ENOENT, "no such object");
    assert_fails(vb_store_remove(f->s, PACK, ERR), -ENOENT, "no such object");
    assert_fails(vb_store_remove(f->s, "keys/00", ERR), -ENOENT, "no such object");
    assert_fails(vb_store_get(f->s, "snapshots/00", 0, 0, out, ERR), -ENOENT, "snapshots/00");
    assert_list(f, "data/", "");

    g_assert_cmpint(vb_store_sync(f->s, &e), ==, 0);
    g_assert_cmpint(vb_store_sync(f->s, &e), ==, 0);
    assert_no_tmp(f->repo);
    g_byte_array_free(out, TRUE);
}

struct racer {
    struct vb_store *s;
    char content[16];
    int ret;
};

static void *race_put(void *opaque)
{
    struct racer *r = opaque;

    r->ret = vb_store_put(r->s, "snapshots/00", r->content, strlen(r->content),
                          VB_PUT_NOREPLACE, NULL);
    return NULL;
}

static void test_noreplace(struct fx *f, gconstpointer walk)
{
    struct racer r[8];
    pthread_t t[8];
    GByteArray *out = g_byte_array_new();
    unsigned won = 0;
    vb_error e = { 0 };

    g_assert_cmpint(vb_store_put(f->s, "keys/01", "first", 5, VB_PUT_NOREPLACE, &e), ==, 0);
    assert_fails(vb_store_put(f->s, "keys/01", "second", 6, VB_PUT_NOREPLACE, ERR), -EEXIST,
                 "keys/01: object exists");
    assert_get(f, "keys/01", 0, 5, "first");

    /* eight writers of one name at once: exactly one wins */
    for (int i = 0; i < 8; i++) {
        r[i].s = f->s;
        snprintf(r[i].content, sizeof(r[i].content), "writer %d", i);
        g_assert_cmpint(pthread_create(&t[i], NULL, race_put, &r[i]), ==, 0);
    }
    for (int i = 0; i < 8; i++) {
        g_assert_cmpint(pthread_join(t[i], NULL), ==, 0);
        if (r[i].ret == 0) {
            won++;
            assert_get(f, "snapshots/00", 0, strlen(r[i].content), r[i].content);
        } else {
            g_assert_cmpint(r[i].ret, ==, -EEXIST);
        }
    }
    g_assert_cmpuint(won, ==, 1);
    assert_no_tmp(f->repo);
    g_byte_array_free(out, TRUE);
}

static void test_truncated(struct fx *f, gconstpointer walk)
{
    GByteArray *out = g_byte_array_new();
    struct vb_obj_info info;
    vb_error e = { 0 };
    char data[100], *p = path(f, PACK);

    memset(data, 'p', sizeof(data));
    g_assert_cmpint(vb_store_put(f->s, PACK, data, sizeof(data), 0, &e), ==, 0);
    g_assert_cmpint(truncate(p, 50), ==, 0);
    assert_fails(vb_store_get(f->s, PACK, 40, 20, out, ERR), -EIO, "shorter than expected");
    g_assert_cmpuint(out->len, ==, 0);
    assert_fails(vb_store_get(f->s, PACK, 51, 0, out, ERR), -EIO, "shorter than expected");
    assert_fails(vb_store_get(f->s, PACK, 0, 100, out, ERR), -EIO, PACK);
    g_assert_cmpint(vb_store_get(f->s, PACK, 0, 50, out, &e), ==, 0);
    g_assert_cmpuint(out->len, ==, 50);
    g_assert_cmpint(vb_store_get(f->s, PACK, 50, 0, out, &e), ==, 0);
    g_assert_cmpint(vb_store_stat(f->s, PACK, &info, &e), ==, 0);
    g_assert_cmpuint(info.size, ==, 50);
    g_free(p);
    g_byte_array_free(out, TRUE);
}

/* Every operation on name refuses with code, naming the culprit; so does a
 * listing of list_prefix and of everything. */
static void assert_all_refuse(struct fx *f, const char *name, int code, const char *why,
                              const char *list_prefix)
{
    GByteArray *out = g_byte_array_new();
    struct vb_obj_info info;
    int ret;
    vb_error e = { 0 };

    assert_fails(vb_store_put(f->s, name, "evil", 4, 0, ERR), code, why);
    assert_fails(vb_store_put(f->s, name, "evil", 4, VB_PUT_NOREPLACE, ERR), code, why);
    assert_fails(vb_store_put(f->s, name, "evil", 4, VB_PUT_SYNC, ERR), code, why);
    assert_fails(vb_store_get(f->s, name, 0, 4, out, ERR), code, why);
    assert_fails(vb_store_stat(f->s, name, &info, ERR), code, why);
    assert_fails(vb_store_remove(f->s, name, ERR), code, why);
    g_assert_null(list(f, list_prefix, &ret, &e));
    g_assert_cmpint(ret, ==, code);
    g_assert_nonnull(strstr(e.msg, why));
    if (code != -ENOTDIR) {     /* a file where a folder belongs is an object to a listing */
        g_assert_null(list(f, "", &ret, &e));
        g_assert_cmpint(ret, ==, code);
        g_assert_nonnull(strstr(e.msg, why));
    }
    g_byte_array_free(out, TRUE);
}

static void test_symlink_data(struct fx *f, gconstpointer walk)
{
    char *p = path(f, "data"), *rel;

    g_assert_cmpint(symlink(f->outside, p), ==, 0);
    assert_all_refuse(f, "data/ab/victim", -ELOOP, "data is a symbolic link", "data/");
    assert_all_refuse(f, PACK, -ELOOP, "data is a symbolic link", "data/ab");
    assert_all_refuse(f, "data/cd/new", -ELOOP, "data is a symbolic link", "data/cd/");
    /* a relative one */
    g_assert_cmpint(unlink(p), ==, 0);
    rel = g_build_filename("..", "outside", NULL);
    g_assert_cmpint(symlink(rel, p), ==, 0);
    assert_all_refuse(f, "data/ab/victim", -ELOOP, "data is a symbolic link", "data/");
    g_assert_true(g_file_test(p, G_FILE_TEST_IS_SYMLINK));
    g_free(rel);
    g_free(p);
}

static void test_symlink_fanout(struct fx *f, gconstpointer walk)
{
    char *p = path(f, "data"), *ab = path(f, "data/ab"), *target;

    g_assert_cmpint(mkdir(p, 0700), ==, 0);
    target = g_build_filename(f->outside, "ab", NULL);
    g_assert_cmpint(symlink(target, ab), ==, 0);
    assert_all_refuse(f, "data/ab/victim", -ELOOP, "data/ab is a symbolic link", "data/");
    assert_all_refuse(f, "data/ab/new", -ELOOP, "data/ab is a symbolic link", "data/ab/");
    g_free(target);
    g_free(ab);
    g_free(p);
}

static void test_symlink_object(struct fx *f, gconstpointer walk)
{
    char *ab = path(f, "data/ab"), *obj = path(f, "data/ab/victim"), *target;
    vb_error e = { 0 };

    g_assert_cmpint(vb_store_put(f->s, PACK, "x", 1, 0, &e), ==, 0);
    target = g_build_filename(f->outside, "victim", NULL);
    g_assert_cmpint(symlink(target, obj), ==, 0);
    assert_all_refuse(f, "data/ab/victim", -ELOOP, "data/ab/victim is a symbolic link",
                      "data/");
    g_assert_true(g_file_test(obj, G_FILE_TEST_IS_SYMLINK));    /* not replaced either */
    /* a link to a file inside the repository is refused the same way */
    g_assert_cmpint(unlink(obj), ==, 0);
    g_assert_cmpint(symlink("ab00000000000000000000000000000000000000000000000000000000000001",
                            obj), ==, 0);
    assert_all_refuse(f, "data/ab/victim", -ELOOP, "data/ab/victim is a symbolic link",
                      "data/");
    g_free(target);
    g_free(obj);
    g_free(ab);
}

static void test_file_for_folder(struct fx *f, gconstpointer walk)
{
    char *p = path(f, "data"), *ab = path(f, "data/ab");

    write_file(p, "not a folder");
    assert_all_refuse(f, PACK, -ENOTDIR, "data is a file, not a folder", "data/");
    assert_all_refuse(f, PACK, -ENOTDIR, "data is a file, not a folder", "data/ab");
    /* to a listing of everything, data is an object (the layer above ignores it) */
    assert_list(f, "", "data:12");
    g_assert_cmpint(unlink(p), ==, 0);
    g_assert_cmpint(mkdir(p, 0700), ==, 0);
    write_file(ab, "not a folder");
    assert_all_refuse(f, PACK, -ENOTDIR, "data/ab is a file, not a folder", "data/ab/");
    assert_list(f, "data/", "data/ab:12");
    g_free(ab);
    g_free(p);
}

static void test_not_regular(struct fx *f, gconstpointer walk)
{
    char *fifo = path(f, "data/ab/fifo"), *dir = path(f, "data/ab/dir");
    GByteArray *out = g_byte_array_new();
    struct vb_obj_info info;
    int ret;
    vb_error e = { 0 };

    g_assert_cmpint(vb_store_put(f->s, PACK, "x", 1, 0, &e), ==, 0);
    g_assert_cmpint(mkfifo(fifo, 0600), ==, 0);
    /* a FIFO is never opened (it would block) */
    assert_fails(vb_store_get(f->s, "data/ab/fifo", 0, 1, out, ERR), -EBADMSG,
                 "data/ab/fifo is a FIFO, not an object");
    assert_fails(vb_store_stat(f->s, "data/ab/fifo", &info, ERR), -EBADMSG, "a FIFO");
    assert_fails(vb_store_put(f->s, "data/ab/fifo", "x", 1, 0, ERR), -EBADMSG, "a FIFO");
    assert_fails(vb_store_remove(f->s, "data/ab/fifo", ERR), -EBADMSG, "a FIFO");
    g_assert_null(list(f, "data/", &ret, &e));
    g_assert_cmpint(ret, ==, -EBADMSG);
    g_assert_nonnull(strstr(e.msg, "data/ab/fifo is a FIFO"));
    g_assert_cmpint(unlink(fifo), ==, 0);

    /* a folder where an object belongs */
    g_assert_cmpint(mkdir(dir, 0700), ==, 0);
    assert_fails(vb_store_get(f->s, "data/ab/dir", 0, 1, out, ERR), -EBADMSG,
                 "data/ab/dir is a folder, not an object");
    assert_fails(vb_store_put(f->s, "data/ab/dir", "x", 1, VB_PUT_NOREPLACE, ERR), -EBADMSG,
                 "a folder");
    assert_fails(vb_store_remove(f->s, "data/ab/dir", ERR), -EBADMSG, "a folder");
    g_assert_true(g_file_test(dir, G_FILE_TEST_IS_DIR));
    g_free(fifo);
    g_free(dir);
    g_byte_array_free(out, TRUE);
}

static void test_foreign_names(struct fx *f, gconstpointer walk)
{
    char *p = path(f, "data/ab/NOT-OURS");
    int ret;
    vb_error e = { 0 };

    g_assert_cmpint(vb_store_put(f->s, PACK, "x", 1, 0, &e), ==, 0);
    g_assert_cmpint(vb_store_put(f->s, "index/01", "x", 1, 0, &e), ==, 0);
    write_file(p, "?");
    g_assert_null(list(f, "data/", &ret, &e));
    g_assert_cmpint(ret, ==, -EBADMSG);
    g_assert_nonnull(strstr(e.msg, "data/ab/NOT-OURS"));
    assert_list(f, "index/", "index/01:1");
    g_free(p);
}

static void set_mtime(const char *p, int64_t ns)
{
    struct timespec ts[2] = { { ns / 1000000000, ns % 1000000000 },
                              { ns / 1000000000, ns % 1000000000 } };

    g_assert_cmpint(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), ==, 0);
}

static void test_clean_temp(struct fx *f, gconstpointer walk)
{
    char *old = path(f, "data/ab/.tmp-0123456789abcdef"), *fresh = path(f, "data/ab/.tmp-new");
    char *rootold = path(f, ".tmp-root");
    const int64_t hour = 3600 * INT64_C(1000000000);
    struct vb_obj_info info;
    unsigned removed = 99;
    vb_error e = { 0 };

    g_assert_cmpint(vb_store_put(f->s, PACK, "x", 1, 0, &e), ==, 0);
    g_assert_cmpint(vb_store_put(f->s, "config", "x", 1, 0, &e), ==, 0);
    g_assert_cmpint(vb_store_stat(f->s, "config", &info, &e), ==, 0);   /* the store's now */
    write_file(old, "old");
    write_file(fresh, "new");
    write_file(rootold, "old");
    set_mtime(old, info.mtime_ns - 2 * hour);
    set_mtime(rootold, info.mtime_ns - 25 * hour);
    set_mtime(fresh, info.mtime_ns);
    assert_list(f, "", "config:1," PACK ":1");            /* temporary files are not listed */
    g_assert_cmpint(vb_store_clean_temp(f->s, info.mtime_ns - hour, &removed, &e), ==, 0);
    g_assert_cmpuint(removed, ==, 2);
    g_assert_false(g_file_test(old, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(rootold, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(fresh, G_FILE_TEST_EXISTS));
    assert_list(f, "", "config:1," PACK ":1");
    g_assert_cmpint(vb_store_clean_temp(f->s, info.mtime_ns - hour, &removed, &e), ==, 0);
    g_assert_cmpuint(removed, ==, 0);
    g_free(old);
    g_free(fresh);
    g_free(rootold);
}

static void test_clean_temp_link(struct fx *f, gconstpointer walk)
{
    char *p = path(f, "data"), *target = g_build_filename(f->outside, "ab", NULL);
    unsigned removed;

    /* a .tmp- name in a linked folder outside is never removed */
    g_assert_cmpint(symlink(f->outside, p), ==, 0);
    assert_fails(vb_store_clean_temp(f->s, INT64_MAX, &removed, ERR), -ELOOP,
                 "data is a symbolic link");
    g_free(target);
    g_free(p);
}

static void test_open_readonly_flag(struct fx *f, gconstpointer walk)
{
    struct vb_store *ro;
    vb_error e = { 0 };

    g_assert_cmpint(vb_store_put(f->s, "config", "x", 1, 0, &e), ==, 0);
    g_assert_cmpint(vb_store_open(f->repo, VB_STORE_READONLY, &ro, &e), ==, 0);
    assert_fails(vb_store_put(ro, "keys/00", "x", 1, 0, ERR), -EROFS, "opened read-only");
    assert_fails(vb_store_remove(ro, "config", ERR), -EROFS, "opened read-only");
    g_assert_cmpint(vb_store_sync(ro, &e), ==, 0);
    vb_store_close(ro);
    g_assert_false(g_file_test(f->repo, G_FILE_TEST_IS_SYMLINK));
}

/*
 * The cases that need a mount or another user run in a child, with its own
 * mount namespace (so nothing is left mounted whatever happens): exit 0
 * passed, 77 cannot be done here (the reason on the pipe), else failed.
 */
static int skip_fd = -1;       /* in the child: where the reason for a skip goes */

static void in_child(struct fx *f, void (*fn)(struct fx *f), const char *what, bool mount_ns)
{
    int pfd[2], status;
    char why[256] = "";
    pid_t pid;
    ssize_t n;

    g_assert_cmpint(pipe(pfd), ==, 0);
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        close(pfd[0]);
        skip_fd = pfd[1];
        if (mount_ns && (unshare(CLONE_NEWNS) < 0 ||
                         mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0)) {
            dprintf(pfd[1], "cannot make a mount namespace: %s", g_strerror(errno));
            _exit(77);
        }
        fn(f);
        _exit(0);
    }
    close(pfd[1]);
    n = read(pfd[0], why, sizeof(why) - 1);
    why[n > 0 ? n : 0] = 0;
    close(pfd[0]);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        g_test_skip(why);
        return;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        g_error("%s: the child failed (status %#x; its messages are above)", what, status);
}

static void mount_tmpfs(const char *dir)
{
    if (mount("vbtest", dir, "tmpfs", 0, "size=4m,mode=0700") < 0) {
        dprintf(skip_fd, "cannot mount a tmpfs: %s", g_strerror(errno));
        _exit(77);
    }
}

static void readonly_child(struct fx *f)
{
    char *ro = g_build_filename(f->tmp, "ro", NULL), *p;
    GByteArray *out = g_byte_array_new();
    struct vb_store *s;
    struct vb_obj_info info;
    unsigned removed;
    vb_error e = { 0 };

    g_assert_cmpint(mkdir(ro, 0700), ==, 0);
    mount_tmpfs(ro);
    g_assert_cmpint(vb_store_open(ro, 0, &s, &e), ==, 0);
    g_assert_cmpint(vb_store_put(s, "config", "cfg", 3, 0, &e), ==, 0);
    g_assert_cmpint(vb_store_put(s, PACK, "pack", 4, 0, &e), ==, 0);
    g_assert_cmpint(vb_store_sync(s, &e), ==, 0);
    vb_store_close(s);
    p = g_build_filename(ro, "data", "ab", ".tmp-stale", NULL);
    write_file(p, "x");
    g_free(p);
    g_assert_cmpint(mount("none", ro, "none", MS_REMOUNT | MS_RDONLY, NULL), ==, 0);

    g_assert_cmpint(vb_store_open(ro, 0, &s, &e), ==, 0);
    g_assert_cmpint(vb_store_get(s, PACK, 0, 4, out, &e), ==, 0);
    g_assert_cmpmem(out->data, out->len, "pack", 4);
    g_assert_cmpint(vb_store_stat(s, "config", &info, &e), ==, 0);
    g_assert_cmpuint(info.size, ==, 3);
    {
        struct fx rf = { .s = s };
        int ret;
        char *got = list(&rf, "", &ret, &e);
        g_assert_cmpstr(got, ==, "config:3," PACK ":4");
        g_free(got);
    }
    assert_fails(vb_store_put(s, "config", "x", 1, 0, ERR), -EROFS, "repository is read-only");
    assert_fails(vb_store_put(s, "keys/00", "x", 1, VB_PUT_NOREPLACE, ERR), -EROFS,
                 "put keys/00: repository is read-only");
    assert_fails(vb_store_put(s, PACK, "x", 1, 0, ERR), -EROFS, "repository is read-only");
    assert_fails(vb_store_remove(s, PACK, ERR), -EROFS, "remove " PACK ": repository is read-only");
    assert_fails(vb_store_clean_temp(s, INT64_MAX, &removed, ERR), -EROFS,
                 "repository is read-only");
    g_assert_cmpint(vb_store_sync(s, &e), ==, 0);
    vb_store_close(s);
    g_byte_array_free(out, TRUE);
    g_free(ro);
}

static void test_readonly(struct fx *f, gconstpointer walk)
{
    in_child(f, readonly_child, "read-only repository", true);
}

static void permissions_child(struct fx *f)
{
    GByteArray *out = g_byte_array_new();
    struct vb_obj_info info;
    struct vb_store *s;
    vb_error e = { 0 };

    if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
        setresuid(65534, 65534, 65534) < 0) {
        dprintf(skip_fd, "cannot become another user: %s", g_strerror(errno));
        _exit(77);
    }
    g_assert_cmpint(vb_store_open(f->repo, 0, &s, &e), ==, 0);
    g_assert_cmpint(vb_store_get(s, PACK, 0, 4, out, &e), ==, 0);
    g_assert_cmpint(vb_store_stat(s, "config", &info, &e), ==, 0);
    {
        struct fx rf = { .s = s };
        int ret;
        char *got = list(&rf, "", &ret, &e);
        g_assert_cmpstr(got, ==, "config:3," PACK ":4");
        g_free(got);
    }
    assert_fails(vb_store_put(s, "config", "x", 1, 0, ERR), -EACCES,
                 "put config: permission denied");
    assert_fails(vb_store_put(s, "keys/00", "x", 1, 0, ERR), -EACCES,
                 "put keys/00: permission denied");
    assert_fails(vb_store_remove(s, PACK, ERR), -EACCES, "permission denied");
    vb_store_close(s);
    g_byte_array_free(out, TRUE);
}

/* A repository this user may read but not write (as root: another user's). */
static void test_readonly_permissions(struct fx *f, gconstpointer walk)
{
    static const char *const dirs[] = { "", "data", "data/ab" }, *const files[] = { "config",
                                                                                  PACK };
    vb_error e = { 0 };

    g_assert_cmpint(vb_store_put(f->s, "config", "cfg", 3, 0, &e), ==, 0);
    g_assert_cmpint(vb_store_put(f->s, PACK, "pack", 4, 0, &e), ==, 0);
    g_assert_cmpint(chmod(f->tmp, 0755), ==, 0);
    for (size_t i = 0; i < G_N_ELEMENTS(dirs); i++) {
        char *p = path(f, dirs[i]);
        g_assert_cmpint(chmod(p, 0755), ==, 0);
        g_free(p);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(files); i++) {
        char *p = path(f, files[i]);
        g_assert_cmpint(chmod(p, 0644), ==, 0);
        g_free(p);
    }
    if (geteuid() != 0) {
        g_test_skip("needs root to act as another user");
        return;
    }
    in_child(f, permissions_child, "read-only by permissions", false);
}

static void mountpoint_child(struct fx *f)
{
    char *data = path(f, "data");
    GByteArray *out = g_byte_array_new();
    struct vb_obj_info info;
    vb_error e = { 0 };
    int ret;

    g_assert_cmpint(mkdir(data, 0700), ==, 0);
    mount_tmpfs(data);
    /* the fixture's store was opened in the parent's mount namespace, where
     * its root fd stays: open it again in this one */
    vb_store_close(f->s);
    g_assert_cmpint(vb_store_open(f->repo, 0, &f->s, &e), ==, 0);
    assert_fails(vb_store_put(f->s, PACK, "x", 1, 0, ERR), -EXDEV, "data is a mount point");
    assert_fails(vb_store_get(f->s, PACK, 0, 1, out, ERR), -EXDEV, "data is a mount point");
    assert_fails(vb_store_stat(f->s, PACK, &info, ERR), -EXDEV, "data is a mount point");
    assert_fails(vb_store_remove(f->s, PACK, ERR), -EXDEV, "data is a mount point");
    g_assert_null(list(f, "", &ret, &e));
    g_assert_cmpint(ret, ==, -EXDEV);
    g_assert_nonnull(strstr(e.msg, "data is a mount point"));
    g_assert_cmpint(umount(data), ==, 0);
    g_byte_array_free(out, TRUE);
    g_free(data);
}

static void test_mountpoint(struct fx *f, gconstpointer walk)
{
    in_child(f, mountpoint_child, "mount point in the repository", true);
}

/* The conformance cases every store runs, here in a temporary folder. */
static GHashTable *conformance_dirs;     /* struct vb_store * -> its folder */

static struct vb_store *open_conformance(void *opaque)
{
    char *dir = g_dir_make_tmp("vb-store-conf-XXXXXX", NULL);
    struct vb_store *s = NULL;
    vb_error e = { 0 };

    g_assert_nonnull(dir);
    if (vb_store_open(dir, VB_STORE_CREATE, &s, &e))
        g_error("open %s: %s", dir, vb_strerror(&e));
    g_hash_table_insert(conformance_dirs, s, dir);
    return s;
}

static void close_conformance(struct vb_store *s, void *opaque)
{
    char *dir = g_hash_table_lookup(conformance_dirs, s);

    vb_store_close(s);
    g_assert_cmpint(vb_rm_rf_at(AT_FDCWD, dir), ==, 0);
    g_hash_table_remove(conformance_dirs, s);
}

int main(int argc, char **argv)
{
    static const struct vb_conformance conformance = {
        "/repo-store-local/conformance", open_conformance, close_conformance, NULL,
    };
    static const struct {
        const char *name;
        void (*fn)(struct fx *, gconstpointer);
    } cases[] = {
        { "roundtrip", test_roundtrip },
        { "noreplace", test_noreplace },
        { "truncated", test_truncated },
        { "symlink-data", test_symlink_data },
        { "symlink-fanout", test_symlink_fanout },
        { "symlink-object", test_symlink_object },
        { "file-for-folder", test_file_for_folder },
        { "not-regular", test_not_regular },
        { "foreign-names", test_foreign_names },
        { "clean-temp", test_clean_temp },
        { "clean-temp-link", test_clean_temp_link },
        { "readonly-flag", test_open_readonly_flag },
        { "readonly-mount", test_readonly },
        { "readonly-permissions", test_readonly_permissions },
        { "mountpoint", test_mountpoint },
    };

    g_test_init(&argc, &argv, NULL);
    for (int walk = 0; walk < 2; walk++) {
        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
            char *name = g_strdup_printf("/repo-store-local/%s/%s",
                                         walk ? "walk" : "openat2", cases[i].name);
            g_test_add(name, struct fx, GINT_TO_POINTER(walk), setup, cases[i].fn, teardown);
            g_free(name);
        }
    }
    conformance_dirs = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
    vb_conformance_add(&conformance);
    return g_test_run();
}
