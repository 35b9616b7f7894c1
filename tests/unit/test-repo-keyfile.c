/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests: key files and the secrets that open them (hostd/repo/keyfile.c). */
#include <endian.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <json.h>
#include <openssl/sha.h>
#include <poll.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "keyfile.h"

/* the least scrypt cost the bounds allow: fast tests */
static const struct vb_kdf_params fast = { 1u << 14, 8, 1 };
static char *tmpdir;

static void pw_secret(struct vb_secret *s, const char *pw)
{
    s->kind = VB_SECRET_PASSWORD;
    s->data = (uint8_t *)g_strdup(pw);
    s->len = strlen(pw);
}

static void raw_secret(struct vb_secret *s, uint8_t fillbyte)
{
    s->kind = VB_SECRET_RAWKEY;
    s->data = g_malloc(VB_KEY_LEN + 1);
    memset(s->data, fillbyte, VB_KEY_LEN);
    s->data[VB_KEY_LEN] = 0;
    s->len = VB_KEY_LEN;
}

static void random_master(uint8_t m[VB_MASTER_LEN])
{
    for (int i = 0; i < VB_MASTER_LEN; i++)
        m[i] = (uint8_t)g_test_rand_int();
}

static char *write_tmp(const char *name, const void *data, size_t len)
{
    char *path = g_build_filename(tmpdir, name, NULL);
    g_assert_true(g_file_set_contents(path, data, (gssize)len, NULL));
    return path;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* ---- scrypt parameter bounds ---------------------------------------------- */

static void test_bounds(void)
{
    static const struct { struct vb_kdf_params p; bool ok; const char *why; } cases[] = {
        { { 32768, 8, 1 }, true, NULL },
        { { 1u << 14, 1, 1 }, true, NULL },
        { { 1u << 20, 2, 1 }, true, NULL },               /* 256 MiB: the memory bound */
        { { 1u << 15, 8, 16 }, true, NULL },              /* N·r·p = 2^22: the work bound */
        { { 1u << 13, 8, 1 }, false, "power of two" },
        { { 32767, 8, 1 }, false, "power of two" },
        { { 1u << 21, 1, 1 }, false, "power of two" },
        { { 0, 8, 1 }, false, "power of two" },
        { { 0x80000000u, 8, 1 }, false, "power of two" },
        { { 32768, 0, 1 }, false, "r=0" },
        { { 32768, 33, 1 }, false, "r=33" },
        { { 32768, 8, 0 }, false, "p=0" },
        { { 32768, 8, 17 }, false, "p=17" },
        { { 32768, UINT32_MAX, UINT32_MAX }, false, "r=" },
        { { 1u << 20, 4, 1 }, false, "MiB" },             /* 512 MiB */
        { { 1u << 20, 32, 16 }, false, "MiB" },
        { { 1u << 16, 8, 16 }, false, "N·r·p" },          /* 2^23 */
    };
    vb_error e = { 0 };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        int ret = vb_kdf_params_check(&cases[i].p, &e);
        if (cases[i].ok) {
            g_assert_cmpint(ret, ==, 0);
        } else {
            g_assert_cmpint(ret, ==, -EINVAL);
            if (!strstr(e.msg, cases[i].why))
                g_error("case %zu: '%s' lacks '%s'", i, e.msg, cases[i].why);
        }
    }
}

/* ---- key files -------------------------------------------------------------- */

