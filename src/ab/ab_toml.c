/*
 * ab_toml.c — a small hand parser for the TOML subset that ab plans use
 * (Debian ships no TOML library for C), producing the same JSON object a
 * PLAN.json would hold so both go through one validation path.
 *
 * Supported: comments, key = value with bare / "quoted" / 'literal' keys and
 * dotted keys, [table] and [a.b] headers, [[array.of.tables]], basic strings
 * with escapes (\b \t \n \f \r \" \\ \uXXXX \UXXXXXXXX), literal strings,
 * integers (with _ separators, 0x/0o/0b), floats (fraction, exponent, inf,
 * nan), booleans, arrays (nested, multi-line, trailing comma, comments) and
 * inline tables. Not supported (error naming the position): multi-line
 * strings, dates and times.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ab/ab.h"
#include "base/base.h"

typedef struct {
    const char *s;
    size_t i;
    int line;
    size_t line_start;
    const char *fname;
    bool err;
} tp;

static void terr(tp *t, const char *msg, const char *arg) {
    if (t->err) return;
    t->err = true;
    mr_seterr("%s:%d:%d: %s%s%s", t->fname ? t->fname : "toml", t->line, (int)(t->i - t->line_start) + 1, msg,
              arg ? " " : "", arg ? arg : "");
}

static char peek(tp *t) { return t->s[t->i]; }

static void skip_ws(tp *t) {
    while (peek(t) == ' ' || peek(t) == '\t') t->i++;
}

static void skip_comment(tp *t) {
    if (peek(t) == '#')
        while (peek(t) && peek(t) != '\n') t->i++;
}

static void newline(tp *t) {
    if (peek(t) == '\r' && t->s[t->i + 1] == '\n') t->i++;
    if (peek(t) == '\n') {
        t->i++;
        t->line++;
        t->line_start = t->i;
    }
}

/* Whitespace, comments and newlines (inside arrays and between statements). */
static void skip_all(tp *t) {
    for (;;) {
        skip_ws(t);
        skip_comment(t);
        if (peek(t) == '\n' || (peek(t) == '\r' && t->s[t->i + 1] == '\n')) newline(t);
        else return;
    }
}

static void put_utf8(ab_buf *b, unsigned long cp) {
    char u[4];
    int n;
    if (cp < 0x80) u[0] = (char)cp, n = 1;
    else if (cp < 0x800) u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 63)), n = 2;
    else if (cp < 0x10000)
        u[0] = (char)(0xE0 | (cp >> 12)), u[1] = (char)(0x80 | ((cp >> 6) & 63)), u[2] = (char)(0x80 | (cp & 63)), n = 3;
    else
        u[0] = (char)(0xF0 | (cp >> 18)), u[1] = (char)(0x80 | ((cp >> 12) & 63)),
        u[2] = (char)(0x80 | ((cp >> 6) & 63)), u[3] = (char)(0x80 | (cp & 63)), n = 4;
    ab_putn(b, u, (size_t)n);
}

/* A "basic" or 'literal' single-line string; returns malloc'd text. */
static char *parse_string(tp *t) {
    char q = peek(t);
    if (t->s[t->i + 1] == q && t->s[t->i + 2] == q) {
        terr(t, "multi-line strings (\"\"\" or ''') are not supported; use a single-line string with \\n", NULL);
        return NULL;
    }
    t->i++;
    ab_buf b = {0};
    ab_puts(&b, "");
    for (;;) {
        char c = peek(t);
        if (!c || c == '\n') {
            terr(t, "unterminated string", NULL);
            ab_buf_free(&b);
            return NULL;
        }
        t->i++;
        if (c == q) break;
        if (c == '\\' && q == '"') {
            char e = peek(t);
            t->i++;
            switch (e) {
            case 'b': ab_puts(&b, "\b"); break;
            case 't': ab_puts(&b, "\t"); break;
            case 'n': ab_puts(&b, "\n"); break;
            case 'f': ab_puts(&b, "\f"); break;
            case 'r': ab_puts(&b, "\r"); break;
            case '"': ab_puts(&b, "\""); break;
            case '\\': ab_puts(&b, "\\"); break;
            case 'u':
            case 'U': {
                int k = e == 'u' ? 4 : 8;
                unsigned long cp = 0;
                for (int j = 0; j < k; j++) {
                    char h = peek(t);
                    if (!isxdigit((unsigned char)h)) {
                        terr(t, "bad \\u escape", NULL);
                        ab_buf_free(&b);
                        return NULL;
                    }
                    cp = cp * 16 + (unsigned long)(isdigit((unsigned char)h) ? h - '0' : (tolower(h) - 'a' + 10));
                    t->i++;
                }
                if (cp == 0) { /* a NUL would silently cut the C string there */
                    terr(t, "\\u0000 (NUL) is not allowed in plan strings", NULL);
                    ab_buf_free(&b);
                    return NULL;
                }
                if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
                    terr(t, "\\u escape is not a Unicode scalar value", NULL);
                    ab_buf_free(&b);
                    return NULL;
                }
                put_utf8(&b, cp);
                break;
            }
            default:
                t->i--;
                terr(t, "unknown escape in string", NULL);
                ab_buf_free(&b);
                return NULL;
            }
            continue;
        }
        ab_putn(&b, &c, 1);
    }
    return ab_buf_take(&b);
}

