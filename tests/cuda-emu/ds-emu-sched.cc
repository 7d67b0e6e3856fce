/* ds-emu-sched.cc: the CUDA emulator's thread scheduler (tests/cuda-emu/
 * README.md).
 *
 * Blocks run one after another. Inside a block every CUDA thread is a
 * cooperative fiber on the launching OS thread, started lazily in thread
 * order: a fiber runs threads back to back until one of them blocks at a
 * barrier or warp collective, and only then does the next thread need a fresh
 * fiber. So a barrier-free kernel costs one function call per thread, and a
 * kernel with barriers holds one stack per thread that is waiting.
 *
 * Once every thread has started, the scheduler releases barriers: a warp's
 * waiting lanes when every live lane they name in their masks is waiting, and
 * the whole block when every live thread waits at __syncthreads. Threads that
 * have exited count as absent (as on hardware since Volta). When nothing can
 * be released while threads still wait, the kernel has deadlocked: that is a
 * bug in the kernel, reported with the kernel and block before abort().
 *
 * DS_CUDA_EMU_ORDER=reverse runs the blocks last to first and starts and
 * releases the threads of a block in decreasing index order. A kernel that is
 * correct on a GPU gives the same result both ways; one that depends on the
 * default order (a thread reading shared memory another wrote with no
 * barrier between them, a block reading what another block writes) gives a
 * different one, or reads the all-ones bytes fresh memory starts with: the
 * order the schedule happens to hide such a race in forward is the one it
 * shows in reverse. The cuda suite runs backend-ops, llama-cuda and
 * unet-cuda both ways.
 *
 * Switching is a few instructions of assembly on x86-64 (ucontext elsewhere,
 * correct but slower: glibc's swapcontext makes a system call per switch).
 * Each stack has a PROT_NONE guard page below it, and every switch is
 * announced to AddressSanitizer when it is on.
 */
#include "ds-emu-internal.h"
#include "ds-emu-fp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define DS_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DS_EMU_ASAN 1
#endif
#endif
#ifdef DS_EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__x86_64__)
#define DS_EMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

uint3 threadIdx;
uint3 blockIdx;
dim3 blockDim;
dim3 gridDim;

#ifdef DS_EMU_ASM_SWITCH
/* ds_emu_switch (save, to): pushes the callee-saved registers (and the SSE
 * and x87 control words, which a kernel could change) on the current stack,
 * stores the stack pointer in *save, and resumes the context whose stack
 * pointer is `to` by the reverse sequence. */
extern "C" void ds_emu_switch (void **save, void *to);
asm (R"(
    .text
    .p2align 4
    .globl ds_emu_switch
    .hidden ds_emu_switch
    .type ds_emu_switch, @function
ds_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size ds_emu_switch, .-ds_emu_switch
)");
#endif

