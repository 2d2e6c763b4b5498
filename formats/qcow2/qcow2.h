/* SPDX-License-Identifier: MIT */
/*
 * formats/qcow2/qcow2.h: the qcow2 driver's state and on-disk constants.
 *
 * The on-disk format is QEMU's (docs/interop/qcow2.txt).  The driver sits
 * over a protocol device (the image file) and reaches it only through the
 * device interface.
 *
 *   header.c    header, extensions and features: parse, validate, write
 *   cache.c     the bounded metadata caches (L2 tables, refcount blocks)
 *   refcount.c  refcounts, cluster allocation, the ordered metadata flush
 *   cluster.c   guest-to-host mapping: L1/L2 lookup and L2 updates
 *   io.c        read, write, discard, write zeroes (asynchronous)
 *   compress.c  zlib and zstd clusters
 *   create.c    new images
 *   check.c     consistency check and repair
 *   snapshot.c  internal snapshots: the table; take, apply, delete
 *   image.c     resize, make empty, change the backing file, amend
 *   bitmap.c    persistent dirty bitmaps: read, counted, shown, dropped
 *   qcow2.c     the driver: probe, open, close, info, block status
 *
 * Locking: one mutex (s->lock) guards all metadata (tables, caches,
 * refcounts, allocation state).  Guest data I/O is asynchronous and runs
 * outside it, and so does most metadata I/O: a table missing from the
 * cache is read as a child request, and write-backs write copies of the
 * dirty tables under wb_lock.  What still does I/O under s->lock is
 * listed in io.c's opening comment.
 *
 * Ordering (nothing lost, leaks at most after a crash):
 *   - a new cluster's refcount reaches the disk before any L2 or L1 entry
 *     that points to it (refcount cache flushed and the file fsynced
 *     before dirty L2 tables are written, and before an L1 entry is);
 *   - guest data reaches the disk before the L2 entry that maps it (the
 *     same fsync);
 *   - a refcount decrement is applied only after the L2 change that
 *     dropped the reference is on disk (decrements wait in a list until
 *     the next metadata flush), so a freed cluster is never reused while
 *     an on-disk table still points to it.
 */
#ifndef VDISK_QCOW2_H
#define VDISK_QCOW2_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "driver.h"

#define QCOW2_MAGIC 0x514649fbu

/* Header feature bits. */
#define QCOW2_INCOMPAT_DIRTY       (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT     (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE   (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2       (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN       0x1full
#define QCOW2_COMPAT_LAZY          (1ull << 0)
#define QCOW2_AUTOCLEAR_BITMAPS    (1ull << 0)
#define QCOW2_AUTOCLEAR_RAW_DATA   (1ull << 1)

/* Header extension types. */
#define QCOW2_EXT_END          0x00000000u
#define QCOW2_EXT_BACKING_FMT  0xe2792acau
#define QCOW2_EXT_FEATURES     0x6803f857u
#define QCOW2_EXT_BITMAPS      0x23852875u
#define QCOW2_EXT_CRYPTO       0x0537be77u
#define QCOW2_EXT_DATA_FILE    0x44415441u
#define QCOW2_CRYPT_NONE 0u
#define QCOW2_CRYPT_AES  1u
#define QCOW2_CRYPT_LUKS 2u

/* Table entries. */
#define QCOW2_OFLAG_COPIED     (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO       (1ull << 0)
#define QCOW2_OFFSET_MASK      0x00fffffffffffe00ull
#define QCOW2_L1E_RESERVED     0x7f000000000001ffull
#define QCOW2_L2E_RESERVED     0x3f000000000001feull
#define QCOW2_REFT_RESERVED    0x00000000000001ffull

/* Named limits, as QEMU's implementation has them. */
#define QCOW2_MIN_CLUSTER_BITS   9
#define QCOW2_MAX_CLUSTER_BITS   21
#define QCOW2_MAX_L1_BYTES       (32u << 20)
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
#define QCOW2_MAX_BACKING_NAME   1023
#define QCOW2_MAX_SNAPSHOTS      65536
#define QCOW2_V2_HEADER_LENGTH   72
#define QCOW2_V3_HEADER_LENGTH   104
#define QCOW2_MAX_HEADER_EXTS    256
#define QCOW2_MAX_CHAIN_DEPTH    64
#define QCOW2_SUBCLUSTERS        32
#define QCOW2_DEFERRED_FREE_MAX  4096
/* Persistent dirty bitmaps (the bitmaps extension), QEMU's limits. */
#define QCOW2_BITMAPS_EXT_LENGTH 24
#define QCOW2_MAX_BITMAPS        65535
#define QCOW2_MAX_BITMAP_DIR     (1024u * QCOW2_MAX_BITMAPS)  /* bytes */
#define QCOW2_MAX_BITMAP_TABLE   0x8000000u   /* entries of one bitmap table */
#define QCOW2_MAX_BITMAP_BYTES   0x20000000u  /* bitmap data of one bitmap */
#define QCOW2_MAX_BITMAP_NAME    1023
#define QCOW2_BITMAP_MIN_GRAN    9            /* granularity bits */
#define QCOW2_BITMAP_MAX_GRAN    31
#define QCOW2_BITMAP_IN_USE      (1u << 0)
#define QCOW2_BITMAP_AUTO        (1u << 1)
#define QCOW2_BITMAP_EXTRA_OK    (1u << 2)
#define QCOW2_BITMAP_FLAGS_KNOWN 0x7u
#define QCOW2_BITMAP_TYPE_DIRTY  1
#define QCOW2_BTE_OFFSET_MASK    0x00fffffffffffe00ull
#define QCOW2_BTE_RESERVED       0xff000000000001feull

