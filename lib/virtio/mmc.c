/* SPDX-License-Identifier: MIT */
/*
 * lib/virtio/mmc.c: an MMC CD-ROM logical unit over a vdisk CD-ROM drive.
 *
 * The unit is a tray-loading drive with one data track (mode 1, 2048-byte
 * blocks) from block 0 to the medium's capacity.  State:
 *
 *   - the medium: what vdisk_cdrom_get_media() says of the device;
 *   - the tray: opened by the guest (START STOP UNIT, LoEj=1 Start=0), the
 *     medium then is not accessible (NOT READY, MEDIUM NOT PRESENT - TRAY
 *     OPEN); closed by the guest (LoEj=1 Start=1) or by a host medium
 *     change;
 *   - PREVENT ALLOW MEDIUM REMOVAL's prevent bit, which refuses guest
 *     ejects (the host's change is not refused);
 *   - pending unit attentions: POWER ON (29/00) from creation, then NOT
 *     READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED (28/00) when a medium
 *     becomes accessible (host load, guest tray close with a medium);
 *     reported in that order, one per command;
 *   - one pending media event for GET EVENT STATUS NOTIFICATION (the
 *     latest: NewMedia or MediaRemoval).
 *
 * Facts from SPC-3 (INQUIRY, REQUEST SENSE, MODE SENSE, REPORT LUNS, fixed
 * sense data), SBC (READ CAPACITY, READ) and MMC (READ TOC, GET
 * CONFIGURATION, GET EVENT STATUS NOTIFICATION, READ DISC / TRACK
 * INFORMATION, MECHANISM STATUS, mode page 2Ah).  Every reply is built in
 * full and cut to the CDB's allocation length.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vdisk/iso9660.h>

#include "endian.h"
#include "internal.h"
#include "virtio/mmc.h"

#define BLOCK VDISK_CDROM_BLOCK_SIZE

/* A CD holds at most 80 minutes of 75 frames a second: larger media are
 * reported as DVD-ROM. */
#define CD_MAX_BLOCKS (80u * 60u * 75u)

/* Read speed reported in mode page 2Ah (kB/s; 176 kB/s is "1x"). */
#define READ_SPEED_KBS (24u * 176u)

/* Additional sense codes. */
#define ASC_NO_ADDITIONAL           0x00
#define ASC_UNRECOVERED_READ        0x11
#define ASC_INVALID_OPCODE          0x20
#define ASC_LBA_OUT_OF_RANGE        0x21
#define ASC_INVALID_FIELD_IN_CDB    0x24
#define ASC_WRITE_PROTECTED         0x27
#define ASC_MEDIUM_MAY_HAVE_CHANGED 0x28
#define ASC_POWER_ON_RESET          0x29
#define ASC_SAVING_NOT_SUPPORTED    0x39
#define ASC_MEDIUM_NOT_PRESENT      0x3a
#define ASC_MEDIUM_REMOVAL_PREVENTED 0x53

/* Media event codes (GET EVENT STATUS NOTIFICATION, media class). */
#define MEV_NO_CHANGE     0
#define MEV_NEW_MEDIA     2
#define MEV_MEDIA_REMOVAL 3

/* Profiles. */
#define PROFILE_NONE    0x0000
#define PROFILE_CDROM   0x0008
#define PROFILE_DVDROM  0x0010

#define UA_POWER_ON      0x1u
#define UA_MEDIUM_CHANGE 0x2u

struct mmc_lun {
    vdisk_dev *dev;
    char vendor[8];      /* space padded, not terminated */
    char product[16];
    char serial[17];
    bool tray_open;
    bool prevent;
    unsigned ua;         /* UA_* pending */
    int media_event;     /* MEV_* pending */
};

/* What the medium looks like to the guest right now. */
struct state {
    bool loaded;         /* a medium is in the drive (tray open or not) */
    bool present;        /* loaded and the tray closed: accessible */
    uint64_t blocks;
};

static void get_state(struct mmc_lun *lun, struct state *s)
{
    struct vdisk_cdrom_media m = {.struct_size = sizeof m};
    memset(s, 0, sizeof *s);
    if (vdisk_cdrom_get_media(lun->dev, &m) < 0)
        return;
    s->loaded = m.loaded != 0;
    s->present = s->loaded && !lun->tray_open;
    s->blocks = s->loaded ? m.blocks : 0;
}

/* ---- Replies ---------------------------------------------------------------- */

