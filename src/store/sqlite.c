/*
 * sqlite — the SQLite driver of store.h.
 *
 * Concurrency: one connection, opened SQLITE_OPEN_NOMUTEX, guarded by
 * st->lock. Every public function takes the lock for its whole duration, so
 * calls are serialised and a transaction never interleaves with another
 * thread's statements. With WAL and synchronous=NORMAL a commit is an append
 * to the WAL without fsync (a power cut may lose the last transactions, never
 * corrupt the database), which is what makes a claim or a finish cost tens
 * of microseconds rather than an fsync.
 *
 * Statements: every query is compiled once at open to check it, then
 * prepared for good (SQLITE_PREPARE_PERSISTENT) on its first use and reset
 * for reuse. A prepared statement costs a few KiB; an idle server uses a
 * dozen of the 70-odd, so preparing them all up front kept half a MiB
 * resident for nothing (issue 6). q() hands out a reset statement with its
 * bindings cleared; the unlock path resets any statement still active so
 * that no read snapshot outlives a call.
 *
 * Transactions: every change runs in BEGIN IMMEDIATE ... COMMIT (the write
 * lock is taken up front, so a transaction never fails half-way on a lock
 * upgrade) and rolls back on any error.
 *
 * Schema: migrations[] applied in order at open; PRAGMA user_version is the
 * number applied. Add a migration at the end, never edit a released one.
 *
 * The claim: claimable jobs (queued, not waiting on needs) sit in a partial
 * index jobs_queued ON jobs(labels, id), so the claim reads that index only,
 * whatever the number of finished jobs, and its cost does not grow with the
 * queue either: it walks the distinct label sets in the index (one seek
 * each), checks each set against the runner's labels in C (a job matches
 * when its labels are a subset of the runner's), and takes the oldest job of
 * each matching set (one seek); the oldest of those wins. So 100,000 queued
 * jobs for a label this runner lacks cost it one seek, not a scan. Its cost
 * is the number of distinct label sets queued (a handful in practice), plus
 * the jobs of a matching set whose retry delay (not_before) has not passed.
 *
 * Indexes are few on purpose: a commit costs about 5 us per page it dirties
 * (WAL frame, checksum, pwrite), and every index that a claim or a finish
 * changes is one more page. So:
 *  - jobs_queued (labels, id) WHERE queued and not waiting: the claim;
 *  - jobs_running (runner_id, lease_expires) WHERE running: a runner's jobs,
 *    and the lease expiry scan, which reads every running job (as many as
 *    there are runner slots, never the history);
 *  - jobs_by_build (build_id, status): a build's jobs and its state, so that
 *    finishing one job of a 256-job build costs one probe, not 256 rows;
 *  - builds_by_repo / _branch / _status (and the rowid) for the lists,
 *    builds_by_commit for the observer's "built already?", and builds_by_ref
 *    for the overview's newest build of each ref.
 * Measured on the 2-core build machine (tests/unit/test_store --bench):
 * claim + check + finish of a job is ~70 us, ~14,000 jobs/s in builds of
 * 100 jobs, ~10,000 jobs/s with one job per build.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "lib/limits.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "lib/banned.h"

#define BUSY_TIMEOUT_MS 5000
#define MAX_JOB_NAME 100
#define LIST_DEFAULT 50

/*
 * Migrations. Jobs carry not_before (a retry's delay: no claim before),
 * needs (JSON array of job names), max_retries, retry_delay (seconds) and
 * retries (IncrementalRetry of failed attempts), flaky (passed on a retry),
 * and waiting (1 while some needed job has not passed: such a job is queued
 * but out of the claim's index, so waiting jobs cost the claim nothing).
 * kind is 'plan' for the job that runs a .yci.py generator, 'test' otherwise;
 * planned is 1 for the jobs a plan added (a rebuild copies the plan, not them).
 */
static const char *const migrations[] = {
    /* 1: the first schema */
    "CREATE TABLE repos ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  url TEXT NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  last_poll INTEGER,"
    "  last_error TEXT"
    ");"
    "CREATE TABLE heads ("
    "  repo_id INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,"
    "  ref TEXT NOT NULL,"
    "  sha TEXT NOT NULL,"
    "  PRIMARY KEY (repo_id, ref)"
    ") WITHOUT ROWID;"
    "CREATE TABLE builds ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  repo_id INTEGER REFERENCES repos(id),"
    "  ref TEXT,"
    "  branch TEXT,"
    "  commit_sha TEXT,"
    "  status TEXT NOT NULL DEFAULT 'queued',"
    "  error TEXT,"
    "  created INTEGER NOT NULL,"
    "  started INTEGER,"
    "  finished INTEGER,"
    "  rebuild_of INTEGER REFERENCES builds(id),"
    "  origin TEXT NOT NULL DEFAULT 'api'" /* observer, api, rebuild */
    ");"
    "CREATE INDEX builds_by_commit ON builds(repo_id, ref, commit_sha);"
    "CREATE INDEX builds_by_repo ON builds(repo_id, id);"
    "CREATE INDEX builds_by_branch ON builds(branch, id);"
    "CREATE INDEX builds_by_status ON builds(status, id);"
    "CREATE TABLE runners ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL,"
    "  token_hash TEXT NOT NULL UNIQUE,"
    "  labels TEXT NOT NULL DEFAULT '{}',"
    "  platform TEXT,"
    "  slots INTEGER NOT NULL DEFAULT 1,"
    "  heartbeat INTEGER NOT NULL DEFAULT 10,"
    "  client_info TEXT,"
    "  created INTEGER NOT NULL,"
    "  last_seen INTEGER"
    ");"
    "CREATE TABLE jobs ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  build_id INTEGER NOT NULL REFERENCES builds(id),"
    "  name TEXT NOT NULL,"
    "  status TEXT NOT NULL DEFAULT 'queued',"
    "  attempt INTEGER NOT NULL DEFAULT 0,"
    "  commands TEXT NOT NULL,"
    "  env TEXT NOT NULL DEFAULT '{}',"
    "  labels TEXT NOT NULL DEFAULT '{}',"
    "  timeout INTEGER NOT NULL DEFAULT 0,"
    "  runner_id INTEGER REFERENCES runners(id),"
    "  lease_expires INTEGER,"
    "  exit_code INTEGER,"
    "  error TEXT,"
    "  created INTEGER NOT NULL,"
    "  started INTEGER,"
    "  finished INTEGER,"
    "  infra_retries INTEGER NOT NULL DEFAULT 0,"
    "  not_before INTEGER NOT NULL DEFAULT 0,"
    "  needs TEXT,"
    "  max_retries INTEGER NOT NULL DEFAULT 0,"
    "  retry_delay INTEGER NOT NULL DEFAULT 0,"
    "  retries INTEGER NOT NULL DEFAULT 0,"
    "  flaky INTEGER NOT NULL DEFAULT 0,"
    "  UNIQUE (build_id, name)"
    ");"
    "CREATE INDEX jobs_queued ON jobs(id) WHERE status = 'queued';"
    "CREATE INDEX jobs_by_build ON jobs(build_id, status);"
    "CREATE INDEX jobs_running ON jobs(runner_id, lease_expires) WHERE status = 'running';"
    "CREATE TABLE events ("
    "  id INTEGER PRIMARY KEY,"
    "  build_id INTEGER NOT NULL REFERENCES builds(id),"
    "  job_id INTEGER REFERENCES jobs(id),"
    "  time INTEGER NOT NULL,"
    "  message TEXT NOT NULL"
    ");"
    "CREATE INDEX events_by_build ON events(build_id, id);",
    /* 2: needs (jobs waiting for others leave the claim's index) */
    "ALTER TABLE jobs ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0;"
    "DROP INDEX jobs_queued;"
    "CREATE INDEX jobs_queued ON jobs(id) WHERE status = 'queued' AND waiting = 0;",
    /* 3: .yci.py plan jobs (kind 'plan') and the jobs they generate (planned);
     * submodules: check them out in the workspace (.yci.yml "submodules") */
    "ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'test';"
    "ALTER TABLE jobs ADD COLUMN planned INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN submodules INTEGER NOT NULL DEFAULT 0;"
    /* GitHub: a repository's full name; a pull request build's PR (JSON)
     * and whether it comes from a fork */
    "ALTER TABLE repos ADD COLUMN github TEXT;"
    "ALTER TABLE repos ADD COLUMN private INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE builds ADD COLUMN pull TEXT;"
    "ALTER TABLE builds ADD COLUMN untrusted INTEGER NOT NULL DEFAULT 0;"
    /* The outbox of commit statuses for GitHub repositories: one row per
     * job (and job_id 0 for the build), kept up to date by triggers in the
     * very transactions that change a state; version grows with each
     * change and sent is the version delivered, so the last state sent is
     * always the newest (a late "pending" cannot overwrite a final one). */
    "CREATE TABLE statuses ("
    "  id INTEGER PRIMARY KEY,"
    "  build_id INTEGER NOT NULL,"
    "  job_id INTEGER NOT NULL,"
    "  github TEXT NOT NULL,"
    "  sha TEXT NOT NULL,"
    "  context TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  version INTEGER NOT NULL DEFAULT 1,"
    "  sent INTEGER NOT NULL DEFAULT 0,"
    "  next_try INTEGER NOT NULL DEFAULT 0,"
    "  tries INTEGER NOT NULL DEFAULT 0,"
    "  last_error TEXT,"
    "  UNIQUE (build_id, job_id)"
    ");"
    "CREATE INDEX statuses_due ON statuses(next_try, id) WHERE sent < version;"
    /* GitHub's webhook deliveries handled, so that a redelivery is once */
    "CREATE TABLE deliveries (id TEXT PRIMARY KEY, received INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX deliveries_by_time ON deliveries(received);"
    "CREATE TRIGGER statuses_build_insert AFTER INSERT ON builds "
    "WHEN NEW.commit_sha IS NOT NULL AND "
    "(SELECT github FROM repos WHERE id = NEW.repo_id) IS NOT NULL BEGIN "
    "  INSERT INTO statuses(build_id, job_id, github, sha, context, state) "
    "  SELECT NEW.id, 0, github, NEW.commit_sha, 'yci', NEW.status FROM repos "
    "  WHERE id = NEW.repo_id; "
    "END;"
    "CREATE TRIGGER statuses_job_insert AFTER INSERT ON jobs "
    "WHEN EXISTS (SELECT 1 FROM statuses WHERE build_id = NEW.build_id AND job_id = 0) BEGIN "
    "  INSERT INTO statuses(build_id, job_id, github, sha, context, state) "
    "  SELECT NEW.build_id, NEW.id, github, sha, 'yci/' || NEW.name, NEW.status FROM statuses "
    "  WHERE build_id = NEW.build_id AND job_id = 0; "
    "END;"
    "CREATE TRIGGER statuses_build_update AFTER UPDATE OF status ON builds "
    "WHEN NEW.status <> OLD.status BEGIN "
    "  UPDATE statuses SET state = NEW.status, version = version + 1, next_try = 0, tries = 0 "
    "  WHERE build_id = NEW.id AND job_id = 0; "
    "END;"
    "CREATE TRIGGER statuses_job_update AFTER UPDATE OF status ON jobs "
    "WHEN NEW.status <> OLD.status BEGIN "
    "  UPDATE statuses SET state = NEW.status, version = version + 1, next_try = 0, tries = 0 "
    "  WHERE build_id = NEW.build_id AND job_id = NEW.id; "
    "END;",
    /* 4: the commit's author and subject, for the pages */
    "ALTER TABLE builds ADD COLUMN author TEXT;"
    "ALTER TABLE builds ADD COLUMN subject TEXT;",
    /* 5: the newest build of a ref in one probe (the overview) */
    "CREATE INDEX builds_by_ref ON builds(repo_id, ref, id);",
    /* 6: the claim seeks by label set (its cost independent of the queue) */
    "DROP INDEX jobs_queued;"
    "CREATE INDEX jobs_queued ON jobs(labels, id) WHERE status = 'queued' AND waiting = 0;",
    /* 7: a build with no jobs (every job filtered out for its ref) reports
     * no commit status: nothing was tested, and a "success" would cover
     * the result of another build of the same commit (its branch's) */
    "DROP TRIGGER statuses_build_insert;"
    "CREATE TRIGGER statuses_build_insert AFTER INSERT ON builds "
    "WHEN NEW.commit_sha IS NOT NULL AND NEW.status <> 'passed' AND "
    "(SELECT github FROM repos WHERE id = NEW.repo_id) IS NOT NULL BEGIN "
    "  INSERT INTO statuses(build_id, job_id, github, sha, context, state) "
    "  SELECT NEW.id, 0, github, NEW.commit_sha, 'yci', NEW.status FROM repos "
    "  WHERE id = NEW.repo_id; "
    "END;",
};
#define N_MIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

#define JOB_COLS                                                                                   \
    "j.id, j.build_id, j.name, j.status, j.attempt, j.commands, j.env, j.labels, j.timeout, "      \
    "r.name, j.runner_id, j.exit_code, j.error, j.created, j.started, j.finished, "                \
    "j.infra_retries, j.lease_expires, j.retries, j.max_retries, j.flaky, j.needs, "              \
    "j.not_before, j.waiting, j.retry_delay, j.kind, j.planned, j.submodules"
#define JOB_FROM " FROM jobs j LEFT JOIN runners r ON r.id = j.runner_id"
#define JOB_NCOLS 28

#define BUILD_COLS                                                                                 \
    "b.id, p.name, b.ref, b.branch, b.commit_sha, b.status, b.error, b.created, b.started, "       \
    "b.finished, b.rebuild_of, json_extract(b.pull, '$.number'), b.untrusted, b.author, "          \
    "b.subject"
#define BUILD_FROM " FROM builds b LEFT JOIN repos p ON p.id = b.repo_id"

#define REPO_COLS "id, name, url, created, last_poll, last_error, github, private FROM repos"

#define RUNNER_COLS                                                                                \
    "id, name, labels, platform, slots, heartbeat, client_info, created, last_seen FROM runners"

enum q {
    Q_BEGIN,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_REPO_INSERT,
    Q_REPO_BY_NAME,
    Q_REPO_BY_ID,
    Q_REPO_LIST,
    Q_REPO_POLLED,
    Q_HEADS_GET,
    Q_HEAD_GET,
    Q_HEAD_SET,
    Q_HEAD_DELETE,
    Q_BUILD_EXISTS,
    Q_BUILD_INSERT,
    Q_JOB_INSERT,
    Q_BUILD_GET,
    Q_BUILD_JOBS,
    Q_BUILD_EVENTS,
    Q_BUILD_STATE,
    Q_BUILD_ACTIVE,
    Q_BUILD_COUNTS,
    Q_BUILD_SET_STATE,
    Q_BUILD_START,
    Q_BUILD_SET_ERROR,
    Q_BUILD_SET_PULL,
    Q_CLOSED,
    Q_CLOSED_ADOPTED,
    Q_BUILD_COPY_PULL,
    Q_REPO_SET_GITHUB,
    Q_STATUSES_DUE,
    Q_STATUS_SENT,
    Q_STATUS_RETRY,
    Q_STATUSES_PENDING,
    Q_DELIVERY_INSERT,
    Q_LATEST_BUILDS,
    Q_BUILD_SET_COMMIT,
    Q_STATUSES_WAKE,
    Q_DELIVERY_PRUNE,
    Q_BUILD_ROW,
    Q_JOBS_COPY,
    Q_BUILD_CANCEL,
    Q_EVENT_INSERT,
    Q_JOB_GET,
    Q_JOB_STATE,
    Q_JOB_CANCEL,
    Q_CLAIM_LABELS,
    Q_CLAIM_FIRST,
    Q_CLAIM_TAKE,
    Q_CLAIM_GET,
    Q_JOB_FINISH,
    Q_JOB_RETRY,
    Q_WAITING_LIST,
    Q_JOB_BY_NAME,
    Q_JOB_RELEASE,
    Q_JOB_CANCEL_NEED,
    Q_SUPERSEDED,
    Q_SUPERSEDED_SPARED,
    Q_LEASES_EXPIRED,
    Q_JOB_REQUEUE,
    Q_JOB_GIVE_BACK,
    Q_JOB_GIVEUP,
    Q_LEASES_GRACE,
    Q_RUNNER_COUNT,
    Q_RUNNER_INSERT,
    Q_RUNNER_BY_TOKEN,
    Q_RUNNER_REREGISTER,
    Q_RUNNER_JOBS_EXPIRE,
    Q_RUNNER_LIST,
    Q_RUNNER_JOBS,
    Q_RUNNER_SEEN,
    Q_LEASE_EXTEND,
    Q_COUNT
};

