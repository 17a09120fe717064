/*
 * test_placement.c — the device placement plan (src/model/placement.c)
 * without a GPU: layer counting of -ngl (output layer included past
 * n_layer), -ot precedence (first match wins, beats -cmoe), -cmoe and
 * --n-cpu-moe, -sm none/layer/row, -ts 75,25 proportions, -dev, KV bytes,
 * and the out-of-memory message with its --n-cpu-moe suggestion, on the tiny
 * qwen3moe fixture and on the synthesized Qwen3-30B-A3B layout (synth plan).
 */
#include <string.h>

#include "base/base.h"
#include "check.h"
#include "model/model.h"
#include "model/placement.h"
#include "quant/types.h"
#include "synth/synth.h"

static int find(const plc_tensor *t, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, name)) return i;
    return -1;
}

static int dev_of(const placement *pl, const plc_tensor *t, int n, const char *name) {
    int i = find(t, n, name);
    return i < 0 ? -100 : pl->dev[i];
}

/* ---- tiny qwen3moe fixture (4 layers, 8 experts) ------------------------------- */
static void test_tiny(const char *path) {
    mr_model_params mp = mr_model_default_params();
    mp.path = path;
    mr_model *m = mr_model_load(&mp);
    CHECK(m != NULL, "load %s: %s", path, mr_geterr());
    if (!m) return;
    int n_t = 0;
    plc_tensor *t = placement_tensors_from_gguf(m->g, &n_t);
    plc_model pm;
    CHECK(placement_model_from_model(m, &pm) == 0, "model numbers");
    CHECK(pm.n_layer == 4, "4 layers, got %d", pm.n_layer);
    const bool tied = find(t, n_t, "output.weight") < 0;

    plc_devices dev;
    CHECK(placement_fake_devices("24GiB,8GiB", &dev) == 0, "fake devices: %s", mr_geterr());
    CHECK(dev.n == 2 && dev.free[0] == 24ull << 30 && dev.free[1] == 8ull << 30, "sizes");
    plc_options o = placement_default_options();
    o.n_ctx = 256;
    placement pl;

    /* -ngl 0: everything on the CPU */
    CHECK(placement_plan(&pl, t, n_t, &pm, &o, &dev) == 0, "plan: %s", mr_geterr());
    CHECK(pl.sum[0].n_tensors == n_t && pl.sum[0].n_layers == 4 && pl.output_dev == PLC_CPU, "ngl 0 all CPU");
    CHECK(placement_need(&pl, 0) == 0, "nothing on CUDA0");
    placement_free(&pl);

    /* -ngl 2 on one device: layers 2, 3; output stays */
    o.n_gpu_layers = 2;
    o.devices = "CUDA0";
    placement_plan(&pl, t, n_t, &pm, &o, &dev);
    CHECK(pl.layer_dev[0] == PLC_CPU && pl.layer_dev[1] == PLC_CPU && pl.layer_dev[2] == 0 && pl.layer_dev[3] == 0,
          "ngl 2: last two layers: %d %d %d %d", pl.layer_dev[0], pl.layer_dev[1], pl.layer_dev[2], pl.layer_dev[3]);
    CHECK(pl.output_dev == PLC_CPU, "ngl 2: output on CPU");
    CHECK(dev_of(&pl, t, n_t, "blk.3.ffn_down_exps.weight") == 0, "blk.3 experts on CUDA0");
    CHECK(dev_of(&pl, t, n_t, "blk.1.attn_q.weight") == PLC_CPU, "blk.1 on CPU");
    CHECK(dev_of(&pl, t, n_t, "token_embd.weight") == PLC_CPU, "embeddings on CPU");
    CHECK(pl.sum[1].kv_bytes == pl.sum[0].kv_bytes && pl.sum[1].kv_bytes > 0, "KV split 2:2");
    placement_free(&pl);

    /* -ngl 4 = n_layer: all layers, not the output; -ngl 5 and -1: the output too */
    o.n_gpu_layers = 4;
    placement_plan(&pl, t, n_t, &pm, &o, &dev);
    CHECK(pl.sum[1].n_layers == 4 && pl.output_dev == PLC_CPU, "ngl 4: layers only");
    placement_free(&pl);
    for (int ngl = 5; ngl >= -1; ngl -= 6) {
        o.n_gpu_layers = ngl;
        placement_plan(&pl, t, n_t, &pm, &o, &dev);
        CHECK(pl.sum[1].n_layers == 4 && pl.output_dev == 0, "ngl %d: layers + output", ngl);
        CHECK(dev_of(&pl, t, n_t, "output_norm.weight") == 0, "ngl %d: output_norm on CUDA0", ngl);
        /* tied output: a copy of token_embd on the output device */
        if (tied) {
            int e = find(t, n_t, "token_embd.weight");
            uint64_t w = 0;
            for (int i = 0; i < n_t; i++)
                if (pl.dev[i] == 0) w += t[i].nbytes;
            CHECK(pl.sum[1].weight_bytes == w + t[e].nbytes, "tied output: token_embd copied to CUDA0");
        }
        placement_free(&pl);
    }

    /* -cmoe: every *_exps on the CPU, the rest on the GPU */
    o.n_gpu_layers = 99;
    o.n_cpu_moe = -1;
    placement_plan(&pl, t, n_t, &pm, &o, &dev);
    for (int i = 0; i < n_t; i++) {
        if (strncmp(t[i].name, "blk.", 4)) continue;
        const bool ex = strstr(t[i].name, "_exps") != NULL;
        CHECK(pl.dev[i] == (ex ? PLC_CPU : 0), "cmoe: %s on %d", t[i].name, pl.dev[i]);
    }
    CHECK(pl.sum[1].n_layers == 4 && pl.sum[1].kv_bytes > 0 && pl.sum[0].kv_bytes == 0, "cmoe: KV on the GPU");
    placement_free(&pl);

    /* --n-cpu-moe 2: experts of layers 0 and 1 only */
    o.n_cpu_moe = 2;
    placement_plan(&pl, t, n_t, &pm, &o, &dev);
    CHECK(dev_of(&pl, t, n_t, "blk.0.ffn_up_exps.weight") == PLC_CPU, "ncmoe 2: blk.0 experts CPU");
    CHECK(dev_of(&pl, t, n_t, "blk.1.ffn_gate_exps.weight") == PLC_CPU, "ncmoe 2: blk.1 experts CPU");
    CHECK(dev_of(&pl, t, n_t, "blk.2.ffn_gate_exps.weight") == 0, "ncmoe 2: blk.2 experts GPU");
    CHECK(dev_of(&pl, t, n_t, "blk.1.ffn_gate_inp.weight") == 0, "ncmoe 2: router stays on GPU");
    placement_free(&pl);

    /* -ot: first match wins, and beats --n-cpu-moe */
    o.devices = NULL;
    o.split_mode = "none";
    o.overrides = "blk\\.1\\.ffn_(up|down){1,1}_exps=CUDA1,exps=CPU,blk\\.1\\.=CUDA1";
    placement_plan(&pl, t, n_t, &pm, &o, &dev);
    CHECK(dev_of(&pl, t, n_t, "blk.1.ffn_up_exps.weight") == 1, "ot: first rule (with {1,1}) -> CUDA1");
    CHECK(dev_of(&pl, t, n_t, "blk.1.ffn_gate_exps.weight") == PLC_CPU, "ot: second rule -> CPU");
    CHECK(dev_of(&pl, t, n_t, "blk.3.ffn_down_exps.weight") == PLC_CPU, "ot: exps=CPU");
    CHECK(dev_of(&pl, t, n_t, "blk.1.attn_k.weight") == 1, "ot: third rule");
    CHECK(dev_of(&pl, t, n_t, "blk.2.attn_k.weight") == 0, "sm none: main device");
    CHECK(pl.layer_dev[1] == 0, "ot does not move the layer's KV");
    placement_free(&pl);

    /* errors */
    o.overrides = "blk\\.(1=CPU";
    CHECK(placement_plan(&pl, t, n_t, &pm, &o, &dev) == -1 && strstr(mr_geterr(), "regex"), "bad regex: %s", mr_geterr());
    o.overrides = "exps=CUDA7";
    CHECK(placement_plan(&pl, t, n_t, &pm, &o, &dev) == -1 && strstr(mr_geterr(), "CUDA7"), "bad dev: %s", mr_geterr());
    o.overrides = "exps";
    CHECK(placement_plan(&pl, t, n_t, &pm, &o, &dev) == -1, "no '='");
    o.overrides = NULL;
    o.split_mode = NULL;
    o.tensor_split = "1,2,3";
    CHECK(placement_plan(&pl, t, n_t, &pm, &o, &dev) == -1 && strstr(mr_geterr(), "-ts"), "ts too long: %s", mr_geterr());
    o.tensor_split = NULL;
    o.devices = "CUDA2";
    CHECK(placement_plan(&pl, t, n_t, &pm, &o, &dev) == -1 && strstr(mr_geterr(), "CUDA2"), "-dev: %s", mr_geterr());

    /* no CUDA device: -ngl ignored with a note */
    o.devices = NULL;
    CHECK(placement_plan(&pl, t, n_t, &pm, &o, NULL) == 0 && pl.sum[0].n_layers == 4 && strstr(pl.note, "ignored"),
          "no device: %s", pl.note);
    placement_free(&pl);

    placement_model_free(&pm);
    free(t);
    mr_model_free(m);
}

