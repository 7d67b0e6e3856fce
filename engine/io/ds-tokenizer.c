/* ds-tokenizer.c: CLIP's byte-level BPE, as transformers' slow CLIPTokenizer
 * runs it with ftfy installed (the default) or without (docs/models.md §5.4).
 *
 * The order of operations is the reference's, since each step changes what the
 * next sees:
 *   1. the raw text is split around the added tokens ("<|startoftext|>",
 *      "<|endoftext|>" and the pad token: "!" for SD 2.x), matched exactly and
 *      case-sensitively; each becomes its own id;
 *   2. every other segment is cleaned: with ftfy, by ftfy.fix_text
 *      (ds-text-fix.c) and whitespace_clean; without, by BasicTokenizer
 *      (control characters dropped, whitespace to spaces, CJK ideographs
 *      padded with spaces, NFC); then split on whitespace, each word
 *      lower-cased by itself (Final_Sigma never looks across whitespace, so
 *      this equals lower-casing the whole text);
 *   3. CLIP's pattern cuts each word into pieces (contractions, letter runs,
 *      single digits, runs of anything else);
 *   4. each piece's UTF-8 bytes become byte symbols, "</w>" joins the last, and
 *      the lowest-ranked adjacent pair is merged everywhere until none is left.
 *
 * Symbols are interned strings (vocab entries, and merge parts and results
 * even if the vocab lacks them, which then encode as the unknown token as in
 * the reference), so BPE works on integers with an open-addressing pair table.
 * The tokenizer is immutable after opening: encode keeps no cache and is safe
 * to call from several threads at once.
 */
#include "ds-tokenizer.h"
#include "ds-util.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ds-atomic.h" /* ds_file_kind */
#include "ds-bpe-merges.h"
#include "ds-text-fix.h"
#include "ds-unicode.h"

#define VOCAB_MAX_BYTES (64u << 20)
#define MERGES_MAX_BYTES (64u << 20)
#define VOCAB_MAX_ID (1 << 22)
/* transformers reads merges lines 1 .. 49152 - 256 - 2 (48894 merges). */
#define MERGES_USED (49152 - 256 - 2)
#define MAX_PIECES (DS_CLIP_CONTEXT - 2)
#define END_OF_WORD "</w>"
#define SOT_TEXT "<|startoftext|>"
#define EOT_TEXT "<|endoftext|>"
#define NO_RANK DS_BPE_NO_RANK

typedef struct {
  uint32_t off;     /* of its NUL-terminated text in the arena */
  uint32_t len;
  int32_t vocab_id; /* -1: only a merge part or result; encodes as the unknown token */
} Symbol;

/* An added token split out of the raw text before cleaning. */
typedef struct {
  uint32_t cps[64];
  size_t n;
  int32_t id;
  const char *text;
} Special;

struct DsTokenizer {
  char *arena; /* (arena_len) symbol texts */
  size_t arena_len, arena_cap;
  Symbol *syms; /* (n_syms) */
  uint32_t n_syms, syms_cap;
  uint32_t *str_slots; /* (str_mask + 1) sid + 1, 0 empty */
  size_t str_mask;
  DsBpeMerges merges;  /* (left sid, right sid) -> rank, merged sid */
  int32_t *id_sid; /* (n_ids) sid of each vocab id, -1 unassigned */
  int32_t n_ids;
  uint32_t byte_sid[256], byte_end_sid[256];
  int32_t sot_id, eot_id, unk_id, pad_id;
  Special specials[3];
  int n_specials;
  char pad_text[64];
  DsTextClean clean; /* DS_TEXT_CLEAN_FTFY unless set */
};

/* ---- file reading ------------------------------------------------------- */

