"""yci: the names a repository's .yci.py uses to describe its tests.

A .yci.py defines test_generator(build_id, pull), a generator that yields one
test per job the build should run::

    from yci.retry import IncrementalRetry
    from yci.run import Bash

    def test_generator(build_id, pull):
        for x in ['foo', 'bar']:
            yield IncrementalRetry(Bash('./test.sh', env={'ENV': x}),
                                   retries=3, retry_increment=600)

A test is a yci.run.Bash, a yci.retry.IncrementalRetry wrapping a test, or a
plain dict ({'CMD': './test.sh', 'RETRIES': 3, 'RETRY_AFTER': 600, 'ENV': x}).
The classes only describe tests: a runner executes the generator with the plan
driver (yci_plan.py), which turns what it yields into jobs, and the server
checks those jobs with the same rules as .yci.yml (docs/pipelines.md).
"""

from yci.retry import IncrementalRetry
from yci.run import Bash

__all__ = ['Bash', 'IncrementalRetry']
