/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The version 2 engine's door (repo2.h): config, create and open, dedup
 * group keys, snapshot listing and reads, blob reads (one, or many in
 * parallel).  Write sessions are in write.c, gc in gc.c, verify, stats and
 * repair in verify.c.
 */
#include "repo2-int.h"

#include <dirent.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bytes.h"

#define CONFIG_MAX      (64u << 10)
#define CONFIG_NAME     "config"
#define V1_MARKER       "vbackup-repo.json"

static const char config_ad[] = "vbackup config";

int vb2_random(uint8_t *out, size_t n, vb_error *e)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = getrandom(out + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return vb_seterr(e, -errno, "getrandom: %s", strerror(errno));
        }
        got += (size_t)r;
    }
    return 0;
}

int vb2_get_object(struct vb2_repo *r, const char *name, size_t max, GByteArray *out,
                   vb_error *e)
{
    struct vb_obj_info info;
    int ret = vb_store_stat(r->s, name, &info, e);

    if (ret)
        return ret;
    if (info.size > max)
        return vb_seterr(e, -EBADMSG, "%s: damaged (%llu bytes, at most %zu expected)", name,
                         (unsigned long long)info.size, max);
    return vb_store_get(r->s, name, 0, (size_t)info.size, out, e);
}

/* ---- config ------------------------------------------------------------------------ */

struct config {
    uint8_t id[16];
    char created[64];
    enum vb_aead aead;
    uint32_t file_avg, disk_chunk, meta_avg, pack_target;
    int zstd_level;
    uint8_t idmat[32];               /* unencrypted: the id key material */
};

/* The bytes the check value and the sealed copy cover. */
static GByteArray *config_canon(const struct config *c)
{
    GByteArray *b = g_byte_array_new();
    uint8_t u[4];
    const char *aead = vb_aead_name(c->aead);

    g_byte_array_append(b, (const uint8_t *)"vbackup config", 15);   /* NUL included */
    vb_put_le32(u, VB_REPO_V2);
    g_byte_array_append(b, u, 4);
    g_byte_array_append(b, c->id, 16);
    g_byte_array_append(b, (const uint8_t *)c->created, (guint)strlen(c->created) + 1);
    g_byte_array_append(b, (const uint8_t *)aead, (guint)strlen(aead) + 1);
    vb_put_le32(u, c->file_avg);
    g_byte_array_append(b, u, 4);
    vb_put_le32(u, c->disk_chunk);
    g_byte_array_append(b, u, 4);
    vb_put_le32(u, c->meta_avg);
    g_byte_array_append(b, u, 4);
    vb_put_le32(u, (uint32_t)c->zstd_level);
    g_byte_array_append(b, u, 4);
    vb_put_le32(u, c->pack_target);
    g_byte_array_append(b, u, 4);
    if (c->aead == VB_AEAD_NONE)
        g_byte_array_append(b, c->idmat, 32);
    return b;
}

static void config_check(const struct config *c, char hex[33])
{
    GByteArray *b = config_canon(c);
    uint8_t md[32];

    SHA256(b->data, b->len, md);
    vb_hex(md, 16, hex);
    OPENSSL_cleanse(b->data, b->len);
    g_byte_array_free(b, TRUE);
}

static char *config_json(const struct config *c, const struct vb_keys *k, vb_error *e)
{
    json_object *o = json_object_new_object(), *ch = json_object_new_object();
    char hex[65], *out = NULL;

    json_object_object_add(o, "vbackup_repository", json_object_new_int(VB_REPO_V2));
    vb_hex(c->id, 16, hex);
    json_object_object_add(o, "id", json_object_new_string(hex));
    json_object_object_add(o, "created", json_object_new_string(c->created));
    json_object_object_add(o, "encryption", json_object_new_string(vb_aead_name(c->aead)));
    json_object_object_add(ch, "file_avg", json_object_new_int64(c->file_avg));
    json_object_object_add(ch, "disk_chunk", json_object_new_int64(c->disk_chunk));
    json_object_object_add(ch, "meta_avg", json_object_new_int64(c->meta_avg));
    json_object_object_add(o, "chunker", ch);
    json_object_object_add(o, "zstd_level", json_object_new_int(c->zstd_level));
    json_object_object_add(o, "pack_target", json_object_new_int64(c->pack_target));
    if (c->aead == VB_AEAD_NONE) {
        vb_hex(c->idmat, 32, hex);
        json_object_object_add(o, "id_key", json_object_new_string(hex));
        config_check(c, hex);
        json_object_object_add(o, "check", json_object_new_string(hex));
    } else {
        GByteArray *b = config_canon(c);
        uint8_t *sealed = malloc(b->len + vb_seal_overhead(c->aead));
        gchar *b64;
        if (!sealed || vb_seal(k, config_ad, sizeof(config_ad) - 1, b->data, b->len, sealed, e)) {
            if (!sealed)
                vb_seterr(e, -ENOMEM, "out of memory");
            free(sealed);
            g_byte_array_free(b, TRUE);
            json_object_put(o);
            return NULL;
        }
        b64 = g_base64_encode(sealed, b->len + vb_seal_overhead(c->aead));
        json_object_object_add(o, "sealed", json_object_new_string(b64));
        g_free(b64);
        free(sealed);
        g_byte_array_free(b, TRUE);
    }
    out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    if (!out)
        vb_seterr(e, -ENOMEM, "out of memory");
    return out;
}

static int cfg_bad(vb_error *e, const char *what)
{
    return vb_seterr(e, -EBADMSG, "config: damaged (%s)", what);
}

static bool pow2_in(int64_t v, int64_t lo, int64_t hi)
{
    return v >= lo && v <= hi && !(v & (v - 1));
}

static int cfg_int(json_object *o, const char *key, int64_t lo, int64_t hi, int64_t *out,
                   vb_error *e)
{
    json_object *v;
    char why[96];

    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int)) {
        snprintf(why, sizeof(why), "no integer '%s'", key);
        return cfg_bad(e, why);
    }
    errno = 0;
    *out = json_object_get_int64(v);
    if (errno || *out < lo || *out > hi) {
        snprintf(why, sizeof(why), "'%s' out of range", key);
        return cfg_bad(e, why);
    }
    return 0;
}

