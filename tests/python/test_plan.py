"""The .yci.py plan driver (python/yci_plan.py), run as a runner runs it.

Every test writes a .yci.py in a fresh checkout, runs the driver as a real
subprocess (conftest.py) and asserts the exact out.json: the jobs the server
will validate, or the one-line error the build will show.
"""

import shlex
import textwrap

import pytest

SEED_RETRY = {"count": 3, "increment": 600}


def job(name, env, command="./test.sh", retry=None, **extra):
    j = {"name": name, "commands": [command], "env": env,
         "retry": retry or {"count": 0, "increment": 0}}
    j.update(extra)
    return j


SEED_JOBS = [
    job("./test.sh (foo, x)", {"ENV_VAR_1": "foo", "ENV_VAR_2": "x"}, retry=SEED_RETRY),
    job("./test.sh (foo, y)", {"ENV_VAR_1": "foo", "ENV_VAR_2": "y"}, retry=SEED_RETRY),
    job("./test.sh (bar, x)", {"ENV_VAR_1": "bar", "ENV_VAR_2": "x"}, retry=SEED_RETRY),
    job("./test.sh (bar, y)", {"ENV_VAR_1": "bar", "ENV_VAR_2": "y"}, retry=SEED_RETRY),
]

# The seed's example as docs/pipelines.md gives it: Bash(...) before the keywords.
SEED_FIXED = """\
    from yci.retry import IncrementalRetry
    from yci.run import Bash

    def test_generator(build_id, pull):
        ENV_VAR_1 = ['foo', 'bar']
        ENV_VAR_2 = ['x', 'y']

        for x in ENV_VAR_1:
            for y in ENV_VAR_2:
                yield IncrementalRetry(Bash('./test.sh', env={'ENV_VAR_1': x, 'ENV_VAR_2': y}),
                                       retries=3, retry_increment=600)
"""

# The seed's example as printed (a positional argument after keywords).
SEED_PRINTED = """\
    from yci.retry import IncrementalRetry
    from yci.run import Bash

    def test_generator(build_id, pull):
        ENV_VAR_1 = ['foo', 'bar']
        ENV_VAR_2 = ['x', 'y']

        for x in ENV_VAR_1:
            for y in ENV_VAR_2:
                # there i can skip or implement basic logic
                # I could even iterate over a set of files

                yield IncrementalRetry(retries=3, retry_increment=600,
                    Bash('./test.sh', env={'ENV_VAR_1': x, 'ENV_VAR_2': y}))
"""

NOT_A_TEST = ("not a test: yield yci.run.Bash(...), yci.retry.IncrementalRetry(...) or a dict "
              "with a CMD key")


def error(plan):
    assert "jobs" not in plan.out, plan.text
    return plan.out["error"]


# The seed's example.

def test_seed_example(driver):
    plan = driver.run(SEED_FIXED)
    assert plan.out == {"jobs": SEED_JOBS}


def test_bash_runs_bash(driver):
    # Bash's command goes through bash unless it is plain words; a dict's CMD
    # is the job's command as it is (seed 000's dicts name no shell).
    plan = driver.run("""\
        from yci.run import Bash

        def test_generator(build_id, pull):
            yield Bash('./test.sh --fast')
            yield Bash('[[ $X == y* ]] && echo "it\\'s y"', env={'X': 'yes'})
            yield {'CMD': 'echo $X', 'X': 1}
    """)
    assert plan.out == {"jobs": [
        job("./test.sh --fast", {}, "./test.sh --fast"),
        job("[[ $X == y* ]] && echo \"it's y\" (yes)", {"X": "yes"},
            "bash -c '[[ $X == y* ]] && echo \"it'\"'\"'s y\"'"),
        job("echo $X (1)", {"X": "1"}, "echo $X")]}


def test_plain_dicts_give_the_same_jobs(driver):
    dicts = driver.run("""\
        def test_generator(build_id, pull):
            for x in ['foo', 'bar']:
                for y in ['x', 'y']:
                    yield {'CMD': './test.sh', 'RETRIES': 3, 'RETRY_AFTER': 600,
                           'ENV_VAR_1': x, 'ENV_VAR_2': y}
    """)
    assert dicts.out == {"jobs": SEED_JOBS}
    assert dicts.text == driver.run(SEED_FIXED).text


