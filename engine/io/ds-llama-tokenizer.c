/* ds-llama-tokenizer.c: the LLaMA BPE of a Hugging Face tokenizer.json, run the
 * way the `tokenizers` library runs it (docs/models.md §7.7).
 *
 * Encoding, in the library's order (each step sees what the previous left):
 *   1. added tokens not marked "normalized" are cut out of the raw text
 *      (leftmost, then longest; lstrip/rstrip swallow neighbouring whitespace);
 *   2. every other segment is normalised (Prepend: a "▁" in front of any
 *      non-empty segment, which is the legacy behaviour after a special token;
 *      Replace: " " -> "▁"), and "normalized" added tokens are cut out of it;
 *   3. Metaspace, when present, replaces spaces and prepends "▁" (to every
 *      piece, or only to the one at the start of the text) and may split
 *      before each "▁";
 *   4. each piece is one BPE word: its characters become vocabulary ids (or
 *      their <0xNN> bytes, or a fused <unk>), and merges are applied lowest
 *      rank first, leftmost first among equals, with a heap as the library
 *      does (its quirks kept: an expired heap entry is recognised only by its
 *      result id; a pending <unk> is emitted after a byte-fallback run);
 *   5. the post-processor's BOS/EOS go around the ids.
 * Decoding runs the decoder steps over the pieces' strings.
 */
#include "ds-llama-tokenizer.h"
#include "ds-util.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds-bpe-merges.h"
#include "ds-json.h"
#include "ds-unicode.h"

#define FILE_MAX_BYTES (256u << 20)
#define MAX_IDS (1 << 24)
#define MAX_STEPS 16
#define MAX_TEMPLATE 8
#define META "\xe2\x96\x81" /* U+2581 "▁" */

typedef enum
{
  NORM_PREPEND,
  NORM_REPLACE
} NormKind;

typedef struct
{
  NormKind kind;
  char *a; /* prepend: the text; replace: the pattern */
  char *b; /* replace: the content */
} NormStep;

typedef enum
{
  PREPEND_ALWAYS,
  PREPEND_FIRST,
  PREPEND_NEVER
} PrependScheme;

typedef enum
{
  DEC_REPLACE,
  DEC_BYTE_FALLBACK,
  DEC_FUSE,
  DEC_STRIP,
  DEC_METASPACE
} DecKind;

typedef struct
{
  DecKind kind;
  char *a, *b;          /* replace: pattern, content; metaspace: replacement */
  uint32_t content;     /* strip: the character */
  int start, stop;      /* strip: how many at each end */
  PrependScheme scheme; /* metaspace */
} DecStep;

typedef struct
{
  char *content; /* as written in the file */
  char *pattern; /* what is matched: content, or content normalised */
  size_t pattern_len;
  int32_t id;
  bool special, normalized, lstrip, rstrip;
} Added;

struct DsLlamaTokenizer
{
  /* the model's vocabulary */
  char **piece;        /* (n_ids) model piece of each id, NULL when unassigned */
  uint32_t *piece_len; /* (n_ids) */
  int32_t *slots;      /* (mask + 1) id + 1 of a model piece, 0 empty */
  size_t mask;
  DsBpeMerges merges;  /* (left id, right id) -> rank, merged id */
  int32_t n_ids;       /* model and added ids: max id + 1 */
  bool byte_fallback, fuse_unk, ignore_merges;
  int32_t unk_id; /* the model's unk_token, -1 none */
  int32_t byte_id[256];
  /* added tokens */
  Added *added;
  int n_added;
  const char **id_name; /* (n_ids) added content, else model piece, else NULL */
  const char **id_text; /* (n_ids) what decoding reads: id_name, but a "normalized"
                           added token's normalised content (set_decode_texts) */
  bool *id_special;     /* (n_ids) an added token marked special */
  bool *id_skip;        /* (n_ids) left out by skip_special (set_decode_texts) */
  bool *id_byte;        /* (n_ids) a <0xNN> piece the ByteFallback decoder joins */
  /* pipeline */
  NormStep norm[MAX_STEPS];
  int n_norm;
  bool metaspace;
  char meta_rep[8];
  PrependScheme meta_scheme;
  bool meta_split;
  int32_t pre_ids[MAX_TEMPLATE], post_ids[MAX_TEMPLATE];
  int n_pre, n_post;
  bool has_decoder;
  DecStep dec[MAX_STEPS];
  int n_dec;
  bool dec_byte_fallback;
  /* tokenizer_config.json */
  int32_t bos_id, eos_id;
  bool legacy, chat_template;
};

/* ---- small helpers ------------------------------------------------------ */

static char *
dup_n (const char *s, size_t n)
{
  char *d = malloc (n + 1);
  if (d)
    {
      memcpy (d, s, n);
      d[n] = '\0';
    }
  return d;
}

static char *
dup_str (const char *s)
{
  return dup_n (s, strlen (s));
}

typedef struct
{
  char *s;
  size_t len, cap;
} Str;

static bool
str_add (Str *b, const char *s, size_t n)
{
  if (b->len + n + 1 > b->cap)
    {
      size_t cap = b->cap ? b->cap : 64;
      while (cap < b->len + n + 1)
        cap *= 2;
      char *ns = realloc (b->s, cap);
      if (!ns)
        return false;
      b->s = ns;
      b->cap = cap;
    }
  memcpy (b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = '\0';
  return true;
}

typedef struct
{
  int32_t *v;
  int64_t n, cap;
} IdVec;

static bool
ids_push (IdVec *v, int32_t id)
{
  if (v->n == v->cap)
    {
      int64_t cap = v->cap ? 2 * v->cap : 64;
      int32_t *nv = realloc (v->v, (size_t) cap * sizeof *nv);
      if (!nv)
        return false;
      v->v = nv;
      v->cap = cap;
    }
  v->v[v->n++] = id;
  return true;
}

/* Rust's char::is_whitespace (Unicode White_Space), which lstrip/rstrip use. */
static bool
is_white_space (uint32_t c)
{
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680
         || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F
         || c == 0x3000;
}

/* ---- vocabulary and merges ---------------------------------------------- */

/* The model id of s[0..n), or -1. */
static int32_t
vocab_find (const DsLlamaTokenizer *tok, const char *s, size_t n)
{
  for (size_t i = ds_hash_bytes (s, n) & tok->mask; tok->slots[i]; i = (i + 1) & tok->mask)
    {
      int32_t id = tok->slots[i] - 1;
      if (tok->piece_len[id] == n && memcmp (tok->piece[id], s, n) == 0)
        return id;
    }
  return -1;
}

/* ---- reading the files -------------------------------------------------- */

static DsStatus
load_json (const char *path, json_t **out, DsError *err)
{
  FILE *f = fopen (path, "rb");
  if (!f)
    return ds_error_set (err, errno == ENOENT ? DS_ERR_NOT_FOUND : DS_ERR_IO, "%s: cannot open: %s",
                         path, strerror (errno));
  json_error_t jerr;
  *out = json_loadf (f, JSON_REJECT_DUPLICATES, &jerr);
  fclose (f);
  if (!*out)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: line %d, column %d: %s", path, jerr.line,
                         jerr.column, jerr.text);
  if (!json_is_object (*out))
    {
      json_decref (*out);
      *out = NULL;
      return ds_error_set (err, DS_ERR_FORMAT, "%s: expected a JSON object", path);
    }
  return DS_OK;
}

/* A string field, or NULL (error set) when absent or of another type. */
static const char *
get_string (const json_t *obj, const char *key, const char *where, DsError *err)
{
  const json_t *v = json_object_get (obj, key);
  if (!json_is_string (v))
    {
      ds_error_set (err, DS_ERR_FORMAT, "%s.%s: expected a string, got %s", where, key,
                    v ? ds_json_type_name (v) : "nothing");
      return NULL;
    }
  return json_string_value (v);
}

/* A {"String": "x"} pattern (a {"Regex": ...} one is unsupported) into *out. */
static DsStatus
get_pattern (const json_t *step, const char *where, const char **out, DsError *err)
{
  const json_t *p = json_object_get (step, "pattern");
  if (json_is_object (p) && json_object_get (p, "Regex"))
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "%s.pattern: regular expressions are not supported", where);
  if (!json_is_object (p) || !json_is_string (json_object_get (p, "String"))
      || !*json_string_value (json_object_get (p, "String")))
    return ds_error_set (err, DS_ERR_FORMAT, "%s.pattern: expected {\"String\": \"...\"}", where);
  *out = json_string_value (json_object_get (p, "String"));
  return DS_OK;
}

static DsStatus
load_vocab (DsLlamaTokenizer *tok, const json_t *model, const char *path, DsError *err)
{
  const json_t *vocab = json_object_get (model, "vocab");
  if (!vocab)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: missing model.vocab", path);
  if (!json_is_object (vocab) || json_object_size (vocab) == 0)
    return ds_error_set (err, DS_ERR_FORMAT,
                         "%s: model.vocab: expected a non-empty object of piece -> id", path);
  int32_t max_id = -1;
  const char *key;
  json_t *value;
  json_object_foreach ((json_t *) vocab, key, value)
  {
    json_int_t id = json_is_integer (value) ? json_integer_value (value) : -1;
    if (id < 0 || id >= MAX_IDS)
      return ds_error_set (err, DS_ERR_FORMAT,
                           "%s: model.vocab[\"%.80s\"]: expected an integer id in [0, %d)", path,
                           key, MAX_IDS);
    if (id > max_id)
      max_id = (int32_t) id;
  }
  tok->n_ids = max_id + 1;
  tok->piece = calloc ((size_t) tok->n_ids, sizeof *tok->piece);
  tok->piece_len = calloc ((size_t) tok->n_ids, sizeof *tok->piece_len);
  tok->mask = ds_pow2_at_least (2 * json_object_size (vocab) + 64) - 1;
  tok->slots = calloc (tok->mask + 1, sizeof *tok->slots);
  if (!tok->piece || !tok->piece_len || !tok->slots)
    return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
  json_object_foreach ((json_t *) vocab, key, value)
  {
    int32_t id = (int32_t) json_integer_value (value);
    if (tok->piece[id])
      return ds_error_set (err, DS_ERR_FORMAT,
                           "%s: model.vocab: id %d is given to both \"%.80s\" and \"%.80s\"", path,
                           id, tok->piece[id], key);
    size_t n = strlen (key);
    if (!(tok->piece[id] = dup_n (key, n)))
      return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
    tok->piece_len[id] = (uint32_t) n;
    size_t i = ds_hash_bytes (key, n) & tok->mask;
    while (tok->slots[i])
      i = (i + 1) & tok->mask;
    tok->slots[i] = id + 1;
  }
  return DS_OK;
}

