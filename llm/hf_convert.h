/* A Hugging Face llama-family checkpoint -> a GGUF that libllama loads, the way llama.cpp's
 * convert_hf_to_gguf.py (LlamaModel) does it for the forms below; anything else is refused with
 * BA_ERR_UNSUPPORTED or BA_ERR_INPUT naming the file and what is not supported.
 *
 * The checkpoint is a folder (or a .safetensors / model.safetensors.index.json inside it) that
 * also holds config.json and a tokenizer:
 *  * config.json: model_type "llama" (or architectures ["LlamaForCausalLM"]); hidden_size,
 *    num_hidden_layers, num_attention_heads, num_key_value_heads (default: the heads),
 *    intermediate_size, rms_norm_eps, rope_theta (default 10000), vocab_size,
 *    max_position_embeddings, tie_word_embeddings -> llama.* keys; rope_scaling (or transformers
 *    5's rope_parameters, rope_theta inside; type spelled rope_type or type) as convert's
 *    LlamaModel writes it: "linear" -> llama.rope.scaling.type "linear" + llama.rope.scaling.factor,
 *    "llama3" (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings) -> the
 *    F32 tensor rope_freqs.weight of head_dim/2 frequency divisors (transformers'
 *    _compute_llama3_parameters), "yarn" (factor, original_max_position_embeddings, beta_fast 32
 *    and beta_slow 1 when given: libllama's llama architecture reads no other betas) ->
 *    llama.rope.scaling.type "yarn", .factor, .original_context_length (+ .yarn_beta_fast/slow),
 *    "default" -> nothing; other types (dynamic, longrope, ...), yarn with an attention factor,
 *    mscale or truncate false, hidden_act other than silu, attention/mlp biases and a head_dim
 *    other than hidden_size/heads are refused.
 *  * The tokenizer, the first of (as convert tries them; tokens padded to vocab_size with unused
 *    [PADn] tokens, bos/eos/pad ids from config.json):
 *    - tokenizer.model, SentencePiece (llm/spm.h; convert's _create_vocab_sentencepiece): a BPE
 *      model with byte_fallback -> tokenizer.ggml.model "llama", pre "default": pieces by id with
 *      scores and types (user-defined as normal), added_tokens.json's ids user-defined and
 *      tokenizer_config.json's added_tokens_decoder control (special or looking special) or
 *      user-defined, score -1000; unknown id, and bos/eos/pad when config.json has none, from the
 *      model; add_dummy_prefix false -> add_space_prefix false. Unigram models and models without
 *      byte_fallback are refused (libllama would tokenize them otherwise than sentencepiece).
 *    - tokenizer.json, byte-level BPE with merges and no byte_fallback (Llama 3) ->
 *      tokenizer.ggml.model "gpt2", merges, no scores, added tokens control (special or looking
 *      special) or user-defined; tokenizer.ggml.pre recognised from the normalizer and
 *      pre_tokenizer (none, then Split on Llama 3's regex + ByteLevel without a regex ->
 *      "llama-bpe"); any other pre-tokenizer is refused, not guessed.
 *    - tokenizer.json, a byte-level SentencePiece-style vocabulary (model type BPE, byte_fallback,
 *      no merges): tokens by id, scores 0, types normal/unknown/control (special added
 *      tokens)/user-defined/byte (<0xXX>), unknown from the model's unk_token ->
 *      tokenizer.ggml.model "llama".
 *    tokenizer_config.json's add_bos_token / add_eos_token -> tokenizer.ggml.add_bos_token /
 *    add_eos_token. Other tokenizer models are refused.
 *  * Tensors (F32, F16 or BF16) with HF names mapped by ba_hf_to_gguf_name, shapes checked
 *    against config.json; 1-D tensors widen to F32, matrices keep their type; q_proj/k_proj rows
 *    go from HF's rotate-half order back to llama.cpp's interleaved pairs (convert's permute:
 *    per head, GGUF row 2i+j = HF row j*head_dim/2 + i). */
#ifndef BA_LLM_HF_CONVERT_H
#define BA_LLM_HF_CONVERT_H

#include "core/error.h"
#include "llm/gguf.h"

/* Converts the checkpoint at path to a GGUF written at out (core/outfile: atomic replace). */
ba_status ba_hf_convert(const char *path, const char *out, ba_error *err);

/* 1 when path is a GGUF file (starts with "GGUF"). */
int ba_hf_is_gguf(const char *path);

/* The model of an LLM command: a GGUF is opened as it is; anything else is converted by
 * ba_hf_convert into a fresh temporary GGUF ($TMPDIR, else /tmp) which *out's path names and
 * ba_gguf_free deletes. */
ba_status ba_llm_gguf_open_any(const char *path, ba_gguf_t **out, ba_error *err);

/* A fingerprint of the model at path (a study's record of its input): a GGUF's sha256; for a
 * safetensors checkpoint the sha256 of the lines "NAME SHA256\n" of config.json, the tokenizer
 * (tokenizer.model, else tokenizer.json), tokenizer_config.json and added_tokens.json when present,
 * and each safetensors file in the checkpoint's order (so any change to any of them shows). */
ba_status ba_llm_model_sha256(const char *path, char hex[65], ba_error *err);

/* The files the model at path is read from, for the check that an output is none of them: for a
 * safetensors checkpoint (a folder, a .safetensors file or an index .json) config.json, the
 * tokenizer files the digest covers, the index when there is one and every shard; otherwise path
 * alone (also when the checkpoint cannot be opened: the command reports that itself). *files and
 * each entry are the caller's to free. */
ba_status ba_llm_model_files(const char *path, char ***files, int *n, ba_error *err);

#endif
