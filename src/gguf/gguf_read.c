/*
 * gguf_read.c — the GGUF reader: mmap, validate, index.
 *
 * Layout (little-endian): "GGUF" u32 version, u64 n_tensors, u64 n_kv,
 * n_kv x (string key, u32 vtype, value), n_tensors x (string name, u32 n_dims,
 * i64 ne[n_dims], u32 type, u64 offset), padding to `general.alignment`, data.
 * A string is u64 length + bytes; an array is u32 elem type, u64 n, elements.
 *
 * Every read goes through a bounds-checked cursor; every count is checked
 * against the bytes left before anything is allocated, so a hostile header
 * cannot trigger a huge allocation.
 */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "quant/types.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" */
#define MAX_NEST 8

typedef struct {
    const uint8_t *p;
    uint64_t pos, size;
    const char *file;
} cursor;

static bool rd(cursor *c, void *dst, uint64_t n, const char *what) {
    if (n > c->size - c->pos) {
        mr_seterr("%s: truncated: %s at byte %llu needs %llu bytes, file has %llu", c->file, what,
                  (unsigned long long)c->pos, (unsigned long long)n, (unsigned long long)c->size);
        return false;
    }
    memcpy(dst, c->p + c->pos, n);
    c->pos += n;
    return true;
}
static bool rd_u32(cursor *c, uint32_t *v, const char *what) { return rd(c, v, 4, what); }
static bool rd_u64(cursor *c, uint64_t *v, const char *what) { return rd(c, v, 8, what); }

/* Reads a GGUF string into a fresh NUL-terminated buffer. */
static char *rd_str(cursor *c, uint64_t *len_out, const char *what) {
    uint64_t len;
    if (!rd_u64(c, &len, what)) return NULL;
    if (len > c->size - c->pos) {
        mr_seterr("%s: %s at byte %llu: string length %llu exceeds the %llu bytes left", c->file, what,
                  (unsigned long long)(c->pos - 8), (unsigned long long)len,
                  (unsigned long long)(c->size - c->pos));
        return NULL;
    }
    char *s = mr_malloc(len + 1);
    if (!s) return NULL;
    memcpy(s, c->p + c->pos, len);
    s[len] = 0;
    c->pos += len;
    if (len_out) *len_out = len;
    return s;
}

static const uint8_t k_vsize[GGUF_VT_COUNT] = {
    [GGUF_VT_UINT8] = 1, [GGUF_VT_INT8] = 1, [GGUF_VT_UINT16] = 2, [GGUF_VT_INT16] = 2,
    [GGUF_VT_UINT32] = 4, [GGUF_VT_INT32] = 4, [GGUF_VT_FLOAT32] = 4, [GGUF_VT_BOOL] = 1,
    [GGUF_VT_UINT64] = 8, [GGUF_VT_INT64] = 8, [GGUF_VT_FLOAT64] = 8,
};

const char *gguf_vtype_name(gguf_vtype t) {
    static const char *n[GGUF_VT_COUNT] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                           "string", "array", "u64", "i64", "f64"};
    return (unsigned)t < GGUF_VT_COUNT ? n[t] : "?";
}

static void value_free(gguf_value *v) {
    if (v->type == GGUF_VT_STRING) free(v->v.str.s);
    if (v->type == GGUF_VT_ARRAY) {
        if (v->arr_type == GGUF_VT_STRING && v->arr) {
            char **s = v->arr;
            for (uint64_t i = 0; i < v->n; i++) free(s[i]);
        } else if (v->arr_type == GGUF_VT_ARRAY && v->arr) {
            gguf_value *sub = v->arr;
            for (uint64_t i = 0; i < v->n; i++) value_free(&sub[i]);
        }
        free(v->arr);
        free(v->lens);
    }
    memset(v, 0, sizeof *v);
}

/* Scalar of type t into v's union (widened). */
static bool rd_scalar(cursor *c, gguf_vtype t, gguf_value *v, const char *what) {
    uint8_t b[8] = {0};
    if (!rd(c, b, k_vsize[t], what)) return false;
    switch (t) {
    case GGUF_VT_UINT8: v->v.u = b[0]; break;
    case GGUF_VT_INT8: v->v.i = (int8_t)b[0]; break;
    case GGUF_VT_UINT16: { uint16_t x; memcpy(&x, b, 2); v->v.u = x; break; }
    case GGUF_VT_INT16: { int16_t x; memcpy(&x, b, 2); v->v.i = x; break; }
    case GGUF_VT_UINT32: { uint32_t x; memcpy(&x, b, 4); v->v.u = x; break; }
    case GGUF_VT_INT32: { int32_t x; memcpy(&x, b, 4); v->v.i = x; break; }
    case GGUF_VT_FLOAT32: { float x; memcpy(&x, b, 4); v->v.f = x; break; }
    case GGUF_VT_BOOL:
        if (b[0] > 1) {
            mr_seterr("%s: %s: bool value %u is not 0 or 1", c->file, what, b[0]);
            return false;
        }
        v->v.b = b[0];
        break;
    case GGUF_VT_UINT64: memcpy(&v->v.u, b, 8); break;
    case GGUF_VT_INT64: memcpy(&v->v.i, b, 8); break;
    case GGUF_VT_FLOAT64: memcpy(&v->v.f, b, 8); break;
    default: return false;
    }
    return true;
}

