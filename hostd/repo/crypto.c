/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "crypto.h"

#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <string.h>

/*
 * OpenSSL 3 looks algorithms up in its provider tables on every implicit
 * fetch (EVP_aes_256_gcm() passed to an init, HMAC() one-shot, a digest name
 * in a parameter list), under a lock.  Everything used per chunk is fetched
 * once here and shared: fetched algorithm objects are immutable and
 * thread-safe.
 */
static struct {
    EVP_CIPHER *gcm;
    EVP_CIPHER *chacha;
    EVP_KDF *hkdf;
    EVP_MAC_CTX *hmac;       /* HMAC with SHA-256 chosen, no key: duplicated per id */
    int ok;
} algs;
static pthread_once_t algs_once = PTHREAD_ONCE_INIT;

/*
 * Each thread keeps one cipher context and one HMAC context and re-keys them
 * per call.  Measured with bench/crypto-bench (cells taking turns, best of
 * 50 slices) against a new context per call: AES-256-GCM seal of 4 KiB 1,460
 * against 1,427 MB/s (the nonce's RAND_bytes dominates), HMAC of 4 KiB 1,194
 * against 925 MB/s for OpenSSL's one-shot HMAC(); the same on 1 MiB buffers.
 * Freed when the thread ends.
 */
struct per_thread {
    EVP_CIPHER_CTX *cipher;
    const EVP_CIPHER *cipher_alg;   /* what cipher is set up for: re-keyed, not re-made */
    EVP_MAC_CTX *mac;
};
static pthread_key_t per_thread_key;
static __thread struct per_thread *per_thread;   /* also what pthread_getspecific holds */

static void per_thread_free(void *p)
{
    struct per_thread *t = p;

    EVP_CIPHER_CTX_free(t->cipher);
    EVP_MAC_CTX_free(t->mac);
    free(t);
    per_thread = NULL;
}

static void algs_fetch(void)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };

    algs.gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    algs.chacha = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
    algs.hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    if (mac) {
        algs.hmac = EVP_MAC_CTX_new(mac);
        if (algs.hmac && !EVP_MAC_CTX_set_params(algs.hmac, params)) {
            EVP_MAC_CTX_free(algs.hmac);
            algs.hmac = NULL;
        }
        EVP_MAC_free(mac);    /* the context keeps its own reference */
    }
    algs.ok = algs.gcm && algs.chacha && algs.hkdf && algs.hmac &&
              pthread_key_create(&per_thread_key, per_thread_free) == 0;
}

static int algs_get(vb_error *e)
{
    pthread_once(&algs_once, algs_fetch);
    if (!algs.ok)
        return vb_seterr(e, -ENOSYS, "libcrypto lacks AES-256-GCM, ChaCha20-Poly1305, "
                         "HKDF or HMAC-SHA256");
    return 0;
}

/* This thread's contexts, made on first use; NULL when out of memory. */
static struct per_thread *per_thread_get(void)
{
    struct per_thread *t = per_thread;

    if (t)
        return t;
    t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->cipher = EVP_CIPHER_CTX_new();
    t->mac = EVP_MAC_CTX_dup(algs.hmac);
    if (!t->cipher || !t->mac || pthread_setspecific(per_thread_key, t)) {
        per_thread_free(t);
        return NULL;
    }
    per_thread = t;
    return t;
}

/* The cipher argument of an init: NULL keeps the context's algorithm state
 * (only key and nonce change), which is most of what a per-thread context saves. */
static const EVP_CIPHER *cipher_for_init(struct per_thread *t, const EVP_CIPHER *c)
{
    if (t->cipher_alg == c)
        return NULL;
    t->cipher_alg = c;
    return c;
}

static void cipher_failed(struct per_thread *t)
{
    EVP_CIPHER_CTX_reset(t->cipher);
    t->cipher_alg = NULL;
}

/* The reason of the last libcrypto failure, for a message. */
static const char *ossl_reason(char *buf, size_t len)
{
    unsigned long err = ERR_get_error();

    ERR_clear_error();
    if (!err)
        return "unknown error";
    ERR_error_string_n(err, buf, len);
    return buf;
}

static const struct {
    enum vb_aead aead;
    const char *name;
} aead_names[] = {
    { VB_AEAD_NONE, "none" },
    { VB_AEAD_AES256GCM, "aes-256-gcm" },
    { VB_AEAD_CHACHA20POLY1305, "chacha20-poly1305" },
};

const char *vb_aead_name(enum vb_aead a)
{
    for (size_t i = 0; i < VB_ARRAY_SIZE(aead_names); i++)
        if (aead_names[i].aead == a)
            return aead_names[i].name;
    return NULL;
}

int vb_aead_parse(const char *name, enum vb_aead *a, vb_error *e)
{
    for (size_t i = 0; i < VB_ARRAY_SIZE(aead_names); i++) {
        if (!strcmp(aead_names[i].name, name)) {
            *a = aead_names[i].aead;
            return 0;
        }
    }
    return vb_seterr(e, -EINVAL, "unknown encryption '%s' (aes-256-gcm, chacha20-poly1305 "
                     "or none)", name);
}

