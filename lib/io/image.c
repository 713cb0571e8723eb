/* RGB images: format dispatch, bicubic resize (PyTorch's two flavours),
 * centre crop, and folders of class folders.
 * Images are (C, H, W) or (N, C, H, W) float tensors (include/mmchain/image.h). */
#include "mmchain/image.h"
#include "core/grow.h"
#include "io/image_internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- format dispatch ---- */

mc_status mc_image_read(const char *path, mc_tensor **out) {
    if (!path || !out) return mc_error(MC_ERR_ARG, "mc_image_read: NULL argument");
    *out = NULL;
    FILE *file = fopen(path, "rb");
    if (!file) return mc_error(MC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char magic[8] = {0};
    size_t got = fread(magic, 1, sizeof magic, file);
    fclose(file);
    static const unsigned char png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (got == 8 && memcmp(magic, png_magic, 8) == 0) return mc_png_read(path, out, NULL);
    if (got >= 3 && magic[0] == 0xff && magic[1] == 0xd8 && magic[2] == 0xff) return mc_jpeg_read(path, out);
    return mc_error(MC_ERR_FORMAT, "%s: neither a PNG nor a JPEG file (first bytes %02x %02x %02x)",
                    path, magic[0], magic[1], magic[2]);
}

/* ---- the two bicubic kernels ---- */

/* Keys' cubic convolution kernel with parameter a (Keys 1981):
 *   (a+2)|x|^3 - (a+3)|x|^2 + 1        for |x| <= 1
 *   a|x|^3 - 5a|x|^2 + 8a|x| - 4a      for 1 < |x| < 2
 *   0                                  otherwise.
 * PyTorch's plain bicubic uses a = -0.75 (like OpenCV); PIL and PyTorch's
 * antialiased bicubic use a = -0.5. */
static double cubic_kernel(double x, double a) {
    x = fabs(x);
    if (x <= 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0) return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
    return 0.0;
}

#define PLAIN_BICUBIC_A (-0.75)
#define ANTIALIAS_BICUBIC_A (-0.5)

/* The taps of one output position along one axis: `count` source indices
 * (already clamped into the image) and their weights. */
typedef struct resample_taps {
    int count;
    int *index;    /* count */
    float *weight; /* count */
} resample_taps;

/* Plain bicubic (antialias off), as torch.nn.functional.interpolate with
 * align_corners=False: source coordinate (dst + 0.5) * in/out - 0.5, four
 * neighbours, indices clamped (replicated border). */
static int plain_taps(int dst, int in_size, int out_size, int *index, double *weight) {
    double scale = (double)in_size / out_size;
    double src = (dst + 0.5) * scale - 0.5;
    double base = floor(src), t = src - base;
    for (int k = 0; k < 4; k++) {
        int i = (int)base - 1 + k;
        index[k] = i < 0 ? 0 : (i >= in_size ? in_size - 1 : i);
        weight[k] = cubic_kernel(t - (k - 1), PLAIN_BICUBIC_A);
    }
    return 4;
}

/* Antialiased bicubic, PIL's resampling (libImaging/Resample.c
 * precompute_coeffs) as PyTorch reproduces it: when shrinking by `scale`,
 * the kernel is stretched to support 2 * scale so every input pixel counts;
 * taps that fall outside the image are dropped and the rest renormalised. */
static int antialias_taps(int dst, int in_size, int out_size, int *index, double *weight) {
    double scale = (double)in_size / out_size;
    double support = scale >= 1.0 ? 2.0 * scale : 2.0;
    double inv_scale = scale >= 1.0 ? 1.0 / scale : 1.0;
    double center = scale * (dst + 0.5);
    int lo = (int)(center - support + 0.5); /* truncation, as in PIL */
    if (lo < 0) lo = 0;
    int hi = (int)(center + support + 0.5);
    if (hi > in_size) hi = in_size;
    double total = 0.0;
    for (int i = lo; i < hi; i++) {
        weight[i - lo] = cubic_kernel((i - center + 0.5) * inv_scale, ANTIALIAS_BICUBIC_A);
        index[i - lo] = i;
        total += weight[i - lo];
    }
    for (int k = 0; k < hi - lo; k++) weight[k] = total != 0.0 ? weight[k] / total : 0.0;
    return hi - lo;
}

static int max_taps(int in_size, int out_size, bool antialias) {
    if (!antialias) return 4;
    double scale = (double)in_size / out_size;
    return (int)ceil(2.0 * (scale >= 1.0 ? 2.0 * scale : 2.0)) + 2;
}

static void free_taps(resample_taps *taps, int n) {
    if (!taps) return;
    for (int i = 0; i < n; i++) {
        free(taps[i].index);
        free(taps[i].weight);
    }
    free(taps);
}

static mc_status make_taps(int in_size, int out_size, bool antialias, resample_taps **out) {
    int capacity = max_taps(in_size, out_size, antialias);
    resample_taps *taps = calloc((size_t)out_size, sizeof *taps);
    double *weight = malloc(sizeof(double) * (size_t)capacity);
    int *index = malloc(sizeof(int) * (size_t)capacity);
    bool ok = taps && weight && index;
    for (int d = 0; ok && d < out_size; d++) {
        int count = antialias ? antialias_taps(d, in_size, out_size, index, weight)
                              : plain_taps(d, in_size, out_size, index, weight);
        taps[d].count = count;
        taps[d].index = malloc(sizeof(int) * (size_t)(count > 0 ? count : 1));
        taps[d].weight = malloc(sizeof(float) * (size_t)(count > 0 ? count : 1));
        ok = taps[d].index && taps[d].weight;
        for (int k = 0; ok && k < count; k++) {
            taps[d].index[k] = index[k];
            taps[d].weight[k] = (float)weight[k];
        }
    }
    free(weight);
    free(index);
    if (!ok) {
        free_taps(taps, taps ? out_size : 0);
        return mc_error(MC_ERR_NOMEM, "resize: out of memory for %d -> %d resampling taps", in_size, out_size);
    }
    *out = taps;
    return MC_OK;
}

/* ---- resize ---- */

static mc_status check_resizable(const mc_tensor *image, int out_h, int out_w, const char *what) {
    char buf[160];
    if (!image) return mc_error(MC_ERR_ARG, "%s: NULL image", what);
    if (image->shape.ndim != 3 && image->shape.ndim != 4)
        return mc_error(MC_ERR_SHAPE, "%s: image %s must be (C, H, W) or (N, C, H, W)", what,
                        mc_tensor_str(image, buf, sizeof buf));
    if (out_h <= 0 || out_w <= 0 || out_h > 1 << 16 || out_w > 1 << 16)
        return mc_error(MC_ERR_ARG, "%s: output size %dx%d must be in 1..65536", what, out_h, out_w);
    return MC_OK;
}

/* The output shape: the input's with H, W replaced. */
static mc_shape resized_shape(mc_shape in, int out_h, int out_w) {
    in.dim[in.ndim - 2] = out_h;
    in.dim[in.ndim - 1] = out_w;
    return in;
}

/* rows: (planes * in_h, in_w) -> (planes * in_h, out_w), along x. */
static void resample_rows(const float *src, long rows, int in_w, const resample_taps *taps, int out_w,
                          float *dst) {
    #pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        const float *in = src + r * in_w;
        float *out = dst + r * out_w;
        for (int x = 0; x < out_w; x++) {
            float sum = 0.0f;
            for (int k = 0; k < taps[x].count; k++) sum += taps[x].weight[k] * in[taps[x].index[k]];
            out[x] = sum;
        }
    }
}

