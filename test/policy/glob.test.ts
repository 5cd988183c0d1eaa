import t from 'tap';
import fc from 'fast-check';
import { compileGlob, matchGlob } from '../../src/policy/glob.js';
import { assertProperty } from '../support/property.js';

t.test('compiled kinds', async (t) => {
  const cases: Array<[string, string]> = [
    ['*', 'any'],
    ['***', 'any'],
    ['scope', 'exact'],
    ['client_*', 'prefix'],
    ['client_**', 'prefix'],
    ['*_internal', 'suffix'],
    ['**_internal', 'suffix'],
    ['a*b', 'pattern'],
    ['*a*', 'pattern'],
    ['?', 'pattern'],
    ['ex?', 'pattern'],
  ];
  for (const [pattern, kind] of cases) t.equal(compileGlob(pattern).kind, kind, pattern);
  t.equal(compileGlob('a**b').source, 'a*b', 'runs of stars collapse');
});

t.test('compile errors never quote the pattern', async (t) => {
  t.throws(() => compileGlob(''), { name: 'TypeError', message: 'the pattern is empty' });
  t.throws(() => compileGlob('a\nb'), { name: 'TypeError', message: 'the pattern has control characters' });
  t.throws(() => compileGlob('a\u007f'), { message: /control characters/ });
});

t.test('matching', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['*', '', true],
    ['*', 'anything', true],
    ['scope', 'scope', true],
    ['scope', 'Scope', false],
    ['scope', 'scopes', false],
    ['scope', 'scop', false],
    ['client_*', 'client_id', true],
    ['client_*', 'client_', true],
    ['client_*', 'client', false],
    ['*_internal', 'roles_internal', true],
    ['*_internal', '_internal', true],
    ['*_internal', 'roles_internal_x', false],
    ['?', 'a', true],
    ['?', '', false],
    ['?', 'ab', false],
    ['ex?', 'exp', true],
    ['ex?', 'ex', false],
    ['ex?', 'expx', false],
    ['a*b', 'ab', true],
    ['a*b', 'axxxb', true],
    ['a*b', 'axxxbc', false],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'aXbYbZc', true],
    ['a*b*c', 'aXbYbZ', false],
    ['*a*', 'bab', true],
    ['*a*', 'bbb', false],
    ['?*?', 'ab', true],
    ['?*?', 'a', false],
    ['*?x', 'ax', true],
    ['*?x', 'x', false],
    ['x*', 'x', true],
    ['urn:*:role?', 'urn:example:role1', true],
    ['urn:*:role?', 'urn:example:role', false],
    ['ünï*', 'ünïcode', true],
  ];
  for (const [pattern, name, want] of cases) t.equal(matchGlob(compileGlob(pattern), name), want, `${pattern} ~ ${JSON.stringify(name)}`);
});

t.test('a pathological pattern stays fast', async (t) => {
  const glob = compileGlob('*a*a*a*a*a*a*a*b');
  const name = 'a'.repeat(20_000);
  const started = performance.now();
  t.equal(matchGlob(glob, name), false);
  t.ok(performance.now() - started < 2_000, 'no exponential backtracking');
});

/** Reference: the same semantics as a RegExp, for small generated inputs only. */
function reference(pattern: string, name: string): boolean {
  const source = [...pattern].map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&'))).join('');
  return new RegExp(`^${source}$`, 's').test(name);
}

t.test('property: agrees with a RegExp reference on every kind of pattern', async () => {
  const alphabet = fc.constantFrom('a', 'b', '*', '?', '.', '_');
  const names = fc.string({ unit: fc.constantFrom('a', 'b', '.', '_'), maxLength: 12 });
  assertProperty(
    fc.property(fc.string({ unit: alphabet, minLength: 1, maxLength: 8 }), names, (pattern, name) => {
      return matchGlob(compileGlob(pattern), name) === reference(pattern, name);
    }),
    2000,
  );
});
