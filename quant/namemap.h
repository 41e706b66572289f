/* Names of a model's layers in the world of the tool that reads an export: the
 * PyTorch module path (ModelOpt, HAWQ), a GGUF tensor name (llama.cpp). A name
 * comes from `--name-map FILE` (onnx name → module or tensor name), else from
 * the exporter's conventions: the initializer "<module>.weight" (torch.onnx
 * with named parameters), the node's scope "/layer1/layer1.0/conv1/Conv"
 * (torch.onnx ≥ 1.13) → "layer1.0.conv1", paddle2onnx's "<layer>.w_0", and
 * tf2onnx's "model/dense/MatMul" → "model.dense" (docs/export.md). */
#ifndef BA_QUANT_NAMEMAP_H
#define BA_QUANT_NAMEMAP_H

#include <stddef.h>

#include "core/error.h"
#include "model/model.h"

typedef struct ba_namemap {
    int n;
    char **from; /* ONNX initializer or node name */
    char **to;   /* module path or tensor name */
} ba_namemap_t;

/* Reads FILE: a JSON object {"onnx name": "name", ...} (when the first
 * non-blank character is '{'), else CSV lines "onnx name,name" (RFC 4180
 * quoting; blank lines and lines starting with '#' skipped; a first line
 * "onnx,..." is a header). BA_ERR_INPUT naming the file and line/key. */
ba_status ba_namemap_load(const char *path, ba_namemap_t **out, ba_error *err);
void ba_namemap_free(ba_namemap_t *map);

/* map's name for key, or NULL (map may be NULL). */
const char *ba_namemap_get(const ba_namemap_t *map, const char *key);

/* Where a layer's name came from. */
typedef enum {
    BA_NAME_NONE,  /* no name: the exporter left none (e.g. "onnx::Conv_31" on a node "Conv_0") */
    BA_NAME_MAP,   /* --name-map, by initializer name or node name */
    BA_NAME_PARAM, /* the initializer's own "<module>.weight" / paddle "<layer>.w_0" */
    BA_NAME_SCOPE, /* the consuming node's scope (torch.onnx or tf2onnx) */
} ba_name_src_t;

/* The name of layer li in buf: the map's value as written, else the module
 * path the conventions give. Returns its source (BA_NAME_NONE: buf is ""). */
ba_name_src_t ba_namemap_layer(const ba_model_t *m, int li, const ba_namemap_t *map, char *buf, size_t cap);

/* The module path of a node name by torch.onnx's convention ("/a/a.0/conv1/Conv"
 * → "a.0.conv1": a segment that extends the previous one by ".K" replaces it)
 * or tf2onnx's ("sequential/conv2d/Conv2D" → "sequential.conv2d"); 0 when the
 * name carries no scope ("Conv_0", "/Conv"). */
int ba_namemap_scope(const char *node_name, char *buf, size_t cap);

#endif
