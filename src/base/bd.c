/* bd.c: what bd.h declares: the names of blockd's error codes. */
#include "base/bd.h"

#include <string.h>

const char *bd_strerror(int code)
{
    int c = code < 0 ? -code : code;
    switch (c) {
    case 0: return "success";
    case BD_ECSUM: return "checksum mismatch";
    case BD_EFENCED: return "fenced: stale generation or epoch";
    case BD_ENOTLEADER: return "not the raft leader";
    case BD_ENOLEADER: return "no raft leader";
    case BD_ECORRUPT: return "on-disk data corrupt";
    case BD_EIMMUTABLE: return "blob exists with different bytes";
    case BD_EFAILED: return "storage failed after an fsync error";
    case BD_ECONFIG: return "configuration rejected";
    default: break;
    }
    if (c > BD_EFIRST && c < BD_ELAST) return "unknown blockd error";
    return strerror(c);
}