void mmc_sense(struct mmc_reply *r, uint8_t key, uint8_t asc, uint8_t ascq)
{
    r->action = MMC_REPLY;
    r->status = MMC_STATUS_CHECK_CONDITION;
    memset(r->sense, 0, sizeof r->sense);
    r->sense[0] = 0x70;          /* current error, fixed format */
    r->sense[2] = key & 0x0f;
    r->sense[7] = 10;            /* additional sense length: bytes 8..17 */
    r->sense[12] = asc;
    r->sense[13] = ascq;
    r->sense_len = 18;
    r->data_len = 0;
    r->offset = 0;
    r->length = 0;
}

static void good(struct mmc_reply *r, size_t produced, size_t alloc)
{
    r->action = MMC_REPLY;
    r->status = MMC_STATUS_GOOD;
    r->sense_len = 0;
    r->data_len = produced < alloc ? produced : alloc;
    r->offset = 0;
    r->length = 0;
}

static void invalid_field(struct mmc_reply *r)
{
    mmc_sense(r, MMC_SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, 0);
}

static void not_ready(struct mmc_lun *lun, struct mmc_reply *r)
{
    /* ASCQ 01: tray closed; 02: tray open. */
    mmc_sense(r, MMC_SENSE_NOT_READY, ASC_MEDIUM_NOT_PRESENT, lun->tray_open ? 0x02 : 0x01);
}

static void put_padded(uint8_t *dst, const char *src, size_t len)
{
    memset(dst, ' ', len);
    size_t n = strlen(src);
    memcpy(dst, src, n < len ? n : len);
}

/* LBA to minutes / seconds / frames, with the 2-second (150-frame) offset
 * of the program area.  Addresses beyond 255:59:74 are clamped. */
static void put_msf(uint8_t *p, uint64_t lba)
{
    uint64_t f = lba + 150;
    uint64_t m = f / (60 * 75);
    if (m > 255) {
        p[0] = 0;
        p[1] = 255;
        p[2] = 59;
        p[3] = 74;
        return;
    }
    p[0] = 0;
    p[1] = (uint8_t)m;
    p[2] = (uint8_t)(f / 75 % 60);
    p[3] = (uint8_t)(f % 75);
}

static void put_addr(uint8_t *p, uint64_t lba, bool msf)
{
    if (msf)
        put_msf(p, lba);
    else
        be32_store(p, lba > UINT32_MAX ? UINT32_MAX : (uint32_t)lba);
}

/* ---- Commands ----------------------------------------------------------------- */

struct ctx {
    struct mmc_lun *lun;
    const uint8_t *cdb;
    const struct mmc_cmd *c;
    uint8_t *buf;
    struct mmc_reply *r;
    struct state s;
};

static void cmd_test_unit_ready(struct ctx *x)
{
    good(x->r, 0, 0);
}

static void cmd_request_sense(struct ctx *x)
{
    struct mmc_lun *lun = x->lun;
    size_t alloc = x->cdb[4];
    if (x->cdb[1] & 0x01) { /* DESC: descriptor format is not supported */
        invalid_field(x->r);
        return;
    }
    /* The sense data: a pending unit attention (which this clears), else
     * the unit's state: NOT READY without an accessible medium, else NO
     * SENSE. */
    struct mmc_reply s;
    if (lun->ua & UA_POWER_ON) {
        lun->ua &= ~UA_POWER_ON;
        mmc_sense(&s, MMC_SENSE_UNIT_ATTENTION, ASC_POWER_ON_RESET, 0);
    } else if (lun->ua & UA_MEDIUM_CHANGE) {
        lun->ua &= ~UA_MEDIUM_CHANGE;
        mmc_sense(&s, MMC_SENSE_UNIT_ATTENTION, ASC_MEDIUM_MAY_HAVE_CHANGED, 0);
    } else if (!x->s.present) {
        not_ready(lun, &s);
    } else {
        mmc_sense(&s, MMC_SENSE_NO_SENSE, ASC_NO_ADDITIONAL, 0);
    }
    memcpy(x->buf, s.sense, 18);
    good(x->r, 18, alloc);
}