enum qcow2_compression { QCOW2_COMPRESS_ZLIB = 0, QCOW2_COMPRESS_ZSTD = 1 };

/* ---- Metadata cache ------------------------------------------------------- */

struct qcow2;

/* Slots are found by offset and by data pointer through hash chains, and
 * evicted least recently used first from a list, so a cache of tens of
 * thousands of 512-byte tables costs the same per lookup as a small one.
 * check.c may clear offset and dirty of any slot directly (forgetting the
 * whole refcount cache); the chains and the dirty list tolerate that. */
struct qcow2_cache_entry {
    uint64_t offset;      /* host offset of the cluster; 0 = empty slot */
    uint8_t *data;
    uint64_t lru;
    bool dirty;
    bool listed;          /* in the dirty list (dirty may have been cleared) */
    int pins;
    uint64_t dgen;        /* when it was last made dirty (the cache's dclock) */
    uint64_t key;         /* the offset it is chained under (0: none) */
    uint32_t onext;       /* next in its offset chain */
    uint32_t pnext;       /* next in its data pointer chain */
    uint32_t prev, next;  /* LRU list: head most recent */
};

struct qcow2_cache {
    struct qcow2 *s;
    const char *what;     /* "L2 table", "refcount block" (messages) */
    struct qcow2_cache_entry *e;
    unsigned n;
    unsigned used;        /* slots [0, used) have memory */
    uint64_t clock;
    uint64_t dclock;      /* counts entries made dirty */
    uint64_t wb_gen;      /* counts write-backs (qcow2_prefetch) */
    uint64_t hits, misses;
    uint32_t *obucket, *pbucket; /* chain heads, hmask + 1 each */
    uint32_t hmask;
    uint32_t head, tail;  /* LRU list of the used slots */
    uint32_t *dirty;      /* slots listed as dirty */
    unsigned ndirty;
    uint8_t **slabs;      /* slot memory, SLAB slots per allocation */
    unsigned per_slab;
};

int qcow2_cache_init(struct qcow2_cache *c, struct qcow2 *s, const char *what, unsigned n);
void qcow2_cache_fini(struct qcow2_cache *c);
/* Pins the cluster at OFFSET in the cache; READ: load it (else zero it). */
int qcow2_cache_get(struct qcow2_cache *c, uint64_t offset, bool read, uint8_t **data);
void qcow2_cache_put(struct qcow2_cache *c, uint8_t *data);
bool qcow2_cache_has(struct qcow2_cache *c, uint64_t offset);
/* Puts a copy of SRC (one cluster read from OFFSET) in the cache, clean and
 * unpinned, unless OFFSET is there already (read ahead). */
int qcow2_cache_fill(struct qcow2_cache *c, uint64_t offset, const uint8_t *src);
void qcow2_cache_dirty(struct qcow2_cache *c, uint8_t *data);
/* Writes every dirty entry back (no fsync). */
int qcow2_cache_write_back(struct qcow2_cache *c);
/* Forgets OFFSET (the cluster was freed or rewritten elsewhere). */
void qcow2_cache_forget(struct qcow2_cache *c, uint64_t offset);
bool qcow2_cache_has_dirty(const struct qcow2_cache *c);
/* Pins OFFSET's entry and returns 0 when it is cached; 1 when it is not
 * (nothing read, nothing evicted). */
int qcow2_cache_peek(struct qcow2_cache *c, uint64_t offset, uint8_t **data);
/* Puts a copy of SRC (read from OFFSET) in the cache, clean and unpinned,
 * in a free slot or one holding a clean table: 0, also when OFFSET is
 * cached already; 1 when every slot it could take is dirty or pinned
 * (nothing done: a write-back must come first); or a negative errno. */
int qcow2_cache_install(struct qcow2_cache *c, uint64_t offset, const uint8_t *src);

