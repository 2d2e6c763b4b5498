/* SPDX-License-Identifier: MIT */
/*
 * formats/luks/luks.c: raw LUKS images (QEMU's "luks" format: a LUKS1
 * header, then the encrypted disk), and the encrypting layer under them
 * and under encrypted qcow2 images.
 *
 * The layer (luks_crypt_open) is a device over the file: byte N is the
 * file's byte BASE + N, and sector N / 512 of it is encrypted with the
 * master key and that sector's IV.  Reads decrypt in place once the file
 * has answered; writes encrypt into a bounce buffer first; write zeroes
 * writes encrypted zeroes (a hole in the file would decrypt to noise),
 * a piece at a time; discard and flush go through.  Requests are whole
 * sectors (align 512; the core makes them so).
 *
 * Bounce buffers are kept for the next writes (a few, up to BOUNCE_KEPT
 * bytes in all): a buffer of a megabyte or more is an mmap of its own for
 * malloc, and mapping, faulting in and unmapping one per request cost five
 * times the encryption itself (AES-XTS through GnuTLS's AES-NI code).
 *
 * The luks format is that layer with BASE the payload offset, the size
 * what follows it in the file, and the header behind it for info.  An
 * open needs the passphrase (the options key-secret=ID and secret.ID,
 * see luks_take_secret), unless no-key=on asks for the header alone
 * (info): data I/O then fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "luks.h"
#include "luks2.h"

#define ZERO_PIECE (1u << 20)
/* Bounce buffers: sizes rounded up to BOUNCE_GRAIN; at most BOUNCE_SLOTS
 * of them and BOUNCE_KEPT bytes kept. */
#define BOUNCE_GRAIN (64u << 10)
#define BOUNCE_SLOTS 16
#define BOUNCE_KEPT (16u << 20)

struct crypt {
    struct vdisk_dev *file;
    struct vcrypt *cipher;     /* NULL: opened without the key (no-key) */
    uint64_t base;
    uint32_t sector;           /* bytes a sector (an IV) covers: 512, or LUKS2's */
    uint64_t iv_base;          /* added to the 512-byte sector number for the IV
                                * (LUKS2's iv_tweak) */
    struct luks2_header *h2;   /* a LUKS2 image's header (then hdr is unused) */
    /* The luks format's own. */
    bool is_format;
    struct luks_header hdr;
    struct vdisk_encrypt_info info;
    uint8_t mk[VCRYPT_MAX_KEY]; /* the master key (amend adds slots with it) */
    /* Bounce buffers kept for the next writes (sizes: bounce_cap()). */
    pthread_mutex_t bounce_lock;
    void *bounce[BOUNCE_SLOTS];
    size_t bounce_size[BOUNCE_SLOTS];
    unsigned nbounce;
    size_t bounce_bytes;
};

static const struct vdisk_driver luks_crypt_driver;

/* ---- Bounce buffers ------------------------------------------------------- */

static size_t bounce_cap(uint64_t len)
{
    if (len == 0)
        return BOUNCE_GRAIN;
    return (size_t)((len + BOUNCE_GRAIN - 1) / BOUNCE_GRAIN * BOUNCE_GRAIN);
}

/* A 4 KiB-aligned buffer of bounce_cap(LEN) bytes, or NULL. */
static void *bounce_get(struct crypt *c, uint64_t len)
{
    size_t cap = bounce_cap(len);
    if (!cap || cap < len)
        return NULL;
    void *buf = NULL;
    pthread_mutex_lock(&c->bounce_lock);
    for (unsigned i = 0; i < c->nbounce; i++) {
        if (c->bounce_size[i] == cap) {
            buf = c->bounce[i];
            c->bounce_bytes -= cap;
            c->nbounce--;
            c->bounce[i] = c->bounce[c->nbounce];
            c->bounce_size[i] = c->bounce_size[c->nbounce];
            break;
        }
    }
    pthread_mutex_unlock(&c->bounce_lock);
    return buf ? buf : aligned_alloc_or_null(4096, cap);
}

