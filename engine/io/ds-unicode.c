/* ds-unicode.c: UTF-8, character classes, str.lower and NFC for the tokenizer.
 *
 * Every property is a binary search in a generated run table
 * (ds-unicode-tables.inc, from tests/reference/gen_unicode_tables.py); NFC is
 * the textbook algorithm (full canonical decomposition, canonical reordering,
 * canonical composition with blocking) over those tables plus arithmetic
 * Hangul. Text below U+0300 is already NFC and skips the work.
 */
#include "ds-unicode.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  uint32_t first;
  uint16_t count;
  uint8_t stride;
  int32_t delta;
} DsUcLowerRun;

typedef struct {
  uint32_t cp;
  uint16_t offset; /* into ds_uc_decomp_cps */
  uint8_t len;
} DsUcDecomp;

typedef struct {
  uint64_t key; /* (first << 21) | second */
  uint32_t composite;
} DsUcComp;

#include "ds-unicode-tables.inc"

#define N_ELEM(a) (sizeof (a) / sizeof (a)[0])
/* Runs of non-starters up to this long are insertion-sorted (see reorder). */
#define REORDER_SHORT 32

enum {
  PROP_PRE_MASK = 3,
  PROP_REMOVED = 4,
  PROP_SPACE = 8,
  PROP_CASED = 16,
  PROP_CASE_IGNORABLE = 32,
};

/* Hangul syllable arithmetic (Unicode §3.12). */
enum {
  HANGUL_S_BASE = 0xAC00,
  HANGUL_L_BASE = 0x1100,
  HANGUL_V_BASE = 0x1161,
  HANGUL_T_BASE = 0x11A7,
  HANGUL_L_COUNT = 19,
  HANGUL_V_COUNT = 21,
  HANGUL_T_COUNT = 28,
  HANGUL_N_COUNT = HANGUL_V_COUNT * HANGUL_T_COUNT,
  HANGUL_S_COUNT = HANGUL_L_COUNT * HANGUL_N_COUNT,
};

/* ---- growable buffer ---------------------------------------------------- */

bool
ds_uc_buf_reserve (DsUcBuf *buf, size_t cap)
{
  if (cap <= buf->cap)
    return true;
  size_t ncap = buf->cap ? buf->cap : 64;
  while (ncap < cap)
    ncap *= 2;
  uint32_t *p = realloc (buf->cp, ncap * sizeof *p);
  if (!p)
    return false;
  buf->cp = p;
  buf->cap = ncap;
  return true;
}

bool
ds_uc_buf_push (DsUcBuf *buf, uint32_t cp)
{
  if (buf->len == buf->cap && !ds_uc_buf_reserve (buf, buf->len + 1))
    return false;
  buf->cp[buf->len++] = cp;
  return true;
}

void
ds_uc_buf_free (DsUcBuf *buf)
{
  free (buf->cp);
  memset (buf, 0, sizeof *buf);
}

/* ---- UTF-8 -------------------------------------------------------------- */

long
ds_utf8_find_invalid (const char *s, size_t n)
{
  const unsigned char *u = (const unsigned char *) s;
  size_t i = 0;
  while (i < n)
    {
      unsigned c = u[i];
      if (c < 0x80)
        {
          i++;
          continue;
        }
      size_t len;
      unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
      if (c >= 0xC2 && c <= 0xDF)
        len = 2;
      else if (c >= 0xE0 && c <= 0xEF)
        {
          len = 3;
          if (c == 0xE0)
            lo = 0xA0; /* overlong */
          else if (c == 0xED)
            hi = 0x9F; /* surrogates */
        }
      else if (c >= 0xF0 && c <= 0xF4)
        {
          len = 4;
          if (c == 0xF0)
            lo = 0x90; /* overlong */
          else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
        }
      else
        return (long) i;
      if (i + len > n || u[i + 1] < lo || u[i + 1] > hi)
        return (long) i;
      for (size_t k = 2; k < len; k++)
        if ((u[i + k] & 0xC0) != 0x80)
          return (long) i;
      i += len;
    }
  return -1;
}