static bool rd_value(cursor *c, gguf_vtype t, gguf_value *v, int depth, const char *what) {
    memset(v, 0, sizeof *v);
    if ((unsigned)t >= GGUF_VT_COUNT) {
        mr_seterr("%s: %s: unknown value type %u", c->file, what, (unsigned)t);
        return false;
    }
    v->type = t;
    if (t == GGUF_VT_STRING) {
        v->v.str.s = rd_str(c, &v->v.str.len, what);
        return v->v.str.s != NULL;
    }
    if (t != GGUF_VT_ARRAY) return rd_scalar(c, t, v, what);

    if (depth >= MAX_NEST) {
        mr_seterr("%s: %s: arrays nested deeper than %d", c->file, what, MAX_NEST);
        return false;
    }
    uint32_t at;
    uint64_t n;
    if (!rd_u32(c, &at, what) || !rd_u64(c, &n, what)) return false;
    if (at >= GGUF_VT_COUNT) {
        mr_seterr("%s: %s: unknown array element type %u", c->file, what, at);
        return false;
    }
    v->arr_type = (gguf_vtype)at;
    /* Minimum bytes per element: strings need their 8-byte length, nested
     * arrays 12 bytes of header. Reject counts the file cannot hold. */
    uint64_t minsz = at == GGUF_VT_STRING ? 8 : at == GGUF_VT_ARRAY ? 12 : k_vsize[at];
    if (n > (c->size - c->pos) / minsz) {
        mr_seterr("%s: %s: array of %llu %s elements exceeds the %llu bytes left", c->file, what,
                  (unsigned long long)n, gguf_vtype_name((gguf_vtype)at),
                  (unsigned long long)(c->size - c->pos));
        return false;
    }
    v->n = n;
    if (at == GGUF_VT_STRING) {
        char **s = mr_calloc(n ? n : 1, sizeof(char *));
        uint64_t *lens = mr_calloc(n ? n : 1, sizeof(uint64_t));
        v->arr = s;
        v->lens = lens;
        if (!s || !lens) return false;
        for (uint64_t i = 0; i < n; i++)
            if (!(s[i] = rd_str(c, &lens[i], what))) return false;
        return true;
    }
    if (at == GGUF_VT_ARRAY) {
        gguf_value *sub = mr_calloc(n ? n : 1, sizeof(gguf_value));
        v->arr = sub;
        if (!sub) return false;
        for (uint64_t i = 0; i < n; i++) {
            /* nested: each element is itself (u32 type, u64 n, data) */
            if (!rd_value(c, GGUF_VT_ARRAY, &sub[i], depth + 1, what)) return false;
        }
        return true;
    }
    uint64_t bytes = n * k_vsize[at];
    v->arr = mr_malloc(bytes ? bytes : 1);
    if (!v->arr) return false;
    if (at == GGUF_VT_BOOL) {
        uint8_t *d = v->arr;
        for (uint64_t i = 0; i < n; i++) {
            if (!rd(c, &d[i], 1, what)) return false;
            if (d[i] > 1) {
                mr_seterr("%s: %s: bool array element %llu is %u", c->file, what, (unsigned long long)i, d[i]);
                return false;
            }
        }
        return true;
    }
    return rd(c, v->arr, bytes, what);
}

/* ---- name index (open addressing, FNV-1a) ---------------------------------------- */
typedef struct {
    uint64_t cap;
    int64_t *slots; /* tensor index or -1 */
} name_index;

static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static int index_build(gguf_ctx *g) {
    name_index *ix = mr_calloc(1, sizeof *ix);
    if (!ix) return -1;
    g->index = ix;
    ix->cap = 16;
    while (ix->cap < g->n_tensors * 2) ix->cap *= 2;
    ix->slots = mr_malloc(ix->cap * sizeof(int64_t));
    if (!ix->slots) return -1;
    for (uint64_t i = 0; i < ix->cap; i++) ix->slots[i] = -1;
    for (uint64_t t = 0; t < g->n_tensors; t++) {
        uint64_t h = fnv(g->tensors[t].name) & (ix->cap - 1);
        while (ix->slots[h] >= 0) {
            if (!strcmp(g->tensors[ix->slots[h]].name, g->tensors[t].name)) {
                mr_seterr("%s: duplicate tensor name '%s'", g->path, g->tensors[t].name);
                return -1;
            }
            h = (h + 1) & (ix->cap - 1);
        }
        ix->slots[h] = (int64_t)t;
    }
    return 0;
}

