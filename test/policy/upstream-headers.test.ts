import t from 'tap';
import {
  attributeHeaderName,
  attributeHeaderValue,
  isProtectedHeader,
  isSafeHeaderValue,
  MAX_HEADER_VALUE_LENGTH,
  prefixCoversProtected,
  spoofedHeaders,
  statusHeaderName,
} from '../../src/policy/upstream-headers.js';

t.test('isSafeHeaderValue', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['plain ASCII', 'alice@example.com', true],
    ['empty', '', true],
    ['space and punctuation', 'a b;c=d, "e" (f) \\g/ ~', true],
    ['unicode', 'Zoë 東京 \u{1f600}', true],
    ['U+00A0 (no-break space)', 'a\u00a0b', true],
    ['a surrogate pair', 'a\u{1f600}b', true],
    ['U+2027 and U+202F, beside the refused ranges', '\u2027\u202f\u2065\u206a', true],
    ['CR', 'alice\rx', false],
    ['LF', 'alice\nx-admin: 1', false],
    ['CRLF at the end', 'alice\r\n', false],
    ['NUL', 'alice\u0000', false],
    ['tab', 'a\tb', false],
    ['vertical tab', 'a\u000bb', false],
    ['escape', '\u001b[31m', false],
    ['unit separator U+001F', 'a\u001f', false],
    ['DEL', 'a\u007f', false],
    ['control character first', '\u0001alice', false],
    ['C1 U+0080', '\u0080', false],
    ['C1 NEL U+0085', 'alice\u0085x-admin: 1', false],
    ['C1 CSI U+009B', '\u009b31m', false],
    ['C1 U+009F', 'a\u009f', false],
    ['LINE SEPARATOR U+2028', 'alice\u2028x', false],
    ['PARAGRAPH SEPARATOR U+2029', 'alice\u2029x', false],
    ['RIGHT-TO-LEFT OVERRIDE U+202E', 'admin\u202eresu', false],
    ['LEFT-TO-RIGHT EMBEDDING U+202A', '\u202aa', false],
    ['RIGHT-TO-LEFT EMBEDDING U+202B', '\u202ba', false],
    ['POP DIRECTIONAL FORMATTING U+202C', 'a\u202c', false],
    ['LEFT-TO-RIGHT OVERRIDE U+202D', 'a\u202d', false],
    ['LEFT-TO-RIGHT ISOLATE U+2066', 'a\u2066', false],
    ['RIGHT-TO-LEFT ISOLATE U+2067', 'a\u2067', false],
    ['FIRST STRONG ISOLATE U+2068', 'a\u2068', false],
    ['POP DIRECTIONAL ISOLATE U+2069', 'a\u2069', false],
    ['LEFT-TO-RIGHT MARK U+200E', 'a\u200e', false],
    ['RIGHT-TO-LEFT MARK U+200F', 'a\u200f', false],
    ['ARABIC LETTER MARK U+061C', 'a\u061c', false],
    ['a lone high surrogate', 'a\ud800b', false],
    ['a lone high surrogate at the end', 'a\ud83d', false],
    ['a lone low surrogate', 'a\udc00b', false],
  ];
  for (const [name, value, want] of cases) t.equal(isSafeHeaderValue(value), want, name);
  t.equal(MAX_HEADER_VALUE_LENGTH, 8192);
});

t.test('spoofedHeaders', async (t) => {
  const prefix = 'x-auth-';
  const own = new Set(['x-user']);
  const setByUs = [{ name: 'x-auth-subject', value: 'alice' }];
  const cases: Array<[string, string[], string[]]> = [
    ['prefix match', ['x-auth-roles', 'x-auth-'], ['x-auth-roles', 'x-auth-']],
    ['header we set is kept for overwriting', ['x-auth-subject'], []],
    ['underscore spelling of the header we set', ['x_auth_subject'], ['x_auth_subject']],
    ['mixed spelling', ['x-auth_subject', 'x_auth-subject'], ['x-auth_subject', 'x_auth-subject']],
    ['underscore spelling of another name', ['x_auth_roles'], ['x_auth_roles']],
    ['extra name', ['x-user'], ['x-user']],
    ['underscore spelling of an extra name', ['x_user'], ['x_user']],
    ['unrelated headers untouched', ['authorization', 'x-user-agent', 'x-authx', 'x-auth', 'x-request-id', 'user'], []],
    ['prefix in the middle does not count', ['y-x-auth-subject'], []],
    ['order kept, only the spoofed ones', ['a', 'x-auth-a', 'b', 'x_user', 'x-auth-subject'], ['x-auth-a', 'x_user']],
    ['nothing incoming', [], []],
  ];
  for (const [name, incoming, want] of cases) {
    t.same(spoofedHeaders(incoming, [prefix], own, setByUs), want, name);
  }
});

t.test('spoofedHeaders never lists what we set, even outside the prefix', async (t) => {
  const own = new Set(['x-user']);
  const setByUs = [{ name: 'x-user', value: 'u' }];
  t.same(spoofedHeaders(['x-user', 'x_user', 'x-auth-a'], ['x-auth-'], own, setByUs), ['x_user', 'x-auth-a']);
});

