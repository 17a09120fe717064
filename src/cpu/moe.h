/*
 * moe.h — the routed-experts part of a mixture-of-experts FFN on the CPU, as
 * three steps whatever the number of tokens and experts:
 *   1. the tokens' inputs quantized once (not once per expert and matrix);
 *   2. gate+up of every (selected expert, 256-row chunk) as one work list;
 *      each item applies the activation and quantizes its slice of the
 *      hidden vector for the down projection;
 *   3. down of every (selected expert, 256-row chunk) into one output row per
 *      (token, expert) pair; then each token's rows weighted by the routing
 *      weights and summed in expert-id order.
 * Steps 2 and 3 are one thread-pool job: each thread claims a contiguous range
 * of each list (base/claim.h) and starts a down item once its expert's gate/up
 * items are done, without a barrier between the lists. Each routed expert's weights
 * are read once per call. The result is bit-identical to running the experts
 * one after the other with cpu_matmul (same kernels, same summation order).
 */
#ifndef MR_CPU_MOE_H
#define MR_CPU_MOE_H

#include <stdbool.h>
#include <stdint.h>

#include "cpu/cpu.h"

typedef struct {
    const mr_weight *gate, *up; /* {D, F, E} */
    const mr_weight *down;      /* {F, D, E} */
    bool gelu;                  /* gelu_tanh(gate) * up instead of silu(gate) * up */
} cpu_moe_w;

/* out (T, D) = sum over j < K of selw[t*K + j] * down_e(act(gate_e x_t) * up_e x_t)
 * with e = sel[t*K + j], for T tokens x (T, D) (row stride D). Adds the
 * experts' weight bytes to mm->bytes_read. 0, or -1 with an error
 * (allocation). */
int cpu_moe(cpu_mm *mm, const cpu_moe_w *w, int64_t T, const float *x, int K, const int32_t *sel,
            const float *selw, float *out);

void cpu_moe_free(cpu_mm *mm);

#endif
