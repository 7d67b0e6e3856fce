/* ds-text-fix.c: ftfy.fix_text's steps for typed text (see ds-text-fix.h).
 *
 * Each step is a pass from one code-point buffer into another, as ftfy runs
 * one Python function after another; the tables come from ftfy itself
 * (ds-text-fix-tables.inc, made by tests/reference/gen_text_fix_tables.py).
 */
#include "ds-text-fix.h"

#include <stdlib.h>
#include <string.h>

#include "ds-text-fix-tables.inc"

/* ftfy repeats its steps until the text stops changing; each pass either
 * shortens the text (entities) or leaves it as it is, so a few passes suffice.
 * The cap only bounds work on input built to be pathological. */
#define MAX_PASSES 64

bool
ds_text_is_py_space (uint32_t cp)
{
  /* str.isspace: the tokenizer's whitespace class plus the controls Python
   * also counts (gen_text_fix_tables.py checks this is exact). */
  return ds_uc_is_space (cp) || cp == 0x0B || cp == 0x0C || (cp >= 0x1C && cp <= 0x1F)
         || cp == 0x85;
}

static bool
push_n (DsUcBuf *out, const uint32_t *cps, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (!ds_uc_buf_push (out, cps[i]))
      return false;
  return true;
}

/* ---- HTML entities (fixes.unescape_html) ------------------------------------ */