static void cmd_inquiry(struct ctx *x)
{
    struct mmc_lun *lun = x->lun;
    const uint8_t *cdb = x->cdb;
    uint8_t *b = x->buf;
    size_t alloc = be16_load(cdb + 3);
    if (cdb[1] & 0x02) { /* CMDDT (obsolete) */
        invalid_field(x->r);
        return;
    }
    if (!(cdb[1] & 0x01)) {
        if (cdb[2] != 0) {
            invalid_field(x->r);
            return;
        }
        memset(b, 0, 96);
        b[0] = 0x05;             /* peripheral qualifier 0, type 5: CD/DVD */
        b[1] = 0x80;             /* RMB: removable medium */
        b[2] = 0x05;             /* version: SPC-3 */
        b[3] = 0x02;             /* response data format 2 */
        b[4] = 96 - 5;           /* additional length */
        memcpy(b + 8, lun->vendor, 8);
        memcpy(b + 16, lun->product, 16);
        memcpy(b + 32, "1.0 ", 4);
        good(x->r, 96, alloc);
        return;
    }
    /* Vital product data pages. */
    size_t n;
    memset(b, 0, 4);
    b[0] = 0x05;
    b[1] = cdb[2];
    switch (cdb[2]) {
    case 0x00: /* supported pages */
        b[4] = 0x00;
        b[5] = 0x80;
        b[6] = 0x83;
        n = 7;
        break;
    case 0x80: { /* unit serial number */
        size_t len = strlen(lun->serial);
        memcpy(b + 4, lun->serial, len);
        n = 4 + len;
        break;
    }
    case 0x83: { /* device identification: one T10 vendor id designator */
        uint8_t *d = b + 4;
        size_t slen = strlen(lun->serial);
        d[0] = 0x02;             /* protocol id 0, code set 2: ASCII */
        d[1] = 0x01;             /* PIV 0, association 0 (the LU), type 1: T10 vendor id */
        d[2] = 0;
        d[3] = (uint8_t)(8 + 16 + slen);
        memcpy(d + 4, lun->vendor, 8);
        memcpy(d + 12, lun->product, 16);
        memcpy(d + 28, lun->serial, slen);
        n = 4 + 4 + 8 + 16 + slen;
        break;
    }
    default:
        invalid_field(x->r);
        return;
    }
    be16_store(b + 2, (uint16_t)(n - 4));
    good(x->r, n, alloc);
}

static void cmd_report_luns(struct ctx *x)
{
    const uint8_t *cdb = x->cdb;
    uint32_t alloc = be32_load(cdb + 6);
    if (cdb[2] > 0x02 || alloc < 16) {
        invalid_field(x->r);
        return;
    }
    memset(x->buf, 0, 16);
    be32_store(x->buf, 8);       /* one LUN: 0 */
    good(x->r, 16, alloc);
}

static void cmd_read_capacity(struct ctx *x)
{
    const uint8_t *cdb = x->cdb;
    /* PMI (byte 8 bit 0) is obsolete; a logical block address without it
     * is an error. */
    if (!(cdb[8] & 0x01) && be32_load(cdb + 2) != 0) {
        invalid_field(x->r);
        return;
    }
    uint64_t last = x->s.blocks ? x->s.blocks - 1 : 0;
    be32_store(x->buf, last > UINT32_MAX ? UINT32_MAX : (uint32_t)last);
    be32_store(x->buf + 4, BLOCK);
    good(x->r, 8, 8);
}

/* A read of COUNT blocks at LBA: range checks, then MMC_READ. */
static void do_read(struct ctx *x, uint64_t lba, uint64_t count)
{
    struct mmc_reply *r = x->r;
    if (lba > x->s.blocks || count > x->s.blocks - lba) {
        mmc_sense(r, MMC_SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE, 0);
        return;
    }
    if (count == 0) {
        good(r, 0, 0);
        return;
    }
    uint64_t bytes = count * BLOCK; /* count < 2^32: no overflow */
    if (bytes > x->c->data_in_len) {
        /* The initiator cannot take what the CDB asks for. */
        invalid_field(r);
        return;
    }
    r->action = MMC_READ;
    r->status = MMC_STATUS_GOOD;
    r->sense_len = 0;
    r->offset = lba * BLOCK;
    r->length = bytes;
    r->data_len = (size_t)bytes;
}

static void cmd_read10(struct ctx *x)
{
    const uint8_t *cdb = x->cdb;
    if (cdb[1] & 0xe1) { /* RDPROTECT, RELADR */
        invalid_field(x->r);
        return;
    }
    do_read(x, be32_load(cdb + 2), be16_load(cdb + 7));
}

static void cmd_read12(struct ctx *x)
{
    const uint8_t *cdb = x->cdb;
    if (cdb[1] & 0xe1) {
        invalid_field(x->r);
        return;
    }
    do_read(x, be32_load(cdb + 2), be32_load(cdb + 6));
}

/* READ CD: only the user data of mode 1 (or any type) sectors, which is
 * what READ(12) returns. */