static bool is_bare(char c) { return isalnum((unsigned char)c) || c == '_' || c == '-'; }

/* One key part (bare or quoted). */
static char *parse_key_part(tp *t) {
    skip_ws(t);
    char c = peek(t);
    if (c == '"' || c == '\'') {
        char *k = parse_string(t);
        json_t *chk = k ? json_string(k) : NULL; /* jansson keys must be valid UTF-8 */
        if (k && !chk) {
            terr(t, "key is not valid UTF-8", NULL);
            free(k);
            return NULL;
        }
        json_decref(chk);
        return k;
    }
    size_t st = t->i;
    while (is_bare(peek(t))) t->i++;
    if (t->i == st) {
        terr(t, "expected a key", NULL);
        return NULL;
    }
    char *k = mr_malloc(t->i - st + 1);
    if (!k) return NULL;
    memcpy(k, t->s + st, t->i - st);
    k[t->i - st] = 0;
    return k;
}

/* A dotted key into parts (max 16). Returns the count, -1 on error. */
static int parse_key(tp *t, char **parts) {
    int n = 0;
    for (;;) {
        if (n == 16) {
            terr(t, "key has too many dotted parts", NULL);
            for (int i = 0; i < n; i++) free(parts[i]);
            return -1;
        }
        char *p = parse_key_part(t);
        if (!p) {
            for (int i = 0; i < n; i++) free(parts[i]);
            return -1;
        }
        parts[n++] = p;
        skip_ws(t);
        if (peek(t) != '.') return n;
        t->i++;
    }
}

static void free_parts(char **parts, int n) {
    for (int i = 0; i < n; i++) free(parts[i]);
}

/* The table at key `k` of obj, created if absent; for an array of tables, its
 * last element. NULL (error) when k holds another value. */
static json_t *sub_table(tp *t, json_t *obj, const char *k) {
    json_t *v = json_object_get(obj, k);
    if (!v) {
        v = json_object();
        if (json_object_set_new(obj, k, v) < 0) { /* v is freed */
            terr(t, "cannot create table", k);
            return NULL;
        }
        return v;
    }
    if (json_is_object(v)) return v;
    if (json_is_array(v) && json_array_size(v) && json_is_object(json_array_get(v, json_array_size(v) - 1)))
        return json_array_get(v, json_array_size(v) - 1);
    terr(t, "key is already a value, not a table:", k);
    return NULL;
}

static json_t *parse_value(tp *t, int depth);

static json_t *parse_number(tp *t) {
    size_t st = t->i;
    char buf[128];
    int n = 0;
    bool is_float = false;
    while (peek(t) && (isalnum((unsigned char)peek(t)) || strchr("+-._:", peek(t)))) {
        char c = peek(t);
        if (c == ':' || ((c == 'T' || c == 'Z') && n >= 4)) {
            terr(t, "dates and times are not supported", NULL);
            return NULL;
        }
        if (c != '_') {
            if (n >= (int)sizeof buf - 1) break;
            buf[n++] = c;
        }
        t->i++;
    }
    buf[n] = 0;
    if (n == 0) {
        terr(t, "expected a value (string, number, true/false, [array] or {table})", NULL);
        return NULL;
    }
    if (!strcmp(buf, "true")) return json_true();
    if (!strcmp(buf, "false")) return json_false();
    const char *u = buf + (buf[0] == '+' || buf[0] == '-');
    if (!strcmp(u, "inf") || !strcmp(u, "nan")) {
        t->i = st;
        terr(t, "inf and nan are not valid in plans", NULL);
        return NULL;
    }
    if (n >= 5 && isdigit((unsigned char)buf[0]) && buf[4] == '-' && isdigit((unsigned char)buf[3])) {
        t->i = st;
        terr(t, "dates and times are not supported", NULL);
        return NULL;
    }
    int base = 10;
    const char *digits = buf;
    if (buf[0] == '0' && (buf[1] == 'x' || buf[1] == 'o' || buf[1] == 'b')) {
        base = buf[1] == 'x' ? 16 : buf[1] == 'o' ? 8 : 2;
        digits = buf + 2;
    } else if (strpbrk(buf, ".eE")) is_float = true;
    char *end;
    errno = 0;
    if (is_float) {
        double d = strtod(buf, &end);
        if (*end || errno) goto bad;
        return json_real(d);
    }
    long long v = strtoll(digits, &end, base);
    if (*end || errno || end == digits) goto bad;
    return json_integer(v);
bad:
    t->i = st;
    terr(t, "not a number or known value:", buf);
    return NULL;
}

static json_t *parse_array(tp *t, int depth) {
    t->i++; /* [ */
    json_t *a = json_array();
    for (;;) {
        skip_all(t);
        if (peek(t) == ']') {
            t->i++;
            return a;
        }
        json_t *v = parse_value(t, depth + 1);
        if (!v) {
            json_decref(a);
            return NULL;
        }
        json_array_append_new(a, v);
        skip_all(t);
        if (peek(t) == ',') {
            t->i++;
            continue;
        }
        if (peek(t) == ']') {
            t->i++;
            return a;
        }
        terr(t, "expected ',' or ']' in array", NULL);
        json_decref(a);
        return NULL;
    }
}

