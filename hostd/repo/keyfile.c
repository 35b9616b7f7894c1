/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "keyfile.h"

#include <endian.h>
#include <fcntl.h>
#include <json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define KEYFILE_VERSION  1
#define WRAPPED_LEN      (VB_MASTER_LEN + VB_NONCE_LEN + VB_TAG_LEN)
#define CHECK_LEN        16            /* bytes of SHA-256 in "check" */

static const char wrap_ad[] = "vbackup master key";
static const char raw_label[] = "vbackup raw key wrap";
static const char check_label[] = "vbackup key file";

/* ---- secrets ------------------------------------------------------------- */

void vb_secret_wipe(struct vb_secret *s)
{
    if (s->data) {
        OPENSSL_cleanse(s->data, s->len + 1);
        free(s->data);
    }
    memset(s, 0, sizeof(*s));
}

/* A secret holding a copy of n bytes (a NUL after them). */
static int secret_set(struct vb_secret *s, enum vb_secret_kind kind, const uint8_t *p,
                      size_t n, vb_error *e)
{
    memset(s, 0, sizeof(*s));
    s->data = malloc(n + 1);
    if (!s->data)
        return vb_seterr(e, -ENOMEM, "out of memory");
    memcpy(s->data, p, n);
    s->data[n] = 0;
    s->len = n;
    s->kind = kind;
    return 0;
}

/* Read all of a small file (a pipe or a FIFO too: no size from stat). */
static int slurp(const char *path, uint8_t **buf, size_t *len, size_t max, vb_error *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY), ret = 0;
    uint8_t *b;
    size_t n = 0;

    if (fd < 0)
        return vb_seterr(e, -errno, "open %s: %s", path, strerror(errno));
    b = malloc(max + 1);
    if (!b) {
        close(fd);
        return vb_seterr(e, -ENOMEM, "out of memory");
    }
    for (;;) {
        ssize_t r = read(fd, b + n, max + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            ret = vb_seterr(e, -errno, "read %s: %s", path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > max) {
            ret = vb_seterr(e, -EFBIG, "%s: more than %zu bytes", path, max);
            break;
        }
    }
    close(fd);
    if (ret) {
        OPENSSL_cleanse(b, max + 1);
        free(b);
        return ret;
    }
    *buf = b;
    *len = n;
    return 0;
}

/* The password in p[0..n): its first line, checked. */
static int password_set(struct vb_secret *s, const uint8_t *p, size_t n, const char *what,
                        vb_error *e)
{
    const uint8_t *nl = memchr(p, '\n', n);

    if (nl)
        n = (size_t)(nl - p);
    if (n && p[n - 1] == '\r')
        n--;
    if (n == 0)
        return vb_seterr(e, -EINVAL, "%s: empty password", what);
    if (n > VB_PASSWORD_MAX)
        return vb_seterr(e, -EINVAL, "%s: password longer than %u bytes", what,
                         VB_PASSWORD_MAX);
    if (memchr(p, 0, n))
        return vb_seterr(e, -EINVAL, "%s: password contains a NUL byte", what);
    return secret_set(s, VB_SECRET_PASSWORD, p, n, e);
}

static int password_file(const char *path, const char *what, struct vb_secret *s, vb_error *e)
{
    uint8_t *buf;
    size_t n;
    int ret = slurp(path, &buf, &n, VB_KEYFILE_MAX, e);

    if (ret) {
        if (what)
            vb_prefixerr(e, "%s", what);
        return ret;
    }
    ret = password_set(s, buf, n, path, e);
    if (ret && what)
        vb_prefixerr(e, "%s", what);
    OPENSSL_cleanse(buf, n);
    free(buf);
    return ret;
}

/* Signals that end the prompt: the terminal gets its echo back first. */
static const int prompt_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
static volatile sig_atomic_t prompt_signal;

static void on_prompt_signal(int sig)
{
    prompt_signal = sig;
}

