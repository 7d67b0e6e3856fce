/* ds-ops.c: the op name table, the shape contract of every op, and the typed
 * wrappers.
 *
 * ds_op_run is the one door into a backend: it asserts that the call is
 * well-formed (shapes, dtypes, placement and aliasing are the engine's own
 * business, so a mismatch is a programmer error), asks the backend whether it
 * implements the op, and dispatches. It does not look at tensor contents: those
 * may live on a device. Checks on values that can come from user data (token ids)
 * belong to the backends, which report them as DsErrors.
 *
 * Contract details beyond ds-ops.h:
 *  - All float tensors of a call share the dtype of its destination (f32, f16
 *    or bf16); DS_OP_EMBEDDING's ids are i32. The exception: a mixed linear,
 *    an f32 DS_OP_LINEAR whose weight is f16 or bf16, which ds_op_run refuses
 *    (DS_ERR_UNSUPPORTED) on a backend without mixed_linear.
 *  - DS_OP_ADD accepts three forms of b, tried in this order:
 *      1. b has a's shape: elementwise;
 *      2. b is 1-D with a's last dimension (a bias over the last dim, as numpy
 *         broadcasting would do), e.g. a[B,N,C] + b[C];
 *      3. b's shape is a's leading dims, broadcast over the rest, e.g.
 *         a[B,C,H,W] + b[B,C] (diffusers' temb[:, :, None, None]).
 *    When a 1-D b fits both 2 and 3 (a[n, ..., n]) the last-dim reading wins.
 *  - dst may equal (not partially overlap) a source for the elementwise ops
 *    (gelu, quick_gelu, silu, add, mul, scale), softmax, rms_norm and rope;
 *    never otherwise.
 *  - DS_OP_MATMUL takes 2-D operands as a batch of one; Bt must agree.
 *  - DS_OP_CONCAT's dim is in [0, ndim); DS_OP_PERMUTE's perm[i] is the source
 *    dimension of output dimension i.
 */
#include "ds-ops.h"
#include "ds-util.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const op_names[] = {
  [DS_OP_CONV2D] = "conv2d",
  [DS_OP_GROUP_NORM] = "group_norm",
  [DS_OP_LAYER_NORM] = "layer_norm",
  [DS_OP_LINEAR] = "linear",
  [DS_OP_MATMUL] = "matmul",
  [DS_OP_SOFTMAX] = "softmax",
  [DS_OP_ATTENTION] = "attention",
  [DS_OP_GELU] = "gelu",
  [DS_OP_QUICK_GELU] = "quick_gelu",
  [DS_OP_SILU] = "silu",
  [DS_OP_GEGLU] = "geglu",
  [DS_OP_ADD] = "add",
  [DS_OP_MUL] = "mul",
  [DS_OP_SCALE] = "scale",
  [DS_OP_CONCAT] = "concat",
  [DS_OP_UPSAMPLE_NEAREST2X] = "upsample_nearest2x",
  [DS_OP_TIMESTEP_EMBEDDING] = "timestep_embedding",
  [DS_OP_EMBEDDING] = "embedding",
  [DS_OP_PERMUTE] = "permute",
  [DS_OP_MEAN_HEADS] = "mean_heads",
  [DS_OP_RMS_NORM] = "rms_norm",
  [DS_OP_ROPE] = "rope",
  [DS_OP_ATTENTION_KV] = "attention_kv",
  [DS_OP_SET_ROWS] = "set_rows",
};
_Static_assert (sizeof op_names / sizeof op_names[0] == DS_OP_COUNT, "one name per DsOp");

const char *
ds_op_name (DsOp op)
{
  if ((int) op < 0 || op >= DS_OP_COUNT || !op_names[op])
    return "unknown";
  return op_names[op];
}

int64_t
ds_conv2d_out_size (int64_t in, int k, int stride, int pad_lo, int pad_hi)
{
  assert (k >= 1 && stride >= 1 && pad_lo >= 0 && pad_hi >= 0);
  int64_t span = in + pad_lo + pad_hi - k;
  return span < 0 ? 0 : span / stride + 1;
}

/* DIFFSCOPE_PROFILE=1: time per op type, printed to stderr when a backend is
 * freed. On a backend with timers (CUDA) each op is bracketed by device
 * markers and read back in batches, so the ops run as they would (only the
 * gaps where the device waits for the host count too: eager forwards are
 * launch-bound for small ops); elsewhere the wall clock with a
 * synchronisation after each op. For finding hot spots, not for benchmarks.
 * Process-wide totals. */
static struct {
  double ms;
  long calls;
} profile[DS_OP_COUNT];

/* Ops timed on the device and not read yet: the backend and, per slot, the op. */
#define MAX_PENDING 4096
static DsBackend *pending_be;
static DsOp pending_op[MAX_PENDING];
static int n_pending;

/* Adds be's pending device timings to the profile and frees its slots. */
static void
read_pending (DsBackend *be)
{
  if (be != pending_be || !be)
    return;
  for (int i = 0; i < n_pending; i++)
    {
      profile[pending_op[i]].ms += be->timer_read (be, i);
      profile[pending_op[i]].calls++;
    }
  be->timer_reset (be);
  n_pending = 0;
  pending_be = NULL;
}

