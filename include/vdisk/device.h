/* SPDX-License-Identifier: MIT */
/*
 * vdisk/device.h: block devices: open, create, read, write, flush, discard,
 * write zeroes and block status.
 *
 * A vdisk_dev is an opaque handle to a block device of `size` bytes.  A
 * device is a stack of drivers: a format driver (raw, qcow2, ...) over a
 * protocol driver (a file or a host block device), or a filter such as an
 * offset (byte range / partition) device over another device.
 *
 * Ownership and lifetime: vdisk_open() and vdisk_open_range() return a new
 * reference that the caller releases with vdisk_close().  A device that is
 * built on another one (a range of a disk) holds its own reference to it,
 * so the caller may close the disk while ranges of it are still open.
 *
 * Thread-safety: a device handle may be used from several threads at once.
 * The synchronous calls below are thread-safe; calls on one device from
 * several threads are serialised against each other.  For parallel I/O,
 * give each thread its own asynchronous queue (vdisk/queue.h), which is
 * what the synchronous calls are built on.
 *
 * Errors: every call returns 0 (or a count) on success and a negative errno
 * value on failure, with a message for vdisk_get_error() (vdisk/error.h).
 *
 * Image locking: an open device holds locks on its image file, and on every
 * file of its backing chain, the same open file description (OFD) byte-range
 * locks that QEMU's file driver takes, so that QEMU, qemu-img, qemu-io,
 * qemu-storage-daemon and vdisk each refuse an image that another process
 * uses in a conflicting way.  As in QEMU, byte 100 + N is locked while the
 * open holds permission N and byte 200 + N while it does not share it
 * (N: 0 consistent read, 1 write, 2 write unchanged, 3 resize).
 *   - A read-write open takes consistent read and write (and resize, for a
 *     format with metadata, or when a raw image is resized) and shares only
 *     reading: it fails while another process writes the image, or reads a
 *     qcow2 image or a backing file (which needs it unchanged).
 *   - A read-only open takes consistent read.  For a raw image opened at
 *     the top of a chain it shares everything (as in QEMU); otherwise it
 *     shares all but write and resize, so it fails while another process
 *     writes the image, unless option force-share=on.
 *   - Backing files are opened read-only and never shared for writing.
 *   - vdisk_create() locks the file (write and resize, not sharing resize)
 *     before it truncates it.
 * A conflict fails with -EAGAIN and QEMU's message, e.g. "Could not open
 * 'disk.qcow2': Failed to get "write" lock" and, on a second line, "Is
 * another process using the image [disk.qcow2]?".  The locks go with the
 * last vdisk_close() of the file.  Opens in one process do not exclude each
 * other (one process may open a file several times, as commit does: the
 * locks are the union of its opens); a child made by fork() shares the
 * locks of the devices it inherits, and its own opens are checked against
 * its parent's like another process's.  Options "locking" and
 * "force-share" (vdisk/options.h) change this.
 */
#ifndef VDISK_DEVICE_H
#define VDISK_DEVICE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <vdisk/options.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vdisk_dev vdisk_dev;

/*
 * Structures that grow.  A public structure that may gain fields in later
 * versions starts with `size_t struct_size`, which the caller sets to the
 * size it was compiled with:
 *     struct vdisk_snapshot sn = {.struct_size = sizeof sn};
 * Fields are only ever added at the end.  Each such structure has a
 * VDISK_<NAME>_SIZE_V1: the size of its first version (up to the end of
 * its last field, without tail padding).  The library accepts any
 * struct_size from that size up, so a program built against an older
 * (smaller) structure works with a newer library, and the other way round:
 *   - A structure the library fills (an "out" argument) is filled in full
 *     in the library's own copy, and only the first struct_size bytes are
 *     copied to the caller's: nothing is ever written past them.  Then
 *     struct_size is set to the bytes filled: the smaller of the caller's
 *     and the library's size, so a newer program on an older library sees
 *     which fields it got.
 *   - A structure the caller fills (parameters, callback tables) is read up
 *     to struct_size bytes; the fields an older caller's version lacks take
 *     their defaults (each such field's default is what 0 means).  Fields
 *     a newer caller has past the library's size are ignored.
 *   - A struct_size of 0, or smaller than the first version's, fails the
 *     call with -EINVAL and a message naming the structure and the sizes,
 *     before anything is read or written.
 * Small records that travel in arrays (vdisk_iso_entry from vdisk_iso_list,
 * vdisk_bitmap_info, vdisk_guest_region) keep a fixed layout instead: both
 * sides index an array with their own sizeof, so a struct_size could not
 * help.  vdisk_extent keeps one too: it is the unit of block-status loops
 * and of a future batched call, and new facts about an extent come as new
 * VDISK_EXT_* bits.  What these records may need later will come through
 * new calls with new structures, never by changing them.
 *
 * VDISK_STRUCT_END(type, member): the end of MEMBER in TYPE, in bytes.
 */
