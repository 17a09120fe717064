/*
 * plan.c — the placement plan, printed when a context is created with
 * placement flags (-ngl, -ot, -cmoe / --n-cpu-moe, -sm, -ts).
 *
 * The plan (src/model/placement.c) assigns every tensor to the CPU or a CUDA
 * device and sums weight, KV and compute bytes per device; it is printed to
 * stderr before any weight is touched. MOERUN_FAKE_VRAM="24GiB,8GiB" plans
 * against pretend devices (to see a GPU plan, and its out-of-memory advice,
 * on a machine without one).
 *
 * When a device backend is there (gpu_api_get: CUDA, or the host emulation
 * under MOERUN_CUDA_EMU=N in tests) and the model's layers can run on it
 * (model_gpu_supported), the plan is handed to the context, which uploads the
 * weights and runs those layers there (src/model/forward_gpu.c). Otherwise a
 * note after the plan says why every layer runs on the CPU. Nothing is
 * silently ignored.
 */
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"
#include "model/forward_gpu.h"
#include "model/model.h"
#include "model/placement.h"
#include "moerun.h"

int engine_placement(const mr_model *m, const mr_ctx_params *p, placement *out, const gpu_api **api_out);

/* The devices to plan for; returns the backend that can run on them (NULL: pretend devices
 * of MOERUN_FAKE_VRAM, or none). */
static const gpu_api *find_devices(plc_devices *dev) {
    dev->n = 0;
    const char *fake = getenv("MOERUN_FAKE_VRAM");
    if (fake && *fake) {
        if (placement_fake_devices(fake, dev) == 0) return NULL;
        MR_WARN("MOERUN_FAKE_VRAM='%s' ignored: %s", fake, mr_geterr());
        dev->n = 0;
    }
    const gpu_api *api = gpu_api_get();
    if (!api) return NULL;
    int n = api->device_count();
    for (int d = 0; d < n && d < PLC_MAX_DEV; d++) {
        mrc_device_info info;
        if (api->device_info(d, &info) != 0) break;
        dev->free[d] = info.free;
        dev->total[d] = info.total;
        snprintf(dev->name[d], sizeof dev->name[d], "%.63s", info.name);
        dev->n = d + 1;
    }
    return dev->n > 0 ? api : NULL;
}

static bool plc_asked(const mr_model *m) {
    return m->plc_ngl != 0 || m->plc_n_cpu_moe != 0 || m->plc_overrides || m->plc_tensor_split || m->plc_devices ||
           (m->plc_split_mode && *m->plc_split_mode);
}

static plc_options model_plc_options(const mr_model *m) {
    plc_options o = placement_default_options();
    o.n_gpu_layers = m->plc_ngl;
    o.overrides = m->plc_overrides;
    o.n_cpu_moe = m->plc_n_cpu_moe;
    o.split_mode = m->plc_split_mode;
    o.tensor_split = m->plc_tensor_split;
    o.devices = m->plc_devices;
    return o;
}

/* Per GGUF tensor: true when the placement puts it on a device that will run it (the
 * CPU then neither repacks it nor keeps it resident). NULL when nothing is (or on any
 * error: the context reports it). Which device a tensor goes to does not depend on the
 * context size, so the load can decide this before the context exists. */
bool *engine_device_tensors(const mr_model *m) {
    if (!plc_asked(m)) return NULL;
    plc_devices dev;
    const gpu_api *api = find_devices(&dev);
    if (!api) return NULL;
    int n_t = 0;
    plc_tensor *t = placement_tensors_from_gguf(m->g, &n_t);
    plc_model pm = {0};
    bool *mask = NULL;
    if (t && placement_model_from_model(m, &pm) == 0) {
        const plc_options o = model_plc_options(m);
        placement pl;
        if (placement_plan(&pl, t, n_t, &pm, &o, &dev) == 0) {
            if (!model_gpu_supported(m, &pl) && (mask = mr_calloc((size_t)(n_t ? n_t : 1), sizeof *mask)))
                for (int i = 0; i < n_t; i++) mask[i] = pl.dev[i] >= 0;
            placement_free(&pl);
        }
        placement_model_free(&pm);
    }
    free(t);
    mr_clearerr();
    return mask;
}

/* Prints the plan when the model was loaded with placement flags. Returns 0,
 * or -1 (with the error set) when the flags are malformed (bad -ot regex,
 * bad -ts list) or the plan does not fit the devices. When the plan puts
 * layers on devices that a backend can run, *out holds it (free with
 * placement_free) and *api_out the backend; else *api_out is NULL. */
int engine_placement(const mr_model *m, const mr_ctx_params *p, placement *out, const gpu_api **api_out) {
    *api_out = NULL;
    if (!plc_asked(m)) return 0;
    int n_t = 0;
    plc_tensor *t = placement_tensors_from_gguf(m->g, &n_t);
    if (!t) return -1;
    plc_model pm = {0};
    if (placement_model_from_model(m, &pm) != 0) {
        free(t);
        return -1;
    }
    plc_options o = model_plc_options(m);
    o.n_ctx = p->n_ctx;
    o.type_k = (uint32_t)p->type_k;
    o.type_v = (uint32_t)p->type_v;
    o.n_ubatch = p->n_ubatch;
    o.n_seq = p->n_seq_max;
    o.flash_attn = p->flash_attn != 0;
    o.offload_min_batch = placement_offload_min_batch();
    plc_devices dev;
    const gpu_api *api = find_devices(&dev);
    placement pl;
    int rc = placement_plan(&pl, t, n_t, &pm, &o, &dev);
    if (rc == 0) {
        fprintf(stderr, "moerun: placement plan (-ngl %d%s%s%s%s%s%s):\n", m->plc_ngl,
                m->plc_overrides ? ", -ot " : "", m->plc_overrides ? m->plc_overrides : "",
                m->plc_n_cpu_moe < 0 ? ", -cmoe" : m->plc_n_cpu_moe > 0 ? ", --n-cpu-moe" : "",
                m->plc_tensor_split ? ", -ts" : "", m->plc_devices ? ", -dev " : "",
                m->plc_devices ? m->plc_devices : "");
        placement_print(&pl, stderr);
        const char *why = api ? model_gpu_supported(m, &pl) : NULL;
        if (dev.n > 0 && placement_check(&pl, t, n_t, &pm, &o, &dev) != 0) rc = -1;
        else if (dev.n == 0)
            fprintf(stderr, "moerun: note: no CUDA device, every layer runs on the CPU "
                            "(MOERUN_FAKE_VRAM=SIZE[,SIZE] shows the plan for pretend devices)\n");
        else if (!api)
            fprintf(stderr, "moerun: note: pretend devices (MOERUN_FAKE_VRAM): every layer runs on the CPU\n");
        else if (why)
            fprintf(stderr, "moerun: warning: every layer runs on the CPU: %s\n", why);
        else {
            fprintf(stderr, "moerun: running the layers placed on devices with the %s backend\n", api->name);
            *out = pl;
            *api_out = api;
        }
        if (!*api_out) placement_free(&pl);
    }
    placement_model_free(&pm);
    free(t);
    return rc;
}