static bool
profile_enabled (void)
{
  static int enabled = -1;
  if (enabled < 0)
    {
      const char *v = getenv ("DIFFSCOPE_PROFILE");
      enabled = v && *v && strcmp (v, "0") != 0;
    }
  return enabled;
}

bool
ds_op_profiling (void)
{
  return profile_enabled ();
}

void
ds_op_profile_reset (DsBackend *be)
{
  read_pending (be);
  memset (profile, 0, sizeof profile);
}

void
ds_op_profile_read (DsBackend *be, DsOp op, double *ms, long *calls)
{
  read_pending (be);
  *ms = profile[op].ms;
  *calls = profile[op].calls;
}

void
ds_backend_free (DsBackend *be)
{
  if (!be)
    return;
  if (profile_enabled () && !be->planning)
    {
      read_pending (be);
      double total = 0;
      for (int i = 0; i < DS_OP_COUNT; i++)
        total += profile[i].ms;
      fprintf (stderr, "# op profile (%s backend, %s): %.1f ms in ops\n", be->name,
               be->timer_begin ? "device time between markers around each op"
                               : "wall clock, synchronised after each op",
               total);
      for (int i = 0; i < DS_OP_COUNT; i++)
        if (profile[i].calls)
          fprintf (stderr, "#   %-22s %10.1f ms %5.1f%% %8ld calls\n", ds_op_name ((DsOp) i),
                   profile[i].ms, total > 0 ? 100 * profile[i].ms / total : 0, profile[i].calls);
      memset (profile, 0, sizeof profile);
    }
  be->destroy (be);
}

/* ---- shape checks (assertions; compiled out with NDEBUG) ---- */

#ifdef NDEBUG
static void
check_call (const DsBackend *be, const DsOpCall *c)
{
}
#else

/* The dtype of the call being checked: its destination's. */
static _Thread_local DsDType call_dtype;

/* A float tensor of the call's dtype on the backend's device. */
static bool
is_float_on (const DsBackend *be, const DsTensor *t)
{
  return t && t->dtype == call_dtype && t->device == be->device
         && (t->data || ds_tensor_numel (t) == 0);
}

/* True when the byte ranges of a and b intersect. */
static bool
overlaps (const DsTensor *a, const DsTensor *b)
{
  uintptr_t a0 = (uintptr_t) a->data, b0 = (uintptr_t) b->data;
  uintptr_t a1 = a0 + ds_tensor_nbytes (a), b1 = b0 + ds_tensor_nbytes (b);
  return a0 < b1 && b0 < a1 && a0 != a1 && b0 != b1;
}

/* dst is either exactly src or disjoint from it. */
static bool
alias_ok (const DsTensor *dst, const DsTensor *src)
{
  return dst->data == src->data || !overlaps (dst, src);
}

static bool
dims_equal (const int64_t *a, const int64_t *b, int n)
{
  for (int i = 0; i < n; i++)
    if (a[i] != b[i])
      return false;
  return true;
}

static void
check_conv2d (const DsBackend *be, const DsOpCall *c)
{
  const DsTensor *x = c->src[0], *w = c->src[1], *b = c->src[2];
  const DsTensor *y = c->dst;
  assert (is_float_on (be, x) && x->ndim == 4);
  assert (is_float_on (be, w) && w->ndim == 4 && w->shape[1] == x->shape[1]);
  assert (!b || (is_float_on (be, b) && b->ndim == 1 && b->shape[0] == w->shape[0]));
  assert (c->p.conv2d.stride >= 1);
  assert (c->p.conv2d.pad_top >= 0 && c->p.conv2d.pad_bottom >= 0);
  assert (c->p.conv2d.pad_left >= 0 && c->p.conv2d.pad_right >= 0);
  int64_t ho = ds_conv2d_out_size (x->shape[2], (int) w->shape[2], c->p.conv2d.stride,
                                   c->p.conv2d.pad_top, c->p.conv2d.pad_bottom);
  int64_t wo = ds_conv2d_out_size (x->shape[3], (int) w->shape[3], c->p.conv2d.stride,
                                   c->p.conv2d.pad_left, c->p.conv2d.pad_right);
  assert (is_float_on (be, y) && y->ndim == 4);
  assert (y->shape[0] == x->shape[0] && y->shape[1] == w->shape[0]);
  assert (y->shape[2] == ho && y->shape[3] == wo && ho >= 1 && wo >= 1);
  assert (!overlaps (y, x) && !overlaps (y, w) && (!b || !overlaps (y, b)));
}

static void
check_group_norm (const DsBackend *be, const DsOpCall *c)
{
  const DsTensor *x = c->src[0], *g = c->src[1], *b = c->src[2], *y = c->dst;
  assert (is_float_on (be, x) && x->ndim >= 2);
  int64_t ch = x->shape[1];
  assert (c->p.group_norm.groups >= 1 && ch % c->p.group_norm.groups == 0);
  assert (is_float_on (be, g) && g->ndim == 1 && g->shape[0] == ch);
  assert (is_float_on (be, b) && b->ndim == 1 && b->shape[0] == ch);
  assert (c->p.group_norm.eps >= 0);
  assert (is_float_on (be, y) && ds_tensor_same_shape (x, y));
  assert (!overlaps (y, x) && !overlaps (y, g) && !overlaps (y, b));
}

