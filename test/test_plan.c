/* test_plan: ./ringtrain --plan (run_plan.c, mem_plan.c). In a CUDA build: the 7B shape of
 * yaml/bench_7b.yaml at 64K tokens on a 139.5 GiB GPU without token tiles (memory.tile_tokens
 * = seq_len, as the H200 measurements were made) fits, offloads 35-60% of every layer's
 * saved tokens (the H200 run, which offloaded whole layers then, chose 18 and 20 of the 32;
 * token-wise offload stages less on the device, so it needs fewer) and plans a device total within 5% of
 * what the H200 measured (cudaMemGetInfo's used, context included: 137.65 and 137.64 GiB);
 * at 32K the total is within 5% of 127.95 GiB and nothing is offloaded (116 GiB of host
 * given, so no verdict depends on this machine's memory). memory.checkpointing
 * auto with the optimizer on the host on one H200 (116 GiB of host) saves every layer's
 * attention output at 128K and 256K, some at 384K, each plan fitting. With tiles of 4096
 * tokens the plan says so, the 32K job needs at least 4.5 GiB less (the layer scratch is
 * sized by the tile) and the 64K job offloads at most 20% of the tokens; the auto tile at
 * 64K is 16384 with 116 GiB of host and 4096 with 7.5. 256K
 * fits (at least 90% offloaded; untiled it did not); at 384K it does not
 * fit (exit 3 with the table and what to change); without device.memory_gib the fit is not
 * checked (exit 0); 4 ranks plan a cp=4 7B job; and a plan makes no CUDA call (under
 * build/nocuda.so, which does stop a real run). In every build: the cpu demo plans (exit 0),
 * 4 ranks plan a cp=4 demo with rank 0 alone printing, and bad input is still reported as
 * usual (exit 2). --plan --ranks N (one process) prints the same plan as mpirun -np N --plan
 * (ZeRO-3 with the host optimizer, ZeRO-1 on cp 2 x dp 2; the 7B shape too in a CUDA build);
 * an export makes rank 0 the largest host user; a node whose host memory
 * (device.host_memory_gib) is too small does not fit (exit 3, naming host memory; in a CUDA
 * build the same job fits with fewer ranks per node); when model state does not fit, the
 * advice names a parallel.zero / memory.optimizer change and planning with it fits (the demo
 * at ZeRO-1; 7B on 4 ranks of 40 GiB cards); --ranks is refused without --plan and under
 * mpirun. One H200 and 116 GiB of host, full checkpointing, the optimizer on the host: 480K
 * fits in query blocks, not in one call; 512K does not at ZeRO-1 and fits at parallel.zero 3
 * (weights streamed, gradients lent to the offloaded inputs), which the advice names.
 * Runs from the repository root. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "testutil.h"

static char out[1 << 16];


/* The summary line of a plan. */
struct summary {
    double device, host, node;
    int    device_rank, host_rank, per_node, offload, tokens; /* offload: tokens of each layer's saved tensors */
    char   fits[16];
};

static int summary_of(const char *text, struct summary *s) {
    const char *l = strstr(text, "\nplan: device ");
    return l && sscanf(l + 1, "plan: device %lf GiB per rank (rank %d), host %lf GiB per rank (rank %d), %lf GiB per "
                       "node (%d ranks), offload %d of %d tokens per layer, fits %15s", &s->device, &s->device_rank,
                       &s->host, &s->host_rank, &s->node, &s->per_node, &s->offload, &s->tokens, s->fits) == 9;
}

/* ringtrain ARGS (prefixed by PRE, e.g. an mpirun) must exit `code` with every fragment
 * ('|' separated) in its output; fills sm when it has a summary line. Returns 1 if so. */
static int expect(const char *pre, const char *args, int code, const char *fragments, struct summary *sm) {
    char cmd[1500];
    snprintf(cmd, sizeof cmd, "%s %s %s", pre, tu_bin(), args);
    int rc = tu_run(cmd, out, sizeof out), ok = rc == code;
    char frag[512];
    snprintf(frag, sizeof frag, "%s", fragments);
    for (char *f = strtok(frag, "|"); f; f = strtok(NULL, "|")) ok &= strstr(out, f) != NULL;
    if (sm) ok &= summary_of(out, sm);
    if (!CHECK(ok)) fprintf(stderr, "  %s: exit %d (want %d), output:\n%s\n  (wanted: %s)\n", cmd, rc, code, out, fragments);
    return ok;
}


