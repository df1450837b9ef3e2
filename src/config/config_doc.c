/* config_doc.c: the README tables and ansible defaults, from the key tables.
 *
 * Both documents are a walk over cfg_key_sections (config_keys.c): one
 * markdown table per object kind, one YAML variable per row with .ansible
 * set.  Each cell is a function of one row: the type names the JSON value,
 * the default is written as one would write it in the file ("1M", not
 * 1048576), and the allowed column comes from .min/.max/.names/.pattern.
 * Cross-field rules appear only through the row's .doc.
 *
 * The begin and end lines frame each document so that the test (and its
 * --update) can find the committed copy inside a larger file.
 *
 * Rejected: writing the README itself from blockd.  The README is mostly
 * prose that blockd does not own; the binary prints, the test compares. */
#include "config/config_doc.h"
#include "base/bd.h"
#include "config/config_keys.h"

#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#define DOC_SOURCE "src/config/config_keys.c"
#define DOC_UPDATE "tests/func/test-config-doc.sh --update"

/* V bytes as a size string util_parse_size reads back: "16G", "4K", or
 * plain bytes when no unit divides it. */
static const char *fmt_size(uint64_t v, char *buf, size_t len)
{
    static const char units[] = "PTGMK";
    for (unsigned i = 0; units[i]; i++) {
        unsigned shift = 10 * (5 - i);
        if (v && v % (1ull << shift) == 0) {
            snprintf(buf, len, "%" PRIu64 "%c", v >> shift, units[i]);
            return buf;
        }
    }
    snprintf(buf, len, "%" PRIu64, v);
    return buf;
}

static const char *type_name(const struct cfg_key *k)
{
    switch (k->type) {
    case CFG_KEY_U64: return "integer";
    case CFG_KEY_SIZE: return "size";
    case CFG_KEY_BOOL: return "boolean";
    case CFG_KEY_ENUM:
    case CFG_KEY_NAME: return "string";
    case CFG_KEY_ADDR: return "address";
    case CFG_KEY_PATH:
    case CFG_KEY_SECRET: return "path";
    case CFG_KEY_ADDRS: return "array of addresses";
    case CFG_KEY_LIST: return "array of objects";
    case CFG_KEY_OBJECT: return "object";
    case CFG_KEY_SECTION: return "object or array";
    }
    return "?";
}

/* The default as written in a config file, "required", or "none". */
static const char *fmt_default(const struct cfg_key *k, char *buf, size_t len)
{
    char sz[32];
    if (k->required) return "required";
    switch (k->type) {
    case CFG_KEY_U64: snprintf(buf, len, "`%" PRIu64 "`", k->def); break;
    case CFG_KEY_SIZE:
        if (k->def) snprintf(buf, len, "`\"%s\"`", fmt_size(k->def, sz, sizeof(sz)));
        else snprintf(buf, len, "`0`");
        break;
    case CFG_KEY_BOOL: snprintf(buf, len, "`%s`", k->def ? "true" : "false"); break;
    case CFG_KEY_ENUM: snprintf(buf, len, "`\"%s\"`", k->names[k->def]); break;
    case CFG_KEY_PATH:
    case CFG_KEY_NAME:
        if (k->def_str) snprintf(buf, len, "`\"%s\"`", k->def_str);
        else snprintf(buf, len, "none");
        break;
    case CFG_KEY_OBJECT: snprintf(buf, len, "its keys' defaults"); break;
    default: snprintf(buf, len, "none"); break;
    }
    return buf;
}

static const char *fmt_allowed(const struct cfg_key *k, char *buf, size_t len)
{
    char a[32], b[32];
    switch (k->type) {
    case CFG_KEY_U64:
        snprintf(buf, len, "%" PRIu64 " to %" PRIu64, k->min, k->max);
        break;
    case CFG_KEY_SIZE:
        snprintf(buf, len, "%s to %s", fmt_size(k->min, a, sizeof(a)),
                 fmt_size(k->max, b, sizeof(b)));
        break;
    case CFG_KEY_BOOL: snprintf(buf, len, "`true`, `false`"); break;
    case CFG_KEY_ENUM:
        buf[0] = 0;
        for (unsigned i = 0; k->names[i]; i++) {
            size_t l = strlen(buf);
            snprintf(buf + l, len - l, "%s`\"%s\"`", i ? ", " : "", k->names[i]);
        }
        break;
    case CFG_KEY_NAME:
        snprintf(buf, len, "%" PRIu64 " to %" PRIu64 " bytes of `%s`", k->min, k->max,
                 k->pattern);
        break;
    case CFG_KEY_ADDR:
        snprintf(buf, len, "`\"host:port\"` (numeric host) or `\"unix:/path\"`");
        break;
    case CFG_KEY_PATH:
        snprintf(buf, len, "%" PRIu64 " to %" PRIu64 " bytes", k->min, k->max);
        break;
    case CFG_KEY_SECRET:
        snprintf(buf, len, "a file of mode 0600 holding %" PRIu64 " to %" PRIu64 " printable bytes",
                 k->min, k->max);
        break;
    case CFG_KEY_ADDRS:
        snprintf(buf, len, "%" PRIu64 " to %" PRIu64 " distinct addresses", k->min, k->max);
        break;
    case CFG_KEY_LIST:
        snprintf(buf, len, "%" PRIu64 " to %" PRIu64 " objects (`%s` below)", k->min, k->max,
                 k->sub->title);
        break;
    case CFG_KEY_OBJECT: snprintf(buf, len, "`%s` below", k->sub->title); break;
    case CFG_KEY_SECTION:
        snprintf(buf, len, "%" PRIu64 " to %" PRIu64 " instances (`%s` below)", k->min, k->max,
                 k->sub->title);
        break;
    }
    return buf;
}