static void test_password_roundtrip(void)
{
    enum vb_aead aeads[] = { VB_AEAD_AES256GCM, VB_AEAD_CHACHA20POLY1305 };
    uint8_t master[VB_MASTER_LEN], back[VB_MASTER_LEN];
    struct vb_secret pw, other;
    struct vb_keyfile_info info;
    vb_error e = { 0 };
    char *json, *json2;
    size_t len, len2;

    pw_secret(&pw, "correct horse battery staple");
    pw_secret(&other, "correct horse battery stapl");
    for (size_t a = 0; a < G_N_ELEMENTS(aeads); a++) {
        random_master(master);
        g_assert_cmpint(vb_keyfile_create(master, &pw, &fast, aeads[a], &json, &len, &e), ==, 0);
        g_assert_cmpuint(strlen(json), ==, len);
        g_assert_cmpint(vb_keyfile_open(json, len, &pw, back, &e), ==, 0);
        g_assert_true(memcmp(back, master, VB_MASTER_LEN) == 0);

        /* the same master and password make another file: a new salt and nonce */
        g_assert_cmpint(vb_keyfile_create(master, &pw, &fast, aeads[a], &json2, &len2, &e), ==,
                        0);
        g_assert_cmpstr(json, !=, json2);

        /* wrong password: -EACCES, the caller's buffer holds no key */
        memset(back, 0x77, sizeof(back));
        e.msg[0] = 0;
        g_assert_cmpint(vb_keyfile_open(json, len, &other, back, &e), ==, -EACCES);
        g_assert_cmpstr(e.msg, ==, "wrong password or key");
        g_assert_true(all_zero(back, sizeof(back)));

        g_assert_cmpint(vb_keyfile_info(json, len, &info, &e), ==, 0);
        g_assert_cmpstr(info.kdf, ==, "scrypt");
        g_assert_cmpuint(info.params.n, ==, fast.n);
        g_assert_cmpuint(info.params.r, ==, fast.r);
        g_assert_cmpuint(info.params.p, ==, fast.p);
        g_assert_cmpint(info.aead, ==, aeads[a]);
        int64_t created;
        g_assert_cmpint(vb_parse_time(info.created, &created), ==, 0);
        g_assert_cmpint(llabs(created - vb_wall_ns()), <, 600 * (int64_t)1000000000);
        g_assert_cmpuint(strlen(info.host), >, 0);
        g_assert_cmpuint(strlen(info.user), >, 0);
        /* a key file holds no plain key material */
        char hex[2 * VB_MASTER_LEN + 1];
        vb_hex(master, VB_MASTER_LEN, hex);
        g_assert_null(strstr(json, hex));
        free(json);
        free(json2);
    }
    /* default parameters */
    g_assert_cmpint(vb_keyfile_create(master, &pw, NULL, VB_AEAD_AES256GCM, &json, &len, &e), ==,
                    0);
    gint64 t0 = g_get_monotonic_time();
    g_assert_cmpint(vb_keyfile_open(json, len, &pw, back, &e), ==, 0);
    g_test_message("scrypt N=32768 r=8 p=1: %.3f s", (double)(g_get_monotonic_time() - t0) / 1e6);
    g_assert_true(memcmp(back, master, VB_MASTER_LEN) == 0);
    g_assert_cmpint(vb_keyfile_info(json, len, &info, &e), ==, 0);
    g_assert_cmpuint(info.params.n, ==, 32768);
    g_assert_cmpuint(info.params.r, ==, 8);
    g_assert_cmpuint(info.params.p, ==, 1);
    free(json);
    /* refused at creation: no encryption, parameters out of bounds */
    g_assert_cmpint(vb_keyfile_create(master, &pw, NULL, VB_AEAD_NONE, &json, &len, &e), ==,
                    -EINVAL);
    struct vb_kdf_params huge = { 1u << 20, 32, 16 };
    g_assert_cmpint(vb_keyfile_create(master, &pw, &huge, VB_AEAD_AES256GCM, &json, &len, &e),
                    ==, -EINVAL);
    vb_secret_wipe(&pw);
    vb_secret_wipe(&other);
}

static void test_raw_roundtrip(void)
{
    uint8_t master[VB_MASTER_LEN], back[VB_MASTER_LEN];
    struct vb_secret raw, raw2, pw;
    struct vb_keyfile_info info;
    vb_error e = { 0 };
    char *json, *pwjson;
    size_t len, pwlen;

    random_master(master);
    raw_secret(&raw, 0x42);
    raw_secret(&raw2, 0x43);
    pw_secret(&pw, "pw");
    g_assert_cmpint(vb_keyfile_create(master, &raw, NULL, VB_AEAD_CHACHA20POLY1305, &json, &len,
                                      &e), ==, 0);
    g_assert_cmpint(vb_keyfile_open(json, len, &raw, back, &e), ==, 0);
    g_assert_true(memcmp(back, master, VB_MASTER_LEN) == 0);
    g_assert_cmpint(vb_keyfile_info(json, len, &info, &e), ==, 0);
    g_assert_cmpstr(info.kdf, ==, "raw");
    g_assert_cmpint(info.aead, ==, VB_AEAD_CHACHA20POLY1305);
    g_assert_null(strstr(json, "\"salt\""));
    g_assert_null(strstr(json, "\"n\""));
    /* another raw key; a password for a raw-key file and the reverse */
    g_assert_cmpint(vb_keyfile_open(json, len, &raw2, back, &e), ==, -EACCES);
    g_assert_nonnull(strstr(e.msg, "wrong password or key"));
    g_assert_cmpint(vb_keyfile_open(json, len, &pw, back, &e), ==, -EACCES);
    g_assert_nonnull(strstr(e.msg, "takes a raw key"));
    g_assert_cmpint(vb_keyfile_create(master, &pw, &fast, VB_AEAD_AES256GCM, &pwjson, &pwlen,
                                      &e), ==, 0);
    g_assert_cmpint(vb_keyfile_open(pwjson, pwlen, &raw, back, &e), ==, -EACCES);
    g_assert_nonnull(strstr(e.msg, "takes a password"));
    free(json);
    free(pwjson);
    vb_secret_wipe(&raw);
    vb_secret_wipe(&raw2);
    vb_secret_wipe(&pw);
}

