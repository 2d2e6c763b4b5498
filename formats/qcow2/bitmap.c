/* SPDX-License-Identifier: MIT */
/*
 * formats/qcow2/bitmap.c: persistent dirty bitmaps (the bitmaps header
 * extension, docs/interop/qcow2.txt "Bitmaps").
 *
 * The directory is read at every open (info shows the bitmaps, check
 * counts their clusters).  A read-write open loads the enabled bitmaps
 * into memory (sparse pages: see "Bits in memory") and, before
 * anything is written, switches the header to a new directory that flags
 * them in use: after a crash QEMU and vdisk see them as inconsistent,
 * never as silently wrong.  Every guest write, write zeroes, discard and
 * compressed write sets their bits (qcow2_bitmaps_mark, lock-free).  At
 * close (and after every bitmap operation) they are stored back
 * (bitmaps_commit): the changed bitmaps' data and tables go to new
 * clusters, then a new directory; the refcounts and all of it reach the
 * disk before one header write switches to the new directory (with the
 * autoclear bit), and only then are the old directory and tables freed.
 * So the image on disk is the old state or the new one, and qemu-img check
 * finds no leak and no clusters in use twice.
 *
 * Bitmaps that are disabled are not loaded unless an operation needs
 * their bits; bitmaps in use on disk at open (a crash, or another
 * program's) stay as they are: removable, not usable.  The open option
 * drop-bitmaps=on removes every bitmap (qcow2_drop_bitmaps).
 *
 * Everything is untrusted: the directory is bounded by QEMU's limits and
 * must lie inside the file, every entry inside the directory, every bitmap
 * table inside the file.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/bitmap.h>
#include <vdisk/info.h>

#include "driver.h"
#include "qcow2.h"

#define DIR_ENTRY_HEADER 24

/* The memory the pages that loading the bitmaps of one image materializes
 * may take (bytes), and what the loaded bitmaps could take in all if every
 * bit got set (a bound on what writes can make them grow to). */
#define QCOW2_BITMAP_MEMORY (256ull << 20)
#define QCOW2_BITMAP_SPAN   (4ull << 30)

static void pages_free(struct qcow2 *s, struct qcow2_bitmap *bm);

void qcow2_free_bitmaps(struct qcow2 *s)
{
    for (uint32_t i = 0; s->bitmaps && i < s->nb_bitmaps; i++) {
        free(s->bitmaps[i].name);
        pages_free(s, &s->bitmaps[i]);
    }
    free(s->bitmaps);
    free(s->bitmap_info);
    free(s->bm_old);
    s->bm_old = NULL;
    s->nbm_old = 0;
    s->bitmaps = NULL;
    s->bitmap_info = NULL;
    s->bm_live = false;
}

static int bad_entry(struct qcow2 *s, uint32_t i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad_entry(struct qcow2 *s, uint32_t i, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set(-EINVAL, "%s: bitmap directory entry %" PRIu32 " (at offset 0x%" PRIx64
                   "): %s", s->dev->filename, i, s->bitmap_dir_offset, msg);
}

/* Checks entry I, whose fixed part is at E; LEFT bytes of the directory
 * remain from E.  Stores its length (padded) in *len. */
static int parse_entry(struct qcow2 *s, uint32_t i, const uint8_t *e, uint64_t left,
                       uint64_t file_size, uint64_t *len)
{
    struct qcow2_bitmap *bm = &s->bitmaps[i];
    if (left < DIR_ENTRY_HEADER)
        return bad_entry(s, i, "the entry runs past the end of the directory (%" PRIu64
                         " bytes)", s->bitmap_dir_size);
    bm->table_offset = be64_load(e);
    bm->table_size = be32_load(e + 8);
    bm->flags = be32_load(e + 12);
    uint8_t type = e[16];
    bm->granularity_bits = e[17];
    uint16_t name_size = be16_load(e + 18);
    uint32_t extra = be32_load(e + 20);
    bm->extra = extra;
    uint64_t n = DIR_ENTRY_HEADER + (uint64_t)extra + name_size;
    n = (n + 7) & ~7ull;
    if (n > left)
        return bad_entry(s, i, "the entry (%" PRIu64 " bytes with %" PRIu32 " bytes of extra "
                         "data) runs past the end of the directory (%" PRIu64 " bytes)", n,
                         extra, s->bitmap_dir_size);
    if (type != QCOW2_BITMAP_TYPE_DIRTY)
        return bad_entry(s, i, "unknown bitmap type %u (1, dirty tracking, expected)", type);
    if (bm->flags & ~QCOW2_BITMAP_FLAGS_KNOWN)
        return bad_entry(s, i, "reserved flags set (0x%08" PRIx32 ")", bm->flags);
    if (bm->granularity_bits < QCOW2_BITMAP_MIN_GRAN ||
        bm->granularity_bits > QCOW2_BITMAP_MAX_GRAN)
        return bad_entry(s, i, "granularity bits %u out of range (%d to %d)",
                         bm->granularity_bits, QCOW2_BITMAP_MIN_GRAN, QCOW2_BITMAP_MAX_GRAN);
    if (name_size == 0 || name_size > QCOW2_MAX_BITMAP_NAME)
        return bad_entry(s, i, "the name is %u bytes long (1 to %d)", name_size,
                         QCOW2_MAX_BITMAP_NAME);
    if (bm->table_size == 0 || bm->table_size > QCOW2_MAX_BITMAP_TABLE)
        return bad_entry(s, i, "the bitmap table has %" PRIu32 " entries (1 to %u)",
                         bm->table_size, QCOW2_MAX_BITMAP_TABLE);
    uint64_t table_bytes = (uint64_t)bm->table_size * 8;
    if (bm->table_offset == 0 || bm->table_offset % s->cluster_size ||
        !range_inside(bm->table_offset, table_bytes, file_size))
        return bad_entry(s, i, "the bitmap table at offset 0x%" PRIx64 " (%" PRIu64 " bytes) "
                         "is not cluster aligned or lies beyond the end of the file (%" PRIu64
                         " bytes)", bm->table_offset, table_bytes, file_size);
    /* The table must cover the virtual disk, within QEMU's bound. */
    uint64_t data_bytes = (uint64_t)bm->table_size << s->cluster_bits;
    uint64_t bits = (s->size >> bm->granularity_bits) +
                    ((s->size & ((1ull << bm->granularity_bits) - 1)) != 0);
    if (data_bytes > QCOW2_MAX_BITMAP_BYTES || (bits + 7) / 8 > data_bytes)
        return bad_entry(s, i, "a bitmap table of %" PRIu32 " entries does not fit a disk of %"
                         PRIu64 " bytes at granularity %" PRIu64, bm->table_size, s->size,
                         (uint64_t)1 << bm->granularity_bits);
    const char *name = (const char *)e + DIR_ENTRY_HEADER + extra;
    bm->name = strndup(name, name_size);
    if (!bm->name)
        return err_set(-ENOMEM, "out of memory");
    if (strlen(bm->name) != name_size)
        return bad_entry(s, i, "the name contains a NUL byte");
    for (uint32_t k = 0; k < i; k++)
        if (strcmp(s->bitmaps[k].name, bm->name) == 0)
            return bad_entry(s, i, "a second bitmap named '%s'", bm->name);
    *len = n;
    return 0;
}

/* s->bitmap_info from s->bitmaps (after every change). */
static int rebuild_info(struct qcow2 *s)
{
    struct vdisk_bitmap_info *info = calloc(s->nb_bitmaps ? s->nb_bitmaps : 1, sizeof *info);
    if (!info)
        return err_set(-ENOMEM, "out of memory");
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        const struct qcow2_bitmap *bm = &s->bitmaps[i];
        info[i].name = bm->name;
        info[i].granularity = 1ull << bm->granularity_bits;
        info[i].flags = (bm->live || bm->inconsistent ? VDISK_BITMAP_IN_USE : 0) |
                        (bm->flags & QCOW2_BITMAP_AUTO ? VDISK_BITMAP_AUTO : 0);
    }
    free(s->bitmap_info);
    s->bitmap_info = info;
    return 0;
}

