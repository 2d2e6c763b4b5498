/* SPDX-License-Identifier: MIT */
/*
 * vdisk/options.h: key=value options for opening and creating devices.
 *
 * Options are strings, as on qemu-img's command line, so that the set of
 * options can grow without changing the ABI.  A device consumes the options
 * it understands; an option that nothing consumed makes vdisk_open() or
 * vdisk_create() fail with -EINVAL and a message naming it.
 *
 * Options understood when opening (vdisk_open):
 *   format     raw | qcow2 ; the format driver.  Without it the format is
 *              probed from the first 512 bytes of the file, as QEMU probes:
 *              - Formats that QEMU reads and vdisk does not (VMDK, VHD,
 *                VHDX, VDI, QED, Parallels, QCOW, LUKS, bochs, cloop, DMG)
 *                fail the open with -ENOTSUP ("FILE: VHD (vpc) images are not
 *                supported"), never open as raw; format=raw opens anything.
 *              - A file probed as raw and opened read-write refuses, with
 *                -EPERM, every write (pwrite, pwritev, aio, unaligned,
 *                O_DIRECT) that would make its first 512 bytes probe as
 *                another format, as QEMU's raw driver does, and takes
 *                requests in whole 512-byte blocks; write zeroes and discard
 *                stay allowed.  The open gives QEMU's "WARNING: Image format
 *                was not specified ..." (vdisk_set_warning_handler).
 *              So a guest writing a disk that is opened with its format
 *              probed cannot make the next probe choose a format with a
 *              backing file (a qcow2 header naming a host file), and a
 *              probed qcow2 image's header is metadata that guest writes do
 *              not reach.  A raw file that was opened with format=raw may
 *              hold anything: give the format for untrusted images, every
 *              time, and backing-confine=on.
 *              A backing file whose image does not record its format is
 *              probed the same way (QEMU before 6.1 made such images),
 *              with a warning once per process; the option
 *              backing.format=FMT gives it instead (and overrides a
 *              recorded one; only for an image that has a backing file).
 *   read-only  on | off (default off)
 *   cache      writeback (default) | none | writethrough | directsync | unsafe,
 *              with QEMU's meaning: "none" and "directsync" bypass the host
 *              page cache (O_DIRECT), "writethrough" and "directsync" make
 *              every write durable before it completes, "unsafe" ignores
 *              flushes.
 *   engine     auto (default) | uring | threads: the I/O engine used by the
 *              device's queues.  "auto" takes io_uring when the kernel allows
 *              it and falls back to worker threads otherwise.  The
 *              environment variable VDISK_ENGINE=uring|threads sets the
 *              default.
 *   threads    number of worker threads per queue for the threads engine
 *              (1..256, default 16).
 *   connections  NBD exports only (1..16, default 1): connections to the
 *              server when it allows several (multi-conn); requests go to
 *              each in turn.  Without multi-conn one is used.
 *   timeout    NBD exports only (1..3600 seconds, default 30): bounds each
 *              attempt to connect (and reconnect) and each command's
 *              answer; a command unanswered that long fails with
 *              -ETIMEDOUT and the connection is made again.
 *   tls-certificates, tls-psk-file, tls-username, tls-verify-peer
 *              NBD exports over TLS only (nbds://, nbds+unix:// names):
 *              libnbd's settings of those names.  tls-certificates=DIR:
 *              x509 (DIR/ca-cert.pem; client-cert.pem and client-key.pem
 *              when the server wants a client certificate);
 *              tls-psk-file=FILE: pre-shared keys (psktool's
 *              USERNAME:HEXKEY lines); tls-username=NAME: the PSK
 *              identity (default: the name's user, else the login name);
 *              tls-verify-peer=on|off (default on: the server's
 *              certificate is checked against the CA and the host name).
 *              The name's own ?tls-certificates= and ?tls-psk-file= work
 *              too.  Not for a backing file (-EPERM: they name local
 *              files); with a plain nbd:// name, -EINVAL.
 *   backing-confine  on | off (default off): for untrusted images.  A
 *              backing file name (qcow2) must stay inside the folder of the
 *              image that names it: names that are absolute, name a
 *              protocol ("x://"), climb out with "..", or reach outside
 *              through a symbolic link fail the open with -EPERM before the
 *              file is opened.  The rule applies down the whole backing
 *              chain.  Formats without backing files accept and ignore it.
 *              (External data files are not supported at all.)
 *   backing-allow-network  on | off (default off, or the environment
 *              variable VDISK_BACKING_ALLOW_NETWORK=on|off): whether a
 *              backing file name recorded in an image (qcow2) may be an NBD
 *              URI (nbd://, nbd+unix://, nbds://, ...).  Off, such an open
 *              fails with -EPERM before any connection is made, naming this
 *              option: whoever wrote the image must not make vdisk connect
 *              to a server.  Backing files on local paths are not
 *              affected, nor names the caller gives itself (vdisk_open of
 *              an NBD URI, vdisk_create with one as backing file).  Given
 *              as an option it applies down the whole backing chain;
 *              formats without backing files accept and ignore it.
 *   locking    auto (default) | on | off: image locking, compatible with
 *              QEMU's (see "Image locking" in vdisk/device.h).  "auto"
 *              locks where the file system supports OFD locks and goes on
 *              without locks, silently, where it does not (some network
 *              file systems); "on" fails the open there; "off" takes no
 *              locks and ignores other processes' locks: the caller then
 *              answers for not corrupting an image that is in use.  The
 *              mode applies to the whole backing chain.
 *   force-share  on | off (default off): with read-only=on only (-EINVAL
 *              otherwise), as qemu-img -U: open even while another process
 *              writes the image, and let it go on writing.  The data read
 *              may be inconsistent (a qcow2 image's metadata can change
 *              underneath); meant for looking at images in use (info, map,
 *              a convert of a paused guest's disk).  Applies to the whole
 *              backing chain.
 *   repair     on | off (default off): open for repair with vdisk_check():
 *              a qcow2 image marked corrupt opens read-write (writes stay
 *              refused until a check that repairs everything clears the
 *              mark), as qemu-img check -r does.  Formats without a corrupt
 *              mark accept and ignore it.
 *   check      on | off (default off): open for vdisk_check() alone, as
 *              qemu-img check opens: a qcow2 image's snapshot table is read
 *              by the check, not the open, so that a table the open would
 *              refuse (too many entries, too much extra data, past QEMU's
 *              64 MiB) is reported, and with VDISK_CHECK_REPAIR_ERRORS cut
 *              to what can be kept.  Until the check runs the image has no
 *              snapshots.  Formats without such tables accept and ignore
 *              it.
 *   drop-bitmaps  on | off (default off), qcow2: a read-write open keeps
 *              the persistent dirty bitmaps up to date (see vdisk/bitmap.h;
 *              it fails with -ENOMEM when their bits would take more than
 *              256 MiB).  With drop-bitmaps=on a read-write open
 *              deletes every bitmap instead (the header extension first,
 *              then their clusters freed as check -r leaks frees them),
 *              which QEMU's incremental backups then have to start over.
 *   snapshot.name, snapshot.id  qcow2, with read-only=on only (-EINVAL
 *              otherwise): the device reads the internal snapshot of that
 *              name (or, failing that, of that id; either key looks at
 *              both) instead of the current disk, and has its size;
 *              -ENOENT when there is none (vdisk convert -l, measure -l).
 *   l2-cache-size, refcount-cache-size  qcow2: bytes of L2 tables and of
 *              refcount blocks kept in memory, a size (vdisk_parse_size:
 *              "1M", "65536") up to 1 TiB, held as whole tables (4 to
 *              65536 of them); default: enough L2 tables for the whole disk
 *              up to 32 MiB, and a quarter of that for refcount blocks.
 *   key-secret=ID (luks), encrypt.key-secret=ID (qcow2)  encrypted images
 *              (raw LUKS1, QEMU's "luks" format; qcow2 with
 *              encrypt.format=luks): the passphrase is the value of the
 *              option secret.ID in the same options object (qemu-img's
 *              --object secret,id=ID; a json: name may give the key-secret
 *              too).  Without it the open fails with -EINVAL ("Parameter
 *              'key-secret' is required for cipher"); a passphrase that opens
 *              no key slot fails with -EPERM ("Invalid password, cannot
 *              unlock any keyslot").  The header's PBKDF2 iteration counts
 *              are bounded (at most 100000000) and its key slots checked
 *              against the file before any is tried.
 *   secret.ID  a passphrase, for whichever image names ID; images that do
 *              not, and formats without encryption, ignore it.
 *   no-key     on | off (default off): an encrypted image opens without
 *              its passphrase, for its header alone (vdisk_get_info's
 *              encrypt); its data reads and writes fail with -ENOKEY.
 *              Other images ignore it.
 *   encrypt.format  qcow2: luks, the only one vdisk opens (legacy AES
 *              images are refused).
 *
 * Options understood when creating (vdisk_create): vdisk_create_option()
 * below lists them per format; their values and defaults are described at
 * vdisk_create() in vdisk/device.h.
 *
 * Thread-safety: an options object may be read by several threads at once
 * (vdisk_open and vdisk_create do not modify it) but must not be modified
 * while it is being used.
 */