#define VDISK_STRUCT_END(type, member) \
    (offsetof(type, member) + sizeof(((type *)0)->member))

/* Flags for vdisk_open_range(). */
#define VDISK_OPEN_RDONLY 0x1u /* the new device refuses writes */

/*
 * vdisk_open: opens FILENAME as a device and stores a new handle in *devp.
 * FILENAME is a file or host block device, taken as it is: the CLI's
 * IMAGE:pN syntax for partition N is not understood here ("disk.img:p2"
 * is a file of that name).  To open a partition, open the image and then
 * the partition on it with vdisk_open_partition() (vdisk/part.h), as the
 * CLI does.  An NBD URI (nbd://HOST[:PORT]/EXPORT,
 * nbd+unix:///EXPORT?socket=PATH, nbds:// and nbds+unix:// with TLS, as
 * libnbd's nbd_connect_uri takes them) names an export of an NBD server,
 * which is then the image's file: the format is probed from it, and a
 * backing file may be named so too.  Opening connects (and blocks until
 * the server answers); -ECONNREFUSED, -ENOENT ... when it cannot, -EROFS
 * when writing is asked of a read-only export.  An rbd: name
 * (rbd:POOL[/NAMESPACE]/IMAGE[@SNAP][:KEY=VALUE...]) names an image in a
 * Ceph cluster.  A json:{...} name is taken as qemu-img takes it (the
 * format's "driver", its "file" object with the protocol's "driver" file,
 * host_device, nbd or rbd and their keys, "read-only"; any other key is
 * refused with -ENOTSUP); its format must agree with the option "format".
 *
 * OPTS may be NULL; see vdisk/options.h for the keys ("format", "read-only",
 * "cache", "engine", ...).  Without "format", the format is probed from the
 * file's first bytes.
 *
 * Returns 0, or a negative errno: -ENOENT / -EACCES / -EROFS / ... from
 * opening the file (-EACCES or -EROFS when writing was asked for on a file
 * that can only be read), -EAGAIN when another process holds a conflicting
 * lock on the image or a file of its backing chain (see "Image locking"
 * above), -EINVAL for a bad or unknown option, -ENOSYS for engine=uring
 * where io_uring is not allowed, -ENOTSUP for an unknown format, one vdisk
 * does not read, or a feature it does not support (legacy qcow2 AES
 * encryption, an external data file), -EPERM for a passphrase that opens
 * no key slot of an encrypted image (see key-secret in vdisk/options.h),
 * -EPERM for a backing file name that
 * backing-confine=on refuses or a network backing file (an NBD URI in
 * an image's header) without backing-allow-network=on, -ELOOP for a backing chain that loops or is
 * deeper than 64 images, or a format driver's error: -EINVAL for a damaged
 * image, and for qcow2 -EIO (marked corrupt) or -ENOTSUP (persistent
 * bitmaps) when writing was asked for (see vdisk/options.h).  *devp is set
 * to NULL on failure.
 */
int vdisk_open(vdisk_dev **devp, const char *filename, const vdisk_options *opts);

