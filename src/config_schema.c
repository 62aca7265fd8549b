/* config_schema: THE table of job-file keys. Defaults, parsing, bounds, --help-config and
 * docs/config.md all come from these rows; add a key here (and its field in config.h). */
#include "config_schema.h"

#include <math.h>
#include <stddef.h>

#include "config.h"
#include "params.h"

#define F(m)      offsetof(struct cfg, m)
#define NOBOUND   -INFINITY, INFINITY, 0, 0
#define GE(x)     (x), INFINITY, 0, 0
#define GT(x)     (x), INFINITY, 1, 0
#define IN(lo, hi) (lo), (hi), 0, 0
#define COUNT_MAX 1e12 /* steps and cadences: any real run is far below, and products stay in int64 */
#define KEY(name, type, field, bounds, choices, def, doc) \
    { name, type, F(field), 0, bounds, choices, def, doc }

const struct cfg_key cfg_schema[] = {
    { "model.init", CFGT_INIT, F(model.init), F(model.hf_dir), NOBOUND, NULL, "random",
      "Where the weights come from: `random` (seeded by model.seed, shaped by the model.* keys) "
      "or `hf:<dir>`, a Hugging Face checkpoint directory whose config.json sets the shape." },
    KEY("model.seed", CFGT_UINT64, model.seed, NOBOUND, NULL, "1234",
        "Seed of the random weight initialization (unused with `hf:`)."),
    KEY("model.vocab_size", CFGT_INT, model.vocab_size, IN(2, MODEL_MAX_VOCAB), NULL, "256",
        "Number of token ids; every id in the token files must be below it."),
    KEY("model.dim", CFGT_INT, model.dim, IN(2, MODEL_MAX_DIM), NULL, "64",
        "Width of the residual stream; a multiple of model.n_heads giving an even head size."),
    KEY("model.n_layers", CFGT_INT, model.n_layers, IN(1, MODEL_MAX_LAYERS), NULL, "2",
        "Number of transformer blocks."),
    KEY("model.n_heads", CFGT_INT, model.n_heads, IN(1, MODEL_MAX_HEADS), NULL, "4",
        "Number of query heads; a multiple of model.n_kv_heads."),
    KEY("model.n_kv_heads", CFGT_INT, model.n_kv_heads, IN(1, MODEL_MAX_HEADS), NULL, "4",
        "Number of key/value heads (grouped-query attention when fewer than model.n_heads)."),
    KEY("model.ffn_dim", CFGT_INT, model.ffn_dim, IN(1, MODEL_MAX_FFN), NULL, "176",
        "Hidden width of the SwiGLU feed-forward layer."),
    KEY("model.norm_eps", CFGT_FLOAT, model.norm_eps, GT(0), NULL, "1e-5",
        "Epsilon added to the mean square inside RMSNorm."),
    KEY("model.rope_theta", CFGT_FLOAT, model.rope_theta, GT(0), NULL, "10000",
        "Base of the rotary position embedding frequencies. With `hf:` it overrides config.json's (the start-up "
        "line says so; an export writes the value used)."),
    KEY("model.rope_scaling.type", CFGT_ENUM, model.rope.type, NOBOUND, "default|linear|llama3|dynamic|yarn",
        "default",
        "RoPE scaling, computed as Hugging Face transformers does (docs/rope.md): `linear` divides the frequencies "
        "by factor, `llama3` (Llama 3.1) scales the long wavelengths, `dynamic` (NTK) raises theta for "
        "data.seq_len-token sequences, `yarn` blends scaled and unscaled frequencies and scales attention. With "
        "`hf:`, giving any model.rope_scaling key replaces config.json's scaling with the job's (type then "
        "required); a key the type does not use is an error."),
    KEY("model.rope_scaling.factor", CFGT_FLOAT, model.rope.factor, GT(0), NULL, "1",
        "Context extension factor; required by every type but `default`."),
    KEY("model.rope_scaling.original_max_position_embeddings", CFGT_INT64, model.rope.original_max_pos,
        IN(1, 1e15), NULL, "1",
        "Context length of the original pretraining; required by `llama3`, `dynamic` and `yarn` (with `hf:` "
        "config.json's max_position_embeddings when not given, as transformers does; an export of `dynamic` "
        "writes it as max_position_embeddings, which is where transformers reads it)."),
    KEY("model.rope_scaling.low_freq_factor", CFGT_FLOAT, model.rope.low_freq_factor, GT(0), NULL, "1",
        "`llama3` (required): wavelengths longer than original_max_position_embeddings / low_freq_factor are "
        "divided by factor."),
    KEY("model.rope_scaling.high_freq_factor", CFGT_FLOAT, model.rope.high_freq_factor, GT(0), NULL, "4",
        "`llama3` (required): wavelengths shorter than original_max_position_embeddings / high_freq_factor are "
        "kept; greater than low_freq_factor."),
    KEY("model.rope_scaling.beta_fast", CFGT_FLOAT, model.rope.beta_fast, GT(0), NULL, "32",
        "`yarn`: rotations over the original context below which a frequency is fully scaled (with beta_slow, "
        "the ramp's ends)."),
    KEY("model.rope_scaling.beta_slow", CFGT_FLOAT, model.rope.beta_slow, GT(0), NULL, "1",
        "`yarn`: the other end of the ramp between scaled and unscaled frequencies."),
    KEY("model.rope_scaling.mscale", CFGT_FLOAT, model.rope.mscale, GE(0), NULL, "0",
        "`yarn`: with mscale_all_dim (both non-zero), the attention factor is "
        "(0.1 mscale ln factor + 1) / (0.1 mscale_all_dim ln factor + 1); 0 = not given."),
    KEY("model.rope_scaling.mscale_all_dim", CFGT_FLOAT, model.rope.mscale_all_dim, GE(0), NULL, "0",
        "`yarn`: see mscale; 0 = not given."),
    KEY("model.rope_scaling.attention_factor", CFGT_FLOAT, model.rope.attention_factor, GE(0), NULL, "0",
        "`yarn`: the factor multiplying cos and sin (so q.k by its square); 0 = computed: from the mscales, "
        "else 0.1 ln factor + 1 (1 when factor <= 1)."),
    KEY("model.rope_scaling.truncate", CFGT_BOOL, model.rope.truncate, NOBOUND, NULL, "true",
        "`yarn`: round the ramp's ends outwards to whole dimensions."),
    KEY("model.tie_embeddings", CFGT_BOOL, model.tie_embeddings, NOBOUND, NULL, "false",
        "Use the token embedding matrix as the output projection too."),

    KEY("data.train", CFGT_PATHLIST, data.train, NOBOUND, NULL, NULL,
        "Token file (.npy of uint16, int32 or uint32), list of them or directory of them, read as one "
        "stream; required unless data.synthetic is set."),
    KEY("data.eval", CFGT_PATHLIST, data.eval, NOBOUND, NULL, "\"\"",
        "Token file, list or directory for evaluation; empty means no evaluation."),
    KEY("data.seq_len", CFGT_INT64, data.seq_len, IN(2, 1e15), NULL, "256",
        "Tokens per training sequence (the context length); split across the parallel.cp ranks."),
    KEY("data.sampling", CFGT_ENUM, data.sampling, NOBOUND, "sequential|random", "sequential",
        "Order of the training sequences: `sequential` front to back, `random` drawn with data.seed."),
    KEY("data.seed", CFGT_UINT64, data.seed, NOBOUND, NULL, "0",
        "Seed of the `random` sampling order and of the synthetic task."),
    KEY("data.synthetic", CFGT_ENUM, data.synthetic, NOBOUND, "none|copy", "none",
        "Generated task instead of data.train: `copy` = random tokens whose second half repeats the first, loss on the copied half only (a long-range recall test)."),

    KEY("train.steps", CFGT_INT64, train.steps, IN(1, COUNT_MAX), NULL, "100",
        "Number of optimizer steps to run."),
    KEY("train.seqs_per_step", CFGT_INT, train.seqs_per_step, IN(1, 1 << 20), NULL, "1",
        "Sequences whose gradients are summed into one optimizer step (the global batch)."),
    KEY("train.lr", CFGT_FLOAT, train.lr, GT(0), NULL, "3e-4",
        "Peak learning rate, reached at the end of the warmup."),
    KEY("train.min_lr", CFGT_FLOAT, train.min_lr, GE(0), NULL, "0",
        "Learning rate at the end of the cosine decay; at most train.lr."),
    KEY("train.schedule", CFGT_ENUM, train.schedule, NOBOUND, "constant|cosine", "cosine",
        "Learning rate after the warmup: `constant` stays at train.lr, "
        "`cosine` decays to train.min_lr at train.steps."),
    KEY("train.warmup_steps", CFGT_INT64, train.warmup_steps, IN(0, COUNT_MAX), NULL, "0",
        "Steps of linear learning-rate warmup at the start (0 = none); at most train.steps."),
    { "train.betas", CFGT_PAIR, F(train.beta1), F(train.beta2), 0, 1, 0, 1, NULL, "[0.9, 0.95]",
      "AdamW decay rates [beta1, beta2] of the first and second moment estimates." },
    KEY("train.eps", CFGT_FLOAT, train.eps, GT(0), NULL, "1e-8",
        "AdamW epsilon, added to the square root of the second moment."),
    KEY("train.weight_decay", CFGT_FLOAT, train.weight_decay, GE(0), NULL, "0.1",
        "AdamW decoupled weight decay per unit of learning rate (0 = none)."),
    KEY("train.grad_clip", CFGT_FLOAT, train.grad_clip, GE(0), NULL, "1.0",
        "Largest global L2 norm of the gradient; larger ones are scaled down to it (0 = no clipping)."),
    KEY("train.max_bad_steps", CFGT_INT, train.max_bad_steps, IN(1, 1 << 20), NULL, "5",
        "Steps in a row with a non-finite loss or gradient norm (each skipped, not applied) after which the run stops with an error."),

    KEY("parallel.cp", CFGT_INT, parallel.cp, IN(0, 1 << 20), NULL, "0",
        "Context-parallel degree, the ranks that share one sequence (0 = all ranks)."),
    KEY("parallel.attention", CFGT_ENUM, parallel.attention, NOBOUND, "zigzag|ring", "zigzag",
        "Ring attention layout: `zigzag` balances the causal work across ranks, "
        "`ring` gives each rank one contiguous chunk."),
    KEY("parallel.transport", CFGT_ENUM, parallel.transport, NOBOUND, "auto|nccl|mpi", "auto",
        "How the CUDA backend moves K/V and gradients: `nccl`, `mpi` (staged through pinned host memory; lets several ranks share one GPU), or `auto` = nccl when every rank has a GPU of its own."),
    KEY("parallel.zero", CFGT_INT, parallel.zero, IN(0, 3), NULL, "1",
        "ZeRO stage, over all ranks: `0` every rank keeps all fp32 weights, gradients and AdamW moments; `1` each rank keeps the fp32 master weights and moments of its 1/world part of every unit (embedding, layer, head) and updates only those (bf16 working weights of the whole model stay resident); `2` also the gradients: each layer's gradients are reduce-scattered as soon as its backward ends and only two layer buffers are full size; `3` also the working weights: each layer's are all-gathered just before use (forward and backward) and dropped after. On 1 rank the stages are the same but for `3` with `memory.optimizer: host`: each layer's bf16 working weights are made from the host master (copied over PCIe, the next layer's while one runs) just before use instead of resident, which takes a 7B model's 12 GiB of layer weights off the device. Checkpoints are the same files whatever the stage."),
    KEY("parallel.timeout_s", CFGT_FLOAT, parallel.timeout_s, IN(1, 1e6), NULL, "600",
        "Longest wait for other ranks, in seconds, of any operation: ring exchanges, gradient and control collectives, the waits of a checkpoint save (every rank writes its own slices, then waits for the slowest: keep it above the longest write of one rank's share). A rank that stops answering (stopped, hung, dead) ends the job after this long with exit 1 and a message naming it (the ranks that do not answer a roll call); while waiting, a SIGINT ends the job within a few seconds (exit 130)."),

    KEY("memory.checkpointing", CFGT_ENUM, memory.checkpointing, NOBOUND, "none|full|selective|auto",
        "selective",
        "Activation checkpointing: `none` keeps all activations, `full` recomputes each block "
        "in the backward pass (the ring attention forward too), `selective` recomputes only the "
        "cheap parts (each layer's attention output is saved), `auto` saves the attention output "
        "of as many layers as the device and host memory hold (after memory.offload's share) and "
        "recomputes the others' as `full` does: selective when it fits, full when nothing else does."),
    KEY("memory.optimizer", CFGT_ENUM, memory.optimizer, NOBOUND, "device|host", "device",
        "Where the fp32 master weights, AdamW moments and reduced gradients of this rank's part live: `device`, or `host` (pinned host memory; AdamW runs on the rank's CPU cores; the GPU keeps bf16 weights and two layers of gradient buffers, each layer's gradients copied out as its backward ends)."),
    KEY("memory.offload", CFGT_ENUM, memory.offload, NOBOUND, "none|auto|all", "auto",
        "Activation offload, token-wise: the last tokens of every layer's saved input and attention "
        "output wait for the backward in pinned host memory, copied out and back (one layer ahead) "
        "while other layers compute. `auto` offloads as few tokens (in steps of 256) as make the job "
        "fit the GPU (none when it fits; never on the cpu backend), `all` every token, `none` none. "
        "Needs memory.checkpointing full or selective; on the cpu backend `all` copies host to host "
        "(for tests)."),
    KEY("memory.tile_tokens", CFGT_INT, memory.tile_tokens, GE(0), NULL, "0",
        "Tokens per tile of the token-wise layer work (norms, q/k/v/o projections, RoPE, the MLP, "
        "the head's final norm) in the forward, the recomputation and the backward: their "
        "scratch and gradients are sized by the tile, not by the tokens per rank (attention's "
        "q, k, v, output and gradients stay whole). `0` = auto, chosen by the memory plan: the tokens "
        "per rank split evenly into tiles of at most 16384, 8192 or 4096 tokens, the largest whose plan "
        "fits the device and the host and keeps as many attention outputs (checkpointing auto) as 4096 "
        "does (larger tiles make larger GEMMs: 7B at 64K on an H200, 48.0% MFU at 16384, 47.3% at 4096; "
        "their scratch costs device memory, which offload then takes from the host). Results are the same "
        "up to float summation order. Ignored under memory.checkpointing none (nothing is "
        "recomputed, so every activation is kept whole)."),
    KEY("memory.attention_block_tokens", CFGT_INT, memory.attention_block_tokens, GE(0), NULL, "0",
        "Query rows and keys per attention call: every block of the ring is computed in calls of "
        "at most this many query rows against this many keys, merged through the log-sum-exp "
        "in fp32, so the attention workspace (cuDNN's fp32 dQ accumulator and staging) and the "
        "block output are sized by it, not by the tokens per rank. On one rank (under "
        "checkpointing) the layers then run attention query block by query block: q, the "
        "attention output (unless saved) and their gradients are sized by it too, only k, v "
        "and fp32 dK/dV accumulators stay whole (7B at 512K: 15 GiB less). `0` = auto: 16384 "
        "on a ring of several ranks, and on one rank past 131072 tokens; up to there one rank "
        "makes one direct call over all its tokens (the fastest). A value >= the tokens per "
        "rank is one call per block. Results are the same up to float summation order."),
    KEY("memory.reserve_gib", CFGT_FLOAT, memory.reserve_gib, GE(0), NULL, "1.5",
        "GiB of GPU memory that `memory.offload: auto` leaves free for the libraries' "
        "workspaces when it decides how many tokens of each layer to keep on the GPU."),
    KEY("memory.host_reserve_gib", CFGT_FLOAT, memory.host_reserve_gib, GE(0), NULL, "8",
        "GiB of a node's host memory left to the OS, the page cache and other processes when the host "
        "budget is the machine's physical memory (`device.host_memory_gib: 0`): `memory.checkpointing: auto` "
        "and the plan's host check count on the physical memory less this. An explicit "
        "`device.host_memory_gib` is the budget itself."),

    KEY("device.backend", CFGT_ENUM, device.backend, NOBOUND, "cpu|cuda", "cpu",
        "Compute backend: `cpu` (the reference implementation) or `cuda`."),
    KEY("device.attention", CFGT_ENUM, device.attention, NOBOUND, "auto|cudnn|native", "auto",
        "Block attention kernel of the cuda backend: `auto` chooses, `cudnn` or `native` forces one."),
    KEY("device.memory_gib", CFGT_FLOAT, device.memory_gib, GE(0), NULL, "0",
        "GiB of memory of one GPU for the fit check of `--plan` (ranks sharing a GPU split it), e.g. 139.5 for "
        "the H200 of docs/benchmarks.md; with it `memory.offload: auto` decides in the plan as it would on that "
        "GPU. `0` = the GPU's own: `--plan`, which touches no GPU, then prints the plan without the check. A cuda "
        "run always checks the plan against what its GPU has free at start-up, before it allocates anything."),
    KEY("device.host_memory_gib", CFGT_FLOAT, device.host_memory_gib, GE(0), NULL, "0",
        "GiB of host memory of one node for the fit check of `--plan` (with `device.memory_gib` set): the "
        "pinned and plain host memory of the node's ranks (`device.gpus_per_node` of them) must fit in it. "
        "`0` = the physical memory of the machine `--plan` (or the run) runs on, less `memory.host_reserve_gib`."),
    KEY("device.gpus_per_node", CFGT_INT, device.gpus_per_node, IN(1, 1 << 16), NULL, "8",
        "GPUs of one node, for `--plan`: it assumes one rank per GPU, ranks 0..n-1 on the first node and "
        "so on, and checks each node's host memory (`device.host_memory_gib`) against its ranks' sum."),
    KEY("device.peak_tflops", CFGT_FLOAT, device.peak_tflops, GE(0), NULL, "0",
        "Peak dense bf16 TFLOP/s of one GPU, the denominator of the MFU in the progress line (a percent) and the "
        "metrics (`mfu`, a fraction): model FLOPs / (step time x peak x ranks), the FLOPs of docs/design.md. `0` = "
        "from the CUDA device's name (H100 SXM and H200 989, H100 PCIe 756, A100 312; another name: a warning and "
        "no MFU); the cpu backend prints no MFU unless this is set."),
    KEY("device.bind", CFGT_ENUM, device.bind, NOBOUND, "auto|none", "auto",
        "Binding of each rank at start-up: `auto` = its share of the cores near its GPU (of the host without a GPU) and their NUMA node, within the cores the launcher gave the job's ranks; `none` leaves the binding to the launcher."),

    KEY("checkpoint.dir", CFGT_PATH, checkpoint.dir, NOBOUND, NULL, "\"\"",
        "Directory for checkpoints; empty means no checkpoints are written. A training run creates it at start-up when missing (its parent must exist) and locks it (`LOCK` names the holder): one run per directory. Every rank writes and reads its own slices of each checkpoint here, so it must be on a file system every rank sees (checked at start-up: exit 2 naming a rank that does not)."),
    KEY("checkpoint.every", CFGT_INT64, checkpoint.every, IN(0, COUNT_MAX), NULL, "0",
        "Write a checkpoint every this many steps (0 = only at the end)."),
    KEY("checkpoint.keep", CFGT_INT, checkpoint.keep, IN(1, 1 << 20), NULL, "2",
        "Number of most recent complete, verified checkpoints kept; older ones are deleted."),
    KEY("checkpoint.fresh_start", CFGT_BOOL, checkpoint.fresh_start, NOBOUND, NULL, "false",
        "When checkpoint.dir holds complete checkpoints and none of them verifies (checksum, size, edited meta.json): `false` stops the run with exit 2 naming each and why; `true` starts from step 0, and its saves and metrics replace the old ones. A usable checkpoint is always resumed from (`--no-resume` starts afresh)."),

    KEY("log.every", CFGT_INT64, log.every, IN(1, COUNT_MAX), NULL, "1",
        "Print a progress line every this many steps."),
    KEY("log.metrics", CFGT_PATH, log.metrics, NOBOUND, NULL, "\"\"",
        "JSON Lines file receiving one record per step; empty means none."),
    KEY("log.profile", CFGT_BOOL, log.profile, NOBOUND, NULL, "false",
        "Time every kernel by category (GEMM, attention, cross-entropy, optimizer, other) with CUDA events and add the split to the progress line and metrics; costs a little speed."),

    KEY("log.eval_every", CFGT_INT64, log.eval_every, IN(0, COUNT_MAX), NULL, "0",
        "Every this many steps, and after the last step, the mean loss and perplexity over the first "
        "log.eval_windows windows of data.eval (forward only, on every rank through the ring) are printed and "
        "written to log.metrics as an `eval_step` record; 0 = never. Training is unchanged by it (the same losses "
        "bit for bit). Needs data.eval."),
    KEY("log.eval_windows", CFGT_INT64, log.eval_windows, IN(1, COUNT_MAX), NULL, "16",
        "Windows of data.seq_len tokens of data.eval that each evaluation during training reads (the first ones, "
        "the same every time; fewer when data.eval holds fewer)."),

    KEY("eval.buckets", CFGT_INT, eval.buckets, IN(1, 4096), NULL, "8",
        "`--eval`: the sequence positions 0..data.seq_len-1 are cut into this many equal buckets (at most "
        "data.seq_len) and the loss and perplexity of each is written to eval.out/eval_buckets.csv (perplexity "
        "against context length; scripts/plot_eval.py draws it)."),
    KEY("eval.out", CFGT_PATH, eval.out, NOBOUND, NULL, ".",
        "Directory receiving eval_buckets.csv (`--eval`) and passkey.csv (`--passkey`); created when missing "
        "(its parent must exist). Default: the working directory."),
    KEY("eval.passkey_lengths", CFGT_INT, eval.passkey_lengths, IN(1, 1024), NULL, "4",
        "`--passkey`: context lengths of the grid, evenly spaced: data.seq_len x i / n for i = 1..n (each prompt "
        "is padded to data.seq_len tokens without loss, so any length splits across the ranks)."),
    KEY("eval.passkey_depths", CFGT_INT, eval.passkey_depths, IN(1, 1024), NULL, "5",
        "`--passkey`: needle depths of the grid, evenly spaced over [0, 1] (0 = at the start of the filler, 1 = "
        "at its end, right before the question); 1 = depth 0.5."),
    KEY("eval.passkey_digits", CFGT_INT, eval.passkey_digits, IN(1, 64), NULL, "5",
        "`--passkey`: digits of each passkey (each a token of its own)."),
    KEY("eval.passkey_trials", CFGT_INT, eval.passkey_trials, IN(1, 1 << 20), NULL, "4",
        "`--passkey`: passkeys tried in each cell of the grid (their digits drawn with eval.passkey_seed)."),
    KEY("eval.passkey_seed", CFGT_UINT64, eval.passkey_seed, NOBOUND, NULL, "0",
        "`--passkey`: seed of the passkeys' digits."),
    KEY("eval.passkey_ids", CFGT_PATH, eval.passkey_ids, NOBOUND, NULL, "\"\"",
        "`--passkey`: the prompt's token ids (filler, needle, question, the ten digits), a file written by "
        "scripts/passkey_ids.py from a tokenizer (docs/formats.md); empty = the model's own ids: filler 0, 1, ..., "
        "V-11 repeated, digits V-10..V-1, no needle or question text."),

    KEY("export.dir", CFGT_PATH, export_.dir, NOBOUND, NULL, "\"\"",
        "At the end of the run, write a Hugging Face model directory (config.json + safetensors) here; empty means none."),
    KEY("export.dtype", CFGT_ENUM, export_.dtype, NOBOUND, "bf16|fp32", "bf16",
        "Tensor type of the exported weights."),
    KEY("export.shard_gib", CFGT_FLOAT, export_.shard_gib, GT(0), NULL, "5",
        "Largest safetensors file of an export in GiB; bigger models are split into shards with an index."),
};

const int cfg_schema_n = (int)(sizeof cfg_schema / sizeof cfg_schema[0]);

_Static_assert(sizeof cfg_schema / sizeof cfg_schema[0] <= CFG_MAX_KEYS,
               "more schema keys than CFG_MAX_KEYS origin slots");
