/* SPDX-License-Identifier: MIT */
/* lib/splice.h: zero-copy reads for the library's servers (lib/splice.c). */
#ifndef VDISK_SPLICE_H
#define VDISK_SPLICE_H

#include <stdbool.h>
#include <stdint.h>

#include <vdisk/queue.h>

/*
 * Zero-copy reads (lib/splice.c): splices the LEN bytes of Q's device at
 * OFF into the pipe PIPE_WR when they lie as they are in host files and
 * are all in the page cache now, mapped and spliced as one top-level
 * request of Q, without waiting for I/O; they take *BUFS pipe buffers (a
 * page each), at most MAX_BUFS (the pipe's room).
 * Returns 0 (*ZERO set and nothing spliced when the range reads as
 * zeroes); -EAGAIN or -ENOTSUP when it cannot be done now or at all,
 * -ENOSPC when it would take more than MAX_BUFS buffers, the pipe
 * untouched; another -errno when a splice failed (-ENODATA: a file's
 * end), with part of the range possibly in the pipe.  Sets no error
 * message.  On Q's thread.
 */
int dev_splice_read(vdisk_queue *q, uint64_t off, uint64_t len, int pipe_wr,
                    unsigned max_bufs, unsigned *bufs, bool *zero);

/* The pages (of 4 KiB) that the bytes AT..AT+LEN touch: the pipe buffers
 * they take once spliced, and the pages cachestat counts for them. */
static inline uint64_t splice_pages(uint64_t at, uint64_t len)
{
    return (at + len + 4095u) / 4096u - at / 4096u;
}

#endif /* VDISK_SPLICE_H */
