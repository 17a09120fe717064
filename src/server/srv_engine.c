/*
 * srv_engine.c — the engine thread of `moerun serve`: owns the mr_ctx, the
 * slots and the job queue; runs continuous batching.
 *
 * Each step: admit queued jobs into idle slots (slot i uses sequence id i),
 * drop cancelled ones (freeing their KV cells at once), then build ONE batch:
 * the last sampled token of every generating slot, plus up to cfg.chunk prompt
 * tokens shared round-robin among slots still reading their prompt. After
 * mr_decode, every slot whose logits were requested samples a token, turns it
 * into clean UTF-8 text, cuts stop strings (holding back text that may be the
 * start of one) and publishes it to its job. Generation ends on an EOG token
 * ("stop"), a stop string ("stop"), max_tokens or the slot's context
 * ("length"); the slot's cells are then removed with mr_kv_seq_rm.
 *
 * The KV cache cannot fill: each slot owns n_ctx / n_slots cells, the HTTP
 * side rejects prompts that do not fit (400), and generation stops before a
 * slot would need one more cell.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "server/srv_internal.h"

typedef struct {
    srv_job *job;     /* NULL: idle */
    int seq;
    int n_past;       /* cells used by this sequence */
    int i_prompt;     /* next prompt token to feed */
    bool generating;  /* prompt done: feed `last` */
    mr_token last;
    int n_gen;
    mr_sampler *smp;
    srv_buf hold;     /* raw bytes of an incomplete UTF-8 sequence */
    srv_buf pending;  /* clean text held back: may be the start of a stop string */
    int i_batch;      /* index of this slot's logits in the batch, -1 */
    int n_batch;      /* tokens this slot put into the batch */
} slot;

struct srv_engine {
    slot *slots;
    int n_slots;
    mr_token *tok;
    int32_t *pos, *seq;
    int8_t *logits;
    int cap;
    int rr; /* round-robin start for prompt chunks */
    char *piece;
    int piece_cap;
    mr_token *eog; /* end-of-generation ids (for ignore_eos) */
    int n_eog;
    float *scratch; /* n_vocab logits copy (for ignore_eos) */
};

