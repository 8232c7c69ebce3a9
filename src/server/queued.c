/*
 * queued — why a queued job is not running yet, in words for its user.
 *
 * Computed when a build or a job is read (the API, the build page), from the
 * job and the runners as they are now: waiting for the jobs it needs, waiting
 * out a retry's delay, no live runner has its labels (which), every runner
 * that has them is busy (n of N slots), or about to be claimed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/util.h"
#include "server/internal.h"
#include "store/store.h"
#include "lib/banned.h"

/* Does the runner have every label of the job (same key, same value)? Its
 * "labels" are those a claim matches (queued_reasons()). */
static bool runner_has(json_t *runner, json_t *labels)
{
    json_t *have = json_object_get(runner, "labels");
    const char *k;
    json_t *v;
    json_object_foreach(labels, k, v) {
        if (!json_equal(json_object_get(have, k), v))
            return false;
    }
    return true;
}

static void labels_text(struct buf *b, json_t *labels)
{
    const char *k;
    json_t *v;
    bool first = true;
    json_object_foreach(labels, k, v) {
        buf_addf(b, "%s%s=%s", first ? "" : ", ", k, json_string_value(v) ? json_string_value(v)
                                                                           : "?");
        first = false;
    }
}

/* The reason for one queued job; jobs: its build's jobs, or NULL. */
static char *reason(json_t *job, json_t *jobs, json_t *runners, int64_t now)
{
    struct buf b = BUF_INIT;
    if (json_is_true(json_object_get(job, "waiting"))) {
        buf_adds(&b, "waiting for the jobs it needs: ");
        size_t i, n = 0;
        json_t *need;
        json_array_foreach(json_object_get(job, "needs"), i, need) {
            const char *status = NULL;
            size_t k;
            json_t *other;
            json_array_foreach(jobs, k, other) {
                if (json_equal(json_object_get(other, "name"), need))
                    status = json_string_value(json_object_get(other, "status"));
            }
            if (status && strcmp(status, "passed") == 0)
                continue;
            buf_addf(&b, "%s%s%s%s%s", n++ ? ", " : "", json_string_value(need),
                     status ? " (" : "", status ? status : "", status ? ")" : "");
        }
        return b.data;
    }
    json_t *nb = json_object_get(job, "not_before");
    if (json_is_integer(nb) && json_integer_value(nb) > now) {
        buf_setf(&b, "waiting out a retry delay: retry %" PRId64 " of %" PRId64 " in %" PRId64
                     " s",
                 (int64_t)json_integer_value(json_object_get(job, "retries")),
                 (int64_t)json_integer_value(json_object_get(job, "max_retries")),
                 (int64_t)((json_integer_value(nb) - now + 999) / 1000));
        return b.data;
    }
    json_t *labels = json_object_get(job, "labels");
    int64_t matching = 0, slots = 0, busy = 0;
    size_t i;
    json_t *r;
    json_array_foreach(runners, i, r) {
        if (!json_is_true(json_object_get(r, "alive")) || !runner_has(r, labels))
            continue;
        matching++;
        slots += json_integer_value(json_object_get(r, "slots"));
        busy += (int64_t)json_array_size(json_object_get(r, "jobs"));
    }
    if (matching == 0) {
        if (json_object_size(labels)) {
            buf_adds(&b, "no live runner has its labels: ");
            labels_text(&b, labels);
        } else {
            buf_adds(&b, "no live runner");
        }
    } else if (busy >= slots) {
        buf_setf(&b, "all %" PRId64 " matching runner%s busy (%" PRId64 " of %" PRId64
                     " slots in use)",
                 matching, matching == 1 ? " is" : "s are", busy, slots);
    } else {
        buf_adds(&b, "waiting for a runner to claim it");
    }
    return b.data;
}

void queued_reasons(struct server *srv, json_t *jobs, json_t *build_jobs)
{
    json_t *runners = NULL;
    int64_t now = time_now_ms();
    size_t i;
    json_t *job;
    json_array_foreach(jobs, i, job) {
        const char *st = json_string_value(json_object_get(job, "status"));
        if (!st || strcmp(st, "queued") != 0)
            continue;
        if (!runners) {
            runners = store_runner_list(srv->store, false);
            /* As a claim matches them (runner_match_labels()), once each. */
            size_t k;
            json_t *r;
            json_array_foreach(runners, k, r) {
                json_object_set_new(r, "labels",
                                    runner_match_labels(json_object_get(r, "labels"),
                                                        json_object_get(r, "platform")));
            }
        }
        char *why = reason(job, build_jobs ? build_jobs : jobs, runners, now);
        json_object_set_new(job, "queued_reason", json_string(why ? why : ""));
        free(why);
    }
    json_decref(runners);
}
