/* SPDX-License-Identifier: MIT */
/*
 * fuzz/vhost_user.c: the fuzz input is a vhost-user front end talking to
 * the library's vhost-user back end (lib/vhost_user/, vdisk/vhost_user.h):
 * its messages, the file descriptors that come with them, its guest memory
 * and its kicks.  A whole message with a valid header goes straight into
 * the message handler (vu_handle: no socket), its reply checked; any other
 * message, and raw bytes, go through a socketpair into the transport's
 * read path (the handle's vdisk_vhost_process: messages put together from
 * pieces, then the same handler), one step of the event loop after each
 * record.  Any crash, sanitizer report (an access outside what was mapped
 * among them), leak, fd left open or hang is a bug.
 *
 * Input: byte 0 picks the device (bit 0: virtio-blk over a 1 MiB memory
 * disk, or virtio-scsi with a CD-ROM; bit 1: the disk read-only); then
 * records, each an op byte (op % 6) and its operands:
 *   0 FD    K: adds a fd to the pool (16 at most): (K & 7) % 6 = 0 a memfd of
 *           (B+1) * 16 KiB (one more byte B; sealable when K & 8), 1 an
 *           eventfd (at its largest count when K & 8), 2 a semaphore
 *           eventfd, 3 a pipe's read end (its writer closed when K & 8),
 *           4 a pipe's write end, full, 5 a socketpair's end
 *   1 MSG   R F N(u16 LE): a message: request R, flags F (the version is
 *           in the low two bits), a payload of N bytes (at most 8192) from
 *           the input, then a byte C and C % 10 bytes, each a pool index:
 *           the fds sent with the message (to the handler when the message
 *           is whole, of version 1, at most 4096 bytes and with 8 fds at
 *           most; else through the socket, with its first byte)
 *   2 RAW   N(u16 LE): N bytes of the input (at most 8192) sent as they are
 *   3 KICK  I: 8 bytes (the value 1) written to pool fd I
 *   4 POKE  I OFF(u32 LE) N(u16 LE): N bytes of the input written into the
 *           memfd I at OFF (guest memory: rings, requests), within its size
 *   5 RECONNECT: the front end hangs up; a new one connects
 * The back end's replies on the socket are read and dropped after each step.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vdisk/iso9660.h>
#include <vdisk/vhost_user.h>
#include <vdisk/virtio.h>

#include "fuzz.h"
#include "vhost_user/vhost_user_internal.h"

#define POOL_MAX 16
#define KEEP_MAX 32
#define MAX_CHUNK 8192u
#define STEPS 64

struct input {
    const uint8_t *p;
    size_t left;
};

static int take(struct input *in, void *dst, size_t n)
{
    if (in->left < n)
        return -1;
    memcpy(dst, in->p, n);
    in->p += n;
    in->left -= n;
    return 0;
}

static unsigned take_u8(struct input *in, unsigned dflt)
{
    uint8_t b;
    return take(in, &b, 1) < 0 ? dflt : b;
}

static unsigned take_u16(struct input *in)
{
    uint8_t b[2] = {0, 0};
    take(in, b, 2);
    return b[0] | (unsigned)b[1] << 8;
}

struct harness {
    vdisk_vhost *h;
    vdisk_virtio *v;
    vdisk_dev *dev;
    int fe;                      /* the front end's end of the socketpair */
    int pool[POOL_MAX];
    off_t pool_size[POOL_MAX];   /* memfds: their size; others -1 */
    unsigned npool;
    int keep[KEEP_MAX];          /* the other ends, closed at the end */
    unsigned nkeep;
};


static void keep_fd(struct harness *h, int fd)
{
    if (fd < 0)
        return;
    if (h->nkeep < KEEP_MAX)
        h->keep[h->nkeep++] = fd;
    else
        close(fd);
}

static void pool_add(struct harness *h, int fd, off_t size)
{
    if (fd < 0)
        return;
    if (h->npool == POOL_MAX) {
        close(fd);
        return;
    }
    h->pool_size[h->npool] = size;
    h->pool[h->npool++] = fd;
}

static void op_fd(struct harness *h, struct input *in)
{
    unsigned k = take_u8(in, 0);
    int p[2];
    switch ((k & 7) % 6) {
    case 0: {
        off_t size = (off_t)(take_u8(in, 0) + 1) * 16384;
        int fd = memfd_create("fuzz-guest", MFD_CLOEXEC | ((k & 8) ? MFD_ALLOW_SEALING : 0));
        if (fd >= 0 && ftruncate(fd, size) < 0) {
            close(fd);
            fd = -1;
        }
        pool_add(h, fd, size);
        break;
    }
    case 1: {
        int fd = eventfd(0, EFD_CLOEXEC);
        uint64_t max = 0xfffffffffffffffeull;
        if (fd >= 0 && (k & 8) && write(fd, &max, 8) != 8) {
            close(fd);
            fd = -1;
        }
        pool_add(h, fd, -1);
        break;
    }
    case 2:
        pool_add(h, eventfd(1, EFD_CLOEXEC | EFD_SEMAPHORE), -1);
        break;
    case 3:
        if (pipe2(p, O_CLOEXEC) < 0)
            break;
        if (k & 8)
            close(p[1]);
        else
            keep_fd(h, p[1]);
        pool_add(h, p[0], -1);
        break;
    case 4: {
        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
            break;
        /* Full, then blocking again: a write to it would wait for ever. */
        static const char junk[4096];
        while (write(p[1], junk, sizeof junk) > 0)
            ;
        while (write(p[1], junk, 1) > 0)
            ;
        fcntl(p[1], F_SETFL, 0);
        keep_fd(h, p[0]);
        pool_add(h, p[1], -1);
        break;
    }
    default:
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0)
            break;
        keep_fd(h, p[1]);
        pool_add(h, p[0], -1);
        break;
    }
}

