/* SPDX-License-Identifier: MIT */
/*
 * formats/qcow2/cache.c: bounded caches of metadata clusters (L2 tables,
 * refcount blocks), least recently used first out.
 *
 * Entries are pinned while in use and written back when dirty.  Before a
 * dirty L2 table is written, the refcount blocks are written and the file
 * is fsynced (see the ordering in qcow2.h).  The caller holds s->lock,
 * except for qcow2_prefetch(), which takes it itself around its reads, and
 * qcow2_wb_write(), which writes copies under wb_lock alone.
 *
 * Every operation costs the same whatever the cache's size: with 512-byte
 * clusters the default L2 cache has 65,536 slots, and the allocator looks
 * at refcount blocks millions of times in a row.  Slots are found through
 * two hash chains (by host offset, by data pointer), the least recently
 * used comes from the tail of a list, and write-back walks a list of the
 * dirty slots only.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

#define NIL UINT32_MAX

static uint32_t hash_u64(uint64_t v, uint32_t mask)
{
    v ^= v >> 33;
    v *= 0xff51afd7ed558ccdull;
    v ^= v >> 33;
    return (uint32_t)v & mask;
}

static uint32_t off_hash(const struct qcow2_cache *c, uint64_t off)
{
    return hash_u64(off >> c->s->cluster_bits, c->hmask);
}

static uint32_t ptr_hash(const struct qcow2_cache *c, const uint8_t *p)
{
    return hash_u64((uint64_t)(uintptr_t)p >> 9, c->hmask);
}

int qcow2_cache_init(struct qcow2_cache *c, struct qcow2 *s, const char *what, unsigned n)
{
    memset(c, 0, sizeof *c);
    c->s = s;
    c->what = what;
    c->n = n < 4 ? 4 : n;
    uint32_t buckets = 16;
    while (buckets < c->n * 2u && buckets < (1u << 30))
        buckets *= 2;
    c->hmask = buckets - 1;
    /* Slots get their memory when first used, a slab of them at a time
     * (about 64 KiB): a large cache on a small or lightly used image costs
     * nothing, and small clusters do not each take an aligned page. */
    uint64_t per = s->cluster_size >= 65536 ? 1 : 65536 / s->cluster_size;
    c->per_slab = (unsigned)per;
    c->e = calloc(c->n, sizeof *c->e);
    c->obucket = malloc(buckets * sizeof *c->obucket);
    c->pbucket = malloc(buckets * sizeof *c->pbucket);
    c->dirty = malloc(c->n * sizeof *c->dirty);
    c->slabs = calloc((c->n + c->per_slab - 1) / c->per_slab, sizeof *c->slabs);
    if (!c->e || !c->obucket || !c->pbucket || !c->dirty || !c->slabs) {
        qcow2_cache_fini(c);
        return err_set(-ENOMEM, "out of memory");
    }
    memset(c->obucket, 0xff, buckets * sizeof *c->obucket);
    memset(c->pbucket, 0xff, buckets * sizeof *c->pbucket);
    c->head = c->tail = NIL;
    return 0;
}

void qcow2_cache_fini(struct qcow2_cache *c)
{
    if (c->slabs)
        for (unsigned i = 0; i < (c->n + c->per_slab - 1) / c->per_slab; i++)
            free(c->slabs[i]);
    free(c->slabs);
    free(c->e);
    free(c->obucket);
    free(c->pbucket);
    free(c->dirty);
    c->slabs = NULL;
    c->e = NULL;
    c->obucket = c->pbucket = c->dirty = NULL;
}

/* ---- Chains and lists ------------------------------------------------------ */

static void chain_remove(struct qcow2_cache *c, uint32_t i)
{
    struct qcow2_cache_entry *e = &c->e[i];
    if (!e->key)
        return;
    uint32_t *p = &c->obucket[off_hash(c, e->key)];
    while (*p != NIL && *p != i)
        p = &c->e[*p].onext;
    if (*p == i)
        *p = e->onext;
    e->key = 0;
}

static void chain_add(struct qcow2_cache *c, uint32_t i, uint64_t off)
{
    uint32_t h = off_hash(c, off);
    c->e[i].key = off;
    c->e[i].onext = c->obucket[h];
    c->obucket[h] = i;
}

