/* SPDX-License-Identifier: MIT */
/*
 * tests/hostile/bounds.c: resource bounds on hostile images.
 *
 * Opening, checking and converting an image, however hostile, stays under
 * a memory bound and a CPU-time bound proportional to the file's real
 * size (README.md, "Reliability"):
 *
 *   memory    64 MiB of address space plus the caches of each open qcow2
 *             image (by default at most 32 MiB of L2 tables and 8 MiB of
 *             refcount blocks);
 *   CPU time  1 second plus 1 second per 16 MiB of the files read.
 *
 * Each command runs in a forked child under setrlimit(RLIMIT_AS) and
 * setrlimit(RLIMIT_CPU): exceeding the memory bound makes an allocation
 * fail (and the command fail with "out of memory" or die), exceeding the
 * time bound kills it with SIGXCPU.  The library's open runs the same way,
 * in a child.  Sanitizer builds reserve terabytes of shadow memory, so
 * there only the CPU bound applies (multiplied by 10).
 *
 * The images claim huge sizes and tables in small files: a 2^60-byte disk
 * whose L1 table would take 16 GiB, a real 2^60-byte disk with 2 MiB
 * clusters and a 16 MiB L1 table, a refcount table of 122880 refcount
 * blocks (4 billion clusters) in a 2 MiB file, an L1 table whose 16384
 * entries all point to one L2 table whose entries all point to one data
 * cluster (8 TiB of data over 448 KiB), 65536 snapshots sharing one L1
 * table, a GPT claiming 2^32 entries, an ISO claiming 2^32 blocks.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <vdisk/vdisk.h>

#include "endian.h"
#include "harness.h"
#include "images.h"

#define MiB (1ull << 20)
#define BASE_BYTES (64 * MiB)
#define QCOW2_CACHES (40 * MiB)

static void patch32(const char *path, uint64_t off, uint32_t v)
{
    uint8_t b[4];
    be32_store(b, v);
    patch_at(path, off, b, 4);
}

static void patch64(const char *path, uint64_t off, uint64_t v)
{
    uint8_t b[8];
    be64_store(b, v);
    patch_at(path, off, b, 8);
}

/* The limits for reading FILE_BYTES with QCOW2_IMAGES qcow2 images open. */
static void limits(uint64_t file_bytes, unsigned qcow2_images, rlim_t *as, rlim_t *cpu)
{
    *as = BASE_BYTES + qcow2_images * QCOW2_CACHES;
    *cpu = 1 + file_bytes / (16 * MiB);
    if (SANITIZED)
        *cpu *= 10;
}

static void apply_limits(rlim_t as, rlim_t cpu)
{
    struct rlimit r;
    if (!SANITIZED) {
        /* One malloc arena, here and in what the child runs: glibc
         * reserves 64 MiB of address space (not memory) for each thread
         * that allocates, which RLIMIT_AS counts as if vdisk had used it. */
        mallopt(M_ARENA_MAX, 1);
        setenv("MALLOC_ARENA_MAX", "1", 1);
        r.rlim_cur = r.rlim_max = as;
        if (setrlimit(RLIMIT_AS, &r) != 0)
            _exit(120);
    }
    r.rlim_cur = cpu;
    r.rlim_max = cpu + 1;
    if (setrlimit(RLIMIT_CPU, &r) != 0)
        _exit(121);
    alarm(120); /* a hang that burns no CPU */
}

/* What a bounded child used. */
struct usage {
    int status;      /* exit status, or 128 + signal */
    double cpu;      /* seconds, user + system */
    long maxrss_kb;
};

static struct usage wait_child(pid_t pid)
{
    int st;
    struct rusage ru;
    while (wait4(pid, &st, 0, &ru) < 0)
        ck_assert_int_eq(errno, EINTR);
    struct usage u;
    u.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    u.cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    u.maxrss_kb = ru.ru_maxrss;
    return u;
}

static char err_text[4096], check_err[4096];

/*
 * Runs the shell command CMD (the last program exec'ed in place) under the
 * limits for FILE_BYTES and QCOW2_IMAGES; its standard error is kept in
 * err_text.  Fails the test when a bound was exceeded.
 */
