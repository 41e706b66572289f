/* The bitalloc command line as users and scripts see it (SPEC §8, §10): help for
 * every command, exit codes and error lines, --config merging; plus the output
 * helpers of cli/format.c and cli/progress.c, compiled in here since the CLI's own
 * sources are not part of libbitalloc. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "tests/helpers.h"

#include "cli/format.c"
#include "cli/progress.c"

/* stderr is exactly one "bitalloc: error: ..." line containing want. */
static void expect_error(const ba_test_run_t *r, int code, const char *want) {
    cr_expect_eq(r->status, code, "exit %d, want %d; stderr: %s", r->status, code, r->err);
    cr_expect(strncmp(r->err, "bitalloc: error: ", 17) == 0, "stderr: %s", r->err);
    cr_expect_eq(ba_test_count_lines(r->err), 1, "stderr: %s", r->err);
    cr_expect(strstr(r->err, want) != NULL, "stderr lacks '%s': %s", want, r->err);
}

static const char *const COMMANDS[] = {"inspect", "eval",   "sensitivity", "search",   "resume", "report",
                                       "studies", "trials", "export",      "quantize", "worker", NULL};

Test(cli, help_lists_every_command) {
    ba_test_run_t r = ba_test_cli("--help", NULL);
    cr_assert_eq(r.status, 0);
    for (int i = 0; COMMANDS[i]; i++) {
        char line[64];
        snprintf(line, sizeof line, "\n  %s ", COMMANDS[i]);
        cr_expect(strstr(r.out, line), "--help lacks %s", COMMANDS[i]);
    }
    cr_expect_str_empty(r.err);
    ba_test_run_free(&r);
}

/* The flags SPEC §3-§8 give each command. */
static const struct {
    const char *cmd;
    const char *flags[40];
} SPEC_FLAGS[] = {
    {"inspect", {"MODEL", "--format table|json"}},
    {"eval", {"MODEL", "--data", "--labels", "--plan", "--save-output", "--format table|json"}},
    {"sensitivity",
     {"MODEL", "--data", "--labels", "--method hessian|lrp|fisher|act|weight|measured", "--bits", "--seed",
      "--format table|json|csv", "--loss", "--tol", "--samples", "--include-embeddings", "--scheme",
      "--granularity", "--clip", "--act-bits"}},
    {"search",
     {"MODEL",
      "--data",
      "--labels",
      "--budget",
      "--method ilp|evo|ilp+evo|random|uniform",
      "--sensitivity ",
      "--sensitivity-file",
      "--loss",
      "--tol",
      "--samples",
      "--include-embeddings",
      "--generations",
      "--offspring",
      "--seed",
      "--bits",
      "--pin",
      "--tie",
      "--sweep",
      "--latency-table",
      "--hw",
      "--study",
      "--plan-out",
      "--config",
      "--scheme",
      "--granularity",
      "--clip",
      "--act-bits",
      "--db"}},
    {"resume", {"--study"}},
    {"studies", {"--format table|csv|json"}},
    {"trials", {"--study", "--best", "--where", "--sort", "--limit", "--format table|csv|json"}},
    {"export",
     {"--study", "--trial", "--format plan|csv|hawq|modelopt|modelopt-py|llama|onnx-fakequant|onnx-qdq",
      "-o, --output", "--name-map", "--strict", "--qdq-profile"}},
    {"quantize", {"MODEL", "--plan", "-o, --output", "--format fakequant|qdq"}},
};

Test(cli, every_command_help_exits_0_and_names_its_spec_flags) {
    for (size_t i = 0; i < sizeof SPEC_FLAGS / sizeof SPEC_FLAGS[0]; i++) {
        ba_test_run_t r = ba_test_cli(SPEC_FLAGS[i].cmd, "--help", NULL);
        cr_expect_eq(r.status, 0, "%s --help", SPEC_FLAGS[i].cmd);
        char usage[64];
        snprintf(usage, sizeof usage, "usage: bitalloc %s", SPEC_FLAGS[i].cmd);
        cr_expect(strstr(r.out, usage), "%s --help: %s", SPEC_FLAGS[i].cmd, r.out);
        for (int j = 0; SPEC_FLAGS[i].flags[j]; j++)
            cr_expect(strstr(r.out, SPEC_FLAGS[i].flags[j]), "%s --help lacks %s", SPEC_FLAGS[i].cmd,
                      SPEC_FLAGS[i].flags[j]);
        for (int j = 0; j < 4; j++)
            cr_expect(strstr(r.out, (const char *[]){"--db", "-q", "-v", "--config"}[j]));
        ba_test_run_free(&r);
    }
}

