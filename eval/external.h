/* A user's own task metric (`--evaluator CMD`, docs/evaluator.md): a
 * long-lived child process that scores quantized models. bitalloc writes each
 * configuration as a fake-quant ONNX file into a private temporary folder.
 * Every message is one JSON object on one line. First the handshake:
 *   → {"type": "hello", "protocol": 1}
 *   ← {"direction": "maximize", "name": "ocr_accuracy"}   (both optional; default minimize)
 * then one request and one answer per evaluation:
 *   → {"type": "evaluate", "id": 7, "model": "/tmp/bitalloc-eval-XXXXXX/model.onnx",
 *      "first": 0, "samples": 64, "total": 64}
 *   ← {"score": 0.93, "metrics": {"accuracy": 0.93}}      (score null: the model failed)
 * The child exits when its stdin closes. A child that exits, does not answer
 * within the timeout, or answers anything else ends the search with an error
 * naming --evaluator; the trials stored so far stay, and the study resumes. */
#ifndef BA_EVAL_EXTERNAL_H
#define BA_EVAL_EXTERNAL_H

#include <stdint.h>

#include "core/error.h"

/* Default --evaluator-timeout: seconds one evaluation may take. */
#define BA_EXTEV_DEFAULT_TIMEOUT 600.0
/* Longest answer line accepted. */
#define BA_EXTEV_MAX_LINE (1 << 20)

typedef struct ba_extev ba_extev_t;

/* Starts `/bin/sh -c cmd` with its stdin and stdout connected to bitalloc,
 * makes the temporary folder the models are written to and does the handshake. */
ba_status ba_extev_start(const char *cmd, double timeout_s, ba_extev_t **out, ba_error *err);
/* Stops the child (closes its stdin, waits a moment, then kills it) and removes the folder. NULL-safe. */
void ba_extev_free(ba_extev_t *x);

/* Where the caller writes the model of the next evaluation. */
const char *ba_extev_model_path(const ba_extev_t *x);

/* Sends evaluation `id` of the model at ba_extev_model_path (scored on
 * calibration samples [first, first + samples) of total, a hint the child may
 * ignore) and reads the answer: *score as the child gave it (NaN for null),
 * *accuracy the answer's metrics.accuracy (NaN when absent). Errors:
 * BA_ERR_RUNTIME when the child exited or timed out, BA_ERR_INPUT for an
 * answer that is not a JSON object with a number "score". */
ba_status ba_extev_score(ba_extev_t *x, int64_t id, int64_t first, int64_t samples, int64_t total,
                         double *score, double *accuracy, ba_error *err);

/* 1 when the child's handshake said "maximize". */
int ba_extev_maximize(const ba_extev_t *x);
/* The handshake's "name" ("evaluator" when none). */
const char *ba_extev_name(const ba_extev_t *x);

#endif