/*
 * The signals stay blocked except inside ppoll(), so one that arrives
 * between the prompt and the wait is not lost: ppoll returns EINTR for it.
 */
static int password_prompt(const char *prompt, struct vb_secret *s, vb_error *e)
{
    struct sigaction sa, old[VB_ARRAY_SIZE(prompt_signals)];
    sigset_t block, orig;
    struct termios saved, quiet;
    uint8_t buf[VB_PASSWORD_MAX + 2];
    size_t n = 0;
    bool eol = false;
    int fd, ret = 0;

    fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return vb_seterr(e, -errno, "open /dev/tty: %s", strerror(errno));
    if (tcgetattr(fd, &saved) < 0) {
        ret = vb_seterr(e, -errno, "/dev/tty: %s", strerror(errno));
        close(fd);
        return ret;
    }
    sigemptyset(&block);
    for (size_t i = 0; i < VB_ARRAY_SIZE(prompt_signals); i++)
        sigaddset(&block, prompt_signals[i]);
    pthread_sigmask(SIG_BLOCK, &block, &orig);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_prompt_signal;
    sigemptyset(&sa.sa_mask);
    prompt_signal = 0;
    for (size_t i = 0; i < VB_ARRAY_SIZE(prompt_signals); i++)
        sigaction(prompt_signals[i], &sa, &old[i]);
    quiet = saved;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    quiet.c_lflag |= ECHONL | ICANON;
    if (tcsetattr(fd, TCSAFLUSH, &quiet) < 0) {
        ret = vb_seterr(e, -errno, "/dev/tty: %s", strerror(errno));
        goto restore;
    }
    if (prompt && vb_write_all(fd, prompt, strlen(prompt)) < 0) {
        ret = vb_seterr(e, -EIO, "/dev/tty: cannot write the prompt");
        goto restore;
    }
    while (!eol) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        uint8_t c;
        ssize_t r;

        if (prompt_signal) {
            ret = vb_seterr(e, -EINTR, "password prompt interrupted");
            break;
        }
        if (ppoll(&pfd, 1, NULL, &orig) < 0) {
            if (errno == EINTR)
                continue;
            ret = vb_seterr(e, -errno, "poll /dev/tty: %s", strerror(errno));
            break;
        }
        r = read(fd, &c, 1);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r < 0) {
            ret = vb_seterr(e, -errno, "read /dev/tty: %s", strerror(errno));
            break;
        }
        if (r == 0 || c == '\n')
            eol = true;
        else if (n < sizeof(buf))
            buf[n++] = c;
    }
    if (!ret)
        ret = password_set(s, buf, n, "password", e);
restore:
    tcsetattr(fd, TCSAFLUSH, &saved);
    for (size_t i = 0; i < VB_ARRAY_SIZE(prompt_signals); i++)
        sigaction(prompt_signals[i], &old[i], NULL);
    OPENSSL_cleanse(buf, sizeof(buf));
    close(fd);
    if (prompt_signal)
        raise(prompt_signal);                /* pending until unblocked: to the caller's handler */
    pthread_sigmask(SIG_SETMASK, &orig, NULL);
    return ret;
}

int vb_password_read(const char *file, const char *prompt, struct vb_secret *s, vb_error *e)
{
    const char *env = getenv("VBACKUP_PASSWORD_FILE");

    memset(s, 0, sizeof(*s));
    if (file)
        return password_file(file, NULL, s, e);
    if (env && *env)
        return password_file(env, "VBACKUP_PASSWORD_FILE", s, e);
    if (isatty(STDIN_FILENO))
        return password_prompt(prompt ? prompt : "Password: ", s, e);
    return vb_seterr(e, -ENOKEY, "no password: give --password-file FILE, set "
                     "VBACKUP_PASSWORD_FILE, or run on a terminal");
}