/*
 * A write-back made without the lock (qcow2_writeback_unlocked): copies of
 * the dirty entries taken under the lock, in file order.  The entries stay
 * dirty meanwhile (so none is evicted, and no load reads it from the file,
 * before its copy is written); qcow2_cache_written() then cleans those not
 * made dirty again since.
 */
struct qcow2_wb_set {
    unsigned n;
    uint64_t *offset, *dgen;
    uint8_t *copies;      /* n clusters */
};
int qcow2_cache_copy_dirty(struct qcow2_cache *c, struct qcow2_wb_set *w);
int qcow2_wb_write(struct qcow2 *s, const struct qcow2_wb_set *w);
void qcow2_cache_written(struct qcow2_cache *c, const struct qcow2_wb_set *w);
void qcow2_wb_set_free(struct qcow2_wb_set *w);
/*
 * Called without the lock (on the worker, before locked work that needs
 * them): reads the clusters at OFFS[0..N) (0: none; at most 8) that C does
 * not hold, with the lock let go, and puts them in C clean, so the locked
 * work finds them there instead of reading under the lock.  Dropped if C
 * wrote anything back meanwhile (the file may have changed under the
 * read).  Best effort: errors and a cache full of dirty tables leave it to
 * the locked work.
 */
void qcow2_prefetch(struct qcow2_cache *c, const uint64_t *offs, unsigned n);

/* ---- Driver state --------------------------------------------------------- */

struct qcow2_ext {           /* a header extension kept as it was */
    uint32_t type;
    uint32_t len;
    uint8_t *data;
};

struct qcow2_feature {       /* feature name table entry */
    uint8_t type;            /* 0 incompatible, 1 compatible, 2 autoclear */
    uint8_t bit;
    char name[47];
};

/* Why a snapshot's L1 table cannot be used (struct qcow2_snapshot.bad). */
enum qcow2_snap_bad {
    QCOW2_SNAP_OK,
    QCOW2_SNAP_UNALIGNED,
    QCOW2_SNAP_TOO_LARGE,
    QCOW2_SNAP_ON_HEADER,
    QCOW2_SNAP_PAST_EOF,
};

/* An internal snapshot (the table entry). */
struct qcow2_snapshot {
    uint64_t l1_offset;
    uint32_t l1_size;
    char *id, *name;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t vm_state_size;
    uint64_t disk_size;
    uint64_t icount;         /* UINT64_MAX: not recorded */
    uint32_t extra_size;
    uint8_t *extra;          /* kept as read (fields past the known ones) */
    enum qcow2_snap_bad bad; /* why the L1 table cannot be used (the entry is
                                corrupt; check reports it, -r all removes it) */
};

/* A persistent dirty bitmap (bitmap directory entry). */
struct qcow2_bitmap {
    uint64_t table_offset;
    uint32_t table_size;     /* entries */
    uint32_t flags;
    uint8_t granularity_bits;
    char *name;
    uint32_t extra;          /* bytes of extra data in its directory entry */
    /* In memory (bitmap.c): the bits, one per granularity chunk, LSB first
     * in each byte as on disk, in pages (NULL: zeroes; a shared page of
     * ones; or one of its own); PAGES NULL while only the image holds
     * them. */
    uint8_t **pages;
    uint64_t nbytes;         /* of bits */
    bool lost;               /* a page could not be allocated for a write:
                                stored back as inconsistent */
    bool changed;            /* bits differ from what table_offset holds */
    bool live;               /* loaded, enabled, read-write: tracks writes;
                                flagged in use on disk until stored back */
    bool inconsistent;       /* in use on disk when opened: kept as it is */
};

/* A bitmap table (and the data it points to) to free later. */
struct qcow2_bm_old {
    uint64_t offset;
    uint32_t size;           /* entries */
};

/* An L2 table being read for requests that found it missing from the cache
 * (io.c): requests that need it wait here, not on the lock. */
struct qcow2_load {
    uint64_t offset;         /* host offset of the table */
    struct vdisk_queue *q;   /* the queue its read runs on */
    uint8_t *buf;            /* what the read brings */
    bool stale;              /* the cache took OFFSET meanwhile: BUF may be
                                older than the file, and is not installed */
    struct vdisk_req *waiters, *last; /* in arrival order; each resumes
                                         with its req->resume */
    void (*carrier_resume)(struct vdisk_req *req); /* the walk of the waiter
                                   that took the install to the worker (off
                                   the list meanwhile: the worker links jobs
                                   through req->next) */
    struct qcow2_load *next;
};

struct qc_run;

/*
 * What qcow2 keeps in each of its requests (req_state(); the driver's
 * req_state_size).  Reads and writes walk their range from POS; a request
 * that carries a table's install to the worker keeps the load in LOAD
 * meanwhile.  Carriers (children of a write, never submitted, that take
 * its jobs to the worker) use POS and ALLOC; discard and write-zeroes use
 * DZ.
 */