namespace ds_emu {

namespace {

struct Fiber {
  char *stack_lo; /* lowest usable byte, just above the guard page */
  size_t stack_size;
  Fiber *next_free;
  void *asan_fake = nullptr;
#ifdef DS_EMU_ASM_SWITCH
  void *sp = nullptr; /* saved while the fiber is not running */
#else
  ucontext_t uc;
#endif
};

enum : uint8_t { T_UNSTARTED, T_RUNNING, T_READY, T_AT_BLOCK, T_AT_WARP, T_DONE };

struct ThreadSlot {
  Fiber *fiber;
  uint8_t state;
  unsigned mask;  /* of the collective it waits in */
  unsigned part;  /* lanes that took part in the last released collective */
  unsigned coll;  /* collectives done: its parity picks the slot buffer */
};

struct Block {
  bool reverse; /* DS_CUDA_EMU_ORDER=reverse */
  const LaunchConfig *cfg;
  const std::function<void ()> *body;
  unsigned nthreads, nwarps;
  unsigned next_unstarted, live, at_block, cur;
  std::vector<ThreadSlot> t;
  std::vector<uint3> idx; /* threadIdx of each linear index, per launch */
  std::vector<unsigned> live_mask, at_warp, req;
  /* Collective slots [warp][parity][lane][kSlotBytes]: double-buffered, so a
   * lane that has moved on to the next collective cannot overwrite a value a
   * slower lane has yet to read from the previous one. */
  std::vector<unsigned char> slots;
  std::vector<unsigned> ready;
  size_t ready_head;
  void *dyn;
};

Block B;
Fiber *free_fibers;
Fiber *cur_fiber;
bool parked; /* set by a fiber that yields with no thread to run */
size_t stack_bytes;
#ifdef DS_EMU_ASM_SWITCH
void *sched_sp;
#else
ucontext_t sched_uc;
#endif
#ifdef DS_EMU_ASAN
void *sched_fake;
const void *main_bottom;
size_t main_size;
#endif

void fiber_main ();

#ifdef DS_EMU_ASM_SWITCH
[[noreturn]] void
fiber_entry ()
#else
void
fiber_entry ()
#endif
{
#ifdef DS_EMU_ASAN
  __sanitizer_finish_switch_fiber (nullptr, &main_bottom, &main_size);
#endif
  fiber_main ();
  abort (); /* fiber_main never returns */
}

size_t
page_size ()
{
  static const size_t p = (size_t) sysconf (_SC_PAGESIZE);
  return p;
}

Fiber *
new_fiber ()
{
  if (!stack_bytes)
    {
#ifdef DS_EMU_ASAN
      size_t def = 256 << 10; /* ASan's redzones make frames larger */
#else
      size_t def = 64 << 10;
#endif
      const char *v = getenv ("DS_CUDA_EMU_STACK");
      size_t n = v && *v ? strtoull (v, nullptr, 0) : def;
      if (n < 16384)
        n = 16384;
      stack_bytes = (n + page_size () - 1) / page_size () * page_size ();
    }
  const size_t total = stack_bytes + page_size ();
  char *base = (char *) mmap (nullptr, total, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED)
    device_trap ("out of memory for thread stacks");
  /* Overflowing a thread's stack hits this page and crashes right there. */
  if (mprotect (base, page_size (), PROT_NONE) != 0)
    device_trap ("cannot protect a stack guard page");
  Fiber *f = new Fiber;
  f->stack_lo = base + page_size ();
  f->stack_size = stack_bytes;
  f->next_free = nullptr;
#ifdef DS_EMU_ASM_SWITCH
  /* The frame ds_emu_switch pops: control words, six registers, then
   * fiber_entry as the return address, above which a null fake return
   * address leaves %rsp at entry where the ABI expects it (16n + 8). */
  uintptr_t top = ((uintptr_t) (f->stack_lo + f->stack_size)) & ~(uintptr_t) 15;
  void **sp = (void **) top;
  *--sp = nullptr;                       /* fiber_entry's return address */
  *--sp = (void *) &fiber_entry;         /* ds_emu_switch's ret */
  for (int i = 0; i < 6; i++)
    *--sp = nullptr;                     /* rbp rbx r12 r13 r14 r15 */
  uint32_t *cw = (uint32_t *) --sp;
  cw[0] = 0x1f80;                        /* MXCSR: default, all exceptions masked */
  cw[1] = 0x037f;                        /* x87 control word: default */
  f->sp = sp;
#else
  getcontext (&f->uc);
  f->uc.uc_stack.ss_sp = f->stack_lo;
  f->uc.uc_stack.ss_size = f->stack_size;
  f->uc.uc_link = nullptr;
  makecontext (&f->uc, (void (*) ()) fiber_entry, 0);
#endif
  return f;
}

Fiber *
get_fiber ()
{
  if (Fiber *f = free_fibers)
    {
      free_fibers = f->next_free;
      return f;
    }
  return new_fiber ();
}

void
put_fiber (Fiber *f)
{
  f->next_free = free_fibers;
  free_fibers = f;
}

/* Scheduler -> fiber. */
void
switch_to (Fiber *f)
{
  cur_fiber = f;
  parked = false;
#ifdef DS_EMU_ASAN
  __sanitizer_start_switch_fiber (&sched_fake, f->stack_lo, f->stack_size);
#endif
#ifdef DS_EMU_ASM_SWITCH
  ds_emu_switch (&sched_sp, f->sp);
#else
  swapcontext (&sched_uc, &f->uc);
#endif
#ifdef DS_EMU_ASAN
  __sanitizer_finish_switch_fiber (sched_fake, nullptr, nullptr);
#endif
  if (parked)
    put_fiber (f);
}

/* Fiber -> scheduler. */
void
yield ()
{
  Fiber *f = cur_fiber;
#ifdef DS_EMU_ASAN
  __sanitizer_start_switch_fiber (&f->asan_fake, main_bottom, main_size);
#endif
#ifdef DS_EMU_ASM_SWITCH
  ds_emu_switch (&f->sp, sched_sp);
#else
  swapcontext (&f->uc, &sched_uc);
#endif
#ifdef DS_EMU_ASAN
  __sanitizer_finish_switch_fiber (f->asan_fake, &main_bottom, &main_size);
#endif
}

void
enter_thread (unsigned tid)
{
  B.cur = tid;
  B.t[tid].state = T_RUNNING;
  threadIdx = B.idx[tid];
}

void
thread_done (unsigned tid)
{
  ThreadSlot &s = B.t[tid];
  s.state = T_DONE;
  s.fiber = nullptr;
  B.live--;
  B.live_mask[tid >> 5] &= ~(1u << (tid & 31));
}

/* Runs threads back to back on the current fiber until none is left to
 * start (a thread that blocks keeps the fiber until it is released). */
void
fiber_main ()
{
  for (;;)
    {
      Fiber *self = cur_fiber;
      while (B.next_unstarted < B.nthreads)
        {
          const unsigned i = B.next_unstarted++;
          const unsigned tid = B.reverse ? B.nthreads - 1 - i : i;
          B.t[tid].fiber = self;
          enter_thread (tid);
          (*B.body) ();
          thread_done (tid);
        }
      parked = true;
      yield ();
    }
}

const char *
state_name (uint8_t s)
{
  switch (s)
    {
    case T_UNSTARTED: return "not started";
    case T_RUNNING: return "running";
    case T_READY: return "ready";
    case T_AT_BLOCK: return "at __syncthreads";
    case T_AT_WARP: return "at a warp barrier or collective";
    default: return "exited";
    }
}

[[noreturn]] void
deadlock ()
{
  unsigned at_warp = 0, exited = 0;
  for (unsigned i = 0; i < B.nthreads; i++)
    {
      at_warp += B.t[i].state == T_AT_WARP;
      exited += B.t[i].state == T_DONE;
    }
  fprintf (stderr,
           "CUDA emulator: deadlock in kernel %s, block (%u, %u, %u) of grid (%u, %u, %u), "
           "block (%u, %u, %u): %u thread(s) at __syncthreads, %u at warp barriers or "
           "collectives (__syncwarp, shuffles, votes, mma), %u exited; no barrier can be "
           "released\n",
           B.cfg->name, blockIdx.x, blockIdx.y, blockIdx.z, gridDim.x, gridDim.y, gridDim.z,
           blockDim.x, blockDim.y, blockDim.z, B.at_block, at_warp, exited);
  for (unsigned w = 0; w < B.nwarps; w++)
    if (B.at_warp[w])
      fprintf (stderr,
               "  warp %u: lanes waiting 0x%08x, masks name 0x%08x, live lanes 0x%08x\n", w,
               B.at_warp[w], B.req[w], B.live_mask[w]);
  unsigned shown = 0;
  for (unsigned i = 0; i < B.nthreads && shown < 8; i++)
    if (B.t[i].state != T_DONE && (i == 0 || B.t[i].state != B.t[i - 1].state))
      {
        fprintf (stderr, "  thread %u (%u, %u, %u): %s\n", i, B.idx[i].x, B.idx[i].y,
                 B.idx[i].z, state_name (B.t[i].state));
        shown++;
      }
  abort ();
}

void
make_ready (unsigned tid)
{
  B.t[tid].state = T_READY;
  B.ready.push_back (tid);
}

/* Releases whatever barriers can be; false if none. */
bool
release ()
{
  bool any = false;
  for (unsigned w = 0; w < B.nwarps; w++)
    {
      const unsigned waiting = B.at_warp[w];
      if (!waiting || (B.req[w] & B.live_mask[w] & ~waiting))
        continue;
      for (unsigned l = 0; l < 32; l++)
        if (waiting >> l & 1u)
          {
            ThreadSlot &s = B.t[w * 32 + l];
            s.part = waiting & s.mask;
            make_ready (w * 32 + l);
          }
      B.at_warp[w] = 0;
      B.req[w] = 0;
      any = true;
    }
  if (!any && B.at_block && B.at_block == B.live)
    {
      for (unsigned i = 0; i < B.nthreads; i++)
        if (B.t[i].state == T_AT_BLOCK)
          make_ready (i);
      B.at_block = 0;
      any = true;
    }
  return any;
}

void
run_block ()
{
  B.next_unstarted = 0;
  B.live = B.nthreads;
  B.at_block = 0;
  for (unsigned i = 0; i < B.nthreads; i++)
    {
      ThreadSlot &s = B.t[i];
      s.fiber = nullptr;
      s.state = T_UNSTARTED;
      s.coll = 0;
    }
  for (unsigned w = 0; w < B.nwarps; w++)
    {
      const unsigned lanes = B.nthreads - w * 32 < 32 ? B.nthreads - w * 32 : 32;
      B.live_mask[w] = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u;
      B.at_warp[w] = 0;
      B.req[w] = 0;
    }
  B.ready.clear ();
  B.ready_head = 0;

  while (B.next_unstarted < B.nthreads)
    switch_to (get_fiber ());
  while (B.live > 0)
    {
      if (B.ready_head < B.ready.size ())
        {
          const unsigned tid = B.ready[B.ready_head++];
          Fiber *f = B.t[tid].fiber;
          enter_thread (tid);
          switch_to (f);
          continue;
        }
      B.ready.clear ();
      B.ready_head = 0;
      if (!release ())
        deadlock ();
      if (B.reverse)
        std::reverse (B.ready.begin (), B.ready.end ());
    }
}

/* DS_CUDA_EMU_ORDER: unset, "forward" or "reverse"; read at each launch. */
bool
reverse_order ()
{
  const char *v = getenv ("DS_CUDA_EMU_ORDER");
  if (!v || !*v || strcmp (v, "forward") == 0)
    return false;
  if (strcmp (v, "reverse") == 0)
    return true;
  fprintf (stderr, "CUDA emulator: DS_CUDA_EMU_ORDER=%s: expected forward or reverse\n", v);
  abort ();
}

void
check_in_kernel (const char *what)
{
  if (!cur_fiber || !B.body)
    {
      fprintf (stderr, "CUDA emulator: %s called outside a kernel\n", what);
      abort ();
    }
}

} // namespace

void
run_kernel (const LaunchConfig &cfg, const std::function<void ()> &body)
{
  std::lock_guard<std::recursive_mutex> lock (api_mutex ());
  if (B.body)
    device_trap ("a kernel launched another kernel (dynamic parallelism is not emulated)");
  const dim3 bd = cfg.block;
  const unsigned n = bd.x * bd.y * bd.z;
  B.reverse = reverse_order ();
  B.cfg = &cfg;
  B.body = &body;
  B.nthreads = n;
  B.nwarps = (n + 31) / 32;
  B.t.resize (n);
  B.idx.resize (n);
  for (unsigned i = 0; i < n; i++)
    B.idx[i] = uint3{ i % bd.x, i / bd.x % bd.y, i / (bd.x * bd.y) };
  B.live_mask.resize (B.nwarps);
  B.at_warp.resize (B.nwarps);
  B.req.resize (B.nwarps);
  B.slots.resize ((size_t) B.nwarps * 2 * 32 * kSlotBytes);
  B.dyn = nullptr;
  if (cfg.smem && posix_memalign (&B.dyn, 128, cfg.smem) != 0)
    device_trap ("out of memory for dynamic shared memory");

  blockDim = bd;
  gridDim = cfg.grid;
  const dim3 g = cfg.grid;
  for (unsigned z = 0; z < g.z; z++)
    for (unsigned y = 0; y < g.y; y++)
      for (unsigned x = 0; x < g.x; x++)
        {
          blockIdx = B.reverse ? uint3{ g.x - 1 - x, g.y - 1 - y, g.z - 1 - z } : uint3{ x, y, z };
          /* Shared memory starts out undefined: all-ones bytes read as NaN. */
          if (B.dyn)
            memset (B.dyn, 0xff, cfg.smem);
          run_block ();
        }
  free (B.dyn);
  B.dyn = nullptr;
  B.body = nullptr;
  B.cfg = nullptr;
  cur_fiber = nullptr;
}

void
sync_block ()
{
  check_in_kernel ("__syncthreads");
  B.t[B.cur].state = T_AT_BLOCK;
  B.at_block++;
  yield ();
}

const unsigned char *
warp_collective (unsigned mask, const void *mine, size_t bytes, unsigned *part)
{
  check_in_kernel ("a warp collective");
  const unsigned tid = B.cur, w = tid >> 5, l = tid & 31;
  ThreadSlot &s = B.t[tid];
  const unsigned parity = s.coll++ & 1u;
  unsigned char *base = &B.slots[(size_t) (w * 2 + parity) * 32 * kSlotBytes];
  if (bytes)
    memcpy (base + (size_t) l * kSlotBytes, mine, bytes);
  s.mask = mask | 1u << l;
  s.state = T_AT_WARP;
  B.at_warp[w] |= 1u << l;
  B.req[w] |= s.mask;
  yield ();
  *part = s.part;
  return base;
}

unsigned
lane_id ()
{
  return B.cur & 31;
}

void *
dyn_smem ()
{
  check_in_kernel ("extern __shared__");
  return B.dyn;
}

} // namespace ds_emu

