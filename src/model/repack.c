/*
 * repack.c — interleave the matmul weights of a loaded model by 8 rows
 * (quant.h: quant_repack) for the SIMD kernels, at load time.
 *
 * Which: every bound matmul weight (attention, FFN, experts, output head) of a
 * type with an R8 form (Q4_K Q5_K Q6_K; Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 on the fast
 * kernels only) and a SIMD kernel for it on this CPU, with rows in multiples of 8, that is a whole GGUF tensor and not also read by rows
 * (token_embd, and an output head tied to it, stay as they are).
 *
 * Where: a model read into memory (--no-mmap, -rtr) is repacked in place. A
 * mapped model gets one anonymous huge-page arena for the repacked tensors;
 * each chunk's source pages are dropped from the mapping as soon as it is
 * repacked, so the resident set peaks at the model plus one chunk, and the
 * tensors left in the mapping (embeddings, norms) are populated afterwards.
 * When the arena does not fit in the memory available, nothing is repacked
 * (the mapping then streams as before). Work is split across threads.
 *
 * Kernels: the fast ones (R8F: int16 sums per sub-block, one float rounding
 * per block; about twice the prompt throughput) for every weight except the
 * projections of recurrent (gated delta net) layers, which take the exact ones
 * (R8: ggml's float operations bit for bit): their outputs feed a state carried
 * across tokens that compounds rounding. On tiny-qwen3next ids300 (kl bar
 * 0.005): all exact 0.0020, experts fast 0.0023, experts + attention + dense
 * FFN + output fast 0.0022, recurrent projections alone fast 0.0053, all fast
 * 0.0057. A weight's kernel is the same for a prompt and a decode step, so the
 * micro-batch size does not change results. -rtr puts every weight on the fast
 * kernels (in place, as ik_llama.cpp's -rtr). A recurrent projection of a type
 * with only fast kernels stays in the GGUF layout.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/base.h"
#include "base/threadpool.h"
#include "model/model.h"
#include "quant/quant.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

#define REPACK_CHUNK_ROWS 256 /* rows per work item (a multiple of 8) */

typedef struct {
    mr_weight *w[4];  /* the weights bound to this tensor (usually one) */
    int n_w;
    bool fast;        /* R8F (fast kernels) rather than R8 */
    const gguf_tensor *t;
    char *dst;        /* repacked data (== t->data when in place) */
    int64_t items;    /* work items: n_mat * chunks per matrix */
} rp_tensor;

typedef struct {
    rp_tensor *ts;
    int n;
    int64_t *first;   /* first item of tensor i (n + 1) */
    bool drop_src;    /* mapped source: drop its pages once read */
    _Atomic int64_t next;
    _Atomic int failed;
} rp_job;

static void drop_pages(const void *p, size_t n) {
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + pg - 1) & ~(pg - 1), e = ((uintptr_t)p + n) & ~(pg - 1);
    if (e > a) (void)madvise((void *)a, e - a, MADV_DONTNEED);
}

static void rp_worker(void *arg, int ith, int nth) {
    (void)ith, (void)nth;
    rp_job *j = arg;
    int ti = 0;
    for (;;) {
        const int64_t it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (it >= j->first[j->n]) break;
        while (it >= j->first[ti + 1]) ti++;
        const rp_tensor *rt = &j->ts[ti];
        const mr_weight *w = rt->w[0];
        const int64_t per = (w->m + REPACK_CHUNK_ROWS - 1) / REPACK_CHUNK_ROWS, local = it - j->first[ti];
        const int64_t mat = local / per, r0 = (local % per) * REPACK_CHUNK_ROWS;
        const int64_t r1 = r0 + REPACK_CHUNK_ROWS < w->m ? r0 + REPACK_CHUNK_ROWS : w->m;
        const size_t off = (size_t)mat * w->mat_bytes + (size_t)r0 * w->row_bytes, n = (size_t)(r1 - r0) * w->row_bytes;
        const char *src = (const char *)rt->t->data + off;
        if (quant_repack(w->type, src, rt->dst + off, w->k, r1 - r0)) atomic_store(&j->failed, 1);
        if (j->drop_src) drop_pages(src, n);
    }
}

/* The projections of a recurrent (gated delta net) layer: their outputs feed a state carried
 * from token to token, which compounds rounding (exact kernels for them). */