const gguf_tensor *gguf_tensor_find(const gguf_ctx *g, const char *name) {
    const name_index *ix = g->index;
    if (!ix) return NULL;
    uint64_t h = fnv(name) & (ix->cap - 1);
    while (ix->slots[h] >= 0) {
        const gguf_tensor *t = &g->tensors[ix->slots[h]];
        if (!strcmp(t->name, name)) return t;
        h = (h + 1) & (ix->cap - 1);
    }
    return NULL;
}

const gguf_kv *gguf_find(const gguf_ctx *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (!strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

/* ---- parsing one part -------------------------------------------------------------- */
typedef struct {
    uint32_t version;
    uint64_t n_kv, n_tensors, alignment;
    gguf_kv *kv;
    gguf_tensor *tensors;
} part_meta;

static void part_meta_free(part_meta *m, bool free_kv) {
    if (free_kv && m->kv) {
        for (uint64_t i = 0; i < m->n_kv; i++) {
            free(m->kv[i].key);
            value_free(&m->kv[i].val);
        }
        free(m->kv);
    }
    if (m->tensors) {
        for (uint64_t i = 0; i < m->n_tensors; i++) free(m->tensors[i].name);
        free(m->tensors);
    }
    memset(m, 0, sizeof *m);
}

static int parse_part(const uint8_t *p, uint64_t size, const char *file, int split, part_meta *m) {
    memset(m, 0, sizeof *m);
    cursor c = {p, 0, size, file};
    uint32_t magic;
    if (size < 4) {
        mr_seterr("%s: not a GGUF file (only %llu bytes)", file, (unsigned long long)size);
        return -1;
    }
    rd_u32(&c, &magic, "magic");
    if (magic != GGUF_MAGIC) {
        mr_seterr("%s: not a GGUF file (bad magic %02x %02x %02x %02x)", file, p[0], p[1], p[2], p[3]);
        return -1;
    }
    if (!rd_u32(&c, &m->version, "version")) return -1;
    if (m->version == 1) {
        mr_seterr("%s: GGUF version 1 is obsolete; re-convert the model", file);
        return -1;
    }
    if (m->version < 2 || m->version > 3) {
        if ((m->version & 0xffff) == 0 && m->version != 0)
            mr_seterr("%s: GGUF version %u looks big-endian; only little-endian files are supported", file,
                      m->version);
        else mr_seterr("%s: unsupported GGUF version %u (supported: 2, 3)", file, m->version);
        return -1;
    }
    if (!rd_u64(&c, &m->n_tensors, "tensor count") || !rd_u64(&c, &m->n_kv, "metadata count")) return -1;
    /* each kv needs >= 8+1+4+1 bytes, each tensor info >= 8+1+4+8+4+8 */
    if (m->n_kv > (size - c.pos) / 14) {
        mr_seterr("%s: absurd metadata count %llu for a %llu-byte file", file, (unsigned long long)m->n_kv,
                  (unsigned long long)size);
        return -1;
    }
    if (m->n_tensors > (size - c.pos) / 33) {
        mr_seterr("%s: absurd tensor count %llu for a %llu-byte file", file, (unsigned long long)m->n_tensors,
                  (unsigned long long)size);
        return -1;
    }
    m->kv = mr_calloc(m->n_kv ? m->n_kv : 1, sizeof(gguf_kv));
    if (!m->kv) return -1;
    m->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < m->n_kv; i++) {
        char what[64];
        snprintf(what, sizeof what, "metadata key %llu", (unsigned long long)i);
        gguf_kv *kv = &m->kv[i];
        if (!(kv->key = rd_str(&c, NULL, what))) return -1;
        for (uint64_t j = 0; j < i; j++)
            if (!strcmp(m->kv[j].key, kv->key)) {
                mr_seterr("%s: duplicate metadata key '%s'", file, kv->key);
                return -1;
            }
        uint32_t t;
        char what2[256];
        snprintf(what2, sizeof what2, "metadata '%.200s'", kv->key);
        if (!rd_u32(&c, &t, what2)) return -1;
        if (!rd_value(&c, (gguf_vtype)t, &kv->val, 0, what2)) return -1;
        if (!strcmp(kv->key, "general.alignment")) {
            if (kv->val.type != GGUF_VT_UINT32 && kv->val.type != GGUF_VT_UINT64 && kv->val.type != GGUF_VT_INT32) {
                mr_seterr("%s: general.alignment has type %s, expected u32", file, gguf_vtype_name(kv->val.type));
                return -1;
            }
            uint64_t a = kv->val.v.u;
            if (a == 0 || (a & (a - 1)) || a > (1u << 20)) {
                mr_seterr("%s: general.alignment %llu is not a power of two in [1, 1 MiB]", file,
                          (unsigned long long)a);
                return -1;
            }
            m->alignment = a;
        }
    }
    m->tensors = mr_calloc(m->n_tensors ? m->n_tensors : 1, sizeof(gguf_tensor));
    if (!m->tensors) return -1;
    for (uint64_t i = 0; i < m->n_tensors; i++) {
        gguf_tensor *t = &m->tensors[i];
        char what[64];
        snprintf(what, sizeof what, "tensor info %llu", (unsigned long long)i);
        if (!(t->name = rd_str(&c, NULL, what))) return -1;
        char what2[256];
        snprintf(what2, sizeof what2, "tensor '%.200s'", t->name);
        if (!rd_u32(&c, &t->n_dims, what2)) return -1;
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS) {
            mr_seterr("%s: %s: %u dimensions (1..%d allowed)", file, what2, t->n_dims, GGUF_MAX_DIMS);
            return -1;
        }
        uint64_t nel = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (!rd(&c, &t->ne[d], 8, what2)) return -1;
            if (t->ne[d] < 0 || t->ne[d] > (1ll << 40)) {
                mr_seterr("%s: %s: dimension %u is %lld", file, what2, d, (long long)t->ne[d]);
                return -1;
            }
            if (!mr_mul_u64(nel, (uint64_t)t->ne[d], &nel) || nel > (1ull << 50)) {
                mr_seterr("%s: %s: element count overflows", file, what2);
                return -1;
            }
        }
        t->nelem = (int64_t)nel;
        if (!rd_u32(&c, &t->type, what2) || !rd_u64(&c, &t->offset, what2)) return -1;
        const mr_type_traits *tr = t->type < MR_TYPE_COUNT ? mr_type_get(t->type) : NULL;
        if (!tr) {
            mr_seterr("%s: %s: unknown tensor type id %u", file, what2, t->type);
            return -1;
        }
        if (t->ne[0] % tr->blck) {
            mr_seterr("%s: %s: row length %lld is not a multiple of the %s block size %u", file, what2,
                      (long long)t->ne[0], tr->name, tr->blck);
            return -1;
        }
        t->nbytes = nel / tr->blck * tr->tsize;
        if (t->offset % m->alignment) {
            mr_seterr("%s: %s: data offset %llu is not aligned to %llu", file, what2,
                      (unsigned long long)t->offset, (unsigned long long)m->alignment);
            return -1;
        }
        t->split = split;
    }
    uint64_t data_start = (c.pos + m->alignment - 1) / m->alignment * m->alignment;
    if (data_start > size && m->n_tensors > 0) {
        mr_seterr("%s: truncated: tensor data section would start at byte %llu past end of file (%llu bytes)",
                  file, (unsigned long long)data_start, (unsigned long long)size);
        return -1;
    }
    for (uint64_t i = 0; i < m->n_tensors; i++) {
        gguf_tensor *t = &m->tensors[i];
        uint64_t start, end;
        if (!mr_add_u64(data_start, t->offset, &start) || !mr_add_u64(start, t->nbytes, &end) || end > size) {
            mr_seterr("%s: tensor '%s': data ends at byte %llu past end of file (%llu bytes)", file, t->name,
                      (unsigned long long)(mr_add_u64(data_start, t->offset, &start) ? start + t->nbytes : ~0ull),
                      (unsigned long long)size);
            return -1;
        }
        t->data = p + start;
    }
    /* Overlapping tensor data is a corrupt file too: sort-free O(n log n) is
     * overkill here; check against neighbours after ordering by offset. */
    if (m->n_tensors > 1) {
        uint64_t n = m->n_tensors;
        uint64_t *ord = mr_malloc(n * sizeof(uint64_t));
        if (!ord) return -1;
        for (uint64_t i = 0; i < n; i++) ord[i] = i;
        /* shell sort by offset */
        for (uint64_t gap = n / 2; gap > 0; gap /= 2)
            for (uint64_t i = gap; i < n; i++) {
                uint64_t x = ord[i], j = i;
                while (j >= gap && m->tensors[ord[j - gap]].offset > m->tensors[x].offset) {
                    ord[j] = ord[j - gap];
                    j -= gap;
                }
                ord[j] = x;
            }
        for (uint64_t i = 1; i < n; i++) {
            const gguf_tensor *a = &m->tensors[ord[i - 1]], *b = &m->tensors[ord[i]];
            if (a->nbytes && b->nbytes && a->offset + a->nbytes > b->offset) {
                mr_seterr("%s: tensors '%s' and '%s' overlap in the data section", file, a->name, b->name);
                free(ord);
                return -1;
            }
        }
        free(ord);
    }
    return 0;
}

