/* SPDX-License-Identifier: MIT */
/*
 * fuzz/nbd.c: the fuzz input is what an NBD client sends to the library's
 * NBD server (lib/nbd/, vdisk/nbd.h): the handshake's flags and options,
 * then requests and their payloads.  The bytes go straight into the
 * connection's handler (nbd_rx_want, nbd_rx_got: no socket), in pieces;
 * between pieces the connection's queue is reaped (replies queued as
 * requests complete) and what it queued is taken as sent.  Any crash,
 * sanitizer report, leak or hang is a bug; so is a connection holding
 * more buffers than its bound (the harness returns 1).
 *
 * Input: byte 0 picks the export (bit 0: read-only, bit 1: trims unmap,
 * bit 2: detect zeroes), then pieces, each a length byte N and N bytes
 * (the last piece may be short); N = 0 reaps the queue, waiting for one
 * completion.  The export is a 1 MiB memory disk named "" ("fuzz"
 * when byte 0 has bit 3), with the description "fuzz disk".
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/nbd.h>
#include <vdisk/queue.h>

#include "fuzz.h"
#include "nbd/nbd_internal.h"

static void quiet_log(void *opaque, const char *line)
{
    (void)opaque;
    (void)line;
}

/* Takes every queued reply as sent. */
static void drain_tx(struct nbd_conn *c)
{
    size_t n = 0;
    for (struct nbd_tx *t = c->tx_head; t; t = t->next)
        n += t->len - t->off;
    nbd_tx_sent(c, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    static uint8_t disk[1 << 20];
    if (!disk[1])
        for (size_t i = 0; i < sizeof disk; i++)
            disk[i] = (uint8_t)(i * 7 + (i >> 9) + 1);
    struct vdisk_open_params p = fuzz_params(sel & 1);
    vdisk_dev *dev = NULL;
    if (dev_open_memory(&dev, disk, sizeof disk, sizeof disk, &p) < 0)
        return 0;
    struct vdisk_nbd_params np = {
        .struct_size = sizeof np,
        .flags = VDISK_NBD_QUIET | ((sel & 1) ? VDISK_NBD_READ_ONLY : 0) |
                 ((sel & 2) ? VDISK_NBD_UNMAP : 0) | ((sel & 4) ? VDISK_NBD_DETECT_ZEROES : 0),
        .export_name = (sel & 8) ? "fuzz" : NULL,
        .description = "fuzz disk",
        .log = quiet_log,
    };
    vdisk_nbd *h = NULL;
    int bad = 0;
    if (vdisk_nbd_new(&h, dev, -1, &np) < 0) {
        vdisk_close(dev);
        return 0;
    }
    struct nbd_conn *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->srv = h;
    c->fd = -1;
    if (nbd_conn_start(c) == 0) {
        drain_tx(c);
        while (size) {
            size_t n = data[0];
            data++;
            size--;
            if (n == 0) {
                if (c->q && c->in_flight)
                    vdisk_queue_reap(c->q, 1, 1000);
            }
            if (n > size)
                n = size;
            while (n) {
                uint8_t *dst;
                size_t want = nbd_rx_want(c, &dst);
                if (!want) {
                    /* Back-pressure or the end: let requests complete. */
                    if (c->q && c->in_flight) {
                        vdisk_queue_reap(c->q, 1, 1000);
                        drain_tx(c);
                        continue;
                    }
                    drain_tx(c);
                    size = n = 0;
                    break;
                }
                if (want > n)
                    want = n;
                memcpy(dst, data, want);
                data += want;
                size -= want;
                n -= want;
                if (nbd_rx_got(c, want) == NBD_CLOSE) {
                    size = n = 0;
                    break;
                }
            }
            if (c->q)
                vdisk_queue_reap(c->q, 0, 0);
            if (c->mem > NBD_CONN_MEM + (1u << 20))
                bad = 1;
            drain_tx(c);
        }
    }
    nbd_conn_end(c);
    if (c->mem != 0)
        bad = 1; /* every buffer counted was freed */
    free(c);
    vdisk_nbd_free(h);
    vdisk_close(dev);
    return bad;
}