static void cmd_read_cd(struct ctx *x)
{
    const uint8_t *cdb = x->cdb;
    unsigned type = (cdb[1] >> 2) & 0x7;
    uint64_t lba = be32_load(cdb + 2);
    uint64_t count = be24_load(cdb + 6);
    if ((type != 0 && type != 2) || (cdb[1] & 0x01) || (cdb[10] & 0x07)) {
        invalid_field(x->r);
        return;
    }
    if (cdb[9] == 0) { /* no fields selected: nothing is transferred */
        if (lba > x->s.blocks || count > x->s.blocks - lba)
            mmc_sense(x->r, MMC_SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE, 0);
        else
            good(x->r, 0, 0);
        return;
    }
    if (cdb[9] != 0x10) { /* sync, headers, EDC/ECC, C2: not emulated */
        invalid_field(x->r);
        return;
    }
    do_read(x, lba, count);
}

static void cmd_read_toc(struct ctx *x)
{
    const uint8_t *cdb = x->cdb;
    uint8_t *b = x->buf;
    bool msf = (cdb[1] & 0x02) != 0;
    unsigned format = cdb[2] & 0x0f;
    size_t alloc = be16_load(cdb + 7);
    /* The older (SFF-8020) place of the format: bits 7-6 of byte 9. */
    if (format == 0 && (cdb[9] >> 6) != 0)
        format = cdb[9] >> 6;
    size_t n;
    switch (format) {
    case 0: { /* TOC */
        unsigned track = cdb[6];
        if (track > 1 && track != 0xaa) {
            invalid_field(x->r);
            return;
        }
        b[2] = 1;                /* first track */
        b[3] = 1;                /* last track */
        n = 4;
        if (track <= 1) {
            memset(b + n, 0, 8);
            b[n + 1] = 0x14;     /* ADR 1, control 4: data track, uninterrupted */
            b[n + 2] = 1;
            put_addr(b + n + 4, 0, msf);
            n += 8;
        }
        memset(b + n, 0, 8);
        b[n + 1] = 0x14;
        b[n + 2] = 0xaa;         /* lead-out */
        put_addr(b + n + 4, x->s.blocks, msf);
        n += 8;
        break;
    }
    case 1: /* session information */
        b[2] = 1;                /* first complete session */
        b[3] = 1;                /* last complete session */
        memset(b + 4, 0, 8);
        b[5] = 0x14;
        b[6] = 1;                /* first track in the last session */
        put_addr(b + 8, 0, msf);
        n = 12;
        break;
    default:
        invalid_field(x->r);
        return;
    }
    be16_store(b, (uint16_t)(n - 2));
    good(x->r, n, alloc);
}

/* Feature descriptor header: code, version, persistent, current, length. */
static size_t feature(uint8_t *p, uint16_t code, unsigned version, bool persistent,
                      bool current, uint8_t add_len)
{
    be16_store(p, code);
    p[2] = (uint8_t)((version << 2) | (persistent ? 0x02 : 0) | (current ? 0x01 : 0));
    p[3] = add_len;
    memset(p + 4, 0, add_len);
    return 4u + add_len;
}

static void cmd_get_configuration(struct ctx *x)
{
    const uint8_t *cdb = x->cdb;
    uint8_t *b = x->buf;
    unsigned rt = cdb[1] & 0x03;
    unsigned start = be16_load(cdb + 2);
    size_t alloc = be16_load(cdb + 7);
    if (rt == 3) {
        invalid_field(x->r);
        return;
    }
    bool present = x->s.present;
    bool dvd = present && x->s.blocks > CD_MAX_BLOCKS;
    uint16_t profile = !present ? PROFILE_NONE : dvd ? PROFILE_DVDROM : PROFILE_CDROM;

    memset(b, 0, 8);
    be16_store(b + 6, profile);
    size_t n = 8;
    /* The features in ascending order; each is listed when it is at or
     * after START (RT 0), also current (RT 1), or exactly START (RT 2). */
    static const uint16_t codes[] = {0x0000, 0x0001, 0x0002, 0x0003, 0x0010, 0x001e, 0x001f};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        uint16_t code = codes[i];
        bool current = code < 0x0010 || (code == 0x0010 && present) ||
                       (code == 0x001e && present && !dvd) || (code == 0x001f && dvd);
        if (code < start || (rt == 1 && !current) || (rt == 2 && code != start))
            continue;
        uint8_t *p = b + n;
        switch (code) {
        case 0x0000: /* profile list: DVD-ROM, CD-ROM */
            n += feature(p, code, 0, true, true, 8);
            be16_store(p + 4, PROFILE_DVDROM);
            p[6] = dvd ? 0x01 : 0;
            be16_store(p + 8, PROFILE_CDROM);
            p[10] = present && !dvd ? 0x01 : 0;
            break;
        case 0x0001: /* core */
            n += feature(p, code, 2, true, true, 8);
            be32_store(p + 4, 1); /* physical interface: SCSI family */
            break;
        case 0x0002: /* morphing */
            n += feature(p, code, 1, true, true, 4);
            p[4] = 0x02;         /* OCEvent: operational change events; not Async */
            break;
        case 0x0003: /* removable medium */
            n += feature(p, code, 0, true, true, 4);
            p[4] = 0x20 | 0x08 | 0x01; /* tray, Eject, Lock */
            break;
        case 0x0010: /* random readable */
            n += feature(p, code, 0, false, current, 8);
            be32_store(p + 4, BLOCK);
            be16_store(p + 8, dvd ? 16 : 1); /* blocking */
            break;
        case 0x001e: /* CD read */
            n += feature(p, code, 0, false, current, 4);
            break;
        case 0x001f: /* DVD read */
            n += feature(p, code, 0, false, current, 4);
            break;
        }
    }
    be32_store(b, (uint32_t)(n - 4));
    good(x->r, n, alloc);
}