/* BUF (from bounce_get(C, LEN)) kept for another write, or freed. */
static void bounce_put(struct crypt *c, void *buf, uint64_t len)
{
    size_t cap = bounce_cap(len);
    pthread_mutex_lock(&c->bounce_lock);
    if (c->nbounce < BOUNCE_SLOTS && c->bounce_bytes + cap <= BOUNCE_KEPT) {
        c->bounce[c->nbounce] = buf;
        c->bounce_size[c->nbounce++] = cap;
        c->bounce_bytes += cap;
        buf = NULL;
    } else if (c->nbounce) {
        /* The oldest goes, so that the sizes in use now are kept. */
        free(c->bounce[0]);
        c->bounce_bytes -= c->bounce_size[0];
        c->nbounce--;
        c->bounce[0] = c->bounce[c->nbounce];
        c->bounce_size[0] = c->bounce_size[c->nbounce];
        if (c->bounce_bytes + cap <= BOUNCE_KEPT) {
            c->bounce[c->nbounce] = buf;
            c->bounce_size[c->nbounce++] = cap;
            c->bounce_bytes += cap;
            buf = NULL;
        }
    }
    pthread_mutex_unlock(&c->bounce_lock);
    free(buf);
}

/* ---- I/O ------------------------------------------------------------------ */

/* Decrypts or encrypts the LEN bytes at SKIP of the iovec, which are whole
 * sectors (of the cipher's size) from the 512-byte SECTOR on, in place:
 * runs within one element at once, sectors split across elements through a
 * copy. */
static int crypt_iov(struct vcrypt *c, const struct iovec *iov, int iovcnt, size_t skip,
                     size_t len, uint64_t sector, bool enc)
{
    uint8_t tmp[VCRYPT_MAX_SECTOR];
    const size_t ss = vcrypt_sector_size(c);
    int i = 0;
    size_t in = skip; /* offset inside iov[i] */
    while (i < iovcnt && in >= iov[i].iov_len)
        in -= iov[i++].iov_len;
    size_t done = 0;
    while (done < len) {
        if (i >= iovcnt)
            return err_set(-EIO, "encryption: the buffer is shorter than the request");
        size_t avail = iov[i].iov_len - in;
        if (avail >= ss) {
            size_t n = avail / ss * ss;
            if (n > len - done)
                n = len - done;
            uint8_t *p = (uint8_t *)iov[i].iov_base + in;
            int r = enc ? vcrypt_encrypt(c, sector, p, n) : vcrypt_decrypt(c, sector, p, n);
            if (r < 0)
                return r;
            done += n;
            sector += n / VCRYPT_SECTOR;
            in += n;
        } else {
            /* A sector across elements. */
            size_t pos = skip + done;
            iov_to_buf(iov, iovcnt, pos, tmp, ss);
            int r = enc ? vcrypt_encrypt(c, sector, tmp, ss)
                        : vcrypt_decrypt(c, sector, tmp, ss);
            if (r < 0)
                return r;
            iov_from_buf(iov, iovcnt, pos, tmp, ss);
            done += ss;
            sector += ss / VCRYPT_SECTOR;
            in += ss;
        }
        while (i < iovcnt && in >= iov[i].iov_len)
            in -= iov[i++].iov_len;
    }
    return 0;
}

/* The IV sector (512-byte units) of the data at OFF (in the layer) for
 * REQ: by its offset, moved by the request's iv_shift (qcow2's legacy AES)
 * and the layer's iv_base (LUKS2's iv_tweak). */
static uint64_t iv_sector(const struct vdisk_req *req, uint64_t off)
{
    const struct crypt *c = req->dev->priv;
    return (uint64_t)((int64_t)(off / VCRYPT_SECTOR) + req->iv_shift) + c->iv_base;
}

static void read_done(struct vdisk_req *child, int ret)
{
    struct vdisk_req *req = child->parent;
    struct crypt *c = req->dev->priv;
    req_take_error(req, child);
    req_free(child);
    if (ret == 0) {
        ret = crypt_iov(c->cipher, req->iov, req->iovcnt, 0, req->length,
                        iv_sector(req, req->offset), false);
        if (ret < 0) {
            req_fail(req, ret, "%s", vdisk_get_error());
            return;
        }
    }
    req_complete(req, ret);
}