/* key = value into obj (dotted keys create sub-tables). */
static int parse_keyval(tp *t, json_t *obj, int depth) {
    char *parts[16];
    int n = parse_key(t, parts);
    if (n < 0) return -1;
    json_t *tab = obj;
    for (int i = 0; i < n - 1 && tab; i++) tab = sub_table(t, tab, parts[i]);
    if (!tab) {
        free_parts(parts, n);
        return -1;
    }
    skip_ws(t);
    if (peek(t) != '=') {
        terr(t, "expected '=' after key", parts[n - 1]);
        free_parts(parts, n);
        return -1;
    }
    t->i++;
    skip_ws(t);
    if (json_object_get(tab, parts[n - 1])) {
        terr(t, "duplicate key", parts[n - 1]);
        free_parts(parts, n);
        return -1;
    }
    json_t *v = parse_value(t, depth);
    if (!v) {
        free_parts(parts, n);
        return -1;
    }
    if (json_object_set_new(tab, parts[n - 1], v) < 0) {
        terr(t, "cannot set key", parts[n - 1]);
        free_parts(parts, n);
        return -1;
    }
    free_parts(parts, n);
    return 0;
}

static json_t *parse_inline_table(tp *t, int depth) {
    t->i++; /* { */
    json_t *o = json_object();
    skip_ws(t);
    if (peek(t) == '}') {
        t->i++;
        return o;
    }
    for (;;) {
        skip_ws(t);
        if (parse_keyval(t, o, depth + 1) < 0) {
            json_decref(o);
            return NULL;
        }
        skip_ws(t);
        if (peek(t) == ',') {
            t->i++;
            continue;
        }
        if (peek(t) == '}') {
            t->i++;
            return o;
        }
        terr(t, "expected ',' or '}' in inline table", NULL);
        json_decref(o);
        return NULL;
    }
}

static json_t *parse_value(tp *t, int depth) {
    if (depth > 32) {
        terr(t, "values nested too deeply", NULL);
        return NULL;
    }
    char c = peek(t);
    if (c == '"' || c == '\'') {
        char *s = parse_string(t);
        if (!s) return NULL;
        json_t *j = json_string(s);
        if (!j) terr(t, "string is not valid UTF-8", NULL);
        free(s);
        return j;
    }
    if (c == '[') return parse_array(t, depth);
    if (c == '{') return parse_inline_table(t, depth);
    return parse_number(t);
}

/* [a.b] or [[a.b]]: the table further key/values go into. */
static json_t *parse_header(tp *t, json_t *root) {
    bool arr = t->s[t->i + 1] == '[';
    t->i += arr ? 2 : 1;
    char *parts[16];
    int n = parse_key(t, parts);
    if (n < 0) return NULL;
    skip_ws(t);
    if (peek(t) != ']' || (arr && t->s[t->i + 1] != ']')) {
        terr(t, arr ? "expected ']]'" : "expected ']'", NULL);
        free_parts(parts, n);
        return NULL;
    }
    t->i += arr ? 2 : 1;
    json_t *tab = root;
    for (int i = 0; i < n - 1 && tab; i++) tab = sub_table(t, tab, parts[i]);
    json_t *res = NULL;
    if (tab) {
        const char *k = parts[n - 1];
        json_t *v = json_object_get(tab, k);
        if (arr) {
            if (!v) {
                v = json_array();
                if (json_object_set_new(tab, k, v) < 0) v = NULL; /* freed */
            }
            if (!v) terr(t, "cannot create array of tables", k);
            else if (!json_is_array(v)) terr(t, "key is not an array of tables:", k);
            else {
                res = json_object();
                if (json_array_append_new(v, res) < 0) {
                    res = NULL;
                    terr(t, "cannot add a table to", k);
                }
            }
        } else {
            if (!v) {
                res = json_object();
                if (json_object_set_new(tab, k, res) < 0) {
                    res = NULL; /* freed */
                    terr(t, "cannot create table", k);
                }
            } else if (json_is_object(v)) res = v;
            else terr(t, "key is already a value, not a table:", k);
        }
    }
    free_parts(parts, n);
    return res;
}

json_t *ab_toml_parse(const char *text, const char *fname) {
    tp t = {.s = text, .line = 1, .fname = fname};
    json_t *root = json_object(), *cur = root;
    for (;;) {
        skip_all(&t);
        if (!peek(&t)) break;
        if (peek(&t) == '[') cur = parse_header(&t, root);
        else if (parse_keyval(&t, cur, 0) < 0) cur = NULL;
        if (!cur) break;
        skip_ws(&t);
        skip_comment(&t);
        if (peek(&t) && peek(&t) != '\n' && peek(&t) != '\r') {
            terr(&t, "expected the end of the line", NULL);
            break;
        }
    }
    if (t.err) {
        json_decref(root);
        return NULL;
    }
    return root;
}
