# cython: language_level=3
"""The command log's hot path: framing records in a buffer, and a thread
that fdatasyncs without the GIL.

How it fits: server/commandlog.py owns the log (segments, rotation, modes,
failures, reading back). For every transaction that writes, a partition
appends one record; in Python that cost about a microsecond (build a list,
msgpack it, CRC it, frame it, keep a bytes object per record), which on a
saturated server is throughput. Here:

``RecordBuffer``
    Records framed back to back in one growing C buffer, exactly as they
    lie in a segment (command log format version 2, server/commandlog.py):
    ``u32 payload length, u32 CRC32C of the payload, payload`` (little-
    endian), the payload one msgpack array. ``append_call`` encodes a CALL
    record's payload itself, for the values a call's parameters are made
    of (nil, bool, int in -2**63..2**64-1, float, str, bin, array, map),
    and returns False, leaving the buffer as it was, for anything else
    (Decimal, datetime, ...): the caller then packs the payload with
    flowstate.protocol and appends it with ``append_payload``. Its
    encodings are the smallest msgpack allows, as msgpack-python's; any
    msgpack reader decodes them to the same values. The buffer keeps each
    record's end, so the log can split a group at a segment boundary, and
    writes ranges of records with pwrite without making Python objects.

``write_back(fd, offset, length)``, ``write_zeros(fd, start, end, piece)``
    sync_file_range: write a range's dirty pages to the device and wait,
    without the GIL; and zero-filling a file that way, piece by piece, all
    in C (a new command log segment, server/commandlog.py). Large files
    are written out as they are written so that the command log's own
    fsyncs never queue behind one flush of tens of MB (server/files.py).

``Syncer``
    One thread that, on request, fdatasyncs a file descriptor and reports
    on a pipe the event loop watches. It runs entirely without the GIL: a
    Python writer thread has to take the GIL back after every system call,
    and on a busy loop those handoffs cost the loop thread more CPU than
    the fdatasync itself (measured in process, one Voter partition at
    about 200k calls/s: 0.5 us per call with a Python writer thread that
    did no I/O at all, against none with this one).

Invariants:
1. ``RecordBuffer`` holds whole records only: a failed ``append_call``
   leaves no bytes behind.
2. One fdatasync request is in flight at a time (the caller's rule; the
   request pipe would queue a second one after the first).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.sequence cimport PySequence_Fast_GET_ITEM, PySequence_Fast_GET_SIZE
from libc.errno cimport EINTR, EINVAL, ENOSYS, EOPNOTSUPP, ESPIPE, errno
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memmove
from libcpp.vector cimport vector
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from posix.unistd cimport close, fdatasync, pwrite, read, write

cdef extern from "crc32c_support.h":
    void fs_crc32c_init()
    uint32_t fs_crc32c(uint32_t crc, const void* data, size_t n) nogil

cdef extern from *:
    uint64_t __builtin_bswap64(uint64_t value) nogil

cdef extern from "<fcntl.h>" nogil:
    int sync_file_range(int fd, int64_t offset, int64_t nbytes, unsigned int flags)
    unsigned int SYNC_FILE_RANGE_WAIT_BEFORE
    unsigned int SYNC_FILE_RANGE_WRITE
    unsigned int SYNC_FILE_RANGE_WAIT_AFTER

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL
    long long PyLong_AsLongLongAndOverflow(object value, int* overflow) except? -1
    unsigned long long PyLong_AsUnsignedLongLong(object value) except? -1

fs_crc32c_init()

import sys as _sys
if _sys.byteorder != "little":        # _head's byte swap, and the record headers
    raise ImportError("flowstate.native.logwriter needs a little-endian machine")

__all__ = ["RecordBuffer", "Syncer", "crc32c", "write_back", "write_zeros"]

DEF EIO_FALLBACK = 5        # EIO, for a write that makes no progress
DEF MAX_DEPTH = 64          # deeper values go the Python way (and its limits)
DEF CALL_KIND = 1


def write_back(int fd, int64_t offset, int64_t length) -> None:
    """Write the dirty pages of ``length`` bytes at ``offset`` to the
    device and wait until they are written (sync_file_range with
    WAIT_BEFORE, WRITE and WAIT_AFTER). Not durability: no device cache
    flush and no metadata, an fsync still has to follow. OSError on
    failure."""
    cdef int result
    with nogil:
        result = sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WAIT_BEFORE
                                 | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER)
    if result != 0:
        import os
        raise OSError(errno, os.strerror(errno))


def write_zeros(int fd, int64_t start, int64_t end, int64_t piece) -> None:
    """Write zeros over bytes ``start`` to ``end`` of ``fd``, ``piece``
    bytes at a time, each piece written out to the device (as
    ``write_back``) before the next one, all without the GIL: a thread
    filling a segment this way never contends for the GIL with the loop,
    as one making a system call per piece in Python would. Where the file
    system does not do sync_file_range, the pieces are only written (the
    caller's fsync then writes them out). Not durable: fsync after.
    OSError on failure."""
    if piece <= 0 or start < 0 or end < start:
        raise ValueError("write_zeros needs 0 <= start <= end and a positive piece")
    cdef char* zeros = <char*>calloc(<size_t>piece, 1)
    if zeros == NULL:
        raise MemoryError()
    cdef int64_t offset = start
    cdef int64_t length
    cdef ssize_t written
    cdef int failed = 0
    cdef bint writing_out = True
    with nogil:
        while offset < end:
            length = piece if end - offset > piece else end - offset
            written = pwrite(fd, zeros, <size_t>length, offset)
            if written < 0:
                if errno == EINTR:
                    continue
                failed = errno
                break
            if written == 0:
                failed = EIO_FALLBACK
                break
            if writing_out and sync_file_range(fd, offset, written, SYNC_FILE_RANGE_WAIT_BEFORE
                                               | SYNC_FILE_RANGE_WRITE
                                               | SYNC_FILE_RANGE_WAIT_AFTER) != 0:
                if errno in (EINVAL, ENOSYS, EOPNOTSUPP, ESPIPE):
                    writing_out = False
                else:
                    failed = errno
                    break
            offset += written
    free(zeros)
    if failed:
        import os
        raise OSError(failed, os.strerror(failed))


def crc32c(data, uint32_t value=0) -> int:
    """CRC32C of ``data`` (bytes-like), continuing from ``value``: the same
    function as crc32c.crc32c, here for tests of the native one."""
    cdef const uint8_t[:] view = data
    if view.shape[0] == 0:
        return value
    return fs_crc32c(value, &view[0], view.shape[0])


cdef class RecordBuffer:
    """Framed command log records, back to back (see the module doc)."""

    cdef char* data
    cdef size_t size
    cdef size_t capacity
    cdef vector[size_t] ends          # each record's end offset in data

    def __cinit__(self):
        self.capacity = 1 << 16
        self.data = <char*>malloc(self.capacity)
        if self.data == NULL:
            raise MemoryError()
        self.size = 0

    def __dealloc__(self):
        free(self.data)

    def __len__(self):
        return self.ends.size()

    @property
    def nbytes(self) -> int:
        return self.size

    # -- encoding ---------------------------------------------------------

    cdef int _reserve(self, size_t extra) except -1:
        cdef size_t want = self.size + extra
        cdef size_t capacity = self.capacity
        cdef char* grown
        if want <= capacity:
            return 0
        while capacity < want:
            capacity *= 2
        grown = <char*>realloc(self.data, capacity)
        if grown == NULL:
            raise MemoryError()
        self.data = grown
        self.capacity = capacity
        return 0

    cdef inline int _byte(self, uint8_t b) except -1:
        if self.size + 1 > self.capacity:
            self._reserve(1)
        self.data[self.size] = <char>b
        self.size += 1
        return 0

    cdef inline int _head(self, uint8_t marker, uint64_t value, int width) except -1:
        """A marker byte then ``value`` big-endian in ``width`` bytes (1, 2,
        4 or 8)."""
        cdef uint64_t big
        if self.size + 9 > self.capacity:
            self._reserve(9)
        self.data[self.size] = <char>marker
        # the low ``width`` bytes, big-endian: byte-swap all 8 (this host is
        # little-endian, as the native code assumes throughout), keep the tail
        big = __builtin_bswap64(value)
        memcpy(self.data + self.size + 1, (<char*>&big) + 8 - width, width)
        self.size += 1 + width
        return 0

    cdef inline int _raw(self, const char* p, size_t n) except -1:
        if self.size + n > self.capacity:
            self._reserve(n)
        memcpy(self.data + self.size, p, n)
        self.size += n
        return 0

    cdef int _length(self, size_t n, uint8_t fix, size_t fix_limit, uint8_t m8, uint8_t m16,
                     uint8_t m32) except -1:
        """A length header: fix|n when n < fix_limit, else the 8/16/32-bit
        form (m8 == 0: the type has none)."""
        if n < fix_limit:
            return self._byte(fix | <uint8_t>n)
        if m8 and n < 256:
            return self._head(m8, n, 1)
        if n < 65536:
            return self._head(m16, n, 2)
        return self._head(m32, n, 4)

    cdef int _unsigned(self, uint64_t v) except -1:
        if v < 128:
            self._byte(<uint8_t>v)
        elif v < 256:
            self._head(0xcc, v, 1)
        elif v < 65536:
            self._head(0xcd, v, 2)
        elif v <= 0xffffffffu:         # (a C constant: a bare 4294967296 is a Python int)
            self._head(0xce, v, 4)
        else:
            self._head(0xcf, v, 8)
        return 1

    cdef int _signed(self, int64_t v) except -1:
        if v >= 0:
            return self._unsigned(<uint64_t>v)
        if v >= -32:
            self._byte(<uint8_t>(v & 0xff))
        elif v >= -128:
            self._head(0xd0, <uint64_t>v, 1)
        elif v >= -32768:
            self._head(0xd1, <uint64_t>v, 2)
        elif v >= -2147483648:
            self._head(0xd2, <uint64_t>v, 4)
        else:
            self._head(0xd3, <uint64_t>v, 8)
        return 1

    cdef int _int(self, value) except -1:
        """1: encoded; 0: out of msgpack's range (left to the caller)."""
        cdef int overflow = 0
        cdef long long v = PyLong_AsLongLongAndOverflow(value, &overflow)
        cdef unsigned long long u
        if overflow > 0:
            try:
                u = PyLong_AsUnsignedLongLong(value)
            except OverflowError:
                return 0
            return self._unsigned(u)
        if overflow < 0:
            return 0
        return self._signed(v)

    cdef int _value(self, value, int depth) except -1:
        """Encode ``value``: 1 done, 0 a type (or depth) this encoder
        leaves to msgpack-python."""
        cdef type kind = type(value)
        cdef Py_ssize_t n, i
        cdef const char* text
        cdef double d
        cdef uint64_t bits
        if value is None:
            self._byte(0xc0)
            return 1
        if kind is int:
            return self._int(value)
        if kind is str:
            text = PyUnicode_AsUTF8AndSize(value, &n)
            self._length(n, 0xa0, 32, 0xd9, 0xda, 0xdb)
            self._raw(text, n)
            return 1
        if kind is bool:
            self._byte(0xc3 if value else 0xc2)
            return 1
        if kind is float:
            d = PyFloat_AS_DOUBLE(value)
            memcpy(&bits, &d, 8)
            self._head(0xcb, bits, 8)
            return 1
        if depth >= MAX_DEPTH:
            return 0
        if kind is list or kind is tuple:
            n = PySequence_Fast_GET_SIZE(value)
            self._length(n, 0x90, 16, 0, 0xdc, 0xdd)
            for i in range(n):
                if not self._value(<object>PySequence_Fast_GET_ITEM(value, i), depth + 1):
                    return 0
            return 1
        if kind is bytes:
            n = PyBytes_GET_SIZE(value)
            self._length(n, 0, 0, 0xc4, 0xc5, 0xc6)
            self._raw(PyBytes_AS_STRING(value), n)
            return 1
        if kind is dict:
            self._length(len(value), 0x80, 16, 0, 0xde, 0xdf)
            for key, item in (<dict>value).items():
                if not self._value(key, depth + 1) or not self._value(item, depth + 1):
                    return 0
            return 1
        return 0

    cdef void _seal(self, size_t start):
        """Fill in the header of the record whose header starts at ``start``."""
        cdef uint32_t length = <uint32_t>(self.size - start - 8)
        cdef uint32_t crc = fs_crc32c(0, self.data + start + 8, length)
        cdef int i
        for i in range(4):
            self.data[start + i] = <char>(length >> (8 * i))
            self.data[start + 4 + i] = <char>(crc >> (8 * i))
        self.ends.push_back(self.size)

    def append_call(self, int64_t txn_id, int64_t timestamp_us, procedure, params,
                    idempotency_key, result, uint64_t change_digest) -> bool:
        """Append ``[1 CALL, txn_id, timestamp_us, procedure, params,
        idempotency_key, result_digest(result), change_digest]``; False
        (nothing appended) if a value is not one this encoder handles.
        The result digest is server/commandlog.result_digest's: ``result``
        itself for an int in 0..2**31-1, else 2**31 | the CRC32C of its
        msgpack encoding (made here, byte for byte msgpack-python's)."""
        cdef size_t start = self.size
        cdef size_t scratch
        cdef uint32_t digest
        cdef int overflow = 0
        cdef long long small = -1
        self._reserve(8)
        self.size += 8
        self._byte(0x98)
        self._byte(CALL_KIND)
        self._signed(txn_id)
        self._signed(timestamp_us)
        if not (self._value(procedure, 0) and self._value(params, 0)
                and self._value(idempotency_key, 0)):
            self.size = start
            return False
        if type(result) is int:
            small = PyLong_AsLongLongAndOverflow(result, &overflow)
        if overflow == 0 and 0 <= small <= 0x7fffffff:
            digest = <uint32_t>small
        else:
            scratch = self.size            # the result's encoding, only to CRC it
            if not self._value(result, 0):
                self.size = start
                return False
            digest = fs_crc32c(0, self.data + scratch, self.size - scratch) | 0x80000000u
            self.size = scratch
        self._unsigned(digest)
        self._unsigned(change_digest)
        self._seal(start)
        return True

    def append_payload(self, bytes payload) -> None:
        """Append a record whose payload (one msgpack array) is made."""
        cdef size_t start = self.size
        self._reserve(8)
        self.size += 8
        self._raw(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))
        self._seal(start)

    # -- reading and writing ---------------------------------------------

    cdef size_t _start_of(self, size_t index):
        return 0 if index == 0 else self.ends[index - 1]

    def record(self, Py_ssize_t index) -> bytes:
        """Record ``index`` as it goes to disk (header and payload)."""
        if not 0 <= index < <Py_ssize_t>self.ends.size():
            raise IndexError(index)
        cdef size_t start = self._start_of(index)
        return PyBytes_FromStringAndSize(self.data + start, self.ends[index] - start)

    def span(self, size_t first, size_t last) -> int:
        """Bytes of records ``first`` up to (not including) ``last``."""
        if first > last or last > self.ends.size():
            raise IndexError((first, last))
        return self._start_of(last) - self._start_of(first)

    def fitting(self, size_t first, size_t room) -> int:
        """The end of the longest run of records from ``first`` that takes
        at most ``room`` bytes (``first`` itself if not even one fits)."""
        cdef size_t base = self._start_of(first)
        cdef size_t last = first
        while last < self.ends.size() and self.ends[last] - base <= room:
            last += 1
        return last

    def pwrite(self, int fd, size_t first, size_t last, long long offset) -> int:
        """Write records ``first``..``last`` (exclusive) at ``offset`` of
        ``fd``, all of them (retrying short writes); the bytes written.
        OSError if the file refuses them (some may have been written)."""
        if first > last or last > self.ends.size():
            raise IndexError((first, last))
        cdef size_t start = self._start_of(first)
        cdef size_t end = self._start_of(last)
        cdef size_t done = 0
        cdef ssize_t n = 0
        cdef int error = 0
        with nogil:
            while done < end - start:
                n = pwrite(fd, self.data + start + done, end - start - done, offset + done)
                if n < 0:
                    if errno == EINTR:
                        continue
                    error = errno
                    break
                done += n
        if error:
            raise OSError(error, f"writing the command log: {__import__('os').strerror(error)}")
        return done

    def discard(self, size_t count) -> None:
        """Forget the first ``count`` records (written and synced)."""
        if count > self.ends.size():
            raise IndexError(count)
        if count == 0:
            return
        cdef size_t cut = self.ends[count - 1]
        memmove(self.data, self.data + cut, self.size - cut)
        self.size -= cut
        self.ends.erase(self.ends.begin(), self.ends.begin() + count)
        for i in range(self.ends.size()):
            self.ends[i] -= cut

    def clear(self) -> None:
        self.size = 0
        self.ends.clear()
        if self.capacity > (1 << 24):         # give back what a burst took
            self.data = <char*>realloc(self.data, 1 << 16)
            self.capacity = 1 << 16


