/* test-tokenizer.c: the CLIP tokenizer against transformers' CLIPTokenizer.
 *
 * tests/data/tokenizer-cases.json (tests/reference/gen_tokenizer_cases.py) holds
 * the slow CLIPTokenizer's ids for 300+ prompts with SD 2.x's pad "!" and SD
 * 1.x's "<|endoftext|>"; every id, count, truncation flag and word must match.
 * Beside that: the spec's test vectors, hand-worked BPE on a tiny vocabulary,
 * Unicode facts, every error path and encoding from several threads. What
 * opening and encoding cost is measured by tests/bench/bench-tokenizer.
 */
#include "ds-test.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "ds-tokenizer.h"
#include "ds-unicode.h"

#define VOCAB DS_RESOURCES_DIR "/clip-tokenizer/vocab.json"
#define MERGES DS_RESOURCES_DIR "/clip-tokenizer/merges.txt"
#define CASES DS_TEST_DATA_DIR "/tokenizer-cases.json"
#define FTFY_CASES DS_TEST_DATA_DIR "/tokenizer-ftfy-cases.json"

/* The reference cases of tokenizer-cases.json are transformers without ftfy:
 * these two use DS_TEXT_CLEAN_BASIC. */
static DsTokenizer *tok_sd2; /* pad "!" */
static DsTokenizer *tok_sd1; /* pad "<|endoftext|>" */
static json_t *cases;

/* ---- the reference cases ------------------------------------------------ */

/* Compares one encoding with one case; returns the number of differences and
 * reports them when `report`. */
static int
compare_case (const json_t *c, const DsTokens *t, bool report)
{
  const char *prompt = json_string_value (json_object_get (c, "prompt"));
  const json_t *ids = json_object_get (c, "ids");
  int bad = 0;
  for (int i = 0; i < DS_CLIP_CONTEXT; i++)
    {
      int64_t want = json_integer_value (json_array_get (ids, (size_t) i));
      if (t->ids[i] != want)
        {
          if (report && bad < 3)
            fprintf (stderr, "  \"%.60s\": ids[%d] = %d, expected %ld\n", prompt, i, t->ids[i],
                     (long) want);
          bad++;
        }
    }
  int64_t n_tokens = json_integer_value (json_object_get (c, "n_tokens"));
  int64_t n_pieces = json_integer_value (json_object_get (c, "n_pieces"));
  bool truncated = json_is_true (json_object_get (c, "truncated"));
  if (t->n_tokens != n_tokens || t->n_pieces_total != n_pieces || t->truncated != truncated)
    {
      if (report)
        fprintf (stderr, "  \"%.60s\": n_tokens %d pieces %d truncated %d, expected %ld %ld %d\n",
                 prompt, t->n_tokens, t->n_pieces_total, t->truncated, (long) n_tokens,
                 (long) n_pieces, truncated);
      bad++;
    }
  const json_t *words = json_object_get (c, "words");
  if ((size_t) t->n_words != json_array_size (words))
    {
      if (report)
        fprintf (stderr, "  \"%.60s\": %d words, expected %zu\n", prompt, t->n_words,
                 json_array_size (words));
      return bad + 1;
    }
  for (int w = 0; w < t->n_words; w++)
    {
      const json_t *ww = json_array_get (words, (size_t) w);
      const char *text = json_string_value (json_array_get (ww, 0));
      int64_t first = json_integer_value (json_array_get (ww, 1));
      int64_t count = json_integer_value (json_array_get (ww, 2));
      const DsTokenWord *got = &t->words[w];
      if (strcmp (got->text, text) != 0 || got->first != first || got->count != count)
        {
          if (report)
            fprintf (stderr, "  \"%.60s\": word %d = (\"%s\", %d, %d), expected (\"%s\", %ld, %ld)\n",
                     prompt, w, got->text, got->first, got->count, text, (long) first,
                     (long) count);
          bad++;
        }
    }
  return bad;
}

static const DsTokenizer *
case_tokenizer (const json_t *c)
{
  return strcmp (json_string_value (json_object_get (c, "pad")), "!") == 0 ? tok_sd2 : tok_sd1;
}

