// The hot path reads CheckRequests straight from the wire (src/envoy/request.ts).
// Here it is held to the conventional way: the same bytes, encoded with the
// upstream Envoy protos, are decoded in full with proto-loader and translated
// field by field; both must give the same request, and so the same decision.
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import type { AuthRequest } from '../../src/auth-request.js';
import { decide, type DecideContext } from '../../src/decide.js';
import { decodeCheckRequest } from '../../src/envoy/request.js';
import type { Answer } from '../../src/introspection/introspector.js';
import { compilePolicies, routeTable } from '../../src/policy/compile.js';
import { upstreamDefinitions } from '../support/envoy.js';
import { testPolicy, testSender } from '../support/policy.js';
import { assertProperty } from '../support/property.js';
import { decodeCheckRequest as decodeConventionally, type CheckRequest } from '../support/wire.js';

const upstreamCheck = (
  grpc.loadPackageDefinition(upstreamDefinitions()) as unknown as {
    envoy: { service: { auth: { v3: { Authorization: grpc.ServiceClientConstructor } } } };
  }
).envoy.service.auth.v3.Authorization.service.Check!;

const encodeUpstream = (request: object): Buffer => upstreamCheck.requestSerialize(request);

/** The translation the service made before it read the wire itself: from proto-loader's object. */
function conventional(check: CheckRequest): AuthRequest {
  const http = check.attributes?.request?.http;
  const headers = new Map<string, string[]>();
  const add = (key: string, value: string) => {
    const list = headers.get(key);
    if (list) list.push(value);
    else headers.set(key, [value]);
  };
  const raw = http?.header_map?.headers;
  if (raw && raw.length > 0) {
    for (const entry of raw) {
      if (!entry.key) continue;
      add(entry.key.toLowerCase(), entry.raw_value && entry.raw_value.length > 0 ? entry.raw_value.toString('utf8') : (entry.value ?? ''));
    }
  } else if (http?.headers) {
    for (const key of Object.keys(http.headers)) if (key !== '') add(key.toLowerCase(), http.headers[key]!);
  }
  const first = (key: string) => headers.get(key)?.[0];
  return {
    headers,
    contextExtensions: new Map(Object.entries(check.attributes?.context_extensions ?? {})),
    method: http?.method || first(':method') || '',
    host: http?.host || first(':authority') || first('host') || '',
    path: http?.path || first(':path') || '',
    requestId: first('x-request-id') ?? null,
  };
}

/** Entry lists, sorted: objects would reorder integer-like names, and tap's compare trips on a key named "constructor". */
function plain(request: AuthRequest): object {
  const sorted = <V>(map: ReadonlyMap<string, V>) => [...map].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return {
    headers: sorted(request.headers),
    contextExtensions: sorted(request.contextExtensions),
    method: request.method,
    host: request.host,
    path: request.path,
    requestId: request.requestId,
  };
}

// Names as Envoy sends them, some in other cases, some the pipeline reads.
const headerName = fc.oneof(
  fc.constantFrom(
    ':authority', ':path', ':method', ':scheme', 'host', 'authorization', 'Authorization', 'AUTHORIZATION',
    'x-request-id', 'X-Request-Id', 'cookie', 'user-agent', 'traceparent', 'x-b3-traceid', 'x-auth-subject', 'x-forwarded-for', '',
  ),
  fc.stringMatching(/^[a-zA-Z0-9_-]{1,12}$/),
);
const text = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 20 }), fc.constant('Bearer abc.def'));
const noise = fc.record(
  {
    source: fc.constant({ address: { socket_address: { address: '10.0.0.1', port_value: 4242 } }, principal: 'spiffe://a/b' }),
    destination: fc.constant({ address: { socket_address: { address: '10.0.0.2', port_value: 8080 } }, labels: { app: 'api' } }),
    metadata_context: fc.constant({ filter_metadata: { 'envoy.filters.http.jwt_authn': { fields: { sub: { string_value: 'x' } } } } }),
    tls_session: fc.record({ sni: text }),
  },
  { requiredKeys: [] },
);
const http = fc.record(
  {
    id: fc.constant('1234567890'),
    method: fc.constantFrom('', 'GET', 'POST'),
    host: fc.constantFrom('', 'api.example.com', 'API.example.com:443'),
    path: fc.constantFrom('', '/', '/orders/42?x=1', '/a/../b'),
    scheme: fc.constant('https'),
    protocol: fc.constant('HTTP/2'),
    size: fc.constantFrom('0', '-1', '9007199254740993'),
    body: text,
    raw_body: fc.uint8Array({ maxLength: 16 }).map((bytes) => Buffer.from(bytes)),
    headers: fc.dictionary(headerName, text, { maxKeys: 14, noNullPrototype: true }),
    header_map: fc.record({
      headers: fc.array(
        fc.record(
          { key: headerName, value: text, raw_value: fc.oneof(fc.constant(Buffer.alloc(0)), text.map((s) => Buffer.from(s, 'utf8'))) },
          { requiredKeys: ['key'] },
        ),
        { maxLength: 14 },
      ),
    }),
  },
  { requiredKeys: [] },
);
const checkRequest = fc
  .record({
    noise,
    http,
    time: fc.boolean(),
    extensions: fc.dictionary(fc.constantFrom('policy', 'team', '', 'Policy'), fc.constantFrom('default', 'partner', 'nope', ''), {
      maxKeys: 3,
      noNullPrototype: true,
    }),
    withRequest: fc.boolean(),
  })
  .map(({ noise, http, time, extensions, withRequest }) => ({
    attributes: {
      ...noise,
      ...(withRequest ? { request: { ...(time ? { time: { seconds: '1700000000', nanos: 5 } } : {}), http } } : {}),
      context_extensions: extensions,
    },
  }));

