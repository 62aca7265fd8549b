/* rng: counter-based random numbers. A value depends only on (key, counter), so random
 * init and data sampling are the same whatever the number of ranks or threads. */
#ifndef RT_RNG_H
#define RT_RNG_H

#include <stdint.h>

uint64_t rng_mix(uint64_t x);                           /* splitmix64 finalizer */
uint64_t rng_hash_str(uint64_t seed, const char *s);    /* key from a seed and a name */
uint64_t rng_u64(uint64_t key, uint64_t counter);
double   rng_uniform(uint64_t key, uint64_t counter);   /* [0, 1) with 53 bits */
double   rng_normal(uint64_t key, uint64_t counter);    /* standard normal (Box-Muller) */

#endif