int qcow2_load_bitmaps(struct qcow2 *s, uint64_t file_size)
{
    if (!s->nb_bitmaps)
        return 0;
    if (!range_inside(s->bitmap_dir_offset, s->bitmap_dir_size, file_size))
        return err_set(-EINVAL, "%s: the bitmap directory at offset 0x%" PRIx64 " (%" PRIu64
                       " bytes) lies beyond the end of the file (%" PRIu64 " bytes)",
                       s->dev->filename, s->bitmap_dir_offset, s->bitmap_dir_size, file_size);
    uint8_t *dir = malloc(s->bitmap_dir_size);
    s->bitmaps = calloc(s->nb_bitmaps, sizeof *s->bitmaps);
    s->bitmap_info = calloc(s->nb_bitmaps, sizeof *s->bitmap_info);
    int r = 0;
    if (!dir || !s->bitmaps || !s->bitmap_info)
        r = err_set(-ENOMEM, "out of memory for a bitmap directory of %" PRIu64 " bytes",
                    s->bitmap_dir_size);
    if (r == 0)
        r = dev_pread(s->file, dir, s->bitmap_dir_size, s->bitmap_dir_offset);
    uint64_t pos = 0;
    for (uint32_t i = 0; r == 0 && i < s->nb_bitmaps; i++) {
        uint64_t len = 0;
        r = parse_entry(s, i, dir + pos, s->bitmap_dir_size - pos, file_size, &len);
        pos += len;
    }
    if (r == 0 && pos != s->bitmap_dir_size)
        r = err_set(-EINVAL, "%s: the bitmap directory is %" PRIu64 " bytes long, but its %"
                    PRIu32 " entries take %" PRIu64, s->dev->filename, s->bitmap_dir_size,
                    s->nb_bitmaps, pos);
    for (uint32_t i = 0; r == 0 && i < s->nb_bitmaps; i++) {
        struct qcow2_bitmap *bm = &s->bitmaps[i];
        bm->inconsistent = (bm->flags & QCOW2_BITMAP_IN_USE) != 0;
        bm->flags &= ~QCOW2_BITMAP_IN_USE;
    }
    if (r == 0)
        r = rebuild_info(s);
    free(dir);
    return r;
}

/* Reads the bitmap table of BM (host byte order) into *out. */
static int read_bitmap_table(struct qcow2 *s, const struct qcow2_bitmap *bm, uint64_t **out)
{
    uint64_t *t = malloc((size_t)bm->table_size * 8);
    if (!t)
        return err_set(-ENOMEM, "out of memory for a bitmap table of %" PRIu32 " entries",
                       bm->table_size);
    int r = dev_pread(s->file, t, (size_t)bm->table_size * 8, bm->table_offset);
    if (r < 0) {
        free(t);
        return r;
    }
    for (uint32_t j = 0; j < bm->table_size; j++)
        t[j] = be64_load(&t[j]);
    *out = t;
    return 0;
}

int qcow2_bitmap_clusters(struct qcow2 *s, void (*mark)(void *, uint64_t, uint64_t),
                          void (*bad)(void *, const char *), void *opaque)
{
    if (!s->nb_bitmaps)
        return 0;
    mark(opaque, s->bitmap_dir_offset, s->bitmap_dir_size);
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        const struct qcow2_bitmap *bm = &s->bitmaps[i];
        mark(opaque, bm->table_offset, (uint64_t)bm->table_size * 8);
        uint64_t *t = NULL;
        int r = read_bitmap_table(s, bm, &t);
        if (r < 0)
            return r;
        for (uint32_t j = 0; j < bm->table_size; j++) {
            uint64_t e = t[j], off = e & QCOW2_BTE_OFFSET_MASK;
            char msg[256];
            if ((e & QCOW2_BTE_RESERVED) || (off && (e & 1)) || off % s->cluster_size) {
                snprintf(msg, sizeof msg, "ERROR bitmap '%s' table entry %" PRIu32 " (0x%016"
                         PRIx64 ") is invalid; bitmap table corrupted", bm->name, j, e);
                bad(opaque, msg);
                continue;
            }
            if (off)
                mark(opaque, off, s->cluster_size);
        }
        free(t);
    }
    return 0;
}

int qcow2_drop_bitmaps(struct qcow2 *s)
{
    if (!s->nb_bitmaps)
        return 0;
    /* The header without the extension and its autoclear bit first: after a
     * crash past this point the bitmaps' clusters are leaks, never in use
     * twice.  Then the leaks are repaired as check -r leaks does: only
     * clusters that nothing references any more are freed, whatever a
     * hostile bitmap table points to. */
    qcow2_free_bitmaps(s);
    s->nb_bitmaps = 0;
    s->bitmap_dir_offset = s->bitmap_dir_size = 0;
    s->autoclear &= ~QCOW2_AUTOCLEAR_BITMAPS;
    int r = qcow2_write_header(s);
    if (r == 0)
        r = qcow2_repair_leaks(s);
    return r;
}

/* ---- Bits in memory ------------------------------------------------------- */

static uint64_t bm_nbits(const struct qcow2 *s, uint8_t gbits)
{
    uint64_t g = 1ull << gbits;
    return s->size / g + (s->size % g != 0);
}