/* The plan's text from its header to its summary line (what rank 0 prints), into buf. */
static void plan_text(const char *text, char *buf, size_t n) {
    const char *a = strstr(text, "memory plan of"), *b = strstr(text, "\nplan: device ");
    const char *e = b ? strchr(b + 1, '\n') : NULL;
    buf[0] = 0;
    if (a && e && e > a) snprintf(buf, n, "%.*s", (int)(e - a), a);
}

/* Bytes of "X unit" as mem_bytes_text prints them. */
static double bytes_of(double x, const char *unit) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    for (int i = 0; i < 5; i++, x *= 1024)
        if (!strcmp(unit, units[i])) return x;
    return -1;
}

/* The largest host total of a rank and of a node, from the "largest device total" line. */
static int host_totals(const char *text, double *rank, double *node) {
    const char *l = strstr(text, "largest host total (pinned and plain): "), *m = l ? strstr(l, "): largest ") : NULL;
    char u1[8], u2[8];
    if (!m || sscanf(l, "largest host total (pinned and plain): %lf %7[A-Za-z]", rank, u1) != 2 ||
        sscanf(m, "): largest %lf %7[A-Za-z]", node, u2) != 2)
        return 0;
    *rank = bytes_of(*rank, u1), *node = bytes_of(*node, u2);
    return *rank > 0 && *node > 0;
}

/* --plan --ranks N (one process, stand-in communicators) against mpirun -np N --plan (every
 * rank plans its own share with MPI communicators): the same text, table and numbers. */
static void same_as_mpirun(const char *args, int n, const char *fragments) {
    static char one[1 << 16], many[1 << 16];
    char a[1024], pre[64];
    snprintf(a, sizeof a, "--plan %s --ranks %d", args, n);
    expect("", a, 0, fragments, NULL);
    plan_text(out, one, sizeof one);
    snprintf(a, sizeof a, "--plan %s", args);
    snprintf(pre, sizeof pre, "scripts/mpirun.sh -np %d", n);
    expect(pre, a, 0, fragments, NULL);
    plan_text(out, many, sizeof many);
    if (!CHECK(one[0] && !strcmp(one, many)))
        fprintf(stderr, "  --ranks %d:\n%s\n  mpirun -np %d:\n%s\n", n, one, n, many);
}

/* A job that does not fit with its model state placement: the advice names the smallest
 * change of parallel.zero / memory.optimizer, and that change, planned, fits. */
static void advice_fits(const char *args, const char *want) {
    char a[1500], sets[128];
    struct summary s;
    snprintf(a, sizeof a, "--plan %s", args);
    if (!expect("", a, 3, "does not fit: |what to change:|  - model state: --set parallel.zero=", &s)) return;
    const char *l = strstr(out, "  - model state: ");
    int zero;
    char opt[16];
    if (!CHECK(sscanf(l, "  - model state: --set parallel.zero=%d --set memory.optimizer=%15s fits", &zero, opt) == 2))
        return;
    snprintf(sets, sizeof sets, "--set parallel.zero=%d --set memory.optimizer=%s", zero, opt);
    printf("test_plan: advice for %s: %s\n", args, sets);
    CHECK(!strcmp(sets, want));
    snprintf(a, sizeof a, "--plan %s %s", args, sets);
    expect("", a, 0, "fits: ", &s);
    CHECK(!strcmp(s.fits, "yes"));
}

#ifdef RT_HAVE_CUDA
/* The 7B job at seq_len tokens on a 139.5 GiB GPU without tiles: its device total against
 * the H200's measurement (5%) and the share of tokens offloaded against [lo, hi]. */
static void check_7b(const char *extra, long seq, double measured, double lo, double hi) {
    char args[512];
    struct summary s;
    snprintf(args, sizeof args, "--plan yaml/bench_7b.yaml --set data.seq_len=%ld --set device.memory_gib=139.5 "
             "--set device.host_memory_gib=116 --set memory.tile_tokens=%ld %s", seq, seq, extra);
    if (!expect("", args, 0, "device memory|fits: |expected step time: |tiles: one of all", &s)) return;
    double dev = (s.device - measured) / measured;
    double share = (double)s.offload / s.tokens;
    printf("test_plan: 7B %ldK %s: planned %.2f GiB on the device (measured %.2f: %+.1f%%), %d of %d tokens "
           "offloaded, %.2f GiB pinned host\n", seq / 1024, extra[0] ? extra : "cuDNN", s.device, measured, 100 * dev,
           s.offload, s.tokens, s.host);
    CHECK(fabs(dev) <= 0.05);
    CHECK(share >= lo && share <= hi);
    CHECK(!strcmp(s.fits, "yes"));
}