static struct usage bounded(const char *what, uint64_t file_bytes, unsigned qcow2_images,
                            const char *cmd)
{
    rlim_t as, cpu;
    limits(file_bytes, qcow2_images, &as, &cpu);
    const char *errf = scratch("bounded.err");
    fflush(stdout);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int e = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int o = open("/dev/null", O_WRONLY);
        if (e < 0 || o < 0)
            _exit(122);
        dup2(o, 1);
        dup2(e, 2);
        signal(SIGALRM, SIG_DFL);
        apply_limits(as, cpu);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    struct usage u = wait_child(pid);
    size_t len;
    char *t = read_file(errf, &len);
    snprintf(err_text, sizeof err_text, "%s", t);
    free(t);
    printf("bounds: %-44s status %3d  cpu %6.3f s (limit %lu)  max RSS %6ld KiB (limit %llu "
           "KiB%s)\n", what, u.status, u.cpu, (unsigned long)cpu, u.maxrss_kb,
           (unsigned long long)as / 1024, SANITIZED ? ", not enforced" : "");
    ck_assert_msg(u.status != 128 + SIGXCPU && u.status != 128 + SIGKILL,
                  "%s: over the CPU bound (%lu s): %.2f s", what, (unsigned long)cpu, u.cpu);
    ck_assert_msg(u.status < 128, "%s: died of signal %d (out of memory?): %.300s", what,
                  u.status - 128, err_text);
    ck_assert_msg(!strstr(err_text, "out of memory") && !strstr(err_text, "Cannot allocate"),
                  "%s: over the memory bound (%llu bytes): %.300s", what, (unsigned long long)as,
                  err_text);
    return u;
}

/* vdisk_open(PATH) (read-only, format FORMAT or probed) in a bounded child:
 * returns what it returned, with its message in err_text. */
static int bounded_open(const char *path, const char *format, unsigned qcow2_images)
{
    rlim_t as, cpu;
    limits(file_size(path), qcow2_images, &as, &cpu);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    fflush(stdout);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(p[0]);
        signal(SIGALRM, SIG_DFL);
        apply_limits(as, cpu);
        vdisk_options *o;
        vdisk_dev *dev;
        int r = vdisk_options_new(&o);
        if (r == 0)
            r = vdisk_options_set(o, "read-only", "on");
        if (r == 0 && format)
            r = vdisk_options_set(o, "format", format);
        if (r == 0)
            r = vdisk_open(&dev, path, o);
        char msg[1024];
        int n = snprintf(msg, sizeof msg, "%d %s", r, r < 0 ? vdisk_get_error() : "");
        if (write(p[1], msg, (size_t)n) < 0)
            _exit(3);
        if (r == 0)
            vdisk_close(dev);
        vdisk_options_free(o);
        _exit(0);
    }
    close(p[1]);
    char msg[1100];
    ssize_t n = read(p[0], msg, sizeof msg - 1);
    close(p[0]);
    msg[n > 0 ? n : 0] = '\0';
    struct usage u = wait_child(pid);
    printf("bounds: %-44s status %3d  cpu %6.3f s (limit %lu)  max RSS %6ld KiB\n",
           "vdisk_open", u.status, u.cpu, (unsigned long)cpu, u.maxrss_kb);
    ck_assert_msg(u.status == 0, "vdisk_open of %s: status %d (over a bound?)", path, u.status);
    int r = atoi(msg);
    snprintf(err_text, sizeof err_text, "%s", strchr(msg, ' ') ? strchr(msg, ' ') + 1 : "");
    return r;
}

/* info, check and convert (to qcow2, to OUT) of IMG under the bounds; the
 * exit statuses expected. */
