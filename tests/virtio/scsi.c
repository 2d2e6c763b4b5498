/* SPDX-License-Identifier: MIT */
/*
 * tests/virtio/scsi.c: the virtio-scsi CD-ROM model through virtqueues
 * built in memory: the request framing (LUN addressing, response header,
 * sense, residuals), READ(10) of the medium, task management, the event
 * queue, media change, malformed requests.  The MMC commands themselves are
 * tested one by one in unit-mmc.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/vdisk.h>
#include <vdisk/virtio.h>

#include "driver.h"
#include "harness.h"

#define CONTROLQ 0
#define EVENTQ 1
#define REQUESTQ 2

static const char *make_iso(const char *name, const char *volid, char fill)
{
    require_program("xorriso");
    const char *dir = scratch(fmt("%s.tree", name));
    RUN_OK("mkdir -p '%s'", dir);
    char data[6144];
    memset(data, fill, sizeof data);
    write_file(fmt("%s/DATA.BIN", dir), data, sizeof data);
    const char *iso = scratch(name);
    RUN_OK("xorriso -as mkisofs -quiet -V %s -o '%s' '%s'", volid, iso, dir);
    return iso;
}

static vdisk_virtio *make_scsi(const char *iso)
{
    vdisk_dev *cd;
    ck_assert_msg(vdisk_open_cdrom(&cd, iso, NULL) == 0, "%s", vdisk_get_error());
    vdisk_virtio *v;
    ck_assert_msg(vdisk_virtio_scsi_cdrom_new(&v, cd, NULL) == 0, "%s", vdisk_get_error());
    vdisk_close(cd);
    return v;
}

struct resp {
    uint32_t sense_len, residual;
    uint8_t status, response;
    uint8_t sense[96];
    uint32_t used;
    uint8_t *data;
};

/* Sends CDB (padded to 32 bytes) to TARGET/LUN with DATA_IN bytes of
 * data-in room; fills R. */
static void command(struct drv *d, uint8_t target, uint16_t lun, const uint8_t *cdb,
                    size_t cdb_len, uint32_t data_in, struct resp *r)
{
    uint64_t req = drv_alloc(d, 51), rsp = drv_alloc(d, 108);
    uint64_t din = data_in ? drv_alloc(d, data_in) : 0;
    uint8_t *q = drv_host(d, req);
    q[0] = 1;
    q[1] = target;
    q[2] = (uint8_t)(0x40 | lun >> 8);
    q[3] = (uint8_t)lun;
    memcpy(q + 19, cdb, cdb_len);
    struct drv_seg s[3] = {{req, 51, 0}, {rsp, 108, 1}, {din, data_in, 1}};
    drv_add(d, REQUESTQ, s, data_in ? 3 : 2, 0);
    ck_assert_int_eq(drv_kick(d, REQUESTQ), 0);
    drv_wait(d, REQUESTQ, 1, NULL, &r->used);
    uint8_t *p = drv_host(d, rsp);
    memcpy(&r->sense_len, p, 4);
    memcpy(&r->residual, p + 4, 4);
    r->status = p[10];
    r->response = p[11];
    memcpy(r->sense, p + 12, 96);
    r->data = data_in ? drv_host(d, din) : NULL;
}

/* Clears the power-on unit attention. */
static void clear_ua(struct drv *d)
{
    static const uint8_t tur[6] = {0};
    struct resp r;
    command(d, 0, 0, tur, 6, 0, &r);
    ck_assert_uint_eq(r.status, 2);
    ck_assert_uint_eq(r.sense[2] & 0xf, 6);
    command(d, 0, 0, tur, 6, 0, &r);
    ck_assert_uint_eq(r.status, 0);
}