static const char *const sql[Q_COUNT] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_REPO_INSERT] = "INSERT INTO repos(name, url, created) VALUES (?1, ?2, ?3)",
    [Q_REPO_BY_NAME] = "SELECT " REPO_COLS " WHERE name = ?1",
    [Q_REPO_BY_ID] = "SELECT " REPO_COLS " WHERE id = ?1",
    [Q_REPO_LIST] = "SELECT " REPO_COLS " ORDER BY name",
    [Q_REPO_POLLED] = "UPDATE repos SET last_poll = ?2, last_error = ?3 WHERE id = ?1",
    [Q_HEADS_GET] = "SELECT ref, sha FROM heads WHERE repo_id = ?1 ORDER BY ref",
    [Q_HEAD_GET] = "SELECT sha FROM heads WHERE repo_id = ?1 AND ref = ?2",
    [Q_HEAD_SET] = "INSERT INTO heads(repo_id, ref, sha) VALUES (?1, ?2, ?3) "
                   "ON CONFLICT(repo_id, ref) DO UPDATE SET sha = excluded.sha",
    [Q_HEAD_DELETE] = "DELETE FROM heads WHERE repo_id = ?1 AND ref = ?2",
    /* A cancelled build does not count: a ref that comes back to a commit
     * whose build was cancelled (a reopened pull request) builds again. */
    [Q_BUILD_EXISTS] = "SELECT id, ref = ?2, json_extract(pull, '$.number') FROM builds "
                       "WHERE repo_id = ?1 AND commit_sha = ?3 "
                       "AND (ref = ?2 OR ref = ?4) AND status <> 'cancelled' "
                       "ORDER BY ref = ?2 DESC LIMIT 1",
    [Q_BUILD_INSERT] =
        "INSERT INTO builds(repo_id, ref, branch, commit_sha, status, error, created, "
        "finished, rebuild_of, origin) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
        "?10)",
    [Q_JOB_INSERT] = "INSERT INTO jobs(build_id, name, commands, env, labels, timeout, created, "
                     "needs, max_retries, retry_delay, waiting, kind, planned, submodules) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?8 IS NOT NULL, ?11, ?12, "
                     "?13)",
    [Q_BUILD_GET] = "SELECT " BUILD_COLS BUILD_FROM " WHERE b.id = ?1",
    [Q_BUILD_JOBS] = "SELECT " JOB_COLS JOB_FROM " WHERE j.build_id = ?1 ORDER BY j.id",
    [Q_BUILD_EVENTS] = "SELECT time, job_id, message FROM events WHERE build_id = ?1 ORDER BY id",
    [Q_BUILD_STATE] = "SELECT status, started FROM builds WHERE id = ?1",
    [Q_BUILD_ACTIVE] = "SELECT 1 FROM jobs INDEXED BY jobs_by_build WHERE build_id = ?1 AND "
                       "status IN ('queued', 'running') LIMIT 1",
    [Q_BUILD_COUNTS] = "SELECT count(*), "
                       "coalesce(sum(status IN ('failed', 'timed_out')), 0), "
                       "coalesce(sum(status = 'error'), 0), "
                       "coalesce(sum(status = 'cancelled'), 0) "
                       "FROM jobs INDEXED BY jobs_by_build WHERE build_id = ?1",
    [Q_BUILD_SET_STATE] = "UPDATE builds SET status = ?2, finished = ?3 WHERE id = ?1",
    [Q_BUILD_START] = "UPDATE builds SET status = 'running', started = coalesce(started, ?2) "
                      "WHERE id = ?1 AND (status <> 'running' OR started IS NULL)",
    [Q_BUILD_SET_ERROR] = "UPDATE builds SET error = ?2 WHERE id = ?1",
    /* A build's pull request: set when it is made, or when a pull request
     * finds its branch's build at its commit (the first one wins). */
    [Q_BUILD_SET_PULL] = "UPDATE builds SET pull = ?2, untrusted = ?3 WHERE id = ?1 AND pull IS NULL",
    [Q_BUILD_COPY_PULL] = "UPDATE builds SET (pull, untrusted, author, subject) = (SELECT pull, "
                          "untrusted, author, subject FROM builds WHERE id = ?2) WHERE id = ?1",
    [Q_BUILD_SET_COMMIT] = "UPDATE builds SET author = ?2, subject = ?3 WHERE id = ?1",
    [Q_REPO_SET_GITHUB] = "UPDATE repos SET github = ?2, private = ?3 WHERE id = ?1",
    [Q_STATUSES_DUE] = "SELECT s.id, s.build_id, s.job_id, s.github, s.sha, s.context, s.state, "
                       "s.version, s.tries, j.exit_code, j.error, j.started, j.finished, "
                       "j.attempt, j.retries, j.max_retries, b.error FROM statuses s "
                       "INDEXED BY statuses_due LEFT JOIN jobs j ON j.id = s.job_id "
                       "LEFT JOIN builds b ON b.id = s.build_id "
                       "WHERE s.sent < s.version AND s.next_try <= ?1 "
                       "AND (?3 IS NULL OR lower(s.github) IN (SELECT value FROM json_each(?3))) "
                       /* A build's status after its jobs': GitHub shows it last. */
                       "ORDER BY s.next_try, s.job_id = 0, s.id LIMIT ?2",
    [Q_STATUS_SENT] = "UPDATE statuses SET sent = max(sent, ?2), tries = 0, last_error = NULL "
                      "WHERE id = ?1",
    /* Only the version tried: a newer state stays due at once. */
    [Q_STATUS_RETRY] = "UPDATE statuses SET next_try = ?2, tries = tries + 1, last_error = ?3 "
                       "WHERE id = ?1 AND version = ?4",
    [Q_STATUSES_WAKE] = "UPDATE statuses SET next_try = 0 WHERE sent < version AND next_try > ?1 "
                        "AND (?2 IS NULL OR lower(github) IN (SELECT value FROM json_each(?2)))",
    /* The newest build of each (repository, ref): the overview. */
    /* The refs the observer sees now (heads), each with its newest build:
     * one probe of builds_by_ref per ref, whatever the history. */
    [Q_LATEST_BUILDS] = "SELECT " BUILD_COLS BUILD_FROM " WHERE b.id IN (SELECT (SELECT "
                        "max(x.id) FROM builds x WHERE x.repo_id = h.repo_id AND x.ref = "
                        "h.ref) FROM heads h) ORDER BY p.name, b.ref",
    [Q_DELIVERY_INSERT] = "INSERT OR IGNORE INTO deliveries(id, received) VALUES (?1, ?2)",
    [Q_DELIVERY_PRUNE] = "DELETE FROM deliveries WHERE received < ?1",
    [Q_STATUSES_PENDING] = "SELECT count(*) FROM statuses INDEXED BY statuses_due "
                           "WHERE sent < version AND (?1 IS NULL OR lower(github) IN "
                           "(SELECT value FROM json_each(?1)))",
    /* A plan's error is not copied by a rebuild: the rebuild plans again. */
    [Q_BUILD_ROW] = "SELECT repo_id, ref, branch, commit_sha, CASE WHEN EXISTS (SELECT 1 FROM "
                    "jobs WHERE build_id = ?1 AND kind = 'plan') THEN NULL ELSE error END "
                    "FROM builds WHERE id = ?1",
    [Q_JOBS_COPY] = "INSERT INTO jobs(build_id, name, commands, env, labels, timeout, needs, "
                    "max_retries, retry_delay, waiting, created, kind, submodules) "
                    "SELECT ?1, name, commands, env, labels, timeout, needs, max_retries, "
                    "retry_delay, needs IS NOT NULL, ?2, kind, submodules FROM jobs WHERE "
                    "build_id = ?3 AND "
                    "planned = 0 ORDER BY id",
    [Q_BUILD_CANCEL] = "UPDATE jobs SET status = 'cancelled', finished = ?2, lease_expires = NULL "
                       "WHERE build_id = ?1 AND status IN ('queued', 'running')",
    [Q_EVENT_INSERT] =
        "INSERT INTO events(build_id, job_id, time, message) VALUES (?1, ?2, ?3, ?4)",
    [Q_JOB_GET] = "SELECT " JOB_COLS JOB_FROM " WHERE j.id = ?1",
    [Q_JOB_STATE] = "SELECT status, attempt, runner_id, build_id, name, retries, max_retries, "
                    "retry_delay, kind FROM jobs WHERE id = ?1",
    [Q_JOB_CANCEL] = "UPDATE jobs SET status = 'cancelled', finished = ?2, lease_expires = NULL "
                     "WHERE id = ?1 AND status IN ('queued', 'running')",
    /* INDEXED BY: the claim must read the partial index of queued jobs, never
     * a range of the table (which holds every finished job too). */
    [Q_CLAIM_LABELS] = "SELECT labels FROM jobs INDEXED BY jobs_queued "
                       "WHERE status = 'queued' AND waiting = 0 AND labels > ?1 "
                       "ORDER BY labels LIMIT 1",
    [Q_CLAIM_FIRST] = "SELECT id FROM jobs INDEXED BY jobs_queued "
                      "WHERE status = 'queued' AND waiting = 0 AND labels = ?1 AND not_before <= ?2 "
                      "ORDER BY id LIMIT 1",
    [Q_CLAIM_TAKE] = "UPDATE jobs SET status = 'running', attempt = attempt + 1, runner_id = ?2, "
                     "lease_expires = ?3, started = ?4, finished = NULL, exit_code = NULL, "
                     "error = NULL WHERE id = ?1 AND status = 'queued' RETURNING build_id",
    /* The pull request goes to the plan job only: .yci.py gets it as pull. */
    [Q_CLAIM_GET] = "SELECT " JOB_COLS ", b.ref, b.commit_sha, p.name, "
                    "CASE WHEN j.kind = 'plan' THEN b.pull END, p.github" JOB_FROM
                    " JOIN builds b ON b.id = j.build_id LEFT JOIN repos p ON p.id = b.repo_id "
                    "WHERE j.id = ?1",
    [Q_JOB_FINISH] = "UPDATE jobs SET status = ?2, exit_code = ?3, error = ?4, finished = ?5, "
                     "lease_expires = NULL, flaky = (?2 = 'passed' AND retries > 0) "
                     "WHERE id = ?1 AND status = 'running'",
    /* runner_id stays: a repeated finish of this attempt by its runner is
     * recognised (idempotent), and the job shows where it last ran. */
    [Q_JOB_RETRY] = "UPDATE jobs SET status = 'queued', retries = retries + 1, not_before = ?2, "
                    "exit_code = ?3, error = ?4, finished = ?5, lease_expires = NULL "
                    "WHERE id = ?1 AND status = 'running'",
    [Q_WAITING_LIST] = "SELECT id, name, needs FROM jobs INDEXED BY jobs_by_build "
                       "WHERE build_id = ?1 AND status = 'queued' AND waiting = 1 ORDER BY id",
    [Q_JOB_BY_NAME] = "SELECT status FROM jobs WHERE build_id = ?1 AND name = ?2",
    [Q_JOB_RELEASE] = "UPDATE jobs SET waiting = 0 WHERE id = ?1",
    [Q_JOB_CANCEL_NEED] = "UPDATE jobs SET status = 'cancelled', waiting = 0, finished = ?2, "
                          "error = ?3 WHERE id = ?1 AND status = 'queued'",
    [Q_SUPERSEDED] = "SELECT id FROM builds INDEXED BY builds_by_commit WHERE repo_id = ?1 AND "
                     "ref = ?2 AND commit_sha <> ?3 AND status IN ('queued', 'running') "
                     "ORDER BY id",
    /* ... and when branch ?2 of the repository moved to ?3, the unfinished
     * builds of its closed pull requests (no head any more) that Q_CLOSED
     * spared because the branch stood at their commit. */
    [Q_SUPERSEDED_SPARED] = "SELECT id FROM builds INDEXED BY builds_by_commit WHERE repo_id = ?1 "
                            "AND ref >= 'refs/pull/' AND ref < 'refs/pull0' AND commit_sha <> ?3 "
                            "AND status IN ('queued', 'running') AND "
                            "json_extract(pull, '$.head.ref') = ?2 AND "
                            "json_extract(pull, '$.head.repo.full_name') = "
                            "json_extract(pull, '$.base.repo.full_name') AND NOT EXISTS ("
                            "SELECT 1 FROM heads h WHERE h.repo_id = ?1 AND h.ref = builds.ref) "
                            "ORDER BY id",
    /* The unfinished builds of a closed pull request's ref ?2, but those
     * its branch stands for (store_head_advance()'s twin): the branch of
     * the repository is still at their commit, with no build of its own
     * there. */
    [Q_CLOSED] = "SELECT b.id FROM builds b INDEXED BY builds_by_commit WHERE b.repo_id = ?1 "
                 "AND b.ref = ?2 AND b.status IN ('queued', 'running') AND NOT EXISTS ("
                 "SELECT 1 FROM heads h WHERE h.repo_id = ?1 AND h.sha = b.commit_sha AND "
                 "h.ref = 'refs/heads/' || json_extract(b.pull, '$.head.ref') AND "
                 "json_extract(b.pull, '$.head.repo.full_name') = "
                 "json_extract(b.pull, '$.base.repo.full_name') AND NOT EXISTS ("
                 "SELECT 1 FROM builds o WHERE o.repo_id = ?1 AND o.ref = h.ref AND "
                 "o.commit_sha = b.commit_sha AND o.status <> 'cancelled')) ORDER BY b.id",
    /* ... and the unfinished builds of other refs that pull request ?3
     * adopted (a branch's) whose ref is no longer at their commit (the
     * branch deleted or moved on). */
    [Q_CLOSED_ADOPTED] = "SELECT b.id FROM builds b WHERE b.repo_id = ?1 AND b.ref <> ?2 AND "
                         "b.pull IS NOT NULL AND b.status IN ('queued', 'running') AND "
                         "json_extract(b.pull, '$.number') = ?3 AND NOT EXISTS (SELECT 1 FROM "
                         "heads h WHERE h.repo_id = ?1 AND h.ref = b.ref AND "
                         "h.sha = b.commit_sha) ORDER BY b.id",
    [Q_LEASES_EXPIRED] = "SELECT j.id, j.build_id, j.name, j.attempt, j.infra_retries, r.name "
                         "FROM jobs j INDEXED BY jobs_running "
                         "LEFT JOIN runners r ON r.id = j.runner_id "
                         "WHERE j.status = 'running' AND j.lease_expires < ?1 ORDER BY j.id",
    [Q_JOB_REQUEUE] = "UPDATE jobs SET status = 'queued', runner_id = NULL, lease_expires = NULL, "
                      "infra_retries = infra_retries + 1 WHERE id = ?1",
    /* A stopping runner gives a job back: no infrastructure retry counted. */
    [Q_JOB_GIVE_BACK] = "UPDATE jobs SET status = 'queued', runner_id = NULL, lease_expires = "
                        "NULL WHERE id = ?1 AND status = 'running' AND attempt = ?2 AND "
                        "runner_id = ?3",
    [Q_JOB_GIVEUP] = "UPDATE jobs SET status = 'error', runner_id = NULL, lease_expires = NULL, "
                     "error = ?2, finished = ?3 WHERE id = ?1",
    [Q_LEASES_GRACE] = "UPDATE jobs SET lease_expires = max(coalesce(lease_expires, 0), ?1) "
                       "WHERE status = 'running'",
    /* Runners seen lately: those long gone do not count against the limit. */
    [Q_RUNNER_COUNT] = "SELECT count(*) FROM runners WHERE last_seen >= ?1",
    [Q_RUNNER_INSERT] = "INSERT INTO runners(name, token_hash, labels, platform, slots, heartbeat, "
                        "created, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
    [Q_RUNNER_BY_TOKEN] = "SELECT " RUNNER_COLS " WHERE token_hash = ?1",
    [Q_RUNNER_REREGISTER] = "UPDATE runners SET name = ?1, labels = ?3, platform = ?4, slots = ?5, "
                            "heartbeat = ?6, last_seen = ?7 WHERE token_hash = ?2 RETURNING id",
    /* Their leases end now: the next expiry pass re-queues them. */
    [Q_RUNNER_JOBS_EXPIRE] = "UPDATE jobs SET lease_expires = 0 WHERE runner_id = ?1 AND "
                             "status = 'running'",
    [Q_RUNNER_LIST] = "SELECT " RUNNER_COLS " WHERE ?1 OR last_seen >= ?2 OR id IN (SELECT "
                      "runner_id FROM jobs INDEXED BY jobs_running WHERE status = 'running') "
                      "ORDER BY id",
    [Q_RUNNER_JOBS] = "SELECT id, attempt, build_id, name FROM jobs INDEXED BY jobs_running "
                      "WHERE runner_id = ?1 AND status = 'running' ORDER BY id",
    [Q_RUNNER_SEEN] = "UPDATE runners SET last_seen = ?2, client_info = coalesce(?3, client_info) "
                      "WHERE id = ?1",
    [Q_LEASE_EXTEND] = "UPDATE jobs SET lease_expires = max(coalesce(lease_expires, 0), ?4) "
                       "WHERE id = ?1 AND attempt = ?2 AND runner_id = ?3 AND status = 'running'",
};

