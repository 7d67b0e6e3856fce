/* fuzz-pairs-json.c: diffscope-cli score --pairs FILE (app/cli-score.c,
 * cli_score_check_pairs): a non-empty JSON list of {"name", "captions": [2],
 * "images": [2]} items, image paths resolved against the file's folder. The
 * input is the file. */
#include "fuzz-common.h"

#include "cli.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char path[600];
  fuzz_write (fuzz_path (path, sizeof path, "pairs.json"), data, size);
  DsError err = { 0 };
  int n = -1;
  DsStatus st = cli_score_check_pairs (path, &n, &err);
  if (st == DS_OK ? n < 1 : !err.message[0])
    abort (); /* items on success, a message on failure */
  return 0;
}
