/* The command table: each command of SPEC §8 with its flag table (one per command),
 * its one-line summary and usage, and the help printers built from those tables, so
 * `--help`, the parser and the config loader can never disagree. */
#include <stdarg.h>
#include <string.h>

#include "cli/cli.h"
#include "eval/metrics.h"

#define HELP_FLAG_COL 30 /* column where a flag's help text starts */

/* Flag groups shared by several commands (SPEC §1, §3, §4, §5, §6, §7). */
#define F_MODEL                                                                                              \
    { "model", 0, BA_CLI_T_PATH, BA_CLI_POSITIONAL | BA_CLI_REQUIRED, "MODEL", NULL, "ONNX model file" }
#define F_DATA(req)                                                                                          \
    {"data",                                                                                                 \
     0,                                                                                                      \
     BA_CLI_T_DATA,                                                                                          \
     BA_CLI_REPEAT | (req),                                                                                  \
     "FILE|NAME=FILE|NAME=TYPE:VALUE",                                                                       \
     NULL,                                                                                                   \
     "calibration inputs, .npy/.npz (NAME=FILE per input of a multi-input model); a 0-d array or "           \
     "NAME=TYPE:VALUE (sr=int64:16000) is a constant fed with every sample"},                                \
        F_SAMPLE_AXIS
#define F_SAMPLE_AXIS                                                                                        \
    {                                                                                                        \
        "sample-axis", 0, BA_CLI_T_AXIS, BA_CLI_REPEAT, "NAME=K", NULL,                                      \
            "input NAME holds its samples along axis K (default 0; an RNN state [layers, B, H]: 1)"          \
    }
#define F_LABELS                                                                                             \
    { "labels", 0, BA_CLI_T_PATH, 0, "FILE", NULL, "int64/int32 .npy of class ids" }
#define F_QUANTIZER                                                                                          \
    {"scheme", 0, BA_CLI_T_CHOICE, 0, "S", "symmetric|asymmetric", "weight quantizer (default: symmetric)"}, \
        {"granularity",                                                                                      \
         0,                                                                                                  \
         BA_CLI_T_GRAN,                                                                                      \
         0,                                                                                                  \
         "G",                                                                                                \
         NULL,                                                                                               \
         "per-channel|per-tensor|group:G (default: per-channel)"},                                           \
        {"clip", 0, BA_CLI_T_CHOICE, 0, "C", "max|mse", "weight clipping range (default: max)"}, {           \
        "act-bits", 0, BA_CLI_T_WIDTH, 0, "B", NULL,                                                         \
            "quantize activations to B bits, asymmetric per-tensor (default: float)"                         \
    }
#define F_SENS_SETTINGS                                                                                      \
    {"loss",                                                                                                 \
     0,                                                                                                      \
     BA_CLI_T_CHOICE,                                                                                        \
     0,                                                                                                      \
     "L",                                                                                                    \
     "ce|mse",                                                                                               \
     "loss for hessian/fisher/lrp (default: ce when the objective is kl or top1, the default for a class "   \
     "output, else mse; ce on a Softmax output reads its logits)"},                                          \
        {"tol",                                                                                              \
         0,                                                                                                  \
         BA_CLI_T_FLOAT,                                                                                     \
         0,                                                                                                  \
         "T",                                                                                                \
         NULL,                                                                                               \
         "Hutchinson stops when every layer's relative standard error is <= T (default: 0.05)"},             \
        {"samples", 0, BA_CLI_T_INT, 0, "N", NULL, "at most N Hutchinson probes (default: 200)"}, {          \
        "include-embeddings", 0, BA_CLI_T_FLAG, 0, NULL, NULL, "treat Gather embeddings as layers too"       \
    }
#define F_BITS                                                                                               \
    {                                                                                                        \
        "bits", 0, BA_CLI_T_BITS, 0, "LIST", NULL,                                                           \
            "candidate bit-widths, or the llama.cpp types standing for them (q4_k,q6_k,q8_0) "               \
            "(default: 2,3,4,5,6,8)"                                                                         \
    }
#define F_SEED                                                                                               \
    { "seed", 0, BA_CLI_T_U64, 0, "S", NULL, "random seed (default: 0)" }
#define F_STUDY(req)                                                                                         \
    { "study", 0, BA_CLI_T_STR, (req), "NAME", NULL, "study name in the database" }
#define F_END                                                                                                \
    { NULL, 0, 0, 0, NULL, NULL, NULL }

