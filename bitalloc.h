/* libbitalloc: the public API. The CLI includes only this header. */
#ifndef BITALLOC_H
#define BITALLOC_H

#define BA_VERSION "0.1.0"

#include "core/error.h"
#include "core/ggml_types.h"
#include "core/outfile.h"
#include "core/tensor.h"
#include "core/util.h"
#include "db/db.h"
#include "eval/dataset.h"
#include "eval/evaluate.h"
#include "eval/metrics.h"
#include "eval/npy.h"
#include "llm/gguf.h"
#include "llm/hf_convert.h"
#include "llm/imatrix.h"
#include "llm/kl.h"
#include "llm/llama.h"
#include "llm/llm_model.h"
#include "llm/safetensors.h"
#include "llm/variants.h"
#include "model/grad.h"
#include "model/model.h"
#include "quant/apply.h"
#include "quant/cost.h"
#include "quant/export.h"
#include "quant/onnx_write.h"
#include "quant/plan.h"
#include "quant/quant.h"
#include "quant/wcache.h"
#include "sensitivity/sensitivity.h"
#include "study/study.h"

#endif