static void info_check_convert(const char *img, int info_st, int check_st, int convert_st)
{
    uint64_t fs = file_size(img);
    struct usage u = bounded(fmt("info %s", strrchr(img, '/') + 1), fs, 1,
                             fmt("exec %s info '%s'", vdisk_bin(), img));
    ck_assert_msg(u.status == info_st, "info: exit %d: %.300s", u.status, err_text);
    u = bounded(fmt("check %s", strrchr(img, '/') + 1), fs, 1,
                fmt("exec %s check '%s'", vdisk_bin(), img));
    ck_assert_msg(u.status == check_st, "check: exit %d: %.300s", u.status, err_text);
    memcpy(check_err, err_text, sizeof check_err);
    if (convert_st < 0)
        return;
    const char *out = scratch("out.qcow2");
    unlink(out);
    u = bounded(fmt("convert %s", strrchr(img, '/') + 1), fs, 2,
                fmt("exec %s convert -O qcow2 '%s' '%s'", vdisk_bin(), img, out));
    ck_assert_msg(u.status == convert_st, "convert: exit %d: %.300s", u.status, err_text);
}

/* A refcount table of 15 clusters (122880 refcount blocks, each covering
 * 32768 clusters: 2^32 clusters, 256 TiB) in a 2 MiB file, every entry
 * pointing to the one refcount block. */
static const char *huge_refcount_table_image(void)
{
    const char *img = hostile_base("reft.qcow2");
    RUN_OK("truncate -s 2M '%s'", img);
    size_t n = 15 * 8192;
    uint8_t *t = malloc(n * 8);
    for (size_t i = 0; i < n; i++)
        be64_store(t + 8 * i, 0x20000);
    patch_at(img, 0x100000, t, n * 8);
    free(t);
    patch64(img, 48, 0x100000);
    patch32(img, 56, 15);
    return img;
}

/* 65536 snapshots (the most allowed), all sharing one L1 table of 8192
 * entries that all point to the one L2 table. */
static const char *many_snapshots_image(void)
{
    const char *img = hostile_base("snaps.qcow2");
    uint8_t *l1 = malloc(8192 * 8);
    for (int i = 0; i < 8192; i++)
        be64_store(l1 + 8 * i, 0x8000000000040000ull);
    patch_at(img, 0x30000, l1, 8192 * 8);
    free(l1);
    /* (each entry with v3's 16 bytes of extra data: VM state 0, disk 0) */
    size_t n = 65536, e = 56;
    uint8_t *st = calloc(n, e);
    for (size_t i = 0; i < n; i++) {
        be64_store(st + e * i, 0x30000);
        be32_store(st + e * i + 8, 8192);
        be32_store(st + e * i + 36, 16);
    }
    patch_at(img, 0x70000, st, n * e);
    free(st);
    patch32(img, 60, (uint32_t)n);
    patch64(img, 64, 0x70000);
    return img;
}

/* A 2^60-byte disk in a 448 KiB file: its L1 table would take 16 GiB. */
START_TEST(huge_size_tiny_file)
{
    const char *img = hostile_base("huge.qcow2");
    patch64(img, 24, 1ull << 60);
    patch32(img, 36, 1u << 31);
    ck_assert_int_eq(bounded_open(img, "qcow2", 1), -EINVAL);
    ck_assert_str_eq(err_text, "vdisk_open: Active L1 table too large");
    info_check_convert(img, 1, 1, 1);
    ck_assert_str_eq(err_text, "vdisk: Active L1 table too large\n");
}
END_TEST

/* A real 2^60-byte disk: 2 MiB clusters, a 16 MiB L1 table, all empty. */
START_TEST(huge_size_real_l1)
{
    const char *img = scratch("exa.qcow2");
    RUN_OK("rm -f '%s' && %s create -q -f qcow2 -o cluster_size=2M '%s' 1E", img, vdisk_bin(),
           img);
    ck_assert_int_eq(bounded_open(img, NULL, 1), 0);
    info_check_convert(img, 0, 0, -1);
    /* Converting it skips the empty 2^60 bytes without walking them (the
     * target needs 2 MiB clusters too, for its L1 table to fit). */
    const char *out = scratch("exa-out.qcow2");
    unlink(out);
    struct usage u = bounded("convert exa.qcow2", file_size(img), 2,
                             fmt("exec %s convert -O qcow2 -o cluster_size=2M '%s' '%s'",
                                 vdisk_bin(), img, out));
    ck_assert_msg(u.status == 0, "convert: exit %d: %.300s", u.status, err_text);
}
END_TEST

