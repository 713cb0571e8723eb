/* Message-safe excerpts of untrusted text (excerpt.h). */
#include "core/excerpt.h"

#include <stdio.h>

enum { EXCERPT_BYTES = 40 };

const char *mc_excerpt(const char *text, char *buf, size_t len) {
    if (len == 0) return buf;
    size_t out = 0;
    buf[0] = '\0';
    size_t i = 0;
    for (; text[i] && i < EXCERPT_BYTES; i++) {
        unsigned char byte = (unsigned char)text[i];
        char piece[5];
        if (byte >= 0x20 && byte < 0x7f)
            piece[0] = (char)byte, piece[1] = '\0';
        else
            snprintf(piece, sizeof piece, "\\x%02x", byte);
        size_t n = 0;
        while (piece[n]) n++;
        if (out + n + 1 > len) break;
        for (size_t k = 0; k <= n; k++) buf[out + k] = piece[k];
        out += n;
    }
    if (text[i] && out + 4 <= len) snprintf(buf + out, len - out, "...");
    return buf;
}
