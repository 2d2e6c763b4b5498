/* SPDX-License-Identifier: MIT */
/*
 * formats/vhdx/vhdx.h: VHDX images (Hyper-V, Microsoft's [MS-VHDX]): the
 * on-disk layout, the limits vdisk holds images to, and the driver's state.
 *
 * Layout (every field little-endian; GUIDs in Microsoft's mixed order):
 *   0       file identifier: "vhdxfile", the creator (UTF-16LE)
 *   64 KiB  header 1, 128 KiB header 2 (4 KiB each, CRC-32C): the one
 *           valid with the higher sequence number is current
 *   192 KiB region table 1, 256 KiB region table 2 (64 KiB each, CRC-32C):
 *           where the BAT and the metadata region lie
 *   the log (offset and length in the current header), the BAT, the
 *   metadata region (a table of items: file parameters, virtual disk size,
 *   logical and physical sector size, page 83 data, parent locator) and the
 *   payload blocks, all at multiples of 1 MiB.
 * The BAT holds one 64-bit entry per payload block (state in bits 0-2, file
 * offset in MiB in bits 20-63), with a sector bitmap entry after every
 * chunk_ratio of them (chunk_ratio = 2^23 * logical sector size / block
 * size).
 */
#ifndef VDISK_VHDX_H
#define VDISK_VHDX_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "driver.h"

#define VHDX_MIB              (UINT64_C(1) << 20)
#define VHDX_HEADER1_OFFSET   (64u << 10)
#define VHDX_HEADER2_OFFSET   (128u << 10)
#define VHDX_HEADER_SIZE      (4u << 10)
#define VHDX_RT1_OFFSET       (192u << 10)
#define VHDX_RT2_OFFSET       (256u << 10)
#define VHDX_RT_SIZE          (64u << 10)
#define VHDX_HEADER_SECTION   VHDX_MIB   /* identifier, headers, region tables */

/* Header fields. */
#define VHDX_H_SIGNATURE      0         /* "head" */
#define VHDX_H_CHECKSUM       4
#define VHDX_H_SEQUENCE       8
#define VHDX_H_FILE_WRITE     16
#define VHDX_H_DATA_WRITE     32
#define VHDX_H_LOG_GUID       48
#define VHDX_H_LOG_VERSION    64
#define VHDX_H_VERSION        66
#define VHDX_H_LOG_LENGTH     68
#define VHDX_H_LOG_OFFSET     72

/* Region and metadata tables. */
#define VHDX_RT_MAX_ENTRIES   2047u
#define VHDX_RT_ENTRY_SIZE    32u
#define VHDX_MD_TABLE_SIZE    (64u << 10)
#define VHDX_MD_MAX_ENTRIES   2047u
#define VHDX_MD_ENTRY_SIZE    32u
#define VHDX_MD_IS_REQUIRED   4u
#define VHDX_REGION_REQUIRED  1u

/* File parameters. */
#define VHDX_PARAM_LEAVE_ALLOCATED 1u
#define VHDX_PARAM_HAS_PARENT      2u
#define VHDX_MIN_BLOCK        VHDX_MIB
#define VHDX_MAX_BLOCK        (256u << 20)

/* BAT entry states. */
#define VHDX_BAT_STATE_MASK   7u
#define VHDX_BAT_OFFSET_MASK  UINT64_C(0xfffffffffff00000)
#define VHDX_PAYLOAD_NOT_PRESENT       0
#define VHDX_PAYLOAD_UNDEFINED         1
#define VHDX_PAYLOAD_ZERO              2
#define VHDX_PAYLOAD_UNMAPPED          3
#define VHDX_PAYLOAD_UNMAPPED_V095     5  /* the draft spec's value; QEMU takes it */
#define VHDX_PAYLOAD_FULLY_PRESENT     6
#define VHDX_PAYLOAD_PARTIALLY_PRESENT 7
#define VHDX_SB_NOT_PRESENT            0
#define VHDX_SB_PRESENT                6

/* The log. */
#define VHDX_LOG_SECTOR       4096u
#define VHDX_LOG_ENTRY_HDR    64u
#define VHDX_LOG_DESC_SIZE    32u
/* Descriptors one entry of vdisk's holds (they fit its first sector). */
#define VHDX_LOG_MAX_DESC     ((VHDX_LOG_SECTOR - VHDX_LOG_ENTRY_HDR) / VHDX_LOG_DESC_SIZE)