/* The huge refcount table (huge_refcount_table_image). */
START_TEST(huge_refcount_table)
{
    const char *img = huge_refcount_table_image();
    ck_assert_int_eq(bounded_open(img, "qcow2", 1), 0);
    info_check_convert(img, 0, 2, 0);
}
END_TEST

/* 8 TiB of data over 448 KiB: 16384 L1 entries to one L2 table, 8192 L2
 * entries to one data cluster (the CVE-2015-5162 image of cve.c). */
START_TEST(shared_tables)
{
    const char *img = hostile_base("shared.qcow2");
    make_shared_tables(img);
    ck_assert_int_eq(bounded_open(img, "qcow2", 1), 0);
    /* Its data really is 8 TiB: converting it copies that much (qemu-img
     * too); info and check are what must not pay for it. */
    info_check_convert(img, 0, 2, -1);
}
END_TEST

/* The many snapshots (many_snapshots_image): walked naively, check would
 * read 2^29 L2 tables. */
START_TEST(many_snapshots)
{
    const char *img = many_snapshots_image();
    ck_assert_int_eq(bounded_open(img, "qcow2", 1), 0);
    info_check_convert(img, 0, 2, 0);
    /* The overlap is reported for each snapshot but the first. */
    /* Each snapshot's L1 table lies on the active one's cluster: reported,
     * not walked. */
    ck_assert_msg(strstr(check_err, "ERROR: the L1 table of snapshot 0 (offset 0x30000, 8192 "
                                    "entries) overlaps another L1 table\n"), "%.300s", check_err);
}
END_TEST

/* A GPT claiming 2^32 - 1 entries on a 2 MiB disk. */
START_TEST(huge_gpt)
{
    const char *img = scratch("gpt.img");
    RUN_OK("rm -f '%s' && truncate -s 2M '%s'", img, img);
    RUN_OK("%s part create --table=gpt '%s'", vdisk_bin(), img);
    for (int k = 0; k < 2; k++) {
        uint64_t lba = k ? 4095 : 1;
        int fd = open(img, O_RDWR);
        uint8_t h[512];
        ck_assert_int_eq(pread(fd, h, 512, (off_t)(lba * 512)), 512);
        le32_store(h + 80, 0xffffffffu);
        le32_store(h + 16, 0);
        le32_store(h + 16, (uint32_t)crc32(0, h, 92));
        ck_assert_int_eq(pwrite(fd, h, 512, (off_t)(lba * 512)), 512);
        close(fd);
    }
    uint64_t fs = file_size(img);
    struct usage u = bounded("part list gpt.img", fs, 0,
                             fmt("exec %s part list '%s'", vdisk_bin(), img));
    ck_assert_int_eq(u.status, 1);
    u = bounded("part verify gpt.img", fs, 0, fmt("exec %s part verify '%s'", vdisk_bin(), img));
    ck_assert_int_eq(u.status, 1);
    u = bounded("info gpt.img", fs, 0, fmt("exec %s info '%s'", vdisk_bin(), img));
    ck_assert_int_eq(u.status, 0);
    const char *out = scratch("gpt.qcow2");
    unlink(out);
    u = bounded("convert gpt.img", fs, 1,
                fmt("exec %s convert -O qcow2 '%s' '%s'", vdisk_bin(), img, out));
    ck_assert_int_eq(u.status, 0);
}
END_TEST

/* A directory record for block 18 (the root) named NAME (0 or 1). */
static void root_record(uint8_t *r, uint8_t name)
{
    r[0] = 34;
    r[2] = 18, r[9] = 18;       /* extent, both byte orders */
    r[11] = 0x08, r[16] = 0x08; /* 2048 bytes, both byte orders */
    r[25] = 2;                  /* a directory */
    r[28] = 1, r[31] = 1;       /* volume sequence number */
    r[32] = 1;
    r[33] = name;
}

/* An ISO of 19 blocks whose volume claims 2^32 - 1 blocks (8 TiB): the
 * descriptors at 16 and 17, an empty root directory at 18. */