static bool is_recurrent_proj(const model_layer *ly, const mr_weight *w) {
    return w == &ly->wqkv || w == &ly->wqkv_gate || w == &ly->ssm_in || w == &ly->ssm_ba || w == &ly->ssm_out;
}

/* The matmul weights of a layer that may be repacked. */
static int layer_weights(model_layer *ly, mr_weight **out) {
    mr_weight *c[] = {&ly->wq,         &ly->wk,        &ly->wv,        &ly->wo,        &ly->wq_a,
                      &ly->wq_b,       &ly->wkv_a_mqa, &ly->wk_b,      &ly->wv_b,      &ly->ffn_gate,
                      &ly->ffn_up,     &ly->ffn_down,  &ly->gate_exps, &ly->up_exps,   &ly->down_exps,
                      &ly->gate_shexp, &ly->up_shexp,  &ly->down_shexp, &ly->wqkv,     &ly->wqkv_gate,
                      &ly->ssm_in,     &ly->ssm_ba,    &ly->ssm_out};
    int n = 0;
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) out[n++] = c[i];
    return n;
}

/* Whether w can be repacked (a whole GGUF tensor of an R8-able type and shape); *tp its tensor. */
static bool eligible(const mr_model *m, const mr_weight *w, const gguf_tensor **tp) {
    if (!w->data || !w->name || w->data == m->tok_embd.data) return false;
    if (!quant_can_repack(w->type, w->k, w->m)) return false;
    const gguf_tensor *t = gguf_tensor_find(m->g, w->name);
    if (!t || t->data != w->data || t->nbytes != (uint64_t)w->n_mat * w->mat_bytes) return false;
    if (m->on_device && m->on_device[t - m->g->tensors]) return false; /* uploaded to a GPU instead */
    *tp = t;
    return true;
}

/* Whether this CPU has the SIMD kernel for type t in the R8 family chosen (fast or exact). */
static bool has_kernel(uint32_t t, bool fast) { return quant_r8_fast((fast ? MR_TYPE_R8F_BASE : MR_TYPE_R8_BASE) + t); }

