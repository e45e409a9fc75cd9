"""Zip files encrypted with traditional PKWARE encryption ("ZipCrypto"), the
way malware analysts share samples (password ``infected``): weak as a
cipher, which is not its point; it keeps a sample from being opened or
scanned by accident, and ``unzip -P``, 7-Zip and Python's zipfile read it.

The format is APPNOTE.TXT's: sections 4.3 (structure) and 6.1 (encryption).
"""

import secrets
import struct
import time
import zlib

# The CRC-32 table (APPNOTE 6.1.2 updates keys with it one byte at a time).
_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0xEDB88320 if _c & 1 else _c >> 1
    _TABLE.append(_c)


class _Keys:
    """The cipher's three keys, set from the password (APPNOTE 6.1.5)."""

    def __init__(self, password):
        self.k0, self.k1, self.k2 = 0x12345678, 0x23456789, 0x34567890
        for byte in password:
            self._update(byte)

    def _update(self, byte):
        self.k0 = _TABLE[(self.k0 ^ byte) & 0xFF] ^ (self.k0 >> 8)
        self.k1 = ((self.k1 + (self.k0 & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        self.k2 = _TABLE[(self.k2 ^ (self.k1 >> 24)) & 0xFF] ^ (self.k2 >> 8)

    def encrypt(self, data):
        """*data* encrypted, the keys moved on past it (one tight loop: this
        runs over every byte of a sample)."""
        table = _TABLE
        k0, k1, k2 = self.k0, self.k1, self.k2
        out = bytearray(len(data))
        for i, byte in enumerate(data):
            t = (k2 | 2) & 0xFFFF
            out[i] = byte ^ (((t * (t ^ 1)) >> 8) & 0xFF)
            k0 = table[(k0 ^ byte) & 0xFF] ^ (k0 >> 8)
            k1 = ((k1 + (k0 & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
            k2 = table[(k2 ^ (k1 >> 24)) & 0xFF] ^ (k2 >> 8)
        self.k0, self.k1, self.k2 = k0, k1, k2
        return bytes(out)


def _dos_time(seconds):
    t = time.gmtime(seconds)
    return ((t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2),
            ((max(t.tm_year, 1980) - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday)


def encrypted_zip(files, password=b"infected", now=None):
    """A zip archive holding *files* ([(name, bytes)]; names are ASCII or
    UTF-8, flagged as such), each deflated and then encrypted with *password*."""
    archive = EncryptedZip(password, now)
    return b"".join([*(archive.member(name, data) for name, data in files), archive.end()])


class EncryptedZip:
    """An encrypted zip archive written member by member, for archives of
    any size: :meth:`member` gives the bytes of one file, :meth:`end` the
    central directory that ends the archive (kept until then: about 100
    bytes a member).  Past 65,535 members or 4 GiB it is a Zip64 archive
    (APPNOTE 4.3.14, 4.5.3)."""

    def __init__(self, password=b"infected", now=None):
        self._password = password
        self._time = _dos_time(time.time() if now is None else now)
        self._offset = 0
        self._count = 0
        self._directory = []

    def member(self, name, data):
        """The local header and encrypted data of the file *name* holding *data*."""
        raw_name = name.encode("utf-8")
        crc = zlib.crc32(data)
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        compressed = compressor.compress(data) + compressor.flush()
        keys = _Keys(self._password)
        # 11 random bytes and the CRC's high byte, which lets a reader tell
        # a wrong password (APPNOTE 6.1.6).
        header = secrets.token_bytes(11) + bytes([crc >> 24])
        payload = keys.encrypt(header) + keys.encrypt(compressed)
        flags = 0x0001 | 0x0800  # encrypted; UTF-8 name
        dos_time, dos_date = self._time
        fields = struct.pack("<HHHHIII", flags, 8, dos_time, dos_date, crc,
                             len(payload), len(data))
        extra = b""
        offset = self._offset
        if offset >= _MAX32:
            extra, offset = struct.pack("<HHQ", 1, 8, self._offset), _MAX32
        self._directory.append(
            b"PK\x01\x02" + struct.pack("<HH", 45, 45 if extra else 20) + fields
            + struct.pack("<HHHHHII", len(raw_name), len(extra), 0, 0, 0, 0, offset)
            + raw_name + extra)
        local = (b"PK\x03\x04" + struct.pack("<H", 20) + fields
                 + struct.pack("<HH", len(raw_name), 0) + raw_name + payload)
        self._offset += len(local)
        self._count += 1
        return local

    def end(self):
        """The central directory and its end record."""
        directory = b"".join(self._directory)
        self._directory = []
        start, size, count = self._offset, len(directory), self._count
        tail = b""
        if count >= 0xFFFF or start >= _MAX32 or size >= _MAX32:
            end64 = start + size
            tail = (b"PK\x06\x06" + struct.pack("<QHHIIQQQQ", 44, 45, 45, 0, 0, count, count,
                                                 size, start)
                    + b"PK\x06\x07" + struct.pack("<IQI", 0, end64, 1))
            count, size, start = min(count, 0xFFFF), min(size, _MAX32), min(start, _MAX32)
        return directory + tail + b"PK\x05\x06" + struct.pack(
            "<HHHHIIH", 0, 0, count, count, size, start, 0)


_MAX32 = 0xFFFFFFFF