static void write_done(struct vdisk_req *child, int ret)
{
    struct vdisk_req *req = child->parent;
    bounce_put(req->dev->priv, child->done_arg, req->length);
    req_take_error(req, child);
    req_free(child);
    req_complete(req, ret);
}

/* Write zeroes: encrypted zeroes, ZERO_PIECE bytes at a time. */
struct zero_state {
    uint8_t *buf;
    uint64_t piece;  /* the buffer's bytes (bounce_get) */
    uint64_t pos, end;
    unsigned flags;
};

static void zero_next(struct vdisk_req *req, struct zero_state *z);

static void zero_done(struct vdisk_req *child, int ret)
{
    struct vdisk_req *req = child->parent;
    struct zero_state *z = child->done_arg;
    req_take_error(req, child);
    req_free(child);
    if (ret < 0 || z->pos >= z->end) {
        bounce_put(req->dev->priv, z->buf, z->piece);
        free(z);
        req_complete(req, ret);
        return;
    }
    zero_next(req, z);
}

static void zero_next(struct vdisk_req *req, struct zero_state *z)
{
    struct crypt *c = req->dev->priv;
    uint64_t n = z->end - z->pos < ZERO_PIECE ? z->end - z->pos : ZERO_PIECE;
    memset(z->buf, 0, n);
    int r = vcrypt_encrypt(c->cipher, iv_sector(req, z->pos), z->buf, n);
    struct iovec v = {z->buf, n};
    struct vdisk_req *ch = r < 0 ? NULL
                                 : req_new_child(req, c->file, VDISK_OP_WRITE, c->base + z->pos,
                                                 n, &v, 1, z->flags, zero_done, z);
    if (!ch) {
        bounce_put(c, z->buf, z->piece);
        free(z);
        if (r < 0)
            req_fail(req, r, "%s", vdisk_get_error());
        else
            req_fail(req, -ENOMEM, "out of memory");
        return;
    }
    z->pos += n;
    req_submit(ch);
}

static void crypt_submit(struct vdisk_req *req)
{
    struct crypt *c = req->dev->priv;
    if (!c->cipher && req->op != VDISK_OP_FLUSH) {
        req_fail(req, -ENOKEY, "the image was opened without its key (no-key=on): its data "
                 "cannot be read or written");
        return;
    }
    switch (req->op) {
    case VDISK_OP_READ: {
        struct vdisk_req *ch = req_new_child(req, c->file, VDISK_OP_READ, c->base + req->offset,
                                             req->length, req->iov, req->iovcnt, 0, read_done,
                                             NULL);
        if (!ch) {
            req_fail(req, -ENOMEM, "out of memory");
            return;
        }
        req_submit(ch);
        return;
    }
    case VDISK_OP_WRITE: {
        uint8_t *buf = bounce_get(c, req->length);
        if (!buf) {
            req_fail(req, -ENOMEM, "out of memory for a %" PRIu64 "-byte write", req->length);
            return;
        }
        iov_to_buf(req->iov, req->iovcnt, 0, buf, req->length);
        int r = vcrypt_encrypt(c->cipher, iv_sector(req, req->offset), buf, req->length);
        if (r < 0) {
            bounce_put(c, buf, req->length);
            req_fail(req, r, "%s", vdisk_get_error());
            return;
        }
        struct iovec v = {buf, req->length};
        struct vdisk_req *ch = req_new_child(req, c->file, VDISK_OP_WRITE, c->base + req->offset,
                                             req->length, &v, 1, req->flags & VDISK_REQ_FUA,
                                             write_done, buf);
        if (!ch) {
            bounce_put(c, buf, req->length);
            req_fail(req, -ENOMEM, "out of memory");
            return;
        }
        req_submit(ch);
        return;
    }
    case VDISK_OP_WRITE_ZEROES: {
        if (req->flags & VDISK_REQ_NO_FALLBACK) {
            req_fail(req, -ENOTSUP, "an encrypted image writes zeroes as data");
            return;
        }
        struct zero_state *z = calloc(1, sizeof *z);
        uint64_t piece = req->length < ZERO_PIECE ? req->length : ZERO_PIECE;
        if (!piece)
            piece = c->sector;
        uint8_t *buf = z ? bounce_get(c, piece) : NULL;
        if (!buf) {
            free(z);
            req_fail(req, -ENOMEM, "out of memory");
            return;
        }
        z->buf = buf;
        z->piece = piece;
        z->pos = req->offset;
        z->end = req->offset + req->length;
        z->flags = req->flags & VDISK_REQ_FUA;
        if (z->pos >= z->end) {
            bounce_put(c, buf, piece);
            free(z);
            req_complete(req, 0);
            return;
        }
        zero_next(req, z);
        return;
    }
    case VDISK_OP_DISCARD:
        req_send_child(req, c->file, VDISK_OP_DISCARD, c->base + req->offset, req->length, NULL,
                       0, req->flags & VDISK_REQ_MAY_UNMAP);
        return;
    case VDISK_OP_FLUSH:
        req_send_child(req, c->file, VDISK_OP_FLUSH, 0, 0, NULL, 0, 0);
        return;
    }
    req_fail(req, -EINVAL, "unknown operation");
}

