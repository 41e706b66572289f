/* `bitalloc inspect`: see docs/inspect.md. Waits for the 'model' capability to land in
 * libbitalloc; until then it says so and exits 1. */
#include "cli/cli.h"

int ba_cmd_inspect(const ba_cli_opts *o) {
    return ba_cli_not_available(o, "model");
}
