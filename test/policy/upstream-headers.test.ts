import t from 'tap';
import { isSafeHeaderValue, MAX_HEADER_VALUE_LENGTH, spoofedHeaders } from '../../src/policy/upstream-headers.js';

t.test('isSafeHeaderValue', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['plain ASCII', 'alice@example.com', true],
    ['empty', '', true],
    ['space and punctuation', 'a b;c=d, "e" (f) \\g/ ~', true],
    ['unicode', 'Zoë 東京 \u{1f600}', true],
    ['U+0080', '\u0080', true],
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
  ];
  for (const [name, value, want] of cases) t.equal(isSafeHeaderValue(value), want, name);
  t.equal(MAX_HEADER_VALUE_LENGTH, 8192);
});

t.test('spoofedHeaders', async (t) => {
  const prefix = 'x-auth-';
  const own = new Set(['x-user']);
  const setByUs = new Set(['x-auth-subject']);
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
    t.same(spoofedHeaders(incoming, prefix, own, setByUs), want, name);
  }
});

t.test('spoofedHeaders never lists what we set, even outside the prefix', async (t) => {
  const own = new Set(['x-user']);
  const setByUs = new Set(['x-user']);
  t.same(spoofedHeaders(['x-user', 'x_user', 'x-auth-a'], 'x-auth-', own, setByUs), ['x_user', 'x-auth-a']);
});

t.test('spoofedHeaders reads any iterable', async (t) => {
  const headers = new Map<string, string[]>([
    ['x-auth-a', ['1']],
    ['host', ['h']],
  ]);
  t.same(spoofedHeaders(headers.keys(), 'x-auth-', new Set(), new Set()), ['x-auth-a']);
  t.same(spoofedHeaders(new Set(['x-auth-b']), 'x-auth-', new Set(), new Set()), ['x-auth-b']);
});
