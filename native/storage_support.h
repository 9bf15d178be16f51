/*
 * Small C++ helpers for storage.pyx that Cython cannot express directly:
 * the key hash, the change digest's hash, 128-bit integer access for
 * DECIMAL, and the block B-tree behind ordered indexes on integer columns.
 */
#ifndef FLOWSTATE_STORAGE_SUPPORT_H
#define FLOWSTATE_STORAGE_SUPPORT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <algorithm>
#include <new>
#include <set>
#include <string>
#include <vector>

/* Entries of an ordered index on one NOT NULL integer column: the key with
 * its sign bit flipped (so unsigned order is signed order) in bits 32..95,
 * the row id in bits 0..31. Compared as plain integers. */
typedef unsigned __int128 fs_u128;

/* A sorted set of fs_u128 kept in blocks of up to FS_BLOCK entries, with a
 * sorted array of each block's first entry on top: a two-level B-tree.
 * A lookup is a binary search over the contiguous top array and then
 * inside one 8 KiB block, so it touches a handful of cache lines where a
 * red-black tree touches one per level. A full block splits in two; an
 * empty block is removed. A position (block, slot) is valid until the
 * next change: callers collect what they need before changing the set. */
#define FS_BLOCK 512

struct fs_bpos {
    size_t b;
    int i;
};

struct fs_blockset {
    struct Block {
        int n;
        fs_u128 keys[FS_BLOCK];
    };
    std::vector<Block *> blocks;
    std::vector<fs_u128> mins;
    size_t count;

    fs_blockset() : count(0) {}
    ~fs_blockset() {
        for (size_t b = 0; b < blocks.size(); b++) delete blocks[b];
    }
    size_t size() const { return count; }
    size_t memory_bytes() const {
        return blocks.size() * sizeof(Block) + mins.capacity() * sizeof(fs_u128)
               + blocks.capacity() * sizeof(Block *);
    }
    /* the last block whose first entry is <= k (block 0 if none is) */
    size_t block_for(fs_u128 k) const {
        size_t lo = std::upper_bound(mins.begin(), mins.end(), k) - mins.begin();
        return lo == 0 ? 0 : lo - 1;
    }
    static int slot_for(const Block *B, fs_u128 k) {
        return (int)(std::lower_bound(B->keys, B->keys + B->n, k) - B->keys);
    }
    void insert(fs_u128 k) {
        if (blocks.empty()) {
            Block *B = new Block;
            B->n = 1;
            B->keys[0] = k;
            blocks.push_back(B);
            mins.push_back(k);
            count = 1;
            return;
        }
        size_t b = block_for(k);
        Block *B = blocks[b];
        int i = slot_for(B, k);
        if (i < B->n && B->keys[i] == k) return;
        if (B->n == FS_BLOCK) {
            Block *R = new Block;
            R->n = FS_BLOCK / 2;
            memcpy(R->keys, B->keys + FS_BLOCK / 2, sizeof(fs_u128) * (FS_BLOCK / 2));
            B->n = FS_BLOCK / 2;
            blocks.insert(blocks.begin() + b + 1, R);
            mins.insert(mins.begin() + b + 1, R->keys[0]);
            if (i > FS_BLOCK / 2) {
                B = R;
                i -= FS_BLOCK / 2;
                b++;
            }
        }
        memmove(B->keys + i + 1, B->keys + i, sizeof(fs_u128) * (B->n - i));
        B->keys[i] = k;
        B->n++;
        if (i == 0) mins[b] = k;
        count++;
    }
    bool erase(fs_u128 k) {
        if (blocks.empty()) return false;
        size_t b = block_for(k);
        Block *B = blocks[b];
        int i = slot_for(B, k);
        if (i == B->n || B->keys[i] != k) return false;
        memmove(B->keys + i, B->keys + i + 1, sizeof(fs_u128) * (B->n - i - 1));
        B->n--;
        count--;
        if (B->n == 0) {
            delete B;
            blocks.erase(blocks.begin() + b);
            mins.erase(mins.begin() + b);
        } else if (i == 0) {
            mins[b] = B->keys[0];
        }
        return true;
    }
    fs_bpos begin() const { fs_bpos p = {0, 0}; return p; }
    fs_bpos end() const { fs_bpos p = {blocks.size(), 0}; return p; }
    /* the position of the first entry >= k */
    fs_bpos lower_bound(fs_u128 k) const {
        if (blocks.empty()) return end();
        size_t b = block_for(k);
        int i = slot_for(blocks[b], k);
        if (i == blocks[b]->n) { b++; i = 0; }
        fs_bpos p = {b, i};
        return p;
    }
    bool at_end(fs_bpos p) const { return p.b >= blocks.size(); }
    fs_u128 get(fs_bpos p) const { return blocks[p.b]->keys[p.i]; }
    void next(fs_bpos *p) const {
        if (++p->i >= blocks[p->b]->n) { p->b++; p->i = 0; }
    }
    void prev(fs_bpos *p) const {
        if (p->i > 0) p->i--;
        else { p->b--; p->i = blocks[p->b]->n - 1; }
    }
    void clear() {
        for (size_t b = 0; b < blocks.size(); b++) delete blocks[b];
        blocks.clear();
        mins.clear();
        count = 0;
    }
    /* Replace the contents by n strictly increasing entries (a bulk load:
     * full blocks, no search). */
    void load_sorted(const fs_u128 *keys, size_t n) {
        clear();
        blocks.reserve((n + FS_BLOCK - 1) / FS_BLOCK);
        mins.reserve((n + FS_BLOCK - 1) / FS_BLOCK);
        for (size_t at = 0; at < n; at += FS_BLOCK) {
            Block *B = new Block;
            B->n = (int)std::min((size_t)FS_BLOCK, n - at);
            memcpy(B->keys, keys + at, sizeof(fs_u128) * B->n);
            blocks.push_back(B);
            mins.push_back(B->keys[0]);
        }
        count = n;
    }
};