def test_incremental_retry_wraps_a_dict(driver):
    plan = driver.run("""\
        from yci.retry import IncrementalRetry

        def test_generator(build_id, pull):
            yield IncrementalRetry({'CMD': 'make', 'RETRIES': 1, 'RETRY_AFTER': 5}, retries=2,
                                   retry_increment=30)
            yield {'CMD': 'make check', 'RETRIES': 4}
    """)
    assert plan.out == {"jobs": [job("make", {}, "make", {"count": 2, "increment": 30}),
                                 job("make check", {}, "make check", {"count": 4, "increment": 0})]}


def test_seed_example_as_printed_is_a_syntax_error(driver):
    # The column is the interpreter's (3.11 points at the end of the Bash call).
    with pytest.raises(SyntaxError) as e:
        compile(textwrap.dedent(SEED_PRINTED), ".yci.py", "exec")
    assert e.value.lineno == 14
    column = e.value.offset
    plan = driver.run(SEED_PRINTED)
    assert plan.out == {"error": ".yci.py:14:%d: SyntaxError: positional argument follows "
                                 "keyword argument" % column}
    assert 'File ".yci.py", line 14' in plan.stderr


def test_indentation_error(driver):
    plan = driver.run("""\
        def test_generator(build_id, pull):
        yield {'CMD': 'make'}
    """)
    assert plan.out == {"error": ".yci.py:2:1: IndentationError: expected an indented block after "
                                 "function definition on line 1"}


# Errors while loading .yci.py.

def test_no_yci_py(driver):
    assert driver.run(None).out == {"error": ".yci.py: no such file"}


def test_import_error(driver):
    plan = driver.run("""\
        from yci.run import Bash

        import nope

        def test_generator(build_id, pull):
            yield Bash('make')
    """)
    assert plan.out == {"error": ".yci.py:3: ModuleNotFoundError: No module named 'nope'"}
    assert "Traceback (most recent call last)" in plan.stderr
    assert "No module named 'nope'" in plan.stderr


def test_exception_at_top_level_in_an_imported_module(driver):
    plan = driver.run("""\
        import helpers
    """, files={"helpers.py": """\
        x = 1
        raise RuntimeError('helpers is broken\\nreally')
    """})
    # The line is .yci.py's (the import); the message is on one line.
    assert plan.out == {"error": ".yci.py:1: RuntimeError: helpers is broken really"}


def test_syntax_error_in_an_imported_module(driver):
    plan = driver.run("""\
        from yci.run import Bash
        import helpers
    """, files={"helpers.py": "def f(:\n"})
    e = error(plan)
    assert e.startswith(".yci.py:2: SyntaxError: invalid syntax (")
    assert "helpers.py, line 1)" in e


def test_system_exit_at_top_level(driver):
    assert driver.run("import sys\nsys.exit(3)\n").out == {"error": ".yci.py:2: SystemExit: 3"}


def test_no_test_generator(driver):
    expected = {"error": ".yci.py: no test_generator(build_id, pull) function"}
    assert driver.run("x = 1\n").out == expected
    assert driver.run("test_generator = 42\n").out == expected


# Errors while running the generator.

def test_generator_raises(driver):
    plan = driver.run("""\
        from yci.run import Bash

        def test_generator(build_id, pull):
            yield Bash('make')
            raise ValueError('no tests for pull %d' % pull['number'])
    """)
    assert plan.out == {"error": ".yci.py:5: test_generator raised ValueError: no tests for pull 1"}
    assert "ValueError: no tests for pull 1" in plan.stderr


def test_generator_raises_in_a_repository_module(driver):
    plan = driver.run("""\
        import helpers

        def test_generator(build_id, pull):
            return helpers.tests()
    """, files={"helpers.py": """\
        def tests():
            return {}['missing']
    """})
    # The line is the last one in .yci.py; KeyError's message is its repr.
    assert plan.out == {"error": ".yci.py:4: test_generator raised KeyError: 'missing'"}


def test_a_plain_function_that_raises(driver):
    plan = driver.run("""\
        def test_generator(build_id, pull):
            raise RuntimeError
    """)
    assert plan.out == {"error": ".yci.py:2: test_generator raised RuntimeError"}


