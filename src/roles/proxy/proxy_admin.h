/* proxy_admin.h: the proxy's admin HTTP API (see proxy_admin.c for the
 * routes).  A request handler beside proxy_io.c: it reads the index
 * (proxy_index.c), submits mutations (proxy_cmd.c), waits for them to be
 * applied here (proxy_mgmt.c) and reports the status of the services and
 * of repair; it calls nothing above it.  Reactor thread only. */
#ifndef BD_PROXY_ADMIN_H
#define BD_PROXY_ADMIN_H

struct proxy;

/* Serve the admin API on P->cfg->admin (P->admin is set; freed by the
 * role with admin_free).  0, or the listener's error. */
int proxy_admin_start(struct proxy *p);
/* Stop serving: wait for full index scans in flight (they answer), then
 * close the endpoint (requests still waiting get 503).  Before the index
 * closes. */
void proxy_admin_stop(struct proxy *p);

#endif
