/* SPDX-License-Identifier: MIT */
/*
 * lib/virtio/mmio_regs.h: the virtio-mmio register offsets (virtio 1.x,
 * section 4.2.2) and the device status bits (section 2.1), for both sides
 * of the transport: vdisk-vmm's device (tools/vmm/mmio.c) and the bundled
 * test guest's driver (tests/guest/virtio.c).  #defines only: the guest is
 * built freestanding (-m32 -ffreestanding), with no libc headers.
 */
#ifndef VDISK_VIRTIO_MMIO_REGS_H
#define VDISK_VIRTIO_MMIO_REGS_H

/* Register offsets */
#define VIRTIO_MMIO_MAGIC  0x74726976u  /* "virt", the MagicValue register */

#define R_MAGIC            0x000
#define R_VERSION          0x004
#define R_DEVICE_ID        0x008
#define R_VENDOR_ID        0x00c
#define R_DEV_FEATURES     0x010
#define R_DEV_FEATURES_SEL 0x014
#define R_DRV_FEATURES     0x020
#define R_DRV_FEATURES_SEL 0x024
#define R_QUEUE_SEL        0x030
#define R_QUEUE_NUM_MAX    0x034
#define R_QUEUE_NUM        0x038
#define R_QUEUE_READY      0x044
#define R_QUEUE_NOTIFY     0x050
#define R_INT_STATUS       0x060
#define R_INT_ACK          0x064
#define R_STATUS           0x070
#define R_QUEUE_DESC_LO    0x080
#define R_QUEUE_DESC_HI    0x084
#define R_QUEUE_DRIVER_LO  0x090
#define R_QUEUE_DRIVER_HI  0x094
#define R_QUEUE_DEVICE_LO  0x0a0
#define R_QUEUE_DEVICE_HI  0x0a4
#define R_SHM_SEL          0x0ac
#define R_SHM_LEN_LO       0x0b0
#define R_SHM_LEN_HI       0x0b4
#define R_SHM_BASE_LO      0x0b8
#define R_SHM_BASE_HI      0x0bc
#define R_QUEUE_RESET      0x0c0
#define R_CONFIG_GEN       0x0fc
#define R_CONFIG           0x100

/* Device status bits (the Status register) */
#define S_ACKNOWLEDGE        1u
#define S_DRIVER             2u
#define S_DRIVER_OK          4u
#define S_FEATURES_OK        8u
#define S_DEVICE_NEEDS_RESET 0x40u
#define S_FAILED             0x80u

#endif /* VDISK_VIRTIO_MMIO_REGS_H */
