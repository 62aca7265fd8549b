/* safetensors: the .safetensors format (8-byte little-endian header length, JSON header,
 * raw little-endian data): a memory-mapped reader with conversion of float tensors to fp32
 * (safetensors.c), and a writer (safetensors_write.c). docs/formats.md describes both. */
#ifndef RT_SAFETENSORS_H
#define RT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

enum st_dtype {
    ST_F64, ST_F32, ST_F16, ST_BF16, ST_I64, ST_I32, ST_I16, ST_I8, ST_U64, ST_U32, ST_U16, ST_U8,
    ST_BOOL, ST_F8_E4M3, ST_F8_E5M2, ST_NDTYPES
};

#define ST_MAX_DIMS 8

struct st_tensor {
    char        *name;                /* owned by the st_file */
    const char  *file;                /* the st_file's path, for messages */
    int          dtype;               /* enum st_dtype */
    int          ndim;                /* 0..ST_MAX_DIMS */
    int64_t      shape[ST_MAX_DIMS];
    int64_t      numel;               /* prod(shape) */
    const void  *data;                /* (numel) items inside the mapping, possibly unaligned */
    uint64_t     nbytes;              /* numel * itemsize */
};

struct st_file {
    char             *path;
    int               fd;
    void             *map;
    size_t            map_len;
    int               n;        /* tensors, sorted by name */
    struct st_tensor *tensors;
};

/* Map and validate a file: header length within the file, JSON header, and for every
 * tensor a known dtype, a shape of at most 8 dims, and data_offsets [begin, end] inside the
 * data section with end - begin == prod(shape) * itemsize. "__metadata__" is skipped.
 * Returns 0, or -1 with one line in err naming the file (and tensor). */
int  st_open(struct st_file *f, const char *path, char *err, size_t errlen);
/* NULL when absent. */
const struct st_tensor *st_find(const struct st_file *f, const char *name);
/* Convert a float tensor (F32, F64, BF16, F16) into out[numel]; other dtypes are an error. */
int  st_to_f32(const struct st_tensor *t, float *out, char *err, size_t errlen);
/* Elements [first, first + n) of it into out[n]. */
int  st_to_f32_range(const struct st_tensor *t, int64_t first, int64_t n, float *out, char *err, size_t errlen);
const char *st_dtype_name(int dtype);
int  st_dtype_size(int dtype);
int  st_dtype_is_float(int dtype); /* F32, F64, BF16, F16: what st_to_f32 converts */
void st_close(struct st_file *f);

/* ---------------------------------------------------------------- writer */

/* One tensor to write. src points at prod(shape) items of src_dtype, little endian, possibly
 * unaligned. src_dtype is either dtype (the bytes are copied) or ST_F32 with dtype ST_BF16
 * (each value rounded to nearest even by st_f32_to_bf16 while writing). */
struct st_wtensor {
    const char *name;               /* not "__metadata__", unique within the file */
    int         dtype;              /* enum st_dtype stored in the file */
    int         ndim;               /* 0..ST_MAX_DIMS */
    int64_t     shape[ST_MAX_DIMS]; /* each >= 0 */
    const void *src;
    int         src_dtype;          /* enum st_dtype of src */
};

/* Size in bytes of the file st_write writes for these tensors and metadata (header
 * included); 0 when the arguments are invalid. meta: NULL, or NULL-terminated
 * key, value, key, value, ... strings for "__metadata__". */
uint64_t st_write_size(int n, const struct st_wtensor *ts, const char *const *meta);

/* Write a .safetensors file: 8-byte header length, the JSON header (an optional
 * "__metadata__" object first, then the tensors in the order given, data_offsets contiguous
 * from 0 in that order) padded with spaces to a multiple of 8 bytes, then the data. The file
 * is created or truncated, written, fsync'ed and closed; on failure it is removed.
 * Returns 0, or -1 with one line in err naming the file (and tensor). */
int st_write(const char *path, int n, const struct st_wtensor *ts, const char *const *meta,
             char *err, size_t errlen);

/* fp32 -> bf16 bits, rounded to nearest, ties to even; NaN stays a (quiet) NaN of the same sign. */
uint16_t st_f32_to_bf16(float x);

#endif