/*
 * vdisk_plain_name: the plain name (a path, an NBD URI, an rbd: name) that
 * NAME stands for: a copy of NAME, or what a json:{...} name comes to (see
 * vdisk_open), e.g. to see which file an image given so is before writing
 * to it.  Stores a new string in *OUT (free() it).  Returns 0, or -EINVAL
 * (a bad json: name; the reason in vdisk_get_error), -ENOTSUP, -ENOMEM,
 * with *OUT NULL.  Opens nothing; thread-safe.
 */
int vdisk_plain_name(const char *name, char **out);

/*
 * vdisk_open_range: a device made of the bytes [OFFSET, OFFSET + LENGTH) of
 * PARENT, stored in *devp.  Block N of the new device is block
 * N + OFFSET / block size of the parent; requests outside the range fail
 * with -EIO and a message.  FLAGS may contain
 * VDISK_OPEN_RDONLY; a range of a read-only parent is read-only.
 *
 * Any byte range is allowed; the range must lie inside the parent (-EINVAL
 * otherwise).  The new device has the parent's logical block size; when
 * OFFSET is not a multiple of it, the parent reads, modifies and writes
 * whole blocks as needed.  The new device holds a reference to PARENT.
 * This is how partitions are opened.
 */
int vdisk_open_range(vdisk_dev **devp, vdisk_dev *parent, uint64_t offset,
                     uint64_t length, unsigned flags);

/*
 * vdisk_close: releases a reference.  The device is freed when its last
 * reference goes, after a flush if it is writable; an error of that flush
 * is neither returned nor left for vdisk_get_error(): call vdisk_flush()
 * first to see it.  NULL is a no-op.  No request may be in flight on a
 * queue of the device, and all its queues must have been freed.
 */
void vdisk_close(vdisk_dev *dev);

/*
 * vdisk_create: creates an image FILENAME of FORMAT ("raw" when NULL, or
 * "qcow2") holding SIZE bytes (rounded up to 512).  An existing file is
 * truncated, unless another process uses it (-EAGAIN, see "Image
 * locking"); a host block device keeps its size.  FILENAME may be a
 * json:{...} name (see vdisk_open): its protocol object says where the
 * image goes, its format must be FORMAT, and "read-only": true is refused
 * (-EROFS).  OPTS may be NULL.
 * Every option is checked before the file is touched: a bad value, an
 * option the format does not take, or a combination it refuses fails with
 * -EINVAL and a message (qemu-img's, where it has one).  The options, as
 * qemu-img create -o takes them (on/off options also take true/false,
 * yes/no, 1/0; vdisk_create_option() in vdisk/options.h lists them):
 *
 * every format:
 *   size            the image's size, used when SIZE is 0 (as qemu-img's
 *                   -o size=, where a size given after the file name wins)
 *
 * raw:
 *   preallocation   off (default: the first 4 KiB are written, as QEMU
 *                   does, the rest is a hole) | falloc (posix_fallocate)
 *                   | full (zeroes written)
 *
 * qcow2 (laid out as qemu-img lays it out):
 *   cluster_size    a power of two from 512 to 2M, a size as
 *                   vdisk_parse_size() reads it ("65536", "64k", "2M",
 *                   "0x10000"); default 64k
 *   compat          1.1 (default; "v3" too) | 0.10 ("v2"): the qcow2
 *                   version 3 or 2
 *   refcount_bits   1, 2, 4, 8, 16 (default), 32 or 64; only 16 with
 *                   compat=0.10
 *   lazy_refcounts  on | off (default); compat=1.1 only
 *   extended_l2     on | off (default): subclusters (32 per cluster);
 *                   compat=1.1 and cluster_size of 16k or more only
 *   compression_type  zlib (default) | zstd (compat=1.1 only): what
 *                   vdisk_pwrite_compressed() and convert -c write
 *   preallocation   off (default) | metadata (L2 tables and clusters
 *                   allocated, the file extended over them) | falloc (also
 *                   fallocated) | full (also written with zeroes); not
 *                   with backing_file
 *   backing_file    the backing file's name, stored as given (at most
 *                   1023 bytes; "" means none).  It is not opened here:
 *                   it need not exist yet, and SIZE is not taken from it.
 *   backing_fmt     the backing file's format (a format vdisk knows:
 *                   "raw", "qcow2"); needs backing_file.  Without it the
 *                   backing file's format is probed at each open.
 *
 * vdi (VirtualBox, laid out as qemu-img lays it out: 1 MiB blocks, the
 * block map at 512, random image UUIDs):
 *   static          on | off (default): every block allocated (the file
 *                   extended over them, sparse) or none (dynamic)
 *   SIZE may be at most 0x1fffff8000000 bytes (-ENOTSUP, as qemu-img) and
 *   needs a block map of at most 256 MiB (64 TiB; -EFBIG).
 *   encrypt.format  luks: the image is encrypted (LUKS1 header in clusters
 *                   of its own, data clusters encrypted by host offset), as
 *                   qemu-img makes it; the encrypt.* options below apply
 *   encrypt.key-secret, encrypt.cipher-alg, ... as for luks below
 *
 * luks (QEMU's raw LUKS1 format: header, 8 key slots, then the disk):
 *   key-secret      ID: the passphrase is the option secret.ID (required)
 *   cipher-alg      aes-256 (default), aes-128, aes-192, serpent-128/192/256,
 *                   twofish-128/192/256, cast5-128
 *   cipher-mode     xts (default) | cbc | ecb | ctr
 *   ivgen-alg       plain64 (default) | plain | essiv (essiv by default
 *                   when ivgen-hash-alg is given)
 *   ivgen-hash-alg  ESSIV's hash: sha256 (default), md5, sha1, sha224,
 *                   sha384, sha512, ripemd160
 *   hash-alg        PBKDF2's and the splitter's hash (default sha256)
 *   iter-time       milliseconds of PBKDF2 per key slot (default 2000); the
 *                   counts come from this machine's speed, at least 1000
 * Other qemu-img options (data_file, cluster allocation options of other
 * formats) are not supported and fail as unknown.
 *
 * Returns 0, -EINVAL (above), -ENOTSUP for a format vdisk cannot create,
 * -EFBIG when SIZE needs an L1 or refcount table larger than QEMU allows
 * (qcow2) or exceeds INT64_MAX (raw), -EAGAIN, or -errno from the file.
 */