/* ---- jobs -------------------------------------------------------------------- */
srv_job *srv_job_new(void) {
    srv_job *j = mr_calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_mutex_init(&j->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    j->refs = 1;
    atomic_init(&j->cancel, false);
    return j;
}

void srv_job_ref(srv_job *j) {
    pthread_mutex_lock(&j->mu);
    j->refs++;
    pthread_mutex_unlock(&j->mu);
}

void srv_job_unref(srv_job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left > 0) return;
    srv_request_free(&j->req);
    free(j->prompt);
    srv_buf_free(&j->text);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

void srv_job_fail(srv_job *j, int status, const char *msg) {
    pthread_mutex_lock(&j->mu);
    if (j->state != JOB_DONE) {
        j->state = JOB_DONE;
        j->err_status = status;
        snprintf(j->err_msg, sizeof j->err_msg, "%s", msg);
        j->t_end = mr_time_s();
    }
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void job_emit(srv_job *j, const char *s, size_t n) {
    if (n == 0) return;
    pthread_mutex_lock(&j->mu);
    if (srv_buf_add(&j->text, s, n) == 0 && j->t_first == 0) j->t_first = mr_time_s();
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* ---- queue -------------------------------------------------------------------- */
int srv_submit(srv_server *s, srv_job *j) {
    pthread_mutex_lock(&s->qmu);
    int free_slots = s->cfg.n_slots - atomic_load(&s->slots_busy);
    if (s->draining || s->stop_engine) {
        pthread_mutex_unlock(&s->qmu);
        return -1;
    }
    if (s->qlen >= s->cfg.max_queue + MR_MAX(free_slots, 0)) {
        pthread_mutex_unlock(&s->qmu);
        return 503;
    }
    srv_job_ref(j);
    j->t_submit = mr_time_s();
    j->next = NULL;
    if (s->qtail) s->qtail->next = j;
    else s->qhead = j;
    s->qtail = j;
    s->qlen++;
    pthread_cond_signal(&s->qcv);
    pthread_mutex_unlock(&s->qmu);
    return 0;
}

/* Pops every queued job; caller holds qmu. */
static srv_job *take_queue(srv_server *s) {
    srv_job *h = s->qhead;
    s->qhead = s->qtail = NULL;
    s->qlen = 0;
    return h;
}

void srv_drain_queue(srv_server *s) {
    pthread_mutex_lock(&s->qmu);
    s->draining = true;
    srv_job *h = take_queue(s);
    pthread_mutex_unlock(&s->qmu);
    while (h) {
        srv_job *n = h->next;
        srv_job_fail(h, 503, "the server is shutting down");
        srv_job_unref(h);
        h = n;
    }
}

/* ---- slots ---------------------------------------------------------------------- */
static void slot_release(srv_server *s, slot *sl) {
    mr_kv_seq_rm(s->ctx, sl->seq, 0, -1);
    mr_sampler_free(sl->smp);
    sl->smp = NULL;
    sl->hold.n = sl->pending.n = 0;
    srv_job_unref(sl->job);
    sl->job = NULL;
    atomic_fetch_sub(&s->slots_busy, 1);
}

/* Ends a slot's generation normally: flushes held text (unless a stop string
 * was found), publishes finish and counts tokens. */
static void slot_finish(srv_server *s, slot *sl, const char *finish, bool flush) {
    srv_job *j = sl->job;
    if (flush) {
        if (sl->hold.n) srv_utf8_clean(sl->hold.p, sl->hold.n, true, &sl->pending);
        job_emit(j, sl->pending.p, sl->pending.n);
    }
    /* count first: once the job is marked done the client can read the end of
     * the stream and look at /metrics before this thread runs again */
    pthread_mutex_lock(&s->mmu);
    s->prompt_tokens += (uint64_t)j->n_prompt;
    s->gen_tokens += (uint64_t)sl->n_gen;
    pthread_mutex_unlock(&s->mmu);
    pthread_mutex_lock(&j->mu);
    j->n_gen = sl->n_gen;
    j->finish = finish;
    j->state = JOB_DONE;
    j->t_end = mr_time_s();
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    slot_release(s, sl);
}

static void slot_abort(srv_server *s, slot *sl, int status, const char *msg) {
    pthread_mutex_lock(&sl->job->mu);
    sl->job->n_gen = sl->n_gen;
    pthread_mutex_unlock(&sl->job->mu);
    srv_job_fail(sl->job, status, msg);
    if (status == 499) {
        pthread_mutex_lock(&s->mmu);
        s->n_cancelled++;
        pthread_mutex_unlock(&s->mmu);
    }
    slot_release(s, sl);
}

static void slot_start(srv_server *s, slot *sl, srv_job *j) {
    const srv_request *r = &j->req;
    mr_sampler_params p = s->cfg.samp;
    if (!isnan(r->temperature)) p.temperature = r->temperature;
    if (!isnan(r->top_p)) p.top_p = r->top_p;
    if (!isnan(r->min_p)) p.min_p = r->min_p;
    if (!isnan(r->presence_penalty)) p.presence_penalty = r->presence_penalty;
    if (!isnan(r->frequency_penalty)) p.frequency_penalty = r->frequency_penalty;
    if (!isnan(r->repeat_penalty)) p.repeat_penalty = r->repeat_penalty;
    if (r->top_k >= 0) p.top_k = r->top_k;
    if (r->has_seed) p.seed = r->seed;
    sl->job = j; /* the queue's reference moves to the slot */
    sl->n_past = sl->i_prompt = sl->n_gen = 0;
    sl->generating = false;
    sl->hold.n = sl->pending.n = 0;
    atomic_fetch_add(&s->slots_busy, 1);
    mr_kv_seq_rm(s->ctx, sl->seq, 0, -1); /* defensive: the slot's cells are free */
    sl->smp = mr_sampler_new(&p);
    if (!sl->smp) {
        char msg[256];
        snprintf(msg, sizeof msg, "sampler: %s", mr_last_error());
        slot_abort(s, sl, 500, msg);
        return;
    }
    pthread_mutex_lock(&j->mu);
    j->state = JOB_RUNNING;
    j->t_start = mr_time_s();
    pthread_mutex_unlock(&j->mu);
}

/* Handles one sampled token of a slot (see the file comment). */
static void slot_token(srv_server *s, struct srv_engine *e, slot *sl, mr_token t) {
    srv_job *j = sl->job;
    if (mr_token_is_eog(s->model, t)) {
        slot_finish(s, sl, "stop", true);
        return;
    }
    sl->n_gen++;
    int n = mr_token_to_piece(s->model, t, e->piece, e->piece_cap, false);
    if (n > e->piece_cap) {
        char *p = mr_realloc(e->piece, (size_t)n);
        if (p) {
            e->piece = p;
            e->piece_cap = n;
            n = mr_token_to_piece(s->model, t, e->piece, e->piece_cap, false);
        } else n = 0;
    }
    if (n > 0) srv_buf_add(&sl->hold, e->piece, (size_t)n);
    long used = sl->hold.n ? srv_utf8_clean(sl->hold.p, sl->hold.n, false, &sl->pending) : 0;
    if (used > 0) {
        memmove(sl->hold.p, sl->hold.p + used, sl->hold.n - (size_t)used);
        sl->hold.n -= (size_t)used;
    }
    size_t h = 0;
    long at = srv_stop_find(sl->pending.p ? sl->pending.p : "", sl->pending.n, j->req.stop, j->req.n_stop, &h);
    if (at >= 0) {
        job_emit(j, sl->pending.p, (size_t)at);
        sl->pending.n = 0;
        slot_finish(s, sl, "stop", false);
        return;
    }
    size_t ready = sl->pending.n - h;
    job_emit(j, sl->pending.p, ready);
    memmove(sl->pending.p, sl->pending.p + ready, h);
    sl->pending.n = h;
    if ((j->req.max_tokens > 0 && sl->n_gen >= j->req.max_tokens) || sl->n_past >= s->n_ctx_slot) {
        slot_finish(s, sl, "length", true);
        return;
    }
    sl->last = t;
    sl->generating = true;
}

/* Builds the step's batch; returns its size. */
static int build_batch(srv_server *s, struct srv_engine *e) {
    int n = 0;
    int cap = MR_MIN(e->cap, s->cfg.cp.n_batch > 0 ? s->cfg.cp.n_batch : e->cap);
    for (int i = 0; i < e->n_slots; i++) {
        slot *sl = &e->slots[i];
        sl->i_batch = -1;
        sl->n_batch = 0;
        if (!sl->job || !sl->generating) continue;
        e->tok[n] = sl->last;
        e->pos[n] = sl->n_past;
        e->seq[n] = sl->seq;
        e->logits[n] = 1;
        sl->i_batch = n;
        sl->n_batch = 1;
        n++;
    }
    int budget = MR_MIN(s->cfg.chunk, cap - n);
    for (int k = 0; k < e->n_slots && budget > 0; k++) {
        slot *sl = &e->slots[(e->rr + k) % e->n_slots];
        if (!sl->job || sl->generating) continue;
        srv_job *j = sl->job;
        int take = MR_MIN(j->n_prompt - sl->i_prompt, budget);
        for (int t = 0; t < take; t++) {
            e->tok[n] = j->prompt[sl->i_prompt + t];
            e->pos[n] = sl->n_past + t;
            e->seq[n] = sl->seq;
            e->logits[n] = 0;
            n++;
        }
        sl->n_batch = take;
        budget -= take;
        if (sl->i_prompt + take == j->n_prompt) {
            e->logits[n - 1] = 1;
            sl->i_batch = n - 1;
        }
    }
    e->rr = (e->rr + 1) % e->n_slots;
    return n;
}

/* One engine step over the active slots (batch, decode, sample). */
static void step(srv_server *s, struct srv_engine *e) {
    for (int i = 0; i < e->n_slots; i++) {
        slot *sl = &e->slots[i];
        if (sl->job && atomic_load(&sl->job->cancel)) slot_abort(s, sl, 499, "cancelled: client disconnected");
    }
    int n = build_batch(s, e);
    if (n == 0) return;
    double t0 = mr_time_s();
    mr_batch b = {.n_tokens = n, .token = e->tok, .pos = e->pos, .seq = e->seq, .logits = e->logits};
    if (mr_decode(s->ctx, &b) != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "decode failed: %s", mr_last_error());
        fprintf(stderr, "moerun serve: %s\n", msg);
        for (int i = 0; i < e->n_slots; i++)
            if (e->slots[i].job && e->slots[i].n_batch > 0) slot_abort(s, &e->slots[i], 500, msg);
        return;
    }
    uint64_t n_prompt_tok = 0, n_gen_tok = 0;
    for (int i = 0; i < e->n_slots; i++) {
        slot *sl = &e->slots[i];
        if (!sl->job || sl->n_batch == 0) continue;
        sl->n_past += sl->n_batch;
        if (sl->generating) n_gen_tok++;
        else {
            sl->i_prompt += sl->n_batch;
            n_prompt_tok += (uint64_t)sl->n_batch;
        }
        if (sl->i_batch < 0) continue;
        const float *lg = mr_get_logits(s->ctx, sl->i_batch);
        if (!lg) {
            slot_abort(s, sl, 500, "decode returned no logits");
            continue;
        }
        if (sl->job->req.ignore_eos && e->n_eog) {
            memcpy(e->scratch, lg, (size_t)s->n_vocab * sizeof *lg);
            for (int k = 0; k < e->n_eog; k++) e->scratch[e->eog[k]] = -INFINITY;
            lg = e->scratch;
        }
        mr_token t = mr_sampler_sample(sl->smp, lg, s->n_vocab);
        if (t < 0) {
            slot_abort(s, sl, 500, "sampling failed");
            continue;
        }
        mr_sampler_accept(sl->smp, t);
        slot_token(s, e, sl, t);
    }
    double dt = mr_time_s() - t0;
    pthread_mutex_lock(&s->mmu);
    s->t_busy += dt;
    s->step_prompt_tokens += n_prompt_tok;
    s->step_gen_tokens += n_gen_tok;
    pthread_mutex_unlock(&s->mmu);
}

static bool any_active(struct srv_engine *e) {
    for (int i = 0; i < e->n_slots; i++)
        if (e->slots[i].job) return true;
    return false;
}

static void *engine_main(void *arg) {
    srv_server *s = arg;
    struct srv_engine *e = s->eng;
    for (;;) {
        pthread_mutex_lock(&s->qmu);
        while (!s->stop_engine && !s->qhead && !any_active(e)) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += 200 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&s->qcv, &s->qmu, &ts);
        }
        if (s->stop_engine) {
            pthread_mutex_unlock(&s->qmu);
            break;
        }
        /* drop queued jobs whose client left (they must not hold queue places) */
        srv_job *dead = NULL;
        for (srv_job **pp = &s->qhead, *prev = NULL; *pp;) {
            srv_job *j = *pp;
            if (atomic_load(&j->cancel)) {
                *pp = j->next;
                if (s->qtail == j) s->qtail = prev;
                s->qlen--;
                j->next = dead;
                dead = j;
            } else {
                prev = j;
                pp = &j->next;
            }
        }
        /* admit queued jobs into idle slots, FIFO */
        for (int i = 0; i < e->n_slots && s->qhead; i++) {
            if (e->slots[i].job) continue;
            srv_job *j = s->qhead;
            s->qhead = j->next;
            if (!s->qhead) s->qtail = NULL;
            s->qlen--;
            j->next = NULL;
            e->slots[i].job = j; /* reserved; started below, outside the lock */
        }
        pthread_mutex_unlock(&s->qmu);
        while (dead) {
            srv_job *n = dead->next;
            srv_job_fail(dead, 499, "cancelled: client disconnected");
            srv_job_unref(dead);
            dead = n;
        }
        for (int i = 0; i < e->n_slots; i++) {
            slot *sl = &e->slots[i];
            if (sl->job && !sl->smp) slot_start(s, sl, sl->job);
        }
        step(s, e);
        atomic_store(&s->kv_used, mr_kv_used_cells(s->ctx));
        pthread_mutex_lock(&s->qmu);
        int active = 0;
        for (int i = 0; i < e->n_slots; i++) active += e->slots[i].job != NULL;
        atomic_store(&s->n_active_jobs, active + s->qlen);
        pthread_mutex_unlock(&s->qmu);
    }
    /* shutdown: everything still running or queued fails with 503 */
    for (int i = 0; i < e->n_slots; i++)
        if (e->slots[i].job) slot_abort(s, &e->slots[i], 503, "the server is shutting down");
    srv_drain_queue(s);
    atomic_store(&s->kv_used, mr_kv_used_cells(s->ctx));
    return NULL;
}