/* ---- tensor cores ---- */

namespace {

struct MmaIn {
  uint32_t a[4], b[2];
  float c[4];
};
static_assert (sizeof (MmaIn) <= ds_emu::kSlotBytes, "mma operands fit a slot");

/* Every lane deposits its fragments; each then rebuilds A (16x16), B (16x8)
 * and C (16x8) from the register layout and computes its own part of D. */
template <float (*to_float) (unsigned short)>
void
mma_m16n8k16 (float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4])
{
  MmaIn in;
  memcpy (in.a, a, sizeof in.a);
  memcpy (in.b, b, sizeof in.b);
  memcpy (in.c, c, sizeof in.c);
  unsigned part;
  const unsigned char *slots = ds_emu::warp_collective (0xffffffffu, &in, sizeof in, &part);
  if (part != 0xffffffffu)
    ds_emu::device_trap ("mma.m16n8k16 needs all 32 lanes of the warp");
  auto lane_in = [slots] (unsigned lane) -> const MmaIn * {
    return (const MmaIn *) (const void *) (slots + (size_t) lane * ds_emu::kSlotBytes);
  };
  /* Element e (0 = low half) of register r of lane (g, t). */
  auto half_of = [] (uint32_t reg, unsigned e) { return (unsigned short) (reg >> (16 * e)); };
  auto A = [&] (unsigned row, unsigned col) {
    const unsigned g = row & 7, hi_row = row >> 3, hi_col = col >> 3, t = (col & 7) >> 1;
    const MmaIn *p = lane_in (g * 4 + t);
    return to_float (half_of (p->a[hi_row + 2 * hi_col], col & 1));
  };
  auto Bm = [&] (unsigned k, unsigned n) {
    const unsigned t = (k & 7) >> 1;
    const MmaIn *p = lane_in (n * 4 + t);
    return to_float (half_of (p->b[k >> 3], k & 1));
  };
  const unsigned lane = ds_emu::lane_id (), g = lane >> 2, t = lane & 3;
  for (unsigned r = 0; r < 4; r++)
    {
      const unsigned row = g + 8 * (r >> 1), col = 2 * t + (r & 1);
      float acc = 0.0f;
      for (unsigned k = 0; k < 16; k++)
        acc += A (row, k) * Bm (k, col);
      d[r] = acc + in.c[r];
    }
}

