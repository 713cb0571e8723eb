/* safetensors reading and writing, the JSON parser under it, and hostile
 * files: every malformed case builds its bad bytes right here and expects a
 * clear error; a fuzz loop mutates a valid file and expects no crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "../lib/io/json.h" /* internal, but the parser deserves its own tests */

/* ---- helpers ---- */

static void write_safetensors(const char *path, const char *header, const void *data,
                              size_t data_len) {
    mc_test_write_safetensors(path, header, data, data_len, UINT64_MAX);
}

/* Opening `path` must fail with `code` and a message containing `needle`,
 * leaving the handle NULL. */
static void expect_file_refused(const char *path, mc_status code, const char *needle) {
    mc_safetensors *f = (mc_safetensors *)0x1;
    MC_CHECK_FAILS(mc_safetensors_open(path, &f), code, needle);
    ck_assert_ptr_null(f);
}

/* Open `header` + zero-filled data of data_len bytes; expect failure. */
static void expect_open_fails(const char *header, size_t data_len, mc_status code,
                              const char *needle) {
    char path[600];
    mc_test_dir_path("bad.safetensors", path, sizeof path);
    unsigned char *zeros = calloc(data_len + 1, 1);
    ck_assert_ptr_nonnull(zeros);
    write_safetensors(path, header, zeros, data_len);
    free(zeros);
    expect_file_refused(path, code, needle);
    /* Every message names the file. */
    ck_assert_msg(strstr(mc_last_error(), path) != NULL, "message lacks the path: %s",
                  mc_last_error());
}

/* A file `name` of the n raw `bytes`, too short to be safetensors. */
static void expect_bytes_refused(const char *name, const void *bytes, size_t n, const char *needle) {
    char path[600];
    mc_test_write_file(mc_test_dir_path(name, path, sizeof path), bytes, n);
    expect_file_refused(path, MC_ERR_FORMAT, needle);
}

/* A file `name` whose length field states `stated` bytes for the header "{}". */
static void expect_header_length_refused(const char *name, uint64_t stated, const char *needle) {
    char path[600];
    mc_test_write_safetensors(mc_test_dir_path(name, path, sizeof path), "{}", NULL, 0, stated);
    expect_file_refused(path, MC_ERR_FORMAT, needle);
}

static mc_tensor *make_tensor(mc_shape shape, const char *name, float start, float step) {
    mc_tensor *t;
    MC_CHECK_OK(mc_tensor_new(&t, shape, name));
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = start + step * (float)i;
    return t;
}

/* ---- round trips ---- */

START_TEST(test_round_trip_tensors_and_metadata) {
    char path[600];
    mc_test_dir_path("rt.safetensors", path, sizeof path);
    mc_tensor *tensors[3] = {
        make_tensor(MC_SHAPE(2, 3), "layer.weight", -1.5f, 0.25f),
        make_tensor(MC_SHAPE(4), "layer.bias", 1e-8f, 3.0f),
        make_tensor(MC_SHAPE(1, 2, 3, 4), "conv \"quoted\"\\name", 100.0f, -7.5f),
    };
    mc_metadata_entry meta[] = {
        {"format", "mmchain-checkpoint-1"},
        {"note", "line1\nline2 \"q\" caf\xC3\xA9 \x01"},
        {"step", "42"},
    };
    MC_CHECK_OK(mc_safetensors_write(path, 3, tensors, 3, meta));

    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    ck_assert_int_eq(mc_safetensors_count(f), 3);
    /* Names come in data order, which is the order written. */
    ck_assert_str_eq(mc_safetensors_name(f, 0), "layer.weight");
    ck_assert_str_eq(mc_safetensors_name(f, 1), "layer.bias");
    ck_assert_str_eq(mc_safetensors_name(f, 2), "conv \"quoted\"\\name");
    ck_assert_ptr_null(mc_safetensors_name(f, 3));
    ck_assert(mc_safetensors_has(f, "layer.bias"));
    ck_assert(!mc_safetensors_has(f, "layer.bia"));

    for (int i = 0; i < 3; i++) {
        mc_dtype dtype;
        mc_shape shape;
        MC_CHECK_OK(mc_safetensors_info(f, tensors[i]->name, &dtype, &shape));
        ck_assert_int_eq(dtype, MC_DTYPE_F32);
        ck_assert(mc_shape_equal(shape, tensors[i]->shape));
        mc_tensor *back;
        MC_CHECK_OK(mc_safetensors_read(f, tensors[i]->name, &back));
        ck_assert_str_eq(back->name, tensors[i]->name);
        ck_assert(mc_shape_equal(back->shape, tensors[i]->shape));
        /* Bit-exact: F32 is stored as is. */
        ck_assert_int_eq(memcmp(back->data, tensors[i]->data, (size_t)back->numel * 4), 0);
        mc_tensor_free(back);
    }
    ck_assert_int_eq(mc_safetensors_metadata_count(f), 3);
    ck_assert_str_eq(mc_safetensors_metadata(f, "format"), "mmchain-checkpoint-1");
    ck_assert_str_eq(mc_safetensors_metadata(f, "note"), "line1\nline2 \"q\" caf\xC3\xA9 \x01");
    ck_assert_str_eq(mc_safetensors_metadata(f, "step"), "42");
    ck_assert_str_eq(mc_safetensors_metadata_key(f, 2), "step");
    ck_assert_ptr_null(mc_safetensors_metadata(f, "absent"));
    MC_CHECK_FAILS(mc_safetensors_info(f, "nope", NULL, NULL), MC_ERR_ARG, "no tensor named \"nope\"");

    /* read_into checks the destination's shape exactly. */
    mc_tensor *wrong;
    MC_CHECK_OK(mc_tensor_new(&wrong, MC_SHAPE(3, 2), "dst"));
    MC_CHECK_FAILS(mc_safetensors_read_into(f, "layer.weight", wrong), MC_ERR_SHAPE,
                   "has shape (2, 3), destination dst expects (3, 2)");
    MC_CHECK_OK(mc_tensor_reshape_inplace(wrong, MC_SHAPE(2, 3)));
    MC_CHECK_OK(mc_safetensors_read_into(f, "layer.weight", wrong));
    ck_assert_float_eq(wrong->data[5], -1.5f + 5 * 0.25f);
    mc_tensor_free(wrong);

    mc_safetensors_close(f);
    for (int i = 0; i < 3; i++) mc_tensor_free(tensors[i]);
}
END_TEST

