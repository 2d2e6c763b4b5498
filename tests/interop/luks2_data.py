#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# tests/interop/luks2_data.py: the data area of a LUKS2 image, encrypted or
# decrypted with its master key (from cryptsetup luksDump --dump-volume-key)
# by python3-cryptography, without device-mapper: an independent check of
# vdisk's reads and writes (tests/interop/interop_luks2.c).
#
#   luks2_data.py enc IMG KEYHEX CIPHER SECTOR_SIZE OFFSET IN    IN's bytes
#       encrypted into IMG at OFFSET (the data segment's), sector 0 first
#   luks2_data.py dec IMG KEYHEX CIPHER SECTOR_SIZE OFFSET LEN OUT
#       LEN bytes of IMG from OFFSET decrypted into OUT
#   luks2_data.py meta IMG WHICH STMT
#       the header copies WHICH (both, primary, secondary) edited: the
#       Python statement STMT runs with j (the JSON metadata, a dict), hdr
#       (the copy's bytes, a bytearray) and text (None); the JSON area then
#       holds text (str or bytes, cut to the area) if STMT set it, else j
#       dumped, zero-padded; the checksum is made anew (hostile headers
#       that only a wrong field spoils)
#   luks2_data.py csum IMG OFF      the checksum of the copy at OFF (hex)
# CIPHER: aes-xts-plain64 or aes-cbc-essiv:sha256.  The IV of a sector is
# the number of its first 512-byte sector (cryptsetup sets no
# large IV sectors for LUKS2), little-endian.
import hashlib
import json
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def crypt(key, cipher, sector, data, enc):
    if cipher == "aes-xts-plain64":
        c = Cipher(algorithms.AES(key), modes.XTS(sector.to_bytes(16, "little")))
    elif cipher == "aes-cbc-essiv:sha256":
        salt = hashlib.sha256(key).digest()
        e = Cipher(algorithms.AES(salt), modes.ECB()).encryptor()
        iv = e.update(sector.to_bytes(16, "little")) + e.finalize()
        c = Cipher(algorithms.AES(key), modes.CBC(iv))
    else:
        sys.exit("unknown cipher " + cipher)
    x = c.encryptor() if enc else c.decryptor()
    return x.update(data) + x.finalize()


def hdr_size(f):
    f.seek(8)
    return int.from_bytes(f.read(8), "big")


def meta(img, which, stmt):
    with open(img, "r+b") as f:
        hs = hdr_size(f)
        offs = {"both": [0, hs], "primary": [0], "secondary": [hs]}[which]
        for off in offs:
            f.seek(off)
            hdr = bytearray(f.read(hs))
            env = {"j": json.loads(hdr[4096:].split(b"\0", 1)[0]), "hdr": hdr, "text": None}
            exec(stmt, env)
            t = env["text"]
            if t is None:
                t = json.dumps(env["j"])
            if isinstance(t, str):
                t = t.encode()
            hdr[4096:] = t[:hs - 4096].ljust(hs - 4096, b"\0")
            hdr[448:512] = bytes(64)
            hdr[448:480] = hashlib.sha256(hdr).digest()
            f.seek(off)
            f.write(hdr)


def main():
    if sys.argv[1] == "meta":
        meta(sys.argv[2], sys.argv[3], sys.argv[4])
        return
    if sys.argv[1] == "csum":
        with open(sys.argv[2], "rb") as f:
            f.seek(int(sys.argv[3]) + 448)
            print(f.read(32).hex())
        return
    op, img, keyhex, cipher, ss, off = sys.argv[1:7]
    key, ss, off = bytes.fromhex(keyhex), int(ss), int(off)
    if op == "enc":
        data = open(sys.argv[7], "rb").read()
        assert len(data) % ss == 0
        out = b"".join(crypt(key, cipher, i // 512, data[i:i + ss], True)
                       for i in range(0, len(data), ss))
        with open(img, "r+b") as f:
            f.seek(off)
            f.write(out)
    elif op == "dec":
        n = int(sys.argv[7])
        with open(img, "rb") as f:
            f.seek(off)
            data = f.read(n)
        out = b"".join(crypt(key, cipher, i // 512, data[i:i + ss], False)
                       for i in range(0, len(data), ss))
        open(sys.argv[8], "wb").write(out)
    else:
        sys.exit("unknown op " + op)


main()
