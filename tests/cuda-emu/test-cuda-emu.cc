/* test-cuda-emu.cc: the CUDA emulator's own tests (suite cuda).
 *
 * The scheduler (indices, barriers, early exits, deadlock detection, stack
 * guard pages, reverse order), warp collectives against a host model of CUDA's rules,
 * shared memory, atomics, the mma fragment layout, fp16/bf16 conversions over
 * every bit pattern, the cuBLAS subset against a naive loop for every
 * supported op and type combination, stream capture and graph replay, the
 * memory budget, launch configuration errors and the no-device mode. Each
 * check prints on failure; the exit status is the number of failures (capped).
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "test-cuda-emu.h"

static int failures;

#define CHECK(cond, ...)                                                                      \
  do {                                                                                        \
    if (!(cond))                                                                              \
      {                                                                                       \
        failures++;                                                                           \
        if (failures < 50)                                                                    \
          {                                                                                   \
            fprintf (stderr, "%s:%d: FAILED %s: ", __FILE__, __LINE__, #cond);                \
            fprintf (stderr, __VA_ARGS__);                                                    \
            fputc ('\n', stderr);                                                             \
          }                                                                                   \
      }                                                                                       \
  } while (0)

#define CHECK_CUDA(call) CHECK ((call) == cudaSuccess, "%s", cudaGetErrorName (cudaPeekAtLastError ()))

static uint32_t rng_state = 12345;
static int
rnd (int n)
{
  rng_state = rng_state * 1664525u + 1013904223u;
  return (int) ((rng_state >> 8) % (unsigned) n);
}

/* Runs fn in a child process with `env` set first; returns the wait status.
 * The child's stderr goes to /dev/null unless show is set. */
template <typename F>
static int
in_child (const char *env, F fn, bool quiet = true)
{
  fflush (stdout);
  fflush (stderr);
  pid_t pid = fork ();
  if (pid == 0)
    {
      if (quiet && !freopen ("/dev/null", "w", stderr))
        _exit (99);
      if (env)
        putenv ((char *) env);
      _exit (fn ());
    }
  int status = 0;
  waitpid (pid, &status, 0);
  return status;
}

/* ---- no device, memory budget ---- */

static void
test_no_device ()
{
  int st = in_child ("DS_CUDA_EMU_DEVICES=0", [] () {
    int n = 7;
    void *p;
    if (cudaGetDeviceCount (&n) != cudaErrorNoDevice || n != 0)
      return 1;
    if (cudaGetLastError () != cudaErrorNoDevice || cudaGetLastError () != cudaSuccess)
      return 2;
    if (cudaMalloc (&p, 16) != cudaErrorNoDevice)
      return 3;
    cublasHandle_t h;
    if (cublasCreate (&h) != CUBLAS_STATUS_NOT_INITIALIZED)
      return 4;
    return 0;
  });
  CHECK (WIFEXITED (st) && WEXITSTATUS (st) == 0, "no-device child status %d", st);

  st = in_child ("DS_CUDA_EMU_MEMORY=1M", [] () {
    void *a, *b;
    size_t free_b, total;
    if (cudaMalloc (&a, 600 << 10) != cudaSuccess)
      return 1;
    if (cudaMalloc (&b, 600 << 10) != cudaErrorMemoryAllocation || b != nullptr)
      return 2;
    if (cudaGetLastError () != cudaErrorMemoryAllocation)
      return 3;
    if (cudaMemGetInfo (&free_b, &total) != cudaSuccess || total != 1 << 20
        || free_b != (1 << 20) - (600 << 10))
      return 4;
    if (cudaFree (a) != cudaSuccess || cudaMalloc (&b, 1 << 20) != cudaSuccess)
      return 5;
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties (&prop, 0) != cudaSuccess || prop.totalGlobalMem != 1 << 20)
      return 6;
    return 0;
  });
  CHECK (WIFEXITED (st) && WEXITSTATUS (st) == 0, "budget child status %d", st);
}

