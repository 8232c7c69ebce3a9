#!/usr/bin/python3
"""The .yci.py plan driver: turns a repository's test generator into jobs.

A runner executes it for a build's *plan* job (src/runner/plan.h), in the
checkout of the repository:

    python3 -I DIR/yci_plan.py BUILD_ID PULL_JSON_PATH OUT_JSON_PATH MAX_JOBS

DIR holds this file and the yci package. The driver loads ./.yci.py, calls
test_generator(int(BUILD_ID), pull) with pull the JSON object read from
PULL_JSON_PATH, and turns each test it yields into a job (docs/pipelines.md):

    {"name": str, "commands": [command], "env": {str: str},
     "retry": {"count": int, "increment": int}}

(a Bash test's command runs through bash: "bash -c 'COMMAND'", unless it is
plain words, which any shell runs alike)

plus "timeout" and "labels" when the test sets them. It always writes
OUT_JSON_PATH, atomically, with exactly one of

    {"jobs": [job, ...]}
    {"error": "one line message"}

and exits 0 in both cases: non-zero means it could not write the file at all.
What the generator prints goes to stdout and stderr as usual (the plan job's
log); on every error the driver also prints the Python traceback to stderr.

The driver does not validate the jobs: the server checks them with the same
rules and limits as .yci.yml, and its messages name the job by position and
name. The driver only converts (env values that are ints or floats become
strings, names are made unique and short enough) and passes everything else
through unchanged, so that the server reports it.
"""

# Everything the driver needs from the standard library is imported before the
# checkout goes on sys.path, so that a repository's json.py or os.py cannot
# replace it.
import collections.abc
import importlib.machinery
import importlib.util
import json
import os
import re
import shlex
import sys
import tempfile
import traceback

FILE = '.yci.py'
MODULE = '_yci_dot_py'  # the name .yci.py is loaded under, in sys.modules
USAGE = 'usage: python3 -I DIR/yci_plan.py BUILD_ID PULL_JSON_PATH OUT_JSON_PATH MAX_JOBS'

MAX_NAME = 100  # bytes; PIPELINE_MAX_JOB_NAME in src/pipeline/pipeline.h
NAME_COMMAND = 60  # characters of the command's first line in a default name
MAX_MESSAGE = 1000  # characters of an error message
MAX_REPR = 60  # characters of a repr in an error message
MAX_WRAPS = 100  # IncrementalRetry in IncrementalRetry ... (a cycle otherwise)

NOT_A_TEST = ('not a test: yield yci.run.Bash(...), yci.retry.IncrementalRetry(...) '
              'or a dict with a CMD key')
DICT_KEYS = ('CMD', 'RETRIES', 'RETRY_AFTER')  # the dict keys that are not env

# python3 -I puts neither this directory nor the cwd on sys.path. This
# directory goes first, so that `import yci` is always ours (a repository
# cannot shadow it); the checkout next, so that .yci.py may import the
# repository's own modules, as when a script runs from there.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[0:0] = [HERE, os.getcwd()]
# The checkout must stay as it was checked out: no __pycache__ in it.
sys.dont_write_bytecode = True

from yci.retry import IncrementalRetry  # noqa: E402 (needs the sys.path above)
from yci.run import Bash  # noqa: E402


class PlanError(Exception):
    """The plan failed: message is what goes to out.json as the error."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


def one_line(text):
    """text on one line (line breaks become spaces), at most MAX_MESSAGE long."""
    text = ' '.join(str(text).splitlines())
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE - 3] + '...'
    return text


def safe_repr(obj):
    """repr(obj), even when the object's __repr__ raises."""
    try:
        return repr(obj)
    except Exception:
        return object.__repr__(obj)


def short_repr(obj):
    text = safe_repr(obj)
    return text[:MAX_REPR] + '...' if len(text) > MAX_REPR else text


def describe(exc):
    """'TYPE: MSG', or 'TYPE' when the exception has no message."""
    try:
        msg = str(exc)
    except Exception:
        msg = ''
    name = type(exc).__name__
    return '%s: %s' % (name, msg) if msg else name


def where(exc):
    """':LINE' of the last traceback frame in .yci.py, '' when there is none."""
    line = ''
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == FILE and frame.lineno is not None:
            line = ':%d' % frame.lineno
    return line


def stderr():
    # What .yci.py did to sys.stderr does not keep tracebacks out of the log.
    return sys.__stderr__ or sys.stderr


def failed(exc, message):
    """Print exc's traceback, return the PlanError to raise with message."""
    try:
        sys.stdout.flush()
    except Exception:
        pass
    try:
        traceback.print_exception(exc, file=stderr())
    except Exception:
        pass
    return PlanError(message)


# Loading .yci.py and running the generator.