static uint64_t bm_nbytes(const struct qcow2 *s, uint8_t gbits)
{
    return (bm_nbits(s, gbits) + 7) / 8;
}

/*
 * A bitmap's bits lie in pages of BM_PAGE bytes (bm->pages, a pointer
 * each): NULL is a page of zeroes, bm_ones a page of ones shared by all
 * (never written), any other a page of the bitmap's own.  Memory goes to
 * the parts that are set: a 2 TiB disk at 512-byte granularity (512 MiB
 * of bits) takes 1 MiB of pointers until it is written, and a table entry
 * "all ones" takes nothing.  Guest writes set bits without the lock (a
 * page of their own appears with one compare-and-swap); everything else
 * changes pages under the lock, in a quiesce section or before writes
 * start.  s->bm_resident counts the pointers and the pages of their own.
 */
#define BM_PAGE 4096u
#define BM_PAGE_BITS (BM_PAGE * 8ull)

static uint8_t bm_ones[BM_PAGE];
static pthread_once_t bm_ones_once = PTHREAD_ONCE_INIT;

static void bm_ones_fill(void)
{
    memset(bm_ones, 0xff, sizeof bm_ones);
}

static uint64_t bm_npages(uint64_t nbytes)
{
    return (nbytes + BM_PAGE - 1) / BM_PAGE;
}

static void resident_add(struct qcow2 *s, int64_t n)
{
    __atomic_fetch_add(&s->bm_resident, (uint64_t)n, __ATOMIC_RELAXED);
}

/* Page P of BM becomes a page of zeroes (under the lock). */
static void page_drop(struct qcow2 *s, struct qcow2_bitmap *bm, uint64_t p)
{
    if (bm->pages[p] && bm->pages[p] != bm_ones) {
        free(bm->pages[p]);
        resident_add(s, -(int64_t)BM_PAGE);
    }
    bm->pages[p] = NULL;
}

static void pages_free(struct qcow2 *s, struct qcow2_bitmap *bm)
{
    if (!bm->pages)
        return;
    uint64_t n = bm_npages(bm->nbytes);
    for (uint64_t p = 0; p < n; p++)
        page_drop(s, bm, p);
    free(bm->pages);
    bm->pages = NULL;
    resident_add(s, -(int64_t)(n * sizeof(uint8_t *)));
}

/* Fails when LOADING more bytes of pages (or pointers) would take the
 * image's bitmaps past QCOW2_BITMAP_MEMORY. */
static int resident_check(struct qcow2 *s, uint64_t more)
{
    uint64_t have = __atomic_load_n(&s->bm_resident, __ATOMIC_RELAXED);
    if (more > QCOW2_BITMAP_MEMORY || have + more > QCOW2_BITMAP_MEMORY)
        return err_set(-ENOMEM, "%s: loading the persistent dirty bitmaps needs %" PRIu64
                       " bytes of memory, more than vdisk's limit of %llu MiB per image (open "
                       "the image read-only, or remove bitmaps or disable them)",
                       s->dev->filename, have + more, QCOW2_BITMAP_MEMORY >> 20);
    return 0;
}

/* Fails when bitmaps of MORE bytes of bits, loaded beside those loaded
 * now, could take more than QCOW2_BITMAP_SPAN once every bit is set. */
static int span_check(struct qcow2 *s, uint64_t more)
{
    uint64_t have = 0;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++)
        if (s->bitmaps[i].pages)
            have += s->bitmaps[i].nbytes;
    if (more > QCOW2_BITMAP_SPAN || have + more > QCOW2_BITMAP_SPAN)
        return err_set(-ENOMEM, "%s: the persistent dirty bitmaps could need %" PRIu64 " bytes "
                       "of memory, more than vdisk's limit of %llu GiB per image (open the "
                       "image read-only, or remove bitmaps or disable them)", s->dev->filename,
                       have + more, QCOW2_BITMAP_SPAN >> 30);
    return 0;
}

/* Gives BM an empty page table for NBYTES bytes of bits. */
static int pages_new(struct qcow2 *s, struct qcow2_bitmap *bm, uint64_t nbytes)
{
    pthread_once(&bm_ones_once, bm_ones_fill);
    uint64_t n = bm_npages(nbytes);
    int r = resident_check(s, n * sizeof(uint8_t *));
    if (r < 0)
        return r;
    bm->pages = calloc(n ? n : 1, sizeof(uint8_t *));
    if (!bm->pages)
        return err_set(-ENOMEM, "out of memory for bitmap '%s' (%" PRIu64 " pages)", bm->name, n);
    bm->nbytes = nbytes;
    resident_add(s, (int64_t)(n * sizeof(uint8_t *)));
    return 0;
}

/* Page P of BM as a page of its own, to write, in *OUT (under the lock,
 * no guest write setting bits in it meanwhile). */
static int page_own(struct qcow2 *s, struct qcow2_bitmap *bm, uint64_t p, uint8_t **out)
{
    uint8_t *pg = bm->pages[p];
    *out = pg;
    if (pg && pg != bm_ones)
        return 0;
    int r = resident_check(s, BM_PAGE);
    if (r < 0)
        return r;
    uint8_t *n = pg ? malloc(BM_PAGE) : calloc(1, BM_PAGE);
    if (!n)
        return err_set(-ENOMEM, "out of memory for bitmap '%s'", bm->name);
    if (pg)
        memset(n, 0xff, BM_PAGE);
    bm->pages[p] = *out = n;
    resident_add(s, BM_PAGE);
    return 0;
}

/* Copies N bytes of bits from SRC to byte OFF of BM (under the lock);
 * pages that stay zero are not made. */
static int bits_write(struct qcow2 *s, struct qcow2_bitmap *bm, uint64_t off, const uint8_t *src,
                      uint64_t n)
{
    while (n) {
        uint64_t p = off / BM_PAGE, in = off % BM_PAGE;
        uint64_t k = BM_PAGE - in < n ? BM_PAGE - in : n;
        bool zero = true;
        for (uint64_t i = 0; i < k && zero; i++)
            zero = src[i] == 0;
        if (!zero || bm->pages[p]) {
            uint8_t *pg;
            int r = page_own(s, bm, p, &pg);
            if (r < 0)
                return r;
            memcpy(pg + in, src, k);
        }
        off += k;
        src += k;
        n -= k;
    }
    return 0;
}

/* Sets N bytes of bits of BM from byte OFF to ones (under the lock):
 * whole pages become the shared page of ones. */