/* The field values of a key file, to rewrite one and serialise again. */
static char *with_field(const char *json, const char *key, json_object *val)
{
    json_object *o = json_tokener_parse(json);
    char *out;

    g_assert_nonnull(o);
    if (val)
        json_object_object_add(o, key, val);
    else
        json_object_object_del(o, key);
    out = g_strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    return out;
}

static const char *field(json_object *o, const char *k)
{
    json_object *v;
    g_assert_true(json_object_object_get_ex(o, k, &v));
    return json_object_get_string(v);
}

/* The check value as docs/repository-v2.md defines it, computed here on its own. */
static char *doc_check(const char *kdf, uint32_t n, uint32_t r, uint32_t p, const uint8_t *salt,
                       const char *aead, const uint8_t *wrapped)
{
    GByteArray *b = g_byte_array_new();
    uint8_t md[32];
    uint32_t v;
    char hex[33];

    g_byte_array_append(b, (const guint8 *)"vbackup key file", 17);
    g_byte_array_append(b, (const guint8 *)kdf, (guint)strlen(kdf) + 1);
    v = htole32(n); g_byte_array_append(b, (guint8 *)&v, 4);
    v = htole32(r); g_byte_array_append(b, (guint8 *)&v, 4);
    v = htole32(p); g_byte_array_append(b, (guint8 *)&v, 4);
    if (salt)
        g_byte_array_append(b, salt, 16);
    g_byte_array_append(b, (const guint8 *)aead, (guint)strlen(aead) + 1);
    g_byte_array_append(b, wrapped, 92);
    SHA256(b->data, b->len, md);
    g_byte_array_free(b, TRUE);
    vb_hex(md, 16, hex);
    return g_strdup(hex);
}

/* Whether byte i of a (pretty-printed) key file is white space or on the line
 * of an informational member: created, host, user. */
static bool informational(const char *json, size_t i)
{
    size_t start = i;

    if (strchr(" \t\r\n", json[i]))
        return true;
    while (start && json[start - 1] != '\n')
        start--;
    while (json[start] == ' ')
        start++;
    return g_str_has_prefix(json + start, "\"created\"") ||
           g_str_has_prefix(json + start, "\"host\"") || g_str_has_prefix(json + start, "\"user\"");
}