int
ds_utf8_decode (const char *s, uint32_t *cp)
{
  const unsigned char *u = (const unsigned char *) s;
  if (u[0] < 0x80)
    {
      *cp = u[0];
      return 1;
    }
  if (u[0] < 0xE0)
    {
      *cp = ((uint32_t) (u[0] & 0x1F) << 6) | (u[1] & 0x3F);
      return 2;
    }
  if (u[0] < 0xF0)
    {
      *cp = ((uint32_t) (u[0] & 0x0F) << 12) | ((uint32_t) (u[1] & 0x3F) << 6) | (u[2] & 0x3F);
      return 3;
    }
  *cp = ((uint32_t) (u[0] & 0x07) << 18) | ((uint32_t) (u[1] & 0x3F) << 12)
        | ((uint32_t) (u[2] & 0x3F) << 6) | (u[3] & 0x3F);
  return 4;
}

int
ds_utf8_encode (uint32_t cp, char out[4])
{
  assert (cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF));
  if (cp < 0x80)
    {
      out[0] = (char) cp;
      return 1;
    }
  if (cp < 0x800)
    {
      out[0] = (char) (0xC0 | (cp >> 6));
      out[1] = (char) (0x80 | (cp & 0x3F));
      return 2;
    }
  if (cp < 0x10000)
    {
      out[0] = (char) (0xE0 | (cp >> 12));
      out[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
      out[2] = (char) (0x80 | (cp & 0x3F));
      return 3;
    }
  out[0] = (char) (0xF0 | (cp >> 18));
  out[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char) (0x80 | (cp & 0x3F));
  return 4;
}

/* ---- properties --------------------------------------------------------- */

/* The value of the run holding cp in a (first << 8) | value run table. */
static unsigned
run_value (const uint32_t *runs, size_t n, uint32_t cp)
{
  size_t lo = 0, hi = n; /* the answer is the last run with first <= cp */
  while (hi - lo > 1)
    {
      size_t mid = lo + (hi - lo) / 2;
      if ((runs[mid] >> 8) <= cp)
        lo = mid;
      else
        hi = mid;
    }
  return runs[lo] & 0xFF;
}

static unsigned
props (uint32_t cp)
{
  return run_value (ds_uc_prop_runs, N_ELEM (ds_uc_prop_runs), cp);
}

bool
ds_uc_is_removed (uint32_t cp)
{
  return (props (cp) & PROP_REMOVED) != 0;
}

bool
ds_uc_is_space (uint32_t cp)
{
  return (props (cp) & PROP_SPACE) != 0;
}

bool
ds_uc_is_cjk (uint32_t cp)
{
  /* The blocks transformers' BasicTokenizer._is_chinese_char lists. */
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF)
         || (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F)
         || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF)
         || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

DsUcPreClass
ds_uc_pre_class (uint32_t cp)
{
  return (DsUcPreClass) (props (cp) & PROP_PRE_MASK);
}

bool
ds_uc_ascii_ci_eq (uint32_t cp, char ascii)
{
  return cp == (unsigned char) ascii || (ascii == 's' && cp == 0x17F);
}

uint8_t
ds_uc_combining_class (uint32_t cp)
{
  if (cp < 0x300)
    return 0;
  return (uint8_t) run_value (ds_uc_ccc_runs, N_ELEM (ds_uc_ccc_runs), cp);
}

/* ---- lower-casing ------------------------------------------------------- */

static uint32_t
lower_simple (uint32_t cp)
{
  size_t lo = 0, hi = N_ELEM (ds_uc_lower_runs);
  if (cp < ds_uc_lower_runs[0].first)
    return cp;
  while (hi - lo > 1)
    {
      size_t mid = lo + (hi - lo) / 2;
      if (ds_uc_lower_runs[mid].first <= cp)
        lo = mid;
      else
        hi = mid;
    }
  const DsUcLowerRun *r = &ds_uc_lower_runs[lo];
  uint32_t off = cp - r->first;
  if (off % r->stride == 0 && off / r->stride < r->count)
    return (uint32_t) ((int32_t) cp + r->delta);
  return cp;
}