static void
test_reference_cases (void)
{
  size_t n = json_array_size (cases);
  DS_CHECK (n >= 200, "only %zu reference cases", n);
  int failed = 0, n_sd1 = 0, n_trunc = 0, n_multiword_piece = 0;
  for (size_t i = 0; i < n; i++)
    {
      const json_t *c = json_array_get (cases, i);
      const char *prompt = json_string_value (json_object_get (c, "prompt"));
      DsTokens t;
      DsError err = { 0 };
      DsStatus st = ds_tokenizer_encode (case_tokenizer (c), prompt, &t, &err);
      DS_CHECK_OK (st, &err);
      if (st == DS_OK && compare_case (c, &t, true))
        failed++;
      n_sd1 += case_tokenizer (c) == tok_sd1;
      n_trunc += t.truncated;
      for (int w = 0; w < t.n_words; w++)
        n_multiword_piece += t.words[w].count > 1;
    }
  DS_CHECK (failed == 0, "%d of %zu cases differ from transformers", failed, n);
  /* the data exercises what it should */
  DS_CHECK (n_sd1 >= 5 && n_trunc >= 5 && n_multiword_piece >= 20, "sd1 %d trunc %d multi %d",
            n_sd1, n_trunc, n_multiword_piece);
}

/* tests/data/tokenizer-ftfy-cases.json (gen_tokenizer_ftfy_cases.py): the slow
 * CLIPTokenizer with ftfy installed on typed and pasted text (curly quotes,
 * full-width forms, ligatures, HTML entities, CJK runs, line breaks, escapes,
 * controls); every id and the token count must match. The default clean-up. */
static void
test_ftfy_cases (void)
{
  DsTokenizer *tok = NULL, *basic = NULL;
  DsError err = { 0 };
  DS_CHECK_OK (ds_tokenizer_open (VOCAB, MERGES, "!", &tok, &err), &err);
  DS_CHECK_OK (ds_tokenizer_open (VOCAB, MERGES, "!", &basic, &err), &err);
  json_error_t jerr;
  json_t *fc = json_load_file (FTFY_CASES, 0, &jerr);
  DS_CHECK (fc != NULL && json_is_array (fc), "%s: %s", FTFY_CASES, jerr.text);
  if (!tok || !basic || !fc)
    goto out;
  ds_tokenizer_set_clean (basic, DS_TEXT_CLEAN_BASIC);
  size_t n = json_array_size (fc);
  DS_CHECK (n >= 200, "only %zu ftfy cases", n);
  int failed = 0, basic_differs = 0;
  for (size_t i = 0; i < n; i++)
    {
      const json_t *c = json_array_get (fc, i);
      const char *prompt = json_string_value (json_object_get (c, "prompt"));
      const json_t *ids = json_object_get (c, "ids");
      DsTokens t, tb;
      DS_CHECK_OK (ds_tokenizer_encode (tok, prompt, &t, &err), &err);
      DS_CHECK_OK (ds_tokenizer_encode (basic, prompt, &tb, &err), &err);
      int bad = t.n_tokens != json_integer_value (json_object_get (c, "n_tokens"));
      for (int k = 0; k < DS_CLIP_CONTEXT; k++)
        bad += t.ids[k] != json_integer_value (json_array_get (ids, (size_t) k));
      if (bad && failed++ < 5)
        {
          fprintf (stderr, "ftfy case %zu differs: ", i);
          for (int k = 0; k < t.n_tokens; k++)
            fprintf (stderr, "%d%s", t.ids[k], k + 1 < t.n_tokens ? "," : "\n");
        }
      basic_differs += memcmp (t.ids, tb.ids, sizeof t.ids) != 0;
    }
  DS_CHECK (failed == 0, "%d of %zu ftfy cases differ from transformers with ftfy", failed, n);
  /* the corpus is one where the two clean-ups disagree, so it tests the choice */
  DS_CHECK (basic_differs >= 100, "only %d cases differ without ftfy", basic_differs);
out:
  json_decref (fc);
  ds_tokenizer_free (tok);
  ds_tokenizer_free (basic);
}

/* ---- spec vectors and hand-worked cases --------------------------------- */

