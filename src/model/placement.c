/*
 * placement.c — the device placement plan of placement.h: tensor -> device
 * from -ngl / -ot / -cmoe / --n-cpu-moe / -sm / -ts / -dev, bytes per device
 * (weights, KV cache, compute estimate), the memory check with a suggested
 * --n-cpu-moe, and the table printed before loading.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "model/model.h"
#include "model/placement.h"
#include "quant/types.h"

/* ---- inputs ------------------------------------------------------------------------ */

plc_tensor *placement_tensors_from_gguf(const gguf_ctx *g, int *n_out) {
    plc_tensor *t = mr_calloc(g->n_tensors ? g->n_tensors : 1, sizeof *t);
    if (!t) return NULL;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *s = &g->tensors[i];
        t[i].name = s->name;
        t[i].type = s->type;
        t[i].n_dims = s->n_dims;
        memcpy(t[i].ne, s->ne, sizeof t[i].ne);
        t[i].nbytes = s->nbytes;
    }
    *n_out = (int)g->n_tensors;
    return t;
}

int placement_model_alloc(plc_model *pm, int n_layer) {
    memset(pm, 0, sizeof *pm);
    pm->n_layer = n_layer;
    pm->kv_k = mr_calloc((size_t)(n_layer > 0 ? n_layer : 1), sizeof *pm->kv_k);
    pm->kv_v = mr_calloc((size_t)(n_layer > 0 ? n_layer : 1), sizeof *pm->kv_v);
    pm->rec = mr_calloc((size_t)(n_layer > 0 ? n_layer : 1), sizeof *pm->rec);
    if (!pm->kv_k || !pm->kv_v || !pm->rec) {
        placement_model_free(pm);
        return -1;
    }
    return 0;
}

void placement_model_free(plc_model *pm) {
    free(pm->kv_k);
    free(pm->kv_v);
    free(pm->rec);
    pm->kv_k = pm->kv_v = NULL;
    pm->rec = NULL;
}

int placement_model_from_model(const struct mr_model *m, plc_model *out) {
    const model_hparams *hp = &m->hp;
    if (placement_model_alloc(out, hp->n_layer)) return -1;
    out->n_embd = hp->n_embd;
    out->n_vocab = hp->n_vocab;
    out->n_head = hp->n_head_max;
    out->n_ff = MR_MAX(hp->n_ff, hp->n_expert_used * hp->n_ff_exp + hp->n_ff_shexp);
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer *ly = &m->layers[il];
        out->kv_k[il] = (int64_t)ly->kv_heads * ly->kv_dk;
        out->kv_v[il] = ly->kv_v_in_k ? 0 : (int64_t)ly->kv_heads * ly->kv_dv;
        if (ly->attn_kind == MODEL_ATTN_DELTA) /* conv inputs and delta-rule state, f32 (delta_net.h) */
            out->rec[il] = 4 * ((int64_t)(hp->ssm_d_conv - 1) * (2 * hp->ssm_n_group * hp->ssm_d_state + hp->ssm_d_inner) +
                                (int64_t)hp->ssm_dt_rank * hp->ssm_d_state * hp->ssm_d_state);
    }
    return 0;
}

plc_options placement_default_options(void) {
    plc_options o;
    memset(&o, 0, sizeof o);
    o.n_ctx = 4096;
    o.type_k = o.type_v = MR_TYPE_F16;
    o.n_ubatch = 512;
    return o;
}