Test(cli, version_prints_the_version) {
    ba_test_run_t r = ba_test_cli("--version", NULL);
    cr_expect_eq(r.status, 0);
    cr_expect_str_eq(r.out, "bitalloc " BA_VERSION "\n");
    ba_test_run_free(&r);
}

Test(cli, unknown_command_exits_2_with_one_error_line) {
    ba_test_run_t r = ba_test_cli("frobnicate", NULL);
    expect_error(&r, 2, "frobnicate: unknown command");
    ba_test_run_free(&r);
    r = ba_test_cli("--db", NULL);
    expect_error(&r, 2, "--db: missing value");
    ba_test_run_free(&r);
    r = ba_test_cli(NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "bitalloc: error: missing COMMAND"));
    ba_test_run_free(&r);
}

Test(cli, unknown_flag_exits_2_naming_the_flag) {
    ba_test_run_t r = ba_test_cli("inspect", "m.onnx", "--frob", NULL);
    expect_error(&r, 2, "--frob: unknown flag for 'inspect'");
    ba_test_run_free(&r);
    r = ba_test_cli("--frob", "inspect", NULL);
    expect_error(&r, 2, "--frob: unknown flag");
    ba_test_run_free(&r);
    r = ba_test_cli("inspect", "m.onnx", "-x", NULL);
    expect_error(&r, 2, "-x: unknown flag");
    ba_test_run_free(&r);
}