/* store_build_list: one statement per combination of filters, so that each
 * can use its index (builds_by_branch, builds_by_status, or the rowid). */
enum { F_REPO = 1, F_BRANCH = 2, F_STATUS = 4, N_LIST = 8 };

struct store {
    sqlite3 *db;
    pthread_mutex_t lock;
    sqlite3_stmt *stmts[Q_COUNT];
    sqlite3_stmt *list[N_LIST];
    sqlite3_stmt *unprepared; /* what prepared() gives when it cannot */
    /* Builds or jobs changed (set by the yci_changed() triggers, under the
     * lock); unlock() then counts a version and calls on_change. */
    bool changed;
    uint64_t version;
    store_change_fn on_change;
    void *on_change_arg;
};

/* ---- plumbing ---------------------------------------------------------- */

/* SQLite's words for this thread's last failure in a store call (see
 * store_strerror()): set where a statement fails, cleared when a call starts. */
static _Thread_local char last_error[200];

static void lock(struct store *st)
{
    pthread_mutex_lock(&st->lock);
    last_error[0] = '\0';
}

const char *store_strerror(int rc)
{
    return rc == -EIO && last_error[0] ? last_error : strerror(-rc);
}

/* Reset whatever statement is still stepping (ends its read snapshot); when
 * the call changed builds or jobs, count a version and tell on_change (after
 * the unlock: what changed is committed, and the callback may use the store). */
static void unlock(struct store *st)
{
    for (sqlite3_stmt *s = sqlite3_next_stmt(st->db, NULL); s; s = sqlite3_next_stmt(st->db, s))
        if (sqlite3_stmt_busy(s))
            sqlite3_reset(s);
    bool changed = st->changed;
    if (changed) {
        st->changed = false;
        st->version++;
    }
    store_change_fn fn = st->on_change;
    void *arg = st->on_change_arg;
    pthread_mutex_unlock(&st->lock);
    if (changed && fn)
        fn(arg);
}

/* SQL yci_changed(): called by the temporary triggers set at open. */
static void sql_changed(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    (void)argv;
    struct store *st = sqlite3_user_data(ctx);
    st->changed = true;
    sqlite3_result_null(ctx);
}

/* SQL yci_unprepared(): the step of st->unprepared, which fails. */
static void sql_unprepared(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    (void)argv;
    sqlite3_result_error(ctx, "a statement could not be prepared (the log says why)", -1);
}

/* What the pages show: a build or a job appearing or changing state, a
 * build's commit details. A lease extension or a heartbeat is not a change.
 * TEMP triggers live in this connection only: nothing is written for them. */
static const char *const change_triggers =
    "CREATE TEMP TRIGGER yci_builds_insert AFTER INSERT ON main.builds "
    "BEGIN SELECT yci_changed(); END;"
    "CREATE TEMP TRIGGER yci_builds_update AFTER UPDATE OF status, author, subject "
    "ON main.builds BEGIN SELECT yci_changed(); END;"
    "CREATE TEMP TRIGGER yci_jobs_insert AFTER INSERT ON main.jobs "
    "BEGIN SELECT yci_changed(); END;"
    "CREATE TEMP TRIGGER yci_jobs_update AFTER UPDATE OF status, attempt, runner_id, "
    "not_before, waiting ON main.jobs BEGIN SELECT yci_changed(); END;"
    "CREATE TEMP TRIGGER yci_runners_insert AFTER INSERT ON main.runners "
    "BEGIN SELECT yci_changed(); END;";

void store_on_change(struct store *st, store_change_fn fn, void *arg)
{
    pthread_mutex_lock(&st->lock);
    st->on_change = fn;
    st->on_change_arg = arg;
    pthread_mutex_unlock(&st->lock);
}

uint64_t store_version(struct store *st)
{
    pthread_mutex_lock(&st->lock);
    uint64_t v = st->version;
    pthread_mutex_unlock(&st->lock);
    return v;
}

static char *list_sql(int mask);

/*
 * *slot, prepared from text on first use. store_open() compiled every
 * statement already, so this fails only when the database went bad under us
 * (a disk error, a table dropped by hand) or memory ran out. The server must
 * not die of it: the caller then gets st->unprepared, a statement whose step
 * fails ("SELECT yci_unprepared()"), so that it answers its error as for any
 * failed step; the next call tries to prepare again.
 */
static sqlite3_stmt *prepared(struct store *st, sqlite3_stmt **slot, const char *text)
{
    if (!*slot &&
        sqlite3_prepare_v3(st->db, text, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL) != SQLITE_OK) {
        fprintf(stderr, "yci: database: cannot prepare \"%.60s...\": %s\n", text,
                sqlite3_errmsg(st->db));
        *slot = NULL;
        return st->unprepared;
    }
    return *slot;
}