int model_repack(mr_model *m, int n_threads, bool fast) {
    const double t0 = mr_time_s();
    const int n_layer = m->hp.n_layer;
    rp_tensor *ts = mr_calloc((size_t)n_layer * 24 + 1, sizeof *ts);
    if (!ts) return -1;
    int n = 0;
    uint64_t total = 0;
    for (int il = -1; il < n_layer; il++) {
        mr_weight *cand[24];
        int nc = 0;
        if (il < 0) cand[nc++] = &m->output;
        else nc = layer_weights(&m->layers[il], cand);
        for (int i = 0; i < nc; i++) {
            const gguf_tensor *t;
            if (!eligible(m, cand[i], &t)) continue;
            const bool f_fast = fast || il < 0 || !is_recurrent_proj(&m->layers[il], cand[i]);
            int f = 0;
            while (f < n && ts[f].t != t) f++;
            if (f < n) { /* a second weight bound to the same tensor (exact kernels if either wants them) */
                if (ts[f].n_w < 4) ts[f].w[ts[f].n_w++] = cand[i];
                ts[f].fast &= f_fast;
                continue;
            }
            ts[n++] = (rp_tensor){.w = {cand[i]}, .n_w = 1, .t = t, .fast = f_fast};
        }
    }
    /* a tensor without a kernel in its family stays in the GGUF layout (the 32-block types have
     * no exact R8 kernels) */
    {
        int kept = 0;
        for (int i = 0; i < n; i++)
            if (has_kernel(ts[i].w[0]->type, ts[i].fast)) {
                ts[kept++] = ts[i];
                total += ts[i].t->nbytes;
            }
        n = kept;
    }
    if (n == 0) {
        free(ts);
        return 0;
    }
    const bool in_memory = m->g->parts[0].in_memory;
    char *arena = NULL;
    size_t arena_size = 0;
    if (!in_memory) {
        const uint64_t avail = mr_mem_available();
        char b1[32], b2[32];
        if (avail && total > avail / 10 * 9) {
            MR_WARN("not repacking %s of weights: only %s of memory available (the GGUF layouts run from the "
                    "mapping, slower; --no-mmap repacks in place)",
                    mr_fmt_bytes(b1, sizeof b1, total), mr_fmt_bytes(b2, sizeof b2, avail));
            free(ts);
            return 0;
        }
        /* tensors back to back at cache-line offsets (2 MiB alignment each would leave up to
         * 2 MiB of touched huge page behind every tensor: hundreds of MiB of resident waste) */
        const size_t align = 64;
        for (int i = 0; i < n; i++) arena_size += (ts[i].t->nbytes + align - 1) & ~(align - 1);
        arena = mmap(NULL, arena_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (arena == MAP_FAILED) {
            MR_WARN("not repacking the weights: cannot allocate %s", mr_fmt_bytes(b1, sizeof b1, total));
            free(ts);
            return 0;
        }
#ifdef MADV_HUGEPAGE
        (void)madvise(arena, arena_size, MADV_HUGEPAGE);
#endif
        size_t off = 0;
        for (int i = 0; i < n; i++) {
            ts[i].dst = arena + off;
            off += (ts[i].t->nbytes + align - 1) & ~(align - 1);
        }
    } else {
        for (int i = 0; i < m->g->n_parts; i++)
            if (mprotect(m->g->parts[i].map, m->g->parts[i].size, PROT_READ | PROT_WRITE)) {
                MR_WARN("not repacking the weights: the model memory is not writable");
                free(ts);
                return 0;
            }
        for (int i = 0; i < n; i++) ts[i].dst = (char *)ts[i].t->data;
    }
    int64_t *first = mr_malloc(sizeof(int64_t) * (size_t)(n + 1));
    if (!first) {
        if (arena) munmap(arena, arena_size);
        free(ts);
        return -1;
    }
    first[0] = 0;
    for (int i = 0; i < n; i++) {
        const mr_weight *w = ts[i].w[0];
        ts[i].items = w->n_mat * ((w->m + REPACK_CHUNK_ROWS - 1) / REPACK_CHUNK_ROWS);
        first[i + 1] = first[i] + ts[i].items;
    }
    rp_job j = {.ts = ts, .n = n, .first = first, .drop_src = !in_memory};
    atomic_init(&j.next, 0);
    atomic_init(&j.failed, 0);
    mr_threadpool *tp = mr_tp_new(n_threads);
    if (tp) {
        mr_tp_run(tp, rp_worker, &j);
        mr_tp_free(tp);
    } else
        rp_worker(&j, 0, 1);
    if (in_memory)
        for (int i = 0; i < m->g->n_parts; i++) (void)mprotect(m->g->parts[i].map, m->g->parts[i].size, PROT_READ);
    if (atomic_load(&j.failed)) {
        /* only allocation failures get here; the weights are untouched in the mapped case */
        if (arena) munmap(arena, arena_size);
        free(first), free(ts);
        mr_seterr("repacking the weights failed: %s", mr_geterr());
        return -1;
    }
    int n_fast = 0;
    for (int i = 0; i < n; i++) {
        n_fast += ts[i].fast;
        for (int k = 0; k < ts[i].n_w; k++) {
            ts[i].w[k]->data = ts[i].dst;
            ts[i].w[k]->type = (ts[i].fast ? MR_TYPE_R8F_BASE : MR_TYPE_R8_BASE) + ts[i].w[k]->type;
        }
    }
    if (arena) {
        m->repack_arena = arena;
        m->repack_arena_size = arena_size;
        /* what stays in the mapping (embeddings, norms, routers) is read at every token */
        for (uint64_t i = 0; i < m->g->n_tensors; i++) {
            const gguf_tensor *t = &m->g->tensors[i];
            bool moved = false;
            for (int k = 0; k < n && !moved; k++) moved = ts[k].t == t;
            if (moved || !t->nbytes) continue;
            const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
            const uintptr_t a = (uintptr_t)t->data & ~(pg - 1);
            (void)madvise((void *)a, (uintptr_t)t->data + t->nbytes - a, MADV_POPULATE_READ);
        }
    }
    char b[32];
    MR_INFO("repacked %d tensors (%s) into 8-row interleaved blocks in %.1f s%s; %d on the fast kernels%s", n,
            mr_fmt_bytes(b, sizeof b, total), mr_time_s() - t0, in_memory ? " (in place)" : "", n_fast,
            fast ? " (-rtr: all)" : " (all but recurrent projections)");
    m->n_repacked = n;
    m->n_repacked_fast = n_fast;
    m->repack_fast = fast;
    free(first), free(ts);
    return 0;
}
