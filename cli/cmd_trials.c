/* `bitalloc trials`: see docs/trials.md. Waits for the 'db' capability to land in
 * libbitalloc; until then it says so and exits 1. */
#include "cli/cli.h"

int ba_cmd_trials(const ba_cli_opts *o) {
    return ba_cli_not_available(o, "db");
}