static const char *cfg_str(json_object *o, const char *key)
{
    json_object *v;

    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static bool lower_hex(const char *s, size_t n)
{
    if (!s || strlen(s) != 2 * n)
        return false;
    for (size_t i = 0; i < 2 * n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/*
 * Parse and check the config's plain part.  *sealed (free()) gets the
 * sealed copy of an encrypted one, checked later with the master key.
 */
static int config_parse(const GByteArray *buf, struct config *c, uint8_t **sealed,
                        size_t *sealed_len, vb_error *e)
{
    static const char *const known[] = { "vbackup_repository", "id", "created", "encryption",
                                         "chunker", "zstd_level", "pack_target", "id_key",
                                         "check", "sealed" };
    struct json_tokener *tok = json_tokener_new();
    json_object *o = NULL, *ch;
    const char *s;
    int64_t v;
    int ret = 0;

    memset(c, 0, sizeof(*c));
    *sealed = NULL;
    if (!tok)
        return vb_seterr(e, -ENOMEM, "out of memory");
    o = json_tokener_parse_ex(tok, (const char *)buf->data, (int)buf->len);
    if (!o || json_tokener_get_error(tok) != json_tokener_success ||
        json_tokener_get_parse_end(tok) != buf->len || !json_object_is_type(o, json_type_object))
        ret = cfg_bad(e, "not one JSON object");
    json_tokener_free(tok);
    if (ret)
        goto out;
    {
        json_object *ver;
        if (!json_object_object_get_ex(o, "vbackup_repository", &ver) ||
            !json_object_is_type(ver, json_type_int)) {
            ret = vb_seterr(e, -EPROTONOSUPPORT, "config: not a vbackup repository's config "
                            "(no 'vbackup_repository')");
            goto out;
        }
        if (json_object_get_int64(ver) != VB_REPO_V2) {
            ret = vb_seterr(e, -EPROTONOSUPPORT, "config: repository format %lld is not supported "
                            "(this vbackup reads formats 1 and 2)",
                            (long long)json_object_get_int64(ver));
            goto out;
        }
    }
    json_object_object_foreach(o, key, val) {
        bool ok = false;
        (void)val;
        for (size_t i = 0; i < G_N_ELEMENTS(known); i++)
            ok = ok || !strcmp(key, known[i]);
        if (!ok) {
            ret = cfg_bad(e, "unknown member");
            goto out;
        }
    }
    s = cfg_str(o, "id");
    if (!lower_hex(s, 16)) {
        ret = cfg_bad(e, "'id' is not 32 lower-case hex digits");
        goto out;
    }
    vb_unhex(s, c->id, 16);
    s = cfg_str(o, "created");
    {
        int64_t ns;
        if (!s || strlen(s) >= sizeof(c->created) || vb_parse_time(s, &ns)) {
            ret = cfg_bad(e, "'created' is not an RFC 3339 time");
            goto out;
        }
        snprintf(c->created, sizeof(c->created), "%s", s);
    }
    s = cfg_str(o, "encryption");
    if (!s || vb_aead_parse(s, &c->aead, NULL) || strcmp(s, vb_aead_name(c->aead))) {
        ret = cfg_bad(e, "'encryption' is not none, aes-256-gcm or chacha20-poly1305");
        goto out;
    }
    if (!json_object_object_get_ex(o, "chunker", &ch) ||
        !json_object_is_type(ch, json_type_object) || json_object_object_length(ch) != 3) {
        ret = cfg_bad(e, "'chunker' is not an object of file_avg, disk_chunk, meta_avg");
        goto out;
    }
    ret = cfg_int(ch, "file_avg", 64 << 10, 4 << 20, &v, e);
    if (!ret && !pow2_in(v, 64 << 10, 4 << 20))
        ret = cfg_bad(e, "'file_avg' is not a power of two");
    c->file_avg = (uint32_t)v;
    if (!ret)
        ret = cfg_int(ch, "disk_chunk", 64 << 10, 16 << 20, &v, e);
    if (!ret && !pow2_in(v, 64 << 10, 16 << 20))
        ret = cfg_bad(e, "'disk_chunk' is not a power of two");
    c->disk_chunk = (uint32_t)v;
    if (!ret)
        ret = cfg_int(ch, "meta_avg", VB_STREAM_AVG, VB_STREAM_AVG, &v, e);
    c->meta_avg = (uint32_t)v;
    if (!ret)
        ret = cfg_int(o, "zstd_level", 1, 19, &v, e);
    c->zstd_level = (int)v;
    if (!ret)
        ret = cfg_int(o, "pack_target", 1 << 20, 512 << 20, &v, e);
    c->pack_target = (uint32_t)v;
    if (ret)
        goto out;
    if (c->aead == VB_AEAD_NONE) {
        char check[33];
        if (json_object_object_get_ex(o, "sealed", NULL)) {
            ret = cfg_bad(e, "an unencrypted config with a sealed part");
            goto out;
        }
        s = cfg_str(o, "id_key");
        if (!lower_hex(s, 32)) {
            ret = cfg_bad(e, "'id_key' is not 64 lower-case hex digits");
            goto out;
        }
        vb_unhex(s, c->idmat, 32);
        config_check(c, check);
        s = cfg_str(o, "check");
        if (!lower_hex(s, 16) || strcmp(s, check)) {
            ret = cfg_bad(e, "its check value does not match");
            goto out;
        }
    } else {
        guchar *raw;
        gsize n;
        gchar *again;
        if (json_object_object_get_ex(o, "id_key", NULL) ||
            json_object_object_get_ex(o, "check", NULL)) {
            ret = cfg_bad(e, "an encrypted config with an id key in plain");
            goto out;
        }
        s = cfg_str(o, "sealed");
        if (!s || !*s) {
            ret = cfg_bad(e, "no 'sealed' part");
            goto out;
        }
        raw = g_base64_decode(s, &n);
        again = g_base64_encode(raw, n);
        if (strcmp(again, s) || n < vb_seal_overhead(c->aead)) {
            ret = cfg_bad(e, "'sealed' is not canonical base64 of a sealed part");
            g_free(raw);
        } else {
            *sealed = malloc(n);
            if (*sealed) {
                memcpy(*sealed, raw, n);
                *sealed_len = n;
            } else {
                ret = vb_seterr(e, -ENOMEM, "out of memory");
            }
            g_free(raw);
        }
        g_free(again);
    }
out:
    json_object_put(o);
    return ret;
}

/* ---- create ------------------------------------------------------------------------ */

static int list_any(void *opaque, const char *name, const struct vb_obj_info *info,
                    vb_error *e)
{
    GPtrArray *a = opaque;

    g_ptr_array_add(a, g_strdup(name));
    return 0;
}

int vb2_list_names(struct vb_store *s, const char *prefix, GPtrArray **out, vb_error *e)
{
    GPtrArray *a = g_ptr_array_new_with_free_func(g_free);
    int ret = vb_store_list(s, prefix, list_any, a, e);

    if (ret) {
        g_ptr_array_free(a, TRUE);
        *out = NULL;
        return ret;
    }
    *out = a;
    return 0;
}

int vb2_repo_create(const char *location, const struct vb2_create_opts *o, vb_error *e)
{
    struct vb2_create_opts dflt = { 0 };
    struct vb_store *s = NULL;
    struct vb_obj_info info;
    struct vb_keys k;
    struct config c;
    char keyname[VB_OBJ_NAME_MAX] = "", *json = NULL;
    size_t len;
    int ret;

    if (!o)
        o = &dflt;
    memset(&c, 0, sizeof(c));
    c.aead = o->encryption;
    c.file_avg = o->file_avg ? o->file_avg : VB2_FILE_AVG_DEFAULT;
    c.disk_chunk = o->disk_chunk ? o->disk_chunk : VB2_DISK_CHUNK_DEFAULT;
    c.meta_avg = VB_STREAM_AVG;
    c.zstd_level = o->zstd_level ? o->zstd_level : VB2_ZSTD_DEFAULT;
    c.pack_target = o->pack_target ? o->pack_target : VB_PACK_TARGET;
    if (!vb_aead_name(c.aead) || !pow2_in(c.file_avg, 64 << 10, 4 << 20) ||
        !pow2_in(c.disk_chunk, 64 << 10, 16 << 20) || c.zstd_level < 1 || c.zstd_level > 19 ||
        c.pack_target < (1u << 20) || c.pack_target > (512u << 20))
        return vb_seterr(e, -EINVAL, "create repository %s: a setting is out of range",
                         location);
    if (c.aead != VB_AEAD_NONE && !o->secret)
        return vb_seterr(e, -ENOKEY, "create repository %s: an encrypted repository needs a "
                         "password or key", location);
    ret = vb_store_open_opts(location, VB_STORE_CREATE, o->store_opts, &s, e);
    if (ret)
        return ret;
    if (!(vb_store_caps(s) & VB_STORE_NOREPLACE)) {
        ret = vb_seterr(e, -ENOTSUP, "create repository %s: this store cannot put without "
                        "replacing", location);
        goto out;
    }
    if (!vb_store_stat(s, CONFIG_NAME, &info, NULL) ||
        !vb_store_stat(s, V1_MARKER, &info, NULL)) {
        ret = vb_seterr(e, -EEXIST, "create repository %s: it is already a vbackup repository",
                        location);
        goto out;
    }
    ret = vb2_random(c.id, sizeof(c.id), e);
    if (!ret)
        ret = vb_keys_generate(&k, c.aead, e);
    if (ret)
        goto out;
    vb_fmt_time(vb_wall_ns(), c.created, sizeof(c.created));
    if (c.aead == VB_AEAD_NONE) {
        /* unencrypted: only the id key material is kept (in config) */
        uint8_t master[VB_MASTER_LEN] = { 0 };
        memcpy(master + 32, k.master + 32, 32);
        memcpy(c.idmat, k.master + 32, 32);
        ret = vb_keys_from_master(&k, VB_AEAD_NONE, master, e);
        OPENSSL_cleanse(master, sizeof(master));
    } else {
        uint8_t kid[16];
        ret = vb2_random(kid, sizeof(kid), e);
        if (!ret)
            ret = vb_keyfile_create(k.master, o->secret, o->kdf, c.aead, &json, &len, e);
        if (!ret) {
            vb_obj_name(VB_OBJ_KEY, kid, keyname);
            ret = vb_store_put(s, keyname, json, len, VB_PUT_NOREPLACE | VB_PUT_SYNC, e);
        }
        free(json);
        json = NULL;
    }
    if (!ret) {
        json = config_json(&c, &k, e);
        ret = json ? 0 : -ENOMEM;
    }
    if (!ret)
        ret = vb_store_put(s, CONFIG_NAME, json, strlen(json), VB_PUT_NOREPLACE | VB_PUT_SYNC,
                           e);
    if (ret == -EEXIST)
        ret = vb_seterr(e, -EEXIST, "create repository %s: it is already a vbackup repository",
                        location);
    if (ret && keyname[0])
        vb_store_remove(s, keyname, NULL);
    free(json);
    OPENSSL_cleanse(&c, sizeof(c));
    vb_keys_wipe(&k);
out:
    if (ret)
        vb_prefixerr(e, "create repository");
    vb_store_close(s);
    return ret;
}

/* ---- open ------------------------------------------------------------------------------ */

/* Try the secret on every key file; used (VB_OBJ_NAME_MAX) gets the one that
 * opened. */
static int unlock(struct vb_store *s, const struct vb_secret *secret,
                  uint8_t master[VB_MASTER_LEN], char *used, vb_error *e)
{
    GPtrArray *names;
    GByteArray *buf = g_byte_array_new();
    int ret = vb2_list_names(s, vb_obj_prefix(VB_OBJ_KEY), &names, e), wrong = 0, damaged = 0;
    vb_error first_damage = { 0 };

    if (ret) {
        g_byte_array_free(buf, TRUE);
        return ret;
    }
    ret = -ENOENT;
    for (guint i = 0; i < names->len; i++) {
        const char *name = names->pdata[i];
        uint8_t id[VB_OBJ_ID_LEN];
        enum vb_obj_kind kind;
        struct vb_obj_info info;
        vb_error one = { 0 };
        int r;

        if (vb_obj_parse(name, &kind, id) || kind != VB_OBJ_KEY)
            continue;
        r = vb_store_stat(s, name, &info, &one);
        if (!r && info.size > VB_KEYFILE_MAX)
            r = vb_seterr(&one, -EBADMSG, "key file is damaged (%llu bytes)",
                          (unsigned long long)info.size);
        if (!r)
            r = vb_store_get(s, name, 0, (size_t)info.size, buf, &one);
        if (!r)
            r = vb_keyfile_open((const char *)buf->data, buf->len, secret, master, &one);
        if (!r) {
            ret = 0;
            snprintf(used, VB_OBJ_NAME_MAX, "%s", name);
            break;
        }
        if (r == -EACCES) {
            wrong++;
        } else if (r == -EBADMSG || r == -EINVAL) {
            if (!damaged++) {
                first_damage = one;
                vb_prefixerr(&first_damage, "%s", name);
            }
        } else {
            ret = vb_seterr(e, r, "%s: %s", name, vb_strerror(&one));
            break;
        }
    }
    if (ret == -ENOENT) {
        if (wrong)
            ret = vb_seterr(e, -EACCES, "wrong password or key (tried %d key file%s)", wrong,
                            wrong == 1 ? "" : "s");
        else if (damaged)
            ret = vb_seterr(e, -EBADMSG, "%s", first_damage.msg);
        else
            ret = vb_seterr(e, -EBADMSG, "the repository is encrypted but has no key file "
                            "(keys/ is empty)");
    }
    g_byte_array_free(buf, TRUE);
    g_ptr_array_free(names, TRUE);
    return ret;
}

static void repo_free(struct vb2_repo *r)
{
    if (!r)
        return;
    vb_index_cache_close(r->cache);
    if (r->snapfd >= 0)
        close(r->snapfd);
    if (r->cache_private && r->cache_dir)
        vb_rm_rf_at(AT_FDCWD, r->cache_dir);
    if (r->groups)
        g_hash_table_destroy(r->groups);
    vb_store_close(r->s);
    vb_keys_wipe(&r->keys);
    g_mutex_clear(&r->mu);
    free(r->cache_dir);
    free(r->location);
    free(r);
}

static void key_free(gpointer p)
{
    OPENSSL_cleanse(p, VB_KEY_LEN);
    g_free(p);
}

int vb2_repo_open_asking(const char *location, const struct vb2_open_opts *o,
                         const char *password_file, const char *key_file,
                         struct vb2_repo **out, vb_error *e)
{
    struct vb2_open_opts oo = o ? *o : (struct vb2_open_opts){ 0 };
    struct vb_secret sec = { 0 };
    int ret;

    oo.secret = NULL;
    if ((ret = vb2_repo_open(location, &oo, out, e)) != -ENOKEY)
        return ret;
    ret = key_file ? vb_rawkey_read(key_file, &sec, e)
                   : vb_password_read(password_file, "repository password: ", &sec, e);
    if (ret)
        return ret;
    oo.secret = &sec;
    memset(e, 0, sizeof(*e));
    ret = vb2_repo_open(location, &oo, out, e);
    vb_secret_wipe(&sec);
    return ret;
}

bool vb2_is_repository(const char *location)
{
    g_autofree char *config = NULL;

    if (!location)
        return false;
    if (!strncmp(location, "s3://", 5))
        return true;
    config = g_build_filename(location, "config", NULL);
    return access(config, F_OK) == 0;
}

int vb2_repo_open(const char *location, const struct vb2_open_opts *o, struct vb2_repo **out,
                  vb_error *e)
{
    struct vb_store *s;
    int ret;

    *out = NULL;
    ret = vb_store_open_opts(location, o && o->readonly ? VB_STORE_READONLY : 0,
                             o ? o->store_opts : NULL, &s, e);
    if (ret) {
        vb_prefixerr(e, "open repository %s", location);
        return ret;
    }
    return vb2_repo_open_store(s, location, o, out, e);
}

/*
 * VBACKUP_TEST_LEASE_EXPIRY=SECONDS (2 to 900), a test hook: leases expire
 * after SECONDS instead of 15 min, are refreshed every tenth of it and given
 * up 30 % before it, in every process that opens the repository without its
 * own lease times (vbackupd, vbackupctl); all of them must agree.  The s3
 * suite uses it to see gc reclaim a killed writer's packs within seconds.
 */
static int test_lease_times(struct vb2_repo *r, vb_error *e)
{
    const char *v = getenv("VBACKUP_TEST_LEASE_EXPIRY");
    char *end;
    long sec;

    if (!v || !*v)
        return 0;
    errno = 0;
    sec = strtol(v, &end, 10);
    if (errno || *end || sec < 2 || sec > 900)
        return vb_seterr(e, -EINVAL, "VBACKUP_TEST_LEASE_EXPIRY: '%s' is not a number of "
                         "seconds from 2 to 900", v);
    r->lease_expiry_ns = sec * INT64_C(1000000000);
    r->lease_refresh_ns = r->lease_expiry_ns / 10;
    r->lease_margin_ns = r->lease_expiry_ns * 3 / 10;
    return 0;
}

int vb2_repo_open_store(struct vb_store *s, const char *location,
                        const struct vb2_open_opts *o, struct vb2_repo **out, vb_error *e)
{
    struct vb2_open_opts dflt = { 0 };
    struct vb2_repo *r;
    GByteArray *buf = g_byte_array_new();
    uint8_t *sealed = NULL, master[VB_MASTER_LEN];
    size_t sealed_len = 0;
    struct config c;
    char dir[PATH_MAX];
    int ret;

    *out = NULL;
    if (!o)
        o = &dflt;
    r = calloc(1, sizeof(*r));
    if (!r) {
        vb_store_close(s);
        g_byte_array_free(buf, TRUE);
        return vb_seterr(e, -ENOMEM, "out of memory");
    }
    g_mutex_init(&r->mu);
    r->s = s;
    r->snapfd = -1;
    r->location = strdup(location);
    r->readonly = o->readonly;
    r->upload_threads = o->upload_threads ? o->upload_threads : 2;
    r->read_threads = o->read_threads ? o->read_threads : 4;
    r->index_file_records = o->index_file_records && o->index_file_records < VB_INDEX_FILE_RECORDS
                            ? o->index_file_records : VB_INDEX_FILE_RECORDS;
    r->lease_expiry_ns = o->lease_expiry_ns ? o->lease_expiry_ns : VB_LEASE_EXPIRY_NS;
    r->lease_refresh_ns = o->lease_refresh_ns ? o->lease_refresh_ns : VB_LEASE_REFRESH_NS;
    r->lease_margin_ns = o->lease_margin_ns ? o->lease_margin_ns : VB_LEASE_MARGIN_NS;
    r->groups = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, key_free);
    if (!o->lease_expiry_ns && !o->lease_refresh_ns && !o->lease_margin_ns &&
        (ret = test_lease_times(r, e)))
        goto fail;
    ret = vb2_get_object(r, CONFIG_NAME, CONFIG_MAX, buf, e);
    if (ret == -ENOENT) {
        struct vb_obj_info info;
        if (!vb_store_stat(r->s, V1_MARKER, &info, NULL))
            ret = vb_seterr(e, -EPROTONOSUPPORT, "%s is a version 1 repository "
                            "(vbackup-repo.json): the version 2 engine does not open it",
                            location);
        else
            ret = vb_seterr(e, -ENOENT, "%s is not a vbackup repository (no config)", location);
        goto fail;
    }
    if (!ret)
        ret = config_parse(buf, &c, &sealed, &sealed_len, e);
    if (ret)
        goto fail;
    if (c.aead == VB_AEAD_NONE) {
        GPtrArray *keys;
        memset(master, 0, 32);
        memcpy(master + 32, c.idmat, 32);
        ret = vb2_list_names(r->s, vb_obj_prefix(VB_OBJ_KEY), &keys, e);
        if (!ret && keys->len)
            ret = vb_seterr(e, -EBADMSG, "config says the repository is not encrypted, but "
                            "keys/ holds key files: the config was changed?");
        if (keys)
            g_ptr_array_free(keys, TRUE);
    } else if (!o->secret) {
        ret = vb_seterr(e, -ENOKEY, "the repository is encrypted (%s): give a password or key",
                        vb_aead_name(c.aead));
    } else {
        ret = unlock(r->s, o->secret, master, r->key_name, e);
    }
    if (!ret)
        ret = vb_keys_from_master(&r->keys, c.aead, master, e);
    OPENSSL_cleanse(master, sizeof(master));
    if (!ret && c.aead != VB_AEAD_NONE) {
        GByteArray *canon = config_canon(&c);
        uint8_t *plain = malloc(sealed_len);
        if (!plain) {
            ret = vb_seterr(e, -ENOMEM, "out of memory");
        } else if (vb_open(&r->keys, config_ad, sizeof(config_ad) - 1, sealed, sealed_len,
                           plain, NULL) ||
                   sealed_len - vb_seal_overhead(c.aead) != canon->len ||
                   memcmp(plain, canon->data, canon->len)) {
            ret = cfg_bad(e, "its settings do not match its sealed copy");
        }
        free(plain);
        g_byte_array_free(canon, TRUE);
    }
    if (ret)
        goto fail;
    memcpy(r->id, c.id, 16);
    r->file_avg = c.file_avg;
    r->disk_chunk = c.disk_chunk;
    r->meta_avg = c.meta_avg;
    r->pack_target = c.pack_target;
    r->zstd_level = c.zstd_level;
    ret = vb_cache_dir(o->cache_dir, r->id, dir, e);
    if (!ret)
        ret = vb_index_cache_open(dir, r->id, &r->cache, e);
    if (ret && !(o->cache_dir && *o->cache_dir)) {
        /* no usable cache folder (a user whose home is not writable, or
         * none): a private one for this open, removed at close; reads work,
         * each open reads the index again */
        char *tmp = g_dir_make_tmp("vbackup-cache-XXXXXX", NULL);
        if (tmp) {
            snprintf(dir, sizeof(dir), "%s", tmp);
            g_free(tmp);
            memset(e, 0, sizeof(*e));
            ret = vb_index_cache_open(dir, r->id, &r->cache, e);
            r->cache_private = true;
            r->cache_dir = strdup(dir);
        }
    }
    if (ret)
        goto fail;
    if (!r->cache_dir)
        r->cache_dir = strdup(dir);
    {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0 && mkdirat(dfd, "snapshots", 0700) < 0 && errno != EEXIST)
            ret = -errno;
        if (dfd >= 0) {
            r->snapfd = openat(dfd, "snapshots", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
            if (r->snapfd < 0 && !ret)
                ret = -errno;
            close(dfd);
        } else {
            ret = -errno;
        }
        if (ret) {
            ret = vb_seterr(e, ret, "cache folder %s/snapshots: %s", dir, strerror(-ret));
            goto fail;
        }
    }
    free(sealed);
    OPENSSL_cleanse(&c, sizeof(c));
    g_byte_array_free(buf, TRUE);
    *out = r;
    return 0;
fail:
    vb_prefixerr(e, "open repository %s", location);
    free(sealed);
    OPENSSL_cleanse(&c, sizeof(c));
    g_byte_array_free(buf, TRUE);
    repo_free(r);
    return ret;
}

void vb2_repo_close(struct vb2_repo *r)
{
    repo_free(r);
}

void vb2_repo_info(const struct vb2_repo *r, struct vb2_repo_info *info)
{
    memset(info, 0, sizeof(*info));
    vb_hex(r->id, 16, info->id);
    info->encryption = r->keys.aead;
    info->file_avg = r->file_avg;
    info->disk_chunk = r->disk_chunk;
    info->meta_avg = r->meta_avg;
    info->zstd_level = r->zstd_level;
    info->pack_target = r->pack_target;
    info->cache_dir = r->cache_dir;
}

struct vb_store *vb2_repo_store(struct vb2_repo *r)
{
    return r->s;
}

uint64_t vb2_repo_range_gets(const struct vb2_repo *r)
{
    return __atomic_load_n(&r->range_gets, __ATOMIC_RELAXED);
}

int vb2_group_key(struct vb2_repo *r, const char *group, uint8_t key[VB_KEY_LEN], vb_error *e)
{
    uint8_t *k;
    int ret;

    if (!group || !*group) {
        memcpy(key, r->keys.id_key, VB_KEY_LEN);
        return 0;
    }
    g_mutex_lock(&r->mu);
    k = g_hash_table_lookup(r->groups, group);
    if (k) {
        memcpy(key, k, VB_KEY_LEN);
        g_mutex_unlock(&r->mu);
        return 0;
    }
    ret = vb_group_id_key(&r->keys, group, key, e);
    if (!ret)
        g_hash_table_insert(r->groups, g_strdup(group), g_memdup2(key, VB_KEY_LEN));
    g_mutex_unlock(&r->mu);
    return ret;
}

GArray *vb2_all_group_keys(struct vb2_repo *r, GPtrArray *manifests, vb_error *e)
{
    GArray *keys = g_array_new(FALSE, FALSE, VB_KEY_LEN);
    GHashTable *seen = g_hash_table_new(g_str_hash, g_str_equal);
    uint8_t k[VB_KEY_LEN];

    g_array_append_vals(keys, r->keys.id_key, 1);
    for (guint i = 0; manifests && i < manifests->len; i++) {
        const struct vb_manifest *m = manifests->pdata[i];
        if (!m->dedup_group || g_hash_table_contains(seen, m->dedup_group))
            continue;
        g_hash_table_add(seen, m->dedup_group);
        if (vb2_group_key(r, m->dedup_group, k, e) == 0)
            g_array_append_vals(keys, k, 1);
    }
    g_hash_table_destroy(seen);
    OPENSSL_cleanse(k, sizeof(k));
    return keys;
}

/* ---- packs --------------------------------------------------------------------------------- */

struct vb_pack_writer *vb2_pack_new(struct vb2_repo *r, struct vb_codec *c, vb_error *e)
{
    return vb2_pack_new_buf(r, c, NULL, 0, e);
}

struct vb_pack_writer *vb2_pack_new_buf(struct vb2_repo *r, struct vb_codec *c, uint8_t *buf,
                                        size_t cap, vb_error *e)
{
    struct vb_pack_writer *w = vb_pack_writer_new_buf(&r->keys, r->pack_target, buf, cap);
    uint8_t salt[16], id[VB_HASH_LEN];
    int ret;

    if (!w) {
        vb_seterr(e, -ENOMEM, "out of memory");
        return NULL;
    }
    ret = vb2_random(salt, sizeof(salt), e);
    if (!ret)
        ret = vb_keyed_id(r->keys.id_key, salt, sizeof(salt), id);
    if (!ret)
        ret = vb_pack_add(w, c, VB_BLOB_META, id, salt, sizeof(salt), e);
    if (ret) {
        vb_pack_writer_free(w);
        return NULL;
    }
    return w;
}

/* ---- index files ------------------------------------------------------------------------- */

int vb2_put_index(struct vb2_repo *r, struct vb_index_entry *ents, size_t n,
                  const struct vb_pack_id *packs, size_t npacks, unsigned *written,
                  vb_error *e)
{
    if (written)
        *written = 0;
    for (size_t off = 0; off < n; off += r->index_file_records) {
        size_t m = VB_MIN((size_t)r->index_file_records, n - off);
        char name[VB_OBJ_NAME_MAX];
        uint8_t *data, fid[VB_OBJ_ID_LEN];
        size_t len;
        int ret = vb_index_build(&r->keys, ents + off, m, packs, npacks, &data, &len, fid, e);

        if (ret)
            return ret;
        vb_obj_name(VB_OBJ_INDEX, fid, name);
        ret = vb_store_put(r->s, name, data, len, VB_PUT_NOREPLACE, e);
        free(data);
        if (ret == -EEXIST)
            ret = 0;            /* the same bytes: its name is their hash */
        if (ret)
            return ret;
        if (written)
            (*written)++;
    }
    return 0;
}

/* ---- snapshots ------------------------------------------------------------------------------ */

void vb2_snap_cache_drop(struct vb2_repo *r, const char *object)
{
    unlinkat(r->snapfd, object, 0);
}

static int snap_cache_read(struct vb2_repo *r, const char *object, GByteArray *out)
{
    int fd = openat(r->snapfd, object, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), ret;
    struct stat st;

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > VB_MANIFEST_MAX) {
        close(fd);
        return -EBADMSG;
    }
    g_byte_array_set_size(out, (guint)st.st_size);
    ret = vb_pread_all(fd, out->data, (size_t)st.st_size, 0);
    close(fd);
    return ret;
}

void vb2_snap_cache_put(struct vb2_repo *r, const char *object, const GByteArray *b)
{
    static gint seq;
    char tmp[96];
    int fd;

    /* unique per process and call: two threads may cache one manifest */
    snprintf(tmp, sizeof(tmp), ".tmp-%s-%d-%d", object, (int)getpid(),
             g_atomic_int_add(&seq, 1));
    fd = openat(r->snapfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return;
    if (vb_write_all(fd, b->data, b->len) == 0 && close(fd) == 0)
        renameat(r->snapfd, tmp, r->snapfd, object);
    else
        unlinkat(r->snapfd, tmp, 0);
}

/* One manifest by object (32 hex): the cached copy, else (or when fresh:
 * always) the store's. */
static int snap_fetch(struct vb2_repo *r, const char *object, bool fresh,
                      struct vb_manifest **out, vb_error *e)
{
    GByteArray *b = g_byte_array_new();
    char name[VB_OBJ_NAME_MAX];
    int ret;

    if (!fresh && snap_cache_read(r, object, b) == 0 &&
        vb_manifest_open(&r->keys, b->data, b->len, object, out, NULL) == 0) {
        g_byte_array_free(b, TRUE);
        return 0;
    }
    vb2_snap_cache_drop(r, object);
    snprintf(name, sizeof(name), "snapshots/%s", object);
    ret = vb2_get_object(r, name, VB_MANIFEST_MAX, b, e);
    if (!ret)
        ret = vb_manifest_open(&r->keys, b->data, b->len, object, out, e);
    if (!ret)
        vb2_snap_cache_put(r, object, b);
    g_byte_array_free(b, TRUE);
    return ret;
}

static int add_snapshot_name(void *opaque, const char *name, const struct vb_obj_info *info,
                             vb_error *e)
{
    uint8_t id[VB_OBJ_ID_LEN];
    enum vb_obj_kind k;

    if (!vb_obj_parse(name, &k, id) && k == VB_OBJ_SNAPSHOT)
        g_ptr_array_add(opaque, g_strdup(name + strlen("snapshots/")));
    return 0;
}

static gint manifest_order(gconstpointer a, gconstpointer b)
{
    const struct vb_manifest *x = *(const struct vb_manifest *const *)a,
                             *y = *(const struct vb_manifest *const *)b;

    if (x->created_ns != y->created_ns)
        return x->created_ns < y->created_ns ? -1 : 1;
    return strcmp(x->id, y->id) ? strcmp(x->id, y->id) : strcmp(x->object, y->object);
}

/* Drop cached manifests the store no longer lists. */
static void snap_cache_prune(struct vb2_repo *r, GHashTable *listed)
{
    int fd = dup(r->snapfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;

    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    rewinddir(d);
    while ((de = readdir(d))) {
        if (strlen(de->d_name) == 32 && lower_hex(de->d_name, 16) &&
            !g_hash_table_contains(listed, de->d_name))
            unlinkat(r->snapfd, de->d_name, 0);
    }
    closedir(d);
}

static int snap_list(struct vb2_repo *r, const char *vm, bool fresh, GPtrArray **out,
                     GPtrArray **problems, vb_error *e)
{
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    GPtrArray *all = g_ptr_array_new_with_free_func((GDestroyNotify)vb_manifest_free);
    GHashTable *listed = g_hash_table_new(g_str_hash, g_str_equal);
    int ret = vb_store_list(r->s, vb_obj_prefix(VB_OBJ_SNAPSHOT), add_snapshot_name, names, e);

    *out = NULL;
    if (problems)
        *problems = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; !ret && i < names->len; i++) {
        struct vb_manifest *m = NULL;
        vb_error one = { 0 };
        int r2;

        g_hash_table_add(listed, names->pdata[i]);
        r2 = snap_fetch(r, names->pdata[i], fresh, &m, &one);
        if (r2 == -ENOENT)
            continue;           /* forgotten meanwhile */
        if (r2 && problems) {
            g_ptr_array_add(*problems, g_strdup(vb_strerror(&one)));
            continue;
        }
        if (r2) {
            ret = vb_seterr(e, r2, "%s", vb_strerror(&one));
            break;
        }
        if (vm && strcmp(m->vm, vm))
            vb_manifest_free(m);
        else
            g_ptr_array_add(all, m);
    }
    if (!ret && !vm)
        snap_cache_prune(r, listed);
    g_hash_table_destroy(listed);
    g_ptr_array_free(names, TRUE);
    if (ret) {
        g_ptr_array_free(all, TRUE);
        if (problems) {
            g_ptr_array_free(*problems, TRUE);
            *problems = NULL;
        }
        vb_prefixerr(e, "list snapshots");
        return ret;
    }
    g_ptr_array_sort(all, manifest_order);
    *out = all;
    return 0;
}

int vb2_snap_list(struct vb2_repo *r, const char *vm, GPtrArray **out, GPtrArray **problems,
                  vb_error *e)
{
    return snap_list(r, vm, false, out, problems, e);
}

int vb2_snap_list_fresh(struct vb2_repo *r, const char *vm, GPtrArray **out,
                        GPtrArray **problems, vb_error *e)
{
    return snap_list(r, vm, true, out, problems, e);
}

int vb2_snap_load(struct vb2_repo *r, const char *id, struct vb_manifest **out, vb_error *e)
{
    GPtrArray *all, *problems;
    int ret;

    *out = NULL;
    if (strlen(id) == 32 && lower_hex(id, 16)) {
        ret = snap_fetch(r, id, false, out, e);
        if (ret == -ENOENT)
            ret = vb_seterr(e, -ENOENT, "snapshot %s not found", id);
        return ret;
    }
    if (!vb_snap_id_valid(id))
        return vb_seterr(e, -EINVAL, "'%.100s' is not a valid snapshot id (VM/TIME)", id);
    /* the others' damage does not hide this one */
    ret = vb2_snap_list(r, NULL, &all, &problems, e);
    if (ret)
        return ret;
    for (guint i = 0; i < all->len; i++) {
        struct vb_manifest *m = all->pdata[i];
        if (!strcmp(m->id, id)) {
            *out = g_ptr_array_steal_index(all, i);
            break;
        }
    }
    g_ptr_array_free(all, TRUE);
    if (!*out && problems->len)
        ret = vb_seterr(e, -ENOENT, "snapshot %s not found (%u snapshot%s cannot be read: %s)",
                        id, problems->len, problems->len == 1 ? "" : "s",
                        (char *)problems->pdata[0]);
    else if (!*out)
        ret = vb_seterr(e, -ENOENT, "snapshot %s not found", id);
    g_ptr_array_free(problems, TRUE);
    return ret;
}

int vb2_forget(struct vb2_repo *r, const char *id, vb_error *e)
{
    struct vb_manifest *m;
    char name[VB_OBJ_NAME_MAX];
    int ret = vb2_snap_load(r, id, &m, e);

    if (ret)
        return ret;
    snprintf(name, sizeof(name), "snapshots/%s", m->object);
    ret = vb_store_remove(r->s, name, e);
    if (!ret || ret == -ENOENT) {
        vb2_snap_cache_drop(r, m->object);
        ret = 0;
    }
    vb_manifest_free(m);
    if (ret)
        vb_prefixerr(e, "forget %s", id);
    return ret;
}

/* ---- blobs ------------------------------------------------------------------------------------ */

int vb2_blob_read_at(struct vb2_repo *r, struct vb_codec *c, const uint8_t *idkey,
                     const uint8_t id[VB_HASH_LEN], const struct vb_blob_loc *loc,
                     GByteArray *out, vb_error *e)
{
    char name[VB_OBJ_NAME_MAX], hex[65];
    GByteArray *stored = g_byte_array_new();
    int ret;

    vb_obj_name(VB_OBJ_PACK, loc->pack, name);
    ret = vb_store_get(r->s, name, loc->offset, loc->stored_len, stored, e);
    __atomic_fetch_add(&r->range_gets, 1, __ATOMIC_RELAXED);
    if (!ret) {
        g_byte_array_set_size(out, loc->plain_len);
        ret = vb_blob_decode(c, &r->keys, id, idkey, stored->data, stored->len, loc->plain_len,
                             out->data, loc->plain_len, e);
        if (ret) {
            vb_hex(id, VB_HASH_LEN, hex);
            vb_prefixerr(e, "%s at %u: blob %s", name, loc->offset, hex);
            g_byte_array_set_size(out, 0);
        }
    }
    g_byte_array_free(stored, TRUE);
    return ret;
}

/* Look id up; when absent, refresh once and look again. */
static int locate(struct vb2_repo *r, const uint8_t id[VB_HASH_LEN], bool refresh_first,
                  struct vb_blob_loc *loc, vb_error *e)
{
    struct vb_index_view *v;
    char hex[65];
    int ret;

    for (int pass = refresh_first ? 1 : 0; pass < 2; pass++) {
        if (pass == 1) {
            ret = vb_index_cache_refresh(r->cache, r->s, &r->keys, NULL, e);
            if (ret)
                return ret;
        }
        ret = vb_index_cache_view(r->cache, &v, e);
        if (ret)
            return ret;
        ret = vb_index_view_find(v, id, NULL, loc);
        vb_index_view_unref(v);
        if (ret == 1)
            return 0;
        if (ret < 0)
            return vb_seterr(e, ret, "the index cache is damaged: remove %s", r->cache_dir);
    }
    vb_hex(id, VB_HASH_LEN, hex);
    return vb_seterr(e, -ENOENT, "blob %s is not in the index", hex);
}

int vb2_blob_get(struct vb2_repo *r, struct vb_codec *c, const uint8_t idkey[VB_KEY_LEN],
                 const uint8_t id[VB_HASH_LEN], GByteArray *out, vb_error *e)
{
    struct vb_blob_loc loc;
    int ret = locate(r, id, false, &loc, e);

    if (ret)
        return ret;
    ret = vb2_blob_read_at(r, c, idkey, id, &loc, out, e);
    if (ret == -ENOENT) {
        /* its pack is gone: gc moved it (repack) since the cache was made */
        ret = locate(r, id, true, &loc, e);
        if (!ret)
            ret = vb2_blob_read_at(r, c, idkey, id, &loc, out, e);
    }
    return ret;
}

/* ---- streams ----------------------------------------------------------------------------------- */

struct stream_src {
    struct vb2_repo *r;
    uint8_t idkey[VB_KEY_LEN];
    struct vb_codec codec;
    bool codec_ok;
};

static int stream_get(void *opaque, const uint8_t id[VB_HASH_LEN], GByteArray *out,
                      vb_error *e)
{
    struct stream_src *s = opaque;

    return vb2_blob_get(s->r, &s->codec, s->idkey, id, out, e);
}

int vb2_stream_get_all(struct vb2_repo *r, const struct vb_manifest *m,
                       const struct vb_stream_ref *ref, GByteArray *out, vb_error *e)
{
    struct stream_src src = { .r = r };
    int ret = vb2_group_key(r, m->dedup_group, src.idkey, e);

    if (ret)
        return ret;
    if (vb_codec_init(&src.codec, 1))
        return vb_seterr(e, -ENOMEM, "out of memory");
    ret = vb_stream_get_all(ref, stream_get, &src, out, e);
    vb_codec_free(&src.codec);
    OPENSSL_cleanse(src.idkey, sizeof(src.idkey));
    if (ret)
        vb_prefixerr(e, "snapshot %s", m->id);
    return ret;
}

struct vb2_stream {
    struct stream_src src;
    struct vb_stream_reader *rd;
};

struct vb2_stream *vb2_stream_open(struct vb2_repo *r, const struct vb_manifest *m,
                                   const struct vb_stream_ref *ref, vb_error *e)
{
    struct vb2_stream *s = calloc(1, sizeof(*s));
    int ret;

    if (!s) {
        vb_seterr(e, -ENOMEM, "out of memory");
        return NULL;
    }
    s->src.r = r;
    ret = vb2_group_key(r, m->dedup_group, s->src.idkey, e);
    if (ret) {
        free(s);
        return NULL;
    }
    if (vb_codec_init(&s->src.codec, 1)) {
        free(s);
        vb_seterr(e, -ENOMEM, "out of memory");
        return NULL;
    }
    s->src.codec_ok = true;
    s->rd = vb_stream_reader_new(ref, stream_get, &s->src);
    if (!s->rd) {
        vb2_stream_close(s);
        vb_seterr(e, -ENOMEM, "out of memory");
        return NULL;
    }
    return s;
}

int vb2_stream_read(struct vb2_stream *s, void *buf, size_t cap, size_t *got, vb_error *e)
{
    return vb_stream_read(s->rd, buf, cap, got, e);
}

void vb2_stream_close(struct vb2_stream *s)
{
    if (!s)
        return;
    vb_stream_reader_free(s->rd);
    if (s->src.codec_ok)
        vb_codec_free(&s->src.codec);
    OPENSSL_cleanse(s->src.idkey, sizeof(s->src.idkey));
    free(s);
}

/* ---- many blobs at once ------------------------------------------------------------------------- */

#define COALESCE_GAP   (1u << 20)     /* read through gaps up to this */
#define COALESCE_SPAN  (32u << 20)    /* at most this in one range get */

struct req {
    size_t i;
    uint32_t pack;                    /* view ordinal */
    struct vb_blob_loc loc;
};

struct group {
    size_t first, count;              /* into reqs */
    uint64_t start, end;
};

struct many {
    struct vb2_repo *r;
    const uint8_t *idkey, *ids;
    struct req *reqs;
    struct group *groups;
    size_t ngroups;
    gint next;                        /* next group, atomic */
    vb2_got_fn fn;
    void *opaque;
    GMutex mu;
    int first_err;
    vb_error err;
};

static void many_fail(struct many *m, int ret, const vb_error *e)
{
    g_mutex_lock(&m->mu);
    if (!m->first_err) {
        m->first_err = ret;
        m->err = *e;
    }
    g_mutex_unlock(&m->mu);
}

static gpointer many_worker(gpointer opaque)
{
    struct many *m = opaque;
    GByteArray *range = g_byte_array_new(), *plain = g_byte_array_new();
    struct vb_codec c;
    bool codec_ok = vb_codec_init(&c, 1) == 0;

    for (;;) {
        gint gi = g_atomic_int_add(&m->next, 1);
        struct group *g;
        char name[VB_OBJ_NAME_MAX];
        vb_error e = { 0 };
        int ret;

        if (gi < 0 || (size_t)gi >= m->ngroups)
            break;
        g = &m->groups[gi];
        if (!codec_ok) {
            ret = vb_seterr(&e, -ENOMEM, "out of memory");
        } else {
            vb_obj_name(VB_OBJ_PACK, m->reqs[g->first].loc.pack, name);
            ret = vb_store_get(m->r->s, name, g->start, (size_t)(g->end - g->start), range, &e);
            __atomic_fetch_add(&m->r->range_gets, 1, __ATOMIC_RELAXED);
        }
        for (size_t k = g->first; k < g->first + g->count; k++) {
            const struct req *q = &m->reqs[k];
            const uint8_t *id = m->ids + q->i * VB_HASH_LEN;
            vb_error one = { 0 };
            int r2 = ret;

            if (!r2) {
                g_byte_array_set_size(plain, q->loc.plain_len);
                r2 = vb_blob_decode(&c, &m->r->keys, id, m->idkey,
                                    range->data + (q->loc.offset - g->start),
                                    q->loc.stored_len, q->loc.plain_len, plain->data,
                                    q->loc.plain_len, &one);
                if (r2) {
                    char hex[65];
                    vb_hex(id, VB_HASH_LEN, hex);
                    vb_prefixerr(&one, "%s at %u: blob %s", name, q->loc.offset, hex);
                }
            } else if (ret == -ENOENT && codec_ok) {
                /* the pack went away (gc): this blob alone, through a fresh index */
                r2 = vb2_blob_get(m->r, &c, m->idkey, id, plain, &one);
            } else {
                one = e;
            }
            if (r2) {
                many_fail(m, r2, &one);
                m->fn(m->opaque, q->i, NULL, 0, r2, &one);
            } else {
                m->fn(m->opaque, q->i, plain->data, plain->len, 0, NULL);
            }
        }
    }
    if (codec_ok)
        vb_codec_free(&c);
    g_byte_array_free(range, TRUE);
    g_byte_array_free(plain, TRUE);
    return NULL;
}

static int req_order(const void *a, const void *b)
{
    const struct req *x = a, *y = b;

    if (x->pack != y->pack)
        return x->pack < y->pack ? -1 : 1;
    if (x->loc.offset != y->loc.offset)
        return x->loc.offset < y->loc.offset ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

int vb2_get_many(struct vb2_repo *r, const uint8_t idkey[VB_KEY_LEN], const uint8_t *ids,
                 size_t n, vb2_got_fn fn, void *opaque, vb_error *e)
{
    struct many m = { .r = r, .idkey = idkey, .ids = ids, .fn = fn, .opaque = opaque };
    struct vb_index_view *v;
    size_t nreq = 0;
    unsigned nthreads;
    GThread **th;
    int ret;

    if (!n)
        return 0;
    ret = vb_index_cache_view(r->cache, &v, e);
    if (ret)
        return ret;
    m.reqs = malloc(n * sizeof(*m.reqs));
    m.groups = malloc(n * sizeof(*m.groups));
    if (!m.reqs || !m.groups) {
        free(m.reqs);
        free(m.groups);
        vb_index_view_unref(v);
        return vb_seterr(e, -ENOMEM, "out of memory");
    }
    g_mutex_init(&m.mu);
    for (size_t i = 0; i < n; i++) {
        struct req *q = &m.reqs[nreq];
        int f = vb_index_view_find(v, ids + i * VB_HASH_LEN, NULL, &q->loc);
        if (f == 1 && vb_index_view_pack_ord(v, q->loc.pack, &q->pack) == 0) {
            q->i = i;
            nreq++;
            continue;
        }
        /* not in this view: one at a time, through a refreshed index */
        {
            GByteArray *plain = g_byte_array_new();
            struct vb_codec c;
            vb_error one = { 0 };
            bool ok = vb_codec_init(&c, 1) == 0;
            int r2 = !ok ? vb_seterr(&one, -ENOMEM, "out of memory")
                         : vb2_blob_get(r, &c, idkey, ids + i * VB_HASH_LEN, plain, &one);
            if (ok)
                vb_codec_free(&c);
            if (r2) {
                many_fail(&m, r2, &one);
                fn(opaque, i, NULL, 0, r2, &one);
            } else {
                fn(opaque, i, plain->data, plain->len, 0, NULL);
            }
            g_byte_array_free(plain, TRUE);
        }
    }
    vb_index_view_unref(v);
    qsort(m.reqs, nreq, sizeof(*m.reqs), req_order);
    for (size_t k = 0; k < nreq; k++) {
        const struct req *q = &m.reqs[k];
        uint64_t end = (uint64_t)q->loc.offset + q->loc.stored_len;
        struct group *g = m.ngroups ? &m.groups[m.ngroups - 1] : NULL;

        if (g && m.reqs[g->first].pack == q->pack && q->loc.offset <= g->end + COALESCE_GAP &&
            VB_MAX(end, g->end) - g->start <= COALESCE_SPAN) {
            g->count++;
            g->end = VB_MAX(end, g->end);
            continue;
        }
        g = &m.groups[m.ngroups++];
        g->first = k;
        g->count = 1;
        g->start = q->loc.offset;
        g->end = end;
    }
    nthreads = (unsigned)VB_MIN((size_t)r->read_threads, m.ngroups);
    th = calloc(VB_MAX(nthreads, 1u), sizeof(*th));
    for (unsigned t = 0; th && t < nthreads; t++)
        th[t] = g_thread_new("vb-get", many_worker, &m);
    if (!th)
        many_worker(&m);
    for (unsigned t = 0; th && t < nthreads; t++)
        g_thread_join(th[t]);
    free(th);
    free(m.reqs);
    free(m.groups);
    g_mutex_clear(&m.mu);
    if (m.first_err) {
        if (e)
            *e = m.err;
        return m.first_err;
    }
    return 0;
}
