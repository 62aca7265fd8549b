/* pstore: the model's parameter store -- fp32 master weights, AdamW moments, weight
 * gradients and the working weights the layers compute with, sharded over the ranks of the
 * world by ZeRO stage (parallel.zero) and placed on the device or the host
 * (memory.optimizer). The model driver only asks for views: pstore_weight / pstore_grad of a
 * flat parameter offset (params.h layout), between acquire and release calls per unit.
 *
 * Units: 0 the embedding, 1..Ly the layers, Ly+1 the head (final norm, and lm_head when
 * untied); each a contiguous range [lo, hi) of the flat vector of n = hi - lo floats. With
 * `shards` = W ranks (stage >= 1 and world > 1; else 1) a unit is cut into W parts of s
 * floats (ceil(n / W) rounded up to PSTORE_ALIGN): rank r owns [lo + r s, lo + (r + 1) s)
 * clipped to hi (possibly empty). A rank's "shard" is its part of every unit, S floats in
 * all (unit u at offset sh). Padded unit buffers hold W s elements, rank r's part at r s.
 *
 *   what a rank holds          stage 0        stage 1          stage 2          stage 3
 *   fp32 master, m, v          all            its shard        its shard        its shard
 *   fp32 gradients             all (full)     all (full)       2 unit buffers   2 unit buffers
 *                                                              + its shard      + its shard
 *   act working weights        per layer      all (resident)   all (resident)   own shard +
 *                              from master                                      2 gathered units
 * (one rank: every stage is stage 0.) memory.optimizer host puts the master, moments and
 * reduced gradient shard in host memory (pinned on CUDA), runs AdamW on the host (the cpu
 * backend's ops), uses unit gradient buffers whatever the stage, and keeps resident act
 * weights on the device (stage 3: its act shard). The embedding and head units are always
 * resident in act (gathered or converted after each update) and have gradient buffers of
 * their own; only layers rotate through the two weight and gradient slots.
 *
 * Gradients of a unit buffer are final for one sequence at pstore_release_grads: the buffer's
 * reduce-scatter over the world is started there (all-reduced at once when not sharded) and
 * the unit is "pending" until the buffer is next needed -- the next acquire of its slot, or
 * pstore_reduce -- which waits for the collective and then adds this rank's part into its
 * gradient shard (the first sequence of a step copies). So a layer's reduce-scatter runs
 * while the next layers' backward does. Full gradients (stages 0 and 1) are reduced at
 * pstore_reduce: all-reduced (stage 0) or reduce-scattered unit by unit.
 * Gathered working weights (stage 3): acquiring layer i starts the gather of `next` (the
 * layer after it in the pass) into the other weight slot and waits only for its own, so a
 * layer's gather runs while the layer before it computes. */
#ifndef RT_PSTORE_H
#define RT_PSTORE_H

#include <stdint.h>

#include "backend.h"
#include "checkpoint.h"
#include "comm.h"
#include "config.h"
#include "params.h"
#include "pstore_worker.h"

#define PSTORE_ALIGN 64 /* floats: every part starts 256-byte aligned */
#define PSTORE_SLOTS 2  /* rotating layer buffers for weights and for gradients */
#define PSTORE_LENDERS 2 /* pieces of lent memory a unit's reduced gradients may use */
#define PSTORE_PIECES (PSTORE_LENDERS + 1)

enum pstore_weights { PW_CONVERT, PW_RESIDENT, PW_GATHER };

struct pstore_unit {
    int64_t lo, hi;          /* flat parameter range */
    int64_t s;               /* part floats: the unit's padded buffers hold shards * s */
    int64_t sh;              /* offset of this rank's part in the shard buffers (S floats) */
    int64_t own_lo, own_n;   /* the flat range this rank owns: [own_lo, own_lo + own_n) */
    int64_t gfull;           /* offset in the full gradient buffer (stages 0-1, device optimizer) */
    void   *w;               /* act working weights (shards * s), NULL while not present */
    float  *g;               /* gradient buffer (shards * s) while acquired, else NULL */
    int     wslot;           /* the weight slot holding w; -1: none / not a slot */
    int     pending;         /* released gradients whose reduction may be in flight, not yet in the shard */
    int     g_first;         /* no sequence of this step has added into the shard yet */
    int     g_seen;          /* sequences of this step released */
    int     stale;           /* host optimizer: updated (or being updated) since its act weights were made */
    float  *glent[PSTORE_LENDERS]; /* its reduced gradients' first nlent[0] floats, then the next
                                    * nlent[1], in memory lent to the store */
    int64_t nlent[PSTORE_LENDERS];
    int64_t gsh;             /* offset of the rest (own_n - both lent floats) in gshard */
};