static DsStatus
load_merges (DsLlamaTokenizer *tok, const json_t *model, const char *path, DsError *err)
{
  const json_t *merges = json_object_get (model, "merges");
  if (!merges)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: missing model.merges", path);
  if (!json_is_array (merges))
    return ds_error_set (err, DS_ERR_FORMAT, "%s: model.merges: expected an array, got %s", path,
                         ds_json_type_name (merges));
  size_t n = json_array_size (merges);
  Str cat = { 0 };
  if (!ds_bpe_merges_init (&tok->merges, n))
    return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
  DsStatus st = DS_OK;
  for (size_t r = 0; r < n && st == DS_OK; r++)
    {
      const json_t *m = json_array_get (merges, r);
      const char *a = NULL, *b = NULL;
      size_t na = 0, nb = 0;
      if (json_is_string (m))
        {
          /* "a b": exactly one space, as the library's legacy format */
          const char *s = json_string_value (m);
          const char *sp = strchr (s, ' ');
          if (sp && !strchr (sp + 1, ' '))
            {
              a = s;
              na = (size_t) (sp - s);
              b = sp + 1;
              nb = strlen (b);
            }
        }
      else if (json_is_array (m) && json_array_size (m) == 2
               && json_is_string (json_array_get (m, 0)) && json_is_string (json_array_get (m, 1)))
        {
          a = json_string_value (json_array_get (m, 0));
          b = json_string_value (json_array_get (m, 1));
          na = strlen (a);
          nb = strlen (b);
        }
      if (!a)
        {
          st = ds_error_set (err, DS_ERR_FORMAT,
                             "%s: model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", path, r);
          break;
        }
      int32_t ia = vocab_find (tok, a, na), ib = vocab_find (tok, b, nb);
      cat.len = 0;
      if (!str_add (&cat, a, na) || !str_add (&cat, b, nb))
        {
          st = ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
          break;
        }
      int32_t ir = vocab_find (tok, cat.s, cat.len);
      if (ia < 0 || ib < 0 || ir < 0)
        {
          st = ds_error_set (err, DS_ERR_FORMAT,
                             "%s: model.merges[%zu]: \"%.80s\" is not in model.vocab", path, r,
                             ia < 0   ? a
                             : ib < 0 ? b
                                      : cat.s);
          break;
        }
      ds_bpe_merges_put (&tok->merges, (uint32_t) ia, (uint32_t) ib, (uint32_t) r, (uint32_t) ir);
    }
  free (cat.s);
  return st;
}

static DsStatus
load_model (DsLlamaTokenizer *tok, const json_t *root, const char *path, DsError *err)
{
  const json_t *model = json_object_get (root, "model");
  if (!json_is_object (model))
    return ds_error_set (err, DS_ERR_FORMAT, "%s: missing model", path);
  const json_t *type = json_object_get (model, "type");
  if (type && !(json_is_string (type) && strcmp (json_string_value (type), "BPE") == 0))
    return ds_error_set (err, DS_ERR_UNSUPPORTED, "%s: model.type \"%s\": only BPE is supported",
                         path, json_is_string (type) ? json_string_value (type) : "?");
  const char *bad_fields[] = { "continuing_subword_prefix", "end_of_word_suffix", "dropout" };
  for (int i = 0; i < 3; i++)
    {
      const json_t *v = json_object_get (model, bad_fields[i]);
      if (v && !json_is_null (v) && !(json_is_string (v) && !*json_string_value (v)))
        return ds_error_set (err, DS_ERR_UNSUPPORTED, "%s: model.%s is not supported", path,
                             bad_fields[i]);
    }
  DsStatus st = load_vocab (tok, model, path, err);
  if (st == DS_OK)
    st = load_merges (tok, model, path, err);
  if (st != DS_OK)
    return st;
  tok->byte_fallback = json_is_true (json_object_get (model, "byte_fallback"));
  tok->fuse_unk = json_is_true (json_object_get (model, "fuse_unk"));
  tok->ignore_merges = json_is_true (json_object_get (model, "ignore_merges"));
  tok->unk_id = -1;
  const json_t *unk = json_object_get (model, "unk_token");
  if (json_is_string (unk))
    {
      tok->unk_id = vocab_find (tok, json_string_value (unk), json_string_length (unk));
      if (tok->unk_id < 0)
        return ds_error_set (err, DS_ERR_FORMAT,
                             "%s: model.unk_token \"%.80s\" is not in model.vocab", path,
                             json_string_value (unk));
    }
  for (int b = 0; b < 256; b++)
    {
      char name[8];
      snprintf (name, sizeof name, "<0x%02X>", b);
      tok->byte_id[b] = vocab_find (tok, name, 6); /* -1 when absent */
    }
  return DS_OK;
}

/* How much the normalizer may lengthen text: LLaMA's Prepend("▁") and
 * Replace(" ", "▁") at most triple it, but a file whose steps multiply it
 * (sixteen Replace(" ", "    ")) would turn a short prompt into gigabytes. */
#define NORM_MAX_GROWTH 8
#define NORM_MAX_SLACK 4096

/* How much the decoder's Replace steps together may lengthen text: each can
 * make it at most max(1, |content| / |pattern|) times longer. LLaMA's only
 * one, Replace("▁", " "), shortens it; sixteen Replace(" ", "    ") would turn
 * one space into 4 GiB. */
#define DEC_MAX_GROWTH 8

/* The most characters a Strip after a Fuse may take at either end. It sees
 * the whole text, and a stream keeps in its window the ids whose text it may
 * still take, so each new id decodes them again: with a Strip of 100,000
 * leading spaces, a run of 8,000 spaces took 7 s to stream, growing with the
 * square of the run. LLaMA's takes one leading space. */
#define DEC_MAX_STRIP 16

typedef enum
{
  NORM_OK,
  NORM_NOMEM,
  NORM_TOO_LONG /* longer than NORM_MAX_GROWTH x + NORM_MAX_SLACK bytes */
} NormResult;

/* Writes `in` with every non-overlapping `pat` (not empty) replaced by `rep`
 * to out (cleared first), refusing to make out longer than `limit` bytes. A
 * normalizer's and a decoder's Replace step.
 *
 * *lead (when not NULL) follows where the text's first character went, as
 * the library's alignments do: it is the length of the leading bytes that
 * come from the start of the original text (offset 0), in and then out. The
 * bytes of a replacement take the origin of the last byte they replace
 * (Prepend's, that of the byte they go before), other bytes keep theirs.
 * Metaspace's "first" scheme puts its "▁" only in front of a piece that
 * begins with such bytes (so not where a Replace deleted the text's first
 * characters). */
static NormResult
replace_all (const Str *in, const char *pat, const char *rep, size_t limit, Str *out,
             size_t *lead)
{
  const size_t pl = strlen (pat), rl = strlen (rep);
  out->len = 0;
  if (!str_add (out, "", 0))
    return NORM_NOMEM;
  size_t new_lead = 0;
  for (size_t i = 0; i < in->len;)
    {
      if (out->len + rl > limit)
        return NORM_TOO_LONG;
      size_t next;
      if (i + pl <= in->len && memcmp (in->s + i, pat, pl) == 0)
        {
          if (!str_add (out, rep, rl))
            return NORM_NOMEM;
          next = i + pl;
        }
      else if (!str_add (out, in->s + i, 1))
        return NORM_NOMEM;
      else
        next = i + 1;
      if (lead && next <= *lead) /* what was just written comes from offset 0 */
        new_lead = out->len;
      i = next;
    }
  if (lead)
    *lead = new_lead;
  return NORM_OK;
}

/* Applies the normalizer to s[0..n) into out (cleared first). *lead (when
 * not NULL) is set to the length of out's leading bytes that come from s's
 * first character (replace_all). */
static NormResult
normalize (const DsLlamaTokenizer *tok, const char *s, size_t n, Str *out, Str *tmp, size_t *lead)
{
  const size_t limit = NORM_MAX_GROWTH * n + NORM_MAX_SLACK;
  out->len = 0;
  if (!str_add (out, s, n))
    return NORM_NOMEM;
  if (lead)
    {
      uint32_t cp;
      *lead = n ? (size_t) ds_utf8_decode (s, &cp) : 0;
    }
  for (int k = 0; k < tok->n_norm; k++)
    {
      const NormStep *st = &tok->norm[k];
      tmp->len = 0;
      if (!str_add (tmp, "", 0))
        return NORM_NOMEM;
      if (st->kind == NORM_PREPEND)
        {
          if (out->len == 0)
            continue;
          if (strlen (st->a) + out->len > limit)
            return NORM_TOO_LONG;
          if (!str_add (tmp, st->a, strlen (st->a)) || !str_add (tmp, out->s, out->len))
            return NORM_NOMEM;
          if (lead && *lead > 0) /* the new bytes take the origin of the first one */
            *lead += strlen (st->a);
        }
      else
        {
          NormResult r = replace_all (out, st->a, st->b, limit, tmp, lead);
          if (r != NORM_OK)
            return r;
        }
      Str t = *out;
      *out = *tmp;
      *tmp = t;
    }
  return NORM_OK;
}