static void lru_unlink(struct qcow2_cache *c, uint32_t i)
{
    struct qcow2_cache_entry *e = &c->e[i];
    if (e->prev != NIL)
        c->e[e->prev].next = e->next;
    else
        c->head = e->next;
    if (e->next != NIL)
        c->e[e->next].prev = e->prev;
    else
        c->tail = e->prev;
}

static void lru_front(struct qcow2_cache *c, uint32_t i)
{
    struct qcow2_cache_entry *e = &c->e[i];
    e->prev = NIL;
    e->next = c->head;
    if (c->head != NIL)
        c->e[c->head].prev = i;
    c->head = i;
    if (c->tail == NIL)
        c->tail = i;
}

static void lru_back(struct qcow2_cache *c, uint32_t i)
{
    struct qcow2_cache_entry *e = &c->e[i];
    e->next = NIL;
    e->prev = c->tail;
    if (c->tail != NIL)
        c->e[c->tail].next = i;
    c->tail = i;
    if (c->head == NIL)
        c->head = i;
}

static struct qcow2_cache_entry *find_offset(struct qcow2_cache *c, uint64_t off)
{
    if (!off || !c->e)
        return NULL;
    for (uint32_t i = c->obucket[off_hash(c, off)]; i != NIL; i = c->e[i].onext) {
        struct qcow2_cache_entry *e = &c->e[i];
        /* offset may have been cleared behind the chain's back (check.c) */
        if (e->key == off && e->offset == off)
            return e;
    }
    return NULL;
}

static struct qcow2_cache_entry *find_data(struct qcow2_cache *c, const uint8_t *data)
{
    if (!c->e)
        return NULL;
    for (uint32_t i = c->pbucket[ptr_hash(c, data)]; i != NIL; i = c->e[i].pnext)
        if (c->e[i].data == data)
            return &c->e[i];
    return NULL;
}

static void mark_dirty(struct qcow2_cache *c, struct qcow2_cache_entry *e)
{
    e->dirty = true;
    e->dgen = ++c->dclock;
    if (!e->listed) {
        e->listed = true;
        c->dirty[c->ndirty++] = (uint32_t)(e - c->e);
    }
}

/* ---- Write-back ------------------------------------------------------------ */

bool qcow2_cache_has_dirty(const struct qcow2_cache *c)
{
    for (unsigned k = 0; k < c->ndirty; k++)
        if (c->e[c->dirty[k]].dirty)
            return true;
    return false;
}

/* Writes one dirty entry, after what it depends on. */
static int write_entry(struct qcow2_cache *c, struct qcow2_cache_entry *e)
{
    struct qcow2 *s = c->s;
    pthread_mutex_lock(&s->wb_lock);
    int r = 0;
    if (c == &s->l2c) {
        /* Refcounts (and guest data) first, durably. */
        r = qcow2_cache_write_back(&s->rbc);
        if (r == 0)
            r = dev_flush(s->file);
        if (r == 0 && s->data_file)
            r = dev_flush(s->data_file); /* (guest data in an external data file) */
    }
    if (r == 0)
        r = dev_pwrite(s->file, e->data, s->cluster_size, e->offset);
    c->wb_gen++;
    if (r == 0)
        e->dirty = false;
    pthread_mutex_unlock(&s->wb_lock);
    return r;
}

/* qsort's comparison has no argument of its own: the slots sorted. */
static _Thread_local const struct qcow2_cache_entry *sort_base;

static int by_offset(const void *a, const void *b)
{
    uint64_t x = sort_base[*(const uint32_t *)a].offset, y = sort_base[*(const uint32_t *)b].offset;
    return x < y ? -1 : x > y;
}

static void compact_dirty(struct qcow2_cache *c)
{
    /* Drop the slots listed whose dirty flag went (check.c forgets). */
    unsigned k = 0;
    for (unsigned j = 0; j < c->ndirty; j++) {
        struct qcow2_cache_entry *e = &c->e[c->dirty[j]];
        if (e->dirty && e->offset)
            c->dirty[k++] = c->dirty[j];
        else
            e->listed = false;
    }
    c->ndirty = k;
    /* In file order: neighbouring tables go out as a sequential stream. */
    sort_base = c->e;
    qsort(c->dirty, c->ndirty, sizeof *c->dirty, by_offset);
}