int placement_parse_sizes(const char *s, uint64_t *out, int cap) {
    int n = 0;
    const char *p = s;
    while (p && *p) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !isfinite(v) || v < 0) goto bad;
        char unit[8] = {0};
        int u = 0;
        while (isalpha((unsigned char)*end) && u < 7) unit[u++] = (char)toupper((unsigned char)*end++);
        double mul = 1;
        static const struct { const char *u; double m; } k[] = {
            {"", 1}, {"B", 1}, {"K", 1024.0}, {"KIB", 1024.0}, {"KB", 1e3}, {"M", 1048576.0}, {"MIB", 1048576.0},
            {"MB", 1e6}, {"G", 1073741824.0}, {"GIB", 1073741824.0}, {"GB", 1e9}, {"T", 1099511627776.0},
            {"TIB", 1099511627776.0}, {"TB", 1e12}};
        size_t i = 0;
        for (; i < MR_ARRAY_LEN(k); i++)
            if (!strcmp(unit, k[i].u)) break;
        if (i == MR_ARRAY_LEN(k)) goto bad;
        mul = k[i].m;
        if (*end && *end != ',') goto bad;
        if (n >= cap) {
            mr_seterr("'%s': more than %d sizes", s, cap);
            return -1;
        }
        out[n++] = (uint64_t)(v * mul);
        p = *end ? end + 1 : end;
        continue;
    bad:
        mr_seterr("'%s' is not a list of sizes like 24GiB,8GiB (at '%s')", s, p);
        return -1;
    }
    if (n == 0) {
        mr_seterr("'%s': no sizes", s);
        return -1;
    }
    return n;
}

int placement_fake_devices(const char *s, plc_devices *dev) {
    memset(dev, 0, sizeof *dev);
    int n = placement_parse_sizes(s, dev->free, PLC_MAX_DEV);
    if (n < 0) return -1;
    dev->n = n;
    for (int i = 0; i < n; i++) {
        dev->total[i] = dev->free[i];
        snprintf(dev->name[i], sizeof dev->name[i], "fake");
    }
    return 0;
}

const char *placement_dev_name(int d, char *buf, size_t n) {
    if (d < 0) snprintf(buf, n, "CPU");
    else snprintf(buf, n, "CUDA%d", d);
    return buf;
}

/* ---- helpers ---------------------------------------------------------------------------- */

/* "blk.N." -> N, else -1. */
static int layer_of(const char *name) {
    if (strncmp(name, "blk.", 4)) return -1;
    const char *p = name + 4;
    if (!isdigit((unsigned char)*p)) return -1;
    long v = 0;
    while (isdigit((unsigned char)*p) && v < 1000000) v = v * 10 + (*p++ - '0');
    return *p == '.' ? (int)v : -1;
}

/* Routed-expert tensors (what -cmoe / --n-cpu-moe keep on the CPU):
 * ffn_{gate,up,down,gate_up}_exps. */
static bool is_expert(const char *name) { return strstr(name, "_exps.") != NULL || strstr(name, "_exps") != NULL; }

/* "CPU", "CUDA3" -> device id, -2 when not a device name. */
static int parse_dev(const char *s, size_t len) {
    if (len == 3 && !strncasecmp(s, "CPU", 3)) return PLC_CPU;
    if (len > 4 && !strncasecmp(s, "CUDA", 4)) {
        int v = 0;
        for (size_t i = 4; i < len; i++) {
            if (!isdigit((unsigned char)s[i]) || v > 1000) return -2;
            v = v * 10 + (s[i] - '0');
        }
        return v;
    }
    return -2;
}

typedef struct {
    regex_t re[64];
    int dev[64];
    int n;
} overrides;

static void ov_free(overrides *ov) {
    for (int i = 0; i < ov->n; i++) regfree(&ov->re[i]);
    ov->n = 0;
}

/* Parse "RE=DEV,RE=DEV". A piece without '=' is part of the next regex (a
 * comma inside the regex, as in {1,2}). The device is after the last '='. */
