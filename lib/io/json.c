/* A small, strict JSON parser: recursive descent over a byte range, building
 * a tree of mc_json nodes in an arena. See json.h for what "strict" means. */
#include "io/json.h"
#include "core/utf8.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the arena: chunks that are freed all at once ---- */

typedef struct arena_chunk {
    struct arena_chunk *previous;
    size_t used, capacity;
    max_align_t data[]; /* capacity bytes */
} arena_chunk;

struct mc_json_doc {
    arena_chunk *chunks; /* the newest first */
    mc_json *root;
};

enum { ARENA_CHUNK_BYTES = 64 * 1024 };

static void *arena_alloc(mc_json_doc *doc, size_t bytes) {
    bytes = (bytes + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    arena_chunk *chunk = doc->chunks;
    if (!chunk || chunk->capacity - chunk->used < bytes) {
        size_t capacity = bytes > ARENA_CHUNK_BYTES ? bytes : ARENA_CHUNK_BYTES;
        chunk = malloc(sizeof *chunk + capacity);
        if (!chunk) return NULL;
        chunk->previous = doc->chunks;
        chunk->used = 0;
        chunk->capacity = capacity;
        doc->chunks = chunk;
    }
    void *p = (char *)chunk->data + chunk->used;
    chunk->used += bytes;
    return p;
}

void mc_json_free(mc_json_doc *doc) {
    if (!doc) return;
    for (arena_chunk *c = doc->chunks; c;) {
        arena_chunk *previous = c->previous;
        free(c);
        c = previous;
    }
    free(doc);
}

const mc_json *mc_json_root(const mc_json_doc *doc) { return doc ? doc->root : NULL; }

/* ---- the parser state ---- */

typedef struct parser {
    const char *text; /* not NUL-terminated */
    size_t len;
    size_t pos;
    const char *what;
    mc_json_doc *doc;
} parser;

/* An error at the current position, with line and column for people. */
static mc_status parse_error(const parser *p, const char *problem) {
    size_t line = 1, column = 1;
    for (size_t i = 0; i < p->pos && i < p->len; i++) {
        if (p->text[i] == '\n') {
            line++;
            column = 1;
        } else {
            column++;
        }
    }
    return mc_error(MC_ERR_FORMAT, "%s: invalid JSON at line %zu, column %zu (byte %zu): %s",
                    p->what, line, column, p->pos, problem);
}

static mc_status out_of_memory(const parser *p) {
    return mc_error(MC_ERR_NOMEM, "%s: out of memory while parsing JSON", p->what);
}

static bool at_end(const parser *p) { return p->pos >= p->len; }
static unsigned char peek(const parser *p) { return at_end(p) ? 0 : (unsigned char)p->text[p->pos]; }

static void skip_whitespace(parser *p) {
    while (!at_end(p)) {
        char c = p->text[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static mc_json *new_node(parser *p, mc_json_type type) {
    mc_json *v = arena_alloc(p->doc, sizeof *v);
    if (v) {
        memset(v, 0, sizeof *v);
        v->type = type;
    }
    return v;
}

static mc_status parse_value(parser *p, int depth, mc_json **out);

/* ---- literals: true, false, null ---- */

static mc_status parse_literal(parser *p, const char *word, mc_json_type type, bool boolean,
                               mc_json **out) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->text + p->pos, word, n) != 0)
        return parse_error(p, "unexpected character (expected a value)");
    p->pos += n;
    mc_json *v = new_node(p, type);
    if (!v) return out_of_memory(p);
    v->boolean = boolean;
    *out = v;
    return MC_OK;
}

/* ---- numbers: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? ---- */

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static mc_status parse_number(parser *p, mc_json **out) {
    size_t start = p->pos;
    bool integral = true;
    if (peek(p) == '-') p->pos++;
    if (peek(p) == '0') {
        p->pos++;
        if (is_digit(peek(p))) return parse_error(p, "a number may not have a leading zero");
    } else if (is_digit(peek(p))) {
        while (is_digit(peek(p))) p->pos++;
    } else {
        return parse_error(p, "expected a digit");
    }
    if (peek(p) == '.') {
        integral = false;
        p->pos++;
        if (!is_digit(peek(p))) return parse_error(p, "expected a digit after the decimal point");
        while (is_digit(peek(p))) p->pos++;
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        integral = false;
        p->pos++;
        if (peek(p) == '+' || peek(p) == '-') p->pos++;
        if (!is_digit(peek(p))) return parse_error(p, "expected a digit in the exponent");
        while (is_digit(peek(p))) p->pos++;
    }
    mc_json *v = new_node(p, MC_JSON_NUMBER);
    if (!v) return out_of_memory(p);

    /* Integers are accumulated exactly (safetensors offsets need all 64
     * bits; a double holds only 53). */
    if (integral) {
        bool negative = p->text[start] == '-';
        uint64_t magnitude = 0, limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        bool fits = true;
        for (size_t i = start + (negative ? 1 : 0); i < p->pos && fits; i++) {
            uint64_t digit = (uint64_t)(p->text[i] - '0');
            if (magnitude > (limit - digit) / 10) fits = false;
            else magnitude = magnitude * 10 + digit;
        }
        if (fits) {
            v->is_int = true;
            if (!negative) v->integer = (int64_t)magnitude;
            else if (magnitude == (uint64_t)INT64_MAX + 1) v->integer = INT64_MIN;
            else v->integer = -(int64_t)magnitude;
        }
    }
    /* strtod needs a NUL-terminated copy (the text may be an mmap). */
    size_t n = p->pos - start;
    char *copy = arena_alloc(p->doc, n + 1);
    if (!copy) return out_of_memory(p);
    memcpy(copy, p->text + start, n);
    copy[n] = '\0';
    errno = 0;
    v->number = strtod(copy, NULL);
    if (errno == ERANGE && isinf(v->number)) {
        p->pos = start;
        return parse_error(p, "number out of the range of a double");
    }
    *out = v;
    return MC_OK;
}

/* ---- strings ---- */

static int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Four hex digits after "\u" at p->pos. */
static mc_status parse_hex4(parser *p, uint32_t *out) {
    if (p->len - p->pos < 4) return parse_error(p, "truncated \\u escape");
    uint32_t value = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value((unsigned char)p->text[p->pos + (size_t)i]);
        if (h < 0) return parse_error(p, "\\u must be followed by four hex digits");
        value = value * 16 + (uint32_t)h;
    }
    p->pos += 4;
    *out = value;
    return MC_OK;
}

