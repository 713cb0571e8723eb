/* safetensors: open + validate, read (with dtype conversion), and write
 * atomically. The format is described in include/mmchain/io.h. */
#include "mmchain/io.h"
#include "core/excerpt.h"
#include "core/utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/json.h"

/* The reference implementation refuses headers over 100 MB; so do we, so a
 * corrupt length cannot make us allocate or parse gigabytes. */
#define HEADER_LIMIT (100u * 1000u * 1000u)
/* More dimensions than any real tensor has; bounds a hostile shape. */
#define FILE_MAX_DIMS 16

/* ---- dtypes ---- */

static const struct {
    mc_dtype dtype;
    const char *name;
    size_t size;
    bool is_float;
} dtype_table[] = {
    {MC_DTYPE_F32, "F32", 4, true},  {MC_DTYPE_F16, "F16", 2, true},
    {MC_DTYPE_BF16, "BF16", 2, true}, {MC_DTYPE_F64, "F64", 8, true},
    {MC_DTYPE_I64, "I64", 8, false}, {MC_DTYPE_I32, "I32", 4, false},
    {MC_DTYPE_I16, "I16", 2, false}, {MC_DTYPE_I8, "I8", 1, false},
    {MC_DTYPE_U8, "U8", 1, false},   {MC_DTYPE_BOOL, "BOOL", 1, false},
};
enum { N_DTYPES = sizeof dtype_table / sizeof dtype_table[0] };

const char *mc_dtype_name(mc_dtype dtype) {
    for (int i = 0; i < N_DTYPES; i++)
        if (dtype_table[i].dtype == dtype) return dtype_table[i].name;
    return "?";
}

size_t mc_dtype_size(mc_dtype dtype) {
    for (int i = 0; i < N_DTYPES; i++)
        if (dtype_table[i].dtype == dtype) return dtype_table[i].size;
    return 0;
}

bool mc_dtype_is_float(mc_dtype dtype) {
    for (int i = 0; i < N_DTYPES; i++)
        if (dtype_table[i].dtype == dtype) return dtype_table[i].is_float;
    return false;
}

static bool dtype_from_name(const char *name, mc_dtype *out) {
    for (int i = 0; i < N_DTYPES; i++)
        if (strcmp(dtype_table[i].name, name) == 0) {
            *out = dtype_table[i].dtype;
            return true;
        }
    return false;
}

/* ---- the open file ---- */

typedef struct entry {
    const char *name; /* in the JSON arena */
    mc_dtype dtype;
    int ndim;         /* 0 for a scalar */
    int64_t dim[FILE_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end; /* byte offsets in the data buffer */
} entry;

struct mc_safetensors {
    char *path;
    const unsigned char *bytes; /* the whole file */
    size_t size;
    bool mapped;                /* bytes is an mmap (else malloc'd) */
    const unsigned char *data;  /* the data buffer, after the header */
    uint64_t data_len;
    mc_json_doc *header;
    entry *entries;             /* sorted by data offset */
    int count;
    int *by_name;               /* entry indices sorted by name, for lookups */
    const mc_json **meta;       /* "__metadata__" members */
    int meta_count;
};

/* Load the whole file: mmap when possible (weights stay in the page cache
 * and are only paged in as they are read), plain read() otherwise. */
static mc_status map_file(mc_safetensors *f) {
    int fd = open(f->path, O_RDONLY);
    if (fd < 0) return mc_error(MC_ERR_IO, "%s: cannot open: %s", f->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return mc_error(MC_ERR_IO, "%s: not a regular file", f->path);
    }
    f->size = (size_t)st.st_size;
    if (f->size == 0) {
        close(fd);
        return mc_error(MC_ERR_FORMAT, "%s: the file is empty (expected an 8-byte header length)",
                        f->path);
    }
    void *map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map != MAP_FAILED) {
        f->bytes = map;
        f->mapped = true;
        close(fd);
        return MC_OK;
    }
    unsigned char *buf = malloc(f->size);
    if (!buf) {
        close(fd);
        return mc_error(MC_ERR_NOMEM, "%s: cannot allocate %zu bytes to read it", f->path, f->size);
    }
    size_t got = 0;
    while (got < f->size) {
        ssize_t n = read(fd, buf + got, f->size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            free(buf);
            close(fd);
            return mc_error(MC_ERR_IO, "%s: read failed after %zu of %zu bytes", f->path, got, f->size);
        }
        got += (size_t)n;
    }
    close(fd);
    f->bytes = buf;
    return MC_OK;
}

