/* SPDX-License-Identifier: MIT */
/*
 * formats/qcow2/cache.c: bounded caches of metadata clusters (L2 tables,
 * refcount blocks), least recently used first out.
 *
 * Entries are pinned while in use and written back when dirty.  Before a
 * dirty L2 table is written, the refcount blocks are written and the file
 * is fsynced (see the ordering in qcow2.h).  The caller holds s->lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "qcow2.h"

int qcow2_cache_init(struct qcow2_cache *c, struct qcow2 *s, const char *what, unsigned n)
{
    memset(c, 0, sizeof *c);
    c->s = s;
    c->what = what;
    c->n = n < 4 ? 4 : n;
    /* Slots get their memory when first used: a large cache on a small or
     * lightly used image costs nothing. */
    c->e = calloc(c->n, sizeof *c->e);
    if (!c->e)
        return err_set(-ENOMEM, "out of memory");
    return 0;
}

/*
 * Slot memory comes in chunks of several slots mapped at once (clusters of
 * 4 KiB and more): a walk over every table of an image fills the cache, and
 * a separate allocation per slot cost two page faults a slot (the
 * alignment's slack and the slot), one fault per slot this way.  Chunks
 * are recorded in the slots that start them (chunk_len).
 */
#define CACHE_CHUNK_BYTES (256u << 10)

void qcow2_cache_fini(struct qcow2_cache *c)
{
    if (!c->e)
        return;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->e[i].chunk_len)
            munmap(c->e[i].data, c->e[i].chunk_len);
        else if (!c->e[i].chunked)
            free(c->e[i].data);
    }
    free(c->e);
    c->e = NULL;
}

/* Memory for slot I, the first slot never used (and those after it in
 * its chunk). */
static int slot_memory(struct qcow2_cache *c, unsigned i)
{
    size_t cs = c->s->cluster_size;
    if (cs < 4096 || cs >= CACHE_CHUNK_BYTES) {
        c->e[i].data = aligned_alloc_or_null(4096, cs);
        return c->e[i].data ? 0 : -ENOMEM;
    }
    unsigned k = (unsigned)(CACHE_CHUNK_BYTES / cs);
    if (k > c->n - i)
        k = c->n - i;
    void *p = mmap(NULL, (size_t)k * cs, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                   -1, 0);
    if (p == MAP_FAILED)
        return -ENOMEM;
    for (unsigned j = 0; j < k; j++) {
        c->e[i + j].data = (uint8_t *)p + (size_t)j * cs;
        c->e[i + j].chunked = true;
    }
    c->e[i].chunk_len = (size_t)k * cs;
    return 0;
}

static struct qcow2_cache_entry *find_data(struct qcow2_cache *c, const uint8_t *data)
{
    if (c->last < c->n && c->e[c->last].data == data && data)
        return &c->e[c->last];
    for (unsigned i = 0; i < c->used; i++)
        if (c->e[i].data == data)
            return &c->e[i];
    return NULL;
}

bool qcow2_cache_has_dirty(const struct qcow2_cache *c)
{
    for (unsigned i = 0; i < c->n; i++)
        if (c->e[i].dirty)
            return true;
    return false;
}

/* Writes one dirty entry, after what it depends on. */
static int write_entry(struct qcow2_cache *c, struct qcow2_cache_entry *e)
{
    struct qcow2 *s = c->s;
    if (c == &s->l2c) {
        /* Refcounts (and guest data) first, durably. */
        int r = qcow2_cache_write_back(&s->rbc);
        if (r == 0)
            r = dev_flush(s->file);
        if (r < 0)
            return r;
    }
    int r = dev_pwrite(s->file, e->data, s->cluster_size, e->offset);
    if (r < 0)
        return r;
    e->dirty = false;
    return 0;
}

int qcow2_cache_write_back(struct qcow2_cache *c)
{
    bool any = false;
    for (unsigned i = 0; i < c->n; i++)
        any |= c->e[i].dirty;
    if (!any)
        return 0;
    if (c == &c->s->l2c) {
        int r = qcow2_cache_write_back(&c->s->rbc);
        if (r == 0)
            r = dev_flush(c->s->file);
        if (r < 0)
            return r;
    }
    for (unsigned i = 0; i < c->n; i++) {
        if (!c->e[i].dirty)
            continue;
        int r = dev_pwrite(c->s->file, c->e[i].data, c->s->cluster_size, c->e[i].offset);
        if (r < 0)
            return r;
        c->e[i].dirty = false;
    }
    return 0;
}

/* A hit on entry E. */
static void hit(struct qcow2_cache *c, struct qcow2_cache_entry *e, bool read, uint8_t **data)
{
    e->pins++;
    e->lru = ++c->clock;
    c->hits++;
    c->last = (unsigned)(e - c->e);
    if (!read)
        memset(e->data, 0, c->s->cluster_size);
    *data = e->data;
}

int qcow2_cache_get(struct qcow2_cache *c, uint64_t offset, bool read, uint8_t **data)
{
    /* The entry used last first: walks (a table's refcounts, a run of
     * clusters) use one entry many times in a row. */
    if (offset && c->last < c->n && c->e[c->last].data && c->e[c->last].offset == offset) {
        hit(c, &c->e[c->last], read, data);
        return 0;
    }
    struct qcow2_cache_entry *victim = NULL;
    for (unsigned i = 0; i < c->n; i++) {
        struct qcow2_cache_entry *e = &c->e[i];
        if (i == c->used) {
            /* A slot never used (the used ones come first): take it rather
             * than evict. */
            if (!e->data && slot_memory(c, i) < 0)
                return err_set(-ENOMEM, "out of memory for the %s cache", c->what);
            c->used++;
            victim = e;
            break;
        }
        if (e->offset == offset) {
            hit(c, e, read, data);
            return 0;
        }
        if (e->pins == 0 && (!victim || e->lru < victim->lru))
            victim = e;
    }
    if (!victim)
        return err_set(-ENOMEM, "%s: the %s cache is full of tables in use",
                       c->s->dev->filename, c->what);
    if (victim->dirty) {
        int r = write_entry(c, victim);
        if (r < 0)
            return r;
    }
    victim->offset = 0;
    c->misses++;
    if (read) {
        int r = dev_pread(c->s->file, victim->data, c->s->cluster_size, offset);
        if (r < 0)
            return r;
    } else {
        memset(victim->data, 0, c->s->cluster_size);
    }
    victim->offset = offset;
    victim->pins = 1;
    victim->lru = ++c->clock;
    c->last = (unsigned)(victim - c->e);
    *data = victim->data;
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
        e->dirty = true;
        c->s->meta_dirty = true;
    }
}

void qcow2_cache_forget(struct qcow2_cache *c, uint64_t offset)
{
    for (unsigned i = 0; i < c->n; i++) {
        if (c->e[i].offset == offset && c->e[i].pins == 0) {
            c->e[i].offset = 0;
            c->e[i].dirty = false;
        }
    }
}
