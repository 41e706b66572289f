/* `bitalloc search`: see docs/search.md. Waits for the 'search' capability to land in
 * libbitalloc; until then it says so and exits 1. */
#include "cli/cli.h"

int ba_cmd_search(const ba_cli_opts *o) {
    return ba_cli_not_available(o, "search");
}
