/* jsonv.c: strict JSON on top of cJSON (see jsonv.h).
 *
 * How it works: cJSON parses first (its own nesting limit bounds its
 * recursion).  Then a flat, non-recursive scanner walks the same text and
 * notes, for every value in document order, the line it starts on and,
 * for numbers, the span of its source text.  A preorder walk of the cJSON
 * tree visits values in the same document order, so the i-th value seen by
 * the scanner is the i-th node of the walk.  The pairs are sorted by node
 * pointer so getters find a node's line and number text by binary search.
 *
 * Rejected: a depth above max_depth (checked by the scanner with a counter,
 * so the limit holds whatever cJSON allows), "\u0000" escapes, raw bytes
 * that are not valid UTF-8, and integers that are not plain digit strings. */
#include "base/jsonv.h"
#include "base/bd.h"
#include "base/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct jsonv_node {
    const cJSON *item; /* the cJSON node this describes */
    unsigned line;     /* 1-based line where the value starts */
    unsigned num_off;  /* for numbers: offset of the source text */
    unsigned num_len;  /* for numbers: its length; 0 for other values */
};

static void set_err(struct jsonv_doc *doc, const char *fmt, ...) BD_PRINTF(2, 3);
static void set_err(struct jsonv_doc *doc, const char *fmt, ...)
{
    if (doc->err[0]) return; /* keep the first error */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(doc->err, sizeof(doc->err), fmt, ap);
    va_end(ap);
}

