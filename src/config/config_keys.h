/* config_keys.h: every configuration key, declared once.
 *
 * Names: cfg_key_* / CFG_KEY_* is the agreed short form for config_keys.[ch].
 *
 * config_keys.c holds one table per JSON object kind (the top level, log,
 * proxy, proxy.peers[], blob, agent, fault), one row per key: its JSON name,
 * type, the struct field it fills, required or its default, the allowed
 * range or names, and a one-line doc.  Everything else follows from the rows:
 *
 *   config.c      which keys an object allows (any other is "unknown key"),
 *                 each key's type and range check, the defaults, and the
 *                 order keys are read in (row order, so the first error a
 *                 file has is always the same one); `blockd --check` is
 *                 config_load().
 *   config_doc.c  the README's Configuration tables and the ansible role's
 *                 defaults (`blockd --config-doc=markdown|ansible`);
 *                 tests/func/test-config-doc.sh fails when the committed
 *                 copies differ from what it prints.
 *
 * Not in the rows: rules between keys (raft_heartbeat_ms at most half of
 * election_timeout_ms, peers include this proxy, ...).  They are code in
 * config.c ("Cross-field rules"), and each is stated in the doc of the
 * key it constrains.
 *
 * Checklist for a new key: add the struct field (config.h), then one row
 * here in the order it should be read; if the ansible role exposes it, set
 * .ansible and use blockd_<section>_<key> in the role's template; run
 * tests/func/test-config-doc.sh --update to regenerate the README and the
 * role's defaults. */
#ifndef BD_CONFIG_KEYS_H
#define BD_CONFIG_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most keys one object kind may declare (a bound for the parser's
 * allowed-keys list; config_keys.c checks it at compile time). */
#define CFG_KEY_MAX 48

/* What a key's JSON value is and where it goes.  The field at .off has the
 * C type given here; config_keys.c's row macros check that at compile time. */
enum cfg_key_type {
    CFG_KEY_U64,     /* uint64_t: an exact JSON integer in [min, max] */
    CFG_KEY_SIZE,    /* uint64_t: bytes, as an integer or a string like "64M", in [min, max] */
    CFG_KEY_BOOL,    /* bool: true or false */
    CFG_KEY_ENUM,    /* int-sized: the index in .names of the string given */
    CFG_KEY_NAME,    /* char[size]: min..max bytes, each in the class .pattern */
    CFG_KEY_ADDR,    /* char[CFG_ADDR_MAX]: "host:port" (numeric host) or "unix:/path" */
    CFG_KEY_PATH,    /* char[CFG_PATH_MAX]: a file or directory name */
    CFG_KEY_SECRET,  /* char[CFG_SECRET_MAX]: the contents of the mode-0600 file named */
    CFG_KEY_ADDRS,   /* char[max][CFG_ADDR_MAX] and an unsigned count: min..max distinct
                        addresses */
    CFG_KEY_LIST,    /* struct[max] and an unsigned count: min..max objects of .sub */
    CFG_KEY_OBJECT,  /* an object of .sub; its fields are at .off in this struct */
    CFG_KEY_SECTION, /* a role section: one object of .sub or an array of min..max;
                        a calloc'd array pointer at .off and an unsigned count */
};

struct cfg_key_section;

struct cfg_key {
    const char *name;             /* the JSON key */
    enum cfg_key_type type;
    bool required;                /* absent is an error; otherwise absent keeps .def */
    bool after_rules;             /* read by the object's cross-field rules (config.c),
                                     after they checked the keys read before it */
    size_t off;                   /* the field in the object's struct */
    size_t size;                  /* NAME: sizeof the field; LIST, SECTION: of one element */
    size_t count_off;             /* ADDRS, LIST, SECTION: the unsigned element count */
    uint64_t min, max;            /* U64, SIZE: the value; NAME, ADDR, PATH: the length in
                                     bytes; SECRET: the length of the file's contents;
                                     ADDRS, LIST, SECTION: the element count */
    uint64_t def;                 /* U64, SIZE, BOOL, ENUM: the default */
    const char *def_str;          /* PATH, NAME: the default, or NULL for none (empty) */
    const char *const *names;     /* ENUM: the allowed strings, NULL-ended */
    const char *pattern;          /* NAME: the byte class, like "[a-z0-9_-]" */
    const char *expect;           /* NAME: what the error says when a byte is outside it */
    const struct cfg_key_section *sub; /* OBJECT, LIST, SECTION: the keys inside */
    const char *doc;              /* one line for the README; states any cross-field rule */
    const char *ansible;          /* the ansible role exposes this key as
                                     blockd_<section>_<key> with this default (YAML), or
                                     NULL if the role does not */
};

/* One JSON object kind. */
struct cfg_key_section {
    const char *path;             /* as in messages: "" (the top), "log", "proxy",
                                     "proxy.peers[]", "fault" */
    const char *title;            /* the README's name for it */
    const char *doc;              /* the paragraph above its README table */
    const struct cfg_key *keys;   /* in the order the parser reads them */
    unsigned n_keys;
    bool test_build_only;         /* accepted only in builds with -Dfault_injection=true */
};

extern const struct cfg_key_section cfg_key_root, cfg_key_log, cfg_key_proxy, cfg_key_peer,
    cfg_key_blob, cfg_key_agent, cfg_key_fault;

/* Every object kind, in the README's order; NULL-ended. */
extern const struct cfg_key_section *const cfg_key_sections[];

/* The row of SECTION named NAME, or NULL.  Borrows both; the row is static. */
const struct cfg_key *cfg_key_find(const struct cfg_key_section *section, const char *name);

#endif