/* "\u" escapes: one code unit, or a high + low surrogate pair. */
static mc_status parse_unicode_escape(parser *p, uint32_t *cp) {
    uint32_t unit = 0;
    MC_TRY(parse_hex4(p, &unit));
    if (unit >= 0xDC00 && unit <= 0xDFFF)
        return parse_error(p, "a low surrogate \\u escape without a high surrogate before it");
    if (unit >= 0xD800 && unit <= 0xDBFF) {
        if (p->len - p->pos < 2 || p->text[p->pos] != '\\' || p->text[p->pos + 1] != 'u')
            return parse_error(p, "a high surrogate \\u escape must be followed by a low one");
        p->pos += 2;
        uint32_t low = 0;
        MC_TRY(parse_hex4(p, &low));
        if (low < 0xDC00 || low > 0xDFFF)
            return parse_error(p, "a high surrogate \\u escape must be followed by a low one");
        unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
    }
    *cp = unit;
    return MC_OK;
}

/* A string starting at the opening quote; the decoded bytes go to the arena.
 * Decoding never makes a string longer than its source, which sizes the
 * buffer. */
static mc_status parse_string(parser *p, const char **out, size_t *out_len) {
    p->pos++; /* the opening quote */
    size_t start = p->pos;
    size_t end = start;
    while (end < p->len && p->text[end] != '"') end += (p->text[end] == '\\') ? 2 : 1;
    if (end >= p->len) return parse_error(p, "unterminated string");

    char *buf = arena_alloc(p->doc, end - start + 1);
    if (!buf) return out_of_memory(p);
    size_t n = 0;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->text[p->pos];
        if (c < 0x20) return parse_error(p, "a control character inside a string must be escaped");
        if (c != '\\') {
            uint32_t code_point; /* checked, then copied as it is */
            size_t seq = (size_t)mc_utf8_decode_one((const unsigned char *)p->text + p->pos,
                                                    end - p->pos, &code_point);
            if (seq == 0) return parse_error(p, "invalid UTF-8 in a string");
            memcpy(buf + n, p->text + p->pos, seq);
            n += seq;
            p->pos += seq;
            continue;
        }
        p->pos++; /* the backslash */
        char e = p->text[p->pos++];
        switch (e) {
        case '"': buf[n++] = '"'; break;
        case '\\': buf[n++] = '\\'; break;
        case '/': buf[n++] = '/'; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u': {
            uint32_t cp = 0;
            MC_TRY(parse_unicode_escape(p, &cp));
            n += (size_t)mc_utf8_encode_one(cp, buf + n); /* <= the 6 or 12 source bytes */
            break;
        }
        default: p->pos--; return parse_error(p, "unknown escape sequence in a string");
        }
    }
    if (p->pos != end) return parse_error(p, "unterminated string"); /* "\u12" before the quote */
    p->pos = end + 1; /* the closing quote */
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return MC_OK;
}

/* ---- arrays and objects ---- */

/* Arrays and objects share one grammar: the opening bracket, then
 * elements separated by commas up to the closing bracket, no trailing
 * comma. An array's element is a value; an object's a member: a string
 * key, ':' and a value. Each container says what its errors name. */