const ba_cli_flag ba_cli_global_flags[] = {
    {"db", 0, BA_CLI_T_PATH, 0, "PATH|URL", NULL,
     "study database: an SQLite file, or postgresql://USER@HOST:PORT/DB (default: $BITALLOC_DB or "
     "./bitalloc.db)"},
    {"config", 0, BA_CLI_T_PATH, BA_CLI_NO_CONFIG, "FILE.yaml", NULL,
     "read flags from a YAML file (command-line flags win)"},
    {"quiet", 'q', BA_CLI_T_FLAG, 0, NULL, NULL, "print only results and errors"},
    {"verbose", 'v', BA_CLI_T_FLAG, BA_CLI_REPEAT, NULL, NULL, "print more detail"},
    {"print-config", 0, BA_CLI_T_FLAG, BA_CLI_NO_CONFIG, NULL, NULL,
     "print the effective flags (config file + command line) as YAML and exit"},
    {"help", 'h', BA_CLI_T_FLAG, BA_CLI_NO_CONFIG, NULL, NULL, "show this help and exit"},
    {"version", 0, BA_CLI_T_FLAG, BA_CLI_NO_CONFIG, NULL, NULL, "print the version and exit"},
    F_END,
};

static const ba_cli_flag inspect_flags[] = {
    F_MODEL,
    {"format", 0, BA_CLI_T_CHOICE, 0, "F", "table|json", "output format (default: table)"},
    {"include-embeddings", 0, BA_CLI_T_FLAG, 0, NULL, NULL, "list Gather embeddings as layers too"},
    {"data", 0, BA_CLI_T_DATA, BA_CLI_REPEAT, "FILE|NAME=FILE", NULL,
     "MACs at one sample of this data's shapes (dynamic-shape models)"},
    {"input-shape", 0, BA_CLI_T_SHAPE, BA_CLI_REPEAT, "NAME=DIMS", NULL,
     "MACs at this input shape, e.g. x=1x3x320x640 (wins over --data)"},
    F_END,
};

static const ba_cli_flag llm_inspect_flags[] = {
    {"model", 0, BA_CLI_T_PATH, BA_CLI_POSITIONAL | BA_CLI_REQUIRED, "MODEL", NULL,
     "GGUF file, .safetensors file, model.safetensors.index.json, or a folder holding one"},
    {"format", 0, BA_CLI_T_CHOICE, 0, "F", "table|json", "output format (default: table)"},
    {"imatrix", 0, BA_CLI_T_PATH, 0, "FILE", NULL,
     "llama.cpp imatrix (GGUF or legacy .dat): the types that need one become candidates of the tensors it "
     "covers"},
    F_END,
};

#define F_LLM_MODEL                                                                                          \
    {                                                                                                        \
        "model", 0, BA_CLI_T_PATH, BA_CLI_POSITIONAL | BA_CLI_REQUIRED, "MODEL", NULL,                       \
            "GGUF (F32/F16/BF16), or an HF llama safetensors checkpoint: its folder, index.json or "         \
            ".safetensors, beside config.json and a tokenizer.model (SentencePiece) or tokenizer.json "      \
            "(Llama 3 byte-level BPE, or a byte-fallback vocabulary); converted to a temporary GGUF"         \
    }
#define F_LLM_IMATRIX                                                                                        \
    {                                                                                                        \
        "imatrix", 0, BA_CLI_T_PATH, 0, "FILE", NULL,                                                        \
            "llama.cpp imatrix (GGUF or legacy .dat): weights the errors and every quantization"             \
    }
#define F_LLM_TYPES                                                                                          \
    { "types", 0, BA_CLI_T_STR, 0, "LIST", NULL, "candidate ggml types (default: " BA_LLM_DEFAULT_TYPES ")" }

static const ba_cli_flag llm_sensitivity_flags[] = {
    F_LLM_MODEL,
    F_LLM_IMATRIX,
    F_LLM_TYPES,
    {"format", 0, BA_CLI_T_CHOICE, 0, "F", "table|json", "output format (default: table)"},
    {"output", 'o', BA_CLI_T_PATH, 0, "FILE.json", NULL, "write the table as JSON here"},
    F_END,
};

