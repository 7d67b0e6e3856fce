/* ds-llama.h: a LLaMA-2 decoder (transformers' LlamaForCausalLM; the language
 * model of LLaVA-1.5, docs/models.md §7.4, §7.8) with a key/value cache.
 *
 * token ids (and, at chosen positions, embeddings given by the caller: LLaVA's
 * projected image features, §7.5) -> per layer RMSNorm, q/k/v projections,
 * RoPE, causal (grouped-query) attention over the cache, o_proj + residual,
 * RMSNorm, SiLU-gated MLP + residual -> final RMSNorm -> lm_head logits.
 * A prefill of L tokens and a decode step of one token are the same call: the
 * tokens go at positions cache->len .. cache->len + L - 1 and their keys and
 * values are appended to the cache.
 *
 * Usage:
 *   DsLlamaConfig cfg;
 *   ds_llama_config_load ("llava-1.5-7b-hf/config.json", &cfg, err); // or a plain Llama's
 *   DsLlama *m;
 *   ds_llama_load (&cfg, "model.safetensors", NULL, be, &m, err);
 *   DsLlamaCache *kv;
 *   ds_llama_cache_new (m, 4096, &kv, err);
 *   int32_t out[32];
 *   int64_t n;
 *   ds_llama_generate (m, kv, prompt, n_prompt, 32, NULL, -1, out, &n, err); // greedy
 *   ds_llama_cache_free (kv);
 *   ds_llama_free (m);
 *
 * Not done here: batches (one sequence per cache), attention masks beyond the
 * causal one (no padding), RoPE scaling variants (rope_scaling must be null),
 * biases in the projections (attention_bias / mlp_bias must be false), f16
 * activations on the CPU (the CPU backend computes in f32; CUDA computes in
 * its act_dtype, kernels/rms-norm.cu, rope.cu, attention-kv.cu).
 * A decode step (one token from the vocabulary) is recorded as a CUDA graph
 * on its second run with a cache and arena and replayed after (ds-graph.h;
 * DS_CUDA_GRAPHS=0 turns that off): its position is read on the device.
 *
 * Memory on the CPU: an f16/bf16 checkpoint's projection and lm_head matrices
 * stay 16-bit, mapped from the file, which stays open until ds_llama_free
 * (mixed linears, ds-ops.h: f32 accumulation); embeddings and norms are f32
 * copies. An f32 checkpoint is copied in f32.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ds-nn.h"
#include "ds-safetensors-index.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int vocab_size;              /* 32000 (Vicuna), 32064 (llava-hf) */
  int hidden_size;             /* C: 4096 */
  int intermediate_size;       /* I: 11008 */
  int num_hidden_layers;       /* 32 */
  int num_attention_heads;     /* H: 32 */
  int num_key_value_heads;     /* Hkv: 32 (= H when absent); must divide H */
  int head_dim;                /* D: hidden_size / H unless the config says */
  int max_position_embeddings; /* 4096 */
  float rms_norm_eps;          /* 1e-5 (LLaVA), 1e-6 (transformers' default) */
  float rope_theta;            /* 10000 */
  bool tie_word_embeddings;    /* lm_head is embed_tokens */
} DsLlamaConfig;

/* transformers' LlamaConfig defaults (LLaMA-2 7B widths, rms_norm_eps 1e-6). */
void ds_llama_config_default (DsLlamaConfig *cfg);
/* Reads a config.json: a LlamaConfig, or a LLaVA config whose "text_config"
 * object holds it (keys absent there take LlamaConfig's defaults, as
 * transformers does). Errors (DS_ERR_FORMAT, _INVALID, _UNSUPPORTED) name
 * `what` (the path) and the key. */
DsStatus ds_llama_config_parse (const char *json_text, const char *what, DsLlamaConfig *cfg,
                                DsError *err);
DsStatus ds_llama_config_load (const char *path, DsLlamaConfig *cfg, DsError *err);
/* Range and consistency checks (the parsers run them too). */
DsStatus ds_llama_config_check (const DsLlamaConfig *cfg, DsError *err);

typedef struct DsLlama DsLlama;

/* Where the parameters are in the file: `prefix` before "embed_tokens.weight",
 * "layers.N..." and "norm.weight"; `head_prefix` before "lm_head.weight". NULL
 * (or a NULL field) picks the first spelling the file has: "model." and ""
 * (LlamaForCausalLM and the original LLaVA), "language_model.model." and
 * "language_model." (llava-hf), "model.language_model." and "" (files re-saved
 * by current transformers). */
typedef struct {
  const char *prefix;
  const char *head_prefix;
} DsLlamaNames;

/* Opens the safetensors file (f32, f16 or bf16), loads every parameter onto
 * `be` shape-checked against cfg, closes the file. Without tie_word_embeddings
 * lm_head.weight must be there. Errors name the file and tensor, prefixed with
 * "llama". transfer full: free *out with ds_llama_free. */
DsStatus ds_llama_load (const DsLlamaConfig *cfg, const char *weights_path,
                        const DsLlamaNames *names, DsBackend *be, DsLlama **out, DsError *err);
/* The same from a sharded checkpoint (or a single file) opened with
 * ds_safetensors_index_open (ds-safetensors-index.h): each tensor is read from
 * the shard holding it. idx must stay open while the model lives (16-bit
 * matrices may point into its mappings). */
DsStatus ds_llama_load_index (const DsLlamaConfig *cfg, const DsSafetensorsIndex *idx,
                              const DsLlamaNames *names, DsBackend *be, DsLlama **out,
                              DsError *err);
