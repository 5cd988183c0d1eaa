import t from 'tap';
import { compileTemplate, renderTemplate } from '../../src/policy/identity-template.js';

t.test('compile errors', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['empty', '', /at least one placeholder/],
    ['no placeholder', 'static-identity', /at least one placeholder/],
    ['only escaped braces', '{{sub}}', /at least one placeholder/],
    ['unclosed', '{sub', /unclosed "\{" at character 1/],
    ['unclosed after a placeholder', '{iss}/{sub', /unclosed "\{" at character 7/],
    ['unmatched }', 'sub}', /unmatched "\}" at character 4/],
    ['unmatched } after a placeholder', '{sub}x}', /unmatched "\}" at character 7/],
    ['empty name', '{}', /empty claim name in "\{\}"/],
    ['blank name', '{  }', /empty claim name/],
    ['empty alternative at the end', '{sub|}', /empty claim name in "\{sub\|\}"/],
    ['empty alternative at the start', '{|sub}', /empty claim name/],
    ['empty alternative in the middle', '{sub| |client_id}', /empty claim name/],
    ['nested', '{a{b}}', /"\{" inside a placeholder at character 1/],
    ['nested after text', 'x{a|{b}}', /"\{" inside a placeholder at character 2/],
  ];
  for (const [name, source, message] of cases) {
    t.throws(() => compileTemplate(source), { name: 'TypeError', message }, name);
  }
});

t.test('compiled parts and claims', async (t) => {
  const cases: Array<[string, unknown[], string[]]> = [
    ['{sub}', [['sub']], ['sub']],
    ['{iss}/{sub}', [['iss'], '/', ['sub']], ['iss', 'sub']],
    ['{sub|username|client_id}', [['sub', 'username', 'client_id']], ['sub', 'username', 'client_id']],
    ['{ sub | username\t|  client_id }', [['sub', 'username', 'client_id']], ['sub', 'username', 'client_id']],
    ['{{{sub}}}', ['{', ['sub'], '}'], ['sub']],
    ['a{{b}}{sub}', ['a{b}', ['sub']], ['sub']],
    ['{sub}@{sub|email}', [['sub'], '@', ['sub', 'email']], ['sub', 'email']],
  ];
  for (const [source, parts, claims] of cases) {
    const template = compileTemplate(source);
    t.equal(template.source, source, `${source}: source kept`);
    t.same(template.parts, parts, `${source}: parts`);
    t.same(template.claims, claims, `${source}: claims`);
  }
});

t.test('rendering', async (t) => {
  const alternatives = compileTemplate('{sub|username|client_id}');
  const cases: Array<[string, Record<string, unknown>, string | null]> = [
    ['first claim present', { sub: 'alice', username: 'bob', client_id: 'app' }, 'alice'],
    ['second when first absent', { username: 'bob', client_id: 'app' }, 'bob'],
    ['third when first two absent', { client_id: 'app' }, 'app'],
    ['empty string counts as missing', { sub: '', username: 'bob' }, 'bob'],
    ['empty array counts as missing', { sub: [], username: 'bob' }, 'bob'],
    ['non-empty array counts as missing', { sub: ['a'], username: 'bob' }, 'bob'],
    ['empty object counts as missing', { sub: {}, username: 'bob' }, 'bob'],
    ['object counts as missing', { sub: { toString: () => 'x' }, username: 'bob' }, 'bob'],
    ['null counts as missing', { sub: null, username: 'bob' }, 'bob'],
    ['undefined counts as missing', { sub: undefined, username: 'bob' }, 'bob'],
    ['true counts as missing', { sub: true, username: 'bob' }, 'bob'],
    ['false counts as missing', { sub: false, username: 'bob' }, 'bob'],
    ['NaN counts as missing', { sub: Number.NaN, username: 'bob' }, 'bob'],
    ['Infinity counts as missing', { sub: Number.POSITIVE_INFINITY, username: 'bob' }, 'bob'],
    ['bigint counts as missing', { sub: 10n, username: 'bob' }, 'bob'],
    ['integer rendered', { sub: 42 }, '42'],
    ['zero rendered', { sub: 0 }, '0'],
    ['negative and fraction rendered', { sub: -1.5 }, '-1.5'],
    ['whitespace string kept as is', { sub: ' ' }, ' '],
    ['all missing', { email: 'a@b' }, null],
    ['all unusable', { sub: '', username: null, client_id: [] }, null],
    ['no claims', {}, null],
  ];
  for (const [name, claims, want] of cases) {
    const rendered = renderTemplate(alternatives, claims);
    if (want === null) t.same(rendered, { ok: false, missing: ['sub', 'username', 'client_id'] }, name);
    else t.same(rendered, { ok: true, value: want }, name);
  }
});

t.test('literals around placeholders', async (t) => {
  const template = compileTemplate('user:{iss}/{sub|client_id} {{x}}');
  t.same(renderTemplate(template, { iss: 'https://as', sub: 'alice' }), { ok: true, value: 'user:https://as/alice {x}' });
  t.same(renderTemplate(template, { iss: 'https://as', client_id: 7 }), { ok: true, value: 'user:https://as/7 {x}' });
  t.same(renderTemplate(template, { sub: 'alice' }), { ok: false, missing: ['iss'] }, 'first missing group reported');
  t.same(renderTemplate(template, { iss: 'https://as' }), { ok: false, missing: ['sub', 'client_id'] });
});

t.test('inherited Object.prototype members are never claims', async (t) => {
  const inherited = ['constructor', 'toString', 'valueOf', 'hasOwnProperty', '__proto__', 'isPrototypeOf', '__defineGetter__'];
  for (const name of inherited) {
    const template = compileTemplate(`{${name}}`);
    t.same(renderTemplate(template, {}), { ok: false, missing: [name] }, `{${name}} on {}`);
    t.same(renderTemplate(template, JSON.parse('{"sub":"x"}')), { ok: false, missing: [name] }, `{${name}} on JSON`);
    t.same(renderTemplate(template, Object.create(null)), { ok: false, missing: [name] }, `{${name}} on null prototype`);
  }
  const fallback = compileTemplate('{constructor|sub}');
  t.same(renderTemplate(fallback, { sub: 'alice' }), { ok: true, value: 'alice' }, 'falls through to the next claim');
});

t.test('own claims named like Object.prototype members', async (t) => {
  const proto = compileTemplate('{__proto__}');
  const ctor = compileTemplate('{constructor}');

  const parsed = JSON.parse('{"__proto__":"alice","constructor":"bob"}') as Record<string, unknown>;
  t.equal(Object.getPrototypeOf(parsed), Object.prototype, 'JSON.parse keeps the prototype');
  t.same(renderTemplate(proto, parsed), { ok: true, value: 'alice' }, '__proto__ own key from JSON');
  t.same(renderTemplate(ctor, parsed), { ok: true, value: 'bob' }, 'constructor own key from JSON');

  const bare: Record<string, unknown> = Object.create(null);
  bare['__proto__'] = 'carol';
  bare['constructor'] = 'dave';
  t.same(renderTemplate(proto, bare), { ok: true, value: 'carol' }, '__proto__ on a null-prototype object');
  t.same(renderTemplate(ctor, bare), { ok: true, value: 'dave' }, 'constructor on a null-prototype object');

  const objectProto = JSON.parse('{"__proto__":{"a":1}}') as Record<string, unknown>;
  t.same(renderTemplate(proto, objectProto), { ok: false, missing: ['__proto__'] }, 'object value still missing');
});
