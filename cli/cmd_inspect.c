/* `bitalloc inspect`: see docs/inspect.md. Loads the model and prints its
 * quantizable layers (SPEC §2: name, node, op, shape, params, macs, ch_axis)
 * with totals and the graph's inputs/outputs, as a table or JSON. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/format.h"

/* Shape as JSON (null for a dimension not known statically, or an unknown rank). */
static json_t *shape_json(int ndim, const int64_t *shape) {
    if (ndim < 0) return json_null();
    json_t *a = json_array();
    for (int d = 0; d < ndim; d++)
        json_array_append_new(a, shape[d] >= 0 ? json_integer(shape[d]) : json_null());
    return a;
}

/* "[1, ?, 8]" ("?" for a dynamic dimension). */
static const char *shape_text(int ndim, const int64_t *shape, char *buf, size_t cap) {
    if (ndim < 0) return snprintf(buf, cap, "?"), buf;
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && o < cap; d++) {
        if (shape[d] >= 0)
            o += (size_t)snprintf(buf + o, cap - o, "%s%" PRId64, d ? ", " : "", shape[d]);
        else
            o += (size_t)snprintf(buf + o, cap - o, "%s?", d ? ", " : "");
    }
    if (o < cap) snprintf(buf + o, cap - o, "]");
    return buf;
}

static json_t *io_json(const ba_model_t *m, const int *ids, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) {
        const ba_value_t *v = &m->values[ids[i]];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(v->name));
        json_object_set_new(o, "dtype", json_string(ba_dtype_name(v->dtype)));
        json_object_set_new(o, "shape", shape_json(v->ndim, v->shape));
        json_array_append_new(a, o);
    }
    return a;
}

static void totals(const ba_model_t *m, int64_t *params, int64_t *macs) {
    *params = *macs = 0;
    for (int l = 0; l < m->nlayers; l++) {
        *params += m->layers[l].params;
        *macs += m->layers[l].macs;
    }
}

static int print_json(const ba_model_t *m) {
    int64_t params, macs;
    totals(m, &params, &macs);
    json_t *root = json_object();
    json_object_set_new(root, "model", json_string(m->path));
    json_object_set_new(root, "sha256", json_string(m->sha256));
    json_object_set_new(root, "opset", json_integer(m->opset));
    json_object_set_new(root, "ir_version", json_integer(m->ir_version));
    json_object_set_new(root, "producer", m->producer ? json_string(m->producer) : json_null());
    json_object_set_new(root, "inputs", io_json(m, m->inputs, m->ninputs));
    json_object_set_new(root, "outputs", io_json(m, m->outputs, m->noutputs));
    json_t *layers = json_array();
    for (int l = 0; l < m->nlayers; l++) {
        const ba_layer_t *L = &m->layers[l];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(L->name));
        json_object_set_new(o, "node", json_string(m->nodes[L->node].name));
        json_object_set_new(o, "op", json_string(L->op));
        json_object_set_new(o, "shape", shape_json(L->ndim, L->shape));
        json_object_set_new(o, "params", json_integer(L->params));
        json_object_set_new(o, "macs", json_integer(L->macs));
        json_object_set_new(o, "ch_axis", json_integer(L->ch_axis));
        json_array_append_new(layers, o);
    }
    json_object_set_new(root, "layers", layers);
    json_t *t = json_object();
    json_object_set_new(t, "layers", json_integer(m->nlayers));
    json_object_set_new(t, "params", json_integer(params));
    json_object_set_new(t, "macs", json_integer(macs));
    json_object_set_new(t, "other_init_bytes", json_integer(m->other_init_bytes));
    json_object_set_new(t, "model_bytes", json_integer((json_int_t)m->file_size));
    json_object_set_new(root, "totals", t);
    int rc = ba_json_print(stdout, root);
    json_decref(root);
    return rc == 0 ? BA_EXIT_OK : BA_EXIT_RUNTIME;
}

static void print_io(const char *what, const ba_model_t *m, const int *ids, int n) {
    char sb[256];
    for (int i = 0; i < n; i++) {
        const ba_value_t *v = &m->values[ids[i]];
        printf("%-8s %s %s %s\n", i ? "" : what, v->name, ba_dtype_name(v->dtype),
               shape_text(v->ndim, v->shape, sb, sizeof sb));
    }
}

static int print_table(const ba_model_t *m) {
    static const char *const hdr[] = {"name", "node", "op", "shape", "params", "macs", "ch_axis"};
    ba_table_t *t = ba_table_new(7, hdr, NULL);
    if (!t) {
        ba_cli_error("out of memory");
        return BA_EXIT_RUNTIME;
    }
    char sb[256];
    for (int l = 0; l < m->nlayers; l++) {
        const ba_layer_t *L = &m->layers[l];
        ba_table_addf(t, "%s\t%s\t%s\t%s\t%" PRId64 "\t%" PRId64 "\t%d", L->name, m->nodes[L->node].name,
                      L->op, shape_text(L->ndim, L->shape, sb, sizeof sb), L->params, L->macs, L->ch_axis);
    }
    int64_t params, macs;
    totals(m, &params, &macs);
    printf("model    %s (opset %" PRId64 ", sha256 %s)\n", m->path, m->opset, m->sha256);
    print_io("inputs", m, m->inputs, m->ninputs);
    print_io("outputs", m, m->outputs, m->noutputs);
    printf("\n");
    ba_table_print(t, stdout);
    ba_table_free(t);
    char b1[64], b2[64], c1[64];
    ba_fmt_bytes((double)m->other_init_bytes, b1, sizeof b1);
    ba_fmt_bytes((double)m->file_size, b2, sizeof b2);
    ba_fmt_count((double)macs, c1, sizeof c1);
    printf("\n%d layers, %" PRId64 " params, %" PRId64 " MACs (%s) per sample; other initializers %" PRId64
           " B (%s); model file %" PRIu64 " B (%s)\n",
           m->nlayers, params, macs, c1, m->other_init_bytes, b1, m->file_size, b2);
    return BA_EXIT_OK;
}

int ba_cmd_inspect(const ba_cli_opts *o) {
    ba_error err;
    ba_error_clear(&err);
    ba_load_opts_t lo = {.include_embeddings = ba_cli_has(o, "include-embeddings")};
    ba_model_t *m = NULL;
    ba_status st = ba_model_load(ba_cli_get(o, "model"), &lo, &m, &err);
    if (st != BA_OK) {
        ba_cli_error("%s", err.msg);
        return ba_status_exit_code(st);
    }
    int rc = strcmp(ba_cli_get_or(o, "format", "table"), "json") == 0 ? print_json(m) : print_table(m);
    ba_model_free(m);
    return rc;
}
