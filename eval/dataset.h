/* Calibration / evaluation data: named model inputs loaded from --data specs
 * (.npy or .npz), sliced into batches along the first (sample) axis, and
 * class labels from --labels. */
#ifndef BA_EVAL_DATASET_H
#define BA_EVAL_DATASET_H

#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

typedef struct ba_dataset ba_dataset_t;

/* Each spec is "file.npy" (one input, name NULL = the model's first input;
 * then it must be the only input), "name=file.npy", or "file.npz" (every
 * member, named by the member). The file kind is told by its content (magic),
 * not its extension. All inputs need rank >= 1 and the same first-axis length;
 * names must be unique. */
ba_status ba_dataset_load(const char *const *specs, int nspecs, ba_dataset_t **out, ba_error *err);
/* Same, for a model whose inputs are names[0..nnames): an input the model does
 * not have ("name=" or an .npz member) is refused before any array of that
 * file is read or inflated. */
ba_status ba_dataset_load_for(const char *const *specs, int nspecs, const char *const *names, int nnames,
                              ba_dataset_t **out, ba_error *err);
void ba_dataset_free(ba_dataset_t *ds); /* NULL-safe */

int64_t ba_dataset_samples(const ba_dataset_t *ds);
int ba_dataset_count(const ba_dataset_t *ds); /* number of inputs */
/* Input name; NULL for a lone unnamed .npy (= the model's first input). */
const char *ba_dataset_name(const ba_dataset_t *ds, int idx);
/* The file an input came from (for messages). */
const char *ba_dataset_path(const ba_dataset_t *ds, int idx);
/* The whole input (borrowed; valid while ds lives). */
const ba_tensor_t *ba_dataset_tensor(const ba_dataset_t *ds, int idx);
/* Index of the input called name, or -1. */
int ba_dataset_find(const ba_dataset_t *ds, const char *name);

/* Rows [start, start+count) of input idx as a view sharing the dataset's
 * memory (*out holds a ref; caller unrefs; it stays valid after ba_dataset_free). */
ba_status ba_dataset_batch(const ba_dataset_t *ds, int64_t start, int64_t count, int idx, ba_tensor_t **out,
                           ba_error *err);

/* Content digest for caches: SHA-256 over, per spec in order, the line
 * "<input name or '-' for unnamed> <sha256 of the file bytes>\n" (an .npz
 * contributes one line "<'*'> <sha256>"). Paths do not enter it: moving a file
 * keeps its caches; renaming an input does not. */
void ba_dataset_sha256(const ba_dataset_t *ds, char hex[65]);

/* Class labels: an integer .npy (int64/int32; int8/uint8 too) of shape (N,)
 * or (N, 1); float, bool or negative labels are refused. *labels is malloc'd. */
ba_status ba_labels_load(const char *path, int64_t **labels, int64_t *n, ba_error *err);

#endif
