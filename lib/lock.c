/* SPDX-License-Identifier: MIT */
/*
 * lib/lock.c: image locking, compatible with QEMU's file driver.
 *
 * QEMU describes what each user of an image does with it as permission
 * bits, and what the user lets others do as shared bits, and publishes both
 * on the image file itself as open file description (OFD) byte-range read
 * locks:
 *
 *   byte 100 + i   held while permission i is taken
 *   byte 200 + i   held while permission i is not shared
 *
 * QEMU 7.2 has four permissions: 0 consistent read, 1 write, 2 write
 * unchanged, 3 resize.  An opener first takes its own bytes, then tests
 * with F_OFD_GETLK (for a write lock) that nobody else holds 200 + i for a
 * permission i it takes ("Failed to get "write" lock") nor 100 + i for a
 * permission it does not share ("Failed to get shared "write" lock").
 * Taking before testing makes two racing openers see each other.
 *
 * OFD locks belong to an open file description, so two descriptors of one
 * process would conflict like two processes.  A process opens one file
 * several times on purpose (commit writes a base that the overlay reads as
 * its backing file; a program looks at an image it serves), so this file
 * keeps one lock descriptor per file (device and inode) per process: each
 * open of the file in the process adds its bits to it, and the tests, made
 * through it, see only other processes.  Opens in one process do not
 * exclude each other.
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define LOCK_PERM_BASE 100
#define LOCK_SHARED_BASE 200

static const char *const perm_names[PERM_COUNT] = {
    "consistent read", "write", "write unchanged", "resize",
};

/* One file's locks in this process. */
struct lock_file {
    dev_t dev;
    ino_t ino;
    pid_t pid;                      /* entries inherited over fork() are not ours */
    int fd;                         /* the lock descriptor: its own open */
    bool unsupported;               /* locking=auto on a file system without OFD
                                       locks: nothing is locked */
    unsigned refs;
    unsigned perm_users[PERM_COUNT];     /* opens taking permission i */
    unsigned unshared_users[PERM_COUNT]; /* opens not sharing it */
    struct lock_file *next;
};

/* One open's share of a file's locks. */
struct file_lock {
    struct lock_file *file;
    unsigned perm;
    unsigned unshared;
};

static pthread_mutex_t lock_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct lock_file *lock_files;

static unsigned held_mask(const unsigned *users)
{
    unsigned m = 0;
    for (unsigned i = 0; i < PERM_COUNT; i++)
        if (users[i])
            m |= 1u << i;
    return m;
}

/* Takes (F_RDLCK) or drops (F_UNLCK) one byte; 0 or -errno. */
static int lock_byte(int fd, int byte, short type)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* 0 when nobody else holds BYTE, -EAGAIN when someone does, or -errno. */
static int test_byte(int fd, int byte)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return -errno;
    return fl.l_type == F_UNLCK ? 0 : -EAGAIN;
}

/* Errors that say the file system (or kernel) has no OFD locks. */
static bool lock_unsupported(int e)
{
    return e == -EINVAL || e == -ENOLCK || e == -EOPNOTSUPP || e == -ENOTSUP || e == -ENOSYS;
}

/*
 * Moves the lock bytes of F from the sets FROM_* to TO_*: takes the bytes
 * TO has and FROM has not, and drops the bytes FROM has and TO has not.
 * On failure *BAD_BYTE names the byte.
 */
static int move_bytes(int fd, unsigned from_perm, unsigned from_unsh, unsigned to_perm,
                      unsigned to_unsh, int *bad_byte)
{
    for (unsigned i = 0; i < PERM_COUNT; i++) {
        unsigned bit = 1u << i;
        for (int pass = 0; pass < 2; pass++) {
            unsigned from = pass ? from_unsh : from_perm, to = pass ? to_unsh : to_perm;
            int byte = (pass ? LOCK_SHARED_BASE : LOCK_PERM_BASE) + (int)i;
            int r = 0;
            if ((to & bit) && !(from & bit))
                r = lock_byte(fd, byte, F_RDLCK);
            else if (!(to & bit) && (from & bit))
                r = lock_byte(fd, byte, F_UNLCK);
            if (r < 0) {
                *bad_byte = byte;
                return r;
            }
        }
    }
    return 0;
}

