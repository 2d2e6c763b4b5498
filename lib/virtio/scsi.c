/* SPDX-License-Identifier: MIT */
/*
 * lib/virtio/scsi.c: virtio-scsi (virtio 1.x, 5.6) with one MMC CD-ROM at
 * target 0, LUN 0 (the commands themselves are mmc.c's).
 *
 * Queue 0 is the control queue (task management answered after the
 * requests in flight complete; asynchronous notification: none offered),
 * queue 1 the event queue (its buffers are held: no hot-plug events are
 * sent; at most the queue size of them, as virtqueue.c breaks a queue with
 * more requests in flight, and they are given up when the queue stops),
 * queues 2 and up carry commands.  A command's driver-readable part is
 * {lun[8], id, task_attr, prio, crn, cdb[cdb_size]} then data-out; its
 * device-writable part is {sense_len, residual, status_qualifier, status,
 * response, sense[sense_size]} then data-in.  cdb_size and sense_size are
 * the driver's to change in the configuration space at any time: each
 * command keeps the values it was parsed with, to its completion.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/iso9660.h>

#include "abi.h"
#include "error_internal.h"
#include "virtio/mmc.h"
#include "virtio_internal.h"

#define VIRTIO_SCSI_S_OK         0
#define VIRTIO_SCSI_S_BAD_TARGET 3
#define VIRTIO_SCSI_S_FAILURE    9

#define VIRTIO_SCSI_T_TMF            0
#define VIRTIO_SCSI_T_AN_QUERY       1
#define VIRTIO_SCSI_T_AN_SUBSCRIBE   2

#define SCSI_CONFIG_SIZE 36
#define SCSI_CDB_DEFAULT 32
#define SCSI_SENSE_DEFAULT 96
#define SCSI_FIELD_MAX 256     /* largest cdb_size / sense_size a driver may set */

#define INQUIRY     0x12
#define REPORT_LUNS 0xa0

/* A command's words of vq_req.scratch. */
enum {
    SC_LENGTH,          /* bytes read from the medium */
    SC_DATA_IN,         /* bytes of data-in room */
    SC_SENSE_SIZE,      /* sense_size when the command was parsed */
};

struct scsi {
    struct mmc_lun *lun;
    uint32_t cdb_size, sense_size;
    uint8_t *buf;              /* MMC_REPLY_MAX bytes for immediate replies */
    struct vq_req *events;     /* event-queue buffers held */
};

static int scsi_config_read(struct vdisk_virtio *v, uint32_t off, void *buf, uint32_t len)
{
    struct scsi *s = v->priv;
    uint8_t c[SCSI_CONFIG_SIZE] = {0};
    le32_store(c + 0, v->nq - 2);        /* num_queues */
    le32_store(c + 4, 254);              /* seg_max */
    le32_store(c + 8, 0xffff);           /* max_sectors */
    le32_store(c + 12, 128);             /* cmd_per_lun */
    le32_store(c + 16, 16);              /* event_info_size */
    le32_store(c + 20, s->sense_size);
    le32_store(c + 24, s->cdb_size);
    le16_store(c + 28, 0);               /* max_channel */
    le16_store(c + 30, 0);               /* max_target */
    le32_store(c + 32, 0);               /* max_lun */
    memcpy(buf, c + off, len);
    return 0;
}

static int scsi_config_write(struct vdisk_virtio *v, uint32_t off, const void *buf, uint32_t len)
{
    struct scsi *s = v->priv;
    if ((off != 20 && off != 24) || len != 4) {
        vlog(v, VLOG_CONFIG, "write of %u bytes at configuration offset %u (only sense_size "
             "and cdb_size are writable)", len, off);
        return 0;
    }
    uint32_t val = le32_load(buf);
    if (val > SCSI_FIELD_MAX || (off == 24 && val < 6)) {
        vlog(v, VLOG_CONFIG, "%s of %u refused", off == 20 ? "sense_size" : "cdb_size", val);
        return 0;
    }
    if (off == 20)
        s->sense_size = val;
    else
        s->cdb_size = val;
    return 0;
}

/* Writes the response header (and sense) and completes the request.  The
 * header's size is the request's sense_size, which its buffers were checked
 * against, not the configuration's now. */
