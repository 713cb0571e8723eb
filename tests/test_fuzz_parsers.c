/* Hostile input for every file parser: deterministic mutation fuzzing.
 *
 * Each fuzz test starts from small VALID files (written by our own writers,
 * by libtiff/libjpeg directly, or the committed fixtures), mutates them a
 * few thousand times — bit flips, random and boundary bytes, truncation,
 * absurd values written into the header fields the format parses (image
 * width/height, band count, strip offsets, chunk and segment lengths) — and
 * hands every mutant to the parser. The rule checked on each call:
 *
 *   the call returns MC_OK with a usable result, or an error whose message
 *   is non-empty and names the file; never MC_ERR_NOMEM (an allocation
 *   sized from a header field must be refused before it is made), never a
 *   crash, leak or undefined behaviour (the sanitizer build runs this too).
 *
 * Both outcomes must occur, or a fuzz loop tested nothing. The mutations
 * come from a fixed xorshift seed, so a failing iteration replays exactly:
 * its number is in the assertion message. */
#include <stdio.h> /* before jpeglib.h, which uses FILE and size_t */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <zlib.h>

#include "testutil.h"
#include "tiff_fixture.h"

/* ---- the fuzzing engine ---- */

/* dir/name into buf, failing the test if it does not fit. */
static const char *join(char *buf, size_t len, const char *dir, const char *name) {
    int n = snprintf(buf, len, "%s/%s", dir, name);
    ck_assert_msg(n > 0 && (size_t)n < len, "path %s/%s is too long for the test", dir, name);
    return buf;
}

static uint64_t fuzz_state = 0x2545F4914F6CDD1DULL;
static uint32_t fuzz_next(void) { return mc_test_fuzz_next(&fuzz_state); }
static uint32_t fuzz_below(uint32_t n) { return n ? fuzz_next() % n : 0; }

/* A header field a mutation may aim at: `width` bytes at `offset`. */
typedef struct field {
    size_t offset;
    int width; /* 1, 2 or 4 */
} field;

enum { MAX_FIELDS = 256, MAX_FILE = 1 << 17 };

/* A valid file to start from, and where its header fields are. */
typedef struct seed {
    const char *name;
    unsigned char *bytes;
    size_t size;
    bool big_endian; /* how its multi-byte fields are stored */
    field fields[MAX_FIELDS];
    int n_fields;
} seed;

static void seed_add_field(seed *s, size_t offset, int width) {
    if (s->n_fields < MAX_FIELDS && offset + (size_t)width <= s->size)
        s->fields[s->n_fields++] = (field){offset, width};
}

static void put_uint(unsigned char *p, int width, uint32_t value, bool big_endian) {
    for (int i = 0; i < width; i++)
        p[big_endian ? width - 1 - i : i] = (unsigned char)(value >> (8 * i));
}

/* Values that break size arithmetic: zero, one, sign bits, all ones, and
 * sizes just around the file's own. */
static uint32_t absurd_value(size_t file_size) {
    static const uint32_t values[] = {0,      1,          2,          3,          0x7f,      0x80,
                                      0xff,   0x100,      0x7fff,     0x8000,     0xffff,    0x10000,
                                      100000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff};
    uint32_t pick = fuzz_below(sizeof values / sizeof values[0] + 3);
    if (pick < sizeof values / sizeof values[0]) return values[pick];
    if (pick == sizeof values / sizeof values[0]) return (uint32_t)file_size + fuzz_below(3) - 1;
    return pick % 2 ? fuzz_next() : fuzz_below(1000);
}

/* Write an absurd value into one of the seed's header fields. */
static void mutate_field(const seed *s, unsigned char *bytes, size_t n) {
    if (s->n_fields == 0) return;
    field f = s->fields[fuzz_below((uint32_t)s->n_fields)];
    if (f.offset + (size_t)f.width > n) return;
    put_uint(bytes + f.offset, f.width, absurd_value(s->size), s->big_endian);
}

/* 1 to 4 random edits of bytes[0..*n); returns nothing, shortens *n on a cut. */
static void mutate(const seed *s, unsigned char *bytes, size_t *n) {
    static const unsigned char boundary[] = {0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff};
    int edits = 1 + (int)fuzz_below(4);
    for (int e = 0; e < edits && *n > 0; e++) {
        size_t pos = fuzz_below((uint32_t)*n);
        switch (fuzz_below(8)) {
        case 0: bytes[pos] ^= (unsigned char)(1u << fuzz_below(8)); break;
        case 1: bytes[pos] = (unsigned char)fuzz_next(); break;
        case 2: bytes[pos] = boundary[fuzz_below(sizeof boundary)]; break;
        case 3: *n = fuzz_below((uint32_t)*n + 1); break; /* truncate */
        case 4: {                                        /* copy a run over another place */
            size_t from = fuzz_below((uint32_t)*n), len = 1 + fuzz_below(16);
            if (from + len <= *n && pos + len <= *n) memmove(bytes + pos, bytes + from, len);
            break;
        }
        default: mutate_field(s, bytes, *n); break; /* half the time: a header field */
        }
    }
}

/* A parser under test: reads `path`, checks and frees what it returns. */
typedef mc_status (*parse_fn)(const char *path);
/* Repairs a mutant's checksums (so a mutation reaches past the CRC check). */
typedef void (*repair_fn)(unsigned char *bytes, size_t n);

