#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# fuzz/luks2_seeds.py OUTDIR: seeds for fuzz/luks2.c: LUKS2 headers made by
# cryptsetup luksFormat --type luks2 on a file (fast KDF settings: the
# harness runs none), the first 16 KiB (the primary header of the default
# size, its checksum right as cryptsetup wrote it), after the flag byte 3
# (the harness makes the checksums anew).
import os
import subprocess
import sys
import tempfile

CASES = {
    "argon2id-xts": ["--pbkdf", "argon2id", "--pbkdf-memory", "32768",
                     "--pbkdf-force-iterations", "4"],
    "argon2i-512": ["--pbkdf", "argon2i", "--pbkdf-memory", "32768",
                    "--pbkdf-force-iterations", "4", "--sector-size", "512"],
    "pbkdf2-cbc-essiv": ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
                         "--cipher", "aes-cbc-essiv:sha256", "--key-size", "256"],
    "pbkdf2-label": ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
                     "--label", "disk", "--subsystem", "sub", "--key-size", "256"],
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        img = os.path.join(d, "f.img")
        for name, args in CASES.items():
            with open(img, "wb") as f:
                f.truncate(20 << 20)
            subprocess.run(["cryptsetup", "luksFormat", "--type", "luks2", "-q",
                            "--key-file", "-"] + args + [img], input=b"fuzz", check=True)
            if name == "pbkdf2-label":
                key2 = os.path.join(d, "key2")
                with open(key2, "wb") as f:
                    f.write(b"fuzz2")
                subprocess.run(["cryptsetup", "luksAddKey", "-q", "--key-file", "-",
                                "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
                                img, key2], input=b"fuzz", check=True)
            with open(img, "rb") as f:
                head = f.read(16 << 10)
            with open(os.path.join(out, name), "wb") as f:
                f.write(b"\x03" + head)


main()