static bool
is_alnum (uint32_t c)
{
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
entity_cmp (const void *key, const void *elem)
{
  return strcmp (key, ((const DsTfEntity *) elem)->name);
}

static int
u32_cmp (const void *a, const void *b)
{
  uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
  return x < y ? -1 : x > y;
}

static int
pair_cmp (const void *key, const void *elem)
{
  uint32_t x = *(const uint32_t *) key, y = ((const DsTfPair *) elem)->from;
  return x < y ? -1 : x > y;
}

/* html.unescape of "&#<run>;" when it decodes the whole reference: *n_out is 0
 * or 1 and the result true; false when html.unescape would leave part of it
 * (a run that is not all digits, or "x" and all hex digits) or its result
 * holds a ";", which ftfy then keeps as written. */
static bool
numeric_reference (const uint32_t *run, size_t len, uint32_t *out, size_t *n_out)
{
  bool hex = run[0] == 'x' || run[0] == 'X';
  size_t i = hex ? 1 : 0;
  if (i == len)
    return false;
  uint64_t num = 0;
  for (; i < len; i++)
    {
      uint32_t c = run[i], d;
      if (c >= '0' && c <= '9')
        d = c - '0';
      else if (hex && c >= 'a' && c <= 'f')
        d = c - 'a' + 10;
      else if (hex && c >= 'A' && c <= 'F')
        d = c - 'A' + 10;
      else
        return false;
      num = num * (hex ? 16 : 10) + d;
      if (num > 0x110000)
        num = 0x110000; /* anything past U+10FFFF reads the same */
    }
  uint32_t v = (uint32_t) num;
  const DsTfPair *fix = bsearch (&v, ds_tf_charref_fix, sizeof ds_tf_charref_fix / sizeof *fix,
                                 sizeof *fix, pair_cmp);
  *n_out = 1;
  if (v == ';')
    return false; /* ftfy keeps a reference whose result holds ";" as written */
  if (fix)
    *out = fix->to;
  else if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
    *out = 0xFFFD;
  else if (bsearch (&v, ds_tf_charref_drop, sizeof ds_tf_charref_drop / sizeof (uint32_t),
                    sizeof (uint32_t), u32_cmp))
    *n_out = 0;
  else
    *out = v;
  return true;
}

/* ftfy's pattern &#?[0-9A-Za-z]{1,24}; replaced left to right, not rescanned. */
static bool
unescape_html (const uint32_t *s, size_t n, DsUcBuf *out)
{
  for (size_t i = 0; i < n;)
    {
      if (s[i] == '&')
        {
          size_t j = i + 1;
          bool numeric = j < n && s[j] == '#';
          if (numeric)
            j++;
          size_t k = j;
          while (k < n && is_alnum (s[k]) && k - j < 25)
            k++;
          size_t len = k - j;
          if (len >= 1 && len <= 24 && k < n && s[k] == ';')
            {
              if (numeric)
                {
                  uint32_t cp;
                  size_t m;
                  if (numeric_reference (s + j, len, &cp, &m))
                    {
                      if (!push_n (out, &cp, m))
                        return false;
                      i = k + 1;
                      continue;
                    }
                }
              else
                {
                  char name[32]; /* len <= 24 */
                  for (size_t q = 0; q < len; q++)
                    name[q] = (char) s[j + q];
                  name[len] = '\0';
                  const DsTfEntity *e
                      = bsearch (name, ds_tf_entities,
                                 sizeof ds_tf_entities / sizeof *ds_tf_entities, sizeof *e,
                                 entity_cmp);
                  if (e)
                    {
                      if (!push_n (out, e->cps, (size_t) e->n))
                        return false;
                      i = k + 1;
                      continue;
                    }
                }
              /* no match for this "&...;": keep it whole and go on after it,
               * as re.sub does after a match it leaves unchanged */
              if (!push_n (out, s + i, k + 1 - i))
                return false;
              i = k + 1;
              continue;
            }
        }
      if (!ds_uc_buf_push (out, s[i]))
        return false;
      i++;
    }
  return true;
}

/* ---- one-character maps ------------------------------------------------------ */

static int
map_cmp (const void *key, const void *elem)
{
  uint32_t x = *(const uint32_t *) key, y = ((const DsTfMap *) elem)->from;
  return x < y ? -1 : x > y;
}

/* Appends m's replacement of c when m has one, else c. */
static bool
map_one (const DsTfMap *m, size_t n_map, uint32_t c, DsUcBuf *out)
{
  const DsTfMap *hit = bsearch (&c, m, n_map, sizeof *m, map_cmp);
  return hit ? push_n (out, hit->cps, (size_t) hit->n) : ds_uc_buf_push (out, c);
}

typedef enum { MAP_C1, MAP_LIGATURES, MAP_WIDTH, MAP_QUOTES, MAP_CONTROLS } MapKind;

/* fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes,
 * remove_control_chars: each maps single characters. */
static bool
map_chars (MapKind kind, const uint32_t *s, size_t n, DsUcBuf *out)
{
  for (size_t i = 0; i < n; i++)
    {
      uint32_t c = s[i];
      bool ok = true;
      switch (kind)
        {
        case MAP_C1:
          ok = ds_uc_buf_push (out, c >= 0x80 && c <= 0x9F ? ds_tf_c1[c - 0x80] : c);
          break;
        case MAP_LIGATURES:
          ok = map_one (ds_tf_ligatures, sizeof ds_tf_ligatures / sizeof *ds_tf_ligatures, c, out);
          break;
        case MAP_WIDTH:
          ok = map_one (ds_tf_width, sizeof ds_tf_width / sizeof *ds_tf_width, c, out);
          break;
        case MAP_QUOTES:
          if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B))
            c = '\'';
          else if (c >= 0x201C && c <= 0x201F)
            c = '"';
          ok = ds_uc_buf_push (out, c);
          break;
        case MAP_CONTROLS:
          if (!bsearch (&c, ds_tf_controls, sizeof ds_tf_controls / sizeof (uint32_t),
                        sizeof (uint32_t), u32_cmp))
            ok = ds_uc_buf_push (out, c);
          break;
        }
      if (!ok)
        return false;
    }
  return true;
}

/* fix_line_breaks: \r\n, \r, U+2028, U+2029 and U+0085 become \n. */
static bool
fix_line_breaks (const uint32_t *s, size_t n, DsUcBuf *out)
{
  for (size_t i = 0; i < n; i++)
    {
      uint32_t c = s[i];
      if (c == '\r' && i + 1 < n && s[i + 1] == '\n')
        continue; /* the \n that follows is kept */
      if (c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85)
        c = '\n';
      if (!ds_uc_buf_push (out, c))
        return false;
    }
  return true;
}