typedef struct fuzz_counts {
    int accepted, rejected;
} fuzz_counts;

/* Run one parser on one mutant file and apply the rule above. */
static void check_one(parse_fn parse, const char *path, const char *file_name, const char *what,
                      int iteration, fuzz_counts *counts) {
    mc_clear_error();
    mc_status status = parse(path);
    if (status == MC_OK) {
        counts->accepted++;
        return;
    }
    counts->rejected++;
    const char *message = mc_last_error();
    ck_assert_msg(status != MC_ERR_NOMEM, "%s iteration %d: MC_ERR_NOMEM (an unbounded allocation?): %s",
                  what, iteration, message);
    ck_assert_msg(message[0] != '\0', "%s iteration %d: %s without a message", what, iteration,
                  mc_status_name(status));
    ck_assert_msg(strstr(message, file_name) != NULL, "%s iteration %d: message \"%s\" does not name %s",
                  what, iteration, message, file_name);
}

/* `iterations` mutants of `s`, each written to dir/<file_name> and parsed;
 * a rejection's message must contain `named` (NULL: file_name). */
static fuzz_counts fuzz_file(const seed *s, const char *dir, const char *file_name, const char *named,
                             parse_fn parse, repair_fn repair, int iterations) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file_name);
    unsigned char *bytes = malloc(s->size ? s->size : 1);
    ck_assert_ptr_nonnull(bytes);
    fuzz_counts counts = {0, 0};
    for (int iteration = 0; iteration < iterations; iteration++) {
        memcpy(bytes, s->bytes, s->size);
        size_t n = s->size;
        mutate(s, bytes, &n);
        if (repair && fuzz_below(2)) repair(bytes, n);
        /* A new file each time: overwriting one in place makes ext4 flush
         * it to disk on close (auto_da_alloc), 10x slower here. */
        unlink(path);
        mc_test_write_file(path, bytes, n);
        check_one(parse, path, named ? named : file_name, s->name, iteration, &counts);
    }
    free(bytes);
    return counts;
}

/* Every field of the seed set to every absurd value in turn. */
static fuzz_counts sweep_fields(const seed *s, const char *dir, const char *file_name, parse_fn parse) {
    static const uint32_t values[] = {0, 1, 0xff, 0xffff, 0x10000, 100000, 0x7fffffff, 0xffffffff};
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file_name);
    unsigned char *bytes = malloc(s->size);
    ck_assert_ptr_nonnull(bytes);
    fuzz_counts counts = {0, 0};
    for (int f = 0; f < s->n_fields; f++)
        for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
            memcpy(bytes, s->bytes, s->size);
            put_uint(bytes + s->fields[f].offset, s->fields[f].width, values[v], s->big_endian);
            unlink(path); /* see fuzz_file */
            mc_test_write_file(path, bytes, s->size);
            check_one(parse, path, file_name, s->name, f * 100 + (int)v, &counts);
        }
    free(bytes);
    return counts;
}

static void assert_both_outcomes(const char *what, fuzz_counts counts) {
    printf("%s: %d accepted, %d rejected\n", what, counts.accepted, counts.rejected);
    ck_assert_msg(counts.accepted > 0, "%s: no mutant was accepted (the fuzzer tested nothing)", what);
    ck_assert_msg(counts.rejected > 0, "%s: no mutant was rejected (the fuzzer tested nothing)", what);
}

static void add_counts(fuzz_counts *total, fuzz_counts more) {
    total->accepted += more.accepted;
    total->rejected += more.rejected;
}

static seed load_seed(const char *name, const char *path, bool big_endian) {
    seed s = {.name = name, .big_endian = big_endian};
    s.bytes = (unsigned char *)mc_test_read_file(path, &s.size);
    ck_assert_msg(s.size > 0 && s.size <= MAX_FILE, "seed %s: %zu bytes", path, s.size);
    return s;
}

/* ---- TIFF ---- */

