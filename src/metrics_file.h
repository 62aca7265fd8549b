/* metrics_file: the JSON Lines file of log.metrics, on rank 0. A fresh run starts it empty.
 * A resumed run keeps the records of the steps its checkpoint holds (step <= the resumed
 * step; step records, `eval_step` records and checkpoint events) and drops the later ones, which the resume replays -- written under a temporary
 * name, fsynced and renamed over the file, so a crash leaves either the old file or the
 * new one -- and appends from there. A last line cut short by a crash is dropped too. */
#ifndef RT_METRICS_FILE_H
#define RT_METRICS_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Returns the file open for appending, or NULL with one line in err. */
FILE *metrics_open(const char *path, int64_t resumed_step, char *err, size_t errlen);

#endif