static sqlite3_stmt *q(struct store *st, enum q id)
{
    sqlite3_stmt *s = prepared(st, &st->stmts[id], sql[id]);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

static int db_error(struct store *st, struct buf *err, const char *what)
{
    snprintf(last_error, sizeof last_error, "%s", sqlite3_errmsg(st->db));
    if (err)
        buf_setf(err, "database: %s: %s", what, sqlite3_errmsg(st->db));
    return -EIO;
}

/* Step a statement that returns no rows (or whose rows are not wanted). */
static int exec_q(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        snprintf(last_error, sizeof last_error, "%s", sqlite3_errmsg(sqlite3_db_handle(s)));
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : rc;
}

static int tx_begin(struct store *st, struct buf *err)
{
    if (exec_q(q(st, Q_BEGIN)) != 0)
        return db_error(st, err, "begin");
    return 0;
}

static int tx_commit(struct store *st, struct buf *err)
{
    if (exec_q(q(st, Q_COMMIT)) != 0) {
        int r = db_error(st, err, "commit");
        if (!sqlite3_get_autocommit(st->db))
            exec_q(q(st, Q_ROLLBACK));
        return r;
    }
    return 0;
}

static void tx_rollback(struct store *st)
{
    /* Reset everything first: a statement still stepping would make the
     * rollback fail with SQLITE_BUSY on old SQLite versions. */
    for (sqlite3_stmt *s = sqlite3_next_stmt(st->db, NULL); s; s = sqlite3_next_stmt(st->db, s))
        if (sqlite3_stmt_busy(s))
            sqlite3_reset(s);
    if (!sqlite3_get_autocommit(st->db))
        exec_q(q(st, Q_ROLLBACK));
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

/* id 0 (no object) is stored as NULL. */
static void bind_id(sqlite3_stmt *s, int i, int64_t v)
{
    if (v)
        sqlite3_bind_int64(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

static json_t *col_int(sqlite3_stmt *s, int i)
{
    if (sqlite3_column_type(s, i) == SQLITE_NULL)
        return json_null();
    return json_integer(sqlite3_column_int64(s, i));
}

static json_t *col_text(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? json_string((const char *)t) : json_null();
}

/* A JSON text column, parsed; null when NULL or unparsable. */
static json_t *col_json(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    if (!t)
        return json_null();
    json_t *v = json_loads((const char *)t, JSON_DECODE_ANY, NULL);
    return v ? v : json_null();
}

static const char *col_str(sqlite3_stmt *s, int i)
{
    return (const char *)sqlite3_column_text(s, i);
}

static json_t *duration(sqlite3_stmt *s, int started, int finished)
{
    if (sqlite3_column_type(s, started) == SQLITE_NULL ||
        sqlite3_column_type(s, finished) == SQLITE_NULL)
        return json_null();
    return json_integer(sqlite3_column_int64(s, finished) - sqlite3_column_int64(s, started));
}

/* Compact JSON text with sorted keys (so "{}" is the empty object, always). */
static char *dump(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (!s)
        s = xstrdup("null");
    return s;
}

/* ---- rows to JSON ------------------------------------------------------ */

static json_t *repo_from_row(sqlite3_stmt *s)
{
    json_t *r = json_object();
    json_object_set_new(r, "id", col_int(s, 0));
    json_object_set_new(r, "name", col_text(s, 1));
    json_object_set_new(r, "url", col_text(s, 2));
    json_object_set_new(r, "created", col_int(s, 3));
    json_object_set_new(r, "last_poll", col_int(s, 4));
    json_object_set_new(r, "last_error", col_text(s, 5));
    json_object_set_new(r, "github", col_text(s, 6));
    json_object_set_new(r, "private", json_boolean(sqlite3_column_int(s, 7) != 0));
    return r;
}

static json_t *job_from_row(sqlite3_stmt *s)
{
    json_t *j = json_object();
    json_object_set_new(j, "id", col_int(s, 0));
    json_object_set_new(j, "build_id", col_int(s, 1));
    json_object_set_new(j, "name", col_text(s, 2));
    json_object_set_new(j, "status", col_text(s, 3));
    json_object_set_new(j, "attempt", col_int(s, 4));
    json_object_set_new(j, "commands", col_json(s, 5));
    json_object_set_new(j, "env", col_json(s, 6));
    json_object_set_new(j, "labels", col_json(s, 7));
    json_object_set_new(j, "timeout", col_int(s, 8));
    json_object_set_new(j, "runner", col_text(s, 9));
    json_object_set_new(j, "runner_id", col_int(s, 10));
    json_object_set_new(j, "exit_code", col_int(s, 11));
    json_object_set_new(j, "error", col_text(s, 12));
    json_object_set_new(j, "created", col_int(s, 13));
    json_object_set_new(j, "started", col_int(s, 14));
    json_object_set_new(j, "finished", col_int(s, 15));
    json_object_set_new(j, "duration_ms", duration(s, 14, 15));
    json_object_set_new(j, "infra_retries", col_int(s, 16));
    json_object_set_new(j, "lease_expires", col_int(s, 17));
    json_object_set_new(j, "retries", col_int(s, 18));
    json_object_set_new(j, "max_retries", col_int(s, 19));
    json_object_set_new(j, "retry_increment", col_int(s, 24));
    json_object_set_new(j, "flaky", json_boolean(sqlite3_column_int(s, 20) != 0));
    json_t *needs = col_json(s, 21);
    json_object_set_new(j, "needs", json_is_array(needs) ? needs : json_array());
    if (!json_is_array(needs))
        json_decref(needs);
    int64_t not_before = sqlite3_column_int64(s, 22);
    json_object_set_new(j, "not_before", not_before ? json_integer(not_before) : json_null());
    json_object_set_new(j, "waiting", json_boolean(sqlite3_column_int(s, 23) != 0));
    json_object_set_new(j, "kind", col_text(s, 25));
    json_object_set_new(j, "planned", json_boolean(sqlite3_column_int(s, 26) != 0));
    json_object_set_new(j, "submodules", json_boolean(sqlite3_column_int(s, 27) != 0));
    return j;
}

static json_t *build_from_row(sqlite3_stmt *s)
{
    json_t *b = json_object();
    json_object_set_new(b, "id", col_int(s, 0));
    json_object_set_new(b, "repo", col_text(s, 1));
    json_object_set_new(b, "ref", col_text(s, 2));
    json_object_set_new(b, "branch", col_text(s, 3));
    json_object_set_new(b, "commit", col_text(s, 4));
    json_object_set_new(b, "status", col_text(s, 5));
    json_object_set_new(b, "error", col_text(s, 6));
    json_object_set_new(b, "created", col_int(s, 7));
    json_object_set_new(b, "started", col_int(s, 8));
    json_object_set_new(b, "finished", col_int(s, 9));
    json_object_set_new(b, "duration_ms", duration(s, 8, 9));
    json_object_set_new(b, "rebuild_of", col_int(s, 10));
    json_object_set_new(b, "pull_number", col_int(s, 11));
    json_object_set_new(b, "untrusted", json_boolean(sqlite3_column_int(s, 12) != 0));
    json_object_set_new(b, "author", col_text(s, 13));
    json_object_set_new(b, "subject", col_text(s, 14));
    return b;
}

/* The runner's running jobs: [{"id", "attempt", "build_id", "name"}]. */
static json_t *runner_jobs(struct store *st, int64_t runner_id)
{
    sqlite3_stmt *s = q(st, Q_RUNNER_JOBS);
    sqlite3_bind_int64(s, 1, runner_id);
    json_t *a = json_array();
    while (sqlite3_step(s) == SQLITE_ROW) {
        json_t *j = json_object();
        json_object_set_new(j, "id", col_int(s, 0));
        json_object_set_new(j, "attempt", col_int(s, 1));
        json_object_set_new(j, "build_id", col_int(s, 2));
        json_object_set_new(j, "name", col_text(s, 3));
        json_array_append_new(a, j);
    }
    sqlite3_reset(s);
    return a;
}

/* The runner row without "jobs" (the caller adds them once s is reset). */
static json_t *runner_from_row(sqlite3_stmt *s, int64_t now)
{
    json_t *r = json_object();
    int64_t heartbeat = sqlite3_column_int64(s, 5);
    json_object_set_new(r, "id", col_int(s, 0));
    json_object_set_new(r, "name", col_text(s, 1));
    json_object_set_new(r, "labels", col_json(s, 2));
    json_object_set_new(r, "platform", col_json(s, 3));
    json_object_set_new(r, "slots", col_int(s, 4));
    json_object_set_new(r, "heartbeat", col_int(s, 5));
    json_object_set_new(r, "client_info", col_json(s, 6));
    json_object_set_new(r, "created", col_int(s, 7));
    json_object_set_new(r, "last_seen", col_int(s, 8));
    bool alive = sqlite3_column_type(s, 8) != SQLITE_NULL &&
                 now - sqlite3_column_int64(s, 8) <= 3 * heartbeat * 1000;
    json_object_set_new(r, "alive", json_boolean(alive));
    return r;
}

/* ---- validation -------------------------------------------------------- */

static bool env_name_valid(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return false;
    for (s++; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    return true;
}

static bool has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

/* Labels (of a job or a runner): an object of string values, within limits.
 * who names the owner in messages ("job 'x'", "runner"). */
static int labels_check(json_t *labels, const char *who, struct buf *err)
{
    const char *k;
    json_t *v;
    if (!json_is_object(labels)) {
        buf_setf(err, "%s: \"labels\" must be an object of strings", who);
        return -EINVAL;
    }
    if (json_object_size(labels) > YCI_MAX_LABELS) {
        buf_setf(err, "%s: too many labels (at most %d)", who, YCI_MAX_LABELS);
        return -EINVAL;
    }
    json_object_foreach(labels, k, v) {
        if (!json_is_string(v)) {
            buf_setf(err, "%s: label '%.128s' must be a string", who, k);
            return -EINVAL;
        }
        if (!*k || strlen(k) > YCI_MAX_LABEL_LEN || json_string_length(v) > YCI_MAX_LABEL_LEN) {
            buf_setf(err, "%s: label '%.128s': keys must be 1 to %d characters, values at most %d",
                     who, k, YCI_MAX_LABEL_LEN, YCI_MAX_LABEL_LEN);
            return -EINVAL;
        }
    }
    return 0;
}

/* A member that may be absent or null. */
static json_t *opt(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

static int job_check(json_t *jobs, size_t i, struct buf *err)
{
    json_t *job = json_array_get(jobs, i);
    char who[160];
    if (!json_is_object(job)) {
        buf_setf(err, "job %zu: must be an object", i + 1);
        return -EINVAL;
    }
    json_t *name = json_object_get(job, "name");
    if (!json_is_string(name) || json_string_length(name) == 0) {
        buf_setf(err, "job %zu: \"name\" must be a non-empty string", i + 1);
        return -EINVAL;
    }
    const char *n = json_string_value(name);
    if (json_string_length(name) > MAX_JOB_NAME) {
        buf_setf(err, "job %zu: name '%.40s...' is longer than %d characters", i + 1, n,
                 MAX_JOB_NAME);
        return -EINVAL;
    }
    if (has_control(n) || strlen(n) != json_string_length(name)) {
        buf_setf(err, "job %zu: the name contains control characters", i + 1);
        return -EINVAL;
    }
    snprintf(who, sizeof(who), "job '%s'", n);
    for (size_t k = 0; k < i; k++) {
        json_t *other = json_object_get(json_array_get(jobs, k), "name");
        if (json_equal(other, name)) {
            buf_setf(err, "%s: two jobs have this name (names must be unique in a build)", who);
            return -EINVAL;
        }
    }

    json_t *cmds = json_object_get(job, "commands");
    size_t idx;
    json_t *v;
    bool ok = json_is_array(cmds) && json_array_size(cmds) > 0;
    json_array_foreach(cmds, idx, v) {
        ok = ok && json_is_string(v);
    }
    if (!ok) {
        buf_setf(err, "%s: \"commands\" must be a non-empty array of strings", who);
        return -EINVAL;
    }

    json_t *env = opt(job, "env");
    if (env) {
        const char *k;
        if (!json_is_object(env)) {
            buf_setf(err, "%s: \"env\" must be an object of strings", who);
            return -EINVAL;
        }
        json_object_foreach(env, k, v) {
            if (!env_name_valid(k)) {
                buf_setf(err, "%s: '%.128s' is not a valid environment variable name", who, k);
                return -EINVAL;
            }
            if (!json_is_string(v)) {
                buf_setf(err, "%s: env '%.128s' must be a string", who, k);
                return -EINVAL;
            }
        }
    }

    json_t *labels = opt(job, "labels");
    if (labels && labels_check(labels, who, err) < 0)
        return -EINVAL;

    json_t *kind = opt(job, "kind");
    if (kind && !(json_is_string(kind) && (strcmp(json_string_value(kind), "test") == 0 ||
                                           strcmp(json_string_value(kind), "plan") == 0))) {
        buf_setf(err, "%s: \"kind\" must be \"test\" or \"plan\"", who);
        return -EINVAL;
    }

    json_t *sub = opt(job, "submodules");
    if (sub && !json_is_boolean(sub)) {
        buf_setf(err, "%s: \"submodules\" must be true or false", who);
        return -EINVAL;
    }

    json_t *timeout = opt(job, "timeout");
    if (timeout && (!json_is_integer(timeout) || json_integer_value(timeout) < 0 ||
                    json_integer_value(timeout) > INT32_MAX)) {
        buf_setf(err, "%s: \"timeout\" must be a non-negative integer (seconds)", who);
        return -EINVAL;
    }

    json_t *retry = opt(job, "retry");
    if (retry) {
        json_t *count = opt(retry, "count"), *inc = opt(retry, "increment");
        if (!json_is_object(retry) || (count && !json_is_integer(count)) ||
            (inc && !json_is_integer(inc)) ||
            (count && (json_integer_value(count) < 0 ||
                       json_integer_value(count) > YCI_MAX_JOB_RETRIES)) ||
            (inc && (json_integer_value(inc) < 0 ||
                     json_integer_value(inc) > YCI_MAX_RETRY_INCREMENT))) {
            buf_setf(err,
                     "%s: \"retry\" must be {\"count\": 0 to %d, \"increment\": 0 to %d "
                     "seconds}",
                     who, YCI_MAX_JOB_RETRIES, YCI_MAX_RETRY_INCREMENT);
            return -EINVAL;
        }
    }

    json_t *needs = opt(job, "needs");
    if (needs) {
        if (!json_is_array(needs)) {
            buf_setf(err, "%s: \"needs\" must be an array of job names", who);
            return -EINVAL;
        }
        json_array_foreach(needs, idx, v) {
            if (!json_is_string(v)) {
                buf_setf(err, "%s: \"needs\" must be an array of job names", who);
                return -EINVAL;
            }
            bool found = false;
            for (size_t k = 0; k < json_array_size(jobs) && !found; k++)
                found = k != i && json_equal(json_object_get(json_array_get(jobs, k), "name"), v);
            if (!found) {
                buf_setf(err, "%s: \"needs\" names '%.100s', which is no other job of the build",
                         who, json_string_value(v));
                return -EINVAL;
            }
        }
    }
    return 0;
}

/*
 * No cycle in "needs" (a cycle would wait for ever): Kahn's algorithm, run
 * after every job was checked (names unique, needs naming jobs).
 */
static int needs_check(json_t *jobs, struct buf *err)
{
    size_t n = json_array_size(jobs), done = 0;
    json_t *index = json_object(); /* name → position */
    size_t *missing = xcalloc(n ? n : 1, sizeof(*missing));
    size_t *ready = xcalloc(n ? n : 1, sizeof(*ready));
    size_t nready = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *job = json_array_get(jobs, i);
        json_object_set_new(index, json_string_value(json_object_get(job, "name")),
                            json_integer((json_int_t)i));
        missing[i] = json_array_size(opt(job, "needs"));
        if (!missing[i])
            ready[nready++] = i;
    }
    /* dependents: for each job, which jobs need it (edges reversed). */
    json_t *dependents = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(dependents, json_array());
    for (size_t i = 0; i < n; i++) {
        size_t k;
        json_t *v;
        json_array_foreach(opt(json_array_get(jobs, i), "needs"), k, v) {
            size_t at = (size_t)json_integer_value(json_object_get(index, json_string_value(v)));
            json_array_append_new(json_array_get(dependents, at), json_integer((json_int_t)i));
        }
    }
    while (nready) {
        size_t i = ready[--nready], k;
        json_t *v;
        done++;
        json_array_foreach(json_array_get(dependents, i), k, v) {
            size_t d = (size_t)json_integer_value(v);
            if (--missing[d] == 0)
                ready[nready++] = d;
        }
    }
    int r = 0;
    if (done < n) {
        for (size_t i = 0; i < n; i++)
            if (missing[i]) {
                buf_setf(err, "job '%s': \"needs\" makes a cycle",
                         json_string_value(json_object_get(json_array_get(jobs, i), "name")));
                break;
            }
        r = -EINVAL;
    }
    json_decref(dependents);
    json_decref(index);
    free(missing);
    free(ready);
    return r;
}

/* Job descriptions as store.h describes them. An empty array is a build with
 * nothing to run (passed at once, or in error when error is set). */
static int jobs_check(json_t *jobs, const char *error, struct buf *err)
{
    if (error && (!jobs || json_array_size(jobs) == 0))
        return 0;
    if (!json_is_array(jobs)) {
        buf_setf(err, "\"jobs\" must be an array of jobs");
        return -EINVAL;
    }
    size_t n = json_array_size(jobs);
    if (n > YCI_MAX_JOBS_PER_BUILD_CAP) {
        buf_setf(err, "too many jobs: %zu (at most %d in a build)", n, YCI_MAX_JOBS_PER_BUILD_CAP);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++)
        if (job_check(jobs, i, err) < 0)
            return -EINVAL;
    return needs_check(jobs, err);
}

/* ---- shared pieces of transactions -------------------------------------- */

static bool status_final(const char *s)
{
    return strcmp(s, "queued") != 0 && strcmp(s, "running") != 0;
}

static int event_add(struct store *st, int64_t build_id, int64_t job_id, int64_t now,
                     const char *msg)
{
    sqlite3_stmt *s = q(st, Q_EVENT_INSERT);
    sqlite3_bind_int64(s, 1, build_id);
    bind_id(s, 2, job_id);
    sqlite3_bind_int64(s, 3, now);
    bind_text(s, 4, msg);
    return exec_q(s) == 0 ? 0 : -EIO;
}

/*
 * Derive the build's state from its jobs (see store.h) and store it. Sets
 * *done when the build reached a final state just now. A build without jobs
 * (a configuration error) keeps its state.
 */
static int build_update(struct store *st, int64_t build_id, int64_t now, bool *done)
{
    char old[16] = "";
    bool started = false;
    sqlite3_stmt *s = q(st, Q_BUILD_STATE);
    sqlite3_bind_int64(s, 1, build_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        snprintf(old, sizeof(old), "%s", col_str(s, 0) ? col_str(s, 0) : "");
        started = sqlite3_column_type(s, 1) != SQLITE_NULL;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? -ENOENT : -EIO;

    /* The common case, a job finishing while others are still to run,
     * costs one index probe: the build is (and stays) running. */
    s = q(st, Q_BUILD_ACTIVE);
    sqlite3_bind_int64(s, 1, build_id);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -EIO;
    const char *state;
    if (rc == SQLITE_ROW) {
        state = started ? "running" : "queued";
    } else {
        /* Every job is done: count them (once per build; index only). */
        s = q(st, Q_BUILD_COUNTS);
        sqlite3_bind_int64(s, 1, build_id);
        if (sqlite3_step(s) != SQLITE_ROW) {
            sqlite3_reset(s);
            return -EIO;
        }
        int64_t total = sqlite3_column_int64(s, 0), failed = sqlite3_column_int64(s, 1),
                error = sqlite3_column_int64(s, 2), cancelled = sqlite3_column_int64(s, 3);
        sqlite3_reset(s);
        if (total == 0)
            return 0; /* a configuration error: the build keeps its state */
        state = failed ? "failed" : error ? "error" : cancelled ? "cancelled" : "passed";
    }
    if (strcmp(state, old) == 0)
        return 0;
    bool final = status_final(state);
    s = q(st, Q_BUILD_SET_STATE);
    sqlite3_bind_int64(s, 1, build_id);
    bind_text(s, 2, state);
    if (final)
        sqlite3_bind_int64(s, 3, now);
    if (exec_q(s) != 0)
        return -EIO;
    if (done && final && !status_final(old))
        *done = true;
    return 0;
}

/* How a needed job that did not pass ended, for its dependents' error. */
static const char *need_outcome(const char *status)
{
    if (strcmp(status, "failed") == 0)
        return "failed";
    if (strcmp(status, "timed_out") == 0)
        return "timed out";
    if (strcmp(status, "cancelled") == 0)
        return "was cancelled";
    return "ended in error";
}

struct waiting_job {
    int64_t id;
    char *name, *needs;
};

/*
 * Settle the build's waiting jobs (queued, with needs not all passed yet)
 * after one of its jobs reached a final state; inside a transaction, before
 * build_update. A waiting job whose needed jobs have all passed is released
 * to the claim (*released counts them); one whose needed job ended any other
 * way is cancelled with the error "needed job 'NAME' failed", which may in
 * turn cancel the jobs that need it, hence the loop. Cheap when the build has
 * no waiting job: one index probe.
 */
static int needs_resolve(struct store *st, int64_t build_id, int64_t now, int *released)
{
    bool again = true;
    int r = 0;
    while (again && r == 0) {
        again = false;
        struct waiting_job *w = NULL;
        size_t n = 0, cap = 0;
        sqlite3_stmt *s = q(st, Q_WAITING_LIST);
        sqlite3_bind_int64(s, 1, build_id);
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            if (n == cap) {
                cap = cap ? 2 * cap : 8;
                w = xrealloc(w, cap * sizeof(*w));
            }
            w[n].id = sqlite3_column_int64(s, 0);
            w[n].name = xstrdup(col_str(s, 1) ? col_str(s, 1) : "");
            w[n].needs = xstrdup(col_str(s, 2) ? col_str(s, 2) : "[]");
            n++;
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            r = -EIO;
        for (size_t i = 0; i < n && r == 0; i++) {
            json_t *needs = json_loads(w[i].needs, 0, NULL);
            bool pending = false;
            char *why = NULL;
            size_t k;
            json_t *v;
            json_array_foreach(needs, k, v) {
                s = q(st, Q_JOB_BY_NAME);
                sqlite3_bind_int64(s, 1, build_id);
                bind_text(s, 2, json_string_value(v));
                rc = sqlite3_step(s);
                if (rc == SQLITE_ROW) {
                    const char *status = col_str(s, 0) ? col_str(s, 0) : "";
                    if (!status_final(status))
                        pending = true;
                    else if (strcmp(status, "passed") != 0)
                        why = xasprintf("needed job '%s' %s", json_string_value(v),
                                        need_outcome(status));
                } else if (rc != SQLITE_DONE) {
                    r = -EIO;
                }
                /* SQLITE_DONE: no such job (checked at creation): not waited for. */
                sqlite3_reset(s);
                if (why || r < 0)
                    break;
            }
            json_decref(needs);
            if (r == 0 && why) {
                s = q(st, Q_JOB_CANCEL_NEED);
                sqlite3_bind_int64(s, 1, w[i].id);
                sqlite3_bind_int64(s, 2, now);
                bind_text(s, 3, why);
                r = exec_q(s) == 0 ? 0 : -EIO;
                if (r == 0) {
                    char *msg = xasprintf("job %" PRId64 " (%s): cancelled: %s", w[i].id,
                                          w[i].name, why);
                    r = event_add(st, build_id, w[i].id, now, msg);
                    free(msg);
                }
                again = true; /* its own dependents may now be cancelled */
            } else if (r == 0 && !pending) {
                s = q(st, Q_JOB_RELEASE);
                sqlite3_bind_int64(s, 1, w[i].id);
                r = exec_q(s) == 0 ? 0 : -EIO;
                if (r == 0 && released)
                    (*released)++;
            }
            free(why);
        }
        for (size_t i = 0; i < n; i++) {
            free(w[i].name);
            free(w[i].needs);
        }
        free(w);
    }
    return r;
}

/* Cancel the unfinished jobs of the builds s (bound) selects, each build
 * getting the event "WHY: N jobs cancelled"; inside a transaction. */
static int cancel_builds(struct store *st, sqlite3_stmt *s, int64_t now, const char *why)
{
    int64_t *ids = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 4;
            ids = xrealloc(ids, cap * sizeof(*ids));
        }
        ids[n++] = sqlite3_column_int64(s, 0);
    }
    sqlite3_reset(s);
    int r = rc == SQLITE_DONE ? 0 : -EIO;
    for (size_t i = 0; i < n && r == 0; i++) {
        s = q(st, Q_BUILD_CANCEL);
        sqlite3_bind_int64(s, 1, ids[i]);
        sqlite3_bind_int64(s, 2, now);
        if (exec_q(s) != 0) {
            r = -EIO;
            break;
        }
        int cancelled = sqlite3_changes(st->db);
        char *msg = xasprintf("%s: %d job%s cancelled", why, cancelled, cancelled == 1 ? "" : "s");
        r = event_add(st, ids[i], 0, now, msg);
        free(msg);
        if (r == 0)
            r = build_update(st, ids[i], now, NULL);
    }
    free(ids);
    return r;
}

/* ref → branch: refs/heads/X → X; other refs stay whole. */
static const char *branch_of(const char *ref)
{
    if (ref && strncmp(ref, "refs/heads/", 11) == 0)
        return ref + 11;
    return ref;
}

/* ref is at sha now, and build_id the build that stands for it: cancel
 * the builds of (repo, ref) at other commits (cancel_builds(): "superseded
 * by build N"), however old the commit it went (back) to; for a branch, also
 * those of its closed pull requests that it stood for (Q_SUPERSEDED_SPARED). */
static int cancel_ref_builds(struct store *st, int64_t repo_id, const char *ref, const char *sha,
                             int64_t build_id, int64_t now)
{
    char *why = xasprintf("superseded by build %" PRId64, build_id);
    bool branch = branch_of(ref) != ref;
    int r = 0;
    for (int i = 0; i < (branch ? 2 : 1) && r == 0; i++) {
        sqlite3_stmt *s = q(st, i == 0 ? Q_SUPERSEDED : Q_SUPERSEDED_SPARED);
        sqlite3_bind_int64(s, 1, repo_id);
        bind_text(s, 2, i == 0 ? ref : branch_of(ref));
        bind_text(s, 3, sha);
        r = cancel_builds(st, s, now, why);
    }
    free(why);
    return r;
}

/* Record the pull request a build is for (pull may be NULL) unless it has
 * one already: Q_BUILD_SET_PULL. */
static int build_set_pull(struct store *st, int64_t id, json_t *pull, bool untrusted)
{
    char *text = pull ? dump(pull) : NULL;
    sqlite3_stmt *s = q(st, Q_BUILD_SET_PULL);
    sqlite3_bind_int64(s, 1, id);
    bind_text(s, 2, text);
    sqlite3_bind_int(s, 3, untrusted);
    int rc = exec_q(s);
    free(text);
    return rc == 0 ? 0 : -EIO;
}

/* Insert a build and its jobs (already checked); inside a transaction. jobs
 * NULL: the caller adds them (a rebuild); an empty array: the build has
 * nothing to run and is passed at once (unless error is set). */
static int jobs_insert(struct store *st, int64_t build_id, json_t *jobs, bool planned, int64_t now,
                       struct buf *err);

static int build_insert(struct store *st, int64_t repo_id, const char *ref, const char *commit,
                        json_t *jobs, const char *error, int64_t rebuild_of, const char *origin,
                        int64_t now, int64_t *build_id, struct buf *err)
{
    sqlite3_stmt *s = q(st, Q_BUILD_INSERT);
    bind_id(s, 1, repo_id);
    bind_text(s, 2, ref);
    bind_text(s, 3, branch_of(ref));
    bind_text(s, 4, commit);
    bool empty = jobs && json_array_size(jobs) == 0;
    bind_text(s, 5, error ? "error" : empty ? "passed" : "queued");
    bind_text(s, 6, error);
    sqlite3_bind_int64(s, 7, now);
    if (error || empty)
        sqlite3_bind_int64(s, 8, now);
    bind_id(s, 9, rebuild_of);
    bind_text(s, 10, origin);
    if (exec_q(s) != 0)
        return db_error(st, err, "create build");
    int64_t id = sqlite3_last_insert_rowid(st->db);
    int r = jobs_insert(st, id, jobs, false, now, err);
    if (r == 0)
        *build_id = id;
    return r;
}

/* Insert the checked job descriptions into build_id (planned: added by the
 * build's .yci.py plan job). */
static int jobs_insert(struct store *st, int64_t build_id, json_t *jobs, bool planned, int64_t now,
                       struct buf *err)
{
    size_t i;
    json_t *job;
    json_array_foreach(jobs, i, job) {
        json_t *env = opt(job, "env"), *labels = opt(job, "labels"), *t = opt(job, "timeout");
        json_t *needs = opt(job, "needs"), *retry = opt(job, "retry");
        json_t *count = opt(retry, "count"), *inc = opt(retry, "increment");
        char *cmds = dump(json_object_get(job, "commands"));
        char *envs = env ? dump(env) : NULL, *labs = labels ? dump(labels) : NULL;
        /* No needs is NULL: the insert makes a job with needs "waiting". */
        char *nds = json_array_size(needs) ? dump(needs) : NULL;
        json_t *kind = opt(job, "kind");
        sqlite3_stmt *s = q(st, Q_JOB_INSERT);
        sqlite3_bind_int64(s, 1, build_id);
        bind_text(s, 2, json_string_value(json_object_get(job, "name")));
        bind_text(s, 3, cmds);
        bind_text(s, 4, envs ? envs : "{}");
        bind_text(s, 5, labs ? labs : "{}");
        sqlite3_bind_int64(s, 6, t ? json_integer_value(t) : 0);
        sqlite3_bind_int64(s, 7, now);
        bind_text(s, 8, nds);
        sqlite3_bind_int64(s, 9, count ? json_integer_value(count) : 0);
        sqlite3_bind_int64(s, 10, inc ? json_integer_value(inc) : 0);
        bind_text(s, 11, kind ? json_string_value(kind) : "test");
        sqlite3_bind_int(s, 12, planned);
        sqlite3_bind_int(s, 13, json_is_true(json_object_get(job, "submodules")));
        int rc = exec_q(s);
        free(cmds);
        free(envs);
        free(labs);
        free(nds);
        if (rc != 0)
            return db_error(st, err, "create job");
    }
    return 0;
}

static int repo_exists(struct store *st, int64_t repo_id)
{
    sqlite3_stmt *s = q(st, Q_REPO_BY_ID);
    sqlite3_bind_int64(s, 1, repo_id);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

/* ---- open / free -------------------------------------------------------- */

static int pragma_int(sqlite3 *db, const char *sql_text, int64_t *out)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql_text, -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW && out)
        *out = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

static int migrate(struct store *st, const char *path, struct buf *err)
{
    int64_t version = 0;
    if (pragma_int(st->db, "PRAGMA user_version", &version) < 0)
        return db_error(st, err, "read schema version");
    if (version > N_MIGRATIONS) {
        buf_setf(err, "%s: schema version %" PRId64 " is newer than this yci knows (%d)", path,
                 version, N_MIGRATIONS);
        return -EINVAL;
    }
    for (int v = (int)version; v < N_MIGRATIONS; v++) {
        char *e = NULL;
        char *bump = xasprintf("PRAGMA user_version = %d", v + 1);
        int rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, &e);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(st->db, migrations[v], NULL, NULL, &e);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(st->db, bump, NULL, NULL, &e);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, &e);
        free(bump);
        if (rc != SQLITE_OK) {
            buf_setf(err, "%s: migration %d: %s", path, v + 1, e ? e : sqlite3_errstr(rc));
            sqlite3_free(e);
            if (!sqlite3_get_autocommit(st->db))
                sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
            return -EIO;
        }
    }
    return 0;
}

static char *list_sql(int mask)
{
    return xasprintf("SELECT " BUILD_COLS BUILD_FROM " WHERE b.id < ?1%s%s%s "
                     "ORDER BY b.id DESC LIMIT ?5",
                     mask & F_REPO ? " AND b.repo_id = ?2" : "",
                     mask & F_BRANCH ? " AND b.branch = ?3" : "",
                     mask & F_STATUS ? " AND b.status = ?4" : "");
}

/* Compile text and throw it away: a mistake in a statement stops the start,
 * not the first request that uses it. */
static int check_sql(struct store *st, const char *text, struct buf *err)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, text, -1, &s, NULL) != SQLITE_OK) {
        buf_setf(err, "database: prepare \"%.60s...\": %s", text, sqlite3_errmsg(st->db));
        return -EIO;
    }
    sqlite3_finalize(s);
    return 0;
}

