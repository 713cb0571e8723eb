/* The mmchain program: one file per subcommand (cmd_<name>.c), each with
 * an entry point of this shape, listed in main.c's command table. */
#ifndef MMCHAIN_CLI_H
#define MMCHAIN_CLI_H

#include "mmchain/mmchain.h"
#include "mmchain_app/demo.h"
#include "mmchain_app/report.h"
#include "mmchain_app/run.h"

/* argv[0] is the subcommand's name. Returns the process exit code. */
typedef int (*cli_command_fn)(int argc, char **argv);

/* Print "mmchain <command>: error: <message>" to stderr and return 1. */
int cli_fail(const char *command, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* cli_fail with mmchain's last error message. */
int cli_fail_status(const char *command, mc_status status);

#endif