static uint32_t get_le(const unsigned char *p, int width) {
    uint32_t v = 0;
    for (int i = width - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* The fields of a classic little-endian TIFF's first directory: the IFD
 * offset, every entry's count and value, and the first elements of arrays
 * stored elsewhere (strip/tile offsets and byte counts). */
static void find_tiff_fields(seed *s) {
    ck_assert(s->size > 8 && s->bytes[0] == 'I' && s->bytes[2] == 42);
    seed_add_field(s, 4, 4);
    size_t ifd = get_le(s->bytes + 4, 4);
    ck_assert(ifd + 2 <= s->size);
    int entries = (int)get_le(s->bytes + ifd, 2);
    seed_add_field(s, ifd, 2);
    for (int e = 0; e < entries && ifd + 2 + 12 * (size_t)(e + 1) <= s->size; e++) {
        size_t entry = ifd + 2 + 12 * (size_t)e;
        uint32_t type = get_le(s->bytes + entry + 2, 2), count = get_le(s->bytes + entry + 4, 4);
        int size = type == 3 ? 2 : type == 4 ? 4 : 1; /* SHORT, LONG, else bytes */
        seed_add_field(s, entry + 4, 4);
        seed_add_field(s, entry + 8, (size_t)size * count <= 4 && size == 2 ? 2 : 4);
        if ((size_t)size * count > 4) { /* an array elsewhere: its first three elements */
            size_t at = get_le(s->bytes + entry + 8, 4);
            for (uint32_t i = 0; i < count && i < 3; i++) seed_add_field(s, at + i * (size_t)size, size);
        }
    }
}

static mc_status parse_tiff(const char *path) {
    mc_raster raster;
    mc_status status = mc_tiff_read(path, &raster);
    if (status != MC_OK) return status;
    ck_assert(raster.height > 0 && raster.width > 0 && raster.bands > 0 && raster.data != NULL);
    /* Touch every sample: an undersized buffer shows up under ASan. */
    double sum = 0.0;
    for (size_t i = 0; i < (size_t)raster.height * raster.width * raster.bands; i++) sum += raster.data[i];
    (void)sum;
    mc_raster_free(&raster);
    return MC_OK;
}

static seed tiff_seed(const char *dir, const char *name, const mc_test_tiff_spec *spec) {
    char path[1024];
    snprintf(path, sizeof path, "%s/seed_%s.tif", dir, name);
    if (spec) {
        mc_test_write_tiff(path, spec);
    } else { /* our own writer: EuroSAT's layout */
        uint16_t pixels[8 * 8 * 13];
        for (int i = 0; i < 8 * 8 * 13; i++) pixels[i] = (uint16_t)(i * 37);
        MC_CHECK_OK(mc_tiff_write_u16(path, pixels, 8, 8, 13));
    }
    seed s = load_seed(name, path, false);
    find_tiff_fields(&s);
    return s;
}

START_TEST(test_fuzz_tiff) {
    const mc_test_tiff_spec specs[] = {
        {8, 8, 13, 16, SAMPLEFORMAT_UINT, COMPRESSION_LZW, PLANARCONFIG_CONTIG, 0, 1},
        {8, 8, 4, 16, SAMPLEFORMAT_UINT, COMPRESSION_ADOBE_DEFLATE, PLANARCONFIG_SEPARATE, 0, 2},
        {20, 12, 3, 16, SAMPLEFORMAT_UINT, COMPRESSION_LZW, PLANARCONFIG_CONTIG, 16, 3},
        {20, 12, 3, 8, SAMPLEFORMAT_UINT, COMPRESSION_NONE, PLANARCONFIG_SEPARATE, 16, 4},
        {6, 6, 2, 32, SAMPLEFORMAT_IEEEFP, COMPRESSION_ADOBE_DEFLATE, PLANARCONFIG_CONTIG, 0, 5},
    };
    const char *names[] = {"lzw", "deflate_planar", "tiled_lzw", "tiled_planar_u8", "float_deflate"};
    fuzz_counts total = {0, 0};
    for (int i = -1; i < 5; i++) {
        seed s = tiff_seed(mc_test_dir, i < 0 ? "eurosat_u16" : names[i], i < 0 ? NULL : &specs[i]);
        add_counts(&total, fuzz_file(&s, mc_test_dir, "mutant.tif", NULL, parse_tiff, NULL, 500));
        add_counts(&total, sweep_fields(&s, mc_test_dir, "field.tif", parse_tiff));
        free(s.bytes);
    }
    assert_both_outcomes("TIFF", total);
}
END_TEST

/* The case named in the standards: a header declaring a 10^8-pixel image
 * in a file of a few kilobytes is refused before anything that size is
 * allocated, with a message saying why. */
START_TEST(test_tiff_huge_header_refused) {
    char path[1024];
    seed s = tiff_seed(mc_test_dir, "eurosat_u16", NULL);
    size_t ifd = get_le(s.bytes + 4, 4);
    int entries = (int)get_le(s.bytes + ifd, 2);
    for (int e = 0; e < entries; e++) {
        unsigned char *entry = s.bytes + ifd + 2 + 12 * (size_t)e;
        uint32_t tag = get_le(entry, 2);
        if (tag == TIFFTAG_IMAGEWIDTH || tag == TIFFTAG_IMAGELENGTH || tag == TIFFTAG_ROWSPERSTRIP) {
            put_uint(entry + 2, 2, 4, false); /* type LONG */
            /* 12000 x 12000 x 13 samples: under the 2^31-sample cap, so
             * it is the file size that refuses it. */
            put_uint(entry + 8, 4, tag == TIFFTAG_ROWSPERSTRIP ? 4 : 12000, false);
        }
    }
    mc_test_dir_path("huge.tif", path, sizeof path);
    mc_test_write_file(path, s.bytes, s.size);
    mc_raster raster;
    MC_CHECK_FAILS(mc_tiff_read(path, &raster), MC_ERR_FORMAT, "huge.tif");
    ck_assert_msg(strstr(mc_last_error(), "byte file"), "message: %s", mc_last_error());
    ck_assert_ptr_null(raster.data);
    free(s.bytes);
}
END_TEST

/* ---- PNG ---- */

/* Chunk lengths and IHDR's fields (width, height, depth, colour type, ...). */
static void find_png_fields(seed *s) {
    size_t at = 8;
    while (at + 12 <= s->size) {
        uint32_t len = ((uint32_t)s->bytes[at] << 24) | ((uint32_t)s->bytes[at + 1] << 16) |
                       ((uint32_t)s->bytes[at + 2] << 8) | s->bytes[at + 3];
        seed_add_field(s, at, 4);
        if (memcmp(s->bytes + at + 4, "IHDR", 4) == 0) {
            seed_add_field(s, at + 8, 4);  /* width */
            seed_add_field(s, at + 12, 4); /* height */
            for (int i = 16; i < 21; i++) seed_add_field(s, at + (size_t)i, 1);
        }
        at += 12 + (size_t)len;
    }
}

/* Recompute every chunk's CRC, so a mutation is judged by the decoder and
 * not just caught by the checksum. */
static void repair_png_crcs(unsigned char *bytes, size_t n) {
    size_t at = 8;
    while (at + 12 <= n) {
        uint32_t len = ((uint32_t)bytes[at] << 24) | ((uint32_t)bytes[at + 1] << 16) |
                       ((uint32_t)bytes[at + 2] << 8) | bytes[at + 3];
        if (len > n - at - 12) return;
        uint32_t crc = (uint32_t)crc32(0L, bytes + at + 4, (uInt)len + 4);
        put_uint(bytes + at + 8 + len, 4, crc, true);
        at += 12 + (size_t)len;
    }
}

static mc_status parse_png(const char *path) {
    mc_tensor *image = NULL;
    int depth = 0;
    mc_status status = mc_png_read(path, &image, &depth);
    if (status != MC_OK) {
        ck_assert_ptr_null(image);
        return status;
    }
    ck_assert(image->shape.ndim == 3 && image->shape.dim[0] >= 1 && image->shape.dim[0] <= 4);
    ck_assert(depth == 8 || depth == 16);
    for (long i = 0; i < image->numel; i++) ck_assert(image->data[i] >= 0.0f && image->data[i] <= 1.0f);
    mc_tensor_free(image);
    return MC_OK;
}

START_TEST(test_fuzz_png) {
    char path[1024];
    const char *fixtures[] = {"image_rgb8.png", "image_rgba8.png", "image_la8.png", "image_gray16.png"};
    fuzz_counts total = {0, 0};
    for (int i = 0; i < 4; i++) {
        seed s = load_seed(fixtures[i], mc_test_fixture_path(fixtures[i], path, sizeof path), true);
        find_png_fields(&s);
        add_counts(&total, fuzz_file(&s, mc_test_dir, "mutant.png", NULL, parse_png, repair_png_crcs, 700));
        free(s.bytes);
    }
    assert_both_outcomes("PNG", total);
}
END_TEST

/* A valid PNG header announcing 20,000 x 20,000 RGB pixels (1.2 GB
 * decoded) in a 163-byte file: refused from the file size, nothing
 * allocated. */
START_TEST(test_png_huge_header_refused) {
    char path[1024];
    seed s = load_seed("rgb8", mc_test_fixture_path("image_rgb8.png", path, sizeof path), true);
    put_uint(s.bytes + 16, 4, 20000, true);
    put_uint(s.bytes + 20, 4, 20000, true);
    s.bytes[24] = 8;
    s.bytes[25] = 2; /* RGB */
    repair_png_crcs(s.bytes, s.size);
    mc_test_dir_path("huge.png", path, sizeof path);
    mc_test_write_file(path, s.bytes, s.size);
    mc_tensor *image = NULL;
    MC_CHECK_FAILS(mc_png_read(path, &image, NULL), MC_ERR_FORMAT, "huge.png");
    ck_assert_msg(strstr(mc_last_error(), "byte file"), "message: %s", mc_last_error());
    ck_assert_ptr_null(image);
    free(s.bytes);
}
END_TEST

/* Appends the PNG chunk `type` with `len` bytes of data (and its CRC). */
static size_t put_png_chunk(unsigned char *out, const char *type, const unsigned char *data,
                            uint32_t len) {
    put_uint(out, 4, len, true);
    memcpy(out + 4, type, 4);
    if (len) memcpy(out + 8, data, len);
    put_uint(out + 8 + len, 4, (uint32_t)crc32(0L, out + 4, (uInt)len + 4), true);
    return 12 + (size_t)len;
}

/* A SIDE x SIDE 1-bit palette PNG of all-zero rows, written to `name` in
 * the test directory (its path in path, 1024 bytes): a few hundred KB that
 * deflate can honestly expand to its stored rows, so the file-size check
 * passes and only the bound on what the decode allocates can refuse it. */
static void write_palette_png(uint32_t side, const char *name, char *path) {
    const size_t row_bytes = 1 + side / 8; /* filter byte + 1 bit a pixel */
    unsigned char ihdr[13] = {0}, plte[3] = {0, 128, 0};
    unsigned char *row = calloc(row_bytes, 1);
    ck_assert_ptr_nonnull(row);
    put_uint(ihdr, 4, side, true);
    put_uint(ihdr + 4, 4, side, true);
    ihdr[8] = 1; /* bit depth */
    ihdr[9] = 3; /* palette */
    z_stream z = {0};
    ck_assert_int_eq(deflateInit(&z, 9), Z_OK);
    const size_t room = 1 << 20;
    unsigned char *idat = malloc(room);
    ck_assert_ptr_nonnull(idat);
    z.next_out = idat;
    z.avail_out = (uInt)room;
    for (uint32_t y = 0; y < side; y++) {
        z.next_in = row;
        z.avail_in = (uInt)row_bytes;
        ck_assert_int_eq(deflate(&z, y + 1 < side ? Z_NO_FLUSH : Z_FINISH), y + 1 < side ? Z_OK : Z_STREAM_END);
    }
    const uint32_t idat_len = (uint32_t)z.total_out;
    deflateEnd(&z);
    unsigned char *file = malloc(idat_len + 128);
    ck_assert_ptr_nonnull(file);
    static const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    memcpy(file, signature, 8);
    size_t n = 8;
    n += put_png_chunk(file + n, "IHDR", ihdr, sizeof ihdr);
    n += put_png_chunk(file + n, "PLTE", plte, sizeof plte);
    n += put_png_chunk(file + n, "IDAT", idat, idat_len);
    n += put_png_chunk(file + n, "IEND", NULL, 0);
    mc_test_dir_path(name, path, 1024);
    mc_test_write_file(path, file, n);
    free(idat);
    free(file);
    free(row);
}

/* Palette PNGs whose decode would allocate past the decoders' 8 GiB cap,
 * refused before anything is allocated. 65536 x 65536 (520 KB): expanded
 * to 8-bit RGB, 12.9 GB of samples. 40000 x 40000 (200 KB): 4.8 GB of
 * samples, under the cap, but 19.2 GB more as the floats they become. */
START_TEST(test_png_expanded_size_refused) {
    char path[1024];
    mc_tensor *image = NULL;
    write_palette_png(65536, "expands.png", path);
    MC_CHECK_FAILS(mc_png_read(path, &image, NULL), MC_ERR_FORMAT,
                   "expands.png: PNG header declares 65536x65536 pixels of 3 channels");
    ck_assert_ptr_null(image);
    write_palette_png(40000, "floats.png", path);
    MC_CHECK_FAILS(mc_png_read(path, &image, NULL), MC_ERR_FORMAT,
                   "floats.png: PNG header declares 40000x40000 pixels of 3 channels, 24000000000 bytes");
    ck_assert_ptr_null(image);
}
END_TEST

/* ---- JPEG ---- */

/* Every marker segment's length, and the frame header's height, width,
 * component count and sampling factors. */
static void find_jpeg_fields(seed *s) {
    size_t at = 2;
    while (at + 4 <= s->size && s->bytes[at] == 0xFF) {
        unsigned char marker = s->bytes[at + 1];
        size_t len = ((size_t)s->bytes[at + 2] << 8) | s->bytes[at + 3];
        seed_add_field(s, at + 2, 2);
        if (marker == 0xC0 || marker == 0xC2) {
            seed_add_field(s, at + 5, 2); /* height */
            seed_add_field(s, at + 7, 2); /* width */
            seed_add_field(s, at + 9, 1); /* components */
            seed_add_field(s, at + 11, 1); /* first component's sampling */
        }
        if (marker == 0xDA) {
            seed_add_field(s, at + 4, 1); /* components in the scan */
            break;                        /* entropy-coded data follows */
        }
        at += 2 + len;
    }
}

/* A 24 x 16 JPEG written with libjpeg itself, in memory (*size bytes,
 * the caller frees it): baseline, libjpeg's own progression, or the
 * progressive scans of `script` (n_scans of them) when it is not NULL. */
static unsigned char *encode_jpeg(bool progressive, bool grey, const jpeg_scan_info *script,
                                  int n_scans, unsigned long *size) {
    enum { W = 24, H = 16 };
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    unsigned char *buffer = NULL;
    *size = 0;
    jpeg_mem_dest(&cinfo, &buffer, size);
    cinfo.image_width = W;
    cinfo.image_height = H;
    cinfo.input_components = grey ? 1 : 3;
    cinfo.in_color_space = grey ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, 90, TRUE);
    if (progressive) jpeg_simple_progression(&cinfo);
    if (script) {
        cinfo.scan_info = script;
        cinfo.num_scans = n_scans;
    }
    jpeg_start_compress(&cinfo, TRUE);
    unsigned char row[W * 3];
    while (cinfo.next_scanline < H) {
        for (int i = 0; i < W * 3; i++) row[i] = (unsigned char)(i * 9 + cinfo.next_scanline * 13);
        JSAMPROW rows[1] = {row};
        jpeg_write_scanlines(&cinfo, rows, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return buffer;
}

/* A small JPEG written with libjpeg itself: baseline or progressive. */
static seed jpeg_seed(const char *name, bool progressive, bool grey) {
    unsigned long size;
    unsigned char *buffer = encode_jpeg(progressive, grey, NULL, 0, &size);
    seed s = {.name = name, .big_endian = true, .size = size};
    s.bytes = malloc(size);
    ck_assert_ptr_nonnull(s.bytes);
    memcpy(s.bytes, buffer, size);
    free(buffer);
    find_jpeg_fields(&s);
    return s;
}

/* A colour JPEG of 1 + 3 x 63 = 190 progressive scans: the DC
 * coefficients of all three components, then each AC coefficient of each
 * component in a scan of its own. Valid (libjpeg writes it and reads it
 * back without a warning), but each scan decodes the whole image again. */
static void write_many_scans_jpeg(const char *path) {
    enum { SCANS = 1 + 3 * 63 };
    static jpeg_scan_info script[SCANS];
    script[0] = (jpeg_scan_info){.comps_in_scan = 3, .component_index = {0, 1, 2}, .Ss = 0, .Se = 0};
    for (int c = 0, n = 1; c < 3; c++)
        for (int k = 1; k <= 63; k++, n++)
            script[n] = (jpeg_scan_info){.comps_in_scan = 1, .component_index = {c}, .Ss = k, .Se = k};
    unsigned long size;
    unsigned char *buffer = encode_jpeg(false, false, script, SCANS, &size);
    mc_test_write_file(path, buffer, size);
    free(buffer);
}

/* More than 100 scans are refused (a small file of a thousand such scans
 * takes minutes); libjpeg's own ten-scan progression reads as before. */
START_TEST(test_jpeg_scan_limit) {
    char path[1024];
    mc_test_dir_path("scans.jpg", path, sizeof path);
    write_many_scans_jpeg(path);
    mc_tensor *image = NULL;
    MC_CHECK_FAILS(mc_jpeg_read(path, &image), MC_ERR_FORMAT,
                   "scans.jpg: corrupt or unsupported JPEG: a progressive JPEG of more than 100 scans");
    ck_assert_ptr_null(image);
    seed progressive = jpeg_seed("progressive", true, false);
    mc_test_dir_path("progressive.jpg", path, sizeof path);
    mc_test_write_file(path, progressive.bytes, progressive.size);
    free(progressive.bytes);
    MC_CHECK_OK(mc_jpeg_read(path, &image));
    mc_tensor_free(image);
}
END_TEST

static mc_status parse_jpeg(const char *path) {
    mc_tensor *image = NULL;
    mc_status status = mc_jpeg_read(path, &image);
    if (status != MC_OK) {
        ck_assert_ptr_null(image);
        return status;
    }
    ck_assert(image->shape.ndim == 3 && (image->shape.dim[0] == 1 || image->shape.dim[0] == 3));
    for (long i = 0; i < image->numel; i++) ck_assert(image->data[i] >= 0.0f && image->data[i] <= 1.0f);
    mc_tensor_free(image);
    return MC_OK;
}

/* Through the dispatcher, which picks the decoder from the first bytes. */
static mc_status parse_any_image(const char *path) {
    mc_tensor *image = NULL;
    mc_status status = mc_image_read(path, &image);
    mc_tensor_free(image);
    return status;
}

START_TEST(test_fuzz_jpeg) {
    char path[1024];
    seed seeds[4] = {jpeg_seed("baseline", false, false), jpeg_seed("progressive", true, false),
                     jpeg_seed("grey", false, true),
                     load_seed("image_photo.jpg", mc_test_fixture_path("image_photo.jpg", path, sizeof path), true)};
    find_jpeg_fields(&seeds[3]);
    fuzz_counts total = {0, 0};
    for (int i = 0; i < 4; i++) {
        add_counts(&total, fuzz_file(&seeds[i], mc_test_dir, "mutant.jpg", NULL, parse_jpeg, NULL, 500));
        add_counts(&total, fuzz_file(&seeds[i], mc_test_dir, "mutant.img", NULL, parse_any_image, NULL, 100));
        free(seeds[i].bytes);
    }
    assert_both_outcomes("JPEG", total);
}
END_TEST

/* ---- the tokenizer's merges.txt, merges .gz and vocab.json ---- */

static const char *const TRAINING_TEXTS[] = {"a photo of a fox", "a photo of the river", "lower lower",
                                             "newest newest newest", "widest widest widest",
                                             "caf\xC3\xA9 na\xC3\xAFve \xE2\x82\xAC 42"};
static char tokenizer_dir[600];

/* Load the folder (merges.txt, checked against the vocab.json beside it)
 * and, when it loads, tokenize a text with it. */
static mc_status parse_tokenizer_folder(const char *path) {
    (void)path; /* the mutant is one file of the folder */
    mc_tokenizer *tok = NULL;
    mc_status status = mc_tokenizer_load(tokenizer_dir, &tok);
    if (status != MC_OK) {
        ck_assert_ptr_null(tok);
        return status;
    }
    int32_t ids[MC_CLIP_CONTEXT];
    MC_CHECK_OK(mc_tokenizer_tokenize(tok, "a photo of the newest fox", MC_CLIP_CONTEXT, true, ids));
    ck_assert_int_eq(ids[0], mc_tokenizer_sot(tok));
    mc_tokenizer_free(tok);
    return MC_OK;
}

static mc_status parse_merges_file(const char *path) {
    mc_tokenizer *tok = NULL;
    mc_status status = mc_tokenizer_load(path, &tok);
    mc_tokenizer_free(tok);
    return status;
}

static seed text_seed(const char *name, const char *path) {
    seed s = load_seed(name, path, false);
    /* Text formats have no binary fields: aim at line starts instead. */
    for (size_t i = 0; i + 1 < s.size; i++)
        if (i == 0 || s.bytes[i - 1] == '\n') seed_add_field(&s, i, 1);
    return s;
}

START_TEST(test_fuzz_tokenizer_files) {
    mc_test_temp_dir(tokenizer_dir, sizeof tokenizer_dir);
    mc_tokenizer *trained = NULL;
    MC_CHECK_OK(mc_tokenizer_train(TRAINING_TEXTS, 6, 40, &trained));
    MC_CHECK_OK(mc_tokenizer_save(trained, tokenizer_dir));
    char merges[1024], vocab[1024], gz_path[1024];
    snprintf(merges, sizeof merges, "%s/merges.txt", tokenizer_dir);
    snprintf(vocab, sizeof vocab, "%s/vocab.json", tokenizer_dir);
    seed merges_seed = text_seed("merges.txt", merges), vocab_seed = text_seed("vocab.json", vocab);

    /* The same merges gzip-compressed, in a folder of their own. */
    char gz_dir[600];
    mc_test_temp_dir(gz_dir, sizeof gz_dir);
    snprintf(gz_path, sizeof gz_path, "%s/merges.txt.gz", gz_dir);
    gzFile gz = gzopen(gz_path, "wb");
    ck_assert_ptr_nonnull(gz);
    ck_assert_int_eq(gzwrite(gz, merges_seed.bytes, (unsigned)merges_seed.size), (int)merges_seed.size);
    ck_assert_int_eq(gzclose(gz), Z_OK);
    seed gz_seed = load_seed("merges.txt.gz", gz_path, false);

    /* A problem may be reported against either file: the message must
     * name the folder. */
    const char *folder_name = strrchr(tokenizer_dir, '/') + 1;
    fuzz_counts total = {0, 0};
    /* Mutate merges.txt with a valid vocab.json beside it, then restore. */
    add_counts(&total, fuzz_file(&merges_seed, tokenizer_dir, "merges.txt", folder_name, parse_tokenizer_folder, NULL, 500));
    mc_test_write_file(merges, merges_seed.bytes, merges_seed.size);
    add_counts(&total, fuzz_file(&vocab_seed, tokenizer_dir, "vocab.json", folder_name, parse_tokenizer_folder, NULL, 500));
    add_counts(&total, fuzz_file(&gz_seed, gz_dir, "merges.txt.gz", NULL, parse_merges_file, NULL, 500));
    assert_both_outcomes("tokenizer files", total);

    free(merges_seed.bytes), free(vocab_seed.bytes), free(gz_seed.bytes);
    mc_tokenizer_free(trained);
    mc_test_remove_tree(tokenizer_dir);
    mc_test_remove_tree(gz_dir);
}
END_TEST

/* ---- folder scanners: image folders and EuroSAT ---- */

/* Names a class folder or file may have on a hostile disk. */
static const char *const WEIRD_NAMES[] = {
    "River", "with space", "%s%n%x", "caf\xC3\xA9", "bad\xFFutf8", "new\nline", "back\\slash",
    "x.png", "y.tif", "-dash", "a.PNG", "b.JpEg", "c.TIFF", ".hidden", "z.tif.", "noext", "..dots..",
};

/* One random entry in folder `dir`: a file (valid image or tile, empty, or
 * garbage), a folder, or a link (to the parent: a loop; to itself; dangling). */
static void add_random_entry(const char *dir, const char *good_png, const char *good_tif, int depth) {
    char path[2048];
    const char *name = WEIRD_NAMES[fuzz_below(sizeof WEIRD_NAMES / sizeof WEIRD_NAMES[0])];
    char unique[300];
    snprintf(unique, sizeof unique, "%s%u", name, fuzz_below(4));
    if (fuzz_below(3) == 0) snprintf(unique, sizeof unique, "%s", name); /* keep the extension last */
    join(path, sizeof path, dir, unique);
    switch (fuzz_below(9)) {
    case 0: case 1: {
        if (mkdir(path, 0755) == 0 && depth < 2)
            for (int i = 0, n = (int)fuzz_below(4); i < n; i++) add_random_entry(path, good_png, good_tif, depth + 1);
        break;
    }
    case 2: if (symlink(good_png, path)) {} break;
    case 3: if (symlink(good_tif, path)) {} break;
    case 4: if (symlink(dir, path)) {} break;  /* a loop: the folder inside itself */
    case 5: if (symlink(path, path)) {} break; /* a link to itself */
    case 6: if (symlink("/nonexistent/target", path)) {} break;
    default: { /* an empty file or garbage; the name may be taken already */
        FILE *f = fopen(path, "wb");
        if (f) fwrite("garbage\x89PNG\xFF\xD8", 1, fuzz_below(2) ? 12 : 0, f), fclose(f);
        break;
    }
    }
}

static mc_status scan_image_folder(const char *dir) {
    mc_image_folder folder;
    mc_status status = mc_image_folder_open(dir, &folder);
    if (status != MC_OK) return status;
    ck_assert(folder.num_classes > 0 && folder.count > 0);
    for (int i = 0; i < folder.count; i++) {
        ck_assert(folder.labels[i] >= 0 && folder.labels[i] < folder.num_classes);
        ck_assert_msg(mc_test_file_exists(folder.paths[i]), "listed %s does not exist", folder.paths[i]);
    }
    mc_image_folder_free(&folder);
    return MC_OK;
}

static mc_status scan_eurosat(const char *dir) {
    mc_eurosat *ds = NULL;
    mc_eurosat_options options = mc_eurosat_default_options();
    char splits[8192];
    join(splits, sizeof splits, dir, "splits");
    if (mc_test_file_exists(splits)) options.split_dir = splits;
    mc_status status = mc_eurosat_open(&ds, dir, &options);
    if (status != MC_OK) {
        ck_assert_ptr_null(ds);
        return status;
    }
    ck_assert(mc_eurosat_size(ds) > 0 && mc_eurosat_num_classes(ds) > 0);
    mc_eurosat_free(ds);
    return MC_OK;
}

/* A split file of random lines: names of tiles that may exist, garbage,
 * a line longer than any buffer, no final newline. */
static void add_random_split_file(const char *dir) {
    char path[8400], text[2048] = "";
    char splits[8192];
    join(splits, sizeof splits, dir, "splits");
    if (mkdir(splits, 0755) != 0) return;
    join(path, sizeof path, splits, fuzz_below(2) ? "eurosat-train.txt" : "eurosat-val.txt");
    for (int i = 0, n = (int)fuzz_below(5); i < n; i++) {
        const char *line = WEIRD_NAMES[fuzz_below(sizeof WEIRD_NAMES / sizeof WEIRD_NAMES[0])];
        if (fuzz_below(4) == 0) line = "tile0.jpg";
        snprintf(text + strlen(text), sizeof text - strlen(text), "%s%s", line, fuzz_below(3) ? "\n" : "\r\n");
    }
    if (fuzz_below(4) == 0) memset(text + strlen(text), 'x', 1000), text[1600] = '\0';
    mc_test_write_text(path, text);
}

START_TEST(test_fuzz_folder_scanners) {
    char base[512], good_png[1024], good_tif[1024], dir[1024];
    mc_test_temp_dir(base, sizeof base);
    mc_test_fixture_path("image_rgb8.png", good_png, sizeof good_png);
    snprintf(good_tif, sizeof good_tif, "%s/tile0.tif", base);
    uint16_t pixels[4 * 4 * 13] = {0};
    MC_CHECK_OK(mc_tiff_write_u16(good_tif, pixels, 4, 4, 13));
    fuzz_counts images = {0, 0}, eurosat = {0, 0};
    for (int iteration = 0; iteration < 300; iteration++) {
        snprintf(dir, sizeof dir, "%s/tree%d", base, iteration);
        switch (fuzz_below(8)) {
        case 0: mc_test_write_text(dir, "a file, not a folder"); break;
        case 1: if (symlink(dir, dir)) {} break; /* the root a link to itself */
        default: { /* one valid class folder, then random entries that may spoil it */
            char class_dir[1200], link[1300];
            ck_assert_int_eq(mkdir(dir, 0755), 0);
            ck_assert_int_eq(mkdir(join(class_dir, sizeof class_dir, dir, "Forest"), 0755), 0);
            ck_assert_int_eq(symlink(good_tif, join(link, sizeof link, class_dir, "t.tif")), 0);
            ck_assert_int_eq(symlink(good_png, join(link, sizeof link, class_dir, "p.png")), 0);
            for (int i = 0, n = (int)fuzz_below(4); i < n; i++) add_random_entry(dir, good_png, good_tif, 0);
            break;
        }
        }
        if (fuzz_below(3) == 0) add_random_split_file(dir);
        const char *name = strrchr(dir, '/') + 1;
        check_one(scan_image_folder, dir, name, "image folder", iteration, &images);
        check_one(scan_eurosat, dir, name, "EuroSAT folder", iteration, &eurosat);
        mc_test_remove_tree(dir);
    }
    assert_both_outcomes("image folder scan", images);
    assert_both_outcomes("EuroSAT scan", eurosat);
    mc_test_remove_tree(base);
}
END_TEST

/* A class folder whose path would pass PATH_MAX (4096 bytes) is refused
 * by name, never cut short and read as some other path. */
START_TEST(test_folder_scan_overlong_paths) {
    char base[512], cwd[4096];
    mc_test_temp_dir(base, sizeof base);
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    /* base/ddd.../ddd... to just under 4096 bytes, made relative to each parent;
     * inside it a class folder with a 250-byte name. */
    char segment[251];
    memset(segment, 'd', 250), segment[250] = '\0';
    char *deep = malloc(8192);
    ck_assert_ptr_nonnull(deep);
    snprintf(deep, 8192, "%s", base);
    ck_assert_int_eq(chdir(base), 0);
    while (strlen(deep) + 251 < 4095) { /* deep stays openable, deep/<segment> does not fit */
        ck_assert_int_eq(mkdir(segment, 0755), 0);
        ck_assert_int_eq(chdir(segment), 0);
        strcat(deep, "/"), strcat(deep, segment);
    }
    ck_assert_int_eq(mkdir(segment, 0755), 0);
    char file[300];
    snprintf(file, sizeof file, "%s/a.png", segment);
    mc_test_write_file(file, "x", 1);
    ck_assert_int_eq(chdir(cwd), 0);
    mc_image_folder folder;
    MC_CHECK_FAILS(mc_image_folder_open(deep, &folder), MC_ERR_IO, "too long");
    free(deep);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static Suite *fuzz_suite(void) {
    Suite *s = suite_create("fuzz_parsers");
    /* Thousands of files per case, under sanitizers too. */
    const TTest *const images[] = {test_fuzz_tiff, test_tiff_huge_header_refused, test_fuzz_png,
                                   test_png_huge_header_refused, test_png_expanded_size_refused,
                                   test_fuzz_jpeg, test_jpeg_scan_limit, NULL};
    tcase_set_timeout(mc_test_use_temp_dir(mc_test_add_case(s, "images", images)), 300);
    const TTest *const text[] = {test_fuzz_tokenizer_files, NULL};
    tcase_set_timeout(mc_test_add_case(s, "text", text), 300);
    const TTest *const folders[] = {test_fuzz_folder_scanners, test_folder_scan_overlong_paths, NULL};
    tcase_set_timeout(mc_test_add_case(s, "folders", folders), 300);
    return s;
}

int main(void) { return mc_test_run_suite(fuzz_suite()); }
