/* mmchain — safetensors: reading and writing named tensors.
 *
 * The format (https://github.com/huggingface/safetensors):
 *
 *     [8 bytes]  N, the header length, unsigned little-endian
 *     [N bytes]  a JSON object, UTF-8:
 *                  { "conv1.weight": {"dtype": "F32", "shape": [64, 3, 7, 7],
 *                                     "data_offsets": [begin, end]},
 *                    ...,
 *                    "__metadata__": {"key": "value", ...} }      (optional)
 *     [rest]     the byte buffer: each tensor's little-endian, row-major
 *                data at [begin, end) counted from the end of the header.
 *
 * Reading opens the file once (memory-mapped read-only where possible, read
 * into memory otherwise), validates the whole header up front — so a hostile
 * or truncated file is rejected by mc_safetensors_open with a message, never
 * read out of bounds later — and then converts tensors on request:
 * F32, F16, BF16 and F64 become float32 mc_tensors; integer tensors are read
 * with mc_safetensors_read_ints.
 *
 * Writing stores float32 tensors (F32) plus a string -> string
 * "__metadata__" map, atomically: the bytes go to a temporary file in the
 * destination's folder which is flushed, fsync'ed and renamed over the
 * destination, so a failure (or a crash) leaves any previous file intact.
 *
 *     mc_safetensors *f;
 *     MC_TRY(mc_safetensors_open("resnet50.safetensors", &f));
 *     mc_tensor *w;
 *     mc_status s = mc_safetensors_read(f, "conv1.weight", &w);
 *     mc_safetensors_close(f);
 *
 * Loading a whole model by name, and checkpoints with optimizer state, are
 * in checkpoint.h. */
#ifndef MMCHAIN_IO_H
#define MMCHAIN_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The element types of the format ("F32", "BF16", ...). */
typedef enum mc_dtype {
    MC_DTYPE_F32,
    MC_DTYPE_F16,
    MC_DTYPE_BF16,
    MC_DTYPE_F64,
    MC_DTYPE_I64,
    MC_DTYPE_I32,
    MC_DTYPE_I16,
    MC_DTYPE_I8,
    MC_DTYPE_U8,
    MC_DTYPE_BOOL
} mc_dtype;

/* "F32", "BF16", ... as written in the header. */
const char *mc_dtype_name(mc_dtype dtype);
/* Bytes per element (4 for F32, 2 for BF16, 1 for BOOL). */
size_t mc_dtype_size(mc_dtype dtype);
/* F32, F16, BF16 or F64: read as float32 by mc_safetensors_read. */
bool mc_dtype_is_float(mc_dtype dtype);

/* ---- reading ---- */

/* An open, validated file. */
typedef struct mc_safetensors mc_safetensors;

/* Open and validate `path`. Errors: MC_ERR_IO (cannot open / read),
 * MC_ERR_FORMAT (anything malformed; the message names the file, the tensor
 * and the problem), MC_ERR_NOMEM. */
mc_status mc_safetensors_open(const char *path, mc_safetensors **out);
void mc_safetensors_close(mc_safetensors *f);
/* The path it was opened from. */
const char *mc_safetensors_path(const mc_safetensors *f);

/* The tensors, in the order of their data in the file (0 <= i < count). */
int mc_safetensors_count(const mc_safetensors *f);
const char *mc_safetensors_name(const mc_safetensors *f, int i);
bool mc_safetensors_has(const mc_safetensors *f, const char *name);
/* dtype and shape of a tensor (either may be NULL); MC_ERR_ARG if absent.
 * A scalar (shape []) is reported as shape (1): mc_shape has ndim >= 1. */
mc_status mc_safetensors_info(const mc_safetensors *f, const char *name, mc_dtype *dtype,
                              mc_shape *shape);

/* A new heap tensor named `name` holding the float tensor's values as
 * float32 (F32, F16, BF16, F64). Free it with mc_tensor_free. */
mc_status mc_safetensors_read(const mc_safetensors *f, const char *name, mc_tensor **out);
/* The same into an existing tensor, whose shape must match exactly. */
mc_status mc_safetensors_read_into(const mc_safetensors *f, const char *name, mc_tensor *dst);
/* An integer tensor (I64, I32, I16, I8, U8, BOOL) as int64 values:
 * *values is malloc'd (free() it), *shape may be NULL. */
mc_status mc_safetensors_read_ints(const mc_safetensors *f, const char *name, int64_t **values,
                                   mc_shape *shape);

/* The "__metadata__" entries: the value of `key` or NULL; and by index. */
const char *mc_safetensors_metadata(const mc_safetensors *f, const char *key);
int mc_safetensors_metadata_count(const mc_safetensors *f);
const char *mc_safetensors_metadata_key(const mc_safetensors *f, int i);

/* ---- writing ---- */

typedef struct mc_metadata_entry {
    const char *key;
    const char *value;
} mc_metadata_entry;

/* Write n float32 tensors, each under its t->name (names must be unique and
 * non-empty), and n_meta metadata entries (keys unique), atomically. */
mc_status mc_safetensors_write(const char *path, int n, mc_tensor *const *tensors, int n_meta,
                               const mc_metadata_entry *meta);

/* ---- atomic files ----
 * Write `len` bytes to `path` so that readers see either the old file or the
 * new one, never a mix: a temporary file in the same folder is written,
 * flushed, fsync'ed and renamed over `path`, then the folder is fsync'ed.
 * On failure the previous file is intact and no temporary file remains. */
mc_status mc_write_file_atomic(const char *path, const void *data, size_t len);

/* The same for a writer that streams its bytes: write(ctx, f) writes the
 * content into the open temporary FILE and returns MC_OK or an error. */
typedef mc_status (*mc_atomic_writer_fn)(void *ctx, FILE *f);
mc_status mc_write_file_atomic_with(const char *path, mc_atomic_writer_fn write, void *ctx);

/* Files that belong together (a tokenizer's merges.txt and vocab.json),
 * each as mc_write_file_atomic_with: every temporary file is written and
 * fsync'ed before the first rename, so a failed write of any of them
 * leaves every old file in place and no temporary behind. Once all are
 * written they are renamed in order; a crash between two renames, or a
 * rename that fails (the destination a folder, a permission taken away
 * meanwhile: the error says which), can leave old and new files side by
 * side. */
typedef struct mc_atomic_file {
    const char *path;
    mc_atomic_writer_fn write;
    void *ctx;
} mc_atomic_file;
mc_status mc_write_files_atomic(int n, const mc_atomic_file *files);

/* The same for a writer that only takes a file name (a PNG encoder, ...):
 * write(ctx, tmp_path) creates tmp_path (in path's folder); it is then
 * fsync'ed and renamed over `path`. */
typedef mc_status (*mc_atomic_path_writer_fn)(void *ctx, const char *tmp_path);
mc_status mc_write_file_atomic_via(const char *path, mc_atomic_path_writer_fn write, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
