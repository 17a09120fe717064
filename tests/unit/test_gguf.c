/*
 * test_gguf.c — the GGUF reader and writer: fixture models, a write/read round
 * trip over every metadata value type (nested and string arrays included),
 * non-default alignment, split models, and corrupt files (truncation at every
 * byte, crafted bad headers with their messages, random byte mutations).
 * With `gen-corpus DIR` it writes the fuzz seed corpus instead.
 */
#include <dirent.h>
#include <stdint.h>
#include <unistd.h>

#include "base/base.h"
#include "check.h"
#include "gguf/gguf.h"
#include "quant/types.h"

static char g_tmp[256];

static char *tmp_path(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ & 7];
    snprintf(p, 512, "%s/%s", g_tmp, name);
    return p;
}

/* ---- a byte builder for hand-made files -------------------------------------------------- */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} bb;
static void bput(bb *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void b32(bb *b, uint32_t v) { bput(b, &v, 4); }
static void b64(bb *b, uint64_t v) { bput(b, &v, 8); }
static void bstr(bb *b, const char *s) { b64(b, strlen(s)); bput(b, s, strlen(s)); }
static void bpad(bb *b, size_t a) {
    while (b->n % a) bput(b, "", 1);
}
static void bhead(bb *b, uint64_t n_t, uint64_t n_kv) {
    bput(b, "GGUF", 4);
    b32(b, 3);
    b64(b, n_t);
    b64(b, n_kv);
}
/* tensor info: name, dims, type, offset */
static void btensor(bb *b, const char *name, int nd, const int64_t *ne, uint32_t type, uint64_t off) {
    bstr(b, name);
    b32(b, (uint32_t)nd);
    for (int i = 0; i < nd; i++) b64(b, (uint64_t)ne[i]);
    b32(b, type);
    b64(b, off);
}

/* Parses b and expects failure with `want` in the message. */
static void expect_fail(bb *b, const char *want, const char *what) {
    uint8_t *copy = malloc(b->n ? b->n : 1);
    memcpy(copy, b->p, b->n);
    mr_clearerr();
    gguf_ctx *g = gguf_parse_buffer(copy, b->n, "bad.gguf");
    CHECK(g == NULL, "%s: parsed a corrupt file", what);
    if (g) gguf_close(g);
    else CHECK(strstr(mr_geterr(), want) != NULL, "%s: message '%s' lacks '%s'", what, mr_geterr(), want);
    free(copy);
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- fixtures -------------------------------------------------------------------------- */
static int check_file_sane(const char *path) {
    gguf_ctx *g = gguf_open(path);
    CHECK(g != NULL, "%s: %s", path, mr_geterr());
    if (!g) return -1;
    CHECK(g->version == 3 || g->version == 2, "%s version %u", path, g->version);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        const gguf_part *pt = &g->parts[t->split];
        const uint8_t *base = pt->map;
        CHECK((const uint8_t *)t->data >= base && (const uint8_t *)t->data + t->nbytes <= base + pt->size,
              "%s: %s data outside its file", path, t->name);
        CHECK(gguf_tensor_find(g, t->name) == t, "%s: lookup of %s", path, t->name);
        CHECK(t->nbytes == mr_row_size(t->type, t->ne[0]) * (uint64_t)(t->nelem / (t->ne[0] ? t->ne[0] : 1)),
              "%s: %s size", path, t->name);
    }
    gguf_close(g);
    return 0;
}

static void test_fixtures(void) {
    const char *root = check_shared("fixtures");
    if (!root) {
        printf("SKIP (fixtures): ../shared/fixtures not found\n");
        return;
    }
    const char *subs[] = {"models", "quant", "vocab"};
    int n = 0;
    for (size_t s = 0; s < 3; s++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", root, subs[s]);
        DIR *d = opendir(dir);
        if (!d) continue;
        struct dirent *e;
        while ((e = readdir(d))) {
            size_t l = strlen(e->d_name);
            if (l < 5 || strcmp(e->d_name + l - 5, ".gguf")) continue;
            char path[2048];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            check_file_sane(path);
            n++;
        }
        closedir(d);
    }
    CHECK(n >= 7, "found only %d fixture files", n);
    /* a few known facts */
    char path[2048];
    snprintf(path, sizeof path, "%s/models/tiny-qwen3moe.gguf", root);
    gguf_ctx *g = gguf_open(path);
    CHECK(g != NULL, "open %s: %s", path, mr_geterr());
    if (g) {
        CHECK(!strcmp(gguf_get_str(g, "general.architecture"), "qwen3moe"), "arch");
        CHECK(gguf_i64_or(g, "qwen3moe.expert_count", 0) == 8, "expert_count");
        const gguf_tensor *t = gguf_tensor_find(g, "blk.0.ffn_down_exps.weight");
        CHECK(t && t->n_dims == 3 && t->ne[2] == 8 && t->type == MR_TYPE_Q6_K, "ffn_down_exps");
        const gguf_kv *kv = gguf_find(g, "tokenizer.ggml.tokens");
        CHECK(kv && kv->val.type == GGUF_VT_ARRAY && kv->val.arr_type == GGUF_VT_STRING && kv->val.n == 151936, "tokens");
        gguf_close(g);
    }
    snprintf(path, sizeof path, "%s/models/tiny-deepseek2-lite.gguf", root);
    if ((g = gguf_open(path))) {
        const gguf_tensor *t = gguf_tensor_find(g, "blk.1.attn_k_b.weight");
        CHECK(t && t->ne[0] == 32 && t->ne[1] == 256 && t->ne[2] == 8, "attn_k_b shape");
        double f = 0;
        CHECK(gguf_get_f64(g, "deepseek2.rope.scaling.factor", &f) && f == 40.0, "yarn factor");
        gguf_close(g);
    }
    printf("fixtures: %d files ok\n", n);
}

/* ---- round trip ---------------------------------------------------------------------------- */
static gguf_value scalar(gguf_vtype t, uint64_t u) {
    gguf_value v = {.type = t};
    v.v.u = u;
    return v;
}

/* Writes a file with every value type, three tensors; alignment a (0 = default). */
static int write_all_types(const char *path, uint32_t align) {
    gguf_writer *w = gguf_writer_new(path);
    if (!w) return -1;
    if (align) gguf_writer_set_alignment(w, align);
    int rc = 0;
    gguf_value v;
    v = scalar(GGUF_VT_UINT8, 200); rc |= gguf_writer_kv_copy(w, &(gguf_kv){"t.u8", v});
    v = scalar(GGUF_VT_INT8, 0); v.v.i = -100; rc |= gguf_writer_kv_copy(w, &(gguf_kv){"t.i8", v});
    v = scalar(GGUF_VT_UINT16, 60000); rc |= gguf_writer_kv_copy(w, &(gguf_kv){"t.u16", v});
    v = scalar(GGUF_VT_INT16, 0); v.v.i = -30000; rc |= gguf_writer_kv_copy(w, &(gguf_kv){"t.i16", v});
    rc |= gguf_writer_kv_u32(w, "t.u32", 4000000000u);
    rc |= gguf_writer_kv_i32(w, "t.i32", -2000000000);
    rc |= gguf_writer_kv_f32(w, "t.f32", 0.125f);
    rc |= gguf_writer_kv_bool(w, "t.bool", true);
    rc |= gguf_writer_kv_str(w, "t.str", "héllo wörld");
    rc |= gguf_writer_kv_u64(w, "t.u64", 0xfedcba9876543210ull);
    v = scalar(GGUF_VT_INT64, 0); v.v.i = -(1ll << 60); rc |= gguf_writer_kv_copy(w, &(gguf_kv){"t.i64", v});
    v = scalar(GGUF_VT_FLOAT64, 0); v.v.f = 3.141592653589793; rc |= gguf_writer_kv_copy(w, &(gguf_kv){"t.f64", v});
    v = (gguf_value){.type = GGUF_VT_STRING, .v.str = {"", 0}}; rc |= gguf_writer_kv_copy(w, &(gguf_kv){"t.empty", v});
    /* numeric arrays of every type */
    uint8_t a8[3] = {1, 2, 255};
    int16_t a16[3] = {-1, 2, -300};
    uint32_t a32[2] = {7, 4000000000u};
    int32_t ai32[4] = {-5, 0, 5, 2147483647};
    float af[3] = {0.5f, -1.5f, 1e10f};
    uint8_t ab[3] = {1, 0, 1};
    uint64_t a64[2] = {1ull << 63, 5};
    int64_t ai64[2] = {-(1ll << 62), 9};
    double ad[2] = {1e-300, -2.5};
    rc |= gguf_writer_kv_arr(w, "a.u8", GGUF_VT_UINT8, a8, 3);
    rc |= gguf_writer_kv_arr(w, "a.i8", GGUF_VT_INT8, a8, 3);
    rc |= gguf_writer_kv_arr(w, "a.u16", GGUF_VT_UINT16, a16, 3);
    rc |= gguf_writer_kv_arr(w, "a.i16", GGUF_VT_INT16, a16, 3);
    rc |= gguf_writer_kv_arr(w, "a.u32", GGUF_VT_UINT32, a32, 2);
    rc |= gguf_writer_kv_arr(w, "a.i32", GGUF_VT_INT32, ai32, 4);
    rc |= gguf_writer_kv_arr(w, "a.f32", GGUF_VT_FLOAT32, af, 3);
    rc |= gguf_writer_kv_arr(w, "a.bool", GGUF_VT_BOOL, ab, 3);
    rc |= gguf_writer_kv_arr(w, "a.u64", GGUF_VT_UINT64, a64, 2);
    rc |= gguf_writer_kv_arr(w, "a.i64", GGUF_VT_INT64, ai64, 2);
    rc |= gguf_writer_kv_arr(w, "a.f64", GGUF_VT_FLOAT64, ad, 2);
    rc |= gguf_writer_kv_arr(w, "a.empty", GGUF_VT_INT32, NULL, 0);
    float fbig[3] = {1e30f, -1e30f, 0.0f / 0.0f};
    rc |= gguf_writer_kv_arr(w, "a.fbig", GGUF_VT_FLOAT32, fbig, 3);
    const char *strs[] = {"alpha", "", "γάμμα", "d e l t a"};
    rc |= gguf_writer_kv_arr_str(w, "a.str", strs, 4);
    /* string array with an embedded NUL, via kv_copy */
    char s0[] = "a\0b", s1[] = "zz";
    char *sarr[] = {s0, s1};
    uint64_t lens[] = {3, 2};
    v = (gguf_value){.type = GGUF_VT_ARRAY, .arr_type = GGUF_VT_STRING, .n = 2, .arr = sarr, .lens = lens};
    rc |= gguf_writer_kv_copy(w, &(gguf_kv){"a.strnul", v});
    /* nested: [[1,2,3], [], [["x","y"]]] */
    int32_t n1[3] = {1, 2, 3};
    char *xy[] = {"x", "y"};
    uint64_t xyl[] = {1, 1};
    gguf_value inner2 = {.type = GGUF_VT_ARRAY, .arr_type = GGUF_VT_STRING, .n = 2, .arr = xy, .lens = xyl};
    gguf_value sub[3] = {
        {.type = GGUF_VT_ARRAY, .arr_type = GGUF_VT_INT32, .n = 3, .arr = n1},
        {.type = GGUF_VT_ARRAY, .arr_type = GGUF_VT_FLOAT32, .n = 0, .arr = NULL},
        {.type = GGUF_VT_ARRAY, .arr_type = GGUF_VT_ARRAY, .n = 1, .arr = &inner2},
    };
    v = (gguf_value){.type = GGUF_VT_ARRAY, .arr_type = GGUF_VT_ARRAY, .n = 3, .arr = sub};
    rc |= gguf_writer_kv_copy(w, &(gguf_kv){"a.nested", v});
    /* tensors: F32 [5] (20 bytes, forces padding), Q8_0 [64, 3], F16 [7, 2, 3] */
    int64_t ne1[1] = {5}, ne2[2] = {64, 3}, ne3[3] = {7, 2, 3};
    rc |= gguf_writer_add_tensor(w, "t.f32", MR_TYPE_F32, 1, ne1);
    rc |= gguf_writer_add_tensor(w, "blk.0.q8", MR_TYPE_Q8_0, 2, ne2);
    rc |= gguf_writer_add_tensor(w, "blk.0.f16", MR_TYPE_F16, 3, ne3);
    uint64_t want = gguf_writer_file_size(w);
    uint8_t data[256];
    for (int i = 0; i < 256; i++) data[i] = (uint8_t)(i * 7 + 1);
    rc |= gguf_writer_write_data(w, data, 20);
    rc |= gguf_writer_write_data(w, data, 100); /* split into two calls */
    rc |= gguf_writer_write_data(w, data + 100, 104);
    rc |= gguf_writer_write_data(w, data, 84);
    if (rc) {
        gguf_writer_abort(w);
        return -1;
    }
    if (gguf_writer_close(w)) return -1;
    struct stat st;
    stat(path, &st);
    CHECK((uint64_t)st.st_size == want, "gguf_writer_file_size %llu, file has %lld", (unsigned long long)want,
          (long long)st.st_size);
    return 0;
}

static void check_all_types(const char *path, uint32_t align) {
    gguf_ctx *g = gguf_open(path);
    CHECK(g != NULL, "open %s: %s", path, mr_geterr());
    if (!g) return;
    int64_t i;
    double f;
    bool b;
    CHECK(g->alignment == (align ? align : 32), "alignment %llu", (unsigned long long)g->alignment);
    CHECK(gguf_get_i64(g, "t.u8", &i) && i == 200, "u8");
    CHECK(gguf_get_i64(g, "t.i8", &i) && i == -100, "i8");
    CHECK(gguf_get_i64(g, "t.u16", &i) && i == 60000, "u16");
    CHECK(gguf_get_i64(g, "t.i16", &i) && i == -30000, "i16");
    CHECK(gguf_get_i64(g, "t.u32", &i) && i == 4000000000ll, "u32");
    CHECK(gguf_get_i64(g, "t.i32", &i) && i == -2000000000, "i32");
    CHECK(gguf_get_f64(g, "t.f32", &f) && f == 0.125, "f32");
    CHECK(gguf_get_bool(g, "t.bool", &b) && b, "bool");
    CHECK(gguf_get_str(g, "t.str") && !strcmp(gguf_get_str(g, "t.str"), "héllo wörld"), "str");
    CHECK(!gguf_get_i64(g, "t.u64", &i), "u64 beyond int64 must not convert");
    CHECK(gguf_find(g, "t.u64")->val.v.u == 0xfedcba9876543210ull, "u64 value");
    CHECK(gguf_get_i64(g, "t.i64", &i) && i == -(1ll << 60), "i64");
    CHECK(gguf_get_f64(g, "t.f64", &f) && f == 3.141592653589793, "f64");
    CHECK(gguf_get_str(g, "t.empty") && gguf_get_str(g, "t.empty")[0] == 0, "empty string");
    CHECK(!gguf_get_i64(g, "t.str", &i), "string is not an integer");
    CHECK(!gguf_get_str(g, "no.such.key") && !gguf_find(g, "no.such.key"), "absent key");
    CHECK(gguf_i64_or(g, "no.such.key", 42) == 42 && gguf_f64_or(g, "t.f32", 1) == 0.125, "defaults");
    int64_t ai[8];
    double ad[8];
    CHECK(gguf_get_arr_i64(g, "a.u8", ai, 8) == 3 && ai[2] == 255, "a.u8");
    CHECK(gguf_get_arr_i64(g, "a.i8", ai, 8) == 3 && ai[2] == -1, "a.i8");
    CHECK(gguf_get_arr_i64(g, "a.u16", ai, 8) == 3 && ai[0] == 65535 && ai[2] == 65236, "a.u16");
    CHECK(gguf_get_arr_i64(g, "a.i16", ai, 8) == 3 && ai[0] == -1 && ai[2] == -300, "a.i16");
    CHECK(gguf_get_arr_i64(g, "a.u32", ai, 8) == 2 && ai[1] == 4000000000ll, "a.u32");
    CHECK(gguf_get_arr_i64(g, "a.i32", ai, 8) == 4 && ai[0] == -5 && ai[3] == 2147483647, "a.i32");
    CHECK(gguf_get_arr_f64(g, "a.f32", ad, 8) == 3 && ad[1] == -1.5 && ad[2] == 1e10, "a.f32");
    CHECK(gguf_get_arr_i64(g, "a.bool", ai, 8) == 3 && ai[0] == 1 && ai[1] == 0, "a.bool");
    CHECK(gguf_get_arr_i64(g, "a.u64", ai, 8) == 2 && (uint64_t)ai[0] == 1ull << 63, "a.u64");
    CHECK(gguf_get_arr_i64(g, "a.i64", ai, 8) == 2 && ai[0] == -(1ll << 62), "a.i64");
    CHECK(gguf_get_arr_f64(g, "a.f64", ad, 8) == 2 && ad[0] == 1e-300, "a.f64");
    CHECK(gguf_get_arr_i64(g, "a.empty", ai, 8) == 0, "a.empty");
    /* float -> int64 saturates (was undefined behaviour; found by fuzz_gguf) */
    CHECK(gguf_get_arr_i64(g, "a.f32", ai, 8) == 3 && ai[0] == 0 && ai[1] == -1 && ai[2] == 10000000000ll, "a.f32 as i64");
    CHECK(gguf_get_arr_i64(g, "a.fbig", ai, 8) == 3 && ai[0] == INT64_MAX && ai[1] == INT64_MIN && ai[2] == 0, "saturation");
    CHECK(gguf_get_arr_i64(g, "a.i32", ai, 2) == 4 && ai[1] == 0, "cap respected");
    CHECK(gguf_get_arr_i64(g, "a.str", ai, 8) == -1, "string array is not numeric");
    const gguf_kv *kv = gguf_find(g, "a.str");
    CHECK(kv && kv->val.arr_type == GGUF_VT_STRING && kv->val.n == 4, "a.str");
    if (kv && kv->val.n == 4) {
        char **s = kv->val.arr;
        CHECK(!strcmp(s[0], "alpha") && !strcmp(s[1], "") && !strcmp(s[2], "γάμμα") && kv->val.lens[3] == 9, "a.str values");
    }
    kv = gguf_find(g, "a.strnul");
    CHECK(kv && kv->val.n == 2 && kv->val.lens[0] == 3 && !memcmp(((char **)kv->val.arr)[0], "a\0b", 4), "embedded NUL");
    kv = gguf_find(g, "a.nested");
    CHECK(kv && kv->val.arr_type == GGUF_VT_ARRAY && kv->val.n == 3, "nested");
    if (kv && kv->val.n == 3) {
        const gguf_value *sub = kv->val.arr;
        CHECK(sub[0].arr_type == GGUF_VT_INT32 && sub[0].n == 3 && ((int32_t *)sub[0].arr)[2] == 3, "nested[0]");
        CHECK(sub[1].arr_type == GGUF_VT_FLOAT32 && sub[1].n == 0, "nested[1]");
        CHECK(sub[2].arr_type == GGUF_VT_ARRAY && sub[2].n == 1, "nested[2]");
        if (sub[2].n == 1) {
            const gguf_value *in = sub[2].arr;
            CHECK(in->arr_type == GGUF_VT_STRING && in->n == 2 && !strcmp(((char **)in->arr)[1], "y"), "nested[2][0]");
        }
    }
    char buf[128];
    CHECK(!strcmp(gguf_value_str(&gguf_find(g, "a.i32")->val, buf, sizeof buf), "[-5, 0, 5, 2.14748e+09]"), "value_str %s", buf);
    CHECK(!strcmp(gguf_value_str(&gguf_find(g, "a.str")->val, buf, sizeof buf), "[4 string]"), "value_str %s", buf);
    uint8_t data[256];
    for (int k = 0; k < 256; k++) data[k] = (uint8_t)(k * 7 + 1);
    const gguf_tensor *t0 = gguf_tensor_find(g, "t.f32"), *t1 = gguf_tensor_find(g, "blk.0.q8"),
                      *t2 = gguf_tensor_find(g, "blk.0.f16");
    CHECK(t0 && t1 && t2, "tensors found");
    if (t0 && t1 && t2) {
        uint64_t a = g->alignment;
        CHECK(t0->nbytes == 20 && t1->nbytes == 204 && t2->nbytes == 84, "sizes");
        CHECK(t0->offset == 0 && t1->offset == (20 + a - 1) / a * a, "offsets padded to %llu", (unsigned long long)a);
        CHECK(((uintptr_t)t0->data - (uintptr_t)g->parts[0].map) % a == 0 &&
              ((uintptr_t)t2->data - (uintptr_t)g->parts[0].map) % a == 0, "data aligned");
        CHECK(!memcmp(t0->data, data, 20) && !memcmp(t1->data, data, 204) && !memcmp(t2->data, data, 84), "data");
        CHECK(t2->n_dims == 3 && t2->ne[0] == 7 && t2->ne[1] == 2 && t2->ne[2] == 3 && t2->ne[3] == 1 && t2->nelem == 42, "dims");
    }
    CHECK(!gguf_tensor_find(g, "nope"), "absent tensor");
    gguf_close(g);
}

static void test_roundtrip(void) {
    uint32_t aligns[] = {0, 1, 8, 64, 4096};
    for (size_t k = 0; k < MR_ARRAY_LEN(aligns); k++) {
        char name[64];
        snprintf(name, sizeof name, "rt%u.gguf", aligns[k]);
        const char *p = tmp_path(name);
        CHECK(write_all_types(p, aligns[k]) == 0, "write %s: %s", p, mr_geterr());
        check_all_types(p, aligns[k]);
    }
    /* the writer refuses bad input */
    gguf_writer *w = gguf_writer_new(tmp_path("bad.gguf"));
    int64_t ne[2] = {100, 2};
    CHECK(gguf_writer_add_tensor(w, "x", MR_TYPE_Q4_K, 2, ne) != 0, "row not a block multiple accepted");
    CHECK(gguf_writer_add_tensor(w, "x", 999, 2, ne) != 0, "bad type accepted");
    ne[0] = 32;
    CHECK(gguf_writer_add_tensor(w, "x", MR_TYPE_F32, 2, ne) == 0, "add");
    uint8_t z[256] = {0};
    CHECK(gguf_writer_write_data(w, z, 100) == 0, "partial write");
    CHECK(gguf_writer_close(w) != 0 && strstr(mr_geterr(), "100 of 256"), "incomplete tensor not reported: %s", mr_geterr());
    w = gguf_writer_new(tmp_path("bad2.gguf"));
    gguf_writer_add_tensor(w, "x", MR_TYPE_F32, 2, ne);
    CHECK(gguf_writer_write_data(w, z, 256) == 0 && gguf_writer_write_data(w, z, 1) != 0, "overlong write accepted");
    gguf_writer_abort(w);
    CHECK(access(tmp_path("bad2.gguf"), F_OK) != 0, "abort left the file");
    w = gguf_writer_new("/nonexistent-dir/x.gguf");
    CHECK(w == NULL && strstr(mr_geterr(), "/nonexistent-dir/x.gguf"), "unwritable path: %s", mr_geterr());
    /* header-only file: no kv, no tensors */
    w = gguf_writer_new(tmp_path("empty.gguf"));
    CHECK(gguf_writer_close(w) == 0, "empty close");
    gguf_ctx *g = gguf_open(tmp_path("empty.gguf"));
    CHECK(g && g->n_kv == 0 && g->n_tensors == 0, "empty file: %s", mr_geterr());
    gguf_close(g);
}

/* ---- split models ------------------------------------------------------------------------------------------ */
static int write_part(const char *path, int no, int count, int n_total, int first, int n) {
    gguf_writer *w = gguf_writer_new(path);
    if (!w) return -1;
    gguf_value v = scalar(GGUF_VT_UINT16, (uint64_t)no);
    gguf_writer_kv_copy(w, &(gguf_kv){"split.no", v});
    v = scalar(GGUF_VT_UINT16, (uint64_t)count);
    gguf_writer_kv_copy(w, &(gguf_kv){"split.count", v});
    gguf_writer_kv_i32(w, "split.tensors.count", n_total);
    if (no == 0) gguf_writer_kv_str(w, "general.architecture", "llama");
    if (no == 2) gguf_writer_set_alignment(w, 64);
    for (int i = first; i < first + n; i++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.w", i);
        int64_t ne[2] = {16, i + 1};
        gguf_writer_add_tensor(w, name, MR_TYPE_F32, 2, ne);
    }
    for (int i = first; i < first + n; i++) {
        float row[16];
        for (int r = 0; r <= i; r++) {
            for (int c = 0; c < 16; c++) row[c] = (float)(i * 1000 + r * 16 + c);
            if (gguf_writer_write_data(w, row, sizeof row)) return -1;
        }
    }
    return gguf_writer_close(w);
}

static void test_split(void) {
    const int per[3] = {2, 3, 1};
    char p[3][512];
    int first = 0;
    for (int k = 0; k < 3; k++) {
        snprintf(p[k], sizeof p[k], "%s/sp-%05d-of-00003.gguf", g_tmp, k + 1);
        CHECK(write_part(p[k], k, 3, 6, first, per[k]) == 0, "write part %d: %s", k, mr_geterr());
        first += per[k];
    }
    gguf_ctx *g = gguf_open(p[0]);
    CHECK(g != NULL, "open split: %s", mr_geterr());
    if (g) {
        CHECK(g->n_parts == 3 && g->n_tensors == 6, "parts %d tensors %llu", g->n_parts, (unsigned long long)g->n_tensors);
        CHECK(g->total_size == g->parts[0].size + g->parts[1].size + g->parts[2].size, "total size");
        int want_split[6] = {0, 0, 1, 1, 1, 2};
        for (int i = 0; i < 6; i++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.w", i);
            const gguf_tensor *t = gguf_tensor_find(g, name);
            CHECK(t != NULL, "%s not found", name);
            if (!t) continue;
            CHECK(t->split == want_split[i], "%s in part %d", name, t->split);
            const uint8_t *base = g->parts[t->split].map;
            CHECK((const uint8_t *)t->data >= base && (const uint8_t *)t->data + t->nbytes <= base + g->parts[t->split].size,
                  "%s pointer outside its part", name);
            const float *d = t->data;
            CHECK(d[0] == i * 1000.0f && d[t->nelem - 1] == (float)(i * 1000 + i * 16 + 15), "%s data", name);
        }
        CHECK(gguf_get_str(g, "general.architecture") != NULL, "metadata of part 1");
        gguf_close(g);
    }
    g = gguf_open(p[1]);
    CHECK(!g && strstr(mr_geterr(), "part 2") && strstr(mr_geterr(), "00001"), "opening part 2: %s", mr_geterr());
    gguf_close(g);
    /* missing last part */
    char moved[600];
    snprintf(moved, sizeof moved, "%s.moved", p[2]);
    rename(p[2], moved);
    g = gguf_open(p[0]);
    CHECK(!g && strstr(mr_geterr(), "sp-00003-of-00003.gguf") && strstr(mr_geterr(), "cannot open"),
          "missing part: %s", mr_geterr());
    gguf_close(g);
    /* a part with the wrong split.no */
    CHECK(write_part(p[2], 1, 3, 6, 5, 1) == 0, "rewrite");
    g = gguf_open(p[0]);
    CHECK(!g && strstr(mr_geterr(), "split.no"), "wrong split.no: %s", mr_geterr());
    gguf_close(g);
    /* a tensor present in two parts */
    CHECK(write_part(p[2], 2, 3, 6, 4, 1) == 0, "rewrite");
    g = gguf_open(p[0]);
    CHECK(!g && strstr(mr_geterr(), "duplicate tensor name 'blk.4.w'"), "duplicate across parts: %s", mr_geterr());
    gguf_close(g);
    remove(moved);
    for (int k = 0; k < 3; k++) remove(p[k]);
}

/* ---- corrupt files ------------------------------------------------------------------------------------------ */
/* A small valid file in memory (read back from the writer). */
static uint8_t *small_file(size_t *len) {
    const char *p = tmp_path("small.gguf");
    gguf_writer *w = gguf_writer_new(p);
    gguf_writer_kv_str(w, "general.architecture", "llama");
    gguf_writer_kv_u32(w, "llama.block_count", 4);
    const char *strs[] = {"a", "bb", "ccc"};
    gguf_writer_kv_arr_str(w, "tokenizer.ggml.tokens", strs, 3);
    float sc[3] = {0, -1, -2};
    gguf_writer_kv_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, sc, 3);
    gguf_writer_kv_bool(w, "x.flag", true);
    int64_t ne[2] = {32, 2}, ne1[1] = {8};
    gguf_writer_add_tensor(w, "blk.0.w", MR_TYPE_Q8_0, 2, ne);
    gguf_writer_add_tensor(w, "blk.0.norm", MR_TYPE_F32, 1, ne1);
    uint8_t d[68];
    for (int i = 0; i < 68; i++) d[i] = (uint8_t)i;
    gguf_writer_write_data(w, d, 68);
    gguf_writer_write_data(w, d, 32);
    gguf_writer_close(w);
    return (uint8_t *)mr_read_file(p, len);
}