def test_wrong_signature(driver):
    plan = driver.run("""\
        def test_generator():
            yield {'CMD': 'make'}
    """)
    assert plan.out == {"error": ".yci.py: test_generator raised TypeError: test_generator() "
                                 "takes 0 positional arguments but 2 were given"}


def test_system_exit_and_keyboard_interrupt_are_errors(driver):
    plan = driver.run("""\
        import sys

        def test_generator(build_id, pull):
            yield {'CMD': 'make'}
            sys.exit('stop')
    """)
    assert plan.out == {"error": ".yci.py:5: test_generator raised SystemExit: stop"}
    plan = driver.run("""\
        def test_generator(build_id, pull):
            raise KeyboardInterrupt
            yield
    """)
    assert plan.out == {"error": ".yci.py:2: test_generator raised KeyboardInterrupt"}


def test_returns_none(driver):
    plan = driver.run("""\
        from yci.run import Bash

        def test_generator(build_id, pull):
            tests = [Bash('make')]
    """)
    assert plan.out == {"error": ".yci.py: test_generator must yield tests, it returned None"}


def test_returns_something_not_iterable(driver):
    plan = driver.run("""\
        def test_generator(build_id, pull):
            return 42
    """)
    assert plan.out == {"error": ".yci.py: test_generator must yield tests, it returned a value "
                                 "of type 'int'"}


def test_returns_a_single_test(driver):
    plan = driver.run("""\
        def test_generator(build_id, pull):
            return {'CMD': 'make'}
    """)
    assert plan.out == {"error": ".yci.py: test_generator must yield tests, it returned a single "
                                 "test, {'CMD': 'make'}: yield each test (or return a list of "
                                 "them)"}


def test_returning_a_list_works(driver):
    plan = driver.run("""\
        from yci.run import Bash

        def test_generator(build_id, pull):
            return [Bash('make'), {'CMD': 'make check'}]
    """)
    assert plan.out == {"jobs": [job("make", {}, "make"), job("make check", {}, "make check")]}


def test_nothing_yielded(driver):
    assert driver.run("""\
        def test_generator(build_id, pull):
            return
            yield
    """).out == {"jobs": []}
    assert driver.run("""\
        def test_generator(build_id, pull):
            return []
    """).out == {"jobs": []}


def test_yields_something_that_is_not_a_test(driver):
    plan = driver.run("""\
        from yci.run import Bash

        def test_generator(build_id, pull):
            yield Bash('make')
            yield {'CMD': 'make check'}
            yield 42
    """)
    assert plan.out == {"error": ".yci.py: test 3 is 42 (int), " + NOT_A_TEST}


def test_long_repr_is_cut(driver):
    plan = driver.run("""\
        def test_generator(build_id, pull):
            yield 'x' * 200
    """)
    assert plan.out == {"error": ".yci.py: test 1 is '%s... (str), %s" % ("x" * 59, NOT_A_TEST)}


def test_incremental_retry_of_something_not_a_test(driver):
    plan = driver.run("""\
        from yci.retry import IncrementalRetry

        def test_generator(build_id, pull):
            yield IncrementalRetry('./test.sh', retries=2)
    """)
    assert plan.out == {"error": ".yci.py: test 1 is './test.sh' (str), " + NOT_A_TEST}


def test_dict_without_cmd(driver):
    plan = driver.run("""\
        from yci.retry import IncrementalRetry

        def test_generator(build_id, pull):
            yield {'CMD': 'a'}
            yield {'CMD': 'b'}
            yield {'cmd': './test.sh', 'RETRIES': 2}
    """)
    assert plan.out == {"error": ".yci.py: test 3 is a dict without a CMD key"}
    plan = driver.run("""\
        from yci.retry import IncrementalRetry

        def test_generator(build_id, pull):
            yield IncrementalRetry({'COMMAND': 'make'}, retries=1)
    """)
    assert plan.out == {"error": ".yci.py: test 1 is a dict without a CMD key"}