/* The writer's bytes, against the format written out by hand. */
START_TEST(test_writer_exact_bytes) {
    char path[600];
    mc_test_dir_path("exact.safetensors", path, sizeof path);
    mc_tensor *a = make_tensor(MC_SHAPE(2), "a", 1.0f, -3.0f); /* [1, -2] */
    MC_CHECK_OK(mc_safetensors_write(path, 1, &a, 0, NULL));
    mc_tensor_free(a);

    /* 54 bytes of JSON, padded with 2 spaces to 56 (a multiple of 8, so the
     * data is aligned); 1.0f = 0x3F800000 and -2.0f = 0xC0000000, little-endian. */
    const char *json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  ";
    ck_assert_uint_eq(strlen(json), 56);
    unsigned char expected[8 + 56 + 8] = {56, 0, 0, 0, 0, 0, 0, 0};
    memcpy(expected + 8, json, 56);
    const unsigned char data[8] = {0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0};
    memcpy(expected + 64, data, 8);

    unsigned char got[128];
    FILE *fp = fopen(path, "rb");
    ck_assert_ptr_nonnull(fp);
    size_t n = fread(got, 1, sizeof got, fp);
    fclose(fp);
    ck_assert_uint_eq(n, sizeof expected);
    ck_assert_int_eq(memcmp(got, expected, sizeof expected), 0);
}
END_TEST

START_TEST(test_write_is_atomic) {
    char path[600];
    mc_test_dir_path("ckpt.safetensors", path, sizeof path);
    mc_tensor *t[2] = {make_tensor(MC_SHAPE(3), "w", 1, 1), make_tensor(MC_SHAPE(3), "w", 5, 1)};
    MC_CHECK_OK(mc_safetensors_write(path, 1, t, 0, NULL));

    /* A rejected write (two tensors named "w") leaves the old file alone. */
    MC_CHECK_FAILS(mc_safetensors_write(path, 2, t, 0, NULL), MC_ERR_ARG, "two tensors are named \"w\"");
    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    mc_tensor *back;
    MC_CHECK_OK(mc_safetensors_read(f, "w", &back));
    ck_assert_float_eq(back->data[2], 3.0f);
    mc_tensor_free(back);
    mc_safetensors_close(f);

    /* A write that fails at the last step (the destination is a folder, so
     * the rename fails) removes its temporary file. */
    char folder[600];
    mc_test_dir_path("folder", folder, sizeof folder);
    ck_assert_int_eq(mkdir(folder, 0755), 0);
    char inside[700];
    snprintf(inside, sizeof inside, "%s/x", folder);
    mc_test_write_file(inside, "x", 1);
    MC_CHECK_FAILS(mc_safetensors_write(folder, 1, t, 0, NULL), MC_ERR_IO, "rename");
    DIR *dir = opendir(mc_test_dir);
    ck_assert_ptr_nonnull(dir);
    int entries = 0;
    for (struct dirent *d; (d = readdir(dir));) {
        if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
        ck_assert_msg(strstr(d->d_name, ".tmp.") == NULL, "left a temporary file: %s", d->d_name);
        entries++;
    }
    closedir(dir);
    ck_assert_int_eq(entries, 2); /* ckpt.safetensors and folder */

    /* A folder that does not exist. */
    char nowhere[700];
    snprintf(nowhere, sizeof nowhere, "%s/missing/x.safetensors", mc_test_dir);
    MC_CHECK_FAILS(mc_safetensors_write(nowhere, 1, t, 0, NULL), MC_ERR_IO, "temporary file");

    /* An unnamed tensor and the reserved name. */
    mc_tensor_set_name(t[1], "");
    MC_CHECK_FAILS(mc_safetensors_write(path, 1, &t[1], 0, NULL), MC_ERR_ARG, "has no name");
    mc_tensor_set_name(t[1], "__metadata__");
    MC_CHECK_FAILS(mc_safetensors_write(path, 1, &t[1], 0, NULL), MC_ERR_ARG, "reserved");
    mc_metadata_entry dup[] = {{"k", "1"}, {"k", "2"}};
    MC_CHECK_FAILS(mc_safetensors_write(path, 1, t, 2, dup), MC_ERR_ARG, "\"k\" given twice");
    /* Bytes that are not UTF-8 (a Latin-1 path as a value): the reader would
     * refuse the file, so the writer refuses them and the file stays. */
    size_t before_len = 0, after_len = 0;
    char *before = mc_test_read_file(path, &before_len);
    mc_metadata_entry latin1[] = {{"weights", "/data/mod\xe8le.safetensors"}};
    MC_CHECK_FAILS(mc_safetensors_write(path, 1, t, 1, latin1), MC_ERR_ARG,
                   "metadata entry 0 (its key or value) is not UTF-8");
    char *after = mc_test_read_file(path, &after_len);
    ck_assert(before_len == after_len && memcmp(before, after, before_len) == 0);
    free(before), free(after);
    mc_tensor_set_name(t[1], "conv\xff");
    MC_CHECK_FAILS(mc_safetensors_write(path, 1, &t[1], 0, NULL), MC_ERR_ARG,
                   "the name of tensor 0 is not UTF-8");
    mc_metadata_entry accented[] = {{"weights", "/data/mod\xc3\xa8le.safetensors"}};
    MC_CHECK_OK(mc_safetensors_write(path, 1, t, 1, accented)); /* UTF-8: fine, and read back */
    mc_safetensors *accented_file;
    MC_CHECK_OK(mc_safetensors_open(path, &accented_file));
    ck_assert_str_eq(mc_safetensors_metadata(accented_file, "weights"), "/data/mod\xc3\xa8le.safetensors");
    mc_safetensors_close(accented_file);
    mc_tensor_free(t[0]);
    mc_tensor_free(t[1]);
}
END_TEST