float
half_to_float (unsigned short h)
{
  return ds_emu_half_bits_to_float (h);
}

float
bf16_to_float (unsigned short h)
{
  return ds_emu_bf16_bits_to_float (h);
}

} // namespace

void
ds_emu_mma_m16n8k16_f32_f16 (float d[4], const uint32_t a[4], const uint32_t b[2],
                             const float c[4])
{
  mma_m16n8k16<half_to_float> (d, a, b, c);
}

void
ds_emu_mma_m16n8k16_f32_bf16 (float d[4], const uint32_t a[4], const uint32_t b[2],
                              const float c[4])
{
  mma_m16n8k16<bf16_to_float> (d, a, b, c);
}

/* ---- ldmatrix ----
 *
 * Each lane deposits the 16-byte row its address names; each then picks its
 * four registers' elements out of the 32 deposited rows. */
void
ds_emu_ldmatrix_x4 (uint32_t r[4], const void *row, int trans)
{
  if ((uintptr_t) row % 16)
    ds_emu::device_trap ("ldmatrix: a row address is not 16-byte aligned");
  unsigned char mine[16];
  memcpy (mine, row, sizeof mine);
  unsigned part;
  const unsigned char *slots = ds_emu::warp_collective (0xffffffffu, mine, sizeof mine, &part);
  if (part != 0xffffffffu)
    ds_emu::device_trap ("ldmatrix needs all 32 lanes of the warp");
  /* element c of row j of matrix i, deposited by lane 8i + j */
  auto at = [slots] (unsigned i, unsigned j, unsigned c) {
    uint16_t v;
    memcpy (&v, slots + (size_t) (8 * i + j) * ds_emu::kSlotBytes + 2 * c, sizeof v);
    return (uint32_t) v;
  };
  const unsigned lane = ds_emu::lane_id (), g = lane >> 2, t = lane & 3;
  for (unsigned i = 0; i < 4; i++)
    r[i] = trans ? at (i, 2 * t, g) | at (i, 2 * t + 1, g) << 16
                 : at (i, g, 2 * t) | at (i, g, 2 * t + 1) << 16;
}