static void
test_spec_vectors (void)
{
  DsTokens t;
  DsError err = { 0 };
  /* docs/models.md §5.4 */
  DS_CHECK_OK (ds_tokenizer_encode (tok_sd2, "a photo of a cat", &t, &err), &err);
  const int32_t cat[] = { 49406, 320, 1125, 539, 320, 2368, 49407 };
  for (int i = 0; i < DS_CLIP_CONTEXT; i++)
    DS_CHECK (t.ids[i] == (i < 7 ? cat[i] : 0), "ids[%d] = %d", i, t.ids[i]);
  DS_CHECK (t.n_tokens == 7 && !t.truncated && t.n_pieces_total == 5, "counts");
  DS_CHECK (t.n_words == 5, "%d words", t.n_words);
  const char *words[] = { "a", "photo", "of", "a", "cat" };
  for (int w = 0; w < 5 && w < t.n_words; w++)
    DS_CHECK (strcmp (t.words[w].text, words[w]) == 0 && t.words[w].first == 1 + w
                && t.words[w].count == 1,
              "word %d = (%s, %d, %d)", w, t.words[w].text, t.words[w].first, t.words[w].count);

  /* "Hello, world!" with a plain CLIP vocab (SD 1.x pads with <|endoftext|>) */
  DS_CHECK_OK (ds_tokenizer_encode (tok_sd1, "Hello, world!", &t, &err), &err);
  const int32_t hello[] = { 49406, 3306, 267, 1002, 256, 49407 };
  for (int i = 0; i < DS_CLIP_CONTEXT; i++)
    DS_CHECK (t.ids[i] == (i < 6 ? hello[i] : 49407), "sd1 ids[%d] = %d", i, t.ids[i]);
  /* SD 2.x: "!" is an added token, so it becomes the pad id 0, not "!</w>" */
  DS_CHECK_OK (ds_tokenizer_encode (tok_sd2, "Hello, world!", &t, &err), &err);
  DS_CHECK (t.ids[4] == 0 && t.ids[5] == 49407 && t.n_tokens == 6, "sd2 '!' -> %d", t.ids[4]);
  /* "Hello," is one word of two pieces, "world!" one of two */
  DS_CHECK (t.n_words == 2, "%d words", t.n_words);
  if (t.n_words == 2)
    {
      DS_CHECK (strcmp (t.words[0].text, "hello,") == 0 && t.words[0].first == 1
                  && t.words[0].count == 2,
                "word 0 (%s, %d, %d)", t.words[0].text, t.words[0].first, t.words[0].count);
      DS_CHECK (strcmp (t.words[1].text, "world!") == 0 && t.words[1].first == 3
                  && t.words[1].count == 2,
                "word 1 (%s, %d, %d)", t.words[1].text, t.words[1].first, t.words[1].count);
    }

  /* "cat," is one word: cat</w> (2368) and ,</w> (267) */
  DS_CHECK_OK (ds_tokenizer_encode (tok_sd2, "a cat, a cat", &t, &err), &err);
  DS_CHECK (t.ids[2] == 2368 && t.ids[3] == 267 && t.n_words == 4, "cat,");
  if (t.n_words == 4)
    DS_CHECK (strcmp (t.words[1].text, "cat,") == 0 && t.words[1].first == 2
                && t.words[1].count == 2 && t.words[2].first == 4,
              "word 1 (%s, %d, %d)", t.words[1].text, t.words[1].first, t.words[1].count);

  /* 76 one-piece words: 75 kept, the last dropped, EOT at 76 */
  char many[256] = "";
  for (int i = 0; i < 76; i++)
    strcat (many, "a ");
  DS_CHECK_OK (ds_tokenizer_encode (tok_sd2, many, &t, &err), &err);
  DS_CHECK (t.truncated && t.n_tokens == 77 && t.n_pieces_total == 76 && t.ids[76] == 49407
              && t.ids[75] == 320 && t.n_words == 75 && t.words[74].first == 75,
            "truncation: %d %d %d %d", t.truncated, t.n_tokens, t.n_pieces_total, t.n_words);

  /* empty and blank prompts: SOT, EOT, padding, no words */
  const char *blank[] = { "", "   ", "\t\n", "\x01\x02" };
  for (int k = 0; k < 4; k++)
    {
      DS_CHECK_OK (ds_tokenizer_encode (tok_sd2, blank[k], &t, &err), &err);
      DS_CHECK (t.ids[0] == 49406 && t.ids[1] == 49407 && t.ids[2] == 0 && t.n_tokens == 2
                  && t.n_words == 0 && !t.truncated,
                "blank %d", k);
    }
}

