/* placeholder: written next */
#include "cli.h"
int cli_cmd_score (const CliOptions *o) { (void) o; fprintf (stderr, "diffscope-cli: score is not available yet\n"); return 1; }