t.test('spoofedHeaders reads any iterable', async (t) => {
  const headers = new Map<string, string[]>([
    ['x-auth-a', ['1']],
    ['host', ['h']],
  ]);
  t.same(spoofedHeaders(headers.keys(), ['x-auth-'], new Set(), []), ['x-auth-a']);
  t.same(spoofedHeaders(new Set(['x-auth-b']), ['x-auth-'], new Set(), []), ['x-auth-b']);
});

t.test('spoofedHeaders with the prefixes of several policies', async (t) => {
  const removed = spoofedHeaders(['x-auth-a', 'x-partner-b', 'x_partner_c', 'x-other'], ['x-auth-', 'x-partner-'], new Set(), []);
  t.same(removed, ['x-auth-a', 'x-partner-b', 'x_partner_c']);
});

t.test('attributeHeaderName', async (t) => {
  const cases: Array<[string, string | null]> = [
    ['scope', 'x-auth-scope'],
    ['client_id', 'x-auth-client-id'],
    ['Client_ID', 'x-auth-client-id'],
    ['token.type', 'x-auth-token-type'],
    ['urn:example:claim', 'x-auth-urn-example-claim'],
    ['a b', 'x-auth-a-b'],
    ['Zoë', 'x-auth-zo-'],
    ['x\r\ny', 'x-auth-x--y'],
    ['123', 'x-auth-123'],
    ['-a-', 'x-auth--a-'],
    ['', null],
    ['___', null],
    ['ü', null],
    ['\u0000', null],
    ['a'.repeat(128), `x-auth-${'a'.repeat(128)}`],
    ['a'.repeat(129), null],
  ];
  for (const [claim, want] of cases) t.equal(attributeHeaderName('x-auth-', claim), want, JSON.stringify(claim));
});

t.test('attributeHeaderValue', async (t) => {
  const cases: Array<[string, unknown, string | null]> = [
    ['string', 'alice', 'alice'],
    ['string with spaces', 'read write', 'read write'],
    ['empty string', '', null],
    ['null', null, null],
    ['integer', 42, '42'],
    ['fraction', -1.5, '-1.5'],
    ['non-finite', Number.POSITIVE_INFINITY, null],
    ['true', true, 'true'],
    ['false', false, 'false'],
    ['array of strings', ['a', 'b'], 'a b'],
    ['array of scalars', ['a', 1, false], 'a 1 false'],
    ['array with a space', ['a b', 'c'], '["a b","c"]'],
    ['array with an empty string', ['', 'c'], '["","c"]'],
    ['array with null', ['a', null], '["a",null]'],
    ['array with an object', [{ a: 1 }], '[{"a":1}]'],
    ['nested array', [['a']], '[["a"]]'],
    ['empty array', [], '[]'],
    ['object', { a: 'b', c: [1] }, '{"a":"b","c":[1]}'],
    ['control characters in JSON are escaped', { a: '\n' }, '{"a":"\\n"}'],
    ['control characters in a string stay (the caller drops it)', 'a\nb', 'a\nb'],
    ['undefined', undefined, null],
    ['bigint', 10n, null],
    ['bigint in an object', { a: 10n }, null],
  ];
  for (const [name, value, want] of cases) t.equal(attributeHeaderValue(value), want, name);
});

t.test('protected headers and prefixes', async (t) => {
  for (const name of ['authorization', 'host', 'content-length', 'x-forwarded-for', 'x-request-id', 'x-envoy-original-path', 'cookie']) {
    t.ok(isProtectedHeader(name), name);
  }
  for (const name of ['x-auth-subject', 'x-user', 'x-envoyx']) t.notOk(isProtectedHeader(name), name);
  for (const prefix of ['x-', 'x-envoy-', 'x-envoy-a-', 'x-forwarded-', 'content-', 'proxy-', 'transfer-', 'keep-', 'x-request-']) {
    t.ok(prefixCoversProtected(prefix), prefix);
  }
  for (const prefix of ['x-auth-', 'x-user-', 'auth-', 'x-e1-']) t.notOk(prefixCoversProtected(prefix), prefix);
  t.equal(statusHeaderName('x-auth-'), 'x-auth-status');
});

t.test('one list of message headers: neither set upstream nor sent to an endpoint from its headers option', async (t) => {
  const { MESSAGE_HEADERS, RESERVED_HEADERS } = await import('../../src/policy/upstream-headers.js');
  const { RESERVED_ENDPOINT_HEADERS } = await import('../../src/config/schema.js');
  t.ok(MESSAGE_HEADERS.includes('authorization') && MESSAGE_HEADERS.includes('transfer-encoding'));
  for (const name of MESSAGE_HEADERS) {
    t.ok(RESERVED_HEADERS.has(name), `${name}: never set upstream`);
    t.ok(RESERVED_ENDPOINT_HEADERS.has(name), `${name}: never from an endpoint's headers`);
  }
  // What each adds: the client facts the proxy vouches for, and the introspection request's own.
  t.same([...RESERVED_HEADERS].filter((n) => !MESSAGE_HEADERS.includes(n)).sort(), ['cookie', 'forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-request-id']);
  t.same([...RESERVED_ENDPOINT_HEADERS].filter((n) => !MESSAGE_HEADERS.includes(n)).sort(), ['accept', 'expect']);
});
