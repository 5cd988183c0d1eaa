import t from 'tap';
import { compilePolicies, compilePolicy, routeTable } from '../../src/policy/compile.js';
import type { Endpoint } from '../../src/introspection/introspector.js';
import { testPolicy } from '../support/policy.js';

const as: Endpoint = { name: 'as', introspect: () => Promise.reject(new Error('unused')) };

t.test('headers and prefixes of every policy are protected on every route', async (t) => {
  const policies = compilePolicies(
    [
      testPolicy({ name: 'a' }),
      testPolicy({ name: 'b', identityHeader: 'x-user', headerPrefix: 'x-b-', attributesHeader: 'x-claims' }),
      testPolicy({ name: 'c', headerPrefix: 'x-b-' }),
    ],
    new Map([['as', as]]),
  );
  for (const name of ['a', 'b', 'c']) {
    const policy = policies.get(name)!;
    t.same([...policy.ownHeaders].sort(), ['x-auth-subject', 'x-claims', 'x-user'], `${name}: own headers`);
    t.same(policy.prefixes, ['x-auth-', 'x-b-'], `${name}: prefixes, each once`);
    t.equal(policy.endpoint, as);
  }
  t.equal(policies.get('a')!.prefixes, policies.get('b')!.prefixes, 'shared, not copied per policy');
});

t.test('an endpoint that was not built is a programming error', async (t) => {
  t.throws(() => compilePolicies([testPolicy({ endpoint: 'other-as' })], new Map([['as', as]])), /names endpoint other-as, which was not built/);
});

t.test('one policy: its own headers by default, the challenge and the anonymous answer', async (t) => {
  const plain = compilePolicy(testPolicy(), as);
  t.same([...plain.ownHeaders], ['x-auth-subject']);
  t.same(plain.prefixes, ['x-auth-']);
  const full = compilePolicy(testPolicy({ attributesHeader: 'x-claims', scopes: 'a b', scopeValidationCriteria: 'OR', realm: 'r', headerPrefix: 'x-id-' }), as);
  t.same([...full.ownHeaders], ['x-auth-subject', 'x-claims']);
  t.equal(full.scopeChallenge, 'Bearer realm="r", error="insufficient_scope", error_description="the token has none of the scopes this resource accepts", scope="a b"');
  t.same(full.anonymous.headers, [{ name: 'x-id-status', value: 'anonymous' }]);
  t.same(full.anonymous.headers.map((header) => header.name), ['x-id-status']);
  t.same(full.anonymous.metadata, { policy: 'default', status: 'anonymous' });
  t.ok(Object.isFrozen(full) && Object.isFrozen(full.anonymous.headers));
});

t.test('routeTable gathers the rules of every policy', async (t) => {
  const table = routeTable([
    testPolicy({ name: 'a', match: [{ pathPrefix: '/a' }] }),
    testPolicy({ name: 'b' }),
    testPolicy({ name: 'c', match: [{ host: 'c.example.com' }, { host: 'c.example.com', pathPrefix: '/x' }] }),
  ]);
  t.same(
    table.rules.map((rule) => [rule.policy, rule.host, rule.pathPrefix]),
    [
      ['c', 'c.example.com', '/x'],
      ['c', 'c.example.com', null],
      ['a', null, '/a'],
    ],
  );
  t.same(routeTable([testPolicy()]).rules, [], 'no rules: the empty table');
});