static void
test_device ()
{
  int n = 0;
  CHECK_CUDA (cudaGetDeviceCount (&n));
  CHECK (n == 1, "%d devices", n);
  cudaDeviceProp p;
  CHECK_CUDA (cudaGetDeviceProperties (&p, 0));
  CHECK (strcmp (p.name, "Diffscope CUDA emulator") == 0, "%s", p.name);
  CHECK (p.major == 9 && p.minor == 0 && p.warpSize == 32 && p.maxThreadsPerBlock == 1024
           && p.multiProcessorCount == 4 && p.sharedMemPerBlock == 48 << 10
           && p.sharedMemPerBlockOptin == 227 << 10 && p.totalGlobalMem == (size_t) 8 << 30,
         "properties");
  CHECK (cudaGetDeviceProperties (&p, 1) == cudaErrorInvalidDevice, "device 1");
  CHECK (cudaSetDevice (1) == cudaErrorInvalidDevice, "set device 1");
  CHECK (cudaGetLastError () == cudaErrorInvalidDevice, "last error");
  CHECK (cudaGetLastError () == cudaSuccess, "cleared");
  CHECK_CUDA (cudaSetDevice (0));

  void *big = nullptr;
  CHECK (cudaMalloc (&big, (size_t) 9 << 30) == cudaErrorMemoryAllocation, "9 GiB");
  cudaGetLastError ();
  float *d, h[4] = { 1, 2, 3, 4 }, back[4];
  size_t f0, f1, total;
  CHECK_CUDA (cudaMemGetInfo (&f0, &total));
  CHECK_CUDA (cudaMalloc (&d, sizeof h));
  CHECK_CUDA (cudaMemGetInfo (&f1, &total));
  CHECK (f0 - f1 == sizeof h, "free %zu -> %zu", f0, f1);
  CHECK_CUDA (cudaMemcpy (d, h, sizeof h, cudaMemcpyHostToDevice));
  CHECK_CUDA (cudaMemcpy (back, d, sizeof h, cudaMemcpyDeviceToHost));
  CHECK (memcmp (h, back, sizeof h) == 0, "round trip");
  CHECK (cudaMemcpy (h, back, sizeof h, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
         "host pointer as the device side");
  CHECK (cudaMemcpy (d, h, 2 * sizeof h, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
         "copy past the allocation");
  CHECK (cudaFree (h) == cudaErrorInvalidValue, "free of a host pointer");
  cudaGetLastError ();
  CHECK_CUDA (cudaFree (d));
  CHECK_CUDA (cudaFree (nullptr));
  void *pinned;
  CHECK_CUDA (cudaMallocHost (&pinned, 64));
  CHECK_CUDA (cudaFreeHost (pinned));
}

/* ---- scheduler ---- */

static void
test_index ()
{
  const dim3 grids[] = { dim3 (3), dim3 (2, 3, 2), dim3 (5, 1, 1) };
  const dim3 blocks[] = { dim3 (1), dim3 (4, 3, 2), dim3 (33), dim3 (1024) };
  cudaStream_t s;
  CHECK_CUDA (cudaStreamCreate (&s));
  for (dim3 g : grids)
    for (dim3 b : blocks)
      {
        const size_t n = (size_t) g.x * g.y * g.z * b.x * b.y * b.z;
        int *d;
        CHECK_CUDA (cudaMalloc (&d, n * sizeof (int)));
        CHECK_CUDA (emu_test_index (d, g, b, s));
        std::vector<int> h (n);
        CHECK_CUDA (cudaMemcpyAsync (h.data (), d, n * sizeof (int), cudaMemcpyDeviceToHost, s));
        CHECK_CUDA (cudaStreamSynchronize (s));
        size_t bad = 0;
        for (size_t i = 0; i < n; i++)
          bad += h[i] != (int) (2 * i);
        CHECK (bad == 0, "grid (%u,%u,%u) block (%u,%u,%u): %zu wrong", g.x, g.y, g.z, b.x, b.y,
               b.z, bad);
        cudaFree (d);
      }
  cudaStreamDestroy (s);
}

static void
test_barriers ()
{
  const int blocks = 3, n = 1024;
  std::vector<float> x (blocks * n), y (blocks * n);
  for (int i = 0; i < blocks * n; i++)
    x[i] = (float) rnd (1000);
  float *dx, *dy;
  cudaMalloc (&dx, x.size () * 4);
  cudaMalloc (&dy, x.size () * 4);
  cudaMemcpy (dx, x.data (), x.size () * 4, cudaMemcpyHostToDevice);
  CHECK_CUDA (emu_test_reverse (dx, dy, blocks, n));
  cudaMemcpy (y.data (), dy, y.size () * 4, cudaMemcpyDeviceToHost);
  int bad = 0;
  for (int i = 0; i < blocks * n; i++)
    bad += y[i] != 2 * x[i];
  CHECK (bad == 0, "reverse: %d wrong", bad);

  /* Dynamic shared memory: a block scan, and the all-ones start. */
  const int sn = 256;
  int *flags;
  cudaMalloc (&flags, blocks * sizeof (int));
  cudaMemset (flags, 0, blocks * sizeof (int));
  CHECK_CUDA (emu_test_scan (dx, dy, flags, blocks, sn));
  cudaMemcpy (y.data (), dy, blocks * sn * 4, cudaMemcpyDeviceToHost);
  int hf[3];
  cudaMemcpy (hf, flags, sizeof hf, cudaMemcpyDeviceToHost);
  bad = 0;
  for (int b = 0; b < blocks; b++)
    {
      float acc = 0;
      for (int i = 0; i < sn; i++)
        bad += y[b * sn + i] != (acc += x[b * sn + i]);
    }
  CHECK (bad == 0, "scan: %d wrong", bad);
  CHECK (hf[0] == 0 && hf[1] == 0 && hf[2] == 0, "shared memory did not start as 0xff bytes");

  CHECK (emu_test_big_smem (dy, 64 << 10, 0) == cudaErrorInvalidValue, "64 KiB without opt-in");
  CHECK (emu_test_big_smem (dy, 64 << 10, 228 << 10) == cudaErrorInvalidValue, "228 KiB opt-in");
  cudaGetLastError ();
  CHECK (emu_test_big_smem (dy, 64 << 10, 64 << 10) == cudaSuccess, "64 KiB with opt-in");
  CHECK (emu_test_big_smem (dy, 65 << 10, 0) == cudaErrorInvalidValue, "past the opt-in");
  cudaGetLastError ();

  int *p;
  cudaMalloc (&p, 64 * sizeof (int));
  cudaMemset (p, 0, 64 * sizeof (int));
  CHECK_CUDA (emu_test_early_exit (p));
  int hp[64];
  cudaMemcpy (hp, p, sizeof hp, cudaMemcpyDeviceToHost);
  CHECK (hp[0] == 1 && hp[7] == 1 && hp[8] == 0, "early exit");

  float *sum;
  int *mx;
  unsigned long long *cnt;
  cudaMalloc (&sum, 4);
  cudaMalloc (&mx, 4);
  cudaMalloc (&cnt, 8);
  cudaMemset (sum, 0, 4);
  cudaMemset (mx, 0, 4);
  cudaMemset (cnt, 0, 8);
  CHECK_CUDA (emu_test_atomics (sum, mx, cnt));
  float hs;
  int hm, want = 0;
  unsigned long long hc;
  cudaMemcpy (&hs, sum, 4, cudaMemcpyDeviceToHost);
  cudaMemcpy (&hm, mx, 4, cudaMemcpyDeviceToHost);
  cudaMemcpy (&hc, cnt, 8, cudaMemcpyDeviceToHost);
  for (int t = 0; t < 400; t++)
    want = t * 37 % 1001 > want ? t * 37 % 1001 : want;
  CHECK (hs == 200.0f && hm == want && hc == 400, "atomics %g %d %llu", hs, hm, hc);

  int st = in_child (nullptr, [p] () { return (int) emu_test_deadlock (p); });
  CHECK (WIFSIGNALED (st) && WTERMSIG (st) == SIGABRT, "deadlock: status %d", st);
  st = in_child (nullptr, [p] () { return (int) emu_test_overflow (p, 1000); });
  CHECK (WIFSIGNALED (st), "stack overflow: status %d", st);
  st = in_child (nullptr, [p] () { return (int) emu_test_overflow (p, 10); });
  CHECK (WIFEXITED (st) && WEXITSTATUS (st) == 0, "shallow recursion: status %d", st);
  cudaFree (dx);
  cudaFree (dy);
  cudaFree (flags);
  cudaFree (p);
  cudaFree (sum);
  cudaFree (mx);
  cudaFree (cnt);
}

static void test_collectives (int threads);

/* DS_CUDA_EMU_ORDER=reverse (read at each launch): blocks last to first,
 * threads started and released from the highest index down; a race that
 * forward order hides shows; kernels without races give the same results. */
static void
test_order ()
{
  const int blocks = 3, n = 70; /* a partial last warp */
  const int total = blocks * n;
  unsigned *before, *after, *counter;
  float *racy;
  cudaMalloc (&before, total * sizeof (unsigned));
  cudaMalloc (&after, total * sizeof (unsigned));
  cudaMalloc (&counter, sizeof (unsigned));
  cudaMalloc (&racy, total * sizeof (float));
  std::vector<unsigned> hb (total), ha (total);
  std::vector<float> hr (total);
  for (int reverse = 0; reverse < 2; reverse++)
    {
      if (reverse)
        setenv ("DS_CUDA_EMU_ORDER", "reverse", 1);
      cudaMemset (counter, 0, sizeof (unsigned));
      CHECK_CUDA (emu_test_order (before, after, counter, blocks, n));
      cudaMemcpy (hb.data (), before, total * sizeof (unsigned), cudaMemcpyDeviceToHost);
      cudaMemcpy (ha.data (), after, total * sizeof (unsigned), cudaMemcpyDeviceToHost);
      int bad = 0;
      for (int b = 0; b < blocks; b++)
        for (int t = 0; t < n; t++)
          {
            const unsigned pos = (unsigned) (reverse ? blocks - 1 - b : b) * 2 * n;
            const unsigned rank = (unsigned) (reverse ? n - 1 - t : t);
            bad += hb[b * n + t] != pos + rank || ha[b * n + t] != pos + n + rank;
          }
      CHECK (bad == 0, "%s order: %d threads ran out of it", reverse ? "reverse" : "forward", bad);

      CHECK_CUDA (emu_test_racy (racy, blocks, n));
      cudaMemcpy (hr.data (), racy, total * sizeof (float), cudaMemcpyDeviceToHost);
      int seen = 0; /* threads that read their neighbour's value */
      for (int b = 0; b < blocks; b++)
        for (int t = 1; t < n; t++)
          seen += hr[b * n + t] == (float) (t - 1);
      CHECK (seen == (reverse ? 0 : blocks * (n - 1)), "%s order: the race read %d written values",
             reverse ? "reverse" : "forward", seen);
    }
  /* race-free kernels give the same results in reverse */
  test_index ();
  for (int threads : { 48, 1024 })
    test_collectives (threads);
  std::vector<float> x (total);
  for (int i = 0; i < total; i++)
    x[i] = (float) rnd (1000);
  float *dx, *dy;
  cudaMalloc (&dx, total * sizeof (float));
  cudaMalloc (&dy, total * sizeof (float));
  cudaMemcpy (dx, x.data (), total * sizeof (float), cudaMemcpyHostToDevice);
  CHECK_CUDA (emu_test_reverse (dx, dy, blocks, n)); /* y = 2 x through static shared memory */
  cudaMemcpy (hr.data (), dy, total * sizeof (float), cudaMemcpyDeviceToHost);
  int bad = 0;
  for (int i = 0; i < total; i++)
    bad += hr[i] != 2 * x[i];
  CHECK (bad == 0, "reverse order: the barrier kernel got %d wrong", bad);
  int *flags;
  cudaMalloc (&flags, blocks * sizeof (int));
  CHECK_CUDA (emu_test_scan (dx, dy, flags, blocks, 64)); /* a scan in dynamic shared memory */
  cudaMemcpy (hr.data (), dy, blocks * 64 * sizeof (float), cudaMemcpyDeviceToHost);
  bad = 0;
  for (int b = 0; b < blocks; b++)
    {
      float acc = 0;
      for (int i = 0; i < 64; i++)
        bad += hr[b * 64 + i] != (acc += x[b * 64 + i]);
    }
  CHECK (bad == 0, "reverse order: the scan got %d wrong", bad);
  cudaFree (dx);
  cudaFree (dy);
  cudaFree (flags);
  setenv ("DS_CUDA_EMU_ORDER", "sideways", 1);
  int st = in_child (nullptr, [racy] () { return (int) emu_test_racy (racy, 1, 32); });
  CHECK (WIFSIGNALED (st) && WTERMSIG (st) == SIGABRT, "unknown order: status %d", st);
  unsetenv ("DS_CUDA_EMU_ORDER");
  cudaFree (before);
  cudaFree (after);
  cudaFree (counter);
  cudaFree (racy);
}

/* ---- warp collectives against CUDA's rules ---- */

static void
test_collectives (int threads)
{
  float *d;
  cudaMalloc (&d, (size_t) threads * EMU_COLL_N * 4);
  CHECK_CUDA (emu_test_collectives (d, threads));
  std::vector<float> o ((size_t) threads * EMU_COLL_N);
  cudaMemcpy (o.data (), d, o.size () * 4, cudaMemcpyDeviceToHost);
  cudaFree (d);
  auto val = [] (int t) { return (float) (t * 10 + 1); };
  int bad = 0;
  for (int t = 0; t < threads; t++)
    {
      const int lane = t % 32, w0 = t - lane, lanes = threads - w0 < 32 ? threads - w0 : 32;
      auto from = [&] (int src) { return src >= 0 && src < lanes ? val (w0 + src) : val (t); };
      const float *r = &o[(size_t) t * EMU_COLL_N];
      float want[EMU_COLL_N];
      want[0] = from ((lane * 7 + 3) % 32);
      want[1] = lane >= 3 ? from (lane - 3) : val (t);
      want[2] = lane + 5 < 32 ? from (lane + 5) : val (t);
      want[3] = from (lane ^ 9);
      want[4] = lane % 16 + 3 < 16 ? from (lane + 3) : val (t);
      want[5] = from (lane ^ 5);
      want[6] = lane + 1 < 32 ? from (lane + 1) : val (t);
      want[7] = lane >= 2 ? (float) (t - 2) : (float) t;
      unsigned ballot = 0;
      for (int l = 0; l < lanes; l++)
        ballot |= (l % 3 == 0) << l;
      want[8] = (float) ballot;
      want[9] = w0 == 0 && lanes > 5 ? 1.0f : 0.0f;
      int all = 1;
      for (int l = 0; l < lanes; l++)
        all &= w0 + l < 40;
      want[10] = (float) all;
      /* The warp sum by shuffle-down: lane 0 has the total; others partial
       * sums that are easiest to model by running the same steps. */
      float s[32];
      for (int l = 0; l < 32; l++)
        s[l] = l < lanes ? val (w0 + l) : 0.0f;
      for (int dd = 16; dd > 0; dd >>= 1)
        {
          float n[32];
          for (int l = 0; l < lanes; l++)
            n[l] = s[l] + (l + dd < lanes && l + dd < 32 ? s[l + dd] : s[l]);
          memcpy (s, n, sizeof n);
        }
      want[11] = s[lane];
      want[12] = lane < 16 ? from (lane ^ 1) : -1.0f;
      want[13] = (float) w0;
      for (int k = 0; k < EMU_COLL_N; k++)
        if (r[k] != want[k])
          {
            if (bad++ < 5)
              fprintf (stderr, "  thread %d of %d, value %d: %g, want %g\n", t, threads, k,
                       r[k], want[k]);
          }
    }
  CHECK (bad == 0, "collectives with %d threads: %d wrong", threads, bad);
}

/* ---- mma ---- */

template <typename H>
static void
test_mma (bool bf)
{
  H a[256], b[128];
  float ra[256], rb[128], c[128], dmat[128];
  for (int i = 0; i < 256; i++)
    ra[i] = (float) (rnd (9) - 4), a[i] = H (ra[i]);
  for (int i = 0; i < 128; i++)
    rb[i] = (float) (rnd (7) - 3), b[i] = H (rb[i]), c[i] = (float) (rnd (5) - 2);
  void *da, *db;
  float *dc, *dd;
  cudaMalloc (&da, sizeof a);
  cudaMalloc (&db, sizeof b);
  cudaMalloc (&dc, sizeof c);
  cudaMalloc (&dd, sizeof dmat);
  cudaMemcpy (da, a, sizeof a, cudaMemcpyHostToDevice);
  cudaMemcpy (db, b, sizeof b, cudaMemcpyHostToDevice);
  cudaMemcpy (dc, c, sizeof c, cudaMemcpyHostToDevice);
  CHECK_CUDA (bf ? emu_test_mma_bf16 (da, db, dc, dd) : emu_test_mma_f16 (da, db, dc, dd));
  cudaMemcpy (dmat, dd, sizeof dmat, cudaMemcpyDeviceToHost);
  int bad = 0;
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 8; j++)
      {
        float s = c[i * 8 + j];
        for (int k = 0; k < 16; k++)
          s += ra[i * 16 + k] * rb[k * 8 + j];
        bad += dmat[i * 8 + j] != s;
      }
  CHECK (bad == 0, "mma %s: %d of 128 wrong", bf ? "bf16" : "f16", bad);
  cudaFree (da);
  cudaFree (db);
  cudaFree (dc);
  cudaFree (dd);
}

/* ---- ldmatrix: each lane's registers by the PTX layout ---- */

static void
test_ldmatrix ()
{
  int *d, bad = -1;
  cudaMalloc (&d, sizeof *d);
  cudaMemset (d, 0, sizeof *d);
  CHECK_CUDA (emu_test_ldmatrix (d));
  cudaMemcpy (&bad, d, sizeof bad, cudaMemcpyDeviceToHost);
  CHECK (bad == 0, "ldmatrix: %d of 256 registers wrong", bad);
  cudaFree (d);
}

/* ---- cp.async: copies land at the wait for their group, not before ---- */

static void
test_cp_async ()
{
  float *src, *out, h_src[128], h_out[96];
  for (int i = 0; i < 128; i++)
    h_src[i] = (float) i;
  CHECK_CUDA (cudaMalloc ((void **) &src, sizeof h_src));
  CHECK_CUDA (cudaMalloc ((void **) &out, sizeof h_out));
  CHECK_CUDA (cudaMemcpy (src, h_src, sizeof h_src, cudaMemcpyHostToDevice));
  CHECK_CUDA (emu_test_cp_async (src, out));
  CHECK_CUDA (cudaMemcpy (h_out, out, sizeof h_out, cudaMemcpyDeviceToHost));
  int bad = 0;
  for (int t = 0; t < 32; t++)
    {
      const float copied = t % 2 ? 0.0f : (float) (4 * t); /* odd threads zero-fill */
      bad += h_out[3 * t] != -1.0f;            /* nothing landed before a wait */
      bad += h_out[3 * t + 1] != copied + 100; /* group 0 landed, group 1 not yet */
      bad += h_out[3 * t + 2] != (float) (4 * t);
    }
  CHECK (bad == 0, "cp.async: %d of 96 values wrong", bad);
  cudaFree (src);
  cudaFree (out);
}

/* ---- fp16 / bf16 ---- */

static uint32_t
bits (float f)
{
  uint32_t u;
  memcpy (&u, &f, 4);
  return u;
}

/* IEEE binary16 decoded independently of the emulator's code. */
static double
half_value (unsigned h)
{
  const int e = (h >> 10) & 31, m = h & 1023;
  const double s = h & 0x8000 ? -1.0 : 1.0;
  if (e == 31)
    return m ? NAN : s * INFINITY;
  return e == 0 ? s * ldexp (m, -24) : s * ldexp (1024 + m, e - 25);
}

static void
test_half ()
{
  int bad = 0;
  for (unsigned h = 0; h < 65536; h++)
    {
      const double v = half_value (h);
      const float f = __half2float (__ushort_as_half ((unsigned short) h));
      if (isnan (v))
        bad += bits (f) != 0x7fffffffu
               || __half_as_ushort (__float2half_rn (f)) != 0x7fff;
      else
        {
          bad += (double) f != v || signbit (f) != signbit (v);
          bad += __half_as_ushort (__float2half_rn (f)) != h; /* exact values round-trip */
          bad += __half_as_ushort (__float2half (f)) != h;
        }
      /* Between h and the next magnitude up: the midpoint goes to the even
       * one, anything off it to the nearer one. */
      const unsigned mag = h & 0x7fff;
      if (mag < 0x7c00)
        {
          const double next = mag == 0x7bff ? 65536.0 : fabs (half_value (h + 1));
          const double s = h & 0x8000 ? -1.0 : 1.0;
          const float mid = (float) (s * (fabs (v) + next) / 2);
          const unsigned up = (h + 1) & 0xffff, even = (mag & 1) ? up : h;
          bad += __half_as_ushort (__float2half_rn (mid)) != even;
          bad += __half_as_ushort (__float2half_rn (nextafterf (mid, 0.0f))) != h;
          bad += __half_as_ushort (__float2half_rn (nextafterf (mid, (float) (s * INFINITY))))
                 != up;
        }
    }
  CHECK (bad == 0, "fp16 conversions: %d wrong", bad);
  CHECK (__half_as_ushort (__float2half_rn (1e10f)) == 0x7c00
           && __half_as_ushort (__float2half_rn (-1e10f)) == 0xfc00
           && __half_as_ushort (__float2half_rn (1e-10f)) == 0
           && __half_as_ushort (__float2half_rn (-1e-10f)) == 0x8000,
         "fp16 extremes");
  __half x = 1.5f, y = 2.25f;
  CHECK ((float) (x + y) == 3.75f && (float) (x * y) == 3.375f && (float) (x - y) == -0.75f
           && x < y && (float) __hmax (x, y) == 2.25f && (float) __habs (-x) == 1.5f,
         "fp16 arithmetic");
  __half2 p = __floats2half2_rn (1.0f, -2.0f);
  float2 q = __half22float2 (__hmul2 (p, __halves2half2 (x, y)));
  CHECK (q.x == 1.5f && q.y == -4.5f && __low2float (p) == 1.0f && __high2float (p) == -2.0f,
         "half2");

  bad = 0;
  for (unsigned h = 0; h < 65536; h++)
    {
      const float f = __bfloat162float (__ushort_as_bfloat16 ((unsigned short) h));
      if (isnan (f))
        {
          bad += __bfloat16_as_ushort (__float2bfloat16_rn (f)) != 0x7fff;
          continue;
        }
      bad += bits (f) != h << 16;
      bad += __bfloat16_as_ushort (__float2bfloat16 (f)) != h;
      const unsigned mag = h & 0x7fff;
      if (mag < 0x7f80)
        {
          const unsigned up = (h + 1) & 0xffff, even = (mag & 1) ? up : h;
          const uint32_t midbits = (h << 16) | 0x8000u;
          float mid;
          memcpy (&mid, &midbits, 4);
          bad += __bfloat16_as_ushort (__float2bfloat16_rn (mid)) != even;
          bad += __bfloat16_as_ushort (__float2bfloat16_rn (nextafterf (mid, 0.0f))) != h;
          bad += __bfloat16_as_ushort (
                   __float2bfloat16_rn (nextafterf (mid, h & 0x8000 ? -INFINITY : INFINITY)))
                 != up;
        }
    }
  CHECK (bad == 0, "bf16 conversions: %d wrong", bad);
  float2 bq = __bfloat1622float2 (__floats2bfloat162_rn (1.0f, 3.0f));
  CHECK (bq.x == 1.0f && bq.y == 3.0f, "bf16x2");
}

/* ---- cuBLAS ---- */

static float
round_to (cudaDataType t, float v)
{
  if (t == CUDA_R_16F)
    return __half2float (__float2half_rn (v));
  if (t == CUDA_R_16BF)
    return __bfloat162float (__float2bfloat16_rn (v));
  return v;
}

static void
put (cudaDataType t, void *p, size_t i, float v)
{
  if (t == CUDA_R_16F)
    ((__half *) p)[i] = __float2half_rn (v);
  else if (t == CUDA_R_16BF)
    ((__nv_bfloat16 *) p)[i] = __float2bfloat16_rn (v);
  else
    ((float *) p)[i] = v;
}

static float
get (cudaDataType t, const void *p, size_t i)
{
  if (t == CUDA_R_16F)
    return __half2float (((const __half *) p)[i]);
  if (t == CUDA_R_16BF)
    return __bfloat162float (((const __nv_bfloat16 *) p)[i]);
  return ((const float *) p)[i];
}

enum Api { API_SGEMM, API_SGEMM_STRIDED, API_EX, API_EX_STRIDED, API_EX_BATCHED };

/* One GEMM through `api` against a naive loop. The values are small
 * multiples of 1/4, so every product and sum is exact in float and only the
 * rounding to C's type remains: results must match exactly. */
static void
gemm_case (cublasHandle_t h, Api api, cublasOperation_t ta, cublasOperation_t tb, cudaDataType at,
           cudaDataType ct, cublasComputeType_t compute, float beta)
{
  const int m = 5, n = 7, k = 9, batch = api == API_SGEMM || api == API_EX ? 1 : 3;
  const int ra = ta == CUBLAS_OP_N ? m : k, ca = ta == CUBLAS_OP_N ? k : m;
  const int rb = tb == CUBLAS_OP_N ? k : n, cb = tb == CUBLAS_OP_N ? n : k;
  const int lda = ra + 2, ldb = rb + 1, ldc = m + 3;
  const long long sa = (long long) lda * ca + 5, sb = (long long) ldb * cb, sc = (long long) ldc * n + 1;
  const size_t es = at == CUDA_R_32F ? 4 : 2, cs = ct == CUDA_R_32F ? 4 : 2;
  std::vector<unsigned char> A (sa * batch * es), B (sb * batch * es), C (sc * batch * cs), C0;
  for (size_t i = 0; i < (size_t) sa * batch; i++)
    put (at, A.data (), i, (rnd (17) - 8) / 4.0f);
  for (size_t i = 0; i < (size_t) sb * batch; i++)
    put (at, B.data (), i, (rnd (17) - 8) / 4.0f);
  for (size_t i = 0; i < (size_t) sc * batch; i++)
    put (ct, C.data (), i, beta == 0.0f ? NAN : (rnd (9) - 4) / 2.0f);
  C0 = C;
  void *dA, *dB, *dC;
  cudaMalloc (&dA, A.size ());
  cudaMalloc (&dB, B.size ());
  cudaMalloc (&dC, C.size ());
  cudaMemcpy (dA, A.data (), A.size (), cudaMemcpyHostToDevice);
  cudaMemcpy (dB, B.data (), B.size (), cudaMemcpyHostToDevice);
  cudaMemcpy (dC, C.data (), C.size (), cudaMemcpyHostToDevice);
  const float alpha = 1.5f;
  cublasStatus_t s = CUBLAS_STATUS_INTERNAL_ERROR;
  switch (api)
    {
    case API_SGEMM:
      s = cublasSgemm (h, ta, tb, m, n, k, &alpha, (float *) dA, lda, (float *) dB, ldb, &beta,
                       (float *) dC, ldc);
      break;
    case API_SGEMM_STRIDED:
      s = cublasSgemmStridedBatched (h, ta, tb, m, n, k, &alpha, (float *) dA, lda, sa,
                                     (float *) dB, ldb, sb, &beta, (float *) dC, ldc, sc, batch);
      break;
    case API_EX:
      s = cublasGemmEx (h, ta, tb, m, n, k, &alpha, dA, at, lda, dB, at, ldb, &beta, dC, ct, ldc,
                        compute, CUBLAS_GEMM_DEFAULT);
      break;
    case API_EX_STRIDED:
      s = cublasGemmStridedBatchedEx (h, ta, tb, m, n, k, &alpha, dA, at, lda, sa, dB, at, ldb, sb,
                                      &beta, dC, ct, ldc, sc, batch, compute,
                                      CUBLAS_GEMM_DEFAULT_TENSOR_OP);
      break;
    case API_EX_BATCHED:
      {
        const void *pa[3], *pb[3];
        void *pc[3];
        for (int i = 0; i < batch; i++)
          {
            pa[i] = (char *) dA + i * sa * es;
            pb[i] = (char *) dB + i * sb * es;
            pc[i] = (char *) dC + i * sc * cs;
          }
        void *dpa, *dpb, *dpc;
        cudaMalloc (&dpa, sizeof pa);
        cudaMalloc (&dpb, sizeof pb);
        cudaMalloc (&dpc, sizeof pc);
        cudaMemcpy (dpa, pa, sizeof pa, cudaMemcpyHostToDevice);
        cudaMemcpy (dpb, pb, sizeof pb, cudaMemcpyHostToDevice);
        cudaMemcpy (dpc, pc, sizeof pc, cudaMemcpyHostToDevice);
        s = cublasGemmBatchedEx (h, ta, tb, m, n, k, &alpha, (const void *const *) dpa, at, lda,
                                 (const void *const *) dpb, at, ldb, &beta, (void *const *) dpc,
                                 ct, ldc, batch, compute, CUBLAS_GEMM_DEFAULT);
        cudaFree (dpa);
        cudaFree (dpb);
        cudaFree (dpc);
      }
      break;
    }
  CHECK (s == CUBLAS_STATUS_SUCCESS, "api %d: %s", api, cublasGetStatusName (s));
  cudaMemcpy (C.data (), dC, C.size (), cudaMemcpyDeviceToHost);
  int bad = 0;
  for (int b = 0; b < batch; b++)
    for (int j = 0; j < n; j++)
      for (int i = 0; i < m; i++)
        {
          double acc = 0;
          for (int p = 0; p < k; p++)
            {
              const size_t ia = ta == CUBLAS_OP_N ? (size_t) p * lda + i : (size_t) i * lda + p;
              const size_t ib = tb == CUBLAS_OP_N ? (size_t) j * ldb + p : (size_t) p * ldb + j;
              acc += (double) get (at, A.data (), b * sa + ia) * get (at, B.data (), b * sb + ib);
            }
          const size_t ic = b * sc + (size_t) j * ldc + i;
          double want = alpha * acc + (beta != 0.0f ? beta * get (ct, C0.data (), ic) : 0.0);
          bad += get (ct, C.data (), ic) != round_to (ct, (float) want);
        }
  /* Padding between columns and batches is untouched. */
  for (int b = 0; b < batch; b++)
    for (int j = 0; j < n; j++)
      for (int i = m; i < ldc; i++)
        {
          const size_t ic = b * sc + (size_t) j * ldc + i;
          if (ic < C.size () / cs)
            bad += memcmp (&C[ic * cs], &C0[ic * cs], cs) != 0;
        }
  CHECK (bad == 0, "gemm api %d op %d%d types %d->%d compute %d beta %g: %d wrong", api, ta, tb,
         at, ct, compute, beta, bad);
  cudaFree (dA);
  cudaFree (dB);
  cudaFree (dC);
}

static void
test_cublas ()
{
  cublasHandle_t h;
  CHECK (cublasCreate (&h) == CUBLAS_STATUS_SUCCESS, "create");
  cudaStream_t st;
  cudaStreamCreate (&st);
  CHECK (cublasSetStream (h, st) == CUBLAS_STATUS_SUCCESS, "set stream");
  cudaStream_t got;
  CHECK (cublasGetStream (h, &got) == CUBLAS_STATUS_SUCCESS && got == st, "get stream");
  CHECK (cublasSetMathMode (h, CUBLAS_PEDANTIC_MATH) == CUBLAS_STATUS_SUCCESS, "math mode");
  cublasMath_t mm;
  CHECK (cublasGetMathMode (h, &mm) == CUBLAS_STATUS_SUCCESS && mm == CUBLAS_PEDANTIC_MATH, "get");
  CHECK (cublasSetWorkspace (h, nullptr, 0) == CUBLAS_STATUS_SUCCESS, "workspace");

  const cublasOperation_t ops[] = { CUBLAS_OP_N, CUBLAS_OP_T };
  struct Combo {
    cudaDataType at, ct;
    cublasComputeType_t compute;
  };
  const Combo combos[] = {
    { CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F },
    { CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_PEDANTIC },
    { CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_16F },
    { CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32 },
    { CUDA_R_16F, CUDA_R_16F, CUBLAS_COMPUTE_32F },
    { CUDA_R_16F, CUDA_R_32F, CUBLAS_COMPUTE_32F },
    { CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F },
    { CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F_PEDANTIC },
  };
  for (cublasOperation_t ta : ops)
    for (cublasOperation_t tb : ops)
      for (float beta : { 0.0f, 0.5f })
        {
          gemm_case (h, API_SGEMM, ta, tb, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, beta);
          gemm_case (h, API_SGEMM_STRIDED, ta, tb, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F,
                     beta);
          for (const Combo &c : combos)
            for (Api api : { API_EX, API_EX_STRIDED, API_EX_BATCHED })
              gemm_case (h, api, ta, tb, c.at, c.ct, c.compute, beta);
        }

  /* What the compute types may do to inputs: TF32 drops 1 + 2^-20 to 1. */
  float *d;
  cudaMalloc (&d, 3 * sizeof (float));
  const float one_plus = 1.0f + 0x1p-20f, vals[3] = { one_plus, 1.0f, 0.0f };
  const float one = 1.0f, zero = 0.0f;
  float r;
  for (cublasComputeType_t c : { CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_COMPUTE_32F_FAST_TF32 })
    {
      cudaMemcpy (d, vals, sizeof vals, cudaMemcpyHostToDevice);
      cublasGemmEx (h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, d, CUDA_R_32F, 1, d + 1,
                    CUDA_R_32F, 1, &zero, d + 2, CUDA_R_32F, 1, c, CUBLAS_GEMM_DEFAULT);
      cudaMemcpy (&r, d + 2, 4, cudaMemcpyDeviceToHost);
      CHECK (r == (c == CUBLAS_COMPUTE_32F_FAST_TF32 ? 1.0f : one_plus), "compute %d: %a", c, r);
    }

  /* Argument checks. */
  float *f = d;
  CHECK (cublasSgemm (h, CUBLAS_OP_N, CUBLAS_OP_N, -1, 1, 1, &one, f, 1, f, 1, &zero, f, 1)
           == CUBLAS_STATUS_INVALID_VALUE, "m < 0");
  CHECK (cublasSgemm (h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 1, 1, &one, f, 3, f, 1, &zero, f, 4)
           == CUBLAS_STATUS_INVALID_VALUE, "lda < m");
  CHECK (cublasSgemm (h, CUBLAS_OP_T, CUBLAS_OP_N, 4, 1, 2, &one, f, 1, f, 2, &zero, f, 4)
           == CUBLAS_STATUS_INVALID_VALUE, "lda < k for op T");
  CHECK (cublasSgemm (h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 1, 1, &one, f, 4, f, 1, &zero, f, 3)
           == CUBLAS_STATUS_INVALID_VALUE, "ldc < m");
  CHECK (cublasSgemm (nullptr, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, f, 1, f, 1, &zero, f, 1)
           == CUBLAS_STATUS_NOT_INITIALIZED, "null handle");
  CHECK (cublasGemmEx (h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, f, CUDA_R_32F, 1, f,
                       CUDA_R_32F, 1, &zero, f, CUDA_R_16F, 1, CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED, "32F -> 16F");
  CHECK (cublasGemmEx (h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, f, CUDA_R_16F, 1, f,
                       CUDA_R_32F, 1, &zero, f, CUDA_R_32F, 1, CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED, "mixed A/B");
  CHECK (cublasGemmEx (h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, f, CUDA_R_32F, 1, f,
                       CUDA_R_32F, 1, &zero, f, CUDA_R_32F, 1, CUBLAS_COMPUTE_64F,
                       CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED, "64F compute");
  CHECK (cublasGemmEx (h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, f, CUDA_R_16F, 1, f,
                       CUDA_R_16F, 1, &zero, f, CUDA_R_16F, 1, CUBLAS_COMPUTE_32F_FAST_TF32,
                       CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED, "16F with TF32");
  CHECK (strcmp (cublasGetStatusName (CUBLAS_STATUS_INVALID_VALUE), "CUBLAS_STATUS_INVALID_VALUE")
           == 0, "status name");
  cudaFree (d);
  cublasDestroy (h);
  cudaStreamDestroy (st);
}

/* ---- capture and graphs ---- */

static void
test_graphs ()
{
  cudaStream_t s;
  cudaStreamCreateWithFlags (&s, cudaStreamNonBlocking);
  cublasHandle_t h;
  cublasCreate (&h);
  cublasSetStream (h, s);
  const int n = 64;
  int *di, *dj;
  float *dx, *dy;
  cudaMalloc (&di, n * sizeof (int));
  cudaMalloc (&dj, n * sizeof (int));
  cudaMalloc (&dx, 4 * sizeof (float));
  cudaMalloc (&dy, 4 * sizeof (float));
  cudaMemset (dj, 0, n * sizeof (int));
  float x[4] = { 1, 2, 3, 4 };
  cudaMemcpy (dx, x, sizeof x, cudaMemcpyHostToDevice);
  const float two = 2.0f, zero = 0.0f;

  cudaStreamCaptureStatus cs;
  CHECK_CUDA (cudaStreamIsCapturing (s, &cs));
  CHECK (cs == cudaStreamCaptureStatusNone, "not capturing");
  CHECK_CUDA (cudaStreamBeginCapture (s, cudaStreamCaptureModeGlobal));
  CHECK_CUDA (cudaStreamIsCapturing (s, &cs));
  CHECK (cs == cudaStreamCaptureStatusActive, "capturing");
  CHECK_CUDA (cudaMemsetAsync (di, 0, n * sizeof (int), s));
  CHECK_CUDA (emu_test_index (di, dim3 (2), dim3 (n / 2), s));
  CHECK_CUDA (cudaMemcpyAsync (dj, di, n * sizeof (int), cudaMemcpyDeviceToDevice, s));
  /* y[2x2] = 2 * x[2x2] . I, written as a GEMM with x as both: y = 2 x x */
  CHECK (cublasSgemm (h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &two, dx, 2, dx, 2, &zero, dy, 2)
           == CUBLAS_STATUS_SUCCESS, "gemm in capture");
  cudaGraph_t g;
  CHECK_CUDA (cudaStreamEndCapture (s, &g));
  int hj[n];
  float hy[4];
  cudaMemcpy (hj, dj, sizeof hj, cudaMemcpyDeviceToHost);
  CHECK (hj[5] == 0, "captured work ran during capture");
  cudaGraphExec_t exec;
  CHECK_CUDA (cudaGraphInstantiate (&exec, g, 0));
  CHECK_CUDA (cudaGraphDestroy (g));
  for (int round = 0; round < 2; round++)
    {
      /* The replay reads the inputs as they are at launch time. */
      for (int i = 0; i < 4; i++)
        x[i] = (float) (i + 1 + round);
      cudaMemcpy (dx, x, sizeof x, cudaMemcpyHostToDevice);
      CHECK_CUDA (cudaGraphLaunch (exec, s));
      CHECK_CUDA (cudaStreamSynchronize (s));
      cudaMemcpy (hj, dj, sizeof hj, cudaMemcpyDeviceToHost);
      cudaMemcpy (hy, dy, sizeof hy, cudaMemcpyDeviceToHost);
      int bad = 0;
      for (int i = 0; i < n; i++)
        bad += hj[i] != 2 * i;
      CHECK (bad == 0, "replay %d: %d wrong", round, bad);
      /* column-major 2x2: y = 2 * x * x */
      const float want0 = 2 * (x[0] * x[0] + x[2] * x[1]);
      CHECK (hy[0] == want0, "replay %d gemm: %g want %g", round, hy[0], want0);
    }
  CHECK_CUDA (cudaGraphExecDestroy (exec));

  /* Synchronous calls during capture fail and spoil it. */
  CHECK_CUDA (cudaStreamBeginCapture (s, cudaStreamCaptureModeRelaxed));
  CHECK (cudaStreamSynchronize (s) == cudaErrorStreamCaptureUnsupported, "sync in capture");
  CHECK_CUDA (cudaStreamIsCapturing (s, &cs));
  CHECK (cs == cudaStreamCaptureStatusInvalidated, "invalidated");
  CHECK (cudaStreamEndCapture (s, &g) == cudaErrorStreamCaptureInvalidated && g == nullptr,
         "end of a spoilt capture");
  CHECK_CUDA (cudaStreamBeginCapture (s, cudaStreamCaptureModeThreadLocal));
  CHECK (cudaMemcpy (hj, dj, sizeof hj, cudaMemcpyDeviceToHost)
           == cudaErrorStreamCaptureUnsupported, "cudaMemcpy in capture");
  CHECK (cudaStreamEndCapture (s, &g) == cudaErrorStreamCaptureInvalidated, "spoilt by memcpy");
  CHECK (cudaStreamEndCapture (s, &g) == cudaErrorIllegalState, "end without begin");
  CHECK (cudaStreamBeginCapture (0, cudaStreamCaptureModeGlobal)
           == cudaErrorStreamCaptureUnsupported, "capture of the legacy stream");
  /* A bad launch during capture spoils it too. */
  CHECK_CUDA (cudaStreamBeginCapture (s, cudaStreamCaptureModeGlobal));
  CHECK (emu_test_index (di, dim3 (1), dim3 (2048), s) == cudaErrorInvalidConfiguration, "bad");
  CHECK (cudaStreamEndCapture (s, &g) == cudaErrorStreamCaptureInvalidated, "spoilt by launch");
  cudaGetLastError ();

  cudaEvent_t e0, e1;
  CHECK_CUDA (cudaEventCreate (&e0));
  CHECK_CUDA (cudaEventCreate (&e1));
  CHECK_CUDA (cudaEventRecord (e0, s));
  CHECK_CUDA (emu_test_index (di, dim3 (2), dim3 (n / 2), s));
  CHECK_CUDA (cudaEventRecord (e1, s));
  CHECK_CUDA (cudaEventSynchronize (e1));
  float ms = -1;
  CHECK_CUDA (cudaEventElapsedTime (&ms, e0, e1));
  CHECK (ms >= 0.0f, "elapsed %g", ms);
  cudaEventDestroy (e0);
  cudaEventDestroy (e1);
  cublasDestroy (h);
  cudaStreamDestroy (s);
  cudaFree (di);
  cudaFree (dj);
  cudaFree (dx);
  cudaFree (dy);
}

static void
test_launch_errors ()
{
  struct {
    dim3 grid, block;
  } bad[] = {
    { dim3 (1), dim3 (0) },        { dim3 (1), dim3 (1025) },
    { dim3 (1), dim3 (32, 32, 2) }, { dim3 (1, 65536), dim3 (32) },
    { dim3 (1, 1, 65536), dim3 (32) }, { dim3 (0), dim3 (32) },
  };
  for (auto &c : bad)
    {
      CHECK (emu_test_launch_config (c.grid, c.block) == cudaErrorInvalidConfiguration,
             "grid (%u,%u,%u) block (%u,%u,%u)", c.grid.x, c.grid.y, c.grid.z, c.block.x,
             c.block.y, c.block.z);
      /* Sticky until read: peek keeps it, get returns and clears it. */
      CHECK (cudaPeekAtLastError () == cudaErrorInvalidConfiguration, "peek");
      CHECK (cudaGetLastError () == cudaErrorInvalidConfiguration, "get");
      CHECK (cudaGetLastError () == cudaSuccess, "cleared");
    }
  CHECK (strcmp (cudaGetErrorName (cudaErrorInvalidConfiguration),
                 "cudaErrorInvalidConfiguration") == 0
           && strcmp (cudaGetErrorString (cudaErrorMemoryAllocation), "out of memory") == 0,
         "error strings");
}

int
main ()
{
  test_no_device (); /* first: the children must read the environment afresh */
  test_device ();
  test_index ();
  test_barriers ();
  test_order ();
  for (int threads : { 32, 64, 48, 7, 1024 })
    test_collectives (threads);
  test_mma<__half> (false);
  test_mma<__nv_bfloat16> (true);
  test_ldmatrix ();
  test_cp_async ();
  test_half ();
  test_cublas ();
  test_graphs ();
  test_launch_errors ();
  if (failures)
    fprintf (stderr, "%d check(s) failed\n", failures);
  else
    printf ("all emulator checks passed\n");
  return failures ? 1 : 0;
}
