/* SPDX-License-Identifier: MIT */
/*
 * vdisk/iso9660.h: ISO 9660 file systems (with Rock Ridge, Joliet and El
 * Torito) read from any device, and the emulated read-only CD-ROM drive.
 *
 * The CD-ROM drive is a device of 2048-byte blocks whose block N is block
 * N of an ISO file (the medium).  It refuses every write, discard and
 * write-zeroes with -EROFS, and reads fail with -ENOMEDIUM while no medium
 * is loaded.  The medium can be ejected and another loaded while the
 * device is open, as a hypervisor's "change medium" does.
 *
 * The file API reads an ISO 9660 file system from any vdisk_dev: a file, a
 * partition, a qcow2 image, a CD-ROM device.  Names come from one
 * namespace: Rock Ridge (POSIX names, modes, symlinks, deep directories),
 * Joliet (UCS-2 names) or plain ISO 9660 (";1" versions stripped); the
 * default, VDISK_ISO_NS_AUTO, takes the first present of the three.
 * Without Rock Ridge, directories get mode 0700 and files 0400, as bsdtar
 * shows them.
 *
 * zisofs: in the Rock Ridge namespace, a file with a ZF entry (zisofs
 * version 1, algorithm "pz", as made by mkzftree and by xorriso's --zisofs
 * filter) or a ZF/Z2 entry of zisofs2 with algorithm "PZ" (xorriso
 * -zisofs version_2=on) is decompressed with zlib, as the Linux kernel and
 * bsdtar do: its size is the uncompressed size and reads return the
 * uncompressed bytes.  The zisofs header and every block pointer used are
 * checked against the file's size in the image; a damaged one fails the
 * read with -EINVAL, another zisofs2 algorithm (xz, lz4, zstd, bzip2) with
 * -ENOTSUP.  The Joliet and plain ISO 9660 trees carry no Rock Ridge
 * entries: there such a file reads as stored (compressed), as bsdtar reads
 * it.
 *
 * Thread-safety: a vdisk_iso may be used by one thread at a time.  The
 * CD-ROM functions are thread-safe: a medium change is atomic for
 * requests in flight (each request reads the medium it started on).
 *
 * Errors: 0 (or a count) on success, a negative errno with a message for
 * vdisk_get_error() on failure.  A damaged file system gives -EINVAL with
 * what was expected and what was found; loops give -ELOOP.
 */
#ifndef VDISK_ISO9660_H
#define VDISK_ISO9660_H

#include <stddef.h>
#include <stdint.h>

#include <vdisk/device.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- The CD-ROM drive ------------------------------------------------------ */

#define VDISK_CDROM_BLOCK_SIZE 2048

/*
 * What the VMM learns about the medium.  The caller sets struct_size to
 * sizeof(struct vdisk_cdrom_media) (see "Structures that grow" in
 * vdisk/device.h).
 */
struct vdisk_cdrom_media {
    size_t struct_size;
    int loaded;              /* 1: a medium is in the drive */
    uint64_t blocks;         /* capacity in 2048-byte blocks (0 without medium) */
    char volume_id[33];      /* the primary volume descriptor's volume id,
                                trailing spaces removed ("" when none) */
    uint64_t media_changes;  /* counts ejects and loads since the open */
    /* The table of contents: one data track, from block 0 to blocks. */
    unsigned tracks;         /* 1 with a medium, else 0 */
    uint32_t track_start;    /* first block of the data track (0) */
    uint64_t lead_out;       /* the lead-out's block (= blocks) */
};
#define VDISK_CDROM_MEDIA_SIZE_V1 VDISK_STRUCT_END(struct vdisk_cdrom_media, lead_out)

/*
 * vdisk_open_cdrom: a CD-ROM drive in *out, with ISO (a file name, opened
 * read-only, "format" probed unless given) loaded, or empty when ISO is
 * NULL.  Of OPTS (may be NULL) the drive keeps "format", "cache", "engine"
 * and "threads", and opens every medium with them; other keys are
 * ignored.  The capacity is the ISO's volume space size, or its
 * file size rounded up to 2048 when larger (hybrid ISOs); bytes past the
 * end of the file read as zeroes.  Returns 0 or -errno (the ISO's open
 * error).
 */