static const ba_cli_flag llm_search_flags[] = {
    F_LLM_MODEL,
    {"text", 0, BA_CLI_T_PATH, BA_CLI_REQUIRED, "FILE", NULL,
     "calibration text: the KL is measured on its tokens, in chunks of --chunk"},
    {"budget", 0, BA_CLI_T_BUDGET, BA_CLI_REPEAT | BA_CLI_REQUIRED, "KEY=VALUE", NULL,
     "avg-bits=4.5 (real bits per quantizable weight) | memory=3MiB (all tensors); all must hold"},
    F_LLM_IMATRIX,
    F_LLM_TYPES,
    {"method", 0, BA_CLI_T_CHOICE, 0, "M", "ilp|evo|ilp+evo|random|uniform",
     "search method (default: ilp+evo)"},
    {"mix-seed", 0, BA_CLI_T_STR, 0, "auto|none|MIX,...", NULL,
     "llama.cpp mixes the evolution also starts from (ilp+evo): auto (default) = the largest of Q2_K ... "
     "Q8_0 "
     "that meets the budgets, none, or named mixes (e.g. Q4_K_M)"},
    {"generations", 0, BA_CLI_T_INT, 0, "N", NULL, "evolution generations (default: 10)"},
    {"offspring", 0, BA_CLI_T_INT, 0, "N", NULL, "offspring per generation (default: 8)"},
    {"chunk", 0, BA_CLI_T_INT, 0, "N", NULL, "tokens per calibration chunk (default: 128)"},
    {"low-fidelity-tokens", 0, BA_CLI_T_INT, 0, "N", NULL,
     "fewest tokens (whole chunks) an offspring is first ranked on, in a fresh window each generation "
     "(default: 256)"},
    {"threads", 0, BA_CLI_T_INT, 0, "N", NULL, "libllama threads (default: 1)"},
    F_SEED,
    F_STUDY(0),
    {"format", 0, BA_CLI_T_CHOICE, 0, "F", "table|json", "output format (default: table)"},
    F_END,
};

static const ba_cli_flag llm_imatrix_flags[] = {
    F_LLM_MODEL,
    {"text", 0, BA_CLI_T_PATH, BA_CLI_REQUIRED, "FILE", NULL,
     "calibration text, decoded in chunks of --chunk"},
    {"output", 'o', BA_CLI_T_PATH, BA_CLI_REQUIRED, "OUT.gguf", NULL,
     "the imatrix (llama-imatrix's GGUF format)"},
    {"chunk", 0, BA_CLI_T_INT, 0, "N", NULL, "tokens per chunk (default: 128)"},
    {"threads", 0, BA_CLI_T_INT, 0, "N", NULL, "libllama threads (default: 1)"},
    F_END,
};

static const ba_cli_flag llm_quantize_flags[] = {
    F_STUDY(BA_CLI_REQUIRED),
    {"trial", 0, BA_CLI_T_TRIAL, 0, "N|best", NULL, "which trial (default: best)"},
    {"output", 'o', BA_CLI_T_PATH, BA_CLI_REQUIRED, "OUT.gguf", NULL, "the quantized GGUF"},
    {"threads", 0, BA_CLI_T_INT, 0, "N", NULL, "llama_model_quantize threads (default: 1)"},
    F_END,
};

static const ba_cli_flag eval_flags[] = {
    F_MODEL,
    F_DATA(BA_CLI_REQUIRED),
    F_LABELS,
    {"plan", 0, BA_CLI_T_PATH, 0, "PLAN.json", NULL, "also evaluate the model quantized by this plan"},
    {"save-output", 0, BA_CLI_T_PATH, 0, "OUT.npy", NULL, "write the (quantized) model's first output"},
    {"metric", 0, BA_CLI_T_CHOICE, 0, "M", BA_METRIC_CHOICES,
     "the metric to name as the objective (default: the search's default for the output)"},
    {"format", 0, BA_CLI_T_CHOICE, 0, "F", "table|json", "output format (default: table)"},
    F_END,
};

static const ba_cli_flag sensitivity_flags[] = {
    F_MODEL,
    F_DATA(0),
    F_LABELS,
    {"method", 0, BA_CLI_T_CHOICE, 0, "M", BA_SENS_METHOD_NAMES, "sensitivity estimator (default: hessian)"},
    {"metric", 0, BA_CLI_T_CHOICE, 0, "M", BA_METRIC_CHOICES,
     "output metric of --method measured, and the objective the default --loss follows (default: kl for a "
     "class output, relmse otherwise)"},
    F_BITS,
    F_SEED,
    F_SENS_SETTINGS,
    {"probe", 0, BA_CLI_T_CHOICE, 0, "P", "all|per-layer",
     "hessian: exact Gauss-Newton part + one probe of the rest over all layers, or plain per-layer "
     "Hutchinson (default: all)"},
    F_QUANTIZER,
    {"format", 0, BA_CLI_T_CHOICE, 0, "F", "table|json|csv", "output format (default: table)"},
    F_END,
};

