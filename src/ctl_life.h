/* ctl_life.h: `blockd ctl`'s data-lifecycle commands (see ctl_life.c):
 * rollback, flatten, consistency-group snapshots, and export / import /
 * export-diff / import-diff in the stream format the README documents. */
#ifndef BD_CTL_LIFE_H
#define BD_CTL_LIFE_H

#include <stdbool.h>

/* What ctl.c found out before the command: where the proxies are and the
 * token (both borrowed for the call), and --json. */
struct ctl_life_ctx {
    const char *urls[16];
    int n_urls;
    const char *token;         /* "" for none */
    const char *ca_file;       /* the cluster CA: HTTPS; "" for plain HTTP */
    bool json;
};

/* Run the command A[0..NARGS) if it is one of ours: the exit status (0 ok,
 * 1 server, connection or stream error, 2 usage); -1 if it is not ours. */
int ctl_life_main(const struct ctl_life_ctx *cx, int nargs, char **a);
/* The usage lines of our commands. */
extern const char ctl_life_usage[];

#endif
