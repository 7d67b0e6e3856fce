/* bench-tokenizer.c: what the CLIP tokenizer costs the explorer: opening
 * resources/clip-tokenizer (vocab.json and merges.txt, once per model) and
 * encoding a long prompt (each keystroke in the prompt box) with ftfy's
 * clean-up (the default) and with the basic one. Medians over many runs.
 *
 *   build/tests/bench/bench-tokenizer [--runs N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"

#include "ds-tokenizer.h"

#define VOCAB DS_RESOURCES_DIR "/clip-tokenizer/vocab.json"
#define MERGES DS_RESOURCES_DIR "/clip-tokenizer/merges.txt"

static const char *const PROMPT
    = "a highly detailed oil painting of an old lighthouse standing on a rocky cliff above a "
      "stormy sea at dusk, with dramatic clouds, crashing waves, seagulls circling the tower, "
      "trending on artstation, 8k, sharp focus";

static void
report (const char *name, double *t, int runs, double scale, const char *unit)
{
  bench_sort (t, runs);
  printf ("%-44s median %9.2f %s   min %9.2f %s   runs %d\n", name, t[runs / 2] * scale, unit,
          t[0] * scale, unit, runs);
}

int
main (int argc, char **argv)
{
  int runs = 2000;
  for (int i = 1; i < argc; i++)
    if (strcmp (argv[i], "--runs") == 0 && i + 1 < argc && atoi (argv[i + 1]) > 0)
      runs = atoi (argv[++i]);
    else
      {
        fprintf (stderr, "usage: bench-tokenizer [--runs N]\n");
        return 2;
      }
  int open_runs = runs / 100 > 5 ? runs / 100 : 5;
  double *t = malloc ((size_t) (runs > open_runs ? runs : open_runs) * sizeof *t);
  DsTokenizer *tok = NULL;
  DsError err = { 0 };
  for (int r = 0; r < open_runs; r++)
    {
      ds_tokenizer_free (tok);
      double t0 = bench_now_ms ();
      if (ds_tokenizer_open (VOCAB, MERGES, "!", &tok, &err) != DS_OK)
        {
          fprintf (stderr, "bench-tokenizer: %s\n", err.message);
          return 1;
        }
      t[r] = bench_now_ms () - t0;
    }
  report ("open (vocab.json + merges.txt)", t, open_runs, 1, "ms");
  static const struct
  {
    DsTextClean clean;
    const char *name;
  } cleans[] = { { DS_TEXT_CLEAN_FTFY, "encode 36 words, ftfy clean-up (default)" },
                 { DS_TEXT_CLEAN_BASIC, "encode 36 words, basic clean-up" } };
  for (size_t c = 0; c < sizeof cleans / sizeof *cleans; c++)
    {
      ds_tokenizer_set_clean (tok, cleans[c].clean);
      DsTokens out;
      for (int r = 0; r < runs; r++)
        {
          double t0 = bench_now_ms ();
          if (ds_tokenizer_encode (tok, PROMPT, &out, &err) != DS_OK)
            {
              fprintf (stderr, "bench-tokenizer: %s\n", err.message);
              return 1;
            }
          t[r] = bench_now_ms () - t0;
        }
      report (cleans[c].name, t, runs, 1e3, "us");
    }
  ds_tokenizer_free (tok);
  free (t);
  return 0;
}