/* planes: (planes, in_h, w) -> (planes, out_h, w), along y. */
static void resample_columns(const float *src, long planes, int in_h, int w, const resample_taps *taps,
                             int out_h, float *dst) {
    #pragma omp parallel for schedule(static)
    for (long p = 0; p < planes; p++)
        for (int y = 0; y < out_h; y++) {
            float *out = dst + (p * out_h + y) * w;
            for (int x = 0; x < w; x++) out[x] = 0.0f;
            for (int k = 0; k < taps[y].count; k++) {
                const float *in = src + (p * in_h + taps[y].index[k]) * w;
                float wk = taps[y].weight[k];
                for (int x = 0; x < w; x++) out[x] += wk * in[x];
            }
        }
}

/* Separable: resample every row along x into `scratch` (planes * in_h *
 * out_w floats), then every column along y into out, each with taps
 * computed once per output position. */
static mc_status resize_separable(const mc_tensor *image, bool antialias, float *scratch, mc_tensor *out) {
    int nd = image->shape.ndim;
    int in_h = (int)image->shape.dim[nd - 2], in_w = (int)image->shape.dim[nd - 1];
    int out_h = (int)out->shape.dim[nd - 2], out_w = (int)out->shape.dim[nd - 1];
    long planes = (long)(image->numel / ((int64_t)in_h * in_w));
    resample_taps *x_taps = NULL, *y_taps = NULL;
    mc_status status = make_taps(in_w, out_w, antialias, &x_taps);
    if (status == MC_OK) status = make_taps(in_h, out_h, antialias, &y_taps);
    if (status == MC_OK) {
        resample_rows(image->data, planes * in_h, in_w, x_taps, out_w, scratch);
        resample_columns(scratch, planes, in_h, out_w, y_taps, out_h, out->data);
    }
    free_taps(x_taps, x_taps ? out_w : 0);
    free_taps(y_taps, y_taps ? out_h : 0);
    return status;
}