int vdisk_open_cdrom(vdisk_dev **out, const char *iso, const vdisk_options *opts);

/*
 * vdisk_cdrom_change_medium: ejects the medium (when any) and loads ISO,
 * or leaves the drive empty when ISO is NULL.  The device's size follows
 * the new medium (0 when empty).  On failure to open ISO the drive is
 * left empty.  Returns 0, -EINVAL (not a CD-ROM device) or the open error.
 */
int vdisk_cdrom_change_medium(vdisk_dev *dev, const char *iso);

/*
 * vdisk_cdrom_get_media: the medium's state in *m, filled up to
 * m->struct_size (set to the bytes filled).  Returns 0, or -EINVAL (not a
 * CD-ROM device, or m->struct_size below VDISK_CDROM_MEDIA_SIZE_V1).
 */
int vdisk_cdrom_get_media(vdisk_dev *dev, struct vdisk_cdrom_media *m);

/* ---- File systems ---------------------------------------------------------- */

typedef struct vdisk_iso vdisk_iso;

/* Namespaces. */
#define VDISK_ISO_NS_AUTO      0 /* Rock Ridge, else Joliet, else ISO 9660 */
#define VDISK_ISO_NS_ROCKRIDGE 1
#define VDISK_ISO_NS_JOLIET    2
#define VDISK_ISO_NS_ISO9660   3

/* Bits of vdisk_iso_info.namespaces. */
#define VDISK_ISO_HAS_ROCKRIDGE 0x1u
#define VDISK_ISO_HAS_JOLIET    0x2u
#define VDISK_ISO_HAS_ELTORITO  0x4u

/* Entry types. */
#define VDISK_ISO_FILE    1
#define VDISK_ISO_DIR     2
#define VDISK_ISO_SYMLINK 3
#define VDISK_ISO_OTHER   4 /* devices, fifos, sockets (Rock Ridge) */

#define VDISK_ISO_NAME_MAX 1023
#define VDISK_ISO_PATH_MAX 4095
/* Paths given to vdisk_iso_stat/list/read: at most this many bytes and
 * directories deep (Rock Ridge relocation lets trees go past ISO 9660's 8
 * levels; the bound keeps hostile ones, loops included, finite). */
#define VDISK_ISO_LOOKUP_MAX 32767
#define VDISK_ISO_DEPTH_MAX 1024

/*
 * One directory entry.  Fixed layout, without struct_size: vdisk_iso_list
 * returns an array of them that the caller indexes with its own sizeof
 * (see "Structures that grow" in vdisk/device.h).
 */
struct vdisk_iso_entry {
    char name[VDISK_ISO_NAME_MAX + 1];   /* UTF-8 ("." for the root) */
    int type;                            /* VDISK_ISO_* */
    uint32_t mode;                       /* st_mode: type and permission bits */
    uint32_t nlink, uid, gid;            /* Rock Ridge PX, else 1 (dirs 2), 0, 0 */
    uint64_t size;                       /* bytes (all extents) */
    int64_t mtime, atime, ctime;         /* seconds since the epoch, UTC */
    uint64_t rdev;                       /* Rock Ridge PN: (high << 32) | low */
    uint32_t extent;                     /* first logical block */
    unsigned extents;                    /* file sections (>1: multi-extent) */
    char target[VDISK_ISO_PATH_MAX + 1]; /* symlink target, else "" */
    int compressed;                      /* 1: zisofs (Rock Ridge ZF/Z2 entry);
                                            size is then the uncompressed size */
    uint64_t stored_size;                /* bytes in the image (all extents) */
};

/*
 * The primary volume descriptor, as isoinfo -d prints it.  The caller sets
 * struct_size to sizeof(struct vdisk_iso_info).
 */
