/*
 * gguf.h — GGUF v2/v3 reader (memory-mapped, split-aware) and writer.
 *
 * Every file is untrusted: the reader checks magic, version, counts, string
 * lengths, dims, type ids, offsets, alignment and sizes against the file size
 * before use, with overflow-safe arithmetic. A bad file gives one error naming
 * the file and what is wrong, e.g.
 *   "m.gguf: tensor 'blk.3.ffn_up.weight': data ends at byte 912 past end of file".
 *
 * Metadata is copied out of the mapping into owned memory at open (keys and
 * strings are NUL-terminated); tensor data pointers point into the mapping and
 * stay valid until gguf_close().
 *
 * Shapes follow GGUF: ne[0] is the innermost (contiguous) dimension, so a
 * matrix W with ne = {k, m} has m rows of k elements.
 */
#ifndef MR_GGUF_H
#define MR_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

typedef enum {
    GGUF_VT_UINT8 = 0,
    GGUF_VT_INT8 = 1,
    GGUF_VT_UINT16 = 2,
    GGUF_VT_INT16 = 3,
    GGUF_VT_UINT32 = 4,
    GGUF_VT_INT32 = 5,
    GGUF_VT_FLOAT32 = 6,
    GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8,
    GGUF_VT_ARRAY = 9,
    GGUF_VT_UINT64 = 10,
    GGUF_VT_INT64 = 11,
    GGUF_VT_FLOAT64 = 12,
    GGUF_VT_COUNT
} gguf_vtype;

typedef struct gguf_value gguf_value;

/* One metadata value. Scalars live in the union; arrays hold n elements of
 * type arr_type: numeric arrays as a packed native array in `arr` (uint8_t*,
 * int32_t*, float*, bool stored as uint8_t, ...), string arrays as char** in
 * `arr` (each NUL-terminated; `lens` holds byte lengths, strings may contain
 * NUL), nested arrays as gguf_value* in `arr`. */
struct gguf_value {
    gguf_vtype type;
    gguf_vtype arr_type;
    uint64_t n;
    union {
        uint64_t u;
        int64_t i;
        double f;
        bool b;
        struct { char *s; uint64_t len; } str;
    } v;
    void *arr;
    uint64_t *lens; /* string arrays only */
};

typedef struct {
    char *key;
    gguf_value val;
} gguf_kv;

typedef struct {
    char *name;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* unused dims are 1 */
    uint32_t type;             /* mr_type */
    uint64_t offset;           /* relative to its file's data section */
    uint64_t nbytes;
    int64_t nelem;
    const void *data; /* into the mapping (or the caller's buffer) */
    int split;        /* index of the file that holds it */
} gguf_tensor;

typedef struct {
    char *path;
    void *map;
    uint64_t size;
    bool owned_map; /* false for gguf_parse_buffer */
    bool in_memory; /* read into anonymous memory (--no-mmap), not mapped */
} gguf_part;

typedef struct {
    char *path; /* first file */
    uint32_t version;
    uint64_t alignment;
    uint64_t n_kv;
    gguf_kv *kv;
    uint64_t n_tensors;
    gguf_tensor *tensors;
    int n_parts;
    gguf_part *parts;
    uint64_t total_size; /* bytes of all parts */
    void *index;         /* name hash (private) */
} gguf_ctx;

/* Open a GGUF file; if its name is NAME-00001-of-0000N.gguf (or it carries
 * split.count > 1) the other parts are opened too and their tensors merged.
 * Returns NULL with mr_geterr() set on any problem. */
gguf_ctx *gguf_open(const char *path);
/* gguf_open, with read_into_memory: the parts are read into anonymous memory
 * (huge pages where possible, page cache dropped behind the reads) instead of
 * mapped: `--no-mmap`. */