static DsStatus
read_file (const char *path, size_t max_bytes, char **out, size_t *out_len, DsError *err)
{
  /* a directory, a FIFO or /dev/zero: say so rather than block or read to the cap */
  struct stat sb;
  if (stat (path, &sb) == 0 && !S_ISREG (sb.st_mode))
    return ds_error_set (err, DS_ERR_IO, "%s: is %s, expected a file", path,
                         ds_file_kind (sb.st_mode));
  FILE *f = fopen (path, "rb");
  if (!f)
    return ds_error_set (err, DS_ERR_IO, "%s: cannot open: %s", path, strerror (errno));
  size_t cap = 1 << 16, len = 0; /* doubled as needed: CLIP's vocab.json is 1 MB */
  char *buf = malloc (cap + 1);
  if (!buf)
    {
      fclose (f);
      return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
    }
  for (;;)
    {
      if (len == cap)
        {
          if (cap >= max_bytes)
            {
              free (buf);
              fclose (f);
              return ds_error_set (err, DS_ERR_FORMAT, "%s: larger than %zu bytes", path,
                                   max_bytes);
            }
          cap *= 2;
          char *nb = realloc (buf, cap + 1);
          if (!nb)
            {
              free (buf);
              fclose (f);
              return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
            }
          buf = nb;
        }
      size_t got = fread (buf + len, 1, cap - len, f);
      len += got;
      if (got == 0)
        break;
    }
  bool failed = ferror (f);
  int saved = errno;
  fclose (f);
  if (failed)
    {
      free (buf);
      return ds_error_set (err, DS_ERR_IO, "%s: read error: %s", path, strerror (saved));
    }
  buf[len] = '\0';
  *out = buf;
  *out_len = len;
  return DS_OK;
}

/* ---- interned symbols --------------------------------------------------- */

static bool
str_table_grow (DsTokenizer *tok)
{
  size_t ncap = (tok->str_mask + 1) * 2;
  uint32_t *slots = calloc (ncap, sizeof *slots);
  if (!slots)
    return false;
  for (uint32_t sid = 0; sid < tok->n_syms; sid++)
    {
      const Symbol *s = &tok->syms[sid];
      size_t i = ds_hash_bytes (tok->arena + s->off, s->len) & (ncap - 1);
      while (slots[i])
        i = (i + 1) & (ncap - 1);
      slots[i] = sid + 1;
    }
  free (tok->str_slots);
  tok->str_slots = slots;
  tok->str_mask = ncap - 1;
  return true;
}

/* The sid of s[0..n), or -1 when it is not interned. */
static int64_t
str_find (const DsTokenizer *tok, const char *s, size_t n)
{
  size_t i = ds_hash_bytes (s, n) & tok->str_mask;
  for (; tok->str_slots[i]; i = (i + 1) & tok->str_mask)
    {
      const Symbol *sym = &tok->syms[tok->str_slots[i] - 1];
      if (sym->len == n && memcmp (tok->arena + sym->off, s, n) == 0)
        return tok->str_slots[i] - 1;
    }
  return -1;
}

/* Interns s[0..n) (which must not point into the arena); -1 when out of memory. */
static int64_t
str_intern (DsTokenizer *tok, const char *s, size_t n)
{
  int64_t found = str_find (tok, s, n);
  if (found >= 0)
    return found;
  if ((tok->n_syms + 1) * 2 > tok->str_mask + 1 && !str_table_grow (tok))
    return -1;
  if (tok->n_syms == tok->syms_cap)
    {
      uint32_t ncap = tok->syms_cap ? tok->syms_cap * 2 : 1024;
      Symbol *ns = realloc (tok->syms, ncap * sizeof *ns);
      if (!ns)
        return -1;
      tok->syms = ns;
      tok->syms_cap = ncap;
    }
  if (tok->arena_len + n + 1 > tok->arena_cap)
    {
      size_t ncap = ds_pow2_at_least (tok->arena_len + n + 1 > 2 * tok->arena_cap
                                     ? tok->arena_len + n + 1
                                     : 2 * tok->arena_cap);
      char *na = realloc (tok->arena, ncap);
      if (!na)
        return -1;
      tok->arena = na;
      tok->arena_cap = ncap;
    }
  if (tok->arena_len + n + 1 > UINT32_MAX)
    return -1;
  uint32_t sid = tok->n_syms++;
  tok->syms[sid] = (Symbol) { .off = (uint32_t) tok->arena_len, .len = (uint32_t) n,
                              .vocab_id = -1 };
  memcpy (tok->arena + tok->arena_len, s, n);
  tok->arena[tok->arena_len + n] = '\0';
  tok->arena_len += n + 1;
  size_t i = ds_hash_bytes (s, n) & tok->str_mask;
  while (tok->str_slots[i])
    i = (i + 1) & tok->str_mask;
  tok->str_slots[i] = sid + 1;
  return sid;
}

