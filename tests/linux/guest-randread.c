/* guest-randread: the guest side of tests/bench/vhost.sh, built statically
 * into the initramfs by mkinitramfs.sh.
 *
 *   guest-randread now
 *       prints CLOCK_MONOTONIC in nanoseconds (for timing shell commands)
 *   guest-randread rand DEVICE COUNT [SEED]
 *       COUNT random 4 KiB reads with O_DIRECT at 4 KiB-aligned offsets
 *       spread over the whole device, one at a time; prints
 *       "VDISK-BENCH: randread count=N bytes=B ns=T" and exits 0
 *   guest-randread seq DEVICE BLOCK
 *       reads the whole device from start to end in BLOCK-byte O_DIRECT
 *       reads; prints "VDISK-BENCH: seqread bytes=B ns=T"
 *
 * The clock is the guest's own; under software emulation it is what the
 * guest experiences, which is what the benchmark compares. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static int open_dev(const char *path, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_DIRECT);
    if (fd < 0) {
        fprintf(stderr, "guest-randread: open %s: %s\n", path, strerror(errno));
        exit(1);
    }
    if (ioctl(fd, BLKGETSIZE64, size) < 0) {
        fprintf(stderr, "guest-randread: BLKGETSIZE64 %s: %s\n", path, strerror(errno));
        exit(1);
    }
    return fd;
}

static void *aligned(size_t n)
{
    void *p;
    if (posix_memalign(&p, 4096, n) != 0) {
        fprintf(stderr, "guest-randread: out of memory\n");
        exit(1);
    }
    return p;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "now") == 0) {
        printf("%" PRIu64 "\n", now_ns());
        return 0;
    }
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "rand") == 0) {
        uint64_t size, seed = argc == 5 ? strtoull(argv[4], NULL, 0) : 1;
        long count = strtol(argv[3], NULL, 0);
        int fd = open_dev(argv[2], &size);
        uint64_t blocks = size / 4096;
        char *buf = aligned(4096);
        if (blocks == 0 || count <= 0) {
            fprintf(stderr, "guest-randread: nothing to read\n");
            return 1;
        }
        if (seed == 0)
            seed = 1;
        uint64_t t0 = now_ns();
        for (long i = 0; i < count; i++) {
            off_t off = (off_t)(xorshift(&seed) % blocks) * 4096;
            ssize_t n = pread(fd, buf, 4096, off);
            if (n != 4096) {
                fprintf(stderr, "guest-randread: pread at %lld: %s\n", (long long)off,
                        n < 0 ? strerror(errno) : "short read");
                return 1;
            }
        }
        uint64_t t1 = now_ns();
        printf("VDISK-BENCH: randread count=%ld bytes=4096 ns=%" PRIu64 "\n", count, t1 - t0);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "seq") == 0) {
        uint64_t size, done = 0;
        size_t bs = strtoul(argv[3], NULL, 0);
        int fd = open_dev(argv[2], &size);
        if (bs == 0 || bs % 4096) {
            fprintf(stderr, "guest-randread: block size must be a multiple of 4096\n");
            return 1;
        }
        char *buf = aligned(bs);
        uint64_t t0 = now_ns();
        for (;;) {
            ssize_t n = read(fd, buf, bs);
            if (n < 0) {
                fprintf(stderr, "guest-randread: read at %" PRIu64 ": %s\n", done, strerror(errno));
                return 1;
            }
            if (n == 0)
                break;
            done += (uint64_t)n;
        }
        uint64_t t1 = now_ns();
        if (done != size) {
            fprintf(stderr, "guest-randread: read %" PRIu64 " of %" PRIu64 " bytes\n", done, size);
            return 1;
        }
        printf("VDISK-BENCH: seqread bytes=%" PRIu64 " ns=%" PRIu64 "\n", done, t1 - t0);
        return 0;
    }
    fprintf(stderr, "usage: guest-randread now | rand DEVICE COUNT [SEED] | seq DEVICE BLOCK\n");
    return 2;
}
