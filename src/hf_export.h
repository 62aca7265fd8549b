/* hf_export: write the parameters as a Hugging Face LlamaForCausalLM model directory
 * (config.json + model.safetensors, or shards + model.safetensors.index.json) that
 * transformers' from_pretrained and hf.c's readers load back. docs/formats.md describes the
 * directory. */
#ifndef RT_HF_EXPORT_H
#define RT_HF_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "params.h"

/* Write params (t->total floats laid out by t, which params_init built from mc) into dir:
 *   config.json  transformers-v4 keys that transformers 5 also reads (rope_theta and
 *                rope_scaling: null or an object with every key of its type, as used, so
 *                transformers computes the same frequencies), max_position_embeddings =
 *                max_positions (dynamic RoPE: its original length, which transformers reads
 *                there), torch_dtype "bfloat16" or "float32"; with src_dir (the HF model
 *                directory the weights came from, or NULL) also its config.json's
 *                bos_token_id, eos_token_id and pad_token_id as they are;
 *   src_dir's    generation_config.json, tokenizer.json, tokenizer_config.json,
 *                special_tokens_map.json, tokenizer.model: those it has, copied;
 *   weights      every tensor of t in table order (a tied model has no lm_head.weight), as
 *                BF16 (rounded to nearest even) for dtype DTYPE_BF16 or F32 for DTYPE_FP32
 *                (enum cfg_dtype), in model.safetensors when the whole file fits in
 *                shard_bytes (or shard_bytes <= 0), else in model-0000i-of-0000N.safetensors
 *                files of at most shard_bytes each (a single larger tensor gets a file of its
 *                own) plus model.safetensors.index.json.
 * Crash-safe: everything is written into "<dir>.tmp-<pid>", every file and the directory
 * fsync'ed, then renamed to dir (missing parent directories are created). An existing dir is
 * replaced when it is empty or a previous export (holds a config.json): atomically where the
 * file system supports renameat2(RENAME_EXCHANGE), else by two renames. Any other existing
 * dir or file is refused before anything is written. On failure the temporary directory is
 * removed and dir is left as it was. note (notelen bytes, may be NULL) receives one line
 * saying what came from src_dir and what it lacked, or, without src_dir, what was not
 * written. Returns 0, or -1 with one line in err. */
int hf_export(const char *dir, const struct model_config *mc, const struct param_table *t,
              const float *params, int dtype, double shard_bytes, int64_t max_positions, const char *src_dir,
              char *note, size_t notelen, char *err, size_t errlen);

/* Whether hf_export could write dir, without writing it: the same target rules (absent, an
 * empty directory or a previous export), and a directory can be created in its nearest
 * existing ancestor. Returns 0, or -1 with one line in err. */
int hf_export_check(const char *dir, char *err, size_t errlen);

#endif
