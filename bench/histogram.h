/*  histogram.h — a small log-linear latency histogram for the benches, in
    the manner of HdrHistogram: values (nanoseconds) below 256 are counted
    exactly; above, every power of two is cut into 128 equal sub-buckets, so
    a recorded value is known to within 1/128 (0.8%) of itself. Fixed size
    (4,480 counters, 35 KiB), so recording is one increment and never
    allocates; values up to 2^40 ns (18 minutes) are kept, larger ones are
    counted in the top bucket.

    Header-only on purpose: every .c file in bench/ is its own executable (the bench
    CMake globs them), so shared bench code lives in headers. Not in common/:
    no service needs it. */

#ifndef CIVICBUS_BENCH_HISTOGRAM_H
#define CIVICBUS_BENCH_HISTOGRAM_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HIST_SUB_BITS   7                       //  128 sub-buckets per power of two
#define HIST_SUB_COUNT  (1 << HIST_SUB_BITS)
#define HIST_MAX_BITS   40                      //  values up to 2^40 ns
#define HIST_BUCKETS    (2 * HIST_SUB_COUNT + (HIST_MAX_BITS - HIST_SUB_BITS) * HIST_SUB_COUNT)

typedef struct {
    uint64_t counts [HIST_BUCKETS];
    uint64_t total;
    uint64_t max;
    uint64_t min;
    double sum;
} hist_t;

static inline void
hist_reset (hist_t *h)
{
    memset (h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

static inline size_t
hist_index (uint64_t value)
{
    if (value < 2 * HIST_SUB_COUNT)
        return (size_t) value;
    int msb = 63 - __builtin_clzll (value);
    if (msb >= HIST_MAX_BITS)
        return HIST_BUCKETS - 1;
    int shift = msb - HIST_SUB_BITS;
    return 2 * HIST_SUB_COUNT + (size_t) (shift - 1) * HIST_SUB_COUNT
         + (size_t) ((value >> shift) - HIST_SUB_COUNT);
}

//  The middle of the bucket (its lowest value for the exact range).
static inline uint64_t
hist_value_at (size_t index)
{
    if (index < 2 * HIST_SUB_COUNT)
        return index;
    size_t above = index - 2 * HIST_SUB_COUNT;
    int shift = (int) (above / HIST_SUB_COUNT) + 1;
    uint64_t sub = above % HIST_SUB_COUNT + HIST_SUB_COUNT;
    return (sub << shift) + ((1ull << shift) >> 1);
}

static inline void
hist_record (hist_t *h, uint64_t value)
{
    h->counts [hist_index (value)]++;
    h->total++;
    h->sum += (double) value;
    if (value > h->max)
        h->max = value;
    if (value < h->min)
        h->min = value;
}

static inline void
hist_merge (hist_t *into, const hist_t *from)
{
    for (size_t i = 0; i < HIST_BUCKETS; i++)
        into->counts [i] += from->counts [i];
    into->total += from->total;
    into->sum += from->sum;
    if (from->max > into->max)
        into->max = from->max;
    if (from->min < into->min)
        into->min = from->min;
}

//  The value at quantile q (0..1): the smallest bucket value with at least
//  q of the recorded values at or below it. 0 when nothing was recorded;
//  q = 1 gives the exact maximum.
static inline uint64_t
hist_quantile (const hist_t *h, double q)
{
    if (h->total == 0)
        return 0;
    if (q >= 1.0)
        return h->max;
    uint64_t rank = (uint64_t) (q * (double) h->total + 0.5);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts [i];
        if (seen >= rank) {
            uint64_t value = hist_value_at (i);
            return value > h->max ? h->max : value;
        }
    }
    return h->max;
}

static inline double
hist_mean (const hist_t *h)
{
    return h->total ? h->sum / (double) h->total : 0;
}

#endif
