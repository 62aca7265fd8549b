/* rng: counter-based random numbers (splitmix64 mixing of key and counter). */
#include "rng.h"

#include <math.h>

uint64_t rng_mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t rng_hash_str(uint64_t seed, const char *s) {
    uint64_t h = rng_mix(seed ^ 0x5265696E67747261ull);
    for (; *s; s++) h = rng_mix(h ^ (unsigned char)*s);
    return h;
}

uint64_t rng_u64(uint64_t key, uint64_t counter) { return rng_mix(key ^ rng_mix(counter)); }

double rng_uniform(uint64_t key, uint64_t counter) {
    return (double)(rng_u64(key, counter) >> 11) * (1.0 / 9007199254740992.0);
}

double rng_normal(uint64_t key, uint64_t counter) {
    double u1 = rng_uniform(key, 2 * counter), u2 = rng_uniform(key, 2 * counter + 1);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}