/* ---- opening ------------------------------------------------------------ */

static DsStatus
load_vocab (DsTokenizer *tok, const char *path, DsError *err)
{
  char *text;
  size_t len;
  DsStatus st = read_file (path, VOCAB_MAX_BYTES, &text, &len, err);
  if (st != DS_OK)
    return st;
  json_error_t jerr;
  json_t *root = json_loadb (text, len, 0, &jerr);
  free (text);
  if (!root)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: line %d, column %d: %s", path, jerr.line,
                         jerr.column, jerr.text);
  if (!json_is_object (root))
    {
      json_decref (root);
      return ds_error_set (err, DS_ERR_FORMAT,
                           "%s: expected a JSON object mapping token strings to ids", path);
    }
  size_t n = json_object_size (root);
  tok->str_mask = ds_pow2_at_least (4 * n + 1024) - 1;
  tok->str_slots = calloc (tok->str_mask + 1, sizeof *tok->str_slots);
  if (!tok->str_slots)
    {
      json_decref (root);
      return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
    }
  int32_t max_id = -1;
  const char *key;
  json_t *value;
  json_object_foreach (root, key, value)
    {
      json_int_t id = json_is_integer (value) ? json_integer_value (value) : -1;
      if (id < 0 || id >= VOCAB_MAX_ID)
        {
          st = ds_error_set (err, DS_ERR_FORMAT,
                             "%s: entry \"%.80s\": expected an integer id in [0, %d)", path, key,
                             VOCAB_MAX_ID);
          break;
        }
      int64_t sid = str_intern (tok, key, strlen (key));
      if (sid < 0)
        {
          st = ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
          break;
        }
      tok->syms[sid].vocab_id = (int32_t) id;
      if (id > max_id)
        max_id = (int32_t) id;
    }
  json_decref (root);
  if (st != DS_OK)
    return st;
  if (max_id < 0)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: the vocabulary is empty", path);
  tok->n_ids = max_id + 1;
  tok->id_sid = malloc ((size_t) tok->n_ids * sizeof *tok->id_sid);
  if (!tok->id_sid)
    return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
  for (int32_t i = 0; i < tok->n_ids; i++)
    tok->id_sid[i] = -1;
  for (uint32_t sid = 0; sid < tok->n_syms; sid++)
    tok->id_sid[tok->syms[sid].vocab_id] = (int32_t) sid;
  return DS_OK;
}

/* Splits a merges line into its two symbols; false unless exactly two. */
static bool
split_merge_line (char *line, size_t len, char **a, size_t *na, char **b, size_t *nb)
{
  char *parts[3];
  size_t lens[3];
  int k = 0;
  size_t i = 0;
  while (i < len)
    {
      while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
      if (i == len)
        break;
      size_t start = i;
      while (i < len && line[i] != ' ' && line[i] != '\t')
        i++;
      if (k == 2)
        return false;
      parts[k] = line + start;
      lens[k] = i - start;
      k++;
    }
  if (k != 2)
    return false;
  *a = parts[0];
  *na = lens[0];
  *b = parts[1];
  *nb = lens[1];
  return true;
}