Test(cli, bad_values_exit_2_naming_the_flag) {
    static const struct {
        const char *flag, *value, *want;
    } cases[] = {
        {"--seed", "abc", "--seed: expected an integer in 0..18446744073709551615, got 'abc'"},
        {"--seed", "18446744073709551616", "--seed: expected an integer in 0..18446744073709551615"},
        {"--seed", "-1", "--seed: expected"},
        {"--budget", "avg-bits", "--budget: expected KEY=VALUE, got 'avg-bits'"},
        {"--budget", "speed=3", "--budget: unknown budget key 'speed'"},
        {"--budget", "memory=3MB",
         "--budget: budget memory=3MB: unknown unit 'MB' in '3MB' (units: B, KiB, MiB, GiB; a bare number is "
         "bytes)"},
        {"--budget", "avg-bits=0", "--budget: budget avg-bits=0: must be greater than zero"},
        {"--bits", "2,9", "--bits: expected a comma list of bit-widths"},
        {"--bits", "4,4", "--bits: bit-width 4 listed twice"},
        {"--method", "annealing", "--method: expected one of ilp|evo|ilp+evo|random|uniform"},
        {"--sensitivity", "magic", "--sensitivity: expected one of"},
        {"--granularity", "group:0", "--granularity: 'group:0': group size must be a positive integer"},
        {"--granularity", "group:4294967297",
         "--granularity: 'group:4294967297': group size must be a positive"},
        {"--pin", "conv1*=9", "--pin: expected a bit-width"},
        {"--pin", "conv1*", "--pin: expected NAME_GLOB=BITS"},
        {"--sweep", "avg-bits=6:3:1", "--sweep: FROM must not exceed TO"},
        {"--sweep", "avg-bits=3:6", "--sweep: expected KEY=FROM:TO:STEP"},
        {"--sweep", "avg-bits=2:8:0.000001", "--sweep: 'avg-bits=2:8:0.000001' gives more than"},
        {"--tol", "x", "--tol: expected a non-negative number"},
        {"--generations", "1.5", "--generations: expected an integer in 0..1000000, got '1.5'"},
        {"--generations", "4294967298", "--generations: 4294967298 is out of range (0..1000000)"},
        {"--generations", "-1", "--generations: -1 is out of range (0..1000000)"},
        {"--generations", "99999999999999999999", "--generations: 99999999999999999999 is out of range"},
        {"--offspring", "4294967297", "--offspring: 4294967297 is out of range (1..100000)"},
        {"--offspring", "0", "--offspring: 0 is out of range (1..100000)"},
        {"--samples", "2147483648", "--samples: 2147483648 is out of range (1..1000000)"},
        {"--act-bits", "12", "--act-bits: expected a bit-width"},
        {"--data", "=x.npy", "--data: expected FILE or NAME=FILE"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ba_test_run_t r = ba_test_cli("search", "m.onnx", "--data", "x.npy", "--budget", "avg-bits=4",
                                      cases[i].flag, cases[i].value, NULL);
        expect_error(&r, 2, cases[i].want);
        ba_test_run_free(&r);
    }
    ba_test_run_t r =
        ba_test_cli("export", "--study", "s", "-o", "x", "--format", "plan", "--trial", "first", NULL);
    expect_error(&r, 2, "--trial: expected a trial number or 'best'");
    ba_test_run_free(&r);
    r = ba_test_cli("trials", "--study", "s", "--limit", "4294967296", NULL);
    expect_error(&r, 2, "--limit: 4294967296 is out of range (0..2147483647)");
    ba_test_run_free(&r);
}

Test(cli, missing_values_and_required_arguments_exit_2) {
    ba_test_run_t r = ba_test_cli("search", "m.onnx", "--seed", NULL);
    expect_error(&r, 2, "--seed: missing value");
    ba_test_run_free(&r);
    r = ba_test_cli("inspect", NULL);
    expect_error(&r, 2, "inspect: missing MODEL");
    ba_test_run_free(&r);
    r = ba_test_cli("eval", "m.onnx", NULL);
    expect_error(&r, 2, "--data: required by 'eval'");
    ba_test_run_free(&r);
    r = ba_test_cli("search", "m.onnx", "--data", "x.npy", NULL);
    expect_error(&r, 2, "--budget: required by 'search'");
    ba_test_run_free(&r);
    r = ba_test_cli("trials", NULL);
    expect_error(&r, 2, "--study: required by 'trials'");
    ba_test_run_free(&r);
    r = ba_test_cli("export", "--study", "s", "--format", "plan", NULL);
    expect_error(&r, 2, "--output: required by 'export'");
    ba_test_run_free(&r);
    r = ba_test_cli("sensitivity", "m.onnx", "--method", "fisher", NULL);
    expect_error(&r, 2, "--data: required by 'sensitivity --method fisher'");
    ba_test_run_free(&r);
    r = ba_test_cli("inspect", "a.onnx", "b.onnx", NULL);
    expect_error(&r, 2, "unexpected argument 'b.onnx'");
    ba_test_run_free(&r);
    r = ba_test_cli("studies", "--best", NULL);
    expect_error(&r, 2, "--best: unknown flag for 'studies'");
    ba_test_run_free(&r);
}

/* Remove a command from this list when its capability lands in libbitalloc. */
Test(cli, global_flags_work_before_or_after_the_command) {
    /* --db is honoured wherever it stands: the answer names that (absent) database. */
    static const char *const db = "/nonexistent-dir/x.db";
    ba_test_run_t r = ba_test_cli("--db", db, "-q", "studies", NULL);
    expect_error(&r, 2, db);
    ba_test_run_free(&r);
    r = ba_test_cli("studies", "--db=/nonexistent-dir/x.db", "-vv", "--format", "csv", NULL);
    expect_error(&r, 2, db);
    ba_test_run_free(&r);
    r = ba_test_cli("-v", "search", "m.onnx", "--data", "x.npy", "--budget", "avg-bits=4", "--print-config",
                    NULL);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "verbose: [true]"), "%s", r.out);
    ba_test_run_free(&r);
}

/* ---------------------------------------------------------------- --config */

typedef struct {
    char dir[512];
    char path[600];
} cfg_t;

static cfg_t write_cfg(const char *text) {
    cfg_t c;
    cr_assert_eq(ba_test_tmpdir(c.dir, sizeof c.dir), 0);
    snprintf(c.path, sizeof c.path, "%s/run.yaml", c.dir);
    cr_assert_eq(ba_test_write_file(c.path, text), 0);
    return c;
}

static const char *BASE_CFG = "model: net.onnx\n"
                              "data: [a.npy, b.npy]\n"
                              "labels: /abs/y.npy\n"
                              "budget: {avg-bits: 4, memory: 3MiB}\n"
                              "pin: {\"conv1*\": 8}\n"
                              "bits: [2, 4, 8]\n"
                              "seed: 7\n"
                              "include-embeddings: true\n";

