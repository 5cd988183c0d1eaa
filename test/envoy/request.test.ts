import t from 'tap';
import type { AuthRequest } from '../../src/auth-request.js';
import { decodeCheckRequest } from '../../src/envoy/request.js';
import { authRequestOf, encodeCheckRequest, type CheckRequest, type HeaderValue } from '../support/wire.js';

function headersOf(request: AuthRequest): Record<string, readonly string[]> {
  return Object.fromEntries(request.headers);
}

function withHeaderMap(headers: HeaderValue[], extra: NonNullable<NonNullable<CheckRequest['attributes']>['request']>['http'] = {}): CheckRequest {
  return { attributes: { request: { http: { ...extra, header_map: { headers } } } } };
}

t.test('merged headers map', async (t) => {
  const request = authRequestOf({
    attributes: {
      request: {
        http: {
          method: 'POST',
          host: 'api.example.com',
          path: '/orders?id=1',
          headers: {
            ':method': 'POST',
            ':path': '/orders?id=1',
            authorization: 'Bearer a,Bearer b',
            'X-Request-Id': 'req-42',
            'Content-Type': 'application/json',
          },
        },
      },
    },
  });
  t.same(headersOf(request), {
    ':method': ['POST'],
    ':path': ['/orders?id=1'],
    authorization: ['Bearer a,Bearer b'],
    'x-request-id': ['req-42'],
    'content-type': ['application/json'],
  }, 'keys lower-cased, one value each, merged values untouched');
  t.equal(request.method, 'POST');
  t.equal(request.host, 'api.example.com');
  t.equal(request.path, '/orders?id=1');
  t.equal(request.requestId, 'req-42');
  t.equal(request.contextExtensions.size, 0);
});

t.test('keys that differ only in case become one header with two values', async (t) => {
  const request = authRequestOf({
    attributes: { request: { http: { headers: { Authorization: 'Bearer a', authorization: 'Bearer b' } } } },
  });
  t.same(headersOf(request), { authorization: ['Bearer a', 'Bearer b'] });
});

t.test('header_map with raw_value bytes', async (t) => {
  const request = authRequestOf(
    withHeaderMap([
      { key: 'authorization', raw_value: Buffer.from('Bearer abc') },
      { key: 'X-Name', raw_value: Buffer.from('Zoë', 'utf8') },
      { key: 'x-fallback', value: 'from-value', raw_value: Buffer.alloc(0) },
      { key: 'x-only-value', value: 'v' },
      { key: 'x-both', value: 'ignored', raw_value: Buffer.from('raw wins') },
      { key: 'x-empty' },
    ]),
  );
  t.same(headersOf(request), {
    authorization: ['Bearer abc'],
    'x-name': ['Zoë'],
    'x-fallback': ['from-value'],
    'x-only-value': ['v'],
    'x-both': ['raw wins'],
    'x-empty': [''],
  });
});

t.test('repeated header_map entries stay separate values', async (t) => {
  const request = authRequestOf(
    withHeaderMap([
      { key: 'authorization', raw_value: Buffer.from('Bearer a') },
      { key: 'x-other', raw_value: Buffer.from('1') },
      { key: 'Authorization', raw_value: Buffer.from('Bearer b') },
      { key: 'x-other', value: '2' },
    ]),
  );
  t.same(request.headers.get('authorization'), ['Bearer a', 'Bearer b'], 'two authorization lines, two values');
  t.same(request.headers.get('x-other'), ['1', '2']);
});

t.test('entries without a key are skipped', async (t) => {
  const request = authRequestOf(withHeaderMap([{ key: '', value: 'x' }, { value: 'y' }, { key: 'a', value: 'b' }]));
  t.same(headersOf(request), { a: ['b'] });
});

t.test('header_map is preferred over headers', async (t) => {
  const request = authRequestOf({
    attributes: {
      request: {
        http: {
          headers: { authorization: 'Bearer merged', 'x-only-merged': '1' },
          header_map: { headers: [{ key: 'authorization', raw_value: Buffer.from('Bearer raw') }] },
        },
      },
    },
  });
  t.same(headersOf(request), { authorization: ['Bearer raw'] });

  const empty = authRequestOf({
    attributes: { request: { http: { headers: { authorization: 'Bearer merged' }, header_map: { headers: [] } } } },
  });
  t.same(headersOf(empty), { authorization: ['Bearer merged'] }, 'an empty header_map falls back to headers');
  const absent = authRequestOf({
    attributes: { request: { http: { headers: { authorization: 'Bearer merged' }, header_map: {} } } },
  });
  t.same(headersOf(absent), { authorization: ['Bearer merged'] }, 'a header_map without headers falls back too');
});

t.test('context_extensions become a Map', async (t) => {
  const request = authRequestOf({
    attributes: {
      request: { http: { headers: {} } },
      context_extensions: { policy: 'partner', 'other-key': 'v' },
    },
  });
  t.ok(request.contextExtensions instanceof Map);
  t.same([...request.contextExtensions], [
    ['policy', 'partner'],
    ['other-key', 'v'],
  ]);
  t.equal(request.contextExtensions.get('policy'), 'partner');
  t.equal(request.contextExtensions.get('constructor'), undefined, 'nothing inherited');

  const none = authRequestOf({ attributes: { context_extensions: {} } });
  t.equal(none.contextExtensions.size, 0);
});

