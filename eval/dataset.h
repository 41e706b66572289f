/* Calibration / evaluation data: named model inputs loaded from --data specs
 * (.npy or .npz, or constants NAME=TYPE:VALUE), sliced into batches along
 * each input's sample axis (0 unless --sample-axis NAME=K says otherwise),
 * and class labels from --labels. A constant (a 0-d array or TYPE:VALUE) has
 * no sample axis and is fed whole with every batch (SPEC §1). */
#ifndef BA_EVAL_DATASET_H
#define BA_EVAL_DATASET_H

#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

typedef struct ba_dataset ba_dataset_t;

/* Each spec is "file.npy" (one input, name NULL = the model's first input;
 * then it must be the only input), "name=file.npy", "file.npz" (every
 * member, named by the member) or "name=TYPE:VALUE" (a constant, see
 * ba_dataset_parse_const; only when no file of that name exists). The file
 * kind is told by its content (magic), not its extension. A 0-d array is a
 * constant. axes: "NAME=K" specs (--sample-axis; NULL/0 = none) moving
 * input NAME's sample axis to K. Every input that is not a constant must
 * have the same length along its sample axis (the sample count); names must
 * be unique. Errors (BA_ERR_INPUT) name the input and the flag. */
ba_status ba_dataset_load_axes(const char *const *specs, int nspecs, const char *const *axes, int naxes,
                               ba_dataset_t **out, ba_error *err);
/* Same, every sample axis 0. */
ba_status ba_dataset_load(const char *const *specs, int nspecs, ba_dataset_t **out, ba_error *err);
/* Same, for a model whose inputs are names[0..nnames): an input the model does
 * not have ("name=" or an .npz member) is refused before any array of that
 * file is read or inflated. */
/* Every option at once: sample axes (as ba_dataset_load_axes) and the model's
 * input names (as ba_dataset_load_for; NULL names = any). */
ba_status ba_dataset_load_axes_for(const char *const *specs, int nspecs, const char *const *axes, int naxes,
                                   const char *const *names, int nnames, ba_dataset_t **out, ba_error *err);
ba_status ba_dataset_load_for(const char *const *specs, int nspecs, const char *const *names, int nnames,
                              ba_dataset_t **out, ba_error *err);
void ba_dataset_free(ba_dataset_t *ds); /* NULL-safe */

/* The dtypes a constant may take (SPEC §1), as "float32|float64|int64|int32|uint8". */
#define BA_DATASET_CONST_TYPES "float32|float64|int64|int32|uint8"
/* Parses "TYPE:VALUE" (TYPE one of BA_DATASET_CONST_TYPES, VALUE a finite
 * number that the type holds exactly for integers) into a new 0-d tensor. */
ba_status ba_dataset_parse_const(const char *text, ba_tensor_t **out, ba_error *err);
/* 1 when the value part of a --data spec ("FILE" or the text after "NAME=")
 * is a constant TYPE:VALUE rather than a file path (no file of that name). */
int ba_dataset_spec_is_const(const char *value);

int64_t ba_dataset_samples(const ba_dataset_t *ds);
int ba_dataset_count(const ba_dataset_t *ds); /* number of inputs */
/* Input name; NULL for a lone unnamed .npy (= the model's first input). */
const char *ba_dataset_name(const ba_dataset_t *ds, int idx);
/* The file an input came from (for messages). */
const char *ba_dataset_path(const ba_dataset_t *ds, int idx);
/* The sample axis of input idx, or -1 for a constant (fed whole). */
int ba_dataset_sample_axis(const ba_dataset_t *ds, int idx);
/* The whole input (borrowed; valid while ds lives). */
const ba_tensor_t *ba_dataset_tensor(const ba_dataset_t *ds, int idx);
/* Index of the input called name, or -1. */
int ba_dataset_find(const ba_dataset_t *ds, const char *name);

/* Samples [start, start+count) of input idx along its sample axis: a view
 * sharing the dataset's memory when they are contiguous (sample axis 0), else
 * a copy; a constant is given whole (a copy). *out holds a ref; caller unrefs;
 * it stays valid after ba_dataset_free. */
ba_status ba_dataset_batch(const ba_dataset_t *ds, int64_t start, int64_t count, int idx, ba_tensor_t **out,
                           ba_error *err);

/* Content digest for caches: SHA-256 over, per spec in order, the line
 * "<input name or '-' for unnamed> <sha256 of the file bytes>\n" (an .npz
 * contributes one line "<'*'> <sha256>"; a TYPE:VALUE constant the line
 * "<name> const <TYPE>:<VALUE, canonical>\n"), then per input whose sample
 * axis is not 0 the line "axis <name> <K>\n" in input order. Paths do not
 * enter it: moving a file keeps its caches; renaming an input does not. */
void ba_dataset_sha256(const ba_dataset_t *ds, char hex[65]);

/* Class labels: an integer .npy (int64/int32; int8/uint8 too) of shape (N,)
 * or (N, 1); float, bool or negative labels are refused. *labels is malloc'd. */
ba_status ba_labels_load(const char *path, int64_t **labels, int64_t *n, ba_error *err);

#endif