int vdisk_create(const char *filename, const char *format, uint64_t size,
                 const vdisk_options *opts);

/* ---- Properties ---------------------------------------------------------- */

/* vdisk_get_size: the device's size in bytes. */
uint64_t vdisk_get_size(const vdisk_dev *dev);

/*
 * vdisk_get_block_size: the logical block size in bytes (512, 2048 for a
 * CD-ROM, 4096 for 4Kn disks): the unit a guest addresses.  The library
 * accepts any offset and length and reads, modifies and writes whole blocks
 * when the device needs it.
 */
uint32_t vdisk_get_block_size(const vdisk_dev *dev);

/* vdisk_get_format: the format driver's name ("raw", "offset", ...). */
const char *vdisk_get_format(const vdisk_dev *dev);

/* vdisk_get_filename: the name the device was opened with. */
const char *vdisk_get_filename(const vdisk_dev *dev);

/*
 * vdisk_get_engine: the name of the I/O engine the device's queues use:
 * "io_uring" or "threads".
 */
const char *vdisk_get_engine(const vdisk_dev *dev);

/*
 * vdisk_get_allocated_size: bytes of host storage the device's files take
 * (st_blocks * 512 for a file), or a negative errno.
 */
int64_t vdisk_get_allocated_size(vdisk_dev *dev);

/* Capabilities, for vdisk_can(): ask before, rather than fail late. */
#define VDISK_CAN_WRITE        0x01u /* not read-only */
#define VDISK_CAN_FLUSH        0x02u /* flushes reach stable storage */
#define VDISK_CAN_DISCARD      0x04u /* discard frees space */
#define VDISK_CAN_WRITE_ZEROES 0x08u /* zeroes are written efficiently */
#define VDISK_CAN_ZERO_UNMAP   0x10u /* zeroes can be written by unmapping */

/* vdisk_can: the VDISK_CAN_* bits the device supports. */
unsigned vdisk_can(const vdisk_dev *dev);

