#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# fuzz/luks_seeds.py VDISK OUTDIR: seeds for fuzz/luks.c: raw LUKS images
# made by vdisk (passphrase "fuzz", iter-time=1 so that PBKDF2 stays under
# the harness's bound), a few sectors written, packed as the harness takes
# them: records of a big-endian u32 offset, u16 length and the bytes of
# each run of non-zero 512-byte blocks.  The key material (64000 bytes for
# a 16-byte key) is most of each seed, so the seeds use 128-bit keys where
# the mode allows.
import os
import subprocess
import sys
import tempfile

SECTOR = 512
CASES = {
    "aes128-cbc-essiv": "cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=sha256",
    "aes128-ecb": "cipher-alg=aes-128,cipher-mode=ecb,hash-alg=sha1",
    "cast5-cbc-plain": "cipher-alg=cast5-128,cipher-mode=cbc,ivgen-alg=plain",
    "twofish128-ctr": "cipher-alg=twofish-128,cipher-mode=ctr,hash-alg=sha512",
    "aes128-xts": "cipher-alg=aes-128,cipher-mode=xts",
}


def pack(img):
    out = bytearray()
    n = len(img) // SECTOR
    i = 0
    while i < n:
        if not any(img[i * SECTOR:(i + 1) * SECTOR]):
            i += 1
            continue
        j = i
        while j < n and any(img[j * SECTOR:(j + 1) * SECTOR]) and (j - i + 1) * SECTOR <= 65024:
            j += 1
        chunk = img[i * SECTOR:j * SECTOR]
        out += (i * SECTOR).to_bytes(4, "big") + len(chunk).to_bytes(2, "big") + chunk
        i = j
    # The image's length: a last record of nothing at its end.
    out += len(img).to_bytes(4, "big") + (0).to_bytes(2, "big")
    return bytes(out)


def main():
    vdisk, outdir = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, opts in CASES.items():
            img = os.path.join(tmp, name + ".luks")
            subprocess.run([vdisk, "create", "-q", "-f", "luks", "--object",
                            "secret,id=k,data=fuzz", "-o",
                            "key-secret=k,iter-time=1," + opts, img, "64k"], check=True)
            subprocess.run([vdisk, "io", "--object", "secret,id=k,data=fuzz", "--image-opts",
                            "driver=luks,file.filename=%s,key-secret=k" % img,
                            "-c", "write -P 0x5a 0 1k", "-c", "write -P 0xa5 32k 512"],
                           check=True, stdout=subprocess.DEVNULL)
            with open(img, "rb") as f:
                data = f.read()
            with open(os.path.join(outdir, name), "wb") as f:
                f.write(pack(data))


main()