static uint64_t read_u64_le(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* A JSON number that is a non-negative integer. */
static bool json_nonneg_int(const mc_json *v, int64_t *out) {
    if (!v || v->type != MC_JSON_NUMBER || !v->is_int || v->integer < 0) return false;
    *out = v->integer;
    return true;
}

/* Fill e from the header entry `v` (e->name already set). */
static mc_status parse_entry(const mc_safetensors *f, const mc_json *v, entry *e) {
    const char *name = e->name;
    if (v->type != MC_JSON_OBJECT)
        return mc_error(MC_ERR_FORMAT, "%s: tensor \"%s\": expected an object, found a %s", f->path,
                        name, mc_json_type_name(v->type));
    for (const mc_json *m = v->child; m; m = m->next)
        if (strcmp(m->key, "dtype") != 0 && strcmp(m->key, "shape") != 0 &&
            strcmp(m->key, "data_offsets") != 0) {
            char field[MC_EXCERPT_LEN];
            return mc_error(MC_ERR_FORMAT, "%s: tensor \"%s\": unknown field \"%s\"", f->path, name,
                            mc_excerpt(m->key, field, sizeof field));
        }
    if (v->count != 3)
        return mc_error(MC_ERR_FORMAT,
                        "%s: tensor \"%s\": expected exactly the fields dtype, shape, data_offsets",
                        f->path, name);

    const mc_json *dtype = mc_json_get(v, "dtype");
    if (!dtype || dtype->type != MC_JSON_STRING)
        return mc_error(MC_ERR_FORMAT, "%s: tensor \"%s\": dtype must be a string", f->path, name);
    /* (A NUL inside it, "F32\u0000...", would read as F32 to strcmp.) */
    if (strlen(dtype->string) != dtype->string_len || !dtype_from_name(dtype->string, &e->dtype)) {
        char given[MC_EXCERPT_LEN];
        return mc_error(MC_ERR_FORMAT,
                        "%s: tensor \"%s\": unknown or unsupported dtype \"%s\" (supported: F32, F16, "
                        "BF16, F64, I64, I32, I16, I8, U8, BOOL)",
                        f->path, name, mc_excerpt(dtype->string, given, sizeof given));
    }

    const mc_json *shape = mc_json_get(v, "shape");
    if (!shape || shape->type != MC_JSON_ARRAY)
        return mc_error(MC_ERR_FORMAT, "%s: tensor \"%s\": shape must be an array", f->path, name);
    if (shape->count > FILE_MAX_DIMS)
        return mc_error(MC_ERR_FORMAT, "%s: tensor \"%s\": %d dimensions (at most %d)", f->path,
                        name, shape->count, FILE_MAX_DIMS);
    e->ndim = 0;
    e->numel = 1;
    for (const mc_json *d = shape->child; d; d = d->next) {
        int64_t size;
        if (!json_nonneg_int(d, &size))
            return mc_error(MC_ERR_FORMAT,
                            "%s: tensor \"%s\": shape entries must be non-negative integers", f->path,
                            name);
        /* numel * 8 bytes must fit in 64 bits: check before multiplying. */
        if (size != 0 && e->numel > (UINT64_MAX / 8) / (uint64_t)size)
            return mc_error(MC_ERR_FORMAT, "%s: tensor \"%s\": the shape's element count overflows",
                            f->path, name);
        e->numel *= (uint64_t)size;
        e->dim[e->ndim++] = size;
    }

    const mc_json *offsets = mc_json_get(v, "data_offsets");
    int64_t begin, end;
    if (!offsets || offsets->type != MC_JSON_ARRAY || offsets->count != 2 ||
        !json_nonneg_int(offsets->child, &begin) || !json_nonneg_int(offsets->child->next, &end))
        return mc_error(MC_ERR_FORMAT,
                        "%s: tensor \"%s\": data_offsets must be two non-negative integers [begin, end]",
                        f->path, name);
    if (begin > end)
        return mc_error(MC_ERR_FORMAT, "%s: tensor \"%s\": data_offsets [%lld, %lld] has begin > end",
                        f->path, name, (long long)begin, (long long)end);
    if ((uint64_t)end > f->data_len)
        return mc_error(MC_ERR_FORMAT,
                        "%s: tensor \"%s\": data_offsets [%lld, %lld] run past the end of the data "
                        "buffer (%llu bytes; the file may be truncated)",
                        f->path, name, (long long)begin, (long long)end,
                        (unsigned long long)f->data_len);
    e->begin = (uint64_t)begin;
    e->end = (uint64_t)end;
    uint64_t expected = e->numel * mc_dtype_size(e->dtype);
    if (e->end - e->begin != expected)
        return mc_error(MC_ERR_FORMAT,
                        "%s: tensor \"%s\": %llu elements of %s need %llu bytes, but data_offsets "
                        "[%lld, %lld] hold %llu",
                        f->path, name, (unsigned long long)e->numel, dtype->string,
                        (unsigned long long)expected, (long long)begin, (long long)end,
                        (unsigned long long)(e->end - e->begin));
    return MC_OK;
}

static int compare_keys(const void *a, const void *b) {
    return strcmp((*(const mc_json *const *)a)->key, (*(const mc_json *const *)b)->key);
}

/* The metadata: strings only, each key once, no NUL inside a key or a
 * value. A key given twice would mean one thing here (the first is found)
 * and perhaps another to a reader that keeps the last; a NUL would make
 * "a\u0000b" answer for "a" and cut a value short. The writer produces
 * neither. */
static mc_status parse_metadata(mc_safetensors *f, const mc_json *v) {
    if (v->type != MC_JSON_OBJECT)
        return mc_error(MC_ERR_FORMAT, "%s: __metadata__ must be an object of strings, found a %s",
                        f->path, mc_json_type_name(v->type));
    f->meta = calloc((size_t)v->count + 1, sizeof *f->meta);
    if (!f->meta) return mc_error(MC_ERR_NOMEM, "%s: out of memory", f->path);
    for (const mc_json *m = v->child; m; m = m->next) {
        char key[MC_EXCERPT_LEN];
        mc_excerpt(m->key, key, sizeof key);
        if (m->type != MC_JSON_STRING)
            return mc_error(MC_ERR_FORMAT, "%s: __metadata__ value of \"%s\" must be a string, found a %s",
                            f->path, key, mc_json_type_name(m->type));
        if (strlen(m->key) != m->key_len || strlen(m->string) != m->string_len)
            return mc_error(MC_ERR_FORMAT, "%s: __metadata__ entry \"%s\" holds a NUL character",
                            f->path, key);
        f->meta[f->meta_count++] = m;
    }
    /* Each key once: sorted, a repeated key sits next to itself. */
    const mc_json **sorted = malloc((size_t)(f->meta_count ? f->meta_count : 1) * sizeof *sorted);
    if (!sorted) return mc_error(MC_ERR_NOMEM, "%s: out of memory", f->path);
    memcpy(sorted, f->meta, (size_t)f->meta_count * sizeof *sorted);
    qsort(sorted, (size_t)f->meta_count, sizeof *sorted, compare_keys);
    mc_status status = MC_OK;
    for (int i = 1; i < f->meta_count && status == MC_OK; i++)
        if (strcmp(sorted[i - 1]->key, sorted[i]->key) == 0) {
            char key[MC_EXCERPT_LEN];
            mc_excerpt(sorted[i]->key, key, sizeof key);
            status = mc_error(MC_ERR_FORMAT, "%s: __metadata__ gives \"%s\" twice", f->path, key);
        }
    free(sorted);
    return status;
}

static int compare_by_offset(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* qsort has no context argument: the entries being sorted by name. */
static _Thread_local const entry *sort_entries;
static int compare_by_name(const void *a, const void *b) {
    return strcmp(sort_entries[*(const int *)a].name, sort_entries[*(const int *)b].name);
}

/* The tensors must tile the data buffer exactly: sorted by offset, each
 * begins where the previous ended, the first at 0, the last at the end.
 * This rules out overlaps (two tensors sharing bytes), gaps and trailing
 * junk in one pass. */
static mc_status check_layout(const mc_safetensors *f) {
    uint64_t expected_begin = 0;
    for (int i = 0; i < f->count; i++) {
        const entry *e = &f->entries[i];
        if (e->begin < expected_begin)
            return mc_error(MC_ERR_FORMAT,
                            "%s: tensor \"%s\" (bytes [%llu, %llu]) overlaps the tensor before it "
                            "(which ends at %llu)",
                            f->path, e->name, (unsigned long long)e->begin,
                            (unsigned long long)e->end, (unsigned long long)expected_begin);
        if (e->begin > expected_begin)
            return mc_error(MC_ERR_FORMAT,
                            "%s: bytes [%llu, %llu) of the data buffer belong to no tensor (before "
                            "\"%s\")",
                            f->path, (unsigned long long)expected_begin, (unsigned long long)e->begin,
                            e->name);
        expected_begin = e->end;
    }
    if (expected_begin != f->data_len)
        return mc_error(MC_ERR_FORMAT,
                        "%s: the data buffer has %llu bytes but the tensors cover only %llu",
                        f->path, (unsigned long long)f->data_len, (unsigned long long)expected_begin);
    return MC_OK;
}

static mc_status index_by_name(mc_safetensors *f) {
    f->by_name = malloc(((size_t)f->count + 1) * sizeof *f->by_name);
    if (!f->by_name) return mc_error(MC_ERR_NOMEM, "%s: out of memory", f->path);
    for (int i = 0; i < f->count; i++) f->by_name[i] = i;
    sort_entries = f->entries;
    qsort(f->by_name, (size_t)f->count, sizeof *f->by_name, compare_by_name);
    for (int i = 1; i < f->count; i++)
        if (strcmp(f->entries[f->by_name[i]].name, f->entries[f->by_name[i - 1]].name) == 0)
            return mc_error(MC_ERR_FORMAT, "%s: the tensor name \"%s\" appears twice in the header",
                            f->path, f->entries[f->by_name[i]].name);
    return MC_OK;
}

/* Parse and validate the header of the loaded bytes. */
static mc_status parse_header(mc_safetensors *f) {
    if (f->size < 8)
        return mc_error(MC_ERR_FORMAT,
                        "%s: the file has %zu bytes, fewer than the 8-byte header length", f->path,
                        f->size);
    uint64_t header_len = read_u64_le(f->bytes);
    if (header_len > HEADER_LIMIT)
        return mc_error(MC_ERR_FORMAT, "%s: header length %llu is absurdly large (limit %u bytes)",
                        f->path, (unsigned long long)header_len, HEADER_LIMIT);
    if (header_len > f->size - 8)
        return mc_error(MC_ERR_FORMAT,
                        "%s: header length %llu runs past the end of the file (%zu bytes; truncated?)",
                        f->path, (unsigned long long)header_len, f->size);
    if (header_len < 2 || f->bytes[8] != '{')
        return mc_error(MC_ERR_FORMAT, "%s: the header is not a JSON object (it must start with '{')",
                        f->path);
    f->data = f->bytes + 8 + header_len;
    f->data_len = f->size - 8 - header_len;

    char what[512];
    snprintf(what, sizeof what, "%s: header", f->path);
    MC_TRY(mc_json_parse((const char *)f->bytes + 8, (size_t)header_len, what, &f->header));
    const mc_json *root = mc_json_root(f->header);
    if (root->type != MC_JSON_OBJECT)
        return mc_error(MC_ERR_FORMAT, "%s: the header is a JSON %s, expected an object", f->path,
                        mc_json_type_name(root->type));

    f->entries = calloc((size_t)root->count + 1, sizeof *f->entries);
    if (!f->entries) return mc_error(MC_ERR_NOMEM, "%s: out of memory", f->path);
    bool seen_metadata = false;
    for (const mc_json *m = root->child; m; m = m->next) {
        if (strlen(m->key) != m->key_len)
            return mc_error(MC_ERR_FORMAT, "%s: a tensor name contains a NUL character", f->path);
        if (strcmp(m->key, "__metadata__") == 0) {
            if (seen_metadata)
                return mc_error(MC_ERR_FORMAT, "%s: __metadata__ appears twice", f->path);
            seen_metadata = true;
            MC_TRY(parse_metadata(f, m));
            continue;
        }
        if (m->key_len == 0) return mc_error(MC_ERR_FORMAT, "%s: a tensor has an empty name", f->path);
        /* Names are quoted in messages (and in ours, unescaped): one with
         * control characters (a terminal's escape codes) is no name. */
        for (size_t i = 0; i < m->key_len; i++)
            if ((unsigned char)m->key[i] < 0x20 || m->key[i] == 0x7F) {
                char name[MC_EXCERPT_LEN];
                return mc_error(MC_ERR_FORMAT, "%s: the tensor name \"%s\" holds control characters",
                                f->path, mc_excerpt(m->key, name, sizeof name));
            }
        entry *e = &f->entries[f->count++];
        e->name = m->key;
        MC_TRY(parse_entry(f, m, e));
    }
    qsort(f->entries, (size_t)f->count, sizeof *f->entries, compare_by_offset);
    MC_TRY(check_layout(f));
    return index_by_name(f);
}

mc_status mc_safetensors_open(const char *path, mc_safetensors **out) {
    *out = NULL;
    if (!path) return mc_error(MC_ERR_ARG, "safetensors: the path is NULL");
    mc_safetensors *f = calloc(1, sizeof *f);
    if (!f) return mc_error(MC_ERR_NOMEM, "%s: out of memory", path);
    f->path = strdup(path);
    if (!f->path) {
        free(f);
        return mc_error(MC_ERR_NOMEM, "%s: out of memory", path);
    }
    mc_status status = map_file(f);
    if (status == MC_OK) status = parse_header(f);
    if (status != MC_OK) {
        mc_safetensors_close(f);
        return status;
    }
    *out = f;
    return MC_OK;
}

void mc_safetensors_close(mc_safetensors *f) {
    if (!f) return;
    if (f->bytes) {
        if (f->mapped) munmap((void *)f->bytes, f->size);
        else free((void *)f->bytes);
    }
    mc_json_free(f->header);
    free(f->entries);
    free(f->by_name);
    free(f->meta);
    free(f->path);
    free(f);
}

/* ---- lookups ---- */

const char *mc_safetensors_path(const mc_safetensors *f) { return f->path; }
int mc_safetensors_count(const mc_safetensors *f) { return f->count; }

const char *mc_safetensors_name(const mc_safetensors *f, int i) {
    return (i >= 0 && i < f->count) ? f->entries[i].name : NULL;
}

static const entry *find_entry(const mc_safetensors *f, const char *name) {
    int lo = 0, hi = f->count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const entry *e = &f->entries[f->by_name[mid]];
        int c = strcmp(name, e->name);
        if (c == 0) return e;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

bool mc_safetensors_has(const mc_safetensors *f, const char *name) {
    return name && find_entry(f, name) != NULL;
}

static mc_status missing(const mc_safetensors *f, const char *name) {
    return mc_error(MC_ERR_ARG, "%s: no tensor named \"%s\" (the file has %d tensors)", f->path,
                    name ? name : "(null)", f->count);
}

/* The entry's shape as an mc_shape: scalars become (1). */
static mc_status entry_shape(const mc_safetensors *f, const entry *e, mc_shape *shape) {
    if (e->ndim > MC_MAX_DIMS)
        return mc_error(MC_ERR_UNSUPPORTED, "%s: tensor \"%s\" has %d dimensions; mmchain handles %d",
                        f->path, e->name, e->ndim, MC_MAX_DIMS);
    shape->ndim = e->ndim ? e->ndim : 1;
    shape->dim[0] = 1;
    for (int i = 0; i < e->ndim; i++) shape->dim[i] = e->dim[i];
    return MC_OK;
}

mc_status mc_safetensors_info(const mc_safetensors *f, const char *name, mc_dtype *dtype,
                              mc_shape *shape) {
    const entry *e = name ? find_entry(f, name) : NULL;
    if (!e) return missing(f, name);
    if (dtype) *dtype = e->dtype;
    if (shape) MC_TRY(entry_shape(f, e, shape));
    return MC_OK;
}

const char *mc_safetensors_metadata(const mc_safetensors *f, const char *key) {
    for (int i = 0; i < f->meta_count; i++)
        if (strcmp(f->meta[i]->key, key) == 0) return f->meta[i]->string;
    return NULL;
}

int mc_safetensors_metadata_count(const mc_safetensors *f) { return f->meta_count; }

const char *mc_safetensors_metadata_key(const mc_safetensors *f, int i) {
    return (i >= 0 && i < f->meta_count) ? f->meta[i]->key : NULL;
}

/* ---- conversions to float32 ---- */

/* IEEE half -> float: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
 * Subnormal halves (exponent 0) are mantissa * 2^-24; exponent 31 is
 * infinity (mantissa 0) or NaN. */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exponent = (h >> 10) & 0x1F;
    uint32_t mantissa = h & 0x3FF;
    uint32_t bits;
    if (exponent == 0) {
        float magnitude = (float)mantissa * (1.0f / 16777216.0f); /* 2^-24, exact */
        return sign ? -magnitude : magnitude;
    }
    if (exponent == 31) bits = sign | 0x7F800000u | (mantissa << 13);
    else bits = sign | ((exponent - 15 + 127) << 23) | (mantissa << 13);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* bfloat16 is the top half of a float32. */
static float bf16_to_float(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Little-endian unsigned integer of `size` bytes at p. */
static uint64_t load_le(const unsigned char *p, size_t size) {
    uint64_t v = 0;
    for (size_t i = size; i-- > 0;) v = (v << 8) | p[i];
    return v;
}

static bool host_is_little_endian(void) {
    const uint16_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    return first == 1;
}

/* Convert e's n = e->numel elements to float32 into dst. */
static void decode_floats(const mc_safetensors *f, const entry *e, float *dst) {
    const unsigned char *src = f->data + e->begin;
    uint64_t n = e->numel;
    switch (e->dtype) {
    case MC_DTYPE_F32:
        if (host_is_little_endian()) {
            memcpy(dst, src, (size_t)n * 4); /* src may be unaligned: memcpy, never a cast */
        } else {
            for (uint64_t i = 0; i < n; i++) {
                uint32_t bits = (uint32_t)load_le(src + 4 * i, 4);
                memcpy(&dst[i], &bits, 4);
            }
        }
        break;
    case MC_DTYPE_F16:
        for (uint64_t i = 0; i < n; i++) dst[i] = half_to_float((uint16_t)load_le(src + 2 * i, 2));
        break;
    case MC_DTYPE_BF16:
        for (uint64_t i = 0; i < n; i++) dst[i] = bf16_to_float((uint16_t)load_le(src + 2 * i, 2));
        break;
    case MC_DTYPE_F64:
        for (uint64_t i = 0; i < n; i++) {
            uint64_t bits = load_le(src + 8 * i, 8);
            double d;
            memcpy(&d, &bits, 8);
            dst[i] = (float)d;
        }
        break;
    default: break; /* callers check dtype_is_float first */
    }
}

static mc_status require_float(const mc_safetensors *f, const entry *e) {
    if (!mc_dtype_is_float(e->dtype))
        return mc_error(MC_ERR_FORMAT,
                        "%s: tensor \"%s\" has dtype %s, expected a float type (F32, F16, BF16, F64); "
                        "integer tensors are read with mc_safetensors_read_ints",
                        f->path, e->name, mc_dtype_name(e->dtype));
    return MC_OK;
}

mc_status mc_safetensors_read_into(const mc_safetensors *f, const char *name, mc_tensor *dst) {
    const entry *e = name ? find_entry(f, name) : NULL;
    if (!e) return missing(f, name);
    MC_TRY(require_float(f, e));
    mc_shape shape;
    MC_TRY(entry_shape(f, e, &shape));
    if (!mc_shape_equal(shape, dst->shape)) {
        char a[128], b[128];
        return mc_error(MC_ERR_SHAPE, "%s: tensor \"%s\" has shape %s, destination %s expects %s",
                        f->path, name, mc_shape_str(shape, a, sizeof a), dst->name,
                        mc_shape_str(dst->shape, b, sizeof b));
    }
    decode_floats(f, e, dst->data);
    mc_tensor_touch(dst);
    return MC_OK;
}

mc_status mc_safetensors_read(const mc_safetensors *f, const char *name, mc_tensor **out) {
    *out = NULL;
    const entry *e = name ? find_entry(f, name) : NULL;
    if (!e) return missing(f, name);
    MC_TRY(require_float(f, e));
    mc_shape shape;
    MC_TRY(entry_shape(f, e, &shape));
    if (e->numel == 0)
        return mc_error(MC_ERR_UNSUPPORTED, "%s: tensor \"%s\" has no elements (a zero dimension)",
                        f->path, name);
    mc_tensor *t;
    MC_TRY(mc_tensor_new(&t, shape, name));
    decode_floats(f, e, t->data);
    *out = t;
    return MC_OK;
}

mc_status mc_safetensors_read_ints(const mc_safetensors *f, const char *name, int64_t **values,
                                   mc_shape *shape) {
    *values = NULL;
    const entry *e = name ? find_entry(f, name) : NULL;
    if (!e) return missing(f, name);
    if (mc_dtype_is_float(e->dtype))
        return mc_error(MC_ERR_FORMAT,
                        "%s: tensor \"%s\" has dtype %s, expected an integer type (I64, I32, I16, I8, "
                        "U8, BOOL)",
                        f->path, name, mc_dtype_name(e->dtype));
    mc_shape s;
    MC_TRY(entry_shape(f, e, &s));
    int64_t *v = malloc(((size_t)e->numel + 1) * sizeof *v);
    if (!v)
        return mc_error(MC_ERR_NOMEM, "%s: tensor \"%s\": cannot allocate %llu integers", f->path,
                        name, (unsigned long long)e->numel);
    size_t size = mc_dtype_size(e->dtype);
    const unsigned char *src = f->data + e->begin;
    for (uint64_t i = 0; i < e->numel; i++) {
        uint64_t raw = load_le(src + size * i, size);
        switch (e->dtype) {
        case MC_DTYPE_I64: v[i] = (int64_t)raw; break;
        case MC_DTYPE_I32: v[i] = (int32_t)(uint32_t)raw; break;
        case MC_DTYPE_I16: v[i] = (int16_t)(uint16_t)raw; break;
        case MC_DTYPE_I8: v[i] = (int8_t)(uint8_t)raw; break;
        case MC_DTYPE_BOOL: v[i] = raw != 0; break;
        default: v[i] = (int64_t)raw; break; /* U8 */
        }
    }
    *values = v;
    if (shape) *shape = s;
    return MC_OK;
}

/* ---- writing ---- */

/* A growing text, truncated (with "...") when it runs out of room. */
typedef struct text_buf {
    char *buf;
    size_t cap, len;
} text_buf;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void text_add(text_buf *t, const char *fmt, ...) {
    if (!t->buf || t->cap == 0 || t->len + 1 >= t->cap) return;
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, args);
    va_end(args);
    if (n < 0) return;
    if ((size_t)n >= t->cap - t->len) {
        t->len = t->cap - 1;
        if (t->cap >= 4) memcpy(t->buf + t->cap - 4, "...", 4);
    } else {
        t->len += (size_t)n;
    }
}


/* Append s as a JSON string literal (with quotes and escapes). */
static void json_add_string(text_buf *t, const char *s) {
    text_add(t, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"') text_add(t, "\\\"");
        else if (*p == '\\') text_add(t, "\\\\");
        else if (*p == '\n') text_add(t, "\\n");
        else if (*p == '\t') text_add(t, "\\t");
        else if (*p == '\r') text_add(t, "\\r");
        else if (*p < 0x20) text_add(t, "\\u%04x", *p);
        else text_add(t, "%c", *p);
    }
    text_add(t, "\"");
}

/* Bytes that json_add_string writes for s (to size the header exactly). */
static size_t json_string_bytes(const char *s) {
    size_t n = 2;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\' || *p == '\n' || *p == '\t' || *p == '\r') n += 2;
        else if (*p < 0x20) n += 6;
        else n += 1;
    }
    return n;
}

/* Whether s is well-formed UTF-8, as the reader's JSON parser requires of
 * every string (json.c): what the writer writes, the reader must read. */
static bool is_utf8(const char *s) {
    const unsigned char *bytes = (const unsigned char *)s;
    size_t left = strlen(s);
    while (left > 0) {
        uint32_t cp;
        const int length = mc_utf8_decode_one(bytes, left, &cp);
        if (length == 0) return false;
        bytes += length, left -= (size_t)length;
    }
    return true;
}

static mc_status check_write_inputs(const char *path, int n, mc_tensor *const *tensors, int n_meta,
                                    const mc_metadata_entry *meta) {
    if (!path || n < 0 || n_meta < 0 || (n > 0 && !tensors) || (n_meta > 0 && !meta))
        return mc_error(MC_ERR_ARG, "safetensors write %s: bad arguments", path ? path : "(null)");
    for (int i = 0; i < n; i++) {
        if (!tensors[i] || !tensors[i]->data)
            return mc_error(MC_ERR_ARG, "safetensors write %s: tensor %d is NULL", path, i);
        const char *name = tensors[i]->name;
        if (name[0] == '\0')
            return mc_error(MC_ERR_ARG, "safetensors write %s: tensor %d has no name", path, i);
        if (strcmp(name, "__metadata__") == 0)
            return mc_error(MC_ERR_ARG, "safetensors write %s: \"__metadata__\" is reserved", path);
        if (!is_utf8(name))
            return mc_error(MC_ERR_ARG, "safetensors write %s: the name of tensor %d is not UTF-8",
                            path, i);
        for (const char *c = name; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7F)
                return mc_error(MC_ERR_ARG, "safetensors write %s: the name of tensor %d holds "
                                "control characters (the reader refuses them)", path, i);
        for (int j = 0; j < i; j++)
            if (strcmp(tensors[j]->name, name) == 0)
                return mc_error(MC_ERR_ARG, "safetensors write %s: two tensors are named \"%s\"",
                                path, name);
    }
    for (int i = 0; i < n_meta; i++) {
        if (!meta[i].key || !meta[i].value)
            return mc_error(MC_ERR_ARG, "safetensors write %s: metadata entry %d is NULL", path, i);
        if (!is_utf8(meta[i].key) || !is_utf8(meta[i].value))
            return mc_error(MC_ERR_ARG, "safetensors write %s: metadata entry %d (its key or value) "
                            "is not UTF-8", path, i);
        for (int j = 0; j < i; j++)
            if (strcmp(meta[j].key, meta[i].key) == 0)
                return mc_error(MC_ERR_ARG, "safetensors write %s: metadata key \"%s\" given twice",
                                path, meta[i].key);
    }
    return MC_OK;
}

/* The header JSON, padded with spaces to a multiple of 8 bytes so the data
 * that follows the 8-byte length is 8-byte aligned (as the reference
 * implementation does). malloc'd into *out. */
static mc_status build_header(const char *path, int n, mc_tensor *const *tensors, int n_meta,
                              const mc_metadata_entry *meta, char **out, size_t *out_len) {
    /* An upper bound on the size: names/values escaped, shapes 21 chars per dim. */
    size_t cap = 64;
    for (int i = 0; i < n; i++)
        cap += json_string_bytes(tensors[i]->name) + 96 + 22 * (size_t)MC_MAX_DIMS;
    for (int i = 0; i < n_meta; i++)
        cap += json_string_bytes(meta[i].key) + json_string_bytes(meta[i].value) + 4;
    char *buf = malloc(cap + 8);
    if (!buf) return mc_error(MC_ERR_NOMEM, "safetensors write %s: cannot allocate the header", path);
    text_buf t = {buf, cap, 0};
    text_add(&t, "{");
    if (n_meta > 0) {
        text_add(&t, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) text_add(&t, ",");
            json_add_string(&t, meta[i].key);
            text_add(&t, ":");
            json_add_string(&t, meta[i].value);
        }
        text_add(&t, "}");
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const mc_tensor *x = tensors[i];
        if (n_meta > 0 || i > 0) text_add(&t, ",");
        json_add_string(&t, x->name);
        text_add(&t, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < x->shape.ndim; d++)
            text_add(&t, d ? ",%lld" : "%lld", (long long)x->shape.dim[d]);
        uint64_t bytes = (uint64_t)x->numel * 4;
        text_add(&t, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                 (unsigned long long)(offset + bytes));
        offset += bytes;
    }
    text_add(&t, "}");
    while (t.len % 8 != 0) text_add(&t, " ");
    if (t.len + 1 >= t.cap) { /* cannot happen with the bound above; never write a cut header */
        free(buf);
        return mc_error(MC_ERR_STATE, "safetensors write %s: header size estimate was too small", path);
    }
    *out = buf;
    *out_len = t.len;
    return MC_OK;
}

