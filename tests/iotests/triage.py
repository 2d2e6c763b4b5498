#!/usr/bin/env python3
"""Sorts the vdisk failures of a run.sh work folder by cause.

    tests/iotests/triage.py WORK [IOTESTS_DIR] [--tests] [--by-cause] [--only LIST]

For each test vdisk fails, compares its .out.bad with QEMU's .out and names
the causes seen in the lines that differ: a qemu-io command or flag vdisk
lacks, a qemu-img flag it refuses, the "vdisk:" prefix where qemu-img or
qemu-io print their own name, a message worded differently, a filename
syntax (blkdebug:, json:) vdisk does not read, ...  Then prints the causes
with how many tests each one is seen in, and in how many it is the only
cause (fixing it alone would likely make those tests pass), most first.
With --tests, also each test's causes; with --by-cause, each cause's tests; with --only, only the tests of LIST
("FMT TEST" lines, e.g. lists/7.2/real-pass).  A help for FAILURES.md, not a test.
"""
import collections
import os
import re
import subprocess
import sys


PREFIX = ('error prefix: "vdisk:" (and "vdisk_open:", ...) where QEMU prints '
          '"qemu-img:"/"qemu-io:"')


def norm(line):
    return re.sub(r'[0-9]+', 'N', line)


def causes(expected, bad):
    diff = subprocess.run(['diff', expected, bad], stdout=subprocess.PIPE,
                          universal_newlines=True, errors='replace').stdout
    old = [l[2:] for l in diff.splitlines() if l.startswith('< ')]
    new = [l[2:] for l in diff.splitlines() if l.startswith('> ')]
    old_set = set(old)
    found = set()
    for line in new:
        if line in old_set:
            continue            # a line moved, not a new one
        m = re.match(r'command "(\S+)" not found', line)
        if m:
            found.add(f'qemu-io command missing: {m.group(1)}')
            continue
        m = re.match(r"([a-z_]+): invalid option -- '(.)'", line)
        if m:
            found.add(f'qemu-io flag missing: {m.group(1)} -{m.group(2)}')
            continue
        m = re.match(r"(?:vdisk: )?([a-z]+): unrecognized option '(-[^']*)'", line)
        if m:
            found.add(f'qemu-img flag missing: {m.group(1)} {m.group(2)}')
            continue
        if re.match(r"Try 'vdisk .*--help'", line) or re.match(r'[a-z_]+ \[-', line):
            continue            # usage after a refused flag
        m = re.match(r'(?:vdisk: )?Command not found: (\S+)', line)
        if m:
            found.add(f'qemu-img command missing: {m.group(1)}')
            continue
        if re.match(r"Try 'vdisk --help'", line):
            continue
        if 'Expecting an image file name' in line:
            found.add('qemu-io without an image argument (the "open" command, '
                      'commands read from stdin) refused: "Expecting an image file name"')
            continue
        if 'does not support checks' in line:
            # _filter_qemu_img_check rewrites qemu-img's own line
            found.add(PREFIX)
            continue
        if 'is beyond the end of the device' in line:
            found.add('an extra line from the library ("vdisk_pread: PATH: read of N bytes at '
                      'offset N is beyond the end of the device") before qemu-io\'s '
                      '"read failed: Input/output error"')
            continue
        if re.search(r"Could not open '[^']*\.out'", line):
            continue            # the output of a command that failed before
        if 'blkdebug' in line or 'json:' in line or 'null-co' in line:
            found.add('filename syntax: blkdebug:/json:/null-co:// not read')
            continue
        if re.match(r'vdisk: vdisk_open: ', line) and any(
                "can't open device" in o or "can't open:" in o for o in old):
            found.add('open errors: QEMU prints "qemu-io: can\'t open device PATH: MSG" '
                      '(qemu-img: "Could not open PATH: MSG"), vdisk "vdisk: vdisk_open: '
                      'PATH: MSG" with its own MSG')
            continue
        m = re.match(r'vdisk: (?:vdisk_[a-z_]+: )?(.*)', line) or \
            re.match(r'(vdisk_[a-z_]+: .*)', line)
        if m:
            rest = re.sub(r'^vdisk_[a-z_]+: ', '', m.group(1))
            if f'qemu-img: {rest}' in old_set or f'qemu-io: {rest}' in old_set:
                found.add(PREFIX)
            else:
                found.add('message differs: ' + norm(rest)[:110])
            continue
        found.add('output differs: ' + norm(line)[:110])
    if not new and old:
        found.add('output missing: ' + norm(old[0])[:110])
    return found


def main():
    argv = sys.argv[1:]
    only_list = None
    if '--only' in argv:
        i = argv.index('--only')
        with open(argv[i + 1]) as f:
            only_list = {' '.join(l.split()[:2]) for l in f
                         if l.strip() and not l.startswith('#')}
        del argv[i:i + 2]
    args = [a for a in argv if not a.startswith('--')]
    show_tests = '--tests' in sys.argv
    work = args[0]
    iotests = args[1] if len(args) > 1 else os.path.join(
        os.environ.get('VDISK_QEMU_IOTESTS', '/var/cache/vdisk/qemu-iotests'),
        'tests', 'qemu-iotests')
    per_test = {}
    with open(os.path.join(work, 'vdisk.results')) as f:
        for line in f:
            side, fmt, test, result = line.split(None, 3)
            if only_list is not None and f'{fmt} {test}' not in only_list:
                continue
            if result.strip() == 'not run' and os.path.exists(os.path.join(
                    work, 'vdisk', fmt, 'scratch', test, test + '.notrun')):
                with open(os.path.join(work, 'vdisk', fmt, 'scratch', test,
                                       test + '.notrun')) as n:
                    per_test[f'{fmt} {test}'] = {'not run: ' + n.read().strip()}
                continue
            if result.strip() != 'fail':
                continue
            bad = os.path.join(work, 'vdisk', fmt, 'scratch', test, test + '.out.bad')
            if not os.path.exists(bad):
                per_test[f'{fmt} {test}'] = {'no output (the test stopped early)'}
                continue
            ref = os.path.join(iotests, f'{test}.out.{fmt}')   # as check picks it
            if not os.path.exists(ref):
                ref = os.path.join(iotests, test + '.out')
            per_test[f'{fmt} {test}'] = causes(ref, bad)
    seen = collections.Counter()
    only = collections.Counter()
    for c in per_test.values():
        seen.update(c)
        if len(c) == 1:
            only.update(c)
    print(f'{len(per_test)} failing runs')
    print('tests  only  cause')
    for cause, n in seen.most_common():
        print(f'{n:5d} {only[cause]:5d}  {cause}')
        if '--by-cause' in sys.argv:
            print('             ' + ' '.join(sorted(t.replace(' ', ':') for t, c in
                                                   per_test.items() if cause in c)))
    if show_tests:
        print()
        for t, c in sorted(per_test.items()):
            print(t + ':')
            for x in sorted(c):
                print('    ' + x)


main()