/* Python's handle_capital_sigma: U+03A3 lowers to final sigma when preceded by
 * a cased letter and not followed by one (case-ignorables skipped both ways). */
static bool
final_sigma (const uint32_t *s, size_t n, size_t i)
{
  size_t j = i;
  unsigned p = 0;
  while (j > 0)
    {
      p = props (s[--j]);
      if (!(p & PROP_CASE_IGNORABLE))
        break;
    }
  if (j == i || (p & PROP_CASE_IGNORABLE) || !(p & PROP_CASED))
    return false;
  for (j = i + 1; j < n; j++)
    {
      p = props (s[j]);
      if (!(p & PROP_CASE_IGNORABLE))
        return !(p & PROP_CASED);
    }
  return true;
}

bool
ds_uc_lower (const uint32_t *in, size_t n, DsUcBuf *out)
{
  if (!ds_uc_buf_reserve (out, out->len + n))
    return false;
  for (size_t i = 0; i < n; i++)
    {
      uint32_t cp = in[i];
      if (cp < 0x80)
        {
          if (cp >= 'A' && cp <= 'Z')
            cp += 'a' - 'A';
        }
      else if (cp == 0x130)
        {
          if (!ds_uc_buf_push (out, 'i'))
            return false;
          cp = 0x307;
        }
      else if (cp == 0x3A3)
        cp = final_sigma (in, n, i) ? 0x3C2 : 0x3C3;
      else
        cp = lower_simple (cp);
      if (!ds_uc_buf_push (out, cp))
        return false;
    }
  return true;
}

/* ---- NFC ---------------------------------------------------------------- */

static const DsUcDecomp *
find_decomp (uint32_t cp)
{
  size_t lo = 0, hi = N_ELEM (ds_uc_decomp);
  while (lo < hi)
    {
      size_t mid = lo + (hi - lo) / 2;
      if (ds_uc_decomp[mid].cp < cp)
        lo = mid + 1;
      else
        hi = mid;
    }
  return lo < N_ELEM (ds_uc_decomp) && ds_uc_decomp[lo].cp == cp ? &ds_uc_decomp[lo] : NULL;
}

static bool
decompose (uint32_t cp, DsUcBuf *out)
{
  if (cp >= HANGUL_S_BASE && cp < HANGUL_S_BASE + HANGUL_S_COUNT)
    {
      uint32_t s = cp - HANGUL_S_BASE;
      if (!ds_uc_buf_push (out, HANGUL_L_BASE + s / HANGUL_N_COUNT)
          || !ds_uc_buf_push (out, HANGUL_V_BASE + (s % HANGUL_N_COUNT) / HANGUL_T_COUNT))
        return false;
      if (s % HANGUL_T_COUNT)
        return ds_uc_buf_push (out, HANGUL_T_BASE + s % HANGUL_T_COUNT);
      return true;
    }
  const DsUcDecomp *d = cp >= 0xC0 ? find_decomp (cp) : NULL;
  if (!d)
    return ds_uc_buf_push (out, cp);
  for (unsigned k = 0; k < d->len; k++)
    if (!ds_uc_buf_push (out, ds_uc_decomp_cps[d->offset + k]))
      return false;
  return true;
}

/* The primary composite of (a, b), or 0. */
static uint32_t
compose (uint32_t a, uint32_t b)
{
  if (a >= HANGUL_L_BASE && a < HANGUL_L_BASE + HANGUL_L_COUNT && b >= HANGUL_V_BASE
      && b < HANGUL_V_BASE + HANGUL_V_COUNT)
    return HANGUL_S_BASE + ((a - HANGUL_L_BASE) * HANGUL_V_COUNT + (b - HANGUL_V_BASE))
                             * HANGUL_T_COUNT;
  if (a >= HANGUL_S_BASE && a < HANGUL_S_BASE + HANGUL_S_COUNT
      && (a - HANGUL_S_BASE) % HANGUL_T_COUNT == 0 && b > HANGUL_T_BASE
      && b < HANGUL_T_BASE + HANGUL_T_COUNT)
    return a + (b - HANGUL_T_BASE);
  uint64_t key = ((uint64_t) a << 21) | b;
  size_t lo = 0, hi = N_ELEM (ds_uc_comp);
  while (lo < hi)
    {
      size_t mid = lo + (hi - lo) / 2;
      if (ds_uc_comp[mid].key < key)
        lo = mid + 1;
      else
        hi = mid;
    }
  return lo < N_ELEM (ds_uc_comp) && ds_uc_comp[lo].key == key ? ds_uc_comp[lo].composite : 0;
}