static void test_truncation(void) {
    size_t len;
    uint8_t *full = small_file(&len);
    CHECK(full != NULL, "small file");
    if (!full) return;
    gguf_ctx *g = gguf_parse_buffer(full, len, "small.gguf");
    CHECK(g != NULL, "small file parses: %s", mr_geterr());
    gguf_close(g);
    int bad = 0;
    for (size_t n = 0; n < len; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, full, n);
        mr_clearerr();
        g = gguf_parse_buffer(cut, n, "cut.gguf");
        if (g || !mr_geterr()[0] || !strstr(mr_geterr(), "cut.gguf")) {
            if (bad++ < 5) fprintf(stderr, "truncation at %zu: %s\n", n, g ? "parsed" : mr_geterr());
        }
        gguf_close(g);
        free(cut);
    }
    CHECK(bad == 0, "%d truncations not rejected cleanly (of %zu)", bad, len);
    /* messages at a few sections */
    uint8_t *cut = malloc(len);
    memcpy(cut, full, len);
    g = gguf_parse_buffer(cut, 10, "cut.gguf");
    CHECK(!g && strstr(mr_geterr(), "truncated") && strstr(mr_geterr(), "tensor count"), "cut in header: %s", mr_geterr());
    g = gguf_parse_buffer(cut, 30, "cut.gguf");
    CHECK(!g && strstr(mr_geterr(), "absurd metadata count 5 for a 30-byte file"), "cut in first key: %s", mr_geterr());
    g = gguf_parse_buffer(cut, 120, "cut.gguf");
    CHECK(!g && strstr(mr_geterr(), "metadata key 2 at byte 102: string length 21 exceeds"), "cut in metadata: %s", mr_geterr());
    g = gguf_parse_buffer(cut, len - 1, "cut.gguf");
    CHECK(!g && strstr(mr_geterr(), "tensor 'blk.0.norm': data ends at byte") && strstr(mr_geterr(), "past end of file"),
          "cut in data: %s", mr_geterr());
    free(cut);
    /* random mutations: must never crash; each result either parses or names a reason */
    uint64_t s = 12345;
    int parsed = 0;
    for (int it = 0; it < 20000; it++) {
        uint8_t *m = malloc(len);
        memcpy(m, full, len);
        int nflip = 1 + (int)(s % 4);
        for (int k = 0; k < nflip; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = (size_t)(s >> 33) % len;
            m[pos] = (s >> 20) & 1 ? (uint8_t)(s >> 40) : (uint8_t)(m[pos] ^ (1u << ((s >> 45) & 7)));
        }
        mr_clearerr();
        g = gguf_parse_buffer(m, len, "mut.gguf");
        if (g) parsed++;
        else if (!mr_geterr()[0]) {
            CHECK(0, "mutation %d failed without a message", it);
            free(m);
            break;
        }
        gguf_close(g);
        free(m);
    }
    printf("mutations: %d of 20000 still parse\n", parsed);
    free(full);
}

