/* ds-test-cli.h: running diffscope-cli from a C test.
 *
 * ds_test_cli_run runs `cli` with `args` (shell words) through the shell, with
 * DIFFSCOPE_DATA_DIR pointing at the repository's resources and no standard
 * input, puts its stdout and stderr together into output (through dir/log),
 * and returns the exit code (-1 when it did not exit normally).
 */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

static inline int
ds_test_cli_run (const char *cli, const char *dir, const char *args, char *output, size_t size)
{
  char cmd[8192], log[512];
  snprintf (log, sizeof log, "%s/log", dir);
  snprintf (cmd, sizeof cmd, "DIFFSCOPE_DATA_DIR=%s '%s' %s >'%s' 2>&1 </dev/null",
            DS_RESOURCES_DIR, cli, args, log);
  int status = system (cmd);
  FILE *f = fopen (log, "r");
  size_t n = f ? fread (output, 1, size - 1, f) : 0;
  output[n] = '\0';
  if (f)
    fclose (f);
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}