START_TEST(test_f16_decoding) {
    /* IEEE half: sign | 5-bit exponent (bias 15) | 10-bit mantissa.
     *   0x3C00: exp 15, mantissa 0           -> 1.0
     *   0xC000: sign, exp 16                 -> -2.0
     *   0x3555: exp 13, mantissa 0x155 = 341 -> 2^-2 * (1 + 341/1024) = 0.333251953125
     *   0x7BFF: exp 30, mantissa 1023        -> 2^15 * (2 - 2^-10) = 65504 (largest half)
     *   0x0400: exp 1, mantissa 0            -> 2^-14 = 6.103515625e-05 (smallest normal)
     *   0x03FF: subnormal, mantissa 1023     -> 1023 * 2^-24 = 6.097555160522461e-05
     *   0x0001: subnormal, mantissa 1        -> 2^-24 = 5.960464477539063e-08
     *   0x8000: sign only                    -> -0.0
     *   0x7C00 / 0xFC00: exp 31, mantissa 0  -> +inf / -inf
     *   0x7E00: exp 31, mantissa != 0        -> NaN */
    const uint16_t halves[] = {0x3C00, 0xC000, 0x3555, 0x7BFF, 0x0400, 0x03FF,
                               0x0001, 0x8000, 0x7C00, 0xFC00, 0x7E00};
    const float expected[] = {1.0f, -2.0f, 0.333251953125f, 65504.0f, 6.103515625e-05f,
                              6.097555160522461e-05f, 5.960464477539063e-08f, -0.0f};
    unsigned char data[22];
    for (int i = 0; i < 11; i++) data[2 * i] = (unsigned char)halves[i], data[2 * i + 1] = (unsigned char)(halves[i] >> 8);
    char path[600];
    mc_test_dir_path("f16.safetensors", path, sizeof path);
    write_safetensors(path, "{\"h\":{\"dtype\":\"F16\",\"shape\":[11],\"data_offsets\":[0,22]}}", data, 22);
    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    mc_dtype dtype;
    MC_CHECK_OK(mc_safetensors_info(f, "h", &dtype, NULL));
    ck_assert_int_eq(dtype, MC_DTYPE_F16);
    ck_assert_str_eq(mc_dtype_name(dtype), "F16");
    ck_assert_uint_eq(mc_dtype_size(dtype), 2);
    mc_tensor *t;
    MC_CHECK_OK(mc_safetensors_read(f, "h", &t));
    for (int i = 0; i < 8; i++)
        ck_assert_msg(t->data[i] == expected[i], "half 0x%04x -> %.9g, expected %.9g", halves[i],
                      (double)t->data[i], (double)expected[i]);
    ck_assert(signbit(t->data[7]));
    ck_assert(isinf(t->data[8]) && t->data[8] > 0);
    ck_assert(isinf(t->data[9]) && t->data[9] < 0);
    ck_assert(isnan(t->data[10]));
    mc_tensor_free(t);
    mc_safetensors_close(f);
}
END_TEST

START_TEST(test_bf16_and_f64_decoding) {
    /* bfloat16 is the upper 16 bits of a float32:
     *   0x3F80 -> 0x3F800000 = 1.0
     *   0xC040 -> 0xC0400000 = -3.0 (exp 128, mantissa 0.5: -1.5 * 2)
     *   0x4049 -> 0x40490000 = 2 * (1 + 0x49/128) = 3.140625
     *   0x0001 -> 0x00010000 = 2^16 * 2^-149 = 2^-133 (a float subnormal)
     *   0xFF80 -> -inf
     * F64 0.1 (0x3FB999999999999A) rounds to the float nearest 0.1. */
    const uint16_t bf[] = {0x3F80, 0xC040, 0x4049, 0x0001, 0xFF80};
    unsigned char data[10 + 8];
    for (int i = 0; i < 5; i++) data[2 * i] = (unsigned char)bf[i], data[2 * i + 1] = (unsigned char)(bf[i] >> 8);
    const uint64_t tenth = 0x3FB999999999999AULL;
    for (int i = 0; i < 8; i++) data[10 + i] = (unsigned char)(tenth >> (8 * i));
    char path[600];
    mc_test_dir_path("bf16.safetensors", path, sizeof path);
    write_safetensors(path,
                      "{\"b\":{\"dtype\":\"BF16\",\"shape\":[5],\"data_offsets\":[0,10]},"
                      "\"d\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[10,18]}}",
                      data, sizeof data);
    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    mc_tensor *t;
    MC_CHECK_OK(mc_safetensors_read(f, "b", &t));
    ck_assert(t->data[0] == 1.0f);
    ck_assert(t->data[1] == -3.0f);
    ck_assert(t->data[2] == 3.140625f);
    ck_assert(t->data[3] == ldexpf(1.0f, -133));
    ck_assert(isinf(t->data[4]) && t->data[4] < 0);
    mc_tensor_free(t);
    /* A scalar (shape []) reads as shape (1). */
    mc_shape shape;
    MC_CHECK_OK(mc_safetensors_info(f, "d", NULL, &shape));
    ck_assert(mc_shape_equal(shape, MC_SHAPE(1)));
    MC_CHECK_OK(mc_safetensors_read(f, "d", &t));
    ck_assert(t->data[0] == 0.1f);
    mc_tensor_free(t);
    mc_safetensors_close(f);
}
END_TEST

