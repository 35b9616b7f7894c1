/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * v2-files-check LOCATION SNAPSHOT: what a reader of a files snapshot in a
 * version 2 repository relies on, checked through the door (repo2.h) until
 * restore-files reads version 2 (tests/engine/repo-v2-copy.sh runs it after
 * `vbackupctl copy` and after gc):
 *
 *  - the manifest is of type files; its catalog stream reads back whole
 *    (length and SHA-256) and parses (vb_cat_parse) as a catalog of the
 *    version the builder writes (3)
 *    with files.entries entries and files.bytes bytes of regular files;
 *  - written zeros have no id; every other chunk the catalog names is a
 *    data blob of the repository (vb2_blob_get under the snapshot's dedup
 *    group: read, decrypted, its keyed id checked) of the length the
 *    catalog says;
 *  - the chunks stream (what gc marks) lists exactly those ids, each once.
 *
 * Then it prints the tree as JSON on stdout, for the test to compare with
 * what it backed up: {"entries": N, "bytes": N, "chunks": N, "tree": {PATH:
 * {"type", "mode", "uid", "gid", "size", "mtime_ns", "link", "hardlink"
 * (the path holding the data), "xattrs" {name: hex}, "ranges" [[off, len]],
 * "zeros" (bytes of written zeros), "sha256" (of the content read back:
 * data, zeros and holes up to the size)}}}.  PATHs are escaped as ls -b
 * does where they are not plain text.  Exit 1 naming the first problem.
 * An encrypted repository's password comes from $VBACKUP_PASSWORD_FILE.
 */
#include <errno.h>
#include <glib.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "escape.h"
#include "repo2.h"
#include "vbackup/protolib.h"

static int die(const char *what, const vb_error *e)
{
    fprintf(stderr, "v2-files-check: %s: %s\n", what, e ? vb_strerror(e) : "");
    return 1;
}

static char *esc(const char *p, size_t n)
{
    return vb_text_plain(p, n) ? g_strndup(p, n) : vb_escape(p, n);
}

static char *hex(const uint8_t *p, size_t n)
{
    char *out = g_malloc(2 * n + 1);

    vb_hex(p, n, out);
    return out;
}

static void add_zeros(EVP_MD_CTX *md, uint64_t n)
{
    static const uint8_t zero[65536];

    while (n) {
        size_t k = n < sizeof(zero) ? (size_t)n : sizeof(zero);
        EVP_DigestUpdate(md, zero, k);
        n -= k;
    }
}