int store_open(const char *path, struct store **out, struct buf *err)
{
    struct store *st = xcalloc(1, sizeof(*st));
    int r = -EIO;
    pthread_mutex_init(&st->lock, NULL);

    int rc = sqlite3_open_v2(
        path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        buf_setf(err, "%s: %s", path, st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
        goto out;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);

    char *e = NULL;
    rc = sqlite3_exec(st->db,
                      "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                      "PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
                      NULL, NULL, &e);
    if (rc != SQLITE_OK) {
        buf_setf(err, "%s: %s", path, e ? e : sqlite3_errstr(rc));
        sqlite3_free(e);
        goto out;
    }
    r = migrate(st, path, err);
    if (r < 0)
        goto out;
    r = -EIO;
    rc = sqlite3_create_function_v2(st->db, "yci_changed", 0, SQLITE_UTF8, st, sql_changed, NULL,
                                    NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(st->db, change_triggers, NULL, NULL, &e);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function_v2(st->db, "yci_unprepared", 0, SQLITE_UTF8, NULL,
                                        sql_unprepared, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v3(st->db, "SELECT yci_unprepared()", -1,
                                SQLITE_PREPARE_PERSISTENT, &st->unprepared, NULL);
    if (rc != SQLITE_OK) {
        buf_setf(err, "%s: connection set-up: %s", path, e ? e : sqlite3_errmsg(st->db));
        sqlite3_free(e);
        goto out;
    }

    r = -EIO;
    for (int i = 0; i < Q_COUNT; i++)
        if (check_sql(st, sql[i], err) < 0)
            goto out;
    for (int m = 0; m < N_LIST; m++) {
        char *text = list_sql(m);
        int pr = check_sql(st, text, err);
        free(text);
        if (pr < 0)
            goto out;
    }
    *out = st;
    st = NULL;
    r = 0;
out:
    store_free(st);
    return r;
}

void store_free(struct store *st)
{
    if (!st)
        return;
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(st->stmts[i]);
    for (int m = 0; m < N_LIST; m++)
        sqlite3_finalize(st->list[m]);
    sqlite3_finalize(st->unprepared);
    sqlite3_close_v2(st->db);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

/* ---- repositories -------------------------------------------------------- */

static json_t *repo_get_locked(struct store *st, enum q which, const char *name, int64_t id)
{
    sqlite3_stmt *s = q(st, which);
    if (name)
        bind_text(s, 1, name);
    else
        sqlite3_bind_int64(s, 1, id);
    json_t *r = sqlite3_step(s) == SQLITE_ROW ? repo_from_row(s) : NULL;
    sqlite3_reset(s);
    return r;
}

int store_repo_add(struct store *st, const char *name, const char *url, json_t **repo_out,
                   struct buf *err)
{
    if (!name_valid(name)) {
        buf_setf(err,
                 "invalid repository name '%.100s': use letters, digits, '.', '_' and '-', "
                 "not first '.' or '-'",
                 name ? name : "");
        return -EINVAL;
    }
    if (!url || !*url) {
        buf_setf(err, "a repository needs a url");
        return -EINVAL;
    }
    lock(st);
    int r = tx_begin(st, err);
    if (r < 0)
        goto out;
    sqlite3_stmt *s = q(st, Q_REPO_INSERT);
    bind_text(s, 1, name);
    bind_text(s, 2, url);
    sqlite3_bind_int64(s, 3, time_now_ms());
    int rc = exec_q(s);
    if (rc == SQLITE_CONSTRAINT_UNIQUE) {
        buf_setf(err, "a repository named '%s' exists already", name);
        r = -EEXIST;
        goto out;
    }
    if (rc != 0) {
        r = db_error(st, err, "add repository");
        goto out;
    }
    int64_t id = sqlite3_last_insert_rowid(st->db);
    r = tx_commit(st, err);
    if (r == 0 && repo_out)
        *repo_out = repo_get_locked(st, Q_REPO_BY_ID, NULL, id);
out:
    if (r < 0)
        tx_rollback(st);
    unlock(st);
    return r;
}

json_t *store_repo_get(struct store *st, const char *name)
{
    if (!name)
        return NULL;
    lock(st);
    json_t *r = repo_get_locked(st, Q_REPO_BY_NAME, name, 0);
    unlock(st);
    return r;
}

json_t *store_repo_get_id(struct store *st, int64_t id)
{
    lock(st);
    json_t *r = repo_get_locked(st, Q_REPO_BY_ID, NULL, id);
    unlock(st);
    return r;
}

json_t *store_repo_list(struct store *st)
{
    json_t *a = json_array();
    lock(st);
    sqlite3_stmt *s = q(st, Q_REPO_LIST);
    while (sqlite3_step(s) == SQLITE_ROW)
        json_array_append_new(a, repo_from_row(s));
    sqlite3_reset(s);
    unlock(st);
    return a;
}

int store_repo_polled(struct store *st, int64_t repo_id, const char *error)
{
    lock(st);
    int r = tx_begin(st, NULL);
    if (r < 0)
        goto out;
    sqlite3_stmt *s = q(st, Q_REPO_POLLED);
    sqlite3_bind_int64(s, 1, repo_id);
    sqlite3_bind_int64(s, 2, time_now_ms());
    bind_text(s, 3, error);
    if (exec_q(s) != 0) {
        r = -EIO;
        goto out;
    }
    if (sqlite3_changes(st->db) == 0) {
        r = -ENOENT;
        goto out;
    }
    r = tx_commit(st, NULL);
out:
    if (r < 0)
        tx_rollback(st);
    unlock(st);
    return r;
}

/* ---- heads ---------------------------------------------------------------- */

json_t *store_heads_get(struct store *st, int64_t repo_id)
{
    json_t *o = json_object();
    lock(st);
    sqlite3_stmt *s = q(st, Q_HEADS_GET);
    sqlite3_bind_int64(s, 1, repo_id);
    while (sqlite3_step(s) == SQLITE_ROW)
        json_object_set_new(o, col_str(s, 0), col_text(s, 1));
    sqlite3_reset(s);
    unlock(st);
    return o;
}

/* Forget ref's head; with why, first cancel its unfinished builds' jobs. */
static int head_forget(struct store *st, int64_t repo_id, const char *ref, const char *why)
{
    if (!ref)
        return -EINVAL;
    lock(st);
    int r = tx_begin(st, NULL);
    if (r < 0)
        goto out;
    sqlite3_stmt *s;
    int64_t number = 0;
    char tail[8] = "";
    if (why) {
        s = q(st, Q_CLOSED);
        sqlite3_bind_int64(s, 1, repo_id);
        bind_text(s, 2, ref);
        r = cancel_builds(st, s, time_now_ms(), why);
        /* A pull request's head: the branch builds it adopted too. */
        if (r == 0 && sscanf(ref, "refs/pull/%" SCNd64 "/%7s", &number, tail) == 2 &&
            strcmp(tail, "head") == 0) {
            s = q(st, Q_CLOSED_ADOPTED);
            sqlite3_bind_int64(s, 1, repo_id);
            bind_text(s, 2, ref);
            sqlite3_bind_int64(s, 3, number);
            r = cancel_builds(st, s, time_now_ms(), why);
        }
        if (r < 0)
            goto out;
    }
    s = q(st, Q_HEAD_DELETE);
    sqlite3_bind_int64(s, 1, repo_id);
    bind_text(s, 2, ref);
    r = exec_q(s) == 0 ? tx_commit(st, NULL) : -EIO;
out:
    if (r < 0)
        tx_rollback(st);
    unlock(st);
    return r;
}

int store_ref_close(struct store *st, int64_t repo_id, const char *ref, const char *why)
{
    return why ? head_forget(st, repo_id, ref, why) : -EINVAL;
}

int store_repo_set_github(struct store *st, int64_t repo_id, const char *full_name,
                          bool private_repo)
{
    lock(st);
    sqlite3_stmt *s = q(st, Q_REPO_SET_GITHUB);
    sqlite3_bind_int64(s, 1, repo_id);
    bind_text(s, 2, full_name);
    sqlite3_bind_int(s, 3, private_repo);
    int r = exec_q(s) == 0 ? (sqlite3_changes(st->db) ? 0 : -ENOENT) : -EIO;
    unlock(st);
    return r;
}

/* ---- the outbox of commit statuses ---- */

/* Bind only (see store_statuses_due()) as parameter i. */
static void bind_only(sqlite3_stmt *s, int i, const json_t *only)
{
    char *text = only ? dump(only) : NULL;
    bind_text(s, i, text);
    free(text);
}

json_t *store_statuses_due(struct store *st, int64_t now, int limit, const json_t *only)
{
    lock(st);
    json_t *a = json_array();
    sqlite3_stmt *s = q(st, Q_STATUSES_DUE);
    sqlite3_bind_int64(s, 1, now);
    sqlite3_bind_int(s, 2, limit > 0 ? limit : 50);
    bind_only(s, 3, only);
    while (sqlite3_step(s) == SQLITE_ROW) {
        json_t *r = json_object();
        static const char *const keys[] = {"id",          "build_id", "job_id",  "github",
                                           "sha",         "context",  "state",   "version",
                                           "tries",       "exit_code", "error",  "started",
                                           "finished",    "attempt",  "retries", "max_retries",
                                           "build_error"};
        for (int i = 0; i < (int)(sizeof keys / sizeof keys[0]); i++)
            json_object_set_new(r, keys[i],
                                sqlite3_column_type(s, i) == SQLITE_INTEGER ? col_int(s, i)
                                                                            : col_text(s, i));
        json_array_append_new(a, r);
    }
    sqlite3_reset(s);
    unlock(st);
    return a;
}

int store_status_sent(struct store *st, int64_t id, int64_t version)
{
    lock(st);
    sqlite3_stmt *s = q(st, Q_STATUS_SENT);
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, version);
    int r = exec_q(s) == 0 ? 0 : -EIO;
    unlock(st);
    return r;
}

int store_status_retry(struct store *st, int64_t id, int64_t version, int64_t next_try,
                       const char *error)
{
    lock(st);
    sqlite3_stmt *s = q(st, Q_STATUS_RETRY);
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, next_try);
    bind_text(s, 3, error);
    sqlite3_bind_int64(s, 4, version);
    int r = exec_q(s) == 0 ? 0 : -EIO;
    unlock(st);
    return r;
}

json_t *store_latest_builds(struct store *st)
{
    lock(st);
    json_t *a = json_array();
    sqlite3_stmt *s = q(st, Q_LATEST_BUILDS);
    while (sqlite3_step(s) == SQLITE_ROW)
        json_array_append_new(a, build_from_row(s));
    sqlite3_reset(s);
    unlock(st);
    return a;
}

int store_build_set_commit(struct store *st, int64_t id, const char *author, const char *subject)
{
    lock(st);
    sqlite3_stmt *s = q(st, Q_BUILD_SET_COMMIT);
    sqlite3_bind_int64(s, 1, id);
    bind_text(s, 2, author);
    bind_text(s, 3, subject);
    int r = exec_q(s) == 0 ? 0 : -EIO;
    unlock(st);
    return r;
}

int store_delivery_new(struct store *st, const char *id)
{
    if (!id || !*id || strlen(id) > 200)
        return -EINVAL;
    lock(st);
    int64_t now = time_now_ms();
    int r = tx_begin(st, NULL);
    if (r < 0)
        goto out;
    sqlite3_stmt *s = q(st, Q_DELIVERY_PRUNE);
    sqlite3_bind_int64(s, 1, now - STORE_DELIVERY_KEEP_MS);
    if (exec_q(s) != 0) {
        r = -EIO;
        goto out;
    }
    s = q(st, Q_DELIVERY_INSERT);
    bind_text(s, 1, id);
    sqlite3_bind_int64(s, 2, now);
    if (exec_q(s) != 0) {
        r = -EIO;
        goto out;
    }
    int fresh = sqlite3_changes(st->db) == 1;
    r = tx_commit(st, NULL);
    if (r == 0)
        r = fresh;
out:
    if (r < 0)
        tx_rollback(st);
    unlock(st);
    return r;
}

int store_statuses_wake(struct store *st, const json_t *only)
{
    lock(st);
    sqlite3_stmt *s = q(st, Q_STATUSES_WAKE);
    sqlite3_bind_int64(s, 1, time_now_ms());
    bind_only(s, 2, only);
    int r = exec_q(s) == 0 ? sqlite3_changes(st->db) : -EIO;
    unlock(st);
    return r;
}

int64_t store_statuses_pending(struct store *st, const json_t *only)
{
    lock(st);
    sqlite3_stmt *s = q(st, Q_STATUSES_PENDING);
    bind_only(s, 1, only);
    int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -EIO;
    sqlite3_reset(s);
    unlock(st);
    return n;
}

int store_head_delete(struct store *st, int64_t repo_id, const char *ref)
{
    return head_forget(st, repo_id, ref, NULL);
}

int store_head_advance(struct store *st, int64_t repo_id, const char *ref, const char *old_sha,
                       const char *new_sha, json_t *jobs, const char *error,
                       bool cancel_superseded, json_t *pull, bool untrusted, const char *twin_ref,
                       int64_t *build_id, struct buf *err)
{
    *build_id = 0;
    if (!ref || !*ref || !new_sha || !*new_sha) {
        buf_setf(err, "a head needs a ref and a commit");
        return -EINVAL;
    }
    int r = jobs_check(jobs, error, err);
    if (r < 0)
        return r;

    lock(st);
    int64_t now = time_now_ms(), id = 0;
    r = tx_begin(st, err);
    if (r < 0)
        goto out;
    r = repo_exists(st, repo_id);
    if (r < 0) {
        if (r == -ENOENT)
            buf_setf(err, "no repository with id %" PRId64, repo_id);
        else
            db_error(st, err, "find repository");
        goto out;
    }

    sqlite3_stmt *s = q(st, Q_HEAD_GET);
    sqlite3_bind_int64(s, 1, repo_id);
    bind_text(s, 2, ref);
    int rc = sqlite3_step(s);
    bool same;
    if (rc == SQLITE_ROW)
        same = old_sha && strcmp(col_str(s, 0), old_sha) == 0;
    else
        same = !old_sha;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        r = db_error(st, err, "read head");
        goto out;
    }
    if (!same) {
        r = 0; /* another poll got there first */
        goto out;
    }

    s = q(st, Q_HEAD_SET);
    sqlite3_bind_int64(s, 1, repo_id);
    bind_text(s, 2, ref);
    bind_text(s, 3, new_sha);
    if (exec_q(s) != 0) {
        r = db_error(st, err, "set head");
        goto out;
    }

    s = q(st, Q_BUILD_EXISTS);
    sqlite3_bind_int64(s, 1, repo_id);
    bind_text(s, 2, ref);
    bind_text(s, 3, new_sha);
    bind_text(s, 4, twin_ref);
    rc = sqlite3_step(s);
    /* The build that stands for ref at new_sha: its own, its twin's, or
     * the one made now. */
    int64_t standing = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    int64_t twin = rc == SQLITE_ROW && !sqlite3_column_int(s, 1) ? standing : 0;
    /* A build of another pull request (two from one branch) is not this
     * one's: each open pull request has a build that carries it. */
    int64_t twin_pull = twin ? sqlite3_column_int64(s, 2) : 0;
    json_t *number = json_object_get(pull, "number");
    sqlite3_reset(s);
    if (twin && twin_pull && json_is_integer(number) && json_integer_value(number) != twin_pull) {
        twin = standing = 0;
        rc = SQLITE_DONE;
    }
    if (twin) {
        /* The twin's build stands for this ref too, and a pull request's
         * branch build becomes the pull request's build. */
        r = pull ? build_set_pull(st, twin, pull, untrusted) : 0;
        char *note = xasprintf("%s is at this commit too: this build stands for it", ref);
        if (r == 0)
            r = event_add(st, twin, 0, now, note);
        free(note);
        if (r < 0) {
            r = db_error(st, err, "record the twin ref");
            goto out;
        }
        *build_id = twin;
    } else if (rc == SQLITE_DONE) {
        r = build_insert(st, repo_id, ref, new_sha, jobs, error, 0, "observer", now, &id, err);
        if (r < 0)
            goto out;
        if ((pull || untrusted) && build_set_pull(st, id, pull, untrusted) < 0) {
            r = db_error(st, err, "record the pull request");
            goto out;
        }
        standing = id;
    } else if (rc != SQLITE_ROW) {
        r = db_error(st, err, "find build");
        goto out;
    }
    if (cancel_superseded && (r = cancel_ref_builds(st, repo_id, ref, new_sha, standing, now)) < 0) {
        r = db_error(st, err, "cancel superseded builds");
        goto out;
    }
    r = tx_commit(st, err);
    if (r == 0 && id) {
        *build_id = id;
        r = 1;
    }
out:
    if (r <= 0)
        tx_rollback(st); /* r == 0: nothing was written, or nothing to keep */
    unlock(st);
    return r;
}

int store_build_create(struct store *st, int64_t repo_id, const char *ref, const char *commit,
                       json_t *jobs, const char *error, int64_t *build_id, struct buf *err)
{
    int r = jobs_check(jobs, error, err);
    if (r < 0)
        return r;
    lock(st);
    int64_t id = 0;
    r = tx_begin(st, err);
    if (r < 0)
        goto out;
    if (repo_id) {
        r = repo_exists(st, repo_id);
        if (r < 0) {
            if (r == -ENOENT)
                buf_setf(err, "no repository with id %" PRId64, repo_id);
            else
                db_error(st, err, "find repository");
            goto out;
        }
    }
    r = build_insert(st, repo_id, ref, commit, jobs, error, 0, "api", time_now_ms(), &id, err);
    if (r == 0)
        r = tx_commit(st, err);
    if (r == 0)
        *build_id = id;
out:
    if (r < 0)
        tx_rollback(st);
    unlock(st);
    return r;
}

/* ---- builds ---------------------------------------------------------------- */

json_t *store_build_get(struct store *st, int64_t id)
{
    lock(st);
    sqlite3_stmt *s = q(st, Q_BUILD_GET);
    sqlite3_bind_int64(s, 1, id);
    json_t *b = sqlite3_step(s) == SQLITE_ROW ? build_from_row(s) : NULL;
    sqlite3_reset(s);
    if (b) {
        json_t *jobs = json_array(), *events = json_array();
        s = q(st, Q_BUILD_JOBS);
        sqlite3_bind_int64(s, 1, id);
        while (sqlite3_step(s) == SQLITE_ROW)
            json_array_append_new(jobs, job_from_row(s));
        sqlite3_reset(s);
        s = q(st, Q_BUILD_EVENTS);
        sqlite3_bind_int64(s, 1, id);
        while (sqlite3_step(s) == SQLITE_ROW) {
            json_t *e = json_object();
            json_object_set_new(e, "time", col_int(s, 0));
            json_object_set_new(e, "job_id", col_int(s, 1));
            json_object_set_new(e, "message", col_text(s, 2));
            json_array_append_new(events, e);
        }
        sqlite3_reset(s);
        json_object_set_new(b, "jobs", jobs);
        json_object_set_new(b, "events", events);
    }
    unlock(st);
    return b;
}

/* A filter value that may be a JSON integer or a decimal string. */
static bool filter_int(json_t *filter, const char *key, int64_t *out)
{
    json_t *v = json_object_get(filter, key);
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return true;
    }
    return json_is_string(v) && parse_int64(json_string_value(v), INT64_MIN, INT64_MAX, out) == 0;
}

