/* SPDX-License-Identifier: MIT */
/*
 * lib/crypto.c: ciphers, hashes and PBKDF2 for encrypted images
 * (crypto.h), through two well-kept libraries, no cipher of our own:
 *
 *   - GnuTLS for AES-XTS (128 and 256-bit halves) and AES-CBC, the modes
 *     qemu-img creates by default and with ESSIV: its AES-NI code
 *     processes several blocks at once (XTS about 800 MB/s a core on the
 *     build machine, against 150 MB/s for nettle's generic XTS over one
 *     block at a time), and for PBKDF2 and random bytes;
 *   - nettle (which GnuTLS is built on) for what GnuTLS has no cipher for:
 *     serpent, twofish, cast5, AES in ECB and CTR and AES-192-XTS, the
 *     ESSIV cipher, and the hashes of the anti-forensic splitter.
 *
 * GnuTLS's cipher handles keep the IV between calls, so a data cipher keeps
 * a small pool of them (taken under a mutex, one per concurrent caller);
 * nettle's contexts are read only once keyed, so threads share them.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <argon2.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <nettle/cbc.h>
#include <nettle/ctr.h>
#include <nettle/hmac.h>
#include <nettle/pbkdf2.h>
#include <nettle/nettle-meta.h>
#include <nettle/xts.h>

#include "crypto.h"
#include "error_internal.h"

static const struct {
    const char *name, *family;
    const struct nettle_cipher *nc;
} algs[VCRYPT_ALG_COUNT] = {
    [VCRYPT_AES_128] = {"aes-128", "aes", &nettle_aes128},
    [VCRYPT_AES_192] = {"aes-192", "aes", &nettle_aes192},
    [VCRYPT_AES_256] = {"aes-256", "aes", &nettle_aes256},
    [VCRYPT_SERPENT_128] = {"serpent-128", "serpent", &nettle_serpent128},
    [VCRYPT_SERPENT_192] = {"serpent-192", "serpent", &nettle_serpent192},
    [VCRYPT_SERPENT_256] = {"serpent-256", "serpent", &nettle_serpent256},
    [VCRYPT_TWOFISH_128] = {"twofish-128", "twofish", &nettle_twofish128},
    [VCRYPT_TWOFISH_192] = {"twofish-192", "twofish", &nettle_twofish192},
    [VCRYPT_TWOFISH_256] = {"twofish-256", "twofish", &nettle_twofish256},
    [VCRYPT_CAST5_128] = {"cast5-128", "cast5", &nettle_cast128},
};

static const char *const mode_names[VCRYPT_MODE_COUNT] = {"ecb", "cbc", "xts", "ctr"};
static const char *const ivgen_names[VCRYPT_IVGEN_COUNT] = {"plain", "plain64", "essiv"};

static const struct {
    const char *name;
    const struct nettle_hash *nh;
    gnutls_mac_algorithm_t mac;
} hashes[VCRYPT_HASH_COUNT] = {
    [VCRYPT_MD5] = {"md5", &nettle_md5, GNUTLS_MAC_MD5},
    [VCRYPT_SHA1] = {"sha1", &nettle_sha1, GNUTLS_MAC_SHA1},
    [VCRYPT_SHA224] = {"sha224", &nettle_sha224, GNUTLS_MAC_SHA224},
    [VCRYPT_SHA256] = {"sha256", &nettle_sha256, GNUTLS_MAC_SHA256},
    [VCRYPT_SHA384] = {"sha384", &nettle_sha384, GNUTLS_MAC_SHA384},
    [VCRYPT_SHA512] = {"sha512", &nettle_sha512, GNUTLS_MAC_SHA512},
    [VCRYPT_RIPEMD160] = {"ripemd160", &nettle_ripemd160, GNUTLS_MAC_RMD160},
};

const char *vcrypt_alg_name(enum vcrypt_alg a)
{
    return (unsigned)a < VCRYPT_ALG_COUNT ? algs[a].name : "?";
}

const char *vcrypt_mode_name(enum vcrypt_mode m)
{
    return (unsigned)m < VCRYPT_MODE_COUNT ? mode_names[m] : "?";
}

const char *vcrypt_ivgen_name(enum vcrypt_ivgen g)
{
    return (unsigned)g < VCRYPT_IVGEN_COUNT ? ivgen_names[g] : "?";
}

const char *vcrypt_hash_name(enum vcrypt_hash h)
{
    return (unsigned)h < VCRYPT_HASH_COUNT ? hashes[h].name : "?";
}

int vcrypt_alg_by_name(const char *s)
{
    for (int i = 0; i < VCRYPT_ALG_COUNT; i++)
        if (!strcmp(s, algs[i].name))
            return i;
    return -1;
}

int vcrypt_mode_by_name(const char *s)
{
    for (int i = 0; i < VCRYPT_MODE_COUNT; i++)
        if (!strcmp(s, mode_names[i]))
            return i;
    return -1;
}

int vcrypt_ivgen_by_name(const char *s)
{
    for (int i = 0; i < VCRYPT_IVGEN_COUNT; i++)
        if (!strcmp(s, ivgen_names[i]))
            return i;
    return -1;
}

int vcrypt_hash_by_name(const char *s)
{
    for (int i = 0; i < VCRYPT_HASH_COUNT; i++)
        if (!strcmp(s, hashes[i].name))
            return i;
    return -1;
}

const char *vcrypt_alg_family(enum vcrypt_alg a)
{
    return algs[a].family;
}

size_t vcrypt_alg_key_len(enum vcrypt_alg a)
{
    return algs[a].nc->key_size;
}

size_t vcrypt_alg_block_len(enum vcrypt_alg a)
{
    return algs[a].nc->block_size;
}

int vcrypt_alg_find(const char *family, size_t key_len)
{
    for (int i = 0; i < VCRYPT_ALG_COUNT; i++)
        if (!strcmp(family, algs[i].family) && algs[i].nc->key_size == key_len)
            return i;
    return -1;
}

size_t vcrypt_hash_len(enum vcrypt_hash h)
{
    return hashes[h].nh->digest_size;
}

size_t vcrypt_key_len(enum vcrypt_alg alg, enum vcrypt_mode mode)
{
    return vcrypt_alg_key_len(alg) * (mode == VCRYPT_XTS ? 2 : 1);
}

int vcrypt_check(enum vcrypt_alg alg, enum vcrypt_mode mode, enum vcrypt_ivgen ivgen,
                 enum vcrypt_hash ivhash)
{
    if ((mode == VCRYPT_XTS || mode == VCRYPT_CTR) && vcrypt_alg_block_len(alg) != 16)
        return err_set(-ENOTSUP, "Unsupported cipher mode %s with cipher %s",
                       vcrypt_mode_name(mode), vcrypt_alg_name(alg));
    if (ivgen == VCRYPT_IV_ESSIV &&
        vcrypt_alg_find(vcrypt_alg_family(alg), vcrypt_hash_len(ivhash)) < 0)
        return err_set(-ENOTSUP, "No %s cipher with key size %zu available",
                       vcrypt_alg_family(alg), vcrypt_hash_len(ivhash));
    return 0;
}

/* ---- Data ciphers --------------------------------------------------------- */