/* -- bulk index building (snapshot loading) ------------------------------ */

/* A large block that free() releases, on transparent huge pages where the
 * kernel allows it (madvise mode): a bulk load writes it all at once, and
 * one fault per 2 MiB instead of per 4 KiB is most of the difference. */
static inline void *fs_alloc_huge(size_t size) {
    const size_t huge = (size_t)2 << 20;
    if (size < 2 * huge) return malloc(size);
    void *p = NULL;
    if (posix_memalign(&p, huge, size) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, size, MADV_HUGEPAGE);
#endif
    return p;
}

/* Sort entries of an integer ordered index (already sorted is common: keys
 * inserted in increasing order keep their row ids increasing too). */
static inline void fs_sort_u128(fs_u128 *a, size_t n) {
    if (!std::is_sorted(a, a + n)) std::sort(a, a + n);
}

static inline void fs_sort_u32(uint32_t *a, size_t n) {
    if (!std::is_sorted(a, a + n)) std::sort(a, a + n);
}

/* Insert n entries (tag << 32 | row id) into an empty linear-probing table
 * of mask + 1 slots (empty slots are all ones). Every occupied slot met
 * with the same tag is reported as (its row id << 32 | the new row id) in
 * same_tag, for the caller to compare the two keys. The entries are first
 * partitioned by the top 11 bits of their home slot (one counting pass,
 * one scatter), then inserted partition by partition: each one writes a
 * window of the table that stays in cache, instead of one cache miss per
 * entry. Linear probing ends in the same occupied slots whatever the
 * insertion order. */
static inline void fs_hash_insert_many(uint64_t *slots, size_t mask, const uint64_t *entries,
                                       size_t n, std::vector<uint64_t> *same_tag) {
    int bits = 0;
    while (bits < 64 && ((size_t)1 << bits) <= mask) bits++;
    int shift = bits > 11 ? bits - 11 : 0;
    std::vector<size_t> start((mask >> shift) + 2, 0);
    for (size_t k = 0; k < n; k++) start[(((entries[k] >> 32) & mask) >> shift) + 1]++;
    for (size_t d = 1; d < start.size(); d++) start[d] += start[d - 1];
    uint64_t *sorted = (uint64_t *)fs_alloc_huge(n * sizeof(uint64_t) + 1);
    if (sorted == NULL) throw std::bad_alloc();
    for (size_t k = 0; k < n; k++) sorted[start[((entries[k] >> 32) & mask) >> shift]++] = entries[k];
    try {
        for (size_t k = 0; k < n; k++) {
            uint64_t e = sorted[k];
            uint32_t tag = (uint32_t)(e >> 32);
            size_t i = tag & mask;
            while (slots[i] != ~(uint64_t)0) {
                if ((uint32_t)(slots[i] >> 32) == tag)
                    same_tag->push_back((slots[i] << 32) | (uint32_t)e);
                i = (i + 1) & mask;
            }
            slots[i] = e;
        }
    } catch (...) {
        free(sorted);
        throw;
    }
    free(sorted);
}

