/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests: keys, keyed ids and sealing of a version 2 repository (hostd/repo/crypto.c). */
#include <glib.h>
#include <string.h>

#include "crypto.h"

static const enum vb_aead aeads[] = { VB_AEAD_AES256GCM, VB_AEAD_CHACHA20POLY1305 };

static void unhex(const char *hex, uint8_t *out, size_t n)
{
    g_assert_cmpuint(strlen(hex), ==, 2 * n);
    g_assert_cmpint(vb_unhex(hex, out, n), ==, 0);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static void make_keys(struct vb_keys *k, enum vb_aead a)
{
    vb_error e = { 0 };
    g_assert_cmpint(vb_keys_generate(k, a, &e), ==, 0);
}

static void test_names(void)
{
    enum vb_aead a;
    vb_error e = { 0 };

    for (int i = 0; i <= 2; i++) {
        const char *n = vb_aead_name((enum vb_aead)i);
        g_assert_nonnull(n);
        g_assert_cmpint(vb_aead_parse(n, &a, &e), ==, 0);
        g_assert_cmpint(a, ==, i);
    }
    g_assert_cmpstr(vb_aead_name(VB_AEAD_AES256GCM), ==, "aes-256-gcm");
    g_assert_cmpstr(vb_aead_name(VB_AEAD_CHACHA20POLY1305), ==, "chacha20-poly1305");
    g_assert_cmpstr(vb_aead_name(VB_AEAD_NONE), ==, "none");
    g_assert_null(vb_aead_name((enum vb_aead)3));
    g_assert_cmpint(vb_aead_parse("AES-256-GCM", &a, &e), ==, -EINVAL);
    g_assert_nonnull(strstr(e.msg, "chacha20-poly1305"));
    g_assert_cmpint(vb_aead_parse("", &a, &e), ==, -EINVAL);
    g_assert_cmpuint(vb_seal_overhead(VB_AEAD_NONE), ==, 0);
    g_assert_cmpuint(vb_seal_overhead(VB_AEAD_AES256GCM), ==, 28);
    g_assert_cmpuint(vb_seal_overhead(VB_AEAD_CHACHA20POLY1305), ==, 28);
}

static void test_roundtrip(void)
{
    static const size_t sizes[] = { 0, 1, 15, 16, 17, 1000, 65536, 1 << 20 };
    enum vb_aead all[] = { VB_AEAD_NONE, VB_AEAD_AES256GCM, VB_AEAD_CHACHA20POLY1305 };
    uint8_t *plain = g_malloc((1 << 20) + 1), *sealed = g_malloc((1 << 20) + 64),
            *sealed2 = g_malloc((1 << 20) + 64), *back = g_malloc((1 << 20) + 1);
    static const char ad[] = "vbackup test";
    vb_error e = { 0 };

    for (size_t i = 0; i < (1 << 20); i++)
        plain[i] = (uint8_t)g_test_rand_int();
    for (size_t a = 0; a < G_N_ELEMENTS(all); a++) {
        struct vb_keys k;
        size_t ov = vb_seal_overhead(all[a]);

        make_keys(&k, all[a]);
        for (size_t s = 0; s < G_N_ELEMENTS(sizes); s++) {
            size_t n = sizes[s];
            g_assert_cmpint(vb_seal(&k, ad, strlen(ad), plain, n, sealed, &e), ==, 0);
            memset(back, 0xa5, n + 1);
            g_assert_cmpint(vb_open(&k, ad, strlen(ad), sealed, n + ov, back, &e), ==, 0);
            g_assert_true(memcmp(back, plain, n) == 0);
            g_assert_cmpint(back[n], ==, 0xa5);              /* wrote exactly n bytes */
            if (all[a] == VB_AEAD_NONE) {
                g_assert_true(memcmp(sealed, plain, n) == 0);  /* a copy */
                continue;
            }
            /* a fresh nonce each time: the same plain text seals differently */
            g_assert_cmpint(vb_seal(&k, ad, strlen(ad), plain, n, sealed2, &e), ==, 0);
            g_assert_false(memcmp(sealed, sealed2, VB_NONCE_LEN) == 0);
            if (n >= 16)
                g_assert_false(memcmp(sealed + VB_NONCE_LEN, plain, 16) == 0);
        }
        vb_keys_wipe(&k);
    }
    g_free(plain);
    g_free(sealed);
    g_free(sealed2);
    g_free(back);
}

/* Every changed byte of a sealed buffer, other associated data and other keys fail. */
static void test_tamper(void)
{
    static const uint8_t masks[] = { 0x01, 0x80, 0xff };
    static const char ad[] = "vbackup blob 0123456789abcdef0123456789abcdef";
    uint8_t plain[100], sealed[100 + 28], back[100];
    vb_error e = { 0 };

    for (size_t i = 0; i < sizeof(plain); i++)
        plain[i] = (uint8_t)i;
    for (size_t a = 0; a < G_N_ELEMENTS(aeads); a++) {
        struct vb_keys k, k2;

        make_keys(&k, aeads[a]);
        make_keys(&k2, aeads[a]);
        g_assert_cmpint(vb_seal(&k, ad, sizeof(ad), plain, sizeof(plain), sealed, &e), ==, 0);
        for (size_t i = 0; i < sizeof(sealed); i++) {
            for (size_t m = 0; m < G_N_ELEMENTS(masks); m++) {
                memset(back, 0x5a, sizeof(back));
                sealed[i] ^= masks[m];
                e.msg[0] = 0;
                g_assert_cmpint(vb_open(&k, ad, sizeof(ad), sealed, sizeof(sealed), back, &e),
                                ==, -EBADMSG);
                g_assert_nonnull(strstr(e.msg, "authentication failed"));
                g_assert_true(all_zero(back, sizeof(back)));   /* no partial plaintext */
                sealed[i] ^= masks[m];
            }
        }
        /* associated data: one changed byte, one byte less, none at all */
        for (size_t i = 0; i < sizeof(ad); i++) {
            char ad2[sizeof(ad)];
            memcpy(ad2, ad, sizeof(ad));
            ad2[i] ^= 1;
            g_assert_cmpint(vb_open(&k, ad2, sizeof(ad2), sealed, sizeof(sealed), back, &e),
                            ==, -EBADMSG);
        }
        g_assert_cmpint(vb_open(&k, ad, sizeof(ad) - 1, sealed, sizeof(sealed), back, &e), ==,
                        -EBADMSG);
        g_assert_cmpint(vb_open(&k, NULL, 0, sealed, sizeof(sealed), back, &e), ==, -EBADMSG);
        /* another key, the other cipher with the same key */
        g_assert_cmpint(vb_open(&k2, ad, sizeof(ad), sealed, sizeof(sealed), back, &e), ==,
                        -EBADMSG);
        k2 = k;
        k2.aead = aeads[1 - a];
        g_assert_cmpint(vb_open(&k2, ad, sizeof(ad), sealed, sizeof(sealed), back, &e), ==,
                        -EBADMSG);
        /* truncated, extended, shorter than nonce and tag */
        g_assert_cmpint(vb_open(&k, ad, sizeof(ad), sealed, sizeof(sealed) - 1, back, &e), ==,
                        -EBADMSG);
        g_assert_cmpint(vb_open(&k, ad, sizeof(ad), sealed + 1, sizeof(sealed) - 1, back, &e),
                        ==, -EBADMSG);
        for (size_t n = 0; n < 28; n++)
            g_assert_cmpint(vb_open(&k, ad, sizeof(ad), sealed, n, back, &e), ==, -EBADMSG);
        /* and the untouched buffer still opens */
        g_assert_cmpint(vb_open(&k, ad, sizeof(ad), sealed, sizeof(sealed), back, &e), ==, 0);
        g_assert_true(memcmp(back, plain, sizeof(plain)) == 0);
        vb_keys_wipe(&k);
        vb_keys_wipe(&k2);
    }
}

/* RFC 4231 test cases 1 and 2 through vb_keyed_id.  HMAC pads a key shorter
 * than the hash's block with zeros, so a 20-byte or 4-byte key and the same
 * key zero-padded to 32 bytes are one HMAC key. */
static void test_kat_hmac(void)
{
    uint8_t key[32] = { 0 }, id[32], want[32];

    memset(key, 0x0b, 20);
    g_assert_cmpint(vb_keyed_id(key, "Hi There", 8, id), ==, 0);
    unhex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", want, 32);
    g_assert_true(memcmp(id, want, 32) == 0);

    memset(key, 0, sizeof(key));
    memcpy(key, "Jefe", 4);
    g_assert_cmpint(vb_keyed_id(key, "what do ya want for nothing?", 28, id), ==, 0);
    unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", want, 32);
    g_assert_true(memcmp(id, want, 32) == 0);
}

/* AES-256-GCM: test case 16 of the GCM specification (McGrew and Viega, as
 * submitted to NIST): 256-bit key, 96-bit IV, 20 bytes of AAD, 60 bytes. */
static void test_kat_gcm(void)
{
    uint8_t key[32], iv[12], aad[20], pt[60], want[12 + 60 + 16], out[12 + 60 + 16], back[60];
    vb_error e = { 0 };

    unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", key, 32);
    unhex("cafebabefacedbaddecaf888", iv, 12);
    unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad, 20);
    unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
          "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39", pt, 60);
    memcpy(want, iv, 12);
    unhex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
          "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662", want + 12, 60);
    unhex("76fc6ece0f4e1768cddf8853bb2d551b", want + 72, 16);

    /* three times: the thread's context is re-keyed, not re-made, between calls
     * (after a failed open too) and must start from a clean state each time */
    for (int i = 0; i < 3; i++) {
        g_assert_cmpint(vb_aead_seal(VB_AEAD_AES256GCM, key, iv, aad, 20, pt, 60, out, &e), ==,
                        0);
        g_assert_true(memcmp(out, want, sizeof(want)) == 0);
        out[20] ^= 1;
        g_assert_cmpint(vb_aead_open(VB_AEAD_AES256GCM, key, aad, 20, out, sizeof(out), back,
                                     &e), ==, -EBADMSG);
    }
    g_assert_cmpint(vb_aead_open(VB_AEAD_AES256GCM, key, aad, 20, want, sizeof(want), back, &e),
                    ==, 0);
    g_assert_true(memcmp(back, pt, 60) == 0);

    /* and through vb_open with the key as a repository's data key */
    struct vb_keys k = { .aead = VB_AEAD_AES256GCM };
    memcpy(k.data_key, key, 32);
    memset(back, 0, sizeof(back));
    g_assert_cmpint(vb_open(&k, aad, 20, want, sizeof(want), back, &e), ==, 0);
    g_assert_true(memcmp(back, pt, 60) == 0);
}