/* ---- contexts ---------------------------------------------------------------------- */
void gguf_close(gguf_ctx *g) {
    if (!g) return;
    if (g->kv) {
        for (uint64_t i = 0; i < g->n_kv; i++) {
            free(g->kv[i].key);
            value_free(&g->kv[i].val);
        }
        free(g->kv);
    }
    if (g->tensors) {
        for (uint64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
        free(g->tensors);
    }
    for (int i = 0; i < g->n_parts; i++) {
        if (g->parts[i].owned_map && g->parts[i].map) munmap(g->parts[i].map, g->parts[i].size);
        free(g->parts[i].path);
    }
    free(g->parts);
    name_index *ix = g->index;
    if (ix) free(ix->slots);
    free(ix);
    free(g->path);
    free(g);
}

/* --no-mmap: the file read into anonymous memory (transparent huge pages
 * where the kernel allows), the page cache dropped behind the reads so the
 * model is not held twice. Same contract as mmap: PROT_READ after loading,
 * munmap frees it. */
static void *read_file(int fd, const char *path, uint64_t size) {
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        mr_seterr("%s: cannot allocate %llu bytes to read the model into: %s", path, (unsigned long long)size,
                  strerror(errno));
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    (void)madvise(m, size, MADV_HUGEPAGE);
#endif
    const uint64_t chunk = 64u << 20;
    for (uint64_t off = 0; off < size;) {
        const uint64_t want = size - off < chunk ? size - off : chunk;
        ssize_t got = pread(fd, (char *)m + off, (size_t)want, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            mr_seterr("%s: read failed at byte %llu: %s", path, (unsigned long long)off,
                      got < 0 ? strerror(errno) : "unexpected end of file");
            munmap(m, size);
            return NULL;
        }
        (void)posix_fadvise(fd, (off_t)off, got, POSIX_FADV_DONTNEED);
        off += (uint64_t)got;
    }
    (void)mprotect(m, size, PROT_READ);
    return m;
}

static bool g_read_into_memory; /* gguf_open_ex's flag for map_file (opening is single-threaded per call) */

static int map_file(const char *path, gguf_part *part) {
    memset(part, 0, sizeof *part);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        mr_seterr("%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        mr_seterr("%s: not a regular file", path);
        close(fd);
        return -1;
    }
    part->path = mr_strdup(path);
    part->size = (uint64_t)st.st_size;
    if (part->size == 0) {
        close(fd);
        mr_seterr("%s: empty file", path);
        return -1;
    }
    if (g_read_into_memory) {
        void *mem = read_file(fd, path, part->size);
        close(fd);
        if (!mem) return -1;
        part->map = mem;
        part->owned_map = true;
        part->in_memory = true;
        return 0;
    }
    void *m = mmap(NULL, part->size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        mr_seterr("%s: mmap failed: %s", path, strerror(errno));
        return -1;
    }
#ifdef MADV_HUGEPAGE
    /* file THP: page-cache reads through this mapping may use 2 MiB folios */
    (void)madvise(m, part->size, MADV_HUGEPAGE);
#endif
    /* start reading the whole file in the background (weights are read in
     * full every token): the first tokens then find it in the page cache
     * instead of faulting it in 4 KiB at a time. Advice only: errors ignored. */
    (void)madvise(m, part->size, MADV_WILLNEED);
    part->map = m;
    part->owned_map = true;
    return 0;
}

/* Appends the tensors of part meta m (moving ownership) into g. */
static int merge_tensors(gguf_ctx *g, part_meta *m) {
    gguf_tensor *nt = mr_realloc(g->tensors, (g->n_tensors + m->n_tensors + 1) * sizeof(gguf_tensor));
    if (!nt) return -1;
    g->tensors = nt;
    memcpy(g->tensors + g->n_tensors, m->tensors, m->n_tensors * sizeof(gguf_tensor));
    g->n_tensors += m->n_tensors;
    free(m->tensors);
    m->tensors = NULL;
    m->n_tensors = 0;
    return 0;
}

static gguf_ctx *ctx_from_first(gguf_part *part, int owned) {
    gguf_ctx *g = mr_calloc(1, sizeof *g);
    if (!g) return NULL;
    g->path = mr_strdup(part->path);
    g->parts = mr_calloc(1, sizeof(gguf_part));
    if (!g->path || !g->parts) {
        free(g->path); free(g->parts); free(g);
        return NULL;
    }
    g->parts[0] = *part;
    g->parts[0].owned_map = owned;
    g->n_parts = 1;
    g->total_size = part->size;
    part_meta m;
    if (parse_part(part->map, part->size, part->path, 0, &m) != 0) {
        part_meta_free(&m, true);
        gguf_close(g);
        return NULL;
    }
    g->version = m.version;
    g->alignment = m.alignment;
    g->kv = m.kv;
    g->n_kv = m.n_kv;
    m.kv = NULL;
    if (merge_tensors(g, &m) != 0) {
        part_meta_free(&m, true);
        gguf_close(g);
        return NULL;
    }
    return g;
}

gguf_ctx *gguf_parse_buffer(const void *buf, uint64_t size, const char *name) {
    gguf_part part = {.path = mr_strdup(name ? name : "<buffer>"), .map = (void *)buf, .size = size};
    if (!part.path) return NULL;
    gguf_ctx *g = ctx_from_first(&part, 0);
    if (!g) return NULL;
    if (index_build(g) != 0) {
        gguf_close(g);
        return NULL;
    }
    return g;
}

/* NAME-00001-of-00003.gguf -> prefix "NAME", count 3, number 1. */
static bool split_name(const char *path, char *prefix, size_t cap, int *no, int *count) {
    size_t n = strlen(path);
    const char *suf = "-00001-of-00000.gguf";
    size_t sl = strlen(suf);
    if (n < sl) return false;
    const char *s = path + n - sl;
    int a, b;
    char tail[8];
    if (sscanf(s, "-%5d-of-%5d.gg%2s", &a, &b, tail) != 3 || strcmp(tail, "uf") != 0) return false;
    if (n - sl + 1 > cap) return false;
    memcpy(prefix, path, n - sl);
    prefix[n - sl] = 0;
    *no = a;
    *count = b;
    return true;
}

static gguf_ctx *open_parts(const char *path);

gguf_ctx *gguf_open(const char *path) { return gguf_open_ex(path, false); }

/* Whether every page of a mapping is in the page cache (mincore; false on error). */
static bool mapping_resident(void *map, uint64_t size) {
    const long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return false;
    const size_t n = (size_t)((size + (uint64_t)pg - 1) / (uint64_t)pg);
    unsigned char *v = malloc(n);
    if (!v) return false;
    bool all = mincore(map, (size_t)size, v) == 0;
    for (size_t i = 0; all && i < n; i++) all = (v[i] & 1) != 0;
    free(v);
    return all;
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

uint64_t gguf_prefault(gguf_ctx *g) {
    if (!g) return 0;
    uint64_t mapped = 0;
    for (int i = 0; i < g->n_parts; i++)
        if (g->parts[i].owned_map && !g->parts[i].in_memory) mapped += g->parts[i].size;
    /* page cache counts as available: a cached model fits by definition */
    const uint64_t avail = mr_mem_available();
    if (mapped == 0 || avail == 0 || mapped > avail / 10 * 9) return 0;
    /* Up to 4 passes, until every page is resident: pages read from disk enter the page
     * cache's inactive list, so while a pass reads the tail of a model that other files'
     * pages crowd out, reclaim can take back its head; the next pass refaults those and
     * marks the rest referenced again, which promotes the model's pages over the others. */
    uint64_t done = 0;
    for (int pass = 0; pass < 4; pass++) {
        done = 0;
        bool all_resident = true;
        for (int i = 0; i < g->n_parts; i++) {
            gguf_part *p = &g->parts[i];
            if (!p->owned_map || p->in_memory) continue;
            if (madvise(p->map, p->size, MADV_POPULATE_READ) == 0) done += p->size;
            if (!mapping_resident(p->map, p->size)) all_resident = false;
        }
        if (all_resident) break;
    }
    return done;
}

gguf_ctx *gguf_open_ex(const char *path, bool read_into_memory) {
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    g_read_into_memory = read_into_memory;
    gguf_ctx *g = open_parts(path);
    g_read_into_memory = false;
    pthread_mutex_unlock(&mu);
    return g;
}

static gguf_ctx *open_parts(const char *path) {
    gguf_part part;
    if (map_file(path, &part) != 0) {
        free(part.path);
        return NULL;
    }
    gguf_ctx *g = ctx_from_first(&part, 1);
    if (!g) return NULL;

    int64_t split_count = gguf_i64_or(g, "split.count", 1);
    char prefix[4096];
    int no = 0, count = 0;
    bool named = split_name(path, prefix, sizeof prefix, &no, &count);
    if (split_count > 1 || (named && count > 1)) {
        if (!named) {
            mr_seterr("%s: split.count is %lld but the file name is not NAME-00001-of-NNNNN.gguf", path,
                      (long long)split_count);
            gguf_close(g);
            return NULL;
        }
        if (no != 1) {
            mr_seterr("%s: this is part %d of a split model; open part 00001", path, no);
            gguf_close(g);
            return NULL;
        }
        if (split_count != count && split_count != 1) {
            mr_seterr("%s: split.count %lld does not match the file name (%d parts)", path,
                      (long long)split_count, count);
            gguf_close(g);
            return NULL;
        }
        if (count > 1024) {
            mr_seterr("%s: %d split parts is more than the 1024 supported", path, count);
            gguf_close(g);
            return NULL;
        }
        gguf_part *np = mr_realloc(g->parts, (size_t)count * sizeof(gguf_part));
        if (!np) { gguf_close(g); return NULL; }
        g->parts = np;
        for (int i = 2; i <= count; i++) {
            char pp[4200];
            snprintf(pp, sizeof pp, "%s-%05d-of-%05d.gguf", prefix, i, count);
            gguf_part *pt = &g->parts[g->n_parts];
            if (map_file(pp, pt) != 0) {
                free(pt->path);
                mr_preerr("split model %s", path);
                gguf_close(g);
                return NULL;
            }
            g->n_parts++;
            g->total_size += pt->size;
            part_meta m;
            if (parse_part(pt->map, pt->size, pt->path, i - 1, &m) != 0) {
                part_meta_free(&m, true);
                gguf_close(g);
                return NULL;
            }
            int64_t pno = -1;
            for (uint64_t k = 0; k < m.n_kv; k++)
                if (!strcmp(m.kv[k].key, "split.no")) pno = (int64_t)m.kv[k].val.v.u;
            if (pno >= 0 && pno != i - 1) {
                mr_seterr("%s: split.no is %lld, expected %d", pp, (long long)pno, i - 1);
                part_meta_free(&m, true);
                gguf_close(g);
                return NULL;
            }
            int rc = merge_tensors(g, &m);
            part_meta_free(&m, true);
            if (rc != 0) { gguf_close(g); return NULL; }
        }
    }
    if (index_build(g) != 0) {
        gguf_close(g);
        return NULL;
    }
    return g;
}

/* ---- typed getters ------------------------------------------------------------------ */
static bool is_int(gguf_vtype t) {
    return t == GGUF_VT_UINT8 || t == GGUF_VT_INT8 || t == GGUF_VT_UINT16 || t == GGUF_VT_INT16 ||
           t == GGUF_VT_UINT32 || t == GGUF_VT_INT32 || t == GGUF_VT_UINT64 || t == GGUF_VT_INT64;
}
static bool is_signed(gguf_vtype t) {
    return t == GGUF_VT_INT8 || t == GGUF_VT_INT16 || t == GGUF_VT_INT32 || t == GGUF_VT_INT64;
}

bool gguf_get_i64(const gguf_ctx *g, const char *key, int64_t *out) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return false;
    gguf_vtype t = kv->val.type;
    if (is_int(t)) {
        if (!is_signed(t) && kv->val.v.u > (uint64_t)INT64_MAX) {
            mr_seterr("%s: %s: value %llu out of range", g->path, key, (unsigned long long)kv->val.v.u);
            return false;
        }
        *out = is_signed(t) ? kv->val.v.i : (int64_t)kv->val.v.u;
        return true;
    }
    if (t == GGUF_VT_BOOL) { *out = kv->val.v.b; return true; }
    mr_seterr("%s: %s has type %s, expected an integer", g->path, key, gguf_vtype_name(t));
    return false;
}

bool gguf_get_f64(const gguf_ctx *g, const char *key, double *out) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return false;
    gguf_vtype t = kv->val.type;
    if (t == GGUF_VT_FLOAT32 || t == GGUF_VT_FLOAT64) { *out = kv->val.v.f; return true; }
    if (is_int(t)) { *out = is_signed(t) ? (double)kv->val.v.i : (double)kv->val.v.u; return true; }
    mr_seterr("%s: %s has type %s, expected a number", g->path, key, gguf_vtype_name(t));
    return false;
}

