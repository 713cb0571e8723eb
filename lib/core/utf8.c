/* UTF-8, one code point at a time (see utf8.h). */
#include "core/utf8.h"

/* Well-formed sequences (Unicode table 3-7): the byte count and the allowed
 * range of the second byte depend on the first; later bytes are 80..BF. */
static int utf8_lead(unsigned char b, unsigned char *lo, unsigned char *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (b < 0x80) return 1;
    if (b < 0xC2) return 0; /* continuation byte or overlong 2-byte lead */
    if (b < 0xE0) return 2;
    if (b < 0xF0) {
        if (b == 0xE0) *lo = 0xA0; /* no overlong 3-byte forms */
        if (b == 0xED) *hi = 0x9F; /* no surrogates */
        return 3;
    }
    if (b < 0xF5) {
        if (b == 0xF0) *lo = 0x90; /* no overlong 4-byte forms */
        if (b == 0xF4) *hi = 0x8F; /* nothing above U+10FFFF */
        return 4;
    }
    return 0;
}

/* How many bytes of s[0..len) follow the rules for a sequence of n bytes. */
static int utf8_valid_prefix(const unsigned char *s, size_t len, int n, unsigned char lo,
                             unsigned char hi) {
    int i = 1;
    for (; i < n && (size_t)i < len; i++) {
        unsigned char min = i == 1 ? lo : 0x80, max = i == 1 ? hi : 0xBF;
        if (s[i] < min || s[i] > max) break;
    }
    return i;
}

int mc_utf8_decode_one(const unsigned char *s, size_t len, uint32_t *cp) {
    unsigned char lo, hi;
    if (len == 0) return 0;
    int n = utf8_lead(s[0], &lo, &hi);
    if (n == 0 || utf8_valid_prefix(s, len, n, lo, hi) != n) return 0;
    static const unsigned char lead_mask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    uint32_t value = s[0] & lead_mask[n];
    for (int i = 1; i < n; i++) value = (value << 6) | (s[i] & 0x3F);
    *cp = value;
    return n;
}

int mc_utf8_invalid_length(const unsigned char *s, size_t len) {
    unsigned char lo, hi;
    int n = utf8_lead(s[0], &lo, &hi);
    if (n == 0) return 1;
    return utf8_valid_prefix(s, len, n, lo, hi);
}

int mc_utf8_encode_one(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}