/* ChaCha20-Poly1305: RFC 8439 section 2.8.2. */
static void test_kat_chacha(void)
{
    static const char pt[] = "Ladies and Gentlemen of the class of '99: If I could offer you "
                             "only one tip for the future, sunscreen would be it.";
    uint8_t key[32], nonce[12], aad[12], want[12 + 114 + 16], out[sizeof(want)], back[114];
    vb_error e = { 0 };

    g_assert_cmpuint(strlen(pt), ==, 114);
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(0x80 + i);
    unhex("070000004041424344454647", nonce, 12);
    unhex("50515253c0c1c2c3c4c5c6c7", aad, 12);
    memcpy(want, nonce, 12);
    unhex("d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
          "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
          "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
          "3ff4def08e4b7a9de576d26586cec64b6116", want + 12, 114);
    unhex("1ae10b594f09e26a7e902ecbd0600691", want + 12 + 114, 16);

    for (int i = 0; i < 3; i++) {
        g_assert_cmpint(vb_aead_seal(VB_AEAD_CHACHA20POLY1305, key, nonce, aad, 12, pt, 114,
                                     out, &e), ==, 0);
        g_assert_true(memcmp(out, want, sizeof(want)) == 0);
        out[100] ^= 1;
        g_assert_cmpint(vb_aead_open(VB_AEAD_CHACHA20POLY1305, key, aad, 12, out, sizeof(out),
                                     back, &e), ==, -EBADMSG);
        /* and a seal with the other cipher in between */
        g_assert_cmpint(vb_aead_seal(VB_AEAD_AES256GCM, key, NULL, aad, 12, pt, 114, out, &e), ==,
                        0);
    }
    g_assert_cmpint(vb_aead_open(VB_AEAD_CHACHA20POLY1305, key, aad, 12, want, sizeof(want),
                                 back, &e), ==, 0);
    g_assert_true(memcmp(back, pt, 114) == 0);
}

