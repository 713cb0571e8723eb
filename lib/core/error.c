/* Errors: a thread-local message and the status-returning helpers. */
#include "mmchain/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { MESSAGE_CAPACITY = 1024 };

static _Thread_local char last_message[MESSAGE_CAPACITY];

const char *mc_last_error(void) { return last_message; }

void mc_clear_error(void) { last_message[0] = '\0'; }

const char *mc_status_name(mc_status status) {
    switch (status) {
    case MC_OK: return "MC_OK";
    case MC_ERR_ARG: return "MC_ERR_ARG";
    case MC_ERR_SHAPE: return "MC_ERR_SHAPE";
    case MC_ERR_NOMEM: return "MC_ERR_NOMEM";
    case MC_ERR_IO: return "MC_ERR_IO";
    case MC_ERR_FORMAT: return "MC_ERR_FORMAT";
    case MC_ERR_NUMERIC: return "MC_ERR_NUMERIC";
    case MC_ERR_UNSUPPORTED: return "MC_ERR_UNSUPPORTED";
    case MC_ERR_STATE: return "MC_ERR_STATE";
    }
    return "MC_ERR_UNKNOWN";
}

mc_status mc_error(mc_status status, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, args);
    va_end(args);
    return status;
}

mc_status mc_error_context(mc_status status, const char *fmt, ...) {
    char previous[MESSAGE_CAPACITY];
    memcpy(previous, last_message, sizeof previous);
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(last_message, sizeof last_message, fmt, args);
    va_end(args);
    if (n >= 0 && (size_t)n < sizeof last_message)
        snprintf(last_message + n, sizeof last_message - (size_t)n, "%s", previous);
    return status;
}
