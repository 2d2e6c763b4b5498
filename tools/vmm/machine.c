/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: the machine: KVM (the VM with its in-kernel interrupt
 * controllers and PIT) and the guest's RAM (doc/vmm.md's memory map).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>

#include <vdisk/error.h>
#include <vdisk/virtio.h>

#include "vmm.h"

void *vmm_gpa(const struct vmm_mem *m, uint64_t gpa, uint64_t len)
{
    if (gpa < m->low_size && len <= m->low_size - gpa)
        return m->low + gpa;
    if (m->high_size && gpa >= VMM_HIGH_MEM_START) {
        uint64_t off = gpa - VMM_HIGH_MEM_START;
        if (off < m->high_size && len <= m->high_size - off)
            return m->high + off;
    }
    return NULL;
}

int vmm_machine_open(struct vmm_machine *m)
{
    m->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (m->kvm_fd < 0) {
        vmm_log("/dev/kvm: %s (KVM is needed)", strerror(errno));
        return -1;
    }
    int v = ioctl(m->kvm_fd, KVM_GET_API_VERSION, 0);
    if (v != KVM_API_VERSION) {
        vmm_log("/dev/kvm: API version %d, %d is needed", v, KVM_API_VERSION);
        return -1;
    }
    static const struct { int cap; const char *name; } need[] = {
        { KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
        { KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
        { KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
        { KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
        { KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
    };
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        if (ioctl(m->kvm_fd, KVM_CHECK_EXTENSION, need[i].cap) <= 0) {
            vmm_log("/dev/kvm: %s is missing", need[i].name);
            return -1;
        }
    }
    m->vm_fd = ioctl(m->kvm_fd, KVM_CREATE_VM, 0);
    if (m->vm_fd < 0) {
        vmm_log("KVM_CREATE_VM: %s", strerror(errno));
        return -1;
    }
    if (ioctl(m->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)VMM_TSS_ADDR) < 0) {
        vmm_log("KVM_SET_TSS_ADDR: %s", strerror(errno));
        return -1;
    }
    uint64_t idmap = VMM_IDENTITY_ADDR;
    if (ioctl(m->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0 &&
        ioctl(m->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0) {
        vmm_log("KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
        return -1;
    }
    if (ioctl(m->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        vmm_log("KVM_CREATE_IRQCHIP: %s", strerror(errno));
        return -1;
    }
    struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
    if (ioctl(m->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
        vmm_log("KVM_CREATE_PIT2: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int vmm_machine_mem(struct vmm_machine *machine, uint64_t size)
{
    struct vmm_mem *m = &machine->mem;
    m->size = size;
    m->low_size = size < VMM_LOW_MEM_MAX ? size : VMM_LOW_MEM_MAX;
    m->high_size = size - m->low_size;
    struct vdisk_guest_region regions[2];
    unsigned nregions = 0;
    for (unsigned slot = 0; slot < 2; slot++) {
        uint64_t len = slot ? m->high_size : m->low_size;
        uint64_t gpa = slot ? VMM_HIGH_MEM_START : 0;
        if (!len)
            continue;
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            vmm_log("guest RAM: mmap of %" PRIu64 " bytes: %s", len, strerror(errno));
            return -1;
        }
        if (slot)
            m->high = p;
        else
            m->low = p;
        struct kvm_userspace_memory_region r = {
            .slot = slot, .guest_phys_addr = gpa, .memory_size = len,
            .userspace_addr = (uintptr_t)p,
        };
        if (ioctl(machine->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
            vmm_log("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
            return -1;
        }
        regions[nregions++] = (struct vdisk_guest_region){ .gpa = gpa, .size = len, .host = p };
    }
    int r = vdisk_guest_mem_new(&m->gmem, regions, nregions);
    if (r < 0) {
        vmm_log("guest memory map: %s", vdisk_get_error());
        return -1;
    }
    return 0;
}

void vmm_machine_mem_free(struct vmm_machine *machine)
{
    struct vmm_mem *m = &machine->mem;
    vdisk_guest_mem_free(m->gmem);
    if (m->low)
        munmap(m->low, m->low_size);
    if (m->high)
        munmap(m->high, m->high_size);
    memset(m, 0, sizeof(*m));
}

void vmm_machine_close(struct vmm_machine *m)
{
    if (m->vm_fd >= 0)
        close(m->vm_fd);
    if (m->kvm_fd >= 0)
        close(m->kvm_fd);
    m->vm_fd = m->kvm_fd = -1;
}
