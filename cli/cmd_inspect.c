/* `bitalloc inspect`: see docs/inspect.md. Loads the model and prints its
 * quantizable layers (SPEC §2: name, node, op, shape, params, macs, ch_axis)
 * with totals and the graph's inputs/outputs (dynamic dims by their symbol),
 * as a table or JSON. MACs hold for one sample at the declared shapes, or at
 * --data / --input-shape; a model with dynamic dims and neither has them unknown. */
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

/* ["N", 3, "H", "W"]: a dynamic dimension by its symbol (null when it has none). */
static json_t *dims_json(const ba_value_t *v) {
    if (v->ndim < 0) return json_null();
    json_t *a = json_array();
    for (int d = 0; d < v->ndim; d++)
        json_array_append_new(a, v->shape[d] >= 0  ? json_integer(v->shape[d])
                                 : v->dim_param[d] ? json_string(v->dim_param[d])
                                                   : json_null());
    return a;
}

static json_t *io_json(const ba_model_t *m, const int *ids, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) {
        const ba_value_t *v = &m->values[ids[i]];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(v->name));
        json_object_set_new(o, "dtype", json_string(ba_dtype_name(v->dtype)));
        json_object_set_new(o, "shape", shape_json(v->ndim, v->shape));
        json_object_set_new(o, "dims", dims_json(v));
        json_array_append_new(a, o);
    }
    return a;
}

/* *macs = -1 while unknown. */
static void totals(const ba_model_t *m, int64_t *params, int64_t *macs) {
    *params = *macs = 0;
    for (int l = 0; l < m->nlayers; l++) {
        *params += m->layers[l].params;
        if (m->layers[l].macs < 0) *macs = -1;
        if (*macs >= 0) *macs += m->layers[l].macs;
    }
}

static json_t *macs_json(int64_t macs) {
    return macs >= 0 ? json_integer(macs) : json_null();
}

/* {"x": [1, 3, 320, 640]}: the shapes the MACs hold for. */
static json_t *cost_shapes_json(const ba_model_t *m) {
    if (!m->cost_shapes) return json_null();
    json_t *o = json_object();
    for (int k = 0; k < m->ninputs; k++) {
        const ba_value_t *v = &m->values[m->inputs[k]];
        json_object_set_new(o, v->name, shape_json(v->ndim, m->cost_shapes + (size_t)k * BA_MAX_DIMS));
    }
    return o;
}

/* "x=[1, 3, 320, 640], y=[1, 8]" */
static const char *cost_shapes_text(const ba_model_t *m, char *buf, size_t cap) {
    size_t o = 0;
    buf[0] = 0;
    for (int k = 0; k < m->ninputs && o < cap; k++) {
        char sb[256];
        const ba_value_t *v = &m->values[m->inputs[k]];
        o += (size_t)snprintf(buf + o, cap - o, "%s%s=%s", k ? ", " : "", v->name,
                              shape_text(v->ndim, m->cost_shapes + (size_t)k * BA_MAX_DIMS, sb, sizeof sb));
    }
    return buf;
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
        json_object_set_new(o, "macs", macs_json(L->macs));
        json_object_set_new(o, "ch_axis", json_integer(L->ch_axis));
        json_array_append_new(layers, o);
    }
    json_object_set_new(root, "layers", layers);
    json_t *t = json_object();
    json_object_set_new(t, "layers", json_integer(m->nlayers));
    json_object_set_new(t, "params", json_integer(params));
    json_object_set_new(t, "macs", macs_json(macs));
    json_object_set_new(t, "input_shapes", cost_shapes_json(m));
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
               ba_value_shape_str(v, sb, sizeof sb));
    }
}

static int has_dynamic_dims(const ba_model_t *m) {
    for (int k = 0; k < m->ninputs; k++) {
        const ba_value_t *v = &m->values[m->inputs[k]];
        if (v->ndim < 0) return 1;
        for (int d = 1; d < v->ndim; d++)
            if (v->shape[d] < 0) return 1;
    }
    return 0;
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
        char mb[32];
        if (L->macs >= 0)
            snprintf(mb, sizeof mb, "%" PRId64, L->macs);
        else
            snprintf(mb, sizeof mb, "?");
        ba_table_addf(t, "%s\t%s\t%s\t%s\t%" PRId64 "\t%s\t%d", L->name, m->nodes[L->node].name, L->op,
                      shape_text(L->ndim, L->shape, sb, sizeof sb), L->params, mb, L->ch_axis);
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
    char mtext[128], at[1024];
    if (macs >= 0) {
        ba_fmt_count((double)macs, c1, sizeof c1);
        snprintf(mtext, sizeof mtext, "%" PRId64 " MACs (%s) per sample", macs, c1);
    } else {
        snprintf(mtext, sizeof mtext, "MACs unknown");
    }
    printf("\n%d layers, %" PRId64 " params, %s; other initializers %" PRId64 " B (%s); model file %" PRIu64
           " B (%s)\n",
           m->nlayers, params, mtext, m->other_init_bytes, b1, m->file_size, b2);
    if (macs >= 0 && m->cost_shapes)
        printf("MACs at %s\n", cost_shapes_text(m, at, sizeof at));
    else if (macs < 0 && has_dynamic_dims(m))
        printf(
            "MACs depend on the dynamic input dimensions: give --data X.npy or --input-shape NAME=D0xD1x…\n");
    else if (macs < 0)
        printf("MACs not computed: the declared input shapes are too large to run at load (give "
               "--input-shape)\n");
    return BA_EXIT_OK;
}

int ba_cmd_inspect(const ba_cli_opts *o) {
    ba_error err;
    ba_error_clear(&err);
    ba_load_opts_t lo = {.include_embeddings = ba_cli_has(o, "include-embeddings")};
    ba_model_t *m = NULL;
    ba_status st = ba_model_load(ba_cli_get(o, "model"), &lo, &m, &err);
    if (st == BA_OK && (ba_cli_has(o, "data") || ba_cli_has(o, "input-shape"))) {
        const ba_cli_entry *d = ba_cli_find(o, "data"), *is = ba_cli_find(o, "input-shape");
        ba_dataset_t *ds = NULL;
        if (d && d->n) st = ba_dataset_load((const char *const *)d->vals, (int)d->n, &ds, &err);
        if (st == BA_OK)
            st = ba_eval_resolve_costs(m, ds, is ? (const char *const *)is->vals : NULL, is ? (int)is->n : 0,
                                       &err);
        ba_dataset_free(ds);
    }
    if (st != BA_OK) {
        ba_model_free(m);
        ba_cli_error("%s", err.msg);
        return ba_status_exit_code(st);
    }
    int rc = strcmp(ba_cli_get_or(o, "format", "table"), "json") == 0 ? print_json(m) : print_table(m);
    ba_model_free(m);
    return rc;
}
