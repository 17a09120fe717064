/*
 * sample.h — private helpers of the sampler (src/engine/sample.c), shared with
 * the tools and the unit tests. The sampler itself is the mr_sampler_* API of
 * include/moerun.h.
 */
#ifndef MR_SAMPLE_H
#define MR_SAMPLE_H

#include <stdint.h>

#include "moerun.h"

/* mr_sampler_params.seed value meaning "seed from the clock" (llama.cpp's
 * LLAMA_DEFAULT_SEED); it is the default. Any other value is deterministic. */
#define MR_SAMPLER_SEED_RANDOM 0xFFFFFFFFull

/* The sampler's PRNG (xoshiro256**, seeded with splitmix64): exposed for tests
 * and for callers that want the same generator. */
void sampler_rng_seed(uint64_t s[4], uint64_t seed);
uint64_t sampler_rng_next(uint64_t s[4]);

#endif