static void test_crafted(void) {
    bb b = {0};
    int64_t ne[4];
    bput(&b, "GGUX", 4); b32(&b, 3); b64(&b, 0); b64(&b, 0);
    expect_fail(&b, "bad magic", "magic");
    bput(&b, "GGU", 3);
    expect_fail(&b, "not a GGUF file", "3 bytes");
    bput(&b, "GGUF", 4); b32(&b, 4); b64(&b, 0); b64(&b, 0);
    expect_fail(&b, "unsupported GGUF version 4", "version 4");
    bput(&b, "GGUF", 4); b32(&b, 1); b64(&b, 0); b64(&b, 0);
    expect_fail(&b, "version 1 is obsolete", "version 1");
    bput(&b, "GGUF", 4); b32(&b, 0x03000000); b64(&b, 0); b64(&b, 0);
    expect_fail(&b, "big-endian", "big-endian");
    bhead(&b, 0, 1ull << 62);
    expect_fail(&b, "absurd metadata count 4611686018427387904", "n_kv 2^62");
    bhead(&b, 1ull << 62, 0);
    expect_fail(&b, "absurd tensor count", "n_tensors 2^62");
    /* string length past end */
    bhead(&b, 0, 1); b64(&b, 1000); bput(&b, "general.x", 9); b32(&b, 4); b32(&b, 1);
    expect_fail(&b, "string length 1000 exceeds", "key length");
    bhead(&b, 0, 1); bstr(&b, "k"); b32(&b, 8); b64(&b, 1ull << 60); bput(&b, "abcdefgh", 8);
    expect_fail(&b, "exceeds the", "value string length");
    /* unknown value type */
    bhead(&b, 0, 1); bstr(&b, "k.bad"); b32(&b, 13); b32(&b, 0);
    expect_fail(&b, "metadata 'k.bad': unknown value type 13", "value type");
    bhead(&b, 0, 1); bstr(&b, "k.arr"); b32(&b, 9); b32(&b, 77); b64(&b, 1); b32(&b, 0);
    expect_fail(&b, "unknown array element type 77", "array elem type");
    bhead(&b, 0, 1); bstr(&b, "k.arr"); b32(&b, 9); b32(&b, 4); b64(&b, 1ull << 61); b32(&b, 0);
    expect_fail(&b, "array of 2305843009213693952 u32 elements exceeds", "array count");
    bhead(&b, 0, 1); bstr(&b, "k.b"); b32(&b, 7); bput(&b, "\x02", 1); b64(&b, 0);
    expect_fail(&b, "bool value 2", "bool");
    bhead(&b, 0, 2); bstr(&b, "k"); b32(&b, 4); b32(&b, 1); bstr(&b, "k"); b32(&b, 4); b32(&b, 1);
    expect_fail(&b, "duplicate metadata key 'k'", "dup key");
    /* arrays nested too deep */
    bhead(&b, 0, 1); bstr(&b, "k.deep"); b32(&b, 9);
    for (int i = 0; i < 12; i++) { b32(&b, 9); b64(&b, 1); }
    b32(&b, 4); b64(&b, 0);
    expect_fail(&b, "nested deeper", "nesting");
    /* alignment */
    bhead(&b, 0, 1); bstr(&b, "general.alignment"); b32(&b, 4); b32(&b, 48);
    expect_fail(&b, "general.alignment 48 is not a power of two", "alignment 48");
    bhead(&b, 0, 1); bstr(&b, "general.alignment"); b32(&b, 4); b32(&b, 0);
    expect_fail(&b, "is not a power of two", "alignment 0");
    bhead(&b, 0, 1); bstr(&b, "general.alignment"); b32(&b, 8); bstr(&b, "32");
    expect_fail(&b, "general.alignment has type string", "alignment string");
    /* tensor infos */
    ne[0] = 32;
    bhead(&b, 1, 0); bstr(&b, "t0"); b32(&b, 0); b32(&b, 0); b64(&b, 0); bpad(&b, 32); bput(&b, (char[64]){0}, 64);
    expect_fail(&b, "tensor 't0': 0 dimensions", "n_dims 0");
    bhead(&b, 1, 0); bstr(&b, "t5"); b32(&b, 5);
    for (int i = 0; i < 5; i++) b64(&b, 1);
    b32(&b, 0); b64(&b, 0); bpad(&b, 32); bput(&b, (char[64]){0}, 64);
    expect_fail(&b, "tensor 't5': 5 dimensions", "n_dims 5");
    ne[0] = 32; ne[1] = -5;
    bhead(&b, 1, 0); btensor(&b, "neg", 2, ne, 0, 0); bpad(&b, 32); bput(&b, (char[64]){0}, 64);
    expect_fail(&b, "tensor 'neg': dimension 1 is -5", "negative dim");
    ne[0] = 1ll << 40; ne[1] = 1ll << 40;
    bhead(&b, 1, 0); btensor(&b, "big", 2, ne, 0, 0); bpad(&b, 32); bput(&b, (char[64]){0}, 64);
    expect_fail(&b, "tensor 'big': element count overflows", "dims overflow");
    ne[0] = 1ll << 32; ne[1] = 1ll << 32; ne[2] = 1ll << 32; ne[3] = 1ll << 32;
    bhead(&b, 1, 0); btensor(&b, "big4", 4, ne, 0, 0); bpad(&b, 32); bput(&b, (char[64]){0}, 64);
    expect_fail(&b, "overflows", "dims product wraps 2^128");
    ne[0] = 32; ne[1] = 1;
    bhead(&b, 1, 0); btensor(&b, "badtype", 2, ne, 99, 0); bpad(&b, 32); bput(&b, (char[128]){0}, 128);
    expect_fail(&b, "tensor 'badtype': unknown tensor type id 99", "type id");
    bhead(&b, 1, 0); btensor(&b, "gap", 2, ne, 4, 0); bpad(&b, 32); bput(&b, (char[128]){0}, 128);
    expect_fail(&b, "unknown tensor type id 4", "removed type id 4");
    ne[0] = 100;
    bhead(&b, 1, 0); btensor(&b, "q", 2, ne, MR_TYPE_Q4_K, 0); bpad(&b, 32); bput(&b, (char[512]){0}, 512);
    expect_fail(&b, "row length 100 is not a multiple of the Q4_K block size 256", "block multiple");
    ne[0] = 8;
    bhead(&b, 2, 0); btensor(&b, "a", 1, ne, 0, 0); btensor(&b, "b", 1, ne, 0, 40); bpad(&b, 32); bput(&b, (char[128]){0}, 128);
    expect_fail(&b, "tensor 'b': data offset 40 is not aligned to 32", "unaligned offset");
    /* data past end, with the exact byte */
    ne[0] = 64; ne[1] = 2;
    bhead(&b, 2, 0); btensor(&b, "blk.0.ffn_up.weight", 2, ne, 0, 0); btensor(&b, "blk.3.ffn_up.weight", 2, ne, 0, 512);
    bpad(&b, 32);
    size_t ds = b.n;
    bput(&b, (char[800]){0}, 800);
    char want[160];
    snprintf(want, sizeof want, "bad.gguf: tensor 'blk.3.ffn_up.weight': data ends at byte %zu past end of file (%zu bytes)",
             ds + 512 + 512, ds + 800);
    expect_fail(&b, want, "data past end");
    bhead(&b, 1, 0); btensor(&b, "far", 2, ne, 0, 0xffffffffffffffe0ull); bpad(&b, 32); bput(&b, (char[64]){0}, 64);
    expect_fail(&b, "tensor 'far': data ends at byte", "offset overflow");
    /* duplicate names, overlap */
    ne[0] = 8;
    bhead(&b, 2, 0); btensor(&b, "dup", 1, ne, 0, 0); btensor(&b, "dup", 1, ne, 0, 32); bpad(&b, 32); bput(&b, (char[64]){0}, 64);
    expect_fail(&b, "duplicate tensor name 'dup'", "dup tensor");
    ne[0] = 16;
    bhead(&b, 2, 0); btensor(&b, "x", 1, ne, 0, 32); btensor(&b, "y", 1, ne, 0, 0); bpad(&b, 32); bput(&b, (char[128]){0}, 128);
    expect_fail(&b, "tensors 'y' and 'x' overlap", "overlap");
    /* header claims tensors but the file ends before the data section */
    ne[0] = 8;
    bhead(&b, 1, 0); btensor(&b, "t", 1, ne, 0, 0); bput(&b, "x", 1);
    expect_fail(&b, "", "no data section");
    /* files on disk */
    const char *p = tmp_path("zero.gguf");
    FILE *f = fopen(p, "wb");
    fclose(f);
    CHECK(!gguf_open(p) && strstr(mr_geterr(), "empty file"), "empty: %s", mr_geterr());
    CHECK(!gguf_open(tmp_path("nope.gguf")) && strstr(mr_geterr(), "cannot open"), "missing: %s", mr_geterr());
    CHECK(!gguf_open(g_tmp) && strstr(mr_geterr(), "not a regular file"), "dir: %s", mr_geterr());
}