static int ov_parse(overrides *ov, const char *s, int n_cuda) {
    ov->n = 0;
    if (!s || !*s) return 0;
    size_t len = strlen(s);
    char *buf = mr_malloc(len + 1);
    if (!buf) return -1;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != ',') continue;
        /* piece [start, i) — does it hold a '='? */
        const char *eq = NULL;
        for (size_t j = start; j < i; j++)
            if (s[j] == '=') eq = s + j;
        if (!eq && i < len) continue; /* comma inside the regex: extend */
        if (!eq || eq == s + start || eq + 1 == s + i) {
            mr_seterr("-ot: '%.*s' is not REGEX=DEVICE", (int)(i - start), s + start);
            goto fail;
        }
        const size_t rl = (size_t)(eq - (s + start));
        const int d = parse_dev(eq + 1, (size_t)(s + i - (eq + 1)));
        if (d == -2 || d >= n_cuda) {
            mr_seterr("-ot: unknown device '%.*s' in '%.*s' (devices: CPU%s%s)", (int)(s + i - (eq + 1)), eq + 1,
                      (int)(i - start), s + start, n_cuda ? ", CUDA0.." : "", n_cuda ? "" : " only: no CUDA device");
            goto fail;
        }
        if (ov->n == (int)MR_ARRAY_LEN(ov->re)) {
            mr_seterr("-ot: more than %d overrides", (int)MR_ARRAY_LEN(ov->re));
            goto fail;
        }
        memcpy(buf, s + start, rl);
        buf[rl] = 0;
        int rc = regcomp(&ov->re[ov->n], buf, REG_EXTENDED | REG_NOSUB);
        if (rc) {
            char msg[128];
            regerror(rc, &ov->re[ov->n], msg, sizeof msg);
            mr_seterr("-ot: regex '%s': %s", buf, msg);
            goto fail;
        }
        ov->dev[ov->n++] = d;
        start = i + 1;
    }
    free(buf);
    return 0;
fail:
    free(buf);
    ov_free(ov);
    return -1;
}

/* Bytes of n elements of a type, rounding up to whole blocks. */
static uint64_t elems_bytes(uint32_t type, int64_t n) {
    const mr_type_traits *tr = mr_type_get(type);
    if (!tr || n <= 0) return 0;
    return (uint64_t)((n + tr->blck - 1) / tr->blck) * tr->tsize;
}

static plc_dev_sum *sum_of(placement *pl, int d) { return &pl->sum[d + 1]; }

/* Devices used for layers (-dev), the split mode and the proportions. */
static int plan_devices(placement *pl, const plc_options *o, const plc_devices *dev) {
    const int n_cuda = dev ? dev->n : 0;
    pl->n_split = 0;
    if (!o->devices) {
        for (int i = 0; i < n_cuda; i++) pl->split_dev[pl->n_split++] = i;
    } else if (strcasecmp(o->devices, "none")) {
        const char *p = o->devices;
        while (*p) {
            const char *e = strchr(p, ',');
            size_t l = e ? (size_t)(e - p) : strlen(p);
            int d = parse_dev(p, l);
            if (d < 0 || d >= n_cuda) {
                mr_seterr("-dev: unknown device '%.*s' (%d CUDA device%s)", (int)l, p, n_cuda, n_cuda == 1 ? "" : "s");
                return -1;
            }
            for (int i = 0; i < pl->n_split; i++)
                if (pl->split_dev[i] == d) {
                    mr_seterr("-dev: device '%.*s' given twice", (int)l, p);
                    return -1;
                }
            pl->split_dev[pl->n_split++] = d;
            p = e ? e + 1 : p + l;
        }
    }
    const char *sm = o->split_mode ? o->split_mode : "layer";
    if (!strcmp(sm, "none")) pl->split = PLC_SPLIT_NONE;
    else if (!strcmp(sm, "layer")) pl->split = PLC_SPLIT_LAYER;
    else if (!strcmp(sm, "row")) pl->split = PLC_SPLIT_ROW;
    else {
        mr_seterr("-sm: '%s' is not a split mode (expected none, layer or row)", sm);
        return -1;
    }
    double w[PLC_MAX_DEV] = {0}, tot = 0;
    if (pl->split == PLC_SPLIT_NONE && pl->n_split > 1) pl->n_split = 1; /* the main device only */
    if (o->tensor_split && pl->split != PLC_SPLIT_NONE) {
        const char *p = o->tensor_split;
        int n = 0;
        while (*p) {
            char *end;
            double v = strtod(p, &end);
            if (end == p || !isfinite(v) || v < 0 || (*end && *end != ',' && *end != '/')) {
                mr_seterr("-ts: '%s' is not a list of proportions like 3,1", o->tensor_split);
                return -1;
            }
            if (n >= pl->n_split) {
                mr_seterr("-ts: '%s' has more entries than the %d device%s in use", o->tensor_split, pl->n_split,
                          pl->n_split == 1 ? "" : "s");
                return -1;
            }
            w[n++] = v;
            p = *end ? end + 1 : end;
        }
    } else {
        bool known = pl->n_split > 0;
        for (int i = 0; i < pl->n_split; i++) known = known && dev->free[pl->split_dev[i]] > 0;
        for (int i = 0; i < pl->n_split; i++) w[i] = known ? (double)dev->free[pl->split_dev[i]] : 1.0;
    }
    for (int i = 0; i < pl->n_split; i++) tot += w[i];
    if (pl->n_split && !(tot > 0)) {
        mr_seterr("-ts: '%s' gives every device 0", o->tensor_split ? o->tensor_split : "");
        return -1;
    }
    for (int i = 0; i < pl->n_split; i++) pl->split_frac[i] = (float)(w[i] / tot);
    return 0;
}

