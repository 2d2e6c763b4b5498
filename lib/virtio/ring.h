/* SPDX-License-Identifier: MIT */
/*
 * lib/virtio/ring.h: the split virtqueue's flags (virtio 1.x, section 2.7)
 * and the feature bits of the ring and the transport (section 6), defined
 * once for both sides of a ring: the device models (lib/virtio/), the
 * bundled test guest's driver (tests/guest/) and the vhost-user test front
 * end (tests/vhost/).  #defines only: the guest is built freestanding
 * (-m32 -ffreestanding), with no libc headers.  The feature bits are public
 * too, as VDISK_VIRTIO_F_* in vdisk/virtio.h; lib/virtio/device.c checks
 * that the two agree.
 */
#ifndef VDISK_VIRTIO_RING_H
#define VDISK_VIRTIO_RING_H

/* struct vring_desc's flags */
#define VRING_DESC_F_NEXT     1  /* the chain goes on at .next */
#define VRING_DESC_F_WRITE    2  /* the device writes the buffer */
#define VRING_DESC_F_INDIRECT 4  /* the buffer is a table of descriptors */

/* The available ring's flags (the driver's), and the used ring's (the
 * device's); both ignored once VIRTIO_F_RING_EVENT_IDX is negotiated. */
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY     1

/* Feature bit numbers */
#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_F_RING_EVENT_IDX     29
#define VIRTIO_F_VERSION_1          32

#endif /* VDISK_VIRTIO_RING_H */