struct vdisk_iso_info {
    size_t struct_size;
    char system_id[33], volume_id[33], volume_set_id[129], publisher_id[129];
    char preparer_id[129], application_id[129];
    char copyright_file[38], abstract_file[38], bibliographic_file[38];
    char creation_date[17], modification_date[17], expiration_date[17],
        effective_date[17];              /* "YYYYMMDDHHMMSScc" as stored */
    uint32_t volume_set_size, volume_sequence, block_size;
    uint32_t volume_space_size;          /* blocks */
    uint32_t path_table_size;
    unsigned namespaces;                 /* VDISK_ISO_HAS_* */
    int joliet_level;                    /* 1-3, 0 without Joliet */
    int rr_version;                      /* 1 with Rock Ridge, else 0 */
    unsigned descriptors;                /* volume descriptors read */
    unsigned svd_count;                  /* supplementary descriptors */
    uint32_t boot_catalog;               /* block of the El Torito catalog, or 0 */
    unsigned boot_entries;               /* El Torito entries */
};
#define VDISK_ISO_INFO_SIZE_V1 VDISK_STRUCT_END(struct vdisk_iso_info, boot_entries)

/* El Torito. */
#define VDISK_ELTORITO_PLATFORM_X86 0x00
#define VDISK_ELTORITO_PLATFORM_PPC 0x01
#define VDISK_ELTORITO_PLATFORM_MAC 0x02
#define VDISK_ELTORITO_PLATFORM_EFI 0xef

#define VDISK_ELTORITO_NOEMUL  0
#define VDISK_ELTORITO_FLOPPY12 1
#define VDISK_ELTORITO_FLOPPY144 2
#define VDISK_ELTORITO_FLOPPY288 3
#define VDISK_ELTORITO_HARDDISK 4

/* An El Torito entry.  The caller sets struct_size to sizeof(struct vdisk_iso_boot). */
struct vdisk_iso_boot {
    size_t struct_size;
    unsigned index;          /* 0: the default entry, then section entries */
    int bootable;            /* boot indicator 0x88 */
    unsigned platform;       /* VDISK_ELTORITO_PLATFORM_* (of its header) */
    char id[29];             /* validation entry / section header id */
    unsigned media;          /* VDISK_ELTORITO_* emulation type */
    unsigned load_segment;   /* 0: the default 0x7c0 */
    unsigned system_type;
    unsigned sector_count;   /* 512-byte virtual sectors to load */
    uint32_t load_rba;       /* the image's first 2048-byte block */
    uint64_t image_offset;   /* bytes, in the device */
    uint64_t image_size;     /* bytes: the emulated floppy's size, else
                                sector_count * 512 (512 when 0) */
};
#define VDISK_ISO_BOOT_SIZE_V1 VDISK_STRUCT_END(struct vdisk_iso_boot, image_size)

/*
 * vdisk_iso_open: reads the ISO 9660 file system on DEV into *out: the
 * volume descriptor set (at most 64 descriptors), Rock Ridge and Joliet
 * detection, the El Torito catalog, a walk of the directory tree (loops
 * refused) and a check of the path table against it.  vdisk never reads
 * files through the path table, and neither does any other ISO reader: a
 * path table that disagrees with the tree (or is damaged) does not fail
 * the open, it is reported by vdisk_iso_warning().  NS selects the
 * namespace (VDISK_ISO_NS_*).  The handle holds a reference to DEV.
 * Returns 0, -ENODATA when DEV holds no ISO 9660 file system, -ENOENT
 * when NS names an absent namespace, -EINVAL for a damaged one, or an
 * I/O error.
 */
int vdisk_iso_open(vdisk_iso **out, vdisk_dev *dev, int ns);

/*
 * vdisk_iso_warning: what vdisk_iso_open found wrong that does not stop
 * the file system from being read, as one line without a newline
 * ("FILE: the path table ...; the directory tree is used"), or NULL when
 * nothing.  The string belongs to the handle and lives until
 * vdisk_iso_close().
 */
const char *vdisk_iso_warning(const vdisk_iso *iso);

/* vdisk_iso_close: frees the handle; NULL is a no-op. */
void vdisk_iso_close(vdisk_iso *iso);

/* vdisk_iso_namespace: the namespace in use (never AUTO). */
int vdisk_iso_namespace(const vdisk_iso *iso);