def test_more_than_max_jobs_from_an_endless_generator(driver):
    source = """\
        import itertools
        from yci.run import Bash

        def test_generator(build_id, pull):
            for i in itertools.count():
                print('yielding', i)
                yield Bash('make', env={'N': i})
    """
    plan = driver.run(source, max_jobs=5)
    assert plan.out == {"error": ".yci.py: test_generator yielded more than 5 tests, the most a "
                                 "build may have"}
    # It asked for one test more than the limit, and no further.
    assert plan.stdout.split("\n")[-2] == "yielding 5"


def test_max_jobs_tests_are_fine(driver):
    plan = driver.run("""\
        def test_generator(build_id, pull):
            for i in range(3):
                yield {'CMD': 'make', 'N': i}
    """, max_jobs=3)
    assert plan.out == {"jobs": [job("make (%d)" % i, {"N": str(i)}, "make") for i in range(3)]}


# The driver's environment.

def test_build_id_and_pull_are_passed(driver):
    plan = driver.run("""\
        from yci.run import Bash

        def test_generator(build_id, pull):
            assert isinstance(build_id, int)
            yield Bash('make', name='build %d of %s #%d' % (build_id, pull['head']['ref'],
                                                            pull['number']))
    """, build_id=1234, pull={"number": 42, "head": {"ref": "feature"}})
    assert plan.out == {"jobs": [job("build 1234 of feature #42", {}, "make")]}


def test_a_repository_yci_module_does_not_shadow_the_package(driver):
    plan = driver.run("""\
        from yci.run import Bash
        import helpers

        def test_generator(build_id, pull):
            yield Bash(helpers.COMMAND)
    """, files={
        "yci.py": "raise ImportError('the repository yci.py was imported')\n",
        "helpers.py": "COMMAND = './run-tests'\n",
    })
    assert plan.out == {"jobs": [job("./run-tests", {}, "./run-tests")]}


def test_file_is_the_checkout_yci_py(driver):
    plan = driver.run("""\
        import os

        HERE = os.path.dirname(__file__)

        def test_generator(build_id, pull):
            for name in sorted(os.listdir(os.path.join(HERE, 'suites'))):
                yield {'CMD': './run ' + name}
    """, files={"suites/a": "", "suites/b": ""})
    assert plan.out == {"jobs": [job("./run a", {}, "./run a"), job("./run b", {}, "./run b")]}


def test_output_goes_to_stdout_and_stderr(driver):
    plan = driver.run("""\
        import sys

        print('planning')

        def test_generator(build_id, pull):
            print('to stderr', file=sys.stderr)
            yield {'CMD': 'make'}
    """)
    assert plan.out == {"jobs": [job("make", {}, "make")]}
    assert plan.stdout == "planning\n"
    assert plan.stderr == "to stderr\n"


def test_relative_out_path_and_chdir(driver):
    plan = driver.run("""\
        import os

        def test_generator(build_id, pull):
            os.chdir('/')
            yield {'CMD': 'make'}
    """, out_name="out.json")
    assert plan.out == {"jobs": [job("make", {}, "make")]}


# Names.

def test_duplicate_names_get_a_number(driver):
    plan = driver.run("""\
        from yci.run import Bash

        def test_generator(build_id, pull):
            yield Bash('make')
            yield Bash('make')
            yield Bash('make', name='make #2')
            yield Bash('make')
            yield Bash('other', name='make')
    """)
    names = [j["name"] for j in plan.out["jobs"]]
    assert names == ["make", "make #2", "make #2 #2", "make #3", "make #4"]


def test_long_names_are_cut_to_100(driver):
    plan = driver.run("""\
        from yci.run import Bash

        def test_generator(build_id, pull):
            yield Bash('./' + 'a' * 100 + ' --flag\\nsecond line')
            yield Bash('make', env={'A': 'v' * 120})
            yield Bash('make', env={'A': 'v' * 120})
            yield Bash('make', name='n' * 150)
            yield Bash('make', name='é' * 60)
    """)
    names = [j["name"] for j in plan.out["jobs"]]
    assert names == [
        "./" + "a" * 58 + "...",  # the command's first line: 60 characters
        "make (" + "v" * 91 + "...",
        "make (" + "v" * 88 + "... #2",  # the base is cut, never the suffix
        "n" * 97 + "...",
        "é" * 48 + "...",  # 100 bytes of UTF-8 (what the server counts)
    ]
    assert all(len(n.encode()) <= 100 for n in names)