/* vdisk's own bounds. */
#define VHDX_MAX_SIZE         (UINT64_C(64) << 40)    /* 64 TiB, as QEMU */
#define VHDX_MAX_BAT_BYTES    (UINT64_C(256) << 20)   /* the BAT kept in memory */
#define VHDX_MAX_LOCATOR      (64u << 10)             /* a parent locator's bytes */
#define VHDX_MAX_CHAIN_DEPTH  64                      /* images above a parent */
#define VHDX_MAX_BITMAP_BYTES (UINT64_C(256) << 20)   /* sector bitmaps kept in memory */
#define VHDX_SB_SIZE          VHDX_MIB                /* one sector bitmap block */

struct vhdx {
    struct vdisk_dev *dev;
    struct vdisk_dev *file;
    uint64_t fsize;

    uint8_t header[VHDX_HEADER_SIZE]; /* the current header */
    int cur;                          /* 0: header 1, 1: header 2 */
    uint64_t log_offset, log_length;

    uint64_t bat_offset, bat_length;
    uint64_t md_offset, md_length;

    uint32_t block_size;
    uint32_t params;                  /* VHDX_PARAM_* */
    uint64_t size;
    uint32_t logical_sector, physical_sector;
    uint8_t page83[16];
    uint64_t chunk_ratio;
    uint64_t data_blocks;
    uint64_t bat_entries;
    uint64_t *bat;                    /* host order */

    bool log_replayed;                /* on this open */

    /* Writes (vhdx.c, log.c): allocations run on the worker, one at a
     * time; LOCK guards the BAT entries against the readers. */
    bool writable;
    struct offload *offload;
    pthread_mutex_t lock;
    bool lock_ready;
    bool data_guid_done;              /* DataWriteGuid renewed this session */
    bool file_guid_done;              /* FileWriteGuid renewed this session */
    bool log_active;                  /* the headers name LOG_GUID */
    uint8_t log_guid[16];
    uint64_t log_write;               /* where the next entry goes in the log */
    uint64_t log_seq;                 /* its sequence number */

    /* Differencing images. */
    uint8_t **sb;                     /* per chunk: its sector bitmap, or NULL */
    uint64_t chunks;
    char *parent_linkage, *parent_linkage2, *relative_path, *absolute_path;
    char *parent_name;                /* the path opened, as the locator gives it */
    char *full_parent;                /* resolved */
    struct vdisk_dev *parent;
    bool confine, allow_network;
};

/* CRC-32C (Castagnoli) of LEN bytes, with the 4 bytes at SKIP (when
 * SKIP < LEN) taken as zero, as the VHDX structures are summed. */
uint32_t vhdx_crc32c(const uint8_t *buf, size_t len, size_t skip);

/* The log: finds the active sequence when the current header names a log
 * (LogGuid non-zero) and, with WRITABLE, replays it into the file and
 * clears LogGuid in new headers; read-only it refuses the image as
 * qemu-img does.  Returns 0 or -errno with a message. */
int vhdx_log_open(struct vhdx *s, bool writable);

/* A new random (version 4) GUID into G: 0 or -errno with a message. */
int vhdx_guid_new(uint8_t *g);

/* Both headers rewritten, the inactive one first, each flushed: sequence
 * numbers above the current one, LogGuid LOG_GUID (NULL: zero), a new
 * FileWriteGuid the first time in a session and, with NEW_DATA_GUID, a
 * new DataWriteGuid.  0 or -errno. */
int vhdx_update_headers(struct vhdx *s, bool new_data_guid, const uint8_t *log_guid);

/*
 * One log entry that writes the N 4 KiB sectors of DATA at the file
 * offsets SECTORS (each a multiple of 4 KiB; N at most VHDX_LOG_MAX_DESC),
 * written at the log's write position and flushed.  The first entry of a
 * session sets a new LogGuid in the headers.  The caller has flushed what
 * the entry's sectors point to, and writes the sectors in place after.
 * 0 or -errno with a message.
 */
int vhdx_log_write(struct vhdx *s, const uint64_t *sectors, size_t n, const uint8_t *data);

/* At a clean close: the file flushed, LogGuid cleared in the headers.
 * 0 or -errno. */
int vhdx_log_close(struct vhdx *s);

/* create.c: a new image (vdisk create -f vhdx). */
int vhdx_create(const char *filename, uint64_t size, struct opt_set *os);

/* parent.c: the parent locator item (LEN bytes at OFF of the file) into
 * s's strings; then the parent opened.  0 or -errno with a message. */
int vhdx_read_locator(struct vhdx *s, uint64_t off, uint32_t len);
int vhdx_open_parent(struct vhdx *s);

#endif /* VDISK_VHDX_H */
