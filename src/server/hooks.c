/*
 * hooks — POST /hooks/github: GitHub's webhooks, as hints.
 *
 * A delivery only asks the observer to poll the repository now: yci then
 * reads the refs and the open pull requests from GitHub itself, exactly as
 * a timed poll does, so a forged or replayed payload cannot make yci build
 * anything that is not there, and a lost delivery is caught by the next
 * poll. In order, before anything else happens:
 *   1. webhooks must be configured (GITHUB_WEBHOOK_SECRET), else 403;
 *   2. X-Hub-Signature-256 must be "sha256=" + the HMAC-SHA256 of the raw
 *      body with the secret, compared in constant time, else 401 — before
 *      the body is parsed (the HTTP layer already refused a body over
 *      GitHub's 25 MB with 413);
 *   3. the body must be a JSON object (application/json), else 400 (415);
 *   4. a repeated X-GitHub-Delivery is answered 200 and not acted on again
 *      (recorded only once the body was accepted, so a redelivery after a
 *      fix of the hook's settings is handled).
 * Events: ping (200), push and pull_request (202: the repository is polled),
 * anything else (202, ignored). A repository yci does not watch is 202 and
 * ignored, so that GitHub does not mark the hook as failing.
 */
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "github/github.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "server/internal.h"
#include "store/store.h"
#include "lib/banned.h"

static void respond(struct http_request *req, int status, json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    http_respond(req, status, "application/json", text ? text : "{}", text ? strlen(text) : 2);
    free(text);
}

/* Is header "sha256=<hex>" the HMAC of body with secret? */
static bool signature_ok(const char *secret, const char *header, const char *body, size_t len)
{
    if (!header || strncmp(header, "sha256=", 7) != 0)
        return false;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)(body ? body : ""),
              len, mac, &maclen))
        return false;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    for (unsigned int i = 0; i < maclen; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    /* GitHub sends lower-case hex; compare the whole string in constant time. */
    return secret_equal(hex, header + 7);
}

void hooks_github(struct server *srv, struct http_request *req)
{
    const char *secret = srv->cfg.github_webhook_secret;
    if (!secret || !*secret) {
        http_respond_error(req, 403, "webhooks are not enabled on this server: set "
                                     "GITHUB_WEBHOOK_SECRET (docs/github.md)");
        return;
    }
    size_t len = 0;
    const char *body = http_req_body(req, &len);
    if (!signature_ok(secret, http_req_header(req, "X-Hub-Signature-256"), body, len)) {
        log_warn("webhook from %s refused: missing or wrong X-Hub-Signature-256",
                 http_req_peer(req));
        http_respond_error(req, 401, "missing or wrong X-Hub-Signature-256");
        return;
    }
    const char *ctype = http_req_header(req, "Content-Type");
    if (ctype && strncasecmp(ctype, "application/x-www-form-urlencoded", 33) == 0) {
        http_respond_error(req, 415, "set the webhook's content type to application/json on "
                                     "GitHub");
        return;
    }
    json_error_t je;
    json_t *payload = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(payload)) {
        json_decref(payload);
        http_respond_error(req, 400, "the payload is not a JSON object: %s", je.text);
        return;
    }
    const char *event = http_req_header(req, "X-GitHub-Event");
    const char *delivery = http_req_header(req, "X-GitHub-Delivery");
    if (delivery && *delivery) {
        int fresh = store_delivery_new(srv->store, delivery);
        if (fresh == 0) {
            respond(req, 200, json_pack("{s:s, s:s}", "ignored", "delivery seen already",
                                        "delivery", delivery));
            json_decref(payload);
            return;
        }
        if (fresh < 0)
            log_warn("webhook delivery %s: cannot record it (%s); handling it anyway", delivery,
                     strerror(-fresh));
    }
    const char *full = json_string_value(
        json_object_get(json_object_get(payload, "repository"), "full_name"));
    if (event && strcmp(event, "ping") == 0) {
        log_info("webhook ping for %s: %s", full ? full : "?",
                 json_string_value(json_object_get(payload, "zen"))
                     ? json_string_value(json_object_get(payload, "zen"))
                     : "");
        respond(req, 200, json_pack("{s:b}", "pong", 1));
        goto out;
    }
    if (!event || (strcmp(event, "push") != 0 && strcmp(event, "pull_request") != 0)) {
        respond(req, 202, json_pack("{s:s}", "ignored", "yci acts on push and pull_request"));
        goto out;
    }
    /* GitHub names are case-insensitive: match the repository watched for
     * full_name however GITHUB_REPOSITORIES spelled it. */
    json_t *repo = NULL;
    if (full && github_full_name_valid(full)) {
        json_t *all = store_repo_list(srv->store);
        size_t i;
        json_t *r;
        json_array_foreach(all, i, r) {
            const char *gh = json_string_value(json_object_get(r, "github"));
            if (!repo && gh && strcasecmp(gh, full) == 0)
                repo = json_incref(r);
        }
        json_decref(all);
    }
    if (!repo) {
        respond(req, 202,
                json_pack("{s:s, s:s?}", "ignored", "yci does not watch this repository",
                          "repository", full));
        goto out;
    }
    int64_t id = json_integer_value(json_object_get(repo, "id"));
    const char *name = json_string_value(json_object_get(repo, "name"));
    log_info("webhook %s for %s: polling '%s' now", event, full, name);
    observer_request(srv->observer, id);
    respond(req, 202, json_pack("{s:s, s:s}", "polled", name, "event", event));
    json_decref(repo);
out:
    json_decref(payload);
}