static void write_markdown(FILE *out)
{
    fprintf(out,
            "<!-- config-doc begin: generated by `blockd --config-doc=markdown` from %s; "
            "edit that file, then run %s -->\n",
            DOC_SOURCE, DOC_UPDATE);
    for (const struct cfg_key_section *const *sp = cfg_key_sections; *sp; sp++) {
        const struct cfg_key_section *s = *sp;
        fprintf(out, "\n%s\n\n", s->doc);
        fprintf(out, "| key | type | default | allowed | meaning |\n");
        fprintf(out, "|---|---|---|---|---|\n");
        for (unsigned i = 0; i < s->n_keys; i++) {
            const struct cfg_key *k = &s->keys[i];
            char def[128], allowed[256];
            fprintf(out, "| `%s` | %s | %s | %s | %s |\n", k->name, type_name(k),
                    fmt_default(k, def, sizeof(def)), fmt_allowed(k, allowed, sizeof(allowed)),
                    k->doc);
        }
    }
    fprintf(out, "\n<!-- config-doc end -->\n");
}

/* The ansible variable of row K of S: blockd_<section>_<key>, or
 * blockd_<key> at the top level. */
static void ansible_var(const struct cfg_key_section *s, const struct cfg_key *k, char *buf,
                        size_t len)
{
    if (*s->path) snprintf(buf, len, "blockd_%s_%s", s->path, k->name);
    else snprintf(buf, len, "blockd_%s", k->name);
}

/* S without markdown's backticks, for YAML comments. */
static void put_plain(FILE *out, const char *s)
{
    for (; *s; s++)
        if (*s != '`') fputc(*s, out);
}

static void write_ansible(FILE *out)
{
    fprintf(out,
            "# config-doc begin: generated by `blockd --config-doc=ansible` from %s;\n"
            "# edit that file, then run %s.\n"
            "# The config keys this role sets, with the role's defaults (README,\n"
            "# Configuration).  templates/SECTION.json.j2 writes each as\n"
            "# \"KEY\": \"{{ VARIABLE }}\" (log.level: every template).\n",
            DOC_SOURCE, DOC_UPDATE);
    for (const struct cfg_key_section *const *sp = cfg_key_sections; *sp; sp++) {
        const struct cfg_key_section *s = *sp;
        for (unsigned i = 0; i < s->n_keys; i++) {
            const struct cfg_key *k = &s->keys[i];
            if (!k->ansible) continue;
            char var[128], allowed[256];
            ansible_var(s, k, var, sizeof(var));
            fprintf(out, "# %s%s%s: ", s->path, *s->path ? "." : "", k->name);
            put_plain(out, k->doc);
            fputs("; ", out);
            put_plain(out, fmt_allowed(k, allowed, sizeof(allowed)));
            /* Say so where the role's default differs from blockd's own. */
            char def[128];
            fmt_default(k, def, sizeof(def));
            char quoted[128];
            snprintf(quoted, sizeof(quoted), "`\"%s\"`", k->ansible);
            if (strcmp(def, quoted) != 0) {
                fputs("; blockd's own default is ", out);
                put_plain(out, def);
            }
            /* Numbers stay numbers; anything else is quoted, because YAML
             * would read a bare off as false. */
            bool number = k->type == CFG_KEY_U64 || k->type == CFG_KEY_BOOL;
            fprintf(out, "\n%s: %s%s%s\n", var, number ? "" : "\"", k->ansible,
                    number ? "" : "\"");
        }
    }
    fprintf(out, "# config-doc end\n");
}

int config_doc_write(FILE *out, const char *format)
{
    if (strcmp(format, "markdown") == 0) write_markdown(out);
    else if (strcmp(format, "ansible") == 0) write_ansible(out);
    else return -EINVAL;
    return fflush(out) == 0 && !ferror(out) ? 0 : -EIO;
}