/* ---- Qwen3-30B-A3B Q4_K_M layout (48 layers, 128 experts) --------------------------- */
static plc_tensor *synth_tensors(synth_plan *sp, int *n) {
    plc_tensor *t = calloc((size_t)sp->n_t, sizeof *t);
    for (int i = 0; i < sp->n_t; i++) {
        const synth_tensor *s = &sp->t[i];
        t[i].name = s->name;
        t[i].type = s->type;
        t[i].n_dims = s->n_dims;
        memcpy(t[i].ne, s->ne, sizeof t[i].ne);
        t[i].nbytes = mr_row_size(s->type, s->ne[0]) * (uint64_t)(s->ne[1] * s->ne[2] * s->ne[3]);
    }
    *n = sp->n_t;
    return t;
}

static void test_30b(void) {
    synth_plan sp;
    CHECK(synth_plan_build(&sp, "qwen3moe-30b-a3b", 0, 0) == 0, "synth plan: %s", mr_geterr());
    int n_t;
    plc_tensor *t = synth_tensors(&sp, &n_t);
    plc_model pm;
    placement_model_alloc(&pm, 48);
    pm.n_embd = 2048, pm.n_vocab = 151936, pm.n_head = 32, pm.n_ff = 8 * 768;
    for (int il = 0; il < 48; il++) pm.kv_k[il] = pm.kv_v[il] = 4 * 128;

    plc_devices dev;
    placement_fake_devices("80GiB,80GiB", &dev);
    plc_options o = placement_default_options();
    o.n_ctx = 4096;
    o.n_gpu_layers = 99;
    o.tensor_split = "75,25";
    placement pl;
    CHECK(placement_plan(&pl, t, n_t, &pm, &o, &dev) == 0, "plan: %s", mr_geterr());
    /* act = 49 (48 layers + output); layer il on CUDA0 while il/49 < 0.75: 0..36 */
    CHECK(pl.sum[1].n_layers == 37 && pl.sum[2].n_layers == 11 && pl.output_dev == 1,
          "ts 75,25: %d + %d layers, output on %d", pl.sum[1].n_layers, pl.sum[2].n_layers, pl.output_dev);
    CHECK(pl.sum[1].first_layer == 0 && pl.sum[1].last_layer == 36 && pl.sum[2].first_layer == 37, "contiguous");
    const double r = (double)pl.sum[1].weight_bytes / (double)(pl.sum[1].weight_bytes + pl.sum[2].weight_bytes);
    CHECK(r > 0.70 && r < 0.78, "weights ~75%% on CUDA0: %.3f", r);
    /* f16 K and V: 48 layers x 512 x 2 bytes x 2 x 4096 cells = 384 MiB */
    CHECK(pl.sum[1].kv_bytes + pl.sum[2].kv_bytes == 48ull * 512 * 2 * 2 * 4096, "KV bytes");
    CHECK(pl.sum[1].kv_bytes == 37ull * 512 * 4 * 4096, "KV follows the layers");
    uint64_t w = 0;
    for (int d = 0; d < 3; d++) w += pl.sum[d].weight_bytes;
    CHECK(w == sp.data_bytes, "all weights counted once: %llu vs %llu", (unsigned long long)w,
          (unsigned long long)sp.data_bytes);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    placement_print(&pl, f);
    fclose(f);
    printf("%s", buf);
    CHECK(strstr(buf, "CUDA1") && strstr(buf, "37-47+out") && strstr(buf, "0-36"), "table");
    free(buf);
    placement_free(&pl);

    /* -sm row: matrices split 75/25, KV and the rest on the main device */
    o.split_mode = "row";
    placement_plan(&pl, t, n_t, &pm, &o, &dev);
    CHECK(pl.sum[2].kv_bytes == 0 && pl.sum[1].n_layers == 48, "row: KV on main");
    CHECK(pl.sum[2].weight_bytes > 0 && pl.sum[2].weight_bytes < pl.sum[1].weight_bytes, "row: CUDA1 holds a share");
    placement_free(&pl);
    o.split_mode = NULL;

    /* Out of memory: one 8 GiB device, everything asked for */
    placement_fake_devices("8GiB", &dev);
    o.tensor_split = NULL;
    CHECK(placement_plan(&pl, t, n_t, &pm, &o, &dev) == 0, "plan 8G");
    CHECK(placement_check(&pl, t, n_t, &pm, &o, &dev) == -1, "8 GiB cannot hold 17 GiB");
    const char *e = mr_geterr();
    printf("OOM message: %s\n", e);
    CHECK(strstr(e, "CUDA0") && strstr(e, "needs") && strstr(e, "8.00 GiB free") && strstr(e, "--n-cpu-moe "), "msg: %s", e);
    int n = -1;
    const char *p = strstr(e, "--n-cpu-moe ");
    if (p) n = atoi(p + 12);
    CHECK(n > 0 && n < 48, "suggested N %d", n);
    placement_free(&pl);
    /* the suggestion fits, one less does not */
    o.n_cpu_moe = n;
    placement_plan(&pl, t, n_t, &pm, &o, &dev);
    CHECK(placement_check(&pl, t, n_t, &pm, &o, &dev) == 0, "N=%d fits: %s", n, mr_geterr());
    placement_free(&pl);
    o.n_cpu_moe = n - 1;
    placement_plan(&pl, t, n_t, &pm, &o, &dev);
    CHECK(placement_check(&pl, t, n_t, &pm, &o, &dev) == -1, "N=%d does not fit", n - 1);
    placement_free(&pl);
    /* too small even for the dense part: suggests -ngl */
    placement_fake_devices("1GiB", &dev);
    o.n_cpu_moe = 0;
    placement_plan(&pl, t, n_t, &pm, &o, &dev);
    CHECK(placement_check(&pl, t, n_t, &pm, &o, &dev) == -1 && strstr(mr_geterr(), "-cmoe -ngl "), "1 GiB: %s", mr_geterr());
    printf("OOM message: %s\n", mr_geterr());
    placement_free(&pl);

    /* -dev CUDA1 of two: all layers there */
    placement_fake_devices("24GiB,24GiB", &dev);
    o.devices = "CUDA1";
    o.n_cpu_moe = -1;
    placement_plan(&pl, t, n_t, &pm, &o, &dev);
    CHECK(pl.sum[2].n_layers == 48 && pl.sum[1].n_tensors == 0 && pl.output_dev == 1, "-dev CUDA1");
    CHECK(placement_check(&pl, t, n_t, &pm, &o, &dev) == 0, "cmoe fits in 24 GiB");
    CHECK(pl.sum[2].stream_bytes == 0 && pl.offload_min == 0, "no streaming unless asked");
    const uint64_t c0 = pl.sum[2].compute_bytes;
    placement_free(&pl);
    /* large micro-batches stream a layer's RAM experts: two buffers of one layer's three tensors */
    uint64_t layer_ex = 0;
    for (int i = 0; i < n_t; i++)
        if (!strncmp(t[i].name, "blk.0.", 6) && strstr(t[i].name, "_exps")) layer_ex += t[i].nbytes;
    o.offload_min_batch = 32;
    placement_plan(&pl, t, n_t, &pm, &o, &dev);
    CHECK(layer_ex > 100000000 && pl.sum[2].stream_bytes == 2 * layer_ex && pl.sum[2].compute_bytes == c0 + 2 * layer_ex &&
              pl.offload_min == 32 && pl.sum[1].stream_bytes == 0,
          "stream buffer %llu (one layer's experts %llu), compute %llu -> %llu", (unsigned long long)pl.sum[2].stream_bytes,
          (unsigned long long)layer_ex, (unsigned long long)c0, (unsigned long long)pl.sum[2].compute_bytes);
    buf = NULL, len = 0;
    f = open_memstream(&buf, &len);
    placement_print(&pl, f);
    fclose(f);
    CHECK(strstr(buf, "32 tokens or more stream each layer's RAM experts to CUDA1") != NULL, "note: %s", buf);
    free(buf);
    placement_free(&pl);
    o.n_ubatch = 16; /* micro-batches never reach 32 tokens: no buffer */
    placement_plan(&pl, t, n_t, &pm, &o, &dev);
    CHECK(pl.sum[2].stream_bytes == 0 && pl.sum[2].compute_bytes < c0, "ubatch 16: no stream buffer");
    placement_free(&pl);
    o.n_ubatch = 512;
    o.n_cpu_moe = 0; /* every expert on the device: nothing to stream */
    placement_plan(&pl, t, n_t, &pm, &o, &dev);
    CHECK(pl.sum[2].stream_bytes == 0, "no RAM experts: no stream buffer");
    placement_free(&pl);
    o.offload_min_batch = 0;

    placement_model_free(&pm);
    free(t);
    synth_plan_free(&sp);
}