/* vdisk_is_read_only: 1 when the device refuses writes, else 0. */
int vdisk_is_read_only(const vdisk_dev *dev);

/* ---- Synchronous I/O ------------------------------------------------------
 * Any offset and length inside the device are accepted.  A request that
 * reaches beyond the end of the device fails as a whole with -EIO before any
 * I/O, as in QEMU.
 */

/* vdisk_pread: reads COUNT bytes at OFFSET into BUF.  Returns 0 or -errno. */
int vdisk_pread(vdisk_dev *dev, void *buf, size_t count, uint64_t offset);

/* vdisk_pwrite: writes COUNT bytes from BUF at OFFSET.  Returns 0 or -errno. */
int vdisk_pwrite(vdisk_dev *dev, const void *buf, size_t count, uint64_t offset);

/* vdisk_preadv / vdisk_pwritev: the same with a scatter/gather list. */
int vdisk_preadv(vdisk_dev *dev, const struct iovec *iov, int iovcnt,
                 uint64_t offset);
int vdisk_pwritev(vdisk_dev *dev, const struct iovec *iov, int iovcnt,
                  uint64_t offset);

/*
 * vdisk_flush: makes every completed write durable (fdatasync on files).
 * An error is never swallowed: once a flush has failed, the data it covered
 * may be lost (the kernel may have dropped it), so that flush and every
 * later flush on the device fail with the first error.  Reopen the image
 * (and check it) to go on.
 */
int vdisk_flush(vdisk_dev *dev);

/*
 * vdisk_discard: tells the device that LENGTH bytes at OFFSET are no longer
 * needed.  Reads of the range afterwards return either the old data or
 * zeroes.  Returns 0 (also when the device ignores discards) or -errno.
 */
int vdisk_discard(vdisk_dev *dev, uint64_t offset, uint64_t length);

/* Flags for vdisk_write_zeroes(). */
#define VDISK_ZEROES_MAY_UNMAP 0x1u /* the range may be deallocated */

/*
 * vdisk_write_zeroes: makes LENGTH bytes at OFFSET read as zeroes, without
 * transferring a buffer of zeroes where the device can (fallocate).  FLAGS:
 * VDISK_ZEROES_MAY_UNMAP.  Returns 0 or -errno.
 */
int vdisk_write_zeroes(vdisk_dev *dev, uint64_t offset, uint64_t length,
                       unsigned flags);

/*
 * vdisk_pwrite_compressed: writes the whole cluster at OFFSET compressed
 * (qcow2: zstd or deflate, as the image's compression type says; packed
 * byte by byte after the previous compressed cluster, as QEMU packs them).
 * OFFSET must be a multiple of the cluster size and COUNT the cluster size
 * (or what is left of the image at its last cluster).  Data that does not
 * shrink is written uncompressed.  Several threads may call this at once
 * on one device: compression runs in parallel, allocation in turn.
 * Returns 0, -ENOTSUP for formats without compression, -EINVAL for a
 * range that is not one cluster, or another -errno.
 */
int vdisk_pwrite_compressed(vdisk_dev *dev, const void *buf, size_t count, uint64_t offset);

/*
 * The two halves of vdisk_pwrite_compressed, for programs that compress on
 * several threads and store in order (as vdisk convert -c does):
 *
 * vdisk_compress: compresses the cluster BUF (COUNT bytes, as above) into
 * OUT (room for OUT_SIZE bytes; the cluster size is enough) in the image's
 * compression type, and stores the compressed length in *OUT_LEN, or 0
 * when the data does not shrink (write it uncompressed then).  No I/O;
 * thread-safe.  Returns 0, -ENOTSUP, -EINVAL or -errno.
 *
 * vdisk_pwrite_compressed_data: stores CLEN bytes that vdisk_compress
 * produced for the cluster at OFFSET.  Returns 0 or -errno.
 *
 * vdisk_pwrite_compressed_datav: stores N compressed clusters at once, the
 * clusters at OFFSET, OFFSET + cluster size, ... (PIECES[i] holds what
 * vdisk_compress produced for the i-th, 0 < length < cluster size).  They
 * are packed as N calls of vdisk_pwrite_compressed_data in turn would pack
 * them, but written with one request per contiguous run of the file, and
 * the clusters change only after the data is written.  On an error some
 * clusters (a prefix) may hold their new data and the others their old.
 * Blocks; thread-safe.  Returns 0 (nothing to do for N 0), -EINVAL for a
 * bad list or range, -ENOTSUP, or another -errno.
 */