static void cuda_plans(void) {
    char args[512];
    check_7b("", 65536, 137.65, 0.35, 0.6);
    check_7b("--set device.attention=native", 65536, 137.64, 0.35, 0.6);
    check_7b("", 32768, 127.95, 0, 0);

    struct summary tiled;
    const char *h200 = "--plan yaml/bench_7b.yaml --set device.memory_gib=139.5 --set device.host_memory_gib=116";
    snprintf(args, sizeof args, "%s --set data.seq_len=32768 --set memory.tile_tokens=4096", h200);
    if (expect("", args, 0, "tiles: the norms, projections, RoPE, MLP and final norm run on 8 tiles of 4096 tokens "
               "(memory.tile_tokens 4096)|tile activations: gate, up, act|fits: ", &tiled)) {
        printf("test_plan: 7B 32K with 4096-token tiles: %.2f GiB on the device\n", tiled.device);
        CHECK(tiled.device <= 127.95 - 4.5 && tiled.offload == 0);
    }
    snprintf(args, sizeof args, "%s --set data.seq_len=65536 --set memory.tile_tokens=4096", h200);
    if (expect("", args, 0, "16 tiles of 4096 tokens|fits: ", &tiled)) {
        printf("test_plan: 7B 64K with 4096-token tiles: %d of %d tokens offloaded\n", tiled.offload, tiled.tokens);
        CHECK(tiled.offload <= tiled.tokens / 5);
    }
    /* auto: the largest tile of 4096, 8192, 16384 whose plan fits: 16384 with 116 GiB of host
     * (it offloads more tokens than 4096 does), 4096 when the host (7.5 GiB) holds only 4096's */
    struct summary big, small;
    snprintf(args, sizeof args, "%s --set data.seq_len=65536", h200);
    expect("", args, 0, "4 tiles of 16384 tokens (memory.tile_tokens auto: the largest of 4096, 8192, 16384|fits: ",
           &big);
    CHECK(!strcmp(big.fits, "yes") && big.offload > tiled.offload);
    expect("", "--plan yaml/bench_7b.yaml --set data.seq_len=65536 --set device.memory_gib=139.5 "
           "--set device.host_memory_gib=7.5", 0, "16 tiles of 4096 tokens (memory.tile_tokens auto|fits: ", &small);
    printf("test_plan: 7B 64K, tiles auto: 16384 tokens with 116 GiB of host (%d tokens offloaded, %.2f GiB), 4096 "
           "with 7.5 GiB (%.2f GiB)\n", big.offload, big.host, small.host);

    struct summary s;
    expect("", "--plan yaml/bench_7b.yaml --set data.seq_len=262144 --set device.memory_gib=139.5 "
           "--set device.host_memory_gib=560", 0, "fits: ", &s);
    CHECK(s.offload >= s.tokens * 9 / 10);
    /* 384K with the optimizer on the device: with one direct attention call the device does
     * not fit even with every token offloaded; in query blocks (auto past 128K) the device
     * fits and the host (this machine's) does not */
    expect("", "--plan yaml/bench_7b.yaml --set data.seq_len=393216 --set device.memory_gib=139.5 "
           "--set memory.attention_block_tokens=393216", 3,
           "does not fit: |device memory|saved layer inputs|AdamW second moment|pinned host memory|what to change:|"
           "fewer tokens per rank", &s);
    CHECK(!strcmp(s.fits, "no") && s.offload == s.tokens);
    printf("test_plan: 7B 384K, one direct call: does not fit, planned %.2f GiB on the device\n", s.device);
    expect("", "--plan yaml/bench_7b.yaml --set data.seq_len=393216 --set device.memory_gib=139.5 "
           "--set device.host_memory_gib=116", 3, "attention calls: blocks of at most 16384|does not fit: host memory", &s);
    CHECK(!strcmp(s.fits, "no") && s.offload < s.tokens && s.device <= 139.5);

    /* One rank, full checkpointing, the optimizer on the host, 139.5 GiB + 116 GiB: query
     * blocks (auto) fit 480K, one direct call does not; at 512K they take >= 12 GiB off the host */
    const char *one = "--plan yaml/bench_7b.yaml --set memory.checkpointing=full --set memory.optimizer=host "
                      "--set device.memory_gib=139.5 --set device.host_memory_gib=116";
    struct summary blk, direct;
    snprintf(args, sizeof args, "%s --set data.seq_len=491520", one);
    expect("", args, 0, "attention calls: blocks of at most 16384|fits: ", &blk);
    CHECK(!strcmp(blk.fits, "yes"));
    snprintf(args, sizeof args, "%s --set data.seq_len=491520 --set memory.attention_block_tokens=491520", one);
    expect("", args, 3, "attention calls: one over all 491520 tokens|does not fit: host memory", &direct);
    printf("test_plan: 7B 480K on one H200, host optimizer: query blocks %.2f GiB host (fits), one call %.2f GiB\n",
           blk.host, direct.host);
    snprintf(args, sizeof args, "%s --set data.seq_len=524288", one);
    expect("", args, 3, "does not fit: host memory", &blk);
    snprintf(args, sizeof args, "%s --set data.seq_len=524288 --set memory.attention_block_tokens=524288", one);
    expect("", args, 3, "does not fit: host memory", &direct);
    printf("test_plan: 7B 512K on one H200, host optimizer: query blocks %.2f GiB host, one call %.2f GiB (116)\n",
           blk.host, direct.host);
    CHECK(blk.host <= direct.host - 12);
    /* 512K fits with the layers' working weights streamed from the host master (parallel.zero
     * 3 on one rank: 12 GiB off the device, so fewer tokens offloaded) and the reduced
     * gradients of 31 layers in the offloaded inputs' host rows (one sequence per step); the
     * advice of the ZeRO-1 plan names that change */
    struct summary z512;
    snprintf(args, sizeof args, "%s --set data.seq_len=524288", one);
    expect("", args, 3, "does not fit: host memory|--set parallel.zero=3 --set memory.optimizer=host fits", &z512);
    snprintf(args, sizeof args, "%s --set data.seq_len=524288 --set parallel.zero=3", one);
    expect("", args, 0, "working weights streamed per layer from the host master|its reduced gradients: of 31 "
           "layers, |in the host rows|gradients (reduced shard, the part not lent)|fits: ", &z512);
    CHECK(!strcmp(z512.fits, "yes") && z512.host <= 116 && z512.device <= 139.5 && z512.offload < blk.offload);
    printf("test_plan: 7B 512K on one H200, host optimizer, parallel.zero 3: device %.2f GiB, host %.2f GiB (fits), "
           "%d of %d tokens offloaded\n", z512.device, z512.host, z512.offload, z512.tokens);

    /* checkpointing auto with the optimizer on the host, one H200 and 116 GiB of host: every
     * layer saves its attention output at 128K and (the gradients lent to the offloaded rows)
     * at 256K, some at 384K, and each fits */
    const long seqs[] = {131072, 262144, 393216};
    for (int i = 0, prev = 0; i < 3; i++) {
        char a[400];
        snprintf(a, sizeof a, "--plan yaml/bench_7b.yaml --set data.seq_len=%ld --set memory.optimizer=host "
                 "--set memory.checkpointing=auto --set device.memory_gib=139.5 --set device.host_memory_gib=116", seqs[i]);
        int kept = -1, layers = 0;
        if (expect("", a, 0, "checkpointing auto: |fits: ", &s)) {
            sscanf(strstr(out, "checkpointing auto: "), "checkpointing auto: %d of %d", &kept, &layers);
            printf("test_plan: 7B %ldK, checkpointing auto: %d of %d layers save their attention output, %d tokens "
                   "of %d offloaded, host %.2f GiB\n", seqs[i] / 1024, kept, layers, s.offload, s.tokens, s.host);
        }
        CHECK(!strcmp(s.fits, "yes") && s.host <= 116);
        CHECK(i < 2 ? kept == 32 : kept > 0 && kept < prev);
        prev = kept;
    }

    /* 7B at 1M tokens on 8 ranks of 79 GiB: attention calls in blocks of 16384 tokens (auto)
     * bound the cuDNN workspace (642 MiB, not 5 GiB) and the block output (256 MiB, not 2 GiB):
     * the default ZeRO-1 fits; with one call per ring block it does not */
    const char *m1 = "--plan yaml/bench_7b.yaml --ranks 8 --set data.seq_len=1048576 --set device.memory_gib=79 "
                     "--set device.host_memory_gib=560";
    if (expect("", m1, 0, "attention calls: blocks of at most 16384 query rows x 16384 keys (memory.attention_block_"
               "tokens auto)|642.00 MiB|fits: ", &s))
        printf("test_plan: 7B 1M on 8 ranks of 79 GiB, ZeRO-1, blocks of 16384: %.2f GiB device, %d of %d tokens "
               "offloaded, host %.2f GiB per node\n", s.device, s.offload, s.tokens, s.node);
    CHECK(!strcmp(s.fits, "yes") && s.device <= 79);
    snprintf(args, sizeof args, "%s --set memory.attention_block_tokens=131072", m1);
    expect("", args, 3, "attention calls: one per ring block|does not fit: ", &s);

    expect("", "--plan yaml/bench_7b.yaml --set data.seq_len=65536", 0, "fit: not checked: device.memory_gib", &s);
    CHECK(!strcmp(s.fits, "unchecked") && s.offload == 0);

    /* A ring of 4 GPUs: K/V and dK/dV buffers, the optimizer state in ZeRO-1 parts. */
    expect("scripts/mpirun.sh -np 4", "--plan yaml/bench_7b.yaml --set data.seq_len=262144 --set parallel.cp=4 "
           "--set device.memory_gib=139.5", 0, "4 ranks (cp 4 x dp 1)|ring K/V buffer|ZeRO-1: each of the 34 units (embedding, 32 layers, head) cut into 4 "
           "parts|fits: ", &s);
    CHECK(tu_count(out, "memory plan of") == 1 && tu_count(out, "\nplan: device") == 1);
    /* The same ring with ZeRO-3 and the optimizer on the host: about 49 GiB of model state
     * leaves the GPU (25.1 of gradients, 18.8 of master weights and moments, 12.1 of resident
     * layers, less the layer buffers and the act shard), 25.1 GiB of shards go to the host. */
    struct summary z3;
    expect("scripts/mpirun.sh -np 4", "--plan yaml/bench_7b.yaml --set data.seq_len=262144 --set parallel.cp=4 "
           "--set device.memory_gib=139.5 --set parallel.zero=3 --set memory.optimizer=host --set device.host_memory_gib=560", 0,
           "ZeRO-3 over 4 ranks|gradients (reduced shard)|fits: ", &z3);
    printf("test_plan: 7B 256K on 4 ranks: ZeRO-1 %.2f GiB device + %.2f host; ZeRO-3, optimizer on the host: %.2f "
           "GiB device + %.2f host\n", s.device, s.host, z3.device, z3.host);
    CHECK(z3.device < s.device - 45 && z3.host > s.host + 20);


    /* One process plans every rank as mpirun's ranks plan their own: ZeRO-3 with the
     * optimizer on the host, and ZeRO-1 with two rings (cp 2 x dp 2). */
    same_as_mpirun("yaml/bench_7b.yaml --set data.seq_len=262144 --set parallel.cp=4 --set device.memory_gib=139.5 "
                   "--set parallel.zero=3 --set memory.optimizer=host --set device.host_memory_gib=560", 4,
                   "ZeRO-3 over 4 ranks|gradients (reduced shard)|fits: ");
    same_as_mpirun("yaml/bench_7b.yaml --set data.seq_len=131072 --set parallel.cp=2 --set train.seqs_per_step=2 "
                   "--set device.memory_gib=139.5 --set device.host_memory_gib=560", 4, "(cp 2 x dp 2)|ZeRO-1|fits: ");
    /* Model state that does not fit 40 GiB cards at ZeRO-1: the advice re-plans, and its change fits. */
    advice_fits("yaml/bench_7b.yaml --ranks 4 --set parallel.cp=4 --set data.seq_len=65536 --set device.memory_gib=40 "
                "--set device.host_memory_gib=560 --set parallel.zero=1",
                "--set parallel.zero=1 --set memory.optimizer=host");
    /* The host memory of a node: the same ZeRO-3 host-optimizer job on 4 ranks of a node
     * with 64 GiB does not fit, with 2 ranks per node it does. */
    expect("", "--plan yaml/bench_7b.yaml --ranks 4 --set data.seq_len=262144 --set parallel.cp=4 "
           "--set device.memory_gib=139.5 --set parallel.zero=3 --set memory.optimizer=host "
           "--set device.host_memory_gib=64", 3, "device memory fits: |does not fit: host memory: |node 0 (ranks 0-3)|"
           "  - host memory: fewer ranks per node", &s);
    CHECK(s.per_node == 4 && s.node > 64 && !strcmp(s.fits, "no"));
    expect("", "--plan yaml/bench_7b.yaml --ranks 4 --set data.seq_len=262144 --set parallel.cp=4 "
           "--set device.memory_gib=139.5 --set parallel.zero=3 --set memory.optimizer=host "
           "--set device.host_memory_gib=64 --set device.gpus_per_node=2", 0, "host memory fits: |node 0 (ranks 0-1)", &s);
    CHECK(s.per_node == 2 && s.node < 64 && !strcmp(s.fits, "yes"));

    /* No CUDA call: the shim lets a plan through and stops a run at its first call. */
    expect("LD_PRELOAD=build/nocuda.so", "--plan yaml/bench_7b.yaml --set data.seq_len=65536 "
           "--set device.memory_gib=139.5", 0, "fits: ", NULL);
    CHECK(!strstr(out, "nocuda:"));
    expect("LD_PRELOAD=build/nocuda.so", "yaml/bench_7b.yaml --set train.steps=1", 42, "nocuda: ", NULL);
}
#endif

