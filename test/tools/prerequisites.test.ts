// `make test` checks the programs the suite needs before anything else and
// says in one line what is missing and how to install it.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ROOT } from '../support/service-process.js';

const make = execFileSync('/bin/sh', ['-c', 'command -v make'], { encoding: 'utf8' }).trim();
const which = (program: string) => execFileSync('/bin/sh', ['-c', `command -v ${program}`], { encoding: 'utf8' }).trim();

/** `make prerequisites` with PATH holding only the given programs. */
function prerequisites(dir: string, programs: string[]) {
  mkdirSync(dir, { recursive: true });
  for (const program of programs) symlinkSync(which(program), join(dir, program));
  return spawnSync(make, ['-s', '--no-print-directory', '-C', ROOT, 'prerequisites'], { env: { PATH: dir }, encoding: 'utf8', timeout: 20_000 });
}

t.test('nothing missing: exit 0, silent', async (t) => {
  const result = prerequisites(join(t.testdir({}), 'bin'), ['redis-server', 'openssl']);
  t.equal(result.status, 0, result.stderr);
  t.equal(result.stdout + result.stderr, '');
});

t.test('both missing: one line names both and the apt-get command', async (t) => {
  const result = prerequisites(join(t.testdir({}), 'bin'), []);
  t.not(result.status, 0, 'non-zero exit');
  const lines = result.stderr.split('\n').filter((line) => line !== '' && !line.startsWith('make: ***'));
  t.same(lines, ['make test needs: redis-server openssl; install with: apt-get install redis-server openssl (Debian, Ubuntu)']);
});

t.test('one missing: only that one is named', async (t) => {
  const result = prerequisites(join(t.testdir({}), 'bin'), ['openssl']);
  t.not(result.status, 0);
  t.match(result.stderr, /^make test needs: redis-server; install with: apt-get install redis-server \(Debian, Ubuntu\)\n/);
});

t.test('make test and make test-only check them first', async (t) => {
  // -n prints the commands without running them: the check comes before tsc and tap.
  for (const target of ['test', 'test-only']) {
    const plan = execFileSync(make, ['-n', '--no-print-directory', '-C', ROOT, target, 'NPM=true'], { encoding: 'utf8' });
    const check = plan.indexOf('command -v $program');
    t.ok(check >= 0, `${target} runs the check`);
    t.ok(check < plan.indexOf('run.mjs'), `${target}: before the suite`);
    if (target === 'test') t.ok(check < plan.indexOf('tsc'), 'and before the type check');
  }
});