START_TEST(test_integer_tensors) {
    /* I64 [-1, 2^40], I32 [-5, 7], I8 [-128], U8 [255], BOOL [0, 1]. */
    unsigned char data[16 + 8 + 1 + 1 + 2] = {0};
    memset(data, 0xFF, 8);  /* -1 */
    data[8 + 5] = 0x01;     /* 2^40: byte 5 holds bits 40..47 */
    const int32_t i32[2] = {-5, 7};
    for (int k = 0; k < 2; k++)
        for (int b = 0; b < 4; b++) data[16 + 4 * k + b] = (unsigned char)((uint32_t)i32[k] >> (8 * b));
    data[24] = 0x80; /* I8 -128 */
    data[25] = 0xFF; /* U8 255 */
    data[26] = 0, data[27] = 1;
    char path[600];
    mc_test_dir_path("ints.safetensors", path, sizeof path);
    write_safetensors(path,
                      "{\"a\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]},"
                      "\"b\":{\"dtype\":\"I32\",\"shape\":[1,2],\"data_offsets\":[16,24]},"
                      "\"c\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[24,25]},"
                      "\"d\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[25,26]},"
                      "\"e\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[26,28]}}",
                      data, sizeof data);
    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    int64_t *v;
    mc_shape shape;
    MC_CHECK_OK(mc_safetensors_read_ints(f, "a", &v, &shape));
    ck_assert(v[0] == -1 && v[1] == (1LL << 40));
    free(v);
    MC_CHECK_OK(mc_safetensors_read_ints(f, "b", &v, &shape));
    ck_assert(mc_shape_equal(shape, MC_SHAPE(1, 2)));
    ck_assert(v[0] == -5 && v[1] == 7);
    free(v);
    MC_CHECK_OK(mc_safetensors_read_ints(f, "c", &v, NULL));
    ck_assert(v[0] == -128);
    free(v);
    MC_CHECK_OK(mc_safetensors_read_ints(f, "d", &v, NULL));
    ck_assert(v[0] == 255);
    free(v);
    MC_CHECK_OK(mc_safetensors_read_ints(f, "e", &v, NULL));
    ck_assert(v[0] == 0 && v[1] == 1);
    free(v);
    mc_tensor *t;
    MC_CHECK_FAILS(mc_safetensors_read(f, "a", &t), MC_ERR_FORMAT, "mc_safetensors_read_ints");
    ck_assert_ptr_null(t);
    mc_safetensors_close(f);
}
END_TEST

/* ---- hostile files: each one its own test ---- */

START_TEST(test_bad_missing_file) {
    char path[600];
    mc_safetensors *f;
    MC_CHECK_FAILS(mc_safetensors_open(mc_test_dir_path("absent.safetensors", path, sizeof path), &f),
                   MC_ERR_IO, "cannot open");
    MC_CHECK_FAILS(mc_safetensors_open(mc_test_dir, &f), MC_ERR_IO, "not a regular file");
}
END_TEST

START_TEST(test_bad_empty_file) {
    expect_bytes_refused("empty.safetensors", "", 0, "the file is empty");
}
END_TEST

START_TEST(test_bad_short_length_field) {
    expect_bytes_refused("short.safetensors", "\x10\x00\x00\x00\x00", 5,
                         "5 bytes, fewer than the 8-byte");
}
END_TEST

START_TEST(test_bad_header_length_past_end) {
    /* Claims a 1000-byte header; the file has 8 + 2 bytes. */
    expect_header_length_refused("past.safetensors", 1000, "header length 1000 runs past the end");
}
END_TEST

START_TEST(test_bad_header_length_absurd) {
    expect_header_length_refused("absurd.safetensors", UINT64_MAX - 1, "absurdly large");
}
END_TEST

START_TEST(test_bad_invalid_json) {
    expect_open_fails("{\"a\":{\"dtype\":\"F32\",,}}", 0, MC_ERR_FORMAT, "invalid JSON at line 1");
    expect_open_fails("{\"a\":{\"dtype\":\"F32\"", 0, MC_ERR_FORMAT, "invalid JSON");
    expect_open_fails("{\"a\":1} trailing", 0, MC_ERR_FORMAT, "after the JSON value");
}
END_TEST

START_TEST(test_bad_non_object_header) {
    expect_open_fails("[1, 2, 3]", 0, MC_ERR_FORMAT, "not a JSON object");
    expect_open_fails("\"text\"", 0, MC_ERR_FORMAT, "not a JSON object");
    expect_open_fails("{\"a\":[1,2]}", 0, MC_ERR_FORMAT, "tensor \"a\": expected an object, found a array");
    expect_open_fails("{\"__metadata__\":[\"x\"]}", 0, MC_ERR_FORMAT, "__metadata__ must be an object");
    expect_open_fails("{\"__metadata__\":{\"k\":1}}", 0, MC_ERR_FORMAT, "value of \"k\" must be a string");
}
END_TEST

START_TEST(test_bad_unknown_dtype) {
    expect_open_fails("{\"w\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
                      MC_ERR_FORMAT, "tensor \"w\": unknown or unsupported dtype \"Q7\"");
    expect_open_fails("{\"w\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
                      MC_ERR_FORMAT, "dtype must be a string");
    /* strcmp would read this as F32. */
    expect_open_fails("{\"w\":{\"dtype\":\"F32\\u0000XY\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                      MC_ERR_FORMAT, "tensor \"w\": unknown or unsupported dtype");
}
END_TEST