static DsStatus
load_merges (DsTokenizer *tok, const char *path, DsError *err)
{
  char *text;
  size_t len;
  DsStatus st = read_file (path, MERGES_MAX_BYTES, &text, &len, err);
  if (st != DS_OK)
    return st;
  /* Room for one merge per line (at most MERGES_USED), at most half full: a
   * small file gets a small table rather than CLIP's full 2 MB. */
  size_t lines = 1;
  for (const char *p = text; (p = memchr (p, '\n', len - (size_t) (p - text))); p++)
    lines++;
  const bool table = ds_bpe_merges_init (&tok->merges, lines < MERGES_USED ? lines : MERGES_USED);
  char *concat = malloc (len + 1);
  if (!table || !concat)
    {
      free (text);
      free (concat);
      return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
    }

  /* A NUL would cut a symbol short in the interned strings: refuse the file. */
  const char *nul = memchr (text, '\0', len);
  if (nul)
    {
      long at = 1;
      for (const char *c = text; c < nul; c++)
        at += *c == '\n';
      free (text);
      free (concat);
      return ds_error_set (err, DS_ERR_FORMAT, "%s: line %ld: contains a NUL byte; not a "
                           "merges.txt", path, at);
    }

  /* Like transformers, ignore whitespace around the whole file. */
  size_t pos = 0;
  while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '
                     || text[len - 1] == '\t'))
    len--;
  long line_no = 0;
  uint32_t rank = 0;
  while (pos < len && rank < MERGES_USED)
    {
      char *line = text + pos;
      char *nl = memchr (line, '\n', len - pos);
      size_t line_len = nl ? (size_t) (nl - line) : len - pos;
      pos += line_len + 1;
      line_no++;
      if (line_len > 0 && line[line_len - 1] == '\r')
        line_len--;
      if (line_no == 1)
        {
          if (line_len < 8 || memcmp (line, "#version", 8) != 0)
            {
              st = ds_error_set (err, DS_ERR_FORMAT,
                                 "%s: line 1: expected the \"#version: 0.2\" header", path);
              break;
            }
          continue;
        }
      char *a, *b;
      size_t na, nb;
      if (!split_merge_line (line, line_len, &a, &na, &b, &nb))
        {
          st = ds_error_set (err, DS_ERR_FORMAT,
                             "%s: line %ld: expected two symbols separated by a space", path,
                             line_no);
          break;
        }
      memcpy (concat, a, na);
      memcpy (concat + na, b, nb);
      int64_t sa = str_intern (tok, a, na);
      int64_t sb = sa < 0 ? -1 : str_intern (tok, b, nb);
      int64_t sr = sb < 0 ? -1 : str_intern (tok, concat, na + nb);
      if (sr < 0)
        {
          st = ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
          break;
        }
      ds_bpe_merges_put (&tok->merges, (uint32_t) sa, (uint32_t) sb, rank++, (uint32_t) sr);
    }
  free (text);
  free (concat);
  if (st == DS_OK && line_no == 0)
    st = ds_error_set (err, DS_ERR_FORMAT, "%s: empty file", path);
  return st;
}

/* GPT-2/CLIP's bytes_to_unicode: printable bytes stand for themselves, the
 * other 68 take U+0100 onwards in byte order. */
static uint32_t
byte_to_unicode (unsigned b, unsigned *next_extra)
{
  if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
    return b;
  return 0x100 + (*next_extra)++;
}

static DsStatus
setup_symbols (DsTokenizer *tok, const char *vocab_path, const char *pad_token, DsError *err)
{
  unsigned extra = 0;
  for (unsigned b = 0; b < 256; b++)
    {
      char s[4 + sizeof END_OF_WORD];
      int n = ds_utf8_encode (byte_to_unicode (b, &extra), s);
      memcpy (s + n, END_OF_WORD, sizeof END_OF_WORD);
      int64_t plain = str_intern (tok, s, (size_t) n);
      int64_t end = plain < 0 ? -1 : str_intern (tok, s, strlen (s));
      if (end < 0)
        return ds_error_set (err, DS_ERR_NOMEM, "tokenizer: out of memory");
      tok->byte_sid[b] = (uint32_t) plain;
      tok->byte_end_sid[b] = (uint32_t) end;
    }

  const char *names[2] = { SOT_TEXT, EOT_TEXT };
  int32_t *ids[2] = { &tok->sot_id, &tok->eot_id };
  for (int i = 0; i < 2; i++)
    {
      int64_t sid = str_find (tok, names[i], strlen (names[i]));
      if (sid < 0 || tok->syms[sid].vocab_id < 0)
        return ds_error_set (err, DS_ERR_FORMAT, "%s: no \"%s\" entry", vocab_path, names[i]);
      *ids[i] = tok->syms[sid].vocab_id;
    }
  tok->unk_id = tok->eot_id; /* CLIP's unknown token is <|endoftext|> */

  size_t pad_len = strlen (pad_token);
  /* An empty added token would match everywhere and never advance the text. */
  if (pad_len == 0)
    return ds_error_set (err, DS_ERR_INVALID,
                         "pad token: empty (expected a vocabulary entry such as \"!\" or "
                         "\"<|endoftext|>\")");
  if (ds_utf8_find_invalid (pad_token, pad_len) >= 0)
    return ds_error_set (err, DS_ERR_INVALID, "pad token: invalid UTF-8");
  int64_t pad_sid = str_find (tok, pad_token, pad_len);
  if (pad_sid < 0 || tok->syms[pad_sid].vocab_id < 0)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: pad token \"%.64s\" is not in the vocabulary",
                         vocab_path, pad_token);
  if (pad_len >= sizeof tok->pad_text)
    return ds_error_set (err, DS_ERR_INVALID, "pad token: longer than %zu bytes",
                         sizeof tok->pad_text - 1);
  tok->pad_id = tok->syms[pad_sid].vocab_id;
  memcpy (tok->pad_text, pad_token, pad_len + 1);

  /* The added tokens, matched in the raw text: bos, eos (= unk) and pad. */
  const char *texts[3] = { SOT_TEXT, EOT_TEXT, tok->pad_text };
  int32_t special_ids[3] = { tok->sot_id, tok->eot_id, tok->pad_id };
  for (int i = 0; i < 3; i++)
    {
      bool dup = false;
      for (int j = 0; j < tok->n_specials; j++)
        dup |= strcmp (tok->specials[j].text, texts[i]) == 0;
      if (dup)
        continue;
      Special *sp = &tok->specials[tok->n_specials++];
      sp->text = texts[i];
      sp->id = special_ids[i];
      sp->n = 0;
      for (const char *p = texts[i]; *p;)
        p += ds_utf8_decode (p, &sp->cps[sp->n++]);
    }
  return DS_OK;
}