Test(cli, config_values_are_used_with_paths_relative_to_the_file) {
    cfg_t c = write_cfg(BASE_CFG);
    ba_test_run_t r = ba_test_cli("search", "--config", c.path, "--print-config", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    char want[2048];
    snprintf(want, sizeof want,
             "model: \"%s/net.onnx\"\ndata: [\"%s/a.npy\", \"%s/b.npy\"]\nlabels: \"/abs/y.npy\"\n"
             "budget: [\"avg-bits=4\", \"memory=3MiB\"]\n",
             c.dir, c.dir, c.dir);
    cr_expect(strstr(r.out, want), "got:\n%s\nwant:\n%s", r.out, want);
    cr_expect(strstr(r.out, "bits: \"2,4,8\"\n"), "%s", r.out);
    cr_expect(strstr(r.out, "pin: [\"conv1*=8\"]\n"), "%s", r.out);
    cr_expect(strstr(r.out, "seed: \"7\"\n"), "%s", r.out);
    cr_expect(strstr(r.out, "include-embeddings: true\n"), "%s", r.out);
    ba_test_run_free(&r);
    /* The file supplies MODEL, --data and --budget: the command gets past usage checks. */
    r = ba_test_cli("search", "--config", c.path, NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "net.onnx"), "the missing model is named: %s", r.err);
    ba_test_run_free(&r);
    ba_test_rmtree(c.dir);
}

Test(cli, config_rebases_named_inputs_and_hw_paths_only) {
    cfg_t c = write_cfg("data: {image: x.npy, mask: /abs/m.npy}\nhw: profiles/a100.yaml\nstudy: s/1\n"
                        "budget: [\"avg-bits=4\"]\n");
    ba_test_run_t r = ba_test_cli("search", "m.onnx", "--config", c.path, "--print-config", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    char want[1024];
    snprintf(want, sizeof want, "data: [\"image=%s/x.npy\", \"mask=/abs/m.npy\"]\n", c.dir);
    cr_expect(strstr(r.out, want), "%s", r.out);
    snprintf(want, sizeof want, "hw: \"%s/profiles/a100.yaml\"\n", c.dir);
    cr_expect(strstr(r.out, want), "%s", r.out);
    cr_expect(strstr(r.out, "study: \"s/1\"\n"), "%s", r.out);
    ba_test_run_free(&r);
    cr_assert_eq(ba_test_write_file(c.path, "hw: a100\n"), 0);
    r = ba_test_cli("search", "m.onnx", "--config", c.path, "--print-config", NULL);
    cr_expect(strstr(r.out, "hw: \"a100\"\n"), "%s", r.out);
    ba_test_run_free(&r);
    ba_test_rmtree(c.dir);
}

Test(cli, flags_override_the_config_file_key_by_key) {
    cfg_t c = write_cfg(BASE_CFG);
    ba_test_run_t r = ba_test_cli("search", "other.onnx", "--config", c.path, "--seed", "9", "--budget",
                                  "avg-bits=3", "--data", "x.npy", "--pin", "fc*=4", "--print-config", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "model: \"other.onnx\"\n"), "%s", r.out);
    cr_expect(strstr(r.out, "seed: \"9\"\n"), "%s", r.out);
    /* budget: the flag's avg-bits replaces the file's, the file's memory stays. */
    cr_expect(strstr(r.out, "budget: [\"memory=3MiB\", \"avg-bits=3\"]\n"), "%s", r.out);
    /* data: an unkeyed list on the command line replaces the file's list. */
    cr_expect(strstr(r.out, "data: [\"x.npy\"]\n"), "%s", r.out);
    cr_expect(strstr(r.out, "pin: [\"conv1*=8\", \"fc*=4\"]\n"), "%s", r.out);
    cr_expect(strstr(r.out, "labels: \"/abs/y.npy\"\n"), "%s", r.out);
    ba_test_run_free(&r);
    ba_test_rmtree(c.dir);
}