static int crypt_block_status(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                              struct vdisk_extent *ext)
{
    (void)dev;
    /* As QEMU's luks driver (no block status of its own): all data, and
     * where it lies in the file is not the data. */
    ext->offset = off;
    ext->length = len;
    ext->flags = VDISK_EXT_DATA | VDISK_EXT_ALLOCATED;
    ext->depth = 0;
    return 0;
}

static int64_t crypt_allocated_size(struct vdisk_dev *dev)
{
    struct crypt *c = dev->priv;
    return dev_allocated_size(c->file);
}

static void crypt_close(struct vdisk_dev *dev)
{
    struct crypt *c = dev->priv;
    if (!c)
        return;
    vcrypt_free(c->cipher);
    dev_unref(c->file);
    if (c->h2) {
        memset(c->h2, 0, sizeof *c->h2);
        free(c->h2);
    }
    for (unsigned i = 0; i < c->nbounce; i++)
        free(c->bounce[i]);
    pthread_mutex_destroy(&c->bounce_lock);
    memset(c, 0, sizeof *c); /* (the master key too) */
    free(c);
}

static const struct vdisk_driver luks_crypt_driver = {
    .name = "luks-crypt",
    .submit = crypt_submit,
    .block_status = crypt_block_status,
    .allocated_size = crypt_allocated_size,
    .close = crypt_close,
};

int luks_crypt_open(struct vdisk_dev **devp, struct vdisk_dev *file, struct vcrypt *cipher,
                    uint64_t base, uint64_t size, bool read_only)
{
    struct crypt *c = calloc(1, sizeof *c);
    struct vdisk_open_params p = file->params;
    p.read_only = read_only;
    struct vdisk_dev *dev = c ? dev_alloc(&luks_crypt_driver, file->filename, &p) : NULL;
    if (!dev) {
        free(c);
        return err_set(-ENOMEM, "out of memory");
    }
    dev->engine = file->engine;
    pthread_mutex_init(&c->bounce_lock, NULL);
    c->file = file;
    c->cipher = cipher;
    c->base = base;
    c->sector = VCRYPT_SECTOR;
    dev->priv = c;
    dev->size = size;
    dev->block_size = 512;
    dev->align = VCRYPT_SECTOR;
    dev->caps = file->caps & (VDISK_CAN_WRITE | VDISK_CAN_FLUSH | VDISK_CAN_DISCARD);
    if (read_only)
        dev->caps &= ~VDISK_CAN_WRITE;
    dev_ref(file);
    *devp = dev;
    return 0;
}

/* ---- The luks format ------------------------------------------------------ */

/* LUKS1 as QEMU has it, and LUKS2 headers made by cryptsetup (luks2.c):
 * the same layer over the data segment, with its sector size (up to 4096:
 * the device's block size and request alignment, so that the core turns
 * smaller requests into read-modify-write of whole sectors) and its IV
 * tweak.  A LUKS2 header is never written. */

