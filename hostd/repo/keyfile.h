/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Key files of a version 2 repository (keys/<id>, docs/repository-v2.md
 * "Keys and encryption" and "Byte layouts"): the 64-byte master key sealed
 * with a key derived from a password (scrypt) or from a 32-byte raw key.
 * And the secrets that open them: passwords from a file, the environment, a
 * terminal or a systemd credential, raw keys from a file.  Never argv.
 */
#ifndef VB_REPO_KEYFILE_H
#define VB_REPO_KEYFILE_H

#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "util.h"

/*
 * scrypt parameters accepted when a key file is made or read.  Reading
 * checks them before anything is derived, so a changed key file costs at
 * most 256 MiB and about 16 times the default's time:
 *   N a power of two in [2^14, 2^20], r in [1, 32], p in [1, 16],
 *   128·N·r <= 256 MiB (scrypt's memory), N·r·p <= 2^22 (its work).
 * The default, N = 2^15, r = 8, p = 1: 32 MiB and about 0.1 s.
 */
#define VB_SCRYPT_N_DEFAULT   32768u
#define VB_SCRYPT_R_DEFAULT   8u
#define VB_SCRYPT_P_DEFAULT   1u
#define VB_SCRYPT_N_MIN       (1u << 14)
#define VB_SCRYPT_N_MAX       (1u << 20)
#define VB_SCRYPT_R_MAX       32u
#define VB_SCRYPT_P_MAX       16u
#define VB_SCRYPT_MEM_MAX     (256ull << 20)
#define VB_SCRYPT_WORK_MAX    (1ull << 22)
#define VB_SALT_LEN           16
#define VB_KEYFILE_MAX        (64u << 10)    /* bytes of JSON read */
#define VB_PASSWORD_MAX       4096u          /* bytes of one password */

struct vb_kdf_params {
    uint32_t n, r, p;
};

/* 0, or -EINVAL naming the bound a value breaks. */
int vb_kdf_params_check(const struct vb_kdf_params *p, vb_error *e);

/* A secret that opens key files: a password or a raw key. */
enum vb_secret_kind { VB_SECRET_PASSWORD = 1, VB_SECRET_RAWKEY = 2 };
struct vb_secret {
    enum vb_secret_kind kind;
    uint8_t *data;           /* password bytes (NUL after them), or VB_KEY_LEN key bytes */
    size_t len;
};
/* Overwrite and free a secret's bytes. */
void vb_secret_wipe(struct vb_secret *s);

/*
 * A password: the first line of `file` (trailing "\n" or "\r\n" removed),
 * else of the file named by $VBACKUP_PASSWORD_FILE, else typed on /dev/tty
 * without echo after `prompt` when stdin is a terminal, else -ENOKEY saying
 * how to give one.  An empty password, one with a NUL byte, or one longer
 * than VB_PASSWORD_MAX is refused (-EINVAL).
 */
int vb_password_read(const char *file, const char *prompt, struct vb_secret *s, vb_error *e);
/* A password from the systemd credential `name` ($CREDENTIALS_DIRECTORY/name,
 * LoadCredential= or SetCredentialEncrypted=), first line as above.  -ENOKEY
 * when the service has no credentials. */
int vb_password_from_credential(const char *name, struct vb_secret *s, vb_error *e);
/* A raw key file: exactly 32 bytes, or 64 hex digits and an optional newline. */
int vb_rawkey_read(const char *file, struct vb_secret *s, vb_error *e);

/* What a key file says about itself, for listing; no secret needed.  The
 * informational strings are as the file has them (unchecked, not covered by
 * the check value), cut to size, every byte outside printable ASCII made '?'. */
struct vb_keyfile_info {
    char kdf[8];                      /* "scrypt" or "raw" */
    struct vb_kdf_params params;      /* scrypt only */
    enum vb_aead aead;                /* of the wrapping */
    char created[64];                 /* RFC 3339 UTC when written by vbackup; "" when absent */
    char host[256];
    char user[256];
};

/*
 * A key file (JSON, *len bytes, free() it) holding master sealed for the
 * secret: scrypt with params (NULL: the defaults) for a password, HKDF for a
 * raw key; aead (not none) seals it.
 */
int vb_keyfile_create(const uint8_t master[VB_MASTER_LEN], const struct vb_secret *s,
                      const struct vb_kdf_params *params, enum vb_aead aead, char **json,
                      size_t *len, vb_error *e);
/*
 * The master key out of a key file.  -EACCES "wrong password or key" when
 * the secret does not open it (or is of the other kind); -EBADMSG naming
 * what is wrong when the file is malformed, out of bounds or changed.
 */
int vb_keyfile_open(const char *json, size_t len, const struct vb_secret *s,
                    uint8_t master[VB_MASTER_LEN], vb_error *e);
/* Parse and check a key file without opening it. */
int vb_keyfile_info(const char *json, size_t len, struct vb_keyfile_info *info, vb_error *e);

#endif
