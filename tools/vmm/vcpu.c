/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: the vCPUs: their creation (CPUID, FPU, local APIC, the boot
 * CPU's registers) and their threads, one per vCPU, in KVM_RUN; port I/O
 * and MMIO exits go to the device bus from there.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "vmm.h"

void vmm_vcpus_init(struct vmm_vcpus *s, unsigned n, struct vmm_bus *pio, struct vmm_bus *mmio,
                    struct vmm_control *ctl)
{
    memset(s, 0, sizeof(*s));
    s->n = n;
    s->pio = pio;
    s->mmio = mmio;
    s->ctl = ctl;
    for (unsigned i = 0; i < VMM_MAX_CPUS; i++) {
        s->v[i].fd = -1;
        s->v[i].set = s;
    }
}

static struct kvm_cpuid2 *supported_cpuid(int kvm_fd)
{
    for (unsigned n = 64; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(struct kvm_cpuid_entry2));
        if (!c)
            return NULL;
        c->nent = n;
        if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
            return c;
        int e = errno;
        free(c);
        if (e != E2BIG) {
            vmm_log("KVM_GET_SUPPORTED_CPUID: %s", strerror(e));
            return NULL;
        }
    }
    vmm_log("KVM_GET_SUPPORTED_CPUID: too many entries");
    return NULL;
}

static void seg_flat(struct kvm_segment *s, uint16_t sel, uint8_t type, int l, int db)
{
    memset(s, 0, sizeof(*s));
    s->base = 0;
    s->limit = 0xFFFFFFFF;
    s->selector = sel;
    s->type = type;
    s->present = 1;
    s->s = 1;
    s->l = (uint8_t)l;
    s->db = (uint8_t)db;
    s->g = 1;
}

static int vcpu_setup_boot(struct vmm_vcpu *v, const struct vmm_boot *boot)
{
    struct kvm_sregs sregs;
    if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0) {
        vmm_log("KVM_GET_SREGS: %s", strerror(errno));
        return -1;
    }
    struct kvm_segment code, data;
    if (boot->long_mode) {
        seg_flat(&code, 0x10, 0xB, 1, 0);
        seg_flat(&data, 0x18, 0x3, 0, 1);
        sregs.gdt.base = VMM_GDT_ADDR;
        sregs.gdt.limit = 4 * 8 - 1;
        sregs.cr3 = VMM_PML4_ADDR;
        sregs.cr4 = 0x20;                       /* PAE */
        sregs.efer = 0x500;                     /* LME | LMA */
        sregs.cr0 = 0x80000033;                 /* PG | NE | ET | MP | PE */
    } else {
        seg_flat(&code, 0x08, 0xB, 0, 1);
        seg_flat(&data, 0x10, 0x3, 0, 1);
        sregs.gdt.base = VMM_GDT_ADDR;
        sregs.gdt.limit = 3 * 8 - 1;
        sregs.cr0 = 0x31;                       /* NE | ET | PE, caches on, paging off */
        sregs.cr4 = 0;
        sregs.efer = 0;
    }
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cs = code;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0) {
        vmm_log("KVM_SET_SREGS: %s", strerror(errno));
        return -1;
    }
    struct kvm_regs regs;
    memset(&regs, 0, sizeof(regs));
    regs.rflags = 0x2;
    regs.rip = boot->entry;
    regs.rsp = boot->rsp;
    regs.rsi = boot->rsi;
    regs.rbx = boot->rbx;
    if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0) {
        vmm_log("KVM_SET_REGS: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int vcpu_create(struct vmm_vcpu *v, unsigned id, int vm_fd, const struct kvm_cpuid2 *sup,
                       int mmap_size, const struct vmm_boot *boot)
{
    v->id = id;
    v->fd = ioctl(vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
    if (v->fd < 0) {
        vmm_log("KVM_CREATE_VCPU %u: %s", id, strerror(errno));
        return -1;
    }
    v->run_size = (size_t)mmap_size;
    void *run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (run == MAP_FAILED) {
        vmm_log("mmap of vCPU %u's kvm_run: %s", id, strerror(errno));
        v->run = NULL;
        return -1;
    }
    v->run = run;

    /* CPUID: what KVM supports, with this CPU's APIC ID and the hypervisor bit */
    size_t sz = sizeof(*sup) + sup->nent * sizeof(struct kvm_cpuid_entry2);
    struct kvm_cpuid2 *c = malloc(sz);
    if (!c)
        return -1;
    memcpy(c, sup, sz);
    for (unsigned i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        if (e->function == 1) {
            e->ebx = (e->ebx & 0x00FFFFFFu) | (id << 24);
            e->ecx |= 1u << 31;
        } else if (e->function == 0xB || e->function == 0x1F) {
            e->edx = id;
        }
    }
    int r = ioctl(v->fd, KVM_SET_CPUID2, c);
    free(c);
    if (r < 0) {
        vmm_log("KVM_SET_CPUID2: %s", strerror(errno));
        return -1;
    }

    struct kvm_fpu fpu;
    memset(&fpu, 0, sizeof(fpu));
    fpu.fcw = 0x37F;
    fpu.mxcsr = 0x1F80;
    if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0) {
        vmm_log("KVM_SET_FPU: %s", strerror(errno));
        return -1;
    }

    /* The local APIC's LINT0 is ExtINT (the 8259) and LINT1 NMI, as a BIOS leaves them */
    struct kvm_lapic_state lapic;
    if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) == 0) {
        uint32_t lvt0 = 0x700, lvt1 = 0x400;
        memcpy(&lapic.regs[0x350], &lvt0, 4);
        memcpy(&lapic.regs[0x360], &lvt1, 4);
        if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0) {
            vmm_log("KVM_SET_LAPIC: %s", strerror(errno));
            return -1;
        }
    }
    if (id == 0)
        return vcpu_setup_boot(v, boot);
    return 0; /* application processors wait for INIT/SIPI in the kernel */
}

