/* A SentencePiece model file (tokenizer.model: a serialized sentencepiece.ModelProto, see
 * sentencepiece_model.proto) read for what a GGUF vocabulary needs: ModelProto.pieces (1)
 * {piece (1), score (2), type (3)}, trainer_spec (2) {model_type (3), byte_fallback (35), unk_id
 * (40), bos_id (41), eos_id (42), pad_id (43)} and normalizer_spec (3) {name (1), add_dummy_prefix
 * (3), remove_extra_whitespaces (4)}, with the proto's defaults for absent fields. Every other
 * field is skipped.
 *
 * The reader is bounded by the buffer (core/pbwire): a truncated or hostile file gives
 * BA_ERR_INPUT "NAME: FIELD: WHY", never a read outside it; a piece that is empty or holds a NUL
 * byte, an unknown piece type, a score that is not finite and an id past the pieces are refused. */
#ifndef BA_LLM_SPM_H
#define BA_LLM_SPM_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* ModelProto.SentencePiece.Type */
enum {
    BA_SPM_NORMAL = 1,
    BA_SPM_UNKNOWN = 2,
    BA_SPM_CONTROL = 3,
    BA_SPM_USER_DEFINED = 4,
    BA_SPM_UNUSED = 5,
    BA_SPM_BYTE = 6
};
/* TrainerSpec.ModelType */
enum { BA_SPM_UNIGRAM = 1, BA_SPM_BPE = 2, BA_SPM_WORD = 3, BA_SPM_CHAR = 4 };

typedef struct {
    char *piece; /* NUL-terminated UTF-8 */
    float score;
    int type; /* BA_SPM_NORMAL ... BA_SPM_BYTE */
} ba_spm_piece_t;

typedef struct {
    int n;
    ba_spm_piece_t *pieces;
    int model_type;                         /* BA_SPM_UNIGRAM (the default) ... BA_SPM_CHAR */
    int byte_fallback;                      /* default 0 */
    int64_t unk_id, bos_id, eos_id, pad_id; /* defaults 0, 1, 2, -1; -1: none */
    char *normalizer;                       /* normalizer_spec.name ("" when absent) */
    int add_dummy_prefix;                   /* default 1 */
    int remove_extra_whitespaces;           /* default 1 */
} ba_spm_model_t;

/* Parses size bytes at data; name labels errors. */
ba_status ba_spm_parse(const uint8_t *data, size_t size, const char *name, ba_spm_model_t **out,
                       ba_error *err);
/* Reads and parses the file at path. */
ba_status ba_spm_load(const char *path, ba_spm_model_t **out, ba_error *err);
void ba_spm_free(ba_spm_model_t *m);
/* "UNIGRAM", "BPE", "WORD", "CHAR" or "?" */
const char *ba_spm_model_type_name(int t);

#endif
