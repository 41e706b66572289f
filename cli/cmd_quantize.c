/* `bitalloc quantize`: see docs/quantize.md. Waits for the 'quant' capability to land in
 * libbitalloc; until then it says so and exits 1. */
#include "cli/cli.h"

int ba_cmd_quantize(const ba_cli_opts *o) {
    return ba_cli_not_available(o, "quant");
}