static int bits_ones(struct qcow2 *s, struct qcow2_bitmap *bm, uint64_t off, uint64_t n)
{
    while (n) {
        uint64_t p = off / BM_PAGE, in = off % BM_PAGE;
        uint64_t k = BM_PAGE - in < n ? BM_PAGE - in : n;
        if (k == BM_PAGE) {
            page_drop(s, bm, p);
            bm->pages[p] = bm_ones;
        } else {
            uint8_t *pg;
            int r = page_own(s, bm, p, &pg);
            if (r < 0)
                return r;
            memset(pg + in, 0xff, k);
        }
        off += k;
        n -= k;
    }
    return 0;
}

/* Copies N bytes of bits of BM from byte OFF to DST; *ZERO: all clear. */
static void bits_read(const struct qcow2_bitmap *bm, uint64_t off, uint8_t *dst, uint64_t n,
                      bool *zero)
{
    *zero = true;
    while (n) {
        uint64_t p = off / BM_PAGE, in = off % BM_PAGE;
        uint64_t k = BM_PAGE - in < n ? BM_PAGE - in : n;
        const uint8_t *pg = __atomic_load_n(&bm->pages[p], __ATOMIC_ACQUIRE);
        if (!pg) {
            memset(dst, 0, k);
        } else {
            for (uint64_t i = 0; i < k; i++) {
                dst[i] = __atomic_load_n(&pg[in + i], __ATOMIC_RELAXED);
                *zero &= dst[i] == 0;
            }
        }
        off += k;
        dst += k;
        n -= k;
    }
}

/* The bits past the last one of the disk cleared (under the lock). */
static int mask_tail(struct qcow2 *s, struct qcow2_bitmap *bm, uint64_t nbits)
{
    if (nbits % 8 == 0 || !bm->nbytes)
        return 0;
    uint64_t last = bm->nbytes - 1, p = last / BM_PAGE;
    if (!bm->pages[p])
        return 0;
    uint8_t *pg;
    int r = page_own(s, bm, p, &pg);
    if (r == 0)
        pg[last % BM_PAGE] &= (uint8_t)((1u << (nbits % 8)) - 1);
    return r;
}

static int bad_table(struct qcow2 *s, const struct qcow2_bitmap *bm, uint32_t j, uint64_t e)
{
    return err_set(-EINVAL, "%s: bitmap '%s': bitmap table entry %" PRIu32 " (0x%016" PRIx64
                   ") is invalid", s->dev->filename, bm->name, j, e);
}

/* A bitmap table entry that may be used: no reserved bits, an aligned
 * offset inside the file, or no offset. */
static bool entry_ok(struct qcow2 *s, uint64_t e, uint64_t file_size)
{
    uint64_t off = e & QCOW2_BTE_OFFSET_MASK;
    if ((e & QCOW2_BTE_RESERVED) || (off && (e & 1)) || off % s->cluster_size)
        return false;
    return !off || range_inside(off, s->cluster_size, file_size);
}

/* Reads BM's bits from the image into pages (memory checked). */
static int load_bits(struct qcow2 *s, struct qcow2_bitmap *bm)
{
    if (bm->pages)
        return 0;
    uint64_t nbytes = bm_nbytes(s, bm->granularity_bits);
    int r = span_check(s, nbytes);
    if (r == 0)
        r = pages_new(s, bm, nbytes);
    if (r < 0)
        return r;
    uint64_t *t = NULL;
    uint8_t *buf = malloc(s->cluster_size);
    if (!buf)
        r = err_set(-ENOMEM, "out of memory");
    if (r == 0 && bm->table_offset)
        r = read_bitmap_table(s, bm, &t);
    uint64_t fsize = qcow2_file_end(s);
    for (uint32_t j = 0; r == 0 && t && j < bm->table_size; j++) {
        uint64_t start = (uint64_t)j << s->cluster_bits;
        if (start >= nbytes)
            break;
        uint64_t n = nbytes - start < s->cluster_size ? nbytes - start : s->cluster_size;
        uint64_t e = t[j], off = e & QCOW2_BTE_OFFSET_MASK;
        if (!entry_ok(s, e, fsize)) {
            r = bad_table(s, bm, j, e);
        } else if (!off) {
            if (e & 1)
                r = bits_ones(s, bm, start, n);
        } else {
            /* Data that overlaps the image's tables is refused (and the
             * image marked corrupt) before it could be freed later. */
            if (!s->read_only)
                r = qcow2_check_overlap(s, off, s->cluster_size);
            if (r == 0)
                r = dev_pread(s->file, buf, n, off);
            if (r == 0)
                r = bits_write(s, bm, start, buf, n);
        }
    }
    free(t);
    free(buf);
    if (r == 0)
        r = mask_tail(s, bm, bm_nbits(s, bm->granularity_bits));
    if (r < 0) {
        pages_free(s, bm);
        return r;
    }
    bm->changed = false;
    bm->lost = false;
    return 0;
}

/* Sets bits FIRST to LAST of BM, without the lock (guest writes): a page
 * of zeroes wholly covered becomes the page of ones, one in part gets a
 * page of its own (compare-and-swap: the first writer's stays).  When no
 * page can be had, the bitmap is lost (stored back as inconsistent),
 * never silently wrong. */
