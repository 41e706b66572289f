/* `bitalloc eval`: see docs/eval.md. Waits for the 'eval' capability to land in
 * libbitalloc; until then it says so and exits 1. */
#include "cli/cli.h"

int ba_cmd_eval(const ba_cli_opts *o) {
    return ba_cli_not_available(o, "eval");
}