static int write_back_locked(struct qcow2_cache *c)
{
    compact_dirty(c);
    if (!c->ndirty)
        return 0;
    if (c == &c->s->l2c) {
        int r = qcow2_cache_write_back(&c->s->rbc);
        if (r == 0)
            r = dev_flush(c->s->file);
        if (r == 0 && c->s->data_file)
            r = dev_flush(c->s->data_file); /* guest data in an external data file */
        if (r < 0)
            return r;
    }
    for (unsigned j = 0; j < c->ndirty; j++) {
        struct qcow2_cache_entry *e = &c->e[c->dirty[j]];
        int r = dev_pwrite(c->s->file, e->data, c->s->cluster_size, e->offset);
        if (r < 0) {
            /* The ones written are clean; the rest stay listed. */
            unsigned left = 0;
            for (unsigned i = j; i < c->ndirty; i++)
                c->dirty[left++] = c->dirty[i];
            c->ndirty = left;
            c->wb_gen++;
            return r;
        }
        e->dirty = false;
        e->listed = false;
    }
    c->ndirty = 0;
    c->wb_gen++;
    return 0;
}

int qcow2_cache_write_back(struct qcow2_cache *c)
{
    pthread_mutex_lock(&c->s->wb_lock);
    int r = write_back_locked(c);
    pthread_mutex_unlock(&c->s->wb_lock);
    return r;
}

/* ---- Write-back without the lock ------------------------------------------- */

void qcow2_wb_set_free(struct qcow2_wb_set *w)
{
    free(w->offset);
    free(w->dgen);
    free(w->copies);
    memset(w, 0, sizeof *w);
}

int qcow2_cache_copy_dirty(struct qcow2_cache *c, struct qcow2_wb_set *w)
{
    memset(w, 0, sizeof *w);
    compact_dirty(c);
    if (!c->ndirty)
        return 0;
    uint64_t cs = c->s->cluster_size;
    w->offset = malloc(c->ndirty * sizeof *w->offset);
    w->dgen = malloc(c->ndirty * sizeof *w->dgen);
    w->copies = aligned_alloc_or_null(4096, c->ndirty * cs);
    if (!w->offset || !w->dgen || !w->copies) {
        qcow2_wb_set_free(w);
        return -ENOMEM;
    }
    for (unsigned j = 0; j < c->ndirty; j++) {
        const struct qcow2_cache_entry *e = &c->e[c->dirty[j]];
        w->offset[j] = e->offset;
        w->dgen[j] = e->dgen;
        memcpy(w->copies + (uint64_t)j * cs, e->data, cs);
    }
    w->n = c->ndirty;
    c->wb_gen++;
    return 0;
}

int qcow2_wb_write(struct qcow2 *s, const struct qcow2_wb_set *w)
{
    for (unsigned j = 0; j < w->n; j++) {
        /* Tables next to each other in the file go out in one write. */
        unsigned k = j + 1;
        while (k < w->n && k - j < 256 && w->offset[k] == w->offset[k - 1] + s->cluster_size)
            k++;
        int r = dev_pwrite(s->file, w->copies + (uint64_t)j * s->cluster_size,
                           (uint64_t)(k - j) * s->cluster_size, w->offset[j]);
        if (r < 0)
            return r;
        j = k - 1;
    }
    return 0;
}

void qcow2_cache_written(struct qcow2_cache *c, const struct qcow2_wb_set *w)
{
    if (w->n)
        c->wb_gen++;
    for (unsigned j = 0; j < w->n; j++) {
        struct qcow2_cache_entry *e = find_offset(c, w->offset[j]);
        if (e && e->dirty && e->dgen == w->dgen[j])
            e->dirty = false; /* not changed since its copy was taken */
    }
}

/* ---- Lookup ---------------------------------------------------------------- */

/* Gives the next never-used slot its memory, or NULL (no slot left or no
 * memory: *ERR says which). */