static DsStatus
load_normalizer (DsLlamaTokenizer *tok, const json_t *root, const char *path, DsError *err)
{
  const json_t *norm = json_object_get (root, "normalizer");
  if (!norm || json_is_null (norm))
    return DS_OK;
  const json_t *steps = norm;
  size_t n = 1;
  const char *type = json_string_value (json_object_get (norm, "type"));
  if (type && strcmp (type, "Sequence") == 0)
    {
      steps = json_object_get (norm, "normalizers");
      if (!json_is_array (steps))
        return ds_error_set (err, DS_ERR_FORMAT, "%s: normalizer.normalizers: expected an array",
                             path);
      n = json_array_size (steps);
    }
  if (n > MAX_STEPS)
    return ds_error_set (err, DS_ERR_UNSUPPORTED, "%s: normalizer: more than %d steps", path,
                         MAX_STEPS);
  for (size_t i = 0; i < n; i++)
    {
      const json_t *s = steps == norm ? norm : json_array_get (steps, i);
      char where[64];
      snprintf (where, sizeof where, "normalizer.normalizers[%zu]", i);
      const char *w = steps == norm ? "normalizer" : where;
      const char *t = json_string_value (json_object_get (s, "type"));
      NormStep *st = &tok->norm[tok->n_norm];
      if (t && strcmp (t, "Prepend") == 0)
        {
          const char *p = get_string (s, "prepend", w, err);
          if (!p)
            return ds_error_prefix (err, DS_ERR_FORMAT, "%s", path);
          st->kind = NORM_PREPEND;
          st->a = dup_str (p);
        }
      else if (t && strcmp (t, "Replace") == 0)
        {
          const char *p = NULL, *c = NULL;
          DsStatus code = get_pattern (s, w, &p, err);
          if (code == DS_OK && !(c = get_string (s, "content", w, err)))
            code = DS_ERR_FORMAT;
          if (code != DS_OK)
            return ds_error_prefix (err, code, "%s", path);
          st->kind = NORM_REPLACE;
          st->a = dup_str (p);
          st->b = dup_str (c);
          if (!st->b)
            return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
        }
      else
        return ds_error_set (err, DS_ERR_UNSUPPORTED,
                             "%s: %s.type \"%s\": only Prepend and Replace are supported", path, w,
                             t ? t : "?");
      tok->n_norm++;
      if (!st->a)
        return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
    }
  return DS_OK;
}

static bool
parse_scheme (const json_t *obj, PrependScheme *scheme)
{
  const json_t *ps = json_object_get (obj, "prepend_scheme");
  if (json_is_string (ps))
    {
      const char *s = json_string_value (ps);
      if (strcmp (s, "always") == 0)
        *scheme = PREPEND_ALWAYS;
      else if (strcmp (s, "first") == 0)
        *scheme = PREPEND_FIRST;
      else if (strcmp (s, "never") == 0)
        *scheme = PREPEND_NEVER;
      else
        return false;
      return true;
    }
  /* the older form */
  const json_t *aps = json_object_get (obj, "add_prefix_space");
  *scheme = json_is_false (aps) ? PREPEND_NEVER : PREPEND_ALWAYS;
  return true;
}

/* The one-character replacement of a Metaspace step, into rep (NUL-terminated). */
static bool
parse_replacement (const json_t *obj, char rep[8])
{
  const json_t *r = json_object_get (obj, "replacement");
  if (!r)
    r = json_object_get (obj, "str_rep");
  if (!json_is_string (r))
    return false;
  const char *s = json_string_value (r);
  size_t n = json_string_length (r);
  uint32_t cp;
  if (n == 0 || n > 4 || (size_t) ds_utf8_decode (s, &cp) != n)
    return false;
  memcpy (rep, s, n + 1);
  return true;
}

static DsStatus
load_pre_tokenizer (DsLlamaTokenizer *tok, const json_t *root, const char *path, DsError *err)
{
  const json_t *pre = json_object_get (root, "pre_tokenizer");
  if (!pre || json_is_null (pre))
    return DS_OK;
  const char *t = json_string_value (json_object_get (pre, "type"));
  if (t && strcmp (t, "Sequence") == 0
      && json_array_size (json_object_get (pre, "pretokenizers")) == 1)
    {
      pre = json_array_get (json_object_get (pre, "pretokenizers"), 0);
      t = json_string_value (json_object_get (pre, "type"));
    }
  if (!t || strcmp (t, "Metaspace") != 0)
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "%s: pre_tokenizer.type \"%s\": only Metaspace is supported", path,
                         t ? t : "?");
  if (!parse_replacement (pre, tok->meta_rep))
    return ds_error_set (err, DS_ERR_FORMAT,
                         "%s: pre_tokenizer.replacement: expected a one-character string", path);
  if (!parse_scheme (pre, &tok->meta_scheme))
    return ds_error_set (err, DS_ERR_FORMAT,
                         "%s: pre_tokenizer.prepend_scheme: expected always, first or never", path);
  const json_t *split = json_object_get (pre, "split");
  tok->meta_split = !json_is_false (split); /* true when absent, as the library */
  tok->metaspace = true;
  return DS_OK;
}

static DsStatus
load_decoder (DsLlamaTokenizer *tok, const json_t *root, const char *path, DsError *err)
{
  const json_t *dec = json_object_get (root, "decoder");
  if (!dec || json_is_null (dec))
    return DS_OK;
  tok->has_decoder = true;
  const json_t *steps = dec;
  size_t n = 1;
  const char *type = json_string_value (json_object_get (dec, "type"));
  if (type && strcmp (type, "Sequence") == 0)
    {
      steps = json_object_get (dec, "decoders");
      if (!json_is_array (steps))
        return ds_error_set (err, DS_ERR_FORMAT, "%s: decoder.decoders: expected an array", path);
      n = json_array_size (steps);
    }
  if (n > MAX_STEPS)
    return ds_error_set (err, DS_ERR_UNSUPPORTED, "%s: decoder: more than %d steps", path,
                         MAX_STEPS);
  double growth = 1; /* the most the Replace steps so far lengthen a text by */
  bool fused = false;
  for (size_t i = 0; i < n; i++)
    {
      const json_t *s = steps == dec ? dec : json_array_get (steps, i);
      char w[64];
      snprintf (w, sizeof w, steps == dec ? "decoder" : "decoder.decoders[%zu]", i);
      const char *t = json_string_value (json_object_get (s, "type"));
      DecStep *st = &tok->dec[tok->n_dec];
      memset (st, 0, sizeof *st);
      if (t && strcmp (t, "Replace") == 0)
        {
          const char *p = NULL, *c = NULL;
          DsStatus code = get_pattern (s, w, &p, err);
          if (code == DS_OK && !(c = get_string (s, "content", w, err)))
            code = DS_ERR_FORMAT;
          if (code != DS_OK)
            return ds_error_prefix (err, code, "%s", path);
          /* after a Fuse the text is one piece, which a stream decodes a
           * window at a time: a pattern of two or more characters could
           * match across windows, and the stream would not give the text a
           * whole decode gives (LLaMA's Replace comes before the Fuse) */
          uint32_t cp;
          if (fused && (size_t) ds_utf8_decode (p, &cp) != strlen (p))
            return ds_error_set (err, DS_ERR_UNSUPPORTED,
                                 "%s: %s: a Replace after a Fuse whose pattern \"%.80s\" is more "
                                 "than one character is not supported (it could match across "
                                 "the pieces a stream decodes apart)",
                                 path, w, p);
          st->kind = DEC_REPLACE;
          st->a = dup_str (p);
          st->b = dup_str (c);
          if (!st->a || !st->b)
            {
              tok->n_dec++;
              return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
            }
          if (strlen (c) > strlen (p))
            growth *= (double) strlen (c) / (double) strlen (p);
          if (growth > DEC_MAX_GROWTH)
            {
              tok->n_dec++;
              return ds_error_set (err, DS_ERR_UNSUPPORTED,
                                   "%s: %s: the decoder's Replace steps up to here can make a "
                                   "text %.4g times longer; at most %d is supported",
                                   path, w, growth, DEC_MAX_GROWTH);
            }
        }
      else if (t && strcmp (t, "ByteFallback") == 0)
        {
          /* after a Fuse it reads the whole text as one piece */
          if (fused)
            return ds_error_set (err, DS_ERR_UNSUPPORTED,
                                 "%s: %s: a ByteFallback after a Fuse is not supported (it "
                                 "would read the whole text as one <0xNN> piece)",
                                 path, w);
          st->kind = DEC_BYTE_FALLBACK;
          tok->dec_byte_fallback = true;
        }
      else if (t && strcmp (t, "Fuse") == 0)
        {
          st->kind = DEC_FUSE;
          fused = true;
        }
      else if (t && strcmp (t, "Strip") == 0)
        {
          const char *c = get_string (s, "content", w, err);
          if (!c)
            return ds_error_prefix (err, DS_ERR_FORMAT, "%s", path);
          const json_t *a = json_object_get (s, "start"), *b = json_object_get (s, "stop");
          if (!*c || (size_t) ds_utf8_decode (c, &st->content) != strlen (c) || !json_is_integer (a)
              || !json_is_integer (b) || json_integer_value (a) < 0 || json_integer_value (b) < 0
              || json_integer_value (a) > 1 << 20 || json_integer_value (b) > 1 << 20)
            return ds_error_set (err, DS_ERR_FORMAT,
                                 "%s: %s: expected one content character and integer start, stop",
                                 path, w);
          st->kind = DEC_STRIP;
          st->start = (int) json_integer_value (a);
          st->stop = (int) json_integer_value (b);
          if (fused && (st->start > DEC_MAX_STRIP || st->stop > DEC_MAX_STRIP))
            return ds_error_set (err, DS_ERR_UNSUPPORTED,
                                 "%s: %s: a Strip after a Fuse that takes %d characters at the "
                                 "start and %d at the end is not supported (at most %d at each "
                                 "end: a stream decodes them again with each id)",
                                 path, w, st->start, st->stop, DEC_MAX_STRIP);
        }
      else if (t && strcmp (t, "Metaspace") == 0)
        {
          char rep[8];
          if (!parse_replacement (s, rep) || !parse_scheme (s, &st->scheme))
            return ds_error_set (err, DS_ERR_FORMAT,
                                 "%s: %s: expected a one-character replacement and a valid "
                                 "prepend_scheme",
                                 path, w);
          st->kind = DEC_METASPACE;
          if (!(st->a = dup_str (rep)))
            return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
        }
      else
        return ds_error_set (err, DS_ERR_UNSUPPORTED,
                             "%s: %s.type \"%s\": only Replace, ByteFallback, Fuse, Strip and "
                             "Metaspace are supported",
                             path, w, t ? t : "?");
      tok->n_dec++;
    }
  return DS_OK;
}

