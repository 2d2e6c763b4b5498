/* SPDX-License-Identifier: MIT */
/*
 * tests/common/fault.h: a fault-injecting protocol device, for tests.
 *
 * A fault disk holds two images: the durable one (what survives a power
 * cut) and the current one (what reads see).  Between them sits a volatile
 * write cache: the writes, write zeroes and discards since the last
 * completed flush, in order, as a disk with a volatile cache holds them.  A
 * flush makes them durable.  Sectors are 512 bytes; the part of a write
 * that falls in one sector is the unit that survives or not.
 *
 * The control calls (fault_*) let a test:
 *   - count writes (WRITE, WRITE_ZEROES and DISCARD requests), flushes and
 *     reads;
 *   - cut the power when write N is submitted (the write stays in flight
 *     in the cache, fails with -EIO, and so does every request after it);
 *   - watch every write as it enters the cache (a hook), to take crash
 *     images at every write without replaying the workload;
 *   - make write N (or flush N) fail with an error, once or several times;
 *     a failed flush may lose the cached writes, as Linux does after an
 *     fsync error (the pages are marked clean: reads still see the data,
 *     the disk never gets it);
 *   - build the post-crash durable image under a policy (drop every
 *     unflushed write, keep them all, keep a random subset of writes or of
 *     sectors, keep an ordered prefix, tear the last write at a sector
 *     boundary) and reopen it as a device.
 *
 * The fault disk outlives the devices opened over it: the test frees it.
 *
 * Test code only: fault.c is built into the static library vdisk_fault
 * (tests/CMakeLists.txt), which a test links beside the library's static
 * archive.  It is a driver like the library's own and uses the same
 * internal interface (lib/internal.h: dev_alloc, req_complete, offload_*,
 * err_set); the library knows nothing of it, and neither libvdisk.so nor
 * libvdisk.a holds any of it (the CTest test library-contents checks).
 */
#ifndef VDISK_FAULT_H
#define VDISK_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "driver.h"

#define FAULT_SECTOR 512u

struct fault_disk;

enum fault_policy {
    FAULT_DROP_ALL,       /* only what the last completed flush made durable */
    FAULT_KEEP_ALL,       /* every cached write, including the one in flight */
    FAULT_KEEP_PREFIX,    /* the first k cached writes, k random (ordered cache) */
    FAULT_RANDOM_WRITES,  /* each cached write whole or not at all, at random */
    FAULT_RANDOM_SECTORS, /* each sector of each cached write, at random */
    FAULT_TEAR_LAST,      /* all but the last write; the last one torn after a
                             random number of sectors */
    FAULT_POLICIES
};

const char *fault_policy_name(enum fault_policy p);

/* A fault disk holding a copy of DATA (durable), growing up to LIMIT bytes
 * (writes beyond fail with -ENOSPC).  NULL when out of memory. */
struct fault_disk *fault_new(const void *data, size_t len, uint64_t limit);
/* Frees the disk; every device opened over it must be closed first. */
void fault_free(struct fault_disk *f);

/* The settings the reliability tests open fault disks with: write-back,
 * the threads engine with one thread (so that the order of writes, and so
 * the crash points, are the same on every run); READ_ONLY as given. */
struct vdisk_open_params fault_params(bool read_only);

/* Opens a protocol device named FILENAME over F (one at a time). */
int fault_open(struct vdisk_dev **devp, struct fault_disk *f, const char *filename,
               const struct vdisk_open_params *params);

/* Counters: writes (write, write zeroes, discard) and flushes submitted. */
uint64_t fault_writes(const struct fault_disk *f);
uint64_t fault_flushes(const struct fault_disk *f);
/* Reads submitted (that reached the disk: not after a power cut). */
uint64_t fault_reads(const struct fault_disk *f);
/* Reads handed to the disk so far, done or not (in slow mode a read is
 * counted by fault_reads only when it is carried out, DELAY later). */
uint64_t fault_reads_started(const struct fault_disk *f);
/* Writes waiting in the volatile cache. */
size_t fault_cached(const struct fault_disk *f);

/* Cuts the power when write number N (1-based) is submitted; 0 disarms. */
void fault_crash_at(struct fault_disk *f, uint64_t n);
/* Cuts the power now. */
void fault_crash_now(struct fault_disk *f);
bool fault_crashed(const struct fault_disk *f);

/*
 * Errors: writes N .. N+COUNT-1 (1-based, counting every write submitted)
 * fail with ERR (-EIO, -ENOSPC, ...) and change nothing.  COUNT 0 disarms.
 */
void fault_fail_writes(struct fault_disk *f, uint64_t n, unsigned count, int err);
/* The same for reads: N counts every read carried out (fault_reads). */
void fault_fail_reads(struct fault_disk *f, uint64_t n, unsigned count, int err);
/*
 * Flush number N (1-based) fails with ERR, COUNT times in a row.  LOSE:
 * the cached writes are lost (never reach the durable image; reads still
 * see them), as a page cache that marks pages clean after a failed
 * writeback.  Otherwise they stay cached for a later flush.
 */
void fault_fail_flushes(struct fault_disk *f, uint64_t n, unsigned count, int err, bool lose);
/*
 * Slow mode: every request waits MS milliseconds on a thread of the disk's
 * own before it is carried out, and completes from there (as a remote or
 * busy disk would); 0 (the default) carries requests out at once, inside
 * the submitting call.  Returns 0 or -ENOMEM.
 */
int fault_set_delay(struct fault_disk *f, unsigned ms);
/*
 * HOLD: every flush waits (on the thread that carries it out: the
 * submitting one, or the disk's own in slow mode) until it is called again
 * with false; reads and writes go on meanwhile.  fault_flushes_held() tells
 * how many are waiting.
 */
void fault_hold_flushes(struct fault_disk *f, bool hold);
unsigned fault_flushes_held(struct fault_disk *f);
/* The same for reads that overlap [OFF, OFF + LEN) (LEN 0: none held). */
void fault_hold_reads(struct fault_disk *f, uint64_t off, uint64_t len);
unsigned fault_reads_held(struct fault_disk *f);
/* The most the disk may grow to (writes past it fail with -ENOSPC). */
void fault_set_limit(struct fault_disk *f, uint64_t limit);

/*
 * Called for every write after it entered the cache, with the write's
 * number and byte range (OFF, LEN: what the write, write zeroes or discard
 * covers in the file), outside the disk's lock, before the request
 * completes: a test takes crash images there (fault_image) without
 * replaying, and may tell what the write lands on.  With several threads
 * writing, the hook runs on each of them, possibly at once.
 */
typedef void (*fault_hook_fn)(struct fault_disk *f, uint64_t write_no, uint64_t off,
                              uint64_t len, void *opaque);
void fault_set_hook(struct fault_disk *f, fault_hook_fn fn, void *opaque);

/*
 * The durable image after a power cut now, under POLICY (random choices
 * from SEED), in a new buffer (*DATA, *LEN; free() it).  Returns 0 or
 * -ENOMEM.  The disk itself is not changed.
 */
int fault_image(struct fault_disk *f, enum fault_policy policy, uint64_t seed, uint8_t **data,
                size_t *len);
/* The durable image as it is (what survives if the cache is dropped). */
int fault_durable(struct fault_disk *f, uint8_t **data, size_t *len);
/* The image that reads see now. */
int fault_current(struct fault_disk *f, uint8_t **data, size_t *len);

/* A new fault disk holding the post-crash image under POLICY. */
struct fault_disk *fault_after_crash(struct fault_disk *f, enum fault_policy policy,
                                     uint64_t seed);

#endif /* VDISK_FAULT_H */
