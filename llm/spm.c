#include "llm/spm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pbwire.h"
#include "core/util.h"

/* field numbers of sentencepiece_model.proto */
enum { MP_PIECES = 1, MP_TRAINER = 2, MP_NORMALIZER = 3 };
enum { SP_PIECE = 1, SP_SCORE = 2, SP_TYPE = 3 };
enum { TS_MODEL_TYPE = 3, TS_BYTE_FALLBACK = 35, TS_UNK = 40, TS_BOS = 41, TS_EOS = 42, TS_PAD = 43 };
enum { NS_NAME = 1, NS_ADD_DUMMY_PREFIX = 3, NS_REMOVE_EXTRA_WS = 4 };

const char *ba_spm_model_type_name(int t) {
    static const char *const names[] = {"UNIGRAM", "BPE", "WORD", "CHAR"};
    return t >= 1 && t <= 4 ? names[t - 1] : "?";
}

void ba_spm_free(ba_spm_model_t *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) free(m->pieces[i].piece);
    free(m->pieces);
    free(m->normalizer);
    free(m);
}

static ba_status bad(ba_error *err, const char *name, const char *what) {
    return ba_error_set(err, BA_ERR_INPUT, "%s: not a SentencePiece model: %s", name, what);
}

/* A copy of a protobuf string field as a C string; NULL and an error when it is not UTF-8 text. */
static char *text_copy(const ba_pb_field *f, const char *name, const char *what, ba_error *err) {
    if (memchr(f->payload, 0, f->len) || ba_utf8_invalid_at(f->payload, f->len) != f->len) {
        ba_error_set(err, BA_ERR_INPUT, "%s: %s is not UTF-8 text without NUL bytes", name, what);
        return NULL;
    }
    char *s = malloc(f->len + 1);
    if (!s) {
        ba_error_set(err, BA_ERR_NOMEM, "out of memory: %s", name);
        return NULL;
    }
    memcpy(s, f->payload, f->len);
    s[f->len] = 0;
    return s;
}

/* An int32 proto field (negative values are sign-extended varints). */
static int as_int32(uint64_t v, int64_t *out) {
    int64_t s = (int64_t)v;
    if (s < INT32_MIN || s > INT32_MAX) return 0;
    *out = s;
    return 1;
}

static ba_status parse_piece(const uint8_t *p, const uint8_t *end, int idx, const char *name,
                             ba_spm_piece_t *out, ba_error *err) {
    out->type = BA_SPM_NORMAL;
    out->score = 0.0f;
    ba_pb_field f;
    char what[64];
    snprintf(what, sizeof what, "piece %d", idx);
    while (p < end) {
        if (!ba_pb_next(&p, end, &f))
            return ba_error_set(err, BA_ERR_INPUT, "%s: %s: truncated or malformed", name, what);
        if (f.field == SP_PIECE && f.wire == BA_PB_LEN) {
            free(out->piece);
            if (!(out->piece = text_copy(&f, name, what, err))) return err->code;
        } else if (f.field == SP_SCORE && f.wire == BA_PB_I32) {
            uint32_t bits = (uint32_t)f.value;
            memcpy(&out->score, &bits, 4);
        } else if (f.field == SP_TYPE && f.wire == BA_PB_VARINT) {
            if (f.value < BA_SPM_NORMAL || f.value > BA_SPM_BYTE)
                return ba_error_set(err, BA_ERR_INPUT, "%s: %s: type %llu is not one of 1..6", name, what,
                                    (unsigned long long)f.value);
            out->type = (int)f.value;
        } else if (f.field <= SP_TYPE)
            return ba_error_set(err, BA_ERR_INPUT, "%s: %s: field %u has wire type %d", name, what, f.field,
                                f.wire);
    }
    if (!out->piece || !out->piece[0]) return ba_error_set(err, BA_ERR_INPUT, "%s: %s is empty", name, what);
    if (!isfinite(out->score))
        return ba_error_set(err, BA_ERR_INPUT, "%s: %s ('%s'): score is not finite", name, what, out->piece);
    return BA_OK;
}

static ba_status parse_trainer(const uint8_t *p, const uint8_t *end, const char *name, ba_spm_model_t *m,
                               ba_error *err) {
    ba_pb_field f;
    while (p < end) {
        if (!ba_pb_next(&p, end, &f)) return bad(err, name, "trainer_spec is truncated or malformed");
        if (f.wire != BA_PB_VARINT) continue;
        int64_t v;
        switch (f.field) {
        case TS_MODEL_TYPE:
            if (f.value < BA_SPM_UNIGRAM || f.value > BA_SPM_CHAR)
                return ba_error_set(err, BA_ERR_INPUT, "%s: trainer_spec.model_type %llu is not one of 1..4",
                                    name, (unsigned long long)f.value);
            m->model_type = (int)f.value;
            break;
        case TS_BYTE_FALLBACK: m->byte_fallback = f.value != 0; break;
        case TS_UNK:
        case TS_BOS:
        case TS_EOS:
        case TS_PAD:
            if (!as_int32(f.value, &v))
                return ba_error_set(err, BA_ERR_INPUT, "%s: trainer_spec field %u is not an int32", name,
                                    f.field);
            *(f.field == TS_UNK   ? &m->unk_id
              : f.field == TS_BOS ? &m->bos_id
              : f.field == TS_EOS ? &m->eos_id
                                  : &m->pad_id) = v;
            break;
        default: break;
        }
    }
    return BA_OK;
}