START_TEST(config_and_inquiry)
{
    vdisk_virtio *v = make_scsi(make_iso("a.iso", "VOL_A", 'a'));
    ck_assert_uint_eq(vdisk_virtio_device_id(v), 8);
    ck_assert_uint_eq(vdisk_virtio_num_queues(v), 3);
    ck_assert_uint_eq(vdisk_virtio_config_size(v), 36);
    uint32_t nq, sense, cdb;
    vdisk_virtio_config_read(v, 0, &nq, 4);
    vdisk_virtio_config_read(v, 20, &sense, 4);
    vdisk_virtio_config_read(v, 24, &cdb, 4);
    ck_assert_uint_eq(nq, 1);
    ck_assert_uint_eq(sense, 96);
    ck_assert_uint_eq(cdb, 32);
    struct drv d;
    drv_init(&d, v, 32);
    uint8_t inq[6] = {0x12, 0, 0, 0, 96, 0};
    struct resp r;
    command(&d, 0, 0, inq, 6, 96, &r);
    ck_assert_uint_eq(r.response, 0);
    ck_assert_uint_eq(r.status, 0);
    ck_assert_uint_eq(r.data[0], 5);        /* CD/DVD device */
    ck_assert_uint_eq(r.data[1], 0x80);     /* removable */
    uint32_t len = 5u + r.data[4];
    ck_assert_uint_eq(r.residual, 96 - len);
    ck_assert_uint_eq(r.used, 108 + len);
    /* no such target; no such LUN */
    command(&d, 3, 0, inq, 6, 96, &r);
    ck_assert_uint_eq(r.response, 3);       /* BAD_TARGET */
    command(&d, 0, 2, inq, 6, 96, &r);
    ck_assert_uint_eq(r.status, 0);
    ck_assert_uint_eq(r.data[0], 0x7f);
    uint8_t tur[6] = {0};
    command(&d, 0, 2, tur, 6, 0, &r);
    ck_assert_uint_eq(r.status, 2);
    ck_assert_uint_eq(r.sense[2] & 0xf, 5);
    ck_assert_uint_eq(r.sense[12], 0x25);
    drv_fini(&d);
}
END_TEST

START_TEST(read_medium)
{
    const char *iso = make_iso("b.iso", "VOL_B", 'b');
    vdisk_virtio *v = make_scsi(iso);
    struct drv d;
    drv_init(&d, v, 32);
    clear_ua(&d);
    /* READ(10) of the primary volume descriptor, two blocks */
    uint8_t rd[10] = {0x28, 0, 0, 0, 0, 16, 0, 0, 2, 0};
    struct resp r;
    command(&d, 0, 0, rd, 10, 4096 + 512, &r);
    ck_assert_uint_eq(r.status, 0);
    ck_assert_uint_eq(r.residual, 512);
    ck_assert_mem_eq(r.data + 1, "CD001", 5);
    ck_assert_mem_eq(r.data + 40, "VOL_B", 5);
    size_t n;
    uint8_t *file = read_file(iso, &n);
    ck_assert_mem_eq(r.data, file + 16 * 2048, 4096);
    /* past the end; the data-in buffer too small */
    uint64_t blocks = n / 2048;
    uint8_t far[10] = {0x28, 0, (uint8_t)(blocks >> 24), (uint8_t)(blocks >> 16),
                       (uint8_t)(blocks >> 8), (uint8_t)blocks, 0, 0, 1, 0};
    command(&d, 0, 0, far, 10, 2048, &r);
    ck_assert_uint_eq(r.status, 2);
    ck_assert_uint_eq(r.sense[2] & 0xf, 5);
    ck_assert_uint_eq(r.sense[12], 0x21);
    command(&d, 0, 0, rd, 10, 2048, &r);
    ck_assert_uint_eq(r.status, 2);
    /* writes: write-protected */
    uint8_t wr[10] = {0x2a, 0, 0, 0, 0, 16, 0, 0, 1, 0};
    command(&d, 0, 0, wr, 10, 0, &r);
    ck_assert_uint_eq(r.status, 2);
    ck_assert_uint_eq(r.sense[2] & 0xf, 7);
    ck_assert_uint_eq(r.sense[12], 0x27);
    /* a data-in buffer outside guest memory: the response says FAILURE */
    uint64_t req = drv_alloc(&d, 51), rsp = drv_alloc(&d, 108);
    uint8_t *q = drv_host(&d, req);
    q[0] = 1;
    q[2] = 0x40;
    memcpy(q + 19, rd, 10);
    struct drv_seg s[] = {{req, 51, 0}, {rsp, 108, 1}, {0x7000000000ull, 2048, 1}};
    drv_add(&d, REQUESTQ, s, 3, 0);
    ck_assert_int_eq(drv_kick(&d, REQUESTQ), 0);
    uint32_t len;
    drv_wait(&d, REQUESTQ, 1, NULL, &len);
    ck_assert_uint_eq(len, 108);
    ck_assert_uint_eq(((uint8_t *)drv_host(&d, rsp))[11], 9);
    free(file);
    drv_fini(&d);
}
END_TEST