#define POOL_MAX 64

struct vcrypt {
    enum vcrypt_alg alg;
    enum vcrypt_mode mode;
    enum vcrypt_ivgen ivgen;
    size_t block;                /* cipher block bytes = IV bytes */
    const struct nettle_cipher *nc;
    /* nettle: encryption and decryption contexts (XTS: data key, then the
     * tweak key's encryption context). */
    void *enc, *dec, *twk;
    /* ESSIV's cipher (encryption context) and its algorithm. */
    const struct nettle_cipher *essiv_nc;
    void *essiv;
    /* GnuTLS: the algorithm (0: nettle does the work), the key, a pool. */
    gnutls_cipher_algorithm_t galg;
    uint8_t key[VCRYPT_MAX_KEY];
    size_t key_len;
    pthread_mutex_t lock;
    gnutls_cipher_hd_t pool[POOL_MAX];
    unsigned npool;
    uint32_t sector;             /* bytes a sector (an IV) covers */
};

static void *nettle_ctx(const struct nettle_cipher *nc, const uint8_t *key, bool decrypt)
{
    void *ctx = malloc(nc->context_size);
    if (ctx)
        (decrypt ? nc->set_decrypt_key : nc->set_encrypt_key)(ctx, key);
    return ctx;
}

int vcrypt_new(struct vcrypt **cp, enum vcrypt_alg alg, enum vcrypt_mode mode,
               enum vcrypt_ivgen ivgen, enum vcrypt_hash ivhash, const uint8_t *key,
               size_t key_len)
{
    *cp = NULL;
    int r = vcrypt_check(alg, mode, ivgen, ivhash);
    if (r < 0)
        return r;
    if (key_len != vcrypt_key_len(alg, mode))
        return err_set(-EINVAL, "a %s-%s key has %zu bytes, not %zu", vcrypt_alg_name(alg),
                       vcrypt_mode_name(mode), vcrypt_key_len(alg, mode), key_len);
    struct vcrypt *c = calloc(1, sizeof *c);
    if (!c)
        return err_set(-ENOMEM, "out of memory");
    pthread_mutex_init(&c->lock, NULL);
    c->alg = alg;
    c->mode = mode;
    c->ivgen = ivgen;
    c->nc = algs[alg].nc;
    c->block = c->nc->block_size;
    c->sector = VCRYPT_SECTOR;
    memcpy(c->key, key, key_len);
    c->key_len = key_len;
    if (alg == VCRYPT_AES_128 || alg == VCRYPT_AES_256) {
        if (mode == VCRYPT_XTS)
            c->galg = alg == VCRYPT_AES_128 ? GNUTLS_CIPHER_AES_128_XTS
                                            : GNUTLS_CIPHER_AES_256_XTS;
        else if (mode == VCRYPT_CBC)
            c->galg = alg == VCRYPT_AES_128 ? GNUTLS_CIPHER_AES_128_CBC
                                            : GNUTLS_CIPHER_AES_256_CBC;
    } else if (alg == VCRYPT_AES_192 && mode == VCRYPT_CBC) {
        c->galg = GNUTLS_CIPHER_AES_192_CBC;
    }
    bool ok = true;
    if (!c->galg) {
        size_t half = c->nc->key_size;
        c->enc = nettle_ctx(c->nc, key, false);
        ok = c->enc != NULL;
        if (ok && (mode == VCRYPT_ECB || mode == VCRYPT_CBC || mode == VCRYPT_XTS))
            ok = (c->dec = nettle_ctx(c->nc, key, true)) != NULL;
        if (ok && mode == VCRYPT_XTS)
            ok = (c->twk = nettle_ctx(c->nc, key + half, false)) != NULL;
    }
    if (ok && ivgen == VCRYPT_IV_ESSIV) {
        uint8_t h[VCRYPT_MAX_DIGEST];
        vcrypt_hash_buf(ivhash, key, key_len, h);
        int ea = vcrypt_alg_find(vcrypt_alg_family(alg), vcrypt_hash_len(ivhash));
        c->essiv_nc = algs[ea].nc;
        ok = (c->essiv = nettle_ctx(c->essiv_nc, h, false)) != NULL;
        memset(h, 0, sizeof h);
    }
    if (!ok) {
        vcrypt_free(c);
        return err_set(-ENOMEM, "out of memory");
    }
    if (c->galg) {
        /* One handle now, so that a key GnuTLS refuses fails here. */
        gnutls_datum_t k = {c->key, (unsigned)c->key_len};
        uint8_t iv[16] = {0};
        gnutls_datum_t ivd = {iv, 16};
        int g = gnutls_cipher_init(&c->pool[0], c->galg, &k, &ivd);
        if (g < 0) {
            vcrypt_free(c);
            return err_set(-EINVAL, "GnuTLS refuses the %s-%s key: %s", vcrypt_alg_name(alg),
                           vcrypt_mode_name(mode), gnutls_strerror(g));
        }
        c->npool = 1;
    }
    *cp = c;
    return 0;
}