static int luks_probe(const uint8_t *buf, size_t len)
{
    /* LUKS1, as QEMU 7.2, and LUKS2 (luks2.c), which QEMU refuses. */
    if (len < 8 || memcmp(buf, LUKS_MAGIC, 6) != 0)
        return 0;
    uint16_t v = be16_load(buf + 6);
    return v == 1 || v == 2 ? 100 : 0;
}

/* Whether the header at the start of FILE (its first bytes B) is LUKS2's:
 * version 2, or no LUKS magic at all but a LUKS2 secondary header at one
 * of the offsets it may have (a damaged primary; luks2.c uses the
 * secondary). */
static bool is_luks2(struct vdisk_dev *file, const uint8_t *b)
{
    if (memcmp(b, LUKS_MAGIC, 6) == 0)
        return be16_load(b + 6) == 2;
    for (uint64_t off = LUKS2_MIN_HDR; off <= LUKS2_MAX_HDR; off *= 2) {
        uint8_t m[8];
        if (off + sizeof m > dev_size(file) || dev_pread(file, m, sizeof m, off) < 0)
            break;
        if (memcmp(m, LUKS2_MAGIC2, 6) == 0 && be16_load(m + 6) == 2)
            return true;
    }
    return false;
}

/* The LUKS2 part of luks_open: header, keyslot, the segment's cipher. */
static int luks2_open(struct vdisk_dev *dev, struct vdisk_dev *file, struct crypt *c,
                      uint64_t fsize, const char *pass, bool no_key)
{
    c->h2 = calloc(1, sizeof *c->h2);
    if (!c->h2)
        return err_set(-ENOMEM, "out of memory");
    struct luks2_header *h = c->h2;
    int r = luks2_load(file, fsize, dev->filename, h);
    if (r == 0 && !pass && !no_key)
        r = err_set(-EINVAL, "Parameter 'key-secret' is required for cipher");
    if (r == 0 && pass && !no_key) {
        uint8_t mk[VCRYPT_MAX_KEY];
        r = luks2_unlock(file, h, pass, strlen(pass), mk);
        if (r >= 0)
            r = vcrypt_new(&c->cipher, h->seg.alg, h->seg.mode, h->seg.ivgen, h->seg.ivhash, mk,
                           h->seg.key_bytes);
        memset(mk, 0, sizeof mk);
        if (r >= 0)
            r = vcrypt_set_sector_size(c->cipher, h->sector_size);
    }
    if (r < 0)
        return r;
    c->base = h->seg_offset;
    c->sector = h->sector_size;
    c->iv_base = h->iv_tweak;
    luks2_fill_info(h, &c->info);
    dev->size = luks2_data_size(h, fsize);
    dev->block_size = h->sector_size;
    dev->align = h->sector_size;
    return 0;
}