START_TEST(media_change_and_eject)
{
    const char *a = make_iso("c1.iso", "FIRST", '1');
    const char *b = make_iso("c2.iso", "SECOND", '2');
    vdisk_virtio *v = make_scsi(a);
    struct drv d;
    drv_init(&d, v, 32);
    clear_ua(&d);
    ck_assert_int_eq(vdisk_virtio_scsi_change_medium(v, b), 0);
    uint8_t tur[6] = {0};
    struct resp r;
    command(&d, 0, 0, tur, 6, 0, &r);
    ck_assert_uint_eq(r.status, 2);
    ck_assert_uint_eq(r.sense[2] & 0xf, 6);     /* UNIT ATTENTION */
    ck_assert_uint_eq(r.sense[12], 0x28);       /* medium may have changed */
    uint8_t rd[10] = {0x28, 0, 0, 0, 0, 16, 0, 0, 1, 0};
    command(&d, 0, 0, rd, 10, 2048, &r);
    ck_assert_uint_eq(r.status, 0);
    ck_assert_mem_eq(r.data + 40, "SECOND", 6);
    /* the guest ejects: no medium until loaded again */
    uint8_t eject[6] = {0x1b, 0, 0, 0, 0x02, 0};
    command(&d, 0, 0, eject, 6, 0, &r);
    ck_assert_uint_eq(r.status, 0);
    command(&d, 0, 0, tur, 6, 0, &r);
    ck_assert_uint_eq(r.status, 2);
    ck_assert_uint_eq(r.sense[2] & 0xf, 2);     /* NOT READY */
    ck_assert_uint_eq(r.sense[12], 0x3a);       /* MEDIUM NOT PRESENT */
    /* the host empties the drive */
    ck_assert_int_eq(vdisk_virtio_scsi_change_medium(v, NULL), 0);
    command(&d, 0, 0, rd, 10, 2048, &r);
    ck_assert_uint_eq(r.status, 2);
    drv_fini(&d);
}
END_TEST

START_TEST(control_and_event_queues)
{
    vdisk_virtio *v = make_scsi(make_iso("d.iso", "VOL_D", 'd'));
    struct drv d;
    drv_init(&d, v, 16);
    /* task management: LOGICAL UNIT RESET */
    uint64_t tmf = drv_alloc(&d, 24), tr = drv_alloc(&d, 1);
    uint8_t *t = drv_host(&d, tmf);
    t[4] = 5;
    t[8] = 1;
    *(uint8_t *)drv_host(&d, tr) = 0xee;
    struct drv_seg s1[] = {{tmf, 24, 0}, {tr, 1, 1}};
    drv_add(&d, CONTROLQ, s1, 2, 0);
    ck_assert_int_eq(drv_kick(&d, CONTROLQ), 0);
    uint32_t len;
    drv_wait(&d, CONTROLQ, 1, NULL, &len);
    ck_assert_uint_eq(len, 1);
    ck_assert_uint_eq(*(uint8_t *)drv_host(&d, tr), 0);
    /* asynchronous notification query: nothing supported */
    uint64_t an = drv_alloc(&d, 16), ar = drv_alloc(&d, 5);
    *(uint32_t *)drv_host(&d, an) = 1;
    struct drv_seg s2[] = {{an, 16, 0}, {ar, 5, 1}};
    drv_add(&d, CONTROLQ, s2, 2, 0);
    ck_assert_int_eq(drv_kick(&d, CONTROLQ), 0);
    drv_wait(&d, CONTROLQ, 1, NULL, &len);
    ck_assert_uint_eq(len, 5);
    /* event buffers are held, not returned */
    uint64_t ev = drv_alloc(&d, 16);
    struct drv_seg s3[] = {{ev, 16, 1}};
    drv_add(&d, EVENTQ, s3, 1, 0);
    ck_assert_int_eq(drv_kick(&d, EVENTQ), 0);
    uint16_t *used = drv_host(&d, d.q[EVENTQ].used);
    ck_assert_uint_eq(used[1], 0);
    /* a command whose buffers are too small for the header: completed empty */
    uint64_t small = drv_alloc(&d, 10), sr = drv_alloc(&d, 108);
    struct drv_seg s4[] = {{small, 10, 0}, {sr, 108, 1}};
    drv_add(&d, REQUESTQ, s4, 2, 0);
    ck_assert_int_eq(drv_kick(&d, REQUESTQ), 0);
    drv_wait(&d, REQUESTQ, 1, NULL, &len);
    ck_assert_uint_eq(len, 0);
    vdisk_virtio_reset(v);
    drv_fini(&d);
}
END_TEST

static vdisk_virtio *make_scsi_sized(const char *iso, unsigned queue_size)
{
    vdisk_dev *cd;
    ck_assert_msg(vdisk_open_cdrom(&cd, iso, NULL) == 0, "%s", vdisk_get_error());
    struct vdisk_virtio_scsi_params p = {.struct_size = sizeof p, .queue_size = queue_size};
    vdisk_virtio *v;
    ck_assert_msg(vdisk_virtio_scsi_cdrom_new(&v, cd, &p) == 0, "%s", vdisk_get_error());
    vdisk_close(cd);
    return v;
}

