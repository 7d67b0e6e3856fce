/* fuzz-batch-json.c: diffscope-cli batch's JOBS.json (app/cli-batch.c,
 * cli_batch_check_jobs): the JSON array of job objects, every field's type
 * and range, file-safe names, duplicate names, image paths resolved against
 * the file's folder. The input is the file. */
#include "fuzz-common.h"

#include "cli.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char path[600];
  fuzz_write (fuzz_path (path, sizeof path, "jobs.json"), data, size);
  CliOptions o = { .uncond = "", .t = 500, .seed = 0 };
  DsError err = { 0 };
  int n = -1;
  DsStatus st = cli_batch_check_jobs (path, &o, &n, &err);
  if (st == DS_OK ? n < 0 : !err.message[0])
    abort (); /* a count on success, a message on failure */
  return 0;
}