gguf_ctx *gguf_open_ex(const char *path, bool read_into_memory);
/* For a model about to run from mapped parts: asks for huge pages and maps
 * every page now (MADV_POPULATE_READ, as llama.cpp's MAP_POPULATE), so tokens
 * do not pay page faults and the page tables stay small (2 MiB entries where
 * the page cache holds 2 MiB folios). Skipped when the parts do not fit in the
 * memory available (the kernel then streams them as usual). Advice only:
 * returns the bytes populated. */
uint64_t gguf_prefault(gguf_ctx *g);
/* Parse a GGUF image held in memory (for fuzzing and tests; not split-aware).
 * The buffer must outlive the context. */
gguf_ctx *gguf_parse_buffer(const void *buf, uint64_t size, const char *name);
void gguf_close(gguf_ctx *g);

/* Metadata lookup: NULL if absent. */
const gguf_kv *gguf_find(const gguf_ctx *g, const char *key);
/* Typed getters: return true and set *out when the key exists and converts
 * losslessly (any integer type to int64 within range, any number to double);
 * false when absent. On a present key of the wrong type they also return
 * false and set mr_geterr(); use gguf_find() to tell the two apart. */
bool gguf_get_i64(const gguf_ctx *g, const char *key, int64_t *out);
bool gguf_get_f64(const gguf_ctx *g, const char *key, double *out);
bool gguf_get_bool(const gguf_ctx *g, const char *key, bool *out);
const char *gguf_get_str(const gguf_ctx *g, const char *key); /* NULL if absent/not string */
/* Convenience with defaults. */
int64_t gguf_i64_or(const gguf_ctx *g, const char *key, int64_t def);
double gguf_f64_or(const gguf_ctx *g, const char *key, double def);
/* Array as int64 / double values (numeric arrays only); returns element
 * count or -1; fills at most cap entries. */
int64_t gguf_get_arr_i64(const gguf_ctx *g, const char *key, int64_t *out, int64_t cap);
int64_t gguf_get_arr_f64(const gguf_ctx *g, const char *key, double *out, int64_t cap);

const gguf_tensor *gguf_tensor_find(const gguf_ctx *g, const char *name);

const char *gguf_vtype_name(gguf_vtype t);
/* Value rendered for display ("[151936 strings]" for big arrays); returns buf. */
char *gguf_value_str(const gguf_value *v, char *buf, size_t n);

/* ---- writer -------------------------------------------------------------- */
/* Streaming writer: add all metadata and tensor descriptions first, then
 * gguf_writer_begin_data() writes the header, and the data of each tensor is
 * written in the order added with gguf_writer_write_data() (any number of
 * calls per tensor, summing to its size). Padding is inserted automatically. */
typedef struct gguf_writer gguf_writer;
gguf_writer *gguf_writer_new(const char *path);
void gguf_writer_set_alignment(gguf_writer *w, uint32_t align);
int gguf_writer_kv_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_kv_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_writer_kv_u64(gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_kv_f32(gguf_writer *w, const char *key, float v);
int gguf_writer_kv_bool(gguf_writer *w, const char *key, bool v);
int gguf_writer_kv_str(gguf_writer *w, const char *key, const char *v);
/* Numeric array (type one of the scalar vtypes, data packed natively). */
int gguf_writer_kv_arr(gguf_writer *w, const char *key, gguf_vtype type, const void *data, uint64_t n);
int gguf_writer_kv_arr_str(gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
/* Copy a key/value from a reader (used to transplant a vocabulary). */
int gguf_writer_kv_copy(gguf_writer *w, const gguf_kv *kv);
int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne);
int gguf_writer_begin_data(gguf_writer *w);
int gguf_writer_write_data(gguf_writer *w, const void *data, uint64_t n);
/* Finishes (checks all data was written), closes, frees. Returns 0 on success. */
int gguf_writer_close(gguf_writer *w);
void gguf_writer_abort(gguf_writer *w); /* close and delete the partial file (regular files only) */
/* Size in bytes the finished file will have (header, padding and all tensor
 * data), from the metadata and tensors added so far; no data need be written
 * (used by `moerun synth --dry-run`). */
uint64_t gguf_writer_file_size(const gguf_writer *w);

#endif