json_t *store_build_list(struct store *st, json_t *filter)
{
    json_t *a = json_array();
    const char *repo = json_string_value(json_object_get(filter, "repo"));
    const char *branch = json_string_value(json_object_get(filter, "branch"));
    const char *status = json_string_value(json_object_get(filter, "status"));
    int64_t before = INT64_MAX, limit = LIST_DEFAULT;
    filter_int(filter, "before", &before);
    if (filter_int(filter, "limit", &limit) && limit <= 0)
        limit = LIST_DEFAULT;
    if (limit > YCI_MAX_LIST)
        limit = YCI_MAX_LIST;
    int mask = (repo && *repo ? F_REPO : 0) | (branch && *branch ? F_BRANCH : 0) |
               (status && *status ? F_STATUS : 0);

    lock(st);
    int64_t repo_id = 0;
    if (mask & F_REPO) {
        json_t *r = repo_get_locked(st, Q_REPO_BY_NAME, repo, 0);
        if (!r)
            goto out; /* no such repository: no builds */
        repo_id = json_integer_value(json_object_get(r, "id"));
        json_decref(r);
    }
    sqlite3_stmt *s = st->list[mask];
    if (!s) {
        char *text = list_sql(mask);
        s = prepared(st, &st->list[mask], text);
        free(text);
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    sqlite3_bind_int64(s, 1, before);
    sqlite3_bind_int64(s, 2, repo_id);
    bind_text(s, 3, branch);
    bind_text(s, 4, status);
    sqlite3_bind_int64(s, 5, limit);
    while (sqlite3_step(s) == SQLITE_ROW)
        json_array_append_new(a, build_from_row(s));
    sqlite3_reset(s);
out:
    unlock(st);
    return a;
}

int store_build_rebuild(struct store *st, int64_t id, int64_t *new_id)
{
    lock(st);
    int64_t now = time_now_ms(), nid = 0;
    int r = tx_begin(st, NULL);
    if (r < 0)
        goto out;
    sqlite3_stmt *s = q(st, Q_BUILD_ROW);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        r = rc == SQLITE_DONE ? -ENOENT : -EIO;
        goto out;
    }
    int64_t repo_id = sqlite3_column_int64(s, 0);
    char *ref = col_str(s, 1) ? xstrdup(col_str(s, 1)) : NULL;
    char *commit = col_str(s, 3) ? xstrdup(col_str(s, 3)) : NULL;
    char *error = col_str(s, 4) ? xstrdup(col_str(s, 4)) : NULL;
    sqlite3_reset(s);

    /* No jobs to insert here: they are copied below, as stored. A build
     * that had a configuration error (and so no jobs) is copied with it. */
    r = build_insert(st, repo_id, ref, commit, NULL, error, id, "rebuild", now, &nid, NULL);
    bool had_error = error != NULL;
    free(ref);
    free(commit);
    free(error);
    if (r < 0)
        goto out;
    s = q(st, Q_BUILD_COPY_PULL);
    sqlite3_bind_int64(s, 1, nid);
    sqlite3_bind_int64(s, 2, id);
    if (exec_q(s) != 0) {
        r = -EIO;
        goto out;
    }
    s = q(st, Q_JOBS_COPY);
    sqlite3_bind_int64(s, 1, nid);
    sqlite3_bind_int64(s, 2, now);
    sqlite3_bind_int64(s, 3, id);
    if (exec_q(s) != 0) {
        r = -EIO;
        goto out;
    }
    if (!had_error && sqlite3_changes(st->db) == 0) {
        /* A build with nothing to run (branch filters): so is its rebuild. */
        s = q(st, Q_BUILD_SET_STATE);
        sqlite3_bind_int64(s, 1, nid);
        bind_text(s, 2, "passed");
        sqlite3_bind_int64(s, 3, now);
        if (exec_q(s) != 0) {
            r = -EIO;
            goto out;
        }
    }
    char *msg = xasprintf("rebuild of build %" PRId64, id);
    r = event_add(st, nid, 0, now, msg);
    free(msg);
    if (r == 0)
        r = tx_commit(st, NULL);
    if (r == 0)
        *new_id = nid;
out:
    if (r < 0)
        tx_rollback(st);
    unlock(st);
    return r;
}