static void
check_layer_norm (const DsBackend *be, const DsOpCall *c)
{
  const DsTensor *x = c->src[0], *g = c->src[1], *b = c->src[2], *y = c->dst;
  assert (is_float_on (be, x) && x->ndim >= 1);
  int64_t ch = x->shape[x->ndim - 1];
  assert (is_float_on (be, g) && g->ndim == 1 && g->shape[0] == ch);
  assert (is_float_on (be, b) && b->ndim == 1 && b->shape[0] == ch);
  assert (c->p.layer_norm.eps >= 0);
  assert (is_float_on (be, y) && ds_tensor_same_shape (x, y));
  assert (!overlaps (y, x) && !overlaps (y, g) && !overlaps (y, b));
}

static void
check_linear (const DsBackend *be, const DsOpCall *c)
{
  const DsTensor *x = c->src[0], *w = c->src[1], *b = c->src[2], *y = c->dst;
  assert (is_float_on (be, x) && x->ndim >= 1);
  /* the mixed linear: a 16-bit weight in an f32 call */
  const bool mixed = w && w->dtype != call_dtype && call_dtype == DS_DTYPE_F32
                     && (w->dtype == DS_DTYPE_F16 || w->dtype == DS_DTYPE_BF16);
  assert (mixed ? w->device == be->device && (w->data || ds_tensor_numel (w) == 0)
                : is_float_on (be, w));
  assert (w->ndim == 2 && w->shape[1] == x->shape[x->ndim - 1]);
  assert (!b || (is_float_on (be, b) && b->ndim == 1 && b->shape[0] == w->shape[0]));
  assert (is_float_on (be, y) && y->ndim == x->ndim);
  assert (dims_equal (x->shape, y->shape, x->ndim - 1));
  assert (y->shape[y->ndim - 1] == w->shape[0]);
  assert (!overlaps (y, x) && !overlaps (y, w) && (!b || !overlaps (y, b)));
  const DsTensor *r = c->src[3];
  assert (!r || (is_float_on (be, r) && ds_tensor_same_shape (r, y) && alias_ok (y, r)));
}

static void
check_matmul (const DsBackend *be, const DsOpCall *c)
{
  const DsTensor *a = c->src[0], *b = c->src[1], *y = c->dst;
  assert (is_float_on (be, a) && (a->ndim == 2 || a->ndim == 3));
  assert (is_float_on (be, b) && (b->ndim == 2 || b->ndim == 3));
  assert (is_float_on (be, y) && (y->ndim == 2 || y->ndim == 3));
  int64_t bta = a->ndim == 3 ? a->shape[0] : 1, btb = b->ndim == 3 ? b->shape[0] : 1;
  int64_t bty = y->ndim == 3 ? y->shape[0] : 1;
  const int64_t *as = a->shape + (a->ndim - 2), *bs = b->shape + (b->ndim - 2);
  const int64_t *ys = y->shape + (y->ndim - 2);
  int64_t m = c->p.matmul.trans_a ? as[1] : as[0], ka = c->p.matmul.trans_a ? as[0] : as[1];
  int64_t kb = c->p.matmul.trans_b ? bs[1] : bs[0], n = c->p.matmul.trans_b ? bs[0] : bs[1];
  assert (bta == btb && bta == bty);
  assert (ka == kb && ys[0] == m && ys[1] == n);
  assert (!overlaps (y, a) && !overlaps (y, b));
}

static void
check_attention (const DsBackend *be, const DsOpCall *c)
{
  const DsTensor *q = c->src[0], *k = c->src[1], *v = c->src[2];
  const DsTensor *o = c->dst, *p = c->dst2;
  assert (is_float_on (be, q) && q->ndim == 3);
  assert (is_float_on (be, k) && k->ndim == 3);
  assert (is_float_on (be, v) && ds_tensor_same_shape (k, v));
  assert (k->shape[0] == q->shape[0] && k->shape[2] == q->shape[2]);
  assert (q->shape[1] >= 1 && k->shape[1] >= 1);
  int heads = c->p.attention.heads;
  assert (heads >= 1 && q->shape[2] % heads == 0);
  assert (is_float_on (be, o) && ds_tensor_same_shape (o, q));
  assert (!overlaps (o, q) && !overlaps (o, k) && !overlaps (o, v));
  if (p)
    {
      assert (is_float_on (be, p) && p->ndim == 4);
      assert (p->shape[0] == q->shape[0] && p->shape[1] == heads);
      assert (p->shape[2] == q->shape[1] && p->shape[3] == k->shape[1]);
      assert (!overlaps (p, q) && !overlaps (p, k) && !overlaps (p, v) && !overlaps (p, o));
    }
}

/* Unary maps that allow y == x. */
static void
check_unary (const DsBackend *be, const DsOpCall *c)
{
  const DsTensor *x = c->src[0], *y = c->dst;
  assert (is_float_on (be, x) && is_float_on (be, y) && ds_tensor_same_shape (x, y));
  assert (alias_ok (y, x));
}