int vdisk_compress(vdisk_dev *dev, const void *buf, size_t count, void *out, size_t out_size,
                   size_t *out_len);
int vdisk_pwrite_compressed_data(vdisk_dev *dev, const void *data, size_t clen,
                                 uint64_t offset);
int vdisk_pwrite_compressed_datav(vdisk_dev *dev, const struct iovec *pieces, int n,
                                  uint64_t offset);

/* ---- Block status -------------------------------------------------------- */

/* Bits of vdisk_extent.flags. */
#define VDISK_EXT_DATA      0x1u /* reads come from stored data */
#define VDISK_EXT_ZERO      0x2u /* reads return zeroes */
#define VDISK_EXT_ALLOCATED 0x4u /* a layer holds the extent (depth says which);
                                    unset: no layer does, it reads as zeroes */
#define VDISK_EXT_OFFSET    0x8u /* host_offset is valid */

/* Fixed layout (see "Structures that grow" above): it never changes. */
struct vdisk_extent {
    uint64_t offset;      /* start of the extent in the device */
    uint64_t length;      /* bytes that share the status below */
    uint32_t flags;       /* VDISK_EXT_* */
    int32_t depth;        /* the layer that answered: 0 = this image, 1 = its
                             backing file, ...; for extents no layer holds,
                             the depth of the last layer asked */
    uint64_t host_offset; /* where the data lies in host_file (VDISK_EXT_OFFSET) */
    const char *host_file; /* file holding the data, or NULL; valid while the
                              device is open */
};

/*
 * vdisk_block_status: describes the extent that starts at OFFSET, at most
 * LENGTH bytes long (clipped to the device), in *ext.  Returns 0, -EINVAL
 * when OFFSET is at or past the end of the device or LENGTH is 0, or
 * another -errno.  Call it in a loop, advancing by ext->length, to map a
 * range.
 */
int vdisk_block_status(vdisk_dev *dev, uint64_t offset, uint64_t length,
                       struct vdisk_extent *ext);

/* ---- Breakpoints (testing) ------------------------------------------------ */

/*
 * QEMU's blkdebug breakpoints, for tests that need concurrent requests in
 * a given order (qemu-io's break, remove_break, resume and wait_break; vdisk
 * io has them).  They act on the blkdebug device in DEV's stack (DEV opened
 * by a "blkdebug:CONFIG:IMAGE" name, or a format over one): with
 * vdisk_debug_break, after the blkdebug event EVENT (QEMU's names:
 * "write_aio", "pwritev_rmw_after_head", ...) the next request that comes
 * to the device (the I/O the event announces) waits, held under TAG, until
 * vdisk_debug_resume(TAG) lets it go on.  A breakpoint holds one request,
 * then goes with vdisk_debug_resume.  Held requests keep their queue's
 * drains, flushes and close waiting: resume them first.
 *
 * Each returns 0 (vdisk_debug_is_suspended: 1 when a request is held under
 * TAG, else 0), or -ENOTSUP (no blkdebug device below DEV), -ENOENT (an
 * unknown event; no breakpoint TAG to remove; nothing held under TAG to
 * resume), -ENOSPC (16 breakpoints at once), -EINVAL (a tag of 32 bytes or
 * more).  Thread-safe; none blocks.
 */
int vdisk_debug_break(vdisk_dev *dev, const char *event, const char *tag);
int vdisk_debug_remove_break(vdisk_dev *dev, const char *tag);
int vdisk_debug_resume(vdisk_dev *dev, const char *tag);
int vdisk_debug_is_suspended(vdisk_dev *dev, const char *tag);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_DEVICE_H */
