/*
 * gguf_write.c — streaming GGUF v3 writer.
 *
 * Metadata and tensor descriptions are collected in memory; begin_data()
 * writes the header (offsets computed with the alignment), then tensor data
 * is streamed in the order the tensors were added. Used by `moerun synth` and
 * the tests' corrupt-file generators.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "gguf.h"
#include "quant/types.h"

typedef struct {
    char *name;
    uint32_t type, n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes, offset;
} wtensor;

struct gguf_writer {
    char *path;
    FILE *f;
    uint32_t alignment;
    uint8_t *meta; /* serialized kv pairs */
    size_t meta_len, meta_cap;
    uint64_t n_kv;
    wtensor *t;
    uint64_t n_t, cap_t;
    bool data_started;
    uint64_t cur;         /* tensor being written */
    uint64_t cur_written; /* bytes of it written */
    uint64_t data_pos;    /* bytes written in the data section */
    bool failed;
};

static int put(gguf_writer *w, const void *p, size_t n) {
    if (w->meta_len + n > w->meta_cap) {
        size_t nc = w->meta_cap ? w->meta_cap : 4096;
        while (nc < w->meta_len + n) nc *= 2;
        uint8_t *m = mr_realloc(w->meta, nc);
        if (!m) return -1;
        w->meta = m;
        w->meta_cap = nc;
    }
    if (n) memcpy(w->meta + w->meta_len, p, n); /* p may be NULL for an empty array */
    w->meta_len += n;
    return 0;
}
static int put_u32(gguf_writer *w, uint32_t v) { return put(w, &v, 4); }
static int put_u64(gguf_writer *w, uint64_t v) { return put(w, &v, 8); }
static int put_strn(gguf_writer *w, const char *s, uint64_t n) {
    return put_u64(w, n) || put(w, s, n) ? -1 : 0;
}
static int put_str(gguf_writer *w, const char *s) { return put_strn(w, s, strlen(s)); }

