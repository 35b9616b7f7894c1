/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Throughput of repository v2's per-chunk work on one core: ids (SHA-256 of
 * v1, HMAC-SHA256 of v2), zstd, sealing and opening with each AEAD, and a
 * whole blob encode; 1 MiB buffers of real file data (and 4 KiB ones, where
 * per-call costs show).  Built and run by bench/crypto-bench.  Prints a
 * markdown table and the cost of encryption on top of hash + compress.
 *
 * Every cell is measured in short slices, all cells taking turns, and keeps
 * its best slice: other processes on a shared machine slow every cell alike
 * instead of whichever happened to run while they did.
 */
#include <glib.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include "chunk.h"
#include "crypto.h"
#include "pack.h"

#define MIB (1u << 20)
#define SLICE 0.1      /* seconds */

static uint8_t *data;                 /* the sample: real files, concatenated */
static size_t data_len;
static struct vb_keys keyset[3];      /* by enum vb_aead */
static struct vb_codec codec;
static uint8_t *out, *back;
static uint8_t *sealed[3][2];         /* a sealed sample per AEAD and buffer size */
static EVP_CIPHER *gcm;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct cell;
typedef void (*op_fn)(const struct cell *c, const uint8_t *buf, size_t len);
struct cell {
    op_fn op;
    int aead;          /* which keys */
    int size;          /* 0: 1 MiB, 1: 4 KiB */
    double best;       /* MB/s */
};
static const size_t sizes[2] = { MIB, 4096 };

static void op_sha256(const struct cell *c, const uint8_t *b, size_t n)
{
    uint8_t id[32];
    SHA256(b, n, id);
}

static void op_hmac(const struct cell *c, const uint8_t *b, size_t n)
{
    uint8_t id[32];
    if (vb_keyed_id(keyset[c->aead].id_key, b, n, id))
        abort();
}

/* OpenSSL 3's one-shot HMAC(): fetches HMAC and SHA-256 on every call */
static void op_hmac_oneshot(const struct cell *c, const uint8_t *b, size_t n)
{
    uint8_t id[32];
    unsigned len = 32;
    if (!HMAC(EVP_sha256(), keyset[c->aead].id_key, 32, b, n, id, &len))
        abort();
}

static void op_zstd(const struct cell *c, const uint8_t *b, size_t n)
{
    if (ZSTD_isError(ZSTD_compress2(codec.cctx, out, ZSTD_compressBound(n), b, n)))
        abort();
}

static void op_seal(const struct cell *c, const uint8_t *b, size_t n)
{
    if (vb_seal(&keyset[c->aead], "vbackup blob", 12, b, n, out, NULL))
        abort();
}

/* the alternative not taken: a new cipher context for every call */
static void op_seal_newctx(const struct cell *c, const uint8_t *b, size_t n)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl;
    if (!ctx || RAND_bytes(out, 12) != 1 ||
        !EVP_EncryptInit_ex2(ctx, gcm, keyset[c->aead].data_key, out, NULL) ||
        !EVP_EncryptUpdate(ctx, NULL, &outl, (const uint8_t *)"vbackup blob", 12) ||
        !EVP_EncryptUpdate(ctx, out + 12, &outl, b, (int)n) ||
        !EVP_EncryptFinal_ex(ctx, out + 12 + n, &outl) ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, out + 12 + n) <= 0)
        abort();
    EVP_CIPHER_CTX_free(ctx);
}

static void op_open(const struct cell *c, const uint8_t *b, size_t n)
{
    const struct vb_keys *k = &keyset[c->aead];
    if (vb_open(k, "vbackup blob", 12, sealed[c->aead][c->size], n + vb_seal_overhead(k->aead),
                back, NULL))
        abort();
}

static void op_blob(const struct cell *c, const uint8_t *b, size_t n)
{
    const struct vb_keys *k = &keyset[c->aead];
    uint8_t id[32], comp;
    size_t stored;
    if (vb_keyed_id(k->id_key, b, n, id) ||
        vb_blob_encode(&codec, k, id, b, n, out, vb_blob_bound(k, n), &stored, &comp, NULL))
        abort();
}

/* One slice of about `seconds` of a cell. */
static void slice(struct cell *c, double seconds)
{
    size_t n = sizes[c->size], off = (size_t)rand() % (data_len / n) * n;
    uint64_t bytes = 0;
    double t0 = now(), t;

    do {
        for (int i = 0; i < 8; i++) {
            if (off + n > data_len)
                off = 0;
            c->op(c, data + off, n);
            bytes += n;
            off += n;
        }
        t = now() - t0;
    } while (t < seconds);
    c->best = VB_MAX(c->best, (double)bytes / t / 1e6);
}

static int load_sample(int argc, char **argv)
{
    size_t cap = 64 * MIB;

    data = malloc(cap);
    for (int i = 1; i < argc && data_len < cap; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f)
            continue;
        data_len += fread(data + data_len, 1, cap - data_len, f);
        fclose(f);
    }
    if (data_len < 8 * MIB) {
        fprintf(stderr, "usage: crypto-bench FILE... (at least 8 MiB of sample data)\n");
        return -1;
    }
    return 0;
}

enum { SHA, HMAC_ID, HMAC_ONESHOT, ZSTD, SEAL, SEAL_NEWCTX = SEAL + 3, OPEN, BLOB = OPEN + 3,
       NROWS = BLOB + 3 };