static void cmd_get_event_status(struct ctx *x)
{
    struct mmc_lun *lun = x->lun;
    const uint8_t *cdb = x->cdb;
    uint8_t *b = x->buf;
    size_t alloc = be16_load(cdb + 7);
    if (!(cdb[1] & 0x01)) { /* asynchronous notification is not supported */
        invalid_field(x->r);
        return;
    }
    b[3] = 0x10;                 /* supported classes: media */
    if (!(cdb[4] & 0x10)) {
        /* No supported class asked for: NEA, header only. */
        be16_store(b, 2);
        b[2] = 0x80;
        good(x->r, 4, alloc);
        return;
    }
    be16_store(b, 6);
    b[2] = 0x04;                 /* media class */
    b[4] = (uint8_t)(lun->media_event & 0x0f);
    b[5] = (uint8_t)((lun->tray_open ? 0x01 : 0) | (x->s.present ? 0x02 : 0));
    b[6] = 0;                    /* start slot */
    b[7] = 0;                    /* end slot */
    lun->media_event = MEV_NO_CHANGE; /* reported: cleared */
    good(x->r, 8, alloc);
}

/* Mode pages: writes page PAGE (0x01, 0x0d, 0x2a) at P, parameters zeroed
 * for the changeable values (nothing is changeable).  Returns its size. */
static size_t mode_page(struct mmc_lun *lun, uint8_t *p, unsigned page, bool changeable)
{
    size_t n;
    switch (page) {
    case 0x01: /* read / write error recovery */
        n = 12;
        memset(p, 0, n);
        if (!changeable)
            p[3] = 5;            /* read retry count */
        break;
    case 0x0d: /* CD device parameters */
        n = 8;
        memset(p, 0, n);
        if (!changeable) {
            be16_store(p + 4, 60);  /* S units per M unit */
            be16_store(p + 6, 75);  /* F units per S unit */
        }
        break;
    case 0x2a: /* MM capabilities and mechanical status */
        n = 22;
        memset(p, 0, n);
        if (!changeable) {
            p[2] = 0x01 | 0x02 | 0x08; /* reads CD-R, CD-RW, DVD-ROM */
            p[3] = 0x00;         /* writes nothing */
            p[4] = 0x10 | 0x20 | 0x40; /* mode 2 form 1 and 2, multi-session */
            p[5] = 0x00;
            /* tray loading, Eject, Lock, lock state */
            p[6] = 0x20 | 0x08 | 0x01 | (lun->prevent ? 0x02 : 0);
            be16_store(p + 8, READ_SPEED_KBS);  /* maximum read speed */
            be16_store(p + 14, READ_SPEED_KBS); /* current read speed */
        }
        break;
    default:
        return 0;
    }
    p[0] = (uint8_t)page;
    p[1] = (uint8_t)(n - 2);
    return n;
}

