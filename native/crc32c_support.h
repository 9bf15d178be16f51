/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78) for the command
 * log's record encoder (native/logwriter.pyx).
 *
 * Why not the crc32c package the Python side uses: it has no C-level
 * interface, and the encoder frames records inside its own buffer without
 * making a Python object per record. The two must agree bit for bit;
 * tests/test_logwriter.py checks that they do.
 *
 * The SSE4.2 crc32 instruction when the CPU has it (checked once), a
 * byte-at-a-time table otherwise. Same convention as crc32c.crc32c(data,
 * value): ``crc`` is a previous result (0 to start).
 */
#ifndef FLOWSTATE_CRC32C_SUPPORT_H
#define FLOWSTATE_CRC32C_SUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static uint32_t fs_crc32c_table[256];
static int fs_crc32c_mode = 0;      /* 0 unknown, 1 table, 2 hardware */

static void fs_crc32c_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        fs_crc32c_table[i] = c;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    fs_crc32c_mode = __builtin_cpu_supports("sse4.2") ? 2 : 1;
#else
    fs_crc32c_mode = 1;
#endif
}

static uint32_t fs_crc32c_table_update(uint32_t crc, const unsigned char *p, size_t n) {
    while (n--)
        crc = fs_crc32c_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t fs_crc32c_hw_update(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = __builtin_ia32_crc32di(c, word);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}
#endif

static inline uint32_t fs_crc32c(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    crc = ~crc;
#if defined(__x86_64__)
    if (fs_crc32c_mode == 2)
        return ~fs_crc32c_hw_update(crc, p, n);
#endif
    return ~fs_crc32c_table_update(crc, p, n);
}

#endif