static void line_col(const char *text, size_t pos, unsigned *line, unsigned *col)
{
    unsigned l = 1, c = 1;
    for (size_t i = 0; i < pos && text[i]; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

/* Validate one UTF-8 sequence at P (N bytes left); returns its length or 0. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    if (p[0] < 0x80) return 1;
    size_t len;
    uint32_t cp;
    if ((p[0] & 0xe0) == 0xc0) {
        len = 2;
        cp = p[0] & 0x1f;
    } else if ((p[0] & 0xf0) == 0xe0) {
        len = 3;
        cp = p[0] & 0x0f;
    } else if ((p[0] & 0xf8) == 0xf0) {
        len = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0; /* overlong, out of range, or a surrogate */
    return len;
}

/* Scan the string starting at the quote at text[*i]; leave *i after the
 * closing quote.  Returns 0 or -EINVAL. */
static int scan_string(struct jsonv_doc *doc, const char *text, size_t len, size_t *i)
{
    size_t p = *i + 1;
    while (p < len && text[p] != '"') {
        if (text[p] == '\\') {
            if (p + 5 < len && text[p + 1] == 'u' && strncmp(text + p + 2, "0000", 4) == 0) {
                unsigned l, c;
                line_col(text, p, &l, &c);
                set_err(doc, "%s:%u:%u: a string contains \\u0000", doc->source, l, c);
                return -EINVAL;
            }
            p += 2;
            continue;
        }
        size_t s = utf8_seq((const unsigned char *)text + p, len - p);
        if (s == 0) {
            unsigned l, c;
            line_col(text, p, &l, &c);
            set_err(doc, "%s:%u:%u: a string is not valid UTF-8", doc->source, l, c);
            return -EINVAL;
        }
        p += s;
    }
    *i = p + 1;
    return 0;
}

static int cmp_node(const void *a, const void *b)
{
    const struct jsonv_node *x = a, *y = b;
    return x->item < y->item ? -1 : x->item > y->item;
}

/* Preorder walk of the cJSON tree, pairing nodes with scanned values. */
static void pair_nodes(struct jsonv_doc *doc, const cJSON *item, size_t *k)
{
    /* Iterative with parent links would need a stack; depth is already
     * bounded by max_depth, so recursion here is bounded too. */
    if (*k < doc->n_nodes) doc->nodes[*k].item = item;
    (*k)++;
    if (cJSON_IsObject(item) || cJSON_IsArray(item))
        for (const cJSON *c = item->child; c; c = c->next) pair_nodes(doc, c, k);
}

static size_t count_nodes(const cJSON *item)
{
    size_t n = 1;
    if (cJSON_IsObject(item) || cJSON_IsArray(item))
        for (const cJSON *c = item->child; c; c = c->next) n += count_nodes(c);
    return n;
}

int jsonv_parse(struct jsonv_doc *doc, const char *source, const char *text, size_t len,
                unsigned max_depth)
{
    memset(doc, 0, sizeof(*doc));
    doc->source = source;
    if (memchr(text, 0, len)) {
        set_err(doc, "%s: contains a NUL byte", source);
        return -EINVAL;
    }
    if (len > UINT32_MAX / 2) {
        set_err(doc, "%s: too large", source);
        return -EINVAL;
    }
    doc->text = malloc(len + 1);
    if (!doc->text) {
        set_err(doc, "%s: out of memory", source);
        return -ENOMEM;
    }
    memcpy(doc->text, text, len);
    doc->text[len] = 0;

    /* Pass 1: depth, strings and value positions, without recursion. */
    enum { EXPECT_VALUE, EXPECT_KEY, OTHER } state = EXPECT_VALUE;
    char stack[64];
    unsigned depth = 0;
    size_t cap = 64, n = 0;
    struct jsonv_node *nodes = malloc(cap * sizeof(*nodes));
    if (!nodes) {
        set_err(doc, "%s: out of memory", source);
        return -ENOMEM;
    }
    unsigned line = 1;
    size_t i = 0;
    int rc = 0;
    while (i < len && rc == 0) {
        char c = doc->text[i];
        if (c == '\n') {
            line++;
            i++;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r') {
            i++;
            continue;
        }
        bool is_value = false;
        if (c == '"' && state == EXPECT_KEY) {
            rc = scan_string(doc, doc->text, len, &i);
            state = OTHER;
            continue;
        }
        if (c == '{' || c == '[' || c == '"' || c == '-' || (c >= '0' && c <= '9') || c == 't' ||
            c == 'f' || c == 'n')
            is_value = state == EXPECT_VALUE;
        if (is_value) {
            if (n == cap) {
                cap *= 2;
                struct jsonv_node *nn = realloc(nodes, cap * sizeof(*nodes));
                if (!nn) {
                    rc = -ENOMEM;
                    break;
                }
                nodes = nn;
            }
            nodes[n].item = NULL;
            nodes[n].line = line;
            nodes[n].num_off = 0;
            nodes[n].num_len = 0;
            n++;
        }
        switch (c) {
        case '{':
        case '[':
            if (depth >= max_depth || depth >= sizeof(stack)) {
                unsigned l, col;
                line_col(doc->text, i, &l, &col);
                set_err(doc, "%s:%u:%u: nested deeper than %u levels", source, l, col,
                        max_depth < sizeof(stack) ? max_depth : (unsigned)sizeof(stack));
                rc = -EINVAL;
                break;
            }
            stack[depth++] = c;
            state = c == '{' ? EXPECT_KEY : EXPECT_VALUE;
            i++;
            break;
        case '}':
        case ']':
            if (depth) depth--;
            state = OTHER;
            i++;
            break;
        case ',':
            state = depth && stack[depth - 1] == '{' ? EXPECT_KEY : EXPECT_VALUE;
            i++;
            break;
        case ':':
            state = EXPECT_VALUE;
            i++;
            break;
        case '"':
            rc = scan_string(doc, doc->text, len, &i);
            state = OTHER;
            break;
        default: {
            size_t start = i;
            while (i < len && !strchr(" \t\r\n,]}:", doc->text[i])) i++;
            if (is_value && (c == '-' || (c >= '0' && c <= '9'))) {
                nodes[n - 1].num_off = (unsigned)start;
                nodes[n - 1].num_len = (unsigned)(i - start);
            }
            state = OTHER;
            if (i == start) i++; /* a stray character: let cJSON report it */
            break;
        }
        }
    }
    doc->nodes = nodes;
    doc->n_nodes = n;
    if (rc < 0) {
        if (rc == -ENOMEM) set_err(doc, "%s: out of memory", source);
        return rc;
    }

    /* Pass 2: cJSON builds the tree; it rejects what the scanner tolerated. */
    const char *end = NULL;
    doc->root = cJSON_ParseWithLengthOpts(doc->text, len + 1, &end, true);
    if (!doc->root) {
        const char *ep = cJSON_GetErrorPtr();
        size_t pos = ep && ep >= doc->text && ep <= doc->text + len ? (size_t)(ep - doc->text) : 0;
        unsigned l, col;
        line_col(doc->text, pos, &l, &col);
        bool only_ws = true;
        for (size_t k = 0; k < len; k++)
            if (!strchr(" \t\r\n", doc->text[k])) only_ws = false;
        if (only_ws) set_err(doc, "%s: empty, expected a JSON object", source);
        else set_err(doc, "%s:%u:%u: invalid JSON", source, l, col);
        return -EINVAL;
    }
    if (count_nodes(doc->root) != n) {
        set_err(doc, "%s: invalid JSON", source);
        return -EINVAL;
    }
    size_t k = 0;
    pair_nodes(doc, doc->root, &k);
    qsort(doc->nodes, n, sizeof(*doc->nodes), cmp_node);
    return 0;
}

void jsonv_free(struct jsonv_doc *doc)
{
    if (doc->root) cJSON_Delete(doc->root);
    free(doc->nodes);
    free(doc->text);
    doc->root = NULL;
    doc->nodes = NULL;
    doc->text = NULL;
}

static const struct jsonv_node *find_node(const struct jsonv_doc *doc, const cJSON *item)
{
    struct jsonv_node key = {.item = item};
    if (!doc->nodes) return NULL;
    return bsearch(&key, doc->nodes, doc->n_nodes, sizeof(key), cmp_node);
}

unsigned jsonv_line(const struct jsonv_doc *doc, const cJSON *node)
{
    const struct jsonv_node *jn = find_node(doc, node);
    return jn ? jn->line : 0;
}

static void vfail(struct jsonv_doc *doc, const cJSON *node, const char *path, const char *fmt,
                  va_list ap)
{
    if (doc->err[0]) return;
    char msg[300];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    unsigned line = node ? jsonv_line(doc, node) : 0;
    if (line) snprintf(doc->err, sizeof(doc->err), "%s:%u: %s: %s", doc->source, line, path, msg);
    else snprintf(doc->err, sizeof(doc->err), "%s: %s: %s", doc->source, path, msg);
}

int jsonv_fail(struct jsonv_doc *doc, const cJSON *node, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(doc, node, path, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* Join PATH and KEY as "path.key" (or "key" at the top). */
static const char *join(char *buf, size_t len, const char *path, const char *key)
{
    if (path && *path) snprintf(buf, len, "%s.%s", path, key);
    else snprintf(buf, len, "%s", key);
    return buf;
}

/* Quote at most 80 bytes of untrusted text in messages. */
static const char *clip(const char *s, char *buf, size_t len)
{
    size_t n = strlen(s);
    if (n <= 80) {
        snprintf(buf, len, "%s", s);
    } else {
        snprintf(buf, len, "%.80s...", s);
    }
    for (char *p = buf; *p; p++)
        if ((unsigned char)*p < 0x20) *p = '?';
    return buf;
}

static const char *type_name(const cJSON *n)
{
    if (cJSON_IsNull(n)) return "null";
    if (cJSON_IsBool(n)) return "a boolean";
    if (cJSON_IsNumber(n)) return "a number";
    if (cJSON_IsString(n)) return "a string";
    if (cJSON_IsArray(n)) return "an array";
    if (cJSON_IsObject(n)) return "an object";
    return "an invalid value";
}

int jsonv_check_keys(struct jsonv_doc *doc, const cJSON *obj, const char *path,
                     const char *const *allowed)
{
    if (!cJSON_IsObject(obj))
        return jsonv_fail(doc, obj, path && *path ? path : "(top)", "expected an object, got %s",
                          type_name(obj));
    char p[256], q[128];
    for (const cJSON *c = obj->child; c; c = c->next) {
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, c->string) == 0) ok = true;
        if (!ok)
            return jsonv_fail(doc, c, join(p, sizeof(p), path, clip(c->string, q, sizeof(q))),
                              "unknown key");
        for (const cJSON *d = obj->child; d != c; d = d->next)
            if (strcmp(d->string, c->string) == 0)
                return jsonv_fail(doc, c, join(p, sizeof(p), path, clip(c->string, q, sizeof(q))),
                                  "duplicate key (first on line %u)", jsonv_line(doc, d));
    }
    return 0;
}

static const cJSON *member(const cJSON *obj, const char *key)
{
    for (const cJSON *c = obj ? obj->child : NULL; c; c = c->next)
        if (c->string && strcmp(c->string, key) == 0) return c;
    return NULL;
}

int jsonv_as_u64(struct jsonv_doc *doc, const cJSON *node, const char *path, uint64_t min,
                 uint64_t max, uint64_t *out)
{
    if (!cJSON_IsNumber(node))
        return jsonv_fail(doc, node, path, "expected an integer in [%llu, %llu], got %s",
                          (unsigned long long)min, (unsigned long long)max, type_name(node));
    const struct jsonv_node *jn = find_node(doc, node);
    char raw[64] = "";
    if (jn && jn->num_len && jn->num_len < sizeof(raw)) {
        memcpy(raw, doc->text + jn->num_off, jn->num_len);
        raw[jn->num_len] = 0;
    }
    uint64_t v;
    int rc = util_parse_u64(raw, &v);
    if (rc < 0 || v < min || v > max)
        return jsonv_fail(doc, node, path, "expected an integer in [%llu, %llu], got %s",
                          (unsigned long long)min, (unsigned long long)max,
                          raw[0] ? raw : "a number too long to show");
    *out = v;
    return 0;
}

int jsonv_get_u64(struct jsonv_doc *doc, const cJSON *obj, const char *path, const char *key,
                  bool required, uint64_t min, uint64_t max, uint64_t *out)
{
    char p[256];
    const cJSON *n = member(obj, key);
    if (!n) {
        if (!required) return 1;
        return jsonv_fail(doc, obj, join(p, sizeof(p), path, key), "required key is missing");
    }
    return jsonv_as_u64(doc, n, join(p, sizeof(p), path, key), min, max, out);
}

int jsonv_get_size(struct jsonv_doc *doc, const cJSON *obj, const char *path, const char *key,
                   bool required, uint64_t min, uint64_t max, uint64_t *out)
{
    char p[256], q[128];
    const cJSON *n = member(obj, key);
    if (!n) {
        if (!required) return 1;
        return jsonv_fail(doc, obj, join(p, sizeof(p), path, key), "required key is missing");
    }
    join(p, sizeof(p), path, key);
    if (cJSON_IsNumber(n)) return jsonv_as_u64(doc, n, p, min, max, out);
    if (!cJSON_IsString(n))
        return jsonv_fail(doc, n, p, "expected a size (bytes, or a string like \"64M\"), got %s",
                          type_name(n));
    uint64_t v;
    if (util_parse_size(n->valuestring, &v) < 0 || v < min || v > max)
        return jsonv_fail(doc, n, p, "expected a size in [%llu, %llu] bytes, got \"%s\"",
                          (unsigned long long)min, (unsigned long long)max,
                          clip(n->valuestring, q, sizeof(q)));
    *out = v;
    return 0;
}

int jsonv_get_str(struct jsonv_doc *doc, const cJSON *obj, const char *path, const char *key,
                  bool required, size_t min, size_t max, const char **out)
{
    char p[256];
    const cJSON *n = member(obj, key);
    if (!n) {
        if (!required) return 1;
        return jsonv_fail(doc, obj, join(p, sizeof(p), path, key), "required key is missing");
    }
    join(p, sizeof(p), path, key);
    if (!cJSON_IsString(n)) return jsonv_fail(doc, n, p, "expected a string, got %s", type_name(n));
    size_t len = strlen(n->valuestring);
    if (len < min || len > max)
        return jsonv_fail(doc, n, p, "expected a string of %zu to %zu bytes, got %zu", min, max,
                          len);
    for (const char *s = n->valuestring; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return jsonv_fail(doc, n, p, "control characters are not allowed");
    *out = n->valuestring;
    return 0;
}

int jsonv_get_bool(struct jsonv_doc *doc, const cJSON *obj, const char *path, const char *key,
                   bool required, bool *out)
{
    char p[256];
    const cJSON *n = member(obj, key);
    if (!n) {
        if (!required) return 1;
        return jsonv_fail(doc, obj, join(p, sizeof(p), path, key), "required key is missing");
    }
    if (!cJSON_IsBool(n))
        return jsonv_fail(doc, n, join(p, sizeof(p), path, key), "expected true or false, got %s",
                          type_name(n));
    *out = cJSON_IsTrue(n);
    return 0;
}

int jsonv_get_enum(struct jsonv_doc *doc, const cJSON *obj, const char *path, const char *key,
                   bool required, const char *const *names, int *out)
{
    const char *s = NULL;
    int rc = jsonv_get_str(doc, obj, path, key, required, 0, 4096, &s);
    if (rc != 0) return rc;
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], s) == 0) {
            *out = i;
            return 0;
        }
    char p[256], want[256] = "", q[128];
    for (int i = 0; names[i]; i++) {
        size_t l = strlen(want);
        snprintf(want + l, sizeof(want) - l, "%s\"%s\"", i ? ", " : "", names[i]);
    }
    return jsonv_fail(doc, member(obj, key), join(p, sizeof(p), path, key),
                      "expected one of %s, got \"%s\"", want, clip(s, q, sizeof(q)));
}

