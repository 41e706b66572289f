/* The bitalloc CLI's shared types: a table-driven flag parser whose result, ba_cli_opts
 * (key -> list of string values), is also what a --config YAML file produces, so flags
 * and config files share one representation and one validator. */
#ifndef BA_CLI_CLI_H
#define BA_CLI_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "bitalloc.h"

/* Exit codes of SPEC §10. */
enum { BA_EXIT_OK = 0, BA_EXIT_RUNTIME = 1, BA_EXIT_USAGE = 2, BA_EXIT_INFEASIBLE = 3 };

#define BA_CLI_DEFAULT_DB "./bitalloc.db"
#define BA_CLI_DB_ENV "BITALLOC_DB"

/* How a flag's value is checked (the same check runs for flags and config values). */
typedef enum {
    BA_CLI_T_FLAG,   /* no value: present or not */
    BA_CLI_T_STR,    /* any non-empty text */
    BA_CLI_T_PATH,   /* a file path; relative paths in a config file are rebased on its folder */
    BA_CLI_T_HW,     /* a profile name, or a path when it holds a '/' */
    BA_CLI_T_INT,    /* non-negative integer */
    BA_CLI_T_U64,    /* unsigned 64-bit integer (seeds) */
    BA_CLI_T_FLOAT,  /* finite non-negative number */
    BA_CLI_T_CHOICE, /* one of flag->choices ("a|b|c") */
    BA_CLI_T_WIDTH,  /* one bit-width of SPEC §3: 2..8, 16, 32 */
    BA_CLI_T_BITS,   /* comma list of bit-widths */
    BA_CLI_T_BUDGET, /* KEY=VALUE, KEY in avg-bits|memory|bops|latency */
    BA_CLI_T_PIN,    /* NAME_GLOB=BITS */
    BA_CLI_T_SWEEP,  /* KEY=FROM:TO:STEP */
    BA_CLI_T_DATA,   /* FILE, NAME=FILE or NAME=TYPE:VALUE (a constant) */
    BA_CLI_T_AXIS,   /* NAME=K: an input's sample axis */
    BA_CLI_T_GRAN,   /* per-channel|per-tensor|group:G */
    BA_CLI_T_TRIAL,  /* N or best */
    BA_CLI_T_SHAPE,  /* NAME=D0xD1x… (an input's concrete shape) */
} ba_cli_type;

enum {
    BA_CLI_REPEAT = 1u << 0,     /* may be given several times; values accumulate */
    BA_CLI_REQUIRED = 1u << 1,   /* must be given (flag, config file or positional) */
    BA_CLI_POSITIONAL = 1u << 2, /* taken from a bare argument (e.g. MODEL), key = name */
    BA_CLI_NO_CONFIG = 1u << 3,  /* not accepted as a config-file key (--config, --help) */
};

typedef struct {
    const char *name; /* long name without "--"; also the config key and the ba_cli_opts key */
    char short_name;  /* 0 when none */
    ba_cli_type type;
    unsigned flags;      /* BA_CLI_* bits */
    const char *metavar; /* shown in help: "FILE", "KEY=VALUE" … */
    const char *choices; /* "a|b|c" for BA_CLI_T_CHOICE */
    const char *help;    /* one line; default value included in the text */
} ba_cli_flag;

/* One key and its values in order of appearance (a non-repeatable key keeps only its last). */
typedef struct {
    char *key;
    char **vals;
    size_t n, cap; /* cap: slots allocated in vals (grown geometrically) */
} ba_cli_entry;

typedef struct {
    const char *command; /* "search" …; NULL before a command is known */
    ba_cli_entry *e;
    size_t n, cap;
} ba_cli_opts;

struct ba_cli_command;
typedef int (*ba_cli_handler)(const ba_cli_opts *o);
/* Extra usage check beyond the table (e.g. "--budget or --sweep"); fills err, returns status. */
typedef ba_status (*ba_cli_check)(const ba_cli_opts *o, ba_error *err);

typedef struct ba_cli_command {
    const char *name;
    const char *summary;      /* one line for `bitalloc --help` */
    const char *synopsis;     /* SPEC §8 usage line(s) */
    const ba_cli_flag *flags; /* terminated by an entry with name == NULL */
    ba_cli_handler run;
    ba_cli_check check; /* may be NULL */
    const char *example;
} ba_cli_command;

/* ---- opts store (opts.c) ---- */
void ba_cli_opts_init(ba_cli_opts *o);
void ba_cli_opts_free(ba_cli_opts *o);
/* Appends value to key (replace=1 drops earlier values first). */
ba_status ba_cli_opts_add(ba_cli_opts *o, const char *key, const char *value, int replace, ba_error *err);
const ba_cli_entry *ba_cli_find(const ba_cli_opts *o, const char *key);
/* Last value of key, or NULL when absent. */
const char *ba_cli_get(const ba_cli_opts *o, const char *key);
const char *ba_cli_get_or(const ba_cli_opts *o, const char *key, const char *def);
size_t ba_cli_count(const ba_cli_opts *o, const char *key);
const char *ba_cli_value(const ba_cli_opts *o, const char *key, size_t i);
int ba_cli_has(const ba_cli_opts *o, const char *key);
/* Typed getters for values already validated by the parser; def when absent. */
int64_t ba_cli_get_int(const ba_cli_opts *o, const char *key, int64_t def);
uint64_t ba_cli_get_u64(const ba_cli_opts *o, const char *key, uint64_t def);
double ba_cli_get_double(const ba_cli_opts *o, const char *key, double def);