/* llama.cpp's get_layer_buft_list: layer il (n_layer = the output layer) ->
 * device. Cumulative split points, upper_bound of (il - start) / act. */
static int layer_device(const placement *pl, int il, int n_layer, int n_gpu) {
    const int start = MR_MAX(n_layer - n_gpu, 0);
    const int act = MR_MIN(n_gpu, n_layer + 1);
    if (pl->n_split == 0 || il < start || il - start >= act) return PLC_CPU;
    if (pl->split != PLC_SPLIT_LAYER) return pl->split_dev[0];
    const float x = (float)(il - start) / (float)act;
    float cum = 0;
    for (int i = 0; i < pl->n_split; i++) {
        cum += pl->split_frac[i];
        if (cum > x && pl->split_frac[i] > 0) return pl->split_dev[i];
    }
    for (int i = pl->n_split - 1; i >= 0; i--)
        if (pl->split_frac[i] > 0) return pl->split_dev[i];
    return pl->split_dev[0];
}

static void add_layer(placement *pl, int d, int il) {
    plc_dev_sum *s = sum_of(pl, d);
    if (s->n_layers == 0 || il < s->first_layer) s->first_layer = il;
    if (s->n_layers == 0 || il > s->last_layer) s->last_layer = il;
    s->n_layers++;
}

/* Add bytes of a tensor to device d, or spread over the split devices. */
static void add_bytes(placement *pl, int d, bool rows, uint64_t b) {
    if (!rows) {
        sum_of(pl, d)->weight_bytes += b;
        return;
    }
    uint64_t left = b;
    for (int i = 0; i < pl->n_split; i++) {
        uint64_t part = i == pl->n_split - 1 ? left : (uint64_t)((double)b * pl->split_frac[i]);
        part = MR_MIN(part, left);
        sum_of(pl, pl->split_dev[i])->weight_bytes += part;
        left -= part;
    }
}

/* ---- the plan ----------------------------------------------------------------------------- */

void placement_free(placement *pl) {
    free(pl->dev);
    free(pl->row_split);
    free(pl->layer_dev);
    pl->dev = NULL;
    pl->row_split = NULL;
    pl->layer_dev = NULL;
}

