/* SPDX-License-Identifier: MIT */
/*
 * lib/virtio/mmc.h: an MMC (SCSI multimedia) CD-ROM logical unit over a
 * vdisk CD-ROM device.  Transport-free: virtio-scsi (lib/virtio/scsi.c)
 * hands it a CDB and gets back either the reply (status, sense, data) or a
 * read of the medium to perform.  Single-threaded, like the virtio model
 * that owns it.
 */
#ifndef VDISK_VIRTIO_MMC_H
#define VDISK_VIRTIO_MMC_H

#include <stddef.h>
#include <stdint.h>

#include <vdisk/device.h>

/* SCSI status codes. */
#define MMC_STATUS_GOOD            0x00
#define MMC_STATUS_CHECK_CONDITION 0x02

/* Sense keys. */
#define MMC_SENSE_NO_SENSE        0x0
#define MMC_SENSE_NOT_READY       0x2
#define MMC_SENSE_MEDIUM_ERROR    0x3
#define MMC_SENSE_HARDWARE_ERROR  0x4
#define MMC_SENSE_ILLEGAL_REQUEST 0x5
#define MMC_SENSE_UNIT_ATTENTION  0x6
#define MMC_SENSE_DATA_PROTECT    0x7

/* The largest immediate reply (allocation lengths are 16-bit). */
#define MMC_REPLY_MAX 65536

struct mmc_lun;

/* A command from the initiator. */
struct mmc_cmd {
    const uint8_t *cdb;
    size_t cdb_len;        /* bytes in CDB (the transport's cdb_size) */
    size_t data_in_len;    /* bytes the initiator can receive */
    size_t data_out_len;   /* bytes the initiator sent */
};

enum mmc_action {
    MMC_REPLY,   /* the reply is complete: status, sense, data in BUF */
    MMC_READ,    /* read LENGTH bytes of the medium at OFFSET into the data-in
                    buffer, then report GOOD (or mmc_read_failed()) */
};

struct mmc_reply {
    enum mmc_action action;
    uint8_t status;          /* MMC_STATUS_* */
    uint8_t sense[18];       /* fixed-format sense data (response code 0x70) */
    uint8_t sense_len;       /* 0 with GOOD status, 18 with CHECK CONDITION */
    size_t data_len;         /* MMC_REPLY: bytes of BUF to return, already
                                cut to the CDB's allocation length (the
                                transport cuts again to data_in_len and
                                reports the residual) */
    uint64_t offset;         /* MMC_READ: byte offset on the medium */
    uint64_t length;         /* MMC_READ: bytes (<= data_in_len) */
};

/*
 * mmc_lun_new: a CD-ROM logical unit over CDROM (a vdisk_open_cdrom()
 * device; the LUN takes a reference).  VENDOR and PRODUCT fill INQUIRY
 * (NULL: "VDISK", "CD-ROM").  The first command after creation gets a
 * POWER ON unit attention.  Returns NULL on failure (-errno in *err).
 */
struct mmc_lun *mmc_lun_new(vdisk_dev *cdrom, const char *vendor, const char *product, int *err);
void mmc_lun_free(struct mmc_lun *lun);

/*
 * mmc_execute: runs the command C.  BUF (MMC_REPLY_MAX bytes) receives
 * immediate data.  Always fills R (never fails): errors are CHECK CONDITION
 * with sense data.  Handled: TEST UNIT READY, REQUEST SENSE, INQUIRY (with
 * VPD pages 0x00, 0x80, 0x83), REPORT LUNS, READ CAPACITY(10), READ(10),
 * READ(12), READ CD (user data only), READ TOC/PMA/ATIP (formats 0 and 1,
 * MSF or LBA, also as SFF-8020 byte 9 asks), GET
 * CONFIGURATION, GET EVENT STATUS NOTIFICATION (polled, media class),
 * MODE SENSE(6/10), PREVENT ALLOW MEDIUM REMOVAL, START STOP UNIT (eject
 * opens the tray, load closes it), READ DISC INFORMATION, MECHANISM STATUS,
 * READ TRACK INFORMATION, SET CD SPEED, GET PERFORMANCE (read, type 0),
 * SYNCHRONIZE CACHE (no-op).
 * Writes (WRITE(6/10/12/16), WRITE AND VERIFY, ...) get DATA PROTECT /
 * WRITE PROTECTED; unknown opcodes ILLEGAL REQUEST / INVALID COMMAND
 * OPERATION CODE; no medium or an open tray NOT READY / MEDIUM NOT PRESENT
 * (ASCQ 01 tray closed, 02 tray open); a pending unit attention is
 * reported first, also before an unknown opcode (except to INQUIRY, REPORT
 * LUNS, REQUEST SENSE, GET CONFIGURATION and GET EVENT STATUS
 * NOTIFICATION, as MMC says).  Reads: LBA + count beyond the medium get
 * ILLEGAL REQUEST / LBA OUT OF RANGE; count * 2048 > data_in_len gets
 * ILLEGAL REQUEST / INVALID FIELD IN CDB; count 0 is GOOD without data.
 * An MMC_READ reply also sets data_len = length.
 */
void mmc_execute(struct mmc_lun *lun, const struct mmc_cmd *c, uint8_t *buf,
                 struct mmc_reply *r);

/*
 * mmc_read_failed: the MMC_READ of R failed with ERR (-errno): turns R into
 * a CHECK CONDITION (MEDIUM ERROR / UNRECOVERED READ ERROR, or NOT READY /
 * MEDIUM NOT PRESENT for -ENOMEDIUM).
 */
void mmc_read_failed(struct mmc_lun *lun, int err, struct mmc_reply *r);

/*
 * mmc_change_medium: the host loads ISO (NULL: empty drive) and closes the
 * tray (a guest's PREVENT does not stop it).  With a medium loaded: the
 * unit attention 28/00 and the NewMedia event; with the drive left empty:
 * the MediaRemoval event only (commands then get NOT READY 3A/01).
 * Returns 0 or -errno (then the drive is empty).
 */
int mmc_change_medium(struct mmc_lun *lun, const char *iso);

/* mmc_sense: fills R as a CHECK CONDITION with KEY / ASC / ASCQ. */
void mmc_sense(struct mmc_reply *r, uint8_t key, uint8_t asc, uint8_t ascq);

#endif /* VDISK_VIRTIO_MMC_H */