/* Database path: --db (flag or config), else $BITALLOC_DB, else ./bitalloc.db. */
const char *ba_cli_db_path(const ba_cli_opts *o);
/* -1 with --quiet, else the number of -v given. */
int ba_cli_verbosity(const ba_cli_opts *o);

/* ---- parsing (opts.c) ---- */
/* Table lookups over the command's flags then the global flags. */
const ba_cli_flag *ba_cli_flag_find(const ba_cli_command *cmd, const char *name);
/* The accepted range of an integer (BA_CLI_T_INT) flag: its row of opts.c's range table. */
void ba_cli_int_range(const ba_cli_flag *f, int64_t *min, int64_t *max);
/* Checks one value against its flag's type; err names "--NAME". */
ba_status ba_cli_check_value(const ba_cli_flag *f, const char *value, ba_error *err);
/* Parses argv (after the command word) into o. Global flags are accepted too. */
ba_status ba_cli_parse_argv(const ba_cli_command *cmd, int argc, char **argv, ba_cli_opts *o, ba_error *err);
/* Overlays cli on top of file into out (see docs/config.md for the rule). */
ba_status ba_cli_merge(const ba_cli_command *cmd, const ba_cli_opts *file, const ba_cli_opts *cli,
                       ba_cli_opts *out, ba_error *err);
/* Required flags and positionals present, then cmd->check. */
ba_status ba_cli_check_required(const ba_cli_command *cmd, const ba_cli_opts *o, ba_error *err);
/* The merge key of a KEY=VALUE style value ("avg-bits" for "avg-bits=4"); len 0 when none. */
size_t ba_cli_merge_key(const ba_cli_flag *f, const char *value);

/* ---- config files (config.c) ---- */
/* Loads a YAML config for cmd into o (paths rebased on the file's folder). */
ba_status ba_cli_config_load(const ba_cli_command *cmd, const char *path, ba_cli_opts *o, ba_error *err);
/* Writes o as a YAML config that ba_cli_config_load reads back (--print-config). */
void ba_cli_config_print(const ba_cli_command *cmd, const ba_cli_opts *o, FILE *fp);

/* ---- commands (commands.c) ---- */
extern const ba_cli_flag ba_cli_global_flags[];
extern const ba_cli_command ba_cli_commands[];
extern const size_t ba_cli_command_count;
const ba_cli_command *ba_cli_command_find(const char *name);
void ba_cli_print_usage(FILE *fp);
void ba_cli_print_command_help(const ba_cli_command *cmd, FILE *fp);
/* Prints "bitalloc: error: MSG" to stderr. */
void ba_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- one entry point per command (cli/cmd_<name>.c) ---- */
int ba_cmd_inspect(const ba_cli_opts *o);
int ba_cmd_llm_inspect(const ba_cli_opts *o);
int ba_cmd_llm_sensitivity(const ba_cli_opts *o);
int ba_cmd_llm_search(const ba_cli_opts *o);
int ba_cmd_llm_imatrix(const ba_cli_opts *o);
int ba_cmd_llm_quantize(const ba_cli_opts *o);
/* The LLM branches of `resume` and `export` (db open; the study's settings are an LLM study's). */
int ba_cmd_llm_resume(const ba_cli_opts *o, ba_db_t *db);
int ba_cmd_llm_export(const ba_cli_opts *o, ba_db_t *db);
/* 1 when study `name` in db is an LLM study (0 when it is not or cannot be read). */
int ba_cli_study_is_llm(ba_db_t *db, const char *name);
/* libllama from $BA_LLAMA_DIR, else from vendor/llama/node_modules/PACKAGE/bins/linux-x64 next to
 * the executable (where scripts/setup installs it for build/bitalloc). */
ba_status ba_cli_llama_open(ba_llama_t **ll, ba_error *err);
/* The GGUF of the "model" option, the "imatrix" option's file when given, and libllama. */
ba_status ba_cli_llm_open(const ba_cli_opts *o, ba_llama_t **ll, ba_gguf_t **g, ba_imatrix_t **im,
                          ba_error *err);
int ba_cmd_eval(const ba_cli_opts *o);
int ba_cmd_sensitivity(const ba_cli_opts *o);
int ba_cmd_search(const ba_cli_opts *o);
int ba_cmd_resume(const ba_cli_opts *o);
int ba_cmd_worker(const ba_cli_opts *o);
/* --lease and --max-attempts of worker and search (BA_ERR_INPUT naming the flag). */
ba_status ba_cli_check_work(const ba_study_work_t *w, ba_error *err);
int ba_cmd_studies(const ba_cli_opts *o);
int ba_cmd_trials(const ba_cli_opts *o);
int ba_cmd_export(const ba_cli_opts *o);
int ba_cmd_quantize(const ba_cli_opts *o);
int ba_cmd_report(const ba_cli_opts *o);

#endif