/* HKDF: RFC 5869 test case 3 (SHA-256, no salt, no info; first 32 bytes), and
 * the sub-keys of a fixed master key, pinned (computed independently with
 * Python's hmac module), so the derivation cannot change unnoticed. */
static void test_kat_hkdf(void)
{
    uint8_t ikm[22], out[32], want[32], master[64];
    struct vb_keys k;
    vb_error e = { 0 };

    memset(ikm, 0x0b, sizeof(ikm));
    g_assert_cmpint(vb_hkdf(ikm, sizeof(ikm), "", 0, out, &e), ==, 0);
    unhex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d", want, 32);
    g_assert_true(memcmp(out, want, 32) == 0);

    for (int i = 0; i < 64; i++)
        master[i] = (uint8_t)i;
    g_assert_cmpint(vb_keys_from_master(&k, VB_AEAD_AES256GCM, master, &e), ==, 0);
    g_assert_true(memcmp(k.master, master, 64) == 0);
    unhex("655519590c4ab0bea6a6c804efe0f65904c6b238c634cd30cdf4b5d165160420", want, 32);
    g_assert_true(memcmp(k.data_key, want, 32) == 0);
    unhex("436f8b4c995d68b457381f4e4dd1ee67953357c57879f41e7c786232f348cfc3", want, 32);
    g_assert_true(memcmp(k.id_key, want, 32) == 0);
    g_assert_cmpint(vb_group_id_key(&k, "web", out, &e), ==, 0);
    unhex("2e506c19a3dee0dc19fddaa74dd50be6d3cc26bba75649a5d452d30e88086cbc", want, 32);
    g_assert_true(memcmp(out, want, 32) == 0);
}