DsStatus
ds_tokenizer_open (const char *vocab_json_path, const char *merges_path, const char *pad_token,
                   DsTokenizer **out, DsError *err)
{
  *out = NULL;
  DsTokenizer *tok = calloc (1, sizeof *tok);
  if (!tok)
    return ds_error_set (err, DS_ERR_NOMEM, "tokenizer: out of memory");
  DsStatus st = load_vocab (tok, vocab_json_path, err);
  if (st == DS_OK)
    st = load_merges (tok, merges_path, err);
  if (st == DS_OK)
    st = setup_symbols (tok, vocab_json_path, pad_token, err);
  if (st != DS_OK)
    {
      ds_tokenizer_free (tok);
      return st;
    }
  *out = tok;
  return DS_OK;
}

void
ds_tokenizer_free (DsTokenizer *tok)
{
  if (!tok)
    return;
  free (tok->arena);
  free (tok->syms);
  free (tok->str_slots);
  ds_bpe_merges_free (&tok->merges);
  free (tok->id_sid);
  free (tok);
}

const char *
ds_tokenizer_id_to_token (const DsTokenizer *tok, int32_t id)
{
  if (id < 0 || id >= tok->n_ids || tok->id_sid[id] < 0)
    return NULL;
  return tok->arena + tok->syms[tok->id_sid[id]].off;
}

void
ds_tokenizer_set_clean (DsTokenizer *tok, DsTextClean clean)
{
  tok->clean = clean;
}

int32_t
ds_tokenizer_pad_id (const DsTokenizer *tok)
{
  return tok->pad_id;
}

/* ---- encoding ----------------------------------------------------------- */

typedef struct {
  const DsTokenizer *tok;
  DsTokens *out;
  int n_pieces; /* all pieces so far, kept or not */
  /* the word being built */
  bool word_open;
  bool break_pending; /* whitespace seen since the last word character */
  char word_text[sizeof ((DsTokenWord *) 0)->text];
  size_t word_len;
  bool word_full;
  int word_first; /* piece index of its first piece, -1 while it has none */
  int word_count;
  /* scratch */
  DsUcBuf clean, nfc, lower;
  char *bytes;
  size_t bytes_cap;
  uint32_t *sym, *sym2, *old_pos;
  uint32_t *rank, *rank2;
  size_t sym_cap;
} Encoder;

static void
word_close (Encoder *e)
{
  if (e->word_open && e->word_count > 0 && e->word_first < MAX_PIECES)
    {
      DsTokenWord *w = &e->out->words[e->out->n_words++];
      memcpy (w->text, e->word_text, e->word_len);
      w->text[e->word_len] = '\0';
      w->first = 1 + e->word_first;
      w->count = e->word_count;
      if (e->word_first + w->count > MAX_PIECES)
        w->count = MAX_PIECES - e->word_first;
    }
  e->word_open = false;
}