struct qcow2_req {
    uint64_t pos;
    struct qcow2_load *load;
    union {
        struct {
            struct qc_run *run;   /* the run made, or the run to finish */
            uint64_t len;         /* its guest bytes */
            int outcome;          /* ALLOC_* (io.c) */
            bool zero;            /* it fills zeroes */
        } alloc;
        struct {
            uint64_t start, end;  /* whole units the metadata marks */
            uint64_t done_to;     /* marked so far */
            unsigned flags;       /* DZ_* (io.c) */
        } dz;
    };
};
_Static_assert(sizeof(struct qcow2_req) <= REQ_STATE_MAX, "qcow2's request state fits");

static inline struct qcow2_req *qreq(struct vdisk_req *req)
{
    return req_state(req);
}

/* A guest range whose clusters are being allocated (writes there wait). */
struct qcow2_alloc {
    uint64_t start, end;     /* guest bytes, cluster aligned */
    struct vdisk_req *waiters;
    struct qcow2_alloc *next;
};

struct qcow2 {
    struct vdisk_dev *dev;   /* this device */
    struct vdisk_dev *file;  /* the image file below */
    struct vdisk_dev *backing;
    pthread_mutex_t lock;
    /* Held (recursive; taken after lock, never before it) by whoever writes
     * cached tables back or flushes them: across the I/O of a write-back
     * made without the lock, and by the locked paths around theirs, so the
     * two never overlap (an older copy landing after a newer one, or a
     * flush that does not cover the other's writes). */
    pthread_mutex_t wb_lock;
    unsigned wb_busy;         /* flushes in flight without the lock */
    bool making;              /* an L2 table being made without the lock */
    uint64_t making_l1i;      /* its L1 index */
    pthread_cond_t made;      /* signalled when it is done */
    struct offload *offload;  /* flushes and table walks of discards, away
                                 from the queues' threads (NULL: inline) */

    /* Header. */
    uint32_t version;
    uint32_t cluster_bits;
    uint64_t cluster_size;
    uint64_t size;
    uint32_t crypt_method;    /* QCOW2_CRYPT_* */
    /* Encryption (crypt_method LUKS, formats/qcow2/crypto.c): where the
     * LUKS header lies (the header extension), the parsed header, and the
     * device guest data goes through: the file itself for images that are
     * not encrypted, else the encrypting layer over it (data clusters are
     * encrypted by their host offset, as QEMU does). */
    uint64_t crypto_offset, crypto_length;
    struct luks_header *luks;
    struct vdisk_encrypt_info *crypto_info;
    uint8_t *crypto_mk;       /* the master key (amend adds key slots) */
    struct vdisk_dev *data;
    /* An external data file (incompatible bit 2): guest data lives there,
     * the image holds the metadata alone.  data_file_name is the header
     * extension's name (NULL: none), data_file the device opened (the
     * extension's name resolved against the image's folder, or the
     * data-file open option), and data_raw the autoclear bit 1: the data
     * file is a raw image of the disk by itself.  Data clusters are
     * placed at their guest offset and have no refcounts. */
    char *data_file_name;
    char *full_data_file;     /* resolved, as opened */
    struct vdisk_dev *data_file;
    bool data_raw;
    uint32_t l1_size;
    uint64_t l1_offset;
    uint64_t reft_offset;
    uint32_t reft_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t snapshots_size;  /* bytes of the table */
    struct qcow2_snapshot *snaps;
    /* Opened for a check (open option "check", as QEMU's BDRV_O_CHECK):
     * the snapshot table is read by the check, not the open, so that a
     * broken one can be reported and repaired.  Until then nb_snapshots is
     * 0 and the header keeps the table's place (table_unread_*). */
    bool table_unread;
    uint32_t table_unread_nb;
    uint64_t table_unread_offset;
    uint64_t incompat, compat, autoclear;
    uint32_t refcount_order;
    uint32_t header_length;
    uint8_t compression_type;
    uint64_t backing_name_offset;
    uint32_t backing_name_len;
    char *backing_name;      /* as stored */
    char *backing_fmt;       /* from the extension, or NULL */
    char *full_backing;      /* resolved against the image's folder */
    char *shown_name;        /* qemu-img's name for it (in RBD), or NULL */
    struct qcow2_ext *exts;  /* unknown extensions, kept */
    unsigned nexts;
    struct qcow2_feature *features;
    unsigned nfeatures;
    /* Persistent dirty bitmaps (extension honoured only with the autoclear
     * bit, as QEMU does; without it the extension is ignored, and dropped
     * at a read-write open). */
    uint32_t nb_bitmaps;
    uint64_t bitmap_dir_offset;
    uint64_t bitmap_dir_size;
    struct qcow2_bitmap *bitmaps;
    struct vdisk_bitmap_info *bitmap_info; /* the same for vdisk_get_info */
    bool bitmaps_stale;      /* an extension without the autoclear bit */
    bool bm_live;            /* a bitmap tracks writes (qcow2_bitmaps_mark) */
    struct qcow2_bm_old *bm_old; /* tables to free once the directory that
                                    still names them is replaced */
    size_t nbm_old;