static const ba_cli_flag search_flags[] = {
    F_MODEL,
    F_DATA(BA_CLI_REQUIRED),
    F_LABELS,
    {"budget", 0, BA_CLI_T_BUDGET, BA_CLI_REPEAT, "KEY=VALUE", NULL,
     "avg-bits=4 | memory=3MiB | bops=1.2G | latency=2ms; all must hold"},
    {"latency-table", 0, BA_CLI_T_PATH, 0, "FILE.csv", NULL, "measured latencies: layer,bits,latency_us"},
    {"hw", 0, BA_CLI_T_HW, 0, "PROFILE", NULL, "roofline profile for latency (configs/hw/)"},
    {"input-shape", 0, BA_CLI_T_SHAPE, BA_CLI_REPEAT, "NAME=DIMS", NULL,
     "MACs/BOPs/latency at this input shape, e.g. x=1x3x320x640 (default: the data's)"},
    {"method", 0, BA_CLI_T_CHOICE, 0, "M", BA_STUDY_METHOD_NAMES, "search method (default: ilp+evo)"},
    {"sensitivity", 0, BA_CLI_T_CHOICE, 0, "M", BA_SENS_METHOD_NAMES,
     "sensitivity estimator (default: hessian)"},
    {"sensitivity-file", 0, BA_CLI_T_PATH, 0, "FILE", NULL,
     "import sensitivities (JSON of 'bitalloc sensitivity', or CSV)"},
    F_SENS_SETTINGS,
    F_QUANTIZER,
    {"backend", 0, BA_CLI_T_CHOICE, 0, "B", "onnx|llama",
     "what stores the weights, so what a width costs in avg-bits and memory: onnx (b bits + scales) or "
     "llama (the real bits per weight of llama.cpp's type for b on the layer's rows: q4_K 4.5) "
     "(default: onnx; llama when --bits names ggml types)"},
    F_BITS,
    {"pin", 0, BA_CLI_T_PIN, BA_CLI_REPEAT, "GLOB=BITS", NULL, "fix matching layers to BITS"},
    {"tie", 0, BA_CLI_T_STR, BA_CLI_REPEAT, "GLOB", NULL, "matching layers share one bit-width"},
    {"sweep", 0, BA_CLI_T_SWEEP, 0, "KEY=FROM:TO:STEP", NULL, "one ILP per budget value: a Pareto front"},
    {"generations", 0, BA_CLI_T_INT, 0, "N", NULL, "evolution generations"},
    {"offspring", 0, BA_CLI_T_INT, 0, "N", NULL, "offspring per generation"},
    {"metric", 0, BA_CLI_T_CHOICE, 0, "M", BA_METRIC_CHOICES,
     "search objective (default: kl for a class output, relmse otherwise)"},
    {"evaluator", 0, BA_CLI_T_STR, 0, "CMD", NULL,
     "search on your own score: a child process speaking JSON lines (docs/evaluator.md)"},
    {"evaluator-timeout", 0, BA_CLI_T_FLOAT, 0, "S", NULL,
     "seconds one --evaluator answer may take (default: 600)"},
    {"validation-fraction", 0, BA_CLI_T_FLOAT, 0, "F", NULL,
     "share of --data kept out of the evolution's ranking for its final choice (default: 0.25; 0: none)"},
    {"extra-seed", 0, BA_CLI_T_CHOICE, 0, "S", "measured|none",
     "ilp+evo: also start from the ILP plan of the measured-sensitivity table (default: measured)"},
    {"lease", 0, BA_CLI_T_FLOAT, 0, "S", NULL,
     "PostgreSQL --db: a claimed measurement's lease, as `worker --lease` (default: 30)"},
    {"max-attempts", 0, BA_CLI_T_INT, 0, "N", NULL,
     "PostgreSQL --db: claims of one measurement before giving up, as `worker --max-attempts` (default: 3)"},
    F_SEED,
    F_STUDY(0),
    {"plan-out", 0, BA_CLI_T_PATH, 0, "PLAN.json", NULL, "write the best plan here"},
    {"format", 0, BA_CLI_T_CHOICE, 0, "F", "table|json", "output format (default: table)"},
    F_END,
};

