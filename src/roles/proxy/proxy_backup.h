/* proxy_backup.h: the admin API's incremental backup calls (see
 * proxy_backup.c): changed ranges between two views, a view's bytes, and
 * the import session that writes a stream back, all or nothing.
 *
 * proxy_admin.c routes to it; it calls down only (proxy_life's submit,
 * proxy_copy, proxy_cmd, proxy_blobs, proxy_index, proxy_plan).  Reactor
 * thread only. */
#ifndef BD_PROXY_BACKUP_H
#define BD_PROXY_BACKUP_H

#include "net/admin.h"

struct proxy;

/* GET /v1/volumes/VOL/diff?[from=S1][&to=S2][&offset=O][&limit=N] */
void proxy_backup_diff(struct proxy *p, struct admin_req *r, const char *vol);
/* GET /v1/volumes/VOL/data?offset=O&length=L[&snapshot=S] */
void proxy_backup_data(struct proxy *p, struct admin_req *r, const char *vol);
/* POST /v1/volumes/VOL/import, .../import/write, .../import/end; REST is
 * what follows VOL/ ("import", "import/write", "import/end"). */
void proxy_backup_import(struct proxy *p, struct admin_req *r, const char *vol,
                         const char *rest);

/* The agent id an import session attaches its volume under. */
#define PROXY_BACKUP_AGENT "blockd-import"
/* The largest data an import/write carries: 11 blocks, whose base64 fits
 * an admin body (64 KiB) with room for the rest of the JSON. */
#define PROXY_BACKUP_WRITE_MAX (11u * 4096u)
/* The largest data read answers: 4 MiB. */
#define PROXY_BACKUP_READ_MAX (4u << 20)

#endif