static void set_bits(struct qcow2 *s, struct qcow2_bitmap *bm, uint64_t first, uint64_t last)
{
    while (first <= last) {
        uint64_t p = first / BM_PAGE_BITS;
        uint64_t pend = (p + 1) * BM_PAGE_BITS - 1, stop = last < pend ? last : pend;
        uint8_t *pg = __atomic_load_n(&bm->pages[p], __ATOMIC_ACQUIRE);
        if (!pg && first == p * BM_PAGE_BITS && stop == pend) {
            uint8_t *expect = NULL;
            if (__atomic_compare_exchange_n(&bm->pages[p], &expect, bm_ones, false,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                first = stop + 1;
                continue;
            }
            pg = expect;
        }
        if (!pg) {
            uint8_t *n = calloc(1, BM_PAGE), *expect = NULL;
            if (!n) {
                __atomic_store_n(&bm->lost, true, __ATOMIC_RELAXED);
                return;
            }
            if (__atomic_compare_exchange_n(&bm->pages[p], &expect, n, false, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
                resident_add(s, BM_PAGE);
                pg = n;
            } else {
                free(n);
                pg = expect;
            }
        }
        if (pg != bm_ones) {
            uint64_t i = first - p * BM_PAGE_BITS, e = stop - p * BM_PAGE_BITS;
            while (i <= e && (i & 7)) {
                __atomic_fetch_or(&pg[i >> 3], (uint8_t)(1u << (i & 7)), __ATOMIC_RELAXED);
                i++;
            }
            while (i + 7 <= e) {
                if (__atomic_load_n(&pg[i >> 3], __ATOMIC_RELAXED) != 0xff)
                    __atomic_store_n(&pg[i >> 3], (uint8_t)0xff, __ATOMIC_RELAXED);
                i += 8;
            }
            while (i <= e) {
                __atomic_fetch_or(&pg[i >> 3], (uint8_t)(1u << (i & 7)), __ATOMIC_RELAXED);
                i++;
            }
        }
        first = stop + 1;
    }
}

void qcow2_bitmaps_mark(struct qcow2 *s, uint64_t off, uint64_t len)
{
    if (!len || off >= s->size)
        return;
    if (len > s->size - off)
        len = s->size - off;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        struct qcow2_bitmap *bm = &s->bitmaps[i];
        if (!bm->live)
            continue;
        set_bits(s, bm, off >> bm->granularity_bits, (off + len - 1) >> bm->granularity_bits);
        if (!__atomic_load_n(&bm->changed, __ATOMIC_RELAXED))
            __atomic_store_n(&bm->changed, true, __ATOMIC_RELAXED);
    }
}

/* Page P of BM: NULL (zeroes), bm_ones, or its own. */
static const uint8_t *page_at(const struct qcow2_bitmap *bm, uint64_t p)
{
    return __atomic_load_n(&bm->pages[p], __ATOMIC_ACQUIRE);
}

static bool bit_get(const struct qcow2_bitmap *bm, uint64_t i)
{
    const uint8_t *pg = page_at(bm, i / BM_PAGE_BITS);
    uint64_t k = i % BM_PAGE_BITS;
    return pg && ((__atomic_load_n(&pg[k >> 3], __ATOMIC_RELAXED) >> (k & 7)) & 1);
}

/* From guest byte OFF (inside the disk) up to LEN bytes: *OUT_LEN bytes that
 * are all dirty or all clean (*DIRTY).  Pages of zeroes or of ones are
 * passed over whole. */
static void bits_status(struct qcow2 *s, const struct qcow2_bitmap *bm, uint64_t off,
                        uint64_t len, uint64_t *out_len, bool *dirty)
{
    uint64_t end = len > s->size - off ? s->size : off + len;
    uint8_t g = bm->granularity_bits;
    uint64_t i = off >> g, last = (end - 1) >> g;
    bool v = bit_get(bm, i);
    uint8_t whole = v ? 0xff : 0x00;
    const uint8_t *same = v ? bm_ones : NULL; /* a page all of V */
    for (i++; i <= last; i++) {
        if (i % BM_PAGE_BITS == 0 && i + BM_PAGE_BITS - 1 <= last &&
            page_at(bm, i / BM_PAGE_BITS) == same) {
            i += BM_PAGE_BITS - 1;
            continue;
        }
        if (!(i & 7) && i + 7 <= last) {
            const uint8_t *pg = page_at(bm, i / BM_PAGE_BITS);
            uint8_t b = pg ? __atomic_load_n(&pg[(i % BM_PAGE_BITS) >> 3], __ATOMIC_RELAXED) : 0;
            if (b == whole) {
                i += 7;
                continue;
            }
        }
        if (bit_get(bm, i) != v)
            break;
    }
    uint64_t stop = i << g;
    *out_len = (stop < end ? stop : end) - off;
    *dirty = v;
}

/* ---- Storing ---------------------------------------------------------------- */

static int push_old(struct qcow2 *s, uint64_t offset, uint32_t size)
{
    if (!offset)
        return 0;
    struct qcow2_bm_old *o = realloc(s->bm_old, (s->nbm_old + 1) * sizeof *o);
    if (!o)
        return err_set(-ENOMEM, "out of memory");
    s->bm_old = o;
    o[s->nbm_old].offset = offset;
    o[s->nbm_old].size = size;
    s->nbm_old++;
    return 0;
}

/* Frees (at the next metadata flush) a table no directory on disk names any
 * more, and the data clusters it points to.  Entries that cannot be used,
 * or that point to the image's tables, are left alone (leaks at worst). */
static int free_table(struct qcow2 *s, uint64_t offset, uint32_t size)
{
    struct qcow2_bitmap tmp = {.table_offset = offset, .table_size = size, .name = "?"};
    uint64_t *t = NULL;
    int r = read_bitmap_table(s, &tmp, &t);
    if (r < 0)
        return r;
    uint64_t fsize = qcow2_file_end(s);
    for (uint32_t j = 0; r == 0 && j < size; j++) {
        uint64_t off = t[j] & QCOW2_BTE_OFFSET_MASK, rc = 0;
        if (!off || !entry_ok(s, t[j], fsize))
            continue;
        if (qcow2_refcount_get(s, off >> s->cluster_bits, &rc) == 0 && rc > 0)
            r = qcow2_free_later(s, off, 1);
    }
    free(t);
    if (r == 0)
        r = qcow2_free_later(s, offset, align_up((uint64_t)size * 8, s->cluster_size) >>
                                            s->cluster_bits);
    return r;
}

/* Writes BM's bits to new clusters: the data clusters that hold a set bit,
 * and a new table (*OFFSET, *SIZE entries). */
static int write_bits(struct qcow2 *s, struct qcow2_bitmap *bm, uint64_t *offset,
                      uint32_t *size)
{
    uint64_t cs = s->cluster_size;
    uint64_t n = (bm->nbytes + cs - 1) >> s->cluster_bits;
    if (!n)
        n = 1;
    uint64_t tclusters = align_up(n * 8, cs) >> s->cluster_bits;
    uint64_t *t = calloc(tclusters << s->cluster_bits, 1);
    uint8_t *buf = malloc(cs);
    int r = t && buf ? 0 : err_set(-ENOMEM, "out of memory");
    for (uint64_t j = 0; r == 0 && j < n; j++) {
        uint64_t start = j << s->cluster_bits;
        uint64_t len = start >= bm->nbytes ? 0
                       : bm->nbytes - start < cs ? bm->nbytes - start : cs;
        bool zero = true;
        memset(buf, 0, cs);
        bits_read(bm, start, buf, len, &zero);
        if (zero)
            continue;
        uint64_t host;
        r = qcow2_alloc_clusters(s, 1, &host);
        if (r < 0)
            break;
        be64_store(&t[j], host);
        r = dev_pwrite(s->file, buf, cs, host);
    }
    uint64_t toff = 0;
    if (r == 0)
        r = qcow2_alloc_clusters(s, tclusters, &toff);
    if (r == 0)
        r = dev_pwrite(s->file, t, tclusters << s->cluster_bits, toff);
    if (r < 0 && t) {
        /* Nothing names what was taken: give it back. */
        struct err_saved saved;
        err_save(&saved);
        for (uint64_t j = 0; j < n; j++)
            if (t[j])
                qcow2_free_later(s, be64_load(&t[j]), 1);
        if (toff)
            qcow2_free_later(s, toff, tclusters);
        err_restore(&saved);
    }
    free(t);
    free(buf);
    if (r == 0) {
        *offset = toff;
        *size = (uint32_t)n;
    }
    return r;
}

static uint64_t entry_len(const struct qcow2_bitmap *bm)
{
    return align_up(DIR_ENTRY_HEADER + strlen(bm->name), 8);
}

/* Writes a new directory from s->bitmaps (in-use flags from their state). */
static int write_dir(struct qcow2 *s, uint64_t *offset, uint64_t *size)
{
    uint64_t len = 0;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++)
        len += entry_len(&s->bitmaps[i]);
    *offset = *size = 0;
    if (!len)
        return 0;
    if (len > QCOW2_MAX_BITMAP_DIR)
        return err_set(-ENOSPC, "%s: the bitmap directory would take %" PRIu64 " bytes, more "
                       "than %u", s->dev->filename, len, QCOW2_MAX_BITMAP_DIR);
    uint64_t clusters = align_up(len, s->cluster_size) >> s->cluster_bits;
    uint8_t *d = calloc(clusters, s->cluster_size);
    if (!d)
        return err_set(-ENOMEM, "out of memory");
    uint64_t pos = 0;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        const struct qcow2_bitmap *bm = &s->bitmaps[i];
        uint8_t *e = d + pos;
        size_t nl = strlen(bm->name);
        be64_store(e, bm->table_offset);
        be32_store(e + 8, bm->table_size);
        be32_store(e + 12, (bm->flags & ~QCOW2_BITMAP_IN_USE) |
                               (bm->live || bm->inconsistent ? QCOW2_BITMAP_IN_USE : 0));
        e[16] = QCOW2_BITMAP_TYPE_DIRTY;
        e[17] = bm->granularity_bits;
        be16_store(e + 18, (uint16_t)nl);
        be32_store(e + 20, 0);
        memcpy(e + DIR_ENTRY_HEADER, bm->name, nl);
        pos += entry_len(bm);
    }
    uint64_t doff = 0;
    int r = qcow2_alloc_clusters(s, clusters, &doff);
    if (r == 0) {
        r = dev_pwrite(s->file, d, clusters * s->cluster_size, doff);
        if (r < 0) {
            struct err_saved saved;
            err_save(&saved);
            qcow2_free_later(s, doff, clusters);
            err_restore(&saved);
        }
    }
    free(d);
    if (r == 0) {
        *offset = doff;
        *size = len;
    }
    return r;
}