Test(cli, printed_config_loads_back_to_the_same_flags) {
    cfg_t c = write_cfg(BASE_CFG);
    ba_test_run_t r =
        ba_test_cli("search", "--config", c.path, "--tie", "layer\"1*", "-v", "--print-config", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    char again[700];
    snprintf(again, sizeof again, "%s/again.yaml", c.dir);
    cr_assert_eq(ba_test_write_file(again, r.out), 0);
    ba_test_run_t r2 = ba_test_cli("search", "--config", again, "--print-config", NULL);
    cr_assert_eq(r2.status, 0, "%s", r2.err);
    cr_expect_str_eq(r2.out, r.out);
    ba_test_run_free(&r);
    ba_test_run_free(&r2);
    ba_test_rmtree(c.dir);
}

Test(cli, unknown_config_key_exits_2_naming_key_file_and_line) {
    cfg_t c = write_cfg("seed: 1\nbudgets: {avg-bits: 4}\n");
    ba_test_run_t r = ba_test_cli("search", "m.onnx", "--config", c.path, NULL);
    char want[700];
    snprintf(want, sizeof want, "%s:2: unknown key 'budgets'", c.path);
    expect_error(&r, 2, want);
    ba_test_run_free(&r);
    /* A flag of another command is unknown here too. */
    cr_assert_eq(ba_test_write_file(c.path, "plan: p.json\n"), 0);
    r = ba_test_cli("search", "m.onnx", "--config", c.path, NULL);
    expect_error(&r, 2, "unknown key 'plan'");
    ba_test_run_free(&r);
    ba_test_rmtree(c.dir);
}

Test(cli, malformed_yaml_exits_2_with_the_line) {
    cfg_t c = write_cfg("seed: 1\nbits: [2, 4]]\nlabels: y.npy\n");
    ba_test_run_t r = ba_test_cli("search", "m.onnx", "--config", c.path, NULL);
    char want[700];
    snprintf(want, sizeof want, "%s:2:", c.path);
    expect_error(&r, 2, want);
    cr_expect(strstr(r.err, "malformed YAML"), "%s", r.err);
    ba_test_run_free(&r);
    ba_test_rmtree(c.dir);
}

Test(cli, bad_config_values_exit_2_naming_flag_and_line) {
    static const struct {
        const char *yaml, *want;
    } cases[] = {
        {"method: ilp\nseed: abc\n", ":2: --seed: expected an integer in 0..18446744073709551615"},
        {"generations: 4294967298\n", ":1: --generations: 4294967298 is out of range (0..1000000)"},
        {"offspring: -4\n", ":1: --offspring: -4 is out of range (1..100000)"},
        {"budget: {speed: 3}\n", ":1: --budget: unknown budget key 'speed'"},
        {"seed: [1, 2]\n", "seed: takes one value, not a list"},
        {"seed:\n", "seed: needs a value"},
        {"tol: {a: 1}\n", "tol: takes a value, not a mapping"},
        {"sweep: {avg-bits: \"3:4:1\", memory: \"1:2:1\"}\n", "sweep: takes exactly one KEY: VALUE entry"},
        {"include-embeddings: maybe\n", "expected true or false"},
        {"- a\n- b\n", "the top level must be a mapping"},
        {"a: &x 4\nbits: *x\n", "unknown key 'a'"},
        {"bits: &x 4\nact-bits: *x\n", "aliases are not supported"},
        {"help: true\n", "unknown key 'help'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cfg_t c = write_cfg(cases[i].yaml);
        ba_test_run_t r = ba_test_cli("search", "m.onnx", "--data", "x", "--budget", "avg-bits=4", "--config",
                                      c.path, NULL);
        expect_error(&r, 2, cases[i].want);
        ba_test_run_free(&r);
        ba_test_rmtree(c.dir);
    }
}

Test(cli, hostile_config_files_give_errors_not_crashes) {
    char dir[512], path[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/deep.yaml", dir);
    enum { DEPTH = 100000 };
    char *deep = malloc(2 * DEPTH + 16);
    memcpy(deep, "bits: ", 6);
    memset(deep + 6, '[', DEPTH);
    memset(deep + 6 + DEPTH, ']', DEPTH);
    strcpy(deep + 6 + 2 * DEPTH, "\n");
    cr_assert_eq(ba_test_write_file(path, deep), 0);
    free(deep);
    ba_test_run_t r = ba_test_cli("search", "--config", path, NULL);
    expect_error(&r, 2, "deep.yaml");
    ba_test_run_free(&r);
    cr_assert_eq(ba_test_write_file(path, "seed: \"unterminated\n"), 0);
    r = ba_test_cli("search", "--config", path, NULL);
    expect_error(&r, 2, "malformed YAML");
    ba_test_run_free(&r);
    snprintf(path, sizeof path, "%s/missing.yaml", dir);
    r = ba_test_cli("search", "--config", path, NULL);
    expect_error(&r, 2, "--config: cannot read");
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}

/* libfyaml's duplicate-key check is quadratic (40,000 keys took 49 s): a big
 * mapping must be answered in well under a second or two, either way. */
static double time_config(const char *dir, const char *name, const char *head, const char *fmt, int n,
                          ba_test_run_t *r) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t cap = strlen(head) + (size_t)n * 48 + 16, len = 0;
    char *text = malloc(cap);
    len += (size_t)snprintf(text, cap, "%s", head);
    for (int i = 0; i < n; i++) len += (size_t)snprintf(text + len, cap - len, fmt, i);
    cr_assert_eq(ba_test_write_file(path, text), 0);
    free(text);
    /* CPU seconds of the child (user + system), so a loaded machine does not fail the test. */
    struct rusage before, after;
    getrusage(RUSAGE_CHILDREN, &before);
    *r = ba_test_cli("search", "m.onnx", "--data", "x", "--budget", "avg-bits=4", "--config", path,
                     "--print-config", NULL);
    getrusage(RUSAGE_CHILDREN, &after);
#define BA_TV_S(tv) ((double)(tv).tv_sec + (double)(tv).tv_usec * 1e-6)
    return BA_TV_S(after.ru_utime) - BA_TV_S(before.ru_utime) + BA_TV_S(after.ru_stime) -
           BA_TV_S(before.ru_stime);
#undef BA_TV_S
}

Test(cli, config_with_200000_keys_is_answered_quickly) {
    char dir[512];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    ba_test_run_t r;
    double s = time_config(dir, "top.yaml", "", "key%d: 1\n", 200000, &r);
    expect_error(&r, 2, "unknown key 'key0'");
    cr_expect_lt(s, 5.0, "200,000 top-level keys took %.1f CPU s", s);
    ba_test_run_free(&r);
    s = time_config(dir, "pins.yaml", "pin:\n", "  \"layer%d.*\": 4\n", 200000, &r);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "layer199999.*=4"), "the last pin is kept");
    cr_expect_lt(s, 5.0, "200,000 pins took %.1f CPU s", s);
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}