int placement_plan(placement *pl, const plc_tensor *t, int n_t, const plc_model *pm, const plc_options *o,
                   const plc_devices *dev) {
    memset(pl, 0, sizeof *pl);
    const int n_cuda = dev ? MR_MIN(dev->n, PLC_MAX_DEV) : 0;
    const int n_layer = pm->n_layer;
    pl->n_cuda = n_cuda;
    pl->n_tensors = n_t;
    pl->n_layer = n_layer;
    for (int i = 0; i < n_cuda; i++) {
        pl->free[i] = dev->free[i];
        snprintf(pl->dev_name[i], sizeof pl->dev_name[i], "%s", dev->name[i]);
    }
    for (int d = 0; d <= PLC_MAX_DEV; d++) pl->sum[d].first_layer = pl->sum[d].last_layer = -1;
    if (plan_devices(pl, o, dev)) return -1;

    overrides ov;
    if (ov_parse(&ov, o->overrides, n_cuda)) return -1;
    pl->dev = mr_calloc((size_t)(n_t ? n_t : 1), sizeof *pl->dev);
    pl->row_split = mr_calloc((size_t)(n_t ? n_t : 1), sizeof *pl->row_split);
    pl->layer_dev = mr_calloc((size_t)(n_layer ? n_layer : 1), sizeof *pl->layer_dev);
    if (!pl->dev || !pl->row_split || !pl->layer_dev) {
        ov_free(&ov);
        placement_free(pl);
        return -1;
    }

    int n_gpu = o->n_gpu_layers < 0 ? n_layer + 1 : MR_MIN(o->n_gpu_layers, n_layer + 1);
    if (n_gpu > 0 && pl->n_split == 0) {
        snprintf(pl->note, sizeof pl->note, "-ngl %d ignored: %s", o->n_gpu_layers,
                 n_cuda ? "no device selected (-dev none)" : "no CUDA device");
        n_gpu = 0;
    }
    int first_gpu_layer_dev = PLC_CPU;
    for (int il = 0; il < n_layer; il++) {
        pl->layer_dev[il] = (int8_t)layer_device(pl, il, n_layer, n_gpu);
        add_layer(pl, pl->layer_dev[il], il);
        if (first_gpu_layer_dev == PLC_CPU && pl->layer_dev[il] != PLC_CPU) first_gpu_layer_dev = pl->layer_dev[il];
    }
    pl->output_dev = layer_device(pl, n_layer, n_layer, n_gpu);

    bool have_output = false;
    int emb = -1;
    uint64_t max_mat[PLC_MAX_DEV + 1] = {0}; /* largest matrix (elements) per device: f16 prefill scratch */
    for (int i = 0; i < n_t; i++) {
        const char *name = t[i].name;
        const int il = layer_of(name);
        int d;
        bool from_layer = false;
        if (il >= 0 && il < n_layer) {
            d = pl->layer_dev[il];
            from_layer = true;
            if (is_expert(name) && (o->n_cpu_moe < 0 || il < o->n_cpu_moe)) d = PLC_CPU, from_layer = false;
        } else if (!strncmp(name, "output", 6)) {
            d = pl->output_dev;
            from_layer = true;
            if (!strcmp(name, "output.weight")) have_output = true;
        } else if (!strncmp(name, "rope_", 5)) {
            d = first_gpu_layer_dev;
        } else {
            d = PLC_CPU; /* token_embd and other input-side tensors */
            if (!strcmp(name, "token_embd.weight")) emb = i;
        }
        for (int k = 0; k < ov.n; k++)
            if (regexec(&ov.re[k], name, 0, NULL, 0) == 0) {
                d = ov.dev[k];
                from_layer = false;
                break;
            }
        pl->dev[i] = (int8_t)d;
        const bool mat = t[i].n_dims == 2 && t[i].ne[1] > 1;
        pl->row_split[i] = pl->split == PLC_SPLIT_ROW && from_layer && d != PLC_CPU && mat && pl->n_split > 1;
        sum_of(pl, d)->n_tensors++;
        add_bytes(pl, d, pl->row_split[i], t[i].nbytes);
        const uint64_t me = (uint64_t)t[i].ne[0] * (uint64_t)(t[i].n_dims >= 2 ? t[i].ne[1] : 1);
        if (t[i].n_dims >= 2 && me > max_mat[d + 1]) max_mat[d + 1] = me;
    }
    /* tied embeddings: the output matmul needs token_embd on the output device */
    if (!have_output && emb >= 0 && pl->output_dev != PLC_CPU && pl->dev[emb] != pl->output_dev) {
        sum_of(pl, pl->output_dev)->n_tensors++;
        sum_of(pl, pl->output_dev)->weight_bytes += t[emb].nbytes;
        const uint64_t me = (uint64_t)t[emb].ne[0] * (uint64_t)t[emb].ne[1];
        if (me > max_mat[pl->output_dev + 1]) max_mat[pl->output_dev + 1] = me;
    }
    ov_free(&ov);

    /* experts streamed to the device for large micro-batches: two buffers of the largest layer's
     * RAM experts */
    const int omb = o->offload_min_batch;
    if (omb > 0 && (o->n_ubatch > 0 ? o->n_ubatch : 512) >= omb) {
        uint64_t *lb = mr_calloc((size_t)(n_layer ? n_layer : 1), sizeof *lb);
        if (!lb) {
            placement_free(pl);
            return -1;
        }
        for (int i = 0; i < n_t; i++) {
            const int il = layer_of(t[i].name);
            if (il >= 0 && il < n_layer && pl->dev[i] == PLC_CPU && pl->layer_dev[il] != PLC_CPU &&
                is_expert(t[i].name))
                lb[il] += t[i].nbytes;
        }
        for (int il = 0; il < n_layer; il++) { /* two buffers: the next layer's upload overlaps */
            plc_dev_sum *s = sum_of(pl, pl->layer_dev[il]);
            if (2 * lb[il] > s->stream_bytes) s->stream_bytes = 2 * lb[il], pl->offload_min = omb;
        }
        free(lb);
    }

    /* KV cache on the layer's device */
    for (int il = 0; il < n_layer; il++) {
        const uint64_t cell = elems_bytes(o->type_k, pm->kv_k[il]) + elems_bytes(o->type_v, pm->kv_v[il]);
        sum_of(pl, pl->layer_dev[il])->kv_bytes += cell * (uint64_t)(o->n_ctx > 0 ? o->n_ctx : 0);
        if (pm->rec) sum_of(pl, pl->layer_dev[il])->kv_bytes += (uint64_t)pm->rec[il] * (uint64_t)MR_MAX(o->n_seq, 1);
    }

    /* Compute buffers (an estimate): per micro-batch activations (residual,
     * norms, q/k/v/out, FFN in and out) in f32, the attention scores without
     * flash attention, the logits on the output device, and the f16 scratch of
     * the prefill path (the largest matrix dequantized for a cuBLAS GEMM). */
    const uint64_t ub = (uint64_t)(o->n_ubatch > 0 ? o->n_ubatch : 512);
    for (int d = PLC_CPU; d < n_cuda; d++) {
        plc_dev_sum *s = sum_of(pl, d);
        const bool out_here = pl->output_dev == d;
        if (s->n_layers == 0 && !out_here) continue;
        uint64_t c = 4 * ub * (6 * (uint64_t)pm->n_embd + 3 * (uint64_t)pm->n_ff);
        if (!o->flash_attn) c += 4 * ub * (uint64_t)pm->n_head * (uint64_t)(o->n_ctx > 0 ? o->n_ctx : 0);
        if (out_here) c += 4 * ub * (uint64_t)pm->n_vocab;
        if (d != PLC_CPU) c += 2 * max_mat[d + 1] + s->stream_bytes;
        s->compute_bytes = c;
    }
    return 0;
}

