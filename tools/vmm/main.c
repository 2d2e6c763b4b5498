/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: a minimal KVM virtual machine monitor (x86-64) whose disks and
 * CD-ROM are vdisk devices.  See doc/vmm.md; vmm.h lists the parts.
 *
 * Threads: one per vCPU (KVM_RUN; port I/O and MMIO exits are handled
 * there, vcpu.c) and the main thread, which is the I/O thread: the event
 * loop (loop.c) over the devices' ioeventfds (queue kicks) and completion
 * fds, stdin, the monitor and a signalfd.
 */
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "vmm.h"

#define PROG "vdisk-vmm"

void vmm_log(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* \r: the terminal may be in raw mode */
    fprintf(stderr, PROG ": %s%s\n", msg, isatty(2) ? "\r" : "");
}

int main(int argc, char **argv)
{
    struct vmm_config cfg;
    int r = vmm_config_parse(&cfg, argc, argv);
    if (r != 0) {
        vmm_config_free(&cfg);
        return r > 0 ? 0 : 1;
    }
    struct vmm *vmm;
    int code = vmm_build(&vmm, &cfg);
    if (code == 0)
        code = vmm_run(vmm);
    vmm_destroy(vmm);
    return code;
}
