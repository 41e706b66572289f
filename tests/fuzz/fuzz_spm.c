/* libFuzzer target for the SentencePiece model reader (llm/spm.c, a tokenizer.model's
 * ModelProto): any byte string must parse into pieces that are non-empty NUL-terminated UTF-8
 * with finite scores and known types and ids among them, or fail with an error that names the
 * source; never crash, leak, hang or read outside the buffer (ASan/UBSan). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/util.h"
#include "llm/spm.h"

#define FUZZ_NAME "fuzz.model"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ba_error err;
    memset(&err, 0, sizeof err);
    ba_spm_model_t *m = NULL;
    if (ba_spm_parse(data, size, FUZZ_NAME, &m, &err) == BA_OK) {
        if (!m || m->n < 1 || !m->normalizer) __builtin_trap();
        for (int i = 0; i < m->n; i++) {
            const ba_spm_piece_t *p = &m->pieces[i];
            if (!p->piece[0] || !ba_utf8_valid(p->piece) || !isfinite(p->score) || p->type < BA_SPM_NORMAL ||
                p->type > BA_SPM_BYTE)
                __builtin_trap();
        }
        const int64_t ids[] = {m->unk_id, m->bos_id, m->eos_id, m->pad_id};
        for (int i = 0; i < 4; i++)
            if (ids[i] < -1 || ids[i] >= m->n) __builtin_trap();
        if (m->model_type < BA_SPM_UNIGRAM || m->model_type > BA_SPM_CHAR) __builtin_trap();
        ba_spm_free(m);
    } else {
        if (m || err.code == BA_OK || strncmp(err.msg, FUZZ_NAME ": ", strlen(FUZZ_NAME) + 2) != 0)
            __builtin_trap();
    }
    return 0;
}