int main(int argc, char **argv)
{
    struct vb2_open_opts o = { .readonly = true };
    struct vb_secret s = { 0 };
    struct vb2_repo *r = NULL;
    struct vb_manifest *m = NULL;
    struct vb_catalog *cat = NULL;
    GByteArray *cb = g_byte_array_new(), *lb = g_byte_array_new(), *blob = g_byte_array_new();
    GHashTable *named, *listed;
    struct vb_codec codec;
    uint8_t key[VB_KEY_LEN];
    uint64_t bytes = 0;
    json_object *out, *tree;
    vb_error e = { 0 };
    int ret;

    if (argc != 3) {
        fprintf(stderr, "usage: v2-files-check LOCATION SNAPSHOT\n");
        return 2;
    }
    if (vb_codec_init(&codec, 1))
        return 1;
    ret = vb2_repo_open(argv[1], &o, &r, &e);
    if (ret == -ENOKEY) {
        if (vb_password_read(NULL, "password: ", &s, &e))
            return die("password", &e);
        o.secret = &s;
        memset(&e, 0, sizeof(e));
        ret = vb2_repo_open(argv[1], &o, &r, &e);
        vb_secret_wipe(&s);
    }
    if (ret)
        return die(argv[1], &e);
    if (vb2_snap_load(r, argv[2], &m, &e))
        return die(argv[2], &e);
    if (m->type != VB_MF_FILES)
        return die(argv[2], &(vb_error){ .code = -EINVAL, .msg = "not a files snapshot" });
    if (vb2_stream_get_all(r, m, &m->catalog, cb, &e))
        return die("the catalog stream", &e);
    if (vb2_stream_get_all(r, m, &m->chunks, lb, &e))
        return die("the chunks stream", &e);
    if (vb_cat_parse(g_byte_array_steal(cb, NULL), m->catalog.length, "the catalog", &cat, &e))
        return die(argv[2], &e);
    if (cat->version != VB_CAT_VERSION)
        return die(argv[2], &(vb_error){ .code = -EINVAL,
                                         .msg = "not the catalog version the builder writes" });
    if (cat->n != m->files.entries)
        return die(argv[2], &(vb_error){ .code = -EINVAL,
                                         .msg = "files.entries is not the catalog's count" });
    if (vb2_group_key(r, m->dedup_group, key, &e))
        return die("the dedup group's key", &e);

    /* the chunks stream: each id once, none zero */
    listed = g_hash_table_new(vb_id_hash, vb_id_equal);
    named = g_hash_table_new(vb_id_hash, vb_id_equal);
    for (guint k = 0; k + VB_HASH_LEN <= lb->len; k += VB_HASH_LEN) {
        if (vb_id_is_zero(lb->data + k) || !g_hash_table_add(listed, lb->data + k))
            return die("the chunks stream", &(vb_error){ .code = -EINVAL,
                                                         .msg = "a zero or repeated id" });
    }

    out = json_object_new_object();
    tree = json_object_new_object();
    for (uint64_t i = 0; i < cat->n; i++) {
        const struct vb_cat_entry *x = &cat->e[i];
        /* a hard link's data and layout are its holder's */
        const struct vb_cat_entry *h = x->hardlink != VB_CAT_NONE ? &cat->e[x->hardlink] : x;
        json_object *j = json_object_new_object(), *xa = json_object_new_object(),
                    *rg = json_object_new_array();
        size_t pl, ll;
        const char *p = vb_cat_path(cat, i, &pl), *l = vb_cat_link(cat, i, &ll);
        g_autofree char *path = esc(p, pl), *link = esc(l, ll);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        uint64_t pos = 0, zeros = 0;
        uint8_t sum[32];

        json_object_object_add(j, "type", json_object_new_int(x->type));
        json_object_object_add(j, "mode", json_object_new_int((int)x->mode));
        json_object_object_add(j, "uid", json_object_new_int64(x->uid));
        json_object_object_add(j, "gid", json_object_new_int64(x->gid));
        json_object_object_add(j, "size", json_object_new_int64((int64_t)x->size));
        json_object_object_add(j, "mtime_ns", json_object_new_int64(x->mtime_sec * 1000000000 +
                                                                    x->mtime_nsec));
        if (ll)
            json_object_object_add(j, "link", json_object_new_string(link));
        if (x->hardlink != VB_CAT_NONE) {
            size_t hl;
            const char *hp = vb_cat_path(cat, x->hardlink, &hl);
            g_autofree char *hpath = esc(hp, hl);
            json_object_object_add(j, "hardlink", json_object_new_string(hpath));
        }
        for (uint32_t k = 0; k < x->n_xattrs; k++) {
            const char *name;
            const uint8_t *v;
            size_t nl, vl;
            vb_cat_xattr(cat, i, k, &name, &nl, &v, &vl);
            g_autofree char *n = g_strndup(name, nl), *vh = hex(v, vl);
            json_object_object_add(xa, n, json_object_new_string(vh));
        }
        json_object_object_add(j, "xattrs", xa);
        for (uint64_t k = 0; k < h->n_ranges; k++) {
            json_object *pair = json_object_new_array();
            json_object_array_add(pair, json_object_new_int64(
                (int64_t)cat->rg[h->first_range + k].offset));
            json_object_array_add(pair, json_object_new_int64(
                (int64_t)cat->rg[h->first_range + k].len));
            json_object_array_add(rg, pair);
        }
        json_object_object_add(j, "ranges", rg);
        /* the content: the chunks of the entry holding the data, each read */
        EVP_DigestInit_ex(md, EVP_sha256(), NULL);
        for (uint64_t k = 0; k < h->n_chunks; k++) {
            const struct vb_cat_chunk *ch = &cat->c[h->first_chunk + k];
            uint64_t len = ch->len;
            g_autofree char *idh = hex(ch->id, VB_HASH_LEN);
            if (ch->offset >= x->size)
                break;
            if (len > x->size - ch->offset)
                len = x->size - ch->offset;
            add_zeros(md, ch->offset - pos);            /* a hole */
            if (ch->flags & VB_CATC_ZERO) {
                if (!vb_id_is_zero(ch->id))
                    return die(path, &(vb_error){ .code = -EINVAL,
                                                  .msg = "written zeros with an id" });
                add_zeros(md, len);
                zeros += len;
            } else {
                if (!g_hash_table_contains(listed, ch->id)) {
                    fprintf(stderr, "v2-files-check: %s: chunk %s is not in the chunks "
                            "stream\n", path, idh);
                    return 1;
                }
                g_byte_array_set_size(blob, 0);
                if (vb2_blob_get(r, &codec, key, ch->id, blob, &e)) {
                    vb_prefixerr(&e, "%s: chunk %s", path, idh);
                    return die(argv[2], &e);
                }
                if (blob->len != ch->len) {
                    fprintf(stderr, "v2-files-check: %s: chunk %s has %u bytes, the catalog "
                            "says %u\n", path, idh, blob->len, ch->len);
                    return 1;
                }
                EVP_DigestUpdate(md, blob->data, len);
            }
            pos = ch->offset + len;
        }
        add_zeros(md, x->size > pos ? x->size - pos : 0);
        EVP_DigestFinal_ex(md, sum, NULL);
        EVP_MD_CTX_free(md);
        if (x->type == VB_FT_REG) {
            g_autofree char *sh = hex(sum, sizeof(sum));
            json_object_object_add(j, "sha256", json_object_new_string(sh));
            json_object_object_add(j, "zeros", json_object_new_int64((int64_t)zeros));
        }
        json_object_object_add(tree, path, j);
    }
    /* files.bytes counts every regular file, links too (vb_catb_serialize) */
    for (uint64_t i = 0; i < cat->n; i++)
        if (cat->e[i].type == VB_FT_REG)
            bytes += cat->e[i].size;
    if (bytes != m->files.bytes)
        return die(argv[2], &(vb_error){ .code = -EINVAL,
                                         .msg = "files.bytes is not the sum of the sizes" });
    /* every data chunk the catalog names (links' own too, past the size too):
     * listed, and a blob of its length */
    for (uint64_t k = 0; k < cat->n_chunks; k++) {
        const struct vb_cat_chunk *ch = &cat->c[k];
        gpointer len;
        g_autofree char *idh = hex(ch->id, VB_HASH_LEN);
        if (ch->flags & VB_CATC_ZERO)
            continue;
        if (!g_hash_table_contains(listed, ch->id)) {
            fprintf(stderr, "v2-files-check: chunk %s is not in the chunks stream\n", idh);
            return 1;
        }
        if (!g_hash_table_lookup_extended(named, ch->id, NULL, &len)) {
            g_byte_array_set_size(blob, 0);
            if (vb2_blob_get(r, &codec, key, ch->id, blob, &e)) {
                vb_prefixerr(&e, "chunk %s", idh);
                return die(argv[2], &e);
            }
            len = GUINT_TO_POINTER(blob->len);
            g_hash_table_insert(named, (gpointer)ch->id, len);
        }
        if (GPOINTER_TO_UINT(len) != ch->len) {
            fprintf(stderr, "v2-files-check: chunk %s has %u bytes, the catalog says %u\n", idh,
                    GPOINTER_TO_UINT(len), ch->len);
            return 1;
        }
    }
    if (g_hash_table_size(named) != g_hash_table_size(listed))
        return die(argv[2], &(vb_error){ .code = -EINVAL,
                                         .msg = "the chunks stream lists chunks the catalog "
                                                "does not name" });
    json_object_object_add(out, "entries", json_object_new_int64((int64_t)cat->n));
    json_object_object_add(out, "bytes", json_object_new_int64((int64_t)bytes));
    json_object_object_add(out, "chunks", json_object_new_int64(g_hash_table_size(listed)));
    json_object_object_add(out, "tree", tree);
    puts(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PRETTY |
                                             JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(out);
    g_hash_table_destroy(named);
    g_hash_table_destroy(listed);
    vb_cat_free(cat);
    vb_manifest_free(m);
    vb2_repo_close(r);
    vb_codec_free(&codec);
    g_byte_array_free(cb, TRUE);
    g_byte_array_free(lb, TRUE);
    g_byte_array_free(blob, TRUE);
    return 0;
}