def test_default_name_uses_the_first_line_and_env_values_in_order(driver):
    plan = driver.run("""\
        from yci.run import Bash

        def test_generator(build_id, pull):
            yield Bash('\\n  set -e\\n  make check\\n', env={'B': 'x', 'A': 'y\\tz'})
            yield {'CMD': 'make', 'Z': 1, 'A': 2}
    """)
    assert plan.out == {"jobs": [
        job("set -e (x, y z)", {"B": "x", "A": "y\tz"},
            "bash -c " + shlex.quote("\n  set -e\n  make check\n")),
        job("make (1, 2)", {"Z": "1", "A": "2"}, "make"),
    ]}


def test_name_timeout_and_labels_pass_through(driver):
    plan = driver.run("""\
        from yci.retry import IncrementalRetry
        from yci.run import Bash

        def test_generator(build_id, pull):
            yield Bash('make', name='lint', timeout=300, labels={'os': 'linux'})
            yield IncrementalRetry(Bash('make check', {'CC': 'clang'}, timeout='10m'), retries=1,
                                   retry_increment='1m')
            yield Bash('make', timeout=0, labels={})
    """)
    assert plan.out == {"jobs": [
        job("lint", {}, "make", timeout=300, labels={"os": "linux"}),
        job("make check (clang)", {"CC": "clang"}, "make check", {"count": 1, "increment": "1m"},
            timeout="10m"),
        job("make", {}, "make", timeout=0, labels={}),
    ]}


def test_env_values_ints_and_floats_become_strings(driver):
    plan = driver.run("""\
        from yci.run import Bash

        def test_generator(build_id, pull):
            yield Bash('make', env={'JOBS': 4, 'RATIO': 0.5, 'S': 's'})
            yield Bash('make', env={'BAD': None, 'LIST': [1]})
            yield {'CMD': 'make', 'RETRIES': 1, 'N': 3}
    """)
    assert plan.out == {"jobs": [
        job("make (4, 0.5, s)", {"JOBS": "4", "RATIO": "0.5", "S": "s"}, "make"),
        # Anything else is passed on for the server's validator to report.
        job("make (None, [1])", {"BAD": None, "LIST": [1]}, "make"),
        job("make (3)", {"N": "3"}, "make", {"count": 1, "increment": 0}),
    ]}


def test_a_test_that_cannot_be_json(driver):
    plan = driver.run("""\
        from yci.run import Bash

        def test_generator(build_id, pull):
            yield Bash('make', name='odd', timeout=object())
    """)
    assert plan.out == {"error": ".yci.py: test 1 'odd' cannot be written as JSON: TypeError: "
                                 "Object of type object is not JSON serializable"}


def test_messages_are_one_line_and_at_most_1000_characters(driver):
    plan = driver.run("""\
        def test_generator(build_id, pull):
            raise ValueError('line\\n' * 400)
    """)
    e = error(plan)
    assert e.startswith(".yci.py:2: test_generator raised ValueError: line line line")
    assert len(e) == 1000 and e.endswith("...")


def test_the_package_api(driver):
    plan = driver.run("""\
        import yci
        from yci.retry import IncrementalRetry
        from yci.run import Bash

        def test_generator(build_id, pull):
            b = Bash('make', env={'A': '1'}, name='n', timeout=5, labels={'os': 'linux'})
            r = yci.IncrementalRetry(b, retries=2, retry_increment=10)
            assert (b.command, b.env, b.name, b.timeout, b.labels) == (
                'make', {'A': '1'}, 'n', 5, {'os': 'linux'})
            assert (r.test, r.retries, r.retry_increment) == (b, 2, 10)
            assert yci.Bash is Bash and yci.IncrementalRetry is IncrementalRetry
            assert Bash('x').env == {}
            yield Bash(repr(r), name='repr')
    """)
    assert plan.out["jobs"][0]["commands"] == ["bash -c " + shlex.quote(
        "IncrementalRetry(Bash('make', env={'A': '1'}, name='n', timeout=5, "
        "labels={'os': 'linux'}), retries=2, retry_increment=10)")]