bool gguf_get_bool(const gguf_ctx *g, const char *key, bool *out) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return false;
    if (kv->val.type == GGUF_VT_BOOL) { *out = kv->val.v.b; return true; }
    if (is_int(kv->val.type)) { *out = kv->val.v.u != 0; return true; }
    mr_seterr("%s: %s has type %s, expected bool", g->path, key, gguf_vtype_name(kv->val.type));
    return false;
}

const char *gguf_get_str(const gguf_ctx *g, const char *key) {
    const gguf_kv *kv = gguf_find(g, key);
    return kv && kv->val.type == GGUF_VT_STRING ? kv->val.v.str.s : NULL;
}

int64_t gguf_i64_or(const gguf_ctx *g, const char *key, int64_t def) {
    int64_t v;
    return gguf_get_i64(g, key, &v) ? v : def;
}

double gguf_f64_or(const gguf_ctx *g, const char *key, double def) {
    double v;
    return gguf_get_f64(g, key, &v) ? v : def;
}

static double arr_elem_f64(const gguf_value *v, uint64_t i) {
    const uint8_t *a = v->arr;
    switch (v->arr_type) {
    case GGUF_VT_UINT8: case GGUF_VT_BOOL: return a[i];
    case GGUF_VT_INT8: return (int8_t)a[i];
    case GGUF_VT_UINT16: { uint16_t x; memcpy(&x, a + 2 * i, 2); return x; }
    case GGUF_VT_INT16: { int16_t x; memcpy(&x, a + 2 * i, 2); return x; }
    case GGUF_VT_UINT32: { uint32_t x; memcpy(&x, a + 4 * i, 4); return x; }
    case GGUF_VT_INT32: { int32_t x; memcpy(&x, a + 4 * i, 4); return x; }
    case GGUF_VT_FLOAT32: { float x; memcpy(&x, a + 4 * i, 4); return x; }
    case GGUF_VT_UINT64: { uint64_t x; memcpy(&x, a + 8 * i, 8); return (double)x; }
    case GGUF_VT_INT64: { int64_t x; memcpy(&x, a + 8 * i, 8); return (double)x; }
    case GGUF_VT_FLOAT64: { double x; memcpy(&x, a + 8 * i, 8); return x; }
    default: return 0;
    }
}