static int luks_open(struct vdisk_dev *dev, struct vdisk_dev *file, struct opt_set *os)
{
    const char *pass;
    int r = luks_take_secret(os, "", &pass);
    bool no_key = false;
    const char *v = opt_take(os, "no-key");
    if (v && opt_bool("no-key", v, &no_key) < 0)
        return -EINVAL;
    if (r < 0 && !no_key) /* (without the key, a missing secret does not matter) */
        return r;
    if (r < 0)
        pass = NULL;
    uint64_t fsize = file->file_length ? file->file_length : dev_size(file);
    uint8_t buf[LUKS_HEADER_BYTES] = {0};
    if (fsize < LUKS_HEADER_BYTES)
        return err_set(-EINVAL, "%s: the file (%" PRIu64 " bytes) is too short for a LUKS "
                       "header", dev->filename, fsize);
    r = dev_pread(file, buf, sizeof buf, 0);
    if (r < 0)
        return r;
    struct crypt *c = calloc(1, sizeof *c);
    if (!c)
        return err_set(-ENOMEM, "out of memory");
    pthread_mutex_init(&c->bounce_lock, NULL);
    if (is_luks2(file, buf)) {
        r = luks2_open(dev, file, c, dev_size(file), pass, no_key);
        if (r < 0) {
            vcrypt_free(c->cipher);
            free(c->h2);
            pthread_mutex_destroy(&c->bounce_lock);
            memset(c, 0, sizeof *c);
            free(c);
            return r;
        }
        c->file = file;
        c->is_format = true;
        dev->priv = c;
        dev->caps = file->caps & (VDISK_CAN_WRITE | VDISK_CAN_FLUSH | VDISK_CAN_DISCARD);
        return 0;
    }
    c->sector = VCRYPT_SECTOR;
    r = luks_parse(buf, fsize, dev->filename, &c->hdr);
    uint64_t payload = luks_header_area(&c->hdr);
    if (r == 0 && payload > dev_size(file))
        r = err_set(-EINVAL, "%s: LUKS payload offset %" PRIu64 " lies past the end of the "
                    "file (%" PRIu64 " bytes)", dev->filename, payload, dev_size(file));
    if (r == 0 && !pass && !no_key)
        r = err_set(-EINVAL, "Parameter 'key-secret' is required for cipher");
    uint8_t mk[VCRYPT_MAX_KEY];
    if (r == 0 && pass && !no_key) {
        r = luks_unlock(file, 0, &c->hdr, pass, strlen(pass), mk);
        if (r >= 0)
            r = vcrypt_new(&c->cipher, c->hdr.alg, c->hdr.mode, c->hdr.ivgen, c->hdr.ivhash, mk,
                           c->hdr.key_bytes);
        memcpy(c->mk, mk, sizeof mk);
        memset(mk, 0, sizeof mk);
    }
    if (r < 0) {
        pthread_mutex_destroy(&c->bounce_lock);
        memset(c, 0, sizeof *c); /* (the master key too) */
        free(c);
        return r;
    }
    c->file = file;
    c->base = payload;
    c->is_format = true;
    luks_fill_info(&c->hdr, &c->info);
    dev->priv = c;
    dev->size = dev_size(file) - payload;
    dev->block_size = 512;
    dev->align = VCRYPT_SECTOR;
    dev->caps = file->caps & (VDISK_CAN_WRITE | VDISK_CAN_FLUSH | VDISK_CAN_DISCARD);
    return 0;
}

static void luks_get_info(struct vdisk_dev *dev, struct vdisk_info *in)
{
    struct crypt *c = dev->priv;
    in->encrypt = &c->info;
}

/* ---- Amend (key slots) ---------------------------------------------------- */

struct dev_writer {
    struct vdisk_dev *file;
    uint64_t base;
};

static int dev_write_at(void *opaque, const void *buf, size_t len, uint64_t off)
{
    struct dev_writer *w = opaque;
    return dev_pwrite(w->file, buf, len, w->base + off);
}

static const char *const amend_keys[] = {"state", "keyslot", "old-secret", "new-secret",
                                         "iter-time"};

int luks_amend_at(struct luks_header *hdr, const uint8_t *mk, struct opt_set *os,
                  const char *prefix, struct vdisk_dev *file, uint64_t base)
{
    struct luks_header h = *hdr;
    struct dev_writer w = {file, base};
    int r = luks_amend(&h, mk, os, prefix, file, base, dev_write_at, &w);
    if (r == 0) {
        /* The key material is down; then the header that points to it. */
        uint8_t hb[LUKS_HEADER_BYTES];
        r = dev_flush(file);
        luks_serialize(&h, hb);
        if (r == 0)
            r = dev_pwrite(file, hb, sizeof hb, base);
        if (r == 0)
            r = dev_flush(file);
    }
    if (r == 0)
        *hdr = h;
    return r;
}

bool luks_amend_wanted(struct opt_set *os, const char *prefix)
{
    bool any = false;
    for (size_t i = 0; i < sizeof amend_keys / sizeof amend_keys[0]; i++) {
        char k[64];
        snprintf(k, sizeof k, "%s%s", prefix, amend_keys[i]);
        if (vdisk_options_get(os->opts, k))
            any = true;
    }
    return any;
}