/* Reads and drops what the back end said. */
static void drain_replies(struct harness *h)
{
    char buf[4096];
    while (h->fe >= 0 && recv(h->fe, buf, sizeof buf, MSG_DONTWAIT) > 0)
        ;
}

/* Steps of the event loop, as a caller's, until nothing is ready: every
 * request in flight completed first, so that each input behaves the same
 * every time. */
static void pump(struct harness *h)
{
    for (unsigned k = 0; k < STEPS; k++) {
        vdisk_virtio_drain(h->v);
        drain_replies(h);
        if (vdisk_vhost_process(h->h) <= 0)
            break;
    }
    drain_replies(h);
}

/* A new front end: one end of a socketpair, the other the handle's. */
static int fe_connect(struct harness *h)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    if (vdisk_vhost_add_connection(h->h, sv[1]) < 0) {
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    h->fe = sv[0];
    return 0;
}

/* Sends LEN bytes (and NFDS fds with the first) without ever waiting: when
 * the back end's socket is full, the loop runs; what still does not fit
 * is dropped. */
static void fe_send(struct harness *h, const uint8_t *data, size_t len, const int *fds,
                    unsigned nfds)
{
    size_t done = 0;
    for (unsigned tries = 0; h->fe >= 0 && (done < len || (len == 0 && nfds)) && tries < 4;
         tries++) {
        uint8_t dummy = 0;
        struct iovec iov = {.iov_base = len ? (void *)(data + done) : &dummy,
                            .iov_len = len ? len - done : 1};
        union {
            char c[CMSG_SPACE(16 * sizeof(int))];
            struct cmsghdr align;
        } ctl;
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        if (nfds) {
            memset(&ctl, 0, sizeof ctl);
            mh.msg_control = ctl.c;
            mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
            struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
            memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
        }
        ssize_t w = sendmsg(h->fe, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            nfds = 0;
            if (!len)
                return;
            done += (size_t)w;
        } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
            return; /* the back end hung up */
        }
        pump(h);
    }
}

/* The message straight to the handler (as the transport hands it over):
 * the fds are copies, those the handler leaves are closed; the reply must
 * answer the request and fit. */
static void direct(struct harness *h, uint32_t req, uint32_t flags, const uint8_t *payload,
                   uint32_t size, const int *fds, unsigned nfds)
{
    static struct vu_msg m;
    static struct vu_reply rep;
    m.request = req;
    m.flags = flags;
    m.size = size;
    memcpy(m.payload, payload, size);
    m.nfds = 0;
    for (unsigned i = 0; i < nfds; i++) {
        int fd = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
        if (fd >= 0)
            m.fds[m.nfds++] = fd;
    }
    int r = vu_handle(h->h, &m, &rep);
    for (unsigned i = 0; i < m.nfds; i++)
        if (m.fds[i] >= 0)
            close(m.fds[i]);
    if (r != 0 && r != VU_CLOSE)
        abort();
    if (rep.send && (rep.request != req || rep.size > VU_MAX_REPLY))
        abort();
    if (r == VU_CLOSE) {
        vdisk_vhost_disconnect(h->h);
        return;
    }
    pump(h);
}

static void op_msg(struct harness *h, struct input *in)
{
    uint8_t buf[12 + MAX_CHUNK];
    uint32_t req = take_u8(in, 1), flags = take_u8(in, 1), size = take_u16(in);
    if (size > MAX_CHUNK)
        size = MAX_CHUNK;
    memcpy(buf, &req, 4);
    memcpy(buf + 4, &flags, 4);
    memcpy(buf + 8, &size, 4);
    size_t n = size < in->left ? size : in->left;
    take(in, buf + 12, n);
    unsigned c = take_u8(in, 0) % 10;
    int fds[10];
    unsigned nfds = 0;
    for (unsigned i = 0; i < c; i++) {
        unsigned k = take_u8(in, 0);
        if (h->npool)
            fds[nfds++] = h->pool[k % h->npool];
    }
    if (n == size && size <= VU_MAX_PAYLOAD && (flags & VU_FLAG_VERSION_MASK) == VU_VERSION &&
        nfds <= VU_MAX_FDS && vdisk_vhost_connected(h->h)) {
        direct(h, req, flags, buf + 12, size, fds, nfds);
        return;
    }
    fe_send(h, buf, 12 + n, fds, nfds);
    pump(h);
}

