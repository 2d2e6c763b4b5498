/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: the command line (vmm.h's struct vmm_config; doc/vmm.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/options.h>

#include "vmm.h"

#define PROG "vdisk-vmm"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: " PROG " [--mem SIZE] [--cpus N]\n"
        "         (--kernel BZIMAGE [--initrd FILE] [--cmdline STR] [--no-cmdline-devices]\n"
        "          | --firmware FLAT)\n"
        "         [--disk IMAGE[,readonly][,format=FMT][,serial=S][,part=N]\n"
        "                 [,backing-confine=on|off]]...\n"
        "         [--cdrom [ISO]] [--monitor SOCKET] [--dump-acpi DIR] [--watchdog SECONDS]\n"
        "\n"
        "  --mem SIZE       guest RAM (K, M, G, T suffixes, fractions such as 1.5G; a bare\n"
        "                   number is MiB; rounded up to 4 KiB; default 256M)\n"
        "  --cpus N         vCPUs, 1..%u (default 1; --firmware starts only the first)\n"
        "  --kernel FILE    a Linux bzImage, started by the 64-bit boot protocol\n"
        "  --initrd FILE    an initramfs for --kernel\n"
        "  --cmdline STR    the kernel command line (default \"console=ttyS0\")\n"
        "  --no-cmdline-devices  do not append virtio_mmio.device=... to the command line\n"
        "  --firmware FILE  a raw image loaded at 0x100000, started in 32-bit protected mode\n"
        "  --disk ...       a virtio-blk disk over a vdisk image (repeatable); its backing\n"
        "                   files must stay in its folder unless backing-confine=off\n"
        "  --cdrom [ISO]    a virtio-scsi CD-ROM drive, with ISO loaded or empty\n"
        "  --monitor PATH   a Unix socket taking one command a line: \"change ISO\",\n"
        "                   \"eject\", \"info\", \"help\" (vdisk serve's monitor)\n"
        "  --dump-acpi DIR  write the ACPI tables to DIR as they are in guest memory\n"
        "  --watchdog SECONDS  end the guest when it shows no sign of life (no port or\n"
        "                   MMIO access, serial output or queue kick) for SECONDS; 0: never.\n"
        "                   Without it, only a guest silent for its first %u s is ended.\n"
        "\n"
        "The guest's serial port is on stdin/stdout (Ctrl-A x quits when stdin is a\n"
        "terminal).  Exit status: 0 when the guest powers off or resets, 1 on errors,\n"
        "2 when the watchdog ended a guest that made no progress.\n",
        VMM_MAX_CPUS, VMM_BOOT_WATCHDOG);
}

static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v < min || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int parse_disk(struct vmm_config *c, const char *arg)
{
    if (c->ndisks >= VMM_MAX_DEVICES - (c->cdrom ? 1u : 0u)) {
        vmm_log("--disk: at most %u devices (disks and the CD-ROM)", VMM_MAX_DEVICES);
        return -1;
    }
    char *copy = strdup(arg);
    if (!copy)
        return -1;
    c->disk_args[c->ndisks] = copy;
    struct vmm_disk_opt *d = &c->disks[c->ndisks];
    memset(d, 0, sizeof(*d));
    char *save = NULL;
    char *tok = strtok_r(copy, ",", &save);
    if (!tok || !*tok) {
        vmm_log("--disk %s: no image", arg);
        return -1;
    }
    d->path = tok;
    while ((tok = strtok_r(NULL, ",", &save))) {
        if (strcmp(tok, "readonly") == 0 || strcmp(tok, "ro") == 0) {
            d->readonly = 1;
        } else if (strncmp(tok, "format=", 7) == 0 && tok[7]) {
            d->format = tok + 7;
        } else if (strncmp(tok, "serial=", 7) == 0) {
            d->serial = tok + 7;
            if (strlen(d->serial) > 20) {
                vmm_log("--disk %s: serial: at most 20 bytes", arg);
                return -1;
            }
        } else if (strcmp(tok, "backing-confine=on") == 0 ||
                   strcmp(tok, "backing-confine=off") == 0) {
            d->allow_any_backing = strcmp(tok, "backing-confine=off") == 0;
        } else if (strncmp(tok, "part=", 5) == 0) {
            if (parse_uint(tok + 5, 1, 4096, &d->part) < 0) {
                vmm_log("--disk %s: part=N: a partition number from 1", arg);
                return -1;
            }
        } else {
            vmm_log("--disk %s: unknown option '%s' (readonly, format=FMT, serial=S, part=N, "
                    "backing-confine=on|off)", arg, tok);
            return -1;
        }
    }
    c->ndisks++;
    return 0;
}

