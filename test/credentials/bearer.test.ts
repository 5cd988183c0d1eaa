import t from 'tap';
import { extractBearer, type BearerResult } from '../../src/credentials/bearer.js';

const MAX = 64;

interface Case {
  name: string;
  values: string[];
  want: BearerResult['kind'];
  token?: string;
}

const cases: Case[] = [
  { name: 'no Authorization header', values: [], want: 'missing' },
  { name: 'Basic scheme', values: ['Basic dXNlcjpwYXNz'], want: 'missing' },
  { name: 'Digest scheme', values: ['Digest username="u", realm="r", nonce="n"'], want: 'missing' },
  { name: 'DPoP scheme', values: ['DPoP abc.def'], want: 'missing' },
  { name: 'scheme that only starts with bearer', values: ['Bearerx abc'], want: 'missing' },
  { name: 'scheme glued to the token by a non-ASCII space', values: ['Bearer\u00a0abc'], want: 'missing' },

  { name: 'single token', values: ['Bearer abc.DEF-123_~+/'], want: 'token', token: 'abc.DEF-123_~+/' },
  { name: 'lower-case scheme', values: ['bearer abc'], want: 'token', token: 'abc' },
  { name: 'upper-case scheme', values: ['BEARER abc'], want: 'token', token: 'abc' },
  { name: 'mixed-case scheme', values: ['bEaReR abc'], want: 'token', token: 'abc' },
  { name: 'trailing spaces', values: ['Bearer abc   '], want: 'token', token: 'abc' },
  { name: 'leading spaces', values: ['   Bearer abc'], want: 'token', token: 'abc' },
  { name: 'leading and trailing tabs', values: ['\t\tBearer abc\t'], want: 'token', token: 'abc' },
  { name: 'tab between scheme and token', values: ['Bearer\tabc'], want: 'token', token: 'abc' },
  { name: 'several spaces between scheme and token', values: ['Bearer     abc'], want: 'token', token: 'abc' },
  { name: 'spaces and tabs between scheme and token', values: ['Bearer \t \tabc'], want: 'token', token: 'abc' },
  { name: 'one "=" of padding', values: ['Bearer abc='], want: 'token', token: 'abc=' },
  { name: 'two "=" of padding', values: ['Bearer abc=='], want: 'token', token: 'abc==' },

  { name: 'two Authorization header lines', values: ['Bearer a', 'Bearer b'], want: 'invalid' },
  { name: 'two lines, one of them Basic', values: ['Basic x', 'Bearer y'], want: 'invalid' },
  { name: 'two identical lines', values: ['Bearer a', 'Bearer a'], want: 'invalid' },
  { name: 'Envoy-merged bearer tokens', values: ['Bearer a,Bearer b'], want: 'invalid' },
  { name: 'Envoy-merged bearer tokens with a space', values: ['Bearer a, Bearer b'], want: 'invalid' },
  { name: 'Envoy-merged Basic then Bearer', values: ['Basic x,Bearer y'], want: 'invalid' },
  { name: 'Envoy-merged Basic then bearer (lower case)', values: ['Basic x, bearer y'], want: 'invalid' },
  { name: 'Envoy-merged Basic then a bare Bearer', values: ['Basic x,Bearer'], want: 'invalid' },
  { name: '"Bearer" alone', values: ['Bearer'], want: 'invalid' },
  { name: '"Bearer" and spaces', values: ['Bearer   '], want: 'invalid' },
  { name: '"Bearer" and a tab', values: ['Bearer\t'], want: 'invalid' },
  { name: 'empty header value', values: [''], want: 'invalid' },
  { name: 'blank header value', values: ['  \t '], want: 'invalid' },
  { name: 'space inside the token', values: ['Bearer abc def'], want: 'invalid' },
  { name: 'tab inside the token', values: ['Bearer abc\tdef'], want: 'invalid' },
  { name: 'comma inside the token', values: ['Bearer abc,def'], want: 'invalid' },
  { name: 'double quote in the token', values: ['Bearer "abc"'], want: 'invalid' },
  { name: 'single quote in the token', values: ["Bearer abc'def"], want: 'invalid' },
  { name: 'unicode letter in the token', values: ['Bearer abcé'], want: 'invalid' },
  { name: 'emoji in the token', values: ['Bearer abc\u{1f600}'], want: 'invalid' },
  { name: 'NUL in the token', values: ['Bearer abc\u0000def'], want: 'invalid' },
  { name: 'CR LF after the token', values: ['Bearer abc\r\n'], want: 'invalid' },
  { name: 'DEL in the token', values: ['Bearer abc\u007f'], want: 'invalid' },
  { name: 'vertical tab in the token', values: ['Bearer abc\u000bdef'], want: 'invalid' },
  { name: '"=" in the middle of the token', values: ['Bearer ab=c'], want: 'invalid' },
  { name: '"=" at the start of the token', values: ['Bearer =abc'], want: 'invalid' },
  { name: 'token made of padding only', values: ['Bearer =='], want: 'invalid' },
  { name: 'semicolon in the token', values: ['Bearer abc;def'], want: 'invalid' },
  { name: 'auth-param syntax instead of a token', values: ['Bearer token="abc"'], want: 'invalid' },
];