static void cmd_mode_sense(struct ctx *x)
{
    const uint8_t *cdb = x->cdb;
    uint8_t *b = x->buf;
    bool ten = cdb[0] == 0x5a;
    unsigned pc = cdb[2] >> 6;
    unsigned page = cdb[2] & 0x3f;
    unsigned subpage = cdb[3];
    size_t alloc = ten ? be16_load(cdb + 7) : cdb[4];
    if (pc == 3) {
        mmc_sense(x->r, MMC_SENSE_ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPPORTED, 0);
        return;
    }
    if (subpage != 0 && !(page == 0x3f && subpage == 0xff)) {
        invalid_field(x->r);
        return;
    }
    size_t hdr = ten ? 8 : 4;
    size_t n = hdr;
    memset(b, 0, hdr);
    if (page == 0x3f) {
        static const unsigned all[] = {0x01, 0x0d, 0x2a};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            n += mode_page(x->lun, b + n, all[i], pc == 1);
    } else {
        size_t len = mode_page(x->lun, b + n, page, pc == 1);
        if (len == 0) {
            invalid_field(x->r);
            return;
        }
        n += len;
    }
    /* Medium type, device-specific parameter: 0; no block descriptors. */
    if (ten)
        be16_store(b, (uint16_t)(n - 2));
    else
        b[0] = (uint8_t)(n - 1);
    good(x->r, n, alloc);
}

static void cmd_prevent_allow(struct ctx *x)
{
    x->lun->prevent = (x->cdb[4] & 0x01) != 0;
    good(x->r, 0, 0);
}

static void cmd_start_stop(struct ctx *x)
{
    struct mmc_lun *lun = x->lun;
    const uint8_t *cdb = x->cdb;
    unsigned power = cdb[4] >> 4;
    bool loej = (cdb[4] & 0x02) != 0, start = (cdb[4] & 0x01) != 0;
    if (power != 0 || !loej) { /* power conditions, spin up / down: nothing to do */
        good(x->r, 0, 0);
        return;
    }
    if (!start) { /* eject: open the tray */
        if (lun->prevent) {
            mmc_sense(x->r, MMC_SENSE_ILLEGAL_REQUEST, ASC_MEDIUM_REMOVAL_PREVENTED, 0x02);
            return;
        }
        if (!lun->tray_open) {
            lun->tray_open = true;
            if (x->s.loaded)
                lun->media_event = MEV_MEDIA_REMOVAL;
        }
    } else if (lun->tray_open) { /* load: close the tray */
        lun->tray_open = false;
        if (x->s.loaded) {
            lun->ua |= UA_MEDIUM_CHANGE;
            lun->media_event = MEV_NEW_MEDIA;
        }
    }
    good(x->r, 0, 0);
}

static void cmd_read_disc_info(struct ctx *x)
{
    const uint8_t *cdb = x->cdb;
    uint8_t *b = x->buf;
    size_t alloc = be16_load(cdb + 7);
    if ((cdb[1] & 0x07) != 0) { /* only standard disc information */
        invalid_field(x->r);
        return;
    }
    memset(b, 0, 34);
    be16_store(b, 34 - 2);
    b[2] = 0x0e;                 /* last session complete, disc finalized */
    b[3] = 1;                    /* first track on the disc */
    b[4] = 1;                    /* sessions */
    b[5] = 1;                    /* first track in the last session */
    b[6] = 1;                    /* last track in the last session */
    b[8] = 0x00;                 /* disc type: CD-DA or CD-ROM */
    be32_store(b + 16, 0xffffffffu); /* no next lead-in: the disc is complete */
    be32_store(b + 20, 0xffffffffu); /* no last possible lead-out */
    good(x->r, 34, alloc);
}

static void cmd_read_track_info(struct ctx *x)
{
    const uint8_t *cdb = x->cdb;
    uint8_t *b = x->buf;
    size_t alloc = be16_load(cdb + 7);
    uint32_t v = be32_load(cdb + 2);
    bool ok;
    switch (cdb[1] & 0x03) {
    case 0: ok = v < x->s.blocks; break; /* the track holding LBA V */
    case 1: ok = v == 1; break;          /* track V */
    case 2: ok = v == 1; break;          /* the first track of session V */
    default: ok = false; break;
    }
    if (!ok) {
        invalid_field(x->r);
        return;
    }
    memset(b, 0, 48);
    be16_store(b, 48 - 2);
    b[2] = 1;                    /* track (LSB) */
    b[3] = 1;                    /* session (LSB) */
    b[5] = 0x04;                 /* track mode: data, recorded uninterrupted */
    b[6] = 0x01;                 /* data mode 1 */
    be32_store(b + 8, 0);        /* track start */
    be32_store(b + 24, x->s.blocks > UINT32_MAX ? UINT32_MAX : (uint32_t)x->s.blocks);
    good(x->r, 48, alloc);
}

static void cmd_mechanism_status(struct ctx *x)
{
    uint8_t *b = x->buf;
    size_t alloc = be16_load(x->cdb + 8);
    memset(b, 0, 8);
    b[1] = x->lun->tray_open ? 0x10 : 0; /* mechanism idle; door open */
    good(x->r, 8, alloc);
}

