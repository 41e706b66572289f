/* bitalloc entry point: finds the command word among the global flags, parses the
 * flags (and --config file) into one ba_cli_opts, checks them, then hands over to
 * the command's ba_cmd_<name>(). Only this layer prints errors and picks exit codes. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/guard.h"

/* Index of the command word in argv (0 when none); global flags may come before it. */
static int find_command(int argc, char **argv, ba_error *err) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == '\0') return i;
        if (strcmp(a, "--") == 0) return i + 1 < argc ? i + 1 : 0;
        const ba_cli_flag *f = NULL;
        for (const ba_cli_flag *g = ba_cli_global_flags; g->name; g++) {
            if (a[1] == '-' ? (strncmp(a + 2, g->name, strlen(g->name)) == 0 &&
                               (a[2 + strlen(g->name)] == '\0' || a[2 + strlen(g->name)] == '='))
                            : (g->short_name && a[1] == g->short_name))
                f = g;
        }
        if (!f) {
            ba_error_set(err, BA_ERR_INPUT, "%s: unknown flag (see 'bitalloc --help')", a);
            return -1;
        }
        if (f->type != BA_CLI_T_FLAG && !strchr(a, '=') && ++i >= argc) { /* skip the value */
            ba_error_set(err, BA_ERR_INPUT, "--%s: missing value (%s)", f->name, f->metavar);
            return -1;
        }
    }
    return 0;
}

/* Arguments before "--" that ask for help or the version win over everything else. */
static int wants(int argc, char **argv, const char *lng, const char *shrt) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) return 0;
        if (strcmp(argv[i], lng) == 0 || (shrt && strcmp(argv[i], shrt) == 0)) return 1;
    }
    return 0;
}

static int finish(int code) {
    /* A result that could not be written (full disk, closed pipe) is a runtime failure. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        ba_cli_error("stdout: write failed");
        return code ? code : BA_EXIT_RUNTIME;
    }
    return code;
}

/* libgomp's default wait policy spins idle threads, and it is read once when
 * libgomp loads, so the library cannot change it. On a machine shared with
 * other work, spinning threads stall every parallel region of ours (measured:
 * 100 evaluations of the digits CNN take 16.4 s spinning, 2.9 s passive).
 * So the CLI re-executes itself once with OMP_WAIT_POLICY=passive unless the
 * user chose a policy. */
static void ensure_passive_wait_policy(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc): carry on with the default policy. */
}

int main(int argc, char **argv) {
    ensure_passive_wait_policy(argv);
    ba_error err;
    ba_error_clear(&err);
    if (wants(argc, argv, "--version", NULL)) {
        printf("bitalloc %s\n", BA_VERSION);
        return finish(BA_EXIT_OK);
    }
    int ci = find_command(argc, argv, &err);
    if (ci < 0 || ci == 0) {
        if (ci == 0 && wants(argc, argv, "--help", "-h")) {
            ba_cli_print_usage(stdout);
            return finish(BA_EXIT_OK);
        }
        if (ci == 0) {
            ba_cli_error("missing COMMAND (see 'bitalloc --help')");
            ba_cli_print_usage(stderr);
        } else {
            ba_cli_error("%s", err.msg);
        }
        return BA_EXIT_USAGE;
    }
    const ba_cli_command *cmd = ba_cli_command_find(argv[ci]);
    if (!cmd) {
        ba_cli_error("%s: unknown command (see 'bitalloc --help')", argv[ci]);
        return BA_EXIT_USAGE;
    }
    if (wants(argc, argv, "--help", "-h")) {
        ba_cli_print_command_help(cmd, stdout);
        return finish(BA_EXIT_OK);
    }

    /* The flags before and after the command word form one list. */
    char **rest = malloc((size_t)argc * sizeof *rest);
    if (!rest) {
        ba_cli_error("out of memory");
        return BA_EXIT_RUNTIME;
    }
    int nrest = 0;
    for (int i = 1; i < argc; i++)
        if (i != ci) rest[nrest++] = argv[i];

    ba_cli_opts cli, file, opts;
    ba_cli_opts_init(&cli);
    ba_cli_opts_init(&file);
    ba_cli_opts_init(&opts);
    cli.command = cmd->name;
    int code;
    ba_status st = ba_cli_parse_argv(cmd, nrest, rest, &cli, &err);
    free(rest);
    const char *config = st == BA_OK ? ba_cli_get(&cli, "config") : NULL;
    if (config) st = ba_cli_config_load(cmd, config, &file, &err);
    if (st == BA_OK) st = ba_cli_merge(cmd, &file, &cli, &opts, &err);
    if (st == BA_OK && ba_cli_has(&opts, "print-config")) {
        ba_cli_config_print(cmd, &opts, stdout);
        code = finish(BA_EXIT_OK);
        goto out;
    }
    if (st == BA_OK) {
        opts.command = cmd->name;
        st = ba_cli_check_required(cmd, &opts, &err);
    }
    if (st == BA_OK) st = ba_cli_check_utf8(&opts, &err);
    if (st != BA_OK) {
        ba_cli_error("%s", err.msg);
        code = ba_status_exit_code(st);
    } else {
        code = finish(cmd->run(&opts));
    }
out:
    ba_cli_opts_free(&cli);
    ba_cli_opts_free(&file);
    ba_cli_opts_free(&opts);
    return code;
}