/*
 * Tests the other processes' bytes for an open taking PERM and sharing
 * SHARED.  On failure *BAD_BIT is the permission and *AS_SHARED says which
 * test failed.
 */
static int test_bytes(int fd, unsigned perm, unsigned shared, unsigned *bad_bit,
                      bool *as_shared)
{
    for (unsigned i = 0; i < PERM_COUNT; i++) {
        if (!(perm & (1u << i)))
            continue;
        int r = test_byte(fd, LOCK_SHARED_BASE + (int)i);
        if (r < 0) {
            *bad_bit = i;
            *as_shared = false;
            return r;
        }
    }
    for (unsigned i = 0; i < PERM_COUNT; i++) {
        if (shared & (1u << i))
            continue;
        int r = test_byte(fd, LOCK_PERM_BASE + (int)i);
        if (r < 0) {
            *bad_bit = i;
            *as_shared = true;
            return r;
        }
    }
    return 0;
}

/*
 * The lock descriptor: a new open of the file FD has open, so that its open
 * file description is never shared with the I/O engine (files registered
 * with io_uring live on until the ring is torn down, after the process has
 * exited, and would keep the locks that long).  A duplicate where /proc is
 * missing.
 */
static int lock_fd_open(int fd, const struct stat *st)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int lfd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    struct stat lst;
    if (lfd >= 0 && (fstat(lfd, &lst) < 0 || lst.st_dev != st->st_dev ||
                     lst.st_ino != st->st_ino)) {
        close(lfd);
        lfd = -1;
    }
    return lfd >= 0 ? lfd : fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

static void lock_file_put(struct lock_file *f)
{
    if (f->refs)
        return;
    for (struct lock_file **pp = &lock_files; *pp; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    }
    /* Unlock explicitly: closing is not enough while the open file
     * description lives on elsewhere (a duplicate, see lock_fd_open). */
    struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = LOCK_PERM_BASE,
                       .l_len = LOCK_SHARED_BASE + PERM_COUNT - LOCK_PERM_BASE};
    /* A child made by fork() shares the descriptor's locks with its parent:
     * it only closes its copy. */
    if (!f->unsupported && f->pid == getpid())
        fcntl(f->fd, F_OFD_SETLK, &fl);
    close(f->fd);
    free(f);
}

