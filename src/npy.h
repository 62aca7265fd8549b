/* npy: NumPy .npy token files (1-D uint16 / int32 / uint32, little endian), memory-mapped
 * read-only. Tokens are read as windows converted to int32. Shape letters: n tokens. */
#ifndef RT_NPY_H
#define RT_NPY_H

#include <stddef.h>
#include <stdint.h>

enum npy_dtype { NPY_U16, NPY_I32, NPY_U32 };

#define NPY_PATH_MAX 4096

struct npy {
    int                  fd;
    void                *map;      /* the whole file, PROT_READ */
    size_t               map_len;
    int                  dtype;    /* enum npy_dtype */
    int                  itemsize; /* 2 or 4 bytes */
    int64_t              n;        /* (n) tokens, >= 1 */
    const unsigned char *data;     /* (n) items, little endian, possibly unaligned */
    char                 path[NPY_PATH_MAX];
};

/* Map and validate a .npy file (versions 1.0, 2.0, 3.0; descr '<u2', '<i4' or '<u4';
 * fortran_order False; shape (n,) with n >= 1; data at least n items long).
 * Returns 0, or -1 with one line in err naming the file. */
int  npy_open(struct npy *f, const char *path, char *err, size_t errlen);
/* Every token in [0, vocab_size). Returns 0, or -1 naming the first bad index and value. */
int  npy_check_tokens(const struct npy *f, int64_t vocab_size, char *err, size_t errlen);
/* out[i] = token[start + i] for i < count; the caller keeps start + count <= f->n. */
void npy_read_tokens(const struct npy *f, int64_t start, int64_t count, int32_t *out);
void npy_close(struct npy *f);

#endif