int vb_password_from_credential(const char *name, struct vb_secret *s, vb_error *e)
{
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    char path[4096];

    memset(s, 0, sizeof(*s));
    if (!name || !*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
        return vb_seterr(e, -EINVAL, "credential name '%s' is not a file name",
                         name ? name : "");
    if (!dir || !*dir)
        return vb_seterr(e, -ENOKEY, "credential %s: CREDENTIALS_DIRECTORY is not set (give "
                         "the service LoadCredential=%s:FILE)", name, name);
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return vb_seterr(e, -ENAMETOOLONG, "credential %s: path too long", name);
    return password_file(path, "credential", s, e);
}

int vb_rawkey_read(const char *file, struct vb_secret *s, vb_error *e)
{
    uint8_t *buf, key[VB_KEY_LEN];
    size_t n;
    int ret;

    memset(s, 0, sizeof(*s));
    ret = slurp(file, &buf, &n, 4096, e);
    if (ret)
        return ret;
    if (n == VB_KEY_LEN) {
        memcpy(key, buf, VB_KEY_LEN);
    } else if ((n == 2 * VB_KEY_LEN || (n == 2 * VB_KEY_LEN + 1 && buf[n - 1] == '\n'))) {
        char hex[2 * VB_KEY_LEN + 1];
        memcpy(hex, buf, 2 * VB_KEY_LEN);
        hex[2 * VB_KEY_LEN] = 0;
        ret = vb_unhex(hex, key, VB_KEY_LEN);
        OPENSSL_cleanse(hex, sizeof(hex));
        if (ret)
            ret = vb_seterr(e, -EINVAL, "raw key file %s: not 64 hex digits", file);
    } else {
        ret = vb_seterr(e, -EINVAL, "raw key file %s: %zu bytes, expected 32 bytes or 64 hex "
                        "digits", file, n);
    }
    OPENSSL_cleanse(buf, n);
    free(buf);
    if (!ret)
        ret = secret_set(s, VB_SECRET_RAWKEY, key, VB_KEY_LEN, e);
    OPENSSL_cleanse(key, sizeof(key));
    return ret;
}

/* ---- scrypt parameters ----------------------------------------------------- */

int vb_kdf_params_check(const struct vb_kdf_params *p, vb_error *e)
{
    if (p->n < VB_SCRYPT_N_MIN || p->n > VB_SCRYPT_N_MAX || (p->n & (p->n - 1)))
        return vb_seterr(e, -EINVAL, "scrypt N=%u is not a power of two from %u to %u", p->n,
                         VB_SCRYPT_N_MIN, VB_SCRYPT_N_MAX);
    if (p->r < 1 || p->r > VB_SCRYPT_R_MAX)
        return vb_seterr(e, -EINVAL, "scrypt r=%u is not from 1 to %u", p->r, VB_SCRYPT_R_MAX);
    if (p->p < 1 || p->p > VB_SCRYPT_P_MAX)
        return vb_seterr(e, -EINVAL, "scrypt p=%u is not from 1 to %u", p->p, VB_SCRYPT_P_MAX);
    if (128ull * p->n * p->r > VB_SCRYPT_MEM_MAX)
        return vb_seterr(e, -EINVAL, "scrypt N=%u r=%u needs %llu MiB (at most %llu)", p->n,
                         p->r, 128ull * p->n * p->r >> 20, VB_SCRYPT_MEM_MAX >> 20);
    if ((uint64_t)p->n * p->r * p->p > VB_SCRYPT_WORK_MAX)
        return vb_seterr(e, -EINVAL, "scrypt N·r·p = %llu (at most %llu)",
                         (unsigned long long)p->n * p->r * p->p, VB_SCRYPT_WORK_MAX);
    return 0;
}

/* The key that wraps the master key, from a secret (and the file's salt/params). */
static int wrap_key(const struct vb_secret *s, const char *kdf, const struct vb_kdf_params *p,
                    const uint8_t *salt, uint8_t key[VB_KEY_LEN], vb_error *e)
{
    if (!strcmp(kdf, "raw"))
        return vb_hkdf(s->data, VB_KEY_LEN, raw_label, sizeof(raw_label) - 1, key, e);
    /* vb_kdf_params_check bounded these: scrypt's B and V arrays fit maxmem */
    uint64_t maxmem = 128ull * p->r * (p->n + 2) + 128ull * p->r * p->p + (1 << 20);
    if (!EVP_PBE_scrypt((const char *)s->data, s->len, salt, VB_SALT_LEN, p->n, p->r, p->p,
                        maxmem, key, VB_KEY_LEN))
        return vb_seterr(e, -ENOMEM, "scrypt N=%u r=%u p=%u failed", p->n, p->r, p->p);
    return 0;
}

/* ---- base64, strict: standard alphabet, padded, canonical ----------------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const uint8_t *p, size_t n)
{
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;

    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        *o++ = b64[v >> 18];
        *o++ = b64[(v >> 12) & 63];
        *o++ = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? b64[v & 63] : '=';
    }
    *o = 0;
    return out;
}

static int b64_value(char c)
{
    const char *p = c ? strchr(b64, c) : NULL;
    return p ? (int)(p - b64) : -1;
}

/* Decode s into exactly want bytes; -1 unless s is the canonical encoding of want bytes. */
static int b64_decode(const char *s, uint8_t *out, size_t want)
{
    size_t n = strlen(s), o = 0;

    if (n != (want + 2) / 3 * 4)
        return -1;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        size_t bytes = VB_MIN(want - o, (size_t)3);
        for (int j = 0; j < 4; j++) {
            if ((size_t)j > bytes) {
                if (s[i + j] != '=')
                    return -1;
                v[j] = 0;
            } else if ((v[j] = b64_value(s[i + j])) < 0) {
                return -1;
            }
        }
        uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        uint8_t b[3] = { (uint8_t)(x >> 16), (uint8_t)(x >> 8), (uint8_t)x };
        for (size_t j = bytes; j < 3; j++)
            if (b[j])
                return -1;                   /* bits after the end must be zero */
        memcpy(out + o, b, bytes);
        o += bytes;
    }
    return 0;
}