/* The same decoder with seeded random parameters (ds_weights_init_random's
 * scheme under the "model." names), for tests and benchmarks. */
DsStatus ds_llama_new_random (const DsLlamaConfig *cfg, uint64_t seed, DsBackend *be,
                              DsLlama **out, DsError *err);
/* As ds_llama_new_random, as if from a file storing the matrices in `stored`:
 * f16/bf16 ones stay 16-bit on the CPU, as ds_llama_load keeps such a file's,
 * and are drawn by DsWeights' faster generator for 16-bit matrices
 * (ds-weights.h: random_dtype), so they differ from ds_llama_new_random's.
 * For benchmarks at 7B without a 13.5 GB file. */
DsStatus ds_llama_new_random_stored (const DsLlamaConfig *cfg, uint64_t seed, DsDType stored,
                                     DsBackend *be, DsLlama **out, DsError *err);
void ds_llama_free (DsLlama *m);

const DsLlamaConfig *ds_llama_config (const DsLlama *m);
/* The prefix the parameters were loaded with ("model." for a random model). */
const char *ds_llama_prefix (const DsLlama *m);
size_t ds_llama_n_params (const DsLlama *m);
/* Bytes of the parameters as held (16-bit matrices at 2 bytes, mapped ones
 * included). */
size_t ds_llama_weight_bytes (const DsLlama *m);

/* The key/value cache of one sequence: per layer keys and values
 * [max_len, Hkv*D] in be's activation dtype on its device, after RoPE. */
typedef struct DsLlamaCache DsLlamaCache;
/* max_len in [1, max_position_embeddings]. transfer full. */
DsStatus ds_llama_cache_new (DsLlama *m, int64_t max_len, DsLlamaCache **out, DsError *err);
void ds_llama_cache_free (DsLlamaCache *kv);
/* Positions held (the next token's position). */
int64_t ds_llama_cache_len (const DsLlamaCache *kv);
int64_t ds_llama_cache_capacity (const DsLlamaCache *kv);
/* Forgets positions from len on (len <= the current length), e.g. to reuse
 * a shared prompt prefix; 0 empties it. */
void ds_llama_cache_truncate (DsLlamaCache *kv, int64_t len);

/* The input of one forward: n tokens. Position i takes row embed_rows[i] of
 * `embeds` when embed_rows is given and embed_rows[i] >= 0, else the embedding
 * of ids[i] (ids[i] is then ignored where an embedding row is used). */
typedef struct {
  const int32_t *ids;        /* host [n] */
  int64_t n;
  const DsTensor *embeds;    /* [E, C] on the backend, or NULL */
  const int32_t *embed_rows; /* host [n] in [-1, E), or NULL */
} DsLlamaInput;

/* Bytes of arena ds_llama_forward needs for n tokens with n_logits logit
 * rows (1 or n), measured on the null backend. */
size_t ds_llama_arena_bytes (DsLlama *m, int64_t n, int64_t n_logits);

/* Runs the tokens at positions len .. len + n - 1 of kv and appends their keys
 * and values. logits: [n_logits, vocab] on the backend in its activation
 * dtype, n_logits 1 (the last position's) or n (every position's); NULL to
 * only fill the cache. `a` needs ds_llama_arena_bytes (n, n_logits) free bytes
 * (0 when logits is NULL: any arena of ds_llama_arena_bytes (n, 1)) and is
 * returned to its entry mark. Ids outside the vocabulary, embed rows outside
 * embeds and a cache without room are DS_ERR_INVALID (the cache unchanged). */
DsStatus ds_llama_forward (DsLlama *m, DsArena *a, DsLlamaCache *kv, const DsLlamaInput *in,
                           DsTensor *logits, DsError *err);

/* The index of the largest value; ties go to the lowest index (torch.argmax);
 * NaNs are skipped. */
int32_t ds_llama_argmax (const float *logits, int64_t n);

/* transformers' sampling with do_sample=True, temperature and top_p. */
typedef struct {
  float temperature; /* <= 0: greedy (argmax), else logits / temperature */
  float top_p;       /* in (0, 1]; 1 keeps everything */
  uint64_t seed;     /* the generator's state starts from it */
} DsLlamaSampling;

/* One draw from logits [n] (host f32, not modified): softmax in f32 of the
 * scaled logits; top-p as transformers' TopPLogitsWarper (ascending order,
 * drop the tokens whose cumulative probability is <= 1 - top_p, always keep
 * the most likely), then an inverse-CDF draw over the kept tokens in index
 * order with *state advanced (splitmix64). Reproducible for a seed, but not
 * torch.multinomial's stream. Greedy when temperature <= 0. */
int32_t ds_llama_sample (const float *logits, int64_t n, const DsLlamaSampling *s,
                         uint64_t *state);

/* Prefills the prompt (ids, host [n_prompt] >= 1) on top of what kv holds,
 * then produces up to n_new tokens one decode step at a time: greedy when
 * sampling is NULL, else ds_llama_sample seeded with sampling->seed. Stops
 * after eos_id when eos_id >= 0 (it is included). out: host [n_new];
 * *n_out the count written. Reserves its own arena. */
DsStatus ds_llama_generate (DsLlama *m, DsLlamaCache *kv, const int32_t *ids, int64_t n_prompt,
                            int64_t n_new, const DsLlamaSampling *sampling, int32_t eos_id,
                            int32_t *out, int64_t *n_out, DsError *err);

#ifdef __cplusplus
}
#endif
