#!/usr/bin/env bash
# Installs everything vdisk needs to build and test on Debian 12 (as root).
# Safe to run again: apt-get skips what is already installed.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config clang
  # libraries
  liburing-dev libzstd-dev zlib1g-dev libnbd-dev libgnutls28-dev check
  # libbz2: the bzip2 chunks of DMG images (optional at build time)
  libbz2-dev
  # libdeflate: VMDK grains deflated several times faster than zlib (optional)
  libdeflate-dev
  # the tools the interop tests and benchmarks compare against
  qemu-utils fio fdisk gdisk parted
  # nettle: ciphers and hashes of encrypted images (lib/crypto.c); cryptsetup
  # reads vdisk's LUKS headers in tests/interop/interop_luks.c
  nettle-dev cryptsetup-bin
  # libargon2: the Argon2 keyslot KDF of LUKS2 images (lib/crypto.c);
  # python3-cryptography decrypts their data in tests/interop/interop_luks2.c
  libargon2-dev python3-cryptography
  # bunzip2: QEMU's sample images (tests/interop/sample_images.c) are bzip2'd
  bzip2
  # an independent VHD and VHDX reader (vhdiinfo, vhdimount: tests/interop/)
  libvhdi-utils fuse3
  # an independent VMDK reader (vmdkinfo, vmdkmount: tests/interop/interop_vmdk.c)
  libvmdk-utils
  # an independent DMG reader (dmg2img: tests/interop/interop_dmg.c)
  dmg2img
  # NBD: the NBD server's test clients (nbdinfo, nbdcopy: tests/nbd/) and
  # the nbd protocol's test servers (nbdkit: tests/nbd_client/)
  libnbd-bin nbdkit
  # TLS for NBD: certtool and psktool make the tests' certificates and keys
  gnutls-bin
  # ip netns: the network namespaces of the NBD scale test (tests/nbd/)
  iproute2
  # GNU time: the peak RSS of vdisk-vmm under a flooding guest (tests/vmm/)
  time
  xorriso genisoimage libarchive-tools p7zip-full
  # ISO Rock Ridge tests (tests/iso/iso_rockridge.c): devices and owners in
  # the tree when not run as root
  fakeroot
  # the real-Linux-guest tests (tests/linux/): QEMU to boot the guest,
  # qemu-storage-daemon (in qemu-system-common) to compare against, and what
  # the initramfs is built from (busybox-static, cpio, modinfo from kmod)
  qemu-system-x86 qemu-system-common busybox-static cpio kmod
  # RBD (issue 19): librbd to build the rbd driver against; the monitor, the
  # OSD and the ceph and rbd commands for the tests' throw-away cluster
  # (tests/ceph/); qemu-img's rbd: driver to compare against
  librbd-dev ceph-mon ceph-osd ceph-common qemu-block-extra
)

if [ "$(id -u)" != 0 ]; then
  echo "install-deps.sh: run as root (apt-get install)" >&2
  exit 1
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The guest's kernel, Debian's linux-image-cloud-amd64, unpacked into a cache
# directory (not installed): see scripts/fetch-guest-kernel.sh.
bash "$(dirname "$0")/fetch-guest-kernel.sh"

# QEMU's sample images (tests/qemu-iotests/sample_images) from Debian's qemu
# source package, for tests/interop/sample_images.c: see
# scripts/fetch-qemu-samples.sh (the host's apt sources are not changed).
bash "$(dirname "$0")/fetch-qemu-samples.sh"

# QEMU's own iotests (tests/qemu-iotests, Debian's patches applied) from the
# same source package, for the iotests-vdisk test: see tests/iotests/fetch.sh.
bash "$(dirname "$0")/../tests/iotests/fetch.sh"
