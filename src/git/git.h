/*
 * git — the git program, as the server uses it: bare mirrors, refs, blobs at
 * a commit, and the upload-pack side of smart HTTP.
 *
 * git is always spawned with an argv, never through a shell, with an
 * environment that makes it predictable whatever the machine's set-up:
 * GIT_TERMINAL_PROMPT=0 and no askpass (never ask for a password: fail),
 * GIT_CONFIG_NOSYSTEM=1 and GIT_CONFIG_GLOBAL=/dev/null (no system or user
 * configuration), literal pathspecs, the C locale, hooks disabled and the
 * ext:: transport refused. Only a few variables pass through from the
 * server's environment (PATH, HOME and SSH_AUTH_SOCK for ssh keys, proxies,
 * CA bundles). Nothing read from a repository is ever executed: the server
 * only reads data from mirrors.
 *
 * Errors: functions return 0 (or a documented positive value) on success and a
 * negative errno value on failure, with git's own message (its output, on one
 * line, at most about 1000 characters) in err. -ENOENT means "no such thing" where that is a
 * normal answer (a path absent at a commit, a branch that does not exist).
 *
 * All functions are thread-safe; git's own locking makes a fetch into a mirror
 * safe beside concurrent reads of it.
 */
#ifndef YCI_GIT_GIT_H
#define YCI_GIT_GIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "lib/buf.h"

/* The refspec a mirror fetches by default: every branch, force-updated. */
#define GIT_REFSPEC_HEADS "+refs/heads/*:refs/heads/*"
/* GitHub's pull request heads. */
#define GIT_REFSPEC_PULLS "+refs/pull/*/head:refs/pull/*/head"

/* Seconds a fetch may take before it is killed (a hung remote must not stall
 * the observer forever). */
#define GIT_FETCH_TIMEOUT 600

/* Create a bare repository at mirror unless one is there already. */
int git_mirror_init(const char *mirror, struct buf *err);

/*
 * Fetch url into the bare repository mirror with --prune: the refs matched by
 * the refspecs (e.g. GIT_REFSPEC_HEADS, later also "+refs/pull/{star}/head:...")
 * become exactly the remote's. url is anything git can fetch: a local path,
 * file://, http(s)://, ssh, git://. http_header (may be NULL), e.g.
 * "Authorization: Basic ...", is sent with http(s) requests only; it goes to
 * git through its environment (GIT_CONFIG_COUNT), never its command line.
 */
int git_mirror_fetch(const char *mirror, const char *url, const char *const *refspecs,
                     size_t nrefspecs, const char *http_header, struct buf *err);

/* What git's fetch would do after fetching (`git maintenance run --auto`:
 * pack loose objects, gc when due), which git_mirror_fetch() leaves to the
 * caller so that it can first act on what was fetched. Cheap when nothing
 * is due. */
int git_mirror_maintain(const char *mirror, struct buf *err);

/* The refs under prefix (e.g. "refs/heads/") as a new JSON object
 * {"refs/heads/main": "<sha>", ...}. */
int git_list_refs(const char *mirror, const char *prefix, json_t **out, struct buf *err);

/*
 * Point the mirror's HEAD at a branch that exists, so that `git clone` of the
 * mirror checks something out: keep it if its branch is among heads (the
 * object git_list_refs() returned for "refs/heads/"), else use main, master,
 * or the first branch by name. Nothing to do when heads is empty.
 */
int git_mirror_fix_head(const char *mirror, json_t *heads, struct buf *err);

/*
 * A reader of one repository's objects: one `git cat-file --batch-command`
 * that answers every question asked through it (what is at a path, a blob,
 * a commit's author), where each used to start a git process of its own.
 * git starts at the first question, so opening a reader costs nothing.
 * Owned by one thread. When git fails or gives no answer for
 * GIT_LOCAL_TIMEOUT seconds, the call fails with -EIO (err has git's own
 * message when it printed one) and so does every later call on the reader.
 * Objects fetched into the repository after git started are found too.
 */
struct git_reader;
int git_reader_open(const char *mirror, struct git_reader **out, struct buf *err);
/* Ends git (the end of its input) and frees r; NULL is fine. */
void git_reader_close(struct git_reader *r);

/* What path is at commit. */
enum git_path_type { GIT_PATH_NONE = 0, GIT_PATH_BLOB = 1, GIT_PATH_TREE = 2 };
/* Returns a git_path_type (>= 0) or a negative errno (e.g. the commit is missing). */
int git_path_type(struct git_reader *r, const char *commit, const char *path, struct buf *err);

/* The commit's author name and subject line, as `git show` prints %an and %s
 * (converted to UTF-8 from the commit's encoding): newly allocated, valid
 * UTF-8 (bad bytes become '?'), cut at 200 and 500 bytes. -ENOENT when there
 * is no such commit. */
int git_commit_info(struct git_reader *r, const char *commit, char **author, char **subject,
                    struct buf *err);

/* Append the blob at commit:path to out. -ENOENT when there is no such blob,
 * -EFBIG when it is larger than max bytes (out is then unchanged). */
int git_read_blob(struct git_reader *r, const char *commit, const char *path, size_t max,
                  struct buf *out, struct buf *err);

/*
 * Smart HTTP. git_upload_pack_advertise() appends to out the whole reply to
 * GET info/refs?service=git-upload-pack: the "# service=git-upload-pack"
 * pkt-line, a flush, and upload-pack's ref advertisement.
 */
int git_upload_pack_advertise(const char *mirror, struct buf *out, struct buf *err);

/*
 * Start `git upload-pack --stateless-rpc <mirror>` reading its request from
 * in_fd (any readable descriptor, e.g. a memfd holding the client's body;
 * borrowed, the child gets its own copy) and return in *out_fd the read end of
 * its stdout (O_CLOEXEC, owned by the caller). The child is reaped in the
 * background once it exits; closing *out_fd early makes it die of SIGPIPE.
 * Any commit may be wanted (uploadpack.allowAnySHA1InWant), so runners fetch
 * exact commits by id.
 */
int git_upload_pack_start(const char *mirror, int in_fd, int *out_fd, struct buf *err);

#endif