    /* Derived geometry. */
    bool ext_l2;
    uint32_t l2_bits;        /* log2 of entries per L2 table */
    uint64_t l2_entries;
    uint32_t l2_entry_bytes; /* 8, or 16 with extended L2 */
    uint64_t sc_size;        /* subcluster size (cluster size without ext L2) */
    uint32_t refcount_bits;
    uint64_t refcount_max;
    uint32_t rb_bits;        /* log2 of entries per refcount block */
    uint64_t rb_entries;
    uint32_t csize_shift;    /* compressed descriptor: x = 62 - (cluster_bits - 8) */
    uint64_t csize_mask;
    uint64_t coffset_mask;

    /* Tables (host byte order). */
    uint64_t *l1;
    uint64_t *reft;
    uint64_t reft_entries;
    uint64_t reft_used;      /* 1 + the highest non-zero refcount table index (a bound) */

    struct qcow2_cache l2c;
    struct qcow2_cache rbc;

    /* Allocation state. */
    uint64_t free_cluster_index;
    /* The file grown ahead of allocations (fallocate in large steps): a
     * write into allocated space does not extend the file, which file
     * systems serialise.  At close the file goes back to what is used. */
    uint64_t file_at_open;     /* bytes */
    uint64_t grown_to;         /* bytes the file is known to have */
    uint64_t used_end;         /* end of what was placed since open (bytes) */
    bool no_grow;              /* the file cannot be preallocated */
    uint64_t *deferred;      /* host clusters whose refcount drops at flush */
    size_t ndeferred, capdeferred;
    struct qcow2_alloc *allocs;
    struct qcow2_load *loads; /* L2 tables being read (under the lock) */
    uint64_t compress_cluster; /* host offset of the cluster being packed, or 0 */
    uint64_t compress_used;    /* bytes used in it */
    uint64_t meta_end;         /* no metadata at or past this host offset
                                  (0: not known; see qcow2_check_overlap) */
    uint64_t meta_sig;         /* where the tables were when it was found */

    bool read_only;
    bool lazy;               /* lazy refcounts in use: dirty bit while open */
    bool dirty_on_disk;      /* we set the dirty bit */
    uint64_t bm_resident;    /* bytes the loaded bitmaps' pages take (atomic) */
    bool corrupt;
    bool corrupt_warned;     /* the warning of the first corruption given */
    bool meta_dirty;         /* metadata changed since the last flush */
    bool discard_passthrough;
    bool allow_network;        /* backing-allow-network=on: a backing file name in
                                * the header may be an NBD URI */
    bool confine;              /* backing-confine=on: backing files stay in the
                                  image's folder, down the whole chain */
    bool hold_frees;         /* a snapshot operation: no early flush of frees */
    bool prealloc_checked;   /* metadata_preallocation() has looked */
    bool prealloc;           /* the file holds fewer clusters than are used */
};