static void
test_vocab_lookup (void)
{
  DS_CHECK (ds_tokenizer_pad_id (tok_sd2) == 0, "sd2 pad %d", ds_tokenizer_pad_id (tok_sd2));
  DS_CHECK (ds_tokenizer_pad_id (tok_sd1) == 49407, "sd1 pad %d", ds_tokenizer_pad_id (tok_sd1));
  struct { int32_t id; const char *text; } known[] = {
    { 0, "!" }, { 256, "!</w>" }, { 320, "a</w>" }, { 2368, "cat</w>" },
    { 49406, "<|startoftext|>" }, { 49407, "<|endoftext|>" },
  };
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    {
      const char *s = ds_tokenizer_id_to_token (tok_sd2, known[i].id);
      DS_CHECK (s && strcmp (s, known[i].text) == 0, "id %d -> %s", known[i].id, s ? s : "NULL");
    }
  DS_CHECK (ds_tokenizer_id_to_token (tok_sd2, -1) == NULL, "-1");
  DS_CHECK (ds_tokenizer_id_to_token (tok_sd2, 49408) == NULL, "49408");
}

/* ---- a tiny vocabulary, BPE worked by hand ------------------------------ */

static char tmpdir[64];
static char tmp_paths[32][128];
static int n_tmp_paths;

static char *
write_tmp (const char *name, const char *content)
{
  if (n_tmp_paths == 32)
    abort (); /* the test writes fewer files than this */
  char *p = tmp_paths[n_tmp_paths++];
  snprintf (p, 128, "%s/%s", tmpdir, name);
  FILE *f = fopen (p, "wb");
  if (f)
    {
      fputs (content, f);
      fclose (f);
    }
  return p;
}

static const char *tiny_vocab = "{\"!\": 0, \"a\": 1, \"a</w>\": 2, \"aa\": 3, \"aaa</w>\": 4,"
                                " \"b</w>\": 5, \"<|startoftext|>\": 6, \"<|endoftext|>\": 7}";

static void
test_tiny_bpe (void)
{
  /* ranks: 0 (a a), 1 (aa a</w>), 2 (a a</w>) -- "aa</w>" is not in the vocab,
   * 3 repeats (a a): Python's dict keeps the last rank, so (a a) ranks after
   * (aa a</w>) and (a a</w>). */
  const char *vocab = write_tmp ("vocab.json", tiny_vocab);
  const char *merges = write_tmp ("merges.txt",
                                  "#version: 0.2\na a\naa a</w>\r\na  a</w>\na a\n\n");
  DsTokenizer *tiny = NULL;
  DsError err = { 0 };
  DS_CHECK_OK (ds_tokenizer_open (vocab, merges, "!", &tiny, &err), &err);
  if (!tiny)
    return;
  DsTokens t;
  /* "aaa": a a a</w>; best pair (a a</w>) rank 2 < (a a) rank 3 -> a aa</w>;
   * (a aa</w>) has no rank -> "a" 1, "aa</w>" unknown -> <|endoftext|> 7 */
  DS_CHECK_OK (ds_tokenizer_encode (tiny, "aaa", &t, &err), &err);
  DS_CHECK (t.n_tokens == 4 && t.ids[0] == 6 && t.ids[1] == 1 && t.ids[2] == 7 && t.ids[3] == 7
              && t.ids[4] == 0,
            "aaa -> %d %d %d %d", t.ids[1], t.ids[2], t.ids[3], t.n_tokens);
  /* "aaaa": a a a a</w> -> (a a</w>) first: a a aa</w> -> (a a): aa aa</w> -> done */
  DS_CHECK_OK (ds_tokenizer_encode (tiny, "aaaa", &t, &err), &err);
  DS_CHECK (t.n_tokens == 4 && t.ids[1] == 3 && t.ids[2] == 7, "aaaa -> %d %d (%d)", t.ids[1],
            t.ids[2], t.n_tokens);
  /* "b!a": b</w>, the added token "!" (0), a</w> */
  DS_CHECK_OK (ds_tokenizer_encode (tiny, "B!A", &t, &err), &err);
  DS_CHECK (t.n_tokens == 5 && t.ids[1] == 5 && t.ids[2] == 0 && t.ids[3] == 2 && t.n_words == 1
              && strcmp (t.words[0].text, "b!a") == 0 && t.words[0].count == 3,
            "B!A -> %d %d %d", t.ids[1], t.ids[2], t.ids[3]);
  ds_tokenizer_free (tiny);

  /* a merges file without duplicates: (a a) rank 0 first, then (aa a</w>) */
  merges = write_tmp ("merges2.txt", "#version: 0.2\na a\naa a</w>\n");
  DS_CHECK_OK (ds_tokenizer_open (vocab, merges, "!", &tiny, &err), &err);
  if (!tiny)
    return;
  DS_CHECK_OK (ds_tokenizer_encode (tiny, "aaa", &t, &err), &err);
  DS_CHECK (t.n_tokens == 3 && t.ids[1] == 4, "aaa -> %d (%d)", t.ids[1], t.n_tokens);
  /* "aaaa": a a a a</w> -> (a a) merged left to right: aa, then the scan
   * resumes at index 2 where (a a</w>) is no match -> aa a a</w>; neither
   * (aa a) nor (a a</w>) is ranked -> 3 1 2 */
  DS_CHECK_OK (ds_tokenizer_encode (tiny, "aaaa", &t, &err), &err);
  DS_CHECK (t.n_tokens == 5 && t.ids[1] == 3 && t.ids[2] == 1 && t.ids[3] == 2,
            "aaaa -> %d %d %d (%d)", t.ids[1], t.ids[2], t.ids[3], t.n_tokens);
  ds_tokenizer_free (tiny);
}