static const ba_cli_flag resume_flags[] = {
    F_STUDY(BA_CLI_REQUIRED),
    {"plan-out", 0, BA_CLI_T_PATH, 0, "PLAN.json", NULL, "write the best plan here"},
    {"format", 0, BA_CLI_T_CHOICE, 0, "F", "table|json", "output format (default: table)"},
    F_END,
};

static const ba_cli_flag worker_flags[] = {
    F_STUDY(BA_CLI_REQUIRED),
    {"lease", 0, BA_CLI_T_FLOAT, 0, "S", NULL,
     "seconds a claimed measurement stays this worker's without a heartbeat (default: 30)"},
    {"max-attempts", 0, BA_CLI_T_INT, 0, "N", NULL,
     "claims of one measurement before the study gives up on it (default: 3)"},
    {"name", 0, BA_CLI_T_STR, 0, "NAME", NULL, "this worker's name in the queue (default: HOST:PID:RANDOM)"},
    {"plan-out", 0, BA_CLI_T_PATH, 0, "PLAN.json", NULL, "write the best plan here when the study ends"},
    {"format", 0, BA_CLI_T_CHOICE, 0, "F", "table|json", "output format (default: table)"},
    F_END,
};

static const ba_cli_flag studies_flags[] = {
    {"format", 0, BA_CLI_T_CHOICE, 0, "F", "table|csv|json", "output format (default: table)"},
    {"delete", 0, BA_CLI_T_STR, 0, "NAME", NULL, "delete study NAME with its trials"},
    {"rename", 0, BA_CLI_T_STR, 0, "OLD", NULL, "rename study OLD to NEW (--rename OLD NEW)"},
    {"new-name", 0, BA_CLI_T_STR, BA_CLI_POSITIONAL | BA_CLI_NO_CONFIG, "NEW", NULL,
     "the new name of --rename"},
    F_END,
};

static const ba_cli_flag trials_flags[] = {
    F_STUDY(BA_CLI_REQUIRED),
    {"best", 0, BA_CLI_T_FLAG, 0, NULL, NULL, "only the best complete trial"},
    {"where", 0, BA_CLI_T_STR, 0, "EXPR", NULL, "filter, e.g. 'avg_bits<=4 and kl<0.01'"},
    {"sort", 0, BA_CLI_T_STR, 0, "KEY", NULL, "sort by a column (e.g. kl, avg_bits, number)"},
    {"limit", 0, BA_CLI_T_INT, 0, "N", NULL, "print at most N trials"},
    {"pareto", 0, BA_CLI_T_FLAG, 0, NULL, NULL, "only the measured Pareto front of the complete trials"},
    {"objectives", 0, BA_CLI_T_STR, 0, "A,B", NULL,
     "the front's columns, any metric x any budget quantity (default: kl,avg_bits)"},
    {"format", 0, BA_CLI_T_CHOICE, 0, "F", "table|csv|json", "output format (default: table)"},
    F_END,
};

static const ba_cli_flag export_flags[] = {
    F_STUDY(BA_CLI_REQUIRED),
    {"trial", 0, BA_CLI_T_TRIAL, 0, "N|best", NULL, "which trial (default: best)"},
    {"format", 0, BA_CLI_T_CHOICE, BA_CLI_REQUIRED, "F",
     "plan|csv|hawq|modelopt|modelopt-py|llama|onnx-fakequant|onnx-qdq", "export format"},
    {"output", 'o', BA_CLI_T_PATH, BA_CLI_REQUIRED, "PATH", NULL, "output file"},
    {"name-map", 0, BA_CLI_T_PATH, 0, "FILE", NULL,
     "CSV or JSON: ONNX initializer/node name -> module or tensor name (hawq, modelopt, llama)"},
    {"strict", 0, BA_CLI_T_FLAG, 0, NULL, NULL,
     "exit 2 (writing nothing) when a layer cannot be named or applied"},
    {"qdq-profile", 0, BA_CLI_T_CHOICE, 0, "P", "ort|tensorrt",
     "onnx-qdq for ONNX Runtime, or TensorRT (INT8, zero point 0) (default: ort)"},
    F_END,
};

static const ba_cli_flag report_flags[] = {
    F_STUDY(BA_CLI_REQUIRED),
    {"trial", 0, BA_CLI_T_TRIAL, 0, "N|best", NULL,
     "the trial whose per-layer bits are shown (default: best)"},
    {"objectives", 0, BA_CLI_T_STR, 0, "A,B", NULL,
     "the front's columns, metric first (default: kl,avg_bits)"},
    {"output", 'o', BA_CLI_T_PATH, BA_CLI_REQUIRED, "REPORT.html", NULL, "output file"},
    F_END,
};