/* header.c */
int qcow2_parse_header(struct qcow2 *s, const uint8_t *buf, size_t len, uint64_t file_size);
int qcow2_write_header(struct qcow2 *s);
int qcow2_set_incompat(struct qcow2 *s, uint64_t bits, bool on);
int qcow2_corrupt(struct qcow2 *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *qcow2_feature_name(const struct qcow2 *s, int type, int bit);
/* Builds a header cluster for S into BUF (cluster_size bytes). */
int qcow2_build_header(const struct qcow2 *s, uint8_t *buf, size_t len);

/* refcount.c */
int qcow2_refcount_get(struct qcow2 *s, uint64_t cluster, uint64_t *rc);
/* Adds DELTA (+1 or -1) to CLUSTER's refcount: -ERANGE past the width's
 * largest value, -EUCLEAN (corrupt) below 0. */
int qcow2_refcount_update(struct qcow2 *s, uint64_t cluster, int delta);
/* Sets CLUSTER's refcount to VALUE (repairs): -ERANGE if the width cannot
 * hold it. */
int qcow2_refcount_set(struct qcow2 *s, uint64_t cluster, uint64_t value);
int qcow2_alloc_clusters(struct qcow2 *s, uint64_t n, uint64_t *host);
/* As qcow2_alloc_clusters, without I/O: 1 (nothing changed) when a
 * refcount block it needs is not cached or has to be made. */
int qcow2_alloc_clusters_cached(struct qcow2 *s, uint64_t n, uint64_t *host);
/* The end of the file's contents (bytes): its size, or when it was grown
 * ahead, what was there at open and what was placed since
 * (qcow2_note_used: allocations, new refcount and snapshot structures). */
uint64_t qcow2_file_end(struct qcow2 *s);
void qcow2_note_used(struct qcow2 *s, uint64_t end);
/* One past the last cluster with a non-zero refcount (0: none). */
int qcow2_refcounted_end(struct qcow2 *s, uint64_t *clusters);
int qcow2_alloc_bytes(struct qcow2 *s, uint64_t len, uint64_t *host);
int qcow2_free_later(struct qcow2 *s, uint64_t host, uint64_t n);
int qcow2_flush_metadata(struct qcow2 *s);
/*
 * The same without holding s->lock across the I/O (called without it): the
 * dirty tables are copied under the lock and written from the copies, the
 * refcount blocks first, then an fsync, then the L2 tables; DURABLE: then
 * an fsync and the deferred frees, as qcow2_flush_metadata.  Other threads
 * go on meanwhile; a table they change again stays dirty.  Without memory
 * for the copies it falls back to qcow2_flush_metadata under the lock.
 */
int qcow2_writeback_unlocked(struct qcow2 *s, bool durable);
/* The refcount blocks that allocating N clusters would look at first
 * (under the lock): into OFFS (room for 2), their number returned. */
unsigned qcow2_alloc_blocks(struct qcow2 *s, uint64_t n, uint64_t *offs);
/* Called without the lock: grows the file ahead of an allocation of N
 * clusters, as the allocator would under the lock (best effort). */
void qcow2_grow_unlocked(struct qcow2 *s, uint64_t n);
uint64_t qcow2_rb_get(const struct qcow2 *s, const uint8_t *block, uint64_t i);
void qcow2_rb_set(const struct qcow2 *s, uint8_t *block, uint64_t i, uint64_t v);
/* -EUCLEAN (the image marked corrupt) if [HOST, HOST + LEN) overlaps the
 * header, an L1 or refcount table, a refcount block, an active L2 table or
 * the snapshot table.  Ranges past every table cost nothing: the end of the
 * metadata is known (found by one walk of the tables, then raised by every
 * allocation) until qcow2_meta_moved() says tables were placed otherwise. */
int qcow2_check_overlap(struct qcow2 *s, uint64_t host, uint64_t len);
/* Tables were placed or replaced other than through qcow2_alloc_clusters
 * (a new L1 table, a snapshot operation, a rebuilt refcount structure). */
void qcow2_meta_moved(struct qcow2 *s);

/* cluster.c */
enum qcow2_ctype {
    QCOW2_UNALLOCATED,
    QCOW2_NORMAL,
    QCOW2_ZERO,          /* reads as zeroes (maybe with a preallocated cluster) */
    QCOW2_COMPRESSED,
};

struct qcow2_map {
    enum qcow2_ctype type;
    uint64_t host;       /* NORMAL: host offset of the guest offset; ZERO: prealloc or 0 */
    uint64_t len;        /* bytes from the guest offset with this status */
    bool copied;         /* NORMAL: refcount 1, writable in place */
    uint64_t l2e;        /* COMPRESSED: the descriptor */
};

int qcow2_lookup(struct qcow2 *s, uint64_t off, uint64_t max, struct qcow2_map *m);
/* As qcow2_lookup, but without I/O: 1 with *NEED = the host offset of the
 * L2 table when that table is not cached. */
int qcow2_lookup_cached(struct qcow2 *s, uint64_t off, uint64_t max, struct qcow2_map *m,
                        uint64_t *need);
/* Pins the L2 table for L1 index I, allocating or copying it so it is
 * writable; *l2 and *l2_off describe it.  Release with qcow2_cache_put. */
int qcow2_l2_for_write(struct qcow2 *s, uint64_t l1_index, uint8_t **l2);
uint64_t qcow2_l2e_get(const struct qcow2 *s, const uint8_t *l2, uint64_t i);
uint64_t qcow2_l2e_bitmap(const struct qcow2 *s, const uint8_t *l2, uint64_t i);
void qcow2_l2e_set(const struct qcow2 *s, uint8_t *l2, uint64_t i, uint64_t e, uint64_t bitmap);
void qcow2_compressed_range(const struct qcow2 *s, uint64_t l2e, uint64_t *off, uint64_t *len);
/* Frees what a (no longer referenced) L2 entry pointed to, at the next flush. */
int qcow2_release_entry(struct qcow2 *s, uint64_t l2e);
int qcow2_write_l1_entry(struct qcow2 *s, uint64_t i);
/*
 * Called without the lock, on the worker: makes the L2 table of L1 entry
 * L1I (a new one, or this image's own copy of one a snapshot shares) as
 * qcow2_l2_for_write would, but without holding the lock across the I/O
 * (the refcounts and the table written and fsynced, then the L1 entry).
 * Returns 0 also when there is nothing to make or it is left to the
 * locked path; a negative errno when it failed (nothing points to the
 * cluster it took).
 */
int qcow2_make_l2_unlocked(struct qcow2 *s, uint64_t l1i);

/* io.c */
void qcow2_submit(struct vdisk_req *req);
int qcow2_compress_cluster(struct vdisk_dev *dev, const void *buf, size_t len, uint64_t off,
                           void *out, size_t out_size, size_t *out_len);
int qcow2_write_compressed(struct vdisk_dev *dev, const struct iovec *pieces, size_t n,
                           uint64_t off);

/* compress.c */
int qcow2_decompress(const struct qcow2 *s, const uint8_t *src, size_t slen, uint8_t *dst,
                     size_t dlen);
/* Returns the compressed length, 0 when it does not shrink, or -errno. */
long qcow2_compress(int type, const uint8_t *src, size_t slen, uint8_t *dst, size_t dlen);

/* create.c */
int qcow2_create(const char *filename, uint64_t size, struct opt_set *os);
/* Sizes an image that qcow2_create would make (the driver's measure op). */
int qcow2_measure(uint64_t size, struct vdisk_dev *src, struct opt_set *os,
                  struct vdisk_measure_result *res);

/* qcow2.c */
/* Does S keep its guest data in an external data file? */
static inline bool qcow2_has_data_file(const struct qcow2 *s)
{
    return (s->incompat & QCOW2_INCOMPAT_DATA_FILE) != 0;
}
/* Opens s->backing_name (resolving it) as the backing device. */
int qcow2_open_backing(struct qcow2 *s, struct opt_set *os);

/* snapshot.c */
int qcow2_load_snapshots(struct qcow2 *s, uint64_t file_size);
/* The snapshot table as a check reads it (QEMU's check_read_snapshot_
 * table), for an image opened with "check": with FIX, too many entries
 * and a table past QEMU's 64 MiB are cut (the header's count written at
 * once; the clusters they held become leaks), extra data past 1024 bytes
 * dropped (*DROPPED counts those entries; the table must be written again
 * after the refcounts are repaired), each said to REPORT.  *REDUCED counts
 * the entries cut.  Without FIX such a table fails (-EFBIG, or -EINVAL
 * for a bad place) with QEMU's message ("ERROR ..."), and the image then
 * has no snapshots. */
int qcow2_check_snapshot_table(struct qcow2 *s, bool fix, void (*report)(void *, const char *),
                               void *opaque, uint64_t *dropped, uint64_t *reduced);
void qcow2_free_snapshots(struct qcow2 *s);
int qcow2_snapshot_create(struct qcow2 *s, const char *name);
int qcow2_snapshot_apply(struct qcow2 *s, const char *name);
int qcow2_snapshot_delete(struct qcow2 *s, const char *name);
/* A v3 image's snapshot table entry without the 16 bytes of extra data
 * that v3 requires (the 64-bit VM state size and the disk size): left by a
 * v2 image's upgrade that did not complete its entries. */
bool qcow2_snapshot_incomplete(const struct qcow2 *s, const struct qcow2_snapshot *sn);
/* Rewrites the snapshot table with every entry's extra data complete (24
 * bytes at least, as QEMU writes them) when an entry lacks its 16 bytes:
 * the incomplete ones of a v3 image (check -r all), or ALL such entries (an
 * upgrade to v3, before the header says v3).  *COMPLETED counts the
 * entries that lacked them.  0 or -errno. */
int qcow2_snapshots_complete(struct qcow2 *s, bool all, uint64_t *completed);
/* Writes the snapshot table again (to new clusters, the header switched,
 * the old ones freed), each entry's extra data at least 24 bytes. */
int qcow2_snapshots_write(struct qcow2 *s);
/* "is not cluster aligned", ...: why snapshot table entries are corrupt. */
const char *qcow2_snap_bad_text(enum qcow2_snap_bad bad);
/* Removes the table entries of the snapshots whose L1 table cannot be
 * used (check -r all); REPORT (may be NULL) hears of each.  *REMOVED
 * counts them. */
int qcow2_snapshot_remove_bad(struct qcow2 *s, void (*report)(void *, const char *),
                              void *opaque, uint64_t *removed);
/* Makes the snapshot NAME the image seen (read-only opens). */
int qcow2_snapshot_select(struct qcow2 *s, const char *name);
/* Sets the COPIED flags of the active tables from the refcounts; REPORT
 * (may be NULL) hears of each change (index, old entry, is an L1 entry). */
int qcow2_fix_copied(struct qcow2 *s, void (*report)(void *, uint64_t, uint64_t, bool),
                     void *opaque, uint64_t *fixed);

/* bitmap.c */
/* Reads and validates the bitmap directory (s->nb_bitmaps entries). */
int qcow2_load_bitmaps(struct qcow2 *s, uint64_t file_size);
void qcow2_free_bitmaps(struct qcow2 *s);
/* Removes every bitmap: the header without the extension first, then
 * their clusters freed (at the next flush). */
int qcow2_drop_bitmaps(struct qcow2 *s);
/* A read-write open: loads the enabled bitmaps (bounded memory) and flags
 * them in use on disk before anything is written. */
int qcow2_bitmaps_open_rw(struct qcow2 *s);
/* Close (under the lock): stores the bitmaps back, in-use flags cleared. */
int qcow2_bitmaps_close(struct qcow2 *s);
/* Sets the bits of the live bitmaps for guest bytes [OFF, OFF + LEN);
 * any thread, no lock.  Callers test s->bm_live first. */
void qcow2_bitmaps_mark(struct qcow2 *s, uint64_t off, uint64_t len);
/* Resize (under the lock): every bitmap loaded first (refused with
 * inconsistent ones), then resized with the disk and stored. */
int qcow2_bitmaps_before_resize(struct qcow2 *s);
int qcow2_bitmaps_after_resize(struct qcow2 *s);
/* The driver's bitmap op (vdisk/bitmap.h). */
int qcow2_bitmap_op(struct vdisk_dev *dev, struct bitmap_args *a);
/* Builds the bitmaps extension's 24 bytes. */
void qcow2_bitmaps_ext(const struct qcow2 *s, uint8_t *out);
/* Calls MARK(opaque, offset, length) for every cluster range the bitmaps
 * use (directory, tables, data); BAD(opaque, message) for table entries
 * that cannot be used.  Returns 0, or -errno when a table cannot be read. */
int qcow2_bitmap_clusters(struct qcow2 *s, void (*mark)(void *, uint64_t, uint64_t),
                          void (*bad)(void *, const char *), void *opaque);

/* check.c */
int qcow2_check(struct vdisk_dev *dev, unsigned flags, struct vdisk_check_result *res,
                vdisk_check_report_fn report, void *opaque);
int qcow2_rebuild_refcounts(struct qcow2 *s);
/* Frees leaked clusters (check -r leaks, silent). */
int qcow2_repair_leaks(struct qcow2 *s);
/* Rewrites the refcount structure with 2^ORDER-bit refcounts. */
int qcow2_change_refcount_order(struct qcow2 *s, uint32_t order);

/* image.c */
int qcow2_resize(struct vdisk_dev *dev, uint64_t size, unsigned flags);
int qcow2_make_empty(struct vdisk_dev *dev);
/* The VM state area (the driver's vmstate op, image.c). */
int qcow2_vmstate(struct vdisk_dev *dev, bool write, uint64_t pos, uint64_t len, uint64_t *off);
int qcow2_set_backing(struct vdisk_dev *dev, const char *name, const char *format);
int qcow2_amend(struct vdisk_dev *dev, struct opt_set *os);

/* Encryption (crypto.c): encrypt.format=luks. */
struct luks_create_opts;
struct qcow2_crypto_create {
    bool enabled;                 /* LUKS */
    bool aes;                     /* the legacy AES method (no header) */
    struct luks_create_opts *opts;
    const char *pass;
};
/* The header extension's 16 bytes (offset, length). */
int qcow2_crypto_parse_ext(struct qcow2 *s, const uint8_t *data, uint32_t len);
/* Opens the encryption of an image whose header is parsed: s->data. */
int qcow2_crypto_open(struct qcow2 *s, struct opt_set *os, uint64_t fsize);
void qcow2_crypto_close(struct qcow2 *s);
bool qcow2_encrypted(const struct qcow2 *s);
/* qemu-img amend's encrypt.state / keyslot / old-secret / new-secret /
 * iter-time: whether given, and applied (key slots added or erased). */
bool qcow2_crypto_amend_wanted(struct qcow2 *s, struct opt_set *os);
int qcow2_crypto_amend(struct qcow2 *s, struct opt_set *os);
/* Create: the encrypt.* options, and the LUKS header written at BASE
 * (*LENGTH: its bytes, for the extension). */
int qcow2_crypto_take_create_opts(struct opt_set *os, struct qcow2_crypto_create *cc);
void qcow2_crypto_create_free(struct qcow2_crypto_create *cc);
uint64_t qcow2_crypto_header_bytes(const struct qcow2_crypto_create *cc);
int qcow2_crypto_make_header(struct qcow2_crypto_create *cc, uint64_t base,
                             int (*write)(void *opaque, const void *buf, size_t len,
                                          uint64_t off),
                             void *opaque, uint64_t *length);

extern const struct vdisk_driver vdisk_driver_qcow2;

#endif /* VDISK_QCOW2_H */
