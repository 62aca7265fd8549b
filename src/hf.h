/* hf: Hugging Face LlamaForCausalLM model directories: config.json -> struct model_config,
 * and model.safetensors (or a model.safetensors.index.json over shards) -> the flat fp32
 * parameter buffer laid out by params.h. */
#ifndef RT_HF_H
#define RT_HF_H

#include <stddef.h>

#include "params.h"

/* Read dir/config.json (transformers v4 rope_theta/rope_scaling or v5 rope_parameters).
 * Rejects, naming the key, what ringtrain does not implement (model_type other than llama,
 * hidden_act other than silu, attention/mlp bias, attention dropout, RoPE types other than
 * default/linear/llama3/dynamic/yarn). Returns 0, or -1 with one line in err. */
int hf_read_config(const char *dir, struct model_config *mc, char *err, size_t errlen);

/* A whole JSON file whose top level is an object (a regular file of at most 64 MiB); NULL
 * with a message naming the file (and the line of a syntax error). cJSON_Delete it. */
struct cJSON *hf_read_json(const char *path, char *err, size_t errlen);

/* Every tensor of t must be in the directory's weights with exactly its shape and a float
 * dtype (F32, BF16, F16, F64); extra tensors (and lm_head.weight of a tied model) are
 * ignored. Returns 0, or -1 naming the file and tensor. */
int hf_check_weights(const char *dir, const struct param_table *t, char *err, size_t errlen);

/* The same checks, then every tensor converted to fp32 into buf + p->offset (buf holds
 * t->total floats); a NaN or infinite value (after the conversion) is an error naming the
 * file, the tensor and the element. */
int hf_load_weights(const char *dir, const struct param_table *t, float *buf, char *err,
                    size_t errlen);

/* The same checks at open, then flat ranges [lo, lo + n) of the parameter vector converted
 * into dst[n] (a rank reads only what it holds); the same errors per range. */
struct hf_reader;
int  hf_reader_open(struct hf_reader **r, const char *dir, const struct param_table *t, char *err, size_t errlen);
int  hf_reader_read(struct hf_reader *r, int64_t lo, int64_t n, float *dst, char *err, size_t errlen);
void hf_reader_close(struct hf_reader *r);

#endif
