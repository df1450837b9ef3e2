/* agent_attach.h: attaching and detaching one volume (agent_attach.c),
 * below the registry (agent_vol.c) and above the request paths
 * (agent_vol_int.h).  Outcomes go back up through vs->up: opens_done
 * hands out handles or fails the waiting opens, fail and gone stop the
 * volume.  Everything runs on the reactor thread. */
#ifndef BD_AGENT_ATTACH_H
#define BD_AGENT_ATTACH_H

#include "roles/agent/agent_vol_int.h"

/* Send VOL_ATTACH for V (read-write if v->want_rw), unless one is in
 * flight.  A read-write attach raises the generation and creates the
 * journal and map on first use. */
void agent_attach_start(struct agent_vol_shared *v);
/* The up-call `reattach`: an ACTIVE volume whose write outcome is unknown
 * goes to REATTACH and attaches read-write again (no-op otherwise). */
void agent_attach_reattach(struct agent_vol_shared *v);
/* Send VOL_DETACH for an idle clean V (state DETACHING); when it is done
 * the journal is deleted, and V attaches again if opens arrived meanwhile.
 * A V attached read-only only is let go at once, and may be freed before
 * this returns. */
void agent_attach_detach(struct agent_vol_shared *v);

#endif