START_TEST(huge_iso)
{
    static uint8_t iso[19 * 2048];
    memset(iso, 0, sizeof iso);
    uint8_t *pvd = iso + 16 * 2048, *term = iso + 17 * 2048, *root = iso + 18 * 2048;
    pvd[0] = 1;
    memcpy(pvd + 1, "CD001", 5);
    pvd[6] = 1;
    memset(pvd + 80, 0xff, 8);            /* volume space size */
    pvd[129] = 0x08, pvd[130] = 0x08;     /* logical block size 2048 */
    root_record(pvd + 156, 0);
    root_record(root, 0);
    root_record(root + 34, 1);
    term[0] = 255;
    memcpy(term + 1, "CD001", 5);
    term[6] = 1;
    const char *img = scratch("huge.iso");
    write_file(img, iso, sizeof iso);
    uint64_t fs = file_size(img);
    struct usage u = bounded("iso info huge.iso", fs, 0,
                             fmt("exec %s iso info '%s'", vdisk_bin(), img));
    ck_assert_msg(u.status == 0, "%.300s", err_text);
    u = bounded("iso ls huge.iso", fs, 0, fmt("exec %s iso ls -R '%s'", vdisk_bin(), img));
    ck_assert_msg(u.status == 0, "%.300s", err_text);
    u = bounded("info huge.iso", fs, 0, fmt("exec %s info '%s'", vdisk_bin(), img));
    ck_assert_int_eq(u.status, 0);
}
END_TEST

/* ---- Write verbs ---------------------------------------------------------- */

/* The base image with L2 entry 2 compressed at host offset 0x3f000000000000
 * (about 2^54, the most 64 KiB clusters allow): snapshot -c added a
 * reference to that cluster and grew the refcount table towards it, walking
 * some 10^8 indices before its size cap (16 s for one 19 KB image). */
static const char *far_compressed(const char *name)
{
    const char *img = hostile_base(name);
    patch64(img, 0x40000 + 2 * 8, (1ull << 62) | 0x3f000000000000ull);
    return img;
}

/*
 * Every verb that writes an image, on a fresh copy of IMG each time, under
 * the read verbs' bounds (memory, and CPU time for the file's real size).
 * DATA_BYTES: the virtual bytes that really hold data (a verb that must
 * read them all, commit, is left out when that is more than a few MiB).
 * The exit statuses are printed; only the bounds are asserted here.
 */
static void write_verbs(const char *img, uint64_t data_bytes)
{
    const char *w = scratch("w.qcow2"), *base = scratch("wbase.raw");
    uint64_t fs = file_size(img);
    const char *name = strrchr(img, '/') + 1;
    /* Shell commands: $V is the vdisk program, $W the copy. */
    static const char *const verbs[] = {
        "$V snapshot -c s1 $W",
        "$V snapshot -c s1 $W && $V snapshot -a s1 $W && $V snapshot -d s1 $W",
        "$V resize $W +1G",
        "$V resize --shrink $W 64k",
        "$V amend -o refcount_bits=64 $W",
        "$V amend -o refcount_bits=1 $W",
        "$V amend -o compat=0.10 $W",
        "$V amend -o lazy_refcounts=on $W",
        "$V check -r all $W",
        "$V check -r leaks $W",
        ("$V io -c 'write -P 7 0 64k' -c 'write -P 8 130k 4k' -c 'discard 64k 64k' "
         "-c 'write -z 192k 64k' -c flush $W"),
        "$V rebase -u -b wbase.raw -F raw $W",
        "$V rebase -u -b wbase.raw -F raw $W && $V commit $W",
    };
    RUN_OK("rm -f '%s' && truncate -s 1M '%s'", base, base);
    for (size_t k = 0; k < sizeof verbs / sizeof verbs[0]; k++) {
        const char *v = verbs[k];
        if (strstr(v, "commit") && data_bytes > 64 * MiB)
            continue;
        RUN_OK("cp '%s' '%s'", img, w);
        bounded(fmt("%s: %.34s", name, v + 3), fs, 2,
                fmt("cd '%s' && V='%s' W=w.qcow2 && exec 2>&1 && %s", scratch_dir(),
                    vdisk_bin(), v));
    }
}