int store_build_cancel(struct store *st, int64_t id)
{
    lock(st);
    int64_t now = time_now_ms();
    int r = tx_begin(st, NULL);
    if (r < 0)
        goto out;
    sqlite3_stmt *s = q(st, Q_BUILD_STATE);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW) {
        r = rc == SQLITE_DONE ? -ENOENT : -EIO;
        goto out;
    }
    s = q(st, Q_BUILD_CANCEL);
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, now);
    if (exec_q(s) != 0) {
        r = -EIO;
        goto out;
    }
    int n = sqlite3_changes(st->db);
    r = 0;
    if (n > 0) {
        char *msg = xasprintf("build cancelled: %d job%s cancelled", n, n == 1 ? "" : "s");
        r = event_add(st, id, 0, now, msg);
        free(msg);
        if (r == 0)
            r = build_update(st, id, now, NULL);
    }
    if (r == 0)
        r = tx_commit(st, NULL);
    if (r == 0)
        r = n;
out:
    if (r < 0)
        tx_rollback(st);
    unlock(st);
    return r;
}

int store_event_add(struct store *st, int64_t build_id, int64_t job_id, const char *message)
{
    if (!message)
        return -EINVAL;
    lock(st);
    int r = tx_begin(st, NULL);
    if (r < 0)
        goto out;
    r = event_add(st, build_id, job_id, time_now_ms(), message);
    if (r < 0) {
        /* Most likely a foreign key: no such build or job. */
        r = sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_FOREIGNKEY ? -ENOENT : -EIO;
        goto out;
    }
    r = tx_commit(st, NULL);
out:
    if (r < 0)
        tx_rollback(st);
    unlock(st);
    return r;
}

/* ---- jobs ------------------------------------------------------------------- */

/* The job as the API shows it, or NULL; the lock held. */
static json_t *job_read(struct store *st, int64_t id)
{
    sqlite3_stmt *s = q(st, Q_JOB_GET);
    sqlite3_bind_int64(s, 1, id);
    json_t *j = sqlite3_step(s) == SQLITE_ROW ? job_from_row(s) : NULL;
    sqlite3_reset(s);
    return j;
}

json_t *store_job_get(struct store *st, int64_t id)
{
    lock(st);
    json_t *j = job_read(st, id);
    unlock(st);
    return j;
}

/* The job's status, attempt, runner (0: none), build and name. */
struct job_state {
    char status[16];
    int attempt;
    int64_t runner_id;
    int64_t build_id;
    char name[MAX_JOB_NAME + 1];
    int retries, max_retries;
    int64_t retry_delay; /* seconds */
    bool plan;           /* kind 'plan' */
};

static int job_state(struct store *st, int64_t id, struct job_state *js)
{
    sqlite3_stmt *s = q(st, Q_JOB_STATE);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        snprintf(js->status, sizeof(js->status), "%s", col_str(s, 0) ? col_str(s, 0) : "");
        js->attempt = sqlite3_column_int(s, 1);
        js->runner_id = sqlite3_column_int64(s, 2);
        js->build_id = sqlite3_column_int64(s, 3);
        snprintf(js->name, sizeof(js->name), "%s", col_str(s, 4) ? col_str(s, 4) : "");
        js->retries = sqlite3_column_int(s, 5);
        js->max_retries = sqlite3_column_int(s, 6);
        js->retry_delay = sqlite3_column_int64(s, 7);
        js->plan = col_str(s, 8) && strcmp(col_str(s, 8), "plan") == 0;
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int store_job_cancel(struct store *st, int64_t id)
{
    lock(st);
    int64_t now = time_now_ms();
    struct job_state js;
    int r = tx_begin(st, NULL);
    if (r < 0)
        goto out;
    r = job_state(st, id, &js);
    if (r < 0 || status_final(js.status))
        goto out; /* r == 0: finished already, nothing to do */
    sqlite3_stmt *s = q(st, Q_JOB_CANCEL);
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, now);
    if (exec_q(s) != 0) {
        r = -EIO;
        goto out;
    }
    char *msg = xasprintf("job %" PRId64 " (%s) cancelled", id, js.name);
    r = event_add(st, js.build_id, id, now, msg);
    free(msg);
    if (r == 0)
        r = needs_resolve(st, js.build_id, now, NULL);
    if (r == 0)
        r = build_update(st, js.build_id, now, NULL);
    if (r == 0)
        r = tx_commit(st, NULL);
out:
    tx_rollback(st); /* a no-op once committed */
    unlock(st);
    return r;
}

/* Are the job's labels (JSON text) all among the runner's? */
static bool labels_match(const char *job_labels, json_t *runner_labels)
{
    if (!job_labels || strcmp(job_labels, "{}") == 0)
        return true;
    json_t *jl = json_loads(job_labels, 0, NULL);
    bool ok = json_is_object(jl);
    const char *k;
    json_t *v;
    json_object_foreach(jl, k, v) {
        json_t *rv = json_object_get(runner_labels, k);
        if (!json_is_string(rv) || !json_equal(v, rv)) {
            ok = false;
            break;
        }
    }
    json_decref(jl);
    return ok;
}

/*
 * The oldest claimable job whose labels the runner has, in *found (0: none).
 * Walks the distinct label sets queued (jobs_queued is ordered by labels):
 * per set one seek to the next set and, when the runner matches it, one to
 * its oldest job ready to run.
 */
static int claim_find(struct store *st, json_t *runner_labels, int64_t now, int64_t *found)
{
    char *set = xstrdup("");
    int r = 0;
    *found = 0;
    for (;;) {
        sqlite3_stmt *s = q(st, Q_CLAIM_LABELS);
        sqlite3_bind_text(s, 1, set, -1, SQLITE_TRANSIENT);
        int rc = sqlite3_step(s);
        if (rc != SQLITE_ROW) {
            r = rc == SQLITE_DONE ? 0 : -EIO;
            sqlite3_reset(s);
            break;
        }
        free(set);
        set = xstrdup(col_str(s, 0) ? col_str(s, 0) : "");
        sqlite3_reset(s);
        if (!labels_match(set, runner_labels))
            continue;
        s = q(st, Q_CLAIM_FIRST);
        sqlite3_bind_text(s, 1, set, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, now);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(s, 0);
            if (!*found || id < *found)
                *found = id;
        }
        sqlite3_reset(s);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            r = -EIO;
            break;
        }
    }
    free(set);
    return r;
}

/* store_job_claim() inside the caller's transaction: 1 and *job_out, 0 when
 * none matched (nothing written), or -errno. */
static int claim_in_tx(struct store *st, int64_t runner_id, json_t *runner_labels,
                       int64_t lease_ms, int64_t now, json_t **job_out)
{
    int64_t found = 0, build_id = 0;
    int r = claim_find(st, runner_labels, now, &found);
    if (r < 0 || !found)
        return r;

    sqlite3_stmt *s = q(st, Q_CLAIM_TAKE);
    sqlite3_bind_int64(s, 1, found);
    sqlite3_bind_int64(s, 2, runner_id);
    sqlite3_bind_int64(s, 3, now + lease_ms);
    sqlite3_bind_int64(s, 4, now);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        build_id = sqlite3_column_int64(s, 0);
    if (exec_q(s) != 0 || rc != SQLITE_ROW)
        return sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_FOREIGNKEY ? -ENOENT : -EIO;
    s = q(st, Q_BUILD_START);
    sqlite3_bind_int64(s, 1, build_id);
    sqlite3_bind_int64(s, 2, now);
    if (exec_q(s) != 0)
        return -EIO;

    s = q(st, Q_CLAIM_GET);
    sqlite3_bind_int64(s, 1, found);
    json_t *job = NULL;
    if (sqlite3_step(s) == SQLITE_ROW) {
        job = job_from_row(s);
        json_object_set_new(job, "ref", col_text(s, JOB_NCOLS));
        json_object_set_new(job, "commit", col_text(s, JOB_NCOLS + 1));
        json_object_set_new(job, "repo", col_text(s, JOB_NCOLS + 2));
        json_t *pull = col_json(s, JOB_NCOLS + 3);
        if (json_is_object(pull))
            json_object_set_new(job, "pull", pull);
        else
            json_decref(pull);
        if (sqlite3_column_type(s, JOB_NCOLS + 4) == SQLITE_TEXT)
            json_object_set_new(job, "github", col_text(s, JOB_NCOLS + 4));
    }
    sqlite3_reset(s);
    if (!job)
        return -EIO;
    *job_out = job;
    return 1;
}

int store_job_claim(struct store *st, int64_t runner_id, json_t *runner_labels, int64_t lease_ms,
                    json_t **job_out)
{
    lock(st);
    json_t *job = NULL;
    int r = tx_begin(st, NULL);
    if (r == 0)
        r = claim_in_tx(st, runner_id, runner_labels, lease_ms, time_now_ms(), &job);
    if (r > 0 && (r = tx_commit(st, NULL)) == 0) {
        *job_out = job;
        job = NULL;
        r = 1;
    }
    json_decref(job);
    tx_rollback(st); /* a no-op once committed; r == 0: nothing written */
    unlock(st);
    return r;
}

int store_job_release(struct store *st, int64_t job_id, int attempt, int64_t runner_id,
                      const char *runner_name)
{
    lock(st);
    int64_t now = time_now_ms();
    struct job_state js;
    int r = tx_begin(st, NULL);
    if (r == 0)
        r = job_state(st, job_id, &js);
    if (r == 0) {
        sqlite3_stmt *s = q(st, Q_JOB_GIVE_BACK);
        sqlite3_bind_int64(s, 1, job_id);
        sqlite3_bind_int(s, 2, attempt);
        sqlite3_bind_int64(s, 3, runner_id);
        r = exec_q(s) != 0 ? -EIO : sqlite3_changes(st->db) == 0 ? -ESTALE : 0;
    }
    if (r == 0) {
        char *msg = xasprintf("job %" PRId64 " (%s): runner '%s' stopped and gave it back, "
                              "re-queued",
                              job_id, js.name, runner_name ? runner_name : "?");
        r = event_add(st, js.build_id, job_id, now, msg);
        free(msg);
    }
    if (r == 0)
        r = build_update(st, js.build_id, now, NULL);
    if (r == 0)
        r = tx_commit(st, NULL);
    if (r < 0)
        tx_rollback(st);
    unlock(st);
    return r;
}

int store_job_check(struct store *st, int64_t job_id, int attempt, int64_t runner_id)
{
    struct job_state js;
    lock(st);
    int r = job_state(st, job_id, &js);
    if (r == 0 &&
        (js.attempt != attempt || js.runner_id != runner_id || strcmp(js.status, "running") != 0))
        r = -ESTALE;
    unlock(st);
    return r;
}

static bool finish_status_valid(const char *s)
{
    return s && (strcmp(s, "passed") == 0 || strcmp(s, "failed") == 0 || strcmp(s, "error") == 0 ||
                 strcmp(s, "timed_out") == 0);
}

/* What a plan job's finish adds: the generated jobs (checked), or NULL. */
static int plan_apply(struct store *st, const struct job_state *js, json_t *plan_jobs,
                      const char *status, const char *error, int64_t now, struct buf *err)
{
    if (!js->plan)
        return 0;
    if (strcmp(status, "passed") != 0) {
        /* The generator failed: its message is the build's error too, so
         * that the build page and the CLI show it where a .yci.yml's is. */
        sqlite3_stmt *s = q(st, Q_BUILD_SET_ERROR);
        sqlite3_bind_int64(s, 1, js->build_id);
        bind_text(s, 2, error ? error : "the .yci.py plan job failed");
        return exec_q(s) == 0 ? 0 : db_error(st, err, "set the build's error");
    }
    int r = jobs_insert(st, js->build_id, plan_jobs, true, now, err);
    if (r < 0) {
        if (sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_UNIQUE) {
            buf_setf(err, "a job of .yci.py has the name of the plan job '%s'", js->name);
            return -EINVAL;
        }
        return r;
    }
    size_t n = json_array_size(plan_jobs);
    char *msg = n ? xasprintf(".yci.py planned %zu job%s", n, n == 1 ? "" : "s")
                  : xstrdup("no jobs: the .yci.py test_generator yielded nothing");
    r = event_add(st, js->build_id, 0, now, msg);
    free(msg);
    return r;
}

/* store_finish()'s finish, inside the caller's transaction: 0 (also when
 * it changed nothing: finished already, or queued for a retry of this
 * attempt), or -errno. */
static int finish_in_tx(struct store *st, struct store_finish *f, int64_t now, struct buf *err)
{
    struct job_state js;
    int r = job_state(st, f->job_id, &js);
    if (r < 0)
        return r;
    if (js.attempt != f->attempt || js.runner_id != f->runner_id ||
        strcmp(js.status, "cancelled") == 0)
        return -ESTALE;
    if (strcmp(js.status, "queued") == 0) {
        /* Queued for a retry after this very attempt (the retry keeps the
         * runner): finishing it again changes nothing. A job re-queued by an
         * expired lease has no runner, and was refused above. */
        return js.retries == 0 ? -ESTALE : 0;
    }
    if (status_final(js.status))
        return 0; /* finished already: nothing changes */
    if (js.plan && strcmp(f->status, "passed") == 0 && !f->plan_jobs) {
        buf_setf(err, "a plan job that passed must send the jobs it planned");
        return -EINVAL;
    }

    bool test_failed = strcmp(f->status, "failed") == 0 || strcmp(f->status, "timed_out") == 0;
    sqlite3_stmt *s;
    if (test_failed && js.retries < js.max_retries && !js.plan) {
        /* IncrementalRetry: retry n waits increment × n. */
        int n = js.retries + 1;
        int64_t wait_s = js.retry_delay * n;
        s = q(st, Q_JOB_RETRY);
        sqlite3_bind_int64(s, 1, f->job_id);
        sqlite3_bind_int64(s, 2, now + wait_s * 1000);
        sqlite3_bind_int(s, 3, f->exit_code);
        bind_text(s, 4, f->error);
        sqlite3_bind_int64(s, 5, now);
        if (exec_q(s) != 0)
            return -EIO;
        char *msg = xasprintf("job %" PRId64 " (%s): %s, retry %d of %d in %" PRId64 " s",
                              f->job_id, js.name,
                              strcmp(f->status, "failed") == 0 ? "failed" : "timed out", n,
                              js.max_retries, wait_s);
        r = event_add(st, js.build_id, f->job_id, now, msg);
        free(msg);
        return r;
    }

    r = plan_apply(st, &js, f->plan_jobs, f->status, f->error, now, err);
    if (r < 0)
        return r;
    s = q(st, Q_JOB_FINISH);
    sqlite3_bind_int64(s, 1, f->job_id);
    bind_text(s, 2, f->status);
    sqlite3_bind_int(s, 3, f->exit_code);
    bind_text(s, 4, f->error);
    sqlite3_bind_int64(s, 5, now);
    if (exec_q(s) != 0)
        return -EIO;
    r = needs_resolve(st, js.build_id, now, NULL);
    if (r == 0)
        r = build_update(st, js.build_id, now, &f->build_done);
    return r;
}