void vmm_config_free(struct vmm_config *c)
{
    for (unsigned i = 0; i < VMM_MAX_DEVICES; i++)
        free(c->disk_args[i]);
}

int vmm_config_parse(struct vmm_config *c, int argc, char **argv)
{
    memset(c, 0, sizeof(*c));
    c->watchdog = -1;
    c->mem = 256ull << 20;
    c->cpus = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            vmm_log("unexpected argument '%s' (try --help)", a);
            return -1;
        }
        /* --name=value or --name value */
        char name[32];
        const char *val = NULL;
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        if (nlen >= sizeof(name)) {
            vmm_log("unknown option '%s' (try --help)", a);
            return -1;
        }
        memcpy(name, a, nlen);
        name[nlen] = 0;
        if (eq)
            val = eq + 1;

        /* options without a value */
        if (strcmp(name, "--no-cmdline-devices") == 0 && !val) {
            c->no_cmdline_devices = 1;
            continue;
        }
        if (strcmp(name, "--cdrom") == 0) {
            if (c->cdrom) {
                vmm_log("--cdrom: only one CD-ROM drive");
                return -1;
            }
            if (c->ndisks >= VMM_MAX_DEVICES) {
                vmm_log("--cdrom: at most %u devices (disks and the CD-ROM)", VMM_MAX_DEVICES);
                return -1;
            }
            c->cdrom = 1;
            if (!val && i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
                val = argv[++i];
            c->cdrom_iso = (val && *val) ? val : NULL;
            continue;
        }
        static const char *const with_value[] = { "--mem", "--cpus", "--kernel", "--initrd",
                                                  "--cmdline", "--firmware", "--disk",
                                                  "--monitor", "--dump-acpi", "--watchdog" };
        int known = 0;
        for (size_t k = 0; k < sizeof(with_value) / sizeof(with_value[0]); k++)
            known |= strcmp(name, with_value[k]) == 0;
        if (!known) {
            vmm_log("unknown option '%s' (try --help)", a);
            return -1;
        }
        if (!val) {
            if (i + 1 >= argc) {
                vmm_log("%s needs a value", name);
                return -1;
            }
            val = argv[++i];
        }
        if (strcmp(name, "--mem") == 0) {
            /* vdisk_parse_size's grammar, a bare number in MiB (QEMU's -m). */
            if (vdisk_parse_size(val, 1u << 20, &c->mem) < 0 || c->mem < (4ull << 20) ||
                c->mem > (1ull << 40)) {
                vmm_log("--mem %s: a size from 4M to 1T", val);
                return -1;
            }
            c->mem = (c->mem + 4095) & ~4095ull; /* whole pages, for KVM */
        } else if (strcmp(name, "--cpus") == 0) {
            if (parse_uint(val, 1, VMM_MAX_CPUS, &c->cpus) < 0) {
                vmm_log("--cpus %s: a number from 1 to %u", val, VMM_MAX_CPUS);
                return -1;
            }
        } else if (strcmp(name, "--kernel") == 0) {
            c->kernel = val;
        } else if (strcmp(name, "--initrd") == 0) {
            c->initrd = val;
        } else if (strcmp(name, "--cmdline") == 0) {
            c->cmdline = val;
        } else if (strcmp(name, "--firmware") == 0) {
            c->firmware = val;
        } else if (strcmp(name, "--disk") == 0) {
            if (parse_disk(c, val) < 0)
                return -1;
        } else if (strcmp(name, "--monitor") == 0) {
            c->monitor = val;
        } else if (strcmp(name, "--dump-acpi") == 0) {
            c->dump_acpi = val;
        } else if (strcmp(name, "--watchdog") == 0) {
            unsigned w;
            if (parse_uint(val, 0, VMM_WATCHDOG_MAX, &w) < 0) {
                vmm_log("--watchdog %s: a number of seconds from 0 (never) to %u", val,
                        VMM_WATCHDOG_MAX);
                return -1;
            }
            c->watchdog = (int)w;
        }
    }
    if (!c->kernel == !c->firmware) {
        vmm_log("give one of --kernel or --firmware (try --help)");
        return -1;
    }
    if (c->firmware && (c->initrd || c->cmdline)) {
        vmm_log("--initrd and --cmdline go with --kernel, not --firmware");
        return -1;
    }
    return 0;
}