void qcow2_bitmaps_ext(const struct qcow2 *s, uint8_t *out)
{
    be32_store(out, s->nb_bitmaps);
    be32_store(out + 4, 0);
    be64_store(out + 8, s->bitmap_dir_size);
    be64_store(out + 16, s->bitmap_dir_offset);
}

/*
 * Stores the bitmaps' state (under the lock): changed bits to new tables,
 * a new directory, the refcounts and all of it flushed, then one header
 * write switches to it; then the old directory and the replaced tables are
 * freed.  A failure before the header write leaves the image as it was
 * (with leaks at most).
 */
static int bitmaps_commit(struct qcow2 *s)
{
    int r = 0;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        struct qcow2_bitmap *bm = &s->bitmaps[i];
        if (!__atomic_load_n(&bm->lost, __ATOMIC_RELAXED))
            continue;
        /* A write found no memory for its bits: what the bitmap says
         * is not known any more.  Stored as in use (inconsistent), as
         * after a crash: removable, never used. */
        warn_report("%s: bitmap '%s' lost track of writes (out of memory); it is kept as "
                    "inconsistent", s->dev->filename, bm->name);
        bm->live = false;
        bm->inconsistent = true;
        bm->lost = false;
        bm->changed = false;
        pages_free(s, bm);
    }
    for (uint32_t i = 0; r == 0 && i < s->nb_bitmaps; i++) {
        struct qcow2_bitmap *bm = &s->bitmaps[i];
        if (!bm->pages || !(bm->changed || !bm->table_offset))
            continue;
        uint64_t toff;
        uint32_t tsize;
        r = write_bits(s, bm, &toff, &tsize);
        if (r == 0)
            r = push_old(s, bm->table_offset, bm->table_size);
        if (r == 0) {
            bm->table_offset = toff;
            bm->table_size = tsize;
            bm->changed = false;
        }
    }
    uint64_t doff = 0, dsize = 0;
    if (r == 0)
        r = write_dir(s, &doff, &dsize);
    if (r == 0)
        r = qcow2_flush_metadata(s);
    if (r < 0)
        return r;
    uint64_t old_off = s->bitmap_dir_offset, old_size = s->bitmap_dir_size;
    uint64_t old_auto = s->autoclear;
    s->bitmap_dir_offset = doff;
    s->bitmap_dir_size = dsize;
    if (s->nb_bitmaps)
        s->autoclear |= QCOW2_AUTOCLEAR_BITMAPS;
    else
        s->autoclear &= ~QCOW2_AUTOCLEAR_BITMAPS;
    r = qcow2_write_header(s);
    if (r < 0) {
        s->bitmap_dir_offset = old_off;
        s->bitmap_dir_size = old_size;
        s->autoclear = old_auto;
        return r;
    }
    if (old_off)
        r = qcow2_free_later(s, old_off, align_up(old_size, s->cluster_size) >> s->cluster_bits);
    for (size_t i = 0; r == 0 && i < s->nbm_old; i++)
        r = free_table(s, s->bm_old[i].offset, s->bm_old[i].size);
    s->nbm_old = 0;
    if (r == 0)
        r = qcow2_flush_metadata(s);
    /* Bits that nothing tracks into any more need not stay in memory. */
    s->bm_live = false;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        struct qcow2_bitmap *bm = &s->bitmaps[i];
        s->bm_live |= bm->live;
        if (!bm->live && !bm->changed)
            pages_free(s, bm);
    }
    int e = rebuild_info(s);
    return r < 0 ? r : e;
}

int qcow2_bitmaps_open_rw(struct qcow2 *s)
{
    uint64_t need = 0;
    bool any = false;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        const struct qcow2_bitmap *bm = &s->bitmaps[i];
        if (bm->extra)
            return err_set(-ENOTSUP, "%s: bitmap '%s' has %" PRIu32 " bytes of extra data "
                           "in its directory entry, which vdisk cannot keep: the image can "
                           "only be opened read-only", s->dev->filename, bm->name, bm->extra);
        if (!bm->inconsistent && (bm->flags & QCOW2_BITMAP_AUTO)) {
            need += bm_nbytes(s, bm->granularity_bits);
            any = true;
        }
    }
    if (!any)
        return 0;
    int r = span_check(s, need);
    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; r == 0 && i < s->nb_bitmaps; i++) {
        struct qcow2_bitmap *bm = &s->bitmaps[i];
        if (bm->inconsistent || !(bm->flags & QCOW2_BITMAP_AUTO))
            continue;
        r = load_bits(s, bm);
        bm->live = r == 0;
    }
    if (r == 0)
        r = bitmaps_commit(s);
    pthread_mutex_unlock(&s->lock);
    return r;
}