cdef double _now() noexcept nogil:
    cdef timespec t
    clock_gettime(CLOCK_MONOTONIC, &t)
    return t.tv_sec + t.tv_nsec * 1e-9


cdef class Syncer:
    """fdatasync on request, on a thread that never takes the GIL.

    ``run()`` is the thread's body (start it with threading.Thread).
    ``request(fd)`` asks for one fdatasync of ``fd``; when it is done one
    byte arrives on ``done_fd`` (non-blocking; watch it with the event
    loop), and ``error`` says how it went (0, or the errno). ``stop()``
    ends the thread after the request in flight, if any.
    """

    cdef int request_read, request_write
    cdef readonly int done_fd
    cdef int done_write
    cdef int target
    cdef readonly int error
    cdef readonly double seconds
    cdef readonly long long count
    cdef long long durations[32]     # as server/histogram.LatencyHistogram buckets them

    def __cinit__(self):
        import os
        cdef int i
        for i in range(32):
            self.durations[i] = 0
        self.request_read, self.request_write = os.pipe()
        self.done_fd, self.done_write = os.pipe()
        os.set_blocking(self.done_fd, False)
        self.target = -1

    def __dealloc__(self):
        for fd in (self.request_read, self.request_write, self.done_fd, self.done_write):
            if fd >= 0:
                close(fd)

    def run(self) -> None:
        with nogil:
            self._serve()

    cdef void _serve(self) noexcept nogil:
        cdef char byte = 0
        cdef ssize_t n
        cdef double started, took
        cdef unsigned long long micros
        cdef int bucket
        while True:
            n = read(self.request_read, &byte, 1)
            if n < 0 and errno == EINTR:
                continue
            if n <= 0:                       # the request pipe is closed: stop
                break
            started = _now()
            if fdatasync(self.target) == 0:
                self.error = 0
            else:
                self.error = errno
            took = _now() - started
            self.seconds += took
            self.count += 1
            micros = <unsigned long long>(took * 1e6)
            bucket = 0
            while micros and bucket < 31:         # the bit length, at most 31
                micros >>= 1
                bucket += 1
            self.durations[bucket] += 1
            while write(self.done_write, &byte, 1) < 0 and errno == EINTR:
                pass
        close(self.request_read)
        self.request_read = -1

    def histogram(self) -> list:
        """How long each fdatasync took: counts in power-of-two microsecond
        buckets (bucket i: [2**(i-1), 2**i) us), 32 of them."""
        return [self.durations[i] for i in range(32)]

    def request(self, int fd) -> None:
        cdef char byte = 1
        self.target = fd
        while write(self.request_write, &byte, 1) < 0:
            if errno != EINTR:
                raise OSError(errno, "cannot reach the fsync thread")

    def stop(self) -> None:
        """Close the request pipe: the thread ends once it reads that."""
        if self.request_write >= 0:
            close(self.request_write)
            self.request_write = -1