int jsonv_get_array(struct jsonv_doc *doc, const cJSON *obj, const char *path, const char *key,
                    bool required, size_t min_items, size_t max_items, const cJSON **out)
{
    char p[256];
    const cJSON *n = member(obj, key);
    if (!n) {
        if (!required) return 1;
        return jsonv_fail(doc, obj, join(p, sizeof(p), path, key), "required key is missing");
    }
    join(p, sizeof(p), path, key);
    if (!cJSON_IsArray(n)) return jsonv_fail(doc, n, p, "expected an array, got %s", type_name(n));
    size_t cnt = (size_t)cJSON_GetArraySize(n);
    if (cnt < min_items || cnt > max_items)
        return jsonv_fail(doc, n, p, "expected %zu to %zu items, got %zu", min_items, max_items,
                          cnt);
    *out = n;
    return 0;
}

int jsonv_get_object(struct jsonv_doc *doc, const cJSON *obj, const char *path, const char *key,
                     bool required, const cJSON **out)
{
    char p[256];
    const cJSON *n = member(obj, key);
    if (!n) {
        if (!required) return 1;
        return jsonv_fail(doc, obj, join(p, sizeof(p), path, key), "required key is missing");
    }
    if (!cJSON_IsObject(n))
        return jsonv_fail(doc, n, join(p, sizeof(p), path, key), "expected an object, got %s",
                          type_name(n));
    *out = n;
    return 0;
}