int main(void) {
    const char *dir = tu_tmpdir("plan");
    char path[1024], args[1500];
    struct summary s;
#ifdef RT_HAVE_CUDA
    cuda_plans();
#else
    printf("test_plan: CPU-only build: the cuda plans are not tested\n");
#endif
    expect("", "--plan yaml/demo.yaml", 0, "backend cpu|backend memory|AdamW first moment|offload: none|fit: not checked",
           &s);
    CHECK(!strcmp(s.fits, "unchecked"));
    expect("", "--plan yaml/demo.yaml --set memory.checkpointing=auto", 0,
           "checkpointing auto: 2 of 2 layers save their attention output|(no device limit: every layer)", &s);
    expect("", "--plan yaml/demo.yaml --set device.memory_gib=0.01", 0, "fits: ", &s);
    expect("", "--plan yaml/demo.yaml --set device.memory_gib=0.001", 3, "does not fit: |what to change:", &s);
    expect("scripts/mpirun.sh -np 4", "--plan yaml/demo.yaml --set parallel.cp=4", 0,
           "4 ranks (cp 4 x dp 1)|64 tokens per rank|ring K/V buffer|ZeRO-1: each of the 4 units (embedding, 2 "
           "layers, head) cut into 4 parts (whole multiples of 64 floats); a layer's part is 9280 parameters", &s);
    CHECK(tu_count(out, "memory plan of") == 1 && tu_count(out, "\nplan: device") == 1);
    /* ZeRO-3 with the optimizer on the host: the shards in host memory, two layer buffers of
     * gathered weights and of gradients on the backend. */
    expect("scripts/mpirun.sh -np 4", "--plan yaml/demo.yaml --set parallel.cp=4 --set parallel.zero=3 "
           "--set memory.optimizer=host", 0, "ZeRO-3 over 4 ranks|working weights (layer buffers)|gradients (layer "
           "buffers)|gradients (reduced shard)", &s);


    /* --plan --ranks N plans every rank in this one process, as mpirun's N ranks do: the
     * same output for ZeRO-3 with the optimizer on the host and for ZeRO-1 on two rings;
     * an export makes rank 0 the largest host user (the full fp32 weights at the end). */
    same_as_mpirun("yaml/demo.yaml --set parallel.cp=4 --set parallel.zero=3 --set memory.optimizer=host "
                   "--set device.memory_gib=0.01", 4, "ZeRO-3 over 4 ranks|gradients (reduced shard)|fits: ");
    same_as_mpirun("yaml/demo.yaml --set parallel.cp=2 --set train.seqs_per_step=2 --set device.memory_gib=0.01", 4,
                   "(cp 2 x dp 2)|ZeRO-1|fits: ");
    snprintf(args, sizeof args, "--plan yaml/demo.yaml --ranks 4 --set parallel.cp=4 --set export.dir=%s/hf", dir);
    expect("", args, 0, "fp32 weights of the export (at the end)", &s);
    double top, node;
    CHECK(host_totals(out, &top, &node) && s.host_rank == 0);
    printf("test_plan: demo with an export on 4 ranks: rank 0 %.0f B of host memory, the node %.0f B\n", top, node);
    CHECK(node < 4 * top - 1000); /* the other ranks hold less */
    snprintf(args, sizeof args, "yaml/demo.yaml --set parallel.cp=2 --set train.seqs_per_step=2 --set export.dir=%s/hf "
             "--set device.memory_gib=0.01", dir);
    same_as_mpirun(args, 4, "fp32 weights of the export|fits: ");
    /* Three data-parallel ranks at ZeRO-3 (each unit cut into 3 parts). */
    expect("", "--plan yaml/demo.yaml --ranks 3 --set parallel.cp=1 --set train.seqs_per_step=3 "
           "--set parallel.zero=3", 0, "3 ranks (cp 1 x dp 3)|ZeRO-3 over 3 ranks", &s);
    /* Host memory of a node: a tiny one does not fit (exit 3, naming host memory). */
    expect("", "--plan yaml/demo.yaml --ranks 4 --set parallel.cp=4 --set device.memory_gib=0.01 "
           "--set device.host_memory_gib=0.001", 3, "does not fit: host memory: |device.host_memory_gib)|"
           "what to change:", &s);
    CHECK(!strcmp(s.fits, "no") && s.per_node == 4);
    /* State that does not fit: the optimizer on the host is the change the plan finds. */
    advice_fits("yaml/demo.yaml --ranks 4 --set parallel.cp=4 --set device.memory_gib=0.00122",
                "--set parallel.zero=1 --set memory.optimizer=host");
    /* --ranks is for a plan in one process. */
    expect("", "yaml/demo.yaml --ranks 4", 2, "--ranks goes with --plan only", NULL);
    expect("scripts/mpirun.sh -np 2", "--plan yaml/demo.yaml --ranks 4", 2, "run it without mpirun", NULL);
    expect("", "--plan yaml/demo.yaml --ranks 3 --set parallel.cp=2", 2, "parallel.cp", NULL);

    /* Bad input is reported as without --plan. */
    snprintf(path, sizeof path, "%s/unknown.yaml", dir);
    const char *bad = "model: {dim: 16}\ntrain:\n  lrr: 0.1\n";
    tu_write_file(path, bad, strlen(bad));
    snprintf(args, sizeof args, "--plan %s", path);
    expect("", args, 2, "unknown.yaml:3:3: train.lrr: unknown key (did you mean train.lr?)", NULL);
    snprintf(path, sizeof path, "%s/nodata.yaml", dir);
    const char *nodata = "data: {train: nothere.npy, seq_len: 32}\nmodel: {vocab_size: 16}\n";
    tu_write_file(path, nodata, strlen(nodata));
    snprintf(args, sizeof args, "--plan %s", path);
    expect("", args, 2, "nodata.yaml:1:15: data.train: |nothere.npy", NULL);
    expect("", "--plan yaml/demo.yaml --set device.memory_gib=-1", 2, "device.memory_gib", NULL);

    /* Huge sequences: a plan allocates no token buffers (2^30 tokens x 4096 sequences would
     * be 16 TiB of host memory), and tokens per rank beyond an int are bad input. */
    expect("", "--plan yaml/demo.yaml --set data.seq_len=1073741824 --set train.seqs_per_step=4096", 0,
           "1073741824 tokens per rank|plan: device", NULL);
    expect("", "--plan yaml/demo.yaml --set data.seq_len=1000000000000", 2,
           "--set: data.seq_len: 1000000000000 tokens per rank (data.seq_len / cp 1) exceed the 2147483647", NULL);
    expect("", "--plan yaml/demo.yaml --set data.seq_len=1000000000000000000", 2,
           "--set data.seq_len: expected an integer in [2, 1e+15]", NULL);
    return tu_done("test_plan");
}