static void test_tamper(void)
{
    uint8_t master[VB_MASTER_LEN], back[VB_MASTER_LEN];
    struct vb_secret pw;
    vb_error e = { 0 };
    char *json;
    size_t len;
    unsigned harmless = 0;

    random_master(master);
    pw_secret(&pw, "s3cret");
    g_assert_cmpint(vb_keyfile_create(master, &pw, &fast, VB_AEAD_AES256GCM, &json, &len, &e),
                    ==, 0);

    /* every byte of the file changed: -EBADMSG, or (white space, or the
     * informational members created/host/user) the same master key.  Never
     * -EACCES: a damaged file is not reported as a wrong password.  A raw-key
     * file is opened each time; for the password file, where each opening
     * runs scrypt, the informational changes go through vb_keyfile_info. */
    struct vb_secret raw;
    char *rawjson;
    size_t rawlen;
    raw_secret(&raw, 0x5c);
    g_assert_cmpint(vb_keyfile_create(master, &raw, NULL, VB_AEAD_CHACHA20POLY1305, &rawjson,
                                      &rawlen, &e), ==, 0);
    for (int kind = 0; kind < 2; kind++) {
        const char *text = kind ? json : rawjson;
        size_t n = kind ? len : rawlen;
        for (size_t i = 0; i < n; i++) {
            char *copy = g_memdup2(text, n + 1);
            struct vb_keyfile_info info;
            int ret;
            copy[i] ^= 0x01;
            memset(back, 0, sizeof(back));
            if (kind && informational(text, i))
                ret = vb_keyfile_info(copy, n, &info, &e);
            else
                ret = vb_keyfile_open(copy, n, kind ? &pw : &raw, back, &e);
            if (ret == 0) {
                if (!informational(text, i))
                    g_error("byte %zu ('%c') changed and the file still opens", i, text[i]);
                if (!kind)
                    g_assert_true(memcmp(back, master, VB_MASTER_LEN) == 0);
                harmless++;
            } else if (ret != -EBADMSG) {
                g_error("byte %zu ('%c'): %d %s", i, text[i], ret, e.msg);
            }
            g_free(copy);
        }
    }
    g_test_message("%u of %zu changed bytes were in informational fields or white space",
                   harmless, len + rawlen);
    free(rawjson);
    vb_secret_wipe(&raw);

    /* a changed byte inside the salt and the wrapped key, well-formed base64 */
    json_object *o = json_tokener_parse(json);
    static const char *fields[] = { "salt", "wrapped" };
    for (size_t f = 0; f < G_N_ELEMENTS(fields); f++) {
        size_t n = f == 0 ? 16 : 92;
        uint8_t *bytes = g_malloc(n);
        gsize got;
        guchar *dec = g_base64_decode(field(o, fields[f]), &got);
        g_assert_cmpuint(got, ==, n);
        for (size_t i = 0; i < n; i++) {
            memcpy(bytes, dec, n);
            bytes[i] ^= 0x20;
            char *b64 = g_base64_encode(bytes, n);
            char *bad = with_field(json, fields[f], json_object_new_string(b64));
            g_assert_cmpint(vb_keyfile_open(bad, strlen(bad), &pw, back, &e), ==, -EBADMSG);
            g_assert_nonnull(strstr(e.msg, "damaged"));
            g_free(bad);
            g_free(b64);
        }
        g_free(dec);
        g_free(bytes);
    }

    /* someone who recomputes the check value: the seal still refuses */
    gsize slen, wlen;
    guchar *salt = g_base64_decode(field(o, "salt"), &slen);
    guchar *wrapped = g_base64_decode(field(o, "wrapped"), &wlen);
    char *want = doc_check("scrypt", fast.n, fast.r, fast.p, salt, "aes-256-gcm", wrapped);
    g_assert_cmpstr(want, ==, field(o, "check"));      /* the documented layout */
    salt[0] ^= 1;
    char *b64 = g_base64_encode(salt, slen), *chk = doc_check("scrypt", fast.n, fast.r, fast.p,
                                                              salt, "aes-256-gcm", wrapped);
    char *bad = with_field(json, "salt", json_object_new_string(b64)), *bad2;
    bad2 = with_field(bad, "check", json_object_new_string(chk));
    g_assert_cmpint(vb_keyfile_open(bad2, strlen(bad2), &pw, back, &e), ==, -EACCES);
    g_free(bad); g_free(bad2); g_free(b64); g_free(chk); g_free(want);
    salt[0] ^= 1;
    wrapped[50] ^= 1;
    b64 = g_base64_encode(wrapped, wlen);
    chk = doc_check("scrypt", fast.n, fast.r, fast.p, salt, "aes-256-gcm", wrapped);
    bad = with_field(json, "wrapped", json_object_new_string(b64));
    bad2 = with_field(bad, "check", json_object_new_string(chk));
    g_assert_cmpint(vb_keyfile_open(bad2, strlen(bad2), &pw, back, &e), ==, -EACCES);
    g_free(bad); g_free(bad2); g_free(b64); g_free(chk);
    g_free(salt);
    g_free(wrapped);
    json_object_put(o);
    free(json);
    vb_secret_wipe(&pw);
}

/* Files that are not key files, or break a bound: -EBADMSG naming the field,
 * before any key derivation. */