START_TEST(test_bad_missing_or_extra_fields) {
    expect_open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, MC_ERR_FORMAT,
                      "exactly the fields dtype, shape, data_offsets");
    expect_open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
                      MC_ERR_FORMAT, "unknown field \"x\"");
    expect_open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"shape\":[1]}}", 4,
                      MC_ERR_FORMAT, "data_offsets must be");
}
END_TEST

START_TEST(test_bad_begin_after_end) {
    expect_open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8,
                      MC_ERR_FORMAT, "tensor \"w\": data_offsets [8, 4] has begin > end");
}
END_TEST

START_TEST(test_bad_offsets_out_of_bounds) {
    expect_open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12,
                      MC_ERR_FORMAT, "run past the end of the data buffer (12 bytes");
    /* Offsets near 2^63 must not wrap around. */
    expect_open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],"
                      "\"data_offsets\":[9223372036854775800,9223372036854775804]}}",
                      4, MC_ERR_FORMAT, "run past the end");
    expect_open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
                      MC_ERR_FORMAT, "two non-negative integers");
    expect_open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4,
                      MC_ERR_FORMAT, "two non-negative integers");
    expect_open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,99999999999999999999]}}",
                      4, MC_ERR_FORMAT, "two non-negative integers");
}
END_TEST

START_TEST(test_bad_overlapping_offsets) {
    expect_open_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                      12, MC_ERR_FORMAT, "tensor \"b\" (bytes [4, 12]) overlaps");
    /* Two tensors on the very same bytes. */
    expect_open_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                      8, MC_ERR_FORMAT, "overlaps");
}
END_TEST

START_TEST(test_bad_offsets_not_covering) {
    /* A gap between tensors. */
    expect_open_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                      12, MC_ERR_FORMAT, "bytes [4, 8) of the data buffer belong to no tensor");
    /* Trailing bytes after the last tensor. */
    expect_open_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 10,
                      MC_ERR_FORMAT, "data buffer has 10 bytes but the tensors cover only 4");
}
END_TEST

START_TEST(test_bad_shape_size_mismatch) {
    expect_open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20,
                      MC_ERR_FORMAT, "6 elements of F32 need 24 bytes, but data_offsets [0, 20] hold 20");
    expect_open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-3],\"data_offsets\":[0,24]}}", 24,
                      MC_ERR_FORMAT, "shape entries must be non-negative integers");
    expect_open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":5,\"data_offsets\":[0,20]}}", 20,
                      MC_ERR_FORMAT, "shape must be an array");
}
END_TEST

START_TEST(test_bad_huge_dims_overflow) {
    /* 2^32 * 2^32 * 16 elements: the product wraps a 64-bit integer to 0,
     * which would "match" empty offsets if it were not checked. */
    expect_open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
                      "\"data_offsets\":[0,0]}}",
                      0, MC_ERR_FORMAT, "element count overflows");
    /* Too many dimensions. */
    expect_open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"
                      "\"data_offsets\":[0,4]}}",
                      4, MC_ERR_FORMAT, "17 dimensions");
}
END_TEST

START_TEST(test_bad_duplicate_names) {
    expect_open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                      8, MC_ERR_FORMAT, "the tensor name \"w\" appears twice");
    expect_open_fails("{\"__metadata__\":{},\"__metadata__\":{}}", 0, MC_ERR_FORMAT,
                      "__metadata__ appears twice");
    /* A metadata key twice (which one counts?), a NUL in a key or a
     * value (it would answer for "a", or cut the value short), and a key
     * of control characters, quoted escaped. */
    expect_open_fails("{\"__metadata__\":{\"opt\":\"sgd\",\"x\":\"1\",\"opt\":\"adamw\"}}", 0,
                      MC_ERR_FORMAT, "__metadata__ gives \"opt\" twice");
    expect_open_fails("{\"__metadata__\":{\"a\\u0000b\":\"1\"}}", 0, MC_ERR_FORMAT,
                      "__metadata__ entry \"a\" holds a NUL character");
    expect_open_fails("{\"__metadata__\":{\"a\":\"x\\u0000junk\"}}", 0, MC_ERR_FORMAT,
                      "__metadata__ entry \"a\" holds a NUL character");
    expect_open_fails("{\"__metadata__\":{\"\\u001b]0\":7}}", 0, MC_ERR_FORMAT,
                      "__metadata__ value of \"\\x1b]0\" must be a string");
    /* Control characters in a tensor name, a field name or a dtype reach
     * no message raw. */
    expect_open_fails("{\"\\u001b]0;x\\u0007\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                      MC_ERR_FORMAT, "the tensor name \"\\x1b]0;x\\x07\" holds control characters");
    expect_open_fails("{\"w\":{\"dtype\":\"F\\u001b\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                      MC_ERR_FORMAT, "unknown or unsupported dtype \"F\\x1b\"");
    expect_open_fails("{\"w\":{\"\\u001b\":1,\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                      MC_ERR_FORMAT, "unknown field \"\\x1b\"");
}
END_TEST

START_TEST(test_bad_truncated_file) {
    char path[600];
    mc_test_dir_path("good.safetensors", path, sizeof path);
    mc_tensor *t = make_tensor(MC_SHAPE(16), "w", 0, 1);
    MC_CHECK_OK(mc_safetensors_write(path, 1, &t, 0, NULL));
    mc_tensor_free(t);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(truncate(path, st.st_size - 4), 0); /* 4 of 64 data bytes missing */
    mc_safetensors *f;
    MC_CHECK_FAILS(mc_safetensors_open(path, &f), MC_ERR_FORMAT, "the file may be truncated");
    ck_assert_int_eq(truncate(path, 8 + 30), 0); /* inside the header */
    MC_CHECK_FAILS(mc_safetensors_open(path, &f), MC_ERR_FORMAT, "runs past the end of the file");
}
END_TEST