/* Tiny valid files for the fuzz seed corpus (< 4 KB each). */
static int gen_corpus(const char *dir) {
    char p[1024];
    snprintf(p, sizeof p, "%s/small.gguf", dir);
    size_t len;
    snprintf(g_tmp, sizeof g_tmp, "%s", dir);
    uint8_t *d = small_file(&len);
    if (!d) return 1;
    free(d);
    snprintf(p, sizeof p, "%s/alltypes.gguf", dir);
    if (write_all_types(p, 64)) return 1;
    snprintf(p, sizeof p, "%s/empty.gguf", dir);
    gguf_writer *w = gguf_writer_new(p);
    if (!w || gguf_writer_close(w)) return 1;
    snprintf(p, sizeof p, "%s/tensors.gguf", dir);
    w = gguf_writer_new(p);
    gguf_writer_kv_str(w, "general.architecture", "qwen3moe");
    uint32_t ty[] = {MR_TYPE_F16, MR_TYPE_Q4_0, MR_TYPE_Q8_0, MR_TYPE_Q4_K, MR_TYPE_Q6_K};
    for (int i = 0; i < 5; i++) {
        char n[32];
        snprintf(n, sizeof n, "blk.%d.ffn_down_exps.weight", i);
        int64_t ne[3] = {ty[i] >= MR_TYPE_Q2_K ? 256 : 32, 1, 2};
        gguf_writer_add_tensor(w, n, ty[i], 3, ne);
    }
    uint8_t z[4096] = {0};
    gguf_writer_write_data(w, z, 128 + 36 + 68 + 288 + 420);
    if (gguf_writer_close(w)) return 1;
    printf("corpus written to %s\n", dir);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "gen-corpus")) return gen_corpus(argv[2]);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/moerun-test-gguf-XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    double t0 = mr_time_s();
    test_roundtrip();
    test_split();
    test_truncation();
    test_crafted();
    test_fixtures();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    printf("%.2f s\n", mr_time_s() - t0);
    return check_done();
}