int qcow2_bitmaps_close(struct qcow2 *s)
{
    bool pending = s->nbm_old > 0;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        struct qcow2_bitmap *bm = &s->bitmaps[i];
        pending |= bm->live || (bm->pages && bm->changed);
        bm->live = false;
    }
    s->bm_live = false;
    return pending ? bitmaps_commit(s) : 0;
}

/* ---- Operations (vdisk/bitmap.h) ---------------------------------------- */

static struct qcow2_bitmap *find(struct qcow2 *s, const char *name)
{
    for (uint32_t i = 0; i < s->nb_bitmaps; i++)
        if (strcmp(s->bitmaps[i].name, name) == 0)
            return &s->bitmaps[i];
    return NULL;
}

static int not_found(const char *name)
{
    return err_set(-ENOENT, "Dirty bitmap '%s' not found", name);
}

static int inconsistent(const struct qcow2_bitmap *bm)
{
    return err_set(-EBUSY, "Bitmap '%s' is inconsistent and cannot be used\n"
                   "Try block-dirty-bitmap-remove to delete this bitmap from disk", bm->name);
}

/* The bitmap NAME, usable (not inconsistent). */
static int usable(struct qcow2 *s, const char *name, struct qcow2_bitmap **out)
{
    struct qcow2_bitmap *bm = find(s, name);
    if (!bm)
        return not_found(name);
    if (bm->inconsistent)
        return inconsistent(bm);
    *out = bm;
    return 0;
}

static int op_add(struct qcow2 *s, struct bitmap_args *a)
{
    uint64_t g = a->granularity;
    if (!g) {
        g = s->cluster_size < 4096 ? 4096 : s->cluster_size;
        if (g > 65536)
            g = 65536;
    }
    if (g < 512 || (g & (g - 1)) || g > (1ull << QCOW2_BITMAP_MAX_GRAN))
        return err_set(-EINVAL, "Granularity must be power of 2 and at least 512");
    if (find(s, a->name))
        return err_set(-EEXIST, "Bitmap already exists: %s", a->name);
    const char *why = NULL;
    size_t nl = strlen(a->name);
    uint8_t gbits = 0;
    while ((1ull << gbits) < g)
        gbits++;
    uint64_t nbytes = bm_nbytes(s, gbits);
    if (s->version < 3)
        why = "Cannot store dirty bitmaps in qcow2 v2 files";
    else if (nl > QCOW2_MAX_BITMAP_NAME)
        why = "Name length exceeds maximum (1023 characters)";
    else if (s->nb_bitmaps >= QCOW2_MAX_BITMAPS)
        why = "Too many persistent bitmaps";
    else if (align_up(nbytes, s->cluster_size) > QCOW2_MAX_BITMAP_BYTES)
        why = "Too large bitmap";
    if (why)
        return err_set(-ENOTSUP, "Can't make bitmap '%s' persistent in '%s': %s", a->name,
                       s->dev->filename, why);
    if (!nl)
        return err_set(-EINVAL, "Bitmap name cannot be empty");
    struct qcow2_bitmap *old = NULL;
    int r = a->other ? usable(s, a->other, &old) : 0;
    if (r == 0)
        r = span_check(s, nbytes);
    if (r < 0)
        return r;
    struct qcow2_bitmap *v = realloc(s->bitmaps, (s->nb_bitmaps + 1) * sizeof *v);
    if (!v)
        return err_set(-ENOMEM, "out of memory");
    s->bitmaps = v;
    if (old)
        old = find(s, a->other);
    struct qcow2_bitmap *bm = &s->bitmaps[s->nb_bitmaps];
    memset(bm, 0, sizeof *bm);
    bm->name = strdup(a->name);
    r = bm->name ? pages_new(s, bm, nbytes) : err_set(-ENOMEM, "out of memory");
    if (r < 0) {
        free(bm->name);
        return r;
    }
    bm->granularity_bits = gbits;
    bm->changed = true;
    bool enabled = !(a->flags & VDISK_BITMAP_ADD_DISABLED);
    bm->flags = enabled ? QCOW2_BITMAP_AUTO : 0;
    bm->live = enabled;
    s->nb_bitmaps++;
    if (old) {
        /* The old one stops where the new one starts: one commit. */
        old->flags &= ~QCOW2_BITMAP_AUTO;
        old->live = false;
    }
    return bitmaps_commit(s);
}

static int op_remove(struct qcow2 *s, struct bitmap_args *a)
{
    struct qcow2_bitmap *bm = find(s, a->name);
    if (!bm)
        return not_found(a->name);
    int r = push_old(s, bm->table_offset, bm->table_size);
    if (r < 0)
        return r;
    free(bm->name);
    pages_free(s, bm);
    uint32_t i = (uint32_t)(bm - s->bitmaps);
    memmove(bm, bm + 1, (s->nb_bitmaps - i - 1) * sizeof *bm);
    s->nb_bitmaps--;
    return bitmaps_commit(s);
}

/* Marks in DST what the bitmap A->other of A->src (this image when
 * SELF) has dirty. */
static int merge_from(struct qcow2 *s, struct qcow2_bitmap *dst, struct bitmap_args *a,
                      struct qcow2_bitmap *self_src)
{
    uint64_t ssize = dev_size(a->src);
    if (ssize != s->size)
        return err_set(-EINVAL, "Bitmaps are of different sizes (destination size is %" PRIu64
                       ", source size is %" PRIu64 ") and can't be merged", s->size, ssize);
    int r = load_bits(s, dst);
    for (uint64_t off = 0; r == 0 && off < s->size;) {
        uint64_t len;
        bool dirty;
        if (self_src) {
            bits_status(s, self_src, off, s->size - off, &len, &dirty);
        } else {
            struct bitmap_args q = {.op = BITMAP_STATUS, .name = a->other, .offset = off,
                                    .length = s->size - off};
            r = dev_bitmap(a->src, &q);
            if (r < 0)
                break;
            len = q.out_len;
            dirty = q.out_dirty;
            if (!len)
                return err_set(-EIO, "%s: the bitmap '%s' reported an empty extent",
                               a->src->filename, a->other);
        }
        if (dirty) {
            set_bits(s, dst, off >> dst->granularity_bits,
                     (off + len - 1) >> dst->granularity_bits);
            dst->changed = true;
        }
        off += len;
    }
    return r;
}