static void test_keys(void)
{
    struct vb_keys a, b, c;
    vb_error e = { 0 };

    make_keys(&a, VB_AEAD_AES256GCM);
    make_keys(&b, VB_AEAD_AES256GCM);
    g_assert_false(memcmp(a.master, b.master, 64) == 0);
    g_assert_false(memcmp(a.data_key, a.id_key, 32) == 0);
    g_assert_cmpint(vb_keys_from_master(&c, VB_AEAD_CHACHA20POLY1305, a.master, &e), ==, 0);
    g_assert_true(memcmp(a.data_key, c.data_key, 32) == 0);
    g_assert_true(memcmp(a.id_key, c.id_key, 32) == 0);
    g_assert_cmpint(c.aead, ==, VB_AEAD_CHACHA20POLY1305);
    g_assert_cmpint(vb_keys_from_master(&c, (enum vb_aead)7, a.master, &e), ==, -EINVAL);
    vb_keys_wipe(&a);
    g_assert_true(all_zero((const uint8_t *)&a, sizeof(a)));
    vb_keys_wipe(&b);
    vb_keys_wipe(&c);
}

static void test_ids(void)
{
    struct vb_keys k1, k2;
    uint8_t g1[32], g1b[32], g2[32], g1k2[32];
    uint8_t id[6][32];
    static const char data[] = "the same chunk";
    char longname[300];
    vb_error e = { 0 };

    make_keys(&k1, VB_AEAD_AES256GCM);
    make_keys(&k2, VB_AEAD_AES256GCM);
    g_assert_cmpint(vb_group_id_key(&k1, "tenant-a", g1, &e), ==, 0);
    g_assert_cmpint(vb_group_id_key(&k1, "tenant-a", g1b, &e), ==, 0);
    g_assert_cmpint(vb_group_id_key(&k1, "tenant-b", g2, &e), ==, 0);
    g_assert_cmpint(vb_group_id_key(&k2, "tenant-a", g1k2, &e), ==, 0);
    g_assert_true(memcmp(g1, g1b, 32) == 0);

    g_assert_cmpint(vb_keyed_id(k1.id_key, data, sizeof(data), id[0]), ==, 0);
    g_assert_cmpint(vb_keyed_id(k1.id_key, data, sizeof(data), id[1]), ==, 0);
    g_assert_cmpint(vb_keyed_id(k2.id_key, data, sizeof(data), id[2]), ==, 0);
    g_assert_cmpint(vb_keyed_id(g1, data, sizeof(data), id[3]), ==, 0);
    g_assert_cmpint(vb_keyed_id(g2, data, sizeof(data), id[4]), ==, 0);
    g_assert_cmpint(vb_keyed_id(g1k2, data, sizeof(data), id[5]), ==, 0);
    g_assert_true(memcmp(id[0], id[1], 32) == 0);       /* same key: same id */
    for (int i = 1; i < 6; i++)
        for (int j = i + 1; j < 6; j++)
            g_assert_false(memcmp(id[i], id[j], 32) == 0);
    /* not the plain SHA-256 of the data either */
    g_assert_cmpint(vb_keyed_id(k1.id_key, data, sizeof(data) - 1, id[1]), ==, 0);
    g_assert_false(memcmp(id[0], id[1], 32) == 0);

    g_assert_cmpint(vb_group_id_key(&k1, "", g1, &e), ==, -EINVAL);
    memset(longname, 'g', sizeof(longname));
    longname[256] = 0;
    g_assert_cmpint(vb_group_id_key(&k1, longname, g1, &e), ==, -EINVAL);
    longname[255] = 0;
    g_assert_cmpint(vb_group_id_key(&k1, longname, g1, &e), ==, 0);
    vb_keys_wipe(&k1);
    vb_keys_wipe(&k2);
}

