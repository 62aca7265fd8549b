/* mfu: the peak FLOP/s that model FLOPs utilisation is measured against: device.peak_tflops
 * when set, else the dense bf16 peak of the CUDA device by its name (a table of the GPUs
 * whose peak is known); none on the cpu backend. */
#ifndef RT_MFU_H
#define RT_MFU_H

#include <stddef.h>

/* Dense bf16 TFLOP/s of a device by its CUDA name ("NVIDIA H200", "NVIDIA A100-SXM4-80GB"),
 * 0 when the name is not in the table. */
double mfu_device_tflops(const char *name);

/* The peak FLOP/s per GPU of a run: peak_tflops (the key) when > 0, else from device_name
 * (NULL: the cpu backend, no peak). 0 = no MFU; then why says so when it is worth a warning
 * (a device not in the table), else it is "". */
double mfu_peak_flops(double peak_tflops, const char *device_name, char *why, size_t whylen);

#endif