static void vcpu_fail(struct vmm_vcpu *v, const char *what)
{
    struct kvm_regs regs;
    if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0)
        vmm_log("vCPU %u: %s (rip 0x%llx)", v->id, what, (unsigned long long)regs.rip);
    else
        vmm_log("vCPU %u: %s", v->id, what);
    vmm_request_stop(v->set->ctl, 1);
}

static void kick_handler(int sig)
{
    (void)sig;
}

static void *vcpu_thread(void *arg)
{
    struct vmm_vcpu *v = arg;
    struct vmm_vcpus *s = v->set;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    struct kvm_run *run = v->run;
    char what[256];

    while (!atomic_load(&s->ctl->stopping) && !atomic_load(&s->ctl->stop_requested)) {
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            snprintf(what, sizeof(what), "KVM_RUN: %s", strerror(errno));
            vcpu_fail(v, what);
            break;
        }
        if (run->exit_reason != KVM_EXIT_INTR) /* those are the VMM's own signals */
            atomic_fetch_add_explicit(&s->ctl->life, 1, memory_order_relaxed);
        switch (run->exit_reason) {
        case KVM_EXIT_IO: {
            uint64_t size = run->io.size, count = run->io.count;
            uint64_t off = run->io.data_offset;
            if ((size != 1 && size != 2 && size != 4) || off > v->run_size ||
                size * count > v->run_size - off) {
                vcpu_fail(v, "bad KVM_EXIT_IO");
                return NULL;
            }
            uint8_t *p = (uint8_t *)run + off;
            for (uint64_t i = 0; i < count; i++)
                vmm_bus_pio(s->pio, run->io.port, p + i * size, (unsigned)size,
                            run->io.direction == KVM_EXIT_IO_OUT);
            break;
        }
        case KVM_EXIT_MMIO:
            vmm_bus_mmio(s->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len,
                         run->mmio.is_write);
            break;
        case KVM_EXIT_HLT:
            break; /* only without an in-kernel LAPIC */
        case KVM_EXIT_SHUTDOWN:
            vcpu_fail(v, "the guest triple-faulted (KVM_EXIT_SHUTDOWN)");
            return NULL;
        case KVM_EXIT_SYSTEM_EVENT:
            if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN ||
                run->system_event.type == KVM_SYSTEM_EVENT_RESET) {
                vmm_request_stop(s->ctl, 0);
            } else {
                snprintf(what, sizeof(what), "system event %u", run->system_event.type);
                vcpu_fail(v, what);
            }
            return NULL;
        case KVM_EXIT_INTERNAL_ERROR: {
            int n = snprintf(what, sizeof(what), "KVM internal error, suberror %u%s",
                             run->internal.suberror,
                             run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
                                 ? " (instruction emulation failed)" : "");
            for (unsigned i = 0; i < run->internal.ndata && i < 4 && n > 0 &&
                                 (size_t)n < sizeof(what); i++)
                n += snprintf(what + n, sizeof(what) - (size_t)n, " 0x%llx",
                              (unsigned long long)run->internal.data[i]);
            vcpu_fail(v, what);
            return NULL;
        }
        case KVM_EXIT_FAIL_ENTRY:
            snprintf(what, sizeof(what), "VM entry failed, reason 0x%llx",
                     (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
            vcpu_fail(v, what);
            return NULL;
        case KVM_EXIT_INTR:
            break;
        default:
            snprintf(what, sizeof(what), "unexpected KVM exit %u", run->exit_reason);
            vcpu_fail(v, what);
            return NULL;
        }
    }
    return NULL;
}

