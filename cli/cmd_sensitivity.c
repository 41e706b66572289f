/* `bitalloc sensitivity`: see docs/sensitivity.md. Waits for the 'sensitivity' capability to land in
 * libbitalloc; until then it says so and exits 1. */
#include "cli/cli.h"

int ba_cmd_sensitivity(const ba_cli_opts *o) {
    return ba_cli_not_available(o, "sensitivity");
}