/* Called before the first character of each whitespace-separated chunk. */
static void
word_begin_chunk (Encoder *e)
{
  if (e->word_open && !e->break_pending)
    return;
  word_close (e);
  e->word_open = true;
  e->break_pending = false;
  e->word_len = 0;
  e->word_full = false;
  e->word_first = -1;
  e->word_count = 0;
}

static void
word_append (Encoder *e, const uint32_t *cps, size_t n)
{
  for (size_t i = 0; i < n && !e->word_full; i++)
    {
      char u[4];
      int k = ds_utf8_encode (cps[i], u);
      if (e->word_len + (size_t) k >= sizeof e->word_text)
        {
          e->word_full = true;
          break;
        }
      memcpy (e->word_text + e->word_len, u, (size_t) k);
      e->word_len += (size_t) k;
    }
}

static void
emit_id (Encoder *e, int32_t id)
{
  if (e->n_pieces < MAX_PIECES)
    e->out->ids[1 + e->n_pieces] = id;
  if (e->word_first < 0)
    e->word_first = e->n_pieces;
  e->word_count++;
  e->n_pieces++;
}

static bool
ensure_sym_cap (Encoder *e, size_t n)
{
  if (n <= e->sym_cap)
    return true;
  size_t cap = ds_pow2_at_least (n);
  uint32_t **arrays[5] = { &e->sym, &e->sym2, &e->old_pos, &e->rank, &e->rank2 };
  for (int i = 0; i < 5; i++)
    {
      uint32_t *p = realloc (*arrays[i], cap * sizeof *p);
      if (!p)
        return false;
      *arrays[i] = p;
    }
  e->sym_cap = cap;
  return true;
}

static uint32_t
pair_rank (const DsTokenizer *tok, uint32_t a, uint32_t b)
{
  const DsBpeMerge *m = ds_bpe_merges_get (&tok->merges, a, b);
  return m ? m->rank : NO_RANK;
}

/* BPE over one piece's bytes; emits its ids. */
static bool
bpe_piece (Encoder *e, const char *bytes, size_t n)
{
  const DsTokenizer *tok = e->tok;
  /* transformers' bpe cache holds these two, which it returns unmerged */
  if ((n == strlen (SOT_TEXT) && memcmp (bytes, SOT_TEXT, n) == 0)
      || (n == strlen (EOT_TEXT) && memcmp (bytes, EOT_TEXT, n) == 0))
    {
      int64_t sid = str_find (tok, bytes, n);
      emit_id (e, tok->syms[sid].vocab_id);
      return true;
    }
  if (!ensure_sym_cap (e, n))
    return false;
  uint32_t *sym = e->sym, *rank = e->rank;
  for (size_t i = 0; i < n; i++)
    sym[i] = i + 1 < n ? tok->byte_sid[(unsigned char) bytes[i]]
                       : tok->byte_end_sid[(unsigned char) bytes[i]];
  for (size_t i = 0; i + 1 < n; i++)
    rank[i] = pair_rank (tok, sym[i], sym[i + 1]);

  while (n > 1)
    {
      uint32_t best = NO_RANK;
      size_t at = 0;
      for (size_t i = 0; i + 1 < n; i++)
        if (rank[i] < best)
          {
            best = rank[i];
            at = i;
          }
      if (best == NO_RANK)
        break;
      uint32_t first = sym[at], second = sym[at + 1];
      uint32_t result = ds_bpe_merges_get (&tok->merges, first, second)->result;
      /* Merge every occurrence left to right; remember where each survivor came
       * from so unchanged neighbours keep their rank. */
      size_t m = 0;
      for (size_t i = 0; i < n;)
        {
          if (i + 1 < n && sym[i] == first && sym[i + 1] == second)
            {
              e->sym2[m] = result;
              e->old_pos[m++] = UINT32_MAX;
              i += 2;
            }
          else
            {
              e->sym2[m] = sym[i];
              e->old_pos[m++] = (uint32_t) i;
              i++;
            }
        }
      for (size_t i = 0; i + 1 < m; i++)
        {
          uint32_t p = e->old_pos[i], q = e->old_pos[i + 1];
          e->rank2[i] = (p != UINT32_MAX && q == p + 1) ? rank[p]
                                                         : pair_rank (tok, e->sym2[i], e->sym2[i + 1]);
        }
      /* swap buffers */
      uint32_t *t = e->sym;
      e->sym = e->sym2;
      e->sym2 = t;
      t = e->rank;
      e->rank = e->rank2;
      e->rank2 = t;
      sym = e->sym;
      rank = e->rank;
      n = m;
    }
  for (size_t i = 0; i < n; i++)
    {
      int32_t id = tok->syms[sym[i]].vocab_id;
      emit_id (e, id >= 0 ? id : tok->unk_id);
    }
  return true;
}