struct pstore {
    const struct backend *be;  /* the model's backend (act weights, gradient buffers) */
    const struct backend *obe; /* the optimizer's: be, or the cpu backend on host memory */
    struct comm *world;        /* the ZeRO group: every rank of the job */
    struct param_table pt;
    int      stage;            /* parallel.zero as in effect (0 on one rank) */
    int      host_opt;         /* memory.optimizer host */
    int      shards, rank;     /* W and this rank's part (1 and 0 when not sharded) */
    int      Ly, n_units;
    int      wmode;            /* enum pstore_weights, of the layers */
    int      grad_full;        /* full gradient buffer (stages 0-1, device optimizer) */
    int      aliased;          /* the working weights are the master (fp32 backend, one shard, device) */
    int      dtype;            /* comm dtype of act */
    struct pstore_unit *u;     /* (n_units) */
    int64_t  S;                /* shard floats */
    int64_t  max_part;         /* largest s over the units */
    float   *master, *m, *v;   /* (S) this rank's shard: device (obe == be) or host memory */
    float   *gshard;           /* reduced gradients of the shard (unit gradient buffers): S floats, less
                                * what pstore_place_grads lent */
    float   *gfull;            /* (sum of shards * s) full gradients (grad_full) */
    void    *wglob;            /* act: the embedding and head units' padded buffers */
    void    *wres;             /* act: resident layers (PW_RESIDENT), Ly padded buffers */
    void    *ashard;           /* act (S): this rank's shard (PW_GATHER) */
    void    *wslot[PSTORE_SLOTS];        /* act: layer buffers (PW_CONVERT: slot 0 only; PW_GATHER) */
    int      wslot_unit[PSTORE_SLOTS];   /* the unit a weight slot holds, -1: none */
    float   *gslot[PSTORE_SLOTS];        /* layer gradient buffers (unit gradient buffers) */
    int      gslot_unit[PSTORE_SLOTS];   /* the unit a gradient slot holds or still owes */
    float   *gglob[2];                   /* gradient buffers of the embedding and the head */
    struct comm_req greq[PSTORE_SLOTS + 2]; /* the reduce-scatter in flight from each gradient buffer
                                             * (layer slots, embedding, head) */
    struct comm_req wreq[PSTORE_SLOTS];     /* the all-gather in flight into each weight slot */
    float   *stage_buf[2];   /* (max_part) device fp32: host master parts on their way to act */
    void    *stage_fence[2]; /* their copies in */
    int      stage_unit[2];  /* the unit whose part is in (or on its way to) a stage buffer, -1: none */
    float   *host_add;       /* (max_part) host: a later sequence's part before it is added */
    void    *fence;          /* copies of later sequences' parts to host_add */
    void    *gfence[PSTORE_SLOTS + 2]; /* the last copy out of each gradient buffer (layer slots,
                                        * embedding, head) */
    int64_t  t;              /* AdamW updates taken */
    int      nseq;           /* sequences in this step */
    int      poison;         /* test switch: parameter 0's reduced gradient is NaN this step */
    /* memory.optimizer host: the thread of the sums of squares and the updates (started
     * unless the backend only records), the per-unit sums it produces, the update it takes. */
    struct pstore_worker worker;
    double  *ss;
    const struct cfg_train *upd_tc;
    double   upd_norm, upd_lr;
    double   t_wait;         /* seconds the model waited for updates (since the last read) */
};

/* The part of the unit [lo, hi) that rank `rank` of `shards` owns: [*own_lo, *own_lo + *own_n)
 * (possibly empty). Returns the part size s. */
int64_t pstore_split(int64_t lo, int64_t hi, int shards, int rank, int64_t *own_lo, int64_t *own_n);
/* The layout alone (no buffers): units, parts and shards for `world` ranks at `stage`. */
void pstore_layout(struct pstore *ps, const struct model_config *mc, int stage, int host_opt, int world,
                   int rank);
/* Padded floats of the largest unit buffer (what one collective moves at most). */
int64_t pstore_max_unit(const struct pstore *ps);
/* Layout and every buffer (zero-filled) but, with the optimizer on the host, the reduced
 * gradient shard (pstore_place_grads). world: the ZeRO group's transport (size 1 for one rank). */
void pstore_init(struct pstore *ps, const struct backend *be, struct comm *world, const struct model_config *mc,
                 int stage, int host_opt);
/* Memory lent to a unit's reduced gradients: n floats at p. */
struct pstore_lend {
    float  *p;
    int64_t n;
};
/* The optimizer on the host: allocates the reduced gradient shard, of which unit i's first
 * floats live in the memory lend[i * PSTORE_LENDERS + k] lends, k = 0, 1 in turn, as much as
 * fits (lend NULL: nothing lent). The lender guarantees the memory is free from the unit's
 * release in a step's (only) sequence until the unit's update is finished
 * (pstore_acquire_weights of the unit in the next pass): the model lends host rows of the
 * offloaded saved tensors (model.c). Call once, before the first step; nothing to do with
 * the optimizer on the device. */
void pstore_place_grads(struct pstore *ps, const struct pstore_lend *lend);
/* Floats of the reduced gradient shard that pstore_place_grads allocates for lend (the
 * pointers unused), for a plan made before the lending is known. */
int64_t pstore_grad_shard_floats(const struct pstore *ps, const struct pstore_lend *lend);
/* Unit i's reduced gradients of this rank as at most PSTORE_PIECES pieces (returns how many,
 * in order): floats [off, off + n) of its own part at p. */