static int
cmp_str (const void *a, const void *b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* What decoding reads for each id, as `tokenizers` 0.23 has it: a
 * "normalized" added token decodes as its normalised content (with Prepend
 * ("▁"), "x" gives "▁x"; versions up to 0.22 gave the content), and
 * skip_special leaves out the ids whose text is the content of a special
 * added token, so a special "normalized" token whose normalised content
 * differs stays in. False when out of memory. */
static bool
set_decode_texts (DsLlamaTokenizer *tok)
{
  for (int32_t i = 0; i < tok->n_ids; i++)
    tok->id_text[i] = tok->id_name[i];
  const char **specials = malloc ((size_t) (tok->n_added ? tok->n_added : 1) * sizeof *specials);
  if (!specials)
    return false;
  size_t n_specials = 0;
  for (int i = 0; i < tok->n_added; i++)
    {
      const Added *t = &tok->added[i];
      tok->id_text[t->id] = t->normalized ? t->pattern : t->content; /* the last one wins */
      if (t->special)
        specials[n_specials++] = t->content;
    }
  qsort (specials, n_specials, sizeof *specials, cmp_str);
  for (int i = 0; i < tok->n_added; i++)
    {
      int32_t id = tok->added[i].id;
      tok->id_skip[id]
          = bsearch (&tok->id_text[id], specials, n_specials, sizeof *specials, cmp_str) != NULL;
    }
  /* a model piece equal to a special content under another id */
  for (size_t i = 0; i < n_specials; i++)
    {
      int32_t id = vocab_find (tok, specials[i], strlen (specials[i]));
      if (id >= 0 && strcmp (tok->id_text[id], specials[i]) == 0)
        tok->id_skip[id] = true;
    }
  free (specials);
  return true;
}

static DsStatus
load_added (DsLlamaTokenizer *tok, const json_t *root, const char *path, DsError *err)
{
  const json_t *list = json_object_get (root, "added_tokens");
  if (!list || json_is_null (list))
    list = NULL;
  else if (!json_is_array (list))
    return ds_error_set (err, DS_ERR_FORMAT, "%s: added_tokens: expected an array", path);
  size_t n = list ? json_array_size (list) : 0;
  int32_t max_id = tok->n_ids - 1;
  for (size_t i = 0; i < n; i++)
    {
      const json_t *a = json_array_get (list, i);
      const json_t *id = json_object_get (a, "id");
      const json_t *content = json_object_get (a, "content");
      if (!json_is_integer (id) || json_integer_value (id) < 0 || json_integer_value (id) >= MAX_IDS
          || !json_is_string (content))
        return ds_error_set (err, DS_ERR_FORMAT,
                             "%s: added_tokens[%zu]: expected an integer \"id\" in [0, %d) and a "
                             "string \"content\"",
                             path, i, MAX_IDS);
      if (json_is_true (json_object_get (a, "single_word")))
        return ds_error_set (err, DS_ERR_UNSUPPORTED,
                             "%s: added_tokens[%zu] (\"%.80s\"): single_word is not supported",
                             path, i, json_string_value (content));
      if (json_integer_value (id) > max_id)
        max_id = (int32_t) json_integer_value (id);
    }
  /* grow the id tables to cover the added ids */
  int32_t n_ids = max_id + 1;
  if (n_ids > tok->n_ids)
    {
      char **p = realloc (tok->piece, (size_t) n_ids * sizeof *p);
      if (p)
        tok->piece = p;
      uint32_t *pl = realloc (tok->piece_len, (size_t) n_ids * sizeof *pl);
      if (pl)
        tok->piece_len = pl;
      if (!p || !pl)
        return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
      for (int32_t i = tok->n_ids; i < n_ids; i++)
        {
          tok->piece[i] = NULL;
          tok->piece_len[i] = 0;
        }
      tok->n_ids = n_ids;
    }
  tok->id_name = calloc ((size_t) tok->n_ids, sizeof *tok->id_name);
  tok->id_text = calloc ((size_t) tok->n_ids, sizeof *tok->id_text);
  tok->id_special = calloc ((size_t) tok->n_ids, sizeof *tok->id_special);
  tok->id_skip = calloc ((size_t) tok->n_ids, sizeof *tok->id_skip);
  tok->id_byte = calloc ((size_t) tok->n_ids, sizeof *tok->id_byte);
  tok->added = calloc (n ? n : 1, sizeof *tok->added);
  if (!tok->id_name || !tok->id_text || !tok->id_special || !tok->id_skip || !tok->id_byte
      || !tok->added)
    return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
  for (int32_t i = 0; i < tok->n_ids; i++)
    tok->id_name[i] = tok->piece[i];
  Str norm = { 0 }, tmp = { 0 };
  for (size_t i = 0; i < n; i++)
    {
      const json_t *a = json_array_get (list, i);
      Added *t = &tok->added[tok->n_added++];
      t->id = (int32_t) json_integer_value (json_object_get (a, "id"));
      t->special = json_is_true (json_object_get (a, "special"));
      t->normalized = json_is_true (json_object_get (a, "normalized"));
      t->lstrip = json_is_true (json_object_get (a, "lstrip"));
      t->rstrip = json_is_true (json_object_get (a, "rstrip"));
      const json_t *content = json_object_get (a, "content");
      t->content = dup_n (json_string_value (content), json_string_length (content));
      bool ok = t->content != NULL;
      if (ok && t->normalized)
        {
          NormResult r = normalize (tok, t->content, strlen (t->content), &norm, &tmp, NULL);
          if (r == NORM_TOO_LONG)
            {
              free (norm.s);
              free (tmp.s);
              return ds_error_set (err, DS_ERR_UNSUPPORTED,
                                   "%s: added_tokens[%zu] (\"%.80s\"): the normalizer makes it "
                                   "more than %d times longer",
                                   path, i, t->content, NORM_MAX_GROWTH);
            }
          ok = r == NORM_OK;
          t->pattern = ok ? dup_n (norm.s, norm.len) : NULL;
        }
      else if (ok)
        t->pattern = dup_n (t->content, strlen (t->content));
      if (!ok || !t->pattern)
        {
          free (norm.s);
          free (tmp.s);
          return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
        }
      t->pattern_len = strlen (t->pattern);
      tok->id_name[t->id] = t->content;
      tok->id_special[t->id] = t->special;
    }
  free (norm.s);
  free (tmp.s);
  return set_decode_texts (tok) ? DS_OK
                                : ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
}

/* "<0xAB>" as the ByteFallback decoder reads it (6 bytes, two hex digits after
 * "<0x", which Rust's u8::from_str_radix also accepts as "+" and one digit). */
static int
byte_piece_value (const char *s)
{
  if (!s || strlen (s) != 6 || memcmp (s, "<0x", 3) != 0 || s[5] != '>')
    return -1;
  int v = 0;
  for (int i = 3; i < 5; i++)
    {
      char c = s[i];
      int d = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
              : (i == 3 && c == '+') ? 0
                                     : -1;
      if (d < 0)
        return -1;
      v = v * 16 + d;
    }
  return s[4] == '+' ? -1 : v;
}

/* The post-processor's ids before and after the text, then the config's say. */
static DsStatus
load_post_processor (DsLlamaTokenizer *tok, const json_t *root, const char *path, DsError *err)
{
  const json_t *pp = json_object_get (root, "post_processor");
  if (!pp || json_is_null (pp))
    return DS_OK;
  const char *t = json_string_value (json_object_get (pp, "type"));
  if (!t || strcmp (t, "TemplateProcessing") != 0)
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "%s: post_processor.type \"%s\": only TemplateProcessing is supported",
                         path, t ? t : "?");
  const json_t *single = json_object_get (pp, "single");
  const json_t *specials = json_object_get (pp, "special_tokens");
  if (!json_is_array (single))
    return ds_error_set (err, DS_ERR_FORMAT, "%s: post_processor.single: expected an array", path);
  bool seen_seq = false;
  for (size_t i = 0; i < json_array_size (single); i++)
    {
      const json_t *piece = json_array_get (single, i);
      const json_t *sp = json_object_get (piece, "SpecialToken");
      if (json_object_get (piece, "Sequence"))
        {
          if (seen_seq)
            return ds_error_set (err, DS_ERR_UNSUPPORTED,
                                 "%s: post_processor.single: more than one sequence", path);
          seen_seq = true;
          continue;
        }
      const char *name = json_string_value (json_object_get (sp, "id"));
      const json_t *ids = json_object_get (json_object_get (specials, name ? name : ""), "ids");
      if (!name || !json_is_array (ids))
        return ds_error_set (err, DS_ERR_FORMAT,
                             "%s: post_processor.single[%zu]: expected a SpecialToken named in "
                             "post_processor.special_tokens",
                             path, i);
      for (size_t k = 0; k < json_array_size (ids); k++)
        {
          json_int_t id = json_integer_value (json_array_get (ids, k));
          if (!json_is_integer (json_array_get (ids, k)) || id < 0 || id >= tok->n_ids)
            return ds_error_set (err, DS_ERR_FORMAT,
                                 "%s: post_processor.special_tokens[\"%.40s\"].ids[%zu]: id out "
                                 "of range [0, %d)",
                                 path, name, k, tok->n_ids);
          int32_t *dst = seen_seq ? tok->post_ids : tok->pre_ids;
          int *nd = seen_seq ? &tok->n_post : &tok->n_pre;
          if (*nd == MAX_TEMPLATE)
            return ds_error_set (err, DS_ERR_UNSUPPORTED,
                                 "%s: post_processor.single: more than %d special ids", path,
                                 MAX_TEMPLATE);
          dst[(*nd)++] = (int32_t) id;
        }
    }
  return DS_OK;
}

/* A token field of tokenizer_config.json: "text" or {"content": "text"}. */
static int32_t
config_token_id (const DsLlamaTokenizer *tok, const json_t *v)
{
  if (json_is_object (v))
    v = json_object_get (v, "content");
  if (!json_is_string (v))
    return -1;
  return ds_llama_tokenizer_token_id (tok, json_string_value (v));
}