/* One 16-byte event buffer made available on the event queue: its head. */
static unsigned event_buffer(struct drv *d)
{
    struct drv_seg s[] = {{drv_alloc(d, 16), 16, 1}};
    return drv_add(d, EVENTQ, s, 1, 0);
}

/*
 * Issue 14 item 1: the event queue's buffers are held (no event is ever
 * sent), so a driver that makes one head available again and again grew
 * host memory without bound.  The event queue now breaks (needs reset,
 * logged) when more buffers than its size would be held; the control and
 * request queues still serve; a reset brings it back.
 */
START_TEST(event_queue_flood_breaks_queue)
{
    enum { QS = 16 };
    vdisk_virtio *v = make_scsi(make_iso("f.iso", "VOL_F", 'f'));
    struct drv d;
    drv_init(&d, v, QS);
    unsigned head = event_buffer(&d);
    for (unsigned i = 1; i < QS; i++)
        drv_add_head(&d, EVENTQ, (uint16_t)head);
    ck_assert_int_eq(drv_kick(&d, EVENTQ), 0);
    ck_assert_int_eq(vdisk_virtio_needs_reset(v), 0);
    drv_add_head(&d, EVENTQ, (uint16_t)head);
    ck_assert_int_eq(drv_kick(&d, EVENTQ), -EIO);
    ck_assert_int_eq(vdisk_virtio_needs_reset(v), 1);
    ck_assert_str_eq(d.last_log, "virtio-scsi: queue 1: virtqueue size exceeded: more requests "
                     "in flight than the queue's size (16); the queue is stopped until the "
                     "driver resets the device");
    uint16_t *used = drv_host(&d, d.q[EVENTQ].used);
    ck_assert_uint_eq(used[1], 0);

    /* The control queue and the request queue still serve. */
    uint64_t tmf = drv_alloc(&d, 24), tr = drv_alloc(&d, 1);
    ((uint8_t *)drv_host(&d, tmf))[4] = 5;
    ((uint8_t *)drv_host(&d, tmf))[8] = 1;
    struct drv_seg s1[] = {{tmf, 24, 0}, {tr, 1, 1}};
    drv_add(&d, CONTROLQ, s1, 2, 0);
    ck_assert_int_eq(drv_kick(&d, CONTROLQ), 0);
    uint32_t len;
    drv_wait(&d, CONTROLQ, 1, NULL, &len);
    ck_assert_uint_eq(len, 1);
    uint8_t inq[6] = {0x12, 0, 0, 0, 96, 0};
    struct resp r;
    command(&d, 0, 0, inq, 6, 96, &r);
    ck_assert_uint_eq(r.status, 0);
    ck_assert_uint_eq(r.data[0], 5);

    /* After a reset the event queue holds buffers again, up to its size. */
    vdisk_virtio_reset(v);
    ck_assert_int_eq(vdisk_virtio_needs_reset(v), 0);
    drv_restart(&d);
    head = event_buffer(&d);
    for (unsigned i = 1; i < QS; i++)
        drv_add_head(&d, EVENTQ, (uint16_t)head);
    ck_assert_int_eq(drv_kick(&d, EVENTQ), 0);
    ck_assert_int_eq(vdisk_virtio_needs_reset(v), 0);
    command(&d, 0, 0, inq, 6, 96, &r);
    ck_assert_uint_eq(r.response, 0);
    drv_fini(&d);
}
END_TEST

/*
 * Issue 14 item 1: a front end that stops and starts the event queue (a
 * vhost-user GET_VRING_BASE, then the ring again) after filling it, a
 * thousand times: the buffers held before a stop are given up, so host
 * memory stays bounded by one queue's worth (before the fix each cycle
 * added a queue's worth of held requests).
 */