static const gguf_value *num_array(const gguf_ctx *g, const char *key) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return NULL;
    if (kv->val.type != GGUF_VT_ARRAY || kv->val.arr_type == GGUF_VT_STRING || kv->val.arr_type == GGUF_VT_ARRAY) {
        mr_seterr("%s: %s is not a numeric array", g->path, key);
        return NULL;
    }
    return &kv->val;
}

int64_t gguf_get_arr_i64(const gguf_ctx *g, const char *key, int64_t *out, int64_t cap) {
    const gguf_value *v = num_array(g, key);
    if (!v) return -1;
    for (uint64_t i = 0; i < v->n && (int64_t)i < cap; i++) {
        if (v->arr_type == GGUF_VT_UINT64 || v->arr_type == GGUF_VT_INT64) memcpy(&out[i], (uint8_t *)v->arr + 8 * i, 8);
        else {
            /* float elements saturate (NaN -> 0): a plain cast of an out-of-range
             * double is undefined behaviour (found by fuzz_gguf) */
            double d = arr_elem_f64(v, i);
            out[i] = d != d ? 0 : d >= 9223372036854775807.0 ? INT64_MAX : d <= -9223372036854775808.0 ? INT64_MIN : (int64_t)d;
        }
    }
    return (int64_t)v->n;
}

