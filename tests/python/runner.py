"""Runs tests/python/test_*.py with unittest and ends with `python: N passed, N failed`.

Usage: python runner.py [-v] [-k PATTERN]... [test_module...]

Failed counts failures, errors (including a class whose herald did not start) and unexpected
successes; expected failures and skips are reported on the line before the summary.
"""

import argparse
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


class CountingResult(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passed = 0

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("-k", dest="patterns", action="append", help="only tests matching this substring")
    parser.add_argument("modules", nargs="*", help="test modules, e.g. test_users")
    args = parser.parse_args()

    sys.path.insert(0, HERE)
    loader = unittest.TestLoader()
    if args.patterns:
        loader.testNamePatterns = ["*%s*" % p for p in args.patterns]
    if args.modules:
        suite = loader.loadTestsFromNames([m[:-3] if m.endswith(".py") else m for m in args.modules])
    else:
        suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)

    started = time.monotonic()
    runner = unittest.TextTestRunner(
        stream=sys.stdout, verbosity=2 if args.verbose else 1, resultclass=CountingResult, buffer=False
    )
    result = runner.run(suite)
    elapsed = time.monotonic() - started

    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    others = []
    if result.expectedFailures:
        others.append("%d expected failures (known server mismatches)" % len(result.expectedFailures))
    if result.skipped:
        others.append("%d skipped" % len(result.skipped))
    others.append("%.1f s" % elapsed)
    print("python: " + ", ".join(others))
    print("python: %d passed, %d failed" % (result.passed, failed))
    return 1 if failed or result.testsRun == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