static DsStatus
load_config (DsLlamaTokenizer *tok, const char *path, DsError *err)
{
  tok->legacy = true;
  tok->bos_id = ds_llama_tokenizer_token_id (tok, "<s>");
  tok->eos_id = ds_llama_tokenizer_token_id (tok, "</s>");
  if (!path)
    return DS_OK;
  json_t *cfg;
  DsStatus st = load_json (path, &cfg, err);
  if (st != DS_OK)
    return st;
  const json_t *legacy = json_object_get (cfg, "legacy");
  if (json_is_boolean (legacy))
    tok->legacy = json_is_true (legacy);
  const json_t *ct = json_object_get (cfg, "chat_template");
  tok->chat_template = (json_is_string (ct) && json_string_length (ct) > 0)
                       || (json_is_array (ct) && json_array_size (ct) > 0);
  const char *names[2] = { "bos_token", "eos_token" };
  int32_t *ids[2] = { &tok->bos_id, &tok->eos_id };
  for (int i = 0; i < 2 && st == DS_OK; i++)
    {
      const json_t *v = json_object_get (cfg, names[i]);
      if (!v || json_is_null (v))
        continue;
      *ids[i] = config_token_id (tok, v);
      if (*ids[i] < 0)
        st = ds_error_set (err, DS_ERR_FORMAT, "%s: %s: not a token of the tokenizer", path,
                           names[i]);
    }
  /* transformers rebuilds the template from add_bos_token / add_eos_token */
  const json_t *ab = json_object_get (cfg, "add_bos_token");
  const json_t *ae = json_object_get (cfg, "add_eos_token");
  if (st == DS_OK && (json_is_boolean (ab) || json_is_boolean (ae)))
    {
      bool add_bos = json_is_boolean (ab) ? json_is_true (ab) : tok->n_pre > 0;
      bool add_eos = json_is_boolean (ae) ? json_is_true (ae) : tok->n_post > 0;
      if ((add_bos && tok->bos_id < 0) || (add_eos && tok->eos_id < 0))
        st = ds_error_set (err, DS_ERR_FORMAT, "%s: add_%s_token is set but there is no %s token",
                           path, add_bos && tok->bos_id < 0 ? "bos" : "eos",
                           add_bos && tok->bos_id < 0 ? "bos" : "eos");
      else
        {
          tok->n_pre = 0;
          tok->n_post = 0;
          if (add_bos)
            tok->pre_ids[tok->n_pre++] = tok->bos_id;
          if (add_eos)
            tok->post_ids[tok->n_post++] = tok->eos_id;
        }
    }
  json_decref (cfg);
  return st;
}

DsStatus
ds_llama_tokenizer_open_files (const char *tokenizer_json_path, const char *config_path,
                               DsLlamaTokenizer **out, DsError *err)
{
  *out = NULL;
  json_t *root;
  DsStatus st = load_json (tokenizer_json_path, &root, err);
  if (st != DS_OK)
    return st;
  DsLlamaTokenizer *tok = calloc (1, sizeof *tok);
  if (!tok)
    {
      json_decref (root);
      return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", tokenizer_json_path);
    }
  const char *p = tokenizer_json_path;
  st = load_model (tok, root, p, err);
  if (st == DS_OK)
    st = load_normalizer (tok, root, p, err);
  if (st == DS_OK)
    st = load_pre_tokenizer (tok, root, p, err);
  if (st == DS_OK)
    st = load_added (tok, root, p, err);
  if (st == DS_OK)
    st = load_post_processor (tok, root, p, err);
  if (st == DS_OK)
    st = load_decoder (tok, root, p, err);
  json_decref (root);
  if (st == DS_OK)
    st = load_config (tok, config_path, err);
  if (st != DS_OK)
    {
      ds_llama_tokenizer_free (tok);
      return st;
    }
  for (int32_t i = 0; i < tok->n_ids; i++)
    tok->id_byte[i] = tok->dec_byte_fallback && byte_piece_value (tok->id_text[i]) >= 0;
  *out = tok;
  return DS_OK;
}

DsStatus
ds_llama_tokenizer_open (const char *dir, DsLlamaTokenizer **out, DsError *err)
{
  size_t n = strlen (dir) + 32;
  char *json_path = malloc (n), *cfg_path = malloc (n);
  if (!json_path || !cfg_path)
    {
      free (json_path);
      free (cfg_path);
      return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", dir);
    }
  snprintf (json_path, n, "%s/tokenizer.json", dir);
  snprintf (cfg_path, n, "%s/tokenizer_config.json", dir);
  FILE *f = fopen (cfg_path, "rb");
  if (f)
    fclose (f);
  DsStatus st = ds_llama_tokenizer_open_files (json_path, f ? cfg_path : NULL, out, err);
  free (json_path);
  free (cfg_path);
  return st;
}

void
ds_llama_tokenizer_free (DsLlamaTokenizer *tok)
{
  if (!tok)
    return;
  if (tok->piece)
    for (int32_t i = 0; i < tok->n_ids; i++)
      free (tok->piece[i]);
  free (tok->piece);
  free (tok->piece_len);
  free (tok->slots);
  ds_bpe_merges_free (&tok->merges);
  for (int i = 0; i < tok->n_added; i++)
    {
      free (tok->added[i].content);
      free (tok->added[i].pattern);
    }
  free (tok->added);
  free (tok->id_name);
  free (tok->id_text);
  free (tok->id_special);
  free (tok->id_skip);
  free (tok->id_byte);
  for (int i = 0; i < tok->n_norm; i++)
    {
      free (tok->norm[i].a);
      free (tok->norm[i].b);
    }
  for (int i = 0; i < tok->n_dec; i++)
    {
      free (tok->dec[i].a);
      free (tok->dec[i].b);
    }
  free (tok);
}

/* ---- queries ------------------------------------------------------------ */

int32_t
ds_llama_tokenizer_n_vocab (const DsLlamaTokenizer *tok)
{
  return tok->n_ids;
}

int32_t
ds_llama_tokenizer_token_id (const DsLlamaTokenizer *tok, const char *piece)
{
  for (int i = 0; i < tok->n_added; i++)
    if (strcmp (tok->added[i].content, piece) == 0)
      return tok->added[i].id;
  return vocab_find (tok, piece, strlen (piece));
}

const char *
ds_llama_tokenizer_id_to_piece (const DsLlamaTokenizer *tok, int32_t id)
{
  return id >= 0 && id < tok->n_ids ? tok->id_name[id] : NULL;
}

int32_t
ds_llama_tokenizer_bos_id (const DsLlamaTokenizer *tok)
{
  return tok->bos_id;
}

int32_t
ds_llama_tokenizer_eos_id (const DsLlamaTokenizer *tok)
{
  return tok->eos_id;
}

int32_t
ds_llama_tokenizer_unk_id (const DsLlamaTokenizer *tok)
{
  return tok->unk_id;
}

bool
ds_llama_tokenizer_is_special (const DsLlamaTokenizer *tok, int32_t id)
{
  return id >= 0 && id < tok->n_ids && tok->id_special[id];
}

bool
ds_llama_tokenizer_legacy (const DsLlamaTokenizer *tok)
{
  return tok->legacy;
}

bool
ds_llama_tokenizer_has_chat_template (const DsLlamaTokenizer *tok)
{
  return tok->chat_template;
}

/* ---- BPE ---------------------------------------------------------------- */

typedef struct
{
  int32_t id;
  int32_t prev, next; /* -1: none */
  uint32_t len;       /* bytes; 0: merged into its left neighbour */
} Sym;

typedef struct
{
  uint32_t rank, pos;
  int32_t result;
} HeapItem;

typedef struct
{
  Sym *sym;
  size_t n_sym, sym_cap;
  HeapItem *heap;
  size_t n_heap, heap_cap;
  Str norm, tmp, piece;
  IdVec *out;
  bool too_long; /* the normalizer grew a segment past its limit */
} Enc;

