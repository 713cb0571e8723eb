/* UTF-8 decoding and encoding, one code point at a time (internal): shared
 * by the JSON parser (lib/io/json.c) and the tokenizer (lib/tokenizer/). */
#ifndef MMCHAIN_CORE_UTF8_H
#define MMCHAIN_CORE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decode the code point at s[0..len): returns its byte length (1-4) and
 * sets *cp, or returns 0 when the bytes there are not well-formed UTF-8
 * (then *cp is unspecified). Well-formed follows the Unicode standard's
 * table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF. */
int mc_utf8_decode_one(const unsigned char *s, size_t len, uint32_t *cp);

/* The length of the longest prefix of s[0..len) (len >= 1) that could start
 * a well-formed sequence (at least 1): what one U+FFFD replaces when
 * decoding with replacement, as Python's errors="replace" does ("maximal
 * subpart"). */
int mc_utf8_invalid_length(const unsigned char *s, size_t len);

/* Encode a code point (< 0x110000) into out; returns the byte length. */
int mc_utf8_encode_one(uint32_t cp, char out[4]);

#endif
