/* mmchain — errors.
 *
 * Every fallible library function returns an mc_status. MC_OK (zero) means
 * success; anything else means the function failed, left its outputs
 * untouched (or NULL), and stored a human-readable message that names the
 * file, tensor or shape involved and what was expected. The message is
 * thread-local and stays until the next error on the same thread.
 *
 *     mc_status s = mc_safetensors_open("w.safetensors", &file);
 *     if (s != MC_OK) fprintf(stderr, "error: %s\n", mc_last_error());
 *
 * The library never calls exit() or abort(): the caller decides. */
#ifndef MMCHAIN_ERROR_H
#define MMCHAIN_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mc_status {
    MC_OK = 0,
    MC_ERR_ARG,         /* a bad argument: NULL, negative size, unknown name */
    MC_ERR_SHAPE,       /* tensor shapes do not fit together */
    MC_ERR_NOMEM,       /* an allocation failed */
    MC_ERR_IO,          /* a file could not be opened, read or written */
    MC_ERR_FORMAT,      /* a file or string is malformed */
    MC_ERR_NUMERIC,     /* NaN/Inf or another numerical failure */
    MC_ERR_UNSUPPORTED, /* valid, but not something this library does */
    MC_ERR_STATE        /* called at the wrong time (e.g. backward twice) */
} mc_status;

/* The message of the last error on this thread ("" if none). */
const char *mc_last_error(void);

/* A short name for a status code ("MC_ERR_SHAPE"). */
const char *mc_status_name(mc_status status);

/* Store a printf-formatted message and return `status` unchanged, so that a
 * failing function can end with `return mc_error(MC_ERR_ARG, "...", ...);`. */
mc_status mc_error(mc_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Prepend context to the current message ("loading resnet50: " + message),
 * returning `status`. Used when an error passes up through a layer that
 * knows more about what was being done. */
mc_status mc_error_context(mc_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Forget the current message. */
void mc_clear_error(void);

/* Propagate a failure: evaluate `expr`; if it is not MC_OK, return it. */
#define MC_TRY(expr)                                  \
    do {                                              \
        mc_status mc_try_status_ = (expr);            \
        if (mc_try_status_ != MC_OK) return mc_try_status_; \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
