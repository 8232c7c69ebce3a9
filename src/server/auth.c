/*
 * auth — bearer tokens: the admin token, the registration secret, runner tokens.
 *
 * Runner tokens are stored only as their SHA-256 (hex): a stolen database
 * does not hand out working tokens. The token itself has 256 bits of
 * randomness, so a plain (unsalted) hash is enough.
 */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/xalloc.h"
#include "server/internal.h"
#include "store/store.h"
#include "lib/banned.h"

#define AUTH_BUCKETS 1024

struct auth_entry {
    struct auth_entry *next;
    char hash[65];
    struct auth_runner runner;
};

struct auth_cache {
    pthread_mutex_t lock;
    struct auth_entry *buckets[AUTH_BUCKETS];
};

struct auth_cache *auth_cache_new(void)
{
    struct auth_cache *c = xcalloc(1, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

void auth_cache_free(struct auth_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < AUTH_BUCKETS; i++) {
        struct auth_entry *e = c->buckets[i];
        while (e) {
            struct auth_entry *next = e->next;
            json_decref(e->runner.labels);
            free(e->runner.name);
            free(e);
            e = next;
        }
    }
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void auth_token_hash(const char *token, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(token, strlen(token), md, &mdlen, EVP_sha256(), NULL);
    for (unsigned int i = 0; i < mdlen && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    out[64] = '\0';
}

const char *auth_bearer(struct http_request *req)
{
    const char *h = http_req_header(req, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    return *h ? h : NULL;
}

static size_t bucket_of(const char *hash)
{
    /* The hash is uniformly random hex: its first characters index well. */
    size_t v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = hash[i];
        v = v * 16 + (size_t)(ch <= '9' ? ch - '0' : ch - 'a' + 10);
    }
    return v % AUTH_BUCKETS;
}

void auth_runner_forget(struct server *srv, const char *hash)
{
    struct auth_cache *c = srv->auth;
    pthread_mutex_lock(&c->lock);
    for (struct auth_entry *e = c->buckets[bucket_of(hash)]; e; e = e->next)
        if (strcmp(e->hash, hash) == 0)
            e->hash[0] = '\0'; /* found no more; kept for those who hold it */
    pthread_mutex_unlock(&c->lock);
}

const struct auth_runner *auth_runner_lookup(struct server *srv, const char *token)
{
    if (!token || strlen(token) > 256)
        return NULL;
    char hash[65];
    auth_token_hash(token, hash);
    struct auth_cache *c = srv->auth;
    size_t b = bucket_of(hash);

    pthread_mutex_lock(&c->lock);
    for (struct auth_entry *e = c->buckets[b]; e; e = e->next) {
        if (strcmp(e->hash, hash) == 0) {
            pthread_mutex_unlock(&c->lock);
            return &e->runner; /* entries are never removed before auth_cache_free */
        }
    }
    pthread_mutex_unlock(&c->lock);

    json_t *runner = store_runner_by_token(srv->store, hash);
    if (!runner)
        return NULL;
    struct auth_entry *ne = xcalloc(1, sizeof(*ne));
    memcpy(ne->hash, hash, sizeof(hash));
    ne->runner.id = json_integer_value(json_object_get(runner, "id"));
    ne->runner.heartbeat = (int)json_integer_value(json_object_get(runner, "heartbeat"));
    ne->runner.lease_ms = server_lease_ms(ne->runner.heartbeat);
    ne->runner.labels = runner_match_labels(json_object_get(runner, "labels"),
                                            json_object_get(runner, "platform"));
    const char *name = json_string_value(json_object_get(runner, "name"));
    ne->runner.name = xstrdup(name ? name : "?");
    json_decref(runner);

    pthread_mutex_lock(&c->lock);
    for (struct auth_entry *e = c->buckets[b]; e; e = e->next) {
        if (strcmp(e->hash, hash) == 0) { /* another thread added it meanwhile */
            pthread_mutex_unlock(&c->lock);
            json_decref(ne->runner.labels);
            free(ne->runner.name);
            free(ne);
            return &e->runner;
        }
    }
    ne->next = c->buckets[b];
    c->buckets[b] = ne;
    pthread_mutex_unlock(&c->lock);
    return &ne->runner;
}