uint64_t placement_need(const placement *pl, int d) {
    const plc_dev_sum *s = &pl->sum[d + 1];
    return s->weight_bytes + s->kv_bytes + s->compute_bytes;
}

/* The first CUDA device with known free memory that overflows, -1 if none. */
static int first_overflow(const placement *pl) {
    for (int d = 0; d < pl->n_cuda; d++)
        if (pl->free[d] && placement_need(pl, d) > pl->free[d]) return d;
    return -1;
}

int placement_fit_n_cpu_moe(const plc_tensor *t, int n_t, const plc_model *pm, const plc_options *o,
                            const plc_devices *dev) {
    if (o->n_cpu_moe < 0) return -1;
    plc_options oo = *o;
    for (int n = o->n_cpu_moe; n <= pm->n_layer; n++) {
        oo.n_cpu_moe = n;
        placement pl;
        if (placement_plan(&pl, t, n_t, pm, &oo, dev)) return -1;
        const int bad = first_overflow(&pl);
        placement_free(&pl);
        if (bad < 0) return n;
    }
    return -1;
}

int placement_fit_ngl(const plc_tensor *t, int n_t, const plc_model *pm, const plc_options *o,
                      const plc_devices *dev) {
    plc_options oo = *o;
    const int top = o->n_gpu_layers < 0 ? pm->n_layer + 1 : MR_MIN(o->n_gpu_layers, pm->n_layer + 1);
    for (int n = top; n >= 0; n--) {
        oo.n_gpu_layers = n;
        placement pl;
        if (placement_plan(&pl, t, n_t, pm, &oo, dev)) return -1;
        const int bad = first_overflow(&pl);
        placement_free(&pl);
        if (bad < 0) return n;
    }
    return -1;
}

