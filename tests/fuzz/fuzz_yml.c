/*
 * libFuzzer target for .yci.yml parsing (src/pipeline). Build and run: see
 * tests/fuzz/README.md.
 *
 * Beyond "never crash, never leak", it checks two properties on every input
 * that parses: the output has the documented shape, and feeding its jobs to
 * pipeline_validate_jobs() (the plan-job path) accepts them unchanged.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "pipeline/pipeline.h"

static void check(int cond, const char *what, json_t *doc)
{
    if (cond)
        return;
    char *s = json_dumps(doc, JSON_COMPACT);
    fprintf(stderr, "fuzz_yml: %s\n%s\n", what, s ? s : "(null)");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first byte picks the branch, so filters are exercised too. */
    static const char *const branches[] = {NULL, "main", "release/1.0", "wip/x", "refs/tags/v1"};
    const char *branch = branches[size ? data[0] % 5 : 0];
    struct buf err = BUF_INIT;
    json_t *doc = NULL;
    int r = pipeline_parse_yml((const char *)data, size, ".yci.yml", branch, 64, &doc, &err);
    if (r < 0) {
        check(err.len > 0, "an error without a message", NULL);
        check(doc == NULL, "output set on failure", NULL);
        buf_release(&err);
        return 0;
    }
    check(r == 0 && json_is_object(doc), "bad document", doc);
    json_t *jobs = json_object_get(doc, "jobs");
    check(json_is_array(jobs) && json_array_size(jobs) <= 64, "bad jobs", doc);
    check(json_is_boolean(json_object_get(doc, "cancel_superseded")), "cancel_superseded", doc);
    check(json_is_boolean(json_object_get(doc, "submodules")), "submodules", doc);

    json_t *again = NULL;
    buf_reset(&err);
    r = pipeline_validate_jobs(jobs, 64, &again, &err);
    if (r != 0) {
        fprintf(stderr, "fuzz_yml: validate_jobs refused parse_yml's output: %s\n", err.data);
        check(0, "round trip", doc);
    }
    check(json_equal(jobs, again), "round trip changed the jobs", doc);
    json_decref(again);
    json_decref(doc);
    buf_release(&err);
    return 0;
}