Test(cli, duplicate_config_keys_exit_2_naming_key_and_line) {
    static const struct {
        const char *yaml, *want;
    } cases[] = {
        {"seed: 1\nmethod: ilp\nseed: 2\n", ":3: duplicate key 'seed'"},
        {"pin: {\"fc*\": 4, \"conv*\": 8, \"fc*\": 2}\n", ":1: pin: duplicate key 'fc*'"},
        {"budget:\n  avg-bits: 4\n  avg-bits: 3\n", ":3: budget: duplicate key 'avg-bits'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cfg_t c = write_cfg(cases[i].yaml);
        ba_test_run_t r = ba_test_cli("search", "m.onnx", "--data", "x", "--budget", "avg-bits=4", "--config",
                                      c.path, NULL);
        expect_error(&r, 2, cases[i].want);
        ba_test_run_free(&r);
        ba_test_rmtree(c.dir);
    }
}

/* One parser decides the units of a budget everywhere: the flag, the config file and the
 * library agree, and the message lists exactly the suffixes that are accepted. */
Test(cli, budget_units_are_the_same_for_flags_and_config) {
    static const char *const good[] = {"memory=1000",   "memory=1000B", "memory=2KiB",
                                       "memory=1.5MiB", "latency=300",  "latency=2ms",
                                       "latency=250us", "bops=3G",      "bops=3k"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        ba_test_run_t r =
            ba_test_cli("search", "m.onnx", "--data", "x", "--budget", good[i], "--print-config", NULL);
        cr_expect_eq(r.status, 0, "%s: %s", good[i], r.err);
        ba_test_run_free(&r);
        char yaml[128];
        snprintf(yaml, sizeof yaml, "budget: {%.*s: \"%s\"}\n", (int)(strchr(good[i], '=') - good[i]),
                 good[i], strchr(good[i], '=') + 1);
        cfg_t c = write_cfg(yaml);
        r = ba_test_cli("search", "m.onnx", "--data", "x", "--config", c.path, "--print-config", NULL);
        cr_expect_eq(r.status, 0, "%s: %s", yaml, r.err);
        ba_test_run_free(&r);
        ba_test_rmtree(c.dir);
    }
    static const struct {
        const char *v, *want;
    } bad[] = {
        {"memory=1MB", "unknown unit 'MB' in '1MB' (units: B, KiB, MiB, GiB; a bare number is bytes)"},
        {"memory=1KB", "unknown unit 'KB'"},
        {"memory=1GB", "unknown unit 'GB'"},
        {"latency=2s", "unknown unit 's' in '2s' (units: us, \xc2\xb5s, ms; a bare number is microseconds)"},
        {"avg-bits=4b", "unknown unit 'b' in '4b' (units: none: a plain number)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ba_test_run_t r = ba_test_cli("search", "m.onnx", "--data", "x", "--budget", bad[i].v, NULL);
        expect_error(&r, 2, bad[i].want);
        ba_test_run_free(&r);
    }
}

Test(cli, demo_config_is_a_complete_search) {
    ba_test_run_t r =
        ba_test_cli("search", "--config", BA_SOURCE_DIR "/configs/demo.yaml", "--print-config", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "tests/fixtures/digits/cnn_dyn.onnx\"\n"), "%s", r.out);
    cr_expect(strstr(r.out, "tests/fixtures/digits/calib_x.npy\"]\n"), "%s", r.out);
    cr_expect(strstr(r.out, "labels: \"" BA_SOURCE_DIR "/configs/../tests/fixtures/digits/calib_y.npy\""),
              "%s", r.out);
    cr_expect(strstr(r.out, "budget: [\"avg-bits=4\"]\n"), "%s", r.out);
    cr_expect(strstr(r.out, "method: \"ilp+evo\"\nsensitivity: \"hessian\"\n"), "%s", r.out);
    cr_expect(strstr(r.out, "seed: \"0\"\nstudy: \"demo\"\nplan-out: "), "%s", r.out);
    ba_test_run_free(&r);
}

/* ---------------------------------------------------------------- output helpers */

static char *render(void (*print)(const ba_table_t *, FILE *), const ba_table_t *t) {
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    print(t, fp);
    fclose(fp);
    return buf;
}

Test(cli_format, table_pads_columns_text_left_numbers_right) {
    const char *h[] = {"layer", "bits", "kl"};
    ba_table_t *t = ba_table_new(3, h, NULL);
    cr_assert_eq(ba_table_addf(t, "%s\t%d\t%.3f", "conv1.weight", 4, 0.0021), 0);
    cr_assert_eq(ba_table_addf(t, "%s\t%d\t%s", "fc", 8, "-"), 0);
    char *s = render(ba_table_print, t);
    cr_expect_str_eq(s, "layer         bits     kl\n"
                        "conv1.weight     4  0.002\n"
                        "fc               8      -\n");
    free(s);
    s = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&s, &len);
    cr_expect_eq(ba_table_emit(t, "json", fp), 0);
    cr_expect_eq(ba_table_emit(t, "yaml", fp), -1);
    fclose(fp);
    cr_expect(strstr(s, "\"layer\": \"conv1.weight\""), "%s", s);
    free(s);
    json_t *j = ba_table_to_json(t);
    char *js = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    cr_expect_str_eq(
        js,
        "[{\"layer\":\"conv1.weight\",\"bits\":4,\"kl\":0.002},{\"layer\":\"fc\",\"bits\":8,\"kl\":null}]");
    free(js);
    json_decref(j);
    ba_table_free(t);
}