int placement_check(const placement *pl, const plc_tensor *t, int n_t, const plc_model *pm, const plc_options *o,
                    const plc_devices *dev) {
    const int d = first_overflow(pl);
    if (d < 0) return 0;
    const plc_dev_sum *s = &pl->sum[d + 1];
    char need[32], fr[32], w[32], kv[32], c[32], fix[200];
    mr_fmt_bytes(need, sizeof need, placement_need(pl, d));
    mr_fmt_bytes(fr, sizeof fr, pl->free[d]);
    mr_fmt_bytes(w, sizeof w, s->weight_bytes);
    mr_fmt_bytes(kv, sizeof kv, s->kv_bytes);
    mr_fmt_bytes(c, sizeof c, s->compute_bytes);
    const int n = placement_fit_n_cpu_moe(t, n_t, pm, o, dev);
    if (n >= 0 && n >= pm->n_layer) snprintf(fix, sizeof fix, "; try -cmoe (all routed experts stay in RAM)");
    else if (n >= 0) snprintf(fix, sizeof fix, "; try --n-cpu-moe %d (routed experts of the first %d layers stay in RAM)", n, n);
    else {
        plc_options oo = *o;
        oo.n_cpu_moe = -1;
        const int g = placement_fit_ngl(t, n_t, pm, &oo, dev);
        if (g > 0) snprintf(fix, sizeof fix, "; even with every routed expert in RAM it does not fit: try -cmoe -ngl %d", g);
        else snprintf(fix, sizeof fix, "; lower -c or -ngl");
    }
    mr_seterr("CUDA%d: not enough memory: needs %s (weights %s + KV %s + compute %s) but %s free%s", d, need, w, kv, c, fr,
              fix);
    return -1;
}

/* ---- printing ---------------------------------------------------------------------------------- */