static struct qcow2_cache_entry *new_slot(struct qcow2_cache *c, int *err)
{
    *err = 0;
    if (c->used == c->n)
        return NULL;
    uint32_t i = c->used;
    unsigned slab = i / c->per_slab, k = i % c->per_slab;
    if (!c->slabs[slab]) {
        uint64_t cs = c->s->cluster_size;
        unsigned cnt = c->per_slab;
        if ((uint64_t)slab * c->per_slab + cnt > c->n)
            cnt = c->n - slab * c->per_slab;
        c->slabs[slab] = aligned_alloc_or_null(cs < 4096 ? cs : 4096, cnt * cs);
        if (!c->slabs[slab]) {
            *err = err_set(-ENOMEM, "out of memory for the %s cache", c->what);
            return NULL;
        }
    }
    struct qcow2_cache_entry *e = &c->e[i];
    e->data = c->slabs[slab] + (uint64_t)k * c->s->cluster_size;
    uint32_t h = ptr_hash(c, e->data);
    e->pnext = c->pbucket[h];
    c->pbucket[h] = i;
    c->used++;
    lru_front(c, i);
    return e;
}

/* A table read in flight for OFFSET (io.c) may bring what the file held
 * before this entry is written back: it must not be installed. */
static void loads_conflict(struct qcow2 *s, uint64_t offset)
{
    for (struct qcow2_load *l = s->loads; l; l = l->next)
        if (l->offset == offset)
            l->stale = true;
}

static void touch(struct qcow2_cache *c, struct qcow2_cache_entry *e)
{
    uint32_t i = (uint32_t)(e - c->e);
    e->pins++;
    e->lru = ++c->clock;
    c->hits++;
    lru_unlink(c, i);
    lru_front(c, i);
}

int qcow2_cache_peek(struct qcow2_cache *c, uint64_t offset, uint8_t **data)
{
    struct qcow2_cache_entry *e = find_offset(c, offset);
    if (!e)
        return 1;
    touch(c, e);
    *data = e->data;
    return 0;
}

int qcow2_cache_install(struct qcow2_cache *c, uint64_t offset, const uint8_t *src)
{
    if (find_offset(c, offset))
        return 0;
    int err;
    struct qcow2_cache_entry *victim = new_slot(c, &err);
    if (err)
        return err;
    /* The least recently used clean table; a few dirty ones are passed
     * over, but not the whole cache. */
    unsigned looked = 0;
    for (uint32_t i = c->tail; !victim && i != NIL && looked < 256; i = c->e[i].prev, looked++)
        if (c->e[i].pins == 0 && !(c->e[i].dirty && c->e[i].offset))
            victim = &c->e[i];
    if (!victim)
        return 1;
    uint32_t i = (uint32_t)(victim - c->e);
    chain_remove(c, i);
    victim->dirty = false;
    memcpy(victim->data, src, c->s->cluster_size);
    victim->offset = offset;
    chain_add(c, i, offset);
    victim->pins = 0;
    victim->lru = ++c->clock;
    c->misses++;
    lru_unlink(c, i);
    lru_front(c, i);
    return 0;
}

void qcow2_prefetch(struct qcow2_cache *c, const uint64_t *offs, unsigned n)
{
    enum { MAX = 8 };
    struct qcow2 *s = c->s;
    uint64_t want[MAX], cs = s->cluster_size;
    unsigned k = 0;
    pthread_mutex_lock(&s->lock);
    for (unsigned i = 0; i < n && k < MAX; i++) {
        bool dup = false;
        for (unsigned j = 0; j < k; j++)
            dup |= want[j] == offs[i];
        if (offs[i] && offs[i] % cs == 0 && !dup && !find_offset(c, offs[i]))
            want[k++] = offs[i];
    }
    uint64_t gen = c->wb_gen;
    pthread_mutex_unlock(&s->lock);
    if (!k)
        return;
    uint8_t *buf = aligned_alloc_or_null(4096, k * cs);
    if (!buf)
        return;
    bool ok[MAX];
    struct err_saved saved;
    err_save(&saved);
    for (unsigned j = 0; j < k; j++) {
        dev_debug_event(s->file, c == &s->l2c ? "l2_load" : "refblock_load"); /* (blkdebug) */
        ok[j] = dev_pread(s->file, buf + j * cs, cs, want[j]) == 0;
    }
    err_restore(&saved);
    pthread_mutex_lock(&s->lock);
    for (unsigned j = 0; j < k && c->wb_gen == gen; j++) {
        if (!ok[j] || find_offset(c, want[j]))
            continue;
        if (qcow2_cache_install(c, want[j], buf + j * cs) == 0 && c == &s->l2c)
            loads_conflict(s, want[j]); /* a load in flight may bring an older copy */
    }
    pthread_mutex_unlock(&s->lock);
    free(buf);
}