t.test('method, host and path from pseudo-headers when the http fields are empty', async (t) => {
  const request = authRequestOf(
    withHeaderMap([
      { key: ':method', raw_value: Buffer.from('DELETE') },
      { key: ':authority', raw_value: Buffer.from('h2.example.com') },
      { key: ':path', raw_value: Buffer.from('/items/7') },
      { key: 'host', raw_value: Buffer.from('ignored.example.com') },
      { key: 'x-request-id', raw_value: Buffer.from('rid-1') },
    ], { method: '', host: '', path: '' }),
  );
  t.equal(request.method, 'DELETE');
  t.equal(request.host, 'h2.example.com', ':authority before host');
  t.equal(request.path, '/items/7');
  t.equal(request.requestId, 'rid-1');

  const http1 = authRequestOf(withHeaderMap([{ key: 'Host', value: 'h1.example.com' }]));
  t.equal(http1.host, 'h1.example.com', 'host header when there is no :authority');

  const fields = authRequestOf(
    withHeaderMap([{ key: ':method', value: 'GET' }, { key: ':authority', value: 'a' }, { key: ':path', value: '/a' }], {
      method: 'PUT',
      host: 'b',
      path: '/b',
    }),
  );
  t.same([fields.method, fields.host, fields.path], ['PUT', 'b', '/b'], 'the http fields win');
});

t.test('scheme, and the source peer certificate (attributes.source.certificate, Peer field 5)', async (t) => {
  const request = authRequestOf({
    attributes: {
      source: { principal: 'spiffe://a/b', certificate: '-----BEGIN%20CERTIFICATE-----%0AMIIB' },
      request: { http: { scheme: 'https', host: 'a', path: '/' } },
    },
  });
  t.equal(request.scheme, 'https');
  t.equal(request.peerCertificate, '-----BEGIN%20CERTIFICATE-----%0AMIIB', 'as Envoy sent it, still URL-encoded');

  const bare = authRequestOf(withHeaderMap([{ key: ':scheme', value: 'http' }], { host: 'a', path: '/' }));
  t.equal(bare.scheme, 'http', ':scheme when the field is empty');
  t.equal(bare.peerCertificate, null, 'no certificate');
});

t.test('the first x-request-id is the request id', async (t) => {
  const request = authRequestOf(withHeaderMap([{ key: 'x-request-id', value: 'one' }, { key: 'X-Request-ID', value: 'two' }]));
  t.equal(request.requestId, 'one');
});

t.test('empty or missing attributes do not throw', async (t) => {
  const empty: CheckRequest[] = [
    {},
    { attributes: {} },
    { attributes: { request: {} } },
    { attributes: { request: { http: {} } } },
    { attributes: { request: { http: { headers: {} } } } },
    { attributes: { request: { http: { header_map: {} } } } },
  ];
  for (const check of empty) {
    const request = authRequestOf(check);
    const name = JSON.stringify(check);
    t.equal(request.headers.size, 0, `${name}: no headers`);
    t.equal(request.contextExtensions.size, 0, `${name}: no extensions`);
    t.same([request.method, request.host, request.path, request.requestId], ['', '', '', null], `${name}: empty fields`);
  }
});

t.test('a name repeated in `headers` keeps its last value; with capitals, exact names first, then joined', async (t) => {
  // Two messages one after the other are one merged message: their map entries add up, repeats included.
  const entries = (headers: Record<string, string>) => encodeCheckRequest({ attributes: { request: { http: { headers } } } });
  const decode = (...parts: Array<Record<string, string>>) => headersOf(decodeCheckRequest(Buffer.concat(parts.map(entries))));
  t.same(decode({ 'x-a': '1', 'x-b': 'b' }, { 'x-a': '2' }), { 'x-a': ['2'], 'x-b': ['b'] }, 'the last entry of a name wins');
  t.same(decode({ 'x-a': '1' }, { 'X-A': '2' }, { 'x-a': '3' }), { 'x-a': ['3', '2'] }, 'x-a (last value 3), then X-A');
  t.same(decode({ 'X-A': '1' }, { 'x-a': '2' }, { 'X-A': '3' }), { 'x-a': ['3', '2'] }, 'X-A (last value 3), then x-a');
  t.same(decode({ 'x-é': '1' }, { 'X-É': '2' }), { 'x-é': ['1', '2'] }, 'capitals beyond ASCII too');
});

t.test('short strings read again are the same text, and strings sharing a slot stay apart', async (t) => {
  // Same length, first, middle and last bytes: the decoder's table of recent strings puts them in one slot.
  const names = ['axcyd', 'apcqd', 'a-c-d', 'axcyd'];
  const decoded = names.map((name) => headersOf(authRequestOf({ attributes: { request: { http: { headers: { [name]: `${name}-value`, ':method': 'GET' } } } } })));
  names.forEach((name, i) => t.same(decoded[i], { [name]: [`${name}-value`], ':method': ['GET'] }, `request ${i + 1}: ${name}`));
  // One request naming all of them, values swapped around.
  const all = authRequestOf({ attributes: { request: { http: { headers: { axcyd: 'apcqd', apcqd: 'axcyd', 'a-c-d': 'a-c-d' } } } } });
  t.same(headersOf(all), { axcyd: ['apcqd'], apcqd: ['axcyd'], 'a-c-d': ['a-c-d'] });
  // Non-ASCII bytes of the same shape are decoded as UTF-8, never matched against an ASCII entry.
  const accented = authRequestOf(withHeaderMap([{ key: 'x-n', raw_value: Buffer.from('aé', 'utf8') }, { key: 'x-m', raw_value: Buffer.from('a\u00c3\u00a9', 'latin1') }]));
  t.same(headersOf(accented), { 'x-n': ['aé'], 'x-m': ['aé'] });
});