/* MOERUN_OFFLOAD_MIN_BATCH, llama.cpp's GGML_OP_OFFLOAD_MIN_BATCH, the default, a bad value */
static void test_offload_env(void) {
    unsetenv("MOERUN_OFFLOAD_MIN_BATCH");
    unsetenv("GGML_OP_OFFLOAD_MIN_BATCH");
    CHECK(placement_offload_min_batch() == 32, "default 32");
    setenv("GGML_OP_OFFLOAD_MIN_BATCH", "64", 1);
    CHECK(placement_offload_min_batch() == 64, "llama.cpp's name");
    setenv("MOERUN_OFFLOAD_MIN_BATCH", "0", 1);
    CHECK(placement_offload_min_batch() == 0, "ours first, 0: never");
    setenv("MOERUN_OFFLOAD_MIN_BATCH", "12x", 1);
    CHECK(placement_offload_min_batch() == 32, "not a count: the default");
    setenv("MOERUN_OFFLOAD_MIN_BATCH", "-5", 1);
    CHECK(placement_offload_min_batch() == 32, "negative: the default");
    unsetenv("MOERUN_OFFLOAD_MIN_BATCH");
    unsetenv("GGML_OP_OFFLOAD_MIN_BATCH");
}

static void test_sizes(void) {
    uint64_t s[4];
    CHECK(placement_parse_sizes("24GiB,8G,512MiB,1GB", s, 4) == 4, "parse");
    CHECK(s[0] == 24ull << 30 && s[1] == 8ull << 30 && s[2] == 512ull << 20 && s[3] == 1000000000ull, "values");
    CHECK(placement_parse_sizes("1.5GiB", s, 4) == 1 && s[0] == 3ull << 29, "fraction");
    CHECK(placement_parse_sizes("24XB", s, 4) == -1, "bad unit");
    CHECK(placement_parse_sizes("", s, 4) == -1, "empty");
}

int main(void) {
    test_sizes();
    test_offload_env();
    test_30b();
    const char *tiny = check_shared("fixtures/models/tiny-qwen3moe.gguf");
    if (tiny) test_tiny(tiny);
    else printf("SKIP part: tiny-qwen3moe.gguf not found\n");
    return check_done();
}