/* Sort encoded ordered-index entries, then fill an (empty) std::set from
 * them in order: each insertion is at the end, amortized constant time. */
static inline void fs_sort_strings(std::vector<std::string> &v) {
    if (!std::is_sorted(v.begin(), v.end())) std::sort(v.begin(), v.end());
}

static inline void fs_set_fill_sorted(std::set<std::string> &s, std::vector<std::string> &v) {
    s.clear();
    for (size_t i = 0; i < v.size(); i++) s.emplace_hint(s.end(), std::move(v[i]));
    v.clear();
}

static inline int fs_bpos_eq(fs_bpos a, fs_bpos b) { return a.b == b.b && a.i == b.i; }
static inline int fs_bpos_lt(fs_bpos a, fs_bpos b) { return a.b < b.b || (a.b == b.b && a.i < b.i); }

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

/* -- the change digest (see storage.pyx, "Change digest") ------------------
 *
 * A FORMAT, not an implementation detail: command logs record digests made
 * with these functions and recovery compares them with fresh ones. Any
 * change to the constants or the arithmetic needs a new
 * CHANGE_DIGEST_VERSION in storage.pyx. Kept apart from fs_hash_bytes (the
 * index hash, which is free to change) for that reason.
 *
 * The constants and the round are xxHash64's (PRIME64_1..3, 5; its
 * per-lane round and its final avalanche), used here as one sequential
 * lane over 64-bit words. All arithmetic is modulo 2**64; words are loaded
 * little-endian (memcpy on the little-endian machines the engine supports). */
#define FS_DIGEST_P1 0x9E3779B185EBCA87ULL
#define FS_DIGEST_P2 0xC2B2AE3D27D4EB4FULL
#define FS_DIGEST_P3 0x165667B19E3779F9ULL
#define FS_DIGEST_SEED 0x27D4EB2F165667C5ULL

/* round(acc, w) = rotl64(acc + w * P2, 31) * P1 */
static inline uint64_t fs_digest_round(uint64_t acc, uint64_t w) {
    acc += w * FS_DIGEST_P2;
    acc = (acc << 31) | (acc >> 33);
    return acc * FS_DIGEST_P1;
}

static inline uint64_t fs_digest_avalanche(uint64_t h) {
    h ^= h >> 33;
    h *= FS_DIGEST_P2;
    h ^= h >> 29;
    h *= FS_DIGEST_P3;
    h ^= h >> 32;
    return h;
}

/* The n <= 8 bytes at p as a little-endian word, zero-padded, reading
 * only those bytes; no call to memcpy (whose variable-length path costs
 * more than the hashing here). For 4..7 bytes, two overlapping 4-byte
 * loads; for 1..3, three byte loads that may repeat one. */
static inline uint64_t fs_load_partial(const char *p, size_t n) {
    const unsigned char *u = (const unsigned char *)p;
    if (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        return w;
    }
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        return (uint64_t)a | ((uint64_t)b << (8 * (n - 4)));
    }
    if (n == 0) return 0;
    return (uint64_t)u[0] | ((uint64_t)u[n / 2] << (8 * (n / 2))) | ((uint64_t)u[n - 1] << (8 * (n - 1)));
}

/* A byte string: its length as one word, then its bytes as little-endian
 * 64-bit words, the last one zero-padded (none for an empty string). */
static inline uint64_t fs_digest_bytes(uint64_t acc, const char *p, size_t n) {
    uint64_t w;
    acc = fs_digest_round(acc, (uint64_t)n);
    while (n >= 8) {
        memcpy(&w, p, 8);
        acc = fs_digest_round(acc, w);
        p += 8;
        n -= 8;
    }
    if (n) acc = fs_digest_round(acc, fs_load_partial(p, n));
    return acc;
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

static inline int fs_starts_with(const std::string &s, const std::string &prefix) {
    return s.size() >= prefix.size() && memcmp(s.data(), prefix.data(), prefix.size()) == 0;
}

#endif
