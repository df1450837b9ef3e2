/* config_doc.h: documents generated from the configuration key tables.
 *
 * Names: config_doc_*.
 *
 * `blockd --config-doc=FORMAT` prints one of these.  Their committed copies
 * are the README's Configuration tables (markdown) and the block of
 * variables in scripts/ansible/roles/blockd/defaults/main.yml (ansible);
 * tests/func/test-config-doc.sh fails when a copy differs from what this
 * prints, and `tests/func/test-config-doc.sh --update` rewrites both.
 * Each document starts with a "config-doc begin" line and ends with a
 * "config-doc end" line, which is how the test finds the copy in its file.
 *
 * The output depends only on config_keys.c: not on build options (a build
 * without fault injection documents the fault keys too), the machine, or
 * the time. */
#ifndef BD_CONFIG_DOC_H
#define BD_CONFIG_DOC_H

#include <stdio.h>

/* Write the document FORMAT to OUT (borrowed):
 *   "markdown"  a table per JSON object kind: key, type, default, allowed
 *               values, meaning;
 *   "ansible"   YAML, one blockd_<section>_<key> variable per key the
 *               ansible role exposes, with the role's default.
 * Returns 0, -EINVAL for another FORMAT (nothing written), or -EIO when
 * writing to OUT failed. */
int config_doc_write(FILE *out, const char *format);

#endif