/* ---- Unicode facts ------------------------------------------------------ */

static bool
seq_eq (const DsUcBuf *b, const uint32_t *want, size_t n)
{
  return b->len == n && memcmp (b->cp, want, n * sizeof *want) == 0;
}

static void
test_unicode (void)
{
  DsUcBuf b = { 0 };
  /* U+0130 lower-cases to two code points */
  uint32_t i_dot[] = { 0x130 }, i_dot_lower[] = { 'i', 0x307 };
  ds_uc_lower (i_dot, 1, &b);
  DS_CHECK (seq_eq (&b, i_dot_lower, 2), "lower U+0130");
  /* Final sigma: ΟΔΟΣ -> οδος; Σ alone -> σ; ΣΑ -> σα */
  uint32_t odos[] = { 0x39F, 0x394, 0x39F, 0x3A3 }, odos_l[] = { 0x3BF, 0x3B4, 0x3BF, 0x3C2 };
  b.len = 0;
  ds_uc_lower (odos, 4, &b);
  DS_CHECK (seq_eq (&b, odos_l, 4), "final sigma");
  uint32_t sa[] = { 0x3A3, 0x391 }, sa_l[] = { 0x3C3, 0x3B1 };
  b.len = 0;
  ds_uc_lower (sa, 2, &b);
  DS_CHECK (seq_eq (&b, sa_l, 2), "initial sigma");
  /* NFC: e + acute -> é; a + dot below + circumflex in either order -> ậ;
   * Angstrom sign -> Å; Hangul jamo -> 각 */
  uint32_t e_acute[] = { 'e', 0x301 }, e_acute_c[] = { 0xE9 };
  b.len = 0;
  ds_uc_nfc (e_acute, 2, &b);
  DS_CHECK (seq_eq (&b, e_acute_c, 1), "nfc e+acute");
  uint32_t a_marks[] = { 'a', 0x302, 0x323 }, a_marks_c[] = { 0x1EAD };
  b.len = 0;
  ds_uc_nfc (a_marks, 3, &b);
  DS_CHECK (seq_eq (&b, a_marks_c, 1), "nfc reorder + compose");
  uint32_t angstrom[] = { 0x212B }, angstrom_c[] = { 0xC5 };
  b.len = 0;
  ds_uc_nfc (angstrom, 1, &b);
  DS_CHECK (seq_eq (&b, angstrom_c, 1), "nfc singleton");
  uint32_t jamo[] = { 0x1100, 0x1161, 0x11A8 }, jamo_c[] = { 0xAC01 };
  b.len = 0;
  ds_uc_nfc (jamo, 3, &b);
  DS_CHECK (seq_eq (&b, jamo_c, 1), "nfc hangul");
  ds_uc_buf_free (&b);

  DS_CHECK (ds_uc_pre_class ('a') == DS_UC_PRE_LETTER && ds_uc_pre_class (0x732B) == DS_UC_PRE_LETTER,
            "letters");
  DS_CHECK (ds_uc_pre_class ('7') == DS_UC_PRE_NUMBER && ds_uc_pre_class (0xBD) == DS_UC_PRE_NUMBER,
            "numbers");
  DS_CHECK (ds_uc_pre_class ('!') == DS_UC_PRE_OTHER && ds_uc_pre_class (0x301) == DS_UC_PRE_OTHER,
            "other");
  DS_CHECK (ds_uc_pre_class (' ') == DS_UC_PRE_SKIP, "space");
  DS_CHECK (ds_uc_is_removed (0) && ds_uc_is_removed (0x200B) && ds_uc_is_removed (0xFFFD)
              && !ds_uc_is_removed ('\t') && !ds_uc_is_removed (0xE9),
            "removed");
  DS_CHECK (ds_uc_is_space ('\n') && ds_uc_is_space (0xA0) && ds_uc_is_space (0x3000)
              && ds_uc_is_space (0x2028) && !ds_uc_is_space (0x200B),
            "space");

  DS_CHECK (ds_utf8_find_invalid ("caf\xc3\xa9", 5) == -1, "valid");
  DS_CHECK (ds_utf8_find_invalid ("ab\xff", 3) == 2, "0xff");
  DS_CHECK (ds_utf8_find_invalid ("\xc0\xaf", 2) == 0, "overlong");
  DS_CHECK (ds_utf8_find_invalid ("x\xed\xa0\x80", 4) == 1, "surrogate");
  DS_CHECK (ds_utf8_find_invalid ("xy\xf4\x90\x80\x80", 6) == 2, "above U+10FFFF");
  DS_CHECK (ds_utf8_find_invalid ("abc\xe2\x82", 5) == 3, "cut sequence");
}