static void
check_geglu (const DsBackend *be, const DsOpCall *c)
{
  const DsTensor *x = c->src[0], *y = c->dst;
  assert (is_float_on (be, x) && x->ndim >= 1 && x->shape[x->ndim - 1] % 2 == 0);
  assert (is_float_on (be, y) && y->ndim == x->ndim);
  assert (dims_equal (x->shape, y->shape, x->ndim - 1));
  assert (y->shape[y->ndim - 1] * 2 == x->shape[x->ndim - 1]);
  assert (!overlaps (y, x));
  const DsTensor *b = c->src[1];
  assert (!b || (is_float_on (be, b) && b->ndim == 1 && b->shape[0] == x->shape[x->ndim - 1]));
}

static void
check_add (const DsBackend *be, const DsOpCall *c)
{
  const DsTensor *a = c->src[0], *b = c->src[1], *y = c->dst;
  assert (is_float_on (be, a) && is_float_on (be, b) && is_float_on (be, y));
  assert (ds_tensor_same_shape (a, y));
  bool same = ds_tensor_same_shape (a, b);
  bool last = b->ndim == 1 && a->ndim >= 1 && b->shape[0] == a->shape[a->ndim - 1];
  bool lead = b->ndim >= 1 && b->ndim < a->ndim && dims_equal (a->shape, b->shape, b->ndim);
  assert (same || last || lead);
  assert (alias_ok (y, a) && (same ? alias_ok (y, b) : !overlaps (y, b)));
}

static void
check_mul (const DsBackend *be, const DsOpCall *c)
{
  const DsTensor *a = c->src[0], *b = c->src[1], *y = c->dst;
  assert (is_float_on (be, a) && is_float_on (be, b) && is_float_on (be, y));
  assert (ds_tensor_same_shape (a, b) && ds_tensor_same_shape (a, y));
  assert (alias_ok (y, a) && alias_ok (y, b));
}

static void
check_concat (const DsBackend *be, const DsOpCall *c)
{
  const DsTensor *a = c->src[0], *b = c->src[1], *y = c->dst;
  int d = c->p.concat.dim;
  assert (is_float_on (be, a) && is_float_on (be, b) && is_float_on (be, y));
  assert (a->ndim == b->ndim && a->ndim == y->ndim && d >= 0 && d < a->ndim);
  for (int i = 0; i < a->ndim; i++)
    assert (i == d ? y->shape[i] == a->shape[i] + b->shape[i]
                   : (a->shape[i] == b->shape[i] && y->shape[i] == a->shape[i]));
  assert (!overlaps (y, a) && !overlaps (y, b));
}

static void
check_upsample (const DsBackend *be, const DsOpCall *c)
{
  const DsTensor *x = c->src[0], *y = c->dst;
  assert (is_float_on (be, x) && x->ndim == 4 && is_float_on (be, y) && y->ndim == 4);
  assert (y->shape[0] == x->shape[0] && y->shape[1] == x->shape[1]);
  assert (y->shape[2] == 2 * x->shape[2] && y->shape[3] == 2 * x->shape[3]);
  assert (!overlaps (y, x));
}

static void
check_timestep (const DsBackend *be, const DsOpCall *c)
{
  const DsTensor *t = c->src[0], *y = c->dst;
  assert (is_float_on (be, t) && t->ndim == 1);
  assert (is_float_on (be, y) && y->ndim == 2 && y->shape[0] == t->shape[0] && y->shape[1] >= 1);
  assert (c->p.timestep.max_period > 0);
  /* half - freq_shift divides the exponents */
  assert (y->shape[1] / 2 == 0 || (float) (y->shape[1] / 2) != c->p.timestep.freq_shift);
  assert (!overlaps (y, t));
}

static void
check_embedding (const DsBackend *be, const DsOpCall *c)
{
  const DsTensor *ids = c->src[0], *table = c->src[1], *y = c->dst;
  assert (ids && ids->dtype == DS_DTYPE_I32 && ids->device == be->device);
  assert (ids->data || ds_tensor_numel (ids) == 0);
  assert (ids->ndim < DS_MAX_DIMS);
  assert (is_float_on (be, table) && table->ndim == 2);
  assert (is_float_on (be, y) && y->ndim == ids->ndim + 1);
  assert (dims_equal (ids->shape, y->shape, ids->ndim));
  assert (y->shape[ids->ndim] == table->shape[1]);
  assert (!overlaps (y, ids) && !overlaps (y, table));
}

static void
check_permute (const DsBackend *be, const DsOpCall *c)
{
  const DsTensor *x = c->src[0], *y = c->dst;
  assert (is_float_on (be, x) && x->ndim >= 1 && is_float_on (be, y) && y->ndim == x->ndim);
  unsigned seen = 0;
  for (int i = 0; i < x->ndim; i++)
    {
      int s = c->p.permute.perm[i];
      assert (s >= 0 && s < x->ndim && !(seen & (1u << s)));
      seen |= 1u << s;
      assert (y->shape[i] == x->shape[s]);
    }
  assert (!overlaps (y, x));
}

static void
check_mean_heads (const DsBackend *be, const DsOpCall *c)
{
  const DsTensor *x = c->src[0], *y = c->dst;
  assert (is_float_on (be, x) && x->ndim >= 2 && is_float_on (be, y) && y->ndim == x->ndim);
  assert (y->shape[0] == x->shape[0] && y->shape[1] == 1 && x->shape[1] >= 1);
  assert (dims_equal (x->shape + 2, y->shape + 2, x->ndim - 2));
  assert (!overlaps (y, x));
}