gguf_writer *gguf_writer_new(const char *path) {
    gguf_writer *w = mr_calloc(1, sizeof *w);
    if (!w) return NULL;
    w->path = mr_strdup(path);
    w->f = fopen(path, "wb");
    if (!w->f) {
        mr_seterr("%s: cannot create: %s", path, strerror(errno));
        free(w->path);
        free(w);
        return NULL;
    }
    setvbuf(w->f, NULL, _IOFBF, 1 << 22);
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void gguf_writer_set_alignment(gguf_writer *w, uint32_t a) { w->alignment = a; }

static int kv_head(gguf_writer *w, const char *key, gguf_vtype t) {
    if (w->data_started) {
        mr_seterr("%s: metadata '%s' added after data started", w->path, key);
        return -1;
    }
    w->n_kv++;
    return put_str(w, key) || put_u32(w, (uint32_t)t) ? -1 : 0;
}

int gguf_writer_kv_u32(gguf_writer *w, const char *k, uint32_t v) { return kv_head(w, k, GGUF_VT_UINT32) || put_u32(w, v) ? -1 : 0; }
int gguf_writer_kv_i32(gguf_writer *w, const char *k, int32_t v) { return kv_head(w, k, GGUF_VT_INT32) || put(w, &v, 4) ? -1 : 0; }
int gguf_writer_kv_u64(gguf_writer *w, const char *k, uint64_t v) { return kv_head(w, k, GGUF_VT_UINT64) || put_u64(w, v) ? -1 : 0; }
int gguf_writer_kv_f32(gguf_writer *w, const char *k, float v) { return kv_head(w, k, GGUF_VT_FLOAT32) || put(w, &v, 4) ? -1 : 0; }
int gguf_writer_kv_bool(gguf_writer *w, const char *k, bool v) {
    uint8_t b = v;
    return kv_head(w, k, GGUF_VT_BOOL) || put(w, &b, 1) ? -1 : 0;
}
int gguf_writer_kv_str(gguf_writer *w, const char *k, const char *v) { return kv_head(w, k, GGUF_VT_STRING) || put_str(w, v) ? -1 : 0; }

static const uint8_t k_wsize[GGUF_VT_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

int gguf_writer_kv_arr(gguf_writer *w, const char *k, gguf_vtype t, const void *data, uint64_t n) {
    if ((unsigned)t >= GGUF_VT_COUNT || !k_wsize[t]) {
        mr_seterr("gguf writer: '%s': array of %s is not a numeric array", k, gguf_vtype_name(t));
        return -1;
    }
    return kv_head(w, k, GGUF_VT_ARRAY) || put_u32(w, (uint32_t)t) || put_u64(w, n) || put(w, data, n * k_wsize[t]) ? -1 : 0;
}

int gguf_writer_kv_arr_str(gguf_writer *w, const char *k, const char *const *s, uint64_t n) {
    if (kv_head(w, k, GGUF_VT_ARRAY) || put_u32(w, GGUF_VT_STRING) || put_u64(w, n)) return -1;
    for (uint64_t i = 0; i < n; i++)
        if (put_str(w, s[i])) return -1;
    return 0;
}

static int put_value(gguf_writer *w, const gguf_value *v) {
    switch (v->type) {
    case GGUF_VT_STRING: return put_strn(w, v->v.str.s, v->v.str.len);
    case GGUF_VT_ARRAY: {
        if (put_u32(w, (uint32_t)v->arr_type) || put_u64(w, v->n)) return -1;
        if (v->arr_type == GGUF_VT_STRING) {
            char **s = v->arr;
            for (uint64_t i = 0; i < v->n; i++)
                if (put_strn(w, s[i], v->lens[i])) return -1;
            return 0;
        }
        if (v->arr_type == GGUF_VT_ARRAY) {
            gguf_value *sub = v->arr;
            for (uint64_t i = 0; i < v->n; i++)
                if (put_value(w, &sub[i])) return -1;
            return 0;
        }
        return put(w, v->arr, v->n * k_wsize[v->arr_type]);
    }
    default: {
        uint8_t b[8];
        size_t sz = k_wsize[v->type];
        if (v->type == GGUF_VT_FLOAT32) { float f = (float)v->v.f; memcpy(b, &f, 4); }
        else if (v->type == GGUF_VT_FLOAT64) memcpy(b, &v->v.f, 8);
        else if (v->type == GGUF_VT_BOOL) b[0] = v->v.b;
        else memcpy(b, &v->v.u, sz); /* little-endian truncation of the widened value */
        return put(w, b, sz);
    }
    }
}

int gguf_writer_kv_copy(gguf_writer *w, const gguf_kv *kv) {
    return kv_head(w, kv->key, kv->val.type) || put_value(w, &kv->val) ? -1 : 0;
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne) {
    const mr_type_traits *tr = type < MR_TYPE_COUNT ? mr_type_get(type) : NULL;
    if (!tr || n_dims < 1 || n_dims > GGUF_MAX_DIMS || ne[0] % tr->blck) {
        mr_seterr("gguf writer: tensor '%s': bad type %u or shape", name, type);
        return -1;
    }
    if (w->n_t == w->cap_t) {
        uint64_t nc = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *t = mr_realloc(w->t, nc * sizeof *t);
        if (!t) return -1;
        w->t = t;
        w->cap_t = nc;
    }
    wtensor *t = &w->t[w->n_t++];
    memset(t, 0, sizeof *t);
    t->name = mr_strdup(name);
    t->type = type;
    t->n_dims = n_dims;
    uint64_t nel = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = d < (int)n_dims ? ne[d] : 1;
        nel *= (uint64_t)t->ne[d];
    }
    t->nbytes = nel / tr->blck * tr->tsize;
    return 0;
}

static uint64_t pad_to(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

static int wr(gguf_writer *w, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, w->f) != n) {
        mr_seterr("%s: write failed: %s", w->path, strerror(errno));
        w->failed = true;
        return -1;
    }
    return 0;
}

static int wr_zeros(gguf_writer *w, uint64_t n) {
    static const uint8_t z[256];
    while (n) {
        size_t k = n > sizeof z ? sizeof z : (size_t)n;
        if (wr(w, z, k)) return -1;
        n -= k;
    }
    return 0;
}