Test(cli_format, csv_quotes_only_fields_that_need_it) {
    const char *h[] = {"layer", "note"};
    ba_table_t *t = ba_table_new(2, h, NULL);
    const char *row[] = {"a,b", "say \"hi\""};
    cr_assert_eq(ba_table_add(t, row), 0);
    const char *row2[] = {"plain", NULL};
    cr_assert_eq(ba_table_add(t, row2), 0);
    char *s = render(ba_table_print_csv, t);
    cr_expect_str_eq(s, "layer,note\n\"a,b\",\"say \"\"hi\"\"\"\nplain,-\n");
    free(s);
    ba_table_free(t);
}

Test(cli_format, real_text_is_the_shortest_that_reads_back) {
    char b[40];
    ba_fmt_real(0.1, b, sizeof b);
    cr_expect_str_eq(b, "0.1");
    ba_fmt_real(1.0 / 3.0, b, sizeof b);
    cr_expect_str_eq(b, "0.33333333333333331");
    cr_expect(strtod(b, NULL) == 1.0 / 3.0);
    ba_fmt_real(NAN, b, sizeof b);
    cr_expect_str_eq(b, "");
    ba_fmt_real(INFINITY, b, sizeof b);
    cr_expect_str_eq(b, "");
}

Test(cli_format, table_print_free_prints_only_a_complete_table) {
    const char *h[] = {"layer"}, *row[] = {"fc"};
    char *s = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&s, &len);
    ba_table_t *t = ba_table_new(1, h, NULL);
    cr_assert_eq(ba_table_add(t, row), 0);
    cr_expect_eq(ba_table_print_free(t, 0, fp), 0);
    t = ba_table_new(1, h, NULL);
    cr_assert_eq(ba_table_add(t, row), 0);
    cr_expect_eq(ba_table_print_free(t, 1, fp), -1);
    fclose(fp);
    cr_expect_str_eq(s, "layer\nfc\n");
    free(s);
}