/* Canonical reordering of long runs of combining marks (issue #14): it was
 * an insertion sort, whose cost grows with the square of the run (80,000
 * marks on one letter took 14 to 28 s); long runs are now counted by class. NFC of
 * marks in random order must equal NFC of the same marks stably sorted by
 * class beforehand, for runs on both sides of the switch; then a run of a
 * million marks, which the old code would take over an hour to sort. */
static void
test_long_mark_runs (void)
{
  /* marks that neither decompose nor compose with 'q', of eight classes,
   * two each of 230 and 220 (which a sort that is not stable would swap) */
  static const uint32_t marks[] = { 0x0300, 0x0301, 0x0316, 0x0317, 0x0334,
                                    0x0345, 0x05B0, 0x0E38, 0x0F71, 0x302A };
  static const size_t lens[] = { 1, 2, 7, 31, 32, 33, 34, 100, 1000, 5000 };
  uint64_t x = 7;
  DsUcBuf got = { 0 }, want = { 0 };
  for (size_t l = 0; l < sizeof lens / sizeof *lens; l++)
    for (int rep = 0; rep < 4; rep++)
      {
        size_t n = 2 + lens[l];
        uint32_t *in = malloc (n * sizeof *in), *sorted = malloc (n * sizeof *in);
        DS_CHECK (in && sorted, "malloc");
        if (!in || !sorted)
          return;
        in[0] = 'q';
        in[n - 1] = 'q';
        for (size_t i = 1; i + 1 < n; i++)
          {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            in[i] = marks[(x >> 33) % (sizeof marks / sizeof *marks)];
          }
        /* the oracle: a stable insertion sort of the marks by class */
        memcpy (sorted, in, n * sizeof *in);
        for (size_t i = 2; i + 1 < n; i++)
          {
            uint32_t c = sorted[i];
            size_t j = i;
            for (; j > 1 && ds_uc_combining_class (sorted[j - 1]) > ds_uc_combining_class (c); j--)
              sorted[j] = sorted[j - 1];
            sorted[j] = c;
          }
        got.len = want.len = 0;
        DS_CHECK (ds_uc_nfc (in, n, &got) && ds_uc_nfc (sorted, n, &want), "nfc");
        DS_CHECK (got.len == n && want.len == n
                    && memcmp (got.cp, sorted, n * sizeof *in) == 0
                    && memcmp (want.cp, sorted, n * sizeof *in) == 0,
                  "a run of %zu marks (repeat %d) is sorted stably by class", lens[l], rep);
        free (in);
        free (sorted);
      }

  /* 'a' + a million marks, classes 230 and 220 alternating: sorted, the
   * 220s come first, and the first 230 (acute) then composes with the 'a' */
  enum { RUN = 1000000 };
  uint32_t *in = malloc ((RUN + 1) * sizeof *in);
  DS_CHECK (in != NULL, "malloc");
  if (in)
    {
      in[0] = 'a';
      for (size_t i = 1; i <= RUN; i++)
        in[i] = i % 2 ? 0x0301 : 0x0316;
      got.len = 0;
      DS_CHECK (ds_uc_nfc (in, RUN + 1, &got), "nfc of a million marks");
      bool ok = got.len == RUN && got.cp[0] == 0xE1;
      for (size_t i = 1; ok && i < got.len; i++)
        ok = got.cp[i] == (i <= RUN / 2 ? 0x0316u : 0x0301u);
      DS_CHECK (ok, "a million marks: %zu code points after NFC, %d expected", got.len, RUN);
      free (in);
    }
  ds_uc_buf_free (&got);
  ds_uc_buf_free (&want);
}