static void op_raw(struct harness *h, struct input *in)
{
    size_t n = take_u16(in);
    if (n > MAX_CHUNK)
        n = MAX_CHUNK;
    if (n > in->left)
        n = in->left;
    fe_send(h, in->p, n, NULL, 0);
    in->p += n;
    in->left -= n;
    pump(h);
}

static void op_kick(struct harness *h, struct input *in)
{
    unsigned k = take_u8(in, 0);
    if (!h->npool)
        return;
    int fd = h->pool[k % h->npool];
    uint64_t one = 1;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK))
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    if (write(fd, &one, sizeof one) < 0) {
        /* full, or not writable: the kick is lost */
    }
    if (fl >= 0 && !(fl & O_NONBLOCK))
        fcntl(fd, F_SETFL, fl);
    pump(h);
}

static void op_poke(struct harness *h, struct input *in)
{
    unsigned k = take_u8(in, 0);
    uint8_t o[4] = {0, 0, 0, 0};
    take(in, o, 4);
    uint64_t off = o[0] | (uint64_t)o[1] << 8 | (uint64_t)o[2] << 16 | (uint64_t)o[3] << 24;
    size_t n = take_u16(in);
    if (n > in->left)
        n = in->left;
    const uint8_t *data = in->p;
    in->p += n;
    in->left -= n;
    if (!h->npool)
        return;
    unsigned i = k % h->npool;
    if (h->pool_size[i] < 0 || off >= (uint64_t)h->pool_size[i])
        return;
    if (n > (uint64_t)h->pool_size[i] - off)
        n = (size_t)((uint64_t)h->pool_size[i] - off);
    if (pwrite(h->pool[i], data, n, (off_t)off) < 0) {
        /* nothing written */
    }
}

static void fe_hangup(struct harness *h)
{
    if (h->fe >= 0)
        close(h->fe);
    h->fe = -1;
    pump(h); /* the back end sees the end and disconnects */
    vdisk_vhost_disconnect(h->h);
}

static void quiet_log(void *opaque, const char *line)
{
    (void)opaque;
    (void)line;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct input in = {data + 1, size - 1};
    uint8_t sel = data[0];
    static struct harness h;
    memset(&h, 0, sizeof h);
    h.fe = -1;

    int r = -1;
    vdisk_options *o = NULL;
    if (!(sel & 1)) {
        struct vdisk_open_params p = fuzz_params(sel & 2);
        static uint8_t disk[1 << 20];
        if (!disk[1]) {
            for (size_t i = 0; i < sizeof disk; i++)
                disk[i] = (uint8_t)(i * 7 + (i >> 9) + 1);
        }
        if (dev_open_memory(&h.dev, disk, sizeof disk, sizeof disk, &p) == 0) {
            struct vdisk_virtio_blk_params bp = {.struct_size = sizeof bp,
                                                 .queue_size = 1024, .read_only = sel & 2};
            r = vdisk_virtio_blk_new(&h.v, h.dev, &bp);
        }
    } else if (vdisk_options_new(&o) == 0 && vdisk_options_set(o, "engine", "threads") == 0 &&
               vdisk_options_set(o, "format", "raw") == 0 &&
               vdisk_open_cdrom(&h.dev, fuzz_cd_medium(), o) == 0) {
        struct vdisk_virtio_scsi_params sp = {.struct_size = sizeof sp, .queue_size = 1024};
        r = vdisk_virtio_scsi_cdrom_new(&h.v, h.dev, &sp);
    }
    vdisk_options_free(o);
    if (r == 0) {
        struct vdisk_vhost_params hp = {
            .struct_size = sizeof hp,
            .flags = VDISK_VHOST_QUIET | ((sel & 1) ? VDISK_VHOST_NO_CONFIG : 0),
            .log = quiet_log,
        };
        r = vdisk_vhost_new(&h.h, h.v, -1, &hp);
    }
    if (r == 0 && fe_connect(&h) == 0) {
        while (in.left) {
            switch (take_u8(&in, 0) % 6) {
            case 0: op_fd(&h, &in); break;
            case 1: op_msg(&h, &in); break;
            case 2: op_raw(&h, &in); break;
            case 3: op_kick(&h, &in); break;
            case 4: op_poke(&h, &in); break;
            default:
                fe_hangup(&h);
                if (fe_connect(&h) < 0)
                    in.left = 0;
                break;
            }
        }
    }
    if (h.h)
        fe_hangup(&h);
    else if (h.fe >= 0)
        close(h.fe);
    vdisk_vhost_free(h.h);
    if (h.v)
        vdisk_virtio_drain(h.v);
    vdisk_virtio_free(h.v);
    if (h.dev)
        vdisk_close(h.dev);
    for (unsigned i = 0; i < h.npool; i++)
        close(h.pool[i]);
    for (unsigned i = 0; i < h.nkeep; i++)
        close(h.keep[i]);
    return 0;
}
