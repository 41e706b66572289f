/* `bitalloc llm-imatrix`: see docs/llm-imatrix.md. An importance matrix of a GGUF checkpoint over
 * a calibration text, collected through libllama's eval callback and written in llama-imatrix's
 * GGUF format, for llm-sensitivity, llm-search and llama-quantize. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/guard.h"

int ba_cmd_llm_imatrix(const ba_cli_opts *o) {
    ba_error err = {0};
    const char *model = ba_cli_get(o, "model"), *text_path = ba_cli_get(o, "text"),
               *out = ba_cli_get(o, "output");
    int chunk = (int)ba_cli_get_int(o, "chunk", BA_LLM_DEFAULT_CHUNK);
    int threads = (int)ba_cli_get_int(o, "threads", 1);
    ba_llama_t *ll = NULL;
    ba_gguf_t *g = NULL;
    ba_imatrix_t *im = NULL;
    int64_t *counts = NULL;
    char *text = NULL;
    int32_t *tok = NULL;
    int n = 0;
    size_t len = 0;
    ba_status st = chunk < 2     ? ba_error_set(&err, BA_ERR_INPUT, "--chunk: must be at least 2 tokens")
                   : threads < 1 ? ba_error_set(&err, BA_ERR_INPUT, "--threads: must be at least 1")
                                 : BA_OK;
    if (st == BA_OK) {
        ba_out_input_t in[1] = {{text_path, "calibration text"}};
        st = ba_cli_check_output(o, "--output", out, NULL, in, 1, &err);
    }
    /* a GGUF, checked before libllama sees it; a safetensors checkpoint converted to a temporary one */
    if (st == BA_OK) st = ba_llm_gguf_open_any(model, &g, &err);
    if (st == BA_OK) st = ba_file_read(text_path, (uint8_t **)&text, &len, &err);
    if (st == BA_OK && strlen(text) != len)
        st = ba_error_set(&err, BA_ERR_INPUT, "--text %s: holds a NUL byte", text_path);
    if (st == BA_OK) st = ba_cli_llama_open(&ll, &err);
    if (st == BA_OK) st = ba_llama_tokenize(ll, g->path, text, &tok, &n, &err);
    if (st == BA_OK && n < 2)
        st = ba_error_set(&err, BA_ERR_INPUT, "--text %s: %d token(s); at least 2 are needed", text_path, n);
    int cl = chunk < n ? chunk : n, nc = cl ? n / cl : 0;
    if (st == BA_OK) st = ba_llama_collect_imatrix(ll, g->path, tok, cl, nc, threads, &im, &counts, &err);
    if (st == BA_OK) {
        const char *base = strrchr(text_path, '/');
        st = ba_imatrix_write_gguf(im, counts, base ? base + 1 : text_path, nc, cl, out, &err);
    }
    int rc = BA_EXIT_OK;
    if (st != BA_OK) {
        ba_cli_error("%s", err.msg);
        rc = ba_status_exit_code(st);
    } else if (ba_cli_verbosity(o) >= 0)
        fprintf(stderr, "bitalloc: wrote %s (%d weight matrices, %d chunks of %d tokens)\n", out, im->n, nc,
                cl);
    ba_imatrix_free(im);
    free(counts);
    free(tok);
    free(text);
    ba_gguf_free(g);
    return rc;
}