static const ba_cli_flag quantize_flags[] = {
    F_MODEL,
    {"plan", 0, BA_CLI_T_PATH, BA_CLI_REQUIRED, "PLAN.json", NULL, "plan to apply (bitalloc.plan/1)"},
    {"output", 'o', BA_CLI_T_PATH, BA_CLI_REQUIRED, "OUT.onnx", NULL, "output ONNX file"},
    {"format", 0, BA_CLI_T_CHOICE, 0, "F", "fakequant|qdq",
     "fakequant weights or QDQ pairs (default: fakequant)"},
    {"data", 0, BA_CLI_T_DATA, BA_CLI_REPEAT, "FILE|NAME=FILE|NAME=TYPE:VALUE", NULL,
     "calibration inputs for activation ranges (plans with act_bits, --format qdq); constants as for eval"},
    F_SAMPLE_AXIS,
    F_END,
};

/* Data-free estimators need no --data; the others do. */
static ba_status sensitivity_check(const ba_cli_opts *o, ba_error *err) {
    const char *m = ba_cli_get_or(o, "method", "hessian");
    if (strcmp(m, "weight") != 0 && !ba_cli_has(o, "data"))
        return ba_error_set(err, BA_ERR_INPUT, "--data: required by 'sensitivity --method %s'", m);
    return BA_OK;
}

static ba_status studies_check(const ba_cli_opts *o, ba_error *err) {
    if (ba_cli_has(o, "delete") && ba_cli_has(o, "rename"))
        return ba_error_set(err, BA_ERR_INPUT, "--delete: cannot be combined with --rename");
    if (ba_cli_has(o, "rename") != ba_cli_has(o, "new-name"))
        return ba_error_set(err, BA_ERR_INPUT,
                            ba_cli_has(o, "rename")
                                ? "--rename: give the old and the new name: --rename OLD NEW"
                                : "NEW: a second name needs --rename OLD NEW");
    return BA_OK;
}

static ba_status trials_check(const ba_cli_opts *o, ba_error *err) {
    if (ba_cli_has(o, "objectives") && !ba_cli_has(o, "pareto"))
        return ba_error_set(err, BA_ERR_INPUT, "--objectives: needs --pareto");
    if (ba_cli_has(o, "pareto") && ba_cli_has(o, "best"))
        return ba_error_set(err, BA_ERR_INPUT, "--pareto: cannot be combined with --best");
    return BA_OK;
}

static ba_status search_check(const ba_cli_opts *o, ba_error *err) {
    if (!ba_cli_has(o, "budget") && !ba_cli_has(o, "sweep"))
        return ba_error_set(err, BA_ERR_INPUT, "--budget: required by 'search' (or give --sweep)");
    if (ba_cli_has(o, "sensitivity") && ba_cli_has(o, "sensitivity-file"))
        return ba_error_set(err, BA_ERR_INPUT, "--sensitivity-file: cannot be combined with --sensitivity");
    return BA_OK;
}