/* ---- key files ------------------------------------------------------------- */

struct parsed {
    char kdf[8];
    struct vb_kdf_params params;
    uint8_t salt[VB_SALT_LEN];
    enum vb_aead aead;
    uint8_t wrapped[WRAPPED_LEN];
    uint8_t check[CHECK_LEN];
};

/* The check value: SHA-256 over the fields that matter, first 16 bytes.  It
 * tells a damaged file from a wrong password; it is no defence against
 * someone who rewrites the file (the seal is). */
static void check_of(const struct parsed *f, uint8_t out[CHECK_LEN])
{
    uint8_t buf[sizeof(check_label) + 8 + 12 + VB_SALT_LEN + 24 + WRAPPED_LEN], md[32], *p = buf;
    const char *an = vb_aead_name(f->aead);
    uint32_t v;

    memcpy(p, check_label, sizeof(check_label));     /* with its NUL */
    p += sizeof(check_label);
    memcpy(p, f->kdf, strlen(f->kdf) + 1);
    p += strlen(f->kdf) + 1;
    v = htole32(f->params.n); memcpy(p, &v, 4); p += 4;
    v = htole32(f->params.r); memcpy(p, &v, 4); p += 4;
    v = htole32(f->params.p); memcpy(p, &v, 4); p += 4;
    if (!strcmp(f->kdf, "scrypt")) {
        memcpy(p, f->salt, VB_SALT_LEN);
        p += VB_SALT_LEN;
    }
    memcpy(p, an, strlen(an) + 1);
    p += strlen(an) + 1;
    memcpy(p, f->wrapped, WRAPPED_LEN);
    p += WRAPPED_LEN;
    SHA256(buf, (size_t)(p - buf), md);
    memcpy(out, md, CHECK_LEN);
}

