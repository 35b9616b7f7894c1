/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Cryptography of a version 2 repository (docs/repository-v2.md, "Keys and
 * encryption" and "Byte layouts"): the master key and its sub-keys, keyed
 * chunk ids, and sealing with an AEAD and a random nonce.  OpenSSL libcrypto
 * only.  Every function here is thread-safe; a struct vb_keys is read-only
 * once made and may be shared by any number of threads.
 */
#ifndef VB_REPO_CRYPTO_H
#define VB_REPO_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define VB_KEY_LEN        32     /* data key, id key, key-wrapping key */
#define VB_MASTER_LEN     64     /* data key material || id key material */
#define VB_NONCE_LEN      12
#define VB_TAG_LEN        16
#define VB_HASH_LEN       32     /* keyed chunk ids, SHA-256 */

enum vb_aead {
    VB_AEAD_NONE = 0,             /* sealing is a copy: integrity comes from CRCs and hashes */
    VB_AEAD_AES256GCM = 1,
    VB_AEAD_CHACHA20POLY1305 = 2,
};

/* "none", "aes-256-gcm", "chacha20-poly1305"; NULL for a value not listed. */
const char *vb_aead_name(enum vb_aead a);
/* The inverse; 0 or -EINVAL (with a message naming the choices). */
int vb_aead_parse(const char *name, enum vb_aead *a, vb_error *e);
/* Bytes sealing adds: 12 + 16 for an AEAD, 0 for none. */
size_t vb_seal_overhead(enum vb_aead a);

struct vb_keys {
    enum vb_aead aead;
    uint8_t master[VB_MASTER_LEN];
    uint8_t data_key[VB_KEY_LEN];  /* HKDF-SHA256(master[0..32),  "vbackup data key") */
    uint8_t id_key[VB_KEY_LEN];    /* HKDF-SHA256(master[32..64), "vbackup id key") */
};

/* A new random master key (RAND_bytes) and its sub-keys. */
int vb_keys_generate(struct vb_keys *k, enum vb_aead aead, vb_error *e);
/* Sub-keys of a given master key (one read from a key file or config). */
int vb_keys_from_master(struct vb_keys *k, enum vb_aead aead,
                        const uint8_t master[VB_MASTER_LEN], vb_error *e);
/* Overwrite every key byte (OPENSSL_cleanse). */
void vb_keys_wipe(struct vb_keys *k);

/*
 * Keyed chunk id: HMAC-SHA256(idkey, data).  idkey is k->id_key or a dedup
 * group's key.  0, or -ENOMEM / -EIO when libcrypto fails.
 */
int vb_keyed_id(const uint8_t idkey[VB_KEY_LEN], const void *data, size_t len,
                uint8_t id[VB_HASH_LEN]);
/*
 * The id key of dedup group `group` (1..255 bytes):
 * HKDF-SHA256(master[32..64), "dedup-group:" || group).  Distinct groups, and
 * a group and the repository's own id key, never share a key.
 */
int vb_group_id_key(const struct vb_keys *k, const char *group, uint8_t out[VB_KEY_LEN],
                    vb_error *e);

/*
 * Seal len bytes of plain into out, which holds len + vb_seal_overhead():
 * nonce(12) || ciphertext || tag(16), a fresh random nonce, authenticating
 * ad (adlen bytes, may be empty) as well.  With VB_AEAD_NONE, a copy.
 * out must not overlap plain (with none it may).
 */
int vb_seal(const struct vb_keys *k, const void *ad, size_t adlen, const void *plain,
            size_t len, uint8_t *out, vb_error *e);
/*
 * Open a sealed buffer of len bytes into out (len - overhead bytes; must not
 * overlap sealed).  -EBADMSG when it does not authenticate (wrong key, any
 * changed byte, other associated data, too short); no plaintext is then left
 * in out (what was written is zeroed).
 */
int vb_open(const struct vb_keys *k, const void *ad, size_t adlen, const uint8_t *sealed,
            size_t len, uint8_t *out, vb_error *e);

/*
 * The same with an explicit 32-byte key; used for key wrapping (keyfile.c).
 * nonce is NULL for a fresh random one; an explicit nonce exists for the
 * known-answer tests only (a nonce must never repeat under one key).
 */
int vb_aead_seal(enum vb_aead a, const uint8_t key[VB_KEY_LEN], const uint8_t *nonce,
                 const void *ad, size_t adlen, const void *plain, size_t len, uint8_t *out,
                 vb_error *e);
int vb_aead_open(enum vb_aead a, const uint8_t key[VB_KEY_LEN], const void *ad, size_t adlen,
                 const uint8_t *sealed, size_t len, uint8_t *out, vb_error *e);

/* HKDF-SHA256 without salt: out (VB_KEY_LEN) from ikm and the label info. */
int vb_hkdf(const uint8_t *ikm, size_t ikmlen, const void *info, size_t infolen,
            uint8_t out[VB_KEY_LEN], vb_error *e);

#endif
