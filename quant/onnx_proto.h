/* Internal to quant/: building blocks for editing an unpacked ONNX model
 * (protobuf-c) shared by the writers (onnx_write.c) and the opset upgrade
 * (onnx_upgrade.c). Every allocation goes through ba_malloc so the pieces
 * free with onnx__*__free_unpacked like the parsed ones. */
#ifndef BA_QUANT_ONNX_PROTO_H
#define BA_QUANT_ONNX_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "onnx/onnx.pb-c.h"

/* A new tensor of dtype (ONNX TensorProto.DataType) holding a copy of bytes as raw_data. */
Onnx__TensorProto *ba_onnxw_tensor(const char *name, int32_t dtype, int ndim, const int64_t *dims,
                                   const void *bytes, size_t nbytes, ba_error *err);
/* Appends t (owned; freed on failure; t NULL = an earlier allocation failed) to g's initializers. */
ba_status ba_onnxw_add_init(Onnx__GraphProto *g, Onnx__TensorProto *t, ba_error *err);
Onnx__AttributeProto *ba_onnxw_int_attr(const char *name, int64_t v, ba_error *err);
/* Inserts a node with one output at position pos of g's node list; takes the attributes. */
ba_status ba_onnxw_insert_node(Onnx__GraphProto *g, size_t pos, const char *op, const char *name,
                               const char *const *ins, int nin, const char *out, Onnx__AttributeProto **attrs,
                               int nattr, ba_error *err);
/* The tensor named name: an initializer (*init_idx set) or a Constant node's `value` (*node_idx set); NULL if
 * neither. */
Onnx__TensorProto *ba_onnxw_find_const(Onnx__GraphProto *g, const char *name, size_t *init_idx,
                                       size_t *node_idx);

/* Rewrites a model of default-domain opset 9..12 into the opset-13 form of
 * every op whose attributes became inputs or whose meaning changed on the
 * way (the table in onnx_upgrade.c), then sets its opset to 13 and its IR
 * version to at least 7. Subgraphs (If/Loop bodies) are rewritten too.
 * BA_ERR_UNSUPPORTED names the node when a form has no opset-13 equivalent
 * (e.g. nearest Upsample with scales computed at run time). src is for messages. */
ba_status ba_onnxw_upgrade_to_13(Onnx__ModelProto *m, int64_t from_opset, const char *src, ba_error *err);

#endif
