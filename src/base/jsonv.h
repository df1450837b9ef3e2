/* jsonv.h: strict JSON input for config files and admin HTTP bodies.
 *
 * cJSON parses permissively: it keeps duplicate keys, turns every number
 * into a double (integers above 2^53 lose bits), knows no line numbers and
 * nests up to 1000 levels.  jsonv wraps it so that untrusted JSON is held
 * to the rules of CONTRACT.md §3 (config files, admin HTTP JSON):
 *
 *   - a pre-scan bounds nesting depth before cJSON recurses;
 *   - every value remembers its line, so errors read "FILE:LINE: PATH: ...";
 *   - every number remembers its source text, so integers are taken exactly
 *     (no float rounding) and "1e3", "-1", "1.5" are rejected as integers;
 *   - objects are checked for unknown and duplicate keys.
 *
 * Getters take the object, its path for messages ("proxy.peers[1]"), and
 * the key; they return 0 (value stored), 1 (key absent and optional, OUT
 * untouched), or -EINVAL with the message in doc->err.  A message never
 * quotes more than 80 bytes of input. */
#ifndef BD_JSONV_H
#define BD_JSONV_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jsonv_node; /* per-value line and number text, private to jsonv.c */

struct jsonv_doc {
    cJSON *root;              /* the parsed tree; owned */
    const char *source;       /* file name or "request body", for messages; borrowed */
    char *text;               /* a private NUL-terminated copy of the input */
    struct jsonv_node *nodes; /* one per value, sorted by cJSON pointer */
    size_t n_nodes;
    char err[512];            /* the first error, one line */
};

/* Parse LEN bytes of TEXT.  SOURCE names the input in messages.  Rejects
 * invalid JSON, trailing garbage, nesting deeper than MAX_DEPTH, NUL bytes
 * and invalid UTF-8 in strings.  0 or -EINVAL (message in doc->err);
 * call jsonv_free() in both cases. */
int jsonv_parse(struct jsonv_doc *doc, const char *source, const char *text, size_t len,
                unsigned max_depth);
void jsonv_free(struct jsonv_doc *doc);

/* Line (1-based) where NODE starts, 0 if unknown. */
unsigned jsonv_line(const struct jsonv_doc *doc, const cJSON *node);

/* Record an error about NODE at PATH (format like printf); returns -EINVAL. */
int jsonv_fail(struct jsonv_doc *doc, const cJSON *node, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Check that OBJ is an object whose keys are all in ALLOWED (NULL-ended)
 * and appear once each.  0 or -EINVAL. */
int jsonv_check_keys(struct jsonv_doc *doc, const cJSON *obj, const char *path,
                     const char *const *allowed);

/* Getters.  REQUIRED false makes an absent key return 1. */
int jsonv_get_u64(struct jsonv_doc *doc, const cJSON *obj, const char *path, const char *key,
                  bool required, uint64_t min, uint64_t max, uint64_t *out);
/* A size: an integer number of bytes, or a string such as "64M", "10G". */
int jsonv_get_size(struct jsonv_doc *doc, const cJSON *obj, const char *path, const char *key,
                   bool required, uint64_t min, uint64_t max, uint64_t *out);
/* A string of MIN..MAX bytes; *OUT borrows the tree's memory (valid until
 * jsonv_free).  Strings with NUL or control characters are rejected. */
int jsonv_get_str(struct jsonv_doc *doc, const cJSON *obj, const char *path, const char *key,
                  bool required, size_t min, size_t max, const char **out);
int jsonv_get_bool(struct jsonv_doc *doc, const cJSON *obj, const char *path, const char *key,
                   bool required, bool *out);
/* One of NAMES (NULL-ended); *OUT is its index. */
int jsonv_get_enum(struct jsonv_doc *doc, const cJSON *obj, const char *path, const char *key,
                   bool required, const char *const *names, int *out);
/* An array or object member, type-checked; *OUT borrows the node. */
int jsonv_get_array(struct jsonv_doc *doc, const cJSON *obj, const char *path, const char *key,
                    bool required, size_t min_items, size_t max_items, const cJSON **out);
int jsonv_get_object(struct jsonv_doc *doc, const cJSON *obj, const char *path, const char *key,
                     bool required, const cJSON **out);

/* Interpret NODE itself (an array element) as an exact unsigned integer. */
int jsonv_as_u64(struct jsonv_doc *doc, const cJSON *node, const char *path, uint64_t min,
                 uint64_t max, uint64_t *out);

#endif