/* Stable sort of a[0..n), a run of non-starters, by combining class. */
static bool
sort_run (uint32_t *a, size_t n)
{
  if (n <= REORDER_SHORT)
    {
      for (size_t i = 1; i < n; i++)
        {
          uint32_t c = a[i];
          uint8_t cc = ds_uc_combining_class (c);
          size_t j = i;
          for (; j > 0 && ds_uc_combining_class (a[j - 1]) > cc; j--)
            a[j] = a[j - 1];
          a[j] = c;
        }
      return true;
    }
  /* a counting sort by class: each mark is placed once */
  size_t at[257] = { 0 };
  for (size_t i = 0; i < n; i++)
    at[ds_uc_combining_class (a[i]) + 1]++;
  for (int c = 1; c <= 256; c++)
    at[c] += at[c - 1];
  uint32_t *t = malloc (n * sizeof *t);
  if (!t)
    return false;
  for (size_t i = 0; i < n; i++)
    t[at[ds_uc_combining_class (a[i])]++] = a[i];
  memcpy (a, t, n * sizeof *t);
  free (t);
  return true;
}

/* Canonical reordering: each run of non-starters (class > 0) sorted stably
 * by class. Insertion sort serves the short runs of real text; a long run
 * (a pasted wall of combining marks) is counted instead, since insertion
 * sort's cost grows with the square of the run: 80,000 marks on one letter
 * took 14 s alternating two classes, 28 s with each half of one class
 * (test-tokenizer's test_long_mark_runs; bench-tokenizer). */
static bool
reorder (uint32_t *a, size_t n)
{
  for (size_t i = 0; i < n;)
    {
      if (ds_uc_combining_class (a[i]) == 0)
        {
          i++;
          continue;
        }
      size_t e = i + 1;
      while (e < n && ds_uc_combining_class (a[e]) != 0)
        e++;
      if (!sort_run (a + i, e - i))
        return false;
      i = e;
    }
  return true;
}

/* Canonical composition in place; returns the new length. */
static size_t
recompose (uint32_t *a, size_t n)
{
  size_t w = 0;
  size_t starter = SIZE_MAX;
  uint8_t last_cc = 0; /* class of a[w - 1] when it is not the starter */
  for (size_t r = 0; r < n; r++)
    {
      uint32_t c = a[r];
      uint8_t cc = ds_uc_combining_class (c);
      if (starter != SIZE_MAX)
        {
          bool adjacent = w - 1 == starter;
          bool blocked = !adjacent && (last_cc == 0 || last_cc >= cc);
          uint32_t comp = blocked ? 0 : compose (a[starter], c);
          if (comp)
            {
              a[starter] = comp;
              continue;
            }
        }
      if (cc == 0)
        starter = w;
      last_cc = cc;
      a[w++] = c;
    }
  return w;
}

bool
ds_uc_nfc (const uint32_t *in, size_t n, DsUcBuf *out)
{
  bool simple = true;
  for (size_t i = 0; i < n && simple; i++)
    simple = in[i] < 0x300;
  size_t base = out->len;
  if (simple)
    {
      if (!ds_uc_buf_reserve (out, base + n))
        return false;
      if (n)
        memcpy (out->cp + base, in, n * sizeof *in);
      out->len = base + n;
      return true;
    }
  for (size_t i = 0; i < n; i++)
    if (!decompose (in[i], out))
      return false;
  if (!reorder (out->cp + base, out->len - base))
    return false;
  out->len = base + recompose (out->cp + base, out->len - base);
  return true;
}