const policies = compilePolicies(
  [testPolicy({ name: 'default' }), testPolicy({ name: 'partner', scopes: 'write', identityHeader: 'x-partner-id' })],
  new Map([['as', { name: 'as', introspect: async () => ({ outcome: 'inactive' as const }) }]]),
);
const ACTIVE: Answer = {
  result: { outcome: 'active', claims: Object.freeze({ active: true, sub: 'alice', scope: 'read', client_id: 'app' }), expiresAt: null },
  cache: 'hit',
};
const context: DecideContext = {
  sender: testSender(),
  policies,
  defaultPolicy: policies.get('default')!,
  policySelector: 'policy',
  routes: routeTable([]),
  maxTokenLength: 8192,
  introspect: async (_endpoint, token) => (token === 'abc.def' ? ACTIVE : { result: { outcome: 'inactive', validFrom: 0 }, cache: 'miss' }),
};

t.test('upstream-encoded requests: the wire reader and the full decode agree, and so do the decisions', async (t) => {
  let runs = 0;
  let allowed = 0;
  await assertProperty(
    fc.asyncProperty(checkRequest, async (request) => {
      const bytes = encodeUpstream(request);
      const fast = decodeCheckRequest(bytes);
      const reference = conventional(decodeConventionally(bytes));
      // Returned, not only asserted: a mismatch must fail the property, so that fast-check shrinks it and prints its seed.
      if (!t.strictSame(plain(fast), plain(reference))) return false;
      const signal = new AbortController().signal;
      const [a, b] = await Promise.all([decide(fast, context, signal), decide(reference, context, signal)]);
      runs += 1;
      if (a.allow) allowed += 1;
      return t.strictSame(a, b);
    }),
    1500,
  );
  t.ok(allowed > 0, `some requests are allowed (${allowed} of ${runs})`);
});

t.test('a header or extension named __proto__ is an ordinary entry', async (t) => {
  // An own property named __proto__ (an object literal would set the prototype instead).
  const own = (value: string, rest: Record<string, string>) =>
    Object.defineProperty({ ...rest }, '__proto__', { value, enumerable: true });
  const request = decodeCheckRequest(
    encodeUpstream({
      attributes: {
        request: { http: { headers: own('a', { authorization: 'Bearer x' }) } },
        context_extensions: own('p', { policy: 'default' }),
      },
    }),
  );
  t.same(request.headers.get('__proto__'), ['a']);
  t.same(request.headers.get('authorization'), ['Bearer x']);
  t.equal(request.contextExtensions.get('__proto__'), 'p');
  t.equal(request.contextExtensions.get('policy'), 'default');
  t.equal(Object.getPrototypeOf(request.headers), Map.prototype);
});

t.test('a message sent twice is merged, as protobuf says', async (t) => {
  const one = encodeUpstream({ attributes: { request: { http: { method: 'GET', headers: { a: '1' } } }, context_extensions: { policy: 'x' } } });
  const two = encodeUpstream({ attributes: { request: { http: { path: '/p', headers: { b: '2' } } }, context_extensions: { team: 't' } } });
  const request = decodeCheckRequest(Buffer.concat([one, two]));
  t.equal(request.method, 'GET');
  t.equal(request.path, '/p');
  t.same(Object.fromEntries(request.headers), { a: ['1'], b: ['2'] });
  t.same(Object.fromEntries(request.contextExtensions), { policy: 'x', team: 't' });
});

t.test('bytes that are not a message: an error, never a hang or a partial request', async (t) => {
  const cases = [
    Buffer.from([0x0a, 0x80]),
    Buffer.from([0x0a, 0x10, 0x22]),
    Buffer.from([0x0f]),
    Buffer.from([0x0a, 0x03, 0x22, 0x7f, 0x00]),
    Buffer.from([0x0a, 0x05, 0x22, 0x03, 0x12, 0x01]),
  ];
  for (const bytes of cases) t.throws(() => decodeCheckRequest(bytes), `${bytes.toString('hex')}`);
  let thrown = 0;
  assertProperty(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      try {
        decodeCheckRequest(Buffer.from(bytes));
      } catch {
        thrown += 1;
      }
    }),
    3000,
  );
  t.ok(thrown > 0, `random bytes: ${thrown} of 3000 refused, the rest read without error`);
});