/*
 * vdisk_iso_get_info: the volume's description in *info, filled up to
 * info->struct_size (set to the bytes filled).  Returns 0, or -EINVAL
 * when info->struct_size is below VDISK_ISO_INFO_SIZE_V1.
 */
int vdisk_iso_get_info(const vdisk_iso *iso, struct vdisk_iso_info *info);

/*
 * vdisk_iso_probe: 1 when DEV holds an ISO 9660 file system (a primary
 * volume descriptor "CD001" at byte 32768), 0 when not; VOLUME_ID (may be
 * NULL; LEN bytes, 33 suffice) gets its volume id.  Returns -errno on I/O
 * errors.
 */
int vdisk_iso_probe(vdisk_dev *dev, char *volume_id, size_t len);

/*
 * vdisk_iso_stat: the entry at PATH ("/" or "" is the root; components
 * separated by '/') in *e.  Symlinks met on the way are followed inside
 * the image (absolute targets from its root, at most 40); the last one
 * too when FOLLOW is 1.  Returns 0, -ENOENT, -ENOTDIR, -ELOOP (also
 * for more than VDISK_ISO_DEPTH_MAX directories deep), -ENAMETOOLONG
 * (PATH longer than VDISK_ISO_LOOKUP_MAX), -EINVAL (damaged), or an I/O
 * error.
 */
int vdisk_iso_stat(vdisk_iso *iso, const char *path, int follow, struct vdisk_iso_entry *e);

/*
 * vdisk_iso_list: the entries of the directory PATH (symlinks followed),
 * in the order of the directory, without "." and "..", in a new array in
 * *out (free it with vdisk_iso_list_free) and their number in *count.
 * Rock Ridge: relocated directories appear where they belong, and the
 * rr_moved folder holding them is hidden.  Returns 0 or as vdisk_iso_stat,
 * -ENOTDIR for a file.
 */
int vdisk_iso_list(vdisk_iso *iso, const char *path, struct vdisk_iso_entry **out,
                   size_t *count);
void vdisk_iso_list_free(struct vdisk_iso_entry *entries);

/*
 * vdisk_iso_read: reads up to LEN bytes at OFFSET of the file PATH
 * (symlinks followed) into BUF, across all its extents; a zisofs file's
 * uncompressed bytes (see above).  Returns the number of bytes read (0 at
 * or past the end), -EISDIR, -EINVAL (a damaged zisofs file), -ENOTSUP
 * (a zisofs2 algorithm other than zlib), or as vdisk_iso_stat.  A zisofs
 * file needs two buffers of its block size (at most 1 MiB), whatever LEN.
 */
int64_t vdisk_iso_read(vdisk_iso *iso, const char *path, void *buf, size_t len,
                       uint64_t offset);

/*
 * vdisk_iso_readlink: the target of the symlink PATH in BUF (LEN bytes,
 * NUL-terminated).  Returns its length, -EINVAL (not a symlink), -ERANGE
 * (BUF too small), or as vdisk_iso_stat.
 */
int vdisk_iso_readlink(vdisk_iso *iso, const char *path, char *buf, size_t len);

/* vdisk_iso_boot_count: the number of El Torito entries (0 without). */
unsigned vdisk_iso_boot_count(const vdisk_iso *iso);

/*
 * vdisk_iso_boot_get: entry INDEX in *b, filled up to b->struct_size (set
 * to the bytes filled).  Returns 0, -ERANGE, or -EINVAL when
 * b->struct_size is below VDISK_ISO_BOOT_SIZE_V1.
 */
int vdisk_iso_boot_get(const vdisk_iso *iso, unsigned index, struct vdisk_iso_boot *b);

/*
 * vdisk_iso_open_boot: the boot image of entry INDEX as a read-only range
 * of the ISO's device (vdisk_open_range), in *out.  Returns 0, -ERANGE,
 * -EINVAL (the image lies beyond the device).
 */
int vdisk_iso_open_boot(vdisk_iso *iso, unsigned index, vdisk_dev **out);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_ISO9660_H */