for (const c of cases) {
  t.test(c.name, async (t) => {
    const result = extractBearer(c.values, MAX);
    t.equal(result.kind, c.want, 'kind');
    if (result.kind === 'token') t.equal(result.token, c.token, 'token');
    if (result.kind === 'invalid') {
      t.type(result.description, 'string');
      t.not(result.description, '', 'has a description');
    }
  });
}

t.test('the description never repeats the token', async (t) => {
  const secret = 'SECRETtok';
  for (const value of [`Bearer ${secret} x`, `Bearer ${secret}é`, `Bearer ${secret}=x`, `Bearer ${secret}`.padEnd(200, 'a')]) {
    const result = extractBearer([value], MAX);
    t.equal(result.kind, 'invalid', value.slice(0, 30));
    if (result.kind === 'invalid') t.notMatch(result.description, secret);
  }
});

t.test('maxLength bounds the token, not the header', async (t) => {
  const exact = 'a'.repeat(MAX);
  const ok = extractBearer([`Bearer    ${exact}   `], MAX);
  t.same(ok, { kind: 'token', token: exact, scheme: 'bearer' }, 'exactly maxLength characters is accepted');

  const padded = `${'a'.repeat(MAX - 2)}==`;
  t.same(extractBearer([`Bearer ${padded}`], MAX), { kind: 'token', token: padded, scheme: 'bearer' }, 'padding counts, still maxLength');

  const long = extractBearer([`Bearer ${'a'.repeat(MAX + 1)}`], MAX);
  t.equal(long.kind, 'invalid', 'maxLength + 1 is invalid');
  if (long.kind === 'invalid') t.match(long.description, String(MAX));

  t.equal(extractBearer([`Bearer ${'a'.repeat(MAX + 1000)}`], MAX).kind, 'invalid', 'far longer is invalid');
});

t.test('merged credentials get their own description', async (t) => {
  const merged = extractBearer(['Basic x,Bearer y'], MAX);
  t.same(merged, { kind: 'invalid', description: 'more than one credential in the Authorization header' });
  const twoLines = extractBearer(['Bearer a', 'Bearer b'], MAX);
  t.same(twoLines, { kind: 'invalid', description: 'more than one Authorization header' });
  const charset = extractBearer(['Bearer abc"'], MAX);
  t.same(charset, { kind: 'invalid', description: 'the bearer token has characters outside RFC 6750 b64token' });
});

t.test('the DPoP scheme (RFC 9449 section 7.1) is read only when asked for', async (t) => {
  t.same(extractBearer(['DPoP abc.def'], MAX), { kind: 'missing' }, 'not a bearer credential by default');
  t.same(extractBearer(['DPoP abc.def'], MAX, true), { kind: 'token', token: 'abc.def', scheme: 'dpop' });
  t.same(extractBearer(['dpop abc'], MAX, true), { kind: 'token', token: 'abc', scheme: 'dpop' }, 'the scheme is case-insensitive');
  t.same(extractBearer(['Bearer abc'], MAX, true), { kind: 'token', token: 'abc', scheme: 'bearer' });
  t.equal(extractBearer(['Basic x,DPoP abc'], MAX, true).kind, 'invalid', 'a DPoP credential joined to another is no "missing"');
  t.equal(extractBearer(['DPoP '], MAX, true).kind, 'invalid', 'empty');
});