/* ---- errors ------------------------------------------------------------- */

static void
expect_open_error (const char *vocab, const char *merges, const char *pad, DsStatus code,
                   const char *mention1, const char *mention2)
{
  DsTokenizer *t = (DsTokenizer *) 1;
  DsError err = { 0 };
  DsStatus st = ds_tokenizer_open (vocab, merges, pad, &t, &err);
  DS_CHECK_STATUS (st, code, &err);
  DS_CHECK (t == NULL, "no tokenizer on error");
  DS_CHECK_CONTAINS (err.message, mention1);
  if (mention2)
    DS_CHECK_CONTAINS (err.message, mention2);
  if (st == DS_OK)
    ds_tokenizer_free (t);
}

static void
test_errors (void)
{
  const char *vocab = write_tmp ("v.json", tiny_vocab);
  const char *merges = write_tmp ("m.txt", "#version: 0.2\na a\n");
  char missing[128];
  snprintf (missing, sizeof missing, "%s/absent.json", tmpdir);
  expect_open_error (missing, merges, "!", DS_ERR_IO, missing, NULL);
  snprintf (missing, sizeof missing, "%s/absent.txt", tmpdir);
  expect_open_error (vocab, missing, "!", DS_ERR_IO, missing, NULL);
  expect_open_error (tmpdir, merges, "!", DS_ERR_IO, tmpdir, NULL); /* a directory */

  const char *v = write_tmp ("list.json", "[1, 2]");
  expect_open_error (v, merges, "!", DS_ERR_FORMAT, v, "object");
  v = write_tmp ("str.json", "{\"a\": 1,\n \"b\": \"two\"}");
  expect_open_error (v, merges, "!", DS_ERR_FORMAT, v, "\"b\"");
  v = write_tmp ("neg.json", "{\"a\": -1}");
  expect_open_error (v, merges, "!", DS_ERR_FORMAT, v, "\"a\"");
  v = write_tmp ("syntax.json", "{\"a\": 1,\n\n \"b\" 2}");
  expect_open_error (v, merges, "!", DS_ERR_FORMAT, v, "line 3");
  v = write_tmp ("nosot.json", "{\"!\": 0, \"<|endoftext|>\": 1}");
  expect_open_error (v, merges, "!", DS_ERR_FORMAT, v, "<|startoftext|>");

  const char *m = write_tmp ("bad3.txt", "#version: 0.2\na a\nonlyone\n");
  expect_open_error (vocab, m, "!", DS_ERR_FORMAT, m, "line 3");
  m = write_tmp ("bad2.txt", "#version: 0.2\na a a\n");
  expect_open_error (vocab, m, "!", DS_ERR_FORMAT, m, "line 2");
  m = write_tmp ("blank.txt", "#version: 0.2\na a\n\naa a</w>\n");
  expect_open_error (vocab, m, "!", DS_ERR_FORMAT, m, "line 3");
  m = write_tmp ("nohead.txt", "a a\n");
  expect_open_error (vocab, m, "!", DS_ERR_FORMAT, m, "line 1");

  expect_open_error (vocab, merges, "<pad>", DS_ERR_FORMAT, "<pad>", "vocab");
  /* issue #14 (fuzz-clip-tokenizer): an empty pad token that the vocabulary
   * has matched at every position and encoding never ended */
  v = write_tmp ("empty-key.json", "{\"\": 0, \"<|startoftext|>\": 1, \"<|endoftext|>\": 2}");
  expect_open_error (v, merges, "", DS_ERR_INVALID, "pad token: empty", NULL);

  /* issue #14: a NUL byte in merges.txt, named by line; devices and folders
   * said to be what they are */
  char nul_path[160];
  snprintf (nul_path, sizeof nul_path, "%s/nul.txt", tmpdir);
  FILE *f = fopen (nul_path, "wb");
  static const char nul_text[] = "#version: 0.2\na a\na\0b a\n";
  if (f)
    {
      fwrite (nul_text, 1, sizeof nul_text - 1, f);
      fclose (f);
    }
  expect_open_error (vocab, nul_path, "!", DS_ERR_FORMAT, nul_path, "line 3: contains a NUL byte");
  unlink (nul_path);
  expect_open_error ("/dev/zero", merges, "!", DS_ERR_IO, "/dev/zero: is a character device",
                     NULL);
  expect_open_error (vocab, tmpdir, "!", DS_ERR_IO, "is a directory", NULL);

  DsTokens t;
  DsError err = { 0 };
  DsStatus st = ds_tokenizer_encode (tok_sd2, "caf\xc3\xa9 \xe2\x82 cat", &t, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "byte offset 6");
  st = ds_tokenizer_encode (tok_sd2, "\xff", &t, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "byte offset 0");
}