/* Write n floats little-endian. */
static bool write_floats(FILE *fp, const float *values, int64_t n) {
    if (host_is_little_endian()) return fwrite(values, sizeof(float), (size_t)n, fp) == (size_t)n;
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &values[i], 4);
        unsigned char le[4] = {(unsigned char)bits, (unsigned char)(bits >> 8),
                               (unsigned char)(bits >> 16), (unsigned char)(bits >> 24)};
        if (fwrite(le, 1, 4, fp) != 4) return false;
    }
    return true;
}

/* What the atomic writer (atomic.c) streams into its temporary file. */
typedef struct safetensors_contents {
    const char *path;
    const char *header;
    size_t header_len;
    int n;
    mc_tensor *const *tensors;
} safetensors_contents;

/* The 8-byte header length, the header, then every tensor's data. */
static mc_status write_contents(void *ctx, FILE *fp) {
    const safetensors_contents *c = ctx;
    unsigned char len_le[8];
    for (int i = 0; i < 8; i++) len_le[i] = (unsigned char)((uint64_t)c->header_len >> (8 * i));
    bool ok = fwrite(len_le, 1, 8, fp) == 8 && fwrite(c->header, 1, c->header_len, fp) == c->header_len;
    for (int i = 0; ok && i < c->n; i++) ok = write_floats(fp, c->tensors[i]->data, c->tensors[i]->numel);
    if (!ok) return mc_error(MC_ERR_IO, "%s: write failed: %s", c->path, strerror(errno));
    return MC_OK;
}

mc_status mc_safetensors_write(const char *path, int n, mc_tensor *const *tensors, int n_meta,
                               const mc_metadata_entry *meta) {
    MC_TRY(check_write_inputs(path, n, tensors, n_meta, meta));
    char *header = NULL;
    size_t header_len = 0;
    MC_TRY(build_header(path, n, tensors, n_meta, meta, &header, &header_len));
    /* Temporary file, fsync, rename: a crash mid-write keeps the old file. */
    safetensors_contents contents = {path, header, header_len, n, tensors};
    mc_status status = mc_write_file_atomic_with(path, write_contents, &contents);
    free(header);
    return status;
}
