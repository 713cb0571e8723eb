/* Running a call in a child process under a memory and a time limit (for
 * loaders that must refuse a file declaring a huge model before they
 * allocate it), or under a file size limit (for writers that must survive
 * a full disk). */
#define _POSIX_C_SOURCE 200809L
#include "limited.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* The process's address space now, from /proc/self/statm (in pages). */
static size_t current_address_space(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (f) {
        if (fscanf(f, "%lu", &pages) != 1) pages = 0;
        fclose(f);
    }
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

bool mc_test_memory_limit_applies(void) {
#ifdef UNDER_ASAN
    return false;
#else
    return current_address_space() > 0;
#endif
}

void mc_test_expect_fails_limited(mc_limited_fn fn, void *ctx, size_t extra_bytes, unsigned seconds,
                                  mc_status code, const char *needle) {
    size_t limit = current_address_space() + extra_bytes;
    fflush(NULL);
    pid_t child = fork();
    ck_assert_msg(child >= 0, "fork failed");
    if (child == 0) {
        if (mc_test_memory_limit_applies()) {
            struct rlimit r = {.rlim_cur = limit, .rlim_max = limit};
            if (setrlimit(RLIMIT_AS, &r) != 0) _exit(3);
        }
        alarm(seconds);
        mc_clear_error();
        mc_status status = fn(ctx);
        bool expected = status == code && strstr(mc_last_error(), needle) != NULL;
        if (!expected)
            fprintf(stderr, "returned %s, expected %s with \"%s\": %s\n", mc_status_name(status),
                    mc_status_name(code), needle, mc_last_error());
        fflush(stderr);
        _exit(expected ? 0 : 1);
    }
    int wstatus = 0;
    ck_assert_int_eq(waitpid(child, &wstatus, 0), child);
    ck_assert_msg(!WIFSIGNALED(wstatus), "the call died of signal %d (%s) under a %zu-byte, %u-second limit",
                  WTERMSIG(wstatus), WTERMSIG(wstatus) == SIGALRM ? "time limit" : "crash",
                  extra_bytes, seconds);
    ck_assert_msg(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0,
                  "the call did not fail as expected under the limit (exit %d; its message is above)",
                  WEXITSTATUS(wstatus));
}

mc_status mc_test_with_file_size_limit(size_t bytes, mc_limited_fn fn, void *ctx, char *message,
                                       size_t message_len) {
    int pipe_fds[2];
    ck_assert_int_eq(pipe(pipe_fds), 0);
    fflush(NULL);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        close(pipe_fds[0]);
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit r;
        if (getrlimit(RLIMIT_FSIZE, &r) != 0) _exit(3);
        r.rlim_cur = (rlim_t)bytes;
        if (setrlimit(RLIMIT_FSIZE, &r) != 0) _exit(3);
        mc_clear_error();
        mc_status status = fn(ctx);
        const char *text = mc_last_error();
        if (write(pipe_fds[1], text, strlen(text)) < 0) status = MC_ERR_IO;
        _exit((int)status);
    }
    close(pipe_fds[1]);
    size_t got = 0;
    for (ssize_t n; got + 1 < message_len && (n = read(pipe_fds[0], message + got, message_len - 1 - got)) > 0;)
        got += (size_t)n;
    message[got] = '\0';
    close(pipe_fds[0]);
    int wait_status;
    ck_assert_int_eq(waitpid(child, &wait_status, 0), child);
    ck_assert_msg(WIFEXITED(wait_status), "the writer under a file size limit died (signal %d)",
                  WIFSIGNALED(wait_status) ? WTERMSIG(wait_status) : 0);
    return (mc_status)WEXITSTATUS(wait_status);
}
