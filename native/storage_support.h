/*
 * Small C++ helpers for storage.pyx that Cython cannot express directly:
 * the key hash, 128-bit integer access for DECIMAL, and the ordered-index
 * container type.
 */
#ifndef FLOWSTATE_STORAGE_SUPPORT_H
#define FLOWSTATE_STORAGE_SUPPORT_H

#include <stdint.h>
#include <string.h>
#include <set>
#include <string>

typedef std::set<std::string> fs_keyset;

/* Entries of an ordered index on one NOT NULL integer column: the key with
 * its sign bit flipped (so unsigned order is signed order) in bits 32..95,
 * the row id in bits 0..31. Compared as plain integers. */
typedef unsigned __int128 fs_u128;
typedef std::set<fs_u128> fs_intset;

/* A fast 64-bit hash of a byte string (multiply-xorshift over 8-byte
 * words; the keys are short encoded index keys, so speed over the first
 * word matters most). Not cryptographic; stable only within a process. */
static inline uint64_t fs_hash_bytes(const char *data, size_t len) {
    const uint64_t m = 0x9E3779B97F4A7C15ULL;
    uint64_t h = 0x243F6A8885A308D3ULL ^ (len * m);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, data, 8);
        h ^= w;
        h *= m;
        h ^= h >> 29;
        data += 8;
        len -= 8;
    }
    if (len) {
        uint64_t w = 0;
        memcpy(&w, data, len);
        h ^= w;
        h *= m;
        h ^= h >> 29;
    }
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ULL;
    h ^= h >> 32;
    return h;
}

typedef __int128 fs_int128;

static inline void fs_int128_store(char *dst, int64_t hi, uint64_t lo) {
    fs_int128 v = ((fs_int128)hi << 64) | (fs_int128)lo;
    memcpy(dst, &v, 16);
}

static inline int64_t fs_int128_hi(const char *src) {
    fs_int128 v;
    memcpy(&v, src, 16);
    return (int64_t)(v >> 64);
}

static inline uint64_t fs_int128_lo(const char *src) {
    fs_int128 v;
    memcpy(&v, src, 16);
    return (uint64_t)v;
}

/* Add two DECIMAL values stored as int128; returns 0 on overflow of the
 * 38-digit range (|v| < 10**38 after scaling). */
static inline int fs_int128_add_checked(const char *a, const char *b, char *out, int negate_b) {
    fs_int128 x, y;
    memcpy(&x, a, 16);
    memcpy(&y, b, 16);
    if (negate_b) y = -y;
    fs_int128 r = x + y;
    /* 10**38 */
    const fs_int128 limit = (fs_int128)10000000000000000000ULL * (fs_int128)10000000000000000000ULL;
    if (r >= limit || r <= -limit) return 0;
    memcpy(out, &r, 16);
    return 1;
}

static inline int fs_int128_cmp(const char *a, const char *b) {
    fs_int128 x, y;
    memcpy(&x, a, 16);
    memcpy(&y, b, 16);
    return (x > y) - (x < y);
}

static inline int fs_starts_with(const std::string &s, const std::string &prefix) {
    return s.size() >= prefix.size() && memcmp(s.data(), prefix.data(), prefix.size()) == 0;
}

#endif
