/*
 * test_quant_zoo.c — every block decoder against gguf-py's reference values
 * (fixtures/quant/quant-zoo.{gguf,json}); skipped when the fixtures are absent.
 */
#include <jansson.h>
#include <math.h>
#include <stdint.h>

#include "base/base.h"
#include "check.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

/* Each tensor of quant-zoo.gguf dequantized must match quant-zoo.json within
 * 1e-6 x the row's max abs value. */
static void test_zoo(const char *dir) {
    char gp[4096], jp[4096];
    snprintf(gp, sizeof gp, "%s/quant-zoo.gguf", dir);
    snprintf(jp, sizeof jp, "%s/quant-zoo.json", dir);
    gguf_ctx *g = gguf_open(gp);
    CHECK(g != NULL, "gguf_open %s: %s", gp, mr_geterr());
    json_error_t je;
    json_t *root = json_load_file(jp, 0, &je);
    CHECK(root != NULL, "json %s: %s", jp, je.text);
    if (!g || !root) return;
    json_t *tensors = json_object_get(root, "tensors");
    CHECK(json_is_object(tensors) && json_object_size(tensors) >= 15, "zoo json has %zu tensors",
          json_object_size(tensors));
    const char *name;
    json_t *jt;
    int n_types = 0;
    json_object_foreach(tensors, name, jt) {
        const gguf_tensor *t = gguf_tensor_find(g, name);
        CHECK(t != NULL, "tensor %s missing from the gguf", name);
        if (!t) continue;
        int gtype = (int)json_integer_value(json_object_get(jt, "ggml_type"));
        CHECK((uint32_t)gtype == t->type, "%s: json type %d, gguf type %u", name, gtype, t->type);
        json_t *vals = json_object_get(jt, "values");
        const int64_t ne0 = t->ne[0], nrows = t->nelem / ne0;
        CHECK((int64_t)json_array_size(vals) == nrows, "%s: %zu json rows vs %lld", name, json_array_size(vals),
              (long long)nrows);
        const size_t rs = mr_row_size(t->type, ne0);
        float *row = malloc((size_t)ne0 * sizeof(float));
        int bad = 0;
        for (int64_t r = 0; r < nrows && r < (int64_t)json_array_size(vals); r++) {
            int rc = quant_dequant_row(t->type, (const char *)t->data + r * rs, row, ne0);
            CHECK(rc == 0, "%s: dequant: %s", name, mr_geterr());
            json_t *jr = json_array_get(vals, (size_t)r);
            double amax = 0, emax = 0;
            for (int64_t i = 0; i < ne0; i++) amax = fmax(amax, fabs(json_number_value(json_array_get(jr, (size_t)i))));
            for (int64_t i = 0; i < ne0; i++) {
                double ref = json_number_value(json_array_get(jr, (size_t)i));
                emax = fmax(emax, fabs(row[i] - ref));
            }
            if (emax > 1e-6 * amax) bad++;
            CHECK(emax <= 1e-6 * amax, "%s row %lld: max abs err %g (row max %g)", name, (long long)r, emax, amax);
        }
        if (!bad) n_types++;
        free(row);
    }
    printf("zoo: %d types decode like gguf-py\n", n_types);
    json_decref(root);
    gguf_close(g);
}

int main(void) {
    SKIP_UNLESS_SHARED(dir, "fixtures/quant");
    test_zoo(dir);
    return check_done();
}