static void scsi_respond(struct vq_req *r, const struct mmc_reply *rep, uint8_t response,
                         size_t data, size_t data_in_len)
{
    struct vdisk_virtio *v = r->v;
    uint32_t sense_size = (uint32_t)r->scratch[SC_SENSE_SIZE];
    uint8_t h[12 + SCSI_FIELD_MAX] = {0};
    uint32_t sense_len = 0;
    if (rep && response == VIRTIO_SCSI_S_OK) {
        sense_len = rep->sense_len < sense_size ? rep->sense_len : sense_size;
        memcpy(h + 12, rep->sense, sense_len);
        h[10] = rep->status;
        if (rep->status != MMC_STATUS_GOOD)
            v->stats.errors++;
    } else {
        v->stats.errors++;
    }
    le32_store(h + 0, sense_len);
    le32_store(h + 4, (uint32_t)(data_in_len - data));
    h[11] = response;
    size_t hl = 12 + (size_t)sense_size;
    iov_from_buf(r->in, (int)r->nin, 0, h, hl);
    r->used_len = (uint32_t)(hl + data);
    vq_complete(r);
}

static void scsi_read_done(void *user, int result)
{
    struct vq_req *r = user;
    struct scsi *s = r->v->priv;
    struct mmc_reply rep;
    memset(&rep, 0, sizeof rep);
    size_t length = (size_t)r->scratch[SC_LENGTH], data_in_len = (size_t)r->scratch[SC_DATA_IN];
    if (result < 0) {
        vlog(r->v, VLOG_IO, "CD-ROM read error: %s", vdisk_get_error());
        rep.action = MMC_READ;
        rep.length = length;
        mmc_read_failed(s->lun, result, &rep);
        scsi_respond(r, &rep, VIRTIO_SCSI_S_OK, 0, data_in_len);
        return;
    }
    rep.status = MMC_STATUS_GOOD;
    r->v->stats.bytes_read += length;
    scsi_respond(r, &rep, VIRTIO_SCSI_S_OK, length, data_in_len);
}