/* ---- cp.async ----
 *
 * A copy lands in shared memory only when its thread waits for its group, so
 * a kernel that reads a tile before waiting for it sees stale data here, as
 * it might on a GPU. The source is read at issue (global memory does not
 * change under a running kernel here). State per thread of the current block;
 * a new block starts empty. */
namespace {

struct AsyncCopy {
  void *dst;
  unsigned char bytes[16];
  int n;       /* bytes to write: 16 (copy or zero fill) */
  long group;  /* the commit count when issued */
};

struct AsyncThread {
  uint3 block;
  std::vector<AsyncCopy> pending;
  long committed = 0;
};

std::vector<AsyncThread> async_threads;

AsyncThread &
async_self ()
{
  const size_t t = threadIdx.x + (size_t) blockDim.x * (threadIdx.y + (size_t) blockDim.y
                                                                          * threadIdx.z);
  if (async_threads.size () <= t)
    async_threads.resize (t + 1);
  AsyncThread &a = async_threads[t];
  if (a.block.x != blockIdx.x || a.block.y != blockIdx.y || a.block.z != blockIdx.z)
    a = AsyncThread{ blockIdx, {}, 0 };
  return a;
}

} // namespace

void
ds_emu_cp_async16 (void *smem, const void *gmem, int src_bytes)
{
  AsyncThread &a = async_self ();
  AsyncCopy c = { smem, { 0 }, 16, a.committed };
  if (src_bytes < 0 || src_bytes > 16)
    {
      fprintf (stderr, "ds-emu: cp.async with a source size of %d bytes (0..16)\n", src_bytes);
      abort ();
    }
  if ((uintptr_t) smem % 16 || (uintptr_t) gmem % 16)
    ds_emu::device_trap ("cp.async (16 bytes): an address is not 16-byte aligned");
  memcpy (c.bytes, gmem, (size_t) src_bytes); /* the rest zero-filled */
  a.pending.push_back (c);
}

void
ds_emu_cp_async_commit ()
{
  async_self ().committed++;
}

void
ds_emu_cp_async_wait (int newest_left)
{
  AsyncThread &a = async_self ();
  /* groups committed before the newest `newest_left` ones land now; copies not
   * yet committed stay pending, as cp.async.wait_group leaves them */
  const long limit = a.committed - newest_left;
  std::vector<AsyncCopy> keep;
  for (const AsyncCopy &c : a.pending)
    if (c.group < limit)
      memcpy (c.dst, c.bytes, (size_t) c.n);
    else
      keep.push_back (c);
  a.pending.swap (keep);
}
