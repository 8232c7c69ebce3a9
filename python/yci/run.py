"""Tests that run commands."""

__all__ = ['Bash']


class Bash:
    """One test: a bash command run with an environment.

    command -- the command, a string (it may hold several lines), run by
               bash (the job's command is "bash -c 'COMMAND'", unless it is
               plain words, which any shell runs alike).
    env     -- a dict of environment variables, name -> value; values that
               are ints or floats become strings.
    name    -- the job's name; by default the command's first line followed
               by the env values, e.g. "./test.sh (foo, x)".
    timeout -- seconds (an int), or a duration string such as "10m"; by
               default the server's.
    labels  -- a dict of labels a runner must have to run the job.

    Nothing is checked here: the server validates the jobs the plan gives
    and reports what is wrong with them, naming the job.
    """

    def __init__(self, command, env=None, *, name=None, timeout=None, labels=None):
        self.command = command
        self.env = {} if env is None else env
        self.name = name
        self.timeout = timeout
        self.labels = labels

    def __repr__(self):
        args = [repr(self.command)]
        if self.env:
            args.append('env=%r' % (self.env,))
        for key in ('name', 'timeout', 'labels'):
            value = getattr(self, key)
            if value is not None:
                args.append('%s=%r' % (key, value))
        return 'Bash(%s)' % ', '.join(args)