/* Row i of ba_json_print_rows: {"i": i, "sq": i*i}; fails at row *ctx (when >= 0). */
static int square_row(json_t *o, int i, void *ctx) {
    if (i == *(const int *)ctx) return 1;
    return json_object_set_new(o, "i", json_integer(i)) || json_object_set_new(o, "sq", json_integer(i * i));
}

Test(cli_format, json_rows_print_an_array_or_nothing_when_a_row_fails) {
    char *s = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&s, &len);
    int fail = -1;
    cr_expect_eq(ba_json_print_rows(fp, 3, square_row, &fail), 0);
    cr_expect_eq(ba_json_print_rows(fp, 0, square_row, &fail), 0);
    fail = 1;
    cr_expect_eq(ba_json_print_rows(fp, 3, square_row, &fail), -1);
    fclose(fp);
    cr_expect_str_eq(s,
                     "[\n  {\n    \"i\": 0,\n    \"sq\": 0\n  },\n  {\n    \"i\": 1,\n    \"sq\": 1\n  },\n"
                     "  {\n    \"i\": 2,\n    \"sq\": 4\n  }\n]\n[]\n");
    free(s);
}

Test(cli_format, human_numbers_and_json_nan) {
    char b[32];
    ba_fmt_bytes(3.0 * 1024 * 1024, b, sizeof b);
    cr_expect_str_eq(b, "3.00 MiB");
    ba_fmt_bytes(312, b, sizeof b);
    cr_expect_str_eq(b, "312 B");
    ba_fmt_count(1.2e9, b, sizeof b);
    cr_expect_str_eq(b, "1.20G");
    json_t *n = ba_json_real_or_null(0.0 / 0.0);
    cr_expect(json_is_null(n));
    json_decref(n);
}

Test(cli_format, progress_line_extrapolates_the_eta) {
    char line[256];
    ba_progress_format(line, sizeof line, "search", 50, 200, 10.0);
    cr_expect_str_eq(line, "search  50/200   25%  0:10 elapsed  ETA 0:30");
    ba_progress_format(line, sizeof line, "hessian", 0, 10, 1.0);
    cr_expect_str_eq(line, "hessian  0/10    0%  0:01 elapsed  ETA ?");
    ba_progress_format(line, sizeof line, "evo", 1, 2, 3700.0);
    cr_expect_str_eq(line, "evo  1/2   50%  1:01:40 elapsed  ETA 1:01:40");
    ba_progress_format(line, sizeof line, "trials", 7, 0, 5.0);
    cr_expect_str_eq(line, "trials  7  0:05 elapsed");
}

Test(cli_format, progress_stays_silent_when_stderr_is_not_a_terminal) {
    /* Criterion redirects the test's stderr; a TTY check must disable drawing. */
    ba_progress_t p;
    ba_progress_start(&p, "x", 10, 0);
    cr_expect_eq(p.enabled, isatty(STDERR_FILENO));
    ba_progress_start(&p, "x", 10, 1);
    cr_expect_eq(p.enabled, 0);
}

/* ---------------------------------------------------------------- docs */

Test(cli, docs_name_every_flag_that_help_prints) {
    for (int i = 0; COMMANDS[i]; i++) {
        ba_test_run_t r = ba_test_cli(COMMANDS[i], "--help", NULL);
        char path[512];
        snprintf(path, sizeof path, "%s/docs/%s.md", BA_SOURCE_DIR, COMMANDS[i]);
        uint8_t *doc = NULL;
        size_t size;
        ba_error err;
        cr_assert_eq(ba_file_read(path, &doc, &size, &err), BA_OK, "%s", err.msg);
        for (const char *p = strstr(r.out, "--"); p; p = strstr(p + 2, "--")) {
            char flag[64];
            size_t n = 2;
            while (n < sizeof flag - 1 && (p[n] == '-' || (p[n] >= 'a' && p[n] <= 'z'))) n++;
            memcpy(flag, p, n);
            flag[n] = '\0';
            if (n > 2) cr_expect(strstr((const char *)doc, flag), "docs/%s.md lacks %s", COMMANDS[i], flag);
        }
        free(doc);
        ba_test_run_free(&r);
    }
}