int main(int argc, char **argv)
{
    const char *env = getenv("VB_BENCH_SECONDS");
    double seconds = env ? atof(env) : 1.0;
    struct cell cells[NROWS][2];
    static const char *names[NROWS] = {
        [SHA] = "SHA-256 (v1 chunk id)",
        [HMAC_ID] = "HMAC-SHA256, vb_keyed_id (v2 chunk id)",
        [HMAC_ONESHOT] = "HMAC-SHA256, OpenSSL one-shot HMAC() (not used)",
        [ZSTD] = "zstd -1 compress",
        [SEAL_NEWCTX] = "seal, aes-256-gcm, a new EVP_CIPHER_CTX per call (not used)",
    };
    static const op_fn ops[NROWS] = {
        [SHA] = op_sha256, [HMAC_ID] = op_hmac, [HMAC_ONESHOT] = op_hmac_oneshot,
        [ZSTD] = op_zstd, [SEAL] = op_seal, [SEAL + 1] = op_seal, [SEAL + 2] = op_seal,
        [SEAL_NEWCTX] = op_seal_newctx, [OPEN] = op_open, [OPEN + 1] = op_open,
        [OPEN + 2] = op_open, [BLOB] = op_blob, [BLOB + 1] = op_blob, [BLOB + 2] = op_blob,
    };
    char *label[NROWS] = { 0 };
    vb_error e = { 0 };

    if (load_sample(argc, argv))
        return 2;
    out = malloc(2 * MIB + 4096);
    back = malloc(2 * MIB + 4096);
    gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    if (!out || !back || !gcm || vb_codec_init(&codec, 1))
        return 1;
    for (int a = 0; a < 3; a++) {
        if (vb_keys_generate(&keyset[a], (enum vb_aead)a, &e))
            return 1;
        for (int s = 0; s < 2; s++) {
            sealed[a][s] = malloc(sizes[s] + 64);
            vb_seal(&keyset[a], "vbackup blob", 12, data, sizes[s], sealed[a][s], NULL);
        }
        const char *an = vb_aead_name((enum vb_aead)a);
        label[SEAL + a] = g_strdup_printf("seal, %s", an);
        label[OPEN + a] = g_strdup_printf("open, %s", an);
        label[BLOB + a] = g_strdup_printf("blob encode (HMAC id + zstd -1 + seal), %s", an);
    }
    for (int r = 0; r < NROWS; r++) {
        if (!label[r])
            label[r] = g_strdup(names[r]);
        for (int s = 0; s < 2; s++) {
            int a = r >= BLOB ? r - BLOB : r >= OPEN ? r - OPEN : r == SEAL_NEWCTX ? 1
                  : r >= SEAL ? r - SEAL : 1;
            cells[r][s] = (struct cell){ .op = ops[r], .aead = a, .size = s };
        }
    }

    /* zstd's ratio on the sample: sealing works on what zstd leaves */
    size_t zbytes = 0;
    for (size_t off = 0; off + MIB <= data_len; off += MIB)
        zbytes += ZSTD_compress2(codec.cctx, out, ZSTD_compressBound(MIB), data + off, MIB);
    double ratio = (double)zbytes / (double)(data_len / MIB * MIB);

    int rounds = VB_MAX(3, (int)(seconds / SLICE + 0.5));
    for (int round = 0; round < rounds; round++)
        for (int r = 0; r < NROWS; r++)
            for (int s = 0; s < 2; s++)
                slice(&cells[r][s], SLICE);

    printf("sample: %.1f MiB of files, zstd -1 keeps %.1f %% of it; one core; each cell the "
           "best of %d slices of %.2f s, all cells taking turns\n\n", (double)data_len / MIB,
           100 * ratio, rounds, SLICE);
    printf("| operation | MB/s, 1 MiB buffers | MB/s, 4 KiB buffers |\n|---|---:|---:|\n");
    for (int r = 0; r < NROWS; r++)
        printf("| %s | %.0f | %.0f |\n", label[r], cells[r][0].best, cells[r][1].best);

    /* per MB of chunk data: an id and zstd, then sealing zstd's output */
    double base = 1 / cells[HMAC_ID][0].best + 1 / cells[ZSTD][0].best;
    printf("\nEncryption on top of HMAC id + zstd -1, 1 MiB chunks (issue 15: at most +10 %%):\n\n");
    printf("| encryption | seal of the compressed %.0f %%, from the rows above | measured blob "
           "encode against none |\n|---|---:|---:|\n", 100 * ratio);
    for (int a = 1; a <= 2; a++)
        printf("| %s | %+.1f %% | %+.1f %% |\n", vb_aead_name((enum vb_aead)a),
               100 * (ratio / cells[SEAL + a][0].best) / base,
               100 * (cells[BLOB][0].best / cells[BLOB + a][0].best - 1));
    printf("\nHMAC-SHA256 ids against SHA-256 ids, with zstd -1: %+.1f %%\n",
           100 * (base / (1 / cells[SHA][0].best + 1 / cells[ZSTD][0].best) - 1));

    for (int a = 0; a < 3; a++) {
        vb_keys_wipe(&keyset[a]);
        free(sealed[a][0]);
        free(sealed[a][1]);
    }
    for (int r = 0; r < NROWS; r++)
        g_free(label[r]);
    EVP_CIPHER_free(gcm);
    vb_codec_free(&codec);
    free(out);
    free(back);
    free(data);
    return 0;
}