static void test_malformed(void)
{
    uint8_t master[VB_MASTER_LEN], back[VB_MASTER_LEN];
    struct vb_secret pw;
    vb_error e = { 0 };
    char *json;
    size_t len;

    random_master(master);
    pw_secret(&pw, "pw");
    g_assert_cmpint(vb_keyfile_create(master, &pw, &fast, VB_AEAD_AES256GCM, &json, &len, &e),
                    ==, 0);
    static const char *texts[] = { "", "{", "[]", "null", "\"x\"", "{} {}", "{}x", "{}" };
    for (size_t i = 0; i < G_N_ELEMENTS(texts); i++)
        g_assert_cmpint(vb_keyfile_open(texts[i], strlen(texts[i]), &pw, back, &e), ==,
                        -EBADMSG);
    struct { const char *key; json_object *val; const char *why; } cases[] = {
        { "vbackup_key", NULL, "vbackup_key" },
        { "vbackup_key", json_object_new_int(2), "version 2" },
        { "vbackup_key", json_object_new_string("1"), "vbackup_key" },
        { "kdf", json_object_new_string("argon2id"), "kdf" },
        { "kdf", NULL, "kdf" },
        { "n", json_object_new_int64(1ll << 30), "\"n\"" },
        { "n", json_object_new_int64(1ll << 40), "\"n\"" },
        { "n", json_object_new_int64(-32768), "\"n\"" },
        { "n", json_object_new_string("32768"), "\"n\"" },
        { "n", json_object_new_double(32768.0), "\"n\"" },
        { "n", json_object_new_int64(32767), "power of two" },
        { "n", json_object_new_int64(1 << 13), "power of two" },
        { "r", json_object_new_int64(1000000), "\"r\"" },
        { "r", json_object_new_int64(32), "damaged" },      /* within bounds: the check */
        { "p", json_object_new_int64(0), "\"p\"" },
        { "p", NULL, "\"p\"" },
        { "salt", json_object_new_string("AAAA"), "salt" },
        { "salt", json_object_new_string("AAAAAAAAAAAAAAAAAAAAAB=="), "salt" },   /* bits past the end */
        { "salt", json_object_new_string("AAAAAAAAAAAAAAAAAAAAAA="), "salt" },
        { "salt", json_object_new_string("AAAAAAAAAAAAAAAAAAAA AA=="), "salt" },
        { "salt", json_object_new_int(5), "salt" },
        { "aead", json_object_new_string("none"), "aead" },
        { "aead", json_object_new_string("aes-128-gcm"), "aead" },
        { "wrapped", json_object_new_string("AAAA"), "wrapped" },
        { "wrapped", NULL, "wrapped" },
        { "check", json_object_new_string("00"), "check" },
        { "check", NULL, "check" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        char *bad = with_field(json, cases[i].key, cases[i].val);
        struct vb_keyfile_info info;
        e.msg[0] = 0;
        int ret = vb_keyfile_open(bad, strlen(bad), &pw, back, &e);
        const char *why = cases[i].why;
        if (ret != -EBADMSG || !strstr(e.msg, why))
            g_error("case %zu (%s): %d '%s' lacks '%s'", i, cases[i].key, ret, e.msg, why);
        g_assert_cmpint(vb_keyfile_info(bad, strlen(bad), &info, &e), ==, -EBADMSG);
        g_free(bad);
    }
    /* parameters each in range, together beyond the memory or the work bound:
     * refused before scrypt runs (it would need 4 GiB, or 2^23 of work) */
    static const struct { uint32_t n, r, p; const char *why; } combos[] = {
        { 1u << 20, 32, 1, "4096 MiB" }, { 1u << 16, 8, 16, "N·r·p" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(combos); i++) {
        char *b1 = with_field(json, "n", json_object_new_int64(combos[i].n));
        char *b2 = with_field(b1, "r", json_object_new_int64(combos[i].r));
        char *b3 = with_field(b2, "p", json_object_new_int64(combos[i].p));
        gint64 t0 = g_get_monotonic_time();
        g_assert_cmpint(vb_keyfile_open(b3, strlen(b3), &pw, back, &e), ==, -EBADMSG);
        g_assert_nonnull(strstr(e.msg, combos[i].why));
        g_assert_cmpint(g_get_monotonic_time() - t0, <, 100000);
        g_free(b1); g_free(b2); g_free(b3);
    }
    /* an upper-case check value */
    json_object *o = json_tokener_parse(json);
    char *up = g_ascii_strup(field(o, "check"), -1), *bad = with_field(json, "check",
                                                                      json_object_new_string(up));
    if (strcmp(up, field(o, "check"))) {
        g_assert_cmpint(vb_keyfile_open(bad, strlen(bad), &pw, back, &e), ==, -EBADMSG);
        g_assert_nonnull(strstr(e.msg, "check"));
    }
    g_free(up);
    g_free(bad);
    json_object_put(o);
    /* too large */
    char *big = g_malloc(VB_KEYFILE_MAX + 2);
    memset(big, ' ', VB_KEYFILE_MAX + 1);
    memcpy(big, json, len);
    big[VB_KEYFILE_MAX + 1] = 0;
    g_assert_cmpint(vb_keyfile_open(big, len, &pw, back, &e), ==, 0);   /* trailing blanks */
    g_assert_cmpint(vb_keyfile_open(big, VB_KEYFILE_MAX + 1, &pw, back, &e), ==, -EBADMSG);
    g_free(big);
    /* informational strings come back printable: no terminal escapes */
    struct vb_keyfile_info info;
    bad = with_field(json, "host", json_object_new_string("evil\x1b]0;owned\x07host\xc3\xa9"));
    g_assert_cmpint(vb_keyfile_info(bad, strlen(bad), &info, &e), ==, 0);
    g_assert_cmpstr(info.host, ==, "evil?]0;owned?host??");
    g_free(bad);
    /* unknown extra fields are ignored (later versions may add some) */
    bad = with_field(json, "comment", json_object_new_string("laptop"));
    g_assert_cmpint(vb_keyfile_open(bad, strlen(bad), &pw, back, &e), ==, 0);
    g_assert_true(memcmp(back, master, VB_MASTER_LEN) == 0);
    g_free(bad);
    free(json);
    vb_secret_wipe(&pw);
}

/* ---- secrets ---------------------------------------------------------------- */

static void expect_pw(const char *file, const char *want)
{
    struct vb_secret s;
    vb_error e = { 0 };

    g_assert_cmpint(vb_password_read(file, NULL, &s, &e), ==, 0);
    g_assert_cmpint(s.kind, ==, VB_SECRET_PASSWORD);
    g_assert_cmpuint(s.len, ==, strlen(want));
    g_assert_cmpstr((char *)s.data, ==, want);
    vb_secret_wipe(&s);
    g_assert_null(s.data);
}

static void test_password_file(void)
{
    struct vb_secret s;
    vb_error e = { 0 };
    char *p;

    g_unsetenv("VBACKUP_PASSWORD_FILE");
    p = write_tmp("pw1", "hunter2\n", 8); expect_pw(p, "hunter2"); g_free(p);
    p = write_tmp("pw2", "hunter2", 7); expect_pw(p, "hunter2"); g_free(p);
    p = write_tmp("pw3", "hunter2\r\n", 9); expect_pw(p, "hunter2"); g_free(p);
    p = write_tmp("pw4", "two words \nsecond line\n", 23); expect_pw(p, "two words "); g_free(p);
    p = write_tmp("pw5", " \t", 2); expect_pw(p, " \t"); g_free(p);

    static const struct { const char *name, *data; size_t len; int err; const char *why; } bad[] = {
        { "e1", "", 0, -EINVAL, "empty" },
        { "e2", "\n", 1, -EINVAL, "empty" },
        { "e3", "\r\nsecond", 8, -EINVAL, "empty" },
        { "e4", "a\0b\n", 4, -EINVAL, "NUL" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        p = write_tmp(bad[i].name, bad[i].data, bad[i].len);
        g_assert_cmpint(vb_password_read(p, NULL, &s, &e), ==, bad[i].err);
        g_assert_nonnull(strstr(e.msg, bad[i].why));
        g_assert_nonnull(strstr(e.msg, p));
        g_assert_null(s.data);
        g_free(p);
    }
    /* the longest password, one byte more, a file over the limit */
    char *long_pw = g_malloc(VB_KEYFILE_MAX + 2);
    memset(long_pw, 'x', VB_KEYFILE_MAX + 1);
    p = write_tmp("long2", long_pw, VB_PASSWORD_MAX + 1);
    g_assert_cmpint(vb_password_read(p, NULL, &s, &e), ==, -EINVAL);
    g_assert_nonnull(strstr(e.msg, "longer"));
    g_free(p);
    p = write_tmp("long3", long_pw, VB_KEYFILE_MAX + 1);
    g_assert_cmpint(vb_password_read(p, NULL, &s, &e), ==, -EFBIG);
    g_free(p);
    p = write_tmp("long1", long_pw, VB_PASSWORD_MAX);
    long_pw[VB_PASSWORD_MAX] = 0;
    expect_pw(p, long_pw);
    g_free(p);
    g_free(long_pw);
    /* missing */
    p = g_build_filename(tmpdir, "absent", NULL);
    g_assert_cmpint(vb_password_read(p, NULL, &s, &e), ==, -ENOENT);
    g_assert_nonnull(strstr(e.msg, p));
    g_free(p);
    /* a pipe (process substitution): no size to stat */
    int fds[2];
    g_assert_cmpint(pipe(fds), ==, 0);
    g_assert_cmpint(write(fds[1], "piped\n", 6), ==, 6);
    close(fds[1]);
    p = g_strdup_printf("/proc/self/fd/%d", fds[0]);
    expect_pw(p, "piped");
    close(fds[0]);
    g_free(p);

    /* VBACKUP_PASSWORD_FILE: used without a file, an explicit file wins, empty is unset */
    char *envf = write_tmp("envpw", "from-env\n", 9), *argf = write_tmp("argpw", "from-arg", 8);
    g_setenv("VBACKUP_PASSWORD_FILE", envf, TRUE);
    expect_pw(NULL, "from-env");
    expect_pw(argf, "from-arg");
    g_setenv("VBACKUP_PASSWORD_FILE", "/nonexistent/vbackup-pw", TRUE);
    g_assert_cmpint(vb_password_read(NULL, NULL, &s, &e), ==, -ENOENT);
    g_assert_nonnull(strstr(e.msg, "VBACKUP_PASSWORD_FILE"));
    g_setenv("VBACKUP_PASSWORD_FILE", "", TRUE);

    /* nothing given and stdin not a terminal: a clear error */
    int saved = dup(0), devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    g_assert_cmpint(vb_password_read(NULL, NULL, &s, &e), ==, -ENOKEY);
    g_assert_nonnull(strstr(e.msg, "--password-file"));
    g_assert_nonnull(strstr(e.msg, "VBACKUP_PASSWORD_FILE"));
    dup2(saved, 0);
    close(saved);
    close(devnull);
    g_unsetenv("VBACKUP_PASSWORD_FILE");
    g_free(envf);
    g_free(argf);
}

static void test_credential(void)
{
    struct vb_secret s;
    vb_error e = { 0 };
    char *dir = g_build_filename(tmpdir, "creds", NULL), *p;

    g_assert_cmpint(g_mkdir(dir, 0700), ==, 0);
    p = g_build_filename(dir, "vbackup-password", NULL);
    g_assert_true(g_file_set_contents(p, "cred-pw\n", -1, NULL));
    g_unsetenv("CREDENTIALS_DIRECTORY");
    g_assert_cmpint(vb_password_from_credential("vbackup-password", &s, &e), ==, -ENOKEY);
    g_assert_nonnull(strstr(e.msg, "LoadCredential="));
    g_setenv("CREDENTIALS_DIRECTORY", dir, TRUE);
    g_assert_cmpint(vb_password_from_credential("vbackup-password", &s, &e), ==, 0);
    g_assert_cmpstr((char *)s.data, ==, "cred-pw");
    vb_secret_wipe(&s);
    g_assert_cmpint(vb_password_from_credential("other", &s, &e), ==, -ENOENT);
    static const char *bad[] = { "", ".", "..", "../creds/vbackup-password", "a/b" };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
        g_assert_cmpint(vb_password_from_credential(bad[i], &s, &e), ==, -EINVAL);
    g_unsetenv("CREDENTIALS_DIRECTORY");
    g_free(p);
    g_free(dir);
}

static void test_rawkey(void)
{
    struct vb_secret s;
    vb_error e = { 0 };
    uint8_t bin[VB_KEY_LEN + 1];
    char hex[2 * VB_KEY_LEN + 2], *p;

    for (int i = 0; i < VB_KEY_LEN + 1; i++)
        bin[i] = (uint8_t)(i * 7 + 1);
    vb_hex(bin, VB_KEY_LEN, hex);
    p = write_tmp("raw-bin", bin, VB_KEY_LEN);
    g_assert_cmpint(vb_rawkey_read(p, &s, &e), ==, 0);
    g_assert_cmpint(s.kind, ==, VB_SECRET_RAWKEY);
    g_assert_cmpuint(s.len, ==, VB_KEY_LEN);
    g_assert_true(memcmp(s.data, bin, VB_KEY_LEN) == 0);
    vb_secret_wipe(&s);
    g_free(p);
    p = write_tmp("raw-hex", hex, 64);
    g_assert_cmpint(vb_rawkey_read(p, &s, &e), ==, 0);
    g_assert_true(memcmp(s.data, bin, VB_KEY_LEN) == 0);
    vb_secret_wipe(&s);
    g_free(p);
    hex[64] = '\n';
    p = write_tmp("raw-hexnl", hex, 65);
    g_assert_cmpint(vb_rawkey_read(p, &s, &e), ==, 0);
    g_assert_true(memcmp(s.data, bin, VB_KEY_LEN) == 0);
    vb_secret_wipe(&s);
    g_free(p);

    p = write_tmp("raw-33", bin, 33);
    g_assert_cmpint(vb_rawkey_read(p, &s, &e), ==, -EINVAL);
    g_assert_nonnull(strstr(e.msg, "33 bytes"));
    g_free(p);
    p = write_tmp("raw-63", hex, 63);
    g_assert_cmpint(vb_rawkey_read(p, &s, &e), ==, -EINVAL);
    g_free(p);
    hex[10] = 'g';
    p = write_tmp("raw-nothex", hex, 64);
    g_assert_cmpint(vb_rawkey_read(p, &s, &e), ==, -EINVAL);
    g_assert_nonnull(strstr(e.msg, "hex"));
    g_assert_null(s.data);
    g_free(p);
}

/* ---- the terminal prompt, on a pseudo-terminal ------------------------------ */

/* Read from the pty master until `want` appeared or it closed; all output in *out. */
static bool pty_read_until(int fd, GString *out, const char *want)
{
    char buf[256];

    while (!want || !strstr(out->str, want)) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        if (poll(&pfd, 1, 10000) <= 0)
            return false;
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0)
            return want == NULL;      /* EIO: the child closed its side */
        g_string_append_len(out, buf, n);
    }
    return true;
}

static void run_prompt(const char *typed, int want_ret, const char *want_pw)
{
    int report[2], master;
    GString *out = g_string_new(NULL);
    char rep[512] = "";
    pid_t pid;

    g_assert_cmpint(pipe(report), ==, 0);
    pid = forkpty(&master, NULL, NULL, NULL);
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        struct vb_secret s;
        struct termios t;
        vb_error e = { 0 };
        close(report[0]);
        g_unsetenv("VBACKUP_PASSWORD_FILE");
        vb_install_interrupt_handlers();
        int ret = vb_password_read(NULL, "Repository password: ", &s, &e);
        tcgetattr(0, &t);
        dprintf(report[1], "%d %d %d %s", ret, !!(t.c_lflag & ECHO), (int)vb_interrupted,
                ret ? e.msg : (char *)s.data);
        _exit(0);
    }
    close(report[1]);
    g_assert_true(pty_read_until(master, out, "Repository password: "));
    g_assert_cmpint(write(master, typed, strlen(typed)), ==, (ssize_t)strlen(typed));
    pty_read_until(master, out, NULL);
    int status;
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(read(report[0], rep, sizeof(rep) - 1), >, 0);
    close(report[0]);
    close(master);

    int ret, echo, sig;
    char pwbuf[256] = "";
    g_assert_cmpint(sscanf(rep, "%d %d %d %255[^\n]", &ret, &echo, &sig, pwbuf), >=, 3);
    g_assert_cmpint(ret, ==, want_ret);
    g_assert_cmpint(echo, ==, 1);                 /* echo is back on afterwards */
    if (want_pw) {
        g_assert_cmpstr(pwbuf, ==, want_pw);
        g_assert_null(strstr(out->str, want_pw));  /* never echoed */
    } else {
        g_assert_cmpint(sig, ==, SIGINT);         /* the caller's handler saw it */
    }
    g_string_free(out, TRUE);
}

static void test_prompt(void)
{
    run_prompt("tty-pass phrase\n", 0, "tty-pass phrase");
    run_prompt("\x03", -EINTR, NULL);             /* Ctrl-C */
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("vb-keyfile-XXXXXX", NULL);
    g_assert_nonnull(tmpdir);
    g_test_add_func("/repo-keyfile/bounds", test_bounds);
    g_test_add_func("/repo-keyfile/password-roundtrip", test_password_roundtrip);
    g_test_add_func("/repo-keyfile/raw-roundtrip", test_raw_roundtrip);
    g_test_add_func("/repo-keyfile/tamper", test_tamper);
    g_test_add_func("/repo-keyfile/malformed", test_malformed);
    g_test_add_func("/repo-keyfile/password-file", test_password_file);
    g_test_add_func("/repo-keyfile/credential", test_credential);
    g_test_add_func("/repo-keyfile/rawkey", test_rawkey);
    g_test_add_func("/repo-keyfile/prompt", test_prompt);
    ret = g_test_run();
    vb_rm_rf_at(AT_FDCWD, tmpdir);
    g_free(tmpdir);
    return ret;
}
