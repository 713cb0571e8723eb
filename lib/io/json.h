/* A small, strict JSON parser (RFC 8259) — internal to the library.
 *
 * Used for the safetensors header, and reusable for vocab.json, config.json
 * and the like. It builds a tree in one arena (mc_json_free releases it all):
 *
 *     mc_json_doc *doc;
 *     MC_TRY(mc_json_parse(text, len, "config.json", &doc));
 *     const mc_json *width = mc_json_get(mc_json_root(doc), "hidden_size");
 *     if (width && width->type == MC_JSON_NUMBER && width->is_int) ... width->integer ...
 *     for (const mc_json *m = mc_json_root(doc)->child; m; m = m->next)
 *         printf("%s\n", m->key);                      // members in file order
 *     mc_json_free(doc);
 *
 * Strict means: exactly one value with only whitespace around it; no
 * trailing commas, comments, single quotes, NaN/Infinity, leading zeros or
 * '+' signs; strings must be valid UTF-8 without raw control characters;
 * \uXXXX escapes are decoded to UTF-8, with surrogate pairs combined and
 * lone surrogates rejected; numbers that overflow a double are rejected;
 * nesting deeper than MC_JSON_MAX_DEPTH is rejected (so a hostile input
 * cannot exhaust the stack). Duplicate object keys are kept (in order):
 * callers that must reject them check (mc_json_get returns the first).
 *
 * The text need not be NUL-terminated (it may be a memory-mapped file).
 * Errors are MC_ERR_FORMAT with "<what>: invalid JSON at line L, column C
 * (byte B): <problem>", or MC_ERR_NOMEM. */
#ifndef MMCHAIN_LIB_IO_JSON_H
#define MMCHAIN_LIB_IO_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mmchain/error.h"

#define MC_JSON_MAX_DEPTH 64

typedef enum mc_json_type {
    MC_JSON_NULL,
    MC_JSON_BOOL,
    MC_JSON_NUMBER,
    MC_JSON_STRING,
    MC_JSON_ARRAY,
    MC_JSON_OBJECT
} mc_json_type;

typedef struct mc_json mc_json;
struct mc_json {
    mc_json_type type;
    /* As a member of an object: its key (NUL-terminated UTF-8, key_len
     * bytes; may contain "\u0000" as an embedded NUL). NULL otherwise. */
    const char *key;
    size_t key_len;
    mc_json *next; /* the next element / member of the parent, or NULL */

    bool boolean;        /* MC_JSON_BOOL */
    double number;       /* MC_JSON_NUMBER, always set */
    bool is_int;         /* written without fraction/exponent and fits int64 */
    int64_t integer;     /* the exact value when is_int */
    const char *string;  /* MC_JSON_STRING: NUL-terminated UTF-8 ... */
    size_t string_len;   /* ... of this many bytes (may contain NULs) */
    mc_json *child;      /* MC_JSON_ARRAY / OBJECT: the first element / member */
    int count;           /* ... and how many there are */
};

typedef struct mc_json_doc mc_json_doc;

/* Parse len bytes of text; `what` names the source in messages. */
mc_status mc_json_parse(const char *text, size_t len, const char *what, mc_json_doc **out);
const mc_json *mc_json_root(const mc_json_doc *doc);
void mc_json_free(mc_json_doc *doc);

/* The first member of `object` with this key, or NULL (also when `object`
 * is NULL or not an object). */
const mc_json *mc_json_get(const mc_json *object, const char *key);
/* "null", "bool", "number", "string", "array", "object". */
const char *mc_json_type_name(mc_json_type type);

#endif