#ifndef VDISK_OPTIONS_H
#define VDISK_OPTIONS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vdisk_options vdisk_options;

/*
 * vdisk_options_new: an empty options object, stored in *optsp.
 * Returns 0, or -ENOMEM.  Free it with vdisk_options_free().
 */
int vdisk_options_new(vdisk_options **optsp);

/*
 * vdisk_options_free: frees the object; NULL is a no-op.
 */
void vdisk_options_free(vdisk_options *opts);

/*
 * vdisk_options_set: sets KEY to VALUE (both copied), replacing any earlier
 * value of KEY.  Returns 0, -EINVAL for an empty key, a key containing '='
 * or ',', or a NULL value, or -ENOMEM.
 */
int vdisk_options_set(vdisk_options *opts, const char *key, const char *value);

/*
 * vdisk_options_parse: sets every key=value pair of a comma-separated list,
 * as qemu-img's -o takes it ("cluster_size=65536,compat=1.1").  A comma is
 * written inside a value as ",,".  Returns 0, or -EINVAL with a message for
 * a pair without '=', or -ENOMEM.
 */
int vdisk_options_parse(vdisk_options *opts, const char *list);

/*
 * vdisk_options_get: the value of KEY, or NULL when it is not set.  The
 * string belongs to the object and lives until the key is set again or the
 * object is freed.
 */