static int luks_amend_dev(struct vdisk_dev *dev, struct opt_set *os)
{
    struct crypt *c = dev->priv;
    /* Every option known before anything is written. */
    for (size_t i = 0; i < sizeof amend_keys / sizeof amend_keys[0]; i++)
        opt_take(os, amend_keys[i]);
    int r = opt_check_all_taken(os, "luks");
    if (r < 0)
        return r;
    if (c->h2)
        return err_set(-ENOTSUP, "%s: amend of LUKS2 images is not supported (cryptsetup "
                       "luksAddKey and luksKillSlot change their keyslots)", dev->filename);
    if (!c->cipher)
        return err_set(-ENOKEY, "%s: the image was opened without its key", dev->filename);
    r = luks_amend_at(&c->hdr, c->mk, os, "", c->file, 0);
    if (r == 0)
        luks_fill_info(&c->hdr, &c->info);
    return r;
}

/* ---- Create --------------------------------------------------------------- */

struct fd_writer {
    int fd;
    const char *filename;
};

static int fd_write(void *opaque, const void *buf, size_t len, uint64_t off)
{
    struct fd_writer *w = opaque;
    return file_write_all(w->fd, buf, len, off, w->filename);
}

static int luks_create(const char *filename, uint64_t size, struct opt_set *os)
{
    struct luks_create_opts o;
    const char *pass;
    int r = luks_take_create_opts(os, "", &o);
    if (r == 0)
        r = luks_take_secret(os, "", &pass);
    if (r < 0)
        return r;
    const char *prealloc = opt_take(os, "preallocation");
    if (prealloc && strcmp(prealloc, "off") && strcmp(prealloc, "falloc") &&
        strcmp(prealloc, "full") && strcmp(prealloc, "metadata"))
        return err_set(-EINVAL, "Invalid preallocation mode: '%s'", prealloc);
    if (!pass)
        return err_set(-EINVAL, "Parameter 'key-secret' is required for cipher");
    r = opt_check_all_taken(os, "luks");
    if (r < 0)
        return r;
    if (size % 512)
        size = align_up(size, 512);
    struct file_lock *lock;
    int fd = file_create_locked(filename, &lock);
    if (fd < 0)
        return fd;
    struct fd_writer w = {fd, filename};
    struct luks_header h;
    uint8_t mk[VCRYPT_MAX_KEY];
    r = luks_create_header(&o, pass, strlen(pass), &h, mk, fd_write, &w);
    memset(mk, 0, sizeof mk);
    uint64_t payload = luks_header_area(&h);
    if (r == 0 && size > INT64_MAX - payload)
        r = err_set(-EFBIG, "%s: size %" PRIu64 " is too large", filename, size);
    if (r == 0 && ftruncate(fd, (off_t)(payload + size)) < 0)
        r = err_set(-errno, "%s: could not resize to %" PRIu64 " bytes: %s", filename,
                    payload + size, strerror(errno));
    if (r == 0 && prealloc && !strcmp(prealloc, "falloc") && size) {
        int e = posix_fallocate(fd, (off_t)payload, (off_t)size);
        if (e)
            r = err_set(-e, "%s: could not preallocate %" PRIu64 " bytes: %s", filename, size,
                        strerror(e));
    }
    if (r == 0) {
        uint8_t hb[LUKS_HEADER_BYTES];
        luks_serialize(&h, hb);
        r = file_write_all(fd, hb, sizeof hb, 0, filename);
    }
    return file_create_done(fd, lock, r, filename);
}

static const struct create_opt luks_create_opts[] = {
    {"cipher-alg", "str", "Name of encryption cipher algorithm"},
    {"cipher-mode", "str", "Name of encryption cipher mode"},
    {"hash-alg", "str", "Name of encryption hash algorithm"},
    {"iter-time", "num", "Time to spend in PBKDF in milliseconds"},
    {"ivgen-alg", "str", "Name of IV generator algorithm"},
    {"ivgen-hash-alg", "str", "Name of IV generator hash algorithm"},
    {"key-secret", "str", "ID of the secret that provides the keyslot passphrase"},
    {"size", "size", "Virtual disk size"},
    {NULL, NULL, NULL},
};

const struct vdisk_driver vdisk_driver_luks = {
    .name = "luks",
    .probe = luks_probe,
    .open = luks_open,
    .submit = crypt_submit,
    .block_status = crypt_block_status,
    .allocated_size = crypt_allocated_size,
    .get_info = luks_get_info,
    .close = crypt_close,
    .amend = luks_amend_dev,
    .create = luks_create,
    .create_opts = luks_create_opts,
};