/* ---- threads ------------------------------------------------------------ */

static void *
encode_all (void *arg)
{
  long *bad = arg;
  for (size_t i = 0; i < json_array_size (cases); i++)
    {
      const json_t *c = json_array_get (cases, i);
      DsTokens t;
      if (ds_tokenizer_encode (case_tokenizer (c), json_string_value (json_object_get (c, "prompt")),
                               &t, NULL)
            != DS_OK
          || compare_case (c, &t, false))
        (*bad)++;
    }
  return NULL;
}

static void
test_threads (void)
{
  pthread_t th[4];
  long bad[4] = { 0 };
  for (int i = 0; i < 4; i++)
    pthread_create (&th[i], NULL, encode_all, &bad[i]);
  for (int i = 0; i < 4; i++)
    pthread_join (th[i], NULL);
  DS_CHECK (bad[0] + bad[1] + bad[2] + bad[3] == 0, "concurrent encodes differ");
}

int
main (void)
{
  DsError err = { 0 };
  DsStatus st = ds_tokenizer_open (VOCAB, MERGES, "!", &tok_sd2, &err);
  DS_CHECK_OK (st, &err);
  st = ds_tokenizer_open (VOCAB, MERGES, "<|endoftext|>", &tok_sd1, &err);
  DS_CHECK_OK (st, &err);
  if (tok_sd2)
    ds_tokenizer_set_clean (tok_sd2, DS_TEXT_CLEAN_BASIC);
  if (tok_sd1)
    ds_tokenizer_set_clean (tok_sd1, DS_TEXT_CLEAN_BASIC);
  json_error_t jerr;
  cases = json_load_file (CASES, 0, &jerr);
  DS_CHECK (cases != NULL && json_is_array (cases), "%s: %s", CASES, jerr.text);
  if (!tok_sd2 || !tok_sd1 || !cases)
    return ds_test_finish ();
  snprintf (tmpdir, sizeof tmpdir, "/tmp/ds-test-tokenizer-XXXXXX");
  if (!mkdtemp (tmpdir))
    {
      DS_CHECK (false, "mkdtemp: %s", strerror (errno));
      return ds_test_finish ();
    }

  test_reference_cases ();
  test_ftfy_cases ();
  test_spec_vectors ();
  test_vocab_lookup ();
  test_tiny_bpe ();
  test_unicode ();
  test_long_mark_runs ();
  test_errors ();
  test_threads ();

  for (int i = 0; i < n_tmp_paths; i++)
    unlink (tmp_paths[i]);
  if (rmdir (tmpdir) != 0)
    fprintf (stderr, "could not remove %s\n", tmpdir);
  json_decref (cases);
  ds_tokenizer_free (tok_sd2);
  ds_tokenizer_free (tok_sd1);
  return ds_test_finish ();
}
