/* test_mem_plan: the plan backend and its table (mem_plan.c): allocations grouped by name,
 * place and size; totals and allowances; distinct, non-overlapping fake addresses; mem_free
 * as one GPU's memory less what its ranks planned (allowances held against it unless the
 * memory was measured with the context made), and the fit verdict; the printed table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem_plan.h"
#include "testutil.h"

static size_t device_free(const struct backend *be) { return (void)be, 0; }

int main(void) {
    const size_t MiB = (size_t)1 << 20;
    struct backend dev = {.name = "dev", .act_size = 2, .shared_weights = 0, .mem_free = device_free};
    struct mem_plan p;

    /* Unknown GPU memory, or a backend without mem_free: no mem_free, every plan fits. */
    mem_plan_init(&p, 0, 0, 1);
    CHECK(p.be.mem_free == NULL && p.be.act_size == sizeof(float) && p.be.shared_weights == 1);
    mem_plan_like(&p, &dev);
    CHECK(p.be.mem_free == NULL && p.be.act_size == 2 && !strcmp(p.be.name, "dev"));
    mem_plan_free(&p);
    mem_plan_init(&p, 1.0, 0, 1);
    mem_plan_like(&p, &cpu_backend);
    CHECK(p.be.mem_free == NULL);
    mem_plan_free(&p);

    /* 1 GiB shared by 2 ranks. */
    mem_plan_init(&p, 1.0, 0, 2);
    mem_plan_like(&p, &dev);
    const struct backend *be = mem_plan_backend(&p);
    CHECK(be->mem_free != NULL);
    CHECK(be->mem_free(be) == (size_t)1 << 30);
    char *a[4];
    for (int i = 0; i < 3; i++) a[i] = be->alloc(be, 100 * MiB, "acts");
    a[3] = be->alloc(be, 10 * MiB, "acts");
    void *h = be->host_alloc(be, 50 * MiB, "acts");
    void *z = be->alloc(be, 0, "empty");
    void *f1 = be->fence_new(be), *f2 = be->fence_new(be);
    mem_plan_add(&p, "context", MEM_DEVICE, 1, 64 * MiB, 1);
    CHECK(p.n == 5);
    CHECK(!strcmp(p.groups[0].what, "acts") && p.groups[0].count == 3 && p.groups[0].bytes == 100 * MiB);
    CHECK(p.groups[1].count == 1 && p.groups[1].bytes == 10 * MiB && p.groups[1].where == MEM_DEVICE);
    CHECK(p.groups[2].where == MEM_HOST && p.groups[2].bytes == 50 * MiB);
    CHECK(p.groups[4].allowance == 1);
    CHECK(p.total[MEM_DEVICE] == 374 * MiB && p.allowance[MEM_DEVICE] == 64 * MiB);
    CHECK(p.total[MEM_HOST] == 50 * MiB && p.allowance[MEM_HOST] == 0);
    /* Addresses: non-NULL, distinct, each buffer clear of the next. */
    char *all[8] = {a[0], a[1], a[2], a[3], h, z, f1, f2};
    for (int i = 0; i < 8; i++) CHECK(all[i] != NULL);
    for (int i = 0; i + 1 < 4; i++) CHECK(a[i + 1] >= a[i] + 100 * MiB);
    for (int i = 0; i < 8; i++)
        for (int j = i + 1; j < 8; j++) CHECK(all[i] != all[j]);
    /* Two ranks of 374 MiB (64 of it allowance) on 1 GiB. */
    CHECK(mem_plan_need(&p) == 374 * MiB);
    CHECK(be->mem_free(be) == (1024 - 2 * 374) * MiB);
    CHECK(mem_plan_fits(&p));
    be->alloc(be, 200 * MiB, "more");
    CHECK(be->mem_free(be) == 0 && !mem_plan_fits(&p));
    /* Measured memory (context made): the allowances do not count. */
    p.measured = 1;
    CHECK(mem_plan_need(&p) == 510 * MiB && mem_plan_fits(&p));
    CHECK(be->mem_free(be) == 4 * MiB);

    /* The table: every group, both parts, totals, the allowance marked. */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    mem_plan_print(&p, f, "  ");
    fclose(f);
    CHECK(strstr(text, "device memory") && strstr(text, "pinned host memory"));
    CHECK(strstr(text, "acts") && strstr(text, "3 x 100.00 MiB = 300.00 MiB"));
    CHECK(strstr(text, "context (allowance)") && strstr(text, "574.00 MiB (64.00 MiB of it allowances)"));
    CHECK(strstr(text, "50.00 MiB") != NULL);
    if (tu_failures) fprintf(stderr, "%s", text);
    free(text);
    mem_plan_free(&p);
    char b[32];
    CHECK(!strcmp(mem_bytes_text(8, b, sizeof b), "8 B") && !strcmp(mem_bytes_text(1.5 * (1 << 30), b, sizeof b), "1.50 GiB"));
    return tu_done("test_mem_plan");
}
