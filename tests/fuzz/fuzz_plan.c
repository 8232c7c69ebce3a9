/*
 * libFuzzer target for the JSON a .yci.py plan job returns
 * (pipeline_validate_jobs). See tests/fuzz/README.md.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lib/buf.h"
#include "pipeline/pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *in = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!in)
        return 0;
    struct buf err = BUF_INIT;
    json_t *out = NULL;
    if (pipeline_validate_jobs(in, 64, &out, &err) == 0) {
        /* Normalised output is a fixed point. */
        json_t *again = NULL;
        if (pipeline_validate_jobs(out, 64, &again, &err) != 0 || !json_equal(out, again)) {
            fprintf(stderr, "fuzz_plan: normalised jobs are not a fixed point: %s\n",
                    err.data ? err.data : "");
            abort();
        }
        json_decref(again);
        json_decref(out);
    } else if (err.len == 0) {
        fprintf(stderr, "fuzz_plan: an error without a message\n");
        abort();
    }
    json_decref(in);
    buf_release(&err);
    return 0;
}