mc_status mc_image_resize(const mc_tensor *image, int out_h, int out_w, bool antialias, mc_tensor **out) {
    MC_TRY(check_resizable(image, out_h, out_w, "mc_image_resize"));
    mc_tensor *result = NULL;
    float *scratch = malloc(sizeof(float) * (size_t)mc_image_resize_scratch_floats(image, out_w));
    mc_status status = scratch ? MC_OK : mc_error(MC_ERR_NOMEM, "mc_image_resize: out of memory");
    if (status == MC_OK) status = mc_tensor_new(&result, resized_shape(image->shape, out_h, out_w), image->name);
    if (status == MC_OK) status = resize_separable(image, antialias, scratch, result);
    free(scratch);
    if (status != MC_OK) {
        mc_tensor_free(result);
        return status;
    }
    *out = result;
    return MC_OK;
}

int64_t mc_image_resize_scratch_floats(const mc_tensor *image, int out_w) {
    return image->numel / image->shape.dim[image->shape.ndim - 1] * out_w;
}

mc_status mc_image_resize_into(const mc_tensor *image, bool antialias, float *scratch, mc_tensor *out) {
    char a[160], b[160];
    if (!out || !scratch) return mc_error(MC_ERR_ARG, "mc_image_resize_into: NULL output or scratch");
    MC_TRY(check_resizable(image, 1, 1, "mc_image_resize_into"));
    int nd = image->shape.ndim;
    if (out->shape.ndim != nd)
        return mc_error(MC_ERR_SHAPE, "mc_image_resize_into: image %s -> out %s, only H and W may differ",
                        mc_tensor_str(image, a, sizeof a), mc_tensor_str(out, b, sizeof b));
    int out_h = (int)out->shape.dim[nd - 2], out_w = (int)out->shape.dim[nd - 1];
    MC_TRY(check_resizable(image, out_h, out_w, "mc_image_resize_into"));
    if (!mc_shape_equal(resized_shape(image->shape, out_h, out_w), out->shape))
        return mc_error(MC_ERR_SHAPE, "mc_image_resize_into: image %s -> out %s, only H and W may differ",
                        mc_tensor_str(image, a, sizeof a), mc_tensor_str(out, b, sizeof b));
    return resize_separable(image, antialias, scratch, out);
}

/* The reference: each output pixel straight from the 2-D weighted sum, in
 * double precision, with taps recomputed on the spot. */