START_TEST(event_queue_restarts_bounded)
{
    enum { QS = 1024, CYCLES = 1000 };
    vdisk_virtio *v = make_scsi_sized(make_iso("g.iso", "VOL_G", 'g'), QS);
    struct drv d;
    drv_init(&d, v, QS);
    unsigned head = event_buffer(&d);
    long long heap0 = drv_heap_bytes();
    for (unsigned c = 0; c < CYCLES; c++) {
        for (unsigned i = c ? 0 : 1; i < QS; i++)
            drv_add_head(&d, EVENTQ, (uint16_t)head);
        ck_assert_int_eq(drv_kick(&d, EVENTQ), 0);
        drv_restart_queue(&d, EVENTQ);
    }
    long long grown = drv_heap_bytes() - heap0;
    ck_assert_msg(grown < 16 << 20, "the heap grew by %lld bytes over %u cycles of %u event "
                  "buffers", grown, CYCLES, QS);
    ck_assert_int_eq(vdisk_virtio_needs_reset(v), 0);
    uint16_t *used = drv_host(&d, d.q[EVENTQ].used);
    ck_assert_uint_eq(used[1], 0);
    drv_fini(&d);
}
END_TEST

/*
 * Issue 14 item 6: the driver changes sense_size while a READ(10) is in
 * flight.  The response header keeps the size the buffers were checked
 * against: before the fix the used length was computed with the new one
 * (12 + 256 + 2048 = 2316 against 2156 writable bytes).
 */
START_TEST(sense_size_changed_in_flight)
{
    const char *iso = make_iso("h.iso", "VOL_H", 'h');
    vdisk_virtio *v = make_scsi(iso);
    struct drv d;
    drv_init(&d, v, 32);
    clear_ua(&d);
    size_t n;
    uint8_t *file = read_file(iso, &n);
    const uint32_t sizes[] = {256, 0, 96};
    for (unsigned k = 0; k < 3; k++) {
        /* sense_size is 96 when the command is parsed */
        uint64_t req = drv_alloc(&d, 51), rsp = drv_alloc(&d, 108), din = drv_alloc(&d, 2048);
        uint8_t *q = drv_host(&d, req);
        q[0] = 1;
        q[2] = 0x40;
        uint8_t rd[10] = {0x28, 0, 0, 0, 0, 16, 0, 0, 1, 0};
        memcpy(q + 19, rd, 10);
        memset(drv_host(&d, rsp), 0xaa, 108);
        struct drv_seg s[] = {{req, 51, 0}, {rsp, 108, 1}, {din, 2048, 1}};
        drv_add(&d, REQUESTQ, s, 3, 0);
        ck_assert_int_eq(drv_kick(&d, REQUESTQ), 0);
        ck_assert_int_eq(vdisk_virtio_config_write(v, 20, &sizes[k], 4), 0);
        uint32_t len;
        drv_wait(&d, REQUESTQ, 1, NULL, &len);
        ck_assert_msg(len == 108 + 2048, "sense_size %u while in flight: used length %u "
                      "(%u bytes writable)", sizes[k], len, 108 + 2048);
        uint8_t *p = drv_host(&d, rsp);
        ck_assert_uint_eq(p[10], 0);          /* GOOD */
        ck_assert_uint_eq(p[11], 0);          /* VIRTIO_SCSI_S_OK */
        uint32_t residual;
        memcpy(&residual, p + 4, 4);
        ck_assert_uint_eq(residual, 0);
        ck_assert_mem_eq(drv_host(&d, din), file + 16 * 2048, 2048);
        /* back to 96 for the next command */
        uint32_t def = 96;
        ck_assert_int_eq(vdisk_virtio_config_write(v, 20, &def, 4), 0);
    }
    free(file);
    drv_fini(&d);
}
END_TEST

START_TEST(not_a_cdrom)
{
    const char *path = scratch("disk.raw");
    ck_assert_int_eq(vdisk_create(path, "raw", 1 << 20, NULL), 0);
    vdisk_dev *dev;
    ck_assert_int_eq(vdisk_open(&dev, path, NULL), 0);
    vdisk_virtio *v;
    ck_assert_int_eq(vdisk_virtio_scsi_cdrom_new(&v, dev, NULL), -EINVAL);
    ck_assert_ptr_null(v);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_virtio_scsi_cdrom_new: the device is not a "
                     "CD-ROM (open it with vdisk_open_cdrom)");
    vdisk_close(dev);
}
END_TEST

static Suite *scsi_suite(void)
{
    Suite *s = suite_create("virtio-scsi");
    TCase *tc = tcase_create("cdrom");
    tcase_add_test(tc, config_and_inquiry);
    tcase_add_test(tc, read_medium);
    tcase_add_test(tc, media_change_and_eject);
    tcase_add_test(tc, control_and_event_queues);
    tcase_add_test(tc, not_a_cdrom);
    suite_add_tcase(s, tc);
    tc = tcase_create("hostile");
    tcase_add_test(tc, event_queue_flood_breaks_queue);
    tcase_add_test(tc, event_queue_restarts_bounded);
    tcase_add_test(tc, sense_size_changed_in_flight);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(scsi_suite());
}
