/* bench-tokenizer.c: what the CLIP tokenizer costs the explorer: opening
 * resources/clip-tokenizer (vocab.json and merges.txt, once per model) and
 * encoding a long prompt (each keystroke in the prompt box) with ftfy's
 * clean-up (the default) and with the basic one. Medians over many runs.
 * Then text without spaces (a pasted blob, CJK prose), where BPE's cost
 * grows faster than the text, and a wall of combining marks: medians of 5.
 *
 *   build/tests/bench/bench-tokenizer [--runs N]
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"

#include "ds-tokenizer.h"
#include "ds-unicode.h"

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

/* t[0..runs): the milliseconds of each encode of text; false (said) on an error. */
static bool
time_encode (const DsTokenizer *tok, const char *text, int runs, double *t)
{
  DsTokens out;
  DsError err = { 0 };
  for (int r = 0; r < runs; r++)
    {
      double t0 = bench_now_ms ();
      if (ds_tokenizer_encode (tok, text, &out, &err) != DS_OK)
        {
          fprintf (stderr, "bench-tokenizer: %s\n", err.message);
          return false;
        }
      t[r] = bench_now_ms () - t0;
    }
  return true;
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
      if (!time_encode (tok, PROMPT, runs, t))
        return 1;
      report (cleans[c].name, t, runs, 1e3, "us");
    }
  /* Text without spaces is one BPE piece, and each merge round scans the
   * whole piece (as transformers' CLIPTokenizer does): the cost grows
   * faster than the length. Seeded random letters, and random CJK
   * characters (3 bytes each), in the default clean-up. */
  ds_tokenizer_set_clean (tok, DS_TEXT_CLEAN_FTFY);
  static const struct
  {
    int chars;
    bool cjk;
  } longs[] = { { 1000, false }, { 4000, false }, { 16000, false }, { 1000, true },
                { 4000, true } };
  for (size_t k = 0; k < sizeof longs / sizeof *longs; k++)
    {
      char *text = malloc ((size_t) longs[k].chars * 3 + 1), *w = text;
      uint32_t x = 12345;
      for (int i = 0; i < longs[k].chars; i++)
        {
          x = x * 1664525u + 1013904223u;
          uint32_t r = x >> 8;
          if (!longs[k].cjk)
            *w++ = (char) ('a' + r % 26);
          else
            w += ds_utf8_encode (0x4E00 + r % 0x5200, w);
        }
      *w = '\0';
      if (!time_encode (tok, text, 5, t))
        return 1;
      char name[64];
      snprintf (name, sizeof name, "encode %d %s, no spaces", longs[k].chars,
                longs[k].cjk ? "CJK characters" : "random letters");
      report (name, t, 5, 1, "ms");
      free (text);
    }
  /* A letter under 20,000 and 80,000 combining marks of two classes,
   * alternating: NFC's canonical reordering sorts the run. */
  static const int mark_runs[] = { 20000, 80000 };
  for (size_t k = 0; k < sizeof mark_runs / sizeof *mark_runs; k++)
    {
      char *text = malloc ((size_t) mark_runs[k] * 2 + 2), *w = text;
      *w++ = 'a';
      for (int i = 0; i < mark_runs[k]; i++)
        w += ds_utf8_encode (i % 2 ? 0x0316 : 0x0301, w);
      *w = '\0';
      if (!time_encode (tok, text, 5, t))
        return 1;
      char name[64];
      snprintf (name, sizeof name, "encode a letter + %d combining marks", mark_runs[k]);
      report (name, t, 5, 1, "ms");
      free (text);
    }
  ds_tokenizer_free (tok);
  free (t);
  return 0;
}