static ba_status parse_normalizer(const uint8_t *p, const uint8_t *end, const char *name, ba_spm_model_t *m,
                                  ba_error *err) {
    ba_pb_field f;
    while (p < end) {
        if (!ba_pb_next(&p, end, &f)) return bad(err, name, "normalizer_spec is truncated or malformed");
        if (f.field == NS_NAME && f.wire == BA_PB_LEN) {
            free(m->normalizer);
            if (!(m->normalizer = text_copy(&f, name, "normalizer_spec.name", err))) return err->code;
        } else if (f.field == NS_ADD_DUMMY_PREFIX && f.wire == BA_PB_VARINT)
            m->add_dummy_prefix = f.value != 0;
        else if (f.field == NS_REMOVE_EXTRA_WS && f.wire == BA_PB_VARINT)
            m->remove_extra_whitespaces = f.value != 0;
    }
    return BA_OK;
}

static ba_status parse(const uint8_t *data, size_t size, const char *name, ba_spm_model_t *m, ba_error *err) {
    const uint8_t *p = data, *end = data + size;
    ba_pb_field f;
    int cap = 0;
    while (p < end) {
        if (!ba_pb_next(&p, end, &f)) return bad(err, name, "truncated or malformed protobuf");
        if (f.field > MP_NORMALIZER) continue;
        if (f.wire != BA_PB_LEN)
            return ba_error_set(err, BA_ERR_INPUT, "%s: not a SentencePiece model: field %u has wire type %d",
                                name, f.field, f.wire);
        if (f.field == MP_PIECES) {
            if (m->n == INT32_MAX / 2) return bad(err, name, "too many pieces");
            if (m->n == cap) {
                int nc = cap ? cap * 2 : 256;
                ba_spm_piece_t *np = realloc(m->pieces, (size_t)nc * sizeof *np);
                if (!np) return ba_error_set(err, BA_ERR_NOMEM, "out of memory: %s", name);
                m->pieces = np;
                cap = nc;
            }
            memset(&m->pieces[m->n], 0, sizeof m->pieces[0]);
            m->n++;
            BA_TRY(parse_piece(f.payload, f.payload + f.len, m->n - 1, name, &m->pieces[m->n - 1], err));
        } else if (f.field == MP_TRAINER) {
            BA_TRY(parse_trainer(f.payload, f.payload + f.len, name, m, err));
        } else {
            BA_TRY(parse_normalizer(f.payload, f.payload + f.len, name, m, err));
        }
    }
    if (m->n == 0) return bad(err, name, "no pieces");
    const int64_t *ids[] = {&m->unk_id, &m->bos_id, &m->eos_id, &m->pad_id};
    static const char *const id_names[] = {"unk_id", "bos_id", "eos_id", "pad_id"};
    for (int i = 0; i < 4; i++)
        if (*ids[i] < -1 || *ids[i] >= m->n)
            return ba_error_set(err, BA_ERR_INPUT, "%s: trainer_spec.%s %lld is not a piece (0..%d) or -1",
                                name, id_names[i], (long long)*ids[i], m->n - 1);
    if (!m->normalizer && !(m->normalizer = ba_strdup("", err))) return err->code;
    return BA_OK;
}

ba_status ba_spm_parse(const uint8_t *data, size_t size, const char *name, ba_spm_model_t **out,
                       ba_error *err) {
    *out = NULL;
    if (!size) return bad(err, name, "the file is empty");
    ba_spm_model_t *m = ba_calloc(1, sizeof *m, err);
    if (!m) return err->code;
    m->model_type = BA_SPM_UNIGRAM;
    m->unk_id = 0, m->bos_id = 1, m->eos_id = 2, m->pad_id = -1;
    m->add_dummy_prefix = 1;
    m->remove_extra_whitespaces = 1;
    ba_status st = parse(data, size, name, m, err);
    if (st != BA_OK) {
        ba_spm_free(m);
        return st;
    }
    *out = m;
    return BA_OK;
}

ba_status ba_spm_load(const char *path, ba_spm_model_t **out, ba_error *err) {
    *out = NULL;
    ba_mapped_t map;
    BA_TRY(ba_file_map(path, &map, err));
    ba_status st = ba_spm_parse(map.data, map.size, path, out, err);
    ba_file_unmap(&map);
    return st;
}
