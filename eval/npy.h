/* NumPy .npy (format v1/v2/v3) and .npz (zip of .npy, stored or deflated,
 * zip64 as numpy writes it) readers, and a .npy writer. Every malformed input
 * gives BA_ERR_INPUT (or BA_ERR_UNSUPPORTED) naming the file and the fault. */
#ifndef BA_EVAL_NPY_H
#define BA_EVAL_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

/* numpy >= 1.24 refuses headers above 10000 bytes unless told otherwise
 * (numpy.lib.format._MAX_HEADER_SIZE); no supported dtype needs more. */
#define BA_NPY_MAX_HEADER 10000
/* Longest .npz member name accepted (zip allows 65535; numpy names are short). */
#define BA_NPZ_MAX_NAME 1024

/* Loads a .npy file into a new owned tensor (*out; caller unrefs).
 * dtypes: <f4 <f8 <f2 <i8 <i4 |i1 |u1 |b1, C order, any rank 0..BA_MAX_DIMS. */
ba_status ba_npy_load(const char *path, ba_tensor_t **out, ba_error *err);
/* Same from memory; `what` names the source in error messages. The tensor
 * owns a copy of the data (buf may be freed afterwards). */
ba_status ba_npy_load_mem(const void *buf, size_t size, const char *what, ba_tensor_t **out, ba_error *err);
/* Writes t as a version 1.0 .npy (little-endian, C order, 64-byte aligned
 * header as numpy writes) through core/outfile.h; on failure path is left as it was. */
ba_status ba_npy_save(const char *path, const ba_tensor_t *t, ba_error *err);

typedef struct {
    char *name;          /* member name without the ".npy" suffix */
    ba_tensor_t *tensor; /* owned by the npz */
} ba_npz_member_t;

typedef struct {
    int count;
    ba_npz_member_t *members; /* in central-directory order */
} ba_npz_t;

/* Loads every member of a .npz (each must be a .npy; CRC-32 checked). */
ba_status ba_npz_load(const char *path, ba_npz_t **out, ba_error *err);
ba_status ba_npz_load_mem(const void *buf, size_t size, const char *what, ba_npz_t **out, ba_error *err);
/* Same, for data meant for a model whose inputs are names[0..nnames): a member
 * naming no input is refused (BA_ERR_INPUT naming it) before any member is
 * inflated. names NULL: every member is wanted. */
ba_status ba_npz_load_mem_only(const void *buf, size_t size, const char *what, const char *const *names,
                               int nnames, ba_npz_t **out, ba_error *err);
/* Member by name (without ".npy"); NULL when absent. */
ba_tensor_t *ba_npz_get(const ba_npz_t *z, const char *name);
void ba_npz_free(ba_npz_t *z); /* NULL-safe */

#endif