static int op_status(struct qcow2 *s, struct bitmap_args *a)
{
    struct qcow2_bitmap *bm = NULL; /* (set by usable(); GCC -O3 cannot see it) */
    int r = usable(s, a->name, &bm);
    if (r == 0 && a->offset >= s->size)
        r = err_set(-EINVAL, "%s: offset %" PRIu64 " is past the end of the disk (%" PRIu64
                    " bytes)", s->dev->filename, a->offset, s->size);
    if (r == 0 && !a->length)
        r = err_set(-EINVAL, "%s: an empty range", s->dev->filename);
    if (r == 0)
        r = load_bits(s, bm);
    if (r == 0)
        bits_status(s, bm, a->offset, a->length, &a->out_len, &a->out_dirty);
    return r;
}

int qcow2_bitmap_op(struct vdisk_dev *dev, struct bitmap_args *a)
{
    struct qcow2 *s = dev->priv;
    if (!a->name)
        return err_set(-EINVAL, "no bitmap name");
    pthread_mutex_lock(&s->lock);
    int r = 0;
    struct qcow2_bitmap *bm = NULL;
    if (a->op == BITMAP_STATUS) {
        r = op_status(s, a);
        goto out;
    }
    if (s->read_only) {
        r = err_set(-EROFS, "%s: the image is open read-only", dev->filename);
        goto out;
    }
    if (s->corrupt) {
        r = err_set(-EIO, "%s: the image is corrupt", dev->filename);
        goto out;
    }
    switch (a->op) {
    case BITMAP_ADD:
        r = op_add(s, a);
        break;
    case BITMAP_REMOVE:
        r = op_remove(s, a);
        break;
    case BITMAP_CLEAR:
        r = usable(s, a->name, &bm);
        if (r == 0)
            r = load_bits(s, bm);
        if (r == 0) {
            uint64_t nbytes = bm->nbytes;
            pages_free(s, bm);
            r = pages_new(s, bm, nbytes);
        }
        if (r == 0) {
            bm->changed = true;
            r = bitmaps_commit(s);
        }
        break;
    case BITMAP_ENABLE:
        r = usable(s, a->name, &bm);
        if (r == 0 && !bm->live)
            r = load_bits(s, bm);
        if (r == 0 && !bm->live) {
            bm->flags |= QCOW2_BITMAP_AUTO;
            bm->live = true;
            r = bitmaps_commit(s);
        }
        break;
    case BITMAP_DISABLE:
        r = usable(s, a->name, &bm);
        if (r == 0 && (bm->flags & QCOW2_BITMAP_AUTO)) {
            bm->flags &= ~QCOW2_BITMAP_AUTO;
            bm->live = false;
            r = bitmaps_commit(s);
        }
        break;
    case BITMAP_MERGE: {
        struct qcow2_bitmap *src = NULL;
        r = usable(s, a->name, &bm);
        if (r == 0 && !a->other)
            r = err_set(-EINVAL, "no source bitmap name");
        if (r == 0 && a->src == dev) {
            r = usable(s, a->other, &src);
            if (r == 0)
                r = load_bits(s, src);
        } else if (r == 0 && !a->src) {
            r = err_set(-EINVAL, "no source device");
        } else if (r == 0 && !dev_has_bitmaps(a->src)) {
            struct bitmap_args q = {.op = BITMAP_STATUS, .name = a->other};
            r = dev_bitmap(a->src, &q); /* (refused, with the message) */
        }
        if (r == 0)
            r = merge_from(s, bm, a, src);
        if (r == 0)
            r = bitmaps_commit(s);
        break;
    }
    case BITMAP_STATUS:
        break;
    }
out:
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* ---- Resize ------------------------------------------------------------------ */

int qcow2_bitmaps_before_resize(struct qcow2 *s)
{
    for (uint32_t i = 0; i < s->nb_bitmaps; i++)
        if (s->bitmaps[i].inconsistent)
            return err_set(-EBUSY, "%s: cannot resize an image with inconsistent bitmaps "
                           "(bitmap '%s' is in use); remove it first", s->dev->filename,
                           s->bitmaps[i].name);
    int r = 0;
    for (uint32_t i = 0; r == 0 && i < s->nb_bitmaps; i++)
        r = load_bits(s, &s->bitmaps[i]);
    return r;
}

int qcow2_bitmaps_after_resize(struct qcow2 *s)
{
    if (!s->nb_bitmaps)
        return 0;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        struct qcow2_bitmap *bm = &s->bitmaps[i];
        uint64_t nb = bm_nbytes(s, bm->granularity_bits);
        if (!bm->pages)
            return err_set(-EIO, "%s: bitmap '%s' was not loaded for the resize",
                           s->dev->filename, bm->name);
        if (align_up(nb, s->cluster_size) > QCOW2_MAX_BITMAP_BYTES)
            return err_set(-EFBIG, "%s: bitmap '%s' would be too large for the new size",
                           s->dev->filename, bm->name);
        uint64_t on = bm_npages(bm->nbytes), nn = bm_npages(nb);
        if (nb > bm->nbytes) {
            int r = span_check(s, nb - bm->nbytes);
            if (r == 0 && nn > on)
                r = resident_check(s, (nn - on) * sizeof(uint8_t *));
            if (r < 0)
                return r;
        }
        if (nn != on) {
            /* (pages past the new end go; new ones are zeroes) */
            for (uint64_t p = nn; p < on; p++)
                page_drop(s, bm, p);
            uint8_t **v = realloc(bm->pages, (nn ? nn : 1) * sizeof *v);
            if (!v && nn > on)
                return err_set(-ENOMEM, "out of memory");
            if (v)
                bm->pages = v;
            for (uint64_t p = on; p < nn; p++)
                bm->pages[p] = NULL;
            resident_add(s, ((int64_t)nn - (int64_t)on) * (int64_t)sizeof(uint8_t *));
        }
        /* A page of ones that the new end cuts in part becomes one of its
         * own, whose bytes past the end are cleared. */
        uint64_t keep = nb % BM_PAGE;
        if (nn && keep && bm->pages[nn - 1]) {
            uint8_t *pg;
            int r = page_own(s, bm, nn - 1, &pg);
            if (r < 0)
                return r;
            memset(pg + keep, 0, BM_PAGE - keep);
        }
        bm->nbytes = nb;
        int r = mask_tail(s, bm, bm_nbits(s, bm->granularity_bits));
        if (r < 0)
            return r;
        bm->changed = true;
    }
    return bitmaps_commit(s);
}