static bool
emit_piece (Encoder *e, const uint32_t *cps, size_t n)
{
  if (4 * n > e->bytes_cap)
    {
      size_t cap = ds_pow2_at_least (4 * n);
      char *b = realloc (e->bytes, cap);
      if (!b)
        return false;
      e->bytes = b;
      e->bytes_cap = cap;
    }
  size_t len = 0;
  for (size_t i = 0; i < n; i++)
    len += (size_t) ds_utf8_encode (cps[i], e->bytes + len);
  return bpe_piece (e, e->bytes, len);
}

/* Case-insensitive match of an ASCII literal (lower-case letters) at s. */
static bool
match_literal (const uint32_t *s, size_t n, const char *lit)
{
  size_t k = strlen (lit);
  if (n < k)
    return false;
  for (size_t i = 0; i < k; i++)
    if (!ds_uc_ascii_ci_eq (s[i], lit[i]))
      return false;
  return true;
}

/* CLIP's pattern over one lower-cased word:
 * <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+ */
static bool
pretokenize (Encoder *e, const uint32_t *s, size_t n)
{
  static const char *const literals[] = { SOT_TEXT, EOT_TEXT, "'s", "'t", "'re",
                                          "'ve", "'m", "'ll", "'d" };
  size_t i = 0;
  while (i < n)
    {
      size_t len = 0;
      for (size_t k = 0; k < sizeof literals / sizeof literals[0] && !len; k++)
        if (match_literal (s + i, n - i, literals[k]))
          len = strlen (literals[k]);
      if (!len)
        {
          DsUcPreClass c = ds_uc_pre_class (s[i]);
          if (c == DS_UC_PRE_SKIP)
            {
              i++;
              continue;
            }
          len = 1;
          if (c != DS_UC_PRE_NUMBER)
            while (i + len < n && ds_uc_pre_class (s[i + len]) == c)
              len++;
        }
      if (!emit_piece (e, s + i, len))
        return false;
      i += len;
    }
  return true;
}

/* CLIPTokenizer._tokenize with ftfy: fix_text, then whitespace_clean (runs of
 * str.isspace characters become one space; the chunks are the words). */
static bool
clean_ftfy (Encoder *e, const uint32_t *cps, size_t n)
{
  e->clean.len = 0;
  e->nfc.len = 0;
  if (!ds_text_fix (cps, n, &e->clean))
    return false;
  for (size_t i = 0; i < e->clean.len; i++)
    {
      uint32_t c = e->clean.cp[i];
      if (!ds_uc_buf_push (&e->nfc, ds_text_is_py_space (c) ? ' ' : c))
        return false;
    }
  return true;
}

/* CLIPTokenizer._tokenize without ftfy: BasicTokenizer's clean-up (controls
 * dropped, whitespace to spaces, CJK ideographs set apart) and NFC. */
static bool
clean_basic (Encoder *e, const uint32_t *cps, size_t n)
{
  e->clean.len = 0;
  e->nfc.len = 0;
  for (size_t i = 0; i < n; i++)
    {
      uint32_t c = cps[i];
      bool ok = true;
      if (ds_uc_is_removed (c))
        continue;
      if (ds_uc_is_space (c))
        ok = ds_uc_buf_push (&e->clean, ' ');
      else if (ds_uc_is_cjk (c))
        ok = ds_uc_buf_push (&e->clean, ' ') && ds_uc_buf_push (&e->clean, c)
             && ds_uc_buf_push (&e->clean, ' ');
      else
        ok = ds_uc_buf_push (&e->clean, c);
      if (!ok)
        return false;
    }
  return ds_uc_nfc (e->clean.cp, e->clean.len, &e->nfc);
}