static void
check_rms_norm (const DsBackend *be, const DsOpCall *c)
{
  const DsTensor *x = c->src[0], *g = c->src[1], *y = c->dst;
  assert (is_float_on (be, x) && x->ndim >= 1);
  assert (is_float_on (be, g) && g->ndim == 1 && g->shape[0] == x->shape[x->ndim - 1]);
  assert (c->p.rms_norm.eps >= 0);
  assert (is_float_on (be, y) && ds_tensor_same_shape (x, y));
  assert (alias_ok (y, x) && !overlaps (y, g));
}

static void
check_rope (const DsBackend *be, const DsOpCall *c)
{
  const DsTensor *x = c->src[0], *pos = c->src[1], *y = c->dst;
  int heads = c->p.rope.heads;
  assert (is_float_on (be, x) && x->ndim == 3);
  assert (heads >= 1 && x->shape[2] % heads == 0 && (x->shape[2] / heads) % 2 == 0);
  assert (pos && pos->dtype == DS_DTYPE_I32 && pos->device == be->device);
  assert (pos->ndim == 1 && pos->shape[0] == x->shape[1]);
  assert (pos->data || ds_tensor_numel (pos) == 0);
  assert (c->p.rope.theta > 0);
  assert (is_float_on (be, y) && ds_tensor_same_shape (x, y));
  assert (alias_ok (y, x) && !overlaps (y, pos));
}

static void
check_attention_kv (const DsBackend *be, const DsOpCall *c)
{
  const DsTensor *q = c->src[0], *k = c->src[1], *v = c->src[2], *o = c->dst;
  int heads = c->p.attention_kv.heads, kv_heads = c->p.attention_kv.kv_heads;
  assert (is_float_on (be, q) && q->ndim == 3);
  assert (is_float_on (be, k) && k->ndim == 3);
  assert (is_float_on (be, v) && ds_tensor_same_shape (k, v));
  assert (heads >= 1 && kv_heads >= 1 && heads % kv_heads == 0);
  assert (q->shape[2] % heads == 0);
  assert (k->shape[0] == q->shape[0] && k->shape[2] == q->shape[2] / heads * kv_heads);
  assert (q->shape[1] >= 1 && c->p.attention_kv.q_pos >= 0);
  assert (c->p.attention_kv.q_pos + q->shape[1] <= k->shape[1]);
  const DsTensor *pos = c->src[3]; /* the position from the device: one query, q_pos 0 */
  assert (!pos || (pos->dtype == DS_DTYPE_I32 && pos->device == be->device && pos->data
                   && ds_tensor_numel (pos) == 1 && q->shape[1] == 1
                   && c->p.attention_kv.q_pos == 0));
  assert (is_float_on (be, o) && ds_tensor_same_shape (o, q));
  assert (!overlaps (o, q) && !overlaps (o, k) && !overlaps (o, v));
  assert (!pos || !overlaps (o, pos));
}

static void
check_set_rows (const DsBackend *be, const DsOpCall *c)
{
  const DsTensor *x = c->src[0], *pos = c->src[1], *y = c->dst;
  assert (is_float_on (be, x) && x->ndim >= 1);
  assert (is_float_on (be, y) && y->ndim == 2 && y->shape[1] == x->shape[x->ndim - 1]);
  assert (pos && pos->dtype == DS_DTYPE_I32 && pos->device == be->device);
  assert (pos->ndim == 1 && pos->shape[0] * x->shape[x->ndim - 1] == ds_tensor_numel (x));
  assert (pos->data || ds_tensor_numel (pos) == 0);
  assert (!overlaps (y, x) && !overlaps (y, pos));
}

static void
check_call (const DsBackend *be, const DsOpCall *c)
{
  assert (c->dst);
  assert (c->op == DS_OP_ATTENTION || !c->dst2);
  assert (c->op == DS_OP_LINEAR || c->op == DS_OP_ATTENTION_KV || !c->src[3]);
  call_dtype = c->dst->dtype;
  assert (ds_dtype_is_float (call_dtype));
  switch (c->op)
    {
    case DS_OP_CONV2D: check_conv2d (be, c); break;
    case DS_OP_GROUP_NORM: check_group_norm (be, c); break;
    case DS_OP_LAYER_NORM: check_layer_norm (be, c); break;
    case DS_OP_LINEAR: check_linear (be, c); break;
    case DS_OP_MATMUL: check_matmul (be, c); break;
    case DS_OP_SOFTMAX: check_unary (be, c); break;
    case DS_OP_ATTENTION: check_attention (be, c); break;
    case DS_OP_GELU: check_unary (be, c); break;
    case DS_OP_QUICK_GELU: check_unary (be, c); break;
    case DS_OP_SILU: check_unary (be, c); break;
    case DS_OP_GEGLU: check_geglu (be, c); break;
    case DS_OP_ADD: check_add (be, c); break;
    case DS_OP_MUL: check_mul (be, c); break;
    case DS_OP_SCALE: check_unary (be, c); break;
    case DS_OP_CONCAT: check_concat (be, c); break;
    case DS_OP_UPSAMPLE_NEAREST2X: check_upsample (be, c); break;
    case DS_OP_TIMESTEP_EMBEDDING: check_timestep (be, c); break;
    case DS_OP_EMBEDDING: check_embedding (be, c); break;
    case DS_OP_PERMUTE: check_permute (be, c); break;
    case DS_OP_MEAN_HEADS: check_mean_heads (be, c); break;
    case DS_OP_RMS_NORM: check_rms_norm (be, c); break;
    case DS_OP_ROPE: check_rope (be, c); break;
    case DS_OP_ATTENTION_KV: check_attention_kv (be, c); break;
    case DS_OP_SET_ROWS: check_set_rows (be, c); break;
    default: assert (!"unknown op");
    }
}
#endif /* NDEBUG */