static const char *get_str(json_object *o, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* An integer field in [1, max]. */
static int get_u32(json_object *o, const char *key, uint32_t max, uint32_t *out, vb_error *e)
{
    json_object *v;
    int64_t x;

    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
        return vb_seterr(e, -EBADMSG, "key file: \"%s\" is missing or not an integer", key);
    x = json_object_get_int64(v);
    if (x < 1 || x > (int64_t)max)
        return vb_seterr(e, -EBADMSG, "key file: \"%s\" = %lld is out of bounds (1 to %u)",
                         key, (long long)x, max);
    *out = (uint32_t)x;
    return 0;
}

static int parse(const char *json, size_t len, struct parsed *f, json_object **root, vb_error *e)
{
    json_tokener *tok;
    json_object *o, *v;
    const char *s;
    int ret;

    memset(f, 0, sizeof(*f));
    *root = NULL;
    if (len > VB_KEYFILE_MAX)
        return vb_seterr(e, -EBADMSG, "key file of %zu bytes (at most %u)", len, VB_KEYFILE_MAX);
    tok = json_tokener_new();
    if (!tok)
        return vb_seterr(e, -ENOMEM, "out of memory");
    o = json_tokener_parse_ex(tok, json, (int)len);
    if (o) {
        size_t end = json_tokener_get_parse_end(tok);
        while (end < len && strchr(" \t\r\n", json[end]) && json[end])
            end++;
        if (end != len) {
            json_object_put(o);
            o = NULL;
        }
    }
    json_tokener_free(tok);
    if (!o || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return vb_seterr(e, -EBADMSG, "key file is not a JSON object");
    }
    *root = o;
    if (!json_object_object_get_ex(o, "vbackup_key", &v) || !json_object_is_type(v, json_type_int))
        return vb_seterr(e, -EBADMSG, "not a vbackup key file (no \"vbackup_key\")");
    if (json_object_get_int64(v) != KEYFILE_VERSION)
        return vb_seterr(e, -EBADMSG, "key file version %lld (this vbackup reads %d)",
                         (long long)json_object_get_int64(v), KEYFILE_VERSION);

    s = get_str(o, "kdf");
    if (!s || (strcmp(s, "scrypt") && strcmp(s, "raw")))
        return vb_seterr(e, -EBADMSG, "key file: \"kdf\" is %s%s%s (scrypt or raw)",
                         s ? "'" : "", s ? s : "missing", s ? "'" : "");
    snprintf(f->kdf, sizeof(f->kdf), "%s", s);
    if (!strcmp(f->kdf, "scrypt")) {
        if ((ret = get_u32(o, "n", VB_SCRYPT_N_MAX, &f->params.n, e)) ||
            (ret = get_u32(o, "r", VB_SCRYPT_R_MAX, &f->params.r, e)) ||
            (ret = get_u32(o, "p", VB_SCRYPT_P_MAX, &f->params.p, e)))
            return ret;
        vb_error why = { 0 };
        if (vb_kdf_params_check(&f->params, &why))
            return vb_seterr(e, -EBADMSG, "key file: %s", why.msg);
        s = get_str(o, "salt");
        if (!s || b64_decode(s, f->salt, VB_SALT_LEN))
            return vb_seterr(e, -EBADMSG, "key file: \"salt\" is not %d bytes of base64",
                             VB_SALT_LEN);
    }
    s = get_str(o, "aead");
    if (!s || vb_aead_parse(s, &f->aead, NULL) || f->aead == VB_AEAD_NONE)
        return vb_seterr(e, -EBADMSG, "key file: \"aead\" is %s (aes-256-gcm or "
                         "chacha20-poly1305)", s ? s : "missing");
    s = get_str(o, "wrapped");
    if (!s || b64_decode(s, f->wrapped, WRAPPED_LEN))
        return vb_seterr(e, -EBADMSG, "key file: \"wrapped\" is not %d bytes of base64",
                         WRAPPED_LEN);
    s = get_str(o, "check");
    if (!s || strlen(s) != 2 * CHECK_LEN || vb_unhex(s, f->check, CHECK_LEN))
        return vb_seterr(e, -EBADMSG, "key file: \"check\" is not %d hex digits", 2 * CHECK_LEN);
    for (const char *c = s; *c; c++)
        if (*c >= 'A' && *c <= 'F')
            return vb_seterr(e, -EBADMSG, "key file: \"check\" is not lower-case hex");

    uint8_t want[CHECK_LEN];
    check_of(f, want);
    if (CRYPTO_memcmp(want, f->check, CHECK_LEN))
        return vb_seterr(e, -EBADMSG, "key file is damaged: its check value does not match its "
                         "kdf, parameters, salt or wrapped key");
    return 0;
}

/* A string from a file, safe to print on a terminal: no escape sequences. */
static void printable(char *out, size_t size, const char *s)
{
    size_t n = 0;

    for (; s && *s && n + 1 < size; s++)
        out[n++] = *s >= 0x20 && *s < 0x7f ? *s : '?';
    out[n] = 0;
}

int vb_keyfile_info(const char *json, size_t len, struct vb_keyfile_info *info, vb_error *e)
{
    struct parsed f;
    json_object *o;
    int ret = parse(json, len, &f, &o, e);

    memset(info, 0, sizeof(*info));
    if (!ret) {
        snprintf(info->kdf, sizeof(info->kdf), "%s", f.kdf);
        info->params = f.params;
        info->aead = f.aead;
        printable(info->created, sizeof(info->created), get_str(o, "created"));
        printable(info->host, sizeof(info->host), get_str(o, "host"));
        printable(info->user, sizeof(info->user), get_str(o, "user"));
    }
    json_object_put(o);
    return ret;
}

int vb_keyfile_open(const char *json, size_t len, const struct vb_secret *s,
                    uint8_t master[VB_MASTER_LEN], vb_error *e)
{
    struct parsed f;
    json_object *o;
    uint8_t key[VB_KEY_LEN];
    int ret = parse(json, len, &f, &o, e);

    json_object_put(o);
    if (ret)
        return ret;
    if (s->kind == VB_SECRET_PASSWORD && strcmp(f.kdf, "scrypt"))
        return vb_seterr(e, -EACCES, "wrong password or key (this key file takes a raw key)");
    if (s->kind == VB_SECRET_RAWKEY && strcmp(f.kdf, "raw"))
        return vb_seterr(e, -EACCES, "wrong password or key (this key file takes a password)");
    if (s->kind == VB_SECRET_RAWKEY && s->len != VB_KEY_LEN)
        return vb_seterr(e, -EINVAL, "raw key of %zu bytes (%d expected)", s->len, VB_KEY_LEN);
    ret = wrap_key(s, f.kdf, &f.params, f.salt, key, e);
    if (!ret) {
        ret = vb_aead_open(f.aead, key, wrap_ad, sizeof(wrap_ad) - 1, f.wrapped, WRAPPED_LEN,
                           master, NULL);
        if (ret == -EBADMSG)
            ret = vb_seterr(e, -EACCES, "wrong password or key");
        else if (ret)
            ret = vb_seterr(e, ret, "key file: cannot open the wrapped key");
    }
    OPENSSL_cleanse(key, sizeof(key));
    return ret;
}

static void add_str(json_object *o, const char *k, const char *v)
{
    json_object_object_add(o, k, json_object_new_string(v));
}

int vb_keyfile_create(const uint8_t master[VB_MASTER_LEN], const struct vb_secret *s,
                      const struct vb_kdf_params *params, enum vb_aead aead, char **json,
                      size_t *len, vb_error *e)
{
    struct parsed f;
    uint8_t key[VB_KEY_LEN];
    char check[2 * CHECK_LEN + 1], when[64], host[256] = "", *b;
    struct passwd pw, *pwp = NULL;
    char pwbuf[1024];
    json_object *o;
    const char *text;
    int ret;

    memset(&f, 0, sizeof(f));
    if (aead == VB_AEAD_NONE || !vb_aead_name(aead))
        return vb_seterr(e, -EINVAL, "a key file is sealed with aes-256-gcm or "
                         "chacha20-poly1305");
    if (s->kind == VB_SECRET_PASSWORD) {
        snprintf(f.kdf, sizeof(f.kdf), "scrypt");
        f.params = params ? *params : (struct vb_kdf_params){ VB_SCRYPT_N_DEFAULT,
                                                              VB_SCRYPT_R_DEFAULT,
                                                              VB_SCRYPT_P_DEFAULT };
        ret = vb_kdf_params_check(&f.params, e);
        if (ret)
            return ret;
        if (RAND_bytes(f.salt, VB_SALT_LEN) != 1)
            return vb_seterr(e, -EIO, "RAND_bytes failed");
    } else if (s->kind == VB_SECRET_RAWKEY && s->len == VB_KEY_LEN) {
        snprintf(f.kdf, sizeof(f.kdf), "raw");
    } else {
        return vb_seterr(e, -EINVAL, "no password or 32-byte raw key to seal the key file with");
    }
    f.aead = aead;
    ret = wrap_key(s, f.kdf, &f.params, f.salt, key, e);
    if (!ret)
        ret = vb_aead_seal(aead, key, NULL, wrap_ad, sizeof(wrap_ad) - 1, master, VB_MASTER_LEN,
                           f.wrapped, e);
    OPENSSL_cleanse(key, sizeof(key));
    if (ret)
        return ret;
    check_of(&f, f.check);
    vb_hex(f.check, CHECK_LEN, check);

    o = json_object_new_object();
    if (!o)
        return vb_seterr(e, -ENOMEM, "out of memory");
    json_object_object_add(o, "vbackup_key", json_object_new_int(KEYFILE_VERSION));
    add_str(o, "kdf", f.kdf);
    if (!strcmp(f.kdf, "scrypt")) {
        json_object_object_add(o, "n", json_object_new_int64(f.params.n));
        json_object_object_add(o, "r", json_object_new_int64(f.params.r));
        json_object_object_add(o, "p", json_object_new_int64(f.params.p));
        b = b64_encode(f.salt, VB_SALT_LEN);
        if (b)
            add_str(o, "salt", b);
        free(b);
    }
    add_str(o, "aead", vb_aead_name(aead));
    b = b64_encode(f.wrapped, WRAPPED_LEN);
    if (b)
        add_str(o, "wrapped", b);
    free(b);
    add_str(o, "check", check);
    vb_fmt_time(vb_wall_ns(), when, sizeof(when));
    add_str(o, "created", when);
    if (gethostname(host, sizeof(host) - 1) == 0)
        add_str(o, "host", host);
    if (getpwuid_r(geteuid(), &pw, pwbuf, sizeof(pwbuf), &pwp) == 0 && pwp)
        add_str(o, "user", pwp->pw_name);
    text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                             JSON_C_TO_STRING_NOSLASHESCAPE);
    *json = text ? malloc(strlen(text) + 2) : NULL;
    if (*json) {
        *len = strlen(text) + 1;
        memcpy(*json, text, *len - 1);
        (*json)[*len - 1] = '\n';
        (*json)[*len] = 0;
    }
    json_object_put(o);
    if (!*json)
        return vb_seterr(e, -ENOMEM, "out of memory");
    /* what was written must read back: every field present, the check right */
    struct parsed again;
    ret = parse(*json, *len, &again, &o, e);
    json_object_put(o);
    if (ret) {
        free(*json);
        *json = NULL;
        vb_prefixerr(e, "the new key file does not read back");
        return ret;
    }
    return 0;
}