def load():
    """Execute ./.yci.py as a module and return it."""
    if not os.path.exists(FILE):
        raise PlanError('%s: no such file' % FILE)
    # The loader's relative path makes tracebacks and SyntaxErrors say
    # ".yci.py" (spec_from_file_location makes its own path absolute, which
    # becomes __file__).
    loader = importlib.machinery.SourceFileLoader(MODULE, FILE)
    spec = importlib.util.spec_from_file_location(MODULE, FILE, loader=loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = module  # what dataclasses and pickle look up
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        if e.filename != FILE:
            # In a module that .yci.py imports: str(e) names its file and line.
            raise failed(e, '%s%s: %s' % (FILE, where(e), describe(e)))
        at = ''.join(':%d' % n for n in (e.lineno, e.offset) if n is not None)
        raise failed(e, '%s%s: %s: %s' % (FILE, at, type(e).__name__, e.msg))
    except BaseException as e:
        raise failed(e, '%s%s: %s' % (FILE, where(e), describe(e)))
    return module


def raised(exc):
    return failed(exc, '%s%s: test_generator raised %s' % (FILE, where(exc), describe(exc)))


def iterate(module, build_id, pull, max_jobs):
    """Yield (n, test) for what test_generator yields, n counting from 1."""
    generator = getattr(module, 'test_generator', None)
    if not callable(generator):
        raise PlanError('%s: no test_generator(build_id, pull) function' % FILE)
    try:
        tests = generator(build_id, pull)
    except BaseException as e:
        raise raised(e)
    must = '%s: test_generator must yield tests, it returned' % FILE
    if tests is None:
        raise PlanError('%s None' % must)
    if isinstance(tests, (Bash, IncrementalRetry, collections.abc.Mapping)):
        raise PlanError('%s a single test, %s: yield each test (or return a list of them)'
                        % (must, short_repr(tests)))
    try:
        it = iter(tests)
    except TypeError as e:
        if where(e):  # an __iter__ of .yci.py's that raised
            raise raised(e)
        raise PlanError('%s a value of type %r' % (must, type(tests).__name__))
    except BaseException as e:
        raise raised(e)
    n = 0
    while True:
        try:
            test = next(it)
        except StopIteration:
            return
        except BaseException as e:
            raise raised(e)
        n += 1
        # Never more than max_jobs + 1 items: the generator may be endless.
        if n > max_jobs:
            raise PlanError('%s: test_generator yielded more than %d tests, the most a build '
                            'may have' % (FILE, max_jobs))
        yield n, test


# Tests to jobs.

def env_value(value):
    """An env value as the job has it: ints and floats as strings."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    return value  # the server reports it


def convert_env(env):
    if isinstance(env, collections.abc.Mapping):
        return {k: env_value(v) for k, v in env.items()}
    return env  # not a dict: the server reports it


def no_controls(text):
    """text with control characters as spaces (the server refuses them in names)."""
    return ''.join(' ' if ord(c) < 0x20 or ord(c) == 0x7f else c for c in text)


def default_name(command, env):
    """'FIRST LINE (VALUE, ...)', as .yci.yml names matrix cells."""
    text = command if isinstance(command, str) else safe_repr(command)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    name = lines[0] if lines else ''
    if len(name) > NAME_COMMAND:
        name = name[:NAME_COMMAND] + '...'
    if isinstance(env, collections.abc.Mapping) and env:
        values = (v if isinstance(v, str) else safe_repr(v) for v in env.values())
        name += ' (%s)' % ', '.join(values)
    return no_controls(name)


def fit(name, limit):
    """name cut to at most limit bytes of UTF-8, '...' ending a cut one."""
    data = name.encode('utf-8', 'surrogatepass')
    if len(data) <= limit:
        return name
    return data[:limit - 3].decode('utf-8', 'ignore') + '...'


class Names:
    """Gives each job a name no job before it has: 'NAME', 'NAME #2', ..."""

    def __init__(self):
        self.used = set()
        self.last = {}  # name -> the last suffix number tried for it

    def unique(self, base):
        name = fit(base, MAX_NAME)
        k = self.last.get(base, 1)
        while name in self.used:
            k += 1
            suffix = ' #%d' % k
            name = fit(base, MAX_NAME - len(suffix)) + suffix
        self.last[base] = k
        self.used.add(name)
        return name


def not_a_test(n, test):
    return PlanError('%s: test %d is %s (%s), %s'
                     % (FILE, n, short_repr(test), type(test).__name__, NOT_A_TEST))


# A command of these characters alone runs the same in any shell (the runner
# starts it without one: src/os/spawn.c, spawn_command()).
PLAIN = re.compile(r'[A-Za-z0-9 _\-./,:+@%=]+\Z')


def bash_command(command):
    """Bash's command as a job command (run by /bin/sh): through bash, as
    its name says, unless bash would change nothing."""
    if not isinstance(command, str) or PLAIN.match(command):
        return command
    return 'bash -c ' + shlex.quote(command)


def to_job(n, item, names):
    """The job for test number n, item as the generator yielded it."""
    test, retry = item, None
    for _ in range(MAX_WRAPS + 1):
        if not isinstance(test, IncrementalRetry):
            break
        if retry is None:  # the outermost one decides
            retry = {'count': test.retries, 'increment': test.retry_increment}
        test = test.test
    else:
        raise PlanError('%s: test %d: IncrementalRetry wraps IncrementalRetry more than %d '
                        'times' % (FILE, n, MAX_WRAPS))
    extra = {}
    if isinstance(test, Bash):
        command, env, name = test.command, convert_env(test.env), test.name
        own_retry = {'count': 0, 'increment': 0}
        if test.timeout is not None:
            extra['timeout'] = test.timeout
        if test.labels is not None:
            extra['labels'] = test.labels
    elif isinstance(test, collections.abc.Mapping):
        if 'CMD' not in test:
            raise PlanError('%s: test %d is a dict without a CMD key' % (FILE, n))
        command, name = test['CMD'], None
        env = convert_env({k: v for k, v in test.items() if k not in DICT_KEYS})
        own_retry = {'count': test.get('RETRIES', 0), 'increment': test.get('RETRY_AFTER', 0)}
    else:
        raise not_a_test(n, test)
    if name is None:
        name = default_name(command, env)
    if isinstance(name, str):
        name = names.unique(name)
    if isinstance(test, Bash):
        command = bash_command(command)
    job = {'name': name, 'commands': [command], 'env': env, 'retry': retry or own_retry}
    job.update(extra)
    return job


def reject_duplicates(pairs):
    keys = set()
    for k, _ in pairs:
        if k in keys:
            raise ValueError('the key %r appears twice' % k)
        keys.add(k)
    return dict(pairs)


def check_json(n, job):
    """Raise unless job is JSON the server can read (it refuses duplicate keys)."""
    try:
        text = json.dumps(job, ensure_ascii=False, allow_nan=False)
        text.encode('utf-8')
        json.loads(text, object_pairs_hook=reject_duplicates)
    except (TypeError, ValueError, RecursionError) as e:
        raise failed(e, '%s: test %d %s cannot be written as JSON: %s'
                     % (FILE, n, short_repr(job.get('name')), describe(e)))


def plan(args):
    """The jobs of ./.yci.py (a list), or PlanError."""
    try:
        build_id, max_jobs = int(args[0]), int(args[3])
    except ValueError as e:
        raise failed(e, 'yci_plan.py: BUILD_ID and MAX_JOBS must be integers')
    try:
        with open(args[1], encoding='utf-8') as f:
            pull = json.load(f)
    except (OSError, ValueError) as e:
        raise failed(e, 'yci_plan.py: cannot read the pull request from %s: %s'
                     % (args[1], describe(e)))
    module = load()
    jobs, names = [], Names()
    for n, test in iterate(module, build_id, pull, max_jobs):
        try:
            job = to_job(n, test, names)
        except PlanError:
            raise
        except BaseException as e:  # a Mapping of .yci.py's whose methods raise
            raise failed(e, '%s%s: test %d: %s' % (FILE, where(e), n, describe(e)))
        check_json(n, job)
        jobs.append(job)
    return jobs


def write_atomic(path, result):
    """Write result as JSON to path through a temporary file and a rename."""
    text = json.dumps(result, ensure_ascii=False, allow_nan=False) + '\n'
    data = text.encode('utf-8', 'replace')  # only an error message can need it
    fd, tmp = tempfile.mkstemp(prefix='.out.', suffix='.tmp', dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def main(argv):
    if len(argv) != 5:
        print(USAGE, file=sys.stderr)
        return 2
    # Absolute now: the generator may chdir.
    out = os.path.abspath(argv[3])
    try:
        sys.stdout.reconfigure(line_buffering=True)  # its lines in order in the log
    except Exception:
        pass
    try:
        result = {'jobs': plan(argv[1:])}
    except PlanError as e:
        result = {'error': one_line(e.message)}
    except BaseException as e:  # a bug of the driver's
        result = {'error': one_line(failed(e, 'yci_plan.py: %s' % describe(e)).message)}
    if 'error' in result:
        try:
            print(result['error'], file=stderr())
        except Exception:
            pass
    try:
        write_atomic(out, result)
    except BaseException as e:
        failed(e, '')
        print('yci_plan.py: cannot write %s: %s' % (out, describe(e)), file=stderr())
        return 1
    return 0


if __name__ == '__main__':
    status = main(sys.argv)
    # Exit now, whatever .yci.py left behind: threads that never end,
    # generators whose finally blocks hang, atexit handlers.
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(status)
