"""lit test format for conformance/lit.cfg.py: ShTest, collecting only the
tests whose RUN lines run lli.

A module of its own because lit pickles each test's format for its worker
processes, and a class defined inside a lit config file cannot be pickled.
"""

import re

import lit.formats

# `%lli` or a bare `lli` word (not lli-child-target, not a path ending in lli).
LLI_WORD = re.compile(r'%lli\b|(?<![-\w./\\<])lli(?![-\w.])')


def runs_lli(path):
    with open(path, encoding='utf-8', errors='replace') as f:
        return any('RUN:' in line and LLI_WORD.search(line.split('RUN:', 1)[1])
                   for line in f)


class LliTests(lit.formats.ShTest):
    def getTestsInDirectory(self, testSuite, path_in_suite, litConfig,
                            localConfig):
        for test in super().getTestsInDirectory(testSuite, path_in_suite,
                                                litConfig, localConfig):
            if runs_lli(test.getSourcePath()):
                yield test