DsStatus
ds_op_run (DsBackend *be, const DsOpCall *call, DsError *err)
{
  assert (be && call);
  check_call (be, call);
  if (call->op == DS_OP_LINEAR && call->src[1]->dtype != call->dst->dtype && !be->mixed_linear)
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "linear with %s weights and %s activations is not supported by the "
                         "%s backend",
                         ds_dtype_name (call->src[1]->dtype), ds_dtype_name (call->dst->dtype),
                         be->name);
  if (!be->supports (be, call->op))
    return ds_error_set (err, DS_ERR_UNSUPPORTED, "op %s is not supported by the %s backend",
                         ds_op_name (call->op), be->name);
  be->n_ops++;
  if (!profile_enabled () || be->planning)
    return be->run (be, call, err);
  if (be->timer_begin)
    {
      if (pending_be && pending_be != be)
        read_pending (pending_be);
      int slot = be->timer_begin (be);
      if (slot < 0)
        {
          read_pending (be);
          slot = be->timer_begin (be);
        }
      DsStatus st = be->run (be, call, err);
      if (slot >= 0)
        {
          be->timer_end (be, slot);
          assert (slot < MAX_PENDING && slot == n_pending);
          pending_be = be;
          pending_op[n_pending++] = call->op;
        }
      return st;
    }
  double t0 = ds_now_ms ();
  DsStatus st = be->run (be, call, err);
  if (st == DS_OK)
    st = be->synchronize (be, err);
  profile[call->op].ms += ds_now_ms () - t0;
  profile[call->op].calls++;
  return st;
}

/* ---- arenas and transfers on any backend ---- */

DsStatus
ds_backend_arena_init (DsBackend *be, DsArena *a, size_t size, DsError *err)
{
  if (be->device == DS_DEVICE_CPU)
    {
      DsStatus st = ds_arena_init (a, size, err);
      a->dtype = be->act_dtype;
      return st;
    }
  /* The block is a backend tensor of bytes, viewed as f32 words. */
  DsTensor block;
  const int64_t words = (int64_t) ((size + 3) / 4);
  memset (a, 0, sizeof *a);
  DsStatus st = be->tensor_alloc (be, &block, DS_DTYPE_F32, 1, &words, err);
  if (st != DS_OK)
    return ds_error_prefix (err, st, "reserving a %.1f MiB activation arena",
                            size / 1048576.0);
  a->base = block.data;
  a->size = size;
  a->device = be->device;
  a->dtype = be->act_dtype;
  return DS_OK;
}

void
ds_backend_arena_free (DsBackend *be, DsArena *a)
{
  if (be->device == DS_DEVICE_CPU || !a->base)
    {
      ds_arena_free (a); /* frees nothing for an empty arena, and clears it */
      return;
    }
  const int64_t words = (int64_t) ((a->size + 3) / 4);
  DsTensor block = ds_tensor_make (DS_DTYPE_F32, 1, &words);
  block.device = a->device;
  block.data = a->base;
  block.owned = true;
  be->tensor_free (be, &block);
  memset (a, 0, sizeof *a);
}

DsStatus
ds_backend_upload_f32 (DsBackend *be, DsTensor *t, const float *host, DsError *err)
{
  assert (ds_dtype_is_float (t->dtype));
  if (t->dtype == DS_DTYPE_F32)
    return be->upload (be, t, host, err);
  const int64_t n = ds_tensor_numel (t);
  void *tmp = malloc (ds_tensor_nbytes (t) + 1);
  if (!tmp)
    return ds_error_set (err, DS_ERR_NOMEM, "out of host memory converting %lld values to %s",
                         (long long) n, ds_dtype_name (t->dtype));
  ds_convert_from_f32 (tmp, t->dtype, host, n);
  DsStatus st = be->upload (be, t, tmp, err);
  free (tmp);
  return st;
}

DsStatus
ds_backend_download_f32 (DsBackend *be, const DsTensor *t, float *host, DsError *err)
{
  assert (ds_dtype_is_float (t->dtype));
  if (t->dtype == DS_DTYPE_F32)
    return be->download (be, t, host, err);
  const int64_t n = ds_tensor_numel (t);
  void *tmp = malloc (ds_tensor_nbytes (t) + 1);
  if (!tmp)
    return ds_error_set (err, DS_ERR_NOMEM, "out of host memory converting %lld %s values",
                         (long long) n, ds_dtype_name (t->dtype));
  DsStatus st = be->download (be, t, tmp, err);
  if (st == DS_OK)
    st = ds_convert_to_f32 (host, tmp, t->dtype, n, err);
  free (tmp);
  return st;
}