static void free_ctx(void *ctx, size_t size)
{
    if (ctx) {
        memset(ctx, 0, size);
        free(ctx);
    }
}

void vcrypt_free(struct vcrypt *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < c->npool; i++)
        gnutls_cipher_deinit(c->pool[i]);
    free_ctx(c->enc, c->nc->context_size);
    free_ctx(c->dec, c->nc->context_size);
    free_ctx(c->twk, c->nc->context_size);
    if (c->essiv)
        free_ctx(c->essiv, c->essiv_nc->context_size);
    pthread_mutex_destroy(&c->lock);
    memset(c->key, 0, sizeof c->key);
    free(c);
}

static void make_iv(const struct vcrypt *c, uint64_t sector, uint8_t *iv)
{
    memset(iv, 0, c->block);
    uint64_t v = c->ivgen == VCRYPT_IV_PLAIN ? (uint32_t)sector : sector;
    size_t n = c->block < 8 ? c->block : 8;
    for (size_t i = 0; i < n; i++)
        iv[i] = (uint8_t)(v >> (8 * i));
    if (c->ivgen == VCRYPT_IV_ESSIV)
        c->essiv_nc->encrypt(c->essiv, c->block, iv, iv);
}

static gnutls_cipher_hd_t pool_get(struct vcrypt *c)
{
    gnutls_cipher_hd_t h = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->npool)
        h = c->pool[--c->npool];
    pthread_mutex_unlock(&c->lock);
    if (!h) {
        gnutls_datum_t k = {c->key, (unsigned)c->key_len};
        uint8_t iv[16] = {0};
        gnutls_datum_t ivd = {iv, 16};
        if (gnutls_cipher_init(&h, c->galg, &k, &ivd) < 0)
            h = NULL;
    }
    return h;
}

