/* mfu: peak FLOP/s by device (mfu.h). */
#include "mfu.h"

#include <stdio.h>
#include <string.h>

/* First match wins: the more specific names first. NVL parts (other clocks) are not listed. */
static const struct {
    const char *part;
    double tflops;
} peaks[] = {
    {"NVL", 0},         /* H100 NVL, H200 NVL: not known here */
    {"H100 PCIe", 756}, /* NVIDIA H100 PCIe */
    {"H100", 989},      /* NVIDIA H100 80GB HBM3 (SXM) */
    {"H200", 989},      /* NVIDIA H200 (SXM) */
    {"A100", 312},      /* NVIDIA A100-SXM4-80GB, A100-PCIE-40GB, ... */
};

double mfu_device_tflops(const char *name) {
    for (size_t i = 0; i < sizeof peaks / sizeof peaks[0]; i++)
        if (strstr(name, peaks[i].part)) return peaks[i].tflops;
    return 0;
}

double mfu_peak_flops(double peak_tflops, const char *device_name, char *why, size_t whylen) {
    why[0] = 0;
    if (peak_tflops > 0) return peak_tflops * 1e12;
    if (!device_name) return 0;
    double t = mfu_device_tflops(device_name);
    if (t == 0)
        snprintf(why, whylen, "the peak FLOP/s of %s is not known: no MFU is reported (set device.peak_tflops)",
                 device_name);
    return t * 1e12;
}