static void cmd_get_performance(struct ctx *x)
{
    const uint8_t *cdb = x->cdb;
    uint8_t *b = x->buf;
    unsigned max = be16_load(cdb + 8);
    if (cdb[10] != 0x00 || (cdb[1] & 0x04)) { /* only read performance */
        invalid_field(x->r);
        return;
    }
    if (!x->s.present) {
        not_ready(x->lun, x->r);
        return;
    }
    memset(b, 0, 24);
    size_t n = 8;
    if (max >= 1) {
        uint64_t last = x->s.blocks ? x->s.blocks - 1 : 0;
        be32_store(b + 8, 0);
        be32_store(b + 12, READ_SPEED_KBS);
        be32_store(b + 16, last > UINT32_MAX ? UINT32_MAX : (uint32_t)last);
        be32_store(b + 20, READ_SPEED_KBS);
        n += 16;
    }
    be32_store(b, (uint32_t)(n - 4));
    good(x->r, n, n);
}

static void cmd_nothing(struct ctx *x)
{
    good(x->r, 0, 0);
}

static void cmd_write(struct ctx *x)
{
    mmc_sense(x->r, MMC_SENSE_DATA_PROTECT, ASC_WRITE_PROTECTED, 0);
}

/* ---- Dispatch ----------------------------------------------------------------- */

#define F_ALLOW_UA 0x1u /* runs with a unit attention pending */
#define F_MEDIUM   0x2u /* needs an accessible medium */

struct op {
    uint8_t opcode;
    uint8_t cdb_len;
    unsigned flags;
    void (*fn)(struct ctx *);
};

static const struct op ops[] = {
    {0x00, 6, F_MEDIUM, cmd_test_unit_ready},
    {0x03, 6, F_ALLOW_UA, cmd_request_sense},
    {0x04, 6, F_MEDIUM, cmd_write},              /* FORMAT UNIT */
    {0x0a, 6, F_MEDIUM, cmd_write},              /* WRITE(6) */
    {0x12, 6, F_ALLOW_UA, cmd_inquiry},
    {0x1a, 6, 0, cmd_mode_sense},                /* MODE SENSE(6) */
    {0x1b, 6, 0, cmd_start_stop},
    {0x1e, 6, 0, cmd_prevent_allow},
    {0x25, 10, F_MEDIUM, cmd_read_capacity},
    {0x28, 10, F_MEDIUM, cmd_read10},
    {0x2a, 10, F_MEDIUM, cmd_write},             /* WRITE(10) */
    {0x2e, 10, F_MEDIUM, cmd_write},             /* WRITE AND VERIFY(10) */
    {0x35, 10, 0, cmd_nothing},                  /* SYNCHRONIZE CACHE(10) */
    {0x41, 10, F_MEDIUM, cmd_write},             /* WRITE SAME(10) */
    {0x42, 10, F_MEDIUM, cmd_write},             /* UNMAP */
    {0x43, 10, F_MEDIUM, cmd_read_toc},
    {0x46, 10, F_ALLOW_UA, cmd_get_configuration},
    {0x4a, 10, F_ALLOW_UA, cmd_get_event_status},
    {0x51, 10, F_MEDIUM, cmd_read_disc_info},
    {0x52, 10, F_MEDIUM, cmd_read_track_info},
    {0x53, 10, F_MEDIUM, cmd_write},             /* RESERVE TRACK */
    {0x54, 10, F_MEDIUM, cmd_write},             /* SEND OPC INFORMATION */
    {0x5a, 10, 0, cmd_mode_sense},               /* MODE SENSE(10) */
    {0x5b, 10, F_MEDIUM, cmd_write},             /* CLOSE TRACK/SESSION */
    {0x5d, 10, F_MEDIUM, cmd_write},             /* SEND CUE SHEET */
    {0x8a, 16, F_MEDIUM, cmd_write},             /* WRITE(16) */
    {0x8e, 16, F_MEDIUM, cmd_write},             /* WRITE AND VERIFY(16) */
    {0x93, 16, F_MEDIUM, cmd_write},             /* WRITE SAME(16) */
    {0xa0, 12, F_ALLOW_UA, cmd_report_luns},
    {0xa1, 12, F_MEDIUM, cmd_write},             /* BLANK */
    {0xa8, 12, F_MEDIUM, cmd_read12},
    {0xaa, 12, F_MEDIUM, cmd_write},             /* WRITE(12) */
    {0xac, 12, 0, cmd_get_performance},
    {0xae, 12, F_MEDIUM, cmd_write},             /* WRITE AND VERIFY(12) */
    {0xbb, 12, 0, cmd_nothing},                  /* SET CD SPEED */
    {0xbd, 12, 0, cmd_mechanism_status},
    {0xbe, 12, F_MEDIUM, cmd_read_cd},
};

