/* agent_assign.h: the volumes attached to this agent (agent_assign.c),
 * below the registry (agent_vol.c), beside agent_attach.c.  Besides
 * agent_vol.h's agent_vols_list and agent_vols_watch, the registry's own
 * calls.  Everything runs on the reactor thread. */
#ifndef BD_AGENT_ASSIGN_H
#define BD_AGENT_ASSIGN_H

#include "roles/agent/agent_vol_int.h"

/* Fetch the attachments for REQ (agent_vols_list, which the registry
 * checks first): 0 and REQ's callback later, or -ENOMEM and none. */
int agent_assign_list(struct agent_vols *vs, struct agent_vols_list_req *req);
/* From the registry's tick: while someone watches, ask the proxies for
 * this agent's attachments when AGENT_VOLS_WATCH_MS have passed since the
 * last time (NOW monotonic ms), unless a fetch is in flight; the watch
 * hears the changes. */
void agent_assign_tick(struct agent_vols *vs, uint64_t now);
/* NAME's entry in the table of the last fetch, or NULL (not attached to
 * this agent, as far as this agent knows; vs->assign_known says whether
 * it knows anything).  Borrowed: valid until the next fetch completes or
 * agent_assign_free. */
const struct agent_vols_list_entry *agent_assign_find(const struct agent_vols *vs,
                                                      const char *name);
/* Free the table (agent_vols_free; the fetch in flight, if any, was
 * completed by agent_client_free). */
void agent_assign_free(struct agent_vols *vs);

#endif
