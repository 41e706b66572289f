/* libFuzzer target for the --config YAML reader (cli/config.c, built here from
 * the cli sources): any bytes, read as a config of `search`, must fill the
 * options or fail with an error naming the file; never a crash, leak, hang or
 * an alias expanding into gigabytes. */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const ba_cli_command *cmd = ba_cli_command_find(size && data[0] & 1 ? "search" : "sensitivity");
    if (!cmd) __builtin_trap();
    char path[] = "/tmp/ba_fuzz_config_XXXXXX";
    if (ba_fuzz_temp(path, data, size) != 0) {
        unlink(path);
        return 0;
    }
    ba_cli_opts o;
    ba_cli_opts_init(&o);
    ba_error err;
    memset(&err, 0, sizeof err);
    if (ba_cli_config_load(cmd, path, &o, &err) == BA_OK) {
        /* What was read is checked values only: print it back (to nowhere). */
        FILE *null = fopen("/dev/null", "w");
        if (null) {
            ba_cli_config_print(cmd, &o, null);
            fclose(null);
        }
    } else if (!strstr(err.msg, path)) {
        __builtin_trap(); /* errors name the file */
    }
    ba_cli_opts_free(&o);
    unlink(path);
    return 0;
}