static const struct op *find_op(uint8_t opcode)
{
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (ops[i].opcode == opcode)
            return &ops[i];
    return NULL;
}

void mmc_execute(struct mmc_lun *lun, const struct mmc_cmd *c, uint8_t *buf,
                 struct mmc_reply *r)
{
    memset(r, 0, sizeof *r);
    if (!c->cdb || c->cdb_len == 0) {
        mmc_sense(r, MMC_SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE, 0);
        return;
    }
    const struct op *op = find_op(c->cdb[0]);
    /* A pending unit attention goes first, also before an unknown opcode. */
    if (lun->ua && !(op && (op->flags & F_ALLOW_UA))) {
        if (lun->ua & UA_POWER_ON) {
            lun->ua &= ~UA_POWER_ON;
            mmc_sense(r, MMC_SENSE_UNIT_ATTENTION, ASC_POWER_ON_RESET, 0);
        } else {
            lun->ua &= ~UA_MEDIUM_CHANGE;
            mmc_sense(r, MMC_SENSE_UNIT_ATTENTION, ASC_MEDIUM_MAY_HAVE_CHANGED, 0);
        }
        return;
    }
    if (!op) {
        mmc_sense(r, MMC_SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE, 0);
        return;
    }
    if (c->cdb_len < op->cdb_len) {
        invalid_field(r);
        return;
    }
    struct ctx x = {.lun = lun, .cdb = c->cdb, .c = c, .buf = buf, .r = r};
    get_state(lun, &x.s);
    if ((op->flags & F_MEDIUM) && !x.s.present) {
        not_ready(lun, r);
        return;
    }
    op->fn(&x);
}

void mmc_read_failed(struct mmc_lun *lun, int err, struct mmc_reply *r)
{
    if (err == -ENOMEDIUM)
        not_ready(lun, r);
    else
        mmc_sense(r, MMC_SENSE_MEDIUM_ERROR, ASC_UNRECOVERED_READ, 0);
}

int mmc_change_medium(struct mmc_lun *lun, const char *iso)
{
    int ret = vdisk_cdrom_change_medium(lun->dev, iso);
    struct vdisk_cdrom_media m = {.struct_size = sizeof m};
    bool loaded = vdisk_cdrom_get_media(lun->dev, &m) == 0 && m.loaded;
    lun->tray_open = false;
    if (loaded) {
        lun->ua |= UA_MEDIUM_CHANGE;
        lun->media_event = MEV_NEW_MEDIA;
    } else {
        /* Nothing became ready: no unit attention, the drive reports NOT
         * READY from now on, and a poller sees the removal. */
        lun->ua &= ~UA_MEDIUM_CHANGE;
        lun->media_event = MEV_MEDIA_REMOVAL;
    }
    return ret;
}

/* ---- Life cycle --------------------------------------------------------------- */

struct mmc_lun *mmc_lun_new(vdisk_dev *cdrom, const char *vendor, const char *product, int *err)
{
    static unsigned counter;
    struct vdisk_cdrom_media m = {.struct_size = sizeof m};
    int r = cdrom ? vdisk_cdrom_get_media(cdrom, &m) : -EINVAL;
    if (r < 0) {
        if (err)
            *err = err_set(-EINVAL, "MMC logical unit: %s is not a CD-ROM drive",
                           cdrom ? vdisk_get_filename(cdrom) : "(null)");
        return NULL;
    }
    struct mmc_lun *lun = calloc(1, sizeof *lun);
    if (!lun) {
        if (err)
            *err = err_set(-ENOMEM, "MMC logical unit: out of memory");
        return NULL;
    }
    dev_ref(cdrom);
    lun->dev = cdrom;
    char tmp[17];
    put_padded((uint8_t *)tmp, vendor ? vendor : "VDISK", 8);
    memcpy(lun->vendor, tmp, 8);
    put_padded((uint8_t *)tmp, product ? product : "CD-ROM", 16);
    memcpy(lun->product, tmp, 16);
    unsigned id = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    snprintf(lun->serial, sizeof lun->serial, "%08X%08X", (unsigned)getpid(), id);
    lun->ua = UA_POWER_ON;
    lun->media_event = MEV_NO_CHANGE;
    if (err)
        *err = 0;
    return lun;
}

void mmc_lun_free(struct mmc_lun *lun)
{
    if (!lun)
        return;
    dev_unref(lun->dev);
    free(lun);
}