static void scsi_command(struct vdisk_virtio *v, struct vq_req *r)
{
    struct scsi *s = v->priv;
    /* The configuration as it is now, for this command's whole life. */
    uint32_t cdb_size = s->cdb_size, sense_size = s->sense_size;
    r->scratch[SC_SENSE_SIZE] = sense_size;
    size_t ohdr = 19 + (size_t)cdb_size, ihdr = 12 + (size_t)sense_size;
    if (r->out_len < ohdr || r->in_len < ihdr) {
        vlog(v, VLOG_REQUEST, "command with %zu driver bytes and %zu device bytes (expected "
             "at least %zu and %zu)", r->out_len, r->in_len, ohdr, ihdr);
        v->stats.errors++;
        vq_complete(r);
        return;
    }
    uint8_t hdr[19 + SCSI_FIELD_MAX];
    iov_to_buf(r->out, (int)r->nout, 0, hdr, ohdr);
    const uint8_t *lun = hdr, *cdb = hdr + 19;
    size_t data_in_len = r->in_len - ihdr;
    if (lun[0] != 1 || lun[1] != 0) {
        scsi_respond(r, NULL, VIRTIO_SCSI_S_BAD_TARGET, 0, data_in_len);
        return;
    }
    unsigned lunid = be16_load(lun + 2) & 0x3fffu;
    struct mmc_reply rep;
    memset(&rep, 0, sizeof rep);
    if (lunid != 0 && cdb[0] != REPORT_LUNS) {
        if (cdb[0] == INQUIRY && !(cdb[1] & 1)) {
            /* No logical unit here: peripheral qualifier 3, type 0x1f. */
            uint8_t inq[36] = {0x7f, 0, 5, 2, 31};
            size_t alloc = be16_load(cdb + 3);
            size_t n = sizeof inq < alloc ? sizeof inq : alloc;
            if (n > data_in_len)
                n = data_in_len;
            rep.status = MMC_STATUS_GOOD;
            iov_from_buf(r->in, (int)r->nin, ihdr, inq, n);
            scsi_respond(r, &rep, VIRTIO_SCSI_S_OK, n, data_in_len);
        } else {
            mmc_sense(&rep, MMC_SENSE_ILLEGAL_REQUEST, 0x25, 0x00);
            scsi_respond(r, &rep, VIRTIO_SCSI_S_OK, 0, data_in_len);
        }
        return;
    }
    struct mmc_cmd cmd = {
        .cdb = cdb,
        .cdb_len = cdb_size,
        .data_in_len = data_in_len,
        .data_out_len = r->out_len - ohdr,
    };
    mmc_execute(s->lun, &cmd, s->buf, &rep);
    if (rep.action == MMC_REPLY) {
        size_t n = rep.data_len < data_in_len ? rep.data_len : data_in_len;
        if (rep.status == MMC_STATUS_GOOD && n)
            iov_from_buf(r->in, (int)r->nin, ihdr, s->buf, n);
        else
            n = 0;
        scsi_respond(r, &rep, VIRTIO_SCSI_S_OK, n, data_in_len);
        return;
    }
    /* A read of the medium into the data-in buffers. */
    if (rep.length > data_in_len) {
        mmc_sense(&rep, MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
        scsi_respond(r, &rep, VIRTIO_SCSI_S_OK, 0, data_in_len);
        return;
    }
    if (rep.length == 0) {
        scsi_respond(r, &rep, VIRTIO_SCSI_S_OK, 0, data_in_len);
        return;
    }
    struct iovec *slice = malloc(r->nin * sizeof *slice);
    if (!slice) {
        mmc_sense(&rep, MMC_SENSE_HARDWARE_ERROR, 0x44, 0x00);
        scsi_respond(r, &rep, VIRTIO_SCSI_S_OK, 0, data_in_len);
        return;
    }
    int n = iov_slice(r->in, (int)r->nin, ihdr, (size_t)rep.length, slice);
    r->scratch[SC_LENGTH] = rep.length;
    r->scratch[SC_DATA_IN] = data_in_len;
    int e = vdisk_aio_preadv(v->q[r->q].aq, slice, n, rep.offset, 0, scsi_read_done, r);
    free(slice);
    if (e < 0)
        scsi_read_done(r, e);
}

static void scsi_control(struct vdisk_virtio *v, struct vq_req *r)
{
    uint8_t t[4] = {0};
    if (r->out_len < 4) {
        vlog(v, VLOG_REQUEST, "control request of %zu bytes", r->out_len);
        vq_complete(r);
        return;
    }
    iov_to_buf(r->out, (int)r->nout, 0, t, 4);
    uint32_t type = le32_load(t);
    if (type == VIRTIO_SCSI_T_TMF && r->out_len >= 24 && r->in_len >= 1) {
        /* Aborts and resets: let what is in flight finish, then report done. */
        for (unsigned i = 2; i < v->nq; i++)
            if (v->q[i].aq)
                vdisk_queue_drain(v->q[i].aq);
        for (unsigned i = 2; i < v->nq; i++)
            vq_flush_notify(v, i);
        uint8_t resp = VIRTIO_SCSI_S_OK;
        iov_from_buf(r->in, (int)r->nin, 0, &resp, 1);
        r->used_len = 1;
    } else if ((type == VIRTIO_SCSI_T_AN_QUERY || type == VIRTIO_SCSI_T_AN_SUBSCRIBE) &&
               r->out_len >= 16 && r->in_len >= 5) {
        uint8_t resp[5] = {0, 0, 0, 0, VIRTIO_SCSI_S_OK};
        iov_from_buf(r->in, (int)r->nin, 0, resp, 5);
        r->used_len = 5;
    } else {
        vlog(v, VLOG_REQUEST, "control request type %u with %zu/%zu bytes is not supported",
             type, r->out_len, r->in_len);
        if (r->in_len >= 1) {
            uint8_t resp = VIRTIO_SCSI_S_FAILURE;
            iov_from_buf(r->in, (int)r->nin, r->in_len - 1, &resp, 1);
            r->used_len = (uint32_t)r->in_len;
        }
    }
    vq_complete(r);
}

static void scsi_request(struct vdisk_virtio *v, struct vq_req *r)
{
    struct scsi *s = v->priv;
    if (r->q == 0) {
        scsi_control(v, r);
    } else if (r->q == 1) {
        r->next_free = s->events;
        s->events = r;
    } else {
        scsi_command(v, r);
    }
}

/* A buffer was outside guest memory: a command whose response header is
 * valid gets VIRTIO_SCSI_S_FAILURE. */
static void scsi_fail(struct vdisk_virtio *v, struct vq_req *r)
{
    struct scsi *s = v->priv;
    r->scratch[SC_SENSE_SIZE] = s->sense_size;
    if (r->q >= 2 && r->nin && r->in[0].iov_len >= 12 + (size_t)s->sense_size) {
        scsi_respond(r, NULL, VIRTIO_SCSI_S_FAILURE, 0, 0);
        return;
    }
    vq_complete(r);
}

static void drop_events(struct vdisk_virtio *v)
{
    struct scsi *s = v->priv;
    while (s->events) {
        struct vq_req *r = s->events;
        s->events = r->next_free;
        int was = v->resetting;
        v->resetting = 1;
        vq_complete(r);
        v->resetting = was;
    }
}

/* The event queue stopped: the buffers held are forgotten as a reset
 * forgets them (no event is ever written into them), so that however often
 * the driver or front end stops and starts the queue, at most one queue's
 * worth is held. */
static void scsi_queue_stop(struct vdisk_virtio *v, unsigned q)
{
    if (q == 1)
        drop_events(v);
}

static void scsi_reset(struct vdisk_virtio *v)
{
    struct scsi *s = v->priv;
    drop_events(v);
    s->cdb_size = SCSI_CDB_DEFAULT;
    s->sense_size = SCSI_SENSE_DEFAULT;
}

static void scsi_free(struct vdisk_virtio *v)
{
    struct scsi *s = v->priv;
    if (!s)
        return;
    drop_events(v);
    mmc_lun_free(s->lun);
    free(s->buf);
    free(s);
}

static const struct virtio_model scsi_model = {
    .name = "virtio-scsi",
    .config_read = scsi_config_read,
    .config_write = scsi_config_write,
    .request = scsi_request,
    .fail = scsi_fail,
    .queue_stop = scsi_queue_stop,
    .reset = scsi_reset,
    .free = scsi_free,
};

VDISK_EXPORT int vdisk_virtio_scsi_cdrom_new(vdisk_virtio **out, vdisk_dev *cdrom,
                                const struct vdisk_virtio_scsi_params *p)
{
    err_enter(__func__);
    if (!out || !cdrom)
        return err_set(-EINVAL, "no device given");
    *out = NULL;
    struct vdisk_cdrom_media m = {.struct_size = sizeof m};
    int is_cd = vdisk_cdrom_get_media(cdrom, &m) == 0;
    err_enter(__func__);
    if (!is_cd)
        return err_set(-EINVAL, "the device is not a CD-ROM (open it with vdisk_open_cdrom)");
    /* The caller's parameters; those its version lacks take their defaults. */
    struct vdisk_virtio_scsi_params in = {.struct_size = sizeof in};
    if (p) {
        int r = ABI_IN(vdisk_virtio_scsi_params, &in, p, VDISK_VIRTIO_SCSI_PARAMS_SIZE_V1);
        if (r < 0)
            return r;
    }
    p = &in;
    unsigned nrq = p->num_queues ? p->num_queues : 1;
    unsigned qsize = p->queue_size ? p->queue_size : 256;
    if (nrq > 16)
        return err_set(-EINVAL, "%u request queues asked for (at most 16)", nrq);
    struct vdisk_virtio *v;
    int r = virtio_alloc(&v, sizeof(struct scsi), qsize);
    if (r < 0)
        return r;
    struct scsi *s = v->priv;
    s->cdb_size = SCSI_CDB_DEFAULT;
    s->sense_size = SCSI_SENSE_DEFAULT;
    r = virtio_init(v, &scsi_model, cdrom, VDISK_VIRTIO_ID_SCSI, 0, nrq + 2, qsize);
    if (r == 0 && !(s->buf = malloc(MMC_REPLY_MAX)))
        r = err_set(-ENOMEM, "out of memory");
    if (r == 0) {
        int e = 0;
        s->lun = mmc_lun_new(cdrom, p->vendor, p->product, &e);
        if (!s->lun)
            r = err_set(e ? e : -ENOMEM, "cannot create the CD-ROM logical unit");
    }
    for (unsigned i = 2; r == 0 && i < nrq + 2; i++)
        r = virtio_attach_aq(v, i);
    if (r < 0) {
        vdisk_virtio_free(v);
        return r;
    }
    v->config_size = SCSI_CONFIG_SIZE;
    *out = v;
    return 0;
}

VDISK_EXPORT int vdisk_virtio_scsi_change_medium(vdisk_virtio *v, const char *iso)
{
    err_enter(__func__);
    if (!v || v->device_id != VDISK_VIRTIO_ID_SCSI)
        return err_set(-EINVAL, "not a virtio-scsi CD-ROM");
    struct scsi *s = v->priv;
    return mmc_change_medium(s->lun, iso);
}
