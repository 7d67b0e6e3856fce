/* placeholder: written next */
#include "cli.h"
int cli_cmd_batch (const CliOptions *o) { (void) o; fprintf (stderr, "diffscope-cli: batch is not available yet\n"); return 1; }