START_TEST(write_verbs_far_compressed)
{
    const char *img = far_compressed("far.qcow2");
    write_verbs(img, 128 * 1024);
    /* The reference is refused before anything is written, as QEMU does:
     * the image is corrupt, and says where. */
    const char *w = scratch("w.qcow2");
    RUN_OK("cp '%s' '%s'", img, w);
    struct usage u = bounded("far.qcow2: snapshot -c", file_size(img), 1,
                             fmt("exec %s snapshot -c s1 '%s'", vdisk_bin(), w));
    ck_assert_int_eq(u.status, 1);
    ck_assert_msg(strstr(err_text, "compressed cluster at 0x3f000000000000") &&
                  strstr(err_text, "beyond the end of the image file"), "%s", err_text);
    struct run *r = run("qemu-img snapshot -l '%s'", w);
    ck_assert_msg(!strstr(r->out, "s1"), "%s", r->out);
}
END_TEST

/* The image of the report: 512-byte clusters, so that a compressed entry
 * can name host offset 0x1fff000000000000 (61 offset bits); snapshot -c
 * spun for about 16 s on it. */
START_TEST(write_verbs_far_compressed_small_clusters)
{
    const char *img = scratch("far512.qcow2");
    RUN_OK("rm -f '%s' && %s create -q -f qcow2 -o cluster_size=512 '%s' 1M && %s io -c "
           "'write -P 1 0 4k' '%s'", img, vdisk_bin(), img, vdisk_bin(), img);
    int fd = open(img, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    uint8_t b[8];
    ck_assert_int_eq(pread(fd, b, 8, 40), 8);
    uint64_t l1 = be64_load(b);
    ck_assert_int_eq(pread(fd, b, 8, (off_t)l1), 8);
    uint64_t l2 = be64_load(b) & 0x00fffffffffffe00ull;
    close(fd);
    patch64(img, l2 + 8 * 8, (1ull << 62) | 0x1fff000000000000ull);
    write_verbs(img, 4096);
    const char *w = scratch("w.qcow2");
    RUN_OK("cp '%s' '%s'", img, w);
    struct usage u = bounded("far512.qcow2: snapshot -c", file_size(img), 1,
                             fmt("exec %s snapshot -c s1 '%s'", vdisk_bin(), w));
    ck_assert_int_eq(u.status, 1);
    ck_assert_msg(strstr(err_text, "compressed cluster at 0x1fff000000000000") &&
                  strstr(err_text, "beyond the end of the image file"), "%s", err_text);
}
END_TEST

START_TEST(write_verbs_huge_refcount_table)
{
    const char *img = huge_refcount_table_image();
    write_verbs(img, 128 * 1024);
}
END_TEST

START_TEST(write_verbs_shared_tables)
{
    const char *img = hostile_base("shared.qcow2");
    make_shared_tables(img);
    write_verbs(img, 8ull << 40);
}
END_TEST

START_TEST(write_verbs_many_snapshots)
{
    const char *img = many_snapshots_image();
    write_verbs(img, 8ull << 40);
}
END_TEST

int main(void)
{
    if (chdir(scratch_dir()) != 0)
        return 1;
    Suite *s = suite_create("hostile-bounds");
    TCase *tc = tcase_create("bounds");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, huge_size_tiny_file);
    tcase_add_test(tc, huge_size_real_l1);
    tcase_add_test(tc, huge_refcount_table);
    tcase_add_test(tc, shared_tables);
    tcase_add_test(tc, many_snapshots);
    tcase_add_test(tc, huge_gpt);
    tcase_add_test(tc, huge_iso);
    tcase_add_test(tc, write_verbs_far_compressed);
    tcase_add_test(tc, write_verbs_far_compressed_small_clusters);
    tcase_add_test(tc, write_verbs_huge_refcount_table);
    tcase_add_test(tc, write_verbs_shared_tables);
    tcase_add_test(tc, write_verbs_many_snapshots);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