int gguf_writer_begin_data(gguf_writer *w) {
    if (w->data_started) return 0;
    uint32_t magic = 0x46554747u, version = 3;
    if (w->alignment != GGUF_DEFAULT_ALIGNMENT) {
        if (gguf_writer_kv_u32(w, "general.alignment", w->alignment)) return -1;
    }
    w->data_started = true;
    uint64_t off = 0;
    for (uint64_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        off = pad_to(off + w->t[i].nbytes, w->alignment);
    }
    if (wr(w, &magic, 4) || wr(w, &version, 4) || wr(w, &w->n_t, 8) || wr(w, &w->n_kv, 8) || wr(w, w->meta, w->meta_len))
        return -1;
    uint64_t pos = 24 + w->meta_len;
    for (uint64_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        uint64_t len = strlen(t->name);
        if (wr(w, &len, 8) || wr(w, t->name, len) || wr(w, &t->n_dims, 4) || wr(w, t->ne, 8 * t->n_dims) ||
            wr(w, &t->type, 4) || wr(w, &t->offset, 8))
            return -1;
        pos += 8 + len + 4 + 8 * t->n_dims + 4 + 8;
    }
    if (wr_zeros(w, pad_to(pos, w->alignment) - pos)) return -1;
    w->cur = 0;
    w->cur_written = 0;
    return 0;
}

int gguf_writer_write_data(gguf_writer *w, const void *data, uint64_t n) {
    if (!w->data_started && gguf_writer_begin_data(w)) return -1;
    const uint8_t *p = data;
    while (n) {
        while (w->cur < w->n_t && w->cur_written == w->t[w->cur].nbytes) {
            /* pad to the next tensor */
            uint64_t end = w->t[w->cur].offset + w->t[w->cur].nbytes;
            w->cur++;
            if (w->cur < w->n_t && wr_zeros(w, w->t[w->cur].offset - end)) return -1;
            w->cur_written = 0;
        }
        if (w->cur >= w->n_t) {
            mr_seterr("%s: more tensor data written than declared", w->path);
            w->failed = true;
            return -1;
        }
        uint64_t k = w->t[w->cur].nbytes - w->cur_written;
        if (k > n) k = n;
        if (wr(w, p, k)) return -1;
        w->cur_written += k;
        p += k;
        n -= k;
    }
    return 0;
}

static void writer_free(gguf_writer *w) {
    for (uint64_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w->meta);
    free(w->path);
    free(w);
}

int gguf_writer_close(gguf_writer *w) {
    int rc = 0;
    if (!w->data_started && gguf_writer_begin_data(w)) rc = -1;
    if (rc == 0 && !w->failed) {
        /* all tensors complete? */
        while (w->cur < w->n_t && w->cur_written == w->t[w->cur].nbytes && w->cur + 1 < w->n_t) {
            uint64_t end = w->t[w->cur].offset + w->t[w->cur].nbytes;
            w->cur++;
            if (wr_zeros(w, w->t[w->cur].offset - end)) { rc = -1; break; }
            w->cur_written = 0;
        }
        if (rc == 0 && w->n_t && (w->cur != w->n_t - 1 || w->cur_written != w->t[w->cur].nbytes)) {
            mr_seterr("%s: tensor '%s' has %llu of %llu bytes written", w->path, w->t[w->cur].name,
                      (unsigned long long)w->cur_written, (unsigned long long)w->t[w->cur].nbytes);
            rc = -1;
        }
    }
    if (w->failed) rc = -1;
    if (fclose(w->f) != 0 && rc == 0) {
        mr_seterr("%s: close failed: %s", w->path, strerror(errno));
        rc = -1;
    }
    writer_free(w);
    return rc;
}

uint64_t gguf_writer_file_size(const gguf_writer *w) {
    uint64_t pos = 24 + w->meta_len;
    if (!w->data_started && w->alignment != GGUF_DEFAULT_ALIGNMENT)
        pos += 8 + strlen("general.alignment") + 4 + 4; /* added by begin_data() */
    uint64_t off = 0, end = 0;
    for (uint64_t i = 0; i < w->n_t; i++) {
        pos += 8 + strlen(w->t[i].name) + 4 + 8 * w->t[i].n_dims + 4 + 8;
        end = off + w->t[i].nbytes;
        off = pad_to(end, w->alignment);
    }
    return pad_to(pos, w->alignment) + end;
}

void gguf_writer_abort(gguf_writer *w) {
    struct stat st;
    fclose(w->f);
    /* only delete what we created: never a device such as /dev/null */
    if (stat(w->path, &st) == 0 && S_ISREG(st.st_mode)) unlink(w->path);
    writer_free(w);
}
