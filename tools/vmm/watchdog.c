/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: the watchdog (struct vmm_watchdog), run by the event loop.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "vmm.h"

/*
 * A guest that makes no progress gives no sign of it: a vCPU spinning in
 * KVM_RUN (or a KVM that cannot run the guest at all, such as a software
 * hypervisor running an unmodified Linux kernel) makes no exit to the VMM,
 * writes nothing to the serial port, kicks no queue.  The I/O thread looks
 * at the count of such signs (struct vmm_control's life) at least once a
 * second; when it has not moved for the watchdog's time, the VM ends with
 * exit status 2 and a message that names the likely cause.  --watchdog SECONDS watches the
 * whole run; without it only the start (a guest that never shows a sign of
 * life in VMM_BOOT_WATCHDOG seconds), since an idle guest waiting for input
 * with its timer in KVM's local APIC makes no exit either.
 */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void vmm_watchdog_arm(struct vmm_watchdog *wd, int seconds, int kernel, unsigned life)
{
    wd->kernel = kernel;
    wd->whole_run = seconds >= 0;
    wd->limit_ms = (uint64_t)(seconds >= 0 ? (unsigned)seconds : VMM_BOOT_WATCHDOG) * 1000u;
    wd->start_ms = wd->last_ms = mono_ms();
    wd->seen = life;
}

/* Whether the file at PATH exists. */
static int path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Whether /proc/cpuinfo's flags name hardware virtualization (vmx, svm);
 * -1 when it cannot be read. */
static int cpu_has_hw_virt(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return -1;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f)) {
        if (strncmp(line, "flags", 5) != 0)
            continue;
        for (char *t = strtok(line, " \t\n"); t && !found; t = strtok(NULL, " \t\n"))
            found = strcmp(t, "vmx") == 0 || strcmp(t, "svm") == 0;
    }
    fclose(f);
    return found;
}

static void watchdog_fire(const struct vmm_watchdog *wd)
{
    unsigned secs = (unsigned)(wd->limit_ms / 1000u);
    if (wd->alive) {
        vmm_log("watchdog: the guest has shown no sign of life for %u s (no port or MMIO "
                "access, serial output or queue kick since %.1f s after start); ending it. "
                "Likely cause: the guest hung (a loop with interrupts off, a panic with no "
                "console) or sits idle; raise --watchdog, or --watchdog 0 to turn it off",
                secs, (double)(wd->last_ms - wd->start_ms) / 1000.0);
    } else {
        const char *why;
        if (path_exists("/sys/module/kvm_pvm"))
            why = "this host's /dev/kvm is kvm_pvm, a software hypervisor that runs 32-bit "
                  "firmware but not an unmodified Linux kernel (doc/vmm.md); use a host with "
                  "hardware virtualization";
        else if (cpu_has_hw_virt() == 0)
            why = "this host's CPU shows no hardware virtualization (no vmx or svm in "
                  "/proc/cpuinfo): /dev/kvm is a software or nested hypervisor that cannot "
                  "run this guest";
        else if (wd->kernel)
            why = "the kernel stops before its first port access: a kernel without a serial "
                  "console on ttyS0 (--cmdline), or one this machine cannot start";
        else
            why = "the firmware never touches a port or MMIO register (a loop, or code that "
                  "is not 32-bit protected-mode code loaded at 0x100000)";
        vmm_log("watchdog: the guest has shown no sign of life in its first %u s (no port "
                "or MMIO access, no serial output, no queue kick); ending it "
                "(--watchdog 0 turns this off). Likely cause: %s", secs, why);
    }
}

/* How long epoll_wait may sleep for the watchdog (ms), or -1. */
int vmm_watchdog_timeout(const struct vmm_watchdog *wd)
{
    return wd->limit_ms ? 1000 : -1;
}

int vmm_watchdog_check(struct vmm_watchdog *wd, unsigned life)
{
    if (!wd->limit_ms)
        return 0;
    uint64_t now = mono_ms();
    if (life != wd->seen) {
        wd->seen = life;
        wd->last_ms = now;
        wd->alive = 1;
        if (!wd->whole_run)
            wd->limit_ms = 0; /* the guest started: the boot watchdog is done */
        return 0;
    }
    if (now - wd->last_ms >= wd->limit_ms) {
        watchdog_fire(wd);
        wd->limit_ms = 0;
        return 1;
    }
    return 0;
}
