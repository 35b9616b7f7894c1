/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Key files of an open repository (repo2.h, "key files"): list, add,
 * remove.  A key file wraps the master key for one password or raw key
 * (keyfile.c); adding one needs the repository open (the master key in
 * hand), removing one never removes the key this process opened with, nor
 * the last one.
 */
#include "repo2-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"

static const char *key_id(const char *name)
{
    const char *slash = strrchr(name, '/');

    return slash ? slash + 1 : name;
}

int vb2_key_list(struct vb2_repo *r, GArray **out, vb_error *e)
{
    GPtrArray *names;
    GByteArray *buf = g_byte_array_new();
    GArray *a = g_array_new(FALSE, TRUE, sizeof(struct vb2_key));
    int ret = vb2_list_names(r->s, vb_obj_prefix(VB_OBJ_KEY), &names, e);

    *out = NULL;
    for (guint i = 0; !ret && i < names->len; i++) {
        const char *name = names->pdata[i];
        struct vb2_key k = { 0 };
        struct vb_obj_info info;
        uint8_t id[VB_OBJ_ID_LEN];
        enum vb_obj_kind kind;
        vb_error one = { 0 };

        if (vb_obj_parse(name, &kind, id) || kind != VB_OBJ_KEY)
            continue;
        snprintf(k.id, sizeof(k.id), "%s", key_id(name));
        k.current = !strcmp(name, r->key_name);
        g_byte_array_set_size(buf, 0);
        if (vb_store_stat(r->s, name, &info, &one) || info.size > VB_KEYFILE_MAX ||
            vb_store_get(r->s, name, 0, (size_t)info.size, buf, &one) ||
            vb_keyfile_info((const char *)buf->data, buf->len, &k.info, &one))
            k.damaged = true;
        g_array_append_val(a, k);
    }
    if (names)
        g_ptr_array_free(names, TRUE);
    g_byte_array_free(buf, TRUE);
    if (ret) {
        g_array_free(a, TRUE);
        return ret;
    }
    *out = a;
    return 0;
}

int vb2_key_add(struct vb2_repo *r, const struct vb_secret *s, const struct vb_kdf_params *kdf,
                char id_out[33], vb_error *e)
{
    char name[VB_OBJ_NAME_MAX], *json = NULL;
    uint8_t kid[16];
    size_t len = 0;
    int ret;

    if (r->readonly)
        return vb_seterr(e, -EROFS, "the repository was opened read-only");
    if (r->keys.aead == VB_AEAD_NONE)
        return vb_seterr(e, -EPERM, "the repository is not encrypted: it has no key files");
    ret = vb2_random(kid, sizeof(kid), e);
    if (!ret)
        ret = vb_keyfile_create(r->keys.master, s, kdf, r->keys.aead, &json, &len, e);
    if (!ret) {
        vb_obj_name(VB_OBJ_KEY, kid, name);
        ret = vb_store_put(r->s, name, json, len, VB_PUT_NOREPLACE | VB_PUT_SYNC, e);
    }
    if (!ret && id_out)
        snprintf(id_out, 33, "%s", key_id(name));
    free(json);
    if (ret)
        vb_prefixerr(e, "add a key file");
    return ret;
}

int vb2_key_remove(struct vb2_repo *r, const char *id, vb_error *e)
{
    GArray *keys;
    const struct vb2_key *match = NULL;
    char name[VB_OBJ_NAME_MAX];
    size_t n = strlen(id);
    unsigned found = 0;
    int ret;

    if (r->readonly)
        return vb_seterr(e, -EROFS, "the repository was opened read-only");
    if (n < 4 || n > 32 || strspn(id, "0123456789abcdef") != n)
        return vb_seterr(e, -EINVAL, "'%.40s' is not a key id (4 to 32 lower-case hex digits of "
                         "one, as `key list` shows)", id);
    if ((ret = vb2_key_list(r, &keys, e)))
        return ret;
    for (guint i = 0; i < keys->len; i++) {
        const struct vb2_key *k = &g_array_index(keys, struct vb2_key, i);
        if (!strncmp(k->id, id, n)) {
            match = k;
            found++;
        }
    }
    if (!found)
        ret = vb_seterr(e, -ENOENT, "no key file %s", id);
    else if (found > 1)
        ret = vb_seterr(e, -EINVAL, "%s names %u key files: give more of the id", id, found);
    else if (match->current)
        ret = vb_seterr(e, -EBUSY, "key %s is the one this command opened the repository with; "
                        "open it with another key to remove this one", match->id);
    else if (keys->len == 1)
        ret = vb_seterr(e, -EBUSY, "key %s is the last one", match->id);
    if (!ret) {
        snprintf(name, sizeof(name), "%s%s", vb_obj_prefix(VB_OBJ_KEY), match->id);
        ret = vb_store_remove(r->s, name, e);
        if (!ret)
            ret = vb_store_sync(r->s, e);
    }
    g_array_free(keys, TRUE);
    return ret;
}
