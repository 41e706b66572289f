/* Checks that run before a command does any work, so that it never destroys one of
 * the user's files and never stores a string that JSON cannot hold. */
#ifndef BA_CLI_GUARD_H
#define BA_CLI_GUARD_H

#include "bitalloc.h"
#include "cli/cli.h"
#include "core/outfile.h"

/* Every option value (flags and config file) is valid UTF-8: names and paths go into the
 * study database, plans and JSON output, which hold UTF-8 only. BA_ERR_INPUT naming the flag. */
ba_status ba_cli_check_utf8(const ba_cli_opts *o, ba_error *err);

/* Appends the files of n data specs ("FILE" or "NAME=FILE": both readings, since a file name
 * may hold '=') to in[*nin..cap) with the given role. */
void ba_cli_data_inputs(const char *const *specs, int n, const char *role, ba_out_input_t *in, int *nin,
                        int cap);

/* Refuses (BA_ERR_INPUT, "FLAG: OUT is the ROLE (PATH); choose another path") an output path
 * that is, by device and inode, one of the command's inputs: the model, data and labels, the
 * plan, the sensitivity file, the latency table, the hardware profile, the config file, the
 * database and its -wal/-shm/-journal files, the inputs of a study's settings s (may be NULL)
 * and extra[0..nextra) (see ba_out_check_inputs for an output that does not exist yet). */
ba_status ba_cli_check_output(const ba_cli_opts *o, const char *flag, const char *out,
                              const ba_study_settings_t *s, const ba_out_input_t *extra, int nextra,
                              ba_error *err);

#endif