/* remove_terminal_escapes: ESC "[" [0-9;]* [A-Za-z] is removed. */
static bool
remove_terminal_escapes (const uint32_t *s, size_t n, DsUcBuf *out)
{
  for (size_t i = 0; i < n;)
    {
      if (s[i] == 0x1B && i + 1 < n && s[i + 1] == '[')
        {
          size_t j = i + 2;
          while (j < n && ((s[j] >= '0' && s[j] <= '9') || s[j] == ';'))
            j++;
          if (j < n && ((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z')))
            {
              i = j + 1;
              continue;
            }
        }
      if (!ds_uc_buf_push (out, s[i]))
        return false;
      i++;
    }
  return true;
}

/* ---- fix_text ------------------------------------------------------------------ */

static bool
same (const DsUcBuf *a, const DsUcBuf *b)
{
  return a->len == b->len && (a->len == 0 || memcmp (a->cp, b->cp, a->len * sizeof *a->cp) == 0);
}

static void
swap (DsUcBuf *a, DsUcBuf *b)
{
  DsUcBuf t = *a;
  *a = *b;
  *b = t;
}

/* fix_and_explain on one segment: the steps in ftfy's order until nothing
 * changes. cur holds the segment on entry and the result on return. */
static bool
fix_segment (DsUcBuf *cur, DsUcBuf *next, DsUcBuf *orig, bool unescape)
{
  for (int pass = 0; pass < MAX_PASSES; pass++)
    {
      orig->len = 0;
      if (!push_n (orig, cur->cp, cur->len))
        return false;
      if (unescape)
        {
          next->len = 0;
          if (!unescape_html (cur->cp, cur->len, next))
            return false;
          swap (cur, next);
        }
      static const MapKind maps[] = { MAP_C1, MAP_LIGATURES, MAP_WIDTH, MAP_QUOTES };
      for (size_t k = 0; k < sizeof maps / sizeof maps[0]; k++)
        {
          next->len = 0;
          if (!map_chars (maps[k], cur->cp, cur->len, next))
            return false;
          swap (cur, next);
        }
      next->len = 0;
      if (!fix_line_breaks (cur->cp, cur->len, next))
        return false;
      swap (cur, next);
      /* fix_surrogates: UTF-8 input cannot hold surrogates (ds_utf8_find_invalid) */
      next->len = 0;
      if (!remove_terminal_escapes (cur->cp, cur->len, next))
        return false;
      swap (cur, next);
      next->len = 0;
      if (!map_chars (MAP_CONTROLS, cur->cp, cur->len, next))
        return false;
      swap (cur, next);
      next->len = 0;
      if (!ds_uc_nfc (cur->cp, cur->len, next))
        return false;
      swap (cur, next);
      if (same (cur, orig))
        break;
    }
  return true;
}

bool
ds_text_fix (const uint32_t *in, size_t n, DsUcBuf *out)
{
  DsUcBuf cur = { 0 }, next = { 0 }, orig = { 0 };
  bool ok = true, unescape = true;
  for (size_t pos = 0; ok && pos < n;)
    {
      size_t end = pos;
      while (end < n && in[end] != '\n')
        end++;
      if (end < n)
        end++; /* the segment keeps its \n */
      for (size_t i = pos; i < end && unescape; i++)
        if (in[i] == '<')
          unescape = false; /* and so for the rest of the text, as ftfy's config */
      cur.len = 0;
      ok = push_n (&cur, in + pos, end - pos) && fix_segment (&cur, &next, &orig, unescape)
           && push_n (out, cur.cp, cur.len);
      pos = end;
    }
  ds_uc_buf_free (&cur);
  ds_uc_buf_free (&next);
  ds_uc_buf_free (&orig);
  return ok;
}