int64_t gguf_get_arr_f64(const gguf_ctx *g, const char *key, double *out, int64_t cap) {
    const gguf_value *v = num_array(g, key);
    if (!v) return -1;
    for (uint64_t i = 0; i < v->n && (int64_t)i < cap; i++) out[i] = arr_elem_f64(v, i);
    return (int64_t)v->n;
}

char *gguf_value_str(const gguf_value *v, char *buf, size_t n) {
    switch (v->type) {
    case GGUF_VT_STRING: snprintf(buf, n, "%s", v->v.str.s); break;
    case GGUF_VT_FLOAT32: case GGUF_VT_FLOAT64: snprintf(buf, n, "%g", v->v.f); break;
    case GGUF_VT_BOOL: snprintf(buf, n, "%s", v->v.b ? "true" : "false"); break;
    case GGUF_VT_INT8: case GGUF_VT_INT16: case GGUF_VT_INT32: case GGUF_VT_INT64:
        snprintf(buf, n, "%lld", (long long)v->v.i); break;
    case GGUF_VT_ARRAY:
        if (v->n <= 8 && v->arr_type != GGUF_VT_STRING && v->arr_type != GGUF_VT_ARRAY) {
            size_t o = 0;
            o += (size_t)snprintf(buf + o, n - o, "[");
            for (uint64_t i = 0; i < v->n && o < n; i++)
                o += (size_t)snprintf(buf + o, n - o, "%s%g", i ? ", " : "", arr_elem_f64(v, i));
            if (o < n) snprintf(buf + o, n - o, "]");
        } else snprintf(buf, n, "[%llu %s]", (unsigned long long)v->n, gguf_vtype_name(v->arr_type));
        break;
    default: snprintf(buf, n, "%llu", (unsigned long long)v->v.u);
    }
    return buf;
}