/* Many threads seal, open and hash with shared keys at once. */
#define NTHREADS 8
static struct vb_keys shared_keys;

static gpointer worker(gpointer arg)
{
    uint8_t plain[4096], sealed[4096 + 28], back[4096], id[32], id0[32];
    unsigned seed = GPOINTER_TO_UINT(arg);
    vb_error e = { 0 };

    for (size_t i = 0; i < sizeof(plain); i++)
        plain[i] = (uint8_t)(seed * 31 + i);
    g_assert_cmpint(vb_keyed_id(shared_keys.id_key, plain, sizeof(plain), id0), ==, 0);
    for (int r = 0; r < 300; r++) {
        if (vb_seal(&shared_keys, &r, sizeof(r), plain, sizeof(plain), sealed, &e) ||
            vb_open(&shared_keys, &r, sizeof(r), sealed, sizeof(sealed), back, &e) ||
            memcmp(back, plain, sizeof(plain)) ||
            vb_keyed_id(shared_keys.id_key, plain, sizeof(plain), id) || memcmp(id, id0, 32))
            return GINT_TO_POINTER(1);
    }
    return GINT_TO_POINTER(0);
}

static void test_threads(void)
{
    GThread *t[NTHREADS];

    for (size_t a = 0; a < G_N_ELEMENTS(aeads); a++) {
        make_keys(&shared_keys, aeads[a]);
        for (int i = 0; i < NTHREADS; i++)
            t[i] = g_thread_new("seal", worker, GUINT_TO_POINTER(i));
        for (int i = 0; i < NTHREADS; i++)
            g_assert_cmpint(GPOINTER_TO_INT(g_thread_join(t[i])), ==, 0);
        vb_keys_wipe(&shared_keys);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/repo-crypto/names", test_names);
    g_test_add_func("/repo-crypto/roundtrip", test_roundtrip);
    g_test_add_func("/repo-crypto/tamper", test_tamper);
    g_test_add_func("/repo-crypto/kat-hmac-sha256", test_kat_hmac);
    g_test_add_func("/repo-crypto/kat-aes-256-gcm", test_kat_gcm);
    g_test_add_func("/repo-crypto/kat-chacha20-poly1305", test_kat_chacha);
    g_test_add_func("/repo-crypto/kat-hkdf", test_kat_hkdf);
    g_test_add_func("/repo-crypto/keys", test_keys);
    g_test_add_func("/repo-crypto/ids", test_ids);
    g_test_add_func("/repo-crypto/threads", test_threads);
    return g_test_run();
}