mc_status mc_image_resize_naive(const mc_tensor *image, int out_h, int out_w, bool antialias,
                                mc_tensor **out) {
    MC_TRY(check_resizable(image, out_h, out_w, "mc_image_resize_naive"));
    int nd = image->shape.ndim;
    int in_h = (int)image->shape.dim[nd - 2], in_w = (int)image->shape.dim[nd - 1];
    long planes = (long)(image->numel / ((int64_t)in_h * in_w));
    int cap_y = max_taps(in_h, out_h, antialias), cap_x = max_taps(in_w, out_w, antialias);
    int *iy = malloc(sizeof(int) * (size_t)cap_y), *ix = malloc(sizeof(int) * (size_t)cap_x);
    double *wy = malloc(sizeof(double) * (size_t)cap_y), *wx = malloc(sizeof(double) * (size_t)cap_x);
    mc_tensor *result = NULL;
    mc_status status = iy && ix && wy && wx ? MC_OK : mc_error(MC_ERR_NOMEM, "mc_image_resize_naive: out of memory");
    if (status == MC_OK) status = mc_tensor_new(&result, resized_shape(image->shape, out_h, out_w), image->name);
    for (long p = 0; status == MC_OK && p < planes; p++)
        for (int y = 0; y < out_h; y++)
            for (int x = 0; x < out_w; x++) {
                int ny = antialias ? antialias_taps(y, in_h, out_h, iy, wy) : plain_taps(y, in_h, out_h, iy, wy);
                int nx = antialias ? antialias_taps(x, in_w, out_w, ix, wx) : plain_taps(x, in_w, out_w, ix, wx);
                double sum = 0.0;
                for (int a = 0; a < ny; a++)
                    for (int b = 0; b < nx; b++)
                        sum += wy[a] * wx[b] * image->data[(p * in_h + iy[a]) * in_w + ix[b]];
                result->data[(p * out_h + y) * out_w + x] = (float)sum;
            }
    free(iy), free(ix), free(wy), free(wx);
    if (status == MC_OK) *out = result;
    return status;
}

mc_status mc_image_resize_shorter(const mc_tensor *image, int size, bool antialias, mc_tensor **out) {
    MC_TRY(check_resizable(image, size, size, "mc_image_resize_shorter"));
    int nd = image->shape.ndim;
    int64_t h = image->shape.dim[nd - 2], w = image->shape.dim[nd - 1];
    /* torchvision: the long side is int(size * long / short), truncated. */
    int out_h = h <= w ? size : (int)((int64_t)size * h / w);
    int out_w = h <= w ? (int)((int64_t)size * w / h) : size;
    return mc_image_resize(image, out_h, out_w, antialias, out);
}

/* ---- crop ---- */

mc_status mc_image_center_crop(const mc_tensor *image, int crop_h, int crop_w, mc_tensor **out) {
    MC_TRY(check_resizable(image, crop_h, crop_w, "mc_image_center_crop"));
    int nd = image->shape.ndim;
    int in_h = (int)image->shape.dim[nd - 2], in_w = (int)image->shape.dim[nd - 1];
    if (crop_h > in_h || crop_w > in_w) {
        char buf[160];
        return mc_error(MC_ERR_SHAPE, "mc_image_center_crop: crop %dx%d does not fit in image %s",
                        crop_h, crop_w, mc_tensor_str(image, buf, sizeof buf));
    }
    /* torchvision CenterCrop: int(round((H - h) / 2)); Python rounds halves to even, as rint does. */
    int top = (int)rint((in_h - crop_h) / 2.0), left = (int)rint((in_w - crop_w) / 2.0);
    long planes = (long)(image->numel / ((int64_t)in_h * in_w));
    mc_tensor *result;
    MC_TRY(mc_tensor_new(&result, resized_shape(image->shape, crop_h, crop_w), image->name));
    for (long p = 0; p < planes; p++)
        for (int y = 0; y < crop_h; y++)
            memcpy(result->data + (p * crop_h + y) * crop_w,
                   image->data + (p * in_h + top + y) * in_w + left, sizeof(float) * (size_t)crop_w);
    *out = result;
    return MC_OK;
}

/* ---- folders of class folders ---- */

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool has_extension(const char *name, const char *const *extensions) {
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return false;
    for (const char *const *e = extensions; *e; e++) {
        size_t n = strlen(*e);
        if (strlen(dot + 1) != n) continue;
        size_t i = 0;
        while (i < n && tolower((unsigned char)dot[1 + i]) == (unsigned char)(*e)[i]) i++;
        if (i == n) return true;
    }
    return false;
}

/* A growable list of strings. */
typedef struct string_list {
    char **items;
    int count;
    size_t capacity;
} string_list;

static mc_status string_list_push(string_list *list, const char *a, const char *b) {
    if (mc_grow((void **)&list->items, &list->capacity, (size_t)list->count + 1, sizeof *list->items, 16,
                "file names") != MC_OK)
        return mc_error_context(MC_ERR_NOMEM, "listing files: ");
    size_t n = strlen(a) + (b ? strlen(b) + 1 : 0) + 1;
    char *s = malloc(n);
    if (!s) return mc_error(MC_ERR_NOMEM, "listing files: out of memory");
    if (b) snprintf(s, n, "%s/%s", a, b);
    else snprintf(s, n, "%s", a);
    list->items[list->count++] = s;
    return MC_OK;
}