DsStatus
ds_backend_download_new_f32 (DsBackend *be, const DsTensor *t, DsTensor *out, DsError *err)
{
  DsStatus st = ds_tensor_alloc (out, DS_DTYPE_F32, t->ndim, t->shape, err);
  if (st == DS_OK)
    st = ds_backend_download_f32 (be, t, ds_tensor_f32 (out), err);
  if (st != DS_OK)
    ds_tensor_free (out);
  return st;
}

/* ---- typed wrappers ---- */

DsStatus
ds_conv2d (DsBackend *be, const DsTensor *x, const DsTensor *w, const DsTensor *b,
           int stride, int pad_top, int pad_left, int pad_bottom, int pad_right, DsTensor *y,
           DsError *err)
{
  DsOpCall c = { .op = DS_OP_CONV2D, .src = { x, w, b }, .dst = y };
  c.p.conv2d.stride = stride;
  c.p.conv2d.pad_top = pad_top;
  c.p.conv2d.pad_left = pad_left;
  c.p.conv2d.pad_bottom = pad_bottom;
  c.p.conv2d.pad_right = pad_right;
  return ds_op_run (be, &c, err);
}

DsStatus
ds_group_norm (DsBackend *be, const DsTensor *x, const DsTensor *gamma, const DsTensor *beta,
               int groups, float eps, bool silu, DsTensor *y, DsError *err)
{
  DsOpCall c = { .op = DS_OP_GROUP_NORM, .src = { x, gamma, beta }, .dst = y };
  c.p.group_norm.groups = groups;
  c.p.group_norm.eps = eps;
  c.p.group_norm.silu = silu;
  return ds_op_run (be, &c, err);
}

DsStatus
ds_layer_norm (DsBackend *be, const DsTensor *x, const DsTensor *gamma, const DsTensor *beta,
               float eps, DsTensor *y, DsError *err)
{
  DsOpCall c = { .op = DS_OP_LAYER_NORM, .src = { x, gamma, beta }, .dst = y };
  c.p.layer_norm.eps = eps;
  return ds_op_run (be, &c, err);
}

DsStatus
ds_linear (DsBackend *be, const DsTensor *x, const DsTensor *w, const DsTensor *b,
           DsTensor *y, DsError *err)
{
  DsOpCall c = { .op = DS_OP_LINEAR, .src = { x, w, b }, .dst = y };
  return ds_op_run (be, &c, err);
}

DsStatus
ds_matmul (DsBackend *be, const DsTensor *a, const DsTensor *b, bool trans_a, bool trans_b,
           float alpha, DsTensor *y, DsError *err)
{
  DsOpCall c = { .op = DS_OP_MATMUL, .src = { a, b }, .dst = y };
  c.p.matmul.trans_a = trans_a;
  c.p.matmul.trans_b = trans_b;
  c.p.matmul.alpha = alpha;
  return ds_op_run (be, &c, err);
}

DsStatus
ds_linear_add (DsBackend *be, const DsTensor *x, const DsTensor *w, const DsTensor *b,
               const DsTensor *r, DsTensor *y, DsError *err)
{
  DsOpCall c = { .op = DS_OP_LINEAR, .src = { x, w, b, r }, .dst = y };
  return ds_op_run (be, &c, err);
}

static DsStatus
run_unary (DsBackend *be, DsOp op, const DsTensor *x, DsTensor *y, DsError *err)
{
  DsOpCall c = { .op = op, .src = { x }, .dst = y };
  return ds_op_run (be, &c, err);
}

DsStatus
ds_softmax (DsBackend *be, const DsTensor *x, DsTensor *y, DsError *err)
{
  return run_unary (be, DS_OP_SOFTMAX, x, y, err);
}

DsStatus
ds_attention (DsBackend *be, const DsTensor *q, const DsTensor *k, const DsTensor *v,
              int heads, float scale, bool causal, DsTensor *o, DsTensor *probs, DsError *err)
{
  DsOpCall c = { .op = DS_OP_ATTENTION, .src = { q, k, v }, .dst = o, .dst2 = probs };
  c.p.attention.heads = heads;
  c.p.attention.scale = scale;
  c.p.attention.causal = causal;
  return ds_op_run (be, &c, err);
}

DsStatus
ds_gelu (DsBackend *be, const DsTensor *x, DsTensor *y, DsError *err)
{
  return run_unary (be, DS_OP_GELU, x, y, err);
}

DsStatus
ds_quick_gelu (DsBackend *be, const DsTensor *x, DsTensor *y, DsError *err)
{
  return run_unary (be, DS_OP_QUICK_GELU, x, y, err);
}

DsStatus
ds_silu (DsBackend *be, const DsTensor *x, DsTensor *y, DsError *err)
{
  return run_unary (be, DS_OP_SILU, x, y, err);
}

DsStatus
ds_geglu (DsBackend *be, const DsTensor *x, DsTensor *y, DsError *err)
{
  return run_unary (be, DS_OP_GEGLU, x, y, err);
}

DsStatus
ds_geglu_bias (DsBackend *be, const DsTensor *x, const DsTensor *b, DsTensor *y, DsError *err)
{
  DsOpCall c = { .op = DS_OP_GEGLU, .src = { x, b }, .dst = y };
  return ds_op_run (be, &c, err);
}