struct pstore_piece {
    float  *p;
    int64_t off, n;
};
int pstore_grad_pieces(const struct pstore *ps, int i, struct pstore_piece pc[PSTORE_PIECES]);
void pstore_free(struct pstore *ps);
/* A short description for the start-up log ("ZeRO-3 over 8 ranks, optimizer on the host"). */
const char *pstore_describe(const struct pstore *ps, char *buf, size_t n);
/* The unit of a flat parameter offset. */
int pstore_unit_of(const struct pstore *ps, int64_t off);
static inline int pstore_head(const struct pstore *ps) { return ps->Ly + 1; }

/* Master weights from a full host array (pt.total floats, the same on every rank): each rank
 * takes its shard; then the working weights are refreshed. Not collective except for the
 * refresh's gathers (every rank calls it). */
void pstore_set(struct pstore *ps, const float *host);
/* The same from fill(ctx, lo, n, dst), asked for the flat ranges this rank holds only (its
 * shard, or whole units when not sharded), so no rank needs the whole model in host memory. */
void pstore_fill(struct pstore *ps, void (*fill)(void *ctx, int64_t lo, int64_t n, float *dst), void *ctx);
/* Refresh the working weights from the master (after an update or pstore_set). Collective. */
void pstore_refresh(struct pstore *ps);

/* Weights of unit u for the ops that follow (a layer: converted or gathered into a slot;
 * the embedding and the head are resident; a pending update of the unit is finished first)
 * and next: the unit to prefetch, -1 for none -- at stage 3 its gather is started (unless its
 * host update is still to come), with the host optimizer its updated part copied in if its
 * update is done. Collective at stage 3 and while an update is pending. */
void pstore_acquire_weights(struct pstore *ps, int u, int next);
void pstore_release_weights(struct pstore *ps, int u);
/* The working weight at flat offset off (its unit acquired). */
const void *pstore_weight(const struct pstore *ps, int64_t off);

/* Gradients: pstore_begin_step before a step's nseq sequences; per sequence and unit
 * acquire (a zeroed buffer, or the full buffer's part; a pending unit of the buffer is
 * added into the shard first), the ops adding into pstore_grad, then release (collective
 * at stage >= 2: the reduction is started). */
void pstore_begin_step(struct pstore *ps, int nseq);
/* The numerical guard's test switch: this step's reduced gradient of parameter 0 becomes NaN
 * on the rank that owns it, before the norm (call before the step's sequences). */
void pstore_poison(struct pstore *ps);
void pstore_acquire_grads(struct pstore *ps, int u);
void pstore_release_grads(struct pstore *ps, int u);
float *pstore_grad(const struct pstore *ps, int64_t off);
/* After the step's last sequence: the pending units added, the reduced gradients of this
 * rank's shard complete (collective); returns their sum of squares over this rank's shard
 * (every rank's shards together are all the parameters once when shards > 1; with one
 * shard each rank's sum is already the total). */
double pstore_reduce(struct pstore *ps);
/* This rank's reduced gradient of flat parameter off, and whether this rank owns it. */
float *pstore_owned_grad(struct pstore *ps, int64_t off);
/* Clip by the global norm (when tc->grad_clip > 0) and take one AdamW step on the shard, then
 * refresh the working weights. Collective. With the optimizer on the host the update is
 * only started (the worker takes the units in order; tc must stay valid) and each unit's
 * working weights are refreshed when it is next acquired, so the update overlaps the next
 * forward; pstore_drain finishes it. */
void pstore_update(struct pstore *ps, const struct cfg_train *tc, double grad_norm, double lr);
/* The worker's job (void *ctx: the store): kind PW_NORM, the sum of squares of unit's
 * reduced gradient shard into ss[unit]; PW_UPDATE, its AdamW step (upd_*). */
void pstore_host_job(void *ctx, int kind, int unit);
/* Finish a started update: every unit updated and its working weights refreshed.
 * Collective (the refresh's gathers); nothing to do otherwise. */
void pstore_drain(struct pstore *ps);

/* The full master weights or moments (pt.total floats) assembled on rank 0 of ctl (NULL
 * elsewhere) from every rank's shard, unit by unit (the HF export, tests). Collective over ctl
 * (MPI on host buffers). which: 0 master, 1 m, 2 v. */
void pstore_gather(struct pstore *ps, struct comm *ctl, int which, float *full);
/* This rank's share of a checkpoint (checkpoint.h): with `write`, its 1/world part of every
 * unit whatever the stage -- the parts of a ZeRO-1 store over world ranks, which a sharded
 * store owns -- so every layout writes the same blocks; else what it holds (its parts, or
 * whole units when not sharded). model.bin always, optim.bin (m, then v at pt.total) with
 * `moments`. The floats move through host memory (downloaded or uploaded when the state is on
 * the device). Free with pstore_part_free. */
void pstore_part(struct pstore *ps, int write, int moments, int world, int rank, struct ckpt_part *p);
void pstore_part_free(struct ckpt_part *p);
/* Every rank's full reduced gradients (pt.total floats, host), for tests: assembled over ctl. */
void pstore_all_grads(struct pstore *ps, struct comm *ctl, float *full);

#endif