const ba_cli_command ba_cli_commands[] = {
    {"inspect", "list a model's quantizable layers (params, MACs, output-channel axis)",
     "bitalloc inspect MODEL [--format table|json] [--data X.npy | --input-shape NAME=D0xD1x...]",
     inspect_flags, ba_cmd_inspect, NULL, "bitalloc inspect net.onnx --format json"},
    {"llm-inspect", "list an LLM checkpoint's tensors with their candidate ggml types and bytes",
     "bitalloc llm-inspect MODEL.gguf|MODEL.safetensors|DIR [--imatrix FILE] [--format table|json]",
     llm_inspect_flags, ba_cmd_llm_inspect, NULL, "bitalloc llm-inspect model.gguf --format json"},
    {"llm-sensitivity", "per-tensor error of each candidate ggml type, by libggml's own quantizers",
     "bitalloc llm-sensitivity MODEL.gguf|DIR [--imatrix FILE] [--types LIST] [--format table|json] [-o "
     "FILE.json]",
     llm_sensitivity_flags, ba_cmd_llm_sensitivity, NULL,
     "bitalloc llm-sensitivity model.gguf --imatrix imatrix.gguf -o errors.json"},
    {"llm-search",
     "per-tensor ggml types of an LLM under a budget: ILP on the errors, evolution on measured KL",
     "bitalloc llm-search MODEL.gguf|DIR --text FILE --budget KEY=VALUE... [--imatrix FILE] [--types LIST]\n"
     "                    [--method M] [--mix-seed auto|none|MIX,...] [--generations N] [--offspring N]\n"
     "                    [--chunk N] [--low-fidelity-tokens N] [--study NAME]",
     llm_search_flags, ba_cmd_llm_search, NULL,
     "bitalloc llm-search model.gguf --text calib.txt --budget avg-bits=4.5 --study q45"},
    {"llm-imatrix", "collect an importance matrix (mean x^2 per input column) of an LLM over a text",
     "bitalloc llm-imatrix MODEL.gguf|DIR --text FILE -o OUT.gguf [--chunk N] [--threads N]",
     llm_imatrix_flags, ba_cmd_llm_imatrix, NULL,
     "bitalloc llm-imatrix model.gguf --text calib.txt -o imatrix.gguf"},
    {"llm-quantize", "write an LLM study's trial as a quantized GGUF (llama_model_quantize)",
     "bitalloc llm-quantize --study NAME [--trial N|best] -o OUT.gguf", llm_quantize_flags,
     ba_cmd_llm_quantize, NULL, "bitalloc llm-quantize --study q45 -o model-q45.gguf"},
    {"eval", "evaluate a model, or FP vs. quantized side by side with --plan",
     "bitalloc eval MODEL --data X.npy [--labels Y.npy] [--plan PLAN.json] [--save-output OUT.npy]\n"
     "              [--format table|json]",
     eval_flags, ba_cmd_eval, NULL, "bitalloc eval net.onnx --data x.npy --labels y.npy --plan plan.json"},
    {"sensitivity", "per-layer sensitivity and cost table Omega(layer, bits)",
     "bitalloc sensitivity MODEL --data X.npy [--labels Y.npy] --method M [--bits LIST] [--seed S]\n"
     "                     [--format table|json|csv]",
     sensitivity_flags, ba_cmd_sensitivity, sensitivity_check,
     "bitalloc sensitivity net.onnx --data x.npy --method hessian --format json"},
    {"search", "find per-layer bit-widths that meet the budgets (ILP, evolution)",
     "bitalloc search MODEL --data X.npy [--labels Y.npy] --budget KEY=VALUE... [--method M]\n"
     "                [--sensitivity M] [--study NAME] [--plan-out PLAN.json] [--seed S] [--config "
     "FILE.yaml]",
     search_flags, ba_cmd_search, search_check,
     "bitalloc search net.onnx --data x.npy --budget avg-bits=4 --study demo --plan-out plan.json"},
    {"resume", "finish an interrupted study with the same result", "bitalloc resume --study NAME",
     resume_flags, ba_cmd_resume, NULL, "bitalloc resume --study demo"},
    {"worker", "join a study as one of many workers (PostgreSQL --db: any number of hosts)",
     "bitalloc worker --study NAME --db postgresql://USER@HOST:PORT/DB [--lease S] [--max-attempts N]\n"
     "                [--plan-out PLAN.json]",
     worker_flags, ba_cmd_worker, NULL, "bitalloc worker --study demo --db postgresql://me@dbhost/studies"},
    {"studies", "list, delete or rename the studies in the database",
     "bitalloc studies [--format table|csv|json] | --delete NAME | --rename OLD NEW", studies_flags,
     ba_cmd_studies, studies_check, "bitalloc --db runs.db studies --rename demo demo-v1"},
    {"trials", "list a study's trials (filter, sort, best)",
     "bitalloc trials --study NAME [--best | --pareto [--objectives A,B]] [--where EXPR] [--sort KEY]\n"
     "                [--limit N] [--format table|csv|json]",
     trials_flags, ba_cmd_trials, trials_check,
     "bitalloc trials --study demo --where 'avg_bits<=4 and kl<0.01' --sort kl"},
    {"export", "write a trial as a plan, CSV, HAWQ, ModelOpt, llama.cpp or ONNX",
     "bitalloc export --study NAME [--trial N|best]\n"
     "                --format plan|csv|hawq|modelopt|modelopt-py|llama|onnx-fakequant|onnx-qdq -o PATH\n"
     "                [--name-map FILE] [--strict] [--qdq-profile ort|tensorrt]",
     export_flags, ba_cmd_export, NULL, "bitalloc export --study demo --format onnx-qdq -o net_q.onnx"},
    {"quantize", "apply a plan to a model: fake-quantized or QDQ ONNX",
     "bitalloc quantize MODEL --plan PLAN.json -o OUT.onnx [--format fakequant|qdq]", quantize_flags,
     ba_cmd_quantize, NULL, "bitalloc quantize net.onnx --plan plan.json -o net_q.onnx --format qdq"},
    {"report", "write a study's HTML report: measured front, per-layer bits, progress",
     "bitalloc report --study NAME -o REPORT.html [--trial N|best] [--objectives A,B]", report_flags,
     ba_cmd_report, NULL, "bitalloc report --study demo -o report.html"},
};
const size_t ba_cli_command_count = sizeof ba_cli_commands / sizeof ba_cli_commands[0];