int vmm_vcpus_create(struct vmm_vcpus *s, const struct vmm_machine *m, const struct vmm_boot *boot)
{
    int mmap_size = ioctl(m->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (mmap_size < (int)sizeof(struct kvm_run)) {
        vmm_log("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
        return -1;
    }
    struct kvm_cpuid2 *sup = supported_cpuid(m->kvm_fd);
    if (!sup)
        return -1;
    int r = 0;
    for (unsigned i = 0; i < s->n && r == 0; i++) {
        s->v[i].fd = -1;
        r = vcpu_create(&s->v[i], i, m->vm_fd, sup, mmap_size, boot);
    }
    free(sup);
    return r;
}

void vmm_vcpus_stop(struct vmm_vcpus *s)
{
    atomic_store(&s->ctl->stopping, 1);
    for (unsigned i = 0; i < s->n; i++) {
        struct vmm_vcpu *v = &s->v[i];
        if (!v->started)
            continue;
        v->run->immediate_exit = 1;
        pthread_kill(v->thread, SIGUSR2);
    }
    for (unsigned i = 0; i < s->n; i++) {
        struct vmm_vcpu *v = &s->v[i];
        if (!v->started)
            continue;
        pthread_join(v->thread, NULL);
        v->started = 0;
    }
}

void vmm_vcpus_kick_signal(void)
{
    struct sigaction sa = { .sa_handler = kick_handler };
    sigaction(SIGUSR2, &sa, NULL);
}

void vmm_vcpus_start(struct vmm_vcpus *s)
{
    for (unsigned i = 0; i < s->n; i++) {
        int e = pthread_create(&s->v[i].thread, NULL, vcpu_thread, &s->v[i]);
        if (e) {
            vmm_log("pthread_create: %s", strerror(e));
            vmm_request_stop(s->ctl, 1);
            break;
        }
        s->v[i].started = 1;
    }
}

void vmm_vcpus_destroy(struct vmm_vcpus *s)
{
    for (unsigned i = 0; i < s->n; i++) {
        struct vmm_vcpu *v = &s->v[i];
        if (v->run)
            munmap(v->run, v->run_size);
        if (v->fd >= 0)
            close(v->fd);
        v->run = NULL;
        v->fd = -1;
    }
}