static bool
heap_less (const HeapItem *a, const HeapItem *b)
{
  return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static bool
heap_push (Enc *e, HeapItem it)
{
  if (e->n_heap == e->heap_cap)
    {
      size_t cap = e->heap_cap ? 2 * e->heap_cap : 64;
      HeapItem *h = realloc (e->heap, cap * sizeof *h);
      if (!h)
        return false;
      e->heap = h;
      e->heap_cap = cap;
    }
  size_t i = e->n_heap++;
  e->heap[i] = it;
  while (i > 0 && heap_less (&e->heap[i], &e->heap[(i - 1) / 2]))
    {
      HeapItem t = e->heap[i];
      e->heap[i] = e->heap[(i - 1) / 2];
      e->heap[(i - 1) / 2] = t;
      i = (i - 1) / 2;
    }
  return true;
}

static HeapItem
heap_pop (Enc *e)
{
  HeapItem top = e->heap[0];
  e->heap[0] = e->heap[--e->n_heap];
  for (size_t i = 0;;)
    {
      size_t l = 2 * i + 1, r = l + 1, m = i;
      if (l < e->n_heap && heap_less (&e->heap[l], &e->heap[m]))
        m = l;
      if (r < e->n_heap && heap_less (&e->heap[r], &e->heap[m]))
        m = r;
      if (m == i)
        break;
      HeapItem t = e->heap[i];
      e->heap[i] = e->heap[m];
      e->heap[m] = t;
      i = m;
    }
  return top;
}

static bool
sym_add (Enc *e, int32_t id, uint32_t len)
{
  if (e->n_sym == e->sym_cap)
    {
      size_t cap = e->sym_cap ? 2 * e->sym_cap : 64;
      Sym *s = realloc (e->sym, cap * sizeof *s);
      if (!s)
        return false;
      e->sym = s;
      e->sym_cap = cap;
    }
  int32_t n = (int32_t) e->n_sym;
  if (n > 0)
    e->sym[n - 1].next = n;
  e->sym[e->n_sym++] = (Sym){ .id = id, .prev = n - 1, .next = -1, .len = len };
  return true;
}

static bool
push_pair (Enc *e, const DsLlamaTokenizer *tok, int32_t pos)
{
  const Sym *s = &e->sym[pos];
  const DsBpeMerge *m
      = ds_bpe_merges_get (&tok->merges, (uint32_t) s->id, (uint32_t) e->sym[s->next].id);
  HeapItem it = { .rank = m ? m->rank : 0,
                  .pos = (uint32_t) pos,
                  .result = m ? (int32_t) m->result : 0 };
  return !m || heap_push (e, it);
}

/* Whether the vocabulary has a <0xNN> piece for each of the n bytes at c.
 * The library falls back to bytes only then; otherwise the character is
 * <unk> (or dropped when there is no unk_token), as without byte fallback. */
static bool
has_byte_pieces (const DsLlamaTokenizer *tok, const char *c, size_t n)
{
  for (size_t b = 0; b < n; b++)
    if (tok->byte_id[(unsigned char) c[b]] < 0)
      return false;
  return true;
}

/* One word (a pre-token) through the BPE model; its ids go to e->out. */
static bool
bpe_word (const DsLlamaTokenizer *tok, Enc *e, const char *w, size_t n)
{
  if (n == 0)
    return true;
  if (tok->ignore_merges)
    {
      int32_t id = vocab_find (tok, w, n);
      if (id >= 0)
        return ids_push (e->out, id);
    }
  e->n_sym = 0;
  int32_t unk = -1;
  uint32_t unk_len = 0;
  for (size_t i = 0; i < n;)
    {
      uint32_t cp;
      size_t k = (size_t) ds_utf8_decode (w + i, &cp);
      int32_t id = vocab_find (tok, w + i, k);
      if (id >= 0)
        {
          if (unk >= 0 && !sym_add (e, unk, unk_len))
            return false;
          unk = -1;
          if (!sym_add (e, id, (uint32_t) k))
            return false;
        }
      else if (tok->byte_fallback && has_byte_pieces (tok, w + i, k))
        {
          /* a pending <unk> stays pending past the bytes, as in the library */
          for (size_t b = 0; b < k; b++)
            if (!sym_add (e, tok->byte_id[(unsigned char) w[i + b]], 1))
              return false;
        }
      else if (tok->unk_id >= 0)
        {
          if (unk >= 0 && tok->fuse_unk)
            unk_len += (uint32_t) k;
          else
            {
              if (unk >= 0 && !sym_add (e, unk, unk_len))
                return false;
              unk = tok->unk_id;
              unk_len = (uint32_t) k;
            }
        }
      i += k;
    }
  if (unk >= 0 && !sym_add (e, unk, unk_len))
    return false;

  e->n_heap = 0;
  for (size_t i = 0; i + 1 < e->n_sym; i++)
    if (!push_pair (e, tok, (int32_t) i))
      return false;
  while (e->n_heap > 0)
    {
      HeapItem top = heap_pop (e);
      Sym *s = &e->sym[top.pos];
      if (s->len == 0 || s->next < 0)
        continue;
      Sym *right = &e->sym[s->next];
      const DsBpeMerge *m
          = ds_bpe_merges_get (&tok->merges, (uint32_t) s->id, (uint32_t) right->id);
      if (!m || (int32_t) m->result != top.result)
        continue; /* an expired entry */
      s->id = top.result;
      s->len += right->len;
      right->len = 0;
      s->next = right->next;
      if (s->next >= 0)
        e->sym[s->next].prev = (int32_t) top.pos;
      if (s->prev >= 0 && !push_pair (e, tok, s->prev))
        return false;
      if (s->next >= 0 && !push_pair (e, tok, (int32_t) top.pos))
        return false;
    }
  for (size_t i = 0; i < e->n_sym; i++)
    if (e->sym[i].len && !ids_push (e->out, e->sym[i].id))
      return false;
  return true;
}

/* Metaspace over one normalised piece; `at_start`: the piece begins the text. */
static bool
pre_tokenize (const DsLlamaTokenizer *tok, Enc *e, const char *s, size_t n, bool at_start)
{
  if (!tok->metaspace)
    return bpe_word (tok, e, s, n);
  Str *p = &e->piece;
  p->len = 0;
  const char *rep = tok->meta_rep;
  size_t rl = strlen (rep);
  if (!str_add (p, "", 0))
    return false;
  bool starts = n >= 1 && (s[0] == ' ' || (n >= rl && memcmp (s, rep, rl) == 0));
  if (!starts
      && (tok->meta_scheme == PREPEND_ALWAYS || (tok->meta_scheme == PREPEND_FIRST && at_start)))
    if (!str_add (p, rep, rl))
      return false;
  for (size_t i = 0; i < n; i++)
    if (!(s[i] == ' ' ? str_add (p, rep, rl) : str_add (p, s + i, 1)))
      return false;
  if (!tok->meta_split)
    return bpe_word (tok, e, p->s, p->len);
  /* split before each replacement character (MergedWithNext) */
  size_t start = 0;
  for (size_t i = 1; i + rl <= p->len; i++)
    if (memcmp (p->s + i, rep, rl) == 0)
      {
        if (i > start && !bpe_word (tok, e, p->s + start, i - start))
          return false;
        start = i;
      }
  return bpe_word (tok, e, p->s + start, p->len - start);
}

/* Leftmost-longest match of an added token of the given kind at or after
 * `from`; returns its index or -1, its start in *at. */
static int
find_added (const DsLlamaTokenizer *tok, bool normalized, const char *s, size_t n, size_t from,
            size_t *at)
{
  for (size_t i = from; i < n; i++)
    {
      int best = -1;
      for (int k = 0; k < tok->n_added; k++)
        {
          const Added *a = &tok->added[k];
          if (a->normalized != normalized || a->pattern_len == 0 || a->pattern_len > n - i
              || a->pattern[0] != s[i])
            continue;
          if (memcmp (s + i, a->pattern, a->pattern_len) == 0
              && (best < 0 || a->pattern_len > tok->added[best].pattern_len))
            best = k;
        }
      if (best >= 0)
        {
          *at = i;
          return best;
        }
    }
  return -1;
}

typedef bool (*SegmentFn) (const DsLlamaTokenizer *tok, Enc *e, const char *s, size_t n,
                           bool at_start);

/* Splits s at the added tokens of one kind as the library's find_matches
 * does, pushing the tokens' ids and handing the text between to `fn`; a
 * piece that starts before byte `lead` begins the text (comes from its
 * offset 0: normalize's lead). */
static bool
split_added (const DsLlamaTokenizer *tok, Enc *e, bool normalized, const char *s, size_t n,
             size_t lead, SegmentFn fn)
{
  size_t done = 0, from = 0, at;
  int k;
  while ((k = find_added (tok, normalized, s, n, from, &at)) >= 0)
    {
      const Added *a = &tok->added[k];
      size_t start = at, stop = at + a->pattern_len;
      from = stop; /* the search resumes after the match, not after rstrip */
      /* Both walks stay out of text already split off (before `done`), so
       * each byte is walked over once: the library walks lstrip back to the
       * last non-space and then keeps the later of that and `done`, the same
       * start; and a match inside an earlier rstrip's run of spaces (whose
       * end is `done`) would walk on to that same end. Without these bounds
       * the cost grew with the square of a run: a prompt of 40,000 newlines
       * took 3.3 s with a "\n" added token that strips (10,000: 0.28 s;
       * tests/test-llama-tokenizer.c, test_strip_runs). */
      if (a->lstrip)
        while (start > done)
          {
            size_t c = start - 1;
            while (c > done && ((unsigned char) s[c] & 0xC0) == 0x80)
              c--;
            uint32_t cp;
            ds_utf8_decode (s + c, &cp);
            if (!is_white_space (cp))
              break;
            start = c;
          }
      if (a->rstrip)
        for (stop = stop > done ? stop : done; stop < n;)
          {
            uint32_t cp;
            int len = ds_utf8_decode (s + stop, &cp);
            if (!is_white_space (cp))
              break;
            stop += (size_t) len;
          }
      if (a->lstrip && start < done)
        start = done;
      /* An lstrip match inside an earlier rstrip's run (stop <= done): the
       * library's split is empty and gives no token (test_strip_runs); where
       * it would be inverted, which the library refuses with a panic, there
       * is no token either, and `done` stays. */
      if (start >= stop)
        continue;
      if (done < start && !fn (tok, e, s + done, start - done, done < lead))
        return false;
      if (!ids_push (e->out, a->id))
        return false;
      done = stop;
    }
  return done >= n || fn (tok, e, s + done, n - done, done < lead);
}

static bool
segment_normalized (const DsLlamaTokenizer *tok, Enc *e, const char *s, size_t n, bool at_start)
{
  return pre_tokenize (tok, e, s, n, at_start);
}

/* A piece of raw text between non-normalized added tokens. */
static bool
segment_raw (const DsLlamaTokenizer *tok, Enc *e, const char *s, size_t n, bool at_start)
{
  /* e->norm stays untouched below: only pre_tokenize's e->piece is used */
  size_t lead;
  NormResult r = normalize (tok, s, n, &e->norm, &e->tmp, &lead);
  e->too_long = r == NORM_TOO_LONG;
  return r == NORM_OK
         && split_added (tok, e, true, e->norm.s, e->norm.len, at_start ? lead : 0,
                         segment_normalized);
}

DsStatus
ds_llama_tokenizer_encode (const DsLlamaTokenizer *tok, const char *text, bool add_special,
                           int32_t **ids, int64_t *n_ids, DsError *err)
{
  *ids = NULL;
  *n_ids = 0;
  size_t len = strlen (text);
  long bad = ds_utf8_find_invalid (text, len);
  if (bad >= 0)
    return ds_error_set (err, DS_ERR_INVALID, "prompt: invalid UTF-8 at byte offset %ld", bad);
  IdVec out = { 0 };
  Enc e = { .out = &out };
  bool ok = true;
  if (add_special)
    for (int i = 0; i < tok->n_pre && ok; i++)
      ok = ids_push (&out, tok->pre_ids[i]);
  ok = ok && split_added (tok, &e, false, text, len, 1, segment_raw);
  if (add_special)
    for (int i = 0; i < tok->n_post && ok; i++)
      ok = ids_push (&out, tok->post_ids[i]);
  if (ok && !out.v)
    ok = (out.v = malloc (sizeof *out.v)) != NULL; /* never NULL on success */
  free (e.sym);
  free (e.heap);
  free (e.norm.s);
  free (e.tmp.s);
  free (e.piece.s);
  if (!ok)
    {
      free (out.v);
      if (e.too_long)
        return ds_error_set (err, DS_ERR_UNSUPPORTED,
                             "prompt: the tokenizer's normalizer makes the text more than %d "
                             "times longer (tokenizer.json's normalizer steps keep growing it)",
                             NORM_MAX_GROWTH);
      return ds_error_set (err, DS_ERR_NOMEM, "prompt: out of memory while tokenizing");
    }
  *ids = out.v;
  *n_ids = out.n;
  return DS_OK;
}

/* ---- decoding ----------------------------------------------------------- */

typedef struct
{
  Str *t;
  size_t n, cap;
} Toks;

static bool
toks_add (Toks *ts, const char *s, size_t n)
{
  if (ts->n == ts->cap)
    {
      size_t cap = ts->cap ? 2 * ts->cap : 32;
      Str *nt = realloc (ts->t, cap * sizeof *nt);
      if (!nt)
        return false;
      ts->t = nt;
      ts->cap = cap;
    }
  ts->t[ts->n] = (Str){ 0 };
  return str_add (&ts->t[ts->n++], s, n);
}

static void
toks_free (Toks *ts)
{
  for (size_t i = 0; i < ts->n; i++)
    free (ts->t[i].s);
  free (ts->t);
  *ts = (Toks){ 0 };
}

static bool
dec_replace (Str *t, const char *pat, const char *rep, Str *tmp)
{
  /* load_decoder bounds what the steps together can grow a text by */
  if (replace_all (t, pat, rep, SIZE_MAX, tmp, NULL) != NORM_OK)
    return false;
  Str x = *t;
  *t = *tmp;
  *tmp = x;
  return true;
}

static bool
flush_bytes (Toks *out, const char *bytes, size_t n)
{
  if (n == 0)
    return true;
  if (ds_utf8_find_invalid (bytes, n) < 0)
    return toks_add (out, bytes, n);
  for (size_t i = 0; i < n; i++)
    if (!toks_add (out, "\xef\xbf\xbd", 3)) /* U+FFFD per byte, as the library */
      return false;
  return true;
}

static bool
dec_byte_fallback (Toks *ts)
{
  Toks out = { 0 };
  Str run = { 0 };
  bool ok = str_add (&run, "", 0);
  for (size_t i = 0; i < ts->n && ok; i++)
    {
      int v = byte_piece_value (ts->t[i].s);
      if (v >= 0)
        {
          char c = (char) v;
          ok = str_add (&run, &c, 1);
          continue;
        }
      ok = flush_bytes (&out, run.s, run.len) && toks_add (&out, ts->t[i].s, ts->t[i].len);
      run.len = 0;
    }
  ok = ok && flush_bytes (&out, run.s, run.len);
  free (run.s);
  toks_free (ts);
  *ts = out;
  return ok;
}

static bool
dec_fuse (Toks *ts)
{
  Str all = { 0 };
  bool ok = str_add (&all, "", 0);
  for (size_t i = 0; i < ts->n && ok; i++)
    ok = str_add (&all, ts->t[i].s, ts->t[i].len);
  for (size_t i = 0; i < ts->n; i++)
    free (ts->t[i].s);
  ts->n = 0;
  if (!ok)
    {
      free (all.s);
      return false;
    }
  if (ts->cap == 0)
    {
      bool r = toks_add (ts, all.s, all.len);
      free (all.s);
      return r;
    }
  ts->t[ts->n++] = all;
  return true;
}

/* The end of s[a..b) once up to `stop` trailing characters c are removed. */
static size_t
strip_tail (const char *s, size_t a, size_t b, uint32_t c, int stop)
{
  for (int i = 0; i < stop && b > a; i++)
    {
      size_t p = b - 1;
      while (p > a && ((unsigned char) s[p] & 0xC0) == 0x80)
        p--;
      uint32_t cp;
      ds_utf8_decode (s + p, &cp);
      if (cp != c)
        break;
      b = p;
    }
  return b;
}

static void
dec_strip (Str *t, uint32_t c, int start, int stop)
{
  size_t a = 0, b = t->len;
  for (int i = 0; i < start && a < b; i++)
    {
      uint32_t cp;
      int k = ds_utf8_decode (t->s + a, &cp);
      if (cp != c)
        break;
      a += (size_t) k;
    }
  b = strip_tail (t->s, a, b, c, stop);
  memmove (t->s, t->s + a, b - a);
  t->len = b - a;
  t->s[t->len] = '\0';
}

/* Metaspace's decoder: the replacement becomes a space, except in the first
 * token (all of its replacements dropped) unless the scheme is "never".
 * has_first: ts->t[0] is the text's first token. */
static bool
dec_metaspace (Toks *ts, const DecStep *st, bool has_first, Str *tmp)
{
  for (size_t i = 0; i < ts->n; i++)
    if (!dec_replace (&ts->t[i], st->a,
                      i == 0 && has_first && st->scheme != PREPEND_NEVER ? "" : " ", tmp))
      return false;
  return true;
}

/* How decode_ids's ids stand in the text (a stream's window is a part of it). */
enum
{
  DEC_FIRST = 1,       /* the first id begins the text: a Metaspace step before
                        * the Fuse treats its piece apart */
  DEC_STRIP_START = 2, /* the ids begin the text: a Strip after the Fuse takes
                        * its leading characters */
  DEC_STRIP_END = 4,   /* they end it: such a Strip takes its trailing ones */
  DEC_WHOLE = DEC_FIRST | DEC_STRIP_START | DEC_STRIP_END
};

/* Decodes ids (all in range) into *out. A Strip step works on each piece;
 * after a Fuse there is one piece, the whole text, of which a stream's window
 * holds a part. `where`: DEC_* flags; a stream's later windows begin mid-text
 * (no DEC_FIRST, and their Strips keep leading characters) and may be
 * followed by more text (their Strips keep trailing ones). *lead_seen (unless
 * NULL): whether a Strip after the Fuse that takes leading characters got a
 * non-empty text, that is, whether these ids, at a text's start, can change
 * what such a Strip takes from the ids that follow them. */
static bool
decode_ids (const DsLlamaTokenizer *tok, const int32_t *ids, int64_t n, bool skip_special,
            unsigned where, Str *out, bool *lead_seen)
{
  if (lead_seen)
    *lead_seen = false;
  bool fused = false;
  Toks ts = { 0 };
  Str tmp = { 0 };
  bool ok = true;
  for (int64_t i = 0; i < n && ok; i++)
    {
      const char *s = tok->id_text[ids[i]];
      if (skip_special && tok->id_skip[ids[i]])
        continue;
      ok = toks_add (&ts, s, strlen (s));
    }
  for (int k = 0; k < tok->n_dec && ok; k++)
    {
      const DecStep *st = &tok->dec[k];
      switch (st->kind)
        {
        case DEC_REPLACE:
          for (size_t i = 0; i < ts.n && ok; i++)
            ok = dec_replace (&ts.t[i], st->a, st->b, &tmp);
          break;
        case DEC_BYTE_FALLBACK:
          ok = dec_byte_fallback (&ts);
          break;
        case DEC_FUSE:
          ok = dec_fuse (&ts);
          fused = true;
          break;
        case DEC_STRIP:
          if (lead_seen && fused && st->start > 0 && ts.n > 0 && ts.t[0].len > 0)
            *lead_seen = true;
          for (size_t i = 0; i < ts.n; i++)
            dec_strip (&ts.t[i], st->content,
                       (where & DEC_STRIP_START) || !fused ? st->start : 0,
                       (where & DEC_STRIP_END) || !fused ? st->stop : 0);
          break;
        case DEC_METASPACE:
          /* after the Fuse its one piece is the text's first */
          ok = dec_metaspace (&ts, st, fused || (where & DEC_FIRST), &tmp);
          break;
        }
    }
  out->len = 0;
  ok = ok && str_add (out, "", 0);
  for (size_t i = 0; i < ts.n && ok; i++)
    {
      /* without a decoder the library joins the pieces with spaces */
      if (i > 0 && !tok->has_decoder)
        ok = str_add (out, " ", 1);
      /* a <0x00> piece decodes to NUL, which a C string cannot hold */
      for (size_t a = 0, b; a < ts.t[i].len && ok; a = b + 1)
        {
          for (b = a; b < ts.t[i].len && ts.t[i].s[b]; b++)
            ;
          ok = str_add (out, ts.t[i].s + a, b - a)
               && (b == ts.t[i].len || str_add (out, "\xef\xbf\xbd", 3));
        }
    }
  toks_free (&ts);
  free (tmp.s);
  return ok;
}

static DsStatus
check_ids (const DsLlamaTokenizer *tok, const int32_t *ids, int64_t n, DsError *err)
{
  for (int64_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= tok->n_ids || !tok->id_text[ids[i]])
      return ds_error_set (err, DS_ERR_INVALID,
                           "ids[%lld] = %d: not a token id (the vocabulary has ids 0 .. %d)",
                           (long long) i, ids[i], tok->n_ids - 1);
  return DS_OK;
}

DsStatus
ds_llama_tokenizer_decode (const DsLlamaTokenizer *tok, const int32_t *ids, int64_t n_ids,
                           bool skip_special, char **text, DsError *err)
{
  *text = NULL;
  DsStatus st = check_ids (tok, ids, n_ids, err);
  if (st != DS_OK)
    return st;
  Str out = { 0 };
  if (!decode_ids (tok, ids, n_ids, skip_special, DEC_WHOLE, &out, NULL))
    {
      free (out.s);
      return ds_error_set (err, DS_ERR_NOMEM, "decode: out of memory");
    }
  *text = out.s;
  return DS_OK;
}

/* ---- streaming ---------------------------------------------------------- */

/* The window is ids[0..n): the ids whose text was returned last time (their
 * decode is `prefix`) and those pushed since. Decoding the window with the
 * one step of context and taking what follows `prefix` gives the new text, as
 * the library's DecodeStream does; unlike it, a run of <0xNN> pieces is held
 * whole until it ends, since a later byte can turn the whole run into U+FFFDs. */
struct DsLlamaDecodeStream
{
  const DsLlamaTokenizer *tok;
  bool skip_special;
  IdVec ids;
  int64_t read; /* ids[0..read) are covered by prefix */
  Str prefix;
  Str text;
  Str ended; /* scratch: the window decoded as the text's end (held_tail) */
  /* The window has left the text's first id: it decodes without a Strip's
   * start. With such a Strip (after a Fuse), until some text has come out,
   * the window stays at the text's first id, since the Strip may still
   * remove what later ids decode to (see stream_emit). */
  bool mid_text;
  /* ids.v[0] is the text's first id (DEC_FIRST); once the window moves past
   * it, it stays false */
  bool first;
};

/* The DEC_* flags for decoding s's window; end: the text ends there. */
static unsigned
window_where (const DsLlamaDecodeStream *s, bool end)
{
  return (s->first ? DEC_FIRST : 0) | (s->mid_text ? 0 : DEC_STRIP_START)
         | (end ? DEC_STRIP_END : 0);
}

/* Whether the decoder has a Strip that takes leading (or, `trailing`,
 * trailing) characters after a Fuse, where it sees the whole text. */
static bool
strips_whole_text (const DsLlamaTokenizer *tok, bool trailing)
{
  bool fused = false;
  for (int k = 0; k < tok->n_dec; k++)
    if (tok->dec[k].kind == DEC_FUSE)
      fused = true;
    else if (tok->dec[k].kind == DEC_STRIP && fused
             && (trailing ? tok->dec[k].stop : tok->dec[k].start) > 0)
      return true;
  return false;
}

DsStatus
ds_llama_decode_stream_new (const DsLlamaTokenizer *tok, bool skip_special,
                            DsLlamaDecodeStream **out, DsError *err)
{
  *out = calloc (1, sizeof **out);
  if (!*out || !str_add (&(*out)->prefix, "", 0))
    {
      free (*out);
      *out = NULL;
      return ds_error_set (err, DS_ERR_NOMEM, "decode stream: out of memory");
    }
  (*out)->tok = tok;
  (*out)->skip_special = skip_special;
  (*out)->first = true;
  return DS_OK;
}

void
ds_llama_decode_stream_free (DsLlamaDecodeStream *s)
{
  if (!s)
    return;
  free (s->ids.v);
  free (s->prefix.s);
  free (s->text.s);
  free (s->ended.s);
  free (s);
}

/* The bytes at the end of `text` (ids decoded as if more text followed)
 * past `ended` (the same ids decoded as the text's end), which the stream
 * must hold back: from where the two part, back to a character's start, but
 * not before `floor`. */
static size_t
tail_past (const Str *text, const Str *ended, size_t floor)
{
  size_t k = 0;
  while (k < ended->len && k < text->len && ended->s[k] == text->s[k])
    k++;
  if (k < floor) /* not expected: nothing more comes out */
    k = floor;
  while (k > floor && k < text->len && ((unsigned char) text->s[k] & 0xC0) == 0x80)
    k--;
  return text->len - k;
}

/* *held: the bytes at the end of s->text (the window decoded as if more text
 * followed) that such a Strip would remove were the text to end there, as
 * the steps after it render them; the stream holds them back until more
 * text follows or it finishes. The window decoded as the end is a prefix of
 * s->text (the steps after a Fuse work on each character, load_decoder),
 * and only that much is sure to stay whatever follows. False when out of
 * memory. */
static bool
held_tail (DsLlamaDecodeStream *s, size_t *held)
{
  *held = 0;
  if (!strips_whole_text (s->tok, true))
    return true;
  if (!decode_ids (s->tok, s->ids.v, s->ids.n, s->skip_special, window_where (s, true), &s->ended,
                   NULL))
    return false;
  *held = tail_past (&s->text, &s->ended, s->prefix.len);
  return true;
}

/* With bytes held back (held_tail), a window whose ids all stayed would
 * make each id decode the whole run again: a run of spaces with a Strip of
 * one trailing space grew the window by one id per space, quadratic in the
 * run (8,000 spaces took 7 s). Instead the window starts at a late id: some
 * ids[j..n) that hold back the same `held` bytes, the same text, so the
 * Strip sees in them all it would remove at the text's end; ids[j] may not
 * continue a <0xNN> run. Tried at j = n-1, n-2, n-4, ..., n-32 (a Strip
 * takes at most DEC_MAX_STRIP characters, so a few ids hold them unless ids
 * that decode to nothing come between; then the window stays whole).
 * Returns that j in *start, or 0; false when out of memory. `scratch` and
 * s->ended are work buffers. */
enum
{
  TRIM_MAX = 32
};

static bool
held_window_start (DsLlamaDecodeStream *s, size_t held, Str *scratch, int64_t *start)
{
  *start = 0;
  const DsLlamaTokenizer *tok = s->tok;
  const int64_t n = s->ids.n;
  for (int64_t back = 1, j; back <= TRIM_MAX && (j = n - back) > 0; back *= 2)
    {
      if (tok->id_byte[s->ids.v[j]] && tok->id_byte[s->ids.v[j - 1]])
        continue;
      if (!decode_ids (tok, s->ids.v + j, n - j, s->skip_special, 0, scratch, NULL)
          || !decode_ids (tok, s->ids.v + j, n - j, s->skip_special, DEC_STRIP_END, &s->ended,
                          NULL))
        return false;
      if (scratch->len < held
          || memcmp (scratch->s + scratch->len - held, s->text.s + s->text.len - held, held) != 0)
        continue;
      if (tail_past (scratch, &s->ended, 0) == held)
        {
          *start = j;
          return true;
        }
    }
  return true;
}

/* Emits the window's new text and moves the window on; `end`: the text ends
 * here (a Strip's trailing characters go). */
static DsStatus
stream_emit (DsLlamaDecodeStream *s, bool end, char **text, DsError *err)
{
  const DsLlamaTokenizer *tok = s->tok;
  if (!decode_ids (tok, s->ids.v, s->ids.n, s->skip_special, window_where (s, end), &s->text,
                   NULL))
    return ds_error_set (err, DS_ERR_NOMEM, "decode stream: out of memory");
  if (s->text.len < s->prefix.len || memcmp (s->text.s, s->prefix.s, s->prefix.len) != 0)
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "decode stream: the decoder changed text it had already produced");
  size_t held = 0;
  if (!end && !held_tail (s, &held))
    return ds_error_set (err, DS_ERR_NOMEM, "decode stream: out of memory");
  if (!(*text = dup_n (s->text.s + s->prefix.len, s->text.len - held - s->prefix.len)))
    return ds_error_set (err, DS_ERR_NOMEM, "decode stream: out of memory");
  if (held)
    {
      /* what came out is the window's new prefix; the window starts at the
       * last id it can (a leading Strip has had its say: some text is
       * there, the held bytes at least) */
      int64_t j = 0;
      if (!held_window_start (s, held, &s->prefix, &j))
        {
          free (*text);
          *text = NULL;
          return ds_error_set (err, DS_ERR_NOMEM, "decode stream: out of memory");
        }
      if (j > 0)
        {
          /* s->prefix holds the decode of ids[j..n) (held_window_start) */
          s->ids.n -= j;
          memmove (s->ids.v, s->ids.v + j, (size_t) s->ids.n * sizeof *s->ids.v);
          s->first = false;
          s->mid_text = true;
          s->read = s->ids.n;
          s->prefix.len -= held;
          return DS_OK;
        }
      s->prefix.len = 0;
      if (!str_add (&s->prefix, s->text.s, s->text.len - held))
        {
          free (*text);
          *text = NULL;
          return ds_error_set (err, DS_ERR_NOMEM, "decode stream: out of memory");
        }
      return DS_OK;
    }
  /* the new window: the ids just decoded. While nothing has come out and a
   * Strip takes the text's leading characters, the window stays at the
   * text's first id, unless those ids can go: else each id would decode the
   * whole start again, quadratic in a long run of ids that decode to nothing.
   * They can go when they give every such Strip (after the Fuse) an empty
   * text (decode_ids's lead_seen), and so decode to nothing even without its
   * start. Every step before the Fuse works on each piece alone (a
   * Metaspace treats the text's first apart: the ids left are decoded
   * without DEC_FIRST from then on, as in the whole text; a <0xNN> run ends
   * before the window's end), and the steps after it but those Strips on
   * each character alone (load_decoder takes no others there), so these ids
   * add nothing to what any such Strip sees, nor to what comes out, whatever
   * follows. (Decoding to nothing is not enough: a later step may delete
   * what a Strip saw, as Replace "y" -> "" after a Strip of leading spaces
   * does with "y a", whose " a" keeps its space. Such runs stay quadratic;
   * no LLaMA file has one.) */
  if (s->read == s->ids.n || (!s->mid_text && s->text.len == 0 && strips_whole_text (tok, false)))
    {
      if (s->read < s->ids.n)
        {
          /* s->prefix is scratch here: it is replaced just below */
          bool lead_seen;
          if (!decode_ids (tok, s->ids.v, s->ids.n, s->skip_special,
                           window_where (s, false) & DEC_FIRST, &s->prefix, &lead_seen))
            {
              free (*text);
              *text = NULL;
              return ds_error_set (err, DS_ERR_NOMEM, "decode stream: out of memory");
            }
          if (s->prefix.len == 0 && !lead_seen)
            {
              s->ids.n = 0;
              s->first = false;
            }
        }
      s->read = s->ids.n;
      Str t = s->prefix;
      s->prefix = s->text;
      s->text = t;
      return DS_OK;
    }
  int64_t keep = s->ids.n - s->read;
  memmove (s->ids.v, s->ids.v + s->read, (size_t) keep * sizeof *s->ids.v);
  s->first = s->first && s->read == 0;
  s->ids.n = keep;
  s->read = keep;
  s->mid_text = true;
  if (!decode_ids (tok, s->ids.v, s->ids.n, s->skip_special, window_where (s, false), &s->prefix,
                   NULL))
    {
      free (*text);
      *text = NULL;
      return ds_error_set (err, DS_ERR_NOMEM, "decode stream: out of memory");
    }
  return DS_OK;
}