/* One segment between added tokens: cleaned, cut into whitespace-separated
 * words, each lower-cased, cut into pieces and BPE-merged. */
static bool
process_segment (Encoder *e, const uint32_t *cps, size_t n)
{
  if (!(e->tok->clean == DS_TEXT_CLEAN_BASIC ? clean_basic (e, cps, n) : clean_ftfy (e, cps, n)))
    return false;
  const uint32_t *s = e->nfc.cp;
  size_t m = e->nfc.len;
  for (size_t i = 0; i < m;)
    {
      if (s[i] == ' ')
        {
          e->break_pending = true;
          i++;
          continue;
        }
      size_t j = i;
      while (j < m && s[j] != ' ')
        j++;
      word_begin_chunk (e);
      e->lower.len = 0;
      if (!ds_uc_lower (s + i, j - i, &e->lower))
        return false;
      word_append (e, e->lower.cp, e->lower.len);
      if (!pretokenize (e, e->lower.cp, e->lower.len))
        return false;
      i = j;
    }
  return true;
}

/* The longest added token starting at s, or NULL. */
static const Special *
match_special (const DsTokenizer *tok, const uint32_t *s, size_t n)
{
  const Special *best = NULL;
  for (int k = 0; k < tok->n_specials; k++)
    {
      const Special *sp = &tok->specials[k];
      if (sp->n <= n && (!best || sp->n > best->n)
          && memcmp (s, sp->cps, sp->n * sizeof *s) == 0)
        best = sp;
    }
  return best;
}

static bool
encode_cps (Encoder *e, const uint32_t *cps, size_t n)
{
  size_t seg = 0;
  for (size_t i = 0; i < n;)
    {
      const Special *sp = match_special (e->tok, cps + i, n - i);
      if (!sp)
        {
          i++;
          continue;
        }
      if (!process_segment (e, cps + seg, i - seg))
        return false;
      word_begin_chunk (e);
      word_append (e, sp->cps, sp->n);
      emit_id (e, sp->id);
      i += sp->n;
      seg = i;
    }
  if (!process_segment (e, cps + seg, n - seg))
    return false;
  word_close (e);
  return true;
}

DsStatus
ds_tokenizer_encode (const DsTokenizer *tok, const char *text, DsTokens *out, DsError *err)
{
  memset (out, 0, sizeof *out);
  size_t len = strlen (text);
  long bad = ds_utf8_find_invalid (text, len);
  if (bad >= 0)
    return ds_error_set (err, DS_ERR_INVALID, "prompt: invalid UTF-8 at byte offset %ld", bad);

  DsUcBuf cps = { 0 };
  Encoder e = { .tok = tok, .out = out };
  bool ok = ds_uc_buf_reserve (&cps, len + 1);
  for (size_t i = 0; ok && i < len;)
    {
      uint32_t cp;
      i += (size_t) ds_utf8_decode (text + i, &cp);
      cps.cp[cps.len++] = cp;
    }
  ok = ok && encode_cps (&e, cps.cp, cps.len);
  ds_uc_buf_free (&cps);
  ds_uc_buf_free (&e.clean);
  ds_uc_buf_free (&e.nfc);
  ds_uc_buf_free (&e.lower);
  free (e.bytes);
  free (e.sym);
  free (e.sym2);
  free (e.old_pos);
  free (e.rank);
  free (e.rank2);
  if (!ok)
    {
      memset (out, 0, sizeof *out);
      return ds_error_set (err, DS_ERR_NOMEM, "prompt: out of memory while tokenizing");
    }

  int kept = e.n_pieces < MAX_PIECES ? e.n_pieces : MAX_PIECES;
  out->ids[0] = tok->sot_id;
  out->ids[1 + kept] = tok->eot_id;
  for (int i = 2 + kept; i < DS_CLIP_CONTEXT; i++)
    out->ids[i] = tok->pad_id;
  out->n_tokens = 2 + kept;
  out->truncated = e.n_pieces > MAX_PIECES;
  out->n_pieces_total = e.n_pieces;
  return DS_OK;
}