void placement_print(const placement *pl, FILE *f) {
    char dn[16], a[32], b[32], c[32], e[32], g[32], lay[40];
    if (pl->n_split > 0 && pl->n_cuda > 0) {
        fprintf(f, "placement: split %s over", pl->split == PLC_SPLIT_NONE ? "none" : pl->split == PLC_SPLIT_LAYER ? "layer" : "row");
        for (int i = 0; i < pl->n_split; i++)
            fprintf(f, "%s CUDA%d (%.0f%%)", i ? "," : "", pl->split_dev[i], 100.0 * pl->split_frac[i]);
        fprintf(f, ", output on %s\n", placement_dev_name(pl->output_dev, dn, sizeof dn));
    } else {
        fprintf(f, "placement: CPU only\n");
    }
    fprintf(f, "%-7s %-12s %7s %11s %11s %11s %11s %11s\n", "device", "layers", "tensors", "weights", "KV", "compute",
            "total", "free");
    uint64_t tot[4] = {0};
    int ntens = 0;
    for (int d = PLC_CPU; d < pl->n_cuda; d++) {
        const plc_dev_sum *s = &pl->sum[d + 1];
        bool used = d == PLC_CPU || s->n_tensors || s->n_layers;
        for (int i = 0; i < pl->n_split; i++) used = used || pl->split_dev[i] == d;
        if (!used) continue;
        if (s->n_layers == 0) snprintf(lay, sizeof lay, "-");
        else if (s->last_layer - s->first_layer + 1 == s->n_layers)
            snprintf(lay, sizeof lay, "%d-%d", s->first_layer, s->last_layer);
        else snprintf(lay, sizeof lay, "%d in %d-%d", s->n_layers, s->first_layer, s->last_layer);
        if (pl->output_dev == d) strncat(lay, "+out", sizeof lay - strlen(lay) - 1);
        if (d == PLC_CPU || !pl->free[d]) snprintf(g, sizeof g, "-");
        else mr_fmt_bytes(g, sizeof g, pl->free[d]);
        fprintf(f, "%-7s %-12s %7d %11s %11s %11s %11s %11s%s\n", placement_dev_name(d, dn, sizeof dn), lay, s->n_tensors,
                mr_fmt_bytes(a, sizeof a, s->weight_bytes), mr_fmt_bytes(b, sizeof b, s->kv_bytes),
                mr_fmt_bytes(c, sizeof c, s->compute_bytes), mr_fmt_bytes(e, sizeof e, placement_need(pl, d)), g,
                d >= 0 && pl->free[d] && placement_need(pl, d) > pl->free[d] ? "  << does not fit" : "");
        tot[0] += s->weight_bytes, tot[1] += s->kv_bytes, tot[2] += s->compute_bytes;
        ntens += s->n_tensors;
    }
    fprintf(f, "%-7s %-12s %7d %11s %11s %11s %11s\n", "total", "", ntens, mr_fmt_bytes(a, sizeof a, tot[0]),
            mr_fmt_bytes(b, sizeof b, tot[1]), mr_fmt_bytes(c, sizeof c, tot[2]),
            mr_fmt_bytes(e, sizeof e, tot[0] + tot[1] + tot[2]));
    if (pl->note[0]) fprintf(f, "note: %s\n", pl->note);
    for (int d = 0; d < pl->n_cuda; d++)
        if (pl->sum[d + 1].stream_bytes)
            fprintf(f, "note: micro-batches of %d tokens or more stream each layer's RAM experts to CUDA%d and run them "
                       "there (two buffers, %s, in compute; MOERUN_OFFLOAD_MIN_BATCH=0: never)\n",
                    pl->offload_min, d, mr_fmt_bytes(a, sizeof a, pl->sum[d + 1].stream_bytes));
}

int placement_offload_min_batch(void) {
    const char *names[2] = {"MOERUN_OFFLOAD_MIN_BATCH", "GGML_OP_OFFLOAD_MIN_BATCH"};
    for (int i = 0; i < 2; i++) {
        const char *s = getenv(names[i]);
        if (!s || !*s) continue;
        char *end;
        const long v = strtol(s, &end, 10);
        if (*end || v < 0 || v > 1 << 20) {
            MR_WARN("%s=%s is not a token count (0 to %d); using 32", names[i], s, 1 << 20);
            return 32;
        }
        return (int)v;
    }
    return 32;
}
