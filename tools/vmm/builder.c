/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: the builder.  Makes the struct vmm that every part gets its
 * own state from, builds the machine from the configuration in order (KVM
 * and RAM, the virtio devices, the ACPI tables, the guest's code, the UART
 * and the power controls, the vCPUs, the event loop), runs it and takes it
 * down in the reverse order.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor.h"
#include "vmm.h"

/* The kernel command line: --cmdline (or the default) and the devices. */
static char *build_cmdline(const struct vmm_config *c, const struct vmm_devices *devs)
{
    const char *base = c->cmdline ? c->cmdline : "console=ttyS0";
    size_t len = strlen(base) + 1 + (size_t)devs->n * 48;
    char *s = malloc(len);
    if (!s)
        return NULL;
    size_t at = (size_t)snprintf(s, len, "%s", base);
    if (!c->no_cmdline_devices)
        for (unsigned i = 0; i < devs->n && at < len; i++)
            at += (size_t)snprintf(s + at, len - at, " virtio_mmio.device=4K@0x%llx:%u",
                                   (unsigned long long)devs->dev[i].base, devs->dev[i].irq);
    return s;
}

static int build(struct vmm *vmm)
{
    struct vmm_config *c = &vmm->cfg;
    vmm_vcpus_init(&vmm->vcpus, c->firmware ? 1 : c->cpus, &vmm->pio, &vmm->mmio, &vmm->ctl);

    if (vmm_loop_signals(&vmm->loop, &vmm->ctl) < 0)
        return 1;
    vmm_vcpus_kick_signal();
    signal(SIGPIPE, SIG_IGN);

    if (vmm_machine_open(&vmm->machine) < 0 || vmm_machine_mem(&vmm->machine, c->mem) < 0 ||
        vmm_devices_virtio(&vmm->devices, c, vmm->machine.vm_fd, &vmm->machine.mem,
                           &vmm->mmio) < 0)
        return 1;
    struct vmm_acpi_info ai = { .ncpus = vmm->vcpus.n, .ndevs = vmm->devices.n };
    uint64_t rsdp = vmm_acpi_build(&vmm->machine.mem, &ai, c->dump_acpi);
    if (!rsdp)
        return 1;
    if (c->firmware) {
        if (vmm_load_firmware(&vmm->machine.mem, c->firmware, vmm->devices.n, vmm->devices.dev,
                              &vmm->boot) < 0)
            return 1;
    } else {
        char *cmdline = build_cmdline(c, &vmm->devices);
        if (!cmdline) {
            vmm_log("out of memory");
            return 1;
        }
        int r = vmm_load_linux(&vmm->machine.mem, c->kernel, c->initrd, cmdline, rsdp,
                               &vmm->boot);
        free(cmdline);
        if (r < 0)
            return 1;
    }
    if (vmm_devices_legacy(&vmm->devices, vmm->machine.vm_fd, 1, &vmm->pio, &vmm->ctl) < 0)
        return 1;
    if (vmm_vcpus_create(&vmm->vcpus, &vmm->machine, &vmm->boot) < 0 ||
        vmm_loop_setup(vmm) < 0)
        return 1;

    vmm_term_raw();
    if (c->watchdog != 0)
        vmm_watchdog_arm(&vmm->watchdog, c->watchdog, c->kernel != NULL,
                         atomic_load(&vmm->ctl.life));
    return 0;
}

int vmm_build(struct vmm **out, struct vmm_config *cfg)
{
    struct vmm *vmm = calloc(1, sizeof(*vmm));
    *out = vmm;
    if (!vmm) {
        vmm_log("out of memory");
        vmm_config_free(cfg);
        return 1;
    }
    vmm->cfg = *cfg;                    /* the disk option copies are ours now */
    memset(cfg, 0, sizeof(*cfg));
    vmm->machine.kvm_fd = vmm->machine.vm_fd = -1;
    vmm->loop.epoll_fd = vmm->loop.signal_fd = -1;
    vmm->ctl.stop_fd = -1;
    vmm_bus_init(&vmm->pio);
    vmm_bus_init(&vmm->mmio);
    return build(vmm);
}

int vmm_run(struct vmm *vmm)
{
    vmm_vcpus_start(&vmm->vcpus);
    vmm_loop_run(vmm);
    return atomic_load(&vmm->ctl.exit_code);
}

void vmm_destroy(struct vmm *vmm)
{
    if (!vmm)
        return;
    vmm_vcpus_stop(&vmm->vcpus);
    vmm_monitor_free(vmm->monitor);
    vmm->monitor = NULL;
    vmm_devices_destroy(&vmm->devices);
    vmm_vcpus_destroy(&vmm->vcpus);
    vmm_machine_close(&vmm->machine);
    vmm_machine_mem_free(&vmm->machine);
    vmm_loop_close(&vmm->loop, &vmm->ctl);
    vmm_term_restore();
    vmm_config_free(&vmm->cfg);
    free(vmm);
}