int qcow2_cache_get(struct qcow2_cache *c, uint64_t offset, bool read, uint8_t **data)
{
    struct qcow2_cache_entry *e = find_offset(c, offset);
    if (e) {
        touch(c, e);
        if (!read)
            memset(e->data, 0, c->s->cluster_size);
        *data = e->data;
        return 0;
    }
    int err;
    struct qcow2_cache_entry *victim = new_slot(c, &err);
    if (err)
        return err;
    if (!victim) {
        /* The least recently used clean table among the 256 at the tail,
         * so that a write-back (and its fsync, under the lock) comes only
         * when those are all dirty; else the least recently used unpinned
         * one, as far up the list as it takes. */
        struct qcow2_cache_entry *lru = NULL;
        unsigned looked = 0;
        for (uint32_t i = c->tail; i != NIL && !(lru && looked >= 256);
             i = c->e[i].prev, looked++) {
            if (c->e[i].pins)
                continue;
            if (!(c->e[i].dirty && c->e[i].offset)) {
                victim = &c->e[i];
                break;
            }
            if (!lru)
                lru = &c->e[i];
        }
        if (!victim)
            victim = lru;
    }
    if (!victim)
        return err_set(-ENOMEM, "%s: the %s cache is full of tables in use",
                       c->s->dev->filename, c->what);
    if (victim->dirty && victim->offset) {
        int r;
        if (c == &c->s->l2c)
            /* The fsync that must precede it serves every dirty table:
             * write them all, so a cache full of dirty tables does not
             * pay one fsync per table it evicts. */
            r = qcow2_cache_write_back(c);
        else
            r = write_entry(c, victim);
        if (r < 0)
            return r;
    }
    victim->dirty = false;
    uint32_t i = (uint32_t)(victim - c->e);
    chain_remove(c, i);
    victim->offset = 0;
    c->misses++;
    if (read) {
        dev_debug_event(c->s->file, c == &c->s->l2c ? "l2_load" : "refblock_load");
        int r = dev_pread(c->s->file, victim->data, c->s->cluster_size, offset);
        if (r < 0) {
            lru_unlink(c, i);
            lru_back(c, i);
            return r;
        }
    } else {
        memset(victim->data, 0, c->s->cluster_size);
    }
    victim->offset = offset;
    chain_add(c, i, offset);
    if (c == &c->s->l2c)
        loads_conflict(c->s, offset);
    victim->pins = 1;
    victim->lru = ++c->clock;
    lru_unlink(c, i);
    lru_front(c, i);
    *data = victim->data;
    return 0;
}

bool qcow2_cache_has(struct qcow2_cache *c, uint64_t offset)
{
    return find_offset(c, offset) != NULL;
}

int qcow2_cache_fill(struct qcow2_cache *c, uint64_t offset, const uint8_t *src)
{
    if (find_offset(c, offset))
        return 0;
    uint8_t *d;
    int r = qcow2_cache_get(c, offset, false, &d);
    if (r < 0)
        return r;
    memcpy(d, src, c->s->cluster_size);
    qcow2_cache_put(c, d);
    return 0;
}

void qcow2_cache_put(struct qcow2_cache *c, uint8_t *data)
{
    struct qcow2_cache_entry *e = find_data(c, data);
    if (e && e->pins > 0)
        e->pins--;
}

void qcow2_cache_dirty(struct qcow2_cache *c, uint8_t *data)
{
    struct qcow2_cache_entry *e = find_data(c, data);
    if (e) {
        mark_dirty(c, e);
        c->s->meta_dirty = true;
    }
}

void qcow2_cache_forget(struct qcow2_cache *c, uint64_t offset)
{
    struct qcow2_cache_entry *e = find_offset(c, offset);
    if (!e || e->pins)
        return;
    uint32_t i = (uint32_t)(e - c->e);
    chain_remove(c, i);
    e->offset = 0;
    e->dirty = false;
    /* Reused before any slot that holds a table. */
    lru_unlink(c, i);
    lru_back(c, i);
}