size_t vb_seal_overhead(enum vb_aead a)
{
    return a == VB_AEAD_NONE ? 0 : VB_NONCE_LEN + VB_TAG_LEN;
}

int vb_hkdf(const uint8_t *ikm, size_t ikmlen, const void *info, size_t infolen,
            uint8_t out[VB_KEY_LEN], vb_error *e)
{
    OSSL_PARAM params[4];
    EVP_KDF_CTX *kctx;
    char why[256];
    int ret = algs_get(e), i = 0;

    if (ret)
        return ret;
    params[i++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    params[i++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikmlen);
    params[i++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, infolen);
    params[i] = OSSL_PARAM_construct_end();
    kctx = EVP_KDF_CTX_new(algs.hkdf);
    if (!kctx)
        return vb_seterr(e, -ENOMEM, "HKDF: out of memory");
    if (EVP_KDF_derive(kctx, out, VB_KEY_LEN, params) <= 0)
        ret = vb_seterr(e, -EIO, "HKDF: %s", ossl_reason(why, sizeof(why)));
    EVP_KDF_CTX_free(kctx);
    return ret;
}

static const char data_label[] = "vbackup data key";
static const char id_label[] = "vbackup id key";
static const char group_label[] = "dedup-group:";

int vb_keys_from_master(struct vb_keys *k, enum vb_aead aead,
                        const uint8_t master[VB_MASTER_LEN], vb_error *e)
{
    int ret;

    if (!vb_aead_name(aead))
        return vb_seterr(e, -EINVAL, "unknown encryption %d", (int)aead);
    if (k->master != master)
        memcpy(k->master, master, VB_MASTER_LEN);
    k->aead = aead;
    ret = vb_hkdf(k->master, VB_KEY_LEN, data_label, strlen(data_label), k->data_key, e);
    if (!ret)
        ret = vb_hkdf(k->master + VB_KEY_LEN, VB_KEY_LEN, id_label, strlen(id_label),
                      k->id_key, e);
    if (ret)
        vb_keys_wipe(k);
    return ret;
}

int vb_keys_generate(struct vb_keys *k, enum vb_aead aead, vb_error *e)
{
    char why[256];

    if (RAND_bytes(k->master, VB_MASTER_LEN) != 1) {
        vb_keys_wipe(k);
        return vb_seterr(e, -EIO, "RAND_bytes: %s", ossl_reason(why, sizeof(why)));
    }
    return vb_keys_from_master(k, aead, k->master, e);
}

void vb_keys_wipe(struct vb_keys *k)
{
    OPENSSL_cleanse(k, sizeof(*k));
}

int vb_group_id_key(const struct vb_keys *k, const char *group, uint8_t out[VB_KEY_LEN],
                    vb_error *e)
{
    size_t gl = strlen(group), pl = strlen(group_label);
    char info[sizeof(group_label) + 255];

    if (gl == 0 || gl > 255)
        return vb_seterr(e, -EINVAL, "dedup group name of %zu bytes (1 to 255)", gl);
    memcpy(info, group_label, pl);
    memcpy(info + pl, group, gl);
    return vb_hkdf(k->master + VB_KEY_LEN, VB_KEY_LEN, info, pl + gl, out, e);
}

int vb_keyed_id(const uint8_t idkey[VB_KEY_LEN], const void *data, size_t len,
                uint8_t id[VB_HASH_LEN])
{
    struct per_thread *t;
    size_t n = 0;
    int ret = algs_get(NULL);

    if (ret)
        return ret;
    /* this thread's copy of the prepared context: no fetch, no parameter parsing */
    t = per_thread_get();
    if (!t)
        return -ENOMEM;
    if (!EVP_MAC_init(t->mac, idkey, VB_KEY_LEN, NULL) || !EVP_MAC_update(t->mac, data, len) ||
        !EVP_MAC_final(t->mac, id, &n, VB_HASH_LEN) || n != VB_HASH_LEN) {
        ERR_clear_error();
        ret = -EIO;
    }
    return ret;
}

/* ---- sealing --------------------------------------------------------------- */

static const EVP_CIPHER *cipher_of(enum vb_aead a)
{
    switch (a) {
    case VB_AEAD_AES256GCM:
        return algs.gcm;
    case VB_AEAD_CHACHA20POLY1305:
        return algs.chacha;
    default:
        return NULL;
    }
}

/* EVP takes int lengths: feed large buffers in pieces. */
#define STEP (1 << 30)

static int cipher_update(EVP_CIPHER_CTX *ctx, bool enc, uint8_t *out, const uint8_t *in,
                         size_t len)
{
    while (len) {
        int n = (int)VB_MIN(len, (size_t)STEP), outl = 0;
        if (!(enc ? EVP_EncryptUpdate(ctx, out, &outl, in, n)
                  : EVP_DecryptUpdate(ctx, out, &outl, in, n)) || (out && outl != n))
            return -1;
        in += n;
        if (out)
            out += n;
        len -= (size_t)n;
    }
    return 0;
}

int vb_aead_seal(enum vb_aead a, const uint8_t key[VB_KEY_LEN], const uint8_t *nonce,
                 const void *ad, size_t adlen, const void *plain, size_t len, uint8_t *out,
                 vb_error *e)
{
    const EVP_CIPHER *cipher;
    struct per_thread *t;
    EVP_CIPHER_CTX *ctx;
    char why[256];
    int ret, outl = 0;

    if (a == VB_AEAD_NONE) {
        memmove(out, plain, len);
        return 0;
    }
    ret = algs_get(e);
    if (ret)
        return ret;
    cipher = cipher_of(a);
    if (!cipher)
        return vb_seterr(e, -EINVAL, "seal: unknown encryption %d", (int)a);
    if (nonce)
        memcpy(out, nonce, VB_NONCE_LEN);
    else if (RAND_bytes(out, VB_NONCE_LEN) != 1)
        return vb_seterr(e, -EIO, "seal: RAND_bytes: %s", ossl_reason(why, sizeof(why)));
    t = per_thread_get();
    if (!t)
        return vb_seterr(e, -ENOMEM, "seal: out of memory");
    ctx = t->cipher;
    /* both ciphers default to a 12-byte nonce */
    if (!EVP_EncryptInit_ex2(ctx, cipher_for_init(t, cipher), key, out, NULL) ||
        cipher_update(ctx, true, NULL, ad, adlen) ||
        cipher_update(ctx, true, out + VB_NONCE_LEN, plain, len) ||
        !EVP_EncryptFinal_ex(ctx, out + VB_NONCE_LEN + len, &outl) || outl != 0 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, VB_TAG_LEN,
                            out + VB_NONCE_LEN + len) <= 0) {
        ret = vb_seterr(e, -EIO, "seal (%s): %s", vb_aead_name(a), ossl_reason(why, sizeof(why)));
        cipher_failed(t);                 /* no half-done state for the next call */
    }
    return ret;
}