int store_finish(struct store *st, struct store_finish *f, struct buf *err)
{
    f->build_done = false;
    f->job = f->next = NULL;
    if (!finish_status_valid(f->status))
        return -EINVAL;
    if (f->plan_jobs) {
        int r = jobs_check(f->plan_jobs, NULL, err);
        if (r < 0)
            return r;
    }
    lock(st);
    int64_t now = time_now_ms();
    int r = tx_begin(st, NULL);
    if (r == 0)
        r = finish_in_tx(st, f, now, err);
    if (r == 0 && f->claim_labels) {
        int c = claim_in_tx(st, f->runner_id, f->claim_labels, f->lease_ms, now, &f->next);
        if (c < 0)
            r = c;
    }
    if (r == 0) {
        f->job = job_read(st, f->job_id);
        r = f->job ? tx_commit(st, NULL) : -EIO;
    }
    if (r < 0) {
        tx_rollback(st);
        json_decref(f->job);
        json_decref(f->next);
        f->job = f->next = NULL;
        f->build_done = false;
    }
    unlock(st);
    return r;
}

int store_plan_finish(struct store *st, int64_t job_id, int attempt, int64_t runner_id,
                      const char *status, int exit_code, const char *error, json_t *plan_jobs,
                      bool *build_done, struct buf *err)
{
    struct store_finish f = {.job_id = job_id, .attempt = attempt, .runner_id = runner_id,
                             .status = status, .exit_code = exit_code, .error = error,
                             .plan_jobs = plan_jobs};
    int r = store_finish(st, &f, err);
    json_decref(f.job);
    if (r == 0 && build_done)
        *build_done = f.build_done;
    return r;
}

int store_job_finish(struct store *st, int64_t job_id, int attempt, int64_t runner_id,
                     const char *status, int exit_code, const char *error, bool *build_done)
{
    return store_plan_finish(st, job_id, attempt, runner_id, status, exit_code, error, NULL,
                             build_done, NULL);
}

/* ---- leases ------------------------------------------------------------------ */

struct expired {
    int64_t id, build_id;
    int attempt, infra_retries;
    char *name, *runner;
};

int store_leases_expire(struct store *st, int max_retries, int *requeued)
{
    lock(st);
    int64_t now = time_now_ms();
    struct expired *ex = NULL;
    size_t n = 0, cap = 0;
    int nreq = 0;
    int r = tx_begin(st, NULL);
    if (r < 0)
        goto out;

    /* Collect first: the updates below change the index being read. */
    sqlite3_stmt *s = q(st, Q_LEASES_EXPIRED);
    sqlite3_bind_int64(s, 1, now);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            ex = xrealloc(ex, cap * sizeof(*ex));
        }
        ex[n].id = sqlite3_column_int64(s, 0);
        ex[n].build_id = sqlite3_column_int64(s, 1);
        ex[n].name = xstrdup(col_str(s, 2) ? col_str(s, 2) : "");
        ex[n].attempt = sqlite3_column_int(s, 3);
        ex[n].infra_retries = sqlite3_column_int(s, 4);
        ex[n].runner = xstrdup(col_str(s, 5) ? col_str(s, 5) : "?");
        n++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        r = -EIO;
        goto out;
    }

    for (size_t i = 0; i < n && r == 0; i++) {
        struct expired *e = &ex[i];
        char *msg, *jerr = NULL;
        bool give_up = e->infra_retries >= max_retries;
        if (give_up) {
            jerr = xasprintf("runner '%s' stopped answering (lease expired); gave up after %d "
                             "re-queue%s",
                             e->runner, e->infra_retries, e->infra_retries == 1 ? "" : "s");
            msg = xasprintf("job %" PRId64 " (%s): runner '%s' stopped answering (lease "
                            "expired), gave up after %d re-queue%s",
                            e->id, e->name, e->runner, e->infra_retries,
                            e->infra_retries == 1 ? "" : "s");
            s = q(st, Q_JOB_GIVEUP);
            sqlite3_bind_int64(s, 1, e->id);
            bind_text(s, 2, jerr);
            sqlite3_bind_int64(s, 3, now);
        } else {
            /* Attempts so far that were not lost leases, plus every re-queue
             * allowed: the most attempts this job can have. */
            int of = e->attempt - e->infra_retries + max_retries;
            msg = xasprintf("job %" PRId64 " (%s): runner '%s' stopped answering (lease "
                            "expired), re-queued (attempt %d of %d)",
                            e->id, e->name, e->runner, e->attempt + 1, of);
            s = q(st, Q_JOB_REQUEUE);
            sqlite3_bind_int64(s, 1, e->id);
            nreq++;
        }
        if (exec_q(s) != 0)
            r = -EIO;
        if (r == 0)
            r = event_add(st, e->build_id, e->id, now, msg);
        if (r == 0 && give_up)
            r = needs_resolve(st, e->build_id, now, NULL);
        if (r == 0 && give_up)
            r = build_update(st, e->build_id, now, NULL);
        free(msg);
        free(jerr);
    }
    if (r == 0)
        r = tx_commit(st, NULL);
    if (r == 0) {
        r = (int)n;
        if (requeued)
            *requeued = nreq;
    }
out:
    if (r < 0)
        tx_rollback(st);
    unlock(st);
    for (size_t i = 0; i < n; i++) {
        free(ex[i].name);
        free(ex[i].runner);
    }
    free(ex);
    return r;
}

int store_leases_grace(struct store *st, int64_t grace_ms)
{
    lock(st);
    int r = tx_begin(st, NULL);
    if (r < 0)
        goto out;
    sqlite3_stmt *s = q(st, Q_LEASES_GRACE);
    sqlite3_bind_int64(s, 1, time_now_ms() + grace_ms);
    if (exec_q(s) != 0) {
        r = -EIO;
        goto out;
    }
    int n = sqlite3_changes(st->db);
    r = tx_commit(st, NULL);
    if (r == 0)
        r = n;
out:
    if (r < 0)
        tx_rollback(st);
    unlock(st);
    return r;
}

/* ---- runners ------------------------------------------------------------------ */

/* A runner's fields as ?1 to ?7 of Q_RUNNER_INSERT and Q_RUNNER_REREGISTER
 * (labs and plat: JSON text, or NULL). */
static void bind_runner(sqlite3_stmt *s, const char *name, const char *token_hash,
                        const char *labs, const char *plat, int slots, int heartbeat)
{
    bind_text(s, 1, name);
    bind_text(s, 2, token_hash);
    bind_text(s, 3, labs ? labs : "{}");
    bind_text(s, 4, plat);
    sqlite3_bind_int(s, 5, slots);
    sqlite3_bind_int(s, 6, heartbeat);
    sqlite3_bind_int64(s, 7, time_now_ms());
}

/* The checks of a runner's registration: 0, or -EINVAL with err set. */
static int runner_fields_check(const char *name, json_t *labels, json_t *platform, int slots,
                               int heartbeat, const char *token_hash, struct buf *err)
{
    if (!name_valid(name)) {
        buf_setf(err,
                 "invalid runner name '%.100s': use letters, digits, '.', '_' and '-', "
                 "not first '.' or '-'",
                 name ? name : "");
        return -EINVAL;
    }
    if (labels && !json_is_null(labels) && labels_check(labels, "runner", err) < 0)
        return -EINVAL;
    if (platform && !json_is_null(platform) && !json_is_object(platform)) {
        buf_setf(err, "runner: \"platform\" must be an object");
        return -EINVAL;
    }
    if (slots < 1 || heartbeat < 1) {
        buf_setf(err, "runner: \"slots\" and \"heartbeat\" must be positive");
        return -EINVAL;
    }
    if (!token_hash || !*token_hash) {
        buf_setf(err, "runner: no token");
        return -EINVAL;
    }
    return 0;
}

int store_runner_reregister(struct store *st, const char *token_hash, const char *name,
                            json_t *labels, json_t *platform, int slots, int heartbeat,
                            int64_t *id, struct buf *err)
{
    int r = runner_fields_check(name, labels, platform, slots, heartbeat, token_hash, err);
    if (r < 0)
        return r;
    char *labs = labels && !json_is_null(labels) ? dump(labels) : NULL;
    char *plat = platform && !json_is_null(platform) ? dump(platform) : NULL;
    lock(st);
    int64_t rid = 0;
    r = tx_begin(st, err);
    sqlite3_stmt *s = q(st, Q_RUNNER_REREGISTER);
    bind_runner(s, name, token_hash, labs, plat, slots, heartbeat);
    int rc = r == 0 ? sqlite3_step(s) : SQLITE_ERROR;
    if (rc == SQLITE_ROW)
        rid = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (r == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
        r = db_error(st, err, "register runner");
    else if (r == 0 && !rid)
        r = -ENOENT;
    if (r == 0) {
        /* A new process: the jobs the old one ran are not in its hands. */
        s = q(st, Q_RUNNER_JOBS_EXPIRE);
        sqlite3_bind_int64(s, 1, rid);
        if (exec_q(s) != 0)
            r = db_error(st, err, "register runner");
    }
    if (r == 0)
        r = tx_commit(st, err);
    if (r == 0)
        *id = rid;
    else
        tx_rollback(st);
    unlock(st);
    free(labs);
    free(plat);
    return r;
}

int store_runner_register(struct store *st, const char *name, json_t *labels, json_t *platform,
                          int slots, int heartbeat, const char *token_hash, int64_t *id,
                          struct buf *err)
{
    if (runner_fields_check(name, labels, platform, slots, heartbeat, token_hash, err) < 0)
        return -EINVAL;
    char *labs = labels && !json_is_null(labels) ? dump(labels) : NULL;
    char *plat = platform && !json_is_null(platform) ? dump(platform) : NULL;
    lock(st);
    int r = tx_begin(st, err);
    if (r < 0)
        goto out;
    sqlite3_stmt *s = q(st, Q_RUNNER_COUNT);
    sqlite3_bind_int64(s, 1, time_now_ms() - STORE_RUNNER_FORGET_MS);
    int64_t count = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (count >= YCI_MAX_RUNNERS) {
        buf_setf(err, "too many runners registered (at most %d)", YCI_MAX_RUNNERS);
        r = -ENOSPC;
        goto out;
    }
    s = q(st, Q_RUNNER_INSERT);
    bind_runner(s, name, token_hash, labs, plat, slots, heartbeat);
    int rc = exec_q(s);
    if (rc == SQLITE_CONSTRAINT_UNIQUE) {
        buf_setf(err, "runner: this token is in use already");
        r = -EEXIST;
        goto out;
    }
    if (rc != 0) {
        r = db_error(st, err, "register runner");
        goto out;
    }
    int64_t rid = sqlite3_last_insert_rowid(st->db);
    r = tx_commit(st, err);
    if (r == 0)
        *id = rid;
out:
    if (r < 0)
        tx_rollback(st);
    unlock(st);
    free(labs);
    free(plat);
    return r;
}

json_t *store_runner_by_token(struct store *st, const char *token_hash)
{
    if (!token_hash)
        return NULL;
    lock(st);
    sqlite3_stmt *s = q(st, Q_RUNNER_BY_TOKEN);
    bind_text(s, 1, token_hash);
    json_t *r = NULL;
    int64_t id = 0;
    if (sqlite3_step(s) == SQLITE_ROW) {
        r = runner_from_row(s, time_now_ms());
        id = sqlite3_column_int64(s, 0);
    }
    sqlite3_reset(s);
    if (r)
        json_object_set_new(r, "jobs", runner_jobs(st, id));
    unlock(st);
    return r;
}

json_t *store_runner_list(struct store *st, bool all)
{
    json_t *a = json_array();
    int64_t now = time_now_ms();
    lock(st);
    sqlite3_stmt *s = q(st, Q_RUNNER_LIST);
    sqlite3_bind_int(s, 1, all);
    sqlite3_bind_int64(s, 2, now - STORE_RUNNER_FORGET_MS);
    while (sqlite3_step(s) == SQLITE_ROW)
        json_array_append_new(a, runner_from_row(s, now));
    sqlite3_reset(s);
    size_t i;
    json_t *r;
    json_array_foreach(a, i, r) {
        json_object_set_new(r, "jobs",
                            runner_jobs(st, json_integer_value(json_object_get(r, "id"))));
    }
    unlock(st);
    return a;
}

int store_runner_heartbeat(struct store *st, int64_t runner_id, json_t *client_info, json_t *jobs,
                           int64_t lease_ms, json_t **cancel)
{
    char *info = client_info && !json_is_null(client_info) ? dump(client_info) : NULL;
    if (info && strlen(info) > YCI_MAX_CLIENT_INFO) {
        free(info);
        return -EINVAL;
    }
    json_t *out = json_array();
    lock(st);
    int64_t now = time_now_ms();
    int r = tx_begin(st, NULL);
    if (r < 0)
        goto out;
    sqlite3_stmt *s = q(st, Q_RUNNER_SEEN);
    sqlite3_bind_int64(s, 1, runner_id);
    sqlite3_bind_int64(s, 2, now);
    bind_text(s, 3, info);
    if (exec_q(s) != 0) {
        r = -EIO;
        goto out;
    }
    if (sqlite3_changes(st->db) == 0) {
        r = -ENOENT;
        goto out;
    }
    size_t i;
    json_t *j;
    json_array_foreach(jobs, i, j) {
        json_t *id = json_object_get(j, "id"), *attempt = json_object_get(j, "attempt");
        if (!json_is_integer(id))
            continue; /* nothing the runner could be told to kill */
        s = q(st, Q_LEASE_EXTEND);
        sqlite3_bind_int64(s, 1, json_integer_value(id));
        sqlite3_bind_int64(s, 2, json_is_integer(attempt) ? json_integer_value(attempt) : -1);
        sqlite3_bind_int64(s, 3, runner_id);
        sqlite3_bind_int64(s, 4, now + lease_ms);
        if (exec_q(s) != 0) {
            r = -EIO;
            goto out;
        }
        if (sqlite3_changes(st->db) == 0) {
            json_t *c = json_object();
            json_object_set(c, "id", id);
            json_object_set_new(c, "attempt",
                                json_is_integer(attempt) ? json_incref(attempt) : json_integer(0));
            json_array_append_new(out, c);
        }
    }
    r = tx_commit(st, NULL);
out:
    if (r < 0)
        tx_rollback(st);
    unlock(st);
    free(info);
    if (r == 0 && cancel)
        *cancel = out;
    else
        json_decref(out);
    return r;
}
