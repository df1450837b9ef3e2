/* fuzz_config.c: libFuzzer target for the config parser (jsonv + config).
 * Any input must yield a config or a one-line error, never a crash or a
 * leak.  Secret files named in inputs are read relative to the working
 * directory, which holds none, so they fail cleanly. */
#include "config/config.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cfg cfg;
    char err[1024];
    if (config_parse("fuzz.json", (const char *)data, size, &cfg, err, sizeof(err)) == 0)
        config_free(&cfg);
    else if (!memchr(err, '\n', sizeof(err)) && strlen(err) == 0)
        __builtin_trap(); /* an error must come with a message */
    return 0;
}