int vb_aead_open(enum vb_aead a, const uint8_t key[VB_KEY_LEN], const void *ad, size_t adlen,
                 const uint8_t *sealed, size_t len, uint8_t *out, vb_error *e)
{
    const EVP_CIPHER *cipher;
    struct per_thread *t;
    EVP_CIPHER_CTX *ctx;
    uint8_t tag[VB_TAG_LEN];
    size_t plen;
    char why[256];
    int ret, outl = 0;

    if (a == VB_AEAD_NONE) {
        memmove(out, sealed, len);
        return 0;
    }
    ret = algs_get(e);
    if (ret)
        return ret;
    cipher = cipher_of(a);
    if (!cipher)
        return vb_seterr(e, -EINVAL, "open: unknown encryption %d", (int)a);
    if (len < VB_NONCE_LEN + VB_TAG_LEN)
        return vb_seterr(e, -EBADMSG, "sealed data of %zu bytes is shorter than nonce and tag",
                         len);
    plen = len - VB_NONCE_LEN - VB_TAG_LEN;
    memcpy(tag, sealed + len - VB_TAG_LEN, VB_TAG_LEN);
    t = per_thread_get();
    if (!t)
        return vb_seterr(e, -ENOMEM, "open: out of memory");
    ctx = t->cipher;
    if (!EVP_DecryptInit_ex2(ctx, cipher_for_init(t, cipher), key, sealed, NULL) ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, VB_TAG_LEN, tag) <= 0 ||
        cipher_update(ctx, false, NULL, ad, adlen) ||
        cipher_update(ctx, false, out, sealed + VB_NONCE_LEN, plen)) {
        ret = vb_seterr(e, -EIO, "open (%s): %s", vb_aead_name(a), ossl_reason(why, sizeof(why)));
    } else if (EVP_DecryptFinal_ex(ctx, out + plen, &outl) <= 0 || outl != 0) {
        ERR_clear_error();
        ret = vb_seterr(e, -EBADMSG, "%s: authentication failed (wrong key, or damaged or "
                        "changed data)", vb_aead_name(a));
    }
    if (ret) {
        cipher_failed(t);
        OPENSSL_cleanse(out, plen);   /* never hand out unauthenticated plaintext */
    }
    return ret;
}

int vb_seal(const struct vb_keys *k, const void *ad, size_t adlen, const void *plain,
            size_t len, uint8_t *out, vb_error *e)
{
    return vb_aead_seal(k->aead, k->data_key, NULL, ad, adlen, plain, len, out, e);
}

int vb_open(const struct vb_keys *k, const void *ad, size_t adlen, const uint8_t *sealed,
            size_t len, uint8_t *out, vb_error *e)
{
    return vb_aead_open(k->aead, k->data_key, ad, adlen, sealed, len, out, e);
}
