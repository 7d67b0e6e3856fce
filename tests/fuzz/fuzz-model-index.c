/* fuzz-model-index.c: opening a diffusers folder (ds_model_dir_open) whose
 * model_index.json and tokenizer/special_tokens_map.json and
 * tokenizer/tokenizer_config.json (the pad token) come from the input, split
 * at NUL bytes: MODEL_INDEX [\0 SPECIAL_TOKENS_MAP [\0 TOKENIZER_CONFIG]]; a
 * part the input does not have is a file the folder does not have. The
 * other parts (configs, weights, vocab.json, merges.txt) are the sd21-base
 * fixture's, linked into the scratch folder once. */
#include "fuzz-common.h"

#include "ds-model-dir.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static char root[600];

static void
link_part (const char *fixture, const char *name)
{
  char from[1200], to[1200];
  snprintf (from, sizeof from, "%s/model-dir/sd21-base/%s", DS_TEST_DATA_DIR, fixture);
  snprintf (to, sizeof to, "%s/%s", root, name);
  if (symlink (from, to) != 0)
    fuzz_die ("cannot link", to);
}

static void
setup (void)
{
  fuzz_path (root, sizeof root, "sd");
  char tokdir[700];
  snprintf (tokdir, sizeof tokdir, "%s/tokenizer", root);
  if (mkdir (root, 0700) != 0 || mkdir (tokdir, 0700) != 0)
    fuzz_die ("cannot make", tokdir);
  link_part ("unet", "unet");
  link_part ("vae", "vae");
  link_part ("text_encoder", "text_encoder");
  link_part ("scheduler", "scheduler");
  link_part ("tokenizer/vocab.json", "tokenizer/vocab.json");
  link_part ("tokenizer/merges.txt", "tokenizer/merges.txt");
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const char *const names[3] = { "model_index.json", "tokenizer/special_tokens_map.json",
                                        "tokenizer/tokenizer_config.json" };
  if (!root[0])
    setup ();
  char *parts[3];
  size_t lens[3];
  int n = fuzz_split (data, size, 3, parts, lens);
  for (int k = 0; k < 3; k++)
    {
      char path[800];
      snprintf (path, sizeof path, "%s/%s", root, names[k]);
      if (k < n)
        fuzz_write (path, parts[k], lens[k]);
      else if (unlink (path) != 0 && errno != ENOENT)
        fuzz_die ("cannot remove", path);
    }
  fuzz_free_parts (parts, 3);
  DsModelDir *d = malloc (sizeof *d);
  if (!d)
    abort ();
  DsError err = { 0 };
  if (ds_model_dir_open (root, d, &err) == DS_OK && ds_model_dir_native_size (d) <= 0)
    abort ();
  free (d);
  return 0;
}
