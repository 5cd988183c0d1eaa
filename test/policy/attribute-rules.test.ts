import t from 'tap';
import fc from 'fast-check';
import {
  AttributeRuleError,
  compileAttributeRule,
  compileAttributeRules,
  isKept,
  keptAttributes,
  KEEP_ALL,
  type AttributeRules,
} from '../../src/policy/attribute-rules.js';
import { assertProperty } from '../support/property.js';

const CLAIMS = {
  active: true,
  scope: 'read write',
  client_id: 'app-one',
  exp: 1,
  iat: 0,
  roles_internal: ['x'],
  sub: 'alice',
  ext: { a: 1 },
};

t.test('rule lists, first match decides, unmatched kept (IBM Verify Access)', async (t) => {
  const cases: Array<[string, string[], string[]]> = [
    ['no rules keep everything', [], Object.keys(CLAIMS)],
    ['the IBM example', ['+scope', '+client_id', '-exp', '-*_internal', '+*'], ['active', 'scope', 'client_id', 'iat', 'sub', 'ext']],
    ['allow list', ['+scope', '+client_id', '-*'], ['scope', 'client_id']],
    ['deny list', ['-active', '-exp', '-iat'], ['scope', 'client_id', 'roles_internal', 'sub', 'ext']],
    ['first match wins over a later one', ['-scope', '+scope'], Object.keys(CLAIMS).filter((n) => n !== 'scope')],
    ['a later rule never re-adds', ['-*', '+scope'], []],
    ['? matches one character', ['-ex?', '-?at'], ['active', 'scope', 'client_id', 'roles_internal', 'sub']],
    ['globs in the middle', ['-*_*'], ['active', 'scope', 'exp', 'iat', 'sub', 'ext']],
    ['case-sensitive', ['-SCOPE', '-Sub'], Object.keys(CLAIMS)],
    ['drop nothing but keep everything explicitly', ['+*'], Object.keys(CLAIMS)],
  ];
  for (const [name, rules, want] of cases) {
    t.same(keptAttributes(compileAttributeRules(rules), CLAIMS), want, name);
  }
});

t.test('isKept', async (t) => {
  const rules = compileAttributeRules(['+scope', '-s*']);
  t.equal(isKept(rules, 'scope'), true);
  t.equal(isKept(rules, 'sub'), false);
  t.equal(isKept(rules, 'client_id'), true, 'no rule matches: kept');
  t.equal(isKept(KEEP_ALL, 'anything'), true);
});

t.test('compile errors name the index, never the rule', async (t) => {
  const cases: Array<[string[], number, RegExp]> = [
    [['scope'], 0, /must start with "\+" \(keep\) or "-" \(drop\)/],
    [['+scope', '*'], 1, /must start with/],
    [['+a', '+b', ''], 2, /must start with/],
    [['+'], 0, /the pattern is empty after the sign/],
    [['-'], 0, /the pattern is empty/],
    [['+a\r\nb'], 0, /control characters/],
    [[`+${'a'.repeat(257)}`], 0, /at most 256 characters/],
  ];
  for (const [rules, index, message] of cases) {
    try {
      compileAttributeRules(rules);
      t.fail(`${JSON.stringify(rules)} should not compile`);
    } catch (error) {
      t.type(error, AttributeRuleError);
      t.equal((error as AttributeRuleError).index, index, `${JSON.stringify(rules)}: index`);
      t.match((error as Error).message, message);
      t.notMatch((error as Error).message, /scope|aaaa/, 'the rule text is not quoted');
    }
  }
  t.ok(compileAttributeRule(`+${'a'.repeat(256)}`), '256 characters are fine');
});

t.test('compiled rules print as the list they were written as', async (t) => {
  t.equal(JSON.stringify(compileAttributeRules(['+scope', '-*'])), '["+scope","-*"]');
  t.equal(JSON.stringify(KEEP_ALL), '[]');
  t.ok(Object.isFrozen(compileAttributeRules(['+a'])));
});

/** README, "What a policy checks": the first rule whose glob matches decides (`+` keep, `-` drop); no match keeps. */
function referenceKept(rules: readonly string[], name: string): boolean {
  for (const rule of rules) {
    const source = [...rule.slice(1)].map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&'))).join('');
    if (new RegExp(`^${source}$`, 's').test(name)) return rule.startsWith('+');
  }
  return true;
}

t.test('property: any rule list keeps exactly the members the documented rule keeps, in the answer\'s order', async () => {
  const name = fc.string({ unit: fc.constantFrom('a', 'b', 'c', '_', '.', 'x'), minLength: 0, maxLength: 6 });
  const pattern = fc.string({ unit: fc.constantFrom('a', 'b', '_', '*', '?'), minLength: 1, maxLength: 5 });
  const rule = fc.tuple(fc.constantFrom('+', '-'), pattern).map(([sign, p]) => sign + p);
  assertProperty(
    fc.property(fc.dictionary(name, fc.jsonValue({ maxDepth: 2 })), fc.array(rule, { maxLength: 8 }), (claims, rules) => {
      const kept = keptAttributes(compileAttributeRules(rules), claims);
      const want = Object.keys(claims).filter((key) => referenceKept(rules, key));
      return JSON.stringify(kept) === JSON.stringify(want);
    }),
    1000,
  );
});

t.test('keptAttributes: each rule list matches a claim name once, and remembers within a bound', async (t) => {
  let reads = 0;
  const glob = compileAttributeRule('-*_internal').glob;
  const counted: AttributeRules = {
    source: ['-*_internal'],
    rules: [
      {
        include: false,
        get glob() {
          reads += 1;
          return glob;
        },
      },
    ],
  };
  const claims = { sub: 'a', roles_internal: 'x', scope: 'read' };
  t.same(keptAttributes(counted, claims), ['sub', 'scope']);
  t.equal(reads, 3, 'each name matched once');
  t.same(keptAttributes(counted, { ...claims }), ['sub', 'scope']);
  t.equal(reads, 3, 'then remembered');
  // A flood of new names (a hostile authorization server) never changes what is kept.
  for (let i = 0; i < 2000; i += 1) {
    const names = { [`n${i}`]: 1, [`n${i}_internal`]: 2, sub: 3 };
    const kept = keptAttributes(counted, names);
    if (kept.join() !== `n${i},sub`) {
      t.fail(`round ${i}: ${kept.join()}`);
      break;
    }
  }
  t.same(keptAttributes(counted, claims), ['sub', 'scope'], 'the same answer after the memo started over');
});

t.test('keptAttributes agrees with isKept, memo or not', async (t) => {
  const rule = fc.tuple(fc.constantFrom('+', '-'), fc.stringMatching(/^[a-c_*?]{1,4}$/)).map(([sign, glob]) => `${sign}${glob}`);
  const name = fc.stringMatching(/^[a-c_]{0,5}$/);
  assertProperty(
    fc.property(fc.array(rule, { minLength: 1, maxLength: 5 }), fc.array(fc.uniqueArray(name, { maxLength: 6 }), { maxLength: 5 }), (sources, answers) => {
      const rules = compileAttributeRules(sources);
      for (const names of [...answers, ...answers]) {
        const claims = Object.fromEntries(names.map((n) => [n, true]));
        const want = Object.keys(claims).filter((n) => isKept(rules, n));
        if (keptAttributes(rules, claims).join('\0') !== want.join('\0')) throw new Error(`${JSON.stringify(sources)} ${JSON.stringify(names)}`);
      }
    }),
    200,
  );
  t.pass('agreed');
});
