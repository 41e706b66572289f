/* Protocol Buffers wire format (protobuf.dev/programming-guides/encoding): the one walker over
 * the fields of an encoded message, used by the ONNX loader (model/onnx.c) and the SentencePiece
 * tokenizer.model reader (llm/hf_convert.c). Every read is bounded by end: a truncated or hostile
 * buffer gives 0, never a read past it. Groups (wire types 3, 4) are refused. */
#ifndef BA_CORE_PBWIRE_H
#define BA_CORE_PBWIRE_H

#include <stddef.h>
#include <stdint.h>

enum { BA_PB_VARINT = 0, BA_PB_I64 = 1, BA_PB_LEN = 2, BA_PB_I32 = 5 };

typedef struct {
    uint32_t field;
    int wire;               /* BA_PB_* */
    const uint8_t *start;   /* first byte of the key */
    const uint8_t *payload; /* BA_PB_LEN: first byte of the payload */
    size_t len;             /* BA_PB_LEN: payload length */
    uint64_t value;         /* BA_PB_VARINT: the value; BA_PB_I64 / BA_PB_I32: the little-endian bits */
    const uint8_t *end;     /* one past the field */
} ba_pb_field;

/* A base-128 varint at *p (advanced past it); 1 on success, 0 when truncated or over 10 bytes. */
int ba_pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v);

/* The field at *p (advanced past it); 1 on success, 0 on a malformed or truncated field or a
 * field number 0. */
int ba_pb_next(const uint8_t **p, const uint8_t *end, ba_pb_field *f);

#endif