int file_lock_acquire(struct file_lock **lp, int fd, const char *filename, enum lock_mode mode,
                      unsigned perm, unsigned shared, bool creating)
{
    *lp = NULL;
    if (mode == LOCK_OFF)
        return 0;
    perm &= PERM_ALL;
    shared &= PERM_ALL;
    unsigned unshared = PERM_ALL & ~shared;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return err_set(-errno, "%s: stat failed: %s", filename, strerror(errno));
    struct file_lock *l = calloc(1, sizeof *l);
    if (!l)
        return err_set(-ENOMEM, "out of memory");
    pid_t pid = getpid();
    pthread_mutex_lock(&lock_mutex);
    struct lock_file *f = lock_files;
    while (f && !(f->dev == st.st_dev && f->ino == st.st_ino && f->pid == pid))
        f = f->next;
    if (!f) {
        f = calloc(1, sizeof *f);
        int dfd = f ? lock_fd_open(fd, &st) : -1;
        if (dfd < 0) {
            int e = f ? errno : ENOMEM;
            free(f);
            free(l);
            pthread_mutex_unlock(&lock_mutex);
            return err_set(-e, "%s: could not open the file for locking: %s", filename,
                           strerror(e));
        }
        f->dev = st.st_dev;
        f->ino = st.st_ino;
        f->pid = pid;
        f->fd = dfd;
        f->next = lock_files;
        lock_files = f;
    }
    int r = 0;
    if (f->unsupported && mode == LOCK_ON) {
        r = err_set(-ENOTSUP, "%s: the file system does not support OFD locks, which "
                    "locking=on asks for", filename);
    } else if (!f->unsupported) {
        unsigned old_perm = held_mask(f->perm_users), old_unsh = held_mask(f->unshared_users);
        int bad_byte = 0;
        unsigned bad_bit = 0;
        bool as_shared = false;
        const char *prefix = creating ? "" : "Could not open '";
        const char *suffix = creating ? "" : "'";
        r = move_bytes(f->fd, old_perm, old_unsh, old_perm | perm, old_unsh | unshared,
                       &bad_byte);
        bool tested = r == 0;
        if (tested)
            r = test_bytes(f->fd, perm, shared, &bad_bit, &as_shared);
        if (r < 0 && lock_unsupported(r) && mode == LOCK_AUTO && f->refs == 0) {
            /* As QEMU, go on without locks where they do not work. */
            f->unsupported = true;
            move_bytes(f->fd, old_perm | perm, old_unsh | unshared, 0, 0, &(int){0});
            r = 0;
        } else if (r < 0) {
            move_bytes(f->fd, old_perm | perm, old_unsh | unshared, old_perm, old_unsh,
                       &(int){0});
            if (!tested && (r == -EAGAIN || r == -EACCES))
                err_set(r, "%s%s%s: Failed to lock byte %d", prefix, filename, suffix,
                        bad_byte);
            else if (!tested)
                err_set(r, "%s%s%s: Failed to lock byte %d: %s", prefix, filename, suffix,
                        bad_byte, strerror(-r));
            else if (r == -EAGAIN || r == -EACCES)
                err_set(-EAGAIN, "%s%s%s: Failed to get %s\"%s\" lock\n"
                        "Is another process using the image [%s]?", prefix, filename,
                        suffix, as_shared ? "shared " : "", perm_names[bad_bit], filename);
            else
                err_set(r, "%s%s%s: Failed to get %s\"%s\" lock: %s", prefix, filename,
                        suffix, as_shared ? "shared " : "", perm_names[bad_bit],
                        strerror(-r));
            if (tested && r == -EACCES)
                r = -EAGAIN;
        }
    }
    if (r < 0) {
        lock_file_put(f);
        free(l);
    } else {
        for (unsigned i = 0; i < PERM_COUNT; i++) {
            f->perm_users[i] += (perm >> i) & 1;
            f->unshared_users[i] += (unshared >> i) & 1;
        }
        f->refs++;
        l->file = f;
        l->perm = perm;
        l->unshared = unshared;
        *lp = l;
    }
    pthread_mutex_unlock(&lock_mutex);
    return r;
}

void file_lock_release(struct file_lock *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&lock_mutex);
    struct lock_file *f = l->file;
    unsigned old_perm = held_mask(f->perm_users), old_unsh = held_mask(f->unshared_users);
    for (unsigned i = 0; i < PERM_COUNT; i++) {
        f->perm_users[i] -= (l->perm >> i) & 1;
        f->unshared_users[i] -= (l->unshared >> i) & 1;
    }
    f->refs--;
    if (f->refs && !f->unsupported && f->pid == getpid()) {
        /* Dropping bytes cannot conflict; a failure leaves a byte locked
         * until the last open of the file closes, which is only stricter. */
        int bad_byte;
        move_bytes(f->fd, old_perm, old_unsh, held_mask(f->perm_users),
                   held_mask(f->unshared_users), &bad_byte);
    }
    lock_file_put(f);
    pthread_mutex_unlock(&lock_mutex);
    free(l);
}

static _Thread_local uint64_t create_hint = FILE_EXTENT_HINT_DEFAULT;
static _Thread_local bool create_hint_given;