DsStatus
ds_llama_decode_stream_push (DsLlamaDecodeStream *s, int32_t id, char **text, DsError *err)
{
  *text = NULL;
  DsStatus st = check_ids (s->tok, &id, 1, err);
  if (st != DS_OK)
    return st;
  /* an id that skip_special leaves out stays out of the window: it changes
   * nothing, and a long run of them would make each id decode the whole run
   * again */
  bool skipped = s->skip_special && s->tok->id_skip[id];
  if (!skipped && !ids_push (&s->ids, id))
    return ds_error_set (err, DS_ERR_NOMEM, "decode stream: out of memory");
  /* text is held back while the last id is a byte piece */
  if (skipped || s->tok->id_byte[id])
    return (*text = dup_n ("", 0))
               ? DS_OK
               : ds_error_set (err, DS_ERR_NOMEM, "decode stream: out of memory");
  return stream_emit (s, false, text, err);
}

DsStatus
ds_llama_decode_stream_finish (DsLlamaDecodeStream *s, char **text, DsError *err)
{
  *text = NULL;
  return stream_emit (s, true, text, err);
}

/* ---- the LLaVA prompt --------------------------------------------------- */

DsStatus
ds_llava_prompt (const char *system, const char *question, bool hf_style, char **out, DsError *err)
{
  *out = NULL;
  if (!hf_style && !system)
    system = DS_LLAVA_SYSTEM_VICUNA_V1;
  if (ds_utf8_find_invalid (question, strlen (question)) >= 0
      || (system && ds_utf8_find_invalid (system, strlen (system)) >= 0))
    return ds_error_set (err, DS_ERR_INVALID, "prompt: the %s is not valid UTF-8",
                         ds_utf8_find_invalid (question, strlen (question)) >= 0 ? "question"
                                                                                 : "system line");
  Str p = { 0 };
  bool ok = str_add (&p, "", 0);
  if (system)
    ok = ok && str_add (&p, system, strlen (system)) && str_add (&p, " ", 1);
  ok = ok && str_add (&p, "USER: <image>\n", 14) && str_add (&p, question, strlen (question))
       && str_add (&p, " ASSISTANT:", 11);
  if (!ok)
    {
      free (p.s);
      return ds_error_set (err, DS_ERR_NOMEM, "prompt: out of memory");
    }
  *out = p.s;
  return DS_OK;
}