const ba_cli_command *ba_cli_command_find(const char *name) {
    for (size_t i = 0; i < ba_cli_command_count; i++)
        if (strcmp(ba_cli_commands[i].name, name) == 0) return &ba_cli_commands[i];
    return NULL;
}

void ba_cli_print_usage(FILE *fp) {
    fprintf(fp, "usage: bitalloc [--db PATH] [-q|-v] COMMAND [ARGS...]\n"
                "       bitalloc --help | --version\n\n"
                "Per-layer mixed-precision bit allocation for ONNX models.\n\ncommands:\n");
    for (size_t i = 0; i < ba_cli_command_count; i++)
        fprintf(fp, "  %-15s %s\n", ba_cli_commands[i].name, ba_cli_commands[i].summary);
    fprintf(fp, "\nglobal flags (before or after the command):\n");
    for (const ba_cli_flag *f = ba_cli_global_flags; f->name; f++) {
        char left[64];
        snprintf(left, sizeof left, "%s%c%s--%s%s%s", f->short_name ? "-" : "",
                 f->short_name ? f->short_name : ' ', f->short_name ? ", " : "", f->name,
                 f->metavar ? " " : "", f->metavar ? f->metavar : "");
        fprintf(fp, "  %-*s %s\n", HELP_FLAG_COL - 3, f->short_name ? left : left + 1, f->help);
    }
    fprintf(fp, "\nRun 'bitalloc COMMAND --help' for a command's flags. Docs: docs/COMMAND.md.\n");
}

static void print_flag(const ba_cli_flag *f, FILE *fp) {
    char left[96];
    const char *meta = f->type == BA_CLI_T_CHOICE ? f->choices : f->metavar;
    if (f->flags & BA_CLI_POSITIONAL)
        snprintf(left, sizeof left, "%s", f->metavar);
    else if (f->short_name)
        snprintf(left, sizeof left, "-%c, --%s%s%s", f->short_name, f->name, meta ? " " : "",
                 meta ? meta : "");
    else
        snprintf(left, sizeof left, "--%s%s%s", f->name, meta ? " " : "", meta ? meta : "");
    const char *req = (f->flags & BA_CLI_REQUIRED) ? " [required]" : "";
    const char *rep = (f->flags & BA_CLI_REPEAT) ? " (repeatable)" : "";
    char range[64] = "";
    if (f->type == BA_CLI_T_INT) {
        int64_t lo, hi;
        ba_cli_int_range(f, &lo, &hi);
        snprintf(range, sizeof range, " [%lld..%lld]", (long long)lo, (long long)hi);
    }
    if (strlen(left) > HELP_FLAG_COL - 3)
        fprintf(fp, "  %s\n  %-*s %s%s%s%s\n", left, HELP_FLAG_COL - 3, "", f->help, range, rep, req);
    else
        fprintf(fp, "  %-*s %s%s%s%s\n", HELP_FLAG_COL - 3, left, f->help, range, rep, req);
}

void ba_cli_print_command_help(const ba_cli_command *cmd, FILE *fp) {
    fprintf(fp, "usage: %s\n\n%s.\n\narguments and flags:\n", cmd->synopsis, cmd->summary);
    for (const ba_cli_flag *f = cmd->flags; f->name; f++) print_flag(f, fp);
    fprintf(fp, "\nglobal flags:\n");
    for (const ba_cli_flag *f = ba_cli_global_flags; f->name; f++) print_flag(f, fp);
    fprintf(fp,
            "\nexample:\n  %s\n\nexit codes: 0 success, 1 runtime failure, 2 bad usage or input, "
            "3 infeasible budget\n",
            cmd->example);
}

void ba_cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("bitalloc: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