static void string_list_free(string_list *list) {
    for (int i = 0; i < list->count; i++) free(list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}

/* dir/name into path[PATH_BUFFER]; a path that does not fit is an error
 * naming it, never a shortened path that would name another file. */
enum { PATH_BUFFER = 4096 };
static mc_status join_path(const char *dir, const char *name, char path[PATH_BUFFER]) {
    int n = snprintf(path, PATH_BUFFER, "%s/%s", dir, name);
    if (n < 0 || n >= PATH_BUFFER)
        /* The reason first: the message buffer may cut a very long path. */
        return mc_error(MC_ERR_IO, "path too long (more than %d bytes): %s/%s", PATH_BUFFER - 1, dir, name);
    return MC_OK;
}

/* Sorted names of the entries of `dir` that are folders (want_dirs) or
 * regular files with one of `extensions`. Hidden entries are skipped. */
static mc_status list_entries(const char *dir, bool want_dirs, const char *const *extensions,
                              string_list *out) {
    DIR *d = opendir(dir);
    if (!d) return mc_error(MC_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    mc_status status = MC_OK;
    struct dirent *entry;
    while (status == MC_OK && (entry = readdir(d)) != NULL) {
        if (entry->d_name[0] == '.') continue;
        char path[PATH_BUFFER];
        status = join_path(dir, entry->d_name, path);
        if (status != MC_OK) break;
        struct stat info;
        if (stat(path, &info) != 0) continue; /* a dangling link */
        bool is_dir = S_ISDIR(info.st_mode);
        if (want_dirs ? is_dir : (S_ISREG(info.st_mode) && has_extension(entry->d_name, extensions)))
            status = string_list_push(out, entry->d_name, NULL);
    }
    closedir(d);
    if (status == MC_OK && out->count > 1) qsort(out->items, (size_t)out->count, sizeof(char *), compare_strings);
    return status;
}

void mc_image_folder_free(mc_image_folder *folder) {
    if (!folder) return;
    for (int i = 0; i < folder->num_classes; i++) free(folder->class_names[i]);
    for (int i = 0; i < folder->count; i++) free(folder->paths[i]);
    free(folder->class_names);
    free(folder->paths);
    free(folder->labels);
    memset(folder, 0, sizeof *folder);
}

/* Add class `label`'s files (dir/name/<file>) to the listing. */
static mc_status add_class_files(const char *dir, const char *name, int label,
                                 const char *const *extensions, string_list *paths,
                                 int **labels, size_t *labels_capacity) {
    char class_dir[PATH_BUFFER];
    MC_TRY(join_path(dir, name, class_dir));
    string_list files = {0};
    mc_status status = list_entries(class_dir, false, extensions, &files);
    if (status == MC_OK && files.count == 0) {
        char wanted[128] = "";
        for (const char *const *e = extensions; *e; e++)
            snprintf(wanted + strlen(wanted), sizeof wanted - strlen(wanted), "%s.%s", e == extensions ? "" : ", ", *e);
        status = mc_error(MC_ERR_FORMAT, "%s: class folder holds no files (expected %s)", class_dir, wanted);
    }
    for (int i = 0; status == MC_OK && i < files.count; i++) {
        status = string_list_push(paths, class_dir, files.items[i]);
        if (status == MC_OK &&
            mc_grow((void **)labels, labels_capacity, (size_t)paths->count, sizeof **labels, 16, "labels") != MC_OK)
            status = mc_error_context(MC_ERR_NOMEM, "listing %s: ", class_dir);
        if (status == MC_OK) (*labels)[paths->count - 1] = label;
    }
    string_list_free(&files);
    return status;
}

mc_status mc_class_folder_scan(const char *dir, const char *const *extensions, mc_image_folder *out) {
    if (!dir || !extensions || !out) return mc_error(MC_ERR_ARG, "mc_class_folder_scan: NULL argument");
    memset(out, 0, sizeof *out);
    string_list classes = {0}, paths = {0};
    int *labels = NULL;
    size_t labels_capacity = 0;
    mc_status status = list_entries(dir, true, extensions, &classes);
    if (status == MC_OK && classes.count == 0)
        status = mc_error(MC_ERR_FORMAT, "%s: no class folders (expected DIR/<Class>/<files>)", dir);
    for (int c = 0; status == MC_OK && c < classes.count; c++)
        status = add_class_files(dir, classes.items[c], c, extensions, &paths, &labels, &labels_capacity);
    if (status != MC_OK) {
        string_list_free(&classes);
        string_list_free(&paths);
        free(labels);
        return status;
    }
    out->num_classes = classes.count;
    out->class_names = classes.items;
    out->count = paths.count;
    out->paths = paths.items;
    out->labels = labels;
    return MC_OK;
}

mc_status mc_image_folder_open(const char *dir, mc_image_folder *out) {
    static const char *const extensions[] = {"png", "jpg", "jpeg", NULL};
    return mc_class_folder_scan(dir, extensions, out);
}

/* ---- loading into a batch ---- */

mc_status mc_image_put_row(const mc_tensor *image, bool antialias, mc_tensor *batch, int n) {
    const int h = (int)batch->shape.dim[2], w = (int)batch->shape.dim[3];
    const mc_tensor *source = image;
    mc_tensor *resized = NULL;
    if (image->shape.dim[1] != h || image->shape.dim[2] != w) {
        MC_TRY(mc_image_resize(image, h, w, antialias, &resized));
        source = resized;
    }
    /* Grey (1 or 2 channels: grey, alpha) is repeated; alpha is dropped. */
    const bool grey = image->shape.dim[0] < 3;
    const size_t plane = (size_t)h * w;
    for (int c = 0; c < 3; c++)
        memcpy(batch->data + ((size_t)n * 3 + c) * plane, source->data + (size_t)(grey ? 0 : c) * plane,
               sizeof(float) * plane);
    mc_tensor_free(resized);
    return MC_OK;
}

mc_status mc_image_load_into(const char *path, bool antialias, mc_tensor *batch, int n) {
    char buf[160];
    if (!path || !batch) return mc_error(MC_ERR_ARG, "mc_image_load_into: NULL argument");
    if (batch->shape.ndim != 4 || batch->shape.dim[1] != 3 || n < 0 || n >= batch->shape.dim[0])
        return mc_error(MC_ERR_SHAPE, "mc_image_load_into %s: batch %s must be (N, 3, H, W) with N > %d",
                        path, mc_tensor_str(batch, buf, sizeof buf), n);
    mc_tensor *image = NULL;
    MC_TRY(mc_image_read(path, &image));
    mc_status status = mc_image_put_row(image, antialias, batch, n);
    mc_tensor_free(image);
    return status;
}

mc_status mc_image_each_in_parallel(int n, mc_status (*one)(void *ctx, int i), void *ctx) {
    mc_status status = MC_OK;
    char message[1024] = "";
    #pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < n; i++) {
        mc_status s = one(ctx, i);
        if (s != MC_OK) {
            #pragma omp critical(mc_image_each_in_parallel)
            {
                if (status == MC_OK) {
                    status = s;
                    snprintf(message, sizeof message, "%s", mc_last_error());
                }
            }
        }
    }
    return status == MC_OK ? MC_OK : mc_error(status, "%s", message);
}

typedef struct folder_job {
    const mc_image_folder *folder;
    const int *indices;
    bool antialias;
    mc_tensor *out;
} folder_job;

static mc_status folder_load_one(void *ctx, int i) {
    const folder_job *job = ctx;
    return mc_image_load_into(job->folder->paths[job->indices[i]], job->antialias, job->out, i);
}

mc_status mc_image_folder_load(const mc_image_folder *folder, const int *indices, int n, bool antialias,
                               mc_tensor *out) {
    if (!folder || (!indices && n > 0) || !out) return mc_error(MC_ERR_ARG, "mc_image_folder_load: NULL argument");
    for (int i = 0; i < n; i++)
        if (indices[i] < 0 || indices[i] >= folder->count)
            return mc_error(MC_ERR_ARG, "mc_image_folder_load: index %d is outside 0..%d", indices[i], folder->count - 1);
    return mc_image_each_in_parallel(n, folder_load_one, &(folder_job){folder, indices, antialias, out});
}