void file_create_hint(uint64_t bytes, bool given)
{
    create_hint = bytes;
    create_hint_given = given;
}

/* Gives the new, empty file FD the thread's extent size hint. */
static void apply_extent_hint(int fd)
{
    if (!create_hint)
        return;
    struct fsxattr attr;
    int r = ioctl(fd, FS_IOC_FSGETXATTR, &attr);
    if (r == 0) {
        attr.fsx_xflags |= FS_XFLAG_EXTSIZE;
        attr.fsx_extsize = (uint32_t)create_hint;
        r = ioctl(fd, FS_IOC_FSSETXATTR, &attr);
    }
    if (r < 0 && create_hint_given)
        warn_report("Failed to set extent size hint: %s", strerror(errno));
}

int file_create_locked(const char *filename, struct file_lock **lockp)
{
    *lockp = NULL;
    /* No O_TRUNC: nothing may change before the locks say that no other
     * process uses the file. */
    int fd = open(filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return err_set(-errno, "Could not create '%s': %s", filename, strerror(errno));
    /* As QEMU's creation: write and resize, letting nobody else resize. */
    int r = file_lock_acquire(lockp, fd, filename, LOCK_AUTO, PERM_WRITE | PERM_RESIZE,
                              PERM_ALL & ~PERM_RESIZE, true);
    struct stat st;
    if (r == 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        if (ftruncate(fd, 0) < 0)
            r = err_set(-errno, "%s: could not truncate: %s", filename, strerror(errno));
        else
            apply_extent_hint(fd);
    }
    if (r < 0) {
        file_lock_release(*lockp);
        *lockp = NULL;
        close(fd);
        return r;
    }
    return fd;
}

int file_write_all(int fd, const void *buf, size_t len, uint64_t off, const char *filename)
{
    const uint8_t *p = buf;
    for (size_t done = 0; done < len;) {
        ssize_t w = pwrite(fd, p + done, len - done, (off_t)(off + done));
        if (w <= 0)
            return err_set(w < 0 ? -errno : -EIO, "%s: write of %zu bytes at offset %" PRIu64
                           " failed: %s", filename, len - done, off + done,
                           w < 0 ? strerror(errno) : "no progress");
        done += (size_t)w;
    }
    return 0;
}

int file_create_done(int fd, struct file_lock *lock, int r, const char *filename)
{
    file_lock_release(lock);
    if (close(fd) < 0 && r == 0)
        r = err_set(-errno, "%s: close failed: %s", filename, strerror(errno));
    return r;
}

void lock_perms_for_open(const struct vdisk_open_params *p, bool raw_format, unsigned *perm,
                         unsigned *shared)
{
    bool backing = p->chain != NULL;
    if (!p->read_only) {
        /* Writers let others read, never write or resize, as QEMU's format
         * drivers and guest devices (share-rw=off) do; qemu-io lets others
         * write a raw image, vdisk does not.  A format grows its file (a
         * raw image takes resize when it is resized, raw_truncate). */
        *perm = PERM_CONSISTENT_READ | PERM_WRITE | (raw_format ? 0 : PERM_RESIZE);
        *shared = PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED;
    } else {
        /* Readers of a format with metadata, and of backing files, need the
         * file not to change under them; a raw image read at the top
         * tolerates writers, as in QEMU.  force-share tolerates anything. */
        *perm = PERM_CONSISTENT_READ;
        *shared = p->force_share || (raw_format && !backing)
                      ? PERM_ALL
                      : PERM_ALL & ~(PERM_WRITE | PERM_RESIZE);
    }
}

int dev_take_perms(struct vdisk_dev *file, const struct vdisk_driver *fmt,
                   const struct vdisk_open_params *p)
{
    if (!file->drv->take_perms)
        return 0; /* memory and test devices: nothing to lock */
    unsigned perm, shared;
    lock_perms_for_open(p, fmt == &vdisk_driver_raw, &perm, &shared);
    return file->drv->take_perms(file, perm, shared);
}