typedef struct container_grammar {
    mc_json_type type;
    char close;
    const char *trailing_comma, *unterminated, *expected_separator;
} container_grammar;

static const container_grammar array_grammar = {
    MC_JSON_ARRAY, ']', "trailing comma in an array", "unterminated array",
    "expected ',' or ']' in an array"};
static const container_grammar object_grammar = {
    MC_JSON_OBJECT, '}', "trailing comma in an object", "unterminated object",
    "expected ',' or '}' in an object"};

static mc_status parse_member(parser *p, int depth, mc_json **out) {
    if (peek(p) != '"')
        return parse_error(p, at_end(p) ? "unterminated object" : "expected a string key in an object");
    const char *key;
    size_t key_len;
    MC_TRY(parse_string(p, &key, &key_len));
    skip_whitespace(p);
    if (peek(p) != ':') return parse_error(p, "expected ':' after an object key");
    p->pos++;
    MC_TRY(parse_value(p, depth + 1, out));
    (*out)->key = key;
    (*out)->key_len = key_len;
    return MC_OK;
}

static mc_status parse_container(parser *p, int depth, const container_grammar *grammar,
                                 mc_json **out) {
    mc_json *container = new_node(p, grammar->type);
    if (!container) return out_of_memory(p);
    p->pos++; /* '[' or '{' */
    skip_whitespace(p);
    mc_json **tail = &container->child;
    if (peek(p) == grammar->close) {
        p->pos++;
        *out = container;
        return MC_OK;
    }
    for (;;) {
        mc_json *element = NULL;
        MC_TRY(grammar->type == MC_JSON_OBJECT ? parse_member(p, depth, &element)
                                               : parse_value(p, depth + 1, &element));
        *tail = element;
        tail = &element->next;
        container->count++;
        skip_whitespace(p);
        if (peek(p) == ',') {
            p->pos++;
            skip_whitespace(p);
            if (peek(p) == grammar->close) return parse_error(p, grammar->trailing_comma);
            continue;
        }
        if (peek(p) == grammar->close) break;
        return parse_error(p, at_end(p) ? grammar->unterminated : grammar->expected_separator);
    }
    p->pos++;
    *out = container;
    return MC_OK;
}

static mc_status parse_value(parser *p, int depth, mc_json **out) {
    if (depth > MC_JSON_MAX_DEPTH) return parse_error(p, "nesting is deeper than the limit of 64");
    skip_whitespace(p);
    if (at_end(p)) return parse_error(p, "unexpected end of input (expected a value)");
    switch (peek(p)) {
    case '{': return parse_container(p, depth, &object_grammar, out);
    case '[': return parse_container(p, depth, &array_grammar, out);
    case '"': {
        mc_json *v = new_node(p, MC_JSON_STRING);
        if (!v) return out_of_memory(p);
        MC_TRY(parse_string(p, &v->string, &v->string_len));
        *out = v;
        return MC_OK;
    }
    case 't': return parse_literal(p, "true", MC_JSON_BOOL, true, out);
    case 'f': return parse_literal(p, "false", MC_JSON_BOOL, false, out);
    case 'n': return parse_literal(p, "null", MC_JSON_NULL, false, out);
    default:
        if (peek(p) == '-' || is_digit(peek(p))) return parse_number(p, out);
        return parse_error(p, "unexpected character (expected a value)");
    }
}

mc_status mc_json_parse(const char *text, size_t len, const char *what, mc_json_doc **out) {
    *out = NULL;
    mc_json_doc *doc = calloc(1, sizeof *doc);
    if (!doc) return mc_error(MC_ERR_NOMEM, "%s: out of memory while parsing JSON", what);
    parser p = {.text = text, .len = len, .pos = 0, .what = what, .doc = doc};
    mc_status status = parse_value(&p, 1, &doc->root);
    if (status == MC_OK) {
        skip_whitespace(&p);
        if (!at_end(&p)) status = parse_error(&p, "unexpected characters after the JSON value");
    }
    if (status != MC_OK) {
        mc_json_free(doc);
        return status;
    }
    *out = doc;
    return MC_OK;
}

/* ---- lookups ---- */

const mc_json *mc_json_get(const mc_json *object, const char *key) {
    if (!object || object->type != MC_JSON_OBJECT) return NULL;
    size_t n = strlen(key);
    for (const mc_json *m = object->child; m; m = m->next)
        if (m->key_len == n && memcmp(m->key, key, n) == 0) return m;
    return NULL;
}

const char *mc_json_type_name(mc_json_type type) {
    switch (type) {
    case MC_JSON_NULL: return "null";
    case MC_JSON_BOOL: return "bool";
    case MC_JSON_NUMBER: return "number";
    case MC_JSON_STRING: return "string";
    case MC_JSON_ARRAY: return "array";
    case MC_JSON_OBJECT: return "object";
    }
    return "unknown";
}