START_TEST(test_bad_deep_nesting) {
    char header[400] = "{\"__metadata__\":";
    for (int i = 0; i < 100; i++) strcat(header, "[");
    for (int i = 0; i < 100; i++) strcat(header, "]");
    strcat(header, "}");
    expect_open_fails(header, 0, MC_ERR_FORMAT, "nesting is deeper than the limit");
}
END_TEST

START_TEST(test_zero_element_tensor_and_empty_file) {
    char path[600];
    mc_test_dir_path("zero.safetensors", path, sizeof path);
    /* Valid: a (0, 3) tensor holds no bytes; the header may be padded with spaces. */
    write_safetensors(path,
                      "{\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
                      "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}   ",
                      "\0\0\x80\x3f", 4);
    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    mc_tensor *t;
    MC_CHECK_FAILS(mc_safetensors_read(f, "z", &t), MC_ERR_UNSUPPORTED, "no elements");
    MC_CHECK_OK(mc_safetensors_read(f, "w", &t));
    ck_assert(t->data[0] == 1.0f);
    mc_tensor_free(t);
    mc_safetensors_close(f);
    /* No tensors at all, only metadata. */
    mc_metadata_entry meta = {"k", "v"};
    MC_CHECK_OK(mc_safetensors_write(path, 0, NULL, 1, &meta));
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    ck_assert_int_eq(mc_safetensors_count(f), 0);
    ck_assert_str_eq(mc_safetensors_metadata(f, "k"), "v");
    mc_safetensors_close(f);
}
END_TEST

/* ---- fuzzing: random mutations of a valid file ---- */

static uint64_t fuzz_state = 0x9E3779B97F4A7C15ULL;
static uint32_t fuzz_next(void) { return mc_test_fuzz_next(&fuzz_state); }

START_TEST(test_fuzz_mutated_files) {
    char path[600];
    mc_test_dir_path("valid.safetensors", path, sizeof path);
    mc_tensor *tensors[3] = {make_tensor(MC_SHAPE(2, 3), "a.weight", 1, 1),
                             make_tensor(MC_SHAPE(5), "b", -1, 0.5f),
                             make_tensor(MC_SHAPE(1, 1, 2, 2), "c.d", 0, 2)};
    mc_metadata_entry meta[] = {{"format", "pt"}, {"step", "7"}};
    MC_CHECK_OK(mc_safetensors_write(path, 3, tensors, 2, meta));
    for (int i = 0; i < 3; i++) mc_tensor_free(tensors[i]);
    FILE *fp = fopen(path, "rb");
    ck_assert_ptr_nonnull(fp);
    unsigned char original[1024];
    size_t size = fread(original, 1, sizeof original, fp);
    fclose(fp);
    ck_assert(size > 100 && size < sizeof original);
    size_t header_end = 8 + (size_t)original[0] + 256 * (size_t)original[1];

    /* Bytes that make the mutations meaningful to a JSON parser. */
    const char interesting[] = "{}[]\",:0123456789-e.\\u \x00\xff";
    char mutant_path[600];
    mc_test_dir_path("mutant.safetensors", mutant_path, sizeof mutant_path);
    int opened = 0, rejected = 0;
    for (int iter = 0; iter < 3000; iter++) {
        unsigned char bytes[1024];
        memcpy(bytes, original, size);
        size_t n = size;
        int edits = 1 + (int)(fuzz_next() % 4);
        for (int e = 0; e < edits; e++) {
            uint32_t kind = fuzz_next() % 8;
            /* Most edits hit the header, where the parsing happens. */
            size_t pos = (fuzz_next() % 4 ? 8 + fuzz_next() % (header_end - 8) : fuzz_next() % n);
            if (kind <= 3) bytes[pos] = interesting[fuzz_next() % (sizeof interesting - 1)];
            else if (kind == 4) bytes[pos] ^= (unsigned char)(1u << (fuzz_next() % 8));
            else if (kind == 5) bytes[fuzz_next() % 8] = (unsigned char)fuzz_next(); /* the length */
            else if (kind == 6) n = fuzz_next() % (n + 1);                         /* truncate */
            else bytes[pos] = (unsigned char)fuzz_next();
            if (n == 0) break;
        }
        mc_test_write_file(mutant_path, bytes, n);
        mc_safetensors *f = NULL;
        mc_clear_error();
        mc_status status = mc_safetensors_open(mutant_path, &f);
        if (status != MC_OK) {
            /* A rejection is a format error with a message, never anything else. */
            ck_assert_msg(status == MC_ERR_FORMAT, "iteration %d: %s (%s)", iter,
                          mc_status_name(status), mc_last_error());
            ck_assert_msg(strlen(mc_last_error()) > 0, "iteration %d: no message", iter);
            ck_assert_ptr_null(f);
            rejected++;
            continue;
        }
        /* Accepted: every tensor must be readable within bounds. */
        opened++;
        for (int i = 0; i < mc_safetensors_count(f); i++) {
            const char *name = mc_safetensors_name(f, i);
            ck_assert_ptr_nonnull(name);
            mc_dtype dtype;
            mc_status s = mc_safetensors_info(f, name, &dtype, NULL);
            if (s != MC_OK) continue;
            mc_tensor *t = NULL;
            int64_t *ints = NULL;
            if (mc_safetensors_read(f, name, &t) == MC_OK) mc_tensor_free(t);
            if (mc_safetensors_read_ints(f, name, &ints, NULL) == MC_OK) free(ints);
        }
        for (int i = 0; i < mc_safetensors_metadata_count(f); i++)
            ck_assert_ptr_nonnull(mc_safetensors_metadata(f, mc_safetensors_metadata_key(f, i)));
        mc_safetensors_close(f);
    }
    /* Both outcomes must have happened, or the fuzzer tested nothing. */
    ck_assert_int_gt(rejected, 100);
    ck_assert_int_gt(opened, 10);
}
END_TEST