static void pool_put(struct vcrypt *c, gnutls_cipher_hd_t h)
{
    pthread_mutex_lock(&c->lock);
    if (c->npool < POOL_MAX) {
        c->pool[c->npool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    if (h)
        gnutls_cipher_deinit(h);
}

static int crypt_sectors(struct vcrypt *c, uint64_t sector, uint8_t *buf, size_t len,
                         bool enc)
{
    size_t ss = c->sector;
    uint64_t step = ss / VCRYPT_SECTOR; /* IVs count 512-byte sectors */
    if (len % ss)
        return err_set(-EIO, "encryption of %zu bytes: not whole %zu-byte sectors", len, ss);
    uint8_t iv[16];
    if (c->galg) {
        gnutls_cipher_hd_t h = pool_get(c);
        if (!h)
            return err_set(-ENOMEM, "cannot start a %s-%s cipher", vcrypt_alg_name(c->alg),
                           vcrypt_mode_name(c->mode));
        int g = 0;
        for (size_t pos = 0; pos < len && g >= 0; pos += ss, sector += step) {
            make_iv(c, sector, iv);
            gnutls_cipher_set_iv(h, iv, 16);
            g = enc ? gnutls_cipher_encrypt2(h, buf + pos, ss, buf + pos,
                                             ss)
                    : gnutls_cipher_decrypt2(h, buf + pos, ss, buf + pos,
                                             ss);
        }
        pool_put(c, h);
        if (g < 0)
            return err_set(-EIO, "%s-%s: %s", vcrypt_alg_name(c->alg),
                           vcrypt_mode_name(c->mode), gnutls_strerror(g));
        return 0;
    }
    const struct nettle_cipher *nc = c->nc;
    if (c->mode == VCRYPT_ECB) {
        (enc ? nc->encrypt : nc->decrypt)(enc ? c->enc : c->dec, len, buf, buf);
        return 0;
    }
    for (size_t pos = 0; pos < len; pos += ss, sector += step) {
        uint8_t *p = buf + pos;
        make_iv(c, sector, iv);
        switch (c->mode) {
        case VCRYPT_CBC:
            if (enc)
                cbc_encrypt(c->enc, nc->encrypt, c->block, iv, ss, p, p);
            else
                cbc_decrypt(c->dec, nc->decrypt, c->block, iv, ss, p, p);
            break;
        case VCRYPT_XTS:
            if (enc)
                xts_encrypt_message(c->enc, c->twk, nc->encrypt, iv, ss, p, p);
            else
                xts_decrypt_message(c->dec, c->twk, nc->decrypt, nc->encrypt, iv,
                                    ss, p, p);
            break;
        case VCRYPT_CTR:
            ctr_crypt(c->enc, nc->encrypt, c->block, iv, ss, p, p);
            break;
        default:
            return err_set(-EIO, "unknown cipher mode");
        }
    }
    return 0;
}

int vcrypt_set_sector_size(struct vcrypt *c, uint32_t size)
{
    if (size < VCRYPT_SECTOR || size > VCRYPT_MAX_SECTOR || (size & (size - 1)))
        return err_set(-ENOTSUP, "encryption sector size %" PRIu32 " is not a power of two "
                       "from %u to %u", size, VCRYPT_SECTOR, VCRYPT_MAX_SECTOR);
    c->sector = size;
    return 0;
}

uint32_t vcrypt_sector_size(const struct vcrypt *c)
{
    return c->sector;
}

int vcrypt_encrypt(struct vcrypt *c, uint64_t sector, uint8_t *buf, size_t len)
{
    return crypt_sectors(c, sector, buf, len, true);
}

int vcrypt_decrypt(struct vcrypt *c, uint64_t sector, uint8_t *buf, size_t len)
{
    return crypt_sectors(c, sector, buf, len, false);
}

/* ---- Hashes and keys ------------------------------------------------------ */

void vcrypt_hash2(enum vcrypt_hash h, const void *prefix, size_t plen, const void *in,
                  size_t len, uint8_t *out)
{
    const struct nettle_hash *nh = hashes[h].nh;
    /* The largest hash context nettle has here is SHA-512's (~216 bytes). */
    _Alignas(16) uint8_t ctx[512];
    nh->init(ctx);
    if (plen)
        nh->update(ctx, plen, prefix);
    nh->update(ctx, len, in);
    nh->digest(ctx, nh->digest_size, out);
}

void vcrypt_hash_buf(enum vcrypt_hash h, const void *in, size_t len, uint8_t *out)
{
    vcrypt_hash2(h, NULL, 0, in, len, out);
}

/* nettle's HMAC over any of its hashes, for nettle's PBKDF2. */
struct generic_hmac {
    const struct nettle_hash *h;
    _Alignas(16) uint8_t outer[512], inner[512], state[512];
};

static void ghmac_update(void *ctx, size_t len, const uint8_t *data)
{
    struct generic_hmac *g = ctx;
    hmac_update(g->state, g->h, len, data);
}

static void ghmac_digest(void *ctx, size_t len, uint8_t *out)
{
    struct generic_hmac *g = ctx;
    hmac_digest(g->outer, g->inner, g->state, g->h, len, out);
}

int vcrypt_pbkdf2(enum vcrypt_hash h, const void *pass, size_t pass_len, const uint8_t *salt,
                  size_t salt_len, uint32_t iterations, uint8_t *out, size_t out_len)
{
    if (!iterations)
        iterations = 1;
    /* GnuTLS (its own accelerated hashes) where it has the HMAC; nettle's
     * generic HMAC for the others (RIPEMD-160). */
    if (h != VCRYPT_RIPEMD160) {
        gnutls_datum_t k = {(unsigned char *)pass, (unsigned)pass_len};
        gnutls_datum_t s = {(unsigned char *)salt, (unsigned)salt_len};
        int g = gnutls_pbkdf2(hashes[h].mac, &k, &s, iterations, out, out_len);
        if (g < 0)
            return err_set(-EIO, "PBKDF2 with %s: %s", hashes[h].name, gnutls_strerror(g));
        return 0;
    }
    struct generic_hmac *g = malloc(sizeof *g);
    if (!g)
        return err_set(-ENOMEM, "out of memory");
    g->h = hashes[h].nh;
    hmac_set_key(g->outer, g->inner, g->state, g->h, pass_len, pass);
    pbkdf2(g, ghmac_update, ghmac_digest, g->h->digest_size, iterations, salt_len, salt,
           out_len, out);
    memset(g, 0, sizeof *g);
    free(g);
    return 0;
}

int vcrypt_argon2(enum vcrypt_argon2_type type, const void *pass, size_t pass_len,
                  const uint8_t *salt, size_t salt_len, uint32_t t_cost, uint32_t m_kib,
                  uint32_t lanes, uint8_t *out, size_t out_len)
{
    /* libargon2 (the reference implementation, which libcryptsetup uses
     * too): nettle 3.8 and Debian 12's GnuTLS and OpenSSL have no Argon2.
     * Version 1.3 (0x13), as cryptsetup derives LUKS2 keyslot keys. */
    argon2_type t = type == VCRYPT_ARGON2I ? Argon2_i : Argon2_id;
    int a = argon2_hash(t_cost, m_kib, lanes, pass, pass_len, salt, salt_len, out, out_len,
                        NULL, 0, t, ARGON2_VERSION_13);
    if (a != ARGON2_OK)
        return err_set(a == ARGON2_MEMORY_ALLOCATION_ERROR ? -ENOMEM : -EINVAL,
                       "%s (time %" PRIu32 ", memory %" PRIu32 " KiB, %" PRIu32 " lanes): %s",
                       type == VCRYPT_ARGON2I ? "argon2i" : "argon2id", t_cost, m_kib, lanes,
                       argon2_error_message(a));
    return 0;
}

static uint64_t thread_cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int vcrypt_pbkdf2_rate(enum vcrypt_hash h, size_t out_len, uint64_t *per_second)
{
    uint8_t pass[32], salt[32], out[VCRYPT_MAX_KEY];
    memset(pass, 0x55, sizeof pass);
    memset(salt, 0xaa, sizeof salt);
    if (out_len > sizeof out)
        out_len = sizeof out;
    /* Grown until a run takes 50 ms of this thread's time. */
    for (uint32_t iters = 1u << 10;; iters = iters < (1u << 30) ? iters * 2 : iters) {
        uint64_t t0 = thread_cpu_us();
        int r = vcrypt_pbkdf2(h, pass, sizeof pass, salt, sizeof salt, iters, out, out_len);
        if (r < 0)
            return r;
        uint64_t dt = thread_cpu_us() - t0;
        if (dt >= 50000 || iters >= (1u << 30)) {
            *per_second = (uint64_t)iters * 1000000u / (dt ? dt : 1);
            return 0;
        }
    }
}

int vcrypt_random(void *buf, size_t len)
{
    int g = gnutls_rnd(GNUTLS_RND_KEY, buf, len);
    if (g < 0)
        return err_set(-EIO, "no random bytes: %s", gnutls_strerror(g));
    return 0;
}
