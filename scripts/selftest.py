"""selftest: the harness of the scripts' --self-test modes -- the skip when a package is
missing (exit 77, test/run_tests.sh's "skipped"), checks that count their failures, a
scratch directory, and the report (the directory is kept when something failed)."""
import shutil
import sys
import tempfile

SKIPPED = 77


def skipped(script, err):
    print(f"SKIPPED {script} --self-test: {err}")
    return SKIPPED


class SelfTest:
    def __init__(self, script, prefix):
        self.script = script
        self.failures = []
        self.tmp = tempfile.mkdtemp(prefix=prefix)

    def check(self, ok, what):
        if not ok:
            self.failures.append(what)
            print(f"FAIL: {what}", file=sys.stderr)

    def finish(self, note=""):
        """The exit code: 1 when a check failed (its files left in tmp), else 0."""
        if self.failures:
            print(f"{self.script} --self-test: {len(self.failures)} failure(s); files left in {self.tmp}")
            return 1
        shutil.rmtree(self.tmp)
        print(f"{self.script} --self-test: ok{note}")
        return 0