/* ---- the JSON parser ---- */

static const mc_json *parse_ok(mc_json_doc **doc, const char *text) {
    mc_status s = mc_json_parse(text, strlen(text), "test", doc);
    ck_assert_msg(s == MC_OK, "\"%s\" should parse: %s", text, mc_last_error());
    return mc_json_root(*doc);
}

static void parse_fails(const char *text, size_t len, const char *needle) {
    mc_json_doc *doc = (mc_json_doc *)0x1;
    mc_clear_error();
    mc_status s = mc_json_parse(text, len, "test", &doc);
    ck_assert_msg(s == MC_ERR_FORMAT, "\"%s\" should fail to parse", text);
    ck_assert_ptr_null(doc);
    ck_assert_msg(strstr(mc_last_error(), needle), "\"%s\": message \"%s\" lacks \"%s\"", text,
                  mc_last_error(), needle);
}

START_TEST(test_json_values) {
    mc_json_doc *doc;
    const mc_json *root = parse_ok(&doc, " {\"a\": [1, -2.5e1, true, false, null, \"x\"], \"b\": {}, \"c\": []} ");
    ck_assert_int_eq(root->type, MC_JSON_OBJECT);
    ck_assert_int_eq(root->count, 3);
    const mc_json *a = mc_json_get(root, "a");
    ck_assert_int_eq(a->count, 6);
    const mc_json *e = a->child;
    ck_assert(e->type == MC_JSON_NUMBER && e->is_int && e->integer == 1);
    e = e->next;
    ck_assert(e->type == MC_JSON_NUMBER && !e->is_int && e->number == -25.0);
    e = e->next;
    ck_assert(e->type == MC_JSON_BOOL && e->boolean);
    e = e->next;
    ck_assert(e->type == MC_JSON_BOOL && !e->boolean);
    ck_assert_int_eq(e->next->type, MC_JSON_NULL);
    ck_assert_str_eq(e->next->next->string, "x");
    ck_assert_int_eq(mc_json_get(root, "b")->count, 0);
    ck_assert_int_eq(mc_json_get(root, "c")->type, MC_JSON_ARRAY);
    ck_assert_ptr_null(mc_json_get(root, "d"));
    ck_assert_ptr_null(mc_json_get(a, "a")); /* not an object */
    mc_json_free(doc);

    /* int64 limits are exact; one past is still a number, just not is_int. */
    root = parse_ok(&doc, "[9223372036854775807, -9223372036854775808, 9223372036854775808, -0, 0.5, 1E+2]");
    e = root->child;
    ck_assert(e->is_int && e->integer == INT64_MAX);
    ck_assert(e->next->is_int && e->next->integer == INT64_MIN);
    ck_assert(!e->next->next->is_int && e->next->next->number == 9223372036854775808.0);
    ck_assert(e->next->next->next->is_int && e->next->next->next->integer == 0);
    ck_assert(e->next->next->next->next->number == 0.5);
    ck_assert(e->next->next->next->next->next->number == 100.0);
    mc_json_free(doc);
}
END_TEST

START_TEST(test_json_strings_and_unicode) {
    mc_json_doc *doc;
    /* \u00e9 is é (UTF-8 C3 A9); \ud83d\ude00 is U+1F600 (F0 9F 98 80);
     * raw UTF-8 passes through; \u0000 is an embedded NUL. */
    const mc_json *root = parse_ok(&doc,
        "[\"tab\\tq\\\"b\\\\s\\/n\\n\", \"caf\\u00e9\", \"\\ud83d\\ude00\", \"caf\xC3\xA9 \xE2\x82\xAC\", \"a\\u0000b\"]");
    const mc_json *s = root->child;
    ck_assert_str_eq(s->string, "tab\tq\"b\\s/n\n");
    ck_assert_str_eq(s->next->string, "caf\xC3\xA9");
    ck_assert_str_eq(s->next->next->string, "\xF0\x9F\x98\x80");
    ck_assert_str_eq(s->next->next->next->string, "caf\xC3\xA9 \xE2\x82\xAC");
    ck_assert_uint_eq(s->next->next->next->next->string_len, 3);
    ck_assert_int_eq(memcmp(s->next->next->next->next->string, "a\0b", 4), 0);
    mc_json_free(doc);
    /* Keys are decoded too, and duplicates are kept in order. */
    root = parse_ok(&doc, "{\"k\\u0041\": 1, \"kA\": 2}");
    ck_assert_int_eq(root->count, 2);
    ck_assert_int_eq(mc_json_get(root, "kA")->integer, 1);
    mc_json_free(doc);
}
END_TEST