const char *vdisk_options_get(const vdisk_options *opts, const char *key);

/*
 * vdisk_parse_size: TEXT as a size in bytes, in *out.  This is the grammar
 * of every size vdisk takes: the size options above (cluster_size,
 * l2-cache-size, refcount-cache-size), the vdisk CLI's sizes, offsets and
 * lengths, and vdisk-vmm --mem.  It accepts what qemu-img 7.2 accepts:
 *
 *   size     = [white space] ["+"] number [suffix]
 *   number   = digits ["." [digits]]        decimal, "1.5", "1.", "010"
 *            | ("0x" | "0X") hexdigits      hexadecimal, no fraction
 *   suffix   = "b" | "B"   bytes (2^0)
 *            | "k" | "K"   KiB (2^10)       "m" | "M"  MiB (2^20)
 *            | "g" | "G"   GiB (2^30)       "t" | "T"  TiB (2^40)
 *            | "p" | "P"   PiB (2^50)       "e" | "E"  EiB (2^60)
 *
 * Suffixes are binary (k is 1024) in either case; "kB", "KiB", white space
 * after the number, signs other than a leading "+", exponents ("1e3") and
 * ".5" (no digit before the point) are refused.  A number without a suffix
 * counts in units of BARE_UNIT bytes: 1 for bytes (as qemu-img), 1 << 20 for
 * QEMU's "-m 256" meaning 256 MiB; BARE_UNIT must be 1, 1024, ... or 2^60.
 * In a hexadecimal number the digits b and e are digits, not suffixes
 * ("0x1e" is 30); a suffix after a hexadecimal number is accepted, as qemu-img
 * accepts it (with a deprecation warning there).
 *
 * A fraction must come to whole bytes after its unit: "1.5k" is 1536,
 * "0.1k" is 102 (102.4 rounded to the nearest byte, halves up: "0.5" of a
 * byte rounds to 1), and a fraction of a byte ("1.5", "1.5b") is refused;
 * "1.0" and "1.000b" are 1.  The fraction is exact: where qemu-img rounds
 * through a double (more than about 15 significant digits), vdisk's result
 * can be a byte off its ("1.99999999999999999999k" is 2048 here, 1024 there).
 *
 * Returns 0, -EINVAL (not a size, or a bad BARE_UNIT) or -ERANGE (2^64 bytes
 * or more), with a message naming TEXT; *out is left alone on errors.
 * Callers check their own limits (qemu-img create takes at most 2^63 - 1).
 * Thread-safe, does not block, allocates nothing.
 */
int vdisk_parse_size(const char *text, uint64_t bare_unit, uint64_t *out);

/*
 * vdisk_create_option: the INDEXth (from 0) of the options vdisk_create()
 * takes for FORMAT ("qcow2", "raw", "vmdk", ...), in name order, as
 * `qemu-img create -f FORMAT -o help` lists them: *NAME ("cluster_size"),
 * *TYPE (how its value is written: "size", "str", "num" or
 * "bool (on/off)") and *HELP (one line).  The strings are static: they
 * live as long as the program and must not be freed.  NAME, TYPE or HELP
 * may be NULL when not wanted.
 *
 * Returns 1 when INDEX names an option, 0 past the last one (nothing set),
 * -ENOENT for a format vdisk does not have, or -ENOTSUP for one it reads
 * but does not create, each with a message naming FORMAT.
 * Thread-safe, does not block, allocates nothing.
 */
int vdisk_create_option(const char *format, unsigned index, const char **name,
                        const char **type, const char **help);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_OPTIONS_H */