int srv_engine_start(srv_server *s) {
    struct srv_engine *e = mr_calloc(1, sizeof *e);
    if (!e) return -1;
    e->n_slots = s->cfg.n_slots;
    e->cap = s->cfg.n_slots + s->cfg.chunk;
    e->slots = mr_calloc((size_t)e->n_slots, sizeof *e->slots);
    e->tok = mr_malloc((size_t)e->cap * sizeof *e->tok);
    e->pos = mr_malloc((size_t)e->cap * sizeof *e->pos);
    e->seq = mr_malloc((size_t)e->cap * sizeof *e->seq);
    e->logits = mr_malloc((size_t)e->cap);
    e->piece_cap = 256;
    e->piece = mr_malloc((size_t)e->piece_cap);
    e->scratch = mr_malloc((size_t)s->n_vocab * sizeof *e->scratch);
    if (!e->slots || !e->tok || !e->pos || !e->seq || !e->logits || !e->piece || !e->scratch) goto fail;
    for (int t = 0; t < s->n_vocab; t++)
        if (mr_token_is_eog(s->model, t)) {
            mr_token *g = mr_realloc(e->eog, (size_t)(e->n_eog + 1) * sizeof *g);
            if (!g) goto fail;
            e->eog = g;
            e->eog[e->n_eog++] = t;
        }
    for (int i = 0; i < e->n_slots; i++) e->slots[i].seq = i;
    s->eng = e;
    if (pthread_create(&s->engine, NULL, engine_main, s) != 0) {
        mr_seterr("cannot start the engine thread");
        s->eng = NULL;
        goto fail;
    }
    s->engine_started = true;
    return 0;
fail:
    if (e->slots) free(e->slots);
    free(e->tok), free(e->pos), free(e->seq), free(e->logits), free(e->piece), free(e->scratch), free(e->eog);
    free(e);
    return -1;
}

void srv_engine_stop(srv_server *s) {
    if (!s->engine_started) return;
    pthread_mutex_lock(&s->qmu);
    s->stop_engine = true;
    pthread_cond_broadcast(&s->qcv);
    pthread_mutex_unlock(&s->qmu);
    pthread_join(s->engine, NULL);
    s->engine_started = false;
    struct srv_engine *e = s->eng;
    for (int i = 0; i < e->n_slots; i++) {
        srv_buf_free(&e->slots[i].hold);
        srv_buf_free(&e->slots[i].pending);
    }
    free(e->slots), free(e->tok), free(e->pos), free(e->seq), free(e->logits), free(e->piece), free(e->scratch);
    free(e->eog), free(e);
    s->eng = NULL;
}