START_TEST(test_json_rejects) {
    parse_fails("", 0, "unexpected end of input");
    parse_fails("   ", 3, "unexpected end of input");
    parse_fails("[1,]", 4, "trailing comma");
    parse_fails("{\"a\":1,}", 8, "trailing comma");
    parse_fails("{\"a\" 1}", 7, "expected ':'");
    parse_fails("{a:1}", 5, "expected a string key");
    parse_fails("[1 2]", 5, "expected ',' or ']'");
    parse_fails("[1", 2, "unterminated array");
    parse_fails("{\"a\":1", 6, "unterminated object");
    parse_fails("\"abc", 4, "unterminated string");
    parse_fails("\"abc\\", 5, "unterminated string");
    parse_fails("01", 2, "leading zero");
    parse_fails("1.", 2, "after the decimal point");
    parse_fails("1e", 2, "in the exponent");
    parse_fails("-", 1, "expected a digit");
    parse_fails("+1", 2, "unexpected character");
    parse_fails("1e400", 5, "out of the range");
    parse_fails("NaN", 3, "unexpected character");
    parse_fails("tru", 3, "unexpected character");
    parse_fails("[1] // comment", 14, "after the JSON value");
    parse_fails("'a'", 3, "unexpected character");
    parse_fails("\"a\x01\"", 4, "control character");
    parse_fails("\"\\x\"", 4, "unknown escape");
    parse_fails("\"\\u12zz\"", 8, "four hex digits");
    parse_fails("\"\\u12\"", 6, "truncated \\u escape");
    parse_fails("\"\\ud83d\"", 8, "followed by a low one");
    parse_fails("\"\\ud83d\\u0041\"", 14, "followed by a low one");
    parse_fails("\"\\ude00\"", 8, "low surrogate");
    parse_fails("\"\xC0\xAF\"", 4, "invalid UTF-8");          /* overlong '/' */
    parse_fails("\"\xED\xA0\x80\"", 5, "invalid UTF-8");      /* an encoded surrogate */
    parse_fails("\"\xF4\x90\x80\x80\"", 6, "invalid UTF-8");  /* past U+10FFFF */
    parse_fails("\"\xE2\x82\"", 4, "invalid UTF-8");          /* cut short */
    /* The length bounds the text: "[1]" cut to two bytes. */
    parse_fails("[1]", 2, "unterminated array");
    /* Errors say where: line 2, column 3. */
    parse_fails("{\n  x}", 6, "line 2, column 3");
}
END_TEST

START_TEST(test_json_nesting_limit) {
    char text[300];
    /* 64 levels parse; 65 do not. */
    for (int depth = 64; depth <= 65; depth++) {
        int n = 0;
        for (int i = 0; i < depth; i++) text[n++] = '[';
        for (int i = 0; i < depth; i++) text[n++] = ']';
        mc_json_doc *doc = NULL;
        mc_status s = mc_json_parse(text, (size_t)n, "deep", &doc);
        if (depth == 64) {
            ck_assert_msg(s == MC_OK, "%s", mc_last_error());
            mc_json_free(doc);
        } else {
            ck_assert_int_eq(s, MC_ERR_FORMAT);
            ck_assert(strstr(mc_last_error(), "nesting"));
        }
    }
}
END_TEST

START_TEST(test_json_fuzz) {
    const char *seed = "{\"a\":[1,-2.5e3,\"x\\u00e9\\ud83d\\ude00\",{\"b\":null}],\"c\":true}";
    const char alphabet[] = "{}[]\",:0123456789-+eE.\\u \t\nabtrfnl\xC3\xA9\xF0";
    size_t len = strlen(seed);
    int ok = 0, bad = 0;
    for (int iter = 0; iter < 20000; iter++) {
        char text[128];
        memcpy(text, seed, len);
        size_t n = len;
        for (int e = 0, edits = 1 + (int)(fuzz_next() % 3); e < edits; e++) {
            size_t pos = fuzz_next() % n;
            if (fuzz_next() % 5 == 0) n = pos + 1; /* truncate */
            else text[pos] = alphabet[fuzz_next() % (sizeof alphabet - 1)];
        }
        mc_json_doc *doc = NULL;
        mc_status s = mc_json_parse(text, n, "fuzz", &doc);
        ck_assert(s == MC_OK || s == MC_ERR_FORMAT);
        if (s == MC_OK) {
            ok++;
            ck_assert_ptr_nonnull(mc_json_root(doc));
        } else {
            bad++;
            ck_assert_ptr_null(doc);
        }
        mc_json_free(doc);
    }
    ck_assert_int_gt(ok, 10);
    ck_assert_int_gt(bad, 1000);
}
END_TEST

static Suite *safetensors_suite(void) {
    Suite *s = suite_create("safetensors");
    const TTest *const rt[] = {test_round_trip_tensors_and_metadata, test_writer_exact_bytes,
                               test_write_is_atomic, test_f16_decoding, test_bf16_and_f64_decoding,
                               test_integer_tensors, test_zero_element_tensor_and_empty_file, NULL};
    mc_test_use_temp_dir(mc_test_add_case(s, "round_trip", rt));

    const TTest *const bad[] = {test_bad_missing_file, test_bad_empty_file,
                                test_bad_short_length_field, test_bad_header_length_past_end,
                                test_bad_header_length_absurd, test_bad_invalid_json,
                                test_bad_non_object_header, test_bad_unknown_dtype,
                                test_bad_missing_or_extra_fields, test_bad_begin_after_end,
                                test_bad_offsets_out_of_bounds, test_bad_overlapping_offsets,
                                test_bad_offsets_not_covering, test_bad_shape_size_mismatch,
                                test_bad_huge_dims_overflow, test_bad_duplicate_names,
                                test_bad_truncated_file, test_bad_deep_nesting,
                                test_fuzz_mutated_files, NULL};
    /* The fuzz loop needs the time under sanitizers. */
    tcase_set_timeout(mc_test_use_temp_dir(mc_test_add_case(s, "hostile", bad)), 120);

    const TTest *const json[] = {test_json_values, test_json_strings_and_unicode, test_json_rejects,
                                 test_json_nesting_limit, test_json_fuzz, NULL};
    tcase_set_timeout(mc_test_add_case(s, "json", json), 120);
    return s;
}

int main(void) { return mc_test_run_suite(safetensors_suite()); }
