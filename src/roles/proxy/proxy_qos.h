/* proxy_qos.h: the admin API's QoS calls (issue 13; see proxy_qos.c):
 * QoS profiles (storage classes, /v1/qos-profiles), a volume's profile and
 * limits in its JSON and in POST /v1/volumes and PATCH /v1/volumes/NAME,
 * and the JSON form of a limit set (base/qos.h field names).
 *
 * proxy_admin.c routes to it; it calls down only (proxy_life_submit,
 * proxy_index).  Handlers answer their request exactly once.  Reactor
 * thread only. */
#ifndef BD_PROXY_QOS_H
#define BD_PROXY_QOS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/jsonv.h"
#include "base/qos.h"
#include "net/admin.h"
#include "store/index/index.h"

struct proxy;

/* Register the /v1/qos-profiles routes on P->admin.  0 or -errno. */
int proxy_qos_routes(struct proxy *p);

/* Read a limit set from object O (at PATH, for messages): every key a
 * base/qos.h field; a value is an integer (bytes fields also "100M"), or
 * null to unset the field (CLEAR, when CLEAR is not NULL; else null is
 * refused).  Keys in SKIP (NULL-ended, may be NULL) are left to the
 * caller.  0, or -EINVAL with D->err naming the field. */
int proxy_qos_parse(struct jsonv_doc *d, const cJSON *o, const char *path,
                    const char *const *skip, struct qos_limits *out, uint16_t *clear);

/* Add the fields L sets to O, by name. */
void proxy_qos_json(cJSON *o, const struct qos_limits *l);

/* Inside a read txn on P->rd: add to a volume's JSON O its "qos":
 * {"profile" (null for none), "limits" (its own), "effective", "limited",
 * and "agent": the last report heard here, with its age, if any}. */
void proxy_qos_vol_json(struct proxy *p, const struct index_vol *v, cJSON *o);

/* The agents' figures (VOL_QOS reports), the latest per volume, as this
 * proxy heard them (an agent polls one proxy at a time), at most
 * PROXY_QOS_SEEN_MAX volumes (the longest unheard make room): what
 * GET /v1/volumes/NAME shows as "qos"."agent" and `blockd ctl volume
 * stats` prints.  Made and freed with the admin API (proxy_admin.c);
 * proxy_qos_note does nothing without it. */
#define PROXY_QOS_SEEN_MAX 1024u
struct wire_qos_report;
int proxy_qos_seen_start(struct proxy *p);
void proxy_qos_seen_stop(struct proxy *p);
void proxy_qos_note(struct proxy *p, const char *agent, const struct wire_qos_report *rp);

/* Inside a read txn: does profile NAME exist?  0, -ENOENT, or -errno. */
int proxy_qos_profile_exists(struct proxy *p, const char *name);

#endif
