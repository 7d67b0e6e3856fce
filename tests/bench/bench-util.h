/* bench-util.h: the clock and the order statistics the benchmark programs
 * share. */
#pragma once

#include <stdlib.h>
#include <time.h>

static inline double
bench_now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static inline int
bench_cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

/* Sorts the n timings; afterwards t[n / 2] is the median and t[0] the minimum. */
static inline void
bench_sort (double *t, int n)
{
  qsort (t, (size_t) n, sizeof *t, bench_cmp_double);
}