DsStatus
ds_add (DsBackend *be, const DsTensor *a, const DsTensor *b, DsTensor *y, DsError *err)
{
  DsOpCall c = { .op = DS_OP_ADD, .src = { a, b }, .dst = y };
  return ds_op_run (be, &c, err);
}

DsStatus
ds_mul (DsBackend *be, const DsTensor *a, const DsTensor *b, DsTensor *y, DsError *err)
{
  DsOpCall c = { .op = DS_OP_MUL, .src = { a, b }, .dst = y };
  return ds_op_run (be, &c, err);
}

DsStatus
ds_scale (DsBackend *be, const DsTensor *a, float s, DsTensor *y, DsError *err)
{
  DsOpCall c = { .op = DS_OP_SCALE, .src = { a }, .dst = y };
  c.p.scale.s = s;
  return ds_op_run (be, &c, err);
}

DsStatus
ds_concat (DsBackend *be, const DsTensor *a, const DsTensor *b, int dim, DsTensor *y,
           DsError *err)
{
  DsOpCall c = { .op = DS_OP_CONCAT, .src = { a, b }, .dst = y };
  c.p.concat.dim = dim;
  return ds_op_run (be, &c, err);
}

DsStatus
ds_upsample_nearest2x (DsBackend *be, const DsTensor *x, DsTensor *y, DsError *err)
{
  return run_unary (be, DS_OP_UPSAMPLE_NEAREST2X, x, y, err);
}

DsStatus
ds_timestep_embedding (DsBackend *be, const DsTensor *t, bool flip_sin_to_cos,
                       float freq_shift, float max_period, DsTensor *y, DsError *err)
{
  DsOpCall c = { .op = DS_OP_TIMESTEP_EMBEDDING, .src = { t }, .dst = y };
  c.p.timestep.flip_sin_to_cos = flip_sin_to_cos;
  c.p.timestep.freq_shift = freq_shift;
  c.p.timestep.max_period = max_period;
  return ds_op_run (be, &c, err);
}

DsStatus
ds_embedding (DsBackend *be, const DsTensor *ids, const DsTensor *table, DsTensor *y,
              DsError *err)
{
  DsOpCall c = { .op = DS_OP_EMBEDDING, .src = { ids, table }, .dst = y };
  return ds_op_run (be, &c, err);
}

DsStatus
ds_mean_heads (DsBackend *be, const DsTensor *x, DsTensor *y, DsError *err)
{
  return run_unary (be, DS_OP_MEAN_HEADS, x, y, err);
}

DsStatus
ds_rms_norm (DsBackend *be, const DsTensor *x, const DsTensor *g, float eps, DsTensor *y,
             DsError *err)
{
  DsOpCall c = { .op = DS_OP_RMS_NORM, .src = { x, g }, .dst = y };
  c.p.rms_norm.eps = eps;
  return ds_op_run (be, &c, err);
}

DsStatus
ds_rope (DsBackend *be, const DsTensor *x, const DsTensor *pos, int heads, float theta,
         DsTensor *y, DsError *err)
{
  DsOpCall c = { .op = DS_OP_ROPE, .src = { x, pos }, .dst = y };
  c.p.rope.heads = heads;
  c.p.rope.theta = theta;
  return ds_op_run (be, &c, err);
}

DsStatus
ds_attention_kv (DsBackend *be, const DsTensor *q, const DsTensor *k, const DsTensor *v,
                 int heads, int kv_heads, float scale, int64_t q_pos, DsTensor *o,
                 DsError *err)
{
  DsOpCall c = { .op = DS_OP_ATTENTION_KV, .src = { q, k, v }, .dst = o };
  c.p.attention_kv.heads = heads;
  c.p.attention_kv.kv_heads = kv_heads;
  c.p.attention_kv.scale = scale;
  c.p.attention_kv.q_pos = q_pos;
  return ds_op_run (be, &c, err);
}

DsStatus
ds_attention_kv_at (DsBackend *be, const DsTensor *q, const DsTensor *k, const DsTensor *v,
                    int heads, int kv_heads, float scale, const DsTensor *pos, DsTensor *o,
                    DsError *err)
{
  assert (pos);
  DsOpCall c = { .op = DS_OP_ATTENTION_KV, .src = { q, k, v, pos }, .dst = o };
  c.p.attention_kv.heads = heads;
  c.p.attention_kv.kv_heads = kv_heads;
  c.p.attention_kv.scale = scale;
  return ds_op_run (be, &c, err);
}

DsStatus
ds_set_rows (DsBackend *be, const DsTensor *x, const DsTensor *pos, DsTensor *y, DsError *err)
{
  DsOpCall c = { .op = DS_OP_SET_ROWS, .src = { x, pos }, .dst = y };
  return ds_op_run (be, &c, err);
}

DsStatus
ds_permute (DsBackend *be, const DsTensor *x, const int *perm, DsTensor *y, DsError *err)
{
  assert (perm && x);
  DsOpCall c = { .op = DS_OP_PERMUTE, .src = { x }, .dst = y };
  for (int i = 0; i < DS_MAX_DIMS; i++)
    c.p.permute.perm[i] = i < x->ndim ? perm[i] : i;
  return ds_op_run (be, &c, err);
}
